"""BlasTuner: probes one thread against the budget and keeps the faster."""
from threadpoolctl import threadpool_info

from streambp import threads


def blas_threads():
    return {p["filepath"]: p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


def drive(tuner, step_seconds):
    """Tick through one probe cycle; step_seconds(n) fakes how long a step takes on n BLAS threads."""
    clock = [tuner.next_probe]
    real = threads.time.perf_counter
    threads.time.perf_counter = lambda: clock[0]
    try:
        tuner.tick()
        assert tuner.phase == 1 and tuner.current == 1
        while tuner.phase:
            clock[0] += step_seconds(tuner.current)
            tuner.tick()
    finally:
        threads.time.perf_counter = real


def tuner_on_two_threads():
    tuner = threads.BlasTuner(2, interval=100.0, window=1.0)
    tuner.current = None
    tuner._set(2)  # whatever the core count, BLAS starts on the budget of 2
    return tuner


def test_keeps_one_thread_when_the_budget_is_slower():
    try:
        tuner = tuner_on_two_threads()
        drive(tuner, lambda n: 0.010 if n == 1 else 0.500)
        assert tuner.current == 1 and tuner.phase == 0
        assert set(blas_threads().values()) == {1}
    finally:
        threads.configure(None)


def test_keeps_the_budget_when_it_is_faster():
    try:
        tuner = tuner_on_two_threads()
        drive(tuner, lambda n: 0.010 if n == 1 else 0.006)
        assert tuner.current == 2 and tuner.phase == 0
        assert set(blas_threads().values()) == {2}
    finally:
        threads.configure(None)


def test_single_thread_budget_never_probes():
    tuner = threads.BlasTuner(1, interval=0.0, window=0.0)
    for _ in range(10):
        tuner.tick()
    assert tuner.current == 1 and tuner.phase == 0
