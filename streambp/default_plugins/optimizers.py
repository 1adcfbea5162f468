"""Built-in optimizers. An optimizer is built as factory(theta, **hyper_parameters) and has
step(theta, dtheta, lr), state_dict() and load_state_dict(state); see docs/plugins.md."""

from .. import hookimpl
from ..kernels.optim import sgd_update


class SGD:
    """Plain stochastic gradient descent: theta <- theta - lr * dtheta."""

    def __init__(self, theta):
        self.dtype = theta.dtype

    def step(self, theta, dtheta, lr):
        sgd_update(theta, dtheta, self.dtype.type(lr))

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@hookimpl
def register_optimizers(register):
    register("sgd", SGD)
