"""Scalar functions inlined into the kernels: exp and sigmoid, vectorisable in float32.

np.exp inside @njit is a call into libm, one element at a time. The float32 exp below is the
Cephes expf (range reduction by ln 2, a degree-6 polynomial, 2^n built from its bits), within
2 ulp of the exact value and branch-free, so LLVM turns the loops around it into SIMD code.
float64 keeps np.exp: it is the dtype of the reference checks, not of training.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload


@intrinsic
def _int32_bits_as_float32(typingctx, x):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


def exp(x):
    """e^x, clamped to the float32 range for float32 x (jitted code only)."""
    raise NotImplementedError("streambp.kernels.scalar.exp runs inside @njit code only")


def sigmoid(x):
    """1 / (1 + e^-x) without overflow for any finite x (jitted code only)."""
    raise NotImplementedError("streambp.kernels.scalar.sigmoid runs inside @njit code only")


@overload(exp, inline="always")
def _exp(x):
    if x == types.float32:
        def expf(x):
            x = min(max(x, np.float32(-87.0)), np.float32(88.0))
            n = np.floor(x * np.float32(1.4426950408889634) + np.float32(0.5))
            r = x - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)
            p = np.float32(1.9875691500e-4)
            p = p * r + np.float32(1.3981999507e-3)
            p = p * r + np.float32(8.3334519073e-3)
            p = p * r + np.float32(4.1665795894e-2)
            p = p * r + np.float32(1.6666665459e-1)
            p = p * r + np.float32(5.0000001201e-1)
            return (p * r * r + r + np.float32(1.0)) * _int32_bits_as_float32((np.int32(n) + np.int32(127))
                                                                             << np.int32(23))
        return expf
    return lambda x: np.exp(x)


@overload(sigmoid, inline="always")
def _sigmoid(x):
    if x == types.float32:
        # exp is clamped, so e^-x stays finite and 1 / (1 + e^-x) lies in [0, 1] for any x.
        return lambda x: np.float32(1.0) / (np.float32(1.0) + exp(-x))

    def sigmoid64(x):
        if x >= 0:
            return 1.0 / (1.0 + np.exp(-x))
        e = np.exp(x)
        return e / (1.0 + e)
    return sigmoid64
