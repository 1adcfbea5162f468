"""streambp-dask on a two-"host" cluster: a SpecCluster whose Nanny workers listen on 127.0.0.2 and
127.0.0.3. Synchronous data-parallel SGD equals one process with the combined batch; local SGD equals a
NumPy-free reference of the same averaging; the CLI end to end; a worker killed mid-run stops with a
checkpoint that --resume continues from, bit-identical to an uninterrupted run."""
import itertools
import json
import os
import signal
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client, Nanny, Scheduler, SpecCluster
from numpy.testing import assert_allclose, assert_array_equal
from typer.testing import CliRunner

import streambp
import streambp.checkpoint
from streambp.cli import app
from streambp.default_plugins.optimizers import SGD, Adam
from streambp.engine import EngineFailed, minibatches, shard
from streambp.evaluate import model_spec
from streambp.model import Model
from streambp.step import Stepper
from streambp.registry import open_source
from streambp.features import scan_labels
from streambp.stream import LabelEncoder
from streambp.train import FitConfig, class_weights, fit

RUN = CliRunner()


@pytest.fixture(scope="module")
def cluster():
    """(scheduler address, client) of two single-thread Nanny workers on two loopback addresses."""
    spec = {f"host{i}": {"cls": Nanny, "options": {"host": f"127.0.0.{i + 2}", "nthreads": 1}} for i in range(2)}
    with SpecCluster(scheduler={"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": ":0"}},
                     workers=spec) as c, Client(c) as client:
        client.wait_for_workers(2, timeout=60)
        yield c.scheduler_address, client


