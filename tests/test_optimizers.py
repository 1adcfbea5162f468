"""The built-in optimizers against plain NumPy (float64) implementations of PyTorch's published update
rules, in float32 and float64, through the serial and the parallel kernel builds; state round trips;
hyper-parameter errors; the `fit` options that reach them."""
import json
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from typer.testing import CliRunner

from streambp.cli import app
from streambp.default_plugins.optimizers import SGD, AdaGrad, Adam, AdamW, RMSprop
from streambp.errors import StreambpError
from streambp.kernels.compile import PARALLEL_MIN_ELEMENTS
from streambp.kernels.optim import adagrad_update, adam_update, rmsprop_update, sgd_momentum_update
from streambp.model import load
from streambp.registry import optimizers

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}
SIZES = {"serial": 37, "parallel": PARALLEL_MIN_ELEMENTS + 5}
STEPS = 5
LRS = [0.05, 0.1, 0.02, 0.07, 0.03]  # a different rate every step, as a schedule gives


# --- NumPy references (float64), written from the formulas in PyTorch's documentation --------------

def ref_sgd(theta, grads, lrs, momentum=0.0, nesterov=False, weight_decay=0.0):
    buf = None
    for g, lr in zip(grads, lrs):
        g = g + weight_decay * theta
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + g
            g = g + momentum * buf if nesterov else buf
        theta = theta - lr * g
    return theta, {} if buf is None else {"momentum_buffer": buf}


def ref_adam(theta, grads, lrs, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False, beta1=None,
             beta2=None):
    b1, b2 = beta1 if beta1 is not None else betas[0], beta2 if beta2 is not None else betas[1]
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        if decoupled:
            theta = theta * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    return theta, {"exp_avg": m, "exp_avg_sq": v}


def ref_adamw(theta, grads, lrs, weight_decay=0.01, **hyper):
    return ref_adam(theta, grads, lrs, weight_decay=weight_decay, decoupled=True, **hyper)


def ref_adagrad(theta, grads, lrs, eps=1e-10, weight_decay=0.0, lr_decay=0.0, initial_accumulator_value=0.0):
    s = np.full_like(theta, initial_accumulator_value)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        clr = lr / (1 + (t - 1) * lr_decay)
        g = g + weight_decay * theta
        s = s + g * g
        theta = theta - clr * g / (np.sqrt(s) + eps)
    return theta, {"sum": s}


def ref_rmsprop(theta, grads, lrs, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0):
    v = np.zeros_like(theta)
    buf = np.zeros_like(theta)
    for g, lr in zip(grads, lrs):
        g = g + weight_decay * theta
        v = alpha * v + (1 - alpha) * g * g
        d = g / (np.sqrt(v) + eps)
        if momentum > 0:
            buf = momentum * buf + d
            theta = theta - lr * buf
        else:
            theta = theta - lr * d
    return theta, {"square_avg": v, **({"momentum_buffer": buf} if momentum > 0 else {})}


CASES = [
    (SGD, ref_sgd, {}),
    (SGD, ref_sgd, {"weight_decay": 0.1}),
    (SGD, ref_sgd, {"momentum": 0.9}),
    (SGD, ref_sgd, {"momentum": 0.9, "nesterov": True}),
    (SGD, ref_sgd, {"momentum": 0.5, "nesterov": True, "weight_decay": 0.05}),
    (Adam, ref_adam, {}),
    (Adam, ref_adam, {"weight_decay": 0.1}),
    (Adam, ref_adam, {"betas": (0.8, 0.99), "eps": 1e-6}),
    (Adam, ref_adam, {"beta2": 0.9}),
    (AdamW, ref_adamw, {}),
    (AdamW, ref_adamw, {"weight_decay": 0.2, "beta1": 0.5}),
    (AdaGrad, ref_adagrad, {}),
    (AdaGrad, ref_adagrad, {"weight_decay": 0.1, "lr_decay": 0.05, "initial_accumulator_value": 0.1, "eps": 1e-6}),
    (RMSprop, ref_rmsprop, {}),
    (RMSprop, ref_rmsprop, {"momentum": 0.9}),
    (RMSprop, ref_rmsprop, {"alpha": 0.9, "eps": 1e-6, "weight_decay": 0.1, "momentum": 0.5}),
]
CASE_IDS = [f"{cls.name}-{'-'.join(f'{k}={v}' for k, v in hyper.items()) or 'defaults'}" for cls, _, hyper in CASES]


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture(params=list(SIZES), ids=list(SIZES))
def size(request):
    return SIZES[request.param]


