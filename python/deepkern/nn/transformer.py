"""Attention layers: ``MultiheadAttention`` and the Transformer stack (``TransformerEncoderLayer``,
``TransformerEncoder``, ``TransformerDecoderLayer``, ``TransformerDecoder``, ``Transformer``) with
PyTorch's constructor arguments, defaults, parameter names, initialisation and forward semantics,
so that a PyTorch state dict loads and gives the same outputs.

Everything is composed of differentiable Tensor ops (the projections and feed-forward layers on the
GEMM, softmax, layer norm and dropout kernels), so it runs on the inputs' device and trains through
autograd. With ``need_weights=False`` (what the Transformer layers ask for) the attention itself is
``functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

import copy
import math
import warnings
from itertools import chain

import numpy as np

from ..tensor import Tensor, arange, as_tensor, cat, zeros
from . import functional as F
from ._layer import check_float, describe, factory_kwargs
from .activation import GELU, Dropout, ReLU
from .init import constant_, xavier_normal_, xavier_uniform_
from .linear import Linear
from .module import Module, ModuleList, Parameter
from .normalization import LayerNorm

__all__ = [
    "MultiheadAttention",
    "Transformer",
    "TransformerEncoder",
    "TransformerDecoder",
    "TransformerEncoderLayer",
    "TransformerDecoderLayer",
]

_NEG_INF = float("-inf")


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------


def _mask_tensor(mask, name: str):
    """``mask`` (a Tensor or array-like, or None) as a Tensor; TypeError unless bool or float."""
    if mask is None:
        return None
    mask = mask if isinstance(mask, Tensor) else as_tensor(mask)
    if mask.dtype != bool and mask.dtype.kind != "f":
        raise TypeError(f"only bool and floating types of {name} are supported, got dtype {mask.dtype}")
    return mask


def _float_mask(mask, name: str, dtype, other=None, other_name: str = ""):
    """PyTorch's canonical form of an attention mask: a bool mask (True = masked out) becomes a float
    one of ``dtype`` with -inf where it was True; a float mask (added to the scores) is cast to
    ``dtype``. Warns, as PyTorch does, when ``other`` (the mask it is merged with) has another dtype."""
    mask, other = _mask_tensor(mask, name), _mask_tensor(other, other_name)
    if mask is None:
        return None
    if other is not None and other.dtype != mask.dtype:
        warnings.warn(
            f"Support for mismatched {name} and {other_name} is deprecated. Use same type for both instead.",
            stacklevel=3,
        )
    if mask.dtype == bool:
        return zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, _NEG_INF)
    return mask if mask.dtype == dtype else mask.to(dtype)


def _generate_square_subsequent_mask(sz: int, device=None, dtype=None) -> Tensor:
    """The ``(sz, sz)`` causal mask: -inf above the diagonal, 0 elsewhere (True/False for bool)."""
    rows = arange(sz, device=device)
    above = rows.unsqueeze(1) < rows
    dtype = np.dtype(np.float32 if dtype is None else dtype)
    if dtype == np.bool_:
        return above
    return zeros(sz, sz, dtype=dtype, device=above.device).masked_fill(above, _NEG_INF)


def _detect_is_causal_mask(mask, is_causal=None, size=None) -> bool:
    """``is_causal`` when given; else whether ``mask`` equals the causal mask of ``size`` (default:
    the mask's rows), as PyTorch's encoder and decoder decide it."""
    if is_causal is not None or mask is None:
        return is_causal is True
    mask = _mask_tensor(mask, "mask")
    causal = _generate_square_subsequent_mask(size if size is not None else mask.shape[-2], mask.device, mask.dtype)
    return mask.shape == causal.shape and bool((mask == causal).all())


def _seq_len(src, batch_first: bool) -> int:
    """The sequence length of ``src`` (2-D: unbatched ``(S, E)``; 3-D: batched)."""
    return src.shape[0] if src.ndim == 2 else src.shape[1 if batch_first else 0]


# ---------------------------------------------------------------------------------------------
# MultiheadAttention
# ---------------------------------------------------------------------------------------------


class MultiheadAttention(Module):
    """``num_heads`` heads of scaled dot-product attention over projections of query, key and
    value, concatenated and projected by ``out_proj``. Parameters as PyTorch's: ``in_proj_weight``
    ``(3 * embed_dim, embed_dim)`` when ``kdim`` and ``vdim`` equal ``embed_dim``, else
    ``q_proj_weight``, ``k_proj_weight``, ``v_proj_weight``; ``in_proj_bias`` ``(3 * embed_dim,)``
    and ``out_proj.bias`` when ``bias``; ``bias_k``/``bias_v`` ``(1, 1, embed_dim)`` with
    ``add_bias_kv``. Initialised xavier_uniform_ (projections), zero (biases), xavier_normal_
    (``bias_k``/``bias_v``); ``out_proj.weight`` keeps Linear's initialisation."""

    def __init__(
        self,
        embed_dim,
        num_heads,
        dropout=0.0,
        bias=True,
        add_bias_kv=False,
        add_zero_attn=False,
        kdim=None,
        vdim=None,
        batch_first=False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(
                f"MultiheadAttention: embed_dim and num_heads must be greater than 0, "
                f"got embed_dim={embed_dim} and num_heads={num_heads} instead"
            )
        if embed_dim % num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim must be divisible by num_heads, "
                f"got embed_dim={embed_dim} and num_heads={num_heads}"
            )
        factory = factory_kwargs("MultiheadAttention", dtype, device)
        self.embed_dim = int(embed_dim)
        self.kdim = int(kdim) if kdim is not None else self.embed_dim
        self.vdim = int(vdim) if vdim is not None else self.embed_dim
        self._qkv_same_embed_dim = self.kdim == self.embed_dim and self.vdim == self.embed_dim
        self.num_heads = int(num_heads)
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = self.embed_dim // self.num_heads

        def parameter(*shape):
            return Parameter(zeros(*shape, **factory))

        e = self.embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = parameter(3 * e, e)
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = parameter(e, e)
            self.k_proj_weight = parameter(e, self.kdim)
            self.v_proj_weight = parameter(e, self.vdim)
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = parameter(3 * e)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(e, e, bias=bias, **factory)
        if add_bias_kv:
            self.bias_k, self.bias_v = parameter(1, 1, e), parameter(1, 1, e)
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for w in (self.in_proj_weight, self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
            if w is not None:
                xavier_uniform_(w)
        if self.in_proj_bias is not None:
            constant_(self.in_proj_bias, 0.0)
            constant_(self.out_proj.bias, 0.0)
        for b in (self.bias_k, self.bias_v):
            if b is not None:
                xavier_normal_(b)

    def forward(
        self,
        query,
        key,
        value,
        key_padding_mask=None,
        need_weights=True,
        attn_mask=None,
        average_attn_weights=True,
        is_causal=False,
    ):
        """Query ``(L, N, E)`` (``(N, L, E)`` with ``batch_first``, ``(L, E)`` unbatched), key
        ``(S, N, kdim)`` and value ``(S, N, vdim)`` likewise; ``key_padding_mask`` ``(N, S)`` (``(S,)``
        unbatched) and ``attn_mask`` ``(L, S)`` or ``(N * num_heads, L, S)``, each bool (True = not
        attended) or float (added to the scores). Returns ``(output, weights)``: weights ``(N, L, S)``
        averaged over heads (``(N, num_heads, L, S)`` without ``average_attn_weights``), None
        without ``need_weights``. ``is_causal`` is a hint that ``attn_mask`` is the causal mask."""
        batched = self._check_inputs(query, key, value, key_padding_mask, attn_mask)
        self_attention = key is query and value is query
        if not batched:
            query, key, value = (x.unsqueeze(0) for x in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = _mask_tensor(key_padding_mask, "key_padding_mask").unsqueeze(0)
        elif not self.batch_first:
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        if self_attention:
            key = value = query
        output, weights = self._attend(
            query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal
        )
        if not batched:
            return output.squeeze(0), None if weights is None else weights.squeeze(0)
        return (output if self.batch_first else output.transpose(0, 1)), weights

    def _check_inputs(self, query, key, value, key_padding_mask, attn_mask) -> bool:
        """Whether the inputs are batched; ValueError/RuntimeError naming the argument whose
        dimensions, shape or dtype do not fit (PyTorch's checks, with the shapes)."""
        me = describe(self)
        dtype = self.out_proj.weight.dtype
        for x in (query, key, value):
            check_float(self, x, dtype)
        if query.ndim not in (2, 3):
            raise ValueError(
                f"{me}: query should be unbatched 2D or batched 3D tensor but received {query.ndim}-D query tensor"
            )
        batched = query.ndim == 3
        kind = "batched (3-D)" if batched else "unbatched (2-D)"
        if key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(
                f"{me}: for {kind} `query`, expected `key` and `value` to be {query.ndim}-D"
                f" but found {key.ndim}-D and {value.ndim}-D tensors respectively"
            )
        for name, x, size in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if x.shape[-1] != size:
                raise ValueError(
                    f"{me}: {name} has shape {tuple(x.shape)}, expected {size} features in its last dimension"
                )
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(
                f"{me}: key's sequence and batch dims {tuple(key.shape[:-1])} do not match value's "
                f"{tuple(value.shape[:-1])}"
            )
        seq, batch = (1, 0) if batched and self.batch_first else (0, 1)
        n = query.shape[batch] if batched else 1
        if batched and key.shape[batch] != n:
            raise ValueError(
                f"{me}: query has shape {tuple(query.shape)} and key {tuple(key.shape)}: their batch sizes differ"
            )
        L, S = query.shape[seq], key.shape[seq]
        if key_padding_mask is not None:
            expected = (n, S) if batched else (S,)
            kpm = _mask_tensor(key_padding_mask, "key_padding_mask")
            if tuple(kpm.shape) != expected:
                raise ValueError(
                    f"{me}: key_padding_mask has shape {tuple(kpm.shape)}, expected {expected} for query of shape "
                    f"{tuple(query.shape)} and key of shape {tuple(key.shape)}"
                )
        if attn_mask is not None:
            mask = _mask_tensor(attn_mask, "attn_mask")
            expected = (L, S) if mask.ndim == 2 else (n * self.num_heads, L, S)
            if mask.ndim not in (2, 3) or tuple(mask.shape) != expected:
                raise RuntimeError(
                    f"{me}: the shape of the {mask.ndim}D attn_mask is {tuple(mask.shape)}, but should be {expected} "
                    f"((L, S) or (N * num_heads, L, S))"
                )
        return batched

    def _projections(self, query, key, value, self_attention: bool):
        """q, k, v: the inputs ``(N, *, features)`` through the input projections."""
        if self.in_proj_bias is None:
            biases = (None, None, None)
        else:
            biases = self.in_proj_bias.chunk(3)
        if self._qkv_same_embed_dim:
            if self_attention:  # one GEMM for the three projections
                return F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
            weights = self.in_proj_weight.chunk(3)
        else:
            weights = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        return tuple(F.linear(x, w, b) for x, w, b in zip((query, key, value), weights, biases))

    def _attend(self, query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal):
        """The attention on batch-first inputs ``(N, L, E)``, ``(N, S, kdim)``, ``(N, S, vdim)``
        (PyTorch's ``multi_head_attention_forward``); masks as the caller gave them (unbatched ones
        with a batch of 1). Returns ``(output (N, L, E), weights or None)``."""
        n, length, e = query.shape
        heads, head_dim = self.num_heads, self.head_dim
        key_padding_mask = _float_mask(key_padding_mask, "key_padding_mask", query.dtype, attn_mask, "attn_mask")
        if is_causal and attn_mask is None:
            raise RuntimeError(
                "Need attn_mask if specifying the is_causal hint. You may use the Transformer module method "
                "`generate_square_subsequent_mask` to create this mask."
            )
        if is_causal and key_padding_mask is None and not need_weights:
            attn_mask = None  # the kernel applies the causal mask itself
        else:
            attn_mask = _float_mask(attn_mask, "attn_mask", query.dtype)
            is_causal = is_causal and key_padding_mask is None
        if attn_mask is not None:
            attn_mask = attn_mask.reshape(-1, heads if attn_mask.ndim == 3 else 1, length, attn_mask.shape[-1])
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.reshape(n, 1, 1, -1)

        q, k, v = self._projections(query, key, value, key is query and value is query)
        if self.bias_k is not None:
            k = cat([k, self.bias_k.expand(n, 1, e)], dim=1)
            v = cat([v, self.bias_v.expand(n, 1, e)], dim=1)
        q, k, v = (x.reshape(n, x.shape[1], heads, head_dim).transpose(1, 2) for x in (q, k, v))
        if self.add_zero_attn:
            k, v = F.pad(k, (0, 0, 0, 1)), F.pad(v, (0, 0, 0, 1))
        # bias_k and the zero key are attended by every query: a zero column in each mask.
        extra = k.shape[2] - key.shape[1]
        if extra:
            attn_mask, key_padding_mask = (
                None if m is None else F.pad(m, (0, extra)) for m in (attn_mask, key_padding_mask)
            )
        if key_padding_mask is not None:
            attn_mask = key_padding_mask if attn_mask is None else attn_mask + key_padding_mask

        dropout_p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = (q * math.sqrt(1.0 / head_dim)) @ k.transpose(-2, -1)
            if attn_mask is not None:
                scores = scores + attn_mask
            weights = F.softmax(scores, dim=-1)
            if dropout_p > 0:
                weights = F.dropout(weights, dropout_p)
            output = weights @ v
            if average_attn_weights:
                weights = weights.mean(dim=1)
        else:
            output = F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal)
        output = output.transpose(1, 2).reshape(n, length, e)
        return F.linear(output, self.out_proj.weight, self.out_proj.bias), weights


# ---------------------------------------------------------------------------------------------
# Transformer layers
# ---------------------------------------------------------------------------------------------


def _activation_fn(activation):
    """``"relu"``/``"gelu"`` as the functional, or a callable (a function or a Module) as given."""
    if isinstance(activation, str):
        if activation == "relu":
            return F.relu
        if activation == "gelu":
            return F.gelu
        raise RuntimeError(f"activation should be relu/gelu, not {activation}")
    if not callable(activation):
        raise TypeError(f"activation must be 'relu', 'gelu' or a callable, got {type(activation).__name__}")
    return activation


def _relu_or_gelu(activation) -> int:
    """PyTorch's ``activation_relu_or_gelu``: 1 for ReLU, 2 for GELU, 0 for anything else."""
    if activation is F.relu or isinstance(activation, ReLU):
        return 1
    if activation is F.gelu or isinstance(activation, GELU):
        return 2
    return 0


def _clones(module: Module, n: int) -> ModuleList:
    """``n`` independent copies of ``module`` (PyTorch deep-copies the layer given to an encoder
    or decoder); parameters and buffers are copied by the backend, on their device."""

    def copy_of(t):
        c = t.detach().clone()
        return Parameter(c, requires_grad=t.requires_grad) if isinstance(t, Parameter) else c

    def one():
        memo = {id(t): copy_of(t) for t in chain(module.parameters(), module.buffers())}
        return copy.deepcopy(module, memo)

    return ModuleList([one() for _ in range(n)])


class _TransformerLayer(Module):
    """What the encoder and decoder layers share: PyTorch's constructor arguments, their attention
    layers (``_attentions``: the names of the MultiheadAttention children), the feed-forward block
    (``linear1``, ``dropout``, ``linear2``), one LayerNorm (``norm1``, ...) and one Dropout
    (``dropout1``, ...) per block, and the activation."""

    _attentions: tuple = ()

    def __init__(
        self,
        d_model,
        nhead,
        dim_feedforward=2048,
        dropout=0.1,
        activation=F.relu,
        layer_norm_eps=1e-5,
        batch_first=False,
        norm_first=False,
        bias=True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        factory = factory_kwargs(type(self).__name__, dtype, device)
        for name in self._attentions:
            attention = MultiheadAttention(
                d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, **factory
            )
            setattr(self, name, attention)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **factory)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **factory)
        self.norm_first = norm_first
        blocks = range(1, len(self._attentions) + 2)
        for i in blocks:
            setattr(self, f"norm{i}", LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory))
        for i in blocks:
            setattr(self, f"dropout{i}", Dropout(dropout))
        self.activation = _activation_fn(activation)
        self.activation_relu_or_gelu = _relu_or_gelu(self.activation)

    def _attention_block(self, attn: MultiheadAttention, dropout: Dropout, x, mem, mask, padding, is_causal):
        x = attn(x, mem, mem, attn_mask=mask, key_padding_mask=padding, need_weights=False, is_causal=is_causal)[0]
        return dropout(x)

    def _ff_block(self, x, dropout: Dropout):
        return dropout(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def _residual(self, x, norm: LayerNorm, block):
        """``x + block(norm(x))`` with ``norm_first``, else ``norm(x + block(x))``."""
        return x + block(norm(x)) if self.norm_first else norm(x + block(x))


class TransformerEncoderLayer(_TransformerLayer):
    """Self-attention (``self_attn``) then a feed-forward block (``linear1``, activation,
    ``dropout``, ``linear2``), each with dropout (``dropout1``, ``dropout2``), a residual and a
    LayerNorm (``norm1``, ``norm2``): after the residual, or before the block with ``norm_first``."""

    _attentions = ("self_attn",)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        """src ``(S, N, E)`` (``(N, S, E)`` with ``batch_first``, ``(S, E)`` unbatched); ``src_mask``
        ``(S, S)`` or ``(N * nhead, S, S)``; ``src_key_padding_mask`` ``(N, S)``; bool or float."""
        src_key_padding_mask = _float_mask(
            src_key_padding_mask, "src_key_padding_mask", src.dtype, src_mask, "src_mask"
        )
        src_mask = _float_mask(src_mask, "src_mask", src.dtype)

        def sa_block(x):
            return self._attention_block(self.self_attn, self.dropout1, x, x, src_mask, src_key_padding_mask, is_causal)

        x = self._residual(src, self.norm1, sa_block)
        return self._residual(x, self.norm2, lambda x: self._ff_block(x, self.dropout2))


class TransformerDecoderLayer(_TransformerLayer):
    """Self-attention (``self_attn``), attention over the encoder's output (``multihead_attn``) and
    a feed-forward block, each with dropout (``dropout1..3``), a residual and a LayerNorm
    (``norm1..3``), before the block with ``norm_first``."""

    _attentions = ("self_attn", "multihead_attn")

    def forward(
        self,
        tgt,
        memory,
        tgt_mask=None,
        memory_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        tgt_is_causal=False,
        memory_is_causal=False,
    ):
        """tgt ``(T, N, E)`` and memory ``(S, N, E)`` (batch first with ``batch_first``; 2-D
        unbatched); ``tgt_mask`` ``(T, T)``, ``memory_mask`` ``(T, S)`` (or per head, 3-D); the
        padding masks ``(N, T)`` and ``(N, S)``."""

        def sa_block(x):
            return self._attention_block(
                self.self_attn, self.dropout1, x, x, tgt_mask, tgt_key_padding_mask, tgt_is_causal
            )

        def mha_block(x):
            return self._attention_block(
                self.multihead_attn, self.dropout2, x, memory, memory_mask, memory_key_padding_mask, memory_is_causal
            )

        x = self._residual(tgt, self.norm1, sa_block)
        x = self._residual(x, self.norm2, mha_block)
        return self._residual(x, self.norm3, lambda x: self._ff_block(x, self.dropout3))


class TransformerEncoder(Module):
    """``num_layers`` copies of ``encoder_layer`` (``layers``), then ``norm`` when given.
    ``enable_nested_tensor`` and ``mask_check`` are kept for PyTorch compatibility; deepkern has no
    nested tensors, so padded positions are computed like the others (not zeroed)."""

    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True, mask_check=True):
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm
        self.enable_nested_tensor = enable_nested_tensor
        self.use_nested_tensor = False
        self.mask_check = mask_check

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        """Runs the layers with ``mask`` and ``src_key_padding_mask``; ``is_causal=None`` detects
        whether ``mask`` is the causal mask."""
        src_key_padding_mask = _float_mask(src_key_padding_mask, "src_key_padding_mask", src.dtype, mask, "mask")
        mask = _float_mask(mask, "mask", src.dtype)
        batch_first = self.layers[0].self_attn.batch_first if len(self.layers) else False
        is_causal = _detect_is_causal_mask(mask, is_causal, _seq_len(src, batch_first))
        output = src
        for layer in self.layers:
            output = layer(output, src_mask=mask, is_causal=is_causal, src_key_padding_mask=src_key_padding_mask)
        return output if self.norm is None else self.norm(output)


