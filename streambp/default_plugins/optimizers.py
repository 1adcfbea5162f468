"""Built-in optimizers. An optimizer is built as factory(theta, **hyper_parameters) and has
step(theta, dtheta, lr), state_dict() and load_state_dict(state); see docs/plugins.md.

The update rules are PyTorch's (torch.optim.SGD, Adam, AdamW, Adagrad, RMSprop); the learning rate is
not a hyper-parameter here but an argument of step(), so that a schedule can change it every step.
Each step is one fused Numba pass over the flat parameter buffer (streambp/kernels/optim.py); the state
arrays are allocated once, in the constructor, and the hyper-parameters converted once to theta's dtype.

state_dict() returns {"step": int, <state array name>: copy of the array, ..., "hyper": {...}};
load_state_dict(state) restores all three (hyper-parameters included, as torch.optim does) after
checking the values and the arrays' shapes.
"""
import math
import numbers

import numpy as np

from .. import hookimpl
from ..errors import StreambpError
from ..kernels.optim import adagrad_update, adam_update, rmsprop_update, sgd_momentum_update, sgd_update

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Command-line option of each hyper-parameter that `streambp fit` can set, for messages.
CLI_OPTIONS = {"momentum": "--momentum", "nesterov": "--nesterov", "weight_decay": "--weight-decay",
               "beta1": "--beta1", "beta2": "--beta2", "betas": "--beta1/--beta2", "eps": "--eps"}


def _label(key):
    return f"{key} ({CLI_OPTIONS[key]})" if key in CLI_OPTIONS else key


class Optimizer:
    """Shared machinery: hyper-parameter checks, state arrays, state_dict and load_state_dict.

    A subclass sets `name`, `defaults` (every hyper-parameter it takes, with its default), and
    implements `_check(hyper)` (raise through self._error; return the normalised dict),
    `_buffers()` (names of the state arrays the hyper-parameters need), `_prepare()` (convert the
    constant scalars to theta's dtype) and `_update(theta, dtheta, lr)` (self.t is the step number,
    from 1).
    """

    name = ""
    defaults = {}
    aliases = ()  # extra keyword names the constructor accepts (folded into `defaults` keys by _check)

    def __init__(self, theta, **hyper):
        if not isinstance(theta, np.ndarray) or theta.ndim != 1 or theta.dtype not in FLOAT_DTYPES:
            raise ValueError("theta must be a 1-D float32 or float64 array")
        self.dtype = theta.dtype
        self.shape = theta.shape
        self.t = 0
        self.hyper = self._validate(hyper)
        self.state = self._allocate()
        self._prepare()

    # --- hyper-parameters ----------------------------------------------------------------------------

    def _error(self, text):
        raise StreambpError(f"The {self.name} optimizer's {text}")

    def _validate(self, hyper):
        accepted = list(self.defaults) + list(self.aliases)
        unknown = [k for k in hyper if k not in accepted]
        if unknown:
            raise StreambpError(
                f"The {self.name} optimizer takes no {', '.join(_label(k) for k in unknown)}; it takes "
                f"{', '.join(_label(k) for k in self.defaults)}.")
        return self._check(dict(hyper))

    def _number(self, hyper, key, low=0.0, high=math.inf, high_open=False):
        """hyper[key] (or its default) as a float in [low, high] (or [low, high) when high_open)."""
        value = hyper.get(key, self.defaults.get(key))
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            self._error(f"{_label(key)} must be a number, got {value!r}.")
        value = float(value)
        if not (low <= value and (value < high if high_open else value <= high)):
            bound = ")" if high_open else "]"
            interval = f"at least {low:g}" if high == math.inf else f"in [{low:g}, {high:g}{bound}"
            self._error(f"{_label(key)} must be {interval}, got {value!r}.")
        return value

    def _dt(self, value):
        return self.dtype.type(value)

    # --- state ---------------------------------------------------------------------------------------

    def _allocate(self):
        return {name: np.zeros(self.shape, self.dtype) for name in self._buffers()}

    def _buffers(self):
        return ()

    def _prepare(self):
        pass

    def step(self, theta, dtheta, lr):
        """Update theta [P] in place from the gradient dtheta [P] with learning rate lr."""
        if theta.shape != self.shape or dtheta.shape != self.shape:
            raise ValueError(f"this optimizer was built for {self.shape[0]} parameters; got theta "
                             f"{theta.shape} and dtheta {dtheta.shape}")
        self.t += 1
        self._update(theta, dtheta, lr)

    def state_dict(self):
        return {"step": self.t, **{k: v.copy() for k, v in self.state.items()}, "hyper": dict(self.hyper)}

    def load_state_dict(self, state):
        if not isinstance(state, dict) or "step" not in state or "hyper" not in state:
            raise StreambpError(f"The {self.name} optimizer's state must be a dict with 'step' and 'hyper' "
                                f"(from state_dict()).")
        step = state["step"]
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral) or step < 0:
            raise StreambpError(f"The {self.name} optimizer's state has step {step!r}; expected an integer "
                                f">= 0.")
        hyper = self._validate(dict(state["hyper"]))
        saved = self.hyper
        self.hyper = hyper  # _buffers() depends on the hyper-parameters
        try:
            arrays = {}
            for name in self._buffers():
                if name not in state:
                    raise StreambpError(f"The {self.name} optimizer's state has no {name!r} array.")
                a = np.asarray(state[name])
                if a.shape != self.shape:
                    raise StreambpError(f"The {self.name} optimizer's state array {name!r} has shape "
                                        f"{a.shape}; the parameters have shape {self.shape}.")
                arrays[name] = np.array(a, dtype=self.dtype, order="C", copy=True)
        except StreambpError:
            self.hyper = saved
            raise
        self.t = int(step)
        self.state = arrays
        self._prepare()


