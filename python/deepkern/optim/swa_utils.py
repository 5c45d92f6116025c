"""Stochastic Weight Averaging and exponential moving averages of a model, as ``torch.optim.swa_utils``:
``AveragedModel`` (a copy of a module whose parameters, and optionally buffers, are running averages of
the model's), the averaging functions ``get_swa_avg_fn``, ``get_ema_avg_fn`` (one tensor at a time) and
``get_swa_multi_avg_fn``, ``get_ema_multi_avg_fn`` (lists of tensors, in place), ``SWALR`` (anneals each
group's learning rate to a fixed one) and ``update_bn`` (recomputes batch normalization's running
statistics over a loader).

The averages are torch's formulas on deepkern Tensors, in torch's order and dtypes: the default average
is ``get_swa_avg_fn``'s (torch's CPU path), ``get_swa_multi_avg_fn``'s lerp weight ``1 / (n + 1)`` is
a float32 tensor as in torch, and integer buffers averaged with ``use_buffers=True`` are truncated."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np

from .. import autograd
from ..nn.module import Module
from ..nn.normalization import _BatchNorm, _InstanceNorm
from ..ops._validate import is_floating_dtype
from ..tensor import zeros
from .lr_scheduler import LRScheduler, _format_param

__all__ = [
    "AveragedModel",
    "update_bn",
    "SWALR",
    "get_ema_multi_avg_fn",
    "get_swa_multi_avg_fn",
    "get_ema_avg_fn",
    "get_swa_avg_fn",
]


def _check_decay(decay) -> None:
    if decay < 0.0 or decay > 1.0:
        raise ValueError(f"Invalid decay value {decay} provided. Please provide a value in [0,1] range.")


def get_ema_multi_avg_fn(decay=0.999):
    """The in-place exponential moving average of lists of tensors, ``ema = decay * ema + (1 - decay) * p``
    (a lerp by ``1 - decay``; integer tensors computed in floating point and truncated)."""
    _check_decay(decay)

    @autograd.no_grad()
    def ema_update(ema_param_list, current_param_list, _):
        if is_floating_dtype(ema_param_list[0].dtype):
            for p_ema, p_model in zip(ema_param_list, current_param_list, strict=True):
                p_ema.lerp_(p_model, 1 - decay)
        else:
            for p_ema, p_model in zip(ema_param_list, current_param_list, strict=True):
                p_ema.copy_(p_ema * decay + p_model * (1 - decay))

    return ema_update


def get_swa_multi_avg_fn():
    """The in-place equal-weight average of lists of tensors: a lerp by ``1 / (num_averaged + 1)``
    (a float32 tensor when ``num_averaged`` is one, as torch's). Integer tensors are refused, as torch's
    in-place division refuses them."""

    @autograd.no_grad()
    def swa_update(averaged_param_list, current_param_list, num_averaged):
        if not is_floating_dtype(averaged_param_list[0].dtype):
            raise RuntimeError(
                f"get_swa_multi_avg_fn: tensors of dtype {averaged_param_list[0].dtype} cannot be averaged in place "
                "(torch's addcdiv_ refuses integer division); use the default average or get_swa_avg_fn"
            )
        for p_avg, p_model in zip(averaged_param_list, current_param_list, strict=True):
            p_avg.lerp_(p_model, 1 / (num_averaged + 1))

    return swa_update


def get_ema_avg_fn(decay=0.999):
    """The exponential moving average of one tensor: ``decay * ema + (1 - decay) * p``."""
    _check_decay(decay)

    @autograd.no_grad()
    def ema_update(ema_param, current_param, num_averaged):
        return decay * ema_param + (1 - decay) * current_param

    return ema_update


def get_swa_avg_fn():
    """The equal-weight average of one tensor: ``avg + (p - avg) / (num_averaged + 1)``."""

    @autograd.no_grad()
    def swa_update(averaged_param, current_param, num_averaged):
        return averaged_param + (current_param - averaged_param) / (num_averaged + 1)

    return swa_update


class AveragedModel(Module):
    """A deep copy of ``model`` (on ``device`` when given) whose parameters :meth:`update_parameters`
    makes running averages of ``model``'s: equal weights (SWA) by default, or ``avg_fn(averaged, current,
    n_averaged)`` (returns the new value) or ``multi_avg_fn(averaged_list, current_list, n_averaged)``
    (in place, per device and dtype). With ``use_buffers`` the buffers are averaged too; otherwise they
    are copied from ``model``. The count is the int64 buffer ``n_averaged``; calling the averaged model
    calls the copy (``module``), so the state dict's keys are ``n_averaged`` and ``module.*``."""

    def __init__(self, model: Module, device=None, avg_fn=None, multi_avg_fn=None, use_buffers=False):
        super().__init__()
        if avg_fn is not None and multi_avg_fn is not None:
            raise AssertionError("Only one of avg_fn and multi_avg_fn should be provided")
        self.module = copy.deepcopy(model)
        if device is not None:
            self.module = self.module.to(device)
        self.register_buffer("n_averaged", zeros((), dtype=np.int64, device=device))
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn
        self.use_buffers = use_buffers

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @autograd.no_grad()
    def update_parameters(self, model: Module) -> None:
        """Averages ``model``'s parameters (and buffers with ``use_buffers``) into this copy's; the
        first call copies them."""
        if self.use_buffers:
            pairs = zip(
                itertools.chain(self.module.parameters(), self.module.buffers()),
                itertools.chain(model.parameters(), model.buffers()),
            )
        else:
            pairs = zip(self.parameters(), model.parameters())
        averaged, current = [], []
        n_averaged = int(self.n_averaged.item())
        for p_averaged, p_model in pairs:
            p_averaged = p_averaged.detach()
            p_model = p_model.detach().to(p_averaged.device)
            averaged.append(p_averaged)
            current.append(p_model)
            if n_averaged == 0:
                p_averaged.copy_(p_model)
        if n_averaged > 0:
            if self.avg_fn is None:
                groups: dict = {}  # as torch's: one call per device and dtype, in order of appearance
                for a, c in zip(averaged, current):
                    pair = groups.setdefault((a.device, a.dtype), ([], []))
                    pair[0].append(a)
                    pair[1].append(c)
                for (device, _), (self_params, model_params) in groups.items():
                    count = self.n_averaged.to(device)
                    if self.multi_avg_fn is not None:
                        self.multi_avg_fn(self_params, model_params, count)
                    else:
                        avg_fn = get_swa_avg_fn()
                        for a, c in zip(self_params, model_params):
                            a.copy_(avg_fn(a, c, count))
            else:
                for a, c in zip(averaged, current):
                    a.copy_(self.avg_fn(a, c, self.n_averaged.to(a.device)))
        if not self.use_buffers:  # the buffers follow the model's
            for b_swa, b_model in zip(self.module.buffers(), model.buffers(), strict=True):
                b_swa.detach().copy_(b_model.detach().to(b_swa.device))
        self.n_averaged.add_(1)


