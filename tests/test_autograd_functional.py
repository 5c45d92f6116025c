"""deepkern.autograd_functional (torch.autograd.functional) against torch: vjp, jvp, jacobian (reverse and
forward mode, create_graph, strict, vectorize), hessian, vhp and hvp on functions of one and several
tensors with one and several outputs (tanh, exp, matmul, sum, pow, softmax, conv2d), gradients through
create_graph=True results, the strict-mode and argument errors, and the Jacobian and Hessian against
central differences."""

from __future__ import annotations

import re

import deepkern as dk
import deepkern.nn.functional as dF
import numpy as np
import pytest
from deepkern import autograd_functional as AF

RTOL = 1e-12


def fn_tanh_exp(lib, F):
    return lambda x: (x.tanh() * x.exp()).sum()


def fn_matmul_pow(lib, F):
    return lambda x, w: (x @ w) ** 3


def fn_softmax_pair(lib, F):
    return lambda x, w: ((x @ w).softmax(-1), (w * w).sum(0))


def fn_conv(lib, F):
    return lambda image, kernel: F.conv2d(image, kernel, padding=1).tanh()


def fn_scalar_two_inputs(lib, F):
    return lambda x, w: ((x.tanh() @ w).exp() * 0.5).sum() + (w**3).sum()


def fn_conv_scalar(lib, F):
    return lambda image, kernel: (F.conv2d(image, kernel).tanh() ** 2).sum()


# name: (function maker, input shapes); the makers get the library (deepkern or torch) and its functional module
FUNCTIONS = {
    "tanh_exp": (fn_tanh_exp, [(2, 3)]),
    "matmul_pow": (fn_matmul_pow, [(2, 3), (3, 4)]),
    "softmax_pair": (fn_softmax_pair, [(2, 3), (3, 3)]),
    "conv2d": (fn_conv, [(1, 2, 4, 3), (2, 2, 3, 3)]),
}
SCALAR_FUNCTIONS = {
    "tanh_exp": (fn_tanh_exp, [(2, 3)]),
    "two_inputs": (fn_scalar_two_inputs, [(2, 3), (3, 2)]),
    "conv2d": (fn_conv_scalar, [(1, 1, 4, 4), (2, 1, 3, 3)]),
}


def libraries():
    torch = pytest.importorskip("torch")
    return torch, torch.autograd.functional


def make(name, table, rng, torch):
    """(deepkern function, torch function, deepkern inputs, torch inputs): one tensor alone, else a tuple."""
    maker, shapes = table[name]
    arrays = [rng.standard_normal(s) * 0.7 for s in shapes]
    ours = tuple(dk.tensor(a) for a in arrays)
    theirs = tuple(torch.tensor(a) for a in arrays)
    if len(arrays) == 1:
        ours, theirs = ours[0], theirs[0]
    return maker(dk, dF), maker(torch, torch.nn.functional), ours, theirs


def assert_same_structure(ours, theirs, what="", requires_grad=None):
    """Nested tuples (torch's lists too) of tensors: same nesting, shapes and values (RTOL)."""
    if isinstance(theirs, (tuple, list)):
        assert isinstance(ours, tuple) and len(ours) == len(theirs), f"{what}: {type(ours)} vs {type(theirs)}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same_structure(a, b, f"{what}[{i}]", requires_grad)
        return
    assert isinstance(ours, dk.Tensor), f"{what}: {type(ours).__name__}"
    assert ours.shape == tuple(theirs.shape), f"{what}: shape {ours.shape} vs {tuple(theirs.shape)}"
    if requires_grad is not None:
        assert ours.requires_grad == requires_grad, f"{what}: requires_grad {ours.requires_grad}"
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=RTOL, atol=1e-13, err_msg=what)


