"""Assertions shared by the kernel tests: results against their float64 references."""

from __future__ import annotations

import numpy as np

from reference import rel_error

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
#: ||out - ref|| / ||ref|| bounds (DESIGN.md: float32 under 1e-5 for K up to 4096).
TOL = {F32: 1e-5, F64: 1e-12}


def check(got, ref, dtype, what="", floor=0.0, tol=None):
    """``got`` is an ndarray of ``dtype`` and ``ref``'s shape, NaN-free (every element written),
    within the tolerance (``floor``: see reference.rel_error; only for results of a few elements
    that may cancel)."""
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
        raise AssertionError(f"{what}: relative error {err:.3g} >= {tol:g}; worst at index {tuple(map(int, worst))}: "
                             f"got {got[worst]!r}, expected {ref[worst]!r}")
