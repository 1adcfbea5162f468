"""The training loop: stream chunks, run minibatches through backprop and the optimizer, log, save."""
import contextlib
import inspect
import itertools
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from . import __version__, threads, warmup
from .atomic import check_writable, current, make_dir, scope
from .badrows import BadRows
from .checkpoint import checkpoints, load_latest, lock, newest_valid, save_checkpoint
from .config import DEFAULT_HIDDEN, FitConfig, check_config, check_memory, config_path, write_config  # noqa: F401
from .engine import EngineFailed, Run
from .errors import StreambpError
from .cache import open_cache
from .evaluate import evaluate, evaluation_cache, model_spec
from .features import Choices, LabelInfo, scan, scan_labels
from .model import Model, load
from .registry import engines, loggers, open_source, optimizers
from .schedules import make_schedule
from .step import make_optimizer
from .stream import LabelEncoder


def build_model(c, source):
    """A fresh Glorot-initialised model over the columns the pre-pass chose (refused up front if the fit would
    not fit in memory), or the --init model (with its own inputs and preprocessing) after checking it fits
    this data."""
    if c.init:
        model = load(c.init, "the --init model")
        if c.hidden is not None and list(c.hidden) != model.hidden:
            raise StreambpError(f"--hidden {c.hidden} differs from the --init model {c.init}, which has hidden "
                                f"layers {model.hidden}.")
        model_spec(model, source)
        labels = scan_labels(source, c.label, c.on_bad_rows == "skip", training_side(c))
        extra = [v for v in labels.classes if v not in model.classes]
        if extra:
            raise StreambpError(f"Labels {extra[:5]} in {source.files[0]} are not classes of the --init model "
                                f"{c.init} ({model.classes}).")
        return model, labels
    labels, spec = scan(source, c.label, Choices.of(c), c.on_bad_rows == "skip", training_side(c))
    hidden = list(DEFAULT_HIDDEN if c.hidden is None else c.hidden)
    sizes = [spec.width, *hidden, len(labels.classes)]
    check_memory(with_batch(c, labels), sizes, parameter_arrays=2, slots=spec.slots)  # theta and its gradient
    model = Model.initialise(sizes, labels.classes, spec, seed=c.seed, dtype=np.dtype(c.dtype),
                             label_type=labels.label_type)
    return model, labels


def training_side(c):
    """The split that keeps the training rows of --val-fraction, or None."""
    return (c.val_fraction, False) if c.val_fraction else None


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
    """The Run for c (a fresh model, or the --resume checkpoint's) and the resumed checkpoint state or None.
    With --init, the run keeps the model's own scaling (c.standardize follows it)."""
    source = open_source(c.data, c.source, **c.source_options)
    current().protect(source.files, "the training data")
    resumed = None
    if c.resume:
        model, opt_state, resumed = load_latest(c.resume)
        labels = LabelInfo(**resumed["labels"])
        if c.hidden is not None and list(c.hidden) != model.hidden:
            raise StreambpError(f"--hidden {','.join(map(str, c.hidden)) or 0} differs from the run in {c.resume}, "
                                f"whose network has hidden layers {model.hidden}; a resumed run keeps its network. "
                                "Leave out --hidden, or start a new run.")
    else:
        model, labels = build_model(c, source)
    c = with_batch(c, labels)
    if c.init:
        c = replace(c, standardize=model.mean is not None)
    if c.resume or c.init:
        check_memory(c, model.sizes, parameter_arrays=1)  # the gradient; theta is loaded
    spec = model_spec(model, source)
    optimizer = make_optimizer(optimizers.get(c.optimizer)[0], model, **c.optimizer_params)
    if resumed:
        optimizer.load_state_dict(opt_state)
    if resumed and resumed.get("done"):
        check_same_stream(c, resumed["config"])
    encoder = LabelEncoder(c.label, model.classes, model.label_type, strict=True)
    run = Run(c, model, optimizer, source, spec, encoder, labels, class_weights(c, model, labels),
              training_side(c), skipping(c, c.bad_rows_out), n_threads,
              resumed["steps"] if resumed else 0)
    # left out, --epochs stays left out in the saved settings: a resumed or rerun fit decides it again
    run.epochs, run.converge = (auto_epochs(labels.rows), True) if c.epochs is None else (c.epochs, False)
    if run.bad_rows is not None and resumed:
        run.bad_rows.recording = False  # rows already read before the resume were recorded then
    if c.engine == "local":
        run.cache = open_cache(c.cache, source, c.source_options, spec, encoder, model.theta.dtype, run.split,
                               c.on_bad_rows == "skip", labels.rows, passes_left(run, resumed), "the training rows")
    if resumed:
        say_resumed(c, resumed, run.epochs)  # once every check passed: a refused resume shows only its error
    return run, resumed


