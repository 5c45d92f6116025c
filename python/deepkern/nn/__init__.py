"""Layers, losses and initialisers with PyTorch's names, defaults and semantics."""

from . import functional, init
from .activation import GELU, Dropout, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .conv import AdaptiveAvgPool2d, AvgPool2d, Conv2d, MaxPool2d
from .linear import Embedding, Flatten, Linear
from .module import Module, ModuleList, Parameter, Sequential
from .normalization import BatchNorm1d, BatchNorm2d

__all__ = ["Module", "ModuleList", "Parameter", "Sequential"]
__all__ += [
    "functional", "init", "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten",
    "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "GELU", "Softmax", "LogSoftmax", "Dropout", "BatchNorm1d",
    "BatchNorm2d", "Embedding",
]
