"""Compiling the kernels of a fit, or loading them from Numba's cache, in a thread started before the pre-pass.

A first run after installing compiles every kernel it calls (several seconds); here that overlaps the pre-pass
over the data, and the epoch's clock starts once it is done, so compiling is never counted as training time.
Only what the configuration says a fit will call is compiled: the network's backprop for its dtype (serial
or by size, as the Stepper will choose), and the stream's kernels with the argument types stream.py passes
(BatchDecoder.fill and chunks). The pre-pass runs beside it in pyarrow's threads, which do not hold the GIL.

Numba compiles one function at a time in a process (a lock). So on a first run (the stream's kernels are not
in Numba's on-disk cache) a helper process, `python -m streambp.warmup`, compiles into that cache, while this
thread compiles the network, what this thread reaches last: the network's backward kernels, the optimizer's
update and the serial builds of the stream's kernels, which this run then uses for every size
(SizedKernel.deferred: the same bits); then their parallel builds, for the runs after it. What the helper
has finished when this thread gets there is loaded (milliseconds), the rest compiled here, so two cores
compile at once where the machine has a free core. The helper runs at the lowest CPU priority, so it never
slows this process; the run's process waits for it when it exits (a minute at most), so that a second run
finds every kernel in the cache.
"""
import atexit
import json
import os
import subprocess
import sys
import threading

from . import threads
from .config import DEFAULT_HIDDEN

EXPECTED_CLASSES = 2  # the layer sizes are guessed before the pre-pass counts the classes
HELPER_WAIT_S = 60  # at most this long at exit for the helper (it then finishes alone)


def start(c):
    """Start compiling what the fit configured by `c` (a FitConfig) will call, in a daemon thread; return the
    thread, or None where the network is only known once a model file is read (--init, --resume), another
    engine trains elsewhere, or the threading layer cannot run parallel kernels from two threads at once. Join
    it before the first epoch; a kernel it has not reached yet is compiled where it is first called."""
    if c.init or c.resume or c.engine != "local" or not threads.concurrent_calls_safe():
        return None
    from .kernels import optim, table  # noqa: F401  imported here, not by the fit while the thread compiles
    hidden = list(DEFAULT_HIDDEN if c.hidden is None else c.hidden)
    t = threading.Thread(target=_load, args=(c.dtype, c.batch_size, hidden, bool(c.categorical or c.hash_buckets),
                                             c.shuffle, c.standardize, c.optimizer, dict(c.optimizer_params)),
                         name="streambp-warmup", daemon=True)
    t.start()
    return t


def _load(*settings):
    try:
        _compile(*settings)
    except Exception:  # noqa: BLE001  a guess that does not compile is compiled, or refused, where it is called
        pass


def _compile(dtype, batch_size, hidden, categorical, shuffle, standardize, optimizer, optimizer_params):
    import numpy as np

    from .step import load_kernels

    stream = [np.dtype(dtype).name, shuffle, standardize]
    helper = None if stream_cached(stream[0]) else _helper([stream, optimizer, optimizer_params])
    load_kernels(np.dtype(dtype), batch_size, [1, *hidden, EXPECTED_CLASSES], categorical)
    if helper is not None:
        for kernel in stream_kernels():
            kernel.deferred = True
    load_stream_kernels(*stream)  # from the cache the helper filled, or compiled here


