"""Functional ops on arrays: NumPy arrays run deepkern's CPU kernels; arrays of another registered
device (``deepkern.backends``) run that device's, and results stay on the inputs' device. Each op
checks its arguments first, then dispatches. See each op's docstring for its contract."""

from .activation import gelu, gelu_backward, relu, relu_backward
from .attention import scaled_dot_product_attention, scaled_dot_product_attention_backward
from .conv import ConvPlan, conv2d, conv2d_backward, conv_transpose2d, conv_transpose2d_backward
from .dropout import dropout, dropout_backward
from .gemm import gemm, linear, matmul
from .gru import GRUCache, RNNCache, gru, gru_backward, gru_cell, rnn, rnn_backward, rnn_cell
from .lstm import LSTMCache, lstm, lstm_backward, lstm_cell, lstm_cell_backward
from .norm import (
    batch_norm,
    batch_norm_backward,
    group_norm,
    group_norm_backward,
    layer_norm,
    layer_norm_backward,
)
from .optim import (
    adam_step,
    adam_step_multi,
    adamw_step,
    adamw_step_multi,
    rmsprop_step,
    rmsprop_step_multi,
    sgd_step,
    sgd_step_multi,
)
from .pool import (
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)
from .softmax import (
    cross_entropy,
    cross_entropy_backward,
    log_softmax,
    log_softmax_backward,
    softmax,
    softmax_backward,
)

__all__ = [
    "relu",
    "relu_backward",
    "gelu",
    "gelu_backward",
    "scaled_dot_product_attention",
    "scaled_dot_product_attention_backward",
    "ConvPlan",
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "dropout",
    "dropout_backward",
    "gemm",
    "linear",
    "matmul",
    "GRUCache",
    "RNNCache",
    "gru",
    "gru_backward",
    "gru_cell",
    "rnn",
    "rnn_backward",
    "rnn_cell",
    "LSTMCache",
    "lstm",
    "lstm_backward",
    "lstm_cell",
    "lstm_cell_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "batch_norm",
    "batch_norm_backward",
    "layer_norm",
    "layer_norm_backward",
    "group_norm",
    "group_norm_backward",
    "sgd_step",
    "sgd_step_multi",
    "adam_step",
    "adam_step_multi",
    "adamw_step",
    "adamw_step_multi",
    "rmsprop_step",
    "rmsprop_step_multi",
    "softmax",
    "log_softmax",
    "softmax_backward",
    "log_softmax_backward",
    "cross_entropy",
    "cross_entropy_backward",
]
