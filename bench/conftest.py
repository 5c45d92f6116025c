"""Shared set-up for the pytest-benchmark suites: equal thread counts, idle cores between libraries.

Run with ``pytest bench/ --benchmark-only`` (pyproject's testpaths is tests/, so bench/ runs only
when named). ``DEEPKERN_BENCH_THREADS`` sets the thread count of deepkern, NumPy's BLAS and PyTorch
(default: deepkern's default thread count).
"""

from __future__ import annotations

import itertools
import os
import time

import pytest

import deepkern
from deepkern import bench as dkb
from deepkern.bench.libraries import idle_pause_s


def _bench_threads() -> int:
    text = os.environ.get("DEEPKERN_BENCH_THREADS", "")
    return int(text) if text.strip() else deepkern.get_num_threads()


def pytest_report_header(config):
    threads = _bench_threads()
    lines = [f"deepkern bench: {threads} thread(s) for deepkern, NumPy and PyTorch"]
    if not dkb.threadpoolctl_available():
        lines.append("deepkern bench: threadpoolctl is not installed: NumPy runs at its default thread count")
    return lines


@pytest.fixture(scope="session")
def bench_threads():
    """The thread count every library runs at (set for the whole session)."""
    threads = _bench_threads()
    if not dkb.threadpoolctl_available() and threads != deepkern.get_num_threads():
        pytest.skip("threadpoolctl is not installed: only the default thread count compares fairly")
    with dkb.limit_threads(threads):
        yield threads


@pytest.fixture(autouse=True)
def _idle_cores(bench_threads):
    """Let the previous library's spinning worker threads go idle before the next benchmark."""
    time.sleep(idle_pause_s(bench_threads))
    yield


def run_rounds(benchmark, fn, sets, work: float, per_second_key: str) -> None:
    """Times fn over rotating input sets the way the CLI does: one call to measure, then about
    0.5 s of calls (3 to 100 rounds); records work / median time in extra_info[per_second_key]
    (work in GFLOP or GB gives GFLOP/s or GB/s)."""
    timing = dkb.time_fn(fn, sets, repeats=1, warmup=1)
    rounds = int(min(100, max(3, 0.5 / max(timing.median, 1e-7))))
    rotation = itertools.cycle(sets)
    benchmark.pedantic(fn, setup=lambda: (next(rotation), {}), rounds=rounds, iterations=1, warmup_rounds=1)
    stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
    median = stats.stats.median if stats is not None else 0.0
    if median > 0:
        benchmark.extra_info[per_second_key] = work / median


_LAST_INPUTS: dict = {}


def cached_inputs(key, make):
    """The rotation input sets for ``key`` (include the suite's name), made by ``make()`` on first
    use; only the last key's sets are kept, to bound memory."""
    if key not in _LAST_INPUTS:
        _LAST_INPUTS.clear()
        _LAST_INPUTS[key] = make()
    return _LAST_INPUTS[key]


def case_params(cases, libraries):
    """pytest params (case index, library) for every case of a suite and every library."""
    return [pytest.param(index, library, id=f"{case.name}-{case.layout}-{library}".replace(" ", "-"))
            for index, case in enumerate(cases) for library in libraries]
