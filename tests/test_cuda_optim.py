"""Optimizer steps on the GPU against the CPU steps, bit for bit: the same inputs stepped on both
devices (several steps, every combination of options, sizes 0, 1, 3, 4097, misaligned views,
lists of hundreds of tensors of mixed sizes), then the optimizers of ``deepkern.optim`` on 'cuda'
parameters against the same loop on the CPU. The CPU reference runs its FMA kernels (AVX2 or
AVX-512), whose rounding the GPU kernels reproduce (the portable kernels round a multiply-add
twice). The binding's checks that need no GPU run everywhere."""

from __future__ import annotations

import itertools

import deepkern as dk
import numpy as np
import pytest
from deepkern import _C, ops

needs_gpu = pytest.mark.skipif(not dk.cuda.is_available(), reason=f"no usable GPU: {dk.cuda.unavailable_reason()}")
compiled = pytest.mark.skipif(not dk.cuda.is_compiled(), reason="deepkern._cuda is not built")

if dk.cuda.is_compiled():
    from deepkern import _cuda

FMA_ISAS = ("amx", "avx512", "avx2")


@pytest.fixture
def fma_cpu():
    """The CPU kernels with fused multiply-adds, the rounding the GPU kernels share."""
    best = _C.detected_isa()
    if best not in FMA_ISAS:
        pytest.skip(f"this CPU has no FMA kernels (best ISA {best!r}): its steps round differently from the GPU's")
    before = _C.active_isa()
    _C.set_active_isa(best)
    yield
    _C.set_active_isa(before)


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def on_gpu(host: np.ndarray, misaligned: bool):
    """A device copy of ``host``; ``misaligned``: a view starting one element into a larger array,
    so its address is not a multiple of 16 bytes."""
    if not misaligned:
        return _cuda.from_cpu(host)
    padded = _cuda.from_cpu(np.concatenate([np.zeros(1, host.dtype), host.ravel()]))
    return padded[1:].reshape(host.shape)


# ---- one optimizer's call in both forms ----------------------------------------------------------

# name -> (state names (as the single form's keywords), the states used under the options)
STATES = {
    "sgd": lambda o: ["momentum_buffer"] if o["momentum"] != 0 else [],
    "adam": lambda o: ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if o["amsgrad"] else []),
    "rmsprop": lambda o: (
        ["square_avg"] + (["momentum_buffer"] if o["momentum"] > 0 else []) + (["grad_avg"] if o["centered"] else [])
    ),
}


def initial_state(rng, name: str, shape, dtype):
    """Start values a run may have reached: squares non-negative, grad_avg small beside square_avg
    (so centered RMSprop takes no square root of a negative)."""
    x = rng.standard_normal(shape)
    if name in ("exp_avg_sq", "max_exp_avg_sq", "square_avg"):
        x = np.abs(x) + 1.0
    elif name == "grad_avg":
        x = 0.1 * x
    return x.astype(dtype)


def call(kind: str, multi: bool, arrays: dict, options: dict, step: int) -> None:
    """One step of ``kind`` on ``arrays`` (name -> list of arrays), single form when not ``multi``."""
    one = (lambda lst: lst) if multi else (lambda lst: lst[0])
    plural = "s" if multi else ""
    states = {name + plural: one(arrays[name]) for name in STATES[kind](options)}
    p, g = one(arrays["param"]), one(arrays["grad"])
    if kind == "sgd":
        buf = states.pop("momentum_buffer" + plural, None)
        fn = ops.sgd_step_multi if multi else ops.sgd_step
        fn(p, g, buf, first_step=step == 1, **options)
    elif kind == "adam":
        fn = ops.adam_step_multi if multi else ops.adam_step
        m, v = states.pop("exp_avg" + plural), states.pop("exp_avg_sq" + plural)
        steps = {("steps" if multi else "step"): arrays["steps"] if multi else step}
        fn(p, g, m, v, **steps, **states, **options)
    else:
        fn = ops.rmsprop_step_multi if multi else ops.rmsprop_step
        fn(p, g, states.pop("square_avg" + plural), **states, **options)


