"""ChEES-HMC (pyro_genmodels.infer.chees) and the fused potential it runs on
(pyro_genmodels.infer.potential): oracles are closed-form Gaussian moments, Pyro's own
potential and gradient, and exact leapfrog counts and energies."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.ops.integrator import potential_grad

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded
from pyro_genmodels.infer.chees import chees, chees_gradient, van_der_corput
from pyro_genmodels.infer.mcmc import _enumeration
from pyro_genmodels.infer.objectives import traced_execution
from pyro_genmodels.infer.potential import FusedPotential, GradientGraph, compiled
from pyro_genmodels.infer.samplers import value_and_grad
from pyro_genmodels.models.sequence import NGram

SCALES = torch.tensor([0.05, 1.0, 20.0], dtype=torch.float64)
CORR = 0.8


def _gaussian_target(z):
    """N(0, S) with S = diag(SCALES) R diag(SCALES), R with correlation 0.8 between the
    last two coordinates: scales 400 apart and a correlation the diagonal mass misses."""
    y = z / SCALES
    a, b = y[:, 1], y[:, 2]
    quad = y[:, 0] ** 2 + (a * a - 2 * CORR * a * b + b * b) / (1 - CORR ** 2)
    return -0.5 * quad


def test_chees_draws_a_badly_scaled_correlated_gaussian():
    with seeded(0):
        r = chees(_gaussian_target, torch.randn(8, 3, dtype=torch.float64) * SCALES * 3,
                  num_samples=600, warmup_steps=400)
    import arviz as az
    idata = r.to_arviz()
    ess = torch.as_tensor(az.ess(idata)["x"].values)
    assert (ess > 400).all(), ess  # well mixed: it would be ~10 without the mass matrix
    draws = r.samples.reshape(-1, 3)
    # 4 Monte Carlo standard errors from the effective sample size
    assert ((draws.mean(0) / SCALES).abs() < 4 / ess.sqrt()).all()
    assert ((draws.std(0) / SCALES - 1).abs() < 4 / (2 * ess).sqrt()).all()
    corr = torch.corrcoef(draws[:, 1:].T)[0, 1]
    assert abs(corr - CORR) < 4 * (1 - CORR ** 2) / ess[1:].min().sqrt()
    # the adapted inverse mass is the posterior variance, to the window's precision
    ratio = torch.tensor(r.info["inverse_mass_diag"], dtype=torch.float64) / SCALES ** 2
    assert ((ratio > 0.5) & (ratio < 2)).all(), ratio
    assert r.num_divergences == 0
    assert set(r.sample_stats) == {"diverging", "acceptance_rate", "step_size", "lp",
                                   "energy", "n_steps"}


def test_chees_records_exact_energies_and_steps():
    with seeded(1):
        r = chees(_gaussian_target, torch.randn(4, 3, dtype=torch.float64) * SCALES,
                  num_samples=200, warmup_steps=150)
    st = r.sample_stats
    eps, T = r.info["step_size"], r.info["trajectory_length"]
    # every chain takes the same number of steps: ceil(h_n T / eps), h_n van der Corput
    n = 150 + torch.arange(1, 201)
    expected = [max(1, math.ceil(van_der_corput(int(k)) * T / eps)) for k in n]
    assert st["n_steps"][0].tolist() == expected
    assert torch.equal(st["n_steps"][0], st["n_steps"][3])
    # the energy after the momentum refresh is U(q) + K >= U(q) = -lp of the last draw
    assert (st["energy"][:, 1:] >= -st["lp"][:, :-1] - 1e-9).all()
    # and lp is the target's log density at the draw
    assert torch.allclose(st["lp"], _gaussian_target(r.samples.reshape(-1, 3)).reshape(4, 200))
    assert (st["step_size"] == eps).all()


def test_van_der_corput():
    assert [van_der_corput(n) for n in range(1, 8)] == [0.5, 0.25, 0.75, 0.125, 0.625,
                                                        0.375, 0.875]


def test_chees_rejects_non_finite_proposals_as_divergences():
    def half_space(z):  # density zero (log -inf) for z[0] > 1: a hard wall
        lp = -0.5 * z.pow(2).sum(-1)
        return torch.where(z[:, 0] > 1.0, lp - math.inf, lp)
    with seeded(0):
        r = chees(half_space, torch.zeros(4, 2), num_samples=300, warmup_steps=100)
    assert (r.samples[..., 0] <= 1.0).all()
    assert r.num_divergences > 0
    assert r.sample_stats["diverging"].dtype == torch.bool


def test_chees_keeps_the_draws_made_before_ctrl_c():
    calls = {"n": 0}

    def target(z):
        calls["n"] += 1
        if calls["n"] > 400:
            raise KeyboardInterrupt
        return -0.5 * z.pow(2).sum(-1)
    with seeded(0):
        r = chees(target, torch.zeros(2, 2), num_samples=10_000, warmup_steps=50)
    assert r.info["interrupted"] and 0 < r.samples.shape[1] < 10_000
    assert r.samples.shape[1] == r.info["num_samples"] == r.sample_stats["lp"].shape[1]
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        chees(target, torch.zeros(2, 2), num_samples=10, warmup_steps=10_000)


def test_chees_needs_two_chains_and_checks_its_arguments():
    f = _gaussian_target
    with pytest.raises(ValueError, match="at least 2 chains, but got 1"):
        chees(f, torch.zeros(1, 3), num_samples=10)
    with pytest.raises(ValueError, match="target_accept"):
        chees(f, torch.zeros(2, 3), num_samples=10, target_accept=1.5)
    with pytest.raises(ValueError, match="max_leapfrog"):
        chees(f, torch.zeros(2, 3), num_samples=10, max_leapfrog=0)


# ---------------------------------------------------------------------- the fused potential
def _models():
    x3, _ = pgm.datasets.correlated_gaussian(120, dim=3, seed=0)
    x3 = x3.double()
    clusters = torch.cat([torch.randn(40, 2) - 2, torch.randn(40, 2) + 2]).double()
    ngram = NGram(2, prior_concentration=2.0).double()
    tokens = ngram.prepare_data(["abcab", "abba", "cabbac"], None, device=torch.device("cpu"))
    return [(pgm.Gaussian(3).double(), x3), (pgm.Gaussian(1).double(), x3[:, :1]),
            (pgm.Gaussian(3, covariance=torch.eye(3)).double(), x3),
            (pgm.GaussianMixture(2, 2).double(), clusters),
            (pgm.GaussianMixture(2, 3, covariance_type="diag").double(), clusters),
            (tokens[0], tokens[1]),
            # the mixture of tests/test_diagnostics.py's SBC, whose Pyro-NUTS run this
            # equality stands in for
            (pgm.GaussianMixture(1, 2, covariance_type="diag", prior_scale=1.0,
                                 prior_concentration=5.0).double(), clusters[:30, :1])]


@pytest.mark.parametrize("case", range(7))
def test_the_fused_potential_is_pyros_value_and_gradient(case):
    model, x = _models()[case]
    pot = FusedPotential(model, x, None, **_enumeration(model))
    with seeded(0):
        z = pot.initial_points(3, 1.0)
    lp, grad = value_and_grad(pot, z)
    for i in range(3):
        g_ref, u_ref = potential_grad(pot._pyro_potential, pot.unflatten(z[i]))
        assert lp[i].item() == pytest.approx(-u_ref.item(), rel=1e-10)
        ref = torch.cat([g_ref[s].reshape(-1) for s in pot.sites])
        assert torch.allclose(grad[i], -ref, rtol=1e-8, atol=1e-8)
    pot.check(z)  # the check agrees with itself


@pytest.mark.parametrize("case", range(5))  # the jit_safe families
def test_the_traced_potential_is_the_eager_one(case):
    """jit_compile: the graph traced at the starting points gives the eager gradient at
    other points (the data and the shapes are fixed, the point is not), and the eager
    value up to one constant: ``torch.jit.trace`` keeps a Python number on the left of an
    operator (``k * log(2 pi) + M`` in MultivariateNormal.log_prob) as a float32 constant,
    which in a float64 model shifts the log density by a constant (measured: 1.9e-6 over
    120 rows) that cancels in every acceptance ratio. Float32 models are unaffected."""
    model, x = _models()[case]
    assert model.jit_safe
    pot = FusedPotential(model, x, None, **_enumeration(model))
    with seeded(0):
        z0 = pot.initial_points(4, 0.5)
        z = pot.initial_points(4, 2.0)
    info = {}
    offsets = []
    with pyro.validation_enabled(False), traced_execution():
        traced = compiled(pot.log_density, z0, "jit", info)
        assert isinstance(traced, GradientGraph)
        assert info["compile_seconds"] >= 0
        for point in (z, z0, z * 0.5):
            assert traced.value_and_grad(point) is not None  # the graph answers
            lp, grad = value_and_grad(traced, point)
            lp_ref, grad_ref = value_and_grad(pot.log_density, point)
            assert torch.allclose(grad, grad_ref, rtol=1e-10, atol=1e-12)
            offsets.append(lp - lp_ref)
        # another batch size is not the traced one: autograd on the eager density answers
        assert traced.value_and_grad(z[:2]) is None
        lp, grad = value_and_grad(traced, z[:2])
        assert torch.equal(grad, value_and_grad(pot.log_density, z[:2])[1])
    offsets = torch.cat(offsets)
    scale = float(x.numel())  # the constant is at most N D float32 roundings of O(1)
    assert offsets.abs().max() <= 1e-7 * scale
    assert (offsets - offsets[0]).abs().max() <= 1e-10 * scale


def test_the_fused_potential_refuses_when_it_is_not_pyros():
    model, x = _models()[0]
    pot = FusedPotential(model, x, None)
    with seeded(0):
        z = pot.initial_points(2, 0.5)
    pot.priors["loc"] = dist.Normal(torch.zeros(3, dtype=torch.float64), 1.0).to_event(1)
    with pytest.raises(ValueError, match="(?s)differs from Pyro's .* use method='nuts'"):
        pot.check(z)


class _DataCentredGaussian(pgm.Gaussian):
    """A user's family whose prior depends on the data: loc ~ N(mean(x), 1). Its program
    has static control flow, which it states (a rewritten model() does not inherit it)."""

    jit_safe = True

    def model(self, x=None, *, c=None, num_data=None, subsample_size=None, subsample=None):
        m = x.mean(0) if x is not None else torch.zeros(self.dim)
        loc = pyro.sample("loc", dist.Normal(m, 1.0).to_event(1))
        scale = pyro.sample("scale", dist.HalfNormal(torch.full((self.dim,), 10.0))
                            .to_event(1))
        with pyro.plate("data", num_data or x.shape[0]):
            return pyro.sample("x", dist.Normal(loc, scale).to_event(1), obs=x)

    @property
    def global_sites(self):
        return ("loc", "scale")

    def distribution(self, params, c=None):
        return dist.Normal(params["loc"], params["scale"]).to_event(1)

    def init_values(self, x):
        return {"loc": x.mean(0), "scale": x.std(0)}


@pytest.mark.parametrize("options", [{"method": "nuts", "sampler": "fused", "num_chains": 2},
                                     {"method": "chees", "num_chains": 4}])
def test_a_kept_trace_serves_the_next_data_set_and_draws_what_a_fresh_one_draws(
        options, monkeypatch):
    """The fits of one model on data sets of one shape (an SBC run) trace the potential
    once: a later fit runs the kept graph on its data and units (``trace_reused``),
    without tracing or simplifying again, and draws bit for bit what a fresh graph
    draws. Another shape is traced afresh, and so is a kept graph that gives another
    value than the potential's own (here a key made to leave out the configuration, so a
    prior scale of 10 meets a graph of 1)."""
    from collections import OrderedDict

    from pyro_genmodels.infer import potential as P
    from pyro_genmodels.infer.simplify import simplify as simp

    monkeypatch.setattr(P, "_KEPT", OrderedDict())
    simplified = []  # a kept graph is neither traced nor simplified again
    monkeypatch.setattr(P, "simplify", lambda g, z: simplified.append(1) or simp(g, z))
    opts = dict(num_samples=20, warmup_steps=20, progress=False, **options)
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(30, 1, generator=g) * 3 + 1, torch.randn(30, 1, generator=g) - 2

    def mixture(scale=1.0):
        return pgm.GaussianMixture(1, 2, covariance_type="diag", prior_scale=scale,
                                   prior_concentration=5.0)

    def same_draws(a, b):
        return a.posterior.keys() == b.posterior.keys() and all(
            torch.equal(a.posterior[k], b.posterior[k]) for k in a.posterior)

    assert not mixture().fit(x1, seed=1, **opts).info["trace_reused"]
    assert len(simplified) == 1
    second = mixture().fit(x2, seed=2, **opts)
    assert second.info["trace_reused"] and len(simplified) == 1
    P._KEPT.clear()
    fresh = mixture().fit(x2, seed=2, **opts)
    assert not fresh.info["trace_reused"] and same_draws(second, fresh)
    assert not mixture().fit(x2[:20], seed=2, **opts).info["trace_reused"]
    # a prior that depends on the data (a user's family) is part of the key: not reused,
    # even where the value check would not tell (switched off here)
    with monkeypatch.context() as m:
        m.setattr(P, "_disagreement", lambda *args: None)
        centred = _DataCentredGaussian(1)
        centred.fit(x1, seed=1, **opts)
        again = centred.fit(x2, seed=2, **opts)
        assert not again.info["trace_reused"]
        P._KEPT.clear()
        assert same_draws(again, centred.fit(x2, seed=2, **opts))
    monkeypatch.setattr(P.FusedPotential, "trace_key", lambda self: ("one key",))
    mixture(1.0).fit(x1, seed=1, **opts)
    kept = mixture(10.0).fit(x2, seed=2, **opts)
    P._KEPT.clear()
    assert not kept.info["trace_reused"]
    assert same_draws(kept, mixture(10.0).fit(x2, seed=2, **opts))


def test_a_kept_graph_holds_no_data_and_a_large_one_is_not_kept(monkeypatch):
    """What the cache keeps is the graph and the trace's own constants: no fit's data
    (those are inputs), a few hundred bytes for a mixture on 20,000 rows; a graph whose
    constants exceed ``MAX_KEPT_BYTES`` is used for its fit and not kept."""
    from collections import OrderedDict

    from pyro_genmodels.infer import potential as P

    monkeypatch.setattr(P, "_KEPT", OrderedDict())
    x = torch.randn(20000, 2, generator=torch.Generator().manual_seed(0))
    opts = dict(method="chees", num_chains=2, num_samples=4, warmup_steps=4, seed=0,
                progress=False)
    pgm.GaussianMixture(2, 2).fit(x, **opts)
    (kept,) = P._KEPT.values()
    assert 0 < kept.nbytes < 2000 and not any(
        t.shape[:1] == x.shape[:1] for t in kept.constants.values())
    records = [n.meta.get("val") for g in (kept.prepare, kept.main) if g is not None
               for n in g.graph.nodes]  # the nodes' records: shapes, not the data
    assert not [v for v in records if type(v) is torch.Tensor and v.device.type != "meta"]
    monkeypatch.setattr(P, "_KEPT", OrderedDict())
    monkeypatch.setattr(P, "MAX_KEPT_BYTES", kept.nbytes - 1)
    first = pgm.GaussianMixture(2, 2).fit(x, **opts)
    again = pgm.GaussianMixture(2, 2).fit(x, **opts)
    assert not P._KEPT and not again.info["trace_reused"]
    assert all(torch.equal(first.posterior[k], again.posterior[k]) for k in first.posterior)


# ---------------------------------------------------------------------- through the facade
def test_facade_chees_options_are_checked_before_any_work():
    x, _ = pgm.datasets.correlated_gaussian(50, dim=2, seed=0)
    g = pgm.Gaussian(2)
    pyro.param("user_param", torch.tensor(1.0))
    state = torch.get_rng_state()
    for bad, match in (({"num_chains": 1}, "num_chains to be an integer >= 2"),
                       ({"compile": "yes"}, "compile"),
                       ({"jit_compile": "yes"}, "jit_compile"),
                       ({"target_accept_prob": 0.0}, "target_accept_prob"),
                       ({"max_tree_depth": 3}, "max_tree_depth")):
        with pytest.raises((ValueError, TypeError), match=match):
            g.fit(x, method="chees", progress=False, **bad)
    assert torch.equal(torch.get_rng_state(), state)
    assert set(pyro.get_param_store().keys()) == {"user_param"}


def test_facade_chees_is_reproducible_and_saves(tmp_path):
    x, _ = pgm.datasets.correlated_gaussian(80, dim=2, seed=0)
    opts = dict(method="chees", progress=False, num_samples=50, warmup_steps=50)
    a = pgm.Gaussian(2).fit(x, seed=3, **opts)
    b = pgm.Gaussian(2).fit(x, seed=3, **opts)
    for k in a.posterior:
        assert torch.equal(a.posterior[k], b.posterior[k])
    assert a.info["sampler"] == "chees" and a.info["num_warmup"] == 50
    assert a.info["potential"] == "jit"  # Gaussian is jit_safe: traced by default
    eager = pgm.Gaussian(2).fit(x, seed=3, jit_compile=False, **opts)
    assert eager.info["potential"] == "eager" and "compile_seconds" not in eager.info
    # the same chains to float rounding: the traced graph computes what eager does
    assert torch.allclose(eager.posterior["loc"], a.posterior["loc"], atol=1e-3)
    a.save(tmp_path / "f")
    back = pgm.load(tmp_path / "f")
    assert torch.equal(back.posterior["loc"], a.posterior["loc"])
    assert torch.equal(back.sample_stats["energy"], a.sample_stats["energy"])


def test_every_mcmc_path_gives_the_same_inference_data_groups_and_stats():
    import arviz as az
    import matplotlib
    matplotlib.use("Agg")
    x, _ = pgm.datasets.correlated_gaussian(60, dim=2, seed=0)
    idatas = {m: pgm.Gaussian(2).fit(x, method=m, seed=0, progress=False, num_samples=40,
                                     warmup_steps=40, num_chains=2).to_arviz()
              for m in ("nuts", "hmc", "chees")}
    groups = {m: set(i.groups()) for m, i in idatas.items()}
    assert groups["nuts"] == groups["hmc"] == groups["chees"]
    stats = {m: {k: i.sample_stats[k].dtype.kind for k in i.sample_stats.data_vars}
             for m, i in idatas.items()}
    assert stats["nuts"] == stats["hmc"] == stats["chees"]
    for m, idata in idatas.items():  # ArviZ reads them unchanged
        assert az.bfmi(idata).shape == (2,)
        assert math.isfinite(az.loo(idata).elpd_loo)
        az.plot_energy(idata)
        assert "r_hat" in az.summary(idata, var_names=["loc"])


# ---------------------------------------------------------------------- Pyro's path, the same stats
@pytest.mark.parametrize("method", ["nuts", "hmc"])
def test_pyro_paths_record_energy_steps_and_acceptance_per_draw(method):
    x, _ = pgm.datasets.correlated_gaussian(100, dim=2, seed=0)
    fit = pgm.Gaussian(2).fit(x, method=method, seed=0, progress=False, num_samples=60,
                              warmup_steps=60, num_chains=2)
    st = fit.sample_stats
    assert set(st) == {"diverging", "acceptance_rate", "step_size", "lp", "energy", "n_steps"}
    # the Hamiltonian after the momentum refresh is U(q) + K >= U(q) = -lp of the last draw
    assert (st["energy"][:, 1:] >= -st["lp"][:, :-1] - 1e-3).all()
    assert ((st["acceptance_rate"] >= -1e-5) & (st["acceptance_rate"] <= 1 + 1e-5)).all()
    if method == "hmc":  # Pyro's HMC takes int(trajectory_length / step_size) steps
        expected = (1.0 / st["step_size"]).floor().clamp(min=1)
        assert torch.equal(st["n_steps"], expected)
    else:  # NUTS: a tree of 2^depth - 1 steps, or fewer where a sub-tree turned back
        assert ((st["n_steps"] >= 1) & (st["n_steps"] <= 2 ** 10 - 1)).all()
        full = torch.log2(st["n_steps"] + 1)
        assert (full == full.round()).float().mean() > 0.5
    # HMC: the fraction of accepted transitions (Pyro's diagnostics, fit.info) is a sum
    # of Bernoulli(a_i) over the draws (Metropolis accepts with probability a_i): within
    # 4 of its standard errors of the mean a_i. Not NUTS: there a_i is the tree's mean
    # acceptance statistic (what the step size adapts to) and the fraction the draws
    # that moved, which a multinomial choice from the tree makes more frequent (seed 0,
    # chain 2: 0.92 moved, mean a_i 0.60).
    a = st["acceptance_rate"].double().clamp(0, 1)
    n = a.shape[1]
    frac = torch.tensor(fit.info["acceptance_rate"], dtype=torch.float64)
    if method == "hmc":
        se = (a * (1 - a)).sum(1).sqrt() / n
        assert ((frac - a.mean(1)).abs() <= 4 * se + 1 / n).all(), (frac, a.mean(1))


@pytest.mark.slow  # torch.compile of the potential: 10-20 s on 2 cores
def test_compiled_potential_draws_the_same_posterior():
    """compile=True: the compiled potential is the eager one (to float32 rounding) on
    new data of the same shape as well, and the draws agree within Monte Carlo error."""
    x, _ = pgm.datasets.correlated_gaussian(200, dim=2, seed=0)
    opts = dict(method="chees", progress=False, num_samples=500, warmup_steps=300,
                num_chains=4)
    eager = pgm.Gaussian(2).fit(x, seed=0, jit_compile=False, **opts)
    comp = pgm.Gaussian(2).fit(x, seed=0, compile=True, **opts)
    assert comp.info["compile_seconds"] > 0 and "compile_seconds" not in eager.info
    assert comp.info["potential"] == "torch.compile"
    for k in ("loc", "scale"):
        a, b = eager.posterior_samples()[k], comp.posterior_samples()[k]
        sd = a.std(0)
        # two runs of ~1000 effective draws each: 4 standard errors of the difference
        assert ((a.mean(0) - b.mean(0)).abs() < 4 * sd * math.sqrt(2 / 1000)).all(), k
    # a second compiled fit on other data of the same shape reuses nothing stale
    y = x * 3.0 + 1.0
    again = pgm.Gaussian(2).fit(y, seed=0, compile=True, **opts)
    m = again.posterior_samples()["loc"].mean(0)
    assert torch.allclose(m, y.mean(0), atol=4 * 3.0 * x.std(0).max() / math.sqrt(200))


@pytest.mark.parametrize("T", [1.8, 2.25, 2.7])
def test_the_trajectory_gradient_is_the_jittered_criterions(T):
    r"""The oracle: exact dynamics on a standard normal in D dimensions, y' = y cos t +
    p sin t, have E[delta (y' - mean)^T v'] = D sin 2t, so over the jitter t = hT, h ~
    U(0, 1), the estimate weighted by t has mean T dJ/dT = D (sin 2T / (4T) - cos 2T / 2),
    J(T) = E_h[c(hT)] the jittered ChEES, whose maximum is at tan 2T = 2T (T = 2.247):
    positive below, negative above. (Unweighted, the mean is D (1 - cos 2T) / (2T) >= 0
    at every T: T would only drift up.) Within 4 standard errors of the replicates."""
    D, C, n = 10, 4000, 300
    g = torch.Generator().manual_seed(0)
    zero, ones = torch.zeros(D, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    values = []
    for _ in range(n):
        t = float(torch.rand((), generator=g, dtype=torch.float64)) * T
        y0 = torch.randn(C, D, generator=g, dtype=torch.float64)
        p = torch.randn(C, D, generator=g, dtype=torch.float64)
        y1, v1 = y0 * math.cos(t) + p * math.sin(t), p * math.cos(t) - y0 * math.sin(t)
        values.append(chees_gradient(y0, y1, v1, zero, zero, ones, t))
    v = torch.tensor(values)
    exact = D * (math.sin(2 * T) / (4 * T) - math.cos(2 * T) / 2)
    assert abs(float(v.mean()) - exact) < 4 * float(v.std()) / math.sqrt(n)


def test_a_users_density_traced_by_jit_compile_draws_the_same_posterior():
    """``EnergyModel.from_log_density(f).sample_chains(..., jit_compile=True)``: the batched
    samplers run f's traced value-and-gradient graph (``info["potential"]``); ChEES on
    it draws the badly scaled Gaussian within 4 Monte Carlo standard errors, and its first
    draws are the eager run's to float64 rounding (same seed, same arithmetic)."""
    import arviz as az

    model = pgm.EnergyModel.from_log_density(_gaussian_target, 3).double()
    init = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    run = {jit: model.sample_chains(8 * 400, sampler="chees", num_chains=8, init=init * SCALES,
                                    warmup_steps=300, seed=1, jit_compile=jit)
           for jit in (False, True)}
    assert run[True].info["potential"] == "jit" and run[False].info["potential"] == "eager"
    assert run[True].info["compile_seconds"] > 0
    torch.testing.assert_close(run[True].samples[:, :3], run[False].samples[:, :3],
                               rtol=1e-6, atol=0)
    ess = torch.as_tensor(az.ess(run[True].to_arviz())["x"].values)
    draws = run[True].samples.reshape(-1, 3)
    assert ((draws.mean(0) / SCALES).abs() < 4 / ess.sqrt()).all(), (draws.mean(0), ess)
    assert ((draws.std(0) / SCALES - 1).abs() < 4 / (2 * ess).sqrt()).all()
    for sampler in ("langevin", "hmc_vectorized"):  # the other batched samplers run it too
        r = model.sample_chains(40, sampler=sampler, num_chains=4, init=init[:4] * SCALES,
                                warmup_steps=10, seed=0, jit_compile=True)
        assert r.info["potential"] == "jit" and torch.isfinite(r.samples).all()


def test_a_density_that_does_not_trace_is_refused_before_any_draw():
    """A trace holds for one control flow and one state of the Python around it: a
    function that branches on a value, or reads state that changes, is refused with a
    ValueError that says so, not sampled from a wrong graph."""
    init = torch.zeros(4, 2)
    init[0, 0], init[-1, 0] = 1.0, -3.0

    def branches(x):
        return -0.5 * x.pow(2).sum(-1) * (2.0 if float(x[0, 0]) > 0 else 1.0)

    calls = [0]

    def stateful(x):
        calls[0] += 1
        return -0.5 * x.pow(2).sum(-1) * calls[0]

    for f in (branches, stateful):
        with pytest.raises(ValueError, match="jit_compile / compile"):
            pgm.EnergyModel.from_log_density(f, 2).sample_chains(
                40, sampler="chees", num_chains=4, init=init, warmup_steps=10,
                jit_compile=True)
    with pytest.raises(ValueError, match="batched samplers"):
        pgm.EnergyModel.from_log_density(branches, 2).sample_chains(
            4, sampler="nuts", compile=True)
    with pytest.raises(TypeError, match="jit_compile"):
        pgm.EnergyModel.from_log_density(branches, 2).sample_chains(4, jit_compile="yes")
