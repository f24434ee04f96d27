"""Clustering with a Gaussian mixture: EM (mle), MAP, variational and NUTS posteriors,
side by side, against the true clusters and scikit-learn.

    python examples/mixture_clusters.py --out mixture.png
    python examples/mixture_clusters.py --n-train 300 --num-samples 300   # with NUTS

The component z_i is enumerated by Pyro (TraceEnum_ELBO / NUTS), so every log_prob is
exact. Reported: held-out log-likelihood per point (the truth is known, so its own score
is the ceiling), the adjusted Rand index of ``predict`` against the generating clusters,
and scikit-learn's best-of-5 fit as a reference.
"""

from __future__ import annotations

import argparse

import pandas as pd
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture as SkGMM

import pyro_genmodels as pgm


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=4, help="clusters (and components)")
    p.add_argument("--n-train", type=int, default=600)
    p.add_argument("--num-steps", type=int, default=800, help="SVI steps (map, vi)")
    p.add_argument("--num-samples", type=int, default=0,
                   help="NUTS draws per chain (0: skip NUTS, the slowest method)")
    p.add_argument("--out", default=None, help="PNG: data coloured by predicted cluster")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(args):
    x, z, truth = pgm.datasets.clusters(args.n_train, k=args.k, seed=args.seed)
    heldout, z_held, _ = pgm.datasets.clusters(2000, k=args.k, seed=args.seed + 1)
    model = pgm.GaussianMixture(2, args.k)
    fits = {"mle": model.fit(x, method="mle", seed=args.seed, progress=False),
            "map": model.fit(x, method="map", seed=args.seed, num_steps=args.num_steps,
                             progress=False),
            "vi": model.fit(x, method="vi", seed=args.seed, num_steps=args.num_steps,
                            num_posterior_samples=200, progress=False)}
    if args.num_samples:
        fits["nuts"] = model.fit(x, method="nuts", seed=args.seed,
                                 num_samples=args.num_samples,
                                 warmup_steps=args.num_samples, num_chains=2,
                                 progress=False)
    rows = {}
    for name, fit in fits.items():
        rows[name] = {"heldout_log_prob": fit.log_prob(heldout).mean().item(),
                      "ari": adjusted_rand_score(z_held.numpy(),
                                                 fit.predict(heldout).numpy())}
    sk = SkGMM(args.k, n_init=5, random_state=args.seed).fit(x.numpy())
    rows["scikit-learn"] = {"heldout_log_prob": sk.score(heldout.numpy()),
                            "ari": adjusted_rand_score(z_held.numpy(),
                                                       sk.predict(heldout.numpy()))}
    rows["truth"] = {"heldout_log_prob": truth.log_prob(heldout).mean().item(), "ari": 1.0}
    table = pd.DataFrame(rows).T
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    if "nuts" in fits:
        import arviz as az

        print(az.summary(fits["nuts"].to_arviz(), var_names=["weights", "locs"]).to_string())
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(*heldout.T, c=fits["mle"].predict(heldout), s=3, cmap="tab10")
        ax.scatter(*fits["mle"].params["locs"].T, c="k", marker="x", s=80)
        ax.set_title("EM clusters on held-out data")
        fig.savefig(args.out, dpi=100)
        plt.close(fig)
    return table


if __name__ == "__main__":
    main(parse_args())
