"""The contract of deepkern.ops' optimizer steps: sgd_step, adam_step / adamw_step, rmsprop_step and
their *_multi forms, in place, with torch.optim's semantics.

Trajectories: 100 steps of every option combination from the same float32 start and the same
float32 gradients, compared with the float64 references in tests/reference.py (which take every
input as float64 and never round) and, where PyTorch is installed, with torch.optim itself
(fused=True for SGD, Adam and AdamW, foreach=True for RMSprop, as the benchmarks use).

How close is close: a parameter is compared by the error of its displacement,
||p - p_ref|| <= tol * ||p_ref - p_0|| + k * u * ||p_ref|| after k steps (u: the dtype's unit
roundoff, 2^-24 for float32), and a state by ||s - s_ref|| / ||s_ref|| < tol. The second term is
the rounding every float32 step makes to p itself, whatever the rule: storing p, and multiplying it
by a constant that is itself rounded (AdamW's 1 - lr * weight_decay: 0.999 is 1.3e-8 off in float32,
which after 100 steps is 1.3e-6 of p, PyTorch's result included). The first term bounds the error of
the updates: float32 rounds each to ~6e-8 of itself and over 100 steps those add up (Adam's and
RMSprop's divisions by sqrt(v) amplify them a little where v is small): measured at most ~1.3e-5
of the displacement against the float64 reference (on every ISA), and against torch.optim ~1e-6
(exactly 0 on the SIMD body for SGD and Adam with AVX-512, where the order of operations is
PyTorch's to the last FMA; RMSprop differs from PyTorch only because PyTorch's sqrt is MKL's, not
the correctly rounded one). tol = 5e-5 (float32) and 1e-12 (float64) leaves a margin and still
catches a wrong term, which moves the result by orders of magnitude more.

The cases run on every device (the ``device`` fixture): parameters, gradients and states live there
and are compared in host memory.
"""

from __future__ import annotations

import itertools

import deepkern
import numpy as np
import pytest
from deepkern import ops

from checks import F32, F64, raises_naming, shape_pattern
from conftest import on_device, to_host
from reference import adam_step_ref, rmsprop_step_ref, sgd_step_ref

STEPS = 100
TOL = {F32: 5e-5, F64: 1e-12}
UNIT_ROUNDOFF = {F32: 2.0**-24, F64: 2.0**-53}

# ----------------------------------------------------------------------------------------------
# the rules and their option combinations


def _combos(**choices):
    keys = list(choices)
    return [dict(zip(keys, values)) for values in itertools.product(*choices.values())]


SGD_OPTIONS = [
    o
    for o in _combos(
        lr=[0.01],
        momentum=[0.0, 0.9],
        dampening=[0.0, 0.1],
        weight_decay=[0.0, 0.01],
        nesterov=[False, True],
        maximize=[False, True],
    )
    if not (o["nesterov"] and (o["momentum"] == 0 or o["dampening"] != 0))
    and not (o["momentum"] == 0 and o["dampening"] != 0)
]
ADAM_OPTIONS = _combos(
    lr=[0.01], betas=[(0.9, 0.999)], eps=[1e-8], weight_decay=[0.0, 0.1], amsgrad=[False, True], maximize=[False, True]
)
RMSPROP_OPTIONS = _combos(
    lr=[0.01],
    alpha=[0.99],
    eps=[1e-8],
    weight_decay=[0.0, 0.1],
    momentum=[0.0, 0.9],
    centered=[False, True],
    maximize=[False, True],
)
# lerp's other branch (weight >= 0.5) and other constants
ADAM_OPTIONS += [dict(lr=0.003, betas=(0.3, 0.5), eps=1e-6, weight_decay=0.05, amsgrad=True, maximize=False)]
RMSPROP_OPTIONS += [dict(lr=0.003, alpha=0.4, eps=1e-6, weight_decay=0.0, momentum=0.5, centered=True, maximize=False)]

CASES = (
    [("sgd", o) for o in SGD_OPTIONS]
    + [("adam", o) for o in ADAM_OPTIONS]
    + [("adamw", o) for o in ADAM_OPTIONS]
    + [("rmsprop", o) for o in RMSPROP_OPTIONS]
)


