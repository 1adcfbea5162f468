"""The parallel builds of the elementwise kernels (taken for large work) match the reference and,
bit for bit, the serial builds (taken for small work)."""
import os

import numpy as np
import pytest

import reference as ref
from streambp.kernels.activations import bias_sigmoid_forward, sigmoid_backward
from streambp.kernels.compile import PARALLEL_MIN_ELEMENTS
from streambp.kernels.dense import bias_forward
from streambp.kernels.embedding import embedding_bag_backward, embedding_bag_forward
from streambp.kernels.optim import sgd_update
from streambp.kernels.softmax import crossentropy_softmax_backward, softmax_crossentropy_forward, softmax_forward

K = 7
ROWS = PARALLEL_MIN_ELEMENTS // K + 3  # rows * K >= PARALLEL_MIN_ELEMENTS: the parallel build runs
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}


def builds(kernel):
    g = kernel.py_func.__globals__
    return g["serial"], g["parallel"]


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


def run_all(kernel, make_args):
    """Run the dispatcher, the serial and the parallel build on fresh copies; return the outputs."""
    outs = []
    for fn in (kernel, *builds(kernel)):
        args = make_args()
        fn(*args)
        outs.append(args)
    for serial_arg, parallel_arg in zip(outs[1], outs[2]):
        np.testing.assert_array_equal(serial_arg, parallel_arg)
    return outs[0]


def test_elementwise_kernels_large(dtype):
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, size=(ROWS, K)).astype(dtype)
    b = rng.normal(size=K).astype(dtype)
    y = (np.arange(ROWS) % K).astype(np.int32)
    tol = TOL[dtype]

    a, _ = run_all(bias_sigmoid_forward, lambda: (z.copy(), b))
    np.testing.assert_allclose(a, ref.sigmoid(z.astype(np.float64) + b), **tol)
    s, _ = run_all(bias_forward, lambda: (z.copy(), b))
    np.testing.assert_allclose(s, z.astype(np.float64) + b, **tol)
    dz, _, _ = run_all(sigmoid_backward, lambda: (np.empty_like(z), z, a))
    np.testing.assert_allclose(dz, z.astype(np.float64) * a * (1 - a.astype(np.float64)), **tol)
    p, _ = run_all(softmax_forward, lambda: (np.empty_like(z), z))
    np.testing.assert_allclose(p, ref.softmax(z), **tol)
    p, losses, _, _ = run_all(softmax_crossentropy_forward, lambda: (np.empty_like(z), np.empty(ROWS, dtype), z, y))
    np.testing.assert_allclose(losses, ref.crossentropy(z, y), **tol)
    w = np.full(ROWS, 1.0 / ROWS, dtype=dtype)
    d, _, _, _ = run_all(crossentropy_softmax_backward, lambda: (np.empty_like(p), p, y, w))
    np.testing.assert_allclose(d, (p - ref.onehot(y, K)) * w.astype(np.float64)[:, None], **tol)
    theta, g = z.ravel().copy(), z.ravel()[::-1].copy()
    t, _, _ = run_all(sgd_update, lambda: (theta.copy(), g, dtype(0.1)))
    np.testing.assert_allclose(t, theta.astype(np.float64) - dtype(0.1) * g.astype(np.float64), **tol)


