"""The probability-flow ODE (pyro_genmodels.infer.probability_flow) against a Gaussian
oracle, where everything is closed-form: for data N(m, S) the noised marginal is
p_sigma = N(m, S + sigma^2 I), the noise predictor is
eps(y, sigma) = sigma (S + sigma^2 I)^{-1} (y - m), and the flow map is linear,
y(sigma) - m = (S + sigma^2 I)^{1/2} (S + sigma_0^2 I)^{-1/2} (y(sigma_0) - m)."""

import math

import pytest
import torch

from pyro_genmodels.infer.probability_flow import (ODE_OPTIONS, FlowLogProb, _integrate,
                                                   check_ode_options, flow_log_prob,
                                                   flow_sample)

F64 = torch.float64


class Gaussian:
    """Data N(m, S) with a dense S = Q diag(lam) Q^T (eigenvalues in [0.3, ~3])."""

    def __init__(self, dim: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        a = torch.randn(dim, dim, generator=g, dtype=F64)
        self.S = a @ a.T / dim + 0.3 * torch.eye(dim, dtype=F64)
        self.m = torch.randn(dim, generator=g, dtype=F64)
        self.lam, self.Q = torch.linalg.eigh(self.S)
        self.dim = dim

    def eps(self, y, sigma):
        return sigma * ((y - self.m) @ self.Q / (self.lam + sigma**2)) @ self.Q.T

    def cov(self, sigma):
        return self.S + sigma**2 * torch.eye(self.dim, dtype=F64)

    def log_prob(self, y, sigma):
        return torch.distributions.MultivariateNormal(self.m, self.cov(sigma)).log_prob(y)

    def flow(self, y, sigma_from, sigma_to):
        """The exact flow map from sigma_from to sigma_to."""
        r = ((self.lam + sigma_to**2) / (self.lam + sigma_from**2)).sqrt()
        return self.m + ((y - self.m) @ self.Q * r) @ self.Q.T

    def div_integral(self, sigma_min, sigma_max):
        """M = int J dsigma = 1/2 log((S + sigma_max^2) / (S + sigma_min^2)): the
        divergence integral is tr(M), and a fixed probe v gives v^T M v."""
        d = 0.5 * torch.log((self.lam + sigma_max**2) / (self.lam + sigma_min**2))
        return (self.Q * d) @ self.Q.T

    def draw(self, n, sigma=0.0, seed=1):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.dim, generator=g, dtype=F64)
        return self.m + z @ torch.linalg.cholesky(self.cov(sigma)).T

    def log_prob_flow(self, y0, sigma_min, sigma_max, **kw):
        return flow_log_prob(self.eps, y0, sigma_min=sigma_min, sigma_max=sigma_max,
                             prior_log_prob=lambda y: self.log_prob(y, sigma_max), **kw)


# dopri5 keeps each step's local error below atol + rtol |state|; the state includes the
# accumulated log-density change, which grows to D log(sigma_max / sigma_min), so the
# global error is of order rtol * D log(sigma_max / sigma_min) (measured: 0.2-0.7 times
# that at rtol = 1e-4 ... 1e-8); a factor 2 leaves room. At rtol = 1e-5 that is 1.5e-4
# (D = 2) to 4.6e-4 (D = 3) with sigma from 0.01 to 20, measured 3e-5 and 1.1e-4.
def solver_tol(rtol, dim, sigma_min, sigma_max):
    return 2 * rtol * dim * math.log(sigma_max / sigma_min)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("rtol", [1e-5, 1e-8])
def test_exact_log_prob_matches_the_gaussian_marginal(dim, rtol):
    g = Gaussian(dim)
    y0 = g.draw(6)
    r = g.log_prob_flow(y0, 0.01, 20.0, trace="exact", rtol=rtol, atol=rtol)
    assert isinstance(r, FlowLogProb) and r.trace == "exact" and r.num_probes == 0
    assert r.log_prob.shape == (6,) and r.log_prob.dtype == F64 and r.nfe > 0
    err = (r.log_prob - g.log_prob(y0, 0.01)).abs().max().item()
    assert err < solver_tol(rtol, dim, 0.01, 20.0), err


@pytest.mark.parametrize("dim", [2, 3])
def test_small_sigma_min_gives_the_data_density(dim):
    """log N(y; m, S + 1e-6 I) - log N(y; m, S) = O(1e-6 tr S^{-1}): the flow at
    sigma_min = 1e-3 is the data density to the solver's error (< 5e-4 by the bound)."""
    g = Gaussian(dim)
    y0 = g.draw(6)
    r = g.log_prob_flow(y0, 1e-3, 50.0)
    assert (r.log_prob - g.log_prob(y0, 0.0)).abs().max().item() < 1e-3


