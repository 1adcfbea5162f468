"""Checkpoints at epoch ends, and --resume continuing a run to the same parameters bit for bit."""
import numpy as np
from typer.testing import CliRunner

import streambp
import streambp.checkpoint
from streambp.cli import app
from streambp.train import FitConfig, fit

RUN = CliRunner()


def checkpoints(run):
    return sorted(p.name for p in run.glob("checkpoint-*.npz"))


def positions(run):
    """[(epoch, global step)] of the checkpoints in run, oldest first."""
    return [(int(n[12:16]), int(n[18:27])) for n in checkpoints(run)]


def settings(blob_file, **extra):
    """A constant rate: resumed runs here extend the epochs, which would lengthen a cosine schedule."""
    return dict(data=str(blob_file), hidden=[6], batch_size=16, lr=0.01, optimizer="adam", threads=1,
                val_fraction=0.2, early_stopping=10, loggers=[], lr_schedule="constant", **extra)


def test_resume_after_epoch_two_equals_an_uninterrupted_run(tmp_path, blob_file):
    whole = fit(FitConfig(epochs=5, out=None, **settings(blob_file)))
    run = tmp_path / "run"
    fit(FitConfig(epochs=2, out=None, run_dir=str(run), **settings(blob_file)))
    (e1, s1), (e2, s2) = positions(run)  # the hash split's size, hence the steps, depends on the path
    assert (e1, e2, s2) == (1, 2, 2 * s1)
    resumed = fit(FitConfig(epochs=5, out=None, resume=str(run), **settings(blob_file)))
    np.testing.assert_array_equal(resumed.theta, whole.theta)
    assert [h["epoch"] for h in resumed.training["history"]] == [1, 2, 3, 4, 5]
    assert [h["val_loss"] for h in resumed.training["history"]] == [h["val_loss"] for h in whole.training["history"]]
    assert positions(run) == [(e, s1 * e) for e in (3, 4, 5)]


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

    def step(self, X, idx, y, lr):
        calls.append(1)
        if len(calls) == 40:  # in epoch 2 (30 or 31 minibatches per epoch), a real SIGINT to this process
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, X, idx, y, lr)

    monkeypatch.setattr(Stepper, "step", step)
    run = tmp_path / "run"
    with pytest.raises(Interrupted, match="streambp fit --resume"):
        fit(FitConfig(epochs=3, out=None, run_dir=str(run), **settings(blob_file)))
    monkeypatch.setattr(Stepper, "step", real)
    assert positions(run)[-1] == (2, 40)  # mid-way through epoch 2, after the 40th step
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
    while not proc.stdout.readline().startswith("Training"):  # the handler is installed before this line
        pass
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "streambp fit --resume" in err and "Traceback" not in err
    assert err.startswith("Interrupted in epoch") and "Error" not in err  # an interrupt is not an error
    assert any(p.name.startswith("checkpoint-") for p in run.iterdir())
    assert not (tmp_path / "m.npz").exists()


def test_parse_every():
    import pytest

    from streambp.errors import StreambpError
    from streambp.train import parse_every

    assert [parse_every(t) for t in ("500", "30s", "10m", "2h", "0.5m", "epoch")] == \
        [(500, 0.0), (0, 30.0), (0, 600.0), (0, 7200.0), (0, 30.0), (0, 0.0)]
    for bad in ("0", "-5", "abc", "10x", "0s", "", "m"):
        with pytest.raises(StreambpError, match="--checkpoint-every takes"):
            parse_every(bad)


