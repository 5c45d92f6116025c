"""Assertions shared by the kernel tests: results against their float64 references."""

from __future__ import annotations

import contextlib
import re

import deepkern
import numpy as np
import pytest

from conftest import to_host
from reference import rel_error

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
#: ||out - ref|| / ||ref|| bounds (DESIGN.md: float32 under 1e-5 for K up to 4096).
TOL = {F32: 1e-5, F64: 1e-12}


def check(got, ref, dtype, what="", floor=0.0, tol=None):
    """``got`` (an array on any device, compared in host memory) is an array of ``dtype`` and
    ``ref``'s shape, NaN-free (every element written), within the tolerance (``floor``: see
    reference.rel_error; only for results of a few elements that may cancel)."""
    got = to_host(got)
    dtype = np.dtype(dtype)
    tol = TOL[dtype] if tol is None else tol
    assert isinstance(got, np.ndarray), f"{what}: got {type(got).__name__}, not an ndarray"
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    n_nan = int(np.isnan(got).sum())
    assert n_nan == 0, f"{what}: {n_nan} of {got.size} elements are NaN (not written?)"
    err = rel_error(got, ref, floor)
    if not err < tol:
        diff = np.abs(got.astype(np.float64) - ref)
        worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
        raise AssertionError(
            f"{what}: relative error {err:.3g} >= {tol:g}; worst at index {tuple(map(int, worst))}: "
            f"got {got[worst]!r}, expected {ref[worst]!r}"
        )


def rand(rng, shape, dtype):
    """Random normal values (never all zeros) of ``dtype``."""
    return rng.standard_normal(shape).astype(dtype)


@contextlib.contextmanager
def active_isa(isa):
    """Runs the block with the kernels of ``isa`` ('amx', 'avx512', 'avx2', 'generic')."""
    previous = deepkern._C.active_isa()
    deepkern._C.set_active_isa(isa)
    try:
        yield
    finally:
        deepkern._C.set_active_isa(previous)


