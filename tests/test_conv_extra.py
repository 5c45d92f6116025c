"""Transposed convolutions (ops, F, nn) and the 1-D convolution and pooling layers, which run the
2-D kernels: against float64 NumPy references (a direct scatter for the transposed convolution),
finite differences and, where PyTorch is installed, PyTorch itself."""

from __future__ import annotations

import math

import deepkern as dk
import numpy as np
import pytest
from deepkern import nn, ops
from deepkern.nn import functional as F

import reference as ref
from checks import F32, F64, check, gradcheck, poison_heap, raises_naming, rand, shape_pattern
from conftest import on_device, to_host

# (x shape, w shape, stride, padding, output_padding, groups, dilation): odd sizes, groups,
# dilation, output_padding >= stride while below dilation, a zero batch, an unbatched input.
TRANSPOSED = [
    ((2, 3, 5, 4), (3, 2, 3, 3), 1, 0, 0, 1, 1),
    ((3, 4, 3, 5), (4, 3, 2, 3), (2, 3), (1, 0), (1, 2), 2, 1),
    ((1, 6, 4, 3), (6, 1, 3, 2), 2, 1, 1, 6, (2, 1)),
    ((2, 2, 3, 3), (2, 3, 3, 3), 1, 1, (1, 0), 1, 2),  # output_padding 1 >= stride 1, < dilation 2
    ((0, 4, 3, 2), (4, 2, 2, 2), 2, 0, 1, 2, 1),
    ((3, 2, 1), (3, 5, 1, 2), (1, 2), (0, 1), 0, 1, (1, 2)),
    ((2, 1, 1, 1), (1, 2, 4, 1), 3, 0, 2, 1, 1),
]


def _options(stride, padding, output_padding, groups, dilation):
    return {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "groups": groups,
        "dilation": dilation,
    }


@pytest.mark.parametrize("case", TRANSPOSED, ids=lambda c: f"x{c[0]}-w{c[1]}")
@pytest.mark.parametrize("dtype", [F32, F64])
def test_conv_transpose2d_and_backward_match_the_scatter_reference(case, dtype, device, rng):
    x_shape, w_shape, *rest = case
    options = _options(*rest)
    x, w = rand(rng, x_shape, dtype), rand(rng, w_shape, dtype)
    b = rand(rng, (w_shape[1] * options["groups"],), dtype)
    want = ref.conv_transpose2d_ref(x, w, b, **options)
    poison_heap((want.shape, dtype))
    dx, dw, db = on_device(device, x, w, b)
    check(ops.conv_transpose2d(dx, dw, db, **options), want, dtype, "y")
    check(ops.conv_transpose2d(dx, dw, **options), ref.conv_transpose2d_ref(x, w, **options), dtype, "y, no bias")
    g = rand(rng, want.shape, dtype)
    grads = ref.conv_transpose2d_backward_ref(g, x, w, **options)
    for needs in ((True, True, True), (True, False, False), (False, True, False), (False, False, True)):
        got = ops.conv_transpose2d_backward(on_device(device, g), dx, dw, needs=needs, **options)
        for name, value, expected, need in zip(("grad_x", "grad_w", "grad_b"), got, grads, needs):
            if need:  # a zero batch gives zero weight and bias gradients: compared exactly
                check(value, expected, dtype, f"{name} {needs}", floor=1e-30 if x_shape[0] == 0 else 0.0)
            else:
                assert value is None, f"{name} computed though needs={needs}"


def test_conv_transpose2d_is_the_adjoint_of_conv2d(rng):
    # <conv_transpose2d(y, w), x> == <y, conv2d(x, w)>: the defining identity, checked independently
    # of the reference.
    x, w = rng.standard_normal((2, 4, 9, 8)), rng.standard_normal((6, 2, 3, 2))
    options = {"stride": (2, 3), "padding": (1, 0), "groups": 2, "dilation": (1, 2)}
    y = ops.conv2d(x, w, **options)
    g = rng.standard_normal(y.shape)
    xt = ops.conv_transpose2d(g, w, output_padding=(0, 2), **options)
    assert xt.shape == x.shape
    assert np.isclose(np.vdot(xt, x), np.vdot(g, y), rtol=1e-12)


