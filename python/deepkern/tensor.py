"""``deepkern.Tensor``: an array on a device (a NumPy array on the CPU; see ``deepkern.backends``)
that records the Functions applied to it when it requires grad, so ``.backward()`` can fill
``.grad``.

Names, defaults and semantics follow PyTorch: ``tensor`` copies its data, ``from_numpy`` shares
it; Python floats become float32 and Python ints int64; ``numpy()`` shares memory and refuses a
tensor that requires grad (``detach().numpy()``).
"""

from __future__ import annotations

import numbers
from collections import namedtuple

import numpy as np

from . import autograd, backends
from . import tensor_ops as F
from .backends import CPU_DEVICE, Device, as_array
from .random import get_generator

__all__ = [
    "Tensor",
    "Device",
    "device",
    "tensor",
    "from_numpy",
    "from_dlpack",
    "as_tensor",
    "zeros",
    "ones",
    "full",
    "empty",
    "zeros_like",
    "ones_like",
    "arange",
    "randn",
    "rand",
    "randint",
    "cat",
    "stack",
    "where",
    "float32",
    "float64",
    "int64",
    "int32",
    "bool_",
]

float32, float64 = np.dtype(np.float32), np.dtype(np.float64)
int32, int64, bool_ = np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.bool_)

MaxResult = namedtuple("MaxResult", ["values", "indices"])


device = Device
_NDARRAY = np.ndarray


def _default_dtype(arr: np.ndarray) -> np.ndarray:
    """PyTorch's defaults for data given as Python values: float32 and int64."""
    if arr.dtype == np.float64:
        return arr.astype(np.float32)
    if arr.dtype.kind in "iu" and arr.dtype != np.int64:
        return arr.astype(np.int64)
    return arr


def _array_of(x):
    return x._array if isinstance(x, Tensor) else x


def _on_device_of(t: "Tensor", value, op: str):
    """``value`` (a Tensor, an array, or host data such as numbers and lists, which is copied) as an
    array on ``t``'s device; an array on another device is a RuntimeError naming ``op``."""
    data = _array_of(value)
    if isinstance(data, (numbers.Number, np.generic, list, tuple)):
        data = backends.to_device(np.asarray(data), t.device)
    arr = as_array(data)
    backends.backend_of(t._array, arr, op=op)
    return arr


