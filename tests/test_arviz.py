"""ArviZ output: the groups, and that ArviZ's own tools run on them."""

import arviz as az
import matplotlib
import numpy as np
import pytest
import torch

import pyro_genmodels as pgm

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def fits():
    x, _ = pgm.datasets.correlated_gaussian(150, dim=2, seed=0)
    model = pgm.Gaussian(2)
    return x, {
        "nuts": model.fit(x, method="nuts", seed=0, progress=False, num_samples=150,
                          warmup_steps=150, num_chains=2),
        "vi": model.fit(x, method="vi", seed=0, progress=False, num_steps=800,
                        num_posterior_samples=300),
        "mle": model.fit(x, method="mle", seed=0, progress=False, num_steps=300),
    }


def test_nuts_groups_and_dims(fits):
    x, f = fits
    idata = f["nuts"].to_arviz()
    for group in ("posterior", "sample_stats", "log_likelihood", "posterior_predictive",
                  "observed_data"):
        assert group in idata.groups()
    post = idata.posterior
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 150
    assert post["loc"].shape == (2, 150, 2)
    assert post["covariance_matrix"].shape == (2, 150, 2, 2)
    assert idata.sample_stats["diverging"].dtype == bool
    assert idata.sample_stats["diverging"].shape == (2, 150)
    assert np.isfinite(idata.sample_stats["lp"].values).all()
    assert idata.log_likelihood["x"].shape == (2, 150, 150)
    assert idata.posterior_predictive["x"].shape == (2, 150, 150, 2)
    np.testing.assert_array_equal(idata.observed_data["x"].values, x.numpy())
    # the pointwise log-likelihood is log p(x_i | phi_s) for each stored draw
    fit = f["nuts"]
    draw = {k: v[1, 7] for k, v in fit.posterior.items()}
    np.testing.assert_allclose(idata.log_likelihood["x"].values[1, 7],
                               fit.model.log_prob_given(draw, x).numpy(), rtol=1e-6)


def test_summary_loo_waic_compare_and_plot_trace(fits):
    _, f = fits
    nuts, vi = f["nuts"].to_arviz(), f["vi"].to_arviz()
    summary = az.summary(nuts, var_names=["loc", "scale"])
    assert {"mean", "sd", "r_hat", "ess_bulk"} <= set(summary.columns)
    assert len(summary) == 4
    assert vi.posterior.sizes["chain"] == 1 and vi.posterior.sizes["draw"] == 300
    for idata in (nuts, vi):
        loo = az.loo(idata)
        assert np.isfinite(loo["elpd_loo"])
        assert np.isfinite(az.waic(idata)["elpd_waic"])
    table = az.compare({"nuts": nuts, "vi": vi})
    assert set(table.index) == {"nuts", "vi"}
    axes = az.plot_trace(nuts, var_names=["loc"])
    assert axes.shape[0] == 1


def test_point_fit_is_labeled_with_its_loss_trace(fits):
    _, f = fits
    idata = f["mle"].to_arviz()
    assert idata.attrs["point_estimate"] == "mle"
    assert "log_likelihood" not in idata.groups()  # one draw: LOO would be meaningless
    assert idata.optimization["loss"].shape == (300,)
    np.testing.assert_allclose(idata.posterior["loc"].values[0, 0],
                               f["mle"].params["loc"].numpy())


@pytest.mark.parametrize("method", ["nuts", "hmc"])
def test_pyro_chain_statistics_keep_a_float64_models_precision(method):
    """The per-draw statistics of Pyro's NUTS / HMC (lp, step_size, energy, ...) are
    stored in the model's dtype, like its draws: float64 lp of a float64 model."""
    x = torch.randn(40, 1, dtype=torch.float64)
    fit = pgm.Gaussian(1).to(torch.float64).fit(
        x, method=method, num_samples=10, warmup_steps=10, num_chains=1, seed=0,
        progress=False)
    assert fit.posterior["loc"].dtype == torch.float64
    for name in ("lp", "step_size", "acceptance_rate", "energy"):
        assert fit.sample_stats[name].dtype == torch.float64, name
    assert fit.to_arviz().sample_stats["lp"].dtype == np.float64