def test_embedding_bag_kernels_large(dtype):
    """Few slots in every row of a large minibatch: the parallel backward, which owns blocks of columns, adds
    each element's terms in the same (row, column) order as the serial build and as np.add.at."""
    rng = np.random.default_rng(1)
    O, slots = 40, 5  # 40 outputs: three blocks of columns
    E = rng.normal(size=(slots, O)).astype(dtype)
    z = rng.normal(size=(100_000, O)).astype(dtype)  # enough work that the threads of a racy build would overlap
    idx = rng.integers(0, slots, size=(len(z), 3)).astype(np.int32)
    tol = TOL[dtype]

    out, _, _ = run_all(embedding_bag_forward, lambda: (z.copy(), E, idx))
    np.testing.assert_allclose(out, z.astype(np.float64) + E.astype(np.float64)[idx].sum(axis=1), **tol)
    rows, inverse = np.unique(idx.ravel(), return_inverse=True)
    dE_rows, _, _ = run_all(embedding_bag_backward,
                            lambda: (np.full((rows.size, O), np.nan, dtype), z, inverse.reshape(idx.shape)))
    expected = np.zeros((rows.size, O), dtype)
    np.add.at(expected, inverse, np.repeat(z, idx.shape[1], axis=0))
    np.testing.assert_array_equal(dE_rows, expected)


def test_kernel_cached_from_a_jitted_caller_runs_when_python_calls_it(tmp_path):
    """A by_size kernel compiled inside another kernel, then called from Python in later processes that load
    Numba's cache, gives its result (with *inputs in the dispatcher, the third process crashed)."""
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    jitted_caller = ("import numpy as np\nfrom streambp.kernels.dense import dense_forward\n"
                     "z = np.empty((2, 3), np.float32)\n"
                     "dense_forward(z, np.ones((2, 4), np.float32), np.ones((3, 4), np.float32), "
                     "np.ones(3, np.float32))\n"
                     "print(z.sum())")
    python_caller = ("import numpy as np\nfrom streambp.kernels.dense import bias_forward\n"
                     "for _ in range(3):\n"
                     "    z = np.zeros((2, 3), np.float32)\n"
                     "    bias_forward(z, np.arange(3, dtype=np.float32))\n"
                     "    print(z.sum())")
    outputs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
               for code in (jitted_caller, python_caller, python_caller)]
    assert [(p.returncode, p.stdout.split()) for p in outputs] == [(0, ["30.0"]), (0, ["6.0"] * 3), (0, ["6.0"] * 3)]


# --- serial twins of the network kernels, for fits whose minibatches never reach the parallel builds ------

