"""streambp-onnx: exported graphs run in onnxruntime give model.predict_proba (with and without
--standardize, with 0, 1 and 2 hidden layers, float32 and float64 models; on raw tables with string, bool,
integer-code and numeric columns, nulls and unseen categories, one input per column; numeric tables with
nulls through the one matrix X; models without numeric inputs); the metadata; hashed columns and clashing
names refused; the command line, through a Typer app that the plugin's register_commands hook fills
(installed or not) and as a real subprocess, and its user errors."""
import importlib.metadata
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from numpy.testing import assert_allclose
import onnxruntime as ort
from typer.testing import CliRunner

# The package from this checkout, also when it is not installed (not in a conftest.py: streambp's own
# tests import helpers from theirs as `conftest`, which a second conftest.py would shadow).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# streambp.cli, imported by test modules collected earlier, loads an installed copy through its entry point
for name in [m for m in sys.modules if m == "streambp_onnx" or m.startswith("streambp_onnx.")]:
    del sys.modules[name]
import streambp_onnx  # noqa: E402
from streambp.errors import StreambpError  # noqa: E402
from streambp.features import TRACK_LIMIT, Categorical, FeatureSpec, Numeric  # noqa: E402
from streambp.model import Model, load  # noqa: E402
from streambp.plugins import call_hook, reset_plugin_manager  # noqa: E402
from streambp.registry import describe_plugins  # noqa: E402
from streambp.train import FitConfig, fit  # noqa: E402

ROWS, D, K = 300, 5, 3


pytest_plugins = ["streambp.testing"]
pytestmark = pytest.mark.usefixtures("run_in_tmp_path")  # default output paths never land in the checkout


def blobs(seed=0):
    """X float32 [ROWS, D], far from standardised (offset and scaled columns), and string labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(K, D))
    y = rng.integers(0, K, size=ROWS)
    X = (centers[y] + rng.normal(size=(ROWS, D))) * np.array([1, 3, 0.3, 5, 1]) + np.array([0, 5, -3, 0, 2])
    return X.astype(np.float32), np.array(["cat", "dog", "eel"])[y]


@pytest.fixture
def data(tmp_path):
    X, y = blobs()
    path = tmp_path / "blobs.parquet"
    pq.write_table(pa.table({**{f"x{j}": X[:, j] for j in range(D)}, "label": y}), path)
    return path


def train(data, path, hidden=(8,), standardize=False, dtype="float32"):
    fit(FitConfig(data=str(data), hidden=list(hidden), epochs=2, batch_size=16, lr=0.5, optimizer="sgd", threads=1,
                  standardize=standardize, dtype=dtype, out=str(path), loggers=[]))
    return path


def run_onnx(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["X"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    return session.run(["probabilities"], {"X": X})[0], session.get_modelmeta().custom_metadata_map


@pytest.mark.parametrize("standardize", [False, True], ids=["raw", "standardized"])
@pytest.mark.parametrize("hidden", [(8,), (), (8, 6)], ids=["1-hidden", "0-hidden", "2-hidden"])
def test_matches_predict_proba(tmp_path, data, standardize, hidden):
    model = load(train(data, tmp_path / "m.npz", hidden, standardize))
    assert (model.mean is not None) == standardize
    streambp_onnx.export(tmp_path / "m.npz", tmp_path / "m.onnx")
    X, _ = blobs(seed=1)  # other rows than the training rows
    probs, meta = run_onnx(tmp_path / "m.onnx", X)
    assert probs.dtype == np.float32 and probs.shape == (ROWS, K)
    assert_allclose(probs, model.predict_proba(X), rtol=0, atol=1e-5)
    assert ((probs > 0.05) & (probs < 0.95)).mean() > 0.05  # not saturated: the comparison means something
    assert json.loads(meta["classes"]) == ["cat", "dog", "eel"]
    assert json.loads(meta["features"]) == [f"x{j}" for j in range(D)]
    assert json.loads(meta["standardized"]) is standardize
    assert json.loads(meta["sizes"]) == [D, *hidden, K]


def test_float64_model(tmp_path, data):
    model = load(train(data, tmp_path / "m.npz", standardize=True, dtype="float64"))
    streambp_onnx.export(tmp_path / "m.npz", tmp_path / "m.onnx")
    X, _ = blobs(seed=1)
    probs, _ = run_onnx(tmp_path / "m.onnx", X)
    assert_allclose(probs, model.predict_proba(X), rtol=0, atol=1e-5)


def test_graph():
    """The graph's nodes, in order, for a standardised 2-hidden-layer model built in Python."""
    model = Model.initialise([4, 3, 2, 2], classes=[np.int64(0), np.int64(7)], features=list("abcd"),
                             mean=np.zeros(4), inv_std=np.ones(4))
    proto = streambp_onnx.to_onnx(model, opset=13)
    assert [n.op_type for n in proto.graph.node] == ["Sub", "Mul", "Gemm", "Sigmoid", "Gemm", "Sigmoid",
                                                      "Gemm", "Softmax"]
    assert [a.i for a in proto.graph.node[2].attribute if a.name == "transB"] == [1]
    assert [a.i for a in proto.graph.node[-1].attribute if a.name == "axis"] == [1]
    assert proto.opset_import[0].version == 13
    assert {p.key: p.value for p in proto.metadata_props}["classes"] == "[0, 7]"
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert (dims[0].dim_param, dims[1].dim_value) == ("N", 4)