class SGD(Optimizer):
    """Stochastic gradient descent with optional weight decay and (Nesterov) momentum, as
    torch.optim.SGD with dampening 0: g = dtheta + weight_decay * theta; with momentum,
    buf = momentum * buf + g (buf = g on the first step) and g = g + momentum * buf (Nesterov) or
    g = buf; theta <- theta - lr * g. Without momentum and weight decay: theta <- theta - lr * dtheta.
    """

    name = "sgd"
    defaults = {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0}

    def _check(self, hyper):
        momentum = self._number(hyper, "momentum", 0.0, 1.0, high_open=True)
        nesterov = hyper.get("nesterov", False)
        if not isinstance(nesterov, (bool, np.bool_)):
            self._error(f"{_label('nesterov')} must be True or False, got {nesterov!r}.")
        if nesterov and momentum == 0:
            self._error(f"{_label('nesterov')} needs a momentum above 0 ({CLI_OPTIONS['momentum']}).")
        return {"momentum": momentum, "nesterov": bool(nesterov),
                "weight_decay": self._number(hyper, "weight_decay")}

    def _buffers(self):
        return ("momentum_buffer",) if self.hyper["momentum"] > 0 else ()

    def _prepare(self):
        h = self.hyper
        self.mode = 0 if h["momentum"] == 0 else 2 if h["nesterov"] else 1
        self.plain = self.mode == 0 and h["weight_decay"] == 0
        self.momentum = self._dt(h["momentum"])
        self.weight_decay = self._dt(h["weight_decay"])
        self.zero = self._dt(0)
        self.buf = self.state.get("momentum_buffer", np.zeros(0, self.dtype))

    def _update(self, theta, dtheta, lr):
        if self.plain:
            sgd_update(theta, dtheta, self._dt(lr))
        else:
            keep = self.zero if self.t == 1 else self.momentum
            sgd_momentum_update(theta, self.buf, dtheta, self._dt(lr), self.momentum, keep, self.weight_decay,
                                self.mode)


