"""``deepkern.Tensor``: an array on a device (a NumPy array on the CPU; see ``deepkern.backends``)
that records the Functions applied to it when it requires grad, so ``.backward()`` can fill
``.grad``.

Names, defaults and semantics follow PyTorch: ``tensor`` copies its data, ``from_numpy`` shares
it; Python floats become float32 and Python ints int64; ``numpy()`` shares memory and refuses a
tensor that requires grad (``detach().numpy()``).
"""

from __future__ import annotations

import copy
import functools
import math
import numbers
import weakref
from collections import namedtuple

import numpy as np

from . import autograd, backends
from . import tensor_ops as F
from .backends import CPU_DEVICE, Device, as_array
from .ops._validate import astype, bfloat16_dtype, is_bfloat16, is_floating_dtype
from .random import get_generator
from .tensor_linalg import LinalgMethods
from .tensor_long_tail import LongTailMethods

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
    "full_like",
    "empty_like",
    "randn_like",
    "rand_like",
    "arange",
    "linspace",
    "eye",
    "randn",
    "rand",
    "randint",
    "randperm",
    "cat",
    "stack",
    "where",
    "float32",
    "set_default_dtype",
    "get_default_dtype",
    "bfloat16",  # noqa: F822  (the module's __getattr__)
    "float64",
    "int64",
    "int32",
    "bool_",
]

float32, float64 = np.dtype(np.float32), np.dtype(np.float64)
int32, int64, bool_ = np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.bool_)

MaxResult = namedtuple("MaxResult", ["values", "indices"])
SortResult = namedtuple("SortResult", ["values", "indices"])
TopkResult = namedtuple("TopkResult", ["values", "indices"])

#: What ``Tensor.type()`` answers per dtype name (PyTorch's class names).
_TYPE_NAMES = {
    "float16": "HalfTensor",
    "float32": "FloatTensor",
    "bfloat16": "BFloat16Tensor",
    "float64": "DoubleTensor",
    "uint8": "ByteTensor",
    "int8": "CharTensor",
    "int16": "ShortTensor",
    "int32": "IntTensor",
    "int64": "LongTensor",
    "bool": "BoolTensor",
}


def __getattr__(name: str):
    """``bfloat16`` (ml_dtypes' NumPy dtype), resolved on first use so that ``import deepkern``
    does not import ml_dtypes: the GEMM kernels take it (matmul, gemm, linear), accumulating in
    float32 and rounding the result to bfloat16 to nearest even, as PyTorch does."""
    if name == "bfloat16":
        return bfloat16_dtype()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


device = Device
_NDARRAY = np.ndarray


_DEFAULT_FLOAT = [float32]  # the dtype of floating tensors made without one (set_default_dtype)


def set_default_dtype(d) -> None:
    """The floating dtype (float32, the default, or float64) of tensors made from Python floats, of
    the factories' floating results, of the layers' parameters and of integer results of float ops,
    as PyTorch's ``torch.set_default_dtype``."""
    dtype = np.dtype(d)
    if dtype not in (float32, float64):
        raise TypeError(f"set_default_dtype: only float32 and float64 are supported, got {dtype}")
    _DEFAULT_FLOAT[0] = dtype


def get_default_dtype() -> np.dtype:
    return _DEFAULT_FLOAT[0]


def _default_dtype(arr: np.ndarray, data=None) -> np.ndarray:
    """PyTorch's defaults for data given as Python values: the default float dtype and int64; NumPy
    scalars inside sequences ``data`` keep their dtype (:func:`_numpy_scalars_dtype`)."""
    if isinstance(data, (list, tuple)):
        inferred = _numpy_scalars_dtype(data)
        if inferred is not None:
            return arr.astype(inferred, copy=False)
    if arr.dtype == np.float64:
        return arr if _DEFAULT_FLOAT[0] == float64 else arr.astype(np.float32)
    if arr.dtype.kind in "iu" and arr.dtype != np.int64:
        return arr.astype(np.int64)
    return arr


def _numpy_scalars_dtype(data):
    """PyTorch's dtype for nested sequences ``data`` that hold NumPy scalars, or None when they hold
    none: each NumPy scalar counts with its dtype, a Python float as the default float dtype, an int as
    int64 and a bool as bool; the widest floating dtype if any, else the widest other one."""
    dtypes, numpy_scalars, stack = [], False, [data]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, np.generic):
            dtypes.append(item.dtype)
            numpy_scalars = True
        elif isinstance(item, bool):
            dtypes.append(np.dtype(np.bool_))
        elif isinstance(item, numbers.Integral):
            dtypes.append(np.dtype(np.int64))
        elif isinstance(item, numbers.Real):
            dtypes.append(np.dtype(_DEFAULT_FLOAT[0]))
    if not numpy_scalars:
        return None
    floats = [d for d in dtypes if d.kind == "f"]
    return np.result_type(*floats) if floats else np.result_type(*dtypes)


def through_float32(fn):
    """``fn``, an op on float32/float64 Tensors (or arrays), taking bfloat16 ones as PyTorch's CPU
    kernels do: when every floating Tensor or array among its arguments is bfloat16, they are cast
    to float32 (exact), ``fn`` runs on them and its float32 Tensor result is rounded to bfloat16
    once. The casts are differentiable, so gradients are computed in float32 too and rounded once
    to the inputs' dtype. bfloat16 beside wider floats is widened the same way (the result keeps the
    wider dtype, PyTorch's promotion); other mixes go to ``fn`` as they are."""

    @functools.wraps(fn)
    def op(*args, **kwargs):
        floats = [a for a in (*args, *kwargs.values()) if hasattr(a, "dtype") and is_floating_dtype(a.dtype)]
        narrow = [is_bfloat16(a.dtype) for a in floats]
        if not any(narrow):
            return fn(*args, **kwargs)
        result = fn(*map(_widened, args), **{key: _widened(value) for key, value in kwargs.items()})
        if not all(narrow):  # bfloat16 beside a wider float: PyTorch's promotion, no rounding back
            return result
        return result.to(floats[0].dtype) if isinstance(result, Tensor) and result.dtype == float32 else result

    return op


def _unpickled_tensor(cls, array, requires_grad: bool) -> "Tensor":
    """A tensor (or Parameter) unpickled from Tensor.__reduce_ex__'s parts."""
    return cls(array, requires_grad=requires_grad)


def _in_float32(x: "Tensor", op, function) -> "Tensor":
    """``op(x)``, for a bfloat16 or float16 ``x`` computed on its float32 cast and rounded once (PyTorch's
    CPU reductions and transcendentals accumulate in float32: a bfloat16 sum of 4096 ones is 4096, not
    256, a float16 running sum of 3000 ones 3000, not 2048); left to autocast where this thread's
    casts ``function`` (op's Function), whose result then stays float32."""
    if not (is_bfloat16(x.dtype) or x.dtype == np.float16) or autograd.autocast_casts(function):
        return op(x)
    return op(x.float()).to(x.dtype)


def _widened(x):
    """A bfloat16 Tensor's differentiable cast to float32, or a bfloat16 array's float32 copy;
    anything else as it is."""
    if not is_bfloat16(getattr(x, "dtype", None)):
        return x
    return x.float() if isinstance(x, Tensor) else x.astype(float32)


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


