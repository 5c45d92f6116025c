"""Shared set-up for the pytest-benchmark run of deepkern's suites: equal thread counts, idle cores
between libraries.

Run with ``pytest bench/ --benchmark-only`` (pyproject's testpaths is tests/, so bench/ runs only
when named). ``DEEPKERN_BENCH_THREADS`` sets the thread count of deepkern, NumPy's BLAS and PyTorch
(default: deepkern's default thread count).
"""

from __future__ import annotations

import os
import time

import deepkern
import pytest
from deepkern import bench
from deepkern.bench.libraries import idle_pause_s


def _bench_threads() -> int:
    text = os.environ.get("DEEPKERN_BENCH_THREADS", "")
    return int(text) if text.strip() else deepkern.get_num_threads()


def pytest_report_header(config):
    threads = _bench_threads()
    lines = [f"deepkern bench: {threads} thread(s) for deepkern, NumPy and PyTorch"]
    if not bench.threadpoolctl_available():
        lines.append("deepkern bench: threadpoolctl is not installed: NumPy runs at its default thread count")
    return lines


@pytest.fixture(scope="session")
def bench_threads():
    """The thread count every library runs at (set once for the whole run)."""
    threads = _bench_threads()
    if not bench.threadpoolctl_available() and threads != deepkern.get_num_threads():
        pytest.skip("threadpoolctl is not installed: only the default thread count compares fairly")
    with bench.limit_threads(threads):
        yield threads


@pytest.fixture(autouse=True)
def _idle_cores(bench_threads):
    """Let the previous library's spinning worker threads go idle before the next benchmark."""
    time.sleep(idle_pause_s(bench_threads))
    yield
