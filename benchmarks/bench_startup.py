#!/usr/bin/env python
"""Start-up time of `streambp --help`, `streambp --version` (target: under 0.5 s warm, with the installed
plugins) and `streambp fit`: with Numba's cache empty (the first run after installing) and warm.

    python benchmarks/bench_startup.py                      # 3 warm repeats, net A 784-128-10
    python benchmarks/bench_startup.py --repeats 5 --json benchmarks/results/startup.json

Each run is a fresh `streambp fit` process on a small Parquet file (--rows rows of 784 float32 columns and
a label, written to a temporary directory), one epoch of batch 128, with NUMBA_CACHE_DIR pointing at a
directory of this benchmark: empty for the cold run, then kept for the warm runs. Reported per run:
    import s          process start to `import streambp.cli` done (a separate `python -c` process)
    to training s     process start to the first epoch's start (from RUN_DIR/events.jsonl: the epoch_end
                      event's time minus the epoch's seconds): interpreter, imports, threads, opening the
                      file, the label pre-pass, building the model, loading (or compiling) the kernels
    whole s           the whole process, including the epoch on --rows rows and writing the model
Medians [min-max] over --repeats for the warm runs; the cold run is done once (it fills the cache).
`--help` and `--version` are timed as whole processes, after one untimed run (a warm start).

--mnist times instead what a user sees on a first run: process start to the line "epoch 1/1" of
`streambp fit examples/mnist_train.parquet --label label --epochs 1` on stdout (target: under 5 s), --repeats
times with an empty Numba cache (each in a new cache directory) and then warm, with the load average.

--kernels attributes that first run's compile time: the same fit, once, with an empty Numba cache, listing
every function the fit's own process compiled (Numba's "numba:compile" event; a load from the cache is not
one), with the thread, when it started and its seconds excluding the functions compiled inside it. What the
warm-up's helper process compiled is loaded from the cache here, so it is not listed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

D, K = 784, 10
MNIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "examples", "mnist_train.parquet")


def write_data(path, rows):
    rng = np.random.default_rng(0)
    X = rng.random((rows, D), dtype=np.float32)
    cols = {f"f{j}": X[:, j] for j in range(D)}
    cols["label"] = rng.integers(0, K, rows)
    pq.write_table(pa.table(cols), path)


def run(cmd, env):
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    whole = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return t0, whole


def fit_once(data, tmp, env, hidden, i):
    run_dir = os.path.join(tmp, f"run-{i}")
    cmd = [sys.executable, "-c", "from streambp.cli import main; main()", "fit", data, "--epochs", "1",
           "--hidden", hidden, "--batch-size", "128", "--out", os.path.join(tmp, f"model-{i}.npz"),
           "--run-dir", run_dir]
    t0, whole = run(cmd, env)
    with open(os.path.join(run_dir, "events.jsonl")) as f:
        epoch = next(e for e in map(json.loads, f) if e["event"] == "epoch_end")
    import_s = run([sys.executable, "-c", "import streambp.cli"], env)[1]
    return {"import_s": import_s, "to_training_s": epoch["time"] - epoch["seconds"] - t0, "whole_s": whole}


def cli_seconds(args, env, repeats):
    """Median [min-max] seconds of the whole process `python -m streambp ARGS`, after one untimed run."""
    cmd = [sys.executable, "-m", "streambp", *args]
    run(cmd, env)
    times = [run(cmd, env)[1] for _ in range(repeats)]
    return f"{statistics.median(times):.2f} [{min(times):.2f}-{max(times):.2f}]"


def to_first_epoch(tmp, env):
    """Seconds from starting `streambp fit` on the bundled MNIST to its line "epoch 1/1" on stdout."""
    cmd = [sys.executable, "-m", "streambp", "fit", MNIST, "--label", "label", "--epochs", "1",
           "--out", os.path.join(tmp, "mnist.npz")]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seconds = None
    for line in proc.stdout:
        if seconds is None and line.startswith("epoch 1/"):
            seconds = time.perf_counter() - t0
    if proc.wait() != 0 or seconds is None:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode})")
    return seconds


def mnist(repeats):
    cells = {"empty": [], "warm": []}
    loads = []
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        for i in range(repeats):
            env = {**os.environ, "NUMBA_CACHE_DIR": os.path.join(tmp, f"numba-cache-{i}")}
            loads.append(os.getloadavg()[0])
            cells["empty"].append(to_first_epoch(tmp, env))
            cells["warm"].append(to_first_epoch(tmp, env))
    print("| Numba cache | runs | start to 'epoch 1/1' s |")
    print("|---|---|---|")
    for name, v in cells.items():
        print(f"| {name} | {len(v)} | {statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}] |")
    print(f"\n`streambp fit examples/mnist_train.parquet --label label --epochs 1`; median [min-max]; load average "
          f"{statistics.median(loads):.2f} on {os.cpu_count()} cores.")


# `streambp fit ARGS`, printing as JSON [start s, exclusive s, thread, function] for each compilation.
ATTRIBUTE = """
import json, sys, threading, time
from numba.core import event
from streambp.cli import main

