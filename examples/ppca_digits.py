"""Probabilistic PCA on scikit-learn's digits: the MLE reaches the Tipping-Bishop closed
form, MAP and VI sit next to it, and the latent codes separate the digit classes.

    python examples/ppca_digits.py --latent-dim 8 --out ppca.png

Pixels (0..16) are scaled to [0, 1]. Reported: held-out log-likelihood per image for
each method next to the closed-form maximum (scikit-learn's ``PCA(q).score``), and how
well a nearest-class-mean rule on the 2 leading posterior-mean codes ``fit.encode(x)``
recovers the labels.
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch
from sklearn.decomposition import PCA

import pyro_genmodels as pgm


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latent-dim", type=int, default=8)
    p.add_argument("--n-train", type=int, default=1500)
    p.add_argument("--num-steps", type=int, default=2000)
    p.add_argument("--out", default=None, help="PNG of the 2 leading codes by class")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(args):
    x, y = pgm.datasets.load_digits()
    x = x / 16.0
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(args.seed))
    train, held = perm[:args.n_train], perm[args.n_train:]
    model = pgm.PPCA(64, args.latent_dim, prior_scale=1.0)
    fits = {m: model.fit(x[train], method=m, seed=args.seed, num_steps=args.num_steps,
                         progress=False, **({"num_posterior_samples": 200} if m == "vi" else {}))
            for m in ("mle", "map", "vi")}
    pca = PCA(args.latent_dim).fit(x[train].numpy())
    rows = {m: {"train_log_prob": f.log_prob(x[train]).mean().item(),
                "heldout_log_prob": f.log_prob(x[held]).mean().item()}
            for m, f in fits.items()}
    rows["closed form (PCA.score)"] = {"train_log_prob": pca.score(x[train].numpy()),
                                       "heldout_log_prob": pca.score(x[held].numpy())}
    table = pd.DataFrame(rows).T
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    codes = fits["mle"].encode(x)
    means = torch.stack([codes[train][y[train] == k].mean(0) for k in range(10)])
    guess = torch.cdist(codes[held], means).argmin(-1)
    accuracy = (guess == y[held]).float().mean().item()
    print(f"nearest-class-mean accuracy of the {args.latent_dim}-d codes on held-out "
          f"digits: {accuracy:.3f}")
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 5))
        pts = ax.scatter(codes[:, 0], codes[:, 1], c=y, s=4, cmap="tab10")
        fig.colorbar(pts, ax=ax, label="digit")
        ax.set_xlabel("E[z_1 | x]")
        ax.set_ylabel("E[z_2 | x]")
        fig.savefig(args.out, dpi=100)
        plt.close(fig)
    return table, accuracy


if __name__ == "__main__":
    main(parse_args())
