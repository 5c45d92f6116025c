"""Optimizers with ``torch.optim``'s semantics (param groups, state, state dicts, ``zero_grad``),
each param group stepped by one call of a fused multi-tensor kernel in ``deepkern.ops``, and the
learning-rate schedulers in :mod:`deepkern.optim.lr_scheduler`."""

from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "lr_scheduler"]