class Adam(Optimizer):
    """Adam (torch.optim.Adam, amsgrad off): g = dtheta + weight_decay * theta (L2 penalty);
    m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2; at step t,
    theta <- theta - lr * m / (1 - beta1^t) / (sqrt(v / (1 - beta2^t)) + eps).
    `betas=(beta1, beta2)` or `beta1` / `beta2` alone (the other keeps its default).
    """

    name = "adam"
    defaults = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    aliases = ("beta1", "beta2")
    decoupled = False

    def _check(self, hyper):
        if "betas" in hyper and ("beta1" in hyper or "beta2" in hyper):
            self._error("betas and beta1/beta2 are alternatives: give one or the other.")
        betas = hyper.get("betas", self.defaults["betas"])
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            self._error(f"betas must be a pair (beta1, beta2), got {betas!r}.")
        pair = {"beta1": hyper.get("beta1", betas[0]), "beta2": hyper.get("beta2", betas[1])}
        beta1 = self._number(pair, "beta1", 0.0, 1.0, high_open=True)
        beta2 = self._number(pair, "beta2", 0.0, 1.0, high_open=True)
        return {"betas": (beta1, beta2), "eps": self._number(hyper, "eps"),
                "weight_decay": self._number(hyper, "weight_decay")}

    def _buffers(self):
        return ("exp_avg", "exp_avg_sq")

    def _prepare(self):
        h = self.hyper
        beta1, beta2 = h["betas"]
        self.scalars = tuple(self._dt(x) for x in (beta1, 1 - beta1, beta2, 1 - beta2))
        self.eps = self._dt(h["eps"])
        self.l2 = self._dt(0 if self.decoupled else h["weight_decay"])
        self.one = self._dt(1)
        self.m, self.v = self.state["exp_avg"], self.state["exp_avg_sq"]

    def _update(self, theta, dtheta, lr):
        beta1, beta2 = self.hyper["betas"]
        step_size = lr / (1 - beta1 ** self.t)
        inv_sqrt_bc2 = 1 / math.sqrt(1 - beta2 ** self.t)
        decay = self._dt(1 - lr * self.hyper["weight_decay"]) if self.decoupled else self.one
        adam_update(theta, self.m, self.v, dtheta, self._dt(step_size), *self.scalars, self._dt(inv_sqrt_bc2),
                    self.eps, self.l2, decay)


class AdamW(Adam):
    """AdamW (torch.optim.AdamW): decoupled weight decay theta <- theta * (1 - lr * weight_decay), then
    the Adam update with g = dtheta."""

    name = "adamw"
    defaults = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}
    decoupled = True


class AdaGrad(Optimizer):
    """AdaGrad (torch.optim.Adagrad): g = dtheta + weight_decay * theta; sum += g^2;
    theta <- theta - lr_t * g / (sqrt(sum) + eps) with lr_t = lr / (1 + (t - 1) * lr_decay); the sum
    starts at initial_accumulator_value."""

    name = "adagrad"
    defaults = {"eps": 1e-10, "weight_decay": 0.0, "lr_decay": 0.0, "initial_accumulator_value": 0.0}

    def _check(self, hyper):
        return {k: self._number(hyper, k) for k in self.defaults}

    def _buffers(self):
        return ("sum",)

    def _allocate(self):
        return {"sum": np.full(self.shape, self.hyper["initial_accumulator_value"], self.dtype)}

    def _prepare(self):
        self.eps = self._dt(self.hyper["eps"])
        self.weight_decay = self._dt(self.hyper["weight_decay"])
        self.sum = self.state["sum"]

    def _update(self, theta, dtheta, lr):
        lr_t = lr / (1 + (self.t - 1) * self.hyper["lr_decay"])
        adagrad_update(theta, self.sum, dtheta, self._dt(lr_t), self.eps, self.weight_decay)


class RMSprop(Optimizer):
    """RMSprop (torch.optim.RMSprop, not centered): g = dtheta + weight_decay * theta;
    v = alpha v + (1 - alpha) g^2; d = g / (sqrt(v) + eps); theta <- theta - lr * d, or with momentum
    buf = momentum * buf + d (buf starts at 0) and theta <- theta - lr * buf."""

    name = "rmsprop"
    defaults = {"alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0}

    def _check(self, hyper):
        return {"alpha": self._number(hyper, "alpha", 0.0, 1.0, high_open=True),
                "eps": self._number(hyper, "eps"),
                "weight_decay": self._number(hyper, "weight_decay"),
                "momentum": self._number(hyper, "momentum", 0.0, 1.0, high_open=True)}

    def _buffers(self):
        return ("square_avg",) + (("momentum_buffer",) if self.hyper["momentum"] > 0 else ())

    def _prepare(self):
        h = self.hyper
        self.scalars = tuple(self._dt(x) for x in (h["alpha"], 1 - h["alpha"], h["eps"], h["weight_decay"],
                                                   h["momentum"]))
        self.square_avg = self.state["square_avg"]
        self.buf = self.state.get("momentum_buffer", np.zeros(0, self.dtype))

    def _update(self, theta, dtheta, lr):
        rmsprop_update(theta, self.square_avg, self.buf, dtheta, self._dt(lr), *self.scalars)


@hookimpl
def register_optimizers(register):
    for cls in (SGD, Adam, AdamW, AdaGrad, RMSprop):
        register(cls.name, cls)
