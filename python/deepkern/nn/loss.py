"""Loss functions: autograd Functions, their functional forms (re-exported by nn.functional)
and the loss Modules, with PyTorch's names, defaults and semantics.

``reduction`` is 'mean' (default), 'sum' or 'none' everywhere. The pointwise and classification
losses are single fused Functions (e.g. cross entropy is log-softmax + NLL in one forward and
one backward); the metric-learning losses are composed from ``pairwise_distance`` and tensor ops.
The margin losses with PyTorch kernels (soft margin, multi margin, multi-label margin) are
Functions; the ones PyTorch composes (margin ranking, hinge embedding, multi-label soft margin,
Poisson and Gaussian NLL, triplet margin with distance, mse/l1/huber ``weight``) are composed the
same way from tensor ops, so their values and gradients (every argument PyTorch differentiates)
match. Signatures are PyTorch's, with the deprecated ``size_average`` and ``reduce`` mapped to a
reduction as ``torch.nn._reduction.legacy_get_string`` does (and its UserWarning).

Bad input raises ValueError (shapes, values) or TypeError (dtypes) naming the loss and the
shapes or values, e.g. ``CrossEntropyLoss: target 12 is out of range for 10 classes``.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from .. import ops
from ..amp import autocast_entry
from ..autograd import Function, is_grad_enabled
from ..backends import as_array, backend_of
from ..ops._validate import is_floating_dtype
from ..tensor import PassGradient, Tensor, through_float32, where
from ..tensor_ops import LinearBackward, MaskedGradient, Where, unbroadcast, unbroadcast_tensor
from .module import Module

__all__ = [
    "CTCLoss",
    "mse_loss",
    "l1_loss",
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy",
    "smooth_l1_loss",
    "huber_loss",
    "kl_div",
    "pairwise_distance",
    "triplet_margin_loss",
    "contrastive_loss",
    "cosine_embedding_loss",
    "margin_ranking_loss",
    "hinge_embedding_loss",
    "soft_margin_loss",
    "multilabel_soft_margin_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "poisson_nll_loss",
    "gaussian_nll_loss",
    "triplet_margin_with_distance_loss",
    "MSELoss",
    "L1Loss",
    "CrossEntropyLoss",
    "NLLLoss",
    "BCEWithLogitsLoss",
    "BCELoss",
    "SmoothL1Loss",
    "HuberLoss",
    "KLDivLoss",
    "TripletMarginLoss",
    "ContrastiveLoss",
    "CosineEmbeddingLoss",
    "MarginRankingLoss",
    "HingeEmbeddingLoss",
    "SoftMarginLoss",
    "MultiLabelSoftMarginLoss",
    "MultiMarginLoss",
    "MultiLabelMarginLoss",
    "PoissonNLLLoss",
    "GaussianNLLLoss",
    "TripletMarginWithDistanceLoss",
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
    """TypeError naming the loss unless ``x`` is floating-point (bfloat16 included)."""
    if not is_floating_dtype(x.dtype):
        raise TypeError(f"{name}: {what} must be a floating-point tensor, got dtype {x.dtype}")


def _same_shape(name, a, b, what_a="input", what_b="target"):
    if a.shape != b.shape:
        raise ValueError(f"{name}: {what_a} has shape {a.shape} but {what_b} has shape {b.shape}; they must match")


def _constant(name, what, value) -> None:
    """A loss's ``weight`` (or ``pos_weight``) taken as a constant: one that requires grad (while
    recording) is a RuntimeError, as PyTorch's "not differentiable" (it would silently never train)."""
    if isinstance(value, Tensor) and value.requires_grad and is_grad_enabled():
        raise RuntimeError(f"{name}: the loss is not differentiable with respect to {what}, which requires grad")


def _reduce(loss, reduction, denom=None):
    """``loss`` (elementwise) reduced; 'mean' divides by ``denom`` (default: the element count)."""
    if reduction == "none":
        return loss
    total = loss.sum(dtype=np.float32 if loss.dtype == np.float16 else None)  # float16 sums overflow at 65504
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


def _graph_scale(g, reduction, denom):
    """:func:`_grad_scale` of a Tensor ``g`` (create_graph=True); with nothing to average by (``denom``
    0: no elements, or every target ignored) ``g * 0``, which leaves the gradient 0 and its own
    gradient w.r.t. ``g`` 0 (as PyTorch's for no elements) where g / 0 would make them NaN."""
    return g * 0 if reduction == "mean" and not denom else _grad_scale(g, reduction, denom)


def _reduce_tensor(loss, reduction):
    if reduction == "none":
        return loss
    if reduction == "mean" and loss.numel() == 0:  # NaN, as PyTorch's mean of nothing (no warning)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return loss.mean()
    return loss.mean() if reduction == "mean" else loss.sum()


class _Change(PassGradient):
    """Zeros of ``x``'s shape whose derivative w.r.t. ``x`` is 1: the change of a forward argument
    (``x`` its ``io.placeholder``) for the backward_graph of a Function that saved values computed
    from that argument, not the argument itself: f(x) + change, or f(x + change) where f is
    shift-invariant, is a graph Tensor of the argument with f's value and exact derivatives."""

    @staticmethod
    def forward(ctx, x):
        return np.zeros_like(x)


def _change(io, i, like):
    """The change of forward argument ``i`` (of ``like``'s shape and dtype), see :class:`_Change`."""
    return _Change.apply(io.placeholder(i, like))


