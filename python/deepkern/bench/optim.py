"""The ``optim`` suite: float32 optimizer steps in place (SGD with momentum, Adam, AdamW, RMSprop)
beside ``torch.optim``; memory-bound, reported in GB/s. The ``optim-cuda`` suite: Adam and AdamW
steps on the GPU beside ``torch.optim`` (fused=True) and a device-to-device copy of the same bytes."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .libraries import installed_torch, torch_missing
from .registry import Case, Suite, register_suite
from .timing import rotation_copies

#: The optimizers of ``deepkern bench --op optim``: name -> (bytes read + written per parameter per
#: step, deepkern's hyperparameters). SGD with momentum reads p, g, buf and writes p, buf (20 B);
#: Adam/AdamW read p, g, m, v and write p, m, v (28 B); RMSprop reads p, g, square_avg and writes
#: p, square_avg (20 B).
OPTIM_RULES = {
    "sgd-momentum": (20, dict(lr=0.01, momentum=0.9)),
    "adam": (28, dict(lr=1e-3)),
    "adamw": (28, dict(lr=1e-3, weight_decay=1e-2)),
    "rmsprop": (20, dict(lr=1e-2)),
}
#: (tensors, parameters per tensor, label): one tensor of 1M, 10M and 100M parameters (the last one
#: DRAM-bound) and a model of 200 small tensors.
OPTIM_SIZES = ((1, 1_000_000, "1M"), (1, 10_000_000, "10M"), (1, 100_000_000, "100M"), (200, 10_000, "200x10k"))
OPTIM_SIZES_QUICK = ((1, 1_000_000, "1M"), (200, 10_000, "200x10k"))
GROUP_OPTIM = "optimizer step"
#: The torch.optim objects of the case being timed (one per rotation set), dropped when the next case
#: starts so their state does not pile up across the 100M cases.
_OPTIM_TORCH: Dict[tuple, object] = {}


def _optim_state_names(rule: str) -> Tuple[str, ...]:
    return {
        "sgd-momentum": ("momentum_buffer",),
        "adam": ("exp_avg", "exp_avg_sq"),
        "adamw": ("exp_avg", "exp_avg_sq"),
        "rmsprop": ("square_avg",),
    }[rule]


def make_optim_inputs(
    rule: str, tensors: int, size: int, *, copies: Optional[int] = None, seed: int = 0
) -> List[tuple]:
    """Rotation sets, each one flat tuple: ``tensors`` params, then as many grads, then each state's
    list (the momentum buffer and the averages as after a few steps: random, squares positive)."""
    rng = np.random.default_rng(seed)
    n_states = len(_optim_state_names(rule))
    per_param = 4 * (2 + n_states) * tensors * size
    copies = rotation_copies(per_param) if copies is None else copies

    def one_set():
        arrays = [rng.standard_normal(size, dtype=np.float32) for _ in range(2 * tensors)]
        for name in _optim_state_names(rule):
            for _ in range(tensors):
                s = rng.standard_normal(size, dtype=np.float32)
                arrays.append(np.abs(s) if "sq" in name or name == "square_avg" else s)
        return tuple(arrays)

    return [one_set() for _ in range(copies)]


def _optim_split(arrays: tuple, tensors: int) -> List[list]:
    return [list(arrays[k : k + tensors]) for k in range(0, len(arrays), tensors)]


def _torch_optimizer(torch, rule: str, params: list, grads: list):
    hyper = OPTIM_RULES[rule][1]
    tensors = [torch.nn.Parameter(p) for p in params]  # shares the arrays' memory
    for t, g in zip(tensors, grads):
        t.grad = g
    if rule == "sgd-momentum":
        return torch.optim.SGD(tensors, fused=True, **hyper)
    if rule in ("adam", "adamw"):
        return (torch.optim.Adam if rule == "adam" else torch.optim.AdamW)(tensors, fused=True, **hyper)
    return torch.optim.RMSprop(tensors, foreach=True, **hyper)  # PyTorch has no fused RMSprop on the CPU


def optim_impls(rule: str, tensors: int, case_name: str) -> Dict[str, Callable]:
    """Backend name -> the call to time on a (converted) set of :func:`make_optim_inputs`.

    deepkern: one ``ops.<rule>_step_multi`` call over the lists (``ops.<rule>_step`` for one tensor),
    with step 10 (Adam) and a warm momentum buffer (SGD). PyTorch: ``opt.step()`` of a
    ``torch.optim`` optimizer over Parameters sharing the params' memory with ``.grad`` set,
    ``fused=True`` (SGD, Adam, AdamW) or ``foreach=True`` (RMSprop, which has no fused CPU kernel),
    built on the first call (the warm-up, which also creates its state).
    """
    from .. import ops

    hyper = OPTIM_RULES[rule][1]
    single = tensors == 1

    def deepkern_step(*arrays):
        lists = _optim_split(arrays, tensors)
        if rule == "sgd-momentum":
            if single:
                return ops.sgd_step(arrays[0], arrays[1], arrays[2], **hyper)
            return ops.sgd_step_multi(*lists, **hyper)
        if rule in ("adam", "adamw"):
            if single:
                fn = ops.adam_step if rule == "adam" else ops.adamw_step
                return fn(*arrays, step=10, **hyper)
            fn = ops.adam_step_multi if rule == "adam" else ops.adamw_step_multi
            return fn(*lists, steps=10, **hyper)
        if single:
            return ops.rmsprop_step(*arrays, **hyper)
        return ops.rmsprop_step_multi(*lists, **hyper)

    impls: Dict[str, Callable] = {"deepkern": deepkern_step}
    torch = installed_torch()
    if torch is None:
        return impls

    def torch_step(*arrays):
        key = (case_name, int(arrays[0].data_ptr()))
        if key not in _OPTIM_TORCH:
            if any(k[0] != case_name for k in _OPTIM_TORCH):
                _OPTIM_TORCH.clear()
            lists = _optim_split(arrays, tensors)
            _OPTIM_TORCH[key] = _torch_optimizer(torch, rule, lists[0], lists[1])
        return _OPTIM_TORCH[key].step()

    impls["torch"] = torch_step
    return impls


def optim_check(rule: str, tensors: int, inputs: tuple, device: str = "cpu") -> float:
    """Relative error of one deepkern step's displacement against ``torch.optim`` in float64, from
    the set's first param (scaled by 1e-3, so that a step moves it by about its own size and float32's
    rounding of the stored param is not mistaken for an error of the step) and grad, at most 100k
    elements each, and fresh state; deepkern's step runs on ``device``."""
    from .. import backends, ops

    torch = installed_torch()
    if torch is None:
        raise RuntimeError("optim_check needs PyTorch for its float64 reference")
    p0, g = inputs[0][:100_000] * np.float32(1e-3), inputs[tensors][:100_000].copy()
    hyper = OPTIM_RULES[rule][1]
    tp = torch.nn.Parameter(torch.from_numpy(p0.astype(np.float64)))
    tp.grad = torch.from_numpy(g.astype(np.float64))
    _torch_optimizer(torch, rule, [tp.data], [tp.grad]).step()  # the Parameter shares tp's memory
    p, g = backends.to_device(p0.copy(), device), backends.to_device(g, device)
    zeros = [backends.to_device(np.zeros_like(p0), device) for _ in _optim_state_names(rule)]
    if rule == "sgd-momentum":
        ops.sgd_step(p, g, zeros[0], first_step=True, **hyper)
    elif rule in ("adam", "adamw"):
        (ops.adam_step if rule == "adam" else ops.adamw_step)(p, g, *zeros, step=1, **hyper)
    else:
        ops.rmsprop_step(p, g, *zeros, **hyper)
    ref, p = tp.detach().numpy(), backends.get(device).to_cpu(p)
    return float(np.linalg.norm(p - ref) / np.linalg.norm(ref - p0))


