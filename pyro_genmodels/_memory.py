"""Bounded memory for ``log_prob`` and ``sample``: rows in chunks, written into one output
as they come, and a failed allocation said as the caller's request.

The chunk size itself is :data:`pyro_genmodels.fit.CHUNK_ELEMENTS` (read at call time,
so a test can shrink it); :func:`row_width` says how many numbers a family holds per row.
"""

from __future__ import annotations

import contextlib
import gc
import math
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

import numpy as np
import torch

from ._validation import first_line, positive_int

if TYPE_CHECKING:
    from .base import GenerativeModel


def row_width(model: GenerativeModel) -> int:
    """The numbers per row that ``model``'s ``log_prob`` / ``sample`` hold at once (for one
    draw of phi), which sets the rows per chunk. A family states it by a ``row_width``
    attribute (an int, or a method of no arguments); otherwise it is read off the model:
    the widest of D x K (a mixture's K components, or an output's K categories per
    column) and 4 x its widest hidden layer (a layer's input, output and activation
    live together, and a spline or coupling transform holds a few more per row)."""
    own = getattr(model, "row_width", None)
    if own is not None:
        return positive_int(own() if callable(own) else own, "row_width")
    widths = [int(model.dim)]
    for name in ("n_components", "num_categories"):
        k = getattr(model, name, None)
        if isinstance(k, int) and k > 1:
            widths.append(int(model.dim) * k)
    hidden = getattr(model, "hidden", None) or ()
    widths += [4 * int(h) for h in hidden if isinstance(h, int)]
    return max(widths)


def out_of_memory(e: BaseException) -> bool:
    """A failed allocation: Python's MemoryError, or torch's error for a tensor whose size
    cannot be allocated or even computed (an ``n`` or ``max_length`` far too large)."""
    return isinstance(e, MemoryError) or any(  # torch's OutOfMemoryError says so too
        s in str(e) for s in ("can't allocate memory", "out of memory",
                              "Storage size calculation overflowed"))


@contextlib.contextmanager
def fits_in_memory(what: str) -> Iterator[None]:
    """A failed allocation inside the block (:func:`out_of_memory`) as a ``ValueError``
    that names ``what`` was asked (``"n = 10**12 draws"``): a request too large for the
    machine is the caller's argument, not an error from inside torch. Other errors
    pass."""
    try:
        yield
    except (RuntimeError, MemoryError) as e:
        if not out_of_memory(e):
            raise
        raise ValueError(f"{what} do not fit in memory "
                         f"({first_line(e) or type(e).__name__})") from None


def chunked(n: int, rows: int, part: Callable[[int, int], torch.Tensor]) -> torch.Tensor:
    """``part(start, stop)`` for consecutive chunks of at most ``rows`` of the ``n`` rows,
    in order, written into one ``(n, ...)`` tensor as they come (allocated at the first
    chunk: no list of chunks and no ``torch.cat``, so the output is held once). One chunk
    is returned as computed.

    Between chunks the young generations of the garbage collector are collected (about
    a millisecond): what a chunk leaves in reference cycles (a zuko flow's transforms
    hold their spline tensors in cycles) would otherwise wait for a full collection and
    pile up, chunk after chunk, to many chunks' worth."""
    out: Optional[torch.Tensor] = None
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        got = part(start, stop)
        if out is None:
            if stop == n:
                return got
            shape = (n,) + tuple(got.shape[1:])
            try:
                out = got.new_empty(shape)
            except (RuntimeError, MemoryError) as e:  # the allocator's, or an overflow
                size = math.prod(shape) * got.element_size()
                raise ValueError(f"n = {n} rows do not fit in memory: the output {shape} "
                                 f"of {got.dtype} needs {size:.3g} bytes ({e})") from None
        out[start:stop] = got
        del got
        gc.collect(1)
    assert out is not None  # n >= 1 rows: the first chunk made it (or was returned)
    return out


def _rows_of(t: Optional[torch.Tensor], start: int, stop: int) -> Optional[torch.Tensor]:
    return None if t is None else t[start:stop]


def chunk_seed(seed: Optional[int], index: int) -> Optional[int]:
    """The seed of chunk ``index``'s own draws when each chunk is seeded afresh (an ODE
    likelihood's Hutchinson probes): ``seed`` itself for the first chunk, so a call of
    one chunk draws what an unchunked one did, and for the others a seed mixed from
    ``(seed, index)``, so chunks do not repeat each other's draws. ``None`` stays
    ``None`` (fresh draws)."""
    if seed is None or index == 0:
        return seed
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def draw_count(n: Any) -> int:
    """``n`` checked as the number of draws of a ``sample`` call (a positive int); one of
    ``2**63`` or more, beyond torch's sizes (which torch refused with a ``TypeError``
    from inside), is a ``ValueError`` as any count too large for memory is."""
    n = positive_int(n, "n")
    if n >= 2 ** 63:
        raise ValueError(f"n = {n} draws do not fit in memory (a tensor holds fewer than "
                         f"2**63 numbers)")
    return n
