"""One training step: a compiled backprop call and an optimizer update on preallocated buffers."""
import numpy as np

from .kernels.network import network_loss_and_grad
from .model import Workspace


class Stepper:
    """Runs minibatches of up to `batch_size` rows through backprop and the optimizer, in place.

    X must be C-contiguous [B, D] of the model's dtype and y int32 [B] class indices. With
    class_weights [K], row i weighs class_weights[y_i] / sum over the minibatch of class_weights[y_j]
    (PyTorch's weighted mean), else 1/B.
    """

    def __init__(self, model, optimizer, batch_size, class_weights=None):
        self.model = model
        self.optimizer = optimizer
        dtype = model.theta.dtype
        self.ws = Workspace(model.sizes, batch_size, dtype)
        self.dtheta = np.zeros_like(model.theta)
        self.mean_weights = np.full(batch_size, 1.0 / batch_size, dtype=dtype)
        self.class_weights = None if class_weights is None else np.asarray(class_weights, dtype=dtype)

    def loss_and_grad(self, X, y):
        """(mean cross-entropy of the minibatch, rows classified right); the gradient is left in self.dtheta."""
        n = X.shape[0]
        if n > self.ws.rows:
            raise ValueError(f"minibatch of {n} rows; this Stepper was built for at most {self.ws.rows}")
        if self.class_weights is not None:
            w = self.class_weights[y]
            w /= max(w.sum(), np.finfo(w.dtype).tiny)
        elif n == self.ws.rows:
            w = self.mean_weights
        else:
            w = np.full(n, 1.0 / n, dtype=self.dtheta.dtype)
        m, ws = self.model, self.ws
        return network_loss_and_grad(self.dtheta, ws.acts, ws.deltas, ws.losses, m.theta, m.layout, X, y, w,
                                     ws.ones)

    def load_kernels(self):
        """Compile the backprop kernel for the model's dtype (or load it from Numba's cache) on a scratch row,
        so that the first step of a timed epoch does not pay for it; the model is not changed."""
        self.loss_and_grad(np.zeros((1, self.model.sizes[0]), self.dtheta.dtype), np.zeros(1, np.int32))

    def step(self, X, y, lr):
        """One SGD-style step on the minibatch; returns its mean loss before the update and how many of its
        rows the network classified right before the update."""
        loss, correct = self.loss_and_grad(X, y)
        self.optimizer.step(self.model.theta, self.dtheta, lr)
        return loss, correct
