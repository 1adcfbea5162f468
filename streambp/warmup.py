"""Compiling the kernels of a fit, or loading them from Numba's cache, in a thread started before the pre-pass.

A first run after installing compiles every kernel it calls (several seconds); here that overlaps the pre-pass
over the data, and the epoch's clock starts once it is done, so compiling is never counted as training time.
Only what the configuration says a fit will call is compiled: the network's backprop for its dtype (serial
or by size, as the Stepper will choose), and the stream's kernels with the argument types stream.py passes
(BatchDecoder.fill and chunks).

Numba compiles one function at a time in a process (a lock), so the stream's kernels are compiled by a helper
process (`python -m streambp.warmup`) into Numba's on-disk cache while this thread compiles the network: two
cores compile at once, and loading the helper's work from the cache takes milliseconds. Where the helper fails
(or the cache is off), this thread compiles them itself. The pre-pass runs beside both in pyarrow's threads,
which do not hold the GIL.
"""
import json
import subprocess
import sys
import threading

from . import threads
from .config import DEFAULT_HIDDEN

EXPECTED_CLASSES = 2  # the layer sizes are guessed before the pre-pass counts the classes


def start(c):
    """Start compiling what the fit configured by `c` (a FitConfig) will call, in a daemon thread; return the
    thread, or None where the network is only known once a model file is read (--init, --resume), another
    engine trains elsewhere, or the threading layer cannot run parallel kernels from two threads at once. Join
    it before the first epoch; a kernel it has not reached yet is compiled where it is first called."""
    if c.init or c.resume or c.engine != "local" or not threads.concurrent_calls_safe():
        return None
    hidden = list(DEFAULT_HIDDEN if c.hidden is None else c.hidden)
    t = threading.Thread(target=_load, args=(c.dtype, c.batch_size, hidden, bool(c.categorical or c.hash_buckets),
                                             c.shuffle, c.standardize), name="streambp-warmup", daemon=True)
    t.start()
    return t


def _load(*settings):
    try:
        _compile(*settings)
    except Exception:  # noqa: BLE001  a guess that does not compile is compiled, or refused, where it is called
        pass


def _compile(dtype, batch_size, hidden, categorical, shuffle, standardize):
    import numpy as np

    from .step import load_kernels

    stream = [str(np.dtype(dtype)), shuffle, standardize]
    helper = _helper(stream)
    try:
        load_kernels(np.dtype(dtype), batch_size, [1, *hidden, EXPECTED_CLASSES], categorical)
    finally:
        if helper is not None:
            helper.wait()
    stream_kernels(*stream)  # from the cache the helper filled, or compiled here


def _helper(stream):
    """The process compiling stream_kernels(*stream) into Numba's cache, or None where it cannot start."""
    try:
        return subprocess.Popen([sys.executable, "-m", "streambp.warmup", json.dumps(stream)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


def stream_kernels(dtype, shuffle, standardize):
    """Compile the stream's kernels for data of `dtype` (a NumPy dtype name), or load them from Numba's cache:
    gathering columns, and shuffling rows and standardising them where the fit does."""
    import numpy as np

    from .kernels.compile import PARALLEL_MIN_ELEMENTS
    from .kernels.gather import copy_rows, gather_columns
    from .kernels.rows import standardize as standardize_rows

    dtype = np.dtype(dtype)
    X = np.zeros((1, 1), dtype)
    column = np.zeros(1, dtype)
    gather_columns(X, np.array([column.ctypes.data], np.int64), 0)
    if shuffle:
        copy_rows(X, X.copy(), np.zeros(1, np.int64))
    if standardize:  # both builds: the pieces of record batches it is given are large or small
        for rows in (1, PARALLEL_MIN_ELEMENTS):
            standardize_rows(np.zeros((rows, 1), dtype), np.zeros(1, dtype), np.ones(1, dtype))


if __name__ == "__main__":  # the helper process
    import streambp.kernels  # noqa: F401  (the threading layer, as in the fit)

    stream_kernels(*json.loads(sys.argv[1]))
