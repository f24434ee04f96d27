"""An energy-based model on a 2-D toy set: a noise-conditional energy trained by
multilevel denoising score matching (or contrastive divergence), sampled by annealed
Langevin and MALA, with mode coverage and an AIS estimate of log Z.

    python examples/energy_toy.py --toy eight_gaussians --out energy.png
    python examples/energy_toy.py --objective contrastive

The model is p(x) = exp f(x, sigma_0) / Z, f an MLP that also takes the noise level and
sigma_0 the evaluation level the fit chose on held-out rows. After training, 2000 draws are
compared with the modes of the true density (eight_gaussians: how many of the 8 modes
hold at least a fifth of their fair share of draws, and which fraction of draws lies
within 3 sd of a centre); log Z is estimated by annealed importance sampling, so the
held-out log-likelihood f(x) - log Z_hat can be set against the true density's. ``--out``
writes a heat map of the learned f with the samples on top.
"""

from __future__ import annotations

import argparse

import torch

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded
from pyro_genmodels.models.energy import EnergyModel


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--toy", default="eight_gaussians", choices=sorted(pgm.datasets.TOYS))
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--num-steps", type=int, default=None,
                   help="training steps (default: the objective's)")
    p.add_argument("--hidden", type=int, default=256, help="width of the 3 hidden layers")
    p.add_argument("--objective", default="multilevel_score_matching",
                   choices=["multilevel_score_matching", "contrastive", "score_matching"])
    p.add_argument("--num-samples", type=int, default=2000)
    p.add_argument("--out", default=None, help="PNG: heat map of f with samples on top")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def mode_coverage(samples: torch.Tensor, truth) -> dict:
    """For eight_gaussians: modes holding >= 1/5 of a fair share of draws within 3 sd of
    their centre, and the fraction of draws within 3 sd of any centre. Other toys: the
    fraction of draws where the true density is positive (checkerboard) or above its
    1st-percentile level on its own draws (banana)."""
    if hasattr(truth, "centers"):
        d = torch.cdist(samples, truth.centers.to(samples))
        near, k = d.min(1)
        hit = near < 3 * truth.scale
        counts = torch.bincount(k[hit], minlength=8)
        fair = samples.shape[0] / 8
        return {"modes_covered": int((counts >= fair / 5).sum()),
                "near_fraction": float(hit.float().mean()), "counts": counts.tolist()}
    lp = truth.log_prob(samples.float())
    with seeded(0):
        level = truth.log_prob(truth.sample((4000,))).quantile(0.01)
    return {"modes_covered": 0, "near_fraction": float((lp >= level).float().mean())}


def main(args):
    truth = pgm.datasets.toy(args.toy)
    with seeded(args.seed):
        x, heldout = truth.sample((args.n_train,)), truth.sample((2000,))
        model = EnergyModel(2, hidden=(args.hidden,) * 3)
    steps = {} if args.num_steps is None else {"num_steps": args.num_steps}
    fit = model.fit(x, method="mle", objective=args.objective, seed=args.seed,
                    progress=False, **steps)
    chains = fit.sample_chains(args.num_samples, sampler="langevin", seed=args.seed + 1)
    samples, run = chains.flat(args.num_samples), chains.to_arviz()
    coverage = mode_coverage(samples, truth)
    log_z = fit.log_z
    print(f"{args.toy}: {args.n_train} points, {len(fit.losses)} steps ({args.objective})")
    if "eval_sigma" in fit.info:
        print(f"evaluation level sigma_0 = {fit.info['eval_sigma']:.4f} (standardized units)")
    print(f"langevin: {int(run.sample_stats['diverging'].values.sum())} divergent "
          f"transitions, mean acceptance "
          f"{float(run.sample_stats['acceptance_rate'].values.mean()):.3f}")
    print(f"mode coverage: {coverage}")
    print(f"AIS log Z = {log_z.estimate:.4f} ± {log_z.stderr:.4f} (ESS {log_z.ess:.0f})")
    print(f"held-out log-likelihood: model {fit.log_prob(heldout).mean().item():.4f}, "
          f"true density {truth.log_prob(heldout).mean().item():.4f}")
    if args.out:
        _plot(fit, x, samples, args.out)
    return fit, coverage, log_z


def _plot(fit, x, samples, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo = torch.minimum(x.min(0).values, samples.min(0).values) - 0.5
    hi = torch.maximum(x.max(0).values, samples.max(0).values) + 0.5
    g0 = torch.linspace(float(lo[0]), float(hi[0]), 200)
    g1 = torch.linspace(float(lo[1]), float(hi[1]), 200)
    grid = torch.stack(torch.meshgrid(g0, g1, indexing="xy"), -1).reshape(-1, 2)
    f = fit.unnormalized_log_prob(grid.to(x)).reshape(200, 200)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.pcolormesh(g0, g1, f.cpu(), shading="auto", cmap="viridis")
    s = samples.cpu()
    ax.scatter(s[:, 0], s[:, 1], s=2, c="white", alpha=0.5, label="Langevin samples")
    ax.set_title("learned f(x) = -E(x), with samples")
    ax.legend(loc="upper right")
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main(parse_args())
