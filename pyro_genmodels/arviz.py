"""Fit -> :class:`arviz.InferenceData`, built with ``az.from_dict`` (present in ArviZ 0.x
and 1.x) rather than ``az.from_pyro``.

Groups:

* ``posterior``: the global sites and derived quantities, dims ``(chain, draw, ...)``.
  Point fits (``mle``/``map``) have one chain of one draw, and ``attrs["point_estimate"]``
  names the method, so nobody mistakes it for a posterior; the network families have
  no global sites (their weights stay in the fit), so no ``posterior``.
* ``log_likelihood``: ``x`` = ``log p(x_i | phi_s)`` per training point (posterior fits),
  which is what ``az.loo`` / ``az.waic`` / ``az.compare`` read.
* ``posterior_predictive``: one replicate of the training set per draw (posterior fits).
* ``sample_stats``: MCMC per-draw ``diverging`` (bool), ``acceptance_rate``,
  ``step_size``, ``lp``, ``energy`` and ``n_steps`` (leapfrog steps, an integer).
* ``observed_data``: the training data ``x`` (every fit that keeps it).
* ``constant_data``: a conditional fit's conditions ``c`` as the fit keeps them,
  ``(row, condition)`` labelled with a DataFrame's column names (a sequence model's class
  labels: ``(row,)``), ArviZ's group for covariates.
* ``optimization``: the loss trace ``loss`` over ``step`` (optimized fits).

The InferenceData's own ``attrs`` name the library, method, model and seed; a fit
stopped by Ctrl-C adds ``attrs["interrupted"] = 1`` (an int: NetCDF has no booleans), so
fewer chains, draws or steps than asked are not taken for a finished run.

Dimensions are named by the family (:meth:`~pyro_genmodels.GenerativeModel.arviz_dims`):
``x`` is ``(row, column)`` (sequences: ``(row, position)``), its log-likelihood ``(row,)``,
and the sites ``column``, ``component``, ``latent``, ... ``column`` is labelled with the
data's column names where the fit knows them (a DataFrame's columns, a CSV header), the
n-gram's ``token`` and ``context`` with its vocabulary. With one column, the
log-likelihood is ``(row, column)`` too, so that ``az.loo_pit`` and ``az.plot_loo_pit``
pair each observation with its own log-likelihood; with several, :func:`loo_log_weights`
gives them the row's weights for every column.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch

from ._frames import outside_level


def _np(d: Dict[str, torch.Tensor]) -> Dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in d.items()}


def _coords(fit, dims: Dict[str, Tuple[str, ...]], shapes: Dict[str, Tuple[int, ...]]
            ) -> Dict[str, Any]:
    """Labels of the named dimensions: the family's, the column names the fit recorded
    (if there are as many as columns), the conditions' column names (``condition``), and
    positions for the rest."""
    labels: Dict[str, Any] = dict(fit.model.arviz_coords())
    columns = fit.info.get("columns")
    sizes: Dict[str, int] = {}
    for name, shape in shapes.items():
        for dim, size in zip(dims.get(name, ()), shape):
            sizes[dim] = size
    for dim, size in sizes.items():
        given = (columns if dim in ("column", "column_bis") else
                 fit.info.get("context_columns") if dim == "condition" else labels.get(dim))
        labels[dim] = list(given) if given is not None and len(given) == size else np.arange(size)
    return labels


def _dataset(data: Dict[str, np.ndarray], dims: Dict[str, Tuple[str, ...]], coords,
             *, sampled: bool):
    """One group: ``sampled`` variables lead with ``(chain, draw)``."""
    import arviz as az

    lead = 2 if sampled else 0
    for name, value in data.items():
        named = dims.get(name)
        if named is not None and len(named) != value.ndim - lead:
            raise ValueError(f"arviz_dims names {len(named)} dimensions for {name!r} "
                             f"({named}), but its values have shape {value.shape[lead:]}")
    used = {k: list(v) for k, v in dims.items() if k in data}
    return az.dict_to_dataset(data, coords=coords, dims=used,
                              default_dims=None if sampled else [])


def to_inference_data(fit, *, posterior_predictive: bool = True,
                      max_predictive_size: int = 20_000_000, seed: Optional[int] = None):
    """Build the InferenceData of ``fit`` (see the module docstring for the groups).

    Args:
        fit: a :class:`~pyro_genmodels.Fit`, of a point estimate or of posterior draws.
        posterior_predictive: include one replicated data set per posterior draw, unless
            it would hold more than ``max_predictive_size`` numbers.
        max_predictive_size: the most numbers (chains x draws x entries of the training
            data) the ``posterior_predictive`` group may hold; a bigger one is left out.
        seed: the seed of the replicated data sets; ``None``: the fit's own (0 for a fit
            without one), so the same fit gives the same InferenceData, also after
            ``save`` and ``load``. The caller's random state is left as it was.
    """
    import arviz as az
    import xarray as xr

    from ._rng import check_seed, seeded
    from ._validation import check_bool, positive_int
    from ._version import __version__

    posterior_predictive = check_bool(posterior_predictive, "posterior_predictive")
    max_predictive_size = positive_int(max_predictive_size, "max_predictive_size")
    seed = check_seed(seed)
    if seed is None:
        seed = 0 if fit.seed is None else int(fit.seed)
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
    if fit.interrupted:
        attrs["interrupted"] = 1
    model, site = fit.model, fit.model.observed_site
    dims = dict(model.arviz_dims())
    data_dims = dims.get(site, ())
    sampled: Dict[str, Dict[str, np.ndarray]] = {}
    observed = fit.data
    if fit.point is not None:
        point = {**fit.point, **model.derived(fit.point)}
        if point:  # a network's weights are not posterior variables: they stay in the fit
            sampled["posterior"] = {k: v[None, None] for k, v in _np(point).items()}
        attrs["point_estimate"] = fit.method
    else:
        chains, draws = next(iter(fit.posterior.values())).shape[:2]
        flat = fit.posterior_samples()
        derived = {k: v.reshape((chains, draws) + v.shape[1:])
                   for k, v in model.derived(flat).items()}
        sampled["posterior"] = _np({**fit.posterior, **derived})
        if fit.data is not None:
            ll = fit.pointwise_log_likelihood().cpu().numpy()
            sampled["log_likelihood"] = {site: ll}
            size = chains * draws * fit.data.numel()
            if posterior_predictive and size <= max_predictive_size:
                with torch.no_grad(), seeded(seed):
                    rep, wide = model.replicate_given(flat, fit.data)
                if rep.numel() <= max_predictive_size:  # a sequence's replicates: wider
                    observed = wide
                    sampled["posterior_predictive"] = {site: rep.reshape(
                        (chains, draws) + rep.shape[1:]).cpu().numpy()}
        if fit.sample_stats:  # a count of leapfrog steps is an integer, as ArviZ's are
            sampled["sample_stats"] = _np({k: v.long() if k == "n_steps" else v
                                           for k, v in fit.sample_stats.items()})
    plain = {} if observed is None else {"observed_data": {site: observed.cpu().numpy()}}
    if observed is not None and fit.context is not None:  # covariates, as ArviZ keeps them
        plain["constant_data"] = {"c": fit.context.cpu().numpy()}
        if fit.context.dim() <= 2:
            dims["c"] = ("row", "condition")[:fit.context.dim()]
    shapes = {k: v.shape[2:] for g in sampled.values() for k, v in g.items()}
    shapes.update({k: v.shape for g in plain.values() for k, v in g.items()})
    coords = _coords(fit, dims, shapes)
    groups = {name: _dataset(data, dims, coords, sampled=True)
              for name, data in sampled.items() if name != "log_likelihood"}
    groups.update({name: _dataset(data, dims, coords, sampled=False)
                   for name, data in plain.items()})
    if "log_likelihood" in sampled:
        # one value per row; with one column also per column, as loo_pit pairs them
        ll = sampled["log_likelihood"][site]
        one = observed is not None and all(n == 1 for n in observed.shape[1:])
        if one and observed is not None:
            ll = ll.reshape(ll.shape + observed.shape[1:])
        groups["log_likelihood"] = _dataset(
            {site: ll}, {site: data_dims if one else data_dims[:1]}, coords, sampled=True)
    idata = az.InferenceData(attrs=attrs, **groups)
    if fit.losses:
        idata.add_groups(
            {"optimization": xr.Dataset({"loss": ("step", np.asarray(fit.losses))},
                                        attrs={"meaning": _LOSS_MEANING, "method": fit.method})},
            warn_on_custom_groups=False)
    return idata


#: what ``fit.losses`` holds, whatever the family: its method's objective
_LOSS_MEANING = ("the objective the fit minimized, one value per step: the negative log joint "
                 "or negative ELBO of mle/map/vi, the generator's loss of adversarial (the "
                 "critic's: fit.info['critic_losses']), the denoising loss of a diffusion "
                 "or score model (the family's documentation says which)")


def loo_log_weights(idata, var_name: str = "x"):
    r"""PSIS-LOO log weights of every posterior draw for every observed value: an
    ``xarray.DataArray`` ``(row, ..., __sample__)`` labelled as the observed values (so
    the LOO-PIT keeps the column names), for ``az.loo_pit(idata, y=var_name, log_weights=...)`` and
    ``az.plot_loo_pit`` where a row has several values (columns, positions).

    Leaving row :math:`i` out reweights the draws by :math:`1 / p(x_i \mid \phi_s)`,
    smoothed by PSIS (``az.psislw``, with the relative efficiency ``az.loo`` uses); every
    value of the row shares its row's weights, so the LOO-PIT of column :math:`j` is
    :math:`P(\tilde x_{ij} \le x_{ij} \mid x_{-i})` under the LOO predictive of the
    whole row.
    """
    import arviz as az

    if not isinstance(idata, az.InferenceData):
        raise TypeError(f"idata must be an arviz.InferenceData (fit.to_arviz()), got "
                        f"{type(idata).__name__}")
    for group in ("log_likelihood", "observed_data", "posterior"):
        if group not in idata.groups():
            raise ValueError(f"idata has no {group} group: LOO weights need a posterior fit's "
                             f"InferenceData (nuts, hmc, chees or vi; a point fit has one "
                             f"draw), got groups {idata.groups()}")
    if var_name not in idata["log_likelihood"] or var_name not in idata["observed_data"]:
        raise ValueError(f"var_name={var_name!r} is not an observed variable of idata "
                         f"(log_likelihood has {list(idata['log_likelihood'].data_vars)})")
    # as az.loo_pit computes the weights of a variable with one value per observation
    ll = idata["log_likelihood"][var_name].stack(__sample__=("chain", "draw"))
    posterior = idata["posterior"]
    n_samples = ll.sizes["__sample__"]
    ess = az.ess(posterior, method="mean")
    reff = (np.hstack([ess[v].values.flatten() for v in ess.data_vars]).mean() / n_samples
            if posterior.sizes["chain"] > 1 else 1.0)
    weights = az.psislw(-ll, reff=reff)[0]
    observed = idata["observed_data"][var_name]
    # every value of a row shares the row's weights, labelled as the observed values are
    extra = {d: observed.coords[d].values if d in observed.coords else observed.sizes[d]
             for d in observed.dims if d not in weights.dims}
    return weights.expand_dims(extra).transpose(*observed.dims, "__sample__")


def chain_summary(fit: Any) -> str:
    """One line on an MCMC fit's chains, as ``pyro-genmodels fit`` prints it: the largest
    R-hat and smallest bulk ESS over every scalar of the posterior's sites (ArviZ's
    rank-normalized ones; a constant scalar's NaN left out; derived quantities, which
    ``az.summary`` shows too, left out) and the divergences."""
    import arviz as az

    chains, draws = next(iter(fit.posterior.values())).shape[:2]
    post = az.convert_to_dataset(_np(fit.posterior))
    with np.errstate(invalid="ignore", divide="ignore"):
        rhat = az.rhat(post).to_array().values
        ess = az.ess(post).to_array().values
    rhat, ess = rhat[np.isfinite(rhat)], ess[np.isfinite(ess)]  # constant entries: NaN
    divergent = fit.sample_stats.get("diverging")
    parts = [f"{chains} chain{'s' if chains > 1 else ''} x {draws} draws"]
    if chains > 1 and rhat.size:
        parts.append(f"max R-hat {rhat.max():.3f}")
    if ess.size:
        parts.append(f"min bulk ESS {ess.min():.0f}")
    if divergent is not None:
        parts.append(f"{int(divergent.sum())} divergent transitions")
    return "posterior: " + ", ".join(parts) + " (az.summary(pgm.load(run).to_arviz()): each, derived ones too)"


def arviz_warnings(who: str, run: Callable[[], Any]) -> Any:
    """``run()`` (ArviZ's LOO or WAIC), its warnings (Pareto k, WAIC's variance) said as
    their first sentence after ``who``, the fit they are about (ArviZ's name none and run
    to four sentences; ``pareto_k_max`` and ``p_waic`` hold the figures)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run()
    for w in caught:
        if f"{os.sep}arviz{os.sep}" in w.filename:
            first = str(w.message).split(". ", 1)[0].strip().rstrip(".")
            warnings.warn(f"{who}: {first} (ArviZ)", w.category, stacklevel=outside_level())
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out
