"""The ``train`` suite: one training epoch of ``deepkern train digits-cnn`` and ``sunspots-lstm`` beside the
same models in PyTorch, from the same weights over the same batches; ``train-bf16`` those epochs and the
first 24 batches of a ``char-lstm`` epoch under bfloat16 autocast (``--amp bf16``) beside
``torch.autocast``, and again in float32."""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
from typing import List, Optional

import numpy as np

from ..random import keyed_generator
from .libraries import installed_torch, torch_missing
from .registry import BF16_CHECK_TOLERANCE, CHECK_TOLERANCE, Case, Suite, register_suite

#: The recipes of ``deepkern bench --op train`` (names in :data:`deepkern.training.RECIPES`).
TRAIN_RECIPES = ("digits-cnn", "sunspots-lstm")
#: The recipes of ``deepkern bench --op train --dtype bf16``: those and char-lstm.
TRAIN_BF16_RECIPES = TRAIN_RECIPES + ("char-lstm",)
#: The batches a case times where a whole epoch is too long to repeat (char-lstm's has 204 batches of
#: 32 x 64 characters, ~20 s): the first ones of the epoch; the other recipes time whole epochs.
TIMED_BATCHES = {"char-lstm": 24}
#: Gradient-norm clipping of a recipe's step (``CharLSTM.train_epoch`` clips at 1.0).
CLIP_NORM = {"char-lstm": 1.0}
GROUP_TRAIN = "epoch"
#: The groups of ``train-bf16``: epochs under bfloat16 autocast, and the same epochs in float32.
GROUP_TRAIN_BF16, GROUP_TRAIN_F32 = "epoch amp bf16", "epoch f32"
#: Seed of the recipes' data split, shuffling and initial weights.
TRAIN_SEED = 0


def _train_recipe(name: str, amp: Optional[str] = None):
    """The recipe ``name`` built as ``deepkern train`` builds it (its default batch size, lr, data and
    optimizer; weights drawn after ``manual_seed(TRAIN_SEED)``), without a progress bar; ``amp``:
    ``deepkern train --amp`` ("bf16") or None."""
    from .. import training
    from ..random import manual_seed

    cls = training.RECIPES[name]
    cfg = training.TrainConfig(recipe=name, seed=TRAIN_SEED, progress=False, amp=amp)
    for key, value in cls.defaults.items():
        setattr(cfg, key, type(value)(value))
    manual_seed(TRAIN_SEED)
    recipe = cls(cfg)
    recipe.build()
    return recipe