def problem(size, dtype, steps=STEPS, seed=0):
    """theta [P] and `steps` gradients [P] of the dtype."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=size).astype(dtype)
    grads = [rng.normal(size=size).astype(dtype) for _ in range(steps)]
    return theta, grads


@pytest.mark.parametrize("cls,ref,hyper", CASES, ids=CASE_IDS)
def test_against_reference(cls, ref, hyper, dtype, size):
    theta, grads = problem(size, dtype)
    expected, expected_state = ref(theta.astype(np.float64), [g.astype(np.float64) for g in grads], LRS, **hyper)
    opt = cls(theta, **hyper)
    for g, lr in zip(grads, LRS):
        opt.step(theta, g, lr)
    assert theta.dtype == dtype
    assert_allclose(theta, expected, **TOL[dtype])
    state = opt.state_dict()
    assert state["step"] == STEPS
    for name, value in expected_state.items():
        assert state[name].dtype == dtype
        assert_allclose(state[name], value, **TOL[dtype], err_msg=name)


@pytest.mark.parametrize("cls,ref,hyper", CASES, ids=CASE_IDS)
def test_state_dict_round_trip(cls, ref, hyper, dtype, size):
    theta, grads = problem(size, dtype)
    opt = cls(theta, **hyper)
    for g in grads[:3]:
        opt.step(theta, g, 0.05)
    state = opt.state_dict()
    json.dumps(state["hyper"])  # plain values
    assert state["step"] == 3

    resumed_theta = theta.copy()
    resumed = cls(resumed_theta)  # built with the defaults: load_state_dict restores the hyper-parameters
    resumed.load_state_dict(state)
    assert resumed.hyper == opt.hyper
    for g in grads[3:]:
        opt.step(theta, g, 0.05)
        resumed.step(resumed_theta, g, 0.05)
    assert_array_equal(resumed_theta, theta)
    a, b = opt.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        if isinstance(a[name], np.ndarray):
            assert_array_equal(a[name], b[name])
    # state_dict() holds copies: stepping on does not change a saved state
    saved = {k: v.copy() for k, v in state.items() if isinstance(v, np.ndarray)}
    for name, value in saved.items():
        assert_array_equal(state[name], value)


# --- step_rows: a lazy step on some rows of a 2-D table ---------------------------------------------------

V, O = 9, 4
ROWS_1 = np.array([6, 1, 3, 8], dtype=np.int64)  # unique, in no particular order
ROWS_2 = np.array([3, 6], dtype=np.int64)  # a subset: those rows have taken both steps


def sparse_problem(dtype, seed=1):
    """A table [V, O] and the gradients of the rows of each of two steps."""
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(V, O)).astype(dtype)
    return table, rng.normal(size=(ROWS_1.size, O)).astype(dtype), rng.normal(size=(ROWS_2.size, O)).astype(dtype)


def check_step_rows(cls, ref, hyper, dtype):
    """Two step_rows calls against the NumPy reference run on each row's own history: rows of both calls
    took steps 1 and 2, rows of the first only step 1 (a step counter that is not the optimizer's would
    change Adam's bias correction), the others nothing, and neither did their state."""
    table, g1, g2 = sparse_problem(dtype)
    before = table.copy()
    opt = cls(table.ravel(), **hyper)
    initial = {k: v.copy() for k, v in opt.state.items()}
    opt.step_rows(table, ROWS_1, g1, LRS[0])
    opt.step_rows(table, ROWS_2, g2, LRS[1])
    assert opt.t == 2
    state = {k: v.reshape(V, O) for k, v in opt.state_dict().items() if isinstance(v, np.ndarray)}
    for i, row in enumerate(ROWS_1):
        grads = [g1[i].astype(np.float64)]
        if row in ROWS_2:
            grads.append(g2[list(ROWS_2).index(row)].astype(np.float64))
        expected, expected_state = ref(before[row].astype(np.float64), grads, LRS[:len(grads)], **hyper)
        assert_allclose(table[row], expected, **TOL[dtype], err_msg=f"row {row}")
        for name, value in expected_state.items():
            assert_allclose(state[name][row], value, **TOL[dtype], err_msg=f"{name} of row {row}")
    untouched = [r for r in range(V) if r not in ROWS_1]
    assert_array_equal(table[untouched], before[untouched])
    for name, value in initial.items():
        assert_array_equal(state[name][untouched], value.reshape(V, O)[untouched], err_msg=name)


@pytest.mark.parametrize("cls,ref,hyper", CASES, ids=CASE_IDS)
def test_step_rows_against_reference(cls, ref, hyper, dtype):
    check_step_rows(cls, ref, hyper, dtype)


def test_step_rows_checks_its_arguments():
    table, g1, _ = sparse_problem(np.float64)
    opt = SGD(table.ravel())
    with pytest.raises(ValueError, match="table"):
        opt.step_rows(table[:, :2], ROWS_1, g1[:, :2], 0.1)  # not the table it was built for
    with pytest.raises(ValueError, match="int64"):
        opt.step_rows(table, ROWS_1.astype(np.int32), g1, 0.1)
    with pytest.raises(ValueError, match="grads"):
        opt.step_rows(table, ROWS_1, g1[:2], 0.1)
    assert opt.t == 0


def test_plain_sgd_uses_sgd_update():
    theta = np.ones(4, np.float32)
    assert SGD(theta).plain
    assert not SGD(theta, weight_decay=0.1).plain
    assert SGD(theta).state_dict() == {"step": 0, "hyper": {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0}}


def test_registered():
    for name, cls in [("sgd", SGD), ("adam", Adam), ("adamw", AdamW), ("adagrad", AdaGrad), ("rmsprop", RMSprop)]:
        assert optimizers.get(name)[0] is cls


def test_no_allocation_per_step(dtype):
    """The state arrays are the same objects after steps (updated in place)."""
    theta, grads = problem(50, dtype)
    for cls, _, hyper in CASES:
        opt = cls(theta.copy(), **hyper)
        arrays = {k: id(v) for k, v in opt.state.items()}
        t = theta.copy()
        for g in grads:
            opt.step(t, g, 0.01)
        assert {k: id(v) for k, v in opt.state.items()} == arrays


# --- the serial and parallel builds give the same bits -------------------------------------------------

def builds(kernel):
    g = kernel.py_func.__globals__
    return g["serial"], g["parallel"]


def test_parallel_builds_match_serial(dtype):
    P = PARALLEL_MIN_ELEMENTS + 3
    theta, (g, s1, s2) = problem(P, dtype, steps=3)
    s1, s2 = np.abs(s1), np.abs(s2)
    d = dtype
    calls = [
        (sgd_momentum_update, lambda: (theta.copy(), s1.copy(), g, d(0.1), d(0.9), d(0.9), d(0.01), 1)),
        (sgd_momentum_update, lambda: (theta.copy(), s1.copy(), g, d(0.1), d(0.9), d(0.9), d(0.01), 2)),
        (sgd_momentum_update, lambda: (theta.copy(), s1[:0].copy(), g, d(0.1), d(0), d(0), d(0.01), 0)),
        (adam_update, lambda: (theta.copy(), s1.copy(), s2.copy(), g, d(0.1), d(0.9), d(0.1), d(0.999), d(0.001),
                               d(1.5), d(1e-8), d(0.01), d(0.999))),
        (adagrad_update, lambda: (theta.copy(), s1.copy(), g, d(0.1), d(1e-10), d(0.01))),
        (rmsprop_update, lambda: (theta.copy(), s1.copy(), s2.copy(), g, d(0.1), d(0.99), d(0.01), d(1e-8), d(0.01),
                                  d(0.9))),
        (rmsprop_update, lambda: (theta.copy(), s1.copy(), s2[:0].copy(), g, d(0.1), d(0.99), d(0.01), d(1e-8),
                                  d(0.01), d(0))),
    ]
    for kernel, make_args in calls:
        outs = []
        for fn in builds(kernel):
            args = make_args()
            fn(*args)
            outs.append(args)
        for a, b in zip(*outs):
            if isinstance(a, np.ndarray):
                assert_array_equal(a, b)


# --- errors --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls,hyper,names", [
    (SGD, {"momentum": -0.1}, ["sgd", "momentum", "--momentum", "-0.1"]),
    (SGD, {"momentum": 1.5}, ["momentum", "[0, 1)"]),
    (SGD, {"momentum": math.nan}, ["momentum", "nan"]),
    (SGD, {"momentum": "0.9"}, ["momentum", "number"]),
    (SGD, {"nesterov": True}, ["nesterov", "--momentum"]),
    (SGD, {"momentum": 0.9, "nesterov": "yes"}, ["nesterov"]),
    (SGD, {"weight_decay": -1}, ["weight_decay", "--weight-decay"]),
    (SGD, {"betas": (0.9, 0.99)}, ["sgd", "betas", "momentum", "nesterov", "weight_decay"]),
    (Adam, {"momentum": 0.9}, ["adam", "momentum", "--beta1", "eps", "weight_decay"]),
    (Adam, {"betas": (1.0, 0.999)}, ["beta1", "[0, 1)"]),
    (Adam, {"beta2": -0.5}, ["beta2", "--beta2"]),
    (Adam, {"betas": (0.9,)}, ["betas", "pair"]),
    (Adam, {"betas": (0.9, 0.99), "beta1": 0.8}, ["betas", "beta1"]),
    (Adam, {"eps": -1e-8}, ["eps", "--eps"]),
    (AdamW, {"weight_decay": -0.01}, ["adamw", "weight_decay"]),
    (AdaGrad, {"lr_decay": -1}, ["adagrad", "lr_decay"]),
    (AdaGrad, {"momentum": 0.9}, ["adagrad", "momentum", "eps", "lr_decay"]),
    (RMSprop, {"alpha": 1.0}, ["rmsprop", "alpha"]),
    (RMSprop, {"momentum": -1}, ["rmsprop", "momentum"]),
    (RMSprop, {"centered": True}, ["rmsprop", "centered", "alpha"]),
])
def test_invalid_hyper_parameters(cls, hyper, names):
    with pytest.raises(StreambpError) as info:
        cls(np.zeros(3, np.float32), **hyper)
    for name in names:
        assert name in str(info.value), str(info.value)