def _optim_case(rule: str, tensors: int, size: int, label: str, device: str = "cpu") -> Case:
    """The step of ``rule`` on ``tensors`` float32 tensors of ``size`` parameters, on ``device`` (the
    GPU: one input set, no rotation, and the GPU's impls)."""
    per_param, _ = OPTIM_RULES[rule]
    name = f"{label} params"
    on_gpu = device == "cuda"
    impls = optim_cuda_impls if on_gpu else optim_impls
    return Case(
        op="optim",
        name=name,
        layout=rule,
        group=GROUP_OPTIM,
        shape=(tensors, size),
        flops=0.0,
        nbytes=float(per_param * tensors * size),
        make_inputs=lambda: make_optim_inputs(rule, tensors, size, copies=1 if on_gpu else None),
        impls=impls(rule, tensors, f"{device} {rule} {name}"),
        check=lambda inputs: optim_check(rule, tensors, inputs, device=device),
        label=f"{tensors} float32 tensor(s) of {size} parameters{' on the GPU' if on_gpu else ''}, "
        f"{per_param} bytes per parameter",
        metric="bytes",
        device=device,
    )


def optim_cases(quick: bool = False) -> List[Case]:
    """SGD with momentum, Adam, AdamW and RMSprop steps on one tensor of 1M, 10M and 100M float32
    parameters and on 200 tensors of 10k (``quick``: 1M and 200 x 10k)."""
    sizes = OPTIM_SIZES_QUICK if quick else OPTIM_SIZES
    return [_optim_case(rule, tensors, size, label) for tensors, size, label in sizes for rule in OPTIM_RULES]


