"""Timing, references and reports for ``deepkern bench`` and the pytest-benchmark suites in bench/.

Every kernel is timed beside the reference a user would otherwise call (NumPy/OpenBLAS always,
PyTorch when it is installed), on the same inputs and at the same thread count, and reported as
time, GFLOP/s (GB/s for memory-bound ops such as pooling), the throughput ratio to the reference and
the fraction of this machine's measured peak (an FMA-throughput loop and a memory-copy loop from
``deepkern._C``).

How the numbers are taken (and why):

* Each library runs in its own block: a short pause, one warm-up call, then the timed repeats,
  each timed alone with :func:`time.perf_counter`; the median is reported with the min and max.
  The pause matters on small machines: OpenBLAS's and OpenMP's worker threads keep spinning for
  ~0.1-0.2 s after a call and steal the cores from whichever library runs next.
* When one set of inputs would fit in cache (< ~64 MB), the timed calls rotate among several
  copies so every call reads its operands from memory, as in a real network.
* deepkern, NumPy's BLAS (through threadpoolctl) and PyTorch run at the same thread count. Without
  threadpoolctl NumPy's threads cannot be set, so only the default thread count is compared.

The suites are a registry (:data:`SUITES`, :func:`register_suite`): ``deepkern bench --op NAME``
runs one, and each op family (conv, lstm, optim, ...) adds its own next to ``gemm``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import math
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ._backend import _C

__all__ = [
    "Peak", "Timing", "Backend", "Case", "Suite", "Row", "Report", "SUITES",
    "measure_peak", "time_fn", "rotation_copies", "make_gemm_inputs", "gemm_cases",
    "ConvLayer", "CONV_LAYERS", "conv_cases", "conv_flops", "conv_impls", "conv_check", "make_conv_inputs",
    "pool_cases", "pool_numpy",
    "LSTM_SHAPES", "LSTM_SHAPES_MORE", "lstm_cases", "lstm_flops", "lstm_impls", "lstm_check", "make_lstm_inputs",
    "OPTIM_RULES", "OPTIM_SIZES", "optim_cases", "optim_impls", "optim_check", "make_optim_inputs",
    "TRAIN_RECIPES", "train_cases", "train_check", "train_flops",
    "backends", "get_backend", "limit_threads", "threadpoolctl_available", "register_suite",
    "get_suite", "run_suite", "summarize", "format_table", "format_summary", "to_json", "machine_info",
]

#: Inputs smaller than this are replicated so that the timed calls do not run from cache.
CACHE_BYTES = 64 << 20
#: At most this many copies, and at most this many bytes, of one case's inputs.
MAX_COPIES = 256
MAX_ROTATION_BYTES = 256 << 20
#: Pause before each library's block when more than one thread was or will be busy (s).
PAUSE_S = 0.3
#: Pause between single-threaded blocks. Between deepkern's and PyTorch's blocks at one thread count
#: there is none: they share one OpenMP runtime (OpenBLAS's threads spin on their own).
PAUSE_1T_S = 0.05
#: ``deepkern bench`` times each line's libraries in this many rounds, in alternating order, and takes
#: each library's median over all its calls: a slow spell of a shared machine then falls on both
#: sides instead of on one library's block.
ROUNDS = 3


# --------------------------------------------------------------------------------------------
# Machine peak
# --------------------------------------------------------------------------------------------


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
    time.sleep(PAUSE_S if threads > 1 else PAUSE_1T_S)
    copy = _C.measure_copy_gbps(int(copy_bytes), threads, copy_repeats)
    _PEAKS[threads] = Peak(threads, isa, float(fma), float(copy), int(copy_bytes))
    return _PEAKS[threads]


# --------------------------------------------------------------------------------------------
# Timer
# --------------------------------------------------------------------------------------------


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


def time_fn(fn: Callable, inputs: Sequence[tuple], *, repeats: Optional[int] = None, warmup: int = 1,
            target_s: float = 0.2, min_repeats: int = 3, max_repeats: int = 100,
            max_block_s: float = 2.0, pause_s: float = 0.0) -> Timing:
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


def rotation_copies(set_bytes: int, *, cache_bytes: int = CACHE_BYTES, max_copies: int = MAX_COPIES,
                    max_bytes: int = MAX_ROTATION_BYTES) -> int:
    """How many copies of one input set (``set_bytes``) to rotate through so calls miss the cache.

    One when a set is already >= ``cache_bytes``; otherwise enough to exceed it, bounded by
    ``max_copies`` and ``max_bytes`` in all.
    """
    set_bytes = max(1, int(set_bytes))
    if set_bytes >= cache_bytes:
        return 1
    copies = math.ceil(cache_bytes / set_bytes) + 1
    return int(max(1, min(copies, max_copies, max_bytes // set_bytes)))


# --------------------------------------------------------------------------------------------
# Libraries and thread control
# --------------------------------------------------------------------------------------------


def threadpoolctl_available() -> bool:
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return True


def _torch():
    """PyTorch if it is installed (imported lazily; never a dependency of deepkern), else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch


@dataclasses.dataclass
class Backend:
    """One library an op is timed on: how to check it is there, set its threads, convert inputs."""

    name: str
    available: Callable[[], bool]
    threads: Callable[[int], contextlib.AbstractContextManager]
    convert: Callable[[np.ndarray], object] = lambda x: x
    version: Callable[[], str] = lambda: ""
    #: False when this library's thread count cannot be set (it runs at its default).
    controls_threads: Callable[[], bool] = lambda: True


@contextlib.contextmanager
def _deepkern_threads(n: int) -> Iterator[None]:
    from . import get_num_threads, set_num_threads

    old = get_num_threads()
    set_num_threads(int(n))
    try:
        yield
    finally:
        set_num_threads(old)


@contextlib.contextmanager
def _numpy_threads(n: int) -> Iterator[None]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # runs at OpenBLAS's default; callers compare only the default count
        yield
        return
    with threadpool_limits(limits=int(n), user_api="blas"):
        yield


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    torch = _torch()
    if torch is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _numpy_blas_version() -> str:
    version = f"numpy {np.__version__}"
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return version
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            return f"{version}, {info.get('internal_api')} {info.get('version')} ({info.get('architecture')})"
    return version


def _torch_from_numpy(x: np.ndarray):
    return _torch().from_numpy(x)  # zero copy; transposed views keep their strides


def backends() -> List[Backend]:
    """deepkern and the references, in the order they are timed."""
    from . import __version__

    return [
        Backend("deepkern", lambda: True, _deepkern_threads, version=lambda: f"deepkern {__version__}"),
        Backend("numpy", lambda: True, _numpy_threads, version=_numpy_blas_version,
                controls_threads=threadpoolctl_available),
        Backend("torch", lambda: _torch() is not None, _torch_threads, convert=_torch_from_numpy,
                version=lambda: f"torch {_torch().__version__}"),
    ]


def get_backend(name: str) -> Backend:
    for backend in backends():
        if backend.name == name:
            return backend
    raise ValueError(f"unknown backend {name!r}; known: {[b.name for b in backends()]}")


@contextlib.contextmanager
def limit_threads(n: int, names: Iterable[str] = ("deepkern", "numpy", "torch")) -> Iterator[None]:
    """Run deepkern and the references (those installed) at ``n`` threads inside the block."""
    with contextlib.ExitStack() as stack:
        for name in names:
            backend = get_backend(name)
            if backend.available():
                stack.enter_context(backend.threads(n))
        yield


# --------------------------------------------------------------------------------------------
# Cases and suites
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    """One benchmark case: its inputs and, per backend name, the call to time."""

    op: str
    name: str                      # e.g. "n=1024" or "M=64 N=4096 K=1024"
    layout: str                    # e.g. "NN"
    group: str                     # geomean summaries are taken per group
    shape: Tuple[int, ...]
    flops: float
    nbytes: float                  # compulsory memory traffic, for the roofline
    make_inputs: Callable[[], List[tuple]]   # rotation sets of NumPy arrays
    impls: Dict[str, Callable]     # backend name -> fn(*converted inputs)
    check: Optional[Callable[[tuple], float]] = None  # relative error of deepkern vs reference
    label: str = ""                # what the shape is (e.g. "ResNet conv1 im2col")
    #: "flops": throughput in GFLOP/s against the FMA peak and the roofline; "bytes": memory-bound
    #: ops, throughput in GB/s (nbytes / time) against the measured copy bandwidth.
    metric: str = "flops"


@dataclasses.dataclass
class Suite:
    """A family of cases for ``deepkern bench --op NAME``."""

    name: str
    description: str
    cases: Callable[[bool], List[Case]]      # cases(quick)
    summary_groups: Sequence[str] = ()       # groups whose geomean is printed (all when empty)
    #: Why the suite cannot run here (e.g. its only reference is not installed), or None when it can.
    unavailable: Callable[[], Optional[str]] = lambda: None
    #: False for a suite too long for ``deepkern bench`` (``--op all``); it runs when named.
    in_all: bool = True


SUITES: Dict[str, Suite] = {}


def register_suite(suite: Suite) -> Suite:
    SUITES[suite.name] = suite
    return suite


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"unknown op {name!r}; available: {', '.join(sorted(SUITES))}")
    return SUITES[name]


# ---- GEMM ----------------------------------------------------------------------------------

