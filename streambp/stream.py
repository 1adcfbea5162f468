"""Record batches -> (X [n, D] row-major, idx int32 [n, C], y int32 [n]) chunks: inputs, labels, shuffle,
prefetch. What each column becomes is decided by features.py's pre-pass (a FeatureSpec).

Memory is bounded by the chunk buffers ((prefetch + 2) chunks, plus one more when shuffling) and the
record batches in flight, never by the dataset.
"""
import inspect
import queue
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import StreambpError
from .features import MISSING, OTHER, READ_ROWS, file_key, hash_input, is_text, null_row, numbers, plain, vector_matrix
from .kernels.gather import copy_rows, gather_columns
from .kernels.inputs import fill_missing, hash_integers, hash_strings
from .kernels.rows import compact_rows, finite_rows, split_mask, standardize
from .threads import concurrent_calls_safe


class LabelEncoder:
    """Labels -> class indices in [0, K), with -1 for a label outside the vocabulary; a strict encoder's
    chunks() refuses such labels (training), others count them (evaluation)."""

    def __init__(self, column, classes, label_type, strict=False):
        self.column = column
        self.strict = strict
        self.value_set = pa.array(classes, type=pa.type_for_alias(label_type))

    def encode(self, arr, f="", row0=0):
        arr = plain(arr)
        if arr.type != self.value_set.type:
            try:
                arr = arr.cast(self.value_set.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise StreambpError(f"{f}: label column {self.column!r} holds {arr.type} values, but the model's "
                                    f"classes are {self.value_set.type} ({self.value_set.to_pylist()[:5]}).") from None
        return pc.index_in(arr, value_set=self.value_set).fill_null(-1).to_numpy().astype(np.int32)

    def unknown(self, f, row0, arr, y):
        """The error for the first label of arr outside the vocabulary (y[i] < 0)."""
        i = int(np.flatnonzero(y < 0)[0])
        value = plain(arr)[i].as_py()
        what = "null or NaN" if value is None or value != value else f"{value!r}, which is not a class of the model"
        return StreambpError(f"{f}: label column {self.column!r} is {what} in row {row0 + i} (classes: "
                             f"{self.value_set.to_pylist()[:10]}). Skip such rows with --on-bad-rows skip.")


def column_values(arr, dtype):
    """A numeric, boolean, decimal or temporal column as a contiguous numpy array of dtype, NaN where null."""
    t = arr.type
    with np.errstate(over="ignore"):  # a value beyond dtype's range becomes inf: a bad value, reported as one
        if not arr.null_count and (pa.types.is_floating(t) or pa.types.is_integer(t)):
            return np.ascontiguousarray(arr.to_numpy(zero_copy_only=False), dtype=dtype)
        return np.ascontiguousarray(numbers(arr), dtype=dtype)


class BatchDecoder:
    """Copies rows of a record batch into a row-major [n, D] buffer and categorical slots [n, C], filling
    missing numeric values as the spec says and rejecting what is left (null, NaN or inf): with an error
    naming file, column and row, or, with skip_bad, by marking the row for the caller to drop."""

    def __init__(self, spec, dtype, skip_bad=False):
        self.spec = spec
        self.dtype = np.dtype(dtype)
        self.skip_bad = skip_bad
        numeric = spec.numeric
        self.fills = np.array([np.nan if c.fill is None else c.fill for c in numeric], dtype=self.dtype)
        self.can_fill = any(c.fill is not None for c in numeric)
        indicator = np.full(len(numeric), -1, dtype=np.int64)
        for k, i in enumerate(i for i, c in enumerate(numeric) if c.indicator):
            indicator[i] = len(numeric) + k
        self.indicator = indicator
        self.zeros = np.zeros(READ_ROWS, dtype=self.dtype)  # what the indicator inputs are gathered from
        self.value_sets = [None if c.values is None else pa.array(c.values, type=pa.type_for_alias(c.value_type))
                           for c in spec.categorical]

    def matrix_source(self, f, row0, batch):
        """The batch's features as fill() copies from: an [N, D] array (a list column, viewed without a
        copy when it holds the model's dtype) or a tuple (column data addresses, the columns)."""
        spec = self.spec
        if spec.input_column:
            return vector_matrix(f, row0, batch.column(spec.input_column), spec, self.skip_bad, self.dtype)
        cols = []
        for c in spec.numeric:
            arr = batch.column(c.name)
            if arr.null_count and c.fill is None and not self.skip_bad:
                raise StreambpError(f"{f}: feature column {c.name!r} is null in row {row0 + null_row(arr)}.")
            cols.append(column_values(arr, self.dtype))
        cols += [self.zeros] * len(spec.indicators)
        return np.array([c.ctypes.data for c in cols], dtype=np.int64), cols

    def slots(self, idx, batch):
        """idx[N, C] <- each categorical column's slot (offset included) for every row of the batch."""
        for j, (c, value_set) in enumerate(zip(self.spec.categorical, self.value_sets)):
            arr = plain(batch.column(c.name))
            out = idx[:, j]
            if value_set is None:
                hashed(out, arr, c)
            else:
                codes = pc.index_in(*comparable(arr, value_set)).fill_null(-1).to_numpy()
                out[:] = np.where(codes >= 0, codes + 2, OTHER) + c.offset
            if arr.null_count:
                out[arr.is_null().to_numpy(zero_copy_only=False)] = c.offset + MISSING

    def fill(self, X, src, start, f, row0, ok=None):
        """X[n, D] <- rows start .. start + n of src; missing values filled; on a value still not finite,
        raise naming file, row and column, or with skip_bad set ok[n] to whether each row is finite.
        Returns whether every row is."""
        n = X.shape[0]
        if isinstance(src, np.ndarray):
            bad = copy_rows(X, src, np.arange(start, start + n))
        else:
            bad = gather_columns(X, src[0], start)
        if bad >= 0 and self.can_fill:
            bad = fill_missing(X, self.fills, self.indicator)
        if bad >= 0 and self.skip_bad:
            finite_rows(ok, X)
        elif bad >= 0:
            i, j = divmod(int(bad), self.spec.width)
            value = "null or NaN" if np.isnan(X[i, j]) else f"infinite (or beyond {self.dtype}'s range)"
            raise StreambpError(f"{f}: feature {self.spec.features[j]!r} is {value} in row {row0 + start + i}; "
                                "features must be finite numbers (or skip such rows with --on-bad-rows skip).")
        if self.spec.mean is not None:
            standardize(X, self.spec.mean, self.spec.inv_std)
        return bad < 0


def comparable(arr, value_set):
    """(arr, value_set) of one type: arr cast to the vocabulary's type, or, where its values do not parse as
    that (text where the categories are integers or booleans), the vocabulary cast to arr's: they are unseen."""
    if arr.type == value_set.type:
        return arr, value_set
    try:
        return arr.cast(value_set.type), value_set
    except pa.ArrowInvalid:
        return arr, value_set.cast(arr.type)


def hashed(out, arr, c):
    """out[N] <- the hash-bucket slots of a hashed categorical column's values (nulls set by the caller)."""
    arr = hash_input(arr, c)
    if is_text(arr.type):
        arr = arr.cast(pa.large_string()) if pa.types.is_string(arr.type) else arr
        _, offsets, data = arr.buffers()
        offsets = np.frombuffer(offsets, dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
        data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
        hash_strings(out, offsets, data, c.buckets, c.offset)
    else:
        values = arr.cast(pa.int64(), safe=False).fill_null(0).to_numpy(zero_copy_only=False)  # uint64 wraps
        hash_integers(out, values, c.buckets, c.offset)


class ChunkBuffer:
    """The pooled chunk buffers of a stream: rows are written into space(n), commit(n) counts them, and
    emit() hands out the chunk, its rows permuted by rng when shuffling. A chunk's buffers are reused once
    `depth + 1` further chunks have been emitted."""

    def __init__(self, chunk_rows, width, slots, dtype, depth, rng, labels):
        n = depth + 2
        self.pool = [np.empty((chunk_rows, width), dtype=dtype) for _ in range(n)]
        self.ipool = [np.empty((chunk_rows, slots), dtype=np.int32) for _ in range(n)]
        self.ypool = [np.empty(chunk_rows, dtype=np.int32) for _ in range(n)]
        self.rng, self.labels, self.chunk_rows = rng, labels, chunk_rows
        if rng is not None:  # rows gather here, then are permuted into the pool
            self.raw = (np.empty((chunk_rows, width), dtype=dtype), np.empty((chunk_rows, slots), dtype=np.int32),
                        np.empty(chunk_rows, dtype=np.int32))
        self.k = self.pos = 0
        self.pieces = []  # (first row in the chunk, (X, idx, y)) held by hold()

    @property
    def room(self):
        return self.chunk_rows - self.pos

    def buffers(self):
        """(X, idx, y) of the chunk being filled, whole."""
        if self.rng is not None:
            return self.raw
        i = self.k % len(self.pool)
        return self.pool[i], self.ipool[i], self.ypool[i]

    def space(self, n):
        """Views of the next n (<= room) rows of the chunk being filled."""
        return tuple(a[self.pos:self.pos + n] for a in self.buffers())

    def commit(self, n):
        """n more rows are in; returns whether the chunk is full."""
        self.pos += n
        return self.pos == self.chunk_rows

    def hold(self, piece):
        """Take the next len(piece[2]) rows as (X, idx, y) views that stay valid until emit(), which copies
        them (and shuffles them on the way) without a copy into the gathering buffer first; returns whether
        the chunk is full."""
        self.pieces.append((self.pos, piece))
        return self.commit(len(piece[2]))

    def emit(self):
        """The chunk (X [n, D], idx [n, C], y [n] or None); the next one starts empty."""
        n, i = self.pos, self.k % len(self.pool)
        X, idx, y = self.pool[i], self.ipool[i], self.ypool[i]
        order = None if self.rng is None else self.rng.permutation(n)
        if self.pieces:
            self.place(order, X, idx, y)
        elif order is not None:
            copy_rows(X[:n], self.raw[0][:n], order)
            np.take(self.raw[1][:n], order, axis=0, out=idx[:n])
            np.take(self.raw[2][:n], order, out=y[:n])
        self.k += 1
        self.pos = 0
        return X[:n], idx[:n], (y[:n] if self.labels else None)

    def place(self, order, X, idx, y):
        """Copy the held pieces into the chunk's buffers, row r of the chunk to the position `order` gives
        it: one gather when a single piece makes the chunk, else a scatter of each piece."""
        pieces, self.pieces = self.pieces, []
        if order is not None and len(pieces) == 1:
            (_, (Xp, idxp, yp)), = pieces
            copy_rows(X[:len(order)], Xp, order)
            np.take(idxp, order, axis=0, out=idx[:len(order)])
            np.take(yp, order, out=y[:len(order)])
            return
        where = None if order is None else np.empty_like(order)
        if order is not None:
            where[order] = np.arange(len(order))
        for start, (Xp, idxp, yp) in pieces:
            rows = slice(start, start + len(yp)) if order is None else where[start:start + len(yp)]
            X[rows], idx[rows], y[rows] = Xp, idxp, yp


def chunks(source, spec, encoder, chunk_rows, dtype, rng=None, depth=1, split=None, bad_rows=None, cache=None):
    """Yield (X [n, D], idx int32 [n, C], y int32 [n]) views of pooled buffers, n = chunk_rows except at the
    end; idx holds each categorical column's slot (C may be 0).

    With rng, the source visits its files and row groups in a random order and each chunk's rows are
    shuffled (a shuffle buffer of chunk_rows rows).
    With split = (fraction, want_val), only the rows on that side of the hash split are kept: a row
    goes to validation when the hash of (file, row index) falls below fraction, the same in every epoch.
    With bad_rows (a streambp.badrows.BadRows), rows with a null, NaN or inf feature that cannot be filled or
    a null or unknown label are dropped and handed to it instead of stopping with an error.
    With encoder.strict unset, y is -1 for labels outside the encoder's vocabulary (evaluation counts them);
    a strict encoder (training) makes them errors. Buffers are reused once `depth + 1` further chunks
    have been produced, so a consumer must finish with a chunk first. With encoder None, y is None.
    With cache (a cache.StreamCache of this very stream), the rows are read from the cache when it holds them
    (the same rows in the same order), else decoded and written to it.
    """
    buf = ChunkBuffer(chunk_rows, spec.width, len(spec.categorical), dtype, depth, rng, encoder is not None)
    cached = cache is not None and cache.manifest is not None
    if cached and not (bad_rows is not None and bad_rows.out and bad_rows.recording):  # the file needs the rows
        if bad_rows is not None:
            bad_rows.skipped(cache.manifest["bad_rows"])
        filled = cache.replay(buf, rng)
    else:
        filled = decoded(buf, source, spec, encoder, dtype, rng, split, bad_rows, None if cached else cache)
    for _ in filled:
        yield buf.emit()
    if buf.pos:
        yield buf.emit()


def decoded(buf, source, spec, encoder, dtype, rng, split, bad_rows, cache):
    """Fill buf with the source's rows, decoded (and written to `cache` when given, once the pass ends);
    yield each time it holds a whole chunk."""
    C = len(spec.categorical)
    decoder = BatchDecoder(spec, dtype, skip_bad=bad_rows is not None)
    ok = np.empty(READ_ROWS, dtype=np.bool_)
    batch_idx = np.empty((READ_ROWS, C), dtype=np.int32)
    strict = encoder is not None and encoder.strict and bad_rows is None
    columns = list(dict.fromkeys(spec.columns + ([encoder.column] if encoder else [])))  # a label may be a feature
    keep = np.empty(READ_ROWS, dtype=np.bool_) if split else None
    shuffle_units = rng is not None and "rng" in inspect.signature(source.batches).parameters
    chunk_rows = buf.chunk_rows
    batches = source.batches(columns, min(READ_ROWS, chunk_rows), rng) if shuffle_units else \
        source.batches(columns, min(READ_ROWS, chunk_rows))
    writer = cache.writer() if cache is not None else None
    try:
        for f, row0, batch in batches:
            src = decoder.matrix_source(f, row0, batch)
            nb = batch.num_rows
            labels = None
            if encoder:
                label_column = batch.column(encoder.column)
                labels = encoder.encode(label_column, f, row0)
                if strict and nb and labels.min() < 0:
                    raise encoder.unknown(f, row0, label_column, labels)
            if C:
                decoder.slots(batch_idx[:nb], batch)
            if split:
                split_mask(keep[:nb], file_key(f), row0, *split)
            if writer is not None:
                writer.at(f, row0)
            start = 0
            while start < nb:
                X, idx, yb = buf.buffers()
                pos = buf.pos
                n = min(buf.room, nb - start)
                finite = decoder.fill(X[pos:pos + n], src, start, f, row0, ok[:n])
                idx[pos:pos + n] = batch_idx[start:start + n]
                if labels is not None:
                    yb[pos:pos + n] = labels[start:start + n]
                n_in = n
                if bad_rows is not None and not (finite and (labels is None or labels[start:start + n].min() >= 0)):
                    good = (ok[:n] if not finite else np.ones(n, np.bool_)) & \
                        (yb[pos:pos + n] >= 0 if labels is not None else True)
                    side = keep[start:start + n] if split else True
                    dropped = start + np.flatnonzero(side & ~good)
                    bad_rows.add(f, row0, batch, dropped)
                    if writer is not None:
                        writer.bad_rows += len(dropped)
                    n = compact(X, idx, yb, pos, n, good & side)
                elif split:
                    n = compact(X, idx, yb, pos, n, keep[start:start + n])
                if writer is not None:
                    writer.append(X[pos:pos + n], idx[pos:pos + n], yb[pos:pos + n])
                start += n_in
                if buf.commit(n):
                    yield
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
    if writer is not None:
        writer.finish()


def compact(X, idx, y, pos, n, keep):
    """Move rows pos .. pos + n with keep[i] to the front of that range, in order; return their count."""
    if idx.shape[1]:
        kept = np.flatnonzero(keep)
        idx[pos:pos + kept.size] = idx[pos + kept]
    return compact_rows(X[pos:pos + n], y[pos:pos + n], keep)


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

    def put(item):
        """Hand item to the consumer unless it stopped first; returns whether it did."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in iterable:
                if not put(item):
                    return
            put(done)
        except BaseException as e:  # handed to the consumer, which raises it
            put(e)

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


def encode_table(model, data):
    """(X [N, D], idx int32 [N, C]) of an in-memory table holding the model's columns (a pyarrow Table or
    RecordBatch, a pandas DataFrame or a dict of columns), read with the model's preprocessing."""
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    elif not isinstance(data, pa.Table):
        data = pa.Table.from_pandas(data, preserve_index=False) if hasattr(data, "to_numpy") else pa.table(data)
    spec = model.spec
    missing = [c for c in spec.columns if c not in data.column_names]
    if missing:
        raise StreambpError(f"The table has no column {missing[0]!r}, which the model reads.")
    decoder = BatchDecoder(spec, model.theta.dtype)
    X = np.empty((data.num_rows, spec.width), dtype=model.theta.dtype)
    idx = np.empty((data.num_rows, len(spec.categorical)), dtype=np.int32)
    row = 0
    for batch in data.select(spec.columns).to_batches(max_chunksize=READ_ROWS):
        n = batch.num_rows
        decoder.fill(X[row:row + n], decoder.matrix_source("the table", row, batch), 0, "the table", row)
        decoder.slots(idx[row:row + n], batch)
        row += n
    return X, idx
