"""Matrix multiply: ``matmul`` (NumPy semantics), ``gemm`` (BLAS style) and ``linear``.

All three run deepkern's blocked GEMM kernel (csrc/cpu/gemm) on the CPU, the GPU kernels
(csrc/cuda/gemm) on 'cuda' arrays. float32 is the fast path and float64 runs the same algorithm on
the CPU; on the GPU float32 runs in FP32 (or TF32 with ``deepkern.backends.cuda.matmul.allow_tf32``).
bfloat16 (``deepkern.bfloat16``, ml_dtypes' dtype) runs on the CPU's bfloat16 GEMM
(csrc/cpu/gemm_bf16: AMX tiles, AVX512-BF16, or float32 arithmetic on other CPUs) and in BF16 on
the GPU's tensor cores; both accumulate in float32 and give bfloat16, as PyTorch does. Inputs are
read in place whatever their strides (transposed, sliced, negative-stride views are not copied).
"""

from __future__ import annotations

import numpy as np

from ..backends import as_array, backend_of
from ._validate import as_float_array, check_output, check_scalar

_BIAS_NONE, _BIAS_ROWS, _BIAS_COLS = 0, 1, 2


_BFLOAT16 = "bfloat16"


def _as_operand(x, name: str, op: str):
    """``x`` as :func:`as_float_array` gives it, bfloat16 included (a host array aligned once, as
    float32 ones are; a device array as it is)."""
    arr = as_array(x)
    if not isinstance(arr, np.ndarray) and getattr(arr, "dtype", None) is not None and arr.dtype.name == _BFLOAT16:
        return arr
    return as_float_array(arr, name, op, bfloat16=True)


def _rows(x, rows: int, backend):
    """``x`` (..., n) as a (rows, n) matrix of the same memory where one exists (NumPy's reshape
    rules), else a copy; device arrays reshape only when C-contiguous."""
    if x.ndim == 2:
        return x
    if x.ndim == 1:
        return x[None, :]
    if isinstance(x, np.ndarray) or x.flags.c_contiguous:
        return x.reshape(rows, x.shape[-1])
    return backend.ascontiguousarray(x).reshape(rows, x.shape[-1])


def _same_memory(view, base) -> bool:
    """Whether ``view``, which _rows made of ``base``, is a view of it (not a copy)."""
    if isinstance(view, np.ndarray):
        return np.shares_memory(view, base)
    return view.data_ptr == base.data_ptr


_SINGLE_PROBLEM = np.zeros(1, dtype=np.int64)
_SINGLE_PROBLEM.flags.writeable = False


