"""The losses added to deepkern.nn.loss (margin ranking, hinge embedding, soft margin, multi-label
soft margin, multi margin, multi-label margin, Poisson NLL, Gaussian NLL, triplet margin with
distance; mse/l1/huber ``weight``) against torch.nn.functional in float64 and float32, their
gradients against torch's float64 autograd and by finite differences, zero-size inputs, bad
arguments, and for every loss function and Module of loss.py (old and new) PyTorch's signature and
its deprecated ``size_average``/``reduce`` arguments."""

from __future__ import annotations

import inspect
import warnings

import deepkern
import numpy as np
import pytest
from deepkern.nn import functional as F
from deepkern.nn import loss as L

from checks import F32, F64, check, gradcheck, raises_naming

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
TF = torch.nn.functional

REDUCTIONS = ("mean", "sum", "none")


# ----------------------------------------------------------------------------------------------
# cases: make(rng, dtype) -> (positional arrays, keyword arrays); ``diff`` names the differentiable
# ones (an index or a keyword)


def _sq_distance(a, b):
    """A distance both libraries compute the same way (for distance_function)."""
    return ((a - b) ** 2).sum(-1)


def _signs(rng, shape, dtype):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(dtype)


def _ranking(shapes):
    def make(rng, dtype):
        return [rng.standard_normal(s).astype(dtype) for s in shapes[:2]] + [_signs(rng, shapes[2], dtype)], {}

    return make


def _hinge(rng, dtype):
    t = _signs(rng, (5, 7), dtype)
    t[0, :3] = (0, 2, 0.5)  # neither 1 nor -1: both terms
    return [rng.standard_normal((5, 7)).astype(dtype) * 2, t], {}


def _soft_margin(shape_t):
    def make(rng, dtype):
        return [rng.standard_normal((3, 5)).astype(dtype) * 2, _signs(rng, shape_t, dtype)], {}

    return make


def _multilabel_soft(shape, weighted):
    def make(rng, dtype):
        kw = {"weight": (rng.random(shape[-1]) + 0.5).astype(dtype)} if weighted else {}
        return [rng.standard_normal(shape).astype(dtype) * 3, rng.random(shape).astype(dtype)], kw

    return make


def _multi_margin(shape, weighted):
    def make(rng, dtype):
        classes = shape[-1] if shape else 1
        frames = shape[0] if len(shape) == 2 else None
        t = rng.integers(0, classes, size=() if frames is None else (frames,))
        kw = {"weight": (rng.random(classes) + 0.5).astype(dtype)} if weighted else {}
        return [rng.standard_normal(shape).astype(dtype), t], kw

    return make


def _multilabel_margin(rng, dtype):
    x = rng.standard_normal((4, 7)).astype(dtype)
    t = np.full((4, 7), -1)
    t[0, :3] = (2, 5, 0)
    t[1, :4] = (6, 6, 1, 3)  # a repeated target counts twice (as PyTorch)
    t[2, 0] = -1  # no targets
    t[2, 1:] = 4  # ignored: after the first -1
    t[3, :] = rng.permutation(7)  # every class a target: no hinge
    return [x, t], {}


def _multilabel_margin_1d(rng, dtype):
    return [rng.standard_normal(5).astype(dtype), np.array([3, 1, -1, 0, 0])], {}


def _poisson(log_input):
    def make(rng, dtype):
        x = rng.standard_normal((4, 5)) if log_input else rng.random((4, 5)) * 3 + 0.1
        t = rng.random((4, 5)) * 4 + 0.05  # both sides of 1 (Stirling's term where > 1)
        return [x.astype(dtype), t.astype(dtype)], {}

    return make


def _gaussian(var_shape):
    def make(rng, dtype):
        x, t = (rng.standard_normal((4, 5)).astype(dtype) for _ in range(2))
        return [x, t, (rng.random(var_shape) + 0.2).astype(dtype)], {}

    return make


def _gaussian_scalar_var(rng, dtype):
    return [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal((3, 4)).astype(dtype), 0.7], {}


def _triplets(shape):
    def make(rng, dtype):
        return [rng.standard_normal(shape).astype(dtype) for _ in range(3)], {}

    return make


def _weighted_pointwise(rng, dtype):
    x, t = (rng.standard_normal((3, 5)).astype(dtype) for _ in range(2))
    return [x, t], {"weight": (rng.random((3, 5)) + 0.1).astype(dtype)}


