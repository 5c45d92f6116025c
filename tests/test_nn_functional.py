"""deepkern.nn.functional: every Function's gradient by finite differences in float64, every
forward against its float64 NumPy reference in float32 and float64, and forward plus backward
against torch.nn.functional where PyTorch is installed; dropout's statistics, batch norm's
running statistics, embedding's accumulation, and bad input."""

from __future__ import annotations

import deepkern as dk
import deepkern.nn.functional as F
import numpy as np
import pytest

from checks import check, gradcheck, raises_naming
from reference import adaptive_avg_pool2d_ref, avg_pool2d_ref, conv2d_ref, linear_ref, max_pool2d_ref
from reference_nn import (
    batch_norm_ref,
    embedding_backward_ref,
    gelu_ref,
    leaky_relu_ref,
    log_softmax_ref,
    sigmoid_ref,
    softmax_ref,
)

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def leaf(rng, *shape, dtype=F64, positive=False):
    a = rng.standard_normal(shape)
    return dk.tensor((np.abs(a) + 0.5 if positive else a).astype(dtype), requires_grad=True)


def seeded_dropout(x, p):
    dk.manual_seed(7)  # the same mask on every call, so finite differences see one function
    return F.dropout(x, p)


# name -> (function of the tensors, their shapes (first: the input), float64 reference or None,
#          positive-only inputs)
CASES = {
    "linear": (lambda x, w, b: F.linear(x, w, b), [(4, 5), (3, 5), (3,)], linear_ref),
    "linear_3d_nobias": (lambda x, w: F.linear(x, w), [(2, 3, 5), (4, 5)], linear_ref),
    "linear_relu": (
        lambda x, w, b: F.linear(x, w, b, relu=True),
        [(6, 5), (3, 5), (3,)],
        lambda x, w, b: linear_ref(x, w, b, relu=True),
    ),
    "linear_1d": (lambda x, w, b: F.linear(x, w, b), [(5,), (3, 5), (3,)], linear_ref),
    "conv2d": (
        lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
        [(2, 3, 7, 6), (4, 3, 3, 3), (4,)],
        lambda x, w, b: conv2d_ref(x, w, b, stride=2, padding=1),
    ),
    "conv2d_groups_dilation": (
        lambda x, w: F.conv2d(x, w, None, 1, "same", 2, 2),
        [(1, 4, 6, 7), (6, 2, 3, 2)],
        lambda x, w: conv2d_ref(x, w, None, 1, "same", 2, 2),
    ),
    "conv2d_unbatched": (lambda x, w, b: F.conv2d(x, w, b), [(2, 5, 5), (3, 2, 2, 2), (3,)], conv2d_ref),
    "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, 1), [(2, 3, 7, 8)], lambda x: max_pool2d_ref(x, 3, 2, 1)[0]),
    "max_pool2d_ceil_dilation": (
        lambda x: F.max_pool2d(x, 2, 2, 0, 2, ceil_mode=True),
        [(1, 2, 7, 6)],
        lambda x: max_pool2d_ref(x, 2, 2, 0, 2, True)[0],
    ),
    "avg_pool2d": (
        lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
        [(2, 3, 7, 8)],
        lambda x: avg_pool2d_ref(x, 3, 2, 1, count_include_pad=False),
    ),
    "avg_pool2d_divisor": (
        lambda x: F.avg_pool2d(x, 2, ceil_mode=True, divisor_override=3),
        [(3, 5, 5)],
        lambda x: avg_pool2d_ref(x, 2, ceil_mode=True, divisor_override=3),
    ),
    "adaptive_avg_pool2d": (
        lambda x: F.adaptive_avg_pool2d(x, (3, 2)),
        [(2, 2, 7, 5)],
        lambda x: adaptive_avg_pool2d_ref(x, (3, 2)),
    ),
    "relu": (F.relu, [(3, 7)], lambda x: np.maximum(x, 0)),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), [(3, 7)], lambda x: leaky_relu_ref(x, 0.2)),
    "tanh": (F.tanh, [(3, 7)], np.tanh),
    "sigmoid": (F.sigmoid, [(3, 7)], sigmoid_ref),
    "gelu": (F.gelu, [(4, 9)], gelu_ref),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), [(4, 9)], lambda x: gelu_ref(x, "tanh")),
    "softmax": (lambda x: F.softmax(x, dim=1), [(3, 5, 2)], lambda x: softmax_ref(x, 1)),
    "softmax_last": (lambda x: F.softmax(x, -1), [(4, 6)], lambda x: softmax_ref(x, -1)),
    "log_softmax": (lambda x: F.log_softmax(x, dim=0), [(5, 3)], lambda x: log_softmax_ref(x, 0)),
    "log_softmax_last": (lambda x: F.log_softmax(x, -1), [(2, 3, 6)], lambda x: log_softmax_ref(x, -1)),
    "dropout": (lambda x: seeded_dropout(x, 0.3), [(5, 8)], None),
    "batch_norm_train": (
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        [(4, 3, 2, 3), (3,), (3,)],
        lambda x, w, b: batch_norm_ref(x, None, None, w, b, training=True)[0],
    ),
    "batch_norm_train_1d": (
        lambda x: F.batch_norm(x, None, None, training=True),
        [(5, 4)],
        lambda x: batch_norm_ref(x, None, None, training=True)[0],
    ),
    "batch_norm_eval": (
        lambda x, w, b: F.batch_norm(x, np.linspace(-1, 1, 3), np.linspace(0.5, 2, 3), w, b),
        [(4, 3, 5), (3,), (3,)],
        lambda x, w, b: batch_norm_ref(x, np.linspace(-1, 1, 3), np.linspace(0.5, 2, 3), w, b)[0],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_by_finite_differences(name, rng):
    fn, shapes, _ = CASES[name]
    gradcheck(fn, *(leaf(rng, *s) for s in shapes))


# batch_norm_eval's running statistics are float64 constants: test_batch_norm_eval_forward_float32
@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("name", sorted(n for n in CASES if CASES[n][2] is not None and n != "batch_norm_eval"))
def test_forward_matches_reference(name, dtype, rng):
    fn, shapes, ref = CASES[name]
    arrays = [rng.standard_normal(s).astype(dtype) for s in shapes]
    out = fn(*(dk.tensor(a) for a in arrays))
    assert isinstance(out, dk.Tensor)
    check(out.numpy(), ref(*arrays), dtype, name)


def test_batch_norm_eval_forward_float32(rng):
    x, w, b = (rng.standard_normal(s).astype(F32) for s in [(4, 3, 5), (3,), (3,)])
    rm, rv = rng.standard_normal(3).astype(F32), rng.random(3).astype(F32) + 0.5
    out = F.batch_norm(dk.tensor(x), dk.tensor(rm), dk.tensor(rv), dk.tensor(w), dk.tensor(b))
    check(out.numpy(), batch_norm_ref(x, rm, rv, w, b)[0], F32, "batch_norm eval")


@pytest.mark.parametrize("name", sorted(n for n in CASES if n != "dropout"))
def test_forward_and_backward_match_torch(name, rng):
    torch = pytest.importorskip("torch")
    fn, shapes, _ = CASES[name]
    tf = torch.nn.functional
    torch_fns = {
        "linear": tf.linear,
        "linear_3d_nobias": tf.linear,
        "linear_relu": lambda x, w, b: tf.relu(tf.linear(x, w, b)),
        "linear_1d": tf.linear,
        "conv2d": lambda x, w, b: tf.conv2d(x, w, b, stride=2, padding=1),
        "conv2d_groups_dilation": lambda x, w: tf.conv2d(x, w, None, 1, "same", 2, 2),
        "conv2d_unbatched": tf.conv2d,
        "max_pool2d": lambda x: tf.max_pool2d(x, 3, 2, 1),
        "max_pool2d_ceil_dilation": lambda x: tf.max_pool2d(x, 2, 2, 0, 2, ceil_mode=True),
        "avg_pool2d": lambda x: tf.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
        "avg_pool2d_divisor": lambda x: tf.avg_pool2d(x, 2, ceil_mode=True, divisor_override=3),
        "adaptive_avg_pool2d": lambda x: tf.adaptive_avg_pool2d(x, (3, 2)),
        "relu": tf.relu,
        "leaky_relu": lambda x: tf.leaky_relu(x, 0.2),
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "gelu": tf.gelu,
        "gelu_tanh": lambda x: tf.gelu(x, approximate="tanh"),
        "softmax": lambda x: tf.softmax(x, dim=1),
        "softmax_last": lambda x: tf.softmax(x, -1),
        "log_softmax": lambda x: tf.log_softmax(x, dim=0),
        "log_softmax_last": lambda x: tf.log_softmax(x, -1),
        "batch_norm_train": lambda x, w, b: tf.batch_norm(x, None, None, w, b, training=True),
        "batch_norm_train_1d": lambda x: tf.batch_norm(x, None, None, training=True),
        "batch_norm_eval": lambda x, w, b: tf.batch_norm(
            x, torch.linspace(-1, 1, 3, dtype=torch.float64), torch.linspace(0.5, 2, 3, dtype=torch.float64), w, b
        ),
    }
    arrays = [rng.standard_normal(s) for s in shapes]
    ours = [dk.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, out_t = fn(*ours), torch_fns[name](*theirs)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    out_t.backward(torch.tensor(g))
    check(out.detach().numpy(), out_t.detach().numpy(), F64, f"{name} forward")
    for k, (a, b) in enumerate(zip(ours, theirs)):
        check(a.grad.numpy(), b.grad.numpy(), F64, f"{name} gradient of input {k}", tol=1e-10)


def test_linear_fused_relu_equals_linear_then_relu(rng):
    x, w, b = leaf(rng, 6, 5), leaf(rng, 4, 5), leaf(rng, 4)
    fused = F.linear(x, w, b, relu=True)
    (fused * dk.tensor(np.arange(24.0).reshape(6, 4))).sum().backward()
    grads = [t.grad.numpy().copy() for t in (x, w, b)]
    for t in (x, w, b):
        t.grad = None
    plain = F.relu(F.linear(x, w, b))
    (plain * dk.tensor(np.arange(24.0).reshape(6, 4))).sum().backward()
    np.testing.assert_allclose(fused.detach().numpy(), plain.detach().numpy(), rtol=1e-14)
    for got, t in zip(grads, (x, w, b)):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-12)


def test_gradients_only_where_asked(rng):
    x = dk.tensor(rng.standard_normal((2, 3, 5, 5)))  # no grad: only the weight's is computed
    w = leaf(rng, 4, 3, 3, 3)
    F.conv2d(x, w).sum().backward()
    assert w.grad.shape == w.shape and x.grad is None
    xl, wl = leaf(rng, 3, 5), dk.tensor(rng.standard_normal((2, 5)))
    F.linear(xl, wl).sum().backward()
    assert xl.grad.shape == (3, 5) and wl.grad is None


def test_max_pool2d_return_indices(rng):
    x = rng.standard_normal((2, 3, 6, 6)).astype(F32)
    out, idx = F.max_pool2d(dk.tensor(x, requires_grad=True), 2, return_indices=True)
    ref, ref_idx = max_pool2d_ref(x, 2)
    np.testing.assert_array_equal(out.detach().numpy(), ref.astype(F32))
    np.testing.assert_array_equal(idx.numpy(), ref_idx)
    assert not idx.requires_grad and idx.dtype == np.int64


# ---- dropout --------------------------------------------------------------------------------


def test_dropout_statistics_and_scaling(rng):
    x = dk.ones(200, 500)
    dk.manual_seed(3)
    out = F.dropout(x, 0.3).numpy()
    kept = out != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)
    assert out.dtype == F32


