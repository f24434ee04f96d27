"""Gaussian benchmarks, each a ratio against a baseline run in the same process.

    python benchmarks/bench_gaussian.py mle    # facade MLE vs a hand-written PyTorch loop
    python benchmarks/bench_gaussian.py nuts   # facade NUTS vs stock pyro.infer.MCMC(NUTS)
    python benchmarks/bench_gaussian.py        # both

``mle``: the same number of Adam steps with the same parameterization (loc, log-scales,
an unconstrained vector mapped by CorrCholeskyTransform), from the same start (the
closed-form maximum, where the facade's ``mle`` starts: ``StartedAtMLE``) and with the
same exponential learning-rate decay; ratio = facade seconds / hand-written seconds
(goal <= 1.2). The facade's time includes its end: scoring its start and its end in
float64 to keep the better.

``nuts``: the same model (``Gaussian.model``), data, warmup and draws, one chain each;
ratio = facade (min over parameters of ESS) per second / stock ESS per second (goal >= 0.9).
The stock run uses the same kernel settings as the facade (``jit_compile=True``, which
the facade turns on for jit-safe models); the ratio against stock defaults is printed too.
"""

from __future__ import annotations

import argparse
import time

import arviz as az
import numpy as np
import pyro
import torch
from pyro.infer import MCMC, NUTS

import pyro_genmodels as pgm
from pyro_genmodels.infer.objectives import traced_execution


def _hand_written_mle(x: torch.Tensor, num_steps: int, lr: float, lr_decay: float) -> float:
    # the facade's start: the closed-form maximum, formed in float64 (mle_values)
    x64 = x.double()
    sd = x64.std(0, correction=0)
    corr = torch.cov(x64.T, correction=0) / (sd[:, None] * sd)
    tril = torch.linalg.cholesky(corr).to(x.dtype)
    tril = tril / tril.norm(dim=-1, keepdim=True)
    to_corr = torch.distributions.transforms.CorrCholeskyTransform()
    loc = x64.mean(0).to(x.dtype).requires_grad_()
    log_scale = sd.log().to(x.dtype).requires_grad_()
    raw_corr = to_corr.inv(tril).detach().requires_grad_()
    opt = torch.optim.Adam([loc, log_scale, raw_corr], lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, lr_decay ** (1 / num_steps))
    for _ in range(num_steps):
        tril = log_scale.exp().unsqueeze(-1) * to_corr(raw_corr)
        loss = -torch.distributions.MultivariateNormal(loc, scale_tril=tril).log_prob(x).sum()
        loss.backward()
        loss.item()  # the facade reads every loss too
        opt.step()
        opt.zero_grad()
        sched.step()
    return loss.item()


def bench_mle(n: int, dim: int, num_steps: int, repeats: int) -> float:
    x, _ = pgm.datasets.correlated_gaussian(n, dim=dim, seed=0)
    model = pgm.Gaussian(dim)
    opts = dict(num_steps=num_steps, lr=0.05, lr_decay=0.05)
    model.fit(x, method="mle", seed=0, progress=False, **opts)  # warm caches
    _hand_written_mle(x, num_steps, 0.05, 0.05)
    facade, hand = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        fit = model.fit(x, method="mle", seed=0, progress=False, **opts)
        facade.append(time.perf_counter() - t)
        t = time.perf_counter()
        hand_loss = _hand_written_mle(x, num_steps, 0.05, 0.05)
        hand.append(time.perf_counter() - t)
    f, h = min(facade), min(hand)
    print(f"mle N={n} D={dim} steps={num_steps}: facade {f:.3f}s ({1e3 * f / num_steps:.2f} "
          f"ms/step, final loss {fit.losses[-1]:.2f}), hand-written {h:.3f}s "
          f"({1e3 * h / num_steps:.2f} ms/step, final loss {hand_loss:.2f})")
    return f / h


def _min_ess(samples: dict) -> float:
    """Smallest bulk ESS over every scalar coordinate of ``{site: (draws, k)}``."""
    return min(float(az.ess(np.ascontiguousarray(col)[None]))
               for v in samples.values() for col in np.asarray(v).T)


def bench_nuts(n: int, dim: int, num_samples: int, warmup: int) -> tuple[float, float]:
    x, _ = pgm.datasets.correlated_gaussian(n, dim=dim, seed=0)
    model = pgm.Gaussian(dim)
    t = time.perf_counter()
    fit = model.fit(x, method="nuts", seed=0, progress=False, num_samples=num_samples,
                    warmup_steps=warmup, num_chains=1)
    facade_t = time.perf_counter() - t
    facade = _min_ess({k: v[0].reshape(num_samples, -1).numpy()
                       for k, v in fit.posterior.items() if k != "corr_cholesky"})
    rates = {}
    for jit in (True, False):
        pyro.set_rng_seed(0)
        kernel = NUTS(model.model, jit_compile=jit, ignore_jit_warnings=True)
        mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup,
                    disable_progbar=True)
        t = time.perf_counter()
        with traced_execution():
            mcmc.run(x)
        stock_t = time.perf_counter() - t
        s = mcmc.get_samples()
        ess = _min_ess({k: v.reshape(num_samples, -1).numpy()
                        for k, v in s.items() if k != "corr_cholesky"})
        rates[jit] = ess / stock_t
        print(f"stock MCMC(NUTS, jit_compile={jit}): {stock_t:.1f}s, min ESS {ess:.0f}, "
              f"{ess / stock_t:.1f} ESS/s")
    print(f"facade nuts: {facade_t:.1f}s, min ESS {facade:.0f}, {facade / facade_t:.1f} ESS/s")
    return (facade / facade_t) / rates[True], (facade / facade_t) / rates[False]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("which", nargs="?", choices=["mle", "nuts", "all"], default="all")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    last = []
    if args.which in ("mle", "all"):
        if not args.quick:
            small = bench_mle(500, 3, 300, 3)
            print(f"mle small-data ratio (Pyro's per-step overhead dominates): {small:.2f}")
        ratio = bench_mle(2000, 5, 50, 1) if args.quick else bench_mle(100_000, 10, 200, 3)
        last.append(f"mle_time_ratio={ratio:.3f} (facade/hand-written, goal <= 1.2)")
    if args.which in ("nuts", "all"):
        same, default = (bench_nuts(100, 2, 100, 100) if args.quick
                         else bench_nuts(500, 3, 1000, 500))
        print(f"nuts ESS/s ratio vs stock defaults (jit_compile=False): {default:.3f}")
        last.append(f"nuts_ess_per_s_ratio={same:.3f} (facade/stock same kernel, goal >= 0.9)")
    print("; ".join(last))


if __name__ == "__main__":
    main()
