"""The public base of optimizers, built-in and plugins' alike, and the one option validator that the
optimizers and the learning-rate schedules share.

An optimizer is built as factory(theta, **hyper_parameters) for the flat parameter buffer theta [P] and
has step(theta, dtheta, lr), state_dict() and load_state_dict(state); see docs/plugins.md. Subclass
`Optimizer` to get the hyper-parameter checks, the state arrays, state_dict/load_state_dict and a lazy
(sparse) step over rows of a 2-D table, step_rows(), for free.

state_dict() returns {"step": int, <state array name>: copy of the array, ..., "hyper": {...}};
load_state_dict(state) restores all three (hyper-parameters included, as torch.optim does) after
checking the values and the arrays' shapes, and changes nothing when they are wrong.
"""
import math
import numbers

from .errors import StreambpError

# numpy is imported where it is used: built-in optimizers are plugins, loaded for `streambp --help` too.
FLOAT_DTYPES = ("float32", "float64")


def _is_bool(value):
    return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy's bool too


# --- the option validator ------------------------------------------------------------------------------

def labelled(key, flags):
    """'gamma (--lr-gamma)' when flags maps key to its command-line option, else 'gamma'."""
    return f"{key} ({flags[key]})" if key in flags else key


def check_options(owner, given, accepted, flags=None, takes=None):
    """Raise a StreambpError when `given` has a key not in `accepted`, naming them and what owner takes
    (`takes`, default accepted); e.g. owner "The lion optimizer"."""
    flags = flags or {}
    unknown = [k for k in given if k not in accepted]
    if unknown:
        takes = list(accepted if takes is None else takes)
        raise StreambpError(f"{owner} takes no {', '.join(labelled(k, flags) for k in unknown)}; it takes "
                            f"{', '.join(labelled(k, flags) for k in takes) or 'no parameters'}.")


def check_number(value, what, low=0.0, high=math.inf, low_open=False, high_open=False):
    """value as a finite float in the interval from low to high (each end open or closed), or a
    StreambpError "<what> must be ...": what names the option, e.g. "The adam optimizer's eps (--eps)"."""
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise StreambpError(f"{what} must be a number, got {value!r}.")
    value = float(value)
    above = low < value if low_open else low <= value
    below = value < high if high_open else value <= high
    if not (above and below and math.isfinite(value)):
        if high == math.inf:
            interval = f"{'above' if low_open else 'at least'} {low:g} and finite"
        else:
            interval = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise StreambpError(f"{what} must be {interval}, got {value!r}.")
    return value


def check_integer(value, what, low):
    """value as an int of at least low, or a StreambpError "<what> must be an integer ..."."""
    if _is_bool(value) or not isinstance(value, numbers.Integral) or value < low:
        raise StreambpError(f"{what} must be an integer of at least {low}, got {value!r}.")
    return int(value)


def check_bool(value, what):
    if not _is_bool(value):
        raise StreambpError(f"{what} must be True or False, got {value!r}.")
    return bool(value)


# --- the base class ------------------------------------------------------------------------------------

