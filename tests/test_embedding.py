"""Categorical inputs as an embedding bag: the kernels, the network and the Stepper equal the dense one-hot math.

The one-hot network of a categorical one has D + V inputs [X, bag(idx)] (bag(idx)[b, v] = how often slot v
occurs in row b) and first-layer weights [W_1, E^T]; every result of the categorical network must equal it.
"""
from types import SimpleNamespace

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from streambp.default_plugins.optimizers import SGD
from streambp.kernels.embedding import embedding_bag_backward, embedding_bag_forward
from streambp.kernels.network import network_forward, network_loss, network_loss_and_grad, network_predict_proba
from streambp.model import Workspace, make_layout, parameter_count
from streambp.step import Stepper

import reference as ref

TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}
V, O = 11, 6
# numeric inputs D = 0 included: a table of categorical columns only
NETS = {"0-hidden": [5, 4], "1-hidden": [5, 6, 4], "3-hidden": [5, 7, 5, 3, 4], "categorical-only": [0, 6, 4]}


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


def close(actual, expected, dtype):
    assert actual.dtype == dtype
    assert_allclose(actual, expected, **TOL[dtype])


def slots(rows, columns, seed=0):
    """idx int32 [rows, columns] in [0, V - 3): the last 3 slots are never touched. Slots repeat across rows
    (rows 0 and 1 are equal) and, with two columns or more, within a row (row 2's first two columns), the
    scatter-add cases."""
    idx = np.random.default_rng(seed).integers(0, V - 3, size=(rows, columns)).astype(np.int32)
    idx[1] = idx[0]
    idx[2, 1:2] = idx[2, 0]
    return idx


# --- the kernels ------------------------------------------------------------------------------------

@pytest.mark.parametrize("columns", [3, 1])
def test_embedding_bag_forward_is_the_one_hot_product(dtype, columns):
    rng = np.random.default_rng(1)
    E = rng.normal(size=(V, O)).astype(dtype)
    z = rng.normal(size=(9, O)).astype(dtype)
    idx = slots(9, columns)
    expected = z.astype(np.float64) + ref.bag(idx, V) @ E
    embedding_bag_forward(z, E, idx)
    close(z, expected, dtype)


@pytest.mark.parametrize("table_slots", [V, 0], ids=["V=11", "V=0"])
def test_embedding_bag_forward_without_columns_leaves_z(dtype, table_slots):
    rng = np.random.default_rng(2)
    E = rng.normal(size=(table_slots, O)).astype(dtype)
    z = rng.normal(size=(9, O)).astype(dtype)
    before = z.copy()
    embedding_bag_forward(z, E, np.empty((9, 0), np.int32))
    assert_array_equal(z, before)


@pytest.mark.parametrize("columns", [3, 1])
def test_embedding_bag_backward_is_the_one_hot_transpose_product(dtype, columns):
    dz = np.random.default_rng(3).normal(size=(9, O)).astype(dtype)
    idx = slots(9, columns)
    rows, inverse = np.unique(idx.ravel(), return_inverse=True)
    dE_rows = np.full((rows.size, O), np.nan, dtype=dtype)  # overwritten, not added to
    embedding_bag_backward(dE_rows, dz, inverse.reshape(idx.shape))
    close(dE_rows, (ref.bag(idx, V).T @ dz.astype(np.float64))[rows], dtype)


def test_embedding_bag_backward_many_columns_few_slots():
    """Every slot occurs in most rows and several times in a row: the sums a race would lose (in float64, where
    sums of 1500 terms still round far below the tolerance; the parallel build: test_parallel_kernels.py)."""
    rng = np.random.default_rng(4)
    dz = rng.normal(size=(300, 40))  # 40 outputs: more than one block of columns
    idx = rng.integers(0, 3, size=(300, 5)).astype(np.int32)
    rows, inverse = np.unique(idx.ravel(), return_inverse=True)
    dE_rows = np.full((3, 40), np.nan)
    embedding_bag_backward(dE_rows, dz, inverse.reshape(idx.shape))
    close(dE_rows, ref.bag(idx, 3).T @ dz, np.float64)


# --- the network ------------------------------------------------------------------------------------

