"""The CUDA backend: :class:`deepkern._cuda.DeviceArray` in GPU memory.

``deepkern._cuda`` is absent when the package was built without nvcc; importing it can also fail
on an unusual system. Either way deepkern keeps working on the CPU and ``import_error`` says why.
The backend is registered only where the module imports and a GPU is visible (:func:`usable`).
It allocates and copies; kernel entries (``gemm``, ``conv2d_forward``, ...) come later, and until
then the seam's NotImplementedError names each missing one. Elementwise arithmetic and reductions
reach the GPU through NumPy's own protocols, which ``cuda_numpy`` attaches to DeviceArray here.
"""

from __future__ import annotations

import numpy as np

from .base import DLPACK_CUDA, Backend

try:
    from .. import _cuda  # type: ignore[attr-defined]

    import_error = None
    from . import cuda_numpy

    cuda_numpy.install(_cuda)
except ImportError as exc:  # not built, or its shared-library dependencies are missing
    _cuda = None
    import_error = str(exc)


def usable() -> bool:
    """True when the CUDA module imports and sees at least one GPU. Never raises."""
    if _cuda is None:
        return False
    try:
        return _cuda.device_count() > 0
    except Exception:  # a broken driver must not break the CPU package
        return False


def _shape(shape) -> tuple:
    return (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)


class CUDABackend(Backend):
    """GPU memory (``deepkern._cuda.DeviceArray``): allocation from deepkern's caching allocator,
    copies to and from the host; arrays are made on device 0 unless ``from_cpu`` is given another."""

    name = "cuda"
    device_type = DLPACK_CUDA

    def __init__(self):
        self.array_type = _cuda.DeviceArray

    def empty(self, shape, dtype):
        return _cuda.empty(_shape(shape), np.dtype(dtype))

    def zeros(self, shape, dtype):
        return _cuda.full(_shape(shape), 0, np.dtype(dtype))

    def full(self, shape, value, dtype):
        return _cuda.full(_shape(shape), value, np.dtype(dtype))

    def ascontiguousarray(self, array):
        return array if array.is_contiguous() else array.copy()

    def to_cpu(self, array) -> np.ndarray:
        return array.to_cpu()

    def from_cpu(self, array, index=None):
        return _cuda.from_cpu(array, 0 if index is None else int(index))

    def index(self, array):
        return array.device_index
