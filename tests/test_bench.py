"""The machine's ceilings behind ``deepkern bench``: the FMA peak follows the one ISA dispatch, and
the memory stream bandwidth is a positive, finite rate."""

import math

import deepkern
import numpy as np
import pytest
from deepkern import bench

from conftest import SUPPORTED_ISAS

_C = deepkern._C


def test_fma_peak_runs_on_the_forced_isa(isa):
    _C.reset_isa_records()
    gflops = _C.measure_fma_gflops(isa, 1, 0.005)
    assert math.isfinite(gflops) and gflops > 0
    assert _C.last_isa("roofline") == isa


def test_fma_peak_measures_only_the_active_isa(isa):
    for other in SUPPORTED_ISAS:
        if other != isa:
            with pytest.raises(ValueError, match="active ISA"):
                _C.measure_fma_gflops(other, 1, 0.005)


@pytest.mark.parametrize("threads", [1, 2])
def test_stream_bandwidth_is_positive_and_finite(isa, threads):
    _C.reset_isa_records()
    gbps = _C.measure_copy_gbps(4 << 20, threads, 3)
    assert math.isfinite(gbps) and gbps > 0
    assert _C.last_isa("roofline") == isa


def test_peak_line_says_how_the_stream_is_measured():
    peak = bench.Peak(threads=2, isa="avx2", fma_gflops=100.0, stream_gbps=40.0, stream_bytes=128 << 20)
    text = bench.format_peaks({2: peak})
    assert "stream 40.0 GB/s (2 x 128 MB)" in text
    assert "12 bytes read + written per element" in text
    assert bench.format_peaks({}) == ""
    assert peak.roofline_gflops(flops=1e9, nbytes=1e9) == 40.0  # intensity 1 FLOP/byte x 40 GB/s
    assert peak.roofline_gflops(flops=1e12, nbytes=1.0) == 100.0


def test_gpu_cases_are_timed_on_moved_inputs_beside_a_copy(monkeypatch):
    """run_suite(device="cuda"): each library's inputs converted once by its ``to_cuda``, every call
    timed by time_cuda_fn in alternating rounds, and a memory-bound case reported against a copy of
    its bytes (the peak: %stream is deepkern's share of the copy's bandwidth). The GPU is stood in for
    by host arrays, so the plumbing is checked on any machine."""
    from deepkern.bench import libraries, runner
    from deepkern.bench.timing import Timing

    seconds = {"deepkern": 2e-3, "torch": 3e-3, runner.COPY_REFERENCE: 1e-3}
    timed, converted = [], []

    def fake_time_cuda_fn(fn, inputs, *, repeats, warmup):
        for args in inputs:
            fn(*args)
        name = {deepkern: "deepkern", torch: "torch", runner._device_copy: runner.COPY_REFERENCE}[fn]
        timed.append(name)
        return Timing.from_times([seconds[name]] * repeats)

    def deepkern(x, y):
        assert isinstance(x, Moved) and isinstance(y, Moved)

    def torch(x, y):
        assert isinstance(x, Moved)

    class Moved:
        def __init__(self, array):
            converted.append(array.shape)

    fake_libraries = [
        libraries.Backend("deepkern", lambda: True, None, to_cuda=Moved, cuda_missing=lambda: None),
        libraries.Backend("numpy", lambda: True, None),
        libraries.Backend("torch", lambda: True, None, to_cuda=Moved, cuda_missing=lambda: None),
    ]

    class HostAsDevice:
        def zeros(self, shape, dtype):
            return np.zeros(shape, dtype)

    monkeypatch.setattr(runner, "backends", lambda: fake_libraries)
    monkeypatch.setattr(runner, "cuda_unavailable", lambda: None)
    monkeypatch.setattr(runner, "time_cuda_fn", fake_time_cuda_fn)
    monkeypatch.setattr(runner, "get_backend_of_device", lambda name: HostAsDevice())
    monkeypatch.setattr(__import__("deepkern").cuda, "get_device_name", lambda index: "a test GPU")
    nbytes = 4e6
    cuda_case = bench.Case(
        op="fake", name="n=5", layout="-", group="g", shape=(5,), flops=0.0, nbytes=nbytes,
        make_inputs=lambda: [(np.zeros(5, np.float32), np.ones(5, np.float32))],
        impls={"deepkern": deepkern, "torch": torch}, metric="bytes", device="cuda",
    )  # fmt: skip
    cpu_case = bench.Case(
        op="fake", name="cpu", layout="-", group="g", shape=(1,), flops=1.0, nbytes=1.0,
        make_inputs=lambda: [()], impls={"deepkern": lambda: None},
    )  # fmt: skip
    report = bench.run_suite(
        bench.Suite("fake", "a fake suite", lambda quick: [cpu_case, cuda_case]), [1], repeats=6, device="cuda"
    )
    assert report.machine["gpu"] == "a test GPU"
    assert converted == [(5,), (5,), (5,), (5,)]  # two arrays, two libraries, once each
    assert timed.count("deepkern") == timed.count("torch") == timed.count(runner.COPY_REFERENCE) == bench.ROUNDS
    rows = {row.reference: row for row in report.rows}
    assert set(rows) == {"torch", runner.COPY_REFERENCE}
    for ref, row in rows.items():
        assert row.threads == 0 and row.unit == "GB/s" and row.repeats == 6 // bench.ROUNDS * bench.ROUNDS
        assert row.ratio == pytest.approx(seconds[ref] / seconds["deepkern"])
        assert row.gflops == pytest.approx(nbytes / seconds["deepkern"] / 1e9)
        assert row.peak_gflops == pytest.approx(nbytes / seconds[runner.COPY_REFERENCE] / 1e9)
        assert row.pct_peak == pytest.approx(100 * seconds[runner.COPY_REFERENCE] / seconds["deepkern"])


def test_gpu_cases_without_a_gpu_are_skipped_with_the_reason(monkeypatch):
    from deepkern.bench import runner

    monkeypatch.setattr(runner, "cuda_unavailable", lambda: "deepkern has no usable GPU: none here")
    suite = bench.Suite("fake", "a fake suite", lambda quick: pytest.fail("no case may be built"))
    report = bench.run_suite(suite, [1], device="cuda")
    assert report.rows == [] and report.notes == ["fake skipped: deepkern has no usable GPU: none here"]
