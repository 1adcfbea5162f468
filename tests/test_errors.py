"""User errors: exit code 2 and one paragraph naming the file, column and row, never a traceback."""
import json
import os
import subprocess
import sys
import traceback

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import streambp
from streambp.model import Model

from conftest import blob_table, run

FAST = ["--threads", "1", "--epochs", "1", "--hidden", "4", "--batch-size", "16"]


def user_error(*args, names=(), code=2):
    """Run the CLI, expect exit `code` with one paragraph (no traceback) holding every string in `names`."""
    result = run(*args)
    detail = ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        detail = "".join(traceback.format_exception(*result.exc_info))
    assert result.exit_code == code, (f"exit {result.exit_code}, expected {code}\noutput:\n"
                                      f"{result.output}\n{detail}")
    out = result.output
    assert "Traceback" not in out
    assert out.count("Error:") == 1, out
    # The message goes to stderr, not stdout (where the output of a command may be piped), and is all
    # that goes there (progress bars are only drawn on a terminal).
    message = result.stderr.strip()
    assert message.startswith("Error:"), f"stderr does not hold just the error:\n{result.stderr}"
    assert "\n\n" not in message, f"not one paragraph:\n{message}"
    assert "Error:" not in result.stdout
    print(message)
    flat = " ".join(message.split())
    for name in names:
        assert str(name) in flat, f"{name!r} not in the message:\n{out}"
    return flat


def write(path, table, **kwargs):
    pq.write_table(table, path, **kwargs)
    return path


def blob_columns(X, y):
    return {**{f"x{j}": X[:, j] for j in range(X.shape[1])}, "label": y}


@pytest.fixture
def model_file(tmp_path, blob_file):
    out = tmp_path / "model.npz"
    result = run("fit", blob_file, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    return out


# ---------------------------------------------------------------------------------------------- files


@pytest.mark.parametrize("command", ["fit", "predict", "evaluate"])
def test_missing_data(tmp_path, model_file, command):
    path = tmp_path / "missing.parquet"
    args = ["fit", path, "--out", tmp_path / "m2.npz", *FAST] if command == "fit" else \
        [command, model_file, path]
    flat = user_error(*args, names=[path])
    assert "not exist" in flat


@pytest.mark.parametrize("command", ["fit", "predict"])
def test_missing_data_without_parquet_extension(tmp_path, model_file, command):
    # A path that does not exist should be reported as missing, not as lacking a --source.
    path = tmp_path / "missing_dir"
    args = ["fit", path, "--out", tmp_path / "m2.npz", *FAST] if command == "fit" else \
        [command, model_file, path]
    flat = user_error(*args, names=[path])
    assert "not exist" in flat


def test_directory_without_parquet_files(tmp_path):
    d = tmp_path / "empty_dir"
    d.mkdir()
    (d / "notes.txt").write_text("not data")
    user_error("fit", d, "--out", tmp_path / "m.npz", *FAST, names=[d])


def test_glob_matching_nothing(tmp_path):
    pattern = str(tmp_path / "nothing-*.parquet")
    user_error("fit", pattern, "--out", tmp_path / "m.npz", *FAST, names=[pattern])


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, size=4096, dtype=np.uint8).tobytes())
    user_error("fit", path, "--out", tmp_path / "m.npz", *FAST, names=[path])


def test_truncated_parquet(tmp_path, blob_file):
    path = tmp_path / "truncated.parquet"
    data = blob_file.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    user_error("fit", path, "--out", tmp_path / "m.npz", *FAST, names=[path])


def test_parquet_with_corrupt_data_pages(tmp_path, blobs):
    # Footer intact, so the metadata reads; the damage shows only while streaming.
    path = tmp_path / "damaged.parquet"
    write(path, blob_table(*blobs), row_group_size=128, compression="snappy")
    data = bytearray(path.read_bytes())
    meta = pq.read_metadata(path)
    start = meta.row_group(1).column(0).data_page_offset
    data[start:start + 200] = b"\xff" * 200
    path.write_bytes(bytes(data))
    user_error("fit", path, "--out", tmp_path / "m.npz", *FAST, names=[path])