def _case_id(case):
    rule, o = case
    flags = [k if v is True else f"{k}={v}" for k, v in o.items() if v not in (False, 0.0) and k not in ("lr", "eps")]
    return "-".join([rule] + [f.replace(" ", "") for f in flags])


def state_names(rule, o):
    if rule == "sgd":
        return ["momentum_buffer"] if o["momentum"] != 0 else []
    if rule in ("adam", "adamw"):
        return ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if o["amsgrad"] else [])
    return ["square_avg"] + (["momentum_buffer"] if o["momentum"] > 0 else []) + (["grad_avg"] if o["centered"] else [])


def fresh_states(rule, o, shape, dtype, device="cpu"):
    """The states torch.optim starts from, on ``device``: zeros; SGD's buffer is NaN, which first_step
    must not read."""
    fill = np.nan if rule == "sgd" else 0.0
    return {name: on_device(device, np.full(shape, fill, dtype)) for name in state_names(rule, o)}


def states_on(device, states: dict) -> dict:
    return {name: on_device(device, value) for name, value in states.items()}


def dk_step(rule, p, g, st, step, o):
    """One deepkern step on p and the state dict st, in place."""
    if rule == "sgd":
        ops.sgd_step(p, g, st.get("momentum_buffer"), first_step=step == 1, **o)
    elif rule in ("adam", "adamw"):
        fn = ops.adam_step if rule == "adam" else ops.adamw_step
        fn(p, g, st["exp_avg"], st["exp_avg_sq"], step=step, max_exp_avg_sq=st.get("max_exp_avg_sq"), **o)
    else:
        ops.rmsprop_step(
            p, g, st["square_avg"], momentum_buffer=st.get("momentum_buffer"), grad_avg=st.get("grad_avg"), **o
        )


def dk_step_multi(rule, ps, gs, sts, steps, o):
    """One multi-tensor deepkern step over lists; sts is a list of state dicts."""
    lists = {name: [st[name] for st in sts] for name in (sts[0] if sts else {})}
    if rule == "sgd":
        ops.sgd_step_multi(ps, gs, lists.get("momentum_buffer"), first_step=[s == 1 for s in steps], **o)
    elif rule in ("adam", "adamw"):
        fn = ops.adam_step_multi if rule == "adam" else ops.adamw_step_multi
        fn(ps, gs, lists["exp_avg"], lists["exp_avg_sq"], steps=steps, max_exp_avg_sqs=lists.get("max_exp_avg_sq"), **o)
    else:
        ops.rmsprop_step_multi(
            ps,
            gs,
            lists["square_avg"],
            momentum_buffers=lists.get("momentum_buffer"),
            grad_avgs=lists.get("grad_avg"),
            **o,
        )


def ref_step(rule, p, g, st, step, o):
    """The float64 reference: (new param, new state dict)."""
    if rule == "sgd":
        p, buf = sgd_step_ref(p, g, st.get("momentum_buffer"), first_step=step == 1, **o)
        return p, ({"momentum_buffer": buf} if buf is not None else {})
    if rule in ("adam", "adamw"):
        p, m, v, vmax = adam_step_ref(
            p,
            g,
            st["exp_avg"],
            st["exp_avg_sq"],
            step=step,
            max_exp_avg_sq=st.get("max_exp_avg_sq"),
            decoupled_weight_decay=rule == "adamw",
            **o,
        )
        out = {"exp_avg": m, "exp_avg_sq": v}
        if vmax is not None:
            out["max_exp_avg_sq"] = vmax
        return p, out
    p, sq, buf, ga = rmsprop_step_ref(
        p, g, st["square_avg"], momentum_buffer=st.get("momentum_buffer"), grad_avg=st.get("grad_avg"), **o
    )
    out = {"square_avg": sq, "momentum_buffer": buf, "grad_avg": ga}
    return p, {k: v for k, v in out.items() if v is not None}


