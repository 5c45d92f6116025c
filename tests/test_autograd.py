"""Tensor and autograd: every tensor op's gradient by finite differences in float64, broadcasting,
accumulation, no_grad, graph freeing, creation semantics and bad input."""

from __future__ import annotations

import re

import deepkern as dk
import numpy as np
import pytest

from checks import gradcheck, raises_naming


def t64(device, rng, *shape, positive=False):
    """A float64 leaf tensor on ``device`` that requires grad, of random values (> 0.5 if ``positive``)."""
    a = rng.standard_normal(shape)
    return dk.tensor(np.abs(a) + 0.5 if positive else a, requires_grad=True, device=device)


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
}
SHAPE_PAIRS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3)), ((5, 1), (1, 6))]


@pytest.mark.parametrize("op", sorted(BINARY))
@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
def test_binary_ops_broadcast_gradients(device, op, shapes, rng):
    a = t64(device, rng, *shapes[0], positive=op == "pow")
    b = t64(device, rng, *shapes[1], positive=op in ("div", "pow"))
    expected = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "pow": np.power}[op](
        a.detach().cpu().numpy(), b.detach().cpu().numpy()
    )
    out = BINARY[op](a, b)
    np.testing.assert_allclose(out.detach().cpu().numpy(), expected, rtol=1e-12)
    gradcheck(BINARY[op], a, b)


@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_ops_with_python_scalars(device, op, rng):
    a = t64(device, rng, 3, 2, positive=True)
    gradcheck(lambda x: BINARY[op](x, 1.7), a)
    gradcheck(lambda x: BINARY[op](2.5, x), a)


UNARY = {
    "neg": (lambda x: -x, np.negative, False),
    "exp": (lambda x: x.exp(), np.exp, False),
    "log": (lambda x: x.log(), np.log, True),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, True),
    "abs": (lambda x: x.abs(), np.abs, False),
    "tanh": (lambda x: x.tanh(), np.tanh, False),
    "sigmoid": (lambda x: x.sigmoid(), lambda a: 1 / (1 + np.exp(-a)), False),
    "relu": (lambda x: x.relu(), lambda a: np.maximum(a, 0), False),
    "clamp": (lambda x: x.clamp(-0.3, 0.4), lambda a: np.clip(a, -0.3, 0.4), False),
}


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_ops(device, op, rng):
    fn, ref, positive = UNARY[op]
    x = t64(device, rng, 4, 5, positive=positive)
    np.testing.assert_allclose(fn(x).detach().cpu().numpy(), ref(x.detach().cpu().numpy()), rtol=1e-12)
    gradcheck(fn, x)


def test_sigmoid_saturates_without_overflow(device):
    x = dk.tensor(np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0], np.float32), requires_grad=True, device=device)
    with np.errstate(over="raise", invalid="raise"):
        y = x.sigmoid()
        y.sum().backward()
    assert np.all(np.isfinite(y.detach().cpu().numpy())) and np.all(np.isfinite(x.grad.cpu().numpy()))


@pytest.mark.parametrize(
    "shapes",
    [
        ((3, 4), (4, 5)),
        ((4,), (4, 3)),
        ((3, 4), (4,)),
        ((4,), (4,)),
        ((2, 3, 4), (4, 5)),
        ((2, 1, 3, 4), (5, 4, 2)),
        ((7, 1), (1, 9)),
    ],
    ids=str,
)
def test_matmul(device, shapes, rng):
    a, b = t64(device, rng, *shapes[0]), t64(device, rng, *shapes[1])
    host_a, host_b = a.detach().cpu().numpy(), b.detach().cpu().numpy()
    np.testing.assert_allclose((a @ b).detach().cpu().numpy(), host_a @ host_b, rtol=1e-12)
    gradcheck(lambda x, y: x @ y, a, b)


