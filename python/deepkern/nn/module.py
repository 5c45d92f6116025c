"""``Module`` (parameters, buffers, children, state dicts, train/eval, forward hooks), ``Parameter``,
``Buffer``, the lazy modules' placeholders ``UninitializedParameter`` and ``UninitializedBuffer``,
the containers ``Sequential``, ``ModuleList``, ``ModuleDict`` and ``ParameterList``, and ``Identity``,
with PyTorch's names and semantics."""

from __future__ import annotations

import numbers
from collections import OrderedDict, namedtuple
from collections.abc import Iterable, Mapping

import numpy as np

from .. import autograd
from ..autograd import add_hook, is_grad_enabled
from ..backends import Device, as_array, to_device
from ..io import check_state_dict
from ..ops._validate import bfloat16_dtype, is_floating_dtype
from ..tensor import Tensor, empty
from ._inference import CACHES as INFERENCE_CACHES
from ._inference import STATE as INFERENCE_STATE
from ._inference import fusion_groups, run_sequence

__all__ = [
    "Parameter",
    "Buffer",
    "UninitializedParameter",
    "UninitializedBuffer",
    "Module",
    "Sequential",
    "ModuleList",
    "ModuleDict",
    "ParameterList",
    "Identity",
]


#: What load_state_dict returns: the model's names the state dict lacked, and its names the model lacks.
IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _moved(t: Tensor, args, kwargs) -> Tensor:
    """``t`` after Module.to(*args, **kwargs): a floating tensor moved and cast; any other (integer,
    bool, complex: counters, masks) only moved, as PyTorch's."""
    if is_floating_dtype(t.dtype):
        return t.to(*args, **kwargs)
    device = kwargs.get("device", next((a for a in args if isinstance(a, (str, Device))), None))
    return t if device is None else t.to(device)


class Parameter(Tensor):
    """A Tensor that a Module registers as a learnable parameter (requires grad by default). It takes
    attributes of the user's (``p.no_weight_decay = True``), as PyTorch's."""

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data if isinstance(data, Tensor) else as_array(data), requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Buffer(Tensor):
    """A Tensor that a Module registers as a buffer when assigned as an attribute (``self.x =
    nn.Buffer(t)``), ``persistent`` (saved in the state dict) or not, as PyTorch's; it shares ``data``'s
    memory and keeps its ``requires_grad``."""

    def __init__(self, data=None, *, persistent: bool = True):
        data = empty(0) if data is None else data
        if not isinstance(data, Tensor):
            raise TypeError(f"Buffer: data must be a Tensor, got {type(data).__name__}")
        super().__init__(data, requires_grad=data.requires_grad)
        self.persistent = persistent


