"""Backpropagation against central finite differences, in float64."""
import numpy as np

from .model import Model, Workspace
from .kernels.network import network_loss
from .step import Stepper


def gradcheck(sizes, rows=8, seed=0, h=1e-3, max_params=None):
    """Largest relative error |g_bp - g_fd| / max(|g_bp| + |g_fd|, 1e-12) over the checked parameters.

    g_fd is the fourth-order central difference (8 (C(+h) - C(-h)) - (C(+2h) - C(-2h))) / 12h, whose
    truncation (about h^4) and rounding (about 1e-16 / h) errors both stay near 1e-12.
    A random float64 network of the given sizes is checked on a random batch of `rows` rows; with
    max_params, a random subset of that many parameters is checked. Returns (error, checked count).
    """
    rng = np.random.default_rng(seed)
    D, K = sizes[0], sizes[-1]
    model = Model.initialise(sizes, list(range(K)), [f"x{i}" for i in range(D)], seed=seed, dtype=np.float64)
    model.theta += rng.normal(0, 0.1, size=model.theta.shape)
    X = rng.normal(size=(rows, D))
    y = rng.integers(0, K, size=rows).astype(np.int32)
    stepper = Stepper(model, None, rows)
    stepper.loss_and_grad(X, y)
    grad = stepper.dtheta
    ws = Workspace(sizes, rows, np.float64)
    w = np.full(rows, 1.0 / rows)
    idx = np.arange(model.theta.size)
    if max_params is not None and max_params < idx.size:
        idx = rng.choice(idx, size=max_params, replace=False)
    worst = 0.0
    theta = model.theta
    for i in idx:
        old = theta[i]
        c = []
        for step in (h, -h, 2 * h, -2 * h):
            theta[i] = old + step
            c.append(network_loss(ws.acts, ws.losses, theta, model.layout, X, y, w))
        theta[i] = old
        fd = (8 * (c[0] - c[1]) - (c[2] - c[3])) / (12 * h)
        worst = max(worst, abs(grad[i] - fd) / max(abs(grad[i]) + abs(fd), 1e-12))
    return worst, idx.size
