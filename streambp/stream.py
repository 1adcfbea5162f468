"""Record batches -> (X [n, D] row-major, y int32 [n]) chunks: columns, labels, shuffle, prefetch.

Memory is bounded by the chunk buffers ((prefetch + 2) chunks, plus one more when shuffling) and the
record batches in flight, never by the dataset.
"""
import inspect
import os
import queue
import threading
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import StreambpError
from .kernels.gather import copy_rows, gather_columns
from .kernels.rows import column_moments, compact_rows, finite_rows, merge_moments, split_mask, standardize
from .threads import concurrent_calls_safe

READ_ROWS = 65536  # rows per record batch asked from a source


def is_numeric(t):
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def is_vector(t):
    return (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and \
        is_numeric(t.value_type)


@dataclass
class FeatureSpec:
    """Which columns feed the network: D wide numeric columns, or one list column of width D; with
    mean and inv_std [D], each feature is standardised as (x - mean) * inv_std once read."""

    features: list
    input_column: str | None = None
    mean: np.ndarray | None = None
    inv_std: np.ndarray | None = None

    @property
    def width(self):
        return len(self.features)

    @property
    def columns(self):
        return [self.input_column] if self.input_column else list(self.features)


def _where(source):
    return source.files[0] if len(source.files) == 1 else f"{source.files[0]} (and {len(source.files) - 1} more)"


def require_column(source, name, what):
    if name not in source.schema.names:
        raise StreambpError(f"{source.files[0]} has no {what} column {name!r}. Columns: "
                            f"{', '.join(source.schema.names)}.")


def check_schemas(source, columns):
    """Every file of the source has each column with the first file's type."""
    first = source.schema
    for f, schema in zip(source.files, getattr(source, "file_schemas", [first])):
        for c in columns:
            if c not in schema.names:
                raise StreambpError(f"{f} has no column {c!r}, which {source.files[0]} has.")
            if schema.field(c).type != first.field(c).type:
                raise StreambpError(f"Column {c!r} is {schema.field(c).type} in {f} but "
                                    f"{first.field(c).type} in {source.files[0]}.")


def vector_width(source, column):
    t = source.schema.field(column).type
    if pa.types.is_fixed_size_list(t):
        return t.list_size
    for f, _, batch in source.batches([column], 1):
        arr = batch.column(0)
        if arr.null_count:
            raise StreambpError(f"{f}: column {column!r} is null in row 0.")
        return len(arr[0].values)
    raise StreambpError(f"{_where(source)} has no rows.")


def resolve_features(source, label, features=None):
    """The FeatureSpec for `features` (names, or None for every numeric column but the label)."""
    require_column(source, label, "label")
    schema = source.schema
    if features:
        if label in features:
            raise StreambpError(f"Column {label!r} is the label; it cannot also be a feature.")
        for c in features:
            require_column(source, c, "feature")
            t = schema.field(c).type
            if not (is_numeric(t) or (is_vector(t) and len(features) == 1)):
                raise StreambpError(f"{source.files[0]}: feature column {c!r} has type {t}, which is not numeric "
                                    "(features must be integer or floating-point columns, or one list column "
                                    "of numbers).")
        names = list(features)
    else:
        names = [f.name for f in schema if f.name != label and is_numeric(f.type)]
        if not names:
            vectors = [f.name for f in schema if f.name != label and is_vector(f.type)]
            if len(vectors) != 1:
                raise StreambpError(f"{source.files[0]} has no numeric feature columns besides the label {label!r}; "
                                    "name them with --features.")
            names = vectors
    check_schemas(source, [label, *names])
    if len(names) == 1 and is_vector(schema.field(names[0]).type):
        width = vector_width(source, names[0])
        return FeatureSpec([f"{names[0]}[{i}]" for i in range(width)], input_column=names[0])
    return FeatureSpec(names)


def plain_labels(arr):
    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


def _null_row(arr):
    return int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])


@dataclass
class LabelInfo:
    classes: list
    label_type: str
    counts: list
    rows: int


def scan_labels(source, label, skip_bad=False):
    """First pass over the label column alone: the class vocabulary (sorted), counts and row count.

    With skip_bad, null and NaN labels are left out (the rows are skipped later) instead of an error."""
    counts = {}
    rows = 0
    value_type = None
    for f, row0, batch in source.batches([label], READ_ROWS):
        arr = plain_labels(batch.column(0))
        value_type = arr.type
        if pa.types.is_floating(arr.type):
            arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, arr.type), arr)
        if arr.null_count and not skip_bad:
            raise StreambpError(f"{f}: label column {label!r} is null or NaN in row {row0 + _null_row(arr)}.")
        arr = arr.drop_null()
        vc = pc.value_counts(arr)
        for v, c in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()):
            counts[v] = counts.get(v, 0) + c
        rows += len(arr)
    if rows == 0:
        raise StreambpError(f"{_where(source)} has no rows.")
    if len(counts) < 2:
        raise StreambpError(f"Label column {label!r} of {_where(source)} has a single class "
                            f"({next(iter(counts))!r}); a classifier needs at least two.")
    classes = sorted(counts)
    return LabelInfo(classes, str(value_type), [counts[c] for c in classes], rows)


