"""The activations (SiLU, ELU, Softplus, PReLU, Hardtanh, Mish), losses (BCELoss, SmoothL1Loss,
HuberLoss, KLDivLoss) and functional helpers (one_hot, pad, interpolate, normalize,
cosine_similarity) of deepkern.nn: forward against float64 NumPy references written out here
(float32 and float64), gradients by finite differences (float64), forward and backward against
torch.nn.functional where PyTorch is installed, the modules, the ops on every test device, and bad
arguments named in the errors."""

from __future__ import annotations

import math
import warnings

import deepkern as dk
import deepkern.nn.functional as F
import numpy as np
import pytest
from deepkern import nn

from checks import check, gradcheck, raises_naming
from conftest import to_host

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)

# ---- float64 references ----------------------------------------------------------------------


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softplus_ref(x, beta=1.0, threshold=20.0):
    return np.where(x * beta > threshold, x, np.log1p(np.exp(np.minimum(x * beta, threshold))) / beta)


def prelu_ref(x, w):
    w = w.reshape((1, -1) + (1,) * (x.ndim - 2)) if w.size > 1 else w.reshape(())
    return np.where(x > 0, x, w * x)


def reduce_ref(loss, reduction, denom=None):
    if reduction == "none":
        return loss
    return loss.sum() / (loss.size if denom is None else denom) if reduction in ("mean", "batchmean") else loss.sum()


def bce_ref(x, y, w=None, reduction="mean"):
    with np.errstate(divide="ignore"):
        loss = -(y * np.maximum(np.log(x), -100) + (1 - y) * np.maximum(np.log(1 - x), -100))
    return reduce_ref(loss if w is None else loss * w, reduction)


def smooth_l1_ref(x, y, reduction="mean", beta=1.0):
    d = np.abs(x - y)
    loss = d if beta == 0 else np.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta)
    return reduce_ref(loss, reduction)


def huber_ref(x, y, reduction="mean", delta=1.0):
    d = np.abs(x - y)
    return reduce_ref(np.where(d < delta, 0.5 * d**2, delta * (d - 0.5 * delta)), reduction)


def kl_div_ref(x, t, reduction="mean", log_target=False):
    p = np.exp(t) if log_target else t
    log_p = t if log_target else np.log(np.where(t > 0, t, 1))
    loss = np.where(p > 0, p * (log_p - x), 0)
    return reduce_ref(loss, reduction, x.shape[0] if reduction == "batchmean" else None)


