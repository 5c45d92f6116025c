"""Plain float64 NumPy references for deepkern's kernels (see DESIGN.md, "Verification").

Every reference converts its inputs to float64 first, so a float32 kernel is compared with the
exact product of the same float32 values, not with a float32 computation that shares its errors.
"""

from __future__ import annotations

import math

import numpy as np


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def _relu(v: np.ndarray) -> np.ndarray:
    # max(v, 0) that keeps NaN as NaN (np.maximum would too, but this states it).
    return np.where(v < 0, 0.0, v)


def matmul_ref(a, b) -> np.ndarray:
    """``a @ b`` with NumPy's matmul semantics, in float64."""
    return np.matmul(_f64(a), _f64(b))


def gemm_ref(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None, bias=None, relu=False):
    """``relu?(alpha * op(a) @ op(b) + beta * c + bias)`` in float64; ``c`` is not read when beta == 0."""
    a64, b64 = _f64(a), _f64(b)
    op_a = a64.T if trans_a else a64
    op_b = b64.T if trans_b else b64
    out = float(alpha) * (op_a @ op_b)
    if beta != 0:
        out = out + float(beta) * _f64(c)
    if bias is not None:
        out = out + _f64(bias)[None, :]
    if relu:
        out = _relu(out)
    return out


def linear_ref(x, w, b=None, relu=False) -> np.ndarray:
    """``relu?(x @ w.T + b)`` in float64 (PyTorch's F.linear)."""
    out = _f64(x) @ _f64(w).T
    if b is not None:
        out = out + _f64(b)
    if relu:
        out = _relu(out)
    return out


def rel_error(out, ref, floor: float = 0.0) -> float:
    """``||out - ref|| / ||ref||`` (Frobenius, in float64).

    When ``ref`` is all zeros (or empty) this is the absolute error ``||out - ref||``. Any NaN or
    inf in ``out`` where ``ref`` is finite gives ``inf``, and a shape mismatch raises
    ``AssertionError`` (never silently broadcast).

    ``floor`` (default 0) is a lower bound for the denominator: for a product whose few elements
    cancel to almost nothing, pass :func:`magnitude_floor` so the error is measured against the
    size the result has without cancellation (the scale float rounding errors have).
    """
    out64, ref64 = _f64(out), _f64(ref)
    assert out64.shape == ref64.shape, f"shape {out64.shape} != reference shape {ref64.shape}"
    if out64.size == 0:
        return 0.0
    if not np.isfinite(out64[np.isfinite(ref64)]).all():
        return float("inf")
    diff = np.linalg.norm((out64 - ref64).ravel())
    ref_norm = max(float(np.linalg.norm(ref64.ravel())), float(floor))
    if ref_norm == 0.0:
        return float(diff)
    return float(diff / ref_norm)


def magnitude_floor(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None, bias=None) -> float:
    """Half the Frobenius norm the gemm result has when nothing cancels, at random-sign scale:
    ``|| |alpha| |op(a)| @ |op(b)| / sqrt(K) + |beta| |c| + |bias| || / 2``.

    For random zero-mean inputs ``||op(a) @ op(b)||`` is about ``|| |op(a)| @ |op(b)| || / sqrt(K)``,
    so this is below ``||ref||`` unless the result cancels far more than typical (a single dot
    product that lands near zero); used as ``rel_error``'s ``floor``.
    """
    a64, b64 = np.abs(_f64(a)), np.abs(_f64(b))
    op_a = a64.T if trans_a else a64
    op_b = b64.T if trans_b else b64
    k = op_a.shape[-1] if op_a.ndim else 1
    mag = abs(float(alpha)) * np.matmul(op_a, op_b) / np.sqrt(max(k, 1))
    if beta != 0:
        mag = mag + abs(float(beta)) * np.abs(_f64(c))
    if bias is not None:
        mag = mag + np.abs(_f64(bias))
    return 0.5 * float(np.linalg.norm(np.ravel(mag)))


# ----------------------------------------------------------------------------------------------
# 2-D convolution (PyTorch's F.conv2d: NCHW activations, OIHW weights, cross-correlation)


def _pair(v, name):
    if isinstance(v, (tuple, list)):
        assert len(v) == 2, f"{name} must be an int or a pair, got {v!r}"
        return int(v[0]), int(v[1])
    return int(v), int(v)


