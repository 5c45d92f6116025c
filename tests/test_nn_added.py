"""The layers and functions added to deepkern.nn beside PyTorch's: InstanceNorm1d/2d, PixelShuffle
and PixelUnshuffle, SELU, CELU, GLU, Softmin, Softshrink, Hardshrink, Threshold, CosineSimilarity,
PairwiseDistance, AdaptiveMaxPool1d/2d, AdaptiveAvgPool1d, RMSNorm, ParameterDict and
nn.utils.parameters_to_vector / vector_to_parameters. Each against torch (float64 autograd as the
reference for float32 and float64 runs, contiguous and strided inputs, empty batches), by finite
differences, through torch's state dicts and reprs, and on bad arguments (errors naming them)."""

from __future__ import annotations

import warnings

import deepkern as dk
import numpy as np
import pytest
from deepkern import nn

from checks import check, gradcheck, raises_naming

torch = pytest.importorskip("torch")

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
#: ours (float32 or float64) against torch's float64 result
_TOL = {F32: 3e-5, F64: 1e-10}


def _torch(a):
    return torch.tensor(a)


# name -> (fn(F, T, *inputs), input shapes, shapes with an empty batch where torch allows one (or None)).
# ``F`` is deepkern.nn.functional or torch.nn.functional, ``T`` turns a NumPy array into that library's
# tensor: the same code runs on both.
CASES = {
    "selu": (lambda F, T, x: F.selu(x), [(3, 7)], [(0, 7)]),
    "celu": (lambda F, T, x: F.celu(x, alpha=0.5), [(3, 7)], [(0, 7)]),
    "celu_default": (lambda F, T, x: F.celu(x), [(5,)], None),
    "glu": (lambda F, T, x: F.glu(x, 1), [(3, 6, 5)], [(0, 6, 5)]),
    "glu_last": (lambda F, T, x: F.glu(x), [(3, 5, 4)], None),
    "softmin": (lambda F, T, x: F.softmin(x, dim=1), [(3, 5, 2)], [(0, 5, 2)]),
    "softmin_dtype": (lambda F, T, x: F.softmin(x, -1, dtype=x.dtype), [(3, 5)], None),
    "softshrink": (lambda F, T, x: F.softshrink(x, 0.3), [(4, 7)], [(0, 7)]),
    "hardshrink": (lambda F, T, x: F.hardshrink(x, 0.7), [(4, 7)], [(0, 7)]),
    "hardshrink_default": (lambda F, T, x: F.hardshrink(x), [(9,)], None),
    "threshold": (lambda F, T, x: F.threshold(x, 0.2, -1.5), [(4, 7)], [(0, 7)]),
    # torch's pixel (un)shuffle mishandle an empty batch (backward error, unshuffled shape): see the layout test
    "pixel_shuffle": (lambda F, T, x: F.pixel_shuffle(x, 2), [(2, 12, 3, 5)], None),
    "pixel_shuffle_5d": (lambda F, T, x: F.pixel_shuffle(x, 3), [(2, 1, 9, 2, 3)], None),
    "pixel_shuffle_3d": (lambda F, T, x: F.pixel_shuffle(x, 2), [(8, 3, 1)], None),
    "pixel_unshuffle": (lambda F, T, x: F.pixel_unshuffle(x, 2), [(2, 3, 4, 6)], None),
    "pixel_unshuffle_3d": (lambda F, T, x: F.pixel_unshuffle(x, 3), [(1, 3, 9)], None),
    "instance_norm": (lambda F, T, x: F.instance_norm(x), [(3, 4, 5)], [(0, 4, 5)]),
    "instance_norm_affine_2d": (
        lambda F, T, x, w, b: F.instance_norm(x, weight=w, bias=b, eps=1e-3),
        [(2, 3, 4, 5), (3,), (3,)],
        None,  # torch fails on an empty batch with a weight (ours gives the empty output)
    ),
    "instance_norm_running_stats": (
        lambda F, T, x, w, b: F.instance_norm(
            x, T(np.linspace(-1, 1, 3)), T(np.linspace(0.5, 2, 3)), w, b, use_input_stats=False
        ),
        [(2, 3, 7), (3,), (3,)],
        None,
    ),
    "rms_norm": (lambda F, T, x, w: F.rms_norm(x, (4, 5), w), [(3, 4, 5), (4, 5)], [(0, 4, 5), (4, 5)]),
    "rms_norm_eps": (lambda F, T, x: F.rms_norm(x, [5], eps=0.1), [(3, 2, 5)], None),
    "cosine_similarity": (lambda F, T, x, y: F.cosine_similarity(x, y, dim=-1), [(3, 5), (3, 5)], None),
    "pairwise_distance": (lambda F, T, x, y: F.pairwise_distance(x, y, 3.0), [(3, 5), (3, 5)], [(0, 5), (0, 5)]),
    "adaptive_max_pool2d": (lambda F, T, x: F.adaptive_max_pool2d(x, (3, None)), [(2, 3, 7, 5)], [(0, 3, 7, 5)]),
    "adaptive_max_pool2d_upsampling": (lambda F, T, x: F.adaptive_max_pool2d(x, (7, 4)), [(3, 5, 3)], None),
    "adaptive_max_pool2d_indices": (
        lambda F, T, x: F.adaptive_max_pool2d(x, 4, return_indices=True)[0],
        [(2, 2, 9, 6)],
        None,
    ),
    "adaptive_max_pool1d": (lambda F, T, x: F.adaptive_max_pool1d(x, 4), [(2, 3, 11)], [(0, 3, 11)]),
    "adaptive_max_pool1d_unbatched": (lambda F, T, x: F.adaptive_max_pool1d(x, (3,)), [(3, 7)], None),
    "adaptive_avg_pool1d": (lambda F, T, x: F.adaptive_avg_pool1d(x, 4), [(2, 3, 11)], [(0, 3, 11)]),
    "adaptive_avg_pool1d_unbatched": (lambda F, T, x: F.adaptive_avg_pool1d(x, 5), [(3, 7)], None),
}


