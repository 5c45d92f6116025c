"""Partitions of a data set among federated clients: IID, label skew drawn from a Dirichlet
distribution, and label-sorted shards. Each returns one sorted int64 index array per client; the
arrays are disjoint and together cover every sample exactly once, and the same seed gives the same
partition."""

from __future__ import annotations

import math
import numbers
from typing import List

import numpy as np

__all__ = ["iid_split", "dirichlet_split", "shard_split", "label_entropy"]


def _check_labels(labels, where: str) -> np.ndarray:
    """``labels`` as a 1-d int64 array of class ids >= 0 (a Tensor or anything NumPy converts)."""
    if hasattr(labels, "numpy"):
        labels = labels.numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"{where}: labels must be a 1-d array of integer class ids, got shape {arr.shape} {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{where}: labels must be >= 0, got {int(arr.min())}")
    return arr.astype(np.int64, copy=False)


def _check_int(value, name: str, where: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{where}: {name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_clients(num_clients, n: int, per_client: int, where: str) -> int:
    """``num_clients`` >= 1, with ``per_client`` samples each fitting in ``n`` samples."""
    num_clients = _check_int(num_clients, "num_clients", where, 1)
    if num_clients * per_client > n:
        raise ValueError(
            f"{where}: {num_clients} clients with at least {per_client} samples each need "
            f"{num_clients * per_client} samples, but there are {n}"
        )
    return num_clients


def iid_split(num_samples: int, num_clients: int, seed: int = 0) -> List[np.ndarray]:
    """A seeded random permutation of ``range(num_samples)`` cut into ``num_clients`` parts whose
    sizes differ by at most one (every client gets at least one sample)."""
    num_samples = _check_int(num_samples, "num_samples", "iid_split", 0)
    num_clients = _check_clients(num_clients, num_samples, 1, "iid_split")
    order = np.random.default_rng(_check_int(seed, "seed", "iid_split", 0)).permutation(num_samples)
    return [np.sort(part) for part in np.array_split(order, num_clients)]


def dirichlet_split(
    labels, num_clients: int, alpha: float, seed: int = 0, min_size: int = 10, max_tries: int = 1000
) -> List[np.ndarray]:
    """Label skew (Hsu et al. 2019; the NIID-Bench procedure): for each class, its samples are
    shuffled and dealt to the clients in proportions drawn from Dirichlet(alpha, ..., alpha),
    except that a client already holding ``len(labels) / num_clients`` samples or more gets no
    share of a further class (the shares renormalised over the others). Small ``alpha`` gives each
    client few classes; large ``alpha`` approaches an IID split. The whole draw is repeated until
    every client holds at least ``min_size`` samples; after ``max_tries`` draws ValueError says so.
    """
    where = "dirichlet_split"
    labels = _check_labels(labels, where)
    min_size = _check_int(min_size, "min_size", where, 1)
    num_clients = _check_clients(num_clients, len(labels), min_size, where)
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not (0 < alpha < math.inf):
        raise ValueError(f"{where}: alpha must be a positive finite number, got {alpha!r}")
    max_tries = _check_int(max_tries, "max_tries", where, 1)
    rng = np.random.default_rng(_check_int(seed, "seed", where, 0))
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    cap = len(labels) / num_clients
    for _ in range(max_tries):
        parts = [[] for _ in range(num_clients)]
        sizes = np.zeros(num_clients, dtype=np.int64)
        for idx in members:
            idx = rng.permutation(idx)
            shares = rng.dirichlet(np.full(num_clients, float(alpha)))
            capped = shares * (sizes < cap)
            shares = capped if capped.sum() > 0 else shares
            cuts = (np.cumsum(shares / shares.sum()) * len(idx)).astype(np.int64)[:-1]
            for k, piece in enumerate(np.split(idx, cuts)):
                parts[k].append(piece)
                sizes[k] += len(piece)
        if sizes.min() >= min_size:
            return [np.sort(np.concatenate(p)) for p in parts]
    raise ValueError(
        f"{where}: no draw in {max_tries} gave every one of {num_clients} clients at least min_size={min_size} "
        f"samples (alpha={alpha}, {len(labels)} samples); lower min_size or num_clients, or raise alpha"
    )


def shard_split(labels, num_clients: int, shards_per_client: int = 2, seed: int = 0) -> List[np.ndarray]:
    """Pathological label skew (McMahan et al. 2017): the samples sorted by label (ties in a seeded
    random order) are cut into ``num_clients * shards_per_client`` contiguous shards of equal size
    (up to one sample), dealt at random, ``shards_per_client`` to each client."""
    where = "shard_split"
    labels = _check_labels(labels, where)
    shards_per_client = _check_int(shards_per_client, "shards_per_client", where, 1)
    num_clients = _check_clients(num_clients, len(labels), shards_per_client, where)
    rng = np.random.default_rng(_check_int(seed, "seed", where, 0))
    shuffled = rng.permutation(len(labels))
    by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]
    shards = np.array_split(by_label, num_clients * shards_per_client)
    deal = rng.permutation(len(shards)).reshape(num_clients, shards_per_client)
    return [np.sort(np.concatenate([shards[s] for s in row])) for row in deal]


def label_entropy(labels, parts) -> float:
    """The mean over clients of the entropy (nats) of each client's label distribution: log(C)
    for clients holding C classes equally, 0 for clients holding one class (and for empty ones)."""
    labels = _check_labels(labels, "label_entropy")
    if len(parts) == 0:
        raise ValueError("label_entropy: parts must hold at least one client's indices, got none")
    entropies = []
    for part in parts:
        counts = np.bincount(labels[np.asarray(part, dtype=np.int64)])
        p = counts[counts > 0] / max(counts.sum(), 1)
        entropies.append(float(-(p * np.log(p)).sum()))
    return float(np.mean(entropies))
