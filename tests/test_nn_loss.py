"""deepkern.nn losses: every loss and option against a float64 NumPy reference formula (written
here from PyTorch's documented definitions), against torch.nn.functional with the same inputs
(where PyTorch is installed), gradients of every differentiable input by finite differences in
float64, the loss Modules, and clear errors on bad input."""

from __future__ import annotations

import deepkern
import numpy as np
import pytest
from deepkern.nn import functional as nnf
from deepkern.nn import loss as L

from checks import F32, F64, check, gradcheck, raises_naming, shape_pattern

# ----------------------------------------------------------------------------------------------
# float64 references


def _reduce(loss, reduction, denom=None):
    if reduction == "none":
        return loss
    return loss.sum() / (loss.size if denom is None else denom) if reduction == "mean" else loss.sum()


def mse_ref(x, t, reduction="mean"):
    return _reduce((x - t) ** 2, reduction)


def l1_ref(x, t, reduction="mean"):
    return _reduce(np.abs(x - t), reduction)


def _log_softmax_last(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _classes_last(x):
    return np.moveaxis(x, 1, -1) if x.ndim > 1 else x


def cross_entropy_ref(x, t, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """PyTorch's definition: (1 - eps) * NLL(log_softmax) + eps / C * (-sum_c w_c log p_c); 'mean'
    divides both by the summed target weights (class indices) or by N (probabilities)."""
    logp = _log_softmax_last(_classes_last(np.asarray(x, np.float64)))
    classes = logp.shape[-1]
    w = np.ones(classes) if weight is None else np.asarray(weight, np.float64)
    eps = label_smoothing
    if np.asarray(t).dtype.kind == "f":
        p = _classes_last(t) * (1 - eps) + eps / classes
        return _reduce(-(w * p * logp).sum(-1), reduction)
    valid = t != ignore_index
    tc = np.where(valid, t, 0)
    picked = np.take_along_axis(logp, tc[..., None], -1)[..., 0]
    nll = -w[tc] * picked * valid
    smooth = -(w * logp).sum(-1) * valid
    return _reduce((1 - eps) * nll + eps / classes * smooth, reduction, (w[tc] * valid).sum())


def nll_ref(x, t, weight=None, ignore_index=-100, reduction="mean"):
    z = _classes_last(np.asarray(x, np.float64))
    w = np.ones(z.shape[-1]) if weight is None else np.asarray(weight, np.float64)
    valid = t != ignore_index
    tc = np.where(valid, t, 0)
    loss = -w[tc] * np.take_along_axis(z, tc[..., None], -1)[..., 0] * valid
    return _reduce(loss, reduction, (w[tc] * valid).sum())


def bce_with_logits_ref(x, y, weight=None, reduction="mean", pos_weight=None):
    """-w [pos_weight y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], the naive formula (fine
    for the moderate logits the reference is used with)."""
    s = 1 / (1 + np.exp(-x))
    pw = 1.0 if pos_weight is None else pos_weight
    loss = -(pw * y * np.log(s) + (1 - y) * np.log(1 - s))
    return _reduce(loss * (1.0 if weight is None else weight), reduction)


def _dist_ref(a, b, p, eps):
    return (np.abs(a - b + eps) ** p).sum(-1) ** (1 / p)


def triplet_ref(a, pos, neg, margin=1.0, p=2.0, eps=1e-6, swap=False, reduction="mean"):
    d_pos, d_neg = _dist_ref(a, pos, p, eps), _dist_ref(a, neg, p, eps)
    if swap:
        d_neg = np.minimum(d_neg, _dist_ref(pos, neg, p, eps))
    return _reduce(np.maximum(d_pos - d_neg + margin, 0), reduction)


def contrastive_ref(x1, x2, y, margin=1.0, eps=1e-6, reduction="mean"):
    d = _dist_ref(x1, x2, 2, eps)
    return _reduce(y * d**2 + (1 - y) * np.maximum(margin - d, 0) ** 2, reduction)


def cosine_embedding_ref(x1, x2, y, margin=0.0, reduction="mean"):
    cos = (x1 * x2).sum(-1) / np.sqrt(((x1**2).sum(-1) + 1e-12) * ((x2**2).sum(-1) + 1e-12))
    return _reduce(np.where(y == 1, 1 - cos, np.maximum(cos - margin, 0)), reduction)


# ----------------------------------------------------------------------------------------------
# cases: (loss, inputs(rng) -> [args], options, indices of the differentiable args)


def _pair(rng, shape=(4, 5)):
    return [rng.standard_normal(shape), rng.standard_normal(shape)]


def _logits_and_classes(rng, shape=(6, 4), ignore=True):
    x = rng.standard_normal(shape) * 2
    t = rng.integers(0, shape[1] if len(shape) > 1 else shape[0], shape[:1] + shape[2:] if len(shape) > 1 else ())
    if ignore and t.size > 1:
        t.flat[1] = -100  # the default ignore_index
    return [x, t]


def _logits_and_probs(rng, shape=(6, 4)):
    p = rng.random(shape)
    return [rng.standard_normal(shape), p / p.sum(1, keepdims=True)]


def _bce_inputs(rng, shape=(5, 3)):
    return [rng.standard_normal(shape) * 3, rng.random(shape)]


def _triplet_inputs(rng, shape=(7, 4)):
    return [rng.standard_normal(shape) for _ in range(3)]


def _pairs_and_labels(values):
    def make(rng, shape=(8, 3)):
        return [rng.standard_normal(shape), rng.standard_normal(shape), rng.choice(values, shape[:-1])]

    return make


W4 = np.array([0.3, 1.7, 0.9, 1.2])

CASES = [
    ("mse_loss", _pair, [{}, {"reduction": "sum"}, {"reduction": "none"}], (0, 1)),
    ("l1_loss", _pair, [{}, {"reduction": "sum"}, {"reduction": "none"}], (0, 1)),
    (
        "cross_entropy",
        _logits_and_classes,
        [
            {},
            {"weight": W4},
            {"label_smoothing": 0.2},
            {"weight": W4, "label_smoothing": 0.3, "reduction": "sum"},
            {"reduction": "none", "weight": W4, "label_smoothing": 0.1},
        ],
        (0,),
    ),
    (
        "cross_entropy",
        lambda rng: _logits_and_classes(rng, ignore=False),
        [{"ignore_index": 2}, {"ignore_index": 1, "weight": W4, "label_smoothing": 0.2}],
        (0,),
    ),
    (
        "cross_entropy",
        lambda rng: _logits_and_classes(rng, (3, 4, 2, 3)),
        [{}, {"weight": W4, "label_smoothing": 0.25}, {"reduction": "none"}],
        (0,),
    ),
    ("cross_entropy", lambda rng: _logits_and_classes(rng, (4,)), [{}, {"label_smoothing": 0.1}], (0,)),
    (
        "cross_entropy",
        _logits_and_probs,
        [{}, {"weight": W4}, {"label_smoothing": 0.2, "reduction": "sum"}, {"reduction": "none", "weight": W4}],
        (0, 1),
    ),
    ("cross_entropy", lambda rng: _logits_and_probs(rng, (2, 4, 3)), [{"label_smoothing": 0.1}], (0, 1)),
    (
        "nll_loss",
        _logits_and_classes,
        [{}, {"weight": W4}, {"reduction": "sum", "weight": W4}, {"reduction": "none"}],
        (0,),
    ),
    ("nll_loss", lambda rng: _logits_and_classes(rng, ignore=False), [{"ignore_index": 0, "weight": W4}], (0,)),
    ("nll_loss", lambda rng: _logits_and_classes(rng, (3, 4, 5)), [{"weight": W4}], (0,)),
    (
        "binary_cross_entropy_with_logits",
        _bce_inputs,
        [
            {},
            {"reduction": "sum"},
            {"reduction": "none"},
            {"weight": np.array([0.5, 2.0, 1.5])},
            {"pos_weight": np.array([3.0, 0.5, 1.0])},
            {"weight": np.array([[0.2], [1], [2], [1], [3]]), "pos_weight": np.array([2.0, 1, 0.3])},
        ],
        (0, 1),
    ),
    (
        "triplet_margin_loss",
        _triplet_inputs,
        [
            {},
            {"margin": 3.0},
            {"swap": True, "margin": 2.5},
            {"p": 1.0, "margin": 2.0},
            {"p": 3.0, "eps": 1e-3},
            {"reduction": "none", "margin": 2.0},
            {"reduction": "sum", "margin": 2.0},
        ],
        (0, 1, 2),
    ),
    ("triplet_margin_loss", lambda rng: _triplet_inputs(rng, (5,)), [{"margin": 4.0}], (0, 1, 2)),
    (
        "contrastive_loss",
        _pairs_and_labels([0, 1]),
        [{}, {"margin": 3.0}, {"margin": 2.0, "reduction": "sum"}, {"reduction": "none", "margin": 2.5}],
        (0, 1),
    ),
    (
        "cosine_embedding_loss",
        _pairs_and_labels([1, -1]),
        [{}, {"margin": -0.3}, {"margin": 0.2, "reduction": "sum"}, {"reduction": "none"}],
        (0, 1),
    ),
]

REFS = {
    "mse_loss": mse_ref,
    "l1_loss": l1_ref,
    "cross_entropy": cross_entropy_ref,
    "nll_loss": nll_ref,
    "binary_cross_entropy_with_logits": bce_with_logits_ref,
    "triplet_margin_loss": triplet_ref,
    "contrastive_loss": contrastive_ref,
    "cosine_embedding_loss": cosine_embedding_ref,
}

PARAMS = [
    pytest.param(
        name,
        make,
        kw,
        diff,
        id=f"{name}-{i}-" + "-".join(f"{k}={v if np.isscalar(v) else 'arr'}" for k, v in kw.items()),
    )
    for i, (name, make, options, diff) in enumerate(CASES)
    for kw in options
]


@pytest.mark.parametrize("name, make, kw, diff", PARAMS)
def test_matches_float64_reference(rng, name, make, kw, diff):
    args = make(rng)
    got = getattr(L, name)(*[deepkern.tensor(a) for a in args], **kw)
    want = REFS[name](*args, **kw)
    check(got.numpy(), np.asarray(want, np.float64), F64, name)


@pytest.mark.parametrize("name, make, kw, diff", PARAMS)
def test_float32(rng, name, make, kw, diff):
    args = make(rng)
    args32 = [a.astype(F32) if a.dtype.kind == "f" else a for a in args]
    got = getattr(L, name)(*[deepkern.tensor(a) for a in args32], **kw)
    check(got.numpy(), np.asarray(REFS[name](*args32, **kw), np.float64), F32, name, tol=1e-5)


@pytest.mark.parametrize("name, make, kw, diff", PARAMS)
def test_gradcheck(rng, name, make, kw, diff):
    args = make(rng)
    tensors = [deepkern.tensor(a, requires_grad=i in diff) for i, a in enumerate(args)]
    gradcheck(lambda *ts: getattr(L, name)(*ts, **kw), *tensors)


@pytest.mark.parametrize("name, make, kw, diff", [p for p in PARAMS if p.values[0] != "contrastive_loss"])
def test_matches_torch(rng, name, make, kw, diff):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    args = make(rng)
    ours = [deepkern.tensor(a, requires_grad=i in diff) for i, a in enumerate(args)]
    theirs = [torch.tensor(a, requires_grad=i in diff) for i, a in enumerate(args)]
    tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    got, want = getattr(L, name)(*ours, **kw), getattr(torch.nn.functional, name)(*theirs, **tkw)
    check(got.detach().numpy(), want.detach().numpy(), F64, name)
    weight = rng.standard_normal(got.shape)
    (got * deepkern.tensor(weight)).sum().backward()
    (want * torch.tensor(weight)).sum().backward()
    for i in diff:
        check(ours[i].grad.numpy(), theirs[i].grad.numpy(), F64, f"{name} grad of argument {i}")


# ----------------------------------------------------------------------------------------------
# specific behaviour


def test_bce_with_logits_is_stable_for_huge_logits():
    x = deepkern.tensor(np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0]), requires_grad=True)
    y = np.array([1.0, 0.0, 0.5, 1.0, 0.0])
    loss = L.binary_cross_entropy_with_logits(x, y, reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), [1000.0, 0.0, np.log(2), 0.0, 1000.0], atol=1e-12)
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [-1.0, 0.0, 0.0, 0.0, 1.0], atol=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    x = deepkern.tensor(np.array([[1000.0, 0.0, -1000.0]], F32), requires_grad=True)
    loss = L.cross_entropy(x, np.array([1]))
    loss.backward()
    assert np.isfinite(loss.item()) and abs(loss.item() - 1000.0) < 1e-3
    np.testing.assert_allclose(x.grad.numpy(), [[1.0, -1.0, 0.0]], atol=1e-6)


