"""Every suite registered in deepkern.bench (``deepkern bench --op NAME``) under pytest-benchmark: one
benchmark per case and library, the libraries of a case side by side in one group, all at the same
thread count. A new suite needs no new file here: registering it adds its cases.

Before deepkern is timed on a case, its result is compared with the case's float64 reference
(``Case.check``, as ``deepkern bench`` does). ``extra_info`` holds GFLOP/s (``gflops``) for
compute-bound cases and GB/s of bytes read + written (``gbps``) for memory-bound ones.
``DEEPKERN_BENCH_QUICK=1`` takes the suites' ``--quick`` cases (smaller batches and sizes).

    pytest bench/ --benchmark-only -k gemm
    pytest bench/ --benchmark-only -k "gemm and n256"
    pytest bench/ --benchmark-only -k "lstm and B1-" --benchmark-group-by=group
    DEEPKERN_BENCH_QUICK=1 pytest bench/ --benchmark-only -k conv
"""

from __future__ import annotations

import itertools
import os

import pytest
from deepkern import bench
from deepkern.bench.libraries import backends, get_backend

QUICK = bool(os.environ.get("DEEPKERN_BENCH_QUICK", "").strip())


def _case_id(case, library: str) -> str:
    """e.g. ``gemm-n256-NN-deepkern`` or ``lstm-T100-B1-I128-H128-fwd+bwd-torch``."""
    return f"{case.op} {case.name} {case.layout} {library}".replace("=", "").replace(" ", "-")


def _params() -> list:
    """(case, library) for every case of every registered suite and every library it is timed on,
    case by case (so each case's inputs are made once); a suite that cannot run here is skipped."""
    libraries = [backend.name for backend in backends()]
    params = []
    for suite in bench.SUITES.values():
        reason = suite.unavailable()
        if reason:
            params.append(
                pytest.param(
                    None, None, id=f"{suite.name}-unavailable", marks=pytest.mark.skip(reason=f"{suite.name}: {reason}")
                )
            )
            continue
        params += [
            pytest.param(case, library, id=_case_id(case, library), marks=_device_marks(case))
            for case in suite.cases(QUICK)
            for library in libraries
            if library in case.impls
        ]
    return params


def _device_marks(case) -> list:
    """GPU cases are timed with CUDA events by ``deepkern bench --device cuda``, not here."""
    if case.device == "cpu":
        return []
    return [pytest.mark.skip(reason=f"a {case.device} case: run it with deepkern bench --device {case.device}")]


_LAST_INPUTS: dict = {}


def _inputs(case) -> list:
    """The case's rotation input sets (NumPy), made on first use; only the last case's are kept,
    to bound memory."""
    key = (case.op, case.name, case.layout)
    if key not in _LAST_INPUTS:
        _LAST_INPUTS.clear()
        _LAST_INPUTS[key] = case.make_inputs()
    return _LAST_INPUTS[key]


def _run_rounds(benchmark, fn, sets, work: float, per_second_key: str) -> None:
    """Times fn over rotating input sets the way the CLI does: one call to measure, then about
    0.5 s of calls (3 to 100 rounds); records work / median time in extra_info[per_second_key]
    (work in GFLOP or GB gives GFLOP/s or GB/s)."""
    timing = bench.time_fn(fn, sets, repeats=1, warmup=1)
    rounds = int(min(100, max(3, 0.5 / max(timing.median, 1e-7))))
    rotation = itertools.cycle(sets)
    benchmark.pedantic(fn, setup=lambda: (next(rotation), {}), rounds=rounds, iterations=1, warmup_rounds=1)
    stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
    median = stats.stats.median if stats is not None else 0.0
    if median > 0:
        benchmark.extra_info[per_second_key] = work / median


@pytest.mark.parametrize("case,library", _params())
def test_suite(benchmark, bench_threads, case, library):
    sets = _inputs(case)
    if library == "deepkern" and case.check is not None:
        err = case.check(sets[0])
        assert err < case.tolerance, f"deepkern {case.op} {case.name} {case.layout}: relative error {err:.2e}"
    convert = get_backend(library).convert
    sets = [tuple(convert(a) for a in s) for s in sets]
    by_bytes = case.metric == "bytes"
    work = case.nbytes if by_bytes else case.flops
    benchmark.group = f"{case.op} {case.name} {case.layout} threads={bench_threads}"
    benchmark.extra_info.update(
        {
            "library": library,
            "threads": bench_threads,
            "bytes" if by_bytes else "flops": work,
            "copies": len(sets),
            "label": case.label,
        }
    )
    _run_rounds(benchmark, case.impls[library], sets, work / 1e9, "gbps" if by_bytes else "gflops")
