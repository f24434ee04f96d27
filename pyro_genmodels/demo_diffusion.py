"""The demo's diffusion section: samples by each sampler on the ring, the bound next to
the probability-flow likelihood and the truth, and conditional digits with classifier-free
guidance (:func:`diffusion_part`, run by :func:`pyro_genmodels.demo.run`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Tuple, cast

import torch

from . import datasets, report
from ._figures import one_thread, png as _png
from ._rng import seeded

if TYPE_CHECKING:
    from .models.diffusion_fit import DiffusionFit


def diffusion_part(out: Path, quick: bool, progress: bool) -> report.Part:
    """The section, its requirements row and its run line. One torch thread, as the GAN
    section (small networks)."""
    from .models import Diffusion

    with one_thread():
        ring, score = _ring(out, quick, progress)
        body = ring + _digits(out, quick, progress)
    return report.family_part(
        Diffusion, "Diffusion (DDPM)", body, data="eight_gaussians, digits",
        trained_by="mle", held_out=score, also_samples_by="DDIM, probability-flow ODE",
        runs="Diffusion: mle on eight_gaussians, and conditional on digits")


def _ring(out: Path, quick: bool, progress: bool) -> Tuple[str, str]:
    """The ring's HTML, and its held-out score for the requirements table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import metrics
    from .models import Diffusion

    truth = datasets.toy("eight_gaussians")
    with seeded(0):
        x, held, held2 = truth.sample((4000,)), truth.sample((1000,)), truth.sample((1000,))
    budget = {"num_steps": 400} if quick else {}  # full: the default 8000
    with seeded(0):
        model = Diffusion(2)
    t0 = time.perf_counter()
    fit = cast("DiffusionFit", model.fit(x, method="mle", seed=0, progress=progress, **budget))
    seconds = time.perf_counter() - t0
    fit.save(out / "fits" / "diffusion-eight_gaussians")
    n = 300 if quick else 1000
    floor = metrics.mmd(held[:n], held2[:n])
    rows, panels = [], []
    for label, kw in (("ancestral (1000 steps)", {}),
                      ("DDIM, 20 steps", {"sampler": "ddim", "steps": 20}),
                      ("probability-flow ODE", {"sampler": "ode"})):
        t0 = time.perf_counter()
        s = fit.sample(n, seed=1, **kw)
        took = time.perf_counter() - t0
        mmd = metrics.mmd(s, held[:n])
        lp = float(truth.log_prob(s.double()).mean())
        rows.append(f"<tr><th>{label}</th><td>{mmd.estimate:.5f} ± {mmd.stderr:.5f}</td>"
                    f"<td>{lp:.3f}</td><td>{took:.3g}</td></tr>")
        panels.append((label, s))
    k = 100 if quick else 500
    rows_ll = held[:k]
    bound = float(fit.log_prob(rows_ll).mean())
    flow = fit.probability_flow(rows_ll)
    true_ll = float(truth.log_prob(rows_ll.double()).mean())
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2))
    xs = held.cpu().numpy()
    for ax, (title, s) in zip(axes, panels):
        sn = s.cpu().numpy()
        ax.scatter(xs[:, 0], xs[:, 1], s=3, alpha=0.4, c="gray", label="data")
        ax.scatter(sn[:, 0], sn[:, 1], s=3, alpha=0.5, c="tab:blue", label="samples")
        ax.set_xlim(-3.5, 3.5)
        ax.set_ylim(-3.5, 3.5)
        ax.set_title(title)
    axes[0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    steps = budget.get("num_steps", Diffusion.engines["mle"].Options.num_steps)
    score = (f"{bound:.4g} (bound, eight_gaussians); {float(flow.log_prob.mean()):.4g} "
             f"(estimate, probability-flow ODE); on {k} held-out rows")
    return (f"<p><code>Diffusion(2)</code> (T = 1000, cosine "
            f"schedule, the preconditioned (256, 256, 256) noise predictor) fitted by "
            f"<code>mle</code> on {x.shape[0]} points of eight_gaussians, {steps} steps "
            f"of the epsilon MSE ({seconds:.3g} s"
            f"{'; a quick run, far from converged' if quick else ''}). Samples by each "
            f"sampler, scored against {n} held-out points: MMD^2 (noise floor of two "
            f"held-out halves: {floor.estimate:.5f} ± {floor.stderr:.5f}) and the true "
            f"mean log-density of the draws (held-out data: "
            f"{float(truth.log_prob(held.double()).mean()):.3f}).</p>"
            f"<table><tr><th>sampler</th><th>MMD^2 to held-out</th><th>true log p of the "
            f"draws</th><th>seconds</th></tr>{''.join(rows)}</table>"
            f"<img alt='diffusion samples by sampler' src='data:image/png;base64,"
            f"{_png(fig)}'/>"
            f"<p>Held-out log-likelihood of {k} rows, two ways: the DDPM variational bound "
            f"over all 1000 steps (<code>fit.log_prob</code>, kind <i>bound</i>): "
            f"<b>{bound:.3f}</b>; the probability-flow ODE (<code>fit.probability_flow"
            f"</code>, kind <i>estimate</i>, {flow.trace} divergence, {flow.nfe} function "
            f"evaluations): <b>{float(flow.log_prob.mean()):.3f}</b>; the true density: "
            f"<b>{true_ll:.3f}</b>. The bound is below by construction; the fixed reverse "
            f"variances cost most of its gap (docs/diffusion.md).</p>"), score


def _digits(out: Path, quick: bool, progress: bool) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.linear_model import LogisticRegression

    from .models import Diffusion

    x, y = datasets.load_digits()
    with seeded(0):
        u = (x + torch.rand_like(x)) / 17  # dequantized grey levels in [0, 1)
    c = torch.nn.functional.one_hot(y, 10).to(x)
    with seeded(0):
        model = Diffusion(64, context_dim=10, standardize=False)
    steps = 300 if quick else 4000
    t0 = time.perf_counter()
    fit = cast("DiffusionFit", model.fit(u, c=c, method="mle", seed=0, progress=progress,
                                         num_steps=steps))
    seconds = time.perf_counter() - t0
    fit.save(out / "fits" / "diffusion-digits")
    clf = LogisticRegression(max_iter=2000).fit((x / 16).cpu().numpy(), y.cpu().numpy())
    asked = torch.arange(10).repeat_interleave(10 if quick else 30)
    onehot = torch.nn.functional.one_hot(asked, 10).to(x)
    rows, grid = [], None
    for w in (0.0, 1.0, 3.0):
        s = fit.sample(len(asked), sampler="ddim", steps=50, c=onehot, guidance=w, seed=1)
        grey = (s * 17 - 0.5).clamp(0, 16) / 16
        acc = float((torch.as_tensor(clf.predict(grey.cpu().numpy())) == asked).float().mean())
        rows.append(f"<tr><th>{w:g}</th><td>{100 * acc:.1f}</td></tr>")
        if w == 1.0:
            per = len(asked) // 10
            grid = grey.reshape(10, per, 64)[:, :min(per, 10)].reshape(-1, 64)
    fig, ax = plt.subplots(figsize=(4, 4))
    assert grid is not None  # drawn at w = 1
    ax.imshow(datasets.digit_grid(grid, min(len(asked) // 10, 10)).numpy(), cmap="gray_r",
              vmin=0, vmax=1)
    ax.set_title("guidance w = 1: row k asks for digit k")
    ax.axis("off")
    fig.tight_layout()
    return (f"<h3>Conditional diffusion on digits, classifier-free guidance</h3><p>"
            f"<code>Diffusion(64, context_dim=10, standardize=False)</code> on the "
            f"{x.shape[0]} 8x8 digits, dequantized (grey level + U[0, 1)) / 17, given the "
            f"one-hot label, condition dropped for 10% of the rows in training ({steps} "
            f"steps, {seconds:.3g} s). Draws by DDIM (50 steps) with guidance w, "
            f"(1 + w) eps(x, c) - w eps(x): the share that a logistic regression trained "
            f"on the real digits labels as asked (chance 10%).</p><table><tr><th>w</th>"
            f"<th>labelled as asked, %</th></tr>{''.join(rows)}</table>"
            f"<img alt='conditional diffusion digits' src='data:image/png;base64,"
            f"{_png(fig)}'/>")


__all__ = ["diffusion_part"]
