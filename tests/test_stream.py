"""The streaming pipeline gives exactly what the same rows held in memory give."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import spec_of
from streambp.default_plugins.optimizers import SGD
from streambp.model import Model
from streambp.step import Stepper
from streambp.features import scan_labels
from streambp.registry import open_source
from streambp.stream import LabelEncoder, chunks, prefetched
from streambp.train import FitConfig, fit


def in_memory_fit(X, y, hidden, epochs, batch, lr, seed):
    model = Model.initialise([X.shape[1], *hidden, 3], [0, 1, 2], [f"x{j}" for j in range(X.shape[1])], seed=seed)
    stepper = Stepper(model, SGD(model.theta), batch)
    X, y = np.ascontiguousarray(X), y.astype(np.int32)
    for _ in range(epochs):
        for s in range(0, len(y), batch):
            stepper.step(X[s:s + batch], None, y[s:s + batch], lr)
    return model


@pytest.mark.parametrize("buffer_rows, prefetch", [(64, 2), (50, 0), (100000, 1)])
def test_streaming_equals_in_memory(blob_dir, blobs, buffer_rows, prefetch):
    X, y = blobs
    streamed = fit(FitConfig(data=str(blob_dir), hidden=[8], epochs=2, batch_size=16, lr=0.3, optimizer="sgd",
                             shuffle=False, buffer_rows=buffer_rows, prefetch=prefetch, standardize=False, out=None,
                             loggers=[], lr_schedule="constant"))
    memory = in_memory_fit(X, y, [8], epochs=2, batch=16, lr=0.3, seed=0)
    np.testing.assert_allclose(streamed.theta, memory.theta, rtol=0, atol=1e-6)
    assert not np.array_equal(streamed.theta, Model.initialise(streamed.sizes, [0, 1, 2], streamed.features).theta)


def test_chunks_cover_every_row_once(blob_dir, blobs):
    X, y = blobs
    source = open_source(blob_dir)
    spec = spec_of(source)
    enc = LabelEncoder("label", [0, 1, 2], "int64")
    got = [(c.copy(), t.copy()) for c, _, t in prefetched(chunks(source, spec, enc, 70, np.float32), 2)]
    assert [len(t) for _, t in got] == [70] * 8 + [40]
    np.testing.assert_array_equal(np.concatenate([c for c, _ in got]), X)
    np.testing.assert_array_equal(np.concatenate([t for _, t in got]), y)


def test_shuffled_chunks_are_a_seeded_permutation(blob_file, blobs):
    X, y = blobs
    source = open_source(blob_file)
    spec = spec_of(source)
    enc = LabelEncoder("label", [0, 1, 2], "int64")

    def epoch(seed):
        rng = np.random.default_rng(seed)
        return np.concatenate([c.copy() for c, _, _ in chunks(source, spec, enc, 1000, np.float32, rng)])

    a, b, c = epoch(1), epoch(1), epoch(2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, X)
    key = lambda M: M[np.lexsort(M.T)]  # noqa: E731
    np.testing.assert_array_equal(key(a), key(X))


def test_same_seed_same_model_different_seed_differs(blob_file):
    cfg = dict(data=str(blob_file), hidden=[4], epochs=2, batch_size=8, out=None, loggers=[])
    a, b = fit(FitConfig(seed=3, **cfg)), fit(FitConfig(seed=3, **cfg))
    np.testing.assert_array_equal(a.theta, b.theta)
    assert not np.array_equal(a.theta, fit(FitConfig(seed=4, **cfg)).theta)


def test_label_vocabulary_in_users_labels(tmp_path):
    labels = pa.array(["dog", "cat", "eel", "cat", "dog", "dog"]).dictionary_encode()
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"a": [1.0, 2, 3, 4, 5, 6], "label": labels}), path)
    info = scan_labels(open_source(path), "label")
    assert info.classes == ["cat", "dog", "eel"]
    assert info.counts == [2, 3, 1]
    assert info.rows == 6
    enc = LabelEncoder("label", info.classes, info.label_type)
    np.testing.assert_array_equal(enc.encode(pa.array(["eel", "cat", "fox"])), [2, 0, -1])


def test_only_needed_columns_are_read(blob_file, monkeypatch):
    source = open_source(blob_file)
    spec = spec_of(source, "label", ["x1", "x3"])
    asked = []
    real = source.batches

    def spy(columns, batch_rows):
        asked.append(list(columns))
        return real(columns, batch_rows)

    monkeypatch.setattr(source, "batches", spy)
    list(chunks(source, spec, LabelEncoder("label", [0, 1, 2], "int64"), 256, np.float32))
    assert asked == [["x1", "x3", "label"]]


@pytest.mark.parametrize("fails", [False, True])
def test_closing_a_prefetched_stream_early_ends_its_thread(monkeypatch, fails):
    # The producer's last hand-over (the end marker, or the error) was a blocking put: with the queue full and
    # the consumer gone it waited forever, so close() joined for 5 s and left the thread behind.
    import threading

    import streambp.stream as stream

    monkeypatch.setattr(stream, "concurrent_calls_safe", lambda: True)
    produced = threading.Event()

    def items():
        yield 1
        yield 2  # fills the queue (depth 1) while the consumer holds item 1
        produced.set()
        if fails:
            raise ValueError("after the last item")

    before = set(threading.enumerate())
    it = prefetched(items(), depth=1)
    assert next(it) == 1
    assert produced.wait(10)
    thread, = [t for t in threading.enumerate() if t not in before and t.name == "streambp-prefetch"]
    it.close()
    assert not thread.is_alive()
