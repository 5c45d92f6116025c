"""``affine_grid`` and ``grid_sample`` (``torch.nn.functional``'s, 2-D): spatial transformers. Both
are composed of Tensor operations (a matrix product; coordinate arithmetic, gathers and weighted
sums), so their gradients, with respect to the input, the grid and the affine matrices, are those of
the pieces, as PyTorch's kernels compute them."""

from __future__ import annotations

import warnings

import numpy as np

from ..tensor import Tensor, tensor, where

__all__ = ["affine_grid", "grid_sample"]

_DEFAULT_CHANGED = (
    "Default grid_sample and affine_grid behavior has changed to align_corners=False since 1.3.0. Please "
    "specify align_corners=True if the old behavior is desired. See the documentation of grid_sample for details."
)


def _align_corners(align_corners) -> bool:
    if align_corners is None:
        warnings.warn(_DEFAULT_CHANGED, UserWarning, stacklevel=3)
        return False
    return bool(align_corners)


def _base_coordinates(n: int, align_corners: bool) -> np.ndarray:
    """The normalized centres of ``n`` pixels along an axis: -1 .. 1 on the corner pixels' centres, or
    on their outer edges (the centres then (2i + 1) / n - 1) without ``align_corners``."""
    if n <= 1:
        return np.zeros(n)
    coords = np.linspace(-1.0, 1.0, n)
    return coords if align_corners else coords * (n - 1) / n


def affine_grid(theta, size, align_corners=None):
    """The sampling grid (N, H, W, 2) of the affine maps ``theta`` (N, 2, 3) for an output of ``size``
    (N, C, H, W): at each output pixel, theta applied to its normalized (x, y, 1)."""
    align = _align_corners(align_corners)
    if not isinstance(theta, Tensor) or theta.dtype.kind not in "fV":
        raise TypeError(f"affine_grid: theta must be a floating-point Tensor, got {type(theta).__name__}")
    size = tuple(int(v) for v in size)
    if len(size) != 4:
        raise NotImplementedError(f"affine_grid: only 2-D sizes (N, C, H, W) are supported, got {size}")
    n, _, h, w = size
    if theta.shape != (n, 2, 3):
        raise ValueError(
            f"affine_grid: theta must have shape (N, 2, 3) = {(n, 2, 3)} for size {size}, got {theta.shape}"
        )
    if min(size) <= 0:
        raise ValueError(f"affine_grid: size must be positive, got {size}")
    xs, ys = np.meshgrid(_base_coordinates(w, align), _base_coordinates(h, align))
    base = np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)], axis=1).astype(theta.dtype)  # (H*W, 3)
    base_tensor = tensor(base, dtype=theta.dtype, device=theta.device)
    return (base_tensor @ theta.transpose(1, 2)).reshape(n, h, w, 2)


def _reflect(coord: Tensor, twice_low: int, twice_high: int) -> Tensor:
    """PyTorch's reflect_coordinates: ``coord`` reflected into [twice_low / 2, twice_high / 2]."""
    if twice_low == twice_high:
        return coord * 0
    low, span = twice_low / 2, (twice_high - twice_low) / 2
    distance = (coord - low).abs()
    extra = distance.fmod(span)
    even = (distance / span).floor().fmod(2) == 0
    return where(even, extra + low, span - extra + low)


def _source(coord: Tensor, size: int, padding_mode: str, align: bool) -> Tensor:
    """Normalized coordinates as input pixel positions, reflected and clipped as ``padding_mode`` says."""
    coord = (coord + 1) / 2 * (size - 1) if align else ((coord + 1) * size - 1) / 2
    if padding_mode == "reflection":
        coord = _reflect(coord, 0, 2 * (size - 1)) if align else _reflect(coord, -1, 2 * size - 1)
    if padding_mode in ("border", "reflection"):  # clipped; no gradient at or past the border (PyTorch's rule)
        strictly_inside = (coord > 0) & (coord < size - 1)
        coord = where(strictly_inside, coord, coord.detach().clamp(0, size - 1))
    return coord


def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=None):
    """``input`` (N, C, H, W) sampled at ``grid`` (N, H_out, W_out, 2: normalized x, y in [-1, 1]) into
    (N, C, H_out, W_out): 'bilinear' (the four neighbours, weighted) or 'nearest' (rounded half to
    even); outside the input 'zeros' reads 0, 'border' the nearest edge pixel, 'reflection' the
    input mirrored at its borders. Differentiable in the input and, bilinear, in the grid (with no
    gradient where a coordinate is clipped at or past the border, as PyTorch's; nearest gives the grid
    none, where PyTorch's is zeros)."""
    align = _align_corners(align_corners)
    for name, value in (("input", input), ("grid", grid)):
        if not isinstance(value, Tensor) or value.dtype.kind not in "fV":
            raise TypeError(f"grid_sample: {name} must be a floating-point Tensor, got {type(value).__name__}")
    if mode not in ("bilinear", "nearest"):
        raise ValueError(
            f"grid_sample: mode must be 'bilinear' or 'nearest' ('bicubic' is not supported), got {mode!r}"
        )
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(f"grid_sample: padding_mode must be 'zeros', 'border' or 'reflection', got {padding_mode!r}")
    if input.ndim != 4 or grid.ndim != 4 or grid.shape[-1] != 2 or grid.shape[0] != input.shape[0]:
        raise ValueError(
            "grid_sample: input must be (N, C, H, W) and grid (N, H_out, W_out, 2) with the same N (5-D input is "
            f"not supported), got shapes {input.shape} and {grid.shape}"
        )
    if input.dtype != grid.dtype:
        raise TypeError(f"grid_sample: input and grid must have the same dtype, got {input.dtype} and {grid.dtype}")
    n, c, h, w = input.shape
    ho, wo = grid.shape[1:3]
    x = _source(grid[..., 0], w, padding_mode, align)
    y = _source(grid[..., 1], h, padding_mode, align)
    flat = input.reshape(n, c, h * w)

    def read(ix: Tensor, iy: Tensor) -> Tensor:
        """input at integer positions (N, H_out, W_out), 0 outside: (N, C, H_out, W_out) and the mask."""
        inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        index = where(inside, iy * w + ix, 0).long().reshape(n, 1, ho * wo).expand(n, c, ho * wo)
        values = flat.gather(2, index).reshape(n, c, ho, wo)
        return values, inside.unsqueeze(1)

    if mode == "nearest":
        values, inside = read(x.detach().round(), y.detach().round())
        return where(inside, values, 0.0)
    x0, y0 = x.detach().floor(), y.detach().floor()
    out = None
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        weight = ((x - x0) if dx else (x0 + 1 - x)) * ((y - y0) if dy else (y0 + 1 - y))
        values, inside = read(x0 + dx, y0 + dy)
        term = where(inside, values * weight.unsqueeze(1), 0.0)
        out = term if out is None else out + term
    return out
