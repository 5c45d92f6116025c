"""Device arrays shared with other libraries without copies (DLPack, __cuda_array_interface__ v3)
and deepkern Tensors on the 'cuda' device. Skipped, with the reason, where no GPU is usable or the
other library has no CUDA support."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern import backends
from test_cuda_arrays import DTYPES, numpy_dtype, random_array, same_bits

from checks import raises_naming

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not dk.cuda.is_available(), reason=f"no usable GPU: {dk.cuda.unavailable_reason()}"),
]

if dk.cuda.is_compiled():
    from deepkern import _cuda


def cuda_torch():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip(f"PyTorch {torch.__version__} has no usable CUDA device")
    return torch


def cuda_cupy():
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        pytest.skip(f"CuPy has no usable CUDA device: {exc}")
    return cupy


TORCH_DTYPES = {
    "float32": "float32",
    "float64": "float64",
    "float16": "float16",
    "bfloat16": "bfloat16",
    "int32": "int32",
    "int64": "int64",
    "bool": "bool",
    "uint8": "uint8",
}


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_reads_and_writes_deepkern_memory_through_dlpack(rng, dtype):
    torch = cuda_torch()
    host = random_array(rng, (5, 7), dtype)
    dev = _cuda.from_cpu(host)
    shared = torch.from_dlpack(dev)
    assert shared.device.type == "cuda" and shared.data_ptr() == dev.data_ptr
    assert shared.dtype == getattr(torch, TORCH_DTYPES[dtype]) and tuple(shared.shape) == host.shape
    assert same_bits(shared.cpu().view(torch.uint8).numpy(), host.view(np.uint8))
    shared[1].zero_()  # written by torch, seen by deepkern
    host[1] = 0
    torch.cuda.synchronize()
    assert same_bits(dev.to_cpu(), host)


def test_torch_sees_deepkern_views_with_their_strides(rng):
    torch = cuda_torch()
    host = random_array(rng, (6, 8), "float32")
    view = _cuda.from_cpu(host)[1::2, ::3]  # PyTorch refuses negative strides
    shared = torch.from_dlpack(view)
    assert shared.stride() == view.element_strides and shared.data_ptr() == view.data_ptr
    np.testing.assert_array_equal(shared.cpu().numpy(), host[1::2, ::3])


@pytest.mark.parametrize("dtype", DTYPES)
def test_deepkern_imports_torch_memory_through_dlpack(rng, dtype):
    torch = cuda_torch()
    host = random_array(rng, (4, 9), dtype)
    source = torch.from_numpy(host.view(np.uint8).copy()).cuda().view(getattr(torch, TORCH_DTYPES[dtype]))
    source = source.view(host.shape)
    dev = dk.cuda.from_dlpack(source)
    assert dev.data_ptr == source.data_ptr() and dev.shape == host.shape
    assert same_bits(dev.to_cpu().view(np.uint8), host.view(np.uint8))
    strided = dk.cuda.from_dlpack(source.t()[::2])
    assert strided.element_strides == source.t()[::2].stride()
    assert same_bits(strided.to_cpu().view(np.uint8), np.ascontiguousarray(host.T[::2]).view(np.uint8))
    del source  # the import keeps torch's memory alive
    torch.cuda.empty_cache()
    assert same_bits(dev.to_cpu().view(np.uint8), host.view(np.uint8))


def test_cuda_array_interface_with_torch(rng):
    torch = cuda_torch()
    host = random_array(rng, (3, 11), "float64")
    dev = _cuda.from_cpu(host)
    for array, expected in [(dev, host), (dev[:, ::2], host[:, ::2]), (dev[:0], host[:0])]:
        interface = array.__cuda_array_interface__
        assert interface["version"] == 3 and interface["typestr"] == "<f8" and interface["shape"] == expected.shape
        shared = torch.as_tensor(array, device="cuda")
        if expected.size:
            assert shared.data_ptr() == array.data_ptr
        np.testing.assert_array_equal(shared.cpu().numpy(), expected)


def test_cupy_shares_memory_both_ways(rng):
    cupy = cuda_cupy()
    host = random_array(rng, (7, 5), "int32")
    dev = _cuda.from_cpu(host)
    via_interface, via_dlpack = cupy.asarray(dev), cupy.from_dlpack(dev)
    assert via_interface.data.ptr == via_dlpack.data.ptr == dev.data_ptr
    np.testing.assert_array_equal(cupy.asnumpy(via_dlpack), host)
    back = dk.cuda.from_dlpack(via_interface[:, 1:])
    np.testing.assert_array_equal(back.to_cpu(), host[:, 1:])


def test_from_dlpack_refuses_host_data():
    with raises_naming(TypeError, "CUDA device", "device type 1", "from_cpu"):
        dk.cuda.from_dlpack(np.ones(3))
    with raises_naming(TypeError, "__dlpack__"):
        dk.cuda.from_dlpack([1, 2])


# -- Tensors on the cuda device ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int64", "bool", "uint8"])
def test_tensor_to_cuda_and_back_is_bitwise(rng, dtype):
    host = random_array(rng, (6, 5), dtype)
    t = dk.tensor(host)
    on_gpu = t.to("cuda")
    assert on_gpu.device == dk.device("cuda:0") and on_gpu.dtype == t.dtype and on_gpu.shape == t.shape
    assert isinstance(on_gpu._array, _cuda.DeviceArray)
    assert same_bits(on_gpu.cpu().numpy(), host)
    assert same_bits(t.cuda().cpu().numpy(), host)
    assert same_bits(dk.tensor(host, device="cuda").cpu().numpy(), host)
    assert on_gpu.to("cuda") is on_gpu and on_gpu.cuda() is on_gpu
    assert "device='cuda:0'" in repr(on_gpu)


def test_tensor_factories_on_cuda(rng):
    z = dk.zeros(3, 4, device="cuda")
    assert z.device == dk.device("cuda") and z.dtype == np.float32
    np.testing.assert_array_equal(z.cpu().numpy(), np.zeros((3, 4), np.float32))
    np.testing.assert_array_equal(dk.ones(2, device="cuda", dtype=np.float64).cpu().numpy(), np.ones(2))
    np.testing.assert_array_equal(dk.full((2, 3), 2.5, device="cuda").cpu().numpy(), np.full((2, 3), 2.5, np.float32))
    assert dk.empty(0, 3, device="cuda").shape == (0, 3)
    with raises_naming(TypeError, "cpu"):
        z.numpy()


def test_gradient_of_a_device_copy_comes_back_to_the_host(rng):
    x = dk.tensor(random_array(rng, (4,), "float64"), requires_grad=True)
    y = x.cuda()
    y.backward(dk.ones(4, dtype=np.float64, device="cuda"))
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(4))


def test_the_gradient_of_a_device_copy_is_differentiable_twice(rng):
    """create_graph=True through x.cuda(): the gradient's copy back is itself a device copy in the graph."""
    x0 = random_array(rng, (4,), "float64")
    x = dk.tensor(x0, requires_grad=True)
    w = dk.tensor(random_array(rng, (4,), "float64"), requires_grad=True)
    (g,) = dk.autograd.grad((x.cuda() * w.cuda()).sum(), x, create_graph=True)
    assert g.device == dk.device("cpu") and g.requires_grad
    np.testing.assert_array_equal(g.detach().numpy(), w.detach().numpy())
    ((g * g).sum()).backward()
    np.testing.assert_array_equal(w.grad.numpy(), 2 * w.detach().numpy())


def test_kernels_the_backend_lacks_name_the_op_and_device():
    cuda = backends.get("cuda")
    for op in ("gemm", "conv2d_forward", "adam_step"):
        with raises_naming(NotImplementedError, op, "'cuda'"):
            getattr(cuda, op)
    x = dk.tensor(np.ones((2, 2), np.float32), device="cuda")
    with raises_naming(NotImplementedError, "relu", "cuda"):
        dk.ops.relu(x._array)


def test_bfloat16_round_trip_via_tensor(rng):
    host = random_array(rng, (3, 3), numpy_dtype("bfloat16"))
    assert same_bits(dk.tensor(host, device="cuda").cpu().numpy(), host)
