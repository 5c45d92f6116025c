"""The ``lstm`` suite: a float32 one-layer LSTM, forward and forward + backward (BPTT), beside
``torch.nn.LSTM`` on the same weights, and the GRU (the same kernels) beside ``torch.nn.GRU``; and
``lstm-cuda``, the LSTM and the GRU on the GPU beside cuDNN's.

The functions take ``cell``: "lstm" (inputs x, h0, c0, weights of 4H rows) or "gru" (x, h0, 3H rows)."""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .libraries import installed_torch, torch_missing
from .registry import BF16_CHECK_TOLERANCE, Case, Suite, register_suite
from .timing import rotation_copies

#: (T, B, I, H, what it is) of the LSTM layers timed by ``deepkern bench --op lstm`` and bench/test_suites.py.
LSTM_SHAPES = (
    (100, 32, 256, 256, "small LM layer, batch 32"),
    (50, 64, 512, 512, "batch 64, H=512"),
    (100, 1, 128, 128, "batch-1 inference / online"),
    (200, 8, 64, 512, "long sequence, I < H"),
    (35, 20, 650, 650, "PTB medium LM (Zaremba et al.)"),
)
LSTM_PASSES = ("fwd", "fwd+bwd")
GROUP_LSTM_FWD = "forward"
GROUP_LSTM_FWD_BWD = "forward+backward"
#: The batch-1 shape has its own groups, so its ratio is printed on its own.
GROUP_LSTM_FWD_B1 = "fwd batch 1"
GROUP_LSTM_FWD_BWD_B1 = "fwd+bwd batch 1"
#: Two more shapes, summarised apart: a small H with a large batch (the team splits
#: batch rows) and a wide H (each thread's W_hh share, 8 MB, streams from L3 every step).
LSTM_SHAPES_MORE = (
    (100, 256, 32, 32, "small H, batch 256"),
    (20, 16, 1024, 1024, "wide H=1024, batch 16"),
)
GROUP_LSTM_FWD_MORE = "fwd more shapes"
GROUP_LSTM_FWD_BWD_MORE = "fwd+bwd more shapes"
#: (T, B, I, H, what it is) of the GRU layers of the suite, summarised apart.
GRU_SHAPES = (
    (100, 32, 256, 256, "small LM layer, batch 32"),
    (50, 64, 512, 512, "batch 64, H=512"),
    (100, 1, 128, 128, "batch-1 inference / online"),
)
GROUP_GRU_FWD = "GRU forward"
GROUP_GRU_FWD_BWD = "GRU forward+backward"
#: cell -> (gate blocks of the weights, states)
CELLS = {"lstm": (4, 2), "gru": (3, 1)}


