"""DistributedSampler: each rank's share of a dataset's indices (PyTorch's
``torch.utils.data.distributed.DistributedSampler``)."""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np

from ..random import keyed_generator

__all__ = ["DistributedSampler"]


class DistributedSampler:
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
