"""deepkern.nn.init and the layers' default initialisation: PyTorch's gains, fans, bounds and
standard deviations (checked on large tensors, and against torch's own layers where PyTorch is
installed), dtype kept, repeatability under manual_seed, and bad arguments."""

from __future__ import annotations

import math

import deepkern as dk
import numpy as np
import pytest
from deepkern import nn
from deepkern.nn import init

from checks import raises_naming

GAINS = [
    ("linear", None, 1.0),
    ("conv2d", None, 1.0),
    ("sigmoid", None, 1.0),
    ("tanh", None, 5 / 3),
    ("relu", None, math.sqrt(2)),
    ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
    ("leaky_relu", 0.2, math.sqrt(2 / 1.04)),
    ("leaky_relu", math.sqrt(5), math.sqrt(1 / 3)),
    ("selu", None, 0.75),
]


@pytest.mark.parametrize("name, param, gain", GAINS)
def test_calculate_gain(name, param, gain):
    assert init.calculate_gain(name, param) == pytest.approx(gain, rel=1e-15)


def test_calculate_gain_matches_torch():
    torch = pytest.importorskip("torch")
    for name, param, _ in GAINS:
        assert init.calculate_gain(name, param) == pytest.approx(
            torch.nn.init.calculate_gain(name, param), rel=1e-15
        ), (name, param)


def _std_close(arr, std, rel=0.03):
    assert abs(arr.std() / std - 1) < rel, f"std {arr.std():.5g}, expected {std:.5g}"
    assert abs(arr.mean()) < 4 * std / math.sqrt(arr.size)


def test_uniform_normal_constant_keep_dtype_and_fill():
    t = dk.empty(300, 400)
    assert init.uniform_(t, -2, 3) is t and t.dtype == np.float32
    a = t.numpy()
    assert a.min() >= -2 and a.max() <= 3 and abs(a.mean() - 0.5) < 0.02
    init.normal_(t, 1.5, 0.5)
    assert abs(t.numpy().mean() - 1.5) < 0.01 and abs(t.numpy().std() - 0.5) < 0.01
    for fn, value in ((lambda x: init.constant_(x, 0.25), 0.25), (init.zeros_, 0), (init.ones_, 1)):
        fn(t)
        assert np.all(t.numpy() == value)


def test_xavier_uses_fan_in_plus_fan_out():
    t = dk.empty(200, 100, 3, 3, dtype=dk.float64)  # fan_in 900, fan_out 1800
    init.xavier_uniform_(t, gain=2.0)
    bound = 2.0 * math.sqrt(6 / 2700)
    assert np.abs(t.numpy()).max() <= bound and np.abs(t.numpy()).max() > 0.999 * bound
    _std_close(t.numpy(), bound / math.sqrt(3))
    init.xavier_normal_(t)
    _std_close(t.numpy(), math.sqrt(2 / 2700))


@pytest.mark.parametrize("mode, fan", [("fan_in", 900), ("fan_out", 1800)])
def test_kaiming_fan_modes_and_gains(mode, fan):
    t = dk.empty(200, 100, 3, 3)
    init.kaiming_uniform_(t, mode=mode)  # leaky_relu with a=0: gain sqrt(2)
    bound = math.sqrt(2) * math.sqrt(3 / fan)
    assert np.abs(t.numpy()).max() <= bound * (1 + 1e-6)
    _std_close(t.numpy(), bound / math.sqrt(3))
    init.kaiming_normal_(t, a=0.1, mode=mode, nonlinearity="leaky_relu")
    _std_close(t.numpy(), math.sqrt(2 / 1.01) / math.sqrt(fan))
    init.kaiming_normal_(t, mode=mode, nonlinearity="tanh")
    _std_close(t.numpy(), (5 / 3) / math.sqrt(fan))


