"""The machine's ceilings behind ``deepkern bench``: the FMA peak follows the one ISA dispatch, and
the memory stream bandwidth is a positive, finite rate."""

import math

import deepkern
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
