"""streambp-onnx: exported graphs run in onnxruntime give model.predict_proba (with and without
--standardize, with 0, 1 and 2 hidden layers, float32 and float64 models); the metadata; the command line,
through a Typer app that the plugin's register_commands hook fills (installed or not), and its user errors."""
import importlib.metadata
import json
import sys
import traceback
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from numpy.testing import assert_allclose
import onnxruntime as ort
from typer.testing import CliRunner

# The package from this checkout, also when it is not installed (not in a conftest.py: streambp's own
# tests import helpers from theirs as `conftest`, which a second conftest.py would shadow).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import streambp_onnx  # noqa: E402
from streambp.model import Model, load  # noqa: E402
from streambp.plugins import call_hook, reset_plugin_manager  # noqa: E402
from streambp.registry import describe_plugins  # noqa: E402
from streambp.train import FitConfig, fit  # noqa: E402

ROWS, D, K = 300, 5, 3


pytest_plugins = ["streambp.testing"]
pytestmark = pytest.mark.usefixtures("run_in_tmp_path")  # default output paths never land in the checkout


def blobs(seed=0):
    """X float32 [ROWS, D], far from standardised (offset and scaled columns), and string labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(K, D))
    y = rng.integers(0, K, size=ROWS)
    X = (centers[y] + rng.normal(size=(ROWS, D))) * np.array([1, 3, 0.3, 5, 1]) + np.array([0, 5, -3, 0, 2])
    return X.astype(np.float32), np.array(["cat", "dog", "eel"])[y]


@pytest.fixture
def data(tmp_path):
    X, y = blobs()
    path = tmp_path / "blobs.parquet"
    pq.write_table(pa.table({**{f"x{j}": X[:, j] for j in range(D)}, "label": y}), path)
    return path


def train(data, path, hidden=(8,), standardize=False, dtype="float32"):
    fit(FitConfig(data=str(data), hidden=list(hidden), epochs=2, batch_size=16, lr=0.5, threads=1,
                  standardize=standardize, dtype=dtype, out=str(path), loggers=[]))
    return path


def run_onnx(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["X"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    return session.run(["probabilities"], {"X": X})[0], session.get_modelmeta().custom_metadata_map


@pytest.mark.parametrize("standardize", [False, True], ids=["raw", "standardized"])
@pytest.mark.parametrize("hidden", [(8,), (), (8, 6)], ids=["1-hidden", "0-hidden", "2-hidden"])
def test_matches_predict_proba(tmp_path, data, standardize, hidden):
    model = load(train(data, tmp_path / "m.npz", hidden, standardize))
    assert (model.mean is not None) == standardize
    streambp_onnx.export(tmp_path / "m.npz", tmp_path / "m.onnx")
    X, _ = blobs(seed=1)  # other rows than the training rows
    probs, meta = run_onnx(tmp_path / "m.onnx", X)
    assert probs.dtype == np.float32 and probs.shape == (ROWS, K)
    assert_allclose(probs, model.predict_proba(X), rtol=0, atol=1e-5)
    assert ((probs > 0.05) & (probs < 0.95)).mean() > 0.05  # not saturated: the comparison means something
    assert json.loads(meta["classes"]) == ["cat", "dog", "eel"]
    assert json.loads(meta["features"]) == [f"x{j}" for j in range(D)]
    assert json.loads(meta["standardized"]) is standardize
    assert json.loads(meta["sizes"]) == [D, *hidden, K]


def test_float64_model(tmp_path, data):
    model = load(train(data, tmp_path / "m.npz", standardize=True, dtype="float64"))
    streambp_onnx.export(tmp_path / "m.npz", tmp_path / "m.onnx")
    X, _ = blobs(seed=1)
    probs, _ = run_onnx(tmp_path / "m.onnx", X)
    assert_allclose(probs, model.predict_proba(X), rtol=0, atol=1e-5)


def test_graph():
    """The graph's nodes, in order, for a standardised 2-hidden-layer model built in Python."""
    model = Model.initialise([4, 3, 2, 2], classes=[np.int64(0), np.int64(7)], features=list("abcd"),
                             mean=np.zeros(4), inv_std=np.ones(4))
    proto = streambp_onnx.to_onnx(model, opset=13)
    assert [n.op_type for n in proto.graph.node] == ["Sub", "Mul", "Gemm", "Sigmoid", "Gemm", "Sigmoid",
                                                      "Gemm", "Softmax"]
    assert [a.i for a in proto.graph.node[2].attribute if a.name == "transB"] == [1]
    assert [a.i for a in proto.graph.node[-1].attribute if a.name == "axis"] == [1]
    assert proto.opset_import[0].version == 13
    assert {p.key: p.value for p in proto.metadata_props}["classes"] == "[0, 7]"
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert (dims[0].dim_param, dims[1].dim_value) == ("N", 4)