# (function name, make, options (each run with every reduction), differentiable inputs)
CASES = [
    ("margin_ranking_loss", _ranking([(7,), (7,), (7,)]), [{}, {"margin": 0.4}], (0, 1, 2)),
    ("margin_ranking_loss", _ranking([(3, 1), (1, 4), (3, 4)]), [{"margin": -0.2}], (0, 1, 2)),
    ("hinge_embedding_loss", _hinge, [{}, {"margin": 2.5}], (0,)),
    ("soft_margin_loss", _soft_margin((3, 5)), [{}], (0,)),
    ("soft_margin_loss", _soft_margin((5,)), [{}], (0,)),
    ("multilabel_soft_margin_loss", _multilabel_soft((5, 7), False), [{}], (0, 1)),
    ("multilabel_soft_margin_loss", _multilabel_soft((3, 2, 5), True), [{}], (0, 1, "weight")),
    ("multilabel_soft_margin_loss", _multilabel_soft((6,), True), [{}], (0, 1, "weight")),
    ("multi_margin_loss", _multi_margin((5, 7), False), [{}, {"p": 2}, {"margin": 0.3}], (0,)),
    ("multi_margin_loss", _multi_margin((5, 7), True), [{"p": 2, "margin": 1.7}, {}], (0,)),
    ("multi_margin_loss", _multi_margin((6,), True), [{}, {"p": 2}], (0,)),
    ("multi_margin_loss", _multi_margin((), False), [{}], (0,)),
    ("multilabel_margin_loss", _multilabel_margin, [{}], (0,)),
    ("multilabel_margin_loss", _multilabel_margin_1d, [{}], (0,)),
    ("poisson_nll_loss", _poisson(True), [{}, {"full": True}], (0, 1)),
    (
        "poisson_nll_loss",
        _poisson(False),
        [{"log_input": False}, {"log_input": False, "full": True, "eps": 0.3}],
        (0, 1),
    ),
    ("gaussian_nll_loss", _gaussian((4, 5)), [{}, {"full": True}, {"eps": 0.5}], (0, 1, 2)),
    ("gaussian_nll_loss", _gaussian((4,)), [{}], (0, 1, 2)),
    ("gaussian_nll_loss", _gaussian((4, 1)), [{"full": True}], (0, 1, 2)),
    ("gaussian_nll_loss", _gaussian((1, 5)), [{}], (0, 1, 2)),
    ("gaussian_nll_loss", _gaussian_scalar_var, [{}], (0, 1)),
    ("triplet_margin_with_distance_loss", _triplets((5, 3)), [{}, {"swap": True, "margin": 2.0}], (0, 1, 2)),
    (
        "triplet_margin_with_distance_loss",
        _triplets((4, 6)),
        [{"distance_function": _sq_distance, "margin": 3.0}, {"distance_function": _sq_distance, "swap": True}],
        (0, 1, 2),
    ),
    ("triplet_margin_with_distance_loss", _triplets((5,)), [{"margin": 2.0}], (0, 1, 2)),
    ("mse_loss", _weighted_pointwise, [{}], (0, 1, "weight")),
    ("l1_loss", _weighted_pointwise, [{}], (0, 1, "weight")),
    ("huber_loss", _weighted_pointwise, [{"delta": 0.6}], (0, 1, "weight")),
]

PARAMS = [
    pytest.param(name, make, {**kw, "reduction": red}, diff, id=f"{name}-{i}-{j}-{red}")
    for i, (name, make, options, diff) in enumerate(CASES)
    for j, kw in enumerate(options)
    for red in REDUCTIONS
]


def _ours(a, requires_grad=False):
    return deepkern.tensor(a, requires_grad=requires_grad) if isinstance(a, np.ndarray) else a


def _theirs(a, requires_grad=False):
    return torch.tensor(a, requires_grad=requires_grad) if isinstance(a, np.ndarray) else a


def _both(make, rng, dtype, diff):
    args, kw = make(rng, dtype)
    ours = [_ours(a, i in diff) for i, a in enumerate(args)], {k: _ours(v, k in diff) for k, v in kw.items()}
    theirs = [_theirs(a, i in diff) for i, a in enumerate(args)], {k: _theirs(v, k in diff) for k, v in kw.items()}
    return ours, theirs


def _inputs(pos, kw, diff):
    return [pos[d] if isinstance(d, int) else kw[d] for d in diff]


@pytest.mark.parametrize("name, make, kw, diff", PARAMS)
def test_float64_and_gradients_match_torch(rng, name, make, kw, diff):
    (pos, okw), (tpos, tkw) = _both(make, rng, np.float64, diff)
    got, want = getattr(L, name)(*pos, **okw, **kw), getattr(TF, name)(*tpos, **tkw, **kw)
    check(got.detach().numpy(), want.detach().numpy(), F64, name)
    weight = rng.standard_normal(got.shape)
    (got * deepkern.tensor(weight)).sum().backward()
    (want * torch.tensor(weight)).sum().backward()
    for d, ours, theirs in zip(diff, _inputs(pos, okw, diff), _inputs(tpos, tkw, diff)):
        check(ours.grad.numpy(), theirs.grad.numpy(), F64, f"{name}: gradient of argument {d}")


