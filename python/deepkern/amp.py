"""Automatic mixed precision, with PyTorch's API (``torch.amp``): :class:`autocast` and
:class:`GradScaler`.

Inside ``with deepkern.autocast("cpu"):`` each differentiable op looks up its class in
:data:`POLICY` as it is applied (``autograd.Function.apply`` calls :func:`cast_arguments`, the one
place where ops consult the policy) and casts its floating Tensor arguments on the autocast's
device first:

* ``"lower_precision"`` ops (the GEMM-based ones: linear, matmul/@/bmm, convolutions, the recurrent
  layers and cells, attention, prelu) take bfloat16 inputs and return bfloat16; float64 inputs
  are left alone, as in PyTorch;
* ``"float32"`` ops (softmax and log_softmax, the norms, the losses, sum/mean/cumsum/norms,
  exp/log/pow) take bfloat16 (and float16) inputs up to float32;
* ``"promote"`` ops (cat, stack, where, scatter) take every floating input to the widest type
  among them;
* any other op runs on its inputs as they are (binary arithmetic promotes as NumPy does).

The casts are ordinary differentiable casts, so float32 parameters stay float32 and get float32
gradients (master weights). With ``cache_enabled`` the bfloat16 copy of a float32 leaf that requires
grad (a parameter) is made once per autocast region (again after an in-place change of the
parameter) and forgotten when the outermost region exits.

Autocast state is per thread: a region opened in one thread does not affect another.
"""

from __future__ import annotations

import functools
import math
import threading

import numpy as np

from . import autograd
from .autograd import is_grad_enabled, no_grad, version_of
from .ops._validate import bfloat16_dtype, is_bfloat16, is_floating_dtype
from .tensor import Tensor

__all__ = ["autocast", "autocast_entry", "GradScaler", "POLICY", "is_autocast_enabled", "get_autocast_dtype"]

LOWER_PRECISION, FLOAT32, PROMOTE = "lower_precision", "float32", "promote"

# The ops' Functions (or entry points, see autocast_entry) by policy, following PyTorch's autocast
# op lists for the ops deepkern has (the float32 list is the CUDA one, which also keeps softmax, the
# norms and reductions in float32).
_POLICY_LISTS = {
    LOWER_PRECISION: (
        "nn.functional.Linear",
        "tensor_ops.MatMul",
        "nn.functional.Conv2d",
        "nn.functional.ConvTranspose2d",
        "nn.functional.Prelu",
        "nn._attention.ScaledDotProductAttention",
        "nn.rnn._LSTMLayer",
        "nn.rnn._Layer",
        "nn.rnn._LSTMCellStep",
    ),
    FLOAT32: (
        "nn.functional.Softmax",
        "nn.functional.BatchNorm",
        "nn.functional.RowNorm",
        "nn.functional.VectorNorm",
        "nn.loss._difference",  # the losses' entry points (autocast_entry): mse, l1, smooth l1, huber
        "nn.loss._classification",  # cross entropy, nll
        "nn.loss._bce_with_logits",
        "nn.loss._bce",
        "nn.loss._kl_div",
        "nn.loss._PairwiseDistance",  # and triplet margin loss through it
        "nn.loss._soft_margin",
        "nn.loss._multi_margin",
        "nn.loss._multilabel_margin",
        "tensor_ops.Sum",
        "tensor_ops.Prod",
        "tensor_ops.Mean",
        "tensor_ops.Cumsum",
        "tensor_ops.Norm",
        "tensor_ops.Exp",
        "tensor_ops.Log",
        "tensor_ops.Pow",
    ),
    PROMOTE: ("tensor_ops.Cat", "tensor_ops.Stack", "tensor_ops.Where", "tensor_ops.Scatter"),
}
#: The autocast policy of each op, by its Function's module-qualified class name (or its entry
#: point's function name).
POLICY = {f"deepkern.{name}": policy for policy, names in _POLICY_LISTS.items() for name in names}

_DEVICE_TYPES = ("cpu", "cuda")
_FLOAT32 = np.dtype(np.float32)


class _State(threading.local):
    """This thread's autocast state: the lower-precision dtype per enabled device type, whether
    casts are cached, the regions open and the cache (id -> (tensor, version, grad mode, cast))."""

    def __init__(self):
        self.dtypes = {}
        self.cache_enabled = True
        self.depth = 0
        self.cache = {}


