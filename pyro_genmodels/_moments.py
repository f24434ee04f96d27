"""Column statistics of data rows: each column's scale, constancy and moments.

The families standardize by these, the refusals of constant columns and the starting
points read them, and streamed rows (:mod:`~pyro_genmodels.infer.streaming`) fold into the
same :class:`ColumnMoments` as rows in memory, so a file and a tensor give one answer."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from ._columns import said


def exact_dtype(t: torch.Tensor) -> torch.dtype:
    """float64, the dtype that sums and factorizations which must not lose digits are
    formed in (moments, closed forms, a sampler's cumulative sums); on MPS, which has no
    float64, ``t``'s own dtype."""
    return t.dtype if t.device.type == "mps" else torch.float64


def column_units(x: torch.Tensor) -> torch.Tensor:
    """``(D,)``: the scale of each column of ``x`` ``(N, D)``, the unit in which a
    family's ``param_units`` measures a location: the column's sd; for a constant
    column (no sd) its largest magnitude, and 1 for a column of zeros. Relative, so no
    unit of the data counts as "too small"."""
    sd = x.std(0, correction=0)
    size = x.abs().amax(0)
    fallback = torch.where(size > 0, size, torch.ones_like(size))
    return torch.where(torch.isfinite(sd) & (sd > 0), sd, fallback)


def constant_columns(x: torch.Tensor) -> torch.Tensor:
    """``(D,)`` bool: the columns of ``x`` ``(N, D)`` that do not vary. Each column is
    measured against its own magnitude (one huge column does not make the others look
    constant) and in units of it (a column of tiny numbers is not a constant one), in
    float64: constant to within ``x.dtype``'s epsilon. A single row is constant."""
    x64 = x.double()
    size = x64.abs().amax(0)
    rel = (x64 / torch.where(size > 0, size, torch.ones_like(size))).std(0, correction=0)
    return rel <= torch.finfo(x.dtype).eps


#: rows per block of :func:`column_moments` at most: a float64 copy of one block at a time
MOMENT_BLOCK_ROWS = 1 << 16
#: numbers per block of :func:`column_moments` at most (2 MiB in float64: wide rows, fewer)
MOMENT_BLOCK_ELEMENTS = 1 << 18


def column_moments(x: torch.Tensor):
    """``(mean, sd)`` of the columns of ``x`` ``(N, D)`` for standardizing them, computed
    in float64 (MPS: its dtype) and returned in ``x``'s; a column whose values are all
    equal (a single row) gets sd 1 (:func:`unit_sd`). The rows go through
    :class:`ColumnMoments` block by block, as streamed rows do, a block at most
    :data:`MOMENT_BLOCK_ROWS` rows and :data:`MOMENT_BLOCK_ELEMENTS` numbers, so ``x`` is
    never copied whole to float64 (which doubled the memory of float32 data)."""
    acc = ColumnMoments()
    x = x.detach()
    rows = max(1, min(MOMENT_BLOCK_ROWS, MOMENT_BLOCK_ELEMENTS // max(1, x.shape[-1])))
    for start in range(0, x.shape[0], rows):
        acc.add(x[start:start + rows])
    return acc.result()


class ColumnMoments:
    """Column means, sums of squared deviations, minima and maxima of blocks of rows,
    merged block after block (float64, MPS: the rows' dtype; Chan et al.'s pairwise
    update): :func:`column_moments` of rows in memory and the moments of streamed rows
    (:mod:`~pyro_genmodels.infer.streaming`) are the same computation."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: Optional[torch.Tensor] = None
        self.m2: Optional[torch.Tensor] = None
        self.lo: Optional[torch.Tensor] = None
        self.hi: Optional[torch.Tensor] = None
        self.dtype: Optional[torch.dtype] = None

    def add(self, x: torch.Tensor) -> None:
        """Fold the rows ``x`` ``(k, D)`` in."""
        k = x.shape[0]
        if k == 0:
            return
        self.dtype = x.dtype
        xd = x.to(exact_dtype(x))
        mu = xd.mean(0)
        s2 = (xd - mu).square_().sum(0)  # two passes (var_mean's one: 20x coarser at 1e8)
        lo, hi = xd.amin(0), xd.amax(0)
        self.lo = lo if self.lo is None else torch.minimum(self.lo, lo)
        self.hi = hi if self.hi is None else torch.maximum(self.hi, hi)
        if self.mean is None or self.m2 is None:
            self.n, self.mean, self.m2 = k, mu, s2
            return
        delta = mu - self.mean
        total = self.n + k
        self.mean = self.mean + delta * (k / total)
        self.m2 = self.m2 + s2 + delta ** 2 * (self.n * k / total)
        self.n = total

    def result(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(mean, sd)`` in the rows' dtype, sd 1 where a column does not vary (:func:`unit_sd`);
        a variance that underflows the sums' dtype (float64: within 1.5e-154), or whose sum
        overflows it, is a ValueError."""
        mean, m2, n, lo, hi = self.mean, self.m2, self.n, self.lo, self.hi
        if mean is None or m2 is None or lo is None or hi is None or self.dtype is None:
            raise ValueError("column moments of no rows")
        var = m2 / (n - 1) if n > 1 else torch.zeros_like(mean)
        tiny = (hi > lo) & (var < torch.finfo(var.dtype).tiny)
        if bool(tiny.any()):  # a subnormal or 0 variance: a sd of 0 made the loss NaN
            raise ValueError(f"column(s) {said(tiny)} vary, but by so "
                             f"little that their variance underflows {var.dtype} (sd below "
                             f"{math.sqrt(torch.finfo(var.dtype).tiny):.1e}): rescale the data")
        huge = (hi > lo) & ~torch.isfinite(var)
        if bool(huge.any()):  # finite rows whose squared deviations summed overflow
            raise ValueError(f"column(s) {said(huge)} vary by so much that the sum of their "
                             f"squared deviations overflows {var.dtype} (n x sd^2 above "
                             f"{torch.finfo(var.dtype).max:.1e}): rescale the data")
        return mean.to(self.dtype), unit_sd(var.sqrt(), hi > lo).to(self.dtype)


def unit_sd(sd: torch.Tensor, varies: torch.Tensor) -> torch.Tensor:
    """``sd`` ``(D,)`` where a column ``varies`` (not all equal), else 1 (also where not
    finite). Exact, so no unit is too small or too large: an absolute floor (sd 1e-8) left
    wine in units of 1e-9 unscaled, one relative to the column's size float32 columns
    that vary by a few steps of their precision."""
    return torch.where(torch.isfinite(sd) & varies, sd, torch.ones_like(sd))
