"""``Optimizer``: the base class of deepkern's optimizers, with ``torch.optim.Optimizer``'s
param groups, per-parameter ``state``, ``state_dict``/``load_state_dict``, ``zero_grad`` and
``add_param_group``. Subclasses implement ``step`` as one fused multi-tensor kernel call per
param group (``deepkern.ops``).

State dicts have torch's layout: ``{"state": {index: {name: value}}, "param_groups": [{option:
value, ..., "params": [index, ...]}]}``, the indices numbering the parameters in group order.
State arrays are copies (``Tensor``), steps are Python floats, options JSON values, so a state dict
can be written with ``deepkern.save``.
"""

from __future__ import annotations

import copy
import numbers
import warnings
from collections import defaultdict

import numpy as np

from .. import autograd
from ..backends import as_array, to_device
from ..ops._validate import overlaps
from ..tensor import Tensor

__all__ = ["Optimizer"]

#: Optimizer._kernel_dtypes of the optimizers stepped by float32 and float64 kernels.
FLOAT_KERNELS = (np.dtype(np.float32), np.dtype(np.float64))


def _check_nonnegative(value, what: str) -> None:
    """torch's constructor checks: ``Invalid <what>: <value>`` unless ``0 <= value``."""
    if not 0.0 <= value:
        raise ValueError(f"Invalid {what}: {value}")


#: torch.optim's options that choose how a step runs rather than what it computes.
IMPLEMENTATION_OPTIONS = ("foreach", "fused", "capturable", "differentiable")


def _implementation_options(what: str, **options) -> dict:
    """The implementation options ``what`` (an optimizer's name) takes from torch's signature
    (some of ``foreach``, ``fused``, ``capturable``, ``differentiable``), checked, for its defaults:
    torch keeps them in its defaults and param groups, so state dicts keep their keys.

    ``foreach``, ``fused`` and ``capturable`` choose how torch runs a step (per-tensor or
    multi-tensor loops, a fused kernel, CUDA-graph capture) and leave its results as they are;
    deepkern's steps are the same whatever they say (its fused steps where it has them), so they are
    accepted and otherwise ignored, with torch's check that ``fused`` and ``foreach`` are not both
    True. ``differentiable=True`` (a step recorded by autograd, so that gradients flow through the
    update) cannot be honoured: deepkern's steps write the parameters in place outside autograd."""
    unknown = set(options) - set(IMPLEMENTATION_OPTIONS)
    if unknown:  # a programming error in an optimizer of this package
        raise TypeError(f"{what}: unknown implementation options {sorted(unknown)}")
    _refuse_differentiable(what, options.get("differentiable", False))
    if options.get("fused") and options.get("foreach"):
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    return options


def _refuse_differentiable(what: str, differentiable) -> None:
    if differentiable:
        raise NotImplementedError(
            f"{what}: differentiable=True is not supported: deepkern's optimizer steps update the parameters "
            "in place outside autograd, so no gradient can flow through a step; use differentiable=False"
        )


def _array_of_state(value, param: Tensor, shape: tuple, dtype, where: str):
    """A copy of a loaded state array (ndarray, deepkern Tensor, or an object with ``.numpy()``
    such as a torch tensor) of ``shape`` (its entry's), cast to ``dtype`` (its state's) like torch does,
    on ``param``'s device."""
    if isinstance(value, Tensor):
        arr = value._array
    elif isinstance(value, np.ndarray):
        arr = value
    elif hasattr(value, "numpy"):
        arr = np.asarray(value.detach().numpy() if hasattr(value, "detach") else value.numpy())
    else:
        arr = as_array(value)
    if arr.shape != tuple(shape):
        raise ValueError(f"load_state_dict: {where} has shape {arr.shape} but its parameter's state has shape {shape}")
    return to_device(arr, param.device).astype(dtype, order="C", copy=True)


def _step_array(t: Tensor, dtype):
    """``t``'s array as a step's kernel takes it: itself, or a C-contiguous copy in ``dtype``."""
    if t.dtype != dtype:
        return t._array.astype(dtype, order="C")
    return t._array if t.is_contiguous() else t._backend().ascontiguousarray(t._array)


