"""The `streambp` command end to end (fit, predict, evaluate, inspect, gradcheck, plugins) via CliRunner."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import streambp
from streambp import Model
from streambp.cli import app

from conftest import blob_table, invoke, make_blobs

FAST = ["--threads", "1", "--batch-size", "16"]


def words(text):
    """Output with every run of whitespace turned into one space (the console may wrap long lines)."""
    return " ".join(text.split())


def fit(data, out, *extra, epochs=2, hidden="8"):
    return invoke("fit", data, "--out", out, "--epochs", epochs, "--hidden", hidden, *FAST, *extra)


def features_of(X):
    return np.ascontiguousarray(X, dtype=np.float32)


@pytest.fixture
def model_file(tmp_path, blob_file):
    out = tmp_path / "model.npz"
    fit(blob_file, out, epochs=3)
    return out


# ---------------------------------------------------------------------------------------------- basics


def test_version():
    result = invoke("--version")
    assert result.output.strip() == f"streambp {streambp.__version__}"


def test_help_lists_commands():
    result = invoke("--help")
    for name in ("fit", "predict", "evaluate", "inspect", "plugins", "gradcheck"):
        assert re.search(rf"\b{name}\b", result.output), name


@pytest.mark.parametrize("command", ["fit", "predict", "evaluate", "inspect", "plugins", "gradcheck"])
def test_command_help(command):
    assert "Usage" in invoke(command, "--help").output


# ---------------------------------------------------------------------------------------------- fit


def test_fit_writes_model_and_reports_epochs(tmp_path, blob_file, blobs):
    out = tmp_path / "m.npz"
    result = fit(blob_file, out, epochs=3)
    assert out.exists()
    text = words(result.output)
    for e in (1, 2, 3):
        assert f"epoch {e}/3" in text
    assert "val accuracy" not in text
    model = streambp.load(out)
    assert model.sizes == [5, 8, 3]
    assert model.classes == [0, 1, 2]
    assert model.features == [f"x{j}" for j in range(5)]
    assert model.input_column is None
    assert model.label_type == "int64"
    assert model.theta.dtype == np.float32
    # It learned something on easy blobs.
    X, y = blobs
    assert (model.predict(X) == y).mean() > 0.8
    assert [h["epoch"] for h in model.training["history"]] == [1, 2, 3]


def test_fit_with_val_reports_val_accuracy(tmp_path, blob_file):
    X, y = make_blobs(n=200, seed=0)
    val = tmp_path / "val.parquet"
    pq.write_table(blob_table(X, y), val)
    out = tmp_path / "m.npz"
    result = fit(blob_file, out, "--val", val, epochs=2)
    text = words(result.output)
    lines = [line for line in result.output.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2
    for e in (1, 2):
        m = re.search(rf"epoch {e}/2 .*?val accuracy (\d\.\d+)", text)
        assert m, text
        assert 0.0 <= float(m.group(1)) <= 1.0
    history = streambp.load(out).training["history"]
    assert all("val_accuracy" in h and "val_loss" in h for h in history)


def test_fit_hidden_zero_is_softmax_regression(tmp_path, blob_file):
    out = tmp_path / "m.npz"
    fit(blob_file, out, hidden="0", epochs=1)
    model = streambp.load(out)
    assert model.sizes == [5, 3]
    assert model.hidden == []
    assert model.theta.size == 3 * 5 + 3


def test_fit_two_hidden_layers(tmp_path, blob_file):
    out = tmp_path / "m.npz"
    fit(blob_file, out, hidden="8,4", epochs=1)
    model = streambp.load(out)
    assert model.sizes == [5, 8, 4, 3]
    assert model.theta.size == 8 * 6 + 4 * 9 + 3 * 5


def test_fit_zero_epochs_writes_initialised_model(tmp_path, blob_file):
    out = tmp_path / "m.npz"
    fit(blob_file, out, "--seed", "7", hidden="8,4", epochs=0)
    model = streambp.load(out)
    expected = Model.initialise([5, 8, 4, 3], [0, 1, 2], [f"x{j}" for j in range(5)], seed=7)
    assert model.theta.dtype == expected.theta.dtype
    np.testing.assert_array_equal(model.theta, expected.theta)
    assert model.training["history"] == []


def test_fit_seed_changes_initialisation(tmp_path, blob_file):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    fit(blob_file, a, "--seed", "1", epochs=0)
    fit(blob_file, b, "--seed", "2", epochs=0)
    assert not np.array_equal(streambp.load(a).theta, streambp.load(b).theta)


def test_fit_is_deterministic_with_one_thread(tmp_path, blob_file):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    fit(blob_file, a, epochs=2)
    fit(blob_file, b, epochs=2)
    np.testing.assert_array_equal(streambp.load(a).theta, streambp.load(b).theta)


def test_fit_no_shuffle(tmp_path, blob_file):
    out = tmp_path / "m.npz"
    fit(blob_file, out, "--no-shuffle", epochs=1)
    assert streambp.load(out).sizes == [5, 8, 3]


def test_fit_small_buffer_rows(tmp_path, blob_file):
    # Chunks smaller than a row group and not a multiple of it.
    out = tmp_path / "m.npz"
    fit(blob_file, out, "--buffer-rows", "50", epochs=1)
    assert np.isfinite(streambp.load(out).theta).all()


# ---------------------------------------------------------------------------------------------- --init


def test_init_zero_epochs_keeps_theta(tmp_path, blob_file, model_file):
    out = tmp_path / "warm.npz"
    invoke("fit", blob_file, "--init", model_file, "--epochs", "0", "--out", out, *FAST)
    before, after = streambp.load(model_file), streambp.load(out)
    assert after.sizes == before.sizes
    assert after.classes == before.classes
    assert after.features == before.features
    np.testing.assert_array_equal(after.theta, before.theta)


def test_init_one_more_epoch_changes_theta(tmp_path, blob_file, model_file):
    out = tmp_path / "warm.npz"
    invoke("fit", blob_file, "--init", model_file, "--epochs", "1", "--out", out, *FAST)
    before, after = streambp.load(model_file), streambp.load(out)
    assert after.sizes == before.sizes
    assert not np.array_equal(after.theta, before.theta)
    assert np.isfinite(after.theta).all()


def test_init_with_same_hidden_is_accepted(tmp_path, blob_file, model_file):
    out = tmp_path / "warm.npz"
    invoke("fit", blob_file, "--init", model_file, "--hidden", "8", "--epochs", "0", "--out", out, *FAST)
    np.testing.assert_array_equal(streambp.load(out).theta, streambp.load(model_file).theta)


def test_init_with_mismatching_hidden_is_user_error(tmp_path, blob_file, model_file):
    out = tmp_path / "warm.npz"
    result = CliRunner().invoke(app, ["fit", str(blob_file), "--init", str(model_file), "--hidden", "16",
                                      "--epochs", "1", "--out", str(out), *FAST])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "--hidden" in result.output
    assert str(model_file) in words(result.output)
    assert "Traceback" not in result.output
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- features


def test_fit_selected_features(tmp_path, blob_file, blobs):
    out = tmp_path / "m.npz"
    fit(blob_file, out, "--features", "x0,x2", epochs=1)
    model = streambp.load(out)
    assert model.features == ["x0", "x2"]
    assert model.sizes == [2, 8, 3]
    # Predict reads only those two columns, in that order.
    pred = tmp_path / "p.parquet"
    invoke("predict", out, blob_file, "--out", pred)
    X, _ = blobs
    got = pq.read_table(pred).column("prediction").to_numpy()
    np.testing.assert_array_equal(got, model.predict(X[:, [0, 2]]))


def test_fit_features_order_is_kept(tmp_path, blob_file):
    out = tmp_path / "m.npz"
    fit(blob_file, out, "--features", "x3,x1,x4", epochs=0)
    assert streambp.load(out).features == ["x3", "x1", "x4"]


def test_fit_default_features_skip_non_numeric_columns(tmp_path, blobs):
    X, y = blobs
    table = blob_table(X, y).append_column("name", pa.array([f"row{i}" for i in range(len(y))]))
    path = tmp_path / "with_names.parquet"
    pq.write_table(table, path)
    out = tmp_path / "m.npz"
    fit(path, out, epochs=1)
    assert streambp.load(out).features == [f"x{j}" for j in range(5)]


def test_fit_custom_label_column(tmp_path, blobs):
    X, y = blobs
    table = pa.table({**{f"f{j}": X[:, j] for j in range(5)}, "target": y})
    path = tmp_path / "target.parquet"
    pq.write_table(table, path)
    out = tmp_path / "m.npz"
    fit(path, out, "--label", "target", epochs=1)
    model = streambp.load(out)
    assert model.features == [f"f{j}" for j in range(5)]
    result = invoke("evaluate", out, path, "--label", "target", "--json")
    assert json.loads(result.stdout)["n_rows"] == len(y)


def test_fit_integer_and_float64_feature_columns(tmp_path, blobs):
    X, y = blobs
    table = pa.table({"a": (X[:, 0] * 10).astype(np.int32), "b": X[:, 1].astype(np.float64),
                      "c": X[:, 2].astype(np.float32), "label": y})
    path = tmp_path / "mixed.parquet"
    pq.write_table(table, path)
    out = tmp_path / "m.npz"
    fit(path, out, epochs=1)
    assert streambp.load(out).features == ["a", "b", "c"]


# ---------------------------------------------------------------------------------------------- predict


def write_with_id(tmp_path, X, y, name="with_id.parquet", label_values=None):
    table = blob_table(X, y, label_values)
    table = table.append_column("row_id", pa.array([f"id-{i:04d}" for i in range(len(y))]))
    path = tmp_path / name
    pq.write_table(table, path, row_group_size=100)
    return path


def test_predict_writes_predictions_and_probabilities(tmp_path, model_file, blobs):
    X, y = blobs
    data = write_with_id(tmp_path, X, y)
    pred = tmp_path / "pred.parquet"
    result = invoke("predict", model_file, data, "--out", pred, "--id", "row_id")
    assert "600" in result.output
    table = pq.read_table(pred)
    assert set(table.column_names) == {"row_id", "prediction", "prob_0", "prob_1", "prob_2"}
    assert table.num_rows == len(y)
    assert table.column("row_id").to_pylist() == [f"id-{i:04d}" for i in range(len(y))]
    probs = np.column_stack([table.column(f"prob_{k}").to_numpy() for k in range(3)])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs >= 0).all()
    model = streambp.load(model_file)
    np.testing.assert_allclose(probs, model.predict_proba(features_of(X)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(table.column("prediction").to_numpy(), model.predict(X))
    np.testing.assert_array_equal(table.column("prediction").to_numpy(), probs.argmax(axis=1))


def test_predict_without_id_and_without_label_column(tmp_path, model_file, blobs):
    X, _ = blobs
    data = tmp_path / "unlabelled.parquet"
    pq.write_table(pa.table({f"x{j}": X[:, j] for j in range(5)}), data)
    pred = tmp_path / "pred.parquet"
    invoke("predict", model_file, data, "--out", pred)
    table = pq.read_table(pred)
    assert table.column_names == ["prediction", "prob_0", "prob_1", "prob_2"]
    np.testing.assert_array_equal(table.column("prediction").to_numpy(), streambp.load(model_file).predict(X))


def test_predict_more_rows_than_one_read_batch(tmp_path, model_file):
    X, y = make_blobs(n=70000, seed=3)
    data = tmp_path / "big.parquet"
    pq.write_table(blob_table(X, y), data, row_group_size=20000)
    pred = tmp_path / "pred.parquet"
    invoke("predict", model_file, data, "--out", pred)
    got = pq.read_table(pred).column("prediction").to_numpy()
    np.testing.assert_array_equal(got, streambp.load(model_file).predict(X))


@pytest.mark.parametrize("encoding", ["plain", "dictionary"])
def test_string_labels_round_trip(tmp_path, blobs, encoding):
    X, y = blobs
    names = np.array(["cat", "dog", "eel"])
    labels = pa.array(names[y].tolist())
    if encoding == "dictionary":
        labels = labels.dictionary_encode()
    table = pa.table({**{f"x{j}": X[:, j] for j in range(5)}, "label": labels,
                      "row_id": np.arange(len(y), dtype=np.int64)})
    data = tmp_path / f"{encoding}.parquet"
    pq.write_table(table, data, row_group_size=100)
    if encoding == "dictionary":
        assert pa.types.is_dictionary(pq.read_schema(data).field("label").type)
    out = tmp_path / "m.npz"
    fit(data, out, "--features", "x0,x1,x2,x3,x4", epochs=3)  # row_id is numeric: name the features
    model = streambp.load(out)
    assert model.classes == ["cat", "dog", "eel"]
    assert model.label_type == "string"
    assert model.features == [f"x{j}" for j in range(5)]
    pred = tmp_path / "pred.parquet"
    invoke("predict", out, data, "--out", pred, "--id", "row_id")
    t = pq.read_table(pred)
    assert {"prob_cat", "prob_dog", "prob_eel"} <= set(t.column_names)
    got = t.column("prediction").to_pylist()
    assert set(got) <= {"cat", "dog", "eel"}
    assert got == model.predict(X).tolist()
    assert t.column("row_id").to_pylist() == list(range(len(y)))
    metrics = json.loads(invoke("evaluate", out, data, "--json").stdout)
    assert metrics["classes"] == ["cat", "dog", "eel"]
    assert metrics["accuracy"] == pytest.approx(np.mean(np.array(got) == names[y]))


# ---------------------------------------------------------------------------------------------- evaluate


def numpy_metrics(model, X, y):
    p = model.predict_proba(features_of(X)).astype(np.float64)
    K = p.shape[1]
    pred = p.argmax(axis=1)
    confusion = np.zeros((K, K), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    tp = np.diag(confusion)
    return {
        "accuracy": float((pred == y).mean()),
        "log_loss": float(-np.log(p[np.arange(len(y)), y]).mean()),
        "confusion_matrix": confusion.tolist(),
        "precision": (tp / np.maximum(confusion.sum(axis=0), 1)).tolist(),
        "recall": (tp / np.maximum(confusion.sum(axis=1), 1)).tolist(),
    }


def test_evaluate_json_matches_numpy(tmp_path, model_file, blob_file, blobs):
    X, y = blobs
    result = invoke("evaluate", model_file, blob_file, "--json")
    m = json.loads(result.stdout)
    for key in ("accuracy", "log_loss", "n_rows", "classes", "confusion_matrix", "precision", "recall",
                "unknown_labels"):
        assert key in m, key
    expected = numpy_metrics(streambp.load(model_file), X, y)
    assert m["n_rows"] == len(y)
    assert m["unknown_labels"] == 0
    assert m["classes"] == [0, 1, 2]
    assert m["confusion_matrix"] == expected["confusion_matrix"]
    assert m["accuracy"] == pytest.approx(expected["accuracy"])
    assert m["log_loss"] == pytest.approx(expected["log_loss"], rel=1e-5)
    np.testing.assert_allclose(m["precision"], expected["precision"])
    np.testing.assert_allclose(m["recall"], expected["recall"])
    assert sum(map(sum, m["confusion_matrix"])) == m["n_rows"]


def test_evaluate_table_output(model_file, blob_file):
    result = invoke("evaluate", model_file, blob_file)
    text = words(result.output)
    assert "accuracy" in text and "log loss" in text
    assert "precision" in text and "recall" in text


def test_evaluate_on_directory_equals_single_file(model_file, blob_file, blob_dir):
    a = json.loads(invoke("evaluate", model_file, blob_file, "--json").stdout)
    b = json.loads(invoke("evaluate", model_file, blob_dir, "--json").stdout)
    assert a["confusion_matrix"] == b["confusion_matrix"]
    assert a["log_loss"] == pytest.approx(b["log_loss"], rel=1e-6)


def test_evaluate_counts_unknown_labels(tmp_path, model_file, blobs):
    X, y = blobs
    y_unknown = y.copy()
    y_unknown[:25] = 7  # a class the model never saw
    data = tmp_path / "unknown.parquet"
    pq.write_table(blob_table(X, y_unknown), data, row_group_size=100)
    m = json.loads(invoke("evaluate", model_file, data, "--json").stdout)
    assert m["unknown_labels"] == 25
    assert m["n_rows"] == len(y) - 25
    expected = numpy_metrics(streambp.load(model_file), X[25:], y[25:])
    assert m["confusion_matrix"] == expected["confusion_matrix"]
    assert m["accuracy"] == pytest.approx(expected["accuracy"])
    text = words(invoke("evaluate", model_file, data).output)
    assert "25 rows have labels the model never saw" in text


# ---------------------------------------------------------------------------------------------- inspect


def test_inspect(model_file):
    text = words(invoke("inspect", model_file).output)
    assert "5-8-3" in text
    assert "classes 3: 0, 1, 2" in text
    assert "x0, x1, x2, x3, x4" in text
    assert "3 epochs" in text


def test_inspect_json(model_file):
    meta = json.loads(invoke("inspect", model_file, "--json").stdout)
    assert meta["format"] == "streambp-model"
    assert meta["sizes"] == [5, 8, 3]
    assert meta["classes"] == [0, 1, 2]
    assert meta["features"] == [f"x{j}" for j in range(5)]
    assert meta["input_column"] is None
    assert len(meta["training"]["history"]) == 3


# ---------------------------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("sizes", [None, "6,5,4,3,3", "4,3"])
def test_gradcheck(sizes):
    args = ["gradcheck"] + (["--sizes", sizes] if sizes else [])
    result = invoke(*args)
    m = re.search(r"largest relative error ([0-9.e+-]+)", result.output)
    assert m, result.output
    assert float(m.group(1)) < 1e-6
    assert "ok" in result.output


# ---------------------------------------------------------------------------------------------- plugins


def test_plugins_all_lists_builtins():
    text = invoke("plugins", "--all").output
    assert re.search(r"optimizer: .*\bsgd\b", text)
    assert re.search(r"logger: .*\bconsole\b", text)
    assert re.search(r"source: .*\bparquet\b", text)


def test_plugins_json():
    found = json.loads(invoke("plugins", "--all", "--json").stdout)
    registers = {}
    for p in found:
        assert {"name", "hooks", "registers"} <= set(p)
        for kind, names in p["registers"].items():
            registers.setdefault(kind, []).extend(names)
    assert "sgd" in registers["optimizer"]
    assert "console" in registers["logger"]
    assert "parquet" in registers["source"]
    # Without --all the built-ins are hidden.
    assert all(not p["name"].startswith("streambp.default_plugins")
               for p in json.loads(invoke("plugins", "--json").stdout))


# ---------------------------------------------------------------------------------------------- inputs


def test_fit_directory(tmp_path, blob_dir):
    out = tmp_path / "m.npz"
    result = fit(blob_dir, out, epochs=1)
    assert "4 file(s)" in words(result.output)
    model = streambp.load(out)
    assert model.sizes == [5, 8, 3]
    assert model.training["rows"] == 600


def test_fit_glob(tmp_path, blob_dir):
    out = tmp_path / "m.npz"
    fit(str(blob_dir) + "/*.parquet", out, epochs=1)
    model = streambp.load(out)
    assert model.sizes == [5, 8, 3]
    assert model.training["rows"] == 600


def test_directory_and_file_train_identically_without_shuffle(tmp_path, blob_file, blob_dir):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    fit(blob_file, a, "--no-shuffle", epochs=1)
    fit(blob_dir, b, "--no-shuffle", epochs=1)
    np.testing.assert_allclose(streambp.load(a).theta, streambp.load(b).theta, rtol=1e-6, atol=1e-7)


def test_file_name_with_brackets_is_read_literally(tmp_path, blobs):
    # An existing file is the file, even when its name holds glob characters.
    path = tmp_path / "blobs[v1].parquet"
    pq.write_table(blob_table(*blobs), path)
    out = tmp_path / "m.npz"
    fit(path, out, epochs=1)
    assert streambp.load(out).training["rows"] == 600


def vector_table(X, y, kind):
    flat = pa.array(X.reshape(-1), type=pa.float32())
    if kind == "fixed":
        vec = pa.FixedSizeListArray.from_arrays(flat, X.shape[1])
    else:
        offsets = pa.array(np.arange(0, X.size + 1, X.shape[1], dtype=np.int32))
        vec = pa.ListArray.from_arrays(offsets, flat)
    return pa.table({"vec": vec, "label": y})


@pytest.mark.parametrize("named", [True, False], ids=["features-vec", "default"])
@pytest.mark.parametrize("kind", ["fixed", "list"])
def test_fit_vector_column(tmp_path, blobs, kind, named):
    X, y = blobs
    data = tmp_path / f"vec-{kind}.parquet"
    pq.write_table(vector_table(X, y, kind), data, row_group_size=100)
    out = tmp_path / "m.npz"
    fit(data, out, *(["--features", "vec"] if named else []), epochs=3)
    model = streambp.load(out)
    assert model.input_column == "vec"
    assert model.sizes == [5, 8, 3]
    assert len(model.features) == 5
    assert (model.predict(X) == y).mean() > 0.8
    pred = tmp_path / "pred.parquet"
    invoke("predict", out, data, "--out", pred)
    np.testing.assert_array_equal(pq.read_table(pred).column("prediction").to_numpy(), model.predict(X))
    m = json.loads(invoke("evaluate", out, data, "--json").stdout)
    assert m["accuracy"] == pytest.approx(float((model.predict(X) == y).mean()))
    assert "vec" in words(invoke("inspect", out).output)


def test_vector_model_matches_column_model_without_shuffle(tmp_path, blob_file, blobs):
    X, y = blobs
    data = tmp_path / "vec.parquet"
    pq.write_table(vector_table(X, y, "fixed"), data, row_group_size=128)
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    fit(blob_file, a, "--no-shuffle", epochs=2)
    fit(data, b, "--no-shuffle", epochs=2)
    np.testing.assert_allclose(streambp.load(a).theta, streambp.load(b).theta, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------- real process


def console_command():
    script = os.path.join(os.path.dirname(sys.executable), "streambp")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-c", "from streambp.cli import main; main()"]


def test_subprocess_fit(tmp_path, blob_file):
    out = tmp_path / "m.npz"
    proc = subprocess.run([*console_command(), "fit", str(blob_file), "--out", str(out), "--epochs", "1",
                           "--hidden", "4", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.exists()
    assert "epoch 1/1" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert streambp.load(out).sizes == [5, 4, 3]


def test_subprocess_main_function(tmp_path, blob_file):
    out = tmp_path / "m.npz"
    main = [sys.executable, "-c", "from streambp.cli import main; main()"]
    proc = subprocess.run([*main, "fit", str(blob_file), "--out", str(out), "--epochs", "0", "--hidden", "4",
                           "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.exists()


# ---------------------------------------------------------------------------------------------- fit's options


def help_text(*command):
    """The real `streambp ... --help` output, wide enough that no line wraps."""
    proc = subprocess.run([*console_command(), *command, "--help"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200", "TERM": "dumb"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_fit_help_groups_options_in_reading_order_without_type_metavars():
    text = help_text("fit")
    panels = ["Data", "Network", "Optimisation", "Output and run directory", "Engine"]
    starts = [text.index(f"─ {p} ─") for p in panels]
    assert starts == sorted(starts), starts
    panel_of, panel = {}, None
    for line in text.splitlines():
        title = re.match(r"╭─ (.+?) ─", line)
        if title:
            panel = title.group(1)
        declared = re.match(r"│ (--[a-z0-9-]+)", line)  # an option's own line, not a mention in some help
        if declared:
            panel_of[declared.group(1)] = panel
    expected = {"--label": "Data", "--features": "Data", "--ignore": "Data", "--categorical": "Data",
                "--numeric": "Data", "--max-categories": "Data", "--min-frequency": "Data",
                "--hash-buckets": "Data", "--standardize": "Data", "--val": "Data", "--val-fraction": "Data",
                "--source": "Data", "--source-option": "Data", "--on-bad-rows": "Data", "--bad-rows-out": "Data",
                "--hidden": "Network", "--init": "Network", "--epochs": "Optimisation",
                "--batch-size": "Optimisation", "--lr": "Optimisation", "--optimizer": "Optimisation",
                "--momentum": "Optimisation", "--lr-schedule": "Optimisation", "--class-weight": "Optimisation",
                "--early-stopping": "Optimisation", "--seed": "Optimisation", "--shuffle": "Optimisation",
                "--buffer-rows": "Optimisation", "--out": "Output and run directory",
                "--run-dir": "Output and run directory", "--checkpoint-every": "Output and run directory",
                "--keep-checkpoints": "Output and run directory", "--resume": "Output and run directory",
                "--config": "Output and run directory", "--logger": "Output and run directory",
                "--deterministic": "Output and run directory", "--engine": "Engine", "--threads": "Engine",
                "--scheduler": "Engine", "--workers": "Engine", "--sync-every": "Engine"}
    assert {o: panel_of.get(o) for o in expected} == expected
    # Typer's own --help line is the one type label left (streambp.cli's command class decides it)
    options = [line for line in text.splitlines() if "--help" not in line]
    assert not [line for line in options if re.search(r"<(bool|str|int|float|list\[\w+\])>", line)]
    from streambp.config import DEFAULT_HIDDEN

    hidden_help = words(text[text.index("│ --hidden"):text.index("│ --init")])
    assert f"default {','.join(map(str, DEFAULT_HIDDEN))}," in hidden_help  # the help states the real default
    logger_help = words(text[text.index("--logger"):text.index("--deterministic")])
    for name in ("console", "jsonl", "csv", "streambp plugins"):
        assert name in logger_help


def test_the_fit_command_module_imports_nothing_heavy():
    code = ("import sys; import streambp.commands.fit; "
            "print(sorted(m for m in ('streambp.train', 'streambp.stream', 'streambp.config', 'pyarrow', "
            "'streambp.checkpoint') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.fixture
def captured(monkeypatch):
    """The FitConfig each `fit` command builds (train.fit is not run)."""
    import streambp.train

    seen = []
    monkeypatch.setattr(streambp.train, "fit", seen.append)
    return seen


def test_column_role_options_and_their_defaults(captured, blob_file):
    invoke("fit", blob_file)
    (c,) = captured
    assert (c.ignore, c.categorical, c.numeric, c.max_categories, c.min_frequency, c.hash_buckets,
            c.standardize) == ([], [], [], 1000, 1, 0, True)
    invoke("fit", blob_file, "--ignore", "row_id,uuid", "--categorical", "zip", "--numeric", "code,n",
           "--max-categories", "50", "--min-frequency", "3", "--hash-buckets", "4096", "--no-standardize",
           "--features", "a b,c")
    c = captured[-1]
    assert (c.ignore, c.categorical, c.numeric, c.max_categories, c.min_frequency, c.hash_buckets,
            c.standardize, c.features) == (["row_id", "uuid"], ["zip"], ["code", "n"], 50, 3, 4096, False,
                                           ["a b", "c"])


def test_hidden_option_forms(captured, blob_file):
    for text, hidden in (("0", []), ("16", [16]), ("32, 16", [32, 16])):
        invoke("fit", blob_file, "--hidden", text)
        assert captured[-1].hidden == hidden


def test_fit_leaves_the_callers_config_unchanged(blob_file):
    from copy import deepcopy

    from streambp.config import FitConfig
    from streambp.train import fit as train_fit

    c = FitConfig(data=str(blob_file), hidden=[4], epochs=1, deterministic=True, out=None, loggers=[],
                  optimizer_params={"momentum": 0.5}, lr_schedule_params={"gamma": 0.5}, lr_schedule="step")
    before = deepcopy(c)
    model = train_fit(c)
    assert c == before  # it set c.threads before
    assert model.training["config"]["threads"] >= 1  # the run itself records the count it used


def test_init_keeps_the_models_own_scaling(tmp_path, blob_file):
    raw, scaled = tmp_path / "raw.npz", tmp_path / "scaled.npz"
    fit(blob_file, raw, "--no-standardize", epochs=1)
    fit(blob_file, scaled, epochs=1)
    assert streambp.load(raw).mean is None and streambp.load(scaled).mean is not None
    for init, extra, has_scaler in ((raw, [], False), (scaled, ["--no-standardize"], True)):
        out = tmp_path / f"warm-{init.stem}.npz"
        invoke("fit", blob_file, "--init", init, "--epochs", "0", "--out", out, *FAST, *extra)
        warm = streambp.load(out)
        assert (warm.mean is not None) == has_scaler
        assert warm.training["config"]["standardize"] is has_scaler
        X = features_of(make_blobs()[0])
        np.testing.assert_array_equal(warm.predict_proba(X), streambp.load(init).predict_proba(X))
