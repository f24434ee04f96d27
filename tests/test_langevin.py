"""Batched samplers and AIS (pyro_genmodels.infer.samplers, .ais) against closed forms:
Gaussian moments within Monte Carlo error (standard errors from ESS), the exact
stationary law of unadjusted Langevin, AIS log Z, step-size adaptation, divergences."""

import math

import arviz as az
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded
from pyro_genmodels.infer import ais, samplers


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Two intra-op threads on a shared 2-core machine make tiny batched ops ~100x slower
    (contention); one thread is the honest setting for these small problems."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


MU = torch.tensor([1.0, -1.0], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.8], [0.8, 2.0]], dtype=torch.float64)
PREC = torch.linalg.inv(COV)
CONST = 3.0  # an arbitrary additive constant: the samplers only see f up to it
LOG_Z = CONST + math.log(2 * math.pi) + 0.5 * torch.logdet(COV).item()


def gaussian_log_density(x):
    d = x - MU
    return -0.5 * (d @ PREC * d).sum(-1) + CONST


def assert_moments(samples, mu, cov, *, k=4.0):
    """Every mean and covariance entry within k standard errors, the standard errors from
    ArviZ's bulk ESS of the per-draw terms: x_i for the mean, (x_i - mu_i)(x_j - mu_j)
    (unbiased for cov_ij given the true mean) for the covariance."""
    s = samples.detach().double().numpy()  # (chains, draws, D)
    mu, cov = mu.numpy(), cov.numpy()
    D = s.shape[-1]
    for i in range(D):
        terms = {f"mean[{i}]": (s[..., i], mu[i])}
        for j in range(i, D):
            terms[f"cov[{i},{j}]"] = ((s[..., i] - mu[i]) * (s[..., j] - mu[j]), cov[i, j])
        for name, (v, truth) in terms.items():
            ess = float(az.ess(v))
            se = v.std() / math.sqrt(ess)
            assert abs(v.mean() - truth) < k * se, (name, v.mean(), truth, se, ess)


def initial(n, seed=0):
    with seeded(seed):
        return MU + torch.randn(n, 2, dtype=torch.float64) * 1.5


@pytest.mark.parametrize("adjusted", [True, False])
def test_langevin_matches_the_gaussian(adjusted):
    """MALA targets N(MU, COV) exactly. ULA with step eps has the stationary law
    N(MU, COV (I - eps^2 PREC / 4)^{-1}) exactly (a Gaussian AR(1) recursion), and the
    chains must match that biased law, not the target."""
    x0 = initial(400)
    with seeded(1):
        if adjusted:
            r = samplers.mala(gaussian_log_density, x0, num_samples=150, warmup_steps=300)
            cov = COV
        else:
            eps = 0.4
            r = samplers.mala(gaussian_log_density, x0, num_samples=150, warmup_steps=300,
                              step_size=eps, adjusted=False)
            cov = COV @ torch.linalg.inv(torch.eye(2, dtype=torch.float64) - eps**2 * PREC / 4)
            assert (r.sample_stats["step_size"] == eps).all()
    assert r.samples.shape == (400, 150, 2)
    assert_moments(r.samples, MU, cov)
    assert r.num_divergences == 0


def test_mala_adapts_the_chains_to_the_target_acceptance():
    x0 = initial(300)
    with seeded(2):
        r = samplers.mala(gaussian_log_density, x0, num_samples=200, warmup_steps=400,
                          target_accept=0.574)
    acc = r.sample_stats["acceptance_rate"].mean().item()
    # the dual-averaged step size aims at 0.574; the mean acceptance of 60000 transitions
    # lands near it (the adaptation is not exact, hence the band)
    assert 0.45 < acc < 0.70, acc
    eps = r.sample_stats["step_size"]
    assert (eps == eps[0, 0]).all()  # fixed after warmup, one for all chains


