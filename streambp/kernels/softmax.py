"""Softmax output layer with cross-entropy cost.

Dimension key: B rows, K classes. y[B] holds class indices in [0, K).
"""
import numpy as np
from numba import njit, prange

from .compile import OPTIONS, by_size
from .scalar import exp


@njit(inline="always", **OPTIONS)
def _softmax_row(p, z):
    """p[K] <- softmax(z[K]); returns ln sum_k exp(z_k - max z), with the max: stable for any finite z."""
    m = z[0]
    for k in range(1, z.shape[0]):
        m = max(m, z[k])
    s = exp(z[0] - m)
    p[0] = s
    for k in range(1, z.shape[0]):
        e = exp(z[k] - m)
        p[k] = e
        s += e
    for k in range(z.shape[0]):
        p[k] /= s
    return m, np.log(s)


def _softmax_forward(probs, logits):
    """probs[B, K] <- softmax(logits[B, K]), stable for logits of any finite size; may be in place."""
    for i in prange(logits.shape[0]):
        _softmax_row(probs[i], logits[i])


def _softmax_crossentropy_forward(probs, losses, logits, y):
    """probs[B, K] <- softmax(logits[B, K]) and losses[B] <- -ln probs[i, y[i]] = lse_i - logits[i, y[i]].

    The loss comes from the log-sum-exp, not from ln(probs), so it stays finite when a
    probability underflows. probs may be logits (in place).
    """
    for i in prange(logits.shape[0]):
        zy = logits[i, y[i]]
        m, log_s = _softmax_row(probs[i], logits[i])
        losses[i] = log_s - (zy - m)


def _crossentropy_softmax_backward(dlogits, probs, y, weights):
    """dlogits[B, K] <- (probs - onehot(y)) * weights[B]: delta^L = a^L - y, scaled per row.

    For the mean cost over a minibatch weights[i] = 1/B. dlogits may be probs (in place).
    """
    for i in prange(probs.shape[0]):
        w = weights[i]
        out, p = dlogits[i], probs[i]
        for k in range(p.shape[0]):
            out[k] = p[k] * w
        out[y[i]] -= w


@njit(**OPTIONS)
def count_correct(probs, y):
    """How many rows i of probs[B, K] have their first largest value at y[i] (argmax == label)."""
    hits = 0
    for i in range(probs.shape[0]):
        p = probs[i]
        best = 0
        for k in range(1, p.shape[0]):
            if p[k] > p[best]:
                best = k
        hits += best == y[i]
    return hits


softmax_forward = by_size(_softmax_forward)
softmax_crossentropy_forward = by_size(_softmax_crossentropy_forward)
crossentropy_softmax_backward = by_size(_crossentropy_softmax_backward)
