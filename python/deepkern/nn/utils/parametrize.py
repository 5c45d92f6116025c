"""``torch.nn.utils.parametrize``: a parameter or buffer of a module computed from others.

``register_parametrization(module, "weight", p)`` replaces ``module.weight`` by
``module.parametrizations.weight`` (a :class:`ParametrizationList`): its ``original`` (or
``original0``, ``original1``, ... when ``p.right_inverse`` returns several tensors) are the
parameters the optimizer steps, and reading ``module.weight`` returns ``p(original)`` (each further
parametrization registered on the name applied in turn). Assigning ``module.weight = value`` writes
``right_inverse(value)`` into the originals. The module's class is swapped for a subclass
``Parametrized<Class>`` carrying the property (the layer's own class comes back when the last
parametrization is removed). State dict keys, errors and the swap are PyTorch's, so PyTorch state
dicts of parametrized models load. A parametrized layer's forward computes each parametrized
tensor once per call (its checks and its op may read the weight twice) and takes the ordinary path
(no inference plan: the weight is computed afresh each call, or once per :func:`cached` region)."""

from __future__ import annotations

import contextlib
import copy

from ... import autograd
from ...tensor import Tensor
from ..module import Module, ModuleDict, ModuleList, Parameter

__all__ = [
    "ParametrizationList",
    "cached",
    "is_parametrized",
    "register_parametrization",
    "remove_parametrizations",
    "type_before_parametrizations",
]

_cache_depth = 0
_cache: dict = {}  # (id(module), name) -> the parametrized tensor, inside cached()


@contextlib.contextmanager
def cached():
    """Inside, each parametrized tensor is computed once (on first use) and reused."""
    global _cache_depth
    _cache_depth += 1
    try:
        yield
    finally:
        _cache_depth -= 1
        if not _cache_depth:
            _cache.clear()


def _set_values(original: Tensor, value: Tensor) -> None:
    """``original`` (the same Parameter object, which optimizers may hold) now holds ``value``'s
    data, as PyTorch's ``set_``."""
    original._array = value.detach()._array.copy()
    autograd.note_module_change()


class ParametrizationList(ModuleList):
    """The parametrizations of one tensor of a module and its originals (``original``, or
    ``original0``, ``original1``, ...); calling it gives the parametrized tensor."""

    def __init__(self, modules, original, unsafe: bool = False) -> None:
        if len(modules) == 0:
            raise ValueError("ParametrizationList requires one or more modules.")
        super().__init__(modules)
        self.unsafe = unsafe
        original_shape, original_dtype = tuple(original.shape), original.dtype
        with autograd.no_grad():
            new = original
            for module in reversed(self):
                if hasattr(module, "right_inverse"):
                    new = module.right_inverse(new)
        if isinstance(new, Tensor):
            self.is_tensor, self.ntensors = True, 1
            if not unsafe and (tuple(new.shape) != original_shape or new.dtype != original_dtype):
                raise ValueError(
                    "When `right_inverse` outputs one tensor, it may not change the dtype or shape: "
                    f"original {original_shape} {original_dtype}, right_inverse's {tuple(new.shape)} {new.dtype}"
                )
            if new is not original:
                _set_values(original, new)
            self._register(original, "original")
        else:
            if not isinstance(new, (tuple, list)):
                raise ValueError(
                    f"'right_inverse' must return a Tensor or a Sequence of tensors, got {type(new).__name__}"
                )
            self.is_tensor, self.ntensors = False, len(new)
            for i, value in enumerate(new):
                if not isinstance(value, Tensor):
                    raise ValueError(
                        f"'right_inverse' must return a sequence of tensors, got element {i} of type "
                        f"{type(value).__name__}"
                    )
                tensor = Parameter(value.detach()) if isinstance(original, Parameter) else value.detach()
                tensor.requires_grad = original.requires_grad
                self._register(tensor, f"original{i}")
        if not unsafe:
            z = self()
            if not isinstance(z, Tensor):
                raise ValueError(f"A parametrization must return a tensor, got {type(z).__name__}")
            if tuple(z.shape) != original_shape or z.dtype != original_dtype:
                raise ValueError(
                    "Registering a parametrization may not change the shape or dtype of the tensor, unless "
                    f"`unsafe` is set: the tensor is {original_shape} {original_dtype}, the parametrized one "
                    f"{tuple(z.shape)} {z.dtype}"
                )

    def _register(self, tensor: Tensor, name: str) -> None:
        if isinstance(tensor, Parameter):
            self.register_parameter(name, tensor)
        else:
            self.register_buffer(name, tensor)

    def right_inverse(self, value) -> None:
        """Writes ``value`` (the tensor the parametrizations should give) into the originals, through
        each parametrization's right_inverse, last first."""
        with autograd.no_grad():
            for module in reversed(self):
                if not hasattr(module, "right_inverse"):
                    raise RuntimeError(f"parametrization {type(module).__name__} does not implement right_inverse.")
                value = module.right_inverse(value)
            if self.is_tensor:
                if not isinstance(value, Tensor):
                    raise ValueError(f"`right_inverse` should return a tensor, got {type(value).__name__}")
                if tuple(value.shape) != tuple(self.original.shape) or value.dtype != self.original.dtype:
                    raise ValueError(
                        f"The tensor returned by `right_inverse` has shape {tuple(value.shape)} and dtype "
                        f"{value.dtype}, the original {tuple(self.original.shape)} and {self.original.dtype}"
                    )
                _set_values(self.original, value)
            else:
                if not isinstance(value, (tuple, list)) or len(value) != self.ntensors:
                    raise ValueError(f"'right_inverse' must return a sequence of {self.ntensors} tensors")
                for i, tensor in enumerate(value):
                    _set_values(getattr(self, f"original{i}"), tensor)

    def forward(self):
        if self.is_tensor:
            x = self[0](self.original)
        else:
            x = self[0](*(getattr(self, f"original{i}") for i in range(self.ntensors)))
        for module in list(self)[1:]:
            x = module(x)
        return x