def runs_transposed(m: int, n: int, kernel_name: str) -> bool:
    """The GEMM drivers' rule (csrc/cpu/gemm/grid.h) for an m x n product whose A is transposed: it
    runs as C^T = B^T A^T where that pads the kernel's tiles (the last word of its name, "12x32")
    by at least 1/8 less."""
    mr, nr = map(int, kernel_name.split()[-1].split("x"))

    def up(x, to):
        return -(-x // to) * to

    return 8 * up(n, mr) * up(m, nr) <= 7 * up(m, mr) * up(n, nr)


def winograd_tile(batch: int, out_h: int, out_w: int) -> int:
    """The Winograd variant F(tile x tile, 3x3) (tile 2 or 4) conv2d's forward runs for ``batch`` images
    of ``out_h`` x ``out_w`` outputs: the lower (tile + 2)^2 x max(tiles of the call, 32), F(2x2) on a tie."""

    def cost(tile):
        return (tile + 2) ** 2 * max(batch * -(-out_h // tile) * -(-out_w // tile), 32)

    return 4 if cost(4) < cost(2) else 2


def poison_heap(*shapes_dtypes):
    """Allocate and free NaN-filled blocks of the results' sizes, so a kernel's freshly allocated
    output is likely to start as NaN (for ops that take no ``out`` to pre-fill)."""
    blocks = [np.full(shape, np.nan, dtype) for shape, dtype in shapes_dtypes]
    del blocks


@contextlib.contextmanager
def raises_naming(exc_type, *needles):
    """``exc_type`` whose message contains every regex in ``needles`` (in any order)."""
    pattern = "(?s)" + "".join(f"(?=.*(?:{n}))" for n in needles)
    with pytest.raises(exc_type, match=pattern) as info:
        yield info


def shape_pattern(shape):
    """A regex matching ``shape`` printed as a tuple."""
    return re.escape(str(tuple(shape)))


def create_graph_gradients(objective):
    """The gradients of the scalar ``objective(*tensors)`` w.r.t. the tensors, as a function for
    :func:`gradcheck`: recorded (create_graph=True, so that gradcheck's backward differentiates them)
    where grad mode is on; the plain first-order pass where gradcheck evaluates them under no_grad for
    its finite differences."""

    def gradients(*tensors):
        recorded = deepkern.is_grad_enabled()
        with deepkern.enable_grad():
            found = deepkern.autograd.grad(objective(*tensors), tensors, create_graph=recorded)
        assert all(g.requires_grad == recorded for g in found)
        return found

    return gradients


def gradcheck(fn, *inputs, eps=1e-6, tol=1e-6, rng=None):
    """Finite-difference check of autograd: for float64 Tensors ``inputs`` (those that require
    grad are checked; on any device), compares d sum(w * fn(*inputs)) / d input from ``backward``
    with central differences, w a fixed random weighting of the output(s)."""
    rng = rng or np.random.default_rng(0)
    outs = fn(*inputs)
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    weights = [rng.standard_normal(o.shape) for o in outs]

    def objective():
        with deepkern.no_grad():
            res = fn(*inputs)
        res = res if isinstance(res, (tuple, list)) else (res,)
        return sum(float(np.sum(w * r.cpu().numpy())) for w, r in zip(weights, res))

    for t in inputs:
        if isinstance(t, deepkern.Tensor):
            t.grad = None
    outs = fn(*inputs)
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    total = sum((o * deepkern.tensor(w, device=o.device)).sum() for o, w in zip(outs, weights) if o.requires_grad)
    total.backward()
    for k, t in enumerate(inputs):
        if not (isinstance(t, deepkern.Tensor) and t.requires_grad):
            continue
        assert t.dtype == np.float64, "gradcheck needs float64 inputs"
        numeric = np.zeros(t.shape)
        flat = t._array.reshape(-1)  # a view: perturbs the tensor in place
        assert np.shares_memory(flat, t._array), "gradcheck needs contiguous inputs"
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            up = objective()
            flat[i] = old - eps
            down = objective()
            flat[i] = old
            numeric.reshape(-1)[i] = (up - down) / (2 * eps)
        analytic = np.zeros(t.shape) if t.grad is None else t.grad.cpu().numpy()
        err = np.linalg.norm(analytic - numeric) / max(np.linalg.norm(numeric), 1e-12)
        assert err < tol, (
            f"input {k} (shape {t.shape}): gradient relative error {err:.3g}\nanalytic {analytic}\nnumeric {numeric}"
        )


def sprinkle_non_finite(rng, a, count):
    """A copy of the host array ``a`` with ``count`` random elements (at most all of them) replaced
    by +Inf, -Inf or NaN, each drawn at random."""
    a = np.array(a, copy=True)
    flat = a.reshape(-1)
    where = rng.choice(flat.size, size=min(count, flat.size), replace=False)
    flat[where] = rng.choice(np.array([np.inf, -np.inf, np.nan], a.dtype), size=where.size)
    return a


def check_non_finite(got, ref, dtype, what=""):
    """``got`` has NaN, +Inf and -Inf exactly where the float64 ``ref`` has them, and its finite
    elements are within the tolerance of ``ref``'s."""
    got = to_host(got)
    assert isinstance(got, np.ndarray) and got.dtype == np.dtype(dtype), f"{what}: got {got.dtype}, expected {dtype}"
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    for name, test in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
        differ = np.argwhere(test(got) != test(ref))
        if differ.size:
            at = tuple(map(int, differ[0]))
            raise AssertionError(
                f"{what}: {len(differ)} elements differ in being {name}; first at index {at}: "
                f"got {got[at]!r}, expected {ref[at]!r}"
            )
    finite = np.isfinite(ref)
    err = rel_error(got[finite], ref[finite])
    assert err < TOL[np.dtype(dtype)], f"{what}: relative error {err:.3g} of the finite elements"
