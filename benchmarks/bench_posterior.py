"""Posterior sampling speed (#20): the facade's ESS per second over a baseline's, run in
the same process on the same data.

    python benchmarks/bench_posterior.py [--chains 4] [--warmup 500] [--draws 1000]
                                         [--repeats 3] [--threads 2]
                                         [--paths chees,chees16,nuts,nuts_fused]
                                         [--compile] [--device cuda]
                                         [--baseline auto|numpyro|pyro]

Two posteriors:

- ``gaussian``: the facade's ``Gaussian(3)`` on 500 rows (loc ~ N(0, 10^2), scale ~
  HalfNormal(10), correlation ~ LKJ(1)), by ``fit(method=...)``;
- ``logistic``: a Bayesian logistic regression, 10 weights with N(0, 1) priors, 1000 rows,
  by ``EnergyModel.from_log_density(...).sample_chains(sampler=..., jit_compile=True)``
  (the function is a matmul and a cross-entropy: it traces; ``compile=True`` with
  ``--compile``).

Facade paths: ``chees`` (batched ChEES-HMC, ``--chains`` chains), ``chees16`` (the same
with 16 chains: more chains cost little more wall time; ``cheesN``: N chains), ``nuts``
(Pyro's NUTS, one chain after another, ``--chains`` chains), ``nuts_fused``
(``method="nuts", sampler="fused"``: the same NUTS on the fused potential, ``gaussian``
only; the last line also gives its ratio to ``nuts``, the single-chain goal of #20 with
``--chains 1``). With ``--compile`` the ``gaussian`` ChEES and fused NUTS fits and the
``logistic`` ChEES chains compile their potential (``compile=True``).

ESS is the minimum bulk ESS (``az.ess``) over the parameters (loc and scale; the
weights), ESS/s divides it by the wall time of the whole call (warmup, draws, any
compilation). The baseline is NumPyro's NUTS (``chain_method="vectorized"``, ``--chains``
chains) when NumPyro is installed (an optional extra, never a dependency), else stock
``pyro.infer.MCMC(NUTS)`` on the same model, one chain after another (``--baseline``
chooses). Every path's first run in the process, which pays its one-time costs
(NumPyro's XLA compilation, the first ``make_fx`` trace of the process, about 1 s, a
first ``torch.compile``), is reported apart; the medians and ratios compare warm runs.
Each run prints its figures; the median of ``--repeats`` runs, with the spread, is
reported, and the last line is the ratio of each facade path to the baseline for both
models. The torch thread count is fixed
(``--threads``). ``--device cuda`` runs the facade's paths on the GPU (NumPyro then runs on
JAX's default device, the GPU where JAX has one); docs/scale-out.md has the figures.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List, Optional, Tuple

import arviz as az
import numpy as np
import torch

import pyro_genmodels as pgm


def _data() -> Dict[str, np.ndarray]:
    x, _ = pgm.datasets.correlated_gaussian(500, dim=3, seed=0)
    g = torch.Generator().manual_seed(0)
    features = torch.randn(1000, 10, generator=g, dtype=torch.float64)
    w = torch.randn(10, generator=g, dtype=torch.float64)
    labels = torch.bernoulli(torch.sigmoid(features @ w), generator=g)
    return {"x": x.double().numpy(), "features": features.numpy(), "labels": labels.numpy()}


def _min_ess(draws: Dict[str, np.ndarray]) -> float:
    """Minimum bulk ESS over every component; ``draws``: ``{name: (chain, draw, ...)}``."""
    ess = az.ess(az.from_dict(posterior=draws))
    return float(min(float(ess[k].min()) for k in draws))


# ------------------------------------------------------------------ the facade
def facade_gaussian(data, chains: int, warmup: int, draws: int, seed: int, *,
                    method: str = "chees", compile: bool = False, device: str = "cpu") -> float:
    extra: Dict[str, object] = {"compile": True} if compile else {}
    if method == "nuts_fused":
        method, extra["sampler"] = "nuts", "fused"
    fit = pgm.Gaussian(3).fit(torch.as_tensor(data["x"]).float(), method=method, seed=seed,
                              progress=False, num_samples=draws, warmup_steps=warmup,
                              num_chains=chains, device=device, **extra)
    assert fit.posterior is not None
    return _min_ess({k: fit.posterior[k].cpu().numpy() for k in ("loc", "scale")})


def _logistic_log_density(data, device: str = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
    a = torch.as_tensor(data["features"]).float().to(device)
    y = torch.as_tensor(data["labels"]).float().to(device)

    def log_density(w: torch.Tensor) -> torch.Tensor:  # (B, 10) -> (B,)
        logits = w @ a.T
        lik = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits, y.expand_as(logits), reduction="none").sum(-1)
        return lik - 0.5 * w.pow(2).sum(-1)
    return log_density


def facade_logistic(data, chains: int, warmup: int, draws: int, seed: int, *,
                    method: str = "chees", compile: bool = False, device: str = "cpu") -> float:
    if method == "nuts_fused":
        raise _NotApplicable
    model = pgm.EnergyModel.from_log_density(_logistic_log_density(data, device), 10)
    traced = {"compile": True} if compile and method != "nuts" else {"jit_compile": True}
    res = model.to(device).sample_chains(chains * draws, sampler=method, num_chains=chains,
                                         warmup_steps=warmup, seed=seed, **traced)
    return _min_ess({"w": res.samples.cpu().numpy()})


class _NotApplicable(Exception):
    """A facade path that a model does not have (``nuts_fused`` is a fit option)."""


def _path(name: str, chains: int, compile: bool) -> Tuple[str, int, bool]:
    """A facade path's method, number of chains and whether it compiles."""
    if name.startswith("chees") and name[5:].isdigit():  # chees16, chees256, ...
        return "chees", int(name[5:]), compile
    return name, chains, compile and name in ("chees", "nuts_fused")