def conv2d_pads(padding, kernel, dilation):
    """``((top, bottom), (left, right))`` zero padding for ``padding`` = int, pair, "valid" or "same".

    "same" pads ``dilation * (k - 1)`` in all along each axis, the odd one at the end (bottom,
    right), as PyTorch does.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        assert padding == "same", padding
        pads = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    ph, pw = _pair(padding, "padding")
    return (ph, ph), (pw, pw)


def conv2d_out_size(in_hw, kernel, stride, padding, dilation):
    """``(P, Q)`` (may be <= 0 for an input too small for the kernel)."""
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    pads = conv2d_pads(padding, kernel, dilation)
    return tuple(
        (n + lo + hi - d * (k - 1) - 1) // s + 1 for n, (lo, hi), k, s, d in zip(in_hw, pads, kernel, stride, dilation)
    )


def _conv2d_geometry(x_shape, w_shape, stride, padding, dilation, groups):
    n, c, h, wd = x_shape
    k, cg, r, s = w_shape
    assert c == cg * groups and k % groups == 0, f"x {x_shape}, w {w_shape}, groups {groups}"
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    pads = conv2d_pads(padding, (r, s), dilation)
    p, q = conv2d_out_size((h, wd), (r, s), stride, padding, dilation)
    assert p > 0 and q > 0, f"empty output {p}x{q}"
    return stride, dilation, pads, (p, q)


def _tap_index(tap, out_len, stride, dilation):
    """Rows (or columns) of the padded input that kernel tap ``tap`` reads for outputs 0..out_len-1:
    ``o * stride + tap * dilation``."""
    return np.arange(out_len) * stride + tap * dilation


def conv2d_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """PyTorch's ``F.conv2d`` in float64 by direct summation over kernel taps and input channels.

    ``out[n, k, p, q] = b[k] + sum_{c in group(k), r, s} xpad[n, g*Cg + c, p*sh + r*dh, q*sw + s*dw] * w[k, c, r, s]``.
    ``x`` is (N, C, H, W) or unbatched (C, H, W); the result has the matching rank.
    """
    x64, w64 = _f64(x), _f64(w)
    unbatched = x64.ndim == 3
    if unbatched:
        x64 = x64[None]
    n, c, h, wd = x64.shape
    k, cg, r, s = w64.shape
    (sh, sw), (dh, dw), ((pt, pb), (pl, pr)), (p, q) = _conv2d_geometry(
        x64.shape, w64.shape, stride, padding, dilation, groups
    )
    xpad = np.zeros((n, c, h + pt + pb, wd + pl + pr))
    xpad[:, :, pt : pt + h, pl : pl + wd] = x64
    kg = k // groups
    out = np.zeros((n, k, p, q))
    for g in range(groups):
        xg = xpad[:, g * cg : (g + 1) * cg]
        wg = w64[g * kg : (g + 1) * kg]
        for i in range(r):
            rows = _tap_index(i, p, sh, dh)
            for j in range(s):
                cols = _tap_index(j, q, sw, dw)
                patch = xg[:, :, rows[:, None], cols[None, :]]  # (N, Cg, P, Q)
                # sum over the group's input channels: (Kg, Cg) @ (N, Cg, P*Q) -> (N, Kg, P*Q)
                out[:, g * kg : (g + 1) * kg] += np.matmul(wg[:, :, i, j], patch.reshape(n, cg, p * q)).reshape(
                    n, kg, p, q
                )
    if b is not None:
        out += _f64(b)[None, :, None, None]
    return out[0] if unbatched else out


def conv2d_backward_ref(grad_out, x, w, stride=1, padding=0, dilation=1, groups=1):
    """``(grad_x, grad_w, grad_b)`` of ``sum(grad_out * conv2d(x, w, b))`` in float64.

    grad_x scatters each output's gradient back through every tap it read (then drops the padding),
    grad_w sums ``grad_out * input`` over N, P, Q per tap, grad_b sums grad_out over N, P, Q.
    Unbatched (C, H, W) inputs give an unbatched grad_x.
    """
    g64, x64, w64 = _f64(grad_out), _f64(x), _f64(w)
    unbatched = x64.ndim == 3
    if unbatched:
        x64, g64 = x64[None], g64[None]
    n, c, h, wd = x64.shape
    k, cg, r, s = w64.shape
    (sh, sw), (dh, dw), ((pt, pb), (pl, pr)), (p, q) = _conv2d_geometry(
        x64.shape, w64.shape, stride, padding, dilation, groups
    )
    assert g64.shape == (n, k, p, q), f"grad_out {g64.shape} != output {(n, k, p, q)}"
    xpad = np.zeros((n, c, h + pt + pb, wd + pl + pr))
    xpad[:, :, pt : pt + h, pl : pl + wd] = x64
    gxpad = np.zeros_like(xpad)
    gw = np.zeros_like(w64)
    kg = k // groups
    for g in range(groups):
        xg = xpad[:, g * cg : (g + 1) * cg]
        gog = g64[:, g * kg : (g + 1) * kg].reshape(n, kg, p * q)
        wg = w64[g * kg : (g + 1) * kg]
        for i in range(r):
            rows = _tap_index(i, p, sh, dh)
            for j in range(s):
                cols = _tap_index(j, q, sw, dw)
                # One tap reads each padded-input position at most once, so += on the fancy index is safe.
                contrib = np.matmul(wg[:, :, i, j].T, gog).reshape(n, cg, p, q)  # (N, Cg, P, Q)
                gxpad[:, g * cg : (g + 1) * cg, rows[:, None], cols[None, :]] += contrib
                patch = xg[:, :, rows[:, None], cols[None, :]].reshape(n, cg, p * q)
                # sum over N and P*Q: sum_n (Kg, PQ) @ (PQ, Cg)
                gw[g * kg : (g + 1) * kg, :, i, j] = np.matmul(gog, patch.transpose(0, 2, 1)).sum(axis=0)
    gx = gxpad[:, :, pt : pt + h, pl : pl + wd]
    gb = g64.sum(axis=(0, 2, 3))
    return (gx[0] if unbatched else gx), gw, gb


# ---- pooling (NCHW or CHW; PyTorch's torch.nn.functional semantics) -----------------------------


def _transposed_taps(x_shape, w_shape, stride, padding, output_padding, dilation, groups):
    """The scatter plan of a transposed convolution: for each group and tap (g, i, j), the input
    and weight channel slices, the output channel slice, and the rows/columns of the uncropped
    output that input rows/columns 0.. land on; plus the uncropped shape and the crop."""
    n, c, h, wd = x_shape
    _, kg, r, s = w_shape
    (sh, sw), (ph, pw) = _pair(stride, "stride"), _pair(padding, "padding")
    (oh, ow), (dh, dw) = _pair(output_padding, "output_padding"), _pair(dilation, "dilation")
    out_hw = ((h - 1) * sh - 2 * ph + dh * (r - 1) + oh + 1, (wd - 1) * sw - 2 * pw + dw * (s - 1) + ow + 1)
    assert min(out_hw) > 0 and c % groups == 0, f"x {x_shape}, w {w_shape}, groups {groups}"
    full = (n, kg * groups, ph + out_hw[0] + (h - 1) * sh + dh * (r - 1), pw + out_hw[1] + (wd - 1) * sw + dw * (s - 1))
    crop = (slice(None), slice(None), slice(ph, ph + out_hw[0]), slice(pw, pw + out_hw[1]))
    cg = c // groups
    taps = [
        (
            slice(g * cg, (g + 1) * cg),
            slice(g * kg, (g + 1) * kg),
            (i, j),
            (slice(i * dh, i * dh + (h - 1) * sh + 1, sh), slice(j * dw, j * dw + (wd - 1) * sw + 1, sw)),
        )
        for g in range(groups)
        for i in range(r)
        for j in range(s)
    ]
    return taps, full, crop


def conv_transpose2d_ref(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1) -> np.ndarray:
    """PyTorch's ``F.conv_transpose2d`` in float64 by direct scatter: every input pixel times the
    kernel, ``full[n, g*Kg + k, i*sh + r*dh, j*sw + s*dw] += x[n, g*Cg + c, i, j] * w[g*Cg + c, k, r, s]``,
    then ``padding`` cropped from the top/left and the output size kept (``output_padding`` extra
    rows/columns at the bottom/right), plus ``b``. Unbatched (C, H, W) x gives an unbatched result."""
    x64, w64 = _f64(x), _f64(w)
    unbatched = x64.ndim == 3
    x64 = x64[None] if unbatched else x64
    taps, full_shape, crop = _transposed_taps(x64.shape, w64.shape, stride, padding, output_padding, dilation, groups)
    full = np.zeros(full_shape)
    for cin, cout, (i, j), (rows, cols) in taps:
        full[:, cout, rows, cols] += np.einsum("nchw,ck->nkhw", x64[:, cin], w64[cin, :, i, j])
    out = full[crop]
    if b is not None:
        out = out + _f64(b)[:, None, None]
    return out[0] if unbatched else out


def conv_transpose2d_backward_ref(grad_out, x, w, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """``(grad_x, grad_w, grad_b)`` of ``sum(grad_out * conv_transpose2d(x, w, b))`` in float64: each
    input pixel and weight tap collects the gradient at every output position it was scattered to."""
    g64, x64, w64 = _f64(grad_out), _f64(x), _f64(w)
    unbatched = x64.ndim == 3
    if unbatched:
        g64, x64 = g64[None], x64[None]
    taps, full_shape, crop = _transposed_taps(x64.shape, w64.shape, stride, padding, output_padding, dilation, groups)
    full = np.zeros(full_shape)
    full[crop] = g64
    gx, gw = np.zeros_like(x64), np.zeros_like(w64)
    for cin, cout, (i, j), (rows, cols) in taps:
        gx[:, cin] += np.einsum("nkhw,ck->nchw", full[:, cout, rows, cols], w64[cin, :, i, j])
        gw[cin, :, i, j] += np.einsum("nchw,nkhw->ck", x64[:, cin], full[:, cout, rows, cols])
    return (gx[0] if unbatched else gx), gw, g64.sum(axis=(0, 2, 3))


def _pool_pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def pool_output_size_ref(size, kernel, stride, pad, dilation, ceil_mode):
    """PyTorch's pooled size along one axis: floor or ceil of the window count, where with
    ceil_mode the last window must start inside the input or the left padding."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = -(-span // stride) + 1 if ceil_mode else span // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pool_windows(shape, kernel_size, stride, padding, dilation, ceil_mode):
    """For every tap (kh, kw): the input row and column of each output position (arrays of shape
    (OH,) and (OW,)), as a list in PyTorch's row-major tap order, and the output (OH, OW)."""
    (kh, kw), (ph, pw), (dh, dw) = _pool_pair(kernel_size), _pool_pair(padding), _pool_pair(dilation)
    sh, sw = _pool_pair(kernel_size if stride is None else stride)
    h, w = shape[-2:]
    oh = pool_output_size_ref(h, kh, sh, ph, dh, ceil_mode)
    ow = pool_output_size_ref(w, kw, sw, pw, dw, ceil_mode)
    taps = [(np.arange(oh) * sh - ph + i * dh, np.arange(ow) * sw - pw + j * dw) for i in range(kh) for j in range(kw)]
    return taps, (oh, ow)


