"""Samplers, with PyTorch's names and arguments: the orders of a dataset's indices that
``DataLoader(sampler=...)`` visits (:class:`SequentialSampler`, :class:`RandomSampler`,
:class:`SubsetRandomSampler`, :class:`WeightedRandomSampler`), their batches
(:class:`BatchSampler`, for ``DataLoader(batch_sampler=...)``) and each rank's share
(:class:`DistributedSampler`, ``torch.utils.data.distributed.DistributedSampler``).

The random ones draw from NumPy generators: seeded from deepkern's generator (so
:func:`deepkern.manual_seed` makes them reproducible), or from ``generator`` (an int, or an object
with ``initial_seed()``, as a ``torch.Generator``), so the orders are not PyTorch's."""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np

from ..random import get_generator, keyed_generator

__all__ = [
    "Sampler",
    "SequentialSampler",
    "RandomSampler",
    "SubsetRandomSampler",
    "WeightedRandomSampler",
    "BatchSampler",
    "DistributedSampler",
]


class Sampler:
    """The base class of samplers: an iterable of indices (``__iter__``), usually with ``__len__``."""

    def __init__(self, data_source=None):
        pass

    def __iter__(self):
        raise NotImplementedError


def _count(value, name: str, sampler: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{sampler}: {name} should be an int >= {minimum}, got {value!r}")
    return int(value)


class _Draws:
    """The NumPy generator a random sampler draws each epoch's order from: a new one per epoch seeded
    from deepkern's generator, or one kept for the sampler's life seeded from ``generator``."""

    def __init__(self, generator):
        if generator is None:
            self._kept = None
        else:
            seed = generator.initial_seed() if hasattr(generator, "initial_seed") else operator.index(generator)
            self._kept = keyed_generator(seed)

    def next(self) -> np.random.Generator:
        return self._kept if self._kept is not None else keyed_generator(int(get_generator().integers(2**63)))


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """A new random order of ``data_source``'s indices each epoch; with ``replacement``,
    ``num_samples`` independent draws (``num_samples`` defaults to the dataset's length; without
    replacement, more than that visits whole permutations one after the other, as PyTorch)."""

    def __init__(self, data_source, replacement: bool = False, num_samples=None, generator=None):
        if not isinstance(replacement, bool):
            raise TypeError(f"RandomSampler: replacement should be a bool, got {replacement!r}")
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = None if num_samples is None else _count(num_samples, "num_samples", "RandomSampler", 1)
        self._draws = _Draws(generator)

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        n, rng = len(self.data_source), self._draws.next()
        if self.replacement:
            return iter(rng.integers(0, n, self.num_samples).tolist() if n else [])
        orders = [rng.permutation(n) for _ in range(-(-self.num_samples // n))] if n else []
        return iter(np.concatenate(orders)[: self.num_samples].tolist() if orders else [])

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given ``indices`` in a new random order each epoch."""

    def __init__(self, indices, generator=None):
        self.indices = indices
        self._draws = _Draws(generator)

    def __iter__(self):
        return iter([self.indices[i] for i in self._draws.next().permutation(len(self.indices)).tolist()])

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """``num_samples`` indices of ``weights`` (non-negative, not necessarily summing to 1) drawn with
    probabilities proportional to them, with or without ``replacement``."""

    def __init__(self, weights, num_samples: int, replacement: bool = True, generator=None):
        num_samples = _count(num_samples, "num_samples", "WeightedRandomSampler", 1)
        if not isinstance(replacement, bool):
            raise TypeError(f"WeightedRandomSampler: replacement should be a bool, got {replacement!r}")
        weights = np.asarray(weights.numpy() if hasattr(weights, "numpy") else weights, dtype=np.float64)
        if weights.ndim != 1 or not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(
                "WeightedRandomSampler: weights must be a 1-D sequence of finite non-negative numbers with a "
                f"positive sum, got shape {weights.shape}"
            )
        if not replacement and num_samples > np.count_nonzero(weights):
            raise RuntimeError(
                f"WeightedRandomSampler: cannot draw {num_samples} samples without replacement from "
                f"{np.count_nonzero(weights)} non-zero weights"
            )
        self.weights, self.num_samples, self.replacement = weights, num_samples, replacement
        self._draws = _Draws(generator)

    def __iter__(self):
        p = self.weights / self.weights.sum()
        drawn = self._draws.next().choice(len(p), self.num_samples, replace=self.replacement, p=p)
        return iter(drawn.tolist())

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler):
    """Lists of ``batch_size`` consecutive indices of ``sampler`` (the last one shorter unless
    ``drop_last``): give it to ``DataLoader(batch_sampler=...)``."""

    def __init__(self, sampler, batch_size: int, drop_last: bool):
        self.batch_size = _count(batch_size, "batch_size", "BatchSampler", 1)
        if not isinstance(drop_last, bool):
            raise ValueError(f"BatchSampler: drop_last should be a bool, got {drop_last!r}")
        self.sampler, self.drop_last = sampler, drop_last

    def __iter__(self):
        batch = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class DistributedSampler(Sampler):
    """The indices of ``dataset`` that rank ``rank`` of ``num_replicas`` visits in an epoch (give it
    to ``DataLoader(sampler=...)``; call ``set_epoch(epoch)`` before each epoch to reshuffle).

    PyTorch's rule: every rank gets ``num_samples`` indices. Without ``drop_last`` that is
    ceil(n / replicas) and the order is padded by repeating its start; with ``drop_last`` it is
    ceil((n - replicas) / replicas) when replicas does not divide n, and the tail is cut. Rank r
    takes the positions r, r + replicas, r + 2 * replicas, ... of the (padded or cut) order. With
    ``shuffle`` the order is a permutation drawn from (``seed``, epoch), the same on every rank
    (NumPy's generator, so the permutations are not PyTorch's); without it, 0 .. n - 1.
    ``num_replicas`` and ``rank`` default to the default process group's world size and rank.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle: bool = True, seed: int = 0, drop_last=False):
        if num_replicas is None or rank is None:
            from .. import distributed as dist

            if not dist.is_initialized():
                raise RuntimeError(
                    "DistributedSampler: num_replicas and rank default to the process group's, "
                    "which is not initialized; call deepkern.distributed.init_process_group() or pass them"
                )
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        for name, value in (("num_replicas", num_replicas), ("rank", rank), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"DistributedSampler: {name} must be an int, got {value!r}")
        if num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(
                f"DistributedSampler: invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]"
            )
        self.dataset = dataset
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        n = len(dataset)
        if self.drop_last and n % self.num_replicas:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def __iter__(self):
        n = len(self.dataset)
        order = keyed_generator(self.seed, self.epoch).permutation(n) if self.shuffle else np.arange(n)
        if self.total_size > n:  # pad by repeating the order from its start
            order = np.resize(order, self.total_size) if n else order
        order = order[: self.total_size]
        return iter(order[self.rank : self.total_size : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Makes the next iteration use the order of ``epoch`` (with ``shuffle``)."""
        self.epoch = operator.index(epoch)