def _batch_offsets(arr: np.ndarray, batch_shape: tuple) -> np.ndarray:
    """Element offset of each matrix of ``arr`` (batch axes broadcast to ``batch_shape``)."""
    if not batch_shape:
        return _SINGLE_PROBLEM
    offsets = np.zeros(batch_shape, dtype=np.int64)
    lead = len(batch_shape) - (arr.ndim - 2)
    for axis, (size, stride) in enumerate(zip(arr.shape[:-2], arr.strides[:-2])):
        if size == 1:
            continue
        shape = [1] * len(batch_shape)
        shape[lead + axis] = size
        offsets = offsets + (np.arange(size, dtype=np.int64) * (stride // arr.itemsize)).reshape(shape)
    return np.ascontiguousarray(offsets.reshape(-1))


def _run(backend, a, b, c, k, *, alpha=1.0, beta=0.0, bias=None, bias_axis=_BIAS_NONE, relu=False, batch_shape=()):
    """C = epilogue(alpha * A @ B + beta * C) over the batch on ``backend``; arrays already validated."""
    if c.size == 0:
        return
    backend.gemm(
        a,
        b,
        c,
        _batch_offsets(a, batch_shape),
        _batch_offsets(b, batch_shape),
        _batch_offsets(c, batch_shape),
        k,
        alpha,
        beta,
        bias,
        bias_axis,
        relu,
    )


def matmul(a, b, *, out=None):
    """``a @ b`` with NumPy's matmul semantics, on deepkern's kernels.

    2-D arrays multiply as matrices; a 1-D first operand is a row vector and a 1-D second operand
    a column vector (the added axis is removed from the result); arrays with more dimensions are
    stacks of matrices whose leading dimensions broadcast. float32 and float64 (mixed: float64,
    as NumPy), or bfloat16 (both operands; a bfloat16 result accumulated in float32). ``out``, if
    given, must have the result's exact shape and dtype and must not overlap ``a`` or ``b``.
    """
    a = _as_operand(a, "a", "matmul")
    b = _as_operand(b, "b", "matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: a and b must have at least 1 dimension, got shapes {a.shape} and {b.shape}")
    dtype = a.dtype
    if b.dtype != dtype and _BFLOAT16 in (a.dtype.name, b.dtype.name):
        raise TypeError(f"matmul: a and b must have the same dtype with bfloat16, got {a.dtype} and {b.dtype}")
    if b.dtype != dtype:  # mixed float32/float64: float64, as NumPy
        dtype = np.result_type(a.dtype, b.dtype)
        a = a.astype(dtype, copy=False)
        b = b.astype(dtype, copy=False)
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    m, k = a2.shape[-2:]
    k_b, n = b2.shape[-2:]
    if k != k_b:
        raise ValueError(
            f"matmul: inner dimensions differ: a has shape {a.shape} (K={k}), b has shape {b.shape} (K={k_b})"
        )
    batch_shape = ()
    if a2.ndim > 2 or b2.ndim > 2:
        try:
            batch_shape = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch dimensions of a {a.shape} and b {b.shape} do not broadcast") from None
    shape = batch_shape + ((m,) if a.ndim > 1 else ()) + ((n,) if b.ndim > 1 else ())
    backend = backend_of(a, b, out, op="matmul")
    if out is None:
        result = backend.empty(shape, dtype)
    else:
        result = check_output(out, "out", "matmul", shape, dtype, {"a": a, "b": b}, backend)
    # A view of the result with both matrix axes, even where a or b was 1-D.
    c = result
    if a.ndim == 1:
        c = c[..., None, :] if b.ndim > 1 else c[..., None]
    if b.ndim == 1:
        c = c[..., None]
    _run(backend, a2, b2, c, k, batch_shape=batch_shape)
    return result[()] if result.ndim == 0 and out is None else result


def gemm(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None, bias=None, relu=False):
    """BLAS-style ``C = relu?(alpha * op(a) @ op(b) + beta * c + bias)`` for 2-D arrays.

    ``op(x)`` is ``x.T`` when ``trans_x`` is true. ``bias`` (shape ``(N,)``) is added to every
    row; ``relu`` clamps negatives to zero after it (the Linear layer's fused epilogue). With
    ``c`` the result is written into ``c`` in place and returned (``c`` is only read when
    ``beta != 0``); without it a new array is returned and ``beta`` must be 0.
    """
    a = _as_operand(a, "a", "gemm")
    b = _as_operand(b, "b", "gemm")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"gemm: a and b must be 2-D, got shapes {a.shape} and {b.shape}")
    if a.dtype != b.dtype:
        raise TypeError(f"gemm: a and b must have the same dtype, got {a.dtype} and {b.dtype}")
    alpha = check_scalar(alpha, "alpha", "gemm")
    beta = check_scalar(beta, "beta", "gemm")
    op_a = a.T if trans_a else a
    op_b = b.T if trans_b else b
    (m, k), (k_b, n) = op_a.shape, op_b.shape
    if k != k_b:
        raise ValueError(
            f"gemm: inner dimensions differ: op(a) has shape {op_a.shape}, op(b) has shape {op_b.shape} "
            f"(a {a.shape}, trans_a={bool(trans_a)}; b {b.shape}, trans_b={bool(trans_b)})"
        )
    bias_arr = _check_bias(bias, n, a.dtype, "gemm")
    if c is None and beta != 0.0:
        raise ValueError(f"gemm: beta={beta} needs c (the matrix it scales)")
    backend = backend_of(a, b, bias_arr, c, op="gemm")
    if bias_arr is not None:
        bias_arr = backend.ascontiguousarray(bias_arr)
    if c is None:
        c = backend.empty((m, n), a.dtype)
    else:
        check_output(c, "c", "gemm", (m, n), a.dtype, {"a": a, "b": b, "bias": bias_arr}, backend)
    _run(
        backend,
        op_a,
        op_b,
        c,
        k,
        alpha=alpha,
        beta=beta,
        bias=bias_arr,
        bias_axis=_BIAS_NONE if bias_arr is None else _BIAS_COLS,
        relu=bool(relu),
    )
    return c


def linear(x, weight, bias=None, *, relu=False, out=None):
    """``x @ weight.T + bias`` (then ReLU if asked), PyTorch's ``F.linear`` in one kernel pass.

    ``x`` is ``(..., in_features)``, ``weight`` ``(out_features, in_features)``, ``bias``
    ``(out_features,)``; the result is ``(..., out_features)``.
    """
    x = _as_operand(x, "x", "linear")
    weight = _as_operand(weight, "weight", "linear")
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: x's last dimension must equal in_features={weight.shape[1]} of weight {weight.shape}, "
            f"got x of shape {x.shape}"
        )
    if x.dtype != weight.dtype:
        raise TypeError(f"linear: x and weight must have the same dtype, got {x.dtype} and {weight.dtype}")
    n = weight.shape[0]
    bias_arr = _check_bias(bias, n, x.dtype, "linear")
    shape = x.shape[:-1] + (n,)
    rows = int(np.prod(x.shape[:-1]))
    backend = backend_of(x, weight, bias_arr, out, op="linear")
    x2 = _rows(x, rows, backend)
    if bias_arr is not None:
        bias_arr = backend.ascontiguousarray(bias_arr)
    if out is None:
        result = backend.empty(shape, x.dtype)
    else:
        result = check_output(
            out, "out", "linear", shape, x.dtype, {"x": x, "weight": weight, "bias": bias_arr}, backend
        )
    c2 = _rows(result, rows, backend)  # a copy only for an `out` whose leading axes do not merge
    _run(
        backend,
        x2,
        weight.T,
        c2,
        weight.shape[1],
        bias=bias_arr,
        bias_axis=_BIAS_NONE if bias_arr is None else _BIAS_COLS,
        relu=bool(relu),
    )
    if c2.size and not _same_memory(c2, result):
        result[...] = c2.reshape(shape)
    return result


def _check_bias(bias, n: int, dtype: np.dtype, op: str):
    if bias is None:
        return None
    bias = _as_operand(bias, "bias", op)
    if bias.shape != (n,):
        raise ValueError(f"{op}: bias must have shape ({n},), got {bias.shape}")
    if bias.dtype != dtype:
        raise TypeError(f"{op}: bias must have dtype {dtype}, got {bias.dtype}")
    return bias
