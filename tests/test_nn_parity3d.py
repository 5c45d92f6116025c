"""The torch.nn names added for PyTorch parity: ConvTranspose3d / F.conv_transpose3d, the 3-D and
circular padding layers (and F.pad's negative amounts), Dropout3d, InstanceNorm3d, LPPool3d,
MaxUnpool1d/3d, FractionalMaxPool2d/3d, the *_with_indices aliases, the in-place functional
activations, the lazy modules (UninitializedParameter / UninitializedBuffer, LazyLinear, LazyConv*,
LazyConvTranspose*, LazyBatchNorm*, LazyInstanceNorm*), nn.Buffer, RNNBase and RNNCellBase. Each
against torch 2.13: float64 autograd as the reference of float32 and float64 runs (contiguous and
strided inputs, empty batches), finite differences, torch's state dicts, reprs and attributes, and
the errors (their types beside torch's)."""

from __future__ import annotations

import copy
import pickle

import deepkern as dk
import numpy as np
import pytest
from deepkern import nn

from checks import check, gradcheck, raises_naming

torch = pytest.importorskip("torch")

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
#: ours (float32 or float64) against torch's float64 result
_TOL = {F32: 3e-5, F64: 1e-12}


def _indices(pool, shape, kernel, seed):
    """int64 indices of torch's max pooling (``pool``, a torch.nn.functional name) of a random input."""
    x = torch.tensor(np.random.default_rng(seed).standard_normal(shape))
    return getattr(torch.nn.functional, pool)(x, kernel, return_indices=True)[1].numpy()


IDX1 = _indices("max_pool1d", (2, 3, 9), 2, 1)  # (2, 3, 4) positions in 8
IDX3 = _indices("max_pool3d", (2, 3, 4, 6, 5), 2, 3)  # (2, 3, 2, 3, 2) positions in 4 * 6 * 5
IDX3_EVEN = _indices("max_pool3d", (2, 3, 4, 6, 4), 2, 4)  # in 4 * 6 * 4, MaxUnpool3d(2)'s default


# name -> (fn(F, T, *inputs), input shapes, the shapes with an empty batch where torch allows one, or
# None). ``F`` is deepkern's or torch's nn.functional, ``T`` makes a NumPy array that library's tensor
# (floating arrays in the run's dtype): the same code runs on both.
CASES = {
    "conv_transpose3d": (
        lambda F, T, x, w, b: F.conv_transpose3d(x, w, b, (2, 1, 3), (1, 0, 1), (1, 0, 2), 2, (1, 2, 1)),
        [(2, 4, 2, 3, 2), (4, 2, 2, 3, 2), (4,)],
        [(0, 4, 2, 3, 2), (4, 2, 2, 3, 2), (4,)],
    ),
    "conv_transpose3d_plain": (lambda F, T, x, w: F.conv_transpose3d(x, w), [(1, 2, 3, 2, 2), (2, 3, 2, 2, 1)], None),
    "conv_transpose3d_output_padding_below_dilation": (
        lambda F, T, x, w: F.conv_transpose3d(x, w, None, 1, (1, 0, 0), (2, 0, 1), 1, (3, 1, 2)),
        [(2, 2, 3, 2, 3), (2, 2, 2, 2, 2)],
        None,
    ),
    "conv_transpose3d_unbatched": (
        lambda F, T, x, w: F.conv_transpose3d(x, w, None, 2, (1, 1, 0), (1, 0, 1), 3, (2, 1, 2)),
        [(3, 2, 3, 2), (3, 1, 2, 3, 2)],
        None,
    ),
    "pad_reflect_3d": (lambda F, T, x: F.pad(x, (1, 2, 0, 3, 2, 1), "reflect"), [(2, 3, 4, 5, 3)], [(0, 3, 4, 5, 3)]),
    "pad_reflect_cropping": (lambda F, T, x: F.pad(x, (-1, 2, 1, -2, 0, 3), "reflect"), [(2, 2, 5, 4, 3)], None),
    "pad_replicate_3d_unbatched": (lambda F, T, x: F.pad(x, (2, 0, 1, 3, 0, 2), "replicate"), [(3, 4, 5, 3)], None),
    "pad_circular_3d": (lambda F, T, x: F.pad(x, (1, 2, 3, 0, 2, 4), "circular"), [(2, 3, 4, 5, 3)], None),
    "pad_circular_cropping": (lambda F, T, x: F.pad(x, (-2, 3, 2, -1), "circular"), [(2, 4, 6)], None),
    "pad_circular_1d": (lambda F, T, x: F.pad(x, (3, 1), "circular"), [(2, 3, 4)], [(0, 3, 4)]),
    "lp_pool3d": (lambda F, T, x: F.lp_pool3d(x, 2, (2, 3, 2), (1, 2, 2)), [(2, 3, 4, 5, 4)], [(0, 3, 4, 5, 4)]),
    "lp_pool3d_fractional_norm": (
        lambda F, T, x: F.lp_pool3d(x * x + 0.1, 1.5, 2, ceil_mode=True),
        [(3, 5, 4, 5)],
        None,
    ),
    "lp_pool3d_inf": (lambda F, T, x: F.lp_pool3d(x, float("inf"), (2, 1, 2)), [(1, 2, 4, 3, 4)], None),
    "instance_norm_5d": (
        lambda F, T, x, w, b: F.instance_norm(x, weight=w, bias=b, eps=1e-3),
        [(2, 3, 3, 4, 2), (3,), (3,)],
        None,
    ),
    "max_unpool1d": (lambda F, T, x: F.max_unpool1d(x, T(IDX1), 2), [(2, 3, 4)], None),
    "max_unpool1d_unbatched": (lambda F, T, x: F.max_unpool1d(x, T(IDX1[1]), 2, output_size=(9,)), [(3, 4)], None),
    "max_unpool3d": (lambda F, T, x: F.max_unpool3d(x, T(IDX3), 2, output_size=(4, 6, 5)), [(2, 3, 2, 3, 2)], None),
    "max_unpool3d_unbatched": (
        lambda F, T, x: F.max_unpool3d(x, T(IDX3[0]), (2, 2, 2), 2, 0, (1, 3, 4, 6, 5)),
        [(3, 2, 3, 2)],
        None,
    ),
}


def _library_tensor(lib, dtype):
    """``T`` of the cases: a NumPy array as ``lib``'s tensor, floating ones in ``dtype``."""

    def make(a):
        return lib.tensor(a.astype(dtype) if a.dtype.kind == "f" else a)

    return make