class TransformerDecoder(Module):
    """``num_layers`` copies of ``decoder_layer`` (``layers``), then ``norm`` when given."""

    def __init__(self, decoder_layer, num_layers, norm=None):
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(
        self,
        tgt,
        memory,
        tgt_mask=None,
        memory_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        tgt_is_causal=None,
        memory_is_causal=False,
    ):
        """Runs the layers over ``tgt`` attending to ``memory``; ``tgt_is_causal=None`` detects
        whether ``tgt_mask`` is the causal mask."""
        batch_first = self.layers[0].self_attn.batch_first if len(self.layers) else False
        tgt_is_causal = _detect_is_causal_mask(tgt_mask, tgt_is_causal, _seq_len(tgt, batch_first))
        output = tgt
        for layer in self.layers:
            output = layer(
                output,
                memory,
                tgt_mask=tgt_mask,
                memory_mask=memory_mask,
                tgt_key_padding_mask=tgt_key_padding_mask,
                memory_key_padding_mask=memory_key_padding_mask,
                tgt_is_causal=tgt_is_causal,
                memory_is_causal=memory_is_causal,
            )
        return output if self.norm is None else self.norm(output)


class Transformer(Module):
    """An encoder (``num_encoder_layers`` layers and a final LayerNorm) and a decoder
    (``num_decoder_layers`` layers and a LayerNorm), or ``custom_encoder``/``custom_decoder``;
    every parameter of more than one dimension re-initialised xavier_uniform_."""

    def __init__(
        self,
        d_model=512,
        nhead=8,
        num_encoder_layers=6,
        num_decoder_layers=6,
        dim_feedforward=2048,
        dropout=0.1,
        activation=F.relu,
        custom_encoder=None,
        custom_decoder=None,
        layer_norm_eps=1e-5,
        batch_first=False,
        norm_first=False,
        bias=True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        layer_args = (
            d_model,
            nhead,
            dim_feedforward,
            dropout,
            activation,
            layer_norm_eps,
            batch_first,
            norm_first,
            bias,
        )
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            self.encoder = TransformerEncoder(
                TransformerEncoderLayer(*layer_args, **factory),
                num_encoder_layers,
                LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory),
            )
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            self.decoder = TransformerDecoder(
                TransformerDecoderLayer(*layer_args, **factory),
                num_decoder_layers,
                LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory),
            )
        self._reset_parameters()
        self.d_model = d_model
        self.nhead = nhead
        self.batch_first = batch_first

    def forward(
        self,
        src,
        tgt,
        src_mask=None,
        tgt_mask=None,
        memory_mask=None,
        src_key_padding_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        src_is_causal=None,
        tgt_is_causal=None,
        memory_is_causal=False,
    ):
        """src ``(S, N, E)`` and tgt ``(T, N, E)`` (batch first with ``batch_first``, 2-D unbatched)
        through the encoder and the decoder; the masks as the layers take them."""
        batch = 0 if self.batch_first else 1
        if src.ndim == 3 and src.shape[batch] != tgt.shape[batch]:
            raise RuntimeError(
                f"the batch number of src and tgt must be equal: src has shape {tuple(src.shape)}, "
                f"tgt {tuple(tgt.shape)} (batch_first={self.batch_first})"
            )
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise RuntimeError(
                f"the feature number of src and tgt must be equal to d_model={self.d_model}: src has shape "
                f"{tuple(src.shape)}, tgt {tuple(tgt.shape)}"
            )
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal)
        return self.decoder(
            tgt,
            memory,
            tgt_mask=tgt_mask,
            memory_mask=memory_mask,
            tgt_key_padding_mask=tgt_key_padding_mask,
            memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=tgt_is_causal,
            memory_is_causal=memory_is_causal,
        )

    @staticmethod
    def generate_square_subsequent_mask(sz, device=None, dtype=None) -> Tensor:
        """The ``(sz, sz)`` causal mask: -inf above the diagonal, 0 on and below it (float32 by
        default; a bool ``dtype`` gives True above the diagonal)."""
        return _generate_square_subsequent_mask(sz, device=device, dtype=dtype)

    def _reset_parameters(self) -> None:
        for p in self.parameters():
            if p.ndim > 1:
                xavier_uniform_(p)
