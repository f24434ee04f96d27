"""PPCA against its oracles: the Tipping-Bishop closed form (and scikit-learn's PCA
score, the same log-likelihood), the Gaussian marginal and conditional, and MAP = MLE +
L2.

Every method starts at the closed form (``closed_form``), so the optimizer is tested
from a start that is not the optimum (the old small random ``W``, patched in), and the
closed form is tested as a stationary maximum of the model's own ``log_prob``."""

import math

import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.decomposition import PCA

import pyro_genmodels as pgm
from pyro_genmodels.infer import FlatPriors
from pyro_genmodels.models.ppca import PPCAFit, closed_form


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


def _small_random_start(self, x):
    """The start PPCA had before it started at the closed form: ``loc`` the mean,
    ``sigma`` the mean column sd, ``W`` small and random (6 nats per point below the
    maximum on ``_data()``)."""
    x = self.to_unit(x)
    scale = x.std(0, correction=0).mean().clamp_min(1e-3)
    W = 0.1 * scale * torch.randn(self.dim, self.latent_dim, dtype=x.dtype, device=x.device)
    return {"W": W, "loc": x.mean(0), "sigma": scale}


@pytest.mark.parametrize("start", ["closed_form", "small_random"])
def test_mle_reaches_the_tipping_bishop_closed_form(start, float64, monkeypatch):
    """From the closed form (the default start) the optimizer must stay there; from the
    old small random ``W`` it must climb to it: the test of the optimizer itself."""
    x = _data()
    if start == "small_random":
        monkeypatch.setattr(pgm.PPCA, "init_values", _small_random_start)
        torch.manual_seed(0)
        first = pgm.PPCA(6, 2).init_values(x)
        # the start is far from the optimum: the climb below is real
        assert pgm.PPCA(6, 2).log_prob_given(first, x).mean() < \
            _closed_form_mean_log_lik(x, 2) - 1
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


def _raw(name):
    """scikit-learn's wine or breast cancer as they come, float64 NumPy (columns from
    about 0.1 to 1,680; resp. values 0 to 4,254, column sds 0.003 to 569)."""
    return (load_wine if name == "wine" else load_breast_cancer)().data


def _scaled_gradients(model, params, x):
    """The gradient of the mean log-likelihood w.r.t. W, loc and log sigma, each made
    unitless: W's column j times ``||W_j||``, loc's entry d times column d's sd."""
    W = params["W"].clone().requires_grad_()
    loc = params["loc"].clone().requires_grad_()
    log_sigma = params["sigma"].log().clone().requires_grad_()
    lp = model.log_prob_given({"W": W, "loc": loc, "sigma": log_sigma.exp()}, x).mean()
    gW, gloc, gsigma = torch.autograd.grad(lp, (W, loc, log_sigma))
    return torch.cat([(gW * params["W"].norm(dim=0)).flatten(),
                      gloc * x.std(0, correction=0), gsigma.reshape(1)])


@pytest.mark.parametrize("name, q", [("synthetic", 2), ("wine", 3)])
def test_the_closed_form_start_is_a_stationary_maximum_of_log_prob(name, q, float64):
    """``closed_form`` (every method's start) against the model's own density, with no
    optimizer: its mean log p is the eigenvalue formula, the log-likelihood's gradient
    there is zero, and small perturbations lower it.

    Tolerances: the unitless gradient is 1e-13 (synthetic) to 6e-11 (raw wine) at the
    closed form, float64 rounding of means over the rows, and 0.09 to 3 at a 5%
    perturbation of every parameter; 1e-7 separates the two by 3 orders either way.
    Perturbations of 1e-3 of each parameter's scale lower log p by about 1e-6 nats,
    far above float64 rounding of log p (1e-13)."""
    x = _data() if name == "synthetic" else torch.as_tensor(_raw(name))
    d = x.shape[1]
    model = pgm.PPCA(d, q).double()
    params = closed_form(x, q)
    for key, value in model.init_values(x).items():  # the start is the closed form
        assert torch.equal(value, params[key]), key
    lp = model.log_prob_given(params, x).mean()
    closed = _closed_form_mean_log_lik(x, q)
    assert abs(lp - closed) <= 1e-10 * abs(closed)
    assert _scaled_gradients(model, params, x).abs().max() < 1e-7
    sd = x.std(0, correction=0)
    off = {"W": 1.05 * params["W"], "loc": params["loc"] + 0.05 * sd,
           "sigma": 1.05 * params["sigma"]}
    assert _scaled_gradients(model, off, x).abs().max() > 1e-2  # the check can fail
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        step = {"W": params["W"] + 1e-3 * params["W"].norm(dim=0) * torch.randn(
                    params["W"].shape, generator=g, dtype=x.dtype),
                "loc": params["loc"] + 1e-3 * sd * torch.randn(d, generator=g, dtype=x.dtype),
                "sigma": params["sigma"] * math.exp(1e-3 * torch.randn(1, generator=g).item())}
        assert model.log_prob_given(step, x).mean() < lp


