"""The demo's GAN section: samples on the ring and the grid against the data, mode
coverage per divergence, and a conditional GAN on digits whose draws a classifier trained
on the real digits labels (:func:`gan_part`, run by :func:`pyro_genmodels.demo.run`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Tuple, Union, cast

import torch

from . import datasets, report
from ._figures import one_thread, png as _png
from ._rng import seeded

#: The divergences fitted on the ring, the Jensen-Shannon game and WGAN-GP. (``gan``, the
#: non-saturating game, differs from ``js`` by a constant in the game: under one seed it
#: trains the same generator, so a third fit would only repeat the first.)
RING_DIVERGENCES = ("js", "wasserstein")


def gan_part(out: Path, quick: bool, progress: bool) -> report.Part:
    """The section, its requirements row and its run line. One torch thread: the networks
    are small (batch 256, width 128), and on a busy 2-core machine two intra-op threads
    made this section 186 s instead of 22 s (measured)."""
    with one_thread():
        return _body(out, quick, progress)


def _body(out: Path, quick: bool, progress: bool) -> report.Part:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import metrics
    from .models import GAN

    budget = {"num_steps": 200} if quick else {}  # full: the divergence's default
    panels: List[Tuple[str, torch.Tensor, torch.Tensor]] = []
    rows: List[str] = []
    used: Dict[str, int] = {}
    covered = ""
    for name, divergences in (("eight_gaussians", RING_DIVERGENCES), ("grid25", ("js",))):
        truth = cast(Union[datasets.EightGaussians, datasets.Grid25], datasets.toy(name))
        with seeded(0):  # on the ring: the 4000 training rows of every 2-D family here
            x = truth.sample((4000 if name == "eight_gaussians" else 10000,))
        for d in divergences:
            with seeded(0):
                model = GAN(2, divergence=d)
            t0 = time.perf_counter()
            fit = model.fit(x, method="adversarial", seed=0, progress=progress, **budget)
            seconds = time.perf_counter() - t0
            fit.save(out / "fits" / f"gan-{name}-{d}")
            s = fit.sample(2500, seed=1)
            cov = metrics.mode_coverage(s, truth.centers, truth.scale)
            if not covered:
                covered = f"{cov.modes_covered} / {cov.num_modes} modes ({d}, {name})"
            panels.append((f"{name}: {d}", x, s))
            used[d] = fit.info["num_steps"]
            rows.append(f"<tr><th>{name}</th><th>{d}</th><td>{x.shape[0]}</td>"
                        f"<td>{cov.modes_covered} / {cov.num_modes}</td>"
                        f"<td>{100 * cov.high_quality:.1f}</td><td>{cov.reverse_kl:.3f}</td>"
                        f"<td>{seconds:.3g}</td></tr>")
    steps = ", ".join(f"{n} for {d}" for d, n in used.items())
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2))
    for ax, (title, x, s) in zip(axes, panels):
        xn, sn = x[:2500].cpu().numpy(), s.cpu().numpy()
        ax.scatter(xn[:, 0], xn[:, 1], s=3, alpha=0.4, c="gray", label="data")
        ax.scatter(sn[:, 0], sn[:, 1], s=3, alpha=0.5, c="tab:orange", label="samples")
        lo, hi = xn.min(0) - 1, xn.max(0) + 1
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_title(title)
    axes[0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    scatter = _png(fig)
    digits, accuracy, digit_steps, seconds = _digits(out, quick, progress)
    body = (f"<p>A generator x = G(z), z ~ N(0, I), fitted by the f-GAN game (or WGAN-GP "
            f"for <code>wasserstein</code>) with the default networks and options, "
            f"generator steps: {steps}"
            f"{' (a quick run: far from converged, expect dropped modes)' if quick else ''}"
            f". A GAN has <b>no density</b>: its draws lie on the image of G, so "
            f"<code>log_prob</code> raises and there is no likelihood to report; it is scored "
            f"by its samples only (and on the ring it is ranked with the density families "
            f"by those). Mode coverage (VEEGAN / PacGAN): a draw is of high quality within "
            f"3 sd of its nearest centre, a mode is covered by at least one; reverse KL of "
            f"the high-quality draws' mode histogram from uniform (0 is even, log K all in "
            f"one mode), 2500 draws. <code>gan</code>, the non-saturating game, is not "
            f"fitted: it differs from <code>js</code> by a constant in the game, so under "
            f"one seed it trains the same generator. The defaults (20000 steps at lr 1e-3 "
            f"with an R1 penalty on the critic) cover all 25 modes of the grid on seeds "
            f"0-2 (docs/gan.md).</p><table><tr><th>data</th><th>divergence</th>"
            f"<th>rows</th><th>modes covered</th><th>high quality %</th><th>reverse KL</th>"
            f"<th>fit_seconds</th></tr>{''.join(rows)}</table>"
            f"<img alt='GAN samples vs data' src='data:image/png;base64,{scatter}'/>"
            f"<h3>Conditional GAN on digits</h3><p>GAN(64, context_dim=10) on the 1797 8x8 "
            f"digits (grey level / 16, <code>standardize=False</code>, Adam lr 1e-3, betas "
            f"(0.5, 0.9), {digit_steps} steps, {seconds:.3g} s), given the one-hot label. Of "
            f"50 draws per label, <b>{100 * accuracy:.1f}%</b> are labelled as asked by a "
            f"logistic regression trained on the real digits (chance: 10%); the classifier "
            f"does not see a lack of variety within a label (mode collapse), the grid "
            f"does.</p><img alt='conditional GAN digits' src='data:image/png;base64,"
            f"{digits}'/>")
    return report.family_part(
        GAN, "GAN (samples only, no density)", body, data="eight_gaussians, grid25, digits",
        trained_by=f"adversarial ({', '.join(used)})",
        held_out=f"n/a (no density); {covered}",
        runs=f"GAN: adversarial ({', '.join(used)}) on eight_gaussians and grid25, and "
             f"conditional on digits")


def _digits(out: Path, quick: bool, progress: bool) -> Tuple[str, float, int, float]:
    """The conditional GAN on digits: (picture, share labelled as asked, steps, seconds).

    Pixels in [0, 1] unstandardized and a faster Adam: 97.6% in 800 steps (the defaults
    need about 6000: rarely inked pixels standardize to outliers of tens of sd; 10% at
    1000, 53% at 3000, 94% at 6000, seed 0; tests/test_gan.py runs them);
    examples/gan_toy.py --digits runs the same fit."""
    import matplotlib.pyplot as plt
    from sklearn.linear_model import LogisticRegression

    from .models import GAN

    x, y = datasets.load_digits()
    x = x / 16
    c = torch.nn.functional.one_hot(y, 10).to(x)
    with seeded(0):
        model = GAN(64, context_dim=10, standardize=False)
    digit_steps = 800 if quick else 4000
    t0 = time.perf_counter()
    fit = model.fit(x, c=c, method="adversarial", seed=0, progress=progress, lr=1e-3,
                    betas=(0.5, 0.9), num_steps=digit_steps)
    seconds = time.perf_counter() - t0
    fit.save(out / "fits" / "gan-digits")
    asked = torch.arange(10).repeat_interleave(50)
    s = fit.sample(500, c=torch.nn.functional.one_hot(asked, 10).to(x), seed=1).clamp(0, 1)
    clf = LogisticRegression(max_iter=2000).fit(x.cpu().numpy(), y.cpu().numpy())
    accuracy = float((torch.as_tensor(clf.predict(s.cpu().numpy())) == asked).float().mean())
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(datasets.digit_grid(s.reshape(10, 50, 64)[:, :10].reshape(-1, 64), 10).numpy(),
              cmap="gray_r", vmin=0, vmax=1)
    ax.set_title("conditional GAN: row k asks for digit k")
    ax.axis("off")
    fig.tight_layout()
    return _png(fig), accuracy, digit_steps, seconds


__all__ = ["RING_DIVERGENCES", "gan_part"]
