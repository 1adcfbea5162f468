"""--config: TOML run files, the one each fit writes beside the model, and flags that override them."""
import numpy as np
from typer.testing import CliRunner

import streambp
from streambp.cli import app

RUN = CliRunner()


def test_the_written_config_reproduces_the_run(tmp_path, blob_file):
    first = tmp_path / "first.npz"
    result = RUN.invoke(app, ["fit", str(blob_file), "--hidden", "6", "--epochs", "3", "--lr", "0.2",
                              "--optimizer", "sgd", "--momentum", "0.5", "--standardize", "--out", str(first)])
    assert result.exit_code == 0, result.output
    written = tmp_path / "first.config.toml"
    text = written.read_text()
    assert 'data = "' in text and "momentum" in text and "standardize = true" in text
    again = tmp_path / "again.npz"
    result = RUN.invoke(app, ["fit", "--config", str(written), "--out", str(again)])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(streambp.load(again).theta, streambp.load(first).theta)


def test_flags_override_the_file_and_dict_settings_merge(tmp_path, blob_file):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'data = "{blob_file}"\nhidden = [5]\nepochs = 4\nlr-schedule = "step"\n'
                   'lr_schedule_params = {gamma = 0.5, step_size = 2}\n')
    out = tmp_path / "m.npz"
    result = RUN.invoke(app, ["fit", "--config", str(cfg), "--epochs", "2", "--lr-gamma", "0.9", "--out", str(out)])
    assert result.exit_code == 0, result.output
    c = streambp.load(out).training["config"]
    assert (c["epochs"], c["hidden"], c["lr_schedule"]) == (2, [5], "step")
    assert c["lr_schedule_params"] == {"gamma": 0.9, "step_size": 2}


def test_bad_config_files_are_user_errors(tmp_path, blob_file):
    unknown = tmp_path / "unknown.toml"
    unknown.write_text(f'data = "{blob_file}"\nlearning_rate = 0.1\n')
    result = RUN.invoke(app, ["fit", "--config", str(unknown)])
    assert result.exit_code == 2 and "learning_rate" in result.output and "lr" in result.output
    broken = tmp_path / "broken.toml"
    broken.write_text("epochs = = 3\n")
    result = RUN.invoke(app, ["fit", "--config", str(broken)])
    assert result.exit_code == 2 and "broken.toml" in result.output and "Traceback" not in result.output
    result = RUN.invoke(app, ["fit"])
    assert result.exit_code == 2 and "training data" in result.output
