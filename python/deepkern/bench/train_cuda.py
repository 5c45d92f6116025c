"""The ``train-cuda`` suite: training steps on the GPU of ``deepkern train digits-cnn`` and
``char-lstm`` and of a ResNet-18-shaped CNN, each beside the same model in PyTorch eager on the GPU,
from the same weights over the same batches; and where the time goes: each step's forward (with the
loss), backward and optimizer step, timed between CUDA events in both libraries.

A timed call is one training step; ``deepkern bench --device cuda`` takes 3 warm-up steps, then 20
timed ones, in each of its rounds. Both libraries compute in full FP32 (no TF32: deepkern's default,
and torch's cuDNN and matmul flags turned off), torch with ``cudnn.benchmark`` on.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .libraries import _torch_cuda_missing, installed_torch, torch_missing
from .models import forward_flops, resnet18
from .registry import Case, Suite, register_suite
from .timing import Timing
from .train import CLIP_NORM, _epoch_order, _loss_inputs, _torch_train_model, _train_arrays, _train_recipe

#: The models of the suite: two recipes of ``deepkern train`` and the ResNet-18-shaped CNN.
TRAIN_CUDA_MODELS = ("digits-cnn", "char-lstm", "resnet18")
#: The phases of a step, in order: forward and loss; backward; gradient clipping (char-lstm),
#: optimizer step and zero_grad.
PHASES = ("forward", "backward", "optimizer")
GROUP_STEP = "train step"
#: Each library cycles through this many batches, moved to the device before the first step.
STEP_BATCHES = 4
#: The first steps of each library (the runner's warm-up: cuDNN's autotuning, the allocators' first
#: blocks) are left out of the phase times.
PHASE_WARMUP = 3
#: Seed of the ResNet's weights and random images (the recipes use TRAIN_SEED of the train suite).
RESNET_SEED = 0
#: SGD with momentum for the ResNet.
RESNET_SGD = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}


@dataclasses.dataclass(frozen=True)
class ResNetSize:
    """The ResNet-18-shaped workload: square RGB images of ``image`` pixels, ``batch`` a step,
    ``classes`` classes, stage widths ``widths`` (ResNet-18's by default; narrower for tests)."""

    image: int = 64
    batch: int = 128
    classes: int = 10
    widths: Tuple[int, ...] = (64, 128, 256, 512)


RESNET = ResNetSize()


@dataclasses.dataclass
class _Workload:
    """One model built for both libraries: the deepkern model (on the CPU), a maker of its PyTorch
    twin (``torch -> module`` with the same weights), the host batches (inputs, flat int64 targets),
    a maker of the optimizer (``(library, parameters) -> optimizer``) and the clipping norm."""

    model: object
    torch_model: Callable
    batches: List[Tuple[np.ndarray, np.ndarray]]
    optimizer: Callable
    clip_norm: Optional[float] = None


def _workload(name: str, resnet: ResNetSize) -> _Workload:
    """``name``'s model and batches: a recipe as ``deepkern train`` builds it (its model, weights,
    batch size and Adam learning rate; the first STEP_BATCHES batches of its first epoch's order), or
    the ResNet on random N(0, 1) images and uniform labels drawn from RESNET_SEED."""
    from .. import nn
    from ..random import manual_seed

    if name == "resnet18":
        manual_seed(RESNET_SEED)
        model = resnet18(nn, resnet.classes, resnet.widths)
        rng = np.random.default_rng(RESNET_SEED)
        shape = (resnet.batch, 3, resnet.image, resnet.image)
        batches = [
            (rng.standard_normal(shape, dtype=np.float32), rng.integers(0, resnet.classes, resnet.batch))
            for _ in range(STEP_BATCHES)
        ]

        def twin(torch):
            copy = resnet18(torch.nn, resnet.classes, resnet.widths)
            copy.load_state_dict({k: torch.from_numpy(np.array(v.numpy())) for k, v in model.state_dict().items()})
            return copy

        return _Workload(model, twin, batches, lambda lib, params: lib.optim.SGD(params, **RESNET_SGD))
    if name not in TRAIN_CUDA_MODELS:
        raise ValueError(f"train-cuda: unknown model {name!r}; known: {', '.join(TRAIN_CUDA_MODELS)}")
    recipe = _train_recipe(name)
    (xs, ys), loader = _train_arrays(recipe)
    order, size = _epoch_order(loader, 0), loader.batch_size
    picks = [order[k * size : (k + 1) * size] for k in range(STEP_BATCHES)]
    batches = [(np.ascontiguousarray(xs[i]), ys[i].astype(np.int64).reshape(-1)) for i in picks]
    lr = recipe.cfg.lr
    return _Workload(
        recipe.models["model"],
        lambda torch: _torch_train_model(torch, name, recipe)[0],
        batches,
        lambda lib, params: lib.optim.Adam(params, lr=lr),
        CLIP_NORM.get(name),
    )


class _HostEvent:
    """A host clock with the interface of a CUDA event (``record``, ``synchronize``,
    ``elapsed_time`` in ms), for the devices without events (the CPU, test devices)."""

    def record(self) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: "_HostEvent") -> float:
        return (end.t - self.t) * 1e3