def vectors_like(tensors, rng, torch):
    """Random (deepkern, torch) vectors shaped like ``tensors`` (one, or a tuple)."""
    single = not isinstance(tensors, tuple)
    arrays = [rng.standard_normal(t.shape) for t in ((tensors,) if single else tensors)]
    ours, theirs = tuple(dk.tensor(a) for a in arrays), tuple(torch.tensor(a) for a in arrays)
    return (ours[0], theirs[0]) if single else (ours, theirs)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_vjp_jvp_and_jacobians_match_torch(name, rng):
    torch, TF = libraries()
    f, g, x, xt = make(name, FUNCTIONS, rng, torch)
    outputs = g(*(xt if isinstance(xt, tuple) else (xt,)))
    v, vt = vectors_like(tuple(outputs) if isinstance(outputs, tuple) else outputs, rng, torch)
    assert_same_structure(AF.vjp(f, x, v), TF.vjp(g, xt, vt), "vjp", requires_grad=False)
    u, ut = vectors_like(x, rng, torch)
    assert_same_structure(AF.jvp(f, x, u), TF.jvp(g, xt, ut), "jvp", requires_grad=False)
    expected = TF.jacobian(g, xt)
    assert_same_structure(AF.jacobian(f, x), expected, "jacobian", requires_grad=False)
    assert_same_structure(AF.jacobian(f, x, vectorize=True), expected, "vectorized jacobian")
    forward = TF.jacobian(g, xt, vectorize=True, strategy="forward-mode")
    assert_same_structure(AF.jacobian(f, x, vectorize=True, strategy="forward-mode"), forward, "forward jacobian")


@pytest.mark.parametrize("name", sorted(SCALAR_FUNCTIONS))
def test_hessian_vhp_and_hvp_match_torch(name, rng):
    torch, TF = libraries()
    f, g, x, xt = make(name, SCALAR_FUNCTIONS, rng, torch)
    expected = TF.hessian(g, xt)
    assert_same_structure(AF.hessian(f, x), expected, "hessian", requires_grad=False)
    assert_same_structure(AF.hessian(f, x, vectorize=True, outer_jacobian_strategy="forward-mode"), expected, "fwd")
    v, vt = vectors_like(x, rng, torch)
    assert_same_structure(AF.vhp(f, x, v), TF.vhp(g, xt, vt), "vhp", requires_grad=False)
    assert_same_structure(AF.hvp(f, x, v), TF.hvp(g, xt, vt), "hvp", requires_grad=False)


def test_v_may_be_omitted_for_one_element(rng):
    torch, TF = libraries()
    a = rng.standard_normal(())
    f = lambda x: (x.exp() * x).reshape(1)  # noqa: E731
    assert_same_structure(AF.vjp(f, dk.tensor(a)), TF.vjp(f, torch.tensor(a)), "vjp")
    assert_same_structure(AF.jvp(f, dk.tensor(a)), TF.jvp(f, torch.tensor(a)), "jvp")
    h = lambda x: (x**4).sum()  # noqa: E731
    assert_same_structure(AF.hvp(h, dk.tensor(a)), TF.hvp(h, torch.tensor(a)), "hvp")
    assert_same_structure(AF.vhp(h, dk.tensor(a)), TF.vhp(h, torch.tensor(a)), "vhp")


@pytest.mark.parametrize("api", ["vjp", "jvp", "jacobian", "hessian", "vhp", "hvp"])
def test_create_graph_results_are_differentiable_as_torch(api, rng):
    """With create_graph=True the results keep their graph, to inputs that require grad and to a ``v`` that
    does: the gradient of their sum matches torch's."""
    torch, TF = libraries()
    scalar = api in ("hessian", "vhp", "hvp")
    f, g, x, xt = make("two_inputs" if scalar else "matmul_pow", SCALAR_FUNCTIONS if scalar else FUNCTIONS, rng, torch)
    x = tuple(t.requires_grad_() for t in x)
    xt = tuple(t.requires_grad_() for t in xt)
    args, targs, leaves, tleaves = (), (), list(x), list(xt)
    if api in ("vjp", "jvp", "vhp", "hvp"):
        like = g(*xt) if api == "vjp" else xt
        v, vt = vectors_like(like, rng, torch)
        v = tuple(t.requires_grad_() for t in v) if isinstance(v, tuple) else v.requires_grad_()
        vt = tuple(t.requires_grad_() for t in vt) if isinstance(vt, tuple) else vt.requires_grad_()
        args, targs = (v,), (vt,)
        leaves += list(v) if isinstance(v, tuple) else [v]
        tleaves += list(vt) if isinstance(vt, tuple) else [vt]
    ours = getattr(AF, api)(f, x, *args, create_graph=True)
    theirs = getattr(TF, api)(g, xt, *targs, create_graph=True)
    assert_same_structure(ours, theirs, api, requires_grad=True)

    def total(result, lib):
        parts = result if isinstance(result, (tuple, list)) else (result,)
        return sum(total(p, lib) if isinstance(p, (tuple, list)) else (p * p).sum() for p in parts)

    grads = dk.autograd.grad(total(ours, dk), leaves, allow_unused=True)
    expected = torch.autograd.grad(total(theirs, torch), tleaves, allow_unused=True)
    for ours_g, theirs_g in zip(grads, expected):
        assert (ours_g is None) == (theirs_g is None)
        if theirs_g is not None:
            assert_same_structure(ours_g, theirs_g, f"d {api}")