@pytest.mark.parametrize("dim,keepdim", [(None, False), (0, False), (1, True), ((0, 2), False), (-1, True)])
@pytest.mark.parametrize("op", ["sum", "mean"])
def test_sum_mean(device, op, dim, keepdim, rng):
    x = t64(device, rng, 3, 4, 5)
    out = getattr(x, op)(dim=dim, keepdim=keepdim)
    ref = getattr(np, op)(x.detach().cpu().numpy(), axis=dim, keepdims=keepdim)
    np.testing.assert_allclose(out.detach().cpu().numpy(), ref, rtol=1e-12)
    gradcheck(lambda t: getattr(t, op)(dim=dim, keepdim=keepdim), x)


@pytest.mark.parametrize("op", ["max", "min"])
def test_max_min(device, op, rng):
    x = t64(device, rng, 3, 5)
    res = getattr(x, op)(dim=1)
    ref = getattr(np, op)(x.detach().cpu().numpy(), axis=1)
    np.testing.assert_array_equal(res.values.detach().cpu().numpy(), ref)
    arg = np.argmax if op == "max" else np.argmin
    np.testing.assert_array_equal(res.indices.cpu().numpy(), arg(x.detach().cpu().numpy(), axis=1))
    assert res.indices.dtype == np.int64 and not res.indices.requires_grad
    gradcheck(lambda t: getattr(t, op)(dim=1, keepdim=True).values, x)
    gradcheck(lambda t: getattr(t, op)(), x)


def test_max_shares_gradient_among_ties(device):
    x = dk.tensor(np.array([1.0, 3.0, 3.0, 2.0]), requires_grad=True, device=device)
    x.max().backward()
    np.testing.assert_array_equal(x.grad.cpu().numpy(), [0, 0.5, 0.5, 0])


def test_shape_ops(device, rng):
    x = t64(device, rng, 2, 3, 4)
    assert x.reshape(6, 4).shape == (6, 4) and x.view(-1).shape == (24,)
    assert x.permute(2, 0, 1).shape == (4, 2, 3) and x.transpose(0, 2).shape == (4, 3, 2)
    assert x.flatten(1).shape == (2, 12) and x.unsqueeze(1).shape == (2, 1, 3, 4)
    assert x.unsqueeze(-1).squeeze(-1).shape == (2, 3, 4)
    assert x[:, :1].squeeze().shape == (2, 4)
    gradcheck(lambda t: t.reshape(4, -1) * 2, x)
    gradcheck(lambda t: t.permute(1, 2, 0), x)
    gradcheck(lambda t: t.T, x)
    gradcheck(lambda t: t.flatten(), x)
    gradcheck(lambda t: t[:, None, 1:].expand(2, 5, 2, 4), x)


@pytest.mark.parametrize(
    "key",
    [
        (slice(None), 1),
        (0,),
        (Ellipsis, slice(1, None, 2)),
        (np.array([0, 1, 1, 0]),),
        (slice(None), np.array([2, 0, 2])),
        (np.array([[True, False, True], [False, True, True]]),),
    ],
    ids=str,
)
def test_indexing(device, key, rng):
    x = t64(device, rng, 2, 3, 4)
    key = key if len(key) > 1 else key[0]
    np.testing.assert_array_equal(x[key].detach().cpu().numpy(), x.detach().cpu().numpy()[key])
    gradcheck(lambda t: t[key], x)


def test_indexing_with_a_tensor_accumulates_repeats(device):
    w = dk.tensor(np.ones((4, 2)), requires_grad=True, device=device)
    w[dk.tensor([1, 1, 3], device=device)].sum().backward()
    np.testing.assert_array_equal(w.grad.cpu().numpy()[:, 0], [0, 2, 0, 1])


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_stack(device, dim, rng):
    a, b = t64(device, rng, 2, 3), t64(device, rng, 2, 3)
    c = t64(device, rng, 2, 3)
    np.testing.assert_array_equal(
        dk.cat([a, b], dim).detach().cpu().numpy(),
        np.concatenate([a.detach().cpu().numpy(), b.detach().cpu().numpy()], dim),
    )
    np.testing.assert_array_equal(
        dk.stack([a, b, c], dim).detach().cpu().numpy(), np.stack([t.detach().cpu().numpy() for t in (a, b, c)], dim)
    )
    gradcheck(lambda x, y: dk.cat([x, y * 2], dim), a, b)
    gradcheck(lambda x, y, z: dk.stack([x, y, z], dim), a, b, c)