def _run(name, arrays, dtype, strided=False):
    """The case on deepkern Tensors of ``dtype``: (output, leaves); the first input through a strided
    view of a leaf twice as wide when ``strided``."""
    leaves, inputs = [], []
    for k, a in enumerate(arrays):
        if strided and k == 0:
            leaf = dk.tensor(np.repeat(a.astype(dtype), 2, axis=-1), requires_grad=True)
            x = leaf[..., ::2]
            assert not x.is_contiguous()
        else:
            leaf = x = dk.tensor(a.astype(dtype), requires_grad=True)
        leaves.append(leaf)
        inputs.append(x)
    return CASES[name][0](dk.nn.functional, _library_tensor(dk, dtype), *inputs), leaves


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("name", sorted(CASES))
def test_function_matches_torch(name, dtype, layout, rng):
    fn, shapes, _ = CASES[name]
    arrays = [rng.standard_normal(s) for s in shapes]
    strided = layout == "strided"
    out, leaves = _run(name, arrays, dtype, strided)
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out_t = fn(torch.nn.functional, _library_tensor(torch, np.float64), *theirs)
    check(out.detach().numpy(), out_t.detach().numpy(), dtype, f"{name} forward", tol=_TOL[dtype])
    g = rng.standard_normal(tuple(out_t.shape))
    out.backward(dk.tensor(g.astype(dtype)))
    out_t.backward(torch.tensor(g))
    for k, (leaf, t) in enumerate(zip(leaves, theirs)):
        got = leaf.grad.numpy()
        if strided and k == 0:
            assert not got[..., 1::2].any(), f"{name}: the skipped elements got a gradient"
            got = got[..., ::2]
        check(got, t.grad.numpy(), dtype, f"{name} gradient of input {k}", tol=10 * _TOL[dtype])


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_by_finite_differences(name, rng):
    fn, shapes, _ = CASES[name]
    inputs = [dk.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes]
    gradcheck(lambda *xs: fn(dk.nn.functional, _library_tensor(dk, np.float64), *xs), *inputs, rng=rng)


