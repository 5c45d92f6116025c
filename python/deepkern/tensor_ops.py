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
from .backends import as_array, backend_of, device_of, to_device
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


class MaskedGradient(Function):
    """``g * factor`` (``factor`` a constant array: a piecewise-linear op's local slope, 0/1 masks, tie
    shares) recorded as a function of ``source`` too, with a zero gradient there: the create_graph=True
    gradient of relu, clamp, abs, max, ... depends on its input as PyTorch's does (differentiating it
    again gives zeros, not an error for a gradient outside the graph)."""

    @staticmethod
    def forward(ctx, g, source, factor):
        ctx.meta = (factor, _shape_of(source))
        return g * factor

    @staticmethod
    def backward(ctx, gg):
        factor, source_shape = ctx.meta
        return gg * factor, np.zeros_like(gg, shape=source_shape)

    @staticmethod
    def backward_graph(ctx, io, gg):
        factor, source_shape = ctx.meta
        return gg * factor, None


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


def _pointwise(name: str, f, derivative, graph_derivative=None):
    """A Function computing ``f(a)`` elementwise (NumPy's floating-point warnings off) whose backward
    is ``g * derivative(a)``; with ``graph_derivative`` (the derivative as Tensor ops of the input
    Tensor) also the create_graph=True backward."""

    @_silent_floating_point
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return f(a)

    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * derivative(a)

    methods = {"forward": staticmethod(forward), "backward": staticmethod(backward)}
    if graph_derivative is not None:

        def backward_graph(ctx, io, g):
            (a,) = ctx.saved_tensors
            return g * graph_derivative(io.input(0, a))

        methods["backward_graph"] = staticmethod(backward_graph)
    return type(name, (Function,), methods)


Abs = _pointwise("Abs", np.abs, np.sign, lambda x: x.sign())
Sin = _pointwise("Sin", np.sin, np.cos, lambda x: x.cos())
Cos = _pointwise("Cos", np.cos, lambda a: -np.sin(a), lambda x: -x.sin())
Log1p = _pointwise("Log1p", np.log1p, lambda a: 1 / (1 + a), lambda x: 1 / (1 + x))
Expm1 = _pointwise("Expm1", np.expm1, np.exp, lambda x: x.exp())
Log2 = _pointwise("Log2", np.log2, lambda a: 1 / (a * math.log(2)), lambda x: 1 / (x * math.log(2)))
Log10 = _pointwise("Log10", np.log10, lambda a: 1 / (a * math.log(10)), lambda x: 1 / (x * math.log(10)))


def _piecewise_constant(name: str, f):
    """A Function computing ``f(a)`` whose gradient is zeros, as PyTorch's: not ``g * 0``, which an
    infinite or NaN incoming gradient would make NaN."""

    def forward(ctx, a):
        ctx.meta = (a.shape, a.dtype)
        return f(a)

    def backward(ctx, g):
        return np.zeros_like(g, shape=ctx.meta[0])

    def backward_graph(ctx, io, g):
        return g.new_zeros(ctx.meta[0])

    return type(
        name,
        (Function,),
        {
            "forward": staticmethod(forward),
            "backward": staticmethod(backward),
            "backward_graph": staticmethod(backward_graph),
        },
    )


# Piecewise constant: gradient 0, as PyTorch's (sign is 0 at NaN there, not NaN).
Floor = _piecewise_constant("Floor", np.floor)
Ceil = _piecewise_constant("Ceil", np.ceil)
Trunc = _piecewise_constant("Trunc", np.trunc)
Sign = _piecewise_constant("Sign", lambda a: np.where(np.isnan(a), 0, np.sign(a)))
Tan = _pointwise("Tan", np.tan, lambda a: 1 / np.cos(a) ** 2, lambda x: 1 / x.cos() ** 2)
Sinh = _pointwise("Sinh", np.sinh, np.cosh, lambda x: x.cosh())
Cosh = _pointwise("Cosh", np.cosh, np.sinh, lambda x: x.sinh())
Asin = _pointwise("Asin", np.arcsin, lambda a: 1 / np.sqrt(1 - a * a), lambda x: 1 / (1 - x * x).sqrt())
Acos = _pointwise("Acos", np.arccos, lambda a: -1 / np.sqrt(1 - a * a), lambda x: -1 / (1 - x * x).sqrt())
Atan = _pointwise("Atan", np.arctan, lambda a: 1 / (1 + a * a), lambda x: 1 / (1 + x * x))
Exp2 = _pointwise("Exp2", np.exp2, lambda a: np.exp2(a) * math.log(2), lambda x: x.exp2() * math.log(2))


def _erf_of(function):
    """``function`` (math.erf or math.erfc) elementwise: computed in float64 (NumPy has no erf), the
    result rounded once to the input's dtype."""
    elementwise = np.vectorize(function, otypes=[np.float64])
    return lambda a: as_array(elementwise(a)).astype(a.dtype, copy=False)


def _erf_derivative(a):
    return (2 / math.sqrt(math.pi)) * np.exp(-(a * a))


def _erf_derivative_graph(x):
    return (-(x * x)).exp() * (2 / math.sqrt(math.pi))


Erf = _pointwise("Erf", _erf_of(math.erf), _erf_derivative, _erf_derivative_graph)
Erfc = _pointwise("Erfc", _erf_of(math.erfc), lambda a: -_erf_derivative(a), lambda x: -_erf_derivative_graph(x))


def _pointwise_pair(name: str, f, derivatives, graph_derivatives=None):
    """A Function computing ``f(a, b)`` elementwise with broadcasting (NumPy's floating-point
    warnings off) whose backward is ``g * da`` and ``g * db``, ``(da, db) = derivatives(a, b, out)``,
    each summed over the axes its operand was broadcast along; with ``graph_derivatives`` (the same
    as Tensor ops of the operands and the output, each a Tensor or a number) also the create_graph=True
    backward."""

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

    methods = {"forward": staticmethod(forward), "backward": staticmethod(backward)}
    if graph_derivatives is not None:

        def backward_graph(ctx, io, g):
            a, b, out = ctx.saved_tensors
            derivatives = graph_derivatives(io.input(0, a), io.input(1, b), io.output(0, out))
            return tuple(
                unbroadcast_tensor(g * d, _shape_of(x)) if needed else None
                for d, x, needed in zip(derivatives, (a, b), ctx.needs_input_grad)
            )

        methods["backward_graph"] = staticmethod(backward_graph)
    return type(name, (Function,), methods)


def _atan2_derivatives(a, b, out):
    squares = a * a + b * b
    scale = np.where(squares == 0, 0, 1 / np.where(squares == 0, 1, squares))  # 0 at (0, 0), as PyTorch
    return b * scale, -a * scale


def _atan2_graph_derivatives(x, y, out):
    squares = x * x + y * y
    scale = Where.apply(squares == 0, 0.0, 1 / squares)  # 0 at (0, 0), differentiated there NaN: PyTorch's
    return y * scale, -x * scale


