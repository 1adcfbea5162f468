"""The whole network over one flat parameter buffer: forward, cost, backpropagation.

Dimension key: B rows, D numeric features, C categorical columns, V table slots, K classes, P parameters,
L layers.
layout[L, 4] holds per layer (I, O, offset of W in theta, offset of the layer's units in a
workspace row): W_l = theta[p : p + O*I] as [O, I], then b_l = theta[p + O*I : p + O*I + O].
The dense layers end at P_dense; the rest of theta is the first layer's embedding table
E = theta[P_dense:] as [V, O_1] (V = 0: none), so that z^1 = X W_1^T + b_1 + sum over c of E[idx[:, c]]
for numeric inputs X[B, D] and categorical slots idx[B, C] in [0, V) (C may be 0). idx may also be None (no
categorical inputs): Numba then compiles no embedding code at all, a second or so less to compile.
Workspaces acts and deltas hold, for B rows, every layer's [B, O] block one after the other.
"""
import numpy as np
from numba import njit

from .compile import OPTIONS, PARALLEL_MIN_ELEMENTS, serial_twin

from .dense import bias_forward, dense_backward, dense_forward, dense_sigmoid_forward
from .activations import bias_sigmoid_forward, sigmoid_backward
from .embedding import embedding_bag_forward
from .softmax import count_correct, crossentropy_softmax_backward, softmax_crossentropy_forward, softmax_forward


@njit(inline="always", **OPTIONS)
def _weights(theta, layout, l):
    I, O, p = layout[l, 0], layout[l, 1], layout[l, 2]
    return theta[p:p + O * I].reshape(O, I), theta[p + O * I:p + O * I + O]


@njit(inline="always", **OPTIONS)
def _block(buf, layout, l, n):
    O, q = layout[l, 1], layout[l, 3]
    return buf[n * q:n * q + n * O].reshape(n, O)


@njit(inline="always", **OPTIONS)
def _table(theta, layout):
    """E[V, O_1]: what follows the dense layers in theta."""
    L = layout.shape[0]
    I, O, p = layout[L - 1, 0], layout[L - 1, 1], layout[L - 1, 2]
    p += O * I + O
    O1 = layout[0, 1]
    V = (theta.shape[0] - p) // O1
    return theta[p:p + V * O1].reshape(V, O1)


@njit(**OPTIONS)
def network_forward(acts, theta, layout, X, idx):
    """Fill acts with each layer's output for X[B, D] and idx[B, C]; return the logits view [B, K] (no softmax)."""
    n = X.shape[0]
    L = layout.shape[0]
    inp = X
    for l in range(L):
        W, b = _weights(theta, layout, l)
        out = _block(acts, layout, l, n)
        if l == 0 and idx is not None and idx.shape[1] > 0:  # the embedding bag joins z^1 before bias and activation
            np.dot(inp, W.T, out)
            embedding_bag_forward(out, _table(theta, layout), idx)
            if L > 1:
                bias_sigmoid_forward(out, b)
            else:
                bias_forward(out, b)
        elif l < L - 1:
            dense_sigmoid_forward(out, inp, W, b)
        else:
            dense_forward(out, inp, W, b)
        inp = out
    return inp


@njit(**OPTIONS)
def network_predict_proba(probs, acts, theta, layout, X, idx):
    """probs[B, K] <- the network's class probabilities for X[B, D] and idx[B, C]."""
    softmax_forward(probs, network_forward(acts, theta, layout, X, idx))


@njit(**OPTIONS)
def network_loss(acts, losses, theta, layout, X, idx, y, weights):
    """Forward pass and cost C = sum_i weights[i] * -ln a^L[i, y[i]]; acts' last block ends as a^L."""
    logits = network_forward(acts, theta, layout, X, idx)
    n = X.shape[0]
    softmax_crossentropy_forward(logits, losses, logits, y)
    c = 0.0
    for i in range(n):
        c += weights[i] * losses[i]
    return c


@njit(**OPTIONS)
def network_loss_and_grad(dtheta, acts, deltas, losses, theta, layout, X, idx, y, weights, ones):
    """Cost of the minibatch X[B, D], idx[B, C], y[B], the gradient of the dense layers dtheta[:P_dense] by
    backpropagation, and how many rows the network classifies right (argmax of a^L == y, counted here to
    save a call per step): returns (C, hits).

    delta^L = (a^L - onehot(y)) * weights; delta^l = (delta^{l+1} W^{l+1}) * a^l (1 - a^l);
    dW^l = delta^l^T a^{l-1}; db^l = sum over rows of delta^l. ones[B] holds 1.0 (for the bias sums).
    dtheta needs only P_dense elements; the rest is not touched. deltas' first block is left holding
    delta^1 [B, O_1], from which embedding_bag_backward forms the table's gradient onehot(idx)^T delta^1.
    """
    n = X.shape[0]
    L = layout.shape[0]
    c = network_loss(acts, losses, theta, layout, X, idx, y, weights)
    hits = count_correct(_block(acts, layout, L - 1, n), y)
    crossentropy_softmax_backward(_block(deltas, layout, L - 1, n), _block(acts, layout, L - 1, n),
                                  y, weights)
    for l in range(L - 1, -1, -1):
        dz = _block(deltas, layout, l, n)
        if l < L - 1:
            sigmoid_backward(dz, dz, _block(acts, layout, l, n))
        W, _ = _weights(theta, layout, l)
        dW, db = _weights(dtheta, layout, l)
        if l == 0:
            dense_backward(dW, db, deltas[:0].reshape(0, layout[0, 0]), dz, X, W, ones[:n])
        else:
            dense_backward(dW, db, _block(deltas, layout, l - 1, n), dz, _block(acts, layout, l - 1, n),
                           W, ones[:n])
    return c, hits


network_forward_serial = serial_twin(network_forward)
network_predict_proba_serial = serial_twin(network_predict_proba)
network_loss_serial = serial_twin(network_loss)
network_loss_and_grad_serial = serial_twin(network_loss_and_grad)


def sized_for(kernel, rows, sizes):
    """`kernel` (a network_* function) for minibatches of up to `rows` rows of a network of layer sizes `sizes`
    (inputs first): its serial twin when no layer's [rows, O] block reaches PARALLEL_MIN_ELEMENTS, so that a
    fit compiles no parallel build it would never run; the same results either way."""
    return kernel.serial_twin if rows * max(sizes[1:]) < PARALLEL_MIN_ELEMENTS else kernel
