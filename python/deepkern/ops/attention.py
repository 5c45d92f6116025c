"""Scaled dot-product attention, fused and memory-efficient: ``scaled_dot_product_attention`` and
its backward, with the semantics of ``torch.nn.functional.scaled_dot_product_attention``.

``query (..., L, E)``, ``key (..., S, E)``, ``value (..., S, Ev)`` give ``softmax(query key^T * scale
+ mask) value`` of shape ``(..., L, Ev)``; the leading dims broadcast against each other (and
against the mask's), and with ``enable_gqa`` the key and value heads (dim -3) may divide the query
heads (query head ``h`` reads key head ``h // (Hq / Hk)``, as ``repeat_interleave``). ``attn_mask``
is bool (True: the key takes part) or an additive float mask, broadcastable to ``(..., L, S)``;
``is_causal`` lets query ``i`` see keys ``j <= i`` (top-left aligned); ``scale`` defaults to
``1 / sqrt(E)``. A query whose keys are all masked out gets an output of 0 and zero gradients, as
PyTorch's CPU kernel gives.

The kernel (csrc/cpu/attention/) walks blocks of keys with an online softmax and keeps only the
output and each row's log-sum-exp ``lse``, which the backward uses to recompute the probabilities:
no ``L x S`` matrix is held. Dropout draws element ``(n, i, j)`` of the ``(N, L, S)`` attention
matrix (``N`` the flattened leading dims) from the Philox stream of ``(seed, offset)`` as
:mod:`deepkern.ops.dropout` does, so the backward regenerates the forward's mask; a call consumes
:func:`counters` ``(N * L * S)`` counters. Asked for a float mask's gradient, the backward also adds
the scores' gradients into one (Lm, Sm) matrix per problem (the mask's rows and columns, 1 where it
broadcasts), then sums those, in a fixed order, over the problems that share a mask matrix.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..backends import as_array, backend_of
from ._validate import as_float_array, check_scalar
from .dropout import _uint64, counters

__all__ = ["scaled_dot_product_attention", "scaled_dot_product_attention_backward", "counters"]

_BOOL = np.dtype(np.bool_)


class _Plan(NamedTuple):
    """A call's arguments as the kernels take them: (N, rows, cols) matrices and index maps."""

    backend: object
    lead: tuple  # the output's leading dims; N = prod(lead)
    n_q: int
    s: int
    q: object  # (N, L, E), contiguous
    q_index: np.ndarray  # the query matrix each problem reads (identity unless q is broadcast)
    shapes: tuple  # query's, key's and value's
    k: object  # (Nk, S, E)
    k_index: np.ndarray
    v: object  # (Nv, S, Ev)
    v_index: np.ndarray
    mask: object  # None or (Nm, L or 1, S or 1), additive, q's dtype
    mask_index: object
    scale: float
    causal: bool
    dropout_p: float
    seed: int
    offset: int

    def kernel_args(self):
        return (self.q, self.k, self.v, self.k_index, self.v_index, self.mask, self.mask_index)

    def options(self):
        return (self.scale, self.causal, self.dropout_p, self.seed, self.offset)


def _index_map(lead_x: tuple, lead: tuple, group: int) -> np.ndarray:
    """For each position of ``lead`` (C order), the matrix of an operand with leading dims ``lead_x``
    it reads: ``lead_x`` broadcast to ``lead`` after its last axis (heads) is repeated ``group`` times."""
    index = np.arange(math.prod(lead_x), dtype=np.int64).reshape(lead_x)
    if group > 1:
        index = np.repeat(index, group, axis=-1)
    return np.ascontiguousarray(np.broadcast_to(index, lead).reshape(-1))


def _stacked(x):
    """``x (..., rows, cols)`` as one stack of matrices ``(prod(...), rows, cols)``."""
    return x.reshape((math.prod(x.shape[:-2]),) + x.shape[-2:])


