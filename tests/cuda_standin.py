"""A stand-in for deepkern._cuda's elementwise functions, in host memory, so the NumPy dispatch of
device arrays (deepkern/backends/cuda_numpy.py) is tested on machines without a GPU.

``StandInArray`` has the DeviceArray methods the dispatch uses (views, copies, ``astype``) over a
NumPy array; ``KERNELS`` has ``empty``/``full`` and the kernel entries, computed with NumPy after
the checks the real binding makes (array inputs of one dtype that the compiled module has a kernel
for, broadcasting to ``out``, out of the kernel's result dtype). The op tables and result dtypes
are the compiled module's own, so a kernel missing there is missing here too.
"""

from __future__ import annotations

import types
import warnings

import numpy as np
from deepkern import _cuda
from deepkern.backends import Backend, cuda_numpy
from deepkern.backends.base import KERNELS as KERNEL_NAMES
from deepkern.backends.cpu import CPUBackend
from deepkern.backends.cuda import CUDABackend

STANDIN_TYPE = 13  # a DLPack device type no real device uses


class StandInArray:
    """Host memory posing as a DeviceArray (device 0)."""

    device_index = 0

    def __init__(self, array: np.ndarray):
        assert isinstance(array, np.ndarray)
        self._a = array

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    flags = property(lambda self: self._a.flags)  # c_contiguous, writeable, aligned, as DeviceArray's
    data_ptr = property(lambda self: self._a.__array_interface__["data"][0])
    T = property(lambda self: StandInArray(self._a.T))

    def is_contiguous(self):
        return self._a.flags.c_contiguous

    def reshape(self, *shape):  # as DeviceArray's: a view of a C-contiguous array, else a contiguous copy
        return StandInArray(np.ascontiguousarray(self._a).reshape(shape[0] if len(shape) == 1 else shape))

    def transpose(self, *axes):
        return StandInArray(self._a.transpose(*axes))

    def swapaxes(self, axis1, axis2):
        return StandInArray(self._a.swapaxes(axis1, axis2))

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, (np.ndarray, list, bool, StandInArray)) for k in key):
            raise TypeError("DeviceArray indices must be integers, slices, None or '...'")
        view = self._a[key if Ellipsis in key else (*key, Ellipsis)]  # a 0-d view, never a scalar
        return StandInArray(view)

    def __setitem__(self, key, value):
        if isinstance(value, StandInArray):
            if value.dtype != self.dtype:
                raise ValueError(f"copy: dtypes differ (destination {self.dtype}, source {value.dtype})")
            value = value._a.copy()
        self[key]._a[...] = value

    def __len__(self):
        return len(self._a)

    def __array__(self, *args, **kwargs):
        raise TypeError("a DeviceArray is in GPU memory: copy it to host memory with to_cpu() first")

    def view(self, dtype):
        if np.dtype(dtype).itemsize != self._a.itemsize:
            raise TypeError(f"view: {np.dtype(dtype)} is not the size of {self._a.dtype}")
        return StandInArray(self._a.view(dtype))

    def copy(self):
        return StandInArray(self._a.copy())

    def astype(self, dtype, copy=True):
        return StandInArray(self._a.astype(dtype))

    def item(self):
        return self._a.item()

    def to_cpu(self):
        return self._a.copy()

    def __dlpack_device__(self):
        return STANDIN_TYPE, 0


_NUMPY = {"abs": np.absolute, "max": np.max, "min": np.min}


def _garbage(shape, dtype):
    """A new array whose elements are all NaN (floats) or 0x5a bytes, as unwritten memory."""
    out = np.empty(shape, dtype)
    if out.dtype.kind == "f":
        out.fill(np.nan)
    else:
        out.reshape(-1).view(np.uint8).fill(0x5A)
    return out


def _inputs(kind, op, out, *operands):
    """The operands as NumPy values, after the binding's checks."""
    arrays = [x for x in operands if isinstance(x, StandInArray)]
    assert arrays, f"{op}: no array operand"
    dtype = arrays[0].dtype
    assert all(a.dtype == dtype for a in arrays), f"{op}: inputs of dtypes {[a.dtype for a in arrays]}"
    expected = _cuda.elementwise_result_dtype(kind, op, dtype.name)
    assert expected is not None, f"{op}: no kernel for {dtype}"
    assert out.dtype == np.dtype(expected), f"{op}: out is {out.dtype}, the kernel gives {expected}"
    for a in arrays:
        assert np.broadcast_shapes(a.shape, out.shape) == out.shape, f"{op}: {a.shape} vs out {out.shape}"
    return [x._a if isinstance(x, StandInArray) else np.asarray(x, dtype) for x in operands]


def _unary(op, out, a):
    (x,) = _inputs("unary", op, out, a)
    with np.errstate(all="ignore"):
        out._a[...] = _NUMPY.get(op, getattr(np, op, None))(x)


def _binary(op, out, a, b):
    x, y = _inputs("binary", op, out, a, b)
    with np.errstate(all="ignore"):
        out._a[...] = getattr(np, op)(x, y)


def _where(out, condition, x, y):
    assert not isinstance(condition, StandInArray) or condition.dtype == np.bool_
    values = [v._a if isinstance(v, StandInArray) else np.asarray(v, out.dtype) for v in (x, y)]
    assert all(v.dtype == out.dtype for v in values)
    c = condition._a if isinstance(condition, StandInArray) else bool(condition)
    out._a[...] = np.where(c, *values)


