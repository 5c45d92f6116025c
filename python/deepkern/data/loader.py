"""DataLoader: batches of a dataset, in order or shuffled reproducibly (``torch.utils.data.DataLoader``
semantics, single process)."""

from __future__ import annotations

import numbers
import operator
import warnings
from collections.abc import Mapping

import numpy as np

from ..random import get_generator
from ..tensor import Tensor, stack
from .dataset import Subset, TensorDataset

__all__ = ["DataLoader", "default_collate"]


def default_collate(samples: list):
    """One batch from a list of samples, as PyTorch's: samples that are tuples (or lists) give a tuple
    of batched fields (all samples of one length), dicts a dict of batched values per key; numeric
    arrays, Tensors and Python numbers are stacked along a new first axis into a Tensor (Tensors by
    :func:`deepkern.stack`, so the batch keeps their autograd graph and device); strings and
    other objects are returned as a list. Arrays of strings or objects are a TypeError."""
    first = samples[0]
    if isinstance(first, (str, bytes)):
        return list(samples)
    if isinstance(first, Mapping):
        return {key: default_collate([s[key] for s in samples]) for key in first}
    if isinstance(first, (tuple, list)):
        if any(len(s) != len(first) for s in samples):
            raise RuntimeError(
                "default_collate: each element in list of batch should be of equal size, got lengths "
                f"{sorted({len(s) for s in samples})}"
            )
        return tuple(default_collate([s[i] for s in samples]) for i in range(len(first)))
    if isinstance(first, (np.ndarray, np.generic)) and first.dtype.kind not in "biufc":
        raise TypeError(
            "default_collate: batch must contain tensors, numeric arrays, numbers, dicts or lists; "
            f"found an array of dtype {first.dtype}"
        )
    if isinstance(first, Tensor):  # the differentiable stack: a batch of Tensors keeps their graph and device
        return stack(samples)
    if isinstance(first, (np.ndarray, np.generic, numbers.Number)):
        return Tensor(np.stack([np.asarray(s) for s in samples]))
    return list(samples)


class DataLoader:
    """Iterates over ``dataset`` in batches of ``batch_size`` samples.

    ``len(loader)`` batches per epoch; the last one is smaller unless ``drop_last``. With
    ``shuffle``, each epoch (each ``iter(loader)``) visits every sample once in a new random
    order, drawn from (``seed``, ``epoch``): the same ``seed`` gives the same sequence of orders
    in every run (``seed=None`` draws a seed once, at construction, from deepkern's generator, so
    :func:`deepkern.manual_seed` makes it reproducible, as in PyTorch). ``epoch`` counts the epochs
    started; set it to resume a run where it stopped.

    Batches are ``collate_fn(list of samples)``, by default :func:`default_collate` (Tensors,
    as in PyTorch). A :class:`TensorDataset` (or a :class:`Subset` of one; not of a subclass, whose
    ``__getitem__`` may differ) with the default collate
    is batched by indexing its whole arrays at once, with the same result and no per-sample loop.

    ``sampler`` (an iterable of indices with a length, e.g. :class:`DistributedSampler`) gives
    the order of the samples instead of ``shuffle``.

    ``num_workers`` is accepted for PyTorch compatibility (an int >= 0): the batches are always
    made in this process, in the same order and with the same values as PyTorch's workers give.

    ``pin_memory``: the batches' Tensors in host memory are copied into pinned memory
    (:meth:`Tensor.pin_memory`), so that ``batch.to("cuda", non_blocking=True)`` queues the copy
    without waiting for it; without a usable GPU it warns once, as PyTorch does, and does not pin.
    """

    def __init__(
        self,
        dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        collate_fn=None,
        pin_memory: bool = False,
        num_workers: int = 0,
        sampler=None,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be an int >= 1, got {batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, numbers.Integral) or num_workers < 0:
            raise ValueError(f"DataLoader: num_workers must be an int >= 0, got {num_workers!r}")
        if seed is not None:
            seed = operator.index(seed)
        if sampler is not None and shuffle:
            raise ValueError(
                "DataLoader: sampler option is mutually exclusive with shuffle (the sampler sets the order)"
            )
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"DataLoader: collate_fn must be callable or None, got {type(collate_fn).__name__}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(get_generator().integers(2**63)) if seed is None else seed
        self.collate_fn = collate_fn
        self.pin_memory = bool(pin_memory)
        self.num_workers = int(num_workers)
        self.sampler = sampler
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset) if self.sampler is None else len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        if self.sampler is not None:
            order = np.fromiter(iter(self.sampler), np.int64)
        elif self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
        else:
            order = np.arange(n)
        self.epoch += 1
        pin = self.pin_memory and _can_pin()
        return (
            _pinned(batch) if pin else batch
            for batch in (
                self._batch(order[start : start + self.batch_size])
                for start in range(0, len(self) * self.batch_size, self.batch_size)
            )
        )

    def _batch(self, indices: np.ndarray):
        """The batch of the samples at ``indices``."""
        if self.collate_fn is None:
            base, base_indices = self.dataset, indices
            while type(base) is Subset:  # exact types: a subclass may change __getitem__
                base, base_indices = base.dataset, base.indices[base_indices]
            if type(base) is TensorDataset:
                return tuple(Tensor(a[base_indices]) for a in base.arrays)
        collate = default_collate if self.collate_fn is None else self.collate_fn
        return collate([self.dataset[int(i)] for i in indices])


def _can_pin() -> bool:
    """Whether pinned memory is available (a usable GPU); warns when it is not."""
    from .. import cuda

    if cuda.is_available():
        return True
    warnings.warn(
        f"DataLoader: pin_memory=True but no GPU is usable ({cuda.unavailable_reason()}); batches are not pinned",
        UserWarning,
        stacklevel=3,
    )
    return False


def _pinned(batch):
    """``batch`` with each Tensor in host memory copied to pinned memory (tuples, lists and dicts
    followed; anything else as it is)."""
    if isinstance(batch, Tensor):
        return batch.pin_memory() if batch.device.type == "cpu" else batch
    if isinstance(batch, (tuple, list)):
        return type(batch)(_pinned(b) for b in batch)
    if isinstance(batch, dict):
        return {k: _pinned(v) for k, v in batch.items()}
    return batch
