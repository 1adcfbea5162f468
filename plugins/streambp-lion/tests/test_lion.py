"""streambp-lion: the kernel against a plain NumPy (float64) implementation of the paper's update, in float32
and float64, through the serial and the parallel build; the state round trip; errors; and `streambp fit
--optimizer lion` end to end, with the plugin registered by hand (installed or not)."""
import importlib.metadata
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from typer.testing import CliRunner

from streambp.cli import app
from streambp.errors import StreambpError
from streambp.kernels.compile import PARALLEL_MIN_ELEMENTS
from streambp.model import load
from streambp.plugins import reset_plugin_manager
from streambp.registry import describe_plugins, optimizers

# The package from this checkout, also when it is not installed (not in a conftest.py: streambp's own
# tests import helpers from theirs as `conftest`, which a second conftest.py would shadow).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import streambp_lion  # noqa: E402
from streambp_lion import Lion  # noqa: E402

pytest_plugins = ["streambp.testing"]  # register_plugin, make_blobs_parquet, run_in_tmp_path

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}
SIZES = {"serial": 37, "parallel": PARALLEL_MIN_ELEMENTS + 5}  # Lion picks its kernel build by size
STEPS = 5
LRS = [0.05, 0.1, 0.02, 0.07, 0.03]  # a different rate every step, as a schedule gives


# --- the paper's update, in plain NumPy (float64) -----------------------------------------------------

def ref_lion(theta, grads, lrs, beta1=0.9, beta2=0.99, weight_decay=0.0):
    """Chen et al. 2023, Algorithm 2 (Lion), with the learning rate of each step."""
    m = np.zeros_like(theta)
    for g, lr in zip(grads, lrs):
        c = beta1 * m + (1 - beta1) * g
        theta = theta - lr * (np.sign(c) + weight_decay * theta)
        m = beta2 * m + (1 - beta2) * g
    return theta, m


def problem(size, dtype, beta1=0.9, beta2=0.99, steps=STEPS, seed=0):
    """theta [P] and `steps` gradients [P] of the dtype, such that no interpolation c is within 1e-3 of 0.

    sign(c) jumps at 0: where c is a rounding error away from 0, float32 and float64 may disagree on its
    sign, and theta by 2 lr. c and m depend on the gradients only, so the gradients are nudged away from
    such ties up front, following m in float64.
    """
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=size).astype(dtype)
    m = np.zeros(size)
    grads = []
    for _ in range(steps):
        g = rng.normal(size=size).astype(dtype)
        near = np.abs(beta1 * m + (1 - beta1) * g.astype(np.float64)) < 1e-3
        g[near] += dtype(0.1 / (1 - beta1))  # moves c by 0.1
        m = beta2 * m + (1 - beta2) * g.astype(np.float64)
        grads.append(g)
    return theta, grads


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture(params=list(SIZES), ids=list(SIZES))
def size(request):
    return SIZES[request.param]


@pytest.mark.parametrize("hyper", [
    {}, {"weight_decay": 0.1}, {"beta1": 0.8, "beta2": 0.95, "weight_decay": 1.0}, {"beta1": 0.0},
], ids=["defaults", "wd", "betas-wd", "beta1=0"])
def test_against_reference(hyper, dtype, size):
    theta, grads = problem(size, dtype, **{k: v for k, v in hyper.items() if k.startswith("beta")})
    expected, expected_m = ref_lion(theta.astype(np.float64), [g.astype(np.float64) for g in grads], LRS,
                                    **hyper)
    opt = Lion(theta, **hyper)
    for g, lr in zip(grads, LRS):
        opt.step(theta, g, lr)
    assert theta.dtype == dtype
    assert_allclose(theta, expected, **TOL[dtype])
    state = opt.state_dict()
    assert state["step"] == STEPS
    assert state["exp_avg"].dtype == dtype
    assert_allclose(state["exp_avg"], expected_m, **TOL[dtype])


