"""The training loop: stream chunks, run minibatches through backprop and the optimizer, log, save."""
import inspect
import itertools
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import __version__, threads
from .atomic import check_writable
from .badrows import BadRows
from .checkpoint import latest, load_latest, save_checkpoint
from .config import DEFAULT_HIDDEN, config_path, write_config
from .default_plugins.loggers import JsonlLogger
from .engine import EngineFailed, Run
from .errors import StreambpError
from .evaluate import evaluate, model_spec
from .model import Model, load
from .registry import engines, loggers, open_source, optimizers
from .schedules import make_schedule
from .stream import LabelEncoder, LabelInfo, resolve_features, scan_labels, scan_moments



@dataclass
class FitConfig:
    """Everything `streambp fit` needs; the CLI builds one from its options."""

    data: str
    label: str = "label"
    features: list | None = None
    hidden: list | None = None  # None: DEFAULT_HIDDEN, or the --init model's; [] is softmax regression
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.1
    seed: int = 0
    threads: int | None = None
    val: str | None = None
    val_fraction: float = 0.0  # hold out this fraction of the rows of data, by a hash of (file, row)
    standardize: bool = False
    class_weight: str | list | None = None  # "balanced", or one weight per class in class order
    run_dir: str | None = None  # checkpoints, config.toml and events.jsonl; default runs/<model>-<time>
    resume: str | None = None  # continue from the newest checkpoint in this run directory
    checkpoint_every: str = "10m"  # also: N steps, Ns/Nm/Nh, or "epoch"; a checkpoint ends every epoch too
    keep_checkpoints: int = 3
    deterministic: bool = False  # fixed thread counts, so that a resumed run is bit-identical
    early_stopping: int = 0  # stop after this many epochs without a lower validation loss (0: never)
    on_bad_rows: str = "error"  # or "skip": drop rows with null, NaN or inf values, and count them
    bad_rows_out: str | None = None  # with "skip": write the dropped rows here (Parquet)
    init: str | None = None
    out: str | None = "model.npz"
    optimizer: str = "sgd"
    optimizer_params: dict = field(default_factory=dict)  # hyper-parameters, e.g. {"momentum": 0.9}
    lr_schedule: str = "constant"  # see streambp/schedules.py
    lr_schedule_params: dict = field(default_factory=dict)  # e.g. {"gamma": 0.5}
    warmup_steps: int = 0
    loggers: list = field(default_factory=lambda: ["console"])
    shuffle: bool = True
    buffer_rows: int = 16384
    prefetch: int = 1
    source: str | None = None
    source_options: dict = field(default_factory=dict)  # given to the source's factory, e.g. {"delimiter": ";"}
    dtype: str = "float32"
    engine: str = "local"
    engine_options: dict = field(default_factory=dict)  # e.g. {"workers": 2, "sync_every": 1}


def check_config(c):
    for name, low in (("epochs", 0), ("batch_size", 1), ("buffer_rows", 1), ("prefetch", 0), ("keep_checkpoints", 1)):
        if getattr(c, name) < low:
            raise StreambpError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(c, name)}.")
    if c.threads is not None and c.threads < 1:
        raise StreambpError(f"--threads must be at least 1, got {c.threads}.")
    if not c.lr > 0:
        raise StreambpError(f"--lr must be positive, got {c.lr}.")
    if c.on_bad_rows not in ("error", "skip"):
        raise StreambpError(f"--on-bad-rows takes error or skip, got {c.on_bad_rows!r}.")
    if c.bad_rows_out and c.on_bad_rows != "skip":
        raise StreambpError("--bad-rows-out needs --on-bad-rows skip.")
    if c.early_stopping < 0 or (c.early_stopping and not (c.val or c.val_fraction)):
        raise StreambpError("--early-stopping takes a positive patience and needs --val or --val-fraction.")
    if not 0 <= c.val_fraction < 1:
        raise StreambpError(f"--val-fraction must be in [0, 1), got {c.val_fraction}.")
    if c.val_fraction and c.val:
        raise StreambpError("Give either --val or --val-fraction, not both.")
    if c.hidden is not None and any(h < 1 for h in c.hidden):
        raise StreambpError(f"--hidden sizes must be positive (or 0 alone, for no hidden layer), got {c.hidden}.")


