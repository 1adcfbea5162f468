"""One thread budget shared by Numba's parallel loops, every BLAS library and pyarrow.

Numba's OpenMP layer with its default wait policy spins while it waits; beside OpenBLAS's own
spinning threads that was measured 16-65x slower than either alone. With OMP_WAIT_POLICY=PASSIVE its
idle workers sleep, and it launched loops faster than the 'workqueue' layer here (2-4x the training
throughput at batch 32), so streambp prefers OpenMP with a passive wait policy, then TBB, then
workqueue (whose workers also sleep). NUMBA_THREADING_LAYER and OMP_WAIT_POLICY set by the user win.
The layer is chosen and started when streambp.kernels is first imported (streambp/kernels/threading_layer.py),
before any kernel runs; importing streambp alone changes nothing.
The prange loops and the BLAS calls alternate in one thread, so each may use the whole budget.
"""
import os
import time

def configure(threads=None):
    """Use `threads` cores (default: all) for Numba, BLAS and pyarrow; return the count in effect."""
    import numba
    import pyarrow
    import scipy.linalg.cython_blas  # noqa: F401  (load the BLAS that Numba's np.dot calls, to limit it)
    from threadpoolctl import threadpool_limits

    n = (os.cpu_count() or 1) if threads is None else threads
    if n < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    n = min(n, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    threadpool_limits(limits=n, user_api="blas")
    pyarrow.set_cpu_count(n)
    pyarrow.set_io_thread_count(max(n, 2))
    return n


def info():
    """What is in effect: Numba layer and threads, each BLAS library's threads, pyarrow's CPU count."""
    import numba
    import pyarrow
    from threadpoolctl import threadpool_info

    return {
        "numba_threading_layer": numba.threading_layer(),
        "numba_threads": numba.get_num_threads(),
        "blas": [(p["internal_api"], p["filepath"], p["num_threads"]) for p in threadpool_info()
                 if p["user_api"] == "blas"],
        "pyarrow_cpu_count": pyarrow.cpu_count(),
    }


def start_threading_layer():
    """Start Numba's threading layer now (importing streambp.kernels does), so that it is chosen and its
    threads exist before training; return the layer's name."""
    import numba

    from .kernels.threading_layer import start_layer

    start_layer()  # done already if streambp.kernels was imported before
    return numba.threading_layer()


def concurrent_calls_safe():
    """Whether parallel kernels may run from two threads at once (not on Numba's workqueue layer); starts
    the threading layer to know."""
    return start_threading_layer() != "workqueue"


class BlasTuner:
    """Keeps BLAS on whichever is faster now: one thread or the whole budget.

    A multi-threaded BLAS call waits for all its workers; when another process holds a core, a
    descheduled worker makes every call wait for the scheduler (measured here: training fell from
    234k to under 2k rows/s with 2 BLAS threads beside one busy process, and ran at 115k on 1).
    Every `interval` seconds, tick() counts the steps done in `window` seconds on one thread and in
    `window` seconds on the budget, and keeps one thread only if it did `margin` times more: windows
    long enough to average over the decoding bursts of the prefetch thread. GEMM splits its output
    among threads, so results do not depend on the choice.
    """

    def __init__(self, threads, interval=5.0, window=0.25, margin=1.25):
        from threadpoolctl import ThreadpoolController

        self.libs = ThreadpoolController().select(user_api="blas").lib_controllers
        self.threads = threads
        self.interval = interval
        self.window = window
        self.margin = margin
        self.current = threads
        self.phase = 0  # 0: running; 1: counting steps on one thread; 2: counting on the budget
        self.count = 0
        self.single_rate = 0.0
        self.started = self.next_probe = time.perf_counter() + 2.0  # the first steps are not typical

    def _set(self, n):
        if n != self.current:
            for lib in self.libs:
                lib.set_num_threads(n)
            self.current = n

    def tick(self):
        """Call once per training step."""
        if self.threads == 1:
            return
        now = time.perf_counter()
        if self.phase == 0:
            if now >= self.next_probe:
                self._set(1)
                self.phase, self.count, self.started = 1, 0, now
            return
        self.count += 1
        elapsed = now - self.started
        if elapsed < self.window:
            return
        if self.phase == 1:
            self.single_rate = self.count / elapsed
            self._set(self.threads)
            self.phase, self.count, self.started = 2, 0, now
        else:
            self._set(1 if self.single_rate > self.margin * self.count / elapsed else self.threads)
            self.phase, self.next_probe = 0, now + self.interval
