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
