"""The `dask` engine: data-parallel training on a Dask distributed cluster.

Each worker holds an actor (ShardTrainer) that opens its own shard of the data (every n-th Parquet row
group, or file) by path, so the data never passes through the client, and runs streambp's kernels on it.
The client holds the parameters and the optimizer, and keeps them in step:
- sync_every=1 (default): at every step each worker computes the gradient of its next minibatch at the
  current parameters; the client averages them, weighted by rows (by class weight with --class-weight),
  and takes one optimizer step: the update of one minibatch made of all the workers' rows.
- sync_every=K > 1 (local SGD): each worker takes K optimizer steps on its own minibatches, starting from
  the current parameters and optimizer state; the client averages the parameters and every array of the
  optimizer state, weighted by the rows each worker trained on (the step count is the largest).
Worker i's minibatch order is shuffled by (seed, epoch, i); updates are summed in worker order, so a run is
reproducible. A worker lost mid-run stops it with EngineFailed: streambp fit then checkpoints the last
synchronised parameters, and `streambp fit --resume` continues (on the same number of workers).
"""
import contextlib
import os
import signal
import threading
import time

import numpy as np

from streambp.engine import EngineFailed, minibatches, shard
from streambp.errors import StreambpError

CONNECT_TIMEOUT = "30s"  # to reach --scheduler
CALL_TIMEOUT_S = 600  # one worker call (a minibatch or K of them) taking longer means the worker is stuck
SETUP_TIMEOUT_S = 120  # for a worker to open its shard
POLL_S = 1.0  # how often a wait checks that the worker is still there


def in_main_thread():
    return threading.current_thread() is threading.main_thread()


class ShardTrainer:
    """A Dask actor on one worker: streams shard `index` of `count` and computes updates on it."""

    def __init__(self, config, model_args, class_weights, index, count, threads):
        from streambp.evaluate import model_spec
        from streambp.model import Model
        from streambp.step import Stepper
        from streambp.registry import open_source
        from streambp.stream import LabelEncoder

        self.c, self.index, self.threads = config, index, threads
        self.model = Model(*model_args)
        source = open_source(config.data, config.source, **config.source_options)
        self.source = shard(source, index, count)
        self.spec = model_spec(self.model, self.source)
        self.encoder = LabelEncoder(config.label, self.model.classes, self.model.label_type)
        self.stepper = Stepper(self.model, None, config.batch_size, class_weights)
        self.batches = None  # until start_epoch: an actor rebuilt after a worker restart must not look finished

    def start_epoch(self, epoch, skip):
        """Start the epoch's stream of this shard, past its first `skip` minibatches."""
        from streambp import threads
        from streambp.badrows import BadRows

        threads.configure(self.threads)  # Numba's thread count belongs to the calling thread: the actor's
        c = self.c
        split = (c.val_fraction, False) if c.val_fraction else None
        self.bad = BadRows() if c.on_bad_rows == "skip" else None
        self.batches = minibatches(c, self.source, self.spec, self.encoder, self.model.theta.dtype, epoch, split,
                                   self.bad, shard=(self.index,))
        for _ in range(skip):
            if next(self.batches, None) is None:
                break

    def bad_row_count(self):
        """Rows of this shard skipped (--on-bad-rows skip) in the epoch so far."""
        return self.bad.count if self.bad is not None else 0

    def _next(self):
        if self.batches is None:
            raise RuntimeError("this shard trainer was (re)started after the epoch began")
        return next(self.batches, None)

    def _weight(self, y):
        w = self.stepper.class_weights
        return float(len(y)) if w is None else float(w[y].sum())

    def gradient(self, theta):
        """(dtheta, weight, rows, loss, correct) of the next minibatch at theta, or None past the shard's end."""
        batch = self._next()
        if batch is None:
            return None
        X, y = batch
        self.model.theta[:] = theta
        loss, correct = self.stepper.loss_and_grad(X, None, y)
        # returned without a copy: the reply is serialised before the client can send the next call
        return self.stepper.dtheta, self._weight(y), len(y), loss, correct

    def local_steps(self, theta, state, lrs):
        """Up to len(lrs) optimizer steps from theta and the optimizer state: (theta, state, rows, loss_sum,
        correct, steps), or None past the shard's end."""
        from streambp.registry import optimizers

        s = self.stepper
        if s.optimizer is None:
            s.optimizer = optimizers.get(self.c.optimizer)[0](self.model.theta, **self.c.optimizer_params)
        self.model.theta[:] = theta
        s.optimizer.load_state_dict(state)
        rows = correct = steps = 0
        loss_sum = 0.0
        for lr in lrs:
            batch = self._next()
            if batch is None:
                break
            loss, hits = s.step(batch[0], None, batch[1], lr)
            rows += len(batch[1])
            loss_sum += loss * len(batch[1])
            correct += hits
            steps += 1
        if steps == 0:
            return None
        return self.model.theta, s.optimizer.state_dict(), rows, loss_sum, correct, steps  # as in gradient()


