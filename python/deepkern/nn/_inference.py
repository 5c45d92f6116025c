"""The layers' inference paths: what runs when nothing is recorded (``no_grad``) on the CPU.

* Kernel plans. A layer whose input is a C-contiguous float NumPy array calls its kernel through the
  CPU backend's entry with the arguments its op validated on the first call with that input shape,
  dtype and weight arrays (a one-entry plan kept on the module): no per-call validation, no autograd
  Function, no copies. Anything else (another device, other layouts, an empty input, a changed
  shape) takes the layer's ordinary path, which validates and raises as always. A layer's path is
  its ``_infer_step(x, bn, relu)``: the step, a function of arrays shaped and typed as ``x`` (the
  plan's kernel call), or None where the ordinary path must run.
* Programs. A ``Sequential`` whose every group ran as a step keeps the steps as its program for
  that input shape and dtype, and later calls run the steps alone, while the write clock and the
  module clock (``autograd.module_changes``: attributes, hooks, modes, arrays replaced) stand still.
* Fusion (eval mode). ``Conv2d`` followed by ``BatchNorm2d`` runs as one convolution whose weight
  and bias have the batch norm folded in (cached on the convolution; refolded when any of the six
  arrays is replaced or written in place, see ``autograd.bump_version``), a following ``ReLU`` runs
  on its output in the same call, and ``Linear`` followed by ``ReLU`` uses the GEMM's ReLU epilogue.
  ``Sequential`` fuses its adjacent children by itself (:func:`fusion_groups`); a model with its own
  ``forward`` names its groups with :func:`deepkern.nn.utils.fuse_modules`.
"""

from __future__ import annotations

import weakref

import numpy as np

from .. import autograd, backends
from ..autograd import is_grad_enabled
from ..backends import CPU_DEVICE
from ..tensor import Tensor

#: The CPU backend, whose kernel entries the plans call.
CPU = backends.get(CPU_DEVICE)
#: The attributes a module keeps its inference caches in (dropped when it goes back to training).
CACHES = ("_plan",)
#: The attribute of a layer that fuse_modules fused: (its BatchNorm2d or None, its ReLU or None).
FUSION = "_fusion"
#: The attribute of a BatchNorm2d or ReLU fused into a layer: a weak reference to that layer's
#: latest fused output, which it passes through unchanged (it already holds their effect).
FUSED_OUTPUT = "_fused_output"
#: Every attribute of a module that the inference paths keep (not pickled or copied with it): the
#: caches, fusions, and a Sequential's groups and program.
STATE = CACHES + (FUSION, FUSED_OUTPUT, "_groups")


def host_array(x):
    """``x``'s array when an inference path can take it: nothing is recorded, no autocast region is
    open (its casts happen in the ops' ordinary path), ``x`` is a Tensor holding a non-empty
    C-contiguous NumPy array; else None."""
    if type(x) is not Tensor or is_grad_enabled() or autograd.autocast_casts():
        return None
    a = x._array
    if type(a) is not np.ndarray or not a.flags.c_contiguous or a.size == 0:
        return None
    return a


def cached_plan(module, x, arrays, config, build):
    """The module's plan for input array ``x`` with its weight arrays ``arrays`` and settings
    ``config`` (a tuple: stride, padding, ...): the kept one when it was made for x's shape and
    dtype, these very arrays and equal settings, else ``build()`` (which validates as the layer's
    op does and raises its errors; None: no plan, take the ordinary path), kept. The record has
    :func:`kept`'s layout; the plan reads the arrays themselves, so writes to them need no check."""
    key = (x.shape, x.dtype, config, *map(id, arrays))
    record = module.__dict__.get("_plan")
    if record is None or record[0] != key:
        record = (key, None, None, build(), arrays, None)  # the arrays are kept so that their ids stay theirs
        module.__dict__["_plan"] = record
    return record[3]


