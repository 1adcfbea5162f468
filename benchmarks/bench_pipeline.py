#!/usr/bin/env python
"""End-to-end training throughput from Parquet through the real `streambp fit`, against pyarrow baselines.

Data (generated once into --data-dir and reused while its parameters match): --rows rows of 784 float32
features uniform in [0, 1) and an int64 label, the argmax over 10 classes of X @ W for a fixed random
linear teacher W (its columns centred to sum to zero, so that the classes come out roughly balanced).
The same rows are written in four layouts, in row groups of 65,536 rows, without dictionary encoding:
    wide  784 float32 columns f0..f783 + label      compression none and zstd
    list  one fixed_size_list<float32, 784> column x + label      none and zstd
Generation writes 65,536-row pieces with a ParquetWriter per layout, so its memory stays near 0.5 GB
whatever --rows is. Each file takes about rows x 3.1 KiB: 627 MB uncompressed at the default 200k rows.

Measured per file (each repeat reads the file once first, so every measurement runs on a warm page cache):
    pyarrow decode        ParquetFile.iter_batches(batch_size=65536, use_threads=True) over all columns.
    pyarrow->matrix       the same, plus each record batch turned into a row-major float32 [n, 784] NumPy
                          matrix (and the labels into NumPy), the way a user would write it: wide files by
                          np.column_stack of the columns' to_numpy() or by filling a preallocated matrix
                          column by column (both timed, the faster reported); list files by
                          column('x').flatten().to_numpy().reshape(-1, 784), which copies nothing.
Measured per (network, batch size):
    streambp in-memory    Stepper + SGD over random in-memory data (bench_kernels.StreambpImpl): the kernel
                          rate, the ceiling for the end-to-end rate. Calibrated once, then timed right before
                          every end-to-end run, so that both rates of a ratio come from the same minutes.
    streambp end-to-end   `streambp fit FILE --epochs E --hidden H --batch-size B --optimizer sgd --lr 0.1
                          --threads T --out TMP/model.npz --cache none` (+ `--features x` for list files) in a
                          fresh Python process per run, with fit's defaults otherwise (shuffle buffer of 16,384
                          rows, prefetch 1): every epoch decodes the file.
    streambp cached       the same with `--cache TMP/cache` (a fresh cache directory per run): the first
                          epoch decodes the file and writes the decoded rows there, later epochs read them.
                          rows/s and seconds are the last epoch's (--epochs, default 2), from the model's
                          training history: the training loop including the decoding that runs in fit's
                          prefetch thread. The first epoch's rows/s is reported beside it: it also pays for
                          the process's first touch of its buffers and of pyarrow's memory (0.3-0.7 s on this
                          VM in some runs, with 200k rows a third of the epoch). "wall s" is the whole
                          process (interpreter start, imports, Numba cache load, the label pre-pass, every
                          epoch, writing the model) and "peak RSS" its VmHWM. An untimed warm-up process per
                          (layout, network, batch) first fills Numba's on-disk cache.
Every rate is the median [min-max] over --repeats runs; the ratios are ratios of medians. "other CPU %" is
the CPU time other processes used during the timed runs (/proc/stat minus ours and our children's), in %
of the machine, worst run of the row: above a few % the row's timings are disturbed.

--rss-scaling instead checks that memory does not grow with the data: it writes only the wide
uncompressed layout at --rows and at --big-rows (default 10x --rows: 6.3 GB of disk at the default
200k rows, checked before writing), trains net A (batch: the first of --batches) for one epoch on each
(--repeats times) and reports both peak RSS figures and their ratio (target: big/small at most 1.10).
Peak RSS grows with the row group being decoded, so --rows should be at least one row group (65,536).

Usage (from the repository root, in the project's virtual environment):
    python benchmarks/bench_pipeline.py                                   # 4 layouts x nets A,B at batch 128
    python benchmarks/bench_pipeline.py --json benchmarks/results/pipeline.json
    python benchmarks/bench_pipeline.py --nets A --batches 32,128,512 --threads 1
    python benchmarks/bench_pipeline.py --rss-scaling --json benchmarks/results/pipeline-rss.json
    python benchmarks/bench_pipeline.py --rows 20000 --repeats 1 --nets A --seconds 0.3     # smoke test
    python benchmarks/bench_pipeline.py --rss-scaling --rows 20000 --big-rows 100000 --repeats 1 --threads 1
"""
import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_kernels import StreambpImpl, calibrate, cpu_model, fmt_eps, git_state, make_data  # noqa: E402