def test_manual_seed_and_generator_make_initialisation_repeatable():
    dk.manual_seed(5)
    a = nn.Linear(7, 4)
    dk.manual_seed(5)
    b = nn.Linear(7, 4)
    np.testing.assert_array_equal(a.weight.detach().numpy(), b.weight.detach().numpy())
    np.testing.assert_array_equal(a.bias.detach().numpy(), b.bias.detach().numpy())
    t1, t2 = dk.empty(3, 4), dk.empty(3, 4)
    init.normal_(t1, generator=np.random.default_rng(1))
    init.normal_(t2, generator=np.random.default_rng(1))
    np.testing.assert_array_equal(t1.numpy(), t2.numpy())


# layer -> (the layer from a module namespace (deepkern.nn or torch.nn), its weight's fan_in)
LAYER_INIT = {
    "Linear": (lambda nn: nn.Linear(400, 300), 400),
    "Conv2d": (lambda nn: nn.Conv2d(32, 64, 3), 288),
    "Conv2d_groups": (lambda nn: nn.Conv2d(32, 64, (3, 5), groups=4), 120),
}


@pytest.mark.parametrize("name", sorted(LAYER_INIT))
def test_linear_and_conv_defaults_are_pytorchs(name):
    make, fan_in = LAYER_INIT[name]
    layer = make(nn)
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) and the bias rule both give this
    for p in (layer.weight.detach().numpy(), layer.bias.detach().numpy()):
        assert p.dtype == np.float32 and np.abs(p).max() <= bound
    assert np.abs(layer.weight.detach().numpy()).max() > 0.99 * bound
    _std_close(layer.weight.detach().numpy(), bound / math.sqrt(3))


@pytest.mark.parametrize("name", sorted(LAYER_INIT))
def test_linear_and_conv_init_statistics_match_torch(name):
    torch = pytest.importorskip("torch")
    make, _ = LAYER_INIT[name]
    dk.manual_seed(0)  # both generators seeded: the draws do not depend on what earlier tests drew
    torch.manual_seed(0)
    ours, theirs = make(nn), make(torch.nn)
    for pname in ("weight", "bias"):
        a, b = getattr(ours, pname).detach().numpy(), getattr(theirs, pname).detach().numpy()
        assert abs(np.abs(a).max() / np.abs(b).max() - 1) < 0.05, pname
        tol = 0.05 if a.size > 1000 else 0.25  # a bias has a few dozen values
        assert abs(a.std() / b.std() - 1) < tol, pname


def test_batch_norm_and_embedding_defaults():
    bn = nn.BatchNorm2d(5)
    np.testing.assert_array_equal(bn.weight.detach().numpy(), np.ones(5, np.float32))
    np.testing.assert_array_equal(bn.bias.detach().numpy(), np.zeros(5, np.float32))
    np.testing.assert_array_equal(bn.running_var.numpy(), np.ones(5, np.float32))
    assert bn.num_batches_tracked.numpy() == 0 and bn.num_batches_tracked.dtype == np.int64
    emb = nn.Embedding(300, 200, padding_idx=3)
    w = emb.weight.detach().numpy()
    assert np.all(w[3] == 0)
    _std_close(np.delete(w, 3, axis=0), 1.0)


def test_bad_arguments():
    with raises_naming(ValueError, "fewer than 2 dimensions", r"\(5,\)"):
        init.xavier_uniform_(dk.empty(5))
    with raises_naming(ValueError, "mode", "'fan_avg'"):
        init.kaiming_uniform_(dk.empty(3, 4), mode="fan_avg")
    with raises_naming(ValueError, "unsupported nonlinearity", "'swish'"):
        init.calculate_gain("swish")
    with raises_naming(ValueError, "negative_slope", "'x'"):
        init.calculate_gain("leaky_relu", "x")
    with pytest.warns(UserWarning, match="zero-element"):
        init.kaiming_normal_(dk.empty(0, 3))


