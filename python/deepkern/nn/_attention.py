"""``scaled_dot_product_attention`` (``torch.nn.functional.scaled_dot_product_attention``) as a
composite of differentiable Tensor ops: matmul, the mask, softmax, dropout, matmul."""

from __future__ import annotations

import math

from ..tensor import Tensor, arange

__all__ = ["scaled_dot_product_attention"]


def scaled_dot_product_attention(
    query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False
):
    """``softmax(query @ key^T * scale + mask) @ value`` for query ``(..., L, E)``, key
    ``(..., S, E)`` and value ``(..., S, Ev)``. ``attn_mask`` broadcasts to ``(..., L, S)``: a
    boolean mask keeps the True positions, a float mask is added. ``is_causal`` lets query ``i``
    see keys ``j <= i`` (top-left aligned). ``scale`` defaults to ``1 / sqrt(E)``; with
    ``enable_gqa`` the key/value heads (dimension -3) are repeated to the query's. ``dropout_p``
    drops attention weights (always, as PyTorch does: pass 0 in evaluation). A row with every key
    masked gives NaN."""
    from . import functional as F

    if is_causal and attn_mask is not None:
        raise RuntimeError("scaled_dot_product_attention: an explicit attn_mask must not be given with is_causal=True")
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise ValueError(
            f"scaled_dot_product_attention: query, key and value need at least 2 dimensions, got shapes "
            f"{tuple(query.shape)}, {tuple(key.shape)} and {tuple(value.shape)}"
        )
    if enable_gqa:
        key, value = _repeat_heads(key, query.shape[-3]), _repeat_heads(value, query.shape[-3])
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = (query @ key.transpose(-2, -1)) * scale
    if is_causal:
        rows, cols = (arange(n, device=query.device) for n in scores.shape[-2:])
        scores = scores.masked_fill(rows.unsqueeze(1) < cols, float("-inf"))
    elif attn_mask is not None:
        if attn_mask.dtype == bool:
            scores = scores.masked_fill(attn_mask.logical_not(), float("-inf"))
        else:
            scores = scores + attn_mask
    weights = F.softmax(scores, dim=-1)
    if dropout_p > 0:
        weights = F.dropout(weights, dropout_p, training=True)
    return weights @ value


def _repeat_heads(x: Tensor, heads: int) -> Tensor:
    """``x`` ``(..., Hk, S, E)`` with each head repeated to give ``heads`` heads (``Hk`` divides it)."""
    hk = x.shape[-3]
    if heads % hk:
        raise RuntimeError(f"scaled_dot_product_attention: key/value heads {hk} must divide query heads {heads}")
    lead, tail = x.shape[:-3], x.shape[-2:]
    return x.unsqueeze(-3).expand(*lead, hk, heads // hk, *tail).reshape(*lead, heads, *tail)
