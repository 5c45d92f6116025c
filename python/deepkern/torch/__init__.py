"""deepkern's kernels inside PyTorch: custom operators (namespace ``deepkern``) on CPU torch tensors.

``import deepkern.torch`` registers ``torch.ops.deepkern.*`` with ``torch.library.custom_op``; each
has a fake (shape) function, so ``torch.compile`` and ``torch.export`` keep it as one opaque node,
and an autograd formula that runs deepkern's backward kernels. The public functions here check their
arguments, then call those operators:

* :func:`conv2d`, :func:`linear`, :func:`matmul` (``torch.nn.functional``'s and ``torch``'s semantics);
* :func:`lstm`, :func:`gru` (``torch._VF.lstm``/``gru``'s arguments: multi-layer, bidirectional,
  batch_first) and the modules :class:`LSTM`, :class:`GRU` (``torch.nn.LSTM``/``GRU`` with the
  same parameters and state_dict, whose forward runs deepkern's kernels);
* :func:`scaled_dot_product_attention` (``torch.nn.functional``'s, on the fused attention kernel);
* :func:`adam_`: ``torch.optim.Adam``/``AdamW``'s step in place on lists of tensors, one kernel call;
  :class:`deepkern.torch.optim.Adam` is the ``torch.optim.Optimizer`` around it.

CPU tensors reach the kernels as NumPy views of their memory (no copy); a kernel that needs
contiguous memory copies a non-contiguous input once (each function's docstring says where).
Outputs are never copied either: matmul and linear write into tensors from ``torch.empty``, the
others return the arrays their kernels wrote, wrapped by ``torch.from_numpy``.
Tensors on other devices raise NotImplementedError. ``import deepkern`` never imports PyTorch; this
module does, and raises ImportError when it is not installed.
"""

from __future__ import annotations

try:
    import torch
except ImportError as err:  # the message says what to install
    raise ImportError(
        "deepkern.torch needs PyTorch (2.4 or newer): pip install torch, or pip install 'deepkern[torch]'"
    ) from err

if not hasattr(torch.library, "custom_op"):
    raise ImportError(f"deepkern.torch needs PyTorch 2.4 or newer (torch.library.custom_op); found {torch.__version__}")

from . import optim  # noqa: E402  (after the check above)
from ._attention import scaled_dot_product_attention  # noqa: E402
from ._ops import adam_, conv2d, linear, matmul  # noqa: E402
from ._rnn import GRU, LSTM, gru, lstm  # noqa: E402

__all__ = [
    "conv2d",
    "linear",
    "matmul",
    "scaled_dot_product_attention",
    "lstm",
    "gru",
    "LSTM",
    "GRU",
    "adam_",
    "optim",
]
