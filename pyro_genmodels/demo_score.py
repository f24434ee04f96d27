"""The demo's score-model section: the learned score field as arrows over the true
density, samples by each sampler (plain Langevin next to annealed Langevin), and the ODE
likelihood against the truth (:func:`score_part`, run by
:func:`pyro_genmodels.demo.run`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Tuple, cast

import torch

from . import datasets, report
from ._figures import one_thread, png as _png
from ._rng import seeded

if TYPE_CHECKING:
    from .models.score_fit import ScoreFit


def score_part(out: Path, quick: bool, progress: bool) -> report.Part:
    """The section, its requirements row and its run line. One torch thread, as the GAN
    and diffusion sections."""
    from .models import ScoreModel

    with one_thread():
        body, score = _body(out, quick, progress)
    return report.family_part(
        ScoreModel, "ScoreModel (NCSN / VE SDE)", body, data="eight_gaussians",
        trained_by="dsm", held_out=score,
        also_samples_by="Langevin, ODE, predictor-corrector",
        runs="ScoreModel: dsm on eight_gaussians")


def _body(out: Path, quick: bool, progress: bool) -> Tuple[str, str]:
    """The section's HTML, and its held-out score for the requirements table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import metrics
    from .models import ScoreModel

    truth = cast(datasets.EightGaussians, datasets.toy("eight_gaussians"))
    with seeded(0):
        x, held, held2 = truth.sample((4000,)), truth.sample((1000,)), truth.sample((1000,))
    budget = {"num_steps": 400} if quick else {}  # full: the default 16000
    with seeded(0):
        model = ScoreModel(2)
    t0 = time.perf_counter()
    fit = cast("ScoreFit", model.fit(x, method="dsm", seed=0, progress=progress, **budget))
    seconds = time.perf_counter() - t0
    fit.save(out / "fits" / "score-eight_gaussians")
    n = 300 if quick else 1000
    floor = metrics.mmd(held[:n], held2[:n])
    rows, panels = [], []
    kw: Dict[str, Any]
    for label, kw in (("annealed Langevin", {}), ("plain Langevin (no annealing)",
                                                 {"sampler": "langevin"}),
                      ("probability-flow ODE", {"sampler": "ode"}),
                      ("predictor-corrector", {"sampler": "pc"})):
        if quick and kw.get("sampler") != "ode":
            kw = {**kw, "steps_per_level": 20}
        t0 = time.perf_counter()
        s = fit.sample(n, seed=1, **kw)
        took = time.perf_counter() - t0
        mmd = metrics.mmd(s, held[:n])
        cov = metrics.mode_coverage(s, truth.centers, truth.scale)
        rows.append(f"<tr><th>{label}</th><td>{mmd.estimate:.5f} ± {mmd.stderr:.5f}</td>"
                    f"<td>{cov.modes_covered} / 8</td><td>{100 * cov.high_quality:.1f}</td>"
                    f"<td>{cov.reverse_kl:.3f}</td><td>{took:.3g}</td></tr>")
        panels.append((label, s))
    k = 100 if quick else 500
    flow = fit.probability_flow(held[:k])
    true_ll = float(truth.log_prob(held[:k].double()).mean())

    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(3.2 * (1 + len(panels)), 3.2))
    g = torch.linspace(-3, 3, 200)
    grid = torch.cartesian_prod(g, g)
    dens = truth.log_prob(grid.double()).exp().reshape(200, 200).T.numpy()
    axes[0].imshow(dens, extent=(-3, 3, -3, 3), origin="lower", cmap="Greys")
    a = torch.linspace(-2.8, 2.8, 17)
    pts = torch.cartesian_prod(a, a)
    sc = fit.score(pts, sigma=0.3)
    sc = sc / sc.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    axes[0].quiver(pts[:, 0], pts[:, 1], sc[:, 0], sc[:, 1], color="tab:red", width=0.004)
    axes[0].set_title("learned score at sigma 0.3 (unit arrows)", fontsize=9)
    for ax, (title, s) in zip(axes[1:], panels):
        ax.scatter(held[:, 0], held[:, 1], s=3, alpha=0.4, c="gray")
        ax.scatter(s[:, 0], s[:, 1], s=3, alpha=0.5, c="tab:green")
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.set_xlim(-3.2, 3.2)
        ax.set_ylim(-3.2, 3.2)
    fig.tight_layout()
    steps = budget.get("num_steps", ScoreModel.engines["dsm"].Options.num_steps)
    score = (f"{float(flow.log_prob.mean()):.4g} (estimate, probability-flow ODE, on {k} "
             f"held-out rows)")
    return (f"<p><code>ScoreModel(2)</code>: a "
            f"noise-conditional score network over 10 levels from the largest pairwise "
            f"distance ({fit.info['sigmas'][0]:.2f} standardized units) down to 0.01, "
            f"trained by denoising score matching ({steps} steps, {seconds:.3g} s"
            f"{'; a quick run' if quick else ''}). It never normalizes a density: it "
            f"samples by Langevin dynamics on the learned score. Plain Langevin at the "
            f"smallest level is what annealing fixes. MMD^2 to {n} held-out points (noise "
            f"floor {floor.estimate:.5f} ± {floor.stderr:.5f}) and mode coverage.</p>"
            f"<table><tr><th>sampler</th><th>MMD^2</th><th>modes</th><th>high quality %"
            f"</th><th>reverse KL of the mode histogram</th><th>seconds</th></tr>"
            f"{''.join(rows)}</table><img alt='score field and samples' "
            f"src='data:image/png;base64,{_png(fig)}'/><p>Held-out log-likelihood of {k} "
            f"rows through the probability-flow ODE (kind <i>estimate</i>, {flow.nfe} "
            f"function evaluations): <b>{float(flow.log_prob.mean()):.3f}</b>; the true "
            f"density: <b>{true_ll:.3f}</b> (the model's is the data's blurred at sigma "
            f"0.01).</p>"), score


__all__ = ["score_part"]