def hooked(modules) -> bool:
    """Whether any of ``modules`` has forward hooks or pre-hooks, a ``forward`` of its own set on the
    instance, or a class with its own ``__call__`` (each must see, or be, its layer's run)."""
    global _module_call
    if _module_call is None:
        from .module import Module

        _module_call = Module.__call__
    for m in modules:
        if m._forward_hooks or m._forward_pre_hooks or "forward" in m.__dict__ or type(m).__call__ is not _module_call:
            return True
    return False


_module_call = None  # Module.__call__, found on first use (module.py imports this file)


def _array(t):
    return None if t is None else t._array


def kept(module, attr: str, key, arrays, build):
    """``build()``'s result, kept on ``module`` (as ``attr``) while ``key`` stays equal and none of
    ``arrays`` (None entries allowed) is written in place; the arrays are kept too, so that ids in
    ``key`` stay theirs. Checking costs one clock read while nothing anywhere was written. An array
    handed out as a NumPy array (``Tensor.numpy()``: writes through it bump no version) is compared
    with a copy taken when the result was built."""
    cache = module.__dict__.get(attr)
    if cache is not None and cache[0] == key:
        copies = cache[5]
        if cache[1] == autograd._clock and copies is None:
            return cache[3]
        if cache[2] == _versions(arrays) and all(
            copy is None or np.array_equal(copy, a) for copy, a in zip(copies or (), arrays)
        ):
            module.__dict__[attr] = (key, autograd._clock) + cache[2:]
            return cache[3]
    for a in arrays:
        if a is not None:
            autograd.watch(a)
    versions, value = _versions(arrays), build()
    copies = [a.copy() if a is not None and autograd.is_exposed(a) else None for a in arrays]
    copies = copies if any(c is not None for c in copies) else None
    module.__dict__[attr] = (key, autograd._clock, versions, value, arrays, copies)
    return value


def checks_contents(module) -> bool:
    """Whether ``module``'s plan (:func:`kept`, :func:`cached_plan`) was derived from an array handed
    out as a NumPy array, whose contents each call compares: its step must not be kept beyond the call."""
    record = module.__dict__.get("_plan")
    return record is not None and record[5] is not None


def _versions(arrays) -> tuple:
    """Per array: its in-place writes, the times it was handed out as a NumPy array (writes through
    one since the result was built are unknown), and whether such a handle is alive now."""
    return tuple(
        -1 if a is None else (autograd.version_of(a), autograd.exposures(a), autograd.is_exposed(a)) for a in arrays
    )


def member(module, name: str):
    """``module``'s parameter ``name``, read from its registry (no attribute lookup), or the plain
    attribute a user put in its place (``del m.weight; m.weight = tensor``, as PyTorch allows)."""
    params = module._parameters
    return params[name] if name in params else getattr(module, name)


def conv_bn_arrays(conv, bn) -> tuple:
    """The six arrays folding ``bn`` into ``conv`` reads (see :func:`folded`): the convolution's
    weight and bias, the batch norm's weight, bias, running mean and running variance (None
    entries for absent ones)."""
    buffers = bn._buffers
    return tuple(
        _array(t)
        for t in (
            member(conv, "weight"),
            member(conv, "bias"),
            member(bn, "weight"),
            member(bn, "bias"),
            buffers["running_mean"],
            buffers["running_var"],
        )
    )


def folded(arrays, eps: float):
    """The convolution weight and bias of :func:`conv_bn_arrays`'s ``arrays`` with the eval-mode
    batch norm folded in: ``w * s`` and ``(b - running_mean) * s + bn.bias`` with
    ``s = bn.weight / sqrt(running_var + eps)``, computed in float64 and rounded once to the weight's
    dtype."""
    w, b, gamma, beta, mean, var = arrays
    scale = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    if gamma is not None:
        scale = scale * gamma
    shift = -mean * scale if b is None else (b - mean.astype(np.float64)) * scale
    if beta is not None:
        shift = shift + beta
    return (
        np.ascontiguousarray((w * scale.reshape(-1, 1, 1, 1)).astype(w.dtype)),
        np.ascontiguousarray(shift.astype(w.dtype)),
    )