# ---------------------------------------------------------------------------------------------- columns


def test_missing_label_column(tmp_path, blobs):
    X, _ = blobs
    path = write(tmp_path / "nolabel.parquet", pa.table({f"x{j}": X[:, j] for j in range(5)}))
    user_error("fit", path, "--out", tmp_path / "m.npz", *FAST, names=[path, "label"])


def test_missing_named_label_column(tmp_path, blob_file):
    user_error("fit", blob_file, "--label", "target", "--out", tmp_path / "m.npz", *FAST,
               names=[blob_file, "target"])


def test_missing_feature_column(tmp_path, blob_file):
    user_error("fit", blob_file, "--features", "x0,x9", "--out", tmp_path / "m.npz", *FAST,
               names=[blob_file, "x9"])


def test_unusable_feature_column(tmp_path, blobs):
    X, y = blobs
    table = pa.table({**blob_columns(X, y), "blob": [f"row{i}".encode() for i in range(len(y))]})
    path = write(tmp_path / "binary.parquet", table)
    flat = user_error("fit", path, "--features", "x0,blob", "--out", tmp_path / "m.npz", *FAST,
                      names=[path, "blob"])
    assert "binary" in flat


@pytest.mark.parametrize("features", ["x0,label", "label,x0", "x0,label,x1"])
def test_label_named_as_feature(tmp_path, blob_file, features):
    out = tmp_path / "m.npz"
    user_error("fit", blob_file, "--features", features, "--out", out, *FAST, names=["label"])
    assert not out.exists()


def test_no_usable_features(tmp_path):
    path = write(tmp_path / "only_binary.parquet",
                 pa.table({"name": [b"a", b"b", b"c", b"d"], "label": [0, 1, 0, 1]}))
    user_error("fit", path, "--out", tmp_path / "m.npz", *FAST, names=[path, "name", "binary"])


# ---------------------------------------------------------------------------------------------- values


def with_nulls(values, rows):
    mask = np.zeros(len(values), dtype=bool)
    mask[rows] = True
    return pa.array(values, mask=mask)


def test_null_in_feature_of_an_old_model_is_an_error(tmp_path, blobs):
    # Models before format 3 have no fill values: a null stays a bad row for them.
    X, y = blobs
    path = write(tmp_path / "clean.parquet", blob_table(X, y))
    model = tmp_path / "old.npz"
    Model.initialise([5, 4, 3], [0, 1, 2], [f"x{j}" for j in range(5)]).save(model)
    cols = blob_columns(X, y)
    cols["x3"] = with_nulls(X[:, 3], [417])
    nulls = write(tmp_path / "nulls.parquet", pa.table(cols), row_group_size=128)
    user_error("predict", model, nulls, "--out", tmp_path / "p.parquet", names=[nulls, "x3", "417"])
    assert path.exists()


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_non_finite_feature(tmp_path, blobs, bad):
    X, y = blobs
    X = X.copy()
    X[333, 2] = bad
    path = write(tmp_path / "nonfinite.parquet", blob_table(X, y), row_group_size=128)
    user_error("fit", path, "--out", tmp_path / "m.npz", *FAST, names=[path, "x2", "333"])


def test_non_finite_feature_in_second_file(tmp_path, blobs):
    X, y = blobs
    d = tmp_path / "parts"
    d.mkdir()
    X = X.copy()
    X[300 + 12, 4] = np.inf  # row 12 of the second file
    write(d / "a.parquet", blob_table(X[:300], y[:300]))
    bad = write(d / "b.parquet", blob_table(X[300:], y[300:]), row_group_size=7)
    flat = user_error("fit", d, "--out", tmp_path / "m.npz", *FAST, names=[bad, "x4", "row 12"])
    assert str(d / "a.parquet") not in flat


