"""The thread budget: a threading layer that never spins against BLAS, and one count for all."""
import os
import subprocess
import sys

import numba
import pyarrow

from streambp import threads
from streambp.kernels.threading_layer import LAYER_PRIORITY


def test_layer_and_wait_policy_in_effect():
    layer = threads.start_threading_layer()  # runs a parallel kernel first
    assert layer == numba.threading_layer()
    assert threads.concurrent_calls_safe() == (layer != "workqueue")
    assert layer in LAYER_PRIORITY
    if layer == "omp":
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_configure_sets_one_budget_for_numba_blas_and_arrow():
    try:
        assert threads.configure(1) == 1
        info = threads.info()
        assert info["numba_threads"] == 1
        assert info["pyarrow_cpu_count"] == 1
        paths = [path for _, path, _ in info["blas"]]
        assert any("scipy" in p for p in paths), "the BLAS behind Numba's np.dot must be limited too"
        assert all(n == 1 for _, _, n in info["blas"])
    finally:
        threads.configure(None)
    assert numba.get_num_threads() == min(os.cpu_count(), numba.config.NUMBA_NUM_THREADS)
    assert pyarrow.cpu_count() == numba.get_num_threads()


def test_fresh_process_prefers_passive_openmp():
    code = ("import os, numba, streambp; from streambp import threads; threads.start_threading_layer(); "
            "print(numba.threading_layer(), os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    layer, policy = out.split()
    assert policy == "PASSIVE"
    assert layer == "omp" or layer in LAYER_PRIORITY[1:]


def test_openmp_loaded_first_avoids_the_shared_spinning_runtime():
    code = ("import ctypes, ctypes.util; ctypes.CDLL(ctypes.util.find_library('gomp'), mode=ctypes.RTLD_GLOBAL); "
            "import numba, streambp; from streambp import threads; threads.start_threading_layer(); "
            "from streambp.kernels.threading_layer import openmp_loaded; "
            "print(openmp_loaded(), numba.threading_layer())")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    loaded, layer = out.split()
    assert loaded == "True"
    assert layer != "omp"


def test_every_kernel_releases_the_gil():
    """The training thread's kernels and the prefetch thread's Python code must be able to run at once."""
    import importlib
    import pkgutil

    import streambp.kernels
    from numba.core.registry import CPUDispatcher

    kernels = {}
    for module in pkgutil.iter_modules(streambp.kernels.__path__):
        found = vars(importlib.import_module(f"streambp.kernels.{module.name}"))
        kernels.update({f"{module.name}.{k}": v for k, v in found.items() if isinstance(v, CPUDispatcher)
                        and v.py_func.__module__.startswith("streambp.")})
    assert "network.network_loss_and_grad" in kernels and "gather.gather_columns" in kernels
    assert [name for name, k in kernels.items() if not k.targetoptions.get("nogil")] == []