class Optimizer:
    """Shared machinery: hyper-parameter checks, state arrays, state_dict, load_state_dict, step_rows.

    A subclass sets `name`, `defaults` (every hyper-parameter it takes, with its default) and `flags`
    (the command-line option of each, for messages), and implements `_check(hyper)` (check with
    self._number / check_*; return the normalised dict), `_buffers()` (names of the state arrays the
    hyper-parameters need, each of theta's shape and dtype, zeros unless `_allocate` says otherwise),
    `_prepare()` (convert the constant scalars to theta's dtype and bind the state arrays, from
    self.state, to attributes) and `_update(theta, dtheta, lr)`: one elementwise step (self.t is the step
    number, from 1) that updates theta and the bound state arrays in place.
    """

    name = ""
    defaults = {}
    aliases = ()  # extra keyword names the constructor accepts (folded into `defaults` keys by _check)
    # Command-line option of each hyper-parameter that `streambp fit` can set, for messages.
    flags = {"momentum": "--momentum", "nesterov": "--nesterov", "weight_decay": "--weight-decay",
             "beta1": "--beta1", "beta2": "--beta2", "betas": "--beta1/--beta2", "eps": "--eps"}

    def __init__(self, theta, **hyper):
        import numpy as np

        if not isinstance(theta, np.ndarray) or theta.ndim != 1 or theta.dtype.name not in FLOAT_DTYPES:
            raise ValueError("theta must be a 1-D float32 or float64 array")
        self.dtype = theta.dtype
        self.shape = theta.shape
        self.t = 0
        self.hyper = self._validate(hyper)
        self.state = self._allocate()
        self._prepare()

    # --- hyper-parameters ----------------------------------------------------------------------------

    def _what(self, key):
        return f"The {self.name} optimizer's {labelled(key, self.flags)}"

    def _error(self, text):
        raise StreambpError(f"The {self.name} optimizer's {text}")

    def _validate(self, hyper):
        check_options(f"The {self.name} optimizer", hyper, list(self.defaults) + list(self.aliases), self.flags,
                      takes=self.defaults)
        return self._check(dict(hyper))

    def _number(self, hyper, key, low=0.0, high=math.inf, high_open=False):
        """hyper[key] (or its default) as a finite float in [low, high] (or [low, high) when high_open)."""
        return check_number(hyper.get(key, self.defaults.get(key)), self._what(key), low, high,
                            high_open=high_open)

    def _dt(self, value):
        return self.dtype.type(value)

    # --- state ---------------------------------------------------------------------------------------

    def _allocate(self):
        import numpy as np

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

    def step_rows(self, table, rows, grads, lr):
        """A lazy (sparse) step on the rows `rows` [R] (unique, int64) of the 2-D parameter table [V, O]
        given their gradients grads [R, O], for an optimizer built with theta = table.ravel().

        Those rows of the parameters and of every state array are gathered into the buffers of a shadow
        optimizer of the same class (padded to a power of two with zero gradients), its elementwise _update
        runs on them (self.t counts one step, as step() does) and they are scattered back: the same as a dense
        step on the [R, O] sub-problem. Other rows and their state do not change.
        """
        import numpy as np

        from .kernels.table import gather_rows, scatter_rows

        rows = np.asarray(rows)
        if table.ndim != 2 or table.size != self.shape[0] or table.dtype != self.dtype:
            raise ValueError(f"this optimizer was built for {self.shape[0]} {self.dtype} parameters; got a "
                             f"table {table.shape} of {table.dtype}")
        if rows.ndim != 1 or rows.dtype != np.int64 or grads.shape != (rows.size, table.shape[1]):
            raise ValueError(f"rows must be int64 [R] and grads [R, {table.shape[1]}]; got rows {rows.shape} "
                             f"of {rows.dtype} and grads {grads.shape}")
        R, O = rows.size, table.shape[1]
        shadow = self._shadow(R, O)
        n = R * O
        theta, dtheta = shadow.rows_theta, shadow.rows_grad
        gather_rows(theta, table, rows)
        dtheta[:n] = grads.ravel()
        dtheta[n:] = 0  # the padding rows get a zero gradient; their result is not copied back
        for k, full in self.state.items():
            gather_rows(shadow.state[k], full.reshape(-1, O), rows)
        self.t += 1
        shadow.t = self.t
        shadow._update(theta, dtheta, lr)
        scatter_rows(table, theta, rows)
        for k, full in self.state.items():
            scatter_rows(full.reshape(-1, O), shadow.state[k], rows)

    def _shadow(self, R, O):
        """An optimizer of this class and hyper-parameters over a buffer of `cap` rows (the power of two at
        or above R), whose parameters, gradient and state step_rows gathers the touched rows into: built once
        per size, so a step pays for no allocation or set-up."""
        import numpy as np

        cap = 1 << max(R - 1, 0).bit_length()
        shadows = self.__dict__.setdefault("_shadows", {})
        if (cap, O) not in shadows:
            shadow = type(self)(np.zeros(cap * O, self.dtype), **self.hyper)
            shadow.rows_theta = np.zeros(cap * O, self.dtype)
            shadow.rows_grad = np.zeros(cap * O, self.dtype)
            shadows[(cap, O)] = shadow
        return shadows[(cap, O)]

    def state_dict(self):
        return {"step": self.t, **{k: v.copy() for k, v in self.state.items()}, "hyper": dict(self.hyper)}

    def load_state_dict(self, state):
        import numpy as np

        if not isinstance(state, dict) or "step" not in state or "hyper" not in state:
            raise StreambpError(f"The {self.name} optimizer's state must be a dict with 'step' and 'hyper' "
                                f"(from state_dict()).")
        step = state["step"]
        if _is_bool(step) or not isinstance(step, numbers.Integral) or step < 0:
            raise StreambpError(f"The {self.name} optimizer's state has step {step!r}; expected an integer "
                                f">= 0.")
        if not isinstance(state["hyper"], dict):
            raise StreambpError(f"The {self.name} optimizer's state has hyper {state['hyper']!r}; expected a "
                                "dict.")
        hyper = self._validate(dict(state["hyper"]))
        saved = self.hyper
        self.hyper = hyper  # _buffers() depends on the hyper-parameters
        try:
            arrays = {}
            for name in self._buffers():
                if name not in state:
                    raise StreambpError(f"The {self.name} optimizer's state has no {name!r} array.")
                a = np.asarray(state[name])
                if a.shape != self.shape or a.dtype.kind not in "fiu":
                    raise StreambpError(f"The {self.name} optimizer's state array {name!r} has shape "
                                        f"{a.shape} and dtype {a.dtype}; expected numbers of the parameters' "
                                        f"shape {self.shape}.")
                arrays[name] = np.array(a, dtype=self.dtype, order="C", copy=True)
        except StreambpError:
            self.hyper = saved
            raise
        self.t = int(step)
        self.state = arrays
        self._prepare()