def _legacy_reduction(name, size_average, reduce, reduction, stacklevel=3):
    """``reduction``, or, when the deprecated ``size_average`` or ``reduce`` is given, the reduction
    they mean (torch.nn._reduction.legacy_get_string: 'mean' when both are true or None, 'sum' when
    only ``reduce`` is, else 'none') with PyTorch's UserWarning."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    ret = "mean" if size_average and reduce else "sum" if reduce else "none"
    warnings.warn(
        f"size_average and reduce args will be deprecated, please use reduction='{ret}' instead.",
        UserWarning,
        stacklevel=stacklevel,
    )
    return ret


def _as_tensor(x):
    """``x`` as a Tensor (arrays and numbers wrapped; Tensors as they are)."""
    return x if isinstance(x, Tensor) else Tensor._wrap(as_array(x))


def _weighted(name, loss, weight, reduction, mean_by_weight):
    """PyTorch's optional per-element ``weight`` of mse/l1/huber loss: ``loss`` (elementwise, a
    Tensor) times ``weight`` (differentiable, of input's shape), reduced; 'mean' divides by the
    summed weights (``mean_by_weight``, mse and l1) or by the element count (huber)."""
    weighted = loss * _as_tensor(weight)
    if reduction == "mean" and mean_by_weight:
        return weighted.sum() / _as_tensor(weight).sum()
    return _reduce_tensor(weighted, reduction)


def _check_weight_shape(name, x, weight):
    if weight is not None and tuple(_arr(weight).shape) != tuple(x.shape):
        raise ValueError(
            f"{name}: weight has shape {tuple(_arr(weight).shape)} but input has shape {tuple(x.shape)}; "
            "weights and input must have the same size"
        )


# ---------------------------------------------------------------------------------------------
# Pointwise regression losses
# ---------------------------------------------------------------------------------------------


def _pointwise_difference(kind, diff, beta):
    """The elementwise loss of ``diff = input - target``: 'mse' diff^2; 'l1' |diff|; 'smooth_l1'
    0.5 diff^2 / beta where |diff| < beta, else |diff| - beta / 2 (|diff| when beta is 0);
    'huber' 0.5 diff^2 where |diff| < beta (delta), else beta (|diff| - beta / 2)."""
    if kind == "mse":
        return diff * diff
    a = np.abs(diff)
    if kind == "l1":
        return a
    quadratic = a < beta
    with np.errstate(invalid="ignore", divide="ignore"):  # beta 0: no quadratic part
        if kind == "smooth_l1":
            return np.where(quadratic, 0.5 * diff * diff / beta, a - 0.5 * beta).astype(diff.dtype, copy=False)
        return np.where(quadratic, 0.5 * diff * diff, beta * (a - 0.5 * beta)).astype(diff.dtype, copy=False)


def _pointwise_difference_grad(kind, diff, beta, scale):
    """d loss / d input of :func:`_pointwise_difference`, times ``scale``."""
    if kind == "mse":
        return (2 * scale) * diff
    if kind == "l1":  # sign(NaN) taken as 0, as PyTorch's l1 backward
        return scale * np.where(np.isnan(diff), 0, np.sign(diff)).astype(diff.dtype, copy=False)
    if kind == "smooth_l1" and beta == 0:
        return scale * np.sign(diff)
    if kind == "smooth_l1":
        return scale * np.clip(diff / beta, -1, 1)
    return scale * np.clip(diff, -beta, beta)


class _DifferenceLoss(Function):
    """A loss of ``input - target`` elementwise (see :func:`_pointwise_difference`), reduced."""

    @staticmethod
    def forward(ctx, input, target, reduction="mean", kind="mse", beta=1.0):
        target = target.astype(input.dtype, copy=False)
        ctx.save_for_backward(input, target)
        ctx.meta = (reduction, kind, beta)
        return _reduce(_pointwise_difference(kind, input - target, beta), reduction)

    @staticmethod
    def backward(ctx, g):
        input, target = ctx.saved_tensors
        reduction, kind, beta = ctx.meta
        grad = _pointwise_difference_grad(kind, input - target, beta, _grad_scale(g, reduction, input.size))
        return grad, (-grad if ctx.needs_input_grad[1] else None)

    @staticmethod
    def backward_graph(ctx, io, g):
        input, target = ctx.saved_tensors
        reduction, kind, beta = ctx.meta
        diff = io.input(0, input) - io.input(1, target)
        scale = _graph_scale(g, reduction, input.size)
        if kind == "mse":
            grad = diff * (scale * 2)
        elif kind == "l1" or beta == 0:  # (smooth_l1 with beta 0 is the L1 loss)
            grad = diff.sign() * scale
        elif kind == "smooth_l1":
            grad = (diff / beta).clamp(-1, 1) * scale
        else:  # huber
            grad = diff.clamp(-beta, beta) * scale
        return grad, (-grad if ctx.needs_input_grad[1] else None)


@autocast_entry
@through_float32
def _difference(name, input, target, reduction, kind, beta=1.0):
    _check_reduction(name, reduction)
    x, t = _arr(input), _arr(target)
    _float_input(name, "input", x)
    _same_shape(name, x, t)
    if kind == "smooth_l1" and beta < 0:
        raise ValueError(f"{name}: beta must be >= 0, got {beta}")
    if kind == "huber" and not beta > 0:
        raise ValueError(f"{name}: delta must be > 0, got {beta}")
    return _DifferenceLoss.apply(input, target, reduction=reduction, kind=kind, beta=float(beta))


def _weighted_difference(name, input, target, reduction, kind, beta, weight):
    if weight is None:
        return _difference(name, input, target, reduction, kind, beta)
    _check_reduction(name, reduction)
    _check_weight_shape(name, _arr(input), weight)
    loss = _difference(name, input, target, "none", kind, beta)
    return _weighted(name, loss, weight, reduction, kind != "huber")


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean squared error: (input - target)^2, reduced. Shapes must match. ``weight`` (optional,
    input's shape, differentiable) multiplies each element; 'mean' then divides by its sum."""
    reduction = _legacy_reduction("mse_loss", size_average, reduce, reduction)
    return _weighted_difference("mse_loss", input, target, reduction, "mse", 1.0, weight)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean absolute error: |input - target|, reduced (gradient sign(input - target), 0 at 0).
    ``weight`` as :func:`mse_loss`'s."""
    reduction = _legacy_reduction("l1_loss", size_average, reduce, reduction)
    return _weighted_difference("l1_loss", input, target, reduction, "l1", 1.0, weight)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """0.5 d^2 / beta where |d| < beta, |d| - beta / 2 elsewhere, d = input - target, reduced
    (torch.nn.functional.smooth_l1_loss; beta 0 is the L1 loss)."""
    reduction = _legacy_reduction("smooth_l1_loss", size_average, reduce, reduction)
    return _difference("smooth_l1_loss", input, target, reduction, "smooth_l1", beta)


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """0.5 d^2 where |d| < delta, delta (|d| - delta / 2) elsewhere, d = input - target, reduced
    (torch.nn.functional.huber_loss; delta times smooth_l1_loss with beta = delta). ``weight``
    (optional, input's shape) multiplies each element; 'mean' stays the mean over the elements
    (as PyTorch)."""
    return _weighted_difference("huber_loss", input, target, reduction, "huber", delta, weight)


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
    probs = allow_probs and is_floating_dtype(t.dtype) and t.shape == x.shape
    if probs and ignore_index != -100:
        raise ValueError(f"{name}: ignore_index={ignore_index} is not supported for probability (floating) targets")
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
        _constant(name, "weight", weight)
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

    @staticmethod
    def backward_graph(ctx, io, g):
        """d loss_i / d x_i = softmax(x_i) sum(q_i) - q_i with q_i the sample's weighted, smoothed target
        (q_ic = (1 - eps) w_t [c = t] + eps w_c / C; zero for an ignored sample), the softmax as Tensor
        ops so that the gradient is differentiable in x."""
        from .functional import softmax

        x, _ = ctx.saved_tensors
        t, weight, options, reduction, denom = ctx.meta
        classes, eps = x.shape[1 if x.ndim > 1 else 0], options["label_smoothing"]
        sample_weight, index = _index_weights(t, weight, options["ignore_index"], x.dtype)
        q = (1 - eps) * sample_weight[..., None] * (np.arange(classes) == index[..., None])  # class axis last
        if eps:
            class_weight = np.ones(classes, x.dtype) if weight is None else weight
            q = q + (eps / classes) * (t != options["ignore_index"])[..., None] * class_weight
        q = _class_back(q.astype(x.dtype, copy=False), x.ndim)
        axis = 1 if x.ndim > 1 else 0
        scale = _graph_scale(g, reduction, denom)
        if reduction == "none":
            scale = scale.unsqueeze(axis)
        probs = softmax(io.input(0, x), axis)
        return (probs * q.sum(axis=axis, keepdims=True) - q) * scale, None, None


class _SoftCrossEntropy(Function):
    """Cross entropy of probability targets: loss_i = -sum_c q_ic log softmax(x_i)_c with q the
    (smoothed, weighted) target, whose gradient is softmax(x_i) * sum_c q_ic - q_i."""

    @staticmethod
    def forward(ctx, x, t, weight, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        z = _class_last(x)
        classes, dtype = z.shape[-1], x.dtype
        if classes:
            shifted = z - z.max(axis=-1, keepdims=True)
            logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        else:  # no classes: every sample's loss is an empty sum, 0
            logp = z
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

    @staticmethod
    def backward_graph(ctx, io, g):
        """backward's gradients as Tensor ops. x and the target were not saved: with their changes dx and
        dt (see :class:`_Change`), log_softmax(x + dx) = log_softmax(logp + dx) and the smoothed,
        weighted target is q + dt (1 - eps) weight."""
        from .functional import log_softmax

        logp, q = ctx.saved_tensors
        ndim, reduction, denom, eps, weight = ctx.meta
        axis = 1 if ndim > 1 else 0
        logp, q = _class_back(logp, ndim), _class_back(q, ndim)  # (the class axis where x has it)
        weight = None if weight is None else _class_back(np.broadcast_to(weight, _class_last(logp).shape), ndim)
        scale = _graph_scale(g, reduction, denom)
        if reduction == "none":
            scale = scale.unsqueeze(axis)
        logp_t = log_softmax(_change(io, 0, logp) + logp, axis) if ctx.needs_input_grad[0] else Tensor._wrap(logp)
        grad_x = grad_t = None
        if ctx.needs_input_grad[0]:
            q_t = Tensor._wrap(q)
            if ctx.needs_input_grad[1]:
                q_t = _change(io, 1, q) * ((1 - eps) if weight is None else (1 - eps) * weight) + q
            grad_x = (logp_t.exp() * q_t.sum(axis, keepdim=True) - q_t) * scale
        if ctx.needs_input_grad[1]:
            grad_t = -(1 - eps) * logp_t * scale
            grad_t = grad_t if weight is None else grad_t * weight
        return grad_x, grad_t, None


class _NLLLoss(Function):
    """-w[target] * input[target] over the class axis (input holds log-probabilities)."""

    @staticmethod
    def forward(ctx, x, t, weight, ignore_index=-100, reduction="mean"):
        w, index = _index_weights(t, weight, ignore_index, x.dtype)
        denom = w.sum()
        ctx.save_for_backward(w, index)
        ctx.meta = (x.shape, x.dtype, reduction, denom)
        return _nll_pick(x, w, index, reduction, denom)

    @staticmethod
    def backward(ctx, g):
        w, index = ctx.saved_tensors
        return _nll_put(g, w, index, *ctx.meta), None, None

    @staticmethod
    def backward_graph(ctx, io, g):
        """The backward is linear in g (its transpose the forward, as PyTorch's double backward), and
        recorded as a function of the input too, with a zero derivative there, as PyTorch's."""
        w, index = ctx.saved_tensors
        meta = ctx.meta
        reduction, denom = meta[2:]
        grad = LinearBackward.apply(
            g, lambda a: _nll_put(a, w, index, *meta), lambda a: _nll_pick(a, w, index, reduction, denom)
        )
        return MaskedGradient.apply(grad, io.placeholder(0, grad), 1), None, None


def _nll_pick(x, w, index, reduction, denom):
    """The NLL loss of log-probabilities ``x``: -w x[index] over the class axis, reduced."""
    z = _class_last(x)
    # Without classes every target is ignored (any other is out of range): nothing is picked.
    picked = np.take_along_axis(z, index[..., None], axis=-1)[..., 0] if z.shape[-1] else w * 0
    return _reduce(-(w * picked), reduction, denom)


def _nll_put(g, w, index, shape, dtype, reduction, denom):
    """:func:`_nll_pick`'s gradient: -w g (scaled) at each sample's class, zeros elsewhere."""
    grad = backend_of(g, op="NLLLossBackward").zeros(shape, dtype)
    if reduction == "mean" and denom == 0:  # every target ignored: no sample has a gradient
        return grad
    values = -w * _grad_scale(g, reduction, denom)
    by_class = _class_last(grad)
    if by_class.shape[-1]:  # without classes there is nothing to put
        np.put_along_axis(by_class, index[..., None], values[..., None], axis=-1)
    return grad


@autocast_entry
@through_float32
def _classification(function, name, input, target, weight, ignore_index, reduction, **extra):
    _check_reduction(name, reduction)
    x, t = _arr(input), _arr(target)
    weight, probs = _check_classes(name, x, t, weight, ignore_index, function is _CrossEntropy)
    if probs:
        function = _SoftCrossEntropy
    else:
        target = t  # class indices carry no gradient
    return function.apply(input, target, weight, ignore_index=ignore_index, reduction=reduction, **extra)


def cross_entropy(
    input,
    target,
    weight=None,
    size_average=None,
    ignore_index=-100,
    reduce=None,
    reduction="mean",
    label_smoothing=0.0,
):
    """Cross entropy between softmax(input) over dim 1 and ``target`` (torch.nn.functional.cross_entropy).

    ``input`` (N, C), (N, C, d1, ...) or (C,) logits; ``target`` class indices (N,), (N, d1, ...)
    or () (integers; ``ignore_index`` entries contribute nothing), or class probabilities of
    ``input``'s shape (floats). ``weight`` (C,) rescales each class; ``label_smoothing`` mixes the
    target with the uniform distribution. 'mean' divides by the summed weights of the
    non-ignored targets (class indices) or by the number of samples (probabilities).
    """
    reduction = _legacy_reduction("cross_entropy", size_average, reduce, reduction)
    return _cross_entropy("cross_entropy", input, target, weight, ignore_index, reduction, label_smoothing)


def _cross_entropy(name, input, target, weight, ignore_index, reduction, label_smoothing):
    if not (
        isinstance(label_smoothing, numbers.Real)
        and not isinstance(label_smoothing, bool)
        and 0 <= label_smoothing <= 1
    ):
        raise ValueError(f"{name}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    if isinstance(input, Tensor) and input.dtype == np.float16:  # the kernels take float32: computed there
        widened = [t.float() if isinstance(t, Tensor) and t.dtype == np.float16 else t for t in (target, weight)]
        loss = _cross_entropy(name, input.float(), *widened[:1], widened[1], ignore_index, reduction, label_smoothing)
        return loss.to(np.float16)  # rounded once, as PyTorch's float16 loss
    return _classification(
        _CrossEntropy, name, input, target, weight, ignore_index, reduction, label_smoothing=float(label_smoothing)
    )


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood of class-index targets given log-probabilities ``input``
    (N, C, d1, ...) or (C,) (torch.nn.functional.nll_loss)."""
    reduction = _legacy_reduction("nll_loss", size_average, reduce, reduction)
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

    @staticmethod
    def backward_graph(ctx, io, g):
        from .functional import logsigmoid  # functional imports this module

        x, y, _ = ctx.saved_tensors
        weight, pos_weight, reduction, _ = ctx.meta
        scale = _graph_scale(g, reduction, x.size)
        if weight is not None:
            scale = scale * weight
        xt, yt = io.input(0, x), io.input(1, y)
        grad_x = grad_y = None
        if ctx.needs_input_grad[0]:
            lw = 1 if pos_weight is None else 1 + (pos_weight - 1) * yt
            grad_x = ((1 - yt) - lw * (-xt).sigmoid()) * scale
        if ctx.needs_input_grad[1]:
            grad_y = (-xt if pos_weight is None else -(pos_weight - 1) * logsigmoid(xt) - xt) * scale
        return grad_x, grad_y, None, None


def binary_cross_entropy_with_logits(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None
):
    """Binary cross entropy of sigmoid(input) against ``target`` in [0, 1], computed stably from
    the logits (torch.nn.functional.binary_cross_entropy_with_logits):
    -weight * [pos_weight * y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))]. ``weight`` broadcasts
    against input; ``pos_weight`` against the last (class) dimension. Both are constants."""
    reduction = _legacy_reduction("binary_cross_entropy_with_logits", size_average, reduce, reduction)
    return _bce_with_logits("binary_cross_entropy_with_logits", input, target, weight, reduction, pos_weight)


@autocast_entry
@through_float32
def _bce_with_logits(name, input, target, weight, reduction, pos_weight):
    _check_reduction(name, reduction)
    x, t = _arr(input), _arr(target)
    _float_input(name, "input", x)
    _same_shape(name, x, t)
    extras = _broadcast_constants(name, x, weight=weight, pos_weight=pos_weight)
    return _BCEWithLogits.apply(input, target, reduction=reduction, **extras)


def _broadcast_constants(name, x, **values):
    """The given (not None) ``values`` as arrays of ``x``'s dtype, each checked to broadcast to
    ``x``'s shape; ValueError naming ``name``, the value and the shapes otherwise."""
    arrays = {}
    for what, value in values.items():
        if value is None:
            continue
        _constant(name, what, value)
        value = _arr(value)
        try:
            if np.broadcast_shapes(value.shape, x.shape) != x.shape:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{name}: {what} of shape {value.shape} does not broadcast to input shape {x.shape}"
            ) from None
        arrays[what] = value.astype(x.dtype, copy=False)
    return arrays