def test_short_chains_pool_to_the_target_where_the_curvature_varies():
    """A banana, a ~ N(0, 1.5^2) and b | a ~ N(a^2 / 2 - 1, 0.5^2), so E[a^2] = 2.25
    exactly. 4,000 MALA chains of 20 draws: the chains are independent, so the standard
    error of E[a^2] is that of the 4,000 chain means, and |z| < 4 (a false alarm once in
    16,000). With a step size adapted per chain, a chain in a narrow tail adapted to
    small steps and stayed there: E[a^2] = 2.60 (z = 6.7; 4.8 with seed 1)."""
    def banana(x):
        a, b = x[..., 0], x[..., 1]
        return -0.5 * (a / 1.5) ** 2 - 0.5 * ((b - 0.5 * a ** 2 + 1) / 0.5) ** 2

    model = pgm.EnergyModel.from_log_density(banana, 2, scale=[2.0, 3.0])
    run = model.sample_chains(80000, sampler="langevin", seed=0, num_chains=4000)
    per_chain = run.samples[..., 0].double().pow(2).mean(1)
    se = per_chain.std() / math.sqrt(per_chain.numel())
    assert abs(per_chain.mean() - 2.25) < 4 * se, (per_chain.mean(), se)


def test_hmc_vectorized_matches_the_gaussian():
    x0 = initial(300)
    with seeded(3):
        r = samplers.hmc(gaussian_log_density, x0, num_samples=60, warmup_steps=150,
                         num_leapfrog=8)
    assert r.samples.shape == (300, 60, 2)
    assert_moments(r.samples, MU, COV)
    assert 0.6 < r.sample_stats["acceptance_rate"].mean().item() < 0.95


def test_ais_log_normalizer_of_the_gaussian():
    with seeded(4):
        est = ais.ais_log_normalizer(gaussian_log_density, torch.zeros(2, dtype=torch.float64),
                                     torch.full((2,), 3.0, dtype=torch.float64),
                                     num_particles=1000, num_steps=200)
    assert isinstance(est, ais.AISEstimate) and est.num_samples == 1000
    assert abs(est.estimate - LOG_Z) < 0.1
    assert abs(est.estimate - LOG_Z) < 4 * est.stderr + 0.01  # log-bias ~ se^2 / 2
    assert 0 < est.stderr < 0.05 and est.ess > 500


def test_ais_with_a_perfect_base_has_equal_weights():
    """With the target itself as the base (a diagonal Gaussian), every increment is the
    constant log Z, so the estimate is exact and the standard error zero."""
    scale = torch.tensor([0.5, 2.0], dtype=torch.float64)

    def ld(x):
        return torch.distributions.Normal(MU, scale).log_prob(x).sum(-1) + 1.5

    with seeded(0):
        est = ais.ais_log_normalizer(ld, MU, scale, num_particles=64, num_steps=10)
    assert est.estimate == pytest.approx(1.5, abs=1e-10)
    assert est.stderr == pytest.approx(0.0, abs=1e-10)


def test_smc_anneal_finds_both_modes_in_proportion():
    """Equal-shape modes at +-5 with weights 0.25 / 0.75: chains cannot cross, but the
    SMC particles start in each mode in proportion to its mass (binomial tolerance)."""
    w = torch.tensor([0.25, 0.75], dtype=torch.float64)
    locs = torch.tensor([[-5.0, 0.0], [5.0, 0.0]], dtype=torch.float64)

    def ld(x):
        comp = torch.distributions.Normal(locs, 0.5).log_prob(x[:, None, :]).sum(-1)
        return (comp + w.log()).logsumexp(-1) + 7.0

    with seeded(5):
        res = ais.anneal(ld, torch.zeros(2, dtype=torch.float64),
                         torch.full((2,), 4.0, dtype=torch.float64), 2000, num_steps=100,
                         resample=True)
    frac = (res.particles[:, 0] > 0).double().mean().item()
    se = math.sqrt(0.75 * 0.25 / 2000)
    assert abs(frac - 0.75) < 4 * se, frac
    assert abs(res.log_z.estimate - 7.0) < 0.1


def test_divergences_are_counted_not_hidden():
    """A step size far too large for the target: proposals with Hamiltonian error > 1000
    (or non-finite ones) are rejected and flagged."""
    x0 = initial(50)
    with seeded(6):
        r = samplers.mala(gaussian_log_density, x0, num_samples=20, warmup_steps=0,
                          step_size=30.0, adapt=False)
    div = r.sample_stats["diverging"]
    assert div.dtype == torch.bool and div.sum() > 0
    assert r.info["num_divergences"] == int(div.sum()) == r.num_divergences
    idata = r.to_arviz()
    assert int(idata.sample_stats["diverging"].values.sum()) == r.num_divergences
    # divergent proposals were rejected: the chain stayed put at those draws
    assert (r.sample_stats["acceptance_rate"][div] < 1e-300).all()