def _strided(base):
    """A Tensor view of ``base`` (a leaf) with every other element of its last axis: strided."""
    return base[..., ::2]


def _run_ours(name, arrays, dtype, strided=False):
    """The case on deepkern Tensors of ``dtype``: (output, leaves, gradient of each input from the leaves)."""
    fn = CASES[name][0]
    leaves, inputs = [], []
    for k, a in enumerate(arrays):
        if strided and k == 0:  # the first input through a strided view
            wide = np.repeat(a.astype(dtype), 2, axis=-1)
            leaf = dk.tensor(wide, requires_grad=True)
            x = _strided(leaf)
            assert not x.is_contiguous()
        else:
            leaf = dk.tensor(a.astype(dtype), requires_grad=True)
            x = leaf
        leaves.append(leaf)
        inputs.append(x)
    out = fn(dk.nn.functional, lambda v: dk.tensor(v.astype(dtype)), *inputs)
    return out, leaves


def _grad_of(leaf, strided):
    g = leaf.grad.numpy()
    return g[..., ::2] if strided else g


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("name", sorted(CASES))
def test_function_matches_torch(name, dtype, layout, rng):
    fn, shapes, _ = CASES[name]
    arrays = [rng.standard_normal(s) for s in shapes]
    strided = layout == "strided"
    out, leaves = _run_ours(name, arrays, dtype, strided)
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out_t = fn(torch.nn.functional, _torch, *theirs)
    check(out.detach().numpy(), out_t.detach().numpy(), dtype, f"{name} forward", tol=_TOL[dtype])
    g = rng.standard_normal(tuple(out_t.shape))
    out.backward(dk.tensor(g.astype(dtype)))
    out_t.backward(torch.tensor(g))
    for k, (leaf, t) in enumerate(zip(leaves, theirs)):
        what = f"{name} gradient of input {k}"
        check(_grad_of(leaf, strided and k == 0), t.grad.numpy(), dtype, what, tol=10 * _TOL[dtype])
        if strided and k == 0:  # the skipped elements get none
            assert not leaf.grad.numpy()[..., 1::2].any(), what


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_by_finite_differences(name, rng):
    fn, shapes, _ = CASES[name]
    inputs = [dk.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes]
    gradcheck(lambda *xs: fn(dk.nn.functional, dk.tensor, *xs), *inputs, rng=rng)


