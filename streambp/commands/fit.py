"""`streambp fit`: the options, in help panels in the order a user reads them, and their FitConfig.

A --config file's or a --resume run's settings become the options' defaults (Click's default_map), so the
flags given on the command line win; dict settings (optimizer_params, ...) merge key by key. Only typer and
the standard library are imported here: `streambp --help` stays fast.
"""
from typing import Annotated, Optional

import typer

NAME = "fit"
DATA, NETWORK, OPTIMISATION, OUTPUT, ENGINE = "Data", "Network", "Optimisation", "Output and run directory", "Engine"

# Options that set one key of a dict setting: option -> (setting, key).
KEYED = {"momentum": ("optimizer_params", "momentum"), "nesterov": ("optimizer_params", "nesterov"),
         "weight_decay": ("optimizer_params", "weight_decay"), "beta1": ("optimizer_params", "beta1"),
         "beta2": ("optimizer_params", "beta2"), "eps": ("optimizer_params", "eps"),
         "lr_step_size": ("lr_schedule_params", "step_size"), "lr_gamma": ("lr_schedule_params", "gamma"),
         "lr_min": ("lr_schedule_params", "lr_min"), "scheduler": ("engine_options", "scheduler"),
         "workers": ("engine_options", "workers"), "sync_every": ("engine_options", "sync_every")}
DICTS = ("optimizer_params", "lr_schedule_params", "engine_options", "source_options")
SETTINGS, ERROR = "streambp.settings", "streambp.error"  # keys of ctx.meta


def option_defaults(settings):
    """A run's settings (FitConfig's names) as the fit options' defaults (their parameter names)."""
    defaults = {("logger" if k == "loggers" else k): v for k, v in settings.items() if not isinstance(v, dict)}
    for option, (setting, key) in KEYED.items():
        if key in settings.get(setting, {}):
            defaults[option] = settings[setting][key]
    return defaults


def use_settings(ctx: typer.Context, param: typer.CallbackParam, value: Optional[str]):
    """--config FILE / --resume DIR (eager): its settings become the defaults of the other options. An error
    is kept for the command, which reports it as the user error it is."""
    if value is None:
        return value
    from ..errors import StreambpError

    try:
        if param.name == "config":
            from ..config import read_config

            settings = read_config(value)
        else:
            from ..checkpoint import load_latest

            settings = load_latest(value, say=None)[2]["config"]
    except StreambpError as e:
        ctx.meta[ERROR] = e
        return value
    settings = {k: v for k, v in settings.items() if k != "resume"}  # a run file does not resume
    ctx.meta[SETTINGS] = settings
    ctx.default_map = {**(ctx.default_map or {}), **option_defaults(settings)}
    return value


def as_given(value):
    """The text given on the command line, or the default_map's value (a list from a config file)."""
    return value


def names(value, option):
    from . import parse_names

    return parse_names(value, option) if isinstance(value, str) else list(value or [])


def given(**options):
    """The options given (not None); the others keep the optimizer's or the schedule's defaults."""
    return {k: v for k, v in options.items() if v is not None}


COLUMNS = dict(parser=as_given, metavar="A,B", rich_help_panel=DATA)


