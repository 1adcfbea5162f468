"""Built-in optimizers. An optimizer is built as factory(theta, **hyper_parameters) and has
step(theta, dtheta, lr), state_dict() and load_state_dict(state); see docs/plugins.md and the base
class, streambp.optim.Optimizer.

The update rules are PyTorch's (torch.optim.SGD, Adam, AdamW, Adagrad, RMSprop); the learning rate is
not a hyper-parameter here but an argument of step(), so that a schedule can change it every step.
Each step is one fused Numba pass over the flat parameter buffer (streambp/kernels/optim.py); the state
arrays are allocated once, in the constructor, and the hyper-parameters converted once to theta's dtype.
"""
import math

from .. import hookimpl
from ..errors import StreambpError
from ..optim import Optimizer, check_bool


def kernels():
    """streambp.kernels.optim, imported when an optimizer is first built (it loads Numba)."""
    from ..kernels import optim

    return optim


def empty(dtype):
    """A state array for a buffer the hyper-parameters do not need."""
    import numpy as np

    return np.zeros(0, dtype)


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
        nesterov = check_bool(hyper.get("nesterov", False), self._what("nesterov"))
        if nesterov and momentum == 0:
            raise StreambpError(f"{self._what('nesterov')} needs a momentum above 0 ({self.flags['momentum']}).")
        return {"momentum": momentum, "nesterov": nesterov,
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
        self.buf = self.state.get("momentum_buffer", empty(self.dtype))
        self.kernels = kernels()

    def _update(self, theta, dtheta, lr):
        if self.plain:
            self.kernels.sgd_update(theta, dtheta, self._dt(lr))
        else:
            keep = self.zero if self.t == 1 else self.momentum
            self.kernels.sgd_momentum_update(theta, self.buf, dtheta, self._dt(lr), self.momentum, keep,
                                             self.weight_decay, self.mode)


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
        self.kernels = kernels()

    def _update(self, theta, dtheta, lr):
        beta1, beta2 = self.hyper["betas"]
        step_size = lr / (1 - beta1 ** self.t)
        inv_sqrt_bc2 = 1 / math.sqrt(1 - beta2 ** self.t)
        decay = self._dt(1 - lr * self.hyper["weight_decay"]) if self.decoupled else self.one
        self.kernels.adam_update(theta, self.m, self.v, dtheta, self._dt(step_size), *self.scalars,
                                 self._dt(inv_sqrt_bc2), self.eps, self.l2, decay)


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
        import numpy as np

        return {"sum": np.full(self.shape, self.hyper["initial_accumulator_value"], self.dtype)}

    def _prepare(self):
        self.eps = self._dt(self.hyper["eps"])
        self.weight_decay = self._dt(self.hyper["weight_decay"])
        self.sum = self.state["sum"]
        self.kernels = kernels()

    def _update(self, theta, dtheta, lr):
        lr_t = lr / (1 + (self.t - 1) * self.hyper["lr_decay"])
        self.kernels.adagrad_update(theta, self.sum, dtheta, self._dt(lr_t), self.eps, self.weight_decay)


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
        self.buf = self.state.get("momentum_buffer", empty(self.dtype))
        self.kernels = kernels()

    def _update(self, theta, dtheta, lr):
        self.kernels.rmsprop_update(theta, self.square_avg, self.buf, dtheta, self._dt(lr), *self.scalars)


@hookimpl
def register_optimizers(register):
    for cls in (SGD, Adam, AdamW, AdaGrad, RMSprop):
        register(cls.name, cls)
