"""create_graph=True through the activations, shrinks, PReLU, the vector norm (normalize,
cosine_similarity), adaptive max pooling and embedding of nn.functional: the differentiable first-order
gradient is checked by finite differences, and its gradient (and which gradients are recorded on the
inputs) against PyTorch's double backward in float64."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern.nn import functional as F

from checks import create_graph_gradients, gradcheck

INF = float("inf")


def _t(rng, *shape, scale=1.0):
    return dk.tensor(rng.standard_normal(shape) * scale, requires_grad=True)


# name -> (function of the tensors, their shapes, the inputs' scale): finite differences of the gradient
CASES = {
    "mish": (lambda a: F.mish(a * 2) * a, [(3, 5)], 1.0),
    "hardswish": (lambda a: F.hardswish(a) * a + F.hardswish(a * a), [(3, 7)], 2.5),
    "hardsigmoid": (lambda a: F.hardsigmoid(a) * a * a, [(3, 7)], 3.0),  # PyTorch has no double backward for it
    "selu/celu": (
        lambda a: F.selu(a) * a + F.celu(a, 0.7) * a * a + F.celu(a * 0.5, -1.5) * a,
        [(3, 5)],
        1.5,
    ),
    "elu": (lambda a: F.elu(a, 0.6) * a * a, [(3, 5)], 1.5),
    "logsigmoid": (lambda a: F.logsigmoid(a * 3) * a, [(3, 5)], 1.0),
    "softshrink/hardshrink": (lambda a: F.softshrink(a, 0.4) * a * a + F.hardshrink(a, 0.3) * a, [(3, 5)], 1.0),
    "threshold": (lambda a: F.threshold(a, 0.2, -1.5) * a * a, [(3, 5)], 1.0),
    "prelu per channel": (lambda x, w: F.prelu(x, w) * F.prelu(x * x - 1, w) * x, [(2, 3, 5), (3,)], 1.0),
    "prelu one weight": (lambda x, w: F.prelu(x, w) ** 2 * x, [(4, 5), (1,)], 1.0),
    "normalize": (
        lambda a: (
            F.normalize(a, 2.0, 1) * a
            + F.normalize(a * a, 1.0, 0) * a
            + F.normalize(a, 3.0, 1) * a
            + F.normalize(a, 0.5, 0)
            + F.normalize(a, INF, 1) * a
        ),
        [(3, 5)],
        1.0,
    ),
    "cosine_similarity": (lambda a, b: F.cosine_similarity(a, b, dim=1) * a.sum(1), [(3, 5, 2), (5, 1)], 1.0),
    "adaptive_max_pool2d": (
        lambda x: F.adaptive_max_pool2d(x * x, (3, 4)) * F.adaptive_max_pool2d(x, (3, 4)),
        [(2, 2, 5, 7)],
        1.0,
    ),
    "adaptive_max_pool1d": (lambda x: F.adaptive_max_pool1d(x, 4) ** 3, [(3, 4, 7)], 1.0),
    "adaptive_max_pool3d": (
        lambda x: F.adaptive_max_pool3d(x, (2, 2, 3)) * F.adaptive_max_pool3d(x * x, 2)[..., :1],
        [(2, 3, 3, 7)],
        1.0,
    ),
    # padding_idx not among the indices: the padding row's gradient is 0 by definition, not its derivative
    "embedding": (
        lambda w, x: F.embedding(dk.tensor([[0, 2, 4], [2, 1, 2]]), w, padding_idx=3) ** 2 * x,
        [(5, 3), (2, 3, 3)],
        1.0,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_with_create_graph_are_differentiable(name):
    """The gradient of g = d sum(r * f(inputs)) / d inputs (create_graph=True) matches its finite differences."""
    f, shapes, scale = CASES[name]
    rng = np.random.default_rng(len(name))
    inputs = [_t(rng, *shape, scale=scale) for shape in shapes]
    weight = dk.tensor(rng.standard_normal(f(*inputs).shape))

    gradcheck(create_graph_gradients(lambda *tensors: (f(*tensors) * weight).sum()), *inputs, tol=1e-5)


def _special(values, shape, scale=1.0, seed=0):
    """Random float64 values of ``shape`` (times ``scale``), the first ones replaced by ``values``."""
    a = np.random.default_rng(seed).standard_normal(shape) * scale
    a.reshape(-1)[: len(values)] = values[: a.size]
    return a


# name -> (f(functional, tensor, *inputs), input arrays): compared with PyTorch's double backward
PYTORCH_CASES = {
    "mish": (lambda F, T, x: F.mish(x), [_special([0.0, 25.0, -30.0], (3, 7), 3)]),
    "hardswish": (lambda F, T, x: F.hardswish(x), [_special([-3.0, 3.0, 0.0], (3, 7), 3)]),
    "selu": (lambda F, T, x: F.selu(x), [_special([0.0, -0.0], (3, 7), 2)]),
    "celu": (lambda F, T, x: F.celu(x), [_special([0.0], (3, 7), 2)]),
    # alphas whose inverses float32 holds: PyTorch's celu gradient is off by 1e-7 otherwise
    "celu alpha 0.5": (lambda F, T, x: F.celu(x, 0.5), [_special([0.0], (3, 7), 2)]),
    "celu alpha -2": (lambda F, T, x: F.celu(x, -2.0), [_special([0.0], (3, 7), 2)]),
    "elu": (lambda F, T, x: F.elu(x, 0.7), [_special([0.0, -0.0], (3, 7), 2)]),
    "logsigmoid": (lambda F, T, x: F.logsigmoid(x), [_special([0.0, 40.0, -40.0], (3, 7), 3)]),
    "softshrink": (lambda F, T, x: F.softshrink(x, 0.4), [_special([0.4, -0.4, 0.0], (3, 7))]),
    "softshrink lambd 0": (lambda F, T, x: F.softshrink(x, 0.0), [_special([0.0], (3, 7))]),
    "hardshrink": (lambda F, T, x: F.hardshrink(x), [_special([0.5, -0.5], (3, 7))]),
    "threshold": (lambda F, T, x: F.threshold(x, 0.2, -1.5), [_special([0.2], (3, 7))]),
    "prelu per channel": (lambda F, T, x, w: F.prelu(x, w), [_special([], (2, 3, 5, 3)), _special([], (3,), seed=1)]),
    "prelu one weight": (lambda F, T, x, w: F.prelu(x, w), [_special([], (3, 5)), _special([], (1,), seed=1)]),
    "prelu 1-d": (lambda F, T, x, w: F.prelu(x, w), [_special([], (7,)), _special([], (1,), seed=1)]),
    "normalize": (lambda F, T, x: F.normalize(x), [_special([], (3, 5))]),
    "normalize p=1 dim 0": (lambda F, T, x: F.normalize(x, 1.0, 0), [_special([], (3, 5))]),
    "normalize p=3 eps": (lambda F, T, x: F.normalize(x * 1e-3, 3.0, -1, eps=1e-3), [_special([], (3, 5, 2))]),
    "normalize p=0.5": (lambda F, T, x: F.normalize(x, 0.5, 1), [_special([], (3, 5))]),
    "normalize p=inf": (lambda F, T, x: F.normalize(x, INF, 1), [_special([], (3, 5))]),
    "cosine_similarity": (
        lambda F, T, a, b: F.cosine_similarity(a, b),
        [_special([], (3, 5)), _special([], (3, 5), seed=1)],
    ),
    "cosine_similarity broadcast": (
        lambda F, T, a, b: F.cosine_similarity(a, b, dim=-1, eps=0.5),
        [_special([], (3, 1, 4)), _special([], (5, 4), seed=1)],
    ),
    "adaptive_max_pool2d": (lambda F, T, x: F.adaptive_max_pool2d(x, (3, 4)), [_special([], (2, 3, 5, 7))]),
    "adaptive_max_pool2d indices unbatched": (
        lambda F, T, x: F.adaptive_max_pool2d(x, (None, 2), return_indices=True)[0],
        [_special([], (3, 5, 7))],
    ),
    "adaptive_max_pool1d": (lambda F, T, x: F.adaptive_max_pool1d(x, 3), [_special([], (2, 3, 7))]),
    "adaptive_max_pool3d": (lambda F, T, x: F.adaptive_max_pool3d(x, (2, 3, 2)), [_special([], (2, 3, 5, 4, 3))]),
    "max_pool2d": (lambda F, T, x: F.max_pool2d(x, 2, ceil_mode=True), [_special([], (2, 3, 5, 7))]),
    "embedding": (
        lambda F, T, w, x: F.embedding(T([[0, 2, 4], [2, 2, 1]]), w) * x,
        [_special([], (5, 3)), _special([], (2, 3, 3), seed=1)],
    ),
    "embedding padding_idx": (
        lambda F, T, w, x: F.embedding(T([[0, 2, 4], [2, 2, 1]]), w, padding_idx=-3) * x,
        [_special([], (5, 3)), _special([], (2, 3, 3), seed=1)],
    ),
    # zero-size inputs
    "mish empty": (lambda F, T, x: F.mish(x), [np.zeros((0, 3))]),
    "hardswish empty": (lambda F, T, x: F.hardswish(x), [np.zeros((0, 3))]),
    "selu empty": (lambda F, T, x: F.selu(x), [np.zeros((2, 0))]),
    "logsigmoid empty": (lambda F, T, x: F.logsigmoid(x), [np.zeros((0,))]),
    "softshrink empty": (lambda F, T, x: F.softshrink(x), [np.zeros((0, 3))]),
    "threshold empty": (lambda F, T, x: F.threshold(x, 0.1, 2.0), [np.zeros((0, 3))]),
    "prelu empty": (lambda F, T, x, w: F.prelu(x, w), [np.zeros((0, 3, 2)), _special([], (3,))]),
    "normalize empty": (lambda F, T, x: F.normalize(x, 3.0), [np.zeros((0, 4))]),
    "cosine_similarity empty": (lambda F, T, a, b: F.cosine_similarity(a, b), [np.zeros((0, 4)), np.zeros((0, 4))]),
    "adaptive_max_pool2d empty": (lambda F, T, x: F.adaptive_max_pool2d(x, 2), [np.zeros((0, 2, 3, 3))]),
    "embedding empty": (lambda F, T, w: F.embedding(T(np.zeros((0, 2), np.int64)), w), [_special([], (5, 3))]),
}


def _double_backward(lib, f, arrays, weight, directions):
    """The first-order gradients (create_graph) of sum(weight * f(inputs)), whether each is recorded, and
    the gradients of sum(direction * g + g * g) over them, as NumPy arrays (zeros where unused)."""
    functional = F if lib is dk else lib.nn.functional
    xs = [lib.tensor(a, requires_grad=True) for a in arrays]
    grads = lib.autograd.grad((f(functional, lib.tensor, *xs) * lib.tensor(weight)).sum(), xs, create_graph=True)
    recorded = [g.requires_grad for g in grads]
    total = sum((g * lib.tensor(d) + g * g).sum() for g, d, r in zip(grads, directions, recorded) if r)
    second = lib.autograd.grad(total, xs, allow_unused=True) if any(recorded) else [None] * len(xs)

    def host(t, like):
        if t is None:
            return np.zeros(like.shape)
        return t.detach().numpy(force=True) if lib is not dk else t.detach().numpy()

    return [host(g, a) for g, a in zip(grads, arrays)], recorded, [host(s, a) for s, a in zip(second, arrays)]


@pytest.mark.parametrize("name", list(PYTORCH_CASES))
def test_double_backward_matches_pytorch(name):
    torch = pytest.importorskip("torch")
    f, arrays = PYTORCH_CASES[name]
    rng = np.random.default_rng(len(name))
    with dk.no_grad():
        out_shape = f(F, dk.tensor, *[dk.tensor(a) for a in arrays]).shape
    weight = rng.standard_normal(out_shape)
    directions = [rng.standard_normal(a.shape) for a in arrays]
    ours = _double_backward(dk, f, arrays, weight, directions)
    theirs = _double_backward(torch, f, arrays, weight, directions)
    assert ours[1] == theirs[1], "which gradients are recorded on the inputs"
    for kind, got, expected in (("first", ours[0], theirs[0]), ("second", ours[2], theirs[2])):
        for i, (a, b) in enumerate(zip(got, expected)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"{kind}-order gradient of input {i}")


def test_prelu_module_gradient_penalty_matches_pytorch():
    """A gradient penalty through nn.PReLU: the slope's gradient comes through the input's gradient."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x0, slopes, v = rng.standard_normal((4, 3, 5)), rng.uniform(0.1, 0.5, 3), rng.standard_normal((4, 3, 5))
    results = []
    for lib in (dk, torch):
        layer = lib.nn.PReLU(3).double()
        with lib.no_grad():
            layer.weight.copy_(lib.tensor(slopes))
        x = lib.tensor(x0, requires_grad=True)
        (g,) = lib.autograd.grad((layer(x) * lib.tensor(v)).tanh().sum(), x, create_graph=True)
        ((g * g).sum() + layer(x).sum()).backward()
        results.append((layer.weight.grad.numpy(), x.grad.numpy()))
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-13)


