"""Pinned host memory and copies that do not wait: ``Tensor.pin_memory``/``is_pinned``,
``to(..., non_blocking=True)``, ``DataLoader(pin_memory=True)`` and the pinned cache behind them
(``_cuda.pinned_empty``, ``deepkern.cuda.pinned_memory_stats``). The behaviour without a GPU is
checked on every machine; the rest needs a GPU."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern.data import DataLoader, TensorDataset

from checks import raises_naming

gpu = pytest.mark.skipif(not dk.cuda.is_available(), reason=f"no usable GPU: {dk.cuda.unavailable_reason()}")
no_gpu = pytest.mark.skipif(dk.cuda.is_available(), reason="checks the behaviour without a usable GPU")

DTYPES = ["float32", "float64", "float16", "int32", "int64", "bool", "uint8"]


def dataset(rng, n=23):
    return TensorDataset(rng.standard_normal((n, 3, 4)).astype(np.float32), rng.integers(0, 9, n))


def batches_equal(pinned_batches, plain_batches):
    for got, want in zip(pinned_batches, plain_batches, strict=True):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g.cpu().numpy(), w.numpy())
            assert g.dtype == w.dtype


# ---- without a GPU ---------------------------------------------------------------------------


@no_gpu
def test_pin_memory_without_a_gpu_says_why():
    t = dk.tensor([1.0, 2.0])
    with raises_naming(RuntimeError, "CUDA is not available"):
        t.pin_memory()
    assert not t.is_pinned()
    assert dk.cuda.pinned_memory_stats() == dict.fromkeys(
        ("allocated", "reserved", "host_allocs", "cache_hits", "waiting_on_copies"), 0
    )
    dk.cuda.empty_pinned_cache()  # a no-op


@no_gpu
def test_a_pinning_loader_without_a_gpu_warns_and_gives_the_same_batches(rng):
    data = dataset(rng)
    with pytest.warns(UserWarning, match="pin_memory=True but no GPU is usable"):
        pinned = list(DataLoader(data, batch_size=5, pin_memory=True, seed=3, shuffle=True))
    batches_equal(pinned, list(DataLoader(data, batch_size=5, seed=3, shuffle=True)))


def test_non_blocking_within_host_memory_is_the_tensor_itself():
    t = dk.tensor([[1.0, 2.0]])
    assert t.to("cpu", non_blocking=True) is t
    assert t.to(dk.float64, non_blocking=True).dtype == np.float64


# ---- with a GPU --------------------------------------------------------------------------------


@pytest.mark.cuda
@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (1,), (7, 3), (1000, 33)])
def test_pinned_arrays_copy_to_the_gpu_without_waiting(dtype, shape, rng):
    from deepkern import _cuda

    host = (rng.standard_normal(shape) * 50).astype(dtype)
    pinned = _cuda.pinned_empty(shape, dtype)
    assert pinned.shape == shape and pinned.dtype == host.dtype and pinned.flags.c_contiguous
    pinned[...] = host
    assert size_zero_or(pinned, _cuda.is_pinned)
    assert not _cuda.is_pinned(np.ones(8))
    dev = _cuda.from_cpu(pinned, 0, True)
    dk.cuda.synchronize()
    np.testing.assert_array_equal(dev.to_cpu(), host)


def size_zero_or(array, check):
    return array.size == 0 or check(array)


@pytest.mark.cuda
@gpu
def test_pinned_blocks_are_reused_once_their_copies_ended(rng):
    from deepkern import _cuda

    dk.cuda.synchronize()
    dk.cuda.empty_pinned_cache()
    host = rng.standard_normal(1 << 20).astype(np.float32)
    pinned = _cuda.pinned_empty(host.shape, np.float32)
    pinned[...] = host
    dev = _cuda.from_cpu(pinned, 0, True)
    before = dk.cuda.pinned_memory_stats()
    assert before["allocated"] >= host.nbytes and before["reserved"] >= before["allocated"]
    del pinned
    dk.cuda.synchronize()
    again = _cuda.pinned_empty(host.shape, np.float32)  # the block's copy has ended: a cache hit
    after = dk.cuda.pinned_memory_stats()
    assert after["host_allocs"] == before["host_allocs"] and after["cache_hits"] == before["cache_hits"] + 1
    again[...] = 0  # writing the reused block does not change what was copied
    np.testing.assert_array_equal(dev.to_cpu(), host)
    del again
    dk.cuda.empty_pinned_cache()
    assert dk.cuda.pinned_memory_stats()["reserved"] == 0


@pytest.mark.cuda
@gpu
def test_pinned_empty_refuses_bad_shapes_and_dtypes():
    from deepkern import _cuda

    with raises_naming(ValueError, "pinned_empty", "negative", r"\(2, -1\)"):
        _cuda.pinned_empty((2, -1), "float32")
    with raises_naming(ValueError, "pinned_empty", "too large"):
        _cuda.pinned_empty((1 << 40, 1 << 20), "float32")
    with pytest.raises(TypeError):
        _cuda.pinned_empty((3,), object)


@pytest.mark.cuda
@gpu
def test_tensors_pin_and_move_without_waiting(rng):
    x = dk.tensor(rng.standard_normal((6, 5)).astype(np.float32)).T  # a strided view
    pinned = x.pin_memory()
    assert pinned.is_pinned() and not x.is_pinned() and pinned.pin_memory() is pinned
    np.testing.assert_array_equal(pinned.numpy(), x.numpy())
    on_gpu = pinned.to("cuda", non_blocking=True)
    also = pinned.cuda(non_blocking=True)
    dk.cuda.synchronize()
    np.testing.assert_array_equal(on_gpu.cpu().numpy(), x.numpy())
    np.testing.assert_array_equal(also.cpu().numpy(), x.numpy())
    with raises_naming(RuntimeError, "pin_memory", "host memory", "cuda"):
        on_gpu.pin_memory()
    assert not on_gpu.is_pinned()


@pytest.mark.cuda
@gpu
def test_a_pinning_loader_gives_pinned_batches(rng):
    data = dataset(rng)
    pinned = list(DataLoader(data, batch_size=5, pin_memory=True, seed=3, shuffle=True))
    assert all(t.is_pinned() for batch in pinned for t in batch)
    moved = [tuple(t.to("cuda", non_blocking=True) for t in batch) for batch in pinned]
    dk.cuda.synchronize()
    batches_equal(moved, list(DataLoader(data, batch_size=5, seed=3, shuffle=True)))
