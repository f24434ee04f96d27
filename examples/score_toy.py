"""A score model on 2-D toys of known density (four samplers and the ODE likelihood
against the truth), and on dequantized digits (bits/dim through the ODE against a
diffusion model, a VAE and a flow; unconditional and label-conditional draws).

    python examples/score_toy.py --plot score.png
    python examples/score_toy.py --digits --plot score.png
    python examples/score_toy.py --quick            # a smoke run, seconds

**Toys** (``eight_gaussians``: 8 Gaussians of sd 0.2 on a circle of radius 2;
``checkerboard``: uniform on the 8 dark unit squares of [-2, 2]^2, density 1/8 there):
4000 training rows, 1000 held-out rows and a second 1000 held-out rows, all drawn under
one seed. A default ``pgm.ScoreModel(2)`` (10 geometric levels from the largest pairwise
distance, 3.85 and 4.88 standardized, down to 0.01; the 3 x 256 noise-conditional MLP;
the library's 16000 steps of denoising score matching, EMA weights) is fitted by
``dsm``, and each sampler draws 1000 points (100 Langevin steps per level; ``pc``: 1000
predictor-corrector steps), scored by

* the unbiased MMD^2 to the held-out rows (Gaussian kernel, the held-out rows' median
  bandwidth, fixed for every row) with its se, and its V-statistic ``mmd2_biased``;
  the floor is the second held-out half against the first, what a perfect sampler
  scores (its U-statistic is zero in expectation, so the floor is read off the se and
  the V-statistic);
* ``quality``: the share of draws within 3 sd of a centre (``pgm.metrics.mode_coverage``)
  or inside a dark square (finite true ``log_prob``);
* the histogram of those draws over the 8 modes or squares against the true 1/8 each:
  ``covered`` (modes with a draw), ``max_share_err`` = max |share - 1/8| and
  ``reverse_kl`` = KL(shares || 1/8) (PacGAN's);
* seconds per 1000 draws.

``langevin`` is ``sampler="langevin"``: plain Langevin, the same 1000 steps at
sigma_min only, from N(0, sigma_max^2 I). The tables below were measured when its
default step was the annealing's smallest (epsilon about 7e-6 here, the ``step rule``
row: it barely moves, 7% of draws near a mode); the library now defaults to the step
annealing takes at its middle level, the regime of the ``step 0.001`` row (about 3e-3
on the ring). Then the held-out mean log-likelihood by the probability-flow ODE
(``fit.probability_flow``, exact divergence in 2-D) next to the true log-density of the
same rows and that of the truth blurred at sigma_min (0.0114-0.0144 on the data's
scale), which is the density the ODE estimates.

Measured (seed 0, one thread, a busy 2-core machine; each fit 86-98 s, the whole run
354-367 s)::

    eight_gaussians        mmd2  mmd2_se  mmd2_biased  quality  covered  max_share_err
    annealed_langevin   0.00010  0.00076      0.00081    0.958        8         0.0227
    langevin            0.32820  0.01069      0.32942    0.068        8         0.0662
    ode                -0.00058  0.00063      0.00014    0.972        8         0.0242
    pc                  0.00021  0.00077      0.00092    0.972        8         0.0376
    held-out 2 (floor)  0.00078  0.00119      0.00149    0.988        8         0.0157
    (reverse_kl 0.0033, 0.0373, 0.0067, 0.0111, floor 0.0027; seconds per 1000 draws
    5.63, 5.54, 0.84, 10.58)
    held-out mean log-likelihood:  log_prob     se  nfe  seconds  minus_true
        ode                         -1.7263 0.0321  223      3.6     -0.0477
        true density                -1.6786 0.0304
        true, blurred at sigma_min  -1.6787 0.0302

    checkerboard           mmd2  mmd2_se  mmd2_biased  quality  covered  max_share_err
    annealed_langevin  -0.00031  0.00064      0.00052    0.864        8         0.0104
    langevin            0.37438  0.01116      0.37571    0.054        8         0.1157
    ode                 0.00027  0.00081      0.00111    0.903        8         0.0198
    pc                  0.00398  0.00218      0.00480    0.900        8         0.0339
    held-out 2 (floor) -0.00028  0.00063      0.00054    1.000        8         0.0190
    (reverse_kl 0.0014, 0.1470, 0.0046, 0.0139, floor 0.0029; seconds per 1000 draws
    5.07, 5.09, 0.88, 10.67)
    held-out mean log-likelihood:  log_prob     se  nfe  seconds  minus_true
        ode                         -2.2762 0.0157  235      3.4     -0.1967
        true density                -2.0794 0.0000
        true, blurred at sigma_min  -2.1041 0.0031

Against the issue's targets: annealed Langevin, the ODE and PC cover every mode and
square; their shares are within 3 binomial sd of 1/8 except PC's (max error 0.038 and
0.034, 3.5 and 3.1 sd); ``mmd2_biased`` is within twice the floor's for annealed
Langevin (both toys), the ODE on the ring (on the checkerboard 0.00111 against 0.00108,
by a hair) and PC on the ring (on the checkerboard 9x the floor); every U-statistic but
PC's on the checkerboard is within about one se of zero. The ODE's log-likelihood is
0.05 nats below the truth on the ring and 0.197 on the checkerboard, within 0.2 both
(by 0.003 on the checkerboard; the blur at sigma_min accounts for 0.025 of it). At the
library's earlier default of 8000 steps the checkerboard missed it (-2.4207, 0.34
below; quality 0.75, 0.82, 0.79 for annealed, ODE, PC), the ring did not (-1.7707).
The checkerboard's draws leak over the squares' edges: 10-14% lie outside (the blurred
truth puts 1.8% there); the MMD at the median bandwidth (about 2) does not see edges
that sharp. Plain Langevin with the annealing's step barely moves in 1000 steps at
sigma_min: 5-7% of its draws reach a mode or a square, the rest are its N(0,
sigma_max^2) start, hence its MMD^2 of 0.33-0.37. The ODE samples fastest (0.8-0.9 s per
1000 draws, 223-235 function evaluations for the log-likelihood), PC slowest (two
network calls per step).

**Weights** (skip with ``--no-weights``): on the equal-weight ring a sampler that keeps
the split of its start can look right, so a third fit, to the ring with weights 0.2 and
0.05 alternating (0.8 of the mass on the four heavy modes), 4000 rows, the same default
model; the reverse KL of the high-quality draws' mode histogram from the true weights,
and the heavy modes' share of them::

                           covered  high_quality  heavy_share  reverse_kl
    annealed_langevin            8         0.968        0.763      0.0075
    langevin, step rule          8         0.074        0.581      0.1514
    langevin, step 0.0001        8         0.811        0.523      0.1998
    langevin, step 0.001         8         0.980        0.678      0.0727
    langevin, step 0.01          7         0.980        0.685      0.4556
    ode                          8         0.966        0.792      0.0099
    pc                           8         0.986        0.813      0.0042

Annealing gets the weights (reverse KL 0.004-0.010, heavy share 0.76-0.81 against
0.8); plain Langevin does not at any step size: with a step that converges into the
modes but does not cross between them (1e-4) it keeps its start's even split (heavy
share 0.52, reverse KL 0.20, the failure Song & Ermon 2019 describe); with larger steps
its chains drift through regions no data reached, where the small-sigma score is
arbitrary (1e-2 loses a light mode and piles the rest unevenly: reverse KL 0.46). Where
that arbitrary field sends them varies from fit to fit: at 8000 steps plain Langevin
with step 1e-3 drew heavy share 0.78 with reverse KL 0.049.

**Digits** (``--digits``): scikit-learn's 1797 8 x 8 digits, grey levels 0..16, split
1500 / 297 under the seed and dequantized, as in ``diffusion_toy.py``: every model is
fitted to (level + u) / 17, u ~ U[0, 1)^64, and one ``pgm.compare`` table scores them on
the held-out rows dequantized by ``bits_per_dim``'s own seeded u, with ``bin_width=1/17``.
Fitted, with ``diffusion_toy.py``'s budgets:

* ``ScoreModel(64)`` and ``ScoreModel(64, context_dim=10)`` (one-hot labels), default
  network and levels, ``dsm``, ``--digits-steps`` steps each (default 4000 instead of
  the library's 16000; about 7 ms a step here);
* ``Diffusion(64)``, the same 4000 steps, scored by its bound and by the ODE
  (``fit.using(estimator="ode")``);
* ``VAE(64, 16, likelihood="continuous_bernoulli", hidden=(256,))``, 5000 steps, IWAE
  (K = 100);
* ``Flow(64)``, ``--flow-steps`` steps (default 1000 instead of 3000), exact.

The score model's log-likelihood is its ODE's (Hutchinson's divergence estimate above 8
columns, one probe per row): an estimate, as is the diffusion model's ODE row. Then 500
draws of each sampler (the conditional model 50 per label), rounded down to grey levels,
go to a logistic regression trained on the 1500 real training digits (level / 16): the
mean top predicted probability, the share above 0.9 (a confidently recognized digit),
the share labelled as asked, and the histogram of predicted classes; the 297 held-out
real digits give the reference.

Measured (seed 0, one thread, a busy 2-core machine; the whole run 192 s, of which
``pgm.compare`` 41 s, each score fit 26-27 s; the conditional model's context, its
one-hot labels, standardized by their training moments as every conditional network's
is since stop 52: before, 3.304 bits/dim and 89% as asked; its prior at sigma_max, the
per-class means since stop 55, moved its held-out log-likelihood from 34.334 to 34.348,
a hundredth of its standard error, 1.29)::

                             model log_prob_kind bits_per_dim fit_s  heldout_log_prob
    score, ODE          ScoreModel      estimate        3.295  26.3         35.173325
    score p(x | y), ODE ScoreModel      estimate        3.313  26.5         34.348366
    diffusion, bound     Diffusion         bound        3.273  26.4         36.143314
    diffusion, ODE       Diffusion      estimate        2.583  26.4         66.760147
    VAE (IWAE)                 VAE      estimate        2.380  13.4         75.727890
    flow                      Flow         exact        2.377  50.0         75.859367

                                         n  mean_max_prob  confident_0.9  as_asked  seconds
    held-out real digits               297          0.907          0.751     0.956      NaN
    score, annealed Langevin           500          0.680          0.218       NaN    3.184
    score, ODE sampler                 500          0.700          0.256       NaN    0.861
    score p(x | y), annealed Langevin  500          0.820          0.490     0.918    3.215
    diffusion, DDIM 50 steps           500          0.780          0.422       NaN    0.151

    predicted classes       0     1     2     3     4     5     6     7     8     9
    held-out real       0.091 0.101 0.091 0.081 0.088 0.101 0.094 0.118 0.118 0.118
    score, annealed     0.068 0.092 0.162 0.074 0.154 0.094 0.072 0.118 0.086 0.080
    score p(x | y)      0.100 0.092 0.102 0.098 0.106 0.102 0.098 0.106 0.092 0.104

At 4000 steps the score model's ODE likelihood (3.30-3.31 bits/dim) is 0.7 bits/dim
worse than the diffusion model's ODE with the same network and steps (2.58), about at
the diffusion model's bound (3.27), and far from the VAE and the flow (2.38). Its
unconditional draws are every digit (each class 7-16%, "2" and "4" over-represented)
but fewer of them are confidently a digit (22% against 42% of the diffusion model's DDIM
draws and 75% of real digits); the ``--plot`` grid shows a grey speckle on their
background. The ODE sampler's draws score about the same (26%), so it is the learned
score, not Langevin's step, that limits them. The conditional model's draws are
labelled as asked 92% of the time (the classifier labels 96% of real held-out digits
right), 49% confidently, the classes even (0.092-0.106).

All numbers are from one seed (0) on a busy 2-core machine; the seconds depend on the
load. ``--quick`` (hidden (32, 32), a few dozen steps, 5 Langevin steps per level) only
checks that every path runs: its numbers mean nothing. Size flags given with it
(``--digits-steps``, ``--flow-steps``, ``--num-steps``, ``--n-train``, ``--n-heldout``)
win over its sizes.
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

TOYS = ("eight_gaussians", "checkerboard")
#: (label, sample options) of the toys' sampler table
SAMPLERS = (("annealed_langevin", {"sampler": "annealed_langevin"}),
            ("langevin", {"sampler": "langevin"}),
            ("ode", {"sampler": "ode"}),
            ("pc", {"sampler": "pc"}))
#: the weighted ring: heavy and light modes alternate, 0.8 of the mass on the heavy four
WEIGHTS = (0.2, 0.05) * 4
#: plain Langevin's step sizes in the weights demonstration (None: the annealing rule)
PLAIN_STEPS = (None, 1e-4, 1e-3, 1e-2)
FLOOR = "held-out 2 (floor)"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--toys", nargs="*", default=list(TOYS), choices=TOYS,
                   help="toy sets of the sampler / likelihood tables")
    p.add_argument("--no-weights", action="store_true",
                   help="skip the plain-vs-annealed weights demonstration (one more fit)")
    p.add_argument("--num-steps", type=int, default=None,
                   help="toy score fits' steps (default: the library's, 16000)")
    p.add_argument("--digits", action="store_true",
                   help="the digits part instead of the toys")
    p.add_argument("--digits-steps", type=int, default=None,
                   help="steps of each digits score and diffusion fit (default 4000, --quick "
                        "40; library: 16000 / 8000)")
    p.add_argument("--flow-steps", type=int, default=None,
                   help="steps of the digits flow (default 1000, --quick 10; the library's "
                        "default: 3000)")
    p.add_argument("--n-train", type=int, default=None,
                   help="toy training rows (default 4000, --quick 400)")
    p.add_argument("--n-heldout", type=int, default=None,
                   help="toy held-out rows (default 1000, --quick 200)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes (hidden (32, 32), few steps) for a smoke run; the size "
                        "flags given win over its defaults")
    p.add_argument("--plot", default=None,
                   help="PNG of draws per sampler (digits: *_digits.png next to it)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _arch(args) -> dict:
    return {"hidden": (32, 32)} if args.quick else {}


#: the sizes of a flag left out (None: the library's default; per_level has no flag),
#: and under --quick
SIZES = {"n_train": 4000, "n_heldout": 1000, "num_steps": None, "per_level": 100,
         "digits_steps": 4000, "vae_steps": 5000, "flow_steps": 1000}
QUICK_SIZES = {"n_train": 400, "n_heldout": 200, "num_steps": 100, "per_level": 5,
               "digits_steps": 40, "vae_steps": 40, "flow_steps": 10}


def _sizes(args):
    """(toy n_train, toy n_heldout, toy fit steps, Langevin steps per level,
    digits score-and-diffusion / VAE / flow steps): each size flag as given, else its
    default (:data:`QUICK_SIZES` under --quick)."""
    default = QUICK_SIZES if args.quick else SIZES
    size = {k: default[k] if getattr(args, k, None) is None else getattr(args, k)
            for k in default}
    return (size["n_train"], size["n_heldout"], size["num_steps"], size["per_level"],
            (size["digits_steps"], size["vae_steps"], size["flow_steps"]))


def _default_steps() -> int:
    return pgm.ScoreModel.engines["dsm"].Options.num_steps


def _steps(options: dict, per_level: int) -> dict:
    """``steps_per_level`` for the samplers that take it (the ODE adapts its own steps)."""
    return {} if options.get("sampler") == "ode" else {"steps_per_level": per_level}


def _budget(steps) -> dict:
    return {} if steps is None else {"num_steps": steps}


def _mmd(draws, heldout, bandwidth) -> dict:
    m = metrics.mmd(draws, heldout, bandwidth=bandwidth)
    return {"mmd2": m.estimate, "mmd2_se": m.stderr, "mmd2_biased": m.biased}


# ------------------------------------------------------------------ modes and squares
def _histogram_scores(counts: torch.Tensor, weights: torch.Tensor) -> dict:
    """Modes covered, max |share - weight| and KL(shares || weights) of a histogram."""
    counts = counts.double()
    total = counts.sum()
    if total == 0:
        return {"covered": 0, "max_share_err": math.nan, "reverse_kl": math.nan}
    p = counts / total
    kl = torch.where(p > 0, p * (p / weights).log(), torch.zeros_like(p)).sum()
    return {"covered": int((counts > 0).sum()),
            "max_share_err": float((p - weights).abs().max()),
            "reverse_kl": float(kl)}


def square_index(truth, x: torch.Tensor) -> torch.Tensor:
    """The dark square of the checkerboard each row lies in, 0..7, or -1 outside."""
    inside = torch.isfinite(truth.log_prob(x))
    cell = torch.floor(x + 2.0)  # (i, j) of the 4 x 4 board
    match = (cell.unsqueeze(1) == (truth.corners + 2.0).unsqueeze(0)).all(-1)  # (N, 8)
    k = match.float().argmax(-1)
    return torch.where(inside & match.any(-1), k, torch.full_like(k, -1))


def coverage(name: str, truth, x: torch.Tensor) -> dict:
    """``quality`` (eight_gaussians: share within 3 sd of a centre; checkerboard: share
    inside a dark square) and the histogram of those draws over the 8 modes / squares
    against the true 1/8 each: modes covered, max |share - 1/8|, reverse KL."""
    uniform = torch.full((8,), 1 / 8, dtype=torch.float64)
    if name == "checkerboard":
        k = square_index(truth, x)
        counts = torch.bincount(k[k >= 0], minlength=8)
        return {"quality": (k >= 0).double().mean().item(),
                **_histogram_scores(counts, uniform)}
    cov = metrics.mode_coverage(x, truth.centers, truth.scale)
    out = {"quality": cov.high_quality,
           **_histogram_scores(torch.tensor(cov.counts), uniform)}
    assert out["covered"] == cov.modes_covered
    assert cov.high_quality == 0 or abs(out["reverse_kl"] - cov.reverse_kl) < 1e-6
    return out


def blurred_log_prob(name: str, truth, x: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    """log of the true density convolved with N(0, diag(sd^2)): what the score model's
    ODE density estimates (the data blurred at sigma_min)."""
    x, sd = x.double(), sd.double()
    if name == "checkerboard":
        normal = torch.distributions.Normal(0.0, 1.0)
        a = truth.corners.double()  # (8, 2)
        z = x.unsqueeze(1)  # (N, 1, 2)
        mass = normal.cdf((z - a) / sd) - normal.cdf((z - a - 1) / sd)  # (N, 8, 2)
        return (mass.prod(-1).mean(-1)).log()
    scale = torch.sqrt(truth.scale ** 2 + sd ** 2)
    comp = torch.distributions.Normal(truth.centers.double(), scale).log_prob(x.unsqueeze(1))
    return torch.logsumexp(comp.sum(-1), -1) - math.log(truth.centers.shape[0])


# ---------------------------------------------------------------------------- the toys
def toy(name: str, args):
    """Fit one toy; return (sampler table, likelihood table, draws per sampler, held-out
    rows)."""
    n_train, n_held, steps, per_level, _ = _sizes(args)
    truth = pgm.datasets.toy(name)
    with seeded(args.seed):
        x = truth.sample((n_train,))
        heldout, heldout2 = truth.sample((n_held,)), truth.sample((n_held,))
        model = pgm.ScoreModel(2, **_arch(args))
    t0 = time.perf_counter()
    fit = model.fit(x, method="dsm", seed=args.seed, progress=False, **_budget(steps))
    fit_seconds = time.perf_counter() - t0
    bandwidth = metrics.median_bandwidth(heldout)
    rows, draws = {}, {}
    for label, options in SAMPLERS:
        t0 = time.perf_counter()
        s = fit.sample(n_held, seed=args.seed + 1, **_steps(options, per_level), **options)
        seconds = time.perf_counter() - t0
        rows[label] = {**_mmd(s, heldout, bandwidth), **coverage(name, truth, s),
                       "seconds_per_1000": seconds * 1000 / n_held}
        draws[label] = s
    rows[FLOOR] = {**_mmd(heldout2, heldout, bandwidth), **coverage(name, truth, heldout2),
                   "seconds_per_1000": math.nan}
    samplers = pd.DataFrame.from_dict(rows, orient="index")

    t0 = time.perf_counter()
    ode = fit.probability_flow(heldout)
    t_ode = time.perf_counter() - t0
    sd = fit.model.sigmas[-1] * fit.model.x_scale  # sigma_min on the data's scale
    true = truth.log_prob(heldout)
    blurred = blurred_log_prob(name, truth, heldout, sd)

    def se(v):
        return v.double().std().item() / math.sqrt(len(v))

    lik = pd.DataFrame.from_dict({
        "ode": {"log_prob": ode.log_prob.mean().item(), "se": se(ode.log_prob),
                "nfe": ode.nfe, "seconds": t_ode},
        "true density": {"log_prob": true.mean().item(), "se": se(true), "nfe": math.nan,
                         "seconds": math.nan},
        "true, blurred at sigma_min": {"log_prob": blurred.mean().item(), "se": se(blurred),
                                       "nfe": math.nan, "seconds": math.nan},
    }, orient="index")
    lik["minus_true"] = lik["log_prob"] - true.mean().item()
    sigmas = fit.model.sigmas
    print(f"{name}: ScoreModel(2{', quick' if args.quick else ''}) by dsm, {n_train} "
          f"training rows, {steps or _default_steps()} steps, fit {fit_seconds:.0f} s; "
          f"{len(sigmas)} levels {float(sigmas[0]):.3g} .. {float(sigmas[-1]):.3g} "
          f"(standardized), {per_level} Langevin steps per level; {n_held} draws per "
          f"sampler vs {n_held} held-out rows")
    print(samplers.to_string(float_format=lambda v: f"{v:.5f}"))
    print(f"held-out mean log-likelihood ({n_held} rows; ODE trace {ode.trace}; sigma_min "
          f"on the data's scale {', '.join(f'{v:.4f}' for v in sd.tolist())}):")
    print(lik.to_string(float_format=lambda v: f"{v:.4f}"))
    samplers.attrs.update(fit_seconds=fit_seconds, num_draws=n_held)
    return samplers, lik, draws, heldout


def toy_targets(samplers, lik):
    """The issue's targets: per sampler (a table of True / False) and the ODE's."""
    floor = samplers.loc[FLOOR]
    draws = samplers.drop(index=FLOOR)
    # a share of n draws has binomial sd sqrt(p (1 - p) / n) about p = 1/8
    n = draws["quality"] * samplers.attrs["num_draws"]
    sd = (1 / 8 * 7 / 8 / n.clip(lower=1)) ** 0.5
    per_sampler = pd.DataFrame({
        "all 8 covered": draws["covered"] == 8,
        "shares within 3 sd of 1/8": draws["max_share_err"] <= 3 * sd,
        "mmd2_biased <= 2x floor": draws["mmd2_biased"] <= 2 * floor["mmd2_biased"],
    })
    ode = bool(abs(lik.loc["ode", "minus_true"]) <= 0.2)
    return per_sampler, ode


def weights_demo(args):
    """Plain vs annealed Langevin on the weighted ring (:data:`WEIGHTS`): the share of
    the high-quality draws in the heavy modes (truth 0.8) and the reverse KL of their
    mode histogram from the true weights. Returns (table, draws)."""
    n_train, n_held, steps, per_level, _ = _sizes(args)
    truth = pgm.datasets.toy("eight_gaussians")
    w = torch.tensor(WEIGHTS, dtype=torch.float64)
    with seeded(args.seed):
        k = torch.multinomial(w, n_train, replacement=True)
        x = truth.centers[k] + truth.scale * torch.randn(n_train, 2)
        model = pgm.ScoreModel(2, **_arch(args))
    t0 = time.perf_counter()
    fit = model.fit(x, method="dsm", seed=args.seed, progress=False, **_budget(steps))
    fit_seconds = time.perf_counter() - t0
    runs = [("annealed_langevin", {"sampler": "annealed_langevin"})]
    runs += [(f"langevin, step {'rule' if e is None else f'{e:g}'}",
              {"sampler": "langevin", "step_size": e}) for e in PLAIN_STEPS]
    runs += [("ode", {"sampler": "ode"}), ("pc", {"sampler": "pc"})]
    rows, draws = {}, {}
    heavy = torch.tensor(WEIGHTS) > 1 / 8
    for label, options in runs:
        s = fit.sample(n_held, seed=args.seed + 1, **_steps(options, per_level), **options)
        cov = metrics.mode_coverage(s, truth.centers, truth.scale, weights=w)
        counts = torch.tensor(cov.counts, dtype=torch.float64)
        rows[label] = {"covered": cov.modes_covered, "high_quality": cov.high_quality,
                       "heavy_share": float(counts[heavy].sum() / counts.sum().clamp_min(1)),
                       "reverse_kl": cov.reverse_kl}
        draws[label] = s
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.attrs.update(fit_seconds=fit_seconds)
    print(f"weights: the ring with weights {WEIGHTS[:2]} alternating (heavy share 0.8), "
          f"{n_train} rows, {steps or _default_steps()} steps, fit {fit_seconds:.0f} s; "
          f"{n_held} draws each; reverse KL of the high-quality draws' mode histogram "
          f"from the true weights")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    return table, draws


# ---------------------------------------------------------------------------- digits
def digits(args):
    """Fit the digits models; return (bits/dim table, draws table, class histogram,
    draws on the 0..16 scale ``{label: (500, 64)}``)."""
    from sklearn.linear_model import LogisticRegression

    _, _, _, per_level, (steps, vae_steps, flow_steps) = _sizes(args)
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

    def timed(name, make, method, data, **options):
        with seeded(args.seed):
            model = make()
        t0 = time.perf_counter()
        fits[name] = model.fit(data, method=method, seed=args.seed, progress=False,
                               **options)
        seconds[name] = time.perf_counter() - t0

    # every model on (grey level + u) / 17 in [0, 1), as in diffusion_toy.py
    unit = xd / 17
    timed("score", lambda: pgm.ScoreModel(64, **_arch(args)), "dsm", unit, num_steps=steps)
    timed("conditional", lambda: pgm.ScoreModel(64, context_dim=10, **_arch(args)), "dsm",
          unit, c=onehot[train], num_steps=steps)
    timed("diffusion", lambda: pgm.Diffusion(64, **({"timesteps": 50, "hidden": (32, 32)}
                                                    if quick else {})),
          "mle", unit, num_steps=steps)
    timed("vae", lambda: pgm.VAE(64, 16, likelihood="continuous_bernoulli",
                                 hidden=(32,) if quick else (256,)),
          "mle", unit, num_steps=vae_steps)
    timed("flow", lambda: pgm.Flow(64, **flow_size), "mle", unit, num_steps=flow_steps)

    s, u, d = fits["score"], fits["conditional"], fits["diffusion"]
    held = (x_test + _dequantization(x_test)) / 17
    rows = {"score, ODE": (s, "score"), "score p(x | y), ODE": (u, "conditional"),
            "diffusion, bound": (d, "diffusion"),
            "diffusion, ODE": (d.using(estimator="ode"), "diffusion"),
            "VAE (IWAE)": (fits["vae"], "vae"), "flow": (fits["flow"], "flow")}
    t0 = time.perf_counter()
    table = pgm.compare({k: f for k, (f, _) in rows.items()}, held, c=onehot[test],
                        bin_width=1 / 17, samples=False, loo=False)
    compare_s = time.perf_counter() - t0
    table = table[["model", "log_prob_kind", "bits_per_dim", "heldout_log_prob",
                   "heldout_log_prob_se", "train_log_prob", "num_params"]]
    table.insert(3, "fit_s", [seconds[k] for _, k in rows.values()])

    # draws, rounded down to grey levels, labelled by a logistic regression trained on
    # the real training digits (grey level / 16)
    fit_rows = slice(None, 300 if quick else None)
    clf = LogisticRegression(max_iter=2000).fit((x[train][fit_rows] / 16).numpy(),
                                                y[train][fit_rows].numpy())
    asked = torch.arange(10).repeat_interleave(50)
    c = torch.nn.functional.one_hot(asked, 10).float()
    draws, timing = {}, {}
    for label, make in (
            ("score, annealed Langevin",
             lambda: s.sample(500, steps_per_level=per_level, seed=args.seed + 1)),
            ("score, ODE sampler", lambda: s.sample(500, sampler="ode", seed=args.seed + 1)),
            ("score p(x | y), annealed Langevin",
             lambda: u.sample(500, c=c, steps_per_level=per_level, seed=args.seed + 1)),
            ("diffusion, DDIM 50 steps",
             lambda: d.sample(500, sampler="ddim", steps=min(50, d.model.timesteps),
                              seed=args.seed + 1))):
        t0 = time.perf_counter()
        draws[label] = (17 * make()).floor().clamp(0, 16)  # back to grey levels
        timing[label] = time.perf_counter() - t0
    sources = {"held-out real digits": (x_test, y[test]),
               **{k: (v, asked if "p(x | y)" in k else None) for k, v in draws.items()}}
    stats, hist = {}, {}
    for label, (v, want) in sources.items():
        prob = torch.as_tensor(clf.predict_proba((v / 16).numpy()))
        top, got = prob.max(-1)
        stats[label] = {"n": len(v), "mean_max_prob": top.mean().item(),
                        "confident_0.9": (top >= 0.9).double().mean().item(),
                        "as_asked": math.nan if want is None
                        else (got == want).double().mean().item(),
                        "seconds": timing.get(label, math.nan)}
        hist[label] = (torch.bincount(got, minlength=10).double() / len(v)).tolist()
    quality = pd.DataFrame.from_dict(stats, orient="index")
    classes = pd.DataFrame.from_dict(hist, orient="index")

    print(f"digits: 1500 / 297 rows, dequantized; {steps} steps per score and diffusion "
          f"fit, VAE {vae_steps}, flow {flow_steps}{' (quick)' if quick else ''}; held-out "
          f"bits/dim on (level + u) / 17, bin width 1/17 (uniform over 17 levels: "
          f"{math.log2(17):.3f})")
    print(table.to_string(formatters={"bits_per_dim": "{:.3f}".format,
                                      "fit_s": "{:.1f}".format}))
    print(f"(pgm.compare: {compare_s:.1f} s; the ODE's divergence is Hutchinson's estimate "
          f"above 8 columns, one probe per row; the VAE's log_prob is IWAE with K = 100)")
    print(f"500 draws each ({per_level} Langevin steps per level; the conditional model 50 "
          f"per label), labelled by a logistic regression on the real training digits:")
    print(quality.to_string(float_format=lambda v: f"{v:.3f}"))
    print("share of each source's rows per predicted class:")
    print(classes.to_string(float_format=lambda v: f"{v:.3f}"))
    return table, quality, classes, draws


def _dequantization(x):
    """The u that ``Fit.bits_per_dim`` adds under its default seed 0."""
    with seeded(0):
        return torch.rand_like(x)


# ---------------------------------------------------------------------------- main
def main(args):
    t0 = time.perf_counter()
    if args.digits:
        table, quality, classes, draws = digits(args)
        if args.plot:
            out = Path(args.plot)
            _plot_digits(draws, out.with_name(out.stem + "_digits" + out.suffix))
        print(f"total {time.perf_counter() - t0:.0f} s")
        return table, quality, classes
    samplers, liks, panels = {}, {}, {}
    for name in args.toys:
        samplers[name], liks[name], draws, heldout = toy(name, args)
        per_sampler, ode = toy_targets(samplers[name], liks[name])
        print(f"targets ({name}):")
        print(per_sampler.to_string())
        print(f"ode log-likelihood within 0.2 nats of the true held-out log-density: {ode}")
        panels[name] = (draws, heldout)
    weights = None
    if not args.no_weights:
        weights, draws = weights_demo(args)
        panels["weighted ring"] = (draws, None)
    if args.plot:
        _plot(panels, args.plot)
    print(f"total {time.perf_counter() - t0:.0f} s")
    samplers = pd.concat(samplers, names=["toy", "sampler"]) if samplers else pd.DataFrame()
    liks = pd.concat(liks, names=["toy", "row"]) if liks else pd.DataFrame()
    return samplers, liks, weights


def _plot(panels, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = max(len(d) for d, _ in panels.values())
    fig, axes = plt.subplots(len(panels), ncol, figsize=(2.6 * ncol, 2.6 * len(panels)),
                             squeeze=False)
    for row, (name, (draws, heldout)) in zip(axes, panels.items()):
        for ax in row[len(draws):]:
            ax.axis("off")
        for ax, (label, s) in zip(row, draws.items()):
            if heldout is not None:
                h = heldout.numpy()
                ax.scatter(h[:, 0], h[:, 1], s=2, c="gray", alpha=0.3)
            s = s.numpy()
            ax.scatter(s[:, 0], s[:, 1], s=2, c="tab:orange", alpha=0.5)
            ax.set_xlim(-3.2, 3.2)
            ax.set_ylim(-3.2, 3.2)
            ax.set_title(f"{name}: {label}", fontsize=7)
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
    for ax, (label, s) in zip(axes[0], draws.items()):
        rows = (s / 16).reshape(10, 50, 64)[:, :10].reshape(-1, 64)
        ax.imshow(pgm.datasets.digit_grid(rows, 10).numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(label + (": row k asks for digit k" if "p(x | y)" in label else ""),
                     fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(parse_args())