D, K = 784, 10
ROW_GROUP_ROWS = 65536
READ_BATCH_ROWS = 65536
WARMUP_ROWS = 4096
GENERATOR_VERSION = 1
SEED = 0
NETS = {"A": [D, 128, K], "B": [D, 512, 256, K]}
LAYOUTS = [("wide", "none"), ("wide", "zstd"), ("list", "none"), ("list", "zstd")]
LR = 0.1


# ---------------------------------------------------------------------------------------------------------
# Data: generated piece by piece, every layout in one pass, cached with a parameter sidecar per file.


def teacher():
    """The fixed linear teacher W [D, K], its columns centred so that classes are roughly balanced."""
    import numpy as np

    W = np.random.default_rng([SEED, 1]).standard_normal((D, K))
    return (W - W.mean(axis=0)).astype(np.float32)


def piece(index, n, W):
    """Rows of piece `index`: X float32 [n, D] uniform in [0, 1) and y int64 = argmax(X @ W)."""
    import numpy as np

    X = np.random.default_rng([SEED, 2, index]).random((n, D), dtype=np.float32)
    return X, np.argmax(X @ W, axis=1).astype(np.int64)


def arrow_schema(kind):
    import pyarrow as pa

    if kind == "wide":
        fields = [pa.field(f"f{j}", pa.float32(), nullable=False) for j in range(D)]
    else:
        fields = [pa.field("x", pa.list_(pa.float32(), D), nullable=False)]
    return pa.schema(fields + [pa.field("label", pa.int64(), nullable=False)])


def arrow_table(kind, X, XT, y):
    """A piece as a table of the layout; XT is X transposed and contiguous (one row per wide column)."""
    import pyarrow as pa

    if kind == "wide":
        cols = [pa.array(XT[j]) for j in range(D)]
    else:
        cols = [pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), D)]
    return pa.Table.from_arrays(cols + [pa.array(y)], schema=arrow_schema(kind))


def data_path(data_dir, rows, kind, compression):
    return os.path.join(data_dir, f"rows{rows}", f"{kind}-{compression}.parquet")


def file_params(rows, kind, compression):
    return {"generator": GENERATOR_VERSION, "seed": SEED, "rows": rows, "features": D, "classes": K,
            "row_group_rows": ROW_GROUP_ROWS, "layout": kind, "compression": compression,
            "use_dictionary": False}


def is_cached(path, params):
    try:
        with open(path + ".json") as f:
            meta = json.load(f)
        return meta["params"] == params and os.path.getsize(path) == meta["bytes"]
    except (OSError, ValueError, KeyError):
        return False


def estimated_bytes(rows):
    return rows * (D * 4 + 8)


def check_disk(data_dir, need):
    os.makedirs(data_dir, exist_ok=True)
    free = shutil.disk_usage(data_dir).free
    print(f"generating {need / 1e9:.2f} GB of Parquet in {data_dir} ({free / 1e9:.1f} GB free)", flush=True)
    if need * 1.05 > free:
        sys.exit(f"not enough disk space in {data_dir}: need about {need / 1e9:.1f} GB, {free / 1e9:.1f} GB "
                 "free. Use --data-dir elsewhere or fewer --rows.")


def generate(data_dir, rows, layouts):
    """Paths of the layouts' files for `rows` rows, writing those not cached (all in one pass)."""
    import pyarrow.parquet as pq

    paths = {lay: data_path(data_dir, rows, *lay) for lay in layouts}
    todo = [lay for lay in layouts if not is_cached(paths[lay], file_params(rows, *lay))]
    if not todo:
        return paths
    check_disk(data_dir, estimated_bytes(rows) * len(todo))
    os.makedirs(os.path.dirname(paths[todo[0]]), exist_ok=True)
    t0 = time.perf_counter()
    W = teacher()
    writers = {lay: pq.ParquetWriter(paths[lay] + ".tmp", arrow_schema(lay[0]), compression=lay[1],
                                     use_dictionary=False) for lay in todo}
    try:
        for i, start in enumerate(range(0, rows, ROW_GROUP_ROWS)):
            X, y = piece(i, min(ROW_GROUP_ROWS, rows - start), W)
            XT = X.T.copy() if any(kind == "wide" for kind, _ in todo) else None
            for lay, w in writers.items():
                w.write_table(arrow_table(lay[0], X, XT, y), row_group_size=ROW_GROUP_ROWS)
            del X, XT, y
    finally:
        for w in writers.values():
            w.close()
    for lay in todo:
        os.replace(paths[lay] + ".tmp", paths[lay])
        meta = {"params": file_params(rows, *lay), "bytes": os.path.getsize(paths[lay])}
        with open(paths[lay] + ".json.tmp", "w") as f:
            json.dump(meta, f)
        os.replace(paths[lay] + ".json.tmp", paths[lay] + ".json")
    print(f"  wrote {len(todo)} file(s) of {rows:,} rows in {time.perf_counter() - t0:.1f} s", flush=True)
    return paths


