"""Numba's threading layer, chosen when streambp.kernels is first imported, before any kernel runs (see
streambp/threads.py for the measurements behind the order): OpenMP with a passive wait policy, then TBB,
then workqueue; TBB first when an OpenMP runtime was loaded before (its wait policy is already read).
NUMBA_THREADING_LAYER and OMP_WAIT_POLICY set by the user win."""
import os

LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
# An OpenMP runtime loaded before streambp's kernels (importing torch first does it) read its wait policy
# already, and Numba's OpenMP layer would share it: spinning threads, measured 7-70x slower.
PRELOADED_OPENMP_PRIORITY = ["tbb", "workqueue", "omp"]


def openmp_loaded():
    """Whether an OpenMP runtime is already mapped into this process (Linux; False elsewhere)."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return False
    return any(name in maps for name in ("libgomp", "libiomp5", "libomp.so"))


def select_layer():
    """Set Numba's layer priority and OMP_WAIT_POLICY (unless the user set them); start_layer() starts it."""
    import numba

    passive = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER_PRIORITY = (
            LAYER_PRIORITY if passive or not openmp_loaded() else PRELOADED_OPENMP_PRIORITY)


def start_layer():
    """Start the chosen layer (its threads sleep until a parallel loop runs). A kernel loaded from Numba's cache
    that calls a parallel build which was itself loaded from the cache when the kernel was compiled does not
    start the layer, and crashes in a process where nothing else did (numba 0.68: a Python call of a by_size
    kernel, then a kernel calling it compiled in a second process and loaded in a third)."""
    from numba.np.ufunc.parallel import _launch_threads  # no public call starts the layer

    _launch_threads()