def categorical_net(sizes, dtype, columns=3, rows=9, seed=0):
    """(theta [P_dense + V*O_1] of the categorical network, its E view [V, O_1], X, idx, y, row weights, and
    the one-hot network's theta' and X' = [X, bag(idx)])."""
    model = ref.random_model(sizes, dtype, seed=seed)
    E = np.random.default_rng(seed + 3).normal(0, 0.5, size=(V, sizes[1]))
    theta = np.concatenate([model.theta, E.ravel().astype(dtype)])
    X, y = ref.random_batch(sizes, rows, dtype, seed=seed)
    idx = slots(rows, columns, seed)
    w = (np.linspace(0.5, 1.5, rows) / rows).astype(dtype)
    (W1, b1), *rest = model.layers
    onehot_theta = ref.flatten([(np.hstack([W1, theta[model.theta.size:].reshape(V, -1).T]), b1), *rest])
    onehot_X = np.ascontiguousarray(np.hstack([X, ref.bag(idx, V)]), dtype=dtype)
    return theta, theta[model.theta.size:].reshape(V, -1), X, idx, y, w, onehot_theta.astype(dtype), onehot_X


def onehot_sizes(sizes):
    return [sizes[0] + V, *sizes[1:]]


@pytest.fixture(params=list(NETS.values()), ids=list(NETS))
def sizes(request):
    return request.param


def test_network_forward_and_loss_equal_the_one_hot_network(sizes, dtype):
    theta, E, X, idx, y, w, theta1, X1 = categorical_net(sizes, dtype)
    ws, ws1 = Workspace(sizes, len(X), dtype), Workspace(sizes, len(X), dtype)
    logits = network_forward(ws.acts, theta, make_layout(sizes), X, idx)
    expected = network_forward(ws1.acts, theta1, make_layout(onehot_sizes(sizes)), X1, np.empty((len(X), 0), np.int32))
    close(logits, expected.astype(np.float64), dtype)
    close(ws.acts, ws1.acts.astype(np.float64), dtype)  # every layer's activations
    layers = ref.unflatten(theta, sizes)
    close(logits, ref.forward(layers, X, E, idx)[-1], dtype)
    close(logits, ref.forward(ref.unflatten(theta1.astype(np.float64), onehot_sizes(sizes)), X1)[-1], dtype)

    c = network_loss(ws.acts, ws.losses, theta, make_layout(sizes), X, idx, y, w)
    expected_c, expected_losses, expected_probs = ref.loss(layers, X, y, w, E, idx)
    assert_allclose(c, expected_c, **TOL[dtype])
    close(ws.losses, expected_losses, dtype)
    probs = np.full((len(X), sizes[-1]), np.nan, dtype=dtype)
    network_predict_proba(probs, ws.acts, theta, make_layout(sizes), X, idx)
    close(probs, expected_probs, dtype)


def test_network_gradient_equals_the_one_hot_network(sizes, dtype):
    theta, E, X, idx, y, w, theta1, X1 = categorical_net(sizes, dtype)
    n, O1, dense = len(X), sizes[1], parameter_count(sizes)
    ws = Workspace(sizes, n, dtype)
    dtheta = np.full(dense, np.nan, dtype=dtype)  # P_dense values: the table's gradient is formed from delta^1
    c, hits = network_loss_and_grad(dtheta, ws.acts, ws.deltas, ws.losses, theta, make_layout(sizes), X, idx, y,
                                    w, ws.ones)
    rows, inverse = np.unique(idx.ravel(), return_inverse=True)
    dE_rows = np.empty((rows.size, O1), dtype=dtype)
    embedding_bag_backward(dE_rows, ws.deltas[:n * O1].reshape(n, O1), inverse.reshape(idx.shape))

    expected_c, grads, _ = ref.backward(ref.unflatten(theta1.astype(np.float64), onehot_sizes(sizes)), X1, y, w)
    assert_allclose(c, expected_c, **TOL[dtype])
    (dW1, db1), *rest = grads
    close(dtheta, ref.flatten([(dW1[:, :sizes[0]], db1), *rest]), dtype)
    close(dE_rows, dW1[:, sizes[0]:].T[rows], dtype)
    assert_array_equal(dW1[:, sizes[0]:].T[np.setdiff1d(np.arange(V), rows)], 0)  # what the kernel leaves out
    assert hits == int((ref.loss(ref.unflatten(theta, sizes), X, y, w, E, idx)[2].argmax(axis=1) == y).sum())
    close(dE_rows, ref.backward(ref.unflatten(theta, sizes), X, y, w, E, idx)[2][rows], dtype)


