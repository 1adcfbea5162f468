"""Backpropagation against central finite differences, in float64."""
from types import SimpleNamespace

import numpy as np

from .model import Model, Workspace
from .kernels.network import network_loss
from .step import Stepper


def gradcheck(sizes, rows=8, seed=0, h=1e-3, max_params=None, slots=0, columns=0):
    """Largest relative error |g_bp - g_fd| / max(|g_bp| + |g_fd|, 1e-12) over the checked parameters.

    g_fd is the fourth-order central difference (8 (C(+h) - C(-h)) - (C(+2h) - C(-2h))) / 12h, whose
    truncation (about h^4) and rounding (about 1e-16 / h) errors both stay near 1e-12.
    A random float64 network of the given sizes is checked on a random batch of `rows` rows; with slots > 0
    and columns > 0, its first layer also has an embedding table E [slots, sizes[1]] and the batch `columns`
    categorical columns of random slots (repeats included), and E is checked too: its rows the batch touches
    through the scatter-add of their gradient, the others by their gradient being exactly 0.
    With max_params, a random subset of that many parameters is checked. Returns (error, checked count).
    """
    rng = np.random.default_rng(seed)
    D, O1, K = sizes[0], sizes[1], sizes[-1]
    dense = Model.initialise(sizes, list(range(K)), [f"x{i}" for i in range(D)], seed=seed, dtype=np.float64)
    theta = np.concatenate([dense.theta, rng.uniform(-1, 1, size=slots * O1)])
    theta += rng.normal(0, 0.1, size=theta.shape)
    model = SimpleNamespace(theta=theta, layout=dense.layout, sizes=dense.sizes, slots=slots)
    X = rng.normal(size=(rows, D))
    idx = rng.integers(0, slots, size=(rows, columns if slots else 0)).astype(np.int32)
    y = rng.integers(0, K, size=rows).astype(np.int32)
    stepper = Stepper(model, None, rows)
    stepper.loss_and_grad(X, idx, y)
    grad = np.zeros_like(theta)
    grad[:stepper.dense] = stepper.dtheta
    grad[stepper.dense:].reshape(slots, O1)[stepper.table_rows] = stepper.dtable_rows
    ws = Workspace(sizes, rows, np.float64)
    w = np.full(rows, 1.0 / rows)
    params = np.arange(theta.size)
    if max_params is not None and max_params < params.size:
        params = rng.choice(params, size=max_params, replace=False)
    worst = 0.0
    for i in params:
        old = theta[i]
        c = []
        for step in (h, -h, 2 * h, -2 * h):
            theta[i] = old + step
            c.append(network_loss(ws.acts, ws.losses, theta, model.layout, X, idx, y, w))
        theta[i] = old
        fd = (8 * (c[0] - c[1]) - (c[2] - c[3])) / (12 * h)
        worst = max(worst, abs(grad[i] - fd) / max(abs(grad[i]) + abs(fd), 1e-12))
    return worst, params.size
