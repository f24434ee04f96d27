"""The contract-test registry: one case per registered model family.

A case says how to build the model and its data and which small budgets make each
method fast enough for the contract suite. Family-specific oracles live in their own
test files; nothing here special-cases a model inside a generic test.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional

import torch

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded


@dataclasses.dataclass
class Case:
    make_model: Callable[[], pgm.GenerativeModel]
    make_data: Callable[[int], torch.Tensor]  # seed -> (N, D) data
    fast_options: Dict[str, Dict[str, Any]]
    #: the engine may stop before ``num_steps`` (EM's convergence test)
    stops_early: bool = False
    #: a fit's ``log_prob_kind`` when it differs from the capability (energy: AIS)
    log_prob_kind: Optional[str] = None


def built_with_seed(build: Callable[[], pgm.GenerativeModel]):
    """Families with random initial weights are built under a fixed seed, so two builds
    are the same model and the caller's RNG is untouched."""
    def make():
        with seeded(0):
            return build()
    return make


def _gaussian_data(seed: int) -> torch.Tensor:
    return pgm.datasets.correlated_gaussian(120, dim=3, seed=seed)[0]


def _banana_data(seed: int) -> torch.Tensor:
    with seeded(seed):
        return pgm.datasets.toy("banana").sample((120,))


def _cluster_data(seed: int) -> torch.Tensor:
    return pgm.datasets.clusters(120, k=3, dim=3, seed=seed)[0]


_FAST = {
    "mle": {"num_steps": 60},
    "map": {"num_steps": 60},
    "vi": {"num_steps": 60, "num_posterior_samples": 50},
    "nuts": {"num_samples": 30, "warmup_steps": 30, "num_chains": 2},
    "hmc": {"num_samples": 30, "warmup_steps": 30, "num_chains": 2},
}

#: registered families whose data are text or token ids: their contract (the same
#: properties, on sequences) is tests/test_sequence_contract.py
SEQUENCE_FAMILIES = {"ngram", "autoregressive"}

CASES: Dict[str, Case] = {
    "gaussian": Case(lambda: pgm.Gaussian(3), _gaussian_data, _FAST),
    "gaussian-known-cov": Case(
        lambda: pgm.Gaussian(3, covariance=torch.eye(3) * 2.0, prior_scale=5.0),
        _gaussian_data, _FAST),
    "flow": Case(built_with_seed(lambda: pgm.Flow(3, hidden=(16, 16), num_transforms=2)),
                 _gaussian_data, {"mle": {"num_steps": 30, "batch_size": 64},
                                  "map": {"num_steps": 30, "batch_size": 64}}),
    "gaussian_mixture": Case(
        lambda: pgm.GaussianMixture(3, 3, n_init=2), _cluster_data,
        {"mle": {"num_steps": 30}, "map": {"num_steps": 30},
         "vi": {"num_steps": 30, "num_posterior_samples": 30},
         "nuts": {"num_samples": 5, "warmup_steps": 5, "num_chains": 2, "max_tree_depth": 3}},
        stops_early=True),
    "gaussian_mixture-diag": Case(
        lambda: pgm.GaussianMixture(3, 2, covariance_type="diag", n_init=1), _cluster_data,
        {"mle": {"num_steps": 30}, "map": {"num_steps": 30},
         "vi": {"num_steps": 30, "num_posterior_samples": 30},
         "nuts": {"num_samples": 5, "warmup_steps": 5, "num_chains": 2, "max_tree_depth": 3}},
        stops_early=True),
    "energy": Case(built_with_seed(lambda: pgm.EnergyModel(2, hidden=(16, 16))), _banana_data,
                   {m: {"num_steps": 20, "batch_size": 64, "buffer_size": 256, "mcmc_steps": 5}
                    for m in ("mle", "map")}, log_prob_kind="estimate"),
    "vae": Case(built_with_seed(lambda: pgm.VAE(3, 2, likelihood="gaussian", hidden=(16,))),
                _gaussian_data, {"mle": {"num_steps": 30, "batch_size": 64},
                                 "map": {"num_steps": 30, "batch_size": 64}}),
    "ppca": Case(lambda: pgm.PPCA(3, 1), _gaussian_data,
                 {k: _FAST[k] for k in ("mle", "map", "vi")}),
}


def model_method_pairs():
    return [(name, method) for name, case in CASES.items()
            for method in case.make_model().capabilities.methods]


def check_inference_data(fit, method):
    """The ArviZ contract of every fit: groups, attributes and sizes by kind of fit."""
    idata = fit.to_arviz()
    assert ("posterior" in idata.groups()) == bool(fit.model.global_sites)
    assert idata.attrs["inference_method"] == method
    for site in fit.model.global_sites:
        assert site in idata.posterior
    if fit.is_posterior:
        assert idata.log_likelihood["x"].shape[-1] == fit.data.shape[0]
        assert "posterior_predictive" in idata.groups()
    else:
        assert idata.attrs["point_estimate"] == method
        if fit.model.global_sites:
            assert idata.posterior.sizes["chain"] == 1 and idata.posterior.sizes["draw"] == 1
        assert list(idata.optimization["loss"].values) == fit.losses
    assert "observed_data" in idata.groups()
