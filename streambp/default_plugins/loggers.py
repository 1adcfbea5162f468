"""Built-in console logger: a rich progress bar (rows/s, loss, ETA) and a line per epoch."""
import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from .. import hookimpl


class ConsoleLogger:
    """Progress on stderr while an epoch runs (when it is a terminal); epoch lines on stdout."""

    def __init__(self, console=None):
        self.console = console or Console()
        self.progress = None
        self.task = None

    def fit_start(self, info):
        sizes = "-".join(map(str, info["sizes"]))
        self.console.print(f"Training {sizes} on {info['rows']:,} rows from {info['files']} file(s), "
                           f"{len(info['classes'])} classes, {info['threads']} threads.", soft_wrap=True)

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

    def step(self, info):
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

    def fit_end(self, info):
        self._close()
        if info["out"]:
            self.console.print(f"Wrote {info['out']} ({info['seconds']:.1f} s).", soft_wrap=True)

    def _close(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@hookimpl
def register_loggers(register):
    register("console", ConsoleLogger)
