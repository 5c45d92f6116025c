"""Federated averaging (McMahan et al. 2017) and FedProx (Li et al. 2020), in one process or on MPI ranks.

The server (:class:`FedAvg`) holds the global weights as host NumPy arrays in state-dict order. Each
round it samples a fraction of the clients, hands them the global weights through a
:class:`ClientRunner`, and replaces the global weights by :func:`weighted_average` of the returned
state dicts, weighted by the clients' sample counts. The runner is the seam between the algorithm
and where clients run: :class:`SimulationRunner` trains them one after another on one model object
(weights swapped in and out with ``load_state_dict``/``state_dict``); :class:`MPIRunner` trains them
on the ranks of an MPI job, rank 0 being the server, with the same result.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import numbers
from collections import OrderedDict
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .. import data, nn, random
from ..autograd import no_grad
from ..backends import to_device
from ..tensor import Tensor

__all__ = [
    "ClientUpdate",
    "ClientRunner",
    "FedAvg",
    "LocalTrainer",
    "MPIRunner",
    "SimulationRunner",
    "add_proximal_gradient",
    "evaluate_model",
    "host_state",
    "weighted_average",
]

State = "OrderedDict[str, np.ndarray]"


def _check_number(value, name: str, where: str, low: float, high: float = math.inf, low_open: bool = False) -> float:
    """``value`` as a float in [low, high] (``(low, high]`` with ``low_open``), else ValueError."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bounds = f"{'(' if low_open else '['}{low}, {high}]"
        raise ValueError(f"{where}: {name} must be a finite number in {bounds}, got {value!r}")
    return float(value)


