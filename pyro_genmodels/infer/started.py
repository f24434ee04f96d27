"""``mle`` from the closed-form maximum: for the families that know their
maximum-likelihood estimate (``mle_values``: the Gaussian's sample moments, PPCA's
Tipping & Bishop solution), the loop starts there and the fit keeps whichever of the
start and the loop's end scores higher.

Why the loop runs at all: the fit is then the same kind of object as every other
``mle`` fit (a loss trace, held-out rows and early stopping, checkpoints, minibatches
and streamed data, which no closed form covers), and a start that is not exactly the
maximum (float32 rows, rounding) is polished by it.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Dict

import torch

from .._moments import column_units, exact_dtype
from .engines import Data, GenerativeModel, PointEngine, PointOptions
from .loop import FitResult


class StartedAtMLE(PointEngine):
    """``mle``: the loop from the closed-form maximum (the family's ``mle_values``),
    stepping in the family's ``param_units`` (the Gaussian's ``loc`` in column sds),
    keeping that start where the loop ended below it on the training rows.

    At an exact maximum the gradient is rounding noise, which Adam divides by its own
    size: each step moves every coordinate by about ``lr`` whatever the gradient (in
    column sds, the Gaussian on raw breast cancer ended 0.37 nats per row below its
    start after 300 steps and 1e-5 after 1500, the loss trace climbing first). So with
    the rows in memory and no held-out rows (which choose the point themselves), the
    fit is whichever of the start and the loop's end has the higher mean
    log-likelihood, both scored in float64 (in float32 a point far off the maximum can
    score millions of nats above it); where it is the start, by more than 1e-9
    relative, ``info["kept_start"]`` is how many nats per row the end was below it (the
    loss trace is the loop's). A loop that stepped off the maximum into a non-finite loss
    (PPCA on wine times 1e-10 in float32) ended infinitely below it: the fit is the start,
    not a ``FitError`` (a warning says so), and ``info["kept_start"]`` says where the
    loop stopped. With held-out rows or streamed data the loop's point stands, as for
    any ``mle`` fit."""

    def run(self, model: GenerativeModel, data: Data, opts: PointOptions, *, method: str,
            progress: bool) -> FitResult:
        result = super().run(model, data, opts, method=method, progress=progress)
        if data.stream is not None or data.x_val is not None or not result.point:
            return result
        start = self.start(model, data.x)
        exact = exact_dtype(data.x)
        scorer = copy.deepcopy(model).to(exact)
        x = data.x.to(exact)

        def score(point: Dict[str, torch.Tensor]) -> float:
            with torch.no_grad():
                return float(scorer.log_prob_given({k: v.to(exact) for k, v in point.items()},
                                                   x).mean())

        at_start = score(start)
        # a loop that stepped off the maximum into overflow ended far below it (its last
        # point need not even be a valid parameter: an inf Cholesky factor)
        at_end = -math.inf if result.error is not None else score(result.point)
        # relative to the log-likelihood in the columns' own units: a change of units
        # shifts it by -sum(log unit), which widened the tolerance (x 1e50: the end kept
        # 5e-5 sds off the maximum, where in the data's units the start was kept)
        standard = at_start + float(torch.log(column_units(x)).sum())
        if not math.isfinite(at_start) or at_end >= at_start - 1e-9 * max(1.0, abs(standard)):
            return result
        result.point = start
        result.info["kept_start"] = (
            at_start - at_end if math.isfinite(at_end)
            else f"the loop stopped: {result.error.summary}" if result.error is not None
            else "the loop ended at a non-finite log-likelihood")
        if result.error is not None:
            warnings.warn(f"{type(model).__name__}'s mle loop stopped: {result.error.summary}. "
                          f"The fit is the closed-form maximum the loop started from",
                          UserWarning, stacklevel=5)  # run, _fit_with, fit, locked: the caller
            result.error = None
        return result

    def start(self, model: GenerativeModel, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The closed-form maximum, the family's ``mle_values`` (the other methods start
        from ``init_values``, which need not be it)."""
        return model.mle_values(x)


class StartedAtMLEInDataUnits(StartedAtMLE):
    """:class:`StartedAtMLE` stepping in the data's own units (standardized ones with
    ``standardize=True``): PPCA's ``mle``, whose one noise sd is shared by every column.
    In column sds its first steps moved raw breast cancer 7e-4 nats per row off the
    maximum; in the data's natural units they move it by rounding (raw wine and breast
    cancer in float64: 1e-11 relative), and in tiny units far off (wine times 1e-4: 24
    nats per row below the maximum in float64, 29 in float32; times 1e-8 in float32:
    about 15,700), where the kept start makes the fit the maximum. Not for a family
    with a scale per column: the Gaussian's ``loc`` would step by ``lr`` on columns of
    sd 0.003 (raw breast cancer: 5 nats per row below the maximum with held-out rows)."""

    def units(self, model: GenerativeModel, x: torch.Tensor) -> None:
        """None: the data's own units (the class docstring says why)."""
        return None


__all__ = ["StartedAtMLE", "StartedAtMLEInDataUnits"]
