"""The ``dropout`` suite: float32 dropout forward (mask drawn by Philox4x32-10 in the kernel) and
backward (gradient times the saved mask) on 1M and 16M elements beside PyTorch's CPU dropout
(``torch.nn.functional.dropout``, Bernoulli draws, and ``native_dropout_backward``); reported in
GB/s of the arrays read and written."""

from __future__ import annotations

import math
from typing import List

import numpy as np

from .libraries import installed_torch, torch_missing
from .registry import Case, Suite, register_suite
from .timing import rotation_copies

DROPOUT_SIZES = ((1 << 20, "1M"), (1 << 24, "16M"))
DROPOUT_SIZES_QUICK = ((1 << 20, "1M"),)
P = 0.3
GROUP_DROP_FWD = "forward"
GROUP_DROP_BWD = "backward"
#: Elements the correctness check reads.
CHECK_ELEMENTS = 1 << 16


def _scaled(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) * np.where(mask, 1 / (1 - P), 0.0)


def _check_forward(inputs: tuple) -> float:
    """Relative error of y against x * mask / (1 - p) on the mask returned, plus 1 when the fraction
    kept is more than 5 binomial sigmas from 1 - p."""
    from ..ops import dropout

    x = inputs[0][:CHECK_ELEMENTS]
    y, mask = dropout(x, P, 1, 0)
    want = _scaled(x, mask)
    n, kept = mask.size, int(mask.sum())
    off = abs(kept - n * (1 - P)) > 5 * math.sqrt(n * P * (1 - P))
    return float(np.linalg.norm(y - want) / np.linalg.norm(want)) + float(off)


def _check_backward(inputs: tuple) -> float:
    from ..ops import dropout_backward

    g, mask = inputs[0][:CHECK_ELEMENTS], inputs[1][:CHECK_ELEMENTS]
    want = _scaled(g, mask)
    return float(np.linalg.norm(dropout_backward(g, mask, P) - want) / np.linalg.norm(want))


def _dropout_case(backward: bool, n: int, size_name: str) -> Case:
    from ..ops import dropout, dropout_backward

    def make_inputs():
        rng = np.random.default_rng(0)
        one = (rng.standard_normal(n, dtype=np.float32),)
        if backward:
            one += (rng.random(n) >= P,)
        nbytes = sum(a.nbytes for a in one)
        return [one] + [tuple(a.copy() for a in one) for _ in range(rotation_copies(nbytes) - 1)]

    if backward:
        impls = {"deepkern": lambda g, mask: dropout_backward(g, mask, P)}
    else:
        impls = {"deepkern": lambda x: dropout(x, P, 1, 0)}
    torch = installed_torch()
    if torch is not None:
        if backward:
            impls["torch"] = lambda g, mask: torch.ops.aten.native_dropout_backward(g, mask, 1 / (1 - P))
        else:
            impls["torch"] = lambda x: torch.nn.functional.dropout(x, P, training=True)
    return Case(
        op="dropout",
        name=f"n={size_name}",
        layout="backward" if backward else "forward",
        group=GROUP_DROP_BWD if backward else GROUP_DROP_FWD,
        shape=(n,),
        flops=0.0,
        nbytes=9.0 * n,  # 4 bytes in, 4 out and the 1-byte mask (written forward, read backward)
        make_inputs=make_inputs,
        impls=impls,
        check=_check_backward if backward else _check_forward,
        label="float32, x or grad read + result written + bool mask",
        metric="bytes",
    )


def dropout_cases(quick: bool = False) -> List[Case]:
    """dropout forward then backward, float32, p = 0.3, 1M and 16M elements."""
    sizes = DROPOUT_SIZES_QUICK if quick else DROPOUT_SIZES
    return [_dropout_case(backward, n, name) for backward in (False, True) for n, name in sizes]


register_suite(
    Suite(
        name="dropout",
        description="float32 dropout (p = 0.3) forward and backward on 1M and 16M elements vs PyTorch's CPU dropout; "
        "GB/s of bytes read + written",
        cases=dropout_cases,
        summary_groups=(GROUP_DROP_FWD, GROUP_DROP_BWD),
        unavailable=lambda: torch_missing("torch.nn.functional.dropout"),
        in_all=False,
    )
)
