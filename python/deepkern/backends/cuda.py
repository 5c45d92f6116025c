"""The CUDA backend: :class:`deepkern._cuda.DeviceArray` in GPU memory.

``deepkern._cuda`` is absent when the package was built without nvcc; importing it can also fail
on an unusual system. Either way deepkern keeps working on the CPU and ``import_error`` says why.
The backend is registered only where the module imports and a GPU is visible (:func:`usable`).
It allocates, copies and casts; its kernel entries so far are the matrix multiply (``gemm``), the
optimizer steps, the activations, convolution, pooling, batch, layer and group normalization,
softmax and cross-entropy, dropout, embedding, scaled dot-product attention and the recurrent
layers, LSTM, GRU and Elman RNN (the ``deepkern._cuda`` functions taking the arguments of the
``deepkern._C`` function of the same name).
For any other kernel the seam's NotImplementedError names it.

``matmul.allow_tf32`` (PyTorch's ``torch.backends.cuda.matmul.allow_tf32``) lets float32 matrix
multiplies run on the tensor cores with inputs rounded to TF32 (10-bit mantissa, ~1e-3 relative
error); it is False by default, so float32 results are full FP32 unless asked.

Elementwise arithmetic and reductions reach the GPU through NumPy's own protocols, which
``cuda_numpy`` attaches to DeviceArray here.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from .base import DLPACK_CUDA, Backend

try:
    from .. import _cuda  # type: ignore[attr-defined]

    import_error = None
    from . import cuda_numpy

    cuda_numpy.install(_cuda)
except ImportError as exc:  # not built, or its shared-library dependencies are missing
    _cuda = None
    if importlib.util.find_spec(f"{__package__.rpartition('.')[0]}._cuda") is None:
        import_error = "this installation has no CUDA module"
    else:
        import_error = str(exc)


def usable() -> bool:
    """True when the CUDA module imports and sees at least one GPU. Never raises."""
    if _cuda is None:
        return False
    try:
        return _cuda.device_count() > 0
    except Exception:  # a broken driver must not break the CPU package
        return False


class _MatmulSettings:
    """``deepkern.backends.cuda.matmul``: how matrix multiplies run on the GPU."""

    __slots__ = ("_allow_tf32",)

    def __init__(self):
        self._allow_tf32 = False

    @property
    def allow_tf32(self) -> bool:
        """float32 GEMMs on the tensor cores with TF32-rounded inputs (default False: full FP32)."""
        return self._allow_tf32

    @allow_tf32.setter
    def allow_tf32(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"matmul.allow_tf32 must be a bool, got {type(value).__name__}")
        self._allow_tf32 = value

    def __repr__(self):
        return f"<deepkern.backends.cuda.matmul allow_tf32={self._allow_tf32}>"


matmul = _MatmulSettings()

_BFLOAT16 = "bfloat16"


def _precision(op: str, array, bfloat16: bool = True) -> str:
    """How the GEMM-based kernels compute on ``array``'s dtype: 'bf16' for bfloat16 (where the op
    has a bfloat16 kernel), else 'fp32', or 'tf32' when ``matmul.allow_tf32`` is set (the binding
    refuses dtypes other than float32); float64 has no kernel (NotImplementedError)."""
    if array.dtype.name == _BFLOAT16 and bfloat16:
        return "bf16"
    if array.dtype == np.float64 or array.dtype.name == _BFLOAT16:
        supported = "float32 and bfloat16 are" if bfloat16 else "float32 is"
        raise NotImplementedError(
            f"{op} in {array.dtype} is not implemented on device 'cuda' ({supported}): "
            "copy the arrays to the CPU, or use float32"
        )
    return "tf32" if matmul.allow_tf32 else "fp32"


def _shape(shape) -> tuple:
    return (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)


class CUDABackend(Backend):
    """GPU memory (``deepkern._cuda.DeviceArray``): allocation from deepkern's caching allocator,
    copies to and from the host; arrays are made on device 0 unless ``from_cpu`` is given another."""

    name = "cuda"
    device_type = DLPACK_CUDA

    def __init__(self):
        self.array_type = _cuda.DeviceArray
        # Kernel entries: the deepkern._cuda functions (arguments as deepkern._C's of the same name).
        self.sgd_step = _cuda.sgd_step
        self.adam_step = _cuda.adam_step
        self.rmsprop_step = _cuda.rmsprop_step
        self.relu = _cuda.relu
        self.relu_backward = _cuda.relu_backward
        self.gelu = _cuda.gelu
        self.gelu_backward = _cuda.gelu_backward
        self.softmax = _cuda.softmax
        self.softmax_backward = _cuda.softmax_backward
        self.cross_entropy_forward = _cuda.cross_entropy_forward
        self.cross_entropy_backward = _cuda.cross_entropy_backward
        self.dropout = _cuda.dropout
        self.dropout_backward = _cuda.dropout_backward
        self.embedding = _cuda.embedding
        self.embedding_backward = _cuda.embedding_backward
        self.max_pool2d = _cuda.max_pool2d
        self.max_pool2d_backward = _cuda.max_pool2d_backward
        self.avg_pool2d = _cuda.avg_pool2d
        self.avg_pool2d_backward = _cuda.avg_pool2d_backward
        self.adaptive_avg_pool2d = _cuda.adaptive_avg_pool2d
        self.adaptive_avg_pool2d_backward = _cuda.adaptive_avg_pool2d_backward
        self.batch_norm_forward = _cuda.batch_norm_forward
        self.batch_norm_backward = _cuda.batch_norm_backward
        self.layer_norm_forward = _cuda.layer_norm_forward
        self.layer_norm_backward = _cuda.layer_norm_backward
        self.group_norm_forward = _cuda.group_norm_forward
        self.group_norm_backward = _cuda.group_norm_backward
        self.attention_forward = _cuda.attention_forward
        self.attention_backward = _cuda.attention_backward

    def empty(self, shape, dtype):
        return _cuda.empty(_shape(shape), np.dtype(dtype))

    def zeros(self, shape, dtype):
        return _cuda.full(_shape(shape), 0, np.dtype(dtype))

    def full(self, shape, value, dtype):
        return _cuda.full(_shape(shape), value, np.dtype(dtype))

    def ascontiguousarray(self, array):
        return array if array.is_contiguous() else array.copy()

    def to_cpu(self, array) -> np.ndarray:
        return array.to_cpu()

    def from_cpu(self, array, index=None, non_blocking=False):
        """A copy of host ``array`` on GPU ``index``; with ``non_blocking``, one from pinned memory
        (``Tensor.pin_memory``) is queued on the current stream without waiting for it."""
        return _cuda.from_cpu(array, 0 if index is None else int(index), bool(non_blocking))

    def index(self, array):
        return array.device_index

    def gemm(self, a, b, c, a_offsets, b_offsets, c_offsets, k, alpha, beta, bias, bias_axis, relu):
        """``deepkern._C.gemm`` on the GPU: bfloat16 arrays run on the tensor cores in BF16,
        float32 ones in FP32, or in TF32 when ``matmul.allow_tf32`` is set; float64 has no kernel."""
        precision = _precision("gemm", a)
        _cuda.gemm(a, b, c, a_offsets, b_offsets, c_offsets, k, alpha, beta, bias, bias_axis, relu, precision)

    # The convolutions are implicit GEMMs on the GEMM kernels' tiles: the same precisions.
    def conv2d_forward(self, x, w, bias, y, stride, padding, dilation, groups):
        """``deepkern._C.conv2d_forward`` on the GPU (precision as ``gemm``)."""
        precision = _precision("conv2d_forward", x)
        _cuda.conv2d_forward(x, w, bias, y, stride, padding, dilation, groups, precision)

    def conv2d_backward_data(self, grad_y, w, grad_x, stride, padding, dilation, groups):
        """``deepkern._C.conv2d_backward_data`` on the GPU (precision as ``gemm``)."""
        precision = _precision("conv2d_backward_data", grad_y)
        _cuda.conv2d_backward_data(grad_y, w, grad_x, stride, padding, dilation, groups, precision)

    def conv2d_backward_weight(self, grad_y, x, grad_w, grad_bias, stride, padding, dilation, groups):
        """``deepkern._C.conv2d_backward_weight`` on the GPU (precision as ``gemm``)."""
        precision = _precision("conv2d_backward_weight", grad_y)
        _cuda.conv2d_backward_weight(grad_y, x, grad_w, grad_bias, stride, padding, dilation, groups, precision)

    # The recurrent layers' GEMMs: float32 only (FP32, or TF32 with matmul.allow_tf32).
    def lstm_forward(self, *args):
        """``deepkern._C.lstm_forward`` on the GPU (the same 13 arguments, x first)."""
        _cuda.lstm_forward(*args, _precision("lstm_forward", args[0], bfloat16=False))

    def lstm_backward(self, *args):
        """``deepkern._C.lstm_backward`` on the GPU (the same 18 arguments, x fourth)."""
        _cuda.lstm_backward(*args, _precision("lstm_backward", args[3], bfloat16=False))

    def gru_forward(self, *args):
        """``deepkern._C.gru_forward`` on the GPU (the same 11 arguments, x first)."""
        _cuda.gru_forward(*args, _precision("gru_forward", args[0], bfloat16=False))

    def gru_backward(self, *args):
        """``deepkern._C.gru_backward`` on the GPU (the same 15 arguments, x third)."""
        _cuda.gru_backward(*args, _precision("gru_backward", args[2], bfloat16=False))

    def rnn_forward(self, *args):
        """``deepkern._C.rnn_forward`` on the GPU (the same 10 arguments, x first)."""
        _cuda.rnn_forward(*args, _precision("rnn_forward", args[0], bfloat16=False))

    def rnn_backward(self, *args):
        """``deepkern._C.rnn_backward`` on the GPU (the same 14 arguments, x third)."""
        _cuda.rnn_backward(*args, _precision("rnn_backward", args[2], bfloat16=False))
