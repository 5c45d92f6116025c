"""The top-level names PyTorch scripts call: RNG state and generators, dtype limits, compile,
deterministic-algorithms switch, logspace, is_tensor."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest

from checks import raises_naming


def test_rng_state_round_trips_every_stream():
    dk.manual_seed(11)
    assert dk.initial_seed() == 11
    state = dk.get_rng_state()
    assert state.dtype == np.uint8 and state.ndim == 1
    first = (dk.randn(4).tolist(), dk.rand(2).tolist(), dk.nn.functional.dropout(dk.ones(64), 0.5).tolist())
    dk.randn(7)  # move on
    dk.set_rng_state(state)
    again = (dk.randn(4).tolist(), dk.rand(2).tolist(), dk.nn.functional.dropout(dk.ones(64), 0.5).tolist())
    assert first == again and dk.initial_seed() == 11
    with raises_naming(ValueError, "set_rng_state", "uint8"):
        dk.set_rng_state(dk.tensor([1.0, 2.0]))
    with raises_naming(ValueError, "set_rng_state"):
        dk.set_rng_state(dk.tensor(np.frombuffer(b"not a state", dtype=np.uint8).copy()))
    fresh = dk.seed()
    assert dk.initial_seed() == fresh


def test_generator_is_its_own_seeded_stream():
    g = dk.Generator().manual_seed(5)
    assert g.initial_seed() == 5
    a = dk.randn(3, generator=g).tolist()
    assert a == dk.randn(3, generator=dk.Generator().manual_seed(5)).tolist()
    assert dk.randn(3, generator=g).tolist() != a  # the stream moved on
    state = g.get_state()
    b = dk.rand(2, generator=g).tolist()
    assert dk.rand(2, generator=g.set_state(state)).tolist() == b
    x = dk.zeros(1000)
    x.uniform_(-1, 1, generator=dk.Generator().manual_seed(1))
    y = dk.zeros(1000).uniform_(-1, 1, generator=dk.Generator().manual_seed(1))
    assert x.tolist() == y.tolist() and -1 <= x.min().item() and x.max().item() < 1
    loaders = [
        dk.data.DataLoader(dk.data.TensorDataset(np.arange(9)), 4, True, generator=dk.Generator().manual_seed(2))
    ]
    assert [b[0].tolist() for b in loaders[0]] == [
        b[0].tolist()
        for b in dk.data.DataLoader(
            dk.data.TensorDataset(np.arange(9)), 4, True, generator=dk.Generator().manual_seed(2)
        )
    ]
    with raises_naming(TypeError, "manual_seed", "int"):
        dk.Generator().manual_seed(1.5)


def test_limits_and_small_helpers_match_torch():
    torch = pytest.importorskip("torch")
    for dtype, ref in ((dk.float32, torch.float32), (dk.float64, torch.float64), (dk.bfloat16, torch.bfloat16)):
        assert float(dk.finfo(dtype).eps) == torch.finfo(ref).eps
        assert float(dk.finfo(dtype).max) == torch.finfo(ref).max
        assert float(dk.finfo(dtype).tiny) == torch.finfo(ref).tiny
    assert float(dk.finfo().eps) == torch.finfo().eps
    for dtype, ref in ((dk.int64, torch.int64), (dk.uint8, torch.uint8), (dk.int8, torch.int8)):
        assert dk.iinfo(dtype).max == torch.iinfo(ref).max and dk.iinfo(dtype).min == torch.iinfo(ref).min
    np.testing.assert_allclose(dk.logspace(-2, 3, 7).numpy(), torch.logspace(-2, 3, 7).numpy(), rtol=1e-6)
    np.testing.assert_allclose(
        dk.logspace(0, 1, 5, base=2.0, dtype=dk.float64).numpy(), torch.logspace(0, 1, 5, base=2.0, dtype=torch.float64)
    )
    assert dk.is_tensor(dk.ones(1)) and not dk.is_tensor(np.ones(1))
    assert dk.is_floating_point(dk.ones(1)) and not dk.is_floating_point(dk.tensor([1]))
    model = dk.nn.Linear(2, 2)
    assert dk.compile(model, mode="max-autotune") is model

    @dk.compile(fullgraph=True)
    def double(x):
        return x * 2

    assert double(dk.ones(2)).tolist() == [2.0, 2.0]
    dk.use_deterministic_algorithms(True)
    assert dk.are_deterministic_algorithms_enabled()
    dk.use_deterministic_algorithms(False)
    assert not dk.are_deterministic_algorithms_enabled()
    assert dk.zeros(2, dtype=dk.uint8).dtype == np.uint8 and dk.short == np.int16


@pytest.fixture
def default_float64():
    dk.set_default_dtype(dk.float64)
    yield
    dk.set_default_dtype(dk.float32)


CONSTRUCTS = {
    "python floats": lambda m: m.tensor([1.5, 2.0]),
    "zeros": lambda m: m.zeros(2),
    "ones": lambda m: m.ones(2, 3),
    "empty": lambda m: m.empty(1),
    "randn": lambda m: m.randn(2),
    "rand": lambda m: m.rand(2),
    "eye": lambda m: m.eye(2),
    "full of a float": lambda m: m.full((2,), 1.5),
    "arange of floats": lambda m: m.arange(0.0, 1.0, 0.25),
    "linspace": lambda m: m.linspace(0, 1, 3),
    "integer division": lambda m: m.tensor([1, 2]) / 2,
    "integer times a float": lambda m: m.tensor([1, 2]) * 0.5,
    "exp of integers": lambda m: m.tensor([1, 2]).exp(),
    "Linear weight": lambda m: m.nn.Linear(2, 3).weight,
    "Conv2d bias": lambda m: m.nn.Conv2d(1, 2, 3).bias,
    "LSTM weight": lambda m: m.nn.LSTM(2, 3).weight_hh_l0,
    "float32 stays": lambda m: m.tensor([1.0], dtype=m.float32) * 2.0,
    "integers stay": lambda m: m.tensor([1, 2]) + 1,
}

# Sequences holding NumPy scalars: each keeps its dtype, Python numbers take the defaults.
NUMPY_SCALAR_DATA = [
    [np.float64(1.5)],
    [1.0, np.float64(2.0)],
    [[np.float64(1.0)], [2.0]],
    (np.float32(1.5), 2.0),
    [np.int32(3)],
    [np.int32(1), 2],
    [np.int64(2), 1.5],
    [True, np.int8(3)],
    [np.float16(1.0), np.int64(7)],
    [np.bool_(True)],
]


@pytest.mark.parametrize("default", ["float32", "float64"])
@pytest.mark.parametrize("data", NUMPY_SCALAR_DATA, ids=repr)
def test_numpy_scalars_in_sequences_keep_their_dtype_as_torch(data, default):
    torch = pytest.importorskip("torch")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, default))
    dk.set_default_dtype(getattr(dk, default))
    try:
        expected = str(torch.tensor(data).dtype).replace("torch.", "")
        assert str(dk.tensor(data).dtype) == expected
        assert str(dk.as_tensor(data).dtype) == expected
        np.testing.assert_array_equal(dk.tensor(data).numpy(), torch.tensor(data).numpy())
    finally:
        torch.set_default_dtype(previous)
        dk.set_default_dtype(dk.float32)


@pytest.mark.parametrize("name", sorted(CONSTRUCTS))
def test_default_dtype_float64_gives_torchs_dtypes(name, default_float64):
    torch = pytest.importorskip("torch")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        expected = str(CONSTRUCTS[name](torch).dtype).replace("torch.", "")
    finally:
        torch.set_default_dtype(previous)
    assert dk.get_default_dtype() == np.float64
    assert str(CONSTRUCTS[name](dk).dtype) == expected


def test_default_dtype_is_float32_or_float64():
    assert dk.get_default_dtype() == np.float32
    with raises_naming(TypeError, "set_default_dtype", "int64"):
        dk.set_default_dtype(dk.int64)
    assert dk.get_default_dtype() == np.float32
