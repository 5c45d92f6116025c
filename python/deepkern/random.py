"""The random generators behind deepkern's initialisers, dropout and ``randn``/``rand``:
``manual_seed(n)`` makes a run repeatable.

Two states follow one seed: a NumPy generator (initialisers, ``randn``, ``rand``) and, for the
kernels that draw on the device, a Philox state ``(seed, offset)`` as PyTorch's: each kernel call
gets the current pair from :func:`philox_seed_offset` and the offset advances by the counters the
call consumes, so consecutive calls draw disjoint parts of one stream, the same on every device.
"""

from __future__ import annotations

import numpy as np

__all__ = ["manual_seed", "get_generator", "seed", "philox_seed_offset", "get_philox_state", "set_philox_state"]

_MASK64 = (1 << 64) - 1

_generator = np.random.default_rng()
_philox = [int(np.random.SeedSequence().entropy) & _MASK64, 0]  # [seed, offset]


def manual_seed(seed: int) -> np.random.Generator:
    """Reseeds the default generator and the Philox state (offset 0), as PyTorch's
    ``torch.manual_seed``, and returns the generator."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
    _generator = keyed_generator(seed)
    _philox[:] = [int(seed) & _MASK64, 0]
    return _generator


def keyed_generator(*keys: int) -> np.random.Generator:
    """A generator whose stream is fixed by ``keys`` (a seed; a seed and an epoch, ...). A negative
    key counts as 2**64 + key (PyTorch's reading of a negative seed: ``manual_seed(-1)`` is
    ``manual_seed(2**64 - 1)``); NumPy's seeding takes non-negative integers only."""
    return np.random.default_rng([int(k) if k >= 0 else int(k) & _MASK64 for k in keys])


def seed() -> int:
    """Reseeds the default generator from fresh entropy and returns the seed used."""
    fresh = int(np.random.SeedSequence().entropy % (1 << 63))
    manual_seed(fresh)
    return fresh


def get_generator() -> np.random.Generator:
    """The default generator (reseeded by :func:`manual_seed`)."""
    return _generator


def philox_seed_offset(increment: int) -> tuple[int, int]:
    """The ``(seed, offset)`` for a call that consumes ``increment`` Philox counters (e.g.
    ``deepkern.ops.dropout.counters(n)``); the offset then advances by ``increment`` (modulo 2**64)."""
    if isinstance(increment, bool) or not isinstance(increment, (int, np.integer)) or increment < 0:
        raise ValueError(f"philox_seed_offset: increment must be an int >= 0, got {increment!r}")
    current = (_philox[0], _philox[1])
    _philox[1] = (_philox[1] + int(increment)) & _MASK64
    return current


def get_philox_state() -> tuple[int, int]:
    """The Philox state ``(seed, offset)`` the next call will use (for checkpoints)."""
    return _philox[0], _philox[1]


def set_philox_state(state) -> None:
    """Restores a state from :func:`get_philox_state`."""
    seed_, offset = state
    for name, value in (("seed", seed_), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= _MASK64:
            raise ValueError(f"set_philox_state: {name} must be an int in [0, 2**64), got {value!r}")
    _philox[:] = [int(seed_), int(offset)]