def pad_ref(x, pad, mode="constant", value=0.0):
    widths = [(0, 0)] * (x.ndim - len(pad) // 2) + [(pad[2 * k], pad[2 * k + 1]) for k in range(len(pad) // 2)][::-1]
    numpy_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    extra = {"constant_values": value} if mode == "constant" else {}
    crop = tuple(slice(max(-lo, 0), n - max(-hi, 0)) for n, (lo, hi) in zip(x.shape, widths))  # negative: crop
    return np.pad(x[crop], [(max(lo, 0), max(hi, 0)) for lo, hi in widths], mode=numpy_mode, **extra)


def linear_source_ref(n_in, n_out, align_corners):
    """The source coordinate of each output position (float64), from the definitions: corner pixel
    centres aligned, or the pixel centres of both grids mapped onto each other (clamped at 0)."""
    j = np.arange(n_out, dtype=np.float64)
    if n_in == n_out:
        return j
    if align_corners:
        return j * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    return np.maximum((j + 0.5) * n_in / n_out - 0.5, 0)


def interpolate_ref(x, size, mode, align_corners=False):
    """Nearest: source index floor(j * n_in / n_out) (exact integer arithmetic). Linear modes: the
    weighted sum over the 2^d corner neighbours of each output point's source coordinates."""
    out = x
    for axis in range(2, x.ndim):
        n_in, n_out = x.shape[axis], size[axis - 2]
        if mode == "nearest":
            out = np.take(out, (np.arange(n_out) * n_in) // n_out, axis=axis)
            continue
        src = linear_source_ref(n_in, n_out, align_corners)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        w = (src - lo).reshape((-1,) + (1,) * (x.ndim - 1 - axis))
        out = np.take(out, lo, axis=axis) * (1 - w) + np.take(out, hi, axis=axis) * w
    return out


def normalize_ref(x, p=2.0, dim=1, eps=1e-12):
    norm = (
        np.abs(x).max(axis=dim, keepdims=True) if p == math.inf else (np.abs(x) ** p).sum(dim, keepdims=True) ** (1 / p)
    )
    return x / np.maximum(norm, eps)


def cosine_similarity_ref(a, b, dim=1, eps=1e-8):
    a, b = np.broadcast_arrays(a, b)
    na = np.maximum(np.sqrt((a * a).sum(dim, keepdims=True)), eps)
    nb = np.maximum(np.sqrt((b * b).sum(dim, keepdims=True)), eps)
    return (a / na * b / nb).sum(dim)


# ---- the cases -------------------------------------------------------------------------------


def normal(*shape, scale=1.0):
    return lambda rng: rng.standard_normal(shape) * scale


def probabilities(*shape):
    return lambda rng: 0.05 + 0.9 * rng.random(shape)


def positive(*shape):
    return lambda rng: rng.random(shape) + 0.05


def log_probabilities(*shape):
    def make(rng):
        z = rng.standard_normal(shape)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    return make


PRELU_W = np.array([0.25, -0.1, 0.6, 1.3])


# name -> (deepkern function of Tensors, torch function of tensors (tf = torch.nn.functional),
#          input makers, float64 reference or None). Every input gets a gradient.
def cases(tf=None):
    return {
        "silu": (F.silu, tf and tf.silu, [normal(3, 7, scale=3)], lambda x: x * sigmoid(x)),
        "elu": (
            lambda x: F.elu(x, 0.7),
            tf and (lambda x: tf.elu(x, 0.7)),
            [normal(4, 6)],
            lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)),
        ),
        "softplus": (F.softplus, tf and tf.softplus, [normal(5, 4, scale=3)], softplus_ref),
        "softplus_beta_threshold": (
            lambda x: F.softplus(x, beta=2.0, threshold=3.0),
            tf and (lambda x: tf.softplus(x, beta=2.0, threshold=3.0)),
            [normal(5, 6, scale=2)],
            lambda x: softplus_ref(x, 2.0, 3.0),
        ),
        "prelu_channels": (F.prelu, tf and tf.prelu, [normal(3, 4, 5), lambda rng: PRELU_W.copy()], prelu_ref),
        "prelu_single": (F.prelu, tf and tf.prelu, [normal(2, 3, 2, 2), lambda rng: np.array([0.3])], prelu_ref),
        "hardtanh": (
            lambda x: F.hardtanh(x, -0.5, 0.8),
            tf and (lambda x: tf.hardtanh(x, -0.5, 0.8)),
            [normal(4, 7)],
            lambda x: np.clip(x, -0.5, 0.8),
        ),
        "mish": (F.mish, tf and tf.mish, [normal(3, 8, scale=3)], lambda x: x * np.tanh(np.log1p(np.exp(x)))),
        "relu6": (F.relu6, tf and tf.relu6, [normal(4, 7, scale=5)], lambda x: np.clip(x, 0, 6)),
        "hardsigmoid": (
            F.hardsigmoid,
            tf and tf.hardsigmoid,
            [normal(4, 7, scale=4)],
            lambda x: np.clip(x + 3, 0, 6) / 6,
        ),
        "hardswish": (
            F.hardswish,
            tf and tf.hardswish,
            [normal(4, 7, scale=4)],
            lambda x: x * np.clip(x + 3, 0, 6) / 6,
        ),
        "logsigmoid": (
            F.logsigmoid,
            tf and tf.logsigmoid,
            [normal(3, 8, scale=15)],
            lambda x: np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x))),
        ),
        "softsign": (F.softsign, tf and tf.softsign, [normal(3, 5, scale=3)], lambda x: x / (1 + np.abs(x))),
        "tanhshrink": (F.tanhshrink, tf and tf.tanhshrink, [normal(3, 5, scale=2)], lambda x: x - np.tanh(x)),
        "bce": (
            F.binary_cross_entropy,
            tf and tf.binary_cross_entropy,
            [probabilities(4, 5), probabilities(4, 5)],
            bce_ref,
        ),
        "bce_weight_sum": (
            lambda x, y: F.binary_cross_entropy(x, y, weight=np.linspace(0.5, 2, 5), reduction="sum"),
            tf and (lambda x, y: tf.binary_cross_entropy(x, y, weight=_t(np.linspace(0.5, 2, 5)), reduction="sum")),
            [probabilities(3, 5), probabilities(3, 5)],
            lambda x, y: bce_ref(x, y, np.linspace(0.5, 2, 5), "sum"),
        ),
        "bce_none": (
            lambda x, y: F.binary_cross_entropy(x, y, reduction="none"),
            tf and (lambda x, y: tf.binary_cross_entropy(x, y, reduction="none")),
            [probabilities(7), probabilities(7)],
            lambda x, y: bce_ref(x, y, None, "none"),
        ),
        "smooth_l1": (F.smooth_l1_loss, tf and tf.smooth_l1_loss, [normal(4, 6), normal(4, 6)], smooth_l1_ref),
        "smooth_l1_beta": (
            lambda x, y: F.smooth_l1_loss(x, y, reduction="none", beta=0.4),
            tf and (lambda x, y: tf.smooth_l1_loss(x, y, reduction="none", beta=0.4)),
            [normal(3, 5), normal(3, 5)],
            lambda x, y: smooth_l1_ref(x, y, "none", 0.4),
        ),
        "smooth_l1_beta0": (
            lambda x, y: F.smooth_l1_loss(x, y, reduction="sum", beta=0.0),
            tf and (lambda x, y: tf.smooth_l1_loss(x, y, reduction="sum", beta=0.0)),
            [normal(9), normal(9)],
            lambda x, y: smooth_l1_ref(x, y, "sum", 0.0),
        ),
        "huber": (F.huber_loss, tf and tf.huber_loss, [normal(4, 6), normal(4, 6)], huber_ref),
        "huber_delta": (
            lambda x, y: F.huber_loss(x, y, reduction="none", delta=0.6),
            tf and (lambda x, y: tf.huber_loss(x, y, reduction="none", delta=0.6)),
            [normal(2, 3, 4), normal(2, 3, 4)],
            lambda x, y: huber_ref(x, y, "none", 0.6),
        ),
        "kl_div_batchmean": (
            lambda x, t: F.kl_div(x, t, reduction="batchmean"),
            tf and (lambda x, t: tf.kl_div(x, t, reduction="batchmean")),
            [log_probabilities(4, 5), positive(4, 5)],
            lambda x, t: kl_div_ref(x, t, "batchmean"),
        ),
        "kl_div_sum": (
            lambda x, t: F.kl_div(x, t, reduction="sum"),
            tf and (lambda x, t: tf.kl_div(x, t, reduction="sum")),
            [log_probabilities(3, 6), positive(3, 6)],
            lambda x, t: kl_div_ref(x, t, "sum"),
        ),
        "kl_div_log_target": (
            lambda x, t: F.kl_div(x, t, reduction="none", log_target=True),
            tf and (lambda x, t: tf.kl_div(x, t, reduction="none", log_target=True)),
            [log_probabilities(3, 4), log_probabilities(3, 4)],
            lambda x, t: kl_div_ref(x, t, "none", True),
        ),
        "pad_constant": (
            lambda x: F.pad(x, (1, 2, 0, 3), value=0.5),
            tf and (lambda x: tf.pad(x, (1, 2, 0, 3), value=0.5)),
            [normal(2, 3, 4)],
            lambda x: pad_ref(x, (1, 2, 0, 3), value=0.5),
        ),
        "pad_constant_crop": (
            lambda x: F.pad(x, (-1, 2, 1, -2)),
            tf and (lambda x: tf.pad(x, (-1, 2, 1, -2))),
            [normal(3, 5, 4)],
            lambda x: pad_ref(x, (-1, 2, 1, -2)),
        ),
        "pad_reflect_1d": (
            lambda x: F.pad(x, (3, 1), mode="reflect"),
            tf and (lambda x: tf.pad(x, (3, 1), mode="reflect")),
            [normal(2, 3, 5)],
            lambda x: pad_ref(x, (3, 1), "reflect"),
        ),
        "pad_reflect_2d": (
            lambda x: F.pad(x, (1, 2, 2, 0), mode="reflect"),
            tf and (lambda x: tf.pad(x, (1, 2, 2, 0), mode="reflect")),
            [normal(2, 2, 4, 3)],
            lambda x: pad_ref(x, (1, 2, 2, 0), "reflect"),
        ),
        "pad_replicate_3d": (
            lambda x: F.pad(x, (1, 2, 0, 1, 2, 1), mode="replicate"),
            tf and (lambda x: tf.pad(x, (1, 2, 0, 1, 2, 1), mode="replicate")),
            [normal(1, 2, 3, 2, 3)],
            lambda x: pad_ref(x, (1, 2, 0, 1, 2, 1), "replicate"),
        ),
        "pad_replicate_unbatched": (
            lambda x: F.pad(x, (4, 3), mode="replicate"),
            tf and (lambda x: tf.pad(x, (4, 3), mode="replicate")),
            [normal(3, 2)],
            lambda x: pad_ref(x, (4, 3), "replicate"),
        ),
        "pad_circular_2d": (
            lambda x: F.pad(x, (2, 3, 1, 1), mode="circular"),
            tf and (lambda x: tf.pad(x, (2, 3, 1, 1), mode="circular")),
            [normal(2, 3, 3, 4)],
            lambda x: pad_ref(x, (2, 3, 1, 1), "circular"),
        ),
        "interpolate_nearest_size": (
            lambda x: F.interpolate(x, size=(5, 7)),
            tf and (lambda x: tf.interpolate(x, size=(5, 7))),
            [normal(2, 3, 3, 4)],
            lambda x: interpolate_ref(x, (5, 7), "nearest"),
        ),
        "interpolate_nearest_down_1d": (
            lambda x: F.interpolate(x, size=4),
            tf and (lambda x: tf.interpolate(x, size=4)),
            [normal(2, 2, 9)],
            lambda x: interpolate_ref(x, (4,), "nearest"),
        ),
        "interpolate_nearest_scale_3d": (
            lambda x: F.interpolate(x, scale_factor=2),
            tf and (lambda x: tf.interpolate(x, scale_factor=2)),
            [normal(1, 2, 2, 3, 2)],
            lambda x: interpolate_ref(x, (4, 6, 4), "nearest"),
        ),
        "interpolate_nearest_fractional_scale": (
            lambda x: F.interpolate(x, scale_factor=(1.7, 0.6)),
            tf and (lambda x: tf.interpolate(x, scale_factor=(1.7, 0.6))),
            [normal(1, 2, 5, 6)],
            None,  # the source positions use 1/1.7 and 1/0.6, not the size ratio: torch only
        ),
        "interpolate_bilinear": (
            lambda x: F.interpolate(x, size=(6, 5), mode="bilinear"),
            tf and (lambda x: tf.interpolate(x, size=(6, 5), mode="bilinear")),
            [normal(2, 3, 4, 3)],
            lambda x: interpolate_ref(x, (6, 5), "bilinear"),
        ),
        "interpolate_bilinear_down": (
            lambda x: F.interpolate(x, size=(3, 2), mode="bilinear"),
            tf and (lambda x: tf.interpolate(x, size=(3, 2), mode="bilinear")),
            [normal(1, 2, 7, 5)],
            lambda x: interpolate_ref(x, (3, 2), "bilinear"),
        ),
        "interpolate_bilinear_align_corners": (
            lambda x: F.interpolate(x, size=(7, 4), mode="bilinear", align_corners=True),
            tf and (lambda x: tf.interpolate(x, size=(7, 4), mode="bilinear", align_corners=True)),
            [normal(2, 2, 3, 5)],
            lambda x: interpolate_ref(x, (7, 4), "bilinear", True),
        ),
        "interpolate_bilinear_scale": (
            lambda x: F.interpolate(x, scale_factor=2.5, mode="bilinear"),
            tf and (lambda x: tf.interpolate(x, scale_factor=2.5, mode="bilinear")),
            [normal(1, 2, 3, 2)],
            None,  # the source positions use 1/2.5 (not the size ratio 7/3, 5/2): torch only
        ),
        "interpolate_bilinear_scale_recomputed": (
            lambda x: F.interpolate(x, scale_factor=2.5, mode="bilinear", recompute_scale_factor=True),
            tf and (lambda x: tf.interpolate(x, scale_factor=2.5, mode="bilinear", recompute_scale_factor=True)),
            [normal(1, 2, 3, 2)],
            lambda x: interpolate_ref(x, (7, 5), "bilinear"),
        ),
        "interpolate_linear_align_corners": (
            lambda x: F.interpolate(x, size=8, mode="linear", align_corners=True),
            tf and (lambda x: tf.interpolate(x, size=8, mode="linear", align_corners=True)),
            [normal(2, 3, 5)],
            lambda x: interpolate_ref(x, (8,), "linear", True),
        ),
        "interpolate_trilinear": (
            lambda x: F.interpolate(x, size=(3, 4, 2), mode="trilinear"),
            tf and (lambda x: tf.interpolate(x, size=(3, 4, 2), mode="trilinear")),
            [normal(1, 2, 2, 3, 3)],
            lambda x: interpolate_ref(x, (3, 4, 2), "trilinear"),
        ),
        "normalize": (F.normalize, tf and tf.normalize, [normal(4, 5, 3)], normalize_ref),
        "normalize_p1_last": (
            lambda x: F.normalize(x, p=1, dim=-1),
            tf and (lambda x: tf.normalize(x, p=1, dim=-1)),
            [normal(3, 6)],
            lambda x: normalize_ref(x, 1, -1),
        ),
        "normalize_p3": (
            lambda x: F.normalize(x, p=3, dim=0),
            tf and (lambda x: tf.normalize(x, p=3, dim=0)),
            [normal(5, 2)],
            lambda x: normalize_ref(x, 3, 0),
        ),
        "normalize_inf": (
            lambda x: F.normalize(x, p=math.inf, dim=1),
            tf and (lambda x: tf.normalize(x, p=math.inf, dim=1)),
            [normal(4, 5)],
            lambda x: normalize_ref(x, math.inf, 1),
        ),
        "cosine_similarity": (
            F.cosine_similarity,
            tf and tf.cosine_similarity,
            [normal(4, 6), normal(4, 6)],
            cosine_similarity_ref,
        ),
        "cosine_similarity_broadcast": (
            lambda a, b: F.cosine_similarity(a, b, dim=-1),
            tf and (lambda a, b: tf.cosine_similarity(a, b, dim=-1)),
            [normal(3, 1, 5), normal(4, 5)],
            lambda a, b: cosine_similarity_ref(a, b, -1),
        ),
    }