def _reduce(op, out, a, axes):
    expected = _cuda.elementwise_result_dtype("reduce", op, a.dtype.name)
    assert expected is not None and out.dtype == np.dtype(expected), f"{op}: out {out.dtype}, kernel {expected}"
    x = a._a
    if op in ("max", "min", "argmax", "argmin") and out.size and not np.prod([x.shape[d] for d in axes]):
        raise ValueError(f"cuda {op}: zero-size reduction has no identity")
    if op in ("argmax", "argmin"):  # the flat index over the reduced axes, as the kernel gives
        kept = [d for d in range(x.ndim) if d not in axes]
        x = np.moveaxis(x, sorted(axes), range(len(kept), x.ndim)).reshape(*(x.shape[d] for d in kept), -1)
        out._a[...] = getattr(np, op)(x, axis=-1)
        return
    with warnings.catch_warnings():  # the mean of nothing is NaN, as the kernel gives
        warnings.simplefilter("ignore", RuntimeWarning)
        out._a[...] = _NUMPY.get(op, getattr(np, op, None))(x, axis=tuple(axes))


def _along_axis_checks(what, a, indices, axis):
    """The binding's checks of take_along_axis and scatter_along_axis: int64 indices of a's
    number of dimensions, none out of bounds (IndexError naming it, before anything is written)."""
    assert indices.dtype == np.int64, f"{what}: indices are {indices.dtype}"
    assert indices.ndim == a.ndim, f"{what}: indices {indices.shape} vs a {a.shape}"
    n = a.shape[axis]
    bad = indices._a[(indices._a < -n) | (indices._a >= n)]
    if bad.size:
        raise IndexError(f"cuda {what}: index {bad[0]} is out of bounds for axis {axis} with size {n}")


def _take_along_axis(out, a, indices, axis):
    _along_axis_checks("take_along_axis", a, indices, axis)
    assert out.dtype == a.dtype, f"take_along_axis: out {out.dtype}, a {a.dtype}"
    out._a[...] = np.take_along_axis(a._a, indices._a, axis)


def _scatter_along_axis(op, a, indices, values, axis):
    _along_axis_checks(op, a, indices, axis)
    assert values.dtype == a.dtype, f"{op}: values {values.dtype}, a {a.dtype}"
    if op == "add.at":
        expected = _cuda.elementwise_result_dtype("binary", "add", a.dtype.name)
        assert a.dtype.kind == "f" and expected == a.dtype.name, f"add.at: no kernel for {a.dtype}"
        # the indices along axis (broadcast with a off the axis) and a's positions off it
        shape = np.broadcast_shapes(a.shape[:axis] + (1,) + a.shape[axis + 1 :], indices.shape)
        key = [np.minimum(k, n - 1) for k, n in zip(np.indices(shape, sparse=True), a.shape)]
        key[axis] = np.broadcast_to(indices._a, shape)
        np.add.at(a._a, tuple(key), np.broadcast_to(values._a, shape))
    else:
        np.put_along_axis(a._a, indices._a, values._a, axis)


KERNELS = types.SimpleNamespace(
    DeviceArray=StandInArray,
    empty=lambda shape, dtype, device=0: StandInArray(_garbage(shape, dtype)),
    full=lambda shape, value, dtype, device=0: StandInArray(np.full(shape, value, dtype)),
    unary=_unary,
    binary=_binary,
    where=_where,
    reduce=_reduce,
    take_along_axis=_take_along_axis,
    scatter_along_axis=_scatter_along_axis,
    broadcast_view=lambda a, shape: StandInArray(np.broadcast_to(a._a, tuple(shape))),
    elementwise_result_dtype=_cuda.elementwise_result_dtype,
    elementwise_ops=_cuda.elementwise_ops,
)
cuda_numpy.install(KERNELS)


def _host_kernel(name: str):
    """The CPU backend's kernel entry ``name`` run on the stand-in arrays' host memory."""
    kernel = getattr(CPUBackend, name)

    def host(arg):  # the host array behind a stand-in array, also inside lists (optimizer steps)
        if isinstance(arg, (list, tuple)):
            return type(arg)(host(a) for a in arg)
        return arg._a if isinstance(arg, StandInArray) else arg

    return staticmethod(lambda *args: kernel(*(host(a) for a in args)))


class StandInBackend(Backend):
    """A deepkern backend over StandInArrays (device 'standin'), so Tensors, autograd, nn, optim
    and the training recipes run on the dispatch as they do on 'cuda'. Its kernel entries are the
    ones the CUDA backend has (every name of ``KERNELS`` it defines), computed by the CPU's kernels
    on the host memory; so what fails here on a missing NumPy function or an implicit copy to the
    host fails on a GPU too."""

    name = "standin"
    device_type = STANDIN_TYPE
    array_type = StandInArray

    def empty(self, shape, dtype):
        return KERNELS.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return KERNELS.full(shape, 0, dtype)

    def full(self, shape, value, dtype):
        return KERNELS.full(shape, value, dtype)

    def ascontiguousarray(self, array):
        return array if array.is_contiguous() else array.copy()

    def to_cpu(self, array):
        return array.to_cpu()

    def from_cpu(self, array, index=None, non_blocking=False):
        return StandInArray(np.array(array))

    def index(self, array):
        return 0


def _cuda_kernel_names() -> list:
    """The kernel entries the CUDA backend defines (as methods, or set when it is made)."""
    made = CUDABackend()
    return sorted(n for n in KERNEL_NAMES if n in vars(CUDABackend) or n in vars(made))


for _name in _cuda_kernel_names():
    setattr(StandInBackend, _name, _host_kernel(_name))
