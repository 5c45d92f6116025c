"""Loss functions: autograd Functions, their functional forms (re-exported by nn.functional)
and the loss Modules, with PyTorch's names, defaults and semantics.

``reduction`` is 'mean' (default), 'sum' or 'none' everywhere. The pointwise and classification
losses are single fused Functions (e.g. cross entropy is log-softmax + NLL in one forward and
one backward); the metric-learning losses are composed from ``pairwise_distance`` and tensor ops.

Bad input raises ValueError (shapes, values) or TypeError (dtypes) naming the loss and the
shapes or values, e.g. ``CrossEntropyLoss: target 12 is out of range for 10 classes``.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..autograd import Function
from ..backends import as_array, backend_of
from ..tensor import Tensor, where
from ..tensor_ops import unbroadcast
from .module import Module

__all__ = [
    "mse_loss",
    "l1_loss",
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy_with_logits",
    "pairwise_distance",
    "triplet_margin_loss",
    "contrastive_loss",
    "cosine_embedding_loss",
    "MSELoss",
    "L1Loss",
    "CrossEntropyLoss",
    "NLLLoss",
    "BCEWithLogitsLoss",
    "TripletMarginLoss",
    "ContrastiveLoss",
    "CosineEmbeddingLoss",
]

_REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _arr(x):
    return x._array if isinstance(x, Tensor) else as_array(x)


def _check_reduction(name, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _float_input(name, what, x):
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: {what} must be a floating-point tensor, got dtype {x.dtype}")


def _same_shape(name, a, b, what_a="input", what_b="target"):
    if a.shape != b.shape:
        raise ValueError(f"{name}: {what_a} has shape {a.shape} but {what_b} has shape {b.shape}; they must match")


def _reduce(loss, reduction, denom=None):
    """``loss`` (elementwise) reduced; 'mean' divides by ``denom`` (default: the element count)."""
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            total = total / (loss.size if denom is None else denom)
    return as_array(total).astype(loss.dtype, copy=False)


def _grad_scale(g, reduction, denom):
    """d (reduced loss) / d (elementwise loss), times the incoming gradient ``g``."""
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return g / denom
    return g


def _reduce_tensor(loss, reduction):
    return loss if reduction == "none" else loss.mean() if reduction == "mean" else loss.sum()


# ---------------------------------------------------------------------------------------------
# Pointwise regression losses
# ---------------------------------------------------------------------------------------------


class _DifferenceLoss(Function):
    """(input - target)^2 (``squared``, MSE) or |input - target| (L1; gradient 0 at 0), reduced."""

    @staticmethod
    def forward(ctx, input, target, reduction="mean", squared=True):
        diff = input - target.astype(input.dtype, copy=False)
        ctx.save_for_backward(diff)
        ctx.meta = (reduction, squared)
        return _reduce(diff * diff if squared else np.abs(diff), reduction)

    @staticmethod
    def backward(ctx, g):
        (diff,) = ctx.saved_tensors
        reduction, squared = ctx.meta
        scale = _grad_scale(g, reduction, diff.size)
        grad = (2 * scale) * diff if squared else scale * np.sign(diff)
        return grad, (-grad if ctx.needs_input_grad[1] else None)


def _difference(name, input, target, reduction, squared):
    _check_reduction(name, reduction)
    x, t = _arr(input), _arr(target)
    _float_input(name, "input", x)
    _same_shape(name, x, t)
    return _DifferenceLoss.apply(input, target, reduction=reduction, squared=squared)


def mse_loss(input, target, reduction="mean"):
    """Mean squared error: (input - target)^2, reduced. Shapes must match."""
    return _difference("mse_loss", input, target, reduction, True)


def l1_loss(input, target, reduction="mean"):
    """Mean absolute error: |input - target|, reduced (gradient sign(input - target), 0 at 0)."""
    return _difference("l1_loss", input, target, reduction, False)


# ---------------------------------------------------------------------------------------------
# Classification losses
# ---------------------------------------------------------------------------------------------


def _class_last(a):
    """(N, C, d1, ...) -> a view (N, d1, ..., C); (C,) stays."""
    return np.moveaxis(a, 1, -1) if a.ndim > 1 else a


def _class_back(a, ndim):
    return np.moveaxis(a, -1, 1) if ndim > 1 else a


def _check_classes(name, x, t, weight, ignore_index, allow_probs):
    """Validates input (N, C, d1, ...) or (C,) against class-index (or, if ``allow_probs``,
    probability) targets; returns (weight array or None, target holds probabilities)."""
    _float_input(name, "input", x)
    if x.ndim < 1:
        raise ValueError(f"{name}: input must have shape (N, C, d1, ...) or (C,), got {x.shape}")
    classes = x.shape[1] if x.ndim > 1 else x.shape[0]
    index_shape = x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()
    probs = allow_probs and t.dtype.kind == "f" and t.shape == x.shape
    if not probs:
        if t.shape != index_shape:
            expected = f"class indices of shape {index_shape}" + (
                f" or probabilities of shape {x.shape}" if allow_probs else ""
            )
            raise ValueError(f"{name}: input has shape {x.shape} but target has shape {t.shape}; expected {expected}")
        if t.dtype.kind not in "iu":
            raise TypeError(f"{name}: class-index target must have an integer dtype, got {t.dtype}")
        # Host targets are checked here, naming the loss; cross entropy's kernel checks device
        # targets itself (without copying them to the host).
        if isinstance(t, np.ndarray) or not allow_probs:
            bad = (t != ignore_index) & ((t < 0) | (t >= classes))
            if bad.any():
                raise ValueError(
                    f"{name}: target {int(t[bad].flat[0])} is out of range for {classes} classes "
                    f"(ignore_index={ignore_index})"
                )
    if weight is not None:
        weight = _arr(weight)
        if weight.shape != (classes,):
            raise ValueError(
                f"{name}: weight must have shape ({classes},) (one per class) for input of shape "
                f"{x.shape}, got {weight.shape}"
            )
        weight = weight.astype(x.dtype, copy=False)
    return weight, probs


def _index_weights(t, weight, ignore_index, dtype):
    """Per-sample weights w[target] (0 where ignored) and the safe class indices."""
    valid = t != ignore_index
    index = np.where(valid, t, 0)
    w = valid.astype(dtype) if weight is None else np.where(valid, weight[index], 0).astype(dtype, copy=False)
    return w, index


class _CrossEntropy(Function):
    """Cross entropy of class-index targets: log-softmax and the weighted, smoothed NLL fused in
    one kernel each way (:func:`deepkern.ops.cross_entropy` and its backward)."""

    @staticmethod
    def forward(ctx, x, t, weight, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        options = {"ignore_index": ignore_index, "label_smoothing": label_smoothing}
        loss, stats = ops.cross_entropy(x, t, weight, **options)
        denom = stats[..., 2].sum() if reduction == "mean" else None
        ctx.save_for_backward(x, stats)
        ctx.meta = (t, weight, options, reduction, denom)
        return _reduce(loss, reduction, denom)

    @staticmethod
    def backward(ctx, g):
        x, stats = ctx.saved_tensors
        t, weight, options, reduction, denom = ctx.meta
        scale = as_array(_grad_scale(g, reduction, denom)).astype(x.dtype, copy=False)
        return ops.cross_entropy_backward(scale, x, t, stats, weight, **options), None, None


class _SoftCrossEntropy(Function):
    """Cross entropy of probability targets: loss_i = -sum_c q_ic log softmax(x_i)_c with q the
    (smoothed, weighted) target, whose gradient is softmax(x_i) * sum_c q_ic - q_i."""

    @staticmethod
    def forward(ctx, x, t, weight, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        z = _class_last(x)
        classes, dtype = z.shape[-1], x.dtype
        shifted = z - z.max(axis=-1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        eps = dtype.type(label_smoothing)
        q = _class_last(t).astype(dtype, copy=False)
        if label_smoothing:
            q = q * (1 - eps) + eps / classes
        if weight is not None:
            q = q * weight
        denom = logp.size // classes if classes else 0
        ctx.save_for_backward(logp, q)
        ctx.meta = (x.ndim, reduction, denom, eps, weight)
        return _reduce(-(q * logp).sum(axis=-1), reduction, denom)

    @staticmethod
    def backward(ctx, g):
        logp, q = ctx.saved_tensors
        ndim, reduction, denom, eps, weight = ctx.meta
        scale = _grad_scale(g, reduction, denom)
        if reduction == "none":
            scale = scale[..., None]
        grad_x = grad_t = None
        if ctx.needs_input_grad[0]:
            grad_x = _class_back((np.exp(logp) * q.sum(axis=-1, keepdims=True) - q) * scale, ndim)
        if ctx.needs_input_grad[1]:
            dq = -(1 - eps) * logp * scale
            grad_t = _class_back(dq if weight is None else dq * weight, ndim)
        return grad_x, grad_t, None


class _NLLLoss(Function):
    """-w[target] * input[target] over the class axis (input holds log-probabilities)."""

    @staticmethod
    def forward(ctx, x, t, weight, ignore_index=-100, reduction="mean"):
        z = _class_last(x)
        w, index = _index_weights(t, weight, ignore_index, x.dtype)
        picked = np.take_along_axis(z, index[..., None], axis=-1)[..., 0]
        denom = w.sum()
        ctx.save_for_backward(w, index)
        ctx.meta = (x.shape, x.dtype, reduction, denom)
        return _reduce(-(w * picked), reduction, denom)

    @staticmethod
    def backward(ctx, g):
        w, index = ctx.saved_tensors
        shape, dtype, reduction, denom = ctx.meta
        grad = backend_of(g, op="NLLLossBackward").zeros(shape, dtype)
        values = -w * _grad_scale(g, reduction, denom)
        np.put_along_axis(_class_last(grad), index[..., None], values[..., None], axis=-1)
        return grad, None, None


def _classification(function, name, input, target, weight, ignore_index, reduction, **extra):
    _check_reduction(name, reduction)
    x, t = _arr(input), _arr(target)
    weight, probs = _check_classes(name, x, t, weight, ignore_index, function is _CrossEntropy)
    if probs:
        function = _SoftCrossEntropy
    else:
        target = t  # class indices carry no gradient
    return function.apply(input, target, weight, ignore_index=ignore_index, reduction=reduction, **extra)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Cross entropy between softmax(input) over dim 1 and ``target`` (torch.nn.functional.cross_entropy).

    ``input`` (N, C), (N, C, d1, ...) or (C,) logits; ``target`` class indices (N,), (N, d1, ...)
    or () (integers; ``ignore_index`` entries contribute nothing), or class probabilities of
    ``input``'s shape (floats). ``weight`` (C,) rescales each class; ``label_smoothing`` mixes the
    target with the uniform distribution. 'mean' divides by the summed weights of the
    non-ignored targets (class indices) or by the number of samples (probabilities).
    """
    return _cross_entropy("cross_entropy", input, target, weight, ignore_index, reduction, label_smoothing)