class _BCE(Function):
    """-weight [y log(x) + (1 - y) log(1 - x)] for probabilities x, each log clamped at -100 (so
    x = 0 or 1 gives a finite loss, as PyTorch); d/dx = weight (x - y) / max(x (1 - x), 1e-12)."""

    @staticmethod
    def forward(ctx, x, y, weight=None, reduction="mean"):
        y = y.astype(x.dtype, copy=False)
        with np.errstate(divide="ignore"):
            log_x, log_1mx = np.maximum(np.log(x), -100), np.maximum(np.log1p(-x), -100)
        loss = (y - 1) * log_1mx - y * log_x
        if weight is not None:
            loss = loss * weight
        ctx.save_for_backward(x, y, log_x, log_1mx)
        ctx.meta = (weight, reduction)
        return _reduce(loss.astype(x.dtype, copy=False), reduction)

    @staticmethod
    def backward(ctx, g):
        x, y, log_x, log_1mx = ctx.saved_tensors
        weight, reduction = ctx.meta
        scale = _grad_scale(g, reduction, x.size)
        if weight is not None:
            scale = scale * weight
        grad_x = grad_y = None
        if ctx.needs_input_grad[0]:
            grad_x = np.broadcast_to(scale * (x - y) / np.maximum((1 - x) * x, 1e-12), x.shape)
        if ctx.needs_input_grad[1]:
            grad_y = np.broadcast_to(scale * (log_1mx - log_x), x.shape)
        return grad_x, grad_y, None

    @staticmethod
    def backward_graph(ctx, io, g):
        x, y, _, _ = ctx.saved_tensors
        weight, reduction = ctx.meta
        scale = _graph_scale(g, reduction, x.size)
        if weight is not None:
            scale = scale * weight
        xt = io.input(0, x)
        grad_x = grad_y = None
        if ctx.needs_input_grad[0]:
            grad_x = scale * (xt - io.input(1, y)) / ((1 - xt) * xt).clamp_min(1e-12)
        if ctx.needs_input_grad[1]:
            grad_y = scale * ((-xt).log1p().clamp_min(-100) - xt.log().clamp_min(-100))
        return grad_x, grad_y, None


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """Binary cross entropy of probabilities ``input`` in [0, 1] against ``target`` in [0, 1]
    (torch.nn.functional.binary_cross_entropy): -weight [y log(x) + (1 - y) log(1 - x)], each log
    clamped at -100. ``weight`` (a constant) broadcasts against input."""
    reduction = _legacy_reduction("binary_cross_entropy", size_average, reduce, reduction)
    return _bce("binary_cross_entropy", input, target, weight, reduction)