Atan2 = _pointwise_pair("Atan2", np.arctan2, _atan2_derivatives, _atan2_graph_derivatives)
Hypot = _pointwise_pair("Hypot", np.hypot, lambda a, b, out: (a / out, b / out), lambda x, y, out: (x / out, y / out))
# PyTorch's form 1 / (1 + e^(b - a)): finite where an operand is infinite (e^(a - out) is inf - inf there)
LogAddExp = _pointwise_pair(
    "LogAddExp",
    np.logaddexp,
    lambda a, b, out: (1 / (1 + np.exp(b - a)), 1 / (1 + np.exp(a - b))),
    lambda x, y, out: (1 / (1 + (y - x).exp()), 1 / (1 + (x - y).exp())),
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

    @staticmethod
    def backward_graph(ctx, io, g):
        return g.new_zeros(ctx.meta)


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

    @staticmethod
    def backward_graph(ctx, io, g):
        a, b = ctx.saved_tensors
        ga = unbroadcast_tensor(g, np.shape(a)) if ctx.needs_input_grad[0] else None
        gb = None
        if ctx.needs_input_grad[1]:  # the rounded quotient: a function of a and b with zero derivative, as PyTorch's
            quotient = (np.trunc if ctx.meta else np.floor)(a / b)
            gb = MaskedGradient.apply(MaskedGradient.apply(-g, io.input(0, a), quotient), io.input(1, b), 1.0)
            gb = unbroadcast_tensor(gb, np.shape(b))
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

    @staticmethod
    def backward_graph(ctx, io, g):
        return tuple(g.new_zeros(shape) for shape in ctx.meta)


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


def stable_sigmoid(a):
    """1 / (1 + exp(-a)) with exp of a non-positive argument only (no overflow): e / (1 + e) with e =
    exp(-|a|) where a < 0, 1 / (1 + e) elsewhere, the numerator chosen by arithmetic on the 0/1 mask
    (exact: one of its terms is 0) rather than np.where, 4-5x slower on float32."""
    if a.ndim == 0:  # (NumPy's operations on 0-d arrays give scalars, which take no out=)
        return stable_sigmoid(a.reshape(1)).reshape(())
    e = np.exp(-np.abs(a))
    negative = (a < 0).astype(e.dtype)
    numerator = e * negative
    numerator += 1 - negative
    e += 1
    return np.divide(numerator, e, out=numerator).astype(a.dtype, copy=False)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, a):
        out = stable_sigmoid(a)
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
        return MaskedGradient.apply(g, io.output(0, out), ((out > 0) | np.isnan(out)).astype(g.dtype))


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

    @staticmethod
    def backward_graph(ctx, io, g):
        a, low, high = ctx.saved_tensors
        sa, sl, sh = ctx.shapes
        above = True if low is None else a >= low
        below = True if high is None else a <= high
        to_low = (a < low) & (True if high is None else low < high) if low is not None else None
        to_high = (a > high) | (False if low is None else high < low) if high is not None else None
        ga = unbroadcast_tensor(g * (above & below), sa)  # constant masks, as PyTorch's (their derivative is 0)
        gl = None if to_low is None else unbroadcast_tensor(g * to_low, sl)
        gh = None if to_high is None else unbroadcast_tensor(g * to_high, sh)
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

    @classmethod
    def backward_graph(cls, ctx, io, g):
        a, out = ctx.saved_tensors
        axes, keepdim = ctx.meta
        return _expand_reduced_tensor(g, a.shape, axes, keepdim) * cls.weights(a, out, axes)  # constant weights


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

    @staticmethod
    def backward_graph(ctx, io, g):
        (a,) = ctx.saved_tensors
        axis, keepdim = ctx.meta
        g = g if axis is None or keepdim else g.unsqueeze(axis)
        if a.size == 0:
            return g.expand(*a.shape)
        x = io.input(0, a)
        if axis is None:
            return g * _others_products(x.reshape(-1)).reshape(a.shape)
        return g * _others_products(x.movedim(axis, -1)).movedim(-1, axis)


def _others_products(x):
    """For each element of the Tensor ``x`` (not empty), the product of the others along its last axis, as
    Prod's backward takes it: exclusive running products from both ends (Cumprod: exact with zeros)."""
    last = x.ndim - 1
    ones = np.ones(x.shape[:-1] + (1,), x.dtype)
    before = Cumprod.apply(Cat.apply(ones, x[..., :-1], dim=last), last)
    after = Cumprod.apply(Cat.apply(ones, reversed_along(x, last)[..., :-1], dim=last), last)
    return before * reversed_along(after, last)


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
        return onto_diagonal(g, shape, dtype, offset, dim1, dim2)

    @staticmethod
    def backward_graph(ctx, io, g):
        shape, dtype, offset, dim1, dim2 = ctx.meta
        return LinearBackward.apply(
            g,
            lambda g: onto_diagonal(g, shape, dtype, offset, dim1, dim2),
            lambda a: diagonal_of(a, offset, dim1, dim2),
        )


def onto_diagonal(values, shape, dtype, offset: int, dim1: int, dim2: int):
    """Zeros of ``shape`` with ``values`` on their diagonal (Diagonal's gradient, see set_diagonal)."""
    grad = backend_of(values, op="DiagonalBackward").zeros(shape, dtype)
    set_diagonal(grad, values, offset, dim1, dim2)
    return grad


def diagonal_of(a, offset: int, dim1: int, dim2: int):
    """A copy of ``a``'s diagonal, laid out as Diagonal gives it."""
    return as_array(np.diagonal(a, offset, dim1, dim2)).copy()


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
        diagonal = diagonal_of(g, offset, dim1, dim2)
        grad_a = g.copy() if ctx.needs_input_grad[0] else None
        if grad_a is not None:
            set_diagonal(grad_a, np.zeros_like(diagonal), offset, dim1, dim2)
        return grad_a, diagonal if ctx.needs_input_grad[1] else None

    @staticmethod
    def backward_graph(ctx, io, g):
        offset, dim1, dim2 = ctx.meta
        shape, dtype = tuple(g.shape), g.dtype
        grad_a = grad_src = None
        if ctx.needs_input_grad[0]:  # g with its diagonal zeroed: a DiagonalScatter of zeros
            zeros = np.zeros_like(g._array, shape=np.diagonal(g._array, offset, dim1, dim2).shape)
            grad_a = DiagonalScatter.apply(g, zeros, offset=offset, dim1=dim1, dim2=dim2)
        if ctx.needs_input_grad[1]:
            grad_src = LinearBackward.apply(
                g,
                lambda g: diagonal_of(g, offset, dim1, dim2),
                lambda d: onto_diagonal(d, shape, dtype, offset, dim1, dim2),
            )
        return grad_a, grad_src


def _exact_dtype(a):
    """The dtype NumPy must keep for a sum or product of integer or bool ``a`` (it would widen them to
    int64; the Tensor methods widen where PyTorch does), None for floats (NumPy's own accumulation)."""
    return a.dtype if a.dtype.kind in "biu" else None


class Sum(Function):
    @staticmethod
    @_silent_floating_point  # inf + -inf is NaN, without NumPy's warning (as PyTorch)
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

    @staticmethod
    def backward_graph(ctx, io, g, g_idx=None):
        if ctx.dim is None:
            a, out = ctx.saved_tensors
            ties = (a == out) | (np.isnan(a) & np.isnan(out))
            return g * (ties / ties.sum().astype(g.dtype))
        (idx,) = ctx.saved_tensors
        taken = np.zeros(ctx.shape, g.dtype)
        np.put_along_axis(taken, idx, 1, ctx.dim)
        return taken * g.reshape(idx.shape)  # the taken positions: a constant mask, g broadcast along dim


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


_SAME_SIZE_INTS = {2: np.int16, 4: np.int32, 8: np.int64}
#: Below this many elements select() leaves the choice to np.where (its setup costs more than it saves).
_SELECT_MIN_SIZE = 4096


