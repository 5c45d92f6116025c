"""The Functions behind Tensor's operators and methods: arithmetic with NumPy broadcasting,
elementwise math, reductions, shape changes, indexing, cat/stack and matmul.

Each is a forward on arrays plus its backward (see autograd.py). Broadcast inputs get their
gradient summed back to their own shape (``unbroadcast``). matmul runs on the GEMM of the arrays'
backend; the rest is NumPy's array arithmetic, and what they allocate comes from the backend of
the arrays they work on.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import ops
from .autograd import Function
from .backends import as_array, backend_of
from .ops._validate import is_bfloat16


def _shape_of(value) -> tuple:
    """``np.shape(value)``, without its cost for arrays (the common case on every recorded op)."""
    shape = getattr(value, "shape", None)
    return np.shape(value) if shape is None else shape


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sums ``grad`` over the axes along which an input of ``shape`` was broadcast."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape) if axes else grad.reshape(shape)


def unbroadcast_tensor(grad, shape):
    """:func:`unbroadcast` of a Tensor (create_graph=True's backward, see autograd.GraphIO)."""
    shape = tuple(shape)
    if tuple(grad.shape) == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    return grad.sum(axes, keepdim=True).reshape(shape) if axes else grad.reshape(shape)


# ---------------------------------------------------------------------------------------------
# Arithmetic (either operand may be a Python/NumPy scalar)
# ---------------------------------------------------------------------------------------------


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (_shape_of(a), _shape_of(b))
        return np.add(a, b)

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return (
            unbroadcast(g, sa) if ctx.needs_input_grad[0] else None,
            unbroadcast(g, sb) if ctx.needs_input_grad[1] else None,
        )

    @staticmethod
    def backward_graph(ctx, io, g):
        sa, sb = ctx.shapes
        return (
            unbroadcast_tensor(g, sa) if ctx.needs_input_grad[0] else None,
            unbroadcast_tensor(g, sb) if ctx.needs_input_grad[1] else None,
        )


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (_shape_of(a), _shape_of(b))
        return np.subtract(a, b)

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return (
            unbroadcast(g, sa) if ctx.needs_input_grad[0] else None,
            unbroadcast(-g, sb) if ctx.needs_input_grad[1] else None,
        )

    @staticmethod
    def backward_graph(ctx, io, g):
        sa, sb = ctx.shapes
        return (
            unbroadcast_tensor(g, sa) if ctx.needs_input_grad[0] else None,
            unbroadcast_tensor(-g, sb) if ctx.needs_input_grad[1] else None,
        )


class Mul(Function):
    """Saves only what the gradients asked for need (``b`` for ``a``'s, ``a`` for ``b``'s), so that an
    in-place change of an operand whose value no gradient reads stays allowed, as in PyTorch."""

    @staticmethod
    def forward(ctx, a, b):
        need_a, need_b = ctx.needs_input_grad
        ctx.shapes = (_shape_of(a), _shape_of(b))
        ctx.save_for_backward(a if need_b else None, b if need_a else None)
        return np.multiply(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        sa, sb = ctx.shapes
        return (
            unbroadcast(g * b, sa) if ctx.needs_input_grad[0] else None,
            unbroadcast(g * a, sb) if ctx.needs_input_grad[1] else None,
        )

    @staticmethod
    def backward_graph(ctx, io, g):
        a, b = ctx.saved_tensors
        sa, sb = ctx.shapes
        return (
            unbroadcast_tensor(g * io.input(1, b), sa) if ctx.needs_input_grad[0] else None,
            unbroadcast_tensor(g * io.input(0, a), sb) if ctx.needs_input_grad[1] else None,
        )


def _silent_floating_point(fn):
    """``fn`` with NumPy's floating-point warnings off: x / 0, log(0), sqrt(-1) and overflow give
    inf or NaN silently, as in PyTorch (the backward pass runs under the same setting, see
    autograd._engine)."""

    @functools.wraps(fn)
    def silent(*args, **kwargs):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return fn(*args, **kwargs)

    return silent


class Div(Function):
    """Saves ``b``, and ``a`` only when ``b``'s gradient is asked for (see Mul)."""

    @staticmethod
    @_silent_floating_point
    def forward(ctx, a, b):
        ctx.shapes = (_shape_of(a), _shape_of(b))
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None, b)
        return np.divide(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        sa, sb = ctx.shapes
        ga = unbroadcast(g / b, sa) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(-g * a / (b * b), sb) if ctx.needs_input_grad[1] else None
        return ga, gb

    @staticmethod
    def backward_graph(ctx, io, g):
        a, b = ctx.saved_tensors
        sa, sb = ctx.shapes
        divisor = io.input(1, b)
        ga = unbroadcast_tensor(g / divisor, sa) if ctx.needs_input_grad[0] else None
        gb = unbroadcast_tensor(-g * io.input(0, a) / (divisor * divisor), sb) if ctx.needs_input_grad[1] else None
        return ga, gb


def _negative_integer_exponents(a, b) -> bool:
    """Whether integer ``a`` meets an integer exponent tensor ``b`` holding a negative value (NumPy
    refuses those; a negative Python number exponent stays refused, as in PyTorch)."""
    kinds = "iu"
    return (
        getattr(a, "dtype", None) is not None
        and a.dtype.kind in kinds
        and getattr(b, "ndim", None) is not None
        and b.dtype.kind in kinds
        and b.size > 0
        and bool((b < 0).any())
    )


class Pow(Function):
    @staticmethod
    @_silent_floating_point
    def forward(ctx, a, b):
        if _negative_integer_exponents(a, b):  # PyTorch's: 1 and -1 keep a magnitude of 1, the rest go to 0
            b_kept = np.where(b < 0, 0, b)
            unit = np.where(a == 1, 1, np.where(a == -1, np.where(b % 2 == 0, 1, -1), 0))
            out = np.where(b < 0, unit, np.power(a, b_kept)).astype(np.result_type(a, b), copy=False)
        else:
            out = np.power(a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        ga = gb = None
        if ctx.needs_input_grad[0]:  # 0 where the exponent is 0 (0 * 0^-1 would be NaN), as PyTorch
            ga = unbroadcast(g * np.where(b == 0, 0, b * np.power(a, b - 1)), np.shape(a))
        if ctx.needs_input_grad[1]:  # out log(a), 0 where a == 0 <= b, NaN for a < 0 (as PyTorch); in out's
            # dtype: log(a) of a number base is a float64 NumPy scalar
            d_b = np.where((a == 0) & (b >= 0), 0, out * np.log(a))
            gb = unbroadcast((g * d_b).astype(out.dtype, copy=False), np.shape(b))
        return ga, gb

    @staticmethod
    def backward_graph(ctx, io, g):
        a, b, _ = ctx.saved_tensors
        if ctx.needs_input_grad[1]:
            raise NotImplementedError("create_graph=True: the gradient of a power with respect to its exponent")
        exponent = b if np.ndim(b) else float(b)
        base = io.input(0, a)
        slope = Where.apply(np.asarray(b) == 0, 0.0, base ** (exponent - 1) * exponent)
        return unbroadcast_tensor(g * slope, np.shape(a)), None


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return np.negative(a)

    @staticmethod
    def backward(ctx, g):
        return -g

    @staticmethod
    def backward_graph(ctx, io, g):
        return -g


class MatMul(Function):
    """NumPy's matmul semantics (1-D operands, batched broadcast) on deepkern's GEMM."""

    @staticmethod
    def forward(ctx, a, b):
        if a.dtype != b.dtype:  # PyTorch's rule (the array op promotes as NumPy does)
            raise RuntimeError(f"matmul: expected both operands to have the same dtype, got {a.dtype} and {b.dtype}")
        # Each operand only where the other's gradient needs it (as PyTorch saves them): changing the
        # other in place before the backward is then no error.
        ctx.shapes = (np.shape(a), np.shape(b))
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None, b if ctx.needs_input_grad[0] else None)
        return ops.matmul(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        sa, sb = ctx.shapes
        sa2 = (1,) + sa if len(sa) == 1 else sa  # a 1-D operand as the matrix it stands for
        sb2 = sb + (1,) if len(sb) == 1 else sb
        batch = np.broadcast_shapes(sa2[:-2], sb2[:-2])
        g2 = g.reshape(batch + (sa2[-2], sb2[-1]))  # restores dims a 1-D operand dropped
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast(ops.matmul(g2, np.swapaxes(b.reshape(sb2), -1, -2)), sa2).reshape(sa)
        if ctx.needs_input_grad[1]:
            gb = unbroadcast(ops.matmul(np.swapaxes(a.reshape(sa2), -1, -2), g2), sb2).reshape(sb)
        return ga, gb

    @staticmethod
    def backward_graph(ctx, io, g):
        a, b = ctx.saved_tensors
        sa, sb = ctx.shapes
        sa2 = (1,) + sa if len(sa) == 1 else sa
        sb2 = sb + (1,) if len(sb) == 1 else sb
        g2 = g.reshape(np.broadcast_shapes(sa2[:-2], sb2[:-2]) + (sa2[-2], sb2[-1]))
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = unbroadcast_tensor(g2 @ io.input(1, b).reshape(sb2).transpose(-1, -2), sa2).reshape(sa)
        if ctx.needs_input_grad[1]:
            gb = unbroadcast_tensor(io.input(0, a).reshape(sa2).transpose(-1, -2) @ g2, sb2).reshape(sb)
        return ga, gb


# ---------------------------------------------------------------------------------------------
# Elementwise math
# ---------------------------------------------------------------------------------------------


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * out

    @staticmethod
    def backward_graph(ctx, io, g):
        (out,) = ctx.saved_tensors
        return g * io.output(0, out)


class Log(Function):
    @staticmethod
    @_silent_floating_point
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g / a

    @staticmethod
    def backward_graph(ctx, io, g):
        (a,) = ctx.saved_tensors
        return g / io.input(0, a)


class Sqrt(Function):
    """The square root; with ``zero_at_zero`` its gradient at a zero result is 0 instead of inf or NaN
    (a standard deviation's, as PyTorch's std)."""

    @staticmethod
    @_silent_floating_point
    def forward(ctx, a, zero_at_zero=False):
        out = np.sqrt(a)
        ctx.save_for_backward(out)
        ctx.meta = zero_at_zero
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        grad = g / (2 * out)
        return np.where(out == 0, 0, grad) if ctx.meta else grad

    @staticmethod
    def backward_graph(ctx, io, g):
        (out,) = ctx.saved_tensors
        grad = g / (io.output(0, out) * 2)
        return Where.apply(out == 0, 0.0, grad) if ctx.meta else grad


def _pointwise(name: str, f, derivative):
    """A Function computing ``f(a)`` elementwise (NumPy's floating-point warnings off) whose backward
    is ``g * derivative(a)``."""

    @_silent_floating_point
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return f(a)

    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * derivative(a)

    return type(name, (Function,), {"forward": staticmethod(forward), "backward": staticmethod(backward)})


Abs = _pointwise("Abs", np.abs, np.sign)
Sin = _pointwise("Sin", np.sin, np.cos)
Cos = _pointwise("Cos", np.cos, lambda a: -np.sin(a))
Log1p = _pointwise("Log1p", np.log1p, lambda a: 1 / (1 + a))
Expm1 = _pointwise("Expm1", np.expm1, np.exp)
Log2 = _pointwise("Log2", np.log2, lambda a: 1 / (a * math.log(2)))
Log10 = _pointwise("Log10", np.log10, lambda a: 1 / (a * math.log(10)))


def _piecewise_constant(name: str, f):
    """A Function computing ``f(a)`` whose gradient is zeros, as PyTorch's: not ``g * 0``, which an
    infinite or NaN incoming gradient would make NaN."""

    def forward(ctx, a):
        ctx.meta = (a.shape, a.dtype)
        return f(a)

    def backward(ctx, g):
        return np.zeros_like(g, shape=ctx.meta[0])

    return type(name, (Function,), {"forward": staticmethod(forward), "backward": staticmethod(backward)})


# Piecewise constant: gradient 0, as PyTorch's (sign is 0 at NaN there, not NaN).
Floor = _piecewise_constant("Floor", np.floor)
Ceil = _piecewise_constant("Ceil", np.ceil)
Trunc = _piecewise_constant("Trunc", np.trunc)
Sign = _piecewise_constant("Sign", lambda a: np.where(np.isnan(a), 0, np.sign(a)))
Tan = _pointwise("Tan", np.tan, lambda a: 1 / np.cos(a) ** 2)
Sinh = _pointwise("Sinh", np.sinh, np.cosh)
Cosh = _pointwise("Cosh", np.cosh, np.sinh)
Asin = _pointwise("Asin", np.arcsin, lambda a: 1 / np.sqrt(1 - a * a))
Acos = _pointwise("Acos", np.arccos, lambda a: -1 / np.sqrt(1 - a * a))
Atan = _pointwise("Atan", np.arctan, lambda a: 1 / (1 + a * a))
Exp2 = _pointwise("Exp2", np.exp2, lambda a: np.exp2(a) * math.log(2))


def _erf_of(function):
    """``function`` (math.erf or math.erfc) elementwise: computed in float64 (NumPy has no erf), the
    result rounded once to the input's dtype."""
    elementwise = np.vectorize(function, otypes=[np.float64])
    return lambda a: as_array(elementwise(a)).astype(a.dtype, copy=False)


def _erf_derivative(a):
    return (2 / math.sqrt(math.pi)) * np.exp(-(a * a))


Erf = _pointwise("Erf", _erf_of(math.erf), _erf_derivative)
Erfc = _pointwise("Erfc", _erf_of(math.erfc), lambda a: -_erf_derivative(a))


def _pointwise_pair(name: str, f, derivatives):
    """A Function computing ``f(a, b)`` elementwise with broadcasting (NumPy's floating-point
    warnings off) whose backward is ``g * da`` and ``g * db``, ``(da, db) = derivatives(a, b, out)``,
    each summed over the axes its operand was broadcast along."""

    @_silent_floating_point
    def forward(ctx, a, b):
        out = f(a, b)
        ctx.save_for_backward(a, b, out)
        return out

    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        da, db = derivatives(a, b, out)
        return tuple(
            unbroadcast(g * d, _shape_of(x)) if needed else None
            for d, x, needed in zip((da, db), (a, b), ctx.needs_input_grad)
        )

    return type(name, (Function,), {"forward": staticmethod(forward), "backward": staticmethod(backward)})


def _atan2_derivatives(a, b, out):
    squares = a * a + b * b
    scale = np.where(squares == 0, 0, 1 / np.where(squares == 0, 1, squares))  # 0 at (0, 0), as PyTorch
    return b * scale, -a * scale


Atan2 = _pointwise_pair("Atan2", np.arctan2, _atan2_derivatives)
Hypot = _pointwise_pair("Hypot", np.hypot, lambda a, b, out: (a / out, b / out))
# PyTorch's form 1 / (1 + e^(b - a)): finite where an operand is infinite (e^(a - out) is inf - inf there)
LogAddExp = _pointwise_pair(
    "LogAddExp", np.logaddexp, lambda a, b, out: (1 / (1 + np.exp(b - a)), 1 / (1 + np.exp(a - b)))
)


class Round(Function):
    """Rounds half to even (NumPy's and PyTorch's rule) at ``decimals`` places; gradient 0."""

    @staticmethod
    def forward(ctx, a, decimals=0):
        ctx.meta = a.shape
        return np.round(a, decimals)

    @staticmethod
    def backward(ctx, g):
        return np.zeros_like(g, shape=ctx.meta)


def _check_integer_divisor(a, b, what: str) -> None:
    """ZeroDivisionError for an integer division by zero (NumPy would give 0 silently), as PyTorch."""
    if np.result_type(a, b).kind in "iub" and bool(np.any(b == 0)):
        raise ZeroDivisionError(f"{what}: integer division by zero")


class Remainder(Function):
    """a - b * floor(a / b) (Python's and PyTorch's ``%``: the divisor's sign), or with ``c_style``
    a - b * trunc(a / b) (C's fmod: the dividend's sign)."""

    @staticmethod
    @_silent_floating_point
    def forward(ctx, a, b, c_style=False):
        _check_integer_divisor(a, b, "fmod" if c_style else "remainder")
        ctx.save_for_backward(a, b)
        ctx.meta = c_style
        return (np.fmod if c_style else np.remainder)(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ga = unbroadcast(g, np.shape(a)) if ctx.needs_input_grad[0] else None
        gb = None
        if ctx.needs_input_grad[1]:
            quotient = (np.trunc if ctx.meta else np.floor)(a / b)
            gb = unbroadcast(-g * quotient, np.shape(b))
        return ga, gb


class FloorDivide(Function):
    """floor(a / b), PyTorch's ``//``; piecewise constant, so its gradient is 0 (PyTorch refuses one)."""

    @staticmethod
    @_silent_floating_point
    def forward(ctx, a, b):
        _check_integer_divisor(a, b, "floor_divide")
        ctx.meta = (np.shape(a), np.shape(b))
        return np.floor_divide(a, b)

    @staticmethod
    def backward(ctx, g):
        return tuple(np.zeros_like(g, shape=shape) for shape in ctx.meta)


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * (1 - out * out)

    @staticmethod
    def backward_graph(ctx, io, g):
        (out,) = ctx.saved_tensors
        y = io.output(0, out)
        return g * (1 - y * y)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, a):
        # exp of a non-positive argument only: no overflow for large |a|.
        e = np.exp(-np.abs(a))
        out = np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * out * (1 - out)

    @staticmethod
    def backward_graph(ctx, io, g):
        (out,) = ctx.saved_tensors
        y = io.output(0, out)
        return g * y * (1 - y)


class Relu(Function):
    """float32/float64 and bfloat16 (through float32, exact) on deepkern's kernels; other dtypes
    (integers) with NumPy."""

    @staticmethod
    def forward(ctx, a):
        out = ops.relu(a) if _kernel_dtype(a, bfloat16=True) else np.maximum(a, 0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        # PyTorch's threshold_backward on the result: g where out > 0 or NaN, else 0
        return ops.relu_backward(g, out) if _kernel_dtype(g, out, bfloat16=True) else g * (out > 0)

    @staticmethod
    def backward_graph(ctx, io, g):
        (out,) = ctx.saved_tensors
        return g * ((out > 0) | np.isnan(out)).astype(g.dtype)  # a constant mask: its own derivative is 0


class Clamp(Function):
    """``a`` limited to [low, high] (each None, a number, or an array broadcast with ``a``; all of
    ``a``'s dtype), as PyTorch's clamp: the gradient goes to ``a`` where low <= a <= high, to ``low``
    where a < low and to ``high`` where a > high (NaN in ``a``: to the bounds)."""

    @staticmethod
    def forward(ctx, a, low=None, high=None):
        ctx.save_for_backward(a, low, high)
        ctx.shapes = (_shape_of(a), _shape_of(low), _shape_of(high))
        out = a if low is None else np.maximum(a, low)
        out = out if high is None else np.minimum(out, high)
        return out.astype(a.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        a, low, high = ctx.saved_tensors
        sa, sl, sh = ctx.shapes
        # PyTorch's rule: x's gradient where low <= x <= high; low's where x < low < high (a low above
        # high gives way to high, which then sets the output); high's where x > high or high < low.
        # A NaN anywhere compares false: no gradient to any of them there.
        above = True if low is None else a >= low
        below = True if high is None else a <= high
        ga = unbroadcast(g * (above & below), sa) if ctx.needs_input_grad[0] else None
        gl = gh = None
        if ctx.needs_input_grad[1]:
            gl = unbroadcast(g * ((a < low) & (True if high is None else low < high)), sl)
        if ctx.needs_input_grad[2]:
            gh = unbroadcast(g * ((a > high) | (False if low is None else high < low)), sh)
        return ga, gl, gh


# ---------------------------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------------------------


def _kernel_dtype(*arrays, bfloat16: bool = False) -> bool:
    """True when the arrays share one dtype that deepkern's kernels take (float32 or float64; and
    bfloat16 with ``bfloat16``, for the ops that take it)."""
    dtype = arrays[0].dtype
    takes = dtype in (np.float32, np.float64) or (bfloat16 and is_bfloat16(dtype))
    return takes and all(a.dtype == dtype for a in arrays)


def _axes(dim, ndim):
    """The axes a reduction over ``dim`` (None, an int or a sequence) takes, as PyTorch reads it: an
    empty sequence means every dimension, and a 0-d tensor's dim 0 or -1 none."""
    dims = () if dim is None else (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    if not dims:
        return tuple(range(ndim))
    for d in dims:
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise IndexError(f"dim {d} is out of range for a tensor of {ndim} dimensions")
    return tuple(sorted(d % ndim for d in dims)) if ndim else ()


def _expand_reduced_tensor(g, shape, axes, keepdim):
    """:func:`_expand_reduced` of a Tensor (create_graph=True's backward)."""
    if not keepdim:
        g = g.reshape(tuple(1 if i in axes else n for i, n in enumerate(shape)))
    return g.expand(*shape) if shape else g


def _expand_reduced(g, shape, axes, keepdim):
    """``g`` (a reduction over ``axes``) broadcastable against the input's ``shape``."""
    if not keepdim:
        for ax in axes:
            g = np.expand_dims(g, ax)
    return np.broadcast_to(g, shape)


class _KeptDimsReduction(Function):
    """A reduction over ``axes``, computed with kept dimensions by ``reduce(a, axes, **options)``, whose
    gradient is the output's broadcast back, times ``weights(a, out, axes)``."""

    @classmethod
    def forward(cls, ctx, a, axes, keepdim=False, **options):
        out = cls.reduce(a, axes, **options)
        ctx.save_for_backward(a, out)
        ctx.meta = (axes, keepdim)
        return out if keepdim else np.squeeze(out, axis=axes)

    @classmethod
    def backward(cls, ctx, g):
        a, out = ctx.saved_tensors
        axes, keepdim = ctx.meta
        return _expand_reduced(g, a.shape, axes, keepdim) * cls.weights(a, out, axes)


class Extremum(_KeptDimsReduction):
    """The maximum (``minimum``: the minimum) over ``axes``, PyTorch's amax / amin: the gradient is
    shared evenly among the elements equal to it."""

    @staticmethod
    def reduce(a, axes, minimum=False):
        return (np.amin if minimum else np.amax)(a, axis=axes, keepdims=True)

    @staticmethod
    def weights(a, out, axes):
        hits = a == out
        return (hits / np.sum(hits, axis=axes, keepdims=True)).astype(a.dtype, copy=False)


class Prod(Function):
    """The product along ``axis`` (None: of every element); the gradient of an element is the product
    of the others (exclusive products from both sides: exact with zeros, no division)."""

    @staticmethod
    def forward(ctx, a, axis=None, keepdim=False):
        ctx.save_for_backward(a)
        ctx.meta = (axis, keepdim)
        return as_array(np.prod(a, axis=axis, keepdims=keepdim, dtype=_exact_dtype(a)))

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        axis, keepdim = ctx.meta
        x = a.reshape(-1) if axis is None else np.moveaxis(a, axis, -1)
        ones = np.ones_like(x[..., :1])
        before = np.concatenate([ones, np.cumprod(x[..., :-1], axis=-1)], axis=-1)
        after = np.flip(np.concatenate([ones, np.cumprod(np.flip(x[..., 1:], -1), axis=-1)], axis=-1), -1)
        others = before * after
        if axis is None:
            return g * others.reshape(a.shape)
        return (g if keepdim else np.expand_dims(g, axis)) * np.moveaxis(others, -1, axis)


class LogSumExp(_KeptDimsReduction):
    """log(sum(exp(a))) over ``axes``, shifted by the maximum (finite for large values; -inf when
    every value is -inf); the gradient is exp(a - result), the softmax."""

    @staticmethod
    @_silent_floating_point
    def reduce(a, axes):
        top = np.amax(a, axis=axes, keepdims=True) if a.size else np.zeros_like(a, shape=(1,) * a.ndim)
        top = np.where(np.isfinite(top), top, 0)
        return np.log(np.sum(np.exp(a - top), axis=axes, keepdims=True)) + top

    @staticmethod
    def weights(a, out, axes):
        return np.exp(a - out)

    @staticmethod
    def backward_graph(ctx, io, g):
        a, out = ctx.saved_tensors
        axes, keepdim = ctx.meta
        x = io.input(0, a)
        # exp(a - result) with the result recomputed as a Tensor op (its dependence on a counts)
        result = x.logsumexp(axes, keepdim=True)
        return _expand_reduced_tensor(g, a.shape, axes, keepdim) * (x - result).exp()


class Diagonal(Function):
    """The diagonal at ``offset`` of the (dim1, dim2) planes, as the last axis (NumPy's and PyTorch's
    layout), a view of the input; the gradient is scattered back onto it."""

    @staticmethod
    def forward(ctx, a, offset=0, dim1=0, dim2=1):
        ctx.meta = (a.shape, a.dtype, offset, dim1, dim2)
        out = np.diagonal(a, offset, dim1, dim2)  # a view (NumPy's read-only by default)
        if getattr(a, "flags", None) is not None and a.flags.writeable:
            out.flags.writeable = True  # writes reach a: x.diagonal().add_(eps), as PyTorch's
        return out

    @staticmethod
    def backward(ctx, g):
        shape, dtype, offset, dim1, dim2 = ctx.meta
        grad = backend_of(g, op="DiagonalBackward").zeros(shape, dtype)
        set_diagonal(grad, g, offset, dim1, dim2)
        return grad


def set_diagonal(a, values, offset: int, dim1: int, dim2: int) -> None:
    """Writes ``values`` (laid out as Diagonal gives it: the diagonal along the last axis) onto the
    diagonal at ``offset`` of ``a``'s (dim1, dim2) planes, in place."""
    planes = np.moveaxis(a, (dim1, dim2), (-2, -1))  # a view of a
    rows = np.arange(values.shape[-1]) + max(-offset, 0)
    planes[..., rows, rows + offset] = values


class DiagonalScatter(Function):
    """``a`` with its diagonal (Diagonal's) replaced by ``src`` (PyTorch's diagonal_scatter): the
    gradient of the replaced elements goes to ``src``."""

    @staticmethod
    def forward(ctx, a, src, offset=0, dim1=0, dim2=1):
        ctx.meta = (offset, dim1, dim2)
        out = a.copy()
        set_diagonal(out, src, offset, dim1, dim2)
        return out

    @staticmethod
    def backward(ctx, g):
        offset, dim1, dim2 = ctx.meta
        diagonal = as_array(np.diagonal(g, offset, dim1, dim2)).copy()
        grad_a = g.copy() if ctx.needs_input_grad[0] else None
        if grad_a is not None:
            set_diagonal(grad_a, np.zeros_like(diagonal), offset, dim1, dim2)
        return grad_a, diagonal if ctx.needs_input_grad[1] else None


def _exact_dtype(a):
    """The dtype NumPy must keep for a sum or product of integer or bool ``a`` (it would widen them to
    int64; the Tensor methods widen where PyTorch does), None for floats (NumPy's own accumulation)."""
    return a.dtype if a.dtype.kind in "biu" else None


class Sum(Function):
    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        ctx.meta = (a.shape, _axes(dim, a.ndim), keepdim)
        return as_array(np.sum(a, axis=ctx.meta[1], keepdims=keepdim, dtype=_exact_dtype(a)))

    @staticmethod
    def backward(ctx, g):
        shape, axes, keepdim = ctx.meta
        return _expand_reduced(g, shape, axes, keepdim).copy()

    @staticmethod
    def backward_graph(ctx, io, g):
        shape, axes, keepdim = ctx.meta
        return _expand_reduced_tensor(g, shape, axes, keepdim)


class Mean(Function):
    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False):
        axes = _axes(dim, a.ndim)
        ctx.meta = (a.shape, axes, keepdim)
        ctx.count = int(np.prod([a.shape[ax] for ax in axes])) if a.ndim else 1
        return as_array(np.mean(a, axis=axes, keepdims=keepdim)).astype(a.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        shape, axes, keepdim = ctx.meta
        return _expand_reduced(g / ctx.count, shape, axes, keepdim).copy()

    @staticmethod
    def backward_graph(ctx, io, g):
        shape, axes, keepdim = ctx.meta
        return _expand_reduced_tensor(g / ctx.count, shape, axes, keepdim)


class Var(Function):
    """``sum((a - mean)^2) / divisor`` over ``axes`` (``divisor`` = N - correction; 0 gives inf or
    NaN, as PyTorch). The gradient is PyTorch's ``2 (a - mean) g / divisor`` (the mean's own term is
    analytically 0; computing it would turn a zero divisor's inf into inf - inf); the create_graph
    one keeps the mean's dependence on ``a``, so second derivatives are right."""

    @staticmethod
    @_silent_floating_point
    def forward(ctx, a, axes, keepdim, divisor):
        centered = a - np.mean(a, axis=axes, keepdims=True)
        ctx.save_for_backward(a)
        ctx.meta = (axes, keepdim, divisor)
        return as_array(np.sum(centered * centered, axis=axes, keepdims=keepdim) / divisor).astype(a.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        axes, keepdim, divisor = ctx.meta
        g = g if keepdim else np.expand_dims(g, axes)
        return ((a - np.mean(a, axis=axes, keepdims=True)) * (g * (2.0 / divisor) if divisor else g * np.inf)).astype(
            a.dtype, copy=False
        )

    @staticmethod
    def backward_graph(ctx, io, g):
        (a,) = ctx.saved_tensors
        axes, keepdim, divisor = ctx.meta
        x = io.input(0, a)
        g = g if keepdim else g.reshape(tuple(1 if i in axes else n for i, n in enumerate(a.shape)))
        return (x - x.mean(axes, keepdim=True)) * g * (2.0 / divisor if divisor else np.inf)


class Max(Function):
    """``max()`` over everything (the gradient shared evenly among ties, as PyTorch does) or
    ``max(dim)`` returning (values, indices) with the gradient going to the index taken."""

    @staticmethod
    def forward(ctx, a, dim=None, keepdim=False, minimum=False):
        ctx.shape = a.shape
        if dim is None:
            out = as_array(a.min() if minimum else a.max())
            ctx.save_for_backward(a, out)
            ctx.dim = None
            return out
        (axis,) = _axes(dim, a.ndim)
        idx = np.argmin(a, axis=axis) if minimum else np.argmax(a, axis=axis)
        idx = np.expand_dims(idx, axis)
        values = np.take_along_axis(a, idx, axis)
        ctx.dim = axis
        ctx.save_for_backward(idx)
        if not keepdim:
            values, idx = values.squeeze(axis), idx.squeeze(axis)
        idx = idx.astype(np.int64)
        ctx.mark_non_differentiable(idx)
        return values, idx

    @staticmethod
    def backward(ctx, g, g_idx=None):
        if ctx.dim is None:
            a, out = ctx.saved_tensors
            ties = (a == out) | (np.isnan(a) & np.isnan(out))  # a NaN result: its NaNs share it, as PyTorch
            return ties * (g / ties.sum().astype(g.dtype))  # in g's dtype (an int64 count would widen it)
        (idx,) = ctx.saved_tensors
        grad = backend_of(g, op="MaxBackward").zeros(ctx.shape, g.dtype)
        np.put_along_axis(grad, idx, g.reshape(idx.shape), ctx.dim)
        return grad


# ---------------------------------------------------------------------------------------------
# Shape changes, indexing, joining
# ---------------------------------------------------------------------------------------------


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        return np.reshape(a, shape)

    @staticmethod
    def backward(ctx, g):
        return np.reshape(g, ctx.shape)

    @staticmethod
    def backward_graph(ctx, io, g):
        return g.reshape(ctx.shape)


class Permute(Function):
    @staticmethod
    def forward(ctx, a, dims):
        ctx.dims = dims
        return np.transpose(a, dims)

    @staticmethod
    def backward(ctx, g):
        return np.transpose(g, np.argsort(ctx.dims))

    @staticmethod
    def backward_graph(ctx, io, g):
        return g.permute(*np.argsort(ctx.dims).tolist())


class Expand(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        return np.broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(g, ctx.shape)

    @staticmethod
    def backward_graph(ctx, io, g):
        return unbroadcast_tensor(g, ctx.shape)


def key_arrays(key) -> tuple:
    """The index arrays (integer or bool) in an indexing key, saved by the Functions that index, so
    that changing them in place before the backward is the in-place error, not a gradient sent to
    the new positions."""
    parts = key if isinstance(key, tuple) else (key,)
    return tuple(k for k in parts if getattr(k, "shape", None) is not None)


class Index(Function):
    @staticmethod
    def forward(ctx, a, key):
        ctx.meta = (a.shape, a.dtype, key)
        ctx.save_for_backward(*key_arrays(key))
        out = a[key]
        if isinstance(out, np.generic):  # an integer for every axis: a 0-d view, as x[0].fill_(1) writes x
            out = a[(*(key if isinstance(key, tuple) else (key,)), Ellipsis)]
        return as_array(out)

    @staticmethod
    def backward(ctx, g):
        ctx.saved_tensors  # noqa: B018 - raises if an index array was changed in place since
        shape, dtype, key = ctx.meta
        return _index_backward(g, shape, dtype, key)

    @staticmethod
    def backward_graph(ctx, io, g):
        ctx.saved_tensors  # noqa: B018 - raises if an index array was changed in place since
        shape, dtype, key = ctx.meta
        return LinearBackward.apply(g, lambda a: _index_backward(a, shape, dtype, key), lambda a: as_array(a[key]))


def _index_backward(g, shape, dtype, key):
    """Index's backward: ``g`` put at ``key`` of zeros of ``shape`` (added up where an integer array
    repeats an index)."""
    grad = backend_of(g, op="IndexBackward").zeros(shape, dtype)
    if _is_basic_index(key):
        grad[key] = g
    else:
        np.add.at(grad, key, g)  # repeated integer-array indices accumulate
    return grad


class LinearBackward(Function):
    """A linear map's backward as a Function of the incoming gradient, for create_graph=True:
    ``backward_of(g)``; its own backward is ``forward_of`` (the transpose of the transposed map), and
    its create_graph backward the same Function with the two swapped."""

    @staticmethod
    def forward(ctx, g, backward_of, forward_of):
        ctx.maps = (backward_of, forward_of)
        return backward_of(g)

    @staticmethod
    def backward(ctx, gg):
        return ctx.maps[1](gg)

    @staticmethod
    def backward_graph(ctx, io, gg):
        backward_of, forward_of = ctx.maps
        return LinearBackward.apply(gg, forward_of, backward_of)


def _is_basic_index(key) -> bool:
    """Slices, integers, None and Ellipsis only: every element is selected at most once."""
    parts = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (slice, int, np.integer)) for k in parts)


class Cat(Function):
    @staticmethod
    def forward(ctx, *arrays, dim=0):
        ctx.dim = dim
        ctx.sizes = [a.shape[dim] for a in arrays]
        return np.concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx, g):
        cuts = np.cumsum(ctx.sizes)[:-1]
        return tuple(np.split(g, cuts, axis=ctx.dim))

    @staticmethod
    def backward_graph(ctx, io, g):
        ends = np.cumsum(ctx.sizes).tolist()
        head = (slice(None),) * (ctx.dim % g.ndim)
        return tuple(g[head + (slice(end - size, end),)] for end, size in zip(ends, ctx.sizes))


class Stack(Function):
    @staticmethod
    def forward(ctx, *arrays, dim=0):
        ctx.dim = dim
        return np.stack(arrays, axis=dim)

    @staticmethod
    def backward(ctx, g):
        return tuple(np.moveaxis(g, ctx.dim, 0))

    @staticmethod
    def backward_graph(ctx, io, g):
        head = (slice(None),) * (ctx.dim % g.ndim)
        return tuple(g[head + (i,)] for i in range(g.shape[ctx.dim]))


class Where(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        ctx.shapes = (_shape_of(a), _shape_of(b))
        return np.where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        (cond,) = ctx.saved_tensors
        sa, sb = ctx.shapes
        return (
            None,
            unbroadcast(np.where(cond, g, 0), sa) if ctx.needs_input_grad[1] else None,
            unbroadcast(np.where(cond, 0, g), sb) if ctx.needs_input_grad[2] else None,
        )

    @staticmethod
    def backward_graph(ctx, io, g):
        (cond,) = ctx.saved_tensors
        sa, sb = ctx.shapes
        return (
            None,
            unbroadcast_tensor(Where.apply(cond, g, 0.0), sa) if ctx.needs_input_grad[1] else None,
            unbroadcast_tensor(Where.apply(cond, 0.0, g), sb) if ctx.needs_input_grad[2] else None,
        )


class ZeroNaN(Function):
    """``x`` with NaN replaced by 0 (``nansum``'s terms); the gradient is ``g * (x is not NaN)``, as
    PyTorch's nansum passes it: 0 at a NaN input, NaN there when ``g`` is not finite (nanmean of an
    all-NaN slice)."""

    @staticmethod
    def forward(ctx, x):
        kept = ~np.isnan(x)
        ctx.save_for_backward(kept)
        return np.where(kept, x, 0)

    @staticmethod
    def backward(ctx, g):
        (kept,) = ctx.saved_tensors
        return g * kept


# ---------------------------------------------------------------------------------------------
# More elementwise math, scans, gathers and scatters, norms, einsum
# ---------------------------------------------------------------------------------------------


class Maximum(Function):
    """Elementwise max (``minimum``: min) with broadcasting; as in PyTorch, a tie gives each operand
    half the gradient, and where either is NaN (so is the result) both get all of it."""

    @staticmethod
    def forward(ctx, a, b, minimum=False):
        ctx.save_for_backward(a, b)
        ctx.minimum = minimum
        return np.minimum(a, b) if minimum else np.maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        a_loses, b_loses = ((a > b), (a < b)) if ctx.minimum else ((a < b), (a > b))
        whole = (1 - 0.5 * (a == b)).astype(g.dtype)  # 1, or 0.5 on a tie; NaN compares false everywhere: 1 to both
        ga = unbroadcast(g * (whole * ~a_loses), _shape_of(a)) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(g * (whole * ~b_loses), _shape_of(b)) if ctx.needs_input_grad[1] else None
        return ga, gb


def reversed_along(x, axis: int):
    """``x`` in reverse order along ``axis`` (a view: a negative-step slice, which every backend has)."""
    return x[(slice(None),) * axis + (slice(None, None, -1),)]


class Cumsum(Function):
    """Running sum along ``dim``, in ``a``'s dtype (the Tensor method widens integers to int64)."""

    @staticmethod
    def forward(ctx, a, dim):
        ctx.dim = dim
        return np.cumsum(a, axis=dim, dtype=a.dtype)

    @staticmethod
    def backward(ctx, g):
        # d out_j / d a_i = 1 for j >= i: the running sum of g from the end
        return reversed_along(np.cumsum(reversed_along(g, ctx.dim), axis=ctx.dim), ctx.dim)


def along_axis_key(index, dim: int) -> tuple:
    """The integer-array key that picks ``a[i0, ..., index[i], ..., ik]`` for every position ``i`` of
    ``index`` (PyTorch's gather/scatter addressing), with host ``arange``s on the other axes."""
    key = []
    for d, n in enumerate(index.shape):
        if d == dim:
            key.append(index)
        else:
            shape = [1] * index.ndim
            shape[d] = n
            key.append(np.arange(n).reshape(shape))
    return tuple(key)


def block(shape: tuple, dim=None) -> tuple:
    """The basic key of the leading ``shape`` block of a larger array, all of axis ``dim`` kept: the
    part that a gather/scatter index of ``shape`` addresses."""
    return tuple(slice(None) if d == dim else slice(0, n) for d, n in enumerate(shape))


def add_along_axis(target, index, values, dim: int) -> None:
    """``target[..., index[i], ...] += values[i]`` along ``dim`` (the positions of ``index`` as in
    gather), repeated indices accumulating: np.add.at on NumPy arrays; elsewhere one
    take/put_along_axis per slice of ``index`` along ``dim``, none of which repeats a target."""
    if isinstance(target, np.ndarray):
        np.add.at(target, along_axis_key(index, dim), values)
        return
    for j in range(index.shape[dim]):
        pick = (slice(None),) * dim + (slice(j, j + 1),)
        idx = index[pick]
        np.put_along_axis(target, idx, np.take_along_axis(target, idx, dim) + values[pick], dim)


class LogCumSumExp(Function):
    """log(cumsum(exp(a))) along ``dim`` (NumPy's logaddexp.accumulate). The gradient of a_i is the sum
    over j >= i of g_j exp(a_i - out_j), taken as exp(a_i + R) with R the reversed running logsumexp of
    log|g_j| - out_j, for the positive and the negative g apart (so nothing overflows)."""

    @staticmethod
    @_silent_floating_point
    def forward(ctx, a, dim):
        out = np.logaddexp.accumulate(a, axis=dim)
        ctx.save_for_backward(a, out)
        ctx.dim = dim
        return out

    @staticmethod
    @_silent_floating_point
    def backward(ctx, g):
        a, out = ctx.saved_tensors

        def suffix_logsumexp(x):
            return reversed_along(np.logaddexp.accumulate(reversed_along(x, ctx.dim), axis=ctx.dim), ctx.dim)

        positive = suffix_logsumexp(np.log(np.maximum(g, 0)) - out)
        negative = suffix_logsumexp(np.log(np.maximum(-g, 0)) - out)
        return (np.exp(a + positive) - np.exp(a + negative)).astype(a.dtype, copy=False)


class Cumprod(Function):
    """Running product along ``dim``. The gradient is exact where the input holds zeros: the suffix
    sums of g * out divided by the input, and for a row with a zero, those sums before its first zero,
    the products that skip that zero at it, and 0 after it."""

    @staticmethod
    @_silent_floating_point
    def forward(ctx, a, dim):
        out = np.cumprod(a, axis=dim)
        ctx.save_for_backward(a, out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        if a.size == 0:
            return np.zeros_like(a)
        rows = lambda x: np.moveaxis(x, ctx.dim, -1).reshape(-1, a.shape[ctx.dim])  # noqa: E731
        suffix_sums = lambda x: np.flip(np.cumsum(np.flip(x, -1), -1), -1)  # noqa: E731
        a2, g2, out2 = rows(a), rows(g), rows(out)
        with np.errstate(divide="ignore", invalid="ignore"):
            grad = suffix_sums(g2 * out2) / a2
        for r in np.flatnonzero((a2 == 0).any(axis=-1)):
            z = int(np.argmax(a2[r] == 0))
            grad[r, z + 1 :] = 0
            grad[r, :z] = suffix_sums(g2[r, :z] * out2[r, :z]) / a2[r, :z]
            before = out2[r, z - 1] if z else a2.dtype.type(1)
            grad[r, z] = np.sum(g2[r, z:] * np.cumprod(np.concatenate(([before], a2[r, z + 1 :]))))
        moved = np.moveaxis(a, ctx.dim, -1).shape
        return np.moveaxis(grad.reshape(moved), -1, ctx.dim).astype(a.dtype, copy=False)


class Gather(Function):
    """``out[i][j][k] = a[i][index[i][j][k]][k]`` (dim 1; likewise for the others). The gradient is
    added back at the same places, summed where ``index`` repeats (``unique``: it never does, as for
    sort and topk, and it is written with one put_along_axis)."""

    @staticmethod
    def forward(ctx, a, index, dim, unique=False):
        ctx.meta = (a.shape, a.dtype, dim, unique)
        ctx.save_for_backward(index)
        return np.take_along_axis(a[block(index.shape, dim)], index, dim)

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        shape, dtype, dim, unique = ctx.meta
        grad = backend_of(g, op="GatherBackward").zeros(shape, dtype)
        target = grad[block(index.shape, dim)]  # a view: written through into grad
        if unique:
            np.put_along_axis(target, index, g, dim)
        else:
            add_along_axis(target, index, g, dim)
        return grad, None


class IndexSelect(Function):
    """The slices ``index`` (1-D int64) along ``dim``; the gradient is summed back where it repeats."""

    @staticmethod
    def forward(ctx, a, index, dim):
        ctx.meta = (a.shape, a.dtype, dim)
        ctx.save_for_backward(index)
        shape = [1] * a.ndim
        shape[dim] = index.shape[0]
        return np.take_along_axis(a, index.reshape(shape), dim)  # index broadcast over the other axes

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        shape, dtype, dim = ctx.meta
        grad = backend_of(g, op="IndexSelectBackward").zeros(shape, dtype)
        np.add.at(grad, (slice(None),) * dim + (index,), g)
        return grad, None


class Scatter(Function):
    """``a`` with ``src``'s elements (its leading ``index.shape`` block) written at ``index`` along
    ``dim`` (``add``: added there, summed where ``index`` repeats). ``src`` may be a number."""

    @staticmethod
    def forward(ctx, a, index, src, dim, add=False):
        ctx.meta = (_shape_of(src), dim, add)
        ctx.save_for_backward(index)
        values = src if np.ndim(src) == 0 else src[block(index.shape)]
        out = a.copy()
        target = out[block(index.shape, dim)]  # a view: written through into out
        if add:
            add_along_axis(target, index, values, dim)
        else:
            np.put_along_axis(target, index, values, dim)
        return out

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        src_shape, dim, add = ctx.meta
        grad_a = grad_src = None
        if ctx.needs_input_grad[0]:
            grad_a = g
            if not add:  # the overwritten elements get no gradient
                grad_a = g.copy()
                np.put_along_axis(grad_a[block(index.shape, dim)], index, 0, dim)
        if ctx.needs_input_grad[2]:
            grad_src = backend_of(g, op="ScatterBackward").zeros(src_shape, g.dtype)
            grad_src[block(index.shape)] = np.take_along_axis(g[block(index.shape, dim)], index, dim)
        return grad_a, None, grad_src


class Norm(Function):
    """The ``p``-norm over ``axes`` (a positive number or inf): sum(|a|^p)^(1/p), or max |a|. At a
    zero norm the gradient is 0 (PyTorch's subgradient); ties of the inf-norm share it evenly."""

    @staticmethod
    def forward(ctx, a, p, axes, keepdim):
        absolute = np.abs(a)
        if np.isinf(p):
            out = absolute.max(axis=axes, keepdims=True)
        elif p == 1:
            out = absolute.sum(axis=axes, keepdims=True)
        else:
            out = np.power(np.power(absolute, p).sum(axis=axes, keepdims=True), 1.0 / p)
        out = as_array(out).astype(a.dtype, copy=False)
        ctx.save_for_backward(a, out)
        ctx.meta = (p, axes, keepdim)
        return out if keepdim else as_array(np.squeeze(out, axis=axes))

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        p, axes, keepdim = ctx.meta
        if not keepdim:
            g = np.reshape(g, out.shape)
        sign = np.sign(a)
        if np.isinf(p):
            ties = np.abs(a) == out
            return sign * ties * (g / ties.sum(axis=axes, keepdims=True).astype(g.dtype))
        if p == 1:
            return sign * g
        safe = np.where(out == 0, 1, out)
        scale = np.where(out == 0, 0, g / np.power(safe, p - 1))
        with np.errstate(divide="ignore", invalid="ignore"):  # p < 1: |0|^(p - 1) is inf; its gradient is 0
            return np.where(a == 0, 0, sign * np.power(np.abs(a), p - 1) * scale).astype(a.dtype, copy=False)

    @staticmethod
    def backward_graph(ctx, io, g):
        a, out = ctx.saved_tensors
        p, axes, keepdim = ctx.meta
        if p not in (1, 2):
            raise NotImplementedError(f"create_graph=True: the gradient of a {p}-norm (1 and 2 are differentiable)")
        g = g if keepdim else g.reshape(out.shape)
        if p == 1:
            return g * np.sign(a).astype(g.dtype)
        norm = io.output(0, out if keepdim else np.squeeze(out, axis=axes)).reshape(out.shape)
        return Where.apply(out == 0, 0.0, io.input(0, a) * (g / norm))  # 0 at a zero norm, as backward


class Einsum(Function):
    """``np.einsum`` on explicit subscripts (``"ij,jk->ik"``: no ellipsis; see tensor.einsum, which
    writes them out). Each operand's gradient is the einsum of the output's gradient with the other
    operands; a letter only that operand has (summed away) is broadcast back, and a letter it repeats
    (a diagonal, ``"ii"``) gets the gradient on that diagonal and zeros elsewhere."""

    @staticmethod
    def forward(ctx, *operands, subscripts):
        ctx.save_for_backward(*operands)
        ctx.subscripts = subscripts
        return as_array(np.einsum(subscripts, *operands))

    @staticmethod
    def backward(ctx, g):
        operands = ctx.saved_tensors
        inputs, output = ctx.subscripts.split("->")
        terms = inputs.split(",")
        grads = []
        for k, (term, a) in enumerate(zip(terms, operands)):
            if not ctx.needs_input_grad[k]:
                grads.append(None)
                continue
            letters = "".join(dict.fromkeys(term))  # each letter once, in order
            sizes = dict(zip(term, a.shape))
            others = [t for i, t in enumerate(terms) if i != k]
            present = set(output).union(*others)
            kept = "".join(c for c in letters if c in present)
            spec = ",".join([output, *others]) + "->" + kept
            partial = as_array(np.einsum(spec, g, *(o for i, o in enumerate(operands) if i != k)))
            broadcast = tuple(i for i, c in enumerate(kept) if sizes[c] == 1 and partial.shape[i] != 1)
            if broadcast:  # a letter of size 1 here that other operands broadcast: summed back
                partial = partial.sum(axis=broadcast, keepdims=True)
            shape = tuple(sizes[c] if c in present else 1 for c in letters)
            partial = np.broadcast_to(np.reshape(as_array(partial), shape), tuple(sizes[c] for c in letters))
            if letters == term:
                grads.append(partial.astype(a.dtype))
                continue
            grad = np.zeros(a.shape, a.dtype)  # a repeated letter: the gradient lies on its diagonal
            steps = [sum(grad.strides[i] for i, c in enumerate(term) if c == letter) for letter in letters]
            diagonal = np.lib.stride_tricks.as_strided(grad, partial.shape, steps, writeable=True)
            diagonal[...] = partial
            grads.append(grad)
        return tuple(grads)


# ---------------------------------------------------------------------------------------------
# Reducing scatters and indexed writes
# ---------------------------------------------------------------------------------------------

_SCATTER_UFUNCS = {"sum": np.add, "mean": np.add, "prod": np.multiply, "amax": np.maximum, "amin": np.minimum}


def _scatter_identity(reduce: str, dtype):
    """The value a position starts from when ``include_self=False`` (PyTorch's: 0, 1, the lowest or
    the highest value of the dtype)."""
    if reduce in ("sum", "mean"):
        return 0
    if reduce == "prod":
        return 1
    if dtype.kind == "f":
        return -np.inf if reduce == "amax" else np.inf
    if dtype.kind == "b":
        return reduce != "amax"
    info = np.iinfo(dtype)
    return info.min if reduce == "amax" else info.max


def scatter_reduced(a, index, values, dim: int, reduce: str, include_self: bool):
    """``a`` with ``values`` (of ``index``'s shape) reduced into it at ``index`` along ``dim``
    (PyTorch's scatter_reduce; mean of integers rounds down, as there)."""
    out = a.copy()
    target = out[block(index.shape, dim)]  # a view: written through into out
    key = along_axis_key(index, dim)
    if not include_self:
        target[key] = _scatter_identity(reduce, a.dtype)
    _SCATTER_UFUNCS[reduce].at(target, key, values)
    if reduce == "mean":
        count = scatter_count(a.shape, index, dim, include_self, a.dtype)
        out = np.floor_divide(out, count) if a.dtype.kind in "iub" else (out / count).astype(a.dtype, copy=False)
    return out


def scatter_count(shape, index, dim: int, include_self: bool, dtype):
    """How many values each position of a ``shape`` tensor averages under scatter_reduce's mean (1 where none)."""
    count = np.full(shape, 1 if include_self else 0, dtype=dtype)
    np.add.at(count[block(index.shape, dim)], along_axis_key(index, dim), 1)
    count[count == 0] = 1
    return count


class ScatterReduce(Function):
    """``a`` with ``src``'s elements (its leading ``index.shape`` block) reduced in at ``index`` along
    ``dim`` by ``reduce`` (sum, prod, mean, amax, amin), ``a``'s values included unless
    ``include_self`` is False. The gradients are PyTorch's (scatter_reduce_backward): prod's are exact
    where one zero meets a position; amax/amin share the gradient evenly among the elements equal to
    the result; the positions written with ``include_self=False`` give ``a`` none."""

    @staticmethod
    @_silent_floating_point
    def forward(ctx, a, index, src, dim, reduce, include_self=True):
        values = src[block(index.shape)]
        out = scatter_reduced(a, index, values, dim, reduce, include_self)
        ctx.save_for_backward(a, index, values, out)
        ctx.meta = (src.shape, dim, reduce, include_self)
        return out

    @staticmethod
    @_silent_floating_point
    def backward(ctx, g):
        a, index, values, out = ctx.saved_tensors
        src_shape, dim, reduce, include_self = ctx.meta

        def gather(x):
            return np.take_along_axis(x[block(index.shape, dim)], index, dim)

        def scatter_add(base, v):
            base = base.copy()
            np.add.at(base[block(index.shape, dim)], along_axis_key(index, dim), v)
            return base

        if reduce == "sum":
            grad_self, grad_src = g, gather(g)
        elif reduce == "prod":
            masked_self = np.where(a == 0, 1, a).astype(a.dtype, copy=False)
            grad_self = g * scatter_reduced(masked_self, index, values, dim, reduce, include_self) / masked_self
            src_zero = values == 0
            zeros_there = gather(scatter_add(np.zeros_like(a), src_zero.astype(a.dtype)))
            single_zero = src_zero & (zeros_there == 1)
            masked_src = np.where(single_zero, 1, values).astype(values.dtype, copy=False)
            masked_src_result = scatter_reduced(a, index, masked_src, dim, reduce, include_self)
            grad_src = np.where(
                single_zero, gather(g * masked_src_result), gather(g * out) / np.where(src_zero, 1, values)
            )
        elif reduce == "mean":
            count = scatter_count(a.shape, index, dim, include_self, g.dtype)
            grad_self = g / count
            grad_src = gather(grad_self)
        else:  # amax, amin
            value = gather(out)
            self_is_result = (a == out).astype(g.dtype)
            src_is_result = (values == value).astype(g.dtype)
            distributed = g / scatter_add(self_is_result, src_is_result)
            grad_self = self_is_result * distributed
            grad_src = src_is_result * gather(distributed)
        if not include_self:
            grad_self = np.array(grad_self, copy=True)
            np.put_along_axis(grad_self[block(index.shape, dim)], index, 0, dim)
        full_src = np.zeros(src_shape, g.dtype)
        full_src[block(index.shape)] = grad_src
        return (
            grad_self.astype(g.dtype, copy=False) if ctx.needs_input_grad[0] else None,
            None,
            full_src if ctx.needs_input_grad[2] else None,
        )


class IndexPut(Function):
    """``a`` with ``values`` (broadcast) written at the advanced-indexing ``key`` (a tuple of integer
    arrays and slices), or added there with ``accumulate`` (repeated indices summing). The gradients are
    PyTorch's: ``values`` gets the output's gradient at ``key`` (every repeat of an index, also where
    only one write lands); ``a`` gets it except at the written places (everywhere with ``accumulate``)."""

    @staticmethod
    def forward(ctx, a, values, key, accumulate=False):
        ctx.meta = (key, accumulate, _shape_of(values))
        ctx.save_for_backward(*key_arrays(key))
        out = a.copy()
        if accumulate:
            np.add.at(out, key, values)
        else:
            out[key] = values
        return out

    @staticmethod
    def backward(ctx, g):
        ctx.saved_tensors  # noqa: B018 - raises if an index array was changed in place since
        key, accumulate, values_shape = ctx.meta
        grad_a = grad_values = None
        if ctx.needs_input_grad[0]:
            grad_a = g
            if not accumulate:
                grad_a = g.copy()
                grad_a[key] = 0
        if ctx.needs_input_grad[1]:
            grad_values = unbroadcast(np.asarray(g[key]), tuple(values_shape))
        return grad_a, grad_values
