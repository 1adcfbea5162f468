#!/usr/bin/env python
"""Time to accuracy: `streambp fit` against Spark MLlib's MultilayerPerceptronClassifier, same Parquet file.

Data (generated once into --data-dir and reused while its parameters match, see the sidecar .json next to
each file): --rows training rows and --test-rows test rows of 100 float32 features, independent standard
normal, and an int64 label in 0..9 given by a fixed random teacher network 100 -> 128 tanh -> 10:
    label = argmax_k (tanh(x @ W1) @ W2)[k],  W1 [100, 128] ~ N(0, (--teacher-scale)^2 / 100), no biases,
    W2 [128, 10] ~ N(0, 1), each row centred over the classes and each column scaled to unit norm (so the
    classes come out roughly balanced, 8-12% each).
With the default --teacher-scale 3 the task is learnable but not trivial for a 100-128-10 sigmoid student:
a linear (softmax regression) model gets about 61%, Adam (lr 0.003, batch 128) on 2M rows about 75% after
one epoch, 86% after two, 89% after five. Spark's L-BFGS on 100k rows of it: 20% test accuracy after 5
iterations, 52% after 12, 61% after 25 and 50 (the linear plateau). Train and test rows come from
independent random streams.
Layout: wide float32 columns f0..f99 + int64 label, row groups of 65,536 rows (so that Spark splits the
file into several partitions), no dictionary, --compression none by default; written piece by piece with
a ParquetWriter, so generation holds one row group in memory whatever --rows is. About 408 bytes per row:
816 MB for 2M training rows, 82 MB for 200k test rows.

Spark (one fresh Python process, SparkSession and JVM per fit, so that every fit pays its own session start
and the JVM's peak RSS is that fit's alone): SparkSession.builder.master(--spark-master, default local[*])
with spark.driver.memory (--spark-driver-memory, default 8g), spark.ui.enabled false; spark.read.parquet of
the training file, VectorAssembler(f0..f99 -> features), MultilayerPerceptronClassifier(layers=[100, 128,
10], solver='l-bfgs', maxIter=K, blockSize=--spark-block-size (128), tol=--spark-tol (1e-6, Spark's
default), seed=--seed); fit; then accuracy on the test file via model.transform + Multiclass-
ClassificationEvaluator(metricName='accuracy'). Once per K in --spark-iters (default 12). Times:
    session s   pyspark import + SparkSession.getOrCreate() (the JVM start)
    fit s       MultilayerPerceptronClassifier.fit: reading and assembling the Parquet file, Spark's
                caching of the stacked blocks, K L-BFGS iterations (each a pass over the data, plus any
                line-search passes)
    eval s      transform + evaluator over the test file (not counted in the time to accuracy)
Peak RSS: the JVM's VmHWM (/proc/<pid>/status of the java process found among this worker's descendants,
read after the evaluation, before spark.stop()); also the Python driver's ru_maxrss. The JVM, with local
mode, is where all the work happens.

streambp (the real CLI in one subprocess): `streambp fit TRAIN --label label --hidden 128 --epochs E
--batch-size B --lr LR --optimizer OPT [--momentum M] --seed S [--threads T] --val TEST --out TMP/model.npz`
(defaults: E=5, adam, lr 0.003, batch 128, all cores), run through a small driver that prints the process's
ru_maxrss at the end. Its per-epoch 'seconds' and 'val_accuracy' come from the model's training history;
the start-up (interpreter, imports, Numba's cache load, the label pre-pass over the file, opening the
validation file) is the time from launching the process to the "Training ..." line the console logger
prints at fit start (stdout read line by line and time-stamped here). Time to accuracy A after epoch e:
    with start-up     start-up + sum of the epoch seconds of epochs 1..e
    without start-up  sum of the epoch seconds of epochs 1..e
Validation after each epoch is *not* included (streambp does not count it in the epoch seconds; the
start-up figure ends before the first epoch), nor is writing the model. The resolution is one epoch: the
first epoch whose test accuracy is >= A; streambp may have got there earlier within that epoch, so this
overstates its time. An untimed warm-up fit on the test file first fills Numba's on-disk cache.

For each Spark fit (maxIter K, test accuracy A_K) the table shows Spark's time (fit, and session + fit) and
streambp's time to reach A_K (without and with start-up), and the ratios Spark / streambp, plus each
system's peak RSS. Before each timed run the training file is read once, so that both systems start on a
warm page cache. An untimed Spark warm-up (a session that counts the test file's rows) first brings
Spark's jars into the page cache (--no-spark-warmup skips it). "other CPU %" is the CPU time other
processes used during the run, in % of the machine: above a few % the run was disturbed (the machine is
shared). With --repeats R every run is repeated R times (interleaved) and times are medians.

Needs pyspark (`pip install pyspark`; Spark 4 wants Java 17 or 21 on the PATH or in JAVA_HOME).

Usage (from the repository root, in the project's virtual environment):
    python benchmarks/bench_spark.py --json benchmarks/results/spark.json        # the comparison, ~5 min
    python benchmarks/bench_spark.py --spark-iters 12,25,50 --epochs 5           # a curve of Spark points
    python benchmarks/bench_spark.py --rows 100000 --test-rows 20000 --spark-iters 5 --epochs 3  # smoke
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
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_pipeline import DRIVER, is_cached, machine_busy_s, own_cpu_s  # noqa: E402  (DRIVER: the CLI + its peak RSS)

D, H, K = 100, 128, 10
ROW_GROUP_ROWS = 65536
GENERATOR_VERSION = 1
FEATURES = [f"f{j}" for j in range(D)]
RESULT_TAG = "BENCH_SPARK_RESULT "
RSS_TAG = "BENCH_MAXRSS_KIB "


# ---------------------------------------------------------------------------------------------------------
# Data: a fixed random teacher network, written piece by piece, cached with a parameter sidecar per file.


def teacher(scale, seed):
    """W1 [D, H] and W2 [H, K] of the teacher: label = argmax(tanh(X @ W1) @ W2)."""
    import numpy as np

    rng = np.random.default_rng([seed, 1])
    W1 = rng.standard_normal((D, H)) * (scale / np.sqrt(D))
    W2 = rng.standard_normal((H, K))
    W2 -= W2.mean(axis=1, keepdims=True)
    W2 /= np.linalg.norm(W2, axis=0, keepdims=True)
    return W1.astype(np.float32), W2.astype(np.float32)


def piece(split, index, n, seed, W1, W2):
    """Rows of piece `index` of split 0 (train) or 1 (test): X float32 [n, D], y int64 [n]."""
    import numpy as np

    X = np.random.default_rng([seed, 2, split, index]).standard_normal((n, D), dtype=np.float32)
    return X, np.argmax(np.tanh(X @ W1) @ W2, axis=1).astype(np.int64)


def arrow_schema():
    import pyarrow as pa

    return pa.schema([pa.field(f, pa.float32(), nullable=False) for f in FEATURES]
                     + [pa.field("label", pa.int64(), nullable=False)])


def file_params(split, rows, a):
    return {"generator": GENERATOR_VERSION, "split": split, "rows": rows, "features": D, "classes": K,
            "teacher": f"{D}-{H}tanh-{K}", "teacher_scale": a.teacher_scale, "seed": a.seed,
            "row_group_rows": ROW_GROUP_ROWS, "compression": a.compression, "use_dictionary": False}


def estimated_bytes(rows):
    return rows * (D * 4 + 8)


def write_split(path, split, rows, a, W1, W2):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema()
    counts = np.zeros(K, dtype=np.int64)
    with pq.ParquetWriter(path + ".tmp", schema, compression=a.compression, use_dictionary=False) as w:
        for i, start in enumerate(range(0, rows, ROW_GROUP_ROWS)):
            X, y = piece(split, i, min(ROW_GROUP_ROWS, rows - start), a.seed, W1, W2)
            XT = X.T.copy()
            counts += np.bincount(y, minlength=K)
            w.write_table(pa.Table.from_arrays([pa.array(XT[j]) for j in range(D)] + [pa.array(y)],
                                               schema=schema), row_group_size=ROW_GROUP_ROWS)
            del X, XT, y
    os.replace(path + ".tmp", path)
    meta = {"params": file_params(split, rows, a), "bytes": os.path.getsize(path),
            "class_counts": counts.tolist()}
    with open(path + ".json.tmp", "w") as f:
        json.dump(meta, f)
    os.replace(path + ".json.tmp", path + ".json")


def generate(a):
    """(train path, test path), writing whichever is not cached."""
    sub = os.path.join(a.data_dir, f"teacher{a.teacher_scale:g}-seed{a.seed}-{a.compression}")
    paths = {"train": os.path.join(sub, f"train-{a.rows}.parquet"),
             "test": os.path.join(sub, f"test-{a.test_rows}.parquet")}
    splits = (("train", a.rows), ("test", a.test_rows))
    todo = [(split, name, rows) for split, (name, rows) in enumerate(splits)
            if not is_cached(paths[name], file_params(split, rows, a))]
    if todo:
        os.makedirs(sub, exist_ok=True)
        need = sum(estimated_bytes(rows) for _, _, rows in todo)
        free = shutil.disk_usage(sub).free
        print(f"generating {need / 1e9:.2f} GB of Parquet in {sub} ({free / 1e9:.1f} GB free)", flush=True)
        if need * 1.05 > free:
            sys.exit(f"not enough disk space in {sub}: need about {need / 1e9:.1f} GB, {free / 1e9:.1f} GB "
                     "free. Use --data-dir elsewhere or fewer --rows.")
        W1, W2 = teacher(a.teacher_scale, a.seed)
        for split, name, rows in todo:
            t0 = time.perf_counter()
            write_split(paths[name], split, rows, a, W1, W2)
            print(f"  wrote {paths[name]} ({rows:,} rows, {os.path.getsize(paths[name]) / 1e6:.0f} MB) in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
    return paths["train"], paths["test"]


def class_counts(path):
    with open(path + ".json") as f:
        return json.load(f).get("class_counts")


# ---------------------------------------------------------------------------------------------------------
# Measurement helpers.


def measured(fn, *args):
    """(fn's result, fraction of the machine's CPU that other processes used meanwhile). fn must wait for
    the child processes it starts, so that their CPU time counts as ours."""
    b0, c0, t0 = machine_busy_s(), own_cpu_s(), time.perf_counter()
    out = fn(*args)
    wall, own = time.perf_counter() - t0, own_cpu_s() - c0
    b1 = machine_busy_s()
    other = None if b0 is None or b1 is None else max(0.0, b1 - b0 - own) / (wall * (os.cpu_count() or 1))
    return out, other


def warm_cache(path):
    with open(path, "rb", buffering=0) as f:
        while f.read(16 << 20):
            pass


def proc_children():
    """{ppid: [pid, ...]} over every process (Linux /proc)."""
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def descendants(pid):
    kids, out, todo = proc_children(), [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def status_kib(pid, key):
    """A 'kB' field of /proc/<pid>/status (VmRSS, VmHWM), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def cpu_s(pid):
    """User + system CPU seconds of a live process and its waited-for children (/proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    v = stat[stat.rindex(")") + 2:].split()
    return sum(int(x) for x in v[11:15]) / os.sysconf("SC_CLK_TCK")


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class RssSampler(threading.Thread):
    """Peak of the summed VmRSS of this process and all its descendants, sampled every `interval` s."""

    def __init__(self, interval=0.25):
        super().__init__(daemon=True)
        self.interval, self.peak_kib, self.stop_event = interval, 0, threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)

    def sample(self):
        pids = [os.getpid(), *descendants(os.getpid())]
        self.peak_kib = max(self.peak_kib, sum(status_kib(p, "VmRSS") or 0 for p in pids))

    def stop(self):
        self.stop_event.set()
        self.join()
        self.sample()
        return self.peak_kib


def median(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def worst(values):
    v = [x for x in values if x is not None]
    return max(v) if v else None


# ---------------------------------------------------------------------------------------------------------
# Spark: one worker process per fit (python bench_spark.py --spark-worker JSON).


def spark_worker(cfg):
    """Runs in its own process: one session, one fit, one evaluation; prints a JSON result line."""
    t_start = time.perf_counter()
    sampler = RssSampler()
    sampler.start()
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(cfg["master"]).appName("streambp-bench-spark")
             .config("spark.driver.memory", cfg["driver_memory"])
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    t_session = time.perf_counter()
    out = {"spark_version": spark.version, "default_parallelism": spark.sparkContext.defaultParallelism}
    if cfg.get("warmup_only"):
        out["test_rows"] = spark.read.parquet(cfg["test"]).count()
    else:
        from pyspark.ml.classification import MultilayerPerceptronClassifier
        from pyspark.ml.evaluation import MulticlassClassificationEvaluator
        from pyspark.ml.feature import VectorAssembler

        assembler = VectorAssembler(inputCols=FEATURES, outputCol="features")
        train = assembler.transform(spark.read.parquet(cfg["train"]))
        mlp = MultilayerPerceptronClassifier(layers=[D, H, K], solver="l-bfgs", maxIter=cfg["max_iter"],
                                             blockSize=cfg["block_size"], tol=cfg["tol"], seed=cfg["seed"],
                                             labelCol="label", featuresCol="features")
        t0 = time.perf_counter()
        model = mlp.fit(train)
        t_fit = time.perf_counter()
        test = assembler.transform(spark.read.parquet(cfg["test"]))
        evaluator = MulticlassClassificationEvaluator(labelCol="label", predictionCol="prediction",
                                                      metricName="accuracy")
        accuracy = evaluator.evaluate(model.transform(test))
        t_eval = time.perf_counter()
        out.update(fit_s=t_fit - t0, eval_s=t_eval - t_fit, accuracy=accuracy,
                   train_partitions=spark.read.parquet(cfg["train"]).rdd.getNumPartitions())
        try:
            summary = model.summary() if callable(model.summary) else model.summary  # a method in Spark 4
            out.update(total_iterations=summary.totalIterations,
                       objective_history=list(summary.objectiveHistory))
        except Exception as e:  # noqa: BLE001 (older Spark: no training summary)
            out["summary_error"] = repr(e)
    javas = [p for p in descendants(os.getpid()) if comm(p) == "java"]
    out.update(session_s=t_session - t_start, java_pids=javas, jvm_cpu_s=sum(cpu_s(p) for p in javas),
               jvm_peak_rss_mib=sum(status_kib(p, "VmHWM") or 0 for p in javas) / 1024.0,
               jvm_rss_end_mib=sum(status_kib(p, "VmRSS") or 0 for p in javas) / 1024.0,
               python_peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
               sampled_total_peak_rss_mib=sampler.stop() / 1024.0)
    spark.stop()
    out["jvm_reaped"] = reap_jvm()
    print(RESULT_TAG + json.dumps(out), flush=True)


def reap_jvm():
    """Close the py4j gateway and wait for the JVM we started to exit (it exits when its stdin closes), so
    that its CPU time counts in our (and the parent's) RUSAGE_CHILDREN. True if it exited."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    proc = getattr(gateway, "proc", None)
    if proc is None:
        return False
    try:
        gateway.shutdown()
    except Exception:  # noqa: BLE001 (best effort)
        pass
    try:
        proc.stdin.close()
        proc.wait(timeout=60)
        return True
    except (OSError, subprocess.TimeoutExpired):
        proc.terminate()
        proc.wait(timeout=30)
        return False


def run_spark(cfg, log_path):
    """One worker process; its result dict plus the process wall time."""
    cmd = [sys.executable, os.path.abspath(__file__), "--spark-worker", json.dumps(cfg)]
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        with open(log_path) as f:
            tail = f.read()[-4000:]
        raise RuntimeError(f"Spark worker failed (exit {proc.returncode}); stdout:\n{proc.stdout[-2000:]}\n"
                           f"stderr (tail of {log_path}):\n{tail}")
    return {**json.loads(lines[-1][len(RESULT_TAG):]), "process_wall_s": wall}


def spark_cfg(a, train, test, max_iter):
    return {"master": a.spark_master, "driver_memory": a.spark_driver_memory, "train": train, "test": test,
            "max_iter": max_iter, "block_size": a.spark_block_size, "tol": a.spark_tol, "seed": a.seed}


# ---------------------------------------------------------------------------------------------------------
# streambp: the real CLI in a subprocess, stdout time-stamped line by line.




def fit_args(a, train, test, out, epochs, cache):
    args = ["fit", train, "--label", "label", "--hidden", str(a.hidden), "--epochs", str(epochs), "--batch-size",
            str(a.batch_size), "--lr", str(a.lr), "--optimizer", a.optimizer, "--lr-schedule", a.lr_schedule,
            "--seed", str(a.seed), "--val", test, "--out", out, "--cache", cache]
    if a.momentum is not None:
        args += ["--momentum", str(a.momentum)]
    if a.threads is not None:
        args += ["--threads", str(a.threads)]
    return args


def run_streambp(a, train, test, epochs):
    """One `streambp fit` process: wall, start-up, per-epoch history, peak RSS."""
    import streambp

    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        out = os.path.join(tmp, "model.npz")
        cache = os.path.join(tmp, "cache") if a.cache == "fresh" else a.cache
        cmd = [sys.executable, "-c", DRIVER, *fit_args(a, train, test, out, epochs, cache)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        stamped = []
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        err = []
        reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
        reader.start()
        for line in proc.stdout:
            stamped.append((time.perf_counter() - t0, line.rstrip("\n")))
        rc = proc.wait()
        wall = time.perf_counter() - t0
        reader.join()
        if rc != 0:
            raise RuntimeError(f"streambp fit failed ({rc}): {' '.join(cmd[3:])}\n"
                               + "\n".join(s for _, s in stamped) + "\n" + "".join(err))
        training = streambp.load(out).training
    start = [t for t, s in stamped if s.startswith("Training ")]
    kib = [int(s.split()[1]) for _, s in stamped if s.startswith(RSS_TAG)]
    history = training["history"]
    startup = start[0] if start else None
    cum = 0.0
    for h in history:
        cum += h["seconds"]
        h["cum_train_s"] = cum
        h["cum_train_with_startup_s"] = None if startup is None else startup + cum
    epoch_lines = [t for t, s in stamped if s.startswith("epoch ")]
    for h, t in zip(history, epoch_lines):
        h["epoch_end_line_s"] = t  # since launch, including the validation passes so far
    return {"process_wall_s": wall, "startup_s": startup, "fit_seconds": training["seconds"],
            "history": history, "peak_rss_mib": kib[-1] / 1024.0 if kib else None,
            "stdout": [s for _, s in stamped]}


# ---------------------------------------------------------------------------------------------------------
# scikit-learn: one worker process per configuration (python bench_spark.py --sklearn-worker JSON).


def sklearn_worker(cfg):
    """Load both files into memory, then MLPClassifier.partial_fit one epoch at a time (its own shuffling),
    scoring the test file after each; prints a JSON result line. Times from the process's start."""
    t_start = time.perf_counter()
    import numpy as np
    import pyarrow.parquet as pq
    from sklearn.neural_network import MLPClassifier

    def load(path):
        t = pq.read_table(path)
        X = np.column_stack([t.column(n).to_numpy() for n in t.column_names if n != "label"]).astype(np.float32)
        return X, t.column("label").to_numpy()

    X, y = load(cfg["train"])
    Xt, yt = load(cfg["test"])
    loaded = time.perf_counter() - t_start
    clf = MLPClassifier(hidden_layer_sizes=(cfg["hidden"],), activation=cfg["activation"], solver="adam",
                        batch_size=cfg["batch"], learning_rate_init=cfg["lr"], random_state=cfg["seed"])
    history, train_s = [], 0.0
    for epoch in range(1, cfg["epochs"] + 1):
        t = time.perf_counter()
        clf.partial_fit(X, y, classes=np.arange(10))
        train_s += time.perf_counter() - t
        acc = float(clf.score(Xt, yt))
        history.append({"epoch": epoch, "val_accuracy": acc, "cum_train_s": train_s,
                        "cum_train_with_startup_s": loaded + train_s})
        if acc >= cfg["target"]:
            break
    print(RESULT_TAG + json.dumps({"load_s": loaded, "history": history,
                                   "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}),
          flush=True)


def run_sklearn(cfg):
    cmd = [sys.executable, os.path.abspath(__file__), "--sklearn-worker", json.dumps(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"scikit-learn worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_TAG):])


def time_to_accuracy(a, sbp_runs, sk_runs):
    """Markdown: each system's first epoch at or above --target, and its time (train only, and from the
    process's start: imports, start-up or loading, training; validation and scoring not counted)."""
    rows = []
    for s in sbp_runs:
        h = reach(s["history"], a.target)
        rows.append([f"streambp (hidden {a.hidden}, {a.optimizer} lr {a.lr} {a.lr_schedule}, batch {a.batch_size}, "
                     f"{a.epochs} epochs, cache {a.cache})",
                     "not reached" if h is None else f"{h['epoch']} ({h['val_accuracy']:.4f})",
                     f1(h and h["cum_train_s"]), f1(h and h["cum_train_with_startup_s"]),
                     f1(s["peak_rss_mib"], ".0f")])
    for name, r in sk_runs:
        h = reach(r["history"], a.target)
        rows.append([f"scikit-learn MLPClassifier ({name})",
                     f"not reached in {len(r['history'])} epochs (best "
                     f"{max(x['val_accuracy'] for x in r['history']):.4f})" if h is None else
                     f"{h['epoch']} ({h['val_accuracy']:.4f})",
                     f1(h and h["cum_train_s"]), f1(h and h["cum_train_with_startup_s"]),
                     f1(r["peak_rss_mib"], ".0f")])
    return markdown([f"system (target test accuracy {a.target})", "epoch reaching it (its acc)", "train s",
                     "from process start s", "peak RSS MiB"], rows)


def reach(history, target):
    """The first epoch record whose val_accuracy >= target, or None."""
    return next((h for h in history if h["val_accuracy"] >= target), None)


# ---------------------------------------------------------------------------------------------------------
# Reporting.


def markdown(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def f1(x, spec=".1f", unit=""):
    return "n/a" if x is None else f"{x:{spec}}{unit}"


def compare(spark_runs, sbp_runs):
    """One record per Spark maxIter: Spark's medians and streambp's time to Spark's accuracy."""
    rows = []
    for K_, runs in spark_runs.items():
        acc = median([r["accuracy"] for r in runs])
        rec = {"spark_max_iter": K_, "spark_accuracy": acc,
               "spark_accuracies": [r["accuracy"] for r in runs],
               "spark_iterations": [r.get("total_iterations") for r in runs],
               "spark_fit_s": median([r["fit_s"] for r in runs]),
               "spark_session_s": median([r["session_s"] for r in runs]),
               "spark_session_fit_s": median([r["session_s"] + r["fit_s"] for r in runs]),
               "spark_eval_s": median([r["eval_s"] for r in runs]),
               "spark_process_wall_s": median([r["process_wall_s"] for r in runs]),
               "spark_jvm_peak_rss_mib": worst([r["jvm_peak_rss_mib"] for r in runs]),
               "spark_python_peak_rss_mib": worst([r["python_peak_rss_mib"] for r in runs]),
               "spark_other_cpu_fraction": worst([r.get("other_cpu_fraction") for r in runs])}
        hits = [reach(s["history"], acc) for s in sbp_runs]
        if all(h is not None for h in hits):
            rec.update(streambp_epoch=max(h["epoch"] for h in hits),
                       streambp_accuracy=median([h["val_accuracy"] for h in hits]),
                       streambp_train_s=median([h["cum_train_s"] for h in hits]),
                       streambp_with_startup_s=median([h["cum_train_with_startup_s"] for h in hits]))
            rec["ratio_fit"] = rec["spark_fit_s"] / rec["streambp_train_s"]
            rec["ratio_with_startup"] = (None if rec["streambp_with_startup_s"] is None else
                                         rec["spark_session_fit_s"] / rec["streambp_with_startup_s"])
        else:
            rec.update(streambp_epoch=None, streambp_accuracy=None, streambp_train_s=None,
                       streambp_with_startup_s=None, ratio_fit=None, ratio_with_startup=None)
        rows.append(rec)
    return rows


def report(comparison, sbp_runs, a):
    head = ["Spark maxIter (iters run)", "target: Spark test acc", "Spark fit s", "Spark session+fit s",
            "Spark JVM peak RSS MiB", "streambp epoch reaching it (its acc)", "streambp train s",
            "streambp start-up+train s", "streambp peak RSS MiB", "Spark/streambp (fit/train)",
            "Spark/streambp (with start-up)"]
    sbp_rss = worst([s["peak_rss_mib"] for s in sbp_runs])
    rows = []
    for c in comparison:
        iters = ",".join(str(i) for i in sorted(set(c["spark_iterations"])))
        ep = ("not reached in %d epochs" % a.epochs if c["streambp_epoch"] is None
              else f"{c['streambp_epoch']} ({c['streambp_accuracy']:.4f})")
        rows.append([f"{c['spark_max_iter']} ({iters})", f"{c['spark_accuracy']:.4f}", f1(c["spark_fit_s"]),
                     f1(c["spark_session_fit_s"]), f1(c["spark_jvm_peak_rss_mib"], ".0f"), ep,
                     f1(c["streambp_train_s"]), f1(c["streambp_with_startup_s"]), f1(sbp_rss, ".0f"),
                     f1(c["ratio_fit"], ".1f", "x"), f1(c["ratio_with_startup"], ".1f", "x")])
    text = markdown(head, rows)
    # streambp's curve (first repeat) and totals
    s = sbp_runs[0]
    curve = markdown(["epoch", "test acc", "epoch s", "cum train s", "start-up + cum train s",
                      "launch -> epoch line s (incl. validation)"],
                     [[str(h["epoch"]), f"{h['val_accuracy']:.4f}", f"{h['seconds']:.1f}",
                       f"{h['cum_train_s']:.1f}", f1(h["cum_train_with_startup_s"]),
                       f1(h.get("epoch_end_line_s"))] for h in s["history"]])
    totals = markdown(
        ["system", "final test acc", "total process wall s", "peak RSS MiB", "other CPU %"],
        [[f"streambp ({a.epochs} epochs, {a.optimizer} lr {a.lr} B {a.batch_size})",
          f"{median([r['history'][-1]['val_accuracy'] for r in sbp_runs]):.4f}",
          f1(median([r["process_wall_s"] for r in sbp_runs])), f1(sbp_rss, ".0f"),
          f1(100 * (worst([r.get("other_cpu_fraction") for r in sbp_runs]) or 0), ".0f")]]
        + [[f"Spark maxIter {c['spark_max_iter']}", f"{c['spark_accuracy']:.4f}",
            f1(c["spark_process_wall_s"]),
            f"{c['spark_jvm_peak_rss_mib']:.0f} JVM + {c['spark_python_peak_rss_mib']:.0f} Python",
            f1(100 * (c["spark_other_cpu_fraction"] or 0), ".0f")] for c in comparison])
    return f"{text}\n\nstreambp per epoch (run 1):\n{curve}\n\nTotals:\n{totals}"


def header(a):
    import numpy as np
    import pyarrow

    import streambp

    try:
        jv = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30).stderr
        java = jv.splitlines()[0] if jv else None
    except (OSError, subprocess.SubprocessError):
        java = None
    try:
        import pyspark
        pyspark_version = pyspark.__version__
    except ImportError:
        pyspark_version = None
    cpu = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"machine": {"date_utc": now,
                        "cpu_model": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
                        "mem_total_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30},
            "versions": {"python": platform.python_version(), "streambp": streambp.__version__,
                         "numpy": np.__version__, "pyarrow": pyarrow.__version__, "pyspark": pyspark_version,
                         "java": java}}


# ---------------------------------------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_argument_group("data")
    g.add_argument("--rows", type=int, default=2_000_000, help="training rows (default 2000000)")
    g.add_argument("--test-rows", type=int, default=200_000, help="test rows (default 200000)")
    g.add_argument("--data-dir", default="/tmp/streambp-spark", help="where the Parquet files are cached "
                   "(default /tmp/streambp-spark)")
    g.add_argument("--teacher-scale", type=float, default=3.0, help="std of the teacher's first-layer "
                   "pre-activations (default 3: larger is harder)")
    g.add_argument("--compression", default="none", help="Parquet compression (default none)")
    g.add_argument("--seed", type=int, default=0, help="seed of the data, Spark and streambp (default 0)")
    g = ap.add_argument_group("Spark")
    g.add_argument("--spark-iters", default="12", help="comma-separated maxIter values, a fresh fit each "
                   "(default 12)")
    g.add_argument("--spark-master", default="local[*]", help="default local[*]")
    g.add_argument("--spark-driver-memory", default="8g", help="default 8g")
    g.add_argument("--spark-block-size", type=int, default=128, help="default 128")
    g.add_argument("--spark-tol", type=float, default=1e-6, help="L-BFGS tolerance (default 1e-6, Spark's)")
    g.add_argument("--no-spark-warmup", action="store_true", help="skip the untimed Spark warm-up session")
    g = ap.add_argument_group("streambp")
    g.add_argument("--epochs", type=int, default=5, help="default 5")
    g.add_argument("--optimizer", default="adam", help="default adam")
    g.add_argument("--lr", type=float, default=0.003, help="default 0.003")
    g.add_argument("--batch-size", type=int, default=128, help="default 128")
    g.add_argument("--momentum", type=float, default=None, help="sgd/rmsprop momentum (default: not given)")
    g.add_argument("--threads", type=int, default=None, help="streambp --threads (default: all cores)")
    g.add_argument("--lr-schedule", default="constant", help="default constant")
    g.add_argument("--hidden", type=int, default=H, help=f"hidden units of streambp and scikit-learn (default {H}, "
                   "Spark's)")
    g.add_argument("--cache", default="fresh", help="streambp --cache: fresh (a new directory per run: the "
                   "first epoch writes it, later epochs read it; default), none, or a directory")
    g = ap.add_argument_group("scikit-learn")
    g.add_argument("--sklearn", default="", help="comma-separated MLPClassifier configurations "
                   "ACTIVATION:LR:BATCH (adam, one hidden layer of 128), each run until --target, e.g. "
                   "relu:0.001:200,logistic:0.003:128 (default: none)")
    g.add_argument("--sklearn-epochs", type=int, default=10, help="at most this many epochs (default 10)")
    g.add_argument("--target", type=float, default=0.89, help="the test accuracy of the time-to-accuracy "
                   "table (default 0.89)")
    g = ap.add_argument_group("run")
    g.add_argument("--repeats", type=int, default=1, help="runs of each system, interleaved (default 1)")
    g.add_argument("--skip-spark", action="store_true", help="streambp only (no comparison)")
    g.add_argument("--json", metavar="PATH", help="write all results as JSON to PATH")
    a = ap.parse_args(argv)
    try:
        a.spark_iters = [int(x) for x in a.spark_iters.split(",") if x.strip()]
    except ValueError:
        ap.error("--spark-iters must be comma-separated integers")
    if (min(a.rows, a.test_rows) < a.batch_size or a.epochs < 1 or a.repeats < 1 or not a.spark_iters
            or min(a.spark_iters) < 1):
        ap.error("need --rows, --test-rows >= --batch-size, --epochs, --repeats >= 1, --spark-iters >= 1")
    return a


def main(argv=None):
    a = parse_args(argv)
    t_all = time.perf_counter()
    results = {"config": {k: v for k, v in vars(a).items() if k != "json"}, **header(a)}
    m = results["machine"]
    print(f"streambp vs Spark MLlib MLP, time to accuracy  {m['date_utc']}  {m['cpu_model']}, "
          f"{m['cpu_count']} CPUs, {m['mem_total_gib']:.0f} GiB; pyspark {results['versions']['pyspark']}, "
          f"{results['versions']['java']}", flush=True)
    train, test = generate(a)
    results["data"] = {"train": train, "test": test, "train_bytes": os.path.getsize(train),
                       "test_bytes": os.path.getsize(test), "train_class_counts": class_counts(train),
                       "test_class_counts": class_counts(test)}
    print(f"data: {train} ({a.rows:,} rows), {test} ({a.test_rows:,} rows)", flush=True)
    logs = None if a.skip_spark else tempfile.mkdtemp(prefix="bench-spark-logs-")  # workers' stderr

    print("streambp warm-up (untimed, fills Numba's cache) ...", flush=True)
    run_streambp(a, test, test, 1)
    if not a.skip_spark and not a.no_spark_warmup:
        print("Spark warm-up (untimed session) ...", flush=True)
        w = run_spark({**spark_cfg(a, train, test, 1), "warmup_only": True}, os.path.join(logs, "warmup.log"))
        print(f"  Spark {w['spark_version']}, session {w['session_s']:.1f} s, default parallelism "
              f"{w['default_parallelism']}", flush=True)

    sbp_runs, spark_runs = [], {k: [] for k in a.spark_iters}
    for r in range(a.repeats):
        warm_cache(train)
        warm_cache(test)
        run, other = measured(run_streambp, a, train, test, a.epochs)
        run["other_cpu_fraction"] = other
        sbp_runs.append(run)
        accs = " ".join(f"{h['val_accuracy']:.4f}" for h in run["history"])
        secs = " ".join(f"{h['seconds']:.1f}" for h in run["history"])
        print(f"[{r + 1}/{a.repeats}] streambp: start-up {f1(run['startup_s'])} s, epochs {secs} s, test acc "
              f"{accs}, wall "
              f"{run['process_wall_s']:.1f} s, peak RSS {f1(run['peak_rss_mib'], '.0f')} MiB", flush=True)
        if a.skip_spark:
            continue
        for k in a.spark_iters:
            warm_cache(train)
            warm_cache(test)
            sr, other = measured(run_spark, spark_cfg(a, train, test, k),
                                 os.path.join(logs, f"spark-iter{k}-run{r + 1}.log"))
            sr["other_cpu_fraction"] = other
            spark_runs[k].append(sr)
            print(f"[{r + 1}/{a.repeats}] Spark maxIter {k} ({sr.get('total_iterations')} iterations, "
                  f"{sr.get('train_partitions')} partitions): session {sr['session_s']:.1f} s, fit "
                  f"{sr['fit_s']:.1f} s, eval {sr['eval_s']:.1f} s, test acc {sr['accuracy']:.4f}, JVM peak "
                  f"RSS {sr['jvm_peak_rss_mib']:.0f} MiB, wall {sr['process_wall_s']:.1f} s", flush=True)

    sk_runs = []
    for spec in filter(None, a.sklearn.split(",")):
        activation, lr, batch = spec.split(":")
        r = run_sklearn({"train": train, "test": test, "activation": activation, "lr": float(lr), "hidden": a.hidden,
                         "batch": int(batch), "seed": a.seed, "epochs": a.sklearn_epochs, "target": a.target})
        sk_runs.append((f"hidden {a.hidden}, {activation}, adam lr {lr}, batch {batch}", r))
        accs = " ".join(f"{h['val_accuracy']:.4f}" for h in r["history"])
        times = " ".join(f"{h['cum_train_s']:.1f}" for h in r["history"])
        print(f"scikit-learn {spec}: load {r['load_s']:.1f} s, test acc {accs}, train s {times}", flush=True)
    results["sklearn_runs"] = sk_runs
    print()
    print(time_to_accuracy(a, sbp_runs, sk_runs))
    results["streambp_runs"] = sbp_runs
    results["spark_runs"] = {str(k): v for k, v in spark_runs.items()}
    if not a.skip_spark:
        results["comparison"] = compare(spark_runs, sbp_runs)
        print()
        print(report(results["comparison"], sbp_runs, a))
        print()
        print("Times are medians over the repeats; RSS the worst. Spark fit s: MultilayerPerceptronClassifier"
              ".fit (Parquet read, caching, L-BFGS); session: pyspark import + JVM start. streambp train s: "
              "sum of the epoch seconds up to the first epoch whose test accuracy >= Spark's (validation "
              "and model writing not included); start-up: process launch to fit start (imports, Numba "
              "cache, label pre-pass). Test accuracy on the same test file for both.")
    results["wall_s"] = time.perf_counter() - t_all
    print(f"total {results['wall_s']:.0f} s" + (f"; Spark workers' stderr in {logs}" if logs else ""))
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"wrote {a.json}")
    return results


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--spark-worker":
        spark_worker(json.loads(sys.argv[2]))
    elif len(sys.argv) > 2 and sys.argv[1] == "--sklearn-worker":
        sklearn_worker(json.loads(sys.argv[2]))
    else:
        main()
