"""Each Numba kernel against a plain NumPy evaluation of the same equation, in float32 and float64."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from streambp.default_plugins.optimizers import SGD
from streambp.kernels.activations import bias_sigmoid_forward, sigmoid_backward
from streambp.kernels.dense import bias_forward, dense_backward, dense_forward, dense_sigmoid_forward
from streambp.kernels.network import (network_forward, network_loss, network_loss_and_grad,
                                      network_predict_proba)
from streambp.kernels.optim import sgd_update
from streambp.kernels.softmax import (count_correct, crossentropy_softmax_backward, softmax_crossentropy_forward,
                                      softmax_forward)
from streambp.model import Workspace
from streambp.step import Stepper

import reference as ref

TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}
B, I, O = 7, 6, 5
NETS = {"0-hidden": [6, 4], "1-hidden": [6, 5, 4], "3-hidden": [6, 7, 5, 3, 4]}


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def rand(dtype):
    """rand(*shape, scale=1): normal samples as a C-contiguous array of the test's dtype."""
    rng = np.random.default_rng(1234)
    return lambda *shape, scale=1.0: np.ascontiguousarray(rng.normal(0, scale, size=shape), dtype=dtype)


def close(actual, expected, dtype):
    assert actual.dtype == dtype
    assert_allclose(actual, expected, **TOL[dtype])


def labels(rows, k):
    return (np.arange(rows) * 5 % k).astype(np.int32)


# --- element-wise and dense kernels ----------------------------------------------------------------

def test_bias_sigmoid_forward(dtype, rand):
    z, b = rand(B, O, scale=3), rand(O)
    a = z.copy()
    bias_sigmoid_forward(a, b)
    close(a, ref.sigmoid(z.astype(np.float64) + b), dtype)


@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
def test_sigmoid_backward(dtype, rand, inplace):
    a = ref.sigmoid(rand(B, O, scale=2)).astype(dtype)
    da = rand(B, O)
    expected = da.astype(np.float64) * a * (1 - a.astype(np.float64))
    dz = da if inplace else np.full_like(da, np.nan)
    sigmoid_backward(dz, da, a)
    close(dz, expected, dtype)


def test_bias_forward(dtype, rand):
    z, b = rand(B, O), rand(O)
    out = z.copy()
    bias_forward(out, b)
    close(out, z.astype(np.float64) + b, dtype)


def test_dense_forward(dtype, rand):
    inp, W, b = rand(B, I), rand(O, I), rand(O)
    z = np.full((B, O), np.nan, dtype=dtype)
    dense_forward(z, inp, W, b)
    close(z, ref.forward([(W, b)], inp)[-1], dtype)


def test_dense_sigmoid_forward(dtype, rand):
    inp, W, b = rand(B, I), rand(O, I), rand(O)
    a = np.full((B, O), np.nan, dtype=dtype)
    dense_sigmoid_forward(a, inp, W, b)
    close(a, ref.sigmoid(ref.forward([(W, b)], inp)[-1]), dtype)


@pytest.mark.parametrize("dinp_rows", [0, B], ids=["no-dinp", "dinp"])
def test_dense_backward(dtype, rand, dinp_rows):
    dz, inp, W = rand(B, O), rand(B, I), rand(O, I)
    dW, db = np.full((O, I), np.nan, dtype=dtype), np.full(O, np.nan, dtype=dtype)
    dinp = np.full((dinp_rows, I), np.nan, dtype=dtype)
    dense_backward(dW, db, dinp, dz, inp, W, np.ones(B, dtype=dtype))
    dz64 = dz.astype(np.float64)
    close(dW, dz64.T @ inp, dtype)
    close(db, dz64.sum(axis=0), dtype)
    assert dinp.shape == (dinp_rows, I)
    if dinp_rows:
        close(dinp, dz64 @ W, dtype)


# --- softmax and cross-entropy ----------------------------------------------------------------------

@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
def test_softmax_forward(dtype, rand, inplace):
    logits = rand(B, O, scale=4)
    expected = ref.softmax(logits)
    probs = logits if inplace else np.full_like(logits, np.nan)
    softmax_forward(probs, logits)
    close(probs, expected, dtype)