def _check_int(value, name: str, where: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{where}: {name} must be an int >= {low}, got {value!r}")
    return int(value)


def host_state(state: Mapping) -> State:
    """A copy of a state dict (or a Module's) as host NumPy arrays, in its order."""
    if isinstance(state, nn.Module):
        state = state.state_dict()
    out = OrderedDict()
    for name, value in state.items():
        if isinstance(value, Tensor):
            value = value.detach().cpu()._host_array()  # copied below: not handed out
        out[name] = np.array(value, copy=True)
    return out


def weighted_average(states: Sequence[Mapping], weights: Sequence[float]) -> State:
    """The weighted mean ``sum_k w_k * state_k / sum_k w_k`` of state dicts with the same names,
    shapes and dtypes, entry by entry, computed in float64 and returned in each entry's dtype.

    Floating entries (weights, biases, BatchNorm running statistics) are averaged as they are.
    Integer and boolean entries (such as BatchNorm's ``num_batches_tracked``) are averaged the same
    way and rounded to the nearest integer (half to even), so they keep their dtype; for
    ``num_batches_tracked`` that is the clients' sample-weighted mean batch count.
    Raises ValueError naming the entry or the weight that does not fit.
    """
    where = "weighted_average"
    if len(states) == 0:
        raise ValueError(f"{where}: needs at least one state dict, got none")
    if len(weights) != len(states):
        raise ValueError(f"{where}: got {len(states)} state dicts but {len(weights)} weights")
    w = np.array([_check_number(v, f"weights[{i}]", where, 0.0) for i, v in enumerate(weights)], dtype=np.float64)
    if not w.sum() > 0:
        raise ValueError(f"{where}: the weights must not all be zero, got {list(weights)}")
    w /= w.sum()
    hosts = [host_state(s) for s in states]
    names = list(hosts[0])
    for k, h in enumerate(hosts[1:], start=1):
        if list(h) != names:
            raise ValueError(f"{where}: state dict {k} has entries {list(h)}, state dict 0 has {names}")
    out = OrderedDict()
    for name in names:
        first = hosts[0][name]
        for k, h in enumerate(hosts[1:], start=1):
            if h[name].shape != first.shape or h[name].dtype != first.dtype:
                raise ValueError(
                    f"{where}: entry {name!r} is {h[name].shape} {h[name].dtype} in state dict {k} "
                    f"but {first.shape} {first.dtype} in state dict 0"
                )
        mean = sum(wk * h[name].astype(np.float64) for wk, h in zip(w, hosts))
        exact = np.issubdtype(first.dtype, np.integer) or first.dtype == np.bool_
        out[name] = np.asarray(np.rint(mean) if exact else mean).astype(first.dtype)
    return out


def _array_of(value):
    """The backend array of a Tensor, or ``value`` as a NumPy array."""
    return value._array if isinstance(value, Tensor) else np.asarray(value)


def add_proximal_gradient(model: nn.Module, global_state: Mapping, mu: float) -> None:
    """Adds the gradient of FedProx's proximal term ``mu / 2 * ||w - w_global||^2``, that is
    ``mu * (w - w_global)``, to the ``.grad`` of each of ``model``'s parameters that has one.
    ``global_state`` maps the parameters' state-dict names to arrays (on any device)."""
    mu = _check_number(mu, "mu", "add_proximal_gradient", 0.0)
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        if name not in global_state:
            raise ValueError(f"add_proximal_gradient: the global state has no entry {name!r}")
        diff = p._array - to_device(_array_of(global_state[name]), p.device)
        diff *= p._array.dtype.type(mu)
        p.grad._array += diff


class LocalTrainer:
    """How a client trains: ``local_epochs`` passes over its loader, each batch a step of a fresh
    ``optimizer_fn(model.parameters())`` (made at the start of each round: clients keep no
    optimizer state between rounds) on ``criterion(model(x), y)``. With ``mu`` (FedProx) the
    gradient of ``mu / 2 * ||w - w_global||^2`` is added before each step; ``mu=None`` is FedAvg.
    Batches are moved to ``device``, where the model must be."""

    def __init__(
        self,
        criterion: Callable,
        optimizer_fn: Callable,
        local_epochs: int = 1,
        batch_size: int = 32,
        mu: Optional[float] = None,
        device="cpu",
    ):
        where = "LocalTrainer"
        if not callable(criterion) or not callable(optimizer_fn):
            raise TypeError(f"{where}: criterion and optimizer_fn must be callable")
        self.criterion = criterion
        self.optimizer_fn = optimizer_fn
        self.local_epochs = _check_int(local_epochs, "local_epochs", where)
        self.batch_size = _check_int(batch_size, "batch_size", where)
        self.mu = None if mu is None else _check_number(mu, "mu", where, 0.0)
        self.device = device

    def fit(self, model: nn.Module, loader: data.DataLoader, global_state: Optional[Mapping] = None) -> float:
        """Trains ``model`` in place from its current weights; returns the mean training loss per
        sample over all local epochs. ``global_state`` (needed with ``mu``) is the round's start."""
        if self.mu is not None:
            if global_state is None:
                raise ValueError("LocalTrainer.fit: FedProx (mu given) needs the global state")
            named = dict(model.named_parameters())
            anchor = {k: to_device(_array_of(global_state[k]), p.device) for k, p in named.items() if k in global_state}
        opt = self.optimizer_fn(model.parameters())
        model.train()
        total, count = 0.0, 0
        for _ in range(self.local_epochs):
            for x, y in loader:
                x, y = x.to(self.device), y.to(self.device)
                opt.zero_grad()
                loss = self.criterion(model(x), y)
                loss.backward()
                if self.mu is not None:
                    add_proximal_gradient(model, anchor, self.mu)
                opt.step()
                total += loss.item() * len(y)
                count += len(y)
        return total / max(count, 1)


@dataclasses.dataclass
class ClientUpdate:
    """What a client returns after a round: its weights (host arrays in state-dict order), the
    number of samples it holds (its averaging weight) and its mean training loss."""

    client: int
    state: State
    num_samples: int
    train_loss: float


class ClientRunner(abc.ABC):
    """Where clients run. ``client_sizes`` lists the sample count of every client (client ids are
    its indices); :meth:`fit` trains the given clients, each from ``global_state``, and returns
    their updates in the order given. A runner over processes scatters the ids and gathers the
    updates; the server does not change."""

    @property
    @abc.abstractmethod
    def client_sizes(self) -> List[int]:
        """The number of samples of each client."""

    @abc.abstractmethod
    def fit(self, clients: Sequence[int], global_state: State, round_index: int) -> List[ClientUpdate]:
        """Trains ``clients`` from ``global_state`` for round ``round_index`` (1-based)."""


class _LocalClients(ClientRunner):
    """The clients' data and training shared by the runners: client ``k``'s batches come from its
    own shuffled loader, seeded from (``seed``, ``k``), whose epoch counter runs on across rounds;
    its training in round ``r`` draws (dropout) from deepkern's generators seeded from (``seed``,
    ``r``, ``k``), so a client's update depends neither on the other clients nor on where it runs."""

    def __init__(self, model: nn.Module, datasets: Sequence, trainer: LocalTrainer, seed: int = 0):
        where = type(self).__name__
        if len(datasets) == 0:
            raise ValueError(f"{where}: needs at least one client data set, got none")
        empty = [k for k, ds in enumerate(datasets) if len(ds) == 0]
        if empty:
            raise ValueError(f"{where}: every client needs at least one sample; clients {empty} have none")
        self.seed = _check_int(seed, "seed", where, 0)
        self.model = model
        self.trainer = trainer
        self.loaders = [
            data.DataLoader(
                ds, trainer.batch_size, shuffle=True, seed=int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
            )
            for k, ds in enumerate(datasets)
        ]

    @property
    def client_sizes(self) -> List[int]:
        return [len(loader.dataset) for loader in self.loaders]

    def _train(self, k: int, global_state: State, round_index: int) -> ClientUpdate:
        """Client ``k``'s update of round ``round_index``: ``model`` loaded with ``global_state``
        and trained on the client's data (deepkern's generators are left as they were)."""
        numpy_state, philox_state = random.get_generator().bit_generator.state, random.get_philox_state()
        random.manual_seed(int(np.random.SeedSequence([self.seed, round_index, k]).generate_state(1)[0]))
        try:
            self.model.load_state_dict(global_state)
            loss = self.trainer.fit(self.model, self.loaders[k], global_state)
        finally:
            random.get_generator().bit_generator.state = numpy_state
            random.set_philox_state(philox_state)
        return ClientUpdate(int(k), host_state(self.model), len(self.loaders[k].dataset), loss)


class SimulationRunner(_LocalClients):
    """All clients in this process on one model object: for each client, the global weights are
    loaded into ``model``, ``trainer`` trains it on the client's data set and the weights are copied
    out (see :class:`_LocalClients` for the batches and the random draws)."""

    def fit(self, clients, global_state, round_index):
        return [self._train(int(k), global_state, round_index) for k in clients]


class MPIRunner(_LocalClients):
    """The clients trained on the ranks of an MPI job (``deepkern.distributed.init_process_group``
    first; launch with ``mpiexec -n N python -m mpi4py ...`` so that a failing rank ends the job):
    client ``k`` lives on rank ``k % N``. Every rank builds the runner with the same model, data
    sets, trainer and seed. Rank 0 is the server: its :class:`FedAvg` calls :meth:`fit`, which sends
    the round's clients and global weights to every rank, trains its own clients and gathers the
    others' updates; every other rank calls :meth:`serve`, which trains its clients round after
    round until rank 0 calls :meth:`close`. The global model is the one :class:`SimulationRunner`
    gives for the same seeds, on any number of ranks (bit for bit when each process runs as many
    threads: with another thread count the kernels' sums may round differently)."""

    def __init__(self, model: nn.Module, datasets: Sequence, trainer: LocalTrainer, seed: int = 0):
        from .. import distributed

        super().__init__(model, datasets, trainer, seed)
        self._comm = distributed._comm()
        self.rank, self.world = self._comm.Get_rank(), self._comm.Get_size()
        distributed._agree(self._comm, "MPIRunner", "client sample counts and seeds", (self.client_sizes, self.seed))

    def _round(self, command):
        """One round on every rank: rank 0's ``command`` (clients, global state, round index, or
        None to stop) reaches every rank; returns the updates in the clients' order on rank 0,
        [] on the others, None when told to stop."""
        command = self._comm.bcast(command, root=0)
        if command is None:
            return None
        clients, global_state, round_index = command
        mine = [self._train(k, global_state, round_index) for k in clients if k % self.world == self.rank]
        gathered = self._comm.gather(mine, root=0)
        if self.rank != 0:
            return []
        by_client = {u.client: u for part in gathered for u in part}
        return [by_client[k] for k in clients]

    def _check_rank(self, server: bool, what: str) -> None:
        if (self.rank == 0) != server:
            raise RuntimeError(
                f"MPIRunner.{what}: {'only rank 0 (the server)' if server else 'every rank but 0'} calls it; "
                f"this is rank {self.rank}"
            )

    def fit(self, clients, global_state, round_index):
        self._check_rank(True, "fit")
        return self._round(([int(k) for k in clients], global_state, round_index))

    def serve(self) -> None:
        """(ranks other than 0) Trains this rank's clients each round until rank 0's :meth:`close`."""
        self._check_rank(False, "serve")
        while self._round(None) is not None:
            pass

    def close(self) -> None:
        """(rank 0) Ends the other ranks' :meth:`serve`."""
        self._check_rank(True, "close")
        self._round(None)


class FedAvg:
    """The server of federated averaging. ``initial_state`` (a Module or a state dict) gives the
    first global weights. Each :meth:`run_round` samples ``max(1, round(client_fraction * K))`` of
    the runner's K clients without replacement, seeded from (``seed``, round), lets the runner train
    them, and sets :attr:`state` to the sample-weighted :func:`weighted_average` of their weights.
    FedProx is the same server with a :class:`LocalTrainer` given ``mu``."""

    def __init__(self, runner: ClientRunner, initial_state, client_fraction: float = 1.0, seed: int = 0):
        where = "FedAvg"
        if not isinstance(runner, ClientRunner):
            raise TypeError(f"{where}: runner must be a ClientRunner, got {type(runner).__name__}")
        self.runner = runner
        self.state = host_state(initial_state)
        self.client_fraction = _check_number(client_fraction, "client_fraction", where, 0.0, 1.0, low_open=True)
        self.seed = _check_int(seed, "seed", where, 0)
        self.rounds_done = 0

    @property
    def clients_per_round(self) -> int:
        return max(1, round(self.client_fraction * len(self.runner.client_sizes)))

    def sample_clients(self, round_index: int) -> np.ndarray:
        """The sorted ids of the clients of round ``round_index`` (the same for the same seed)."""
        rng = np.random.default_rng([self.seed, round_index])
        return np.sort(rng.choice(len(self.runner.client_sizes), self.clients_per_round, replace=False))

    def run_round(self) -> Dict[str, object]:
        """One round; returns ``{"round", "clients", "num_samples", "train_loss"}`` (the loss is
        the sample-weighted mean of the clients' training losses)."""
        round_index = self.rounds_done + 1
        clients = self.sample_clients(round_index)
        updates = self.runner.fit(clients, self.state, round_index)
        sizes = [u.num_samples for u in updates]
        self.state = weighted_average([u.state for u in updates], sizes)
        self.rounds_done = round_index
        return {
            "round": round_index,
            "clients": [u.client for u in updates],
            "num_samples": int(sum(sizes)),
            "train_loss": float(np.dot(sizes, [u.train_loss for u in updates]) / sum(sizes)),
        }


def evaluate_model(model: nn.Module, dataset, criterion: Callable, batch_size: int = 256, device="cpu") -> dict:
    """``{"loss": mean per sample, "num_samples": n}`` of ``model`` in eval mode on ``dataset``,
    plus ``"accuracy"`` when the outputs are class scores (N, C) and the targets class ids."""
    model.eval()
    total, correct, count = 0.0, 0, 0
    classify = True
    with no_grad():
        for x, y in data.DataLoader(dataset, batch_size):
            out = model(x.to(device))
            total += criterion(out, y.to(device)).item() * len(y)
            count += len(y)
            targets = y.cpu().numpy()
            classify = classify and len(out.shape) == 2 and np.issubdtype(targets.dtype, np.integer)
            if classify:
                correct += int((out.argmax(1).cpu().numpy() == targets).sum())
    result = {"loss": total / max(count, 1), "num_samples": count}
    if classify and count:
        result["accuracy"] = correct / count
    return result
