"""Raw columns into the network's inputs: missing numeric values filled, categorical values hashed.

Dimension key: N rows, D numeric inputs (Dn numeric columns first, then their missing indicators).
"""
import numpy as np
from numba import njit

from .compile import OPTIONS

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


@njit(**OPTIONS)
def fill_missing(X, fill, indicator):
    """For each NaN in the first Dn columns of X[N, D]: X[i, j] <- fill[j] and, where indicator[j] >= 0,
    X[i, indicator[j]] <- 1 (fill[j] NaN leaves the value missing). Return the first index i * D + j of X
    still not finite (inf, or NaN without a fill), or -1."""
    n, D = X.shape
    Dn = fill.shape[0]
    first = -1
    for i in range(n):
        row = X[i]
        for j in range(Dn):
            if np.isnan(row[j]):
                row[j] = fill[j]
                if indicator[j] >= 0:
                    row[indicator[j]] = 1
        if first < 0:
            for j in range(D):
                if not np.isfinite(row[j]):
                    first = i * D + j
                    break
    return first


@njit(inline="always", **OPTIONS)
def _mix(z):
    """splitmix64's finaliser: spreads every input bit over the whole 64-bit word."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(**OPTIONS)
def hash_strings(out, offsets, data, buckets, base):
    """out[N] <- base + 1 + (hash of string i) mod buckets, string i being data[offsets[i]:offsets[i + 1]]
    (UTF-8 bytes); the hash is 64-bit FNV-1a, mixed: stable across processes and machines."""
    for i in range(out.shape[0]):
        h = FNV_OFFSET
        for k in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[k])) * FNV_PRIME
        out[i] = base + 1 + np.int64(_mix(h) % np.uint64(buckets))


@njit(**OPTIONS)
def hash_integers(out, values, buckets, base):
    """out[N] <- base + 1 + (splitmix64 hash of values[i]) mod buckets."""
    for i in range(out.shape[0]):
        out[i] = base + 1 + np.int64(_mix(np.uint64(values[i]) + np.uint64(0x9E3779B97F4A7C15)) % np.uint64(buckets))
