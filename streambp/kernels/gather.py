"""Arrow columns into a row-major matrix, with a finiteness check in the same pass.

Dimension key: N rows, D features. Both kernels are built serial and parallel (by_size): copies, the same
bits either way.
"""
import numpy as np
from llvmlite import ir
from numba import carray, njit, prange, types
from numba.extending import intrinsic

from .compile import OPTIONS, by_size

ROW_BLOCK = 256  # rows per parallel task
COL_BLOCK = 64  # columns per tile: the tile of X (64 KiB in float32) stays in cache while columns fill it


@intrinsic
def _address_as_voidptr(typingctx, address):
    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return types.voidptr(types.int64), codegen


def _gather_columns(X, addresses, start):
    """X[N, D] <- column j's element start + i, for D contiguous columns of X's dtype whose data start
    at addresses[D] (the caller keeps them alive); return the first index i * D + j of X holding
    NaN or inf, or -1 when every value is finite."""
    n, D = X.shape
    nblocks = (n + ROW_BLOCK - 1) // ROW_BLOCK
    bad = np.full(nblocks, -1, dtype=np.int64)
    for blk in prange(nblocks):
        r0 = blk * ROW_BLOCK
        r1 = min(n, r0 + ROW_BLOCK)
        for j0 in range(0, D, COL_BLOCK):
            for j in range(j0, min(D, j0 + COL_BLOCK)):
                col = carray(_address_as_voidptr(addresses[j]), (start + r1,), X.dtype)
                for i in range(r0, r1):
                    X[i, j] = col[start + i]
        bad[blk] = _first_nonfinite(X, r0, r1)
    return _first_bad(bad)


def _copy_rows(X, src, rows):
    """X[N, D] <- src[rows[i], :] (rows[N] may be any selection or permutation); return the first
    index i * D + j of X holding NaN or inf, or -1."""
    n, D = X.shape
    nblocks = (n + ROW_BLOCK - 1) // ROW_BLOCK
    bad = np.full(nblocks, -1, dtype=np.int64)
    for blk in prange(nblocks):
        r0 = blk * ROW_BLOCK
        r1 = min(n, r0 + ROW_BLOCK)
        for i in range(r0, r1):
            out, row = X[i], src[rows[i]]
            for j in range(D):  # element by element: a slice assignment costs seconds more to compile
                out[j] = row[j]
        bad[blk] = _first_nonfinite(X, r0, r1)
    return _first_bad(bad)


@njit(inline="always", **OPTIONS)
def _first_nonfinite(X, r0, r1):
    D = X.shape[1]
    for i in range(r0, r1):
        row = X[i]
        for j in range(D):
            if not np.isfinite(row[j]):
                return i * D + j
    return -1


@njit(inline="always", **OPTIONS)
def _first_bad(bad):
    for b in bad:
        if b >= 0:
            return b
    return -1


gather_columns = by_size(_gather_columns)
copy_rows = by_size(_copy_rows)
