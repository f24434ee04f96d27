"""The demo's ranking: every family that scores 2-D rows, on the same held-out rows of
eight_gaussians (:func:`ranking_part`, run by :func:`pyro_genmodels.demo.run` once the
demo's own ring fits are saved).

Every fit ranked here was trained on the same 4000 rows (:func:`ring`): the demo's flow,
energy, diffusion, score and GAN fits are read back from their saved directories (so this
also exercises ``pgm.load``), and a Gaussian, an 8-component mixture, PPCA and a VAE are
fitted here by MLE.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Tuple

import torch

from . import datasets, report
from ._rng import seeded
from .base import Fit
from .compare import compare

#: The saved demo fits the ranking reads, by family, as directories under ``fits/``
#: (of several, the one with the best held-out log-likelihood is ranked).
SAVED = {"Flow": ("flow-mle", "flow-map"), "EnergyModel": ("energy-mle", "energy-map"),
         "Diffusion": ("diffusion-eight_gaussians",), "ScoreModel": ("score-eight_gaussians",),
         "GAN": ("gan-eight_gaussians-js",)}


#: the ranking VAE's fixed observation sd (data units)
VAE_OBS_SCALE = 0.2


def ring() -> Tuple[torch.Tensor, torch.Tensor, datasets.EightGaussians]:
    """The demo's 2-D data: 4000 training and 1000 held-out rows of eight_gaussians drawn
    under seed 0, and the true distribution. Every ring fit of the demo trains on these
    rows (the diffusion and score sections draw the same ones, then more)."""
    truth = datasets.toy("eight_gaussians")
    assert isinstance(truth, datasets.EightGaussians)
    with seeded(0):
        return truth.sample((4000,)), truth.sample((1000,)), truth


def ranking_part(out: Path, quick: bool, progress: bool) -> report.Part:
    """The section: the fits ranked by held-out log p (with its kind), the true KL and
    the sample-based scores (MMD, C2ST), each on the same 1000 held-out rows."""
    from .io import load
    from .models import PPCA, VAE, Gaussian, GaussianMixture

    x, heldout, truth = ring()
    rows = set(map(tuple, x.tolist()))
    fits: Dict[str, Fit] = {}
    for family, runs in SAVED.items():
        found = {run: load(out / "fits" / run) for run in runs}
        for run, fit in found.items():  # all of x, or x less what the fit held out itself
            if fit.data is None or not set(map(tuple, fit.data.cpu().tolist())) <= rows:
                raise RuntimeError(f"the saved demo fit {run} was not trained on the ring's "
                                   f"4000 rows: its row would not be comparable")
        if found[runs[0]].log_prob_kind == "none":
            best = runs[0]
        else:
            scores = {run: float(fit.log_prob(heldout).mean()) for run, fit in found.items()}
            best = max(scores, key=lambda run: scores[run])
        fits[f"{family} ({found[best].method}, {best})"] = found[best]
    steps: Dict[str, Any] = {"num_steps": 300 if quick else 1000}
    with seeded(0):  # a fixed decoder sd: with a learned one the decoder ignores z
        # here (posterior collapse) and the VAE is the Gaussian, to 4 digits (measured)
        vae = VAE(2, 2, likelihood="gaussian", hidden=(128, 128), obs_scale=VAE_OBS_SCALE)
    fresh = {"Gaussian (mle)": (Gaussian(2), steps),
             "GaussianMixture, 8 (mle)": (GaussianMixture(2, 8), {}),
             "PPCA, 1 (mle)": (PPCA(2, 1), steps),
             f"VAE, latent 2, sd {VAE_OBS_SCALE:g} (mle)": (vae, {"num_steps": 500 if quick else 3000})}
    t0 = time.perf_counter()
    for label, (model, opts) in fresh.items():
        fits[label] = model.fit(x, method="mle", seed=0, progress=progress, **opts)
    seconds = time.perf_counter() - t0
    table = compare(fits, heldout, truth=truth, loo=False, train=False)
    table = table.sort_values("heldout_log_prob", ascending=False, na_position="last")
    keep = [c for c in ("heldout_log_prob", "heldout_log_prob_se", "log_prob_kind", "true_kl",
                        "true_kl_se", "mmd", "mmd_se", "c2st", "c2st_se", "num_params")
            if c in table]
    body = (f"<p>{x.shape[0]} training and {heldout.shape[0]} held-out rows of "
            f"eight_gaussians, the same for every row: the demo's own fits read back from "
            f"<code>fits/</code> (of a family's MLE and MAP, the better one on held-out "
            f"log p; the energy model trains on 90% of them, the other 10% are its "
            f"early-stopping check), and four families fitted here by MLE "
            f"({seconds:.3g} s). Ranked by "
            f"held-out log p, which is comparable across rows only as its kind allows: "
            f"<code>exact</code> is the density, <code>bound</code> a lower bound on it, "
            f"<code>estimate</code> a consistent estimate (importance sampling for the VAE, "
            f"the probability-flow ODE for the score model, annealed importance sampling "
            f"of log Z for the energy model). A GAN has no density: it "
            f"is last and scored by its samples only. MMD^2 (0: the same distribution) and "
            f"C2ST (0.5: indistinguishable) score 1000 draws of each fit against the "
            f"held-out rows. The VAE's decoder sd is fixed at {VAE_OBS_SCALE:g}: with a "
            f"learned one its decoder ignores z on these data (posterior collapse) and it "
            f"is the Gaussian to 4 digits.</p>" + report.table(report.compact(table[keep])))
    title = "Every family on the same held-out data"
    return report.Part(report.Section(report.slug(title), title, body), {},
                       [f"ranking: {', '.join(fits)} on {x.shape[0]} x 2 rows of "
                        f"eight_gaussians"])


__all__ = ["SAVED", "VAE_OBS_SCALE", "ranking_part", "ring"]