def _t(a):
    import torch

    return torch.tensor(a)


CASES = cases()
NAMES = sorted(CASES)


def leaves(rng, makers, dtype=F64):
    return [dk.tensor(make(rng).astype(dtype), requires_grad=True) for make in makers]


@pytest.mark.parametrize("name", NAMES)
def test_gradient_by_finite_differences(name, rng):
    fn, _, makers, _ = CASES[name]
    gradcheck(fn, *leaves(rng, makers))


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("name", sorted(n for n in NAMES if CASES[n][3] is not None))
def test_forward_matches_reference(name, dtype, rng):
    fn, _, makers, ref = CASES[name]
    arrays = [make(rng).astype(dtype) for make in makers]
    out = fn(*(dk.tensor(a) for a in arrays))
    assert isinstance(out, dk.Tensor)
    want = ref(*(a.astype(F64) for a in arrays))
    check(out.numpy(), np.asarray(want), dtype, name, tol=2e-6 if dtype == F32 else None)


# PyTorch's hardsigmoid backward multiplies by 1/6 rounded to float32 in float64 too (a relative 3e-8
# off); deepkern's float64 gradient is exact (checked by finite differences).
TORCH_FLOAT32_SLOPE = {"hardsigmoid"}


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_forward_and_backward_match_torch(name, dtype, rng):
    torch = pytest.importorskip("torch")
    fn, torch_fn, makers, _ = cases(torch.nn.functional)[name]
    arrays = [make(rng).astype(dtype) for make in makers]
    ours = [dk.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, out_t = fn(*ours), torch_fn(*theirs)
    g = rng.standard_normal(out.shape).astype(dtype)
    out.backward(dk.tensor(g))
    out_t.backward(torch.tensor(g))
    tol = 2e-6 if dtype == F32 or name in TORCH_FLOAT32_SLOPE else 1e-12
    check(out.detach().numpy(), out_t.detach().numpy().astype(F64), dtype, f"{name} forward", tol=tol)
    for k, (a, b) in enumerate(zip(ours, theirs)):
        check(a.grad.numpy(), b.grad.numpy().astype(F64), dtype, f"{name} gradient of input {k}", tol=tol)


@pytest.mark.parametrize(
    "name",
    [
        "silu",
        "mish",
        "prelu_channels",
        "bce",
        "huber",
        "kl_div_sum",
        "pad_reflect_2d",
        "interpolate_bilinear",
        "cosine_similarity",
    ],
)
def test_on_every_device(name, device, rng):
    """The ops compute with the arrays' backend: the same values and gradients on each device."""
    fn, _, makers, _ = CASES[name]
    arrays = [make(rng) for make in makers]
    results = []
    for where in ("cpu", device):
        inputs = [dk.tensor(a, requires_grad=True, device=where) for a in arrays]
        out = fn(*inputs)
        out.backward(dk.tensor(np.ones(out.shape), device=where))
        assert out.device == dk.tensor(arrays[0], device=where).device
        results.append([to_host(out.detach()._array)] + [to_host(t.grad._array) for t in inputs])
    for got, want in zip(*results[::-1]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


# ---- specific behaviour ----------------------------------------------------------------------


def test_bce_clamps_the_logs_at_minus_100():
    x = dk.tensor(np.array([0.0, 1.0, 0.0, 1.0, 0.5]), requires_grad=True)
    y = dk.tensor(np.array([1.0, 0.0, 0.0, 1.0, 0.3]))
    loss = F.binary_cross_entropy(x, y, reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), [100, 100, 0, 0, -(0.3 * math.log(0.5) + 0.7 * math.log(0.5))])
    loss.sum().backward()
    grad = x.grad.numpy()
    assert np.isfinite(grad).all()  # the denominator x (1 - x) is clamped at 1e-12
    np.testing.assert_allclose(grad[:2], [-1e12, 1e12])


def test_kl_div_zero_target_contributes_nothing():
    x = dk.tensor(np.log(np.array([[0.2, 0.3, 0.5]])), requires_grad=True)
    t = dk.tensor(np.array([[0.0, 0.4, 0.6]]))
    loss = F.kl_div(x, t, reduction="batchmean")
    assert float(loss) == pytest.approx(0.4 * math.log(0.4 / 0.3) + 0.6 * math.log(0.6 / 0.5), rel=1e-14)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), -t.numpy())