def test_dropout_repeatable_with_manual_seed_and_identity_in_eval():
    x = dk.randn(10, 10)
    dk.manual_seed(11)
    a = F.dropout(x, 0.5).numpy()
    dk.manual_seed(11)
    b = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, b)
    assert F.dropout(x, 0.5, training=False) is x
    assert np.all(F.dropout(x, 1.0).numpy() == 0)
    np.testing.assert_array_equal(F.dropout(x, 0.0).numpy(), x.numpy())


def test_dropout_gradient_uses_the_forward_mask():
    x = dk.ones(20, 20, requires_grad=True)
    out = F.dropout(x, 0.4)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), out.detach().numpy())


# ---- batch norm -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_batch_norm_updates_running_statistics(dtype, rng):
    x = rng.standard_normal((6, 3, 4, 5)).astype(dtype) * 2 + 1
    rm, rv = np.zeros(3, dtype), np.ones(3, dtype)
    _, ref_m, ref_v = batch_norm_ref(x, rm, rv, training=True, momentum=0.3)
    F.batch_norm(dk.tensor(x), rm, rv, training=True, momentum=0.3)
    check(rm, ref_m, dtype, "running_mean")
    check(rv, ref_v, dtype, "running_var (unbiased)")
    before = rm.copy()
    F.batch_norm(dk.tensor(x), rm, rv, training=False)
    np.testing.assert_array_equal(rm, before)


