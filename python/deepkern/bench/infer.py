"""The ``infer`` suite: whole-model inference (``model.eval()``, no autograd) at batch 1 and 4 beside
the same models in PyTorch eager with the same weights: the ResNet-18-shaped network of
:mod:`.models` on 224x224 images, ``deepkern train digits-cnn``'s CNN on 8x8 digits, and an
overhead row (the ResNet-18 layout at 4 channels on 16x16 input, where the kernels take next to
nothing, so its time is the per-layer Python work of each library).

deepkern runs its models as a user would for inference: ``Sequential`` fuses its adjacent layers
by itself and the ResNet's blocks are fused with ``deepkern.nn.utils.fuse_modules``
(:func:`.models.resnet18_fusion_groups`); PyTorch runs eager and unfused."""

from __future__ import annotations

import types
from typing import List

import numpy as np

from .libraries import installed_torch, torch_missing
from .models import forward_flops
from .registry import Case, Suite, register_suite
from .timing import rotation_copies

#: (model, batch sizes, batch sizes with --quick).
INFER_MODELS = (("resnet18", (1, 4), (1,)), ("digits-cnn", (1, 4), (1,)), ("resnet18-tiny", (1,), (1,)))
#: Each model's input (C, H, W) and its ResNet widths (None: the digits CNN).
_INPUTS = {"resnet18": (3, 224, 224), "digits-cnn": (1, 8, 8), "resnet18-tiny": (3, 16, 16)}
_WIDTHS = {"resnet18": None, "resnet18-tiny": (4, 4, 4, 4)}
_LABELS = {
    "resnet18": "ResNet-18 (models.resnet18), 224x224, 10 classes",
    "digits-cnn": "deepkern train digits-cnn's CNN, 8x8",
    "resnet18-tiny": "per-layer overhead: the ResNet-18 layout at 4 channels on 16x16 input",
}
#: Seed of the weights, the batch-norm statistics and the inputs.
INFER_SEED = 0


def _deepkern_model(name: str):
    """The model in deepkern, its batch norms given random statistics and affine parameters (so that
    folding them is exercised), in eval mode and fused for inference."""
    from .. import nn
    from ..random import manual_seed
    from ..training import DigitsCNN
    from .models import resnet18, resnet18_fusion_groups

    manual_seed(INFER_SEED)
    if name == "digits-cnn":
        return DigitsCNN.model().eval()
    widths = _WIDTHS[name]
    model = resnet18(nn) if widths is None else resnet18(nn, widths=widths)
    rng = np.random.default_rng(INFER_SEED)
    state = {k: v._host_array().copy() for k, v in model.state_dict().items()}  # copies: no array handed out
    for prefix, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            state[f"{prefix}.running_mean"] = 0.1 * rng.standard_normal(c)
            state[f"{prefix}.running_var"] = rng.uniform(0.5, 1.5, c)
            state[f"{prefix}.weight"] = rng.uniform(0.5, 1.5, c)
            state[f"{prefix}.bias"] = 0.1 * rng.standard_normal(c)
    model.load_state_dict(state)
    return nn.utils.fuse_modules(model.eval(), resnet18_fusion_groups(model))


def _torch_model(torch, name: str, model):
    """The PyTorch twin of ``model`` (same layers and names) with its weights copied, in eval mode."""
    from .models import resnet18
    from .train import _torch_train_model

    if name == "digits-cnn":
        twin, _ = _torch_train_model(torch, name, types.SimpleNamespace(models={"model": model}))
        return twin.eval()
    widths = _WIDTHS[name]
    twin = resnet18(torch.nn) if widths is None else resnet18(torch.nn, widths=widths)
    twin.load_state_dict({k: torch.from_numpy(v._host_array().copy()) for k, v in model.state_dict().items()})
    return twin.eval()


class _InferPair:
    """One model in deepkern and its PyTorch twin, built on first use (the warm-up)."""

    def __init__(self, name: str):
        from .. import from_numpy, no_grad

        self.name = name
        self.model = self.twin = None
        self._from_numpy, self._no_grad = from_numpy, no_grad  # not imported inside the timed call

    def deepkern_model(self):
        if self.model is None:
            self.model = _deepkern_model(self.name)
        return self.model

    def torch_model(self):
        if self.twin is None:
            self.twin = _torch_model(installed_torch(), self.name, self.deepkern_model())
        return self.twin

    def deepkern(self, x: np.ndarray):
        with self._no_grad():
            return self.deepkern_model()(self._from_numpy(x))  # no copy, as torch.from_numpy

    def torch(self, x):
        torch = installed_torch()
        with torch.no_grad():
            return self.torch_model()(x)

    def check(self, x: np.ndarray) -> float:
        """Relative error (max norm) of deepkern's output against the PyTorch twin in float64."""
        torch = installed_torch()
        got = self.deepkern(x).numpy().astype(np.float64)
        reference = _torch_model(torch, self.name, self.deepkern_model()).double()
        with torch.no_grad():
            ref = reference(torch.from_numpy(x.astype(np.float64))).numpy()
        return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))


def _infer_case(pair: _InferPair, batch: int) -> Case:
    shape = (batch,) + _INPUTS[pair.name]

    def make_inputs():
        x = np.random.default_rng(INFER_SEED).standard_normal(shape, dtype=np.float32)
        return [(x,)] + [(x.copy(),) for _ in range(rotation_copies(x.nbytes) - 1)]

    def flops() -> float:  # counted on one sample, times the batch
        import deepkern

        one = deepkern.tensor(np.zeros((1,) + shape[1:], np.float32))
        return forward_flops(pair.deepkern_model(), deepkern, one) * batch

    return Case(
        op="infer",
        name=pair.name,
        layout=f"batch {batch}",
        group=f"batch {batch}",
        shape=shape,
        flops=flops(),
        nbytes=0.0,
        make_inputs=make_inputs,
        impls={"deepkern": pair.deepkern, "torch": pair.torch},
        check=lambda inputs: pair.check(inputs[0]),
        label=_LABELS[pair.name],
    )


def infer_cases(quick: bool = False) -> List[Case]:
    """Every model of INFER_MODELS at its batch sizes (fewer with ``quick``)."""
    cases = []
    for name, batches, quick_batches in INFER_MODELS:
        pair = _InferPair(name)
        cases += [_infer_case(pair, b) for b in (quick_batches if quick else batches)]
    return cases


register_suite(
    Suite(
        name="infer",
        description=(
            "whole-model inference (eval mode, no autograd) of a ResNet-18 on 224x224 images, the digits "
            "CNN on 8x8 and an overhead row (ResNet-18 layout at 4 channels, 16x16: per-layer Python "
            "work) at batch 1 and 4, vs the same models in PyTorch eager from the same weights; deepkern "
            "fuses conv + batch norm (+ ReLU); GFLOP/s of the convolutions and linear layers"
        ),
        cases=infer_cases,
        summary_groups=("batch 1", "batch 4"),
        unavailable=lambda: torch_missing("the same models in torch.nn, eval mode, torch.no_grad"),
    )
)
