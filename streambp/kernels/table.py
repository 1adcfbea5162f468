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


@njit(**OPTIONS)
def touched_rows(rows, inverse, idx, marks):
    """The distinct slots of idx [B, C], ascending, into rows[:R], and each idx[b, c]'s position among them
    into inverse [B, C]; returns R. marks [V] must hold -1 on entry and is left so (it marks the slots seen).
    For a slot s outside [0, V), returns -1 with rows[0] = s."""
    V = marks.shape[0]
    R = 0
    for b in range(idx.shape[0]):
        for c in range(idx.shape[1]):
            s = idx[b, c]
            if s < 0 or s >= V:
                for r in range(R):
                    marks[rows[r]] = -1
                rows[0] = s
                return -1
            if marks[s] < 0:
                marks[s] = 0
                rows[R] = s
                R += 1
    rows[:R].sort()
    for r in range(R):
        marks[rows[r]] = r
    for b in range(idx.shape[0]):
        for c in range(idx.shape[1]):
            inverse[b, c] = marks[idx[b, c]]
    for r in range(R):
        marks[rows[r]] = -1
    return R