def test_batch_norm_needs_more_than_one_value_per_channel():
    with raises_naming(ValueError, "more than 1 value per channel", r"\(1, 3\)"):
        F.batch_norm(dk.randn(1, 3), None, None, training=True)
    with raises_naming(ValueError, "running_mean and running_var"):
        F.batch_norm(dk.randn(4, 3), None, None, training=False)


# ---- embedding ------------------------------------------------------------------------------


@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_gradient_accumulates_repeats_and_skips_padding(padding_idx, rng):
    weight = leaf(rng, 6, 4)
    idx = np.array([[1, 2, 1], [5, 2, 1]])
    out = F.embedding(dk.tensor(idx), weight, padding_idx=padding_idx)
    np.testing.assert_array_equal(out.detach().numpy(), weight.detach().numpy()[idx])
    g = rng.standard_normal(out.shape)
    out.backward(g)
    pad = None if padding_idx is None else padding_idx % 6
    check(weight.grad.numpy(), embedding_backward_ref(g, idx, 6, pad), F64, "embedding weight grad")
    if padding_idx is None:  # the padding row's output does depend on it: no finite differences
        gradcheck(lambda w: F.embedding(idx, w), leaf(rng, 6, 4))


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("dim", [700, 5, 1, 0])
@pytest.mark.parametrize("count", [300, 1, 0])
def test_embedding_backward_is_the_row_scatter_bit_for_bit(dtype, dim, count, rng):
    """The CPU backend's scatter (np.add.at element by element, in chunks of indices: 300 indices
    of 700 values take several) equals np.add.at over whole rows bit for bit: the same sums in
    index order; repeated rows, the padding row zeroed, no indices, no columns."""
    from deepkern.backends.cpu import CPUBackend

    np_dtype = dk.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    rows = 7
    indices = rng.integers(0, rows, count).astype(np.int64)
    grad = rng.standard_normal((count, dim)).astype(np_dtype)
    for padding_idx in (-1, 3):
        got = np.full((rows, dim), np.nan, np_dtype)
        CPUBackend.embedding_backward(grad, indices, got, padding_idx)
        expected = np.zeros((rows, dim), np_dtype)
        np.add.at(expected, indices, grad)
        if padding_idx >= 0:
            expected[padding_idx] = 0
        assert got.tobytes() == expected.tobytes(), f"{dtype} dim {dim}, {count} indices, padding {padding_idx}"


