"""The ``gemm`` suite: float32 matrix multiply, square in layouts NN/NT/TN and the shapes deep-learning
layers run, ``deepkern.ops.matmul`` beside NumPy (``np.matmul``) and PyTorch (``torch.matmul``)."""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from .libraries import installed_torch
from .registry import Case, Suite, register_suite
from .timing import rotation_copies

GEMM_LAYOUTS = ("NN", "NT", "TN")
GEMM_SQUARE = (256, 512, 1024, 2048, 4096)
GEMM_SQUARE_QUICK = (256, 512)
#: (M, N, K, what it is) for the shapes deep-learning layers run.
GEMM_DL_SHAPES = (
    (32, 1024, 256, "linear, batch 32"),
    (64, 4096, 1024, "MLP, batch 64"),
    (128, 4096, 1024, "MLP, batch 128"),
    (1, 4096, 4096, "batch-1 inference (GEMV)"),
    (4096, 64, 576, "conv 3x3x64 im2col, 64x64"),
    (12544, 64, 147, "ResNet conv1 7x7x3 im2col"),
)
GEMM_DL_SHAPES_QUICK = (GEMM_DL_SHAPES[0], GEMM_DL_SHAPES[4])
GROUP_SQUARE_BIG = "square n>=512"
GROUP_SQUARE_SMALL = "square n<512"
GROUP_DL = "DL shapes"


def make_gemm_inputs(
    m: int, n: int, k: int, layout: str = "NN", *, dtype=np.float32, copies: Optional[int] = None, seed: int = 0
) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Rotation sets ``[(a, b), ...]`` of views with ``a`` (M, K) and ``b`` (K, N).

    ``layout`` is two letters, for A then B: ``N`` a C-contiguous array, ``T`` the transpose view
    of a C-contiguous array (so ``"NT"`` is ``a @ w.T`` with ``w`` stored (N, K)). ``copies``
    defaults to :func:`rotation_copies` of one set's bytes; the copies hold the same values.
    """
    layout = layout.upper()
    if len(layout) != 2 or any(ch not in "NT" for ch in layout):
        raise ValueError(f"make_gemm_inputs: layout must be two of 'N'/'T' (e.g. 'NT'), got {layout!r}")
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    a_store = rng.standard_normal((k, m) if layout[0] == "T" else (m, k), dtype=np.float32).astype(dtype, copy=False)
    b_store = rng.standard_normal((n, k) if layout[1] == "T" else (k, n), dtype=np.float32).astype(dtype, copy=False)
    if copies is None:
        copies = rotation_copies(a_store.nbytes + b_store.nbytes)
    sets = []
    for i in range(max(1, int(copies))):
        a = a_store if i == 0 else a_store.copy()
        b = b_store if i == 0 else b_store.copy()
        sets.append((a.T if layout[0] == "T" else a, b.T if layout[1] == "T" else b))
    return sets


def _gemm_check(inputs: tuple) -> float:
    from ..ops import matmul

    a, b = inputs
    out = matmul(a, b)
    # A float64 reference on a sample of rows keeps the check cheap for n = 4096.
    rows = np.unique(np.linspace(0, a.shape[0] - 1, num=min(a.shape[0], 64)).astype(np.int64))
    ref = a[rows].astype(np.float64) @ b.astype(np.float64)
    denom = float(np.linalg.norm(ref)) or 1.0
    return float(np.linalg.norm(out[rows].astype(np.float64) - ref)) / denom


def _gemm_case(m: int, n: int, k: int, layout: str, name: str, group: str, label: str = "") -> Case:
    from ..ops import matmul

    torch = installed_torch()
    impls = {"deepkern": matmul, "numpy": np.matmul}
    if torch is not None:
        impls["torch"] = torch.matmul
    return Case(
        op="gemm",
        name=name,
        layout=layout,
        group=group,
        shape=(m, n, k),
        flops=2.0 * m * n * k,
        nbytes=4.0 * (m * k + k * n + m * n),
        make_inputs=lambda: make_gemm_inputs(m, n, k, layout),
        impls=impls,
        check=_gemm_check,
        label=label,
    )


def gemm_cases(quick: bool = False) -> List[Case]:
    """float32 square GEMMs in layouts NN, NT, TN, then the deep-learning shapes (NN)."""
    cases = []
    for size in GEMM_SQUARE_QUICK if quick else GEMM_SQUARE:
        group = GROUP_SQUARE_BIG if size >= 512 else GROUP_SQUARE_SMALL
        for layout in GEMM_LAYOUTS:
            cases.append(_gemm_case(size, size, size, layout, f"n={size}", group, "square"))
    for m, n, k, label in GEMM_DL_SHAPES_QUICK if quick else GEMM_DL_SHAPES:
        cases.append(_gemm_case(m, n, k, "NN", f"M={m} N={n} K={k}", GROUP_DL, label))
    return cases


register_suite(
    Suite(
        name="gemm",
        description="float32 matrix multiply: square NN/NT/TN and deep-learning shapes vs NumPy and PyTorch",
        cases=gemm_cases,
        summary_groups=(GROUP_SQUARE_BIG, GROUP_DL),
    )
)