def test_cross_entropy_all_ignored_mean_is_nan_like_torch():
    x = deepkern.tensor(np.zeros((2, 3)), requires_grad=True)
    loss = L.cross_entropy(x, np.array([-100, -100]))
    assert np.isnan(loss.item())
    assert L.cross_entropy(x, np.array([-100, -100]), reduction="sum").item() == 0.0


@pytest.mark.parametrize("loss", [L.cross_entropy, L.nll_loss])
def test_all_ignored_mean_has_zero_gradient_like_torch(loss):
    """Every target ignored: the mean is NaN (0 / 0) but no sample has a gradient: zeros, not NaN."""
    x = deepkern.tensor(np.log(np.full((3, 4, 2), 0.25)), requires_grad=True)
    value = loss(x, np.full((3, 2), 2), ignore_index=2)
    value.backward()
    assert np.isnan(value.item())
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((3, 4, 2)))


@pytest.mark.parametrize("reduction, expected", [("mean", np.nan), ("sum", 0.0), ("none", np.zeros(2))])
def test_losses_over_zero_classes_like_torch(reduction, expected):
    """C = 0: probability targets and all-ignored class indices give empty sums per sample."""
    x = deepkern.zeros((2, 0), requires_grad=True)
    for loss in (
        L.cross_entropy(x, np.zeros((2, 0)), reduction=reduction),
        L.nll_loss(x, np.array([-100, -100]), reduction=reduction),
    ):
        np.testing.assert_array_equal(loss.detach().numpy(), expected)
        loss.sum().backward()
        assert x.grad.shape == (2, 0)


