"""Layers, losses and initialisers with PyTorch's names, defaults and semantics."""

from . import functional, init, utils
from .activation import GELU, Dropout, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .conv import AdaptiveAvgPool2d, AvgPool2d, Conv2d, MaxPool2d
from .linear import Embedding, Flatten, Linear
from .loss import (
    BCEWithLogitsLoss,
    ContrastiveLoss,
    CosineEmbeddingLoss,
    CrossEntropyLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    TripletMarginLoss,
)
from .module import Identity, Module, ModuleDict, ModuleList, Parameter, ParameterList, Sequential
from .normalization import BatchNorm1d, BatchNorm2d
from .rnn import LSTM, LSTMCell

__all__ = [
    "Module",
    "ModuleList",
    "ModuleDict",
    "ParameterList",
    "Identity",
    "Parameter",
    "Sequential",
    "functional",
    "init",
    "utils",
    "Linear",
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "Flatten",
    "ReLU",
    "LeakyReLU",
    "Tanh",
    "Sigmoid",
    "GELU",
    "Softmax",
    "LogSoftmax",
    "Dropout",
    "BatchNorm1d",
    "BatchNorm2d",
    "Embedding",
    "LSTM",
    "LSTMCell",
    "MSELoss",
    "L1Loss",
    "CrossEntropyLoss",
    "NLLLoss",
    "BCEWithLogitsLoss",
    "TripletMarginLoss",
    "ContrastiveLoss",
    "CosineEmbeddingLoss",
]