def test_results_are_detached_and_inputs_untouched(rng):
    x = dk.tensor(rng.standard_normal(3), requires_grad=True)
    before = dk.is_grad_enabled()
    output, product = AF.vjp(lambda t: t.exp(), x, dk.ones(3))
    assert not output.requires_grad and not product.requires_grad and x.grad is None and x.is_leaf
    with dk.no_grad():
        jacobian = AF.jacobian(lambda t: t.sin(), x)
        assert not dk.is_grad_enabled()
    np.testing.assert_allclose(jacobian.numpy(), np.diag(np.cos(x.detach().numpy())), rtol=1e-15)
    assert dk.is_grad_enabled() == before


def central_differences(f, arrays, k: int, eps=1e-6):
    """d f(arrays) / d arrays[k] by central differences, shaped output.shape + arrays[k].shape."""
    base = f(*arrays)
    out = np.zeros(base.shape + arrays[k].shape)
    for index in np.ndindex(arrays[k].shape):
        shifted = [a.copy() for a in arrays]
        shifted[k][index] += eps
        up = f(*shifted)
        shifted[k][index] -= 2 * eps
        out[(...,) + index] = (up - f(*shifted)) / (2 * eps)
    return out


def test_jacobian_and_hessian_against_central_differences(rng):
    x, w = rng.standard_normal((2, 3)), rng.standard_normal((3, 2))

    def f(a, b):  # the function, in float64 NumPy
        return np.tanh(a @ b) ** 2

    jac = AF.jacobian(lambda a, b: (a @ b).tanh() ** 2, (dk.tensor(x), dk.tensor(w)))
    for k in (0, 1):
        np.testing.assert_allclose(jac[k].numpy(), central_differences(f, [x, w], k), rtol=1e-7, atol=1e-9)
    hessian = AF.hessian(lambda a: (a.tanh() ** 3).sum(), dk.tensor(x))

    def gradient(a):
        return 3 * np.tanh(a) ** 2 * (1 - np.tanh(a) ** 2)

    np.testing.assert_allclose(hessian.numpy(), central_differences(gradient, [x], 0), rtol=1e-7, atol=1e-9)


def test_zero_size_inputs_and_outputs(rng):
    """Empty Jacobians of the right shapes (torch's loop raises 'stack expects a non-empty TensorList')."""
    x = dk.tensor(rng.standard_normal(3))
    assert AF.jacobian(lambda t: t[:0] * 2, x).shape == (0, 3)
    assert AF.jacobian(lambda t: t * 2, dk.zeros(0, 2, dtype=dk.float64)).shape == (0, 2, 0, 2)
    assert AF.jacobian(lambda t: t.sum() * 2, dk.zeros(0, dtype=dk.float64)).shape == (0,)
    assert AF.hessian(lambda t: (t**3).sum(), dk.zeros(0, dtype=dk.float64)).shape == (0, 0)
    forward = AF.jacobian(
        lambda t, u: (t * 2, u.sum()), (x, dk.zeros(0, dtype=dk.float64)), vectorize=True, strategy="forward-mode"
    )
    assert [[j.shape for j in row] for row in forward] == [[(3, 3), (3, 0)], [(3,), (0,)]]
    np.testing.assert_array_equal(forward[0][0].numpy(), 2 * np.eye(3))
    np.testing.assert_array_equal(forward[1][0].numpy(), np.zeros(3))


