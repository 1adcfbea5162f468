"""Raw tables train, predict and evaluate with no flag but --label: strings, dictionaries, booleans, nulls,
timestamps and an id column, in Parquet, CSV and Arrow, with categories and nulls unseen at training time."""
import hashlib
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import streambp
from streambp.registry import open_source
from streambp.stream import chunks

from conftest import streambp_cli

COLORS = ["red", "green", "blue", "black"]


def raw_frame(n, seed):
    """Three classes carried by a string column, a boolean and an unscaled numeric column with nulls; the
    label is a deterministic function of them, so the best possible accuracy is 1."""
    rng = np.random.default_rng(seed)
    color = rng.integers(0, 4, n)
    flag = rng.integers(0, 2, n).astype(bool)
    amount = rng.normal(5000, 2000, n)
    label = np.where(color < 2, color, 2)  # red -> 0, green -> 1, blue/black -> 2 ...
    label = np.where((color >= 2) & flag & (amount > 5000), 0, label)  # ... unless flagged and large
    amount_arr = pa.array(amount, mask=rng.random(n) < 0.05)  # 5% missing
    size = pa.array(rng.choice(["S", "M", "L"], n)).dictionary_encode()  # noise
    return {
        "row_id": pa.array(np.arange(n, dtype=np.int64) + 10_000),
        "color": pa.array([COLORS[c] for c in color]),
        "size": size,
        "flag": pa.array(flag),
        "amount": amount_arr,
        "when": pa.array((np.int64(1_600_000_000) + rng.integers(0, 10**7, n)).astype("datetime64[s]")),
        "label": pa.array([["alpha", "beta", "gamma"][v] for v in label]),
    }


def write(table, path):
    kind = os.path.splitext(path)[1]
    if kind == ".parquet":
        pq.write_table(table, path, row_group_size=500)
    elif kind == ".csv":
        plain = table.set_column(table.schema.get_field_index("size"), "size", table["size"].cast(pa.string()))
        pcsv.write_csv(plain, path)
    else:
        feather.write_feather(table, path)
    return str(path)


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.mark.parametrize("ext", [".parquet", ".csv", ".arrow"])
def test_raw_table_trains_predicts_and_evaluates_with_only_label(tmp_path, ext):
    train = write(pa.table(raw_frame(3000, 0)), tmp_path / f"train{ext}")
    test_cols = raw_frame(600, 1)
    # unseen at training time: a new color, and nulls in color, flag and when (which had none)
    colors = test_cols["color"].to_pylist()
    colors[:30] = ["purple"] * 30
    colors[30:40] = [None] * 10
    test_cols["color"] = pa.array(colors)
    test_cols["flag"] = pa.array(test_cols["flag"].to_pylist()[:590] + [None] * 10)
    test_cols["when"] = pa.array(test_cols["when"].to_pylist()[:-5] + [None] * 5, type=pa.timestamp("s"))
    test = write(pa.table(test_cols), tmp_path / f"test{ext}")
    before = {p: digest(p) for p in (train, test)}
    model = tmp_path / "m.npz"

    fit = streambp_cli("fit", train, "--label", "label", "--out", model)
    assert fit.returncode == 0, fit.stderr
    summary = fit.stdout
    for column, role in [("row_id", "ignored"), ("color", "categorical"), ("size", "categorical"),
                         ("flag", "categorical"), ("amount", "numeric"), ("when", "numeric")]:
        line = next(ln for ln in summary.splitlines() if ln.split()[:1] == [column])
        assert role in line, summary
    assert "every value is different" in next(ln for ln in summary.splitlines() if ln.startswith("row_id"))

    out = tmp_path / "pred.parquet"
    pred = streambp_cli("predict", model, test, "--out", out)
    assert pred.returncode == 0, pred.stderr
    got = pq.read_table(out)
    assert got.num_rows == 600
    truth = test_cols["label"].to_pylist()
    known = np.array([c not in ("purple", None) for c in colors])
    correct = np.array(got["prediction"].to_pylist()) == np.array(truth)
    assert correct[known].mean() >= 0.95  # the label is a function of the columns; majority is ~0.43

    ev = streambp_cli("evaluate", model, test, "--label", "label", "--json")
    assert ev.returncode == 0, ev.stderr
    metrics = json.loads(ev.stdout)
    assert metrics["n_rows"] == 600 and metrics["accuracy"] == pytest.approx(correct.mean())
    assert {p: digest(p) for p in (train, test)} == before