class LabelEncoder:
    """Labels -> class indices in [0, K), with -1 for a label outside the vocabulary."""

    def __init__(self, column, classes, label_type):
        self.column = column
        self.value_set = pa.array(classes, type=pa.type_for_alias(label_type))

    def encode(self, arr):
        arr = plain_labels(arr)
        if arr.type != self.value_set.type:
            arr = arr.cast(self.value_set.type)
        return pc.index_in(arr, value_set=self.value_set).fill_null(-1).to_numpy().astype(np.int32)


class BatchDecoder:
    """Copies rows of a record batch into a row-major [n, D] buffer, rejecting nulls, NaN and inf: with an
    error naming file, column and row, or, with skip_bad, by marking the row for the caller to drop."""

    def __init__(self, spec, dtype, skip_bad=False):
        self.spec = spec
        self.dtype = np.dtype(dtype)
        self.skip_bad = skip_bad

    def matrix_source(self, f, row0, batch):
        """The batch's features as fill() copies from: an [N, D] array (a list column, viewed without a
        copy when it holds the model's dtype) or a tuple (column data addresses, the columns)."""
        spec = self.spec
        if spec.input_column:
            arr = batch.column(spec.input_column)
            if arr.null_count and self.skip_bad:  # a row of NaN marks the null row as bad
                arr = pc.coalesce(arr, pa.scalar([float("nan")] * spec.width, type=arr.type))
            values = arr.flatten()
            if values.null_count and self.skip_bad:
                values = values.cast(pa.float64()).fill_null(np.nan)
            if arr.null_count or values.null_count:
                bad = arr if arr.null_count else values
                raise StreambpError(f"{f}: column {spec.input_column!r} holds a null "
                                    f"(row {row0 + _null_row(bad) // (1 if arr.null_count else spec.width)}).")
            if not pa.types.is_fixed_size_list(arr.type):
                lengths = pc.list_value_length(arr).to_numpy()
                if (lengths != spec.width).any():
                    i = int(np.flatnonzero(lengths != spec.width)[0])
                    raise StreambpError(f"{f}: column {spec.input_column!r} has {lengths[i]} values in row "
                                        f"{row0 + i}, expected {spec.width}.")
            return values.to_numpy(zero_copy_only=False).astype(self.dtype, copy=False).reshape(-1, spec.width)
        cols = []
        for name in spec.features:
            arr = batch.column(name)
            if arr.null_count:
                if not self.skip_bad:
                    raise StreambpError(f"{f}: feature column {name!r} is null in row {row0 + _null_row(arr)}.")
                arr = arr.cast(pa.float64()).fill_null(np.nan)  # a NaN marks the row as bad
            cols.append(np.ascontiguousarray(arr.to_numpy(zero_copy_only=False), dtype=self.dtype))
        return np.array([c.ctypes.data for c in cols], dtype=np.int64), cols

    def fill(self, X, src, start, f, row0, ok=None):
        """X[n, D] <- rows start .. start + n of src; on NaN or inf, raise naming file, row and column, or
        with skip_bad set ok[n] to whether each row is finite. Returns whether every row is."""
        n = X.shape[0]
        if isinstance(src, np.ndarray):
            bad = copy_rows(X, src, np.arange(start, start + n))
        else:
            bad = gather_columns(X, src[0], start)
        if bad >= 0 and self.skip_bad:
            finite_rows(ok, X)
        elif bad >= 0:
            i, j = divmod(int(bad), self.spec.width)
            raise StreambpError(f"{f}: feature {self.spec.features[j]!r} is {X[i, j]} in row {row0 + start + i}; "
                                "features must be finite numbers.")
        if self.spec.mean is not None:
            standardize(X, self.spec.mean, self.spec.inv_std)
        return bad < 0


def file_key(path):
    """A stable 32-bit key for a file of a dataset: what the validation split hashes with the row index."""
    return zlib.crc32(os.fspath(path).encode("utf-8"))


