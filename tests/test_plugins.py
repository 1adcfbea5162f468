"""Plugins: every hook exercised by a throwaway plugin (test_hook_<name>, checked by
test_hookspecs_documented.py), errors naming the plugin, STREAMBP_LOAD_PLUGINS and `streambp plugins`.

Throwaway plugins are registered through the `register_plugin` fixture of streambp.testing, which
unregisters them afterwards, so that nothing leaks into other tests.
"""
import importlib.metadata
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
import types
import typing
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

import streambp
from streambp import hookimpl, hookspecs, interfaces, train
from streambp.default_plugins.optimizers import SGD
from streambp.default_plugins.sources import ParquetSource
from streambp.errors import StreambpError
from streambp.plugins import DEFAULT_PLUGINS, LOAD_PLUGINS_ENV, get_plugin_manager, reset_plugin_manager
from streambp.registry import describe_plugins, loggers, open_source, optimizers

from conftest import invoke, run

FAST = ["--threads", "1", "--batch-size", "16", "--hidden", "4"]


def user_error(*args, names=()):
    """Run the CLI; expect exit 2 with one "Error:" paragraph on stderr holding every string in names."""
    result = run(*args)
    detail = ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        detail = "".join(traceback.format_exception(*result.exc_info))
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.output}\n{detail}"
    assert "Traceback" not in result.output
    message = " ".join(result.stderr.split())
    assert message.startswith("Error:"), result.stderr
    for name in names:
        assert str(name) in message, f"{name!r} not in {message!r}"
    return message


class Recorder:
    """A plugin implementing every lifecycle hook, recording (hook name, info) in order."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def fit_start(self, info):
        self.calls.append(("fit_start", info))

    @hookimpl
    def step_end(self, info):
        self.calls.append(("step_end", info))

    @hookimpl
    def epoch_end(self, info):
        self.calls.append(("epoch_end", info))

    @hookimpl
    def fit_end(self, info):
        self.calls.append(("fit_end", info))

    def of(self, hook):
        return [info for name, info in self.calls if name == hook]


@pytest.fixture
def fast_clock(monkeypatch):
    """train.py's clock advances 1 s per reading, so that the step cadence (>= 0.2 s) is always due."""
    counter = itertools.count()
    clock = types.SimpleNamespace(**{**vars(time), "perf_counter": lambda: float(next(counter))})
    monkeypatch.setattr(train, "time", clock)


@pytest.fixture
def recorded_fit(tmp_path, blob_file, register_plugin, fast_clock):
    """A Recorder plugin and the result of a 2-epoch fit with --val while it was registered."""
    recorder = register_plugin(Recorder(), "recorder")
    out = tmp_path / "m.npz"
    invoke("fit", blob_file, "--out", out, "--epochs", 2, "--val", blob_file, *FAST)
    return recorder, out


# ------------------------------------------------------------------------------ lifecycle hooks


def test_hook_fit_start(recorded_fit):
    recorder, _ = recorded_fit
    assert recorder.calls[0][0] == "fit_start"
    (info,) = recorder.of("fit_start")
    assert info["sizes"] == [5, 4, 3]
    assert info["rows"] == 600
    assert info["epochs"] == 2
    assert info["classes"] == [0, 1, 2]
    assert info["files"] == 1
    assert info["threads"] == 1


def test_hook_step_end(recorded_fit):
    recorder, _ = recorded_fit
    steps = recorder.of("step_end")
    # 600 rows in minibatches of 16: 38 steps an epoch, reported every few steps with the fast clock.
    assert {s["epoch"] for s in steps} == {1, 2}
    assert all(a["step"] < b["step"] for a, b in zip(steps, steps[1:]))
    assert all(0 < s["step"] <= 76 for s in steps)
    for s in steps:
        assert s["epochs"] == 2 and s["rows_total"] == 600
        assert 0 < s["rows"] <= 600 and s["loss"] > 0 and s["rows_per_s"] > 0
    # Each epoch's steps come before its epoch_end.
    epoch = 1
    for name, info in recorder.calls:
        if name == "step_end":
            assert info["epoch"] == epoch
        elif name == "epoch_end":
            epoch += 1


