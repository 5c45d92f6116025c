"""Functional ops on NumPy arrays (CPU). See each op's docstring for its contract."""

from .conv import conv2d, conv2d_backward
from .gemm import gemm, linear, matmul

__all__ = ["conv2d", "conv2d_backward", "gemm", "linear", "matmul"]
