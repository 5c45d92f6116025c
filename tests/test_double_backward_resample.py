"""create_graph=True through pad (every mode), interpolate (every mode), unfold, fold, max_unpool and
what pads through them (max_pool3d, avg_pool3d, local_response_norm): finite differences of the
create_graph gradient, the transposed maps that the second derivatives use, and PyTorch's double
backward in float64."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern.nn import functional as F

from checks import create_graph_gradients, gradcheck

# name -> (op(functional module, x), input shape): the op is linear in x unless it pools by the max
OPS = {
    "pad constant": (lambda f, x: f.pad(x, (1, 2, 0, 1)), (2, 3, 3, 4)),
    "pad constant value crop": (lambda f, x: f.pad(x, (-1, 2, 2, -1), value=0.7), (2, 3, 4, 3)),
    "pad reflect 1d": (lambda f, x: f.pad(x, (2, 1), mode="reflect"), (2, 3, 5)),
    "pad reflect 2d": (lambda f, x: f.pad(x, (1, 2, 2, 0), mode="reflect"), (1, 2, 4, 3)),
    "pad reflect 3d": (lambda f, x: f.pad(x, (1, 0, 0, 1, 1, 1), mode="reflect"), (1, 2, 3, 2, 3)),
    "pad replicate 2d": (lambda f, x: f.pad(x, (3, 1, 0, 2), mode="replicate"), (2, 3, 4)),
    "pad replicate 3d": (lambda f, x: f.pad(x, (1, 2, 1, 0, 0, 1), mode="replicate"), (1, 1, 2, 3, 2)),
    "pad circular 1d": (lambda f, x: f.pad(x, (2, 3), mode="circular"), (2, 2, 5)),
    "pad circular 2d crop": (lambda f, x: f.pad(x, (-1, 2, 1, 1), mode="circular"), (1, 2, 3, 4)),
    "pad circular 3d": (lambda f, x: f.pad(x, (1, 1, 1, 0, 0, 1), mode="circular"), (1, 2, 2, 3, 2)),
    "nearest 1d": (lambda f, x: f.interpolate(x, size=7), (2, 2, 3)),
    "nearest 2d scale": (lambda f, x: f.interpolate(x, scale_factor=(2, 1.5)), (1, 2, 3, 4)),
    "nearest 2d down": (lambda f, x: f.interpolate(x, size=(2, 3)), (1, 2, 5, 4)),
    "nearest 3d": (lambda f, x: f.interpolate(x, scale_factor=1.7), (1, 1, 2, 3, 2)),
    "nearest-exact 1d": (lambda f, x: f.interpolate(x, size=4, mode="nearest-exact"), (2, 2, 7)),
    "nearest-exact 2d": (lambda f, x: f.interpolate(x, scale_factor=1.6, mode="nearest-exact"), (1, 2, 3, 4)),
    "nearest-exact 3d": (lambda f, x: f.interpolate(x, size=(3, 2, 5), mode="nearest-exact"), (1, 1, 2, 3, 2)),
    "linear": (lambda f, x: f.interpolate(x, size=8, mode="linear"), (2, 2, 3)),
    "linear align_corners": (
        lambda f, x: f.interpolate(x, scale_factor=1.5, mode="linear", align_corners=True),
        (1, 2, 5),
    ),
    "bilinear": (lambda f, x: f.interpolate(x, scale_factor=(1.5, 2.3), mode="bilinear"), (1, 2, 3, 4)),
    "bilinear align_corners down": (
        lambda f, x: f.interpolate(x, size=(3, 2), mode="bilinear", align_corners=True),
        (1, 2, 5, 4),
    ),
    "bilinear recompute": (
        lambda f, x: f.interpolate(x, scale_factor=1.7, mode="bilinear", recompute_scale_factor=True),
        (1, 1, 3, 4),
    ),
    "bicubic": (lambda f, x: f.interpolate(x, scale_factor=1.8, mode="bicubic"), (1, 2, 3, 4)),
    "bicubic align_corners": (
        lambda f, x: f.interpolate(x, size=(5, 3), mode="bicubic", align_corners=True),
        (1, 1, 4, 5),
    ),
    "trilinear": (lambda f, x: f.interpolate(x, size=(3, 4, 2), mode="trilinear"), (1, 2, 2, 3, 3)),
    "trilinear align_corners": (
        lambda f, x: f.interpolate(x, scale_factor=1.5, mode="trilinear", align_corners=True),
        (1, 1, 2, 3, 2),
    ),
    "area 1d": (lambda f, x: f.interpolate(x, size=3, mode="area"), (2, 2, 7)),
    "area 2d": (lambda f, x: f.interpolate(x, scale_factor=0.6, mode="area"), (1, 2, 5, 4)),
    "unfold": (lambda f, x: f.unfold(x, (2, 3), dilation=(1, 2), padding=(1, 0), stride=(2, 1)), (2, 2, 5, 7)),
    "unfold unbatched": (lambda f, x: f.unfold(x, 2, stride=2), (3, 4, 5)),
    "fold": (lambda f, x: f.fold(x, (4, 5), (2, 3), stride=(1, 2), padding=(1, 1)), (2, 12, 15)),
    "fold unbatched": (lambda f, x: f.fold(x, (3, 4), 2, dilation=(2, 1)), (8, 3)),
    "max_pool3d": (lambda f, x: f.max_pool3d(x, 2, 1, padding=(1, 0, 1)), (1, 2, 3, 4, 3)),
    "max_pool3d ceil dilation": (
        lambda f, x: f.max_pool3d(x, (2, 3, 2), (2, 1, 2), dilation=(1, 1, 2), ceil_mode=True),
        (2, 1, 4, 3, 5),
    ),
    "avg_pool3d": (lambda f, x: f.avg_pool3d(x, 2, 1, padding=1), (1, 2, 3, 4, 3)),
    "avg_pool3d no pad count ceil": (
        lambda f, x: f.avg_pool3d(x, (3, 2, 2), 2, padding=(1, 1, 0), ceil_mode=True, count_include_pad=False),
        (2, 1, 4, 3, 5),
    ),
    "avg_pool3d divisor": (lambda f, x: f.avg_pool3d(x, 2, (1, 2, 1), divisor_override=3), (2, 3, 3, 4)),
    "local_response_norm 3d": (lambda f, x: f.local_response_norm(x, 3, alpha=0.3, k=1.5), (2, 5, 3)),
    "local_response_norm 4d": (lambda f, x: f.local_response_norm(x, 2, beta=0.6), (2, 4, 3, 2)),
    "local_response_norm 5d": (lambda f, x: f.local_response_norm(x, 4, alpha=0.5), (1, 5, 2, 3, 2)),
    "max_unpool2d": (lambda f, x: f.max_unpool2d(*f.max_pool2d(x, 2, return_indices=True), 2), (2, 2, 5, 4)),
    "max_unpool3d": (lambda f, x: f.max_unpool3d(*f.max_pool3d(x, 2, return_indices=True), 2), (1, 2, 4, 4, 2)),
}

# the linear ops (of their own argument), for the check of their transposes
LINEAR = [name for name in OPS if not name.startswith(("max_", "local_response"))]


def _composite(op, lib):
    """A nonlinear function before and after ``op``."""
    functional = F if lib is dk else lib.nn.functional
    return lambda x: (op(functional, x.tanh() * x) * 1.3).sin() * op(functional, x)


@pytest.mark.parametrize("name", list(OPS))
def test_the_create_graph_gradient_is_differentiable(name):
    """g = d sum(w * y) / d (x, w), y = f(x) with the op inside, is differentiable (its finite differences)."""
    op, shape = OPS[name]
    f = _composite(op, dk)
    rng = np.random.default_rng(len(name))
    x = dk.tensor(rng.standard_normal(shape), requires_grad=True)
    w = dk.tensor(rng.standard_normal(f(x).shape), requires_grad=True)

    gradcheck(create_graph_gradients(lambda x, w: (f(x) * w).sum()), x, w, tol=1e-5)


@pytest.mark.parametrize("name", LINEAR)
def test_the_transposed_map_is_the_op(name):
    """For the linear op A: the create_graph gradient A^T y, differentiated with respect to y along z,
    is A z, and <A x, y> == <x, A^T y> (with the constant pad's value taken out)."""
    op, shape = OPS[name]
    rng = np.random.default_rng(len(name) + 1)
    x = dk.tensor(rng.standard_normal(shape), requires_grad=True)
    out = op(F, x)
    offset = op(F, dk.zeros(shape, dtype=dk.float64)).detach()  # the padding value where the op pads
    y = dk.tensor(rng.standard_normal(out.shape), requires_grad=True)
    (back,) = dk.autograd.grad((out * y).sum(), x, create_graph=True)
    z = dk.tensor(rng.standard_normal(shape))
    (forward_of,) = dk.autograd.grad((back * z).sum(), y)
    applied = (op(F, z) - offset).numpy()
    np.testing.assert_allclose(forward_of.numpy(), applied, rtol=1e-12, atol=1e-12)
    lhs = float(((out.detach() - offset) * y.detach()).sum())
    rhs = float((x.detach() * back.detach()).sum())
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


# overlapping windows repeat an index: the unpooling's gradient (a gather) counts each of them, so the
# first-order gradient is not the derivative (as PyTorch's); compared with PyTorch only
OVERLAPPING = {
    "max_unpool2d overlapping": (
        lambda f, x: f.max_unpool2d(*f.max_pool2d(x, 2, 1, return_indices=True), 2, 1),
        (2, 2, 4, 3),
    ),
}
ZERO_SIZE = {
    "pad constant": (0, 3, 4),
    "pad reflect 1d": (0, 3, 5),
    "nearest 2d scale": (0, 2, 3, 4),
    "bilinear": (0, 2, 3, 4),
    "bicubic": (0, 1, 3, 4),
    "trilinear": (0, 2, 2, 3, 3),
    "unfold": (0, 2, 5, 7),
    "fold": (0, 12, 15),
    "avg_pool3d": (0, 2, 3, 4, 3),
    "local_response_norm 4d": (0, 4, 3, 2),
}
TORCH_CASES = {**OPS, **OVERLAPPING}
TORCH_CASES.update({f"{name} zero-size": (OPS[name][0], shape) for name, shape in ZERO_SIZE.items()})


@pytest.mark.parametrize("name", list(TORCH_CASES))
def test_the_double_backward_matches_pytorch(name):
    """The create_graph gradients with respect to x and the output weight w, then the gradient of a
    nonlinear function of them with respect to x and w, as PyTorch's (float64)."""
    torch = pytest.importorskip("torch")
    op, shape = TORCH_CASES[name]
    rng = np.random.default_rng(len(name) + 2)
    x0 = rng.standard_normal(shape)
    w0 = rng.standard_normal(_composite(op, dk)(dk.tensor(x0)).shape)
    v0 = rng.standard_normal(shape)
    results = []
    for lib in (dk, torch):
        x, w, v = lib.tensor(x0, requires_grad=True), lib.tensor(w0, requires_grad=True), lib.tensor(v0)
        gx, gw = lib.autograd.grad((_composite(op, lib)(x) * w).sum(), (x, w), create_graph=True)
        second = lib.autograd.grad((gx * v).sum() + (gx * gx).sum() + (gw * gw).sum(), (x, w), allow_unused=True)
        results.append([gx.detach().numpy(), gw.detach().numpy()] + [s.numpy() for s in second])
    for ours, theirs in zip(*results):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