def chunks(source, spec, encoder, chunk_rows, dtype, rng=None, depth=1, split=None, bad_rows=None):
    """Yield (X [n, D], y int32 [n]) views of pooled buffers, n = chunk_rows except at the end.

    With rng, the source visits its files and row groups in a random order and each chunk's rows are
    shuffled (a shuffle buffer of chunk_rows rows).
    With split = (fraction, want_val), only the rows on that side of the hash split are kept: a row
    goes to validation when the hash of (file, row index) falls below fraction, the same in every epoch.
    With bad_rows (a streambp.badrows.BadRows), rows with a null, NaN or inf feature or a null label are
    dropped and handed to it instead of stopping with an error.
    y is -1 for labels outside the encoder's vocabulary; unknown counts them. Buffers are reused
    once `depth + 1` further chunks have been produced, so a consumer must finish with a chunk first.
    With encoder None, only features are read and y is None.
    """
    D = spec.width
    pool = [np.empty((chunk_rows, D), dtype=dtype) for _ in range(depth + 2)]
    ypool = [np.empty(chunk_rows, dtype=np.int32) for _ in range(depth + 2)]
    raw = np.empty((chunk_rows, D), dtype=dtype) if rng is not None else None
    yraw = np.empty(chunk_rows, dtype=np.int32)
    decoder = BatchDecoder(spec, dtype, skip_bad=bad_rows is not None)
    ok = np.empty(READ_ROWS, dtype=np.bool_)
    columns = spec.columns + ([encoder.column] if encoder else [])
    k = pos = 0

    def emit(n):
        X, y = pool[k % len(pool)], ypool[k % len(pool)]
        if rng is not None:
            order = rng.permutation(n)
            copy_rows(X[:n], raw[:n], order)
            np.take(yraw[:n], order, out=y[:n])
        return X[:n], (y[:n] if encoder else None)

    keep = np.empty(READ_ROWS, dtype=np.bool_) if split else None
    shuffle_units = rng is not None and "rng" in inspect.signature(source.batches).parameters
    batches = source.batches(columns, min(READ_ROWS, chunk_rows), rng) if shuffle_units else \
        source.batches(columns, min(READ_ROWS, chunk_rows))
    for f, row0, batch in batches:
        src = decoder.matrix_source(f, row0, batch)
        labels = encoder.encode(batch.column(encoder.column)) if encoder else None
        if split:
            split_mask(keep[:batch.num_rows], file_key(f), row0, *split)
        start = 0
        while start < batch.num_rows:
            X = raw if rng is not None else pool[k % len(pool)]
            yb = yraw if rng is not None else ypool[k % len(pool)]
            n = min(chunk_rows - pos, batch.num_rows - start)
            finite = decoder.fill(X[pos:pos + n], src, start, f, row0, ok[:n])
            if labels is not None:
                yb[pos:pos + n] = labels[start:start + n]
            n_in = n
            if bad_rows is not None and not (finite and (labels is None or labels[start:start + n].min() >= 0)):
                good = (ok[:n] if not finite else np.ones(n, np.bool_)) & (yb[pos:pos + n] >= 0 if labels is not None
                                                                           else True)
                side = keep[start:start + n] if split else True
                bad_rows.add(f, row0, batch, start + np.flatnonzero(side & ~good))
                n = compact_rows(X[pos:pos + n], yb[pos:pos + n], good & side)
            elif split:
                n = compact_rows(X[pos:pos + n], yb[pos:pos + n], keep[start:start + n])
            pos += n
            start += n_in
            if pos == chunk_rows:
                yield emit(pos)
                k += 1
                pos = 0
    if pos:
        yield emit(pos)


def scan_moments(source, spec, dtype, chunk_rows=16384, bad_rows=None):
    """Streaming pre-pass over the features: (mean [D], inv_std [D]) for standardisation, merging
    per-chunk moments (Chan et al.); a constant feature gets inv_std 1, so it maps to 0."""
    n, mean, m2 = 0, np.zeros(spec.width), np.zeros(spec.width)
    for X, _ in prefetched(chunks(source, spec, None, chunk_rows, dtype, bad_rows=bad_rows)):
        n = merge_moments(n, mean, m2, *column_moments(X))
    std = np.sqrt(m2 / max(n, 1))
    inv_std = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), 1.0 / np.where(std > 0, std, 1.0), 1.0)
    return mean.astype(dtype), inv_std.astype(dtype)


def prefetched(iterable, depth=1):
    """Run `iterable` in a background thread, up to `depth` items ahead; its errors re-raise here.

    Runs it inline when depth is 0 or the threading layer cannot take parallel calls from two threads.
    """
    if depth == 0 or not concurrent_calls_safe():
        yield from iterable
        return
    q = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce():
        try:
            for item in iterable:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as e:  # handed to the consumer, which raises it
            q.put(e)

    t = threading.Thread(target=produce, name="streambp-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join(timeout=5)
