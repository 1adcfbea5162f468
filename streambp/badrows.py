"""Rows rejected under `--on-bad-rows skip`: counted, and optionally written out with their origin."""
import contextlib
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_path, current


class BadRows:
    """Counts rejected rows; with `out`, writes them (the columns read, plus `_file` and `_row`) to Parquet.

    Rows are recorded only while `recording` is true (the first epoch), so each is written once. add() runs
    in fit's prefetch thread, which may still be reading when the main thread calls abort(): a lock keeps
    them apart, and rows added after close() or abort() are ignored.
    """

    def __init__(self, out=None):
        self.guard = current()  # add() runs in the prefetch thread, outside the command's context
        if out:
            self.guard.check(out, "--bad-rows-out")
        self.out = out
        self.count = 0
        self.recording = True
        self._writer = None
        self._files = contextlib.ExitStack()  # the atomic output, then its Parquet writer
        self._lock = threading.Lock()

    def add(self, f, row0, batch, rows):
        """Record the rows `rows` (indices into batch) of a record batch read from file f at row0."""
        with self._lock:
            if not self.recording or len(rows) == 0:
                return
            self.count += len(rows)
            if self.out is None:
                return
            rejected = pa.Table.from_batches([batch.take(pa.array(rows))])
            rejected = rejected.append_column("_file", pa.array([str(f)] * len(rows)))
            rejected = rejected.append_column("_row", pa.array(row0 + np.asarray(rows, dtype=np.int64)))
            if self._writer is None:
                tmp = self._files.enter_context(atomic_path(self.out, "--bad-rows-out", guard=self.guard))
                self._writer = self._files.enter_context(pq.ParquetWriter(tmp, rejected.schema))
            self._writer.write_table(rejected)

    def skipped(self, n):
        """Count n rejected rows known only by their number (read from a cache, which holds the kept rows)."""
        with self._lock:
            if self.recording:
                self.count += n

    def close(self):
        """Finish the output file (atomically renamed into place); call once, after the first epoch."""
        with self._lock:
            self.recording = False
            self._writer = None
            self._files.close()

    def abort(self, error):
        """Drop the partial output file after `error` stopped the run."""
        with self._lock:
            self.recording = False
            self._writer = None
            self._files.__exit__(type(error), error, error.__traceback__)