def test_kl_div_mean_warns_and_divides_by_every_element():
    x, t = dk.tensor(np.full((2, 3), -1.0)), dk.tensor(np.full((2, 3), 0.5))
    with pytest.warns(UserWarning, match="batchmean"):
        mean = F.kl_div(x, t)
    assert float(mean) == pytest.approx(float(F.kl_div(x, t, reduction="sum")) / 6, rel=1e-15)


@pytest.mark.parametrize("shape, classes", [((5,), -1), ((2, 3), 6), ((0,), 4), ((), 3)])
def test_one_hot(shape, classes, rng):
    n = 6 if classes == -1 else classes
    idx = rng.integers(0, n, size=shape)
    out = F.one_hot(dk.tensor(idx), classes)
    k = classes if classes != -1 else int(idx.max()) + 1
    assert out.dtype == np.int64 and out.shape == shape + (k,)
    np.testing.assert_array_equal(out.numpy(), np.eye(k, dtype=np.int64)[idx])
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(out.numpy(), torch.nn.functional.one_hot(torch.tensor(idx), classes).numpy())


def test_one_hot_refuses_impossible_class_counts():
    """A class count whose result NumPy cannot hold (np.arange of 2**63 - 1 is empty: rows without a
    one) is an error naming it, given or inferred from the largest index."""
    with raises_naming(ValueError, "one_hot", "num_classes", str(2**63 - 1)):
        F.one_hot(dk.tensor(np.array([0, 1, 2])), 2**63 - 1)
    with raises_naming(ValueError, "one_hot", "num_classes", str(2**63 - 1)):
        F.one_hot(dk.tensor(np.array([0, 2**63 - 2])))
    with raises_naming(ValueError, "one_hot", "num_classes", "True"):
        F.one_hot(dk.tensor(np.array([0])), True)