def _cross_entropy(name, input, target, weight, ignore_index, reduction, label_smoothing):
    if not (isinstance(label_smoothing, (int, float)) and 0.0 <= label_smoothing <= 1.0):
        raise ValueError(f"{name}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    return _classification(
        _CrossEntropy, name, input, target, weight, ignore_index, reduction, label_smoothing=float(label_smoothing)
    )


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of class-index targets given log-probabilities ``input``
    (N, C, d1, ...) or (C,) (torch.nn.functional.nll_loss)."""
    return _classification(_NLLLoss, "nll_loss", input, target, weight, ignore_index, reduction)


class _BCEWithLogits(Function):
    """(1 - y) x + (1 + (pos_weight - 1) y) softplus(-x), times weight: the sigmoid and the log
    in one stable expression (no exp of a positive argument)."""

    @staticmethod
    def forward(ctx, x, y, weight=None, pos_weight=None, reduction="mean"):
        y = y.astype(x.dtype, copy=False)
        sp_neg = np.logaddexp(0, -x)  # softplus(-x) = -log sigmoid(x)
        lw = 1 if pos_weight is None else 1 + (pos_weight - 1) * y
        loss = (1 - y) * x + lw * sp_neg
        if weight is not None:
            loss = loss * weight
        ctx.save_for_backward(x, y, sp_neg)
        ctx.meta = (weight, pos_weight, reduction, lw)
        return _reduce(loss, reduction)

    @staticmethod
    def backward(ctx, g):
        x, y, sp_neg = ctx.saved_tensors
        weight, pos_weight, reduction, lw = ctx.meta
        scale = _grad_scale(g, reduction, x.size)
        if weight is not None:
            scale = scale * weight
        grad_x = grad_y = None
        if ctx.needs_input_grad[0]:
            sig_neg = np.exp(-np.logaddexp(0, x))  # sigmoid(-x)
            grad_x = unbroadcast(np.broadcast_to(((1 - y) - lw * sig_neg) * scale, x.shape), x.shape)
        if ctx.needs_input_grad[1]:
            dy = -x if pos_weight is None else (pos_weight - 1) * sp_neg - x
            grad_y = unbroadcast(np.broadcast_to(dy * scale, x.shape), y.shape)
        return grad_x, grad_y, None, None


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Binary cross entropy of sigmoid(input) against ``target`` in [0, 1], computed stably from
    the logits (torch.nn.functional.binary_cross_entropy_with_logits):
    -weight * [pos_weight * y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))]. ``weight`` broadcasts
    against input; ``pos_weight`` against the last (class) dimension. Both are constants."""
    return _bce_with_logits("binary_cross_entropy_with_logits", input, target, weight, reduction, pos_weight)


