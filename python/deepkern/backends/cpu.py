"""The CPU backend: NumPy arrays in host memory and the kernels of ``deepkern._C``.

Each kernel entry is the ``_C`` function itself (its docstring lists the arguments): the ops
have already checked shapes, dtypes and layouts, and the binding checks them again before the
kernel runs without the GIL.
"""

from __future__ import annotations

import ctypes
import math
import os
import warnings

import numpy as np

from .. import _C
from .base import DLPACK_CPU, Backend

ISAS = ("amx", "avx512", "avx2", "generic")


def _warn_unused_isa_request() -> None:
    """``DEEPKERN_ISA`` is read when the kernels load; a value they could not follow (a typo, or an
    ISA this CPU lacks) leaves the detected ISA active, which this says instead of staying silent."""
    wanted = os.environ.get("DEEPKERN_ISA")
    if wanted is None or wanted == _C.active_isa():
        return
    if wanted not in ISAS:
        why = f"is not one of {', '.join(repr(isa) for isa in ISAS)}"
    else:
        why = f"is not supported by this CPU (best: {_C.detected_isa()!r})"
    warnings.warn(f"DEEPKERN_ISA={wanted!r} {why}; the kernels use {_C.active_isa()!r}", RuntimeWarning, stacklevel=2)


_warn_unused_isa_request()

#: glibc's malloc thresholds that deepkern sets (see _keep_freed_heap_memory): arrays up to
#: MMAP_THRESHOLD_BYTES come from the heap, and up to TRIM_THRESHOLD_BYTES of free heap stay mapped.
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD_BYTES = 256 << 20