def test_checkpoint_every_n_steps_keeps_the_newest_k(tmp_path, blob_file):
    run = tmp_path / "run"
    fit(FitConfig(epochs=2, out=None, run_dir=str(run), checkpoint_every="7", keep_checkpoints=2,
                  **settings(blob_file)))
    _, _, state = streambp.checkpoint.load_latest(run)
    total = state["steps"]  # mid-epoch checkpoints every 7 steps, and one at each epoch end
    assert state["epoch"] == 2 and state["done"] == 0 and total % 2 == 0
    written = sorted({(1 + (s > total // 2), s) for s in range(7, total + 1, 7)} | {(1, total // 2), (2, total)})
    assert positions(run) == written[-2:]


def test_default_run_dir_beside_the_model_reproduced_by_its_config(tmp_path, blob_file):
    common = ["--hidden", "6", "--epochs", "2", "--val-fraction", "0.2"]
    first = RUN.invoke(app, ["fit", str(blob_file), *common, "--deterministic", "--out", str(tmp_path / "a.npz")])
    assert first.exit_code == 0, first.output
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("a-")
    assert [e for e, _ in positions(run)] == [1, 2]
    assert {p.name for p in run.iterdir()} - set(checkpoints(run)) == {"config.toml", "events.jsonl"}
    config = (run / "config.toml").read_text()
    assert "\ndeterministic = true\n" in config and "\nthreads = " in config and "\nrun_dir =" not in config
    import json

    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events if e["event"] != "step"] == ["fit_start", "epoch_end", "epoch_end", "fit_end"]
    last = [e for e in events if e["event"] == "epoch_end"][-1]
    assert last["step"] == positions(run)[-1][1] and 0.5 < last["train_accuracy"] <= 1
    assert sum(map(sum, last["val_confusion"])) > 0 and len(last["val_confusion"]) == 3
    again = RUN.invoke(app, ["fit", "--config", str(run / "config.toml"), "--out", str(tmp_path / "b.npz")])
    assert again.exit_code == 0, again.output
    np.testing.assert_array_equal(streambp.load(tmp_path / "b.npz").theta, streambp.load(tmp_path / "a.npz").theta)
    assert len(list((tmp_path / "runs").iterdir())) == 2  # the rerun got a run directory of its own


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, blob_file):
    run, out = tmp_path / "run", tmp_path / "m.npz"
    first = RUN.invoke(app, ["fit", str(blob_file), "--hidden", "6", "--epochs", "1", "--run-dir", str(run),
                             "--out", str(tmp_path / "first.npz")])
    assert first.exit_code == 0, first.output
    result = RUN.invoke(app, ["fit", "--resume", str(run), "--epochs", "3", "--lr", "3e38", "--out", str(out)])
    assert result.exit_code == 3, result.output
    message = " ".join(result.output.split())
    assert "diverged in epoch 2" in message and "NaN, inf or exploding" in message and "Traceback" not in message
    (good,) = checkpoints(run)
    assert good.startswith("checkpoint-e0001-")
    assert f"The last good checkpoint is {run / good}" in message
    assert f"streambp fit --resume {run} --lr 3e+37" in message
    model, _, _ = streambp.checkpoint.load_latest(run)
    assert np.all(np.isfinite(model.theta))
    assert not out.exists()


def test_sigkill_at_an_arbitrary_step_then_resume_is_bit_identical(tmp_path):
    """A real process killed with SIGKILL mid-epoch (possibly while writing a checkpoint), resumed from
    its newest checkpoint, ends with the parameters of an uninterrupted run, bit for bit."""
    import random
    import subprocess
    import sys
    import time

    import pyarrow.parquet as pq

    from conftest import blob_table, make_blobs

    X, y = make_blobs(n=20_000, d=5, k=3, seed=4)
    data = tmp_path / "data.parquet"
    pq.write_table(blob_table(X, y), data, row_group_size=5_000)
    cli = [sys.executable, "-c", "from streambp.cli import main; main()"]

    def command(name, *extra):
        return [*cli, "fit", str(data), "--hidden", "16,8", "--epochs", "3", "--batch-size", "32", "--threads", "2",
                "--optimizer", "adam", "--lr", "0.003", "--val-fraction", "0.1", "--deterministic",
                "--checkpoint-every", "3", "--run-dir", str(tmp_path / name), "--out", str(tmp_path / f"{name}.npz"),
                *extra]

    whole = subprocess.run(command("whole"), capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    steps_per_epoch = -(-18_000 // 32)  # about 90% of the rows are on the training side
    target = random.Random().randrange(20, 2 * steps_per_epoch)  # a step somewhere in the first two epochs
    run = tmp_path / "killed"
    proc = subprocess.Popen(command("killed"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        found = checkpoints(run) if run.exists() else []
        if found and int(found[-1].split("-s")[1][:9]) >= target:
            break
        time.sleep(0.001)
    assert proc.poll() is None, f"the run ended before step {target}: {proc.stderr.read()}"
    proc.kill()
    proc.wait(timeout=30)
    assert proc.returncode == -9
    assert not (tmp_path / "killed.npz").exists()
    resumed = subprocess.run([*cli, "fit", "--resume", str(run)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a, b = streambp.load(tmp_path / "whole.npz"), streambp.load(tmp_path / "killed.npz")
    np.testing.assert_array_equal(b.theta, a.theta)
    assert [h["train_loss"] for h in b.training["history"]] == [h["train_loss"] for h in a.training["history"]]
    assert [h["val_loss"] for h in b.training["history"]] == [h["val_loss"] for h in a.training["history"]]


def test_engine_failure_checkpoints_its_position_and_resume_continues(tmp_path, blob_file, monkeypatch):
    """An engine that cannot go on (a lost worker) gets a checkpoint of the last update; resuming equals an
    uninterrupted run, also when it failed before the epoch's first update."""
    import itertools
    import re

    import pytest

    from streambp.default_plugins.engines import LocalEngine
    from streambp.engine import EngineFailed
    from streambp.errors import StreambpError

    whole = fit(FitConfig(epochs=3, out=None, **settings(blob_file)))
    real = LocalEngine.epoch

    for fail_at in [(2, 0), (2, 7)]:
        def failing(self, epoch, skip):  # fails before its update i, as a lost worker does
            items = real(self, epoch, skip)
            for i in itertools.count():
                if (epoch, i) == fail_at:
                    raise EngineFailed("A worker was lost.")
                item = next(items, None)
                if item is None:
                    return
                yield item

        monkeypatch.setattr(LocalEngine, "epoch", failing)
        run = tmp_path / f"run{fail_at[1]}"
        with pytest.raises(EngineFailed, match=f"A worker was lost. Wrote .*; resume with: streambp fit --resume "
                                               f"{re.escape(str(run))}"):
            fit(FitConfig(epochs=3, out=None, run_dir=str(run), **settings(blob_file)))
        monkeypatch.setattr(LocalEngine, "epoch", real)
        assert positions(run)[-1][0] == (1 if fail_at[1] == 0 else 2)
        if fail_at[1]:  # mid-epoch: the settings that decide the stream may not change
            with pytest.raises(StreambpError, match="written mid-epoch.*batch_size"):
                fit(FitConfig(epochs=3, out=None, resume=str(run), **{**settings(blob_file), "batch_size": 8}))
        resumed = fit(FitConfig(epochs=3, out=None, resume=str(run), **settings(blob_file)))
        np.testing.assert_array_equal(resumed.theta, whole.theta)
        assert [h["epoch"] for h in resumed.training["history"]] == [1, 2, 3]


def test_a_run_directory_of_another_run_is_refused(tmp_path, blob_file):
    import pytest

    from streambp.errors import StreambpError

    run = tmp_path / "run"
    fit(FitConfig(epochs=1, out=None, run_dir=str(run), **settings(blob_file)))
    with pytest.raises(StreambpError, match=f"--run-dir {run} holds the checkpoints of another run"):
        fit(FitConfig(epochs=1, out=None, run_dir=str(run), **settings(blob_file)))
    fit(FitConfig(epochs=1, out=str(tmp_path / "m.npz"), **settings(blob_file)))
    fit(FitConfig(epochs=1, out=str(tmp_path / "m.npz"), **settings(blob_file)))  # within the same second
    assert len(list((tmp_path / "runs").iterdir())) == 2


class NoState:
    def state_dict(self):
        return {"step": 0, "hyper": {}}


def test_checkpoints_are_ordered_by_number_past_epoch_9999(tmp_path):
    """As text, checkpoint-e10000 sorts before checkpoint-e9999: pruning deleted each new checkpoint."""
    from streambp.model import Model

    model = Model.initialise([2, 3, 2], [0, 1], ["a", "b"])
    state = {"done": 0, "history": [], "labels": {}, "config": {}}
    for epoch in (9998, 9999, 10000, 10001):
        streambp.checkpoint.save_checkpoint(tmp_path, model, NoState(), {**state, "epoch": epoch, "steps": epoch * 7},
                                            keep=2)
    assert checkpoints(tmp_path) == ["checkpoint-e10000-s000070000.npz", "checkpoint-e10001-s000070007.npz"]
    assert streambp.checkpoint.latest(tmp_path).endswith("checkpoint-e10001-s000070007.npz")
    _, _, resumed = streambp.checkpoint.load_latest(tmp_path)
    assert (resumed["epoch"], resumed["steps"]) == (10001, 70007)
    (tmp_path / "checkpoint-e0002-s000000999.npz").write_bytes(b"")  # a higher step of a lower epoch is older
    assert streambp.checkpoint.latest(tmp_path).endswith("checkpoint-e10001-s000070007.npz")
