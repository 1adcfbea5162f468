"""The Lion optimizer for streambp (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

For each step, with the gradient g and the learning rate lr:

    c     = beta1 * m + (1 - beta1) * g
    theta = theta - lr * (sign(c) + weight_decay * theta)
    m     = beta2 * m + (1 - beta2) * g

Defaults: beta1 0.9, beta2 0.99, weight_decay 0 (`streambp fit --beta1 --beta2 --weight-decay`). Every
parameter moves by lr each step (sign(c) is -1, 0 or +1), so Lion wants a learning rate 3-10x smaller than
AdamW's. Its only state is the momentum m, one array [P] of theta's dtype ("exp_avg" in state_dict()).
"""
import math
import numbers
import types

import numpy as np
from numba import njit, prange

from streambp import hookimpl
from streambp.errors import StreambpError
from streambp.kernels.compile import OPTIONS, PARALLEL_MIN_ELEMENTS

__version__ = "0.1.0"

DEFAULTS = {"beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0}
FLAGS = {"beta1": "--beta1", "beta2": "--beta2", "weight_decay": "--weight-decay"}
# The other hyper-parameter options of `streambp fit`, named in the error when one is given.
OTHER_FLAGS = {"momentum": "--momentum", "nesterov": "--nesterov", "eps": "--eps"}


def _lion_update(theta, exp_avg, dtheta, lr, beta1, one_minus_beta1, beta2, one_minus_beta2, weight_decay):
    """One Lion step over theta[P], in place, in one pass; every argument has theta's dtype."""
    for i in prange(theta.shape[0]):
        g = dtheta[i]
        m = exp_avg[i]
        c = beta1 * m + one_minus_beta1 * g
        t = theta[i]
        theta[i] = t - lr * (np.sign(c) + weight_decay * t)
        exp_avg[i] = beta2 * m + one_minus_beta2 * g


def _renamed(fn, name):
    """fn under another name: Numba names its cache files after the function, so the serial and the
    parallel build of one body need two names."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = name
    return copy


# Two builds of one body, chosen by size in Lion(): waking the thread pool costs more than it saves on a
# small parameter buffer. (streambp's own kernels use streambp.kernels.compile.by_size, which compiles a
# dispatcher for them cached in streambp's directory, where Numba would not notice an edit of this file.)
lion_update_serial = njit(**OPTIONS)(_lion_update)
lion_update_parallel = njit(parallel=True, **OPTIONS)(_renamed(_lion_update, "_lion_update_parallel"))


def _check(hyper):
    """The hyper-parameters, checked, with defaults filled in; a StreambpError for the user otherwise."""
    unknown = [k for k in hyper if k not in DEFAULTS]
    if unknown:
        given = ", ".join(f"{k} ({OTHER_FLAGS[k]})" if k in OTHER_FLAGS else k for k in unknown)
        raise StreambpError(f"The lion optimizer takes no {given}; it takes beta1 (--beta1), beta2 (--beta2) "
                            f"and weight_decay (--weight-decay).")
    out = {}
    for key, default in DEFAULTS.items():
        value = hyper.get(key, default)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise StreambpError(f"The lion optimizer's {key} ({FLAGS[key]}) must be a number, got {value!r}.")
        value = float(value)
        ok = value >= 0 if key == "weight_decay" else 0 <= value < 1
        if not ok or math.isinf(value):
            need = "at least 0 and finite" if key == "weight_decay" else "in [0, 1)"
            raise StreambpError(f"The lion optimizer's {key} ({FLAGS[key]}) must be {need}, got {value!r}.")
        out[key] = value
    return out


class Lion:
    """Built as Lion(theta, beta1=0.9, beta2=0.99, weight_decay=0.0) for the flat parameters theta [P]."""

    def __init__(self, theta, **hyper):
        if not isinstance(theta, np.ndarray) or theta.ndim != 1 or theta.dtype.char not in "fd":
            raise ValueError("theta must be a 1-D float32 or float64 array")
        self.dtype = theta.dtype
        self.shape = theta.shape
        self.t = 0
        self.exp_avg = np.zeros(self.shape, self.dtype)  # allocated once; step() updates it in place
        self.kernel = lion_update_parallel if theta.size >= PARALLEL_MIN_ELEMENTS else lion_update_serial
        self._set_hyper(_check(hyper))

    def _set_hyper(self, hyper):
        self.hyper = hyper
        b1, b2, wd = hyper["beta1"], hyper["beta2"], hyper["weight_decay"]
        # Converted once to theta's dtype, so that a float32 step stays in float32.
        self.scalars = tuple(self.dtype.type(x) for x in (b1, 1 - b1, b2, 1 - b2, wd))

    def step(self, theta, dtheta, lr):
        """Update theta [P] in place from the gradient dtheta [P] with the learning rate lr."""
        if theta.shape != self.shape or dtheta.shape != self.shape:
            raise ValueError(f"this optimizer was built for {self.shape[0]} parameters; got theta "
                             f"{theta.shape} and dtheta {dtheta.shape}")
        self.t += 1
        self.kernel(theta, self.exp_avg, dtheta, self.dtype.type(lr), *self.scalars)

    def state_dict(self):
        return {"step": self.t, "exp_avg": self.exp_avg.copy(), "hyper": dict(self.hyper)}

    def load_state_dict(self, state):
        """Restore what state_dict() returned (hyper-parameters included); nothing changes on an error."""
        if not isinstance(state, dict) or not {"step", "exp_avg", "hyper"} <= state.keys():
            raise StreambpError("The lion optimizer's state must be a dict with 'step', 'exp_avg' and "
                                "'hyper' (from state_dict()).")
        step = state["step"]
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral) or step < 0:
            raise StreambpError(f"The lion optimizer's state has step {step!r}; expected an integer >= 0.")
        if not isinstance(state["hyper"], dict):
            raise StreambpError(f"The lion optimizer's state has hyper {state['hyper']!r}; expected a dict.")
        exp_avg = np.asarray(state["exp_avg"])
        if exp_avg.dtype.kind not in "fiu" or exp_avg.shape != self.shape:
            raise StreambpError(f"The lion optimizer's state array 'exp_avg' has shape {exp_avg.shape} and "
                                f"dtype {exp_avg.dtype}; expected numbers of shape {self.shape}.")
        hyper = _check(state["hyper"])
        self.exp_avg[...] = exp_avg
        self.t = int(step)
        self._set_hyper(hyper)


@hookimpl
def register_optimizers(register):
    register("lion", Lion)
