"""The CPU backend: NumPy arrays in host memory and the kernels of ``deepkern._C``.

Each kernel entry is the ``_C`` function itself (its docstring lists the arguments): the ops
have already checked shapes, dtypes and layouts, and the binding checks them again before the
kernel runs without the GIL.
"""

from __future__ import annotations

import numpy as np

from .. import _C
from .base import DLPACK_CPU, Backend


class CPUBackend(Backend):
    """Host memory (``numpy.ndarray``) and deepkern's CPU kernels."""

    name = "cpu"
    device_type = DLPACK_CPU
    array_type = np.ndarray

    empty = staticmethod(np.empty)
    zeros = staticmethod(np.zeros)
    full = staticmethod(np.full)
    ascontiguousarray = staticmethod(np.ascontiguousarray)

    @staticmethod
    def to_cpu(array) -> np.ndarray:
        return array

    @staticmethod
    def from_cpu(array: np.ndarray, index=None) -> np.ndarray:
        return array

    def index(self, array):
        return None

    gemm = staticmethod(_C.gemm)
    conv2d_forward = staticmethod(_C.conv2d_forward)
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
    sgd_step = staticmethod(_C.sgd_step)
    adam_step = staticmethod(_C.adam_step)
    rmsprop_step = staticmethod(_C.rmsprop_step)
    relu = staticmethod(_C.relu)
    relu_backward = staticmethod(_C.relu_backward)
    gelu = staticmethod(_C.gelu)
    gelu_backward = staticmethod(_C.gelu_backward)
