"""How kernels are compiled: each elementwise body is built serial and parallel, and a dispatcher
picks one by the size of the work, since waking the thread pool costs more than a small pass.

error_model="numpy" drops the division-by-zero checks that stop LLVM from vectorising loops;
fastmath "contract" only allows fused multiply-adds, so NaN and inf keep their meaning. nogil: the
training thread's kernels let the prefetch thread run its Python code meanwhile.
"""
import types

from numba import njit

OPTIONS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
PARALLEL_MIN_ELEMENTS = 1 << 16  # below this, one thread finishes before the pool wakes up


def _renamed(fn, suffix, namespace=None):
    """A copy of fn under another name (so that Numba's on-disk cache keeps each build apart),
    optionally resolving its global names in `namespace` instead of its module."""
    f = types.FunctionType(fn.__code__, fn.__globals__ if namespace is None else namespace,
                           fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    f.__qualname__ = fn.__qualname__ + suffix
    f.__doc__ = fn.__doc__
    return f


def _dispatch(out, *inputs):
    if out.size < PARALLEL_MIN_ELEMENTS:
        serial(out, *inputs)  # noqa: F821 (names of the namespace by_size gives each copy)
    else:
        parallel(out, *inputs)  # noqa: F821


def by_size(body):
    """Compile body(out, *inputs) (written with prange) serial and parallel; return a jitted function
    that runs the parallel build when out has at least PARALLEL_MIN_ELEMENTS elements.

    The dispatcher finds the two builds as globals, not in a closure: Numba keys its cache on the
    pickled closure, which differs from one process to the next, so a closure would compile anew
    in every process.
    """
    namespace = {
        "__name__": __name__,
        "serial": njit(**OPTIONS)(body),
        "parallel": njit(parallel=True, **OPTIONS)(_renamed(body, "_parallel")),
        "PARALLEL_MIN_ELEMENTS": PARALLEL_MIN_ELEMENTS,
    }
    return njit(**OPTIONS)(_renamed(_dispatch, body.__name__, namespace))
