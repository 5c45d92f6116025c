"""deepkern.optim.lr_scheduler's MultiStepLR, ExponentialLR, LambdaLR, LinearLR, SequentialLR,
CosineAnnealingWarmRestarts (also stepped by fractional epochs) and ReduceLROnPlateau: the learning
rates of two param groups after every step equal torch's (the same formulas in the same order give
the same floats), against the closed forms written out here (no torch needed), resumed from state
dicts (through deepkern.save), and bad arguments."""

from __future__ import annotations

import math

import deepkern
import numpy as np
import pytest
from deepkern import optim
from deepkern.optim import lr_scheduler
from test_optim_api import deepkern_params, lr_sequences, needs_torch, start_params, torch
from test_optim_api import test_scheduler_state_dict_round_trip as round_trip

from checks import raises_naming


def halving(epoch):
    return 0.5 ** (epoch // 4)


def warmup(epoch):
    return min(1.0, (epoch + 1) / 6)


class Scaled:
    """A callable object: LambdaLR saves its ``__dict__``."""

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, epoch):
        return self.rate**epoch


# (name, make(module, optimizer), optimizer class, its options)
SCHEDULERS = [
    ("multistep", lambda m, o: m.MultiStepLR(o, milestones=[3, 7, 7, 20], gamma=0.5), "SGD", None),
    ("multistep-unsorted", lambda m, o: m.MultiStepLR(o, milestones=[30, 2]), "Adam", dict(lr=0.01)),
    ("exponential", lambda m, o: m.ExponentialLR(o, gamma=0.93), "SGD", None),
    ("lambda", lambda m, o: m.LambdaLR(o, halving), "SGD", None),
    ("lambda-per-group", lambda m, o: m.LambdaLR(o, [warmup, Scaled(0.97)]), "Adam", dict(lr=0.01)),
    ("linear", lambda m, o: m.LinearLR(o), "SGD", None),
    ("linear-down", lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.05, total_iters=9), "SGD", None),
    ("warm-restarts", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=5), "SGD", None),
    (
        "warm-restarts-mult",
        lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.001),
        "RMSprop",
        dict(lr=0.01),
    ),
    (
        "sequential",
        lambda m, o: m.SequentialLR(
            o, [m.LinearLR(o, start_factor=0.1, total_iters=4), m.CosineAnnealingLR(o, T_max=10)], milestones=[6]
        ),
        "SGD",
        None,
    ),
    (
        "sequential-three",
        lambda m, o: m.SequentialLR(
            o,
            [m.ExponentialLR(o, gamma=0.9), m.StepLR(o, step_size=3, gamma=0.5), m.MultiStepLR(o, [2, 4])],
            milestones=[5, 12],
        ),
        "Adam",
        dict(lr=0.01),
    ),
    (
        "sequential-nested",
        lambda m, o: m.SequentialLR(
            o,
            [
                m.SequentialLR(o, [m.LinearLR(o, start_factor=0.5, total_iters=2), m.ExponentialLR(o, 0.9)], [3]),
                m.StepLR(o, step_size=2, gamma=0.5),
            ],
            milestones=[8],
        ),
        "SGD",
        None,
    ),
]
IDS = [s[0] for s in SCHEDULERS]


@needs_torch
@pytest.mark.parametrize("name, make, cls_name, options", SCHEDULERS, ids=IDS)
def test_scheduler_matches_torch(name, make, cls_name, options):
    (ours, sched, opt), (theirs, tsched, _) = lr_sequences(make, cls_name, options)
    assert ours == theirs
    assert sched.last_epoch == tsched.last_epoch == 40
    assert ours[-1][0] == [g["lr"] for g in opt.param_groups]