def test_where(device, rng):
    a, b = t64(device, rng, 3, 4), t64(device, rng, 4)
    cond = rng.random((3, 4)) > 0.5
    cond_on_device = dk.tensor(cond, device=device)
    np.testing.assert_array_equal(
        dk.where(cond_on_device, a, b).detach().cpu().numpy(),
        np.where(cond, a.detach().cpu().numpy(), b.detach().cpu().numpy()),
    )
    gradcheck(lambda x, y: dk.where(cond_on_device, x, y), a, b)


def test_a_graph_used_twice_accumulates(device, rng):
    x = t64(device, rng, 3)
    y = x * 2
    (y * y + y).sum().backward()  # y read three times
    np.testing.assert_allclose(x.grad.cpu().numpy(), 8 * x.detach().cpu().numpy() + 2, rtol=1e-12)
    (x * 3).sum().backward()  # a second backward adds to .grad
    np.testing.assert_allclose(x.grad.cpu().numpy(), 8 * x.detach().cpu().numpy() + 5, rtol=1e-12)


def test_a_node_read_by_consumers_at_different_depths_gets_every_contribution(device):
    a = dk.ones(3, requires_grad=True, device=device)
    b = a * 2
    c = b * 3
    dk.stack([b, c]).sum().backward()  # b is read by Stack and by c's Mul
    np.testing.assert_array_equal(a.grad.cpu().numpy(), [8, 8, 8])
    x = dk.tensor(np.array([1.5]), requires_grad=True, device=device)
    gradcheck(lambda t: dk.cat([t, t * t, (t * t).exp() * t]), x)


def test_grad_is_not_an_alias_of_another_grad(device, rng):
    a, b = t64(device, rng, 3), t64(device, rng, 3)
    (a + b).sum().backward()  # Add returns the same gradient array to both
    a.grad._array += 1
    np.testing.assert_array_equal(b.grad.cpu().numpy(), np.ones(3))


def test_no_grad_records_nothing(rng):
    x = t64("cpu", rng, 3)
    with dk.no_grad():
        y = x * 2 + 1
        assert not dk.is_grad_enabled()
        with dk.enable_grad():
            z = x * 2
    assert dk.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None and z.requires_grad

    @dk.no_grad()
    def f(t):
        return t * t

    assert not f(x).requires_grad


@pytest.mark.parametrize("mode", ["no_grad", "enable_grad"])
def test_decorated_recursion_restores_each_level(mode, rng):
    """A decorated function that calls itself (one decorator object, entered once per level) leaves
    the caller's grad mode as it found it, and every level runs in the decorator's mode."""
    decorator, inside = (dk.no_grad(), False) if mode == "no_grad" else (dk.enable_grad(), True)
    seen = []

    @decorator
    def walk(depth):
        seen.append(dk.is_grad_enabled())
        if depth:
            walk(depth - 1)
        seen.append(dk.is_grad_enabled())

    for outer in (True, False):
        with dk.set_grad_enabled(outer):
            walk(3)
            assert dk.is_grad_enabled() is outer
        assert seen == [inside] * 8
        seen.clear()
    assert dk.is_grad_enabled()