def _heads_group(op, lq, lx, name, enable_gqa) -> int:
    """How many query heads share one head of ``name`` (1 unless enable_gqa and they differ)."""
    if not enable_gqa or not lq or not lx or lx[-1] == lq[-1]:
        return 1
    if lx[-1] == 0 or lq[-1] % lx[-1]:
        raise ValueError(
            f"{op}: with enable_gqa the number of heads in {name} ({lx[-1]}) must divide the number of heads "
            f"in query ({lq[-1]})"
        )
    return lq[-1] // lx[-1]


def _mask_matrices(op, attn_mask, dtype, lead, n_q, s, backend):
    """The mask as (Nm, L or 1, S or 1) additive matrices of ``dtype`` and their index map."""
    attn_mask = as_array(attn_mask)  # arrays of any backend, Tensors (their arrays) and host data
    if attn_mask.dtype == _BOOL:
        mask = np.where(attn_mask, dtype.type(0), dtype.type(-np.inf)).astype(dtype, copy=False)
    elif attn_mask.dtype.kind == "f":
        mask = attn_mask.astype(dtype, copy=False)
    else:
        raise TypeError(f"{op}: attn_mask must be bool or a float dtype, got dtype {attn_mask.dtype}")
    shape = (1,) * (2 - mask.ndim) + tuple(mask.shape)
    rows, cols = shape[-2:]
    try:
        fits = np.broadcast_shapes(shape[:-2], lead) == lead and rows in (1, n_q) and cols in (1, s)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{op}: attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to {lead + (n_q, s)}")
    matrices = backend.ascontiguousarray(_stacked(mask.reshape(shape)))
    return matrices, _index_map(shape[:-2], lead, 1)


def leading_dims(op, q_shape, k_shape, v_shape, enable_gqa) -> tuple:
    """The problems' leading dims (the broadcast of the operands', key and value heads repeated
    under ``enable_gqa``) and how many query heads share a key head and a value head, from the
    operands' shapes alone (``deepkern.torch``'s shape functions use it too)."""
    lq, lk, lv = tuple(q_shape[:-2]), tuple(k_shape[:-2]), tuple(v_shape[:-2])
    group_k, group_v = (_heads_group(op, lq, lx, name, enable_gqa) for lx, name in ((lk, "key"), (lv, "value")))
    lk_heads = lk[:-1] + (lk[-1] * group_k,) if lk else lk
    lv_heads = lv[:-1] + (lv[-1] * group_v,) if lv else lv
    try:
        lead = tuple(np.broadcast_shapes(lq, lk_heads, lv_heads))
    except ValueError:
        raise ValueError(
            f"{op}: the leading dims of query {tuple(q_shape)}, key {tuple(k_shape)} and value {tuple(v_shape)} "
            "do not broadcast"
        ) from None
    return lead, group_k, group_v


