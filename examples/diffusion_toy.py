"""A diffusion model on a 2-D toy of known density (samplers and likelihoods against the
truth), and on dequantized digits (bits/dim against a VAE and a flow; guided samples).

    python examples/diffusion_toy.py --plot diffusion.png
    python examples/diffusion_toy.py --digits --plot diffusion.png
    python examples/diffusion_toy.py --quick            # a smoke run, seconds

**Toy** (``eight_gaussians``): 4000 training rows, 1000 held-out rows and a second 1000
held-out rows, all drawn under one seed. A default ``pgm.Diffusion(2)`` (T = 1000,
cosine schedule, a 3 x 256 preconditioned MLP, 8000 steps of the simple loss, EMA
weights) is fitted; each sampler draws 1000 points, scored by the unbiased MMD^2 to
the held-out rows (Gaussian kernel, the held-out rows' median bandwidth, fixed for
every row of the table) and by the true log-density of the draws. The noise floor is
the second held-out half against the first: what a perfect sampler scores. Its unbiased
MMD^2 is zero in expectation, so the floor is read off its standard error and the
V-statistic (``mmd2_biased``, positive, about 2 E[k(x, x) - k(x, y)] / n for a perfect
sampler). The held-out mean log-likelihood follows by the variational bound
(``fit.log_prob``, every one of the T terms) and by the probability-flow ODE
(``fit.probability_flow``: exact divergence in 2-D) next to the true log-density of the
same rows.

Measured (seed 0, one thread, a busy 2-core machine; the fit 53-79 s, the whole run
75-113 s, as busy as the machine was)::

                           mmd2  mmd2_se  mmd2_biased  true_log_prob  seconds_per_1000
    ancestral          -0.00043  0.00063      0.00029       -1.84725           5.84344
    ddim 20            -0.00061  0.00062      0.00009       -1.75183           0.10109
    ddim 100           -0.00063  0.00063      0.00008       -1.82851           0.51157
    ode                -0.00062  0.00063      0.00010       -1.85415           1.73139
    held-out 2 (floor)  0.00078  0.00119      0.00149       -1.67832               NaN
    held-out mean log-likelihood (1000 rows; ODE trace exact):
                  log_prob     se      nfe  seconds  minus_true
    bound          -2.5116 0.0639      NaN   7.8394     -0.8330
    ode            -1.7359 0.0316 367.0000   5.8518     -0.0573
    true density   -1.6786 0.0304      NaN      NaN      0.0000

Every sampler's MMD^2 is within one se of zero, and below the floor pair's (whose own
+0.0008 is noise); the draws' true log-density is 0.07-0.18 nats below the held-out
rows' (the modes slightly blurred), DDIM with 20 steps as good as ancestral sampling at
1/50 of the time. The ODE's log-likelihood is 0.06 nats below the truth (the model's
KL from the data, plus the solver's error) and 0.78 above the bound (a different
density, the continuous flow's, and the bound pays the chain's variational gap too).

**Digits** (``--digits``): scikit-learn's 1797 8 x 8 digits, grey levels 0..16, split
1500 / 297 under the seed and dequantized, x + u with u ~ U[0, 1)^64 (the training rows
under the seed; the held-out rows by ``bits_per_dim(bin_width=1)``'s own seeded u, the
same u for every model). Fitted to the dequantized training rows:

* ``Diffusion(64)`` and ``Diffusion(64, context_dim=10)`` (one-hot labels, condition
  dropout 0.1 for classifier-free guidance), default networks, ``--digits-steps``
  steps each (default 4000 instead of the library's 8000, about 10 ms a step here, to
  keep the whole run to a few minutes on one thread);
* ``VAE(64, 16, likelihood="continuous_bernoulli", hidden=(256,))``, 5000 steps, where
  the continuous Bernoulli is a proper density on [0, 1], scored by IWAE (K = 100), a
  stochastic lower bound;
* ``Flow(64)`` (neural spline flow, 3 transforms), ``--flow-steps`` steps (default 1000
  instead of the library's 3000: 50-90 ms a step here), exact.

The diffusion model is scored by its bound and by the probability-flow ODE, whose
divergence above 8 columns is Hutchinson's estimate (one Rademacher probe per row,
unbiased for log p); the ODE's number is the likelihood of the continuous flow the
network defines, an estimate of the model's density, not a bound. Then 50 guided draws
per label for w in (0, 1, 3) (DDIM, 50 steps), rounded down to grey levels and labelled
by a logistic regression trained on the real digits (grey level / 16); the table gives
the share labelled as asked (chance 0.1).

Every model is fitted to (level + u) / 17 in [0, 1) (the continuous Bernoulli needs
[0, 1]; standardization makes the scale moot for the others), and one ``pgm.compare``
table scores them on the dequantized held-out rows with ``bin_width=1/17``; the ODE row
is the same fit as ``fit.using(estimator="ode")``.

Measured (seed 0, one thread, a busy 2-core machine; the whole run 187 s, of which
``pgm.compare`` 50 s: it also scores the training rows; the conditional model's one-hot
labels standardized by their training moments, as every conditional network's context
is since stop 52: before, 3.169 bits/dim and 85% as asked at w = 0)::

                                   model log_prob_kind bits_per_dim fit_s  heldout_log_prob
    diffusion, bound           Diffusion         bound        3.273  29.9         36.143314
    diffusion, ODE             Diffusion      estimate        2.583  29.9         66.760147
    diffusion p(x | y), bound  Diffusion         bound        3.182  31.4         40.179070
    VAE (IWAE)                       VAE      estimate        2.380  13.9         75.727890
    flow                            Flow         exact        2.379  59.8         75.807472
    guided draws (DDIM 50 steps, 50 per label) labelled as asked:
        accuracy seconds
    w
    0.0    0.932     0.2
    1.0    0.998     0.3
    3.0    1.000     0.3

At 4000 steps the diffusion model's bound (3.27 bits/dim) is far from its ODE
likelihood (2.58), and both trail the VAE and the flow (2.38): with a few minutes
of CPU the small models win on likelihood. The guided draws are what the diffusion
model does well: 93% are labelled as asked without guidance, nearly all with w = 1 or
3 (in the ``--plot`` grid the strokes grow bolder and more alike as w grows). A
Gaussian VAE (``likelihood="gaussian"``, one learned scale for every pixel) measured
3.42 bits/dim.

All numbers are from one seed (0) on a busy 2-core machine; the seconds depend on the
load. ``--quick`` (T = 50, hidden (32, 32), a few dozen steps) only checks that every
path runs: its numbers mean nothing. Size flags given with it (``--digits-steps``,
``--flow-steps``, ``--num-steps``, ``--n-train``, ``--n-heldout``) win over its sizes.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import pandas as pd
import torch

import pyro_genmodels as pgm
from pyro_genmodels import metrics
from pyro_genmodels._rng import seeded

#: (label, sample options) for the toy's sampler table
SAMPLERS = (("ancestral", {"sampler": "ancestral"}),
            ("ddim 20", {"sampler": "ddim", "steps": 20, "eta": 0.0}),
            ("ddim 100", {"sampler": "ddim", "steps": 100, "eta": 0.0}),
            ("ode", {"sampler": "ode"}))
GUIDANCE = (0.0, 1.0, 3.0)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-steps", type=int, default=None,
                   help="toy diffusion fit's steps (default: the library's 8000)")
    p.add_argument("--digits", action="store_true",
                   help="the digits part instead of the toy")
    p.add_argument("--digits-steps", type=int, default=None,
                   help="steps of each digits diffusion fit (default 4000, --quick 40; the "
                        "library's default: 8000)")
    p.add_argument("--flow-steps", type=int, default=None,
                   help="steps of the digits flow (default 1000, --quick 10; the library's "
                        "default: 3000)")
    p.add_argument("--n-train", type=int, default=None,
                   help="toy training rows (default 4000, --quick 400)")
    p.add_argument("--n-heldout", type=int, default=None,
                   help="toy held-out rows (default 1000, --quick 200)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes (T = 50, hidden (32, 32), few steps) for a smoke run; "
                        "the size flags given win over its defaults")
    p.add_argument("--plot", default=None,
                   help="PNG of draws per sampler (digits: a grid per guidance weight)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _arch(args) -> dict:
    return {"timesteps": 50, "hidden": (32, 32)} if args.quick else {}


#: the sizes of a flag left out (None: the library's default), and under --quick
SIZES = {"n_train": 4000, "n_heldout": 1000, "num_steps": None, "digits_steps": 4000,
         "vae_steps": 5000, "flow_steps": 1000}
QUICK_SIZES = {"n_train": 400, "n_heldout": 200, "num_steps": 100, "digits_steps": 40,
               "vae_steps": 40, "flow_steps": 10}


def _sizes(args):
    """(toy n_train, toy n_heldout, toy fit steps, digits diffusion / VAE / flow steps):
    each size flag as given, else its default (:data:`QUICK_SIZES` under --quick)."""
    default = QUICK_SIZES if args.quick else SIZES
    size = {k: default[k] if getattr(args, k, None) is None else getattr(args, k)
            for k in default}
    return (size["n_train"], size["n_heldout"], size["num_steps"],
            (size["digits_steps"], size["vae_steps"], size["flow_steps"]))


def _default_steps() -> int:
    return pgm.Diffusion.engines["mle"].Options.num_steps


def _mmd(draws, heldout, bandwidth) -> dict:
    m = metrics.mmd(draws, heldout, bandwidth=bandwidth)
    return {"mmd2": m.estimate, "mmd2_se": m.stderr, "mmd2_biased": m.biased}


# ---------------------------------------------------------------------------- the toy
def toy(args):
    """Fit the toy; return (sampler table, likelihood table, draws per sampler, data)."""
    n_train, n_held, steps, _ = _sizes(args)
    truth = pgm.datasets.toy("eight_gaussians")
    with seeded(args.seed):
        x = truth.sample((n_train,))
        heldout, heldout2 = truth.sample((n_held,)), truth.sample((n_held,))
        model = pgm.Diffusion(2, **_arch(args))
    t0 = time.perf_counter()
    fit = model.fit(x, method="mle", seed=args.seed, progress=False,
                    **({} if steps is None else {"num_steps": steps}))
    fit_seconds = time.perf_counter() - t0
    bandwidth = metrics.median_bandwidth(heldout)
    true_lp = truth.log_prob(heldout).mean().item()
    rows, draws = {}, {}
    for label, options in SAMPLERS:
        if options.get("steps", 0) > model.timesteps:  # --quick's T = 50
            options = {**options, "steps": model.timesteps}
        t0 = time.perf_counter()
        s = fit.sample(n_held, seed=args.seed + 1, **options)
        seconds = time.perf_counter() - t0
        rows[label] = {**_mmd(s, heldout, bandwidth),
                       "true_log_prob": truth.log_prob(s).mean().item(),
                       "seconds_per_1000": seconds * 1000 / n_held}
        draws[label] = s
    rows["held-out 2 (floor)"] = {**_mmd(heldout2, heldout, bandwidth),
                                  "true_log_prob": truth.log_prob(heldout2).mean().item(),
                                  "seconds_per_1000": math.nan}
    samplers = pd.DataFrame.from_dict(rows, orient="index")

    t0 = time.perf_counter()
    bound = fit.log_prob(heldout)
    t_bound = time.perf_counter() - t0
    t0 = time.perf_counter()
    ode = fit.probability_flow(heldout)
    t_ode = time.perf_counter() - t0

    def se(v):
        return v.std().item() / math.sqrt(len(v))

    lik = pd.DataFrame.from_dict({
        "bound": {"log_prob": bound.mean().item(), "se": se(bound), "nfe": math.nan,
                  "seconds": t_bound},
        "ode": {"log_prob": ode.log_prob.mean().item(), "se": se(ode.log_prob),
                "nfe": ode.nfe, "seconds": t_ode},
        "true density": {"log_prob": true_lp, "se": se(truth.log_prob(heldout)),
                         "nfe": math.nan, "seconds": math.nan},
    }, orient="index")
    lik["minus_true"] = lik["log_prob"] - true_lp
    print(f"eight_gaussians: Diffusion(2{', quick' if args.quick else ''}), "
          f"{n_train} training rows, {steps or _default_steps()} steps, "
          f"fit {fit_seconds:.0f} s; {n_held} draws per sampler vs {n_held} held-out rows")
    print(samplers.to_string(float_format=lambda v: f"{v:.5f}"))
    print(f"held-out mean log-likelihood ({n_held} rows; ODE trace {ode.trace}):")
    print(lik.to_string(float_format=lambda v: f"{v:.4f}"))
    samplers.attrs.update(fit_seconds=fit_seconds, heldout_true_log_prob=true_lp)
    return samplers, lik, draws, heldout


def toy_targets(samplers, lik) -> dict:
    """The issue's targets, each True / False."""
    floor = samplers.loc["held-out 2 (floor)"]
    true_lp = lik.loc["true density", "log_prob"]  # of the held-out rows
    draws = samplers.drop(index="held-out 2 (floor)")
    anc, fast = draws.loc["ancestral"], draws.loc["ddim 20"]
    return {
        "every sampler's mmd2_biased within 2x the floor's":
            bool((draws["mmd2_biased"] <= 2 * floor["mmd2_biased"]).all()),
        "every sampler's true log-density within 0.3 nats of the held-out rows'":
            bool(((draws["true_log_prob"] - true_lp).abs() <= 0.3).all()),
        "ode log-likelihood within 0.15 nats of the truth":
            bool(abs(lik.loc["ode", "log_prob"] - true_lp) <= 0.15),
        "ode log-likelihood above the bound":
            bool(lik.loc["ode", "log_prob"] > lik.loc["bound", "log_prob"]),
        "ddim 20 close to ancestral (mmd2 within 2 se, log-density within 0.15)":
            bool(abs(fast["mmd2"] - anc["mmd2"]) <= 2 * math.hypot(fast["mmd2_se"],
                                                                   anc["mmd2_se"])
                 and abs(fast["true_log_prob"] - anc["true_log_prob"]) <= 0.15),
    }