def _bce_with_logits(name, input, target, weight, reduction, pos_weight):
    _check_reduction(name, reduction)
    x, t = _arr(input), _arr(target)
    _float_input(name, "input", x)
    _same_shape(name, x, t)
    extras = {}
    for what, value in (("weight", weight), ("pos_weight", pos_weight)):
        if value is None:
            continue
        value = _arr(value)
        try:
            if np.broadcast_shapes(value.shape, x.shape) != x.shape:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{name}: {what} of shape {value.shape} does not broadcast to input shape {x.shape}"
            ) from None
        extras[what] = value.astype(x.dtype, copy=False)
    return _BCEWithLogits.apply(input, target, reduction=reduction, **extras)


# ---------------------------------------------------------------------------------------------
# Metric-learning losses
# ---------------------------------------------------------------------------------------------


class _PairwiseDistance(Function):
    """||x1 - x2 + eps||_p over the last dimension."""

    @staticmethod
    def forward(ctx, x1, x2, p=2.0, eps=1e-6, keepdim=False):
        diff = x1 - x2 + x1.dtype.type(eps)
        if p == 2:
            norm = np.sqrt((diff * diff).sum(axis=-1, keepdims=True))
        elif p == 1:
            norm = np.abs(diff).sum(axis=-1, keepdims=True)
        else:
            norm = (np.abs(diff) ** p).sum(axis=-1, keepdims=True) ** (1.0 / p)
        ctx.save_for_backward(diff, norm)
        ctx.meta = (p, keepdim, np.shape(x1), np.shape(x2))
        return norm if keepdim else norm[..., 0]

    @staticmethod
    def backward(ctx, g):
        diff, norm = ctx.saved_tensors
        p, keepdim, shape1, shape2 = ctx.meta
        g = g if keepdim else g[..., None]
        safe = np.where(norm == 0, 1, norm)
        if p == 2:
            d = diff / safe
        elif p == 1:
            d = np.sign(diff)
        else:
            d = np.sign(diff) * (np.abs(diff) / safe) ** (p - 1)
        d = np.where(norm == 0, 0, d) * g
        return (
            unbroadcast(d, shape1) if ctx.needs_input_grad[0] else None,
            unbroadcast(-d, shape2) if ctx.needs_input_grad[1] else None,
        )


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """The p-norm distance ||x1 - x2 + eps||_p over the last dimension
    (torch.nn.functional.pairwise_distance); the gradient is 0 where the distance is 0."""
    if not p > 0:
        raise ValueError(f"pairwise_distance: p must be > 0, got {p!r}")
    return _PairwiseDistance.apply(x1, x2, p=float(p), eps=float(eps), keepdim=keepdim)


