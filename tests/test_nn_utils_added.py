"""nn.utils.spectral_norm / remove_spectral_norm and weight_norm / remove_weight_norm (the hook-based
reparametrizations), unfold / fold with the Unfold / Fold layers, and max_unpool2d with MaxUnpool2d:
each against torch (state dicts loaded from torch's modules, outputs, buffers and gradients in
float32 and float64), by finite differences, through the relations between fold and unfold, and on
bad arguments (errors naming them)."""

from __future__ import annotations

import warnings

import deepkern as dk
import numpy as np
import pytest
from deepkern import nn
from deepkern.nn import _fold as F
from deepkern.nn.fold import Fold, MaxUnpool2d, Unfold
from deepkern.nn.utils.spectral_norm import SpectralNorm
from deepkern.nn.utils.weight_norm import WeightNorm

from checks import check, gradcheck, raises_naming

torch = pytest.importorskip("torch")
TF = torch.nn.functional

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
#: ours against torch's result in the same dtype (float32: the two libraries round differently)
_TOL = {F32: 2e-5, F64: 1e-11}
_TORCH_DTYPE = {F32: torch.float32, F64: torch.float64}


def _np(t) -> np.ndarray:
    return (t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)).astype(np.float64)


def _ours(t) -> np.ndarray:
    return t.detach().numpy()


# ---------------------------------------------------------------------------------------------
# spectral_norm
# ---------------------------------------------------------------------------------------------

# kind -> (torch layer, our layer, input shape)
_LAYERS = {
    "linear": (lambda: torch.nn.Linear(5, 4), lambda: nn.Linear(5, 4), (3, 5)),
    "conv2d": (lambda: torch.nn.Conv2d(3, 4, 3, padding=1), lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 5, 6)),
    "conv_transpose2d": (
        lambda: torch.nn.ConvTranspose2d(3, 5, 3, stride=2),
        lambda: nn.ConvTranspose2d(3, 5, 3, stride=2),
        (2, 3, 4, 3),
    ),
}