GEMM_LAYOUTS = ("NN", "NT", "TN")
GEMM_SQUARE = (256, 512, 1024, 2048, 4096)
GEMM_SQUARE_QUICK = (256, 512)
#: (M, N, K, what it is) for the shapes deep-learning layers run.
GEMM_DL_SHAPES = (
    (32, 1024, 256, "linear, batch 32"),
    (64, 4096, 1024, "MLP, batch 64"),
    (128, 4096, 1024, "MLP, batch 128"),
    (1, 4096, 4096, "batch-1 inference (GEMV)"),
    (4096, 64, 576, "conv 3x3x64 im2col, 64x64"),
    (12544, 64, 147, "ResNet conv1 7x7x3 im2col"),
)
GEMM_DL_SHAPES_QUICK = (GEMM_DL_SHAPES[0], GEMM_DL_SHAPES[4])
GROUP_SQUARE_BIG = "square n>=512"
GROUP_SQUARE_SMALL = "square n<512"
GROUP_DL = "DL shapes"


def make_gemm_inputs(m: int, n: int, k: int, layout: str = "NN", *, dtype=np.float32,
                     copies: Optional[int] = None, seed: int = 0) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Rotation sets ``[(a, b), ...]`` of views with ``a`` (M, K) and ``b`` (K, N).

    ``layout`` is two letters, for A then B: ``N`` a C-contiguous array, ``T`` the transpose view
    of a C-contiguous array (so ``"NT"`` is ``a @ w.T`` with ``w`` stored (N, K)). ``copies``
    defaults to :func:`rotation_copies` of one set's bytes; the copies hold the same values.
    """
    layout = layout.upper()
    if len(layout) != 2 or any(ch not in "NT" for ch in layout):
        raise ValueError(f"make_gemm_inputs: layout must be two of 'N'/'T' (e.g. 'NT'), got {layout!r}")
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    a_store = rng.standard_normal((k, m) if layout[0] == "T" else (m, k), dtype=np.float32).astype(dtype, copy=False)
    b_store = rng.standard_normal((n, k) if layout[1] == "T" else (k, n), dtype=np.float32).astype(dtype, copy=False)
    if copies is None:
        copies = rotation_copies(a_store.nbytes + b_store.nbytes)
    sets = []
    for i in range(max(1, int(copies))):
        a = a_store if i == 0 else a_store.copy()
        b = b_store if i == 0 else b_store.copy()
        sets.append((a.T if layout[0] == "T" else a, b.T if layout[1] == "T" else b))
    return sets


def _gemm_check(inputs: tuple) -> float:
    from .ops import matmul

    a, b = inputs
    out = matmul(a, b)
    # A float64 reference on a sample of rows keeps the check cheap for n = 4096.
    rows = np.unique(np.linspace(0, a.shape[0] - 1, num=min(a.shape[0], 64)).astype(np.int64))
    ref = a[rows].astype(np.float64) @ b.astype(np.float64)
    denom = float(np.linalg.norm(ref)) or 1.0
    return float(np.linalg.norm(out[rows].astype(np.float64) - ref)) / denom


def _gemm_case(m: int, n: int, k: int, layout: str, name: str, group: str, label: str = "") -> Case:
    from .ops import matmul

    torch = _torch()
    impls = {"deepkern": matmul, "numpy": np.matmul}
    if torch is not None:
        impls["torch"] = torch.matmul
    return Case(
        op="gemm", name=name, layout=layout, group=group, shape=(m, n, k),
        flops=2.0 * m * n * k, nbytes=4.0 * (m * k + k * n + m * n),
        make_inputs=lambda: make_gemm_inputs(m, n, k, layout),
        impls=impls, check=_gemm_check, label=label,
    )


def gemm_cases(quick: bool = False) -> List[Case]:
    """float32 square GEMMs in layouts NN, NT, TN, then the deep-learning shapes (NN)."""
    cases = []
    for size in (GEMM_SQUARE_QUICK if quick else GEMM_SQUARE):
        group = GROUP_SQUARE_BIG if size >= 512 else GROUP_SQUARE_SMALL
        for layout in GEMM_LAYOUTS:
            cases.append(_gemm_case(size, size, size, layout, f"n={size}", group, "square"))
    for m, n, k, label in (GEMM_DL_SHAPES_QUICK if quick else GEMM_DL_SHAPES):
        cases.append(_gemm_case(m, n, k, "NN", f"M={m} N={n} K={k}", GROUP_DL, label))
    return cases


register_suite(Suite(
    name="gemm",
    description="float32 matrix multiply: square NN/NT/TN and deep-learning shapes vs NumPy and PyTorch",
    cases=gemm_cases,
    summary_groups=(GROUP_SQUARE_BIG, GROUP_DL),
))


# ---- 2-D convolution ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ConvLayer:
    """One convolution layer (float32, NCHW, no bias, dilation 1), timed at some batch size."""

    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    label: str = ""

    @property
    def out_hw(self) -> Tuple[int, int]:
        p = (self.h + 2 * self.padding - self.r) // self.stride + 1
        q = (self.w + 2 * self.padding - self.s) // self.stride + 1
        return p, q

    @property
    def kwargs(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=1, groups=self.groups)

    def name(self) -> str:
        text = f"C={self.c} {self.h}x{self.w} K={self.k} {self.r}x{self.s}"
        if self.stride != 1:
            text += f" s{self.stride}"
        if self.padding:
            text += f" p{self.padding}"
        if self.groups != 1:
            text += f" g{self.groups}"
        return text

    def forward_flops(self, batch: int) -> float:
        """2 * N * K * P * Q * (C / groups) * R * S (one multiply-add = 2 FLOP)."""
        p, q = self.out_hw
        return 2.0 * batch * self.k * p * q * (self.c // self.groups) * self.r * self.s


#: The layers timed by ``deepkern bench --op conv`` and bench/test_conv.py (ResNet-50 / MobileNet shapes).
CONV_LAYERS = (
    ConvLayer(64, 56, 56, 64, 3, 3, 1, 1, label="ResNet 3x3, 56x56"),
    ConvLayer(128, 28, 28, 128, 3, 3, 1, 1, label="ResNet 3x3, 28x28"),
    ConvLayer(256, 14, 14, 256, 3, 3, 1, 1, label="ResNet 3x3, 14x14"),
    ConvLayer(3, 224, 224, 64, 7, 7, 2, 3, label="ResNet conv1 7x7/2"),
    ConvLayer(64, 56, 56, 256, 1, 1, label="bottleneck 1x1 expand"),
    ConvLayer(256, 56, 56, 64, 1, 1, label="bottleneck 1x1 reduce"),
    ConvLayer(128, 56, 56, 128, 3, 3, 1, 1, groups=128, label="depthwise 3x3"),
    ConvLayer(512, 7, 7, 512, 3, 3, 1, 1, label="ResNet 3x3, 7x7"),
)
CONV_BATCH = 32
CONV_BATCH_QUICK = 2
CONV_PASSES = ("fwd", "fwd+bwd")
GROUP_CONV_FWD = "forward"
GROUP_CONV_FWD_BWD = "forward+backward"


def conv_flops(layer: ConvLayer, batch: int, conv_pass: str) -> float:
    """FLOP of one call: the forward, or the forward plus grad_x and grad_w (each as many as the forward)."""
    return layer.forward_flops(batch) * (3.0 if conv_pass == "fwd+bwd" else 1.0)


def conv_bytes(layer: ConvLayer, batch: int, conv_pass: str) -> float:
    """Compulsory float32 traffic: read x and w, write y (and for the backward read grad_out, x and w,
    write grad_x and grad_w)."""
    p, q = layer.out_hw
    x = batch * layer.c * layer.h * layer.w
    w = layer.k * (layer.c // layer.groups) * layer.r * layer.s
    y = batch * layer.k * p * q
    total = x + w + y
    if conv_pass == "fwd+bwd":
        total += y + x + w + x + w
    return 4.0 * total


def make_conv_inputs(layer: ConvLayer, batch: int, conv_pass: str, *, copies: Optional[int] = None,
                     seed: int = 0) -> List[tuple]:
    """Rotation sets of C-contiguous float32 arrays: ``(x, w)`` for ``"fwd"``, ``(x, w, grad_out)`` for
    ``"fwd+bwd"``. ``copies`` defaults to :func:`rotation_copies` of one set's bytes."""
    if conv_pass not in CONV_PASSES:
        raise ValueError(f"make_conv_inputs: conv_pass must be one of {CONV_PASSES}, got {conv_pass!r}")
    rng = np.random.default_rng(seed)
    p, q = layer.out_hw
    base = [rng.standard_normal((batch, layer.c, layer.h, layer.w), dtype=np.float32),
            rng.standard_normal((layer.k, layer.c // layer.groups, layer.r, layer.s), dtype=np.float32)]
    base[1] *= np.float32(1.0 / math.sqrt(base[1][0].size))  # unit-scale outputs, as with He init
    if conv_pass == "fwd+bwd":
        base.append(rng.standard_normal((batch, layer.k, p, q), dtype=np.float32))
    if copies is None:
        copies = rotation_copies(sum(a.nbytes for a in base))
    return [tuple(base) if i == 0 else tuple(a.copy() for a in base) for i in range(max(1, int(copies)))]


def conv_impls(layer: ConvLayer, conv_pass: str) -> Dict[str, Callable]:
    """Backend name -> the call to time, on the (converted) inputs of :func:`make_conv_inputs`.

    deepkern: ``ops.conv2d`` (then ``ops.conv2d_backward(needs=(True, True, False))``); PyTorch:
    ``F.conv2d`` (then ``aten.convolution_backward`` for grad_x and grad_w), when installed.
    """
    from .ops import conv2d, conv2d_backward

    kw = layer.kwargs
    impls: Dict[str, Callable] = {}
    if conv_pass == "fwd":
        impls["deepkern"] = lambda x, w: conv2d(x, w, None, **kw)
    else:
        def deepkern_fwd_bwd(x, w, g):
            conv2d(x, w, None, **kw)
            return conv2d_backward(g, x, w, needs=(True, True, False), **kw)

        impls["deepkern"] = deepkern_fwd_bwd
    torch = _torch()
    if torch is not None:
        conv = torch.nn.functional.conv2d
        backward = torch.ops.aten.convolution_backward.default
        stride, padding, dilation = [layer.stride] * 2, [layer.padding] * 2, [1, 1]
        if conv_pass == "fwd":
            impls["torch"] = lambda x, w: conv(x, w, None, stride, padding, dilation, layer.groups)
        else:
            def torch_fwd_bwd(x, w, g):
                conv(x, w, None, stride, padding, dilation, layer.groups)
                return backward(g, x, w, None, stride, padding, dilation, False, [0, 0], layer.groups,
                                [True, True, False])

            impls["torch"] = torch_fwd_bwd
    return impls


#: Images of the batch whose output and grad_x are compared with the float64 reference.
CONV_CHECK_IMAGES = 2


def conv_check(layer: ConvLayer, conv_pass: str, inputs: tuple) -> float:
    """Largest relative error ``||out - ref|| / ||ref||`` of deepkern's results on ``inputs`` against
    PyTorch in float64: the output (``"fwd"``) or grad_x and grad_w (``"fwd+bwd"``).

    The whole batch runs through deepkern (the call that is timed); output and grad_x are compared on
    the first images, grad_w (a sum over the batch) on the whole batch.
    """
    from .ops import conv2d, conv2d_backward

    torch = _torch()
    if torch is None:
        raise RuntimeError("conv_check needs PyTorch for its float64 reference")
    kw = layer.kwargs
    stride, padding, dilation = [layer.stride] * 2, [layer.padding] * 2, [1, 1]
    x, w = inputs[0], inputs[1]
    head = slice(0, min(CONV_CHECK_IMAGES, x.shape[0]))
    x64, w64 = torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64))

    def rel(got, ref) -> float:
        ref = ref.numpy()
        denom = float(np.linalg.norm(ref)) or 1.0
        return float(np.linalg.norm(got.astype(np.float64) - ref)) / denom

    with torch.no_grad():
        if conv_pass == "fwd":
            out = conv2d(x, w, None, **kw)
            ref = torch.nn.functional.conv2d(x64[head], w64, None, stride, padding, dilation, layer.groups)
            return rel(out[head], ref)
        g = inputs[2]
        grad_x, grad_w, _ = conv2d_backward(g, x, w, needs=(True, True, False), **kw)
        g64 = torch.from_numpy(g.astype(np.float64))
        backward = torch.ops.aten.convolution_backward.default
        ref_x = backward(g64[head], x64[head], w64, None, stride, padding, dilation, False, [0, 0], layer.groups,
                         [True, False, False])[0]
        ref_w = backward(g64, x64, w64, None, stride, padding, dilation, False, [0, 0], layer.groups,
                         [False, True, False])[1]
        return max(rel(grad_x[head], ref_x), rel(grad_w, ref_w))


def _conv_case(layer: ConvLayer, batch: int, conv_pass: str) -> Case:
    return Case(
        op="conv", name=layer.name(), layout=conv_pass,
        group=GROUP_CONV_FWD if conv_pass == "fwd" else GROUP_CONV_FWD_BWD,
        shape=(batch, layer.c, layer.h, layer.w, layer.k, layer.r, layer.s, layer.stride, layer.padding, layer.groups),
        flops=conv_flops(layer, batch, conv_pass), nbytes=conv_bytes(layer, batch, conv_pass),
        make_inputs=lambda: make_conv_inputs(layer, batch, conv_pass),
        impls=conv_impls(layer, conv_pass),
        check=lambda inputs: conv_check(layer, conv_pass, inputs),
        label=f"{layer.label}, N={batch}",
    )


def conv_cases(quick: bool = False) -> List[Case]:
    """float32 NCHW convolutions at batch 32 (2 with ``quick``): each layer forward, then forward+backward."""
    batch = CONV_BATCH_QUICK if quick else CONV_BATCH
    return [_conv_case(layer, batch, conv_pass) for layer in CONV_LAYERS for conv_pass in CONV_PASSES]


def _conv_unavailable() -> Optional[str]:
    if _torch() is None:
        return ('its reference is PyTorch (torch.nn.functional.conv2d), which is not installed '
                '(install the bench extra: pip install ".[bench]")')
    return None


register_suite(Suite(
    name="conv",
    description=(f"float32 NCHW conv2d, forward and forward+backward (grad_x, grad_w), batch {CONV_BATCH} "
                 f"(--quick: {CONV_BATCH_QUICK}), vs PyTorch"),
    cases=conv_cases,
    summary_groups=(GROUP_CONV_FWD, GROUP_CONV_FWD_BWD),
    unavailable=_conv_unavailable,
))

# ---- pooling -------------------------------------------------------------------------------

#: (C, H = W) of the pooling layers of ResNet/VGG-style CNNs, batch POOL_BATCH, float32 NCHW.
POOL_LAYERS = ((64, 56), (128, 28), (256, 14), (64, 112), (512, 7))
POOL_LAYERS_QUICK = ((128, 28), (512, 7))
POOL_BATCH = 32
#: (kind, kernel, stride, padding): the 2x2/2 pool of VGG and the 3x3/2 pad 1 pool of ResNet.
POOL_WINDOWS = (("max", 2, 2, 0), ("max", 3, 2, 1), ("avg", 2, 2, 0), ("avg", 3, 2, 1))
GROUP_POOL_FWD = "forward"
GROUP_POOL_BWD = "backward"


def pool_numpy(x: np.ndarray, kind: str, kernel: int, stride: int, padding: int) -> np.ndarray:
    """max_pool2d or avg_pool2d (count_include_pad, floor mode) in NumPy: the reduction over
    strided windows of the padded input (the reference when PyTorch is not installed)."""
    fill = -np.inf if kind == "max" else 0.0
    pad = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    xp = np.pad(x, pad, constant_values=fill) if padding else x
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    return windows.max(axis=(-2, -1)) if kind == "max" else windows.mean(axis=(-2, -1))


def _pool_rotation(arrays: tuple) -> List[tuple]:
    copies = rotation_copies(sum(a.nbytes for a in arrays))
    return [arrays] + [tuple(a.copy() for a in arrays) for _ in range(copies - 1)]


def _pool_check_forward(kind, kernel, stride, padding):
    from .ops import avg_pool2d, max_pool2d

    fn = max_pool2d if kind == "max" else avg_pool2d

    def check(inputs: tuple) -> float:
        x = inputs[0][:2]  # two images keep the float64 reference cheap
        ref = pool_numpy(x.astype(np.float64), kind, kernel, stride, padding)
        return float(np.linalg.norm(fn(x, kernel, stride, padding) - ref) / np.linalg.norm(ref))
    return check


def _pool_check_backward(kind, kernel, stride, padding):
    from .ops import avg_pool2d_backward, max_pool2d_backward

    def check(inputs: tuple) -> float:
        g, x = inputs[0][:2].astype(np.float64), inputs[1][:2]
        if kind == "max":  # grad_x = grad_out added at the indices, plane by plane
            idx = inputs[2][:2]
            got = max_pool2d_backward(inputs[0][:2], x.shape, idx)
            planes = np.arange(idx.shape[0] * idx.shape[1]).reshape(idx.shape[:2] + (1, 1))
            ref = np.zeros(x.size)
            np.add.at(ref, (idx + planes * x.shape[2] * x.shape[3]).ravel(), g.ravel())
            ref = ref.reshape(x.shape)
        else:  # grad_x = each grad_out / k^2 added over its window (count_include_pad)
            got = avg_pool2d_backward(inputs[0][:2], x.shape, kernel, stride, padding)
            h, w = x.shape[2] + 2 * padding, x.shape[3] + 2 * padding
            ref = np.zeros(x.shape[:2] + (h, w))
            oh, ow = g.shape[2:]
            for i in range(kernel):
                for j in range(kernel):
                    ref[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride] += g / kernel ** 2
            ref = ref[:, :, padding:h - padding, padding:w - padding]
        return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    return check


def _pool_case(channels: int, size: int, kind: str, kernel: int, stride: int, padding: int,
               backward: bool) -> Case:
    from .ops import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward

    shape = (POOL_BATCH, channels, size, size)
    out_size = (size + 2 * padding - kernel) // stride + 1
    out_shape = shape[:2] + (out_size, out_size)
    x_bytes, out_bytes = 4.0 * np.prod(shape), 4.0 * np.prod(out_shape)
    window = f"{kernel}x{kernel} s{stride}" + (f" p{padding}" if padding else "")
    torch = _torch()
    k2, s2, p2 = [kernel, kernel], [stride, stride], [padding, padding]

    def make_x():
        return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)

    if not backward:  # inputs (x,); bytes: x read, output written
        nbytes = x_bytes + out_bytes
        make_inputs = lambda: _pool_rotation((make_x(),))  # noqa: E731
        dk_fn = max_pool2d if kind == "max" else avg_pool2d
        impls = {"deepkern": lambda x: dk_fn(x, kernel, stride, padding)}
        if torch is not None:
            t_fn = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d
            impls["torch"] = lambda x: t_fn(x, kernel, stride, padding)
        else:
            impls["numpy"] = lambda x: pool_numpy(x, kind, kernel, stride, padding)
        check = _pool_check_forward(kind, kernel, stride, padding)
    elif kind == "max":  # inputs (grad_out, x, indices); bytes: grad_out and indices read, grad_x written
        nbytes = out_bytes + 2 * out_bytes + x_bytes

        def make_inputs():
            x = make_x()
            _, idx = max_pool2d(x, kernel, stride, padding, return_indices=True)
            g = np.random.default_rng(1).standard_normal(out_shape, dtype=np.float32)
            return _pool_rotation((g, x, idx))
        impls = {"deepkern": lambda g, x, idx: max_pool2d_backward(g, x.shape, idx)}
        if torch is not None:
            impls["torch"] = lambda g, x, idx: torch.ops.aten.max_pool2d_with_indices_backward(
                g, x, k2, s2, p2, [1, 1], False, idx)
        check = _pool_check_backward(kind, kernel, stride, padding)
    else:  # inputs (grad_out, x); bytes: grad_out read, grad_x written
        nbytes = out_bytes + x_bytes

        def make_inputs():
            g = np.random.default_rng(1).standard_normal(out_shape, dtype=np.float32)
            return _pool_rotation((g, make_x()))
        impls = {"deepkern": lambda g, x: avg_pool2d_backward(g, x.shape, kernel, stride, padding)}
        if torch is not None:
            impls["torch"] = lambda g, x: torch.ops.aten.avg_pool2d_backward(g, x, k2, s2, p2, False, True, None)
        check = _pool_check_backward(kind, kernel, stride, padding)
    return Case(
        op="pool", name=f"C={channels} {size}x{size}", layout=f"{kind}{' bwd' if backward else ''} {window}",
        group=GROUP_POOL_BWD if backward else GROUP_POOL_FWD, shape=shape, flops=0.0, nbytes=float(nbytes),
        make_inputs=make_inputs, impls=impls, check=check, label=f"batch {POOL_BATCH} float32 NCHW", metric="bytes",
    )


