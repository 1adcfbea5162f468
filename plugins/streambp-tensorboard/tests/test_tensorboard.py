"""The tensorboard logger: a small `streambp fit --logger tensorboard`, read back with TensorBoard's own
event reader (EventAccumulator) and compared with the training history saved in the model."""
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import streambp
from streambp.cli import app
from streambp.registry import loggers

try:
    import streambp_tensorboard
except ImportError:  # not installed: import it from the plugin's folder
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import streambp_tensorboard

pytest_plugins = ["streambp.testing"]  # register_plugin, blobs_parquet, run_in_tmp_path

FAST = ["--threads", "1", "--batch-size", "16", "--hidden", "4"]


@pytest.fixture(autouse=True)
def plugin(run_in_tmp_path, register_plugin, monkeypatch):
    """The plugin registered (by its entry point when installed, else here for this test), run in tmp_path."""
    monkeypatch.delenv(streambp_tensorboard.ENV, raising=False)
    return register_plugin(streambp_tensorboard, "tensorboard-test")


@pytest.fixture
def data(blobs_parquet):
    """600 rows: float32 columns x0..x4 and an int64 label with 3 classes (Gaussian blobs)."""
    return blobs_parquet


def fit(*args):
    result = CliRunner().invoke(app, ["fit", *map(str, args), *FAST])
    if result.exit_code != 0:
        detail = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
        pytest.fail(f"streambp fit exited {result.exit_code}:\n{result.output}\n{detail}")
    return result


def read_scalars(log_dir):
    """{tag: [(step, value), ...]} from every event file in log_dir, as TensorBoard reads them."""
    files = sorted(Path(log_dir).glob("events.out.tfevents.*"))
    assert files, f"no event file in {log_dir}"
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0: keep every value
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def as_float32(values):
    """TensorBoard stores scalars as float32."""
    return [float(np.float32(v)) for v in values]


def test_registered(plugin):
    assert loggers.entries()["tensorboard"][0].__name__ == "TensorBoardLogger"


def test_fit_writes_epoch_scalars_next_to_model(tmp_path, data):
    out = tmp_path / "models" / "m.npz"
    out.parent.mkdir()
    fit(data, "--out", out, "--epochs", 3, "--val", data, "--logger", "tensorboard")
    log_dir = tmp_path / "models" / "m.tensorboard"
    scalars = read_scalars(log_dir)
    history = streambp.load(out).training["history"]
    assert len(history) == 3
    for key in ("train_loss", "val_loss", "val_accuracy", "rows_per_s"):
        assert [s for s, _ in scalars[f"epoch/{key}"]] == [1, 2, 3]
        assert [v for _, v in scalars[f"epoch/{key}"]] == as_float32(h[key] for h in history), key
    # Step scalars come a few times a second, so a fit this small may have none; when there are, they
    # are at increasing global steps, and the loss is positive.
    steps = [s for s, _ in scalars.get("train/loss", [])]
    assert steps == sorted(set(steps))
    assert all(v > 0 for _, v in scalars.get("train/loss", []))
    assert not (tmp_path / "runs").exists()


def test_without_val_no_val_scalars(tmp_path, data):
    out = tmp_path / "m.npz"
    fit(data, "--out", out, "--epochs", 1, "--logger", "tensorboard")
    scalars = read_scalars(tmp_path / "m.tensorboard")
    assert "epoch/train_loss" in scalars
    assert "epoch/val_loss" not in scalars and "epoch/val_accuracy" not in scalars


def test_env_dir_wins(tmp_path, data, monkeypatch):
    monkeypatch.setenv("STREAMBP_TENSORBOARD_DIR", str(tmp_path / "tb" / "run1"))
    out = tmp_path / "m.npz"
    fit(data, "--out", out, "--epochs", 2, "--logger", "console", "--logger", "tensorboard")
    scalars = read_scalars(tmp_path / "tb" / "run1")
    history = streambp.load(out).training["history"]
    assert [v for _, v in scalars["epoch/train_loss"]] == as_float32(h["train_loss"] for h in history)
    assert not (tmp_path / "m.tensorboard").exists()


def test_default_dir_without_model(tmp_path):
    log = streambp_tensorboard.TensorBoardLogger()
    log.fit_start({"out": None})
    log.epoch_end({"epoch": 1, "epochs": 1, "train_loss": 0.5, "seconds": 1.0, "rows_per_s": 10.0})
    log.fit_end({"out": None})
    assert log.log_dir == str(Path("runs") / "streambp")
    assert read_scalars(tmp_path / "runs" / "streambp")["epoch/train_loss"] == [(1, 0.5)]


def test_step_scalars_at_global_step(tmp_path):
    log = streambp_tensorboard.TensorBoardLogger(log_dir=tmp_path / "tb")
    log.fit_start({"out": str(tmp_path / "m.npz")})
    for step, loss in [(16, 1.25), (32, 1.0), (48, 0.75)]:
        log.step_end({"epoch": 1, "epochs": 1, "step": step, "rows": step * 16, "rows_total": 1000,
                  "loss": loss, "rows_per_s": 100.0 * step})
    log.epoch_end({"epoch": 1, "epochs": 1, "train_loss": 0.5, "seconds": 1.0, "rows_per_s": 10.0,
                   "val_loss": float("nan")})
    log.fit_end({})
    scalars = read_scalars(tmp_path / "tb")
    assert scalars["train/loss"] == [(16, 1.25), (32, 1.0), (48, 0.75)]
    assert scalars["train/rows_per_s"] == [(16, 1600.0), (32, 3200.0), (48, 4800.0)]
    assert np.isnan(scalars["epoch/val_loss"][0][1])
    assert not (tmp_path / "m.tensorboard").exists()


def test_failed_fit_keeps_what_was_written(tmp_path):
    """Without fit_end (a fit that failed), the epochs already ended are on disk, and exit closes the file."""
    log = streambp_tensorboard.TensorBoardLogger(log_dir=tmp_path / "tb")
    log.fit_start({})
    log.epoch_end({"epoch": 1, "epochs": 2, "train_loss": 0.5, "seconds": 1.0, "rows_per_s": 10.0})
    assert read_scalars(tmp_path / "tb")["epoch/train_loss"] == [(1, 0.5)]
    streambp_tensorboard._close_open_loggers()
    assert log.writer is None


def test_same_logger_twice_follows_the_model(tmp_path):
    log = streambp_tensorboard.TensorBoardLogger()
    for name in ("a", "b"):
        log.fit_start({"out": str(tmp_path / f"{name}.npz")})
        log.epoch_end({"epoch": 1, "epochs": 1, "train_loss": 0.5, "seconds": 1.0, "rows_per_s": 10.0})
        log.fit_end({})
        assert log.log_dir == str(tmp_path / f"{name}.tensorboard")
    assert read_scalars(tmp_path / "b.tensorboard")["epoch/train_loss"] == [(1, 0.5)]
