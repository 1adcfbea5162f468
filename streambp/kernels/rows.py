"""Row-wise data preparation: standardisation, its moments, a hash split and row compaction.

Dimension key: N rows, D features.
"""
import numpy as np
from numba import njit, prange

from .compile import OPTIONS, by_size


def _standardize(X, mean, inv_std):
    """X[N, D] <- (X - mean[D]) * inv_std[D], in place."""
    for i in prange(X.shape[0]):
        row = X[i]
        for j in range(row.shape[0]):
            row[j] = (row[j] - mean[j]) * inv_std[j]


standardize = by_size(_standardize)


@njit(**OPTIONS)
def column_moments(X):
    """(count, mean[D], M2[D]) of the rows of X[N, D], in float64: M2 is the sum of squared deviations."""
    n, D = X.shape
    mean = np.zeros(D)
    m2 = np.zeros(D)
    for i in range(n):
        row = X[i]
        for j in range(D):
            d = row[j] - mean[j]
            mean[j] += d / (i + 1)
            m2[j] += d * (row[j] - mean[j])
    return n, mean, m2


@njit(**OPTIONS)
def merge_moments(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """Chan et al.'s pairwise merge of two (count, mean, M2) summaries; updates mean_a, m2_a in place."""
    n = n_a + n_b
    if n_b == 0:
        return n_a
    for j in range(mean_a.shape[0]):
        d = mean_b[j] - mean_a[j]
        mean_a[j] += d * n_b / n
        m2_a[j] += m2_b[j] + d * d * n_a * n_b / n
    return n


@njit(**OPTIONS)
def split_mask(keep, key, row0, fraction, want_val):
    """keep[N] <- whether row row0 + i of the file with hash `key` lies on the wanted side of a split
    that sends a `fraction` of rows to validation: a splitmix64 hash of (key, row) below fraction."""
    threshold = np.uint64(fraction * 2.0 ** 64) if fraction < 1.0 else np.uint64(0xFFFFFFFFFFFFFFFF)
    for i in range(keep.shape[0]):
        z = np.uint64(key) + np.uint64(row0 + i) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        keep[i] = (z < threshold) == want_val


@njit(**OPTIONS)
def finite_rows(ok, X):
    """ok[N] <- whether every value of row i of X[N, D] is finite."""
    for i in range(X.shape[0]):
        good = True
        row = X[i]
        for j in range(row.shape[0]):
            good &= np.isfinite(row[j])
        ok[i] = good


@njit(**OPTIONS)
def compact_rows(X, y, keep):
    """Move the rows i of X[N, D] and y[N] with keep[i] to the front, in order; return their count."""
    k = 0
    for i in range(X.shape[0]):
        if keep[i]:
            if k != i:
                X[k, :] = X[i, :]
                y[k] = y[i]
            k += 1
    return k
