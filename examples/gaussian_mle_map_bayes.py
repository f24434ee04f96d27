"""MLE, MAP and the full posterior of a Gaussian, side by side.

With few points in several dimensions the MLE covariance overfits (it is the biased
sample covariance), the prior of MAP regularizes it, and the posterior averages over
what the data leave uncertain. The table shows held-out log-likelihood per point against
the true density's, and LOO for the posterior fits.

    python examples/gaussian_mle_map_bayes.py --n-train 30 --dim 5
"""

from __future__ import annotations

import argparse

import arviz as az

import pyro_genmodels as pgm


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=30)
    p.add_argument("--n-heldout", type=int, default=2000)
    p.add_argument("--dim", type=int, default=5)
    p.add_argument("--prior-scale", type=float, default=3.0)
    p.add_argument("--num-steps", type=int, default=2000)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--warmup-steps", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true")
    return p.parse_args(argv)


def main(args):
    x, truth = pgm.datasets.correlated_gaussian(args.n_train, dim=args.dim, seed=args.seed)
    heldout, _ = pgm.datasets.correlated_gaussian(args.n_heldout, dim=args.dim,
                                                  seed=args.seed + 1)
    model = pgm.Gaussian(args.dim, prior_scale=args.prior_scale)
    common = dict(seed=args.seed, progress=args.progress)
    fits = {
        "mle": model.fit(x, method="mle", num_steps=args.num_steps, **common),
        "map": model.fit(x, method="map", num_steps=args.num_steps, **common),
        "vi": model.fit(x, method="vi", num_steps=args.num_steps, **common),
        "nuts": model.fit(x, method="nuts", num_samples=args.num_samples,
                          warmup_steps=args.warmup_steps, num_chains=2, **common),
    }
    table = pgm.compare(fits, heldout)
    truth_lp = truth.log_prob(heldout).mean().item()
    print(table[["method", "heldout_log_prob", "heldout_log_prob_se", "train_log_prob",
                 "elpd_loo", "loo_log_prob"]].to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"true density's held-out log-likelihood per point: {truth_lp:.3f}")
    print(az.summary(fits["nuts"].to_arviz(posterior_predictive=False),
                     var_names=["loc", "scale"]))
    return table, truth_lp


if __name__ == "__main__":
    main(parse_args())