@autocast_entry
@through_float32
def _bce(name, input, target, weight, reduction):
    _check_reduction(name, reduction)
    x, t = _arr(input), _arr(target)
    _float_input(name, "input", x)
    _same_shape(name, x, t)
    for what, a in (("input", x), ("target", t)):
        outside = ~((a >= 0) & (a <= 1))  # NaN too
        if outside.any():
            raise ValueError(f"{name}: all elements of {what} should be between 0 and 1, got {a[outside].flat[0]!r}")
    return _BCE.apply(input, target, reduction=reduction, **_broadcast_constants(name, x, weight=weight))


class _KLDiv(Function):
    """target (log target - input) pointwise, 0 where target is 0 (``input`` holds
    log-probabilities; with ``log_target`` the target does too: exp(t) (t - input))."""

    @staticmethod
    def forward(ctx, x, t, reduction="mean", log_target=False):
        t = t.astype(x.dtype, copy=False)
        if log_target:
            loss = np.exp(t) * (t - x)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                loss = np.where(t == 0, 0, t * np.log(t)) - t * x  # xlogy(t, t) - t x
        denom = x.shape[0] if reduction == "batchmean" and x.ndim else x.size
        reduction = "mean" if reduction == "batchmean" else reduction  # a mean over dimension 0
        ctx.save_for_backward(x, t)
        ctx.meta = (reduction, log_target, denom)
        return _reduce(loss.astype(x.dtype, copy=False), reduction, denom)

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        reduction, log_target, denom = ctx.meta
        scale = _grad_scale(g, reduction, denom)
        p = np.exp(t) if log_target else t
        grad_x = -p * scale if ctx.needs_input_grad[0] else None
        grad_t = None
        if ctx.needs_input_grad[1]:
            if log_target:
                grad_t = p * (t - x + 1) * scale
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    grad_t = np.where(t > 0, np.log(t) + 1 - x, 0) * scale
        return grad_x, grad_t

    @staticmethod
    def backward_graph(ctx, io, g):
        x, t = ctx.saved_tensors
        reduction, log_target, denom = ctx.meta
        scale = _graph_scale(g, reduction, denom)
        tt = io.input(1, t)
        p = tt.exp() if log_target else tt
        grad_x = -p * scale if ctx.needs_input_grad[0] else None
        grad_t = None
        if ctx.needs_input_grad[1]:
            if log_target:
                grad_t = p * (tt - io.input(0, x) + 1) * scale
            else:  # (the log of 1 where t <= 0, whose gradient is 0 there: no 0 * inf)
                positive = t > 0
                log_t = Where.apply(positive, tt, 1.0).log()
                grad_t = Where.apply(positive, log_t + 1 - io.input(0, x), 0.0) * scale
        return grad_x, grad_t


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """Kullback-Leibler divergence of ``target`` from ``input`` (log-probabilities), pointwise
    target (log target - input) (torch.nn.functional.kl_div). ``reduction`` 'batchmean' divides
    the sum by the batch size (dimension 0) and gives the divergence itself; 'mean' divides by the
    element count. The deprecated ``size_average`` and ``reduce`` give the reduction (no warning
    about 'mean' then, as PyTorch)."""
    legacy = size_average is not None or reduce is not None
    reduction = _legacy_reduction("kl_div", size_average, reduce, reduction)
    return _kl_div("kl_div", input, target, reduction, log_target, warn_mean=not legacy)


@autocast_entry
@through_float32
def _kl_div(name, input, target, reduction, log_target, warn_mean=True):
    if reduction not in _REDUCTIONS + ("batchmean",):
        raise ValueError(f"{name}: reduction must be 'mean', 'batchmean', 'sum' or 'none', got {reduction!r}")
    x, t = _arr(input), _arr(target)
    _float_input(name, "input", x)
    _same_shape(name, x, t)
    if reduction == "mean" and warn_mean:
        warnings.warn(
            f"{name}: reduction 'mean' divides the total loss by both the batch size and the support size; "
            "'batchmean' divides only by the batch size, which is the KL divergence's definition",
            UserWarning,
            stacklevel=3,
        )
    return _KLDiv.apply(input, target, reduction=reduction, log_target=bool(log_target))


# ---------------------------------------------------------------------------------------------
# Metric-learning losses
# ---------------------------------------------------------------------------------------------


def p_norm(a, p: float, axis: int):
    """||a||_p along ``axis`` (kept), for p > 0 or inf."""
    if p == 2:
        return np.sqrt((a * a).sum(axis=axis, keepdims=True))
    if p == 1:
        return np.abs(a).sum(axis=axis, keepdims=True)
    if p == np.inf:
        return np.abs(a).max(axis=axis, keepdims=True)
    return (np.abs(a) ** p).sum(axis=axis, keepdims=True) ** (1.0 / p)


def p_norm_grad(a, norm, p: float, axis: int):
    """d ||a||_p / d a for :func:`p_norm`'s ``norm``; 0 where the norm is 0 (PyTorch's choice),
    and for p = inf shared equally by the elements of largest magnitude."""
    safe = np.where(norm == 0, 1, norm)
    if p == 2:
        d = a / safe
    elif p == 1:
        d = np.sign(a)
    elif p == np.inf:
        top = np.abs(a) == norm
        d = np.sign(a) * top / top.sum(axis=axis, keepdims=True)
    else:  # 0 at a zero element (0 ** (p - 1) is inf for p < 1), as PyTorch
        d = np.where(a == 0, 0, np.sign(a) * (np.abs(a) / safe) ** (p - 1))
    return np.where(norm == 0, 0, d).astype(a.dtype, copy=False)


class _PairwiseDistance(Function):
    """||x1 - x2 + eps||_p over the last dimension."""

    @staticmethod
    def forward(ctx, x1, x2, p=2.0, eps=1e-6, keepdim=False):
        diff = x1 - x2 + x1.dtype.type(eps)
        scalar = diff.ndim == 0  # 0-d inputs: one vector of one element, a 0-d result (keepdim too)
        diff = diff.reshape(1) if scalar else diff
        norm = p_norm(diff, p, -1)
        ctx.save_for_backward(diff, norm)
        ctx.meta = (p, keepdim and not scalar, np.shape(x1), np.shape(x2))
        return norm if keepdim and not scalar else norm[..., 0]

    @staticmethod
    def backward(ctx, g):
        diff, norm = ctx.saved_tensors
        p, keepdim, shape1, shape2 = ctx.meta
        d = p_norm_grad(diff, norm, p, -1) * (g if keepdim else g[..., None])
        return (
            unbroadcast(d, shape1) if ctx.needs_input_grad[0] else None,
            unbroadcast(-d, shape2) if ctx.needs_input_grad[1] else None,
        )

    @staticmethod
    def backward_graph(ctx, io, g):
        """:func:`p_norm_grad` as Tensor ops of the output and of diff = x1 - x2 + eps: the saved diff
        plus the change of x1, minus that of x2 (see :class:`_Change`)."""
        diff, norm = ctx.saved_tensors
        p, keepdim, shape1, shape2 = ctx.meta
        zero = np.zeros((), diff.dtype)
        diff_t = Tensor._wrap(diff)
        if ctx.needs_input_grad[0]:
            diff_t = diff_t + _change(io, 0, np.broadcast_to(zero, shape1))
        if ctx.needs_input_grad[1]:
            diff_t = diff_t - _change(io, 1, np.broadcast_to(zero, shape2))
        at_zero = norm == 0
        norm_t = io.output(0, norm if keepdim else norm[..., 0])
        safe = Where.apply(at_zero, 1.0, norm_t if keepdim else norm_t.unsqueeze(-1))
        if p == 2:
            d = diff_t / safe
        elif p == 1:
            d = diff_t.sign()
        elif p == np.inf:  # a constant share of the elements of largest magnitude (sign: derivative 0)
            top = np.abs(diff) == norm
            d = diff_t.sign() * (top / top.sum(axis=-1, keepdims=True)).astype(diff.dtype)
        else:
            d = Where.apply(diff == 0, 0.0, diff_t.sign() * (diff_t.abs() / safe) ** (p - 1))
        d = Where.apply(at_zero, 0.0, d) * (g if keepdim else g.unsqueeze(-1))
        return (
            unbroadcast_tensor(d, shape1) if ctx.needs_input_grad[0] else None,
            unbroadcast_tensor(-d, shape2) if ctx.needs_input_grad[1] else None,
        )