def param_error(got, ref, start, dtype, steps):
    """||got - ref|| over its allowance tol * ||ref - start|| + steps * u * ||ref|| (< 1 passes)."""
    got, ref, start = (np.asarray(a, np.float64) for a in (got, ref, start))
    dtype = np.dtype(dtype)
    allowance = TOL[dtype] * np.linalg.norm(ref - start) + steps * UNIT_ROUNDOFF[dtype] * np.linalg.norm(ref)
    err = np.linalg.norm(got - ref)
    return float(err / allowance) if allowance > 0 else float(err)


def state_error(got, ref):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    scale = np.linalg.norm(ref)
    return float(np.linalg.norm(got - ref) / scale) if scale > 0 else float(np.linalg.norm(got - ref))


def assert_close(p, p_ref, p0, st, st_ref, dtype, steps, what):
    """``p`` and the states ``st`` (on any device) against the reference trajectory's."""
    p, st = to_host(p), {name: to_host(value) for name, value in st.items()}
    assert not np.isnan(p).any(), f"{what}: NaN in param"
    err = param_error(p, p_ref, p0, dtype, steps)
    assert err < 1, (
        f"{what}: param error is {err:.3g} times its allowance (||p - p_ref|| = "
        f"{np.linalg.norm(p - p_ref):.3g}, displacement {np.linalg.norm(p_ref - p0):.3g})"
    )
    for name, ref in st_ref.items():
        assert not np.isnan(st[name]).any(), f"{what}: NaN in {name}"
        err = state_error(st[name], ref)
        assert err < TOL[np.dtype(dtype)], f"{what}: {name} relative error {err:.3g} >= {TOL[np.dtype(dtype)]:g}"


def grads_for(rng, steps, shape, dtype):
    return [rng.standard_normal(shape).astype(dtype) for _ in range(steps)]


# ----------------------------------------------------------------------------------------------
# trajectories against the float64 references


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_trajectory_matches_float64_reference(device, case, dtype, rng):
    rule, o = case
    shape = (37, 29)  # 1073 elements: SIMD body and tail
    p0 = rng.standard_normal(shape).astype(dtype)
    p, st = on_device(device, p0.copy()), fresh_states(rule, o, shape, dtype, device)
    p_ref, st_ref = p0.astype(np.float64), {k: to_host(v).astype(np.float64) for k, v in st.items()}
    for step, g in enumerate(grads_for(rng, STEPS, shape, dtype), 1):
        dk_step(rule, p, on_device(device, g), st, step, o)
        p_ref, st_ref = ref_step(rule, p_ref, g, st_ref, step, o)
    assert p.dtype == dtype and all(s.dtype == dtype for s in st.values())
    assert_close(p, p_ref, p0, st, st_ref, dtype, STEPS, f"{_case_id(case)} {dtype}")


# ----------------------------------------------------------------------------------------------
# trajectories against torch.optim


def _torch_optimizer(torch, rule, o, tp):
    kw = dict(o)
    if rule == "sgd":
        return torch.optim.SGD([tp], fused=True, **kw)
    if rule in ("adam", "adamw"):
        cls = torch.optim.Adam if rule == "adam" else torch.optim.AdamW
        return cls([tp], fused=True, **kw)
    return torch.optim.RMSprop([tp], foreach=True, **kw)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_trajectory_matches_torch(device, case, isa, rng):
    torch = pytest.importorskip("torch", reason="compares with torch.optim (PyTorch is not installed)")
    rule, o = case
    shape = (1037,)
    p0 = rng.standard_normal(shape).astype(np.float32)
    p, st = on_device(device, p0.copy()), fresh_states(rule, o, shape, F32, device)
    tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = _torch_optimizer(torch, rule, o, tp)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny step: PyTorch's thread team only waits on a busy shared machine
    try:
        for step, g in enumerate(grads_for(rng, STEPS, shape, F32), 1):
            dk_step(rule, p, on_device(device, g), st, step, o)
            tp.grad = torch.from_numpy(g.copy())
            opt.step()
    finally:
        torch.set_num_threads(torch_threads)
    torch_state = {name: opt.state[tp][name].numpy() for name in st}
    assert_close(p, tp.detach().numpy(), p0, st, torch_state, F32, STEPS, f"{_case_id(case)} vs torch ({isa})")