@pytest.mark.parametrize("name", sorted(n for n in CASES if CASES[n][2] is not None))
def test_empty_batch_as_torch(name, rng):
    fn, _, shapes = CASES[name]
    arrays = [rng.standard_normal(s) for s in shapes]
    ours = [dk.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(dk.nn.functional, _library_tensor(dk, np.float64), *ours)
    out_t = fn(torch.nn.functional, _library_tensor(torch, np.float64), *theirs)
    assert tuple(out.shape) == tuple(out_t.shape) and 0 in out.shape
    out.sum().backward()
    out_t.sum().backward()
    for a, b in zip(ours, theirs):
        check(a.grad.numpy(), b.grad.numpy(), F64, f"{name} empty-batch gradient")


# ---- fractional max pooling: torch's windows exactly, in each dtype ----------------------------

FRACTIONAL = [  # (dims, input shape, kernel_size, output_size or None, output_ratio or None)
    (2, (2, 3, 9, 7), (2, 3), (5, 4), None),
    (2, (3, 8, 8), 2, 7, None),
    (2, (1, 2, 11, 6), (3, 1), None, (0.6, 0.5)),
    (2, (0, 2, 7, 6), 2, (3, 3), None),
    (3, (2, 2, 7, 6, 5), (2, 3, 1), (4, 2, 4), None),
    (3, (2, 6, 5, 7), 2, None, 0.5),
]


def _fractional(F, dims):
    return F.fractional_max_pool2d if dims == 2 else F.fractional_max_pool3d


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("case", FRACTIONAL, ids=str)
def test_fractional_max_pool_takes_torchs_windows(case, dtype, rng):
    """With ``_random_samples`` given, the outputs and indices equal torch's exactly (in the run's
    dtype, in which the windows are computed), also at samples of 0 and just below 1, and for ties
    and NaN; the gradient goes where torch's goes."""
    dims, shape, kernel, size, ratio = case
    x = np.round(rng.standard_normal(shape) * 2).astype(dtype)  # ties
    x.reshape(-1)[::7] = np.nan
    batch = shape[0] if len(shape) == dims + 2 else 1
    samples = rng.random((batch + 1, shape[-dims - 1], dims)).astype(dtype)
    samples.reshape(-1)[:2] = (0.0, np.nextafter(dtype.type(1), dtype.type(0)))
    ours = dk.tensor(x, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    out, idx = _fractional(nn.functional, dims)(ours, kernel, size, ratio, True, dk.tensor(samples))
    out_t, idx_t = _fractional(torch.nn.functional, dims)(theirs, kernel, size, ratio, True, torch.tensor(samples))
    np.testing.assert_array_equal(out.detach().numpy(), out_t.detach().numpy())
    np.testing.assert_array_equal(idx.numpy(), idx_t.numpy())
    assert out.dtype == dtype and idx.dtype == np.int64
    g = rng.standard_normal(tuple(out_t.shape))
    out.backward(dk.tensor(g.astype(dtype)))
    out_t.backward(torch.tensor(g.astype(dtype)))
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-6 if dtype == F32 else 1e-15)


@pytest.mark.parametrize("dims", [2, 3])
def test_fractional_max_pool_draws_from_deepkerns_generator_and_differentiates(dims, rng):
    shape = (2, 3, 7, 6) if dims == 2 else (2, 3, 6, 5, 6)
    x = rng.standard_normal(shape)
    F = nn.functional
    dk.manual_seed(5)
    drawn = _fractional(F, dims)(dk.tensor(x), 2, output_ratio=0.5)
    dk.manual_seed(5)
    samples = dk.rand(2, 3, dims, dtype=dk.float64)
    given = _fractional(F, dims)(dk.tensor(x), 2, output_ratio=0.5, _random_samples=samples)
    np.testing.assert_array_equal(drawn.numpy(), given.numpy())
    t = dk.tensor(x, requires_grad=True)
    gradcheck(lambda v: _fractional(F, dims)(v, 2, output_ratio=0.5, _random_samples=samples), t, rng=rng)
    with_indices = getattr(F, f"fractional_max_pool{dims}d_with_indices")(dk.tensor(x), 2, 3, None, False, samples)
    np.testing.assert_array_equal(
        with_indices[0].numpy(), _fractional(F, dims)(dk.tensor(x), 2, 3, None, False, samples).numpy()
    )


def test_with_indices_aliases_return_torchs_values_and_indices(rng):
    x1, x2, x3 = (rng.standard_normal(s) for s in ((2, 3, 9), (2, 3, 7, 6), (2, 2, 5, 6, 4)))
    for name, x, args in (
        ("max_pool1d_with_indices", x1, (3, 2, 1)),
        ("max_pool2d_with_indices", x2, ((3, 2), 2, 1, 1, True)),
        ("max_pool3d_with_indices", x3, (2, (1, 2, 2))),
        ("adaptive_max_pool1d_with_indices", x1, (4,)),
        ("adaptive_max_pool2d_with_indices", x2, ((3, 4),)),
        ("adaptive_max_pool3d_with_indices", x3, ((2, 3, 3),)),
    ):
        out, idx = getattr(nn.functional, name)(dk.tensor(x), *args)
        out_t, idx_t = getattr(torch.nn.functional, name)(torch.tensor(x), *args)
        np.testing.assert_array_equal(out.numpy(), out_t.numpy(), err_msg=name)
        np.testing.assert_array_equal(idx.numpy(), idx_t.numpy(), err_msg=name)


# ---- in-place functional activations ----------------------------------------------------------

INPLACE = {  # name -> arguments after the input
    "relu_": (),
    "elu_": (0.7,),
    "leaky_relu_": (0.2,),
    "hardtanh_": (-0.5, 0.8),
    "selu_": (),
    "celu_": (2.0,),  # torch differentiates celu with float32(1 / alpha): exact for 2
    "rrelu_": (0.1, 0.3, False),
    "threshold_": (0.25, -2.0),
}


@pytest.mark.parametrize("name", sorted(INPLACE))
def test_inplace_activation_writes_the_input_as_torch(name, rng):
    args = INPLACE[name]
    x = rng.standard_normal((4, 5))
    leaf, leaf_t = dk.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    inner, inner_t = leaf * 1.0, leaf_t * 1.0
    out, out_t = getattr(nn.functional, name)(inner, *args), getattr(torch.nn.functional, name)(inner_t, *args)
    assert out is inner and out_t is inner_t
    check(inner.detach().numpy(), inner_t.detach().numpy(), F64, f"{name} value")
    g = rng.standard_normal(x.shape)
    (out * dk.tensor(g)).sum().backward()
    (out_t * torch.tensor(g)).sum().backward()
    check(leaf.grad.numpy(), leaf_t.grad.numpy(), F64, f"{name} gradient")
    plain = dk.tensor(x.copy())
    view = plain[1:]
    getattr(nn.functional, name)(plain, *args)
    check(view.numpy(), inner_t.detach().numpy()[1:], F64, f"{name} through a view")
    for lib, F in ((dk, nn.functional), (torch, torch.nn.functional)):
        with pytest.raises(RuntimeError, match="leaf"):
            getattr(F, name)(lib.tensor(x, requires_grad=True), *args)


def test_rrelu_in_place_in_training_draws_slopes_in_range():
    x = np.linspace(-3, 3, 41)
    t = dk.tensor(x.copy())
    assert nn.functional.rrelu_(t, 0.1, 0.4, True) is t
    ratio = t.numpy()[x < 0] / x[x < 0]
    assert (ratio >= 0.1).all() and (ratio <= 0.4).all() and len(np.unique(ratio)) > 5
    np.testing.assert_array_equal(t.numpy()[x >= 0], x[x >= 0])


# ---- layers -----------------------------------------------------------------------------------

S2 = np.random.default_rng(20).random((2, 3, 2))  # FractionalMaxPool2d's samples
S3 = np.random.default_rng(30).random((1, 2, 3))  # FractionalMaxPool3d's


def _floats(*shapes):
    return lambda rng: [rng.standard_normal(s) for s in shapes]


# name -> (layer from a namespace (deepkern.nn or torch.nn) and its library, the inputs from a generator:
# floating arrays are differentiable inputs, integer ones pass as they are)
LAYERS = {
    "ConvTranspose3d": (
        lambda nn, lib: nn.ConvTranspose3d(4, 6, (2, 3, 2), (2, 1, 2), (1, 0, 1), (1, 0, 0), 2, True, (1, 2, 1)),
        _floats((2, 4, 3, 4, 3)),
    ),
    "ConvTranspose3d_unbatched_nobias": (
        lambda nn, lib: nn.ConvTranspose3d(3, 2, 2, bias=False),
        _floats((3, 3, 2, 4)),
    ),
    "InstanceNorm3d_tracking": (
        lambda nn, lib: nn.InstanceNorm3d(3, momentum=0.2, affine=True, track_running_stats=True),
        _floats((2, 3, 3, 4, 3)),
    ),
    "InstanceNorm3d_unbatched": (lambda nn, lib: nn.InstanceNorm3d(2), _floats((2, 3, 3, 4))),
    "LPPool3d": (lambda nn, lib: nn.LPPool3d(2, (2, 3, 2), stride=(1, 2, 1)), _floats((2, 3, 4, 5, 4))),
    "LPPool3d_ceil": (lambda nn, lib: nn.LPPool3d(4, 2, ceil_mode=True), _floats((2, 5, 3, 5))),
    "ConstantPad3d": (lambda nn, lib: nn.ConstantPad3d((1, 2, 0, 1, 2, 0), 3.5), _floats((2, 3, 2, 3, 4))),
    "ZeroPad3d": (lambda nn, lib: nn.ZeroPad3d(1), _floats((3, 2, 3, 4))),
    "ReflectionPad3d": (lambda nn, lib: nn.ReflectionPad3d((1, 0, 2, 1, 0, 2)), _floats((2, 3, 3, 4, 3))),
    "ReplicationPad3d": (lambda nn, lib: nn.ReplicationPad3d(2), _floats((2, 2, 3, 4))),
    "CircularPad1d": (lambda nn, lib: nn.CircularPad1d((2, 1)), _floats((2, 3, 4))),
    "CircularPad2d": (lambda nn, lib: nn.CircularPad2d(1), _floats((3, 4, 5))),
    "CircularPad3d": (lambda nn, lib: nn.CircularPad3d((1, 2, 1, 0, 0, 2)), _floats((2, 2, 3, 4, 3))),
    "MaxUnpool1d": (lambda nn, lib: nn.MaxUnpool1d(2), lambda rng: [rng.standard_normal((2, 3, 4)), IDX1]),
    "MaxUnpool3d": (
        lambda nn, lib: nn.MaxUnpool3d(2, 2),
        lambda rng: [rng.standard_normal((2, 3, 2, 3, 2)), IDX3_EVEN],
    ),
    "FractionalMaxPool2d": (
        lambda nn, lib: nn.FractionalMaxPool2d((2, 3), (4, 3), _random_samples=lib.tensor(S2)),
        _floats((2, 3, 7, 6)),
    ),
    "FractionalMaxPool3d_ratio": (
        lambda nn, lib: nn.FractionalMaxPool3d(2, output_ratio=0.5, _random_samples=lib.tensor(S3)),
        _floats((1, 2, 6, 6, 5)),
    ),
}


def _randomized(module, seed):
    """Parameters other than the initial ones (so that a swapped weight and bias would show)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def _as_state(module, dtype):
    return {k: v.numpy().astype(dtype) if v.is_floating_point() else v.numpy() for k, v in module.state_dict().items()}


def _steps_match(ours, theirs, make_inputs, dtype, rng, what):
    """Training, training, then eval steps: outputs, input gradients, parameter gradients and the
    state (running statistics) of ``ours`` and of ``theirs`` (float64) agree."""
    for step, training in enumerate((True, True, False)):
        ours.train(training)
        theirs.train(training)
        arrays = make_inputs(rng)
        xs = [dk.tensor(a.astype(dtype), requires_grad=True) if a.dtype.kind == "f" else dk.tensor(a) for a in arrays]
        xts = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
        out, out_t = ours(*xs), theirs(*xts)
        where = f"{what} step {step} training={training}"
        check(out.detach().numpy(), out_t.detach().numpy(), dtype, f"{where}: output", tol=_TOL[dtype])
        g = rng.standard_normal(tuple(out_t.shape))
        out.backward(dk.tensor(g.astype(dtype)))
        out_t.backward(torch.tensor(g))
        for k, (x, xt) in enumerate(zip(xs, xts)):
            if xt.requires_grad:
                check(x.grad.numpy(), xt.grad.numpy(), dtype, f"{where}: input {k} gradient", tol=10 * _TOL[dtype])
        ours_params = dict(ours.named_parameters())
        for key, p in theirs.named_parameters():
            check(
                ours_params[key].grad.numpy(), p.grad.numpy(), dtype, f"{where}: {key} gradient", tol=10 * _TOL[dtype]
            )
        ours.zero_grad()
        theirs.zero_grad()
        state = ours.state_dict()
        for key, value in theirs.state_dict().items():
            if value.dtype == torch.int64:
                assert state[key].item() == value.item(), f"{where}: {key}"
            else:
                check(state[key].numpy(), value.numpy(), dtype, f"{where}: {key}", tol=_TOL[dtype])


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_loads_torch_state_dict_and_matches_torch(name, dtype, rng):
    make, make_inputs = LAYERS[name]
    theirs = _randomized(make(torch.nn, torch), 0).double()
    ours = make(nn, dk).to(dtype)
    state = _as_state(theirs, dtype)
    assert list(ours.state_dict()) == list(state)
    assert [tuple(t.shape) for t in ours.state_dict().values()] == [v.shape for v in state.values()]
    assert ours.load_state_dict(state) == ([], [])
    assert repr(ours) == repr(theirs)
    _steps_match(ours, theirs, make_inputs, dtype, rng, name)


def test_conv_transpose3d_layer_output_size_and_initialization_as_torch(rng):
    ours, theirs = nn.ConvTranspose3d(2, 4, 3, stride=2, padding=1).double(), torch.nn.ConvTranspose3d(2, 4, 3, 2, 1)
    ours.load_state_dict(_as_state(theirs.double(), F64))
    x = rng.standard_normal((1, 2, 3, 4, 2))
    for size in ((6, 8, 4), (1, 4, 5, 7, 3)):
        out, out_t = ours(dk.tensor(x), size), theirs(torch.tensor(x), size)
        check(out.detach().numpy(), out_t.detach().numpy(), F64, f"output_size {size}")
    with raises_naming(ValueError, "ConvTranspose3d", "output_size", r"\(4, 8, 4\)"):
        ours(dk.tensor(x), (4, 8, 4))
    with pytest.raises(ValueError):
        theirs(torch.tensor(x), (4, 8, 4))
    # torch's initialization: kaiming_uniform_(a=sqrt(5)) and U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 4 * 27
    layer = nn.ConvTranspose3d(3, 4, 3, dtype=dk.float64)
    bound = 1 / np.sqrt(4 * 27)
    for p in (layer.weight, layer.bias):
        values = p.detach().numpy()
        assert np.abs(values).max() <= bound and np.abs(values).max() > 0.8 * bound and abs(values.mean()) < bound / 4


def test_max_unpool3d_layer_takes_an_output_size(rng):
    x = rng.standard_normal((2, 3, 2, 3, 2))
    ours, theirs = nn.MaxUnpool3d(2), torch.nn.MaxUnpool3d(2)
    out = ours(dk.tensor(x), dk.tensor(IDX3), (2, 3, 5, 7, 5))
    out_t = theirs(torch.tensor(x), torch.tensor(IDX3), (2, 3, 5, 7, 5))
    np.testing.assert_array_equal(out.numpy(), out_t.numpy())
    empty = ours(dk.zeros(0, 3, 2, 3, 2), dk.tensor(IDX3[:0]))
    assert tuple(empty.shape) == tuple(theirs(torch.zeros(0, 3, 2, 3, 2), torch.tensor(IDX3[:0])).shape)


@pytest.mark.parametrize("batched", [True, False])
def test_dropout3d_zeroes_whole_channels(batched):
    """Each channel all zeros or all scaled by 1 / (1 - p), about p of them zero, reproducible from
    manual_seed, the gradient through the same mask; the identity in eval mode; torch's warning
    for an input of another rank (the channels are then its first dimension)."""
    layer = nn.Dropout3d(p=0.3)
    shape = ((40, 25) if batched else (500,)) + (2, 3, 2)
    dk.manual_seed(7)
    x = dk.ones(*shape, requires_grad=True)
    y = layer(x)
    channels = y.detach().numpy().reshape(-1, 12)
    kept = channels[:, 0] != 0
    np.testing.assert_allclose(channels, np.where(kept[:, None], 1 / 0.7, 0.0) + np.zeros((1, 12)), rtol=1e-7)
    assert abs((~kept).mean() - 0.3) < 6 * np.sqrt(0.3 * 0.7 / kept.size)
    y.backward(dk.ones(*shape))
    np.testing.assert_array_equal(x.grad.numpy().reshape(-1, 12), channels)
    dk.manual_seed(7)
    np.testing.assert_array_equal(layer(dk.ones(*shape)).numpy(), y.detach().numpy())
    layer.eval()
    np.testing.assert_array_equal(layer(x).detach().numpy(), np.ones(shape))
    assert repr(layer) == repr(torch.nn.Dropout3d(p=0.3)) == "Dropout3d(p=0.3, inplace=False)"
    with pytest.warns(UserWarning, match="dropout3d"):
        out = nn.functional.dropout3d(dk.ones(30, 4, 5), 0.5)
    with pytest.warns(UserWarning, match="dropout3d"):
        torch.nn.functional.dropout3d(torch.ones(30, 4, 5), 0.5)
    rows = out.numpy().reshape(30, -1)
    assert ((rows == 0).all(axis=1) | (rows == 2).all(axis=1)).all()


# ---- reprs, attributes, errors ----------------------------------------------------------------

DEFAULTS = [
    lambda nn: nn.ConvTranspose3d(4, 6, 3, stride=2, output_padding=1, groups=2, bias=False, dilation=2),
    lambda nn: nn.ConvTranspose3d(2, 3, (1, 2, 3), padding=(0, 1, 2)),
    lambda nn: nn.InstanceNorm3d(3),
    lambda nn: nn.InstanceNorm3d(3, affine=True, track_running_stats=True, bias=False),
    lambda nn: nn.LPPool3d(2, 3),
    lambda nn: nn.LPPool3d(1.5, (1, 2, 3), (2, 1, 1), True),
    lambda nn: nn.MaxUnpool1d(2),
    lambda nn: nn.MaxUnpool3d((1, 2, 3), stride=2, padding=1),
    lambda nn: nn.FractionalMaxPool2d(2, output_size=3),
    lambda nn: nn.FractionalMaxPool3d((1, 2, 2), output_ratio=(0.5, 0.7, 0.6), return_indices=True),
    lambda nn: nn.Dropout3d(),
    lambda nn: nn.ConstantPad3d(1, 2),
    lambda nn: nn.ZeroPad3d((1, 2, 3, 4, 5, 6)),
    lambda nn: nn.ReflectionPad3d(2),
    lambda nn: nn.ReplicationPad3d((0, 1, 0, 1, 0, 1)),
    lambda nn: nn.CircularPad1d(3),
    lambda nn: nn.CircularPad2d((1, 0, 2, 3)),
    lambda nn: nn.CircularPad3d(1),
    lambda nn: nn.LazyLinear(3, bias=False),
    lambda nn: nn.LazyConv1d(4, 3, stride=2, padding=1, padding_mode="circular"),
    lambda nn: nn.LazyConv2d(4, 3, groups=2, padding=1),
    lambda nn: nn.LazyConv3d(2, (1, 2, 3), dilation=2),
    lambda nn: nn.LazyConvTranspose1d(3, 2, output_padding=1, stride=2),
    lambda nn: nn.LazyConvTranspose2d(4, 3, groups=4, bias=False),
    lambda nn: nn.LazyConvTranspose3d(4, 2, stride=2),
    lambda nn: nn.LazyBatchNorm1d(),
    lambda nn: nn.LazyBatchNorm2d(eps=1e-3, momentum=None, affine=False),
    lambda nn: nn.LazyBatchNorm3d(track_running_stats=False),
    lambda nn: nn.LazyInstanceNorm1d(),
    lambda nn: nn.LazyInstanceNorm2d(affine=False, track_running_stats=False),
    lambda nn: nn.LazyInstanceNorm3d(bias=False),
    lambda nn: nn.RNNBase("GRU", 3, 4, num_layers=2, bidirectional=True),
    lambda nn: nn.RNNBase("LSTM", 3, 5, proj_size=2, batch_first=True),
    lambda nn: nn.RNNCellBase(3, 4, True, 2),
    lambda nn: nn.RNN(3, 4, 2, bias=False),
]


def _state_entry(value):
    """A state dict entry as its repr for a placeholder, else its shape and dtype's name."""
    if "Uninitialized" in type(value).__name__:
        return repr(value)
    return tuple(value.shape), str(value.dtype).replace("torch.", "")


@pytest.mark.parametrize("make", DEFAULTS, ids=lambda make: make(torch.nn).__class__.__name__)
def test_reprs_attributes_and_state_dicts_as_torch(make):
    ours, theirs = make(nn), make(torch.nn)
    assert repr(ours) == repr(theirs)
    assert type(ours).__name__ == type(theirs).__name__
    for key, value in vars(theirs).items():
        if not key.startswith("_") and not isinstance(value, torch.Tensor):
            assert getattr(ours, key) == value, f"{type(ours).__name__}.{key}"
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)
    assert [_state_entry(v) for v in ours_state.values()] == [_state_entry(v) for v in theirs_state.values()]


