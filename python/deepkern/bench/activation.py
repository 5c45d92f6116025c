"""The ``activation`` suite: float32 relu and gelu (exact and tanh), forward and backward, on 1M and
16M elements beside PyTorch; memory-bound at large sizes, reported in GB/s."""

from __future__ import annotations

import math
from typing import List

import numpy as np

from .libraries import installed_torch, torch_missing
from .registry import Case, Suite, register_suite
from .timing import rotation_copies

#: (elements, name): 1M fits in the last-level cache of most machines (bound by arithmetic for gelu),
#: 16M does not (bound by memory bandwidth).
ACTIVATION_SIZES = ((1 << 20, "1M"), (1 << 24, "16M"))
ACTIVATION_SIZES_QUICK = ((1 << 20, "1M"),)
#: op -> (is backward, gelu's approximate or None for relu)
ACTIVATION_OPS = {
    "relu": (False, None),
    "gelu": (False, "none"),
    "gelu tanh": (False, "tanh"),
    "relu bwd": (True, None),
    "gelu bwd": (True, "none"),
    "gelu tanh bwd": (True, "tanh"),
}
GROUP_ACT_FWD = "forward"
GROUP_ACT_BWD = "backward"
#: Elements of each rotation set that the correctness check compares with the float64 formulas.
CHECK_ELEMENTS = 4096

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _reference(op: str, inputs: tuple) -> np.ndarray:
    """The op in float64 by its definition (PyTorch's), on the first CHECK_ELEMENTS elements."""
    backward, approximate = ACTIVATION_OPS[op]
    x = inputs[-1][:CHECK_ELEMENTS].astype(np.float64)
    if approximate is None:
        result = (x > 0).astype(np.float64) if backward else np.maximum(x, 0.0)
    elif approximate == "none":
        cdf = 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))
        result = cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi) if backward else x * cdf
    else:
        t = np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))
        if backward:
            result = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * math.sqrt(2.0 / math.pi) * (1.0 + 3 * 0.044715 * x * x)
        else:
            result = 0.5 * x * (1.0 + t)
    return result * inputs[0][:CHECK_ELEMENTS] if backward else result


def _deepkern_fn(op: str):
    from ..ops import gelu, gelu_backward, relu, relu_backward

    backward, approximate = ACTIVATION_OPS[op]
    if approximate is None:
        return relu_backward if backward else relu
    if backward:
        return lambda g, x: gelu_backward(g, x, approximate=approximate)
    return lambda x: gelu(x, approximate=approximate)


def _torch_fn(torch, op: str):
    backward, approximate = ACTIVATION_OPS[op]
    if approximate is None:
        return (lambda g, x: torch.ops.aten.threshold_backward(g, x, 0)) if backward else torch.relu
    if backward:
        return lambda g, x: torch.ops.aten.gelu_backward(g, x, approximate=approximate)
    return lambda x: torch.nn.functional.gelu(x, approximate=approximate)


def _activation_case(op: str, n: int, size_name: str) -> Case:
    backward, _ = ACTIVATION_OPS[op]
    arrays = 2 if backward else 1  # inputs: (grad, x) or (x,)

    def make_inputs():
        rng = np.random.default_rng(0)
        one = tuple(rng.standard_normal(n, dtype=np.float32) * np.float32(3) for _ in range(arrays))
        return [one] + [tuple(a.copy() for a in one) for _ in range(rotation_copies(one[0].nbytes * arrays) - 1)]

    deepkern_fn = _deepkern_fn(op)

    def check(inputs: tuple) -> float:
        ref = _reference(op, inputs)
        got = deepkern_fn(*(a[:CHECK_ELEMENTS] for a in inputs))
        return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))

    impls = {"deepkern": deepkern_fn}
    torch = installed_torch()
    if torch is not None:
        impls["torch"] = _torch_fn(torch, op)
    return Case(
        op="activation",
        name=f"n={size_name}",
        layout=op,
        group=GROUP_ACT_BWD if backward else GROUP_ACT_FWD,
        shape=(n,),
        flops=0.0,
        nbytes=4.0 * n * (arrays + 1),
        make_inputs=make_inputs,
        impls=impls,
        check=check,
        label="float32, inputs read + output written",
        metric="bytes",
    )


def activation_cases(quick: bool = False) -> List[Case]:
    """relu and gelu (exact, tanh) forward then backward, float32, 1M and 16M elements."""
    sizes = ACTIVATION_SIZES_QUICK if quick else ACTIVATION_SIZES
    return [_activation_case(op, n, name) for op in ACTIVATION_OPS for n, name in sizes]


register_suite(
    Suite(
        name="activation",
        description="float32 relu and gelu (exact and tanh), forward and backward, on 1M and 16M elements vs PyTorch; "
        "GB/s of bytes read + written",
        cases=activation_cases,
        summary_groups=(GROUP_ACT_FWD, GROUP_ACT_BWD),
        unavailable=lambda: torch_missing("torch.nn.functional.gelu"),
        in_all=False,
    )
)
