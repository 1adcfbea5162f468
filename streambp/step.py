"""One training step: a compiled backprop call and optimizer updates on preallocated buffers."""
import copy
from types import SimpleNamespace

import numpy as np

from .kernels.compile import PARALLEL_MIN_ELEMENTS
from .kernels.embedding import embedding_bag_backward
from .kernels.table import touched_rows
from .kernels.network import network_loss_and_grad, sized_for
from .model import Workspace, make_layout, parameter_count
from .optim import Optimizer


class Stepper:
    """Runs minibatches of up to `batch_size` rows through backprop and the optimizers, in place.

    X must be C-contiguous [B, D] of the model's dtype, idx int32 [B, C] the categorical slots (None or
    C = 0: none) and y int32 [B] class indices. With class_weights [K], row i weighs class_weights[y_i] /
    sum over the minibatch of class_weights[y_j] (PyTorch's weighted mean), else 1/B.

    theta holds the dense layers (P_dense values, updated by `optimizer`) then the first layer's embedding
    table E [V, O_1] (V = model.slots), of which a step updates only the rows its minibatch touches, through
    `table_optimizer.step_rows(E, rows, grads, lr)`.
    """

    def __init__(self, model, optimizer, batch_size, class_weights=None, table_optimizer=None):
        self.model = model
        self.optimizer = optimizer
        self.table_optimizer = table_optimizer
        dtype = model.theta.dtype
        self.dense = parameter_count(model.sizes)
        self.slots = getattr(model, "slots", 0)
        self.ws = Workspace(model.sizes, batch_size, dtype)
        self.dtheta = np.zeros(self.dense, dtype=dtype)  # the dense layers' gradient
        self.table_rows = np.empty(0, dtype=np.int64)  # [R] the slots of the last minibatch, ascending
        self.dtable_rows = np.empty((0, model.sizes[1]), dtype=dtype)  # [R, O_1] their gradient
        self.mean_weights = np.full(batch_size, 1.0 / batch_size, dtype=dtype)
        self.class_weights = None if class_weights is None else np.asarray(class_weights, dtype=dtype)
        self._dtable = self.dtable_rows
        self._marks = self._rows = self._inverse = np.empty(0, dtype=np.int64)  # touched_rows' buffers, sized on use
        self._loss_and_grad = sized_for(network_loss_and_grad, batch_size, model.sizes)

    @property
    def table(self):
        """E [V, O_1], a view of the model's theta."""
        return self.model.theta[self.dense:].reshape(self.slots, self.model.sizes[1])

    def loss_and_grad(self, X, idx, y):
        """(mean cross-entropy of the minibatch, rows classified right). The dense gradient is left in
        self.dtheta, the table's in self.dtable_rows for the slots self.table_rows."""
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
        idx = None if idx is None or idx.shape[1] == 0 else np.ascontiguousarray(idx, dtype=np.int32)
        inverse = self._touched_rows(idx)  # before the forward pass reads E[idx]: it checks the slots
        m, ws = self.model, self.ws
        c, hits = self._loss_and_grad(self.dtheta, ws.acts, ws.deltas, ws.losses, m.theta, m.layout, X, idx, y, w,
                                      ws.ones)
        if inverse is not None:
            O1 = m.sizes[1]  # delta^1 is the deltas workspace's first block
            embedding_bag_backward(self.dtable_rows, ws.deltas[:n * O1].reshape(n, O1), inverse)
        return c, hits

    def _touched_rows(self, idx):
        """Set table_rows to the distinct slots of idx [B, C] and size dtable_rows for them; return the
        position of each idx[b, c] in table_rows [B, C] (None when idx is None: no categorical inputs)."""
        if idx is None:
            self.table_rows = self.table_rows[:0]
            self.dtable_rows = self._dtable[:0]
            return None
        if self._marks.shape[0] != self.slots or self._rows.shape[0] < idx.size:
            self._marks = np.full(self.slots, -1, dtype=np.int64)  # touched_rows leaves it so after each call
            self._rows = np.empty(idx.size, dtype=np.int64)
            self._inverse = np.empty(idx.size, dtype=np.int64)
        inverse = self._inverse[:idx.size].reshape(idx.shape)
        R = touched_rows(self._rows, inverse, idx, self._marks)
        if R < 0:
            raise ValueError(f"categorical slot {self._rows[0]} is outside the model's embedding table of {self.slots} "
                             "slots")
        rows = self._rows[:R]
        if rows.size > self._dtable.shape[0]:
            self._dtable = np.empty((max(rows.size, 2 * self._dtable.shape[0]), self.model.sizes[1]),
                                    dtype=self.dtheta.dtype)
        self.table_rows = rows
        self.dtable_rows = self._dtable[:rows.size]
        return inverse

    def load_kernels(self):
        """Compile the kernels of a step for the model's dtype (or load them from Numba's cache) on scratch data
        (a row with one categorical column when the model has a table; optimizers with scratch state), so that
        the first step of a timed epoch does not pay for it; neither the model nor the optimizers change."""
        idx = np.zeros((1, 1), np.int32) if self.slots else None
        self.loss_and_grad(np.zeros((1, self.model.sizes[0]), self.dtheta.dtype), idx, np.zeros(1, np.int32))
        load_update(self.optimizer, self.dense)
        if self.slots and self.table_optimizer is not None:
            load_update(self.table_optimizer, self.dtable_rows.size)

    def step(self, X, idx, y, lr):
        """One SGD-style step on the minibatch; returns its mean loss before the update and how many of its
        rows the network classified right before the update."""
        loss, correct = self.loss_and_grad(X, idx, y)
        if self.table_rows.size and self.table_optimizer is None:
            raise ValueError("this Stepper got a minibatch with categorical inputs but has no table_optimizer")
        self.optimizer.step(self.model.theta[:self.dense], self.dtheta, lr)
        if self.table_rows.size:
            self.table_optimizer.step_rows(self.table, self.table_rows, self.dtable_rows, lr)
        return loss, correct


