"""MLflow's documented telemetry opt-outs, set before mlflow is imported: the tests contact no host."""
import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