# ----------------------------------------------------------------------------------------------
# sizes (SIMD tails, the split over threads), writes stay inside the arrays

SIZES = [0, 1, 15, 16, 17, 1023, 100_003]
ONE_OF_EACH = [
    ("sgd", dict(lr=0.01, momentum=0.9, dampening=0.1, weight_decay=0.01, nesterov=False, maximize=True)),
    ("sgd", dict(lr=0.01, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=True, maximize=False)),
    ("adam", dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, amsgrad=True, maximize=False)),
    ("adamw", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-8, weight_decay=0.1, amsgrad=False, maximize=True)),
    ("rmsprop", dict(lr=0.01, alpha=0.9, eps=1e-8, weight_decay=0.1, momentum=0.9, centered=True, maximize=False)),
]


def _random_states(rule, o, shape, dtype, rng):
    """States as after some steps: momentum buffers and averages random, squares positive."""
    st = {}
    for name in state_names(rule, o):
        v = rng.standard_normal(shape)
        st[name] = (np.abs(v) + (0.5 if name == "square_avg" else 0.0) if "sq" in name else v * 0.1).astype(dtype)
    if "max_exp_avg_sq" in st:
        st["max_exp_avg_sq"] = (st["exp_avg_sq"] * rng.uniform(0.5, 1.5, shape)).astype(dtype)
    return st


def _guarded(values, device, guard=37):
    """A C-contiguous view of ``values`` in the middle of a NaN-guarded buffer on ``device``, and the
    buffer."""
    buf = np.full(values.size + 2 * guard, np.nan, values.dtype)
    buf[guard : guard + values.size] = values.reshape(-1)
    buf = on_device(device, buf)
    return buf[guard : guard + values.size].reshape(values.shape), buf


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("case", ONE_OF_EACH, ids=_case_id)
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_sizes_and_guards(device, size, case, dtype, isa, threads, rng):
    rule, o = case
    p0 = rng.standard_normal(size).astype(dtype)
    g = rng.standard_normal(size).astype(dtype)
    st0 = _random_states(rule, o, (size,), dtype, rng)
    p, p_buf = _guarded(p0, device)
    guarded = {name: _guarded(v, device) for name, v in st0.items()}
    st = {name: view for name, (view, _) in guarded.items()}
    g_view, g_buf = _guarded(g, device)
    g_before = to_host(g_buf).copy()
    step = 7
    dk_step(rule, p, g_view, st, step, o)
    p_ref, st_ref = ref_step(rule, p0, g, st0, step, o)
    if size:
        assert_close(p, p_ref, p0, st, st_ref, dtype, 1, f"{_case_id(case)} n={size}")
    for buf in [p_buf] + [b for _, b in guarded.values()]:
        buf = to_host(buf)
        assert np.isnan(buf[:37]).all() and np.isnan(buf[37 + size :]).all(), "a write outside the array"
    np.testing.assert_array_equal(to_host(g_buf), g_before)  # grad is only read


def test_threads_give_identical_results(device, rng):
    """The split over threads changes nothing: each element's update is the same arithmetic."""
    size = 1_000_003
    results = []
    for n_threads in (1, 2):
        previous = deepkern.get_num_threads()
        deepkern.set_num_threads(n_threads)
        try:
            r = np.random.default_rng(5)
            p, g, m, v = on_device(
                device,
                r.standard_normal(size).astype(np.float32),
                r.standard_normal(size).astype(np.float32),
                np.zeros(size, np.float32),
                np.zeros(size, np.float32),
            )
            for step in (1, 2, 3):
                ops.adam_step(p, g, m, v, step=step, weight_decay=0.1)
            results.append((p, m, v))
        finally:
            deepkern.set_num_threads(previous)
    for a, b in zip(*results):
        np.testing.assert_array_equal(to_host(a), to_host(b))


