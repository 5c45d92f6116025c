"""The ``gemm`` suite: float32 matrix multiply, square in layouts NN/NT/TN and the shapes deep-learning
layers run, ``deepkern.ops.matmul`` beside NumPy (``np.matmul``) and PyTorch (``torch.matmul``)."""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from .libraries import installed_torch
from .registry import BF16_CHECK_TOLERANCE, Case, Suite, register_suite
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
#: (M, N, K, what it is) of linear layers at small batches as they multiply: x @ W.T, W stored (N, K)
#: (the float32 suite only, layout NT).
GEMM_LINEAR_SHAPES = (
    (4, 4096, 4096, "linear x @ W.T, batch 4"),
    (32, 4096, 1024, "linear x @ W.T, batch 32"),
)
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
    """float32 square GEMMs in layouts NN, NT, TN, then the deep-learning shapes (NN) and, but with
    ``quick``, the small-batch linear layers (NT)."""
    cases = []
    for size in GEMM_SQUARE_QUICK if quick else GEMM_SQUARE:
        group = GROUP_SQUARE_BIG if size >= 512 else GROUP_SQUARE_SMALL
        for layout in GEMM_LAYOUTS:
            cases.append(_gemm_case(size, size, size, layout, f"n={size}", group, "square"))
    for m, n, k, label in GEMM_DL_SHAPES_QUICK if quick else GEMM_DL_SHAPES:
        cases.append(_gemm_case(m, n, k, "NN", f"M={m} N={n} K={k}", GROUP_DL, label))
    for m, n, k, label in () if quick else GEMM_LINEAR_SHAPES:
        cases.append(_gemm_case(m, n, k, "NT", f"M={m} N={n} K={k}", GROUP_DL, label))
    return cases


register_suite(
    Suite(
        name="gemm",
        description="float32 matrix multiply: square NN/NT/TN and deep-learning shapes vs NumPy and PyTorch",
        cases=gemm_cases,
        summary_groups=(GROUP_SQUARE_BIG, GROUP_DL),
    )
)


# ---- the GPU suite ---------------------------------------------------------------------------------

GEMM_CUDA_SQUARE = {"fp32": (2048, 4096, 8192), "tf32": (4096, 8192), "bf16": (4096, 8192)}
GEMM_CUDA_SQUARE_QUICK = {"fp32": (2048,), "tf32": (4096,), "bf16": (4096,)}
GEMM_CUDA_PRECISIONS = ("fp32", "tf32", "bf16")


def _cuda_unavailable() -> Optional[str]:
    """Why the GPU suite cannot run here, or None."""
    from .. import cuda

    if not cuda.is_available():
        return f"it runs on a GPU, and deepkern has no usable one here: {cuda.unavailable_reason()}"
    return None


