"""Fit -> :class:`arviz.InferenceData`, built with ``az.from_dict`` (present in ArviZ 0.x
and 1.x) rather than ``az.from_pyro``.

Groups:

* ``posterior``: the global sites and derived quantities, dims ``(chain, draw, ...)``.
  Point fits (``mle``/``map``) have one chain of one draw, and ``attrs["point_estimate"]``
  names the method, so nobody mistakes it for a posterior.
* ``log_likelihood``: ``x`` = ``log p(x_i | phi_s)`` per training point (posterior fits),
  which is what ``az.loo`` / ``az.waic`` / ``az.compare`` read.
* ``posterior_predictive``: one replicate of the training set per draw (posterior fits).
* ``sample_stats``: MCMC per-draw ``diverging``, ``step_size``, ``lp``.
* ``observed_data``: the training data ``x``.
* ``optimization``: the loss trace ``loss`` over ``step`` (optimized fits).
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch


def _np(d: Dict[str, torch.Tensor]) -> Dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in d.items()}


def to_inference_data(fit, *, posterior_predictive: bool = True, max_predictive_size: int = 20_000_000):
    """Build the InferenceData of ``fit`` (see the module docstring for the groups).

    Args:
        posterior_predictive: include one replicated data set per posterior draw, unless
            it would hold more than ``max_predictive_size`` numbers.
    """
    import arviz as az
    import xarray as xr

    from ._version import __version__

    attrs: Dict[str, Any] = {
        "inference_library": "pyro",
        "inference_library_version": __import__("pyro").__version__,
        "creation_library": "pyro_genmodels",
        "creation_library_version": __version__,
        "inference_method": fit.method,
        "model": type(fit.model).__name__,
        "log_prob_kind": fit.log_prob_kind,
    }
    if fit.seed is not None:
        attrs["seed"] = int(fit.seed)
    groups: Dict[str, Any] = {}
    if fit.point is not None:
        point = {**fit.point, **fit.model.derived(fit.point)}
        if point:  # a network's weights are not posterior variables: they stay in the fit
            groups["posterior"] = {k: v[None, None] for k, v in _np(point).items()}
        attrs["point_estimate"] = fit.method
    else:
        chains, draws = next(iter(fit.posterior.values())).shape[:2]
        flat = fit.posterior_samples()
        derived = {k: v.reshape((chains, draws) + v.shape[1:])
                   for k, v in fit.model.derived(flat).items()}
        groups["posterior"] = _np({**fit.posterior, **derived})
        if fit.data is not None:
            groups["log_likelihood"] = {fit.model.observed_site:
                                        fit.pointwise_log_likelihood().cpu().numpy()}
            size = chains * draws * fit.data.numel()
            if posterior_predictive and size <= max_predictive_size:
                with torch.no_grad():
                    rep = fit.model.replicate_given(flat, fit.data.shape[0])
                groups["posterior_predictive"] = {fit.model.observed_site: rep.reshape(
                    (chains, draws) + rep.shape[1:]).cpu().numpy()}
        if fit.sample_stats:
            groups["sample_stats"] = _np(fit.sample_stats)
    if fit.data is not None:
        groups["observed_data"] = {fit.model.observed_site: fit.data.cpu().numpy()}
    idata = az.from_dict(**groups, attrs=attrs)
    if fit.losses:
        idata.add_groups(
            {"optimization": xr.Dataset({"loss": ("step", np.asarray(fit.losses))},
                                        attrs={"meaning": "loss minimized at each step "
                                               "(negative log joint / negative ELBO)"})},
            warn_on_custom_groups=False)
    return idata
