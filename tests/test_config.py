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


# ---------------------------------------------------------------------------------------------- typed settings

import hashlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, replace  # noqa: E402

import pytest  # noqa: E402

from conftest import run  # noqa: E402
from streambp.config import FitConfig, read_config, write_config  # noqa: E402
from streambp.errors import StreambpError  # noqa: E402

DEEP = "[" * 5000 + "]" * 5000


def nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


def digest(*paths):
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def refused(result, *names):
    """Exit 2 with one paragraph on stderr holding every name, and no traceback; the flattened message."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = result.stderr.strip()
    assert message.startswith("Error:") and "\n\n" not in message and message.count("Error:") == 1, message
    flat = " ".join(message.split())
    for name in names:
        assert name in flat, f"{name!r} not in {flat!r}"
    return flat


# (line in the file, what the message must name: the key, the type it takes, the value given)
WRONG = [
    ('features = "x0,x1"', ["features", "a list of strings", '"x0,x1"']),  # read a character at a time before
    ('loggers = "console"', ["loggers", "a list of strings", '"console"']),
    ('shuffle = "no"', ["shuffle", "true or false", '"no"']),  # left shuffling on before
    ("epochs = 2.5", ["epochs", "an integer", "2.5"]),
    ("epochs = 3.0", ["epochs", "an integer", "3.0"]),
    ("batch_size = true", ["batch_size", "an integer", "true"]),
    ('lr = "0.1"', ["lr", "a number", '"0.1"']),
    ("lr = false", ["lr", "a number", "false"]),
    ('hidden = "8,4"', ["hidden", "a list of integers", '"8,4"']),
    ("hidden = [8.5]", ["hidden", "a list of integers"]),
    ('hidden = [[8]]', ["hidden", "a list of integers"]),
    ("seed = 1.5", ["seed", "an integer", "1.5"]),
    ('class_weight = [1, "a"]', ["class_weight", "a string or a list of numbers"]),
    ("optimizer_params = {momentum = [0.9]}", ["optimizer_params", "a table of values"]),
    ('optimizer_params = "momentum=0.9"', ["optimizer_params", "a table of values"]),
    ('source_options = {delimiter = {a = 1}}', ["source_options", "a table of values"]),
    ("label = 3", ["label", "a string", "3"]),
    ("ignore = [1, 2]", ["ignore", "a list of strings"]),
    ("standardize = 1", ["standardize", "true or false", "1"]),
    ("max_categories = 10.0", ["max_categories", "an integer", "10.0"]),
]


@pytest.mark.parametrize("line,names", WRONG, ids=[w[0] for w in WRONG])
def test_wrongly_typed_config_values_are_refused_naming_key_file_type_and_value(tmp_path, blob_file, line, names):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'data = "{blob_file}"\n{line}\n')
    before = digest(cfg, blob_file)
    out = tmp_path / "m.npz"
    refused(run("fit", "--config", cfg, "--out", out, "--epochs", "1"), str(cfg), *names)
    assert digest(cfg, blob_file) == before and not out.exists()


def test_a_deeply_nested_value_is_refused_at_once(tmp_path, blob_file):
    """5,000 levels ran 30 s and ended in a traceback."""
    cfg = tmp_path / "deep.toml"
    cfg.write_text(f'data = "{blob_file}"\nhidden = {DEEP}\n')
    t0 = time.perf_counter()
    refused(run("fit", "--config", cfg), str(cfg), "nested")
    assert time.perf_counter() - t0 < 5
    with pytest.raises(StreambpError, match="hidden takes a list of integers"):
        FitConfig(data="x", hidden=nested(5000))  # the Python API: refused at the first level, whatever the depth


def test_wrong_type_in_a_config_file_through_the_installed_command(tmp_path, blob_file):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'data = "{blob_file}"\nfeatures = "x0,x1"\n')
    proc = subprocess.run([sys.executable, "-c", "from streambp.cli import main; main()", "fit", "--config",
                           str(cfg), "--out", str(tmp_path / "m.npz")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    flat = " ".join(proc.stderr.split())
    assert flat.startswith("Error:") and str(cfg) in flat and "features" in flat and "a list of strings" in flat
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("settings,names", [
    (dict(features="x0,x1"), ["features", "a list of strings"]),
    (dict(loggers="console"), ["loggers", "a list of strings"]),
    (dict(shuffle="no"), ["shuffle", "true or false"]),
    (dict(epochs=2.0), ["epochs", "an integer"]),
    (dict(epochs=True), ["epochs", "an integer"]),
    (dict(lr="0.1"), ["lr", "a number"]),
    (dict(hidden=[8, "4"]), ["hidden", "a list of integers"]),
    (dict(optimizer_params={"momentum": [0.9]}), ["optimizer_params"]),
])
def test_wrongly_typed_python_settings_are_refused(settings, names):
    with pytest.raises(StreambpError) as e:
        FitConfig(data="d.parquet", **settings)
    for name in ["FitConfig", *names]:
        assert name in str(e.value)


def test_values_of_the_right_kind_are_accepted(tmp_path):
    c = FitConfig(data=tmp_path / "d.parquet", out=tmp_path / "m.npz", lr=1, hidden=(8, 4), class_weight=[1, 2.5],
                  optimizer_params={"momentum": 0.5, "nesterov": True})
    assert (c.data, c.out) == (str(tmp_path / "d.parquet"), str(tmp_path / "m.npz"))  # paths as text
    assert c.lr == 1 and c.hidden == (8, 4)
    with pytest.raises(StreambpError, match="epochs takes an integer"):
        FitConfig(data="d", epochs=tmp_path)  # a path is text only where a setting takes text


# ---------------------------------------------------------------------------------------------- run files


def test_new_settings_round_trip_through_toml(tmp_path):
    c = FitConfig(data="d.parquet", features=["a", "b,c"], ignore=["id", "uuid"], categorical=["zip"],
                  numeric=["code"], max_categories=50, min_frequency=3, hash_buckets=1024, standardize=False,
                  hidden=[], lr=float("inf"), class_weight=[1.0, 2.0], optimizer_params={"momentum": 0.9},
                  source_options={"delimiter": ";", "header": False}, out=None)
    path = tmp_path / "c.toml"
    write_config(c, path)
    back = read_config(path)
    expected = {k: v for k, v in asdict(c).items() if v is not None and k not in ("resume", "run_dir")}
    assert back == expected
    assert FitConfig(**back) == replace(c, out="model.npz")  # out = None is left out: the default comes back


def test_config_defaults_and_flags_for_every_kind_of_setting(tmp_path, blob_file, monkeypatch):
    """The file's values are the defaults; flags given win; settings with no flag and dict keys with no flag
    are kept from the file."""
    import streambp.train

    seen = []
    monkeypatch.setattr(streambp.train, "fit", seen.append)
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'data = "{blob_file}"\nhidden = [5, 3]\nfeatures = ["x0", "x1"]\nshuffle = false\n'
                   'standardize = false\nprefetch = 0\ndtype = "float64"\nloggers = []\nepochs = 4\n'
                   'optimizer_params = {momentum = 0.5, nesterov = true}\nignore = ["x4"]\n'
                   'lr_schedule_params = {gamma = 0.5, step_size = 2}\n'
                   'source_options = {delimiter = ";", header = false}\nengine_options = {sync_every = 2}\n')
    assert run("fit", "--config", cfg).exit_code == 0
    (c,) = seen
    assert (c.hidden, c.features, c.shuffle, c.standardize, c.prefetch, c.dtype, c.loggers, c.epochs, c.ignore) == \
        ([5, 3], ["x0", "x1"], False, False, 0, "float64", [], 4, ["x4"])
    assert c.optimizer_params == {"momentum": 0.5, "nesterov": True}
    assert c.source_options == {"delimiter": ";", "header": False}
    seen.clear()
    result = run("fit", "--config", cfg, "--hidden", "7", "--features", "x2", "--shuffle", "--standardize",
                 "--epochs", "1", "--momentum", "0.25", "--lr-gamma", "0.9", "--source-option", "header=true",
                 "--logger", "csv", "--workers", "3", "--ignore", "x3")
    assert result.exit_code == 0, result.output
    (c,) = seen
    assert (c.hidden, c.features, c.shuffle, c.standardize, c.prefetch, c.dtype, c.loggers, c.epochs, c.ignore) == \
        ([7], ["x2"], True, True, 0, "float64", ["csv"], 1, ["x3"])
    assert c.optimizer_params == {"momentum": 0.25, "nesterov": True}
    assert c.lr_schedule_params == {"gamma": 0.9, "step_size": 2}
    assert c.source_options == {"delimiter": ";", "header": True}
    assert c.engine_options == {"sync_every": 2, "workers": 3}


def test_a_config_file_error_leaves_the_files_alone(tmp_path, blob_file):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'data = "{blob_file}"\nepochs = "3"\n')
    out = tmp_path / "m.npz"
    out.write_bytes(b"an earlier model")
    before = digest(cfg, blob_file, out)
    refused(run("fit", "--config", cfg, "--out", out), "epochs", "an integer", '"3"', "epochs = 10")
    assert digest(cfg, blob_file, out) == before
