"""``deepkern.utils``: where PyTorch scripts look for ``torch.utils``. ``deepkern.utils.data`` is
:mod:`deepkern.data` (Dataset, TensorDataset, DataLoader, ...), so that
``torch.utils.data.DataLoader(...)`` and ``from torch.utils.data import Dataset`` run unchanged;
``deepkern.utils.checkpoint`` is torch.utils.checkpoint's (activation checkpointing)."""

import sys

from .. import data
from . import checkpoint

# `import deepkern.utils.data` and `from deepkern.utils.data import ...` find the same module.
sys.modules[__name__ + ".data"] = data

__all__ = ["data", "checkpoint"]
