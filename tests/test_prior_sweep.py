"""The classic MLE-vs-MAP picture, and the compare table's information criteria."""

import math

import matplotlib
import pytest
import torch

import pyro_genmodels as pgm

matplotlib.use("Agg")

D = 10


def stein_data(n, seed):
    """x_i ~ N(mu, I) with mu ~ N(0, 0.5^2 I) fixed: the mean is small against the noise,
    so with few points shrinking it toward 0 (MAP) beats the sample mean (MLE)."""
    g = torch.Generator().manual_seed(1234)
    mu = 0.5 * torch.randn(D, generator=g, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    return mu + torch.randn(n, D, generator=g, dtype=torch.float64)


def test_little_data_map_beats_mle_and_map_approaches_mle():
    model = pgm.Gaussian(D, covariance=torch.eye(D, dtype=torch.float64))
    heldout = stein_data(5000, seed=99)
    scales = [0.1, 0.5, 2.0, 1e3]
    small = pgm.prior_sweep(model, stein_data(3, seed=0), prior_scales=scales,
                            heldout=heldout, num_steps=800, plot=True)
    assert list(small["method"]) == ["map"] * 4 + ["mle"]
    assert math.isinf(small["prior_scale"].iloc[-1])
    mle = small.iloc[-1]
    best = small[small["method"] == "map"].sort_values("heldout_log_prob").iloc[-1]
    # expected gain ~ D/2 (1/N - s^2/(N s^2 + 1)) ~ 1 nat; far beyond 4 se of the difference
    gap = best["heldout_log_prob"] - mle["heldout_log_prob"]
    assert gap > 4 * math.hypot(best["heldout_log_prob_se"], mle["heldout_log_prob_se"])
    # a very wide prior is the MLE
    wide = small[small["prior_scale"] == 1e3].iloc[0]
    assert wide["heldout_log_prob"] == pytest.approx(mle["heldout_log_prob"], abs=1e-3)
    # with much more data the best MAP and the MLE nearly coincide
    big = pgm.prior_sweep(model, stein_data(2000, seed=0), prior_scales=scales,
                          heldout=heldout, num_steps=800)
    big_gap = (big[big["method"] == "map"]["heldout_log_prob"].max()
               - big.iloc[-1]["heldout_log_prob"])
    assert abs(big_gap) < 0.01 < gap
    fig = small.attrs["figure"]
    assert fig.axes[0].get_xscale() == "log"


def test_sweep_reports_a_singular_mle_instead_of_failing():
    x, _ = pgm.datasets.correlated_gaussian(4, dim=6, seed=0)
    heldout, _ = pgm.datasets.correlated_gaussian(200, dim=6, seed=1)
    table = pgm.prior_sweep(pgm.Gaussian(6), x, prior_scales=[1.0, 10.0], heldout=heldout,
                            num_steps=300)
    mle = table.iloc[-1]
    assert mle["method"] == "mle" and "singular" in mle["error"]
    assert math.isnan(mle["heldout_log_prob"])
    assert table.iloc[:2]["heldout_log_prob"].notna().all()


def test_sweep_validation(monkeypatch):
    x, _ = pgm.datasets.correlated_gaussian(20, dim=2, seed=0)
    with pytest.raises(ValueError, match="prior_scales"):
        pgm.prior_sweep(pgm.Gaussian(2), x, prior_scales=[], heldout=x)
    with pytest.raises(ValueError, match=r"prior_scales\[1\]"):
        pgm.prior_sweep(pgm.Gaussian(2), x, prior_scales=[1.0, -1.0], heldout=x)
    # a held-out set the fits cannot score is refused before the first fit, by its name
    calls = []
    real_fit = pgm.Gaussian.fit
    monkeypatch.setattr(pgm.Gaussian, "fit",
                        lambda self, *a, **k: calls.append(1) or real_fit(self, *a, **k))
    with pytest.raises(ValueError, match="heldout has the wrong number of columns: "
                                         "expected 2, got 1"):
        pgm.prior_sweep(pgm.Gaussian(2), x, prior_scales=[1.0], heldout=x[:, :1])
    assert calls == []


def test_compare_information_criteria_waic_and_true_kl():
    truth = pgm.datasets.toy("banana")
    torch.manual_seed(0)
    x, heldout = truth.sample((300,)), truth.sample((2000,))
    model = pgm.Gaussian(2)
    fits = {"mle": model.fit(x, method="mle", seed=0, progress=False, num_steps=600),
            "vi": model.fit(x, method="vi", seed=0, progress=False, num_steps=800,
                            num_posterior_samples=200)}
    table = pgm.compare(fits, heldout, truth=truth)
    k, n = 5, 300
    ll = fits["mle"].log_prob(x).sum().item()
    assert table.loc["mle", "aic"] == pytest.approx(2 * k - 2 * ll, rel=1e-6)
    assert table.loc["mle", "bic"] == pytest.approx(k * math.log(n) - 2 * ll, rel=1e-6)
    assert math.isnan(table.loc["vi", "aic"]) and math.isfinite(table.loc["vi", "elpd_waic"])
    assert math.isnan(table.loc["mle", "elpd_waic"])
    # true KL = E_truth[log p - log q]: positive (a Gaussian cannot fit the banana) and
    # consistent with the independent estimate from the divergences module
    kl = pgm.divergences.kl(truth, fits["mle"], num_samples=20000, seed=0)
    row = table.loc["mle"]
    assert row["true_kl"] > 4 * row["true_kl_se"]
    assert abs(row["true_kl"] - kl.estimate) < 4 * math.hypot(row["true_kl_se"], kl.stderr)