class _Trainer:
    """One library training its copy of a model: each call is one step on the next batch (forward
    and the cross-entropy loss; backward; clipping, optimizer step, zero_grad), with an event
    recorded between the phases; returns the loss (before the step)."""

    def __init__(self, lib, model, batches, workload: _Workload, event: Callable, settings: Callable):
        self.lib, self.model, self.batches, self.event, self.settings = lib, model, batches, event, settings
        self.params = list(model.parameters())
        self.optimizer = workload.optimizer(lib, self.params)
        self.clip_norm = workload.clip_norm
        self.loss = lib.nn.CrossEntropyLoss()
        self.marks: List[list] = []

    def __call__(self):
        self.settings()
        x, y = self.batches[len(self.marks) % len(self.batches)]
        marks = [self.event() for _ in range(len(PHASES) + 1)]
        marks[0].record()
        loss = self.loss(*_loss_inputs(self.model(x), y))
        marks[1].record()
        loss.backward()
        marks[2].record()
        if self.clip_norm is not None:
            self.lib.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        marks[3].record()
        self.marks.append(marks)
        return loss

    def phase_times(self) -> Dict[str, Timing]:
        """Seconds per step in each phase, over the steps after the first PHASE_WARMUP (all of them
        when there are no more)."""
        steps = self.marks[PHASE_WARMUP:] or self.marks
        steps[-1][-1].synchronize()
        return {
            phase: Timing.from_times([m[i].elapsed_time(m[i + 1]) / 1e3 for m in steps])
            for i, phase in enumerate(PHASES)
        }


def _deepkern_settings() -> None:
    from ..backends import cuda as cuda_backend

    cuda_backend.matmul.allow_tf32 = False


class _TrainPair:
    """One model trained by deepkern on ``device`` and by PyTorch on ``torch_device`` from the same
    weights over the same batches, built on the first call to either (the warm-up); ``case``, when
    set, gets the step's FLOP then."""

    def __init__(self, name: str, device: str, torch_device: str, resnet: ResNetSize):
        self.name, self.device, self.torch_device, self.resnet = name, device, torch_device, resnet
        self.trainers: Dict[str, _Trainer] = {}
        self.case: Optional[Case] = None

    def _build(self) -> Dict[str, _Trainer]:
        if self.trainers:
            return self.trainers
        import deepkern

        from ..tensor import from_numpy

        torch = installed_torch()
        work = _workload(self.name, self.resnet)
        if self.case is not None:  # the forward's FLOP per sample, counted on one, times the batch
            x = work.batches[0][0]
            fwd = forward_flops(work.model, deepkern, from_numpy(x[:1])) * len(x)
            self.case.phase_flops = {"forward": fwd, "backward": 2 * fwd}
            self.case.flops = 3 * fwd
        twin = work.torch_model(torch).to(self.torch_device).train()
        model = work.model.to(self.device).train()
        on_gpu = self.torch_device == "cuda"

        def torch_settings():
            if on_gpu:
                torch.backends.cudnn.benchmark = True
                torch.backends.cudnn.allow_tf32 = False
                torch.backends.cuda.matmul.allow_tf32 = False

        dk_batches = [tuple(from_numpy(a).to(self.device) for a in b) for b in work.batches]
        t_batches = [tuple(torch.from_numpy(a).to(self.torch_device) for a in b) for b in work.batches]
        dk_event = (lambda: deepkern.cuda.Event(enable_timing=True)) if self.device == "cuda" else _HostEvent
        t_event = (lambda: torch.cuda.Event(enable_timing=True)) if on_gpu else _HostEvent
        self.trainers = {
            "deepkern": _Trainer(deepkern, model, dk_batches, work, dk_event, _deepkern_settings),
            "torch": _Trainer(torch, twin, t_batches, work, t_event, torch_settings),
        }
        return self.trainers

    def deepkern(self):
        return self._build()["deepkern"]()

    def torch(self):
        return self._build()["torch"]()

    def phases(self) -> Dict[str, Dict[str, Timing]]:
        """phase -> library -> seconds per step in it (see :meth:`_Trainer.phase_times`), for the
        libraries that trained."""
        times = {name: trainer.phase_times() for name, trainer in self._build().items() if trainer.marks}
        return {phase: {name: t[phase] for name, t in times.items()} for phase in PHASES}


