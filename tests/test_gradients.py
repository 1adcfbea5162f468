"""Gradients against finite differences, in float64: the whole network and the softmax output layer."""
import numpy as np
import pytest
from numpy.testing import assert_allclose

from streambp.gradcheck import gradcheck
from streambp.kernels.network import network_loss, network_loss_and_grad
from streambp.kernels.softmax import (crossentropy_softmax_backward, softmax_crossentropy_forward,
                                      softmax_forward)
from streambp.model import Workspace, parameter_count

import reference as ref

NETS = {"0-hidden": [5, 3], "1-hidden": [5, 4, 3], "3-hidden": [5, 6, 4, 5, 3]}
H = 1e-6


def central_differences(f, x, h=H):
    """Columns (f(x + h e_i) - f(x - h e_i)) / 2h for every i; x is perturbed in place and restored."""
    cols = []
    for i in range(x.size):
        old = x[i]
        x[i] = old + h
        plus = np.array(f(), dtype=np.float64)
        x[i] = old - h
        minus = np.array(f(), dtype=np.float64)
        x[i] = old
        cols.append((plus - minus) / (2 * h))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("sizes", list(NETS.values()), ids=list(NETS))
def test_gradcheck(sizes):
    error, checked = gradcheck(sizes)
    assert checked == parameter_count(sizes)
    assert error < 1e-6


@pytest.mark.parametrize("sizes", list(NETS.values()), ids=list(NETS))
def test_gradcheck_with_an_embedding_table(sizes):
    error, checked = gradcheck(sizes, rows=6, slots=7, columns=3)
    assert checked == parameter_count(sizes) + 7 * sizes[1]
    assert error < 1e-6


def test_gradcheck_sees_a_wrong_table_gradient(monkeypatch):
    import streambp.step

    real = streambp.step.embedding_bag_backward

    def halved(dE_rows, dz, inverse):
        real(dE_rows, dz, inverse)
        dE_rows *= 0.5

    monkeypatch.setattr(streambp.step, "embedding_bag_backward", halved)
    error, _ = gradcheck(NETS["1-hidden"], rows=6, slots=7, columns=3)
    assert error > 0.3  # |g/2 - g| / (|g/2| + |g|) = 1/3 on every touched table entry


@pytest.mark.parametrize("sizes", list(NETS.values()), ids=list(NETS))
def test_backprop_equals_central_differences(sizes):
    rows = 6
    model = ref.random_model(sizes, np.float64, seed=7)
    X, y = ref.random_batch(sizes, rows, np.float64, seed=7)
    w = np.full(rows, 1.0 / rows)
    ws = Workspace(sizes, rows, np.float64)
    grad = np.full_like(model.theta, np.nan)
    idx = np.empty((rows, 0), np.int32)
    network_loss_and_grad(grad, ws.acts, ws.deltas, ws.losses, model.theta, model.layout, X, idx, y, w, ws.ones)
    fd = central_differences(lambda: network_loss(ws.acts, ws.losses, model.theta, model.layout, X, idx, y, w),
                             model.theta)
    assert np.abs(grad).max() > 1e-3
    assert_allclose(grad, fd, rtol=1e-5, atol=1e-8)


def softmax(z):
    probs = np.empty((1, z.size))
    softmax_forward(probs, z[None, :].copy())
    return probs[0]


def row_loss(z, y):
    probs, losses = np.empty((1, z.size)), np.empty(1)
    softmax_crossentropy_forward(probs, losses, z[None, :].copy(), np.array([y], dtype=np.int32))
    return losses[0]


def test_softmax_jacobian():
    z = np.random.default_rng(3).normal(0, 2, size=5)
    a = softmax(z)
    jacobian = central_differences(lambda: softmax(z), z)  # jacobian[j, i] = d a_j / d z_i
    assert_allclose(np.diag(jacobian), a * (1 - a), rtol=1e-6, atol=1e-9)
    assert_allclose(jacobian, np.diag(a) - np.outer(a, a), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("y", range(4))
def test_output_delta_is_probs_minus_onehot(y):
    z = np.random.default_rng(4).normal(0, 2, size=4)
    expected = ref.softmax(z[None, :])[0] - ref.onehot([y], 4)[0]
    assert_allclose(central_differences(lambda: row_loss(z, y), z), expected, rtol=1e-6, atol=1e-9)
    delta = np.full((1, 4), np.nan)
    crossentropy_softmax_backward(delta, softmax(z)[None, :], np.array([y], dtype=np.int32), np.ones(1))
    assert_allclose(delta[0], expected, rtol=1e-12, atol=1e-12)
