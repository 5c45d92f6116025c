"""Functional ops on NumPy arrays (CPU). See each op's docstring for its contract."""

from .gemm import gemm, linear, matmul

__all__ = ["gemm", "linear", "matmul"]