def normalized(message: str) -> str:
    """torch's message with its shapes printed as deepkern prints them (torch.Size([2, 3]) -> (2, 3))."""
    return re.sub(
        r"torch\.Size\(\[([^\]]*)\]\)", lambda m: str(tuple(int(n) for n in m.group(1).split(",") if n)), message
    )


def independent(x, y):
    return x * 2


def linear(x):
    return (x * 3).sum()


def quadratic(x):
    return (x * x).sum()


def detached(x):
    return x.detach() * 2


# (api, function, inputs and options): wrong arguments and strict-mode failures, each as torch reports it
ERROR_CASES = [
    ("vjp", independent, "xy", {"v": "x", "strict": True}),
    ("vjp", detached, "x", {"v": "x", "strict": True}),
    ("vjp", independent, "xy", {"v": "y"}),
    ("vjp", independent, "xy", {}),
    ("vjp", independent, ["x", "y"], {}),
    ("jvp", independent, "xy", {"v": ("x",)}),
    ("jvp", independent, "xy", {"v": ("x", "x"), "strict": True}),
    ("jvp", detached, "x", {"v": "x", "strict": True}),
    ("jvp", independent, "xy", {"v": ("x", "y"), "strict": True}),
    ("jvp", independent, "x", {"v": "y"}),
    ("jacobian", independent, "xy", {"strict": True}),
    ("jacobian", independent, "xy", {"strategy": "sideways"}),
    ("jacobian", independent, "xy", {"strategy": "forward-mode"}),
    ("jacobian", independent, "xy", {"strategy": "forward-mode", "create_graph": True}),
    ("jacobian", independent, "xy", {"strategy": "forward-mode", "vectorize": True, "strict": True}),
    ("jacobian", independent, "xy", {"vectorize": True, "strict": True}),
    ("jacobian", linear, "x", {"create_graph": True, "strict": True}),
    ("hessian", linear, "x", {"strict": True}),
    ("hessian", independent, "xy", {}),
    ("hessian", lambda x: (x, x), "x", {}),
    ("hessian", linear, "x", {"outer_jacobian_strategy": "up"}),
    ("vhp", linear, "x", {"v": "x", "strict": True}),
    ("vhp", independent, "xy", {"v": ("x", "y")}),
    ("vhp", lambda x: (x.sum(), x.sum()), "x", {"v": "x"}),
    ("vhp", quadratic, "x", {}),
    ("hvp", quadratic, "x", {"v": "x", "strict": True, "create_graph": True}),
    ("hvp", lambda x, y: (x * x).sum(), "xy", {"v": ("x", "y"), "strict": True}),
    ("hvp", quadratic, "x", {"v": "y"}),
    ("vhp", quadratic, "x", {"v": "x", "strict": True, "create_graph": True}),
]


@pytest.mark.parametrize("api, function, inputs, options", ERROR_CASES)
def test_errors_match_torch(api, function, inputs, options, rng):
    torch, TF = libraries()
    arrays = {"x": rng.standard_normal(3), "y": rng.standard_normal(2)}

    def build(lib, spec):
        if isinstance(spec, list):
            return [build(lib, s) for s in spec]
        if isinstance(spec, tuple):
            return tuple(build(lib, s) for s in spec)
        tensors = tuple(lib.tensor(arrays[k]) for k in spec)
        return tensors[0] if len(tensors) == 1 else tensors

    def call(lib, module):
        kwargs = {k: build(lib, v) if k == "v" else v for k, v in options.items()}
        return getattr(module, api)(function, build(lib, inputs), **kwargs)

    with pytest.raises(Exception) as theirs:
        call(torch, TF)
    with pytest.raises(type(theirs.value)) as ours:
        call(dk, AF)
    expected = normalized(str(theirs.value)).replace("torch.Tensor", "deepkern.tensor.Tensor")
    assert str(ours.value) == expected