def command(
    ctx: typer.Context,
    # ------------------------------------------------------------------------------------------- Data
    data: Annotated[Optional[str], typer.Argument(metavar="DATA", hidden=True)] = None,  # the docstring says what
    label: Annotated[str, typer.Option(
        metavar="COLUMN", rich_help_panel=DATA,
        help="Label column: integer, string, boolean, floating-point or dictionary-encoded.")] = "label",
    features: Annotated[Optional[object], typer.Option(
        **COLUMNS, help="Comma-separated feature columns, or one list column (default: every usable column but "
                        "the label).")] = None,
    ignore: Annotated[Optional[object], typer.Option(**COLUMNS, help="Columns never used as features.")] = None,
    categorical: Annotated[Optional[object], typer.Option(
        **COLUMNS, help="Columns read as categories (e.g. integer codes); string, dictionary and boolean columns "
                        "are by default.")] = None,
    numeric: Annotated[Optional[object], typer.Option(
        **COLUMNS, help="Columns read as numbers whatever their type.")] = None,
    max_categories: Annotated[int, typer.Option(
        metavar="N", rich_help_panel=DATA,
        help="Keep at most N values of a categorical column; the rarer share an 'other' slot.")] = 1000,
    min_frequency: Annotated[int, typer.Option(
        metavar="N", rich_help_panel=DATA,
        help="Values of a categorical column seen fewer than N times share the 'other' slot.")] = 1,
    hash_buckets: Annotated[int, typer.Option(
        metavar="N", rich_help_panel=DATA,
        help="Hash categorical values into N slots instead of keeping a vocabulary (0: off).")] = 0,
    standardize: Annotated[bool, typer.Option(
        "--standardize/--no-standardize", metavar="", rich_help_panel=DATA,
        help="Scale each numeric feature to mean 0 and variance 1 (a pre-pass; kept in the model; with --init, "
             "the model's own scaling is kept).")] = True,
    val: Annotated[Optional[str], typer.Option(
        metavar="DATA", rich_help_panel=DATA, help="Validation data, evaluated after each epoch.")] = None,
    val_fraction: Annotated[float, typer.Option(
        metavar="F", rich_help_panel=DATA,
        help="Hold out this fraction of DATA's rows for validation, chosen by a hash of (file, row).")] = 0.0,
    source: Annotated[Optional[str], typer.Option(
        metavar="NAME", rich_help_panel=DATA, help="Data source name (default: by file extension).")] = None,
    source_option: Annotated[Optional[list[str]], typer.Option(
        metavar="KEY=VALUE", rich_help_panel=DATA,
        help="An option of the source, repeatable (csv: delimiter, header, block_size).")] = None,
    on_bad_rows: Annotated[str, typer.Option(
        metavar="error|skip", rich_help_panel=DATA,
        help="What cannot be filled (an inf value, a null label): error stops with the file, column and row; "
             "skip drops such rows and counts them. Nulls and NaN in numbers are filled.")] = "error",
    bad_rows_out: Annotated[Optional[str], typer.Option(
        metavar="PATH", rich_help_panel=DATA,
        help="With --on-bad-rows skip: write the dropped rows, with _file and _row, to this Parquet file.")] = None,
    # ------------------------------------------------------------------------------------------- Network
    hidden: Annotated[Optional[object], typer.Option(
        parser=as_given, metavar="N,N", rich_help_panel=NETWORK,
        help="Hidden layer sizes, e.g. 256,128; 0 for none (default 128, or the --init model's).")] = None,
    init: Annotated[Optional[str], typer.Option(
        metavar="MODEL", rich_help_panel=NETWORK, help="Start from this model's weights (warm start).")] = None,
    # ------------------------------------------------------------------------------------------- Optimisation
    epochs: Annotated[Optional[int], typer.Option(
        metavar="N", rich_help_panel=OPTIMISATION,
        help="Passes over the data (0 writes the initialised model). Default: about two million rows' worth, "
             "3 to 100 passes, stopping sooner once the training loss stops improving.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        metavar="N", rich_help_panel=OPTIMISATION,
        help="Rows per minibatch. Default: 32, doubled for every doubling of the training rows past 128,000 "
             "(about 2,000 updates per epoch), at most 512.")] = None,
    lr: Annotated[float, typer.Option(
        metavar="RATE", rich_help_panel=OPTIMISATION,
        help="Learning rate (the default suits adam; plain SGD: --optimizer sgd --lr 0.1).")] = 0.01,
    optimizer: Annotated[str, typer.Option(
        metavar="NAME", rich_help_panel=OPTIMISATION,
        help="adam, sgd, adamw, adagrad or rmsprop, or one a plugin adds (`streambp plugins`).")] = "adam",
    momentum: Annotated[Optional[float], typer.Option(
        metavar="M", rich_help_panel=OPTIMISATION, help="Momentum (sgd, rmsprop; default 0).")] = None,
    nesterov: Annotated[bool, typer.Option(
        "--nesterov", metavar="", rich_help_panel=OPTIMISATION,
        help="Nesterov momentum (sgd, with --momentum).")] = False,
    weight_decay: Annotated[Optional[float], typer.Option(
        metavar="W", rich_help_panel=OPTIMISATION,
        help="Weight decay (default 0; adamw: decoupled, default 0.01).")] = None,
    beta1: Annotated[Optional[float], typer.Option(
        metavar="B", rich_help_panel=OPTIMISATION, help="First-moment decay (adam, adamw; default 0.9).")] = None,
    beta2: Annotated[Optional[float], typer.Option(
        metavar="B", rich_help_panel=OPTIMISATION, help="Second-moment decay (adam, adamw; default 0.999).")] = None,
    eps: Annotated[Optional[float], typer.Option(
        metavar="E", rich_help_panel=OPTIMISATION,
        help="Denominator term (adam, adamw, rmsprop: default 1e-8; adagrad: 1e-10).")] = None,
    lr_schedule: Annotated[str, typer.Option(
        metavar="NAME", rich_help_panel=OPTIMISATION,
        help="Learning-rate schedule: cosine (annealed to --lr-min over the run), constant, step or "
             "exponential.")] = "cosine",
    lr_step_size: Annotated[Optional[int], typer.Option(
        metavar="N", rich_help_panel=OPTIMISATION, help="step schedule: epochs between decays (default 1).")] = None,
    lr_gamma: Annotated[Optional[float], typer.Option(
        metavar="G", rich_help_panel=OPTIMISATION,
        help="Decay factor (step schedule: default 0.1 every --lr-step-size epochs; exponential: 0.9 every "
             "epoch).")] = None,
    lr_min: Annotated[Optional[float], typer.Option(
        metavar="RATE", rich_help_panel=OPTIMISATION, help="cosine schedule: final learning rate (default 0).")] = None,
    warmup_steps: Annotated[int, typer.Option(
        metavar="N", rich_help_panel=OPTIMISATION,
        help="Ramp the learning rate linearly up to the schedule's over this many steps.")] = 0,
    class_weight: Annotated[Optional[object], typer.Option(
        parser=as_given, metavar="balanced|W,W", rich_help_panel=OPTIMISATION,
        help="'balanced', or one weight per class in class order (e.g. 1,5,1): weights of the cost.")] = None,
    early_stopping: Annotated[int, typer.Option(
        metavar="N", rich_help_panel=OPTIMISATION,
        help="Stop after this many epochs without a lower validation loss and keep the best weights "
             "(needs --val or --val-fraction; 0: never).")] = 0,
    seed: Annotated[int, typer.Option(
        metavar="N", rich_help_panel=OPTIMISATION, help="Seed for initialisation and shuffling (0 or more).")] = 0,
    shuffle: Annotated[bool, typer.Option(
        "--shuffle/--no-shuffle", metavar="", rich_help_panel=OPTIMISATION,
        help="Shuffle rows within a buffer each epoch.")] = True,
    buffer_rows: Annotated[int, typer.Option(
        metavar="N", rich_help_panel=OPTIMISATION, help="Rows per shuffle/prefetch buffer.")] = 16384,
    cache: Annotated[str, typer.Option(
        metavar="auto|none|DIR", rich_help_panel=OPTIMISATION,
        help="Keep the decoded rows of the first epoch on disk and read later epochs (and later runs on the "
             "same data and settings) from there: auto (in $STREAMBP_CACHE_DIR or ~/.cache/streambp, when they "
             "take at most 10% of the free space), none, or a directory.")] = "auto",
    # ------------------------------------------------------------------------------------------- Output
    out: Annotated[str, typer.Option(
        metavar="PATH", rich_help_panel=OUTPUT, help="Model file to write.")] = "model.npz",
    run_dir: Annotated[Optional[str], typer.Option(
        metavar="DIR", rich_help_panel=OUTPUT,
        help="Checkpoints, config.toml and events.jsonl of the run (default: runs/<model>-<time> beside "
             "--out); none: no run directory, so no checkpoints to resume from.")] = None,
    checkpoint_every: Annotated[str, typer.Option(
        metavar="N|TIME|epoch", rich_help_panel=OUTPUT,
        help="Checkpoint every N steps (500), every so long (30s, 10m, 2h), or only at epoch ends (epoch); "
             "every epoch ends with one too.")] = "10m",
    keep_checkpoints: Annotated[int, typer.Option(
        metavar="K", rich_help_panel=OUTPUT, help="Keep the newest K checkpoints.")] = 3,
    resume: Annotated[Optional[str], typer.Option(
        metavar="DIR", rich_help_panel=OUTPUT, is_eager=True, callback=use_settings,
        help="Continue the run whose checkpoints are in this directory, with its settings (flags given "
             "override them, e.g. --epochs).")] = None,
    config: Annotated[Optional[str], typer.Option(
        metavar="FILE", rich_help_panel=OUTPUT, is_eager=True, callback=use_settings,
        help="TOML file of settings (FitConfig's names, e.g. the <model>.config.toml a fit writes); flags "
             "given on the command line override it.")] = None,
    logger: Annotated[list[str], typer.Option(
        metavar="NAME", rich_help_panel=OUTPUT,
        help="Where progress goes, repeatable: console (the terminal), jsonl (JSON lines), csv (a row per epoch); "
             "plugins add more (`streambp plugins`).")] = ["console"],  # noqa: B006 (Typer's default)
    deterministic: Annotated[bool, typer.Option(
        "--deterministic", metavar="", rich_help_panel=OUTPUT,
        help="Fix the thread counts for the run (no tuning), so that a run killed at any step and resumed ends "
             "bit-identical to an uninterrupted one.")] = False,
    # ------------------------------------------------------------------------------------------- Engine
    engine: Annotated[str, typer.Option(
        metavar="NAME", rich_help_panel=ENGINE,
        help="Training engine: local, or one a plugin adds (e.g. dask from streambp-dask).")] = "local",
    threads: Annotated[Optional[int], typer.Option(
        metavar="N", rich_help_panel=ENGINE, help="Cores for Numba, BLAS and Arrow (default: all).")] = None,
    scheduler: Annotated[Optional[str], typer.Option(
        metavar="ADDRESS", rich_help_panel=ENGINE,
        help="Engine setting: the cluster's scheduler address (dask: tcp://HOST:PORT).")] = None,
    workers: Annotated[Optional[int], typer.Option(
        metavar="N", rich_help_panel=ENGINE,
        help="Engine setting: workers to use, or to start a local cluster with (dask).")] = None,
    sync_every: Annotated[Optional[int], typer.Option(
        metavar="K", rich_help_panel=ENGINE,
        help="Engine setting: average the workers' parameters every K steps (1: every step, the same as one "
             "large batch).")] = None,
):
    """Train a network on DATA and write it to --out.

    DATA is a Parquet, CSV or Arrow IPC file, a directory of them, or a glob (or `data` in a --config file).
    """
    from . import parse_int_list, parse_source_options
    from ..errors import StreambpError
    from ..train import FitConfig, fit

    if ERROR in ctx.meta:
        raise ctx.meta[ERROR]
    if config and resume:
        raise StreambpError("--resume continues a run with its own settings; give flags to change them, not "
                            "--config.")
    options = dict(
        data=data, label=label, features=None if features is None else names(features, "--features"),
        ignore=names(ignore, "--ignore"), categorical=names(categorical, "--categorical"),
        numeric=names(numeric, "--numeric"), max_categories=max_categories, min_frequency=min_frequency,
        hash_buckets=hash_buckets, standardize=standardize, val=val, val_fraction=val_fraction, source=source,
        source_options=parse_source_options(source_option), on_bad_rows=on_bad_rows, bad_rows_out=bad_rows_out,
        hidden=parse_int_list(hidden, "--hidden") if isinstance(hidden, str) else hidden, init=init,
        epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
        optimizer_params=given(momentum=momentum, nesterov=nesterov or None, weight_decay=weight_decay,
                               beta1=beta1, beta2=beta2, eps=eps),
        lr_schedule=lr_schedule, lr_schedule_params=given(step_size=lr_step_size, gamma=lr_gamma, lr_min=lr_min),
        warmup_steps=warmup_steps, class_weight=class_weight, early_stopping=early_stopping, seed=seed,
        shuffle=shuffle, buffer_rows=buffer_rows, cache=cache, out=out, run_dir=run_dir,
        checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints, resume=resume, loggers=list(logger),
        deterministic=deterministic,
        engine=engine, threads=threads, engine_options=given(scheduler=scheduler, workers=workers,
                                                             sync_every=sync_every))
    base = ctx.meta.get(SETTINGS, {})
    for key in DICTS:  # the run's keys that no flag sets are kept
        options[key] = {**base.get(key, {}), **options[key]}
    settings = {**base, **options}
    if not settings["data"]:
        raise StreambpError("Name the training data: streambp fit DATA, or `data` in a --config file.")
    from ..atomic import scope

    with scope() as guard:  # the --config file, the checkpoints and the data are inputs of everything fit writes
        guard.protect([config], "the --config file")
        if config and getattr(ctx.get_parameter_source("out"), "name", "") != "COMMANDLINE":
            check_rerun_out(config, settings["out"])
        fit(FitConfig(**settings))


def check_rerun_out(config, out):
    """A --config run whose `out` comes from the file must not replace the model of the run that wrote it."""
    import os

    from ..errors import StreambpError

    if out and os.path.exists(out):
        raise StreambpError(f"--config {config} sets out = {out!r}, which exists (the model of an earlier run); "
                            f"this run would replace it. Give --out to choose where this run writes its model.")