def test_non_finite_region_is_rejected():
    """log density -inf (or NaN) on x0 > 2: those proposals are divergent and refused, and
    no chain ever enters the region."""

    def ld(x):
        out = -0.5 * x.pow(2).sum(-1)
        return torch.where(x[:, 0] > 2, torch.full_like(out, float("nan")), out)

    with seeded(7):
        r = samplers.mala(ld, torch.zeros(200, 2, dtype=torch.float64), num_samples=100,
                          warmup_steps=100)
    assert (r.samples[..., 0] <= 2).all()
    assert r.num_divergences > 0


def test_bad_log_density_is_refused():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"shape \(3,\).*\(3, 1\)"):
        samplers.mala(lambda x: -x.pow(2).sum(-1, keepdim=True), x, num_samples=2)
    with pytest.raises(ValueError, match="not finite"):
        samplers.check_log_density(lambda x: x.sum(-1) * float("nan"), x)
    with pytest.raises(ValueError, match="gradient"):
        samplers.mala(lambda x: torch.zeros(x.shape[0]), x, num_samples=2)
    with pytest.raises(ValueError, match="num_samples"):
        samplers.mala(gaussian_log_density, x.double(), num_samples=0)
    with pytest.raises(ValueError, match="target_accept"):
        samplers.hmc(gaussian_log_density, x.double(), num_samples=1, target_accept=1.5)
    with pytest.raises(ValueError, match="warmup_steps"):
        samplers.hmc(gaussian_log_density, x.double(), num_samples=1, warmup_steps=-1)


def test_same_seed_same_chains():
    x0 = initial(20)
    runs = []
    for _ in range(2):
        with seeded(11):
            runs.append(samplers.hmc(gaussian_log_density, x0, num_samples=10, warmup_steps=10))
    assert torch.equal(runs[0].samples, runs[1].samples)
    for k in runs[0].sample_stats:
        assert torch.equal(runs[0].sample_stats[k], runs[1].sample_stats[k])


def test_schedule_and_resampling():
    b = ais.schedule(50)
    assert b[0] == 0 and b[-1] == 1 and (b.diff() > 0).all()
    g = torch.Generator().manual_seed(0)
    log_w = 3 * torch.randn(500, generator=g, dtype=torch.float64)
    with seeded(0):
        idx = ais._systematic(log_w)
    counts = torch.bincount(idx, minlength=500).double()
    expected = 500 * torch.softmax(log_w, 0)
    # systematic resampling: every particle is copied floor or ceil of K w_k times
    assert ((counts >= expected.floor() - 1e-9) & (counts <= expected.ceil() + 1e-9)).all()
    assert counts.sum() == 500


def test_to_arviz_has_chains_rhat_and_ess():
    x0 = initial(4)
    with seeded(8):
        r = samplers.mala(gaussian_log_density, x0, num_samples=300, warmup_steps=200)
    idata = r.to_arviz()
    assert idata.posterior.sizes["chain"] == 4 and idata.posterior.sizes["draw"] == 300
    summary = az.summary(idata)
    assert {"r_hat", "ess_bulk", "ess_tail"} <= set(summary.columns)
    assert (summary["r_hat"] < 1.1).all()
    for k in ("diverging", "acceptance_rate", "step_size", "lp"):
        assert k in idata.sample_stats


# The device= path must run on a GPU to mean anything; CI and this machine have none,
# so it runs wherever CUDA is present (the CPU path is covered by every other test).
@pytest.mark.skipif(not torch.cuda.is_available(),  # justified in the comment above
                    reason="the device= path needs CUDA; CI has no GPU")
def test_samplers_run_on_cuda():
    x0 = initial(256).cuda()
    mu, prec = MU.cuda(), PREC.cuda()

    def ld(x):
        d = x - mu
        return -0.5 * (d @ prec * d).sum(-1)

    with seeded(0):
        r = samplers.mala(ld, x0, num_samples=200, warmup_steps=200)
        h = samplers.hmc(ld, x0, num_samples=50, warmup_steps=100)
        z = ais.ais_log_normalizer(ld, mu, torch.full((2,), 3.0, device="cuda",
                                                      dtype=torch.float64))
    assert r.samples.is_cuda and h.samples.is_cuda
    assert_moments(r.samples.cpu(), MU, COV)
    assert_moments(h.samples.cpu(), MU, COV)
    assert abs(z.estimate - (LOG_Z - CONST)) < 0.1