@pytest.mark.parametrize("name, make, kw, diff", PARAMS)
def test_float32_matches_torch(rng, name, make, kw, diff):
    (pos, okw), (tpos, tkw) = _both(make, rng, np.float32, diff)
    got, want = getattr(L, name)(*pos, **okw, **kw), getattr(TF, name)(*tpos, **tkw, **kw)
    check(got.detach().numpy(), want.detach().numpy().astype(np.float64), F32, name, tol=2e-6)
    weight = rng.standard_normal(got.shape).astype(np.float32)
    (got * deepkern.tensor(weight)).sum().backward()
    (want * torch.tensor(weight)).sum().backward()
    for d, ours, theirs in zip(diff, _inputs(pos, okw, diff), _inputs(tpos, tkw, diff)):
        check(ours.grad.numpy(), theirs.grad.numpy().astype(np.float64), F32, f"{name}: gradient of {d}", tol=1e-5)


GRAD_PARAMS = [p for p in PARAMS if p.values[2]["reduction"] != "mean" or "-0-" in p.id]


@pytest.mark.parametrize("name, make, kw, diff", GRAD_PARAMS)
def test_gradients_by_finite_differences(rng, name, make, kw, diff):
    if name == "gaussian_nll_loss" and "eps" in kw:  # var clamped at eps: its gradient passes the clamp
        diff = (0, 1)  # (not the clamped function's; test_gaussian_var_clamp_passes_the_gradient)
    args, akw = make(rng, np.float64)
    n_pos = len(args)
    keys = [k for k in akw if k in diff]
    tensors = [_ours(a, i in diff) for i, a in enumerate(args)] + [_ours(akw[k], True) for k in keys]
    fixed = {k: _ours(v) for k, v in akw.items() if k not in diff}

    def fn(*ts):
        return getattr(L, name)(*ts[:n_pos], **fixed, **dict(zip(keys, ts[n_pos:])), **kw)

    gradcheck(fn, *tensors)


# ----------------------------------------------------------------------------------------------
# modules


MODULES = [
    ("MarginRankingLoss", "margin_ranking_loss", {"margin": 0.3}, _ranking([(6,), (6,), (6,)])),
    ("HingeEmbeddingLoss", "hinge_embedding_loss", {"margin": 0.7}, _hinge),
    ("SoftMarginLoss", "soft_margin_loss", {}, _soft_margin((3, 5))),
    ("MultiLabelSoftMarginLoss", "multilabel_soft_margin_loss", {"weight": "w"}, _multilabel_soft((4, 6), False)),
    ("MultiMarginLoss", "multi_margin_loss", {"p": 2, "margin": 0.5, "weight": "w"}, _multi_margin((4, 6), False)),
    ("MultiLabelMarginLoss", "multilabel_margin_loss", {}, _multilabel_margin),
    ("PoissonNLLLoss", "poisson_nll_loss", {"log_input": False, "full": True, "eps": 1e-3}, _poisson(False)),
    ("GaussianNLLLoss", "gaussian_nll_loss", {"full": True, "eps": 0.3}, _gaussian((4,))),
    ("TripletMarginWithDistanceLoss", "triplet_margin_with_distance_loss", {"swap": True}, _triplets((5, 4))),
]


@pytest.mark.parametrize("module, function, options, make", MODULES, ids=[m[0] for m in MODULES])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_modules_match_torch(rng, module, function, options, make, reduction):
    args, _ = make(rng, np.float64)
    weight = (rng.random(args[0].shape[-1]) + 0.5).astype(np.float64)
    kw = {k: weight if v == "w" else v for k, v in options.items()}
    ours = getattr(L, module)(**{k: _ours(v) for k, v in kw.items()}, reduction=reduction)
    theirs = getattr(torch.nn, module)(**{k: _theirs(v) for k, v in kw.items()}, reduction=reduction)
    assert ours.reduction == reduction
    got = ours(*[_ours(a) for a in args])
    check(got.numpy(), theirs(*[_theirs(a) for a in args]).numpy(), F64, module)
    same = getattr(L, function)(*[_ours(a) for a in args], **{k: _ours(v) for k, v in kw.items()}, reduction=reduction)
    np.testing.assert_array_equal(got.numpy(), same.numpy())
    if "weight" in kw:
        assert "weight" in dict(ours.named_buffers())


def test_triplet_with_distance_module_default_distance_is_a_submodule():
    loss = L.TripletMarginWithDistanceLoss()
    assert type(loss.distance_function).__name__ == "PairwiseDistance"
    assert any(m is loss.distance_function for m in loss.modules())
    custom = L.TripletMarginWithDistanceLoss(distance_function=_sq_distance, margin=2.0)
    assert custom.distance_function is _sq_distance and custom.margin == 2.0


# ----------------------------------------------------------------------------------------------
# specific numerics


