"""Dense (fully connected) layers z = a_in W^T + b; products through BLAS (np.dot).

Dimension key: B rows, I inputs, O outputs. W is [O, I] as in z = W a + b.
"""
import numpy as np
from numba import njit, prange

from .activations import bias_sigmoid_forward
from .compile import OPTIONS, by_size, serial_twin


def _bias_forward(z, b):
    """z[B, O] <- z + b[O], in place."""
    for i in prange(z.shape[0]):
        row = z[i]
        for j in range(row.shape[0]):
            row[j] += b[j]


bias_forward = by_size(_bias_forward)


@njit(**OPTIONS)
def dense_forward(z, inp, W, b):
    """z[B, O] <- inp[B, I] W[O, I]^T + b[O] (a linear layer, used for the logits)."""
    np.dot(inp, W.T, z)
    bias_forward(z, b)


@njit(**OPTIONS)
def dense_sigmoid_forward(a, inp, W, b):
    """a[B, O] <- sigmoid(inp[B, I] W[O, I]^T + b[O]); bias and sigmoid fused in one pass."""
    np.dot(inp, W.T, a)
    bias_sigmoid_forward(a, b)


@njit(**OPTIONS)
def dense_backward(dW, db, dinp, dz, inp, W, ones):
    """Gradients of a dense layer from the error dz[B, O] at its pre-activation.

    dW[O, I] <- dz^T inp;  db[O] <- sum over rows of dz (as ones[B] dz, a BLAS gemv);
    dinp[B, I] <- dz W, skipped when dinp has no rows (the first layer needs no input gradient).
    """
    np.dot(dz.T, inp, dW)
    np.dot(ones, dz, db)
    if dinp.shape[0] > 0:
        np.dot(dz, W, dinp)


dense_forward_serial = serial_twin(dense_forward)
dense_sigmoid_forward_serial = serial_twin(dense_sigmoid_forward)