def _check_embeddings(name, shapes, labels=None):
    """Embeddings of identical shape (N, D) or (D,); labels (N,) or ()."""
    first = shapes[0][1]
    if len(first) not in (1, 2) or any(s != first for _, s in shapes):
        listed = ", ".join(f"{n} {s}" for n, s in shapes)
        raise ValueError(f"{name}: expected inputs of one shape (N, D) or (D,), got {listed}")
    if labels is not None:
        what, shape = labels
        if shape != first[:-1]:
            raise ValueError(f"{name}: {what} has shape {shape}, expected {first[:-1]} for inputs of shape {first}")


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2.0, eps=1e-6, swap=False, reduction="mean"):
    """max(d(a, p) - d(a, n) + margin, 0) with d = pairwise_distance(., ., p, eps)
    (torch.nn.functional.triplet_margin_loss); ``swap`` uses min(d(a, n), d(p, n)) as the
    negative distance. Inputs (N, D) or (D,), all of one shape."""
    return _triplet("triplet_margin_loss", anchor, positive, negative, margin, p, eps, swap, reduction)


def _triplet(name, anchor, positive, negative, margin, p, eps, swap, reduction):
    _check_reduction(name, reduction)
    _check_embeddings(
        name, [("anchor", _arr(anchor).shape), ("positive", _arr(positive).shape), ("negative", _arr(negative).shape)]
    )
    if not p > 0:
        raise ValueError(f"{name}: p must be > 0, got {p!r}")
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_swap = pairwise_distance(positive, negative, p, eps)
        d_neg = where(_arr(d_swap) < _arr(d_neg), d_swap, d_neg)
    return _reduce_tensor((d_pos - d_neg + float(margin)).relu(), reduction)


