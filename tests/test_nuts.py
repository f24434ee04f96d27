"""NUTS on the fused potential (``method="nuts", sampler="fused"``): the sampler against
closed forms, its trees and statistics, and the facade path against Pyro's NUTS."""

import math

import pyro
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded
from pyro_genmodels.infer.nuts import nuts
from tests.test_chees import SCALES, CORR, _gaussian_target


@pytest.mark.cost(16)
@pytest.mark.slow  # Pyro's NUTS at deep trees: about 16 s
def test_nuts_draws_a_badly_scaled_correlated_gaussian():
    """Means, scales and the correlation within 4 Monte Carlo standard errors (from
    ArviZ's bulk ESS); the adapted inverse mass is the posterior variance."""
    import arviz as az
    with seeded(0):
        r = nuts(_gaussian_target, torch.randn(2, 3, dtype=torch.float64) * SCALES * 3,
                 num_samples=600, warmup_steps=400)
    ess = torch.as_tensor(az.ess(r.to_arviz())["x"].values)
    assert (ess > 300).all(), ess  # of 1200 draws
    draws = r.samples.reshape(-1, 3)
    assert ((draws.mean(0) / SCALES).abs() < 4 / ess.sqrt()).all()
    assert ((draws.std(0) / SCALES - 1).abs() < 4 / (2 * ess).sqrt()).all()
    corr = torch.corrcoef(draws[:, 1:].T)[0, 1]
    assert abs(corr - CORR) < 4 * (1 - CORR ** 2) / ess[1:].min().sqrt()
    for inv_mass in r.info["inverse_mass_diag"]:
        ratio = torch.tensor(inv_mass, dtype=torch.float64) / SCALES ** 2
        assert ((ratio > 0.5) & (ratio < 2)).all(), ratio
    assert r.num_divergences == 0


def test_nuts_records_trees_energies_and_acceptance():
    with seeded(1):
        r = nuts(_gaussian_target, torch.randn(2, 3, dtype=torch.float64) * SCALES,
                 num_samples=300, warmup_steps=200, max_tree_depth=6)
    st = r.sample_stats
    assert set(st) == {"diverging", "acceptance_rate", "step_size", "lp", "energy", "n_steps"}
    assert st["diverging"].dtype == torch.bool
    # a trajectory of 2^depth - 1 leapfrog steps, or fewer where a subtree turned back
    assert ((st["n_steps"] >= 1) & (st["n_steps"] <= 2 ** 6 - 1)).all()
    full = torch.log2(st["n_steps"] + 1)
    assert (full == full.round()).double().mean() > 0.5
    # lp is the target at the draw; the energy after the refresh is U + K >= U
    assert torch.allclose(st["lp"], _gaussian_target(r.samples.reshape(-1, 3)).reshape(2, 300))
    assert (st["energy"][:, 1:] >= -st["lp"][:, :-1] - 1e-9).all()
    assert ((st["acceptance_rate"] >= 0) & (st["acceptance_rate"] <= 1)).all()
    for c in range(2):
        assert (st["step_size"][c] == r.info["step_size"][c]).all()


@pytest.mark.cost(11)
@pytest.mark.slow  # 2 chains of the fused NUTS, long enough for 4-se moments: 11 s
def test_nuts_on_a_standard_normal_gets_its_energy_distribution():
    """For a D-dimensional standard normal the Hamiltonian after the refresh is
    U + K with U = |q|^2 / 2 and K independent chi^2_D / 2: E[H] = D, Var[H] = D.
    And the step size adapts to a mean acceptance near its target."""
    D = 5
    with seeded(2):
        r = nuts(lambda z: -0.5 * z.pow(2).sum(-1), torch.randn(2, D, dtype=torch.float64),
                 num_samples=1500, warmup_steps=500, target_accept=0.8)
    h = r.sample_stats["energy"].reshape(-1)
    # H's autocorrelation is that of U (K is fresh): 4 se with the ESS of |q|^2
    import arviz as az
    u = 0.5 * r.samples.pow(2).sum(-1)
    ess = float(az.ess(u.numpy()))
    assert abs(float(h.mean()) - D) < 4 * math.sqrt(D / ess), (float(h.mean()), ess)
    assert abs(float(u.mean()) - D / 2) < 4 * math.sqrt(D / 2 / ess)
    assert 0.7 < float(r.sample_stats["acceptance_rate"].mean()) < 0.97


def test_nuts_stops_at_a_wall_and_counts_divergences():
    def half_space(z):  # log density -inf for z[0] > 1: a hard wall
        lp = -0.5 * z.pow(2).sum(-1)
        return torch.where(z[:, 0] > 1.0, lp - math.inf, lp)
    with seeded(0):
        r = nuts(half_space, torch.zeros(1, 2), num_samples=300, warmup_steps=100)
    assert (r.samples[..., 0] <= 1.0).all()
    assert r.num_divergences > 0