def test_hook_epoch_end(recorded_fit):
    recorder, out = recorded_fit
    epochs = recorder.of("epoch_end")
    assert [e["epoch"] for e in epochs] == [1, 2]
    for e in epochs:
        assert {"train_loss", "val_loss", "val_accuracy", "seconds", "rows_per_s"} <= set(e)
        assert 0 <= e["val_accuracy"] <= 1 and e["train_loss"] > 0
    assert epochs == streambp.load(out).training["history"]


def test_hook_fit_end(recorded_fit):
    recorder, out = recorded_fit
    assert recorder.calls[-1][0] == "fit_end"
    (info,) = recorder.of("fit_end")
    assert info["out"] == str(out)
    assert [h["epoch"] for h in info["history"]] == [1, 2]
    assert info["seconds"] > 0


def test_lifecycle_order(recorded_fit):
    recorder, _ = recorded_fit
    names = [name for name, _ in recorder.calls if name != "step_end"]
    assert names == ["fit_start", "epoch_end", "epoch_end", "fit_end"]


def test_event_infos_match_their_types(recorded_fit):
    """Each lifecycle hook's info has every key its TypedDict in streambp.interfaces (the hookspec's annotation)
    requires, and no key it does not declare (fit_start may add keys)."""
    recorder, _ = recorded_fit
    for hook in ("fit_start", "step_end", "epoch_end", "fit_end"):
        declared = typing.get_type_hints(getattr(hookspecs, hook))["info"]
        assert declared is getattr(interfaces, "".join(w.title() for w in hook.split("_")) + "Info")
        infos = recorder.of(hook)
        assert infos, hook
        for info in infos:
            assert declared.__required_keys__ <= info.keys(), (hook, declared.__required_keys__ - info.keys())
            if hook != "fit_start":
                assert info.keys() <= set(declared.__annotations__), (hook, info.keys() - declared.__annotations__)
    assert {"val_loss", "val_accuracy", "val_confusion"} <= recorder.of("epoch_end")[0].keys()  # with --val


def test_hooks_called_without_loggers(tmp_path, blob_file, register_plugin):
    recorder = register_plugin(Recorder(), "recorder")
    train.fit(train.FitConfig(data=str(blob_file), hidden=[4], epochs=1, batch_size=32, threads=1, out=None,
                              loggers=[]))
    assert [name for name, _ in recorder.calls if name != "step_end"] == ["fit_start", "epoch_end", "fit_end"]


def test_step_end_follows_logger_cadence(tmp_path, blob_file, register_plugin, fast_clock):
    """The hook step_end is called exactly when the loggers' step_end() is, never per minibatch."""
    recorder = register_plugin(Recorder(), "recorder")
    seen = []

    class StepCounter:
        def step_end(self, info):
            seen.append(info["step"])

    register_plugin(types.SimpleNamespace(register_loggers=hookimpl(
        lambda register: register("counter", StepCounter))), "counter-plugin")
    train.fit(train.FitConfig(data=str(blob_file), hidden=[4], epochs=1, batch_size=8, threads=1, out=None,
                              loggers=["counter"]))
    assert seen and [s["step"] for s in recorder.of("step_end")] == seen
    assert len(seen) < 600 / 8


# ------------------------------------------------------------------------------ registration hooks