def closed_form(name, t, base):
    """The learning rate at epoch ``t`` for initial rate ``base`` (group ``1`` uses the second
    lambda), from the schedules' definitions."""
    if name == "multistep":
        return base * 0.5 ** sum(t >= m for m in (3, 7, 7, 20))
    if name == "exponential":
        return base * 0.93**t
    if name == "lambda":
        return base * halving(t)
    if name == "linear":
        return base * (1 / 3 + (1 - 1 / 3) * min(t, 5) / 5)
    if name == "linear-down":
        return base * (1.0 + (0.05 - 1.0) * min(t, 9) / 9)
    if name == "warm-restarts":
        return base * (1 + math.cos(math.pi * (t % 5) / 5)) / 2
    if name == "warm-restarts-mult":  # periods 3, 6, 12, 24 starting at 0, 3, 9, 21
        start, period = 0, 3
        while t >= start + period:
            start, period = start + period, period * 2
        return 0.001 + (base - 0.001) * (1 + math.cos(math.pi * (t - start) / period)) / 2
    if name == "sequential":
        if t < 6:
            return base * (0.1 + 0.9 * min(t, 4) / 4)
        return base * (1 + math.cos(math.pi * (t - 6) / 10)) / 2
    if name == "sequential-nested":  # PyTorch's values: the inner switch lands on the exponential's first decay
        if t < 8:
            return base * (0.5 + 0.25 * t if t < 3 else 0.9 ** (t - 2))
        return base * 0.5 ** ((t - 8) // 2)
    raise KeyError(name)


@pytest.mark.parametrize(
    "name", ["multistep", "exponential", "lambda", "linear", "linear-down", "warm-restarts", "sequential-nested"]
)
def test_scheduler_follows_closed_form(name):
    make, cls_name, options = next(s[1:] for s in SCHEDULERS if s[0] == name)
    (seq, _, _), _ = lr_sequences(make, cls_name, options)
    for t, (lrs, _) in enumerate(seq):
        assert lrs == pytest.approx([closed_form(name, t, 0.1), closed_form(name, t, 0.02)], rel=1e-12), t


@pytest.mark.parametrize("name", ["warm-restarts-mult", "sequential"])
def test_scheduler_follows_closed_form_single_group(name):
    make, cls_name, options = next(s[1:] for s in SCHEDULERS if s[0] == name)
    options = options or dict(lr=0.1, momentum=0.9)
    (seq, _, _), _ = lr_sequences(make, cls_name, options, groups=False)
    for t, (lrs, _) in enumerate(seq):
        assert lrs == pytest.approx([closed_form(name, t, options["lr"])], rel=1e-12, abs=1e-15), t


def epochs_of_batches(epochs=12, batches=7):
    """``epoch + i / batches`` for every batch, then a few whole and jumping epochs."""
    return [e + i / batches for e in range(epochs) for i in range(batches)] + [15, 3, 26.5, 40]


@pytest.mark.parametrize("T_0, T_mult", [(5, 1), (3, 2), (2, 3)])
def test_warm_restarts_fractional_epochs(T_0, T_mult):
    """step(epoch) with fractional epochs: torch's values, and the closed form of the position in
    the current period."""
    opt = optim.SGD(deepkern_params(start_params()[:1]), lr=0.1)
    sched = lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=T_0, T_mult=T_mult, eta_min=0.01)
    ours = []
    for epoch in epochs_of_batches():
        sched.step(epoch)
        ours.append(sched.get_last_lr()[0])
        start, period = 0, T_0
        while epoch >= start + period:
            start, period = start + period, period * T_mult
        want = 0.01 + (0.1 - 0.01) * (1 + math.cos(math.pi * (epoch - start) / period)) / 2
        assert ours[-1] == pytest.approx(want, rel=1e-9), epoch
        assert sched.last_epoch == math.floor(epoch)
    if torch is not None:
        topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
        tsched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(topt, T_0=T_0, T_mult=T_mult, eta_min=0.01)
        theirs = []
        for epoch in epochs_of_batches():
            tsched.step(epoch)
            theirs.append(tsched.get_last_lr()[0])
        assert ours == theirs


# -- ReduceLROnPlateau ---------------------------------------------------------------------------


def metric_sequence(seed=0, n=80):
    """A loss that falls, then plateaus with noise, then falls a little again."""
    rng = np.random.default_rng(seed)
    base = np.concatenate([np.linspace(1.0, 0.5, 20), np.full(40, 0.5), np.linspace(0.5, 0.45, 20)])
    return (base + 0.002 * rng.standard_normal(n)).tolist()


PLATEAU = [
    dict(),
    dict(mode="max", factor=0.5, patience=3),
    dict(threshold_mode="abs", threshold=0.01, patience=2, cooldown=3),
    dict(mode="max", threshold_mode="abs", threshold=0.001, patience=1, cooldown=1, factor=0.3),
    dict(patience=0, factor=0.5, min_lr=[0.05, 0.001]),
    dict(patience=2, factor=0.5, min_lr=0.004, eps=1e-3),
    dict(patience=4, threshold=0.05, cooldown=2),
]


