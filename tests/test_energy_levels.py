"""Noise-conditional energies f(x, sigma): multilevel denoising score matching against
its closed form, AIS log Z against quadrature (1-D and 2-D), annealed sampling through the
noise levels against exact mixture weights, the choice of the evaluation level sigma_0,
save / load, contrastive divergence's MALA diagnostics, and the refusals."""

import math
import re

import pytest
import torch
from torch import nn

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded
from pyro_genmodels.models.energy import EnergyModel
from pyro_genmodels.models.energy_training import EnergyOptions, MultilevelLoss
from tests.test_energy import _one_thread  # noqa: F401  (one torch thread, module-wide)




class GaussianBlur(nn.Module):
    """The exact noise-conditional energy of N(0, s^2 I) data: log N(u; 0, (s^2 + sigma^2)
    I) up to a constant."""

    def __init__(self, s: float):
        super().__init__()
        self.s = s
        self.unused = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, u, sigma):
        return -u.pow(2).sum(-1) / (2 * (self.s**2 + sigma**2)) + 0 * self.unused


class BlurredMixture(nn.Module):
    """The exact noise-conditional energy of the 1-D mixture 0.75 N(-3, 0.3^2) + 0.25
    N(3, 0.3^2): each component's variance grows by sigma^2."""

    def forward(self, u, sigma):
        var = 0.09 + sigma**2
        x = u[:, 0]
        comp = torch.stack([math.log(0.75) - (x + 3) ** 2 / (2 * var),
                            math.log(0.25) - (x - 3) ** 2 / (2 * var)], -1)
        return comp.logsumexp(-1) - 0.5 * torch.log(var)


def test_multilevel_loss_matches_its_closed_form_at_the_exact_score():
    r"""For N(0, s^2 I) data and the exact blurred energy, the per-row loss
    1/2 |sigma grad f + z|^2 has mean (D/2) E_sigma[s^2 / (s^2 + sigma^2)]; with sigma
    log-uniform on [a, b] that is (D/2) [1/2 log(t / (s^2 + t))]_{a^2}^{b^2} / log(b / a).
    A wrong scale (2s) must do worse by far more than the standard error."""
    s, a, b, D, n = 0.7, 0.05, 3.0, 2, 200_000
    opts = EnergyOptions(ema=None)

    def loss_rows(scale):
        model = EnergyModel(D, energy=GaussianBlur(scale), noise_conditional=True,
                            sigma_min=a, sigma_max=b, num_levels=4).double()
        with seeded(0):
            u = s * torch.randn(n, D, dtype=torch.float64)
            return MultilevelLoss(model, "mle", opts).per_row(u, create_graph=False)

    g = lambda t: 0.5 * math.log(t / (s**2 + t))  # noqa: E731
    expected = D / 2 * (g(b**2) - g(a**2)) / math.log(b / a)
    rows = loss_rows(s)
    se = float(rows.std()) / math.sqrt(n)
    assert abs(float(rows.mean()) - expected) < 4 * se, (float(rows.mean()), expected, se)
    assert float(loss_rows(2 * s).mean()) > expected + 20 * se


def _quadrature_log_z(f, lo, hi, dim, points):
    """log of the Riemann sum of exp f on a uniform grid of ``points`` per axis."""
    g = torch.linspace(lo, hi, points, dtype=torch.float64)
    h = float(g[1] - g[0])
    if dim == 1:
        grid = g[:, None]
    else:
        gx, gy = torch.meshgrid(g, g, indexing="xy")
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)
    with torch.no_grad():
        vals = torch.cat([f(c) for c in grid.split(50_000)])
    return float(vals.logsumexp(0)) + dim * math.log(h)


def _bimodal_1d(x):
    comp = torch.stack([math.log(0.7) - (x[:, 0] + 2) ** 2 / (2 * 0.25),
                        math.log(0.3) - (x[:, 0] - 3) ** 2 / (2 * 0.09)
                        + 0.5 * torch.sin(3 * x[:, 0])], -1)
    return comp.logsumexp(-1) + 1.234