def run_both(rng, kind: str, options: dict, shapes, dtype, *, multi: bool, misaligned, steps: int = 3):
    """Steps the same tensors on the CPU and the GPU ``steps`` times (fresh gradients each time) and
    asserts after each step that every parameter and state is bitwise the same. ``misaligned[i]``
    says whether tensor i's device arrays start off a 16-byte boundary."""
    names = ["param"] + STATES[kind](options)
    host = {n: [initial_state(rng, n, s, dtype) for s in shapes] for n in names}
    device = {n: [on_gpu(a, misaligned[i]) for i, a in enumerate(lst)] for n, lst in host.items()}
    for step in range(1, steps + 1):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        host["grad"] = grads
        device["grad"] = [on_gpu(g, misaligned[i]) for i, g in enumerate(grads)]
        # Adam: a different step count per tensor, as after parameters joined at different times
        host["steps"] = device["steps"] = [step + i % 3 for i in range(len(shapes))]
        call(kind, multi, host, options, step)
        call(kind, multi, device, options, step)
        for n in names:
            for i, want in enumerate(host[n]):
                got = device[n][i].to_cpu()
                assert got.shape == want.shape and got.dtype == want.dtype
                np.testing.assert_array_equal(bits(got), bits(want), err_msg=f"{kind} {options} step {step}: {n}[{i}]")


def option_grid(kind: str):
    """Every combination of the options that change the arithmetic."""
    if kind == "sgd":
        for momentum, dampening, wd, nesterov, maximize in itertools.product(
            (0.0, 0.9), (0.0, 0.25), (0.0, 0.01), (False, True), (False, True)
        ):
            if nesterov and (momentum == 0 or dampening != 0):
                continue
            yield dict(
                lr=0.05, momentum=momentum, dampening=dampening, weight_decay=wd, nesterov=nesterov, maximize=maximize
            )
    elif kind == "adam":
        for wd, amsgrad, maximize, decoupled in itertools.product(
            (0.0, 0.1), (False, True), (False, True), (False, True)
        ):
            yield dict(
                lr=0.01,
                betas=(0.9, 0.999),
                eps=1e-8,
                weight_decay=wd,
                amsgrad=amsgrad,
                maximize=maximize,
                decoupled_weight_decay=decoupled,
            )
        yield dict(lr=0.3, betas=(0.2, 0.6), eps=1e-3, weight_decay=0.0, amsgrad=True)  # lerp's other branch
    else:
        # momentum 0.6, not 0.5: a product with a power of two is exact, so it would hide a misplaced madd
        for wd, momentum, centered, maximize in itertools.product((0.0, 0.1), (0.0, 0.6), (False, True), (False, True)):
            yield dict(
                lr=0.01, alpha=0.99, eps=1e-8, weight_decay=wd, momentum=momentum, centered=centered, maximize=maximize
            )
        yield dict(lr=0.01, alpha=0.3, eps=1e-6, momentum=0.0, centered=True)  # lerp's other branch


KINDS = ["sgd", "adam", "rmsprop"]
DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("size", [0, 1, 3, 4097])
@pytest.mark.usefixtures("fma_cpu")
@pytest.mark.cuda
@needs_gpu
def test_every_option_matches_cpu_bitwise(kind, dtype, multi, size):
    rng = np.random.default_rng(size)
    for options in option_grid(kind):
        run_both(rng, kind, options, [(size,)], dtype, multi=multi, misaligned=[False])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(1,), (5,), (3, 1365), (4097,)])
@pytest.mark.usefixtures("fma_cpu")
@pytest.mark.cuda
@needs_gpu
def test_misaligned_views_match_cpu_bitwise(kind, dtype, shape):
    """Arrays off a 16-byte boundary take the element-by-element path; the results are the same."""
    rng = np.random.default_rng(7)
    options = list(option_grid(kind))[-2]  # momentum / amsgrad / centered on: every state used
    run_both(rng, kind, options, [shape], dtype, multi=False, misaligned=[True])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.usefixtures("fma_cpu")
