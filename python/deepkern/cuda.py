"""GPU queries. None of these raise: without a GPU they report none."""

from __future__ import annotations

from .backends.cuda import _cuda, import_error


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
