"""Datasets: the abstract :class:`Dataset`, :class:`IterableDataset` (a stream of samples),
:class:`TensorDataset` over whole arrays, :class:`ConcatDataset`, :class:`Subset` and
:func:`random_split` (``torch.utils.data`` semantics)."""

from __future__ import annotations

import abc
import bisect
import operator

import numpy as np

__all__ = ["Dataset", "IterableDataset", "ChainDataset", "TensorDataset", "ConcatDataset", "Subset", "random_split"]


class Dataset(abc.ABC):
    """A sized collection of samples: ``dataset[i]`` for ``0 <= i < len(dataset)``; ``a + b`` is their
    :class:`ConcatDataset`."""

    def __add__(self, other):
        return ConcatDataset([self, other])

    @abc.abstractmethod
    def __getitem__(self, index):
        """The sample at ``index`` (a tuple of fields, or a single value)."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """The number of samples."""


class IterableDataset:
    """A stream of samples (``__iter__``): ``DataLoader`` batches them in the order they come (no
    ``shuffle`` or ``sampler``); ``len(loader)`` needs the dataset's own ``__len__``; ``a + b`` is
    their :class:`ChainDataset`."""

    def __iter__(self):
        raise NotImplementedError

    def __add__(self, other):
        return ChainDataset([self, other])


class ChainDataset(IterableDataset):
    """The streams of ``datasets`` one after the other."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        for i, d in enumerate(self.datasets):
            if not isinstance(d, IterableDataset):
                raise TypeError(f"ChainDataset: datasets[{i}] is not an IterableDataset, got {type(d).__name__}")

    def __iter__(self):
        for d in self.datasets:
            yield from d

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)


class TensorDataset(Dataset):
    """Samples ``(a[i], b[i], ...)`` of arrays that share their first dimension.

    Each argument is a NumPy array or an object with a ``.numpy()`` method (a deepkern Tensor);
    the arrays are kept as given (no copy) in ``self.arrays``. Raises ValueError naming the
    shapes when the first dimensions differ, TypeError naming an argument that is not an array.
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset: needs at least one array")
        self.arrays = tuple(_as_array(a, f"arrays[{i}]") for i, a in enumerate(arrays))
        shapes = [a.shape for a in self.arrays]
        if any(len(s) == 0 for s in shapes) or len({s[0] for s in shapes}) != 1:
            raise ValueError(
                f"TensorDataset: the arrays must share their first dimension, got shapes {', '.join(map(str, shapes))}"
            )

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)

    def __len__(self) -> int:
        return len(self.arrays[0])


class ConcatDataset(Dataset):
    """The samples of ``datasets`` one after the other: ``len`` is the sum of their lengths, and a
    negative index counts from the end, as in PyTorch."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        for i, d in enumerate(self.datasets):
            if isinstance(d, IterableDataset):
                raise TypeError(f"ConcatDataset: datasets[{i}] is an IterableDataset, which has no indices")
        self.cumulative_sizes = np.cumsum([len(d) for d in self.datasets]).tolist()

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index):
        index = operator.index(index)
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"ConcatDataset: index {index} is out of range for {n} samples")
        index %= n
        which = bisect.bisect_right(self.cumulative_sizes, index)
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][index - start]


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices`` (in that order): ``subset[i] = dataset[indices[i]]``.

    Raises TypeError for indices that are not integers, ValueError naming an index outside
    ``[0, len(dataset))``. ``subset[list of positions]`` is ``dataset[list of their indices]``.
    """

    def __init__(self, dataset, indices):
        self.dataset = dataset
        given = np.asarray(indices).reshape(-1)
        if given.size and (given.dtype.kind not in "iu" or not np.can_cast(given.dtype, np.int64)):
            raise TypeError(f"Subset: indices must be integers, got an array of dtype {given.dtype}")
        self.indices = given.astype(np.int64)
        n = len(dataset)
        bad = self.indices[(self.indices < 0) | (self.indices >= n)]
        if bad.size:
            raise ValueError(f"Subset: indices must lie in [0, {n}) (len(dataset) = {n}), got {int(bad[0])}")

    def __getitem__(self, index):
        if isinstance(index, list):
            return self.dataset[[int(self.indices[i]) for i in index]]
        return self.dataset[int(self.indices[index])]

    def __len__(self) -> int:
        return len(self.indices)


def random_split(dataset, lengths, generator=None, seed: int = 0) -> list:
    """Split ``dataset`` into disjoint random :class:`Subset` s of the given ``lengths``.

    ``lengths`` are ints summing to ``len(dataset)``, or fractions summing to 1 (each gets
    ``floor(f * len)`` samples; the rest go one each to the first subsets, as in PyTorch). The
    same ``seed`` (or ``generator``: an int, or an object with ``initial_seed()`` such as a
    ``torch.Generator``) gives the same split. Raises ValueError naming the lengths and ``len(dataset)``.
    """
    if generator is not None:
        seed = generator.initial_seed() if hasattr(generator, "initial_seed") else operator.index(generator)
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(isinstance(x, (float, np.floating)) for x in lengths):
        if any(not 0 <= x <= 1 for x in lengths) or abs(sum(lengths) - 1) > 1e-6:
            raise ValueError(f"random_split: fractional lengths must lie in [0, 1] and sum to 1, got {lengths}")
        counts = [int(np.floor(f * n)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
    else:
        counts = [operator.index(x) for x in lengths]
        if any(x < 0 for x in counts) or sum(counts) != n:
            raise ValueError(f"random_split: lengths must be >= 0 and sum to len(dataset) = {n}, got {lengths}")
    order = np.random.default_rng(seed).permutation(n)
    ends = np.cumsum(counts)
    return [Subset(dataset, order[end - count : end]) for count, end in zip(counts, ends)]


def _as_array(x, name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "numpy"):
        if getattr(x, "requires_grad", False):
            raise ValueError(
                f"TensorDataset: {name} requires grad, but the samples are arrays, which carry no gradient; "
                "pass it detached (x.detach())"
            )
        return np.asarray(x.numpy())
    raise TypeError(f"TensorDataset: {name} must be a numpy.ndarray or have a .numpy() method, got {type(x).__name__}")