def test_trunc_normal_is_the_truncated_distribution():
    """Every value in [a, b] (absolute bounds), and the mean and spread of N(mean, std^2) truncated
    there: checked against the truncated normal's moments on 200k draws."""
    from math import erf, exp, pi, sqrt

    t = dk.empty(400, 500)
    mean, std, a, b = 0.5, 2.0, -1.0, 3.0
    assert init.trunc_normal_(t, mean, std, a, b) is t
    v = t.detach().numpy().astype(np.float64)
    assert v.min() >= a and v.max() <= b and t.dtype == np.float32
    alpha, beta = (a - mean) / std, (b - mean) / std
    pdf = [exp(-z * z / 2) / sqrt(2 * pi) for z in (alpha, beta)]
    mass = 0.5 * (erf(beta / sqrt(2)) - erf(alpha / sqrt(2)))
    want_mean = mean + std * (pdf[0] - pdf[1]) / mass
    want_var = std**2 * (1 + (alpha * pdf[0] - beta * pdf[1]) / mass - ((pdf[0] - pdf[1]) / mass) ** 2)
    assert abs(v.mean() - want_mean) < 5 * math.sqrt(want_var / v.size)
    assert abs(v.var() / want_var - 1) < 0.02
    with raises_naming(ValueError, "a must be less than b"):
        init.trunc_normal_(t, a=1.0, b=1.0)


@pytest.mark.parametrize("shape", [(6, 6), (3, 8), (8, 3), (4, 2, 3, 3)])
def test_orthogonal_rows_or_columns_are_orthonormal_times_gain(shape):
    t = init.orthogonal_(dk.empty(*shape, dtype=dk.float64), gain=1.5)
    m = t.numpy().reshape(shape[0], -1) / 1.5
    small = min(m.shape)
    gram = m @ m.T if m.shape[0] == small else m.T @ m
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-12)
    with raises_naming(ValueError, "orthogonal_", "2 dimensions"):
        init.orthogonal_(dk.empty(4))


def test_eye_and_dirac_are_identity_maps(rng):
    np.testing.assert_array_equal(init.eye_(dk.empty(3, 5)).numpy(), np.eye(3, 5))
    w = init.dirac_(dk.empty(6, 3, 3, 3), groups=2)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    y = dk.nn.functional.conv2d(dk.tensor(x), w, padding=1).numpy()
    np.testing.assert_array_equal(y[:, :3], x)  # each group copies the input channels it can
    np.testing.assert_array_equal(y[:, 3:], x)
    with raises_naming(ValueError, "dirac_", "divisible by groups"):
        init.dirac_(dk.empty(5, 3, 3, 3), groups=2)


def test_deterministic_initialisers_equal_torchs():
    torch = pytest.importorskip("torch")
    for shape, groups in (((6, 3, 3, 3), 2), ((4, 4, 3), 1), ((3, 5, 2, 3, 3), 3)):
        theirs = torch.nn.init.dirac_(torch.empty(*shape), groups=groups).numpy()
        np.testing.assert_array_equal(init.dirac_(dk.empty(*shape), groups=groups).numpy(), theirs)
    np.testing.assert_array_equal(init.eye_(dk.empty(4, 2)).numpy(), torch.nn.init.eye_(torch.empty(4, 2)).numpy())


@pytest.mark.parametrize("a, b, mean", [(6.0, 7.0, 6.1576), (-7.0, -6.0, -6.1576), (2.5, 10.0, 2.8228)])
def test_trunc_normal_far_in_a_tail_is_fast_and_exact(a, b, mean):
    """An interval holding almost none of the distribution (6 to 7 standard deviations out) is drawn
    by the inverse CDF, not by redrawing: values in [a, b] with the truncated mean."""
    t = init.trunc_normal_(dk.empty(20000, dtype=dk.float64), 0.0, 1.0, a, b)
    v = t.numpy()
    assert v.min() >= a and v.max() <= b
    assert abs(v.mean() - mean) < 0.01
