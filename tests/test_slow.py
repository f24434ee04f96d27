"""Long statistical runs at the sizes the issue names; run with `pytest -m slow`."""

import math
import subprocess
import sys
from pathlib import Path

import arviz as az
import pytest
import torch

import pyro_genmodels as pgm
from tests.printed import agrees, bounds, grab, positive_finite, quotient, scaled

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def test_nuts_full_size_unknown_covariance():
    """N=500, D=3, 2 chains x 1000 draws after 500 warmup: converged, and the posterior
    of loc is N(xbar, S/N) up to the prior (sd 10 against a posterior sd of ~0.05) and
    the Student-t correction (N-1)/(N-D-2) ~ 1.004 of its variance."""
    x, _ = pgm.datasets.correlated_gaussian(500, dim=3, seed=0, dtype=torch.float64)
    fit = pgm.Gaussian(3).fit(x, method="nuts", seed=0, progress=False, num_samples=1000,
                              warmup_steps=500, num_chains=2)
    idata = fit.to_arviz()
    for site in ("loc", "scale", "covariance_matrix"):
        assert (az.rhat(idata, var_names=[site])[site].values < 1.01).all(), site
    ess = torch.tensor(az.ess(idata, var_names=["loc"])["loc"].values)
    n = x.shape[0]
    xbar = x.mean(0)
    s = torch.cov(x.T, correction=0)
    sd = (s.diagonal() / n * (n - 1) / (n - 3 - 2)).sqrt()
    draws = fit.posterior_samples()["loc"]
    assert ((draws.mean(0) - xbar).abs() < 4 * sd / ess.sqrt()).all()
    assert ((draws.std(0) / sd - 1).abs() < 4 / (2 * ess).sqrt() + 0.01).all()
    loo = az.loo(idata)
    assert math.isfinite(loo["elpd_loo"])


def test_benchmarks_run_and_print_their_ratios():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gaussian.py"),
                           "--quick"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 6
    mle, nuts = grab(r"^mle_time_ratio={N} \(facade/hand-written, goal <= 1\.2\); "
                     r"nuts_ess_per_s_ratio={N} \(facade/stock same kernel, goal >= 0\.9\)$",
                     lines[-1])
    positive_finite(mle)
    positive_finite(nuts)
    # every printed ratio is the ratio of the printed figures it is made of
    f, f_ms, f_loss, h, h_ms, h_loss = grab(
        r"^mle N=2000 D=5 steps=50: facade {N}s \({N} ms/step, final loss {N}\), "
        r"hand-written {N}s \({N} ms/step, final loss {N}\)$", lines[0])
    assert agrees(mle, quotient(bounds(f), bounds(h)))
    # the same Adam steps in the same parameterization from the same start, the maximum
    # (StartedAtMLE): there each loop's steps follow its own rounding noise (about lr per
    # coordinate, whatever the dtype), so the final losses agree to second order in those
    # steps, not digit for digit: measured 0.02 nats of 14642 (1.4e-6 relative); from the
    # old identity-correlation start the baseline ended 47 nats (3e-3) away
    assert abs(float(f_loss) - float(h_loss)) <= 1e-5 * abs(float(h_loss))
    assert agrees(f_ms, scaled(bounds(f), 1000 / 50))
    assert agrees(h_ms, scaled(bounds(h), 1000 / 50))
    rates = []  # ESS/s of stock NUTS with jit, without, and of the facade
    for line, who in zip(lines[1:4], [r"stock MCMC\(NUTS, jit_compile=True\)",
                                      r"stock MCMC\(NUTS, jit_compile=False\)",
                                      r"facade nuts"]):
        t, ess, rate = grab(r"^" + who + r": {N}s, min ESS {N}, {N} ESS/s$", line)
        assert agrees(rate, quotient(bounds(ess), bounds(t)))
        rates.append(bounds(rate))
    assert agrees(nuts, quotient(rates[2], rates[0]))
    default = grab(r"^nuts ESS/s ratio vs stock defaults \(jit_compile=False\): {N}$",
                   lines[4])
    assert agrees(default, quotient(rates[2], rates[1]))


def test_nsf_on_eight_gaussians_is_close_to_the_truth():
    """Default settings, 4000 points: held-out log-likelihood within 0.15 nats of the true
    density's (the paired difference's standard error is ~0.01 here)."""
    from pyro_genmodels._rng import seeded

    truth = pgm.datasets.toy("eight_gaussians")
    with seeded(0):
        x, heldout = truth.sample((4000,)), truth.sample((4000,))
        model = pgm.Flow(2, transform="nsf")
    fit = model.fit(x, method="mle", seed=0, progress=False)
    gap = truth.log_prob(heldout) - fit.log_prob(heldout)
    assert gap.mean() < 0.15
    se = gap.std() / math.sqrt(len(gap))
    assert se < 0.03
    # samples cover all 8 modes
    s = fit.sample(4000, seed=0)
    nearest = torch.cdist(s, truth.centers).argmin(1)
    assert (torch.bincount(nearest, minlength=8) > 4000 / 8 / 2).all()


def test_flow_benchmark_runs_and_prints_its_ratio():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_flow.py"),
                           "--quick"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2
    f_ms, f_lp, h_ms, h_lp = grab(r"^facade: {N} ms/step \(train log p {N}\); hand-written "
                                  r"zuko loop: {N} ms/step \(train log p {N}\)$", lines[0])
    ratio, lo, hi = grab(r"^flow_step_time_ratio={N} \({N} \.\. {N} over 1 repeats, "
                         r"1 threads; facade/hand-written, goal <= 1\.15\)$", lines[1])
    positive_finite(ratio)
    assert ratio == lo == hi  # one repeat: its ratio is the median, the min and the max
    assert agrees(ratio, quotient(bounds(f_ms), bounds(h_ms)))
    assert math.isfinite(float(f_lp)) and math.isfinite(float(h_lp))