def _check_labels(name, what, labels, allowed):
    values = np.unique(labels)
    bad = values[~np.isin(values, allowed)]
    if bad.size:
        raise ValueError(f"{name}: {what} must hold only {' or '.join(map(str, allowed))}, got {bad[0]!r}")


def contrastive_loss(x1, x2, target, margin=1.0, eps=1e-6, reduction="mean"):
    """The contrastive loss of Hadsell, Chopra and LeCun (2006) on pairs (no PyTorch built-in):

        d = ||x1 - x2 + eps||_2 (pairwise_distance),
        loss = y * d^2 + (1 - y) * max(0, margin - d)^2,

    ``target`` y = 1 for similar pairs, 0 for dissimilar ones; inputs (N, D) or (D,), target (N,)
    or (). No factor 1/2; 'mean' averages over the pairs."""
    return _contrastive("contrastive_loss", x1, x2, target, margin, eps, reduction)


def _contrastive(name, x1, x2, target, margin, eps, reduction):
    _check_reduction(name, reduction)
    y = _arr(target)
    _check_embeddings(name, [("x1", _arr(x1).shape), ("x2", _arr(x2).shape)], ("target", y.shape))
    _check_labels(name, "target", y, (0, 1))
    d = pairwise_distance(x1, x2, 2.0, eps)
    y = y.astype(d.dtype)
    push = (float(margin) - d).relu()
    return _reduce_tensor(d * d * y + push * push * (1 - y), reduction)


def cosine_embedding_loss(x1, x2, target, margin=0.0, reduction="mean"):
    """1 - cos(x1, x2) where target is 1, max(0, cos(x1, x2) - margin) where it is -1
    (torch.nn.functional.cosine_embedding_loss; cos uses |x|^2 + 1e-12 as PyTorch does).
    Inputs (N, D) or (D,), target (N,) or () of 1 and -1."""
    return _cosine_embedding("cosine_embedding_loss", x1, x2, target, margin, reduction)


