"""create_graph=True through the loss Functions (deepkern.nn.loss): for each loss and each of its
options, the create_graph first-order gradient is checked by finite differences (its own gradient,
through the recorded graph), against the ordinary first-order gradient, and its gradient (w.r.t. the
loss's inputs and the incoming gradient) against PyTorch's double backward in float64."""

from __future__ import annotations

import warnings

import deepkern as dk
import numpy as np
import pytest
from deepkern.nn import functional as F

from checks import create_graph_gradients, gradcheck

REDUCTIONS = ("mean", "sum", "none")


def _c(lib, a):
    """A constant (target, weight, label) of ``lib`` from the NumPy array ``a``."""
    return lib.tensor(np.asarray(a))


def _signs(shape, seed):
    return np.where(np.random.default_rng(seed).standard_normal(shape) > 0, 1.0, -1.0)


def _classes(shape, classes, seed, ignore=None):
    t = np.random.default_rng(seed).integers(0, classes, shape)
    if ignore is not None:
        t.flat[:: max(t.size // 2, 1)] = ignore
    return t


W4 = np.array([0.5, 2.0, 1.0, 1.5])


# name -> (f(lib, F, reduction, *inputs), input shapes, kinds, reductions); a kind says how an input is
# drawn: "n" normal, "p" positive, "u" uniform in (0.05, 0.95). Each f applies the loss to nonlinear
# functions of its inputs and multiplies its output by one of them, so that its second derivatives are
# not trivially zero.
CASES = {
    "pairwise_distance p=2 broadcast": (
        lambda lib, F, r, a, b: F.pairwise_distance(a.tanh(), b, p=2.0) ** 2 * a.sum(-1),
        [(3, 5), (5,)],
        "nn",
        [None],
    ),
    "pairwise_distance p=1 keepdim": (
        lambda lib, F, r, a, b: F.pairwise_distance(a, b * b, p=1.0, keepdim=True) * (a * b).sum(-1, keepdim=True),
        [(3, 5), (3, 5)],
        "nn",
        [None],
    ),
    "pairwise_distance p=3": (
        lambda lib, F, r, a, b: F.pairwise_distance(a, b, p=3.0).exp() * a[:, 0],
        [(4, 3), (4, 3)],
        "nn",
        [None],
    ),
    "pairwise_distance p=1.5": (
        lambda lib, F, r, a, b: F.pairwise_distance(a * b, b, p=1.5) ** 2,
        [(4, 3), (4, 3)],
        "nn",
        [None],
    ),
    "pairwise_distance p=0.7": (
        lambda lib, F, r, a, b: F.pairwise_distance(a, b, p=0.7, eps=0.0) * a.sum(-1),
        [(2, 5), (2, 5)],
        "nn",
        [None],
    ),
    "pairwise_distance p=inf": (
        lambda lib, F, r, a, b: F.pairwise_distance(a, b, p=float("inf")) * (a * b).sum(-1),
        [(3, 4), (3, 4)],
        "nn",
        [None],
    ),
    "pairwise_distance 0-d": (
        lambda lib, F, r, a, b: F.pairwise_distance(a * a, b, keepdim=True) * a,
        [(), ()],
        "nn",
        [None],
    ),
    "triplet_margin_loss": (
        lambda lib, F, r, a, p, n: F.triplet_margin_loss(a, p.tanh(), n, margin=2.0, reduction=r) * a.sum(),
        [(4, 5), (4, 5), (4, 5)],
        "nnn",
        REDUCTIONS,
    ),
    "triplet_margin_loss p=1 swap": (
        lambda lib, F, r, a, p, n: F.triplet_margin_loss(a * a, p, n, margin=3.0, p=1, swap=True, reduction=r) ** 2,
        [(4, 3), (4, 3), (4, 3)],
        "nnn",
        REDUCTIONS,
    ),
    "triplet_margin_with_distance_loss": (
        lambda lib, F, r, a, p, n: (
            F.triplet_margin_with_distance_loss(a, p, n * n, margin=3.0, swap=True, reduction=r) * a.sum()
        ),
        [(4, 3), (4, 3), (4, 3)],
        "nnn",
        REDUCTIONS,
    ),
    "binary_cross_entropy_with_logits": (
        lambda lib, F, r, x, y: F.binary_cross_entropy_with_logits(x * x, y.sigmoid(), reduction=r) * x.sum(),
        [(3, 4), (3, 4)],
        "nn",
        REDUCTIONS,
    ),
    "binary_cross_entropy_with_logits weight pos_weight": (
        lambda lib, F, r, x, y: (
            F.binary_cross_entropy_with_logits(
                x.tanh() * 3, y, _c(lib, W4), reduction=r, pos_weight=_c(lib, W4[::-1] + 0.25)
            )
            * x[0].sum()
        ),
        [(3, 4), (3, 4)],
        "nu",
        REDUCTIONS,
    ),
    "binary_cross_entropy_with_logits 3-d pos_weight": (
        lambda lib, F, r, x, y: (
            F.binary_cross_entropy_with_logits(x, y * y, reduction=r, pos_weight=_c(lib, [2.0, 0.3, 1.0])) * x.sum()
        ),
        [(2, 2, 3), (2, 2, 3)],
        "nu",
        REDUCTIONS,
    ),
    "binary_cross_entropy": (
        lambda lib, F, r, x, y: F.binary_cross_entropy(x.sigmoid(), y.sigmoid(), reduction=r) * x.sum(),
        [(3, 4), (3, 4)],
        "nn",
        REDUCTIONS,
    ),
    "binary_cross_entropy weight": (
        lambda lib, F, r, x, y: F.binary_cross_entropy(x * x, y, _c(lib, W4), reduction=r) * (x * y).sum(),
        [(2, 3, 4), (2, 3, 4)],
        "uu",
        REDUCTIONS,
    ),
    "kl_div": (
        lambda lib, F, r, x, t: F.kl_div(F.log_softmax(x, 1), t.sigmoid(), reduction=r) * x.sum(),
        [(3, 4), (3, 4)],
        "nn",
        REDUCTIONS + ("batchmean",),
    ),
    "kl_div log_target": (
        lambda lib, F, r, x, t: F.kl_div(x * x, F.log_softmax(t, 1), reduction=r, log_target=True) * x.sum(),
        [(3, 4), (3, 4)],
        "nn",
        REDUCTIONS + ("batchmean",),
    ),
    "kl_div zero targets": (
        lambda lib, F, r, x: F.kl_div(x * x, _c(lib, [[0.0, 0.5, 0.5], [0.2, 0.0, 0.8]]), reduction=r) * x.sum(),
        [(2, 3)],
        "n",
        REDUCTIONS + ("batchmean",),
    ),
    "nll_loss 2-d": (
        lambda lib, F, r, x: F.nll_loss(F.log_softmax(x * x, 1), _c(lib, [1, 0, 3]), reduction=r) * x.sum(),
        [(3, 4)],
        "n",
        REDUCTIONS,
    ),
    "nll_loss weight ignore_index": (
        lambda lib, F, r, x: (
            F.nll_loss(x.tanh(), _c(lib, [1, 2, 3, 2, 0]), _c(lib, W4), ignore_index=2, reduction=r) * (x * x).sum()
        ),
        [(5, 4)],
        "n",
        REDUCTIONS,
    ),
    "nll_loss 1-d": (
        lambda lib, F, r, x: F.nll_loss(x * x, _c(lib, 2), _c(lib, W4), reduction=r) * x.sum(),
        [(4,)],
        "n",
        REDUCTIONS,
    ),
    "nll_loss k-d": (
        lambda lib, F, r, x: (
            F.nll_loss(x.sin(), _c(lib, _classes((2, 3, 2), 4, 1, ignore=-100)), _c(lib, W4), reduction=r) * x.sum()
        ),
        [(2, 4, 3, 2)],
        "n",
        REDUCTIONS,
    ),
    "cross_entropy probabilities": (
        lambda lib, F, r, x, t: F.cross_entropy(x * x, F.softmax(t, 1), reduction=r) * x.sum(),
        [(3, 5), (3, 5)],
        "nn",
        REDUCTIONS,
    ),
    "cross_entropy probabilities weight label_smoothing k-d": (
        lambda lib, F, r, x, t: (
            F.cross_entropy(x.tanh() * 2, t * t, _c(lib, W4), reduction=r, label_smoothing=0.3) * x.sum()
        ),
        [(2, 4, 3), (2, 4, 3)],
        "nn",
        REDUCTIONS,
    ),
    "cross_entropy probabilities 1-d": (
        lambda lib, F, r, x, t: F.cross_entropy(x * x, t, label_smoothing=0.1, reduction=r) * x.sum(),
        [(4,), (4,)],
        "nu",
        REDUCTIONS,
    ),
    "gaussian_nll_loss": (
        lambda lib, F, r, x, t, v: F.gaussian_nll_loss(x * x, t, v * v + 0.1, full=True, reduction=r) * x.sum(),
        [(3, 4), (3, 4), (3, 4)],
        "nnn",
        REDUCTIONS,
    ),
    "gaussian_nll_loss per-sample var": (
        lambda lib, F, r, x, t, v: F.gaussian_nll_loss(x, t.tanh(), v, eps=0.01, reduction=r) * x.sum(),
        [(3, 4), (3, 4), (3,)],
        "nnu",
        REDUCTIONS,
    ),
    "soft_margin_loss": (
        lambda lib, F, r, x: F.soft_margin_loss(x * x, _c(lib, _signs((3, 4), 2)), reduction=r) * x.sum(),
        [(3, 4)],
        "n",
        REDUCTIONS,
    ),
    "soft_margin_loss broadcast target": (
        lambda lib, F, r, x: F.soft_margin_loss(x.tanh() * 3, _c(lib, _signs((4,), 3)), reduction=r) * x.sum(),
        [(3, 4)],
        "n",
        REDUCTIONS,
    ),
    "multilabel_soft_margin_loss": (
        lambda lib, F, r, x, y: (
            F.multilabel_soft_margin_loss(x * x, y.sigmoid(), _c(lib, W4), reduction=r) * x.sum()
            + F.multilabel_soft_margin_loss(x, y, reduction=r) * y.sum()
        ),
        [(3, 4), (3, 4)],
        "nn",
        REDUCTIONS,
    ),
    "poisson_nll_loss": (
        lambda lib, F, r, x, t: F.poisson_nll_loss(x.tanh(), t * 3, full=True, reduction=r) * x.sum(),
        [(3, 4), (3, 4)],
        "nu",
        REDUCTIONS,
    ),
    "poisson_nll_loss rate input": (
        lambda lib, F, r, x, t: F.poisson_nll_loss(x * x, t * 4, log_input=False, full=True, reduction=r) * x.sum(),
        [(3, 4), (3, 4)],
        "pu",
        REDUCTIONS,
    ),
    "hinge_embedding_loss": (
        lambda lib, F, r, x: (
            F.hinge_embedding_loss(x * x, _c(lib, _signs((3, 4), 4)), margin=1.5, reduction=r) * x.sum()
        ),
        [(3, 4)],
        "n",
        REDUCTIONS,
    ),
    "margin_ranking_loss": (
        lambda lib, F, r, a, b: (
            F.margin_ranking_loss(a * a, b, _c(lib, _signs((5,), 5)), margin=0.2, reduction=r) * a.sum()
        ),
        [(5,), (5,)],
        "nn",
        REDUCTIONS,
    ),
    "cosine_embedding_loss": (
        lambda lib, F, r, a, b: (
            F.cosine_embedding_loss(a * a, b, _c(lib, [1, -1, 1, -1]), margin=-0.5, reduction=r) * a.sum()
        ),
        [(4, 3), (4, 3)],
        "nn",
        REDUCTIONS,
    ),
}

# PyTorch's double backward of binary_cross_entropy divides by (x + 1e-12)^2 (1 - x + 1e-12)^2, not by
# x^2 (1 - x)^2 (the exact derivative of its first-order gradient, deepkern's): relatively 1e-12 / x apart.
RTOL = {"binary_cross_entropy": 1e-8, "binary_cross_entropy weight": 1e-8}

PARAMS = [(name, r) for name, (_, _, _, reductions) in CASES.items() for r in reductions]


def _draw(shapes, kinds, seed):
    rng = np.random.default_rng(seed)
    arrays = []
    for shape, kind in zip(shapes, kinds):
        if kind == "u":
            arrays.append(rng.uniform(0.05, 0.95, shape))
        elif kind == "p":
            arrays.append(np.abs(rng.standard_normal(shape)) + 0.5)
        else:
            arrays.append(rng.standard_normal(shape))
    return arrays


def _run(f, reduction, tensors):
    with warnings.catch_warnings():  # kl_div's 'mean' warns (in both libraries)
        warnings.simplefilter("ignore")
        return f(*tensors, reduction)


@pytest.mark.parametrize("name,reduction", PARAMS)
def test_create_graph_gradient_is_differentiable(name, reduction):
    """g = d sum(w * f(inputs)) / d inputs (create_graph=True) has the gradient its finite differences
    give, and the values of the ordinary first-order gradient."""
    f, shapes, kinds, _ = CASES[name]
    inputs = [dk.tensor(a, requires_grad=True) for a in _draw(shapes, kinds, len(name))]
    loss = lambda *args: f(dk, F, args[-1], *args[:-1])  # noqa: E731
    weight = dk.tensor(np.random.default_rng(1).standard_normal(_run(loss, reduction, inputs).shape))

    first_order = create_graph_gradients(lambda *tensors: (_run(loss, reduction, tensors) * weight).sum())

    with dk.no_grad():
        plain = first_order(*inputs)
    for got, expected in zip(first_order(*inputs), plain):
        np.testing.assert_allclose(got.detach().numpy(), expected.numpy(), rtol=1e-13, atol=1e-15)
    gradcheck(first_order, *inputs, tol=1e-5)


def _double_backward(lib, functional, f, reduction, arrays, needs, weight):
    """The loss's first-order gradients (create_graph) and the gradients of a nonlinear function of
    them w.r.t. the inputs and the incoming gradient ``weight`` (None where unused)."""
    tensors = [lib.tensor(a, requires_grad=n) for a, n in zip(arrays, needs)]
    w = lib.tensor(weight, requires_grad=True)
    wanted = [t for t in tensors if t.requires_grad]
    out = _run(lambda *args: f(lib, functional, args[-1], *args[:-1]), reduction, tensors)
    grads = lib.autograd.grad((out * w).sum(), wanted, create_graph=True)
    rng = np.random.default_rng(7)
    second = sum((g * g).sum() + (g * lib.tensor(rng.standard_normal(g.shape))).sum() for g in grads)
    again = lib.autograd.grad(second, wanted + [w], allow_unused=True)

    def host(t):
        return None if t is None else t.detach().numpy()

    return [host(g) for g in grads], [host(g) for g in again]


def _assert_like_torch(f, reduction, arrays, needs, rtol=1e-10, none_is_zero=False):
    torch = pytest.importorskip("torch")
    with dk.no_grad():
        shape = _run(lambda *a: f(dk, F, a[-1], *a[:-1]), reduction, [dk.tensor(a) for a in arrays]).shape
    weight = np.random.default_rng(3).standard_normal(shape)
    ours = _double_backward(dk, F, f, reduction, arrays, needs, weight)
    theirs = _double_backward(torch, torch.nn.functional, f, reduction, arrays, needs, weight)
    for kind, mine, expected in zip(("gradient", "gradient of the gradient"), ours, theirs):
        for i, (a, b) in enumerate(zip(mine, expected)):
            if none_is_zero:
                a, b = (np.zeros(()) if v is None else v for v in (a, b))
            assert (a is None) == (b is None), f"{kind} {i}: deepkern {a}, PyTorch {b}"
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12, err_msg=f"{kind} {i}")


@pytest.mark.parametrize("name,reduction", PARAMS)
def test_double_backward_matches_pytorch(name, reduction):
    f, shapes, kinds, _ = CASES[name]
    arrays = _draw(shapes, kinds, len(name) + 1)
    _assert_like_torch(f, reduction, arrays, [True] * len(shapes), rtol=RTOL.get(name, 1e-10))


# The losses applied directly to leaves (no function around them): where the gradient depends on an
# input only with a zero derivative (NLL), on the target only (KL's input gradient), or not at all.
DIRECT = {
    "nll_loss": (lambda lib, F, r, x: F.nll_loss(x, _c(lib, [2, 0, 1]), _c(lib, W4[:3]), reduction=r), [(3, 3)]),
    "nll_loss all ignored": (
        lambda lib, F, r, x: F.nll_loss(x, _c(lib, [1, 1]), ignore_index=1, reduction=r),
        [(2, 3)],
    ),
    "kl_div": (lambda lib, F, r, x, t: F.kl_div(x, t, reduction=r), [(3, 4), (3, 4)]),
    "kl_div log_target": (lambda lib, F, r, x, t: F.kl_div(x, t, reduction=r, log_target=True), [(3, 4), (3, 4)]),
    "binary_cross_entropy": (lambda lib, F, r, x, t: F.binary_cross_entropy(x, t, reduction=r), [(3, 4), (3, 4)]),
    "binary_cross_entropy_with_logits": (
        lambda lib, F, r, x, t: F.binary_cross_entropy_with_logits(x, t, reduction=r),
        [(3, 4), (3, 4)],
    ),
    "soft_margin_loss": (lambda lib, F, r, x: F.soft_margin_loss(x, _c(lib, _signs(4, 1)), reduction=r), [(4,)]),
    "cross_entropy probabilities": (lambda lib, F, r, x, t: F.cross_entropy(x, t, reduction=r), [(3, 4), (3, 4)]),
    "pairwise_distance": (lambda lib, F, r, a, b: F.pairwise_distance(a, b), [(3, 4), (3, 4)]),
}


DIRECT_PARAMS = [
    pytest.param(name, needs, r, id=f"{name}-{'+'.join(str(i) for i, n in enumerate(needs) if n)}-{r}")
    for name, (_, shapes) in DIRECT.items()
    for needs in ([(True,)] if len(shapes) == 1 else [(True, True), (True, False), (False, True)])
    for r in REDUCTIONS
]


@pytest.mark.parametrize("name,needs,reduction", DIRECT_PARAMS)
def test_direct_double_backward_matches_pytorch(name, needs, reduction):
    """Which gradients are recorded (None vs zeros) and their values, as PyTorch's, each input alone too."""
    f, shapes = DIRECT[name]
    _assert_like_torch(f, reduction, _draw(shapes, "u" * len(shapes), 5), list(needs))


EMPTY = {
    "mse_loss": (lambda lib, F, r, x, t: F.mse_loss(x * x, t, reduction=r), [(0, 3), (0, 3)]),
    "pairwise_distance": (lambda lib, F, r, a, b: F.pairwise_distance(a * a, b), [(0, 4), (0, 4)]),
    "binary_cross_entropy_with_logits": (
        lambda lib, F, r, x, t: F.binary_cross_entropy_with_logits(x * x, t, reduction=r),
        [(0, 3), (0, 3)],
    ),
    "binary_cross_entropy": (lambda lib, F, r, x, t: F.binary_cross_entropy(x * x, t, reduction=r), [(2, 0), (2, 0)]),
    "kl_div": (lambda lib, F, r, x, t: F.kl_div(x * x, t, reduction=r), [(0, 3), (0, 3)]),
    "nll_loss": (lambda lib, F, r, x: F.nll_loss(x * x, _c(lib, np.zeros(0, np.int64)), reduction=r), [(0, 3)]),
    "cross_entropy probabilities": (lambda lib, F, r, x, t: F.cross_entropy(x * x, t, reduction=r), [(0, 3), (0, 3)]),
    "soft_margin_loss": (
        lambda lib, F, r, x: F.soft_margin_loss(x * x, _c(lib, np.ones(0)), reduction=r),
        [(0,)],
    ),
    "gaussian_nll_loss": (
        lambda lib, F, r, x, v: F.gaussian_nll_loss(x * x, _c(lib, np.ones((0, 2))), v, reduction=r),
        [(0, 2), (0, 2)],
    ),
}


# (gaussian_nll_loss's 'mean' is Tensor.mean's, whose create_graph gradient divides by the 0 elements)
EMPTY_PARAMS = [(name, r) for name in EMPTY for r in REDUCTIONS if (name, r) != ("gaussian_nll_loss", "mean")]


@pytest.mark.parametrize("name,reduction", EMPTY_PARAMS)
def test_zero_size_double_backward_matches_pytorch(name, reduction):
    """Empty gradients; the incoming gradient's own is 0 (PyTorch's probability cross entropy's 'mean'
    of nothing is a NaN filled in, which depends on nothing: None there)."""
    f, shapes = EMPTY[name]
    _assert_like_torch(f, reduction, _draw(shapes, "u" * len(shapes), 6), [True] * len(shapes), none_is_zero=True)


def test_cross_entropy_with_every_target_ignored_has_zero_gradients():
    """'mean' with every target ignored: NaN loss, zero gradient, and a zero gradient of the gradient
    w.r.t. the input, as PyTorch's (w.r.t. the incoming gradient PyTorch's is NaN, deepkern's 0)."""
    torch = pytest.importorskip("torch")
    x0 = np.random.default_rng(9).standard_normal((2, 3))
    results = []
    for lib, functional in ((dk, F), (torch, torch.nn.functional)):
        x = lib.tensor(x0, requires_grad=True)
        (g,) = lib.autograd.grad(
            functional.cross_entropy(x * x, lib.tensor([1, 1]), ignore_index=1), x, create_graph=True
        )
        (gg,) = lib.autograd.grad((g * g).sum() + (g * x).sum(), x)
        results.append((g.detach().numpy(), gg.numpy()))
    for ours, theirs in zip(*results):
        np.testing.assert_array_equal(ours, theirs)


def test_gaussian_nll_clamped_variance_matches_pytorch():
    """The clamp of the variance at eps passes its gradient as if there were none, at second order too."""
    f = lambda lib, F, r, x, t, v: F.gaussian_nll_loss(x * x, t, v, eps=0.2, reduction=r) * x.sum()  # noqa: E731
    rng = np.random.default_rng(8)
    var = np.array([[0.05, 0.5, 0.1], [1.0, 0.01, 0.3]])
    _assert_like_torch(f, "mean", [rng.standard_normal((2, 3)), rng.standard_normal((2, 3)), var], [True] * 3)


THIRD = {
    "soft_margin_loss": lambda lib, F, x, y: F.soft_margin_loss(x * y, _c(lib, _signs((3, 4), 6))),
    "pairwise_distance": lambda lib, F, x, y: F.pairwise_distance(x, y, p=3.0).sum(),
    "cross_entropy probabilities": lambda lib, F, x, y: F.cross_entropy(x, y.sigmoid(), label_smoothing=0.2),
    "nll_loss": lambda lib, F, x, y: F.nll_loss(F.log_softmax(x * y, 1), _c(lib, [0, 3, 1])),
}


@pytest.mark.parametrize("name", list(THIRD))
def test_third_derivatives_match_pytorch(name):
    """The create_graph backward's own create_graph backward (a gradient of a gradient of a gradient)."""
    torch = pytest.importorskip("torch")
    arrays = _draw([(3, 4), (3, 4)], "nn", 10)
    results = []
    for lib, functional in ((dk, F), (torch, torch.nn.functional)):
        x, y = (lib.tensor(a, requires_grad=True) for a in arrays)
        gx, gy = lib.autograd.grad(THIRD[name](lib, functional, x, y), (x, y), create_graph=True)
        hx, hy = lib.autograd.grad((gx * gx).sum() + (gx * gy).sum(), (x, y), create_graph=True)
        results.append([t.detach().numpy() for t in lib.autograd.grad((hx * hy).sum() + (hx**3).sum(), (x, y))])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