def test_normalize_and_cosine_similarity_of_zero_vectors():
    """A zero vector's norm has gradient 0 (PyTorch's choice), so only the division by eps is
    left: finite gradients, 1 / eps for normalize as in PyTorch."""
    x = dk.tensor(np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 4.0]]), requires_grad=True)
    out = F.normalize(x)
    np.testing.assert_allclose(out.detach().numpy(), [[0, 0, 0], [0.6, 0, 0.8]])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[0], [1e12] * 3)
    a = dk.tensor(np.zeros((2, 4)), requires_grad=True)
    cos = F.cosine_similarity(a, dk.tensor(np.ones((2, 4))))
    np.testing.assert_array_equal(cos.detach().numpy(), [0, 0])
    cos.sum().backward()
    assert np.isfinite(a.grad.numpy()).all()
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x.detach().numpy(), requires_grad=True)
    torch.nn.functional.normalize(xt).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12)


def test_interpolate_refuses_impossible_and_non_integer_sizes():
    """An output NumPy cannot hold is an error naming the size (it came back empty); sizes are ints."""
    x = dk.tensor(np.ones((2, 4, 7, 6), np.float32))
    for size in (2**63 - 1, 2**63, np.uint64(2**63 + 5), (2**62, 3)):
        with raises_naming(ValueError, "interpolate", "output size", "too large"):
            F.interpolate(x, size=size)
    for size in (1.5, True, (2, 2.0)):
        with raises_naming(TypeError, "interpolate", "size", "int"):
            F.interpolate(x, size=size)


def test_interpolate_zero_batch_and_integer_nearest():
    out = F.interpolate(dk.tensor(np.zeros((0, 2, 3, 3))), size=(4, 5), mode="bilinear")
    assert out.shape == (0, 2, 4, 5)
    x = np.arange(12, dtype=np.int64).reshape(1, 1, 3, 4)
    np.testing.assert_array_equal(F.interpolate(dk.tensor(x), scale_factor=2).numpy(), x.repeat(2, 2).repeat(2, 3))


def test_nearest_interpolation_of_3d_and_5d_inputs_reads_floor_j_over_scale():
    """Nearest output j reads input floor(j / scale_factor) (in float32), whatever size that gives; only
    4-D inputs copy a kept size and repeat a doubled one (PyTorch's image kernel does)."""
    x = np.arange(5.0)
    for scale in (1.1, 1.3, 2.1, 2.0, 1.0, 0.6):
        n_out = math.floor(5 * scale)
        src = np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * np.float32(1.0 / scale)), 4).astype(int)
        got3 = F.interpolate(dk.tensor(x.reshape(1, 1, 5)), scale_factor=scale).numpy().ravel()
        got5 = F.interpolate(dk.tensor(x.reshape(1, 1, 1, 1, 5)), scale_factor=(1, 1, scale)).numpy().ravel()
        np.testing.assert_array_equal(got3, x[src], err_msg=f"3-D scale {scale}")
        np.testing.assert_array_equal(got5, x[src], err_msg=f"5-D scale {scale}")
    image = F.interpolate(dk.tensor(x.reshape(1, 1, 1, 5)), scale_factor=(1, 1.1)).numpy().ravel()
    np.testing.assert_array_equal(image, x)  # 4-D: the kept size is copied


def test_flatten_of_tensors_without_elements():
    for shape, start, end, expected in (((0, 3, 4), 1, -1, (0, 12)), ((2, 3, 0), 0, 1, (6, 0)), ((0,), 0, -1, (0,))):
        t = dk.zeros(*shape, requires_grad=True)
        assert t.flatten(start, end).shape == expected
        assert F.flatten(t, start, end).shape == expected
        with dk.no_grad():
            assert nn.Flatten(start, end)(t).shape == expected
        assert nn.Flatten(start, end)(t).shape == expected


def test_p_norm_gradients_at_zero_entries_for_p_below_1():
    """For 0 < p < 1 the gradient of ||x||_p at an entry that is 0 is 0 (PyTorch's), not NaN."""
    x = dk.tensor(np.array([[0.0, 1.0, -2.0]]), requires_grad=True)
    F.normalize(x, p=0.5).sum().backward()
    assert np.isfinite(x.grad.numpy()).all()
    a = dk.tensor(np.array([[1.0, 2.0, 3.0]]), requires_grad=True)
    b = dk.tensor(np.array([[1.0, 0.0, 1.0]]))
    F.pairwise_distance(a, b, p=0.5, eps=0.0).sum().backward()
    assert a.grad.numpy()[0, 0] == 0 and np.isfinite(a.grad.numpy()).all()


def test_pairwise_distance_of_0d_inputs_is_0d():
    a = dk.tensor(np.array(1.0), requires_grad=True)
    d = F.pairwise_distance(a, dk.tensor(np.array(3.0)))
    assert d.shape == () and abs(d.item() - 1.999999) < 1e-12
    d.backward()
    assert a.grad.item() == -1.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: F.relu(2.5),
        lambda: F.sigmoid(2.5),
        lambda: F.softplus(2.5),
        lambda: F.hardtanh([1.0, 2.0]),
        lambda: F.mish([1.0, 2.0]),
        lambda: F.dropout(None),
        lambda: F.avg_pool2d(None, 2),
        lambda: F.adaptive_avg_pool2d(None, 2),
    ],
)
def test_a_number_list_or_none_as_the_input_is_a_type_error(call):
    with raises_naming(TypeError, "input must be a Tensor"):
        call()


def test_functions_refuse_what_pytorch_refuses():
    x4 = dk.zeros(2, 3, 4, 5)
    with raises_naming(ValueError, "dropout1d", r"\(2, 3, 4, 5\)"):
        F.dropout1d(x4, 0.5, training=False)
    table = dk.zeros(6, 2)
    for bad in (6, -7):
        with raises_naming(ValueError, "embedding", f"padding_idx={bad}", "6"):
            F.embedding(dk.tensor([0, 1]), table, padding_idx=bad)
    assert F.embedding(dk.tensor([5]), table, padding_idx=-1).shape == (1, 2)
    with raises_naming(ValueError, "prelu", r"\(2, 2\)"):
        F.prelu(x4, dk.ones(2, 2))
    probs = dk.tensor(np.full((2, 3), 1 / 3))
    with raises_naming(ValueError, "cross_entropy", "ignore_index=1", "probability"):
        F.cross_entropy(dk.zeros(2, 3, dtype=dk.float64), probs, ignore_index=1)
    for fn in (F.leaky_relu, F.hardsigmoid):
        with raises_naming(TypeError, "int64"):
            fn(dk.tensor([1, -2]))