def pool_cases(quick: bool = False) -> List[Case]:
    """Batch-32 float32 max and average pooling (2x2/2 and 3x3/2 pad 1), forward then backward."""
    layers = POOL_LAYERS_QUICK if quick else POOL_LAYERS
    return [_pool_case(c, hw, kind, k, s, p, backward)
            for backward in (False, True) for c, hw in layers for kind, k, s, p in POOL_WINDOWS]


register_suite(Suite(
    name="pool",
    description="float32 max/avg 2-D pooling of CNN layers (batch 32 NCHW), forward and backward, vs PyTorch "
                "(NumPy strided windows without it); GB/s of bytes read + written",
    cases=pool_cases,
    summary_groups=(GROUP_POOL_FWD, GROUP_POOL_BWD),
))


# ---- LSTM ----------------------------------------------------------------------------------

#: (T, B, I, H, what it is) of the LSTM layers timed by ``deepkern bench --op lstm`` and bench/test_lstm.py.
LSTM_SHAPES = (
    (100, 32, 256, 256, "small LM layer, batch 32"),
    (50, 64, 512, 512, "batch 64, H=512"),
    (100, 1, 128, 128, "batch-1 inference / online"),
    (200, 8, 64, 512, "long sequence, I < H"),
    (35, 20, 650, 650, "PTB medium LM (Zaremba et al.)"),
)
LSTM_PASSES = ("fwd", "fwd+bwd")
GROUP_LSTM_FWD = "forward"
GROUP_LSTM_FWD_BWD = "forward+backward"
#: The batch-1 shape has its own groups, so its ratio (the issue asks >= 2.0 there) is printed on its own.
GROUP_LSTM_FWD_B1 = "fwd batch 1"
GROUP_LSTM_FWD_BWD_B1 = "fwd+bwd batch 1"
#: Shapes outside the goal's list, summarised apart: a small H with a large batch (the team splits
#: batch rows) and a wide H (each thread's W_hh share, 8 MB, streams from L3 every step).
LSTM_SHAPES_MORE = (
    (100, 256, 32, 32, "small H, batch 256"),
    (20, 16, 1024, 1024, "wide H=1024, batch 16"),
)
GROUP_LSTM_FWD_MORE = "fwd more shapes"
GROUP_LSTM_FWD_BWD_MORE = "fwd+bwd more shapes"