# --- command line -------------------------------------------------------------------------------------

@pytest.fixture
def app():
    """A Typer app filled by the plugin's register_commands hook, as streambp's own app is when the plugin
    is installed (a callback keeps it a group of commands, as streambp's)."""
    app = typer.Typer()

    @app.callback()
    def main():
        pass

    streambp_onnx.register_commands(app)
    return app


def invoke(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli(app, tmp_path, data):
    train(data, tmp_path / "m.npz")
    result = invoke(app, "export-onnx", tmp_path / "m.npz", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output + "".join(traceback.format_exception(*result.exc_info))
    assert (tmp_path / "m.onnx").is_file()
    assert "Wrote" in result.output and "['cat', 'dog', 'eel']" in result.output
    assert "input X [N, 5] (columns x0, x1, x2, x3, x4; NaN where missing)" in " ".join(result.output.split())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []  # no temporary file left


def user_error(app, *args):
    result = invoke(app, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    message = " ".join(result.stderr.split())
    assert message.startswith("Error:"), message
    return message


def test_cli_missing_model(app, tmp_path):
    message = user_error(app, "export-onnx", tmp_path / "nope.npz", tmp_path / "m.onnx")
    assert "nope.npz" in message and "does not exist" in message
    assert not (tmp_path / "m.onnx").exists()


def test_cli_other_user_errors(app, tmp_path, data):
    (tmp_path / "not-a-model.npz").write_bytes(b"hello")
    model, onnx_file = tmp_path / "m.npz", tmp_path / "m.onnx"
    message = user_error(app, "export-onnx", tmp_path / "not-a-model.npz", onnx_file)
    assert "not a streambp model" in message
    train(data, model)
    assert "does not exist" in user_error(app, "export-onnx", model, tmp_path / "no-dir" / "m.onnx")
    (tmp_path / "old.onnx").write_bytes(b"previous")
    assert "--opset" in user_error(app, "export-onnx", model, tmp_path / "old.onnx", "--opset", "9")
    assert (tmp_path / "old.onnx").read_bytes() == b"previous"  # left as it was


def test_entry_point(monkeypatch, tmp_path, data):
    """Installed (pip install -e plugins/streambp-onnx), the entry point loads it and its hook adds the
    command (to a fresh app here: streambp.cli.app got its commands when it was first imported)."""
    dist = importlib.metadata.distribution("streambp-onnx")  # the test command installs it
    monkeypatch.delenv("STREAMBP_LOAD_PLUGINS", raising=False)
    reset_plugin_manager()
    try:
        entry = next(p for p in describe_plugins() if p["name"] == "onnx")
        assert entry == {"name": "onnx", "hooks": ["register_commands"], "registers": {},
                         "distribution": "streambp-onnx", "version": dist.version}
        app = typer.Typer()

        @app.callback()
        def main():
            pass

        call_hook("register_commands", app=app)
        train(data, tmp_path / "m.npz")
        result = invoke(app, "export-onnx", tmp_path / "m.npz", tmp_path / "m.onnx")
        assert result.exit_code == 0, result.output
        assert (tmp_path / "m.onnx").is_file()
        assert "nope.npz" in user_error(app, "export-onnx", tmp_path / "nope.npz", tmp_path / "x.onnx")
    finally:
        reset_plugin_manager()


# --- raw tables: one input per column, fills, indicators, category lookups ------------------------------

RAW_ROWS = 400


def raw_table(rows=RAW_ROWS, seed=0):
    """A raw table: a string column and a bool column with nulls, an integer code column, a numeric column
    with nulls (None and NaN), an unscaled numeric column, and a string label that depends on all of them."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["paris", "rome", "oslo", "lima", None], rows).tolist()
    x = rng.normal(50, 10, rows)
    x[rng.random(rows) < 0.15] = np.nan
    x_arr = pa.array([None if r < 0.1 else v for r, v in zip(rng.random(rows), x)], pa.float64())
    flag = [None if r < 0.1 else bool(r < 0.55) for r in rng.random(rows)]
    code = rng.integers(0, 4, rows).astype(np.int32)
    score = (np.nan_to_num(x, nan=40) - 50) / 10 + np.array([c in ("rome", None) for c in city]) + code / 3 - \
        np.array([f is True for f in flag])
    return pa.table({"city": pa.array(city, pa.string()), "x": x_arr, "y": rng.normal(1000, 300, rows),
                     "flag": pa.array(flag, pa.bool_()), "code": code,
                     "label": np.where(score > 0.5, "high", "low")})


def unseen_rows():
    """Rows with unseen categories and codes and nulls in every column, beside seen values."""
    return pa.table({"city": pa.array(["paris", None, "zzz", "rome", "", None, "lima"], pa.string()),
                     "x": pa.array([41.0, None, 60.0, float("nan"), 55.0, None, 49.0], pa.float64()),
                     "y": [900.0, 1000.0, 1500.0, 700.0, 1100.0, 1000.0, 1000.0],
                     "flag": pa.array([True, None, False, True, None, None, False], pa.bool_()),
                     "code": pa.array([0, 1, 9, 3, -1, 2, 2], pa.int32())})


def column_feeds(session, table):
    """The README's recipe: each input of the graph from the table's column of that name, numeric columns as
    float32 [N, 1] with NaN for null, categorical ones as [N, 1] of the input's type with any value where null
    and the "NAME missing" input true there."""
    types = {"tensor(string)": object, "tensor(bool)": np.bool_, "tensor(int32)": np.int32,
             "tensor(int64)": np.int64, "tensor(uint8)": np.uint8}
    feeds = {}
    for i in session.get_inputs():
        if i.name.endswith(" missing") and i.name[:-len(" missing")] in table.column_names and \
                i.type == "tensor(bool)":
            feeds[i.name] = table[i.name[:-len(" missing")]].is_null().to_numpy().reshape(-1, 1)
        elif i.type == "tensor(float)":
            feeds[i.name] = table[i.name].cast(pa.float64()).fill_null(np.nan).to_numpy().astype(np.float32)[:, None]
        else:
            values = table[i.name].to_pylist()
            placeholder = next(v for v in values if v is not None)  # ignored where the mask says missing
            feeds[i.name] = np.array([placeholder if v is None else v for v in values], dtype=types[i.type])[:, None]
    return feeds


def fit_raw(tmp_path, hidden=(8,), **options):
    pq.write_table(raw_table(), tmp_path / "raw.parquet")
    fit(FitConfig(data=str(tmp_path / "raw.parquet"), hidden=list(hidden), epochs=2, batch_size=16, lr=0.5,
                  optimizer="sgd",
                  threads=1, categorical=["code"], out=str(tmp_path / "m.npz"), loggers=[], **options))
    return tmp_path / "m.npz"


@pytest.mark.parametrize("hidden, dtype", [((8,), "float32"), ((), "float32"), ((8,), "float64")],
                         ids=["1-hidden", "0-hidden", "float64"])
def test_raw_table_matches_predict_proba(tmp_path, hidden, dtype):
    model = load(fit_raw(tmp_path, hidden, dtype=dtype))
    assert model.theta.dtype == dtype
    spec = model.spec
    assert [c.name for c in spec.categorical] == ["city", "flag", "code"]
    assert [(c.name, c.indicator) for c in spec.numeric] == [("x", True), ("y", False)]
    streambp_onnx.export(tmp_path / "m.npz", tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == [
        ("x", "tensor(float)", ["N", 1]), ("y", "tensor(float)", ["N", 1]),
        ("city", "tensor(string)", ["N", 1]), ("city missing", "tensor(bool)", ["N", 1]),
        ("flag", "tensor(bool)", ["N", 1]), ("flag missing", "tensor(bool)", ["N", 1]),
        ("code", "tensor(int32)", ["N", 1]), ("code missing", "tensor(bool)", ["N", 1])]
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["columns"]) == ["x", "y", "city", "flag", "code"]
    assert json.loads(meta["inputs"]) == [i.name for i in session.get_inputs()]
    assert json.loads(meta["per_column"]) is True
    for table in (unseen_rows(), raw_table(seed=1)):
        probs = session.run(["probabilities"], column_feeds(session, table))[0]
        assert probs.shape == (table.num_rows, 2)
        assert_allclose(probs, model.predict_proba(table), rtol=0, atol=1e-5)
    # the comparison can tell the slots apart: a missing city (rows 1, 5) or an unseen one ("zzz", "") moves
    # the probabilities away from those of a seen one, and those rows' are not saturated
    probs = model.predict_proba(unseen_rows())
    moved = np.abs(probs - model.predict_proba(unseen_rows().set_column(0, "city", pa.array(["lima"] * 7))))
    assert moved[[1, 2, 4, 5], 0].min() > 1e-3 and moved[6, 0] == 0
    assert ((probs[1:6] > 0.02) & (probs[1:6] < 0.98)).all()


@pytest.mark.parametrize("opset", [13, streambp_onnx.DEFAULT_OPSET])
def test_categorical_only_and_edge_columns(tmp_path, opset):
    """A model built in Python without numeric inputs (the first layer is the bag plus its bias), with a
    column whose every value was rare (all "other"), a uint8 code column and a dictionary-encoded one."""
    spec = FeatureSpec(categorical=[Categorical("rare", [], "string", offset=0),
                                    Categorical("level", [3, 7, 200], "uint8", offset=2),
                                    Categorical("colour", ["blue", "red"], "string", offset=7)])
    model = Model.initialise([0, 5, 3], classes=["a", "b", "c"], features=spec, seed=3)
    model.layers[0][1][:] = [0.5, -0.5, 1.0, 0.0, 0.2]  # a bias, so that leaving it out shows
    table = pa.table({"rare": pa.array(["q", None, "w", "q", None]),
                      "level": pa.array([3, 7, 200, 9, None], pa.uint8()),
                      "colour": pa.array(["red", "blue", None, "green", "red"]).dictionary_encode()})
    path = tmp_path / "m.onnx"
    proto = streambp_onnx.to_onnx(model, opset)
    assert {(o.domain, o.version) for o in proto.opset_import} == {("", opset), ("ai.onnx.ml", 2)}
    path.write_bytes(proto.SerializeToString())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [
        ("rare", "tensor(string)"), ("rare missing", "tensor(bool)"), ("level", "tensor(uint8)"),
        ("level missing", "tensor(bool)"), ("colour", "tensor(string)"), ("colour missing", "tensor(bool)")]
    feeds = column_feeds(session, table.set_column(2, "colour", table["colour"].cast(pa.string())))
    probs = session.run(["probabilities"], feeds)[0]
    assert_allclose(probs, model.predict_proba(table), rtol=0, atol=1e-5)


def test_numeric_table_with_nulls_takes_one_matrix(tmp_path):
    """A model without categorical columns keeps the single input X, [N, Dn] of its numeric columns with NaN
    where missing: the graph fills them and appends the missing indicators (D = Dn + 1 here)."""
    table = raw_table().select(["x", "y", "label"])
    pq.write_table(table, tmp_path / "num.parquet")
    fit(FitConfig(data=str(tmp_path / "num.parquet"), hidden=[8], epochs=2, batch_size=16, lr=0.5,
                  optimizer="sgd", threads=1,
                  out=str(tmp_path / "m.npz"), loggers=[]))
    model = load(tmp_path / "m.npz")
    assert model.features == ["x", "y", "x missing"]
    streambp_onnx.export(tmp_path / "m.npz", tmp_path / "m.onnx")
    test = unseen_rows().select(["x", "y"])
    X = np.stack([test[c].cast(pa.float64()).fill_null(np.nan).to_numpy() for c in ("x", "y")], 1).astype(np.float32)
    probs, meta = run_onnx(tmp_path / "m.onnx", X)
    assert json.loads(meta["columns"]) == ["x", "y"] and json.loads(meta["per_column"]) is False
    assert_allclose(probs, model.predict_proba(test), rtol=0, atol=1e-5)
    assert np.abs(probs[1] - probs[5]).max() < 1e-6 and np.abs(probs[1] - probs[6]).max() > 1e-3


def readme_recipe():
    """The README's Python example: how to feed the graph a table."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    return text.split("```python\n")[1].split("```")[0]


@pytest.mark.parametrize("columns", [["city", "x", "y", "flag", "code"], ["x", "y"]], ids=["per-column", "matrix"])
def test_readme_recipe(tmp_path, columns):
    """The README's example, run as it stands on a model.onnx and a new_rows.parquet, gives predict_proba."""
    pq.write_table(raw_table().select([*columns, "label"]), tmp_path / "raw.parquet")
    fit(FitConfig(data=str(tmp_path / "raw.parquet"), hidden=[8], epochs=2, batch_size=16, lr=0.5,
                  optimizer="sgd", threads=1,
                  categorical=["code"] if "code" in columns else [], out=str(tmp_path / "m.npz"), loggers=[]))
    model = load(tmp_path / "m.npz")
    streambp_onnx.export(tmp_path / "m.npz", tmp_path / "model.onnx")
    rows = unseen_rows().select(columns)
    if "city" in columns:  # as Parquet files from pandas often hold strings
        rows = rows.set_column(columns.index("city"), "city", rows["city"].dictionary_encode())
    pq.write_table(rows, tmp_path / "new_rows.parquet")
    namespace = {}
    exec(readme_recipe(), namespace)  # reads model.onnx and new_rows.parquet in the current directory
    assert_allclose(namespace["probabilities"], model.predict_proba(rows), rtol=0, atol=1e-5)
    assert namespace["predicted"] == list(model.predict(rows))


def test_cli_raw_table(app, tmp_path):
    fit_raw(tmp_path)
    result = invoke(app, "export-onnx", tmp_path / "m.npz", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output + "".join(traceback.format_exception(*result.exc_info))
    assert "inputs: one per column (x, y, city, flag, code), and a bool 'NAME missing' input per categorical " \
           "column" in " ".join(result.output.split())
    assert (tmp_path / "m.onnx").is_file()


def test_list_column_model(app, tmp_path):
    """A model of one list column takes X [N, D], the list's values."""
    X, y = blobs()
    pq.write_table(pa.table({"v": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), D), "label": y}),
                   tmp_path / "list.parquet")
    fit(FitConfig(data=str(tmp_path / "list.parquet"), features=["v"], hidden=[8], epochs=2, batch_size=16,
                  lr=0.5, threads=1, out=str(tmp_path / "m.npz"), loggers=[]))
    model = load(tmp_path / "m.npz")
    assert model.input_column == "v"
    result = invoke(app, "export-onnx", tmp_path / "m.npz", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output
    assert "input X [N, 5] (the values of list column v)" in " ".join(result.output.split())
    X1, _ = blobs(seed=1)
    probs, meta = run_onnx(tmp_path / "m.onnx", X1)
    assert json.loads(meta["columns"]) == ["v"]
    assert_allclose(probs, model.predict_proba(X1), rtol=0, atol=1e-5)


def test_hashed_column_refused(tmp_path):
    """The real command on a model with a hashed column: exit 2, one paragraph naming the column and the fix,
    no traceback, no output file, the model file and an existing output file unchanged."""
    model = fit_raw(tmp_path, hash_buckets=32)
    before = model.read_bytes()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                                        *filter(None, sys.path)])}
    (tmp_path / "old.onnx").write_bytes(b"previous")
    files = sorted(p.name for p in tmp_path.iterdir())
    for out in (tmp_path / "m.onnx", tmp_path / "old.onnx"):
        result = subprocess.run([sys.executable, "-m", "streambp", "export-onnx", str(model), str(out)],
                                capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        message = " ".join(result.stderr.split())
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        assert message.startswith("Error: Categorical column 'city' of the model is hashed into 32 buckets"), message
        assert "FNV-1a" in message and "retrain without --hash-buckets, with --max-categories 4 or more" in message
    assert not (tmp_path / "m.onnx").exists()
    assert (tmp_path / "old.onnx").read_bytes() == b"previous"
    assert model.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # no temporary file left either


def test_other_refusals():
    """A column hashed because it had too many distinct values names the other fix; a category type the
    graph cannot look up and column names that would clash in the graph are refused."""
    many = Categorical("user", None, "string", buckets=1 << 16, distinct=TRACK_LIMIT + 1)
    model = Model.initialise([1, 2], classes=[0, 1], features=FeatureSpec([Numeric("a", 0.0)], [many]))
    with pytest.raises(StreambpError, match=r"'user' .* more than 262,144 distinct values, which streambp always "
                                            r"hashes: leave it out with --ignore user"):
        streambp_onnx.to_onnx(model)
    odd = Categorical("price", [0.5, 1.5], "double")  # not a type streambp makes categorical; a model file could
    model = Model.initialise([1, 2], classes=[0, 1], features=FeatureSpec([Numeric("a", 0.0)], [odd]))
    with pytest.raises(StreambpError, match="'price' of the model holds double values; export-onnx handles string"):
        streambp_onnx.to_onnx(model)
    for names in (["probabilities", "b"], ["a missing", "a"]):
        spec = FeatureSpec([Numeric(names[0], 0.0)], [Categorical(names[1], ["u"], "string")])
        model = Model.initialise([1, 2], classes=[0, 1], features=spec)
        clash = names[0]
        with pytest.raises(StreambpError, match=f"two values named '{clash}'.*Rename the column"):
            streambp_onnx.to_onnx(model)