# ---- modules ---------------------------------------------------------------------------------


def test_modules_compute_their_functions_and_print_like_pytorch(rng):
    x = dk.tensor(rng.standard_normal((2, 4, 3)).astype(F32))
    modules = [
        (nn.SiLU(), F.silu(x), "SiLU()"),
        (nn.ELU(alpha=0.5), F.elu(x, 0.5), "ELU(alpha=0.5)"),
        (nn.Softplus(beta=2, threshold=5), F.softplus(x, 2, 5), "Softplus(beta=2, threshold=5)"),
        (nn.Hardtanh(-2.0, 0.5), F.hardtanh(x, -2.0, 0.5), "Hardtanh(min_val=-2.0, max_val=0.5)"),
        (nn.Mish(), F.mish(x), "Mish()"),
        (nn.ReLU6(), F.relu6(x), "ReLU6()"),
        (nn.Hardsigmoid(), F.hardsigmoid(x), "Hardsigmoid()"),
        (nn.Hardswish(inplace=True), F.hardswish(x), "Hardswish()"),
        (nn.LogSigmoid(), F.logsigmoid(x), "LogSigmoid()"),
        (nn.Softsign(), F.softsign(x), "Softsign()"),
        (nn.Tanhshrink(), F.tanhshrink(x), "Tanhshrink()"),
        (nn.PReLU(4, init=0.1), F.prelu(x, dk.tensor(np.full(4, 0.1, F32))), "PReLU(num_parameters=4)"),
    ]
    for module, want, text in modules:
        out = module(x)
        assert out.dtype == F32
        np.testing.assert_array_equal(out.detach().numpy(), want.detach().numpy())
        assert repr(module) == text
    y = dk.tensor(rng.random((2, 4, 3)).astype(F32))
    p = dk.tensor(sigmoid(rng.standard_normal((2, 4, 3))).astype(F32))
    losses = [
        (nn.BCELoss(), F.binary_cross_entropy(p, y)),
        (
            nn.BCELoss(weight=np.full(3, 2.0, F32), reduction="sum"),
            F.binary_cross_entropy(p, y, np.full(3, 2.0), reduction="sum"),
        ),
        (nn.SmoothL1Loss(beta=0.3), F.smooth_l1_loss(x, y, beta=0.3)),
        (nn.HuberLoss(reduction="none", delta=0.2), F.huber_loss(x, y, "none", 0.2)),
        (nn.KLDivLoss(reduction="batchmean", log_target=True), F.kl_div(x, y, reduction="batchmean", log_target=True)),
    ]
    for module, want in losses:
        np.testing.assert_array_equal(module(p if isinstance(module, nn.BCELoss) else x, y).numpy(), want.numpy())
    assert "weight" in dict(nn.BCELoss(weight=np.ones(3, F32)).named_buffers())


def test_prelu_learns_its_slopes(rng):
    layer = nn.PReLU(3)
    assert [n for n, _ in layer.named_parameters()] == ["weight"] and layer.weight.dtype == F32
    x = dk.tensor(rng.standard_normal((5, 3, 2)).astype(F32))
    layer(x).sum().backward()
    xs = x.numpy()
    np.testing.assert_allclose(layer.weight.grad.numpy(), np.where(xs > 0, 0, xs).sum(axis=(0, 2)), rtol=1e-6)
    assert nn.PReLU(dtype=np.float64).weight.dtype == F64


# ---- bad arguments ---------------------------------------------------------------------------


