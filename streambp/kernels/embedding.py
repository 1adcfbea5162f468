"""Categorical inputs of the first layer as an embedding bag: the one-hot product without the one-hot rows.

Dimension key: B rows, C categorical columns, V slots (every column's values offset into its own range),
O outputs of the first layer, R rows of the table that a minibatch touches.
E[V, O] is the transpose of the one-hot part of W1 (row-major, so a lookup reads O contiguous values):
onehot(idx)[B, V] E = sum over c of E[idx[:, c]], and its gradient onehot(idx)^T dz only has rows at the
slots that occur in idx.
"""
from numba import prange

from .compile import by_size

COL_BLOCK = 16  # outputs per parallel task of the backward pass, which owns those columns of every row


def _embedding_bag_forward(z, E, idx):
    """z[B, O] <- z + sum over c of E[idx[b, c]] for idx[B, C] with values in [0, V) (not checked), in place."""
    for b in prange(z.shape[0]):
        row = z[b]
        for c in range(idx.shape[1]):
            e = E[idx[b, c]]
            for j in range(row.shape[0]):
                row[j] += e[j]


def _embedding_bag_backward(dE_rows, dz, inverse):
    """dE_rows[R, O] <- for each r, the sum of dz[b] over every (b, c) with inverse[b, c] == r.

    rows[R] = the distinct slots of idx[B, C] and inverse[B, C] the position of idx[b, c] in rows (as from
    np.unique(idx, return_inverse=True)), so dE_rows are the rows `rows` of onehot(idx)^T dz[B, O]. Slots
    repeat within and across rows of idx, so each task owns a block of columns, never a row: no two
    iterations add into the same element, and every element sums its terms in (b, c) order whatever the build.
    """
    O = dz.shape[1]
    for blk in prange((O + COL_BLOCK - 1) // COL_BLOCK):
        j0 = blk * COL_BLOCK
        j1 = min(O, j0 + COL_BLOCK)
        dE_rows[:, j0:j1] = 0
        for b in range(dz.shape[0]):
            for c in range(inverse.shape[1]):
                r = inverse[b, c]
                for j in range(j0, j1):
                    dE_rows[r, j] += dz[b, j]


embedding_bag_forward = by_size(_embedding_bag_forward)
embedding_bag_backward = by_size(_embedding_bag_backward)
