"""Compiling the kernels of a fit, or loading them from Numba's cache, in a thread started before the pre-pass.

A first run after installing compiles every kernel it calls (several seconds); here that overlaps the pre-pass
over the data, and the epoch's clock starts once it is done, so compiling is never counted as training time.
Only what the configuration says a fit will call is compiled: the network's backprop for its dtype (serial
or by size, as the Stepper will choose), and the stream's kernels with the argument types stream.py passes
(BatchDecoder.fill and chunks). Numba compiles one function at a time (a process-wide lock); the pre-pass
runs beside it in pyarrow's threads, which do not hold the GIL.
"""
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

    from .kernels.compile import PARALLEL_MIN_ELEMENTS
    from .kernels.gather import copy_rows, gather_columns
    from .kernels.rows import standardize as standardize_rows
    from .step import load_kernels

    dtype = np.dtype(dtype)
    load_kernels(dtype, batch_size, [1, *hidden, EXPECTED_CLASSES], categorical)
    X = np.zeros((1, 1), dtype)
    column = np.zeros(1, dtype)
    gather_columns(X, np.array([column.ctypes.data], np.int64), 0)
    if shuffle:
        copy_rows(X, X.copy(), np.zeros(1, np.int64))
    if standardize:  # both builds: the pieces of record batches it is given are large or small
        for rows in (1, PARALLEL_MIN_ELEMENTS):
            standardize_rows(np.zeros((rows, 1), dtype), np.zeros(1, dtype), np.ones(1, dtype))
