"""``deepkern train``: four recipes that train real models on data shipped inside installed
packages (nothing is downloaded), on deepkern's network API end to end.

* ``digits-cnn``: a small CNN on scikit-learn's 8x8 handwritten digits (test accuracy).
* ``sunspots-lstm``: an LSTM forecasting statsmodels' yearly sunspot numbers one year ahead
  (test MSE beside the persistence baseline, "next year = this year").
* ``char-lstm``: a character-level LSTM language model on the Python reference's help topics
  (validation loss beside the corpus's unigram entropy, and a generated sample).
* ``digits-gan``: an MLP GAN on the digits (a grid of generated samples).

Each recipe is a class with ``build`` (models, optimizers, data), ``train_epoch`` and
``evaluate``, and runs on ``cfg.device`` (any device deepkern has a backend for: the models are
moved there after ``build`` and each batch as it is drawn); :func:`train` runs the epochs with a
progress bar and a line of metrics per epoch, checkpoints (``deepkern.save``) after every epoch,
resumes from a checkpoint so the run continues the same trajectory, and plots the curves (or the
GAN's samples) with matplotlib.

Launched under MPI (``mpiexec -n N deepkern train ...``, or ``deepkern train --nproc N``), the run is
data-parallel: every rank draws the same global batches (the ``--batch-size``, in the order a single
process draws them), trains on its share of each batch's rows, and DistributedDataParallel averages
the gradients, weighted so that each step is the single-process step on the whole batch. Only rank 0
prints, plots and writes checkpoints; a checkpoint holds the unwrapped models, so it resumes on any
number of ranks.

A resume keeps what defines the run from the checkpoint (recipe, batch size, learning rate, seed:
the model, the data and its order, the optimizer) and refuses a different value with
:class:`ResumeError`; it may change the number of epochs (more than those done), the device, the
mixed precision (``amp`` is not kept: a resume without it runs in float32) and the output paths.
Learning-rate schedules are a function of the total number of epochs: a resumed run uses, from the
epoch reached on, the learning rates a run of the new total uses at those epochs.

With ``TrainConfig.amp = "bf16"`` (``deepkern train ... --amp bf16``) the forward passes and the
losses, in training and evaluation, run under :class:`deepkern.autocast` on the run's device:
bfloat16 GEMMs with float32 master weights, gradients and optimizer steps (see
:mod:`deepkern.amp`). A layer without a bfloat16 kernel stops the run with a ValueError naming it.

A recipe with ``supports_federated`` (digits-cnn) also trains federated (``TrainConfig.federated``,
``deepkern train digits-cnn --federated``): :mod:`deepkern.federated`'s FedAvg, or FedProx, over its
training set split among clients, evaluating the global model after every round; the clients are
simulated in one process, or, under ``mpiexec`` (``--nproc N``), trained on the ranks
(:class:`deepkern.federated.MPIRunner`: rank 0 is the server), with the same global model (to
the rounding of the kernels' sums, which depends on the threads per process).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import os
import sys
import time
from io import StringIO
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional

import numpy as np

from . import amp, backends, data, distributed, io, nn, optim
from .autograd import no_grad
from .backends import Device
from .random import get_generator, get_philox_state, manual_seed, set_philox_state
from .tensor import from_numpy, full, randn, zeros

__all__ = ["RECIPES", "FederatedConfig", "ResumeError", "TrainConfig", "train"]


@dataclasses.dataclass
class FederatedConfig:
    """A federated run: ``rounds`` rounds of FedAvg over ``clients`` clients holding an IID split
    of the training set, or, with ``dirichlet_alpha``, a label-skewed Dirichlet(alpha) split; each
    round a seeded ``client_fraction`` of them train ``local_epochs`` epochs from the global weights
    with a fresh Adam (the run's batch size and learning rate, no schedule); ``fedprox_mu`` adds
    FedProx's proximal term ``mu / 2 * ||w - w_global||^2`` to their loss."""

    clients: int = 20
    rounds: int = 10
    local_epochs: int = 1
    dirichlet_alpha: Optional[float] = None
    client_fraction: float = 1.0
    fedprox_mu: Optional[float] = None


@dataclasses.dataclass
class TrainConfig:
    """Options of one run; ``None`` takes the checkpoint's value when resuming, else the recipe's
    default (seed: 0)."""

    recipe: str
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    seed: Optional[int] = None
    device: str = "cpu"
    checkpoint: Optional[str] = None
    resume: Optional[str] = None
    plot: Optional[str] = None
    progress: bool = True
    federated: Optional[FederatedConfig] = None
    amp: Optional[str] = None  # "bf16": mixed precision (see the module's documentation)


AMP_CHOICES = ("bf16",)


def _full_batches(loader):
    """``loader``, refused when its batch size is larger than the training set (no full batch)."""
    if loader.batch_size > len(loader.dataset):
        raise ValueError(
            f"batch size {loader.batch_size} is larger than the training set ({len(loader.dataset)} samples): "
            "no full batch to train on"
        )
    return loader


class Recipe:
    """A model, its data and its training step. Subclasses set ``name``, ``defaults`` and
    implement ``build``, ``train_epoch`` and ``evaluate``, and ``schedule`` if they have a
    learning-rate schedule; ``models`` and ``optimizers`` (dicts by name) are what a checkpoint
    holds, with the random generator's state, the epoch reached, the history and the config.
    Recipes with ``supports_federated`` have ``train_set`` (a TensorDataset of inputs and class
    ids), ``loss`` and one model, so that a federated run can split the one and train the other."""

    name = ""
    description = ""
    defaults: Dict[str, float] = {}
    plot_metrics: List[List[str]] = []
    supports_federated = False

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.device = Device(cfg.device)
        self.models: Dict[str, nn.Module] = {}
        self.optimizers: Dict[str, optim.Optimizer] = {}
        self.schedulers: Dict[str, optim.lr_scheduler.LRScheduler] = {}
        self.loaders: List[data.DataLoader] = []
        self.parallel: Dict[str, nn.Module] = {}  # the models wrapped for data-parallel training
        self.rank, self.world = 0, 1

    def net(self, name: str = "model") -> nn.Module:
        """The model to train: ``models[name]``, wrapped in DistributedDataParallel on several ranks."""
        return self.parallel.get(name, self.models[name])

    def shard(self, *batch) -> tuple:
        """This rank's rows of a global batch (Tensors of equal length, split as evenly as possible)
        and its share of the batch (rows / batch rows); in one process, the batch and 1.0. A rank
        whose part would be empty gets the first row and share 0 (its gradient then counts as zero)."""
        if self.world == 1:
            return batch, 1.0
        n = len(batch[0])
        lo, hi = n * self.rank // self.world, n * (self.rank + 1) // self.world
        if hi == lo:
            return tuple(t[:1] for t in batch), 0.0
        return tuple(t[lo:hi] for t in batch), (hi - lo) / n

    def scaled(self, loss, share: float):
        """``loss`` (a mean over this rank's rows) weighted so that the gradient DistributedDataParallel
        averages over the ranks is the whole batch's mean; ``loss`` itself in one process."""
        return loss if self.world == 1 else loss * (share * self.world)

    def sum_over_ranks(self, values: Dict[str, float]) -> Dict[str, float]:
        """``values`` summed over the ranks (as they are in one process)."""
        if self.world == 1:
            return values
        from . import distributed

        summed = np.array(list(values.values()), np.float64)
        distributed.all_reduce(summed)
        return dict(zip(values, summed.tolist()))

    def autocast(self):
        """The region the forward passes and losses run in: :class:`deepkern.autocast` on the run's
        device with ``cfg.amp``, else none."""
        if self.cfg.amp is None:
            return contextlib.nullcontext()
        return amp.autocast(self.device.type)

    def build(self) -> None:
        """Creates ``models``, ``optimizers``, the data and ``loaders`` from ``cfg``."""
        raise NotImplementedError

    def schedule(self) -> Dict[str, optim.lr_scheduler.LRScheduler]:
        """The learning-rate schedulers by optimizer name, spanning ``cfg.epochs`` epochs and
        stepped once per epoch, created on optimizers whose learning rate is the initial one."""
        return {}

    def train_epoch(self, progress: Callable) -> Dict[str, float]:
        raise NotImplementedError

    def fit_epoch(self, progress: Callable, batch_loss: Callable, clip_norm: Optional[float] = None) -> float:
        """One pass of ``net()`` over ``self.loader`` (zero_grad, ``batch_loss(x, y)`` on this rank's
        rows, backward, optional gradient-norm clipping, optimizer step); the mean loss per sample."""
        model, opt = self.net(), self.optimizers["model"]
        model.train()
        sums = {"loss": 0.0, "count": 0.0}
        for batch in progress(self.loader, len(self.loader)):
            (x, y), share = self.shard(*batch)
            x, y = x.to(self.device), y.to(self.device)
            opt.zero_grad()
            with self.autocast():
                loss = batch_loss(x, y)
            self.scaled(loss, share).backward()
            if clip_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            opt.step()
            rows = len(y) if share else 0
            sums["loss"] += loss.item() * rows
            sums["count"] += rows
        sums = self.sum_over_ranks(sums)
        return sums["loss"] / sums["count"]

    def evaluate(self) -> Dict[str, float]:
        return {}

    def summary(self, history: List[Dict[str, float]]) -> List[str]:
        return []

    def plot(self, history: List[Dict[str, float]], path: str) -> None:
        _plot_curves(history, self.plot_metrics, f"deepkern train {self.name}", path)


# ---------------------------------------------------------------------------------------------
# digits-cnn
# ---------------------------------------------------------------------------------------------


class DigitsCNN(Recipe):
    name = "digits-cnn"
    description = "CNN on scikit-learn's 8x8 digits; reports test accuracy"
    defaults = {"epochs": 20, "batch_size": 32, "lr": 2e-3}
    plot_metrics = [["train_loss", "test_loss"], ["test_acc"]]
    supports_federated = True

    @staticmethod
    def model() -> nn.Module:
        return nn.Sequential(
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

    def build(self):
        self.train_set = data.digits(train=True, seed=self.cfg.seed)
        self.test_set = data.digits(train=False, seed=self.cfg.seed)
        self.loader = _full_batches(
            data.DataLoader(self.train_set, self.cfg.batch_size, shuffle=True, seed=self.cfg.seed)
        )
        self.loaders = [self.loader]
        self.models["model"] = self.model()
        self.optimizers["model"] = optim.Adam(self.models["model"].parameters(), lr=self.cfg.lr)
        self.loss = nn.CrossEntropyLoss()

    def schedule(self):
        return {"model": optim.lr_scheduler.CosineAnnealingLR(self.optimizers["model"], self.cfg.epochs)}

    def train_epoch(self, progress):
        return {"train_loss": self.fit_epoch(progress, lambda x, y: self.loss(self.net()(x), y))}

    def evaluate(self):
        model = self.models["model"]
        model.eval()
        x, y = (from_numpy(a).to(self.device) for a in self.test_set.arrays)
        with no_grad():
            logits = model(x)
            loss = self.loss(logits, y).item()
        acc = float((logits.argmax(1).cpu().numpy() == y.cpu().numpy()).mean())
        return {"test_loss": loss, "test_acc": acc}

    def summary(self, history):
        return [f"test accuracy {history[-1]['test_acc'] * 100:.2f}% on {len(self.test_set)} held-out digits"]


# ---------------------------------------------------------------------------------------------
# sunspots-lstm
# ---------------------------------------------------------------------------------------------


class SunspotsModel(nn.Module):
    """LSTM over a window of yearly values, a linear head on its last output."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class SunspotsLSTM(Recipe):
    name = "sunspots-lstm"
    description = "LSTM forecasting yearly sunspots one year ahead; test MSE vs persistence"
    defaults = {"epochs": 60, "batch_size": 16, "lr": 5e-3}
    plot_metrics = [["train_mse", "test_mse", "persistence_mse"]]

    def build(self):
        self.series = data.sunspots(window=20)
        self.loader = _full_batches(
            data.DataLoader(self.series.train, self.cfg.batch_size, shuffle=True, seed=self.cfg.seed)
        )
        self.loaders = [self.loader]
        self.models["model"] = SunspotsModel()
        self.optimizers["model"] = optim.Adam(self.models["model"].parameters(), lr=self.cfg.lr)
        self.loss = nn.MSELoss()

    def train_epoch(self, progress):
        return {"train_mse": self.fit_epoch(progress, lambda x, y: self.loss(self.net()(x), y))}

    def evaluate(self):
        model = self.models["model"]
        model.eval()
        x, y = (from_numpy(a).to(self.device) for a in self.series.test.arrays)
        with no_grad():
            mse = self.loss(model(x), y).item()
        return {"test_mse": mse, "persistence_mse": self.series.persistence_mse("test")}

    def summary(self, history):
        last = history[-1]
        units = self.series.std**2
        return [
            f"test MSE {last['test_mse']:.4f} vs persistence baseline {last['persistence_mse']:.4f} "
            f"(normalised units; {last['test_mse'] * units:.0f} vs {last['persistence_mse'] * units:.0f} "
            f"in sunspot numbers squared): {last['test_mse'] / last['persistence_mse']:.2f}x the baseline"
        ]


# ---------------------------------------------------------------------------------------------
# char-lstm
# ---------------------------------------------------------------------------------------------


class CharModel(nn.Module):
    """Embedding -> LSTM -> linear logits over the vocabulary, at every position."""

    def __init__(self, vocab: int, embed: int = 48, hidden: int = 256):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids, state=None):
        out, state = self.lstm(self.embed(ids), state)
        return self.head(out), state


class CharLSTM(Recipe):
    name = "char-lstm"
    description = "character-level LSTM on the Python docs' help topics; loss vs unigram entropy, sample"
    defaults = {"epochs": 6, "batch_size": 32, "lr": 4e-3}
    plot_metrics = [["train_loss", "val_loss", "unigram_entropy"]]
    seq_len = 64
    sample_chars = 400

    def build(self):
        self.corpus = data.char_corpus(seq_len=self.seq_len)
        self.loader = _full_batches(
            data.DataLoader(self.corpus.train, self.cfg.batch_size, shuffle=True, drop_last=True, seed=self.cfg.seed)
        )
        self.loaders = [self.loader]
        self.models["model"] = CharModel(self.corpus.vocab_size)
        self.optimizers["model"] = optim.Adam(self.models["model"].parameters(), lr=self.cfg.lr)
        self.loss = nn.CrossEntropyLoss()

    def _loss(self, ids, targets, model=None):
        logits, _ = (model or self.net())(ids)
        return self.loss(logits.reshape(-1, self.corpus.vocab_size), targets.reshape(-1))

    def train_epoch(self, progress):
        return {"train_loss": self.fit_epoch(progress, self._loss, clip_norm=1.0)}

    def evaluate(self):
        self.models["model"].eval()
        ids, targets = (from_numpy(np.ascontiguousarray(a)).to(self.device) for a in self.corpus.val.arrays)
        losses = []
        with no_grad():
            for start in range(0, len(ids), 256):
                losses.append(
                    self._loss(ids[start : start + 256], targets[start : start + 256], self.models["model"]).item()
                    * len(ids[start : start + 256])
                )
        return {"val_loss": sum(losses) / len(ids), "unigram_entropy": self.corpus.unigram_entropy()}

    def sample(self, prompt: str = "The ", n: int = 400, temperature: float = 0.8) -> str:
        """``n`` characters generated after ``prompt``, one step of the LSTM per character."""
        model = self.models["model"]
        model.eval()
        rng = np.random.default_rng(self.cfg.seed)
        out = list(prompt)
        with no_grad():
            logits, state = model(from_numpy(self.corpus.encode(prompt)[None]).to(self.device))
            for _ in range(n):
                z = logits.cpu().numpy()[0, -1].astype(np.float64) / temperature
                p = np.exp(z - z.max())
                nxt = int(rng.choice(len(p), p=p / p.sum()))
                out.append(self.corpus.vocab[nxt])
                logits, state = model(from_numpy(np.array([[nxt]], np.int64)).to(self.device), state)
        return "".join(out)

    def summary(self, history):
        last = history[-1]
        return [
            f"validation loss {last['val_loss']:.3f} nats/char vs unigram entropy "
            f"{last['unigram_entropy']:.3f} ({last['val_loss'] / last['unigram_entropy']:.2f}x)",
            "sample:\n" + self.sample(n=self.sample_chars),
        ]


# ---------------------------------------------------------------------------------------------
# digits-gan
# ---------------------------------------------------------------------------------------------


class DigitsGAN(Recipe):
    name = "digits-gan"
    description = "MLP GAN on the 8x8 digits; --plot draws a grid of generated samples"
    defaults = {"epochs": 300, "batch_size": 64, "lr": 1e-3}
    latent = 32

    def build(self):
        images = np.concatenate(
            [
                data.digits(train=True, seed=self.cfg.seed).arrays[0],
                data.digits(train=False, seed=self.cfg.seed).arrays[0],
            ]
        )
        self.images = images.reshape(len(images), 64) * 2 - 1  # [-1, 1], the generator's tanh range
        self.loader = _full_batches(
            data.DataLoader(
                data.TensorDataset(self.images), self.cfg.batch_size, shuffle=True, drop_last=True, seed=self.cfg.seed
            )
        )
        self.loaders = [self.loader]
        self.models["generator"] = nn.Sequential(
            nn.Linear(self.latent, 128),
            nn.LeakyReLU(0.2),
            nn.Linear(128, 256),
            nn.LeakyReLU(0.2),
            nn.Linear(256, 64),
            nn.Tanh(),
        )
        self.models["discriminator"] = nn.Sequential(
            nn.Linear(64, 256),
            nn.LeakyReLU(0.2),
            nn.Dropout(0.3),
            nn.Linear(256, 128),
            nn.LeakyReLU(0.2),
            nn.Linear(128, 1),
        )
        for name, model in self.models.items():
            self.optimizers[name] = optim.Adam(model.parameters(), lr=self.cfg.lr, betas=(0.5, 0.999))
        self.loss = nn.BCEWithLogitsLoss()
        self.fixed_noise = randn(64, self.latent, generator=np.random.default_rng(self.cfg.seed), device=self.device)

    def train_epoch(self, progress):
        gen, disc = self.net("generator"), self.net("discriminator")
        opt_g, opt_d = self.optimizers["generator"], self.optimizers["discriminator"]
        gen.train()
        disc.train()
        sums = {"d_loss": 0.0, "g_loss": 0.0, "d_real": 0.0, "d_fake": 0.0, "steps": 0.0}
        for (real,) in progress(self.loader, len(self.loader)):
            noise = randn(len(real), self.latent)  # the whole batch's: the same draws as one process
            (real, noise), share = self.shard(real, noise)
            real, noise = real.to(self.device), noise.to(self.device)
            n = len(real)
            real_labels, fake_labels = full((n, 1), 0.9, device=self.device), zeros(n, 1, device=self.device)
            with self.autocast():
                fake = gen(noise)
            # Discriminator: real -> 0.9 (one-sided label smoothing), generated -> 0.
            opt_d.zero_grad()
            with self.autocast():
                d_real, d_fake = disc(real), disc(fake.detach())
                d_loss = self.loss(d_real, real_labels) + self.loss(d_fake, fake_labels)
            self.scaled(d_loss, share).backward()
            opt_d.step()
            # Generator: make the discriminator call its samples real.
            opt_g.zero_grad()
            with self.autocast():
                g_loss = self.loss(disc(fake), full((n, 1), 1.0, device=self.device))
            self.scaled(g_loss, share).backward()
            opt_g.step()
            sums["d_loss"] += d_loss.item() * share
            sums["g_loss"] += g_loss.item() * share
            sums["d_real"] += float(_sigmoid(d_real.detach().float().cpu().numpy()).mean()) * share
            sums["d_fake"] += float(_sigmoid(d_fake.detach().float().cpu().numpy()).mean()) * share
            sums["steps"] += share
        sums = self.sum_over_ranks(sums)
        steps = sums.pop("steps")
        return {k: v / steps for k, v in sums.items()}

    def samples(self) -> np.ndarray:
        """64 generated digits (64, 8, 8) in [0, 1] from a fixed set of latent vectors."""
        gen = self.models["generator"]
        gen.eval()
        with no_grad():
            return (gen(self.fixed_noise).cpu().numpy().reshape(-1, 8, 8) + 1) / 2

    def plot(self, history, path):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(8, 8, figsize=(6, 6))
        for img, ax in zip(self.samples(), axes.flat):
            ax.imshow(img, cmap="gray_r", vmin=0, vmax=1)
            ax.axis("off")
        fig.suptitle(f"deepkern train digits-gan: samples after {len(history)} epochs")
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def summary(self, history):
        last = history[-1]
        return [
            f"discriminator: D(real) {last['d_real']:.2f}, D(generated) {last['d_fake']:.2f}; "
            "--plot PATH draws the generated digits"
        ]


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


RECIPES: Dict[str, type] = {r.name: r for r in (DigitsCNN, SunspotsLSTM, CharLSTM, DigitsGAN)}


# ---------------------------------------------------------------------------------------------
# The loop: epochs, progress, checkpoints, plots
# ---------------------------------------------------------------------------------------------


def _plot_curves(history, panels, title, path, x="epoch"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h[x] for h in history]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, names in zip(axes[0], panels):
        for name in names:
            ax.plot(epochs, [h[name] for h in history], label=name, marker="." if len(epochs) < 30 else None)
        ax.set_xlabel(x)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class ResumeError(ValueError):
    """``--resume`` with options that the checkpoint contradicts (another recipe, another batch
    size, learning rate or seed, no epochs left to train); the command exits with code 2."""


#: What a resume keeps from the checkpoint: the options that define the model's data and its
#: order, the optimizer and the schedule's base. Given with ``--resume``, they must be equal.
KEPT_OPTIONS = ("batch_size", "lr", "seed")
#: The keys of a checkpoint that :func:`train` writes.
CHECKPOINT_KEYS = ("recipe", "epoch", "models", "optimizers", "generator", "history", "config")


def _state(recipe: Recipe, epoch: int, history) -> dict:
    """The checkpoint after ``epoch``: everything a resume restores (schedulers are rebuilt from
    the config and the epoch, see :func:`_schedulers`)."""
    cfg = recipe.cfg
    return {
        "recipe": recipe.name,
        "epoch": epoch,
        "models": {k: m.state_dict() for k, m in recipe.models.items()},
        "optimizers": {k: o.state_dict() for k, o in recipe.optimizers.items()},
        "generator": get_generator().bit_generator.state,
        "philox": list(get_philox_state()),  # dropout's stream (seed, offset)
        "history": history,
        "config": {
            "epochs": cfg.epochs,
            "device": cfg.device,
            "amp": cfg.amp,
            **{k: getattr(cfg, k) for k in KEPT_OPTIONS},
        },
    }


def _load_checkpoint(cfg: TrainConfig) -> tuple:
    """Reads ``cfg.resume`` and settles ``cfg`` against it before anything is built: options left
    to None take the checkpoint's values; a kept option with another value, another recipe or no
    epochs left raise :class:`ResumeError`. Returns (the checkpoint, the line announcing the
    resume: what it keeps and what changed)."""
    path = cfg.resume
    state = io.load(path)
    _check_checkpoint(state, path)
    if state["recipe"] != cfg.recipe:
        hint = (
            f"resume it with `deepkern train {state['recipe']} --resume {path}`"
            if state["recipe"] in RECIPES
            else f"deepkern train has no recipe {state['recipe']!r}"
        )
        raise ResumeError(
            f"--resume {path}: the checkpoint is of recipe {state['recipe']!r}, not {cfg.recipe!r}; {hint}"
        )
    saved, done = state["config"], int(state["epoch"])
    for key in KEPT_OPTIONS:
        given = getattr(cfg, key)
        if given is not None and given != saved[key]:
            option = "--" + key.replace("_", "-")
            raise ResumeError(
                f"{option} {given}: the checkpoint {path} was trained with {option} {saved[key]}, which a "
                f"resumed run keeps; leave out {option}, or start a new run without --resume"
            )
        setattr(cfg, key, saved[key])
    planned = saved.get("epochs", done)
    if cfg.epochs is not None and cfg.epochs <= done:
        raise ResumeError(
            f"--epochs {cfg.epochs}: the checkpoint {path} has trained {done} epochs already; "
            f"give --epochs above {done} to train further"
        )
    if cfg.epochs is None and planned <= done:
        raise ResumeError(
            f"--resume {path}: the checkpoint has trained all its {planned} epochs; "
            f"give --epochs above {done} to train further"
        )
    cfg.epochs = cfg.epochs or planned
    changed = [
        f"{name} {saved[name]} -> {now}"
        for name, now in (("epochs", cfg.epochs), ("device", cfg.device), ("amp", cfg.amp))
        if saved.get(name, now) != now
    ]
    kept = ", ".join(f"{k} {saved[k]}" for k in KEPT_OPTIONS)
    announce = (
        f"resuming {cfg.recipe} from {path} after epoch {done}: kept {kept}; "
        f"changed {', '.join(changed) if changed else 'nothing'}"
    )
    return state, announce


#: The type of each entry of a checkpoint that :func:`train` writes, as a resume checks it.
CHECKPOINT_TYPES = {
    "recipe": str,
    "models": dict,
    "optimizers": dict,
    "generator": dict,
    "history": list,
    "config": dict,
}


def _check_checkpoint(state: dict, path) -> None:
    """Raises ValueError naming what a loaded ``state`` lacks of a checkpoint that :func:`train`
    writes, or the first entry of another type or value (a file edited by hand, or another program's):
    the keys, their types, a whole epoch count >= 0, and the config's options by the command line's
    rules (:func:`_check_numbers`)."""

    def refuse(what: str):
        raise ValueError(f"--resume {path}: not a checkpoint of deepkern train ({what})")

    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        refuse(f"missing {', '.join(missing)}")
    for key, kind in CHECKPOINT_TYPES.items():
        if not isinstance(state[key], kind):
            refuse(f"{key} is a {type(state[key]).__name__}, not a {kind.__name__}")
    epoch = state["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
        refuse(f"epoch must be a whole number >= 0, got {epoch!r}")
    for i, entry in enumerate(state["history"]):
        numeric = isinstance(entry, dict) and all(
            isinstance(k, str) and isinstance(v, numbers.Real) and not isinstance(v, bool) for k, v in entry.items()
        )
        if not numeric:
            refuse(f"history[{i}] must map metric names to numbers, got {entry!r:.80}")
    saved = state["config"]
    missing = [f"config.{k}" for k in KEPT_OPTIONS if k not in saved]
    if missing:
        refuse(f"missing {', '.join(missing)}")
    try:
        _check_numbers(SimpleNamespace(epochs=saved.get("epochs"), resume=None, **{k: saved[k] for k in KEPT_OPTIONS}))
    except ValueError as err:
        refuse(f"config.{err}")


def _restore(recipe: Recipe, state: dict, path) -> tuple:
    """Loads the checkpoint ``state`` (read from ``path``) into the recipe's models, optimizers, random
    generator and data loaders; returns (epochs done, history). An entry the models or optimizers
    cannot take is a ValueError naming it."""
    for kind, targets in (("models", recipe.models), ("optimizers", recipe.optimizers)):
        for k, target in targets.items():
            if k not in state[kind]:
                raise ValueError(f"--resume {path}: the checkpoint has no {kind}[{k!r}] (it has {sorted(state[kind])})")
            try:
                target.load_state_dict(state[kind][k])
            except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
                raise ValueError(f"--resume {path}: {kind}[{k!r}] does not load: {type(err).__name__}: {err}") from None
    try:
        get_generator().bit_generator.state = state["generator"]
        if "philox" in state:  # checkpoints written before dropout drew from Philox lack it
            set_philox_state(tuple(int(v) for v in state["philox"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"--resume {path}: its random generators' state does not load: {err}") from None
    done = int(state["epoch"])
    for loader in recipe.loaders:
        loader.epoch = done
    return done, list(state["history"])


def _schedulers(recipe: Recipe, done: int) -> dict:
    """The recipe's schedulers over ``cfg.epochs`` epochs, stepped ``done`` times: the learning
    rates that a run of ``cfg.epochs`` epochs uses from epoch ``done + 1`` on, computed by the same
    steps (so a resume with the planned epochs continues the run bit for bit)."""
    for opt in recipe.optimizers.values():
        for group in opt.param_groups:
            group["lr"] = group.pop("initial_lr", group["lr"])
    schedulers = recipe.schedule()
    for sched in schedulers.values():
        for _ in range(done):
            sched.step()
    return schedulers


def _join_mpi_job(cfg: TrainConfig) -> tuple:
    """(rank, world size): (0, 1) in a single process; under an MPI launch of several processes the
    default process group is initialized (once) and ``cfg.device`` must be the CPU."""
    if distributed.launched_world_size() == 1 and not distributed.is_initialized():
        return 0, 1
    if not distributed.is_initialized():
        distributed.init_process_group("mpi")
    world = distributed.get_world_size()
    if world > 1 and Device(cfg.device).type != "cpu":
        raise ValueError(f"--device {cfg.device}: data-parallel training runs on the CPU (MPI collectives)")
    local = int(os.environ.get("MPI_LOCALNRANKS", os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE", "1")))
    if world > 1 and "OMP_NUM_THREADS" not in os.environ:  # the ranks on one machine share its cores
        import deepkern

        deepkern.set_num_threads(max(1, deepkern.usable_cpus() // local))
    return distributed.get_rank(), world


@contextlib.contextmanager
def _amp_errors(cfg: TrainConfig):
    """A layer's TypeError for bfloat16 (no bfloat16 kernel) under ``--amp`` as a ValueError naming
    the option."""
    try:
        yield
    except TypeError as err:
        if cfg.amp is None or "bfloat16" not in str(err):
            raise
        raise ValueError(f"--amp {cfg.amp}: recipe {cfg.recipe} has a layer without a bfloat16 kernel: {err}") from err


def _report(unit: str, index: int, total: int, metrics: dict, t0: float, out) -> dict:
    """Prints the line of epoch (or round) ``index`` of ``total``, begun at ``t0``; returns its
    history entry: ``{unit: index, metric: float, ..., "seconds": ...}``."""
    metrics = {unit: index, **{k: float(v) for k, v in metrics.items()}, "seconds": time.perf_counter() - t0}
    print(
        f"{unit} {index:3d}/{total}  "
        + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k not in (unit, "seconds"))
        + f"  ({metrics['seconds']:.1f} s)",
        file=out,
        flush=True,
    )
    return metrics


def _check_numbers(cfg: TrainConfig) -> None:
    """The numeric options as the command line checks them: positive integer epochs and batch size,
    a finite positive learning rate, a seed >= 0, a non-empty resume path (ValueError naming the option)."""
    for name, minimum in (("epochs", 1), ("batch_size", 1), ("seed", 0)):
        value = getattr(cfg, name)
        integer = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if value is not None and not (integer and value >= minimum):
            raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if cfg.lr is not None and (
        isinstance(cfg.lr, bool) or not isinstance(cfg.lr, numbers.Real) or not 0 < cfg.lr < math.inf
    ):
        raise ValueError(f"lr: expected a finite positive number, got {cfg.lr!r}")
    if cfg.resume == "":
        raise ValueError("resume: an empty path; give the checkpoint to continue")


def train(cfg: TrainConfig, out=None) -> dict:
    """Runs ``cfg.recipe``, or resumes ``cfg.resume``; prints a line per epoch and a summary;
    returns ``{"history": [...], "summary": [...], "seconds": ..., "recipe": ..., "rank": ...}``
    (under MPI, only rank 0 prints, evaluates and writes; see the module's documentation). Raises
    :class:`ResumeError` (a ValueError) for options that contradict the checkpoint."""
    out = out or sys.stdout
    if cfg.recipe not in RECIPES:
        raise ValueError(f"unknown recipe {cfg.recipe!r}; available: {', '.join(RECIPES)}")
    try:
        backends.get(Device(cfg.device))
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"--device {cfg.device}: {err}") from None
    if cfg.amp is not None and (cfg.amp not in AMP_CHOICES or Device(cfg.device).type not in ("cpu", "cuda")):
        raise ValueError(
            f"--amp {cfg.amp}: mixed precision is {', '.join(AMP_CHOICES)} on a cpu or cuda device "
            f"(--device {cfg.device})"
        )
    _check_numbers(cfg)
    if cfg.plot is not None and not str(cfg.plot).lower().endswith(".png"):
        raise ValueError(f"--plot {cfg.plot}: the plot is written as PNG; give a path ending in .png")
    if cfg.federated is not None:
        _check_federated(cfg)
    checkpoint, announce = _load_checkpoint(cfg) if cfg.resume else (None, "")
    cls = RECIPES[cfg.recipe]
    for key, value in cls.defaults.items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, type(value)(value))
    if cfg.seed is None:
        cfg.seed = 0
    rank, world = _join_mpi_job(cfg)
    if rank != 0:  # only rank 0 speaks and writes
        out, cfg.checkpoint, cfg.plot = StringIO(), None, None
    manual_seed(cfg.seed)
    recipe = cls(cfg)
    recipe.rank, recipe.world = rank, world
    recipe.build()
    for model in recipe.models.values():
        model.to(recipe.device)
    if cfg.federated is not None:
        return _train_federated(recipe, out)
    done, history = 0, []
    if checkpoint is not None:
        done, history = _restore(recipe, checkpoint, cfg.resume)
        print(announce, file=out, flush=True)
    if world > 1:
        recipe.parallel = {
            name: nn.parallel.DistributedDataParallel(m, gradient_as_bucket_view=True)
            for name, m in recipe.models.items()
        }
        print(f"data-parallel on {world} ranks: each trains on 1/{world} of every batch", file=out, flush=True)
    recipe.schedulers = _schedulers(recipe, done)

    def progress(iterable, total, epoch):
        if not cfg.progress or rank != 0:
            return iterable
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, file=sys.stderr)

    start = time.perf_counter()
    for epoch in range(done + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        with _amp_errors(cfg):
            metrics = recipe.train_epoch(lambda it, n, epoch=epoch: progress(it, n, epoch))
        for sched in recipe.schedulers.values():
            sched.step()
        if rank == 0:  # the models are equal on every rank: one evaluation is enough
            with recipe.autocast():
                metrics.update(recipe.evaluate())
        history.append(_report("epoch", epoch, cfg.epochs, metrics, t0, out))
        if cfg.checkpoint:
            io.save(_state(recipe, epoch, history), cfg.checkpoint)
    seconds = time.perf_counter() - start
    summary = recipe.summary(history) if history and rank == 0 else []
    for line in summary:
        print(line, file=out)
    if cfg.plot and history:
        recipe.plot(history, cfg.plot)
        print(f"wrote {cfg.plot}", file=out)
    _warn_if_not_finite(history, out)
    return {"history": history, "summary": summary, "seconds": seconds, "recipe": recipe, "rank": rank}


def _warn_if_not_finite(history, out) -> None:
    """Says so when a metric of the run is NaN or infinite (a learning rate too large, ...)."""
    if not math.isfinite(sum(v for h in history for v in h.values())):
        print("warning: a metric is not finite", file=out)


# ---------------------------------------------------------------------------------------------
# Federated runs
# ---------------------------------------------------------------------------------------------


def _check_federated(cfg: TrainConfig) -> None:
    """ValueError naming the option of ``cfg`` that a federated run does not take."""
    if not RECIPES[cfg.recipe].supports_federated:
        federated = ", ".join(name for name, cls in RECIPES.items() if cls.supports_federated)
        raise ValueError(f"--federated: recipe {cfg.recipe} has no federated form; recipes that have one: {federated}")
    fed = cfg.federated
    for name in ("clients", "rounds", "local_epochs"):
        value = getattr(fed, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected a positive integer, got {value!r}")
    options = (("--resume", cfg.resume), ("--checkpoint", cfg.checkpoint), ("--epochs", cfg.epochs), ("--amp", cfg.amp))
    for option, value in options:
        if value is not None:
            raise ValueError(
                f"{option} {value}: a federated run takes --rounds and --local-epochs and keeps no checkpoint; "
                f"leave out {option}"
            )


def _train_federated(recipe: Recipe, out) -> dict:
    """The federated run of ``recipe.cfg.federated`` (see :class:`FederatedConfig`): prints the
    split and one line per round with the global model's metrics; returns what :func:`train` does,
    with a history by round."""
    from . import federated

    cfg, fed = recipe.cfg, recipe.cfg.federated
    train_set, model = recipe.train_set, recipe.models["model"]
    labels = train_set.arrays[1]
    if fed.clients > len(train_set):
        raise ValueError(f"--clients {fed.clients}: more clients than the {len(train_set)} training samples")
    if fed.dirichlet_alpha is None:
        parts = federated.iid_split(len(train_set), fed.clients, seed=cfg.seed)
        split = "IID split"
    else:
        min_size = min(10, len(train_set) // fed.clients)
        parts = federated.dirichlet_split(labels, fed.clients, fed.dirichlet_alpha, seed=cfg.seed, min_size=min_size)
        split = f"Dirichlet label skew, alpha {fed.dirichlet_alpha:g}"
    trainer = federated.LocalTrainer(
        recipe.loss,
        lambda params: optim.Adam(params, lr=cfg.lr),
        local_epochs=fed.local_epochs,
        batch_size=cfg.batch_size,
        mu=fed.fedprox_mu,
        device=recipe.device,
    )
    runner_cls = federated.MPIRunner if recipe.world > 1 else federated.SimulationRunner
    runner = runner_cls(model, [data.Subset(train_set, p) for p in parts], trainer, seed=cfg.seed)
    if recipe.rank != 0:  # a client rank: trains its clients until the server (rank 0) is done
        start = time.perf_counter()
        runner.serve()
        return {"history": [], "summary": [], "seconds": time.perf_counter() - start, "recipe": recipe,
                "server": None, "rank": recipe.rank}  # fmt: skip
    server = federated.FedAvg(runner, model, client_fraction=fed.client_fraction, seed=cfg.seed)
    algorithm = "FedAvg" if fed.fedprox_mu is None else f"FedProx (mu {fed.fedprox_mu:g})"
    sizes = runner.client_sizes
    print(
        f"{algorithm}: {fed.clients} clients ({split}; {min(sizes)}-{max(sizes)} samples each, mean label entropy "
        f"{federated.label_entropy(labels, parts):.2f} nats), {server.clients_per_round} per round, "
        f"{fed.local_epochs} local epoch(s)" + (f", clients on {recipe.world} ranks" if recipe.world > 1 else ""),
        file=out,
        flush=True,
    )
    history = []
    start = time.perf_counter()
    try:
        for r in range(1, fed.rounds + 1):
            t0 = time.perf_counter()
            info = server.run_round()
            model.load_state_dict(server.state)
            history.append(
                _report("round", r, fed.rounds, {"train_loss": info["train_loss"], **recipe.evaluate()}, t0, out)
            )
    finally:
        if recipe.world > 1:
            runner.close()
    seconds = time.perf_counter() - start
    summary = recipe.summary(history)
    for line in summary:
        print(line, file=out)
    if cfg.plot:
        _plot_curves(
            history, recipe.plot_metrics, f"deepkern train {recipe.name} --federated ({algorithm})", cfg.plot, x="round"
        )
        print(f"wrote {cfg.plot}", file=out)
    _warn_if_not_finite(history, out)
    return {"history": history, "summary": summary, "seconds": seconds, "recipe": recipe, "server": server, "rank": 0}