def test_grad_modes_as_functions_bare_decorators_and_on_generators(rng):
    """As PyTorch's: set_grad_enabled(False) called alone turns recording off; no_grad,
    enable_grad and inference_mode decorate without parentheses too; a decorated generator runs its
    body in the mode, step by step, the caller's mode back in between."""
    x = t64("cpu", rng, 3)
    dk.set_grad_enabled(False)
    try:
        assert not dk.is_grad_enabled() and not (x * 2).requires_grad
    finally:
        dk.set_grad_enabled(True)
    assert dk.is_grad_enabled() and (x * 2).requires_grad

    @dk.set_grad_enabled(False)  # a decorator: the call's own switch is taken back
    def off(t):
        return t * 2

    assert dk.is_grad_enabled() and not off(x).requires_grad
    for bare, records in ((dk.no_grad, False), (dk.inference_mode, False)):

        @bare
        def f(t):
            return t * 2

        assert f(x).requires_grad is records and dk.is_grad_enabled()
    with dk.no_grad():

        @dk.enable_grad
        def g(t):
            return t * 2

        assert g(x).requires_grad and not dk.is_grad_enabled()

    @dk.no_grad()
    def steps(t):
        for _ in range(2):
            received = yield (t * 2).requires_grad, dk.is_grad_enabled()
            assert received == "go"
        return "done"

    walk = steps(x)
    assert next(walk) == (False, False) and dk.is_grad_enabled()  # between steps: the caller's mode
    assert walk.send("go") == (False, False) and dk.is_grad_enabled()
    with pytest.raises(StopIteration) as stop:
        walk.send("go")
    assert stop.value.value == "done"
    assert list(dk.set_grad_enabled(False)(lambda: (yield dk.is_grad_enabled()))()) == [False]


def test_retain_grad_follows_an_in_place_change(rng):
    """retain_grad() then an in-place op: .grad is the gradient of the tensor's new value (PyTorch's),
    not of the value it held when retain_grad was called."""
    x = dk.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = x * 2
    y.retain_grad()
    y.mul_(3)
    assert y.retains_grad
    y.sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [1, 1, 1])
    np.testing.assert_array_equal(x.grad.numpy(), [6, 6, 6])


def test_autograd_grad_runs_only_the_part_of_the_graph_it_needs(rng):
    """grad(z, [h]) for an intermediate h runs the nodes between z and h only, as PyTorch's: the part
    before h is neither run (its hooks are not called) nor freed, so a later backward through it works
    and sees in-place changes only where it reads them."""
    x = t64("cpu", rng, 3)
    called = []
    x.register_hook(lambda g: called.append("x"))
    h = x.exp()
    h.register_hook(lambda g: called.append("h"))
    w = dk.tensor(np.arange(3.0), requires_grad=True)
    w.register_hook(lambda g: called.append("w"))
    z = (h * h * w).sum()
    (gh,) = dk.autograd.grad(z, [h])
    np.testing.assert_allclose(gh.numpy(), 2 * np.exp(x.detach().numpy()) * np.arange(3.0))
    assert called == ["h"]  # neither x's (before h) nor w's (not asked)
    h.sum().backward()  # the part before h was not freed
    np.testing.assert_allclose(x.grad.numpy(), np.exp(x.detach().numpy()))
    with raises_naming(RuntimeError, "second time"):  # the part between z and h was
        dk.autograd.grad(z, [h])


def test_function_and_hook_results_are_checked():
    """A Function's backward returning a gradient past its inputs, and a hook changing a gradient's
    dtype, are errors (PyTorch's); trailing Nones past the inputs are fine."""

    class Twice(dk.autograd.Function):
        extra = None

        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2, Twice.extra

    x = dk.tensor([1.0, 2.0], requires_grad=True)
    Twice.apply(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2, 2])
    Twice.extra = np.ones(2)
    with raises_naming(RuntimeError, "incorrect number of gradients", "expected 1, got 2"):
        Twice.apply(x).sum().backward()
    y = x * 2
    y.register_hook(lambda g: g.double())
    with raises_naming(RuntimeError, "changed the type", "float32", "float64"):
        y.sum().backward()


def test_one_context_object_entered_twice(rng):
    block = dk.no_grad()
    with block:
        with block:
            assert not dk.is_grad_enabled()
        assert not dk.is_grad_enabled()
        with dk.enable_grad():
            assert dk.is_grad_enabled()
    assert dk.is_grad_enabled()
    x = t64("cpu", rng, 3)

    @dk.no_grad()
    def double(t):
        return t * 2

    assert double.__name__ == "double" and not double(x).requires_grad and (x * 2).requires_grad


