"""GAN mode coverage per divergence on the ring and the grid (the VEEGAN / PacGAN
table), and a conditional GAN on digits.

    python examples/gan_toy.py --plot gan.png
    python examples/gan_toy.py --data eight_gaussians --divergences js gan wasserstein
    python examples/gan_toy.py --data --digits --plot gan.png

For each data set (``eight_gaussians``: 8 Gaussians of sd 0.2 on a circle of radius 2;
``grid25``: 25 Gaussians of sd 0.05 on a 5 x 5 grid) and each divergence, a default
``pgm.GAN(2, divergence=d)`` is fitted to ``--n-train`` points per seed and 2500 of its
draws are scored by ``pgm.metrics.mode_coverage`` against the true centres (a draw is of
high quality within 3 sd of its nearest centre; a mode is covered by one high-quality
draw; reverse KL of the high-quality draws' mode histogram from uniform, as PacGAN, nan
for a run without high-quality draws) and by the unbiased MMD^2 to 2500 fresh data
draws. The table gives mean ± sd over seeds, and the modes covered per seed. A GAN has
no density, so there is no likelihood column: everything is scored by samples.

Measured (one thread, a busy 2-core machine; before the per-divergence defaults, at lr
2e-4 and betas (0.5, 0.999): docs/gan.md has the tables at the current defaults):
``--data eight_gaussians --divergences js gan wasserstein --num-steps 3000`` took 12-35 s per js / gan fit and about 75 s per
WGAN-GP fit (5 critic steps per generator step); js and gan covered 8, 8 and 2 of the 8
modes over seeds 0, 1, 2 (high quality 0.57 ± 0.43), WGAN-GP all 8 in every seed (0.43 ±
0.08). ``js`` and ``gan`` differ by a constant in the game (with the non-saturating
generator loss), so under one seed they train the same generator. ``docs/gan.md``: the
default networks do not resolve the grid in a few minutes.

With ``--digits``: ``pgm.GAN(64, context_dim=10)`` on scikit-learn's 1797 8x8 digits
given the one-hot label, 50 draws per label, and the share of them that a logistic
regression trained on the real digits labels as asked. The pixels are scaled to [0, 1]
(grey level / 16, draws clipped to [0, 1]) with ``standardize=False``, and Adam runs at
``lr=1e-3, betas=(0.5, 0.9)``: with standardized columns (the default, which turns the
rarely inked border pixels into outliers of tens of sd) the js game learns slowly (share
0.09-0.11 after 500 and 1000 steps, 0.53 after 3000, 0.94 after the default 6000;
seed 0); with these settings it measured 0.33 after 500 steps, 0.98 after 800 and 0.95
after 4000.
The share does not see a lack of variety within a label; the ``--plot`` grid does.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

import pyro_genmodels as pgm
from pyro_genmodels import metrics
from pyro_genmodels._rng import seeded

DATASETS = ("eight_gaussians", "grid25")
DIVERGENCES = ("js", "gan", "wasserstein", "kl", "reverse_kl")
#: the columns of the table, each with its ``_sd`` over seeds
COLUMNS = ("modes_covered", "high_quality", "reverse_kl", "mmd2", "seconds")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="*", default=list(DATASETS), choices=DATASETS,
                   help="toy sets (none: only --digits)")
    p.add_argument("--divergences", nargs="+", default=list(DIVERGENCES),
                   help="f-GAN divergences or 'wasserstein'")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--num-steps", type=int, default=None,
                   help="generator steps per fit (default: the library's)")
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--num-samples", type=int, default=2500, help="draws scored per fit")
    p.add_argument("--digits", action="store_true", help="also the conditional digits GAN")
    p.add_argument("--plot", default=None,
                   help="PNG of samples per divergence (digits: *_digits.png next to it)")
    return p.parse_args(argv)


def _budget(args):
    return {} if args.num_steps is None else {"num_steps": args.num_steps}


def toy_table(args):
    """Fit every (data set, divergence, seed); return the summary table (mean and sd
    over seeds) with the per-run rows in ``table.attrs["runs"]``, and the first seed's
    draws per (data set, divergence) for the plot."""
    rows, draws = [], {}
    for name in args.data:
        truth = pgm.datasets.toy(name)
        for d in args.divergences:
            for seed in args.seeds:
                with seeded(seed):
                    x = truth.sample((args.n_train,))
                    fresh = truth.sample((args.num_samples,))
                    model = pgm.GAN(2, divergence=d)
                t0 = time.perf_counter()
                fit = model.fit(x, method="adversarial", seed=seed, progress=False,
                                **_budget(args))
                seconds = time.perf_counter() - t0
                s = fit.sample(args.num_samples, seed=seed + 1000)
                cov = metrics.mode_coverage(s, truth.centers, truth.scale)
                rows.append({"data": name, "divergence": d, "seed": seed,
                             "num_modes": cov.num_modes, "modes_covered": cov.modes_covered,
                             "high_quality": cov.high_quality, "reverse_kl": cov.reverse_kl,
                             "mmd2": float(metrics.mmd(s, fresh)), "seconds": seconds})
                draws.setdefault((name, d), (x, s))
    runs = pd.DataFrame(rows)
    if runs.empty:
        return pd.DataFrame(), draws
    groups = runs.groupby(["data", "divergence"], sort=False)
    # a run without high-quality draws has no mode histogram (reverse KL nan): it makes
    # the mean nan too rather than being skipped
    table = groups[list(COLUMNS)].agg(lambda v: v.mean(skipna=False))
    sd = groups[list(COLUMNS)].agg(lambda v: v.std(skipna=False)).add_suffix("_sd")
    table = pd.concat([groups["num_modes"].first(), table, sd], axis=1)
    table.insert(0, "seeds", groups.size())
    table.attrs["runs"] = runs
    return table, draws


def format_table(table) -> str:
    """The table as printed: ``mean ± sd`` (the mean alone for one seed)."""
    out = pd.DataFrame(index=table.index)
    out["seeds"] = table["seeds"]
    digits = {"modes_covered": 2, "high_quality": 3, "reverse_kl": 3, "mmd2": 4,
              "seconds": 1}
    for col, k in digits.items():
        out[col] = [f"{m:.{k}f}" if n < 2 else f"{m:.{k}f} ± {s:.{k}f}"
                    for m, s, n in zip(table[col], table[col + "_sd"], table["seeds"])]
    out["modes_covered"] = out["modes_covered"] + [f" / {k}" for k in table["num_modes"]]
    runs = table.attrs.get("runs")
    if runs is not None:  # the raw counts: a mean hides which seed dropped modes
        per_seed = runs.groupby(["data", "divergence"], sort=False)["modes_covered"]
        out["per_seed"] = per_seed.agg(lambda v: ", ".join(map(str, v)))
    return out.to_string()


def digits(args):
    """The conditional GAN on digits: 50 draws per label and the share that a logistic
    regression trained on the real digits labels as asked; returns (share, draws in
    [0, 1], ``(500, 64)``, label k in rows 50 k .. 50 k + 49)."""
    from sklearn.linear_model import LogisticRegression

    x, y = pgm.datasets.load_digits()
    x = x / 16  # grey levels 0..16 -> [0, 1]
    c = torch.nn.functional.one_hot(y, 10).float()
    with seeded(0):
        model = pgm.GAN(64, context_dim=10, standardize=False)
    t0 = time.perf_counter()
    fit = model.fit(x, c=c, method="adversarial", seed=0, progress=False, lr=1e-3,
                    betas=(0.5, 0.9), **_budget(args))
    seconds = time.perf_counter() - t0
    asked = torch.arange(10).repeat_interleave(50)
    s = fit.sample(500, c=torch.nn.functional.one_hot(asked, 10).float(), seed=1)
    s = s.clamp(0, 1)
    clf = LogisticRegression(max_iter=2000).fit(x.numpy(), y.numpy())
    got = torch.as_tensor(clf.predict(s.numpy()))
    share = (got == asked).float().mean().item()
    steps = fit.info["num_steps"]
    print(f"conditional GAN on digits ({x.shape[0]} images, {steps} steps, {seconds:.1f} s): "
          f"share of 500 draws labelled as asked by a logistic regression: {share:.3f} "
          f"(chance 0.100)")
    return share, s


def main(args):
    steps = args.num_steps or "the divergence's default (docs/gan.md)"
    table, draws = toy_table(args)
    if not table.empty:
        print(f"GAN mode coverage: {args.n_train} training points, {steps} generator steps, "
              f"{args.num_samples} draws scored, seeds {args.seeds}")
        print(format_table(table))
    accuracy, digit_draws = digits(args) if args.digits else (None, None)
    if args.plot:
        if draws:
            _plot(draws, args.plot)
        if digit_draws is not None:
            out = Path(args.plot)
            _plot_digits(digit_draws, out.with_name(out.stem + "_digits" + out.suffix))
    return table, accuracy


def _plot(draws, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(k[0] for k in draws))
    divs = list(dict.fromkeys(k[1] for k in draws))
    fig, axes = plt.subplots(len(names), len(divs), figsize=(3 * len(divs), 3 * len(names)),
                             squeeze=False)
    for i, name in enumerate(names):
        for j, d in enumerate(divs):
            x, s = (t.cpu().numpy() for t in draws[(name, d)])
            ax = axes[i][j]
            ax.scatter(x[:2500, 0], x[:2500, 1], s=2, c="gray", alpha=0.3)
            ax.scatter(s[:, 0], s[:, 1], s=2, c="tab:orange", alpha=0.5)
            lo, hi = x.min(0) - 1, x.max(0) + 1
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[1], hi[1])
            ax.set_title(f"{name}: {d}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def _plot_digits(samples, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # 10 draws per label, one row per label 0..9
    rows = samples.reshape(10, 50, 64)[:, :10].reshape(-1, 64)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(pgm.datasets.digit_grid(rows, 10).numpy(), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title("conditional GAN: row k asks for digit k", fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main(parse_args())