def test_non_finite_in_vector_column(tmp_path, blobs):
    X, y = blobs
    X = X.copy()
    X[250, 1] = np.inf
    vec = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1), type=pa.float32()), 5)
    path = write(tmp_path / "vec.parquet", pa.table({"vec": vec, "label": y}), row_group_size=100)
    user_error("fit", path, "--out", tmp_path / "m.npz", *FAST, names=[path, "vec", "250"])


def test_null_in_vector_column(tmp_path, blobs):
    X, y = blobs
    offsets = pa.array(np.arange(0, X.size + 1, 5, dtype=np.int32))
    vec = pa.ListArray.from_arrays(offsets, pa.array(X.reshape(-1), type=pa.float32()),
                                   mask=pa.array(np.arange(len(y)) == 90))
    path = write(tmp_path / "vecnull.parquet", pa.table({"vec": vec, "label": y}))
    user_error("fit", path, "--out", tmp_path / "m.npz", *FAST, names=[path, "vec", "90"])


def test_ragged_vector_column(tmp_path, blobs):
    X, y = blobs
    rows = [list(map(float, r)) for r in X]
    rows[77] = rows[77][:4]
    path = write(tmp_path / "ragged.parquet",
                 pa.table({"vec": pa.array(rows, type=pa.list_(pa.float32())), "label": y}))
    user_error("fit", path, "--out", tmp_path / "m.npz", *FAST, names=[path, "vec", "77"])


def test_null_label(tmp_path, blobs):
    X, y = blobs
    cols = blob_columns(X, y)
    cols["label"] = with_nulls(y, [211])
    path = write(tmp_path / "nulllabel.parquet", pa.table(cols), row_group_size=128)
    user_error("fit", path, "--out", tmp_path / "m.npz", *FAST, names=[path, "label", "211"])


def test_nan_label(tmp_path, blobs):
    X, y = blobs
    cols = blob_columns(X, y.astype(np.float64))
    cols["label"][45] = np.nan
    path = write(tmp_path / "nanlabel.parquet", pa.table(cols))
    user_error("fit", path, "--out", tmp_path / "m.npz", *FAST, names=[path, "label", "45"])


def test_single_class(tmp_path, blobs):
    X, y = blobs
    path = write(tmp_path / "oneclass.parquet", blob_table(X, np.ones_like(y)))
    flat = user_error("fit", path, "--out", tmp_path / "m.npz", *FAST, names=[path, "label"])
    assert "class" in flat


def test_empty_dataset(tmp_path, blobs):
    X, y = blobs
    path = write(tmp_path / "empty.parquet", blob_table(X[:0], y[:0]))
    assert pq.read_metadata(path).num_rows == 0
    flat = user_error("fit", path, "--out", tmp_path / "m.npz", *FAST, names=[path])
    assert "no rows" in flat


def test_empty_dataset_vector_column(tmp_path):
    vec = pa.FixedSizeListArray.from_arrays(pa.array([], type=pa.float32()), 5)
    path = write(tmp_path / "emptyvec.parquet", pa.table({"vec": vec, "label": pa.array([], pa.int64())}))
    user_error("fit", path, "--out", tmp_path / "m.npz", *FAST, names=[path])


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_empty_dataset_predict_evaluate(tmp_path, model_file, blobs, command):
    X, y = blobs
    path = write(tmp_path / "empty.parquet", blob_table(X[:0], y[:0]))
    out = tmp_path / "pred.parquet"
    user_error(command, model_file, path, *(["--out", out] if command == "predict" else []), names=[path])
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- datasets


def write_parts(tmp_path, blobs, third):
    X, y = blobs
    d = tmp_path / "parts"
    d.mkdir()
    write(d / "part-0.parquet", blob_table(X[:200], y[:200]))
    write(d / "part-1.parquet", blob_table(X[200:400], y[200:400]))
    bad = write(d / "part-2.parquet", third(X[400:], y[400:]))
    return d, bad