def test_hook_register_optimizers(tmp_path, blob_file, register_plugin):
    built = []

    class HalfSGD(SGD):
        name = "halfsgd"

        def step(self, theta, dtheta, lr):
            super().step(theta, dtheta, lr / 2)

    def factory(theta, **hyper):
        built.append(hyper)
        return HalfSGD(theta, **hyper)

    class Plugin:
        @hookimpl
        def register_optimizers(self, register):
            register("halfsgd", factory)

    register_plugin(Plugin(), "halfsgd-plugin")
    out = tmp_path / "m.npz"
    invoke("fit", blob_file, "--out", out, "--epochs", 1, "--optimizer", "halfsgd", "--momentum", "0.5",
           *FAST)
    assert built == [{"momentum": 0.5}]
    assert streambp.load(out).training["config"]["optimizer"] == "halfsgd"
    entry = next(p for p in describe_plugins() if p["name"] == "halfsgd-plugin")
    assert entry["registers"] == {"optimizer": ["halfsgd"]}
    assert entry["hooks"] == ["register_optimizers"]


def test_an_optimizer_without_step_rows_is_refused_for_categorical_columns(tmp_path, register_plugin):
    class Plain:
        """An optimizer of the documented protocol, without the optional step_rows."""

        def __init__(self, theta, **hyper):
            self.t = 0

        def step(self, theta, dtheta, lr):
            theta -= lr * dtheta

        def state_dict(self):
            return {"step": self.t}

        def load_state_dict(self, state):
            self.t = state["step"]

    class Plugin:
        @hookimpl
        def register_optimizers(self, register):
            register("plain", Plain)

    register_plugin(Plugin(), "plain-plugin")
    data = tmp_path / "raw.parquet"
    pq.write_table(pa.table({"color": ["red", "blue"] * 20, "x": np.arange(40.0), "label": [0, 1] * 20}), data)
    out = tmp_path / "m.npz"
    result = run("fit", data, "--optimizer", "plain", "--out", out, *FAST)
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "has no step_rows" in message and "color" in message, message
    assert not out.exists()
    numeric = run("fit", data, "--optimizer", "plain", "--ignore", "color", "--out", out, *FAST)
    assert numeric.exit_code == 0, numeric.output


def test_hook_register_loggers(tmp_path, blob_file, register_plugin):
    events = []

    class ListLogger:
        def __init__(self, **options):
            events.append(("init", options))

        def fit_start(self, info):
            events.append(("fit_start", info["rows"]))

        def epoch_end(self, info):  # no step(): the methods are optional
            events.append(("epoch_end", info["epoch"]))

        def fit_end(self, info):
            events.append(("fit_end", info["out"]))

    class Plugin:
        @hookimpl
        def register_loggers(self, register):
            register("list", ListLogger)

    register_plugin(Plugin(), "list-logger")
    out = tmp_path / "m.npz"
    result = invoke("fit", blob_file, "--out", out, "--epochs", 2, "--logger", "list", *FAST)
    assert events == [("init", {}), ("fit_start", 600), ("epoch_end", 1), ("epoch_end", 2),
                      ("fit_end", str(out))]
    assert "epoch 1/2" not in result.output  # the console logger was not asked for


