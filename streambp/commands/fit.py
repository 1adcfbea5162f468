from typing import Annotated, Optional

import typer

from . import parse_int_list, parse_source_options
from ..config import DEFAULT_HIDDEN
from ..errors import StreambpError

NAME = "fit"


# The FitConfig setting each option feeds, where the names differ.
SETTING = {"logger": "loggers", "source_option": "source_options", "momentum": "optimizer_params",
           "nesterov": "optimizer_params", "weight_decay": "optimizer_params", "beta1": "optimizer_params",
           "beta2": "optimizer_params", "eps": "optimizer_params", "lr_step_size": "lr_schedule_params",
           "lr_gamma": "lr_schedule_params", "lr_min": "lr_schedule_params", "scheduler": "engine_options",
           "workers": "engine_options", "sync_every": "engine_options"}


def given(**options):
    """The options given (not None); the others keep the optimizer's or the schedule's defaults."""
    return {k: v for k, v in options.items() if v is not None}


def command(
    ctx: typer.Context,
    data: Annotated[Optional[str], typer.Argument(
        help="Parquet, CSV or Arrow IPC file, a directory of them, or a glob (or `data` in --config).")] = None,
    run_dir: Annotated[Optional[str], typer.Option(
        help="Checkpoints, config.toml and events.jsonl of the run (default: runs/<model>-<time> beside "
             "--out).")] = None,
    checkpoint_every: Annotated[str, typer.Option(
        help="Checkpoint every N steps (500), every so long (30s, 10m, 2h), or only at epoch ends (epoch); "
             "every epoch ends with one too.")] = "10m",
    keep_checkpoints: Annotated[int, typer.Option(help="Keep the newest K checkpoints.")] = 3,
    deterministic: Annotated[bool, typer.Option(
        "--deterministic", help="Fix the thread counts for the run (no tuning), so that a run killed at any "
                                "step and resumed ends bit-identical to an uninterrupted one.")] = False,
    resume: Annotated[Optional[str], typer.Option(
        help="Continue the run whose checkpoints are in this directory, with its settings (flags given "
             "override them, e.g. --epochs).")] = None,
    config: Annotated[Optional[str], typer.Option(
        help="TOML file of settings (FitConfig's names, e.g. the <model>.config.toml a fit writes); flags "
             "given on the command line override it.")] = None,
    label: Annotated[str, typer.Option(help="Label column: integer, string or dictionary-encoded.")] = "label",
    features: Annotated[Optional[str], typer.Option(
        help="Comma-separated feature columns, or one list column (default: every numeric column but the "
             "label).")] = None,
    hidden: Annotated[Optional[str], typer.Option(
        help=f"Hidden layer sizes, e.g. 256,128; 0 for none (default {','.join(map(str, DEFAULT_HIDDEN))}, or "
             "the --init model's).")] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the data (0 writes the initialised model).")] = 10,
    batch_size: Annotated[int, typer.Option(help="Rows per minibatch.")] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and shuffling.")] = 0,
    threads: Annotated[Optional[int], typer.Option(help="Cores for Numba, BLAS and Arrow (default: all).")] = None,
    val: Annotated[Optional[str], typer.Option(help="Validation data, evaluated after each epoch.")] = None,
    val_fraction: Annotated[float, typer.Option(
        help="Hold out this fraction of DATA's rows for validation, chosen by a hash of (file, row).")] = 0.0,
    early_stopping: Annotated[int, typer.Option(
        help="Stop after this many epochs without a lower validation loss and keep the best weights "
             "(needs --val or --val-fraction; 0: never).")] = 0,
    standardize: Annotated[bool, typer.Option(
        "--standardize", help="Scale each feature to mean 0 and variance 1 (a pre-pass; kept in the model).")] = False,
    on_bad_rows: Annotated[str, typer.Option(
        help="error: stop at a null, NaN or inf value; skip: drop such rows and count them.")] = "error",
    bad_rows_out: Annotated[Optional[str], typer.Option(
        help="With --on-bad-rows skip: write the dropped rows, with _file and _row, to this Parquet file.")] = None,
    class_weight: Annotated[Optional[str], typer.Option(
        help="'balanced', or one weight per class in class order (e.g. 1,5,1): weights of the cost.")] = None,
    init: Annotated[Optional[str], typer.Option(help="Start from this model's weights (warm start).")] = None,
    out: Annotated[str, typer.Option(help="Model file to write.")] = "model.npz",
    optimizer: Annotated[str, typer.Option(help="Optimizer name (see `streambp plugins --all`).")] = "sgd",
    momentum: Annotated[Optional[float], typer.Option(help="Momentum (sgd, rmsprop; default 0).")] = None,
    nesterov: Annotated[bool, typer.Option(
        "--nesterov", help="Nesterov momentum (sgd, with --momentum).")] = False,
    weight_decay: Annotated[Optional[float], typer.Option(
        help="Weight decay (default 0; adamw: decoupled, default 0.01).")] = None,
    beta1: Annotated[Optional[float], typer.Option(
        help="First-moment decay (adam, adamw; default 0.9).")] = None,
    beta2: Annotated[Optional[float], typer.Option(
        help="Second-moment decay (adam, adamw; default 0.999).")] = None,
    eps: Annotated[Optional[float], typer.Option(
        help="Denominator term (adam, adamw, rmsprop: default 1e-8; adagrad: 1e-10).")] = None,
    lr_schedule: Annotated[str, typer.Option(
        help="Learning-rate schedule: constant, step, exponential or cosine.")] = "constant",
    lr_step_size: Annotated[Optional[int], typer.Option(
        help="step schedule: epochs between decays (default 1).")] = None,
    lr_gamma: Annotated[Optional[float], typer.Option(
        help="Decay factor (step schedule: default 0.1 every --lr-step-size epochs; exponential: 0.9 every "
             "epoch).")] = None,
    lr_min: Annotated[Optional[float], typer.Option(
        help="cosine schedule: final learning rate (default 0).")] = None,
    warmup_steps: Annotated[int, typer.Option(
        help="Ramp the learning rate linearly up to the schedule's over this many steps.")] = 0,
    logger: Annotated[Optional[list[str]], typer.Option(help="Logger name; repeatable.")] = None,
    shuffle: Annotated[bool, typer.Option(help="Shuffle rows within a buffer each epoch.")] = True,
    buffer_rows: Annotated[int, typer.Option(help="Rows per shuffle/prefetch buffer.")] = 16384,
    source: Annotated[Optional[str], typer.Option(help="Data source name (default: by file extension).")] = None,
    source_option: Annotated[Optional[list[str]], typer.Option(
        help="KEY=VALUE for the source, repeatable (csv: delimiter, header, block_size).")] = None,
    engine: Annotated[str, typer.Option(
        help="Training engine: local, or one a plugin adds (e.g. dask from streambp-dask).")] = "local",
    scheduler: Annotated[Optional[str], typer.Option(
        help="Engine setting: the cluster's scheduler address (dask: tcp://HOST:PORT).")] = None,
    workers: Annotated[Optional[int], typer.Option(
        help="Engine setting: workers to use, or to start a local cluster with (dask).")] = None,
    sync_every: Annotated[Optional[int], typer.Option(
        help="Engine setting: average the workers' parameters every K steps (1: every step, the same as one "
             "large batch).")] = None,
):
    """Train a network on DATA and write it to --out."""
    from ..checkpoint import load_latest
    from ..config import merge, read_config
    from ..train import FitConfig, fit

    settings = dict(
        data=data, label=label, features=features.split(",") if features else None,
        hidden=None if hidden is None else parse_int_list(hidden, "--hidden"), epochs=epochs,
        batch_size=batch_size, lr=lr, seed=seed, threads=threads, val=val, val_fraction=val_fraction,
        early_stopping=early_stopping, standardize=standardize, class_weight=class_weight,
        on_bad_rows=on_bad_rows, bad_rows_out=bad_rows_out,
        init=init, out=out,
        optimizer=optimizer,
        optimizer_params=given(momentum=momentum, nesterov=nesterov or None, weight_decay=weight_decay,
                               beta1=beta1, beta2=beta2, eps=eps),
        lr_schedule=lr_schedule,
        lr_schedule_params=given(step_size=lr_step_size, gamma=lr_gamma, lr_min=lr_min),
        warmup_steps=warmup_steps, loggers=logger or ["console"], shuffle=shuffle, buffer_rows=buffer_rows,
        source=source, source_options=parse_source_options(source_option), run_dir=run_dir, resume=resume,
        checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints, deterministic=deterministic,
        engine=engine, engine_options=given(scheduler=scheduler, workers=workers, sync_every=sync_every))
    if config and resume:
        raise StreambpError("--resume continues a run with its own settings; give flags to change them, not "
                            "--config.")
    saved = load_latest(resume)[2]["config"] if resume else read_config(config) if config else None
    if saved is not None:
        # compared by name: recent Typer runs its own copy of click, with its own ParameterSource enum
        flags = {SETTING.get(p, p) for p in ctx.params
                 if getattr(ctx.get_parameter_source(p), "name", "") == "COMMANDLINE"}
        settings = merge(saved, settings, flags & set(settings))
        settings["resume"] = resume
    if not settings["data"]:
        raise StreambpError("Name the training data: streambp fit DATA, or `data` in a --config file.")
    fit(FitConfig(**settings))