def test_directory_file_missing_column(tmp_path, blobs):
    d, bad = write_parts(tmp_path, blobs, lambda X, y: blob_table(X, y).drop_columns(["x3"]))
    user_error("fit", d, "--out", tmp_path / "m.npz", *FAST, names=[bad, "x3"])


def test_directory_file_with_other_type(tmp_path, blobs):
    def third(X, y):
        cols = blob_columns(X, y)
        cols["x1"] = pa.array([str(v) for v in X[:, 1]])
        return pa.table(cols)

    d, bad = write_parts(tmp_path, blobs, third)
    user_error("fit", d, "--out", tmp_path / "m.npz", *FAST, names=[bad, "x1"])


def test_directory_file_with_other_label_type(tmp_path, blobs):
    def third(X, y):
        cols = blob_columns(X, y)
        cols["label"] = pa.array([str(v) for v in y])
        return pa.table(cols)

    d, bad = write_parts(tmp_path, blobs, third)
    user_error("fit", d, "--out", tmp_path / "m.npz", *FAST, names=[bad, "label"])


def test_directory_with_one_corrupt_file(tmp_path, blobs):
    d, bad = write_parts(tmp_path, blobs, lambda X, y: blob_table(X, y))
    bad.write_bytes(b"PAR1 this is not really parquet PAR1")
    user_error("fit", d, "--out", tmp_path / "m.npz", *FAST, names=[bad])


def test_val_with_missing_column(tmp_path, blob_file, blobs):
    X, y = blobs
    val = write(tmp_path / "val.parquet", blob_table(X, y).drop_columns(["x4"]))
    user_error("fit", blob_file, "--val", val, "--out", tmp_path / "m.npz", *FAST, names=[val, "x4"])


# ---------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_model_features_missing_from_data(tmp_path, model_file, blobs, command):
    X, y = blobs
    path = write(tmp_path / "fewer.parquet", blob_table(X, y).drop_columns(["x2"]))
    out = tmp_path / "pred.parquet"
    user_error(command, model_file, path, *(["--out", out] if command == "predict" else []),
               names=[path, "x2"])
    assert not out.exists()


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_model_feature_with_wrong_type(tmp_path, model_file, blobs, command):
    X, y = blobs
    cols = blob_columns(X, y)
    cols["x0"] = pa.array([f"{v}" for v in X[:, 0]])
    path = write(tmp_path / "strings.parquet", pa.table(cols))
    user_error(command, model_file, path, names=[path, "x0"])


def test_evaluate_without_label_column(tmp_path, model_file, blobs):
    X, _ = blobs
    path = write(tmp_path / "nolabel.parquet", pa.table({f"x{j}": X[:, j] for j in range(5)}))
    user_error("evaluate", model_file, path, names=[path, "label"])


def test_predict_missing_id_column(tmp_path, model_file, blob_file):
    user_error("predict", model_file, blob_file, "--id", "row_id", "--out", tmp_path / "p.parquet",
               names=[blob_file, "row_id"])


