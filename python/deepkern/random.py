"""The random generator behind deepkern's initialisers, dropout and ``randn``/``rand``:
``manual_seed(n)`` makes a run repeatable."""

from __future__ import annotations

import numpy as np

__all__ = ["manual_seed", "get_generator", "seed"]

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseeds the default generator (PyTorch's ``torch.manual_seed``) and returns it."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def seed() -> int:
    """Reseeds the default generator from fresh entropy and returns the seed used."""
    fresh = int(np.random.SeedSequence().entropy % (1 << 63))
    manual_seed(fresh)
    return fresh


def get_generator() -> np.random.Generator:
    """The default generator (reseeded by :func:`manual_seed`)."""
    return _generator