def lstm_quick_t(t: int) -> int:
    """The shorter sequence of ``--quick``."""
    return max(5, t // 5)


def lstm_flops(shape: Tuple[int, int, int, int], lstm_pass: str) -> float:
    """2 * T * B * 4H * (I + H) per forward (the two GEMMs per step); the backward counts twice that."""
    t, b, i, h = shape[:4]
    fwd = 2.0 * t * b * 4 * h * (i + h)
    return fwd * (3.0 if lstm_pass == "fwd+bwd" else 1.0)


def lstm_bytes(shape: Tuple[int, int, int, int], lstm_pass: str) -> float:
    """Compulsory float32 traffic: read x, the weights, biases and initial states, write y and the final
    states; the backward also reads grad_y and the forward's cache (gates and states: 6H per step and
    row) and writes grad_x and the weight gradients."""
    t, b, i, h = shape[:4]
    w = 4 * h * (i + h) + 8 * h
    total = t * b * i + w + 2 * b * h + t * b * h + 2 * b * h
    if lstm_pass == "fwd+bwd":
        total += 6 * t * b * h            # the cache, written by the forward
        total += t * b * h + 6 * t * b * h + t * b * i + w + 2 * b * h   # grad_y, cache read; grads written
    return 4.0 * total


def make_lstm_inputs(shape: Tuple[int, int, int, int], lstm_pass: str, *, copies: Optional[int] = None,
                     seed: int = 0) -> List[tuple]:
    """Rotation sets of C-contiguous float32 arrays ``(x, h0, c0, w_ih, w_hh, b_ih, b_hh)`` (and ``grad_y``
    for ``"fwd+bwd"``): x, h0, c0 ~N(0, 1), weights and biases PyTorch's U(-1/sqrt(H), 1/sqrt(H)).

    Only x, h0, c0 (and grad_y) are copied between sets: the weights are the same arrays in every set,
    as in a network, where one layer's weights serve every step and every batch (and stay in cache
    when they fit)."""
    if lstm_pass not in LSTM_PASSES:
        raise ValueError(f"make_lstm_inputs: lstm_pass must be one of {LSTM_PASSES}, got {lstm_pass!r}")
    t, b, i, h = shape[:4]
    rng = np.random.default_rng(seed)
    k = 1.0 / math.sqrt(h)
    weights = tuple(rng.uniform(-k, k, s).astype(np.float32) for s in ((4 * h, i), (4 * h, h), (4 * h,), (4 * h,)))
    data = [rng.standard_normal((t, b, i), dtype=np.float32), rng.standard_normal((b, h), dtype=np.float32),
            rng.standard_normal((b, h), dtype=np.float32)]
    if lstm_pass == "fwd+bwd":
        grad_y = rng.standard_normal((t, b, h), dtype=np.float32)
    if copies is None:
        copies = rotation_copies(sum(a.nbytes for a in data) + (grad_y.nbytes if lstm_pass == "fwd+bwd" else 0))
    sets = []
    for n in range(max(1, int(copies))):
        xs = tuple(data) if n == 0 else tuple(a.copy() for a in data)
        tail = () if lstm_pass == "fwd" else ((grad_y if n == 0 else grad_y.copy()),)
        sets.append(xs + weights + tail)
    return sets


def _torch_lstm_module(torch, w_ih, w_hh, b_ih, b_hh, requires_grad: bool):
    """A float32 torch.nn.LSTM (one layer, seq-first) whose parameters share memory with the given tensors."""
    h, i = w_hh.shape[1], w_ih.shape[1]
    with torch.device("meta"):  # no allocation or initialisation: the parameters are replaced next
        module = torch.nn.LSTM(i, h)
    for name, value in (("weight_ih_l0", w_ih), ("weight_hh_l0", w_hh), ("bias_ih_l0", b_ih), ("bias_hh_l0", b_hh)):
        setattr(module, name, torch.nn.Parameter(value, requires_grad=requires_grad))
    module.flatten_parameters()
    return module


def lstm_impls(shape: Tuple[int, int, int, int], lstm_pass: str) -> Dict[str, Callable]:
    """Backend name -> the call to time, on the (converted) inputs of :func:`make_lstm_inputs`.

    deepkern: ``ops.lstm`` (``"fwd+bwd"``: ``lstm(return_cache=True)`` then ``lstm_backward`` with grad_y);
    PyTorch: a ``torch.nn.LSTM`` over the same weights (built on the first call, the warm-up), forward under
    ``torch.no_grad()``; for ``"fwd+bwd"`` its parameters and x, h0, c0 require grad (deepkern's backward
    gives grad_x, grad_h0 and grad_c0 too, so both compute the same gradients), gradients are set to None
    before each call (``zero_grad(set_to_none=True)``) and ``y.backward(grad_y)``.
    Both return y for ``"fwd"`` and ``(y, grad_x, grad_w_ih, grad_w_hh)`` for ``"fwd+bwd"``.
    """
    from . import ops

    impls: Dict[str, Callable] = {}
    if lstm_pass == "fwd":
        impls["deepkern"] = lambda x, h0, c0, w_ih, w_hh, b_ih, b_hh: ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh)[0]
    else:
        def deepkern_fwd_bwd(x, h0, c0, w_ih, w_hh, b_ih, b_hh, grad_y):
            y, _, _, cache = ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, return_cache=True)
            grads = ops.lstm_backward(grad_y, None, None, x, h0, c0, w_ih, w_hh, cache)
            return y, grads[0], grads[3], grads[4]

        impls["deepkern"] = deepkern_fwd_bwd
    torch = _torch()
    if torch is None:
        return impls
    modules: Dict[tuple, object] = {}

    def module_for(w_ih, w_hh, b_ih, b_hh):
        key = tuple(int(w.data_ptr()) for w in (w_ih, w_hh, b_ih, b_hh))
        if key not in modules:
            modules[key] = _torch_lstm_module(torch, w_ih, w_hh, b_ih, b_hh, requires_grad=lstm_pass != "fwd")
        return modules[key]

    if lstm_pass == "fwd":
        def torch_fwd(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
            module = module_for(w_ih, w_hh, b_ih, b_hh)
            with torch.no_grad():
                return module(x, (h0[None], c0[None]))[0]

        impls["torch"] = torch_fwd
    else:
        def torch_fwd_bwd(x, h0, c0, w_ih, w_hh, b_ih, b_hh, grad_y):
            module = module_for(w_ih, w_hh, b_ih, b_hh)
            module.zero_grad(set_to_none=True)
            for a in (x, h0, c0):
                a.requires_grad_(True)
                a.grad = None
            y, _ = module(x, (h0[None], c0[None]))
            y.backward(grad_y)
            return y, x.grad, module.weight_ih_l0.grad, module.weight_hh_l0.grad

        impls["torch"] = torch_fwd_bwd
    return impls


def lstm_check(shape: Tuple[int, int, int, int], lstm_pass: str, inputs: tuple) -> float:
    """Largest relative error ``||out - ref|| / ||ref||`` of deepkern's y (and for ``"fwd+bwd"`` of grad_x,
    grad_w_ih, grad_w_hh, grad_b) on ``inputs`` against torch.nn.LSTM in float64 on the same values."""
    from . import ops

    torch = _torch()
    if torch is None:
        raise RuntimeError("lstm_check needs PyTorch for its float64 reference")
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = inputs[:7]
    t64 = [torch.from_numpy(a.astype(np.float64)) for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)]
    backward = lstm_pass == "fwd+bwd"
    module = _torch_lstm_module(torch, *t64[3:], requires_grad=backward)
    xt, h0t, c0t = (a.requires_grad_(backward) for a in t64[:3])

    def rel(got, ref) -> float:
        ref = ref.detach().numpy()
        denom = float(np.linalg.norm(ref)) or 1.0
        return float(np.linalg.norm(np.asarray(got, dtype=np.float64) - ref)) / denom

    with torch.set_grad_enabled(backward):
        y_ref = module(xt, (h0t[None], c0t[None]))[0]
    if not backward:
        return rel(ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh)[0], y_ref)
    grad_y = inputs[7]
    y_ref.backward(torch.from_numpy(grad_y.astype(np.float64)))
    y, _, _, cache = ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, return_cache=True)
    grads = ops.lstm_backward(grad_y, None, None, x, h0, c0, w_ih, w_hh, cache)
    refs = [(y, y_ref), (grads[0], xt.grad), (grads[3], module.weight_ih_l0.grad),
            (grads[4], module.weight_hh_l0.grad), (grads[5], module.bias_ih_l0.grad)]
    return max(rel(a, b) for a, b in refs)