def _raises(call):
    try:
        call()
    except Exception as err:  # noqa: BLE001 - the type is what is compared
        return type(err)
    return None


X5 = np.ones((1, 3, 4, 4, 4), np.float32)
# (what, call(lib, nn, F), our exception type, regexes our message holds, torch's exception type):
# torch's types where they differ are its RuntimeError for bad arguments, for which deepkern's
# 2-D siblings raise ValueError or TypeError (and those errors name the argument and the shapes).
ERRORS = [
    (
        "conv_transpose3d channels",
        lambda lib, nn, F: F.conv_transpose3d(lib.tensor(X5), lib.ones(2, 3, 3, 3, 3)),
        ValueError,
        ["conv_transpose3d", "3 channels", r"\(2, 3, 3, 3, 3\)"],
        RuntimeError,
    ),
    (
        "conv_transpose3d output_padding",
        lambda lib, nn, F: F.conv_transpose3d(
            lib.tensor(X5), lib.ones(3, 2, 3, 3, 3), output_padding=(0, 1, 0), stride=1
        ),
        ValueError,
        ["conv_transpose3d", "output_padding", r"\(0, 1, 0\)", "stride"],
        RuntimeError,
    ),
    (
        "conv_transpose3d rank",
        lambda lib, nn, F: F.conv_transpose3d(lib.ones(3, 4, 4), lib.ones(3, 2, 3, 3, 3)),
        ValueError,
        ["conv_transpose3d", "input", r"\(3, 4, 4\)"],
        RuntimeError,
    ),
    (
        "conv_transpose3d bias",
        lambda lib, nn, F: F.conv_transpose3d(lib.tensor(X5), lib.ones(3, 2, 3, 3, 3), lib.ones(3)),
        ValueError,
        ["conv_transpose3d", "bias", r"\(2,\)", r"\(3,\)"],
        RuntimeError,
    ),
    (
        "conv_transpose3d too small",
        lambda lib, nn, F: F.conv_transpose3d(lib.tensor(X5), lib.ones(3, 2, 3, 3, 3), padding=5),
        ValueError,
        ["conv_transpose3d", "output size", "padding"],
        RuntimeError,
    ),
    (
        "ConvTranspose3d groups",
        lambda lib, nn, F: nn.ConvTranspose3d(4, 6, 3, groups=4),
        ValueError,
        ["ConvTranspose3d", "groups=4", "out_channels=6"],
        ValueError,
    ),
    (
        "ConvTranspose3d padding_mode",
        lambda lib, nn, F: nn.ConvTranspose3d(4, 6, 3, padding_mode="reflect"),
        ValueError,
        ["ConvTranspose3d", "padding_mode", "zeros"],
        ValueError,
    ),
    (
        "max_unpool3d index",
        lambda lib, nn, F: F.max_unpool3d(lib.ones(2, 3, 2, 3, 2), lib.tensor(IDX3 * 9), 2),
        RuntimeError,
        ["max_unpool3d", "invalid max index", "4x6x4"],
        RuntimeError,
    ),
    (
        "max_unpool1d negative index",
        lambda lib, nn, F: F.max_unpool1d(lib.ones(2, 3, 4), lib.tensor(-IDX1 - 1), 2),
        RuntimeError,
        ["max_unpool1d", "invalid max index", "-"],
        RuntimeError,
    ),
    (
        "max_unpool3d output_size length",
        lambda lib, nn, F: F.max_unpool3d(lib.ones(2, 3, 2, 3, 2), lib.tensor(IDX3), 2, output_size=(4, 6)),
        ValueError,
        ["max_unpool3d", "output_size", "3 or 5", "2"],
        ValueError,
    ),
    (
        "max_unpool1d output_size range",
        lambda lib, nn, F: F.max_unpool1d(lib.ones(2, 3, 4), lib.tensor(IDX1), 2, output_size=(10,)),
        ValueError,
        ["max_unpool1d", "output_size", "between 6 and 10"],
        ValueError,
    ),
    (
        "max_unpool3d indices dtype",
        lambda lib, nn, F: F.max_unpool3d(lib.ones(2, 3, 2, 3, 2), lib.tensor(IDX3.astype(np.int32)), 2),
        TypeError,
        ["max_unpool3d", "int64"],
        RuntimeError,
    ),
    (
        "max_unpool3d rank",
        lambda lib, nn, F: F.max_unpool3d(lib.ones(3, 2, 3), lib.tensor(IDX3[0, 0]), 2),
        ValueError,
        ["max_unpool3d", "4-D or 5-D", "3 dimensions"],
        RuntimeError,
    ),
    (
        "fractional no size",
        lambda lib, nn, F: F.fractional_max_pool2d(lib.ones(1, 2, 5, 5), 2),
        ValueError,
        ["fractional_max_pool2d", "output_size", "output_ratio"],
        ValueError,
    ),
    (
        "fractional pool too large",
        lambda lib, nn, F: F.fractional_max_pool3d(lib.ones(1, 2, 5, 5, 5), 2, (4, 3, 3)),
        ValueError,
        ["fractional_max_pool3d", "time 2", "time 5"],
        RuntimeError,
    ),
    (
        "fractional samples shape",
        lambda lib, nn, F: F.fractional_max_pool2d(
            lib.ones(2, 3, 5, 5, dtype=lib.float64), 2, 3, _random_samples=lib.ones(2, 2, 2, dtype=lib.float64)
        ),
        ValueError,
        ["fractional_max_pool2d", "_random_samples", r"\(2, 2, 2\)"],
        RuntimeError,
    ),
    (
        "fractional samples dtype",
        lambda lib, nn, F: F.fractional_max_pool2d(
            lib.ones(2, 3, 5, 5), 2, 3, _random_samples=lib.ones(2, 3, 2, dtype=lib.float64)
        ),
        TypeError,
        ["fractional_max_pool2d", "_random_samples", "float64"],
        RuntimeError,
    ),
    (
        "FractionalMaxPool2d ratio",
        lambda lib, nn, F: nn.FractionalMaxPool2d(2, output_ratio=1.5),
        ValueError,
        ["FractionalMaxPool2d", "output_ratio", "1.5"],
        ValueError,
    ),
    (
        "FractionalMaxPool3d both",
        lambda lib, nn, F: nn.FractionalMaxPool3d(2, 3, 0.5),
        ValueError,
        ["only one of output_size and output_ratio"],
        ValueError,
    ),
    (
        "CircularPad1d rank",
        lambda lib, nn, F: nn.CircularPad1d(1)(lib.ones(4)),
        ValueError,
        ["CircularPad1d", "circular", r"\(4,\)"],
        ValueError,
    ),
    (
        "ReflectionPad3d too wide",
        lambda lib, nn, F: nn.ReflectionPad3d(4)(lib.tensor(X5)),
        ValueError,
        ["ReflectionPad3d", "reflect", "size 4"],
        RuntimeError,
    ),
    (
        "circular wraps twice",
        lambda lib, nn, F: F.pad(lib.ones(1, 2, 3), (4, 0), "circular"),
        ValueError,
        ["pad", "circular", "more than once"],
        RuntimeError,
    ),
    ("dropout3d p", lambda lib, nn, F: F.dropout3d(lib.tensor(X5), 1.5), ValueError, ["dropout", "1.5"], ValueError),
    (
        "InstanceNorm3d rank",
        lambda lib, nn, F: nn.InstanceNorm3d(3)(lib.ones(3, 4, 4)),
        ValueError,
        ["InstanceNorm3d", "4D or 5D", "3D"],
        ValueError,
    ),
    (
        "LazyConv2d groups",
        lambda lib, nn, F: nn.LazyConv2d(4, 3, groups=2)(lib.ones(1, 3, 5, 5)),
        ValueError,
        ["LazyConv2d", "in_channels=3", "groups=2"],
        ValueError,
    ),
    (
        "LazyConv2d rank",
        lambda lib, nn, F: nn.LazyConv2d(4, 3)(lib.ones(3, 5)),
        ValueError,
        ["LazyConv2d", r"\(3, 5\)", r"\(N, C, H, W\)"],
        RuntimeError,
    ),
    (
        "uninitialized shape",
        lambda lib, nn, F: nn.LazyLinear(3).weight.shape,
        RuntimeError,
        ["uninitialized parameter"],
        RuntimeError,
    ),
    ("RNNBase mode", lambda lib, nn, F: nn.RNNBase("FOO", 3, 4), ValueError, ["mode", "FOO"], ValueError),
    (
        "Buffer over an attribute",
        lambda lib, nn, F: _buffer_over_attribute(lib, nn),
        KeyError,
        ["x", "already exists"],
        KeyError,
    ),
]


