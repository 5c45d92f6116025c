"""The machine's ceilings behind ``deepkern bench``: the FMA peak follows the one ISA dispatch, and
the memory bandwidth is a positive, finite rate."""

import math

import pytest

import deepkern

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
def test_copy_bandwidth_is_positive_and_finite(threads):
    gbps = _C.measure_copy_gbps(4 << 20, threads, 3)
    assert math.isfinite(gbps) and gbps > 0