def _lstm_case(shape: Tuple[int, int, int, int], lstm_pass: str, label: str, more: bool = False) -> Case:
    t, b, i, h = shape
    if more:
        group = GROUP_LSTM_FWD_MORE if lstm_pass == "fwd" else GROUP_LSTM_FWD_BWD_MORE
    elif b == 1:
        group = GROUP_LSTM_FWD_B1 if lstm_pass == "fwd" else GROUP_LSTM_FWD_BWD_B1
    else:
        group = GROUP_LSTM_FWD if lstm_pass == "fwd" else GROUP_LSTM_FWD_BWD
    return Case(
        op="lstm", name=f"T={t} B={b} I={i} H={h}", layout=lstm_pass, group=group, shape=shape,
        flops=lstm_flops(shape, lstm_pass), nbytes=lstm_bytes(shape, lstm_pass),
        make_inputs=lambda: make_lstm_inputs(shape, lstm_pass),
        impls=lstm_impls(shape, lstm_pass),
        check=lambda inputs: lstm_check(shape, lstm_pass, inputs),
        label=label,
    )


def lstm_cases(quick: bool = False) -> List[Case]:
    """float32 single-layer LSTMs (LSTM_SHAPES, then LSTM_SHAPES_MORE; ``quick``: T / 5), each forward
    then forward+backward."""
    return [_lstm_case((lstm_quick_t(t) if quick else t, b, i, h), lstm_pass, label, more)
            for more, shapes in ((False, LSTM_SHAPES), (True, LSTM_SHAPES_MORE))
            for t, b, i, h, label in shapes for lstm_pass in LSTM_PASSES]


def _lstm_unavailable() -> Optional[str]:
    if _torch() is None:
        return ('its reference is PyTorch (torch.nn.LSTM), which is not installed '
                '(install the bench extra: pip install ".[bench]")')
    return None


register_suite(Suite(
    name="lstm",
    description=("float32 one-layer LSTM (T, B, I, H), forward and forward+backward (BPTT), vs torch.nn.LSTM; "
                 "the batch-1 case and two more shapes summarised on their own (--quick: T / 5)"),
    cases=lstm_cases,
    summary_groups=(GROUP_LSTM_FWD, GROUP_LSTM_FWD_BWD, GROUP_LSTM_FWD_B1, GROUP_LSTM_FWD_BWD_B1,
                    GROUP_LSTM_FWD_MORE, GROUP_LSTM_FWD_BWD_MORE),
    unavailable=_lstm_unavailable,
))


# ---- optimizer steps -----------------------------------------------------------------------

#: The optimizers of ``deepkern bench --op optim``: name -> (bytes read + written per parameter per
#: step, deepkern's hyperparameters). SGD with momentum reads p, g, buf and writes p, buf (20 B);
#: Adam/AdamW read p, g, m, v and write p, m, v (28 B); RMSprop reads p, g, square_avg and writes
#: p, square_avg (20 B).
OPTIM_RULES = {
    "sgd-momentum": (20, dict(lr=0.01, momentum=0.9)),
    "adam": (28, dict(lr=1e-3)),
    "adamw": (28, dict(lr=1e-3, weight_decay=1e-2)),
    "rmsprop": (20, dict(lr=1e-2)),
}
#: (tensors, parameters per tensor, label): one tensor of 1M, 10M and 100M parameters (the last one
#: DRAM-bound) and a model of 200 small tensors.
OPTIM_SIZES = ((1, 1_000_000, "1M"), (1, 10_000_000, "10M"), (1, 100_000_000, "100M"), (200, 10_000, "200x10k"))
OPTIM_SIZES_QUICK = ((1, 1_000_000, "1M"), (200, 10_000, "200x10k"))
GROUP_OPTIM = "optimizer step"
#: The torch.optim objects of the case being timed (one per rotation set), dropped when the next case
#: starts so their state does not pile up across the 100M cases.
_OPTIM_TORCH: Dict[tuple, object] = {}


def _optim_state_names(rule: str) -> Tuple[str, ...]:
    return {"sgd-momentum": ("momentum_buffer",), "adam": ("exp_avg", "exp_avg_sq"),
            "adamw": ("exp_avg", "exp_avg_sq"), "rmsprop": ("square_avg",)}[rule]


def make_optim_inputs(rule: str, tensors: int, size: int, *, copies: Optional[int] = None,
                      seed: int = 0) -> List[tuple]:
    """Rotation sets, each one flat tuple: ``tensors`` params, then as many grads, then each state's
    list (the momentum buffer and the averages as after a few steps: random, squares positive)."""
    rng = np.random.default_rng(seed)
    n_states = len(_optim_state_names(rule))
    per_param = 4 * (2 + n_states) * tensors * size
    copies = rotation_copies(per_param) if copies is None else copies

    def one_set():
        arrays = [rng.standard_normal(size, dtype=np.float32) for _ in range(2 * tensors)]
        for name in _optim_state_names(rule):
            for _ in range(tensors):
                s = rng.standard_normal(size, dtype=np.float32)
                arrays.append(np.abs(s) if "sq" in name or name == "square_avg" else s)
        return tuple(arrays)
    return [one_set() for _ in range(copies)]


def _optim_split(arrays: tuple, tensors: int) -> List[list]:
    return [list(arrays[k:k + tensors]) for k in range(0, len(arrays), tensors)]


def _torch_optimizer(torch, rule: str, params: list, grads: list):
    hyper = OPTIM_RULES[rule][1]
    tensors = [torch.nn.Parameter(p) for p in params]  # shares the arrays' memory
    for t, g in zip(tensors, grads):
        t.grad = g
    if rule == "sgd-momentum":
        return torch.optim.SGD(tensors, fused=True, **hyper)
    if rule in ("adam", "adamw"):
        return (torch.optim.Adam if rule == "adam" else torch.optim.AdamW)(tensors, fused=True, **hyper)
    return torch.optim.RMSprop(tensors, foreach=True, **hyper)  # PyTorch has no fused RMSprop on the CPU