# ---------------------------------------------------------------------------------------------------------
# Measurement helpers.


def machine_busy_s():
    """Busy CPU seconds of the whole machine since boot (/proc/stat), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (v + [0] * 7)[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def own_cpu_s():
    """CPU seconds of this process and its waited-for children."""
    ru = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(r.ru_utime + r.ru_stime for r in ru)


def measured(fn, *args):
    """(fn's result, wall seconds, fraction of the machine's CPU that other processes used meanwhile)."""
    b0, c0, t0 = machine_busy_s(), own_cpu_s(), time.perf_counter()
    out = fn(*args)
    wall, own = time.perf_counter() - t0, own_cpu_s() - c0
    b1 = machine_busy_s()
    other = None if b0 is None or b1 is None else max(0.0, b1 - b0 - own) / (wall * (os.cpu_count() or 1))
    return out, wall, other


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


def warm_cache(path):
    """Read the file once so that the timed reads come from the page cache."""
    with open(path, "rb", buffering=0) as f:
        while f.read(16 << 20):
            pass


def worst(values):
    v = [x for x in values if x is not None]
    return max(v) if v else None


# ---------------------------------------------------------------------------------------------------------
# pyarrow baselines: each function reads the whole file and returns its row count.


def record_batches(path):
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).iter_batches(batch_size=READ_BATCH_ROWS, use_threads=True)


def decode_only(path):
    return sum(batch.num_rows for batch in record_batches(path))


def matrix_wide_stack(path):
    import numpy as np

    rows = 0
    for batch in record_batches(path):
        X = np.column_stack([batch.column(j).to_numpy() for j in range(D)])
        y = batch.column(D).to_numpy()
        assert len(y) == len(X)
        rows += len(X)
    return rows


def matrix_wide_fill(path):
    import numpy as np

    rows, buf = 0, np.empty((READ_BATCH_ROWS, D), dtype=np.float32)
    for batch in record_batches(path):
        X = buf[:batch.num_rows]
        for j in range(D):
            X[:, j] = batch.column(j).to_numpy()
        y = batch.column(D).to_numpy()
        assert len(y) == len(X)
        rows += len(X)
    return rows


def matrix_list(path):
    rows = 0
    for batch in record_batches(path):
        X = batch.column("x").flatten().to_numpy().reshape(-1, D)
        y = batch.column("label").to_numpy()
        assert len(y) == len(X)
        rows += len(X)
    return rows


MATRIX_VARIANTS = {"wide": {"column_stack": matrix_wide_stack, "fill": matrix_wide_fill},
                   "list": {"flatten": matrix_list}}


def rate_run(fn, path):
    rows, wall, other = measured(fn, path)
    return {"rows_per_s": rows / wall, "seconds": wall, "other_cpu_fraction": other}


# ---------------------------------------------------------------------------------------------------------
# streambp in memory (the kernel rate) and end to end (a fresh `streambp fit` process per run).


class InMemory:
    """Rows/s of Stepper + SGD on random in-memory data: calibrated once, then one timed run per run()."""

    def __init__(self, sizes, batch, args):
        self.impl = StreambpImpl(sizes, make_data(sizes, args.memory_rows, seed=0), batch, LR)
        self.cal = calibrate(self.impl, args.seconds, min(0.15, args.seconds / 2), None, args.cooldown)
        self.batch, self.cooldown = batch, args.cooldown
        self.runs = []

    def run(self):
        time.sleep(self.cooldown)
        steps = self.cal["steps_per_repeat"]
        _, wall, other = measured(self.impl.run, steps)
        self.runs.append({"rows_per_s": steps * self.batch / wall, "other_cpu_fraction": other})
        return self.runs[-1]

    def summary(self):
        return {"rows_per_s": summary([r["rows_per_s"] for r in self.runs]),
                "other_cpu_fraction": worst(r["other_cpu_fraction"] for r in self.runs), **self.cal}


DRIVER = """\
import resource, sys
from streambp.cli import app
try:
    rc = app(args=sys.argv[1:], prog_name="streambp", standalone_mode=False)