def test_hook_register_engines(tmp_path, blob_file, register_plugin):
    from streambp.engine import minibatches
    from streambp.step import Stepper

    built = []

    class HalfBatchEngine:
        def __init__(self, run, workers=1):
            built.append(workers)
            self.run = run
            self.stepper = Stepper(run.model, run.optimizer, run.config.batch_size)

        def epoch(self, epoch, skip):
            r = self.run
            batches = minibatches(r.config, r.source, r.spec, r.encoder, r.model.theta.dtype, epoch, r.split,
                                  r.bad_rows)
            for i, (X, idx, y) in enumerate(batches):
                if i >= skip:
                    half = max(1, len(y) // 2)
                    loss, correct = self.stepper.step(X[:half], idx[:half], y[:half], r.lr_at(r.steps))
                    yield half, loss, correct, 1

        def close(self):
            built.append("closed")

    class Plugin:
        @hookimpl
        def register_engines(self, register):
            register("halfbatch", HalfBatchEngine)

    register_plugin(Plugin(), "halfbatch-plugin")
    out = tmp_path / "m.npz"
    invoke("fit", blob_file, "--out", out, "--epochs", 2, "--engine", "halfbatch", "--workers", 3, *FAST)
    assert built == [3, "closed"]
    history = streambp.load(out).training["history"]
    assert [h["rows_per_s"] * h["seconds"] for h in history] == pytest.approx([300, 300])  # 38 halves of 16
    assert [h["step"] for h in history] == [38, 76]
    entry = next(p for p in describe_plugins() if p["name"] == "halfbatch-plugin")
    assert entry["registers"] == {"engine": ["halfbatch"]} and entry["hooks"] == ["register_engines"]
    local = run("fit", blob_file, "--out", out, "--sync-every", 2, *FAST)
    assert local.exit_code == 2 and "The engine 'local' does not take the settings sync_every" in local.output
    unknown = run("fit", blob_file, "--out", out, "--engine", "spark", *FAST)
    message = " ".join(unknown.output.split())
    assert unknown.exit_code == 2 and "Unknown engine 'spark'. Available: " in message
    assert "halfbatch" in message and "local" in message


def test_an_engines_rows_per_step_sets_the_schedules_length(tmp_path, blob_file, register_plugin):
    """An engine whose step uses two minibatches takes half the steps; the schedule must fit them."""
    from streambp.engine import minibatches
    from streambp.step import Stepper

    lrs = []

    class PairEngine:
        def __init__(self, run):
            self.run = run
            self.rows_per_step = 2 * run.config.batch_size
            self.stepper = Stepper(run.model, run.optimizer, self.rows_per_step)

        def epoch(self, epoch, skip):
            r = self.run
            batches = minibatches(r.config, r.source, r.spec, r.encoder, r.model.theta.dtype, epoch, r.split,
                                  r.bad_rows)
            for pair in itertools.zip_longest(batches, batches):
                X = np.concatenate([b[0] for b in pair if b is not None])
                y = np.concatenate([b[2] for b in pair if b is not None])
                lrs.append(r.lr_at(r.steps))
                loss, correct = self.stepper.step(X, None, y, lrs[-1])
                yield len(y), loss, correct, 1

        def close(self):
            pass

    class Plugin:
        @hookimpl
        def register_engines(self, register):
            register("pairs", PairEngine)

    register_plugin(Plugin(), "pairs-plugin")
    invoke("fit", blob_file, "--out", tmp_path / "m.npz", "--epochs", 2, "--engine", "pairs", "--lr", 0.1,
           "--lr-schedule", "cosine", *FAST)
    assert len(lrs) == 38  # 600 rows: 19 pairs of 16-row minibatches per epoch
    assert lrs[0] == pytest.approx(0.1) and lrs[19] == pytest.approx(0.05, rel=0.1) and lrs[-1] < 0.001


def test_hook_register_sources(tmp_path, blob_file, register_plugin):
    opened = []

    class BlobSource(ParquetSource):
        """Parquet files under another extension, as a stand-in for a new format."""

    def factory(path, **options):
        opened.append((str(path), options))
        return BlobSource(path)

    class Plugin:
        @hookimpl
        def register_sources(self, register):
            register("blob", factory, (".blob",))

    register_plugin(Plugin(), "blob-source")
    data = tmp_path / "data.BLOB"
    shutil.copy(blob_file, data)
    out = tmp_path / "m.npz"
    invoke("fit", data, "--out", out, "--epochs", 1, *FAST)  # chosen by extension (any case)
    assert opened == [(str(data), {})]
    assert streambp.load(out).training["rows"] == 600
    # By name, whatever the extension; options go to the factory.
    renamed = tmp_path / "data.bin"
    shutil.copy(blob_file, renamed)
    invoke("fit", renamed, "--out", out, "--epochs", 1, "--source", "blob", *FAST)
    assert opened[-1] == (str(renamed), {})
    open_source(renamed, "blob", answer=42)
    assert opened[-1] == (str(renamed), {"answer": 42})


def test_hook_register_commands(register_plugin):
    class Plugin:
        @hookimpl
        def register_commands(self, app):
            @app.command()
            def hello(name: str = "world"):
                """Say hello."""
                print(f"hello {name}")

    register_plugin(Plugin(), "hello-command")
    fresh = typer.Typer()

    @fresh.callback()
    def main():
        """A stand-in for the streambp app."""

    get_plugin_manager().hook.register_commands(app=fresh)
    result = CliRunner().invoke(fresh, ["hello", "--name", "plugin"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "hello plugin"


# ------------------------------------------------------------------------------ errors name the plugin


class Exploder:
    """Raises RuntimeError('kaput') in the hook named by `where`."""

    def __init__(self, where):
        self.where = where

    def _maybe(self, hook):
        if hook == self.where:
            raise RuntimeError("kaput")

    @hookimpl
    def fit_start(self, info):
        self._maybe("fit_start")

    @hookimpl
    def step_end(self, info):
        self._maybe("step_end")

    @hookimpl
    def epoch_end(self, info):
        self._maybe("epoch_end")

    @hookimpl
    def fit_end(self, info):
        self._maybe("fit_end")


@pytest.mark.parametrize("hook", ["fit_start", "step_end", "epoch_end", "fit_end"])
def test_exception_in_hook_names_plugin(tmp_path, blob_file, register_plugin, fast_clock, hook):
    register_plugin(Recorder(), "bystander")
    register_plugin(Exploder(hook), "exploder")
    message = user_error("fit", blob_file, "--out", tmp_path / "m.npz", "--epochs", 1, *FAST,
                         names=["exploder", hook, "RuntimeError", "kaput"])
    assert "bystander" not in message


def test_exception_in_hook_keeps_cause(blob_file, register_plugin):
    register_plugin(Exploder("fit_start"), "exploder")
    with pytest.raises(StreambpError, match="exploder") as caught:
        train.fit(train.FitConfig(data=str(blob_file), hidden=[4], epochs=1, threads=1, out=None, loggers=[]))
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_streambp_error_from_plugin_passes_unchanged(tmp_path, blob_file, register_plugin):
    class Strict:
        @hookimpl
        def fit_start(self, info):
            raise StreambpError("Strict wants at least 10000 rows.")

    register_plugin(Strict(), "strict")
    message = user_error("fit", blob_file, "--out", tmp_path / "m.npz", "--epochs", 1, *FAST)
    assert message == "Error: Strict wants at least 10000 rows."


def broken(*args, **kwargs):
    raise ValueError("bad factory")


@pytest.mark.parametrize("kind, option", [("optimizer", "--optimizer"), ("logger", "--logger"),
                                          ("source", "--source")])
def test_exception_in_factory_names_plugin(tmp_path, blob_file, register_plugin, kind, option):
    class Plugin:
        @hookimpl
        def register_optimizers(self, register):
            register("broken", broken)

        @hookimpl
        def register_loggers(self, register):
            register("broken", broken)

        @hookimpl
        def register_sources(self, register):
            register("broken", broken, (".broken",))

    register_plugin(Plugin(), "factory-plugin")
    user_error("fit", blob_file, "--out", tmp_path / "m.npz", option, "broken", *FAST,
               names=["factory-plugin", kind, "'broken'", "ValueError", "bad factory"])


def test_exception_in_logger_method_names_plugin(tmp_path, blob_file, register_plugin):
    class BadLogger:
        def epoch_end(self, info):
            return info["no such key"]

    class Plugin:
        @hookimpl
        def register_loggers(self, register):
            register("bad", BadLogger)

    register_plugin(Plugin(), "bad-logger-plugin")
    user_error("fit", blob_file, "--out", tmp_path / "m.npz", "--logger", "bad", "--epochs", 1, *FAST,
               names=["bad-logger-plugin", "'bad'", "epoch_end", "KeyError"])


def test_exception_in_registration_hook_names_plugin(tmp_path, blob_file, register_plugin):
    class Plugin:
        @hookimpl
        def register_loggers(self, register):
            raise ImportError("needs wandb")

    register_plugin(Plugin(), "needs-wandb")
    user_error("fit", blob_file, "--out", tmp_path / "m.npz", "--epochs", 1, *FAST,
               names=["needs-wandb", "register_loggers", "needs wandb"])


def test_duplicate_name_names_both_plugins(register_plugin):
    class Plugin:
        @hookimpl
        def register_loggers(self, register):
            register("console", object)

    register_plugin(Plugin(), "copycat")
    with pytest.raises(StreambpError, match="console") as caught:
        loggers.get("console")
    assert "copycat" in str(caught.value) and "streambp.default_plugins.loggers" in str(caught.value)


def test_unknown_names_list_available(tmp_path, blob_file):
    user_error("fit", blob_file, "--out", tmp_path / "m.npz", "--source", "nope", *FAST,
               names=["nope", "parquet", "csv", "arrow", "feather"])
    user_error("fit", blob_file, "--out", tmp_path / "m.npz", "--logger", "nope", *FAST,
               names=["nope", "console", "jsonl", "csv"])


def test_throwaway_plugins_do_not_leak():
    names = {name for name, _ in get_plugin_manager().list_name_plugin()}
    assert names == set(DEFAULT_PLUGINS) | set(get_plugin_manager().distributions())


# ------------------------------------------------------------------------------ discovery

def logger_plugin_source(logger_name, version=None):
    """The source of a module plugin registering the logger `logger_name`."""
    lines = ["from streambp import hookimpl", "", "", "class Quiet:", "    pass", "", "",
             "@hookimpl", "def register_loggers(register):", f"    register({logger_name!r}, Quiet)"]
    if version:
        lines.insert(0, f"__version__ = {version!r}")
    return "\n".join(lines) + "\n"


class Site:
    """A directory of real installed distributions (NAME-VERSION.dist-info with METADATA and
    entry_points.txt, plus their modules), seen by importlib.metadata and by pluggy's loader."""

    def __init__(self, path):
        self.path = path
        self.modules = []
        path.mkdir()

    def install(self, name, version, entry_points, modules):
        """entry_points: [(name, value, group)]; modules: {module name: source}."""
        info = self.path / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        groups = {}
        for ep, value, group in entry_points:
            groups.setdefault(group, []).append(f"{ep} = {value}\n")
        (info / "entry_points.txt").write_text("".join(f"[{g}]\n{''.join(lines)}\n" for g, lines in groups.items()))
        for module, source in modules.items():
            (self.path / f"{module}.py").write_text(source)
            self.modules.append(module)


@pytest.fixture
def fake_installed(tmp_path, monkeypatch, fresh_plugin_manager):
    """Only the distributions of a throwaway site directory are installed: streambp-alpha (entry point
    alpha), streambp_beta (beta) and an unrelated distribution with an entry point in another group."""
    site = Site(tmp_path / "site")
    site.install("streambp-alpha", "1.2.3", [("alpha", "fake_streambp_alpha", "streambp")],
                 {"fake_streambp_alpha": logger_plugin_source("alpha-log")})
    site.install("streambp_beta", "0.1", [("beta", "fake_streambp_beta", "streambp")],
                 {"fake_streambp_beta": logger_plugin_source("beta-log")})
    site.install("other", "9", [("other", "fake_other:main", "console_scripts")],
                 {"fake_other": logger_plugin_source("other-log")})
    distributions = importlib.metadata.distributions
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: distributions(path=[str(site.path)]))
    monkeypatch.syspath_prepend(str(site.path))
    monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)
    yield site
    for module in site.modules:
        sys.modules.pop(module, None)


def loaded():
    return {name for name, _ in get_plugin_manager().list_name_plugin()} - set(DEFAULT_PLUGINS)


@pytest.mark.parametrize("value, expected", [
    (None, {"alpha", "beta"}),
    ("", set()),
    ("streambp-alpha", {"alpha"}),  # a distribution name
    ("beta", {"beta"}),  # an entry-point name
    (" Streambp_Alpha , beta ", {"alpha", "beta"}),  # normalised as PEP 503 does
    ("streambp-gamma", set()),  # not installed: nothing
    ("other", set()),  # not a streambp plugin
])
def test_load_plugins_env(fake_installed, monkeypatch, value, expected):
    if value is not None:
        monkeypatch.setenv(LOAD_PLUGINS_ENV, value)
    reset_plugin_manager()
    assert loaded() == expected
    # The built-ins always load.
    for name in DEFAULT_PLUGINS:
        assert get_plugin_manager().has_plugin(name)
    assert "console" in loggers.entries()
    assert ("alpha-log" in loggers.entries()) == ("alpha" in expected)


def test_plugins_command_lists_installed_with_versions(fake_installed):
    reset_plugin_manager()
    found = json.loads(invoke("plugins", "--json").stdout)
    assert [p["name"] for p in found] == ["alpha", "beta"]
    alpha = found[0]
    assert alpha["distribution"] == "streambp-alpha" and alpha["version"] == "1.2.3"
    assert alpha["hooks"] == ["register_loggers"] and alpha["registers"] == {"logger": ["alpha-log"]}
    text = invoke("plugins").output
    assert "alpha (streambp-alpha 1.2.3): hooks register_loggers" in text
    assert "logger: alpha-log" in text
    assert "streambp.default_plugins" not in text
    everything = json.loads(invoke("plugins", "--all", "--json").stdout)
    assert [p["name"] for p in everything][:len(DEFAULT_PLUGINS)] == list(DEFAULT_PLUGINS)
    assert everything[0]["version"] == streambp.__version__


def test_plugins_command_with_none_installed(fake_installed, monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    reset_plugin_manager()
    assert "No plugins installed" in invoke("plugins").output
    assert json.loads(invoke("plugins", "--json").stdout) == []


def test_registrations_run_once_per_plugin_manager(register_plugin):
    calls = []

    class Counting:
        @hookimpl
        def register_loggers(self, register):
            calls.append(1)
            register("counted", object)

    register_plugin(Counting(), "counting")
    for _ in range(3):
        assert "counted" in loggers.entries()
    assert len(calls) == 1
    get_plugin_manager().unregister(name="counting")  # registering or unregistering starts afresh
    assert "counted" not in loggers.entries()


# A plugin that cannot be loaded, by how it fails: (module source, what the message says failed).
BROKEN = {
    "import-error": ("import streambp_no_such_dependency\n", "failed to import",
                     "ModuleNotFoundError: No module named 'streambp_no_such_dependency'"),
    "runtime-error": ("raise RuntimeError('needs a GPU')\n", "failed to import", "RuntimeError: needs a GPU"),
    "system-exit": ("import sys\nsys.exit(0)\n", "failed to import", "SystemExit"),
    "bad-hookimpl": ("from streambp import hookimpl\n\n\n@hookimpl\ndef register_optimizers(register, extra):\n"
                     "    pass\n", "was rejected by pluggy", "extra"),
    "misspelled-hook": ("from streambp import hookimpl\n\n\n@hookimpl\ndef register_optimisers(register):\n"
                        "    register('lion2', object)\n", "register_optimisers", "no streambp hook"),
}


@pytest.fixture(params=list(BROKEN))
def broken_installed(request, fake_installed):
    """streambp-broken (entry point broken) installed beside streambp-alpha, failing as BROKEN[param]."""
    source, what, detail = BROKEN[request.param]
    module = f"fake_streambp_broken_{request.param.replace('-', '_')}"
    fake_installed.install("streambp-broken", "0.0.1", [("broken", module, "streambp")], {module: source})
    return fake_installed, what, detail


def assert_names_broken_plugin(text, what, detail):
    text = " ".join(text.split())
    for needle in ("'broken'", "streambp-broken", what, detail, "pip uninstall streambp-broken", LOAD_PLUGINS_ENV):
        assert needle in text, f"{needle!r} not in {text!r}"


def test_plugin_that_fails_to_load_is_left_out_and_named(broken_installed, capsys, monkeypatch):
    _, what, detail = broken_installed
    reset_plugin_manager()
    assert loaded() == {"alpha", "beta"}  # the others load, and so do the built-ins
    assert "alpha-log" in loggers.entries() and "sgd" in optimizers.entries()
    warning = capsys.readouterr().err
    assert len(warning.strip().splitlines()) == 1, warning
    assert warning.startswith("streambp: warning: the plugin 'broken'")
    assert_names_broken_plugin(warning, what, detail)
    (failed,) = [p for p in describe_plugins() if p.get("failed")]
    assert failed["name"] == "broken" and failed["distribution"] == "streambp-broken"
    assert failed["version"] == "0.0.1" and what in failed["error"] and detail in failed["error"]
    # Leaving it out with STREAMBP_LOAD_PLUGINS: no warning.
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "streambp-alpha")
    reset_plugin_manager()
    assert loaded() == {"alpha"}
    assert get_plugin_manager().failed == []
    assert capsys.readouterr().err == ""


def streambp_process(site, *args, env=None):
    """The real `python -m streambp` in a subprocess with the site's distributions on its path."""
    root = Path(streambp.__file__).resolve().parent.parent
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site.path), str(root)]),
                   LOAD_PLUGINS_ENV: "streambp-alpha,streambp-broken", **(env or {})}
    return subprocess.run([sys.executable, "-m", "streambp", *map(str, args)], capture_output=True, text=True,
                          env=environment, timeout=300)