def test_soft_margin_follows_torch_far_out():
    """log1p(exp(z)) as PyTorch: inf (not z) where exp overflows, and its NaN gradient there."""
    x = np.array([-800.0, -1e-20, 30.0, -30.0])
    ours = deepkern.tensor(x, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    got = L.soft_margin_loss(ours, np.ones(4), reduction="none")
    want = TF.soft_margin_loss(theirs, torch.ones(4, dtype=torch.float64), reduction="none")
    np.testing.assert_array_equal(got.detach().numpy(), want.detach().numpy())
    got.sum().backward()
    want.sum().backward()
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())


def test_gaussian_var_clamp_passes_the_gradient():
    """var below eps is clamped, but its gradient (at the clamped value) passes through, as PyTorch."""
    x, t = np.array([0.5, -1.0, 2.0]), np.array([0.0, 0.5, 1.0])
    var = np.array([0.0, 1e-9, 0.3])
    ours, theirs = deepkern.tensor(var, requires_grad=True), torch.tensor(var, requires_grad=True)
    got = L.gaussian_nll_loss(deepkern.tensor(x), deepkern.tensor(t), ours, eps=1e-3, reduction="sum")
    want = TF.gaussian_nll_loss(torch.tensor(x), torch.tensor(t), theirs, eps=1e-3, reduction="sum")
    check(got.detach().numpy(), want.detach().numpy(), F64, "gaussian_nll_loss")
    got.backward()
    want.backward()
    check(ours.grad.numpy(), theirs.grad.numpy(), F64, "gaussian_nll_loss var gradient")
    assert ours.grad.numpy()[0] != 0


def test_margin_gradients_at_the_hinge():
    """At a hinge's corner: margin ranking and hinge embedding (clamp_min) pass the gradient;
    multi margin (z > 0) does not, as PyTorch."""
    a, b, y = np.array([1.0, 2.0]), np.array([1.0, 2.5]), np.array([1.0, -1.0])
    ours = [deepkern.tensor(v, requires_grad=True) for v in (a, b, y)]
    theirs = [torch.tensor(v, requires_grad=True) for v in (a, b, y)]
    L.margin_ranking_loss(ours[0], ours[1], ours[2]).backward()
    TF.margin_ranking_loss(theirs[0], theirs[1], theirs[2]).backward()
    for o, t in zip(ours, theirs):
        np.testing.assert_array_equal(o.grad.numpy(), t.grad.numpy())
    x = np.array([[1.0, 0.0, 0.5]])
    ours, theirs = deepkern.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    L.multi_margin_loss(ours, np.array([0])).backward()
    TF.multi_margin_loss(theirs, torch.tensor([0])).backward()
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())
    h = np.array([1.0, 0.3])
    ours, theirs = deepkern.tensor(h, requires_grad=True), torch.tensor(h, requires_grad=True)
    L.hinge_embedding_loss(ours, np.array([-1.0, 1.0]), reduction="sum").backward()
    TF.hinge_embedding_loss(theirs, torch.tensor([-1.0, 1.0]), reduction="sum").backward()
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())


def test_non_differentiable_arguments_requiring_grad_are_errors():
    x = deepkern.tensor(np.ones((2, 3)))
    with raises_naming(RuntimeError, "soft_margin_loss", "target"):
        L.soft_margin_loss(x, deepkern.tensor(np.ones((2, 3)), requires_grad=True))
    with raises_naming(RuntimeError, "multi_margin_loss", "weight"):
        L.multi_margin_loss(x, np.array([0, 1]), weight=deepkern.tensor(np.ones(3), requires_grad=True))


# ----------------------------------------------------------------------------------------------
# zero-size inputs


ZERO_SIZE = [
    ("margin_ranking_loss", lambda: [np.zeros(0), np.zeros(0), np.zeros(0)]),
    ("hinge_embedding_loss", lambda: [np.zeros((0, 3)), np.ones((0, 3))]),
    ("soft_margin_loss", lambda: [np.zeros((2, 0)), np.ones((2, 0))]),
    ("multilabel_soft_margin_loss", lambda: [np.zeros((0, 4)), np.zeros((0, 4))]),
    ("multilabel_soft_margin_loss", lambda: [np.zeros((3, 0)), np.zeros((3, 0))]),
    ("multi_margin_loss", lambda: [np.zeros((0, 4)), np.zeros(0, np.int64)]),
    ("multilabel_margin_loss", lambda: [np.zeros((0, 4)), np.zeros((0, 4), np.int64)]),
    ("poisson_nll_loss", lambda: [np.zeros((0, 2)), np.zeros((0, 2))]),
    ("gaussian_nll_loss", lambda: [np.zeros((0, 2)), np.zeros((0, 2)), np.ones((0, 2))]),
    ("triplet_margin_with_distance_loss", lambda: [np.zeros((0, 3))] * 3),
    ("mse_loss", lambda: [np.zeros((0, 3)), np.zeros((0, 3))]),
]


