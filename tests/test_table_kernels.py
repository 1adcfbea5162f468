"""The embedding table's row kernels (streambp/kernels/table.py) against NumPy."""
import numpy as np
import pytest

from streambp.kernels.table import gather_rows, scatter_rows, touched_rows


@pytest.mark.parametrize("V, C", [(5, 1), (20, 3), (10_002, 2)])
def test_touched_rows_equal_numpys_unique_and_leave_the_marks_clear(V, C):
    rng = np.random.default_rng(V + C)
    marks = np.full(V, -1, np.int64)
    rows, inverse = np.empty(64 * C, np.int64), np.empty((64, C), np.int64)
    for _ in range(50):
        idx = rng.integers(0, V, (int(rng.integers(1, 65)), C)).astype(np.int32)
        R = touched_rows(rows, inverse[:len(idx)], idx, marks)
        unique, where = np.unique(idx.ravel(), return_inverse=True)
        assert R == len(unique)
        np.testing.assert_array_equal(rows[:R], unique)  # ascending, as np.unique
        np.testing.assert_array_equal(inverse[:len(idx)].ravel(), where)
        assert (marks == -1).all()  # ready for the next minibatch


def test_a_slot_outside_the_table_is_reported_and_the_marks_stay_clear():
    marks = np.full(8, -1, np.int64)
    rows, inverse = np.empty(4, np.int64), np.empty((2, 2), np.int64)
    assert touched_rows(rows, inverse, np.array([[1, 2], [8, 0]], np.int32), marks) == -1 and rows[0] == 8
    assert (marks == -1).all()
    assert touched_rows(rows, inverse, np.array([[3, -1], [1, 0]], np.int32), marks) == -1 and rows[0] == -1
    assert (marks == -1).all()


def test_gather_and_scatter_rows_equal_fancy_indexing():
    rng = np.random.default_rng(1)
    table = rng.normal(size=(50, 7)).astype(np.float32)
    rows = np.array([3, 17, 49, 0], np.int64)
    out = np.full(rows.size * 7 + 5, np.nan, np.float32)  # a longer buffer: only the first R * O are written
    gather_rows(out, table, rows)
    np.testing.assert_array_equal(out[:rows.size * 7].reshape(-1, 7), table[rows])
    assert np.isnan(out[rows.size * 7:]).all()
    values = rng.normal(size=rows.size * 7).astype(np.float32)
    expected = table.copy()
    expected[rows] = values.reshape(-1, 7)
    scatter_rows(table, values, rows)
    np.testing.assert_array_equal(table, expected)
