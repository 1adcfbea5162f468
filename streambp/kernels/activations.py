"""Sigmoid activation.

Dimension key: B rows, O units.
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def sigmoid(x):
    """Numerically safe logistic function of a scalar (no overflow for large |x|)."""
    if x >= 0:
        return 1.0 / (1.0 + np.exp(-x))
    e = np.exp(x)
    return e / (1.0 + e)


@njit(cache=True, parallel=True)
def bias_sigmoid_forward(a, b):
    """a[B, O] <- sigmoid(a + b[O]), in place, one pass over rows."""
    for i in prange(a.shape[0]):
        for j in range(a.shape[1]):
            a[i, j] = sigmoid(a[i, j] + b[j])


@njit(cache=True, parallel=True)
def sigmoid_backward(dz, da, a):
    """dz[B, O] <- da[B, O] * a (1 - a), where a = sigmoid(z). dz may be da (in place)."""
    for i in prange(a.shape[0]):
        for j in range(a.shape[1]):
            s = a[i, j]
            dz[i, j] = da[i, j] * s * (1 - s)