def test_bad_arguments_are_named():
    x, ints = dk.randn(2, 3, 4), dk.tensor(np.arange(6).reshape(2, 3))
    probs = dk.tensor(np.full((2, 3), 0.5))
    cases = [
        (TypeError, ["silu", "int64"], lambda: F.silu(ints)),
        (TypeError, ["mish", "int64"], lambda: F.mish(ints)),
        (ValueError, ["softplus", "beta"], lambda: F.softplus(x, beta=0)),
        (ValueError, ["hardtanh", "min_val=1", "max_val=0"], lambda: F.hardtanh(x, 1, 0)),
        (ValueError, ["Hardtanh", "min_val=2"], lambda: nn.Hardtanh(2, 1)),
        (ValueError, ["prelu", r"\(2,\)", "3 channel", r"\(2, 3, 4\)"], lambda: F.prelu(x, dk.tensor(np.ones(2, F32)))),
        (ValueError, ["PReLU", "num_parameters", "0"], lambda: nn.PReLU(0)),
        (ValueError, ["PReLU", r"\(2, 5, 4\)"], lambda: nn.PReLU(3)(dk.randn(2, 5, 4))),
        (
            ValueError,
            ["binary_cross_entropy", "input", "between 0 and 1", "1.5"],
            lambda: F.binary_cross_entropy(probs + 1, probs),
        ),
        (ValueError, ["BCELoss", "target", "between 0 and 1", "-0.5"], lambda: nn.BCELoss()(probs, probs - 1)),
        (
            ValueError,
            ["binary_cross_entropy", r"\(2, 3\)", r"\(3, 2\)"],
            lambda: F.binary_cross_entropy(probs, probs.reshape(3, 2)),
        ),
        (
            ValueError,
            ["binary_cross_entropy", "weight", r"\(4,\)"],
            lambda: F.binary_cross_entropy(probs, probs, np.ones(4)),
        ),
        (ValueError, ["smooth_l1_loss", "beta", "-1"], lambda: F.smooth_l1_loss(x, x, beta=-1)),
        (ValueError, ["huber_loss", "delta", "0"], lambda: F.huber_loss(x, x, delta=0)),
        (ValueError, ["HuberLoss", "reduction", "'avg'"], lambda: nn.HuberLoss(reduction="avg")),
        (ValueError, ["kl_div", "batchmean", "'batch'"], lambda: F.kl_div(x, x, reduction="batch")),
        (ValueError, ["KLDivLoss", "'batch'"], lambda: nn.KLDivLoss(reduction="batch")),
        (TypeError, ["one_hot", "float32"], lambda: F.one_hot(x)),
        (ValueError, ["one_hot", "class value 5", r"\[0, 3\)"], lambda: F.one_hot(ints, 3)),
        (ValueError, ["one_hot", "class value -1"], lambda: F.one_hot(dk.tensor([-1, 0]), 3)),
        (ValueError, ["one_hot", "empty"], lambda: F.one_hot(dk.tensor(np.zeros(0, np.int64)))),
        (TypeError, ["pad", "1.5"], lambda: F.pad(x, (1.5, 1))),
        (ValueError, ["pad", "even length"], lambda: F.pad(x, (1, 2, 3))),
        (ValueError, ["pad", "'mirror'"], lambda: F.pad(x, (1, 1), mode="mirror")),
        (
            ValueError,
            ["pad", "reflect", "dimension 2", "size 4", "at most 3"],
            lambda: F.pad(x, (4, 0), mode="reflect"),
        ),
        (ValueError, ["pad", "circular", "size 4"], lambda: F.pad(x, (0, 5), mode="circular")),
        (
            ValueError,
            ["pad", "4 or 5 dimensions", r"\(2, 3, 4\)"],
            lambda: F.pad(x, (1, 1, 1, 1, 1, 1), mode="replicate"),
        ),
        (ValueError, ["pad", "doesn't take in a value"], lambda: F.pad(x, (1, 1), mode="reflect", value=1.0)),
        (ValueError, ["pad", "crops more"], lambda: F.pad(x, (-3, -2))),
        (ValueError, ["interpolate", "'bicubic'"], lambda: F.interpolate(x, size=3, mode="bicubic")),
        (
            ValueError,
            ["interpolate", "'bilinear'", "4-D", r"\(2, 3, 4\)"],
            lambda: F.interpolate(x, size=3, mode="bilinear"),
        ),
        (ValueError, ["interpolate", "exactly one of size or scale_factor"], lambda: F.interpolate(x)),
        (ValueError, ["interpolate", "exactly one"], lambda: F.interpolate(x, size=3, scale_factor=2)),
        (ValueError, ["interpolate", "align_corners"], lambda: F.interpolate(x, size=3, align_corners=True)),
        (ValueError, ["interpolate", "size", r"\(3, 3\)", "1 spatial"], lambda: F.interpolate(x, size=(3, 3))),
        (ValueError, ["interpolate", "greater than 0", r"\(0,\)"], lambda: F.interpolate(x, size=0)),
        (ValueError, ["interpolate", "scale_factor", "-2"], lambda: F.interpolate(x, scale_factor=-2)),
        (
            ValueError,
            ["interpolate", "recompute_scale_factor"],
            lambda: F.interpolate(x, size=2, recompute_scale_factor=True),
        ),
        (
            TypeError,
            ["interpolate", "floating-point", "int64"],
            lambda: F.interpolate(ints.reshape(1, 2, 3), size=4, mode="linear"),
        ),
        (ValueError, ["normalize", "p", "-1"], lambda: F.normalize(x, p=-1)),
        (IndexError, ["normalize", "dim 3"], lambda: F.normalize(x, dim=3)),
        (TypeError, ["normalize", "int64"], lambda: F.normalize(ints)),
        (ValueError, ["cosine_similarity", r"\(2, 3, 4\)", r"\(5,\)"], lambda: F.cosine_similarity(x, dk.randn(5))),
        (TypeError, ["cosine_similarity", "x2", "int64"], lambda: F.cosine_similarity(x, ints)),
    ]
    for exc, needles, call in cases:
        with raises_naming(exc, *needles):
            call()


# (layer name, constructor arguments, input shape): PyTorch's padding layers, Upsample and Unflatten.
RESAMPLE_LAYERS = [
    ("ZeroPad2d", (1,), {}, (2, 3, 5, 6)),
    ("ZeroPad2d", ((1, 2, 0, 3),), {}, (2, 3, 5, 6)),
    ("ConstantPad2d", (2, 0.5), {}, (3, 5, 6)),
    ("ConstantPad1d", ((1, 2), -1.0), {}, (2, 3, 7)),
    ("ZeroPad1d", (2,), {}, (3, 7)),
    ("ReflectionPad2d", ((1, 2, 2, 0),), {}, (2, 3, 5, 6)),
    ("ReflectionPad1d", (2,), {}, (2, 3, 7)),
    ("ReplicationPad2d", (2,), {}, (2, 3, 5, 6)),
    ("ReplicationPad1d", ((0, 3),), {}, (2, 3, 7)),
    ("Upsample", (), {"scale_factor": 2}, (2, 3, 5, 6)),
    ("Upsample", (), {"size": (7, 9), "mode": "bilinear"}, (2, 3, 5, 6)),
    ("Upsample", (), {"scale_factor": 1.5, "mode": "bilinear", "align_corners": True}, (2, 3, 5, 6)),
    ("UpsamplingNearest2d", (), {"scale_factor": 2}, (2, 3, 5, 6)),
    ("UpsamplingBilinear2d", (), {"size": (8, 8)}, (2, 3, 5, 6)),
    ("Unflatten", (1, (3, -1)), {}, (2, 6, 5)),
]


@pytest.mark.parametrize("case", RESAMPLE_LAYERS, ids=lambda c: f"{c[0]}{c[1]}{c[2]}")
def test_padding_upsample_and_unflatten_layers_match_torch(case, rng):
    torch = pytest.importorskip("torch")
    name, args, kwargs, shape = case
    x = rng.standard_normal(shape)
    ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
    assert repr(ours) == repr(theirs)
    a, t = dk.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, y_t = ours(a), theirs(t)
    np.testing.assert_allclose(y.detach().numpy(), y_t.detach().numpy(), rtol=1e-13, atol=1e-13)
    w = rng.standard_normal(y.shape)
    (y * dk.tensor(w)).sum().backward()
    (y_t * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-13, atol=1e-13)


