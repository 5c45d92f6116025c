"""Plain float64 NumPy references for deepkern's kernels (see DESIGN.md, "Verification").

Every reference converts its inputs to float64 first, so a float32 kernel is compared with the
exact product of the same float32 values, not with a float32 computation that shares its errors.
"""

from __future__ import annotations

import numpy as np


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def _relu(v: np.ndarray) -> np.ndarray:
    # max(v, 0) that keeps NaN as NaN (np.maximum would too, but this states it).
    return np.where(v < 0, 0.0, v)


def matmul_ref(a, b) -> np.ndarray:
    """``a @ b`` with NumPy's matmul semantics, in float64."""
    return np.matmul(_f64(a), _f64(b))


def gemm_ref(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None, bias=None, relu=False):
    """``relu?(alpha * op(a) @ op(b) + beta * c + bias)`` in float64; ``c`` is not read when beta == 0."""
    a64, b64 = _f64(a), _f64(b)
    op_a = a64.T if trans_a else a64
    op_b = b64.T if trans_b else b64
    out = float(alpha) * (op_a @ op_b)
    if beta != 0:
        out = out + float(beta) * _f64(c)
    if bias is not None:
        out = out + _f64(bias)[None, :]
    if relu:
        out = _relu(out)
    return out


def linear_ref(x, w, b=None, relu=False) -> np.ndarray:
    """``relu?(x @ w.T + b)`` in float64 (PyTorch's F.linear)."""
    out = _f64(x) @ _f64(w).T
    if b is not None:
        out = out + _f64(b)
    if relu:
        out = _relu(out)
    return out


def rel_error(out, ref, floor: float = 0.0) -> float:
    """``||out - ref|| / ||ref||`` (Frobenius, in float64).

    When ``ref`` is all zeros (or empty) this is the absolute error ``||out - ref||``. Any NaN or
    inf in ``out`` where ``ref`` is finite gives ``inf``, and a shape mismatch raises
    ``AssertionError`` (never silently broadcast).

    ``floor`` (default 0) is a lower bound for the denominator: for a product whose few elements
    cancel to almost nothing, pass :func:`magnitude_floor` so the error is measured against the
    size the result has without cancellation (the scale float rounding errors have).
    """
    out64, ref64 = _f64(out), _f64(ref)
    assert out64.shape == ref64.shape, f"shape {out64.shape} != reference shape {ref64.shape}"
    if out64.size == 0:
        return 0.0
    if not np.isfinite(out64[np.isfinite(ref64)]).all():
        return float("inf")
    diff = np.linalg.norm((out64 - ref64).ravel())
    ref_norm = max(float(np.linalg.norm(ref64.ravel())), float(floor))
    if ref_norm == 0.0:
        return float(diff)
    return float(diff / ref_norm)


def magnitude_floor(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None, bias=None) -> float:
    """Half the Frobenius norm the gemm result has when nothing cancels, at random-sign scale:
    ``|| |alpha| |op(a)| @ |op(b)| / sqrt(K) + |beta| |c| + |bias| || / 2``.

    For random zero-mean inputs ``||op(a) @ op(b)||`` is about ``|| |op(a)| @ |op(b)| || / sqrt(K)``,
    so this is below ``||ref||`` unless the result cancels far more than typical (a single dot
    product that lands near zero); used as ``rel_error``'s ``floor``.
    """
    a64, b64 = np.abs(_f64(a)), np.abs(_f64(b))
    op_a = a64.T if trans_a else a64
    op_b = b64.T if trans_b else b64
    k = op_a.shape[-1] if op_a.ndim else 1
    mag = abs(float(alpha)) * np.matmul(op_a, op_b) / np.sqrt(max(k, 1))
    if beta != 0:
        mag = mag + abs(float(beta)) * np.abs(_f64(c))
    if bias is not None:
        mag = mag + np.abs(_f64(bias))
    return 0.5 * float(np.linalg.norm(np.ravel(mag)))
