"""Optimizer updates over the flat parameter buffer: each one fused pass over theta[P] and its state.

Dimension key: P parameters. Every array has theta's dtype, and so does every scalar argument (the
optimizer classes in streambp/default_plugins/optimizers.py convert them), so float32 updates stay in
float32. Factors that change from step to step (Adam's bias corrections, the first step of momentum)
are computed by the caller and passed in. The update rules are PyTorch's (torch.optim).
"""
import numpy as np
from numba import prange

from .compile import by_size


def _sgd_update(theta, dtheta, lr):
    """theta[P] <- theta - lr * dtheta[P]."""
    for i in prange(theta.shape[0]):
        theta[i] -= lr * dtheta[i]


sgd_update = by_size(_sgd_update)


def _sgd_momentum_update(theta, buf, dtheta, lr, momentum, keep, weight_decay, mode):
    """SGD with weight decay and (Nesterov) momentum, dampening 0 (torch.optim.SGD).

    g = dtheta + weight_decay * theta, then by mode:
      0 (no momentum; buf is not used): theta -= lr * g
      1 (momentum):  buf = keep * buf + g; theta -= lr * buf
      2 (Nesterov):  buf = keep * buf + g; theta -= lr * (g + momentum * buf)
    keep is momentum, or 0 on the first step (PyTorch starts the buffer at g).
    """
    if mode == 0:
        for i in prange(theta.shape[0]):
            g = dtheta[i] + weight_decay * theta[i]
            theta[i] -= lr * g
    elif mode == 1:
        for i in prange(theta.shape[0]):
            g = dtheta[i] + weight_decay * theta[i]
            b = keep * buf[i] + g
            buf[i] = b
            theta[i] -= lr * b
    else:
        for i in prange(theta.shape[0]):
            g = dtheta[i] + weight_decay * theta[i]
            b = keep * buf[i] + g
            buf[i] = b
            theta[i] -= lr * (g + momentum * b)


sgd_momentum_update = by_size(_sgd_momentum_update)


def _adam_update(theta, m, v, dtheta, step_size, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_sqrt_bc2,
                 eps, weight_decay, decay):
    """Adam (torch.optim.Adam) and AdamW (torch.optim.AdamW) in one pass.

    theta = decay * theta (AdamW: decay = 1 - lr * weight decay; Adam: 1)
    g = dtheta + weight_decay * theta (Adam's L2 term; 0 for AdamW)
    m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
    theta -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
    with step_size = lr / (1 - beta1^t) and inv_sqrt_bc2 = 1 / sqrt(1 - beta2^t) at step t, that is
    theta -= lr * m_hat / (sqrt(v_hat) + eps).
    """
    for i in prange(theta.shape[0]):
        t = decay * theta[i]
        g = dtheta[i] + weight_decay * t
        mi = beta1 * m[i] + one_minus_beta1 * g
        vi = beta2 * v[i] + one_minus_beta2 * (g * g)
        m[i] = mi
        v[i] = vi
        theta[i] = t - step_size * mi / (np.sqrt(vi) * inv_sqrt_bc2 + eps)


adam_update = by_size(_adam_update)


def _adagrad_update(theta, sum_sq, dtheta, lr, eps, weight_decay):
    """AdaGrad (torch.optim.Adagrad): g = dtheta + weight_decay * theta; sum_sq += g^2;
    theta -= lr * g / (sqrt(sum_sq) + eps). lr is already divided by 1 + (t - 1) * lr_decay."""
    for i in prange(theta.shape[0]):
        g = dtheta[i] + weight_decay * theta[i]
        s = sum_sq[i] + g * g
        sum_sq[i] = s
        theta[i] -= lr * g / (np.sqrt(s) + eps)


adagrad_update = by_size(_adagrad_update)


def _rmsprop_update(theta, square_avg, buf, dtheta, lr, alpha, one_minus_alpha, eps, weight_decay, momentum):
    """RMSprop (torch.optim.RMSprop, centered=False): g = dtheta + weight_decay * theta;
    square_avg = alpha square_avg + (1 - alpha) g^2; d = g / (sqrt(square_avg) + eps);
    without momentum (buf not used): theta -= lr * d; with it: buf = momentum buf + d; theta -= lr * buf.
    """
    if momentum > 0:
        for i in prange(theta.shape[0]):
            g = dtheta[i] + weight_decay * theta[i]
            s = alpha * square_avg[i] + one_minus_alpha * (g * g)
            square_avg[i] = s
            b = momentum * buf[i] + g / (np.sqrt(s) + eps)
            buf[i] = b
            theta[i] -= lr * b
    else:
        for i in prange(theta.shape[0]):
            g = dtheta[i] + weight_decay * theta[i]
            s = alpha * square_avg[i] + one_minus_alpha * (g * g)
            square_avg[i] = s
            theta[i] -= lr * g / (np.sqrt(s) + eps)


rmsprop_update = by_size(_rmsprop_update)
