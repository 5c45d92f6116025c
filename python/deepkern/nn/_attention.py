"""``scaled_dot_product_attention`` on Tensors: the fused kernel of
:func:`deepkern.ops.scaled_dot_product_attention` forward and backward as one Function."""

from __future__ import annotations

import numpy as np

from .. import ops
from ..autograd import Function
from ..ops.attention import counters
from ..random import philox_seed_offset


class ScaledDotProductAttention(Function):
    """Saves the inputs, the output and each query's log-sum-exp; the backward recomputes the
    probabilities block by block from them (and dropout's mask from the same Philox seed and offset).
    A float mask that requires grad gets its gradient (the pre-softmax scores' gradient, summed over
    its broadcast dims), computed only then."""

    @staticmethod
    def forward(ctx, query, key, value, attn_mask, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        seed, offset = philox_seed_offset(0)  # the stream's position; advanced below by what dropout used
        options = {"dropout_p": dropout_p, "is_causal": is_causal, "scale": scale, "enable_gqa": enable_gqa}
        out, lse = ops.scaled_dot_product_attention(query, key, value, attn_mask, seed=seed, offset=offset, **options)
        if dropout_p > 0:
            philox_seed_offset(counters(lse.size * np.shape(key)[-2]))
        ctx.save_for_backward(query, key, value, out, lse, attn_mask)
        ctx.options = dict(options, seed=seed, offset=offset)
        return out

    @staticmethod
    def backward(ctx, g):
        query, key, value, out, lse, attn_mask = ctx.saved_tensors
        mask_grad = bool(ctx.needs_input_grad[3])
        grads = ops.scaled_dot_product_attention_backward(
            g, query, key, value, out, lse, attn_mask, mask_grad=mask_grad, **ctx.options
        )
        return grads if mask_grad else (*grads, None)


def scaled_dot_product_attention(
    query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False
):
    """``softmax(query @ key^T * scale + mask) @ value``, as
    ``torch.nn.functional.scaled_dot_product_attention``: see :mod:`deepkern.ops.attention` for the
    shapes, the mask (bool: True takes part; float: added), ``is_causal`` (query i sees keys j <= i),
    ``scale`` (default ``1 / sqrt(E)``) and ``enable_gqa``. A query with every key masked out gives 0
    (and zero gradients), as PyTorch's CPU kernel. Dropout (``dropout_p > 0``, applied whenever given,
    as PyTorch's function does) draws from deepkern's Philox state (``deepkern.manual_seed``). A float
    ``attn_mask`` Tensor that requires grad gets a gradient, as in PyTorch."""
    return ScaledDotProductAttention.apply(
        query,
        key,
        value,
        attn_mask,
        dropout_p=dropout_p,
        is_causal=is_causal,
        scale=scale,
        enable_gqa=enable_gqa,
    )
