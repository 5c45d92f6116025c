"""Layers, losses and initialisers with PyTorch's names, defaults and semantics."""

from .module import Module, ModuleList, Parameter, Sequential

__all__ = ["Module", "ModuleList", "Parameter", "Sequential"]
