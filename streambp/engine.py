"""What a training engine works with: the Run, an epoch's minibatches, and a worker's shard of the data.

An engine (registered through the register_engines hook, chosen with `streambp fit --engine NAME`) is
built as factory(run, **options) and has:
- epoch(epoch, skip) -> iterator of (rows, loss, correct, steps), one item per update of run.model.theta:
  the rows it used, their mean loss and how many were classified right (before the update), and the
  optimizer steps it took (1, or K for K local steps between synchronisations). The first `skip` items
  of the epoch are replayed without updating (resuming mid-epoch). The learning rate of an update is
  run.lr_at(run.steps + i) for its i-th step; fit() advances run.steps after each item and may checkpoint
  or stop between items, so when an item is yielded run.model.theta and run.optimizer must be current.
- close(): release workers, threads or connections; called once, also after errors.
- rows_per_step (optional, default --batch-size): the rows one optimizer step uses, for the length of the
  learning-rate schedule (e.g. workers x batch size for synchronous data-parallel training).
An engine that loses part of its cluster raises EngineFailed: fit() then writes a checkpoint of the last
update yielded (the position it was at) and stops with the command that resumes.
"""
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .errors import StreambpError
from .stream import chunks, prefetched


class EngineFailed(StreambpError):
    """The engine cannot go on (e.g. a worker died); the parameters are those of the last update yielded."""


@dataclass
class Run:
    """One fit's model, optimizer and data, shared by fit() and its engine."""

    config: Any  # the FitConfig
    model: Any  # streambp.model.Model; its theta is the parameters being trained
    optimizer: Any
    source: Any
    spec: Any  # stream.FeatureSpec of the model
    encoder: Any  # stream.LabelEncoder
    labels: Any  # stream.LabelInfo of the training data
    class_weights: np.ndarray | None
    split: tuple | None  # (fraction, False): the training side of a hash split
    bad_rows: Any  # BadRows collecting skipped rows, or None
    threads: int
    steps: int = 0  # optimizer steps taken, all epochs
    epochs: int = 0  # --epochs, or the automatic count when it was left out (train.auto_epochs)
    converge: bool = False  # --epochs was left out: stop once the training loss settles (train.converged)
    lr_at: Callable[[int], float] | None = None  # learning rate of global step i (set by train.set_schedule)
    cache: Any = None  # cache.StreamCache of the training rows, or None


def chunk_rows(c):
    """Rows per shuffle buffer: --buffer-rows rounded down to whole minibatches."""
    return max(c.batch_size, c.buffer_rows // c.batch_size * c.batch_size)


def minibatches(c, source, spec, encoder, dtype, epoch, split=None, bad_rows=None, shard=(), cache=None):
    """The epoch's minibatches (X [b, D], idx [b, C], y [b]) as views of reused buffers: shuffled (unless
    --no-shuffle) by a generator seeded with (seed, epoch, *shard), so that every epoch's order can be
    replayed; read from `cache` (a cache.StreamCache) when it holds the rows."""
    rng = np.random.default_rng([c.seed, epoch, *shard]) if c.shuffle else None
    for X, idx, y in prefetched(chunks(source, spec, encoder, chunk_rows(c), dtype, rng, c.prefetch, split,
                                       bad_rows, cache), c.prefetch):
        for s in range(0, X.shape[0], c.batch_size):
            yield X[s:s + c.batch_size], idx[s:s + c.batch_size], y[s:s + c.batch_size]


def shard(source, index, count):
    """Keep worker `index` of `count`'s part of an opened source, in place: every count-th Parquet row group
    (a source with `units`) or else every count-th file, starting at index."""
    if hasattr(source, "units"):
        source.units = source.units[index::count]
    else:
        source.files = source.files[index::count]
    return source