def _trained_2d():
    """A small noise-conditional energy trained briefly on eight_gaussians: an
    irregular, many-moded density whose log Z nobody knows in closed form."""
    truth = pgm.datasets.toy("eight_gaussians")
    with seeded(0):
        x = truth.sample((2000,)).double()
        model = EnergyModel(2, hidden=(32, 32), eval_sigma=0.2).double()
    return model.fit(x, method="mle", num_steps=300, seed=0, progress=False).model


@pytest.mark.parametrize("dim", [1, 2])
def test_ais_log_z_agrees_with_quadrature_within_its_standard_error(dim):
    """AIS with the automatic number of temperatures against a Riemann sum on a fine grid
    (its own error is far below the AIS standard error: the densities are smooth and
    vanish at the grid's edges). The tolerance is 3 standard errors, and the standard
    error is small enough (< 0.05 nats) for the comparison to mean something."""
    if dim == 1:
        model = EnergyModel.from_log_density(_bimodal_1d, 1, loc=0.0, scale=3.0).double()
        quad = _quadrature_log_z(model._f, -12.0, 12.0, 1, 20_001)
    else:
        model = _trained_2d()
        quad = _quadrature_log_z(model._f, -8.0, 8.0, 2, 1601)
    est = model.log_normalizer(seed=0)
    assert est.num_steps >= 200 and est.settled  # "auto" compared at least two runs
    assert est.stderr < 0.05
    assert abs(est.estimate - quad) < 3 * est.stderr, (est, quad)


def test_ais_that_does_not_settle_says_so():
    """Two narrow modes far outside a unit base: a few hundred temperatures are not
    enough, and the caller hears it (warn=False: the estimate's settled flag)."""

    def narrow(x):
        d = torch.stack([(x - 6).pow(2).sum(-1), (x + 6).pow(2).sum(-1)], -1)
        return (-d / (2 * 0.01**2)).logsumexp(-1)

    model = EnergyModel.from_log_density(narrow, 2, scale=1.0).double()
    with pytest.warns(RuntimeWarning, match="did not settle"):
        model.log_normalizer(seed=0, num_particles=200, max_steps=400)
    quiet = model.log_normalizer(seed=0, num_particles=200, max_steps=400, warn=False)
    assert quiet.settled is False and quiet.num_steps == 400


def test_annealed_sampling_gets_the_mixture_weights():
    """Chains started by annealed Langevin through the noise levels (then MALA at
    sigma_0) hold the 0.75 / 0.25 weights of two modes 6 apart, which no chain crosses
    at sigma_0; 1000 independent chains, so the fraction's se is sqrt(.75 .25 / 1000)."""
    model = EnergyModel(1, energy=BlurredMixture(), noise_conditional=True, sigma_min=0.01,
                        sigma_max=8.0, eval_sigma=0.01).double()
    draws = model.sample(1000, seed=0, num_chains=1000, warmup_steps=100)
    left = float((draws[:, 0] < 0).double().mean())
    se = math.sqrt(0.75 * 0.25 / 1000)
    assert abs(left - 0.75) < 4 * se, left
    # and the draws are of exp f(., sigma_0): each mode's sd is sqrt(0.09 + 0.01^2)
    sd = float(draws[draws[:, 0] < 0, 0].std())
    assert abs(sd - math.sqrt(0.09 + 1e-4)) < 0.03


def _eight(n=1500, seed=0):
    with seeded(seed):
        return pgm.datasets.toy("eight_gaussians").sample((n,))