def plateau_run(lib, options, metrics, sign):
    params = [lib.nn.Parameter(lib.tensor(a)) for a in start_params()[:2]]
    opt = lib.optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr": 0.02}], lr=0.1)
    sched = lib.optim.lr_scheduler.ReduceLROnPlateau(opt, **options)
    seq = []
    for m in metrics:
        sched.step(sign * m)
        seq.append((list(sched.get_last_lr()), sched.best, sched.num_bad_epochs, sched.cooldown_counter))
    return seq, sched


@needs_torch
@pytest.mark.parametrize("options", PLATEAU, ids=str)
def test_reduce_on_plateau_matches_torch(options):
    metrics = metric_sequence()
    sign = -1 if options.get("mode") == "max" else 1
    ours, _ = plateau_run(deepkern, options, metrics, sign)
    theirs, _ = plateau_run(torch, options, metrics, sign)
    assert ours == theirs
    assert ours[-1][0] != ours[0][0], "the schedule should reduce the learning rate"


@pytest.mark.parametrize("options", PLATEAU, ids=str)
def test_reduce_on_plateau_rule(options):
    """The rule restated: count epochs without improvement (none counted in cooldown), reduce
    after more than ``patience`` of them, never below min_lr nor by eps or less."""
    o = dict(mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8)
    o.update(options)
    metrics = metric_sequence()
    sign = -1 if o["mode"] == "max" else 1
    ours, _ = plateau_run(deepkern, options, metrics, sign)
    lrs, best, bad, cooldown = [0.1, 0.02], (math.inf if o["mode"] == "min" else -math.inf), 0, 0
    min_lrs = o["min_lr"] if isinstance(o["min_lr"], list) else [o["min_lr"]] * 2
    for m, got in zip(metrics, ours):
        m *= sign
        if o["mode"] == "min":
            better = m < (best * (1 - o["threshold"]) if o["threshold_mode"] == "rel" else best - o["threshold"])
        else:
            better = m > (best * (1 + o["threshold"]) if o["threshold_mode"] == "rel" else best + o["threshold"])
        best, bad = (m, 0) if better else (best, bad + 1)
        if cooldown > 0:
            cooldown, bad = cooldown - 1, 0
        if bad > o["patience"]:
            lrs = [
                lr if lr - max(lr * o["factor"], lo) <= o["eps"] else max(lr * o["factor"], lo)
                for lr, lo in zip(lrs, min_lrs)
            ]
            cooldown, bad = o["cooldown"], 0
        assert got == (lrs, best, bad, cooldown)


def test_reduce_on_plateau_accepts_tensors_and_resumes(tmp_path):
    metrics = metric_sequence(seed=3)
    options = dict(patience=2, cooldown=1, factor=0.5)
    whole, _ = plateau_run(deepkern, options, metrics, 1)
    params = deepkern_params(start_params()[:2])
    opt = optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr": 0.02}], lr=0.1)
    sched = lr_scheduler.ReduceLROnPlateau(opt, **options)
    for m in metrics[:30]:
        sched.step(deepkern.tensor(m))  # a 0-d tensor, as a loss is
    deepkern.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, tmp_path / "ckpt.safetensors")
    saved = deepkern.load(tmp_path / "ckpt.safetensors")
    opt2 = optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr": 0.02}], lr=0.1)
    opt2.load_state_dict(saved["optimizer"])
    sched2 = lr_scheduler.ReduceLROnPlateau(opt2)
    sched2.load_state_dict(saved["scheduler"])
    for t, m in enumerate(metrics[30:], 30):
        sched2.step(m)
        assert (sched2.get_last_lr(), sched2.best, sched2.num_bad_epochs, sched2.cooldown_counter) == whole[t]


# -- state dicts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, make, cls_name, options", SCHEDULERS, ids=IDS)
def test_scheduler_state_dict_round_trip(name, make, cls_name, options, tmp_path):
    """A new optimizer and scheduler loaded from state dicts written by deepkern.save continue the
    same sequence (LambdaLR: with the same functions; a callable object's attributes are saved)."""
    round_trip(name, make, cls_name, options, None, tmp_path)


