"""Shared fixtures: kernel ISA, thread count and a seeded random generator per test."""

from __future__ import annotations

import os
import sys
import zlib

import numpy as np
import pytest

# tests/reference.py is imported as a top-level module by the test files.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import deepkern  # noqa: E402

# Lowest first: a CPU that supports one ISA supports every ISA before it.
ISA_ORDER = ("generic", "avx2", "avx512")


def supported_isas() -> list:
    best = deepkern._C.detected_isa()
    return list(ISA_ORDER[: ISA_ORDER.index(best) + 1])


SUPPORTED_ISAS = supported_isas()


@pytest.fixture(params=SUPPORTED_ISAS)
def isa(request):
    """Runs the test with each kernel ISA this CPU supports, restoring the active one after."""
    previous = deepkern._C.active_isa()
    deepkern._C.set_active_isa(request.param)
    assert deepkern._C.active_isa() == request.param
    try:
        yield request.param
    finally:
        deepkern._C.set_active_isa(previous)


@pytest.fixture(params=(1, 2))
def threads(request):
    """Runs the test with 1 and with 2 kernel threads, restoring the previous count after."""
    previous = deepkern.get_num_threads()
    deepkern.set_num_threads(request.param)
    assert deepkern.get_num_threads() == request.param
    try:
        yield request.param
    finally:
        deepkern.set_num_threads(previous)


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id: fixed for a test, different between tests."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
