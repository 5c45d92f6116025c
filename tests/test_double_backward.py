"""create_graph=True: gradients that are themselves differentiable (gradient penalties, Hessian-vector
products). Each differentiable backward is checked by finite differences of the first-order gradient
it returns (which the rest of the suite checks), a quadratic form against its exact Hessian, the
errors for what is not differentiable, and, where PyTorch is installed, a WGAN-GP step against
PyTorch's."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern.nn import functional as F

from checks import create_graph_gradients, gradcheck


def _t(rng, *shape, positive=False):
    a = rng.standard_normal(shape)
    return dk.tensor(np.abs(a) + 0.5 if positive else a, requires_grad=True)


# name -> (function of the tensors, their shapes, whether they must be positive)
CASES = {
    "add/sub broadcast": (lambda a, b: (a + b) * (a - b) * a, [(3, 4), (4,)], False),
    "mul/div broadcast": (lambda a, b: a * b / (b * b + 1) + a / b, [(3, 1), (1, 4)], True),
    "pow": (lambda a: a**3 + a**0.5 + a**-2 + a**0, [(5,)], True),
    "exp/log/sqrt": (lambda a: a.exp() * a.log() + (a * a).sqrt() * a, [(2, 3)], True),
    "tanh/sigmoid": (lambda a, b: (a * b).tanh() * (a - b).sigmoid(), [(3, 4), (3, 4)], False),
    "relu/leaky_relu": (lambda a, b: F.relu(a * b) * a + F.leaky_relu(a * b, 0.3) * b, [(4, 5), (4, 5)], False),
    "sum/mean": (lambda a: a.sum(1, keepdim=True) * a.mean(0) * a + a.mean() * a.sum(), [(3, 4)], False),
    "reshape/permute/expand": (
        lambda a: a.reshape(2, 6).permute(1, 0).reshape(3, 4) * a.sum(0, keepdim=True).expand(3, 4) * a,
        [(3, 4)],
        False,
    ),
    "matmul": (lambda a, b, v: (a @ b).tanh() @ v * (b @ v).sum(), [(3, 4), (4, 5), (5,)], False),
    "batched matmul": (lambda a, b: (a @ b) * (a @ b), [(2, 3, 4), (4, 2)], False),
    "linear": (
        lambda x, w, b: F.linear(x, w, b).tanh() * F.linear(x, w, None, relu=True),
        [(2, 3, 4), (5, 4), (5,)],
        False,
    ),
    "norm": (lambda a: a.norm(2, dim=1) * a.norm(1, dim=0, keepdim=True).sum() + a.norm(), [(3, 4)], False),
    "where": (lambda a, b: dk.where(a > 0, a * b, b * b), [(3, 4), (3, 4)], False),
    "indexing": (lambda a: a[1:, ::2] * a[[0, 0], 1:3] + a[..., None][0, 1], [(3, 4)], False),
    "cat/stack": (
        lambda a, b: dk.cat([a * b, b], 1) * dk.stack([a, a * a], 1).sum(1, keepdim=False).repeat(1, 2),
        [(2, 3), (2, 3)],
        False,
    ),
    "softmax/log_softmax": (lambda a: F.softmax(a, 1) * F.log_softmax(a * a, 0), [(3, 4)], False),
    "silu/elu": (lambda a: F.silu(a) * F.elu(a, 0.7) * a, [(3, 4)], False),
    "gelu": (lambda a: F.gelu(a) * F.gelu(a * a, approximate="tanh") * a, [(3, 4)], False),
    "dropout": (lambda a: (dk.manual_seed(7), F.dropout(a * a, 0.4))[1] * a, [(4, 5)], False),
    "pooling": (
        lambda x: (
            F.max_pool2d(x * x, 2, 1, ceil_mode=True)
            * F.avg_pool2d(x, 2, 1, padding=1, count_include_pad=False)[..., 1:-1, 1:-1]
        ),
        [(2, 2, 5, 4)],
        False,
    ),
    "var/std": (lambda a: a.var(1) * a.std(0, keepdim=True).sum() + a.var(correction=0), [(3, 4)], False),
    "layer_norm": (lambda x, w, b: F.layer_norm(x * x, (3, 4), w, b) * x, [(2, 3, 4), (3, 4), (3, 4)], False),
    "group_norm": (lambda x, w, b: F.group_norm(x.tanh(), 2, w, b) * x, [(2, 4, 3), (4,), (4,)], False),
    "batch_norm training": (
        lambda x, w, b: F.batch_norm(x * x, None, None, w, b, training=True) * x,
        [(3, 2, 2, 3), (2,), (2,)],
        False,
    ),
    "batch_norm eval": (
        lambda x, w, b: (
            F.batch_norm(x * x, dk.tensor(np.array([0.3, -0.2])), dk.tensor(np.array([1.5, 0.7])), w, b) * x
        ),
        [(3, 2, 4), (2,), (2,)],
        False,
    ),
    "logsumexp": (lambda a: a.logsumexp(1) * a.sum(1) + a.logsumexp((0, 1), keepdim=True), [(3, 4)], False),
    "cross_entropy": (
        lambda a: (
            F.cross_entropy(a * a, dk.tensor([1, 0, 3]), label_smoothing=0.2) * a
            + F.cross_entropy(a, dk.tensor([2, -100, 1]), dk.tensor(np.array([0.5, 2.0, 1.0, 1.5])), reduction="none")[
                :, None
            ]
        ),
        [(3, 4)],
        False,
    ),
    "cross_entropy 2-d": (
        lambda a: F.cross_entropy(a.tanh(), dk.tensor([[1, 0], [2, 2]]), reduction="sum") * a,
        [(2, 3, 2)],
        False,
    ),
    "adaptive_avg_pool2d": (
        lambda x: F.adaptive_avg_pool2d(x * x, (2, 3)).sum((2, 3), keepdim=True) * x,
        [(2, 2, 5, 4)],
        False,
    ),
    "conv2d": (
        lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1).tanh() * F.conv2d(x, w, None, stride=2, padding=1),
        [(2, 3, 5, 6), (4, 3, 3, 2), (4,)],
        False,
    ),
    "conv_transpose2d": (
        lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1, groups=2).tanh() ** 2,
        [(2, 4, 3, 2), (4, 2, 3, 2), (4,)],
        False,
    ),
    "conv_transpose2d dilated": (
        lambda x, w: F.conv_transpose2d(x, w, None, dilation=2, padding=1, output_padding=1) * 2,
        [(3, 2, 3), (3, 2, 2, 2)],
        False,
    ),
    "sin/cos/tan": (lambda a: a.sin() * a.cos() + (a * 0.3).tan() * a, [(3, 4)], False),
    "inverse trigonometric": (
        lambda a: (a * 0.2).asin() * (a * 0.3).acos() + a.atan() * a + (a * 0.2).atanh() * a,
        [(3, 4)],
        False,
    ),
    "hyperbolic": (
        lambda a: (a * 0.5).sinh() * (a * 0.4).cosh() + a.asinh() * a + (a * a + 1.5).acosh(),
        [(3, 4)],
        False,
    ),
    "log1p/expm1/log2/log10/exp2": (
        lambda a: a.log1p() * a.expm1() + a.log2() * a.log10() + (a * 0.5).exp2() * a,
        [(3, 4)],
        True,
    ),
    "erf/erfc": (lambda a: a.erf() * a.erfc() * a, [(3, 4)], False),
    "abs/clamp": (
        lambda a, lo, hi: a.abs() * a + a.clamp(-0.5, 0.7) * a + a.clamp(min=lo, max=hi) * a * a,
        [(3, 4), (3, 4), (4,)],
        False,
    ),
    "amax/amin/max": (
        lambda a: a.amax(1, keepdim=True) * a + a.amin(0) * a + a.max(0)[0] * a.sum(0) + a.max() * a * a,
        [(3, 4)],
        False,
    ),
    "maximum/minimum": (lambda a, b: dk.maximum(a, b) * a + dk.minimum(a, b * b) * b, [(3, 4), (4,)], False),
    "cumsum": (lambda a: a.cumsum(1) * a + (a * a).cumsum(0), [(3, 4)], False),
    "softplus/hardtanh": (
        lambda a: F.softplus(a, beta=2.0) * a + F.hardtanh(a * 2) * a * a + F.softplus(a * 30, threshold=5.0) * a,
        [(3, 4)],
        False,
    ),
    "difference losses": (
        lambda a, b: (
            F.mse_loss(a * a, b) * a
            + F.l1_loss(a, b, reduction="none") * a
            + F.smooth_l1_loss(a, b * b, beta=0.5, reduction="sum") * a
            + F.huber_loss(a * b, b, delta=0.7) * a
        ),
        [(3, 4), (3, 4)],
        False,
    ),
    "clone/flip": (lambda a: a.flip(1) * a.clone() * a, [(3, 4)], False),
    "conv2d groups same": (
        lambda x, w: F.conv2d(x, w, None, padding="same", groups=2, dilation=(2, 1)) ** 2,
        [(1, 4, 5, 5), (2, 2, 2, 3)],
        False,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_with_create_graph_are_differentiable(name):
    """For y = f(inputs): g = d sum(r * y) / d inputs (create_graph=True) is a function of the inputs;
    its own gradient (through the recorded graph) matches its finite differences."""
    f, shapes, positive = CASES[name]
    rng = np.random.default_rng(len(name))
    inputs = [_t(rng, *shape, positive=positive) for shape in shapes]
    weight = dk.tensor(rng.standard_normal(f(*inputs).shape))

    gradcheck(create_graph_gradients(lambda *tensors: (f(*tensors) * weight).sum()), *inputs, tol=1e-5)


def test_a_hessian_vector_product_is_exact_for_a_quadratic_form():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 5))
    v = rng.standard_normal(5)
    x = dk.tensor(rng.standard_normal(5), requires_grad=True)
    matrix = dk.tensor(a)
    (g,) = dk.autograd.grad(x @ (matrix @ x), x, create_graph=True)
    np.testing.assert_allclose(g.detach().numpy(), (a + a.T) @ x.detach().numpy(), rtol=1e-12)
    (hv,) = dk.autograd.grad(g @ dk.tensor(v), x)
    np.testing.assert_allclose(hv.numpy(), (a + a.T) @ v, rtol=1e-12)


def test_backward_with_create_graph_leaves_differentiable_grads():
    rng = np.random.default_rng(2)
    x = dk.tensor(rng.standard_normal(4), requires_grad=True)
    (x**3).sum().backward(create_graph=True)
    assert x.grad.requires_grad  # 3 x^2, with its graph
    np.testing.assert_allclose(x.grad.detach().numpy(), 3 * x.detach().numpy() ** 2, rtol=1e-14)
    first = x.grad
    x.grad = None
    first.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * x.detach().numpy(), rtol=1e-14)


def test_what_is_not_differentiable_twice_says_so():
    x = dk.tensor(np.ones((1, 1, 4, 4)), requires_grad=True)
    target = dk.tensor([2])
    with pytest.raises(NotImplementedError, match="the gradient of _MultiMargin is not differentiable"):
        # (PyTorch has no double backward through multi_margin_loss either)
        dk.autograd.grad(F.multi_margin_loss(x.reshape(1, 16), target), x, create_graph=True)
    first = dk.autograd.grad((x * x).sum(), x)[0]  # without create_graph: a plain array's tensor
    assert not first.requires_grad


def test_gradient_hooks_see_and_replace_the_create_graph_gradients():
    """register_hook on a non-leaf and on a leaf (seeing its gradient summed over its two uses, once per
    pass) and retain_grad, under create_graph=True: the hooks get the gradients as Tensors of the graph,
    their replacements are differentiated again, as PyTorch's."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x0, w0 = rng.standard_normal((3, 4)), rng.standard_normal(4)
    results = []
    for lib in (dk, torch):
        x, w = lib.tensor(x0, requires_grad=True), lib.tensor(w0, requires_grad=True)
        seen = []
        h = (x * w).tanh()
        h.register_hook(lambda g: g * g.sin() + 1)  # a graph function of the incoming gradient
        h.retain_grad()
        w.register_hook(lambda g, seen=seen: seen.append(g.requires_grad) or g * 2)
        y = (h * h).sum() + (w * w).sum()
        gx, gw = lib.autograd.grad(y, (x, w), create_graph=True)
        retained = h.grad  # retain_grad keeps the recorded gradient (PyTorch: in grad() too)
        assert retained.requires_grad
        penalty = (gx * gx).sum() + (gw * gw.cos()).sum()
        second = lib.autograd.grad(penalty, (x, w))
        assert seen == [True, False]  # the leaf's hook in both passes, with the first's graph Tensor
        results.append([t.detach().numpy() for t in (gx, gw, *second, retained)])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_a_wgan_gp_step_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    conv_w, conv_b = rng.standard_normal((4, 2, 3, 3)) * 0.3, rng.standard_normal(4) * 0.1
    lin_w, lin_b = rng.standard_normal((1, 4 * 3 * 3)) * 0.3, rng.standard_normal(1) * 0.1
    real, fake = rng.standard_normal((5, 2, 6, 6)), rng.standard_normal((5, 2, 6, 6))
    eps = rng.uniform(size=(5, 1, 1, 1))

    def step(lib, functional):
        params = [lib.tensor(a, requires_grad=True) for a in (conv_w, conv_b, lin_w, lin_b)]

        def critic(x):
            h = functional.leaky_relu(functional.conv2d(x, params[0], params[1], stride=2, padding=1), 0.2)
            return functional.linear(h.reshape(h.shape[0], -1), params[2], params[3])

        mixed = (lib.tensor(eps) * lib.tensor(real) + (1 - lib.tensor(eps)) * lib.tensor(fake)).requires_grad_(True)
        (g,) = lib.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
        penalty = ((g.reshape(5, -1).norm(2, dim=1) - 1) ** 2).mean()
        loss = critic(lib.tensor(fake)).mean() - critic(lib.tensor(real)).mean() + 10 * penalty
        loss.backward()
        return [loss.detach().numpy()] + [p.grad.numpy() for p in params]

    for ours, theirs in zip(step(dk, F), step(torch, torch.nn.functional)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_a_maml_meta_gradient_matches_pytorch():
    """A second-order MAML step (an inner SGD step taken with create_graph, the outer loss through the
    adapted weights) on conv, batch norm in training mode, relu, max pool and cross entropy."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    arrays = (
        rng.standard_normal((4, 2, 3, 3)) * 0.3,
        rng.standard_normal(4) * 0.1,
        rng.uniform(0.5, 1.5, 4),
        rng.standard_normal(4) * 0.1,
        rng.standard_normal((36, 3)) * 0.2,
    )
    support, query = rng.standard_normal((5, 2, 6, 6)), rng.standard_normal((5, 2, 6, 6))
    support_y, query_y = rng.integers(0, 3, 5), rng.integers(0, 3, 5)

    def meta_step(lib, functional):
        params = [lib.tensor(a, requires_grad=True) for a in arrays]

        def net(x, p):
            h = functional.conv2d(x, p[0], p[1], padding=1)
            h = functional.max_pool2d(
                functional.relu(functional.batch_norm(h, None, None, p[2], p[3], training=True)), 2
            )
            return h.reshape(h.shape[0], -1) @ p[4]

        inner = functional.cross_entropy(net(lib.tensor(support), params), lib.tensor(support_y), label_smoothing=0.1)
        grads = lib.autograd.grad(inner, params, create_graph=True)
        adapted = [p - 0.1 * g for p, g in zip(params, grads)]
        outer = functional.cross_entropy(net(lib.tensor(query), adapted), lib.tensor(query_y))
        outer.backward()
        return [outer.detach().numpy()] + [p.grad.numpy() for p in params]

    for ours, theirs in zip(meta_step(dk, F), meta_step(torch, torch.nn.functional)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(
    "f",
    [
        lambda lib, x: lib.relu(x),
        lambda lib, x: x.abs(),
        lambda lib, x: (F if lib is dk else lib.nn.functional).leaky_relu(x, 0.2),
        lambda lib, x: (F if lib is dk else lib.nn.functional).hardtanh(x * 2),
        lambda lib, x: x.clamp(-0.5, 0.5),
        lambda lib, x: x.amax(1, keepdim=True) + x,
        lambda lib, x: lib.maximum(x, x.mean(0, keepdim=True).detach()),
    ],
    ids=["relu", "abs", "leaky_relu", "hardtanh", "clamp", "amax", "maximum"],
)
def test_a_piecewise_linear_gradient_is_recorded_as_pytorch(f):
    """The gradient of a piecewise-linear function depends on its input only through the pieces. As in
    PyTorch, relu's, abs's, leaky_relu's and hardtanh's (whose backward reads the input) are recorded as
    functions of the input anyway, so differentiating them again gives zeros; clamp's, amax's and
    maximum's are constants."""
    torch = pytest.importorskip("torch")
    x0 = np.random.default_rng(4).standard_normal((3, 4))
    results = []
    for lib in (dk, torch):
        x = lib.tensor(x0, requires_grad=True)
        (g,) = lib.autograd.grad(f(lib, x).sum(), x, create_graph=True)
        second = lib.autograd.grad((g * g).sum() + (g * lib.tensor(x0)).sum(), x)[0] if g.requires_grad else None
        if second is not None:  # (PyTorch's zeros may be its lazy ZeroTensor, which wants force=True)
            second = second.numpy(force=True) if lib is torch else second.numpy()
        results.append((g.requires_grad, g.detach().numpy(), second))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    if results[1][0]:
        np.testing.assert_array_equal(results[0][2], results[1][2])


def test_grad_outputs_that_require_grad_stay_in_the_graph():
    """With create_graph=True the result depends on grad_outputs too (PyTorch's "double-backward trick":
    u^T J from the gradient of v^T J with respect to v): checked against J itself, computed in float64."""
    rng = np.random.default_rng(3)
    x0, v0, u0 = rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal(4)
    x, v = dk.tensor(x0, requires_grad=True), dk.tensor(v0, requires_grad=True)
    y = (x * x).sin() * x.sum()
    (vjp,) = dk.autograd.grad(y, x, v, create_graph=True)
    (jvp,) = dk.autograd.grad(vjp, v, dk.tensor(u0))
    jacobian = np.diag(2 * x0 * np.cos(x0 * x0)) * x0.sum() + np.sin(x0 * x0)[:, None]  # dy_i / dx_j
    np.testing.assert_allclose(vjp.detach().numpy(), v0 @ jacobian, rtol=1e-12)
    np.testing.assert_allclose(jvp.numpy(), jacobian @ u0, rtol=1e-12)
    v.grad = None
    y = (x * x).sin() * x.sum()
    y.backward(v, create_graph=True)
    (x.grad * dk.tensor(u0)).sum().backward()
    np.testing.assert_allclose(v.grad.numpy(), jacobian @ u0, rtol=1e-12)


def test_module_backward_hooks_run_in_a_create_graph_pass():
    """A module's full backward hook and backward pre-hook under create_graph=True see the gradients as
    Tensors of the graph and their replacements are differentiated again, as PyTorch's."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x0, w0, b0 = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    results = []
    for lib in (dk, torch):
        linear = lib.nn.Linear(4, 5).double()
        with lib.no_grad():
            linear.weight.copy_(lib.tensor(w0))
            linear.bias.copy_(lib.tensor(b0))
        seen = []
        linear.register_full_backward_pre_hook(lambda module, grad_output: (grad_output[0].sin(),))
        linear.register_full_backward_hook(
            lambda module, grad_input, grad_output, seen=seen: (
                seen.append((grad_input[0].requires_grad, grad_output[0].requires_grad)),
                (grad_input[0] * 2,),
            )[1]
        )
        x = lib.tensor(x0, requires_grad=True)
        y = linear(x.tanh()).tanh()
        (g,) = lib.autograd.grad((y * y).sum(), x, create_graph=True)
        second = lib.autograd.grad((g * g).sum(), [x, linear.weight])
        assert seen == [(True, True), (False, False)]
        results.append([t.detach().numpy() for t in (g, *second)])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)