@pytest.mark.parametrize("name, q", [("wine", 3), ("breast_cancer", 5)])
def test_mle_on_raw_columns_reaches_the_closed_form(name, q):
    """The reviewer's case: ``PPCA(D, q).fit(raw, method="mle")`` at the default settings
    on columns in their own units (wine's proline in the hundreds needs loadings in the
    hundreds). A small random start ended at -75.8 (wine, closed form -26.58) and -185.2
    (breast cancer, -41.64) mean log p: 1.9 and 3.4 relative.

    Tolerance 1e-6 relative (3e-5 and 4e-5 nats): the fit starts at the closed form and
    Adam (lr 0.05 decaying to 0.0025) moves it by float64 rounding only, measured 7e-13
    and 1e-11 relative; 1e-6 is 5 orders above that and 6 below the bug. ``sigma^2`` is
    checked to the same relative 1e-6 (measured 5e-12). The covariance C = W W^T +
    sigma^2 I (identified, unlike W), entrywise relative to sqrt(C_dd C_ee): Adam drifts
    along directions where log p is nearly flat, measured 6e-9 (wine) and 1.7e-5 (breast
    cancer, eigenvalues 40 and 3 either side of q = 5 among 4e5), so 1e-3; the small random
    start left C about sigma^2 I, off by O(1)."""
    raw = _raw(name)  # float64 NumPy: a float64 fit
    x = torch.as_tensor(raw)
    fit = pgm.PPCA(x.shape[1], q).fit(raw, method="mle", seed=0, progress=False)
    assert fit.point["W"].dtype == torch.float64 and fit.info.get("stopped") is None
    ours = fit.log_prob(raw).mean().item()
    closed = _closed_form_mean_log_lik(x, q).item()
    assert abs(ours - closed) <= 1e-6 * abs(closed), (ours, closed)
    assert ours <= closed + 1e-9 * abs(closed)  # nobody beats the maximum
    xc = x - x.mean(0)
    lam, U = torch.linalg.eigh(xc.T @ xc / x.shape[0])
    lam, U = lam.flip(0), U.flip(-1)
    s2 = lam[q:].mean()
    assert fit.params["sigma"].item() ** 2 == pytest.approx(s2.item(), rel=1e-6)
    C = (U[:, :q] * (lam[:q] - s2)) @ U[:, :q].T + s2 * torch.eye(x.shape[1], dtype=x.dtype)
    sd = C.diagonal().sqrt()
    err = ((fit.params["covariance_matrix"] - C).abs() / (sd[:, None] * sd)).max()
    assert err < 1e-3, err


@pytest.mark.parametrize("dtype,unit,options", [
    (torch.float64, 1e-4, {}), (torch.float32, 1e-4, {}), (torch.float32, 1e-8, {}),
    (torch.float32, 1e-8, {"num_steps": 500, "seed": 1})])
def test_mle_in_tiny_units_keeps_its_closed_form_start(dtype, unit, options):
    """Wine in units of 1e-4 / 1e-8, the maximized log-likelihood of Tipping & Bishop
    (from the eigenvalues, in float64) as the oracle. At the maximum the gradient is
    rounding, Adam's steps are about lr whatever its size, and in these units lr is
    thousands of column sds: the loop ended 24 nats per row below in float64 at 1e-4, 29
    in float32, about 15,700 at 1e-8 (scored in float64). The fit keeps the closed-form
    start: its parameters, evaluated in float64, give the maximum to 1e-6 nats per row
    (it is a stationary point, so the float32 rounding of the parameters, 6e-8
    relative, changes the log-likelihood in second order only), and the fit says by
    how much the loop fell short. The last case is the reviewer's: scored in float32,
    the loop's end (17,478 below, in float64) scored 48 million above the maximum, and
    was kept."""
    raw = torch.as_tensor(_raw("wine") * unit, dtype=dtype)
    fit = pgm.PPCA(13, 2).fit(raw, method="mle", **{"seed": 0, **options}, progress=False)
    oracle = _closed_form_mean_log_lik(raw.double(), 2).item()
    point = {k: v.double() for k, v in fit.point.items()}
    ours = fit.model.double().log_prob_given(point, raw.double()).mean().item()
    assert abs(ours - oracle) < 1e-6, (ours, oracle)
    assert 10.0 < fit.info["kept_start"] < 1e5  # float64 scores: not the float32 millions
    for site, value in closed_form(raw, 2).items():
        assert torch.equal(fit.point[site], value)


