"""This machine's ceilings, measured by ``deepkern._C``: the FMA throughput that compute-bound
kernels are reported against, and the memory stream bandwidth that memory-bound kernels are.

The stream (``_C.measure_copy_gbps``) is what an in-place kernel such as an optimizer step does:
each thread updates its own slice of two float32 buffers, ``a[i] = a[i] * s + b[i]``, with ordinary
loads and stores, on the thread count of the kernel rows and on huge pages where the system gives
them (as NumPy's arrays get them); 12 bytes per element (a and b read, a written), all of them
memory traffic and no other. The median of several passes.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Dict

from .. import _C
from .libraries import PAUSE_S, idle_pause_s

#: How the stream bandwidth is measured, for the report's header.
STREAM_DEFINITION = (
    "a[i] = a[i] * s + b[i] in place on each thread's slice of two float32 buffers, 12 bytes read + written per element"
)


@dataclasses.dataclass(frozen=True)
class Peak:
    """This machine's measured FMA throughput and stream bandwidth at ``threads`` threads."""

    threads: int
    isa: str
    fma_gflops: float
    stream_gbps: float
    #: Bytes of each of the stream's two buffers.
    stream_bytes: int

    def roofline_gflops(self, flops: float, nbytes: float) -> float:
        """Attainable GFLOP/s for ``flops`` over ``nbytes`` of compulsory memory traffic."""
        if nbytes <= 0:
            return self.fma_gflops
        return min(self.fma_gflops, flops / nbytes * self.stream_gbps)


_PEAKS: Dict[int, Peak] = {}


def measure_peak(
    threads: int, *, stream_bytes: int = 512 << 20, fma_seconds: float = 0.2, fma_runs: int = 3, stream_repeats: int = 5
) -> Peak:
    """FMA GFLOP/s (best of ``fma_runs``, active ISA) and stream GB/s (median of ``stream_repeats``
    passes over two buffers of ``stream_bytes``) at ``threads`` threads.

    Cached per thread count for the life of the process (the first measurement wins).
    """
    threads = int(threads)
    if threads in _PEAKS:
        return _PEAKS[threads]
    isa = _C.active_isa()
    time.sleep(PAUSE_S)  # let other libraries' worker threads go idle first
    fma = max(_C.measure_fma_gflops(isa, threads, fma_seconds) for _ in range(max(1, fma_runs)))
    time.sleep(idle_pause_s(threads))
    stream = _C.measure_copy_gbps(int(stream_bytes), threads, stream_repeats)
    _PEAKS[threads] = Peak(threads, isa, float(fma), float(stream), int(stream_bytes))
    return _PEAKS[threads]


_BF16_PEAKS: Dict[int, float] = {}


def measured_bf16_peaks() -> Dict[int, float]:
    """The bfloat16 peaks :func:`measure_bf16_peak` measured so far, by thread count."""
    return dict(_BF16_PEAKS)


def measure_bf16_peak(threads: int, *, seconds: float = 0.2, runs: int = 3) -> float:
    """The bfloat16 GEMM's peak GFLOP/s at ``threads`` threads (best of ``runs``): chains of the
    instruction its active tier runs on (TDPBF16PS on AMX, VDPBF16PS on AVX512-BF16; the float32 FMA
    peak for the emulated kernels). Cached per thread count for the life of the process."""
    threads = int(threads)
    if threads not in _BF16_PEAKS:
        time.sleep(PAUSE_S)
        _BF16_PEAKS[threads] = float(max(_C.measure_bf16_gflops(threads, seconds) for _ in range(max(1, runs))))
    return _BF16_PEAKS[threads]