@pytest.mark.parametrize("name", sorted(n for n in CASES if CASES[n][2] is not None))
def test_empty_batch_as_torch(name, rng):
    fn, _, shapes = CASES[name]
    arrays = [rng.standard_normal(s) for s in shapes]
    ours = [dk.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, out_t = fn(dk.nn.functional, dk.tensor, *ours), fn(torch.nn.functional, _torch, *theirs)
    assert tuple(out.shape) == tuple(out_t.shape) and 0 in out.shape
    out.sum().backward()
    out_t.sum().backward()
    for a, b in zip(ours, theirs):
        check(a.grad.numpy(), b.grad.numpy(), F64, f"{name} empty-batch gradient")


# ---- layers ------------------------------------------------------------------------------------

# name -> (layer from a module namespace (deepkern.nn or torch.nn), input shapes (one per input))
LAYERS = {
    "InstanceNorm1d": (lambda nn: nn.InstanceNorm1d(3), [(2, 3, 7)]),
    "InstanceNorm1d_affine_tracking": (
        lambda nn: nn.InstanceNorm1d(3, eps=1e-3, momentum=0.3, affine=True, track_running_stats=True),
        [(4, 3, 5)],
    ),
    "InstanceNorm1d_unbatched_tracking": (lambda nn: nn.InstanceNorm1d(3, track_running_stats=True), [(3, 6)]),
    "InstanceNorm2d_affine": (lambda nn: nn.InstanceNorm2d(3, affine=True), [(2, 3, 4, 5)]),
    "InstanceNorm2d_tracking_unbatched": (
        lambda nn: nn.InstanceNorm2d(2, affine=True, track_running_stats=True),
        [(2, 3, 5)],
    ),
    "InstanceNorm2d_momentum_none": (
        lambda nn: nn.InstanceNorm2d(2, momentum=None, track_running_stats=True),
        [(3, 2, 3, 3)],
    ),
    "InstanceNorm2d_nobias": (lambda nn: nn.InstanceNorm2d(2, affine=True, bias=False), [(3, 2, 3, 3)]),
    "PixelShuffle": (lambda nn: nn.PixelShuffle(3), [(2, 18, 2, 3)]),
    "PixelUnshuffle": (lambda nn: nn.PixelUnshuffle(2), [(2, 3, 4, 6)]),
    "SELU": (lambda nn: nn.SELU(), [(3, 5)]),
    "SELU_inplace": (lambda nn: nn.SELU(inplace=True), [(3, 5)]),
    "CELU": (lambda nn: nn.CELU(0.5, inplace=True), [(3, 5)]),
    "GLU": (lambda nn: nn.GLU(dim=0), [(4, 5)]),
    "Softmin": (lambda nn: nn.Softmin(dim=-1), [(3, 5)]),
    "Softshrink": (lambda nn: nn.Softshrink(0.25), [(3, 5)]),
    "Hardshrink": (lambda nn: nn.Hardshrink(), [(3, 5)]),
    "Threshold": (lambda nn: nn.Threshold(0.1, 20.0), [(3, 5)]),
    "Threshold_inplace": (lambda nn: nn.Threshold(-0.1, 2, True), [(3, 5)]),
    "CosineSimilarity": (lambda nn: nn.CosineSimilarity(dim=0, eps=1e-6), [(4, 3), (4, 3)]),
    "PairwiseDistance": (lambda nn: nn.PairwiseDistance(p=1.0, eps=1e-4, keepdim=True), [(4, 3), (4, 3)]),
    "AdaptiveMaxPool2d": (lambda nn: nn.AdaptiveMaxPool2d((None, 3)), [(2, 3, 5, 7)]),
    "AdaptiveMaxPool2d_unbatched": (lambda nn: nn.AdaptiveMaxPool2d(4), [(3, 9, 7)]),
    "AdaptiveMaxPool1d": (lambda nn: nn.AdaptiveMaxPool1d(5), [(2, 3, 13)]),
    "AdaptiveAvgPool1d": (lambda nn: nn.AdaptiveAvgPool1d((3,)), [(2, 3, 8)]),
    "RMSNorm": (lambda nn: nn.RMSNorm([4, 3]), [(2, 5, 4, 3)]),
    "RMSNorm_int_eps": (lambda nn: nn.RMSNorm(3, eps=1e-3), [(5, 3)]),
    "RMSNorm_no_affine": (lambda nn: nn.RMSNorm((5,), elementwise_affine=False), [(2, 5)]),
}


def _randomized(module, seed):
    """Parameters other than the default ones and ones (so a swapped weight and bias would show)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_loads_torch_state_dict_and_matches_torch(name, dtype, rng):
    make, shapes = LAYERS[name]
    theirs = _randomized(make(torch.nn), 0).double()  # the float64 reference
    ours = make(nn).to(dtype)
    state = {k: v.numpy().astype(dtype) if v.is_floating_point() else v.numpy() for k, v in theirs.state_dict().items()}
    assert list(ours.state_dict()) == list(state)
    assert ours.load_state_dict(state) == ([], [])
    assert repr(ours) == repr(theirs)
    for step, training in enumerate((True, True, False)):
        ours.train(training)
        theirs.train(training)
        arrays = [rng.standard_normal(s) for s in shapes]
        xs = [dk.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
        xts = [torch.tensor(a, requires_grad=True) for a in arrays]
        out, out_t = ours(*xs), theirs(*[xt.clone() for xt in xts])  # torch's inplace layers need a non-leaf
        what = f"{name} step {step} training={training}"
        check(out.detach().numpy(), out_t.detach().numpy(), dtype, f"{what}: output", tol=_TOL[dtype])
        g = rng.standard_normal(tuple(out_t.shape))
        out.backward(dk.tensor(g.astype(dtype)))
        out_t.backward(torch.tensor(g))
        for k, (x, xt) in enumerate(zip(xs, xts)):
            check(x.grad.numpy(), xt.grad.numpy(), dtype, f"{what}: input {k} gradient", tol=10 * _TOL[dtype])
        ours_params = dict(ours.named_parameters())
        for key, p in theirs.named_parameters():
            got = ours_params[key].grad.numpy()
            check(got, p.grad.numpy(), dtype, f"{what}: gradient of {key}", tol=10 * _TOL[dtype])
        ours.zero_grad()
        theirs.zero_grad()
        for key, value in theirs.state_dict().items():  # running statistics, num_batches_tracked
            got = ours.state_dict()[key].numpy()
            if value.dtype == torch.int64:
                assert got.dtype == np.int64 and got == value.item(), f"{what}: {key}"
            else:
                check(got, value.numpy(), dtype, f"{what}: {key}", tol=_TOL[dtype])


PARAMETER_LAYERS = {
    "InstanceNorm1d": (lambda: nn.InstanceNorm1d(3, affine=True, track_running_stats=True), [(2, 3, 5)]),
    "InstanceNorm2d_unbatched": (lambda: nn.InstanceNorm2d(2, affine=True), [(2, 3, 3)]),
    "RMSNorm": (lambda: nn.RMSNorm((2, 3)), [(3, 2, 3)]),
    "PairwiseDistance": (lambda: nn.PairwiseDistance(p=3.0), [(3, 4), (3, 4)]),
}


@pytest.mark.parametrize("name", sorted(PARAMETER_LAYERS))
def test_layer_gradients_by_finite_differences(name, rng):
    make, shapes = PARAMETER_LAYERS[name]
    layer = make().double()
    with dk.no_grad():
        for p in layer.parameters():
            p.copy_(dk.tensor(rng.standard_normal(p.shape)))
    xs = [dk.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes]
    gradcheck(lambda *args: layer(*args[: len(shapes)]), *xs, *layer.parameters(), rng=rng)


def test_layer_defaults_follow_torch():
    for ours, theirs in (
        (nn.InstanceNorm1d(4), torch.nn.InstanceNorm1d(4)),
        (nn.InstanceNorm2d(4), torch.nn.InstanceNorm2d(4)),
        (nn.RMSNorm(3), torch.nn.RMSNorm(3)),
        (nn.CELU(), torch.nn.CELU()),
        (nn.GLU(), torch.nn.GLU()),
        (nn.Softmin(), torch.nn.Softmin()),
        (nn.Softshrink(), torch.nn.Softshrink()),
        (nn.Hardshrink(), torch.nn.Hardshrink()),
        (nn.SELU(), torch.nn.SELU()),
        (nn.CosineSimilarity(), torch.nn.CosineSimilarity()),
        (nn.PairwiseDistance(), torch.nn.PairwiseDistance()),
        (nn.AdaptiveMaxPool2d(3, True), torch.nn.AdaptiveMaxPool2d(3, True)),
        (nn.AdaptiveMaxPool1d(2), torch.nn.AdaptiveMaxPool1d(2)),
    ):
        assert repr(ours) == repr(theirs)
        public = {k: v for k, v in vars(theirs).items() if not k.startswith("_")}
        for key, value in public.items():
            if not isinstance(value, torch.Tensor):
                assert getattr(ours, key) == value, f"{type(ours).__name__}.{key}"
        assert list(ours.state_dict()) == list(theirs.state_dict())
    assert nn.RMSNorm(3).weight.dtype == np.float32 and nn.RMSNorm(3, dtype=dk.float64).weight.dtype == np.float64
    assert np.array_equal(nn.RMSNorm(3).weight.detach().numpy(), np.ones(3))
    assert nn.InstanceNorm1d(2, affine=True).weight.detach().numpy().tolist() == [1, 1]
    assert nn.InstanceNorm1d(2, affine=True).bias.detach().numpy().tolist() == [0, 0]


# ---- details -----------------------------------------------------------------------------------


def test_adaptive_max_pool_ties_nan_and_inf_as_torch():
    nan, inf = np.nan, np.inf
    rows = np.array(
        [
            [1, 3, 3, nan, 2, nan, 5, nan, nan, 1, 4, 4],
            [-inf, -inf, -inf, 2, 2, 2, inf, inf, 0, nan, 7, nan],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ]
    )
    for size in (1, 3, 4, 5, 12, 13):
        out, idx = nn.functional.adaptive_max_pool1d(dk.tensor(rows[None]), size, return_indices=True)
        out_t, idx_t = torch.nn.functional.adaptive_max_pool1d(torch.tensor(rows[None]), size, return_indices=True)
        np.testing.assert_array_equal(out.numpy(), out_t.numpy(), err_msg=f"output_size {size}")
        np.testing.assert_array_equal(idx.numpy(), idx_t.numpy(), err_msg=f"output_size {size}")
        assert idx.dtype == np.int64
    plane = np.array([[2.0, 2.0, 1.0], [nan, 2.0, nan], [2.0, 2.0, 2.0]])[None]
    for size in ((2, 2), (1, 1), (3, 2), (2, None), (None, 1)):
        out, idx = nn.functional.adaptive_max_pool2d(dk.tensor(plane), size, True)
        out_t, idx_t = torch.nn.functional.adaptive_max_pool2d(torch.tensor(plane), size, True)
        np.testing.assert_array_equal(out.numpy(), out_t.numpy(), err_msg=f"output_size {size}")
        np.testing.assert_array_equal(idx.numpy(), idx_t.numpy(), err_msg=f"output_size {size}")


def test_adaptive_max_pool_gradient_goes_to_the_chosen_element():
    """Overlapping windows that pick one element add their gradients there, as torch."""
    x = np.array([[[0.0, 5.0, 1.0, 2.0, 9.0, 3.0, 3.0]]])
    ours = dk.tensor(x, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    g = np.array([[[1.0, 10.0, 100.0, 1000.0, 7.0]]])
    nn.functional.adaptive_max_pool1d(ours, 5).backward(dk.tensor(g))
    torch.nn.functional.adaptive_max_pool1d(theirs, 5).backward(torch.tensor(g))
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())


def test_layer_return_indices_and_unbatched_pooling(rng):
    x = rng.standard_normal((3, 6, 5))
    out, idx = nn.AdaptiveMaxPool2d((2, 4), return_indices=True)(dk.tensor(x))
    out_t, idx_t = torch.nn.AdaptiveMaxPool2d((2, 4), return_indices=True)(torch.tensor(x))
    np.testing.assert_array_equal(out.numpy(), out_t.numpy())
    np.testing.assert_array_equal(idx.numpy(), idx_t.numpy())
    out, idx = nn.AdaptiveMaxPool1d(3, return_indices=True)(dk.tensor(x[0]))
    out_t, idx_t = torch.nn.AdaptiveMaxPool1d(3, return_indices=True)(torch.tensor(x[0]))
    np.testing.assert_array_equal(idx.numpy(), idx_t.numpy())
    assert out.shape == (6, 3)


def test_instance_norm_running_statistics_as_torch(rng):
    """Tracked in training (the mean over the samples of each one's statistics, unbiased variance),
    used in eval; num_batches_tracked stays 0 (as torch); an empty batch makes them NaN, as torch."""
    ours = nn.InstanceNorm1d(3, momentum=0.25, track_running_stats=True).double()
    theirs = torch.nn.InstanceNorm1d(3, momentum=0.25, track_running_stats=True).double()
    for _ in range(3):
        x = rng.standard_normal((4, 3, 6)) * 3 + 1
        ours(dk.tensor(x))
        theirs(torch.tensor(x))
        for key in ("running_mean", "running_var"):
            check(getattr(ours, key).numpy(), getattr(theirs, key).numpy(), F64, key)
    assert int(ours.num_batches_tracked.item()) == 0 == int(theirs.num_batches_tracked.item())
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, 3, 5))
    check(ours(dk.tensor(x)).numpy(), theirs(torch.tensor(x)).numpy(), F64, "eval output")
    ours.train()
    theirs.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ours(dk.tensor(np.zeros((0, 3, 5))))
    theirs(torch.zeros(0, 3, 5, dtype=torch.float64))
    assert np.isnan(ours.running_mean.numpy()).all() and torch.isnan(theirs.running_mean).all()
    rm, rv = dk.zeros(3, dtype=dk.float64), dk.ones(3, dtype=dk.float64)
    nn.functional.instance_norm(dk.tensor(rng.standard_normal((2, 3, 4))), rm, rv, momentum=0.0)
    assert rm.numpy().tolist() == [0, 0, 0] and rv.numpy().tolist() == [1, 1, 1]


def test_instance_norm_mismatched_features_warn_without_affine(rng):
    x = dk.tensor(rng.standard_normal((2, 3, 5)))
    with pytest.warns(UserWarning, match="does not match num_features"):
        out = nn.InstanceNorm1d(4).double()(x)
    check(out.numpy(), torch.nn.functional.instance_norm(torch.tensor(x.numpy())).numpy(), F64, "output")
    with raises_naming(ValueError, "InstanceNorm1d", "num_features", r"\(4\)", "got: 3"):
        nn.InstanceNorm1d(4, affine=True).double()(x)
    with pytest.warns(UserWarning), raises_naming(ValueError, "running_mean", r"\(4,\)"):
        nn.InstanceNorm1d(4, track_running_stats=True).double()(x)


def test_rms_norm_default_eps_is_the_dtypes_machine_epsilon():
    x = np.full((2, 4), 1e-4)
    for dtype, torch_dtype in ((F32, torch.float32), (F64, torch.float64)):
        got = nn.functional.rms_norm(dk.tensor(x.astype(dtype)), (4,)).numpy()
        want = torch.nn.functional.rms_norm(torch.tensor(x, dtype=torch_dtype), (4,)).numpy()
        expected = 1e-4 / np.sqrt(1e-8 + np.finfo(dtype).eps)
        check(got, want.astype(np.float64), dtype, f"rms_norm {dtype}")
        assert abs(float(got[0, 0]) - expected) < 1e-5 * expected, dtype
    assert np.array_equal(nn.functional.rms_norm(dk.zeros(2, 3), (3,)).numpy(), np.zeros((2, 3)))


def test_rms_norm_weight_of_another_dtype_warns_and_promotes_as_torch(rng):
    x = rng.standard_normal((2, 3))
    layer = nn.RMSNorm(3)
    with pytest.warns(UserWarning, match="dtype"):
        out = layer(dk.tensor(x))
    assert out.dtype == np.float64
    with pytest.warns(UserWarning):
        want = torch.nn.RMSNorm(3)(torch.tensor(x))
    check(out.detach().numpy(), want.detach().numpy(), F64, "mixed dtypes", tol=1e-7)


def test_shrink_threshold_and_elu_family_at_special_values():
    x = np.array([np.nan, -np.inf, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, np.inf, 0.3, -0.3])
    for name, fn in (
        ("softshrink", lambda F, t: F.softshrink(t, 0.5)),
        ("hardshrink", lambda F, t: F.hardshrink(t, 0.5)),
        ("hardshrink_negative_lambd", lambda F, t: F.hardshrink(t, -1.0)),
        ("threshold", lambda F, t: F.threshold(t, 0.5, -3.0)),
        ("selu", lambda F, t: F.selu(t)),
        ("celu", lambda F, t: F.celu(t, 2.0)),
        ("celu_negative_alpha", lambda F, t: F.celu(t, -1.0)),
    ):
        ours = dk.tensor(x, requires_grad=True)
        theirs = torch.tensor(x, requires_grad=True)
        out, out_t = fn(dk.nn.functional, ours), fn(torch.nn.functional, theirs)
        np.testing.assert_allclose(out.detach().numpy(), out_t.detach().numpy(), rtol=1e-15, atol=0, err_msg=name)
        if name != "softshrink":  # torch's softshrink zero has the input's sign in its scalar tail only
            assert np.array_equal(np.signbit(out.detach().numpy()), np.signbit(out_t.detach().numpy())), name
        finite = np.isfinite(x)  # torch's gradient at +-inf and NaN inputs too, where defined
        out.backward(dk.ones_like(out))
        out_t.backward(torch.ones_like(out_t))
        np.testing.assert_allclose(ours.grad.numpy()[finite], theirs.grad.numpy()[finite], rtol=1e-15, err_msg=name)
        assert np.isnan(ours.grad.numpy()[0]) == np.isnan(theirs.grad.numpy()[0]), name


def test_threshold_on_integers_as_torch():
    x = np.arange(-3, 4)
    got = nn.functional.threshold(dk.tensor(x), 1, 9)
    want = torch.nn.functional.threshold(torch.tensor(x), 1, 9)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_pixel_shuffle_layout_and_round_trip(rng):
    x = np.arange(2 * 8 * 2 * 3).reshape(2, 8, 2, 3)
    got = nn.functional.pixel_shuffle(dk.tensor(x), 2)
    np.testing.assert_array_equal(got.numpy(), torch.nn.functional.pixel_shuffle(torch.tensor(x), 2).numpy())
    assert got.dtype == np.int64
    back = nn.functional.pixel_unshuffle(got, 2)
    np.testing.assert_array_equal(back.numpy(), x)
    empty = dk.tensor(np.zeros((0, 2, 12, 3, 5)), requires_grad=True)
    out = nn.functional.pixel_shuffle(empty, 2)
    want = torch.nn.functional.pixel_shuffle(torch.zeros(0, 2, 12, 3, 5), 2)
    assert out.shape == (0, 2, 3, 6, 10) == tuple(want.shape)
    out.sum().backward()
    assert empty.grad.shape == empty.shape
    assert nn.functional.pixel_unshuffle(dk.zeros(0, 3, 4, 6), 2).shape == (0, 12, 2, 3)  # torch keeps (0, 3, 4, 6)
    y = rng.standard_normal((3, 2, 6, 9))
    np.testing.assert_array_equal(
        nn.PixelUnshuffle(3)(dk.tensor(y)).numpy(), torch.nn.PixelUnshuffle(3)(torch.tensor(y)).numpy()
    )


def test_softmin_without_dim_warns_and_picks_torchs_dim(rng):
    for shape in ((5,), (2, 3), (2, 3, 4), (2, 3, 4, 2)):
        x = rng.standard_normal(shape)
        with pytest.warns(UserWarning, match="Implicit dimension"):
            got = nn.functional.softmin(dk.tensor(x))
        with pytest.warns(UserWarning):
            want = torch.nn.functional.softmin(torch.tensor(x))
        check(got.numpy(), want.numpy(), F64, f"softmin {shape}")


def test_bfloat16_inputs_as_torch(rng):
    """bfloat16 in, bfloat16 out, computed in float32 and rounded once, as torch's CPU kernels: the
    same bits (a norm or softmin, whose sums run in another order, within one bfloat16 step)."""
    x = rng.standard_normal((2, 4, 6)) * 3
    for name, fn, exact in (
        ("selu", lambda F, t: F.selu(t), True),
        ("celu", lambda F, t: F.celu(t, 0.7), True),
        ("softshrink", lambda F, t: F.softshrink(t), True),
        ("hardshrink", lambda F, t: F.hardshrink(t), True),
        ("threshold", lambda F, t: F.threshold(t, 0.1, 2.0), True),
        ("glu", lambda F, t: F.glu(t, 1), True),
        ("rms_norm", lambda F, t: F.rms_norm(t, (6,)), True),
        ("adaptive_max_pool1d", lambda F, t: F.adaptive_max_pool1d(t, 4), True),
        ("pixel_unshuffle", lambda F, t: F.pixel_unshuffle(t, 2), True),
        ("softmin", lambda F, t: F.softmin(t, 1), False),
        ("instance_norm", lambda F, t: F.instance_norm(t), False),
    ):
        ours = dk.tensor(x).to(dk.bfloat16)
        got = fn(dk.nn.functional, ours)
        want = fn(torch.nn.functional, torch.tensor(x).to(torch.bfloat16)).float().numpy()
        assert got.dtype == ours.dtype, name
        if exact:
            np.testing.assert_array_equal(got.float().numpy(), want, err_msg=name)
        else:
            np.testing.assert_allclose(got.float().numpy(), want, rtol=2**-7, atol=2**-7, err_msg=name)


# ---- ParameterDict and the vector conversions --------------------------------------------------


def _same_dict_behaviour(ours, theirs):
    assert list(ours.keys()) == list(theirs.keys())
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert repr(ours).replace("deepkern.", "torch.") == repr(theirs)
    assert len(ours) == len(theirs)


def test_parameter_dict_as_torch():
    def build(lib, nn_):
        return nn_.ParameterDict({"b": lib.ones(2, 3), "a": nn_.Parameter(lib.zeros(2)), "c": 3})

    ours, theirs = build(dk, nn), build(torch, torch.nn)
    _same_dict_behaviour(ours, theirs)  # a plain dict's keys sorted; a Tensor made a Parameter
    assert isinstance(ours["b"], nn.Parameter) and ours["b"].requires_grad and ours["c"] == 3
    for d, lib, nn_ in ((ours, dk, nn), (theirs, torch, torch.nn)):
        d["z"] = lib.full((1,), 2.0)
        d.update([("y", nn_.Parameter(lib.ones(1))), ("x", None)])
        d["a"] = lib.ones(4)  # replaced in place
        del d["b"]
        d.setdefault("w", lib.zeros(5))
        d.setdefault("a", lib.zeros(7))
    _same_dict_behaviour(ours, theirs)
    assert tuple(ours["a"].shape) == (4,) and ours.get("missing", 5) == 5 and "a" in ours and "b" not in ours
    assert ours.pop("z").detach().numpy().tolist() == [2.0] == theirs.pop("z").tolist()
    assert ours.popitem()[0] == theirs.popitem()[0] == "w"
    _same_dict_behaviour(ours, theirs)
    merged, merged_t = ours | nn.ParameterDict({"q": dk.ones(1)}), theirs | torch.nn.ParameterDict({"q": torch.ones(1)})
    _same_dict_behaviour(merged, merged_t)
    copied = ours.copy()
    assert copied["a"] is ours["a"] and list(copied) == list(ours)
    ours.clear()
    theirs.clear()
    _same_dict_behaviour(ours, theirs)
    with pytest.raises(RuntimeError, match="should not be called"):
        ours(dk.ones(1))


def test_parameter_dict_in_a_model_loads_torch_state_dict_and_trains(rng):
    def build(lib, nn_):
        class Model(nn_.Module):
            def __init__(self):
                super().__init__()
                self.params = nn_.ParameterDict({"scale": lib.ones(3), "shift": lib.zeros(3)})

            def forward(self, x):
                return x * self.params["scale"] + self.params["shift"]

        return Model()

    ours, theirs = build(dk, nn), build(torch, torch.nn)
    with torch.no_grad():
        theirs.params["scale"].copy_(torch.randn(3))
    state = {k: v.numpy() for k, v in theirs.state_dict().items()}
    assert list(ours.state_dict()) == ["params.scale", "params.shift"] == list(state)
    assert ours.load_state_dict(state) == ([], [])
    x = rng.standard_normal((4, 3)).astype(np.float32)
    out, out_t = ours(dk.tensor(x)), theirs(torch.tensor(x))
    check(out.detach().numpy(), out_t.detach().numpy().astype(np.float64), F32, "output")
    out.sum().backward()
    out_t.sum().backward()
    check(ours.params["scale"].grad.numpy(), theirs.params["scale"].grad.numpy().astype(np.float64), F32, "grad")
    opt = dk.optim.SGD(ours.parameters(), lr=0.1)
    opt.step()
    check(ours.params["shift"].detach().numpy(), np.full(3, -0.4), F32, "after a step")


def test_parameters_to_vector_and_back_as_torch(rng):
    ours = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1)).double()
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1)).double()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    vec = nn.utils.parameters_to_vector(ours.parameters())
    vec_t = torch.nn.utils.parameters_to_vector(theirs.parameters())
    np.testing.assert_array_equal(vec.detach().numpy(), vec_t.detach().numpy())
    weights = rng.standard_normal(vec.shape)
    (vec * dk.tensor(weights)).sum().backward()  # differentiable: each parameter gets its slice
    (vec_t * torch.tensor(weights)).sum().backward()
    for p, pt in zip(ours.parameters(), theirs.parameters()):
        np.testing.assert_array_equal(p.grad.numpy(), pt.grad.numpy())
    new = rng.standard_normal(vec.shape[0] + 2)  # extra elements are ignored, as torch
    nn.utils.vector_to_parameters(dk.tensor(new), ours.parameters())
    torch.nn.utils.vector_to_parameters(torch.tensor(new), theirs.parameters())
    for (name, p), pt in zip(ours.named_parameters(), theirs.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), pt.detach().numpy(), err_msg=name)
        assert isinstance(p, nn.Parameter) and p.requires_grad
    x = rng.standard_normal((4, 3))
    check(ours(dk.tensor(x)).detach().numpy(), theirs(torch.tensor(x)).detach().numpy(), F64, "model output")


# ---- bad arguments -----------------------------------------------------------------------------

F = nn.functional
_X3 = dk.ones(2, 3, 4)
_X4 = dk.ones(2, 4, 4, 6)

BAD = {
    "instance_norm_1d_input": (lambda: F.instance_norm(dk.ones(4)), ValueError, ["instance_norm", "2 dimensions"]),
    "instance_norm_one_spatial": (
        lambda: F.instance_norm(dk.ones(2, 3, 1)),
        ValueError,
        ["instance_norm", "more than 1 spatial", r"\(2, 3, 1\)"],
    ),
    "instance_norm_no_stats": (
        lambda: F.instance_norm(_X3, use_input_stats=False),
        ValueError,
        ["running_mean", "use_input_stats"],
    ),
    "instance_norm_weight": (
        lambda: F.instance_norm(_X3, weight=dk.ones(4)),
        ValueError,
        ["instance_norm", "weight", r"\(3,\)", r"\(4,\)"],
    ),
    "instance_norm_integer": (lambda: F.instance_norm(dk.ones(2, 3, 4, dtype=dk.int64)), TypeError, ["floating"]),
    "InstanceNorm1d_4d": (lambda: nn.InstanceNorm1d(3)(_X4), ValueError, ["InstanceNorm1d", "2D or 3D", "4D"]),
    "InstanceNorm2d_2d": (lambda: nn.InstanceNorm2d(3)(dk.ones(3, 4)), ValueError, ["InstanceNorm2d", "3D or 4D"]),
    "InstanceNorm_num_features": (lambda: nn.InstanceNorm1d(-1), ValueError, ["InstanceNorm1d", "num_features"]),
    "InstanceNorm_float_features": (lambda: nn.InstanceNorm2d(2.5), TypeError, ["num_features"]),
    "pixel_shuffle_channels": (
        lambda: F.pixel_shuffle(dk.ones(1, 3, 2, 2), 2),
        ValueError,
        ["pixel_shuffle", "divisible", "upscale_factor", r"\(1, 3, 2, 2\)"],
    ),
    "pixel_shuffle_zero": (lambda: F.pixel_shuffle(_X4, 0), ValueError, ["upscale_factor", "positive"]),
    "pixel_shuffle_float": (lambda: F.pixel_shuffle(_X4, 2.0), TypeError, ["upscale_factor", "int"]),
    "pixel_shuffle_2d": (lambda: F.pixel_shuffle(dk.ones(4, 2), 2), ValueError, ["pixel_shuffle", "3 dimensions"]),
    "pixel_unshuffle_height": (
        lambda: F.pixel_unshuffle(dk.ones(1, 1, 3, 2), 2),
        ValueError,
        ["pixel_unshuffle", "downscale_factor", "divisible"],
    ),
    "pixel_unshuffle_negative": (lambda: F.pixel_unshuffle(_X4, -2), ValueError, ["downscale_factor", "positive"]),
    "PixelShuffle_float": (lambda: nn.PixelShuffle(2.0)(_X4), TypeError, ["PixelShuffle", "upscale_factor"]),
    "celu_zero_alpha": (lambda: F.celu(_X3, 0.0), ValueError, ["celu", "alpha"]),
    "CELU_zero_alpha": (lambda: nn.CELU(0)(_X3), ValueError, ["CELU", "alpha"]),
    "selu_integer": (lambda: F.selu(dk.ones(3, dtype=dk.int64)), TypeError, ["selu", "floating"]),
    "glu_odd": (lambda: F.glu(dk.ones(3, 5)), ValueError, ["glu", "even", "dimension 1", "5"]),
    "glu_scalar": (lambda: F.glu(dk.tensor(1.0)), ValueError, ["glu", "0-d"]),
    "glu_dim": (lambda: F.glu(dk.ones(3, 4), 2), IndexError, ["glu", "dim"]),
    "GLU_odd": (lambda: nn.GLU(0)(dk.ones(3, 4)), ValueError, [r"GLU\(dim=0\)", "even"]),
    "softshrink_negative": (lambda: F.softshrink(_X3, -0.5), ValueError, ["softshrink", "lambd", ">= 0"]),
    "Softshrink_negative": (lambda: nn.Softshrink(-1)(_X3), ValueError, [r"Softshrink\(-1\)", "lambd"]),
    "softshrink_string": (lambda: F.softshrink(_X3, "0.5"), TypeError, ["softshrink", "lambd"]),
    "hardshrink_none": (lambda: F.hardshrink(_X3, None), TypeError, ["hardshrink", "lambd"]),
    "threshold_none": (lambda: F.threshold(_X3, None, 0.0), TypeError, ["threshold", "threshold"]),
    "threshold_value": (lambda: F.threshold(_X3, 0.0, "1"), TypeError, ["threshold", "value"]),
    "softmin_dim": (lambda: F.softmin(_X3, 3), IndexError, ["softmin", "dim"]),
    "CosineSimilarity_shapes": (
        lambda: nn.CosineSimilarity()(dk.ones(2, 3), dk.ones(4, 3)),
        ValueError,
        ["CosineSimilarity", "x1", "x2", "broadcast"],
    ),
    "PairwiseDistance_p": (
        lambda: nn.PairwiseDistance(p=0)(dk.ones(2, 3), dk.ones(2, 3)),
        ValueError,
        ["PairwiseDistance", "p must be"],
    ),
    "adaptive_max_pool2d_3tuple": (
        lambda: F.adaptive_max_pool2d(_X4, (1, 2, 3)),
        ValueError,
        ["adaptive_max_pool2d", "output_size"],
    ),
    "adaptive_max_pool2d_negative": (
        lambda: F.adaptive_max_pool2d(_X4, -1),
        ValueError,
        ["adaptive_max_pool2d", "output_size", "non-negative"],
    ),
    "adaptive_max_pool2d_float": (lambda: F.adaptive_max_pool2d(_X4, 2.0), TypeError, ["output_size"]),
    "adaptive_max_pool2d_2d_input": (
        lambda: F.adaptive_max_pool2d(dk.ones(3, 3), 2),
        ValueError,
        ["adaptive_max_pool2d", "3-D", r"\(3, 3\)"],
    ),
    "adaptive_max_pool2d_empty_plane": (
        lambda: F.adaptive_max_pool2d(dk.ones(1, 2, 0, 3), 2),
        ValueError,
        ["adaptive_max_pool2d", "non-zero", r"\(1, 2, 0, 3\)"],
    ),
    "adaptive_max_pool2d_integer": (
        lambda: F.adaptive_max_pool2d(dk.ones(1, 2, 2, 2, dtype=dk.int64), 1),
        TypeError,
        ["adaptive_max_pool2d", "floating"],
    ),
    "adaptive_max_pool1d_pair": (
        lambda: F.adaptive_max_pool1d(_X3, (2, 2)),
        ValueError,
        ["adaptive_max_pool1d", "output_size", "1-tuple"],
    ),
    "adaptive_max_pool1d_none": (
        lambda: F.adaptive_max_pool1d(_X3, None),
        TypeError,
        ["adaptive_max_pool1d", "output_size"],
    ),
    "adaptive_avg_pool1d_4d": (lambda: F.adaptive_avg_pool1d(_X4, 2), ValueError, ["adaptive_avg_pool1d", "3-D"]),
    "adaptive_avg_pool1d_empty": (
        lambda: F.adaptive_avg_pool1d(dk.ones(1, 2, 0), 2),
        ValueError,
        ["adaptive_avg_pool1d", "non-zero"],
    ),
    "AdaptiveMaxPool2d_input": (
        lambda: nn.AdaptiveMaxPool2d(2)(dk.ones(2, 3)),
        ValueError,
        [r"AdaptiveMaxPool2d\(output_size=2\)", r"\(2, 3\)"],
    ),
    "AdaptiveMaxPool1d_input": (
        lambda: nn.AdaptiveMaxPool1d(2)(_X4),
        ValueError,
        [r"AdaptiveMaxPool1d\(output_size=2\)"],
    ),
    "rms_norm_shape": (
        lambda: F.rms_norm(dk.ones(2, 3), (4,)),
        ValueError,
        ["rms_norm", "normalized_shape", r"\(2, 3\)"],
    ),
    "rms_norm_empty_shape": (lambda: F.rms_norm(dk.ones(2, 3), ()), ValueError, ["rms_norm", "normalized_shape"]),
    "rms_norm_weight": (
        lambda: F.rms_norm(dk.ones(2, 3), (3,), dk.ones(4)),
        ValueError,
        ["rms_norm", "weight", r"\(4,\)"],
    ),
    "rms_norm_eps": (lambda: F.rms_norm(dk.ones(2, 3), (3,), None, "1e-5"), TypeError, ["rms_norm", "eps"]),
    "rms_norm_integer": (lambda: F.rms_norm(dk.ones(2, 3, dtype=dk.int64), (3,)), TypeError, ["floating"]),
    "RMSNorm_shape": (lambda: nn.RMSNorm(4)(dk.ones(2, 3)), ValueError, [r"RMSNorm\(\(4,\)", r"\(2, 3\)"]),
    "RMSNorm_float_shape": (lambda: nn.RMSNorm(3.0), TypeError, ["RMSNorm", "normalized_shape"]),
    "RMSNorm_eps": (lambda: nn.RMSNorm(3, eps="small"), TypeError, ["RMSNorm", "eps"]),
    "ParameterDict_key": (lambda: nn.ParameterDict().__setitem__(1, dk.ones(1)), TypeError, ["ParameterDict", "key"]),
    "ParameterDict_dotted_key": (
        lambda: nn.ParameterDict({"a.b": dk.ones(1)}),
        KeyError,
        ["a.b"],
    ),
    "ParameterDict_method_name": (lambda: nn.ParameterDict({"update": dk.ones(1)}), KeyError, ["update"]),
    "ParameterDict_missing": (lambda: nn.ParameterDict()["a"], KeyError, ["a"]),
    "ParameterDict_update_number": (lambda: nn.ParameterDict().update(3), TypeError, ["update", "parameters"]),
    "ParameterDict_update_triple": (
        lambda: nn.ParameterDict().update([("a", dk.ones(1), 1)]),
        ValueError,
        ["element #0", "length 3"],
    ),
    "ParameterDict_replace_parameter_with_number": (
        lambda: nn.ParameterDict({"a": dk.ones(1)}).__setitem__("a", 3),
        TypeError,
        ["'a'"],
    ),
    "vector_to_parameters_array": (
        lambda: nn.utils.vector_to_parameters(np.ones(3), [nn.Parameter(dk.ones(3))]),
        TypeError,
        ["vector_to_parameters", "vec", "Tensor"],
    ),
    "vector_to_parameters_short": (
        lambda: nn.utils.vector_to_parameters(dk.ones(2), [nn.Parameter(dk.ones(3))]),
        ValueError,
        ["vector_to_parameters", "vec", "2 elements", "3"],
    ),
    "vector_to_parameters_2d": (
        lambda: nn.utils.vector_to_parameters(dk.ones(2, 2), [nn.Parameter(dk.ones(3))]),
        ValueError,
        ["vec", "1-D"],
    ),
    "parameters_to_vector_empty": (lambda: nn.utils.parameters_to_vector([]), ValueError, ["parameters", "empty"]),
    "parameters_to_vector_not_tensor": (
        lambda: nn.utils.parameters_to_vector([np.ones(2)]),
        TypeError,
        ["parameters_to_vector", "Tensors"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_arguments_are_named(case):
    fn, exc, needles = BAD[case]
    with raises_naming(exc, *needles):
        fn()
