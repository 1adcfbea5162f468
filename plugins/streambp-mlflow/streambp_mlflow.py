"""streambp plugin: the `mlflow` logger, recording each fit as an MLflow run.

    MLFLOW_TRACKING_URI=http://mlflow.example:5000 streambp fit data.parquet --out model.npz --logger mlflow

- `fit_start`: starts a run in the experiment `$STREAMBP_MLFLOW_EXPERIMENT` (default `streambp`, created
  when missing), on the tracking server of `$MLFLOW_TRACKING_URI` (else MLflow's default), named after the
  model file, and logs the parameters `sizes` (layer widths, as `5-64-3`), `rows`, `epochs`, `classes` (how
  many), `threads` and `files`, and the tag `streambp.version`.
- `epoch_end`: logs the metrics `train_loss`, `rows_per_s` and, with validation data, `val_loss` and
  `val_accuracy`, at step = the epoch (from 1).
- `fit_end`: logs the model file (`--out`) as an artifact and ends the run as FINISHED.

A fit that fails has no `fit_end`: its run is ended as FAILED when the process exits (what was logged
until then stays). MLflow is imported only when a fit uses the logger, so that installing the plugin does
not slow down every `streambp` command.

The `mlflow-skinny` dependency talks to tracking servers (http, https, databricks) and to local file
stores (`file:///path/mlruns`, which MLflow 3 accepts only with MLFLOW_ALLOW_FILE_STORE=true). MLflow's
default URI (`sqlite:///mlflow.db`) needs the full `mlflow` package (`pip install streambp-mlflow[full]`).
"""
import atexit
import importlib.util
import os
import time
import weakref
from pathlib import Path

import streambp
from streambp import hookimpl
from streambp.errors import StreambpError

__version__ = "0.1.0"

EXPERIMENT_ENV = "STREAMBP_MLFLOW_EXPERIMENT"
DEFAULT_EXPERIMENT = "streambp"
PARAMS = ("sizes", "rows", "epochs", "classes", "threads", "files")
METRICS = ("train_loss", "val_loss", "val_accuracy", "rows_per_s")
DATABASE_SCHEMES = ("sqlite", "mysql", "postgresql", "mssql")

_open_loggers = weakref.WeakSet()


def params_from(info):
    """fit_start's info as MLflow parameters (strings): sizes as 5-64-3, classes as their number."""
    params = {}
    for key in PARAMS:
        if key not in info or info[key] is None:
            continue
        value = info[key]
        if key == "sizes":
            value = "-".join(str(int(n)) for n in value)
        elif key == "classes":
            value = len(value)
        params[key] = str(value)
    return params


def metrics_from(info):
    """{name: float} of the epoch metrics in epoch_end's info (missing ones, and None, left out)."""
    out = {}
    for key in METRICS:
        value = info.get(key)
        if value is not None and not isinstance(value, bool):
            out[key] = float(value)
    return out


class MlflowLogger:
    """Records a fit as an MLflow run; see the module docstring. The arguments override the environment."""

    def __init__(self, tracking_uri=None, experiment=None, run_name=None):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.client = None
        self.run_id = None

    def fit_start(self, info):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        if self.run_id is not None:  # a second fit with the same logger object: a new run
            self._end("FINISHED")
        uri = self.tracking_uri or _tracking_uri()
        _check_store(uri)
        self.client = MlflowClient(tracking_uri=uri)
        name = self.experiment or os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
        experiment_id = self._experiment_id(name)
        out = info.get("out")
        run_name = self.run_name or (Path(out).stem if out else None)
        run = self.client.create_run(experiment_id, run_name=run_name,
                                     tags={"streambp.version": streambp.__version__})
        self.run_id = run.info.run_id
        _open_loggers.add(self)
        params = [Param(k, v) for k, v in params_from(info).items()]
        if params:
            self.client.log_batch(self.run_id, params=params)

    def _experiment_id(self, name):
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return self.client.create_experiment(name)
            except MlflowException:  # created meanwhile by another process
                experiment = self.client.get_experiment_by_name(name)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":
            raise StreambpError(f"The MLflow experiment {name!r} is deleted: restore it (mlflow "
                                f"experiments restore --experiment-id {experiment.experiment_id}) or set "
                                f"{EXPERIMENT_ENV} to another name.")
        return experiment.experiment_id

    def epoch_end(self, info):
        from mlflow.entities import Metric

        if self.run_id is None:
            return
        now = int(time.time() * 1000)
        step = int(info.get("epoch", 0))
        metrics = [Metric(k, v, now, step) for k, v in metrics_from(info).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def fit_end(self, info):
        if self.run_id is None:
            return
        out = info.get("out")
        if out and os.path.exists(out):
            self.client.log_artifact(self.run_id, os.fspath(out))
        self._end("FINISHED")

    def _end(self, status):
        run_id, self.run_id = self.run_id, None
        _open_loggers.discard(self)
        if run_id is not None:
            self.client.set_terminated(run_id, status)


def _tracking_uri():
    import mlflow

    return mlflow.get_tracking_uri()


def _check_store(uri):
    """A clear error for a database URI (MLflow's default) when only mlflow-skinny is installed."""
    scheme = str(uri).split(":", 1)[0].split("+", 1)[0].lower()
    if scheme in DATABASE_SCHEMES and importlib.util.find_spec("sqlalchemy") is None:
        where = ("set by MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI")
                 else "MLflow's default")
        raise StreambpError(
            f"The MLflow tracking URI {uri} ({where}) needs the full mlflow package: pip install "
            "'streambp-mlflow[full]', or set MLFLOW_TRACKING_URI to a tracking server (http://host:5000) or "
            "a local file store (file:///path/to/mlruns, with MLFLOW_ALLOW_FILE_STORE=true on MLflow 3).")


@atexit.register
def _fail_open_runs():
    """Runs started by a fit that never reached fit_end (it failed) end as FAILED."""
    for logger in list(_open_loggers):
        try:
            logger._end("FAILED")
        except Exception:  # noqa: BLE001 - at exit, nothing can be done about it
            pass


@hookimpl
def register_loggers(register):
    register("mlflow", MlflowLogger)
