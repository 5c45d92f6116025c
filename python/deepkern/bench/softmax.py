"""The ``softmax`` and ``softmax-cuda`` suites: float32 softmax and log_softmax over the last axis of
(N, C) logits, and cross entropy with class indices (mean reduction), forward and forward +
backward, beside PyTorch, for N = 128..4096 and C = 10..32000; memory-bound, reported in GB/s of the
bytes each op must read and write."""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from .libraries import installed_torch, torch_missing
from .registry import Case, Suite, register_suite
from .timing import rotation_copies

#: (N, C): a classifier's logits (C = 10, 1000) and a language model's vocabulary (C = 32000).
SOFTMAX_SHAPES = ((4096, 10), (128, 1000), (4096, 1000), (128, 32000), (1024, 32000))
SOFTMAX_SHAPES_QUICK = ((4096, 10), (128, 1000), (128, 32000))
SOFTMAX_OPS = ("softmax", "log_softmax", "cross_entropy fwd", "cross_entropy fwd+bwd")
#: Bytes moved per logit: softmax reads and writes it; the loss reads it (forward) and, for the
#: backward, reads it again and writes its gradient.
BYTES_PER_LOGIT = {"softmax": 8, "log_softmax": 8, "cross_entropy fwd": 4, "cross_entropy fwd+bwd": 12}
#: Rows of each input set the correctness check compares with the float64 formulas.
CHECK_ROWS = 16


def _reference(op: str, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The op in float64 on the first CHECK_ROWS rows (fwd+bwd: the gradient of the mean loss)."""
    z = x[:CHECK_ROWS].astype(np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(z))
    if op == "softmax":
        return np.exp(logp)
    if op == "log_softmax":
        return logp
    if op == "cross_entropy fwd":
        return np.array(-logp[rows, t[:CHECK_ROWS]].mean())
    grad = np.exp(logp)
    grad[rows, t[:CHECK_ROWS]] -= 1
    return grad / len(z)


def _deepkern_fn(op: str):
    from .. import ops, tensor
    from ..nn import functional as F

    if op == "softmax":
        return lambda x, t: ops.softmax(x, 1)
    if op == "log_softmax":
        return lambda x, t: ops.log_softmax(x, 1)
    if op == "cross_entropy fwd":

        def forward(x, t):
            loss, stats = ops.cross_entropy(x, t)
            return loss.sum() / stats[:, 2].sum()

        return forward

    def forward_backward(x, t):
        logits = tensor(x, requires_grad=True)
        F.cross_entropy(logits, t).backward()
        return logits.grad._array

    return forward_backward


def _torch_fn(torch, op: str):
    if op == "softmax":
        return lambda x, t: torch.softmax(x, 1)
    if op == "log_softmax":
        return lambda x, t: torch.log_softmax(x, 1)
    if op == "cross_entropy fwd":
        return lambda x, t: torch.nn.functional.cross_entropy(x, t)

    def forward_backward(x, t):
        logits = x.detach().requires_grad_()
        torch.nn.functional.cross_entropy(logits, t).backward()
        return logits.grad

    return forward_backward


def _softmax_case(op: str, n: int, c: int, device: str) -> Case:
    def make_inputs():
        rng = np.random.default_rng(0)
        one = (rng.standard_normal((n, c), dtype=np.float32) * np.float32(3), rng.integers(0, c, n))
        copies = 1 if device == "cuda" else rotation_copies(one[0].nbytes)
        return [one] + [tuple(a.copy() for a in one) for _ in range(copies - 1)]

    deepkern_fn = _deepkern_fn(op)

    def check(inputs: tuple) -> float:
        from ..backends import to_device

        x, t = inputs
        args = (x[:CHECK_ROWS], t[:CHECK_ROWS])
        if device == "cuda":
            args = tuple(to_device(a, "cuda") for a in args)
        got = np.asarray(to_device(deepkern_fn(*args), "cpu"), np.float64)
        ref = _reference(op, x, t)
        return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))

    impls = {"deepkern": deepkern_fn}
    torch = installed_torch()
    if torch is not None:
        impls["torch"] = _torch_fn(torch, op)
    return Case(
        op="softmax",
        name=f"N={n} C={c}",
        layout=op,
        group=op,
        shape=(n, c),
        flops=0.0,
        nbytes=float(BYTES_PER_LOGIT[op] * n * c),
        make_inputs=make_inputs,
        impls=impls,
        check=check,
        label="float32 logits, rows along the last axis",
        metric="bytes",
        device=device,
    )


def softmax_cases(quick: bool = False, device: str = "cpu") -> List[Case]:
    """Each op over the shapes, float32."""
    shapes = SOFTMAX_SHAPES_QUICK if quick else SOFTMAX_SHAPES
    return [_softmax_case(op, n, c, device) for op in SOFTMAX_OPS for n, c in shapes]


def _cuda_unavailable() -> Optional[str]:
    from .. import cuda

    if not cuda.is_available():
        return f"it runs on a GPU, and deepkern has no usable one here: {cuda.unavailable_reason()}"
    return None


register_suite(
    Suite(
        name="softmax",
        description="float32 softmax, log_softmax and cross entropy (forward, forward + backward) over (N, C) "
        "logits vs PyTorch; GB/s of bytes read + written",
        cases=softmax_cases,
        summary_groups=SOFTMAX_OPS,
        unavailable=lambda: torch_missing("torch.softmax"),
        in_all=False,
    )
)
register_suite(
    Suite(
        name="softmax-cuda",
        description="the softmax suite on the GPU (compiled kernels, timed with CUDA events) vs PyTorch",
        cases=lambda quick=False: softmax_cases(quick, device="cuda"),
        summary_groups=SOFTMAX_OPS,
        unavailable=_cuda_unavailable,
        in_all=False,
    )
)