def test_mle_whose_loop_overflows_is_its_closed_form_start():
    """Wine in units of 1e-10 in float32 (review): the first step off the exact maximum
    overflows (loss 1.5e20, a non-finite gradient), which raised FitError although the
    closed-form start is the maximum. The fit is now that start, with the maximized
    log-likelihood of Tipping & Bishop as the oracle (to 1e-6 nats per row, as above), and
    ``kept_start`` and a warning say where the loop stopped."""
    raw = torch.as_tensor(_raw("wine") * 1e-10, dtype=torch.float32)
    with pytest.warns(UserWarning, match=r"^PPCA's mle loop stopped: Non-finite gradient at "
                                         r"step 1 \(loss = .*\)\. The fit is the closed-form "
                                         r"maximum the loop started from$") as seen:
        fit = pgm.PPCA(13, 2).fit(raw, method="mle", seed=0, num_steps=100, progress=False)
    assert [w.filename for w in seen] == [__file__]  # the caller's line, once
    assert fit.info["kept_start"] == "the loop stopped: " + str(seen[0].message).split(
        "stopped: ")[1].split(". The fit")[0]
    for site, value in closed_form(raw, 2).items():
        assert torch.equal(fit.point[site], value)
    point = {k: v.double() for k, v in fit.point.items()}
    ours = fit.model.double().log_prob_given(point, raw.double()).mean().item()
    assert abs(ours - _closed_form_mean_log_lik(raw.double(), 2).item()) < 1e-6


def test_map_is_the_maximum_of_the_log_joint_on_raw_columns():
    """On raw wine the default prior (s0 = 10, in the data's units) is strong for
    proline (mean 747, posterior sd of its mean 24): the MAP pulls ``loc`` to about 129.
    ``map`` gets there (before, its absolute steps of lr left it at 723, next to the
    MLE), and it is a maximum: the gradient of the log joint, in column sds, is below
    1e-3 of its size at the MLE, and the log joint is above the MLE's. ``vi`` (1000
    steps) puts proline's posterior mean within 3 of q's sds of the MAP (measured 126,
    q's sd 19)."""
    raw = torch.as_tensor(_raw("wine"))
    model = pgm.PPCA(13, 3)
    fit = model.fit(raw, method="map", seed=0, progress=False)
    assert 100 < fit.params["loc"][-1].item() < 160
    units = raw.std(0, correction=0)

    def log_joint_and_grad(params):
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        lp = poutine.trace(poutine.condition(fit.model.model, data=leaves)).get_trace(
            raw).log_prob_sum()
        grads = torch.autograd.grad(lp, [leaves["loc"], leaves["W"]])
        return lp.item(), torch.cat([(grads[0] * units).flatten(),
                                     (grads[1] * units[:, None]).flatten()])

    at_map, g_map = log_joint_and_grad({k: fit.point[k] for k in ("W", "loc", "sigma")})
    at_mle, g_mle = log_joint_and_grad(closed_form(raw, 3))
    assert at_map > at_mle
    assert g_map.abs().max() < 1e-3 * g_mle.abs().max(), (g_map.abs().max(), g_mle.abs().max())
    vi = model.fit(raw, method="vi", seed=0, progress=False, num_steps=1000,
                   num_posterior_samples=200)
    proline = vi.posterior["loc"].reshape(-1, 13)[:, -1]
    assert abs(proline.mean() - fit.params["loc"][-1]) < 3 * proline.std()


