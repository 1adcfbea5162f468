"""The built-in engine: training in this process, one Stepper over the whole stream (see streambp/engine.py)."""
from .. import hookimpl


class LocalEngine:
    """Trains in this process with all its threads. With --deterministic the BLAS thread count stays fixed
    (no tuning), so a resumed run repeats an uninterrupted one bit for bit."""

    def __init__(self, run):
        from .. import threads
        from ..step import stepper_for

        self.run = run
        self.stepper = stepper_for(run)
        self.stepper.load_kernels()
        threads.start_threading_layer()
        self.tuner = None if run.config.deterministic else threads.BlasTuner(run.threads)

    def epoch(self, epoch, skip):
        from ..engine import minibatches

        r = self.run
        batches = minibatches(r.config, r.source, r.spec, r.encoder, r.model.theta.dtype, epoch, r.split,
                              r.bad_rows, cache=r.cache)
        for X, idx, y in batches:
            if skip:  # replaying the interrupted epoch's stream up to where it stopped
                skip -= 1
                continue
            loss, correct = self.stepper.step(X, idx, y, r.lr_at(r.steps))
            if self.tuner is not None:
                self.tuner.tick()
            yield X.shape[0], loss, correct, 1

    def close(self):
        pass


@hookimpl
def register_engines(register):
    register("local", LocalEngine)