def test_embedding_bad_indices():
    w = dk.randn(5, 3)
    with raises_naming(IndexError, "index 5", "5 rows"):
        F.embedding(dk.tensor([0, 5]), w)
    with raises_naming(IndexError, "index -1"):
        F.embedding(dk.tensor([-1, 2]), w)
    with raises_naming(TypeError, "integer", "float32"):
        F.embedding(dk.tensor([0.0, 1.0]), w)


# ---- bad arguments ----------------------------------------------------------------------------


def test_bad_arguments_are_named():
    x = dk.randn(2, 3)
    with raises_naming(IndexError, "softmax", "dim 2", "2 dimensions"):
        F.softmax(x, 2)
    with raises_naming(IndexError, "log_softmax", "dim -3"):
        F.log_softmax(x, -3)
    with raises_naming(ValueError, "gelu", "'exact'"):
        F.gelu(x, approximate="exact")
    with raises_naming(ValueError, "dropout", "1.5"):
        F.dropout(x, 1.5)
    with raises_naming(ValueError, "linear", r"\(2, 3\)", r"\(4, 5\)"):
        F.linear(x, dk.randn(4, 5))


def test_implicit_softmax_dim_follows_pytorch(rng):
    for shape, dim in (((5,), 0), ((3, 4), 1), ((2, 3, 4), 0), ((2, 3, 4, 5), 1)):
        x = rng.standard_normal(shape)
        check(F.softmax(dk.tensor(x)).numpy(), softmax_ref(x, dim), F64, f"softmax {shape}")


def test_results_keep_float32(rng):
    x = dk.tensor(rng.standard_normal((4, 3, 6, 6)).astype(F32), requires_grad=True)
    w = dk.tensor(rng.standard_normal(3).astype(F32), requires_grad=True)
    outs = [
        F.gelu(x),
        F.leaky_relu(x),
        F.softmax(x, 1),
        F.log_softmax(x, 1),
        F.dropout(x, 0.2),
        F.batch_norm(x, None, None, w, w, training=True),
        F.avg_pool2d(x, 2),
        F.max_pool2d(x, 2),
    ]
    for out in outs:
        assert out.dtype == F32
        out.sum().backward()
        assert x.grad.dtype == F32


_RESIZES = [
    dict(size=(11, 4)),
    dict(size=(3, 9)),
    dict(scale_factor=1.7),
    dict(scale_factor=0.45),
    dict(scale_factor=2.0),
    dict(scale_factor=(2.5, 0.7)),
    dict(scale_factor=1.3, recompute_scale_factor=True),
]


