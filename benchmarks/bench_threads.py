#!/usr/bin/env python
"""Thread scaling of streambp's training step: examples/s at 1..N threads, in memory.

    python benchmarks/bench_threads.py                         # nets B and D at batch 512, 1..all cores
    python benchmarks/bench_threads.py --nets A,B,D --batches 128,512 --threads 1,2,4,8,16 --json out.json

For each thread count, streambp.threads.configure(n) sets Numba's threads, every BLAS library's threads
and pyarrow's; the same Stepper loop as bench_kernels.py (its StreambpImpl, make_data and calibrate) is
warmed up, calibrated to --seconds and timed --repeats times. Reported: examples/s median [min-max], the
speed-up over one thread and the parallel efficiency (speed-up / threads). A machine with more cores than
this one's two is where this matters; run it there.
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_kernels import NETS, StreambpImpl, calibrate, make_data  # noqa: E402


def measure(sizes, batch, threads, seconds, repeats, lr=0.1):
    from streambp import threads as budget

    n = budget.configure(threads)
    impl = StreambpImpl(sizes, make_data(sizes, 8192), batch, lr)
    steps = calibrate(impl, seconds, seconds / 4, None, 0.1)["steps_per_repeat"]
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        impl.run(steps)
        rates.append(steps * batch / (time.perf_counter() - t))
    return n, rates


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", default="B,D")
    p.add_argument("--batches", default="512")
    p.add_argument("--threads", default=",".join(str(t) for t in range(1, (os.cpu_count() or 1) + 1)))
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json")
    a = p.parse_args()
    rows = []
    print("| net | batch | threads | examples/s median [min-max] | speed-up | efficiency |")
    print("|---|---|---|---|---|---|")
    for net in a.nets.split(","):
        for batch in map(int, a.batches.split(",")):
            base = None
            for t in map(int, a.threads.split(",")):
                n, rates = measure(NETS[net], batch, t, a.seconds, a.repeats)
                med = statistics.median(rates)
                base = base or med
                rows.append({"net": net, "sizes": NETS[net], "batch": batch, "threads": n, "rates": rates,
                             "median": med, "speedup": med / base})
                print(f"| {net} | {batch} | {n} | {med:,.0f} [{min(rates):,.0f}-{max(rates):,.0f}] | "
                      f"{med / base:.2f}x | {med / base / n:.0%} |", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"cpu_count": os.cpu_count(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