def still_foldable(conv, bn) -> bool:
    """Whether ``bn``, found foldable into ``conv`` (:func:`can_fold`) when their group was made, still
    is at a call: its running statistics may have been set to None since, or cast (a cheap check,
    made every call, where can_fold's costs about 10 us)."""
    mean, var = bn.running_mean, bn.running_var
    return mean is not None and var is not None and mean._array.dtype == var._array.dtype == conv.weight._array.dtype


def can_fold(conv, bn) -> bool:
    """Whether ``bn`` can be folded into ``conv``: a BatchNorm2d with running statistics over the
    convolution's output channels, its arrays on the CPU in the convolution's dtype."""
    from .normalization import BatchNorm2d

    return (
        type(bn) is BatchNorm2d  # a subclass may compute otherwise (its own forward)
        and bn.running_mean is not None
        and bn.num_features == conv.out_channels
        and all(
            type(t._array) is np.ndarray and t.dtype == conv.weight.dtype
            for t in (conv.weight, bn.running_mean, bn.running_var, bn.weight, bn.bias, conv.bias)
            if t is not None
        )
    )


def fusion_groups(modules) -> list:
    """``modules`` (a Sequential's children, in order) as groups ``(members, bn, relu)`` run as one:
    Conv2d (not transposed) with a following foldable BatchNorm2d (``bn``, see :func:`can_fold`)
    and/or ReLU (``relu``), and Linear with a following ReLU; every other module alone
    (``((module,), None, False)``)."""
    from .activation import ReLU
    from .conv import Conv2d
    from .linear import Linear

    groups, i = [], 0
    while i < len(modules):
        head, bn = modules[i], None
        rest = modules[i + 1 :]
        if type(head) is Conv2d and rest and can_fold(head, rest[0]):
            bn, rest = rest[0], rest[1:]
        relu = type(head) in (Conv2d, Linear) and bool(rest) and type(rest[0]) is ReLU
        members = (head,) + ((bn,) if bn is not None else ()) + ((rest[0],) if relu else ())
        groups.append((members, bn, relu))
        i += len(members)
    return groups


def inference_path(module):
    """``module._infer_step`` (see :func:`run_sequence`), or None where ``module``'s class overrides
    ``forward`` below the class that defined that path: a subclass's own forward (a weight-standardised
    Conv2d, a scaled Linear) must run, not its base's path."""
    return module._infer_step if _forward_is_the_paths(type(module)) else None


# class -> the class defining its _infer_step. A plain dict (a weak one cost a fifth of a microsecond
# per layer and call on the batch-1 path); it keeps the layer classes seen alive, a few at most.
_PATH_OWNERS: dict = {}


def _forward_is_the_paths(cls) -> bool:
    """Whether ``cls``'s forward is that of the class defining its ``_infer_step`` (found once per class)."""
    owner = _PATH_OWNERS.get(cls)
    if owner is None:
        owner = _PATH_OWNERS[cls] = next(c for c in cls.__mro__ if "_infer_step" in c.__dict__)
    return cls.forward is owner.forward


def identity(x):
    """The step of a layer that is the identity at inference (Dropout in eval mode)."""
    return x


def run_step(module, x, bn=None, relu=False):
    """``module``'s inference step for the array ``x`` (``_infer_step``) run on ``x``: the output array,
    or None where the ordinary path must run."""
    path = module._infer_step  # None: the layer has none (a parametrized layer's class sets it so)
    step = None if path is None else path(x, bn, relu)
    return None if step is None else step(x)