def _pair_of(kind, dtype, wrap_torch, wrap_ours, seed=0):
    """torch's layer and ours, each wrapped (spectral_norm / weight_norm with the same arguments),
    ours given torch's state dict (its weight, bias and buffers: u and v too)."""
    make_torch, make_ours, shape = _LAYERS[kind]
    torch.manual_seed(seed)
    theirs = wrap_torch(make_torch().to(_TORCH_DTYPE[dtype]))
    ours = wrap_ours(make_ours().to(dtype))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    result = ours.load_state_dict(theirs.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    return theirs, ours, shape


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kind", list(_LAYERS))
@pytest.mark.parametrize("iterations", [1, 3])
def test_spectral_norm_matches_torch(kind, dtype, iterations, rng):
    theirs, ours, shape = _pair_of(
        kind,
        dtype,
        lambda m: torch.nn.utils.spectral_norm(m, n_power_iterations=iterations),
        lambda m: nn.utils.spectral_norm(m, n_power_iterations=iterations),
    )
    tol = _TOL[dtype]
    for step in range(3):  # training: power iterations update u and v in place
        x = rng.standard_normal(shape).astype(dtype)
        u_before = ours.weight_u
        y_t = theirs(torch.tensor(x))
        y_o = ours(dk.tensor(x))
        w = rng.standard_normal(tuple(y_t.shape)).astype(dtype)
        assert ours.weight_u is u_before, "the power iteration writes the buffer in place"
        (y_t * torch.tensor(w)).sum().backward()
        (y_o * dk.tensor(w)).sum().backward()
        what = f"{kind} step {step}"
        check(_ours(y_o), _np(y_t), dtype, f"{what}: output", tol=tol)
        for name in ("weight_u", "weight_v", "weight"):
            check(_ours(getattr(ours, name)), _np(getattr(theirs, name)), dtype, f"{what}: {name}", tol=tol)
        for name in ("weight_orig", "bias"):
            got, ref = getattr(ours, name).grad, getattr(theirs, name).grad
            check(_ours(got), _np(ref), dtype, f"{what}: {name}.grad", tol=tol * 10)
    theirs.eval()
    ours.eval()
    u, v = _ours(ours.weight_u).copy(), _ours(ours.weight_v).copy()
    x = rng.standard_normal(shape).astype(dtype)
    for grad_mode in (True, False):  # eval: no power iteration, with or without recording
        with torch.set_grad_enabled(grad_mode), dk.set_grad_enabled(grad_mode):
            y_t = theirs(torch.tensor(x))
            y_o = ours(dk.tensor(x))
        check(_ours(y_o), _np(y_t), dtype, f"{kind} eval: output", tol=tol)
        np.testing.assert_array_equal(_ours(ours.weight_u), u)
        np.testing.assert_array_equal(_ours(ours.weight_v), v)


def test_spectral_norm_registration():
    m = nn.utils.spectral_norm(nn.Conv2d(3, 4, (2, 5)))
    assert [n for n, _ in m.named_parameters()] == ["bias", "weight_orig"]
    assert [n for n, _ in m.named_buffers()] == ["weight_u", "weight_v"]
    assert list(m.state_dict()) == ["bias", "weight_orig", "weight_u", "weight_v"]
    assert isinstance(m.weight_orig, nn.Parameter) and not isinstance(m.weight, nn.Parameter)
    np.testing.assert_array_equal(_ours(m.weight), _ours(m.weight_orig))  # until the first forward
    assert m.weight_u.shape == (4,) and m.weight_v.shape == (3 * 2 * 5,)
    for b in (m.weight_u, m.weight_v):
        assert abs(np.linalg.norm(b.numpy()) - 1) < 1e-6 and b.dtype == F32
    hooks = [h for h in m._forward_pre_hooks.values() if isinstance(h, SpectralNorm)]
    assert len(hooks) == 1 and (hooks[0].name, hooks[0].dim, hooks[0].n_power_iterations) == ("weight", 0, 1)
    assert hooks[0].eps == 1e-12
    # the transposed convolutions hold their output channels in dimension 1
    t = nn.utils.spectral_norm(nn.ConvTranspose2d(3, 6, 2))
    assert t.weight_u.shape == (6,) and t.weight_v.shape == (3 * 2 * 2,)
    t1 = nn.utils.spectral_norm(nn.ConvTranspose1d(3, 6, 2), dim=0)
    assert t1.weight_u.shape == (3,) and t1.weight_v.shape == (6 * 2,)


@pytest.mark.parametrize("dim", [1, -1])
def test_spectral_norm_dim_and_eps_as_torch(dim, rng):
    """An explicit dim (PyTorch's only works for dims >= 0; ours counts a negative one from the end)."""
    theirs, ours, shape = _pair_of(
        "conv2d",
        F64,
        lambda m: torch.nn.utils.spectral_norm(m, dim=dim % 4, eps=1e-3, n_power_iterations=2),
        lambda m: nn.utils.spectral_norm(m, dim=dim, eps=1e-3, n_power_iterations=2),
    )
    assert ours.weight_u.shape == theirs.weight_u.shape
    x = rng.standard_normal(shape)
    for _ in range(2):
        y_t, y_o = theirs(torch.tensor(x)), ours(dk.tensor(x))
        y_t.square().sum().backward()
        y_o.square().sum().backward()
    check(_ours(y_o), _np(y_t), F64, "output")
    check(_ours(ours.weight_v), _np(theirs.weight_v), F64, "weight_v")
    check(_ours(ours.weight_orig.grad), _np(theirs.weight_orig.grad), F64, "weight_orig.grad", tol=1e-10)


def test_spectral_norm_eps_guards_a_zero_weight():
    """A zero weight: the iterations divide by eps instead of 0 (u and v stay finite, as torch's)."""
    theirs, ours, shape = _pair_of(
        "linear", F64, lambda m: torch.nn.utils.spectral_norm(m), lambda m: nn.utils.spectral_norm(m)
    )
    with torch.no_grad():
        theirs.weight_orig.zero_()
    ours.load_state_dict(theirs.state_dict())
    with torch.no_grad(), dk.no_grad():
        theirs(torch.ones(shape, dtype=torch.float64))
        ours(dk.ones(shape, dtype=F64))
    np.testing.assert_array_equal(_ours(ours.weight_u), _np(theirs.weight_u))
    np.testing.assert_array_equal(_ours(ours.weight_v), _np(theirs.weight_v))


def test_spectral_norm_eps_as_torch(rng):
    """A weight whose products are below eps: the iterations divide by eps (torch's normalize)."""
    theirs, ours, shape = _pair_of(
        "linear",
        F64,
        lambda m: torch.nn.utils.spectral_norm(m, eps=1e-2, n_power_iterations=2),
        lambda m: nn.utils.spectral_norm(m, eps=1e-2, n_power_iterations=2),
    )
    with torch.no_grad():
        theirs.weight_orig.mul_(1e-4)
    ours.load_state_dict(theirs.state_dict())
    x = rng.standard_normal(shape)
    for _ in range(2):
        y_t, y_o = theirs(torch.tensor(x)), ours(dk.tensor(x))
    check(_ours(y_o), _np(y_t), F64, "output")
    check(_ours(ours.weight_u), _np(theirs.weight_u), F64, "weight_u")
    check(_ours(ours.weight_v), _np(theirs.weight_v), F64, "weight_v")
    assert np.linalg.norm(_ours(ours.weight_u)) < 0.5  # eps, not the norm, divided


def test_spectral_norm_backward_after_the_next_forward(rng):
    """The sigma of a forward keeps copies of u and v: a later training forward, which writes the
    buffers in place, leaves the earlier graph's backward intact (as torch's clone)."""
    theirs, ours, shape = _pair_of(
        "linear", F64, lambda m: torch.nn.utils.spectral_norm(m), lambda m: nn.utils.spectral_norm(m)
    )
    x = rng.standard_normal(shape)
    first_t, first_o = theirs(torch.tensor(x)), ours(dk.tensor(x))
    theirs(torch.tensor(x))
    ours(dk.tensor(x))
    first_t.sum().backward()
    first_o.sum().backward()
    check(_ours(ours.weight_orig.grad), _np(theirs.weight_orig.grad), F64, "weight_orig.grad", tol=1e-10)


def test_spectral_norm_in_a_sequential_under_no_grad(rng):
    """The inference fast path of Sequential runs the hook (the normalized weight), in eval mode."""
    theirs, ours, shape = _pair_of(
        "conv2d", F32, lambda m: torch.nn.utils.spectral_norm(m), lambda m: nn.utils.spectral_norm(m)
    )
    seq_t = torch.nn.Sequential(theirs, torch.nn.ReLU()).eval()
    seq_o = nn.Sequential(ours, nn.ReLU()).eval()
    x = rng.standard_normal(shape).astype(F32)
    with torch.no_grad(), dk.no_grad():
        check(_ours(seq_o(dk.tensor(x))), _np(seq_t(torch.tensor(x))), F32, "output", tol=2e-5)


@pytest.mark.parametrize("kind", ["linear", "conv_transpose2d"])
def test_remove_spectral_norm_as_torch(kind, rng):
    theirs, ours, shape = _pair_of(kind, F32, torch.nn.utils.spectral_norm, nn.utils.spectral_norm)
    x = rng.standard_normal(shape).astype(F32)
    theirs(torch.tensor(x))
    ours(dk.tensor(x))
    assert nn.utils.remove_spectral_norm(ours) is ours
    torch.nn.utils.remove_spectral_norm(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["bias", "weight"]
    assert isinstance(ours.weight, nn.Parameter) and ours.weight.requires_grad
    assert not ours._forward_pre_hooks and not list(ours.buffers())
    check(_ours(ours.weight), _np(theirs.weight), F32, "weight", tol=2e-6)
    check(_ours(ours(dk.tensor(x))), _np(theirs(torch.tensor(x))), F32, "output", tol=2e-5)
    with raises_naming(ValueError, "spectral_norm", "weight"):
        nn.utils.remove_spectral_norm(ours)


def test_spectral_norm_bad_arguments():
    with raises_naming(ValueError, "n_power_iterations", "0"):
        nn.utils.spectral_norm(nn.Linear(2, 3), n_power_iterations=0)
    with raises_naming(TypeError, "n_power_iterations"):
        nn.utils.spectral_norm(nn.Linear(2, 3), n_power_iterations=1.5)
    with raises_naming(KeyError, "kernel"):
        nn.utils.spectral_norm(nn.Linear(2, 3), name="kernel")
    with raises_naming(ValueError, "bias", "None"):
        nn.utils.spectral_norm(nn.Linear(2, 3, bias=False), name="bias")
    with raises_naming(IndexError, "dim", "2"):
        nn.utils.spectral_norm(nn.Linear(2, 3), dim=2)
    with raises_naming(TypeError, "module"):
        nn.utils.spectral_norm(torch.nn.Linear(2, 3))
    m = nn.utils.spectral_norm(nn.Linear(2, 3))
    with raises_naming(RuntimeError, "two spectral_norm hooks", "weight"):
        nn.utils.spectral_norm(m)
    with raises_naming(ValueError, "spectral_norm", "bias"):
        nn.utils.remove_spectral_norm(m, "bias")
    assert list(m.state_dict()) == ["bias", "weight_orig", "weight_u", "weight_v"]  # unchanged by the errors


# ---------------------------------------------------------------------------------------------
# weight_norm
# ---------------------------------------------------------------------------------------------


def _weight_norm_quietly(fn, m, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return fn(m, **kw)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize(
    "kind,dim",
    [
        ("linear", 0),
        ("linear", 1),
        ("linear", None),
        ("conv2d", 0),
        ("conv2d", 2),
        ("conv2d", -1),  # PyTorch's quirk: -1 is the whole tensor, as None
        ("conv2d", -2),
        ("conv_transpose2d", 1),
    ],
)
def test_weight_norm_matches_torch(kind, dim, dtype, rng):
    make_torch, make_ours, shape = _LAYERS[kind]
    torch.manual_seed(0)
    plain_t = make_torch().to(_TORCH_DTYPE[dtype])
    plain_o = make_ours().to(dtype)
    plain_o.load_state_dict(plain_t.state_dict())
    theirs = _weight_norm_quietly(torch.nn.utils.weight_norm, plain_t, dim=dim)
    ours = _weight_norm_quietly(nn.utils.weight_norm, plain_o, dim=dim)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["bias", "weight_g", "weight_v"]
    assert [n for n, _ in ours.named_parameters()] == ["bias", "weight_g", "weight_v"]
    tol = _TOL[dtype]
    # the initial g and v (from the same weight) are torch's
    assert ours.weight_g.shape == tuple(theirs.weight_g.shape)
    check(_ours(ours.weight_g), _np(theirs.weight_g), dtype, "weight_g", tol=tol)
    check(_ours(ours.weight_v), _np(theirs.weight_v), dtype, "weight_v", tol=tol)
    # and so is everything after torch's state is loaded and the parameters move
    with torch.no_grad():
        theirs.weight_g.mul_(torch.linspace(0.5, 2.0, theirs.weight_g.numel()).reshape(theirs.weight_g.shape))
    ours.load_state_dict(theirs.state_dict())
    x = rng.standard_normal(shape).astype(dtype)
    y_t, y_o = theirs(torch.tensor(x)), ours(dk.tensor(x))
    w = rng.standard_normal(tuple(y_t.shape)).astype(dtype)
    (y_t * torch.tensor(w)).sum().backward()
    (y_o * dk.tensor(w)).sum().backward()
    check(_ours(y_o), _np(y_t), dtype, "output", tol=tol)
    check(_ours(ours.weight), _np(theirs.weight), dtype, "weight", tol=tol)
    for name in ("weight_g", "weight_v", "bias"):
        check(_ours(getattr(ours, name).grad), _np(getattr(theirs, name).grad), dtype, f"{name}.grad", tol=tol * 10)


def test_weight_norm_by_finite_differences(rng):
    m = _weight_norm_quietly(nn.utils.weight_norm, nn.Linear(3, 2).double(), dim=0)
    x = dk.tensor(rng.standard_normal((4, 3)))
    gradcheck(lambda g, v: m(x), m.weight_g, m.weight_v)


def test_weight_norm_warns_and_registers():
    with pytest.warns(FutureWarning, match="weight_norm"):
        m = nn.utils.weight_norm(nn.Conv2d(2, 3, 2))
    hooks = [h for h in m._forward_pre_hooks.values() if isinstance(h, WeightNorm)]
    assert len(hooks) == 1 and (hooks[0].name, hooks[0].dim) == ("weight", 0)
    assert m.weight_g.shape == (3, 1, 1, 1) and not isinstance(m.weight, nn.Parameter)
    assert m.weight.requires_grad  # computed from g and v
    np.testing.assert_allclose(_ours(m.weight), _ours(m.weight_v), rtol=1e-6)  # g = ||v|| at first
    b = _weight_norm_quietly(nn.utils.weight_norm, nn.Linear(2, 3), name="bias", dim=0)
    assert [n for n, _ in b.named_parameters()] == ["weight", "bias_g", "bias_v"]


def test_remove_weight_norm_as_torch(rng):
    torch.manual_seed(0)
    theirs = _weight_norm_quietly(torch.nn.utils.weight_norm, torch.nn.Conv2d(3, 4, 3))
    ours = _weight_norm_quietly(nn.utils.weight_norm, nn.Conv2d(3, 4, 3))
    with torch.no_grad():
        theirs.weight_g.mul_(3.0)
    ours.load_state_dict(theirs.state_dict())
    assert nn.utils.remove_weight_norm(ours) is ours
    torch.nn.utils.remove_weight_norm(theirs)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict()) == ["bias", "weight"]
    assert isinstance(ours.weight, nn.Parameter) and not ours._forward_pre_hooks
    check(_ours(ours.weight), _np(theirs.weight), F32, "weight", tol=2e-6)
    with raises_naming(ValueError, "weight_norm", "weight"):
        nn.utils.remove_weight_norm(ours)


def test_weight_norm_bad_arguments():
    with raises_naming(AttributeError, "kernel"):
        _weight_norm_quietly(nn.utils.weight_norm, nn.Linear(2, 3), name="kernel")
    with raises_naming(IndexError, "dim", "2"):
        _weight_norm_quietly(nn.utils.weight_norm, nn.Linear(2, 3), dim=2)
    with raises_naming(TypeError, "dim"):
        _weight_norm_quietly(nn.utils.weight_norm, nn.Linear(2, 3), dim=0.5)
    with raises_naming(ValueError, "bias", "None"):
        _weight_norm_quietly(nn.utils.weight_norm, nn.Linear(2, 3, bias=False), name="bias")
    m = _weight_norm_quietly(nn.utils.weight_norm, nn.Linear(2, 3))
    with raises_naming(RuntimeError, "two weight_norm hooks", "weight"):
        _weight_norm_quietly(nn.utils.weight_norm, m)


# ---------------------------------------------------------------------------------------------
# unfold / fold
# ---------------------------------------------------------------------------------------------

# (input shape, kernel_size, dilation, padding, stride)
_WINDOWS = [
    ((2, 3, 7, 6), 3, 1, 0, 1),
    ((2, 3, 8, 6), 2, 1, 0, 2),  # non-overlapping, all of the image
    ((2, 3, 7, 6), 2, 1, 0, 3),  # gaps between the blocks
    ((1, 2, 9, 8), (2, 3), (2, 1), (1, 2), (2, 3)),
    ((2, 1, 5, 5), 5, 1, 0, 1),  # one block
    ((2, 2, 5, 7), (1, 7), 1, 0, 1),
    ((1, 3, 6, 5), 3, 2, 2, 1),
    ((2, 2, 4, 4), (3, 1), (1, 3), (0, 3), (1, 2)),
    ((3, 5, 5), (2, 2), 1, 1, (1, 2)),  # unbatched
    ((1, 1, 1, 1), 1, 1, 0, 1),
    ((0, 2, 4, 4), 2, 1, 1, 1),  # empty batch
]


def _ids(cases):
    return [f"{shape}-k{k}-d{d}-p{p}-s{s}".replace(" ", "") for shape, k, d, p, s in cases]


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("case", _WINDOWS, ids=_ids(_WINDOWS))
def test_unfold_matches_torch(case, dtype, rng):
    shape, k, d, p, s = case
    x = rng.standard_normal(shape).astype(dtype)
    x_t = torch.tensor(x.astype(np.float64), requires_grad=True)
    x_o = dk.tensor(x, requires_grad=True)
    y_t = TF.unfold(x_t, k, d, p, s)
    y_o = Unfold(k, d, p, s)(x_o)
    assert y_o.dtype == dtype and y_o.shape == tuple(y_t.shape)
    np.testing.assert_array_equal(_ours(y_o).astype(np.float64), _np(y_t))  # a copy: exact
    w = rng.standard_normal(tuple(y_t.shape))
    (y_t * torch.tensor(w)).sum().backward()
    (y_o * dk.tensor(w.astype(dtype))).sum().backward()
    check(_ours(x_o.grad), _np(x_t.grad), dtype, "unfold gradient", tol=_TOL[dtype])


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("case", _WINDOWS, ids=_ids(_WINDOWS))
def test_fold_matches_torch(case, dtype, rng):
    shape, k, d, p, s = case
    cols_shape = tuple(TF.unfold(torch.zeros(shape), k, d, p, s).shape)
    cols = rng.standard_normal(cols_shape).astype(dtype)
    c_t = torch.tensor(cols, requires_grad=True)  # in torch's own dtype: float32 sums compared too
    c_o = dk.tensor(cols, requires_grad=True)
    y_t = TF.fold(c_t, shape[-2:], k, d, p, s)
    y_o = Fold(shape[-2:], k, d, p, s)(c_o)
    assert y_o.shape == tuple(y_t.shape) == shape
    check(_ours(y_o), _np(y_t), dtype, "fold", tol=_TOL[dtype])
    w = rng.standard_normal(shape).astype(dtype)
    (y_t * torch.tensor(w)).sum().backward()
    (y_o * dk.tensor(w)).sum().backward()
    check(_ours(c_o.grad), _np(c_t.grad), dtype, "fold gradient", tol=_TOL[dtype])


def test_fold_unfold_dtype_and_tuple_output_size(rng):
    """fold's output_size may be an int; results keep the input's dtype; lists are accepted."""
    x = rng.standard_normal((1, 8, 9)).astype(F32)
    y_t = TF.fold(torch.tensor(x), 4, 2, 1, 0, 1)
    y_o = F.fold(dk.tensor(x), 4, 2, 1, 0, 1)
    assert y_o.dtype == F32
    check(_ours(y_o), _np(y_t), F32, "fold", tol=1e-6)
    z = F.unfold(dk.tensor(rng.standard_normal((1, 2, 4, 4))), [2, 2], stride=[2, 1])
    assert z.shape == (1, 8, 6)
    # PyTorch's int lists take a bool as an int, and NumPy integers are ints
    assert F.unfold(dk.zeros((1, 1, 3, 3)), (2, True)).shape == tuple(
        TF.unfold(torch.zeros(1, 1, 3, 3), (2, True)).shape
    )
    assert F.unfold(dk.zeros((1, 1, 3, 3)), np.int64(2)).shape == (1, 4, 4)


@pytest.mark.parametrize(
    "case", [_WINDOWS[0], _WINDOWS[3], _WINDOWS[7], _WINDOWS[8]], ids=_ids([_WINDOWS[i] for i in (0, 3, 7, 8)])
)
def test_unfold_fold_by_finite_differences(case, rng):
    shape, k, d, p, s = case
    x = dk.tensor(rng.standard_normal(shape), requires_grad=True)
    gradcheck(lambda t: F.unfold(t, k, d, p, s), x)
    cols = dk.tensor(rng.standard_normal(F.unfold(x, k, d, p, s).shape), requires_grad=True)
    gradcheck(lambda t: F.fold(t, shape[-2:], k, d, p, s), cols)


@pytest.mark.parametrize("case", _WINDOWS[:-1], ids=_ids(_WINDOWS[:-1]))
def test_fold_unfold_relations(case, rng):
    """fold(unfold(x)) = x * fold(unfold(ones)) (each pixel summed once per block covering it), and
    fold is unfold's adjoint: <unfold(x), y> = <x, fold(y)>."""
    shape, k, d, p, s = case
    x = rng.standard_normal(shape)
    args = (k, d, p, s)
    back = F.fold(F.unfold(dk.tensor(x), *args), shape[-2:], *args).numpy()
    counts = F.fold(F.unfold(dk.ones(shape, dtype=F64), *args), shape[-2:], *args).numpy()
    np.testing.assert_allclose(back, x * counts, rtol=1e-12, atol=1e-12)
    if (shape, k, d, p, s) == ((2, 3, 8, 6), 2, 1, 0, 2):
        np.testing.assert_array_equal(counts, 1.0)
        np.testing.assert_array_equal(back, x)
    y = rng.standard_normal(F.unfold(dk.tensor(x), *args).shape)
    lhs = float(np.sum(F.unfold(dk.tensor(x), *args).numpy() * y))
    rhs = float(np.sum(x * F.fold(dk.tensor(y), shape[-2:], *args).numpy()))
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


@pytest.mark.parametrize("case", _WINDOWS[:4], ids=_ids(_WINDOWS[:4]))
def test_im2col_slice_path_equals_strided_view(case, rng):
    """The copy per kernel offset (arrays of other devices) gives the strided view's result."""
    shape, k, d, p, s = case
    x = rng.standard_normal(shape).astype(F32)
    window = F._window("unfold", k, d, p, s)
    np.testing.assert_array_equal(F.im2col(x, *window, strided=False), F.im2col(x, *window, strided=True))


def test_fold_layers_repr_as_torch():
    for ours, theirs in (
        (Unfold(3), torch.nn.Unfold(3)),
        (
            Unfold((2, 3), dilation=2, padding=(1, 0), stride=2),
            torch.nn.Unfold((2, 3), dilation=2, padding=(1, 0), stride=2),
        ),
        (Fold((4, 5), 2), torch.nn.Fold((4, 5), 2)),
        (Fold(6, (2, 1), 1, 1, (2, 1)), torch.nn.Fold(6, (2, 1), 1, 1, (2, 1))),
        (MaxUnpool2d(2), torch.nn.MaxUnpool2d(2)),
        (MaxUnpool2d((3, 2), stride=1, padding=1), torch.nn.MaxUnpool2d((3, 2), stride=1, padding=1)),
    ):
        assert repr(ours) == repr(theirs)
        assert list(ours.state_dict()) == []


_X4 = np.zeros((1, 2, 4, 4))
_BAD = [
    (lambda: F.unfold(_X4, 0), ValueError, ["unfold", "kernel_size", "greater than zero"]),
    (lambda: F.unfold(_X4, 2, dilation=(1, 0)), ValueError, ["unfold", "dilation"]),
    (lambda: F.unfold(_X4, 2, padding=-1), ValueError, ["unfold", "padding", "non-negative"]),
    (lambda: F.unfold(_X4, 2, stride=0), ValueError, ["unfold", "stride"]),
    (lambda: F.unfold(_X4, (2, 2, 2)), ValueError, ["unfold", "kernel_size", "pair"]),
    (lambda: F.unfold(_X4, 2.0), TypeError, ["unfold", "kernel_size"]),
    (lambda: F.unfold(_X4, "2"), TypeError, ["unfold", "kernel_size"]),
    (lambda: F.unfold(_X4, 5), ValueError, ["unfold", r"\(4, 4\)", "sliding blocks", r"\(0, 0\)"]),
    (
        lambda: F.unfold(np.zeros((2, 4, 4)).reshape(1, 2, 4, 4)[:, :, :0], 1),
        ValueError,
        ["unfold", "input", "non-zero"],
    ),
    (lambda: F.unfold(np.zeros((4, 4)), 1), ValueError, ["unfold", "input", r"\(4, 4\)"]),
    (lambda: F.unfold(np.zeros((1, 1, 4, 4), np.int64), 1), TypeError, ["unfold", "input", "floating", "int64"]),
    (lambda: F.fold(np.zeros((1, 8, 9)), (4, 4), 2, stride=0), ValueError, ["fold", "stride"]),
    (lambda: F.fold(np.zeros((1, 8, 9)), (4, 4, 1), 2), ValueError, ["fold", "output_size"]),
    (lambda: F.fold(np.zeros((1, 7, 9)), (4, 4), 2), ValueError, ["fold", "divisible", "kernel_size", "7"]),
    (lambda: F.fold(np.zeros((1, 8, 8)), (4, 4), 2), ValueError, ["fold", "sliding blocks", "3 \\* 3 = 9", "8"]),
    (lambda: F.fold(np.zeros((1, 8, 0)), (4, 4), 2), ValueError, ["fold", "input", "non-zero"]),
    (lambda: F.fold(np.zeros((1, 1, 8, 9)), (4, 4), 2), ValueError, ["fold", "input", r"\(1, 1, 8, 9\)"]),
    (lambda: F.fold(np.zeros((1, 4, 1)), (4, 0), 2, padding=(0, 1)), ValueError, ["fold", "sliding blocks", "3 \\* 1"]),
    (lambda: F.fold(np.zeros((1, 4, 3)), (4, 0), 2, padding=(0, 1)), ValueError, ["fold", "output_size", "positive"]),
    (lambda: F.fold(np.zeros((1, 4, 1)), (0, 0), 2), ValueError, ["fold", "too small", r"\(-1, -1\)"]),
    (lambda: F.fold(np.zeros((1, 8, 9), np.int32), (4, 4), 2), TypeError, ["fold", "input", "floating"]),
]


@pytest.mark.parametrize("call,exc,needles", _BAD, ids=[f"bad{i}" for i in range(len(_BAD))])
def test_fold_unfold_bad_arguments(call, exc, needles):
    with raises_naming(exc, *needles):
        call()


def test_unfold_gradient_accumulates_overlaps():
    """Each input element's gradient is the number of blocks reading it (3x3 kernel, stride 1)."""
    x = dk.ones((1, 1, 4, 4), dtype=F64, requires_grad=True)
    F.unfold(x, 3).sum().backward()
    expected = np.array([[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]], float)
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], expected)