# ------------------------------------------------------------------ baselines
def _numpyro_runs():
    """NumPyro's models and a runner, or ``None`` when NumPyro is not installed."""
    try:
        import jax
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as nd
        from numpyro.infer import MCMC, NUTS
    except ImportError:
        return None
    numpyro.set_host_device_count(1)

    def gaussian(x):
        loc = numpyro.sample("loc", nd.Normal(jnp.zeros(3), 10.0).to_event(1))
        scale = numpyro.sample("scale", nd.HalfNormal(jnp.full(3, 10.0)).to_event(1))
        corr = numpyro.sample("corr_cholesky", nd.LKJCholesky(3, 1.0))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("x", nd.MultivariateNormal(loc, scale_tril=scale[:, None] * corr),
                           obs=x)

    def logistic(features, labels):
        w = numpyro.sample("w", nd.Normal(jnp.zeros(10), 1.0).to_event(1))
        with numpyro.plate("data", features.shape[0]):
            numpyro.sample("y", nd.Bernoulli(logits=features @ w), obs=labels)

    made: Dict[str, Tuple[MCMC, tuple]] = {}

    def run(name, data, chains, warmup, draws, seed):
        if name not in made:  # one MCMC object and the same arrays per model: later runs
            # are warm (compiled); new arrays in a vectorized rerun fail inside NumPyro 0.22
            mcmc = MCMC(NUTS(gaussian if name == "gaussian" else logistic),
                        num_warmup=warmup, num_samples=draws, num_chains=chains,
                        progress_bar=False,
                        chain_method="vectorized" if chains > 1 else "sequential")
            made[name] = mcmc, ((jnp.asarray(data["x"], dtype=jnp.float32),)
                                if name == "gaussian" else
                                (jnp.asarray(data["features"], dtype=jnp.float32),
                                 jnp.asarray(data["labels"], dtype=jnp.float32)))
        mcmc, args = made[name]
        mcmc.run(jax.random.PRNGKey(seed), *args)
        samples = mcmc.get_samples(group_by_chain=True)
        keys = ("loc", "scale") if name == "gaussian" else ("w",)
        return _min_ess({k: np.asarray(samples[k]) for k in keys})
    return run


