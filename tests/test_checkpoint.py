"""Checkpoints at epoch ends, and --resume continuing a run to the same parameters bit for bit."""
import numpy as np
from typer.testing import CliRunner

import streambp
from streambp.cli import app
from streambp.train import FitConfig, fit

RUN = CliRunner()


def settings(blob_file, **extra):
    return dict(data=str(blob_file), hidden=[6], batch_size=16, lr=0.01, optimizer="adam", threads=1,
                val_fraction=0.2, early_stopping=10, loggers=[], **extra)


def test_resume_after_epoch_two_equals_an_uninterrupted_run(tmp_path, blob_file):
    whole = fit(FitConfig(epochs=5, out=None, **settings(blob_file)))
    run = tmp_path / "run"
    fit(FitConfig(epochs=2, out=None, run_dir=str(run), **settings(blob_file)))
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-00001.npz", "checkpoint-00002.npz"]
    resumed = fit(FitConfig(epochs=5, out=None, resume=str(run), **settings(blob_file)))
    np.testing.assert_array_equal(resumed.theta, whole.theta)
    assert [h["epoch"] for h in resumed.training["history"]] == [1, 2, 3, 4, 5]
    assert [h["val_loss"] for h in resumed.training["history"]] == [h["val_loss"] for h in whole.training["history"]]
    assert sorted(p.name for p in run.iterdir()) == [f"checkpoint-0000{e}.npz" for e in (3, 4, 5)]


def test_cli_resume_uses_the_runs_settings_and_flags_override(tmp_path, blob_file):
    run, out = tmp_path / "run", tmp_path / "m.npz"
    first = RUN.invoke(app, ["fit", str(blob_file), "--hidden", "5", "--epochs", "1", "--run-dir", str(run),
                             "--out", str(tmp_path / "first.npz")])
    assert first.exit_code == 0, first.output
    result = RUN.invoke(app, ["fit", "--resume", str(run), "--epochs", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model = streambp.load(out)
    assert model.sizes == [5, 5, 3] and len(model.training["history"]) == 3
    missing = RUN.invoke(app, ["fit", "--resume", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "No checkpoint" in missing.output


def test_interrupt_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path, blob_file, monkeypatch):
    import os
    import signal

    import pytest

    from streambp.step import Stepper
    from streambp.train import Interrupted

    whole = fit(FitConfig(epochs=3, out=None, **settings(blob_file)))
    real, calls = Stepper.step, []

    def step(self, X, y, lr):
        calls.append(1)
        if len(calls) == 40:  # in epoch 2 (30 minibatches per epoch), a real SIGINT to this process
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, X, y, lr)

    monkeypatch.setattr(Stepper, "step", step)
    run = tmp_path / "run"
    with pytest.raises(Interrupted, match="streambp fit --resume"):
        fit(FitConfig(epochs=3, out=None, run_dir=str(run), **settings(blob_file)))
    monkeypatch.setattr(Stepper, "step", real)
    assert sorted(p.name for p in run.iterdir())[-1] == "checkpoint-00002.npz"  # epoch 2, mid-way
    resumed = fit(FitConfig(epochs=3, out=None, resume=str(run), **settings(blob_file)))
    np.testing.assert_array_equal(resumed.theta, whole.theta)
    assert [h["train_loss"] for h in resumed.training["history"]] == \
        [h["train_loss"] for h in whole.training["history"]]


def test_sigint_to_the_command_writes_a_checkpoint_and_exits_130(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import pyarrow.parquet as pq

    from conftest import blob_table, make_blobs

    X, y = make_blobs(n=20_000, d=5, k=3, seed=4)
    data = tmp_path / "data.parquet"
    pq.write_table(blob_table(X, y), data, row_group_size=5_000)
    run = tmp_path / "run"
    args = ["fit", str(data), "--hidden", "8", "--epochs", "1000", "--batch-size", "8", "--threads", "1",
            "--run-dir", str(run), "--out", str(tmp_path / "m.npz")]
    proc = subprocess.Popen([sys.executable, "-c", "from streambp.cli import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("Training")  # the handler is installed before this line
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "streambp fit --resume" in err and "Traceback" not in err
    assert any(p.name.startswith("checkpoint-") for p in run.iterdir())
    assert not (tmp_path / "m.npz").exists()
