"""Learning-rate schedules against hand-computed values, warm-up, errors, and the rates `fit` uses."""
import math

import pytest

from streambp.errors import StreambpError
from streambp.schedules import make_schedule
from streambp.step import Stepper
from streambp.train import FitConfig, fit


def values(schedule, steps):
    return [schedule(s) for s in steps]


def test_constant():
    s = make_schedule("constant", 0.1, total_steps=100, steps_per_epoch=10)
    assert values(s, [0, 1, 50, 99, 1000]) == [0.1] * 5


def test_step():
    # 10 steps per epoch, halved every 2 epochs (20 steps)
    s = make_schedule("step", 1.0, 100, 10, step_size=2, gamma=0.5)
    assert values(s, [0, 19, 20, 39, 40, 99]) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.0625]
    default = make_schedule("step", 1.0, 100, 10)  # gamma 0.1 every epoch
    assert values(default, [9, 10, 25]) == pytest.approx([1.0, 0.1, 0.01], rel=1e-15)


def test_exponential():
    s = make_schedule("exponential", 0.2, 100, 4, gamma=0.5)
    assert values(s, [0, 3, 4, 7, 8, 11]) == [0.2, 0.2, 0.1, 0.1, 0.05, 0.05]
    default = make_schedule("exponential", 1.0, 100, 4)  # gamma 0.9
    assert values(default, [4, 8]) == pytest.approx([0.9, 0.81], rel=1e-15)


def test_cosine():
    s = make_schedule("cosine", 1.0, 100, 10)
    assert values(s, [0, 25, 50, 75, 100, 150]) == pytest.approx(
        [1.0, 0.8535533905932737, 0.5, 0.14644660940672627, 0.0, 0.0], abs=1e-15)
    floor = make_schedule("cosine", 1.0, 100, 10, lr_min=0.1)
    assert values(floor, [0, 50, 100, 120]) == pytest.approx([1.0, 0.55, 0.1, 0.1], abs=1e-15)
    lrs = values(floor, range(101))
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_warmup_constant():
    s = make_schedule("constant", 1.0, 100, 10, warmup_steps=4)
    assert values(s, [0, 1, 2, 3, 4, 50]) == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_warmup_multiplies_the_schedule():
    s = make_schedule("step", 1.0, 100, 2, warmup_steps=4, gamma=0.5)  # halved every 2 steps
    assert values(s, [0, 1, 2, 3, 4, 5, 6]) == [0.25, 0.5, 0.375, 0.5, 0.25, 0.25, 0.125]
    c = make_schedule("cosine", 1.0, 10, 5, warmup_steps=4)
    assert c(1) == pytest.approx((1 + math.cos(math.pi * 0.1)) / 2 * 0.5, abs=1e-15)
    assert c(5) == pytest.approx(0.5, abs=1e-15)


@pytest.mark.parametrize("name,params,names", [
    ("nope", {}, ["nope", "constant", "step", "exponential", "cosine"]),
    ("constant", {"gamma": 0.5}, ["constant", "gamma", "--lr-gamma", "no parameters"]),
    ("cosine", {"gamma": 0.5}, ["cosine", "--lr-gamma", "lr_min", "--lr-min"]),
    ("step", {"gamma": 0.0}, ["gamma", "(0, 1]"]),
    ("exponential", {"gamma": 1.5}, ["gamma", "1.5"]),
    ("step", {"step_size": 0}, ["step_size", "--lr-step-size"]),
    ("step", {"step_size": 1.5}, ["step_size", "integer"]),
    ("cosine", {"lr_min": 0.5}, ["lr_min", "0.5"]),
    ("cosine", {"lr_min": -0.1}, ["lr_min"]),
    ("constant", {"warmup_steps": -1}, ["warmup_steps", "--warmup-steps"]),
])
def test_errors(name, params, names):
    with pytest.raises(StreambpError) as info:
        make_schedule(name, 0.1, 100, 10, **params)
    for n in names:
        assert n in str(info.value), str(info.value)


def test_fit_steps_with_the_schedule(blob_file, monkeypatch):
    """fit() gives each step the schedule's rate at the global step; 600 rows / 100 = 6 steps an epoch."""
    seen = []
    step = Stepper.step

    def spy(self, X, idx, y, lr):
        seen.append(lr)
        return step(self, X, idx, y, lr)

    monkeypatch.setattr(Stepper, "step", spy)
    fit(FitConfig(data=str(blob_file), epochs=2, batch_size=100, lr=0.1, hidden=[4], threads=1, out=None,
                  loggers=[], lr_schedule="step", lr_schedule_params={"gamma": 0.5}, warmup_steps=3,
                  optimizer="adam", optimizer_params={"beta1": 0.8}))
    assert seen == pytest.approx([0.1 / 3, 0.2 / 3, 0.1, 0.1, 0.1, 0.1] + [0.05] * 6, rel=1e-15)
