"""Optimizers with ``torch.optim``'s semantics (param groups, state, state dicts, ``zero_grad``):
SGD, Adam, AdamW and RMSprop step each param group by one call of a fused multi-tensor kernel in
``deepkern.ops``; Adagrad, NAdam, RAdam, Adadelta, Adamax, ASGD, Rprop and LBFGS are NumPy
operations on the parameters' arrays.
The learning-rate schedulers are in :mod:`deepkern.optim.lr_scheduler`."""

from . import lr_scheduler
from .adam import Adam, AdamW
from .adaptive import ASGD, Adadelta, Adagrad, Adamax, NAdam, RAdam, Rprop
from .lbfgs import LBFGS
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "NAdam",
    "RAdam",
    "Adadelta",
    "Adamax",
    "ASGD",
    "Rprop",
    "LBFGS",
    "lr_scheduler",
]
