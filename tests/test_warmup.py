"""Compiling is done before the first epoch's clock starts: a first fit's rows/s is training alone."""
import json
import os
import subprocess
import sys

from types import SimpleNamespace

import numpy as np

from streambp.default_plugins.optimizers import Adam
from streambp.model import make_layout, parameter_count
from streambp.step import Stepper

# Runs `streambp fit ARGS` and prints, for each epoch, the kernel signatures that were compiled or loaded from
# Numba's cache while it ran (by_size kernels' serial and parallel builds and serial twins included).
EPOCH_COMPILES = """
import importlib, json, pkgutil, sys
import streambp.kernels
import streambp.train as train
from numba.core.registry import CPUDispatcher
from streambp.cli import main

def kernels():
    found = []
    for module in pkgutil.iter_modules(streambp.kernels.__path__):
        for name, k in vars(importlib.import_module(f"streambp.kernels.{module.name}")).items():
            if isinstance(k, CPUDispatcher):
                g = k.py_func.__globals__
                found += [(name, k)] + [(f"{name}.{b}", g[b]) for b in ("serial", "parallel") if b in g]
    return found

def signatures():
    return {(name, str(sig)) for name, k in kernels() for sig in k.signatures}

during = []
run_epoch = train.run_epoch
def timed_epoch(*args):
    before = signatures()
    record = run_epoch(*args)
    during.append(sorted(signatures() - before))
    return record
train.run_epoch = timed_epoch
try:
    sys.argv[0] = "streambp"
    main()
finally:
    print(json.dumps(during))
"""


def driven(script, args, env):
    """Run a driver script (`streambp ARGS` under a Numba compile listener); the JSON it prints last."""
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_a_first_fit_compiles_nothing_during_its_epochs(tmp_path, blob_file):
    """With Numba's cache empty, every kernel an epoch calls (network, optimizer, the stream's gathering,
    shuffling and standardising) is compiled before the epoch starts; a second fit loads them all before too."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    args = ["fit", blob_file, "--epochs", "2", "--out", tmp_path / "m.npz", "--batch-size", "16"]
    assert driven(EPOCH_COMPILES, args, env) == [[], []]
    assert driven(EPOCH_COMPILES, args + ["--optimizer", "adam"], env) == [[], []]


# Runs `streambp fit ARGS` and prints the functions this process compiled (Numba's "numba:compile" event fires
# for a compilation, not for a load from the on-disk cache), kernels and the NumPy functions inside them alike.
COMPILED = """
import json, sys
from numba.core import event
from streambp.cli import main

compiled = []

class Compiled(event.Listener):
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__qualname__)

    def on_end(self, ev):
        pass

event.register("numba:compile", Compiled())
try:
    sys.argv[0] = "streambp"
    main()
finally:
    print(json.dumps(compiled))
"""


def test_a_first_fit_compiles_no_parallel_stream_build_and_a_second_fit_compiles_nothing(tmp_path, blob_file):
    """With Numba's cache empty, the fit's process runs the serial builds of the stream's kernels (gathering,
    shuffling, standardising) and compiles none of their parallel builds: the warm-up's helper process compiles
    those into the cache, before the first fit's process exits; a second fit then loads every kernel it calls
    from the cache and compiles nothing."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    args = ["fit", blob_file, "--epochs", "1", "--out", tmp_path / "m.npz", "--batch-size", "16"]
    first = driven(COMPILED, args, env)
    assert "network_loss_and_grad_serial" in first  # the fit's own work (the listener sees compilations)
    assert {"_gather_columns_parallel", "_copy_rows_parallel", "_standardize_parallel"}.isdisjoint(first)
    assert driven(COMPILED, args, env) == []


def stepped_adam(theta):
    """An Adam optimizer over theta after one step on a copy: state that another step would change."""
    opt = Adam(theta, weight_decay=0.01)
    opt.step(theta.copy(), np.ones_like(theta), 0.1)
    return opt


def test_load_kernels_leaves_the_optimizers_as_they_were():
    """Loading the optimizers' updates runs them on scratch copies: the optimizers' state and step count and
    the parameters (dense part and embedding table) stay as they were."""
    sizes, slots = [4, 6, 3], 5
    dense = parameter_count(sizes)
    theta = np.random.default_rng(0).normal(size=dense + slots * sizes[1]).astype(np.float32)
    model = SimpleNamespace(theta=theta, layout=make_layout(sizes), sizes=sizes, slots=slots)
    opts = [stepped_adam(theta[:dense]), stepped_adam(theta[dense:])]
    before, params = [o.state_dict() for o in opts], theta.copy()
    Stepper(model, opts[0], 8, table_optimizer=opts[1]).load_kernels()
    np.testing.assert_array_equal(theta, params)
    for opt, state in zip(opts, before):
        after = opt.state_dict()
        assert after["step"] == state["step"] == 1
        for k in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(after[k], state[k])