def build_model(c, source):
    """A fresh Glorot-initialised model, or the --init model after checking it fits this data."""
    if c.init:
        model = load(c.init)
        if c.hidden is not None and list(c.hidden) != model.hidden:
            raise StreambpError(f"--hidden {c.hidden} differs from the --init model {c.init}, which has hidden "
                                f"layers {model.hidden}.")
        model_spec(model, source)
        labels = scan_labels(source, c.label, c.on_bad_rows == "skip")
        extra = [v for v in labels.classes if v not in model.classes]
        if extra:
            raise StreambpError(f"Labels {extra[:5]} in {source.files[0]} are not classes of the --init model "
                                f"{c.init} ({model.classes}).")
        if c.standardize and model.mean is None:
            raise StreambpError(f"--standardize: the --init model {c.init} was trained without it; its weights "
                                "expect unscaled features.")
        return model, labels
    spec = resolve_features(source, c.label, c.features)
    labels = scan_labels(source, c.label, c.on_bad_rows == "skip")
    hidden = list(DEFAULT_HIDDEN if c.hidden is None else c.hidden)
    sizes = [spec.width, *hidden, len(labels.classes)]
    scaler = scan_moments(source, spec, np.dtype(c.dtype), bad_rows=skipping(c)) if c.standardize else (None, None)
    model = Model.initialise(sizes, labels.classes, spec.features, seed=c.seed, dtype=np.dtype(c.dtype),
                             label_type=labels.label_type, input_column=spec.input_column, mean=scaler[0],
                             inv_std=scaler[1])
    return model, labels


class Interrupted(StreambpError):
    """Ctrl-C or SIGTERM: the step finished, a checkpoint was written; exit code 130."""

    exit_code = 130


class Interrupt:
    """Turns the first SIGINT or SIGTERM into a request that the loop honours after the current step; a
    second one interrupts at once (the last complete checkpoint stays valid: they are written atomically)."""

    def __init__(self):
        self.requested = False
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class EarlyStopping:
    """Tracks the validation loss; says stop after `patience` epochs without a new lowest one, and
    restores the parameters of the best epoch."""

    def __init__(self, patience, theta):
        self.patience = patience
        self.best = np.inf
        self.best_epoch = 0
        self.best_theta = theta.copy()

    def update(self, epoch, val_loss, theta):
        if val_loss < self.best:
            self.best, self.best_epoch = val_loss, epoch
            self.best_theta[:] = theta
            return False
        return epoch - self.best_epoch >= self.patience

    def restore(self, theta):
        theta[:] = self.best_theta


def skipping(c, out=None):
    """A BadRows collector when bad rows are skipped (writing to `out`), else None (they are errors)."""
    return BadRows(out) if c.on_bad_rows == "skip" else None


def class_weights(c, model, labels):
    """Per-class weights of the cost in the model's class order, or None."""
    if c.class_weight is None:
        return None
    K = len(model.classes)
    if c.class_weight == "balanced":
        counts = np.zeros(K)
        for v, n in zip(labels.classes, labels.counts):
            counts[model.classes.index(v)] = n
        return np.where(counts > 0, labels.rows / (K * np.maximum(counts, 1)), 0.0)
    try:
        w = np.array([float(v) for v in (c.class_weight.split(",") if isinstance(c.class_weight, str)
                                         else c.class_weight)])
    except ValueError:
        w = np.zeros(0)
    if w.shape != (K,) or not (np.all(np.isfinite(w)) and np.all(w >= 0) and w.sum() > 0):
        raise StreambpError(f"--class-weight takes 'balanced' or {K} non-negative numbers, one per class in the "
                            f"order {model.classes}; got {c.class_weight!r}.")
    return w


class Diverged(StreambpError):
    """A NaN or inf loss or parameter: training stopped, the last good checkpoint kept; exit code 3."""

    exit_code = 3