def test_detach_and_leaf_semantics(rng):
    x = t64("cpu", rng, 3)
    y = x * 2
    assert x.is_leaf and not y.is_leaf and y.grad_fn is not None
    d = y.detach()
    assert d.is_leaf and not d.requires_grad and np.shares_memory(d.numpy(), y.detach().numpy())
    with pytest.raises(RuntimeError, match="detach"):
        x.numpy()
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad = False


def test_detach_in_place_refuses_views_as_torch_does(rng):
    x = t64("cpu", rng, 3, 4)
    views = {
        "index of a leaf": lambda: x[0:2],
        "index outside the graph": lambda: x.detach()[1],
        "reshape": lambda: x.reshape(12),
        "index of a result": lambda: (x * 2)[:, 1],
        "transpose outside the graph": lambda: x.detach().t(),
    }
    for name, make in views.items():
        view = make()
        before = (view.requires_grad, view.grad_fn)
        with raises_naming(RuntimeError, "detach_", "view", "detach()"):
            view.detach_()
        assert (view.requires_grad, view.grad_fn) == before, name  # left as it was
    y = x * 2
    assert y.detach_() is y and not y.requires_grad and y.grad_fn is None
    d = x.detach()
    assert d.detach_() is d
    # zero_grad(set_to_none=False) zeroes a gradient that is a view in place, as torch.optim does
    p, flat = dk.zeros(3, requires_grad=True), dk.ones(6)
    p.grad = flat[0:3]
    dk.optim.SGD([p], lr=0.1).zero_grad(set_to_none=False)
    assert flat.tolist() == [0, 0, 0, 1, 1, 1]


def test_backward_twice_needs_retain_graph(rng):
    x = t64("cpu", rng, 3)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * x.detach().numpy(), rtol=1e-12)
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_a_graph_that_saved_nothing_runs_backward_again():
    """As in PyTorch: a second backward through nodes that kept no values (additions, sums) adds to
    .grad again; a node that kept values still needs retain_graph."""
    x = dk.tensor([1.0, 2.0], requires_grad=True)
    y = (x + 1).sum()
    y.backward()
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2, 2])
    z = (x * x).sum()
    z.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        z.backward()


def test_autograd_backward_takes_torchs_arguments(rng):
    """deepkern.autograd.backward(tensors, grad_tensors, retain_graph) as torch.autograd.backward: one
    tensor or several in one pass (a shared part of the graph is walked once), gradients as a list."""
    x = t64("cpu", rng, 3)
    shared = x * x
    l1, l2 = (shared * 2).sum(), (shared * 3).sum()
    dk.autograd.backward([l1, l2])
    np.testing.assert_allclose(x.grad.numpy(), 10 * x.detach().numpy(), rtol=1e-12)
    x.grad = None
    y = x * 2
    dk.autograd.backward([y], [dk.tensor([1.0, 2.0, 3.0], dtype=dk.float64)])
    np.testing.assert_array_equal(x.grad.numpy(), [2, 4, 6])
    dk.autograd.backward((x * 1).sum())
    np.testing.assert_array_equal(x.grad.numpy(), [3, 5, 7])
    with raises_naming(ValueError, "grad_tensors has 1 entries for 2 tensors"):
        dk.autograd.backward([(x * 1).sum(), (x * 2).sum()], [None])
    with raises_naming(RuntimeError, "element 0 of tensors does not require grad"):
        dk.autograd.backward(dk.tensor([1.0]))


def test_integer_and_bool_results_are_not_differentiable(rng):
    """As in PyTorch, a cast to an integer or bool dtype (and any integer result) leaves the graph:
    it does not require grad, and nothing flows back through it."""
    x = dk.tensor([0.0, 2.0, -3.0], requires_grad=True)
    for cast in (lambda t: t.long(), lambda t: t.int(), lambda t: t.bool(), lambda t: t.to(dk.int64), lambda t: t > 0):
        assert not cast(x).requires_grad
    (x * x.bool()).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 1, 1])
    with pytest.raises(RuntimeError, match="does not require grad"):
        x.long().float().sum().backward()