# --- command line -------------------------------------------------------------------------------------

@pytest.fixture
def app():
    """A Typer app filled by the plugin's register_commands hook, as streambp's own app is when the plugin
    is installed (a callback keeps it a group of commands, as streambp's)."""
    app = typer.Typer()

    @app.callback()
    def main():
        pass

    streambp_onnx.register_commands(app)
    return app


def invoke(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli(app, tmp_path, data):
    train(data, tmp_path / "m.npz")
    result = invoke(app, "export-onnx", tmp_path / "m.npz", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output + "".join(traceback.format_exception(*result.exc_info))
    assert (tmp_path / "m.onnx").is_file()
    assert "Wrote" in result.output and "['cat', 'dog', 'eel']" in result.output
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []  # no temporary file left


def user_error(app, *args):
    result = invoke(app, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    message = " ".join(result.stderr.split())
    assert message.startswith("Error:"), message
    return message


def test_cli_missing_model(app, tmp_path):
    message = user_error(app, "export-onnx", tmp_path / "nope.npz", tmp_path / "m.onnx")
    assert "nope.npz" in message and "does not exist" in message
    assert not (tmp_path / "m.onnx").exists()


def test_cli_other_user_errors(app, tmp_path, data):
    (tmp_path / "not-a-model.npz").write_bytes(b"hello")
    model, onnx_file = tmp_path / "m.npz", tmp_path / "m.onnx"
    message = user_error(app, "export-onnx", tmp_path / "not-a-model.npz", onnx_file)
    assert "not a streambp model" in message
    train(data, model)
    assert "does not exist" in user_error(app, "export-onnx", model, tmp_path / "no-dir" / "m.onnx")
    (tmp_path / "old.onnx").write_bytes(b"previous")
    assert "--opset" in user_error(app, "export-onnx", model, tmp_path / "old.onnx", "--opset", "9")
    assert (tmp_path / "old.onnx").read_bytes() == b"previous"  # left as it was


def test_entry_point(monkeypatch, tmp_path, data):
    """Installed (pip install -e plugins/streambp-onnx), the entry point loads it and its hook adds the
    command (to a fresh app here: streambp.cli.app got its commands when it was first imported)."""
    dist = importlib.metadata.distribution("streambp-onnx")  # the test command installs it
    monkeypatch.delenv("STREAMBP_LOAD_PLUGINS", raising=False)
    reset_plugin_manager()
    try:
        entry = next(p for p in describe_plugins() if p["name"] == "onnx")
        assert entry == {"name": "onnx", "hooks": ["register_commands"], "registers": {},
                         "distribution": "streambp-onnx", "version": dist.version}
        app = typer.Typer()

        @app.callback()
        def main():
            pass

        call_hook("register_commands", app=app)
        train(data, tmp_path / "m.npz")
        result = invoke(app, "export-onnx", tmp_path / "m.npz", tmp_path / "m.onnx")
        assert result.exit_code == 0, result.output
        assert (tmp_path / "m.onnx").is_file()
        assert "nope.npz" in user_error(app, "export-onnx", tmp_path / "nope.npz", tmp_path / "x.onnx")
    finally:
        reset_plugin_manager()
