"""Every hook a streambp plugin can implement, grouped by phase.

Each docstring follows one template: what the hook is for, its parameters, what it returns, and
whether it is firstresult. The annotations name the types of streambp/interfaces.py (the info dicts and
what registered factories build). Implement a hook with the `streambp.hookimpl` marker; see
docs/plugins.md.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from .interfaces import (EpochEndInfo, FitEndInfo, FitStartInfo, RegisterEngine, RegisterLogger, RegisterOptimizer,
                         RegisterSource, StepEndInfo)

if TYPE_CHECKING:
    import typer

hookspec = pluggy.HookspecMarker("streambp")


# --- Registration: called once when the plugin manager is first used ------------------------------

@hookspec
def register_optimizers(register: RegisterOptimizer) -> None:
    """Add optimizers selectable with ``streambp fit --optimizer NAME``.

    Parameters:
        register: ``register(name, factory)``. ``factory(theta, **hyper_parameters)`` builds an
            optimizer for the flat parameter buffer theta [P]; the optimizer has
            ``step(theta [P], dtheta [P], lr)`` (updates theta in place), ``state_dict() -> dict``
            and ``load_state_dict(dict)``.
    Returns: nothing. Not firstresult: every plugin may register names; a duplicate name is an error.
    """


@hookspec
def register_loggers(register: RegisterLogger) -> None:
    """Add loggers selectable with ``streambp fit --logger NAME``.

    Parameters:
        register: ``register(name, factory)``. ``factory(**options)`` builds a logger (``streambp fit``
            calls it with no arguments, so every option needs a default) with the methods
            ``fit_start(info)``, ``step_end(info)``, ``epoch_end(info)`` and ``fit_end(info)``
            (streambp.interfaces.Logger), each optional; info is the dict the hook of the same name
            receives (below).
    Returns: nothing. Not firstresult: every plugin may register names; a duplicate name is an error.
    """


@hookspec
def register_sources(register: RegisterSource) -> None:
    """Add data sources, chosen by file extension (or ``--source NAME``).

    Parameters:
        register: ``register(name, factory, extensions)``. ``factory(path, **options)`` opens a
            dataset (a file, a directory or a glob; every option needs a default) and returns an object
            with ``files`` (list of str), ``schema`` (pyarrow.Schema, the first file's),
            ``file_schemas`` (list of pyarrow.Schema, one per file), ``num_rows`` (int or None when
            unknown) and ``batches(columns, batch_rows)`` yielding
            ``(file, first_row_index_in_file, pyarrow.RecordBatch)`` with only those columns, in that
            order, and at most batch_rows rows each; a source may also accept ``rng`` (a
            numpy Generator, passed when shuffling) and visit its files or row groups in an order drawn
            from it. ``extensions`` is a tuple such as
            ``(".parquet", ".pq")``, matched case-insensitively against file names.
    Returns: nothing. Not firstresult: every plugin may register names; a duplicate name is an error.
    """


@hookspec
def register_engines(register: RegisterEngine) -> None:
    """Add training engines selectable with ``streambp fit --engine NAME`` (the default is ``local``).

    Parameters:
        register: ``register(name, factory)``. ``factory(run, **options)`` builds an engine for a
            ``streambp.engine.Run`` (the model, optimizer, data and settings of one fit); options are the
            engine settings given to fit (``--scheduler``, ``--workers``, ``--sync-every``), only those
            given. The engine has ``epoch(epoch, skip)`` yielding ``(rows, loss, correct, steps)`` once per
            update of ``run.model.theta`` and ``close()``; see streambp/engine.py for the contract.
    Returns: nothing. Not firstresult: every plugin may register names; a duplicate name is an error.
    """


@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add subcommands to the ``streambp`` command line.

    Parameters:
        app: the ``typer.Typer`` application; add commands with ``@app.command()``.
    Returns: nothing. Not firstresult.
    """


# --- Lifecycle: called by `streambp fit` (streambp.train.fit) while it trains -----------------------
#
# info is the same dict the loggers receive: plain Python values (int, float, str, lists, dicts), to be
# treated as read-only. These hooks run on the training thread: keep them quick (write a line, send a
# metric), since the time they take is time not spent training.

@hookspec
def fit_start(info: FitStartInfo) -> None:
    """Training is about to start: the data is scanned, the model built, no step taken yet.

    Parameters:
        info: dict with ``sizes`` (list of int: layer widths, input first, classes last), ``rows`` (int:
            training rows per epoch), ``epochs`` (int), ``classes`` (list: the class labels, sorted),
            ``threads`` (int), ``files`` (int: training files), ``out`` (str or None: the model file)
            ``config`` (dict: every setting of the fit), ``run_dir`` (str or None) and ``resumed`` (bool);
            further keys may be added.
    Returns: nothing. Not firstresult: every plugin implementing it is called.
    """


@hookspec
def step_end(info: StepEndInfo) -> None:
    """Progress within an epoch, at the loggers' cadence: after a step, at most every 16 steps and
    0.2 s (a few times a second), never for every minibatch, and after the epoch's last step.

    Parameters:
        info: dict with ``epoch`` (int, from 1), ``epochs`` (int), ``step`` (int: optimizer steps so far, all
            epochs), ``rows`` (int: rows so far this epoch), ``rows_total`` (int: rows per epoch),
            ``loss`` (float: mean training loss so far this epoch), ``accuracy`` (float: training accuracy so
            far this epoch) and ``rows_per_s`` (float).
    Returns: nothing. Not firstresult.
    """


@hookspec
def epoch_end(info: EpochEndInfo) -> None:
    """An epoch has finished (and the validation data, if any, has been evaluated).

    Parameters:
        info: dict with ``epoch`` (int, from 1), ``epochs`` (int), ``step`` (int: optimizer steps so far),
            ``train_loss`` (float: mean cross-entropy over the epoch), ``train_accuracy`` (float),
            ``seconds`` (float: the epoch's duration), ``rows_per_s`` (float) and, with ``--val``,
            ``val_loss`` (float), ``val_accuracy`` (float in [0, 1]) and ``val_confusion`` (K x K list of
            int: rows true, columns predicted class).
    Returns: nothing. Not firstresult.
    """


@hookspec
def fit_end(info: FitEndInfo) -> None:
    """Training has finished and the model is written (not called when training fails).

    Parameters:
        info: dict with ``out`` (str or None: the model file written), ``seconds`` (float: the whole
            fit), ``history`` (list of dict: the epoch_end info of every epoch), ``bad_rows`` (int: rows
            skipped with --on-bad-rows skip) and ``run_dir`` (str or None).
    Returns: nothing. Not firstresult.
    """
