"""Shuffling: seeded permutations of row groups and files, then a bounded shuffle buffer."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.stats import chisquare

from conftest import blob_table, make_blobs, spec_of
from streambp.evaluate import evaluate
from streambp.registry import open_source
from streambp.stream import LabelEncoder, chunks
from streambp.train import FitConfig, fit


def test_a_buffer_as_large_as_the_data_gives_a_uniform_permutation(tmp_path):
    n = 6
    d = tmp_path / "tiny"
    d.mkdir()
    for i, rows in enumerate((range(0, 4), range(4, 6))):
        pq.write_table(pa.table({"x": np.array(rows, np.float32), "label": [r % 2 for r in rows]}),
                       d / f"part-{i}.parquet", row_group_size=2)
    source = open_source(d)
    spec = spec_of(source)
    enc = LabelEncoder("label", [0, 1], "int64")
    trials = 3000
    position = np.zeros((n, n))
    for seed in range(trials):
        (X, _, _), = list(chunks(source, spec, enc, 64, np.float32, np.random.default_rng(seed)))
        order = X[:, 0].astype(int)
        assert sorted(order) == list(range(n))
        position[order, np.arange(n)] += 1
    # every row is equally likely at every position: chi-square over the 36 cells
    assert chisquare(position.ravel()).pvalue > 1e-3
    assert np.abs(position / trials - 1 / n).max() < 0.05


def sorted_dataset(tmp_path, n=3000):
    X, y = make_blobs(n=n, d=5, k=3, seed=5)
    order = np.argsort(y, kind="stable")  # all of class 0, then 1, then 2
    path = tmp_path / "sorted.parquet"
    pq.write_table(blob_table(X[order], y[order]), path, row_group_size=100)
    test = tmp_path / "test.parquet"
    Xt, yt = make_blobs(n=1000, d=5, k=3, seed=5)  # same centres (same seed), other noise draws
    pq.write_table(blob_table(Xt + np.random.default_rng(9).normal(0, 0.01, Xt.shape).astype(np.float32), yt),
                   test)
    presorted = tmp_path / "shuffled.parquet"
    perm = np.random.default_rng(1).permutation(n)
    pq.write_table(blob_table(X[perm], y[perm]), presorted, row_group_size=100)
    return path, presorted, test


def test_shuffle_trains_sorted_data_like_pre_shuffled_data(tmp_path):
    data, presorted, test = sorted_dataset(tmp_path)
    # a buffer of a third of the rows
    cfg = dict(hidden=[8], epochs=3, batch_size=32, lr=0.3, buffer_rows=1024, standardize=False, out=None, loggers=[])

    def accuracy(path, shuffle):
        return evaluate(fit(FitConfig(data=str(path), shuffle=shuffle, **cfg)), open_source(test), "label")["accuracy"]

    reference = accuracy(presorted, False)
    shuffled = accuracy(data, True)
    in_order = accuracy(data, False)
    assert shuffled >= reference - 0.02
    assert in_order < reference - 0.15


def test_each_epoch_has_its_own_order_and_a_replay_gives_the_same(blob_file):
    """The order is a pure function of (seed, epoch): an epoch replays exactly (resume), the next one differs
    (a seed without the epoch would repeat one order every epoch)."""
    from streambp.config import FitConfig
    from streambp.engine import minibatches

    c = FitConfig(data=str(blob_file), batch_size=16, buffer_rows=600, standardize=False)
    source = open_source(blob_file)
    spec = spec_of(source)
    enc = LabelEncoder("label", [0, 1, 2], "int64")

    def order(epoch):
        return np.concatenate([X[:, 0].copy() for X, _, _ in minibatches(c, source, spec, enc, np.float32, epoch)])

    first, again, second = order(1), order(1), order(2)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.sort(first), np.sort(second))