def test_serial_twins_give_the_network_kernels_bits(dtype):
    """Each network kernel's serial twin gives its bits, with and without categorical inputs, on a minibatch
    small enough that every block runs serial, and on one large enough that the original runs parallel builds."""
    from streambp.kernels import network
    from streambp.model import Workspace, make_layout, parameter_count

    sizes, slots = [5, 7, 3], 4
    rng = np.random.default_rng(2)
    theta = rng.normal(size=parameter_count(sizes) + slots * sizes[1]).astype(dtype)
    for rows in (9, PARALLEL_MIN_ELEMENTS // sizes[1] + 1):
        X = rng.normal(size=(rows, sizes[0])).astype(dtype)
        y = rng.integers(0, sizes[-1], rows).astype(np.int32)
        w = np.full(rows, 1.0 / rows, dtype)
        for idx in (np.empty((rows, 0), np.int32), rng.integers(0, slots, (rows, 2)).astype(np.int32)):
            outs = []
            for kernels in ((network.network_predict_proba, network.network_loss_and_grad),
                            (network.network_predict_proba_serial, network.network_loss_and_grad_serial)):
                ws = Workspace(sizes, rows, dtype)
                probs = np.empty((rows, sizes[-1]), dtype)
                kernels[0](probs, ws.acts, theta, make_layout(sizes), X, idx)
                dtheta = np.full(parameter_count(sizes), np.nan, dtype)
                c, hits = kernels[1](dtheta, ws.acts, ws.deltas, ws.losses, theta, make_layout(sizes), X, idx, y, w,
                                     ws.ones)
                outs.append((probs, dtheta, ws.acts, ws.deltas, ws.losses, c, hits))
            for got, want in zip(*outs, strict=True):
                np.testing.assert_array_equal(got, want)


def test_sized_for_takes_the_twin_only_below_the_threshold():
    """The twin is taken while every layer's [rows, O] block, the output layer's included, stays below
    PARALLEL_MIN_ELEMENTS: from there on the original runs parallel builds."""
    from streambp.kernels.network import network_loss_and_grad as kernel, sized_for

    rows = PARALLEL_MIN_ELEMENTS // 128
    assert sized_for(kernel, rows - 1, [784, 128, 10]) is kernel.serial_twin
    assert sized_for(kernel, rows, [784, 128, 10]) is kernel
    assert sized_for(kernel, rows - 1, [5, 8, 128]) is kernel.serial_twin
    assert sized_for(kernel, rows, [5, 8, 128]) is kernel
    assert sized_for(kernel, rows, [5, 128, 8, 3]) is kernel


COMPILED_BUILDS = """
import json
import numpy as np
from streambp.default_plugins.optimizers import SGD
from streambp.model import Model
from streambp.step import Stepper
from streambp.kernels import activations, dense, embedding, optim, softmax
model = Model.initialise([784, 128, 10], list(range(10)), [f"p{j}" for j in range(784)])
stepper = Stepper(model, SGD(model.theta), 128)
stepper.load_kernels()
stepper.step(np.zeros((128, 784), np.float32), None, np.zeros(128, np.int32), 0.1)
builds = {}
for module in (activations, dense, embedding, optim, softmax):
    for name, kernel in vars(module).items():
        if type(kernel).__name__ == "SizedKernel":
            g = kernel.py_func.__globals__
            builds[name] = [bool(g[b].signatures) for b in ("serial", "parallel")]
print(json.dumps(builds))
"""


def test_a_small_network_compiles_no_parallel_build_it_does_not_run(tmp_path):
    """With Numba's cache empty (a first run), a Stepper whose minibatches stay below PARALLEL_MIN_ELEMENTS per
    block compiles only serial builds for the network; a Python call (the optimizer's, on 101,770 parameters)
    only the build it runs."""
    import json
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", COMPILED_BUILDS], env=env, capture_output=True, text=True,
                         check=True).stdout
    serial_only, neither = [True, False], [False, False]
    assert json.loads(out) == {
        "bias_sigmoid_forward": serial_only, "sigmoid_backward": serial_only, "bias_forward": serial_only,
        "softmax_crossentropy_forward": serial_only, "crossentropy_softmax_backward": serial_only,
        # no categorical inputs (idx None: no embedding code at all); no prediction
        "embedding_bag_forward": neither, "embedding_bag_backward": neither, "softmax_forward": neither,
        "sgd_update": [False, True], "sgd_momentum_update": neither, "adam_update": neither,
        "adagrad_update": neither, "rmsprop_update": neither}


def test_jitted_caller_of_a_cached_parallel_build_runs_from_the_cache(tmp_path):
    """A by_size kernel's parallel build cached by a Python call, then a kernel calling it compiled in a second
    process (loading that build from the cache) and loaded from the cache in a third: it runs (the third
    process crashed when nothing started Numba's threading layer)."""
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    python_caller = ("import numpy as np\nfrom streambp.kernels.dense import bias_forward\n"
                     f"z = np.zeros(({PARALLEL_MIN_ELEMENTS}, 1), np.float32)\n"
                     "bias_forward(z, np.ones(1, np.float32))\nprint(z.sum())")
    jitted_caller = ("import numpy as np\nfrom streambp.kernels.dense import dense_forward\n"
                     "z = np.empty((2, 3), np.float32)\n"
                     "dense_forward(z, np.ones((2, 4), np.float32), np.ones((3, 4), np.float32), "
                     "np.ones(3, np.float32))\n"
                     "print(z.sum())")
    outputs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
               for code in (python_caller, jitted_caller, jitted_caller)]
    assert [(p.returncode, p.stdout.split()) for p in outputs] == [(0, [f"{PARALLEL_MIN_ELEMENTS}.0"]),
                                                                   (0, ["30.0"]), (0, ["30.0"])]
