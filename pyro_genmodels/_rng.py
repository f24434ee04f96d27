"""Seeding without side effects on the caller's random state, and the process lock.

Pyro's effect-handler stack (``pyro.poutine.runtime._PYRO_STACK``) and its param store
are module-level, and torch's, NumPy's and Python's global generators are process-wide:
two fits that use them from two threads at once corrupt each other (a handler popped by
the wrong thread, a parameter read from the other fit's store, draws interleaved). So
every public entry point that touches them (``fit``, every public method of a
:class:`~pyro_genmodels.fit.Fit`, :func:`seeded` itself) runs under one reentrant
process-wide lock, :func:`serialized`. Threads then get exactly the results they would
get one after the other; for parallel speed use processes (``multiprocessing``,
``torchrun``), which share nothing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import secrets
import threading
from typing import Any, Callable, Iterator, List, Optional, Tuple, TypeVar, cast

import numpy as np
import pyro
import torch


_LOCK = threading.RLock()
F = TypeVar("F", bound=Callable[..., Any])


def _new_lock_in_child() -> None:
    """A process forked while another thread held the lock would inherit it held forever;
    the child starts with its own, free lock (it has only the forking thread)."""
    global _LOCK
    _LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


@contextlib.contextmanager
def process_lock() -> Iterator[None]:
    """Hold the process-wide lock (reentrant: a locked call may call another)."""
    lock = _LOCK
    with lock:
        yield


def serialized(fn: F) -> F:
    """``fn`` runs under :func:`process_lock` (marked ``fn.__serialized__``)."""
    @functools.wraps(fn)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with process_lock():
            return fn(*args, **kwargs)

    setattr(locked, "__serialized__", True)  # a function attribute (mypy allows none)
    return cast(F, locked)


def apart(fn: F) -> F:
    """``fn`` (a fit) runs :func:`serialized`, with gradients on, without autocast, and
    apart from the caller's Pyro effect handlers: called under ``torch.no_grad()`` or
    ``torch.inference_mode()`` its loop had no gradients, under ``torch.autocast`` it
    trained in lower precision, and inside the caller's ``poutine.trace`` or
    ``pyro.plate`` its program's sites went into the caller's trace ("Multiple sample
    sites named 'loc'") or its data plate took the next free dimension (the loss of
    another model). Pyro keeps these in module globals, the handler stack, the plates'
    dimensions and the enumeration's, which the fit sets aside (or saves) and puts back
    when it returns."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with process_lock():
            runtime = pyro.poutine.runtime
            kept: List[List[Any]] = [runtime._PYRO_STACK, runtime._DIM_ALLOCATOR._stack]
            callers = [list(k) for k in kept]
            enum = vars(runtime._ENUM_ALLOCATOR)  # an enumerating ELBO resets it
            enum_state = {k: dict(v) if isinstance(v, dict) else v for k, v in enum.items()}
            for k in kept:
                del k[:]
            try:
                with torch.inference_mode(False), torch.enable_grad(), \
                        torch.autocast("cpu", enabled=False), \
                        torch.autocast("cuda", enabled=False):
                    return fn(*args, **kwargs)
            finally:
                for k, c in zip(kept, callers):
                    k[:] = c
                enum.clear()
                enum.update(enum_state)

    setattr(run, "__serialized__", True)
    return cast(F, run)


#: the largest seed; NumPy's global generator takes seeds in [0, 2**32 - 1]
MAX_SEED = 2**32 - 1


def check_seed(seed: Any, name: str = "seed") -> Optional[int]:
    """``seed`` as an ``int`` in ``[0, MAX_SEED]``, or ``None``; else a ValueError that
    says what was expected and what came."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) \
            or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"Expected {name} to be None or an integer in [0, 2**32 - 1], "
                         f"but got {seed!r}")
    return int(seed)


def child_seeds(seed: int, n: int) -> Tuple[int, ...]:
    """``n`` seeds derived from ``seed`` by NumPy's ``SeedSequence.spawn``: independent
    streams, which ``seed + 1, ..., seed + n - 1`` are not (the second stream of seed s
    would be the first of seed s + 1)."""
    return tuple(int(c.generate_state(1)[0]) for c in np.random.SeedSequence(seed).spawn(n))


def fresh_seed() -> int:
    """A seed from the OS entropy pool: it does not consume the caller's RNG."""
    return secrets.randbits(31)


def cuda_devices() -> List[int]:
    """The CUDA devices whose RNG a fork must save: all of them once CUDA is in use."""
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[int]:
    """Run the body under ``pyro.set_rng_seed(seed)`` and restore every global RNG after.

    Python's ``random``, NumPy's global state and torch's CPU (and CUDA, when initialized)
    generators are all saved and restored, so a fit or a sample never disturbs the
    caller's random stream. Yields the seed actually used (a fresh one when ``None``).
    The body holds the process lock: the global generators are the process's.

    Public as ``pgm.seeded``, to build a network family reproducibly: its initial weights
    are drawn when it is built, from torch's global generator, which torch seeds afresh
    in each process.

    Example:
        >>> import torch, pyro_genmodels as pgm
        >>> with pgm.seeded(0):
        ...     a = pgm.Flow(2, hidden=(8,))
        >>> with pgm.seeded(0):
        ...     b = pgm.Flow(2, hidden=(8,))
        >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        True
    """
    seed = check_seed(seed)
    if seed is None:
        seed = fresh_seed()
    with process_lock():
        py_state = random.getstate()
        np_state = np.random.get_state()
        with torch.random.fork_rng(devices=cuda_devices()):
            try:
                pyro.set_rng_seed(seed)
                yield seed
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