@pytest.mark.parametrize("dtype", [np.float32, "bfloat16"])
def test_gradients_reach_each_input_in_its_dtype(dtype):
    """Backward functions that compute in a wider dtype (a max shared among ties, maximum, an infinity
    norm, a join with a float64 tensor) hand every input its gradient in that input's own dtype, so a
    float32 or bfloat16 model's backward and its optimizer step run, and accumulated .grad keeps its dtype."""
    dtype = dk.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    rng = np.random.default_rng(0)
    layer = dk.nn.Linear(4, 3).to(dtype)
    x = dk.tensor(rng.standard_normal((2, 4)).astype(dtype))
    other = dk.tensor(rng.standard_normal((2, 3)))  # float64
    losses = [
        lambda y: y.max(),
        lambda y: y.min(),
        lambda y: y.norm(p=float("inf")),
        lambda y: dk.maximum(y, dk.zeros_like(y)).sum(),
        lambda y: dk.cat([y, other], 0).sum(),
        lambda y: dk.stack([y, other]).sum(),
    ]
    for loss in losses:
        layer.zero_grad()
        loss(layer(x)).backward()
        loss(layer(x)).backward()  # accumulated
        assert layer.weight.grad.dtype == dtype and layer.bias.grad.dtype == dtype
        dk.optim.SGD(layer.parameters(), lr=0.1).step()


def test_the_exponents_gradient_at_zero_and_negative_bases_is_pytorchs():
    """d(x ** y)/dy = x ** y log(x), as PyTorch computes it: NaN for a negative base, 0 where x == 0 <= y,
    -inf for x == 0 > y; the base's gradient is untouched by it."""
    x = dk.tensor([-1.0, 0.0, 0.0, 0.0, 2.0], dtype=dk.float64, requires_grad=True)
    y = dk.tensor([2.0, 0.0, 3.0, -1.0, 3.0], dtype=dk.float64, requires_grad=True)
    (x**y).sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [np.nan, 0, 0, -np.inf, 8 * np.log(2.0)])
    np.testing.assert_array_equal(x.grad.numpy(), [-2, 0, 0, -np.inf, 12])


def test_joins_promote_as_pytorch():
    """cat and stack of an integer tensor with a float32 one give float32 (NumPy would give float64)."""
    i, f = dk.tensor([1, 2]), dk.tensor([0.5, 1.5])
    for join in (dk.cat, dk.stack):
        assert join([i, f]).dtype == np.float32 and join([f, i.int()]).dtype == np.float32
        assert join([i, i.int()]).dtype == np.int64
        assert join([f, f.double()]).dtype == np.float64


def test_data_of_a_tensor_that_requires_grad_stays_floating():
    w = dk.tensor([1.5, 2.5], requires_grad=True)
    with raises_naming(TypeError, "data", "int64"):
        w.data = dk.tensor([1, 2])
    w.data = dk.tensor([3.0, 4.0, 5.0])  # another shape, as PyTorch allows
    assert w.tolist() == [3.0, 4.0, 5.0] and w.requires_grad


def test_misuse_pytorch_refuses_is_refused(rng):
    x = dk.tensor(np.zeros((4, 3), np.float32), requires_grad=True)
    with raises_naming(RuntimeError, "assigned grad", "int64", "float32"):
        x.grad = dk.tensor(np.zeros((4, 3), np.int64))
    with raises_naming(RuntimeError, "t()", r"\(2, 3, 4\)"):
        dk.zeros(2, 3, 4).t()
    assert dk.zeros(3).t().shape == (3,) and dk.zeros(2, 3).t().shape == (3, 2)
    transposed = dk.tensor(np.arange(12.0).reshape(3, 4)).t()
    with raises_naming(RuntimeError, "view", r"\(12,\)", "reshape"):
        transposed.view(12)
    assert transposed.reshape(12).shape == (12,)
    split = transposed.view(2, 2, 3)  # splits a dimension: a view even of a transposed tensor
    np.testing.assert_array_equal(split.numpy(), np.arange(12.0).reshape(3, 4).T.reshape(2, 2, 3))
    with raises_naming(TypeError, "where", "bool", "int64"):
        dk.where(dk.tensor([1, 0]), dk.ones(2), dk.zeros(2))


