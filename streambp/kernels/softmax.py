"""Softmax output layer with cross-entropy cost.

Dimension key: B rows, K classes. y[B] holds class indices in [0, K).
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _max_and_logsumexp(logits, i):
    """(m, ln sum_k exp(logits[i, k] - m)) with m the row maximum: the stable log-sum-exp."""
    m = logits[i, 0]
    for k in range(1, logits.shape[1]):
        m = max(m, logits[i, k])
    s = 0.0
    for k in range(logits.shape[1]):
        s += np.exp(logits[i, k] - m)
    return m, np.log(s)


@njit(cache=True, parallel=True)
def softmax_forward(probs, logits):
    """probs[B, K] <- softmax(logits[B, K]), stable for logits of any finite size; may be in place."""
    for i in prange(logits.shape[0]):
        m, log_s = _max_and_logsumexp(logits, i)
        for k in range(logits.shape[1]):
            probs[i, k] = np.exp(logits[i, k] - m - log_s)


@njit(cache=True, parallel=True)
def softmax_crossentropy_forward(probs, losses, logits, y):
    """probs[B, K] <- softmax(logits[B, K]) and losses[B] <- -ln probs[i, y[i]] (= lse - logit_y).

    The loss comes from the log-sum-exp, not from ln(probs), so it stays finite when a
    probability underflows. probs may be logits (in place).
    """
    for i in prange(logits.shape[0]):
        m, log_s = _max_and_logsumexp(logits, i)
        losses[i] = log_s - (logits[i, y[i]] - m)
        for k in range(logits.shape[1]):
            probs[i, k] = np.exp(logits[i, k] - m - log_s)


@njit(cache=True, parallel=True)
def crossentropy_softmax_backward(dlogits, probs, y, weights):
    """dlogits[B, K] <- (probs - onehot(y)) * weights[B]: delta^L = a^L - y, scaled per row.

    For the mean cost over a minibatch weights[i] = 1/B. dlogits may be probs (in place).
    """
    for i in prange(probs.shape[0]):
        w = weights[i]
        for k in range(probs.shape[1]):
            t = 1.0 if k == y[i] else 0.0
            dlogits[i, k] = (probs[i, k] - t) * w