# ---------------------------------------------------------------------------- digits
def digits(args):
    """Fit the four digits models; return (bits/dim table, guidance table, guided draws
    on the 0..16 scale ``{w: (500, 64)}``, label k in rows 50 k .. 50 k + 49)."""
    from sklearn.linear_model import LogisticRegression

    _, _, _, (steps, vae_steps, flow_steps) = _sizes(args)
    quick = args.quick
    x, y = pgm.datasets.load_digits()
    onehot = torch.nn.functional.one_hot(y, 10).float()
    with seeded(args.seed):
        perm = torch.randperm(x.shape[0])
        train, test = perm[:1500], perm[1500:]
        xd = x[train] + torch.rand_like(x[train])  # dequantized training rows
    x_test = x[test]
    flow_size = {"hidden": (16, 16), "num_transforms": 1} if quick else {}
    fits, seconds = {}, {}

    def timed(name, make, data, **options):
        with seeded(args.seed):
            model = make()
        t0 = time.perf_counter()
        fits[name] = model.fit(data, method="mle", seed=args.seed, progress=False, **options)
        seconds[name] = time.perf_counter() - t0

    # every model on (grey level + u) / 17 in [0, 1), so one compare table holds them all
    # (the continuous Bernoulli needs [0, 1]; standardization makes the scale moot for
    # the diffusion model and the flow); bits/dim with bin width 1/17
    unit = xd / 17
    timed("diffusion", lambda: pgm.Diffusion(64, **_arch(args)), unit, num_steps=steps)
    timed("conditional", lambda: pgm.Diffusion(64, context_dim=10, **_arch(args)), unit,
          c=onehot[train], num_steps=steps)
    timed("vae", lambda: pgm.VAE(64, 16, likelihood="continuous_bernoulli",
                                 hidden=(32,) if quick else (256,)),
          unit, num_steps=vae_steps)
    timed("flow", lambda: pgm.Flow(64, **flow_size), unit, num_steps=flow_steps)

    d, u = fits["diffusion"], fits["conditional"]
    held = (x_test + _dequantization(x_test)) / 17
    t0 = time.perf_counter()
    table = pgm.compare({"diffusion, bound": d, "diffusion, ODE": d.using(estimator="ode"),
                         "diffusion p(x | y), bound": u, "VAE (IWAE)": fits["vae"],
                         "flow": fits["flow"]},
                        held, c=onehot[test], bin_width=1 / 17, samples=False, loo=False)
    table = table[["model", "log_prob_kind", "bits_per_dim", "heldout_log_prob",
                   "heldout_log_prob_se", "train_log_prob", "num_params"]]
    table.insert(3, "fit_s", [seconds[k] for k in ("diffusion", "diffusion", "conditional",
                                                   "vae", "flow")])
    compare_s = time.perf_counter() - t0

    real = slice(None, 300 if quick else None)
    clf = LogisticRegression(max_iter=2000).fit((x[real] / 16).numpy(), y[real].numpy())
    asked = torch.arange(10).repeat_interleave(50)
    c = torch.nn.functional.one_hot(asked, 10).float()
    guided, draws = {}, {}
    for w in GUIDANCE:
        t0 = time.perf_counter()
        s = u.sample(500, c=c, guidance=w, sampler="ddim", steps=min(50, u.model.timesteps),
                     seed=args.seed + 1)
        s = (17 * s).floor().clamp(0, 16)  # back to grey levels
        got = torch.as_tensor(clf.predict((s / 16).numpy()))
        guided[w] = {"accuracy": (got == asked).float().mean().item(),
                     "seconds": time.perf_counter() - t0}
        draws[w] = s
    guidance = pd.DataFrame.from_dict(guided, orient="index")
    guidance.index.name = "w"
    print(f"digits: 1500 / 297 rows, dequantized; {steps} steps per diffusion fit, VAE "
          f"{vae_steps}, flow {flow_steps}{' (quick)' if quick else ''}; held-out bits/dim "
          f"on (level + u) / 17, bin width 1/17 (uniform over 17 levels: "
          f"{math.log2(17):.3f})")
    print(table.to_string(formatters={"bits_per_dim": "{:.3f}".format,
                                      "fit_s": "{:.1f}".format}))
    print(f"(pgm.compare: {compare_s:.1f} s; the ODE's divergence is Hutchinson's estimate "
          f"above 8 columns, one probe per row; the VAE's log_prob is IWAE with K = 100)")
    print("guided draws (DDIM 50 steps, 50 per label) labelled as asked by a logistic "
          "regression on the real digits:")
    print(guidance.to_string(formatters={"accuracy": "{:.3f}".format,
                                         "seconds": "{:.1f}".format}))
    return table, guidance, draws


