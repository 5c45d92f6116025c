"""``Muon`` with ``torch.optim.Muon``'s options, defaults, checks, state (``momentum_buffer``) and update
rule: SGD momentum (Nesterov's by default) whose update is orthogonalized by torch's quintic
Newton-Schulz iteration before decoupled weight decay and a shape-adjusted learning rate. For 2-D
parameters only, as torch's.

torch runs the iteration in bfloat16; here it runs on float32 tensors rounded to bfloat16 wherever
torch's tensors are (each product summed in float32 and rounded once, as torch's bfloat16 ``addmm``),
so the orthogonalized update is torch's but where the two float32 sums round across a bfloat16
boundary (a last-bit difference that the next iterations spread over a few ulp)."""

from __future__ import annotations

import math

import numpy as np

from ..ops._validate import bfloat16_dtype
from ..tensor import Tensor
from .adaptive import _lerp_
from .optimizer import Optimizer

__all__ = ["Muon"]

# Keller Jordan's constants, as torch's
EPS = 1e-7
DEFAULT_A = 3.4445
DEFAULT_B = -4.7750
DEFAULT_C = 2.0315
DEFAULT_NS_STEPS = 5


def _bf16(t: Tensor) -> Tensor:
    """``t`` (float32) rounded to bfloat16's values, kept in float32."""
    return t.to(bfloat16_dtype()).float()


def _bf16_number(x: float) -> float:
    """``x`` rounded to float32, then to bfloat16."""
    return float(np.float32(x).astype(bfloat16_dtype()))


def _zeropower_via_newtonschulz(grad: Tensor, ns_coefficients, ns_steps: int, eps: float) -> Tensor:
    """torch's Newton-Schulz orthogonalization of the 2-D ``grad`` (``ns_steps`` quintic iterations with
    coefficients ``(a, b, c)`` after scaling ``grad`` to Frobenius norm 1), in bfloat16's precision as a
    float32 tensor (see the module docstring)."""
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if len(grad.shape) != 2:
        raise ValueError("Input tensor gradient must be a 2D matrix")
    if len(ns_coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    a, b, c = ns_coefficients
    x = _bf16(grad.float())  # a float64 value is rounded to float32 first, as torch's cast
    tall = grad.shape[0] > grad.shape[1]
    if tall:
        x = x.T
    x = _bf16(x / _bf16_number(max(_bf16_number(x.norm().item()), eps)))
    for _ in range(ns_steps):
        gram = _bf16(x @ x.T)
        gram_update = _bf16(gram * b + (gram @ gram) * c)
        x = _bf16(x * a + gram_update @ x)
    return x.T if tall else x


def _adjust_lr(lr: float, adjust_lr_fn, param_shape) -> float:
    """``lr`` scaled for the parameter's shape ``(A, B)``: ``sqrt(max(1, A / B))`` (``"original"``,
    the default) or ``0.2 * sqrt(max(A, B))`` (``"match_rms_adamw"``)."""
    A, B = param_shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        ratio = math.sqrt(max(1, A / B))
    elif adjust_lr_fn == "match_rms_adamw":
        ratio = 0.2 * math.sqrt(max(A, B))
    else:
        ratio = 1.0
    return lr * ratio


class Muon(Optimizer):
    """Muon (Jordan et al.): ``buf = lerp(buf, grad, 1 - momentum)``; the update ``lerp(grad, buf,
    momentum)`` (``nesterov``) or ``buf``, orthogonalized (``ns_steps`` Newton-Schulz iterations with
    ``ns_coefficients``, ``eps`` guarding the normalization); ``p *= 1 - lr * weight_decay``;
    ``p -= adjusted_lr * update`` with ``adjust_lr_fn`` ``"original"`` (None) or ``"match_rms_adamw"``.
    Optimize other parameters (biases, embeddings) with another optimizer, such as AdamW."""

    _state_names = frozenset({"momentum_buffer"})

    def __init__(
        self,
        params,
        lr=1e-3,
        weight_decay=0.1,
        momentum=0.95,
        nesterov=True,
        ns_coefficients=(DEFAULT_A, DEFAULT_B, DEFAULT_C),
        eps=EPS,
        ns_steps=DEFAULT_NS_STEPS,
        adjust_lr_fn=None,
    ):
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 <= momentum:
            raise ValueError(f"momentum should be >= 0 but is: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
        if adjust_lr_fn is not None and adjust_lr_fn not in ["original", "match_rms_adamw"]:
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_coefficients": ns_coefficients,
            "eps": eps,
            "ns_steps": ns_steps,
            "adjust_lr_fn": adjust_lr_fn,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(
                        f"Muon only supports 2D parameters whereas we found a parameter with size: {p.size()}"
                    )

    def _step_group(self, group, params, param_arrays, grad_arrays):
        lr, momentum = group["lr"], group["momentum"]
        buffers = [self._state_array(self.state[p], "momentum_buffer", p) for p in params]
        for param, grad, buf in zip(param_arrays, grad_arrays, buffers):
            if grad.ndim != 2:
                raise ValueError("Param gradient must be a 2D matrix")
            _lerp_(buf, grad, 1 - momentum)
            if group["nesterov"]:
                update = grad.copy()
                _lerp_(update, buf, momentum)
            else:
                update = buf
            ortho = _zeropower_via_newtonschulz(
                Tensor._wrap(update), group["ns_coefficients"], group["ns_steps"], group["eps"]
            )
            adjusted_lr = _adjust_lr(lr, group["adjust_lr_fn"], param.shape)
            param *= 1 - lr * group["weight_decay"]
            param += (-adjusted_lr) * ortho._array.astype(param.dtype, copy=False)
