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

from .errors import StreambpError
from .optim import check_integer, check_number, check_options, labelled

# Command-line option of each schedule parameter, for messages.
FLAGS = {"step_size": "--lr-step-size", "gamma": "--lr-gamma", "lr_min": "--lr-min",
         "warmup_steps": "--warmup-steps"}


def _what(schedule, key):
    return f"The {schedule} schedule's {labelled(key, FLAGS)}"


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
        self.gamma = check_number(gamma, _what("step", "gamma"), 0.0, 1.0, low_open=True)
        self.period = check_integer(step_size, _what("step", "step_size"), 1) * steps_per_epoch

    def __call__(self, step):
        return self.base_lr * self.gamma ** (step // self.period)


class Exponential:
    """lr = base_lr * gamma ** epoch: multiplied by gamma at the start of every epoch after the first."""

    name = "exponential"
    defaults = {"gamma": 0.9}

    def __init__(self, base_lr, total_steps, steps_per_epoch, gamma=0.9):
        self.base_lr = base_lr
        self.gamma = check_number(gamma, _what("exponential", "gamma"), 0.0, 1.0, low_open=True)
        self.steps_per_epoch = steps_per_epoch

    def __call__(self, step):
        return self.base_lr * self.gamma ** (step // self.steps_per_epoch)


class Cosine:
    """lr = lr_min + (base_lr - lr_min) * (1 + cos(pi * step / total_steps)) / 2 (lr_min from then on)."""

    name = "cosine"
    defaults = {"lr_min": 0.0}

    def __init__(self, base_lr, total_steps, steps_per_epoch, lr_min=0.0):
        self.base_lr = base_lr
        self.lr_min = check_number(lr_min, _what("cosine", "lr_min"), 0.0, base_lr)
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
    check_options(f"The {name} learning-rate schedule", params, cls.defaults, FLAGS)
    base_lr = check_number(base_lr, "The learning rate (--lr)", 0.0, low_open=True)
    total_steps = check_integer(total_steps, "The number of steps", 0)
    steps_per_epoch = check_integer(steps_per_epoch, "The number of steps per epoch", 1)
    warmup_steps = check_integer(warmup_steps, labelled("warmup_steps", FLAGS), 0)
    schedule = cls(base_lr, total_steps, steps_per_epoch, **params)
    return Warmup(schedule, warmup_steps) if warmup_steps else schedule