# ---------------------------------------------------------------------------------------------
# max_unpool2d
# ---------------------------------------------------------------------------------------------

# (input shape, kernel_size, stride, padding, output_size)
_UNPOOL = [
    ((2, 3, 8, 8), 2, None, 0, None),
    ((2, 3, 9, 9), 2, None, 0, (9, 9)),
    ((1, 2, 7, 6), (3, 2), (2, 1), (1, 0), None),
    ((1, 2, 7, 7), 3, 2, 1, (1, 2, 8, 7)),
    ((3, 6, 5), 2, 1, 0, None),  # unbatched
    ((0, 2, 4, 4), 2, None, 0, None),
]


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("case", _UNPOOL, ids=[f"unpool{i}" for i in range(len(_UNPOOL))])
def test_max_unpool2d_matches_torch(case, dtype, rng):
    shape, k, s, p, out_size = case
    x = torch.tensor(rng.standard_normal(shape).astype(dtype))
    pooled, indices = TF.max_pool2d(x, k, s, p, return_indices=True)
    v_t = pooled.detach().clone().requires_grad_(True)
    v_o = dk.tensor(pooled.numpy(), requires_grad=True)
    y_t = TF.max_unpool2d(v_t, indices, k, s, p, out_size)
    y_o = MaxUnpool2d(k, s, p)(v_o, dk.tensor(indices.numpy()), out_size)
    assert y_o.shape == tuple(y_t.shape) and y_o.dtype == dtype
    np.testing.assert_array_equal(_ours(y_o), y_t.detach().numpy())
    w = rng.standard_normal(tuple(y_t.shape)).astype(dtype)
    (y_t * torch.tensor(w)).sum().backward()
    (y_o * dk.tensor(w)).sum().backward()
    np.testing.assert_array_equal(_ours(v_o.grad), v_t.grad.numpy())


