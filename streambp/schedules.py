"""Learning-rate schedules: the learning rate as a function of the global step.

A schedule is a callable ``schedule(step) -> lr``. `step` counts the minibatch updates already made in
the whole run: 0 for the first update, whatever the epoch. An epoch is `steps_per_epoch` updates
(`streambp fit` uses ceil(rows / batch_size): a short last minibatch counts as one), and the run is
`total_steps` updates. With base_lr the --lr:

    constant      base_lr
    step          base_lr * gamma ** (epoch // step_size)           gamma=0.1, step_size=1 (epochs)
    exponential   base_lr * gamma ** epoch                          gamma=0.9
    cosine        lr_min + (base_lr - lr_min) * (1 + cos(pi * step / total_steps)) / 2      lr_min=0

where epoch = step // steps_per_epoch, so "step" and "exponential" change the rate at epoch boundaries
(as torch.optim.lr_scheduler.StepLR and ExponentialLR stepped once per epoch), while "cosine" changes
it every update, from base_lr at the first to lr_min after the last (as CosineAnnealingLR with
T_max = total_steps, stepped every update).

A linear warm-up (warmup_steps > 0) combines with any of them: update `step` < warmup_steps uses
(step + 1) / warmup_steps of the schedule's value at that step, so the rate ramps linearly from 0 and
reaches the schedule's value at update warmup_steps - 1 (the first update does not get a rate of 0).
"""
import math
import numbers

from .errors import StreambpError

# Command-line option of each schedule parameter, for messages.
CLI_OPTIONS = {"step_size": "--lr-step-size", "gamma": "--lr-gamma", "lr_min": "--lr-min",
               "warmup_steps": "--warmup-steps"}


def _label(key):
    return f"{key} ({CLI_OPTIONS[key]})" if key in CLI_OPTIONS else key


def _number(value, what, low, high=math.inf, low_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise StreambpError(f"{what} must be a number, got {value!r}.")
    value = float(value)
    if not ((low < value if low_open else low <= value) and value <= high):
        bound = "above" if low_open else "at least"
        limit = f"{bound} {low:g}" if high == math.inf else f"in {'(' if low_open else '['}{low:g}, {high:g}]"
        raise StreambpError(f"{what} must be {limit}, got {value!r}.")
    return value


def _integer(value, what, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise StreambpError(f"{what} must be an integer of at least {low}, got {value!r}.")
    return int(value)


class Constant:
    """lr = base_lr at every step."""

    name = "constant"
    defaults = {}

    def __init__(self, base_lr, total_steps, steps_per_epoch):
        self.base_lr = base_lr

    def __call__(self, step):
        return self.base_lr


class StepDecay:
    """lr = base_lr * gamma ** (epoch // step_size): multiplied by gamma every step_size epochs."""

    name = "step"
    defaults = {"step_size": 1, "gamma": 0.1}

    def __init__(self, base_lr, total_steps, steps_per_epoch, step_size=1, gamma=0.1):
        self.base_lr = base_lr
        self.gamma = _number(gamma, f"The step schedule's {_label('gamma')}", 0.0, 1.0, low_open=True)
        self.period = _integer(step_size, f"The step schedule's {_label('step_size')}", 1) * steps_per_epoch

    def __call__(self, step):
        return self.base_lr * self.gamma ** (step // self.period)


class Exponential:
    """lr = base_lr * gamma ** epoch: multiplied by gamma at the start of every epoch after the first."""

    name = "exponential"
    defaults = {"gamma": 0.9}

    def __init__(self, base_lr, total_steps, steps_per_epoch, gamma=0.9):
        self.base_lr = base_lr
        self.gamma = _number(gamma, f"The exponential schedule's {_label('gamma')}", 0.0, 1.0, low_open=True)
        self.steps_per_epoch = steps_per_epoch

    def __call__(self, step):
        return self.base_lr * self.gamma ** (step // self.steps_per_epoch)


class Cosine:
    """lr = lr_min + (base_lr - lr_min) * (1 + cos(pi * step / total_steps)) / 2 (lr_min from then on)."""

    name = "cosine"
    defaults = {"lr_min": 0.0}

    def __init__(self, base_lr, total_steps, steps_per_epoch, lr_min=0.0):
        self.base_lr = base_lr
        self.lr_min = _number(lr_min, f"The cosine schedule's {_label('lr_min')}", 0.0, base_lr)
        self.total_steps = max(total_steps, 1)

    def __call__(self, step):
        progress = min(step, self.total_steps) / self.total_steps
        return self.lr_min + (self.base_lr - self.lr_min) * (1 + math.cos(math.pi * progress)) / 2


class Warmup:
    """schedule(step) * (step + 1) / warmup_steps for the first warmup_steps steps, then schedule(step)."""

    def __init__(self, schedule, warmup_steps):
        self.schedule = schedule
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        lr = self.schedule(step)
        return lr * (step + 1) / self.warmup_steps if step < self.warmup_steps else lr


SCHEDULES = {cls.name: cls for cls in (Constant, StepDecay, Exponential, Cosine)}


def make_schedule(name, base_lr, total_steps, steps_per_epoch, warmup_steps=0, **params):
    """The schedule `name` (constant, step, exponential or cosine) as a callable step -> lr, with a
    linear warm-up over the first warmup_steps steps when that is above 0. params are the schedule's
    own (see the module docstring); one it does not take is an error, one left out keeps its default."""
    if name not in SCHEDULES:
        raise StreambpError(f"Unknown learning-rate schedule {name!r}. Available: {', '.join(SCHEDULES)}.")
    cls = SCHEDULES[name]
    unknown = [k for k in params if k not in cls.defaults]
    if unknown:
        takes = ", ".join(_label(k) for k in cls.defaults) or "no parameters"
        raise StreambpError(f"The {name} learning-rate schedule takes no "
                            f"{', '.join(_label(k) for k in unknown)}; it takes {takes}.")
    base_lr = _number(base_lr, "The learning rate (--lr)", 0.0, low_open=True)
    total_steps = _integer(total_steps, "The number of steps", 0)
    steps_per_epoch = _integer(steps_per_epoch, "The number of steps per epoch", 1)
    warmup_steps = _integer(warmup_steps, _label("warmup_steps"), 0)
    schedule = cls(base_lr, total_steps, steps_per_epoch, **params)
    return Warmup(schedule, warmup_steps) if warmup_steps else schedule