def test_the_evaluation_level_is_the_held_out_best_and_travels_with_the_fit(tmp_path):
    with seeded(0):
        model = EnergyModel(2, hidden=(32, 32))
    fit = model.fit(_eight(), method="mle", num_steps=200, seed=0, progress=False)
    info = fit.info
    lls = [v if v is not None else -math.inf for v in info["eval_log_likelihoods"]]
    best = max(range(len(lls)), key=lls.__getitem__)
    assert info["eval_sigma"] == pytest.approx(info["eval_candidates"][best])
    assert info["eval_chosen_on"] == "held-out rows"
    assert float(fit.model.eval_level) == pytest.approx(info["eval_sigma"])
    assert fit.log_z.estimate == info["log_z"]["estimate"]
    # the candidates run from EVAL_TOP down to sigma_min, geometrically
    c = info["eval_candidates"]
    assert c[0] == pytest.approx(0.5) and c[-1] == pytest.approx(0.01)
    x = _eight(50, seed=1)
    direct = fit.model._f(x) - fit.log_z.estimate
    torch.testing.assert_close(fit.log_prob(x), direct.detach())
    fit.save(tmp_path / "f")
    back = pgm.load(tmp_path / "f")
    assert float(back.model.eval_level) == float(fit.model.eval_level)
    torch.testing.assert_close(back.log_prob(x), fit.log_prob(x), rtol=0, atol=0)
    torch.testing.assert_close(back.model.sigmas, fit.model.sigmas, rtol=0, atol=0)


def test_a_given_evaluation_level_is_used_as_is():
    with seeded(0):
        model = EnergyModel(2, hidden=(16,), eval_sigma=0.07)
    fit = model.fit(_eight(300), method="mle", num_steps=5, seed=0, progress=False)
    assert fit.info["eval_sigma"] == 0.07 and "eval_candidates" not in fit.info
    assert float(fit.model.eval_level) == pytest.approx(0.07)


def test_contrastive_chains_adapt_their_step_size_and_report_diagnostics():
    """Started with a step size far too small (every proposal accepted), MALA's
    Robbins-Monro adaptation grows it until the acceptance is near its target; the
    energy gap is reported."""
    with seeded(0):
        model = EnergyModel(2, hidden=(16, 16), noise_conditional=False)
    fit = model.fit(_eight(500), method="mle", objective="contrastive", num_steps=40,
                    batch_size=64, buffer_size=256, mcmc_steps=10, mcmc_step_size=1e-3,
                    seed=0, progress=False)
    info = fit.info
    assert info["mcmc_step_size"] > 0.1
    assert abs(info["acceptance"] - 0.574) < 0.15, info["acceptance"]
    assert math.isfinite(info["energy_gap"])


def test_refusals_name_what_was_expected():
    x = _eight(100)
    with pytest.raises(ValueError, match="noise-conditional"):
        EnergyModel(2, hidden=(8,), noise_conditional=False).fit(
            x, method="mle", objective="multilevel_score_matching", num_steps=2,
            progress=False)
    with pytest.raises(ValueError, match="noise_conditional=False"):
        EnergyModel(2, activation="tanh")
    with pytest.raises(ValueError, match="sigma_max > sigma_min"):
        EnergyModel(2, sigma_min=0.5, sigma_max=0.1)
    with pytest.raises(ValueError, match="num_levels >= 2 for a noise-conditional"):
        EnergyModel(2, num_levels=1)  # its one level was sigma_max, not sigma_min
    # a plain network has no levels: they were recorded in its config and read by nothing
    # (bit-identical fits with and without eval_sigma=0.1), as an unread fit option was
    for kw in ({"num_levels": 1}, {"eval_sigma": 0.1}, {"sigma_min": 0.2, "sigma_max": 3.0}):
        said = ", ".join(f"{k}={v!r}" for k, v in kw.items())
        with pytest.raises(ValueError, match=rf"^{re.escape(said)}: the noise levels of a "
                                             r"noise-conditional energy"):
            EnergyModel(2, hidden=(8,), noise_conditional=False, **kw)
    # sigma_0 outside the trained levels is the network's extrapolation: refused, also
    # against the sigma_max the fit takes from the data, before any step
    for kw in ({"eval_sigma": 0.001}, {"eval_sigma": 9.0, "sigma_max": 5.0}):
        with pytest.raises(ValueError, match=r"^Expected eval_sigma within the trained levels"):
            EnergyModel(2, **kw)
    far = EnergyModel(2, hidden=(8,), eval_sigma=100.0)
    with pytest.raises(ValueError, match=r"^Expected eval_sigma within the trained levels "
                                         r"\[0.01, [\d.]+\] \(sigma_max: the largest"):
        far.fit(x, method="mle", num_steps=2, progress=False)
    with pytest.raises(ValueError, match="'auto'"):
        EnergyModel(2).log_normalizer(num_steps="many")
    with pytest.raises(ValueError, match="validation"):
        EnergyModel(2).fit(x, method="mle", objective="contrastive", validation=0.1,
                           progress=False)