except SystemExit as e:
    rc = e.code
# VmHWM is this process's own peak: on Linux ru_maxrss also keeps the peak of the process it was forked
# from (the benchmark, holding its data), which read as ~2.2 GB for every run.
try:
    with open("/proc/self/status") as f:
        kib = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))
except (OSError, StopIteration):
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("BENCH_MAXRSS_KIB", kib, flush=True)
sys.exit(rc if isinstance(rc, int) else 0)
"""


def fit_args(path, kind, sizes, batch, threads, epochs, out, cache):
    args = ["fit", path, "--epochs", str(epochs), "--hidden", ",".join(map(str, sizes[1:-1])), "--batch-size",
            str(batch), "--optimizer", "sgd", "--lr", str(LR), "--out", out, "--threads", str(threads),
            "--cache", cache]
    return args + (["--features", "x"] if kind == "list" else [])


def run_fit(args, cached=False):
    """One `streambp fit` process (with a fresh cache directory when `cached`); returns (wall s, peak RSS MiB,
    the epochs' history records)."""
    import streambp

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        out = os.path.join(tmp, "model.npz")
        cmd = [sys.executable, "-c", DRIVER, *fit_args(*args, out, os.path.join(tmp, "cache") if cached else "none")]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[3:])} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        kib = [int(ln.split()[1]) for ln in proc.stdout.splitlines() if ln.startswith("BENCH_MAXRSS_KIB")]
        history = streambp.load(out).training["history"]
    rss_mib = kib[-1] / (1024.0 * 1024.0) if sys.platform == "darwin" else kib[-1] / 1024.0
    return wall, rss_mib, history


def end_to_end(path, kind, sizes, batch, threads, epochs, cached=False):
    """The last epoch's rows/s (the steady rate) and the first's, which also pays for the process's first
    touch of its buffers and of pyarrow's memory (and, cached, for writing the cache)."""
    (wall, rss, history), _, other = measured(run_fit, (path, kind, sizes, batch, threads, epochs), cached)
    return {"rows_per_s": history[-1]["rows_per_s"], "epoch_s": history[-1]["seconds"],
            "first_epoch_rows_per_s": history[0]["rows_per_s"], "wall_s": wall, "peak_rss_mib": rss,
            "other_cpu_fraction": other}


def warm_up_fit(path, kind, sizes, batch, threads):
    """An untimed run on a small file, so that no timed run pays for Numba compiling into its cache."""
    return run_fit((path, kind, sizes, batch, threads, 1))[0]


def summarise_e2e(runs):
    keys = ("rows_per_s", "epoch_s", "first_epoch_rows_per_s", "wall_s", "peak_rss_mib")
    return {**{k: summary([r[k] for r in runs]) for k in keys},
            "other_cpu_fraction": worst(r["other_cpu_fraction"] for r in runs)}


# ---------------------------------------------------------------------------------------------------------
# The two modes.