def test_backward_needs_a_gradient_for_non_scalars(rng):
    x = t64("cpu", rng, 3)
    y = x * 2
    with raises_naming(RuntimeError, "one-element", r"\(3,\)"):
        y.backward()
    with raises_naming(ValueError, r"\(2,\)", r"\(3,\)"):
        y.backward(np.ones(2))
    y.backward(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(x.grad.numpy(), [2, 4, 6])
    with pytest.raises(RuntimeError, match="does not require grad"):
        dk.tensor([1.0]).backward()


def test_deep_chain_does_not_recurse(rng):
    x = t64("cpu", rng, 2)
    y = x
    for _ in range(5000):
        y = y * 1.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(2))


def test_creation_dtypes_and_copies():
    assert dk.tensor([1.0, 2.0]).dtype == np.float32
    assert dk.tensor([1, 2]).dtype == np.int64
    assert dk.tensor(np.zeros(2)).dtype == np.float64
    arr = np.zeros(3, np.float32)
    assert not np.shares_memory(dk.tensor(arr).numpy(), arr)
    assert np.shares_memory(dk.from_numpy(arr).numpy(), arr)
    assert dk.zeros(2, 3).shape == (2, 3) and dk.ones((4,)).dtype == np.float32
    assert dk.arange(5).dtype == np.int64 and dk.full((2,), 7.0).numpy().tolist() == [7, 7]
    with pytest.raises(RuntimeError, match="floating-point"):
        dk.tensor([1, 2], requires_grad=True)


def test_manual_seed_repeats_random_tensors():
    dk.manual_seed(3)
    a = dk.randn(4, 5)
    dk.manual_seed(3)
    np.testing.assert_array_equal(a.numpy(), dk.randn(4, 5).numpy())
    assert dk.rand(100).numpy().min() >= 0


def test_device_and_to():
    x = dk.tensor([1.0, 2.0])
    assert x.device == "cpu" and str(x.device) == "cpu" and x.to("cpu") is x
    assert x.to(dk.float64).dtype == np.float64 and x.double().float().dtype == np.float32
    if dk.cuda.is_available():
        assert x.to("cuda").device == "cuda:0" and x.to("cuda").cpu().numpy().tolist() == [1.0, 2.0]
    else:  # no GPU: an error that says why
        with raises_naming(RuntimeError, "cuda", re.escape(dk.cuda.unavailable_reason()[:20])):
            x.to("cuda")
    with raises_naming(ValueError, "tpu"):
        dk.device("tpu")


def test_to_dtype_is_differentiable(rng):
    x = t64("cpu", rng, 3)
    (x.float() * 2).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.numpy(), [2, 2, 2])


def test_dlpack_round_trip():
    x = dk.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    y = dk.from_dlpack(x)
    assert np.shares_memory(x.numpy(), y.numpy())
    z = np.from_dlpack(x)
    np.testing.assert_array_equal(z, x.numpy())


def test_bad_reshape_and_join_name_the_shapes(rng):
    x = t64("cpu", rng, 2, 3)
    with raises_naming(ValueError, r"\(2, 3\)", r"\(4, -1\)|\(4,"):
        x.reshape(4, -1)
    with raises_naming(ValueError, r"\(2, 3\)", r"\(2, 4\)"):
        dk.cat([x, t64("cpu", rng, 2, 4)], 0)
    with raises_naming(ValueError, "permutation"):
        x.permute(0, 0)


def test_item_repr_and_comparisons(rng):
    x = dk.tensor([1.0, 5.0, 3.0])
    assert (x > 2).numpy().tolist() == [False, True, True]
    assert x.sum().item() == 9.0 and float(x.max()) == 5.0
    assert "requires_grad=True" in repr(dk.tensor([1.0], requires_grad=True))
    assert "grad_fn" in repr(dk.tensor([1.0], requires_grad=True) * 2)
    with raises_naming(ValueError, r"\(3,\)"):
        x.item()