def select(cond, a, b):
    """np.where(cond, a, b). For host floating arrays of one dtype and cond's shape (or Python numbers), with
    bit masks rather than np.where's branch per element, which mispredicts on an irregular mask (8x slower
    at a million float32 values): b ^ ((a ^ b) & -cond) on the values' bits, exact for every value."""
    if not (
        type(cond) is np.ndarray
        and cond.dtype == np.bool_
        and cond.size >= _SELECT_MIN_SIZE
        and (type(a) is np.ndarray or type(b) is np.ndarray)
    ):
        return np.where(cond, a, b)
    dtype = a.dtype if type(a) is np.ndarray else b.dtype

    def operand(v):  # an array of dtype and cond's shape, a Python number (NumPy's weak scalar), or None
        if type(v) is np.ndarray:
            return v if v.dtype == dtype and v.shape == cond.shape else None
        return np.broadcast_to(np.asarray(v, dtype), cond.shape) if type(v) in (int, float) else None

    chosen = operand(a), operand(b)
    if dtype.kind != "f" or dtype.itemsize not in _SAME_SIZE_INTS or chosen[0] is None or chosen[1] is None:
        return np.where(cond, a, b)
    a, b = chosen
    ints = _SAME_SIZE_INTS[dtype.itemsize]
    mask = cond.astype(ints)
    np.negative(mask, out=mask)  # all ones where cond
    a_bits, b_bits = a.view(ints), b.view(ints)
    out = np.bitwise_xor(a_bits, b_bits)
    out &= mask
    out ^= b_bits
    return out.view(dtype)