def is_parametrized(module, tensor_name=None) -> bool:
    """Whether ``module`` has a parametrization (on ``tensor_name``, when given)."""
    parametrizations = module.__dict__.get("_modules", {}).get("parametrizations")
    if not isinstance(parametrizations, ModuleDict):
        return False
    return len(parametrizations) > 0 if tensor_name is None else tensor_name in parametrizations


def type_before_parametrizations(module) -> type:
    """The module's class before parametrizations swapped it (its class when it has none)."""
    return type(module).__bases__[0] if is_parametrized(module) else type(module)


def _deepcopy(self, memo):
    replica = self.__new__(type(self))
    memo[id(self)] = replica
    replica.__dict__.update(copy.deepcopy(Module.__getstate__(self), memo))
    return replica


def _getstate(self):
    raise RuntimeError(
        "Serialization of parametrized modules is only supported through state_dict() (and copy.deepcopy); "
        "pickling one is not"
    )


def _inject_new_class(module) -> None:
    cls = type(module)

    def forward(self, *args, **kwargs):
        # one value per tensor and call: a layer's forward may read its weight more than once (its
        # checks, then the op), and each read in training mode would run a spectral norm's iteration
        with cached():
            return cls.forward(self, *args, **kwargs)

    module.__class__ = type(
        f"Parametrized{cls.__name__}",
        (cls,),
        {"forward": forward, "__getstate__": _getstate, "__deepcopy__": _deepcopy, "_infer_step": None},
    )


def _inject_property(module, name: str) -> None:
    def get_parametrized(self):
        parametrization = self.parametrizations[name]
        if not _cache_depth:
            return parametrization()
        key = (id(self), name)
        if key not in _cache:
            _cache[key] = parametrization()
        return _cache[key]

    def set_original(self, value) -> None:
        self.parametrizations[name].right_inverse(value)

    setattr(type(module), name, property(get_parametrized, set_original))


def register_parametrization(module, tensor_name: str, parametrization, *, unsafe: bool = False):
    """Parametrizes ``module``'s parameter or buffer ``tensor_name`` by the module ``parametrization``
    (see the module docstring); a second call on the same name chains the new one after the
    others. ``unsafe`` skips the shape and dtype checks. Returns ``module``."""
    if not isinstance(parametrization, Module):
        raise TypeError(
            f"register_parametrization: parametrization must be an nn.Module, got {type(parametrization).__name__}"
        )
    parametrization.train(module.training)
    if is_parametrized(module, tensor_name):
        if not unsafe:
            y = getattr(module, tensor_name)
            x = parametrization(y)
            if not isinstance(x, Tensor):
                raise ValueError(f"A parametrization must return a tensor, got {type(x).__name__}")
            if tuple(x.shape) != tuple(y.shape) or x.dtype != y.dtype:
                raise ValueError(
                    "Registering a parametrization may not change the shape or dtype of the tensor, unless "
                    f"`unsafe` is set: the tensor is {tuple(y.shape)} {y.dtype}, the parametrized one "
                    f"{tuple(x.shape)} {x.dtype}"
                )
        module.parametrizations[tensor_name].append(parametrization)
        module.parametrizations[tensor_name].unsafe |= unsafe
    elif tensor_name in module._buffers or tensor_name in module._parameters:
        original = getattr(module, tensor_name)
        if original is None:
            raise ValueError(f"register_parametrization: {type(module).__name__}.{tensor_name} is None")
        parametrizations = ParametrizationList([parametrization], original, unsafe=unsafe)
        delattr(module, tensor_name)
        if not is_parametrized(module):
            _inject_new_class(module)
            module.parametrizations = ModuleDict()
        _inject_property(module, tensor_name)
        module.parametrizations[tensor_name] = parametrizations
    else:
        raise ValueError(
            f"Module '{module}' does not have a parameter, a buffer, or a parametrized element with name "
            f"'{tensor_name}'"
        )
    return module


def remove_parametrizations(module, tensor_name: str, leave_parametrized: bool = True):
    """Removes the parametrizations of ``tensor_name``: it becomes a parameter (or buffer) again,
    holding the parametrized value (``leave_parametrized``) or the original. Returns ``module``."""
    if not is_parametrized(module, tensor_name):
        raise ValueError(f"Module {module} does not have a parametrization on {tensor_name}")
    parametrizations = module.parametrizations[tensor_name]
    if parametrizations.is_tensor:
        original = parametrizations.original
        if leave_parametrized:
            with autograd.no_grad():
                value = getattr(module, tensor_name)
            _set_values(original, value)
    else:
        if not leave_parametrized:
            raise ValueError(
                "Cannot leave unparametrized (`leave_parametrized=False`) a tensor that is parametrized in "
                "terms of a sequence of tensors."
            )
        with autograd.no_grad():
            value = getattr(module, tensor_name)
        first = parametrizations.original0
        original = Parameter(value.detach()) if isinstance(first, Parameter) else value.detach()
        original.requires_grad = first.requires_grad
    delattr(type(module), tensor_name)
    del module.parametrizations[tensor_name]
    if isinstance(original, Parameter):
        module.register_parameter(tensor_name, original)
    else:
        module.register_buffer(tensor_name, original)
    if not is_parametrized(module):
        del module.parametrizations
        module.__class__ = type(module).__bases__[0]
    return module
