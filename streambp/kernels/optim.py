"""Optimizer updates over the flat parameter buffer.

Dimension key: P parameters.
"""
from numba import njit, prange


@njit(cache=True, parallel=True)
def sgd_update(theta, dtheta, lr):
    """theta[P] <- theta - lr * dtheta[P]."""
    for i in prange(theta.shape[0]):
        theta[i] -= lr * dtheta[i]