def test_hutchinson_is_unbiased_with_probes_fixed_along_the_path():
    """D = 10, two points each repeated 300 times: every row gets its own probe, so the
    rows give 300 independent one-probe estimates per point. Their mean matches the exact
    trace within 4 standard errors, and their variance is that of v^T M v for one fixed v,
    2 sum_{i != j} M_ij^2 (probes redrawn at every step would average to far less)."""
    g = Gaussian(10, seed=3)
    lo, hi, k = 0.05, 20.0, 300
    pts = g.draw(2)
    exact = g.log_prob_flow(pts, lo, hi, trace="exact").log_prob
    assert (exact - g.log_prob(pts, lo)).abs().max() < solver_tol(1e-5, 10, lo, hi)
    r = g.log_prob_flow(pts.repeat_interleave(k, 0), lo, hi, trace="hutchinson", seed=7)
    assert (r.trace, r.num_probes) == ("hutchinson", 1) and r.nfe > 0
    est = r.log_prob.reshape(2, k)
    se = est.std(1) / math.sqrt(k)
    assert ((est.mean(1) - exact).abs() < 4 * se).all(), (est.mean(1) - exact, se)
    M = g.div_integral(lo, hi)
    var = 2 * (M**2).sum() - 2 * (M.diag()**2).sum()
    c = est - est.mean(1, keepdim=True)
    se_var = (((c**2 - var) ** 2).mean(1) / k).sqrt()  # SE of the sample variance
    assert ((c.pow(2).mean(1) - var).abs() < 4 * se_var).all(), (c.pow(2).mean(1), var)
    # K probes per row average: the mean is still right and the spread shrinks ~ 1/K
    r8 = g.log_prob_flow(pts.repeat_interleave(50, 0), lo, hi, trace="hutchinson",
                         num_probes=8, seed=7)
    assert r8.num_probes == 8
    est8 = r8.log_prob.reshape(2, 50)
    assert ((est8.mean(1) - exact).abs() < 4 * est8.std(1) / math.sqrt(50)).all()
    assert (est8.var(1) < 0.5 * est.var(1)).all()


def test_auto_picks_exact_up_to_exact_max_dim():
    g2, g10 = Gaussian(2), Gaussian(10)
    assert g2.log_prob_flow(g2.draw(2), 0.1, 5.0).trace == "exact"
    r = g10.log_prob_flow(g10.draw(2), 0.1, 5.0, num_probes=3)
    assert (r.trace, r.num_probes) == ("hutchinson", 3)
    r = g10.log_prob_flow(g10.draw(2), 0.1, 5.0, exact_max_dim=10, num_probes=3)
    assert (r.trace, r.num_probes) == ("exact", 0)


def test_seed_reproduces_and_leaves_the_callers_rng_alone():
    g = Gaussian(10)
    y0 = g.draw(4)
    state = torch.get_rng_state()
    a = g.log_prob_flow(y0, 0.1, 5.0, trace="hutchinson", seed=11).log_prob
    assert torch.equal(torch.get_rng_state(), state)
    b = g.log_prob_flow(y0, 0.1, 5.0, trace="hutchinson", seed=11).log_prob
    c = g.log_prob_flow(y0, 0.1, 5.0, trace="hutchinson", seed=12).log_prob
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_works_under_no_grad_with_a_network(trace, mode):
    """An nn.Module eps under torch.no_grad() or torch.inference_mode(): same answer as
    with grad enabled, no graph kept, no parameter gradient touched."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(),
                              torch.nn.Linear(16, 2)).double()

    def eps(y, sigma):
        return net(torch.cat([y, sigma.log().expand(len(y), 1)], 1))

    y0 = torch.randn(5, 2, dtype=F64)
    kw = {"sigma_min": 0.1, "sigma_max": 5.0, "trace": trace,
          "prior_log_prob": lambda y: -0.5 * (y**2).sum(1) / 25}
    with mode():
        a = flow_log_prob(eps, y0, **kw)
    b = flow_log_prob(eps, y0, **kw)
    assert torch.equal(a.log_prob, b.log_prob) and not a.log_prob.requires_grad
    assert all(p.grad is None for p in net.parameters())


def test_flow_sample_maps_the_prior_to_the_data_within_monte_carlo_error():
    """4000 prior draws at sigma_max = 50 mapped to sigma_min = 0.01 have mean m and
    covariance C = S + 1e-4 I: each mean within 4 sqrt(C_ii / n), each covariance entry
    (about the true mean) within 4 sqrt((C_ii C_jj + C_ij^2) / n)."""
    g, n, lo, hi = Gaussian(2), 4000, 0.01, 50.0
    x = flow_sample(g.eps, g.draw(n, sigma=hi, seed=5), sigma_min=lo, sigma_max=hi)
    assert x.shape == (n, 2) and x.dtype == F64
    C = g.cov(lo)
    assert ((x.mean(0) - g.m).abs() < 4 * (C.diag() / n).sqrt()).all()
    d = x - g.m
    se = ((C.diag()[:, None] * C.diag()[None] + C**2) / n).sqrt()
    assert ((d.T @ d / n - C).abs() < 4 * se).all(), (d.T @ d / n, C)


def test_flow_sample_inverts_the_exact_flow_and_the_forward_solve():
    """A flow_sample of the exact forward image recovers y0, and so does a round trip
    through the solver's forward integration (errors of order rtol |y| ~ 1e-5 * 50)."""
    g, lo, hi = Gaussian(3), 0.01, 50.0
    y0 = g.draw(8)
    back = flow_sample(g.eps, g.flow(y0, lo, hi), sigma_min=lo, sigma_max=hi)
    assert (back - y0).abs().max() < 1e-4
    fwd = _integrate(g.eps, y0, lo, hi, rtol=1e-5, atol=1e-5, method="dopri5",
                     options={"first_step": 0.1})
    assert (fwd - g.flow(y0, lo, hi)).abs().max() < 2e-3
    back = flow_sample(g.eps, fwd, sigma_min=lo, sigma_max=hi)
    assert (back - y0).abs().max() < 1e-4