def _gather_tap(x64, rows, cols):
    """x[..., rows, cols] with positions outside the input clamped, and the in-bounds mask."""
    h, w = x64.shape[-2:]
    valid = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
    r, c = np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)
    return x64[..., r[:, None], c[None, :]], valid, r[:, None] * w + c[None, :]


def max_pool2d_ref(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(out, indices): the max of each window's in-bounds taps, visited in row-major order; a tap
    replaces the running max when it is larger or NaN, and the first in-bounds tap sets the index
    (PyTorch's rule). A window with no in-bounds tap gives -inf and index -1."""
    x64 = _f64(x)
    taps, (oh, ow) = _pool_windows(x64.shape, kernel_size, stride, padding, dilation, ceil_mode)
    out = np.full(x64.shape[:-2] + (oh, ow), -np.inf)
    idx = np.full(out.shape, -1, dtype=np.int64)
    for rows, cols in taps:
        v, valid, flat = _gather_tap(x64, rows, cols)
        take = valid & ((v > out) | np.isnan(v) | (idx == -1))
        out = np.where(take, v, out)
        idx = np.where(take, flat, idx)
    return out, idx


def avg_pool2d_ref(
    x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None
):
    """The sum of each window's in-bounds taps over the divisor: divisor_override, else the
    window clipped to the padded input (count_include_pad) or to the input."""
    x64 = _f64(x)
    taps, (oh, ow) = _pool_windows(x64.shape, kernel_size, stride, padding, 1, ceil_mode)
    total = np.zeros(x64.shape[:-2] + (oh, ow))
    for rows, cols in taps:
        v, valid, _ = _gather_tap(x64, rows, cols)
        total += np.where(valid, v, 0.0)
    return total / _avg_divisor(
        x64.shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, (oh, ow)
    )


def _avg_divisor(shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, out_hw):
    if divisor_override is not None:
        return float(divisor_override)
    (kh, kw), (ph, pw) = _pool_pair(kernel_size), _pool_pair(padding)
    sh, sw = _pool_pair(kernel_size if stride is None else stride)
    factors = []
    for n_out, n_in, k, s, p in ((out_hw[0], shape[-2], kh, sh, ph), (out_hw[1], shape[-1], kw, sw, pw)):
        start = np.arange(n_out) * s - p
        end = np.minimum(start + k, n_in + p)
        if count_include_pad:
            factors.append(end - start)
        else:
            factors.append(np.minimum(end, n_in) - np.maximum(start, 0))
    factors = [f.astype(np.float64) for f in factors]  # windows of 2**40 x 2**40 taps overflow int64
    return factors[0][:, None] * factors[1][None, :]


def adaptive_avg_pool2d_ref(x, output_size):
    """Output (i, j) is the mean of rows floor(i*H/OH) .. ceil((i+1)*H/OH) and columns likewise."""
    x64 = _f64(x)
    h, w = x64.shape[-2:]
    oh, ow = _pool_pair(output_size)
    oh, ow = h if oh is None else oh, w if ow is None else ow
    out = np.empty(x64.shape[:-2] + (oh, ow))
    for i in range(oh):
        r0, r1 = (i * h) // oh, -(-((i + 1) * h) // oh)
        for j in range(ow):
            c0, c1 = (j * w) // ow, -(-((j + 1) * w) // ow)
            out[..., i, j] = x64[..., r0:r1, c0:c1].mean(axis=(-2, -1))
    return out


def max_pool2d_backward_ref(grad_out, x_shape, indices) -> np.ndarray:
    """Zeros of x_shape plus each grad_out element added at its index in its (H, W) plane
    (index -1: a window over padding only, no gradient)."""
    g = _f64(grad_out)
    h, w = x_shape[-2:]
    planes = int(np.prod(x_shape[:-2]))
    gx = np.zeros((planes, h * w))
    windows = int(np.prod(g.shape[-2:]))  # not -1: that cannot be inferred when planes == 0
    g2, i2 = g.reshape(planes, windows), np.asarray(indices).reshape(planes, windows)
    for p in range(planes):
        keep = i2[p] >= 0
        np.add.at(gx[p], i2[p][keep], g2[p][keep])
    return gx.reshape(x_shape)


def avg_pool2d_backward_ref(
    grad_out,
    x_shape,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
) -> np.ndarray:
    """Each grad_out element divided by its window's divisor and added to the window's in-bounds
    taps (the transpose of avg_pool2d_ref)."""
    taps, out_hw = _pool_windows(x_shape, kernel_size, stride, padding, 1, ceil_mode)
    share = _f64(grad_out) / _avg_divisor(
        x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, out_hw
    )
    h, w = x_shape[-2:]
    gx = np.zeros(tuple(x_shape[:-2]) + (h * w,))
    for rows, cols in taps:
        valid = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
        flat = (np.clip(rows, 0, h - 1)[:, None] * w + np.clip(cols, 0, w - 1)[None, :])[valid]
        for lead in np.ndindex(*gx.shape[:-1]):
            np.add.at(gx[lead], flat, share[lead][valid])
    return gx.reshape(x_shape)


def adaptive_avg_pool2d_backward_ref(grad_out, x_shape) -> np.ndarray:
    """Each grad_out element divided by its window's size and added to the window."""
    g = _f64(grad_out)
    h, w = x_shape[-2:]
    oh, ow = g.shape[-2:]
    gx = np.zeros(x_shape)
    for i in range(oh):
        r0, r1 = (i * h) // oh, -(-((i + 1) * h) // oh)
        for j in range(ow):
            c0, c1 = (j * w) // ow, -(-((j + 1) * w) // ow)
            gx[..., r0:r1, c0:c1] += (g[..., i, j] / ((r1 - r0) * (c1 - c0)))[..., None, None]
    return gx


# ---- LSTM (PyTorch's torch.nn.LSTMCell / one layer of torch.nn.LSTM; gate order i, f, g, o) --------


def _sigmoid(v: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-v)) without overflow warnings for large |v|.
    e = np.exp(-np.abs(v))
    return np.where(v >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _lstm_gates(x64, h64, w_ih, w_hh, b_ih, b_hh):
    """The activated gates (i, f, g, o), each (B, H), of one step."""
    pre = x64 @ _f64(w_ih).T + h64 @ _f64(w_hh).T
    if b_ih is not None:
        pre = pre + _f64(b_ih)
    if b_hh is not None:
        pre = pre + _f64(b_hh)
    hid = pre.shape[1] // 4
    i, f, g, o = (pre[:, k * hid : (k + 1) * hid] for k in range(4))
    return _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)


def lstm_cell_ref(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """``(h_next, c_next)`` of torch.nn.LSTMCell in float64:
    ``gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh`` split in four H-wide slices i, f, g, o;
    ``c_next = sigmoid(f) * c + sigmoid(i) * tanh(g)``, ``h_next = sigmoid(o) * tanh(c_next)``."""
    i, f, g, o = _lstm_gates(_f64(x), _f64(h), w_ih, w_hh, b_ih, b_hh)
    c_next = f * _f64(c) + i * g
    return o * np.tanh(c_next), c_next


def _lstm_states(x, h0, c0, w_hh):
    """Float64 x and the initial states (zeros for None)."""
    x64 = _f64(x)
    hid = _f64(w_hh).shape[1]
    zeros = np.zeros((x64.shape[1], hid))
    h = zeros.copy() if h0 is None else _f64(h0).copy()
    c = zeros.copy() if c0 is None else _f64(c0).copy()
    return x64, h, c


def lstm_ref(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False):
    """``(y, h_T, c_T)`` of one LSTM layer over x (T, B, I) in float64; h0, c0 (B, H) or None (zeros).

    Steps t = 0 .. T-1 (T-1 .. 0 with ``reverse``, as the reverse direction of a bidirectional
    torch.nn.LSTM); ``y[t]`` is the hidden state after step t and (h_T, c_T) the state after the last
    step processed (after step 0 with ``reverse``)."""
    x64, h, c = _lstm_states(x, h0, c0, w_hh)
    steps = range(x64.shape[0] - 1, -1, -1) if reverse else range(x64.shape[0])
    y = np.zeros((x64.shape[0],) + h.shape)
    for t in steps:
        h, c = lstm_cell_ref(x64[t], h, c, w_ih, w_hh, b_ih, b_hh)
        y[t] = h
    return y, h, c


def lstm_cell_backward_ref(grad_h_next, grad_c_next, x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """``(grad_x, grad_h, grad_c, grad_w_ih, grad_w_hh, grad_b, grad_b)`` of
    ``sum(grad_h_next * h_next) + sum(grad_c_next * c_next)`` for one lstm_cell_ref step, in float64
    (None gradients are zeros; both bias gradients are the batch sum of the pre-activation gradient).

    With a = pre-activations and i, f, g, o the activated gates:
    ``dc_next = grad_c_next + grad_h_next * o * (1 - tanh(c_next)^2)``,
    ``da_i = dc_next * g * i (1 - i)``, ``da_f = dc_next * c * f (1 - f)``, ``da_g = dc_next * i * (1 - g^2)``,
    ``da_o = grad_h_next * tanh(c_next) * o (1 - o)``; then ``grad_x = da @ w_ih``, ``grad_h = da @ w_hh``,
    ``grad_c = dc_next * f``, ``grad_w_ih = da.T @ x``, ``grad_w_hh = da.T @ h``, ``grad_b = sum_B da``."""
    x64, h64, c64 = _f64(x), _f64(h), _f64(c)
    i, f, g, o = _lstm_gates(x64, h64, w_ih, w_hh, b_ih, b_hh)
    c_next = f * c64 + i * g
    tc = np.tanh(c_next)
    gh = np.zeros_like(c_next) if grad_h_next is None else _f64(grad_h_next)
    gc = np.zeros_like(c_next) if grad_c_next is None else _f64(grad_c_next)
    dc = gc + gh * o * (1.0 - tc * tc)
    da = np.concatenate(
        [dc * g * i * (1.0 - i), dc * c64 * f * (1.0 - f), dc * i * (1.0 - g * g), gh * tc * o * (1.0 - o)], axis=1
    )
    w_ih64, w_hh64 = _f64(w_ih), _f64(w_hh)
    gb = da.sum(axis=0)
    return da @ w_ih64, da @ w_hh64, dc * f, da.T @ x64, da.T @ h64, gb, gb.copy()


def lstm_backward_ref(grad_y, grad_h_T, grad_c_T, x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False):
    """``(grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)`` of
    ``sum(grad_y * y) + sum(grad_h_T * h_T) + sum(grad_c_T * c_T)`` for lstm_ref, in float64, by
    backpropagation through time: the forward states are recomputed and kept, then the steps are
    walked in the opposite order, each step's incoming hidden gradient being grad_y[t] plus what the
    next step sent back. None gradients are zeros; grad_b_ih == grad_b_hh (returned also without biases)."""
    x64, h, c = _lstm_states(x, h0, c0, w_hh)
    steps = list(range(x64.shape[0] - 1, -1, -1) if reverse else range(x64.shape[0]))
    states = {}  # t -> (h, c) entering step t
    for t in steps:
        states[t] = (h, c)
        h, c = lstm_cell_ref(x64[t], h, c, w_ih, w_hh, b_ih, b_hh)
    gh = np.zeros_like(h) if grad_h_T is None else _f64(grad_h_T).copy()
    gc = np.zeros_like(c) if grad_c_T is None else _f64(grad_c_T).copy()
    gy = None if grad_y is None else _f64(grad_y)
    gx = np.zeros_like(x64)
    gw_ih, gw_hh = np.zeros(_f64(w_ih).shape), np.zeros(_f64(w_hh).shape)
    gb = np.zeros(gw_ih.shape[0])
    for t in reversed(steps):
        if gy is not None:
            gh = gh + gy[t]
        h_in, c_in = states[t]
        gx[t], gh, gc, dw_ih, dw_hh, db, _ = lstm_cell_backward_ref(gh, gc, x64[t], h_in, c_in, w_ih, w_hh, b_ih, b_hh)
        gw_ih += dw_ih
        gw_hh += dw_hh
        gb += db
    return gx, gh, gc, gw_ih, gw_hh, gb, gb.copy()


def _affine(v64, w, b):
    """v64 @ w.T (+ b) in float64."""
    out = v64 @ _f64(w).T
    return out if b is None else out + _f64(b)


def gru_cell_ref(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """``h_next`` of torch.nn.GRUCell in float64 (h None: zeros): ``gi = x @ w_ih.T + b_ih`` and
    ``gh = h @ w_hh.T + b_hh`` split in H-wide slices r, z, n; ``r = sigmoid(gi_r + gh_r)``,
    ``z = sigmoid(gi_z + gh_z)``, ``n = tanh(gi_n + r * gh_n)``, ``h_next = (1 - z) * n + z * h``."""
    return _gru_step(_f64(x), _gru_state(x, h, w_hh), w_ih, w_hh, b_ih, b_hh)[0]


def _gru_state(x, h, w_hh):
    return np.zeros((np.shape(x)[-2], _f64(w_hh).shape[1])) if h is None else _f64(h)


def _gru_step(x64, h64, w_ih, w_hh, b_ih, b_hh):
    """h_next and the vjp (grad_h_next -> grad_x, grad_h, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)."""
    gi, gh = _affine(x64, w_ih, b_ih), _affine(h64, w_hh, b_hh)
    hid = gh.shape[1] // 3
    part = lambda a, k: a[:, k * hid : (k + 1) * hid]  # noqa: E731
    r = _sigmoid(part(gi, 0) + part(gh, 0))
    z = _sigmoid(part(gi, 1) + part(gh, 1))
    n = np.tanh(part(gi, 2) + r * part(gh, 2))
    h_next = (1.0 - z) * n + z * h64

    def vjp(g):
        da_n = g * (1.0 - z) * (1.0 - n * n)
        da_r = da_n * part(gh, 2) * r * (1.0 - r)
        da_z = g * (h64 - n) * z * (1.0 - z)
        d_gi = np.concatenate([da_r, da_z, da_n], axis=1)
        d_gh = np.concatenate([da_r, da_z, da_n * r], axis=1)
        grad_h = g * z + d_gh @ _f64(w_hh)
        return d_gi @ _f64(w_ih), grad_h, d_gi.T @ x64, d_gh.T @ h64, d_gi.sum(0), d_gh.sum(0)

    return h_next, vjp


def rnn_cell_ref(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """``h_next`` of torch.nn.RNNCell in float64 (h None: zeros): ``act(x @ w_ih.T + b_ih + h @ w_hh.T
    + b_hh)`` with act tanh or relu."""
    return _rnn_step(_f64(x), _gru_state(x, h, w_hh), w_ih, w_hh, b_ih, b_hh, nonlinearity)[0]


def _rnn_step(x64, h64, w_ih, w_hh, b_ih, b_hh, nonlinearity):
    """h_next and its vjp, as _gru_step."""
    pre = _affine(x64, w_ih, b_ih) + _affine(h64, w_hh, b_hh)
    h_next = np.maximum(pre, 0.0) if nonlinearity == "relu" else np.tanh(pre)

    def vjp(g):
        da = g * (pre > 0) if nonlinearity == "relu" else g * (1.0 - h_next * h_next)
        return da @ _f64(w_ih), da @ _f64(w_hh), da.T @ x64, da.T @ h64, da.sum(0), da.sum(0)

    return h_next, vjp


def _sequence_ref(step, x, h0, w_hh, grad_y, grad_h_T, reverse):
    """A layer of ``step`` (x64_t, h64 -> (h_next, vjp)) over x (T, B, I) from h0 (None: zeros):
    ``(y, h_T)`` and, by backpropagation through time of ``sum(grad_y * y) + sum(grad_h_T * h_T)``
    (None: zero), ``(grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)``."""
    x64 = _f64(x)
    h = _gru_state(x64, h0, w_hh).copy()
    order = list(range(x64.shape[0] - 1, -1, -1) if reverse else range(x64.shape[0]))
    y, vjps = np.zeros((x64.shape[0],) + h.shape), {}
    for t in order:
        h, vjps[t] = step(x64[t], h)
        y[t] = h
    gh = np.zeros_like(h) if grad_h_T is None else _f64(grad_h_T).copy()
    grads = [np.zeros_like(x64), None, 0.0, 0.0, 0.0, 0.0]
    for t in reversed(order):
        gx, gh, *rest = vjps[t](gh + (0.0 if grad_y is None else _f64(grad_y)[t]))
        grads[0][t] = gx
        for k, v in enumerate(rest):
            grads[2 + k] = grads[2 + k] + v
    grads[1] = gh
    return (y, h), tuple(grads)


def gru_ref(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False):
    """``(y, h_T)`` of one GRU layer (gru_cell_ref each step) over x (T, B, I) in float64; steps run
    T-1 .. 0 with ``reverse``."""
    return gru_backward_ref(None, None, x, h0, w_ih, w_hh, b_ih, b_hh, reverse, outputs=True)


def gru_backward_ref(grad_y, grad_h_T, x, h0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False, outputs=False):
    """``(grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)`` of ``sum(grad_y * y) +
    sum(grad_h_T * h_T)`` for gru_ref, in float64 (None gradients: zero). Weight and bias gradients
    are zeros of their shapes when no step runs. ``outputs``: return gru_ref's result instead."""
    step = lambda x64, h64: _gru_step(x64, h64, w_ih, w_hh, b_ih, b_hh)  # noqa: E731
    out, grads = _sequence_ref(step, x, h0, w_hh, grad_y, grad_h_T, reverse)
    return out if outputs else _shaped(grads, w_ih, w_hh)


def rnn_ref(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", reverse=False):
    """``(y, h_T)`` of one Elman RNN layer (rnn_cell_ref each step) over x (T, B, I) in float64."""
    return rnn_backward_ref(None, None, x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, reverse, outputs=True)


def rnn_backward_ref(
    grad_y, grad_h_T, x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", reverse=False, outputs=False
):
    """As gru_backward_ref, for rnn_ref (grad_b_ih == grad_b_hh)."""
    step = lambda x64, h64: _rnn_step(x64, h64, w_ih, w_hh, b_ih, b_hh, nonlinearity)  # noqa: E731
    out, grads = _sequence_ref(step, x, h0, w_hh, grad_y, grad_h_T, reverse)
    return out if outputs else _shaped(grads, w_ih, w_hh)


def _shaped(grads, w_ih, w_hh):
    """The gradients with the weight and bias ones as arrays of their shapes (0.0: zeros)."""
    gx, gh0, gwi, gwh, gbi, gbh = grads
    rows = _f64(w_ih).shape[0]
    zeros = lambda v, shape: v + np.zeros(shape)  # noqa: E731
    return gx, gh0, zeros(gwi, _f64(w_ih).shape), zeros(gwh, _f64(w_hh).shape), zeros(gbi, rows), zeros(gbh, rows)


def packed_layer_ref(forward_ref, backward_ref, x, states, weights, batch_sizes, grads=None, reverse=False, **kw):
    """One recurrent layer over a batch of variable lengths, as the kernels run it with
    ``batch_sizes`` (T,): each row b alone on its first L_b steps (L_b = how many batch_sizes
    exceed b), by ``forward_ref`` (lstm_ref, gru_ref, rnn_ref) and ``backward_ref`` (their
    backward refs), in float64. ``states``: the initial states (B, H) or None, ``weights``: w_ih,
    w_hh, b_ih, b_hh (biases may be None), ``kw``: the refs' other keywords. Returns ``(y,
    *final states)`` with y past a row's end holding its state there (its final one; in reverse,
    its initial one: it has not started); with ``grads`` (grad_y, then one per final state; None:
    zero) also the gradients of x (zero past the ends), of the initial states and of the weights
    (summed over the rows), in backward_ref's order."""
    x64 = _f64(x)
    steps, batch = x64.shape[:2]
    hidden = _f64(weights[1]).shape[1]
    lengths = (np.asarray(batch_sizes)[None, :] > np.arange(batch)[:, None]).sum(axis=1)
    y = np.zeros((steps, batch, hidden))
    finals = [np.zeros((batch, hidden)) for _ in states]
    total = None
    for b, n in enumerate(lengths):
        own = [None if s is None else _f64(s)[b : b + 1] for s in states]
        out = forward_ref(x64[:n, b : b + 1], *own, *weights, reverse=reverse, **kw)
        y[:n, b] = out[0][:, 0]
        y[n:, b] = (0.0 if own[0] is None else own[0][0]) if reverse else out[1][0]
        for final, s in zip(finals, out[1:]):
            final[b] = s[0]
        if grads is None:
            continue
        own_grads = [None if g is None else _f64(g)[b : b + 1] for g in grads]
        if grads[0] is not None:
            own_grads[0] = _f64(grads[0])[:n, b : b + 1]
        g = backward_ref(*own_grads, x64[:n, b : b + 1], *own, *weights, reverse=reverse, **kw)
        if total is None:
            total = [np.zeros_like(x64)] + [np.zeros((batch, hidden)) for _ in states]
            total += [np.zeros_like(v) for v in g[1 + len(states) :]]
        total[0][:n, b] = g[0][:, 0]
        for k in range(len(states)):
            total[1 + k][b] = g[1 + k][0]
        for acc, part in zip(total[1 + len(states) :], g[1 + len(states) :]):
            acc += part
    outs = (y, *finals)
    return outs if grads is None else (outs, tuple(total))


# ---- optimizer steps (torch.optim's SGD, Adam/AdamW, RMSprop; one step, new arrays returned) ------


def sgd_step_ref(
    param,
    grad,
    momentum_buffer=None,
    *,
    lr,
    momentum=0.0,
    dampening=0.0,
    weight_decay=0.0,
    nesterov=False,
    maximize=False,
    first_step=False,
):
    """``(param, momentum_buffer)`` after one torch.optim.SGD step, in float64 (the buffer is None
    without momentum; ``first_step``: torch's buffer is None, so it becomes the gradient)."""
    p, g = _f64(param), _f64(grad)
    g = -g if maximize else g
    if weight_decay != 0:
        g = g + weight_decay * p
    buf = None
    if momentum != 0:
        buf = g.copy() if first_step else momentum * _f64(momentum_buffer) + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, buf


def adam_step_ref(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    *,
    step,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    amsgrad=False,
    max_exp_avg_sq=None,
    maximize=False,
    decoupled_weight_decay=False,
):
    """``(param, exp_avg, exp_avg_sq, max_exp_avg_sq)`` after one torch.optim.Adam step (AdamW with
    ``decoupled_weight_decay``), in float64; ``step`` counts this step. max_exp_avg_sq is None
    without amsgrad."""
    beta1, beta2 = betas
    p, g = _f64(param), _f64(grad)
    g = -g if maximize else g
    if weight_decay != 0:
        if decoupled_weight_decay:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
    m = beta1 * _f64(exp_avg) + (1 - beta1) * g
    v = beta2 * _f64(exp_avg_sq) + (1 - beta2) * g * g
    vmax = np.maximum(_f64(max_exp_avg_sq), v) if amsgrad else None
    denom = np.sqrt(vmax if amsgrad else v) / np.sqrt(1 - beta2**step) + eps
    return p - lr / (1 - beta1**step) * m / denom, m, v, vmax


def rmsprop_step_ref(
    param,
    grad,
    square_avg,
    *,
    lr=1e-2,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0.0,
    momentum=0.0,
    centered=False,
    momentum_buffer=None,
    grad_avg=None,
    maximize=False,
):
    """``(param, square_avg, momentum_buffer, grad_avg)`` after one torch.optim.RMSprop step, in
    float64 (a state the options do not use is None)."""
    p, g = _f64(param), _f64(grad)
    g = -g if maximize else g
    if weight_decay != 0:
        g = g + weight_decay * p
    sq = alpha * _f64(square_avg) + (1 - alpha) * g * g
    ga = None
    if centered:
        ga = alpha * _f64(grad_avg) + (1 - alpha) * g
        avg = np.sqrt(sq - ga * ga) + eps
    else:
        avg = np.sqrt(sq) + eps
    buf = None
    if momentum > 0:
        buf = momentum * _f64(momentum_buffer) + g / avg
        p = p - lr * buf
    else:
        p = p - lr * g / avg
    return p, sq, buf, ga


# ---- activations (torch.relu, torch.nn.functional.gelu and their autograd gradients) ----------------

_GELU_W1 = 2.0 * math.sqrt(2.0 / math.pi)  # tanh form: w = _GELU_W1 (x + 0.044715 x^3), twice torch's argument
_GELU_KAPPA = 0.044715


def _normal_cdf(v: np.ndarray) -> np.ndarray:
    """Phi(v) with relative accuracy in the lower tail (erfc, not 1 + erf)."""
    try:
        from scipy.special import ndtr  # scipy comes with the test extras (scikit-learn, statsmodels)
    except ImportError:
        return np.frompyfunc(lambda t: 0.5 * math.erfc(-t / math.sqrt(2.0)), 1, 1)(v).astype(np.float64)
    return ndtr(v)


def relu_ref(x) -> np.ndarray:
    """``torch.relu`` in float64: NaN stays NaN, -0 stays -0."""
    return _relu(_f64(x))


def relu_backward_ref(grad, x) -> np.ndarray:
    """``threshold_backward(grad, x, 0)``: 0 where x <= 0, grad elsewhere (NaN x included)."""
    return np.where(_f64(x) <= 0, 0.0, _f64(grad))


def gelu_ref(x, approximate: str = "none") -> np.ndarray:
    """``torch.nn.functional.gelu`` in float64: x Phi(x), or x sigmoid(w) for the tanh form
    (0.5 x (1 + tanh(w / 2)) without the cancellation of 1 + tanh for x < 0)."""
    v = _f64(x)
    with np.errstate(invalid="ignore", over="ignore"):  # -inf * 0 = NaN, as PyTorch
        if approximate == "tanh":
            return v * _sigmoid(_GELU_W1 * (v + _GELU_KAPPA * v**3))
        return v * _normal_cdf(v)


def gelu_backward_ref(grad, x, approximate: str = "none") -> np.ndarray:
    """``grad * d gelu / dx`` in float64, PyTorch's derivative: Phi(x) + x phi(x), or for the tanh
    form (1 + tanh u) / 2 + x (1 - tanh^2 u) du/dx / 2 written with s = e^-|w| (w = 2u):
    (1 + s + s m) / (1 + s)^2 for x >= 0, s (1 + s + m) / (1 + s)^2 for x < 0, m = x dw/dx."""
    v = _f64(x)
    with np.errstate(invalid="ignore", over="ignore"):  # +-inf * 0 = NaN, as PyTorch
        if approximate == "tanh":
            s = np.exp(-np.abs(_GELU_W1 * (v + _GELU_KAPPA * v**3)))
            m = _GELU_W1 * v * (1.0 + 3.0 * _GELU_KAPPA * v * v)
            d = np.where(v < 0, s * (1.0 + s + m), 1.0 + s + s * m) / (1.0 + s) ** 2
        else:
            d = _normal_cdf(v) + v * np.exp(-0.5 * v * v) / math.sqrt(2.0 * math.pi)
    return _f64(grad) * d


# ---- softmax family -------------------------------------------------------------------------------


def _softmax_parts(x, dim):
    """(x - max, log sum exp(x - max)) along ``dim`` in float64 (a 0-d x as one element); NaN
    and +-inf give NaN rows as the kernels' (x - max) does."""
    v = _f64(x).reshape(np.shape(x) or (1,))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        shifted = v - np.max(v, axis=dim, keepdims=True) if v.size else v
        return shifted, np.log(np.exp(shifted).sum(axis=dim, keepdims=True))


def softmax_ref(x, dim=-1) -> np.ndarray:
    """``exp(x - max) / sum(exp(x - max))`` along ``dim``, in float64."""
    shifted, log_sum = _softmax_parts(x, dim)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.exp(shifted - log_sum).reshape(np.shape(x))


def log_softmax_ref(x, dim=-1) -> np.ndarray:
    """``(x - max) - log(sum(exp(x - max)))`` along ``dim``, in float64."""
    shifted, log_sum = _softmax_parts(x, dim)
    with np.errstate(invalid="ignore"):
        return (shifted - log_sum).reshape(np.shape(x))


def softmax_backward_ref(grad, y, dim=-1, log=False) -> np.ndarray:
    """The input gradient of softmax (``log``: log_softmax) from ``grad`` and the output ``y``:
    ``y (grad - sum(grad y))``, or ``grad - exp(y) sum(grad)``."""
    g, v = (_f64(a).reshape(np.shape(y) or (1,)) for a in (grad, y))
    with np.errstate(invalid="ignore", over="ignore"):
        if log:
            out = g - np.exp(v) * g.sum(axis=dim, keepdims=True)
        else:
            out = v * (g - (g * v).sum(axis=dim, keepdims=True))
    return out.reshape(np.shape(y))


def _cross_entropy_parts(x, target, weight, ignore_index):
    """x as (samples..., C) float64, the targets, the class weights, the valid mask and safe indices."""
    v = _f64(x)
    z = np.moveaxis(v, 1, -1) if v.ndim > 1 else v
    t = np.asarray(target)
    classes = z.shape[-1]
    w = np.ones(classes) if weight is None else _f64(weight)
    valid = t != ignore_index
    index = np.where(valid, t, 0)
    return z, w, valid, index, classes


def cross_entropy_ref(x, target, weight=None, ignore_index=-100, label_smoothing=0.0):
    """(per-sample losses, per-sample target weights) of PyTorch's cross entropy with class-index
    targets, in float64: ``(1 - eps) w[t] (-log p_t) + eps / C sum_c w_c (-log p_c)``, 0 (and weight
    0) for ignored samples."""
    z, w, valid, index, classes = _cross_entropy_parts(x, target, weight, ignore_index)
    eps = label_smoothing
    if not classes:
        zeros = np.zeros(valid.shape)
        return zeros, zeros
    logp = log_softmax_ref(z, -1)
    picked = np.take_along_axis(logp, index[..., None], axis=-1)[..., 0]
    wt = np.where(valid, w[index], 0.0)
    with np.errstate(invalid="ignore"):
        loss = -(1 - eps) * wt * picked
        if eps:
            loss = loss - eps / classes * (logp * w).sum(axis=-1)
    return np.where(valid, loss, 0.0), wt


def cross_entropy_backward_ref(grad, x, target, weight=None, ignore_index=-100, label_smoothing=0.0):
    """``grad_i (softmax(x_i) sum_c q_ic - q_i)`` with q the weighted, smoothed one-hot target (0
    for ignored samples), in float64 and x's layout; grad is per sample or one factor."""
    z, w, valid, index, classes = _cross_entropy_parts(x, target, weight, ignore_index)
    eps = label_smoothing
    q = np.zeros(z.shape)
    if classes:
        np.put_along_axis(q, index[..., None], ((1 - eps) * w[index])[..., None], axis=-1)
        if eps:  # without smoothing only the target's weight enters (0 times an infinite weight is no term)
            q += eps / classes * w
    g = np.broadcast_to(_f64(grad).reshape(np.shape(grad) if np.size(grad) != 1 else ()), valid.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        gz = (softmax_ref(z, -1) * q.sum(axis=-1, keepdims=True) - q) * g[..., None]
    gz = np.where(valid[..., None], gz, 0.0)
    return np.moveaxis(gz, -1, 1) if np.ndim(x) > 1 else gz


# ---- dropout: the Philox4x32-10 stream -------------------------------------------------------

_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)
_U32 = np.uint64(0xFFFFFFFF)


def philox4x32_10_ref(counters, key) -> np.ndarray:
    """Philox4x32-10 (Salmon et al., SC 2011) of each row of ``counters`` ((n, 4) words, word 0 the
    least significant) under ``key`` (two words), in uint64 NumPy arithmetic: (n, 4) uint32 words."""
    c = [np.asarray(counters, np.uint64)[:, j] for j in range(4)]
    k0, k1 = int(key[0]), int(key[1])
    for r in range(10):
        if r:
            k0, k1 = (k0 + _PHILOX_W[0]) & 0xFFFFFFFF, (k1 + _PHILOX_W[1]) & 0xFFFFFFFF
        p0, p1 = np.uint64(_PHILOX_M[0]) * c[0], np.uint64(_PHILOX_M[1]) * c[2]
        c = [
            (p1 >> np.uint64(32)) ^ c[1] ^ np.uint64(k0),
            p1 & _U32,
            (p0 >> np.uint64(32)) ^ c[3] ^ np.uint64(k1),
            p0 & _U32,
        ]
    return np.stack(c, axis=1).astype(np.uint32)


def dropout_words_ref(n: int, seed: int, offset: int) -> np.ndarray:
    """The 32-bit word of each of ``n`` elements of a dropout call: word ``i % 4`` of Philox at the
    128-bit counter ``offset + i // 4`` with key ``seed`` (low word first)."""
    b = np.arange((n + 3) // 4, dtype=np.uint64)
    low = np.uint64(offset) + b  # modulo 2**64; the carry goes to word 2
    carry = (low < b).astype(np.uint64)
    rows = np.stack([low & _U32, low >> np.uint64(32), carry, np.zeros_like(b)], axis=1)
    return philox4x32_10_ref(rows, (seed & 0xFFFFFFFF, seed >> 32)).reshape(-1)[:n]


def dropout_ref(x, p: float, seed: int, offset: int):
    """(y, mask) of ``deepkern.ops.dropout``: mask = word >= ceil(p 2**32); y = x * mask / (1 - p)
    in float64 (0 * x for the dropped elements, so NaN and inf give NaN)."""
    x64 = _f64(x)
    words = dropout_words_ref(x64.size, seed, offset).astype(np.uint64).reshape(x64.shape)
    mask = words >= math.ceil(p * 2**32)
    scale = 1 / (1 - p) if p < 1 else 0.0
    with np.errstate(invalid="ignore"):  # inf * 0
        return x64 * np.where(mask, scale, 0.0), mask


def dropout_backward_ref(grad, mask, p: float) -> np.ndarray:
    """``grad * mask / (1 - p)`` in float64 (0 times the dropped elements' gradients)."""
    scale = 1 / (1 - p) if p < 1 else 0.0
    with np.errstate(invalid="ignore"):  # inf * 0
        return _f64(grad) * np.where(np.asarray(mask, bool), scale, 0.0)


# ---- scaled dot-product attention ----------------------------------------------------------------


def _sum_to(x: np.ndarray, shape: tuple) -> np.ndarray:
    """``x`` summed over the axes that broadcasting added or stretched, down to ``shape``."""
    lead = x.ndim - len(shape)
    x = x.sum(axis=tuple(range(lead))) if lead else x
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and x.shape[i] != 1)
    return x.sum(axis=axes, keepdims=True) if axes else x


def _attention_parts(q, k, v, mask, causal, scale, enable_gqa, dropout):
    """The explicit (..., L, S) matrices of attention in float64: (q, k, v as used, probabilities P,
    dropout's factors Z, scale); P is 0 on a fully masked row."""
    q, k, v = _f64(q), _f64(k), _f64(v)
    if enable_gqa and q.ndim >= 3 and k.ndim >= 3:
        k = np.repeat(k, q.shape[-3] // k.shape[-3], axis=-3)
        v = np.repeat(v, q.shape[-3] // v.shape[-3], axis=-3)
    n_q, s, e = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = (1 / math.sqrt(e) if e else 0.0) if scale is None else scale
    x = np.matmul(q, np.swapaxes(k, -1, -2)) * scale if e else np.zeros(q.shape[:-1] + (s,))
    if mask is not None:
        mask = np.asarray(mask)
        x = x + (np.where(mask, 0.0, -np.inf) if mask.dtype == bool else mask.astype(np.float64))
    if causal:
        x = np.where(np.tril(np.ones((n_q, s), bool)), x, -np.inf)
    x = np.broadcast_to(x, np.broadcast_shapes(x.shape, v.shape[:-2] + (1, 1)))
    top = np.max(x, axis=-1, keepdims=True, initial=-np.inf)
    with np.errstate(invalid="ignore"):
        e_x = np.exp(x - np.where(np.isneginf(top), 0.0, top))
    total = e_x.sum(axis=-1, keepdims=True)
    p = np.where(total > 0, e_x / np.where(total > 0, total, 1.0), 0.0)
    z = np.ones_like(p)
    if dropout is not None:
        rate, seed, offset = dropout
        words = dropout_words_ref(p.size, seed, offset).astype(np.uint64).reshape(p.shape)
        z = np.where(words >= math.ceil(rate * 2**32), 1 / (1 - rate) if rate < 1 else 0.0, 0.0)
    return q, k, v, p, z, scale


def attention_ref(q, k, v, mask=None, causal=False, scale=None, enable_gqa=False, dropout=None):
    """``softmax(q k^T scale + mask) v`` in float64 from the explicit (..., L, S) matrix, PyTorch's
    semantics (bool mask: True takes part; causal: query i sees keys j <= i; grouped heads repeated;
    a fully masked row gives 0); ``dropout = (p, seed, offset)`` multiplies P by the Philox factors of
    element index n * L * S + i * S + j."""
    _, _, v, p, z, _ = _attention_parts(q, k, v, mask, causal, scale, enable_gqa, dropout)
    return np.matmul(p * z, v)


def _score_grads(g, v, p, z):
    """dS = P (dP - rowsum(P dP)), dP = (g v^T) Z: the gradient of the scores before the softmax."""
    dp = np.matmul(g, np.swapaxes(v, -1, -2)) * z
    return p * (dp - (p * dp).sum(axis=-1, keepdims=True))


def attention_mask_grad_ref(grad, q, k, v, mask, causal=False, scale=None, enable_gqa=False, dropout=None):
    """The gradient of attention_ref's output given ``grad`` with respect to the float ``mask``, in
    float64: the scores' gradient dS summed down to the mask's shape."""
    _, _, v64, p, z, _ = _attention_parts(q, k, v, mask, causal, scale, enable_gqa, dropout)
    return _sum_to(_score_grads(_f64(grad), v64, p, z), np.shape(mask))


def attention_backward_ref(grad, q, k, v, mask=None, causal=False, scale=None, enable_gqa=False, dropout=None):
    """(dq, dk, dv) of attention_ref's output given ``grad``, in float64, summed to the inputs' shapes
    (grouped heads and broadcast dims summed)."""
    shapes = np.shape(q), np.shape(k), np.shape(v)
    q64, k64, v64, p, z, scale = _attention_parts(q, k, v, mask, causal, scale, enable_gqa, dropout)
    g = _f64(grad)
    dv = np.matmul(np.swapaxes(p * z, -1, -2), g)
    ds = _score_grads(g, v64, p, z)
    dq = np.matmul(ds, k64) * scale
    dk = np.matmul(np.swapaxes(ds, -1, -2), np.broadcast_to(q64, ds.shape[:-1] + (q64.shape[-1],))) * scale
    grads = []
    for d, shape in zip((dq, dk, dv), shapes):
        if enable_gqa and len(shape) >= 3 and d.ndim >= 3 and d.shape[-3] != shape[-3]:
            d = d.reshape(d.shape[:-3] + (shape[-3], d.shape[-3] // shape[-3]) + d.shape[-2:]).sum(axis=-3)
        grads.append(_sum_to(d, shape))
    return tuple(grads)