t0, open_, done = time.perf_counter(), {}, []

class Compiles(event.Listener):
    def on_start(self, ev):
        open_.setdefault(threading.get_ident(), []).append([time.perf_counter(), 0.0])

    def on_end(self, ev):
        stack = open_[threading.get_ident()]
        start, inner = stack.pop()
        seconds = time.perf_counter() - start
        if stack:
            stack[-1][1] += seconds
        done.append([start - t0, seconds - inner, threading.current_thread().name,
                     ev.data["dispatcher"].py_func.__qualname__])

event.register("numba:compile", Compiles())
try:
    sys.argv[0] = "streambp"
    main()
finally:
    print(json.dumps(done))
"""


def attribute():
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        env = {**os.environ, "NUMBA_CACHE_DIR": os.path.join(tmp, "numba-cache")}
        cmd = [sys.executable, "-c", ATTRIBUTE, "fit", MNIST, "--label", "label", "--epochs", "1",
               "--out", os.path.join(tmp, "mnist.npz")]
        proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    done = json.loads(proc.stdout.splitlines()[-1])
    print("| started s | compiling s (own) | thread | function |")
    print("|---|---|---|---|")
    for start, seconds, thread, name in sorted(done):
        print(f"| {start:.2f} | {seconds:.2f} | {thread} | {name} |")
    print(f"\n{sum(d[1] for d in done):.2f} s compiling in the fit's process, load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores.")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--hidden", default="128")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json")
    p.add_argument("--mnist", action="store_true", help="time the first epoch line of the bundled MNIST instead")
    p.add_argument("--kernels", action="store_true", help="list what a first fit of the bundled MNIST compiles")
    a = p.parse_args()
    if a.kernels:
        return attribute()
    if a.mnist:
        return mnist(a.repeats)
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        data = os.path.join(tmp, "data.parquet")
        write_data(data, a.rows)
        env = {**os.environ, "NUMBA_CACHE_DIR": os.path.join(tmp, "numba-cache")}
        cold = fit_once(data, tmp, env, a.hidden, 0)
        warm = [fit_once(data, tmp, env, a.hidden, i) for i in range(1, a.repeats + 1)]
    for args in (["--help"], ["--version"]):
        print(f"`streambp {args[0]}`: {cli_seconds(args, os.environ, a.repeats)} s (median [min-max])")
    keys = ("import_s", "to_training_s", "whole_s")
    print("| Numba cache | runs | import s | to training s | whole s |")
    print("|---|---|---|---|---|")
    print(f"| empty (first run) | 1 | {cold['import_s']:.2f} | {cold['to_training_s']:.2f} | {cold['whole_s']:.2f} |")
    cells = []
    for k in keys:
        v = [w[k] for w in warm]
        cells.append(f"{statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]")
    print(f"| warm | {len(warm)} | " + " | ".join(cells) + " |")
    print(f"\n`streambp fit` of {a.rows:,} rows x {D} columns, net {D}-{a.hidden.replace(',', '-')}-{K}, 1 epoch; "
          "warm: median [min-max].")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": a.rows, "hidden": a.hidden, "cold": cold, "warm": warm}, f, indent=1)


if __name__ == "__main__":
    main()
