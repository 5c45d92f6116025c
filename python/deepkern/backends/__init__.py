"""Backends: where arrays live and which kernels run on them.

A backend (:class:`~deepkern.backends.base.Backend`) is one kind of device: its array type,
allocation, copies to and from host memory, and one entry per kernel. The ops, tensors and layers
take the backend from the arrays themselves (:func:`backend_of`: their ``__dlpack_device__`` or
their type), never from a global setting, so work on a device's arrays runs that device's kernels
and leaves its results there. A new device is one module defining a backend plus one
:func:`register` line at the end of this file.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import cuda as _cuda_backend
from .base import DLPACK_CPU, DLPACK_CUDA, KERNELS, Backend
from .cpu import CPUBackend

__all__ = [
    "Backend",
    "KERNELS",
    "Device",
    "CPU_DEVICE",
    "register",
    "get",
    "names",
    "backend_of",
    "device_of",
    "is_on",
    "to_device",
    "as_array",
]

_NDARRAY = np.ndarray
#: Device types users may name before a backend for them is registered.
_KNOWN_DEVICE_TYPES = {"cpu": DLPACK_CPU, "cuda": DLPACK_CUDA}
_BACKENDS: dict = {}  # name -> Backend


class Device:
    """Where a tensor's data lives: ``Device("cpu")``, ``Device("cuda", 0)`` or ``Device("cuda:1")``."""

    __slots__ = ("type", "index")

    def __init__(self, spec="cpu", index=None):
        if isinstance(spec, Device):
            spec, index = spec.type, spec.index
        kind, _, num = str(spec).partition(":")
        if kind not in _KNOWN_DEVICE_TYPES and kind not in _BACKENDS:
            known = sorted(set(_KNOWN_DEVICE_TYPES) | set(_BACKENDS))
            raise ValueError(f"device must be one of {', '.join(known)} (with an optional ':N'), got {spec!r}")
        if num:
            if not num.isdigit():
                raise ValueError(f"device: the index in {spec!r} must be a non-negative int")
            index = int(num)
        elif index is not None:
            if isinstance(index, bool) or not isinstance(index, numbers.Integral) or index < 0:
                raise ValueError(f"device: index must be a non-negative int or None, got {index!r}")
            index = int(index)
        self.type = kind
        self.index = index

    def __eq__(self, other):
        try:
            other = Device(other)
        except ValueError:
            return False
        return self.type == other.type and (self.index or 0) == (other.index or 0)

    def __hash__(self):
        return hash((self.type, self.index or 0))

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"


CPU_DEVICE = Device("cpu")


def register(backend: Backend) -> Backend:
    """Makes ``backend`` the one for its device type (``backend.name``, ``backend.device_type``);
    returns it. A device type has one backend."""
    for other in _BACKENDS.values():
        if other.name == backend.name or other.device_type == backend.device_type:
            raise ValueError(
                f"register: {backend!r} (DLPack device type {backend.device_type}) clashes with the "
                f"registered {other!r} (DLPack device type {other.device_type})"
            )
    _BACKENDS[backend.name] = backend
    return backend


def get(name) -> Backend:
    """The backend of device type ``name`` ('cpu', 'cuda'; a :class:`Device` or 'cuda:1' names its
    type); RuntimeError when deepkern has none for it."""
    kind = name.type if isinstance(name, Device) else str(name).partition(":")[0]
    backend = _BACKENDS.get(kind)
    if backend is None:
        why = ""
        if kind == "cuda":  # say why the GPU backend is not there (no CUDA module, driver or device)
            from ..cuda import unavailable_reason

            why = f": {unavailable_reason()}"
        raise RuntimeError(f"no deepkern backend for device '{name}' (available: {', '.join(_BACKENDS)}){why}")
    return backend


def names() -> list:
    """The device types that have a backend, e.g. ``['cpu']``."""
    return list(_BACKENDS)


def _dlpack_device(array) -> tuple:
    """(DLPack device type, index) of ``array``; host data without ``__dlpack_device__`` (Python
    numbers and lists, NumPy scalars) is on the CPU."""
    report = getattr(array, "__dlpack_device__", None)
    if report is None:
        return DLPACK_CPU, 0
    kind, index = report()
    return int(kind), int(index)


def _device_name(kind: int, index: int) -> str:
    """A DLPack device as users write it: 'cpu', 'cuda:0' ('DLPack device type 9:0' if unknown)."""
    names_by_type = {code: name for name, code in _KNOWN_DEVICE_TYPES.items()}
    names_by_type.update((b.device_type, b.name) for b in _BACKENDS.values())
    name = names_by_type.get(kind, f"DLPack device type {kind}")
    return name if kind == DLPACK_CPU else f"{name}:{index}"


def _describe(array) -> str:
    """``array``'s device, type and shape, for an error message."""
    return f"{_device_name(*_dlpack_device(array))} ({type(array).__name__} of shape {np.shape(array)})"


def backend_of(*arrays, op: str) -> Backend:
    """The backend of ``arrays``, which must all be on one device (RuntimeError naming ``op`` and
    both devices otherwise). None entries are skipped; Python numbers and lists count as CPU data."""
    for array in arrays:
        if type(array) is not _NDARRAY and array is not None:
            break
    else:  # NumPy arrays only: the common case, decided without asking each array
        return _CPU
    first = first_array = None
    for array in arrays:
        if array is None:
            continue
        device = _dlpack_device(array)
        if first is None:
            first, first_array = device, array
        elif device != first:
            raise RuntimeError(
                f"{op}: expected all arrays on the same device, found {_describe(first_array)} and {_describe(array)}"
            )
    for backend in _BACKENDS.values():
        if backend.device_type == first[0]:
            return backend
    raise RuntimeError(
        f"{op}: no deepkern backend for arrays on {_device_name(*first)} (available: {', '.join(_BACKENDS)})"
    )


def device_of(array) -> Device:
    """The :class:`Device` ``array`` is on."""
    if type(array) is _NDARRAY:
        return CPU_DEVICE
    backend = backend_of(array, op="device_of")
    return Device(backend.name, backend.index(array))


def is_on(array, device: Device) -> bool:
    """Whether ``array`` is on ``device`` (whose index None stands for any device of its type)."""
    backend = backend_of(array, op="is_on")
    return backend.name == device.type and device.index in (None, backend.index(array) or 0)


def to_device(array, device, non_blocking=False):
    """``array`` on ``device`` (a :class:`Device` or a string such as 'cpu' or 'cuda:1'): the array
    itself when it is there already, else a copy through host memory (``non_blocking``: a copy from
    pinned host memory to a GPU is queued without waiting)."""
    target = device if isinstance(device, Device) else Device(device)
    destination = get(target.type)
    if is_on(array, target):
        return array
    host = backend_of(array, op="to_device").to_cpu(array)
    return destination.from_cpu(host, target.index, non_blocking=non_blocking)


def as_array(data):
    """``data`` itself when it is an array of a registered backend, else ``numpy.asarray(data)``."""
    if isinstance(data, _NDARRAY):
        return data
    for backend in _BACKENDS.values():
        if isinstance(data, backend.array_type):
            return data
    return np.asarray(data)


_CPU = register(CPUBackend())
if _cuda_backend.usable():
    register(_cuda_backend.CUDABackend())
