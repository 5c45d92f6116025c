"""Device arrays on a GPU: host round trips for every dtype, views, device copies and fills, the
caching allocator's accounting and out-of-memory recovery, streams and events. Skipped, with the
reason, where no GPU is usable."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest

from checks import raises_naming

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not dk.cuda.is_available(), reason=f"no usable GPU: {dk.cuda.unavailable_reason()}"),
]

if dk.cuda.is_compiled():
    from deepkern import _cuda

DTYPES = ["float32", "float64", "float16", "bfloat16", "int32", "int64", "bool", "uint8"]
SHAPES = [(), (0,), (1,), (7,), (0, 4), (3, 5, 2), (1023, 17), (2, 1, 3, 1, 4)]


def numpy_dtype(name):
    if name == "bfloat16":
        return np.dtype(pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes").bfloat16)
    return np.dtype(name)


def random_array(rng, shape, dtype):
    """Random values of ``dtype`` (every bit pattern class: negatives, fractions, large values)."""
    dtype = numpy_dtype(dtype) if isinstance(dtype, str) else dtype
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return (rng.standard_normal(shape) * 100).astype(dtype)


def same_bits(a, b):
    """Equal dtype, shape and bytes (NaN payloads and -0.0 included)."""
    a, b = np.asarray(a), np.asarray(b)
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_host_round_trip_is_bitwise(rng, dtype, shape):
    host = random_array(rng, shape, dtype)
    dev = _cuda.from_cpu(host)
    assert dev.shape == host.shape and dev.dtype == host.dtype and dev.size == host.size
    assert dev.nbytes == host.nbytes and dev.ndim == host.ndim
    assert dev.size == 0 or dev.strides == host.strides  # NumPy gives zero-size arrays arbitrary strides
    assert dev.is_contiguous() and dev.flags.c_contiguous and dev.base is None and dev.device == dk.device("cuda:0")
    assert dev.__dlpack_device__() == (2, 0)
    back = dev.to_cpu()
    assert isinstance(back, np.ndarray) and same_bits(back, host)


def test_special_float_values_survive_bitwise(rng):
    host = np.array([np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, 3.4e38], dtype=np.float32)
    host = np.concatenate([host, np.frombuffer(rng.bytes(4 * 64), dtype=np.float32)])  # arbitrary payloads
    assert same_bits(_cuda.from_cpu(host).to_cpu(), host)


@pytest.mark.parametrize(
    "make_view",
    [
        lambda a: a[::2, ::-3],
        lambda a: a.T,
        lambda a: np.asfortranarray(a),
        lambda a: a[1:-1, 5],
        lambda a: a.astype(a.dtype.newbyteorder(">")),
    ],
    ids=["step", "transposed", "fortran", "column", "big-endian"],
)
def test_strided_and_foreign_host_inputs(rng, make_view):
    host = make_view(random_array(rng, (37, 29), "float64"))
    dev = _cuda.from_cpu(host)
    assert dev.is_contiguous() and dev.shape == host.shape
    np.testing.assert_array_equal(dev.to_cpu(), host)


KEYS = [
    (slice(None, None, 2),),
    (slice(None, None, -1), 3),
    (Ellipsis, slice(1, None, 3)),
    (None, 2, slice(None), None),
    (-1, slice(-5, None)),
    (slice(3, 3),),
    (1, 2, 3),
]


@pytest.mark.parametrize("key", KEYS, ids=str)
def test_basic_indexing_gives_views_matching_numpy(rng, key):
    host = random_array(rng, (6, 7, 5), "float32")
    dev = _cuda.from_cpu(host)
    view = dev[key]
    expected = host[key]
    assert view.shape == expected.shape and view.strides == expected.strides
    assert view.base is dev
    assert view[...].base is dev  # views of views keep the owner as base, as NumPy
    np.testing.assert_array_equal(view.to_cpu(), expected)


def test_transpose_and_reshape(rng):
    host = random_array(rng, (4, 6, 5), "int64")
    dev = _cuda.from_cpu(host)
    np.testing.assert_array_equal(dev.T.to_cpu(), host.T)
    np.testing.assert_array_equal(dev.transpose(1, 0, 2).to_cpu(), host.transpose(1, 0, 2))
    np.testing.assert_array_equal(dev.reshape(-1, 10).to_cpu(), host.reshape(-1, 10))
    np.testing.assert_array_equal(dev.reshape((2, 60)).to_cpu(), host.reshape(2, 60))
    assert dev.reshape(120).base is dev and dev.reshape(120).data_ptr == dev.data_ptr
    copied = dev.T.reshape(3, -1)  # no view can do it: a C-contiguous copy, as NumPy's reshape
    np.testing.assert_array_equal(copied.to_cpu(), host.T.reshape(3, -1))
    assert copied.base is None and copied.data_ptr != dev.data_ptr and copied.flags.c_contiguous
    np.testing.assert_array_equal(dev[:, ::2].reshape(-1).to_cpu(), host[:, ::2].reshape(-1))
    with raises_naming(ValueError, "size 120", r"\(7, -1\)"):
        dev.reshape(7, -1)
    with raises_naming(ValueError, "axes"):
        dev.transpose(0, 0, 1)
    np.testing.assert_array_equal(dev.swapaxes(0, -1).to_cpu(), host.swapaxes(0, -1))
    assert np.swapaxes(dev, 1, 2).base is dev  # NumPy's function calls the method
    with raises_naming(ValueError, "axis 3", "3 dimensions"):
        dev.swapaxes(0, 3)


def test_same_size_dtype_views_keep_the_bits(rng):
    host = random_array(rng, (5, 4), "float64")
    dev = _cuda.from_cpu(host)
    as_int = dev[1:].view(np.int64)
    assert as_int.base is dev and as_int.dtype == np.int64
    assert same_bits(as_int.to_cpu(), host[1:].view(np.int64))
    with raises_naming(ValueError, "float64", "int32", "size"):
        dev.view("int32")


def test_bad_indices(rng):
    dev = _cuda.from_cpu(random_array(rng, (3, 4), "float32"))
    with raises_naming(IndexError, "out of bounds", "axis 1", "size 4"):
        dev[0, 4]
    with raises_naming(IndexError, "too many indices"):
        dev[0, 0, 0]
    with raises_naming(TypeError, "integers, slices", "ndarray"):
        dev[np.array([0, 1])]
    with raises_naming(TypeError, "integers, slices", "bool"):
        dev[True]
    with raises_naming(TypeError, "to_cpu"):
        np.asarray(dev)


def test_device_copy_is_a_new_contiguous_array(rng):
    host = random_array(rng, (33, 65), "float16")
    dev = _cuda.from_cpu(host)
    for source, expected in [(dev, host), (dev[::3, ::-2], host[::3, ::-2]), (dev.T, host.T)]:
        copied = source.copy()
        assert copied.is_contiguous() and copied.base is None and copied.data_ptr != dev.data_ptr
        assert same_bits(copied.to_cpu(), expected)
    assert same_bits(dev.to_cpu(), host)  # the source is unchanged


def test_assignment_broadcasts_and_handles_overlap(rng):
    host = random_array(rng, (8, 9), "int32")
    dev = _cuda.from_cpu(host)
    row = random_array(rng, (1, 9), "int32")
    dev[2:5] = _cuda.from_cpu(row)
    host[2:5] = row
    dev[1:, :] = dev[:-1, :]  # overlapping source and destination: NumPy's semantics
    host[1:, :] = host[:-1, :].copy()
    dev[:, ::2] = 7
    host[:, ::2] = 7
    values = random_array(rng, (8,), "int32")
    dev[:, 3] = values  # host data
    host[:, 3] = values
    np.testing.assert_array_equal(dev.to_cpu(), host)
    with raises_naming(ValueError, "dtypes differ", "int32", "float32"):
        dev[...] = _cuda.full((8, 9), 1.0, "float32")
    with raises_naming(ValueError, "broadcast", r"\(3,\)", r"\(8, 9\)"):
        dev[...] = _cuda.full((3,), 1, "int32")


@pytest.mark.parametrize("dtype", DTYPES)
def test_fill_writes_exactly_the_viewed_elements(rng, dtype):
    np_dtype = numpy_dtype(dtype)
    poison = random_array(rng, (11, 13), np_dtype)
    value = random_array(rng, (), np_dtype).item()
    dev = _cuda.from_cpu(poison)
    dev[1:-1:2, ::-3].fill(value)
    expected = poison.copy()
    expected[1:-1:2, ::-3] = value
    assert same_bits(dev.to_cpu(), expected)
    assert same_bits(_cuda.full((5, 3), value, np_dtype).to_cpu(), np.full((5, 3), value, np_dtype))
    assert same_bits(_cuda.full((0, 3), value, np_dtype).to_cpu(), np.full((0, 3), value, np_dtype))


def test_item_tolist_len_repr(rng):
    host = random_array(rng, (3, 2), "float64")
    dev = _cuda.from_cpu(host)
    assert dev.tolist() == host.tolist() and len(dev) == 3
    assert dev[2, 1].item() == host[2, 1]
    assert "shape=(3, 2)" in repr(dev) and "float64" in repr(dev) and "cuda:0" in repr(dev)
    with raises_naming(ValueError, "one-element", r"\(3, 2\)"):
        dev.item()
    with raises_naming(TypeError, "0-d"):
        len(dev[0, 0])


def test_dlpack_and_cuda_array_interface_describe_the_memory(rng):
    host = random_array(rng, (6, 8), "float32")
    dev = _cuda.from_cpu(host)
    view = dev[1::2, ::-3]
    imported = _cuda.DeviceArray.from_dlpack(view)  # deepkern's own export read back
    assert imported.data_ptr == view.data_ptr and imported.element_strides == view.element_strides
    assert imported.base is None and imported.shape == view.shape and imported.dtype == view.dtype
    del dev, view  # the import keeps the memory alive
    np.testing.assert_array_equal(imported.to_cpu(), host[1::2, ::-3])
    contiguous = _cuda.from_cpu(host)
    interface = contiguous.__cuda_array_interface__
    assert interface == {
        "shape": (6, 8),
        "typestr": "<f4",
        "data": (contiguous.data_ptr, False),
        "version": 3,
        "strides": None,
        "stream": 1,
    }
    assert contiguous[:, 1::2].__cuda_array_interface__["strides"] == host[:, 1::2].strides
    assert contiguous[:0].__cuda_array_interface__["data"] == (0, False)


# -- the caching allocator -------------------------------------------------------------------


def test_allocations_are_counted_and_cached():
    dk.cuda.synchronize()
    dk.cuda.empty_cache()
    before = dk.cuda.memory_stats()
    assert before["reserved"] == before["allocated"]
    n = 3 * 2**20 + 5
    a = _cuda.empty((n,), "uint8")
    after = dk.cuda.memory_stats()
    assert after["allocated"] - before["allocated"] == _cuda.rounded_size(n)
    assert after["cuda_mallocs"] == before["cuda_mallocs"] + 1
    del a
    freed = dk.cuda.memory_stats()
    assert freed["allocated"] == before["allocated"]
    assert freed["reserved"] == before["reserved"] + _cuda.rounded_size(n)  # kept in the cache
    b = _cuda.empty((n - 100,), "uint8")  # the same size class: served from the cache
    again = dk.cuda.memory_stats()
    assert again["cuda_mallocs"] == after["cuda_mallocs"] and again["cache_hits"] == freed["cache_hits"] + 1
    view = b[10:]
    del b
    assert dk.cuda.memory_allocated() == again["allocated"]  # the view keeps the block
    del view
    dk.cuda.empty_cache()
    assert dk.cuda.memory_reserved() == dk.cuda.memory_allocated() == before["allocated"]


def test_allocator_churn_keeps_live_blocks_apart(rng):
    """Random sizes from 1 byte to 256 MiB, allocated and freed in random order; every live array
    keeps the byte it was filled with (two live arrays sharing memory would overwrite each other)."""
    start = dk.cuda.memory_allocated()
    live = {}
    for step in range(300):
        if live and (len(live) >= 12 or rng.random() < 0.4):
            key = list(live)[int(rng.integers(len(live)))]
            array, byte = live.pop(key)
            edges = [array[:4096].to_cpu(), array[-4096:].to_cpu()]
            assert all((e == byte).all() for e in edges), f"allocation {key} of {array.size} bytes was overwritten"
            del array  # freed now
        else:
            size = int(np.exp(rng.uniform(0, np.log(256 * 2**20))))
            byte = step % 251 + 1
            live[step] = (_cuda.full((size,), byte, "uint8"), byte)
        held = sum(_cuda.rounded_size(a.nbytes) for a, _ in live.values())
        allocated = dk.cuda.memory_allocated() - start
        assert held <= allocated <= 2 * held, (held, allocated)  # cached blocks up to twice the request
    live.clear()
    assert dk.cuda.memory_allocated() == start
    assert dk.cuda.memory_stats()["cache_hits"] > 0


def test_out_of_memory_is_a_memory_error_and_recoverable(rng):
    total = dk.cuda.get_device_properties(0)["total_memory"]
    start = dk.cuda.memory_allocated()
    asked = 2 * total
    with raises_naming(MemoryError, "out of memory", str(asked), "free") as info:
        _cuda.empty((asked,), "uint8")
    assert isinstance(info.value, dk.cuda.OutOfMemoryError)
    assert dk.cuda.memory_allocated() == start
    host = random_array(rng, (1000,), "float32")
    assert same_bits(_cuda.from_cpu(host).to_cpu(), host)  # the device still works


def test_out_of_memory_frees_the_cache_and_retries():
    """A request that fits only once the cached blocks are returned to the driver succeeds."""
    dk.cuda.synchronize()
    dk.cuda.empty_cache()
    free = dk.cuda.mem_get_info()[0]
    first = _cuda.empty((int(free * 0.55),), "uint8")
    del first  # cached, not freed
    reserved = dk.cuda.memory_reserved()
    second = _cuda.empty((int(free * 0.65),), "uint8")  # too large to reuse the cached block
    assert second.nbytes == int(free * 0.65)
    assert dk.cuda.memory_reserved() < reserved + second.nbytes  # the cached block was freed first
    del second
    dk.cuda.empty_cache()


# -- streams and events ------------------------------------------------------------------------


def test_events_time_work():
    start, end = dk.cuda.Event(enable_timing=True), dk.cuda.Event(enable_timing=True)
    a = _cuda.empty((64 * 2**20,), "float32")
    start.record()
    a.fill(1.5)
    end.record()
    end.synchronize()
    assert end.query() and start.elapsed_time(end) > 0
    with raises_naming(ValueError, "enable_timing"):
        dk.cuda.Event().elapsed_time(end)
    with raises_naming(ValueError, "recorded"):
        dk.cuda.Event(enable_timing=True).elapsed_time(end)


def test_work_on_a_stream(rng):
    stream = dk.cuda.Stream()
    host = random_array(rng, (4096, 33), "float64")
    assert _cuda.current_stream() == 0
    with stream:
        assert _cuda.current_stream() == stream.cuda_stream != 0
        dev = _cuda.from_cpu(host)
        dev[:, 1] = -1.0
        copied = dev.T.copy()
        done = dk.cuda.Event()
        done.record()
    assert _cuda.current_stream() == 0
    stream.synchronize()
    assert stream.query() and done.query()
    host[:, 1] = -1.0
    np.testing.assert_array_equal(copied.to_cpu(), host.T)
    other = dk.cuda.Stream()
    other.wait_stream(stream)
    other.wait_event(done)
    other.synchronize()