def test_lambda_state_dict_holds_callable_objects_state():
    params = deepkern_params(start_params()[:2])
    opt = optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1)
    scaled = Scaled(0.9)
    sched = lr_scheduler.LambdaLR(opt, [halving, scaled])
    state = sched.state_dict()
    assert state["lr_lambdas"] == [None, {"rate": 0.9}]
    state["lr_lambdas"][1] = {"rate": 0.5}
    sched.load_state_dict(state)
    assert scaled.rate == 0.5 and sched.lr_lambdas == [halving, scaled]


# -- bad input -----------------------------------------------------------------------------------


def test_bad_arguments_raise_naming_them():
    opt = optim.SGD(deepkern_params(start_params()[:2]), lr=0.1)
    other = optim.SGD(deepkern_params(start_params()[:2]), lr=0.1)
    cases = [
        (ValueError, ["Expected 1 lr_lambdas", "got 2"], lambda: lr_scheduler.LambdaLR(opt, [halving, halving])),
        (TypeError, [r"lr_lambda\[0\]", "callable", "float"], lambda: lr_scheduler.LambdaLR(opt, 0.5)),
        (ValueError, ["Starting multiplicative factor", "start_factor=0"], lambda: lr_scheduler.LinearLR(opt, 0)),
        (ValueError, ["Ending multiplicative factor", "end_factor=1.5"], lambda: lr_scheduler.LinearLR(opt, 0.5, 1.5)),
        (ValueError, ["positive integer T_0", "0"], lambda: lr_scheduler.CosineAnnealingWarmRestarts(opt, 0)),
        (ValueError, ["T_mult >= 1", "1.5"], lambda: lr_scheduler.CosineAnnealingWarmRestarts(opt, 2, T_mult=1.5)),
        (ValueError, ["eta_min", "'a'"], lambda: lr_scheduler.CosineAnnealingWarmRestarts(opt, 2, eta_min="a")),
        (ValueError, ["Factor should be < 1.0", "factor=1.5"], lambda: lr_scheduler.ReduceLROnPlateau(opt, factor=1.5)),
        (ValueError, ["mode 'up' is unknown"], lambda: lr_scheduler.ReduceLROnPlateau(opt, mode="up")),
        (ValueError, ["threshold mode 'pct'"], lambda: lr_scheduler.ReduceLROnPlateau(opt, threshold_mode="pct")),
        (ValueError, ["expected 1 min_lrs, got 2"], lambda: lr_scheduler.ReduceLROnPlateau(opt, min_lr=[0, 0])),
        (TypeError, ["is not an Optimizer"], lambda: lr_scheduler.ReduceLROnPlateau(object())),
        (ValueError, ["at least one scheduler"], lambda: lr_scheduler.SequentialLR(opt, [], [])),
        (
            ValueError,
            ["one more than the number of milestone", "schedulers 1", "milestones to be equal to 1"],
            lambda: lr_scheduler.SequentialLR(opt, [lr_scheduler.ExponentialLR(opt, 0.9)], [3]),
        ),
        (
            ValueError,
            ["same optimizer", "ExponentialLR at index 1"],
            lambda: lr_scheduler.SequentialLR(
                opt, [lr_scheduler.ExponentialLR(opt, 0.9), lr_scheduler.ExponentialLR(other, 0.9)], [3]
            ),
        ),
        (
            ValueError,
            ["ReduceLROnPlateau", "index 0"],
            lambda: lr_scheduler.SequentialLR(opt, [lr_scheduler.ReduceLROnPlateau(opt)], []),
        ),
    ]
    for exc, needles, make in cases:
        with raises_naming(exc, *needles):
            make()
    sched = lr_scheduler.CosineAnnealingWarmRestarts(opt, 2)
    with raises_naming(ValueError, "non-negative epoch", "-1"):
        sched.step(-1)


@pytest.mark.parametrize(
    "make",
    [
        lambda o: lr_scheduler.LambdaLR(o, halving),
        lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=4),
        lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=3),
    ],
)
def test_group_added_after_the_scheduler_is_refused(make):
    """A param group added after a scheduler of base learning rates was made has none: stepping is
    a ValueError (PyTorch's strict zip), not a group left unscheduled or stuck at 0."""
    a, b = deepkern_params(start_params()[:2])
    opt = optim.SGD([a], lr=0.1)
    sched = make(opt)
    opt.add_param_group({"params": [b], "lr": 0.5})
    with raises_naming(ValueError, type(sched).__name__, "2 parameter groups", "1"):
        for _ in range(6):
            opt.step()
            sched.step()
