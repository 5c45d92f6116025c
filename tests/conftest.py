"""Shared fixtures: device, kernel ISA, thread count and a seeded random generator per test; the
helpers that put a test's NumPy arrays on a device and bring results back."""

from __future__ import annotations

import os
import sys
import zlib

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

# tests/reference.py is imported as a top-level module by the test files.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import deepkern  # noqa: E402

# The float64 references call NumPy's BLAS on small matrices thousands of times; with a thread per
# core (spinning between calls) it spent twice the CPU time of one thread and took the cores from
# the kernels under test and from other jobs (the conv, GEMM and LSTM tests: 32 -> 24 s, CPU time
# 57 -> 31 s). The session runs it on one thread; deepkern's thread counts are the tests' own
# (the `threads` fixture), and the benchmarks set NumPy's themselves.
_BLAS_ON_ONE_THREAD = threadpool_limits(limits=1, user_api="blas")

# Lowest first: a CPU that supports one ISA supports every ISA before it.
ISA_ORDER = ("generic", "avx2", "avx512", "amx")


def supported_isas() -> list:
    best = deepkern._C.detected_isa()
    return list(ISA_ORDER[: ISA_ORDER.index(best) + 1])


SUPPORTED_ISAS = supported_isas()


def tested_isas() -> list:
    """The kernel ISAs that the tests looping over ISAs (the `isa` fixture, `for isa in TESTED_ISAS`)
    run: every ISA this CPU supports, or only the one DEEPKERN_ISA forces, so that a run with it set
    tests the suite at that level (a run without it covers every level)."""
    forced = os.environ.get("DEEPKERN_ISA")
    return [forced] if forced in SUPPORTED_ISAS else SUPPORTED_ISAS


TESTED_ISAS = tested_isas()


def usable_devices() -> list:
    """'cpu'; 'cuda' when deepkern has a CUDA backend and a GPU it can use; 'fake' (tests/fake_device.py,
    registered here) when the environment sets DEEPKERN_TEST_FAKE_DEVICE=1."""
    devices = ["cpu"]
    if "cuda" in deepkern.backends.names() and deepkern.cuda.is_available():
        devices.append("cuda")
    if os.environ.get("DEEPKERN_TEST_FAKE_DEVICE") == "1":
        from fake_device import FakeBackend

        deepkern.backends.register(FakeBackend())
        devices.append("fake")
    return devices


DEVICES = usable_devices()


@pytest.fixture(params=[pytest.param(d, marks=pytest.mark.cuda) if d == "cuda" else d for d in DEVICES])
def device(request):
    """Runs the test on each device of :func:`usable_devices`: 'cpu' always, 'cuda' with a CUDA
    backend and a GPU (the cuda cases are not generated without one), 'fake' on request."""
    return request.param


def on_device(device, *arrays):
    """The NumPy ``arrays`` (None stays None) on ``device``: the arrays themselves on the CPU, copies
    elsewhere. One array gives one result, several a tuple."""
    moved = tuple(None if a is None else deepkern.backends.to_device(a, device) for a in arrays)
    return moved[0] if len(moved) == 1 else moved


def ones_on(device, shape, dtype=np.float64):
    """``np.ones(shape, dtype)`` on ``device``."""
    return on_device(device, np.ones(shape, dtype))


def to_host(result):
    """``result`` (an array on any device) as a NumPy array: itself on the CPU, a copy from elsewhere;
    anything that is not an array (None, numbers, lists) unchanged."""
    return result if result is None else deepkern.backends.to_device(result, "cpu")


@pytest.fixture(params=TESTED_ISAS)
def isa(request):
    """Runs the test with each kernel ISA of TESTED_ISAS, restoring the active one after."""
    previous = deepkern._C.active_isa()
    deepkern._C.set_active_isa(request.param)
    assert deepkern._C.active_isa() == request.param
    try:
        yield request.param
    finally:
        deepkern._C.set_active_isa(previous)


# The kernel thread counts of the `threads` fixture: 1 and 2, or those DEEPKERN_TEST_THREADS lists
# ("2": the sanitized CI run, whose budget holds one count; the other runs have both).
TEST_THREADS = tuple(int(count) for count in os.environ.get("DEEPKERN_TEST_THREADS", "1,2").split(","))


@pytest.fixture(params=TEST_THREADS)
def threads(request):
    """Runs the test with each kernel thread count of TEST_THREADS, restoring the previous count after."""
    previous = deepkern.get_num_threads()
    deepkern.set_num_threads(request.param)
    assert deepkern.get_num_threads() == request.param
    try:
        yield request.param
    finally:
        deepkern.set_num_threads(previous)


def _id_without_device(node) -> str:
    """The test's id with its device parameter left out."""
    callspec = getattr(node, "callspec", None)
    if callspec is None or "device" not in callspec.params:
        return node.nodeid
    params, device = f"[{callspec.id}]", str(callspec.params["device"])
    rest = params[1:-1].split("-")
    rest.remove(device)
    return node.nodeid.replace(params, f"[{'-'.join(rest)}]" if rest else "")


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id without its device: fixed for a test, the same on every
    device, different between tests."""
    return np.random.default_rng(zlib.crc32(_id_without_device(request.node).encode()))