def _keep_freed_heap_memory() -> bool:
    """Pins glibc's malloc thresholds, which it otherwise moves with the process's history: a large
    array is mapped fresh from the kernel and unmapped when freed, and the top of the heap is
    handed back once more than about twice the largest array freed so far is free there. A
    training step frees its gradients and activations (``zero_grad``, the graph after backward)
    and allocates the same sizes again in the next step, which then pays a trim and page faults
    over every byte each step (a fifth of a bfloat16 digits-cnn epoch on a 2-core machine).
    ``DEEPKERN_KEEP_FREED_MEMORY=0`` leaves glibc's defaults; other C libraries are left alone.
    Returns whether the thresholds were set."""
    if os.environ.get("DEEPKERN_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        mallopt = ctypes.CDLL(None).mallopt  # the process's C library
    except (ValueError, OSError, AttributeError):  # no such confstr name, or no mallopt
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    mapped = mallopt(m_mmap_threshold, MMAP_THRESHOLD_BYTES)
    return bool(mapped) and bool(mallopt(m_trim_threshold, TRIM_THRESHOLD_BYTES))


KEEPS_FREED_HEAP_MEMORY = _keep_freed_heap_memory()


def isa_label(isa: str) -> str:
    """``isa`` as ``deepkern info`` and benchmark reports print it: 'amx (emulated)' on a build that
    runs the AMX tiles on a host emulation (the test build of tools/amx-emulation-check), so that its
    results are not taken for the hardware's."""
    return f"{isa} (emulated)" if isa == "amx" and _C.build_options["amx_emulation"] else isa


def _allocated(make, shape, dtype):
    """``make(shape, dtype)``; a size past what memory (or NumPy's index type) can hold is a MemoryError
    giving the shape and the bytes asked, as PyTorch's allocator reports it (NumPy says "array is
    too big" as a ValueError, or raises a MemoryError that names neither)."""
    try:
        return make(shape, dtype)
    except (ValueError, MemoryError) as exc:
        dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if isinstance(exc, ValueError) and ("too big" not in str(exc) or min(dims, default=0) < 0):
            raise
        nbytes = math.prod(int(n) for n in dims) * np.dtype(dtype).itemsize
        message = f"cannot allocate an array of shape {dims} and dtype {np.dtype(dtype)}: {nbytes} bytes"
        raise MemoryError(message) from None


class CPUBackend(Backend):
    """Host memory (``numpy.ndarray``) and deepkern's CPU kernels."""

    name = "cpu"
    device_type = DLPACK_CPU
    array_type = np.ndarray

    @staticmethod
    def empty(shape, dtype=np.float32):
        return _allocated(np.empty, shape, dtype)

    @staticmethod
    def zeros(shape, dtype=np.float32):
        return _allocated(np.zeros, shape, dtype)

    @staticmethod
    def full(shape, fill_value, dtype=None):
        return _allocated(lambda s, d: np.full(s, fill_value, d), shape, dtype)

    ascontiguousarray = staticmethod(np.ascontiguousarray)

    @staticmethod
    def to_cpu(array) -> np.ndarray:
        return array

    @staticmethod
    def from_cpu(array: np.ndarray, index=None, non_blocking=False) -> np.ndarray:
        return array

    def index(self, array):
        return None

    gemm = staticmethod(_C.gemm)
    conv2d_forward = staticmethod(_C.conv2d_forward)
    conv2d_pack_winograd_weights = staticmethod(_C.conv2d_pack_winograd_weights)
    conv2d_pack_gemm_weights = staticmethod(_C.conv2d_pack_gemm_weights)
    conv2d_backward_data = staticmethod(_C.conv2d_backward_data)
    conv2d_backward_weight = staticmethod(_C.conv2d_backward_weight)
    max_pool2d = staticmethod(_C.max_pool2d)
    max_pool2d_backward = staticmethod(_C.max_pool2d_backward)
    avg_pool2d = staticmethod(_C.avg_pool2d)
    avg_pool2d_backward = staticmethod(_C.avg_pool2d_backward)
    adaptive_avg_pool2d = staticmethod(_C.adaptive_avg_pool2d)
    adaptive_avg_pool2d_backward = staticmethod(_C.adaptive_avg_pool2d_backward)
    lstm_forward = staticmethod(_C.lstm_forward)
    lstm_backward = staticmethod(_C.lstm_backward)
    gru_forward = staticmethod(_C.gru_forward)
    gru_backward = staticmethod(_C.gru_backward)
    rnn_forward = staticmethod(_C.rnn_forward)
    rnn_backward = staticmethod(_C.rnn_backward)
    sgd_step = staticmethod(_C.sgd_step)
    adam_step = staticmethod(_C.adam_step)
    rmsprop_step = staticmethod(_C.rmsprop_step)
    relu = staticmethod(_C.relu)
    relu_backward = staticmethod(_C.relu_backward)
    gelu = staticmethod(_C.gelu)
    gelu_backward = staticmethod(_C.gelu_backward)
    softmax = staticmethod(_C.softmax)
    softmax_backward = staticmethod(_C.softmax_backward)
    cross_entropy_forward = staticmethod(_C.cross_entropy_forward)
    cross_entropy_backward = staticmethod(_C.cross_entropy_backward)
    dropout = staticmethod(_C.dropout)
    dropout_backward = staticmethod(_C.dropout_backward)
    attention_forward = staticmethod(_C.attention_forward)
    attention_backward = staticmethod(_C.attention_backward)

    @staticmethod
    def embedding(weight, indices, out):
        """``out = weight[indices]`` (rows of a 2-D table; out of shape indices.shape + (dim,)); the
        caller has checked the indices."""
        np.take(weight, indices, axis=0, out=out)

    @staticmethod
    def embedding_backward(grad, indices, grad_weight, padding_idx):
        """``grad_weight`` (rows, dim; C-contiguous) written whole: the sum of ``grad``'s rows over
        each row's occurrences in ``indices`` (in index order), zero elsewhere and in row
        ``padding_idx`` (-1: none)."""
        grad_weight[...] = 0
        dim = grad_weight.shape[1]
        if dim and indices.size:
            # np.add.at element by element (its fast path; on whole rows it loops slowly): the same
            # sums in the same order, the element positions built for a chunk of indices at a time.
            flat, rows, out = indices.reshape(-1), grad.reshape(-1, dim), grad_weight.reshape(-1)
            step = max(1, (1 << 16) // dim)
            for start in range(0, flat.size, step):
                positions = (flat[start : start + step, None] * dim + np.arange(dim)).reshape(-1)
                np.add.at(out, positions, rows[start : start + step].reshape(-1))
        if padding_idx >= 0:
            grad_weight[padding_idx] = 0

    batch_norm_forward = staticmethod(_C.batch_norm_forward)
    batch_norm_backward = staticmethod(_C.batch_norm_backward)
    layer_norm_forward = staticmethod(_C.layer_norm_forward)
    layer_norm_backward = staticmethod(_C.layer_norm_backward)
    group_norm_forward = staticmethod(_C.group_norm_forward)
    group_norm_backward = staticmethod(_C.group_norm_backward)