def test_load_state_dict_errors():
    theta = np.zeros(5, np.float64)
    opt = Adam(theta)
    opt.step(theta, np.ones(5), 0.1)
    good = opt.state_dict()
    with pytest.raises(StreambpError, match="shape"):
        Adam(np.zeros(6)).load_state_dict(good)
    with pytest.raises(StreambpError, match="exp_avg_sq"):
        Adam(theta).load_state_dict({k: v for k, v in good.items() if k != "exp_avg_sq"})
    with pytest.raises(StreambpError, match="step"):
        Adam(theta).load_state_dict({**good, "step": -1})
    with pytest.raises(StreambpError, match="hyper"):
        Adam(theta).load_state_dict({"step": 1})
    with pytest.raises(StreambpError, match="beta1"):
        Adam(theta).load_state_dict({**good, "hyper": {**good["hyper"], "betas": (2, 0.9)}})
    sgd = SGD(theta)
    with pytest.raises(StreambpError, match="momentum_buffer"):  # momentum needs its buffer
        sgd.load_state_dict({"step": 1, "hyper": {"momentum": 0.9}})
    assert sgd.hyper["momentum"] == 0  # a failed load leaves the optimizer as it was


def test_step_checks_shapes():
    opt = Adam(np.zeros(5, np.float32))
    with pytest.raises(ValueError):
        opt.step(np.zeros(6, np.float32), np.zeros(6, np.float32), 0.1)


