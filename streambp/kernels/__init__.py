"""Numba kernels: pure functions on preallocated arrays, no I/O and nothing from the layers above.

Dimension key used in every kernel file:
    B  rows of a minibatch
    I  inputs of a layer (D, the numeric feature count, for the first layer)
    O  outputs of a layer (H hidden units, or K classes for the last layer)
    C  categorical columns of a minibatch (idx[B, C] holds their slots)
    V  slots of the first layer's embedding table E[V, O] (every categorical column's values, each
       column offset into its own range)
    R  rows of the embedding table that a minibatch touches (its distinct slots)
    P  total parameter count of the network (the flat buffer theta)
Arguments come outputs first, then inputs, then weights; gradients are named d<name>.
"""
from .threading_layer import select_layer, start_layer

select_layer()  # before any kernel of this package runs
start_layer()