def optim_impls(rule: str, tensors: int, case_name: str) -> Dict[str, Callable]:
    """Backend name -> the call to time on a (converted) set of :func:`make_optim_inputs`.

    deepkern: one ``ops.<rule>_step_multi`` call over the lists (``ops.<rule>_step`` for one tensor),
    with step 10 (Adam) and a warm momentum buffer (SGD). PyTorch: ``opt.step()`` of a
    ``torch.optim`` optimizer over Parameters sharing the params' memory with ``.grad`` set,
    ``fused=True`` (SGD, Adam, AdamW) or ``foreach=True`` (RMSprop, which has no fused CPU kernel),
    built on the first call (the warm-up, which also creates its state).
    """
    from . import ops

    hyper = OPTIM_RULES[rule][1]
    single = tensors == 1

    def deepkern_step(*arrays):
        lists = _optim_split(arrays, tensors)
        if rule == "sgd-momentum":
            if single:
                return ops.sgd_step(arrays[0], arrays[1], arrays[2], **hyper)
            return ops.sgd_step_multi(*lists, **hyper)
        if rule in ("adam", "adamw"):
            if single:
                fn = ops.adam_step if rule == "adam" else ops.adamw_step
                return fn(*arrays, step=10, **hyper)
            fn = ops.adam_step_multi if rule == "adam" else ops.adamw_step_multi
            return fn(*lists, steps=10, **hyper)
        if single:
            return ops.rmsprop_step(*arrays, **hyper)
        return ops.rmsprop_step_multi(*lists, **hyper)

    impls: Dict[str, Callable] = {"deepkern": deepkern_step}
    torch = _torch()
    if torch is None:
        return impls

    def torch_step(*arrays):
        key = (case_name, int(arrays[0].data_ptr()))
        if key not in _OPTIM_TORCH:
            if any(k[0] != case_name for k in _OPTIM_TORCH):
                _OPTIM_TORCH.clear()
            lists = _optim_split(arrays, tensors)
            _OPTIM_TORCH[key] = _torch_optimizer(torch, rule, lists[0], lists[1])
        return _OPTIM_TORCH[key].step()

    impls["torch"] = torch_step
    return impls


def optim_check(rule: str, tensors: int, inputs: tuple) -> float:
    """Relative error of one deepkern step's displacement against ``torch.optim`` in float64, from
    the set's first param (scaled by 1e-3, so that a step moves it by about its own size and float32's
    rounding of the stored param is not mistaken for an error of the step) and grad, at most 100k
    elements each, and fresh state."""
    from . import ops

    torch = _torch()
    if torch is None:
        raise RuntimeError("optim_check needs PyTorch for its float64 reference")
    p0, g = inputs[0][:100_000] * np.float32(1e-3), inputs[tensors][:100_000].copy()
    hyper = OPTIM_RULES[rule][1]
    tp = torch.nn.Parameter(torch.from_numpy(p0.astype(np.float64)))
    tp.grad = torch.from_numpy(g.astype(np.float64))
    _torch_optimizer(torch, rule, [tp.data], [tp.grad]).step()  # noqa: the Parameter shares tp's memory
    p = p0.copy()
    zeros = [np.zeros_like(p) for _ in _optim_state_names(rule)]
    if rule == "sgd-momentum":
        ops.sgd_step(p, g, zeros[0], first_step=True, **hyper)
    elif rule in ("adam", "adamw"):
        (ops.adam_step if rule == "adam" else ops.adamw_step)(p, g, *zeros, step=1, **hyper)
    else:
        ops.rmsprop_step(p, g, *zeros, **hyper)
    ref = tp.detach().numpy()
    return float(np.linalg.norm(p - ref) / np.linalg.norm(ref - p0))


def _optim_case(rule: str, tensors: int, size: int, label: str) -> Case:
    per_param, _ = OPTIM_RULES[rule]
    name = f"{label} params"
    return Case(
        op="optim", name=name, layout=rule, group=GROUP_OPTIM, shape=(tensors, size), flops=0.0,
        nbytes=float(per_param * tensors * size),
        make_inputs=lambda: make_optim_inputs(rule, tensors, size),
        impls=optim_impls(rule, tensors, f"{rule} {name}"),
        check=lambda inputs: optim_check(rule, tensors, inputs),
        label=f"{tensors} float32 tensor(s) of {size} parameters, {per_param} bytes per parameter",
        metric="bytes",
    )


def optim_cases(quick: bool = False) -> List[Case]:
    """SGD with momentum, Adam, AdamW and RMSprop steps on one tensor of 1M, 10M and 100M float32
    parameters and on 200 tensors of 10k (``quick``: 1M and 200 x 10k)."""
    sizes = OPTIM_SIZES_QUICK if quick else OPTIM_SIZES
    return [_optim_case(rule, tensors, size, label) for tensors, size, label in sizes for rule in OPTIM_RULES]


def _optim_unavailable() -> Optional[str]:
    if _torch() is None:
        return ('its reference is torch.optim, which is not installed (install the bench extra: '
                'pip install ".[bench]")')
    return None


# ---- training epochs -----------------------------------------------------------------------

#: The recipes of ``deepkern bench --op train`` (names in :data:`deepkern.training.RECIPES`).
TRAIN_RECIPES = ("digits-cnn", "sunspots-lstm")
GROUP_TRAIN = "epoch"
#: Seed of the recipes' data split, shuffling and initial weights.
TRAIN_SEED = 0


def _train_recipe(name: str):
    """The recipe ``name`` built as ``deepkern train`` builds it (its default batch size, lr, data and
    optimizer; weights drawn after ``manual_seed(TRAIN_SEED)``), without a progress bar."""
    from . import training
    from .random import manual_seed

    cls = training.RECIPES[name]
    cfg = training.TrainConfig(recipe=name, seed=TRAIN_SEED, progress=False)
    for key, value in cls.defaults.items():
        setattr(cfg, key, type(value)(value))
    manual_seed(TRAIN_SEED)
    recipe = cls(cfg)
    recipe.build()
    return recipe


