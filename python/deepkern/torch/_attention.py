"""The custom operator of scaled dot-product attention (deepkern's fused CPU kernel), its backward
operator, fake functions and autograd formula."""

from __future__ import annotations

from typing import Optional

import torch

from .. import ops
from ..ops.attention import leading_dims
from ._ops import as_numpy, check_tensor, from_numpy

Tensor = torch.Tensor
_OP = "deepkern.torch.scaled_dot_product_attention"


def _shapes(query, key, value, enable_gqa) -> tuple:
    """(out's shape, lse's shape) of one call, from the operands' shapes alone."""
    for t, name in ((query, "query"), (key, "key"), (value, "value")):
        if t.dim() < 2:
            raise ValueError(f"{_OP}: {name} must have at least 2 dims (..., rows, features), got {tuple(t.shape)}")
    lead, _, _ = leading_dims(_OP, query.shape, key.shape, value.shape, enable_gqa)
    return lead + (query.shape[-2], value.shape[-1]), lead + (query.shape[-2],)


@torch.library.custom_op("deepkern::scaled_dot_product_attention", mutates_args=())
def _sdpa(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Optional[Tensor],
    dropout_p: float,
    is_causal: bool,
    scale: Optional[float],
    enable_gqa: bool,
    seed: int,
) -> tuple[Tensor, Tensor]:
    """deepkern's fused attention: (out, lse), lse each query's log-sum-exp for the backward."""
    op = "scaled_dot_product_attention"
    out, lse = ops.scaled_dot_product_attention(
        *(as_numpy(t, op) for t in (query, key, value)),
        attn_mask=as_numpy(attn_mask, op),
        dropout_p=dropout_p,
        is_causal=is_causal,
        scale=scale,
        enable_gqa=enable_gqa,
        seed=seed,
    )
    return from_numpy(out), from_numpy(lse)


@_sdpa.register_fake
def _(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, seed):
    out_shape, lse_shape = _shapes(query, key, value, enable_gqa)
    return query.new_empty(out_shape), query.new_empty(lse_shape)


@torch.library.custom_op("deepkern::scaled_dot_product_attention_backward", mutates_args=())
def _sdpa_backward(
    grad: Tensor,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    out: Tensor,
    lse: Tensor,
    attn_mask: Optional[Tensor],
    dropout_p: float,
    is_causal: bool,
    scale: Optional[float],
    enable_gqa: bool,
    seed: int,
    mask_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients (query, key, value, attn_mask) of deepkern::scaled_dot_product_attention's out; the
    mask's (a float mask's, its shape) only when mask_grad, else an empty tensor."""
    op = "scaled_dot_product_attention_backward"
    grads = ops.scaled_dot_product_attention_backward(
        *(as_numpy(t, op) for t in (grad, query, key, value, out, lse)),
        attn_mask=as_numpy(attn_mask, op),
        dropout_p=dropout_p,
        is_causal=is_causal,
        scale=scale,
        enable_gqa=enable_gqa,
        seed=seed,
        mask_grad=mask_grad,
    )
    grads = tuple(from_numpy(g) for g in grads)
    return grads if mask_grad else (*grads, query.new_empty(0))


@_sdpa_backward.register_fake
def _(grad, query, key, value, out, lse, attn_mask, dropout_p, is_causal, scale, enable_gqa, seed, mask_grad):
    dmask = attn_mask.new_empty(attn_mask.shape) if mask_grad else query.new_empty(0)
    return query.new_empty(query.shape), key.new_empty(key.shape), value.new_empty(value.shape), dmask


def _sdpa_setup(ctx, inputs, output):
    query, key, value, attn_mask, *options = inputs
    ctx.save_for_backward(query, key, value, attn_mask, *output)
    ctx.options = options


def _sdpa_grad(ctx, grad_out, grad_lse):
    query, key, value, attn_mask, out, lse = ctx.saved_tensors
    mask_grad = bool(ctx.needs_input_grad[3])
    *grads, dmask = _sdpa_backward(grad_out, query, key, value, out, lse, attn_mask, *ctx.options, mask_grad)
    return (*grads, dmask if mask_grad else None, *([None] * len(ctx.options)))


_sdpa.register_autograd(_sdpa_grad, setup_context=_sdpa_setup)


def scaled_dot_product_attention(
    query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False
) -> Tensor:
    """``torch.nn.functional.scaled_dot_product_attention`` on deepkern's fused kernel: query (..., L,
    E), key (..., S, E), value (..., S, Ev), a bool or additive float ``attn_mask`` broadcastable to
    (..., L, S), top-left ``is_causal``, ``scale`` (default 1/sqrt(E)), ``enable_gqa``; float32 or
    float64. Strided operands are made contiguous once. A float mask that requires grad gets its
    gradient (the pre-softmax scores' gradient, summed over its broadcast dims), computed only then.
    Dropout draws its mask from deepkern's counter-based generator, keyed by a seed taken from
    PyTorch's default generator, so ``torch.manual_seed`` repeats it and the backward sees the
    forward's mask. A query whose keys are all masked gets 0, as PyTorch's CPU kernel."""
    dtype = check_tensor("scaled_dot_product_attention", "query", query)
    for t, name in ((key, "key"), (value, "value")):
        check_tensor("scaled_dot_product_attention", name, t, dtype)
    if attn_mask is not None:
        if not isinstance(attn_mask, Tensor) or not (attn_mask.dtype == torch.bool or attn_mask.dtype == dtype):
            raise TypeError(f"{_OP}: attn_mask must be a bool tensor or a tensor of query's dtype {dtype}")
    seed = int(torch.randint(0, 2**62, (), dtype=torch.int64).item()) if dropout_p > 0 else 0
    scale = None if scale is None else float(scale)
    out, _ = _sdpa(query, key, value, attn_mask, float(dropout_p), bool(is_causal), scale, bool(enable_gqa), seed)
    return out
