"""nn.utils.parametrize (a tensor of a module computed from others) and nn.utils.parametrizations
(weight_norm, spectral_norm): values against float64 NumPy references, gradients by finite
differences, PyTorch's state dict keys and class swap, right_inverse on assignment, removal,
caching, inference under no_grad, copies; where PyTorch is installed, its outputs over training
steps from the same state dict."""

from __future__ import annotations

import copy
import pickle

import deepkern as dk
import numpy as np
import pytest
from deepkern import nn, optim
from deepkern.nn.utils import parametrizations, parametrize

from checks import gradcheck
from reference import conv2d_ref, rel_error


class Symmetric(nn.Module):
    """X -> triu(X) + triu(X, 1)^T, with a right inverse (the upper triangle)."""

    calls = 0

    def forward(self, x):
        Symmetric.calls += 1
        return x.triu() + x.triu(1).t()

    def right_inverse(self, a):
        return a.triu()


class Scale(nn.Module):
    def forward(self, x):
        return x * 2.0

    def right_inverse(self, a):
        return a / 2.0


def _linear(rng, out=4, inp=4):
    layer = nn.Linear(inp, out, dtype=np.float64)
    with dk.no_grad():
        layer.weight.copy_(dk.tensor(rng.standard_normal((out, inp))))
    return layer


def test_register_parametrization_swaps_the_class_and_computes_the_tensor():
    rng = np.random.default_rng(0)
    layer = _linear(rng)
    w = layer.weight.detach().numpy().copy()
    weight_param = layer.weight
    parametrize.register_parametrization(layer, "weight", Symmetric())
    assert type(layer).__name__ == "ParametrizedLinear" and isinstance(layer, nn.Linear)
    assert parametrize.is_parametrized(layer) and parametrize.is_parametrized(layer, "weight")
    assert not parametrize.is_parametrized(layer, "bias")
    assert parametrize.type_before_parametrizations(layer) is nn.Linear
    assert sorted(layer.state_dict()) == ["bias", "parametrizations.weight.original"]
    assert layer.parametrizations.weight.original is weight_param  # the same Parameter (optimizers hold it)
    sym = np.triu(w) + np.triu(w, 1).T
    np.testing.assert_array_equal(layer.weight.detach().numpy(), sym)  # right_inverse kept the upper triangle
    x = rng.standard_normal((3, 4))
    ref = x @ sym.T + layer.bias.detach().numpy()
    assert rel_error(layer(dk.tensor(x)).detach().numpy(), ref) < 1e-14
    with dk.no_grad():
        assert rel_error(layer.eval()(dk.tensor(x)).numpy(), ref) < 1e-14
    # an optimizer step moves the original; the weight stays symmetric
    opt = optim.SGD(layer.parameters(), lr=0.1)
    layer.train()(dk.tensor(x)).sum().backward()
    opt.step()
    w2 = layer.weight.detach().numpy()
    np.testing.assert_allclose(w2, w2.T)
    assert not np.allclose(w2, sym)


def test_assignment_goes_through_right_inverse_and_chains_apply_in_order():
    rng = np.random.default_rng(1)
    layer = _linear(rng)
    parametrize.register_parametrization(layer, "weight", Symmetric())
    parametrize.register_parametrization(layer, "weight", Scale())
    a = rng.standard_normal((4, 4))
    a = a + a.T
    layer.weight = dk.tensor(a)
    np.testing.assert_allclose(layer.weight.detach().numpy(), a, rtol=1e-15)
    np.testing.assert_allclose(layer.parametrizations.weight.original.detach().numpy(), np.triu(a) / 2, rtol=1e-15)
    assert len(layer.parametrizations.weight) == 2


def test_parametrizations_that_change_the_shape_need_unsafe():
    class Square(nn.Module):
        def forward(self, x):
            return x @ x.t()

    layer = _linear(np.random.default_rng(2), out=3, inp=4)
    with pytest.raises(ValueError, match="may not change the shape or dtype"):
        parametrize.register_parametrization(layer, "weight", Square())
    assert type(layer) is nn.Linear and "weight" in layer._parameters  # nothing changed
    parametrize.register_parametrization(layer, "weight", Square(), unsafe=True)
    assert layer.weight.shape == (3, 3)
    with pytest.raises(ValueError, match="does not have a parameter, a buffer, or a parametrized element"):
        parametrize.register_parametrization(layer, "nothing", Scale())
    with pytest.raises(TypeError, match="parametrization must be an nn.Module"):
        parametrize.register_parametrization(layer, "bias", lambda x: x)