def passes_left(run, resumed):
    """The epochs this process may still run."""
    return run.epochs - (resumed["epoch"] if resumed else 0)


def say_resumed(c, resumed, epochs):
    """Tell on stderr which checkpoint a --resume continues from, and when its run has already finished."""
    epoch, done = resumed["epoch"], resumed.get("done")
    where = f"epoch {epoch}, {done:,} updates in" if done else f"the end of epoch {epoch}"
    print(f"Resuming from {resumed['checkpoint']} ({where}, step {resumed['steps']:,}).", file=sys.stderr)
    if finished(c, resumed, epochs):
        again = f"; the model is written again to {c.out}" if c.out else ""
        why = f"its {epochs} epochs" if epoch >= epochs else f"at epoch {epoch} ({resumed['stopped']})"
        print(f"That run has finished {why}: nothing to train{again}. To train more, resume with a larger "
              "--epochs.", file=sys.stderr)


def finished(c, resumed, epochs):
    """Whether a resumed run has nothing left to train: all its epochs, or it stopped by itself (the training
    loss settled, or early stopping) and no --epochs asks for more."""
    if resumed.get("done"):
        return False
    return resumed["epoch"] >= epochs or bool(resumed.get("stopped")) and c.epochs is None


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
    runs/<model>-<time>[-N] beside the model; None without a model file or --run-dir, or with --run-dir none."""
    if resumed:
        lock(c.resume)
        return c.resume
    if c.run_dir == NO_RUN_DIR:
        return None
    if c.run_dir:
        make_dir(c.run_dir, "--run-dir")
        lock(c.run_dir)  # before looking for checkpoints: two fits started together cannot both pass
        if checkpoints(c.run_dir):
            raise StreambpError(f"--run-dir {c.run_dir} holds the checkpoints of another run; continue it with "
                                f"--resume {c.run_dir}, or choose another directory.")
        return c.run_dir
    if not c.out:
        return None
    base = default_run_dir(c)
    for n in itertools.count(1):
        path = base if n == 1 else f"{base}-{n}"
        try:
            os.makedirs(path)
            lock(path)
            return path
        except FileExistsError:
            continue


@dataclass
class EpochState:
    """Where training is in an epoch: the updates done, the rows they used, their summed loss and the rows
    classified right. A checkpoint records it, so that a mid-epoch resume continues the same sums."""

    epoch: int
    done: int = 0
    rows: int = 0
    loss_sum: float = 0.0
    correct: int = 0

    def add(self, rows, loss, correct):
        self.done += 1
        self.rows += rows
        self.loss_sum += loss * rows
        self.correct += correct


class Checkpointer:
    """The checkpoints of a run: when to write one (every `steps` optimizer steps or `seconds` seconds, as
    parse_every reads --checkpoint-every, and at every epoch end), never of non-finite parameters (Diverged),
    written to the run directory with the stream position, history and settings."""

    def __init__(self, run, run_dir, history, stopper):
        self.run, self.run_dir, self.history, self.stopper = run, run_dir, history, stopper
        self.steps, self.seconds = parse_every(run.config.checkpoint_every)
        self.last = time.perf_counter()

    def write(self, state, stopped=None):
        """Write the checkpoint of `state` (an EpochState; EpochState(e) is the end of epoch e) and return its path;
        `stopped` says why the run ends there before its last epoch (a resume then has nothing to train)."""
        run, c, stopper = self.run, self.run.config, self.stopper
        self.check_finite(state.epoch)
        if c.run_dir == NO_RUN_DIR:
            return None
        return save_checkpoint(self.run_dir or default_run_dir(c), run.model, run.optimizer, {
            **asdict(state), "stopped": stopped, "steps": run.steps, "history": self.history,
            "labels": asdict(run.labels),
            "config": asdict(c), "stopper": [stopper.best, stopper.best_epoch] if stopper else None},
            stopper.best_theta if stopper else None, c.keep_checkpoints)

    def start_epoch(self):
        self.last = time.perf_counter()

    def after_update(self, state, k):
        """After an update of k optimizer steps: a checkpoint when a multiple of --checkpoint-every's steps passed."""
        if self.steps and self.run.steps % self.steps < k and self.run_dir:
            self.write(state)

    def at(self, state, now):
        """At a progress report (time `now`): a checkpoint when --checkpoint-every's seconds passed."""
        if self.seconds and now - self.last > self.seconds and self.run_dir:
            self.last = now
            self.write(state)

    def check_finite(self, epoch):
        """Diverged unless every parameter is finite."""
        if not np.all(np.isfinite(self.run.model.theta)):
            self.diverged(epoch, "parameters", self.run.steps)

    def diverged(self, epoch, what, step):
        c, run_dir = self.run.config, self.run_dir
        found = newest_valid(run_dir) if run_dir else None  # never a checkpoint with NaN parameters
        good = found and found[0]
        kept = f"The last good checkpoint is {good}; resume from it with a smaller rate: streambp fit --resume " \
            f"{run_dir} --lr {c.lr / 10:g}." if good else f"No checkpoint was written; try a smaller --lr than {c.lr}."
        raise Diverged(f"Training diverged in epoch {epoch} at step {step} (NaN, inf or exploding {what}); nothing "
                       f"was saved from this point. {kept}")