def test_broken_plugin_in_a_real_process(broken_installed, blob_file, tmp_path):
    site, what, detail = broken_installed
    for args in (["--help"], ["--version"], ["plugins"]):
        proc = streambp_process(site, *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
        assert_names_broken_plugin(proc.stderr, what, detail)
    assert "streambp " + streambp.__version__ in streambp_process(site, "--version").stdout
    listing = streambp_process(site, "plugins").stdout
    assert "alpha (streambp-alpha 1.2.3): hooks register_loggers" in listing
    assert_names_broken_plugin(listing.split("broken (", 1)[1] + " 'broken' pip uninstall streambp-broken "
                               + LOAD_PLUGINS_ENV, what, detail)
    assert "FAILED" in listing
    found = json.loads(streambp_process(site, "plugins", "--json").stdout)
    assert [p["name"] for p in found] == ["alpha", "broken"]
    assert found[1]["failed"] is True and detail in found[1]["error"]
    # A command that needs what the plugin would have registered fails, naming it: never a silent no-op.
    before = blob_file.read_bytes()
    out = tmp_path / "m.npz"
    proc = streambp_process(site, "fit", blob_file, "--out", out, "--optimizer", "lion2", *FAST)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    message = " ".join(proc.stderr.split())
    assert "Error: Unknown optimizer 'lion2'" in message
    assert "The plugin 'broken' (streambp-broken) was not loaded" in message and detail in message
    assert not out.exists() and blob_file.read_bytes() == before


def test_failing_register_commands_does_not_stop_the_cli(fake_installed, blob_file):
    """A plugin whose register_commands hook raises is named in a warning; the built-in commands still run."""
    source = ("from streambp import hookimpl\n\n\n@hookimpl\ndef register_commands(app):\n"
              "    raise RuntimeError('typer too old')\n")
    fake_installed.install("streambp-badcli", "0.2", [("badcli", "fake_streambp_badcli", "streambp")],
                           {"fake_streambp_badcli": source})
    proc = streambp_process(fake_installed, "inspect", "--help", env={LOAD_PLUGINS_ENV: "streambp-badcli"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "Usage:" in proc.stdout
    assert " ".join(proc.stderr.split()) == ("streambp: warning: The plugin 'badcli' failed in its register_commands "
                                             "hook: RuntimeError: typer too old")
