"""Built-in loggers: console (a rich progress bar and a line per epoch), jsonl (every event as a JSON
line) and csv (a row per epoch).

A logger is built as factory(**options) (`streambp fit --logger NAME` passes none) and has the methods
fit_start, step_end, epoch_end and fit_end (streambp.events.EVENTS), each taking the info dict; see docs/plugins.md.
"""
import csv
import json
import math
import os
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from .. import hookimpl
from ..errors import printable
from ..atomic import check_writable, reporting


class ConsoleLogger:
    """Progress on stderr while an epoch runs (when it is a terminal); epoch lines on stdout."""

    def __init__(self, console=None):
        self.console = console or Console()
        self.progress = None
        self.task = None

    def fit_start(self, info):
        sizes = "-".join(map(str, info["sizes"]))
        columns = info.get("columns") or []
        if columns:
            width = max(len(name) for name, _, _ in columns)
            self.console.print("column".ljust(width) + "  role         how", highlight=False, soft_wrap=True)
            for name, role, detail in columns:
                self.console.print(printable(f"{name.ljust(width)}  {role:<11}  {detail}".rstrip()),
                                   highlight=False, soft_wrap=True, markup=False)
        self.console.print(f"Training {sizes} on {info['rows']:,} rows from {info['files']} file(s), "
                           f"{len(info['classes'])} classes, {info['threads']} threads.", soft_wrap=True)
        for note in info.get("cache", []):
            self.console.print(note, highlight=False, soft_wrap=True, markup=False)

    def _bar(self, info):
        if self.progress is None and Console(file=sys.stderr).is_terminal:
            self.progress = Progress(
                TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
                TextColumn("{task.completed:,.0f}/{task.total:,.0f} rows"),
                TextColumn("{task.fields[rate]:,.0f} rows/s"), TextColumn("loss {task.fields[loss]:.4f}"),
                TimeRemainingColumn(), console=Console(file=sys.stderr), transient=True)
            self.progress.start()
            self.task = self.progress.add_task("fit", total=info["rows_total"], epoch=info["epoch"],
                                               epochs=info["epochs"], rate=0.0, loss=float("nan"))
        return self.progress

    def step_end(self, info):
        bar = self._bar(info)
        if bar is not None:
            bar.update(self.task, completed=info["rows"], epoch=info["epoch"], rate=info["rows_per_s"],
                       loss=info["loss"])

    def epoch_end(self, info):
        self._close()
        line = (f"epoch {info['epoch']}/{info['epochs']}  train loss {info['train_loss']:.4f}  "
                f"{info['rows_per_s']:,.0f} rows/s  {info['seconds']:.1f} s")
        if "val_loss" in info:
            line += f"  val loss {info['val_loss']:.4f}  val accuracy {info['val_accuracy']:.4f}"
        self.console.print(line, soft_wrap=True)
        if "warning" in info:
            self.console.print(f"Warning: {info['warning']}", soft_wrap=True, markup=False, highlight=False)

    def fit_end(self, info):
        self._close()
        if info.get("bad_rows"):
            self.console.print(f"Skipped {info['bad_rows']:,} bad rows (null, NaN or inf).", soft_wrap=True)
        if info.get("converged_epoch"):
            self.console.print(f"Stopped after epoch {info['converged_epoch']}: the training loss had not improved "
                               "for 5 epochs.", soft_wrap=True)
        if info.get("best_epoch"):
            self.console.print(f"Kept the weights of epoch {info['best_epoch']}, the lowest validation loss.",
                               soft_wrap=True)
        last = info["history"][-1] if info["history"] else {}
        if "val_accuracy" in last and info.get("majority") is not None:
            best = next((h for h in info["history"] if h["epoch"] == info.get("best_epoch")), last)
            self.console.print(f"Validation accuracy {best['val_accuracy']:.4f}; always predicting the most "
                               f"frequent class: {info['majority']:.4f}.", soft_wrap=True)
        if info["out"]:
            self.console.print(f"Wrote {info['out']} ({info['seconds']:.1f} s).", soft_wrap=True)

    def _close(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def log_path(path, env, info, suffix):
    """Where a file logger writes: the path given to it, else $env, else next to the model
    (<out without extension><suffix>, when fit_start's info names it), else streambp<suffix>."""
    if path is not None:
        return os.fspath(path)
    if os.environ.get(env):
        return os.environ[env]
    out = info.get("out")
    if out:
        return os.path.splitext(os.fspath(out))[0] + suffix
    return "streambp" + suffix


def plain(value):
    """value with numpy scalars as Python numbers and NaN/inf as None, so that json.dumps writes JSON."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class JsonlLogger:
    """One JSON object per event, a line each, flushed as it is written: {"event": "fit_start" | "step" |
    "epoch_end" | "fit_end", "time": Unix seconds, **info} (NaN and infinities as null).

    The file is `path`, else $STREAMBP_LOG_JSONL, else <model file without extension>.log.jsonl when
    fit_start's info has "out", else streambp.log.jsonl in the current directory; it is overwritten, or
    appended to with append=True (fit writes RUN_DIR/events.jsonl so, continuing it on --resume).
    """

    ENV = "STREAMBP_LOG_JSONL"
    SUFFIX = ".log.jsonl"

    def __init__(self, path=None, append=False):
        self.path = path
        self.mode = "a" if append else "w"
        self.file = None

    def _open(self, info):
        if self.file is None:
            self.path = log_path(self.path, self.ENV, info, self.SUFFIX)
            check_writable(self.path, "the log file", "Choose another place for the log.")
            self.file = open(self.path, self.mode, encoding="utf-8")
            if self.file.tell() and not self._ends_with_newline():
                self.file.write("\n")  # a line cut short by a killed process stays a line of its own
            self.mode = "a"

    def _ends_with_newline(self):
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def _write(self, event, info):
        self._open(info)
        with reporting(self.path, "the log file", "Choose another place for the log."):
            self.file.write(json.dumps({"event": event, "time": time.time(), **plain(info)}) + "\n")
            self.file.flush()

    def fit_start(self, info):
        self._write("fit_start", info)

    def step_end(self, info):
        self._write("step", info)

    def epoch_end(self, info):
        self._write("epoch_end", info)

    def fit_end(self, info):
        self._write("fit_end", info)
        self.close()

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None


class CsvLogger:
    """A CSV row per epoch, flushed as it is written: epoch, epochs, step, train_loss, train_accuracy,
    val_loss and val_accuracy (with --val), seconds, rows_per_s, then any further numeric keys of the first
    epoch.

    The file is `path`, else $STREAMBP_LOG_CSV, else <model file without extension>.log.csv when
    fit_start's info has "out", else streambp.log.csv in the current directory; it is overwritten.
    """

    ENV = "STREAMBP_LOG_CSV"
    SUFFIX = ".log.csv"
    ORDER = ("epoch", "epochs", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds",
             "rows_per_s")

    def __init__(self, path=None):
        self.path = path
        self.file = None
        self.writer = None

    def fit_start(self, info):
        self.close()
        self.path = log_path(self.path, self.ENV, info, self.SUFFIX)
        check_writable(self.path, "the log file", "Choose another place for the log.")
        self.file = open(self.path, "w", encoding="utf-8", newline="")

    def epoch_end(self, info):
        if self.file is None:
            self.fit_start({})
        row = {k: v for k, v in plain(info).items() if v is None or isinstance(v, (int, float, str))}
        if self.writer is None:
            columns = [k for k in self.ORDER if k in row] + sorted(k for k in row if k not in self.ORDER)
            self.writer = csv.DictWriter(self.file, columns, extrasaction="ignore")
            self.writer.writeheader()
        with reporting(self.path, "the log file", "Choose another place for the log."):
            self.writer.writerow(row)
            self.file.flush()

    def fit_end(self, info):
        self.close()

    def close(self):
        if self.file is not None:
            self.file.close()
        self.file = None
        self.writer = None


@hookimpl
def register_loggers(register):
    register("console", ConsoleLogger)
    register("jsonl", JsonlLogger)
    register("csv", CsvLogger)
