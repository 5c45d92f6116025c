"""create_graph=True through the index-map Functions of the layers: embedding_bag's max, the depth
scatter of conv_transpose3d, fractional max pooling (2-D and 3-D) and the row moves of
pack_padded_sequence / pad_packed_sequence: finite differences of the create_graph gradient and
PyTorch's double backward in float64."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern.nn import functional as F
from deepkern.nn.utils import rnn as dk_rnn

from checks import create_graph_gradients, gradcheck


def _bag_max(lib, weight, x):
    functional = F if lib is dk else lib.nn.functional
    bags = lib.tensor(np.array([0, 2, 2, 5, 1, 4, 0]))
    offsets = lib.tensor(np.array([0, 3, 3, 6]))  # the second bag is empty
    return functional.embedding_bag(bags, (weight * x).tanh() * weight, offsets, mode="max") * x.sum()


def _conv_transpose3d(lib, weight, x):
    functional = F if lib is dk else lib.nn.functional
    y = functional.conv_transpose3d(x.tanh(), weight, stride=(2, 1, 1), padding=(1, 0, 1), dilation=(2, 1, 1))
    return y * y.sin()


def _packed(lib, weight, x):
    utils = dk_rnn if lib is dk else lib.nn.utils.rnn
    packed = utils.pack_padded_sequence((x * weight).tanh(), [4, 2, 3], batch_first=True, enforce_sorted=False)
    data = packed.data * packed.data.cos()
    padded, _ = utils.pad_packed_sequence(packed._replace(data=data), batch_first=True, padding_value=0.5)
    return padded * x[:, :, :1]


def _fractional(lib, weight, x):
    functional = F if lib is dk else lib.nn.functional
    samples = lib.tensor(np.linspace(0.1, 0.9, 2 * 3 * 2).reshape(2, 3, 2))
    y = functional.fractional_max_pool2d((x * weight).tanh(), 2, output_size=(3, 2), _random_samples=samples)
    samples3 = lib.tensor(np.linspace(0.2, 0.8, 2 * 3 * 3).reshape(2, 3, 3))
    z = functional.fractional_max_pool3d(
        (x * weight)[:, :, None].expand(2, 3, 4, 5, 4) * x[:, :, None], 2, output_size=2, _random_samples=samples3
    )
    return y.sin() * y + z.sum() * x.mean()


# name -> (f(lib, weight, x), weight shape, x shape)
CASES = {
    "embedding_bag max": (_bag_max, (6, 4), (6, 4)),
    "conv_transpose3d": (_conv_transpose3d, (2, 3, 3, 2, 2), (2, 2, 3, 3, 2)),
    "pack/pad sequences": (_packed, (3, 4, 2), (3, 4, 2)),
    "fractional_max_pool2d/3d": (_fractional, (2, 3, 5, 4), (2, 3, 5, 4)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_create_graph_gradient_is_differentiable(name):
    f, w_shape, x_shape = CASES[name]
    rng = np.random.default_rng(len(name))
    weight = dk.tensor(rng.standard_normal(w_shape), requires_grad=True)
    x = dk.tensor(rng.standard_normal(x_shape), requires_grad=True)
    out_weight = dk.tensor(rng.standard_normal(f(dk, weight, x).shape))

    gradcheck(create_graph_gradients(lambda weight, x: (f(dk, weight, x) * out_weight).sum()), weight, x, tol=1e-5)


@pytest.mark.parametrize("name", [name for name in CASES if name != "embedding_bag max"])  # PyTorch: no double
def test_the_double_backward_matches_pytorch(name):  # backward through embedding_bag (NotImplementedError)
    torch = pytest.importorskip("torch")
    f, w_shape, x_shape = CASES[name]
    rng = np.random.default_rng(len(name) + 1)
    w0, x0 = rng.standard_normal(w_shape), rng.standard_normal(x_shape)
    out0 = rng.standard_normal(tuple(f(dk, dk.tensor(w0), dk.tensor(x0)).shape))
    results = []
    for lib in (dk, torch):
        weight, x = lib.tensor(w0, requires_grad=True), lib.tensor(x0, requires_grad=True)
        gw, gx = lib.autograd.grad((f(lib, weight, x) * lib.tensor(out0)).sum(), (weight, x), create_graph=True)
        second = lib.autograd.grad((gw * gw).sum() + (gx * gx.sin()).sum(), (weight, x))
        results.append([g.detach().numpy() for g in (gw, gx, *second)])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