@pytest.mark.parametrize(
    "mode, align_corners", [("bicubic", None), ("bicubic", True), ("nearest-exact", None), ("area", None)]
)
@pytest.mark.parametrize("resize", range(len(_RESIZES)))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_interpolate_bicubic_nearest_exact_and_area_match_torch(mode, align_corners, resize, dtype, rng):
    """Values and input gradients as PyTorch's (bicubic: A = -0.75, the neighbours clamped at the
    borders, the source position not clamped at 0; area: adaptive average pooling)."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 5, 7)).astype(dtype)
    kwargs = dict(mode=mode, align_corners=align_corners, **_RESIZES[resize])
    xt, xd = torch.tensor(x, requires_grad=True), dk.tensor(x, requires_grad=True)
    ref, out = torch.nn.functional.interpolate(xt, **kwargs), F.interpolate(xd, **kwargs)
    g = rng.standard_normal(tuple(ref.shape)).astype(dtype)
    ref.backward(torch.tensor(g))
    out.backward(dk.tensor(g))
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), **tol)
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), **tol)


def test_interpolate_new_modes_by_finite_differences_and_their_errors(rng):
    x = dk.tensor(rng.standard_normal((1, 2, 4, 3)), requires_grad=True)
    gradcheck(lambda t: F.interpolate(t, size=(6, 5), mode="bicubic"), x)
    gradcheck(lambda t: F.interpolate(t, scale_factor=0.6, mode="area"), x)
    with raises_naming(ValueError, "interpolate", "align_corners"):
        F.interpolate(x, scale_factor=2.0, mode="nearest-exact", align_corners=True)
    with raises_naming(ValueError, "interpolate", "'bicubic'", "4-D"):
        F.interpolate(dk.ones(1, 1, 4), scale_factor=2.0, mode="bicubic")
    with raises_naming(ValueError, "interpolate", "'area'", "3-D or 4-D"):
        F.interpolate(dk.ones(1, 1, 2, 2, 2), scale_factor=2.0, mode="area")
    with raises_naming(ValueError, "interpolate", "'bicubic'"):
        F.interpolate(x, scale_factor=2.0, mode="cubic")


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_grid_sample_matches_torch(mode, padding_mode, align_corners, dtype, rng):
    """Values and the gradients of the input and (bilinear) of the grid, as PyTorch's, with grid points
    inside, on and outside the input's borders."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 5, 6)).astype(dtype)
    grid = (rng.standard_normal((2, 4, 7, 2)) * 1.3).astype(dtype)
    grid[0, 0, :3] = [[-1.0, -1.0], [1.0, 1.0], [0.0, 1.0]]  # corners and an edge
    args = (mode, padding_mode, align_corners)
    xt, gt = torch.tensor(x, requires_grad=True), torch.tensor(grid, requires_grad=True)
    xd, gd = dk.tensor(x, requires_grad=True), dk.tensor(grid, requires_grad=True)
    ref, out = torch.nn.functional.grid_sample(xt, gt, *args), F.grid_sample(xd, gd, *args)
    weights = rng.standard_normal(tuple(ref.shape)).astype(dtype)
    ref.backward(torch.tensor(weights))
    out.backward(dk.tensor(weights))
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), **tol)
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), **tol)
    if mode == "nearest":  # the grid gets no gradient (PyTorch's is all zeros)
        assert gd.grad is None and not gt.grad.numpy().any()
    else:
        np.testing.assert_allclose(gd.grad.numpy(), gt.grad.numpy(), **tol)


@pytest.mark.parametrize("align_corners", [False, True])
def test_affine_grid_matches_torch_and_feeds_grid_sample(align_corners, rng):
    torch = pytest.importorskip("torch")
    theta = rng.standard_normal((2, 2, 3))
    tt, td = torch.tensor(theta, requires_grad=True), dk.tensor(theta, requires_grad=True)
    x = rng.standard_normal((2, 3, 4, 5))
    ref = torch.nn.functional.grid_sample(
        torch.tensor(x), torch.nn.functional.affine_grid(tt, (2, 3, 6, 7), align_corners), align_corners=align_corners
    )
    out = F.grid_sample(dk.tensor(x), F.affine_grid(td, (2, 3, 6, 7), align_corners), align_corners=align_corners)
    weights = rng.standard_normal(tuple(ref.shape))
    ref.backward(torch.tensor(weights))
    out.backward(dk.tensor(weights))
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(td.grad.numpy(), tt.grad.numpy(), rtol=1e-11, atol=1e-12)
    identity = dk.tensor(np.tile(np.eye(2, 3), (2, 1, 1)))
    same = F.grid_sample(
        dk.tensor(x), F.affine_grid(identity, (2, 3, 4, 5), align_corners), align_corners=align_corners
    )
    np.testing.assert_allclose(same.numpy(), x, rtol=1e-12, atol=1e-12)
    with pytest.warns(UserWarning, match="align_corners=False"):
        F.affine_grid(identity, (2, 3, 4, 5))
    with raises_naming(ValueError, "grid_sample", "padding_mode"):
        F.grid_sample(dk.tensor(x), dk.zeros(2, 1, 1, 2, dtype=dk.float64), padding_mode="wrap", align_corners=False)
    with raises_naming(ValueError, "affine_grid", "theta", "(2, 2, 3)"):
        F.affine_grid(dk.zeros(2, 3, 3, dtype=dk.float64), (2, 3, 4, 5), False)