@through_float32
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


def triplet_margin_loss(
    anchor,
    positive,
    negative,
    margin=1.0,
    p=2,
    eps=1e-6,
    swap=False,
    size_average=None,
    reduce=None,
    reduction="mean",
):
    """max(d(a, p) - d(a, n) + margin, 0) with d = pairwise_distance(., ., p, eps)
    (torch.nn.functional.triplet_margin_loss); ``swap`` uses min(d(a, n), d(p, n)) as the
    negative distance. Inputs (N, D) or (D,), all of one shape."""
    reduction = _legacy_reduction("triplet_margin_loss", size_average, reduce, reduction)
    return _triplet("triplet_margin_loss", anchor, positive, negative, margin, p, eps, swap, reduction)


def _triplet(name, anchor, positive, negative, margin, p, eps, swap, reduction):
    _check_reduction(name, reduction)
    if not margin > 0:  # as PyTorch: a margin of 0 or less would never separate the pairs
        raise ValueError(f"{name}: margin must be greater than 0, got {margin}")
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


def cosine_embedding_loss(input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"):
    """1 - cos(input1, input2) where target is 1, max(0, cos(input1, input2) - margin) where it is
    -1 (torch.nn.functional.cosine_embedding_loss; cos uses |x|^2 + 1e-12 as PyTorch does).
    Inputs (N, D) or (D,), target (N,) or () of 1 and -1."""
    reduction = _legacy_reduction("cosine_embedding_loss", size_average, reduce, reduction)
    return _cosine_embedding("cosine_embedding_loss", input1, input2, target, margin, reduction)


def _cosine_embedding(name, x1, x2, target, margin, reduction):
    _check_reduction(name, reduction)
    y = _arr(target)
    _check_embeddings(name, [("x1", _arr(x1).shape), ("x2", _arr(x2).shape)], ("target", y.shape))
    _check_labels(name, "target", y, (1, -1))
    a, b = (x if isinstance(x, Tensor) else Tensor._wrap(x) for x in (x1, x2))
    cos = (a * b).sum(-1) / (((a * a).sum(-1) + 1e-12) * ((b * b).sum(-1) + 1e-12)).sqrt()
    return _reduce_tensor(where(y == 1, 1 - cos, (cos - float(margin)).relu()), reduction)


# ---------------------------------------------------------------------------------------------
# Margin and ranking losses
# ---------------------------------------------------------------------------------------------


def _floating_tensor(name, what, x):
    """``x`` as a Tensor, TypeError naming ``what`` unless floating-point."""
    x = _as_tensor(x)
    _float_input(name, what, x)
    return x


def _broadcast_shape(name, shapes):
    try:
        return np.broadcast_shapes(*(s for _, s in shapes))
    except ValueError:
        listed = ", ".join(f"{what} {tuple(s)}" for what, s in shapes)
        raise ValueError(f"{name}: shapes do not broadcast: {listed}") from None


def margin_ranking_loss(input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"):
    """max(0, -target (input1 - input2) + margin), reduced (torch.nn.functional.margin_ranking_loss):
    ``target`` 1 where input1 should rank higher, -1 where input2 should. The three must have
    the same number of dimensions (they broadcast); every argument is differentiable."""
    reduction = _legacy_reduction("margin_ranking_loss", size_average, reduce, reduction)
    return _margin_ranking("margin_ranking_loss", input1, input2, target, margin, reduction)


def _margin_ranking(name, input1, input2, target, margin, reduction):
    _check_reduction(name, reduction)
    a, b = _floating_tensor(name, "input1", input1), _floating_tensor(name, "input2", input2)
    t = _as_tensor(target)
    if not a.ndim == b.ndim == t.ndim:
        raise ValueError(
            f"{name}: input1, input2 and target must have the same number of dimensions, got shapes "
            f"input1 {tuple(a.shape)}, input2 {tuple(b.shape)}, target {tuple(t.shape)}"
        )
    _broadcast_shape(name, [("input1", a.shape), ("input2", b.shape), ("target", t.shape)])
    return _reduce_tensor((-t * (a - b) + margin).clamp_min(0), reduction)


def hinge_embedding_loss(input, target, margin=1.0, size_average=None, reduce=None, reduction="mean"):
    """input where target is 1, max(0, margin - input) where it is -1 (torch.nn.functional.
    hinge_embedding_loss; an element whose target is neither gets both terms), reduced. Input and
    target broadcast; the target is not differentiable."""
    reduction = _legacy_reduction("hinge_embedding_loss", size_average, reduce, reduction)
    return _hinge_embedding("hinge_embedding_loss", input, target, margin, reduction)


def _hinge_embedding(name, input, target, margin, reduction):
    _check_reduction(name, reduction)
    x = _floating_tensor(name, "input", input)
    t = _arr(target)
    _broadcast_shape(name, [("input", x.shape), ("target", t.shape)])
    zeros = Tensor._wrap(np.zeros(x.shape, x.dtype))
    loss = where(t != 1, (margin - x).clamp_min(0), zeros) + where(t != -1, x, zeros)
    return _reduce_tensor(loss, reduction)


class _SoftMargin(Function):
    """log1p(exp(-target input)) elementwise (PyTorch's formula: inf where exp overflows), reduced;
    d/d input = -target z / (1 + z) with z = exp(-target input)."""

    @staticmethod
    def forward(ctx, x, t, reduction="mean"):
        t = np.broadcast_to(t.astype(x.dtype, copy=False), x.shape)
        with np.errstate(over="ignore"):
            z = np.exp(-x * t)
        ctx.save_for_backward(t, z)
        ctx.meta = (reduction, x.size)
        return _reduce(np.log1p(z).astype(x.dtype, copy=False), reduction)

    @staticmethod
    def backward(ctx, g):
        t, z = ctx.saved_tensors
        reduction, size = ctx.meta
        norm = z.dtype.type(1.0 / max(size, 1) if reduction == "mean" else 1.0)  # (no gradient when empty)
        with np.errstate(invalid="ignore", over="ignore"):
            grad = (t * z * -norm) / (z + 1) * g
        return grad.astype(z.dtype, copy=False), None

    @staticmethod
    def backward_graph(ctx, io, g):
        """backward's formula on z = exp(-t (x + dx)) = exp(-t dx) z, dx the change of x (see
        :class:`_Change`; x was not saved)."""
        t, z = ctx.saved_tensors
        reduction, size = ctx.meta
        norm = z.dtype.type(1.0 / max(size, 1) if reduction == "mean" else 1.0)
        z_t = (_change(io, 0, z) * -t).exp() * z
        return (t * z_t * -norm) / (z_t + 1) * g, None


def soft_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """log(1 + exp(-target * input)), reduced (torch.nn.functional.soft_margin_loss; the two-class
    logistic loss for targets 1 and -1). ``target`` broadcasts to input's shape; it is a constant."""
    reduction = _legacy_reduction("soft_margin_loss", size_average, reduce, reduction)
    return _soft_margin("soft_margin_loss", input, target, reduction)


@through_float32
@autocast_entry
def _soft_margin(name, input, target, reduction):
    _check_reduction(name, reduction)
    x, t = _arr(input), _arr(target)
    _float_input(name, "input", x)
    _constant(name, "target", target)
    if _broadcast_shape(name, [("input", x.shape), ("target", t.shape)]) != x.shape:
        raise ValueError(f"{name}: target of shape {t.shape} does not broadcast to input shape {x.shape}")
    return _SoftMargin.apply(input, t, reduction=reduction)


def multilabel_soft_margin_loss(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """-(y log sigmoid(x) + (1 - y) log sigmoid(-x)), times ``weight`` (per class, broadcast),
    averaged over the classes (the last dimension), reduced over the samples
    (torch.nn.functional.multilabel_soft_margin_loss). Input, target and weight are differentiable."""
    reduction = _legacy_reduction("multilabel_soft_margin_loss", size_average, reduce, reduction)
    return _multilabel_soft_margin("multilabel_soft_margin_loss", input, target, weight, reduction)


def _multilabel_soft_margin(name, input, target, weight, reduction):
    from .functional import logsigmoid  # functional imports this module

    _check_reduction(name, reduction)
    x = _floating_tensor(name, "input", input)
    if x.ndim == 0:
        raise ValueError(f"{name}: input must have a class dimension (C,) or (N, C), got shape {tuple(x.shape)}")
    y = _as_tensor(target)
    shapes = [("input", x.shape), ("target", y.shape)] + ([] if weight is None else [("weight", _arr(weight).shape)])
    _broadcast_shape(name, shapes)
    loss = -(y * logsigmoid(x) + (1 - y) * logsigmoid(-x))
    if weight is not None:
        loss = loss * _as_tensor(weight)
    classes = x.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        loss = loss.sum(x.ndim - 1) / classes
    return _reduce_tensor(loss, reduction)


def _check_margin_input(name, x):
    """(frames, classes) of a multi-margin input: (N, C) with C > 0, (C,) with C > 0, or ()."""
    if not ((x.ndim == 2 and x.shape[1] != 0) or (x.ndim == 1 and x.shape[0] != 0) or x.ndim == 0):
        raise ValueError(f"{name}: expected input of shape (N, C) or (C,) with C > 0, or (), got {tuple(x.shape)}")
    if x.ndim <= 1:
        return 1, (1 if x.ndim == 0 else x.shape[0])
    return x.shape[0], x.shape[1]


def _integer_target(name, t):
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name}: target must hold class indices (an integer dtype), got dtype {t.dtype}")


class _MultiMargin(Function):
    """sum over d != y of w[y] max(0, margin - x[y] + x[d])^p / C per frame (PyTorch's multi-class
    hinge loss; the gradient is 0 where the hinge is exactly 0)."""

    @staticmethod
    def forward(ctx, x, t, weight=None, p=1, margin=1.0, reduction="mean", frames=1, classes=1, rows_out=False):
        x2 = x.reshape(frames, classes)
        t = t.reshape(frames).astype(np.intp)
        dtype = x.dtype
        xt = np.take_along_axis(x2, t[:, None], axis=1)
        z = (dtype.type(margin) - xt) + x2
        active = (z > 0) & (np.arange(classes) != t[:, None])
        h = np.where(active, z if p == 1 else z * z, 0).astype(dtype, copy=False)
        if weight is not None:
            h = h * weight[t][:, None]
        rows = h.sum(axis=1) / dtype.type(classes)
        ctx.save_for_backward(z, active, t)
        ctx.meta = (x.shape, weight, p, reduction, frames, classes)
        if reduction == "none":
            return rows if rows_out else rows.reshape(())
        return _reduce(rows, reduction)

    @staticmethod
    def backward(ctx, g):
        z, active, t = ctx.saved_tensors
        shape, weight, p, reduction, frames, classes = ctx.meta
        dtype = z.dtype
        step = dtype.type(1.0 / max(frames * classes, 1) if reduction == "mean" else 1.0 / classes)
        h = np.where(active, step if p == 1 else 2 * step * z, 0).astype(dtype, copy=False)
        if weight is not None:
            h = h * weight[t][:, None]
        np.put_along_axis(h, t[:, None], -h.sum(axis=1, keepdims=True), axis=1)
        g = np.asarray(g, dtype)
        h = h * (g.reshape(frames, 1) if g.ndim and reduction == "none" else g)
        return h.reshape(shape), None, None


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None, reduction="mean"):
    """The multi-class hinge loss (torch.nn.functional.multi_margin_loss): per sample
    sum_{d != y} w[y] max(0, margin - x[y] + x[d])^p / C, ``p`` 1 or 2. ``input`` (N, C), (C,) or
    (); ``target`` class indices (N,) or (); ``weight`` (C,) a constant. 'none' gives (N,)
    (a 0-d loss for a 0-d target)."""
    reduction = _legacy_reduction("multi_margin_loss", size_average, reduce, reduction)
    return _multi_margin("multi_margin_loss", input, target, p, margin, weight, reduction)


@through_float32
@autocast_entry
def _multi_margin(name, input, target, p, margin, weight, reduction):
    _check_reduction(name, reduction)
    if p != 1 and p != 2:
        raise ValueError(f"{name}: only p == 1 and p == 2 are supported, got p={p!r}")
    x, t = _arr(input), _arr(target)
    _float_input(name, "input", x)
    frames, classes = _check_margin_input(name, x)
    _integer_target(name, t)
    if t.ndim > 1 or t.size != frames:
        raise ValueError(
            f"{name}: target must have shape ({frames},) (one class index per sample) for input of "
            f"shape {tuple(x.shape)}, got {tuple(t.shape)}"
        )
    if weight is not None:
        _constant(name, "weight", weight)
        weight = _arr(weight)
        if weight.ndim != 1:
            raise ValueError(f"{name}: weight must be one-dimensional, got shape {tuple(weight.shape)}")
        if weight.shape[0] != classes:
            raise ValueError(f"{name}: weight must have {classes} elements (one per class), got {weight.shape[0]}")
        weight = weight.astype(x.dtype, copy=False)
    if t.size:
        bad = (t < 0) | (t >= classes)
        if bad.any():
            raise ValueError(f"{name}: target {int(t[bad].flat[0])} is out of range for {classes} classes")
    return _MultiMargin.apply(
        input,
        t,
        weight,
        p=int(p),
        margin=float(margin),
        reduction=reduction,
        frames=frames,
        classes=classes,
        rows_out=t.ndim > 0,
    )


class _MultiLabelMargin(Function):
    """sum over the target classes j (the leading entries of a target row, up to the first -1) and
    the non-target classes d of max(0, 1 - x[j] + x[d]), divided by C (PyTorch's multi-label hinge)."""

    @staticmethod
    def forward(ctx, x, t, reduction="mean", frames=1, classes=1, rows_out=False):
        dtype = x.dtype
        x2 = x.reshape(frames, classes)
        t = t.reshape(frames, classes).astype(np.intp)
        valid = np.cumprod(t >= 0, axis=1).astype(bool)  # the targets before the first -1
        index = np.where(valid, t, 0)
        is_target = np.zeros((frames, classes), bool)
        rows_of = np.broadcast_to(np.arange(frames)[:, None], t.shape)
        is_target[rows_of[valid], index[valid]] = True
        xt = np.take_along_axis(x2, index, axis=1)
        z = (1 - xt)[:, :, None] + x2[:, None, :]  # (frame, target slot, class)
        active = valid[:, :, None] & ~is_target[:, None, :] & (z > 0)
        rows = np.where(active, z, 0).sum(axis=(1, 2)).astype(dtype, copy=False) / dtype.type(classes)
        ctx.save_for_backward(active, index)
        ctx.meta = (x.shape, dtype, reduction, frames, classes)
        if reduction == "none":
            return rows if rows_out else rows.reshape(())
        return _reduce(rows, reduction)

    @staticmethod
    def backward(ctx, g):
        active, index = ctx.saved_tensors
        shape, dtype, reduction, frames, classes = ctx.meta
        step = dtype.type(1.0 / max(frames * classes, 1) if reduction == "mean" else 1.0 / classes)
        counts = active.astype(dtype)
        grad = counts.sum(axis=1) * step  # + step per (target, class) pair on the class
        per_slot = -counts.sum(axis=2) * step  # - step per pair on the target
        np.add.at(grad, (np.broadcast_to(np.arange(frames)[:, None], index.shape), index), per_slot)
        g = np.asarray(g, dtype)
        grad = grad * (g.reshape(frames, 1) if g.ndim and reduction == "none" else g)
        return grad.reshape(shape), None


def multilabel_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """The multi-label hinge loss (torch.nn.functional.multilabel_margin_loss): per sample
    sum_{j, d} max(0, 1 - x[y_j] + x[d]) / C over the target classes y_j (a target row's leading
    class indices, ended by the first -1) and the classes d not among them. ``input`` (N, C), (C,)
    or (); ``target`` integers of input's shape. 'none' gives (N,) (a 0-d loss for 1-d input)."""
    reduction = _legacy_reduction("multilabel_margin_loss", size_average, reduce, reduction)
    return _multilabel_margin("multilabel_margin_loss", input, target, reduction)


@through_float32
@autocast_entry
def _multilabel_margin(name, input, target, reduction):
    _check_reduction(name, reduction)
    x, t = _arr(input), _arr(target)
    _float_input(name, "input", x)
    frames, classes = _check_margin_input(name, x)
    _integer_target(name, t)
    ok = t.ndim <= 1 and t.size == classes if x.ndim <= 1 else t.shape == (frames, classes)
    if not ok:
        expected = f"({classes},)" if x.ndim <= 1 else f"({frames}, {classes})"
        raise ValueError(
            f"{name}: target must have shape {expected} for input of shape {tuple(x.shape)}, got {t.shape}"
        )
    if t.size:
        bad = (t < -1) | (t >= classes)
        if bad.any():
            raise ValueError(
                f"{name}: target {int(t[bad].flat[0])} is out of range for {classes} classes (-1 ends a row's targets)"
            )
    return _MultiLabelMargin.apply(input, t, reduction=reduction, frames=frames, classes=classes, rows_out=t.ndim > 1)


# ---------------------------------------------------------------------------------------------
# Likelihood losses
# ---------------------------------------------------------------------------------------------


def poisson_nll_loss(
    input, target, log_input=True, full=False, size_average=None, eps=1e-8, reduce=None, reduction="mean"
):
    """Negative log-likelihood of ``target`` under Poisson(rate) (torch.nn.functional.poisson_nll_loss):
    exp(input) - target input when ``log_input`` (input is the log rate), else
    input - target log(input + eps); ``full`` adds Stirling's term target log target - target +
    log(2 pi target) / 2 where target > 1. Input and target broadcast and are differentiable."""
    reduction = _legacy_reduction("poisson_nll_loss", size_average, reduce, reduction)
    return _poisson_nll("poisson_nll_loss", input, target, log_input, full, eps, reduction)


def _poisson_nll(name, input, target, log_input, full, eps, reduction):
    _check_reduction(name, reduction)
    x = _floating_tensor(name, "input", input)
    t = _as_tensor(target)
    _broadcast_shape(name, [("input", x.shape), ("target", t.shape)])
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = x.exp() - t * x if log_input else x - t * (x + eps).log()
        if full:
            stirling = t * t.log() - t + 0.5 * (2 * np.pi * t).log()
            loss = loss + where(t <= 1, 0.0, stirling)
    return _reduce_tensor(loss, reduction)


class _ClampedNoGrad(PassGradient):
    """max(x, eps) whose gradient passes unchanged (PyTorch clamps gaussian_nll_loss's var in place
    under no_grad)."""

    @staticmethod
    def forward(ctx, x, eps=0.0):
        return np.maximum(x, x.dtype.type(eps))


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """Negative log-likelihood of ``target`` under Normal(input, var) (torch.nn.functional.
    gaussian_nll_loss): (log max(var, eps) + (input - target)^2 / max(var, eps)) / 2, plus
    log(2 pi) / 2 when ``full``. ``var`` is a number, input's shape, input's shape without the last
    dimension, or input's shape with one dimension of size 1; its entries must be >= 0. The clamp
    at ``eps`` passes var's gradient unchanged (as PyTorch)."""
    return _gaussian_nll("gaussian_nll_loss", input, target, var, full, eps, reduction)


def _gaussian_nll(name, input, target, var, full, eps, reduction):
    x = _floating_tensor(name, "input", input)
    if isinstance(var, numbers.Real) and not isinstance(var, bool):
        if var < 0:
            raise ValueError(f"{name}: var has negative entry/entries, got {var}")
        var = Tensor._wrap(np.full(x.shape, var, x.dtype))
    else:
        var = _as_tensor(var)
        if (_arr(var) < 0).any():
            raise ValueError(f"{name}: var has negative entry/entries")
    if var.shape != x.shape:
        if x.shape[:-1] == var.shape:  # one variance per sample (homoscedastic)
            var = var.unsqueeze(-1)
        elif not (
            x.ndim == var.ndim and sum(v for i, v in zip(x.shape, var.shape) if i != v) == 1
        ):  # else: one dimension of size 1, broadcast
            raise ValueError(
                f"{name}: var of shape {tuple(var.shape)} is of incorrect size for input of shape "
                f"{tuple(x.shape)} (expected input's shape, it without the last dimension, or one "
                "dimension of size 1)"
            )
    _check_reduction(name, reduction)
    t = _as_tensor(target)
    _broadcast_shape(name, [("input", x.shape), ("target", t.shape), ("var", var.shape)])
    var = _ClampedNoGrad.apply(var, eps=float(eps))
    loss = 0.5 * (var.log() + (x - t) ** 2 / var)
    if full:
        loss = loss + 0.5 * np.log(2 * np.pi)
    return _reduce_tensor(loss, reduction)


def triplet_margin_with_distance_loss(
    anchor, positive, negative, *, distance_function=None, margin=1.0, swap=False, reduction="mean"
):
    """max(d(a, p) - d(a, n) + margin, 0) for any distance ``d`` (a callable of two Tensors; default
    :func:`pairwise_distance`) (torch.nn.functional.triplet_margin_with_distance_loss); ``swap``
    uses min(d(a, n), d(p, n)) as the negative distance. The inputs must have one number of
    dimensions; ``margin`` must be > 0."""
    return _triplet_with_distance(
        "triplet_margin_with_distance_loss", anchor, positive, negative, distance_function, margin, swap, reduction
    )


def _triplet_with_distance(name, anchor, positive, negative, distance_function, margin, swap, reduction):
    _check_reduction(name, reduction)
    if not margin > 0:
        raise ValueError(f"{name}: margin must be greater than 0, got {margin}")
    a, p, n = (_as_tensor(v) for v in (anchor, positive, negative))
    if not a.ndim == p.ndim == n.ndim:
        raise ValueError(
            f"{name}: anchor, positive and negative must have the same number of dimensions, got "
            f"anchor {a.ndim}D, positive {p.ndim}D and negative {n.ndim}D inputs"
        )
    distance = pairwise_distance if distance_function is None else distance_function
    if not callable(distance):
        raise TypeError(f"{name}: distance_function must be callable, got {type(distance).__name__}")
    d_pos, d_neg = distance(a, p), distance(a, n)
    if swap:
        d_neg = _minimum(d_neg, distance(p, n))
    return _reduce_tensor((margin + d_pos - d_neg).clamp_min(0), reduction)


def _minimum(a, b):
    """Elementwise minimum of two Tensors (ties share the gradient, as torch.minimum)."""
    return _as_tensor(a).minimum(_as_tensor(b))


# ---------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------

# The loss Modules run the functional forms' bodies with their own name in error messages.


class _Loss(Module):
    """A loss Module: ``reduction`` (or, deprecated, what ``size_average`` and ``reduce`` mean)."""

    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        reduction = _legacy_reduction(type(self).__name__, size_average, reduce, reduction, stacklevel=4)
        _check_reduction(type(self).__name__, reduction)
        self.reduction = reduction

    def extra_repr(self):
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


def _as_buffer(value):
    return None if value is None else value if isinstance(value, Tensor) else Tensor(value)


class MSELoss(_Loss):
    """Mean squared error (torch.nn.MSELoss)."""

    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)

    def forward(self, input, target):
        return _difference("MSELoss", input, target, self.reduction, "mse")