def test_l1_gradient_is_zero_where_the_difference_is_nan_like_torch():
    """A NaN target (a missing value masked out of the loss) must not turn the gradient into NaN."""
    x = deepkern.tensor([1.0, 2.0, 3.0, -1.0], requires_grad=True)
    L.l1_loss(x, np.array([0.0, np.nan, 1.0, 0.0]), reduction="none")[np.array([0, 2, 3])].mean().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.array([1, 0, 1, -1], np.float32) / np.float32(3))


@pytest.mark.parametrize("what", ["input", "target"])
def test_binary_cross_entropy_refuses_nan_like_torch(what):
    values = {"input": np.array([0.5, 0.5]), "target": np.array([1.0, 0.0])}
    values[what] = np.array([0.5, np.nan])
    with raises_naming(ValueError, "binary_cross_entropy", what, "between 0 and 1", "nan"):
        L.binary_cross_entropy(values["input"], values["target"])


def test_modules_match_functional_forms(rng):
    x, t = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    a, b = rng.standard_normal((2, 5, 4))
    y01, ypm = rng.integers(0, 2, 5), np.where(rng.random(5) < 0.5, 1, -1)
    pairs = [
        (L.MSELoss(reduction="sum")(a, b), L.mse_loss(a, b, reduction="sum")),
        (L.L1Loss()(a, b), L.l1_loss(a, b)),
        (L.CrossEntropyLoss(weight=W4, label_smoothing=0.1)(x, t), L.cross_entropy(x, t, W4, label_smoothing=0.1)),
        (L.NLLLoss(ignore_index=2)(x, t), L.nll_loss(x, t, ignore_index=2)),
        (
            L.BCEWithLogitsLoss(pos_weight=W4)(a, np.abs(b) / 3),
            L.binary_cross_entropy_with_logits(a, np.abs(b) / 3, pos_weight=W4),
        ),
        (L.TripletMarginLoss(margin=2.0, swap=True)(a, b, x), L.triplet_margin_loss(a, b, x, margin=2.0, swap=True)),
        (L.ContrastiveLoss(margin=2.0)(a, b, y01), L.contrastive_loss(a, b, y01, margin=2.0)),
        (L.CosineEmbeddingLoss(margin=0.1)(a, b, ypm), L.cosine_embedding_loss(a, b, ypm, margin=0.1)),
    ]
    for mod, fn in pairs:
        np.testing.assert_array_equal(mod.numpy(), fn.numpy())
    ce = L.CrossEntropyLoss(weight=W4)
    assert list(ce.state_dict()) == ["weight"] and list(L.CrossEntropyLoss().state_dict()) == []
    assert list(L.BCEWithLogitsLoss(pos_weight=W4).state_dict()) == ["pos_weight"]
    assert repr(L.MSELoss(reduction="sum")) == "MSELoss(reduction='sum')"