@pytest.mark.parametrize("leave", [True, False])
def test_remove_parametrizations_restores_the_layer(leave):
    rng = np.random.default_rng(3)
    layer = _linear(rng)
    original = layer.weight.detach().numpy().copy()
    parametrize.register_parametrization(layer, "weight", Scale())
    parametrize.register_parametrization(layer, "bias", Scale())
    parametrize.remove_parametrizations(layer, "weight", leave_parametrized=leave)
    assert type(layer).__name__ == "ParametrizedLinear"  # the bias is still parametrized
    # registering stored right_inverse(w) = w / 2 as the original; leaving parametrized gives 2 * w / 2
    np.testing.assert_allclose(layer.weight.detach().numpy(), original * (1.0 if leave else 0.5))
    assert isinstance(layer._parameters["weight"], nn.Parameter)
    parametrize.remove_parametrizations(layer, "bias")
    assert type(layer) is nn.Linear and "parametrizations" not in layer._modules
    assert sorted(layer.state_dict()) == ["bias", "weight"]
    with pytest.raises(ValueError, match="does not have a parametrization on weight"):
        parametrize.remove_parametrizations(layer, "weight")
    norm = parametrizations.weight_norm(_linear(rng))
    with pytest.raises(ValueError, match="Cannot leave unparametrized"):
        parametrize.remove_parametrizations(norm, "weight", leave_parametrized=False)


def test_cached_computes_each_tensor_once_and_a_forward_reads_it_once():
    layer = _linear(np.random.default_rng(4))
    parametrize.register_parametrization(layer, "weight", Symmetric())
    Symmetric.calls = 0
    layer(dk.tensor(np.ones((2, 4))))  # the layer's checks and its op both read the weight
    assert Symmetric.calls == 1
    with parametrize.cached():
        first = layer.weight
        assert layer.weight is first and Symmetric.calls == 2
    assert layer.weight is not first and Symmetric.calls == 3


@pytest.mark.parametrize("dim", [0, 1, None])
def test_weight_norm_matches_the_reference_and_finite_differences(dim):
    rng = np.random.default_rng(5)
    conv = nn.Conv2d(3, 4, 3, dtype=np.float64)
    w = conv.weight.detach().numpy().copy()
    parametrizations.weight_norm(conv, dim=dim)
    assert sorted(conv.state_dict()) == [
        "bias",
        "parametrizations.weight.original0",
        "parametrizations.weight.original1",
    ]
    g = conv.parametrizations.weight.original0.detach().numpy()
    axes = tuple(a for a in range(4) if a != dim) if dim is not None else None
    np.testing.assert_allclose(g, np.sqrt((w * w).sum(axis=axes, keepdims=dim is not None)), rtol=1e-14)
    with dk.no_grad():
        g_new = conv.parametrizations.weight.original0.mul_(1.5).detach().numpy()
    v = conv.parametrizations.weight.original1.detach().numpy()
    expected = v * g_new / np.sqrt((v * v).sum(axis=axes, keepdims=dim is not None))
    np.testing.assert_allclose(conv.weight.detach().numpy(), expected, rtol=1e-14)
    x = rng.standard_normal((2, 3, 5, 5))
    ref = conv2d_ref(x, expected, conv.bias.detach().numpy())
    assert rel_error(conv(dk.tensor(x)).detach().numpy(), ref) < 1e-13
    gradcheck(lambda *_: conv(dk.tensor(x)), *conv.parameters())


def _power_iteration(w_mat, u, v, steps):
    for _ in range(steps):
        u = w_mat @ v
        u /= np.linalg.norm(u)
        v = w_mat.T @ u
        v /= np.linalg.norm(v)
    return u, v