def _buffer_over_attribute(lib, nn):
    module = nn.Module()
    module.x = 1
    module.x = nn.Buffer(lib.ones(2))


@pytest.mark.parametrize("case", ERRORS, ids=lambda case: case[0])
def test_errors_name_the_arguments(case):
    _, call, exc, needles, torch_exc = case
    with raises_naming(exc, *needles):
        call(dk, nn, nn.functional)
    assert _raises(lambda: call(torch, torch.nn, torch.nn.functional)) is torch_exc


# ---- lazy modules -----------------------------------------------------------------------------

# name -> (lazy layer from a namespace, the regular layer it becomes for an input of that shape, shape)
LAZY = {
    "LazyLinear": (lambda nn: nn.LazyLinear(3), lambda nn: nn.Linear(5, 3), (4, 2, 5)),
    "LazyConv1d": (lambda nn: nn.LazyConv1d(4, 3, padding=1), lambda nn: nn.Conv1d(3, 4, 3, padding=1), (3, 7)),
    "LazyConv2d": (
        lambda nn: nn.LazyConv2d(4, 3, groups=2, bias=False),
        lambda nn: nn.Conv2d(6, 4, 3, groups=2, bias=False),
        (2, 6, 5, 4),
    ),
    "LazyConv3d": (lambda nn: nn.LazyConv3d(2, (1, 2, 2)), lambda nn: nn.Conv3d(3, 2, (1, 2, 2)), (2, 3, 2, 3, 3)),
    "LazyConvTranspose1d": (
        lambda nn: nn.LazyConvTranspose1d(2, 3, stride=2, output_padding=1),
        lambda nn: nn.ConvTranspose1d(3, 2, 3, stride=2, output_padding=1),
        (2, 3, 4),
    ),
    "LazyConvTranspose2d": (
        lambda nn: nn.LazyConvTranspose2d(4, 2, groups=2),
        lambda nn: nn.ConvTranspose2d(2, 4, 2, groups=2),
        (2, 2, 3, 3),
    ),
    "LazyConvTranspose3d": (
        lambda nn: nn.LazyConvTranspose3d(3, 2, stride=2),
        lambda nn: nn.ConvTranspose3d(2, 3, 2, stride=2),
        (2, 2, 2, 3, 2),
    ),
    "LazyBatchNorm1d": (lambda nn: nn.LazyBatchNorm1d(), lambda nn: nn.BatchNorm1d(3), (5, 3)),
    "LazyBatchNorm2d": (
        lambda nn: nn.LazyBatchNorm2d(momentum=None),
        lambda nn: nn.BatchNorm2d(3, momentum=None),
        (2, 3, 3, 2),
    ),
    "LazyBatchNorm3d": (
        lambda nn: nn.LazyBatchNorm3d(affine=False),
        lambda nn: nn.BatchNorm3d(2, affine=False),
        (2, 2, 2, 3, 2),
    ),
    "LazyInstanceNorm1d": (
        lambda nn: nn.LazyInstanceNorm1d(),
        lambda nn: nn.InstanceNorm1d(3, affine=True, track_running_stats=True),
        (2, 3, 6),
    ),
    "LazyInstanceNorm2d": (
        lambda nn: nn.LazyInstanceNorm2d(bias=False),
        lambda nn: nn.InstanceNorm2d(2, affine=True, bias=False, track_running_stats=True),
        (3, 2, 3, 4),
    ),
    "LazyInstanceNorm3d": (
        lambda nn: nn.LazyInstanceNorm3d(affine=False, track_running_stats=False),
        lambda nn: nn.InstanceNorm3d(2),
        (2, 2, 3, 2, 3),
    ),
}