def test_unused_states_are_not_touched(device, rng):
    """A state the options do not use is neither read nor written, as in PyTorch."""
    p, g = on_device(device, rng.standard_normal(64).astype(np.float32), rng.standard_normal(64).astype(np.float32))
    spare, m, v, sq = on_device(device, np.full(64, 3.0, np.float32), *(np.zeros(64, np.float32) for _ in range(3)))
    ops.sgd_step(p, g, spare, lr=0.1)  # momentum = 0
    ops.adam_step(p, g, m, v, step=1, max_exp_avg_sq=spare)
    ops.rmsprop_step(p, g, sq, momentum_buffer=spare, grad_avg=spare)
    np.testing.assert_array_equal(to_host(spare), 3.0)


def test_first_step_writes_the_buffer_without_reading_it(device, rng):
    p0, g = rng.standard_normal(40).astype(np.float32), rng.standard_normal(40).astype(np.float32)
    p, dg, buf = on_device(device, p0.copy(), g, np.full(40, np.nan, np.float32))
    ops.sgd_step(p, dg, buf, lr=0.1, momentum=0.9, dampening=0.5, first_step=True)
    np.testing.assert_array_equal(to_host(buf), g)  # no dampening on the first step, as in PyTorch
    np.testing.assert_allclose(to_host(p), p0 - np.float32(0.1) * g, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# multi-tensor forms


MIXED_SIZES = [(3, 5), (0,), (1,), (17,), (1023,), (40_000,), (7, 11, 13), (100_003,)]


@pytest.mark.parametrize("case", ONE_OF_EACH, ids=_case_id)
def test_multi_equals_single_steps(device, case, threads, rng):
    """One multi call over mixed sizes (per-tensor steps) gives exactly the single-tensor results."""
    rule, o = case
    ps = [on_device(device, rng.standard_normal(s).astype(np.float32)) for s in MIXED_SIZES]
    gs = [on_device(device, rng.standard_normal(s).astype(np.float32)) for s in MIXED_SIZES]
    sts = [states_on(device, _random_states(rule, o, s, np.float32, rng)) for s in MIXED_SIZES]
    steps = [1 + (i * 3) % 7 for i in range(len(ps))]
    single = [(p.copy(), {k: v.copy() for k, v in st.items()}) for p, st in zip(ps, sts)]
    for (p, st), g, step in zip(single, gs, steps):
        dk_step(rule, p, g, st, step, o)
    dk_step_multi(rule, ps, gs, sts, steps, o)
    for i, ((p_single, st_single), p, st) in enumerate(zip(single, ps, sts)):
        np.testing.assert_array_equal(to_host(p), to_host(p_single), err_msg=f"params[{i}]")
        for name in st:
            np.testing.assert_array_equal(to_host(st[name]), to_host(st_single[name]), err_msg=f"{name}s[{i}]")


def test_multi_trajectory_matches_reference(device, rng):
    o = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, amsgrad=True, maximize=False)
    p0s = [rng.standard_normal(s).astype(np.float32) for s in MIXED_SIZES]
    ps = [on_device(device, p.copy()) for p in p0s]
    sts = [fresh_states("adamw", o, s, np.float32, device) for s in MIXED_SIZES]
    refs = [
        (p.astype(np.float64), {k: to_host(v).astype(np.float64) for k, v in st.items()}) for p, st in zip(p0s, sts)
    ]
    for step in range(1, 31):
        gs = [rng.standard_normal(s).astype(np.float32) for s in MIXED_SIZES]
        ops.adamw_step_multi(
            ps,
            [on_device(device, g) for g in gs],
            [st["exp_avg"] for st in sts],
            [st["exp_avg_sq"] for st in sts],
            steps=step,
            max_exp_avg_sqs=[st["max_exp_avg_sq"] for st in sts],
            **o,
        )
        refs = [ref_step("adamw", pr, g, sr, step, o) for (pr, sr), g in zip(refs, gs)]
    for p, p0, st, (p_ref, st_ref) in zip(ps, p0s, sts, refs):
        if p.size:
            assert_close(p, p_ref, p0, st, st_ref, F32, 30, f"adamw_step_multi size {p.size}")