def test_unseen_values_share_the_other_slot_and_a_null_number_is_the_mean(tmp_path):
    train = write(pa.table(raw_frame(2000, 0)), tmp_path / "train.parquet")
    model_path = tmp_path / "m.npz"
    assert streambp_cli("fit", train, "--label", "label", "--epochs", "2", "--out", model_path).returncode == 0
    model = streambp.load(model_path)
    amount = next(c for c in model.spec.numeric if c.name == "amount")
    base = raw_frame(4, 3)
    rows = []
    for color, value in [("purple", 10.0), ("orange", 10.0), ("red", None), ("red", amount.fill)]:
        cols = {k: v.slice(0, 1) for k, v in base.items()}
        cols["color"] = pa.array([color])
        cols["amount"] = pa.array([value], type=pa.float64())
        rows.append(pa.table(cols))
    table = pa.concat_tables(rows)
    probs = model.predict_proba(table)
    np.testing.assert_array_equal(probs[0], probs[1])  # two unseen colors: the same "other" slot
    assert not np.array_equal(probs[0], probs[3])
    # a null amount is read as the training mean with the missing indicator on
    path = write(table, tmp_path / "rows.parquet")
    (X, idx, _), = list(chunks(open_source(path), model.spec, None, 8, np.float32))
    j, k = model.features.index("amount"), model.features.index("amount missing")
    assert X[2, j] == X[3, j] == 0.0 and (X[2, k], X[3, k]) == (1.0, 0.0)
    assert np.array_equal(np.delete(X[2], k), np.delete(X[3], k)) and np.array_equal(idx[2], idx[3])


def test_an_epoch_that_learns_nothing_says_so_with_the_fixes(tmp_path):
    train = write(pa.table(raw_frame(600, 0)), tmp_path / "train.parquet")
    proc = streambp_cli("fit", train, "--label", "label", "--epochs", "2", "--optimizer", "sgd", "--lr", "1e-9",
                        "--out", tmp_path / "m.npz")
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stdout.splitlines() if ln.startswith("Warning: The training loss")]
    assert len(warnings) == 2 and all("--lr 1e-09" in w and "--epochs" in w for w in warnings)
    learned = streambp_cli("fit", train, "--label", "label", "--epochs", "2", "--out", tmp_path / "n.npz")
    assert learned.returncode == 0 and "Warning" not in learned.stdout


def test_a_categorical_model_resumes_bit_identical(tmp_path):
    """The embedding table's optimizer state (Adam's moments of the touched rows) is in the checkpoints."""
    from streambp.config import FitConfig
    from streambp.train import fit

    data = write(pa.table(raw_frame(800, 2)), tmp_path / "train.parquet")
    # a constant rate: a cosine schedule's length is the run's epochs, which the resume extends from 2 to 3
    settings = dict(data=data, label="label", deterministic=True, threads=1, loggers=[], out=None,
                    lr_schedule="constant")
    whole = fit(FitConfig(epochs=3, run_dir=str(tmp_path / "whole"), **settings))
    fit(FitConfig(epochs=2, run_dir=str(tmp_path / "part"), **settings))
    resumed = fit(FitConfig(epochs=3, resume=str(tmp_path / "part"), **settings))
    assert whole.slots > 0
    np.testing.assert_array_equal(resumed.theta, whole.theta)


def test_resuming_a_run_that_settled_by_itself_has_nothing_to_train(tmp_path):
    train = write(pa.table(raw_frame(300, 4)), tmp_path / "train.parquet")
    run = tmp_path / "run"
    first = streambp_cli("fit", train, "--label", "label", "--run-dir", run, "--out", tmp_path / "m.npz")
    assert first.returncode == 0 and "Stopped after epoch" in first.stdout, first.stdout[-500:]
    settled = int(first.stdout.split("Stopped after epoch ")[1].split(":")[0])
    model_before = digest(tmp_path / "m.npz")
    again = streambp_cli("fit", "--resume", run, "--out", tmp_path / "m2.npz")
    assert again.returncode == 0, again.stderr
    assert f"That run has finished at epoch {settled} (the training loss had settled)" in again.stderr
    assert "epoch " + str(settled + 1) not in again.stdout  # nothing trained
    np.testing.assert_array_equal(streambp.load(tmp_path / "m2.npz").theta, streambp.load(tmp_path / "m.npz").theta)
    assert digest(tmp_path / "m.npz") == model_before


def test_run_dir_none_leaves_no_run_directory(tmp_path):
    train = write(pa.table(raw_frame(200, 5)), tmp_path / "train.parquet")
    proc = streambp_cli("fit", train, "--label", "label", "--epochs", "2", "--run-dir", "none",
                        "--out", tmp_path / "m.npz")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.config.toml", "m.npz", "train.parquet"]