def _plan(op, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, seed, offset) -> _Plan:
    """Checks a call's arguments (TypeError / ValueError naming them) and lays them out for the kernels."""
    q, k, v = (as_float_array(x, name, op) for x, name in ((query, "query"), (key, "key"), (value, "value")))
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"{op}: query, key and value must have one dtype, got {q.dtype}, {k.dtype} and {v.dtype}")
    for x, name in ((q, "query"), (k, "key"), (v, "value")):
        if x.ndim < 2:
            raise ValueError(f"{op}: {name} must have at least 2 dims (..., rows, features), got shape {x.shape}")
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"{op}: key's last dim must be query's E = {q.shape[-1]}, got key of shape {k.shape}")
    if v.shape[-2] != k.shape[-2]:
        raise ValueError(f"{op}: value must have key's S = {k.shape[-2]} rows, got value of shape {v.shape}")
    for flag, name in ((is_causal, "is_causal"), (enable_gqa, "enable_gqa")):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{op}: {name} must be a bool, got {type(flag).__name__}")
    if attn_mask is not None and is_causal:
        raise ValueError(f"{op}: attn_mask and is_causal=True cannot both be given (is_causal is a mask)")
    p = check_scalar(dropout_p, "dropout_p", op)
    if not 0 <= p <= 1:
        raise ValueError(f"{op}: dropout_p must be a probability in [0, 1], got {p}")
    seed, offset = _uint64(seed, "seed", op), _uint64(offset, "offset", op)
    n_q, (s, e) = q.shape[-2], k.shape[-2:]
    scale = (1 / math.sqrt(e) if e else math.inf) if scale is None else check_scalar(scale, "scale", op)
    lq, lk, lv = q.shape[:-2], k.shape[:-2], v.shape[:-2]
    lead, group_k, group_v = leading_dims(op, q.shape, k.shape, v.shape, enable_gqa)
    backend = backend_of(q, k, v, attn_mask if hasattr(attn_mask, "__dlpack_device__") else None, op=op)
    mask, mask_index = (None, None)
    if attn_mask is not None:
        mask, mask_index = _mask_matrices(op, attn_mask, q.dtype, lead, n_q, s, backend)
    q3 = backend.ascontiguousarray(_stacked(q))
    q_index = _index_map(lq, lead, 1)
    if lq != lead:  # a broadcast query: one copy per problem
        q3 = q3[q_index] if isinstance(q3, np.ndarray) else np.stack([q3[i] for i in q_index.tolist()])
    k3, v3 = backend.ascontiguousarray(_stacked(k)), backend.ascontiguousarray(_stacked(v))
    return _Plan(
        backend, lead, n_q, s, q3, q_index, (q.shape, k.shape, v.shape), k3, _index_map(lk, lead, group_k), v3,
        _index_map(lv, lead, group_v), mask, mask_index, float(scale), bool(is_causal), p, seed, offset,
    )  # fmt: skip


def scaled_dot_product_attention(
    query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False, *, seed=0, offset=0
):
    """Returns ``(out, lse)``: ``out (..., L, Ev)`` as the module docstring defines it and ``lse
    (..., L)`` each query's log-sum-exp of its scaled, masked scores (``-inf`` for a fully masked
    query), which :func:`scaled_dot_product_attention_backward` takes. ``seed`` and ``offset`` key
    dropout's Philox stream (used only when ``dropout_p > 0``)."""
    op = "scaled_dot_product_attention"
    plan = _plan(op, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, seed, offset)
    n, ev = math.prod(plan.lead), plan.v.shape[-1]
    out = plan.backend.empty((n, plan.n_q, ev), plan.q.dtype)
    lse = plan.backend.empty((n, plan.n_q), plan.q.dtype)
    if n and plan.n_q:
        plan.backend.attention_forward(*plan.kernel_args(), out, lse, *plan.options())
    return out.reshape(plan.lead + (plan.n_q, ev)), lse.reshape(plan.lead + (plan.n_q,))