def _torch_train_model(torch, name: str, recipe):
    """The recipe's model rebuilt with torch.nn (same layers, same parameter names), its weights copied
    from the deepkern model's state_dict so both start equal; with its loss."""
    nn = torch.nn
    if name == "digits-cnn":
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10))
        loss = nn.CrossEntropyLoss()
    elif name == "sunspots-lstm":
        hidden = recipe.models["model"].lstm.hidden_size

        class Sunspots(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(1, hidden, batch_first=True)
                self.head = nn.Linear(hidden, 1)

            def forward(self, x):
                out, _ = self.lstm(x)
                return self.head(out[:, -1])

        model, loss = Sunspots(), nn.MSELoss()
    else:
        raise ValueError(f"no PyTorch twin for recipe {name!r}; known: {TRAIN_RECIPES}")
    state = {k: torch.from_numpy(np.array(v.numpy())) for k, v in recipe.models["model"].state_dict().items()}
    model.load_state_dict(state, strict=True)
    return model, loss


def _train_arrays(recipe):
    """The recipe's training arrays (inputs, targets) and its DataLoader."""
    loader = recipe.loader
    return loader.dataset.arrays, loader


def _epoch_order(loader, epoch: int) -> np.ndarray:
    """The sample order of the deepkern DataLoader's ``epoch`` (the same draw as ``iter(loader)``)."""
    return np.random.default_rng([loader.seed, epoch]).permutation(len(loader.dataset))


class _TrainPair:
    """One recipe in deepkern and its twin in PyTorch, built once (on the first call: the warm-up).

    Each ``deepkern()`` / ``torch()`` call trains one epoch: the recipe's ``train_epoch`` (its
    DataLoader, forward, loss, backward, Adam step per batch) and the same loop in PyTorch over the
    same batches in the same order (the k-th torch epoch visits the samples in the k-th deepkern
    epoch's order, batches indexed out of the same arrays, torch.optim.Adam with the recipe's lr).
    """

    def __init__(self, name: str):
        self.name = name
        self.recipe = None
        self.torch_parts = None
        self.torch_epoch = 0

    def _build(self):
        if self.recipe is None:
            self.recipe = _train_recipe(self.name)
        return self.recipe

    def deepkern(self):
        recipe = self._build()
        return recipe.train_epoch(lambda it, n: it)

    def torch(self):
        torch = _torch()
        recipe = self._build()
        if self.torch_parts is None:
            model, loss_fn = _torch_train_model(torch, self.name, recipe)
            opt = torch.optim.Adam(model.parameters(), lr=recipe.cfg.lr)
            self.torch_parts = (model, loss_fn, opt)
        model, loss_fn, opt = self.torch_parts
        (xs, ys), loader = _train_arrays(recipe)
        order = _epoch_order(loader, self.torch_epoch)
        self.torch_epoch += 1
        model.train()
        total, count, bs = 0.0, 0, loader.batch_size
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            x, y = torch.from_numpy(xs[idx]), torch.from_numpy(ys[idx])
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
            count += len(y)
        return {"train_loss": total / count}


def train_check(name: str) -> float:
    """Relative difference of deepkern's and PyTorch's losses on one batch (the recipe's first, dropout
    off) from the same weights: before a step, and after one Adam step on that batch (the larger of the
    two). float32 rounding gives ~1e-6."""
    from .tensor import Tensor

    torch = _torch()
    if torch is None:
        raise RuntimeError("train_check needs PyTorch")
    recipe = _train_recipe(name)
    model, loss_fn = recipe.models["model"], recipe.loss
    opt = recipe.optimizers["model"]
    t_model, t_loss_fn = _torch_train_model(torch, name, recipe)
    t_opt = torch.optim.Adam(t_model.parameters(), lr=recipe.cfg.lr)
    (xs, ys), loader = _train_arrays(recipe)
    idx = _epoch_order(loader, 0)[:loader.batch_size]
    x, y = xs[idx], ys[idx]
    model.eval()
    t_model.eval()
    errs = []
    for step in range(2):
        opt.zero_grad()
        loss = loss_fn(model(Tensor(x)), Tensor(y))
        t_opt.zero_grad()
        t_loss = t_loss_fn(t_model(torch.from_numpy(x)), torch.from_numpy(y))
        errs.append(abs(loss.item() - t_loss.item()) / max(abs(t_loss.item()), 1e-12))
        if step == 0:
            loss.backward()
            opt.step()
            t_loss.backward()
            t_opt.step()
    return max(errs)


def train_flops(name: str, recipe) -> float:
    """An estimate of one epoch's FLOP: the multiply-adds of the convolutions, the LSTM's two GEMMs per
    step and the linear layers, forward counted once and the backward twice (grad input and grad
    weight); pointwise ops, pooling, the loss and the optimizer are left out."""
    (xs, _), _ = _train_arrays(recipe)
    if name == "digits-cnn":  # 8x8 images: conv 1->32 and 32->64 3x3, 2x2 pool, linear 1024->128->10
        hw = xs.shape[2] * xs.shape[3]
        fwd = 2 * (hw * 32 * 1 * 9 + hw * 64 * 32 * 9 + (hw // 4) * 64 * 128 + 128 * 10)
    elif name == "sunspots-lstm":  # T steps of I inputs, hidden H; linear H->1
        t, i = xs.shape[1], xs.shape[2]
        h = recipe.models["model"].lstm.hidden_size
        fwd = 2 * (t * 4 * h * (i + h) + h)
    else:
        raise ValueError(f"train_flops: unknown recipe {name!r}")
    return 3.0 * fwd * len(xs)


def _train_case(name: str) -> Case:
    pair = _TrainPair(name)
    recipe = pair._build()  # the data and the model, drawn once with fixed seeds
    samples = len(recipe.loader.dataset)
    return Case(
        op="train", name=name, layout=f"batch {recipe.cfg.batch_size}", group=GROUP_TRAIN, shape=(samples,),
        flops=train_flops(name, recipe), nbytes=0.0,
        make_inputs=lambda: [()],
        impls={"deepkern": pair.deepkern, "torch": pair.torch},
        check=lambda inputs: train_check(name),
        label=f"one epoch of deepkern train {name}: {samples} samples, Adam lr {recipe.cfg.lr}",
    )


def train_cases(quick: bool = False) -> List[Case]:
    """One case per recipe of TRAIN_RECIPES: one training epoch (``quick`` changes only the repeats)."""
    return [_train_case(name) for name in TRAIN_RECIPES]


def _train_unavailable() -> Optional[str]:
    if _torch() is None:
        return ('its reference is the same models in PyTorch (torch.nn, torch.optim.Adam), which is not '
                'installed (install the bench extra: pip install ".[bench]")')
    import importlib.util

    missing = [name for name in ("sklearn", "statsmodels") if importlib.util.find_spec(name) is None]
    if missing:
        return (f"the recipes' data ship with scikit-learn and statsmodels; missing: {', '.join(missing)} "
                '(pip install ".[train]")')
    return None


register_suite(Suite(
    name="optim",
    description=("float32 optimizer steps in place (SGD with momentum, Adam, AdamW, RMSprop) on 1M/10M/100M "
                 "parameters and 200 x 10k, vs torch.optim (fused=True; RMSprop foreach=True); GB/s of bytes "
                 "read + written (--quick: 1M and 200 x 10k)"),
    cases=optim_cases,
    unavailable=_optim_unavailable,
    in_all=False,
))


register_suite(Suite(
    name="train",
    description=("seconds per training epoch (forward, loss, backward, Adam step over the training set, the "
                 "recipe's batch size and data order) of `deepkern train digits-cnn` and `sunspots-lstm` vs the "
                 "same models in torch.nn/torch.optim from the same weights; the table's 'ms' is ms per epoch "
                 "and xtorch = torch epoch / deepkern epoch, so the issue's goal (deepkern s / torch s <= 1.0) "
                 "is xtorch >= 1; GFLOP/s from an estimate of the epoch's conv/LSTM/linear FLOP "
                 "(benchmark.train_flops), %peak/%roof against the FMA peak"),
    cases=train_cases,
    summary_groups=(GROUP_TRAIN,),
    unavailable=_train_unavailable,
))


# --------------------------------------------------------------------------------------------
# Running and reporting
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """deepkern against one reference on one case at one thread count (times in seconds)."""

    op: str
    case: str
    shape: Tuple[int, ...]
    layout: str
    group: str
    threads: int
    deepkern_s: float
    deepkern_min_s: float
    deepkern_max_s: float
    reference: str
    reference_s: float
    reference_min_s: float
    reference_max_s: float
    ratio: float            # reference_s / deepkern_s: > 1 means deepkern is faster
    gflops: float           # deepkern
    reference_gflops: float
    peak_gflops: float      # measured FMA peak at `threads`
    pct_peak: float         # deepkern GFLOP/s as % of the FMA peak
    roofline_gflops: float  # min(FMA peak, intensity x copy GB/s)
    pct_roofline: float
    repeats: int
    rel_err: Optional[float] = None
    label: str = ""
    other_cores: Optional[float] = None  # cores other processes kept busy while this line was timed
    #: The unit of gflops, reference_gflops, peak_gflops and roofline_gflops: "GFLOP/s", or "GB/s" for a
    #: memory-bound case (then the peak and the roofline are the measured copy bandwidth).
    unit: str = "GFLOP/s"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclasses.dataclass
class Report:
    rows: List[Row]
    machine: dict
    peaks: Dict[int, Peak]
    notes: List[str]
    wall_s: float = 0.0


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


#: Lines timed while other processes kept more than this many cores busy are marked noisy.
NOISY_CORES = 0.25


def machine_info() -> dict:
    """CPU, ISA, library versions, date: the context a benchmark result needs."""
    from . import __version__

    info = {
        "cpu": _C.cpu_brand(),
        "isa": _C.active_isa(),
        "isa_detected": _C.detected_isa(),
        "gemm_kernel_f32": _C.gemm_kernel_name(False),
        "cores": os.cpu_count(),
        "default_threads": _C.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "deepkern": __version__,
        "numpy": _numpy_blas_version(),
        "torch": (_torch().__version__ if _torch() is not None else None),
        "threadpoolctl": threadpoolctl_available(),
        "load_average": _load_average(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]) if sys.argv else "",
    }
    return info


def _log(progress, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def run_suite(suite: Suite, threads: Sequence[int], *, quick: bool = False, repeats: Optional[int] = None,
              references: Optional[Sequence[str]] = None, progress: bool = True,
              peak_copy_bytes: Optional[int] = None, check: bool = True) -> Report:
    """Time every case of ``suite`` at each thread count on deepkern and each reference.

    Loops case by case (inputs are made once per case), then thread count, then :data:`ROUNDS` rounds
    of every library in alternating order (one round with ``quick``), so each comparison is taken
    at nearly the same moments. ``references`` defaults to every installed one.
    """
    start = time.perf_counter()
    notes: List[str] = []
    whole_run = OtherLoad()
    machine = machine_info()  # dated when the run starts
    reason = suite.unavailable()
    if reason:
        return Report(rows=[], machine=machine, peaks={}, notes=[f"{suite.name} skipped: {reason}"],
                      wall_s=time.perf_counter() - start)
    threads = [int(t) for t in threads]
    all_backends = [b for b in backends() if b.available()]
    ref_names = [b.name for b in all_backends if b.name != "deepkern"]
    if references is not None:
        ref_names = [r for r in ref_names if r in references]
    if _torch() is None:
        notes.append('PyTorch is not installed: comparing with NumPy only (install the bench extra: pip install ".[bench]").')
    if not threadpoolctl_available():
        default = _C.get_num_threads()
        skipped = [t for t in threads if t != default]
        if skipped:
            notes.append(
                f"threadpoolctl is not installed, so NumPy's BLAS threads cannot be set: only the default "
                f"thread count ({default}) is compared fairly; skipped threads={skipped} (pip install threadpoolctl)."
            )
        else:
            notes.append("threadpoolctl is not installed: NumPy runs at its default thread count.")
        threads = [t for t in threads if t == default] or [default]
    names = ["deepkern"] + ref_names
    used = {b.name: b for b in all_backends if b.name in names}

    copy_bytes = peak_copy_bytes if peak_copy_bytes is not None else ((128 << 20) if quick else (512 << 20))
    peaks = {}
    for t in threads:
        _log(progress, f"measuring peak at {t} thread(s) ...")
        peaks[t] = measure_peak(t, copy_bytes=copy_bytes, fma_seconds=0.1 if quick else 0.2)

    rows: List[Row] = []
    cases = suite.cases(quick)
    rounds = 1 if quick else ROUNDS
    timer_kw = (dict(target_s=0.05, max_repeats=20, max_block_s=1.0) if quick else
                dict(target_s=0.2 / rounds, min_repeats=2, max_repeats=100 // rounds, max_block_s=2.0 / rounds))
    block_repeats = None if repeats is None else max(1, -(-int(repeats) // rounds))
    prev_threads = max(threads)
    # A suite that does not time NumPy keeps its BLAS at one thread: re-sized OpenBLAS workers
    # otherwise spin on the cores the timed libraries use (measured: LSTM batch 1 at 2 threads
    # 0.42 ms instead of 0.32 ms after the 1-thread blocks).
    blas_limit = contextlib.ExitStack()
    if "numpy" in used and not any("numpy" in case.impls for case in cases):
        blas_limit.enter_context(used["numpy"].threads(1))
    with blas_limit:
        for index, case in enumerate(cases, 1):
            np_inputs = case.make_inputs()
            converted = {name: [tuple(used[name].convert(x) for x in s) for s in np_inputs] for name in names}
            rel_err = None
            if check and case.check is not None:
                with limit_threads(max(threads), ["deepkern"]):
                    rel_err = case.check(np_inputs[0])
                if rel_err > 1e-4:
                    notes.append(f"{case.op} {case.name} {case.layout}: deepkern's relative error {rel_err:.2e} vs float64")
            for t in threads:
                line_load = OtherLoad()
                timed = [name for name in names if name in case.impls]
                blocks: Dict[str, List[Timing]] = {name: [] for name in timed}
                prev_name = None
                for r in range(rounds):
                    for name in (timed if r % 2 == 0 else timed[::-1]):
                        spinning = prev_name is None or prev_name == "numpy" or t != prev_threads
                        pause = (PAUSE_S if max(t, prev_threads) > 1 else PAUSE_1T_S) if spinning else 0.0
                        count = block_repeats if r == 0 else blocks[name][0].repeats  # later rounds: as many
                        with used[name].threads(t):
                            blocks[name].append(time_fn(case.impls[name], converted[name], repeats=count,
                                                        warmup=1 if r == 0 else 0, pause_s=pause, **timer_kw))
                        prev_threads, prev_name = t, name
                timings: Dict[str, Timing] = {name: Timing.merged(b) for name, b in blocks.items()}
                other = line_load.cores()
                dk = timings["deepkern"]
                peak = peaks[t]
                if case.metric == "bytes":
                    work, unit, peak_rate, roof = case.nbytes, "GB/s", peak.copy_gbps, peak.copy_gbps
                else:
                    work, unit, peak_rate = case.flops, "GFLOP/s", peak.fma_gflops
                    roof = peak.roofline_gflops(case.flops, case.nbytes)
                gflops = work / dk.median / 1e9
                for ref in ref_names:
                    if ref not in timings:
                        continue
                    rt = timings[ref]
                    rows.append(Row(
                        op=case.op, case=case.name, shape=tuple(case.shape), layout=case.layout, group=case.group,
                        threads=t, deepkern_s=dk.median, deepkern_min_s=dk.min, deepkern_max_s=dk.max,
                        reference=ref, reference_s=rt.median, reference_min_s=rt.min, reference_max_s=rt.max,
                        ratio=rt.median / dk.median, gflops=gflops, reference_gflops=work / rt.median / 1e9,
                        peak_gflops=peak_rate, pct_peak=100.0 * gflops / peak_rate,
                        roofline_gflops=roof, pct_roofline=100.0 * gflops / roof, repeats=dk.repeats,
                        rel_err=rel_err, label=case.label, other_cores=other, unit=unit,
                    ))
                parts = ", ".join(f"{name} {timings[name].median * 1e3:.3f} ms" for name in timings)
                noisy = f" (noisy: other processes used {other:.2f} cores)" if other and other > NOISY_CORES else ""
                _log(progress, f"[{index}/{len(cases)}] {case.op} {case.name} {case.layout} threads={t}: {parts}{noisy}")
            del np_inputs, converted
    other = whole_run.cores()
    machine["other_processes_cores"] = other
    noisy_lines = len({(r.case, r.layout, r.threads) for r in rows
                       if r.other_cores is not None and r.other_cores > NOISY_CORES})
    if other is not None and (other > 0.1 or noisy_lines):
        notes.append(f"other processes kept {other:.2f} of {os.cpu_count()} cores busy on average during the run; "
                     f"{noisy_lines} line(s) marked * were timed while they used more than {NOISY_CORES} core: "
                     f"those times are noisy.")
    return Report(rows=rows, machine=machine, peaks=peaks, notes=notes, wall_s=time.perf_counter() - start)


def _geomean(values: Sequence[float]) -> float:
    return float(math.exp(sum(math.log(v) for v in values) / len(values))) if values else float("nan")


def summarize(rows: Sequence[Row], groups: Optional[Sequence[str]] = None) -> List[dict]:
    """Geomean throughput ratio (reference time / deepkern time) per op, group, threads, reference."""
    buckets: Dict[tuple, List[Row]] = {}
    for row in rows:
        if groups and row.group not in groups:
            continue
        buckets.setdefault((row.op, row.group, row.threads, row.reference), []).append(row)
    out = []
    for (op, group, threads, ref), rs in buckets.items():
        out.append({
            "op": op, "group": group, "threads": threads, "reference": ref, "cases": len(rs),
            "geomean_ratio": _geomean([r.ratio for r in rs]),
            "geomean_gflops": _geomean([r.gflops for r in rs]),
            "geomean_pct_peak": _geomean([r.pct_peak for r in rs]),
            "unit": rs[0].unit,
        })
    order = {g: i for i, g in enumerate(groups or [])}
    out.sort(key=lambda d: (d["op"], order.get(d["group"], len(order)), d["group"], d["threads"], d["reference"]))
    return out


def _fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.4f}" if ms < 0.1 else f"{ms:.3f}" if ms < 100 else f"{ms:.1f}"


def format_table(rows: Sequence[Row]) -> str:
    """Plain-text table: one line per case and thread count, the references side by side."""
    refs: List[str] = []
    for row in rows:
        if row.reference not in refs:
            refs.append(row.reference)
    lines: Dict[tuple, Dict[str, Row]] = {}
    for row in rows:
        lines.setdefault((row.op, row.case, row.layout, row.threads), {})[row.reference] = row
    # Memory-bound suites (every row in GB/s) show % of the copy bandwidth; the roofline is the same.
    by_bytes = bool(rows) and all(row.unit == "GB/s" for row in rows)
    header = ["op", "case", "layout", "thr", "deepkern ms"] + (["GB/s", "%copy"] if by_bytes else
                                                               ["GFLOP/s", "%peak", "%roof"])
    for ref in refs:
        header += [f"{ref} ms", f"x{ref}"]
    header.append("")
    table = [header]
    for (op, case, layout, threads), by_ref in lines.items():
        first = next(iter(by_ref.values()))
        cells = [op, case, layout, str(threads), _fmt_ms(first.deepkern_s), f"{first.gflops:.1f}",
                 f"{first.pct_peak:.0f}"] + ([] if by_bytes else [f"{first.pct_roofline:.0f}"])
        for ref in refs:
            r = by_ref.get(ref)
            cells += ([_fmt_ms(r.reference_s), f"{r.ratio:.2f}"] if r else ["-", "-"])
        noisy = first.other_cores is not None and first.other_cores > NOISY_CORES
        cells.append("*" if noisy else "")
        table.append(cells)
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    left = {0, 1, 2}
    out = []
    for j, line in enumerate(table):
        text = "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
        out.append(text.rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths).rstrip())
    legend = ("x<ref> = <ref> time / deepkern time (>1: deepkern faster); " +
              ("GB/s = bytes read + written / time; %copy = as % of the measured copy bandwidth; " if by_bytes else
               "%peak = deepkern GFLOP/s as % of the measured FMA peak; %roof = as % of min(FMA peak, intensity x "
               "copy GB/s); ") +
              f"* = timed while other processes used > {NOISY_CORES} core (noisy)")
    return "\n".join(out + [legend])


def format_peaks(peaks: Dict[int, Peak]) -> str:
    return "\n".join(
        f"peak at {p.threads} thread(s): FMA {p.fma_gflops:.1f} GFLOP/s ({p.isa}), copy {p.copy_gbps:.1f} GB/s "
        f"({p.copy_bytes >> 20} MB buffers)"
        for _, p in sorted(peaks.items())
    )


def format_summary(summary: Sequence[dict]) -> str:
    if not summary:
        return ""
    lines = ["geomean throughput ratio (reference time / deepkern time; >1: deepkern faster):"]
    keys: Dict[tuple, List[dict]] = {}
    for s in summary:
        keys.setdefault((s["op"], s["group"], s["threads"]), []).append(s)
    for (op, group, threads), ss in keys.items():
        parts = "  ".join(f"vs {s['reference']} {s['geomean_ratio']:.2f}x" for s in ss)
        lines.append(f"  {op:5s} {group:14s} threads={threads}  {parts}  "
                     f"({ss[0]['cases']} cases, deepkern {ss[0]['geomean_gflops']:.0f} {ss[0]['unit']}, "
                     f"{ss[0]['geomean_pct_peak']:.0f}% of {'copy bandwidth' if ss[0]['unit'] == 'GB/s' else 'peak'})")
    return "\n".join(lines)


def to_json(report: Report, groups: Optional[Sequence[str]] = None) -> dict:
    """The report as JSON-able dicts: machine (with the peaks), rows, summary, notes."""
    machine = dict(report.machine)
    machine["peaks"] = [dataclasses.asdict(p) for _, p in sorted(report.peaks.items())]
    return {
        "machine": machine,
        "rows": [r.to_dict() for r in report.rows],
        "summary": summarize(report.rows, groups),
        "notes": list(report.notes),
        "wall_s": report.wall_s,
    }