@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
def test_softmax_crossentropy_forward(dtype, rand, inplace):
    logits, y = rand(B, O, scale=4), labels(B, O)
    expected_probs, expected_losses = ref.softmax(logits), ref.crossentropy(logits, y)
    probs = logits if inplace else np.full_like(logits, np.nan)
    losses = np.full(B, np.nan, dtype=dtype)
    softmax_crossentropy_forward(probs, losses, logits, y)
    close(probs, expected_probs, dtype)
    close(losses, expected_losses, dtype)


@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
def test_crossentropy_softmax_backward(dtype, rand, inplace):
    probs, y = ref.softmax(rand(B, O, scale=2)).astype(dtype), labels(B, O)
    weights = np.linspace(0.1, 2.0, B).astype(dtype)
    expected = (probs - ref.onehot(y, O)) * weights.astype(np.float64)[:, None]
    dlogits = probs if inplace else np.full_like(probs, np.nan)
    crossentropy_softmax_backward(dlogits, probs, y, weights)
    close(dlogits, expected, dtype)


def test_count_correct(dtype, rand):
    probs, y = rand(50, 7), labels(50, 7)
    probs[0] = 0.5  # a tie everywhere: the first class wins, as with np.argmax
    probs[1, :2] = probs[1].max() + 1
    y[0], y[1] = 0, 1
    assert count_correct(probs, y) == int((probs.argmax(axis=1) == y).sum())
    y[:] = probs.argmax(axis=1)
    assert count_correct(probs, y) == 50


def test_sgd_update(dtype, rand):
    theta, dtheta, lr = rand(50), rand(50), dtype(0.05)
    expected = theta.astype(np.float64) - np.float64(lr) * dtheta
    sgd_update(theta, dtheta, lr)
    close(theta, expected, dtype)


# --- numerical stability at extreme logits ----------------------------------------------------------

def test_softmax_crossentropy_huge_logits(dtype):
    logits = np.array([[1e4, -1e4, 0], [1e4, -1e4, 0], [-1e4, 1e4, 0], [1e4, 1e4, 1e4]], dtype=dtype)
    y = np.array([0, 1, 0, 2], dtype=np.int32)
    probs, losses = np.empty_like(logits), np.empty(4, dtype=dtype)
    softmax_crossentropy_forward(probs, losses, logits, y)
    assert np.isfinite(probs).all() and np.isfinite(losses).all()
    close(probs.sum(axis=1), np.ones(4), dtype)
    close(probs, [[1, 0, 0], [1, 0, 0], [0, 1, 0], [1 / 3] * 3], dtype)
    close(losses, [0.0, 2e4, 2e4, np.log(3)], dtype)
    only_probs = np.empty_like(logits)
    softmax_forward(only_probs, logits)
    assert_array_equal(only_probs, probs)


def test_sigmoid_huge_inputs(dtype):
    a = np.array([[1e4, -1e4, 0.0, 800.0, -800.0]], dtype=dtype)
    bias_sigmoid_forward(a, np.zeros(5, dtype=dtype))
    assert np.isfinite(a).all() and ((0 <= a) & (a <= 1)).all()
    close(a, [[1, 0, 0.5, 1, 0]], dtype)


# --- the whole network over its flat parameter buffer -----------------------------------------------

def blocks(buf, sizes, n):
    """Every layer's [n, O] block of a workspace filled for n rows, in layer order."""
    out, q = [], 0
    for units in sizes[1:]:
        out.append(buf[n * q:n * (q + units)].reshape(n, units))
        q += units
    return out


@pytest.fixture(params=list(NETS.values()), ids=list(NETS))
def net(request, dtype):
    """(model, workspace, X, no categorical columns idx [B, 0], y, non-uniform row weights) for a small random
    network of the test's dtype (categorical inputs: tests/test_embedding.py)."""
    sizes, rows = request.param, 9
    model = ref.random_model(sizes, dtype)
    X, y = ref.random_batch(sizes, rows, dtype)
    w = (np.linspace(0.5, 1.5, rows) / rows).astype(dtype)
    return model, Workspace(sizes, rows, dtype), X, np.empty((rows, 0), np.int32), y, w


