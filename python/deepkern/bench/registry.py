"""Benchmark cases and the suites that hold them: ``deepkern bench --op NAME`` runs the suite
registered under NAME, and bench/test_suites.py times every registered suite's cases.

Each op family has its own module in this package that builds its cases and registers its suite
with :func:`register_suite` when imported.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from .timing import Timing

#: Largest relative error of deepkern's result against the float64 reference (``Case.check``) that
#: passes; a larger one is noted in the report and fails the pytest-benchmark run.
CHECK_TOLERANCE = 1e-4
#: The same for bfloat16 cases (``Case.tolerance``): each result is rounded to bfloat16 at least
#: once (2^-9 relative), training runs many times.
BF16_CHECK_TOLERANCE = 1e-2


@dataclasses.dataclass
class Case:
    """One benchmark case: its inputs and, per backend name, the call to time."""

    op: str
    name: str  # e.g. "n=1024" or "M=64 N=4096 K=1024"
    layout: str  # e.g. "NN"
    group: str  # geomean summaries are taken per group
    shape: Tuple[int, ...]
    flops: float
    nbytes: float  # compulsory memory traffic, for the roofline
    make_inputs: Callable[[], List[tuple]]  # rotation sets of NumPy arrays
    impls: Dict[str, Callable]  # backend name -> fn(*converted inputs)
    check: Optional[Callable[[tuple], float]] = None  # relative error of deepkern vs reference
    tolerance: float = CHECK_TOLERANCE  # the largest `check` result that passes
    label: str = ""  # what the shape is (e.g. "ResNet conv1 im2col")
    #: "flops": throughput in GFLOP/s against the FMA peak and the roofline; "bf16_flops": the same
    #: against the bfloat16 GEMM's peak (peak.measure_bf16_peak); "bytes": memory-bound ops,
    #: throughput in GB/s (nbytes / time) against the measured stream bandwidth.
    metric: str = "flops"
    #: Where the case runs: "cpu", or "cuda" (inputs moved to the GPU once; each library's calls timed
    #: with CUDA events by :func:`timing.time_cuda_fn`).
    device: str = "cpu"
    #: Where the time goes (GPU cases): after the case is timed, phase -> library -> Timing of that
    #: phase inside the timed calls (e.g. a training step's forward, backward and optimizer step);
    #: each phase becomes one more row, layout and group the phase's name.
    phases: Optional[Callable[[], Dict[str, Dict[str, "Timing"]]]] = None
    #: The FLOP of each phase of one call, for its row's GFLOP/s (NaN for a phase not listed).
    phase_flops: Dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Suite:
    """A family of cases for ``deepkern bench --op NAME``."""

    name: str
    description: str
    cases: Callable[[bool], List[Case]]  # cases(quick)
    summary_groups: Sequence[str] = ()  # groups whose geomean is printed (all when empty)
    #: Why the suite cannot run here (e.g. its only reference is not installed), or None when it can.
    unavailable: Callable[[], Optional[str]] = lambda: None
    #: False for a suite too long for ``deepkern bench`` (``--op all``); it runs when named.
    in_all: bool = True


SUITES: Dict[str, Suite] = {}


def register_suite(suite: Suite) -> Suite:
    SUITES[suite.name] = suite
    return suite


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"unknown op {name!r}; available: {', '.join(sorted(SUITES))}")
    return SUITES[name]