def _pyro_run(name, data, chains, warmup, draws, seed) -> float:
    """Stock ``pyro.infer.MCMC(NUTS)``, one chain after another, on the same model."""
    import pyro
    from pyro.infer import MCMC, NUTS

    out: Dict[str, List[np.ndarray]] = {}
    for chain in range(chains):
        pyro.set_rng_seed(seed + chain)
        if name == "gaussian":
            model = pgm.Gaussian(3)
            kernel = NUTS(model.model, jit_compile=True, ignore_jit_warnings=True)
            args: Tuple = (torch.as_tensor(data["x"]).float(),)
            keys: Tuple[str, ...] = ("loc", "scale")
        else:
            f = _logistic_log_density(data)
            kernel = NUTS(potential_fn=lambda p: -f(p["w"][None])[0])
            args, keys = (), ("w",)
        init = None if name == "gaussian" else {"w": torch.zeros(10)}
        mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, disable_progbar=True,
                    initial_params=init)
        mcmc.run(*args)
        for k in keys:
            out.setdefault(k, []).append(mcmc.get_samples()[k].numpy())
    return _min_ess({k: np.stack(v) for k, v in out.items()})


# ------------------------------------------------------------------ the benchmark
def _timed(fn: Callable[..., float], *args) -> Tuple[float, float]:
    t0 = time.perf_counter()
    ess = fn(*args)
    seconds = time.perf_counter() - t0
    return ess / seconds, seconds


def _run_path(who: str, name: str, facades, baseline, run_args, seed: int, args) -> float:
    """One run of path ``who`` (``"baseline"`` or a facade path) on model ``name``: its
    ESS."""
    if who == "baseline":
        return baseline(name, *run_args, seed)
    method, chains, comp = _path(who, args.chains, args.compile)
    data, _, warmup, draws = run_args
    return facades[name](data, chains, warmup, draws, seed, method=method, compile=comp,
                         device=args.device)


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models", default="gaussian,logistic")
    p.add_argument("--paths", default="chees,chees16,nuts,nuts_fused")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--baseline", choices=["auto", "numpyro", "pyro"], default="auto",
                   help="auto: NumPyro where installed, else stock Pyro NUTS")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = _data()
    numpyro_run = None if args.baseline == "pyro" else _numpyro_runs()
    if args.baseline == "numpyro" and numpyro_run is None:
        raise SystemExit("--baseline numpyro: NumPyro is not installed")
    baseline_name = "NumPyro NUTS (vectorized chains)" if numpyro_run else "stock Pyro NUTS"
    baseline = numpyro_run or _pyro_run
    facades = {"gaussian": facade_gaussian, "logistic": facade_logistic}
    paths = args.paths.split(",")
    print(f"{args.chains} chains, {args.warmup} warmup + {args.draws} draws each, "
          f"{args.threads} torch threads; baseline: {baseline_name}; facade paths: "
          f"{', '.join(paths)}{' (compiled)' if args.compile else ''} on {args.device}")
    ratios: Dict[str, float] = {}
    for name in args.models.split(","):
        run_args = (data, args.chains, args.warmup, args.draws)
        # every path's first run in the process (compilation or tracing included:
        # NumPyro's XLA, Pyro's and the facade's traces, torch.compile) is reported apart
        # and left out of the medians, which compare warm runs
        for who in ["baseline"] + paths:
            try:
                first, s = _timed(lambda: _run_path(who, name, facades, baseline, run_args,
                                                    100, args))
            except _NotApplicable:
                continue
            print(f"{name}: {who} first run (compilation included) {first:.1f} ESS/s "
                  f"in {s:.1f} s")
        rates: Dict[str, List[float]] = {k: [] for k in ["baseline"] + paths}
        for r in range(args.repeats):  # rotating, so drifting load hits every path
            order = ["baseline"] + paths
            order = order[r % len(order):] + order[:r % len(order)]
            for who in order:
                try:
                    rate, s = _timed(lambda: _run_path(who, name, facades, baseline,
                                                       run_args, r, args))
                except _NotApplicable:
                    continue
                rates[who].append(rate)
                print(f"{name} run {r}: {who} {rate:.1f} ESS/s in {s:.1f} s", flush=True)
        bm = statistics.median(rates["baseline"])
        for who, v in rates.items():
            if not v:
                continue
            m = statistics.median(v)
            print(f"{name}: {who} median {m:.1f} ESS/s ({min(v):.1f}-{max(v):.1f})")
            if who != "baseline":
                ratios[f"{name} {who}"] = m / bm
        if rates.get("nuts") and rates.get("nuts_fused"):
            ratios[f"{name} nuts_fused/nuts"] = (statistics.median(rates["nuts_fused"])
                                                 / statistics.median(rates["nuts"]))
    print("ratio facade / baseline ESS/s: "
          + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
