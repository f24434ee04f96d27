"""ArviZ output: the groups, and that ArviZ's own tools run on them."""

import arviz as az
import matplotlib
import numpy as np
import pytest
import torch

import pyro_genmodels as pgm
from tests.cases import CASES

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


# ------------------------------------------------------- named dimensions and LOO-PIT
def test_dimensions_are_named_and_a_dataframes_columns_label_them(tmp_path):
    """``x`` is (row, column), its log-likelihood (row,); the sites say what they index;
    a DataFrame's column names label ``column`` (also after save / load), so the summary
    reads ``loc[alcohol]``."""
    from sklearn.datasets import load_wine

    from pyro_genmodels.arviz import loo_log_weights

    frame = load_wine(as_frame=True).frame.iloc[:60, :3]
    names = list(frame.columns)
    fit = pgm.Gaussian(3).fit(frame, method="nuts", seed=0, progress=False,
                              num_samples=20, warmup_steps=20, num_chains=2)
    assert fit.info["columns"] == names
    fit.save(tmp_path / "f")
    for idata in (fit.to_arviz(), pgm.load(tmp_path / "f").to_arviz()):
        post = idata.posterior
        assert post["loc"].dims == ("chain", "draw", "column")
        assert post["corr_cholesky"].dims == ("chain", "draw", "column", "column_bis")
        assert list(post["loc"].coords["column"].values) == names
        assert idata.observed_data["x"].dims == ("row", "column")
        assert idata.posterior_predictive["x"].dims == ("chain", "draw", "row", "column")
        assert idata.log_likelihood["x"].dims == ("chain", "draw", "row")
        assert list(az.summary(idata, var_names=["loc"]).index) == \
            [f"loc[{n}]" for n in names]
        # the LOO-PIT of each column keeps its name (the weights are labelled like x)
        pit = az.loo_pit(idata, y="x", log_weights=loo_log_weights(idata))
        assert pit.dims == ("row", "column") and list(pit.coords["column"].values) == names
    mix = pgm.GaussianMixture(2, 3).fit(torch.randn(40, 2), method="vi", seed=0,
                                        progress=False, num_steps=20).to_arviz()
    assert mix.posterior["locs"].dims == ("chain", "draw", "component", "column")
    assert mix.posterior["weights"].sizes["component"] == 3
    ppca = pgm.PPCA(3, 1).fit(torch.randn(40, 3), method="mle", seed=0, progress=False,
                              num_steps=5).to_arviz()
    assert ppca.posterior["W"].dims == ("chain", "draw", "column", "latent")
    assert ppca.observed_data["x"].dims == ("row", "column")
    # a tensor has no names: the columns are numbered
    assert list(mix.posterior["locs"].coords["column"].values) == [0, 1]


def test_one_columns_loo_pit_is_arvizs_own_and_several_take_the_rows_weights(fits):
    """With one column ArviZ's ``loo_pit`` runs as it is (the log-likelihood is (row,
    column)); ``loo_log_weights`` gives the same weights, and with several columns
    broadcasts each row's weights over them: column j's LOO-PIT is then ArviZ's on a
    one-column InferenceData of column j with the row's log-likelihood. A well-specified
    model's LOO-PIT is close to uniform (Kolmogorov-Smirnov)."""
    from scipy import stats

    from pyro_genmodels.arviz import loo_log_weights

    x = torch.randn(80, 1, generator=torch.Generator().manual_seed(1))
    one = pgm.Gaussian(1).fit(x, method="nuts", seed=0, progress=False, num_samples=100,
                              warmup_steps=100, num_chains=2).to_arviz()
    assert one.log_likelihood["x"].dims == ("chain", "draw", "row", "column")
    pit = np.asarray(az.loo_pit(one, y="x"))
    assert pit.shape == (80, 1)
    np.testing.assert_array_equal(pit, np.asarray(
        az.loo_pit(one, y="x", log_weights=loo_log_weights(one))))
    assert az.loo(one)["n_data_points"] == 80
    _, f = fits
    two = f["nuts"].to_arviz()
    weights = loo_log_weights(two)
    assert weights.shape == (150, 2, 300)
    pit2 = np.asarray(az.loo_pit(two, y="x", log_weights=weights))
    for j in range(2):
        column = az.InferenceData(
            posterior=two.posterior, observed_data=two.observed_data.isel(column=[j]),
            posterior_predictive=two.posterior_predictive.isel(column=[j]),
            log_likelihood=two.log_likelihood.expand_dims(column=[j], axis=-1))
        np.testing.assert_allclose(pit2[:, j], np.asarray(az.loo_pit(column, y="x"))[:, 0])
        assert stats.kstest(pit2[:, j], "uniform").pvalue > 1e-3
    assert stats.kstest(pit[:, 0], "uniform").pvalue > 1e-3


