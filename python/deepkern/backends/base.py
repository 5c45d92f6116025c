"""``Backend``: what one kind of device provides to the ops, tensors and layers.

A backend names its device (``name``, ``device_type``: the DLPack code its arrays report from
``__dlpack_device__``), its array class (``array_type``: shape, dtype, strides, views and
arithmetic as NumPy's), allocation and copies to and from host memory, and one entry per kernel
in :data:`KERNELS`, taking the arguments of the ``deepkern._C`` function of that name. Asking a
backend for something it does not provide raises ``NotImplementedError`` naming it and the device.
"""

from __future__ import annotations

#: DLPack device types (``__dlpack_device__()[0]``).
DLPACK_CPU, DLPACK_CUDA = 1, 2

#: The kernel entries a backend may provide, by the ``deepkern._C`` function they mirror.
KERNELS = frozenset(
    {
        "gemm",
        "conv2d_forward",
        "conv2d_backward_data",
        "conv2d_backward_weight",
        "max_pool2d",
        "max_pool2d_backward",
        "avg_pool2d",
        "avg_pool2d_backward",
        "adaptive_avg_pool2d",
        "adaptive_avg_pool2d_backward",
        "lstm_forward",
        "lstm_backward",
        "gru_forward",
        "gru_backward",
        "rnn_forward",
        "rnn_backward",
        "sgd_step",
        "adam_step",
        "rmsprop_step",
        "relu",
        "relu_backward",
        "gelu",
        "gelu_backward",
        "softmax",
        "softmax_backward",
        "cross_entropy_forward",
        "cross_entropy_backward",
        "dropout",
        "dropout_backward",
        "attention_forward",
        "attention_backward",
        "embedding",
        "embedding_backward",
        "batch_norm_forward",
        "batch_norm_backward",
        "layer_norm_forward",
        "layer_norm_backward",
        "group_norm_forward",
        "group_norm_backward",
    }
)

#: Array functions every backend provides (``*_like`` have defaults below).
ARRAY_FUNCTIONS = frozenset({"empty", "zeros", "full", "ascontiguousarray", "to_cpu", "from_cpu"})


class Backend:
    """Base class of backends; see the module docstring for what a subclass defines.

    Allocation: ``empty(shape, dtype)``, ``zeros(shape, dtype)``, ``full(shape, value, dtype)``
    and the ``*_like(array, ..., dtype=None)`` forms; ``ascontiguousarray(array)`` (the array
    itself when it already is C-contiguous). Copies: ``to_cpu(array)`` gives a ``numpy.ndarray``,
    ``from_cpu(ndarray, index, non_blocking=False)`` an array on device ``index`` (None: the default
    one; ``non_blocking``: the copy need not have ended on return where the device can do that).
    """

    name: str
    device_type: int
    array_type: type

    def empty_like(self, array, dtype=None):
        return self.empty(array.shape, array.dtype if dtype is None else dtype)

    def zeros_like(self, array, dtype=None):
        return self.zeros(array.shape, array.dtype if dtype is None else dtype)

    def full_like(self, array, value, dtype=None):
        return self.full(array.shape, value, array.dtype if dtype is None else dtype)

    def index(self, array):
        """The device index ``array`` is on (None where the device has no index, as the CPU)."""
        return int(array.__dlpack_device__()[1])

    def __getattr__(self, name):  # reached only for what the subclass does not define
        if name in KERNELS or name in ARRAY_FUNCTIONS:
            raise NotImplementedError(
                f"{name} is not implemented on device '{self.name}' (deepkern's {self.name} backend has no {name})"
            )
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __repr__(self):
        return f"<deepkern backend '{self.name}'>"