@pytest.mark.parametrize("name, make", ZERO_SIZE, ids=[f"{n}-{i}" for i, (n, _) in enumerate(ZERO_SIZE)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_zero_size(name, make, reduction):
    args = make()
    kw = {"weight": np.zeros((0, 3))} if name == "mse_loss" else {}
    ours = [deepkern.tensor(a, requires_grad=i == 0) for i, a in enumerate(args)]
    got = getattr(L, name)(*ours, **{k: deepkern.tensor(v) for k, v in kw.items()}, reduction=reduction)
    want = getattr(TF, name)(
        *[torch.tensor(a) for a in args], **{k: torch.tensor(v) for k, v in kw.items()}, reduction=reduction
    )
    assert tuple(got.shape) == tuple(want.shape)
    if name in ("multi_margin_loss", "multilabel_margin_loss") and reduction != "none":
        # PyTorch returns uninitialised memory here (its kernel writes nothing for no samples):
        # deepkern gives the mean of nothing (NaN) and the sum of nothing (0).
        np.testing.assert_array_equal(got.detach().numpy(), np.nan if reduction == "mean" else 0.0)
    else:
        np.testing.assert_array_equal(got.detach().numpy(), want.numpy())
    if got.requires_grad:
        got.sum().backward()
        assert ours[0].grad is None or ours[0].grad.shape == ours[0].shape


# ----------------------------------------------------------------------------------------------
# bad arguments


def _bad_cases():
    x23, x3 = np.ones((2, 3)), np.ones(3)
    t2 = np.array([0, 1])
    return [
        (
            ValueError,
            ("margin_ranking_loss", "reduction", "avg"),
            lambda: L.margin_ranking_loss(x3, x3, x3, reduction="avg"),
        ),
        (
            ValueError,
            ("margin_ranking_loss", "dimensions", r"\(3, 1\)"),
            lambda: L.margin_ranking_loss(x3, x3, np.ones((3, 1))),
        ),
        (ValueError, ("MarginRankingLoss", "broadcast", "input2"), lambda: L.MarginRankingLoss()(x3, np.ones(4), x3)),
        (TypeError, ("margin_ranking_loss", "input1", "int"), lambda: L.margin_ranking_loss(np.ones(3, int), x3, x3)),
        (ValueError, ("hinge_embedding_loss", "reduction"), lambda: L.hinge_embedding_loss(x3, x3, reduction="x")),
        (ValueError, ("HingeEmbeddingLoss", "target", r"\(4,\)"), lambda: L.HingeEmbeddingLoss()(x3, np.ones(4))),
        (ValueError, ("soft_margin_loss", "target", r"\(2, 3\)", r"\(3,\)"), lambda: L.soft_margin_loss(x3, x23)),
        (TypeError, ("SoftMarginLoss", "input", "int"), lambda: L.SoftMarginLoss()(np.ones(3, int), x3)),
        (
            ValueError,
            ("multilabel_soft_margin_loss", "input", r"\(\)"),
            lambda: L.multilabel_soft_margin_loss(np.ones(()), np.ones(())),
        ),
        (
            ValueError,
            ("multilabel_soft_margin_loss", "weight", r"\(4,\)"),
            lambda: L.multilabel_soft_margin_loss(x23, x23, weight=np.ones(4)),
        ),
        (ValueError, ("multi_margin_loss", "p", "3"), lambda: L.multi_margin_loss(x23, t2, p=3)),
        (ValueError, ("MultiMarginLoss", "p", "0"), lambda: L.MultiMarginLoss(p=0)),
        (
            ValueError,
            ("MultiMarginLoss", "weight", "one-dimensional"),
            lambda: L.MultiMarginLoss(weight=np.ones((1, 3))),
        ),
        (
            ValueError,
            ("multi_margin_loss", "weight", "one-dimensional"),
            lambda: L.multi_margin_loss(x23, t2, weight=np.ones((1, 3))),
        ),
        (
            ValueError,
            ("multi_margin_loss", "weight", "3 elements", "4"),
            lambda: L.multi_margin_loss(x23, t2, weight=np.ones(4)),
        ),
        (
            ValueError,
            ("multi_margin_loss", "target", "3", "out of range"),
            lambda: L.multi_margin_loss(x23, np.array([0, 3])),
        ),
        (
            ValueError,
            ("multi_margin_loss", "target", r"\(1, 2\)"),
            lambda: L.multi_margin_loss(x23, np.array([[0, 1]])),
        ),
        (TypeError, ("multi_margin_loss", "target", "float"), lambda: L.multi_margin_loss(x23, np.array([0.0, 1.0]))),
        (
            ValueError,
            ("multi_margin_loss", "input", r"\(2, 3, 1\)"),
            lambda: L.multi_margin_loss(np.ones((2, 3, 1)), t2),
        ),
        (ValueError, ("multi_margin_loss", "input", r"\(2, 0\)"), lambda: L.multi_margin_loss(np.ones((2, 0)), t2)),
        (
            ValueError,
            ("multilabel_margin_loss", "target", r"\(2, 2\)"),
            lambda: L.multilabel_margin_loss(x23, np.zeros((2, 2), int)),
        ),
        (
            ValueError,
            ("multilabel_margin_loss", "target", "-2", "out of range"),
            lambda: L.multilabel_margin_loss(x23, np.array([[0, -2, 1], [0, 1, 2]])),
        ),
        (
            ValueError,
            ("MultiLabelMarginLoss", "target", "3", "out of range"),
            lambda: L.MultiLabelMarginLoss()(x23, np.array([[0, -1, 3], [0, 1, 2]])),
        ),
        (TypeError, ("multilabel_margin_loss", "target", "float"), lambda: L.multilabel_margin_loss(x23, x23)),
        (ValueError, ("poisson_nll_loss", "reduction", "avg"), lambda: L.poisson_nll_loss(x3, x3, reduction="avg")),
        (ValueError, ("PoissonNLLLoss", "broadcast", "target"), lambda: L.PoissonNLLLoss()(x3, np.ones(4))),
        (ValueError, ("gaussian_nll_loss", "var", "negative"), lambda: L.gaussian_nll_loss(x3, x3, -1.0)),
        (
            ValueError,
            ("gaussian_nll_loss", "var", "negative"),
            lambda: L.gaussian_nll_loss(x3, x3, np.array([1.0, -1.0, 1.0])),
        ),
        (
            ValueError,
            ("GaussianNLLLoss", "var", r"\(3,\)", "incorrect size"),
            lambda: L.GaussianNLLLoss()(x23, x23, x3),
        ),
        (
            ValueError,
            ("gaussian_nll_loss", "reduction", "avg"),
            lambda: L.gaussian_nll_loss(x3, x3, x3, reduction="avg"),
        ),
        (
            ValueError,
            ("triplet_margin_with_distance_loss", "margin", "0"),
            lambda: L.triplet_margin_with_distance_loss(x23, x23, x23, margin=0),
        ),
        (
            ValueError,
            ("TripletMarginWithDistanceLoss", "margin", "-1"),
            lambda: L.TripletMarginWithDistanceLoss(margin=-1.0),
        ),
        (
            ValueError,
            ("triplet_margin_with_distance_loss", "negative", "1D"),
            lambda: L.triplet_margin_with_distance_loss(x23, x23, x3),
        ),
        (
            TypeError,
            ("triplet_margin_with_distance_loss", "distance_function"),
            lambda: L.triplet_margin_with_distance_loss(x23, x23, x23, distance_function=3),
        ),
        (
            ValueError,
            ("triplet_margin_with_distance_loss", "reduction"),
            lambda: L.triplet_margin_with_distance_loss(x23, x23, x23, reduction="x"),
        ),
        (ValueError, ("mse_loss", "weight", r"\(3,\)", r"\(2, 3\)"), lambda: L.mse_loss(x23, x23, weight=x3)),
        (ValueError, ("huber_loss", "weight", r"\(3,\)"), lambda: L.huber_loss(x23, x23, weight=x3)),
        (TypeError, ("HuberLoss", "delta", "str"), lambda: L.HuberLoss(delta="1")),
        (ValueError, ("TripletMarginLoss", "margin"), lambda: L.TripletMarginLoss(margin=0.0)),
    ]


BAD = _bad_cases()


@pytest.mark.parametrize("exc, needles, call", BAD, ids=[f"{i}-{b[1][0]}" for i, b in enumerate(BAD)])
def test_bad_arguments(exc, needles, call):
    with raises_naming(exc, *needles):
        call()


# ----------------------------------------------------------------------------------------------
# signatures and the deprecated size_average / reduce


FUNCTIONS = [
    "mse_loss",
    "l1_loss",
    "smooth_l1_loss",
    "huber_loss",
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "kl_div",
    "cosine_embedding_loss",
    "triplet_margin_loss",
    "margin_ranking_loss",
    "hinge_embedding_loss",
    "soft_margin_loss",
    "multilabel_soft_margin_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "poisson_nll_loss",
    "gaussian_nll_loss",
    "triplet_margin_with_distance_loss",
]
MODULE_NAMES = [
    "MSELoss",
    "L1Loss",
    "SmoothL1Loss",
    "HuberLoss",
    "CrossEntropyLoss",
    "NLLLoss",
    "BCELoss",
    "BCEWithLogitsLoss",
    "KLDivLoss",
    "CosineEmbeddingLoss",
    "TripletMarginLoss",
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


def _params(fn):
    """(name, kind, default) of each parameter: PyTorch's names, order, kinds and defaults."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_every_torch_loss_is_covered():
    """Every loss of torch.nn.functional and torch.nn is here (but CTC and the linear cross entropy)."""
    skip = {"ctc_loss", "CTCLoss", "LinearCrossEntropyLoss", "AdaptiveLogSoftmaxWithLoss", "NLLLoss2d"}
    functions = {n for n in dir(TF) if n.endswith("_loss") or n in ("cross_entropy", "binary_cross_entropy", "kl_div")}
    functions |= {"binary_cross_entropy_with_logits"}
    assert functions - skip - {n for n in dir(TF) if n.startswith("_")} <= set(FUNCTIONS)
    modules = {n for n in dir(torch.nn) if n.endswith("Loss")}
    assert modules - skip <= set(MODULE_NAMES)
    assert set(FUNCTIONS + MODULE_NAMES) <= set(L.__all__)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_signature_is_torchs(name):
    assert _params(getattr(L, name)) == _params(getattr(TF, name))


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_module_signature_is_torchs(name):
    ours, theirs = getattr(L, name), getattr(torch.nn, name)
    assert _params(ours) == _params(theirs)
    assert _params(ours.forward) == _params(theirs.forward)


LEGACY = [(s, r) for s in (None, True, False) for r in (None, True, False) if (s, r) != (None, None)]


def _legacy_call(lib, name):
    """The loss ``name`` of ``lib`` (deepkern.nn.loss or torch.nn.functional) on small float64 inputs."""
    tensor = deepkern.tensor if lib is L else torch.tensor
    x, t = np.linspace(-1, 1, 6).reshape(2, 3), np.linspace(0.1, 0.9, 6).reshape(2, 3)
    cls = np.array([0, 2])
    signs = np.array([1.0, -1.0])
    args = {
        "mse_loss": (x, t),
        "l1_loss": (x, t),
        "smooth_l1_loss": (x, t),
        "cross_entropy": (x, cls),
        "nll_loss": (x, cls),
        "binary_cross_entropy": (t, t[::-1].copy()),
        "binary_cross_entropy_with_logits": (x, t),
        "kl_div": (x, t),
        "cosine_embedding_loss": (x, t, signs),
        "triplet_margin_loss": (x, t, x[::-1].copy()),
        "margin_ranking_loss": (x[0], t[0], np.array([1.0, -1.0, 1.0])),
        "hinge_embedding_loss": (x, np.sign(x - 0.1)),
        "soft_margin_loss": (x, np.sign(x - 0.1)),
        "multilabel_soft_margin_loss": (x, t),
        "multi_margin_loss": (x, cls),
        "multilabel_margin_loss": (x, np.array([[1, -1, 0], [2, 0, -1]])),
        "poisson_nll_loss": (x, t * 3),
    }[name]
    return lambda **kw: getattr(lib, name)(*[tensor(a) for a in args], **kw)


LEGACY_FUNCTIONS = [n for n in FUNCTIONS if "size_average" in inspect.signature(getattr(TF, n)).parameters]


@pytest.mark.parametrize("name", LEGACY_FUNCTIONS)
@pytest.mark.parametrize("size_average, reduce", LEGACY)
def test_legacy_size_average_and_reduce(name, size_average, reduce):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _legacy_call(L, name)(size_average=size_average, reduce=reduce)
    with warnings.catch_warnings(record=True) as expected:
        warnings.simplefilter("always")
        want = _legacy_call(TF, name)(size_average=size_average, reduce=reduce)
    check(got.numpy(), want.numpy(), F64, name)
    ours = [(w.category, str(w.message)) for w in caught if "size_average" in str(w.message)]
    theirs = [(w.category, str(w.message)) for w in expected if "size_average" in str(w.message)]
    assert ours == theirs and len(ours) == 1 and ours[0][0] is UserWarning
    assert [w.filename for w in caught if "size_average" in str(w.message)] == [__file__]


@pytest.mark.parametrize(
    "name", [n for n in MODULE_NAMES if "size_average" in inspect.signature(getattr(torch.nn, n)).parameters]
)
@pytest.mark.parametrize("size_average, reduce", LEGACY)
def test_legacy_module_arguments(name, size_average, reduce):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = getattr(L, name)(size_average=size_average, reduce=reduce)
    with warnings.catch_warnings(record=True) as expected:
        warnings.simplefilter("always")
        theirs = getattr(torch.nn, name)(size_average=size_average, reduce=reduce)
    assert ours.reduction == theirs.reduction
    assert [(w.category, str(w.message)) for w in caught] == [(w.category, str(w.message)) for w in expected]
    assert [w.filename for w in caught] == [__file__]


def test_no_warning_without_legacy_arguments():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L.MSELoss(reduction="sum")
        L.mse_loss(deepkern.tensor(np.ones(3)), deepkern.tensor(np.zeros(3)), reduction="none")
        L.margin_ranking_loss(*[deepkern.tensor(np.ones(3))] * 3)


def test_legacy_kl_div_mean_has_no_batchmean_warning():
    """kl_div's 'mean' warning is not given when size_average / reduce chose the reduction (as PyTorch)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _legacy_call(L, "kl_div")(size_average=True)
        L.KLDivLoss(reduce=True)(deepkern.tensor(np.zeros(3)), deepkern.tensor(np.ones(3) / 3))
    assert [str(w.message) for w in caught if "batchmean" in str(w.message)] == []


def test_a_string_in_size_averages_place_means_what_it_means_in_torch():
    """As PyTorch: the third positional argument of binary_cross_entropy is weight, the fourth
    size_average (any truthy value there gives the legacy 'mean', with the warning)."""
    torch = pytest.importorskip("torch")
    p, y = np.array([0.2, 0.7]), np.array([0.0, 1.0])
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        got = L.binary_cross_entropy(deepkern.tensor(p), deepkern.tensor(y), None, "sum")
    with pytest.warns(UserWarning):
        ref = torch.nn.functional.binary_cross_entropy(torch.tensor(p), torch.tensor(y), None, "sum")
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-15)


# -- CTC -----------------------------------------------------------------------------------------

_CTC_TARGETS = np.array([[1, 2, 2, 3], [4, 4, 5, 5], [5, 1, 3, 3], [2, 1, 1, 1]])
_CTC_LENGTHS = [
    ([4, 2, 2, 1], [12, 10, 7, 3]),  # repeated labels, shorter inputs
    ([4, 0, 3, 1], [12, 12, 5, 1]),  # an empty target
    ([4, 4, 4, 4], [3, 12, 12, 12]),  # an input too short for its target: an infinite loss
]


@pytest.mark.parametrize("lengths", range(len(_CTC_LENGTHS)))
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("concatenated", [False, True])
def test_ctc_loss_matches_torch(lengths, reduction, zero_infinity, concatenated, rng):
    torch = pytest.importorskip("torch")
    target_lengths, input_lengths = _CTC_LENGTHS[lengths]
    logits = rng.standard_normal((12, 4, 6))
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    targets = _CTC_TARGETS
    if concatenated:
        targets = np.concatenate([row[:n] for row, n in zip(_CTC_TARGETS, target_lengths)])
    results = []
    for lib, fn in ((torch, torch.nn.functional.ctc_loss), (deepkern, F.ctc_loss)):
        x = lib.tensor(lp, requires_grad=True)
        out = fn(
            x, lib.tensor(targets), lib.tensor(input_lengths), lib.tensor(target_lengths), 0, reduction, zero_infinity
        )
        (out * lib.tensor(np.linspace(0.5, 1.5, out.numel()).reshape(tuple(out.shape)))).sum().backward()
        results.append((out.detach().numpy(), x.grad.numpy()))
    (value, grad), (ref_value, ref_grad) = results[1], results[0]
    np.testing.assert_allclose(value, ref_value, rtol=1e-12, atol=1e-12)  # inf where PyTorch's is
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-12)  # NaN where PyTorch's is


def test_ctc_loss_through_log_softmax_by_finite_differences_and_module(rng):
    torch = pytest.importorskip("torch")
    logits = deepkern.tensor(rng.standard_normal((6, 2, 4)), requires_grad=True)
    targets, lengths = deepkern.tensor([[1, 3, 3], [2, 1, 0]]), deepkern.tensor([3, 2])
    inputs = deepkern.tensor([6, 5])
    gradcheck(lambda z: F.ctc_loss(F.log_softmax(z, 2), targets, inputs, lengths, reduction="sum"), logits)
    module, ref = deepkern.nn.CTCLoss(blank=5, zero_infinity=True), torch.nn.CTCLoss(blank=5, zero_infinity=True)
    assert repr(module) == repr(ref)
    lp = np.log(np.full((5, 6), 1 / 6))  # unbatched (T, C)
    np.testing.assert_allclose(
        module(deepkern.tensor(lp), deepkern.tensor([1, 2]), deepkern.tensor(5), deepkern.tensor(2)).numpy(),
        ref(torch.tensor(lp), torch.tensor([1, 2]), torch.tensor(5), torch.tensor(2)).numpy(),
        rtol=1e-12,
    )
    with raises_naming(ValueError, "ctc_loss", "blank"):
        F.ctc_loss(deepkern.tensor(lp[:, None]), deepkern.tensor([[0, 1]]), [5], [2])
    with raises_naming(ValueError, "ctc_loss", "input_lengths", "at most T"):
        F.ctc_loss(deepkern.tensor(lp[:, None]), deepkern.tensor([[2, 1]]), [6], [2])
    with raises_naming(ValueError, "ctc_loss", r"sum\(target_lengths\)"):
        F.ctc_loss(deepkern.tensor(lp[:, None]), deepkern.tensor([2, 1, 3]), [5], [2])