@pytest.mark.parametrize("name", sorted(LAZY))
def test_lazy_layer_becomes_the_regular_layer_at_its_first_call(name, rng):
    """Before the first call: placeholders (parameters() yields them; their shape is an error); the
    first call infers the size from the input, initializes the parameters as the regular layer does
    (the same values from the same seed), and the module becomes that layer: torch's class, repr,
    state dict; then it computes as torch's (loaded from torch's state dict)."""
    make_lazy, make_regular, shape = LAZY[name]
    ours, theirs = make_lazy(nn).double(), make_lazy(torch.nn).double()
    placeholders = list(ours.parameters())
    assert all(isinstance(p, nn.UninitializedParameter) and isinstance(p, nn.Parameter) for p in placeholders)
    assert all(p.dtype == np.float64 for p in placeholders)  # they follow .double()
    for p in placeholders:
        with raises_naming(RuntimeError, "uninitialized"):
            p.shape  # noqa: B018 - the access is the error
    x = rng.standard_normal(shape)
    dk.manual_seed(3)
    ours(dk.tensor(x))
    theirs(torch.tensor(x))
    assert type(ours) is type(make_regular(nn)) and type(theirs) is type(make_regular(torch.nn))
    assert repr(ours) == repr(make_regular(torch.nn))
    if placeholders or ours._buffers.get("running_mean") is not None:
        assert repr(theirs) == repr(ours)
    else:  # nothing to materialize: torch's lazy layer keeps num_features 0, ours takes the input's
        assert repr(theirs) == repr(ours).replace(f"({shape[1]},", "(0,")
    assert [p is q for p, q in zip(ours.parameters(), placeholders)] == [True] * len(placeholders)
    assert [(k, _state_entry(v)) for k, v in ours.state_dict().items()] == [
        (k, _state_entry(v)) for k, v in theirs.state_dict().items()
    ]
    dk.manual_seed(3)
    dk.set_default_dtype(dk.float64)  # the regular layer draws its values in float64 too
    try:
        regular = make_regular(nn)
    finally:
        dk.set_default_dtype(dk.float32)
    regular(dk.tensor(x))
    for key, value in regular.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[key].numpy(), value.numpy(), err_msg=key)
    _randomized(theirs, 1)
    ours.load_state_dict(_as_state(theirs, F64))
    _steps_match(ours, theirs, _floats(shape), F64, rng, name)