def bench_files(args):
    """Baselines per file, in-memory per (net, batch), end to end per (file, net, batch); each repeat
    goes over every file, so that drift over the run hits all rows alike."""
    paths = generate(args.data_dir, args.rows, args.layouts)
    warm = generate(args.data_dir, WARMUP_ROWS, [("wide", "none"), ("list", "none")])
    points = [(net, b) for net in args.nets for b in args.batches]
    memory = {(net, b): InMemory(NETS[net], b, args) for net, b in points}  # calibrated; timed beside each e2e
    warmups = {f"{kind} {net} B={b}": warm_up_fit(warm[kind, "none"], kind, NETS[net], b, args.threads)
               for kind in ("wide", "list") for net, b in points}
    decode = {lay: [] for lay in paths}
    matrix = {lay: {v: [] for v in MATRIX_VARIANTS[lay[0]]} for lay in paths}
    e2e = {(lay, net, b): [] for lay in paths for net, b in points}
    cached = {(lay, net, b): [] for lay in paths for net, b in points}
    for r in range(args.repeats):
        print(f"repeat {r + 1}/{args.repeats}:", flush=True)
        for lay in paths:
            path = paths[lay]
            warm_cache(path)
            decode[lay].append(rate_run(decode_only, path))
            for name, fn in MATRIX_VARIANTS[lay[0]].items():
                matrix[lay][name].append(rate_run(fn, path))
            for net, b in points:
                mem = memory[net, b].run()
                time.sleep(args.cooldown)
                run = end_to_end(path, lay[0], NETS[net], b, args.threads, args.epochs)
                e2e[lay, net, b].append(run)
                time.sleep(args.cooldown)
                hit = end_to_end(path, lay[0], NETS[net], b, args.threads, args.epochs, cached=True)
                cached[lay, net, b].append(hit)
                print(f"  {lay[0]}-{lay[1]} {net} B={b}: decode {fmt_eps(decode[lay][-1]['rows_per_s'])}, "
                      f"in memory {fmt_eps(mem['rows_per_s'])}, e2e {fmt_eps(run['rows_per_s'])} rows/s "
                      f"(first epoch {fmt_eps(run['first_epoch_rows_per_s'])}), cached "
                      f"{fmt_eps(hit['rows_per_s'])} (first epoch {fmt_eps(hit['first_epoch_rows_per_s'])}), "
                      f"wall {run['wall_s']:.1f} s, RSS {run['peak_rss_mib']:.0f} / {hit['peak_rss_mib']:.0f} MiB",
                      flush=True)
    memory = {k: m.summary() for k, m in memory.items()}
    return {"points": table_points(paths, points, memory, decode, matrix, e2e, cached), "warmup_wall_s": warmups}


def table_points(paths, points, memory, decode, matrix, e2e, cached):
    """One record per (file, net, batch): the file's baselines, the in-memory rate, end to end, ratios."""
    rows = []
    for lay in paths:
        mats = {v: summary([m["rows_per_s"] for m in runs]) for v, runs in matrix[lay].items()}
        best = max(mats, key=lambda v: mats[v]["median"])
        base = {"file": paths[lay], "file_bytes": os.path.getsize(paths[lay]), "layout": lay[0],
                "compression": lay[1],
                "pyarrow_decode": {"rows_per_s": summary([d["rows_per_s"] for d in decode[lay]])},
                "pyarrow_matrix": {"rows_per_s": mats[best], "variant": best, "variants": mats},
                "baseline_other_cpu_fraction": worst(x["other_cpu_fraction"] for x in decode[lay] + [
                    m for runs in matrix[lay].values() for m in runs])}
        for net, b in points:
            row = {**base, "net": net, "sizes": NETS[net], "batch": b, "streambp_in_memory": memory[net, b],
                   "streambp_e2e": summarise_e2e(e2e[lay, net, b]),
                   "streambp_cached": summarise_e2e(cached[lay, net, b])}
            e = row["streambp_e2e"]["rows_per_s"]["median"]
            row["ratios"] = {"e2e/in_memory": e / memory[net, b]["rows_per_s"]["median"],
                             "e2e/pyarrow_matrix": e / mats[best]["median"],
                             "cached/in_memory": row["streambp_cached"]["rows_per_s"]["median"] /
                             memory[net, b]["rows_per_s"]["median"]}
            rows.append(row)
    return rows


def bench_rss(args):
    """Peak RSS of one epoch of net A on the wide uncompressed file at --rows and at --big-rows."""
    lay, net, batch = ("wide", "none"), "A", args.batches[0]
    small = generate(args.data_dir, args.rows, [lay])[lay]
    big = generate(args.data_dir, args.big_rows, [lay])[lay]
    warm = generate(args.data_dir, WARMUP_ROWS, [lay])[lay]
    warm_up_fit(warm, lay[0], NETS[net], batch, args.threads)
    runs = {"small": [], "big": []}
    for r in range(args.repeats):
        for name, path in (("small", small), ("big", big)):
            warm_cache(path)
            time.sleep(args.cooldown)
            run = end_to_end(path, lay[0], NETS[net], batch, args.threads, 1)
            runs[name].append(run)
            print(f"  repeat {r + 1}/{args.repeats} {name}: {fmt_eps(run['rows_per_s'])} rows/s, "
                  f"RSS {run['peak_rss_mib']:.0f} MiB", flush=True)
    out = {"net": net, "sizes": NETS[net], "batch": batch, "layout": lay[0], "compression": lay[1],
           "small": {"rows": args.rows, "file": small, "file_bytes": os.path.getsize(small),
                     **summarise_e2e(runs["small"])},
           "big": {"rows": args.big_rows, "file": big, "file_bytes": os.path.getsize(big),
                   **summarise_e2e(runs["big"])}}
    out["rss_ratio_big_small"] = out["big"]["peak_rss_mib"]["median"] / out["small"]["peak_rss_mib"]["median"]
    out["within_10_percent"] = out["rss_ratio_big_small"] <= 1.10
    return out


