"""Rows of a parameter table in and out of a contiguous buffer: the lazy optimizer step on the rows a
minibatch touched (streambp.optim.Optimizer.step_rows).

Dimension key: V table rows, O columns, R rows touched.
"""
from numba import njit

from .compile import OPTIONS


@njit(**OPTIONS)
def gather_rows(out, table, rows):
    """out[R * O] <- table[rows[r], :] for each r, row after row (table [V, O], rows [R])."""
    O = table.shape[1]
    for r in range(rows.shape[0]):
        src = table[rows[r]]
        for j in range(O):
            out[r * O + j] = src[j]


@njit(**OPTIONS)
def scatter_rows(table, values, rows):
    """table[rows[r], :] <- values[r * O:(r + 1) * O] for each r (the inverse of gather_rows)."""
    O = table.shape[1]
    for r in range(rows.shape[0]):
        dst = table[rows[r]]
        for j in range(O):
            dst[j] = values[r * O + j]