def test_constant_padding_layers_against_numpy(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_array_equal(
        nn.ConstantPad2d((1, 0, 2, 3), 7.0)(dk.tensor(x)).numpy(),
        np.pad(x, ((0, 0), (0, 0), (2, 3), (1, 0)), constant_values=7.0),
    )
    np.testing.assert_array_equal(nn.ZeroPad1d(1)(dk.tensor(x)).numpy(), np.pad(x, [(0, 0)] * 3 + [(1, 1)]))
    with raises_naming(ValueError, "ZeroPad2d", "padding", "4 ints"):
        nn.ZeroPad2d((1, 2))


@pytest.mark.parametrize("spatial", [1, 2])
def test_channel_dropout_zeroes_whole_channels(spatial):
    """Dropout1d/2d: each channel all zeros or all scaled by 1 / (1 - p), about p of them zero,
    reproducible from manual_seed, the gradient through the same mask; the identity in eval mode."""
    layer = (nn.Dropout1d if spatial == 1 else nn.Dropout2d)(p=0.3)
    shape = (40, 50) + (3,) * spatial
    dk.manual_seed(7)
    x = dk.ones(*shape, requires_grad=True)
    y = layer(x)
    values = y.detach().numpy().reshape(40, 50, -1)
    assert (values.min(axis=2) == values.max(axis=2)).all()
    assert set(np.unique(values)) <= {0.0, np.float32(1 / 0.7)}
    assert abs((values[:, :, 0] == 0).mean() - 0.3) < 0.05
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.detach().numpy())
    dk.manual_seed(7)
    np.testing.assert_array_equal(layer(dk.ones(*shape)).numpy(), y.detach().numpy())
    if spatial == 1:
        unbatched = layer(dk.ones(*shape[1:])).numpy().reshape(50, -1)
        assert (unbatched.min(axis=1) == unbatched.max(axis=1)).all()
    layer.eval()
    assert layer(x) is x
    with raises_naming(ValueError, "dropout", f"{spatial + 1} or {spatial + 2} dimensions"):
        layer.train()(dk.ones(2))


def test_dropout2d_takes_a_3d_input_as_n_c_l_with_pytorchs_warning():
    """PyTorch's dropout2d reads a 3-D input as (N, C, L) (channel-wise 1-D dropout) and warns: each
    (n, c) row is all zeros or all scaled, not each slice along the first dimension."""
    dk.manual_seed(3)
    with pytest.warns(UserWarning, match="dropout2d.*3-D input.*dropout1d"):
        y = F.dropout2d(dk.ones(30, 40, 5), p=0.5)
    values = y.numpy()
    assert (values.min(axis=2) == values.max(axis=2)).all()
    per_slice = values.reshape(30, -1)
    assert ((per_slice.min(axis=1) == 0) & (per_slice.max(axis=1) > 0)).any()  # slices of dim 0 are mixed
    assert abs((values[:, :, 0] == 0).mean() - 0.5) < 0.08
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert F.dropout2d(dk.ones(3, 4, 5), p=0.5, training=False).shape == (3, 4, 5)  # no warning in eval


def test_activation_gradients_at_their_breakpoints_are_pytorchs():
    """logsigmoid'(0) = sigmoid(0) = 0.5; hardswish' is 0 at -3 and 1 at 3 (PyTorch's one-sided
    choices); hardsigmoid' is 0 at both ends."""
    x = dk.tensor([0.0, -40.0, 40.0], dtype=dk.float64, requires_grad=True)
    F.logsigmoid(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.5, 1.0, np.exp(-40.0)], rtol=1e-12)
    x = dk.tensor([-3.0, 3.0, 0.0], requires_grad=True)
    F.hardswish(x).sum().backward()
    assert x.grad.numpy().tolist() == [0.0, 1.0, 0.5]
    x = dk.tensor([np.nan, 4.0], requires_grad=True)  # NaN keeps its NaN (no branch claims it)
    F.hardswish(x).sum().backward()
    assert np.isnan(x.grad.numpy()[0]) and x.grad.numpy()[1] == 1.0
    x = dk.tensor([-3.0, 3.0], requires_grad=True)
    F.hardsigmoid(x).sum().backward()
    assert x.grad.numpy().tolist() == [0.0, 0.0]


def test_new_activations_take_arrays_as_the_others_do():
    x = np.array([-4.0, -0.5, 0.0, 2.0, 5.0])
    for name, ref in (
        ("relu6", np.clip(x, 0, 6)),
        ("hardsigmoid", np.clip(x + 3, 0, 6) / 6),
        ("hardswish", x * np.clip(x + 3, 0, 6) / 6),
        ("logsigmoid", np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))),
        ("softsign", x / (1 + np.abs(x))),
        ("tanhshrink", x - np.tanh(x)),
    ):
        out = getattr(F, name)(x)
        assert isinstance(out, dk.Tensor), name
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-14, atol=1e-15, err_msg=name)


def test_upsample_prints_its_settings_like_torch():
    assert repr(nn.Upsample(scale_factor=(2, 2))) == "Upsample(scale_factor=(2.0, 2.0), mode='nearest')"
    assert repr(nn.Upsample()) == "Upsample(size=None, mode='nearest')"
    assert repr(nn.Upsample(size=3)) == "Upsample(size=3, mode='nearest')"
    assert repr(nn.Upsample(scale_factor=2, mode="bilinear")) == "Upsample(scale_factor=2.0, mode='bilinear')"


def test_embedding_of_a_0d_index_is_one_row_like_torch():
    layer = nn.Embedding(5, 3)
    row = layer(dk.tensor(2))
    assert row.shape == (3,) and F.embedding(dk.tensor(4), layer.weight).shape == (3,)
    np.testing.assert_array_equal(row.detach().numpy(), layer.weight.detach().numpy()[2])
    row.sum().backward()
    np.testing.assert_array_equal(layer.weight.grad.numpy().sum(axis=1), [0, 0, 3, 0, 0])


@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 5), (0, 3, 4, 4)], ids=str)
def test_batch_norm_of_an_empty_batch_like_torch(shape):
    """An empty batch in training: an empty output, the running statistics unchanged (the batch count
    still counts it, as PyTorch's), zero parameter gradients; a batch of one value per channel is refused."""
    layer = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(3)
    x = dk.zeros(*shape, requires_grad=True)
    y = layer(x)
    assert y.shape == shape
    y.sum().backward()
    assert x.grad.shape == shape
    np.testing.assert_array_equal(layer.weight.grad.numpy(), [0, 0, 0])
    np.testing.assert_array_equal(layer.running_mean.numpy(), [0, 0, 0])
    np.testing.assert_array_equal(layer.running_var.numpy(), [1, 1, 1])
    assert int(layer.num_batches_tracked.item()) == 1
    assert nn.BatchNorm1d(3, track_running_stats=False).eval()(dk.zeros(0, 3)).shape == (0, 3)
    with raises_naming(ValueError, "more than 1 value per channel"):
        layer(dk.zeros(1, 3, *([1] * (len(shape) - 2))))