# --- command line --------------------------------------------------------------------------------------

FAST = ["--threads", "1", "--batch-size", "16", "--hidden", "8"]


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("extra", [
    ["--optimizer", "adam", "--lr", "0.01"],
    ["--optimizer", "sgd", "--momentum", "0.9", "--nesterov", "--weight-decay", "1e-4", "--lr-schedule", "cosine",
     "--warmup-steps", "5"],
], ids=["adam", "sgd-nesterov-cosine"])
def test_cli_trains(tmp_path, blob_file, extra):
    out = tmp_path / "m.npz"
    result = cli("fit", blob_file, "--out", out, "--epochs", "3", *FAST, *extra)
    assert result.exit_code == 0, result.output
    history = load(out).training["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_cli_passes_only_given_options(tmp_path, blob_file):
    out = tmp_path / "m.npz"
    result = cli("fit", blob_file, "--out", out, "--epochs", "1", *FAST, "--optimizer", "adamw", "--beta2", "0.99",
                 "--lr-schedule", "step", "--lr-gamma", "0.5")
    assert result.exit_code == 0, result.output
    config = load(out).training["config"]
    assert config["optimizer_params"] == {"beta2": 0.99}
    assert config["lr_schedule"] == "step" and config["lr_schedule_params"] == {"gamma": 0.5}


@pytest.mark.parametrize("extra,names", [
    (["--optimizer", "adam", "--momentum", "0.9"], ["adam", "--momentum", "--beta1", "--eps", "--weight-decay"]),
    (["--optimizer", "sgd", "--beta1", "0.9"], ["sgd", "--beta1", "--momentum"]),
    (["--optimizer", "sgd", "--nesterov"], ["nesterov", "--momentum"]),
    (["--optimizer", "rmsprop", "--momentum", "-1"], ["rmsprop", "--momentum", "-1"]),
    (["--lr-schedule", "cosine", "--lr-gamma", "0.5"], ["cosine", "--lr-gamma", "--lr-min"]),
    (["--lr-schedule", "nope"], ["nope", "cosine"]),
    (["--warmup-steps", "-1"], ["--warmup-steps"]),
])
def test_cli_rejects(tmp_path, blob_file, extra, names):
    out = tmp_path / "m.npz"
    result = cli("fit", blob_file, "--out", out, "--epochs", "1", *FAST, *extra)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = " ".join(result.stderr.split())
    assert message.startswith("Error:"), message
    for name in names:
        assert name in message, message
    assert not out.exists()
