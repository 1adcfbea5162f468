"""How kernels are compiled: each elementwise body is built serial and parallel, and a dispatcher
picks one by the size of the work, since waking the thread pool costs more than a small pass.
The two builds give the same bits (tests/test_parallel_kernels.py), so which one runs is a matter of speed.

error_model="numpy" drops the division-by-zero checks that stop LLVM from vectorising loops;
fastmath "contract" only allows fused multiply-adds, so NaN and inf keep their meaning. nogil: the
training thread's kernels let the prefetch thread run its Python code meanwhile.

Compiling is most of a first run's start-up (a kernel takes 0.2-2 s; a parallel build costs 2-3 times a
serial one), so nothing is compiled before it is called: a call from Python compiles only the build it runs,
and jitted code that never reaches PARALLEL_MIN_ELEMENTS calls the serial builds only (serial_twin). A first
run can also defer a kernel's parallel build (SizedKernel.deferred) while another process compiles it.
"""
import inspect
import types

from numba import njit, typeof
from numba.core.compiler_lock import global_compiler_lock
from numba.core.registry import CPUDispatcher
from numba.core.typing.typeof import Purpose

OPTIONS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
PARALLEL_MIN_ELEMENTS = 1 << 16  # below this, one thread finishes before the pool wakes up


def _renamed(fn, suffix, globals_=None):
    """A copy of fn under another name (so that Numba's on-disk cache keeps each build apart), reading
    `globals_` (default: fn's own) for its global names."""
    f = types.FunctionType(fn.__code__, fn.__globals__ if globals_ is None else globals_, fn.__name__ + suffix,
                           fn.__defaults__, fn.__closure__)
    f.__qualname__ = fn.__qualname__ + suffix
    f.__doc__ = fn.__doc__
    return f


class SizedKernel(CPUDispatcher):
    """The dispatcher of a by_size kernel. Jitted callers compile its _DISPATCH body, which holds both builds;
    a call from Python picks the build here, so that only the build it runs is compiled. While `deferred` is
    set, a call from Python runs the serial build at any size (the same bits, on one core), so that a first
    run need not wait for the parallel build to compile."""

    deferred = False

    def __call__(self, out, *inputs):
        g = self.py_func.__globals__
        small = self.deferred or out.size < PARALLEL_MIN_ELEMENTS
        return (g["serial"] if small else g["parallel"])(out, *inputs)

    def build(self, parallel):
        """The serial or the parallel build."""
        return self.py_func.__globals__["parallel" if parallel else "serial"]


# The dispatcher names the body's own arguments rather than taking *inputs: Numba types *inputs as a
# StarArgTuple when jitted code calls it and as a Tuple when Python does, caches both under keys that
# hash alike, and a later process that calls the kernel from Python can then run the wrong one and crash
# (numba 0.68; seen with a kernel compiled inside network_forward, then called by a test).
_DISPATCH = """
def _dispatch(out, {inputs}):
    if out.size < PARALLEL_MIN_ELEMENTS:
        return serial(out, {inputs})
    return parallel(out, {inputs})
"""


def by_size(body):
    """Compile body(out, *inputs) (written with prange) serial and parallel; return a jitted function
    that runs the parallel build when out has at least PARALLEL_MIN_ELEMENTS elements (and returns what
    the build returns).

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
    options = {k: v for k, v in OPTIONS.items() if k != "cache"}
    kernel = SizedKernel(_renamed(namespace["_dispatch"], body.__name__),
                         targetoptions={**options, "nopython": True, "boundscheck": None})
    kernel.enable_caching()
    return kernel


def serial_twin(kernel, suffix="_serial"):
    """A copy of the jitted `kernel` that calls, in place of each by_size kernel and each kernel with a twin
    among its globals, the serial build or that twin: the same results as `kernel` wherever no by_size kernel
    it calls is given PARALLEL_MIN_ELEMENTS or more elements of output, without compiling any parallel build.
    Made once the module's globals are all defined (they are copied).

    A twin is inlined (Numba IR) into the twins that call it, so a chain of twins compiles as one function,
    optimised by LLVM once, rather than once per level (network_loss_and_grad_serial: 7 s to compile alone
    became 4 s); a twin called from Python compiles as a function of its own."""
    fn = kernel.py_func
    g = dict(fn.__globals__)
    for name, value in fn.__globals__.items():
        if isinstance(value, SizedKernel):
            g[name] = value.py_func.__globals__["serial"]
        elif isinstance(value, CPUDispatcher) and hasattr(value, "serial_twin"):
            g[name] = value.serial_twin
    kernel.serial_twin = njit(inline="always", **OPTIONS)(_renamed(fn, suffix, g))
    return kernel.serial_twin


def cached(kernel, *args):
    """Whether Numba's on-disk cache holds the jitted `kernel` compiled for these arguments' types (read, not
    installed in `kernel`; Numba has no public call for it, hence its private cache object)."""
    signature = tuple(typeof(a, Purpose.argument) for a in args)
    with global_compiler_lock:  # as Numba's own loading does: it shares state with compilations elsewhere
        return kernel._cache.load_overload(signature, kernel.targetctx) is not None