def _check_option_kind(value, default, where: str) -> None:
    """A loaded group option of the kind of its default (a flag, a number, a tuple of numbers such as
    betas, None or a string): ValueError naming it otherwise, before any step reads it."""

    def kind(v):
        if isinstance(v, (bool, np.bool_)):
            return "a flag"
        if isinstance(v, (numbers.Real, Tensor)):
            return "a number"
        if isinstance(v, (tuple, list)):  # None among numbers: an unset one (Adafactor's eps)
            all_numbers = all(x is None or kind(x) == "a number" for x in v)
            return f"a tuple of {len(v)} numbers" if all_numbers else "a tuple"
        return "None or a string" if v is None or isinstance(v, str) else type(v).__name__

    want = kind(default)
    if default is not None and kind(value) != want:
        raise ValueError(f"load_state_dict: {where} must be {want} like the optimizer's default, got {value!r}")


def _plain_options(group: dict) -> dict:
    """``group`` with its 0-d Tensor options (``lr=tensor(0.01)``, as PyTorch takes them; also
    inside tuples such as betas) as Python floats, the numbers the steps compute with."""

    def plain(value):
        if isinstance(value, Tensor) and value.ndim == 0:
            return float(value.item())
        if isinstance(value, tuple):
            return tuple(map(plain, value))
        return value

    def has_tensor(value):
        return isinstance(value, Tensor) or (type(value) is tuple and any(isinstance(v, Tensor) for v in value))

    for value in group.values():  # the usual group (numbers, flags, tuples of numbers): as it is
        kind = type(value)
        if kind is float or kind is bool or kind is int or value is None or kind is str:
            continue
        if has_tensor(value):
            break
    else:
        return group
    return {name: value if name == "params" else plain(value) for name, value in group.items()}


def _copy_state_value(value):
    """A state entry for a state dict: Tensors (also inside lists) copied, the rest deep-copied."""
    if isinstance(value, Tensor):
        return Tensor._wrap(value._array.copy())
    if isinstance(value, list):
        return [_copy_state_value(v) for v in value]
    return copy.deepcopy(value)


def _scalar_of(value) -> float:
    """A loaded scalar state entry (a number, a 0-d array or tensor of any library) as a float."""
    return float(np.asarray(value.numpy() if hasattr(value, "numpy") else value))


def _adam_defaults(lr, betas, eps, weight_decay, **options) -> dict:
    """The defaults of an Adam-like optimizer after torch's checks (``lr``, ``eps``,
    ``weight_decay`` >= 0; ``betas`` a pair, each in [0, 1)), followed by its other ``options``."""
    _check_nonnegative(lr, "learning rate")
    _check_nonnegative(eps, "epsilon value")
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
    _check_nonnegative(weight_decay, "weight_decay value")
    betas = (float(betas[0]), float(betas[1]))
    return {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, **options}


