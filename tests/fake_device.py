"""A fake second device for the tests: host memory posing as another device.

Its arrays (FakeArray) are NumPy arrays whose ``__dlpack_device__`` reports DLPack's extension device
type; its backend allocates FakeArrays and runs the CPU's kernels on them, recording each call and
refusing host arrays beside them. Code that allocates with NumPy where it should ask the arrays'
backend therefore mixes devices, which the ops refuse.
"""

from __future__ import annotations

import numpy as np
from deepkern.backends import KERNELS, Backend
from deepkern.backends.cpu import CPUBackend

FAKE_TYPE = 12  # DLPack's kDLExtDev: "reserved extension device type, used for quickly testing extension devices"


class FakeArray(np.ndarray):
    """Host memory that says it is on the fake device. As a device array library's arrays do (CuPy's),
    NumPy functions, arithmetic and indexing give arrays on its device (0-d ones, never NumPy
    scalars); allocations that start from no array (``np.zeros(shape)``) and ``np.ascontiguousarray``
    give host arrays, as they would there."""

    def __dlpack_device__(self):
        return FAKE_TYPE, 0

    def __array_function__(self, func, types, args, kwargs):
        return _on_fake(super().__array_function__(func, types, args, kwargs))

    def __array_wrap__(self, array, context=None, return_scalar=False):
        return super().__array_wrap__(array, context, False)

    def __getitem__(self, key):
        item = super().__getitem__(key)
        return item if isinstance(item, np.ndarray) else np.asarray(item).view(FakeArray)


def _on_fake(result):
    if isinstance(result, (tuple, list)):
        return type(result)(_on_fake(r) for r in result)
    return result.view(FakeArray) if type(result) is np.ndarray else result


def fake(array) -> FakeArray:
    """A copy of ``array`` on the fake device."""
    return np.array(array).view(FakeArray)


class FakeBackend(Backend):
    """The fake device: FakeArray storage and, of ``kernels``, the CPU's kernels; ``calls`` lists
    the kernels run. Every float array a kernel gets must be a FakeArray."""

    name = "fake"
    device_type = FAKE_TYPE
    array_type = FakeArray

    def __init__(self, kernels=KERNELS):
        self.calls = []
        for name in kernels:
            setattr(self, name, self._delegate(name))

    def _delegate(self, name):
        cpu_kernel = getattr(CPUBackend, name)

        def run(*args):
            self.calls.append(name)
            arrays = [
                a
                for arg in args
                for a in (arg if isinstance(arg, list) else [arg])
                if isinstance(a, np.ndarray) and a.dtype.kind == "f"
            ]
            strays = [a.shape for a in arrays if not isinstance(a, FakeArray)]
            assert not strays, f"{name} got host arrays of shapes {strays} beside fake-device ones"
            cpu_kernel(*[_as_host(arg) for arg in args])

        return run

    def empty(self, shape, dtype):
        return np.empty(shape, dtype).view(FakeArray)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype).view(FakeArray)

    def full(self, shape, value, dtype):
        return np.full(shape, value, dtype).view(FakeArray)

    def ascontiguousarray(self, array):
        return np.ascontiguousarray(array).view(FakeArray)

    def to_cpu(self, array):
        return np.array(array)

    def from_cpu(self, array, index=None, non_blocking=False):
        return fake(array)


def _as_host(arg):
    """A kernel argument with FakeArrays seen as the NumPy arrays (same memory) the CPU kernel takes."""
    if isinstance(arg, list):
        return [_as_host(a) for a in arg]
    return arg.view(np.ndarray) if isinstance(arg, FakeArray) else arg
