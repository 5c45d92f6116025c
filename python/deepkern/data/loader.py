"""DataLoader: batches of a dataset, in order or shuffled reproducibly (``torch.utils.data.DataLoader``
semantics, single process)."""

from __future__ import annotations

import itertools
import numbers
import operator
import warnings
from collections.abc import Mapping

import numpy as np

from ..ops._validate import is_bfloat16
from ..random import get_generator, keyed_generator
from ..tensor import Tensor, float64, stack, tensor
from .dataset import IterableDataset, Subset, TensorDataset

__all__ = ["DataLoader", "default_collate"]


def default_convert(data):
    """One sample as DataLoader gives it without automatic batching (``batch_size=None``), as PyTorch's:
    numeric NumPy arrays and scalars become Tensors, mappings and sequences are converted item by item
    (a tuple becomes a list, a namedtuple stays one), anything else (Python numbers, strings) is kept."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, (np.ndarray, np.generic)):
        return Tensor._wrap(_native(np.asarray(data))) if _batchable(data.dtype) else data
    if isinstance(data, Mapping):
        converted = {key: default_convert(value) for key, value in data.items()}
        try:
            return type(data)(converted)
        except TypeError:
            return converted
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, (tuple, list)):
        return [default_convert(d) for d in data]
    return data


def default_collate(samples: list):
    """One batch from a list of samples, as PyTorch's: samples that are tuples (or lists) give a tuple
    of batched fields (all samples of one length; namedtuples stay namedtuples), mappings a mapping of
    the same type with the batched values per key; Tensors, numeric NumPy arrays and scalars and Python
    numbers are stacked along a new first axis into a Tensor (by :func:`deepkern.stack`, so a batch of
    Tensors keeps their autograd graph and device, and mixed dtypes promote as in PyTorch: int32 and
    float32 arrays give float32; Python floats give float64, Python ints int64, beyond whose range
    they are an OverflowError); strings and other objects are returned as a list. Arrays of strings
    or objects are a TypeError."""
    first = samples[0]
    if isinstance(first, (str, bytes)):
        return list(samples)
    if isinstance(first, Mapping):
        batched = {key: default_collate([s[key] for s in samples]) for key in first}
        try:
            return type(first)(batched)
        except TypeError:  # a mapping type that cannot be made from a dict
            return batched
    if isinstance(first, (tuple, list)):
        if any(len(s) != len(first) for s in samples):
            raise RuntimeError(
                "default_collate: each element in list of batch should be of equal size, got lengths "
                f"{sorted({len(s) for s in samples})}"
            )
        fields = (default_collate([s[i] for s in samples]) for i in range(len(first)))
        return type(first)(*fields) if hasattr(first, "_fields") else tuple(fields)
    if isinstance(first, Tensor):  # the differentiable stack: a batch of Tensors keeps their graph and device
        return stack(samples)
    if isinstance(first, (np.ndarray, np.generic)):
        if not _batchable(first.dtype):
            raise TypeError(
                "default_collate: batch must contain tensors, numeric arrays, numbers, dicts or lists; "
                f"found an array of dtype {first.dtype}"
            )
        return stack([Tensor._wrap(_native(np.asarray(s))) for s in samples])
    if isinstance(first, float):
        return tensor(samples, dtype=float64)
    if isinstance(first, numbers.Number):
        return tensor(samples)
    return list(samples)


def _batchable(dtype: np.dtype) -> bool:
    """Whether arrays of ``dtype`` batch into a Tensor (numbers and bool; bfloat16)."""
    return dtype.kind in "biufc" or is_bfloat16(dtype)


def _native(array: np.ndarray) -> np.ndarray:
    """``array`` in the machine's byte order (a copy only where it is not)."""
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


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
    ``__getitem__`` may differ) of numeric arrays with the default collate and integer indices
    is batched by indexing its whole arrays at once, with the same result and no per-sample loop.

    ``sampler`` (an iterable of indices with a length, e.g. :class:`DistributedSampler`) gives
    the order of the samples instead of ``shuffle``: each index it yields reaches
    ``dataset[index]`` as it is (a key of a mapping dataset too), and an epoch's batches hold what
    it yields (``len(loader)`` comes from ``len(sampler)``, as in PyTorch).

    ``batch_sampler`` (an iterable of lists of indices, with a length) gives whole batches instead
    of ``batch_size``, ``shuffle``, ``sampler`` and ``drop_last``, as in PyTorch. ``generator`` (an
    object with ``initial_seed()``, as a ``torch.Generator``, or an int) seeds the shuffle as ``seed``.

    ``num_workers`` and the worker options (``timeout``, ``prefetch_factor``, ``persistent_workers``,
    ``multiprocessing_context``, ``in_order``, ``pin_memory_device``) are accepted for PyTorch
    compatibility: the batches are always made in this process, in the same order and with the same
    values as PyTorch's workers give; with ``num_workers > 0``, ``worker_init_fn(0)`` runs at the start
    of each epoch (once, with ``persistent_workers``), as for the one worker that makes them.

    ``pin_memory``: the batches' Tensors in host memory are copied into pinned memory
    (:meth:`Tensor.pin_memory`), so that ``batch.to("cuda", non_blocking=True)`` queues the copy
    without waiting for it; without a usable GPU it warns once, as PyTorch does, and does not pin.
    """

    def __init__(
        self,
        dataset,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler=None,
        batch_sampler=None,
        num_workers: int = 0,
        collate_fn=None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn=None,
        multiprocessing_context=None,
        generator=None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
        seed: int | None = None,
    ):
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "DataLoader: batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                    "and drop_last"
                )
            batch_size = None
        elif batch_size is None:
            if drop_last:
                raise ValueError(
                    "DataLoader: batch_size=None option disables auto-batching and is mutually exclusive with drop_last"
                )
        elif isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be an int >= 1 or None, got {batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, numbers.Integral) or num_workers < 0:
            raise ValueError(f"DataLoader: num_workers must be an int >= 0, got {num_workers!r}")
        if not isinstance(timeout, numbers.Real) or timeout < 0:
            raise ValueError(f"DataLoader: timeout option should be non-negative, got {timeout!r}")
        if num_workers == 0 and (prefetch_factor is not None or persistent_workers):
            raise ValueError("DataLoader: prefetch_factor and persistent_workers need num_workers > 0 (as in PyTorch)")
        if worker_init_fn is not None and not callable(worker_init_fn):
            raise TypeError(f"DataLoader: worker_init_fn must be callable or None, got {type(worker_init_fn).__name__}")
        if generator is not None:
            if seed is not None:
                raise ValueError("DataLoader: give seed or generator, not both")
            seed = generator.initial_seed() if hasattr(generator, "initial_seed") else generator
        if seed is not None:
            seed = operator.index(seed)
        if isinstance(dataset, IterableDataset) and (shuffle or sampler is not None or batch_sampler is not None):
            raise ValueError(
                "DataLoader: an IterableDataset gives its samples in its own order: shuffle, sampler and "
                "batch_sampler do not apply"
            )
        if sampler is not None and shuffle:
            raise ValueError(
                "DataLoader: sampler option is mutually exclusive with shuffle (the sampler sets the order)"
            )
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"DataLoader: collate_fn must be callable or None, got {type(collate_fn).__name__}")
        self.dataset = dataset
        self.batch_size = None if batch_size is None else int(batch_size)
        self.batch_sampler = batch_sampler
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(get_generator().integers(2**63)) if seed is None else seed
        self.collate_fn = collate_fn
        self.pin_memory = bool(pin_memory)
        self.num_workers = int(num_workers)
        self.worker_init_fn = worker_init_fn
        self.persistent_workers = bool(persistent_workers)
        self._workers_started = False
        self.timeout, self.prefetch_factor = timeout, prefetch_factor
        self.sampler = sampler
        self.epoch = 0

    def __len__(self) -> int:
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        n = len(self.dataset) if self.sampler is None else len(self.sampler)
        if self.batch_size is None:  # one sample per item
            return n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        if self.num_workers and self.worker_init_fn is not None:
            if not (self.persistent_workers and self._workers_started):
                self.worker_init_fn(0)
            self._workers_started = True
        if self.batch_size is None and self.batch_sampler is None:  # no automatic batching: one sample at a time
            convert = default_convert if self.collate_fn is None else self.collate_fn
            if isinstance(self.dataset, IterableDataset):
                samples = iter(self.dataset)
            else:
                indices = self.sampler if self.sampler is not None else range(len(self.dataset))
                if self.shuffle and self.sampler is None:
                    indices = keyed_generator(self.seed, self.epoch).permutation(len(self.dataset)).tolist()
                samples = (self.dataset[i] for i in indices)
            batches = map(convert, samples)
        elif isinstance(self.dataset, IterableDataset):
            batches = self._stream_batches(iter(self.dataset))
        elif self.batch_sampler is not None:
            batches = map(self._batch, (list(batch) for batch in self.batch_sampler))
        else:
            if self.sampler is not None:
                indices = iter(self.sampler)
            elif self.shuffle:
                indices = iter(keyed_generator(self.seed, self.epoch).permutation(len(self.dataset)).tolist())
            else:
                indices = iter(range(len(self.dataset)))
            batches = map(self._batch, self._batches_of(indices))
        self.epoch += 1
        pin = self.pin_memory and _can_pin()
        return (_pinned(batch) if pin else batch for batch in batches)

    def _stream_batches(self, samples):
        """The batches of an IterableDataset's stream: ``batch_size`` samples at a time, collated."""
        collate = default_collate if self.collate_fn is None else self.collate_fn
        return map(collate, self._batches_of(samples))

    def _batches_of(self, indices):
        """Lists of ``batch_size`` consecutive items of what ``indices`` yields (a sampler's indices,
        which may be more or fewer than its ``len``, or an IterableDataset's samples), the last one
        shorter unless ``drop_last``."""
        while True:
            batch = list(itertools.islice(indices, self.batch_size))
            if not batch or (self.drop_last and len(batch) < self.batch_size):
                return
            yield batch

    def _batch(self, indices: list):
        """The batch of the samples at ``indices`` (as the sampler gave them: ``dataset[index]`` each)."""
        if self.collate_fn is None:
            base, base_indices = self.dataset, np.asarray(indices)
            if base_indices.dtype.kind in "iu":  # integers: whole arrays indexed at once
                while type(base) is Subset:  # exact types: a subclass may change __getitem__
                    base, base_indices = base.dataset, base.indices[base_indices]
                if type(base) is TensorDataset and all(_batchable(a.dtype) for a in base.arrays):
                    return tuple(Tensor._wrap(_native(a[base_indices])) for a in base.arrays)
        collate = default_collate if self.collate_fn is None else self.collate_fn
        return collate([self.dataset[i] for i in indices])


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
