"""Timing one library on one case: the timed block (:func:`time_fn`) and the rotation of inputs that
keeps every timed call reading its operands from memory (:func:`rotation_copies`)."""

from __future__ import annotations

import dataclasses
import gc
import math
import statistics
import time
from typing import Callable, Optional, Sequence, Tuple

#: Inputs smaller than this are replicated so that the timed calls do not run from cache.
CACHE_BYTES = 64 << 20
#: At most this many copies, and at most this many bytes, of one case's inputs.
MAX_COPIES = 256
MAX_ROTATION_BYTES = 256 << 20


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call: median, min and max over ``repeats`` timed calls."""

    median: float
    min: float
    max: float
    repeats: int
    times: Tuple[float, ...] = ()

    @classmethod
    def from_times(cls, times: Sequence[float]) -> "Timing":
        return cls(statistics.median(times), min(times), max(times), len(times), tuple(times))

    @classmethod
    def merged(cls, timings: Sequence["Timing"]) -> "Timing":
        """One Timing over all the calls of several blocks."""
        return cls.from_times([t for timing in timings for t in timing.times])


def time_fn(
    fn: Callable,
    inputs: Sequence[tuple],
    *,
    repeats: Optional[int] = None,
    warmup: int = 1,
    target_s: float = 0.2,
    min_repeats: int = 3,
    max_repeats: int = 100,
    max_block_s: float = 2.0,
    pause_s: float = 0.0,
) -> Timing:
    """Time ``fn(*inputs[i % len(inputs)])``: ``pause_s`` sleep, ``warmup`` calls, timed repeats.

    The calls rotate through ``inputs`` (see :func:`rotation_copies`). With ``repeats=None`` the
    count follows the warm-up call's time: about ``target_s`` of timed calls, at least
    ``min_repeats`` (fewer, down to 2, when that would take more than ``max_block_s``) and at most
    ``max_repeats``. The garbage collector is off inside the block.
    """
    if not inputs:
        raise ValueError("time_fn: inputs must hold at least one set of arguments")
    if pause_s > 0:
        time.sleep(pause_s)
    n_sets = len(inputs)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        first = None
        for i in range(max(0, warmup)):
            t0 = time.perf_counter()
            fn(*inputs[i % n_sets])
            elapsed = time.perf_counter() - t0
            first = elapsed if first is None else min(first, elapsed)
        if repeats is None:
            if first is None:  # no warm-up: time one call to size the block
                t0 = time.perf_counter()
                fn(*inputs[0])
                first = time.perf_counter() - t0
            est = max(first, 1e-7)
            count = min(max_repeats, max(min_repeats, int(target_s / est)))
            count = min(count, max(2, int(max_block_s / est)))
        else:
            count = int(repeats)
            if count < 1:
                raise ValueError(f"time_fn: repeats must be >= 1, got {repeats}")
        times = []
        start = max(0, warmup)
        for i in range(count):
            args = inputs[(start + i) % n_sets]
            t0 = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing.from_times(times)


def time_cuda_fn(fn: Callable, inputs: Sequence[tuple], *, repeats: int = 20, warmup: int = 3) -> Timing:
    """Time ``fn(*inputs[i % len(inputs)])`` on the GPU: ``warmup`` calls, then ``repeats`` calls each
    between two CUDA events on the current stream (deepkern's and PyTorch's default streams are the
    same legacy stream), the device synchronized after each, so a time is the GPU's from the launch
    to the end of the call's last kernel."""
    from .. import cuda

    if not inputs:
        raise ValueError("time_cuda_fn: inputs must hold at least one set of arguments")
    if repeats < 1:
        raise ValueError(f"time_cuda_fn: repeats must be >= 1, got {repeats}")
    for i in range(max(0, warmup)):
        fn(*inputs[i % len(inputs)])
    cuda.synchronize()
    start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
    times = []
    for i in range(repeats):
        start.record()
        fn(*inputs[(warmup + i) % len(inputs)])
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return Timing.from_times(times)


def rotation_copies(
    set_bytes: int, *, cache_bytes: int = CACHE_BYTES, max_copies: int = MAX_COPIES, max_bytes: int = MAX_ROTATION_BYTES
) -> int:
    """How many copies of one input set (``set_bytes``) to rotate through so calls miss the cache.

    One when a set is already >= ``cache_bytes``; otherwise enough to exceed it, bounded by
    ``max_copies`` and ``max_bytes`` in all.
    """
    set_bytes = max(1, int(set_bytes))
    if set_bytes >= cache_bytes:
        return 1
    copies = math.ceil(cache_bytes / set_bytes) + 1
    return int(max(1, min(copies, max_copies, max_bytes // set_bytes)))