ONE_D = [  # (x shape, w shape, stride, padding, dilation, groups)
    ((2, 4, 11), (6, 2, 3), 2, 1, 2, 2),
    ((3, 5), (4, 3, 2), 1, "same", 3, 1),
    ((0, 3, 7), (3, 1, 4), 3, "valid", 1, 3),
    ((1, 2, 1), (5, 2, 1), 1, 0, 1, 1),
]


@pytest.mark.parametrize("case", ONE_D, ids=lambda c: f"x{c[0]}-w{c[1]}")
def test_conv1d_is_conv2d_on_a_height_of_one(case, rng):
    x_shape, w_shape, stride, padding, dilation, groups = case
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    pair = padding if isinstance(padding, str) else (0, padding)
    want = ref.conv2d_ref(x[..., None, :], w[..., None, :], b, (1, stride), pair, (1, dilation), groups)[..., 0, :]
    got = F.conv1d(x, w, b, stride=stride, padding=padding, dilation=(dilation,), groups=groups)
    check(got.numpy(), want, F64, "conv1d")


TRANSPOSED_1D = [  # (x shape, w shape, stride, padding, output_padding, groups, dilation)
    ((2, 3, 5), (3, 2, 3), 2, 1, 1, 1, 1),
    ((3, 4, 3), (4, 3, 2), 3, 0, 2, 2, 1),
    ((0, 6, 4), (6, 1, 3), 1, 1, 1, 6, 2),
    ((3, 2), (3, 5, 2), 2, 0, 0, 1, 2),
]


@pytest.mark.parametrize("case", TRANSPOSED_1D, ids=lambda c: f"x{c[0]}-w{c[1]}")
def test_conv_transpose1d_is_conv_transpose2d_on_a_height_of_one(case, rng):
    x_shape, w_shape, stride, padding, output_padding, groups, dilation = case
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[1] * groups)
    options = _options((1, stride), (0, padding), (0, output_padding), groups, (1, dilation))
    want = ref.conv_transpose2d_ref(x[..., None, :], w[..., None, :], b, **options)[..., 0, :]
    got = F.conv_transpose1d(x, w, b, (stride,), padding, output_padding, groups, dilation)
    check(got.numpy(), want, F64, "conv_transpose1d")


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pool1d_is_pool2d_on_a_height_of_one(ceil_mode, rng):
    x = rng.standard_normal((2, 3, 13))
    out, idx = F.max_pool1d(x, 4, 3, 2, 2, ceil_mode, return_indices=True)
    want, want_idx = ref.max_pool2d_ref(x[..., None, :], (1, 4), (1, 3), (0, 2), (1, 2), ceil_mode)
    check(out.numpy(), want[..., 0, :], F64, "max_pool1d")
    np.testing.assert_array_equal(idx.numpy(), want_idx[..., 0, :])
    for include in (False, True):
        got = F.avg_pool1d(x[0], (3,), 2, 1, ceil_mode, include)
        want = ref.avg_pool2d_ref(x[:1, :, None, :], (1, 3), (1, 2), (0, 1), ceil_mode, include)[0, :, 0, :]
        check(got.numpy(), want, F64, f"avg_pool1d count_include_pad={include}")


def test_gradients_by_finite_differences(rng):
    def t(shape):
        return dk.tensor(rng.standard_normal(shape), requires_grad=True)

    gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1, 1, 2, (1, 2)), t((2, 4, 3, 2)), t((4, 1, 2, 3)), t(2))
    gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, 1, 0, 1, 1, 2), t((3, 2, 2)), t((3, 2, 2, 2)), t(2))
    gradcheck(lambda x, w, b: F.conv_transpose1d(x, w, b, 3, 1, 2, 1, 1), t((2, 2, 4)), t((2, 3, 3)), t(3))
    gradcheck(lambda x, w, b: F.conv1d(x, w, b, 2, 1, 2, 2), t((2, 4, 9)), t((2, 2, 3)), t(2))
    gradcheck(lambda x: F.max_pool1d(x, 3, 2, 1, ceil_mode=True), t((2, 3, 8)))
    gradcheck(lambda x: F.avg_pool1d(x, 3, 2, 1, count_include_pad=False), t((3, 7)))


