"""This machine's ceilings, measured by ``deepkern._C``: the FMA throughput and the copy bandwidth
that each kernel's GFLOP/s or GB/s is reported against."""

from __future__ import annotations

import dataclasses
import time
from typing import Dict

from .._backend import _C
from .libraries import PAUSE_S, idle_pause_s


@dataclasses.dataclass(frozen=True)
class Peak:
    """This machine's measured FMA throughput and copy bandwidth at ``threads`` threads."""

    threads: int
    isa: str
    fma_gflops: float
    copy_gbps: float
    copy_bytes: int

    def roofline_gflops(self, flops: float, nbytes: float) -> float:
        """Attainable GFLOP/s for ``flops`` over ``nbytes`` of compulsory memory traffic."""
        if nbytes <= 0:
            return self.fma_gflops
        return min(self.fma_gflops, flops / nbytes * self.copy_gbps)


_PEAKS: Dict[int, Peak] = {}


def measure_peak(threads: int, *, copy_bytes: int = 512 << 20, fma_seconds: float = 0.2,
                 fma_runs: int = 3, copy_repeats: int = 5) -> Peak:
    """FMA GFLOP/s (best of ``fma_runs``, active ISA) and copy GB/s at ``threads`` threads.

    Cached per thread count for the life of the process (the first measurement wins).
    """
    threads = int(threads)
    if threads in _PEAKS:
        return _PEAKS[threads]
    isa = _C.active_isa()
    time.sleep(PAUSE_S)  # let other libraries' worker threads go idle first
    fma = max(_C.measure_fma_gflops(isa, threads, fma_seconds) for _ in range(max(1, fma_runs)))
    time.sleep(idle_pause_s(threads))
    copy = _C.measure_copy_gbps(int(copy_bytes), threads, copy_repeats)
    _PEAKS[threads] = Peak(threads, isa, float(fma), float(copy), int(copy_bytes))
    return _PEAKS[threads]
