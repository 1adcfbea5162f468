"""streambp plugin: the `tensorboard` logger, writing training curves as TensorBoard scalars.

    streambp fit data.parquet --out model.npz --logger console --logger tensorboard
    tensorboard --logdir model.tensorboard

Scalars written:

- `train/loss`, `train/rows_per_s`: at each `step_end` event (a few times a second while an epoch runs;
  none in a very short epoch), at TensorBoard step = the trainer's global step (minibatches so far).
  `train/loss` is the mean training loss so far in the current epoch.
- `epoch/train_loss`, `epoch/rows_per_s`, and with `--val` `epoch/val_loss` and
  `epoch/val_accuracy`: at each `epoch_end`, at TensorBoard step = the epoch (from 1).

The log directory is `$STREAMBP_TENSORBOARD_DIR` if set, else `<model file without extension>.tensorboard/`
next to the model (`--out`), else `runs/streambp` in the current directory. Each fit adds an event file to
it; TensorBoard then shows the newest fit's values where step numbers overlap, so point
`$STREAMBP_TENSORBOARD_DIR` at a fresh directory per run (runs/lr0.1, runs/lr0.5, ...) and
`tensorboard --logdir runs` to compare runs side by side.

TensorBoard is imported only when a fit uses the logger, so that installing the plugin does not slow
down every `streambp` command.
"""
import atexit
import os
import time
import weakref

from streambp import hookimpl

__version__ = "0.1.0"

ENV = "STREAMBP_TENSORBOARD_DIR"
SUFFIX = ".tensorboard"
DEFAULT_DIR = os.path.join("runs", "streambp")
EPOCH_SCALARS = ("train_loss", "val_loss", "val_accuracy", "rows_per_s")

_open_loggers = weakref.WeakSet()


def log_dir(info, path=None):
    """path, else $STREAMBP_TENSORBOARD_DIR, else <info['out'] without extension>.tensorboard, else
    runs/streambp."""
    if path:
        return os.fspath(path)
    if os.environ.get(ENV):
        return os.environ[ENV]
    out = info.get("out")
    if out:
        return os.path.splitext(os.fspath(out))[0] + SUFFIX
    return DEFAULT_DIR


class TensorBoardLogger:
    """Scalars to a TensorBoard event file; see the module docstring. `log_dir` overrides the directory."""

    def __init__(self, log_dir=None, flush_secs=10):
        self.given_dir = log_dir
        self.log_dir = None  # the directory written, once known
        self.flush_secs = flush_secs
        self.writer = None

    def _open(self, info):
        if self.writer is None:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            self.log_dir = log_dir(info, self.given_dir)
            self.writer = EventFileWriter(self.log_dir, flush_secs=self.flush_secs)
            _open_loggers.add(self)

    def add_scalars(self, step, values):
        """Write {tag: number} at `step`, as one event; values that are None or not numbers are skipped."""
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()
                                 if _is_number(v)])
        if summary.value:
            self.writer.add_event(Event(wall_time=time.time(), step=int(step), summary=summary))

    def fit_start(self, info):
        self.close()
        self._open(info)

    def step_end(self, info):
        self._open(info)
        self.add_scalars(info["step"], {"train/loss": info.get("loss"),
                                        "train/rows_per_s": info.get("rows_per_s")})

    def epoch_end(self, info):
        self._open(info)
        self.add_scalars(info["epoch"], {f"epoch/{k}": info.get(k) for k in EPOCH_SCALARS})
        self.writer.flush()

    def fit_end(self, info):
        self.close()

    def close(self):
        """Flush and close the event file (also done at exit for a fit that failed before fit_end)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        _open_loggers.discard(self)


def _is_number(v):
    """True for ints and floats (numpy scalars included), not for None, bools or strings."""
    if v is None or isinstance(v, (bool, str, bytes)):
        return False
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


@atexit.register
def _close_open_loggers():
    for logger in list(_open_loggers):
        try:
            logger.close()
        except Exception:  # noqa: BLE001 - at exit, nothing can be done about it
            pass


@hookimpl
def register_loggers(register):
    register("tensorboard", TensorBoardLogger)