_state = _State()
_open_lock = threading.Lock()  # guards autograd.AUTOCAST's count of regions open in all threads


def is_autocast_enabled(device_type: str = "cpu") -> bool:
    """Whether autocast is on for ``device_type`` in this thread."""
    return device_type in _state.dtypes


def get_autocast_dtype(device_type: str = "cpu"):
    """The lower-precision dtype of ``device_type``'s autocast (bfloat16, also while it is off)."""
    dtype = _state.dtypes.get(device_type)
    return bfloat16_dtype() if dtype is None else dtype


class autocast:
    """Context manager and decorator: inside it, ops on ``device_type`` ("cpu" or "cuda") tensors
    run in ``dtype`` (bfloat16, the one lower precision deepkern computes in) or float32 as
    :data:`POLICY` says (see the module's documentation). ``enabled=False`` turns autocast off
    inside an enclosing region; regions nest and restore the state they found on exit. Thread-local."""

    def __init__(self, device_type: str = "cpu", dtype=None, enabled: bool = True, cache_enabled=None):
        if device_type not in _DEVICE_TYPES:
            raise ValueError(f"autocast: device_type must be one of {_DEVICE_TYPES}, got {device_type!r}")
        dtype = bfloat16_dtype() if dtype is None else np.dtype(dtype)
        if not is_bfloat16(dtype):
            raise TypeError(f"autocast: dtype must be deepkern.bfloat16, got {dtype}")
        for name, flag in (("enabled", enabled), ("cache_enabled", cache_enabled)):
            if not isinstance(flag, bool) and not (name == "cache_enabled" and flag is None):
                raise TypeError(f"autocast: {name} must be a bool, got {flag!r}")
        self.device_type, self.fast_dtype, self.enabled = device_type, dtype, enabled
        self._cache_enabled = cache_enabled
        self._saved = []  # the states this object's open regions replaced (innermost last)

    def __enter__(self):
        state = _state
        self._saved.append((state.dtypes.get(self.device_type), state.cache_enabled))
        if self.enabled:
            state.dtypes[self.device_type] = self.fast_dtype
        else:
            state.dtypes.pop(self.device_type, None)
        if self._cache_enabled is not None:
            state.cache_enabled = self._cache_enabled
        state.depth += 1
        with _open_lock:
            autograd.AUTOCAST[0] += 1
        return self

    def __exit__(self, *exc):
        state = _state
        dtype, state.cache_enabled = self._saved.pop()
        if dtype is None:
            state.dtypes.pop(self.device_type, None)
        else:
            state.dtypes[self.device_type] = dtype
        state.depth -= 1
        if state.depth == 0:
            state.cache.clear()
        with _open_lock:
            autograd.AUTOCAST[0] -= 1
        return False

    def __call__(self, fn):
        """``fn`` run inside a region with this object's settings (a new one per call)."""

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with autocast(self.device_type, self.fast_dtype, self.enabled, self._cache_enabled):
                return fn(*args, **kwargs)

        return wrapper


_policies = {}  # Function class -> its policy (None: no casts), resolved on first use


def _policy_of(cls):
    try:
        return _policies[cls]
    except KeyError:
        policy = _policies[cls] = POLICY.get(f"{cls.__module__}.{cls.__qualname__}")
        return policy


def cast_arguments(cls, args: tuple) -> tuple:
    """``args`` of Function ``cls`` cast as this thread's autocast and :data:`POLICY` say. Called
    by ``Function.apply`` while an autocast region is open in some thread."""
    return _cast(_policy_of(cls), args)


def autocast_entry(fn):
    """Decorator for an op's entry point that checks its arguments before applying its Function
    (the losses): its positional Tensor arguments are cast as :data:`POLICY` says for the entry's
    module-qualified name before the checks see them."""
    policy = POLICY[f"{fn.__module__}.{fn.__qualname__}"]

    @functools.wraps(fn)
    def entry(*args, **kwargs):
        if autograd.AUTOCAST[0]:
            args = _cast(policy, args)
        return fn(*args, **kwargs)

    return entry