class Tensor:
    """An array of a device's backend (a NumPy array on the CPU) plus autograd state. Create with
    :func:`tensor`, :func:`from_numpy`, the factory functions, or as the result of operations."""

    __slots__ = ("_array", "_node", "_output_index", "_requires_grad", "grad", "__weakref__")
    __array_priority__ = 1000  # ndarray <op> Tensor defers to Tensor's reflected operators

    def __init__(self, data, requires_grad: bool = False):
        arr = data._array if isinstance(data, Tensor) else as_array(data)
        self._array = arr
        self._node = None
        self._output_index = 0
        self._requires_grad = False
        self.grad = None
        self.requires_grad = requires_grad

    @classmethod
    def _wrap(cls, arr, node=None, index=0):
        t = cls.__new__(cls)
        t._array = arr if isinstance(arr, _NDARRAY) else as_array(arr)
        t._node = node
        t._output_index = index
        t._requires_grad = node is not None
        t.grad = None
        return t

    # -- autograd state ------------------------------------------------------------------------

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool):
        flag = bool(flag)
        if self._node is not None and not flag:
            raise RuntimeError("requires_grad can only be turned off on leaf tensors; use detach()")
        if flag and self._array.dtype.kind not in "fc":
            raise RuntimeError(f"only floating-point tensors can require grad, got dtype {self.dtype}")
        self._requires_grad = flag

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        self.requires_grad = flag
        return self

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self):
        return self._node

    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Accumulates d self / d leaf into the ``.grad`` of every leaf that requires grad.
        ``gradient`` (d loss / d self) may be omitted for a one-element tensor."""
        if not self._requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (no graph was recorded)")
        if gradient is None:
            if self._array.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a one-element tensor, got shape {self.shape}")
            grad = self._backend().full(self.shape, 1, self.dtype)
        else:
            grad = _on_device_of(self, gradient, "backward").astype(self.dtype, copy=False)
            if grad.shape != self.shape:
                raise ValueError(f"backward: gradient has shape {grad.shape} but the tensor has shape {self.shape}")
        autograd.backward(self, grad, retain_graph)

    def _accumulate_grad(self, g) -> None:
        if self.grad is None:
            self.grad = Tensor._wrap(g.astype(self.dtype))
        else:
            self.grad._array = self.grad._array + g

    def detach(self) -> "Tensor":
        """The same data, outside the graph."""
        return Tensor._wrap(self._array)

    def detach_(self) -> "Tensor":
        self._node, self._requires_grad = None, False
        return self

    # -- data and metadata ---------------------------------------------------------------------

    @property
    def data(self) -> "Tensor":
        return self.detach()

    @data.setter
    def data(self, value):
        self._array = as_array(_array_of(value))

    @property
    def shape(self) -> tuple:
        return self._array.shape

    @property
    def dtype(self) -> np.dtype:
        return self._array.dtype

    @property
    def device(self) -> Device:
        """The device the data is on, as its backend reports it."""
        return CPU_DEVICE if type(self._array) is _NDARRAY else backends.device_of(self._array)

    def _backend(self):
        return backends.backend_of(self._array, op="Tensor")

    @property
    def ndim(self) -> int:
        return self._array.ndim

    def dim(self) -> int:
        return self._array.ndim

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return self._array.size

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array sharing memory (refused while the tensor requires grad, and
        for a tensor on another device than the CPU: ``.cpu().numpy()`` copies it)."""
        if self._requires_grad:
            raise RuntimeError("can't call numpy() on a tensor that requires grad; use tensor.detach().numpy()")
        return self._host_array()

    def _host_array(self) -> np.ndarray:
        """The data, which must be in host memory, as the NumPy array it is."""
        if type(self._array) is not _NDARRAY and self.device != CPU_DEVICE:
            raise TypeError(
                f"can't convert a tensor on {self.device} to a NumPy array; use .cpu() to copy it to host memory first"
            )
        return self._array

    def __array__(self, dtype=None, copy=None):
        arr = self._host_array()
        return arr if dtype is None else arr.astype(dtype)

    def item(self):
        if self._array.size != 1:
            raise ValueError(f"item() needs a one-element tensor, got shape {self.shape}")
        return self._array.reshape(()).item()

    def tolist(self):
        return self._array.tolist()

    def __repr__(self):
        host = self._backend().to_cpu(self._array)
        body = np.array2string(host, separator=", ", prefix="tensor(")
        extra = "" if self.device == CPU_DEVICE else f", device='{self.device}'"
        extra += f", dtype={self.dtype}" if self.dtype not in (float32, int64) else ""
        if self._node is not None:
            extra += f", grad_fn={self._node!r}"
        elif self._requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __dlpack__(self, *args, **kwargs):
        return self.detach()._array.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()

    # -- conversions ---------------------------------------------------------------------------

    def to(self, *args, dtype=None, device=None) -> "Tensor":
        """``to(device)``, ``to(dtype)`` or both; a no-op returns ``self``. Moving to another
        device copies the data through the backends (RuntimeError when deepkern has no backend
        for that device); the copy is differentiable, as the cast is."""
        for a in args:
            if isinstance(a, (Device, str)) and not _looks_like_dtype(a):
                device = a
            else:
                dtype = a
        moved = self
        if device is not None and not backends.is_on(self._array, Device(device)):
            moved = _ToDevice.apply(self, Device(device))
        if dtype is None or np.dtype(dtype) == moved.dtype:
            return moved
        return _Cast.apply(moved, np.dtype(dtype))

    def cpu(self) -> "Tensor":
        """The tensor in host memory (itself when it is there)."""
        return self.to(CPU_DEVICE)

    def cuda(self, device=None) -> "Tensor":
        """The tensor on GPU ``device`` (an index, 'cuda:N' or a Device; default: GPU 0), itself
        when it is there; RuntimeError when deepkern has no usable GPU."""
        return self.to(Device("cuda", device) if device is None or isinstance(device, int) else Device(device))

    def float(self) -> "Tensor":
        return self.to(float32)

    def double(self) -> "Tensor":
        return self.to(float64)

    def long(self) -> "Tensor":
        return self.to(int64)

    def clone(self) -> "Tensor":
        return _Clone.apply(self)

    # -- in-place operations ------------------------------------------------------------------
    # Each writes into this tensor's memory (views of it and tensors sharing it see the change) and
    # bumps that buffer's version. While recording, the value comes from the out-of-place Function and
    # the tensor's history becomes that Function's node, as in PyTorch; otherwise the write is direct.

    def _recording_inplace(self, what: str, args) -> bool:
        """Whether an in-place ``what`` with ``args`` must be recorded; raises where PyTorch refuses."""
        if not autograd.is_grad_enabled():
            return False
        if not (self._requires_grad or any(isinstance(a, Tensor) and a._requires_grad for a in args)):
            return False
        if self._requires_grad and self._node is None:
            raise _leaf_in_place(what, "a leaf tensor")
        return True

    def _inplace(self, what: str, function, *args, direct=None):
        """Sets this tensor to ``function(self, *args)`` in place. ``direct()`` (optional) does the
        same write when nothing is recorded, without the out-of-place temporary."""
        if not self._recording_inplace(what, args):
            if direct is None:
                self._store(what, function.apply(self, *args)._array)
            else:
                self._write(what, direct)
            return self
        node = self._node
        if node is not None and node.view is not None:
            return self._inplace_on_view(what, function, args)
        result = function.apply(self, *args)  # its node keeps this tensor's history so far
        result._node.ctx._unshare_saved(autograd.buffer_of(self._array))
        self._store(what, result._array)
        self._take_history(result)
        return self

    def _inplace_on_view(self, what: str, function, args):
        """An in-place change of a recorded view: written through its base (``base[key] = new``), so the
        base's history records it too, and the view is taken again from the new base."""
        node = self._node
        base = node.view[0]
        if node.function is not F.Index:
            raise RuntimeError(
                f"{what}: in-place change of a {node.name()[: -len('Backward')]} view of a tensor in the autograd "
                "graph is not supported; index the base tensor instead, or compute the change out of place"
            )
        if base.is_leaf:
            raise _leaf_in_place(what, "a view of a leaf tensor")
        key = node.ctx.meta[2]
        base[key] = function.apply(self, *args)
        self._take_history(F.Index.apply(base, key))
        return self

    def _take_history(self, result: "Tensor") -> None:
        node = result._node
        self._node, self._output_index, self._requires_grad = node, result._output_index, True
        meta = list(node.output_meta)
        meta[result._output_index] = (self.shape, self.dtype)  # the value is stored in this tensor's dtype
        node.output_meta = tuple(meta)

    def _store(self, what: str, result) -> None:
        """Writes ``result`` (an array of this tensor's shape, on its device) into this tensor."""
        if result.shape != self.shape:
            raise RuntimeError(
                f"{what}: output with shape {self.shape} doesn't match the broadcast shape {result.shape}"
            )
        if not np.can_cast(result.dtype, self.dtype, "same_kind"):
            raise RuntimeError(
                f"{what}: result type {result.dtype} can't be cast to the desired output type {self.dtype}"
            )
        self._write(what, lambda: self._array.__setitem__(Ellipsis, result))

    def _write(self, what: str, write) -> None:
        flags = getattr(self._array, "flags", None)
        if flags is not None and not flags.writeable:
            raise RuntimeError(
                f"{what}: the tensor's memory is read-only (an expand()ed view, or a read-only array given to "
                "from_numpy); clone() it first"
            )
        write()
        autograd.bump_version(self._array)

    def _operand(self, value, what: str):
        """``value`` for an in-place operator: Python/NumPy scalars as they are, a Tensor checked to be on
        this tensor's device, other host data and arrays as an array on this tensor's device."""
        if isinstance(value, (numbers.Number, np.generic)):
            return value
        if isinstance(value, Tensor):
            backends.backend_of(self._array, value._array, op=what)
            return value
        return _on_device_of(self, value, what)

    def zero_(self) -> "Tensor":
        return self.fill_(0)

    def fill_(self, value) -> "Tensor":
        value = self._operand(value, "fill_")
        direct = lambda: self._array.__setitem__(Ellipsis, _array_of(value))  # noqa: E731
        return self._inplace("fill_", _Overwrite, value, direct=direct)

    def copy_(self, src) -> "Tensor":
        """Writes ``src`` (broadcast; from any device) into this tensor's data."""
        if isinstance(src, Tensor) and src.device != self.device:
            src = src.to(self.device)
        src = src if isinstance(src, Tensor) else Tensor._wrap(backends.to_device(as_array(src), self.device))
        try:
            fits = np.broadcast_shapes(src.shape, self.shape) == self.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"copy_: source of shape {src.shape} does not broadcast to {self.shape}")
        if not np.can_cast(src.dtype, self.dtype, "same_kind"):
            raise TypeError(f"copy_: can't copy a source of dtype {src.dtype} into a tensor of dtype {self.dtype}")
        return self._inplace("copy_", _Overwrite, src, direct=lambda: self._array.__setitem__(Ellipsis, src._array))

    def add_(self, other, alpha=1) -> "Tensor":
        other = self._operand(other, "add_")
        return self._inplace("add_", F.Add, other if alpha == 1 else other * alpha)

    def sub_(self, other, alpha=1) -> "Tensor":
        other = self._operand(other, "sub_")
        return self._inplace("sub_", F.Sub, other if alpha == 1 else other * alpha)

    def mul_(self, other) -> "Tensor":
        return self._inplace("mul_", F.Mul, self._operand(other, "mul_"))

    def div_(self, other) -> "Tensor":
        return self._inplace("div_", F.Div, self._operand(other, "div_"))

    def __iadd__(self, other):
        return self._inplace("+=", F.Add, self._operand(other, "+="))

    def __isub__(self, other):
        return self._inplace("-=", F.Sub, self._operand(other, "-="))

    def __imul__(self, other):
        return self._inplace("*=", F.Mul, self._operand(other, "*="))

    def __itruediv__(self, other):
        return self._inplace("/=", F.Div, self._operand(other, "/="))

    def pow_(self, exponent) -> "Tensor":
        return self._inplace("pow_", F.Pow, self._operand(exponent, "pow_"))

    def __ipow__(self, exponent):
        return self._inplace("**=", F.Pow, self._operand(exponent, "**="))

    # -- arithmetic ----------------------------------------------------------------------------

    def __add__(self, other):
        return F.Add.apply(self, other)

    def __radd__(self, other):
        return F.Add.apply(other, self)

    def __sub__(self, other):
        return F.Sub.apply(self, other)

    def __rsub__(self, other):
        return F.Sub.apply(other, self)

    def __mul__(self, other):
        return F.Mul.apply(self, other)

    def __rmul__(self, other):
        return F.Mul.apply(other, self)

    def __truediv__(self, other):
        return F.Div.apply(self, other)

    def __rtruediv__(self, other):
        return F.Div.apply(other, self)

    def __pow__(self, other):
        return F.Pow.apply(self, other)

    def __rpow__(self, other):
        return F.Pow.apply(other, self)

    def __matmul__(self, other):
        return F.MatMul.apply(self, other)

    def __rmatmul__(self, other):
        return F.MatMul.apply(other, self)

    def __neg__(self):
        return F.Neg.apply(self)

    add, sub, mul, div, pow, matmul, neg = __add__, __sub__, __mul__, __truediv__, __pow__, __matmul__, __neg__

    # Comparisons give bool tensors outside the graph.
    def __eq__(self, other):
        return Tensor._wrap(self._array == _array_of(other))

    def __ne__(self, other):
        return Tensor._wrap(self._array != _array_of(other))

    def __lt__(self, other):
        return Tensor._wrap(self._array < _array_of(other))

    def __le__(self, other):
        return Tensor._wrap(self._array <= _array_of(other))

    def __gt__(self, other):
        return Tensor._wrap(self._array > _array_of(other))

    def __ge__(self, other):
        return Tensor._wrap(self._array >= _array_of(other))

    __hash__ = object.__hash__

    def __bool__(self):
        return bool(self.item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    # -- elementwise math ----------------------------------------------------------------------

    def exp(self):
        return F.Exp.apply(self)

    def log(self):
        return F.Log.apply(self)

    def sqrt(self):
        return F.Sqrt.apply(self)

    def abs(self):
        return F.Abs.apply(self)

    def tanh(self):
        return F.Tanh.apply(self)

    def sigmoid(self):
        return F.Sigmoid.apply(self)

    def relu(self):
        return F.Relu.apply(self)

    def clamp(self, min=None, max=None):
        return F.Clamp.apply(self, min, max)

    clip = clamp

    # -- reductions ----------------------------------------------------------------------------

    def sum(self, dim=None, keepdim=False):
        return F.Sum.apply(self, dim=dim, keepdim=keepdim)

    def mean(self, dim=None, keepdim=False):
        return F.Mean.apply(self, dim=dim, keepdim=keepdim)

    def max(self, dim=None, keepdim=False):
        """The largest element, or ``(values, indices)`` along ``dim``."""
        out = F.Max.apply(self, dim=dim, keepdim=keepdim)
        return out if dim is None else MaxResult(*out)

    def min(self, dim=None, keepdim=False):
        out = F.Max.apply(self, dim=dim, keepdim=keepdim, minimum=True)
        return out if dim is None else MaxResult(*out)

    def argmax(self, dim=None, keepdim=False):
        if dim is None:
            return Tensor._wrap(as_array(self._array.argmax()).astype(np.int64))
        return self.max(dim, keepdim).indices

    # -- shape ---------------------------------------------------------------------------------

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return F.Reshape.apply(self, _resolve_shape(self.shape, shape))

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        if self.ndim == 0:
            return self.reshape(1)
        start, end = start_dim % self.ndim, end_dim % self.ndim
        return self.reshape(self.shape[:start] + (-1,) + self.shape[end + 1 :])

    def permute(self, *dims):
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        if sorted(d % self.ndim for d in dims) != list(range(self.ndim)):
            raise ValueError(f"permute: dims {tuple(dims)} are not a permutation of {self.ndim} dimensions")
        return F.Permute.apply(self, tuple(d % self.ndim for d in dims))

    def transpose(self, dim0, dim1):
        dims = list(range(self.ndim))
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return F.Permute.apply(self, tuple(dims))

    @property
    def T(self):
        return F.Permute.apply(self, tuple(reversed(range(self.ndim))))

    def t(self):
        return self.T

    def squeeze(self, dim=None):
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        dim %= max(self.ndim, 1)
        if self.ndim == 0 or self.shape[dim] != 1:
            return self
        return self.reshape(self.shape[:dim] + self.shape[dim + 1 :])

    def unsqueeze(self, dim):
        dim = dim % (self.ndim + 1)
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def expand(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        shape = tuple(self.shape[i - (len(shape) - self.ndim)] if n == -1 else n for i, n in enumerate(shape))
        return F.Expand.apply(self, shape)

    def __getitem__(self, key):
        return F.Index.apply(self, _index_key(key))

    def __setitem__(self, key, value):
        key = _index_key(key)
        value = self._operand(value, "item assignment")
        direct = lambda: self._array.__setitem__(key, _array_of(value))  # noqa: E731
        self._inplace("item assignment", _SetItem, value, key, direct=direct)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def _leaf_in_place(what: str, which: str) -> RuntimeError:
    """PyTorch's refusal of an in-place change of a leaf that requires grad (or of its view)."""
    return RuntimeError(
        f"{what}: {which} that requires grad is being used in an in-place operation; "
        "do it under deepkern.no_grad() (as an optimizer step does)"
    )


def _index_key(key):
    """An indexing key with its Tensors replaced by their arrays."""
    return tuple(_array_of(k) for k in key) if isinstance(key, tuple) else _array_of(key)


def _resolve_shape(old: tuple, new) -> tuple:
    """``new`` with a -1 filled in; a ValueError naming both shapes when the counts differ."""
    new = tuple(int(n) for n in new)
    total = int(np.prod(old))
    known = int(np.prod([n for n in new if n != -1]))
    bad = new.count(-1) > 1 or any(n < -1 for n in new)
    if not bad and -1 in new:
        bad = known == 0 or total % known != 0
        new = tuple(total // known if n == -1 else n for n in new) if not bad else new
    if bad or int(np.prod(new)) != total:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {old} into {new}")
    return new


def _looks_like_dtype(x) -> bool:
    if isinstance(x, Device):
        return False
    try:
        np.dtype(x)
    except TypeError:
        return False
    return not str(x).startswith(("cpu", "cuda"))


class _Cast(autograd.Function):
    @staticmethod
    def forward(ctx, a, dtype):
        ctx.dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.dtype) if ctx.needs_input_grad[0] else None, None


class _ToDevice(autograd.Function):
    """A copy on another device; the gradient is copied back."""

    @staticmethod
    def forward(ctx, a, device):
        ctx.source = backends.device_of(a)
        return backends.to_device(a, device)

    @staticmethod
    def backward(ctx, g):
        return backends.to_device(g, ctx.source), None


class _Overwrite(autograd.Function):
    """``a``'s memory filled with ``src`` (broadcast, cast to ``a``'s dtype): fill_, zero_ and copy_."""

    @staticmethod
    def forward(ctx, a, src):
        ctx.shape = np.shape(src)
        out = backends.backend_of(a, op="copy_").empty(a.shape, a.dtype)
        out[...] = src
        return out

    @staticmethod
    def backward(ctx, g):
        return None, (F.unbroadcast(g, ctx.shape) if ctx.needs_input_grad[1] else None)


class _SetItem(autograd.Function):
    """``a`` with ``a[key] = value``: the gradient of the overwritten elements goes to ``value``."""

    @staticmethod
    def forward(ctx, a, value, key):
        ctx.meta = (key, np.shape(value))
        out = a.copy()
        out[key] = value
        return out

    @staticmethod
    def backward(ctx, g):
        key, value_shape = ctx.meta
        grad_a = grad_value = None
        if ctx.needs_input_grad[0]:
            grad_a = g.copy()
            grad_a[key] = 0
        if ctx.needs_input_grad[1]:
            selected = as_array(g[key])
            if len(value_shape) > selected.ndim:  # NumPy assigns a value with extra leading ones
                selected = selected.reshape((1,) * (len(value_shape) - selected.ndim) + selected.shape)
            grad_value = F.unbroadcast(selected, value_shape)
        return grad_a, grad_value, None


class _Clone(autograd.Function):
    @staticmethod
    def forward(ctx, a):
        return a.copy()

    @staticmethod
    def backward(ctx, g):
        return g


# ---------------------------------------------------------------------------------------------
# Creation
# ---------------------------------------------------------------------------------------------


def tensor(data, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """A new tensor holding a copy of ``data`` (array, Tensor, nested lists, numbers) on ``device``
    (default: the CPU, or the device of a Tensor given as ``data``)."""
    if isinstance(data, Tensor):
        arr = data._array.copy()
        device = device or data.device
    elif isinstance(data, (np.ndarray, np.generic)):
        arr = np.array(data, copy=True)
    else:
        arr = _default_dtype(np.array(data))
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return _created(arr, device, requires_grad)


def as_tensor(data, dtype=None) -> Tensor:
    """``data`` as a tensor, sharing memory when it already is an array of ``dtype``."""
    if isinstance(data, Tensor):
        return data.to(dtype) if dtype is not None else data
    if isinstance(data, (np.ndarray, np.generic)):
        arr = np.asarray(data)
    else:
        arr = as_array(data)
        arr = arr if arr is data else _default_dtype(arr)  # Python data: PyTorch's default dtypes
    return Tensor(arr if dtype is None else arr.astype(dtype, copy=False))


def from_numpy(arr: np.ndarray) -> Tensor:
    """A tensor sharing ``arr``'s memory."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(arr).__name__}")
    return Tensor(arr)


def from_dlpack(obj) -> Tensor:
    """A tensor sharing the memory of any object with ``__dlpack__`` (NumPy, PyTorch, CuPy, ...): in host
    memory, or on a GPU where deepkern has its CUDA backend."""
    kind, _ = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else (backends.DLPACK_CPU, 0)
    if kind == backends.DLPACK_CPU:
        return Tensor(np.from_dlpack(obj))
    from . import cuda

    return Tensor(cuda.from_dlpack(obj))


def _shape_args(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def _created(array, device, requires_grad: bool = False) -> Tensor:
    """A tensor of ``array`` (host data, or allocated by the backend of ``device``) on ``device``
    (a Device, a string or None: the CPU), copied there when it is elsewhere."""
    return Tensor(backends.to_device(array, device or CPU_DEVICE), requires_grad)


def zeros(*shape, dtype=float32, requires_grad=False, device=None) -> Tensor:
    return _created(backends.get(device or "cpu").zeros(_shape_args(shape), dtype), device, requires_grad)


def ones(*shape, dtype=float32, requires_grad=False, device=None) -> Tensor:
    return _created(backends.get(device or "cpu").full(_shape_args(shape), 1, dtype), device, requires_grad)


def empty(*shape, dtype=float32, requires_grad=False, device=None) -> Tensor:
    return _created(backends.get(device or "cpu").empty(_shape_args(shape), dtype), device, requires_grad)


def full(shape, fill_value, dtype=float32, requires_grad=False, device=None) -> Tensor:
    return _created(backends.get(device or "cpu").full(_shape_args((shape,)), fill_value, dtype), device, requires_grad)


def zeros_like(t, dtype=None, requires_grad=False, device=None) -> Tensor:
    """Zeros of ``t``'s shape, and of its dtype and device unless given."""
    device = device or backends.device_of(_array_of(t))
    return zeros(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad, device=device)


def ones_like(t, dtype=None, requires_grad=False, device=None) -> Tensor:
    """Ones of ``t``'s shape, and of its dtype and device unless given."""
    device = device or backends.device_of(_array_of(t))
    return ones(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad, device=device)


def arange(start, end=None, step=1, dtype=None, device=None) -> Tensor:
    arr = np.arange(start, end, step) if end is not None else np.arange(start)
    return _created(_default_dtype(arr) if dtype is None else arr.astype(dtype), device)


def randn(*shape, dtype=float32, requires_grad=False, generator=None, device=None) -> Tensor:
    """Standard normal values from ``generator`` (default: the one ``manual_seed`` seeds), drawn in
    host memory and copied to ``device``."""
    rng = generator or get_generator()
    return _created(rng.standard_normal(_shape_args(shape), dtype=np.float64).astype(dtype), device, requires_grad)


def rand(*shape, dtype=float32, requires_grad=False, generator=None, device=None) -> Tensor:
    """Uniform values in [0, 1), drawn as :func:`randn`'s."""
    rng = generator or get_generator()
    return _created(rng.random(_shape_args(shape)).astype(dtype), device, requires_grad)


def randint(low, high, size, dtype=int64, generator=None, device=None) -> Tensor:
    rng = generator or get_generator()
    return _created(rng.integers(low, high, size=size).astype(dtype), device)


def cat(tensors, dim=0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    ndim = np.ndim(_array_of(tensors[0]))
    _check_join("cat", tensors, lambda s: s[: dim % ndim] + s[dim % ndim + 1 :])
    return F.Cat.apply(*tensors, dim=dim % ndim)


def stack(tensors, dim=0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    _check_join("stack", tensors, lambda s: s)
    return F.Stack.apply(*tensors, dim=dim % (np.ndim(_array_of(tensors[0])) + 1))


def _check_join(op, tensors, key):
    shapes = [np.shape(_array_of(t)) for t in tensors]
    if len({len(s) for s in shapes}) != 1 or len({key(s) for s in shapes}) != 1:
        raise ValueError(f"{op}: tensors must match in every dimension but the joined one, got shapes {shapes}")


def where(condition, a, b) -> Tensor:
    return F.Where.apply(as_array(_array_of(condition)).astype(bool, copy=False), a, b)