def test_loss_backpropagates_into_a_graph(rng):
    w = deepkern.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    x = rng.standard_normal((5, 3))
    t = rng.integers(0, 4, 5)
    gradcheck(lambda w: L.cross_entropy(deepkern.tensor(x) @ w, t, label_smoothing=0.1), w)
    # Embeddings computed in the graph (non-leaf inputs read by several nodes of a composed loss).
    a, b, c = (deepkern.tensor(v, requires_grad=True) for v in rng.standard_normal((3, 5, 4)))
    y01, ypm = rng.integers(0, 2, 5), np.where(rng.random(5) < 0.5, 1, -1)
    gradcheck(lambda a, b, c: L.triplet_margin_loss(a * 2, b * 2, c * 2, margin=3.0, swap=True), a, b, c)
    gradcheck(lambda a, b: L.contrastive_loss(a * 2, b.tanh(), y01, margin=2.0), a, b)
    gradcheck(lambda a, b: L.cosine_embedding_loss(a * 2, b.tanh(), ypm, margin=0.1), a, b)


# ----------------------------------------------------------------------------------------------
# bad input


def test_bad_input_names_the_loss_and_the_shapes_or_values():
    x10 = deepkern.zeros(4, 10)
    with raises_naming(ValueError, "CrossEntropyLoss: target 12 is out of range for 10 classes"):
        L.CrossEntropyLoss()(x10, np.array([1, 2, 12, 3]))
    with raises_naming(ValueError, "cross_entropy", "target -3 is out of range for 10 classes"):
        L.cross_entropy(x10, np.array([1, -3, 2, 3]))
    with raises_naming(ValueError, "NLLLoss", "target 10 is out of range for 10 classes"):
        L.NLLLoss()(x10, np.array([1, 10, 2, 3]))
    with raises_naming(
        ValueError, "CrossEntropyLoss", shape_pattern((4, 10)), shape_pattern((3,)), shape_pattern((4,))
    ):
        L.CrossEntropyLoss()(x10, np.array([1, 2, 3]))
    with raises_naming(ValueError, "cross_entropy", shape_pattern((4, 9))):
        L.cross_entropy(x10, np.zeros((4, 9)))
    with raises_naming(TypeError, "nll_loss", "integer"):
        L.nll_loss(x10, np.zeros(4))
    with raises_naming(TypeError, "CrossEntropyLoss", "floating-point", "int64"):
        L.CrossEntropyLoss()(np.zeros((4, 10), np.int64), np.zeros(4, np.int64))
    with raises_naming(ValueError, "CrossEntropyLoss", "weight", shape_pattern((3,)), r"\(10,\)"):
        L.CrossEntropyLoss(weight=np.ones(3))(x10, np.array([1, 2, 3, 4]))
    with raises_naming(ValueError, "label_smoothing"):
        L.cross_entropy(x10, np.array([1, 2, 3, 4]), label_smoothing=1.5)
    with raises_naming(ValueError, "MSELoss", shape_pattern((3, 4)), shape_pattern((3, 5))):
        L.MSELoss()(deepkern.zeros(3, 4), deepkern.zeros(3, 5))
    with raises_naming(ValueError, "l1_loss", shape_pattern((2,)), shape_pattern((3,))):
        L.l1_loss(np.zeros(2), np.zeros(3))
    with raises_naming(ValueError, "BCEWithLogitsLoss", shape_pattern((3, 4)), shape_pattern((4, 3))):
        L.BCEWithLogitsLoss()(deepkern.zeros(3, 4), deepkern.zeros(4, 3))
    with raises_naming(ValueError, "BCEWithLogitsLoss", "pos_weight", shape_pattern((3,)), shape_pattern((3, 4))):
        L.BCEWithLogitsLoss(pos_weight=np.ones(3))(deepkern.zeros(3, 4), deepkern.zeros(3, 4))
    with raises_naming(ValueError, "TripletMarginLoss", shape_pattern((5, 3)), shape_pattern((5, 4))):
        L.TripletMarginLoss()(np.zeros((5, 3)), np.zeros((5, 3)), np.zeros((5, 4)))
    with raises_naming(ValueError, "triplet_margin_loss", shape_pattern((2, 5, 3))):
        L.triplet_margin_loss(*(np.zeros((2, 5, 3)),) * 3)
    with raises_naming(ValueError, "ContrastiveLoss", "target", "0 or 1", "2"):
        L.ContrastiveLoss()(np.ones((3, 2)), np.ones((3, 2)), np.array([0, 1, 2]))
    with raises_naming(ValueError, "ContrastiveLoss", "target", shape_pattern((4,)), shape_pattern((3,))):
        L.ContrastiveLoss()(np.ones((3, 2)), np.ones((3, 2)), np.array([0, 1, 1, 0]))
    with raises_naming(ValueError, "CosineEmbeddingLoss", "1 or -1", "0"):
        L.CosineEmbeddingLoss()(np.ones((3, 2)), np.ones((3, 2)), np.array([1, 0, -1]))
    with raises_naming(ValueError, "MSELoss", "reduction", "'avg'"):
        L.MSELoss(reduction="avg")
    with raises_naming(ValueError, "mse_loss", "reduction"):
        L.mse_loss(np.zeros(2), np.zeros(2), reduction="elementwise_mean")


