"""The 3-D convolution (F.conv3d, nn.Conv3d), which runs one 2-D convolution with the depth taps as
channels: against a direct float64 NumPy reference, finite differences and, where PyTorch is
installed, PyTorch itself."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern import nn
from deepkern.nn import functional as F

from checks import gradcheck, rand
from reference import rel_error


def _pairs(padding, kernel, dilation):
    if padding == "valid":
        return [(0, 0)] * 3
    if padding == "same":
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return [(t // 2, t - t // 2) for t in totals]
    padding = padding if isinstance(padding, tuple) else (padding,) * 3
    return [(p, p) for p in padding]


def conv3d_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Direct float64 3-D convolution: one product per kernel tap, summed."""
    stride = stride if isinstance(stride, tuple) else (stride,) * 3
    dilation = dilation if isinstance(dilation, tuple) else (dilation,) * 3
    unbatched = x.ndim == 4
    x = np.asarray(x, np.float64)[None] if unbatched else np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    k, c_group, *kernel = w.shape
    x = np.pad(x, [(0, 0), (0, 0)] + _pairs(padding, kernel, dilation))
    out = [(n - d * (t - 1) - 1) // s + 1 for n, t, s, d in zip(x.shape[2:], kernel, stride, dilation)]
    y = np.zeros((x.shape[0], k) + tuple(out))
    k_group = k // groups
    for g in range(groups):
        xs, ks = slice(g * c_group, (g + 1) * c_group), slice(g * k_group, (g + 1) * k_group)
        for taps in np.ndindex(*kernel):
            window = tuple(slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, o, s in zip(taps, dilation, out, stride))
            patch = x[(slice(None), xs) + window]
            y[:, ks] += np.einsum("ncdhw,kc->nkdhw", patch, w[(ks, slice(None)) + taps])
    if b is not None:
        y += np.asarray(b, np.float64).reshape(1, k, 1, 1, 1)
    return y[0] if unbatched else y


# (x shape, w shape, stride, padding, dilation, groups): odd sizes, every argument per dimension,
# groups (depthwise too), 'same' with even kernels, 'valid', a zero batch, an unbatched input.
CASES = [
    ((2, 3, 5, 6, 7), (4, 3, 3, 3, 3), 1, 0, 1, 1),
    ((2, 4, 7, 6, 5), (6, 2, 2, 3, 1), (2, 1, 2), (1, 0, 1), (2, 1, 1), 2),
    ((1, 3, 4, 5, 6), (2, 3, 2, 2, 4), 1, "same", (1, 2, 1), 1),
    ((3, 4, 5, 6), (2, 3, 1, 3, 3), 1, "valid", 1, 1),
    ((2, 6, 3, 3, 3), (6, 1, 3, 3, 3), 2, 1, 1, 6),
    ((0, 2, 3, 4, 4), (3, 2, 1, 2, 2), 1, (0, 1, 0), 1, 1),
    ((1, 1, 9, 2, 3), (2, 1, 4, 1, 1), (3, 1, 1), (2, 0, 0), (2, 1, 1), 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_conv3d_matches_the_float64_reference(case, dtype):
    x_shape, w_shape, stride, padding, dilation, groups = case
    rng = np.random.default_rng(sum(x_shape) + sum(w_shape))
    x, w, b = rand(rng, x_shape, dtype), rand(rng, w_shape, dtype), rand(rng, (w_shape[0],), dtype)
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    got = F.conv3d(dk.tensor(x), dk.tensor(w), dk.tensor(b), **options)
    expected = conv3d_ref(x, w, b, **options)
    assert got.dtype == dtype and got.shape == expected.shape and got.is_contiguous()
    assert rel_error(got.numpy(), expected) < (2e-6 if dtype == np.float32 else 1e-13)
    strided = np.ascontiguousarray(np.swapaxes(x, -1, -2)).swapaxes(-1, -2)  # the same values, W not contiguous
    assert rel_error(
        F.conv3d(dk.tensor(strided), dk.tensor(w), None, **options).numpy(), expected - b.reshape(-1, 1, 1, 1)
    ) < (2e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("case", [c for c in CASES if c[0][0] != 0], ids=str)
def test_conv3d_gradients_match_finite_differences(case):
    x_shape, w_shape, stride, padding, dilation, groups = case
    rng = np.random.default_rng(7)
    x = dk.tensor(rng.standard_normal(x_shape), requires_grad=True)
    w = dk.tensor(rng.standard_normal(w_shape), requires_grad=True)
    b = dk.tensor(rng.standard_normal(w_shape[0]), requires_grad=True)
    gradcheck(lambda *t: F.conv3d(*t, stride=stride, padding=padding, dilation=dilation, groups=groups), x, w, b)


@pytest.mark.parametrize(
    "mode,numpy_mode", [("zeros", "constant"), ("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")]
)
def test_conv3d_layer_pads_in_its_mode_and_learns(mode, numpy_mode):
    rng = np.random.default_rng(3)
    layer = nn.Conv3d(
        4, 6, (3, 2, 3), stride=(1, 2, 1), padding=(1, 1, 2), groups=2, padding_mode=mode, dtype=np.float64
    )
    assert layer.weight.shape == (6, 2, 3, 2, 3) and layer.bias.shape == (6,)
    bound = 1 / np.sqrt(2 * 3 * 2 * 3)  # kaiming_uniform_(a=sqrt(5)) over fan_in = 36
    assert np.abs(layer.weight.detach().numpy()).max() <= bound
    x = rng.standard_normal((2, 4, 5, 6, 7))
    padded = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1), (2, 2)], mode=numpy_mode)
    weight, bias = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    expected = conv3d_ref(padded, weight, bias, stride=(1, 2, 1), groups=2)
    assert rel_error(layer(dk.tensor(x)).detach().numpy(), expected) < 1e-13
    assert "Conv3d(4, 6, kernel_size=(3, 2, 3), stride=(1, 2, 1)" in repr(layer)
    with dk.no_grad():  # an eval-mode call under no_grad takes the same path
        assert rel_error(layer.eval()(dk.tensor(x)).numpy(), expected) < 1e-13


def test_conv3d_refuses_bad_arguments_naming_them():
    x, w = dk.tensor(np.ones((1, 3, 4, 4, 4))), dk.tensor(np.ones((2, 3, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"conv3d: input has 2 channels and weight shape \(2, 3, 3, 3, 3\)"):
        F.conv3d(dk.tensor(np.ones((1, 2, 4, 4, 4))), w)
    with pytest.raises(ValueError, match="conv3d: input depth 2 padded to 2 is smaller than the kernel's extent 3"):
        F.conv3d(dk.tensor(np.ones((1, 3, 2, 4, 4))), w)
    with pytest.raises(ValueError, match="conv3d: weight must be 5-D"):
        F.conv3d(x, dk.tensor(np.ones((2, 3, 3, 3))))
    with pytest.raises(ValueError, match=r"conv3d: input must be \(N, C, D, H, W\)"):
        F.conv3d(dk.tensor(np.ones((3, 4, 4))), w)
    with pytest.raises(ValueError, match="conv3d: stride must be an int or a tuple of 3 ints"):
        F.conv3d(x, w, stride=(1, 2))
    with pytest.raises(ValueError, match="conv3d: padding='same' is not supported for strided"):
        F.conv3d(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"conv3d: bias must have shape \(2,\)"):
        F.conv3d(x, w, dk.tensor(np.ones(3)))
    with pytest.raises(
        ValueError, match=r"Conv3d\(3, 2.*input has shape \(1, 2, 4, 4, 4\), expected \(N, 3, D, H, W\)"
    ):
        nn.Conv3d(3, 2, 3)(dk.tensor(np.ones((1, 2, 4, 4, 4), np.float32)))


def test_conv3d_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    x, w, b = rng.standard_normal((2, 4, 6, 5, 7)), rng.standard_normal((6, 2, 3, 2, 3)), rng.standard_normal(6)
    options = dict(stride=(2, 1, 1), padding=(1, 0, 2), dilation=(1, 2, 1), groups=2)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv3d(tx, tw, tb, **options)
    g = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(g))
    dx, dw, db = (dk.tensor(a, requires_grad=True) for a in (x, w, b))
    dy = F.conv3d(dx, dw, db, **options)
    dy.backward(dk.tensor(g))
    for ours, theirs in ((dy, ty), (dx.grad, tx.grad), (dw.grad, tw.grad), (db.grad, tb.grad)):
        np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-10)