def test_one_d_ops_run_on_views_of_their_inputs():
    x = dk.tensor(np.arange(12.0).reshape(1, 2, 6), requires_grad=True)
    y = F.avg_pool1d(x, 1)  # the identity: the kernel read the input through a (N, C, 1, L) view
    np.testing.assert_array_equal(y.detach().numpy(), x.detach().numpy())
    view = x.unsqueeze(-2)
    assert np.shares_memory(view.detach().numpy(), x.detach().numpy())


# ---- PyTorch: the same calls, results and gradients ---------------------------------------------


def _against_torch(torch, ours, theirs, arrays, args, what):
    """ours(*Tensors, *args) and theirs(*torch tensors, *args) give the same output(s) and input
    gradients."""
    mine = [dk.tensor(a, requires_grad=True) for a in arrays]
    tt = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, out_t = ours(*mine, *args), theirs(*tt, *args)
    if isinstance(out, tuple):
        np.testing.assert_array_equal(out[1].numpy(), out_t[1].numpy(), err_msg=f"{what} indices")
        out, out_t = out[0], out_t[0]
    check(out.detach().numpy(), out_t.detach().numpy(), F64, f"{what} output")
    g = np.random.default_rng(len(what)).standard_normal(out.shape)
    out.backward(dk.tensor(g))
    out_t.backward(torch.tensor(g))
    for i, (a, b) in enumerate(zip(mine, tt)):
        check(a.grad.numpy(), b.grad.numpy(), F64, f"{what} grad {i}", floor=1e-30)


def test_one_element_tuples_serve_both_dimensions_like_torch(rng):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x, w = rng.standard_normal((1, 2, 7, 6)), rng.standard_normal((3, 2, 3, 3))
    args = dict(stride=(2,), padding=(1,), dilation=(2,))
    np.testing.assert_allclose(
        F.conv2d(dk.tensor(x), dk.tensor(w), **args).numpy(),
        tf.conv2d(torch.tensor(x), torch.tensor(w), **args).numpy(),
        rtol=1e-12,
        atol=1e-12,
    )
    wt = rng.standard_normal((2, 3, 3, 3))
    args = dict(stride=(2,), padding=(1,), output_padding=(1,))
    np.testing.assert_allclose(
        F.conv_transpose2d(dk.tensor(x), dk.tensor(wt), **args).numpy(),
        tf.conv_transpose2d(torch.tensor(x), torch.tensor(wt), **args).numpy(),
        rtol=1e-12,
        atol=1e-12,
    )