class UninitializedTensorMixin:
    """A parameter or buffer of a lazy module before its shape is known: it holds no values (its
    ``shape`` is an error), follows the module's ``to()`` (dtype, device), and ``materialize(shape)``
    makes it the regular kind (``cls_to_become``) in place, as PyTorch's."""

    cls_to_become: type  # the class it becomes

    def materialize(self, shape, device=None, dtype=None) -> None:
        """Empty values of ``shape`` on ``device`` with ``dtype`` (by default the placeholder's), then
        the class becomes ``cls_to_become``."""
        self.data = empty(tuple(shape), dtype=dtype or self.dtype, device=device or self.device)
        self.__class__ = self.cls_to_become

    @property
    def shape(self):
        raise RuntimeError(
            "Can't access the shape of an uninitialized parameter or buffer. This error usually happens in "
            "`load_state_dict` when trying to load an uninitialized parameter into an initialized one. Call "
            "`forward` to initialize the parameters before accessing their attributes."
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def to(self, *args, **kwargs):
        """A placeholder with the dtype and device ``Tensor.to`` gives (itself when they are its own)."""
        moved = self.detach().to(*args, **kwargs)
        return self if moved._array is self._array else self._remade(moved.device, moved.dtype)

    def _remade(self, device, dtype):
        """A placeholder of this class on ``device`` with ``dtype`` and this one's attributes (``persistent``)."""
        made = type(self)(self.requires_grad, device, dtype)
        made.__dict__.update(self.__dict__)
        return made

    def __deepcopy__(self, memo):
        memo[id(self)] = copied = self._remade(self.device, self.dtype)
        return copied

    def __reduce_ex__(self, protocol):
        return type(self), (self.requires_grad, self.device, self.dtype), dict(self.__dict__)


class UninitializedParameter(UninitializedTensorMixin, Parameter):
    """A lazy module's parameter before its first forward (see UninitializedTensorMixin)."""

    cls_to_become = Parameter

    def __init__(self, requires_grad: bool = True, device=None, dtype=None):
        super().__init__(empty(0, dtype=dtype, device=device), requires_grad)


class UninitializedBuffer(UninitializedTensorMixin, Buffer):
    """A lazy module's buffer before its first forward (see UninitializedTensorMixin); it becomes a
    Buffer."""

    cls_to_become = Buffer

    def __init__(self, requires_grad: bool = False, device=None, dtype=None, persistent: bool = True):
        super().__init__(empty(0, dtype=dtype, device=device, requires_grad=requires_grad), persistent=persistent)


def is_lazy(value) -> bool:
    """Whether ``value`` is an UninitializedParameter or UninitializedBuffer."""
    return isinstance(value, UninitializedTensorMixin)


def _loadable(key, value):
    """A state dict's entry as an array: a Tensor's, an array as it is, a foreign tensor (PyTorch's,
    also one that requires grad) detached and converted; anything else is a TypeError naming ``key``."""
    if isinstance(value, Tensor):
        return value._array
    if hasattr(value, "detach") and callable(value.detach):
        value = value.detach()
    if isinstance(value, (list, tuple, str)) or not (hasattr(value, "__array__") or hasattr(value, "__dlpack__")):
        raise TypeError(f"load_state_dict: {key!r} must be an array or tensor, got {type(value).__name__}")
    return as_array(value)


class Module:
    """Base class of layers and models: assign Parameters, buffers (``register_buffer``) and
    Modules as attributes; override ``forward``; call the module to run it."""

    #: The layer's inference path on arrays, ``_infer_step(x, bn, relu)`` (nn/_inference.py); None:
    #: the module has none and runs the ordinary way.
    _infer_step = None
    #: Buffers a loaded state dict may lack (checkpoints written before they existed): load_state_dict
    #: keeps their current values instead of reporting them missing, as PyTorch does.
    _optional_state: tuple = ()

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_backward_hooks", OrderedDict())
        object.__setattr__(self, "_backward_pre_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration --------------------------------------------------------------------------

    def __setattr__(self, name, value):
        d = self.__dict__
        if "_parameters" not in d:  # plain attributes may come first, as in PyTorch; registered ones may not
            if isinstance(value, (Parameter, Module)):
                raise AttributeError(
                    f"{type(self).__name__}: cannot assign {type(value).__name__} {name!r} before "
                    "super().__init__() is called"
                )
            object.__setattr__(self, name, value)
            return
        autograd.note_module_change()
        params, buffers, modules = d["_parameters"], d["_buffers"], d["_modules"]
        if isinstance(value, (Parameter, Module)):
            # A replaced parameter or module keeps its place (state_dict order), as in PyTorch.
            target = params if isinstance(value, Parameter) else modules
            for store in (params, buffers, modules, d):
                if store is not target:
                    store.pop(name, None)
            target[name] = value
        elif isinstance(value, Buffer):
            self.register_buffer(name, value, value.persistent)
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"cannot assign {type(value).__name__} as buffer {name!r} (a Tensor or None is expected)"
                )
            buffers[name] = value
        elif name in params or name in modules:
            if value is not None:
                kind = "Parameter" if name in params else "Module"
                raise TypeError(f"cannot assign {type(value).__name__} to {name!r} (a {kind} or None is expected)")
            (params if name in params else modules)[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        autograd.note_module_change()
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def _check_new_name(self, what: str, name, store: str) -> None:
        """PyTorch's rules for a name being registered in ``store``: after ``Module.__init__``, a
        non-empty string without '.', and no other attribute of that name (a method, ``training``, a
        plain attribute, an entry of another store)."""
        if store not in self.__dict__:
            raise AttributeError(f"{what}: call super().__init__() before registering {name!r}")
        if not isinstance(name, str):
            raise TypeError(f"{what}: the name must be a string, got {type(name).__name__}")
        if not name or "." in name:
            raise KeyError(f"{what}: the name can't be empty or contain '.', got {name!r}")
        if hasattr(self, name) and name not in self.__dict__[store]:
            raise KeyError(f"{what}: attribute {name!r} already exists")

    def register_parameter(self, name: str, param) -> None:
        self._check_new_name("register_parameter", name, "_parameters")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, got {type(param).__name__}")
        autograd.note_module_change()
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """A state tensor that is not a parameter (e.g. BatchNorm's running mean); saved in the
        state dict when ``persistent``."""
        self._check_new_name("register_buffer", name, "_buffers")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None, got {type(tensor).__name__}")
        autograd.note_module_change()
        self._buffers[name] = tensor
        (self._non_persistent.discard if persistent else self._non_persistent.add)(name)

    def add_module(self, name: str, module) -> None:
        self._check_new_name("add_module", name, "_modules")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module or None, got {type(module).__name__}")
        autograd.note_module_change()
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target: str) -> "Module":
        """The submodule at the dotted path ``target`` ("" is this module); AttributeError naming the
        part of the path that is missing or is not a Module."""
        module = self
        for part in target.split(".") if target else []:
            child = module._modules.get(part) if isinstance(module, Module) else None
            if child is None:
                what = "is not an nn.Module" if hasattr(module, part) else "has no attribute"
                raise AttributeError(f"get_submodule({target!r}): {type(module).__name__} {what} `{part}`")
            module = child
        return module

    def get_parameter(self, target: str):
        """The parameter at the dotted path ``target`` ("block.0.weight"); AttributeError naming the
        part that is missing or is not a parameter."""
        return self._entry_at(target, "_parameters", "get_parameter", "nn.Parameter")

    def get_buffer(self, target: str):
        """The buffer at the dotted path ``target`` ("bn.running_mean"); AttributeError as
        ``get_parameter``."""
        return self._entry_at(target, "_buffers", "get_buffer", "buffer")

    def _entry_at(self, target: str, store: str, method: str, kind: str):
        path, _, name = target.rpartition(".")
        module = self.get_submodule(path)
        entries = getattr(module, store)
        entry = entries.get(name)
        if entry is None and name not in entries:
            what = f"is not a {kind}" if hasattr(module, name) else "has no attribute"
            raise AttributeError(f"{method}({target!r}): {type(module).__name__} {what} `{name}`")
        return entry

    def register_forward_pre_hook(self, hook):
        """Calls ``hook(module, args)`` before each forward; a value it returns (a tuple, or one
        value) replaces the positional arguments. Returns a handle whose ``remove()`` unregisters it."""
        return add_hook(self._forward_pre_hooks, hook)

    def register_forward_hook(self, hook):
        """Calls ``hook(module, args, output)`` after each forward; a value it returns replaces the
        output. Returns a handle whose ``remove()`` unregisters it."""
        return add_hook(self._forward_hooks, hook)

    def register_full_backward_hook(self, hook):
        """Calls ``hook(module, grad_input, grad_output)`` when the gradients of the module's positional
        tensor inputs have been computed (``grad_input``: one per positional argument, None where it is
        not a tensor that requires grad); a tuple it returns replaces ``grad_input``. Returns a handle."""
        return add_hook(self._backward_hooks, hook)

    def register_full_backward_pre_hook(self, hook):
        """Calls ``hook(module, grad_output)`` when the gradients of the module's outputs have been
        computed, before the module's own backward; a tuple it returns replaces ``grad_output``."""
        return add_hook(self._backward_pre_hooks, hook)

    # -- traversal -----------------------------------------------------------------------------

    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        """(dotted name, module) of this module and every submodule, depth first; a module reached
        twice (shared by two parents) is given once unless ``remove_duplicate`` is False, as PyTorch."""
        if remove_duplicate:
            memo = set() if memo is None else memo  # the modules themselves, as PyTorch's memo
            if self in memo:
                return
            memo.add(self)
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_children(self):
        """(name, module) of each direct submodule, a module held under two names given once."""
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        return (m for _, m in self.named_children())

    def _named_members(self, store: str, prefix: str, recurse: bool, remove_duplicate: bool = True):
        seen = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for mod_prefix, module in modules:
            for name, value in getattr(module, store).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        """(dotted name, parameter); a parameter held twice (tied weights) given once unless
        ``remove_duplicate`` is False, as PyTorch."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True):
        return (b for _, b in self.named_buffers(recurse=recurse))

    # -- modes and gradients -------------------------------------------------------------------

    def train(self, mode: bool = True) -> "Module":
        """Sets training mode (``mode``) or evaluation mode on this module, then calls each child's
        ``train(mode)`` (so a submodule's own ``train`` runs, as in PyTorch); going back to training
        drops the inference caches."""
        if not isinstance(mode, bool):
            raise ValueError(f"train: mode must be a bool, got {mode!r}")
        if self.training is not mode:
            autograd.note_module_change()
            object.__setattr__(self, "training", mode)
        if mode:
            self._drop_inference_caches()
        for child in self.children():
            child.train(mode)
        return self

    def __getstate__(self) -> dict:
        """The module's attributes for pickle and deepcopy, less its inference caches and fusions
        (nn/_inference.py; remade on use): kernel steps, packed weights and references to other
        modules' outputs are no state."""
        state = self.__dict__.copy()
        for name in INFERENCE_STATE:
            state.pop(name, None)
        return state

    def _drop_inference_caches(self) -> None:
        """Forgets this module's kernel plan and folded weights (nn/_inference.py), and the arrays
        they hold."""
        for name in INFERENCE_CACHES:
            self.__dict__.pop(name, None)

    def eval(self) -> "Module":
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad._array[...] = 0

    def apply(self, fn) -> "Module":
        """Calls ``fn`` on every submodule (children first) and on self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def to(self, *args, **kwargs) -> "Module":
        """Moves/casts every parameter (and its gradient) and every floating buffer in place
        (``to(device)``, ``to(dtype)``: a floating-point dtype, as PyTorch's)."""
        for dtype in [a for a in args if not isinstance(a, (str, Device))] + [kwargs.get("dtype")]:
            if dtype is not None and not is_floating_dtype(np.dtype(dtype)):
                raise TypeError(f"Module.to: only floating-point dtypes are accepted, got {np.dtype(dtype)}")
        autograd.note_module_change()
        with autograd.no_grad():
            for m in self.modules():
                m._drop_inference_caches()  # they would keep the arrays before the move
                for p in m._parameters.values():
                    if p is not None:
                        p._array = _moved(p, args, kwargs)._array
                        if p.grad is not None:  # the gradient follows (an optimizer step reads both)
                            p.grad._array = _moved(p.grad, args, kwargs)._array
                for name, b in m._buffers.items():
                    if b is not None:
                        m._buffers[name] = _moved(b, args, kwargs)
        return self

    def cpu(self) -> "Module":
        """The module's parameters and buffers moved to the CPU (in place), as ``to("cpu")``."""
        return self.to("cpu")

    def cuda(self, device=None) -> "Module":
        """The module's parameters and buffers moved to the GPU (``device``: its index, or a device),
        as ``to("cuda")``; without a usable GPU a RuntimeError saying so."""
        target = "cuda" if device is None else f"cuda:{device}" if isinstance(device, numbers.Integral) else device
        return self.to(target)

    def half(self) -> "Module":
        return self.to(np.float16)

    def share_memory(self) -> "Module":
        """Returns the module (its arrays live in this process; there is nothing to move to shared memory)."""
        return self

    def float(self) -> "Module":
        return self.to(np.float32)

    def double(self) -> "Module":
        return self.to(np.float64)

    def bfloat16(self) -> "Module":
        """Casts the parameters and floating-point buffers to bfloat16 (deepkern.bfloat16)."""
        return self.to(bfloat16_dtype())

    # -- state dicts ---------------------------------------------------------------------------

    def state_dict(self, *, destination=None, prefix: str = "", keep_vars: bool = False) -> "OrderedDict[str, Tensor]":
        """Parameters and persistent buffers by dotted name, as detached tensors sharing memory (the
        Parameters themselves with ``keep_vars``), added to ``destination`` when given, as PyTorch's."""
        out = OrderedDict() if destination is None else destination
        for path, module in self.named_modules(remove_duplicate=False):
            dot = prefix + (f"{path}." if path else "")  # the prefix as given, as PyTorch's ("enc_weight")
            for name, p in module._parameters.items():
                if p is not None:
                    out[dot + name] = p if keep_vars or is_lazy(p) else p.detach()
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent:
                    out[dot + name] = b if keep_vars or is_lazy(b) else b.detach()
        return out

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copies arrays (NumPy arrays, Tensors on any device, or a PyTorch model's tensors, which are
        detached first; bfloat16 ones converted by the caller, e.g. through ``.float()``) into the
        parameters and buffers, on their devices. Every name and shape is checked (io.check_state_dict;
        values are cast to each entry's dtype, as PyTorch's copy_ casts them) before anything is written;
        with ``strict=False`` missing and unexpected keys are allowed. An uninitialized parameter or buffer
        (a lazy module's) is materialized with the shape of its entry, as PyTorch's lazy modules do.
        Returns ``(missing_keys, unexpected_keys)``, a named tuple as PyTorch's."""
        if not hasattr(state_dict, "items") or not hasattr(state_dict, "keys"):
            raise TypeError(f"load_state_dict: expected a dict-like state_dict, got {type(state_dict).__name__}")
        own = self.state_dict()
        # an uninitialized entry (a lazy module's) given uninitialized has nothing to load, as in PyTorch
        unknown = {k for k, t in own.items() if is_lazy(t) and is_lazy(state_dict.get(k))}
        own = OrderedDict((k, t) for k, t in own.items() if k not in unknown)
        given = {k: _loadable(k, v) for k, v in state_dict.items() if k not in unknown}
        for mod_prefix, module in self.named_modules(remove_duplicate=False):
            for name in module._optional_state:
                key = f"{mod_prefix}.{name}" if mod_prefix else name
                if key in own and key not in given:
                    given[key] = own[key]._array
        check_state_dict(  # an uninitialized entry takes the given shape
            {k: (given[k].shape if is_lazy(t) and k in given else t._array.shape, t.dtype) for k, t in own.items()},
            given,
            strict=strict,
            where=f"load_state_dict for {type(self).__name__}",
            casting="unsafe",
        )
        for k, target in own.items():
            if k in given:
                if is_lazy(target):
                    target.materialize(given[k].shape)
                target._array[...] = to_device(given[k], target.device)
                autograd.bump_version(target._array)
        return IncompatibleKeys([k for k in own if k not in given], [k for k in given if k not in own])

    # -- calling -------------------------------------------------------------------------------

    def forward(self, *args, **kwargs):  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        """``forward(*args, **kwargs)`` between the forward pre-hooks and hooks (none registered:
        forward alone, with no other work per call); with backward hooks, the tensor inputs and
        outputs pass through identities whose backward calls them (_BackwardHooks)."""
        if not (self._forward_pre_hooks or self._forward_hooks or self._backward_hooks or self._backward_pre_hooks):
            return self.forward(*args, **kwargs)
        for hook in list(self._forward_pre_hooks.values()):
            replaced = hook(self, args)
            if replaced is not None:
                args = replaced if isinstance(replaced, tuple) else (replaced,)
        backward = None
        if (self._backward_hooks or self._backward_pre_hooks) and autograd.is_grad_enabled():
            backward = _BackwardHooks(self)
            args = backward.wrap_inputs(args)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            replaced = hook(self, args, output)
            if replaced is not None:
                output = replaced
        return output if backward is None else backward.wrap_outputs(output)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        """PyTorch's layout: ``Name(extra)`` alone, else the extra_repr's lines and one line per child
        (a child held under two names shown twice, a None child as None), indented."""
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + repr(child).replace("\n", "\n  ") for name, child in self._modules.items()]
        lines = extra_lines + child_lines
        body = ""
        if len(extra_lines) == 1 and not child_lines:
            body = extra_lines[0]
        elif lines:
            body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{type(self).__name__}({body})"


class _Identity(autograd.Function):
    """Its arguments unchanged; its backward hands the gradients to ``on_backward`` (which may replace
    them): where _BackwardHooks sees a module's output and input gradients."""

    @staticmethod
    def forward(ctx, *arrays, on_backward):
        ctx.on_backward = on_backward
        return arrays[0] if len(arrays) == 1 else tuple(arrays)

    @staticmethod
    def backward(ctx, *grads):
        replaced = ctx.on_backward(grads)
        return tuple(grads if replaced is None else replaced)

    @staticmethod
    def backward_graph(ctx, io, *grads):  # (the gradients are Tensors of the graph: the hooks see them)
        return _Identity.backward(ctx, *grads)


class _BackwardHooks:
    """One call's backward hooks (PyTorch's BackwardHook): the module's tensor inputs and outputs pass
    through identities; the outputs' backward runs the backward pre-hooks on the output gradients and
    keeps them, the inputs' backward runs the backward hooks with both (with no input that requires
    grad, the outputs' backward runs them, grad_input all None)."""

    def __init__(self, module):
        self.module = module
        self.grad_outputs = None
        self.positions = []  # the positional arguments that are tensors requiring grad
        self.count = 0

    def wrap_inputs(self, args):
        from ..tensor import Tensor

        self.count = len(args)
        self.positions = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
        if not self.positions:
            return args
        wrapped = _Identity.apply(*(args[i] for i in self.positions), on_backward=self._inputs_backward)
        wrapped = wrapped if isinstance(wrapped, tuple) else (wrapped,)
        args = list(args)
        for i, t in zip(self.positions, wrapped):
            args[i] = t
        return tuple(args)

    def wrap_outputs(self, output):
        from ..tensor import Tensor

        single = isinstance(output, Tensor)
        outputs = (output,) if single else tuple(output) if isinstance(output, (tuple, list)) else ()
        chosen = [i for i, o in enumerate(outputs) if isinstance(o, Tensor) and o.requires_grad]
        if not chosen:
            return output
        wrapped = _Identity.apply(*(outputs[i] for i in chosen), on_backward=self._outputs_backward)
        wrapped = wrapped if isinstance(wrapped, tuple) else (wrapped,)
        outputs = list(outputs)
        for i, t in zip(chosen, wrapped):
            outputs[i] = t
        return outputs[0] if single else type(output)(outputs)

    # The gradients come as arrays, or as Tensors of the graph in a create_graph pass (and go back so).

    def _outputs_backward(self, grads):
        graph = _graph_pass(grads)
        grads = tuple(g if graph else _tensor(g) for g in grads)
        for hook in list(self.module._backward_pre_hooks.values()):
            replaced = hook(self.module, grads)
            if replaced is not None:
                grads = tuple(replaced)
        self.grad_outputs = grads
        if not self.positions:  # no input gradient will come: the hooks run now
            self._run_hooks((None,) * self.count)
        return tuple(g if graph else g._array for g in grads)

    def _inputs_backward(self, grads):
        graph = _graph_pass(grads)
        grad_input = [None] * self.count
        for i, g in zip(self.positions, grads):
            grad_input[i] = g if graph else _tensor(g)
        replaced = self._run_hooks(tuple(grad_input))
        return None if replaced is None else tuple(replaced[i] if graph else replaced[i]._array for i in self.positions)

    def _run_hooks(self, grad_input):
        changed = None
        for hook in list(self.module._backward_hooks.values()):
            replaced = hook(self.module, grad_input, self.grad_outputs)
            if replaced is not None:
                grad_input = changed = tuple(replaced)
        return changed


def _graph_pass(grads) -> bool:
    """Whether ``grads`` are the Tensors of a create_graph pass (else arrays)."""
    from ..tensor import Tensor

    return any(isinstance(g, Tensor) for g in grads)


def _tensor(array):
    from ..tensor import Tensor

    return Tensor._wrap(array)


class _ModuleSequence:
    """The list operations of Sequential and ModuleList, as PyTorch's: positions count from the end
    when negative, and an insertion or a deletion renumbers the children 0, 1, ..."""

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return self._of(list(self._modules.items())[idx])
        return list(self._modules.values())[self._position(idx, "index")]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    __iadd__ = extend

    def __add__(self, other):
        """A new container of this one's modules, then ``other``'s, numbered from 0."""
        return self._of([(str(i), m) for i, m in enumerate([*self, *other])])

    def pop(self, index: int = -1):
        """Removes the module at ``index`` (the rest renumbered) and returns it."""
        mods = list(self._modules.values())
        module = mods.pop(self._position(index, "pop"))
        self._renumber(mods)
        return module

    #: Whether insert refuses an index past either end (PyTorch's Sequential) or clamps it (list.insert,
    #: PyTorch's ModuleList).
    _insert_checks_range = False

    def insert(self, index: int, module):
        """``module`` placed before position ``index``; returns this container."""
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"{type(self).__name__} insert: index must be an int, got {type(index).__name__}")
        n = len(self._modules)
        if self._insert_checks_range and not -n <= index <= n:
            raise IndexError(f"{type(self).__name__} insert: index {index} is out of range for {n} modules")
        mods = list(self._modules.values())
        mods.insert(int(index), module)
        self._renumber(mods)
        return self

    def __setitem__(self, idx, module) -> None:
        self.add_module(list(self._modules)[self._position(idx, "item assignment")], module)

    def __delitem__(self, idx) -> None:
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            del mods[idx]
        else:
            del mods[self._position(idx, "del")]
        self._renumber(mods)

    def _position(self, idx, what: str) -> int:
        if isinstance(idx, bool) or not isinstance(idx, numbers.Integral):
            raise TypeError(f"{type(self).__name__} {what}: index must be an int, got {type(idx).__name__}")
        n = len(self._modules)
        position = int(idx) + n if idx < 0 else int(idx)
        if not 0 <= position < n:
            raise IndexError(f"{type(self).__name__} {what}: index {idx} is out of range for {n} modules")
        return position

    def _renumber(self, modules) -> None:
        for name in list(self._modules):
            del self._modules[name]
        for i, module in enumerate(modules):
            self.add_module(str(i), module)


class Sequential(_ModuleSequence, Module):
    """Runs its modules in order; indexable and iterable, with the list operations of
    _ModuleSequence."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (dict, OrderedDict)):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    _insert_checks_range = True

    @staticmethod
    def _of(named) -> "Sequential":
        """A slice: the (name, module) pairs under their names, as PyTorch's."""
        return Sequential(OrderedDict(named))

    def forward(self, x):
        if is_grad_enabled():
            for m in self._modules.values():
                x = m(x)
            return x
        return run_sequence(self._inference_cache(), x)

    def _inference_cache(self) -> list:
        """``[children, groups, program, classes]`` for _inference.run_sequence: the children as
        _inference.fusion_groups groups them and the program run_sequence keeps (None: none yet), kept
        until the children change; while a child is a lazy module (nn/lazy.py), whose class changes at
        its first call, also until the children's ``classes`` change (else None)."""
        children = tuple(self._modules.values())
        cache = self.__dict__.get("_groups")
        if cache is None or cache[0] != children or (cache[3] is not None and cache[3] != tuple(map(type, children))):
            lazy = any(getattr(m, "cls_to_become", None) is not None for m in children)
            cache = [children, fusion_groups(children), None, tuple(map(type, children)) if lazy else None]
            self.__dict__["_groups"] = cache
        return cache


class ModuleList(_ModuleSequence, Module):
    """A list of modules whose parameters the owner registers (the list operations of
    _ModuleSequence)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    @staticmethod
    def _of(named) -> "ModuleList":
        """A slice: the modules of the (name, module) pairs, numbered from 0, as PyTorch's."""
        return ModuleList(m for _, m in named)


class ModuleDict(Module):
    """A dict of modules (in insertion order) whose parameters the owner registers."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key) -> bool:
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def pop(self, key: str) -> Module:
        return self._modules.pop(key)

    def clear(self) -> None:
        self._modules.clear()

    def update(self, modules) -> None:
        """Adds the modules of a mapping or of an iterable of (name, module) pairs."""
        pairs = modules.items() if hasattr(modules, "items") else modules
        for entry in pairs:
            if len(entry) != 2:
                raise ValueError(f"ModuleDict.update: expected (name, module) pairs, got {entry!r}")
            self.add_module(*entry)


class ParameterList(Module):
    """A list of Parameters whose owner registers them (Tensors given are made Parameters)."""

    def __init__(self, values=None):
        super().__init__()
        if values is not None:
            self.extend(values)

    @staticmethod
    def _parameter(value) -> Parameter:
        if isinstance(value, Parameter):
            return value
        if isinstance(value, Tensor):
            return Parameter(value)
        raise TypeError(f"ParameterList: entries must be Parameters or Tensors, got {type(value).__name__}")

    def append(self, value) -> "ParameterList":
        self.register_parameter(str(len(self._parameters)), self._parameter(value))
        return self

    def extend(self, values) -> "ParameterList":
        if isinstance(values, Tensor):  # an iterable of Parameters is meant: a Tensor would split into rows
            raise TypeError(f"ParameterList: expected an iterable of Parameters, got a {type(values).__name__}")
        for v in values:
            self.append(v)
        return self

    def __getitem__(self, idx):
        params = list(self._parameters.values())
        return ParameterList(params[idx]) if isinstance(idx, slice) else params[idx]

    def __setitem__(self, idx: int, value) -> None:
        key = str(range(len(self))[idx])
        self.register_parameter(key, self._parameter(value))

    def __len__(self):
        return len(self._parameters)

    def __iter__(self):
        return iter(self._parameters.values())


class ParameterDict(Module):
    """A dict of Parameters (in insertion order) whose owner registers them, as PyTorch's: string
    keys; a Tensor given is made a Parameter, other values (numbers, None, objects) are kept as
    plain entries; ``update`` with a plain dict adds its items in sorted key order (an OrderedDict,
    a ParameterDict or pairs keep theirs)."""

    def __init__(self, parameters=None):
        super().__init__()
        self._keys = {}
        if parameters is not None:
            self.update(parameters)

    @staticmethod
    def _key(key) -> str:
        if not isinstance(key, str):
            raise TypeError(f"ParameterDict: keys must be strings, got {type(key).__name__} {key!r}")
        return key

    def __getitem__(self, key: str):
        if self._key(key) not in self._keys:
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value) -> None:
        self._key(key)
        if isinstance(value, Tensor) and not isinstance(value, Parameter):
            value = Parameter(value)
        if isinstance(value, Parameter):
            self.__dict__.pop(key, None)  # a plain entry it replaces
            self.register_parameter(key, value)  # PyTorch's name checks: no '.', no method's name
        else:
            setattr(self, key, value)
        self._keys[key] = None

    def __delitem__(self, key: str) -> None:
        if self._key(key) not in self._keys:
            raise KeyError(key)
        del self._keys[key]
        delattr(self, key)

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self):
        return iter(self._keys)

    def __reversed__(self):
        return reversed(self._keys)

    def __contains__(self, key) -> bool:
        return key in self._keys

    def keys(self):
        return self._keys.keys()

    def items(self):
        return ((k, self[k]) for k in self._keys)

    def values(self):
        return (self[k] for k in self._keys)

    def get(self, key: str, default=None):
        return self[key] if key in self else default

    def setdefault(self, key: str, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key: str):
        value = self[key]
        del self[key]
        return value

    def popitem(self) -> tuple:
        if not self._keys:
            raise KeyError("popitem(): ParameterDict is empty")
        key = next(reversed(self._keys))
        return key, self.pop(key)

    def clear(self) -> None:
        for key in list(self._keys):
            del self[key]

    def copy(self) -> "ParameterDict":
        return ParameterDict(OrderedDict((k, self[k]) for k in self._keys))

    def fromkeys(self, keys, default=None) -> "ParameterDict":
        return ParameterDict((k, default) for k in keys)

    def update(self, parameters) -> None:
        """Adds (or replaces) the entries of a mapping or of an iterable of (key, value) pairs."""
        if not isinstance(parameters, Iterable):
            raise TypeError(
                f"ParameterDict.update: parameters must be a mapping or an iterable of (key, value) pairs, "
                f"got {type(parameters).__name__}"
            )
        if isinstance(parameters, (OrderedDict, ParameterDict)):
            pairs = list(parameters.items())
        elif isinstance(parameters, Mapping):
            pairs = sorted(parameters.items())  # PyTorch's order for a plain dict
        else:
            pairs = []
            for j, entry in enumerate(parameters):
                if not isinstance(entry, Iterable) or isinstance(entry, (str, Tensor)):
                    raise TypeError(
                        f"ParameterDict.update: element #{j} of parameters must be a (key, value) pair, "
                        f"got {type(entry).__name__}"
                    )
                entry = tuple(entry)
                if len(entry) != 2:
                    raise ValueError(
                        f"ParameterDict.update: element #{j} of parameters has length {len(entry)}; 2 is required"
                    )
                pairs.append(entry)
        for key, value in pairs:
            self[key] = value

    def __or__(self, other) -> "ParameterDict":
        merged = self.copy()
        merged.update(other)
        return merged

    def __ror__(self, other) -> "ParameterDict":
        merged = ParameterDict(other)
        merged.update(self)
        return merged

    def __ior__(self, other) -> "ParameterDict":
        self.update(other)
        return self

    def __call__(self, *args, **kwargs):
        raise RuntimeError("ParameterDict should not be called.")

    def extra_repr(self) -> str:
        lines = []
        for key, value in self.items():
            if isinstance(value, Tensor):
                size = "x".join(str(n) for n in value.shape)
                device = "" if value.device.type == "cpu" else f" ({value.device})"
                kind = "Parameter" if isinstance(value, Parameter) else "Tensor"
                lines.append(f"  ({key}): {kind} containing: [{value.type()} of size {size}{device}]")
            else:
                lines.append(f"  ({key}): Object of type: {type(value).__name__}")
        return "\n".join(lines)

    def __repr__(self):  # the lines of extra_repr indented once more, as PyTorch's Module.__repr__ does
        lines = self.extra_repr().split("\n") if self._keys else []
        return f"{type(self).__name__}(" + ("".join("\n  " + line for line in lines) + "\n" if lines else "") + ")"


class Identity(Module):
    """Returns its input; takes (and ignores) any constructor arguments, as PyTorch's."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input