def parse_every(text):
    """--checkpoint-every: 'epoch' -> (0, 0.0); '500' -> 500 steps; '30s', '10m', '2h' -> seconds."""
    text = str(text).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text == "epoch":
            return 0, 0.0
        if text[-1:] in units:
            value = float(text[:-1]) * units[text[-1]]
            if value > 0:
                return 0, value
        elif int(text) > 0:
            return int(text), 0.0
    except ValueError:
        pass
    raise StreambpError(f"--checkpoint-every takes a number of steps (500), a time (30s, 10m, 2h) or 'epoch'; "
                        f"got {text!r}.")


def default_run_dir(c):
    """runs/<model name>-<time> beside the model file (or in the current directory)."""
    name = os.path.splitext(os.path.basename(c.out or "model"))[0]
    return os.path.join(os.path.dirname(c.out or ""), "runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def prepare(c, n_threads):
    """The Run for c (a fresh model, or the --resume checkpoint's) and the resumed checkpoint state or None."""
    source = open_source(c.data, c.source, **c.source_options)
    resumed = None
    if c.resume:
        model, opt_state, resumed = load_latest(c.resume)
        labels = LabelInfo(**resumed["labels"])
    else:
        model, labels = build_model(c, source)
    spec = model_spec(model, source)
    optimizer = optimizers.get(c.optimizer)[0](model.theta, **c.optimizer_params)
    if resumed:
        optimizer.load_state_dict(opt_state)
    if resumed and resumed.get("done"):
        check_same_stream(c, resumed["config"])
    run = Run(c, model, optimizer, source, spec, LabelEncoder(c.label, model.classes, model.label_type), labels,
              class_weights(c, model, labels), (c.val_fraction, False) if c.val_fraction else None,
              skipping(c, c.bad_rows_out), n_threads, resumed["steps"] if resumed else 0)
    if run.bad_rows is not None and resumed:
        run.bad_rows.recording = False  # rows already read before the resume were recorded then
    return run, resumed


# Settings that decide which rows the n-th update of an epoch uses: a mid-epoch resume replays with them.
STREAM_SETTINGS = ("data", "batch_size", "buffer_rows", "shuffle", "seed", "val_fraction", "on_bad_rows", "engine",
                   "engine_options")


def check_same_stream(c, saved):
    def value(config, k):  # where the cluster's scheduler listens does not change the stream
        v = config.get(k) if isinstance(config, dict) else getattr(config, k)
        return {o: x for o, x in v.items() if o != "scheduler"} if k == "engine_options" else v

    changed = [k for k in STREAM_SETTINGS if k in saved and value(saved, k) != value(c, k)]
    if changed:
        raise StreambpError(f"The checkpoint in {c.resume} was written mid-epoch; resuming it with a different "
                            f"{', '.join(changed)} ({', '.join(f'{k}={saved[k]!r}' for k in changed)} in the run) "
                            "would not continue the same stream of rows. Resume with the run's own settings for "
                            "these, or change them at an epoch end.")


def make_engine(run):
    c = run.config
    factory = engines.get(c.engine)[0]
    try:
        inspect.signature(factory).bind(run, **c.engine_options)
    except TypeError as e:
        raise StreambpError(f"The engine {c.engine!r} does not take the settings "
                            f"{', '.join(sorted(c.engine_options))} ({e}).") from None
    return factory(run, **c.engine_options)


def make_run_dir(c, resumed):
    """The run directory: --resume's, --run-dir (refused if it holds another run's checkpoints), or a new
    runs/<model>-<time>[-N] beside the model; None without a model file or --run-dir."""
    if resumed:
        return c.resume
    if c.run_dir:
        if latest(c.run_dir):
            raise StreambpError(f"--run-dir {c.run_dir} holds the checkpoints of another run; continue it with "
                                f"--resume {c.run_dir}, or choose another directory.")
        os.makedirs(c.run_dir, exist_ok=True)
        return c.run_dir
    if not c.out:
        return None
    base = default_run_dir(c)
    for n in itertools.count(1):
        path = base if n == 1 else f"{base}-{n}"
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue


def engine_items(engine, epoch, skip, checkpoint):
    """engine.epoch(epoch, skip); an EngineFailed is re-raised after checkpoint() saved the last position."""
    try:
        yield from engine.epoch(epoch, skip)
    except EngineFailed as e:
        path = checkpoint()  # of the last update yielded
        raise EngineFailed(f"{e} Wrote {path}; resume with: streambp fit --resume {os.path.dirname(path)}") from None


def fit(c: FitConfig):
    """Train as configured; write the model to c.out (atomically) and return it."""
    check_config(c)
    every = parse_every(c.checkpoint_every)
    if c.out:
        check_writable(c.out)
    n_threads = threads.configure(c.threads)
    if c.deterministic:
        c.threads = n_threads  # a resumed run must use the same count
    run, resumed = prepare(c, n_threads)
    engine = make_engine(run)
    try:
        return train(c, run, resumed, engine, every)
    finally:
        engine.close()


def train(c, run, resumed, engine, every):
    """fit()'s loop over epochs and the engine's updates: logging, checkpoints, validation, the model file.
    every = (steps, seconds) between mid-epoch checkpoints, from parse_every."""
    every_steps, every_seconds = every
    model, labels = run.model, run.labels
    steps_per_epoch = max(1, -(-labels.rows // getattr(engine, "rows_per_step", c.batch_size)))
    run.lr_at = make_schedule(c.lr_schedule, c.lr, c.epochs * steps_per_epoch, steps_per_epoch, c.warmup_steps,
                              **c.lr_schedule_params)
    run_dir = make_run_dir(c, resumed)
    val_source = run.source if c.val_fraction else open_source(c.val, c.source, **c.source_options) if c.val else None
    if c.val:
        model_spec(model, val_source)
    logs = [loggers.get(name)[0]() for name in c.loggers]
    if run_dir:
        write_config(c, os.path.join(run_dir, "config.toml"))
        logs.append(JsonlLogger(os.path.join(run_dir, "events.jsonl"), append=bool(resumed)))
    history = resumed["history"] if resumed else []
    # a checkpoint written mid-epoch resumes that epoch after its first `done` updates
    start = resumed["epoch"] + (0 if resumed.get("done") else 1) if resumed else 1
    emit(logs, "fit_start", {"sizes": model.sizes, "rows": labels.rows, "epochs": c.epochs, "out": c.out,
                             "config": asdict(c), "classes": model.classes, "threads": run.threads,
                             "files": len(run.source.files), "run_dir": run_dir, "resumed": bool(resumed)})
    t_fit = time.perf_counter()
    stopper = EarlyStopping(c.early_stopping, model.theta) if c.early_stopping else None
    if resumed and stopper:
        stopper.best, stopper.best_epoch = resumed["stopper"]
        stopper.best_theta[:] = resumed["best_theta"]
    interrupt = Interrupt()

    def checkpoint(epoch, done=0, rows=0, loss_sum=0.0, correct=0):
        if not np.all(np.isfinite(model.theta)):
            diverged(epoch, "parameters", run.steps)
        return save_checkpoint(run_dir or default_run_dir(c), model, run.optimizer, {
            "epoch": epoch, "done": done, "rows": rows, "loss_sum": loss_sum, "correct": correct,
            "steps": run.steps, "history": history, "labels": asdict(labels), "config": asdict(c),
            "stopper": [stopper.best, stopper.best_epoch] if stopper else None},
            stopper.best_theta if stopper else None, c.keep_checkpoints)

    def progress(epoch, rows, loss_sum, correct, rate):
        emit(logs, "step_end", {"epoch": epoch, "epochs": c.epochs, "step": run.steps, "rows": rows,
                            "rows_total": labels.rows, "loss": loss_sum / rows, "accuracy": correct / rows,
                            "rows_per_s": rate})

    def diverged(epoch, what, step):
        good = latest(run_dir) if run_dir else None
        kept = f"The last good checkpoint is {good}; resume from it with a smaller rate: streambp fit --resume " \
            f"{run_dir} --lr {c.lr / 10:g}." if good else f"No checkpoint was written; try a smaller --lr than {c.lr}."
        raise Diverged(f"Training diverged in epoch {epoch} at step {step} (NaN or inf {what}); nothing "
                       f"was saved from this point. {kept}")

    try:
        for epoch in range(start, c.epochs + 1):
            t0 = last = last_checkpoint = time.perf_counter()
            mid = resumed if resumed and epoch == start and resumed.get("done") else {}
            done, rows = mid.get("done", 0), mid.get("rows", 0)
            loss_sum, correct = mid.get("loss_sum", 0.0), mid.get("correct", 0)
            rows0 = rows  # rows/s counts the rows trained in this process

            def failed_checkpoint():  # before the epoch's first update, the position is the previous epoch's end
                return checkpoint(epoch, done, rows, loss_sum, correct) if done else checkpoint(epoch - 1)

            for n, loss, hits, k in engine_items(engine, epoch, done, failed_checkpoint):
                if not math.isfinite(loss):
                    diverged(epoch, "loss", run.steps + k)
                done += 1
                rows += n
                loss_sum += loss * n
                correct += hits
                run.steps += k
                if interrupt.requested:
                    path = checkpoint(epoch, done, rows, loss_sum, correct)
                    raise Interrupted(f"Interrupted in epoch {epoch} after {done:,} updates; wrote {path}. Resume "
                                      f"with: streambp fit --resume {os.path.dirname(path)}")
                if every_steps and run.steps % every_steps < k and run_dir:
                    checkpoint(epoch, done, rows, loss_sum, correct)
                if done % 16 == 0 and (now := time.perf_counter()) - last > 0.2:
                    last = now
                    if every_seconds and now - last_checkpoint > every_seconds and run_dir:
                        last_checkpoint = now
                        checkpoint(epoch, done, rows, loss_sum, correct)
                    progress(epoch, rows, loss_sum, correct, (rows - rows0) / (now - t0))
            if rows == 0:
                raise StreambpError(f"No training rows are left in {run.source.files[0]} after the validation "
                                    "split and skipped rows.")
            seconds = time.perf_counter() - t0
            progress(epoch, rows, loss_sum, correct, (rows - rows0) / seconds)  # every epoch logs its last step
            record = {"epoch": epoch, "epochs": c.epochs, "step": run.steps, "train_loss": loss_sum / rows,
                      "train_accuracy": correct / rows, "seconds": seconds, "rows_per_s": (rows - rows0) / seconds}
            if val_source is not None:
                metrics = evaluate(model, val_source, c.label, split=run.split and (c.val_fraction, True),
                                   bad_rows=skipping(c))
                record.update(val_loss=metrics["log_loss"], val_accuracy=metrics["accuracy"],
                              val_confusion=metrics["confusion_matrix"])
            history.append(record)
            emit(logs, "epoch_end", record)
            if run.bad_rows is not None:
                run.bad_rows.close()  # every row has been seen once
            stop = stopper is not None and stopper.update(epoch, record["val_loss"], model.theta)
            if run_dir:
                checkpoint(epoch)
            if stop:
                break
    except BaseException as e:
        if run.bad_rows is not None:
            run.bad_rows.abort(e)
        raise
    finally:
        interrupt.restore()
    if not np.all(np.isfinite(model.theta)):
        diverged(history[-1]["epoch"] if history else 0, "parameters", run.steps)
    model.training = {
        "streambp_version": __version__, "config": asdict(c), "rows": labels.rows, "class_counts": labels.counts,
        "history": history, "seconds": time.perf_counter() - t_fit,
        "bad_rows": run.bad_rows.count if run.bad_rows else 0,
    }
    if stopper is not None:
        stopper.restore(model.theta)
        model.training["best_epoch"] = stopper.best_epoch
    if c.out:
        model.save(c.out)
        write_config(c, config_path(c.out))
    emit(logs, "fit_end", {"out": c.out, "seconds": model.training["seconds"], "history": history,
                           "bad_rows": model.training["bad_rows"], "run_dir": run_dir})
    return model


def emit(logs, event, info):
    """Call `event` on each logger, then the plugin hook of that name (see events.py)."""
    from .events import emit as emit_event

    emit_event(logs, event, info)