def test_sequence_replicates_and_observed_rows_have_one_width():
    """The posterior predictive of a sequence model and its observed rows share (row,
    position), the rows padded with the end id to the longest row of either side (not
    to the 64 tokens a replicate may take: 90% padding), what az.plot_ppc compares."""
    from pyro_genmodels.models.sequence import NGram

    model = NGram(2)
    fit = model.fit(["abcab", "abba", "cabbac", "ab"], method="nuts", seed=0,
                    progress=False, num_samples=10, warmup_steps=10, num_chains=2)
    idata = fit.to_arviz()
    observed, rep = idata.observed_data["x"], idata.posterior_predictive["x"]
    assert observed.dims == ("row", "position") and rep.dims[2:] == observed.dims
    # as wide as the longest row of either side with its end token, no wider
    end = fit.model.end_id
    width = observed.shape[1]
    assert rep.shape[2:] == observed.shape and width >= 7
    np.testing.assert_array_equal(observed.values[:, :7], fit.data.numpy())
    assert (observed.values[:, 7:] == end).all()
    assert (rep.values[..., -1] == end).all()
    assert width == 7 or (rep.values[..., -2] != end).any()
    probs = idata.posterior["probs"]
    assert probs.dims == ("chain", "draw", "context", "token")
    assert list(probs.coords["token"].values) == ["a", "b", "c", "<end>"]
    assert list(probs.coords["context"].values) == ["a", "b", "c", "<start>"]
    ax = az.plot_ppc(idata, num_pp_samples=5)
    assert ax is not None
    # max_predictive_size bounds what the group holds: the replicates, wider than the
    # data, held 4.7 times it (a bound checked on the training rows only)
    held = rep.size
    assert held > fit.num_draws * fit.data.numel()
    small = fit.to_arviz(max_predictive_size=held - 1)
    assert "posterior_predictive" not in small.groups()
    np.testing.assert_array_equal(small.observed_data["x"].values, fit.data.numpy())
    assert fit.to_arviz(max_predictive_size=held).posterior_predictive["x"].size == held


def test_leapfrog_counts_are_integers_as_arvizs_own(fits):
    """``n_steps`` counts leapfrog steps: ArviZ's converters store it as an integer; it was
    float32 for every sampler."""
    x, f = fits
    stats = f["nuts"].to_arviz().sample_stats
    assert np.issubdtype(stats["n_steps"].dtype, np.integer)
    np.testing.assert_array_equal(stats["n_steps"].values,
                                  f["nuts"].sample_stats["n_steps"].numpy())
    assert (stats["n_steps"].values >= 1).all()
    # the fit says its divergences, as the fused samplers' fits do (Pyro's did not)
    assert f["nuts"].info["num_divergences"] == int(stats["diverging"].values.sum())


def test_dimensions_that_do_not_fit_the_values_are_a_clear_error(fits, monkeypatch):
    _, f = fits
    monkeypatch.setattr(pgm.Gaussian, "arviz_dims",
                        lambda self: {"x": ("row", "column"), "loc": ("column", "extra")})
    with pytest.raises(ValueError, match=r"arviz_dims names 2 dimensions for 'loc'"):
        f["nuts"].to_arviz()