def test_solver_options_pass_through():
    g = Gaussian(2)
    y0 = g.draw(3)
    r = g.log_prob_flow(y0, 0.1, 5.0, method="rk4", options={"step_size": 0.05})
    assert r.nfe == 4 * math.ceil(math.log(50) / 0.05)
    assert (r.log_prob - g.log_prob(y0, 0.1)).abs().max() < 1e-4


def _bad(**kw):
    g = Gaussian(2)
    args = {"eps": g.eps, "y0": g.draw(3), "sigma_min": 0.1, "sigma_max": 5.0,
            "prior_log_prob": lambda y: g.log_prob(y, 5.0)}
    args.update(kw)
    return flow_log_prob(args.pop("eps"), args.pop("y0"), **args)


@pytest.mark.parametrize("kw, err, match", [
    ({"y0": torch.zeros(3)}, ValueError, "y0 must be 2-D"),
    ({"y0": torch.tensor([[0.0, math.nan]])}, ValueError, "y0 must be finite"),
    ({"y0": "abc"}, TypeError, "y0"),
    ({"sigma_min": 0.0}, ValueError, "sigma_min"),
    ({"sigma_max": math.inf}, ValueError, "sigma_max"),
    ({"sigma_min": 5.0, "sigma_max": 1.0}, ValueError, "sigma_min < sigma_max"),
    ({"sigma_min": "a"}, TypeError, "sigma_min"),
    ({"trace": "trace"}, ValueError, "Unknown trace 'trace'"),
    ({"num_probes": 0}, ValueError, "num_probes"),
    ({"num_probes": 1.5}, ValueError, "num_probes"),
    ({"trace": "exact", "num_probes": 4}, ValueError,
     r"^num_probes is for the Hutchinson trace estimator, but trace='exact'"),
    ({"exact_max_dim": 0}, ValueError, "exact_max_dim"),
    ({"seed": -1}, ValueError, "seed"),
    ({"rtol": 0.0}, ValueError, "rtol"),
    ({"method": "nope"}, ValueError, "nope"),
    ({"options": [1]}, TypeError, "options"),
    ({"eps": 3}, TypeError, "eps"),
    ({"prior_log_prob": None}, TypeError, "prior_log_prob"),
    ({"eps": lambda y, s: y[:, :1]}, ValueError, r"eps\(y, sigma\) to return shape"),
    ({"eps": lambda y, s: y / 0}, ValueError, "finite"),
    ({"eps": lambda y, s: y.detach()}, ValueError, "differentiable"),
    ({"prior_log_prob": lambda y: y}, ValueError, "prior_log_prob to return shape"),
])
def test_bad_inputs_name_the_argument(kw, err, match):
    with pytest.raises(err, match=match):
        _bad(**kw)


def test_flow_sample_validates():
    g = Gaussian(2)
    with pytest.raises(ValueError, match="y_end must be 2-D"):
        flow_sample(g.eps, torch.zeros(2), sigma_min=0.1, sigma_max=1.0)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        flow_sample(g.eps, torch.zeros(1, 2), sigma_min=1.0, sigma_max=1.0)


def test_check_ode_options_is_the_one_list_of_the_fits_ode_options():
    """What a fit's log_prob and probability_flow pass on is checked against ODE_OPTIONS
    alone: an unknown name lists the options taken; bad values and probes with the exact
    trace are refused; good ones come back as given."""
    assert ODE_OPTIONS == ("trace", "num_probes", "rtol", "atol")
    with pytest.raises(ValueError, match=r"^Unknown option\(s\) \['method', 'tol'\] for "
                                         r"f; expected the probability-flow ODE's trace, "
                                         r"num_probes, rtol, atol, or c, seed$"):
        check_ode_options({"tol": 1.0, "method": "rk4", "rtol": 1e-3}, caller="f",
                          takes=("c", "seed"))
    with pytest.raises(ValueError, match=r"^num_probes is for the Hutchinson"):
        check_ode_options({"trace": "exact", "num_probes": 2}, caller="f")
    with pytest.raises(ValueError, match="Unknown trace"):
        check_ode_options({"trace": "approx"}, caller="f")
    with pytest.raises(ValueError, match="rtol"):
        check_ode_options({"rtol": -1.0}, caller="f")
    ok = {"trace": "exact", "num_probes": 1, "atol": 1e-4}
    assert check_ode_options(ok, caller="f") == ok
    assert check_ode_options({"num_probes": 3}, caller="f") == {"num_probes": 3}  # auto