NO_RUN_DIR = "none"  # --run-dir none: no run directory, no checkpoints, no events file


def saved(path):
    """What an interrupted or failed run says about its checkpoint `path` (None with --run-dir none)."""
    if path is None:
        return "No checkpoint was written (--run-dir none)."
    return f"Wrote {path}; resume with: streambp fit --resume {os.path.dirname(path)}"


def engine_items(engine, epoch, skip, checkpoint):
    """engine.epoch(epoch, skip); an EngineFailed is re-raised after checkpoint() saved the last position."""
    try:
        yield from engine.epoch(epoch, skip)
    except EngineFailed as e:
        raise EngineFailed(f"{e} {saved(checkpoint())}") from None  # the checkpoint of the last update yielded


def finish_bad_rows(bad_rows):
    """An ExitStack exit callback: the rejected-rows file is finished, or dropped after an error."""
    def finish(kind, error, tb):
        if error is None:
            bad_rows.close()
        else:
            bad_rows.abort(error)

    return finish


def fit(c: FitConfig):
    """Train as configured; write the model to c.out (atomically) and return it. c is not changed."""
    check_config(c)
    parse_every(c.checkpoint_every)  # a malformed --checkpoint-every is refused before any work
    with contextlib.ExitStack() as stack:
        guard = stack.enter_context(scope())  # every file written is checked against every input of this fit
        guard.protect([c.init], "the --init model")
        guard.protect([c.val], "the --val data")
        if c.out:
            check_writable(c.out, "--out")
        n_threads = threads.configure(c.threads)
        if c.deterministic:
            c = replace(c, threads=n_threads)  # a resumed run must use the same count
        # overlaps the pre-pass in prepare(); a batch size left out is guessed small (decided after the pre-pass)
        compiling = warmup.start(c if c.batch_size else replace(c, batch_size=AUTO_BATCH[0]))
        run, resumed = prepare(c, n_threads)
        if c.out:
            check_writable(c.out, "--out")  # against the data files too, now that they are known
            check_writable(config_path(c.out), "the config file written beside the model", "Choose another --out.")
        if run.bad_rows is not None:
            stack.push(finish_bad_rows(run.bad_rows))
        engine = make_engine(run)
        stack.callback(engine.close)
        if compiling is not None:
            compiling.join()  # before the first epoch's clock starts
        set_schedule(run, getattr(engine, "rows_per_step", run.config.batch_size))
        return train(run, resumed, engine)