def _helper(work):
    """The process doing _main(*work) (finished when this process exits), or None where it cannot start."""
    try:
        helper = subprocess.Popen([sys.executable, "-m", "streambp.warmup", json.dumps(work)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None
    atexit.register(_finish, helper)
    return helper


def _finish(helper):
    """Wait for the helper to fill the cache (HELPER_WAIT_S at most; Ctrl-C stops it instead)."""
    try:
        helper.wait(HELPER_WAIT_S)
    except subprocess.TimeoutExpired:
        pass
    except KeyboardInterrupt:
        helper.kill()


def stream_kernels():
    """The by_size kernels that stream.py calls on every chunk of data."""
    from .kernels.gather import copy_rows, gather_columns
    from .kernels.rows import standardize

    return [gather_columns, copy_rows, standardize]


def stream_cached(dtype):
    """Whether Numba's on-disk cache holds the parallel build of gather_columns for data of `dtype` (a NumPy
    dtype name): then this is not a first run."""
    import numpy as np

    from .kernels.compile import cached
    from .kernels.gather import gather_columns

    X = np.zeros((1, 1), dtype)
    return cached(gather_columns.build(parallel=True), X, np.zeros(1, np.int64), 0)


def load_stream_kernels(dtype, shuffle, standardize):
    """Compile the stream's kernels for data of `dtype` (a NumPy dtype name), or load them from Numba's cache:
    gathering columns, and shuffling rows and standardising them where the fit does; the serial and the
    parallel build of each (only the serial one where deferred), since the pieces of data they are given are
    large or small."""
    import numpy as np

    from .kernels.compile import PARALLEL_MIN_ELEMENTS
    from .kernels.gather import copy_rows, gather_columns
    from .kernels.rows import standardize as standardize_rows

    for rows in (1, PARALLEL_MIN_ELEMENTS):
        X = np.zeros((rows, 1), dtype)
        column = np.zeros(rows, dtype)
        gather_columns(X, np.array([column.ctypes.data], np.int64), 0)
        if shuffle:
            copy_rows(X, X.copy(), np.zeros(rows, np.int64))
        if standardize:
            standardize_rows(X, np.zeros(1, dtype), np.ones(1, dtype))


def network_leaves(dtype):
    """Compile, or load from Numba's cache, the kernels that network_loss_and_grad's serial twin calls in its
    backward pass, with the argument types it passes them: the fit's process reaches them last, so the helper
    compiles them first and the fit loads them when its own compilation of the twin gets there."""
    import numpy as np

    from .kernels.activations import sigmoid_backward
    from .kernels.dense import dense_backward
    from .kernels.softmax import count_correct, crossentropy_softmax_backward

    Z, v, y = np.zeros((1, 1), dtype), np.zeros(1, dtype), np.zeros(1, np.int32)
    crossentropy_softmax_backward.build(parallel=False)(Z, Z, y, v)
    sigmoid_backward.build(parallel=False)(Z, Z, Z)
    count_correct(Z, y)
    dense_backward(Z, v, Z, Z, Z, Z, v)


def optimizer_updates(name, params, dtype):
    """Compile, or load from Numba's cache, both builds of the update that the built-in optimizer `name` with
    hyper-parameters `params` runs on parameters of `dtype` (the parameter count, hence the build, is known
    once the pre-pass has counted the inputs); nothing for another optimizer."""
    import numpy as np

    from .default_plugins import optimizers
    from .kernels.compile import PARALLEL_MIN_ELEMENTS
    from .optim import Optimizer
    from .step import load_update

    for factory in vars(optimizers).values():
        if isinstance(factory, type) and issubclass(factory, Optimizer) and getattr(factory, "name", None) == name:
            for size in (1, PARALLEL_MIN_ELEMENTS):
                load_update(factory(np.zeros(size, dtype), **params), size)


def _main(stream, optimizer, optimizer_params):
    """The helper, at the lowest CPU priority: the network's backward kernels, the optimizer's update and the
    serial builds of the stream's kernels, then the parallel builds of the stream's kernels."""
    if hasattr(os, "nice"):
        os.nice(19)  # the fit's own compiling comes first: this only uses a core the fit leaves free
    import streambp.kernels  # noqa: F401  (the threading layer, as in the fit)

    kernels = stream_kernels()
    for kernel in kernels:
        kernel.deferred = True
    network_leaves(stream[0])
    optimizer_updates(optimizer, optimizer_params, stream[0])
    load_stream_kernels(*stream)
    for kernel in kernels:
        kernel.deferred = False
    load_stream_kernels(*stream)


if __name__ == "__main__":
    _main(*json.loads(sys.argv[1]))
