"""Arrow columns into a row-major matrix, with a finiteness check in the same pass.

Dimension key: N rows, D features.
"""
import numpy as np
from numba import njit, prange

ROW_BLOCK = 64  # rows per task: a block of a wide matrix stays in the L2 cache while columns fill it


@njit(cache=True, parallel=True, nogil=True)
def gather_columns(X, cols, start):
    """X[N, D] <- cols[j][start + i] for each of the D column arrays; return the first index
    i * D + j holding NaN or inf, or -1 when every value is finite."""
    n, D = X.shape
    nblocks = (n + ROW_BLOCK - 1) // ROW_BLOCK
    bad = np.full(nblocks, -1, dtype=np.int64)
    for blk in prange(nblocks):
        r0 = blk * ROW_BLOCK
        r1 = min(n, r0 + ROW_BLOCK)
        for j in range(D):
            c = cols[j]
            for i in range(r0, r1):
                X[i, j] = c[start + i]
        bad[blk] = _first_nonfinite(X, r0, r1)
    return _first_bad(bad)


@njit(cache=True, parallel=True, nogil=True)
def copy_rows(X, src, rows):
    """X[N, D] <- src[rows[i], :] (rows[N] may be any selection or permutation); return the first
    index i * D + j of X holding NaN or inf, or -1."""
    n, D = X.shape
    nblocks = (n + ROW_BLOCK - 1) // ROW_BLOCK
    bad = np.full(nblocks, -1, dtype=np.int64)
    for blk in prange(nblocks):
        r0 = blk * ROW_BLOCK
        r1 = min(n, r0 + ROW_BLOCK)
        for i in range(r0, r1):
            r = rows[i]
            for j in range(D):
                X[i, j] = src[r, j]
        bad[blk] = _first_nonfinite(X, r0, r1)
    return _first_bad(bad)


@njit(cache=True, inline="always")
def _first_nonfinite(X, r0, r1):
    D = X.shape[1]
    for i in range(r0, r1):
        for j in range(D):
            if not np.isfinite(X[i, j]):
                return i * D + j
    return -1


@njit(cache=True, inline="always")
def _first_bad(bad):
    for b in bad:
        if b >= 0:
            return b
    return -1