def _is_batch_norm(module) -> bool:
    """torch's ``_BatchNorm`` classes (deepkern's instance norms derive from its ``_BatchNorm``, torch's do not)."""
    return isinstance(module, _BatchNorm) and not isinstance(module, _InstanceNorm)


@autograd.no_grad()
def update_bn(loader, model: Module, device=None) -> None:
    """Recomputes the running statistics of ``model``'s batch normalization layers: resets them and runs
    the model in training mode over ``loader`` (batches: a tensor, or a list or tuple whose first element
    is the input; moved to ``device`` when given) with ``momentum=None``, a cumulative average over the
    batches; the layers' momenta and the model's mode are restored after."""
    momenta = {}
    for module in model.modules():
        if _is_batch_norm(module):
            module.reset_running_stats()
            momenta[module] = module.momentum
    if not momenta:
        return
    was_training = model.training
    model.train()
    for module in momenta:
        module.momentum = None
    for input in loader:
        if isinstance(input, (list, tuple)):
            input = input[0]
        if device is not None:
            input = input.to(device)
        model(input)
    for module, momentum in momenta.items():
        module.momentum = momentum
    model.train(was_training)


class SWALR(LRScheduler):
    """Anneals each param group's learning rate to ``swa_lr`` (one value, or one per group) over
    ``anneal_epochs`` steps, along a cosine (``anneal_strategy="cos"``) or a line (``"linear"``), then
    keeps it there; torch's formulas, which take each step from the group's current learning rate."""

    def __init__(self, optimizer, swa_lr, anneal_epochs=10, anneal_strategy="cos", last_epoch=-1):
        swa_lrs = _format_param("swa_lr", optimizer, swa_lr)
        for lr, group in zip(swa_lrs, optimizer.param_groups, strict=True):
            group["swa_lr"] = lr
        if anneal_strategy not in ["cos", "linear"]:
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}")
        self._set_anneal_func(anneal_strategy)
        if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")
        self.anneal_epochs = anneal_epochs
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _linear_anneal(t):
        return t

    @staticmethod
    def _cosine_anneal(t):
        return (1 - math.cos(math.pi * t)) / 2

    @staticmethod
    def _get_initial_lr(lr, swa_lr, alpha):
        if alpha == 1:
            return swa_lr
        return (lr - alpha * swa_lr) / (1 - alpha)

    def get_lr(self) -> list:
        self._warn_if_called_outside_step()
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        groups = self.optimizer.param_groups
        prev_alpha = self.anneal_func(max(0, min(1, (step - 1) / max(1, self.anneal_epochs))))
        prev_lrs = [self._get_initial_lr(group["lr"], group["swa_lr"], prev_alpha) for group in groups]
        alpha = self.anneal_func(max(0, min(1, step / max(1, self.anneal_epochs))))
        return [group["swa_lr"] * alpha + lr * (1 - alpha) for group, lr in zip(groups, prev_lrs, strict=True)]

    def _set_anneal_func(self, anneal_strategy) -> None:
        self._anneal_strategy = anneal_strategy
        self.anneal_func = self._cosine_anneal if anneal_strategy == "cos" else self._linear_anneal

    def state_dict(self) -> dict:
        """Every attribute but the optimizer and the annealing function (kept as its name)."""
        return {key: value for key, value in super().state_dict().items() if key != "anneal_func"}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._set_anneal_func(self._anneal_strategy)
