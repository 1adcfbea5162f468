"""--on-bad-rows skip: rows with an inf feature or a null label are dropped, counted and written out with
their origin; the rest trains as usual (null and NaN features are filled, not bad)."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from conftest import make_blobs
from streambp.cli import app
from streambp.kernels.rows import split_mask
from streambp.features import file_key
from streambp.train import FitConfig, fit

BAD = {41: ("x3", float("inf")), 99: ("x2", float("-inf")), 300: ("label", None)}
FILLED = {7: ("x1", None), 40: ("x0", float("nan"))}  # missing values: filled, the rows kept


def dirty_file(path):
    X, y = make_blobs(n=400, d=4, k=3, seed=2)
    cols = {f"x{j}": X[:, j].astype(np.float64).tolist() for j in range(4)}
    cols["label"] = y.tolist()
    for row, (col, value) in {**BAD, **FILLED}.items():
        cols[col][row] = value
    pq.write_table(pa.table(cols), path, row_group_size=100)
    return path


def test_skip_drops_counts_and_writes_the_bad_rows(tmp_path):
    data = dirty_file(tmp_path / "dirty.parquet")
    out = tmp_path / "rejected.parquet"
    model = fit(FitConfig(data=str(data), hidden=[4], epochs=3, on_bad_rows="skip", bad_rows_out=str(out),
                          out=None, loggers=[]))
    assert model.training["bad_rows"] == len(BAD)
    assert model.training["rows"] == 400 - 1  # the label pre-pass leaves out the null label
    rejected = pq.read_table(out).to_pydict()
    assert sorted(rejected["_row"]) == sorted(BAD)
    assert set(rejected["_file"]) == {str(data)}
    assert np.isfinite(model.theta).all()


def test_skip_with_a_validation_split_and_standardisation(tmp_path):
    data = dirty_file(tmp_path / "dirty.parquet")
    model = fit(FitConfig(data=str(data), hidden=[4], epochs=2, on_bad_rows="skip", val_fraction=0.3,
                          standardize=True, out=None, loggers=[]))
    assert np.isfinite(model.mean).all() and np.isfinite(model.inv_std).all()
    assert all(np.isfinite(h["val_loss"]) for h in model.training["history"])
    keep = np.empty(400, dtype=np.bool_)  # the training side of the split: the rows whose hash is above 0.3
    split_mask(keep, file_key(str(data)), 0, 0.3, False)
    assert model.training["bad_rows"] == sum(bool(keep[row]) for row in BAD)  # only the training side's bad rows


def test_cli_reports_the_count_and_keeps_an_old_file_when_the_run_fails(tmp_path):
    data = dirty_file(tmp_path / "dirty.parquet")
    runner = CliRunner()
    result = runner.invoke(app, ["fit", str(data), "--hidden", "4", "--epochs", "1", "--on-bad-rows", "skip",
                                 "--out", str(tmp_path / "m.npz")])
    assert result.exit_code == 0, result.output
    assert f"Skipped {len(BAD)} bad rows" in result.output
    d = tmp_path / "parts"
    d.mkdir()
    dirty_file(d / "a.parquet")
    (d / "b.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    old = tmp_path / "old-rejected.parquet"
    old.write_bytes(b"keep me")
    result = runner.invoke(app, ["fit", str(d), "--epochs", "1", "--on-bad-rows", "skip", "--bad-rows-out", str(old),
                                 "--out", str(tmp_path / "m2.npz")])
    assert result.exit_code == 2
    assert old.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")) == []


def test_bad_rows_out_needs_skip(tmp_path):
    result = CliRunner().invoke(app, ["fit", str(dirty_file(tmp_path / "d.parquet")), "--bad-rows-out", "x.parquet"])
    assert result.exit_code == 2
    assert "--on-bad-rows skip" in result.output


def test_a_run_stopped_mid_epoch_leaves_no_partial_bad_rows_file(tmp_path, monkeypatch):
    import pytest

    from streambp.step import Stepper

    data = dirty_file(tmp_path / "dirty.parquet")
    out = tmp_path / "rejected.parquet"
    out.write_bytes(b"keep me")
    calls = []
    real = Stepper.step

    def failing(self, X, idx, y, lr):
        calls.append(1)
        if len(calls) == 8:  # after the first chunks, and their bad rows, were read
            raise KeyboardInterrupt
        return real(self, X, idx, y, lr)

    monkeypatch.setattr(Stepper, "step", failing)
    with pytest.raises(KeyboardInterrupt):
        fit(FitConfig(data=str(data), hidden=[4], epochs=1, batch_size=16, buffer_rows=64, on_bad_rows="skip",
                      bad_rows_out=str(out), out=None, loggers=[]))
    assert out.read_bytes() == b"keep me"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_rows_added_after_abort_are_ignored(tmp_path):
    """fit's prefetch thread may still be reading (and adding rows) when the main thread aborts."""
    from streambp.badrows import BadRows

    out = tmp_path / "rejected.parquet"
    out.write_bytes(b"keep me")
    batch = pa.record_batch({"x0": [1.0, float("nan"), 3.0]})
    bad = BadRows(str(out))
    bad.add("a.parquet", 0, batch, np.array([1]))
    bad.abort(KeyboardInterrupt())
    bad.add("a.parquet", 3, batch, np.array([1]))
    assert bad.count == 1
    assert out.read_bytes() == b"keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["rejected.parquet"]


def test_skip_handles_null_rows_and_values_of_a_list_column(tmp_path):
    X, y = make_blobs(n=300, d=3, k=2, seed=6)
    rows = [list(map(float, r)) for r in X]
    rows[5] = None
    rows[9][1] = None
    rows[12][0] = float("inf")
    path = tmp_path / "vec.parquet"
    pq.write_table(pa.table({"vec": pa.array(rows, type=pa.list_(pa.float32(), 3)), "label": y}), path)
    out = tmp_path / "rejected.parquet"
    model = fit(FitConfig(data=str(path), hidden=[4], epochs=2, on_bad_rows="skip", bad_rows_out=str(out),
                          out=None, loggers=[]))
    assert model.input_column == "vec" and model.training["bad_rows"] == 3
    assert sorted(pq.read_table(out).column("_row").to_pylist()) == [5, 9, 12]