def test_step_rows_against_reference(dtype):
    """The base class's lazy step on rows of a table [V, O]: rows of both calls took two Lion steps, rows of
    the first one, the others none (and their momentum stays 0)."""
    V, O = 9, 4
    rows_1, rows_2 = np.array([6, 1, 3, 8]), np.array([3, 6])
    table, grads = problem(V * O, dtype, steps=2)
    table = table.reshape(V, O)
    before = table.copy()
    g1, g2 = grads[0].reshape(V, O)[rows_1], grads[1].reshape(V, O)[rows_2]
    opt = Lion(table.ravel(), weight_decay=0.1)
    opt.step_rows(table, rows_1, g1, LRS[0])
    opt.step_rows(table, rows_2, g2, LRS[1])
    exp_avg = opt.state_dict()["exp_avg"].reshape(V, O)
    for i, row in enumerate(rows_1):
        history = [g1[i]] + ([g2[list(rows_2).index(row)]] if row in rows_2 else [])
        expected, expected_m = ref_lion(before[row].astype(np.float64), [g.astype(np.float64) for g in history],
                                        LRS[:len(history)], weight_decay=0.1)
        assert_allclose(table[row], expected, **TOL[dtype])
        assert_allclose(exp_avg[row], expected_m, **TOL[dtype])
    untouched = [r for r in range(V) if r not in rows_1]
    assert_array_equal(table[untouched], before[untouched])
    assert not exp_avg[untouched].any()


def test_kernel_build_by_size():
    assert Lion(np.zeros(SIZES["serial"])).kernel is streambp_lion.kernels()[0]
    assert Lion(np.zeros(SIZES["parallel"])).kernel is streambp_lion.kernels()[1]


def test_sign_of_zero_is_zero():
    """On the first step with a zero gradient, c = 0: theta only decays (sign(0) = 0, as torch.sign)."""
    theta = np.array([1.0, -2.0, 0.5])
    Lion(theta).step(theta, np.zeros(3), 0.1)
    assert_array_equal(theta, [1.0, -2.0, 0.5])
    Lion(theta, weight_decay=0.5).step(theta, np.zeros(3), 0.1)
    assert_allclose(theta, np.array([1.0, -2.0, 0.5]) * (1 - 0.1 * 0.5))


def test_state_dict_round_trip(dtype, size):
    theta, grads = problem(size, dtype, beta1=0.8, beta2=0.9)
    opt = Lion(theta, beta1=0.8, beta2=0.9, weight_decay=0.01)
    for g in grads[:3]:
        opt.step(theta, g, 0.05)
    state = opt.state_dict()
    json.dumps(state["hyper"])  # plain values
    assert state["step"] == 3
    assert state["hyper"] == {"beta1": 0.8, "beta2": 0.9, "weight_decay": 0.01}

    resumed_theta = theta.copy()
    resumed = Lion(resumed_theta)  # built with the defaults: load_state_dict restores the hyper-parameters
    resumed.load_state_dict(state)
    assert resumed.hyper == opt.hyper and resumed.t == 3
    for g in grads[3:]:
        opt.step(theta, g, 0.05)
        resumed.step(resumed_theta, g, 0.05)
    assert_array_equal(resumed_theta, theta)
    assert_array_equal(resumed.state_dict()["exp_avg"], opt.state_dict()["exp_avg"])
    assert not np.array_equal(state["exp_avg"], opt.state_dict()["exp_avg"])  # state_dict() holds a copy


def test_no_allocation_per_step():
    theta, grads = problem(50, np.float32)
    opt = Lion(theta)
    exp_avg = opt.exp_avg
    for g in grads:
        opt.step(theta, g, 0.01)
    assert opt.exp_avg is exp_avg


@pytest.mark.parametrize("hyper,names", [
    ({"eps": 1e-8}, ["lion", "eps", "--eps", "beta1", "--weight-decay"]),
    ({"momentum": 0.9}, ["lion", "momentum", "--momentum"]),
    ({"beta1": 1.0}, ["beta1", "--beta1", "[0, 1)"]),
    ({"beta2": -0.1}, ["beta2", "--beta2", "-0.1"]),
    ({"weight_decay": -1}, ["weight_decay", "--weight-decay"]),
    ({"weight_decay": float("inf")}, ["weight_decay", "finite"]),
    ({"beta1": "0.9"}, ["beta1", "number"]),
    ({"beta1": True}, ["beta1", "number"]),
])
def test_invalid_hyper_parameters(hyper, names):
    with pytest.raises(StreambpError) as info:
        Lion(np.zeros(3, np.float32), **hyper)
    for name in names:
        assert name in str(info.value), str(info.value)


