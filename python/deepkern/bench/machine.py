"""The context a benchmark result needs: the machine and library versions (:func:`machine_info`) and
how many cores other processes kept busy while it was timed (:class:`OtherLoad`)."""

from __future__ import annotations

import datetime
import os
import platform
import sys
import time
from typing import Optional

from .. import _C
from ..backends.cpu import isa_label
from .libraries import installed_torch, numpy_blas_version, threadpoolctl_available

#: Lines timed while other processes kept more than this many cores busy are marked noisy.
NOISY_CORES = 0.25


def _load_average() -> Optional[float]:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


class OtherLoad:
    """CPU time that other processes take while this one benchmarks (Linux ``/proc/stat``).

    ``cores()`` is the average number of cores kept busy by everything but this process since
    ``start()`` (None where it cannot be read): a measure of how noisy the timings were.
    """

    def __init__(self) -> None:
        self.start()

    @staticmethod
    def _machine_busy_s() -> Optional[float]:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = f.readline().split()
        except OSError:
            return None
        if not fields or fields[0] != "cpu":
            return None
        ticks = [int(x) for x in fields[1:]]
        busy = sum(ticks[:3]) + sum(ticks[5:8])  # user nice system | irq softirq steal
        return busy / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _self_s() -> float:
        t = os.times()
        return t.user + t.system

    def start(self) -> None:
        self._wall = time.perf_counter()
        self._busy = self._machine_busy_s()
        self._self = self._self_s()

    def cores(self) -> Optional[float]:
        busy = self._machine_busy_s()
        wall = time.perf_counter() - self._wall
        if busy is None or self._busy is None or wall <= 0:
            return None
        return max(0.0, (busy - self._busy) - (self._self_s() - self._self)) / wall


def machine_info() -> dict:
    """CPU, ISA, library versions, date: the context a benchmark result needs."""
    from .. import __version__

    torch = installed_torch()
    info = {
        "cpu": _C.cpu_brand(),
        "isa": isa_label(_C.active_isa()),
        "isa_detected": _C.detected_isa(),
        "gemm_kernel_f32": _C.gemm_kernel_name(False),
        "cores": os.cpu_count(),
        "default_threads": _C.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "deepkern": __version__,
        "numpy": numpy_blas_version(),
        "torch": (torch.__version__ if torch is not None else None),
        "threadpoolctl": threadpoolctl_available(),
        "load_average": _load_average(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]) if sys.argv else "",
    }
    return info
