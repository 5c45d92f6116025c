"""The CUDA side where there may be no GPU: the module builds and imports, the queries report why
there is no GPU, and every request for the 'cuda' device fails with a RuntimeError saying so.
These run on every machine; on a machine with a usable GPU they check the opposite state."""

from __future__ import annotations

import re
import shutil

import deepkern as dk
import numpy as np
import pytest
from deepkern import backends
from deepkern.backends import cuda as cuda_backend

from checks import raises_naming

AVAILABLE = dk.cuda.is_available()


def test_module_is_built_where_nvcc_is():
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: the build may have skipped deepkern._cuda")
    if not dk._C.build_options["cuda"]:
        pytest.skip("this build was configured with DEEPKERN_CUDA=OFF")
    assert dk.cuda.is_compiled(), f"nvcc is on PATH but deepkern._cuda did not import: {cuda_backend.import_error}"
    assert dk.cuda.compiled_archs(), "the module names no compiled architecture"


def test_backend_registered_exactly_when_a_gpu_is_usable():
    assert ("cuda" in backends.names()) == AVAILABLE
    assert cuda_backend.usable() == AVAILABLE
    assert (dk.cuda.unavailable_reason() == "") == AVAILABLE


@pytest.mark.skipif(AVAILABLE, reason="a GPU is usable here: the no-GPU behaviour cannot be observed")
def test_without_a_gpu_queries_report_none_and_say_why():
    reason = dk.cuda.unavailable_reason()
    assert isinstance(reason, str) and len(reason) > 5
    assert dk.cuda.device_count() == 0
    assert dk.cuda.memory_allocated() == 0 and dk.cuda.memory_reserved() == 0 and dk.cuda.mem_get_info() == (0, 0)
    assert set(dk.cuda.memory_stats()) == {"allocated", "reserved", "cuda_mallocs", "cache_hits"}
    dk.cuda.empty_cache()  # a no-op, not an error


@pytest.mark.skipif(AVAILABLE, reason="a GPU is usable here: the no-GPU behaviour cannot be observed")
@pytest.mark.parametrize(
    "request_cuda",
    [
        lambda: dk.zeros(2, 3, device="cuda"),
        lambda: dk.ones(4, device="cuda:0"),
        lambda: dk.tensor([1.0, 2.0], device="cuda"),
        lambda: dk.tensor([1.0]).to("cuda"),
        lambda: dk.tensor([1.0]).cuda(),
        lambda: dk.randn(3, device="cuda"),
        lambda: backends.to_device(np.ones(3), "cuda"),
    ],
    ids=["zeros", "ones", "tensor", "to", "cuda()", "randn", "to_device"],
)
def test_without_a_gpu_cuda_tensors_are_a_runtime_error(request_cuda):
    with raises_naming(RuntimeError, "cuda"):
        request_cuda()


@pytest.mark.skipif(AVAILABLE, reason="a GPU is usable here: the no-GPU behaviour cannot be observed")
@pytest.mark.parametrize(
    "request_gpu",
    [dk.cuda.synchronize, dk.cuda.Stream, dk.cuda.Event, lambda: dk.cuda.from_dlpack(np.ones(2))],
    ids=["synchronize", "Stream", "Event", "from_dlpack"],
)
def test_without_a_gpu_gpu_objects_are_a_runtime_error(request_gpu):
    with raises_naming(RuntimeError, "CUDA is not available", re.escape(dk.cuda.unavailable_reason())):
        request_gpu()


def _module():
    if not dk.cuda.is_compiled():
        pytest.skip(f"deepkern was built without CUDA: {cuda_backend.import_error}")
    return cuda_backend._cuda


def test_size_classes():
    """Requests round up to multiples of 512 bytes up to 1 MiB, of 2 MiB above."""
    module = _module()
    rng = np.random.default_rng(5)
    sizes = [1, 511, 512, 513, 2**20 - 1, 2**20, 2**20 + 1, 2**21, 2**28 + 3]
    sizes += [int(s) for s in rng.integers(1, 2**30, size=50)]
    for n in sizes:
        step = 512 if n <= 2**20 else 2 * 2**20
        rounded = module.rounded_size(n)
        assert rounded >= n and rounded % step == 0 and rounded - n < step, (n, rounded)
    assert module.rounded_size(0) == 0


@pytest.mark.parametrize("dtype", ["complex64", "int16", "object", "float128" if hasattr(np, "float128") else "U3"])
def test_unsupported_dtypes_are_a_type_error_before_any_device_call(dtype):
    module = _module()
    with raises_naming(TypeError, "not supported on CUDA devices", "float32"):
        module.empty((2, 3), dtype)
    with raises_naming(TypeError, "not supported on CUDA devices"):
        module.from_cpu(np.zeros(3, dtype=dtype))


@pytest.mark.parametrize("shape", [(-1,), (2, -3)])
def test_negative_extents_are_a_value_error(shape):
    with raises_naming(ValueError, "negative dimensions", str(shape[-1])):
        _module().empty(shape, "float32")


def test_overflowing_shapes_are_a_value_error():
    with raises_naming(ValueError, "too large"):
        _module().empty((2**40, 2**40), "float32")