_BAGS = [
    (np.array([[1, 2, 4], [2, 2, 2], [0, 6, 3]]), None, False),
    (np.array([1, 2, 4, 5, 2, 6, 0]), np.array([0, 2, 2, 5]), False),  # an empty bag
    (np.array([1, 2, 4, 5, 2, 6, 0]), np.array([0, 3, 7]), True),
    (np.array([2, 2, 2]), np.array([0, 1]), False),
    (np.array([1, 2, 4, 5, 2, 6, 0]), np.array([0, 2, 3, 4]), True),  # the last bag runs past the last offset
]


@pytest.mark.parametrize("mode, weighted", [("sum", False), ("sum", True), ("mean", False), ("max", False)])
@pytest.mark.parametrize("padding_idx", [None, 2])
@pytest.mark.parametrize("bags", range(len(_BAGS)))
def test_embedding_bag_matches_torch(mode, weighted, padding_idx, bags, rng):
    """Sums, means and maxima of bags (2-D input, offsets with an empty bag, include_last_offset,
    a bag of padding only), per-sample weights (sum), and the weight's and the per-sample weights'
    gradients, as PyTorch's."""
    torch = pytest.importorskip("torch")
    indices, offsets, last = _BAGS[bags]
    weight = rng.standard_normal((7, 4))
    psw = rng.standard_normal(indices.shape) if weighted else None
    outs = []
    for lib, fn in ((torch, torch.nn.functional.embedding_bag), (dk, F.embedding_bag)):
        w = lib.tensor(weight, requires_grad=True)
        p = None if psw is None else lib.tensor(psw, requires_grad=True)
        out = fn(
            lib.tensor(indices),
            w,
            None if offsets is None else lib.tensor(offsets),
            mode=mode,
            per_sample_weights=p,
            include_last_offset=last,
            padding_idx=padding_idx,
        )
        (out * lib.tensor(np.arange(out.numel()).reshape(tuple(out.shape)) - 3.0)).sum().backward()
        outs.append([out.detach().numpy(), w.grad.numpy()] + ([] if p is None else [p.grad.numpy()]))
    for got, ref in zip(outs[1], outs[0]):
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)


def test_embedding_bag_module_loads_torch_and_checks_arguments(rng):
    torch = pytest.importorskip("torch")
    ref = torch.nn.EmbeddingBag(6, 3, mode="max", padding_idx=0).double()
    ours = dk.nn.EmbeddingBag(6, 3, mode="max", padding_idx=0).double()
    ours.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    assert repr(ours) == repr(ref) and repr(dk.nn.EmbeddingBag(6, 3)) == repr(torch.nn.EmbeddingBag(6, 3))
    assert not dk.nn.EmbeddingBag(6, 3, padding_idx=1).weight.detach().numpy()[1].any()
    idx, off = np.array([1, 0, 5, 3]), np.array([0, 1])
    np.testing.assert_array_equal(
        ours(dk.tensor(idx), dk.tensor(off)).detach().numpy(),
        ref(torch.tensor(idx), torch.tensor(off)).detach().numpy(),
    )
    with raises_naming(ValueError, "embedding_bag", "offsets", "None"):
        ours(dk.tensor(idx))
    with raises_naming(ValueError, "embedding_bag", "offsets must start at 0"):
        ours(dk.tensor(idx), dk.tensor([1, 2]))
    with raises_naming(IndexError, "embedding_bag", "out of range"):
        ours(dk.tensor([6]), dk.tensor([0]))
    with raises_naming(NotImplementedError, "per_sample_weights", "sum"):
        ours(dk.tensor(idx), dk.tensor(off), dk.tensor(np.ones(4)))
    with raises_naming(ValueError, "EmbeddingBag", "mode"):
        dk.nn.EmbeddingBag(6, 3, mode="min")