@pytest.mark.parametrize("name", ["LazyLinear", "LazyConvTranspose3d", "LazyBatchNorm1d", "LazyInstanceNorm2d"])
def test_lazy_layer_loads_a_checkpoint_before_its_first_call(name, rng):
    """The checkpoint's shapes are taken (the module stays lazy until its call, which keeps the loaded
    values and sets the size); an uninitialized checkpoint into an uninitialized module loads nothing."""
    make_lazy, make_regular, shape = LAZY[name]
    theirs = _randomized(make_regular(torch.nn), 2).double()
    ours = make_lazy(nn).double()
    assert ours.load_state_dict(_as_state(theirs, F64)) == ([], [])
    assert type(ours) is type(make_lazy(nn)) and not ours.has_uninitialized_params()
    fresh = make_lazy(nn)
    assert fresh.load_state_dict(make_lazy(nn).state_dict()) == ([], []) and fresh.has_uninitialized_params()
    _steps_match(ours, theirs, _floats(shape), F64, rng, name)
    assert repr(ours) == repr(theirs)


def test_lazy_layer_checks_a_loaded_checkpoint_against_its_input():
    ours = nn.LazyLinear(3)
    ours.load_state_dict(nn.Linear(4, 3).state_dict())
    with raises_naming(ValueError, "LazyLinear", r"\(2, 5\)", "weight", r"\(3, 5\)", r"\(3, 4\)"):
        ours(dk.ones(2, 5))
    partial = nn.LazyLinear(3)
    assert partial.load_state_dict({"weight": np.ones((3, 4), np.float32)}, strict=False) == (["bias"], [])
    with raises_naming(RuntimeError, "LazyLinear", "weight", "bias", "load all of them or none"):
        partial(dk.ones(2, 4))
    with raises_naming(ValueError, "load_state_dict for Linear", "weight", r"\(3, 4\)", r"\(0,\)"):
        nn.Linear(4, 3).load_state_dict(nn.LazyLinear(3).state_dict())