def lstm_quick_t(t: int) -> int:
    """The shorter sequence of ``--quick``."""
    return max(5, t // 5)


def lstm_flops(shape: Tuple[int, int, int, int], lstm_pass: str, cell: str = "lstm") -> float:
    """2 * T * B * 4H * (I + H) per forward (the two GEMMs per step; 3H for the GRU); the backward
    counts twice that."""
    t, b, i, h = shape[:4]
    fwd = 2.0 * t * b * CELLS[cell][0] * h * (i + h)
    return fwd * (3.0 if lstm_pass == "fwd+bwd" else 1.0)


def lstm_bytes(shape: Tuple[int, int, int, int], lstm_pass: str, cell: str = "lstm") -> float:
    """Compulsory float32 traffic: read x, the weights, biases and initial states, write y and the final
    states; the backward also reads grad_y and the forward's cache (gates and states: 6H per step and
    row for the LSTM, 5H for the GRU) and writes grad_x and the weight gradients."""
    t, b, i, h = shape[:4]
    gates, states = CELLS[cell]
    cache = 6 if cell == "lstm" else 5
    w = gates * h * (i + h) + 2 * gates * h
    total = t * b * i + w + 2 * states * b * h + t * b * h
    if lstm_pass == "fwd+bwd":
        total += cache * t * b * h  # the cache, written by the forward
        total += t * b * h + cache * t * b * h + t * b * i + w + states * b * h  # grad_y, cache read; grads
    return 4.0 * total


def make_lstm_inputs(
    shape: Tuple[int, int, int, int],
    lstm_pass: str,
    *,
    copies: Optional[int] = None,
    seed: int = 0,
    cell: str = "lstm",
) -> List[tuple]:
    """Rotation sets of C-contiguous float32 arrays ``(x, h0, c0, w_ih, w_hh, b_ih, b_hh)`` (the GRU:
    no c0; and ``grad_y`` for ``"fwd+bwd"``): x and the states ~N(0, 1), weights and biases PyTorch's
    U(-1/sqrt(H), 1/sqrt(H)).

    Only x, h0, c0 (and grad_y) are copied between sets: the weights are the same arrays in every set,
    as in a network, where one layer's weights serve every step and every batch (and stay in cache
    when they fit)."""
    if lstm_pass not in LSTM_PASSES:
        raise ValueError(f"make_lstm_inputs: lstm_pass must be one of {LSTM_PASSES}, got {lstm_pass!r}")
    t, b, i, h = shape[:4]
    gates, states = CELLS[cell]
    rng = np.random.default_rng(seed)
    k = 1.0 / math.sqrt(h)
    rows = gates * h
    weights = tuple(rng.uniform(-k, k, s).astype(np.float32) for s in ((rows, i), (rows, h), (rows,), (rows,)))
    data = [rng.standard_normal((t, b, i), dtype=np.float32)]
    data += [rng.standard_normal((b, h), dtype=np.float32) for _ in range(states)]
    if lstm_pass == "fwd+bwd":
        grad_y = rng.standard_normal((t, b, h), dtype=np.float32)
    if copies is None:
        copies = rotation_copies(sum(a.nbytes for a in data) + (grad_y.nbytes if lstm_pass == "fwd+bwd" else 0))
    sets = []
    for n in range(max(1, int(copies))):
        xs = tuple(data) if n == 0 else tuple(a.copy() for a in data)
        tail = () if lstm_pass == "fwd" else ((grad_y if n == 0 else grad_y.copy()),)
        sets.append(xs + weights + tail)
    return sets


def _torch_lstm_module(torch, w_ih, w_hh, b_ih, b_hh, requires_grad: bool, cell: str = "lstm"):
    """A torch.nn.LSTM (or GRU; one layer, seq-first) whose parameters share memory with the given tensors."""
    h, i = w_hh.shape[1], w_ih.shape[1]
    with torch.device("meta"):  # no allocation or initialisation: the parameters are replaced next
        module = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(i, h)
    for name, value in (("weight_ih_l0", w_ih), ("weight_hh_l0", w_hh), ("bias_ih_l0", b_ih), ("bias_hh_l0", b_hh)):
        setattr(module, name, torch.nn.Parameter(value, requires_grad=requires_grad))
    module.flatten_parameters()
    return module


def _deepkern_pass(cell: str, backward: bool, args: tuple) -> tuple:
    """deepkern's layer of ``cell`` on ``(x, *states, w_ih, w_hh, b_ih, b_hh[, grad_y])``: y, and with
    ``backward`` also all the gradients (grad_x, the states', grad_w_ih, grad_w_hh, the biases')."""
    from .. import ops

    states = CELLS[cell][1]
    layer = args[: 5 + states]
    if not backward:
        return (getattr(ops, cell)(*layer)[0],)
    y, *_, cache = getattr(ops, cell)(*layer, return_cache=True)
    x, w = layer[0], layer[1 + states : 3 + states]
    return (y, *getattr(ops, cell + "_backward")(args[-1], *(None,) * states, x, *layer[1 : 1 + states], *w, cache))


def _torch_hx(cell: str, states: tuple):
    """torch's hx of the (B, H) ``states``: (h0, c0) for the LSTM, h0 for the GRU, each with a layer axis."""
    return tuple(s[None] for s in states) if cell == "lstm" else states[0][None]


def lstm_impls(shape: Tuple[int, int, int, int], lstm_pass: str, cell: str = "lstm") -> Dict[str, Callable]:
    """Backend name -> the call to time, on the (converted) inputs of :func:`make_lstm_inputs`.

    deepkern: ``ops.lstm`` (``"fwd+bwd"``: ``lstm(return_cache=True)`` then ``lstm_backward`` with grad_y;
    the GRU: ``ops.gru``, ``gru_backward``); PyTorch: a ``torch.nn.LSTM`` (``GRU``) over the same weights
    (built on the first call, the warm-up), forward under ``torch.no_grad()``; for ``"fwd+bwd"`` its
    parameters, x and the states require grad (deepkern's backward gives the states' gradients too, so
    both compute the same gradients), gradients are set to None before each call
    (``zero_grad(set_to_none=True)``) and ``y.backward(grad_y)``.
    Both return y for ``"fwd"`` and ``(y, grad_x, grad_w_ih, grad_w_hh)`` for ``"fwd+bwd"``.
    """
    states = CELLS[cell][1]
    impls: Dict[str, Callable] = {}
    if lstm_pass == "fwd":
        impls["deepkern"] = lambda *args: _deepkern_pass(cell, False, args)[0]
    else:

        def deepkern_fwd_bwd(*args):
            y, *grads = _deepkern_pass(cell, True, args)
            return y, grads[0], grads[1 + states], grads[2 + states]

        impls["deepkern"] = deepkern_fwd_bwd
    torch = installed_torch()
    if torch is None:
        return impls
    modules: Dict[tuple, object] = {}

    def module_for(w_ih, w_hh, b_ih, b_hh):
        key = tuple(int(w.data_ptr()) for w in (w_ih, w_hh, b_ih, b_hh))
        if key not in modules:
            modules[key] = _torch_lstm_module(torch, w_ih, w_hh, b_ih, b_hh, lstm_pass != "fwd", cell)
        return modules[key]

    if lstm_pass == "fwd":

        def torch_fwd(x, *args):
            module = module_for(*args[states:])
            with torch.no_grad():
                return module(x, _torch_hx(cell, args[:states]))[0]

        impls["torch"] = torch_fwd
    else:

        def torch_fwd_bwd(x, *args):
            module = module_for(*args[states:-1])
            module.zero_grad(set_to_none=True)
            for a in (x, *args[:states]):
                a.requires_grad_(True)
                a.grad = None
            y, _ = module(x, _torch_hx(cell, args[:states]))
            y.backward(args[-1])
            return y, x.grad, module.weight_ih_l0.grad, module.weight_hh_l0.grad

        impls["torch"] = torch_fwd_bwd
    return impls


def lstm_check(
    shape: Tuple[int, int, int, int], lstm_pass: str, inputs: tuple, device: str = "cpu", cell: str = "lstm"
) -> float:
    """Largest relative error ``||out - ref|| / ||ref||`` of deepkern's y (and for ``"fwd+bwd"`` of grad_x,
    grad_w_ih, grad_w_hh, grad_b_ih) on ``inputs`` against torch.nn.LSTM (GRU) in float64 on the same
    values; deepkern runs on ``device`` (the host arrays copied there)."""
    from ..backends import to_device

    torch = installed_torch()
    if torch is None:
        raise RuntimeError("lstm_check needs PyTorch for its float64 reference")
    states = CELLS[cell][1]
    layer = inputs[: 5 + states]
    t64 = [torch.from_numpy(a.astype(np.float64)) for a in layer]
    backward = lstm_pass == "fwd+bwd"
    module = _torch_lstm_module(torch, *t64[1 + states :], backward, cell)
    xt = t64[0].requires_grad_(backward)
    for a in t64[1 : 1 + states]:
        a.requires_grad_(backward)

    def rel(got, ref) -> float:
        ref = ref.detach().numpy()
        denom = float(np.linalg.norm(ref)) or 1.0
        return float(np.linalg.norm(np.asarray(to_device(got, "cpu"), dtype=np.float64) - ref)) / denom

    with torch.set_grad_enabled(backward):
        y_ref = module(xt, _torch_hx(cell, t64[1 : 1 + states]))[0]
    on_device = tuple(to_device(a, device) for a in inputs)
    if not backward:
        return rel(_deepkern_pass(cell, False, on_device)[0], y_ref)
    y_ref.backward(torch.from_numpy(inputs[-1].astype(np.float64)))
    y, *grads = _deepkern_pass(cell, True, on_device)
    refs = [
        (y, y_ref),
        (grads[0], xt.grad),
        (grads[1 + states], module.weight_ih_l0.grad),
        (grads[2 + states], module.weight_hh_l0.grad),
        (grads[3 + states], module.bias_ih_l0.grad),
    ]
    return max(rel(a, b) for a, b in refs)


def _lstm_case(
    shape: Tuple[int, int, int, int], lstm_pass: str, label: str, group: str, device: str = "cpu", cell: str = "lstm"
) -> Case:
    """The case of one shape and pass of ``cell``, timed on ``device`` ('cpu' or 'cuda')."""
    t, b, i, h = shape
    on_gpu = device == "cuda"
    return Case(
        op="lstm",
        name=("GRU " if cell == "gru" else "") + f"T={t} B={b} I={i} H={h}",
        layout=lstm_pass,
        group=group,
        shape=shape,
        flops=lstm_flops(shape, lstm_pass, cell),
        nbytes=lstm_bytes(shape, lstm_pass, cell),
        make_inputs=lambda: make_lstm_inputs(shape, lstm_pass, copies=1 if on_gpu else None, cell=cell),
        impls=_lstm_cuda_impls(shape, lstm_pass, cell) if on_gpu else lstm_impls(shape, lstm_pass, cell),
        check=lambda inputs: lstm_check(shape, lstm_pass, inputs, device=device, cell=cell),
        label=label,
        device=device,
    )


def _lstm_group(b: int, lstm_pass: str, more: bool) -> str:
    """The summary group of a CPU case: the batch-1 case and the more shapes apart."""
    if more:
        return GROUP_LSTM_FWD_MORE if lstm_pass == "fwd" else GROUP_LSTM_FWD_BWD_MORE
    if b == 1:
        return GROUP_LSTM_FWD_B1 if lstm_pass == "fwd" else GROUP_LSTM_FWD_BWD_B1
    return GROUP_LSTM_FWD if lstm_pass == "fwd" else GROUP_LSTM_FWD_BWD


def lstm_cases(quick: bool = False) -> List[Case]:
    """float32 single-layer LSTMs (LSTM_SHAPES, then LSTM_SHAPES_MORE; ``quick``: T / 5), each forward
    then forward+backward; then the GRUs of GRU_SHAPES."""
    lstms = [
        _lstm_case((lstm_quick_t(t) if quick else t, b, i, h), lstm_pass, label, _lstm_group(b, lstm_pass, more))
        for more, shapes in ((False, LSTM_SHAPES), (True, LSTM_SHAPES_MORE))
        for t, b, i, h, label in shapes
        for lstm_pass in LSTM_PASSES
    ]
    return lstms + _shape_cases(GRU_SHAPES, quick, (GROUP_GRU_FWD, GROUP_GRU_FWD_BWD), cell="gru")


def _shape_cases(shapes, quick: bool, groups: Tuple[str, str], **options) -> List[Case]:
    """The cases of ``shapes`` ((T, B, I, H, label); ``quick``: T / 5), each forward then
    forward+backward, in ``groups`` (the forward's, the forward+backward's); ``options`` go to _lstm_case."""
    return [
        _lstm_case((lstm_quick_t(t) if quick else t, b, i, h), p, label, groups[p != "fwd"], **options)
        for t, b, i, h, label in shapes
        for p in LSTM_PASSES
    ]


register_suite(
    Suite(
        name="lstm",
        description=(
            "float32 one-layer LSTM (T, B, I, H), forward and forward+backward (BPTT), vs torch.nn.LSTM; "
            "the batch-1 case and two more shapes summarised on their own; then GRUs vs torch.nn.GRU "
            "(--quick: T / 5)"
        ),
        cases=lstm_cases,
        summary_groups=(
            GROUP_LSTM_FWD,
            GROUP_LSTM_FWD_BWD,
            GROUP_LSTM_FWD_B1,
            GROUP_LSTM_FWD_BWD_B1,
            GROUP_LSTM_FWD_MORE,
            GROUP_LSTM_FWD_BWD_MORE,
            GROUP_GRU_FWD,
            GROUP_GRU_FWD_BWD,
        ),
        unavailable=lambda: torch_missing("torch.nn.LSTM"),
    )
)


# ---- the GPU ------------------------------------------------------------------------------------

#: (T, B, I, H, what it is) of the LSTM (and GRU) layers of ``deepkern bench --op lstm-cuda``.
LSTM_CUDA_SHAPES = (
    (100, 32, 256, 256, "small LM layer, batch 32"),
    (50, 64, 512, 512, "batch 64, H=512"),
    (100, 1, 128, 128, "batch-1 inference / online"),
    (35, 20, 650, 650, "PTB medium LM (Zaremba et al.)"),
)


def _lstm_cuda_unavailable() -> Optional[str]:
    """Why the GPU suite cannot run here, or None."""
    from .. import cuda

    if not cuda.is_available():
        return f"it runs on a GPU, and deepkern has no usable one here: {cuda.unavailable_reason()}"
    return torch_missing("torch.nn.LSTM")


def _lstm_cuda_impls(shape: Tuple[int, int, int, int], lstm_pass: str, cell: str = "lstm") -> Dict[str, Callable]:
    """:func:`lstm_impls` on GPU inputs, both in full FP32: deepkern's GEMMs without TF32 (its default)
    and cuDNN's LSTM (GRU) with ``torch.backends.cudnn.allow_tf32`` off (set before each call)."""
    impls = lstm_impls(shape, lstm_pass, cell)
    torch = installed_torch()
    if torch is not None:
        torch_call = impls["torch"]

        def torch_fp32(*args):
            torch.backends.cudnn.allow_tf32 = False
            return torch_call(*args)

        impls["torch"] = torch_fp32
    return impls


def lstm_cuda_cases(quick: bool = False) -> List[Case]:
    """float32 single-layer LSTMs on the GPU (LSTM_CUDA_SHAPES; ``quick``: T / 5), forward then
    forward+backward; then GRUs of the same shapes."""
    lstms = _shape_cases(LSTM_CUDA_SHAPES, quick, (GROUP_LSTM_FWD, GROUP_LSTM_FWD_BWD), device="cuda")
    return lstms + _shape_cases(LSTM_CUDA_SHAPES, quick, (GROUP_GRU_FWD, GROUP_GRU_FWD_BWD), device="cuda", cell="gru")


register_suite(
    Suite(
        name="lstm-cuda",
        description=(
            "float32 one-layer LSTM on the GPU (T, B, I, H), forward and forward+backward, vs torch.nn.LSTM "
            "(cuDNN), both in full FP32; then GRUs of the same shapes vs torch.nn.GRU (--quick: T / 5)"
        ),
        cases=lstm_cuda_cases,
        summary_groups=(GROUP_LSTM_FWD, GROUP_LSTM_FWD_BWD, GROUP_GRU_FWD, GROUP_GRU_FWD_BWD),
        unavailable=_lstm_cuda_unavailable,
    )
)


# ---- bfloat16 (CPU) -----------------------------------------------------------------------------


def _bf16_lstm_impls(shape: Tuple[int, int, int, int], lstm_pass: str) -> Dict[str, Callable]:
    """:func:`lstm_impls` on bfloat16 views of the same bits (the inputs are uint16: PyTorch cannot
    take NumPy's bfloat16): deepkern's bfloat16 layer and torch.nn.LSTM with bfloat16 parameters."""
    import ml_dtypes

    impls = lstm_impls(shape, lstm_pass)
    ours, theirs = impls["deepkern"], impls.get("torch")
    views = {"deepkern": lambda *args: ours(*(a.view(ml_dtypes.bfloat16) for a in args))}
    torch = installed_torch()
    if theirs is not None:
        views["torch"] = lambda *args: theirs(*(a.view(torch.bfloat16) for a in args))
    return views


def lstm_bf16_check(shape: Tuple[int, int, int, int], lstm_pass: str, inputs: tuple) -> float:
    """:func:`lstm_check` of deepkern's bfloat16 layer: against torch.nn.LSTM in float64 on the
    bfloat16 values."""
    import ml_dtypes

    values = tuple(a.view(ml_dtypes.bfloat16) for a in inputs)
    return lstm_check(shape, lstm_pass, values)


def lstm_bf16_cases(quick: bool = False) -> List[Case]:
    """The LSTM suite's shapes (LSTM_SHAPES; ``quick``: T / 5) in bfloat16, deepkern beside
    torch.nn.LSTM with bfloat16 parameters, each followed by its float32 twin (deepkern's and
    PyTorch's float32 LSTMs on the same shape), forward then forward+backward."""
    import ml_dtypes

    cases = []
    for t, b, i, h, label in LSTM_SHAPES:
        shape = (lstm_quick_t(t) if quick else t, b, i, h)
        for lstm_pass in LSTM_PASSES:
            group = _lstm_group(b, lstm_pass, False)
            twin = _lstm_case(shape, lstm_pass, label, f"{group} f32")
            bf16 = _lstm_case(shape, lstm_pass, label, f"{group} bf16")
            bf16.nbytes /= 2
            bf16.make_inputs = lambda shape=shape, p=lstm_pass: [
                tuple(a.astype(ml_dtypes.bfloat16).view(np.uint16) for a in s) for s in make_lstm_inputs(shape, p)
            ]
            bf16.impls = _bf16_lstm_impls(shape, lstm_pass)
            bf16.check = lambda inputs, shape=shape, p=lstm_pass: lstm_bf16_check(shape, p, inputs)
            bf16.tolerance = BF16_CHECK_TOLERANCE
            bf16.metric = "bf16_flops"
            bf16.op = twin.op = "lstm-bf16"
            bf16.layout, twin.layout = f"{lstm_pass} bf16", f"{lstm_pass} f32"
            cases += [bf16, twin]
    return cases


register_suite(
    Suite(
        name="lstm-bf16",
        description=(
            "bfloat16 one-layer LSTM (T, B, I, H), forward and forward+backward, vs torch.nn.LSTM in bfloat16, "
            "each beside the float32 LSTMs of the same shape (--quick: T / 5)"
        ),
        cases=lstm_bf16_cases,
        summary_groups=tuple(
            f"{g} {p}"
            for p in ("bf16", "f32")
            for g in (GROUP_LSTM_FWD, GROUP_LSTM_FWD_BWD, GROUP_LSTM_FWD_B1, GROUP_LSTM_FWD_BWD_B1)
        ),
        unavailable=lambda: torch_missing("torch.nn.LSTM"),
        in_all=False,
    )
)
