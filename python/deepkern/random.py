"""The random generators behind deepkern's initialisers, dropout and ``randn``/``rand``:
``manual_seed(n)`` makes a run repeatable.

Two states follow one seed: a NumPy generator (initialisers, ``randn``, ``rand``) and, for the
kernels that draw on the device, a Philox state ``(seed, offset)`` as PyTorch's: each kernel call
gets the current pair from :func:`philox_seed_offset` and the offset advances by the counters the
call consumes, so consecutive calls draw disjoint parts of one stream, the same on every device.
"""

from __future__ import annotations

import json

import numpy as np

__all__ = [
    "manual_seed",
    "get_generator",
    "seed",
    "initial_seed",
    "get_rng_state",
    "set_rng_state",
    "Generator",
    "philox_seed_offset",
    "get_philox_state",
    "set_philox_state",
]

_MASK64 = (1 << 64) - 1

_initial = [int(np.random.SeedSequence().entropy) & _MASK64]  # the seed of the default generator
_generator = np.random.default_rng(_initial[0])
_philox = [_initial[0], 0]  # [seed, offset]


def manual_seed(seed: int) -> np.random.Generator:
    """Reseeds the default generator and the Philox state (offset 0), as PyTorch's
    ``torch.manual_seed``, and returns the generator."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
    _generator = keyed_generator(seed)
    _philox[:] = [int(seed) & _MASK64, 0]
    _initial[0] = int(seed)
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


def initial_seed() -> int:
    """The seed of the default generator (the last :func:`manual_seed`, or the one drawn at import)."""
    return _initial[0]


def get_rng_state():
    """The default generator's state and the Philox state as a uint8 tensor (PyTorch's
    ``torch.get_rng_state``), to save in a checkpoint and give back to :func:`set_rng_state`."""
    from .tensor import Tensor

    state = {"numpy": _generator.bit_generator.state, "philox": list(_philox), "seed": _initial[0]}
    return Tensor._wrap(np.frombuffer(json.dumps(state).encode(), dtype=np.uint8).copy())


def set_rng_state(new_state) -> None:
    """Restores a state from :func:`get_rng_state` (a uint8 tensor or array)."""
    raw = np.asarray(new_state.numpy() if hasattr(new_state, "numpy") else new_state)
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError
        state = json.loads(raw.tobytes().decode())
        generator = np.random.default_rng()
        generator.bit_generator.state = state["numpy"]
        set_philox_state(tuple(state["philox"]))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ValueError("set_rng_state: expected a state from deepkern.get_rng_state (a 1-D uint8 tensor)") from None
    global _generator
    _generator = generator
    _initial[0] = int(state["seed"])


class Generator:
    """PyTorch's ``torch.Generator``: a seeded stream of its own, for ``generator=`` of the random
    functions, ``DataLoader`` and the samplers. It draws with a NumPy generator, whose methods it
    offers (``uniform``, ``normal``, ``random``, ``integers``, ``permutation``, ...)."""

    def __init__(self, device="cpu"):
        self.device = device
        self.manual_seed(int(np.random.SeedSequence().entropy) & _MASK64)

    def manual_seed(self, seed: int) -> "Generator":
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"Generator.manual_seed: seed must be an int, got {type(seed).__name__}")
        self._seed, self._numpy = int(seed), keyed_generator(seed)
        return self

    def seed(self) -> int:
        fresh = int(np.random.SeedSequence().entropy % (1 << 63))
        self.manual_seed(fresh)
        return fresh

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict:
        return {"seed": self._seed, "numpy": self._numpy.bit_generator.state}

    def set_state(self, state: dict) -> "Generator":
        self._seed = int(state["seed"])
        self._numpy.bit_generator.state = state["numpy"]
        return self

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._numpy, name)