def test_lazy_module_follows_to_and_an_optimizer_built_before_its_first_call(rng):
    """As in torch: the optimizer holds the placeholders, which become the parameters it steps."""
    ours, theirs = nn.LazyLinear(3).double(), torch.nn.LazyLinear(3).double()
    optimizer = dk.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    optimizer_t = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    x = rng.standard_normal((6, 4))
    for step in range(3):
        out, out_t = ours(dk.tensor(x)), theirs(torch.tensor(x))
        if step == 0:
            with dk.no_grad():
                ours.load_state_dict(_as_state(theirs, F64))
            out = ours(dk.tensor(x))
        (out * out).sum().backward()
        (out_t * out_t).sum().backward()
        optimizer.step()
        optimizer_t.step()
        optimizer.zero_grad()
        optimizer_t.zero_grad()
    for key, value in theirs.state_dict().items():
        check(ours.state_dict()[key].numpy(), value.numpy(), F64, key)
    assert ours.weight.dtype == np.float64


def test_lazy_modules_copy_pickle_and_run_in_a_sequential_under_inference(rng):
    """A copy of an uninitialized module is uninitialized; a Sequential's conv + batch norm + ReLU
    are fused once the lazy conv has become a Conv2d, and the cached inference program follows
    later changes of the weights."""
    lazy = nn.Sequential(nn.LazyConv2d(4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.LazyConv2d(2, 1))
    for twin in (copy.deepcopy(lazy), pickle.loads(pickle.dumps(lazy))):
        assert twin[0].has_uninitialized_params() and repr(twin) == repr(lazy)
        twin(dk.ones(1, 3, 4, 4))
        assert type(twin[0]) is nn.Conv2d and lazy[0].has_uninitialized_params()
    theirs = torch.nn.Sequential(
        torch.nn.LazyConv2d(4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.LazyConv2d(2, 1)
    )
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    theirs(torch.tensor(x))
    theirs.eval()
    lazy.eval()
    with dk.no_grad():
        lazy(dk.tensor(x))
        assert [len(members) for members, _, _ in lazy._inference_cache()[1]] == [3, 1]
        for seed in (4, 5):
            _randomized(theirs, seed)
            with torch.no_grad():
                theirs[1].running_var.uniform_(0.5, 2.0)
            lazy.load_state_dict(_as_state(theirs, F32))
            for _ in range(2):  # the second call runs the kept program
                check(
                    lazy(dk.tensor(x)).numpy(), theirs(torch.tensor(x)).detach().double().numpy(), F32, f"seed {seed}"
                )


# ---- Buffer, RNNBase, RNNCellBase ---------------------------------------------------------------


def test_buffer_registers_as_torchs(rng):
    def build(lib, nn):
        module = nn.Module()
        module.a = nn.Buffer(lib.ones(2))
        module.b = nn.Buffer(lib.zeros(3), persistent=False)
        module.c = lib.ones(1)  # a plain attribute
        module.register_buffer("d", nn.Buffer(lib.ones(4), persistent=False))  # register_buffer's flag rules
        module.a = lib.full((2,), 3.0)  # still a buffer
        return module

    ours, theirs = build(dk, nn), build(torch, torch.nn)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["a", "d"]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()] == ["a", "b", "d"]
    assert isinstance(ours.b, nn.Buffer) and isinstance(theirs.b, torch.nn.Buffer)
    assert not isinstance(dk.ones(1), nn.Buffer) and not isinstance(torch.ones(1), torch.nn.Buffer)
    assert ours.a.numpy().tolist() == [3.0, 3.0] and ours.c.numpy().tolist() == [1.0]
    assert ours.double().b.dtype == np.float64
    grads = nn.Buffer(dk.ones(2, requires_grad=True))
    assert grads.requires_grad == torch.nn.Buffer(torch.ones(2, requires_grad=True)).requires_grad
    assert tuple(nn.Buffer().shape) == tuple(torch.nn.Buffer().shape) == (0,)
    with raises_naming(TypeError, "Buffer", "Tensor", "list"):
        nn.Buffer([1.0])


def test_recurrent_layers_are_rnn_base_and_cells_rnn_cell_base():
    for ours, theirs, base in (
        (nn.LSTM(3, 4), torch.nn.LSTM(3, 4), "RNNBase"),
        (nn.GRU(3, 4), torch.nn.GRU(3, 4), "RNNBase"),
        (nn.RNN(3, 4, nonlinearity="relu"), torch.nn.RNN(3, 4, nonlinearity="relu"), "RNNBase"),
        (nn.LSTMCell(3, 4), torch.nn.LSTMCell(3, 4), "RNNCellBase"),
        (nn.GRUCell(3, 4), torch.nn.GRUCell(3, 4), "RNNCellBase"),
        (nn.RNNCell(3, 4), torch.nn.RNNCell(3, 4), "RNNCellBase"),
    ):
        assert isinstance(ours, getattr(nn, base)) and isinstance(theirs, getattr(torch.nn, base))
        assert getattr(ours, "mode", None) == getattr(theirs, "mode", None)