def blobs(path, n, seed=0, row_group_size=250):
    """n rows of 6 float features in 3 Gaussian blobs, label column `label`, several row groups."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(0, 1, (n, 6)) + 2.5 * np.eye(3, 6)[y]
    table = pa.table({**{f"x{j}": X[:, j] for j in range(6)}, "label": y})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def dask_config(data, address, **extra):
    return FitConfig(**{**dict(data=str(data), hidden=[8], epochs=2, batch_size=16, lr=0.3, optimizer="sgd", seed=3,
                               loggers=[], lr_schedule="constant",  # the references step at a constant rate
                               out=None, checkpoint_every="epoch", engine="dask",
                               engine_options={"scheduler": address}), **extra})


def shard_streams(c, model, epoch, workers=2):
    """Each worker's minibatches for the epoch, as the engine's actors read them."""
    streams = []
    for i in range(workers):
        source = shard(open_source(c.data), i, workers)
        spec = model_spec(model, source)
        encoder = LabelEncoder(c.label, model.classes, model.label_type)
        split = (c.val_fraction, False) if c.val_fraction else None
        streams.append(((X.copy(), y.copy()) for X, _, y in
                        minibatches(c, source, spec, encoder, model.theta.dtype, epoch, split, shard=(i,))))
    return streams


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_sync_every_step_equals_one_process_with_the_combined_batch(cluster, tmp_path, class_weight):
    # 9 row groups: worker 0 has one more, so near the epoch's end worker 1 drops out and worker 0 goes on
    data = blobs(tmp_path / "d.parquet", 2_250)
    c = dask_config(data, cluster[0], dtype="float64", class_weight=class_weight)
    trained = fit(c)
    ref = fit(FitConfig(**{**c.__dict__, "epochs": 0, "engine": "local", "engine_options": {}}))  # initial model
    weights = class_weights(c, ref, scan_labels(open_source(c.data), c.label))
    stepper = Stepper(ref, SGD(ref.theta), 2 * c.batch_size, weights)
    steps = 0
    for epoch in (1, 2):
        for pair in itertools.zip_longest(*shard_streams(c, ref, epoch)):
            batches = [b for b in pair if b is not None]
            stepper.step(np.concatenate([X for X, _ in batches]), None, np.concatenate([y for _, y in batches]), c.lr)
            steps += 1
    assert steps == trained.training["history"][-1]["step"]
    assert_allclose(trained.theta, ref.theta, rtol=1e-10, atol=1e-12)
    assert trained.training["history"][-1]["train_accuracy"] > 0.9


def test_local_sgd_averages_parameters_and_adam_state(cluster, tmp_path):
    data = blobs(tmp_path / "d.parquet", 2_000, seed=1)
    K = 4
    c = dask_config(data, cluster[0], dtype="float64", optimizer="adam", lr=0.01, epochs=1,
                    engine_options={"scheduler": cluster[0], "sync_every": K})
    trained = fit(c)
    ref = fit(FitConfig(**{**c.__dict__, "epochs": 0, "engine": "local", "engine_options": {}}))
    opt = Adam(ref.theta)
    models = [Model(ref.sizes, ref.theta.copy(), ref.classes, ref.features) for _ in (0, 1)]
    workers = [(m, Stepper(m, Adam(m.theta), c.batch_size)) for m in models]
    streams = shard_streams(c, ref, 1)
    while True:
        done = []
        for (m, s), stream in zip(workers, streams):
            m.theta[:] = ref.theta
            s.optimizer.load_state_dict(opt.state_dict())
            rows = 0
            for X, y in itertools.islice(stream, K):
                s.step(X, None, y, c.lr)
                rows += len(y)
            if rows:
                done.append((rows, m.theta.copy(), s.optimizer.state_dict()))
        if not done:
            break
        total = sum(r for r, _, _ in done)
        ref.theta[:] = sum(r / total * t for r, t, _ in done)
        state = {k: sum(r / total * st[k] for r, _, st in done) for k in ("exp_avg", "exp_avg_sq")}
        opt.load_state_dict({**done[0][2], **state, "step": max(st["step"] for _, _, st in done)})
    assert_allclose(trained.theta, ref.theta, rtol=1e-10, atol=1e-12)


def test_cli_fit_on_the_cluster_with_validation_checkpoints_and_report_files(cluster, tmp_path):
    data = blobs(tmp_path / "d.parquet", 3_000, seed=2)
    run, out = tmp_path / "run", tmp_path / "m.npz"
    result = RUN.invoke(app, ["fit", str(data), "--engine", "dask", "--scheduler", cluster[0], "--hidden", "8",
                              "--epochs", "2", "--optimizer", "sgd", "--lr", "0.5", "--val-fraction", "0.2",
                              "--run-dir", str(run),
                              "--no-standardize", "--out", str(out)])
    assert result.exit_code == 0, result.output
    history = streambp.load(out).training["history"]
    assert len(history) == 2 and history[-1]["val_accuracy"] > 0.9
    assert sorted(p.name.split("-")[1] for p in run.glob("checkpoint-*.npz")) == ["e0001", "e0002"]
    events = [json.loads(line)["event"] for line in (run / "events.jsonl").read_text().splitlines()]
    assert events[0] == "fit_start" and events.count("epoch_end") == 2 and events[-1] == "fit_end"


def test_bad_rows_skipped_on_the_workers_are_counted(cluster, tmp_path):
    data = blobs(tmp_path / "d.parquet", 2_000)
    table = pq.read_table(data)
    x0 = table.column("x0").to_numpy().copy()
    x0[[3, 700, 1999]] = np.inf  # in three different row groups (NaN would be filled, inf is bad)
    pq.write_table(table.set_column(0, "x0", pa.array(x0)), data, row_group_size=250)
    model = fit(dask_config(data, cluster[0], on_bad_rows="skip"))
    assert model.training["bad_rows"] == 3


def test_a_killed_worker_stops_with_a_checkpoint_that_resume_continues_bit_identical(cluster, tmp_path):
    address, client = cluster
    data = blobs(tmp_path / "d.parquet", 16_000, seed=5, row_group_size=1_000)
    settings = dict(batch_size=8, epochs=2, deterministic=True)
    whole = fit(dask_config(data, address, run_dir=str(tmp_path / "whole"), **settings))
    run = tmp_path / "killed"
    victim = {a: pid for a, pid in client.run(os.getpid).items() if "127.0.0.3" in a}

    def kill_after_some_steps():
        events = run / "events.jsonl"
        while not (events.exists() and '"event": "step"' in events.read_text()):
            time.sleep(0.01)
        for pid in victim.values():
            os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_after_some_steps, daemon=True)
    killer.start()
    with pytest.raises(EngineFailed, match=f"streambp fit --resume {run}"):
        fit(dask_config(data, address, run_dir=str(run), **settings))
    killer.join(timeout=10)
    (checkpoint,) = run.glob("checkpoint-*.npz")
    _, _, state = streambp.checkpoint.load_latest(run)
    assert state["epoch"] == 1 and state["done"] > 0  # mid-epoch, at the last synchronised step
    deadline = time.monotonic() + 60  # until the scheduler has dropped the dead worker and the nanny restarted it
    while set(victim) & set(client.scheduler_info()["workers"]) or len(client.scheduler_info()["workers"]) < 2:
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        time.sleep(0.1)
    # the run recorded the number of workers it used (here: all of them); a mid-epoch resume needs as many
    resumed = fit(dask_config(data, address, resume=str(run), engine_options={"scheduler": address, "workers": 2},
                              **settings))
    assert_array_equal(resumed.theta, whole.theta)
    assert [h["train_loss"] for h in resumed.training["history"]] == \
        [h["train_loss"] for h in whole.training["history"]]


def test_workers_option_starts_a_local_cluster(tmp_path):
    data = blobs(tmp_path / "d.parquet", 1_000, seed=4)
    out = tmp_path / "m.npz"
    result = RUN.invoke(app, ["fit", str(data), "--engine", "dask", "--workers", "2", "--hidden", "8", "--epochs",
                              "3", "--lr", "0.5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert streambp.load(out).training["history"][-1]["train_accuracy"] > 0.8


def test_user_errors(tmp_path, monkeypatch):
    import streambp_dask.engine

    monkeypatch.setattr(streambp_dask.engine, "CONNECT_TIMEOUT", "2s")
    data = blobs(tmp_path / "d.parquet", 500)
    for args, message in [
        (["--sync-every", "0", "--workers", "1"], "--sync-every and --workers must be at least 1"),
        (["--workers", "1", "--on-bad-rows", "skip", "--bad-rows-out", str(tmp_path / "bad.parquet")],
         "--bad-rows-out is not supported with --engine dask"),
        (["--scheduler", "tcp://127.0.0.1:9"], "Cannot use the Dask scheduler at tcp://127.0.0.1:9"),
    ]:
        result = RUN.invoke(app, ["fit", str(data), "--engine", "dask", *args, "--out", str(tmp_path / "m.npz")])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()) and "Traceback" not in result.output