def _dequantization(x):
    """The u that ``Fit.bits_per_dim`` adds under its default seed 0."""
    with seeded(0):
        return torch.rand_like(x)


# ---------------------------------------------------------------------------- main
def main(args):
    t0 = time.perf_counter()
    if args.digits:
        table, guidance, draws = digits(args)
        if args.plot:
            out = Path(args.plot)
            _plot_digits(draws, out.with_name(out.stem + "_digits" + out.suffix))
        print(f"total {time.perf_counter() - t0:.0f} s")
        return table, guidance
    samplers, lik, draws, heldout = toy(args)
    for target, held in toy_targets(samplers, lik).items():
        print(f"  {target}: {held}")
    if args.plot:
        _plot(draws, heldout, args.plot)
    print(f"total {time.perf_counter() - t0:.0f} s")
    return samplers, lik


def _plot(draws, heldout, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(draws), figsize=(3 * len(draws), 3), squeeze=False)
    h = heldout.numpy()
    for ax, (label, s) in zip(axes[0], draws.items()):
        s = s.numpy()
        ax.scatter(h[:, 0], h[:, 1], s=2, c="gray", alpha=0.3)
        ax.scatter(s[:, 0], s[:, 1], s=2, c="tab:orange", alpha=0.5)
        ax.set_xlim(-3.2, 3.2)
        ax.set_ylim(-3.2, 3.2)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def _plot_digits(draws, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(draws), figsize=(4 * len(draws), 4), squeeze=False)
    for ax, (w, s) in zip(axes[0], draws.items()):
        rows = (s / 16).reshape(10, 50, 64)[:, :10].reshape(-1, 64)
        ax.imshow(pgm.datasets.digit_grid(rows, 10).numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"guidance w = {w:g}: row k asks for digit k", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(parse_args())