class Where(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        ctx.shapes = (_shape_of(a), _shape_of(b))
        return select(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        (cond,) = ctx.saved_tensors
        sa, sb = ctx.shapes
        return (
            None,
            unbroadcast(select(cond, g, 0), sa) if ctx.needs_input_grad[1] else None,
            unbroadcast(select(cond, 0, g), sb) if ctx.needs_input_grad[2] else None,
        )

    @staticmethod
    def backward_graph(ctx, io, g):
        (cond,) = ctx.saved_tensors
        return (None, *split_where(cond, g, ctx.shapes, ctx.needs_input_grad[1:]))


def split_where(cond, g, shapes, needs) -> tuple:
    """The Tensor ``g`` where ``cond`` and where not, summed back to ``shapes[0]`` and ``shapes[1]`` (None
    where ``needs`` says no): the gradients of the two operands of a where."""
    sa, sb = shapes
    return (
        unbroadcast_tensor(Where.apply(cond, g, 0.0), sa) if needs[0] else None,
        unbroadcast_tensor(Where.apply(cond, 0.0, g), sb) if needs[1] else None,
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

    @staticmethod
    def backward_graph(ctx, io, g):
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

    @staticmethod
    def backward_graph(ctx, io, g):
        a, b = ctx.saved_tensors
        a_loses, b_loses = ((a > b), (a < b)) if ctx.minimum else ((a < b), (a > b))
        whole = (1 - 0.5 * (a == b)).astype(g.dtype)
        ga = unbroadcast_tensor(g * (whole * ~a_loses), _shape_of(a))  # constant masks, as PyTorch's
        gb = unbroadcast_tensor(g * (whole * ~b_loses), _shape_of(b))
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

    @staticmethod
    def backward_graph(ctx, io, g):
        return g.flip(ctx.dim).cumsum(ctx.dim).flip(ctx.dim)


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

    @staticmethod
    def backward_graph(ctx, io, g):
        a, out = ctx.saved_tensors
        dim = ctx.dim
        x, y = io.input(0, a), io.output(0, out)
        # PyTorch's form: log|g| where g has the sign, else the lowest finite value (not -inf: -inf - -inf
        # would make the second derivative NaN); exp(a + that) is 0 as backward's
        log_g, lowest = g.abs().log(), np.finfo(a.dtype).min

        def part(sign):
            log_part = Where.apply(sign, log_g, lowest) - y
            return (x + reversed_along(LogCumSumExp.apply(reversed_along(log_part, dim), dim), dim)).exp()

        return part(g._array > 0) - part(g._array < 0)


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

    @staticmethod
    def backward_graph(ctx, io, g):
        a, out = ctx.saved_tensors
        dim = ctx.dim
        if a.size == 0:
            return g
        x = io.input(0, a)
        if not (a == 0).any():  # the suffix sums of g * out over the input, as PyTorch's
            return reversed_along(Cumsum.apply(reversed_along(g * io.output(0, out), dim), dim), dim) / x
        # With zeros, PyTorch's O(n^2) form: grad_k = sum over j >= k of g_j prod(x_i, i <= j, i != k), the
        # products the running products of x with x_k replaced by 1 (row k of a square along dim).
        n = a.shape[dim]
        rows = Where.apply(np.eye(n, dtype=bool), 1.0, x.movedim(dim, -1).unsqueeze(-2))
        terms = Cumprod.apply(rows, rows.ndim - 1) * g.movedim(dim, -1).unsqueeze(-2)
        return Where.apply(np.triu(np.ones((n, n), dtype=bool)), terms, 0.0).sum(-1).movedim(-1, dim)


class Gather(Function):
    """``out[i][j][k] = a[i][index[i][j][k]][k]`` (dim 1; likewise for the others). The gradient is
    added back at the same places, summed where ``index`` repeats (``unique``: it never does, as for
    sort and topk, and it is written with one put_along_axis)."""

    @staticmethod
    def forward(ctx, a, index, dim, unique=False):
        ctx.meta = (a.shape, a.dtype, dim, unique)
        ctx.save_for_backward(index)
        return gathered(a, index, dim)

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        return ungathered(g, index, *ctx.meta), None

    @staticmethod
    def backward_graph(ctx, io, g):
        (index,) = ctx.saved_tensors
        shape, dtype, dim, unique = ctx.meta
        return LinearBackward.apply(
            g, lambda g: ungathered(g, index, shape, dtype, dim, unique), lambda a: gathered(a, index, dim)
        ), None


def gathered(a, index, dim: int):
    """Gather's forward: ``a``'s elements at ``index`` along ``dim``."""
    return np.take_along_axis(a[block(index.shape, dim)], index, dim)


def ungathered(g, index, shape, dtype, dim: int, unique: bool = False):
    """Gather's backward (the transpose of :func:`gathered`): zeros of ``shape`` with ``g`` added at ``index``
    along ``dim`` (written with one put_along_axis where ``unique``: no index repeats)."""
    grad = backend_of(g, op="GatherBackward").zeros(shape, dtype)
    target = grad[block(index.shape, dim)]  # a view: written through into grad
    if unique:
        np.put_along_axis(target, index, g, dim)
    else:
        add_along_axis(target, index, g, dim)
    return grad


class IndexSelect(Function):
    """The slices ``index`` (1-D int64) along ``dim``; the gradient is summed back where it repeats."""

    @staticmethod
    def forward(ctx, a, index, dim):
        ctx.meta = (a.shape, a.dtype, dim)
        ctx.save_for_backward(index)
        return _index_selected(a, index, dim)

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        return _index_unselected(g, index, *ctx.meta), None

    @staticmethod
    def backward_graph(ctx, io, g):
        (index,) = ctx.saved_tensors
        shape, dtype, dim = ctx.meta
        return LinearBackward.apply(
            g, lambda g: _index_unselected(g, index, shape, dtype, dim), lambda a: _index_selected(a, index, dim)
        ), None


def _index_selected(a, index, dim: int):
    """IndexSelect's forward: the slices ``index`` of ``a`` along ``dim``."""
    shape = [1] * a.ndim
    shape[dim] = index.shape[0]
    return np.take_along_axis(a, index.reshape(shape), dim)  # index broadcast over the other axes


def _index_unselected(g, index, shape, dtype, dim: int):
    """IndexSelect's backward: zeros of ``shape`` with the slices of ``g`` added at ``index`` along ``dim``."""
    grad = backend_of(g, op="IndexSelectBackward").zeros(shape, dtype)
    np.add.at(grad, (slice(None),) * dim + (index,), g)
    return grad


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

    @staticmethod
    def backward_graph(ctx, io, g):
        (index,) = ctx.saved_tensors
        src_shape, dim, add = ctx.meta
        grad_a = grad_src = None
        if ctx.needs_input_grad[0]:  # without add, g with the overwritten elements zeroed: a Scatter of 0
            grad_a = g if add else Scatter.apply(g, index, g.dtype.type(0), dim)
        if ctx.needs_input_grad[2]:
            grad_src = padded(Gather.apply(g, index, dim), src_shape)
        return grad_a, None, grad_src


def padded_array(a, shape):
    """``a`` as the leading block of zeros of ``shape`` (an array)."""
    out = backend_of(a, op="padded").zeros(shape, a.dtype)
    out[block(a.shape)] = a
    return out


def padded(t, shape):
    """The Tensor ``t`` as the leading block of zeros of ``shape`` (differentiable: the gradient is its block)."""
    if tuple(t.shape) == tuple(shape):
        return t
    size = tuple(t.shape)
    return LinearBackward.apply(t, lambda a: padded_array(a, shape), lambda a: a[block(size)].copy())


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
        grads = []
        for k, a in enumerate(operands):
            if not ctx.needs_input_grad[k]:
                grads.append(None)
                continue
            spec, term, letters, sizes, shape = _einsum_gradient_plan(ctx.subscripts, k, a.shape)
            partial = as_array(np.einsum(spec, g, *(o for i, o in enumerate(operands) if i != k)))
            broadcast = _einsum_broadcast(partial.shape, spec, sizes)
            if broadcast:  # a letter of size 1 here that other operands broadcast: summed back
                partial = partial.sum(axis=broadcast, keepdims=True)
            partial = np.broadcast_to(np.reshape(as_array(partial), shape), tuple(sizes[c] for c in letters))
            if letters == term:
                grads.append(partial.astype(a.dtype))
            else:  # a repeated letter: the gradient lies on its diagonal
                grads.append(_onto_repeated(partial, a.shape, a.dtype, term, letters))
        return tuple(grads)

    @staticmethod
    def backward_graph(ctx, io, g):
        operands = ctx.saved_tensors
        tensors = [io.input(i, a) for i, a in enumerate(operands)]
        grads = []
        for k, a in enumerate(operands):
            if not ctx.needs_input_grad[k]:
                grads.append(None)
                continue
            spec, term, letters, sizes, shape = _einsum_gradient_plan(ctx.subscripts, k, a.shape)
            partial = Einsum.apply(g, *(t for i, t in enumerate(tensors) if i != k), subscripts=spec)
            broadcast = _einsum_broadcast(partial.shape, spec, sizes)
            if broadcast:
                partial = partial.sum(broadcast, keepdim=True)
            partial = partial.reshape(shape).expand(*(sizes[c] for c in letters))
            if letters != term:
                partial = LinearBackward.apply(
                    partial,
                    functools.partial(_onto_repeated, shape=a.shape, dtype=a.dtype, term=term, letters=letters),
                    functools.partial(_repeated_of, term=term, letters=letters),
                )
            grads.append(partial)
        return tuple(grads)


def _einsum_gradient_plan(subscripts: str, k: int, shape: tuple) -> tuple:
    """How Einsum's operand ``k`` (of ``shape``) gets its gradient: ``(spec, term, letters, sizes, kept
    shape)``: the einsum ``spec`` of the output's gradient with the other operands giving the gradient over
    the operand's ``letters`` (each once, in order; ``term`` its subscripts) that appear elsewhere, each
    letter's size, and the shape that the result takes with a 1 for each letter summed away."""
    inputs, output = subscripts.split("->")
    terms = inputs.split(",")
    term = terms[k]
    letters = "".join(dict.fromkeys(term))  # each letter once, in order
    sizes = dict(zip(term, shape))
    others = [t for i, t in enumerate(terms) if i != k]
    present = set(output).union(*others)
    kept = "".join(c for c in letters if c in present)
    spec = ",".join([output, *others]) + "->" + kept
    return spec, term, letters, sizes, tuple(sizes[c] if c in present else 1 for c in letters)


def _einsum_broadcast(shape: tuple, spec: str, sizes: dict) -> tuple:
    """The axes of an operand's gradient (of ``shape``, computed by ``spec``) along which the operand has size
    1 and other operands broadcast it: they are summed back."""
    kept = spec.split("->")[1]
    return tuple(i for i, c in enumerate(kept) if sizes[c] == 1 and shape[i] != 1)


def _repeated_view(a, term: str, letters: str, shape: tuple):
    """The elements of ``a`` (subscripts ``term``) whose repeated letters have equal indices, as an array over
    ``letters`` of ``shape`` (a view of ``a``)."""
    steps = [sum(a.strides[i] for i, c in enumerate(term) if c == letter) for letter in letters]
    return np.lib.stride_tricks.as_strided(a, shape, steps, writeable=a.flags.writeable)


def _onto_repeated(partial, shape, dtype, term: str, letters: str):
    """Zeros of ``shape`` (subscripts ``term``, a letter repeated) with ``partial`` (over ``letters``) on the
    diagonal of the repeated letters: Einsum's gradient of an operand such as ``"ii"``."""
    grad = np.zeros(shape, dtype)
    _repeated_view(grad, term, letters, partial.shape)[...] = partial
    return grad


def _repeated_of(a, term: str, letters: str):
    """The transpose of :func:`_onto_repeated`: a copy of the diagonal of ``a``'s repeated letters."""
    shape = tuple(a.shape[term.index(c)] for c in letters)
    return _repeated_view(a, term, letters, shape).copy()


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

    @staticmethod
    def backward_graph(ctx, io, g):
        a, index, values, out = ctx.saved_tensors
        src_shape, dim, reduce, include_self = ctx.meta
        x = io.input(0, a)
        src = np.zeros_like(values, shape=src_shape)  # src as saved: its block (all that the forward read)
        src[block(index.shape)] = values
        src = io.input(2, src)

        def gather(t):
            return Gather.apply(t, index, dim)

        def counts(base, v):  # a constant: base with v added at index
            return ungathered(v, index, base.shape, base.dtype, dim) + base

        if reduce == "sum":
            grad_self, grad_src = g, gather(g)
        elif reduce == "prod":  # as backward, with the reductions recomputed as Tensor ops (PyTorch's)
            masked_self = Where.apply(a == 0, 1.0, x)
            grad_self = g * ScatterReduce.apply(masked_self, index, src, dim, reduce, include_self) / masked_self
            src_zero = values == 0
            zeros_there = gathered(counts(np.zeros_like(a), src_zero.astype(a.dtype)), index, dim)
            single_zero = src_zero & (zeros_there == 1)
            masked_src = Where.apply(padded_array(single_zero, src_shape), 1.0, src)
            masked_src_result = ScatterReduce.apply(x, index, masked_src, dim, reduce, include_self)
            divisor = Where.apply(src_zero, 1.0, Index.apply(src, block(index.shape)))
            grad_src = Where.apply(single_zero, gather(g * masked_src_result), gather(g * io.output(0, out)) / divisor)
            if ctx.needs_input_grad[2] and (zeros_there > 1).any():
                grad_src = RefusedGradient.apply(
                    grad_src,
                    "create_graph=True: the gradient of scatter_reduce(reduce='prod') with respect to src where "
                    "two or more zeros of src meet at one position (PyTorch refuses it too)",
                )
        elif reduce == "mean":
            grad_self = g / scatter_count(a.shape, index, dim, include_self, g.dtype)
            grad_src = gather(grad_self)
        else:  # amax, amin: constant shares, as PyTorch's
            self_is_result = (a == out).astype(g.dtype)
            src_is_result = (values == gathered(out, index, dim)).astype(g.dtype)
            distributed = g / counts(self_is_result, src_is_result)
            grad_self = distributed * self_is_result
            grad_src = gather(distributed) * src_is_result
        if not include_self:
            grad_self = Scatter.apply(grad_self, index, g.dtype.type(0), dim)
        return (
            grad_self if ctx.needs_input_grad[0] else None,
            None,
            padded(grad_src, src_shape) if ctx.needs_input_grad[2] else None,
        )


class RefusedGradient(Function):
    """``g`` unchanged, whose own gradient raises NotImplementedError(``message``): a create_graph=True
    gradient that is right but whose derivative is not (PyTorch's DelayedError)."""

    @staticmethod
    def forward(ctx, g, message):
        ctx.message = message
        return g.copy()

    @staticmethod
    def backward(ctx, gg):
        raise NotImplementedError(ctx.message)

    @staticmethod
    def backward_graph(ctx, io, gg):
        raise NotImplementedError(ctx.message)


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

    @staticmethod
    def backward_graph(ctx, io, g):
        ctx.saved_tensors  # noqa: B018 - raises if an index array was changed in place since
        key, accumulate, values_shape = ctx.meta
        grad_a = grad_values = None
        if ctx.needs_input_grad[0]:  # without accumulate, g with the written elements zeroed: an IndexPut of 0
            grad_a = g if accumulate else IndexPut.apply(g, g.dtype.type(0), key)
        if ctx.needs_input_grad[1]:
            grad_values = unbroadcast_tensor(Index.apply(g, key), tuple(values_shape))
        return grad_a, grad_values


# ---------------------------------------------------------------------------------------------
# Inverse hyperbolic functions, logaddexp2, fmax/fmin, nextafter, frexp, and the special functions
# lgamma, digamma, polygamma, erfinv and i0 (tensor_long_tail.py's second batch)
# ---------------------------------------------------------------------------------------------

Acosh = _pointwise("Acosh", np.arccosh, lambda a: 1 / np.sqrt(a * a - 1), lambda x: 1 / (x * x - 1).sqrt())
Asinh = _pointwise("Asinh", np.arcsinh, lambda a: 1 / np.sqrt(a * a + 1), lambda x: 1 / (x * x + 1).sqrt())
Atanh = _pointwise("Atanh", np.arctanh, lambda a: 1 / (1 - a * a), lambda x: 1 / (1 - x * x))
LogAddExp2 = _pointwise_pair(
    "LogAddExp2",
    np.logaddexp2,
    lambda a, b, out: (1 / (1 + np.exp2(b - a)), 1 / (1 + np.exp2(a - b))),
    lambda x, y, out: (1 / (1 + (y - x).exp2()), 1 / (1 + (x - y).exp2())),
)
# PyTorch's gradients: the output's to ``a`` (a step to the next float is piecewise constant), zero to ``b``
NextAfter = _pointwise_pair(
    "NextAfter",
    np.nextafter,
    lambda a, b, out: (np.ones_like(out), np.zeros_like(out)),
    lambda x, y, out: (1.0, 0.0),
)


class FMax(Function):
    """fmax (``minimum``: fmin): the larger (smaller) of ``a`` and ``b``, the one that is not NaN where
    one is (NaN where both are). As PyTorch's, the whole gradient goes to ``a`` where it wins or ties or
    ``b`` is NaN, else to ``b``."""

    @staticmethod
    def forward(ctx, a, b, minimum=False):
        ctx.save_for_backward(a, b)
        ctx.minimum = minimum
        return np.fmin(a, b) if minimum else np.fmax(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        to_a = ((a <= b) if ctx.minimum else (a >= b)) | np.isnan(b)
        ga = unbroadcast(np.where(to_a, g, 0), _shape_of(a)) if ctx.needs_input_grad[0] else None
        gb = unbroadcast(np.where(to_a, 0, g), _shape_of(b)) if ctx.needs_input_grad[1] else None
        return ga, gb

    @staticmethod
    def backward_graph(ctx, io, g):
        a, b = ctx.saved_tensors
        to_a = ((a <= b) if ctx.minimum else (a >= b)) | np.isnan(b)  # a constant mask, as PyTorch's
        return split_where(to_a, g, (_shape_of(a), _shape_of(b)), ctx.needs_input_grad)


class Frexp(Function):
    """``(mantissa, exponent)`` with ``a = mantissa * 2^exponent``, |mantissa| in [0.5, 1) (0, inf and
    NaN as they are, exponent 0); int32 exponents. The mantissa's gradient is scaled by 2^-exponent."""

    @staticmethod
    def forward(ctx, a):
        mantissa, exponent = np.frexp(a.astype(np.float32) if is_bfloat16(a.dtype) else a)
        ctx.save_for_backward(exponent)
        return mantissa.astype(a.dtype, copy=False), exponent.astype(np.int32, copy=False)

    @staticmethod
    def backward(ctx, g, g_exponent=None):
        (exponent,) = ctx.saved_tensors
        return np.ldexp(g, -exponent)

    @staticmethod
    def backward_graph(ctx, io, g, g_exponent=None):
        (exponent,) = ctx.saved_tensors
        scale = lambda g: np.ldexp(g, -exponent)  # noqa: E731 - a diagonal linear map: its own transpose
        return LinearBackward.apply(g, scale, scale)


def _in_float64(kernel):
    """``kernel`` (of a 1-D float64 host array, elementwise) on an array of any floating dtype and
    device: computed in float64 in host memory, rounded once to the array's dtype, on its device."""

    def apply(a, *args):
        host = np.asarray(to_device(a, "cpu"), dtype=np.float64)
        out = kernel(host.reshape(-1), *args).reshape(host.shape)
        return to_device(out.astype(a.dtype, copy=False), device_of(a))

    return apply


def _horner(x, coefficients):
    """sum(c_i x^(n - i)): the polynomial of ``coefficients``, highest power first."""
    acc = np.zeros_like(x)
    for c in coefficients:
        acc = acc * x + c
    return acc


#: B_2j / (2j)!, j = 1..12: the Euler-Maclaurin corrections of the Hurwitz zeta function.
_EULER_MACLAURIN = [
    b / math.factorial(2 * j + 2)
    for j, b in enumerate(
        [1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730, 7 / 6, -3617 / 510, 43867 / 798, -174611 / 330]
        + [854513 / 138, -236364091 / 2730]
    )
]


def _hurwitz_zeta(s: int, q):
    """zeta(s, q) = sum_k (q + k)^-s for an integer s >= 2 and q > 0: the first s + 10 terms summed, the
    rest by Euler-Maclaurin with 12 Bernoulli terms at w >= s + 10, whose remainder is below
    2e-20 relative (about 2 (s - 1) (s)_25 / (2 pi w)^26); 1e-15 relative measured (mpmath, s <= 30)."""
    direct = s + 10
    total = np.zeros_like(q)
    for k in range(direct):
        total += (q + k) ** -s
    w = q + direct
    total += w ** (1 - s) / (s - 1) + 0.5 * w**-s
    rising, power, inverse_square = float(s), w ** (-s - 1), 1 / (w * w)
    for j, c in enumerate(_EULER_MACLAURIN):  # c (s)_(2j+1) w^(-s-2j-1)
        total += c * rising * power
        rising *= (s + 2 * j + 1) * (s + 2 * j + 2)
        power = power * inverse_square
    return total


#: (-1)^k (zeta(k) - 1) / k, k = 2..31: lgamma(2 + z)'s Taylor coefficients after (1 - gamma) z.
_LGAMMA_AT_2 = [(-1) ** k * _hurwitz_zeta(k, np.array([2.0]))[0] / k for k in range(31, 1, -1)]
#: B_2k / (2k (2k - 1)), k = 1..6: Stirling's series of lgamma (the next term: 2e-17 at x = 13, where lgamma is 20).
_STIRLING = [-691 / 360360, 1 / 1188, -1 / 1680, 1 / 1260, -1 / 360, 1 / 12]


def _lgamma_near_2(z):
    """lgamma(2 + z) for |z| <= 0.5 by its Taylor series (its terms are below 4^-k / k: 1e-20 at k = 31)."""
    return (_horner(z, _LGAMMA_AT_2) * z + (1 - np.euler_gamma)) * z


def _lgamma_positive(x):
    """lgamma of positive finite x: below 2.5 from the Taylor series at 2 (lgamma(x) = lgamma(x + 1) -
    log(x), and lgamma(1 + z) = lgamma(2 + z) - log1p(z) with z exact), so the zeros at 1 and 2 keep
    their relative accuracy; below 13 from there by lgamma(x) = log((x - 1) ... (x - m)) + lgamma(x - m),
    x - m in [1.5, 2.5); beyond, Stirling's series. 1e-15 relative measured against mpmath."""
    out = np.empty_like(x)
    small = x < 0.5
    z = x[small]
    out[small] = _lgamma_near_2(z) - np.log1p(z) - np.log(z)
    near_1 = (x >= 0.5) & (x < 1.5)
    z = x[near_1] - 1
    out[near_1] = _lgamma_near_2(z) - np.log1p(z)
    middle = (x >= 1.5) & (x < 13)
    v = x[middle]
    steps = np.floor(v - 1.5)
    product = np.ones_like(v)
    for k in range(1, 12):
        product = np.where(steps >= k, product * (v - k), product)
    out[middle] = np.log(product) + _lgamma_near_2(v - steps - 2)
    large = x >= 13
    v = x[large]
    with np.errstate(over="ignore"):
        series = _horner(1 / (v * v), _STIRLING) / v
    out[large] = (v - 0.5) * np.log(v) - v + 0.5 * math.log(2 * math.pi) + series
    return out


def _lgamma(x):
    """log|Gamma(x)|: inf at 0, the negative integers and +-inf; for x < 0 by the reflection
    log(pi / |sin(pi x)|) - lgamma(1 - x), sin(pi x) taken of x's distance to the nearest integer. About
    1e-15 relative; near lgamma's zeros at x < 0, 1e-15 absolute."""
    out = np.full(x.shape, np.inf)
    out[np.isnan(x)] = np.nan
    positive = (x > 0) & (x < np.inf)
    out[positive] = _lgamma_positive(x[positive])
    negative = (x < 0) & (x > -np.inf) & (x != np.floor(x))
    v = x[negative]
    out[negative] = np.log(math.pi / np.abs(np.sin(math.pi * (v - np.round(v))))) - _lgamma_positive(1 - v)
    return out


#: Cephes' asymptotic series of digamma (as PyTorch's calc_digamma), highest power first.
_DIGAMMA_SERIES = [
    8.33333333333333333333e-2,
    -2.10927960927960927961e-2,
    7.57575757575757575758e-3,
    -4.16666666666666666667e-3,
    3.96825396825396825397e-3,
    -8.33333333333333333333e-3,
    8.33333333333333333333e-2,
]


def _digamma(x):
    """PyTorch's digamma (its calc_digamma, from Cephes' psi), step for step: for x < 0 the reflection
    digamma(1 - x) - pi / tan(pi frac(x)); up to 10 by digamma(x) = digamma(x + 1) - 1 / x; there the
    asymptotic series. -inf at +0, inf at -0, NaN at negative integers; 1e-15 relative away from zeros."""
    reflect = x < 0
    v = np.where(reflect, 1 - x, x)
    result = np.zeros_like(x)
    result[reflect] = -math.pi / np.tan(math.pi * np.modf(x[reflect])[0])
    for _ in range(10):
        low = v < 10
        result[low] -= 1 / v[low]
        v[low] += 1
    z = 1 / (v * v)
    tail = np.where(v < 1e17, z * _horner(z, _DIGAMMA_SERIES), 0)
    out = np.where(v == 10, result + 2.25175258906672110764, result + np.log(v) - 0.5 / v - tail)
    out[x == 0] = np.copysign(np.inf, -x[x == 0])
    out[reflect & (x == np.floor(x))] = np.nan
    return out


def _cot_derivative(n: int) -> list:
    """The coefficients, highest power first, of P_n with (d/dy)^n cot(y) = P_n(cot(y)): P_0(c) = c,
    P_(k+1)(c) = -(1 + c^2) P_k'(c). Its powers are all even or all odd and its coefficients of one sign,
    so it is evaluated without cancellation."""
    p = np.array([0.0, 1.0])
    for _ in range(n):
        p = -np.polynomial.polynomial.polymul([1.0, 0.0, 1.0], np.polynomial.polynomial.polyder(p))
    return list(p[::-1])


def _polygamma(x, n: int):
    """The n-th derivative of digamma: (-1)^(n+1) n! zeta(n + 1, x) for x > 0; for x < 0 the reflection
    psi_n(x) = (-1)^n psi_n(1 - x) - pi^(n+1) P_n(cot(pi x)), cot taken of x's exact distance to the
    nearest integer or half-integer so that it keeps its relative accuracy: it cancels only near psi_n's
    zeros, where summing zeta's terms at x < 0 (PyTorch's way) cancels everywhere (2e-6 relative at
    psi_6(-18.5)). +-inf at the poles (x = 0, -1, ...), as PyTorch's. 3e-15 relative measured against
    mpmath (n <= 11, -30 < x < 30)."""
    if n == 0:
        return _digamma(x)
    scale = (-1) ** (n + 1) * (float(math.factorial(n)) if n <= 170 else math.inf)
    out = np.full(x.shape, np.nan)
    positive = x > 0
    out[positive] = scale * _hurwitz_zeta(n + 1, x[positive])
    pole = (x <= 0) & (x == np.floor(x)) & (x > -np.inf)
    out[pole] = scale * np.inf
    negative = (x < 0) & ~pole & (x > -np.inf)
    v = x[negative]
    r = v - np.round(v)  # exact, in [-0.5, 0.5]; near +-0.5 cot is tan of the (exact) distance to it
    cot = np.where(np.abs(r) < 0.25, 1 / np.tan(math.pi * r), np.copysign(np.tan(math.pi * (0.5 - np.abs(r))), r))
    out[negative] = (-1) ** n * scale * _hurwitz_zeta(n + 1, 1 - v) - math.pi ** (n + 1) * _horner(
        cot, _cot_derivative(n)
    )
    return out


# Cephes' ndtri (as PyTorch's calc_ndtri): the normal quantile, for erfinv(y) = ndtri((1 + y) / 2) / sqrt(2).
_NDTRI_P0 = [-5.99633501014107895267e1, 9.80010754185999661536e1, -5.66762857469070293439e1]
_NDTRI_P0 += [1.39312609387279679503e1, -1.23916583867381258016e0]
_NDTRI_Q0 = [1.0, 1.95448858338141759834e0, 4.67627912898881538453e0, 8.63602421390890590575e1]
_NDTRI_Q0 += [-2.25462687854119370527e2, 2.00260212380060660359e2, -8.20372256168333339912e1]
_NDTRI_Q0 += [1.59056225126211695515e1, -1.18331621121330003142e0]
_NDTRI_P1 = [4.05544892305962419923e0, 3.15251094599893866154e1, 5.71628192246421288162e1]
_NDTRI_P1 += [4.40805073893200834700e1, 1.46849561928858024014e1, 2.18663306850790267539e0]
_NDTRI_P1 += [-1.40256079171354495875e-1, -3.50424626827848203418e-2, -8.57456785154685413611e-4]
_NDTRI_Q1 = [1.0, 1.57799883256466749731e1, 4.53907635128879210584e1, 4.13172038254672030440e1]
_NDTRI_Q1 += [1.50425385692907503408e1, 2.50464946208309415979e0, -1.42182922854787788574e-1]
_NDTRI_Q1 += [-3.80806407691578277194e-2, -9.33259480895457427372e-4]
_NDTRI_P2 = [3.23774891776946035970e0, 6.91522889068984211695e0, 3.93881025292474443415e0]
_NDTRI_P2 += [1.33303460815807542389e0, 2.01485389549179081538e-1, 1.23716634817820021358e-2]
_NDTRI_P2 += [3.01581553508235416007e-4, 2.65806974686737550832e-6, 6.23974539184983293730e-9]
_NDTRI_Q2 = [1.0, 6.02427039364742014255e0, 3.67983563856160859403e0, 1.37702099489081330271e0]
_NDTRI_Q2 += [2.16236993594496635890e-1, 1.34204006088543189037e-2, 3.28014464682127739104e-4]
_NDTRI_Q2 += [2.89247864745380683936e-6, 6.79019408009981274425e-9]
_EXP_MINUS_2 = 0.13533528323661269189


def _erfinv(y):
    """The inverse error function by Cephes' ndtri, fed y / 2 (= p - 1/2, exact) in the middle and
    p = (1 - |y|) / 2 (exact) in the tails, so neither small |y| nor |y| near 1 loses digits: 1e-15
    relative measured against mpmath. +-inf at +-1, NaN beyond."""
    out = np.full(y.shape, np.nan)
    magnitude = np.abs(y)
    middle = magnitude <= 1 - 2 * _EXP_MINUS_2
    t2 = np.square(y[middle] / 2)
    scaled = y[middle] * (math.sqrt(math.pi) / 2)  # y / 2 * sqrt(2 pi) / sqrt(2), subnormal y not lost
    out[middle] = scaled + scaled * (t2 * _horner(t2, _NDTRI_P0) / _horner(t2, _NDTRI_Q0))
    tail = (magnitude > 1 - 2 * _EXP_MINUS_2) & (magnitude < 1)
    r = np.sqrt(-2 * np.log((1 - magnitude[tail]) / 2))
    z = 1 / r
    correction = np.where(
        r < 8, z * _horner(z, _NDTRI_P1) / _horner(z, _NDTRI_Q1), z * _horner(z, _NDTRI_P2) / _horner(z, _NDTRI_Q2)
    )
    out[tail] = np.copysign((r - np.log(r) / r - correction) / math.sqrt(2), y[tail])
    out[magnitude == 1] = np.copysign(np.inf, y[magnitude == 1])
    return out


# Cephes' Chebyshev coefficients (as PyTorch's calc_i0, calc_i1) of exp(-x) I0(x) and exp(-x) I1(x) / x on
# [0, 8], and of exp(-x) sqrt(x) I0(x) and exp(-x) sqrt(x) I1(x) on [8, inf).
_I0_SMALL = [-4.41534164647933937950e-18, 3.33079451882223809783e-17, -2.43127984654795469359e-16]
_I0_SMALL += [1.71539128555513303061e-15, -1.16853328779934516808e-14, 7.67618549860493561688e-14]
_I0_SMALL += [-4.85644678311192946090e-13, 2.95505266312963983461e-12, -1.72682629144155570723e-11]
_I0_SMALL += [9.67580903537323691224e-11, -5.18979560163526290666e-10, 2.65982372468238665035e-9]
_I0_SMALL += [-1.30002500998624804212e-8, 6.04699502254191894932e-8, -2.67079385394061173391e-7]
_I0_SMALL += [1.11738753912010371815e-6, -4.41673835845875056359e-6, 1.64484480707288970893e-5]
_I0_SMALL += [-5.75419501008210370398e-5, 1.88502885095841655729e-4, -5.76375574538582365885e-4]
_I0_SMALL += [1.63947561694133579842e-3, -4.32430999505057594430e-3, 1.05464603945949983183e-2]
_I0_SMALL += [-2.37374148058994688156e-2, 4.93052842396707084878e-2, -9.49010970480476444210e-2]
_I0_SMALL += [1.71620901522208775349e-1, -3.04682672343198398683e-1, 6.76795274409476084995e-1]
_I0_LARGE = [-7.23318048787475395456e-18, -4.83050448594418207126e-18, 4.46562142029675999901e-17]
_I0_LARGE += [3.46122286769746109310e-17, -2.82762398051658348494e-16, -3.42548561967721913462e-16]
_I0_LARGE += [1.77256013305652638360e-15, 3.81168066935262242075e-15, -9.55484669882830764870e-15]
_I0_LARGE += [-4.15056934728722208663e-14, 1.54008621752140982691e-14, 3.85277838274214270114e-13]
_I0_LARGE += [7.18012445138366623367e-13, -1.79417853150680611778e-12, -1.32158118404477131188e-11]
_I0_LARGE += [-3.14991652796324136454e-11, 1.18891471078464383424e-11, 4.94060238822496958910e-10]
_I0_LARGE += [3.39623202570838634515e-9, 2.26666899049817806459e-8, 2.04891858946906374183e-7]
_I0_LARGE += [2.89137052083475648297e-6, 6.88975834691682398426e-5, 3.36911647825569408990e-3]
_I0_LARGE += [8.04490411014108831608e-1]
_I1_SMALL = [2.77791411276104639959e-18, -2.11142121435816608115e-17, 1.55363195773620046921e-16]
_I1_SMALL += [-1.10559694773538630805e-15, 7.60068429473540693410e-15, -5.04218550472791168711e-14]
_I1_SMALL += [3.22379336594557470981e-13, -1.98397439776494371520e-12, 1.17361862988909016308e-11]
_I1_SMALL += [-6.66348972350202774223e-11, 3.62559028155211703701e-10, -1.88724975172282928790e-9]
_I1_SMALL += [9.38153738649577178388e-9, -4.44505912879632808065e-8, 2.00329475355213526229e-7]
_I1_SMALL += [-8.56872026469545474066e-7, 3.47025130813767847674e-6, -1.32731636560394358279e-5]
_I1_SMALL += [4.78156510755005422638e-5, -1.61760815825896745588e-4, 5.12285956168575772895e-4]
_I1_SMALL += [-1.51357245063125314899e-3, 4.15642294431288815669e-3, -1.05640848946261981558e-2]
_I1_SMALL += [2.47264490306265168283e-2, -5.29459812080949914269e-2, 1.02643658689847095384e-1]
_I1_SMALL += [-1.76416518357834055153e-1, 2.52587186443633654823e-1]
_I1_LARGE = [7.51729631084210481353e-18, 4.41434832307170791151e-18, -4.65030536848935832153e-17]
_I1_LARGE += [-3.20952592199342395980e-17, 2.96262899764595013876e-16, 3.30820231092092828324e-16]
_I1_LARGE += [-1.88035477551078244854e-15, -3.81440307243700780478e-15, 1.04202769841288027642e-14]
_I1_LARGE += [4.27244001671195135429e-14, -2.10154184277266431302e-14, -4.08355111109219731823e-13]
_I1_LARGE += [-7.19855177624590851209e-13, 2.03562854414708950722e-12, 1.41258074366137813316e-11]
_I1_LARGE += [3.25260358301548823856e-11, -1.89749581235054123450e-11, -5.58974346219658380687e-10]
_I1_LARGE += [-3.83538038596423702205e-9, -2.63146884688951950684e-8, -2.51223623787020892529e-7]
_I1_LARGE += [-3.88256480887769039346e-6, -1.10588938762623716291e-4, -9.76109749136146840777e-3]
_I1_LARGE += [7.78576235018280120474e-1]


def _chebyshev(x, coefficients):
    """Cephes' chbevl: the Chebyshev series of ``coefficients`` (highest order first) at x / 2."""
    b0, b1, b2 = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    for c in coefficients:
        b0, b1, b2 = x * b0 - b1 + c, b0, b1
    return 0.5 * (b0 - b2)


def _bessel_i(x, small, large, odd: bool):
    """I0 (``odd`` False) or I1 from Cephes' Chebyshev series (PyTorch's calc_i0 and calc_i1, step for
    step): 1e-15 relative."""
    a = np.abs(x)
    out = np.empty_like(a)
    near = a <= 8
    v = a[near]
    out[near] = np.exp(v) * _chebyshev(v / 2 - 2, small) * (v if odd else 1)
    v = a[~near]
    with np.errstate(over="ignore", invalid="ignore"):
        out[~near] = np.exp(v) * _chebyshev(32 / v - 2, large) / np.sqrt(v)
    return np.where(x < 0, -out, out) if odd else out


def _i1_of(x):
    """I1 of the Tensor ``x`` (deepkern.special's, imported on first use: it imports this module)."""
    from .special import I1

    return I1.apply(x)


def _erfinv_derivative_graph(y):
    """erfinv's derivative as Tensor ops of ``y`` = erfinv(x)."""
    return (y * y).exp() * (math.sqrt(math.pi) / 2)


Lgamma = _pointwise("Lgamma", _in_float64(_lgamma), _in_float64(_digamma), lambda x: Digamma.apply(x))
Digamma = _pointwise(
    "Digamma", _in_float64(_digamma), _in_float64(lambda x: _polygamma(x, 1)), lambda x: Polygamma.apply(x, 1)
)
Erfinv = _pointwise(
    "Erfinv",
    _in_float64(_erfinv),
    lambda a: (math.sqrt(math.pi) / 2) * np.exp(np.square(_in_float64(_erfinv)(a))),
    lambda x: _erfinv_derivative_graph(Erfinv.apply(x)),
)
I0 = _pointwise(
    "I0",
    _in_float64(lambda x: _bessel_i(x, _I0_SMALL, _I0_LARGE, odd=False)),
    _in_float64(lambda x: _bessel_i(x, _I1_SMALL, _I1_LARGE, odd=True)),
    _i1_of,
)


class Polygamma(Function):
    """The ``n``-th derivative of digamma; its gradient is polygamma ``n + 1``."""

    @staticmethod
    @_silent_floating_point
    def forward(ctx, a, n):
        ctx.save_for_backward(a)
        ctx.n = n
        return _in_float64(_polygamma)(a, n)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * _in_float64(_polygamma)(a, ctx.n + 1), None

    @staticmethod
    def backward_graph(ctx, io, g):
        (a,) = ctx.saved_tensors
        return g * Polygamma.apply(io.input(0, a), ctx.n + 1), None


# ---------------------------------------------------------------------------------------------
# Strided views of a tensor's memory: as_strided and unfold (tensor_long_tail.py's third batch)
# ---------------------------------------------------------------------------------------------


def strided_positions(size: tuple, stride: tuple, offset: int) -> np.ndarray:
    """The memory position (in elements) of each element of the strided view ``(size, stride, offset)``,
    as an int64 array of ``size``."""
    positions = np.full(size, offset, dtype=np.int64)
    for axis, (n, step) in enumerate(zip(size, stride)):
        positions += (np.arange(n, dtype=np.int64) * step).reshape((-1,) + (1,) * (len(size) - axis - 1))
    return positions


def overlapping(size: tuple, stride: tuple, offset: int) -> bool:
    """Whether the strided view ``(size, stride, offset)`` holds some memory address twice: at once where each
    dimension, by stride, steps past the reach of the finer ones; else by counting the addresses."""
    if 0 in size:
        return False
    reach = 0
    for step, n in sorted((s, n) for n, s in zip(size, stride) if n > 1):
        if step <= reach:
            return bool(np.bincount(strided_positions(size, stride, offset).reshape(-1)).max() > 1)
        reach += (n - 1) * step
    return False


def memory_geometry(a, storage) -> tuple:
    """``(size, stride, offset)`` of the host array ``a`` in ``storage`` (the 1-D memory it views), in elements."""
    start = a.__array_interface__["data"][0] - storage.__array_interface__["data"][0]
    return a.shape, tuple(s // a.itemsize for s in a.strides), start // a.itemsize


class AsStrided(Function):
    """The view of ``storage`` (the 1-D memory ``a`` views: PyTorch's storage) with ``size``, ``stride`` and
    ``offset`` (in elements), read-only where its elements overlap (an in-place write would land several
    values on one address). The gradient of each element goes to ``a``'s element at its address, summed
    over the view's repeats and split evenly among ``a``'s own, as PyTorch's as_strided_backward."""

    @staticmethod
    def forward(ctx, a, *, storage, size, stride, offset):
        # a view of no elements may start anywhere (PyTorch checks no bounds then)
        start = min(offset, storage.size) * a.itemsize
        out = np.ndarray(size, a.dtype, buffer=storage, offset=start, strides=tuple(s * a.itemsize for s in stride))
        if overlapping(size, stride, offset):
            out.flags.writeable = False
        ctx.meta = (memory_geometry(a, storage), (size, stride, offset), storage.size)
        return out

    @staticmethod
    def backward(ctx, g):
        return _strided_gradient(g, *ctx.meta)

    @staticmethod
    def backward_graph(ctx, io, g):
        meta = ctx.meta
        return LinearBackward.apply(g, lambda g: _strided_gradient(g, *meta), lambda h: _strided_transposed(h, *meta))


def _shares(own: tuple, length: int):
    """The positions of the strided view ``own`` and, at each, how many of its elements share that address."""
    positions = strided_positions(*own)
    return positions, np.bincount(positions.reshape(-1), minlength=length)[positions]


def _strided_gradient(g, own, view, length):
    """AsStrided's backward: each element of ``g`` (of the strided ``view``) to the elements of ``own`` (the
    input's view) at its address, summed over the view's repeats and split evenly among the input's."""
    per_address = np.zeros(length, g.dtype)
    np.add.at(per_address, strided_positions(*view).reshape(-1), g.reshape(-1))
    positions, shares = _shares(own, length)
    return (per_address[positions] / shares).astype(g.dtype, copy=False)


def _strided_transposed(h, own, view, length):
    """The transpose of :func:`_strided_gradient`: ``h`` (the input's shape) split among the input's repeats
    of each address, summed there and read at the view's addresses."""
    positions, shares = _shares(own, length)
    per_address = np.zeros(length, h.dtype)
    np.add.at(per_address, positions.reshape(-1), (h / shares).reshape(-1))
    return per_address[strided_positions(*view)].astype(h.dtype, copy=False)


class Conj(Function):
    """The complex conjugate (a copy); the gradient is the conjugate of the output's."""

    @staticmethod
    def forward(ctx, a):
        return np.conj(a)

    @staticmethod
    def backward(ctx, g):
        return np.conj(g)
