"""Fits side by side on held-out data: the analyst's "MLE vs MAP vs full Bayes" table."""

from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd

from .base import Fit


def compare(fits: Mapping[str, Fit], heldout: Any, *, loo: bool = True) -> pd.DataFrame:
    """Compare fits of the same data on ``heldout`` points.

    Args:
        fits: ``{label: Fit}``.
        heldout: ``(M, D)`` points none of the fits was trained on.
        loo: also compute PSIS-LOO (``az.loo``) on the training data of posterior fits.

    Returns:
        A DataFrame indexed by the labels with columns ``method``, ``model``,
        ``heldout_log_prob`` (mean log p(x) per held-out point) and its standard error
        ``heldout_log_prob_se``, ``log_prob_kind``, ``train_log_prob`` (mean per
        training point), ``num_params``, and for posterior fits ``elpd_loo`` (total, as
        ArviZ reports it), ``elpd_loo_se``, ``p_loo`` and ``loo_log_prob`` (``elpd_loo``
        per training point, comparable with ``heldout_log_prob``) and ``pareto_k_max``
        (PSIS reliability: above 0.7 the LOO estimate is not trustworthy); NaN for point fits.
    """
    if not isinstance(fits, Mapping) or not fits:
        raise TypeError("fits must be a non-empty dict {label: Fit}")
    for label, fit in fits.items():
        if not isinstance(fit, Fit):
            raise TypeError(f"fits[{label!r}] must be a Fit, got {type(fit).__name__}")
    rows = {}
    for label, fit in fits.items():
        lp = fit.log_prob(heldout)
        n = lp.shape[0]
        row = {
            "method": fit.method,
            "model": type(fit.model).__name__,
            "heldout_log_prob": lp.mean().item(),
            "heldout_log_prob_se": lp.std().item() / math.sqrt(n) if n > 1 else math.nan,
            "log_prob_kind": fit.log_prob_kind,
            "train_log_prob": (fit.log_prob(fit.data).mean().item()
                               if fit.data is not None else math.nan),
            "num_params": fit.model.num_params(),
            "elpd_loo": math.nan, "elpd_loo_se": math.nan, "p_loo": math.nan,
            "loo_log_prob": math.nan, "pareto_k_max": math.nan,
        }
        if loo and fit.is_posterior and fit.data is not None:
            import arviz as az

            res = az.loo(fit.to_arviz(posterior_predictive=False), pointwise=True)
            row.update(elpd_loo=float(res["elpd_loo"]), elpd_loo_se=float(res["se"]),
                       p_loo=float(res["p_loo"]), pareto_k_max=float(res["pareto_k"].max()),
                       loo_log_prob=float(res["elpd_loo"]) / fit.data.shape[0])
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index")
