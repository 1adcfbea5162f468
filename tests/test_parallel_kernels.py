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