def test_max_unpool2d_by_finite_differences(rng):
    x = torch.tensor(rng.standard_normal((1, 2, 6, 6)))
    pooled, indices = TF.max_pool2d(x, 2, return_indices=True)
    v = dk.tensor(pooled.numpy(), requires_grad=True)
    idx = dk.tensor(indices.numpy())
    gradcheck(lambda t: F.max_unpool2d(t, idx, 2, output_size=(7, 6)), v)


def test_max_unpool2d_bad_arguments():
    v = np.zeros((1, 1, 2, 2))
    idx = np.zeros((1, 1, 2, 2), np.int64)
    with raises_naming(TypeError, "max_unpool2d", "indices", "int64", "int32"):
        F.max_unpool2d(v, idx.astype(np.int32), 2)
    with raises_naming(ValueError, "max_unpool2d", "indices", r"\(1, 1, 2, 2\)", r"\(1, 1, 4\)"):
        F.max_unpool2d(v, idx.reshape(1, 1, 4), 2)
    with raises_naming(ValueError, "max_unpool2d", "input", "2 dimensions"):
        F.max_unpool2d(v[0, 0], idx[0, 0], 2)
    with raises_naming(ValueError, "max_unpool2d", "output_size", "2 or 4", "3"):
        F.max_unpool2d(v, idx, 2, output_size=(1, 4, 4))
    with raises_naming(ValueError, "max_unpool2d", "output_size", "dim 0", "2", "6"):
        F.max_unpool2d(v, idx, 2, output_size=(6, 4))
    with raises_naming(RuntimeError, "max_unpool2d", "invalid max index", "16", "4x4"):
        F.max_unpool2d(v, idx + 16, 2)
    with raises_naming(RuntimeError, "max_unpool2d", "invalid max index", "-1"):
        F.max_unpool2d(v, idx - 1, 2)
    with raises_naming(ValueError, "max_unpool2d", "non-zero", "dimension 1"):
        F.max_unpool2d(np.zeros((1, 0, 2, 2)), np.zeros((1, 0, 2, 2), np.int64), 2)
    with raises_naming(TypeError, "MaxUnpool2d", "kernel_size"):
        MaxUnpool2d(2.5)
