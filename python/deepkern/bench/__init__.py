"""Timing, references and reports for ``deepkern bench`` and the pytest-benchmark suites in bench/.

Every kernel is timed beside the reference a user would otherwise call (NumPy/OpenBLAS always,
PyTorch when it is installed), on the same inputs and at the same thread count, and reported as
time, GFLOP/s (GB/s for memory-bound ops such as pooling), the throughput ratio to the reference and
the fraction of this machine's measured peak (an FMA-throughput loop and a memory-stream loop from
``deepkern._C``).

How the numbers are taken (and why):

* Each library runs in its own block: a short pause, one warm-up call, then the timed repeats,
  each timed alone with :func:`time.perf_counter`; the median is reported with the min and max
  (:mod:`.timing`). The pause matters on small machines: OpenBLAS's and OpenMP's worker threads
  keep spinning for ~0.1-0.2 s after a call and steal the cores from whichever library runs next.
* When one set of inputs would fit in cache (< ~64 MB), the timed calls rotate among several
  copies so every call reads its operands from memory, as in a real network.
* deepkern, NumPy's BLAS (through threadpoolctl) and PyTorch run at the same thread count
  (:mod:`.libraries`).
* Each line's libraries are timed in rounds of alternating order (:mod:`.runner`).

The modules: :mod:`.timing`, :mod:`.libraries`, :mod:`.peak` (the machine's ceilings),
:mod:`.machine` (the context of a result), :mod:`.registry` (cases and suites), :mod:`.runner`,
:mod:`.report` (table, geomeans, JSON), and one module per op family (:mod:`.gemm`, :mod:`.conv`,
:mod:`.pool`, :mod:`.norm`, :mod:`.lstm`, :mod:`.optim`, :mod:`.train`, :mod:`.activation`,
:mod:`.dropout`, :mod:`.softmax`, :mod:`.attention`, :mod:`.train_cuda` and :mod:`.infer` with the
models of :mod:`.models`) that registers its suite when imported:
``deepkern bench --op NAME`` runs one, and bench/test_suites.py times them all.
"""

from __future__ import annotations

# Each op family's module registers its suite when imported (in this order in the registry).
from . import (  # noqa: F401
    activation,
    attention,
    conv,
    dropout,
    gemm,
    infer,
    lstm,
    norm,
    optim,
    pool,
    softmax,
    train,
    train_cuda,
)
from .libraries import cuda_unavailable, limit_threads, threadpoolctl_available
from .peak import Peak, measure_peak
from .registry import SUITES, Case, Suite, get_suite, register_suite
from .report import Report, Row, format_peaks, format_summary, format_table, peaks_json, summarize, to_json
from .runner import ROUNDS, run_suite
from .timing import Timing, time_cuda_fn, time_fn

__all__ = [
    "SUITES",
    "Case",
    "Suite",
    "get_suite",
    "register_suite",
    "run_suite",
    "ROUNDS",
    "Peak",
    "measure_peak",
    "Timing",
    "time_fn",
    "time_cuda_fn",
    "limit_threads",
    "cuda_unavailable",
    "threadpoolctl_available",
    "Report",
    "Row",
    "format_peaks",
    "format_summary",
    "format_table",
    "peaks_json",
    "summarize",
    "to_json",
    "gemm",
    "conv",
    "pool",
    "lstm",
    "optim",
    "train",
]
