"""Density estimation with a normalizing flow: a 2-D toy of known density, a conditional
flow, and dequantized digits in bits per dimension.

    python examples/flow_density.py --toy eight_gaussians --out flow.png
    python examples/flow_density.py --dataset digits --num-steps 3000

On a toy set the true KL(p_data || p_phi) is reported (the density is known). On digits
(scikit-learn's 8 x 8 images, values 0..16) the pixels are dequantized, y = (x + u) / 17
with u ~ U(0, 1), and the held-out negative log-likelihood of x + u is reported in bits
per dimension: -(log p(y) - 64 log 17) / (64 log 2).
"""

from __future__ import annotations

import argparse
import math

import torch

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=["toy", "digits"], default="toy")
    p.add_argument("--toy", default="eight_gaussians", choices=sorted(pgm.datasets.TOYS))
    p.add_argument("--transform", default="nsf")
    p.add_argument("--n-train", type=int, default=4000,
                   help="training rows (digits: at most 1500; the other 297 are held out)")
    p.add_argument("--num-steps", type=int, default=3000)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--out", default=None,
                   help="PNG of the learned density and samples (toy data only)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.n_train < 1:  # (digits sliced perm[:-5]: held-out rows in the training set)
        p.error(f"--n-train must be a positive number of rows, got {args.n_train}")
    return args


def toy(args):
    truth = pgm.datasets.toy(args.toy)
    with seeded(args.seed):
        x, heldout = truth.sample((args.n_train,)), truth.sample((4000,))
        model = pgm.Flow(2, transform=args.transform, hidden=(args.hidden, args.hidden))
    fit = model.fit(x, method="mle", seed=args.seed, num_steps=args.num_steps,
                    progress=False)
    table = pgm.compare({args.transform: fit}, heldout, truth=truth)
    true_lp = truth.log_prob(heldout).mean().item()
    print(table[["heldout_log_prob", "true_kl", "true_kl_se"]].to_string())
    print(f"true density's held-out log-likelihood: {true_lp:.4f}")

    # the same data, conditioned on which half of the plane a point is in
    c = (x[:, :1] > 0).float()
    with seeded(args.seed):
        cond = pgm.Flow(2, transform=args.transform, hidden=(args.hidden, args.hidden),
                        context_dim=1)
    cfit = cond.fit(x, c=c, method="mle", seed=args.seed, num_steps=args.num_steps,
                    progress=False)
    right = cfit.sample(1000, c=torch.ones(1, 1), seed=1)
    print(f"conditional flow: share of samples given 'right half' with x1 > 0: "
          f"{(right[:, 0] > 0).float().mean().item():.3f}")
    if args.out:
        _plot(fit, x, args.out)
    return table, true_lp, right


def digits(args):
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().data, dtype=torch.float32)
    with seeded(args.seed):
        perm = torch.randperm(x.shape[0])
        train, test = x[perm[:min(args.n_train, 1500)]], x[perm[1500:]]
        y_train = (train + torch.rand_like(train)) / 17
        y_test = (test + torch.rand_like(test)) / 17
        model = pgm.Flow(64, transform=args.transform, hidden=(args.hidden, args.hidden))
    fit = model.fit(y_train, method="mle", seed=args.seed, num_steps=args.num_steps,
                    progress=False)
    lp = fit.log_prob(y_test)
    bpd = -(lp - 64 * math.log(17)) / (64 * math.log(2))
    se = bpd.std().item() / math.sqrt(len(bpd))
    print(f"digits ({len(train)} training rows): held-out {bpd.mean().item():.3f} ± {se:.3f}"
          f" bits/dim (uniform over 17 levels: {math.log2(17):.3f})")
    return bpd.mean().item()


def _plot(fit, x, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = x.min(0).values - 0.5, x.max(0).values + 0.5
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 200),
                            torch.linspace(lo[1], hi[1], 200), indexing="xy")
    dens = fit.log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)).exp()
    s = fit.sample(2000, seed=0)
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
    a.imshow(dens.reshape(gx.shape), origin="lower", extent=(lo[0], hi[0], lo[1], hi[1]),
             aspect="auto")
    a.set_title("learned density")
    b.scatter(s[:, 0], s[:, 1], s=2)
    b.set_title("samples")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main(args):
    return toy(args) if args.dataset == "toy" else digits(args)


if __name__ == "__main__":
    main(parse_args())