def test_normalize_of_a_zero_vector_has_finite_second_derivatives():
    """At a zero norm the first-order gradient is g / eps (the norm's own gradient is 0), constant nearby:
    its derivative is 0 for every p (PyTorch's is NaN for p = 2 and p < 1); the other rows as PyTorch's."""
    torch = pytest.importorskip("torch")
    x0 = np.random.default_rng(6).standard_normal((3, 4))
    x0[1] = 0
    w, v = np.random.default_rng(7).standard_normal((2, 3, 4))
    for p in (1.0, 2.0, 3.0, 0.5, INF):
        seconds = []
        for lib in (dk, torch):
            functional = F if lib is dk else lib.nn.functional
            x = lib.tensor(x0, requires_grad=True)
            (g,) = lib.autograd.grad((functional.normalize(x, p) * lib.tensor(w)).sum(), x, create_graph=True)
            seconds.append(lib.autograd.grad((g * lib.tensor(v)).sum(), x)[0].numpy())
        np.testing.assert_array_equal(seconds[0][1], 0.0, err_msg=f"p={p}")
        np.testing.assert_allclose(seconds[0][[0, 2]], seconds[1][[0, 2]], rtol=1e-10, atol=1e-12, err_msg=f"p={p}")


@pytest.mark.parametrize(
    "f",
    [
        lambda a: F.softshrink(a, 0.5),
        lambda a: F.hardshrink(a, 0.5),
        lambda a: F.threshold(a, 0.5, 2.0),
        F.hardswish,
        F.selu,
        lambda a: F.normalize(a.reshape(2, 3), 2.0, 1).reshape(6),
        lambda a: F.normalize(a.reshape(2, 3), 3.0, 1).reshape(6),
        lambda a: F.prelu(a, dk.tensor([0.25])),
    ],
    ids=["softshrink", "hardshrink", "threshold", "hardswish", "selu", "normalize", "normalize p=3", "prelu"],
)
def test_the_recorded_first_order_gradient_is_the_backward_one(f):
    """create_graph=True gives backward's gradient, inf and NaN (in the input or the incoming gradient)
    included: a masked-out inf gradient stays 0, a NaN input keeps its NaN."""
    x0 = np.array([0.1, 2.0, -3.0, np.nan, 0.0, -0.7])
    seed = dk.tensor(np.array([np.inf, np.nan, 1.5, 1.0, -np.inf, 2.0]))
    x = dk.tensor(x0, requires_grad=True)
    out = f(x)
    (plain,) = dk.autograd.grad(out, x, seed, retain_graph=True)
    (recorded,) = dk.autograd.grad(out, x, seed, create_graph=True)
    assert recorded.requires_grad
    np.testing.assert_array_equal(recorded.detach().numpy(), plain.numpy())