def test_flags_and_loo_weights_inputs_are_checked(fits):
    """``to_arviz`` and ``compare`` take True / False, not a truthy string; the LOO
    weights ask for a posterior fit's InferenceData and name what came."""
    from pyro_genmodels.arviz import loo_log_weights

    _, f = fits
    with pytest.raises(TypeError, match="posterior_predictive to be True or False"):
        f["vi"].to_arviz(posterior_predictive="no")
    with pytest.raises(ValueError, match="max_predictive_size to be a positive integer"):
        f["vi"].to_arviz(max_predictive_size=-1)
    with pytest.raises(TypeError, match="loo to be True or False, but got 'no'"):
        pgm.compare({"vi": f["vi"]}, torch.randn(5, 2), loo="no")
    with pytest.raises(TypeError, match="idata must be an arviz.InferenceData .* got Fit"):
        loo_log_weights(f["vi"])
    with pytest.raises(ValueError, match="idata has no log_likelihood group"):
        loo_log_weights(f["mle"].to_arviz())
    with pytest.raises(ValueError, match="var_name='y' is not an observed variable"):
        loo_log_weights(f["vi"].to_arviz(), var_name="y")


def test_the_posterior_predictive_is_reproducible_and_leaves_the_callers_rng(tmp_path):
    """The replicated data sets are drawn under the fit's seed (or ``seed=``), so the same
    fit, and its saved and loaded copy, give the same InferenceData; the caller's random
    stream is untouched (they used to come from torch's global generator)."""
    x, _ = pgm.datasets.correlated_gaussian(60, dim=3, seed=0)
    fit = pgm.Gaussian(3).fit(x, method="vi", seed=0, progress=False, num_steps=20,
                              num_posterior_samples=20)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    first = fit.to_arviz().posterior_predictive
    assert torch.equal(torch.rand(3), expected)
    assert first.equals(fit.to_arviz().posterior_predictive)
    fit.save(tmp_path / "fit")
    assert first.equals(pgm.load(tmp_path / "fit").to_arviz().posterior_predictive)
    other = fit.to_arviz(seed=1).posterior_predictive
    assert not other.equals(first) and other["x"].shape == first["x"].shape
    with pytest.raises(ValueError, match="seed"):
        fit.to_arviz(seed=-1)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.make_data(0).c is not None])
def test_a_conditional_fits_conditions_are_its_constant_data(name, tmp_path):
    """A conditional fit's ``c`` is ArviZ's ``constant_data`` (its group for covariates),
    row for row beside ``observed_data``, also after save and load: the InferenceData alone
    held the rows without what they were conditioned on."""
    case = CASES[name]
    d = case.make_data(0)
    method = next(iter(case.fast_options))
    fit = case.make_model().fit(d.x, method=method, seed=0, progress=False, **d.kw,
                                **case.fast_options[method])
    fit.save(tmp_path / "fit")
    for idata in (fit.to_arviz(), pgm.load(tmp_path / "fit").to_arviz()):
        c = idata.constant_data["c"]
        # (row, condition), or (row,) for the class labels of a sequence model
        assert c.dims == ("row", "condition")[:fit.context.dim()]
        assert np.array_equal(c.values, fit.context.numpy())
        assert c.sizes["row"] == idata.observed_data["x"].sizes["row"] == len(fit.data)


def test_a_dataframes_condition_names_label_the_constant_data_and_plain_fits_have_none():
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    x, c = frame[["alcohol", "malic_acid"]], frame[["ash", "magnesium", "proline"]]
    fit = pgm.Flow(2, context_dim=3, hidden=(8,)).fit(x, c=c, method="mle", seed=0,
                                                      progress=False, num_steps=3)
    idata = fit.to_arviz()
    assert list(idata.constant_data["c"].coords["condition"].values) == list(c.columns)
    assert np.allclose(idata.constant_data["c"].values, c.to_numpy(), rtol=1e-6)
    plain = pgm.Flow(2, hidden=(8,)).fit(x, method="mle", seed=0, progress=False,
                                         num_steps=3).to_arviz()
    assert "constant_data" not in plain.groups()