def _torch_train_model(torch, name: str, recipe, state=None):
    """The recipe's model rebuilt with torch.nn (same layers, same parameter names), its weights copied
    from ``state`` (name -> NumPy array; default: the deepkern model's state_dict now, on any device)
    so both start equal; with its loss. Recipes: digits-cnn, sunspots-lstm, char-lstm (the
    ``train-cuda`` suite's)."""
    nn = torch.nn
    if name == "digits-cnn":
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(64 * 4 * 4, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )
        loss = nn.CrossEntropyLoss()
    elif name == "sunspots-lstm":
        hidden = recipe.models["model"].lstm.hidden_size

        class Sunspots(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(1, hidden, batch_first=True)
                self.head = nn.Linear(hidden, 1)

            def forward(self, x):
                out, _ = self.lstm(x)
                return self.head(out[:, -1])

        model, loss = Sunspots(), nn.MSELoss()
    elif name == "char-lstm":
        source = recipe.models["model"]

        class Char(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(source.embed.num_embeddings, source.embed.embedding_dim)
                self.lstm = nn.LSTM(source.lstm.input_size, source.lstm.hidden_size, batch_first=True)
                self.head = nn.Linear(source.lstm.hidden_size, source.head.out_features)

            def forward(self, ids, state=None):
                out, state = self.lstm(self.embed(ids), state)
                return self.head(out), state

        model, loss = Char(), nn.CrossEntropyLoss()
    else:
        raise ValueError(f"no PyTorch twin for recipe {name!r}; known: digits-cnn, sunspots-lstm, char-lstm")
    state = _initial_state(recipe) if state is None else state
    state = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    return model, loss


def _initial_state(recipe) -> dict:
    """The recipe model's weights now, as host NumPy copies (name -> array)."""
    return {k: np.array(v.cpu().numpy()) for k, v in recipe.models["model"].state_dict().items()}


def _train_arrays(recipe):
    """The recipe's training arrays (inputs, targets) and its DataLoader."""
    loader = recipe.loader
    return loader.dataset.arrays, loader


def _epoch_order(loader, epoch: int) -> np.ndarray:
    """The sample order of the deepkern DataLoader's ``epoch`` (the same draw as ``iter(loader)``)."""
    return keyed_generator(loader.seed, epoch).permutation(len(loader.dataset))


def _timed_samples(name: str, recipe) -> int:
    """The samples one timed call trains on: the whole epoch's (its ``len(loader)`` batches, the last
    one short or dropped as the loader does), or those of the first TIMED_BATCHES[name] batches."""
    loader = recipe.loader
    batches = TIMED_BATCHES.get(name, len(loader))
    return min(batches * loader.batch_size, len(loader.dataset))


def _loss_inputs(output, target):
    """A model's output and its targets as the loss takes them: char-lstm's (logits, state) as
    (positions, vocabulary) logits and its (batch, positions) targets flattened, as its recipe's
    ``_loss`` does; any other output and its targets as they are."""
    if not isinstance(output, tuple):
        return output, target
    logits = output[0]
    return logits.reshape(-1, logits.shape[-1]), target.reshape(-1)


class _TrainPair:
    """One recipe in deepkern (built once, by the case or on the first call) and its twin in PyTorch
    (built on its first call), the twin from the recipe's initial weights, copied before either
    library trains.

    Each ``deepkern()`` / ``torch()`` call trains one epoch, or its first TIMED_BATCHES[name]
    batches: the recipe's ``train_epoch`` (its DataLoader, forward, loss, backward, gradient clipping
    where the recipe clips, Adam step per batch) and the same loop in PyTorch over the same batches in
    the same order (the k-th torch epoch visits the samples in the k-th deepkern epoch's order,
    batches indexed out of the same arrays, clipping at CLIP_NORM[name], torch.optim.Adam with the
    recipe's lr). With ``amp`` ("bf16") the recipe runs as ``deepkern train --amp bf16`` and
    PyTorch's forward and loss under ``torch.autocast("cpu", dtype=torch.bfloat16)``.
    """

    def __init__(self, name: str, amp: Optional[str] = None):
        self.name = name
        self.amp = amp
        self.batches = TIMED_BATCHES.get(name)  # None: the whole epoch
        self.recipe = self.initial_state = None
        self.torch_parts = None
        self.torch_epoch = 0

    def _build(self):
        if self.recipe is None:
            self.recipe = _train_recipe(self.name, self.amp)
            self.initial_state = _initial_state(self.recipe)  # before either library trains
        return self.recipe

    def deepkern(self):
        recipe = self._build()
        return recipe.train_epoch(lambda it, n: itertools.islice(it, self.batches))

    def torch(self):
        torch = installed_torch()
        recipe = self._build()
        if self.torch_parts is None:  # built here, so that building the case needs no PyTorch
            model, loss_fn = _torch_train_model(torch, self.name, recipe, self.initial_state)
            self.torch_parts = (model, loss_fn, torch.optim.Adam(model.parameters(), lr=recipe.cfg.lr))
        model, loss_fn, opt = self.torch_parts
        (xs, ys), loader = _train_arrays(recipe)
        order = _epoch_order(loader, self.torch_epoch)
        self.torch_epoch += 1
        model.train()
        total, count, bs = 0.0, 0, loader.batch_size
        clip_norm = CLIP_NORM.get(self.name)
        for start in itertools.islice(range(0, len(loader) * bs, bs), self.batches):
            idx = order[start : start + bs]
            x, y = torch.from_numpy(xs[idx]), torch.from_numpy(ys[idx])
            opt.zero_grad()
            with _torch_autocast(torch, self.amp):
                loss = loss_fn(*_loss_inputs(model(x), y))
            loss.backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            opt.step()
            total += loss.item() * len(y)
            count += len(y)
        return {"train_loss": total / count}


def _torch_autocast(torch, amp: Optional[str]):
    """``torch.autocast`` on the CPU in bfloat16 for ``amp`` "bf16", else nothing."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if amp == "bf16" else contextlib.nullcontext()


def train_check(name: str, amp: Optional[str] = None) -> float:
    """Relative difference of deepkern's and PyTorch's losses on one batch (the recipe's first, dropout
    off) from the same weights: before a step, and after one Adam step on that batch (gradients clipped
    where the recipe clips; the larger of the two). float32 rounding gives ~1e-6; under bfloat16
    autocast (``amp``) the two libraries round differently, ~1e-3."""
    from .. import amp as deepkern_amp
    from .. import nn
    from ..tensor import Tensor

    torch = installed_torch()
    if torch is None:
        raise RuntimeError("train_check needs PyTorch")
    recipe = _train_recipe(name, amp)
    model, loss_fn = recipe.models["model"], recipe.loss
    opt = recipe.optimizers["model"]
    t_model, t_loss_fn = _torch_train_model(torch, name, recipe)
    t_opt = torch.optim.Adam(t_model.parameters(), lr=recipe.cfg.lr)
    (xs, ys), loader = _train_arrays(recipe)
    idx = _epoch_order(loader, 0)[: loader.batch_size]
    x, y = xs[idx], ys[idx]
    clip_norm = CLIP_NORM.get(name)
    model.eval()
    t_model.eval()
    errs = []
    for step in range(2):
        opt.zero_grad()
        with deepkern_amp.autocast("cpu", enabled=amp == "bf16"):
            loss = loss_fn(*_loss_inputs(model(Tensor(x)), Tensor(y)))
        t_opt.zero_grad()
        with _torch_autocast(torch, amp):
            t_loss = t_loss_fn(*_loss_inputs(t_model(torch.from_numpy(x)), torch.from_numpy(y)))
        errs.append(abs(loss.item() - t_loss.item()) / max(abs(t_loss.item()), 1e-12))
        if step == 0:
            loss.backward()
            t_loss.backward()
            if clip_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
                torch.nn.utils.clip_grad_norm_(t_model.parameters(), clip_norm)
            opt.step()
            t_opt.step()
    return max(errs)


def train_flops(name: str, recipe) -> float:
    """An estimate of the FLOP of one timed call (an epoch, or its first TIMED_BATCHES[name] batches):
    the multiply-adds of the convolutions, the LSTM's two GEMMs per step and the linear layers, forward
    counted once and the backward twice (grad input and grad weight); pointwise ops, pooling, the
    embedding lookup, the loss, the clipping and the optimizer are left out."""
    (xs, _), _ = _train_arrays(recipe)
    if name == "digits-cnn":  # 8x8 images: conv 1->32 and 32->64 3x3, 2x2 pool, linear 1024->128->10
        hw = xs.shape[2] * xs.shape[3]
        fwd = 2 * (hw * 32 * 1 * 9 + hw * 64 * 32 * 9 + (hw // 4) * 64 * 128 + 128 * 10)
    elif name == "sunspots-lstm":  # T steps of I inputs, hidden H; linear H->1
        t, i = xs.shape[1], xs.shape[2]
        h = recipe.models["model"].lstm.hidden_size
        fwd = 2 * (t * 4 * h * (i + h) + h)
    elif name == "char-lstm":  # T steps of the LSTM (embedding I -> hidden H) and the head H -> V each
        lstm, head = recipe.models["model"].lstm, recipe.models["model"].head
        t, i, h, v = xs.shape[1], lstm.input_size, lstm.hidden_size, head.out_features
        fwd = 2 * t * (4 * h * (i + h) + h * v)
    else:
        raise ValueError(f"train_flops: unknown recipe {name!r}")
    return 3.0 * fwd * _timed_samples(name, recipe)


def _train_case(name: str, amp: Optional[str] = None, op: str = "train", group: str = GROUP_TRAIN) -> Case:
    pair = _TrainPair(name, amp)
    recipe = pair._build()  # the data and the model, drawn once with fixed seeds
    samples = _timed_samples(name, recipe)
    first = f"first {pair.batches} batches" if pair.batches else ""
    clip = f", gradients clipped at norm {CLIP_NORM[name]}" if name in CLIP_NORM else ""
    return Case(
        op=op,
        name=name,
        layout=" ".join(filter(None, (f"batch {recipe.cfg.batch_size}", first, amp))),
        group=group,
        shape=(samples,),
        flops=train_flops(name, recipe),
        nbytes=0.0,
        make_inputs=lambda: [()],
        impls={"deepkern": pair.deepkern, "torch": pair.torch},
        check=lambda inputs: train_check(name, amp),
        tolerance=BF16_CHECK_TOLERANCE if amp else CHECK_TOLERANCE,
        label=f"{'the ' + first + ' of an' if first else 'one'} epoch of deepkern train {name}"
        f"{' --amp ' + amp if amp else ''}: {samples} samples, Adam lr {recipe.cfg.lr}{clip}",
    )


def train_cases(quick: bool = False) -> List[Case]:
    """One case per recipe of TRAIN_RECIPES: one training epoch (``quick`` changes only the repeats)."""
    return [_train_case(name) for name in TRAIN_RECIPES]


def train_bf16_cases(quick: bool = False) -> List[Case]:
    """Per recipe of TRAIN_BF16_RECIPES: one epoch (or its first TIMED_BATCHES batches) under bfloat16
    autocast, then the same in float32."""
    return [
        _train_case(name, amp, "train-bf16", group)
        for name in TRAIN_BF16_RECIPES
        for amp, group in (("bf16", GROUP_TRAIN_BF16), (None, GROUP_TRAIN_F32))
    ]


def _train_unavailable() -> Optional[str]:
    reason = torch_missing("the same models in torch.nn, trained with torch.optim.Adam")
    if reason:
        return reason
    missing = [name for name in ("sklearn", "statsmodels") if importlib.util.find_spec(name) is None]
    if missing:
        return (
            f"the recipes' data ship with scikit-learn and statsmodels; missing: {', '.join(missing)} "
            '(pip install ".[train]")'
        )
    return None


register_suite(
    Suite(
        name="train",
        description=(
            "seconds per training epoch (forward, loss, backward, Adam step over the training set, the "
            "recipe's batch size and data order) of `deepkern train digits-cnn` and `sunspots-lstm` vs the "
            "same models in torch.nn/torch.optim from the same weights; the table's 'ms' is ms per epoch "
            "and xtorch = torch epoch / deepkern epoch (> 1: deepkern trains faster); GFLOP/s from an "
            "estimate of the epoch's conv/LSTM/linear FLOP (deepkern.bench.train.train_flops), %peak/%roof "
            "against the FMA peak"
        ),
        cases=train_cases,
        summary_groups=(GROUP_TRAIN,),
        unavailable=_train_unavailable,
    )
)

register_suite(
    Suite(
        name="train-bf16",
        description=(
            "seconds per training epoch as in the train suite (digits-cnn, sunspots-lstm) and per first "
            f"{TIMED_BATCHES['char-lstm']} batches of a `deepkern train char-lstm` epoch (32 x 64 "
            f"characters a batch, gradients clipped at norm {CLIP_NORM['char-lstm']} on both sides), under "
            "bfloat16 autocast (`deepkern train --amp bf16`: parameters, gradients and Adam in float32) "
            "beside torch.autocast('cpu', bfloat16), then the same in float32; the float32 row's deepkern "
            "ms over the bf16 row's is what autocast gains"
        ),
        cases=train_bf16_cases,
        summary_groups=(GROUP_TRAIN_BF16, GROUP_TRAIN_F32),
        unavailable=_train_unavailable,
        in_all=False,
    )
)