def test_table_gradient_equals_central_differences(sizes):
    theta, E, X, idx, y, w, _, _ = categorical_net(sizes, np.float64, rows=6)
    model = SimpleNamespace(theta=theta, layout=make_layout(sizes), sizes=sizes, slots=V)
    stepper = Stepper(model, None, len(X))
    stepper.loss_and_grad(X, idx, y)
    grad = np.zeros((V, sizes[1]))
    grad[stepper.table_rows] = stepper.dtable_rows
    ws = Workspace(sizes, len(X), np.float64)
    mean = np.full(len(X), 1.0 / len(X))
    fd = np.empty_like(grad)
    for v, j in np.ndindex(*E.shape):
        c = []
        for h in (1e-6, -1e-6):
            old = E[v, j]
            E[v, j] = old + h
            c.append(network_loss(ws.acts, ws.losses, theta, model.layout, X, idx, y, mean))
            E[v, j] = old
        fd[v, j] = (c[0] - c[1]) / 2e-6
    assert np.abs(grad).max() > 1e-3
    assert_allclose(grad, fd, rtol=1e-5, atol=1e-8)


# --- the Stepper ------------------------------------------------------------------------------------

class RowSGD:
    """Plain SGD on rows of a table: a stand-in for Optimizer.step_rows."""

    def step_rows(self, table, rows, grads, lr):
        table[rows] -= lr * grads


def test_stepper_sgd_step_equals_the_one_hot_network(sizes, dtype):
    lr, batch = 0.5, 8
    theta, E, X, idx, y, _, theta1, X1 = categorical_net(sizes, dtype, rows=13)
    dense = parameter_count(sizes)
    model = SimpleNamespace(theta=theta, layout=make_layout(sizes), sizes=sizes, slots=V)
    stepper = Stepper(model, SGD(theta[:dense]), batch, table_optimizer=RowSGD())
    onehot = SimpleNamespace(theta=theta1, layout=make_layout(onehot_sizes(sizes)), sizes=onehot_sizes(sizes))
    onehot_stepper = Stepper(onehot, SGD(theta1), batch)
    for part in (slice(0, 8), slice(8, 13)):  # a full batch, then a partial one of 5 rows
        before = E.copy()
        c, hits = stepper.step(X[part], idx[part], y[part], lr)
        expected_c, expected_hits = onehot_stepper.step(X1[part], None, y[part], lr)
        assert_allclose(c, expected_c, **TOL[dtype])
        assert hits == expected_hits
        touched = np.unique(idx[part])
        assert_array_equal(stepper.table_rows, touched)
        W1 = theta1[:sizes[1] * (sizes[0] + V)].reshape(sizes[1], -1)
        close(theta[:dense], np.concatenate([np.ravel(W1[:, :sizes[0]]), theta1[W1.size:]]).astype(np.float64),
              dtype)
        close(E[touched], W1[:, sizes[0]:].T[touched].astype(np.float64), dtype)
        untouched = np.setdiff1d(np.arange(V), touched)
        assert_array_equal(E[untouched], before[untouched])
        assert not np.array_equal(E[touched], before[touched])


@pytest.mark.parametrize("bad", [V, -1])
def test_stepper_rejects_a_slot_outside_the_table(bad):
    sizes = NETS["1-hidden"]
    theta, E, X, idx, y, _, _, _ = categorical_net(sizes, np.float32)
    model = SimpleNamespace(theta=theta, layout=make_layout(sizes), sizes=sizes, slots=V)
    stepper = Stepper(model, SGD(theta[:parameter_count(sizes)]), len(X), table_optimizer=RowSGD())
    idx[4, 2] = bad
    before = theta.copy()
    with pytest.raises(ValueError, match=f"categorical slot {bad} is outside the model's embedding table of {V}"):
        stepper.step(X, idx, y, 0.1)
    assert_array_equal(theta, before)


def test_stepper_needs_a_table_optimizer_for_categorical_inputs():
    sizes = NETS["1-hidden"]
    theta, E, X, idx, y, _, _, _ = categorical_net(sizes, np.float32)
    model = SimpleNamespace(theta=theta, layout=make_layout(sizes), sizes=sizes, slots=V)
    stepper = Stepper(model, SGD(theta[:parameter_count(sizes)]), len(X))
    with pytest.raises(ValueError, match="no table_optimizer"):
        stepper.step(X, idx, y, 0.1)


def test_stepper_load_kernels_with_a_table_leaves_the_model(dtype):
    sizes = NETS["1-hidden"]
    theta = categorical_net(sizes, dtype)[0]
    model = SimpleNamespace(theta=theta, layout=make_layout(sizes), sizes=sizes, slots=V)
    before = theta.copy()
    Stepper(model, SGD(theta[:parameter_count(sizes)]), 4, table_optimizer=RowSGD()).load_kernels()
    assert_array_equal(theta, before)
