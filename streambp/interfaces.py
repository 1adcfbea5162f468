"""The types plugins meet: the info dict of each lifecycle hook (TypedDicts) and what the registered
factories build (Protocols: Optimizer, Logger, Source, Engine). streambp/hookspecs.py annotates every hook
with them; docs/plugins.md describes them. Nothing here is imported at run time beyond `typing`.

Dimension key: P parameters (the flat buffer theta), K classes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, TypedDict

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa


# --- the info dicts of the lifecycle hooks (and of the loggers' methods of the same names) -------------

class FitStartInfo(TypedDict):
    sizes: list[int]  # layer widths, input first, classes last
    rows: int  # training rows per epoch
    epochs: int
    classes: list  # the class labels, sorted
    threads: int
    files: int  # training files
    out: str | None  # the model file
    config: dict[str, Any]  # every setting of the fit
    run_dir: str | None
    resumed: bool
    columns: list[list[str]]  # [column, role (numeric, categorical or ignored), detail] for every column
    baseline_loss: float  # the loss of predicting the class frequencies (their entropy)
    majority: float  # the share of the most frequent class
    cache: list[str]  # what the cache of decoded rows does for the training and validation rows (streambp.cache)


class StepEndInfo(TypedDict):
    epoch: int  # from 1
    epochs: int
    step: int  # optimizer steps so far, all epochs
    rows: int  # rows so far this epoch
    rows_total: int  # rows per epoch
    loss: float  # mean training loss so far this epoch
    accuracy: float  # training accuracy so far this epoch
    rows_per_s: float


class _EpochEndRequired(TypedDict):
    epoch: int  # from 1
    epochs: int
    step: int  # optimizer steps so far
    train_loss: float  # mean cross-entropy over the epoch
    train_accuracy: float
    seconds: float  # the epoch's duration
    rows_per_s: float


class EpochEndInfo(_EpochEndRequired, total=False):
    val_loss: float  # with --val or --val-fraction
    val_accuracy: float  # in [0, 1]
    val_confusion: list[list[int]]  # K x K: rows true, columns predicted class
    warning: str  # when the training loss is not below baseline_loss: the likely causes and the flags to try


class FitEndInfo(TypedDict):
    out: str | None  # the model file written
    seconds: float  # the whole fit
    history: list[EpochEndInfo]  # the epoch_end info of every epoch
    bad_rows: int  # rows skipped with --on-bad-rows skip
    run_dir: str | None
    majority: float  # the share of the most frequent class in the training data
    best_epoch: int | None  # with --early-stopping: the epoch whose weights were kept
    converged_epoch: int | None  # with --epochs left out: the epoch after which the training loss had settled


# --- what registered factories build ---------------------------------------------------------------

class Optimizer(Protocol):
    """Built as factory(theta [P], **hyper_parameters); streambp.optim.Optimizer implements it."""

    def step(self, theta: np.ndarray, dtheta: np.ndarray, lr: float) -> None:
        """Update theta [P] in place from the gradient dtheta [P]."""

    def state_dict(self) -> dict[str, Any]:
        """{"step": int, <state array name>: array [P], ..., "hyper": {...}}."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict() returned; a StreambpError if it does not fit."""

    # Optional: step_rows(table [V, O], rows [R] int64, grads [R, O], lr), a step on only those rows of a table
    # (streambp.optim.Optimizer has it). Models with categorical columns need it for their embedding table.


class Logger(Protocol):
    """Built as factory(**options); each method is optional and gets the info of the hook of its name."""

    def fit_start(self, info: FitStartInfo) -> None: ...

    def step_end(self, info: StepEndInfo) -> None: ...

    def epoch_end(self, info: EpochEndInfo) -> None: ...

    def fit_end(self, info: FitEndInfo) -> None: ...


class Source(Protocol):
    """Built as factory(path, **options) for a file, a directory or a glob."""

    files: list[str]
    schema: pa.Schema  # the first file's
    file_schemas: list[pa.Schema]  # one per file
    num_rows: int | None  # None when unknown

    def batches(self, columns: list[str], batch_rows: int) -> Iterator[tuple[str, int, pa.RecordBatch]]:
        """(file, first row index in the file, batch of only those columns, at most batch_rows rows); a
        source may also take rng (a numpy Generator) and visit its files or row groups in an order drawn
        from it."""


class Engine(Protocol):
    """Built as factory(run, **options); see streambp/engine.py."""

    def epoch(self, epoch: int, skip: int) -> Iterator[tuple[int, float, int, int]]:
        """(rows, loss, correct, steps) once per update of run.model.theta."""

    def close(self) -> None: ...


# --- the register callbacks the registry hooks receive ---------------------------------------------

RegisterOptimizer = Callable[[str, Callable[..., Optimizer]], None]
RegisterLogger = Callable[[str, Callable[..., Logger]], None]
RegisterSource = Callable[[str, Callable[..., Source], tuple[str, ...]], None]
RegisterEngine = Callable[[str, Callable[..., Engine]], None]