register_suite(
    Suite(
        name="optim",
        description=(
            "float32 optimizer steps in place (SGD with momentum, Adam, AdamW, RMSprop) on 1M/10M/100M "
            "parameters and 200 x 10k, vs torch.optim (fused=True; RMSprop foreach=True); GB/s of bytes "
            "read + written (--quick: 1M and 200 x 10k)"
        ),
        cases=optim_cases,
        unavailable=lambda: torch_missing("torch.optim"),
        in_all=False,
    )
)


# ---- on the GPU ----------------------------------------------------------------------------------

#: (tensors, parameters per tensor, label) of ``optim-cuda``: one tensor of 100M parameters (1.6 GB of
#: param, grad and state, far past the L2 cache) and 200 tensors of 100k stepped in one call.
OPTIM_CUDA_SIZES = ((1, 100_000_000, "100M"), (200, 100_000, "200x100k"))
OPTIM_CUDA_SIZES_QUICK = ((1, 10_000_000, "10M"), (200, 10_000, "200x10k"))


def optim_cuda_impls(rule: str, tensors: int, case_name: str) -> Dict[str, Callable]:
    """deepkern: ``ops.adam_step_multi`` / ``adamw_step_multi`` on device arrays (one call over the
    list, step 10). PyTorch: ``torch.optim.Adam`` / ``AdamW`` with ``fused=True`` on cuda tensors,
    built on the first call (the warm-up)."""
    from .. import ops

    hyper = OPTIM_RULES[rule][1]
    step_multi = ops.adam_step_multi if rule == "adam" else ops.adamw_step_multi

    def deepkern_step(*arrays):
        return step_multi(*_optim_split(arrays, tensors), steps=10, **hyper)

    def torch_step(*arrays):
        key = (case_name, int(arrays[0].data_ptr()))
        if key not in _OPTIM_TORCH:
            _OPTIM_TORCH.clear()  # one case's optimizer at a time: 100M parameters of state each
            lists = _optim_split(arrays, tensors)
            _OPTIM_TORCH[key] = _torch_optimizer(installed_torch(), rule, lists[0], lists[1])
        return _OPTIM_TORCH[key].step()

    return {"deepkern": deepkern_step, "torch": torch_step}


def optim_cuda_cases(quick: bool = False) -> List[Case]:
    """Adam and AdamW on one tensor of 100M parameters and on 200 tensors of 100k (``quick``: 10M and
    200 x 10k), on the GPU."""
    sizes = OPTIM_CUDA_SIZES_QUICK if quick else OPTIM_CUDA_SIZES
    return [_optim_case(r, tensors, size, label, "cuda") for tensors, size, label in sizes for r in ("adam", "adamw")]


register_suite(
    Suite(
        name="optim-cuda",
        description=(
            "float32 Adam and AdamW steps on the GPU, 100M parameters in one tensor and 200 x 100k in one call, "
            "vs torch.optim (fused=True) and vs a device-to-device copy of the same bytes; GB/s of bytes read + "
            "written (--quick: 10M and 200 x 10k)"
        ),
        cases=optim_cuda_cases,
        unavailable=lambda: torch_missing("torch.optim"),
    )
)