def test_multi_empty_list_is_a_no_op():
    ops.sgd_step_multi([], [], lr=0.1)
    ops.adam_step_multi([], [], [], [], steps=1)
    ops.rmsprop_step_multi([], [], [])


def test_multi_accepts_tuples_and_non_contiguous_grads(device, rng):
    p = rng.standard_normal(10).astype(np.float32)
    g_full = rng.standard_normal(20).astype(np.float32)
    expected = p - np.float32(0.5) * g_full[::2]
    p, g_full = on_device(device, p, g_full)
    ops.sgd_step_multi((p,), (g_full[::2],), lr=0.5)
    np.testing.assert_allclose(to_host(p), expected, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# bad input: the error names the argument, and nothing is written


def _adam_arrays(device, n=4, dtype=np.float32):
    r = np.random.default_rng(0)
    return dict(
        zip(
            ("param", "grad", "exp_avg", "exp_avg_sq"),
            on_device(
                device,
                r.standard_normal(n).astype(dtype),
                r.standard_normal(n).astype(dtype),
                np.zeros(n, dtype),
                np.zeros(n, dtype),
            ),
        )
    )


def _snapshot(arrays):
    """(array, a host copy of it) for each array (on any device) among ``arrays``."""
    return [(a, to_host(a).copy()) for a in arrays if hasattr(a, "dtype")]


def _untouched(snapshot):
    for a, before in snapshot:
        np.testing.assert_array_equal(to_host(a), before)


def _bad_adam(device, **change):
    """adam_step's arrays on ``device`` and its keywords, with ``change`` applied: a value that is a
    function is called with the function putting a NumPy array on ``device``."""
    a = _adam_arrays(device)
    kw = dict(step=1)
    for k, v in change.items():
        (a if k in a else kw).__setitem__(k, v(lambda array: on_device(device, array)) if callable(v) else v)
    return a, kw


def _zeros(*shape, dtype=np.float32):
    """A function putting zeros of ``shape`` on the device it is given."""
    return lambda on: on(np.zeros(shape, dtype))


BAD_ADAM = [
    (dict(grad=_zeros(5)), ValueError, ["grad", r"\(5,\)", r"\(4,\)"]),
    (dict(exp_avg=_zeros(3)), ValueError, ["exp_avg has shape", r"\(3,\)", r"\(4,\)"]),
    (dict(exp_avg_sq=_zeros(2, 2)), ValueError, ["exp_avg_sq", r"\(2, 2\)"]),
    (dict(exp_avg=_zeros(4, dtype=np.float64)), TypeError, ["exp_avg", "float64", "float32"]),
    (dict(grad=_zeros(4, dtype=np.float64)), TypeError, ["grad", "float64"]),
    (dict(param=_zeros(4, dtype=np.int64)), TypeError, ["param", "int64"]),
    (dict(param=lambda on: _zeros(8)(on)[::2]), ValueError, ["param", "contiguous", "in place"]),
    (dict(exp_avg_sq=lambda on: _zeros(8)(on)[::2]), ValueError, ["exp_avg_sq", "contiguous"]),
    (dict(lr=-1e-3), ValueError, ["lr", "-0.001"]),
    (dict(lr=float("nan")), ValueError, ["lr"]),
    (dict(lr="0.1"), TypeError, ["lr"]),
    (dict(eps=-1e-8), ValueError, ["eps"]),
    (dict(betas=(1.0, 0.999)), ValueError, [r"betas\[0\]", r"\[0, 1\)"]),
    (dict(betas=(0.9, 1.5)), ValueError, [r"betas\[1\]"]),
    (dict(betas=(-0.1, 0.999)), ValueError, [r"betas\[0\]"]),
    (dict(betas=0.9), TypeError, ["betas"]),
    (dict(weight_decay=-0.1), ValueError, ["weight_decay"]),
    (dict(step=0), ValueError, ["step", ">= 1"]),
    (dict(step=2**70), ValueError, ["step", str(2**70), "int64"]),
    (dict(step=1.5), TypeError, ["step", "int"]),
    (dict(amsgrad=True), ValueError, ["max_exp_avg_sq", "amsgrad"]),
    (dict(amsgrad=True, max_exp_avg_sq=_zeros(2)), ValueError, ["max_exp_avg_sq", r"\(2,\)"]),
]


@pytest.mark.parametrize("change,exc,needles", BAD_ADAM, ids=["-".join(change) for change, _, _ in BAD_ADAM])
def test_adam_bad_input(device, change, exc, needles):
    a, kw = _bad_adam(device, **change)
    snapshot = _snapshot(list(a.values()) + list(kw.values()))
    with raises_naming(exc, "adam_step", *needles):
        ops.adam_step(a["param"], a["grad"], a["exp_avg"], a["exp_avg_sq"], **kw)
    _untouched(snapshot)


def test_adam_bad_numpy_state():
    """What only host memory can hold where an array is updated in place: a list, a read-only array."""
    a, kw = _bad_adam("cpu", exp_avg=[0.0] * 4)
    with raises_naming(TypeError, "adam_step", "exp_avg", "ndarray"):
        ops.adam_step(a["param"], a["grad"], a["exp_avg"], a["exp_avg_sq"], **kw)
    a = _adam_arrays("cpu")
    a["param"].flags.writeable = False
    with raises_naming(ValueError, "param", "read-only"):
        ops.adam_step(a["param"], a["grad"], a["exp_avg"], a["exp_avg_sq"], step=1)


def test_overlaps_are_rejected(device):
    a = _adam_arrays(device)
    snapshot = _snapshot(a.values())
    with raises_naming(ValueError, "adam_step: exp_avg_sq overlaps exp_avg"):
        ops.adam_step(a["param"], a["grad"], a["exp_avg"], a["exp_avg"], step=1)
    with raises_naming(ValueError, "exp_avg overlaps param"):
        ops.adam_step(a["param"], a["grad"], a["param"], a["exp_avg_sq"], step=1)
    buf = on_device(device, np.zeros(7, np.float32))
    with raises_naming(ValueError, "exp_avg overlaps param"):  # partial overlap of two views
        ops.adam_step(buf[:4], a["grad"], buf[3:], a["exp_avg_sq"], step=1)
    _untouched(snapshot)
    np.testing.assert_array_equal(to_host(buf), 0)


@pytest.mark.parametrize(
    "kw,needles",
    [
        (dict(lr=-0.1), ["lr"]),
        (dict(lr=0.1, momentum=-0.9), ["momentum"]),
        (dict(lr=0.1, weight_decay=-1.0), ["weight_decay"]),
        (dict(lr=0.1, nesterov=True), ["nesterov", "momentum"]),
        (dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ["nesterov", "dampening"]),
        (dict(lr=0.1, momentum=0.9), ["momentum_buffer", "required"]),
    ],
)
def test_sgd_bad_hyperparameters(device, kw, needles):
    p, g = on_device(device, np.ones(4, np.float32), np.ones(4, np.float32))
    with raises_naming(ValueError, "sgd_step", *needles):
        ops.sgd_step(p, g, **kw)
    np.testing.assert_array_equal(to_host(p), 1)


def test_sgd_needs_lr(device):
    with pytest.raises(TypeError, match="lr"):
        ops.sgd_step(*on_device(device, np.ones(4, np.float32), np.ones(4, np.float32)))


@pytest.mark.parametrize(
    "kw,exc,needles",
    [
        (dict(lr=-0.1), ValueError, ["lr"]),
        (dict(eps=-1.0), ValueError, ["eps"]),
        (dict(alpha=-0.5), ValueError, ["alpha"]),
        (dict(momentum=-0.5), ValueError, ["momentum"]),
        (dict(weight_decay=-0.5), ValueError, ["weight_decay"]),
        (dict(momentum=0.9), ValueError, ["momentum_buffer", "required"]),
        (dict(centered=True), ValueError, ["grad_avg", "centered"]),
        (dict(centered=True, grad_avg=np.zeros(3, np.float32)), ValueError, ["grad_avg", r"\(3,\)", r"\(4,\)"]),
        (dict(momentum=0.9, momentum_buffer=np.zeros(4, np.float64)), TypeError, ["momentum_buffer", "float64"]),
        (dict(centered=1), TypeError, ["centered", "bool"]),
    ],
)
def test_rmsprop_bad_input(device, kw, exc, needles):
    p, g, sq = on_device(device, np.ones(4, np.float32), np.ones(4, np.float32), np.zeros(4, np.float32))
    kw = {k: on_device(device, v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    snapshot = _snapshot([p, g, sq] + list(kw.values()))
    with raises_naming(exc, "rmsprop_step", *needles):
        ops.rmsprop_step(p, g, sq, **kw)
    _untouched(snapshot)


def test_multi_bad_input_names_the_entry_and_writes_nothing(device):
    r = np.random.default_rng(1)
    ps = [on_device(device, r.standard_normal(n).astype(np.float32)) for n in (4, 5, 6)]
    gs = [np.ones_like(p) for p in ps]
    ms, vs = [np.zeros_like(p) for p in ps], [np.zeros_like(p) for p in ps]
    snapshot = _snapshot(ps + gs + ms + vs)
    bad_vs = vs[:2] + [on_device(device, np.zeros(7, np.float32))]
    with raises_naming(ValueError, "adam_step_multi", r"exp_avg_sqs\[2\]", shape_pattern((7,)), shape_pattern((6,))):
        ops.adam_step_multi(ps, gs, ms, bad_vs, steps=1)
    with raises_naming(TypeError, r"params\[1\]", "float64", r"params\[0\]"):
        ops.adam_step_multi([ps[0], ps[1].astype(np.float64), ps[2]], gs, ms, vs, steps=1)
    with raises_naming(ValueError, "grads", "2", "3"):
        ops.adam_step_multi(ps, gs[:2], ms, vs, steps=1)
    with raises_naming(ValueError, "exp_avgs", "2", "3"):
        ops.adam_step_multi(ps, gs, ms[:2], vs, steps=1)
    with raises_naming(ValueError, "steps", "2", "3"):
        ops.adam_step_multi(ps, gs, ms, vs, steps=[1, 2])
    with raises_naming(ValueError, r"steps\[1\]", ">= 1"):
        ops.adam_step_multi(ps, gs, ms, vs, steps=[1, 0, 2])
    with raises_naming(ValueError, r"exp_avgs\[1\] overlaps params\[1\]"):
        ops.adam_step_multi(ps, gs, [ms[0], ps[1], ms[2]], vs, steps=1)
    # across tensors (threads update them at once): one array as two params, two params sharing a buffer
    same = [ms[0], np.zeros_like(ps[0]), ms[2]], [vs[0], np.zeros_like(ps[0]), vs[2]]
    with raises_naming(ValueError, "adam_step_multi", r"params\[1\] overlaps params\[0\]"):
        ops.adam_step_multi([ps[0], ps[0], ps[2]], [gs[0], gs[0], gs[2]], *same, steps=1)
    buf = on_device(device, np.zeros(10, np.float32))
    with raises_naming(ValueError, "adam_step_multi", r"params\[1\] overlaps params\[0\]"):
        ops.adam_step_multi([buf[:4], buf[3:8], ps[2]], gs, ms, vs, steps=1)
    with raises_naming(TypeError, "params", "list"):
        ops.adam_step_multi(ps[0], gs, ms, vs, steps=1)
    with raises_naming(ValueError, r"momentum_buffers\[0\]", "contiguous"):
        ops.sgd_step_multi(ps, gs, [on_device(device, np.zeros(8, np.float32))[::2]] + ms[1:], lr=0.1, momentum=0.9)
    with raises_naming(TypeError, r"first_step\[1\]", "bool"):
        ops.sgd_step_multi(ps, gs, ms, lr=0.1, momentum=0.9, first_step=[True, 1, False])
    _untouched(snapshot)