def test_multilevel_resume_is_bit_for_bit(tmp_path):
    """Checkpoint, stop, resume: the same losses and weights as one uninterrupted run
    (the weights' moving average is part of the checkpoint)."""
    x = _eight(400)

    def energy():
        with seeded(0):
            return EnergyModel(2, hidden=(8, 8), eval_sigma=0.1)

    kw = dict(method="mle", seed=3, num_steps=14, batch_size=32, progress=False)
    whole = energy().fit(x, **kw)
    energy().fit(x, checkpoint=tmp_path / "c", checkpoint_every=5,
                 callback=lambda s, v: s == 7, **kw)
    resumed = energy().fit(x, resume=tmp_path / "c", **kw)
    assert resumed.losses == whole.losses
    for a, b in zip(resumed.model.state_dict().values(), whole.model.state_dict().values()):
        assert torch.equal(a, b)


def test_ctrl_c_after_training_keeps_the_fit_at_the_best_level_so_far(monkeypatch):
    """After its steps a multilevel fit chooses sigma_0 by AIS (68 s with the default
    network on two wine columns): Ctrl-C there raised out of fit and lost every trained
    step. The fit now returns, interrupted, at the best level scored so far; with none
    scored (or Ctrl-C during the steps) at the first level, sigma_min, and says no level
    was chosen (eval_chosen_on None)."""
    x = _eight(400)

    def fitted(**kw):
        with seeded(0):
            model = EnergyModel(2, hidden=(16, 16))
        return model.fit(x, method="mle", num_steps=20, seed=0, progress=False, **kw)

    whole = fitted()
    real = EnergyModel.log_normalizer
    for at, scored in [(3, 2), (1, 0)]:
        calls = []

        def interrupted(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == at:
                raise KeyboardInterrupt
            return real(self, *args, **kwargs)

        monkeypatch.setattr(EnergyModel, "log_normalizer", interrupted)
        fit = fitted()
        monkeypatch.setattr(EnergyModel, "log_normalizer", real)
        assert fit.interrupted and fit.info["stopped"] == "interrupted"
        assert fit.losses == whole.losses  # every trained step kept
        if scored:
            lls = fit.info["eval_log_likelihoods"]
            assert lls[:scored] == whole.info["eval_log_likelihoods"][:scored]
            assert set(lls[scored:]) == {None}
            best = max(range(scored), key=lambda i: lls[i])
            assert fit.info["eval_sigma"] == whole.info["eval_candidates"][best]
            assert fit.info["eval_chosen_on"] == "held-out rows"
        else:
            assert fit.info["eval_chosen_on"] is None
            assert fit.info["eval_sigma"] == pytest.approx(float(fit.model.sigma_min))
        assert float(fit.model.eval_level) == pytest.approx(fit.info["eval_sigma"])
        assert torch.isfinite(fit.log_prob(x[:5])).all()

    def stop(step, loss):
        if step == 5:
            raise KeyboardInterrupt
    early = fitted(callback=stop)
    assert early.interrupted and len(early.losses) == 6  # steps 0-5: the callback is after
    assert early.info["eval_chosen_on"] is None
    assert early.info["eval_sigma"] == pytest.approx(float(early.model.sigma_min))
