#!/usr/bin/env python
"""Data-parallel training on Dask (streambp-dask) against the local engine: rows/s by number of workers.

    python benchmarks/bench_dask.py                       # 1 and 2 workers on this machine
    python benchmarks/bench_dask.py --workers 1,2,4,8 --rows 400000 --json out.json   # a bigger machine

Writes a Parquet file (--rows x 784 float32 columns in 64k-row row groups, 10 classes), then for each
setting runs `streambp fit` (the library call) for --epochs epochs and reports the rows/s of the last
epoch (the first pays for the workers' start and JIT loading), median of --repeats runs:
- local: the local engine with all cores (the baseline);
- dask W workers, sync every step: a local cluster of W single-process workers with cores/W threads each,
  per-worker batch = batch / W, so each update uses the same total batch as the local run;
- dask W workers, --sync-every K: local SGD, per-worker batch as above.
The synchronisation cost per round is estimated as (round time of dask with 1 worker) - (step time of the
local engine with the same thread count): sending the parameters, receiving a gradient, averaging.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def make_data(path, rows, features=784, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (classes, features)).astype(np.float32)
    writer = None
    for start in range(0, rows, 65536):
        n = min(65536, rows - start)
        y = rng.integers(0, classes, n)
        X = centres[y] + rng.normal(0, 2, (n, features)).astype(np.float32)
        table = pa.table({**{f"x{j}": X[:, j] for j in range(features)}, "label": y})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=65536)
    writer.close()


def run(data, hidden, batch, epochs, engine="local", **options):
    from streambp.train import FitConfig, fit

    t = time.perf_counter()
    model = fit(FitConfig(data=data, hidden=hidden, batch_size=batch, epochs=epochs, lr=0.1, loggers=[], out=None,
                          engine=engine, engine_options=options, checkpoint_every="epoch"))
    history = model.training["history"]
    return {"rows_per_s": history[-1]["rows_per_s"], "steps": history[-1]["step"] - history[-2]["step"],
            "seconds": history[-1]["seconds"], "wall": time.perf_counter() - t}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=131072)
    p.add_argument("--hidden", default="512,256")
    p.add_argument("--batch", type=int, default=512, help="total rows per update")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--sync-every", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json")
    a = p.parse_args()
    hidden = [int(h) for h in a.hidden.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.parquet")
        make_data(data, a.rows)
        settings = [("local", 1, None)]
        for w in sorted(set(map(int, a.workers.split(","))) | {1}):
            settings += [("dask", w, 1), ("dask", w, a.sync_every)]
        print("| engine | workers | sync every | batch per worker | rows/s median [min-max] | vs local | "
              "ms per update |")
        print("|---|---|---|---|---|---|---|")
        base = None
        for engine, w, k in settings:
            b = a.batch // w
            options = {} if engine == "local" else {"workers": w, "sync_every": k}
            reps = [run(data, hidden, b if engine == "dask" else a.batch, a.epochs, engine, **options)
                    for _ in range(a.repeats)]
            rates = [r["rows_per_s"] for r in reps]
            med = statistics.median(rates)
            base = base or med
            ms = statistics.median(r["seconds"] / r["steps"] for r in reps) * 1e3
            results.append({"engine": engine, "workers": w, "sync_every": k, "batch_per_worker": b,
                            "rows_per_s": rates, "median": med, "vs_local": med / base, "ms_per_update": ms})
            print(f"| {engine} | {w} | {k or '-'} | {b if engine == 'dask' else a.batch} | {med:,.0f} "
                  f"[{min(rates):,.0f}-{max(rates):,.0f}] | {med / base:.2f}x | {ms:.2f} |", flush=True)
    local, one = results[0], next(r for r in results if r["engine"] == "dask" and r["workers"] == 1
                                  and r["sync_every"] == 1)
    print(f"synchronisation per update (dask 1 worker - local, same threads and batch): "
          f"{one['ms_per_update'] - local['ms_per_update']:.2f} ms")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "args": vars(a),
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