class L1Loss(_Loss):
    """Mean absolute error (torch.nn.L1Loss)."""

    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)

    def forward(self, input, target):
        return _difference("L1Loss", input, target, self.reduction, "l1")


class CrossEntropyLoss(_Loss):
    """See :func:`cross_entropy`; ``weight`` is a buffer (in the state dict when given)."""

    def __init__(
        self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean", label_smoothing=0.0
    ):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", _as_buffer(weight))
        self.ignore_index, self.label_smoothing = int(ignore_index), float(label_smoothing)

    def forward(self, input, target):
        return _cross_entropy(
            "CrossEntropyLoss", input, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing
        )


class NLLLoss(_Loss):
    """See :func:`nll_loss`."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", _as_buffer(weight))
        self.ignore_index = int(ignore_index)

    def forward(self, input, target):
        return _classification(_NLLLoss, "NLLLoss", input, target, self.weight, self.ignore_index, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """See :func:`binary_cross_entropy_with_logits`; ``weight`` and ``pos_weight`` are buffers."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", _as_buffer(weight))
        self.register_buffer("pos_weight", _as_buffer(pos_weight))

    def forward(self, input, target):
        return _bce_with_logits("BCEWithLogitsLoss", input, target, self.weight, self.reduction, self.pos_weight)