def test_rank_deficient_and_constant_columns_start_finite(float64):
    """Eigenvalues are clamped at 0 and sigma^2 at 1e-6 of the mean column variance (1e-6
    when all columns are constant): the start is finite with sigma > 0, a direction the
    data lack gets a zero column of W, and the fits run. With one constant column the
    closed form still holds (its eigenvalue 0 is one of the discarded). Rows that span at
    most latent_dim dimensions have no MLE (sigma -> 0): mle and map refuse them, saying
    how many they span (on one row, q = 1, the fitted log p was 24.2 after 1 step and
    214.3 after 3000)."""
    g = torch.Generator().manual_seed(0)
    base = _data(n=200, d=4)
    const_col = torch.cat([base, torch.full((200, 1), 7.0)], 1)
    line = torch.randn(200, 1, generator=g) @ torch.randn(1, 5, generator=g) + 3  # rank 1
    flat = torch.full((200, 5), 2.0)
    for x, rank in ((const_col, 4), (line, 1), (flat, 0)):
        start = closed_form(x, 2)
        assert all(bool(torch.isfinite(v).all()) for v in start.values())
        assert start["sigma"] > 0
        mean_var = x.var(0, correction=0).mean()
        assert start["sigma"] ** 2 >= (1e-6 * mean_var if mean_var > 0 else 1e-6) * (1 - 1e-12)
        if rank > 2:
            fit = pgm.PPCA(5, 2).fit(x, method="mle", seed=0, progress=False, num_steps=50)
            assert torch.isfinite(fit.log_prob(x)).all()
            continue
        for method in ("mle", "map"):
            with pytest.raises(ValueError, match=rf"PPCA\(5, 2\) by {method}: the rows \(N=200\) "
                                                 rf"span {rank} dimension\(s\) around their "
                                                 rf"mean, not more than latent_dim=2"):
                pgm.PPCA(5, 2).fit(x, method=method, seed=0, progress=False, num_steps=5)
    with pytest.raises(ValueError, match=r"span 1 dimension\(s\).*It needs more distinct rows"):
        pgm.PPCA(4, 1).fit(_data(n=2, d=4), method="mle", progress=False)
    with pytest.raises(ValueError, match=r"span 4 dimension\(s\).*latent_dim below 4"):
        pgm.PPCA(6, 4).fit(_data(n=5, d=6), method="map", progress=False)
    assert torch.equal(closed_form(line, 2)["W"][:, 1], torch.zeros(5))  # only 1 direction
    assert torch.equal(closed_form(flat, 2)["W"], torch.zeros(5, 2))
    fit = pgm.PPCA(5, 2).fit(const_col, method="mle", seed=0, progress=False, num_steps=300)
    closed = _closed_form_mean_log_lik(const_col, 2).item()
    assert abs(fit.log_prob(const_col).mean().item() - closed) <= 1e-6 * abs(closed)


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


def test_float32_log_prob_of_raw_columns_is_the_dense_gaussians_to_its_rounding():
    """Raw breast cancer in float32, q = 5: the Woodbury form of LowRankMultivariateNormal
    in float32 put one row 13.5 nats off the fit's own Gaussian (loadings of 567 over a
    sigma^2 of 0.22). log_prob is formed in float64 now: it is the dense float64
    Gaussian of the same parameters and rows up to the float32 rounding of the output."""
    x = torch.tensor(load_breast_cancer().data, dtype=torch.float32)
    fit = pgm.PPCA(30, 5).fit(x, method="mle", seed=0, progress=False)
    p = {k: v.double() for k, v in fit.params.items()}
    cov = p["W"] @ p["W"].T + p["sigma"] ** 2 * torch.eye(30, dtype=torch.float64)
    want = dist.MultivariateNormal(p["loc"], cov).log_prob(x.double())
    got = fit.log_prob(x)
    assert got.dtype == torch.float32
    rounding = torch.finfo(torch.float32).eps * want.abs()  # one ulp of the output, at most
    assert ((got.double() - want).abs() <= rounding).all(), (got.double() - want).abs().max()


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


def test_num_params_leaves_out_the_rotation_of_w():
    """AIC / BIC count what the data can identify: W up to a rotation R (q (q - 1) / 2
    angles), the mean and sigma; the generic count, one per unconstrained coordinate of
    the sites, is that plus the angles."""
    from pyro_genmodels.base import GenerativeModel

    for d, q in [(4, 2), (6, 1), (13, 3)]:
        model = pgm.PPCA(d, q)
        assert model.num_params() == d * q - q * (q - 1) // 2 + d + 1
        assert GenerativeModel.num_params(model) - model.num_params() == q * (q - 1) // 2
    assert pgm.PPCA(4, 2).num_params() == 12
