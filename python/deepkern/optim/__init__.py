"""Optimizers with ``torch.optim``'s semantics (param groups, state, state dicts, ``zero_grad``):
SGD, Adam, AdamW and RMSprop step each param group by one call of a fused multi-tensor kernel in
``deepkern.ops``; Adagrad, NAdam, RAdam, Adadelta, Adamax, ASGD, Rprop and LBFGS are NumPy
operations on the parameters' arrays, as are Adafactor and Muon (its Newton-Schulz iteration on tensors).
The learning-rate schedulers are in :mod:`deepkern.optim.lr_scheduler`; weight averaging (SWA, EMA),
SWALR and update_bn in :mod:`deepkern.optim.swa_utils`."""

from . import lr_scheduler, swa_utils
from .adafactor import Adafactor
from .adam import Adam, AdamW
from .adaptive import ASGD, Adadelta, Adagrad, Adamax, NAdam, RAdam, Rprop
from .lbfgs import LBFGS
from .muon import Muon
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
    "Adafactor",
    "Muon",
    "lr_scheduler",
    "swa_utils",
]
