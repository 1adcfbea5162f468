"""The mlflow logger: a small `streambp fit --logger mlflow` into a local file store in tmp_path, read back
with MlflowClient and compared with the training history saved in the model."""
import os
import sys
import traceback
from pathlib import Path

import pytest
from typer.testing import CliRunner

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # MLflow's documented telemetry opt-outs, set before
os.environ.setdefault("DO_NOT_TRACK", "true")  # mlflow is imported: these tests contact no host

import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient

import streambp
from streambp import hookimpl
from streambp.cli import app
from streambp.errors import StreambpError
from streambp.registry import loggers

try:
    import streambp_mlflow
except ImportError:  # not installed: import it from the plugin's folder
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import streambp_mlflow

pytest_plugins = ["streambp.testing"]  # register_plugin, blobs_parquet, run_in_tmp_path

FAST = ["--threads", "1", "--batch-size", "16", "--hidden", "4"]


@pytest.fixture(autouse=True)
def plugin(run_in_tmp_path, register_plugin, tmp_path, monkeypatch):
    """The plugin registered (by its entry point when installed, else here for this test), run in tmp_path
    with a file store in tmp_path/mlruns."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores without it
    monkeypatch.delenv(streambp_mlflow.EXPERIMENT_ENV, raising=False)
    return register_plugin(streambp_mlflow, "mlflow-test")


@pytest.fixture
def data(blobs_parquet):
    """600 rows: float32 columns x0..x4 and an int64 label with 3 classes (Gaussian blobs)."""
    return blobs_parquet


def run(*args):
    return CliRunner().invoke(app, ["fit", *map(str, args), *FAST])


def fit(*args):
    result = run(*args)
    if result.exit_code != 0:
        detail = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
        pytest.fail(f"streambp fit exited {result.exit_code}:\n{result.output}\n{detail}")
    return result


def only_run(experiment="streambp"):
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, runs
    return client, runs[0]


def history_of(client, run_id, key):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def test_registered(plugin):
    assert loggers.entries()["mlflow"][0].__name__ == "MlflowLogger"


def test_fit_records_a_run(tmp_path, data):
    out = tmp_path / "m.npz"
    fit(data, "--out", out, "--epochs", 3, "--val", data, "--logger", "mlflow")
    client, run = only_run()
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "m"
    assert run.data.params == {"sizes": "5-4-3", "rows": "600", "epochs": "3", "classes": "3",
                               "threads": "1", "files": "1"}
    assert run.data.tags["streambp.version"] == streambp.__version__
    history = streambp.load(out).training["history"]
    assert len(history) == 3
    for key in ("train_loss", "val_loss", "val_accuracy", "rows_per_s"):
        assert history_of(client, run.info.run_id, key) == [(h["epoch"], h[key]) for h in history], key
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["m.npz"]
    copy = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="m.npz",
                                               dst_path=str(tmp_path / "download"))
    assert Path(copy).read_bytes() == out.read_bytes()


def test_experiment_from_env_and_no_val(tmp_path, data, monkeypatch):
    monkeypatch.setenv("STREAMBP_MLFLOW_EXPERIMENT", "blobs")
    out = tmp_path / "m.npz"
    fit(data, "--out", out, "--epochs", 2, "--logger", "console", "--logger", "mlflow")
    client, run = only_run("blobs")
    assert client.get_experiment_by_name("streambp") is None
    assert set(run.data.metrics) == {"train_loss", "rows_per_s"}
    history = streambp.load(out).training["history"]
    assert history_of(client, run.info.run_id, "train_loss") == \
        [(h["epoch"], h["train_loss"]) for h in history]


def test_second_fit_is_a_second_run_in_the_same_experiment(tmp_path, data):
    for name in ("a", "b"):
        fit(data, "--out", tmp_path / f"{name}.npz", "--epochs", 1, "--logger", "mlflow")
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("streambp").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["a", "b"]
    assert {r.info.status for r in runs} == {"FINISHED"}


class StopAfterFirstEpoch:
    @hookimpl
    def epoch_end(self, info):
        raise StreambpError("stopped by the test")


def test_failed_fit_ends_the_run_as_failed_at_exit(tmp_path, data, register_plugin):
    register_plugin(StopAfterFirstEpoch(), "stop-test")
    result = run(data, "--out", tmp_path / "m.npz", "--epochs", 3, "--logger", "mlflow")
    assert result.exit_code == 2 and "stopped by the test" in result.output
    client, run_ = only_run()
    assert run_.info.status == "RUNNING"  # no fit_end
    assert [s for s, _ in history_of(client, run_.info.run_id, "train_loss")] == [1]
    streambp_mlflow._fail_open_runs()  # what atexit does
    assert client.get_run(run_.info.run_id).info.status == "FAILED"
    assert client.list_artifacts(run_.info.run_id) == []


def test_database_uri_without_sqlalchemy_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(streambp_mlflow.importlib.util, "find_spec",
                        lambda name, *a: None if name == "sqlalchemy" else object())
    with pytest.raises(StreambpError, match=r"sqlite:///mlflow.db .*streambp-mlflow\[full\]"):
        streambp_mlflow._check_store("sqlite:///mlflow.db")
    streambp_mlflow._check_store("http://localhost:5000")
    streambp_mlflow._check_store("file:///tmp/mlruns")


def test_deleted_experiment_is_a_clear_error(tmp_path):
    client = MlflowClient()
    client.delete_experiment(client.create_experiment("streambp"))
    with pytest.raises(StreambpError, match="is deleted"):
        streambp_mlflow.MlflowLogger().fit_start({"out": None, "sizes": [2, 2]})
