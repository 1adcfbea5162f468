"""A high-cardinality categorical column: rows/s and peak RSS of `streambp fit` on a table with a key of many
distinct values against the same table without the key.

The table: --rows rows (1,000,000) of 8 float32 columns and a string key with --keys distinct values (100,000),
the label depending on both; written once to Parquet. Each run is `streambp fit` in a process of its own with
--epochs 2 (the last epoch's rows/s is reported: the first also pays for the pre-pass's page cache) and the
key kept whole (--max-categories --keys), hashed (--hash-buckets), or left out (--ignore key).

    python benchmarks/bench_highcard.py [--rows 1000000] [--keys 100000] [--json PATH]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def table(rows, keys, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 8)).astype(np.float32)
    key = rng.integers(0, keys, rows)
    effect = rng.normal(size=keys)[key]
    label = ((X[:, 0] + effect) > 0).astype(np.int64) + (X[:, 1] > 1)
    cols = {f"x{j}": X[:, j] for j in range(8)}
    cols["key"] = pa.array([f"k{k}" for k in key])
    cols["label"] = label
    return pa.table(cols)


def fit(data, out, *flags):
    """(last epoch's rows/s, peak RSS MiB) of one `streambp fit` process."""
    exe = os.path.join(os.path.dirname(sys.executable), "streambp")
    cmd = [sys.executable, "-c", "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
           "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
           "sys.exit(r.returncode)", exe, "fit", data, "--epochs", "2", "--out", out, "--logger", "jsonl",
           *flags]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(p.stderr[-3000:])
    rss = int(next(ln for ln in p.stderr.splitlines() if ln.startswith("PEAK_RSS_KB")).split()[1]) / 1024
    log = os.path.splitext(out)[0] + ".log.jsonl"
    epochs = [json.loads(ln) for ln in open(log) if '"epoch_end"' in ln]
    return epochs[-1]["rows_per_s"], rss


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "highcard.parquet")
        pq.write_table(table(args.rows, args.keys), data, row_group_size=65536)
        runs = {"without the key": ["--ignore", "key"],
                "key, every value a slot": ["--max-categories", str(args.keys)],
                "key hashed into 65,536 buckets": ["--hash-buckets", "65536"]}
        results = {}
        for name, flags in runs.items():
            rate, rss = fit(data, os.path.join(tmp, "m.npz"), *flags)
            results[name] = {"rows_per_s": rate, "peak_rss_mib": rss}
        base = results["without the key"]["rows_per_s"]
        print(f"{args.rows:,} rows, a key of {args.keys:,} values")
        for name, r in results.items():
            print(f"{name:<32} {r['rows_per_s']:>10,.0f} rows/s  {r['rows_per_s'] / base:5.2f}x  "
                  f"peak RSS {r['peak_rss_mib']:,.0f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