def test_predict_nan_feature(tmp_path, model_file, blobs):
    X, y = blobs
    X = X.copy()
    X[99, 0] = -np.inf
    path = write(tmp_path / "nan.parquet", blob_table(X, y), row_group_size=50)
    out = tmp_path / "pred.parquet"
    user_error("predict", model_file, path, "--out", out, names=[path, "x0", "99"])
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def write_bad_model(path, kind, model_file):
    if kind == "random":
        path.write_bytes(np.random.default_rng(1).integers(0, 256, size=2048, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        data = model_file.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif kind == "text":
        path.write_text("this is not a model\n")
    else:  # a plain .npy array, not an .npz archive
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    return path


@pytest.mark.parametrize("kind", ["random", "truncated", "text", "npy"])
def test_corrupt_model_file(tmp_path, model_file, blob_file, kind):
    bad = write_bad_model(tmp_path / "bad.npz", kind, model_file)
    out = tmp_path / "pred.parquet"
    user_error("predict", bad, blob_file, "--out", out, names=[bad])
    assert not out.exists()


@pytest.mark.parametrize("command", ["evaluate", "inspect", "fit-init"])
def test_corrupt_model_file_other_commands(tmp_path, model_file, blob_file, command):
    bad = write_bad_model(tmp_path / "bad.npz", "random", model_file)
    if command == "fit-init":
        args = ["fit", blob_file, "--init", bad, "--out", tmp_path / "m2.npz", *FAST]
    elif command == "inspect":
        args = ["inspect", bad]
    else:
        args = [command, bad, blob_file]
    user_error(*args, names=[bad])


@pytest.mark.parametrize("kind", ["random", "text"])
def test_corrupt_model_message_does_not_suggest_unpickling(tmp_path, model_file, blob_file, kind):
    bad = write_bad_model(tmp_path / "bad.npz", kind, model_file)
    flat = user_error("predict", bad, blob_file, names=[bad])
    # numpy's advice to load an untrusted file with allow_pickle / pickle.load is wrong here (and unsafe):
    # the file is simply not a streambp model.
    assert "pickle" not in flat.lower()


def test_missing_model_file(tmp_path, blob_file):
    missing = tmp_path / "nope.npz"
    user_error("predict", missing, blob_file, names=[missing])


def test_npz_that_is_not_a_model(tmp_path, blob_file):
    bad = tmp_path / "other.npz"
    np.savez(bad, theta=np.zeros(3), metadata=np.frombuffer(b'{"format": "something-else"}', dtype=np.uint8))
    user_error("predict", bad, blob_file, names=[bad])


def test_model_metadata_without_sizes(tmp_path, blob_file):
    bad = tmp_path / "partial.npz"
    meta = b'{"format": "streambp-model", "format_version": 1}'
    np.savez(bad, theta=np.zeros(3, dtype=np.float32), metadata=np.frombuffer(meta, dtype=np.uint8))
    user_error("inspect", bad, names=[bad])


def test_model_from_newer_format(tmp_path, model_file, blob_file):
    newer = tmp_path / "newer.npz"
    m = streambp.load(model_file)
    m.save(newer)
    with np.load(newer) as z:
        arrays = {k: z[k] for k in z.files}  # theta and the scaler arrays
    meta = json.loads(arrays.pop("metadata").tobytes()) | {"format_version": 99}
    np.savez(newer, metadata=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    flat = user_error("predict", newer, blob_file, names=[newer])
    assert "99" in flat


def test_init_model_with_other_features(tmp_path, model_file, blobs):
    X, y = blobs
    path = write(tmp_path / "renamed.parquet",
                 pa.table({**{f"f{j}": X[:, j] for j in range(5)}, "label": y}))
    user_error("fit", path, "--init", model_file, "--out", tmp_path / "m2.npz", *FAST, names=[path, "x0"])


def test_init_model_with_new_label(tmp_path, model_file, blobs):
    X, y = blobs
    y = y.copy()
    y[:5] = 9
    path = write(tmp_path / "newlabel.parquet", blob_table(X, y))
    user_error("fit", path, "--init", model_file, "--out", tmp_path / "m2.npz", "--threads", "1",
               "--epochs", "1", names=[path, "9"])


# ---------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize("hidden", ["abc", "8,x", "-3", "0,4", "8,0"])
def test_invalid_hidden(tmp_path, blob_file, hidden):
    out = tmp_path / "m.npz"
    user_error("fit", blob_file, "--hidden", hidden, "--out", out, "--threads", "1", names=["--hidden"])
    assert not out.exists()


@pytest.mark.parametrize("option,value", [("--batch-size", "0"), ("--batch-size", "-5"), ("--epochs", "-1"),
                                          ("--lr", "0"), ("--lr", "-0.1"), ("--lr", "nan"),
                                          ("--buffer-rows", "0")])
def test_invalid_numbers(tmp_path, blob_file, option, value):
    out = tmp_path / "m.npz"
    user_error("fit", blob_file, option, value, "--out", out, "--threads", "1", names=[option])
    assert not out.exists()


def test_unknown_optimizer(tmp_path, blob_file):
    flat = user_error("fit", blob_file, "--optimizer", "nope", "--out", tmp_path / "m.npz", *FAST,
                      names=["nope", "sgd"])
    assert "optimizer" in flat


def test_unknown_logger(tmp_path, blob_file):
    user_error("fit", blob_file, "--logger", "nope", "--out", tmp_path / "m.npz", *FAST,
               names=["nope", "console"])


def test_unknown_source(tmp_path, blob_file):
    user_error("fit", blob_file, "--source", "nope", "--out", tmp_path / "m.npz", *FAST,
               names=["nope", "parquet"])


@pytest.mark.parametrize("sizes", ["abc", "5", "4,0,3"])
def test_gradcheck_invalid_sizes(sizes):
    user_error("gradcheck", "--sizes", sizes, names=["--sizes"])


def test_divergence_exits_3_without_writing_the_model(tmp_path, blobs):
    X, y = blobs
    path = write(tmp_path / "huge.parquet", blob_table(X * 1e30, y))
    out = tmp_path / "m.npz"
    user_error("fit", path, "--lr", "1e30", "--out", out, "--threads", "1", "--epochs", "1", "--hidden", "0",
               "--no-standardize", names=["diverged", "--lr"], code=3)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- --out


def test_existing_model_not_overwritten_when_fit_fails(tmp_path, blobs):
    X, y = blobs
    X = X.copy()
    X[500, 1] = np.inf
    path = write(tmp_path / "nan.parquet", blob_table(X, y))
    out = tmp_path / "model.npz"
    sentinel = b"the user's precious model\n" * 100
    out.write_bytes(sentinel)
    # without the scaling pre-pass the NaN is met while training, after the run directory was made
    user_error("fit", path, "--out", out, "--no-standardize", *FAST, names=[path, "x1", "500"])
    assert out.read_bytes() == sentinel
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "nan.parquet", "runs"]
    (run,) = (tmp_path / "runs").iterdir()  # the failed run's settings and events, no temporary file
    assert sorted(p.name for p in run.iterdir()) == ["config.toml", "events.jsonl"]


def test_existing_predictions_not_overwritten_when_predict_fails(tmp_path, model_file, blobs):
    X, y = blobs
    X = X.copy()
    X[590, 1] = np.inf
    path = write(tmp_path / "inf.parquet", blob_table(X, y), row_group_size=100)
    out = tmp_path / "pred.parquet"
    out.write_bytes(b"old predictions")
    user_error("predict", model_file, path, "--out", out, names=[path, "x1", "590"])
    assert out.read_bytes() == b"old predictions"


def test_failed_fit_in_second_epoch_keeps_old_model(tmp_path, blobs):
    # Validation data with an inf fails after the first epoch has trained.
    X, y = blobs
    Xv = X[:100].copy()
    Xv[50, 0] = np.inf
    val = write(tmp_path / "val.parquet", blob_table(Xv, y[:100]))
    train = write(tmp_path / "train.parquet", blob_table(X, y))
    out = tmp_path / "model.npz"
    out.write_bytes(b"sentinel")
    user_error("fit", train, "--val", val, "--out", out, *FAST, names=[val, "x0", "50"])
    assert out.read_bytes() == b"sentinel"


# ---------------------------------------------------------------------------------------------- real process


def test_subprocess_user_error_has_no_traceback(tmp_path, blobs):
    X, y = blobs
    X = X.copy()
    X[10, 0] = np.inf
    path = write(tmp_path / "nan.parquet", blob_table(X, y))
    script = os.path.join(os.path.dirname(sys.executable), "streambp")
    main = [sys.executable, "-c", "from streambp.cli import main; main()"]
    cmd = [script] if os.path.exists(script) else main
    proc = subprocess.run([*cmd, "fit", str(path), "--out", str(tmp_path / "m.npz"), *FAST],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert str(path) in " ".join(proc.stderr.split())
    assert "x0" in proc.stderr and "10" in proc.stderr
    assert not (tmp_path / "m.npz").exists()


def test_out_in_missing_directory(tmp_path, blob_file):
    out = tmp_path / "no_such_dir" / "model.npz"
    user_error("fit", blob_file, "--out", out, *FAST, names=[out.parent])
    assert not out.parent.exists()


def test_out_is_a_directory(tmp_path, blob_file):
    out = tmp_path / "a_dir"
    out.mkdir()
    user_error("fit", blob_file, "--out", out, *FAST, names=[out])
    assert out.is_dir() and not any(out.iterdir())


def test_predict_out_in_missing_directory(tmp_path, model_file, blob_file):
    out = tmp_path / "no_such_dir" / "pred.parquet"
    user_error("predict", model_file, blob_file, "--out", out, names=[out.parent])


@pytest.mark.parametrize("threads", ["-1", "-8"])
def test_invalid_threads(tmp_path, blob_file, threads):
    out = tmp_path / "m.npz"
    user_error("fit", blob_file, "--threads", threads, "--out", out, "--epochs", "1", "--hidden", "4",
               names=["--threads"])
    assert not out.exists()


def test_message_shows_brackets_in_paths_literally(tmp_path):
    # The message is printed with rich; a path is data, not markup, and must come out unchanged.
    pattern = str(tmp_path / "data-[ab]*.parquet")
    user_error("fit", pattern, "--out", tmp_path / "m.npz", *FAST, names=[pattern])


# ---------------------------------------------------------------------------------------------- option values


@pytest.mark.parametrize("args,names", [
    (["--hidden", " "], ["--hidden", "' '"]),  # meant no hidden layer before
    (["--hidden", ","], ["--hidden", "','"]),
    (["--hidden", "8,"], ["--hidden"]),
    (["--seed", "-1"], ["--seed", "-1"]),
    (["--lr", "inf"], ["--lr", "inf"]),
    (["--lr", "-inf"], ["--lr"]),
    (["--lr-schedule", "cosine", "--lr-min", "nan"], ["--lr-min", "nan"]),
    (["--lr-schedule", "cosine", "--lr-min", "-0.5"], ["--lr-min"]),
    (["--features", "x0,,x1"], ["--features", "x0,,x1"]),
    (["--ignore", "x0,"], ["--ignore"]),
    (["--ignore", "x3", "--categorical", "x3"], ["x3", "--ignore", "--categorical"]),
    (["--categorical", "x1,x2", "--numeric", "x2"], ["x2", "--categorical", "--numeric"]),
    (["--ignore", "x4", "--numeric", "x4"], ["x4", "--ignore", "--numeric"]),
    (["--max-categories", "0"], ["--max-categories"]),
    (["--min-frequency", "0"], ["--min-frequency"]),
    (["--hash-buckets", "1"], ["--hash-buckets"]),
    (["--hash-buckets", "-4"], ["--hash-buckets"]),
    (["--warmup-steps", "-1"], ["--warmup-steps"]),
    (["--momentum", "nan"], ["momentum"]),
])
def test_invalid_option_values_are_refused_up_front(tmp_path, blob_file, args, names):
    out = tmp_path / "m.npz"
    before = blob_file.read_bytes()
    user_error("fit", blob_file, *args, "--out", out, "--threads", "1", "--epochs", "1", names=names)
    assert not out.exists() and not (tmp_path / "runs").exists()
    assert blob_file.read_bytes() == before


@pytest.mark.parametrize("args,option", [
    (["--hidden", "1000000,1000000"], "--hidden"),  # 1e12 parameters: 7 TiB
    (["--batch-size", "100000000000"], "--batch-size"),
    (["--buffer-rows", "100000000000"], "--buffer-rows"),
])
def test_a_fit_that_cannot_fit_in_memory_is_refused_naming_the_option(tmp_path, blob_file, args, option):
    out = tmp_path / "m.npz"
    flat = user_error("fit", blob_file, *args, "--out", out, "--threads", "1", "--epochs", "1",
                      names=[option, "GiB", "available", f"smaller {option}"])
    assert not out.exists()
    print(flat)


def test_the_memory_estimate_counts_what_fit_allocates():
    from streambp.config import FitConfig, memory_needed
    from streambp.model import Model, Workspace

    c = FitConfig(data="d", batch_size=24, buffer_rows=100, prefetch=2)
    sizes = [7, 5, 4, 3]
    parts = memory_needed(c, sizes, parameter_arrays=2)
    model = Model.initialise(sizes, [0, 1, 2], [f"x{j}" for j in range(7)])
    assert parts["--hidden"] == 2 * model.theta.nbytes
    ws = Workspace(sizes, c.batch_size, model.theta.dtype)
    assert parts["--batch-size"] == ws.acts.nbytes + ws.deltas.nbytes
    # 96 rows per buffer (--buffer-rows rounded down to whole minibatches), 7 float32 features and an int32 label
    assert parts["--buffer-rows"] == (2 + 3) * 96 * (7 * 4 + 4)


def test_the_memory_estimate_counts_the_embedding_table_and_its_optimizer_state():
    from streambp.config import FitConfig, memory_needed
    from streambp.features import Categorical, FeatureSpec, Numeric
    from streambp.model import Model
    from streambp.registry import optimizers
    from streambp.step import make_optimizer

    spec = FeatureSpec([Numeric("x", 0.0)], [Categorical("k", [f"v{i}" for i in range(50)], "string")])
    model = Model.initialise([1, 6, 2], [0, 1], spec)
    adam = make_optimizer(optimizers.get("adam")[0], model).table
    table_bytes = model.table.nbytes + sum(a.nbytes for a in adam.state.values())
    for hashed, option in ((0, "--max-categories"), (64, "--hash-buckets")):
        parts = memory_needed(FitConfig(data="d", hash_buckets=hashed, batch_size=32), model.sizes, 2,
                              slots=model.slots)
        assert parts[option] == table_bytes


def test_memory_check_compares_with_the_memory_available(monkeypatch, blob_file, tmp_path):
    import streambp.config
    from streambp.config import FitConfig
    from streambp.errors import StreambpError
    from streambp.train import fit

    c = FitConfig(data=str(blob_file), hidden=[64], epochs=0, threads=1, out=None, loggers=[])
    # 5-64-3: 579 parameters, x2 float32 = 4,632 bytes; minibatch 2 x 32 x 67 x 4 = 17,152; buffers 4 x 16,384 x 24
    monkeypatch.setattr(streambp.config, "available_memory", lambda: 4632 + 17152 + 4 * 16384 * 24 - 1)
    with pytest.raises(StreambpError, match="smaller --buffer-rows"):
        fit(c)
    monkeypatch.setattr(streambp.config, "available_memory", lambda: 4632 + 17152 + 4 * 16384 * 24)
    fit(c)


@pytest.mark.parametrize("tolerance", ["nan", "-0.5"])
def test_gradcheck_invalid_tolerance(tolerance):
    user_error("gradcheck", "--tolerance", tolerance, names=["--tolerance", tolerance])


def test_resume_with_other_hidden_layers_is_refused(tmp_path, blob_file):
    run_dir = tmp_path / "run"
    assert run("fit", blob_file, "--run-dir", run_dir, "--out", tmp_path / "m.npz", *FAST).exit_code == 0
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    out = tmp_path / "m2.npz"
    user_error("fit", "--resume", run_dir, "--hidden", "9,9", "--epochs", "2", "--out", out,
               names=["--hidden 9,9", str(run_dir), "[4]"])
    assert not out.exists()
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