def test_spectral_norm_matches_the_reference_in_training_and_eval():
    rng = np.random.default_rng(6)
    deconv = nn.ConvTranspose2d(3, 5, 3, dtype=np.float64)  # output channels in dimension 1
    parametrizations.spectral_norm(deconv, n_power_iterations=2)
    sn = deconv.parametrizations.weight[0]
    assert sorted(deconv.state_dict()) == [
        "bias",
        "parametrizations.weight.0._u",
        "parametrizations.weight.0._v",
        "parametrizations.weight.original",
    ]
    w = deconv.parametrizations.weight.original.detach().numpy()
    w_mat = w.transpose(1, 0, 2, 3).reshape(5, -1)
    u, v = sn._u.numpy().copy(), sn._v.numpy().copy()
    sigma = np.linalg.svd(w_mat, compute_uv=False)[0]
    assert abs(u @ w_mat @ v / sigma - 1) < 1e-3  # 15 iterations at registration
    x = dk.tensor(rng.standard_normal((2, 3, 4, 4)))
    deconv(x)  # training: two more iterations, then w / (u . W v)
    u, v = _power_iteration(w_mat, u, v, 2)
    np.testing.assert_allclose(sn._u.numpy(), u, rtol=1e-12)
    np.testing.assert_allclose(sn._v.numpy(), v, rtol=1e-12)
    deconv.eval()
    kept = sn._u.numpy().copy()
    np.testing.assert_allclose(deconv.weight.detach().numpy(), w / (u @ w_mat @ v), rtol=1e-13)
    np.testing.assert_array_equal(sn._u.numpy(), kept)  # no iteration in eval mode
    gradcheck(lambda *_: deconv(x), *deconv.parameters())
    bias = nn.Linear(3, 2, dtype=np.float64)
    parametrizations.spectral_norm(bias, "bias")  # a 1-D tensor: normalised to unit length
    b = bias.parametrizations.bias.original.detach().numpy()
    np.testing.assert_allclose(bias.bias.detach().numpy(), b / np.linalg.norm(b), rtol=1e-14)
    with pytest.raises(ValueError, match="has no parameter or buffer with name 'kernel'"):
        parametrizations.spectral_norm(nn.Linear(2, 2), "kernel")
    with pytest.raises(ValueError, match="n_power_iterations to be positive"):
        parametrizations.spectral_norm(nn.Linear(2, 2), n_power_iterations=0)


def test_parametrized_layers_in_a_sequential_under_no_grad_follow_their_originals():
    rng = np.random.default_rng(7)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, dtype=np.float64), nn.ReLU(), nn.Flatten()).eval()
    parametrize.register_parametrization(model[0], "weight", Scale())
    x = rng.standard_normal((1, 2, 5, 5))

    def reference():
        w = 2.0 * model[0].parametrizations.weight.original.detach().numpy()
        return np.maximum(conv2d_ref(x, w, model[0].bias.detach().numpy()), 0).reshape(1, -1)

    for _ in range(2):
        with dk.no_grad():
            assert rel_error(model(dk.tensor(x)).numpy(), reference()) < 1e-14
    with dk.no_grad():
        model[0].parametrizations.weight.original.mul_(-1.0)
        assert rel_error(model(dk.tensor(x)).numpy(), reference()) < 1e-14


def test_parametrized_modules_deep_copy_but_do_not_pickle():
    model = nn.Sequential(parametrizations.spectral_norm(nn.Linear(3, 4, dtype=np.float64)))
    twin = copy.deepcopy(model)
    x = dk.tensor(np.ones((2, 3)))
    model.eval(), twin.eval()
    np.testing.assert_array_equal(twin(x).detach().numpy(), model(x).detach().numpy())
    assert twin[0].parametrizations.weight.original is not model[0].parametrizations.weight.original
    with pytest.raises(RuntimeError, match="only supported through state_dict"):
        pickle.dumps(model)


def test_parametrizations_match_pytorch_over_training_steps():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    pairs = [
        (
            torch.nn.utils.parametrizations.spectral_norm(torch.nn.Conv2d(3, 4, 3).double()),
            parametrizations.spectral_norm(nn.Conv2d(3, 4, 3, dtype=np.float64)),
        ),
        (
            torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(5, 4).double(), dim=1),
            parametrizations.weight_norm(nn.Linear(5, 4, dtype=np.float64), dim=1),
        ),
    ]
    for theirs, ours in pairs:
        assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
        assert (
            type(ours).__name__ == type(theirs).__name__ and repr(ours).split("\n")[2:] == repr(theirs).split("\n")[2:]
        )
        ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
        shape = (2, 3, 6, 6) if isinstance(ours, nn.Conv2d) else (2, 5)
        t_opt, d_opt = torch.optim.SGD(theirs.parameters(), lr=0.1), optim.SGD(ours.parameters(), lr=0.1)
        for _ in range(3):
            x = rng.standard_normal(shape)
            t_out, d_out = theirs(torch.tensor(x)), ours(dk.tensor(x))
            np.testing.assert_allclose(d_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-12, atol=1e-14)
            (t_out**2).sum().backward()
            (d_out**2).sum().backward()
            t_opt.step(), d_opt.step()
            t_opt.zero_grad(), d_opt.zero_grad()
        for name, value in theirs.state_dict().items():
            np.testing.assert_allclose(ours.state_dict()[name].numpy(), value.numpy(), rtol=1e-11, atol=1e-14)