# ---------------------------------------------------------------------------------------------------------
# Reporting.


def fmt_range(s):
    return f"{fmt_eps(s['median'])} [{fmt_eps(s['min'])}-{fmt_eps(s['max'])}]"


def fmt_other(x):
    return "?" if x is None else f"{100 * x:.0f}"


def markdown(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def files_table(points):
    head = ["layout", "compression", "net", "batch", "pyarrow decode rows/s", "pyarrow->matrix rows/s",
            "streambp in-memory rows/s", "streambp e2e rows/s median [min-max]", "first epoch rows/s",
            "e2e / in-memory", "e2e / pyarrow->matrix", "cached rows/s median [min-max]", "cached / in-memory",
            "wall s", "peak RSS MiB (cached)", "other CPU %"]
    rows = []
    for p in points:
        e, h = p["streambp_e2e"], p["streambp_cached"]
        other = worst([p["baseline_other_cpu_fraction"], p["streambp_in_memory"]["other_cpu_fraction"],
                       e["other_cpu_fraction"], h["other_cpu_fraction"]])
        m = p["pyarrow_matrix"]
        rows.append([p["layout"], p["compression"], f"{p['net']} {'-'.join(map(str, p['sizes']))}",
                     str(p["batch"]), fmt_eps(p["pyarrow_decode"]["rows_per_s"]["median"]),
                     f"{fmt_eps(m['rows_per_s']['median'])} ({m['variant']})",
                     fmt_eps(p["streambp_in_memory"]["rows_per_s"]["median"]), fmt_range(e["rows_per_s"]),
                     fmt_eps(e["first_epoch_rows_per_s"]["median"]),
                     f"{p['ratios']['e2e/in_memory']:.2f}x", f"{p['ratios']['e2e/pyarrow_matrix']:.2f}x",
                     fmt_range(h["rows_per_s"]), f"{p['ratios']['cached/in_memory']:.2f}x",
                     f"{e['wall_s']['median']:.1f}",
                     f"{e['peak_rss_mib']['median']:.0f} ({h['peak_rss_mib']['median']:.0f})", fmt_other(other)])
    return markdown(head, rows)


def rss_table(r):
    head = ["data", "rows", "file MB", "e2e rows/s median [min-max]", "wall s",
            "peak RSS MiB median [min-max]", "other CPU %"]
    rows = []
    for name in ("small", "big"):
        s = r[name]
        rss = s["peak_rss_mib"]
        rows.append([name, f"{s['rows']:,}", f"{s['file_bytes'] / 1e6:.0f}", fmt_range(s["rows_per_s"]),
                     f"{s['wall_s']['median']:.1f}",
                     f"{rss['median']:.0f} [{rss['min']:.0f}-{rss['max']:.0f}]",
                     fmt_other(s["other_cpu_fraction"])])
    verdict = "within 10%" if r["within_10_percent"] else "MORE than 10% apart"
    text = (markdown(head, rows) + f"\n\npeak RSS big/small = {r['rss_ratio_big_small']:.3f} ({verdict}); "
            f"net {r['net']} {'-'.join(map(str, r['sizes']))}, batch {r['batch']}, {r['layout']} "
            f"{r['compression']}.")
    if r["small"]["rows"] < ROW_GROUP_ROWS:
        text += (f"\nNote: the small file is one row group of {r['small']['rows']:,} rows, smaller than the "
                 f"big file's {ROW_GROUP_ROWS:,}-row row groups; pyarrow holds a row group's column chunks "
                 f"while it decodes them, so compare with --rows >= {ROW_GROUP_ROWS:,} (the default is).")
    return text


def header():
    import numba
    import numpy as np
    import pyarrow

    import streambp
    import streambp.threads

    return {
        "machine": {"date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
        "git": git_state(),
        "versions": {"python": platform.python_version(), "streambp": streambp.__version__,
                     "numpy": np.__version__, "numba": numba.__version__, "pyarrow": pyarrow.__version__},
        "threads_info": streambp.threads.info(),
    }


# ---------------------------------------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="/tmp/streambp-bench", help="where the generated Parquet files "
                    "are cached (default /tmp/streambp-bench)")
    ap.add_argument("--rows", type=int, default=200_000, help="rows per data set (default 200000)")
    ap.add_argument("--nets", default="A,B", help="subset of " + ", ".join(
        f"{k}={'-'.join(map(str, v))}" for k, v in NETS.items()) + " (default A,B)")
    ap.add_argument("--layouts", default=",".join(f"{k}-{c}" for k, c in LAYOUTS),
                    help="comma-separated subset of the layouts (default: all four)")
    ap.add_argument("--batches", default="128", help="comma-separated batch sizes (default 128)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for streambp and "
                    "pyarrow (default: all cores)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (default 3)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per end-to-end run; the last one's rate is "
                    "reported (default 2)")
    ap.add_argument("--seconds", type=float, default=1.0, help="seconds per timed in-memory run (default 1)")
    ap.add_argument("--memory-rows", type=int, default=16384, help="rows of the random in-memory data set "
                    "(default 16384)")
    ap.add_argument("--cooldown", type=float, default=0.2, help="seconds of sleep before each timed "
                    "streambp run, for spinning BLAS workers to settle (default 0.2)")
    ap.add_argument("--rss-scaling", action="store_true", help="instead: peak RSS of net A on --rows vs "
                    "--big-rows rows (wide, uncompressed only)")
    ap.add_argument("--big-rows", type=int, default=None, help="rows of the big data set of --rss-scaling "
                    "(default 10x --rows; about 3.1 KiB of disk per row)")
    ap.add_argument("--json", metavar="PATH", help="write all results as JSON to PATH")
    a = ap.parse_args(argv)
    a.nets = [n.strip().upper() for n in a.nets.split(",") if n.strip()]
    for n in a.nets:
        if n not in NETS:
            ap.error(f"unknown net {n!r}; choose from {','.join(NETS)}")
    a.batches = [int(b) for b in a.batches.split(",") if b.strip()]
    a.layouts = [tuple(lay.strip().split("-")) for lay in a.layouts.split(",") if lay.strip()]
    if not set(a.layouts) <= set(LAYOUTS):
        ap.error(f"--layouts takes some of {','.join(f'{k}-{c}' for k, c in LAYOUTS)}")
    a.big_rows = a.big_rows or 10 * a.rows
    if min(a.rows, a.memory_rows) < max(a.batches) or min(a.batches) < 1 or a.repeats < 1:
        ap.error("--rows and --memory-rows must be at least the largest batch; --batches and --repeats >= 1")
    return a


def main(argv=None):
    args = parse_args(argv)
    import streambp.threads  # sets OMP_WAIT_POLICY=PASSIVE and Numba's threading layer, inherited by fit

    args.threads = streambp.threads.configure(args.threads)  # also pyarrow's CPU count for the baselines
    results = {"config": {k: v for k, v in vars(args).items() if k != "json"}, **header()}
    t0 = time.perf_counter()
    machine = results["machine"]
    print(f"streambp pipeline benchmark  {machine['date_utc']}  {machine['cpu_model']}, "
          f"{os.cpu_count()} CPUs, {args.threads} threads", flush=True)
    if args.rss_scaling:
        print(f"--rss-scaling writes the wide uncompressed layout at {args.rows:,} and {args.big_rows:,} "
              f"rows: about {estimated_bytes(args.big_rows) / 1e9:.1f} GB of disk for the big one.",
              flush=True)
        results["rss_scaling"] = bench_rss(args)
        report = rss_table(results["rss_scaling"])
    else:
        results.update(bench_files(args))
        report = files_table(results["points"])
    results["wall_s"] = time.perf_counter() - t0
    print()
    print(report)
    print()
    epochs = "one epoch" if args.rss_scaling else f"the last of {args.epochs} epochs"
    print(f"rows/s medians over the repeats; e2e = {epochs} of `streambp fit` (decoding in its prefetch "
          "thread included); wall s and peak RSS: the whole fit process, median. other CPU %: other "
          "processes' CPU use during the timed runs (worst run), in % of the machine.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
