"""The Lion optimizer for streambp (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

For each step, with the gradient g and the learning rate lr:

    c     = beta1 * m + (1 - beta1) * g
    theta = theta - lr * (sign(c) + weight_decay * theta)
    m     = beta2 * m + (1 - beta2) * g

Defaults: beta1 0.9, beta2 0.99, weight_decay 0 (`streambp fit --beta1 --beta2 --weight-decay`). Every
parameter moves by lr each step (sign(c) is -1, 0 or +1), so Lion wants a learning rate 3-10x smaller than
AdamW's. Its only state is the momentum m, one array [P] of theta's dtype ("exp_avg" in state_dict()).
"""
import functools

from streambp import hookimpl
from streambp.optim import Optimizer

__version__ = "0.1.0"


def _lion_update(theta, exp_avg, dtheta, lr, beta1, one_minus_beta1, beta2, one_minus_beta2, weight_decay):
    """One Lion step over theta[P], in place, in one pass; every argument has theta's dtype."""
    for i in prange(theta.shape[0]):  # noqa: F821 (prange and np are bound by kernels())
        g = dtheta[i]
        m = exp_avg[i]
        c = beta1 * m + one_minus_beta1 * g
        t = theta[i]
        theta[i] = t - lr * (np.sign(c) + weight_decay * t)  # noqa: F821
        exp_avg[i] = beta2 * m + one_minus_beta2 * g


@functools.cache
def kernels():
    """(serial build, parallel build) of _lion_update, compiled on first use: streambp imports every
    installed plugin when it starts, and importing this one should not load Numba."""
    import numpy
    from numba import njit, prange

    from streambp.kernels.compile import OPTIONS, _renamed

    globals().update(np=numpy, prange=prange)  # the names the body uses
    return (njit(**OPTIONS)(_lion_update),
            njit(parallel=True, **OPTIONS)(_renamed(_lion_update, "_parallel")))


class Lion(Optimizer):
    """Built as Lion(theta, beta1=0.9, beta2=0.99, weight_decay=0.0) for the flat parameters theta [P]."""

    name = "lion"
    defaults = {"beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0}

    def _check(self, hyper):
        return {"beta1": self._number(hyper, "beta1", 0.0, 1.0, high_open=True),
                "beta2": self._number(hyper, "beta2", 0.0, 1.0, high_open=True),
                "weight_decay": self._number(hyper, "weight_decay")}

    def _buffers(self):
        return ("exp_avg",)  # allocated once; each step updates it in place

    def _prepare(self):
        from streambp.kernels.compile import PARALLEL_MIN_ELEMENTS

        b1, b2, wd = self.hyper["beta1"], self.hyper["beta2"], self.hyper["weight_decay"]
        # Converted once to theta's dtype, so that a float32 step stays in float32.
        self.scalars = tuple(self._dt(x) for x in (b1, 1 - b1, b2, 1 - b2, wd))
        self.exp_avg = self.state["exp_avg"]
        self.kernel = kernels()[self.shape[0] >= PARALLEL_MIN_ELEMENTS]

    def _update(self, theta, dtheta, lr):
        self.kernel(theta, self.exp_avg, dtheta, self._dt(lr), *self.scalars)


@hookimpl
def register_optimizers(register):
    register("lion", Lion)
