"""Sigmoid activation.

Dimension key: B rows, O units.
"""
from numba import prange

from .compile import by_size
from .scalar import sigmoid


def _bias_sigmoid_forward(a, b):
    """a[B, O] <- sigmoid(a + b[O]), in place, one pass over rows."""
    for i in prange(a.shape[0]):
        row = a[i]
        for j in range(row.shape[0]):
            row[j] = sigmoid(row[j] + b[j])


def _sigmoid_backward(dz, da, a):
    """dz[B, O] <- da[B, O] * a (1 - a), where a = sigmoid(z). dz may be da (in place)."""
    for i in prange(a.shape[0]):
        out, d, s = dz[i], da[i], a[i]
        for j in range(s.shape[0]):
            out[j] = d[j] * (s[j] - s[j] * s[j])


bias_sigmoid_forward = by_size(_bias_sigmoid_forward)
sigmoid_backward = by_size(_sigmoid_backward)