def _tf32_inputs(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to TF32 as the tensor cores take them (10 mantissa bits, ties away)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


def _cuda_check(precision: str):
    """The relative error of deepkern's GPU result against the float64 product of the same inputs
    rounded as the precision rounds them (TF32 inputs; a bfloat16 result), on a sample of rows: so
    the check measures the kernel, not the precision's own rounding."""

    def check(inputs: tuple) -> float:
        import ml_dtypes

        from ..backends import cuda as cuda_backend
        from ..backends import to_device
        from ..ops import matmul

        a, b = inputs
        if precision == "bf16":
            a, b = a.view(ml_dtypes.bfloat16), b.view(ml_dtypes.bfloat16)
        cuda_backend.matmul.allow_tf32 = precision == "tf32"
        try:
            out = to_device(matmul(to_device(a, "cuda"), to_device(b, "cuda")), "cpu").astype(np.float64)
        finally:
            cuda_backend.matmul.allow_tf32 = False
        rows = np.unique(np.linspace(0, a.shape[0] - 1, num=min(a.shape[0], 64)).astype(np.int64))
        a64, b64 = (_tf32_inputs(x) if precision == "tf32" else x.astype(np.float32) for x in (a[rows], b))
        ref = a64.astype(np.float64) @ b64.astype(np.float64)
        if precision == "bf16":
            ref = ref.astype(np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)
        return float(np.linalg.norm(out[rows] - ref)) / (float(np.linalg.norm(ref)) or 1.0)

    return check


def _cuda_impls(precision: str) -> dict:
    """deepkern.ops.matmul and torch.matmul on the GPU with the precision set alike: allow_tf32 for
    both libraries (each call sets it, a host-side assignment), bfloat16 views for BF16."""
    import ml_dtypes

    from ..backends import cuda as cuda_backend
    from ..ops import matmul

    tf32, bf16 = precision == "tf32", precision == "bf16"

    def deepkern_matmul(a, b):
        cuda_backend.matmul.allow_tf32 = tf32
        if bf16:  # the inputs are bfloat16's bits as uint16 (see _gemm_cuda_case)
            a, b = a.view(ml_dtypes.bfloat16), b.view(ml_dtypes.bfloat16)
        return matmul(a, b)

    impls = {"deepkern": deepkern_matmul}
    torch = installed_torch()
    if torch is not None:

        def torch_matmul(a, b):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            if bf16:
                a, b = a.view(torch.bfloat16), b.view(torch.bfloat16)
            return torch.matmul(a, b)

        impls["torch"] = torch_matmul
    return impls


def _gemm_cuda_case(m: int, n: int, k: int, precision: str, name: str, group: str, label: str = "") -> Case:
    itemsize = 2 if precision == "bf16" else 4

    def make_inputs():
        # One set: the GPU's caches hold none of these operands whole. BF16 inputs travel as their
        # bits in uint16 (PyTorch cannot take NumPy's bfloat16), viewed as bfloat16 in each call.
        sets = make_gemm_inputs(m, n, k, "NN", copies=1)
        if precision != "bf16":
            return sets
        import ml_dtypes

        return [tuple(x.astype(ml_dtypes.bfloat16).view(np.uint16) for x in s) for s in sets]

    return Case(
        op="gemm",
        name=name,
        layout=f"NN {precision}",
        group=group,
        shape=(m, n, k),
        flops=2.0 * m * n * k,
        nbytes=float(itemsize) * (m * k + k * n + m * n),
        make_inputs=make_inputs,
        impls=_cuda_impls(precision),
        check=_cuda_check(precision),
        label=label,
        device="cuda",
    )


def gemm_cuda_cases(quick: bool = False) -> List[Case]:
    """Per precision (FP32, TF32, BF16): square GEMMs, then the deep-learning shapes, all NN."""
    cases = []
    squares = GEMM_CUDA_SQUARE_QUICK if quick else GEMM_CUDA_SQUARE
    for precision in GEMM_CUDA_PRECISIONS:
        for size in squares[precision]:
            cases.append(_gemm_cuda_case(size, size, size, precision, f"n={size}", f"square {precision}", "square"))
        for m, n, k, label in GEMM_DL_SHAPES_QUICK if quick else GEMM_DL_SHAPES:
            cases.append(_gemm_cuda_case(m, n, k, precision, f"M={m} N={n} K={k}", f"DL shapes {precision}", label))
    return cases


register_suite(
    Suite(
        name="gemm-cuda",
        description="matrix multiply on the GPU in FP32, TF32 and BF16: square and deep-learning shapes vs PyTorch",
        cases=gemm_cuda_cases,
        summary_groups=tuple(f"{g} {p}" for p in GEMM_CUDA_PRECISIONS for g in ("square", "DL shapes")),
        unavailable=_cuda_unavailable,
    )
)


# ---- the bfloat16 suite (CPU) ----------------------------------------------------------------------

GEMM_BF16_SQUARE = (1024, 2048, 4096)
GEMM_BF16_SQUARE_QUICK = (256,)


def _bf16_bits(sets: list) -> list:
    """The rotation sets as bfloat16 bits in uint16 (PyTorch cannot take NumPy's bfloat16; each call
    views them as bfloat16)."""
    import ml_dtypes

    return [tuple(x.astype(ml_dtypes.bfloat16).view(np.uint16) for x in s) for s in sets]


def _bf16_check(inputs: tuple) -> float:
    """deepkern's relative error against the float64 product of the bfloat16 inputs rounded to
    bfloat16 once (the best a bfloat16 result can be), on a sample of rows."""
    import ml_dtypes

    from ..ops import matmul

    a, b = (x.view(ml_dtypes.bfloat16) for x in inputs)
    out = matmul(a, b).astype(np.float64)
    rows = np.unique(np.linspace(0, a.shape[0] - 1, num=min(a.shape[0], 64)).astype(np.int64))
    ref = a[rows].astype(np.float64) @ b.astype(np.float64)
    ref = ref.astype(np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)
    return float(np.linalg.norm(out[rows] - ref)) / (float(np.linalg.norm(ref)) or 1.0)


def _bf16_impls() -> dict:
    """deepkern.ops.matmul and torch.matmul on bfloat16 views of the same bits."""
    import ml_dtypes

    from ..ops import matmul

    impls = {"deepkern": lambda a, b: matmul(a.view(ml_dtypes.bfloat16), b.view(ml_dtypes.bfloat16))}
    torch = installed_torch()
    if torch is not None:
        impls["torch"] = lambda a, b: torch.matmul(a.view(torch.bfloat16), b.view(torch.bfloat16))
    return impls


def _gemm_bf16_pair(m: int, n: int, k: int, name: str, group: str, label: str = "") -> List[Case]:
    """The bfloat16 case (layout "NN bf16") and, beside it, the same shape in float32 ("NN f32",
    deepkern's and PyTorch's float32 GEMMs), so each row's GFLOP/s compares the two precisions."""
    bf16 = Case(
        op="gemm-bf16",
        name=name,
        layout="NN bf16",
        group=f"{group} bf16",
        shape=(m, n, k),
        flops=2.0 * m * n * k,
        nbytes=2.0 * (m * k + k * n + m * n),
        make_inputs=lambda: _bf16_bits(make_gemm_inputs(m, n, k, "NN")),
        impls=_bf16_impls(),
        check=_bf16_check,
        tolerance=BF16_CHECK_TOLERANCE,
        label=label,
        metric="bf16_flops",
    )
    f32 = _gemm_case(m, n, k, "NN", name, f"{group} f32", label)
    f32.op, f32.layout = "gemm-bf16", "NN f32"
    f32.impls = {name: fn for name, fn in f32.impls.items() if name != "numpy"}
    return [bf16, f32]


def gemm_bf16_cases(quick: bool = False) -> List[Case]:
    """bfloat16 square GEMMs and the deep-learning shapes, each beside its float32 twin."""
    cases = []
    for size in GEMM_BF16_SQUARE_QUICK if quick else GEMM_BF16_SQUARE:
        cases += _gemm_bf16_pair(size, size, size, f"n={size}", "square", "square")
    for m, n, k, label in GEMM_DL_SHAPES_QUICK if quick else GEMM_DL_SHAPES:
        cases += _gemm_bf16_pair(m, n, k, f"M={m} N={n} K={k}", GROUP_DL, label)
    return cases


register_suite(
    Suite(
        name="gemm-bf16",
        description="bfloat16 matrix multiply (float32 accumulation) vs PyTorch's bfloat16 matmul, beside the "
        "float32 GEMMs of the same shapes; the bfloat16 rows' % of peak is of the bfloat16 peak (TDPBF16PS "
        "on AMX, VDPBF16PS on AVX512-BF16)",
        cases=gemm_bf16_cases,
        summary_groups=("square bf16", "square f32", f"{GROUP_DL} bf16", f"{GROUP_DL} f32"),
        in_all=False,
    )
)