def _summed(full, index, count: int, shape: tuple, backend):
    """The (N, rows, cols) per-problem gradients summed into the ``count`` matrices they came from
    (``index[n]``, in order of n), as an array of ``shape``."""
    if count == len(index) and np.array_equal(index, np.arange(count)):
        return full.reshape(shape)
    if not isinstance(full, np.ndarray):  # a device array: matrix by matrix, in order of n
        total = backend.zeros((count,) + full.shape[1:], full.dtype)
        for n, matrix in enumerate(index.tolist()):
            total[matrix] += full[n]
        return total.reshape(shape)
    # Group the problems by matrix (a stable sort keeps each group in order of n) and sum each group
    # with one reduceat: np.add.at, element by element, is slower than the attention backward itself.
    order = np.argsort(index, kind="stable")
    ordered = index[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    total = backend.zeros((count,) + full.shape[1:], full.dtype)
    total[ordered[starts]] = np.add.reduceat(full[order], starts, axis=0)
    return total.reshape(shape)


def _summed_to_mask(full, lead: tuple, mask_shape: tuple):
    """The (N, Lm, Sm) per-problem mask gradients summed over the leading dims the mask broadcasts
    along (NumPy's sum: a fixed order), as an array of the mask's ``mask_shape``."""
    full = full.reshape(lead + full.shape[1:])
    mask_lead = tuple(mask_shape[:-2])
    mask_lead = (1,) * (len(lead) - len(mask_lead)) + mask_lead
    axes = tuple(i for i, (m, n) in enumerate(zip(mask_lead, lead)) if m == 1 and n != 1)
    return (full.sum(axis=axes, keepdims=True) if axes else full).reshape(mask_shape)


def _saved(op, array, name, shape, dtype):
    a = as_float_array(array, name, op)
    if a.dtype != dtype:
        raise TypeError(f"{op}: {name} must have query's dtype {dtype}, got {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{op}: {name} must have shape {shape}, got {a.shape}")
    return a


def scaled_dot_product_attention_backward(
    grad,
    query,
    key,
    value,
    out,
    lse,
    attn_mask=None,
    dropout_p=0.0,
    is_causal=False,
    scale=None,
    enable_gqa=False,
    *,
    seed=0,
    offset=0,
    mask_grad=False,
):
    """Gradients ``(dquery, dkey, dvalue)`` (the inputs' shapes) of :func:`scaled_dot_product_attention`'s
    ``out`` given ``grad`` (its shape), from the forward's arguments (the same ``seed`` and ``offset``:
    the same dropout mask) and its ``out`` and ``lse``. With ``mask_grad=True`` (a float ``attn_mask``
    only) a fourth gradient, ``attn_mask``'s (its shape and dtype): the gradient of the scaled, masked
    scores before the softmax (and before dropout), summed over the dims the mask was broadcast along;
    0 where a key is masked out (it takes one (Lm, Sm) matrix per problem of memory before that sum).
    Sums over broadcast dims and shared heads run in a fixed order: the results do not depend on the
    thread count."""
    op = "scaled_dot_product_attention_backward"
    if not isinstance(mask_grad, (bool, np.bool_)):
        raise TypeError(f"{op}: mask_grad must be a bool, got {type(mask_grad).__name__}")
    if mask_grad:
        if attn_mask is not None and not hasattr(attn_mask, "dtype"):
            attn_mask = np.asarray(attn_mask)
        if attn_mask is None or attn_mask.dtype.kind != "f":
            got = "None" if attn_mask is None else f"of dtype {attn_mask.dtype}"
            raise ValueError(f"{op}: mask_grad=True needs a float attn_mask (an additive mask), got attn_mask {got}")
    plan = _plan(op, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, seed, offset)
    b, dtype = plan.backend, plan.q.dtype
    n, e, ev = math.prod(plan.lead), plan.q.shape[-1], plan.v.shape[-1]
    shape_out = plan.lead + (plan.n_q, ev)
    grad, out = (_saved(op, x, name, shape_out, dtype) for x, name in ((grad, "grad"), (out, "out")))
    lse = _saved(op, lse, "lse", plan.lead + (plan.n_q,), dtype)
    dq = b.empty((n, plan.n_q, e), dtype)
    dk, dv = b.empty((n, plan.s, e), dtype), b.empty((n, plan.s, ev), dtype)
    dmask = b.empty((n,) + plan.mask.shape[1:], dtype) if mask_grad else None
    if n and plan.n_q:
        g3, o3 = (b.ascontiguousarray(x.reshape((n, plan.n_q, ev))) for x in (grad, out))
        lse2 = b.ascontiguousarray(lse.reshape((n, plan.n_q)))
        mask_out = () if dmask is None else (dmask,)
        b.attention_backward(*plan.kernel_args(), o3, lse2, g3, dq, dk, dv, *plan.options(), *mask_out)
    elif n:  # no queries: no gradient reaches the keys, values and mask
        for d in (dk, dv) if dmask is None else (dk, dv, dmask):
            d[...] = 0
    grads = (
        _summed(dq, plan.q_index, math.prod(plan.shapes[0][:-2]), plan.shapes[0], b),
        _summed(dk, plan.k_index, plan.k.shape[0], plan.shapes[1], b),
        _summed(dv, plan.v_index, plan.v.shape[0], plan.shapes[2], b),
    )
    if not mask_grad:
        return grads
    dmask = _summed_to_mask(dmask, plan.lead, tuple(attn_mask.shape))
    return (*grads, dmask.astype(attn_mask.dtype, copy=False))