class Optimizer:
    """Base class of optimizers.

    Args:
        params: an iterable of Tensors, of ``(name, Tensor)`` pairs, or of dicts (param groups:
            ``{"params": ..., option: value}``, options missing from a group taken from
            ``defaults``).
        defaults: the optimizer's options and their default values.
    """

    #: The parameter dtypes the subclass's step kernels take (None: any). Parameters of another
    #: floating dtype (bfloat16, float16) step on float32 copies, rounded back once per step, and
    #: keep float32 state.
    _kernel_dtypes: tuple | None = None
    #: The names of a parameter's state entries (None: not checked); a loaded state dict with others
    #: is another optimizer's.
    _state_names: frozenset | None = None

    def __init__(self, params, defaults: dict):
        self.defaults = defaults
        if isinstance(params, Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or dicts, "
                f"but got {type(params).__name__}"
            )
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list = []
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k != "params"]
        return "\n".join(lines) + "\n)"

    # -- param groups --------------------------------------------------------------------------

    def add_param_group(self, param_group: dict) -> None:
        """Adds a group (``{"params": ..., option: value}``) with its own options, e.g. layers
        unfrozen while training; options it does not give come from ``defaults``."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the ordering "
                "of tensors in sets will change between runs. Please use a list instead."
            )
        else:
            params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        if names and len(names) != len(params):
            raise ValueError("all optimizer params should be with/without names. Some param names are missing")
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
            if p.dtype.kind == "c":
                raise TypeError(f"optimizer: complex parameters are not supported, got one of dtype {p.dtype}")
        _refuse_differentiable(f"{type(self).__name__} param group", param_group.get("differentiable", False))
        param_group["params"] = params
        if names:
            param_group["param_names"] = names
        for name, default in self.defaults.items():
            param_group.setdefault(name, default)

        ids = {id(p) for p in params}
        if len(ids) != len(params):
            warnings.warn(
                "optimizer contains a parameter group with duplicate parameters; in future, this will cause an error",
                stacklevel=3,
            )
        for group in self.param_groups:
            if ("param_names" in param_group) != ("param_names" in group):
                which = "with names" if "param_names" in param_group else "without names"
                raise ValueError(
                    "all optimizer param groups should be with/without names. "
                    f"cannot add param group {which} to the optimizer"
                )
            if any(id(p) in ids for p in group["params"]):
                raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    # -- gradients and steps -------------------------------------------------------------------

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Sets every parameter's ``.grad`` to None (default; the next ``step`` skips a parameter
        whose grad stays None) or, with ``set_to_none=False``, fills it with zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:  # as torch.optim: a gradient that is a view keeps its graph-free state
                    if p.grad.grad_fn is not None:
                        p.grad.detach_()
                    p.grad._array[...] = 0

    def step(self, closure=None):
        """One optimization step of every parameter that has a gradient (torch.optim skips a
        parameter whose grad is None); ``closure`` (optional) re-evaluates the model with grad
        enabled and returns the loss, which ``step`` returns."""
        loss = None
        if closure is not None:
            with autograd.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, param_arrays, grad_arrays = [], [], []
            for p in group["params"]:
                g = p.grad
                if g is not None:  # the kernels take C-contiguous arrays of their dtypes: others step on a copy
                    params.append(p)
                    dtype = self._state_dtype(p)
                    param_arrays.append(_step_array(p, dtype))
                    grad = _step_array(g, dtype if dtype != p.dtype else g.dtype)
                    # A gradient sharing the parameter's memory (p.grad = p.detach(), which PyTorch
                    # steps) is copied first: the kernels write the parameter while reading it.
                    param = param_arrays[-1]
                    shared = grad is param or (getattr(grad, "base", None) is not None and overlaps(grad, param))
                    grad_arrays.append(grad.copy() if shared else grad)
            if params:
                self._step_group(_plain_options(group), params, param_arrays, grad_arrays)
                for p, a in zip(params, param_arrays):
                    if a is not p._array:  # a strided or narrow parameter: the stepped copy written back
                        p._array[...] = a
                    autograd.bump_version(p._array)  # written in place: graphs that saved it must not reuse it
        return loss

    def _step_group(self, group: dict, params: list, param_arrays: list, grad_arrays: list) -> None:
        """Steps ``params`` (the group's parameters with a gradient; their arrays and their
        gradients' arrays beside them) with one fused kernel call per dtype."""
        raise NotImplementedError

    def _count_step(self, params) -> None:
        """Adds the step just taken to each parameter's ``state["step"]`` (after the kernel
        succeeded, so a step that raised leaves the counts as they were)."""
        state = self.state
        for p in params:
            state[p]["step"] += 1.0

    def _state_dtype(self, p: Tensor):
        """The dtype of ``p``'s state arrays and of the arrays its step runs on (see _kernel_dtypes)."""
        if self._kernel_dtypes is None or p.dtype in self._kernel_dtypes:
            return p.dtype
        return np.dtype(np.float32)

    def _state_shape(self, name: str, p: Tensor) -> tuple:
        """The shape of ``p``'s state array ``name``: ``p``'s (Adafactor's factors are smaller)."""
        return p.shape

    def _state_array(self, state: dict, name: str, p: Tensor):
        """The array of ``state[name]``, created as zeros of its shape (_state_shape) and ``p``'s state dtype
        (C order) on its device when missing: on the first step, or when an option that needs it was turned
        on later."""
        t = state.get(name)
        if t is None:
            t = state[name] = Tensor._wrap(p._backend().zeros(self._state_shape(name, p), self._state_dtype(p)))
        return t._array

    @staticmethod
    def _by_dtype(param_arrays, *lists):
        """The kernel's lists (params first), split by the parameters' dtype since one kernel call
        takes one dtype; ``None`` lists stay None. Almost every group has one dtype: one split."""
        first = param_arrays[0].dtype
        if all(a.dtype == first for a in param_arrays):
            return [(param_arrays, *lists)]
        buckets = defaultdict(list)
        for i, a in enumerate(param_arrays):
            buckets[a.dtype].append(i)
        return [
            tuple(None if lst is None else [lst[i] for i in idx] for lst in (param_arrays, *lists))
            for idx in buckets.values()
        ]

    # -- state dicts ---------------------------------------------------------------------------

    #: state entries that are Python floats here (torch may save them as 0-d tensors)
    _scalar_state = ("step",)

    def _loaded_state(self, name: str, value, param: Tensor, where: str):
        """One loaded state entry of ``param``: a scalar entry as a float, plain values as they are,
        arrays as a copy of ``param``'s shape and device, in its state dtype."""
        if name in self._scalar_state:
            return _scalar_of(value)
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        return Tensor._wrap(
            _array_of_state(value, param, self._state_shape(name, param), self._state_dtype(param), where)
        )

    def state_dict(self) -> dict:
        """``{"state": {index: {name: value}}, "param_groups": [{..., "params": [index, ...]}]}``
        (torch's layout); state arrays are copies, so the dict does not change as training goes on."""
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {}
        for p, entry in self.state.items():
            if id(p) in index:
                state[index[id(p)]] = {k: _copy_state_value(v) for k, v in entry.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Loads a state dict from :meth:`state_dict` (or torch's, arrays converted or not): the
        groups' options and a copy of every parameter's state, cast to the parameter's dtype.
        The number of groups and each group's size must match this optimizer's; options a group lacks
        (a state dict from before they existed) take the optimizer's defaults, as in PyTorch."""
        groups = self.param_groups
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError(
                f"loaded state dict has a different number of parameter groups: {len(saved_groups)}, "
                f"the optimizer has {len(groups)}"
            )
        for i, (g, s) in enumerate(zip(groups, saved_groups)):
            if len(g["params"]) != len(s["params"]):
                raise ValueError(
                    f"loaded state dict contains a parameter group that doesn't match the size of "
                    f"optimizer's group: group {i} has {len(s['params'])} parameters in the state dict, "
                    f"{len(g['params'])} in the optimizer"
                )
        if self._state_names is not None:
            for key, entry in state_dict["state"].items():
                strange = sorted(set(entry) - self._state_names)
                if strange:
                    raise ValueError(
                        f"load_state_dict: state[{key!r}] has {', '.join(map(repr, strange))}, which "
                        f"{type(self).__name__} does not keep (its state: {', '.join(sorted(self._state_names))}): "
                        "the state dict of another optimizer?"
                    )
        id_map = {saved: p for s, g in zip(saved_groups, groups) for saved, p in zip(s["params"], g["params"])}
        state = defaultdict(dict)
        for key, entry in state_dict["state"].items():
            if key not in id_map:
                state[key] = copy.deepcopy(entry)
                continue
            param = id_map[key]
            state[param] = {
                name: self._loaded_state(name, value, param, f"state[{key}][{name!r}]") for name, value in entry.items()
            }
        for i, (g, s) in enumerate(zip(groups, saved_groups)):
            s["params"] = g["params"]
            for option, default in self.defaults.items():  # options newer than the state dict
                s.setdefault(option, default)
                _check_option_kind(s[option], default, f"param_groups[{i}][{option!r}]")
            _refuse_differentiable(f"load_state_dict: param_groups[{i}]", s.get("differentiable", False))
            if "param_names" in g and "param_names" not in s:
                s["param_names"] = g["param_names"]
        self.state = state
        self.param_groups = saved_groups
