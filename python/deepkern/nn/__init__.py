"""Layers, losses and initialisers with PyTorch's names, defaults and semantics."""

from . import utils
from .loss import (
    BCEWithLogitsLoss, ContrastiveLoss, CosineEmbeddingLoss, CrossEntropyLoss, L1Loss, MSELoss,
    NLLLoss, TripletMarginLoss,
)
from .module import Module, ModuleList, Parameter, Sequential
from .rnn import LSTM, LSTMCell

__all__ = [
    "Module", "ModuleList", "Parameter", "Sequential", "utils",
    "LSTM", "LSTMCell",
    "MSELoss", "L1Loss", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss", "TripletMarginLoss",
    "ContrastiveLoss", "CosineEmbeddingLoss",
]