def test_division_log_and_sqrt_at_the_edges_give_inf_and_nan_without_warnings():
    """x / 0, log(0), log(-1), sqrt(-1) and 0 ** -1 give PyTorch's inf/NaN, forward and backward,
    and NumPy's floating-point warnings stay quiet (PyTorch prints none)."""
    import warnings

    x = dk.tensor([0.0, -1.0, 2.0], dtype=dk.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outs = [x.log(), x.sqrt(), dk.tensor(1.0) / x, x**-1.0]
        sum(o.sum() for o in outs).backward()
    np.testing.assert_array_equal(outs[0].detach().numpy(), [-np.inf, np.nan, np.log(2.0)])
    np.testing.assert_array_equal(outs[1].detach().numpy()[[0, 2]], [0.0, np.sqrt(2.0)])
    assert np.isnan(outs[1].detach().numpy()[1])
    np.testing.assert_array_equal(outs[2].detach().numpy(), [np.inf, -1.0, 0.5])
    np.testing.assert_array_equal(outs[3].detach().numpy(), [np.inf, -1.0, 0.5])
    assert np.isnan(x.grad.numpy()[:2]).any() and np.isfinite(x.grad.numpy()[2])


# -- PyTorch's autograd debugging tools ---------------------------------------------------------------


class _WrongSquare(dk.Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * a

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * a  # should be 2 a


def test_gradcheck_accepts_right_gradients_and_names_a_wrong_one(rng):
    from deepkern import autograd

    x = dk.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    w = dk.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    assert autograd.gradcheck(lambda a, b: (a @ b).tanh(), (x, w))
    assert autograd.gradcheck(lambda a: (a.exp(), a.sum()), x)
    with raises_naming(autograd.GradcheckError, "Jacobian mismatch", "output 0", "input 0"):
        autograd.gradcheck(_WrongSquare.apply, (x,))
    assert autograd.gradcheck(_WrongSquare.apply, (x,), raise_exception=False) is False
    np.testing.assert_array_equal(x.grad is None, True)  # gradcheck leaves .grad alone
    with pytest.warns(UserWarning, match="float64"):
        autograd.gradcheck(lambda a: a * 2, dk.tensor([1.0, 2.0], requires_grad=True), eps=1e-2, atol=1e-2)


def test_variable_is_a_detached_leaf_sharing_memory_as_in_torch():
    from deepkern.autograd import Variable

    a = dk.ones(2)
    v = Variable(a, requires_grad=True)
    assert v is not a and v.requires_grad and v.is_leaf and not a.requires_grad
    v.detach()[0] = 5.0
    assert a.tolist() == [5.0, 1.0]
    b = dk.ones(2, requires_grad=True) * 2
    assert Variable(b).grad_fn is None and not Variable(b).requires_grad
    assert Variable([1.0, 2.0], requires_grad=True).requires_grad


def test_detect_anomaly_names_the_function_that_returned_nan():
    from deepkern import autograd

    x = dk.tensor([0.0], requires_grad=True)
    (x.sqrt() * 0).sum().backward()  # off: NaN gradients pass silently, as in PyTorch
    assert np.isnan(x.grad.item())
    x.grad = None
    with autograd.detect_anomaly():
        assert autograd.is_anomaly_enabled()
        with raises_naming(RuntimeError, "Function 'SqrtBackward' returned nan values in its 0th output"):
            (x.sqrt() * 0).sum().backward()
    assert not autograd.is_anomaly_enabled()
    autograd.set_detect_anomaly(True)
    try:
        with pytest.raises(RuntimeError, match="nan values"):
            (x.sqrt() * 0).sum().backward()
    finally:
        autograd.set_detect_anomaly(False)
    with autograd.set_detect_anomaly(True, check_nan=False):
        (x.sqrt() * 0).sum().backward()

    @autograd.detect_anomaly()
    def step():
        (x.sqrt() * 0).sum().backward()

    with pytest.raises(RuntimeError, match="SqrtBackward"):
        step()