class TripletMarginLoss(_Loss):
    """See :func:`triplet_margin_loss`."""

    def __init__(self, margin=1.0, p=2.0, eps=1e-6, swap=False, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        if not margin > 0:
            raise ValueError(f"TripletMarginLoss: margin must be greater than 0, got {margin}")
        self.margin, self.p, self.eps, self.swap = float(margin), float(p), float(eps), bool(swap)

    def forward(self, anchor, positive, negative):
        return _triplet(
            "TripletMarginLoss", anchor, positive, negative, self.margin, self.p, self.eps, self.swap, self.reduction
        )


class ContrastiveLoss(_Loss):
    """See :func:`contrastive_loss`: y d^2 + (1 - y) max(0, margin - d)^2 on pairs (y = 1: similar).
    (No PyTorch counterpart: no deprecated arguments.)"""

    def __init__(self, margin=1.0, eps=1e-6, reduction="mean"):
        super().__init__(reduction=reduction)
        self.margin, self.eps = float(margin), float(eps)

    def forward(self, x1, x2, target):
        return _contrastive("ContrastiveLoss", x1, x2, target, self.margin, self.eps, self.reduction)


class CosineEmbeddingLoss(_Loss):
    """See :func:`cosine_embedding_loss`."""

    def __init__(self, margin=0.0, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.margin = float(margin)

    def forward(self, input1, input2, target):
        return _cosine_embedding("CosineEmbeddingLoss", input1, input2, target, self.margin, self.reduction)


class BCELoss(_Loss):
    """See :func:`binary_cross_entropy`; ``weight`` is a buffer."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", _as_buffer(weight))

    def forward(self, input, target):
        return _bce("BCELoss", input, target, self.weight, self.reduction)


class SmoothL1Loss(_Loss):
    """See :func:`smooth_l1_loss`."""

    def __init__(self, size_average=None, reduce=None, reduction="mean", beta=1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = float(beta)

    def forward(self, input, target):
        return _difference("SmoothL1Loss", input, target, self.reduction, "smooth_l1", self.beta)


class HuberLoss(_Loss):
    """See :func:`huber_loss`."""

    def __init__(self, reduction="mean", delta=1.0):
        if not isinstance(delta, (float, int)):
            raise TypeError(f"HuberLoss: delta must be a float or int, got {type(delta).__name__}")
        super().__init__(reduction=reduction)
        self.delta = float(delta)

    def forward(self, input, target):
        return _difference("HuberLoss", input, target, self.reduction, "huber", self.delta)


class KLDivLoss(Module):
    """See :func:`kl_div`; ``reduction`` may also be 'batchmean'."""

    def __init__(self, size_average=None, reduce=None, reduction="mean", log_target=False):
        super().__init__()
        self._legacy = size_average is not None or reduce is not None
        reduction = _legacy_reduction("KLDivLoss", size_average, reduce, reduction)
        if reduction not in _REDUCTIONS + ("batchmean",):
            raise ValueError(f"KLDivLoss: reduction must be 'mean', 'batchmean', 'sum' or 'none', got {reduction!r}")
        self.reduction, self.log_target = reduction, bool(log_target)

    def forward(self, input, target):
        return _kl_div("KLDivLoss", input, target, self.reduction, self.log_target, warn_mean=not self._legacy)


class MarginRankingLoss(_Loss):
    """See :func:`margin_ranking_loss`."""

    def __init__(self, margin=0.0, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.margin = float(margin)

    def forward(self, input1, input2, target):
        return _margin_ranking("MarginRankingLoss", input1, input2, target, self.margin, self.reduction)


class HingeEmbeddingLoss(_Loss):
    """See :func:`hinge_embedding_loss`."""

    def __init__(self, margin=1.0, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.margin = float(margin)

    def forward(self, input, target):
        return _hinge_embedding("HingeEmbeddingLoss", input, target, self.margin, self.reduction)


class SoftMarginLoss(_Loss):
    """See :func:`soft_margin_loss`."""

    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)

    def forward(self, input, target):
        return _soft_margin("SoftMarginLoss", input, target, self.reduction)


class MultiLabelSoftMarginLoss(_Loss):
    """See :func:`multilabel_soft_margin_loss`; ``weight`` is a buffer."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", _as_buffer(weight))

    def forward(self, input, target):
        return _multilabel_soft_margin("MultiLabelSoftMarginLoss", input, target, self.weight, self.reduction)


class MultiMarginLoss(_Loss):
    """See :func:`multi_margin_loss`; ``weight`` is a buffer."""

    def __init__(self, p=1, margin=1.0, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        if p != 1 and p != 2:
            raise ValueError(f"MultiMarginLoss: only p == 1 and p == 2 are supported, got p={p!r}")
        if weight is not None and np.ndim(_arr(weight)) != 1:
            raise ValueError(
                f"MultiMarginLoss: weight must be None or one-dimensional, got shape {tuple(_arr(weight).shape)}"
            )
        self.register_buffer("weight", _as_buffer(weight))
        self.p, self.margin = int(p), float(margin)

    def forward(self, input, target):
        return _multi_margin("MultiMarginLoss", input, target, self.p, self.margin, self.weight, self.reduction)


class MultiLabelMarginLoss(_Loss):
    """See :func:`multilabel_margin_loss`."""

    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)

    def forward(self, input, target):
        return _multilabel_margin("MultiLabelMarginLoss", input, target, self.reduction)


class PoissonNLLLoss(_Loss):
    """See :func:`poisson_nll_loss`."""

    def __init__(self, log_input=True, full=False, size_average=None, eps=1e-8, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.log_input, self.full, self.eps = bool(log_input), bool(full), float(eps)

    def forward(self, log_input, target):
        return _poisson_nll("PoissonNLLLoss", log_input, target, self.log_input, self.full, self.eps, self.reduction)


class GaussianNLLLoss(_Loss):
    """See :func:`gaussian_nll_loss`."""

    def __init__(self, *, full=False, eps=1e-6, reduction="mean"):
        super().__init__(reduction=reduction)
        self.full, self.eps = bool(full), float(eps)

    def forward(self, input, target, var):
        return _gaussian_nll("GaussianNLLLoss", input, target, var, self.full, self.eps, self.reduction)


class TripletMarginWithDistanceLoss(_Loss):
    """See :func:`triplet_margin_with_distance_loss`; ``distance_function`` defaults to a
    :class:`~deepkern.nn.PairwiseDistance` (a submodule, as PyTorch)."""

    def __init__(self, *, distance_function=None, margin=1.0, swap=False, reduction="mean"):
        super().__init__(reduction=reduction)
        if not margin > 0:
            raise ValueError(f"TripletMarginWithDistanceLoss: margin must be greater than 0, got {margin}")
        if distance_function is None:
            from .normalization import PairwiseDistance  # normalization imports functional, which imports this

            distance_function = PairwiseDistance()
        self.distance_function = distance_function
        self.margin, self.swap = float(margin), bool(swap)

    def forward(self, anchor, positive, negative):
        return _triplet_with_distance(
            "TripletMarginWithDistanceLoss",
            anchor,
            positive,
            negative,
            self.distance_function,
            self.margin,
            self.swap,
            self.reduction,
        )


class CTCLoss(_Loss):
    """The connectionist temporal classification loss (torch.nn.CTCLoss; F.ctc_loss):
    ``forward(log_probs, targets, input_lengths, target_lengths)``."""

    def __init__(self, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False):
        super().__init__(reduction=reduction)
        self.blank, self.zero_infinity = blank, zero_infinity

    def forward(self, log_probs, targets, input_lengths, target_lengths):
        from ._ctc import ctc_loss

        return ctc_loss(
            log_probs, targets, input_lengths, target_lengths, self.blank, self.reduction, self.zero_infinity
        )