_COMPOSED = {
    "local_response_norm": (lambda r: [r.standard_normal((2, 5, 4, 3))], lambda m, x: m.local_response_norm(x, 3)),
    "local_response_norm_3d": (
        lambda r: [r.standard_normal((2, 6, 7))],
        lambda m, x: m.local_response_norm(x, 4, 2e-2, 0.6, 2.0),
    ),
    "bilinear": (
        lambda r: [
            r.standard_normal((3, 4)),
            r.standard_normal((3, 5)),
            r.standard_normal((2, 4, 5)),
            r.standard_normal(2),
        ],
        lambda m, a, b, w, c: m.bilinear(a, b, w, c),
    ),
    "lp_pool2d": (lambda r: [np.abs(r.standard_normal((2, 3, 5, 4))) + 0.1], lambda m, x: m.lp_pool2d(x, 2, 2)),
    "lp_pool2d_p3": (
        lambda r: [np.abs(r.standard_normal((2, 3, 5, 4))) + 0.1],
        lambda m, x: m.lp_pool2d(x, 3, (2, 1), 1, True),
    ),
    "lp_pool1d": (lambda r: [np.abs(r.standard_normal((2, 3, 7))) + 0.1], lambda m, x: m.lp_pool1d(x, 1.5, 3, 2)),
    "lp_pool1d_inf": (lambda r: [r.standard_normal((2, 3, 7))], lambda m, x: m.lp_pool1d(x, float("inf"), 3, 2, True)),
    "lp_pool2d_minus_inf": (lambda r: [r.standard_normal((2, 3, 5, 4))], lambda m, x: m.lp_pool2d(x, -float("inf"), 2)),
    "pdist": (lambda r: [r.standard_normal((5, 3))], lambda m, x: m.pdist(x)),
    "pdist_p1": (lambda r: [r.standard_normal((5, 3))], lambda m, x: m.pdist(x, 1.0)),
    "channel_shuffle": (lambda r: [r.standard_normal((2, 6, 3))], lambda m, x: m.channel_shuffle(x, 3)),
}


@pytest.mark.parametrize("name", sorted(_COMPOSED))
def test_composed_functions_match_torch(name, rng):
    torch = pytest.importorskip("torch")
    arrays = _COMPOSED[name][0](rng)
    grads = []
    for lib, module in ((torch, torch.nn.functional), (dk, F)):
        tensors = [lib.tensor(a, requires_grad=True) for a in arrays]
        out = _COMPOSED[name][1](module, *tensors)
        out.backward(lib.tensor(np.linspace(-1, 1, out.numel()).reshape(tuple(out.shape))))
        grads.append([out.detach().numpy()] + [t.grad.numpy() for t in tensors])
    for got, ref in zip(grads[1], grads[0]):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-13)
    tensors = [dk.tensor(a, requires_grad=True) for a in arrays]
    gradcheck(lambda *ts: _COMPOSED[name][1](F, *ts), *tensors)


@pytest.mark.parametrize(
    "layer, args, shape",
    [
        ("LocalResponseNorm", (3,), (2, 5, 4, 3)),
        ("Bilinear", (4, 5, 2), None),
        ("LPPool2d", (2, 3), (2, 3, 6, 5)),
        ("LPPool1d", (2, 3, 2), (2, 3, 7)),
        ("Softmax2d", (), (2, 3, 4, 5)),
        ("ChannelShuffle", (2,), (2, 4, 3, 3)),
    ],
)
def test_composed_layers_match_torch(layer, args, shape, rng):
    torch = pytest.importorskip("torch")
    ref = getattr(torch.nn, layer)(*args).double()
    ours = getattr(dk.nn, layer)(*args).double()
    ours.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    assert repr(ours) == repr(ref)
    inputs = (
        [rng.standard_normal((3, 4)), rng.standard_normal((3, 5))]
        if shape is None
        else [np.abs(rng.standard_normal(shape))]
    )
    out = ours(*(dk.tensor(a) for a in inputs))
    np.testing.assert_allclose(
        out.detach().numpy(), ref(*(torch.tensor(a) for a in inputs)).detach().numpy(), rtol=1e-12, atol=1e-13
    )


def test_gumbel_softmax_samples_and_straight_through_gradient(rng):
    dk.manual_seed(0)
    logits = dk.tensor(rng.standard_normal((20000, 3)), requires_grad=True)
    soft = F.gumbel_softmax(logits, tau=0.5)
    np.testing.assert_allclose(soft.detach().numpy().sum(axis=1), 1.0, rtol=1e-12)
    hard = F.gumbel_softmax(logits, tau=0.5, hard=True)
    values = hard.detach().numpy()
    assert set(np.unique(values)) == {0.0, 1.0} and np.all(values.sum(axis=1) == 1)
    probs = np.exp(logits.detach().numpy())
    probs /= probs.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(values.mean(axis=0), probs.mean(axis=0), atol=0.015)  # argmax of Gumbel draws
    hard.sum().backward()  # the straight-through gradient: that of the soft sample, summing to 0 per row
    np.testing.assert_allclose(logits.grad.numpy().sum(axis=1), 0.0, atol=1e-12)