def test_random_configurations_match_torch(rng):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    checked = 0
    for _ in range(40):
        groups = int(rng.choice([1, 2, 3]))
        c, k = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
        kernel = tuple(int(v) for v in rng.integers(1, 4, 2))
        stride, dilation = (tuple(int(v) for v in rng.integers(1, 4, 2)) for _ in range(2))
        output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
        padding = tuple(int(v) for v in rng.integers(0, 3, 2))
        n, h, w = int(rng.choice([0, 1, 3])), int(rng.integers(1, 6)), int(rng.integers(1, 6))
        x, wt = rng.standard_normal((n, c, h, w)), rng.standard_normal((c, k // groups) + kernel)
        b = rng.standard_normal(k)
        args = (stride, padding, output_padding, groups, dilation)
        sizes = [
            (m - 1) * s - 2 * p + d * (r - 1) + o + 1
            for m, s, p, d, r, o in zip((h, w), *args[:2], dilation, kernel, output_padding)
        ]
        if min(sizes) < 1:
            with raises_naming(ValueError, "conv_transpose2d", "output size"):
                F.conv_transpose2d(x, wt, b, *args)
            continue
        _against_torch(
            torch,
            F.conv_transpose2d,
            tf.conv_transpose2d,
            (x, wt, b),
            args,
            f"conv_transpose2d {args}",
        )
        one_d = tuple(v[1] for v in args[:3]) + (groups, dilation[1])
        _against_torch(
            torch,
            F.conv_transpose1d,
            tf.conv_transpose1d,
            (x[:, :, 0], wt[:, :, 0], b),
            one_d,
            f"conv_transpose1d {one_d}",
        )
        if w + 2 * padding[1] > dilation[1] * (kernel[1] - 1):
            conv = (stride[1], padding[1], dilation[1], groups)
            wc = rng.standard_normal((k, c // groups, kernel[1]))
            _against_torch(
                torch,
                F.conv1d,
                tf.conv1d,
                (x[:, :, 0], wc, b),
                conv,
                f"conv1d {conv}",
            )
        checked += 1
    assert checked >= 10, f"only {checked} configurations compared"


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pool1d_matches_torch(ceil_mode, rng):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    for length, kernel, stride, padding, dilation in (
        (9, 3, 2, 1, 1),
        (10, 4, 3, 2, 2),
        (5, 2, None, 0, 1),
        (1, 1, 1, 0, 1),
    ):
        x = rng.standard_normal((2, 3, length))
        window = (kernel, stride, padding, dilation, ceil_mode, True)
        _against_torch(torch, F.max_pool1d, tf.max_pool1d, (x,), window, f"max_pool1d {window}")
        for include in (True, False):
            avg = (kernel, stride, padding, ceil_mode, include)
            _against_torch(torch, F.avg_pool1d, tf.avg_pool1d, (x[0],), avg, f"avg_pool1d {avg}")


LAYERS = [
    ("Conv1d", (4, 6, 3), {"stride": 2, "padding": 1, "dilation": 2, "groups": 2}, (2, 4, 11)),
    ("Conv1d", (3, 2, 4), {"padding": "same", "bias": False}, (3, 7)),
    (
        "ConvTranspose1d",
        (4, 6, 3),
        {"stride": 3, "padding": 1, "output_padding": 1, "groups": 2, "dilation": 2},
        (2, 4, 5),
    ),
    ("ConvTranspose2d", (4, 6, (3, 2)), {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}, (2, 4, 5, 3)),
    ("ConvTranspose2d", (3, 2, 4), {"bias": False, "dilation": (2, 1), "output_padding": (1, 0)}, (3, 4, 4)),
    ("MaxPool1d", (3,), {"stride": 2, "padding": 1, "ceil_mode": True}, (2, 3, 8)),
    ("AvgPool1d", (3,), {"stride": 2, "padding": 1, "count_include_pad": False}, (2, 3, 8)),
]


@pytest.mark.parametrize("name, args, kwargs, shape", LAYERS, ids=lambda v: v if isinstance(v, str) else "")
def test_layers_load_torch_state_dicts_and_match_torch(name, args, kwargs, shape, rng):
    torch = pytest.importorskip("torch")
    theirs, ours = getattr(torch.nn, name)(*args, **kwargs).double(), getattr(nn, name)(*args, **kwargs).double()
    assert repr(ours) == repr(theirs)
    state = {k: v.numpy() for k, v in theirs.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in state.items()}
    ours.load_state_dict(state)
    x = rng.standard_normal(shape)
    xd, xt = dk.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, out_t = ours(xd), theirs(xt)
    check(out.detach().numpy(), out_t.detach().numpy(), F64, f"{name} output")
    g = rng.standard_normal(out.shape)
    out.backward(dk.tensor(g))
    out_t.backward(torch.tensor(g))
    check(xd.grad.numpy(), xt.grad.numpy(), F64, f"{name} input grad", floor=1e-30)
    for key, p in ours.named_parameters():
        check(p.grad.numpy(), dict(theirs.named_parameters())[key].grad.numpy(), F64, f"{name} {key} grad")


@pytest.mark.parametrize("name", ["Conv1d", "ConvTranspose1d", "ConvTranspose2d"])
def test_conv_layers_have_torchs_shapes_dtype_and_init(name):
    layer = getattr(nn, name)(6, 4, 3, groups=2)
    transposed = name.startswith("ConvTranspose")
    kernel = (3,) * (1 if name.endswith("1d") else 2)
    assert layer.weight.shape == ((6, 2) if transposed else (4, 3)) + kernel
    assert layer.bias.shape == (4,) and layer.weight.dtype == F32
    fan_in = layer.weight.shape[1] * math.prod(kernel)  # kaiming_uniform_(a=sqrt(5)): U(+-1/sqrt(fan_in))
    for p in (layer.weight, layer.bias):
        values = p.detach().numpy()
        assert np.abs(values).max() <= 1 / math.sqrt(fan_in) and np.unique(values).size == values.size


def test_conv_transpose_output_size_picks_the_output_padding(rng):
    torch = pytest.importorskip("torch")
    theirs = torch.nn.ConvTranspose2d(3, 2, 3, stride=(2, 3), padding=1).double()
    ours = nn.ConvTranspose2d(3, 2, 3, stride=(2, 3), padding=1).double()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = rng.standard_normal((2, 3, 4, 3))
    for size in ((7, 7), (8, 9), (2, 2, 8, 8), [7, 8]):
        out, out_t = ours(dk.tensor(x), output_size=size), theirs(torch.tensor(x), output_size=size)
        check(out.detach().numpy(), out_t.detach().numpy(), F64, f"output_size={size}")
    for size in ((6, 7), (7, 10), (7,)):
        with raises_naming(ValueError, "ConvTranspose2d", "output_size", re_escape(size)):
            ours(dk.tensor(x), output_size=size)
    layer = nn.ConvTranspose1d(2, 2, 3, stride=2)
    assert layer(dk.tensor(rng.standard_normal((2, 4)), dtype=np.float32), output_size=[10]).shape == (2, 10)


def re_escape(value):
    return shape_pattern(value) if isinstance(value, tuple) else str(value)


def test_dcgan_generator_matches_torch(rng):
    torch = pytest.importorskip("torch")

    def generator(nn, nz=8, ngf=4):
        return nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    torch.manual_seed(0)
    theirs, ours = generator(torch.nn).double(), generator(nn).double()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    z = rng.standard_normal((5, 8, 1, 1))
    zd, zt = dk.tensor(z, requires_grad=True), torch.tensor(z, requires_grad=True)
    out, out_t = ours(zd), theirs(zt)
    assert out.shape == (5, 3, 32, 32)
    check(out.detach().numpy(), out_t.detach().numpy(), F64, "generator output", tol=1e-10)
    g = rng.standard_normal(out.shape)
    out.backward(dk.tensor(g))
    out_t.backward(torch.tensor(g))
    check(zd.grad.numpy(), zt.grad.numpy(), F64, "grad z", tol=1e-10)
    for key, p in theirs.named_parameters():
        check(dict(ours.named_parameters())[key].grad.numpy(), p.grad.numpy(), F64, f"grad {key}", tol=1e-10)
    for key, value in theirs.state_dict().items():  # the running statistics
        np.testing.assert_allclose(ours.state_dict()[key].numpy(), value.numpy(), rtol=1e-10, err_msg=key)


# ---- bad arguments ------------------------------------------------------------------------------

X, W = np.zeros((2, 4, 5, 5)), np.zeros((4, 3, 3, 3))


@pytest.mark.parametrize(
    "call, exc, needles",
    [
        (
            lambda: ops.conv_transpose2d(X, W, stride=2, output_padding=2),
            ValueError,
            ["output_padding", r"stride \(2, 2\)"],
        ),
        (lambda: ops.conv_transpose2d(X, W, output_padding=(0, 1)), ValueError, ["output_padding", "dilation"]),
        (lambda: ops.conv_transpose2d(X, W, groups=3), ValueError, ["groups=3", "C=4"]),
        (lambda: ops.conv_transpose2d(X, np.zeros((3, 3, 3, 3))), ValueError, ["w", r"\(3, 3, 3, 3\)", "C=4"]),
        (lambda: ops.conv_transpose2d(X, W, np.zeros(4)), ValueError, ["b", r"\(3,\)"]),
        (lambda: ops.conv_transpose2d(X, W, padding="same"), TypeError, ["padding", "same"]),
        (lambda: ops.conv_transpose2d(X, W, padding=4), ValueError, ["output size", "padding"]),
        (lambda: ops.conv_transpose2d(X[:, :, :0], W), ValueError, ["x", r"\(2, 4, 0, 5\)"]),
        (lambda: ops.conv_transpose2d(X[0, 0], W), ValueError, ["x", "4-D", r"\(5, 5\)"]),
        (lambda: ops.conv_transpose2d(X, W.astype(np.float32)), TypeError, ["dtype", "float32"]),
        (lambda: ops.conv_transpose2d(X, W, stride=0), ValueError, ["stride", ">= 1"]),
        (
            lambda: ops.conv_transpose2d_backward(np.zeros((2, 3, 6, 6)), X, W),
            ValueError,
            ["grad_out", r"\(2, 3, 7, 7\)", r"\(2, 3, 6, 6\)"],
        ),
        (lambda: ops.conv_transpose2d_backward(np.zeros((2, 3, 7, 7)), X, W, needs=(True,)), ValueError, ["needs"]),
        (lambda: F.conv1d(X, W[:, :, 0]), ValueError, ["conv1d", "input", r"\(2, 4, 5, 5\)"]),
        (lambda: F.conv1d(X[:, :, 0], W), ValueError, ["conv1d", "weight", r"\(4, 3, 3, 3\)"]),
        (lambda: F.conv1d(X[:, :, 0], W[:, :, 0], stride=(1, 2)), ValueError, ["conv1d", "stride", r"\(1, 2\)"]),
        (lambda: F.conv1d(X[:, :, 0], W[:3, :, 0], groups=2), ValueError, ["conv1d", "groups=2"]),
        (
            lambda: F.conv_transpose1d(X[:, :, 0], W[:, :, 0], stride=2, output_padding=2),
            ValueError,
            ["conv_transpose1d", "output_padding"],
        ),
        (lambda: F.max_pool1d(X[:, :, 0], 2, padding=2), ValueError, ["max_pool1d", "padding"]),
        (lambda: F.avg_pool1d(X[:, :, 0], 7), ValueError, ["avg_pool1d", "empty"]),
        (lambda: F.max_pool1d(X, 2), ValueError, ["max_pool1d", "input", r"\(2, 4, 5, 5\)"]),
        (
            lambda: nn.ConvTranspose2d(4, 3, 3, stride=2, output_padding=2),
            ValueError,
            ["ConvTranspose2d", "output_padding"],
        ),
        (lambda: nn.ConvTranspose1d(4, 3, 3, padding="same"), ValueError, ["ConvTranspose1d", "padding"]),
        (lambda: nn.Conv1d(4, 3, 3, groups=2), ValueError, ["Conv1d", "groups=2"]),
        (lambda: nn.Conv1d(4, 3, 3)(dk.zeros(2, 3, 5)), ValueError, ["Conv1d", r"\(2, 3, 5\)", r"\(N, 4, L\)"]),
        (lambda: nn.ConvTranspose2d(4, 3, 3)(dk.zeros(4, 5)), ValueError, ["ConvTranspose2d", r"\(4, 5\)"]),
        (lambda: nn.MaxPool1d(2)(dk.zeros(2, 3, 4, 5)), ValueError, ["MaxPool1d", r"\(N, C, L\)"]),
        (lambda: nn.AvgPool1d(3)(dk.zeros(2, 3, 2)), ValueError, ["AvgPool1d", "empty"]),
    ],
)
def test_bad_arguments_raise_naming_them(call, exc, needles):
    with raises_naming(exc, *needles):
        call()


def test_device_results_stay_on_the_device(device, rng):
    x, w = rand(rng, (2, 4, 3, 3), F32), rand(rng, (4, 2, 3, 3), F32)
    y = ops.conv_transpose2d(*on_device(device, x, w), stride=2)
    assert dk.backends.device_of(y).type == device
    check(to_host(y), ref.conv_transpose2d_ref(x, w, stride=2), F32, "y")