def weighted_sum(arrays, weights, out):
    """out <- the sum of weights[i] * arrays[i], added in worker order (so a run is reproducible)."""
    out[...] = 0
    for a, w in zip(arrays, weights):
        out += w * a
    return out


def average_state(states, weights):
    """The optimizer states averaged: arrays weighted by `weights`, the step count the largest."""
    out = dict(states[0])
    for key, value in out.items():
        if isinstance(value, np.ndarray):
            out[key] = weighted_sum([s[key] for s in states], weights, np.empty_like(value))
    out["step"] = max(s["step"] for s in states)
    return out


class DaskEngine:
    """Connects to --scheduler (using --workers of its workers, default all) or starts a local cluster of
    --workers processes; one ShardTrainer per worker."""

    def __init__(self, run, scheduler=None, workers=None, sync_every=1):
        c = run.config
        if sync_every < 1 or (workers is not None and workers < 1):
            raise StreambpError(f"--sync-every and --workers must be at least 1 (got {sync_every} and {workers}).")
        if c.bad_rows_out:
            raise StreambpError("--bad-rows-out is not supported with --engine dask (each worker skips its bad "
                                "rows); leave it out, or train with --engine local.")
        self.run, self.sync_every, self.cluster, self.client, self.workers, self.futures = \
            run, sync_every, None, None, [], []
        try:
            self._connect(scheduler, workers)
            wanted = workers or len(self._worker_info())
            c.engine_options["workers"] = wanted  # a resumed run needs as many shards
            self.client.wait_for_workers(wanted, timeout=60)
            self._start_trainers(wanted)
        except BaseException:
            self.close()
            raise
        self.rows_per_step = wanted * c.batch_size
        self.grad = np.empty_like(run.model.theta)

    def _connect(self, scheduler, workers):
        from distributed import Client, LocalCluster

        try:
            if scheduler:
                self.client = Client(scheduler, timeout=CONNECT_TIMEOUT, direct_to_workers=True)
            else:
                # Ctrl-C is for streambp fit (a checkpoint, then exit), not for the workers it starts
                previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread() else None
                try:
                    self.cluster = LocalCluster(n_workers=workers or max(1, (os.cpu_count() or 2) // 2),
                                                threads_per_worker=1, processes=True, dashboard_address=":0")
                finally:
                    if previous is not None:
                        signal.signal(signal.SIGINT, previous)
                self.client = Client(self.cluster, direct_to_workers=True)
        except (OSError, TimeoutError, ValueError) as e:
            where = f"the Dask scheduler at {scheduler}" if scheduler else "a local Dask cluster"
            raise StreambpError(f"Cannot use {where}: {type(e).__name__}: {e}.") from None

    def _worker_info(self):
        """{address: info} of every worker (some distributed versions list 5 unless asked for all)."""
        try:
            return self.client.scheduler_info(n_workers=-1)["workers"]
        except TypeError:  # older distributed: no n_workers, and every worker is listed
            return self.client.scheduler_info()["workers"]

    def _start_trainers(self, wanted):
        r = self.run
        info = self._worker_info()
        addresses = sorted(info)[:wanted]
        if len(addresses) < wanted:
            raise StreambpError(f"The Dask cluster has {len(addresses)} workers; this run needs {wanted}.")
        local_threads = max(1, (os.cpu_count() or 1) // wanted)
        m = r.model
        model_args = (m.sizes, m.theta, m.classes, m.features, m.label_type, m.input_column, None, m.mean, m.inv_std)
        # the actors live as long as their futures are held
        self.futures = [self.client.submit(ShardTrainer, r.config, model_args, r.class_weights, i, wanted,
                                           local_threads if self.cluster else info[a]["nthreads"], actor=True,
                                           workers=[a], allow_other_workers=False, pure=False)
                        for i, a in enumerate(addresses)]
        self.workers = list(zip(self._wait(self.futures, addresses, "opening its shard", SETUP_TIMEOUT_S),
                                addresses))

    def _wait(self, futures, addresses, what, timeout=CALL_TIMEOUT_S):
        """The futures' results. A call to a worker that dies may never return, so waiting polls whether
        each worker is still in the cluster."""
        results = []
        try:
            for f, address in zip(futures, addresses):
                start = time.monotonic()
                while True:
                    try:
                        results.append(f.result(timeout=POLL_S))
                        break
                    except TimeoutError:
                        if address not in self._worker_info():
                            raise EngineFailed(f"The Dask worker {address} left the cluster while {what}.") from None
                        if time.monotonic() - start > timeout:
                            raise EngineFailed(f"The Dask worker {address} took over {timeout} s {what}.") from None
        except StreambpError:
            raise
        except Exception as e:
            raise EngineFailed(f"A Dask worker was lost or failed while {what} ({type(e).__name__}: {e}).") from None
        return results

    def _call(self, workers, method, *args):
        return self._wait([getattr(a, method)(*args) for a, _ in workers], [w for _, w in workers], method)

    def epoch(self, epoch, skip):
        r, K = self.run, self.sync_every
        self._call(self.workers, "start_epoch", epoch, skip * K)
        active = list(self.workers)
        while active:
            if K == 1:
                results = self._call(active, "gradient", r.model.theta)
            else:
                lrs = [r.lr_at(r.steps + j) for j in range(K)]
                results = self._call(active, "local_steps", r.model.theta, r.optimizer.state_dict(), lrs)
            active = [a for a, res in zip(active, results) if res is not None]
            results = [res for res in results if res is not None]
            if not results:
                if r.bad_rows is not None and r.bad_rows.recording:  # the first epoch counts them
                    r.bad_rows.count += sum(self._call(self.workers, "bad_row_count"))
                return
            if K == 1:
                yield self._apply_gradients(results)
            else:
                yield self._average(results)

    def _apply_gradients(self, results):
        r = self.run
        total = max(sum(res[1] for res in results), np.finfo(self.grad.dtype).tiny)  # all-zero class weights
        weighted_sum([res[0] for res in results], [res[1] / total for res in results], self.grad)
        r.optimizer.step(r.model.theta, self.grad, r.lr_at(r.steps))
        rows = sum(res[2] for res in results)
        loss = sum(w * loss for _, w, _, loss, _ in results) / total
        return rows, loss, sum(res[4] for res in results), 1

    def _average(self, results):
        r = self.run
        rows = sum(res[2] for res in results)
        weights = [res[2] / rows for res in results]
        weighted_sum([res[0] for res in results], weights, r.model.theta)
        r.optimizer.load_state_dict(average_state([res[1] for res in results], weights))
        return rows, sum(res[3] for res in results) / rows, sum(res[4] for res in results), \
            max(res[5] for res in results)

    def close(self):
        self.workers = self.futures = []
        for thing in (self.client, self.cluster):
            if thing is not None:
                with contextlib.suppress(Exception):  # a cluster already gone: nothing left to release
                    thing.close()