def test_rrelu_slopes_and_eval_as_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 4, 5))
    np.testing.assert_array_equal(F.rrelu(dk.tensor(x)).numpy(), torch.nn.functional.rrelu(torch.tensor(x)).numpy())
    dk.manual_seed(4)
    xd = dk.tensor(x, requires_grad=True)
    y = F.rrelu(xd, 0.1, 0.3, training=True)
    y.sum().backward()
    negative = x < 0
    slopes = y.detach().numpy()[negative] / x[negative]
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3 and slopes.std() > 0.03  # one draw per element
    np.testing.assert_allclose(xd.grad.numpy()[negative], slopes, rtol=1e-12)
    assert np.all(xd.grad.numpy()[~negative] == 1) and np.all(y.detach().numpy()[~negative] == x[~negative])
    dk.manual_seed(4)
    np.testing.assert_array_equal(F.rrelu(dk.tensor(x), 0.1, 0.3, training=True).numpy(), y.detach().numpy())
    layer = dk.nn.RReLU().eval()
    assert repr(layer) == repr(torch.nn.RReLU())
    np.testing.assert_array_equal(layer(dk.tensor(x)).numpy(), torch.nn.RReLU().eval()(torch.tensor(x)).numpy())


@pytest.mark.parametrize("feature", [False, True])
def test_alpha_dropout_values_and_moments_as_torch(feature, rng):
    torch = pytest.importorskip("torch")
    ours = F.feature_alpha_dropout if feature else F.alpha_dropout
    ref = torch.nn.functional.feature_alpha_dropout if feature else torch.nn.functional.alpha_dropout
    zeros = np.zeros((50, 40, 3))
    got, want = ours(dk.tensor(zeros), 0.3, True).numpy(), ref(torch.tensor(zeros), 0.3, True).numpy()
    np.testing.assert_allclose(np.unique(got), np.unique(want), rtol=1e-15)  # a kept and a dropped value
    if feature:  # one draw per (sample, channel)
        assert np.all(got == got[..., :1])
    z = rng.standard_normal((400, 1000)) if not feature else rng.standard_normal((400, 1000, 1))
    out = ours(dk.tensor(z), 0.2, True).numpy()
    assert abs(out.mean()) < 0.01 and abs(out.var() - 1) < 0.02  # SELU's fixed point kept
    x = dk.tensor(rng.standard_normal((4, 3, 2)))
    assert ours(x, 0.5, False) is x and not ours(x, 1.0, True).numpy().any()
    with raises_naming(ValueError, "alpha_dropout", "between 0 and 1"):
        ours(x, 1.5, True)
    layer = (dk.nn.FeatureAlphaDropout if feature else dk.nn.AlphaDropout)(0.2)
    assert layer.eval()(x) is x


def test_batch_norm_3d_and_upsample_as_torch(rng):
    torch = pytest.importorskip("torch")
    ours, ref = dk.nn.BatchNorm3d(3).double(), torch.nn.BatchNorm3d(3).double()
    assert repr(ours) == repr(ref)
    x = rng.standard_normal((2, 3, 4, 2, 3))
    for _ in range(2):
        np.testing.assert_allclose(
            ours(dk.tensor(x)).detach().numpy(), ref(torch.tensor(x)).detach().numpy(), rtol=1e-12, atol=1e-13
        )
    for key, value in ref.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key].numpy(), value.numpy(), rtol=1e-12)
    with raises_naming(ValueError, "BatchNorm3d", "(N, 3, D, H, W)"):
        ours(dk.ones(2, 3, 4, dtype=dk.float64))
    with pytest.warns(UserWarning, match="upsample is deprecated"):
        up = F.upsample(dk.tensor(x[0]), scale_factor=2.0)
    np.testing.assert_array_equal(up.numpy(), F.interpolate(dk.tensor(x[0]), scale_factor=2.0).numpy())


def test_lp_pool_of_a_zero_window_has_a_zero_gradient_as_torch():
    """(sum x^p)^(1/p) at an all-zero window (after a ReLU): PyTorch's gradient there is 0, not the NaN
    of inf * 0 (sign's gradient is zeros, not g * 0)."""
    torch = pytest.importorskip("torch")
    x = np.array([[[[0.0, 0.0, 1.0, 2.0], [0.0, 0.0, 3.0, 4.0]]]])
    grads = []
    for lib, module in ((torch, torch.nn.functional), (dk, F)):
        t = lib.tensor(x, requires_grad=True)
        for p in (2, 3):
            module.lp_pool2d(t, p, 2).sum().backward()
        grads.append(t.grad.numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12)
    t = dk.tensor([0.0, -1.5, np.nan], requires_grad=True)
    (t.sign() * dk.tensor([np.inf, 1.0, 1.0]) + t.floor() + t.ceil() + t.trunc()).sum().backward()
    assert t.grad.tolist() == [0.0, 0.0, 0.0]