def test_network_forward(net, dtype):
    model, ws, X, idx, y, w = net
    logits = network_forward(ws.acts, model.theta, model.layout, X, idx)
    expected = ref.forward(model.layers, X)
    close(logits, expected[-1], dtype)
    for got, want in zip(blocks(ws.acts, model.sizes, len(X)), expected[1:]):
        close(got, want, dtype)


def test_network_predict_proba(net, dtype):
    model, ws, X, idx, y, w = net
    probs = np.full((len(X), model.sizes[-1]), np.nan, dtype=dtype)
    network_predict_proba(probs, ws.acts, model.theta, model.layout, X, idx)
    close(probs, ref.softmax(ref.forward(model.layers, X)[-1]), dtype)


def test_network_loss(net, dtype):
    model, ws, X, idx, y, w = net
    c = network_loss(ws.acts, ws.losses, model.theta, model.layout, X, idx, y, w)
    expected_c, expected_losses, expected_probs = ref.loss(model.layers, X, y, w)
    assert_allclose(c, expected_c, **TOL[dtype])
    close(ws.losses, expected_losses, dtype)
    close(blocks(ws.acts, model.sizes, len(X))[-1], expected_probs, dtype)


def test_network_loss_and_grad(net, dtype):
    model, ws, X, idx, y, w = net
    dtheta = np.full_like(model.theta, np.nan)
    c, hits = network_loss_and_grad(dtheta, ws.acts, ws.deltas, ws.losses, model.theta, model.layout, X, idx, y,
                                    w, ws.ones)
    expected_c, grads, _ = ref.backward(model.layers, X, y, w)
    assert_allclose(c, expected_c, **TOL[dtype])
    assert hits == int((ref.loss(model.layers, X, y, w)[2].argmax(axis=1) == y).sum())
    for (dW, db), (want_dW, want_db) in zip(ref.unflatten(dtheta, model.sizes), grads, strict=True):
        close(dW, want_dW, dtype)
        close(db, want_db, dtype)


def test_stepper_load_kernels_compiles_without_changing_the_model(dtype):
    sizes = NETS["1-hidden"]
    model = ref.random_model(sizes, dtype)
    opt = SGD(model.theta, momentum=0.9)
    stepper = Stepper(model, opt, 8)
    theta, state = model.theta.copy(), opt.state_dict()
    stepper.load_kernels()
    assert np.array_equal(model.theta, theta)
    assert opt.t == state["step"] and np.array_equal(opt.state["momentum_buffer"], state["momentum_buffer"])
    zero_row = np.zeros((1, sizes[0]), dtype)  # it ran backprop on one zero row of class 0, into scratch
    close(stepper.dtheta, ref.flatten(ref.backward(model.layers, zero_row, np.zeros(1, np.int32), np.ones(1))[1]),
          dtype)


def test_stepper_sgd_step_and_partial_batch(dtype):
    sizes, batch_size, lr = NETS["1-hidden"], 8, 0.1
    model = ref.random_model(sizes, dtype)
    X, y = ref.random_batch(sizes, 13, dtype)
    stepper = Stepper(model, SGD(model.theta), batch_size)
    for rows in (slice(0, 8), slice(8, 13)):  # a full batch, then a partial one of 5 rows
        Xb, yb = X[rows], y[rows]
        n = len(Xb)
        theta = model.theta.copy()
        expected_c, grads, _ = ref.backward(ref.unflatten(theta, sizes), Xb, yb, np.full(n, 1.0 / n))
        grad = ref.flatten(grads)
        probs_before = ref.loss(ref.unflatten(theta, sizes), Xb, yb, np.full(n, 1.0 / n))[2]
        c, correct = stepper.step(Xb, None, yb, lr)
        assert_allclose(c, expected_c, **TOL[dtype])
        assert correct == int((probs_before.argmax(axis=1) == yb).sum())
        close(stepper.dtheta, grad, dtype)
        close(model.theta, theta.astype(np.float64) - lr * grad, dtype)
