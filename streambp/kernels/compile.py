"""How kernels are compiled: each elementwise body is built serial and parallel, and a dispatcher
picks one by the size of the work, since waking the thread pool costs more than a small pass.

error_model="numpy" drops the division-by-zero checks that stop LLVM from vectorising loops;
fastmath "contract" only allows fused multiply-adds, so NaN and inf keep their meaning. nogil: the
training thread's kernels let the prefetch thread run its Python code meanwhile.
"""
import inspect
import types

from numba import njit

OPTIONS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
PARALLEL_MIN_ELEMENTS = 1 << 16  # below this, one thread finishes before the pool wakes up


def _renamed(fn, suffix):
    """A copy of fn under another name (so that Numba's on-disk cache keeps each build apart)."""
    f = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    f.__qualname__ = fn.__qualname__ + suffix
    f.__doc__ = fn.__doc__
    return f


# The dispatcher names the body's own arguments rather than taking *inputs: Numba types *inputs as a
# StarArgTuple when jitted code calls it and as a Tuple when Python does, caches both under keys that
# hash alike, and a later process that calls the kernel from Python can then run the wrong one and crash
# (numba 0.68; seen with a kernel compiled inside network_forward, then called by a test).
_DISPATCH = """
def _dispatch(out, {inputs}):
    if out.size < PARALLEL_MIN_ELEMENTS:
        serial(out, {inputs})
    else:
        parallel(out, {inputs})
"""


def by_size(body):
    """Compile body(out, *inputs) (written with prange) serial and parallel; return a jitted function
    that runs the parallel build when out has at least PARALLEL_MIN_ELEMENTS elements.

    The dispatcher finds the two builds as globals, not in a closure: Numba keys its cache on the
    pickled closure, which differs from one process to the next, so a closure would compile anew
    in every process. Its source (_DISPATCH, with body's argument names) is compiled as this file's,
    where Numba's cache looks for it (and whose changes clear that cache).
    """
    namespace = {
        "__name__": __name__,
        "serial": njit(**OPTIONS)(body),
        "parallel": njit(parallel=True, **OPTIONS)(_renamed(body, "_parallel")),
        "PARALLEL_MIN_ELEMENTS": PARALLEL_MIN_ELEMENTS,
    }
    inputs = ", ".join(list(inspect.signature(body).parameters)[1:])
    exec(compile(_DISPATCH.format(inputs=inputs), __file__, "exec"), namespace)
    return njit(**OPTIONS)(_renamed(namespace["_dispatch"], body.__name__))