def train_cuda_check(name: str, device: str = "cuda", torch_device: str = "cuda", resnet: ResNetSize = RESNET) -> float:
    """Largest relative difference of deepkern's and PyTorch's losses over two steps from the same
    weights (the first batch's loss, then the second's after one optimizer step), each library on its
    device; models with dropout run in evaluation mode (no random masks), the others in training mode
    (batch norm's batch statistics). float32 rounding gives ~1e-6."""
    from .. import nn

    trainers = _TrainPair(name, device, torch_device, resnet)._build()
    has_dropout = any(isinstance(m, nn.Dropout) for m in trainers["deepkern"].model.modules())
    for trainer in trainers.values():
        trainer.model.train(not has_dropout)
    errs = []
    for _ in range(2):
        ours, theirs = trainers["deepkern"]().item(), trainers["torch"]().item()
        errs.append(abs(ours - theirs) / max(abs(theirs), 1e-12))
    return max(errs)


def _batch_label(name: str, resnet: ResNetSize) -> Tuple[int, str]:
    """The step's batch size and what a step is, without building anything."""
    from .. import training

    if name == "resnet18":
        return resnet.batch, f"{resnet.image}x{resnet.image} RGB, {resnet.classes} classes, SGD momentum"
    batch = int(training.RECIPES[name].defaults["batch_size"])
    what = {"digits-cnn": "8x8 digits, Adam", "char-lstm": "64 characters a sequence, Adam, clipping at 1"}
    return batch, what[name]


def train_cuda_case(name: str, device: str = "cuda", torch_device: str = "cuda", resnet: ResNetSize = RESNET) -> Case:
    """The case of one model: each call one training step (deepkern on ``device``, torch on
    ``torch_device``), the phase rows from its events; nothing is built before the first call."""
    pair = _TrainPair(name, device, torch_device, resnet)
    batch, what = _batch_label(name, resnet)
    pair.case = Case(
        op="train",
        name=f"{name} batch {batch}",
        layout="step",
        group=GROUP_STEP,
        shape=(batch,),
        flops=float("nan"),  # counted when the model is built (the first call)
        nbytes=0.0,
        make_inputs=lambda: [()],
        impls={"deepkern": pair.deepkern, "torch": pair.torch},
        check=lambda inputs: train_cuda_check(name, device, torch_device, resnet),
        label=f"one training step of {name}: {what}",
        device="cuda",
        phases=pair.phases,
    )
    return pair.case


def train_cuda_cases(quick: bool = False) -> List[Case]:
    """One case per model of TRAIN_CUDA_MODELS (``quick`` changes only the repeats)."""
    return [train_cuda_case(name) for name in TRAIN_CUDA_MODELS]


def _train_cuda_unavailable() -> Optional[str]:
    """Why the suite cannot run here, or None: it needs deepkern's GPU, PyTorch on the GPU, and
    scikit-learn (the digits)."""
    from .gemm import _cuda_unavailable

    reason = _cuda_unavailable() or torch_missing("the same models in torch.nn on the GPU")
    if reason:
        return reason
    reason = _torch_cuda_missing()
    if reason:
        return f"its reference is PyTorch on the GPU: {reason}"
    if importlib.util.find_spec("sklearn") is None:
        return 'digits-cnn trains on scikit-learn\'s digits, and scikit-learn is missing (pip install ".[train]")'
    return None


register_suite(
    Suite(
        name="train-cuda",
        description=(
            "milliseconds per training step on the GPU (3 warm-up steps, then 20 timed a round) of "
            "`deepkern train digits-cnn` and `char-lstm` and a ResNet-18-shaped CNN (64x64 images, batch "
            "128, SGD with momentum) vs the same models in PyTorch eager on the GPU from the same weights "
            "over the same batches, both FP32; then where the time goes: rows 'forward' (with the loss), "
            "'backward' and 'optimizer' (clipping, step, zero_grad), each timed between CUDA events"
        ),
        cases=train_cuda_cases,
        summary_groups=(GROUP_STEP,) + PHASES,
        unavailable=_train_cuda_unavailable,
    )
)
