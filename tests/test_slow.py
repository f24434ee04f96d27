"""Long statistical runs at the sizes the issue names; run with `pytest -m slow`."""

import math
import subprocess
import sys
from pathlib import Path

import arviz as az
import pytest
import torch

import pyro_genmodels as pgm

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
    last = proc.stdout.strip().splitlines()[-1]
    assert "mle_time_ratio=" in last and "nuts_ess_per_s_ratio=" in last
