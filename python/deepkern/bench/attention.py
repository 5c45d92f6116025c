"""The ``attention`` and ``attention-cuda`` suites: float32 scaled dot-product attention (B, H, L, E)
with S = L and Ev = E, causal and not, forward and forward + backward, beside PyTorch's
``torch.nn.functional.scaled_dot_product_attention`` (on the CPU at the same thread count; on the
GPU, timed with CUDA events); GFLOP/s of the products (forward 4 B H L S E, forward + backward 14 B
H L S E counting the backward's recomputed scores; causal half of each)."""

from __future__ import annotations

from typing import List

import numpy as np

from .libraries import cuda_unavailable, installed_torch, torch_missing
from .registry import Case, Suite, register_suite
from .timing import rotation_copies

#: (B, H, L, E): from many short sequences to one long one, E = 64 as in most language models.
ATTENTION_SHAPES = ((8, 8, 128, 64), (4, 8, 512, 64), (2, 8, 1024, 64), (1, 8, 2048, 64))
ATTENTION_SHAPES_QUICK = ((8, 8, 128, 64), (2, 8, 1024, 64))
ATTENTION_OPS = ("fwd", "fwd+bwd")
#: Products per score and feature: the forward's Q K^T and P V; the backward's recomputed Q K^T,
#: dO V^T, dS K, dS^T Q and P^T dO.
FLOPS_PER_SCORE_FEATURE = {"fwd": 4, "fwd+bwd": 14}
#: (batch, head) problems the correctness check compares with the float64 formulas.
CHECK_PROBLEMS = 1


def _reference(op: str, q: np.ndarray, k: np.ndarray, v: np.ndarray, g: np.ndarray, causal: bool) -> np.ndarray:
    """The first problem's output (fwd) or query gradient (fwd+bwd) in float64."""
    q, k, v, g = (a[0, 0].astype(np.float64) for a in (q, k, v, g))
    x = q @ k.T / np.sqrt(q.shape[-1])
    if causal:
        x = np.where(np.tril(np.ones(x.shape, bool)), x, -np.inf)
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    if op == "fwd":
        return p @ v
    dp = g @ v.T
    ds = p * (dp - (p * dp).sum(axis=1, keepdims=True))
    return ds @ k / np.sqrt(q.shape[-1])


def _deepkern_fn(op: str, causal: bool):
    from .. import tensor
    from ..nn import functional as F

    if op == "fwd":
        return lambda q, k, v, g: F.scaled_dot_product_attention(q, k, v, is_causal=causal)._array

    def forward_backward(q, k, v, g):
        tq, tk, tv = (tensor(a, requires_grad=True) for a in (q, k, v))
        F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal).backward(tensor(g))
        return tq.grad._array

    return forward_backward


def _torch_fn(torch, op: str, causal: bool):
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if op == "fwd":
        return lambda q, k, v, g: sdpa(q, k, v, is_causal=causal)

    def forward_backward(q, k, v, g):
        tq, tk, tv = (a.detach().requires_grad_() for a in (q, k, v))
        sdpa(tq, tk, tv, is_causal=causal).backward(g)
        return tq.grad

    return forward_backward


def _attention_case(op: str, shape: tuple, causal: bool, device: str = "cpu") -> Case:
    b, h, n_q, e = shape

    def make_inputs():
        rng = np.random.default_rng(0)
        one = tuple(rng.standard_normal((b, h, n_q, e), dtype=np.float32) for _ in range(4))
        copies = 1 if device == "cuda" else rotation_copies(sum(a.nbytes for a in one))
        return [one] + [tuple(a.copy() for a in one) for _ in range(copies - 1)]

    deepkern_fn = _deepkern_fn(op, causal)

    def check(inputs: tuple) -> float:
        from ..backends import to_device

        first = tuple(to_device(np.ascontiguousarray(a[:1, :1]), device) for a in inputs)
        got = np.asarray(to_device(deepkern_fn(*first), "cpu")[0, 0], np.float64)
        ref = _reference(op, *inputs, causal)
        return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))

    impls = {"deepkern": deepkern_fn}
    torch = installed_torch()
    if torch is not None:
        impls["torch"] = _torch_fn(torch, op, causal)
    share = 0.5 if causal else 1.0
    mask = "causal" if causal else "full"
    return Case(
        op="attention",
        name=f"B={b} H={h} L={n_q} E={e}",
        layout=f"{op} {mask}",
        group=f"{op} {mask}",
        shape=shape,
        flops=FLOPS_PER_SCORE_FEATURE[op] * b * h * n_q * n_q * e * share,
        nbytes=float(4 * b * h * n_q * e * (4 if op == "fwd" else 8)),
        make_inputs=make_inputs,
        impls=impls,
        check=check,
        label="float32 (B, H, L, E), S = L, Ev = E",
        device=device,
    )


def attention_cases(quick: bool = False, device: str = "cpu") -> List[Case]:
    """Forward and forward + backward, full and causal, over the shapes; float32."""
    shapes = ATTENTION_SHAPES_QUICK if quick else ATTENTION_SHAPES
    return [_attention_case(op, s, causal, device) for op in ATTENTION_OPS for causal in (False, True) for s in shapes]


register_suite(
    Suite(
        name="attention",
        description="float32 scaled dot-product attention (B, H, L, E = 64), causal and not, forward and "
        "forward + backward vs PyTorch's CPU scaled_dot_product_attention; GFLOP/s",
        cases=attention_cases,
        summary_groups=tuple(f"{op} {m}" for op in ATTENTION_OPS for m in ("full", "causal")),
        unavailable=lambda: torch_missing("torch.nn.functional.scaled_dot_product_attention"),
        in_all=False,
    )
)
register_suite(
    Suite(
        name="attention-cuda",
        description="the attention suite on the GPU (compiled kernels, timed with CUDA events) vs PyTorch",
        cases=lambda quick=False: attention_cases(quick, device="cuda"),
        summary_groups=tuple(f"{op} {m}" for op in ATTENTION_OPS for m in ("full", "causal")),
        unavailable=cuda_unavailable,
        in_all=False,
    )
)