def test_nuts_keeps_the_chains_done_before_ctrl_c():
    calls = {"n": 0}

    def target(z):
        calls["n"] += 1
        if calls["n"] > 3000:
            raise KeyboardInterrupt
        return -0.5 * z.pow(2).sum(-1)
    with seeded(0):
        r = nuts(target, torch.zeros(5, 2), num_samples=100, warmup_steps=100)
    assert r.info["interrupted"] and 1 <= r.samples.shape[0] < 5
    assert r.samples.shape[1:] == (100, 2) and r.info["num_chains"] == r.samples.shape[0]
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):  # in the first warmup: the interrupt propagates
        nuts(target, torch.zeros(1, 2), num_samples=10, warmup_steps=10_000)
    calls["n"] = 0  # while the first chain draws: its draws so far are kept
    with seeded(0):
        r = nuts(target, torch.zeros(3, 2), num_samples=10_000, warmup_steps=50)
    n = r.samples.shape[1]
    assert r.info["interrupted"] and r.samples.shape[0] == 1 and 1 <= n < 10_000
    assert r.info["num_samples"] == n and r.info["num_chains"] == 1
    assert all(v.shape == (1, n) for v in r.sample_stats.values())
    assert torch.isfinite(r.samples).all() and r.samples.std() > 0.1  # draws, not zeros


def test_nuts_checks_its_arguments():
    f = _gaussian_target
    with pytest.raises(ValueError, match="max_tree_depth"):
        nuts(f, torch.zeros(1, 3), num_samples=10, max_tree_depth=0)
    with pytest.raises(ValueError, match="target_accept"):
        nuts(f, torch.zeros(1, 3), num_samples=10, target_accept=0.0)


# ---------------------------------------------------------------------- the facade
def test_fused_nuts_options_are_checked_before_any_work():
    x, _ = pgm.datasets.correlated_gaussian(50, dim=2, seed=0)
    g = pgm.Gaussian(2)
    pyro.param("user_param", torch.tensor(1.0))
    state = torch.get_rng_state()
    for bad, match in (({"sampler": "numpyro"}, "sampler"),
                       ({"sampler": "fused", "full_mass": True}, "diagonal mass matrix"),
                       ({"sampler": "fused", "distributed": True}, "one process"),
                       ({"compile": True}, "expected sampler='fused'"),
                       ({"sampler": "fused", "compile": 1}, "compile")):
        with pytest.raises((ValueError, TypeError), match=match):
            g.fit(x, method="nuts", progress=False, **bad)
    assert torch.equal(torch.get_rng_state(), state)
    assert set(pyro.get_param_store().keys()) == {"user_param"}
    with pytest.raises(ValueError, match="sampler"):  # hmc has no such option
        g.fit(x, method="hmc", progress=False, sampler="fused")


def test_fused_nuts_is_reproducible_saves_and_gives_pyros_inference_data(tmp_path):
    import arviz as az
    x, _ = pgm.datasets.correlated_gaussian(60, dim=2, seed=0)
    opts = dict(method="nuts", progress=False, num_samples=40, warmup_steps=40, num_chains=2)
    a = pgm.Gaussian(2).fit(x, seed=3, sampler="fused", **opts)
    b = pgm.Gaussian(2).fit(x, seed=3, sampler="fused", **opts)
    for k in a.posterior:
        assert torch.equal(a.posterior[k], b.posterior[k])
    assert a.info["sampler"] == "nuts" and a.info["potential"] == "jit"
    assert len(a.info["step_size"]) == 2
    ref = pgm.Gaussian(2).fit(x, seed=3, **opts).to_arviz()
    idata = a.to_arviz()
    assert set(idata.groups()) == set(ref.groups())
    assert {k: v.dtype.kind for k, v in idata.sample_stats.items()} == \
        {k: v.dtype.kind for k, v in ref.sample_stats.items()}
    assert math.isfinite(az.loo(idata).elpd_loo) and az.bfmi(idata).shape == (2,)
    a.save(tmp_path / "f")
    back = pgm.load(tmp_path / "f")
    assert torch.equal(back.posterior["loc"], a.posterior["loc"])


def test_fused_nuts_fits_the_mixture_and_the_ngram():
    """The families with enumerated or simplex-valued sites: the fused potential is
    checked against Pyro's at every start, and the draws are finite and on the support."""
    from pyro_genmodels.models.sequence import NGram
    torch.manual_seed(0)
    x = torch.cat([torch.randn(30, 1) - 2, torch.randn(30, 1) + 2])
    fit = pgm.GaussianMixture(1, 2, covariance_type="diag").fit(
        x, method="nuts", sampler="fused", seed=0, progress=False, num_samples=50,
        warmup_steps=50, num_chains=1)
    w = fit.posterior["weights"]
    assert torch.allclose(w.sum(-1), torch.ones(()), atol=1e-5) and (w > 0).all()
    assert torch.isfinite(fit.log_prob(x)).all()
    ng = NGram(1).fit(["ab", "abb", "ba"], method="nuts", sampler="fused", seed=0,
                      progress=False, num_samples=50, warmup_steps=50, num_chains=1)
    assert ng.info["potential"] == "eager"  # NGram is not jit_safe
    assert torch.allclose(ng.posterior["probs"].sum(-1), torch.ones(()), atol=1e-5)