def load_update(optimizer, size):
    """Compile the update that `optimizer` (a streambp.optim.Optimizer; others are left alone) runs on `size`
    parameters, or load it from Numba's cache: one step of a copy of it on scratch parameters and state of at
    most PARALLEL_MIN_ELEMENTS values, which takes the same build of a by_size kernel as `size` values."""
    if not isinstance(optimizer, Optimizer):
        return
    n = min(size, PARALLEL_MIN_ELEMENTS)
    scratch = copy.copy(optimizer)
    scratch.shape = (n,)
    scratch.state = {k: np.zeros(n, v.dtype) for k, v in optimizer.state.items()}
    scratch._prepare()
    scratch.step(np.zeros(n, optimizer.dtype), np.zeros(n, optimizer.dtype), 0.0)


def load_kernels(dtype, batch_size, sizes, categorical):
    """What Stepper(model, ...).load_kernels() compiles for the network (not the optimizers), for a model of
    `dtype` and layer sizes `sizes`, with or without categorical inputs, before that model exists."""
    slots = 1 if categorical else 0
    theta = np.zeros(parameter_count(sizes) + slots * sizes[1], dtype)
    scratch = SimpleNamespace(theta=theta, sizes=list(sizes), layout=make_layout(sizes), slots=slots)
    Stepper(scratch, None, batch_size).load_kernels()


class SplitOptimizer:
    """The optimizer of a model with categorical inputs: one instance of the chosen optimizer over the dense
    layers theta[:P_dense] and one over the embedding table (stepped only on the rows a minibatch touches,
    Optimizer.step_rows); state_dict() holds both, the table's keys prefixed with "table."."""

    def __init__(self, factory, model, **hyper):
        self.dense = factory(model.theta[:parameter_count(model.sizes)], **hyper)
        self.table = factory(model.table.reshape(-1), **hyper)

    def state_dict(self):
        return {**self.dense.state_dict(), **{f"table.{k}": v for k, v in self.table.state_dict().items()}}

    def load_state_dict(self, state):
        self.dense.load_state_dict({k: v for k, v in state.items() if not k.startswith("table.")})
        self.table.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("table.")})


def make_optimizer(factory, model, **hyper):
    """The optimizer for the model's parameters: factory(theta, **hyper), or a SplitOptimizer when the model
    has an embedding table (refused for an optimizer without step_rows, naming it)."""
    if not model.slots:
        return factory(model.theta, **hyper)
    optimizer = SplitOptimizer(factory, model, **hyper)
    if not callable(getattr(optimizer.table, "step_rows", None)):
        from .errors import StreambpError

        names = ", ".join(c.name for c in model.spec.categorical)
        raise StreambpError(f"The optimizer {type(optimizer.table).__name__} has no step_rows, so it cannot train "
                            f"the embedding table of the categorical columns {names}. Choose a built-in optimizer "
                            "(adam, sgd, ...), leave those columns out with --ignore, or give the optimizer "
                            "step_rows (subclass streambp.optim.Optimizer).")
    return optimizer


def stepper_for(run):
    """A Stepper over run's model with run's optimizer (both parts of a SplitOptimizer)."""
    opt = run.optimizer
    dense, table = (opt.dense, opt.table) if isinstance(opt, SplitOptimizer) else (opt, None)
    return Stepper(run.model, dense, run.config.batch_size, run.class_weights, table)
