"""Optimizer updates over the flat parameter buffer.

Dimension key: P parameters.
"""
from numba import prange

from .compile import by_size


def _sgd_update(theta, dtheta, lr):
    """theta[P] <- theta - lr * dtheta[P]."""
    for i in prange(theta.shape[0]):
        theta[i] -= lr * dtheta[i]


sgd_update = by_size(_sgd_update)