def _cast(policy, args: tuple) -> tuple:
    """``args`` with their floating Tensors cast as ``policy`` and this thread's autocast say (the
    same tuple when nothing changes)."""
    state = _state
    if policy is None or not state.dtypes:
        return args
    targets = [_target(a, policy, state) if isinstance(a, Tensor) else None for a in args]
    if policy == PROMOTE:
        kinds = {t for t in targets if t is not None}
        widest = max(kinds, key=lambda d: d.itemsize) if kinds else None
        if widest is not None and len(kinds) > 1 and widest.itemsize == 2:  # bfloat16 with float16
            widest = _FLOAT32
        targets = [widest if t is not None else None for t in targets]
    if all(t is None or t == a.dtype for t, a in zip(targets, args)):
        return args
    return tuple(a if t is None or t == a.dtype else _cast_tensor(a, t, state) for t, a in zip(targets, args))


autograd.AUTOCAST[1] = cast_arguments


def _casts(function) -> bool:
    """Whether this thread's autocast is on and (``function`` given) its policy names that Function."""
    return bool(_state.dtypes) and (function is None or _policy_of(function) is not None)


autograd.AUTOCAST[2] = _casts


def _target(t: Tensor, policy: str, state):
    """The dtype ``policy`` wants for Tensor ``t`` (None: ``t`` is not cast: not floating, or not on
    a device with autocast on); for PROMOTE, ``t``'s own floating dtype."""
    dtype = t.dtype
    if not is_floating_dtype(dtype):
        return None
    device_type = "cpu" if type(t._array) is np.ndarray else t.device.type
    lower = state.dtypes.get(device_type)
    if lower is None:
        return None
    if policy == LOWER_PRECISION:
        return lower if dtype.itemsize < 8 else None
    if policy == FLOAT32:
        return _FLOAT32 if dtype.itemsize < 4 else None
    return dtype


def _cast_tensor(t: Tensor, dtype, state) -> Tensor:
    """``t.to(dtype)``, through the region's cache for a float32 leaf that requires grad: a cached
    cast is reused while ``t`` has not been written in place, the grad mode is the same and no
    backward pass has freed the cast's node."""
    if not (state.cache_enabled and t.requires_grad and t.is_leaf and t.dtype == _FLOAT32 and dtype != _FLOAT32):
        return t.to(dtype)
    key, version, grad_mode = id(t), version_of(t._array), is_grad_enabled()
    hit = state.cache.get(key)
    if hit is not None and hit[0] is t and hit[1] == version and hit[2] == grad_mode and hit[3].dtype == dtype:
        node = hit[3]._node
        if node is None or not node.ctx._released:
            return hit[3]
    cast = t.to(dtype)
    state.cache[key] = (t, version, grad_mode, cast)
    return cast


# ---------------------------------------------------------------------------------------------
# GradScaler
# ---------------------------------------------------------------------------------------------

_READY, _UNSCALED, _STEPPED = "ready", "unscaled", "stepped"