def set_schedule(run, rows_per_step):
    """run.lr_at, before any update: the schedule counts optimizer steps, so its length needs the rows one step
    uses, which a data-parallel engine knows once it has its workers (Dask: workers x --batch-size)."""
    c = run.config
    steps_per_epoch = max(1, -(-run.labels.rows // rows_per_step))
    run.lr_at = make_schedule(c.lr_schedule, c.lr, run.epochs * steps_per_epoch, steps_per_epoch, c.warmup_steps,
                              **c.lr_schedule_params)


def train(run, resumed, engine):
    """fit()'s loop over epochs and the engine's updates: logging, checkpoints, validation, the model file."""
    c, model, labels = run.config, run.model, run.labels
    run_dir = make_run_dir(c, resumed)
    val_source = run.source if c.val_fraction else open_source(c.val, c.source, **c.source_options) if c.val else None
    if c.val:
        current().protect(val_source.files, "the --val data")
        model_spec(model, val_source)
    val_split = run.split and (c.val_fraction, True)
    val_cache = val_source and evaluation_cache(c.cache, c.source_options, model, val_source, c.label, val_split,
                                                c.on_bad_rows == "skip", val_source.num_rows or labels.rows,
                                                passes_left(run, resumed))
    logs = [loggers.get(name)[0]() for name in c.loggers]
    if run_dir:
        write_config(c, os.path.join(run_dir, "config.toml"), "the run's config.toml", "Choose another --run-dir.")
        logs.append(loggers.get("jsonl")[0](os.path.join(run_dir, "events.jsonl"), append=bool(resumed)))
    history = resumed["history"] if resumed else []
    # a checkpoint written mid-epoch resumes that epoch after its first `done` updates
    start = resumed["epoch"] + (0 if resumed.get("done") else 1) if resumed else 1
    counts = np.zeros(len(model.classes))  # in the model's class order (an --init model may have more classes)
    for value, n in zip(labels.classes, labels.counts):
        counts[model.classes.index(value)] = n
    frequencies = counts / counts.sum()
    baseline = baseline_loss(counts, run.class_weights)
    order = {name: i for i, name in enumerate(run.source.schema.names)}
    emit(logs, "fit_start", {"sizes": model.sizes, "rows": labels.rows, "epochs": run.epochs, "out": c.out,
                             "config": asdict(c), "classes": model.classes, "threads": run.threads,
                             "files": len(run.source.files), "run_dir": run_dir, "resumed": bool(resumed),
                             "columns": [list(r) for r in sorted(model.spec.summary(),
                                                                 key=lambda r: order.get(r[0], 0))],
                             "baseline_loss": baseline, "majority": float(frequencies.max()),
                             "cache": [cache.note for cache in (run.cache, val_cache) if cache]})
    t_fit = time.perf_counter()
    stopper = EarlyStopping(c.early_stopping, model.theta) if c.early_stopping else None
    if resumed and stopper:
        stopper.best, stopper.best_epoch = resumed["stopper"]
        stopper.best_theta[:] = resumed["best_theta"]
    checkpoints = Checkpointer(run, run_dir, history, stopper)
    converged_at = None  # with --epochs left out: the epoch after which the training loss had settled
    interrupt = Interrupt()
    try:
        for epoch in range(start, 0 if resumed and finished(c, resumed, run.epochs) else run.epochs + 1):
            mid = resumed if resumed and epoch == start and resumed.get("done") else {}
            state = EpochState(epoch, **{k: mid[k] for k in ("done", "rows", "loss_sum", "correct") if k in mid})
            record = run_epoch(run, engine, state, checkpoints, interrupt, logs)
            if val_source is not None:
                metrics = evaluate(model, val_source, c.label, split=val_split, bad_rows=skipping(c), cache=val_cache)
                record.update(val_loss=metrics["log_loss"], val_accuracy=metrics["accuracy"],
                              val_confusion=metrics["confusion_matrix"])
            if record["train_loss"] >= baseline - 1e-3:
                record["warning"] = not_learning(record["train_loss"], baseline, c)
            history.append(record)
            emit(logs, "epoch_end", record)
            if run.bad_rows is not None:
                run.bad_rows.close()  # every row has been seen once
            stop = stopper is not None and stopper.update(epoch, record["val_loss"], model.theta)
            if run.converge and converged(history):
                converged_at = epoch
            stopped = "early stopping" if stop else "the training loss had settled" if converged_at else None
            if run_dir:
                checkpoints.write(EpochState(epoch), stopped)
            if stopped:
                break
    finally:
        interrupt.restore()
    checkpoints.check_finite(history[-1]["epoch"] if history else 0)
    model.training = {
        "streambp_version": __version__, "config": asdict(c), "rows": labels.rows, "class_counts": labels.counts,
        "history": history, "seconds": time.perf_counter() - t_fit,
        "bad_rows": run.bad_rows.count if run.bad_rows else 0,
    }
    if converged_at:
        model.training["converged_epoch"] = converged_at
    if stopper is not None:
        stopper.restore(model.theta)
        model.training["best_epoch"] = stopper.best_epoch
    if c.out:
        model.save(c.out, "--out")
        write_config(c, config_path(c.out), "the config file written beside the model", "Choose another --out.")
    emit(logs, "fit_end", {"out": c.out, "seconds": model.training["seconds"], "history": history,
                           "bad_rows": model.training["bad_rows"], "run_dir": run_dir,
                           "majority": majority_share(frequencies, history),
                           "best_epoch": model.training.get("best_epoch"),
                           "converged_epoch": converged_at})
    return model


EXPLODED = 1e6  # a mean cross-entropy above this is divergence: predicting the class frequencies costs < 25
AUTO_ROWS = 2_000_000  # rows an automatic --epochs aims to train on, in 3 to 100 passes
AUTO_EPOCHS = (3, 100)
TOLERANCE, PATIENCE = 1e-4, 5  # converged: no epoch's training loss TOLERANCE below the best in PATIENCE epochs


AUTO_BATCH = (32, 512)  # the default batch: ~2,000 updates per epoch, a power of two within these bounds


def auto_batch(rows):
    """The batch size when --batch-size is not given: 32 up to 128,000 training rows, doubled for every doubling
    past it, at most 512 (Adam at lr 0.01 in batches of 32 is too noisy for millions of rows: 0.70 test
    accuracy on bench_spark's 2M rows in 3 epochs, against 0.89 in batches of 512)."""
    batch = AUTO_BATCH[0]
    while batch < AUTO_BATCH[1] and rows >= 2 * batch * 2000:
        batch *= 2
    return batch


def with_batch(c, labels):
    """c with --batch-size decided for the training rows `labels` counted, when it was left out."""
    return c if c.batch_size is not None else replace(c, batch_size=auto_batch(labels.rows))


def auto_epochs(rows):
    """The number of passes when --epochs is not given: about AUTO_ROWS rows' worth, within AUTO_EPOCHS."""
    return int(min(AUTO_EPOCHS[1], max(AUTO_EPOCHS[0], math.ceil(AUTO_ROWS / max(rows, 1)))))


def converged(history):
    """Whether none of the last PATIENCE epochs lowered the training loss by TOLERANCE below the best before
    them (scikit-learn's MLP stops on the same rule, with tol=1e-4 and n_iter_no_change=10)."""
    if len(history) <= PATIENCE:
        return False
    best = min(h["train_loss"] for h in history[:-PATIENCE])
    return all(h["train_loss"] > best - TOLERANCE for h in history[-PATIENCE:])


def baseline_loss(counts, class_weights=None):
    """The training loss of predicting the class frequencies (their entropy); with class weights w, the
    weighted loss of the best constant prediction q_k ~ w_k n_k, the same weighting the training loss uses."""
    mass = counts * (1.0 if class_weights is None else np.asarray(class_weights, dtype=np.float64))
    q = mass[mass > 0] / mass.sum()
    return float(-(q * np.log(q)).sum())


def majority_share(frequencies, history):
    """The accuracy of always predicting the training data's most frequent class: on the validation rows (from
    the last epoch's confusion matrix) when there are some, else on the training rows."""
    confusion = np.asarray(history[-1].get("val_confusion", [])) if history else np.zeros(0)
    if confusion.size:
        return float(confusion[int(frequencies.argmax())].sum() / confusion.sum())
    return float(frequencies.max())


def not_learning(loss, baseline, c):
    """The warning of an epoch whose training loss is not below the loss of predicting the class frequencies."""
    return (f"The training loss {loss:.4f} is not below {baseline:.4f}, the loss of always predicting the class "
            f"frequencies: the network has learned nothing yet. Likely causes: a learning rate too large or too "
            f"small for the {c.optimizer} optimizer (--lr {c.lr:g}; try ten times smaller or larger), unscaled "
            f"features (keep --standardize on), too few epochs (--epochs), or columns that do not predict the "
            f"label (see the column table above; --ignore, --categorical and --numeric change it).")


def run_epoch(run, engine, state, checkpoints, interrupt, logs):
    """The engine's updates of one epoch, from `state` (mid-epoch after a resume); its history record."""
    epoch = state.epoch
    t0 = last = time.perf_counter()
    checkpoints.start_epoch()
    rows0 = state.rows  # rows/s counts the rows trained in this process

    def failed():  # before the epoch's first update, the position is the previous epoch's end
        return checkpoints.write(state if state.done else EpochState(epoch - 1))

    def progress(rate):
        emit(logs, "step_end", {"epoch": epoch, "epochs": run.epochs, "step": run.steps, "rows": state.rows,
                            "rows_total": run.labels.rows, "loss": state.loss_sum / state.rows,
                            "accuracy": state.correct / state.rows, "rows_per_s": rate})

    for n, loss, hits, k in engine_items(engine, epoch, state.done, failed):
        if not math.isfinite(loss) or loss > EXPLODED:
            checkpoints.diverged(epoch, "loss", run.steps + k)
        state.add(n, loss, hits)
        run.steps += k
        if interrupt.requested:
            raise Interrupted(f"Interrupted in epoch {epoch} after {state.done:,} updates. "
                              f"{saved(checkpoints.write(state))}")
        checkpoints.after_update(state, k)
        if state.done % 16 == 0 and (now := time.perf_counter()) - last > 0.2:
            last = now
            checkpoints.at(state, now)
            progress((state.rows - rows0) / (now - t0))
    if state.rows == 0:
        raise StreambpError(f"No training rows are left in {run.source.files[0]} after the validation split and "
                            "skipped rows.")
    seconds = time.perf_counter() - t0
    progress((state.rows - rows0) / seconds)  # every epoch logs its last step
    return {"epoch": epoch, "epochs": run.epochs, "step": run.steps, "train_loss": state.loss_sum / state.rows,
            "train_accuracy": state.correct / state.rows, "seconds": seconds,
            "rows_per_s": (state.rows - rows0) / seconds}


def emit(logs, event, info):
    """Call `event` on each logger, then the plugin hook of that name (see events.py)."""
    from .events import emit as emit_event

    emit_event(logs, event, info)