def test_float16_losses_sum_in_float32_and_class_indices_take_float16():
    """A float16 'mean' loss of large terms is finite (its sum had overflowed float16 to inf); cross
    entropy, softmax and log_softmax take float16 input (computed in float32, rounded once)."""
    x = deepkern.tensor(np.full((64, 64), 40.0, np.float16))
    y = deepkern.tensor(np.zeros((64, 64), np.float16))
    assert nnf.mse_loss(x, y).item() == 1600.0 and nnf.l1_loss(x, y).item() == 40.0
    logits = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float16)
    target = np.array([0, 3, 6, 2, 1])
    got = nnf.cross_entropy(deepkern.tensor(logits), deepkern.tensor(target))
    want = nnf.cross_entropy(deepkern.tensor(logits.astype(np.float32)), deepkern.tensor(target))
    assert got.dtype == np.float16 and got.item() == np.float16(want.item())
    assert nnf.log_softmax(deepkern.tensor(logits), dim=1).dtype == np.float16
    np.testing.assert_allclose(
        nnf.softmax(deepkern.tensor(logits), dim=1).numpy().astype(np.float32).sum(axis=1), 1.0, rtol=3e-3
    )


def test_weights_that_require_grad_are_refused_where_no_gradient_reaches_them():
    """As PyTorch's "not differentiable": a learnable class weight would silently never train."""
    x, w = deepkern.tensor(np.zeros((2, 3), np.float32)), deepkern.tensor(np.ones(3, np.float32), requires_grad=True)
    for call, what in (
        (lambda: nnf.cross_entropy(x, deepkern.tensor([0, 1]), weight=w), "weight"),
        (lambda: nnf.nll_loss(x, deepkern.tensor([0, 1]), weight=w), "weight"),
        (lambda: nnf.binary_cross_entropy_with_logits(x, x, pos_weight=w), "pos_weight"),
    ):
        with pytest.raises(RuntimeError, match=f"not differentiable with respect to {what}"):
            call()
    with deepkern.no_grad():  # nothing is recorded: nothing to refuse
        nnf.cross_entropy(x, deepkern.tensor([0, 1]), weight=w)


def test_triplet_margin_must_be_positive():
    a = deepkern.tensor(np.ones((2, 3), np.float32))
    for margin in (0.0, -1.0):
        with pytest.raises(ValueError, match="margin must be greater than 0"):
            nnf.triplet_margin_loss(a, a, a, margin=margin)