def _cosine_embedding(name, x1, x2, target, margin, reduction):
    _check_reduction(name, reduction)
    y = _arr(target)
    _check_embeddings(name, [("x1", _arr(x1).shape), ("x2", _arr(x2).shape)], ("target", y.shape))
    _check_labels(name, "target", y, (1, -1))
    a, b = (x if isinstance(x, Tensor) else Tensor._wrap(x) for x in (x1, x2))
    cos = (a * b).sum(-1) / (((a * a).sum(-1) + 1e-12) * ((b * b).sum(-1) + 1e-12)).sqrt()
    return _reduce_tensor(where(y == 1, 1 - cos, (cos - float(margin)).relu()), reduction)


# ---------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------

# The loss Modules run the functional forms' bodies with their own name in error messages.


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        _check_reduction(type(self).__name__, reduction)
        self.reduction = reduction

    def extra_repr(self):
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


def _as_buffer(value):
    return None if value is None else value if isinstance(value, Tensor) else Tensor(value)


class MSELoss(_Loss):
    """Mean squared error (torch.nn.MSELoss)."""

    def forward(self, input, target):
        return _difference("MSELoss", input, target, self.reduction, True)


class L1Loss(_Loss):
    """Mean absolute error (torch.nn.L1Loss)."""

    def forward(self, input, target):
        return _difference("L1Loss", input, target, self.reduction, False)


class CrossEntropyLoss(_Loss):
    """See :func:`cross_entropy`; ``weight`` is a buffer (in the state dict when given)."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.register_buffer("weight", _as_buffer(weight))
        self.ignore_index, self.label_smoothing = int(ignore_index), float(label_smoothing)

    def forward(self, input, target):
        return _cross_entropy(
            "CrossEntropyLoss", input, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing
        )


class NLLLoss(_Loss):
    """See :func:`nll_loss`."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self.register_buffer("weight", _as_buffer(weight))
        self.ignore_index = int(ignore_index)

    def forward(self, input, target):
        return _classification(_NLLLoss, "NLLLoss", input, target, self.weight, self.ignore_index, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """See :func:`binary_cross_entropy_with_logits`; ``weight`` and ``pos_weight`` are buffers."""

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.register_buffer("weight", _as_buffer(weight))
        self.register_buffer("pos_weight", _as_buffer(pos_weight))

    def forward(self, input, target):
        return _bce_with_logits("BCEWithLogitsLoss", input, target, self.weight, self.reduction, self.pos_weight)


class TripletMarginLoss(_Loss):
    """See :func:`triplet_margin_loss`."""

    def __init__(self, margin=1.0, p=2.0, eps=1e-6, swap=False, reduction="mean"):
        super().__init__(reduction)
        self.margin, self.p, self.eps, self.swap = float(margin), float(p), float(eps), bool(swap)

    def forward(self, anchor, positive, negative):
        return _triplet(
            "TripletMarginLoss", anchor, positive, negative, self.margin, self.p, self.eps, self.swap, self.reduction
        )


class ContrastiveLoss(_Loss):
    """See :func:`contrastive_loss`: y d^2 + (1 - y) max(0, margin - d)^2 on pairs (y = 1: similar)."""

    def __init__(self, margin=1.0, eps=1e-6, reduction="mean"):
        super().__init__(reduction)
        self.margin, self.eps = float(margin), float(eps)

    def forward(self, x1, x2, target):
        return _contrastive("ContrastiveLoss", x1, x2, target, self.margin, self.eps, self.reduction)


class CosineEmbeddingLoss(_Loss):
    """See :func:`cosine_embedding_loss`."""

    def __init__(self, margin=0.0, reduction="mean"):
        super().__init__(reduction)
        self.margin = float(margin)

    def forward(self, x1, x2, target):
        return _cosine_embedding("CosineEmbeddingLoss", x1, x2, target, self.margin, self.reduction)
