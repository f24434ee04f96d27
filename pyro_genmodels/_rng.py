"""Seeding without side effects on the caller's random state."""

from __future__ import annotations

import contextlib
import random
import secrets
from typing import Iterator

import numpy as np
import pyro
import torch


def fresh_seed() -> int:
    """A seed from the OS entropy pool: it does not consume the caller's RNG."""
    return secrets.randbits(31)


def cuda_devices() -> list:
    """The CUDA devices whose RNG a fork must save: all of them once CUDA is in use."""
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[int]:
    """Run the body under ``pyro.set_rng_seed(seed)`` and restore every global RNG after.

    Python's ``random``, NumPy's global state and torch's CPU (and CUDA, when initialized)
    generators are all saved and restored, so a fit or a sample never disturbs the
    caller's random stream. Yields the seed actually used (a fresh one when ``None``).
    """
    if seed is None:
        seed = fresh_seed()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"Expected seed to be a non-negative integer or None, but got {seed!r}")
    py_state = random.getstate()
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=cuda_devices()):
        try:
            pyro.set_rng_seed(int(seed))
            yield int(seed)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