class Tensor(LongTailMethods, LinalgMethods):
    """An array of a device's backend (a NumPy array on the CPU) plus autograd state. Create with
    :func:`tensor`, :func:`from_numpy`, the factory functions, or as the result of operations."""

    __slots__ = (
        "_array",
        "_node",
        "_output_index",
        "_requires_grad",
        "_grad",
        "_hooks",
        "_post_hooks",
        "_view_base",
        "__weakref__",
    )
    __array_priority__ = 1000  # ndarray <op> Tensor defers to Tensor's reflected operators

    def __reduce_ex__(self, protocol):
        """Pickled as its data and ``requires_grad``, as PyTorch's: it comes back a leaf, without the
        graph that made it, its gradient or its hooks."""
        return _unpickled_tensor, (type(self), self._array, self._requires_grad)

    def __deepcopy__(self, memo):
        """A copy of a leaf's data and ``requires_grad`` (not its gradient or hooks); a tensor with a
        history is refused, as in PyTorch."""
        if self._node is not None:
            raise RuntimeError(
                "deepcopy: only tensors created by the user (graph leaves) can be deep-copied; detach() "
                "the tensor first"
            )
        copied = type(self)(copy.deepcopy(self._array, memo), requires_grad=self._requires_grad)
        memo[id(self)] = copied
        return copied

    def __init__(self, data, requires_grad: bool = False):
        arr = data._array if isinstance(data, Tensor) else as_array(data)
        if arr is data:  # the caller's array: it may write it later (caches then check the contents)
            autograd.expose(arr)
        self._array = arr
        self._node = None
        self._output_index = 0
        self._requires_grad = False
        self._grad = None
        self._hooks = None  # a leaf's gradient hooks (see register_hook); a non-leaf's are on its node
        self._post_hooks = None  # a leaf's post-accumulate-grad hooks (see register_post_accumulate_grad_hook)
        self._view_base = None
        self.requires_grad = requires_grad

    @property
    def grad(self):
        """The gradient backward accumulated into this tensor (None before any)."""
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad must be a Tensor or None, got {type(value).__name__}")
            if value.shape != self.shape:
                raise RuntimeError(
                    f"assigned grad has data of a different size: {value.shape}, the tensor's is {self.shape}"
                )
            if value.dtype != self.dtype:
                raise RuntimeError(f"assigned grad has dtype {value.dtype}, the tensor's is {self.dtype}")
        self._grad = value

    @classmethod
    def _wrap(cls, arr, node=None, index=0):
        t = cls.__new__(cls)
        t._array = arr if isinstance(arr, _NDARRAY) else as_array(arr)
        t._node = node
        t._output_index = index
        t._requires_grad = node is not None
        t._grad = None
        t._hooks = None
        t._post_hooks = None
        t._view_base = None  # (base, key, base's array) of an unrecorded base[key] view (see _remember_base)
        return t

    # -- autograd state ------------------------------------------------------------------------

    @property
    def requires_grad(self) -> bool:
        if self._view_base is not None:
            self._rejoin_base()  # a view whose base gained a history since it was taken
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool):
        flag = bool(flag)
        if self._node is not None and not flag:
            raise RuntimeError("requires_grad can only be turned off on leaf tensors; use detach()")
        if flag and not _floating_or_complex(self._array.dtype):
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

    def backward(self, gradient=None, retain_graph: bool = False, create_graph: bool = False) -> None:
        """Accumulates d self / d leaf into the ``.grad`` of every leaf that requires grad.
        ``gradient`` (d loss / d self) may be omitted for a one-element tensor. ``create_graph=True``
        (differentiable gradients) is not supported."""
        autograd.backward(self, [gradient], retain_graph, create_graph)

    def register_hook(self, hook):
        """Calls ``hook(grad)`` with this tensor's gradient (a Tensor) each time a backward computes
        it; a Tensor it returns replaces the gradient. Returns a handle whose ``remove()`` unregisters
        it. A leaf's hooks see the gradient summed over all its uses, before it reaches ``.grad``."""
        if not self._requires_grad:
            raise RuntimeError("register_hook: cannot register a hook on a tensor that doesn't require gradient")
        return autograd.add_hook(self._grad_hooks(), hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Calls ``hook(self)`` after a backward has accumulated this leaf's gradient into ``.grad``
        (once per backward, when every use of the leaf in that backward has contributed); the hook
        returns None (anything else is a TypeError, as in PyTorch). ``autograd.grad`` accumulates
        nothing and calls no such hook. Returns a handle whose ``remove()`` unregisters it."""
        if not self._requires_grad:
            raise RuntimeError(
                "register_post_accumulate_grad_hook: cannot register a hook on a tensor that doesn't require gradient"
            )
        if self._node is not None:
            raise RuntimeError(
                "register_post_accumulate_grad_hook: post accumulate grad hooks cannot be registered on non-leaf "
                f"tensors (this one comes from {self._node.name()})"
            )
        if self._post_hooks is None:
            self._post_hooks = {}
        return autograd.add_hook(self._post_hooks, hook)

    def _grad_hooks(self) -> dict:
        """The dict of this tensor's gradient hooks: its own for a leaf, its node's output slot's otherwise."""
        if self._node is None:
            if self._hooks is None:
                self._hooks = {}
            return self._hooks
        node = self._node
        if node.hooks is None:
            node.hooks = {}
        return node.hooks.setdefault(self._output_index, {})

    def retain_grad(self) -> None:
        """Makes backward fill ``.grad`` of this non-leaf tensor too (after its hooks ran); a no-op
        on a leaf, whose ``.grad`` is filled anyway."""
        if not self._requires_grad:
            raise RuntimeError("retain_grad: can't retain_grad on a tensor that doesn't require gradient")
        if self._node is not None:
            self._grad_hooks()["retain"] = weakref.ref(self)

    @property
    def retains_grad(self) -> bool:
        """Whether backward fills the ``.grad`` of this non-leaf tensor (see retain_grad)."""
        node = self._node
        return bool(node is not None and node.hooks and "retain" in node.hooks.get(self._output_index, {}))

    def detach(self) -> "Tensor":
        """The same data, outside the graph."""
        return Tensor._wrap(self._array)

    def detach_(self) -> "Tensor":
        """Takes this tensor out of the graph in place. A view cannot be (RuntimeError, as in PyTorch):
        it shares its base's data and history; ``detach()`` gives a detached view instead."""
        if self._view_base is not None or (self._node is not None and self._node.view is not None):
            raise RuntimeError(
                f"detach_: this tensor of shape {self.shape} is a view of another tensor and can't be detached "
                "in place; use detach() instead"
            )
        self._node, self._requires_grad = None, False
        return self

    # -- data and metadata ---------------------------------------------------------------------

    @property
    def data(self) -> "Tensor":
        return self.detach()

    @data.setter
    def data(self, value):
        array = as_array(_array_of(value))
        if array is value:  # the caller's array, shared: it may write it later
            autograd.expose(array)
        if self._requires_grad and not _floating_or_complex(array.dtype):
            raise TypeError(
                f"data: a tensor that requires grad holds floating-point data, got dtype {array.dtype} (as PyTorch)"
            )
        self._array = array
        autograd.note_module_change()

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
        return _handed_out(self._host_array())

    def _host_array(self) -> np.ndarray:
        """The data, which must be in host memory, as the NumPy array it is (for reading it inside
        deepkern: numpy() and __array__ also record it as handed out, see ``autograd.expose``)."""
        if type(self._array) is not _NDARRAY and self.device != CPU_DEVICE:
            raise TypeError(
                f"can't convert a tensor on {self.device} to a NumPy array; use .cpu() to copy it to host memory first"
            )
        return self._array

    def __array__(self, dtype=None, copy=None):
        arr = self._host_array()
        return arr.astype(dtype) if dtype is not None else _handed_out(arr)

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
        extra += f", dtype={self.dtype}" if self.dtype not in (_DEFAULT_FLOAT[0], int64) else ""
        if self._node is not None:
            extra += f", grad_fn={self._node!r}"
        elif self._requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __dlpack__(self, *args, **kwargs):
        autograd.expose(self._array)  # the consumer shares the memory for good and may write it
        return self.detach()._array.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()

    # -- conversions ---------------------------------------------------------------------------

    def to(self, *args, dtype=None, device=None, non_blocking=False) -> "Tensor":
        """``to(device)``, ``to(dtype)`` or both; a no-op returns ``self``. Moving to another
        device copies the data through the backends (RuntimeError when deepkern has no backend
        for that device); the copy is differentiable, as the cast is. ``non_blocking``: a copy from
        pinned host memory (:meth:`pin_memory`) to a GPU is queued on the current stream and this
        returns at once; from other memory the copy ends before it returns, as in PyTorch."""
        for a in args:
            if isinstance(a, (Device, str)) and not _looks_like_dtype(a):
                device = a
            else:
                dtype = a
        moved = self
        if device is not None and not backends.is_on(self._array, Device(device)):
            moved = _ToDevice.apply(self, Device(device), non_blocking=non_blocking)
        if dtype is None or np.dtype(dtype) == moved.dtype:
            return moved
        return _Cast.apply(moved, np.dtype(dtype))

    def cpu(self) -> "Tensor":
        """The tensor in host memory (itself when it is there)."""
        return self.to(CPU_DEVICE)

    def cuda(self, device=None, non_blocking=False) -> "Tensor":
        """The tensor on GPU ``device`` (an index, 'cuda:N' or a Device; default: GPU 0), itself
        when it is there; RuntimeError when deepkern has no usable GPU. ``non_blocking`` as in
        :meth:`to`."""
        target = Device("cuda", device) if device is None or isinstance(device, int) else Device(device)
        return self.to(target, non_blocking=non_blocking)

    def pin_memory(self) -> "Tensor":
        """A copy in pinned (page-locked) host memory, from which :meth:`to` with
        ``non_blocking=True`` copies to the GPU without waiting (itself when already pinned).
        RuntimeError for a tensor not in host memory, or without a usable GPU."""
        if not isinstance(self._array, np.ndarray):
            raise RuntimeError(f"pin_memory: only tensors in host memory can be pinned; this one is on {self.device}")
        if self.is_pinned():
            return self
        from . import cuda

        pinned = cuda._require_gpu().pinned_empty(self.shape, self.dtype)
        pinned[...] = self._array
        return Tensor._wrap(pinned)

    def is_pinned(self) -> bool:
        """Whether the tensor is in pinned host memory (False without a usable GPU)."""
        from . import cuda

        return isinstance(self._array, np.ndarray) and cuda.is_available() and cuda._cuda.is_pinned(self._array)

    def float(self) -> "Tensor":
        return self.to(float32)

    def double(self) -> "Tensor":
        return self.to(float64)

    def bfloat16(self) -> "Tensor":
        return self.to(bfloat16_dtype())

    def long(self) -> "Tensor":
        return self.to(int64)

    def int(self) -> "Tensor":
        return self.to(int32)

    def bool(self) -> "Tensor":
        return self.to(bool_)

    def type(self, dtype=None):
        """Without ``dtype``, the type's name ('deepkern.FloatTensor', ...); with it, ``to(dtype)``."""
        if dtype is None:
            return "deepkern." + _TYPE_NAMES.get(self.dtype.name, f"{self.dtype}Tensor")
        return self.to(dtype)

    def is_floating_point(self) -> bool:
        """Whether the dtype is a floating-point one (float16/32/64 or bfloat16)."""
        return is_floating_dtype(self.dtype)

    def type_as(self, other) -> "Tensor":
        return self.to(other.dtype)

    def is_contiguous(self) -> bool:
        """Whether the elements lie in memory in row-major order without gaps."""
        flags = getattr(self._array, "flags", None)
        return bool(flags.c_contiguous) if flags is not None else bool(self._array.is_contiguous())

    def contiguous(self) -> "Tensor":
        """This tensor when it is contiguous, else a contiguous copy (differentiable)."""
        return self if self.is_contiguous() else _Clone.apply(self)

    def clone(self) -> "Tensor":
        return _Clone.apply(self)

    # -- new tensors of this one's dtype and device (PyTorch's new_* methods) --------------------

    def _or_own_device(self, device):
        """``device``, or this tensor's where it is None (the new_* methods' default)."""
        return self.device if device is None else device

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False) -> "Tensor":
        return tensor(
            data,
            dtype=dtype or self.dtype,
            device=self._or_own_device(device),
            requires_grad=requires_grad,
        )

    def new_zeros(self, *shape, size=None, dtype=None, device=None, requires_grad=False) -> "Tensor":
        return zeros(
            *shape,
            size=size,
            dtype=dtype or self.dtype,
            device=self._or_own_device(device),
            requires_grad=requires_grad,
        )

    def new_ones(self, *shape, size=None, dtype=None, device=None, requires_grad=False) -> "Tensor":
        return ones(
            *shape,
            size=size,
            dtype=dtype or self.dtype,
            device=self._or_own_device(device),
            requires_grad=requires_grad,
        )

    def new_empty(self, *shape, size=None, dtype=None, device=None, requires_grad=False) -> "Tensor":
        return empty(
            *shape,
            size=size,
            dtype=dtype or self.dtype,
            device=self._or_own_device(device),
            requires_grad=requires_grad,
        )

    def new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False) -> "Tensor":
        return full(
            size,
            fill_value,
            dtype=dtype or self.dtype,
            device=self._or_own_device(device),
            requires_grad=requires_grad,
        )

    # -- in-place operations ------------------------------------------------------------------
    # Each writes into this tensor's memory (views of it and tensors sharing it see the change) and
    # bumps that buffer's version. While recording, the value comes from the out-of-place Function and
    # the tensor's history becomes that Function's node, as in PyTorch; otherwise the write is direct.

    def _recording_inplace(self, what: str, args) -> bool:
        """Whether an in-place ``what`` with ``args`` must be recorded; raises where PyTorch refuses."""
        if not autograd.is_grad_enabled():
            return False
        if self._view_base is not None and self._node is None:
            base = self._view_base[0]
            if base._node is not None:
                self._rejoin_base()  # a view whose base gained a history since: the write is the base's too
            elif base._requires_grad:
                raise _leaf_in_place(what, "a view taken under no_grad of a leaf tensor")
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
        if node is None and self._view_base is not None:
            return self._write_through_base(function, args, *self._current_view_base())
        result = function.apply(self, *args)  # its node keeps this tensor's history so far
        if result._node is None:  # an integer or bool tensor: the values land, no history (as PyTorch)
            self._store(what, result._array)
            return self
        result._node.ctx._unshare_saved(autograd.buffer_of(self._array))
        self._store(what, result._array)
        self._take_history(result)
        return self

    def _inplace_on_view(self, what: str, function, args):
        """An in-place change of a recorded view: written through its base (``base[key] = new``), so the
        base's history records it too, and the view is taken again from the new base."""
        node = self._node
        base = node.view[0]
        if node.function is F.Index:
            key = node.ctx.meta[2]
        elif node.function is F.Permute:
            key = _WholeView("permute", tuple(node.ctx.dims))
        elif node.function is F.Reshape:
            key = _RESHAPED
        elif node.function is F.Diagonal:
            key = _WholeView("diagonal", tuple(node.ctx.meta[2:]))
        elif node.function is F.AsStrided:
            key = _WholeView("strided", node.ctx.meta[1])
        else:
            raise RuntimeError(
                f"{what}: in-place change of a {node.name()[: -len('Backward')]} view of a tensor in the autograd "
                "graph is not supported; index the base tensor instead, or compute the change out of place"
            )
        if base.is_leaf:
            raise _leaf_in_place(what, "a view of a leaf tensor")
        return self._write_through_base(function, args, base, key)

    def _write_through_base(self, function, args, base: "Tensor", key):
        """This view of ``base`` (``base[key]``, or a reshaped or permuted whole: a _WholeView key) set
        to ``function(self, *args)`` through the base (``base[key] = new``; ``base.copy_`` of ``new``
        mapped back), so the base records the change, also a base outside the graph written with values
        that need grad; then the view is taken again from the new base."""
        new = function.apply(self, *args)
        if new._node is not None:  # what it saved of this view must survive the write into the base
            new._node.ctx._unshare_saved(autograd.buffer_of(self._array))
        if not isinstance(key, _WholeView):
            base[key] = new
        elif key.kind == "reshape":
            base.copy_(new.reshape(base.shape))
        elif key.kind == "diagonal":
            offset, dim1, dim2 = key.dims
            base.copy_(F.DiagonalScatter.apply(base, new, offset=offset, dim1=dim1, dim2=dim2))
        elif key.kind == "strided":
            base[base._strided_elements(*key.dims)] = new
        else:
            base.copy_(new.permute(tuple(int(d) for d in np.argsort(key.dims))))
        return self._take_history(_view_again(base, key, self.shape))

    def _rejoin_base(self) -> None:
        """This view takes, when it is unrecorded, grad mode is on and its base (Tensor._view_base)
        gained a history after the view was taken (values that need grad written into the base, or
        through another view of it), that history, as PyTorch regenerates a view's: so it is read (and
        written) as the part of the base it is, not as a constant."""
        if self._node is None and self._view_base[0]._node is not None and autograd.is_grad_enabled():
            self._take_history(_view_again(*self._current_view_base(), self.shape))

    def _current_view_base(self) -> tuple:
        """``(base, key)`` of this unrecorded view (Tensor._view_base), while the base still has the memory
        and layout the key was taken on; RuntimeError once an in-place shape change (t_, transpose_,
        squeeze_, unsqueeze_, as_strided_, resize_) or ``data =`` gave the base another: the key would
        then pick other elements."""
        base, key, array = self._view_base
        if base._array is not array:
            raise RuntimeError(
                f"a view of shape {self.shape} was taken before its base's shape or memory changed in place (t_, "
                "transpose_, squeeze_, unsqueeze_, as_strided_, resize_ or data =), so it can't follow the base "
                "into the autograd graph; take the view again after the change"
            )
        return base, key

    def _take_history(self, result: "Tensor") -> "Tensor":
        node = result._node
        if node is None:  # an integer or bool result: no history to take
            return self
        old, old_index = self._node, self._output_index
        self._node, self._output_index, self._requires_grad = node, result._output_index, True
        retained = old.hooks.get(old_index, {}).pop("retain", None) if old is not None and old.hooks else None
        if retained is not None:  # retain_grad follows the tensor to its new value, as in PyTorch
            self._grad_hooks()["retain"] = retained
        meta = list(node.output_meta)
        meta[result._output_index] = (self.shape, self.dtype)  # the value is stored in this tensor's dtype
        node.output_meta = tuple(meta)
        return self

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
                f"{what}: the tensor's memory is read-only (an expand()ed view, a view whose elements overlap, or "
                "a read-only array given to from_numpy); clone() it first"
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
        """Writes ``src`` (broadcast; from any device; cast to this tensor's dtype as PyTorch casts: floats to
        integers by truncation, numbers to bool by != 0) into this tensor's data."""
        if isinstance(src, Tensor) and src.device != self.device:
            src = src.to(self.device)
        src = src if isinstance(src, Tensor) else Tensor._wrap(backends.to_device(as_array(src), self.device))
        try:
            fits = np.broadcast_shapes(src.shape, self.shape) == self.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"copy_: source of shape {src.shape} does not broadcast to {self.shape}")
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

    def __ifloordiv__(self, other):
        return self._inplace("//=", F.FloorDivide, self._operand(other, "//="))

    def __imod__(self, other):
        return self._inplace("%=", F.Remainder, self._operand(other, "%="))

    def pow_(self, exponent) -> "Tensor":
        return self._inplace("pow_", F.Pow, self._operand(exponent, "pow_"))

    def __ipow__(self, exponent):
        return self._inplace("**=", F.Pow, self._operand(exponent, "**="))

    def clamp_(self, min=None, max=None) -> "Tensor":
        _, low, high = _clamp_bounds(self, min, max, "clamp_", in_place=True)
        return self._inplace("clamp_", F.Clamp, low, high)

    clip_ = clamp_

    def exp_(self) -> "Tensor":
        return self._inplace("exp_", F.Exp)

    def masked_fill_(self, mask, value) -> "Tensor":
        return self._inplace("masked_fill_", _MaskedFill, *self._mask_and_value(mask, value, "masked_fill_"))

    def scatter_(self, dim, index, src=None, value=None, reduce=None) -> "Tensor":
        if self.ndim == 0 and isinstance(index, Tensor) and index.ndim == 0:  # the out-of-place op's way, written back
            return self.copy_(self.scatter(dim, index, src, value, reduce))
        return self._inplace("scatter_", F.Scatter, *self._scatter_args("scatter_", dim, index, src, value, reduce))

    def scatter_add_(self, dim, index, src) -> "Tensor":
        if self.ndim == 0 and isinstance(index, Tensor) and index.ndim == 0:  # as scatter_
            return self.copy_(self.scatter_add(dim, index, src))
        return self._inplace(
            "scatter_add_", F.Scatter, *self._scatter_args("scatter_add_", dim, index, src, None, "add")
        )

    def uniform_(self, from_=0.0, to=1.0, *, generator=None, **kwargs) -> "Tensor":
        """Fills the tensor with values drawn uniformly from [from, to) (``from`` may be given by name)."""
        low = kwargs.pop("from", from_)
        _no_extra(kwargs, "uniform_")
        if not low <= to:
            raise RuntimeError(f"uniform_: expects a [from, to) range, but found from={low} > to={to}")
        return self._fill_random("uniform_", lambda rng: rng.uniform(low, to, self.shape), generator)

    def normal_(self, mean=0.0, std=1.0, *, generator=None) -> "Tensor":
        """Fills the tensor with values drawn from the normal distribution N(mean, std^2)."""
        if not std >= 0:
            raise RuntimeError(f"normal_: expects std >= 0.0, got std={std}")
        return self._fill_random("normal_", lambda rng: rng.normal(mean, std, self.shape), generator)

    def _fill_random(self, what: str, draw, generator) -> "Tensor":
        """Overwrites the tensor with ``draw(rng)`` (float64 host values) rounded once to its dtype."""
        if not is_floating_dtype(self.dtype):
            raise RuntimeError(f"{what}: needs a floating-point tensor, got dtype {self.dtype}")
        values = backends.to_device(draw(generator or get_generator()).astype(self.dtype), self.device)
        return self._inplace(what, _Overwrite, values, direct=lambda: self._array.__setitem__(Ellipsis, values))

    # -- arithmetic ----------------------------------------------------------------------------

    # The operands of + - * / ** are promoted as PyTorch promotes them (_promoted), then NumPy computes.
    def __add__(self, other):
        return F.Add.apply(*_promoted(self, other))

    def __radd__(self, other):
        return F.Add.apply(*_promoted(other, self))

    def __sub__(self, other):
        return F.Sub.apply(*_promoted(*_subtractable(self, other)))

    def __rsub__(self, other):
        return F.Sub.apply(*_promoted(*_subtractable(other, self)))

    def __mul__(self, other):
        return F.Mul.apply(*_promoted(self, other))

    def __rmul__(self, other):
        return F.Mul.apply(*_promoted(other, self))

    def __truediv__(self, other):
        return F.Div.apply(*_promoted(self, other, divide=True))

    def __rtruediv__(self, other):
        return F.Div.apply(*_promoted(other, self, divide=True))

    def __pow__(self, other):
        return F.Pow.apply(*_promoted(self, other))

    def __rpow__(self, other):
        return F.Pow.apply(*_promoted(other, self))

    def __floordiv__(self, other):
        return F.FloorDivide.apply(*_promoted(self, other))

    def __rfloordiv__(self, other):
        return F.FloorDivide.apply(*_promoted(other, self))

    def __mod__(self, other):
        return F.Remainder.apply(*_promoted(self, other))

    def __rmod__(self, other):
        return F.Remainder.apply(*_promoted(other, self))

    def fmod(self, other):
        """The remainder with the dividend's sign (C's fmod); ``%`` and remainder take the divisor's."""
        return F.Remainder.apply(*_promoted(self, other), c_style=True)

    floor_divide, remainder = __floordiv__, __mod__

    def __matmul__(self, other):
        return F.MatMul.apply(self, other)

    def __rmatmul__(self, other):
        return F.MatMul.apply(other, self)

    def __neg__(self):
        return F.Neg.apply(self)

    mul, div, pow, matmul, neg = __mul__, __truediv__, __pow__, __matmul__, __neg__

    def add(self, other, alpha=1):
        """``self + alpha * other``, as PyTorch's ``add``."""
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other, alpha=1):
        """``self - alpha * other``, as PyTorch's ``sub``."""
        return self - (other if alpha == 1 else other * alpha)

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

    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__

    def equal(self, other) -> bool:
        """Whether ``other`` has this tensor's shape and the same elements."""
        return self.shape == other.shape and bool(np.all(self._array == _array_of(other)))

    # The bitwise operators on bool and integer tensors (on bools: logical and, or, xor, not).
    def _bitwise(self, other, ufunc, symbol: str, reflected=False):
        operand = _array_of(other)
        for x in (self._array, operand):
            kind = x.dtype.kind if hasattr(x, "dtype") else ("b" if isinstance(x, bool) else "i")
            if kind not in "biu" or (not hasattr(x, "dtype") and not isinstance(x, numbers.Integral)):
                raise TypeError(
                    f"operator {symbol}: needs bool or integer operands, got {self.dtype} and {_kind_name(other)}"
                )
        return Tensor._wrap(as_array(ufunc(operand, self._array) if reflected else ufunc(self._array, operand)))

    def __and__(self, other):
        return self._bitwise(other, np.bitwise_and, "&")

    def __or__(self, other):
        return self._bitwise(other, np.bitwise_or, "|")

    def __xor__(self, other):
        return self._bitwise(other, np.bitwise_xor, "^")

    def __rand__(self, other):
        return self._bitwise(other, np.bitwise_and, "&", reflected=True)

    def __ror__(self, other):
        return self._bitwise(other, np.bitwise_or, "|", reflected=True)

    def __rxor__(self, other):
        return self._bitwise(other, np.bitwise_xor, "^", reflected=True)

    def __invert__(self):
        if self.dtype.kind not in "biu":
            raise TypeError(f"operator ~: needs a bool or integer tensor, got dtype {self.dtype}")
        return Tensor._wrap(as_array(np.invert(self._array)))

    def logical_not(self):
        return Tensor._wrap(as_array(np.logical_not(self._array)))

    __hash__ = object.__hash__

    def __bool__(self):
        return bool(self.item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        """A one-element integer tensor as an index (``range(t)``, ``xs[t]``), as PyTorch."""
        if self.dtype.kind not in "iu" or self.numel() != 1:
            raise TypeError(
                f"only integer tensors of a single element can be converted to an index, got a {self.dtype} "
                f"tensor of shape {self.shape}"
            )
        return int(self.item())

    def __format__(self, spec: str) -> str:
        """A 0-d tensor formats as its number (``f"{loss:.3f}"``); others as their repr."""
        if self.ndim == 0:
            return format(self.item(), spec)
        return object.__format__(self, spec)

    def __abs__(self):
        return self.abs()

    def __pos__(self):
        return self

    # -- elementwise math ----------------------------------------------------------------------

    def exp(self):
        return F.Exp.apply(self._as_floating())

    def log(self):
        return F.Log.apply(self._as_floating())

    def sqrt(self):
        return F.Sqrt.apply(self._as_floating())

    def abs(self):
        return F.Abs.apply(self)

    def tanh(self):
        return F.Tanh.apply(self._as_floating())

    def sigmoid(self):
        return _in_float32(self._as_floating(), F.Sigmoid.apply, F.Sigmoid)

    def relu(self):
        if self.dtype == bool_:
            raise TypeError("relu: bool tensors are not supported (as in PyTorch)")
        return F.Relu.apply(self)

    def _as_floating(self) -> "Tensor":
        """This tensor, or its copy in the default float dtype when it holds integers or bools
        (PyTorch's float ops)."""
        return self if _category(self.dtype) >= 2 else self.to(_DEFAULT_FLOAT[0])

    def log1p(self):
        return F.Log1p.apply(self._as_floating())

    def expm1(self):
        return F.Expm1.apply(self._as_floating())

    def log2(self):
        return F.Log2.apply(self._as_floating())

    def log10(self):
        return F.Log10.apply(self._as_floating())

    def reciprocal(self):
        return 1.0 / self

    def rsqrt(self):
        return self._as_floating().sqrt().reciprocal()

    def square(self):
        x = self.to(int64) if self.dtype == bool_ else self
        return x * x

    # Rounding keeps integer tensors as they are; the gradient of the float ones is 0.
    def floor(self):
        return self.clone() if _category(self.dtype) < 2 else F.Floor.apply(self)

    def ceil(self):
        return self.clone() if _category(self.dtype) < 2 else F.Ceil.apply(self)

    def trunc(self):
        return self.clone() if _category(self.dtype) < 2 else F.Trunc.apply(self)

    def round(self, decimals=0):
        """Rounds half to even (2.5 -> 2), at ``decimals`` places (integers only at 0, as PyTorch)."""
        if _category(self.dtype) < 2:
            if decimals:
                raise TypeError(f"round: decimals={decimals} needs a floating-point tensor, got dtype {self.dtype}")
            return self.clone()
        return F.Round.apply(self, decimals=int(decimals))

    def frac(self):
        if _category(self.dtype) < 2:
            raise TypeError(f"frac: needs a floating-point tensor, got dtype {self.dtype}")
        return self - self.trunc()

    def sign(self):
        """-1, 0 or 1 by sign (0 for NaN, as PyTorch); gradient 0."""
        return self.clone() if self.dtype == bool_ else F.Sign.apply(self)

    def isnan(self):
        return Tensor._wrap(as_array(np.isnan(self._array)))

    def isinf(self):
        return Tensor._wrap(as_array(np.isinf(self._array)))

    def isfinite(self):
        return Tensor._wrap(as_array(np.isfinite(self._array)))

    def clamp_min(self, min):
        return self.clamp(min=min)

    def clamp_max(self, max):
        return self.clamp(max=max)

    def clamp(self, min=None, max=None):
        """Elements limited to [min, max] (either may be None); the bounds may be numbers or tensors
        (broadcast), the result in PyTorch's promoted dtype, and tensor bounds that require grad get
        the gradient where they bind."""
        dtype, low, high = _clamp_bounds(self, min, max, "clamp", in_place=False)
        return F.Clamp.apply(self if self.dtype == dtype else self.to(dtype), low, high)

    def sin(self):
        return F.Sin.apply(self._as_floating())

    def cos(self):
        return F.Cos.apply(self._as_floating())

    def maximum(self, other):
        return F.Maximum.apply(*_promoted(self, other))

    def minimum(self, other):
        return F.Maximum.apply(*_promoted(self, other), minimum=True)

    def softmax(self, dim, dtype=None):
        from .nn import functional

        return functional.softmax(self, dim, dtype)

    def log_softmax(self, dim, dtype=None):
        from .nn import functional

        return functional.log_softmax(self, dim, dtype)

    def masked_fill(self, mask, value) -> "Tensor":
        """This tensor with ``value`` (a number or a 0-d tensor) where the bool ``mask`` (broadcast to
        this tensor's shape) is True."""
        return _MaskedFill.apply(self, *self._mask_and_value(mask, value, "masked_fill"))

    def _mask_and_value(self, mask, value, what: str):
        if not isinstance(mask, Tensor) or mask.dtype != bool_:
            raise TypeError(f"{what}: mask must be a bool Tensor, got {_kind_name(mask)}")
        if _broadcast_shape(mask.shape, self.shape, what, "mask") != self.shape:
            raise RuntimeError(
                f"{what}: mask of shape {mask.shape} does not broadcast to the tensor's shape {self.shape}"
            )
        if isinstance(value, Tensor):
            if value.ndim != 0:
                raise RuntimeError(f"{what}: value must be a number or a 0-dimensional tensor, got shape {value.shape}")
            value = value.to(self.dtype)
        elif isinstance(value, (numbers.Number, np.generic)):
            value = self.dtype.type(value)
        else:
            raise TypeError(f"{what}: value must be a number or a 0-dimensional tensor, got {_kind_name(value)}")
        return _on_device_of(self, mask, what), value

    clip = clamp

    # -- reductions ----------------------------------------------------------------------------

    def sum(self, dim=None, keepdim=False, dtype=None):
        """The sum over ``dim`` (an int, a tuple, None: all); bool and integer tensors sum in int64 unless
        ``dtype`` says."""
        x = self if dtype is None else self.to(dtype)
        if dtype is None and x.dtype.kind in "biu" and x.dtype != int64:
            x = x.to(int64)
        return _in_float32(x, lambda x: F.Sum.apply(x, dim=dim, keepdim=keepdim), F.Sum)

    def mean(self, dim=None, keepdim=False, dtype=None):
        """The mean over ``dim``; needs a floating-point tensor (or ``dtype``), as PyTorch's."""
        x = self if dtype is None else self.to(dtype)
        if not _floating_or_complex(x.dtype):
            raise RuntimeError(f"mean: needs a floating-point tensor or dtype=, got dtype {x.dtype}")
        return _in_float32(x, lambda x: F.Mean.apply(x, dim=dim, keepdim=keepdim), F.Mean)

    def amax(self, dim=(), keepdim=False):
        """The largest value over ``dim`` (an int or a tuple; () or None: all); the gradient is
        shared evenly among the elements equal to it."""
        return self._extremum("amax", dim, keepdim, minimum=False)

    def amin(self, dim=(), keepdim=False):
        """The smallest value over ``dim`` (see amax)."""
        return self._extremum("amin", dim, keepdim, minimum=True)

    def _extremum(self, what: str, dim, keepdim: bool, minimum: bool):
        axes = F._axes(dim, self.ndim)
        if any(self.shape[ax] == 0 for ax in axes if self.ndim):
            raise IndexError(f"{what}: a reduced dimension of the tensor of shape {self.shape} is empty")
        if self.ndim == 0:
            return self.clone()
        return F.Extremum.apply(self, axes, keepdim=keepdim, minimum=minimum)

    def prod(self, dim=None, keepdim=False, dtype=None):
        """The product over ``dim`` (an int; None: every element); bool and integer tensors multiply
        in int64, as PyTorch's."""
        x = self if dtype is None else self.to(dtype)
        if dtype is None and _category(x.dtype) < 2 and x.dtype != int64:
            x = x.to(int64)
        axis = None if dim is None else x._dim(dim, "prod")
        axis = None if x.ndim == 0 else axis
        return F.Prod.apply(x, axis=axis, keepdim=keepdim and axis is not None)

    def logsumexp(self, dim, keepdim=False):
        """log(sum(exp(x))) over ``dim`` (an int or a tuple), without overflow; -inf where every value
        is -inf. Its gradient is the softmax over ``dim``."""
        x = self._as_floating()
        if x.ndim == 0:
            return x.clone()
        return _in_float32(x, lambda x: F.LogSumExp.apply(x, F._axes(dim, x.ndim), keepdim=keepdim), F.LogSumExp)

    def max(self, dim=None, keepdim=False):
        """The largest element, ``(values, indices)`` along ``dim``, or the elementwise maximum
        with a Tensor given in place of ``dim``."""
        if isinstance(dim, Tensor):
            return self.maximum(dim)
        if dim is not None and self.ndim == 0:
            return self._max_of_scalar(dim)
        out = F.Max.apply(self, dim=dim, keepdim=keepdim)
        return out if dim is None else MaxResult(*out)

    def _max_of_scalar(self, dim) -> "MaxResult":
        """max/min of a 0-d tensor along its dim 0 or -1 (PyTorch takes them): itself, at index 0."""
        F._axes(dim, 0)  # IndexError for other dims
        return MaxResult(self.clone(), Tensor._wrap(self._backend().zeros((), np.int64)))

    def min(self, dim=None, keepdim=False):
        if isinstance(dim, Tensor):
            return self.minimum(dim)
        if dim is not None and self.ndim == 0:
            return self._max_of_scalar(dim)
        out = F.Max.apply(self, dim=dim, keepdim=keepdim, minimum=True)
        return out if dim is None else MaxResult(*out)

    def argmax(self, dim=None, keepdim=False):
        """The index of the largest element along ``dim`` (None: of the flattened tensor)."""
        if self.dtype == bool_:
            raise TypeError("argmax: bool tensors are not supported (as in PyTorch)")
        return self._flat_arg(np.argmax, keepdim) if dim is None else self.max(dim, keepdim).indices

    def argmin(self, dim=None, keepdim=False):
        """The index of the smallest element along ``dim`` (None: of the flattened tensor)."""
        if self.dtype == bool_:
            raise TypeError("argmin: bool tensors are not supported (as in PyTorch)")
        return self._flat_arg(np.argmin, keepdim) if dim is None else self.min(dim, keepdim).indices

    def _flat_arg(self, arg_reduction, keepdim=False) -> "Tensor":
        """``arg_reduction`` (np.argmax or np.argmin) of the flattened tensor, as a 0-d int64 tensor on its
        device (with ``keepdim``, of the tensor's number of dimensions, each 1, as PyTorch's)."""
        index = arg_reduction(self._array.reshape(-1), axis=0, keepdims=True).reshape(
            (1,) * self.ndim if keepdim else ()
        )
        return Tensor._wrap(index.astype(np.int64, copy=False))

    def nonzero(self, *, as_tuple=False):
        """The indices of the nonzero elements in row-major order: an int64 tensor of shape
        (count, ndim), or with ``as_tuple`` one 1-d int64 tensor per dimension (a 0-d tensor is
        treated as 1-d there, as in PyTorch). The count depends on the data, so a GPU tensor waits
        for its values."""
        if as_tuple:
            return tuple(
                Tensor._wrap(i.astype(np.int64, copy=False))
                for i in np.nonzero(self._array.reshape(self.shape or (1,)))
            )
        return Tensor._wrap(np.argwhere(self._array).astype(np.int64, copy=False))

    def argwhere(self):
        """``nonzero()``: the (count, ndim) int64 indices of the nonzero elements."""
        return self.nonzero()

    def masked_select(self, mask):
        """The elements where the bool ``mask`` is True, as a 1-d tensor (tensor and mask broadcast
        with each other first), differentiable in this tensor."""
        if not isinstance(mask, Tensor) or mask.dtype != bool_:
            raise TypeError(f"masked_select: mask must be a bool Tensor, got {_kind_name(mask)}")
        shape = _broadcast_shape(mask.shape, self.shape, "masked_select", "mask")
        return self.expand(shape)[mask.expand(shape)]

    def all(self, dim=None, keepdim=False):
        """Whether every element (along ``dim``) is nonzero, as a bool tensor."""
        axes = None if dim is None else F._axes(dim, self.ndim)
        return Tensor._wrap(as_array(np.all(self._array, axis=axes, keepdims=keepdim)))

    def any(self, dim=None, keepdim=False):
        """Whether some element (along ``dim``) is nonzero, as a bool tensor."""
        axes = None if dim is None else F._axes(dim, self.ndim)
        return Tensor._wrap(as_array(np.any(self._array, axis=axes, keepdims=keepdim)))

    @through_float32
    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        """The variance over ``dim``: sum((x - mean)^2) / (N - correction); ``correction`` defaults
        to 1 (``unbiased=False`` means 0). N <= correction gives inf or NaN, as in PyTorch;
        bfloat16 is computed in float32 and rounded once, as PyTorch does."""
        if isinstance(dim, bool):  # the older var(unbiased) form
            dim, unbiased = None, dim
        if unbiased is not None and correction is not None:
            raise ValueError("var: give unbiased or correction, not both")
        correction = (1 if unbiased is None or unbiased else 0) if correction is None else correction
        if not _floating_or_complex(self.dtype):
            raise RuntimeError(f"var: needs a floating-point tensor, got dtype {self.dtype}")
        axes = F._axes(dim, self.ndim)
        count = math.prod(self.shape[ax] for ax in axes)
        return F.Var.apply(self, axes=axes, keepdim=keepdim, divisor=max(count - correction, 0))

    @through_float32
    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        """The square root of :meth:`var` (same arguments; bfloat16 rounded once, after it); its gradient
        is 0 where the deviation is 0 (a constant slice), as PyTorch's."""
        return F.Sqrt.apply(self.var(dim, unbiased, keepdim, correction=correction), zero_at_zero=True)

    def norm(self, p="fro", dim=None, keepdim=False, dtype=None):
        """The vector ``p``-norm over ``dim`` (None: all elements): p a positive number, inf, or
        'fro' (2); the gradient at a zero norm is 0."""
        if p == "fro" or p is None:
            p = 2
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not p > 0:
            raise ValueError(f"norm: p must be a positive number, inf or 'fro', got {p!r}")
        x = self if dtype is None else self.to(dtype)
        if not is_floating_dtype(x.dtype):
            raise RuntimeError(f"norm: needs a floating-point tensor or dtype=, got dtype {x.dtype}")
        return _in_float32(x, lambda x: F.Norm.apply(x, float(p), F._axes(dim, x.ndim), keepdim), F.Norm)

    def cumsum(self, dim, dtype=None):
        """The running sum along ``dim`` (bool and integer tensors sum in int64 unless ``dtype`` says)."""
        x = self if dtype is None else self.to(dtype)
        if dtype is None and x.dtype.kind in "biu" and x.dtype != int64:
            x = x.to(int64)
        if x.ndim == 0:
            return _in_float32(x, lambda x: F.Cumsum.apply(x.reshape(1), 0).reshape(()), F.Cumsum)
        return _in_float32(x, lambda x: F.Cumsum.apply(x, self._dim(dim, "cumsum")), F.Cumsum)

    # -- sorting, gathering, scattering ----------------------------------------------------------

    def argsort(self, dim=-1, descending=False, stable=False):
        """The indices that sort the tensor along ``dim``; equal elements keep their order, NaN
        sorts as the largest value (as PyTorch's)."""
        if self.ndim == 0:
            return zeros((), dtype=int64, device=self.device)
        axis, a = self._dim(dim, "argsort"), self._array
        if not descending:
            order = np.argsort(a, axis=axis, kind="stable")
        else:  # the stable ascending order of the reversed tensor, reversed, counts from the end
            reverse_order = np.argsort(F.reversed_along(a, axis), axis=axis, kind="stable")
            order = (a.shape[axis] - 1) - F.reversed_along(reverse_order, axis)
        return Tensor._wrap(as_array(order).astype(np.int64, copy=False))

    def sort(self, dim=-1, descending=False, stable=False):
        """``(values, indices)``: the tensor sorted along ``dim`` (see argsort); values are
        differentiable."""
        if self.ndim == 0:
            return SortResult(self.clone(), self.argsort())
        indices = self.argsort(dim, descending, stable)
        return SortResult(F.Gather.apply(self, indices._array, self._dim(dim, "sort"), unique=True), indices)

    def topk(self, k, dim=-1, largest=True, sorted=True):
        """``(values, indices)`` of the ``k`` largest (``largest=False``: smallest) elements along
        ``dim``, in order."""
        size = self.shape[self._dim(dim, "topk")] if self.ndim else 1
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 0 <= k <= size:
            raise RuntimeError(f"topk: k ({k!r}) is out of range for dimension {dim} of size {size}")
        if self.ndim == 0:
            return TopkResult(*self.sort()) if k else TopkResult(self.reshape(1)[:0], zeros(0, dtype=int64))
        axis = self._dim(dim, "topk")
        indices = self.argsort(dim, descending=largest)[(slice(None),) * axis + (slice(0, k),)]
        return TopkResult(F.Gather.apply(self, indices._array, axis, unique=True), indices)

    def gather(self, dim, index) -> "Tensor":
        """``out[i][j] = self[i][index[i][j]]`` for dim 1 (likewise for any dim); ``index`` is an int64
        tensor of this tensor's number of dimensions, no larger than it except along ``dim``."""
        axis = self._dim(dim, "gather")
        if self.ndim == 0 and isinstance(index, Tensor) and index.ndim == 0:  # as a 1-element vector
            return self.reshape(1).gather(0, index.reshape(1)).reshape(())
        return F.Gather.apply(self, self._index(index, axis, "gather", self.shape), axis)

    def scatter(self, dim, index, src=None, value=None, reduce=None) -> "Tensor":
        """A copy with ``src``'s elements (or ``value``) written at ``index`` along ``dim``
        (``self[i][index[i][j]] = src[i][j]`` for dim 1); ``reduce='add'`` adds them instead."""
        if self.ndim == 0 and isinstance(index, Tensor) and index.ndim == 0:  # as a 1-element vector
            src = src.reshape(1) if isinstance(src, Tensor) else src
            return self.reshape(1).scatter(dim, index.reshape(1), src, value, reduce).reshape(())
        return F.Scatter.apply(self, *self._scatter_args("scatter", dim, index, src, value, reduce))

    def scatter_add(self, dim, index, src) -> "Tensor":
        """A copy with ``src``'s elements added at ``index`` along ``dim`` (repeats accumulate)."""
        if self.ndim == 0 and isinstance(index, Tensor) and index.ndim == 0:  # as a 1-element vector
            return self.reshape(1).scatter_add(dim, index.reshape(1), src.reshape(1)).reshape(())
        return F.Scatter.apply(self, *self._scatter_args("scatter_add", dim, index, src, None, "add"))

    def _scatter_args(self, what: str, dim, index, src, value, reduce):
        """(index array, src, axis, add) for F.Scatter, checked as PyTorch checks them."""
        if reduce not in (None, "add"):
            raise ValueError(f"{what}: reduce must be None or 'add', got {reduce!r}")
        if isinstance(src, (numbers.Number, np.generic)):
            src, value = None, src
        if (src is None) == (value is None):
            raise TypeError(f"{what}: give exactly one of src (a Tensor) and value (a number)")
        axis = self._dim(dim, what)
        if src is not None:
            if not isinstance(src, Tensor):
                raise TypeError(f"{what}: src must be a Tensor, got {_kind_name(src)}")
            if src.dtype != self.dtype:
                raise RuntimeError(f"{what}: src has dtype {src.dtype}, expected the tensor's {self.dtype}")
            if src.ndim != self.ndim:
                raise RuntimeError(f"{what}: src has {src.ndim} dimensions, the tensor {self.ndim}")
        limit = tuple(
            n if src is None else min(n, m) for n, m in zip(self.shape, src.shape if src is not None else self.shape)
        )
        index = self._index(index, axis, what, limit, src.shape if src is not None else None)
        return index, (self.dtype.type(value) if src is None else src), axis, reduce == "add"

    def _index(self, index, axis: int, what: str, limit: tuple, src_shape=None):
        """``index`` (int64 or int32, as PyTorch takes) as an int64 array for gather/scatter along
        ``axis``: as many dimensions as this tensor, each no larger than ``limit`` except along ``axis``
        (and than ``src_shape`` along it), its values in [0, size of ``axis``)."""
        if not isinstance(index, Tensor) or index.dtype not in (int64, int32):
            raise RuntimeError(f"{what}: index must be an int64 or int32 Tensor, got {_kind_name(index)}")
        index = index.to(int64) if index.dtype != int64 else index
        if index.ndim != self.ndim:
            raise RuntimeError(f"{what}: index has {index.ndim} dimensions but the tensor has {self.ndim}")
        too_big = [d for d, (n, m) in enumerate(zip(index.shape, limit)) if n > m and d != axis]
        if too_big or (src_shape is not None and index.shape[axis] > src_shape[axis]):
            raise RuntimeError(
                f"{what}: index of shape {index.shape} is larger than the tensor {self.shape}"
                + (f" or src {src_shape}" if src_shape is not None else "")
                + f" in a dimension other than dim {axis}"
            )
        arr = _on_device_of(self, index, what)
        size = self.shape[axis]
        if arr.size and not (int(arr.min()) >= 0 and int(arr.max()) < size):
            bad = int(arr.min()) if int(arr.min()) < 0 else int(arr.max())
            raise IndexError(f"{what}: index {bad} is out of bounds for dimension {axis} with size {size}")
        return arr

    def index_select(self, dim, index) -> "Tensor":
        """The slices ``index`` (a 1-D integer tensor) along ``dim``, in that order."""
        axis = self._dim(dim, "index_select")
        if not isinstance(index, Tensor) or index.dtype.kind not in "iu" or index.ndim > 1:
            raise RuntimeError(f"index_select: index must be a 1-D integer Tensor, got {_kind_name(index)}")
        if self.ndim == 0:  # as a 1-element vector; PyTorch's result is 0-d
            return self.reshape(1).index_select(0, index).reshape(())
        arr = _on_device_of(self, index, "index_select").reshape(-1)
        size = self.shape[axis]
        if arr.size and not (int(arr.min()) >= 0 and int(arr.max()) < size):
            bad = int(arr.min()) if int(arr.min()) < 0 else int(arr.max())
            raise IndexError(f"index_select: index {bad} is out of bounds for dimension {axis} with size {size}")
        return F.IndexSelect.apply(self, arr.astype(np.int64, copy=False), axis)

    def _dim(self, dim, what: str) -> int:
        """``dim`` as an axis in [0, ndim) (a 0-d tensor takes -1 and 0); IndexError naming ``what``."""
        return _wrap_dim(dim, self.ndim, what)

    # -- shape ---------------------------------------------------------------------------------

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return self._remember_base(F.Reshape.apply(self, _resolve_shape(self.shape, shape)), _RESHAPED)

    def view(self, *shape):
        """``reshape`` that never copies: a RuntimeError, as in PyTorch, where the new shape cannot be a
        view of this tensor's memory (dimensions it merges are not laid out one after the other)."""
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        shape = _resolve_shape(self.shape, shape)
        if isinstance(self._array, np.ndarray):
            try:
                np.reshape(self._array, shape, copy=False)
            except ValueError:
                raise RuntimeError(
                    f"view: shape {shape} is not compatible with the tensor's shape {self.shape} and strides "
                    f"{self.stride()} (a dimension it merges spans two contiguous parts); use reshape(...) instead"
                ) from None
        return self.reshape(shape)

    def flatten(self, start_dim=0, end_dim=-1):
        start, end = self._dim(start_dim, "flatten"), self._dim(end_dim, "flatten")
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} (shape {self.shape})")
        if self.ndim == 0:
            return self.reshape(1)
        merged = math.prod(self.shape[start : end + 1])  # not -1: a tensor of no elements has no -1 to solve
        return self.reshape(self.shape[:start] + (merged,) + self.shape[end + 1 :])

    def permute(self, *dims):
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        axes = tuple(self._dim(d, "permute") for d in dims) if self.ndim else tuple(dims)
        if sorted(axes) != list(range(self.ndim)):
            raise ValueError(f"permute: dims {tuple(dims)} are not a permutation of {self.ndim} dimensions")
        return self._permuted(axes)

    def transpose(self, dim0, dim1):
        dim0, dim1 = self._dim(dim0, "transpose"), self._dim(dim1, "transpose")
        dims = list(range(self.ndim))
        if self.ndim:
            dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return self._permuted(tuple(dims))

    swapaxes = swapdims = transpose

    @property
    def T(self):
        return self._permuted(tuple(reversed(range(self.ndim))))

    @property
    def mT(self):
        """The last two dimensions swapped (a batch of matrices transposed)."""
        if self.ndim < 2:
            raise RuntimeError(f"mT: needs a tensor of at least 2 dimensions, got shape {self.shape}")
        return self.transpose(-2, -1)

    def movedim(self, source, destination):
        """Dimensions ``source`` (an int or a tuple) moved to positions ``destination``, the others
        keeping their order."""
        sources = (source,) if isinstance(source, numbers.Integral) else tuple(source)
        targets = (destination,) if isinstance(destination, numbers.Integral) else tuple(destination)
        if len(sources) != len(targets):
            raise ValueError(f"movedim: source {source} and destination {destination} differ in length")
        sources = tuple(self._dim(d, "movedim") for d in sources)
        targets = tuple(self._dim(d, "movedim") for d in targets)
        if len(set(sources)) != len(sources) or len(set(targets)) != len(targets):
            raise ValueError(f"movedim: repeated dims in source {source} or destination {destination}")
        rest = iter(d for d in range(self.ndim) if d not in sources)
        moved = dict(zip(targets, sources))
        return self._permuted(tuple(moved[i] if i in moved else next(rest) for i in range(self.ndim)))

    moveaxis = movedim

    def unflatten(self, dim, sizes):
        """Dimension ``dim`` split into ``sizes`` (one of them may be -1)."""
        axis = self._dim(dim, "unflatten")
        sizes = tuple(sizes)
        inner = _resolve_shape((self.shape[axis],), sizes) if sizes else None
        if inner is None:
            raise ValueError(f"unflatten: sizes must not be empty (dim {dim} of shape {self.shape})")
        return self.reshape(self.shape[:axis] + inner + self.shape[axis + 1 :])

    def diagonal(self, offset=0, dim1=0, dim2=1):
        """The diagonal at ``offset`` of each (dim1, dim2) plane, as the last dimension."""
        d1, d2 = self._dim(dim1, "diagonal"), self._dim(dim2, "diagonal")
        if self.ndim < 2 or d1 == d2:
            raise ValueError(f"diagonal: dim1 {dim1} and dim2 {dim2} must be two dimensions of shape {self.shape}")
        view = F.Diagonal.apply(self, offset=int(offset), dim1=d1, dim2=d2)
        return self._remember_base(view, _WholeView("diagonal", (int(offset), d1, d2)))

    def outer(self, vec2):
        """The outer product of two 1-D tensors: (n, m)."""
        if self.ndim != 1 or not isinstance(vec2, Tensor) or vec2.ndim != 1:
            raise RuntimeError(f"outer: needs two 1-D tensors, got {_kind_name(self)} and {_kind_name(vec2)}")
        return self.reshape(-1, 1) * vec2.reshape(1, -1)

    def tile(self, *dims):
        """repeat() with ``dims`` padded with leading 1s to the tensor's dimensions."""
        dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        return self.repeat(*((1,) * (self.ndim - len(dims)) + tuple(dims)))

    def repeat_interleave(self, repeats, dim=None):
        """Each element (along ``dim``; None: of the flattened tensor) repeated ``repeats`` times in
        place: an int, or a 1-D int tensor with a count per element."""
        x = self.reshape(-1) if dim is None else self
        axis = 0 if dim is None else x._dim(dim, "repeat_interleave")
        size = x.shape[axis] if x.ndim else 1
        counts = _array_of(repeats)
        if not isinstance(counts, (numbers.Integral, np.ndarray)):
            counts = backends.to_device(counts, CPU_DEVICE)  # the counts decide the shape: on the host
        counts = np.asarray(counts)
        if counts.dtype.kind not in "iu" or counts.ndim > 1 or (counts.ndim == 1 and counts.shape[0] != size):
            raise ValueError(f"repeat_interleave: repeats must be an int or {size} ints, got {_kind_name(repeats)}")
        if (counts < 0).any():
            raise ValueError(f"repeat_interleave: repeats must be non-negative, got {counts.min()}")
        index = np.repeat(np.arange(size, dtype=np.int64), counts)
        return x.index_select(axis, Tensor._wrap(backends.to_device(index, x.device)))

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    def element_size(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.numel() * self.dtype.itemsize

    def stride(self, dim=None):
        """The steps between elements along each dimension, in elements (or along ``dim``)."""
        steps = tuple(int(b) // self.dtype.itemsize for b in self._array.strides)
        return steps if dim is None else steps[self._dim(dim, "stride")]

    def t(self):
        """The transpose of a tensor of at most 2 dimensions (itself for 0 and 1), as PyTorch."""
        if self.ndim > 2:
            raise RuntimeError(
                f"t(): expects a tensor of at most 2 dimensions, got shape {self.shape}; use transpose()"
            )
        return self.T

    def squeeze(self, dim=None):
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        dims = [self._dim(d, "squeeze") for d in (dim if isinstance(dim, (tuple, list)) else (dim,))]
        axes = set(dims)
        if len(axes) != len(dims):
            raise ValueError(f"squeeze: dim {dim} names a dimension twice")
        if self.ndim == 0:
            return self
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if n != 1 or i not in axes))

    def unsqueeze(self, dim):
        dim = _wrap_dim(dim, self.ndim + 1, "unsqueeze")
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def expand(self, *shape):
        """The tensor broadcast to ``shape`` (a view); -1 keeps a dimension's size, and only an existing
        one's: a new leading dimension must be given (RuntimeError, as PyTorch's)."""
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        new = len(shape) - self.ndim
        if any(n == -1 for n in shape[: max(new, 0)]):
            raise RuntimeError(
                f"expand: the size -1 is not allowed in a new leading dimension, got {tuple(shape)} for a tensor "
                f"of shape {self.shape}"
            )
        shape = tuple(self.shape[i - new] if n == -1 else n for i, n in enumerate(shape))
        return F.Expand.apply(self, shape)

    def expand_as(self, other):
        return self.expand(other.shape)

    def repeat(self, *sizes):
        """The tensor tiled ``sizes[i]`` times along dimension i (leading sizes add dimensions)."""
        sizes = _dims_args(sizes)
        if len(sizes) < self.ndim or any(n < 0 for n in sizes):
            raise RuntimeError(
                f"repeat: sizes {tuple(sizes)} must be non-negative and at least as many as the tensor's "
                f"{self.ndim} dimensions"
            )
        shape = (1,) * (len(sizes) - self.ndim) + self.shape
        paired = self.reshape(sum(((1, n) for n in shape), ()))
        tiled = paired.expand(sum(((r, n) for r, n in zip(sizes, shape)), ()))
        out = tiled.reshape(tuple(r * n for r, n in zip(sizes, shape)))
        # A copy, as PyTorch's: the reshape is still a (read-only) view of this tensor where no
        # element repeats (counts of 1, or tiling a dimension of size 1).
        return out.clone() if autograd.buffer_of(out._array) is autograd.buffer_of(self._array) else out

    def narrow(self, dim, start, length):
        """The ``length`` elements from ``start`` along ``dim`` (a view)."""
        axis = self._dim(dim, "narrow")
        size = self.shape[axis]
        if not -size <= start <= size or length < 0 or start % max(size, 1) + length > size:
            raise IndexError(f"narrow: start ({start}) + length ({length}) exceeds dimension {axis} of size {size}")
        begin = start % size if size else 0
        return self[(slice(None),) * axis + (slice(begin, begin + length),)]

    def select(self, dim, index):
        """The slice at ``index`` along ``dim``, without that dimension."""
        axis = self._dim(dim, "select")
        if self.ndim == 0 or not -self.shape[axis] <= index < self.shape[axis]:
            raise IndexError(f"select: index {index} is out of range for dimension {dim} of shape {self.shape}")
        return self[(slice(None),) * axis + (index,)]

    def split(self, split_size_or_sections, dim=0):
        """Pieces along ``dim``: of ``split_size`` elements each (the last may be smaller), or of the
        listed sizes, which must add up to the dimension's size."""
        axis = self._dim(dim, "split")
        size = self.shape[axis]
        if isinstance(split_size_or_sections, numbers.Integral):
            step = int(split_size_or_sections)
            if step < 0 or (step == 0 and size != 0):
                raise RuntimeError(f"split: split_size must be positive (0 only for an empty dimension), got {step}")
            sizes = [min(step, size - i) for i in range(0, size, step)] if size else [0]
        else:
            sizes = [int(n) for n in split_size_or_sections]
            if sum(sizes) != size or any(n < 0 for n in sizes):
                raise RuntimeError(f"split: sizes {sizes} don't add up to the size {size} of dimension {axis}")
        starts = np.cumsum([0] + sizes[:-1])
        return tuple(self.narrow(axis, int(b), n) for b, n in zip(starts, sizes))

    def chunk(self, chunks, dim=0):
        """At most ``chunks`` pieces of equal size along ``dim`` (the last may be smaller)."""
        if isinstance(chunks, bool) or not isinstance(chunks, numbers.Integral) or chunks <= 0:
            raise RuntimeError(f"chunk: chunks must be a positive int, got {chunks!r}")
        size = self.shape[self._dim(dim, "chunk")]
        return self.split([0] * chunks if size == 0 else -(-size // chunks), dim)  # PyTorch's pieces of an empty dim

    def unbind(self, dim=0):
        """The slices along ``dim``, as a tuple."""
        axis = self._dim(dim, "unbind")
        if self.ndim == 0:
            raise IndexError("unbind: a 0-d tensor has no dimension to unbind")
        return tuple(self.select(axis, i) for i in range(self.shape[axis]))

    def flip(self, *dims):
        """A copy with the elements in reverse order along each of ``dims`` (not a view, as PyTorch's)."""
        axes = [self._dim(d, "flip") for d in _dims_args(dims)]
        if len(set(axes)) != len(axes):
            raise RuntimeError(f"flip: dims {tuple(dims)} name a dimension twice")
        return self[tuple(slice(None, None, -1) if d in axes else slice(None) for d in range(self.ndim))].clone()

    def roll(self, shifts, dims=None):
        """The elements shifted by ``shifts`` along ``dims`` (those pushed off the end come back at
        the start); without ``dims``, along the flattened tensor."""
        if dims is None:
            if not isinstance(shifts, numbers.Integral):
                if len(shifts) != 1:
                    raise RuntimeError(f"roll: without dims, shifts must be one int, got {tuple(shifts)}")
                (shifts,) = shifts
            return self.flatten().roll(shifts, 0).reshape(self.shape)
        shifts = (shifts,) if isinstance(shifts, numbers.Integral) else tuple(shifts)
        dims = (dims,) if isinstance(dims, numbers.Integral) else tuple(dims)
        if len(shifts) != len(dims):
            raise RuntimeError(f"roll: shifts {shifts} and dims {dims} must have the same length")
        out = self
        for shift, dim in zip(shifts, dims):
            axis = self._dim(dim, "roll")
            size = self.shape[axis] if self.ndim else 1
            k = shift % size if size else 0
            if k:
                out = cat([out.narrow(axis, size - k, k), out.narrow(axis, 0, size - k)], axis)
        return out if out is not self else self.clone()

    def tril(self, diagonal=0):
        """The lower triangle of the last two dimensions (j - i <= ``diagonal``), zeros elsewhere."""
        return self._triangle("tril", diagonal)

    def triu(self, diagonal=0):
        """The upper triangle of the last two dimensions (j - i >= ``diagonal``), zeros elsewhere."""
        return self._triangle("triu", diagonal)

    def _triangle(self, what: str, diagonal):
        if self.ndim < 2:
            raise RuntimeError(f"{what}: needs a tensor of at least 2 dimensions, got shape {self.shape}")
        rows, cols = self.shape[-2:]
        lower = np.tri(rows, cols, diagonal if what == "tril" else diagonal - 1, dtype=bool)
        keep = backends.to_device(lower if what == "tril" else ~lower, self.device)
        return F.Where.apply(keep, self, self.dtype.type(0))

    def __getitem__(self, key):
        key = _index_key(key)
        first, rest = _integers_first(key)
        if first is not None:
            return self[first][rest]
        return self._remember_base(F.Index.apply(self, key), key)

    def _permuted(self, dims: tuple) -> "Tensor":
        return self._remember_base(F.Permute.apply(self, dims), _WholeView("permute", dims))

    def _remember_base(self, view: "Tensor", key) -> "Tensor":
        """``view``, remembering this tensor as its base when it is a view of it taken outside the
        graph (an index key, or a _WholeView): an in-place write of values that need grad into it is
        then recorded on the base too (base[1].copy_(w * 3), base.t()[0].add_(w), as in PyTorch)."""
        arr = view._array
        if view._node is None and getattr(arr, "base", None) is not None and arr.size:
            if autograd.buffer_of(arr) is autograd.buffer_of(self._array):
                view._view_base = (self, key, self._array)
        return view

    def __setitem__(self, key, value):
        key = _index_key(key)
        first, rest = _integers_first(key)
        if first is not None:
            self[first][rest] = value  # a view of this tensor: written through
            return
        value = self._operand(value, "item assignment")
        direct = lambda: self._array.__setitem__(key, _array_of(value))  # noqa: E731
        self._inplace("item assignment", _SetItem, value, key, direct=direct)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def _view_again(base: "Tensor", key, shape: tuple) -> "Tensor":
    """The view ``key`` (Tensor._view_base's: an index key or a _WholeView) of ``base`` taken again,
    with the base's history; ``shape`` is the view's (a reshape's target)."""
    if not isinstance(key, _WholeView):
        return F.Index.apply(base, key)
    if key.kind == "reshape":
        return base.reshape(shape)
    if key.kind == "diagonal":
        return base.diagonal(*key.dims)
    if key.kind == "strided":
        return base.as_strided(*key.dims)
    return base.permute(key.dims)


class _WholeView(namedtuple("_WholeView", ["kind", "dims"], defaults=[None])):
    """How an unrecorded view covers its base (Tensor._view_base): "reshape", "permute" with its
    dims, "diagonal" with (offset, dim1, dim2), or "strided" with (size, stride, storage offset)."""


_RESHAPED = _WholeView("reshape")


def _category(dtype) -> int:
    """PyTorch's type categories: 0 bool, 1 integer, 2 floating (bfloat16 too), 3 complex."""
    kind = dtype.kind
    return 0 if kind == "b" else 1 if kind in "iu" else 3 if kind == "c" else 2


def _subtractable(a, b) -> tuple:
    """``(a, b)``, or PyTorch's TypeError when either is a bool tensor or a Python bool (``-`` on masks
    is refused)."""
    if any((isinstance(x, Tensor) and x.dtype == bool_) or isinstance(x, (bool, np.bool_)) for x in (a, b)):
        raise TypeError(
            "subtraction with a bool tensor is not supported (as in PyTorch); to invert a mask use ~ or logical_not()"
        )
    return a, b


def _promote_types(x, y) -> np.dtype:
    """PyTorch's promote_types: NumPy's within a category; across categories the higher one's dtype
    (an integer with float32 stays float32, where NumPy gives float64), complex widened to hold a
    float64."""
    cx, cy = _category(x), _category(y)
    if cx == cy:
        return np.promote_types(x, y)
    high, low = (x, y) if cx > cy else (y, x)
    if high.kind == "c" and low == np.float64:
        return np.dtype(np.complex128)
    return np.dtype(high)


def _promoted(a, b, divide: bool = False):
    """Operands ``a`` and ``b`` (one a Tensor) of an arithmetic operator, the Tensors cast to the dtype
    PyTorch's promotion gives: numbers (Python or NumPy scalars) and 0-d tensors take the dimensioned
    tensors' dtype unless they are of a higher category (bool < integer < floating < complex), where a
    number gives float32 (complex64) and a 0-d tensor its own dtype; true division of integers gives
    float32. (NumPy would give float64 for x / np.sqrt(d), int_tensor * 0.5 or x * a 0-d float64.)"""
    if isinstance(a, Tensor):  # the common cases first: nothing to promote
        if isinstance(b, Tensor):
            if not divide and a._array.dtype == b._array.dtype:
                return a, b
        elif (type(b) is float or type(b) is int) and a._array.dtype.kind == "f":
            return a, b
    elif (type(a) is float or type(a) is int) and isinstance(b, Tensor) and b._array.dtype.kind == "f":
        return a, b
    a = a.item() if isinstance(a, np.generic) else a
    b = b.item() if isinstance(b, np.generic) else b
    result = _result_type((a, b), divide)
    cast = lambda x: x.to(result) if isinstance(x, Tensor) and x.dtype != result else x  # noqa: E731
    return cast(a), cast(b)


def _result_type(operands, divide: bool = False) -> np.dtype:
    """The dtype PyTorch's promotion gives ``operands`` (Tensors and Python numbers, at least one
    Tensor; see :func:`_promoted`)."""
    dimensioned = [x.dtype for x in operands if isinstance(x, Tensor) and x.ndim]
    zero_dim = [x.dtype for x in operands if isinstance(x, Tensor) and not x.ndim]
    result = functools.reduce(_promote_types, dimensioned) if dimensioned else None
    if zero_dim:
        own = functools.reduce(_promote_types, zero_dim)
        if result is None or _category(own) > _category(result):
            result = own
    for x in operands:
        if isinstance(x, numbers.Number):
            category = 0 if isinstance(x, bool) else 1 if isinstance(x, numbers.Integral) else 2
            category = 3 if isinstance(x, complex) else category
            if category > _category(result):
                double = result == np.float64 or (_category(result) < 2 and _DEFAULT_FLOAT[0] == float64)
                result = np.dtype(
                    (None, np.int64, _DEFAULT_FLOAT[0], np.complex128 if double else np.complex64)[category]
                )
    if divide and _category(result) < 2:
        result = _DEFAULT_FLOAT[0]
    return result


def _floating_or_complex(dtype) -> bool:
    """Whether ``dtype`` is floating (bfloat16 included) or complex: what can require grad."""
    return is_floating_dtype(dtype) or dtype.kind == "c"


def _leaf_in_place(what: str, which: str) -> RuntimeError:
    """PyTorch's refusal of an in-place change of a leaf that requires grad (or of its view)."""
    return RuntimeError(
        f"{what}: {which} that requires grad is being used in an in-place operation; "
        "do it under deepkern.no_grad() (as an optimizer step does)"
    )


def _kind_name(x) -> str:
    """How an error message describes an argument: a tensor's dtype and shape, else its type."""
    if isinstance(x, Tensor):
        return f"a {x.dtype} Tensor of shape {x.shape}"
    return type(x).__name__


def _broadcast_shape(a: tuple, b: tuple, what: str, name: str) -> tuple:
    try:
        return np.broadcast_shapes(a, b)
    except ValueError:
        raise RuntimeError(f"{what}: {name} of shape {a} does not broadcast with shape {b}") from None


def _clamp_bounds(t: "Tensor", low, high, what: str, in_place: bool) -> tuple:
    """(dtype, low, high): clamp's result dtype, PyTorch's promotion of ``t`` and the bounds (in place:
    ``t``'s own, which the promoted one must cast to, as PyTorch's check), and the bounds in it: None,
    a number of that dtype, or a Tensor on ``t``'s device (differentiable)."""
    if low is None and high is None:
        raise RuntimeError(f"{what}: at least one of min and max must be given")

    def operand(value):
        if value is None or isinstance(value, Tensor):
            return value
        if isinstance(value, (numbers.Number, np.generic)):
            return value.item() if isinstance(value, np.generic) else value
        return Tensor._wrap(_on_device_of(t, value, what))

    low, high = operand(low), operand(high)
    dtype = _result_type([t] + [b for b in (low, high) if b is not None])
    if in_place:
        if not np.can_cast(dtype, t.dtype, "same_kind"):
            raise RuntimeError(f"{what}: result type {dtype} can't be cast to the tensor's dtype {t.dtype}")
        dtype = t.dtype

    def cast(value):
        if value is None:
            return None
        if isinstance(value, Tensor):
            return value if value.dtype == dtype else value.to(dtype)
        return dtype.type(value)

    return dtype, cast(low), cast(high)


def _no_extra(kwargs: dict, what: str) -> None:
    if kwargs:
        raise TypeError(f"{what}: unexpected keyword argument(s) {sorted(kwargs)}")


def _index_key(key):
    """An indexing key with its Tensors replaced by their arrays."""
    return tuple(_array_of(k) for k in key) if isinstance(key, tuple) else _array_of(key)


class _HandedOut:
    """The base of a view handed out: NumPy keeps a non-array base in the ``base`` of every view made
    from that view, so the record lives as long as any of them (a view's own base otherwise skips to
    the buffer's owner, and dropping the first view ended the record while ``numpy().reshape(-1)``
    could still write the buffer)."""

    __slots__ = ("__array_interface__", "array")

    def __init__(self, arr: np.ndarray):
        self.__array_interface__ = arr.__array_interface__
        self.array = arr


def _handed_out(arr: np.ndarray) -> np.ndarray:
    """A new NumPy view of a tensor's array for the caller, recorded (``autograd.expose``) while it or
    any view of it lives."""
    handle = np.asarray(_HandedOut(arr))
    autograd.expose(arr, handle)
    return handle if handle.dtype == arr.dtype else handle.view(arr.dtype)  # bfloat16 travels as void


def _integers_first(key) -> tuple:
    """A key mixing integers with advanced indices (arrays, lists, masks) as two keys, ``(first,
    rest)``, to apply one after the other: PyTorch takes the integers first (selects), where NumPy
    broadcasts them with the arrays, which puts the result's dimensions in another order when a slice
    separates them (x[0, :, [1, 2]]: (3, 2) against NumPy's (2, 3)). ``(None, None)`` for other keys."""
    if not isinstance(key, tuple):
        return None, None
    integer = [
        isinstance(k, (int, np.integer))
        and not isinstance(k, (bool, np.bool_))
        or (getattr(k, "ndim", None) == 0 and getattr(k, "dtype", None) is not None and k.dtype.kind in "iu")
        for k in key
    ]
    advanced = [not (i or k is None or k is Ellipsis or isinstance(k, slice)) for i, k in zip(integer, key)]
    if not (any(integer) and any(advanced)):
        return None, None
    first, rest = [], []
    for k, i, adv in zip(key, integer, advanced):
        if i:
            first.append(int(k))
        elif k is Ellipsis:
            first.append(k)
            rest.append(k)
        elif k is None:
            rest.append(k)
        else:  # a slice or an advanced index, kept for the second key
            first.extend([slice(None)] * (_mask_dims(k) if adv else 1))
            rest.append(k)
    return tuple(first), tuple(rest)


def _mask_dims(index) -> int:
    """The dimensions an advanced index consumes: a boolean mask's own (none for a bool scalar), else 1."""
    if isinstance(index, bool):
        return 0
    dtype = np.asarray(index).dtype if isinstance(index, list) else getattr(index, "dtype", None)
    return np.ndim(index) if dtype == np.bool_ else 1


def _resolve_shape(old: tuple, new) -> tuple:
    """``new`` with a -1 filled in; a ValueError naming both shapes when the counts differ."""
    new = tuple(int(n) for n in new)
    total = math.prod(old)
    known = math.prod([n for n in new if n != -1])
    bad = new.count(-1) > 1 or any(n < -1 for n in new)
    if not bad and -1 in new:
        bad = known == 0 or total % known != 0
        new = tuple(total // known if n == -1 else n for n in new) if not bad else new
    if bad or math.prod(new) != total:
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
        return astype(a, dtype)

    @staticmethod
    def backward(ctx, g):
        return astype(g, ctx.dtype) if ctx.needs_input_grad[0] else None, None

    @staticmethod
    def backward_graph(ctx, io, g):
        return g.to(ctx.dtype) if ctx.needs_input_grad[0] else None, None


class _ToDevice(autograd.Function):
    """A copy on another device; the gradient is copied back."""

    @staticmethod
    def forward(ctx, a, device, non_blocking=False):
        ctx.source = backends.device_of(a)
        return backends.to_device(a, device, non_blocking=non_blocking)

    @staticmethod
    def backward(ctx, g):
        return backends.to_device(g, ctx.source), None

    @staticmethod
    def backward_graph(ctx, io, g):
        return _ToDevice.apply(g, ctx.source), None


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
        # The overwritten values have a zero gradient (PyTorch gives zeros, not None, upstream).
        grad_a = np.zeros_like(g) if ctx.needs_input_grad[0] else None
        return grad_a, (F.unbroadcast(g, ctx.shape) if ctx.needs_input_grad[1] else None)

    @staticmethod
    def backward_graph(ctx, io, g):
        grad_a = g.new_zeros(g.shape) if ctx.needs_input_grad[0] else None
        return grad_a, (F.unbroadcast_tensor(g, ctx.shape) if ctx.needs_input_grad[1] else None)


class _SetItem(autograd.Function):
    """``a`` with ``a[key] = value``: the gradient of the overwritten elements goes to ``value``."""

    @staticmethod
    def forward(ctx, a, value, key):
        ctx.meta = (key, np.shape(value))
        ctx.save_for_backward(*F.key_arrays(key))
        out = a.copy()
        out[key] = value
        return out

    @staticmethod
    def backward(ctx, g):
        ctx.saved_tensors  # noqa: B018 - raises if an index array was changed in place since
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

    @staticmethod
    def backward_graph(ctx, io, g):
        ctx.saved_tensors  # noqa: B018 - raises if an index array was changed in place since
        key, value_shape = ctx.meta
        grad_a = grad_value = None
        if ctx.needs_input_grad[0]:  # g with the overwritten elements zeroed: a _SetItem of 0
            grad_a = _SetItem.apply(g, g.dtype.type(0), key)
        if ctx.needs_input_grad[1]:
            selected = F.Index.apply(g, key)
            if len(value_shape) > selected.ndim:
                selected = selected.reshape((1,) * (len(value_shape) - selected.ndim) + tuple(selected.shape))
            grad_value = F.unbroadcast_tensor(selected, value_shape)
        return grad_a, grad_value, None


class _MaskedFill(autograd.Function):
    """``a`` with ``value`` (a number, or a 0-d array that gets the masked gradient) where ``mask``."""

    @staticmethod
    def forward(ctx, a, mask, value):
        ctx.save_for_backward(mask)
        return np.where(mask, value, a).astype(a.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        grad_a = np.where(mask, 0, g) if ctx.needs_input_grad[0] else None
        grad_value = as_array(np.where(mask, g, 0).sum()) if ctx.needs_input_grad[2] else None
        return grad_a, None, grad_value

    @staticmethod
    def backward_graph(ctx, io, g):
        (mask,) = ctx.saved_tensors  # the value gets g where mask (summed to its 0-d shape), a the rest
        grad_value, grad_a = F.split_where(mask, g, ((), g.shape), (ctx.needs_input_grad[2], ctx.needs_input_grad[0]))
        return grad_a, None, grad_value


class PassGradient(autograd.Function):
    """A Function whose gradient is the incoming gradient unchanged (its forward is the subclass's)."""

    @staticmethod
    def backward(ctx, g):
        return g

    @staticmethod
    def backward_graph(ctx, io, g):
        return g


class _Clone(PassGradient):
    @staticmethod
    def forward(ctx, a):
        return a.copy()


# ---------------------------------------------------------------------------------------------
# Creation
# ---------------------------------------------------------------------------------------------


def tensor(data, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """A new tensor holding a copy of ``data`` (array, Tensor, nested lists, numbers) on ``device``
    (default: the CPU, or the device of a Tensor given as ``data``)."""
    if isinstance(data, Tensor):
        arr = data._array.copy()
        device = data.device if device is None else device
    elif isinstance(data, (np.ndarray, np.generic)):
        arr = np.array(data, copy=True)
    else:  # Python data: PyTorch's default dtypes, or straight to ``dtype`` (no float32 rounding first)
        arr = _python_data(data)
        arr = arr if dtype is not None else _default_dtype(arr, data)
    if dtype is not None:
        arr = _cast_data(arr, np.dtype(dtype), "tensor")
    return _created(arr, device, requires_grad)


def _python_data(data) -> np.ndarray:
    """Python numbers (nested lists of them) as an array; a TypeError for other objects (None, strings)
    and an OverflowError for integers past int64, as PyTorch's."""
    arr = np.array(data)
    # NumPy holds ints past int64 as uint64, float64 (beside negative ones) or objects: look for them
    # only then (a float64 array of magnitudes up to 2**63 cannot hold one).
    if arr.dtype.kind in "uO" or (arr.dtype == np.float64 and arr.size and not (np.abs(arr) < 2.0**63).all()):
        past = _int_past_int64(data)
        if past is not None:
            raise OverflowError(f"tensor: {past} is past the int64 range")
    if arr.dtype.kind in "OUSV":
        raise TypeError(
            f"tensor: data must be numbers in int64 or float64 range (or nested sequences of them), got {data!r:.60}"
        )
    return arr


def _int_past_int64(data):
    """The first Python int of nested lists and tuples ``data`` outside int64's range, or None."""
    if isinstance(data, (list, tuple)):
        return next((v for v in map(_int_past_int64, data) if v is not None), None)
    if isinstance(data, int) and not isinstance(data, bool) and not -(2**63) <= data < 2**63:
        return data
    return None


def _cast_data(arr: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """``arr`` in ``dtype``; a ValueError for NaN or infinity into an integer dtype (no value to give)."""
    if dtype.kind in "iu" and arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{what}: cannot convert NaN or infinity to the integer dtype {dtype}")
    return arr.astype(dtype, copy=False)


def as_tensor(data, dtype=None) -> Tensor:
    """``data`` as a tensor, sharing memory when it already is an array of ``dtype``."""
    if isinstance(data, Tensor):
        return data.to(dtype) if dtype is not None else data
    if isinstance(data, (np.ndarray, np.generic)):
        arr = np.asarray(data)
        if arr is data and (dtype is None or arr.dtype == dtype):
            autograd.expose(arr)  # shared: the caller may write it later
    else:
        arr = as_array(data) if hasattr(data, "__array__") or hasattr(data, "__dlpack__") else _python_data(data)
        arr = arr if arr is data else _default_dtype(arr, data)  # Python data: PyTorch's default dtypes
    return Tensor(arr if dtype is None else arr.astype(dtype, copy=False))


def from_numpy(arr: np.ndarray) -> Tensor:
    """A tensor sharing ``arr``'s memory."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(arr).__name__}")
    autograd.expose(arr)  # the caller may write arr later
    return Tensor._wrap(arr)


def from_dlpack(obj) -> Tensor:
    """A tensor sharing the memory of any object with ``__dlpack__`` (NumPy, PyTorch, CuPy, ...): in host
    memory, or on a GPU where deepkern has its CUDA backend."""
    kind, _ = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else (backends.DLPACK_CPU, 0)
    if kind == backends.DLPACK_CPU:
        return Tensor(np.from_dlpack(obj))
    from . import cuda

    return Tensor(cuda.from_dlpack(obj))


def _dims_args(dims) -> tuple:
    """Dimensions given as ``f(0, 1)`` or ``f((0, 1))``, as a tuple."""
    return tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else tuple(dims)


def _shape_args(shape, size=None, what="size"):
    """The shape given as ``f(2, 3)``, ``f((2, 3))`` or ``f(size=(2, 3))``, as a tuple of ints."""
    if size is not None:
        if shape:
            raise TypeError(f"{what}: give the shape either positionally or as size=, not both")
        shape = (size,)
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)
    shape = tuple(n.__index__() if isinstance(n, Tensor) else n for n in shape)  # one-element integer tensors
    if any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0 for n in shape):
        raise ValueError(f"{what}: the shape must be non-negative ints, got {shape}")
    return tuple(int(n) for n in shape)


def _backend_for(device):
    """The backend of ``device`` (None: the CPU; 0 is a GPU index, as in PyTorch, never the CPU)."""
    return backends.get("cpu" if device is None else device)


def _created(array, device, requires_grad: bool = False) -> Tensor:
    """A tensor of ``array`` (host data, or allocated by the backend of ``device``) on ``device``
    (a Device, a string or None: the CPU), copied there when it is elsewhere."""
    created = Tensor._wrap(backends.to_device(array, CPU_DEVICE if device is None else device))
    created.requires_grad = requires_grad
    return created


def zeros(*shape, size=None, dtype=None, requires_grad=False, device=None) -> Tensor:
    shape = _shape_args(shape, size, "zeros")
    return _created(_backend_for(device).zeros(shape, dtype or _DEFAULT_FLOAT[0]), device, requires_grad)


def ones(*shape, size=None, dtype=None, requires_grad=False, device=None) -> Tensor:
    shape = _shape_args(shape, size, "ones")
    return _created(_backend_for(device).full(shape, 1, dtype or _DEFAULT_FLOAT[0]), device, requires_grad)


def empty(*shape, size=None, dtype=None, requires_grad=False, device=None) -> Tensor:
    shape = _shape_args(shape, size, "empty")
    return _created(_backend_for(device).empty(shape, dtype or _DEFAULT_FLOAT[0]), device, requires_grad)


def _fill_dtype(fill_value):
    """PyTorch's dtype for a tensor filled with ``fill_value``: bool, int64 or float32."""
    if isinstance(fill_value, (bool, np.bool_)):
        return bool_
    return int64 if isinstance(fill_value, numbers.Integral) else _DEFAULT_FLOAT[0]


def full(size, fill_value, dtype=None, requires_grad=False, device=None) -> Tensor:
    """``size`` filled with ``fill_value`` (a number, or a one-element Tensor); its dtype by default from
    the value (bool, int64, float32)."""
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    if not isinstance(fill_value, (numbers.Number, np.generic)):
        raise TypeError(f"full: fill_value must be a number, got {type(fill_value).__name__}")
    dtype = _fill_dtype(fill_value) if dtype is None else np.dtype(dtype)
    if dtype.kind in "iu" and isinstance(fill_value, numbers.Real) and not math.isfinite(fill_value):
        raise ValueError(f"full: cannot fill the integer dtype {dtype} with {fill_value}")
    shape = _shape_args((size,), None, "full")
    return _created(_backend_for(device).full(shape, fill_value, dtype), device, requires_grad)


def _like(t, dtype, device):
    """(shape, dtype, device) of a ``*_like`` factory: ``t``'s unless given."""
    if not isinstance(t, Tensor):
        raise TypeError(f"expected a Tensor as input, got {_kind_name(t)}")
    return t.shape, dtype or t.dtype, t.device if device is None else device


def zeros_like(t, dtype=None, requires_grad=False, device=None) -> Tensor:
    """Zeros of ``t``'s shape, and of its dtype and device unless given."""
    shape, dtype, device = _like(t, dtype, device)
    return zeros(shape, dtype=dtype, requires_grad=requires_grad, device=device)


def ones_like(t, dtype=None, requires_grad=False, device=None) -> Tensor:
    """Ones of ``t``'s shape, and of its dtype and device unless given."""
    shape, dtype, device = _like(t, dtype, device)
    return ones(shape, dtype=dtype, requires_grad=requires_grad, device=device)


def empty_like(t, dtype=None, requires_grad=False, device=None) -> Tensor:
    """An uninitialised tensor of ``t``'s shape, and of its dtype and device unless given."""
    shape, dtype, device = _like(t, dtype, device)
    return empty(shape, dtype=dtype, requires_grad=requires_grad, device=device)


def full_like(t, fill_value, dtype=None, requires_grad=False, device=None) -> Tensor:
    """``fill_value`` in ``t``'s shape, and of its dtype and device unless given."""
    shape, dtype, device = _like(t, dtype, device)
    return full(shape, fill_value, dtype=dtype, requires_grad=requires_grad, device=device)


def randn_like(t, dtype=None, requires_grad=False, device=None, generator=None) -> Tensor:
    """Standard normal values in ``t``'s shape, and of its (floating-point) dtype and device unless given."""
    shape, dtype, device = _like(t, dtype, device)
    _check_float("randn_like", dtype)
    return randn(shape, dtype=dtype, requires_grad=requires_grad, device=device, generator=generator)


def rand_like(t, dtype=None, requires_grad=False, device=None, generator=None) -> Tensor:
    """Uniform values in [0, 1) in ``t``'s shape, and of its (floating-point) dtype and device unless given."""
    shape, dtype, device = _like(t, dtype, device)
    _check_float("rand_like", dtype)
    return rand(shape, dtype=dtype, requires_grad=requires_grad, device=device, generator=generator)


def _check_float(what: str, dtype) -> None:
    if not is_floating_dtype(np.dtype(dtype)):
        raise RuntimeError(f"{what}: needs a floating-point dtype, got {np.dtype(dtype)}")


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False) -> Tensor:
    """``start, start + step, ...`` up to ``end`` (excluded); ``arange(end)`` starts at 0. Int64 when
    every argument is an int, else float32, unless ``dtype`` is given (an integer one truncates the
    arguments first, as PyTorch)."""
    if end is None:
        start, end = 0, start
    if dtype is not None and np.dtype(dtype).kind in "iu":  # PyTorch casts the arguments to an integer dtype first
        start, end, step = (int(v) for v in (start, end, step))
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError(f"arange: the bounds start={start}, end={end} are inconsistent with the sign of step={step}")
    arr = np.arange(start, end, step)
    return _created(_default_dtype(arr) if dtype is None else arr.astype(dtype), device, requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` (both included); float32 by default."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise RuntimeError(f"linspace: steps must be a non-negative int, got {steps!r}")
    arr = np.linspace(start, end, int(steps))
    return _created(arr.astype(_DEFAULT_FLOAT[0] if dtype is None else dtype), device, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """An ``n`` x ``m`` (default: square) matrix with ones on the diagonal."""
    for name, value in (("n", n), ("m", n if m is None else m)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise RuntimeError(f"eye: {name} must be a non-negative int, got {value!r}")
    return _created(np.eye(n, m, dtype=dtype or _DEFAULT_FLOAT[0]), device, requires_grad)


def randn(*shape, size=None, dtype=None, requires_grad=False, generator=None, device=None) -> Tensor:
    """Standard normal values from ``generator`` (default: the one ``manual_seed`` seeds), drawn in
    host memory and copied to ``device``."""
    rng = generator or get_generator()
    values = rng.standard_normal(_shape_args(shape, size, "randn"), dtype=np.float64)
    return _created(values.astype(_floating("randn", dtype)), device, requires_grad)


def rand(*shape, size=None, dtype=None, requires_grad=False, generator=None, device=None) -> Tensor:
    """Uniform values in [0, 1), drawn as :func:`randn`'s."""
    rng = generator or get_generator()
    return _created(
        rng.random(_shape_args(shape, size, "rand")).astype(_floating("rand", dtype)), device, requires_grad
    )


def _floating(what: str, dtype) -> np.dtype:
    """The floating dtype of a random fill (the default float dtype for None), checked by :func:`_check_float`."""
    dtype = np.dtype(dtype or _DEFAULT_FLOAT[0])
    _check_float(what, dtype)
    return dtype


def randperm(n, generator=None, dtype=int64, device=None, requires_grad=False) -> Tensor:
    """A random permutation of ``0 .. n-1``."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 0 <= n < 2**62:
        raise RuntimeError(f"randperm: n must be a non-negative int below 2**62, got {n!r}")
    rng = generator or get_generator()
    return _created(rng.permutation(int(n)).astype(dtype or int64), device, requires_grad)


def randint(low, high=None, size=None, dtype=int64, generator=None, device=None) -> Tensor:
    """Integers drawn uniformly from [low, high) (``randint(high, size)``: from [0, high))."""
    if size is None:
        low, high, size = 0, low, high
    if size is None:
        raise TypeError("randint: missing the size argument")
    rng = generator or get_generator()
    return _created(rng.integers(low, high, size=size).astype(dtype), device)


def cat(tensors, dim=0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    # As PyTorch, empty 1-D tensors (the legacy ``tensor([])`` start of a running cat) join anything;
    # their dtypes still take part in the promotion.
    everything = tensors
    joined = [t for t in tensors if np.shape(_array_of(t)) != (0,)] or tensors[:1]
    tensors = joined if len(joined) < len(tensors) else tensors
    ndim = np.ndim(_array_of(tensors[0]))
    if ndim == 0:
        raise ValueError("cat: 0-d tensors cannot be concatenated (stack them)")
    axis = _wrap_dim(dim, ndim, "cat")
    _check_join("cat", tensors, lambda s: s[:axis] + s[axis + 1 :])
    return F.Cat.apply(*_in_common_dtype(tensors, everything), dim=axis)


def stack(tensors, dim=0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    axis = _wrap_dim(dim, np.ndim(_array_of(tensors[0])) + 1, "stack")
    _check_join("stack", tensors, lambda s: s)
    return F.Stack.apply(*_in_common_dtype(tensors), dim=axis)


def _in_common_dtype(tensors, promoted=None) -> list:
    """``tensors`` (Tensors, or arrays) cast to the dtype PyTorch's promotion gives them together (an
    integer tensor joined to a float32 one gives float32, where NumPy gives float64), or gives
    ``promoted`` (default: ``tensors``) together."""
    common = functools.reduce(_promote_types, (_array_of(t).dtype for t in (tensors if promoted is None else promoted)))
    return [
        t if _array_of(t).dtype == common else t.to(common) if isinstance(t, Tensor) else t.astype(common)
        for t in tensors
    ]


def _wrap_dim(dim, ndim: int, what: str) -> int:
    """``dim`` as an axis in [0, ndim) (ndim 0 takes -1 and 0, as PyTorch); TypeError for a non-int,
    IndexError naming ``what`` out of range."""
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"{what}: dim must be an int, got {_kind_name(dim)}")
    size = max(ndim, 1)
    if not -size <= dim < size:
        raise IndexError(f"{what}: dim {dim} is out of range [{-size}, {size - 1}] ({ndim} dimensions)")
    return int(dim) % size


def _check_join(op, tensors, key):
    shapes = [np.shape(_array_of(t)) for t in tensors]
    if len({len(s) for s in shapes}) != 1 or len({key(s) for s in shapes}) != 1:
        raise ValueError(f"{op}: tensors must match in every dimension but the joined one, got shapes {shapes}")


def where(condition, input=None, other=None):
    """``input`` where ``condition`` holds, else ``other`` (broadcast together; numbers allowed);
    ``where(condition)`` alone is ``condition.nonzero(as_tuple=True)``, as in PyTorch."""
    if input is None and other is None:
        if not isinstance(condition, Tensor):
            raise TypeError(f"where(condition): condition must be a Tensor, got {_kind_name(condition)}")
        return condition.nonzero(as_tuple=True)
    if input is None or other is None:
        raise TypeError("where: give both input and other, or neither (where(condition) is nonzero(as_tuple=True))")
    if not isinstance(input, Tensor) and not isinstance(other, Tensor) and isinstance(input, numbers.Number):
        input = tensor(input)  # two numbers: PyTorch's default dtypes (float32, int64)
    if isinstance(input, Tensor) or isinstance(other, Tensor):
        input, other = _promoted(input, other)  # PyTorch's promotion, as the arithmetic operators'
    mask = as_array(_array_of(condition))
    if mask.dtype != bool_:
        raise TypeError(f"where: condition must be a bool tensor, got dtype {mask.dtype}")
    return F.Where.apply(mask, input, other)
