"""GPUs: queries, memory, streams and events.

The queries (``is_available``, ``device_count``, ``memory_allocated``, ...) never raise: without a
GPU they report none. What needs a GPU (``synchronize``, ``Stream``, ``Event``, ``from_dlpack``)
raises RuntimeError saying why there is none.

Memory comes from deepkern's caching allocator: a freed array's block is kept for the next
allocation on the same stream (size classes: multiples of 512 bytes up to 1 MiB, of 2 MiB above;
a cached block up to twice the request is reused), so ops do not call cudaMalloc each time. When
cudaMalloc fails, the cache is emptied and the allocation retried once; then
:class:`OutOfMemoryError` (a MemoryError) gives the size asked and the device's free memory.
"""

from __future__ import annotations

from .backends.cuda import _cuda, import_error

__all__ = [
    "is_compiled",
    "compiled_archs",
    "device_count",
    "is_available",
    "unavailable_reason",
    "get_device_name",
    "get_device_properties",
    "memory_allocated",
    "memory_reserved",
    "memory_stats",
    "empty_cache",
    "pinned_memory_stats",
    "empty_pinned_cache",
    "mem_get_info",
    "synchronize",
    "Stream",
    "Event",
    "OutOfMemoryError",
    "DeviceArray",
    "from_dlpack",
]


def is_compiled() -> bool:
    """True when the package was built with its CUDA module."""
    return _cuda is not None


def compiled_archs() -> list[str]:
    """CUDA architectures the module was compiled for, e.g. ``['80', '90']``."""
    if _cuda is None:
        return []
    return [a for a in _cuda.compiled_archs.split(",") if a]


def device_count() -> int:
    """Number of visible GPUs; 0 without the CUDA module, a driver or a device."""
    if _cuda is None:
        return 0
    try:
        return int(_cuda.device_count())
    except Exception:  # a broken driver must not break the CPU package
        return 0


def is_available() -> bool:
    """True when deepkern can run kernels on a GPU. Never raises."""
    return device_count() > 0


def unavailable_reason() -> str:
    """Why :func:`is_available` is False ('' when it is True)."""
    if _cuda is None:
        return f"deepkern was built without CUDA ({import_error})"
    try:
        return _cuda.unavailable_reason()
    except Exception as exc:
        return str(exc)


def get_device_name(index: int = 0) -> str:
    """Name of GPU ``index``; raises ValueError when there is no such GPU."""
    return get_device_properties(index)["name"]


def get_device_properties(index: int = 0) -> dict:
    """Name, compute capability and memory of GPU ``index``."""
    count = device_count()
    if not 0 <= index < count:
        raise ValueError(f"device index {index} is out of range: {count} CUDA device(s) visible")
    return dict(_cuda.device_info(index))


def _require_gpu():
    """The CUDA module, when a GPU is usable; RuntimeError saying why not otherwise."""
    if not is_available():
        raise RuntimeError(f"CUDA is not available: {unavailable_reason()}")
    return _cuda


def memory_stats(device: int | None = None) -> dict:
    """The caching allocator's counters for GPU ``device`` (default: the current one):
    ``allocated`` (bytes of the blocks arrays hold, size-class rounded), ``reserved`` (those plus
    the cached blocks: what deepkern took with cudaMalloc), ``cuda_mallocs`` and ``cache_hits``.
    All zero without a GPU."""
    if not is_available():
        return {"allocated": 0, "reserved": 0, "cuda_mallocs": 0, "cache_hits": 0}
    return dict(_cuda.memory_stats(device))


def memory_allocated(device: int | None = None) -> int:
    """Bytes of GPU memory held by arrays on ``device`` (size-class rounded); 0 without a GPU."""
    return memory_stats(device)["allocated"]


def memory_reserved(device: int | None = None) -> int:
    """Bytes deepkern holds from cudaMalloc on ``device``: arrays plus the cache; 0 without a GPU."""
    return memory_stats(device)["reserved"]


def mem_get_info(device: int | None = None) -> tuple:
    """(free, total) bytes of GPU ``device`` as the driver reports them; (0, 0) without a GPU."""
    return tuple(_cuda.mem_get_info(device)) if is_available() else (0, 0)


def empty_cache() -> None:
    """Returns every cached block to the driver (arrays in use keep theirs); no-op without a GPU."""
    if is_available():
        _cuda.empty_cache()


def pinned_memory_stats() -> dict:
    """The pinned host memory cache's counters (``Tensor.pin_memory``, ``DataLoader(pin_memory=True)``):
    ``allocated`` and ``reserved`` bytes, ``host_allocs`` (cudaHostAlloc calls), ``cache_hits``, and
    ``waiting_on_copies`` (cached blocks passed over because a copy from them was still running).
    All zero without a GPU."""
    if not is_available():
        return {"allocated": 0, "reserved": 0, "host_allocs": 0, "cache_hits": 0, "waiting_on_copies": 0}
    return dict(_cuda.pinned_memory_stats())


def empty_pinned_cache() -> None:
    """Frees the cached pinned host blocks that no array and no running copy uses; no-op without a GPU."""
    if is_available():
        _cuda.empty_pinned_cache()


def synchronize(device: int | None = None) -> None:
    """Waits for all work queued on GPU ``device`` (default: the current one)."""
    _require_gpu().synchronize(device)


def from_dlpack(obj):
    """A :class:`DeviceArray` sharing the memory of ``obj`` (a PyTorch or CuPy array, anything with
    ``__dlpack__`` on a CUDA device); no copy."""
    return _require_gpu().DeviceArray.from_dlpack(obj)


class _NeedsGPU:
    """Stands for a CUDA class where there is no usable GPU: creating one is a RuntimeError."""

    def __init__(self, *args, **kwargs):
        _require_gpu()


if is_available():
    Stream = _cuda.Stream
    Event = _cuda.Event
else:

    class Stream(_NeedsGPU):
        """A CUDA stream (there is no usable GPU)."""

    class Event(_NeedsGPU):
        """A CUDA event (there is no usable GPU)."""


if _cuda is not None:
    DeviceArray = _cuda.DeviceArray
    OutOfMemoryError = _cuda.OutOfMemoryError
else:

    class DeviceArray(_NeedsGPU):
        """An array in GPU memory (this build has no CUDA module)."""

    class OutOfMemoryError(MemoryError):
        """GPU memory exhausted."""