def test_load_state_dict_errors():
    theta = np.zeros(5)
    opt = Lion(theta)
    opt.step(theta, np.ones(5), 0.1)
    good = opt.state_dict()
    fresh = Lion(np.zeros(5), beta1=0.5)
    for bad, match in [
        ({k: v for k, v in good.items() if k != "exp_avg"}, "exp_avg"),
        ({**good, "exp_avg": np.zeros(6)}, "shape"),
        ({**good, "step": -1}, "step"),
        ({**good, "step": 1.5}, "step"),
        ({**good, "hyper": None}, "hyper"),
        ({**good, "hyper": {"beta1": 2.0}}, "beta1"),
        ([good], "state"),
    ]:
        with pytest.raises(StreambpError, match=match):
            fresh.load_state_dict(bad)
    # a failed load leaves the optimizer as it was
    assert fresh.t == 0 and fresh.hyper["beta1"] == 0.5 and not fresh.exp_avg.any()
    with pytest.raises(StreambpError, match="shape"):
        Lion(np.zeros(6)).load_state_dict(good)


def test_step_checks_shapes():
    opt = Lion(np.zeros(5, np.float32))
    with pytest.raises(ValueError):
        opt.step(np.zeros(6, np.float32), np.zeros(6, np.float32), 0.1)


# --- through streambp ---------------------------------------------------------------------------------

@pytest.fixture
def lion_plugin(run_in_tmp_path, register_plugin):
    """The plugin registered on streambp's plugin manager for one test (already there if installed), run in
    tmp_path."""
    return register_plugin(streambp_lion, "lion")


@pytest.fixture
def data(make_blobs_parquet):
    """A Parquet file of 300 rows: three Gaussian blobs in 4 float32 columns and an int64 label."""
    return make_blobs_parquet(rows=300, features=4, row_group_size=None)


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


FAST = ["--threads", "1", "--batch-size", "16", "--hidden", "8"]


def test_registered(lion_plugin):
    assert optimizers.owner("lion") == "lion"
    assert isinstance(optimizers.get("lion")[0](np.zeros(3)), Lion)


def test_fit_with_lion(lion_plugin, tmp_path, data):
    out = tmp_path / "m.npz"
    result = cli("fit", data, "--out", out, "--epochs", "4", *FAST, "--optimizer", "lion", "--lr", "0.001")
    assert result.exit_code == 0, result.output
    model = load(out)
    assert model.training["config"]["optimizer"] == "lion"
    history = model.training["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_fit_passes_hyper_parameters(lion_plugin, tmp_path, data):
    out = tmp_path / "m.npz"
    result = cli("fit", data, "--out", out, "--epochs", "1", *FAST, "--optimizer", "lion", "--lr", "0.001",
                 "--beta1", "0.95", "--beta2", "0.98", "--weight-decay", "0.1")
    assert result.exit_code == 0, result.output
    params = load(out).training["config"]["optimizer_params"]
    assert params == {"beta1": 0.95, "beta2": 0.98, "weight_decay": 0.1}


def test_fit_rejects_eps(lion_plugin, tmp_path, data):
    out = tmp_path / "m.npz"
    result = cli("fit", data, "--out", out, "--epochs", "1", *FAST, "--optimizer", "lion", "--eps", "1e-8")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = " ".join(result.stderr.split())
    assert message.startswith("Error:") and "lion" in message and "--eps" in message, message
    assert not out.exists()


def test_entry_point(monkeypatch):
    """Installed (pip install -e plugins/streambp-lion), the entry point registers it."""
    dist = importlib.metadata.distribution("streambp-lion")  # the test command installs it
    monkeypatch.delenv("STREAMBP_LOAD_PLUGINS", raising=False)
    reset_plugin_manager()
    try:
        entry = next(p for p in describe_plugins() if p["name"] == "lion")
        assert entry == {"name": "lion", "hooks": ["register_optimizers"],
                         "registers": {"optimizer": ["lion"]}, "distribution": "streambp-lion",
                         "version": dist.version}
        result = cli("plugins")
        assert result.exit_code == 0, result.output
        assert "lion (streambp-lion" in result.output
        monkeypatch.setenv("STREAMBP_LOAD_PLUGINS", "")
        reset_plugin_manager()
        assert "lion" not in optimizers.entries()
    finally:
        monkeypatch.delenv("STREAMBP_LOAD_PLUGINS", raising=False)
        reset_plugin_manager()