class GradScaler:
    """Dynamic loss scaling, as ``torch.amp.GradScaler``: :meth:`scale` multiplies the loss by the
    scale before backward; :meth:`step` unscales the optimizer's gradients (unless :meth:`unscale_`
    did) and skips ``optimizer.step()`` when one of them is inf or NaN; :meth:`update` then
    multiplies the scale by ``backoff_factor`` after a skipped step, or by ``growth_factor`` after
    ``growth_interval`` steps in a row without one. The scale is float32 arithmetic, as PyTorch's.
    With bfloat16 (float32's exponent range) scaling is rarely needed; ``enabled=False`` makes every
    method a pass-through."""

    def __init__(
        self,
        device: str = "cpu",
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        enabled: bool = True,
    ):
        if not isinstance(enabled, bool):
            raise TypeError(f"GradScaler: enabled must be a bool, got {enabled!r}")
        checks = (
            ("init_scale", init_scale, init_scale > 0),
            ("growth_factor", growth_factor, growth_factor > 1.0),
            ("backoff_factor", backoff_factor, 0.0 < backoff_factor < 1.0),
            ("growth_interval", growth_interval, isinstance(growth_interval, int) and growth_interval > 0),
        )
        for name, value, ok in checks:
            if not ok:
                raise ValueError(f"GradScaler: {name} out of range, got {value!r}")
        self.device = device
        self._enabled = enabled
        self._scale = np.float32(init_scale)
        self._growth_factor, self._backoff_factor = float(growth_factor), float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._growth_tracker = 0
        self._per_optimizer = {}  # id(optimizer) -> {"stage": ..., "found_inf": bool}

    def is_enabled(self) -> bool:
        return self._enabled

    def get_scale(self) -> float:
        """The current scale (1.0 when disabled)."""
        return float(self._scale) if self._enabled else 1.0

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        self._growth_interval = int(new_interval)

    def scale(self, outputs):
        """``outputs`` (a Tensor, or lists/tuples of them) times the scale, in float32 at least (PyTorch's
        scale is a float32 tensor: a bfloat16 loss is scaled in float32)."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, Tensor):
            return (outputs.float() if outputs.dtype.itemsize < 4 else outputs) * self._scale
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        raise TypeError(
            f"GradScaler.scale: outputs must be a Tensor or a list/tuple of them, got {type(outputs).__name__}"
        )

    def _state_of(self, optimizer) -> dict:
        return self._per_optimizer.setdefault(id(optimizer), {"stage": _READY, "found_inf": False})

    def unscale_(self, optimizer) -> None:
        """Divides ``optimizer``'s gradients by the scale in place (e.g. before clipping them) and
        records whether one of them is inf or NaN; once per optimizer between updates."""
        if not self._enabled:
            return
        state = self._state_of(optimizer)
        if state["stage"] == _UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update().")
        if state["stage"] == _STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        inv_scale = np.float32(1.0 / np.float64(self._scale))  # as PyTorch: the reciprocal in double
        found_inf = False
        with no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    g = p.grad
                    found_inf = found_inf or not bool(np.isfinite(g._array).all())
                    g.mul_(float(inv_scale))
        state["found_inf"], state["stage"] = found_inf, _UNSCALED

    def step(self, optimizer, *args, **kwargs):
        """``optimizer.step(*args, **kwargs)`` on the unscaled gradients, skipped (None returned)
        when one of them is inf or NaN."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        state = self._state_of(optimizer)
        if state["stage"] == _STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if state["stage"] == _READY:
            self.unscale_(optimizer)
        result = None if state["found_inf"] else optimizer.step(*args, **kwargs)
        state["stage"] = _STEPPED
        return result

    def update(self, new_scale=None) -> None:
        """Sets the scale for the next iteration: ``new_scale`` when given, else the dynamic rule
        over the inf checks of the optimizers stepped or unscaled since the last update."""
        if not self._enabled:
            return
        if new_scale is not None:
            value = new_scale.item() if isinstance(new_scale, Tensor) else new_scale
            if not isinstance(value, (int, float, np.floating)) or not value > 0:
                raise ValueError(f"GradScaler.update: new_scale must be a positive number, got {new_scale!r}")
            self._scale = np.float32(value)
        else:
            checked = [s for s in self._per_optimizer.values() if s["stage"] != _READY]
            if not checked:
                raise RuntimeError("GradScaler.update: no inf checks were recorded prior to update.")
            if any(s["found_inf"] for s in checked):
                self._scale = np.float32(self._scale * np.float32(self._backoff_factor))
                self._growth_tracker = 0
            else:
                self._growth_tracker += 1
                if self._growth_tracker == self._growth_interval:
                    grown = np.float32(self._scale * np.float32(self._growth_factor))
                    if math.isfinite(grown):
                        self._scale = grown
                    self._growth_tracker = 0
        self._per_optimizer.clear()

    def state_dict(self) -> dict:
        """The scale, factors, interval and growth tracker (empty when disabled), as PyTorch's."""
        if not self._enabled:
            return {}
        return {
            "scale": self.get_scale(),
            "growth_factor": self._growth_factor,
            "backoff_factor": self._backoff_factor,
            "growth_interval": self._growth_interval,
            "_growth_tracker": self._growth_tracker,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError(
                "The source state dict is empty, possibly because it was saved from a disabled instance of GradScaler."
            )
        self._scale = np.float32(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = int(state_dict["_growth_tracker"])
