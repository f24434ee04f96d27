"""PPCA against its oracles: the Tipping-Bishop closed form (and scikit-learn's PCA
score, the same log-likelihood), the Gaussian marginal and conditional, and MAP = MLE +
L2."""

import math

import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from sklearn.decomposition import PCA

import pyro_genmodels as pgm
from pyro_genmodels.infer import FlatPriors
from pyro_genmodels.models.ppca import PPCAFit


def _data(n=500, d=6, q=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    W = 2 * torch.randn(d, q, generator=g, dtype=f64)
    z = torch.randn(n, q, generator=g, dtype=f64)
    return z @ W.T + 0.5 * torch.randn(n, d, generator=g, dtype=f64) + 3


def _closed_form_mean_log_lik(x, q):
    """Tipping & Bishop (1999): the maximized log-likelihood per point."""
    n, d = x.shape
    xc = x - x.mean(0)
    lam = torch.linalg.eigvalsh(xc.T @ xc / n).flip(0)
    s2 = lam[q:].mean()
    return -0.5 * (d * math.log(2 * math.pi) + lam[:q].log().sum() + (d - q) * s2.log() + d)


def test_mle_reaches_the_tipping_bishop_closed_form(float64):
    x = _data()
    fit = pgm.PPCA(6, 2).fit(x, method="mle", seed=0, progress=False)
    ours = fit.log_prob(x).mean().item()
    closed = _closed_form_mean_log_lik(x, 2).item()
    assert abs(ours - closed) <= 1e-3 * abs(closed)
    assert ours <= closed + 1e-9 * abs(closed)  # nobody beats the maximum
    # scikit-learn's PCA(q).score is the same log-likelihood (with the unbiased covariance)
    sk = PCA(2).fit(x.numpy()).score(x.numpy())
    assert abs(ours - sk) <= 1e-3 * abs(sk)
    # sigma^2 is the mean of the discarded eigenvalues
    xc = x - x.mean(0)
    lam = torch.linalg.eigvalsh(xc.T @ xc / x.shape[0]).flip(0)
    assert fit.params["sigma"].item() ** 2 == pytest.approx(lam[2:].mean().item(), rel=1e-3)


def test_log_prob_is_the_gaussian_marginal_and_samples_follow_it(float64):
    model = pgm.PPCA(4, 2).double()
    g = torch.Generator().manual_seed(1)
    params = {"W": torch.randn(4, 2, generator=g, dtype=torch.float64),
              "loc": torch.randn(4, generator=g, dtype=torch.float64),
              "sigma": torch.tensor(0.7, dtype=torch.float64)}
    cov = params["W"] @ params["W"].T + 0.49 * torch.eye(4, dtype=torch.float64)
    fit = PPCAFit(model, "mle", point=params)
    x = torch.randn(50, 4, dtype=torch.float64) * 2
    expected = dist.MultivariateNormal(params["loc"], cov).log_prob(x)
    assert torch.allclose(fit.log_prob(x), expected, atol=1e-10)
    assert torch.allclose(fit.params["covariance_matrix"], cov)
    # ancestral samples: moments within 4 standard errors of the marginal's
    n = 40000
    s = fit.sample(n, seed=0)
    se_mean = cov.diagonal().sqrt() / math.sqrt(n)
    assert ((s.mean(0) - params["loc"]).abs() < 4 * se_mean).all()
    emp = torch.cov(s.T)
    se_cov = ((cov**2 + torch.outer(cov.diagonal(), cov.diagonal())) / n).sqrt()
    assert ((emp - cov).abs() < 4 * se_cov).all()


def test_encode_is_the_gaussian_conditional_mean(float64):
    model = pgm.PPCA(5, 2).double()
    g = torch.Generator().manual_seed(2)
    params = {"W": torch.randn(5, 2, generator=g, dtype=torch.float64),
              "loc": torch.randn(5, generator=g, dtype=torch.float64),
              "sigma": torch.tensor(0.3, dtype=torch.float64)}
    fit = PPCAFit(model, "mle", point=params)
    x = torch.randn(20, 5, dtype=torch.float64)
    # joint Gaussian (z, x): E[z | x] = Cov(z, x) Cov(x)^{-1} (x - loc) = W^T C^{-1} (x - loc)
    C = params["W"] @ params["W"].T + 0.09 * torch.eye(5, dtype=torch.float64)
    expected = (params["W"].T @ torch.linalg.solve(C, (x - params["loc"]).T)).T
    assert torch.allclose(fit.encode(x), expected, atol=1e-10)


def _loss(model, params, x, *, prior):
    program = poutine.condition(model.model, data=params)
    if not prior:
        program = FlatPriors(model.prior_sites)(program)
    return Trace_ELBO().loss(program, lambda *a, **k: None, x)


def test_map_objective_is_the_mle_objective_plus_l2(float64):
    model = pgm.PPCA(4, 2, prior_scale=2.0).double()
    g = torch.Generator().manual_seed(3)
    params = {"W": torch.randn(4, 2, generator=g, dtype=torch.float64),
              "loc": torch.randn(4, generator=g, dtype=torch.float64),
              "sigma": torch.tensor(0.8, dtype=torch.float64)}
    x = torch.randn(30, 4, dtype=torch.float64)
    l2 = (params["W"].pow(2).sum() + params["loc"].pow(2).sum()) / (2 * 2.0**2)
    const = 12 * (0.5 * math.log(2 * math.pi) + math.log(2.0))
    half_normal = dist.HalfNormal(2.0).log_prob(params["sigma"])
    diff = _loss(model, params, x, prior=True) - _loss(model, params, x, prior=False)
    assert diff == pytest.approx(l2.item() + const - half_normal.item(), rel=1e-10)


@pytest.mark.slow
def test_vi_posterior_predictive_is_close_to_the_mle_on_plenty_of_data():
    x = _data(n=800).float()
    mle = pgm.PPCA(6, 2).fit(x, method="mle", seed=0, progress=False)
    vi = pgm.PPCA(6, 2).fit(x, method="vi", seed=0, progress=False, num_steps=1500,
                            num_posterior_samples=200)
    # with 800 points, posterior spread costs a few hundredths of a nat per point at most
    gap = (mle.log_prob(x).mean() - vi.log_prob(x).mean()).item()
    assert -0.01 < gap < 0.1
    assert vi.encode(x[:3]).shape == (3, 2)
    cov_err = (vi.params["covariance_matrix"] - mle.params["covariance_matrix"]).abs().max()
    assert cov_err < 0.1 * mle.params["covariance_matrix"].abs().max()


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="latent_dim < dim"):
        pgm.PPCA(3, 3)
    with pytest.raises(ValueError, match="latent_dim"):
        pgm.PPCA(3, 0)
    fit = pgm.PPCA(3, 1).fit(torch.randn(50, 3), method="mle", num_steps=5, seed=0,
                             progress=False)
    with pytest.raises(ValueError, match="columns"):
        fit.encode(torch.randn(4, 2))