def run_sequence(cache, x):
    """``x`` through a Sequential's children with nothing recorded; ``cache`` is the Sequential's
    ``[children, groups (from :func:`fusion_groups`), program]``.
    While the input is a host array, each group runs on arrays by its first member's step
    (:func:`inference_path`: ``_infer_step(x, bn, relu)`` gives the step, or None where the ordinary
    path must run) and only the result is wrapped in a Tensor. A group that cannot (a member with
    hooks, a training batch norm, a layer without that path, another device, an input the path does
    not take) runs each member the ordinary way on a Tensor. When every group ran as a step, the steps
    are kept as the program for that input (``(key, steps)``; see the module's docstring), which later
    calls run without looking at the layers."""
    arr = host_array(x)
    if arr is None:
        return _run_groups(cache[1], x, None, None)[0]
    program = cache[2]
    key = (arr.shape, arr.dtype, autograd._clock, autograd.module_changes)
    if program is not None and program[0] == key:
        y = arr
        for step in program[1]:
            y = step(y)
        return x if y is arr else Tensor._wrap(y)
    y, steps = _run_groups(cache[1], x, arr, [])
    cache[2] = None if steps is None else (key, steps)
    return y


def _run_groups(groups, x, arr, steps):
    """:func:`run_sequence` group by group, from ``x`` and its host array ``arr`` (None: none): the
    output and ``steps`` (a list, or None: not wanted) with the steps run appended, or None when a
    group ran another way or its step may not be kept (:func:`checks_contents`)."""
    for members, bn, relu in groups:
        if arr is not None:
            path = inference_path(members[0])
            foldable = bn is None or (not bn.training and still_foldable(members[0], bn))
            if path is not None and not hooked(members) and foldable:
                step = path(arr, bn, relu)
                if step is not None:
                    if steps is not None:
                        steps = None if checks_contents(members[0]) else steps + [step]
                    y = step(arr)
                    if y is not arr:  # x (None: not made yet) is the Tensor of arr
                        x, arr = None, y
                    continue
            if x is None:
                x = Tensor._wrap(arr)
        steps = None
        for m in members:
            x = m(x)
        arr = host_array(x)
    return (Tensor._wrap(arr) if x is None else x), steps


def infer_alone(module, input):
    """``module``'s inference step on ``input`` (a layer called alone, not fused) as a Tensor: None where the
    inference path does not take it (see :func:`host_array`) and the ordinary path must run."""
    x = host_array(input)
    y = None if x is None else run_step(module, x)
    return None if y is None else Tensor._wrap(y)


def infer(head, x):
    """Inference of ``head`` (a Conv2d or Linear) on ``x`` (an array from :func:`host_array`) as a
    Tensor, fused with the batch norm and ReLU that :func:`deepkern.nn.utils.fuse_modules` gave it
    where they can run fused (as in :func:`run_sequence`); those then pass the output through
    (:func:`passes_through`). None where the ordinary path must run."""
    fusion = head.__dict__.get(FUSION)
    if fusion is None:
        y = run_step(head, x)
        return None if y is None else Tensor._wrap(y)
    bn, relu, places = fusion
    if not all(getattr(parent(), name, None) is m for parent, name, m in places):
        del head.__dict__[FUSION]  # a fused module was replaced in the model: the fusion is over
        return None
    members = [m for m in (head, bn, relu) if m is not None]
    if hooked(members) or (bn is not None and (bn.training or not still_foldable(head, bn))):
        return None
    y = run_step(head, x, bn, relu is not None)
    if y is None:
        return None
    y = Tensor._wrap(y)
    ref = weakref.ref(y)
    for m in members[1:]:
        m.__dict__[FUSED_OUTPUT] = ref
    return y


def passes_through(module, input) -> bool:
    """Whether ``input`` is the output of the layer ``module`` was fused into, which already holds
    ``module``'s effect (see :func:`infer`)."""
    ref = module.__dict__.get(FUSED_OUTPUT)
    return ref is not None and ref() is input
