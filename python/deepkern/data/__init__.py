"""deepkern.data: datasets, DataLoader, and real data that ships inside installed packages.

- :class:`Dataset`, :class:`TensorDataset`, :class:`Subset`, :func:`random_split`
- :class:`DataLoader` (batch_size, shuffle with a seed, drop_last, sampler), :func:`default_collate`;
  :class:`DistributedSampler` (each rank's share of the indices)
- :func:`digits` (scikit-learn), :func:`sunspots` (statsmodels), :func:`char_corpus` (the
  standard library's pydoc_data): never downloaded; scikit-learn and statsmodels come with
  ``pip install "deepkern[train]"``.
"""

from .dataset import ChainDataset, ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset, random_split
from .datasets import CharCorpus, Windows, char_corpus, digits, sliding_windows, stratified_split, sunspots
from .loader import DataLoader, default_collate, default_convert
from .sampler import (
    BatchSampler,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

__all__ = [
    "Dataset",
    "IterableDataset",
    "ChainDataset",
    "TensorDataset",
    "ConcatDataset",
    "Subset",
    "random_split",
    "DataLoader",
    "Sampler",
    "SequentialSampler",
    "RandomSampler",
    "SubsetRandomSampler",
    "WeightedRandomSampler",
    "BatchSampler",
    "DistributedSampler",
    "default_collate",
    "default_convert",
    "digits",
    "stratified_split",
    "sunspots",
    "sliding_windows",
    "Windows",
    "char_corpus",
    "CharCorpus",
]