@pytest.mark.cuda
@needs_gpu
def test_many_tensors_of_mixed_sizes_in_one_call(kind, dtype):
    """300 tensors (more than one launch's table), sizes from 0 to past a block's chunk, some
    misaligned, Adam's step counts differing per tensor."""
    rng = np.random.default_rng(11)
    sizes = [0, 1, 2, 3, 4, 5, 16383, 16384, 16385, 40000] + list(rng.integers(0, 3000, 290))
    shapes = [(int(n),) for n in sizes]
    misaligned = [bool(m) for m in rng.random(len(shapes)) < 0.3]
    for options in [next(iter(option_grid(kind))), list(option_grid(kind))[-2]]:
        run_both(rng, kind, options, shapes, dtype, multi=True, misaligned=misaligned, steps=2)


OPTIMIZERS = [
    (dk.optim.SGD, dict(lr=0.1)),
    (dk.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (dk.optim.SGD, dict(lr=0.1, momentum=0.8, dampening=0.1, maximize=True)),
    (dk.optim.Adam, dict(lr=0.01)),
    (dk.optim.Adam, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    (dk.optim.AdamW, dict(lr=0.01)),
    (dk.optim.AdamW, dict(lr=0.01, amsgrad=True, maximize=True)),
    (dk.optim.RMSprop, dict(lr=0.01)),
    (dk.optim.RMSprop, dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.01)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer,options", OPTIMIZERS)
@pytest.mark.usefixtures("fma_cpu")
@pytest.mark.cuda
@needs_gpu
def test_optimizer_loop_on_cuda_equals_cpu_loop(optimizer, options, dtype):
    """deepkern.optim unchanged on 'cuda' parameters: five steps (one parameter without a gradient
    in one of them), the parameters and every state array bitwise those of the CPU loop; then the
    state dict round trip on the GPU continues identically."""
    rng = np.random.default_rng(3)
    shapes = [(7, 5), (5,), (4097,), (1,)]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    loops = {}
    for device in ("cpu", "cuda"):
        params = [dk.tensor(a.copy(), requires_grad=True, device=device) for a in start]
        loops[device] = (params, optimizer(params, **options))
    for step in range(5):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        for device, (params, opt) in loops.items():
            opt.zero_grad()
            for i, (p, g) in enumerate(zip(params, grads)):
                if not (step == 2 and i == 1):
                    p.grad = dk.tensor(g, device=device)
            opt.step()
        cpu_params, cpu_opt = loops["cpu"]
        gpu_params, gpu_opt = loops["cuda"]
        for i, (c, g) in enumerate(zip(cpu_params, gpu_params)):
            assert g.device.type == "cuda"
            np.testing.assert_array_equal(bits(g.detach().cpu().numpy()), bits(c.detach().numpy()), err_msg=f"p{i}")
            cpu_state, gpu_state = cpu_opt.state[c], gpu_opt.state[g]
            assert cpu_state.keys() == gpu_state.keys()
            for name, value in cpu_state.items():
                if isinstance(value, dk.Tensor):
                    got = gpu_state[name].cpu().numpy()
                    np.testing.assert_array_equal(bits(got), bits(value.numpy()), err_msg=f"{name} of p{i}")
                else:
                    assert gpu_state[name] == value
    restored = optimizer(loops["cuda"][0], **options)
    restored.load_state_dict(loops["cuda"][1].state_dict())
    for p in loops["cuda"][0]:
        for value in restored.state[p].values():
            if isinstance(value, dk.Tensor):
                assert value.device.type == "cuda"


# ---- the binding's checks -------------------------------------------------------------------------


def adam_args(params, grads, m, v, **over):
    args = dict(
        params=params,
        grads=grads,
        exp_avgs=m,
        exp_avg_sqs=v,
        max_exp_avg_sqs=None,
        steps=[1] * len(params),
        lr=0.1,
        beta1=0.9,
        beta2=0.999,
        eps=1e-8,
        weight_decay=0.0,
        amsgrad=False,
        maximize=False,
        decoupled_weight_decay=False,
    )
    args.update(over)
    return args


@pytest.mark.cuda
@needs_gpu
def test_binding_refuses_bad_device_arrays_before_writing():
    """Direct deepkern._cuda calls: each bad array is named, and nothing is written."""
    rng = np.random.default_rng(5)

    def fresh(n=6, dtype=np.float32):
        return _cuda.from_cpu(rng.standard_normal(n).astype(dtype))

    p, g, m, v = fresh(), fresh(), fresh(), fresh()
    before = p.to_cpu()
    cases = [
        (dict(grads=[fresh(dtype=np.float64)]), TypeError, "grads[0]"),
        (dict(grads=[fresh(7)]), ValueError, "grads[0]"),
        (dict(exp_avgs=[_cuda.from_cpu(np.zeros((6, 2), np.float32))[:, 0]]), ValueError, "exp_avgs[0]"),
        (dict(exp_avg_sqs=[np.zeros(6, np.float32)]), TypeError, "exp_avg_sqs[0]"),
        (dict(exp_avgs=[p]), ValueError, "exp_avgs[0]"),  # the parameter itself: overlap
        (dict(exp_avgs=[fresh()], exp_avg_sqs=[fresh()], grads=[p[0:6]]), ValueError, "params[0]"),
        (dict(steps=[0]), ValueError, "steps"),
        (dict(max_exp_avg_sqs=None, amsgrad=True), ValueError, "max_exp_avg_sqs"),
    ]
    for over, error, name in cases:
        with pytest.raises(error, match=name.replace("[", r"\[").replace("]", r"\]")):
            _cuda.adam_step(**adam_args([p], [g], [m], [v], **over))
    np.testing.assert_array_equal(p.to_cpu(), before)
    q = fresh()
    with pytest.raises(ValueError, match=r"overlaps"):  # two tensors sharing a state array
        _cuda.adam_step(**adam_args([p, q], [g, fresh()], [m, m], [v, fresh()]))
    with pytest.raises(TypeError, match=r"params\[0\] must be float32 or float64"):
        _cuda.sgd_step(
            [_cuda.from_cpu(np.zeros(3, np.int32))], [fresh(3)], None, None, 0.1, 0.0, 0.0, 0.0, False, False
        )
    np.testing.assert_array_equal(p.to_cpu(), before)


@compiled
def test_binding_list_checks_need_no_gpu():
    """The list checks come before any array is looked at, so they hold without a GPU."""
    with pytest.raises(ValueError, match=r"adam_step: grads has 0 entries but params has 1"):
        _cuda.adam_step(**adam_args([object()], [], [object()], [object()]))
    with pytest.raises(ValueError, match=r"rmsprop_step: grad_avgs is required when centered is true"):
        _cuda.rmsprop_step([object()], [object()], [object()], None, None, 0.1, 0.9, 1e-8, 0.0, 0.0, True, False)
    with pytest.raises(ValueError, match=r"sgd_step: momentum_buffers is required when momentum != 0"):
        _cuda.sgd_step([object()], [object()], None, None, 0.1, 0.9, 0.0, 0.0, False, False)
    with pytest.raises(TypeError, match=r"sgd_step: first_steps must be a list of ints"):
        _cuda.sgd_step([object()], [object()], None, ["x"], 0.1, 0.0, 0.0, 0.0, False, False)
    with pytest.raises(TypeError, match=r"adam_step: params\[0\] must be a deepkern._cuda.DeviceArray, got ndarray"):
        a = np.zeros(3, np.float32)
        _cuda.adam_step(**adam_args([a], [a.copy()], [a.copy()], [a.copy()]))
    _cuda.adam_step(**adam_args([], [], [], []))  # an empty list does nothing


@compiled
def test_cuda_backend_has_the_optimizer_entries():
    """CUDABackend's entries are the deepkern._cuda functions with deepkern._C's arguments."""
    from deepkern.backends.cuda import CUDABackend

    backend = CUDABackend()
    for name in ("sgd_step", "adam_step", "rmsprop_step"):
        entry = getattr(backend, name)
        assert entry is getattr(_cuda, name)
        cuda_args = entry.__doc__.split("(", 1)[1].split(")", 1)[0]
        cpu_args = getattr(_C, name).__doc__.split("(", 1)[1].split(")", 1)[0]
        assert cuda_args == cpu_args
