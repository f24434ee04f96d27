"""The names of the data's columns while a fit checks its data, for the messages that
name columns (a constant column, a prior that moves some columns): a DataFrame's names,
or a .csv header's, which the command line passes as a DataFrame. A context variable,
so two fits in two threads each see their own."""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Iterator, Optional, Sequence, Tuple, Union

import torch

_NAMES: ContextVar[Optional[Tuple[str, ...]]] = ContextVar("pyro_genmodels_columns",
                                                            default=None)


@contextlib.contextmanager
def named(names: Optional[Sequence[str]]) -> Iterator[None]:
    """Within the block, :func:`said` names columns by ``names`` (``None``: by index
    alone)."""
    token = _NAMES.set(None if names is None else tuple(names))
    try:
        yield
    finally:
        _NAMES.reset(token)


def said(columns: Union[torch.Tensor, Sequence[int]]) -> str:
    """Columns as a message says them: ``[4, 12]``, or ``[4, 12] (magnesium, proline)``
    where the data's columns have names. ``columns``: a boolean mask ``(D,)`` or the
    indices."""
    if isinstance(columns, torch.Tensor) and columns.dtype == torch.bool:
        index = columns.nonzero().flatten().tolist()
    else:
        index = [int(j) for j in columns]
    names = _NAMES.get()
    if names is None or any(not 0 <= j < len(names) for j in index):
        return f"{index}"
    return f"{index} ({', '.join(names[j] for j in index)})"


__all__ = ["named", "said"]
