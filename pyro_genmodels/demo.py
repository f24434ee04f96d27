"""The main job: fit the registered models on built-in data, write an HTML report.

``pyro-genmodels demo [--quick] [--out DIR]`` writes ``DIR/index.html``: for every density
family, the comparison table (held-out log-likelihood, LOO, true KL), density heat maps
and samples against the data, and the ArviZ summary of the NUTS fit; for images, a VAE
on digits (IWAE estimate, samples, reconstructions); for text, n-grams
next to a GRU on first names (held-out nats per character, generated names); for GANs
(no density), samples on the ring and the grid, mode coverage per divergence and a
conditional GAN on digits; for diffusion, samples by each sampler, the bound next to the
ODE likelihood, and guided conditional digits; for score models, the learned score
field, samples by each sampler (plain against annealed Langevin) and the ODE likelihood. The saved fits go under ``DIR/fits/``.
"""

from __future__ import annotations

import base64
import html
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union, cast

import pandas as pd
import torch

from . import datasets, report
from .base import Fit, GenerativeModel
from ._figures import one_thread, png as _png, png_bytes as _png_bytes
from .compare import compare
from .demo_diffusion import diffusion_section
from .demo_score import score_section
from ._rng import seeded
from .models import (PPCA, VAE, AutoregressiveModel, EnergyModel, Flow, Gaussian,
                     GaussianMixture, NGram)
from .models.vae import VAEFit

#: method -> fit options, full and quick
_BUDGETS: Dict[str, Tuple[Optional[dict], Optional[dict]]] = {
    "mle": ({"num_steps": 1500}, {"num_steps": 500}),
    "map": ({"num_steps": 1500}, {"num_steps": 500}),
    "vi": ({"num_steps": 3000}, {"num_steps": 1000}),
    "nuts": ({"num_samples": 500, "warmup_steps": 300, "num_chains": 2},
             {"num_samples": 200, "warmup_steps": 150, "num_chains": 2}),
}


Case = Tuple[GenerativeModel, torch.Tensor, torch.Tensor,
             Optional[torch.distributions.Distribution]]


def _gaussian_case(quick: bool) -> Case:
    n = 300 if quick else 1000
    x, truth = datasets.correlated_gaussian(n, dim=2, seed=0)
    heldout, _ = datasets.correlated_gaussian(1000, dim=2, seed=1)
    return Gaussian(2), x, heldout, truth


def _flow_case(quick: bool) -> Case:
    truth = datasets.toy("eight_gaussians")
    with seeded(0):
        x, heldout = truth.sample((1000 if quick else 4000,)), truth.sample((1000,))
        model = Flow(2, transform="nsf")
    return model, x, heldout, truth


def _mixture_case(quick: bool) -> Case:
    x, _, truth = datasets.clusters(300 if quick else 1000, k=4, seed=0)
    heldout, _, _ = datasets.clusters(1000, k=4, seed=1)
    return GaussianMixture(2, 4), x, heldout, truth


def _ppca_case(quick: bool) -> Case:
    x, truth = datasets.correlated_gaussian(300 if quick else 1000, dim=2, seed=0)
    heldout, _ = datasets.correlated_gaussian(1000, dim=2, seed=1)
    return PPCA(2, 1), x, heldout, truth


def _energy_case(quick: bool) -> Case:
    truth = datasets.toy("eight_gaussians")
    with seeded(0):
        x, heldout = truth.sample((1000 if quick else 4000,)), truth.sample((1000,))
        # the default noise-conditional energy; the quick run a narrower one
        model = EnergyModel(2, hidden=(64, 64, 64)) if quick else EnergyModel(2)
    return model, x, heldout, truth


#: registry name -> builder of (model, train, heldout, true distribution or None);
#: new families add their case here
DEMO_CASES: Dict[str, Callable[[bool], Case]] = {
    "gaussian": _gaussian_case,
    "gaussian_mixture": _mixture_case,
    "ppca": _ppca_case,
    "flow": _flow_case,
    "energy": _energy_case,
}

#: per-case budget overrides (full, quick); ``None`` skips the method in that run
_CASE_BUDGETS: Dict[str, Dict[str, Tuple[Optional[dict], Optional[dict]]]] = {
    # NUTS sums the enumerated component out in every gradient: minutes, so full runs only
    "gaussian_mixture": {"nuts": ({"num_samples": 200, "warmup_steps": 200,
                                   "num_chains": 2}, None)},
    # multilevel score matching: its own defaults in full runs, 300 steps in quick ones
    "energy": {"mle": ({}, {"num_steps": 300}), "map": ({}, {"num_steps": 300})},
}


def _plot_png(x: torch.Tensor, fits: Dict[str, Fit], title: str) -> bytes:
    """Per fit: the learned density as a heat map (2-D data, top row) and samples against
    the data (bottom row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 2 if x.shape[1] == 2 else 1
    fig, axes = plt.subplots(rows, len(fits), figsize=(3.4 * len(fits), 3.4 * rows),
                             sharex=True, sharey=True, squeeze=False)
    lo, hi = x.min(0).values.cpu(), x.max(0).values.cpu()
    lo, hi = lo - 0.15 * (hi - lo), hi + 0.15 * (hi - lo)
    for j, (name, fit) in enumerate(fits.items()):
        if rows == 2:
            gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 150),
                                    torch.linspace(lo[1], hi[1], 150), indexing="xy")
            grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1).to(x)
            dens = fit.log_prob(grid).exp().reshape(gx.shape).cpu()
            axes[0][j].imshow(dens, origin="lower", extent=(lo[0], hi[0], lo[1], hi[1]),
                              aspect="auto", cmap="viridis")
            axes[0][j].set_title(f"{title} {name}: density")
        ax = axes[-1][j]
        s = fit.sample(min(x.shape[0], 1000), seed=0).cpu()
        ax.scatter(x[:1000, 0].cpu(), x[:1000, 1].cpu(), s=3, alpha=0.4, c="gray",
                   label="data")
        ax.scatter(s[:, 0], s[:, 1], s=3, alpha=0.5, c="tab:orange", label="samples")
        ax.set_title(f"{title} {name}: samples")
    axes[-1][0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    return _png_bytes(fig)


def _digits_section(out: Path, quick: bool, progress: bool) -> str:
    """Images: a VAE (Bernoulli decoder, amortized encoder) on binarized digits, its
    held-out IWAE estimate and ELBO next to a factorized Bernoulli, samples and
    reconstructions."""
    import matplotlib

    matplotlib.use("Agg")

    x, _ = datasets.load_digits(binarize=True)
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    train, test = x[perm[:1500]], x[perm[1500:]]
    with seeded(0):
        model = VAE(64, 8, likelihood="bernoulli", hidden=(128,))
    t0 = time.perf_counter()
    fit = cast(VAEFit, model.fit(train, method="mle", seed=0, progress=progress,
                                 num_steps=1500 if quick else 5000))
    seconds = time.perf_counter() - t0
    fit.save(out / "fits" / "vae-mle")
    iwae = fit.log_prob(test, num_particles=100 if quick else 500).mean().item()
    elbo = fit.elbo(test).mean().item()
    p = train.mean(0).clamp(1e-3, 1 - 1e-3)
    base = (test * p.log() + (1 - test) * (1 - p).log()).sum(-1).mean().item()
    samples = fit.sample(40, seed=0, mean=True)
    fig = datasets.digits_figure(samples, test[:20], fit.reconstruct(test[:20]),
                                 title="VAE samples (decoded means)")
    png = _png(fig)
    return (f"<h2>VAE (digits)</h2><p>{train.shape[0]} binarized 8x8 digits, "
            f"{test.shape[0]} held out; latent 8, one hidden layer of 128, "
            f"{seconds:.3g} s of training. log p(x) is an importance-weighted estimate "
            f"(log_prob_kind = {fit.log_prob_kind!r}).</p><table><tr><th>held-out nats per "
            f"image</th><th>IWAE estimate</th><th>ELBO (bound)</th><th>factorized "
            f"Bernoulli</th></tr><tr><th>mean</th><td>{iwae:.3f}</td><td>{elbo:.3f}</td>"
            f"<td>{base:.3f}</td></tr></table><img alt='VAE samples and reconstructions' "
            f"src='data:image/png;base64,{png}'/>")


def _names_section(out: Path, quick: bool, progress: bool) -> str:
    """Text: add-one n-grams (closed-form MAP) next to a GRU (MAP = weight decay) on the
    shipped first names, by held-out nats per character, and names each one generates."""
    names = datasets.load_names()
    perm = torch.randperm(len(names), generator=torch.Generator().manual_seed(0)).tolist()
    cut = int(0.9 * len(names))
    train, test = [names[i] for i in perm[:cut]], [names[i] for i in perm[cut:]]
    chars = sum(len(s) + 1 for s in test)
    fits, times = {}, {}
    models = {"bigram": NGram(2, prior_concentration=2.0),
              "trigram": NGram(3, prior_concentration=2.0),
              "gru": AutoregressiveModel(network="gru", hidden_size=128, prior_scale=0.3)}
    for name, model in models.items():
        t0 = time.perf_counter()
        opts = {} if name != "gru" else {"num_steps": 200 if quick else 800, "batch_size": 128}
        fits[name] = model.fit(train, method="map", seed=0, progress=progress, **opts)
        times[name] = time.perf_counter() - t0
        fits[name].save(out / "fits" / f"names-{name}")
    rows = []
    for name, fit in fits.items():
        nll = -fit.log_prob(test).sum().item() / chars
        plain = ", ".join(cast(List[str], fit.sample(8, seed=0)))  # a text model's strings
        prompted = ", ".join(cast(List[str], fit.sample(8, prefix="ma", seed=0)))
        rows.append(f"<tr><th>{name}</th><td>{times[name]:.3g}</td><td>{nll:.4f}</td>"
                    f"<td style='text-align:left'>{html.escape(plain)}</td>"
                    f"<td style='text-align:left'>{html.escape(prompted)}</td></tr>")
    return (f"<h2>NGram and AutoregressiveModel (names)</h2><p>{len(train)} training names, "
            f"{len(test)} held out; p(x) = prod_i p(x_i | x_&lt;i), exact. n-grams: "
            f"Dirichlet(2) MAP = add-one smoothing; GRU: MAP with a N(0, 0.3^2) weight "
            f"prior.</p><table><tr><th>model</th><th>fit_seconds</th>"
            f"<th>heldout nats/char</th><th>samples</th><th>samples after 'ma'</th></tr>"
            f"{''.join(rows)}</table>" + report.loss_curves(fits, "names"))


def _gan_section(out: Path, quick: bool, progress: bool) -> str:
    """GANs (no density): samples on the ring and the grid against the data, mode
    coverage per divergence on the ring, and a conditional GAN on digits whose draws a
    classifier trained on the real digits labels. Runs on one thread: the networks are
    small (batch 256, width 128), and on a busy 2-core machine two intra-op threads made
    this section 186 s instead of 22 s (measured)."""
    with one_thread():
        return _gan_section_body(out, quick, progress)


def _gan_section_body(out: Path, quick: bool, progress: bool) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.linear_model import LogisticRegression

    from . import metrics
    from .models import GAN

    budget = {"num_steps": 200} if quick else {}  # full: the divergence's default
    panels, rows, used = [], [], {}
    for name, divergences in (("eight_gaussians", ("js", "gan", "wasserstein")),
                              ("grid25", ("js",))):
        truth = cast(Union[datasets.EightGaussians, datasets.Grid25], datasets.toy(name))
        with seeded(0):
            x = truth.sample((10000,))
        for d in divergences:
            with seeded(0):
                model = GAN(2, divergence=d)
            t0 = time.perf_counter()
            fit = model.fit(x, method="adversarial", seed=0, progress=progress, **budget)
            seconds = time.perf_counter() - t0
            fit.save(out / "fits" / f"gan-{name}-{d}")
            s = fit.sample(2500, seed=1)
            cov = metrics.mode_coverage(s, truth.centers, truth.scale)
            panels.append((f"{name}: {d}", x, s))
            used[d] = fit.info["num_steps"]
            rows.append(f"<tr><th>{name}</th><th>{d}</th><td>{cov.modes_covered} / "
                        f"{cov.num_modes}</td><td>{100 * cov.high_quality:.1f}</td>"
                        f"<td>{cov.reverse_kl:.3f}</td><td>{seconds:.3g}</td></tr>")
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

    # conditional digits: pixels in [0, 1] unstandardized and a faster Adam, 97.6% in 800
    # steps (the defaults need about 6000: rarely inked pixels standardize to outliers of
    # tens of sd; 10% at 1000, 53% at 3000, 94% at 6000, seed 0; tests/test_gan.py runs
    # them); examples/gan_toy.py --digits runs the same fit
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
    digits_png = _png(fig)
    return (f"<h2>GAN (samples only, no density)</h2><p>A generator x = G(z), z ~ N(0, I), "
            f"fitted by the f-GAN game (or WGAN-GP for <code>wasserstein</code>) on 10000 "
            f"points, default networks and options, generator steps: {steps}"
            f"{' (a quick run: far from converged, expect dropped modes)' if quick else ''}"
            f". A GAN has <b>no density</b>: its draws lie on the image of G, so "
            f"<code>log_prob</code> raises and there is no likelihood to report; it is scored "
            f"by its samples only. Mode coverage (VEEGAN / PacGAN): a draw is of high quality "
            f"within 3 sd of its nearest centre, a mode is covered by at least one; reverse "
            f"KL of the high-quality draws' mode histogram from uniform (0 is even, log K all "
            f"in one mode), 2500 draws. <code>js</code> and <code>gan</code> differ by a "
            f"constant in the game, so under one seed they train the same generator. Their "
            f"defaults (20000 steps at lr 1e-3 with an R1 penalty on the critic) cover all "
            f"25 modes of the grid on seeds 0-2 (docs/gan.md).</p><table><tr><th>data</th><th>divergence</th>"
            f"<th>modes covered</th><th>high quality %</th><th>reverse KL</th>"
            f"<th>fit_seconds</th></tr>{''.join(rows)}</table>"
            f"<img alt='GAN samples vs data' src='data:image/png;base64,{scatter}'/>"
            f"<h3>Conditional GAN on digits</h3><p>GAN(64, context_dim=10) on the "
            f"{x.shape[0]} 8x8 digits (grey level / 16, <code>standardize=False</code>, "
            f"Adam lr 1e-3, betas (0.5, 0.9), {digit_steps} steps, "
            f"{seconds:.3g} s), given the one-hot label. Of 50 draws per label, "
            f"<b>{100 * accuracy:.1f}%</b> are labelled as asked by a logistic regression "
            f"trained on the real digits (chance: 10%); the classifier does not see a lack of "
            f"variety within a label (mode collapse), the grid does.</p>"
            f"<img alt='conditional GAN digits' src='data:image/png;base64,{digits_png}'/>")


def _mle_map_posterior_section(quick: bool, progress: bool) -> str:
    """MLE, MAP and the posterior on little data, where they differ: a Gaussian on 12
    points, the three estimates side by side, and the prior sweep (held-out
    log-likelihood against the prior scale, the MLE and the MAP marked)."""
    import matplotlib

    matplotlib.use("Agg")
    from .compare import prior_sweep

    x, truth = datasets.correlated_gaussian(12, dim=2, seed=0)
    heldout, _ = datasets.correlated_gaussian(1000, dim=2, seed=1)
    scale = 1.0
    steps: Dict[str, Any] = {"num_steps": 500 if quick else 1500}
    fits = {"mle": Gaussian(2).fit(x, method="mle", seed=0, progress=progress, **steps),
            f"map (s = {scale:g})": Gaussian(2, prior_scale=scale).fit(
                x, method="map", seed=0, progress=progress, **steps),
            "nuts": Gaussian(2, prior_scale=scale).fit(
                x, method="nuts", seed=0, progress=progress,
                **_BUDGETS["nuts"][quick] or {})}
    rows = {}
    for name, fit in fits.items():
        loc, cov = fit.params["loc"], fit.params["covariance_matrix"]
        rows[name] = {"loc[0]": float(loc[0]), "loc[1]": float(loc[1]),
                      "var[0]": float(cov[0, 0]), "var[1]": float(cov[1, 1]),
                      "held-out log p": float(fit.log_prob(heldout).mean())}
    rows["truth"] = {"loc[0]": float(truth.loc[0]), "loc[1]": float(truth.loc[1]),
                     "var[0]": float(truth.covariance_matrix[0, 0]),
                     "var[1]": float(truth.covariance_matrix[1, 1]),
                     "held-out log p": float(truth.log_prob(heldout).mean())}
    sweep = prior_sweep(Gaussian(2), x, prior_scales=[0.1, 0.3, 1.0, 3.0, 10.0, 100.0],
                        heldout=heldout, plot=True, seed=0, **steps)
    fig = sweep.attrs["figure"]
    ax = fig.axes[0]
    ax.plot([scale], [rows[f"map (s = {scale:g})"]["held-out log p"]], "r*", ms=12,
            label=f"the MAP above (s = {scale:g})")
    ax.legend(loc="best", fontsize=8)
    return (f"<p>{x.shape[0]} training points of a correlated 2-D Gaussian, 1000 held out. "
            f"MLE maximizes sum log p(x_i | phi) (= minimizes KL(p_data || p_phi)); MAP adds "
            f"log p(phi), and under a Gaussian prior N(0, s<sup>2</sup> I) on phi that is "
            f"exactly the L2 penalty ||phi||<sup>2</sup> / (2 s<sup>2</sup>); NUTS draws "
            f"from the posterior, and its row is the posterior mean and the posterior "
            f"predictive density. With so few points the three differ.</p>"
            + report.table(pd.DataFrame(rows).T)
            + report.image(fig, "held-out log-likelihood of MAP fits against the prior "
                                "scale, with the MLE as a dashed line and the MAP of the "
                                "table as a star"))


def _ranking_section(made: Dict[str, Tuple[Dict[str, Fit], torch.Tensor]], quick: bool,
                     progress: bool) -> str:
    """Every density family on the same held-out data (the flow case's eight_gaussians):
    the demo's flow and energy fits (those whose held-out rows are these), and a
    Gaussian, an 8-component mixture and PPCA fitted by MLE on the same training rows,
    ranked by held-out log-likelihood (with its kind), next to the true KL and the
    sample-based scores."""
    model, x, heldout, truth = _flow_case(quick)
    fits: Dict[str, Fit] = {}
    for name, (case_fits, case_heldout) in made.items():
        if case_heldout.shape == heldout.shape and torch.equal(case_heldout, heldout):
            lp = {m: float(f.log_prob(heldout).mean()) for m, f in case_fits.items()}
            best = max(lp, key=lambda m: lp[m])
            fits[f"{type(case_fits[best].model).__name__} ({best})"] = case_fits[best]
    steps: Dict[str, Any] = {"num_steps": 300 if quick else 1000}
    extra = {"Gaussian (mle)": (Gaussian(2), steps),
             "GaussianMixture, 8 (mle)": (GaussianMixture(2, 8), {}),
             "PPCA, 1 (mle)": (PPCA(2, 1), steps)}
    for label, (m, opts) in extra.items():
        fits[label] = m.fit(x, method="mle", seed=0, progress=progress, **opts)
    table = compare(fits, heldout, truth=truth, loo=False)
    table = table.sort_values("heldout_log_prob", ascending=False)
    keep = [c for c in ("heldout_log_prob", "heldout_log_prob_se", "log_prob_kind", "true_kl",
                        "true_kl_se", "mmd", "c2st", "num_params") if c in table]
    return (f"<p>{x.shape[0]} training and {heldout.shape[0]} held-out points of "
            f"eight_gaussians, the same for every row; ranked by held-out log p. A "
            f"log-likelihood is comparable across rows only as its kind allows: "
            f"<code>exact</code> is the density, <code>estimate</code> a consistent "
            f"estimate of it. MMD and C2ST (0.5: indistinguishable) score the samples.</p>"
            + report.table(report.compact(table[keep])))


def _section_of(html_text: str) -> report.Section:
    """A section written as ``<h2>title</h2>body`` as a :class:`report.Section`."""
    match = re.match(r"\s*<h2>(.*?)</h2>", html_text, re.S)
    if match is None:
        return report.Section(report.slug(html_text[:40]), "section", html_text)
    title = html.unescape(re.sub(r"<[^>]+>", "", match.group(1)))
    return report.Section(report.slug(title), title, html_text[match.end():])


def _say(progress: bool, text: str) -> None:
    """The demo's progress line per family (on stderr, so a redirected page stays clean)."""
    if progress:
        print(f"[demo] {text}", file=sys.stderr, flush=True)


def run(out: str | Path = "demo-out", *, quick: bool = False, progress: bool = True) -> Path:
    """Run the demo and return the path of ``index.html``."""
    import matplotlib

    matplotlib.use("Agg")
    started = time.perf_counter()
    out = Path(out)
    (out / "fits").mkdir(parents=True, exist_ok=True)
    sections: List[report.Section] = []
    needs: Dict[str, Dict[str, str]] = {}
    runs: List[str] = []
    made: Dict[str, Tuple[Dict[str, Fit], torch.Tensor]] = {}
    for name, case in DEMO_CASES.items():
        _say(progress, f"{name} ...")
        t_case = time.perf_counter()
        model, x, heldout, truth = case(quick)
        fits, times = {}, {}
        for method, budgets in {**_BUDGETS, **_CASE_BUDGETS.get(name, {})}.items():
            budget = budgets[quick]
            if method not in model.capabilities.methods or budget is None:
                continue
            t0 = time.perf_counter()
            fits[method] = model.fit(x, method=method, seed=0, progress=progress, **budget)
            times[method] = time.perf_counter() - t0
            fits[method].save(out / "fits" / f"{name}-{method}")
        made[name] = (fits, heldout)
        table = compare(fits, heldout, truth=truth)
        table.insert(1, "fit_seconds", [times[m] for m in table.index])
        family = type(model).__name__
        needs[family] = report.requirements(model, fits, table)
        runs.append(f"{family}: {', '.join(fits)} on {x.shape[0]} x {x.shape[1]} rows")
        png = base64.b64encode(_plot_png(x, fits, name)).decode()
        posterior = "".join(report.posterior_diagnostics(fits[m], name)
                            for m in ("nuts", "hmc") if m in fits)
        body = (f"<p>{x.shape[0]} training points, {heldout.shape[0]} held out; seed 0."
                f"</p>{report.table(report.compact(table))}"
                + report.loss_curves(fits, name)
                + f"<img alt='{name}: the density of each fit as a heat map and its samples "
                  f"against the data' src='data:image/png;base64,{png}'/>"
                + (f"<h3>The posterior (ArviZ)</h3>{posterior}" if posterior else ""))
        sections.append(report.Section(report.slug(name), f"{family} ({name})", body))
        _say(progress, f"{name} done in {time.perf_counter() - t_case:.0f} s")
    _say(progress, "ranking ...")
    title = "Every density family on the same held-out data"
    sections.insert(0, report.Section(report.slug(title), title,
                                      _ranking_section(made, quick, progress)))
    _say(progress, "MLE, MAP and the posterior ...")
    title = "MLE, MAP and the posterior"
    sections.insert(0, report.Section(report.slug(title), title,
                                      _mle_map_posterior_section(quick, progress)))
    for label, section in (("vae", _digits_section), ("names", _names_section),
                           ("gan", _gan_section), ("diffusion", diffusion_section),
                           ("score", score_section)):
        _say(progress, f"{label} ...")
        t_case = time.perf_counter()
        sections.append(_section_of(section(out, quick, progress)))
        _say(progress, f"{label} done in {time.perf_counter() - t_case:.0f} s")
    from .registry import registry

    for cls in registry().values():  # families the sections above report in their own way
        if cls.__name__ not in needs:
            caps = cls.capabilities
            needs[cls.__name__] = {"normalized": caps.log_prob, "samples by": caps.sampling,
                                   "trained by": ", ".join(caps.methods),
                                   "held-out log p": "in its section"}
    wall = time.perf_counter() - started
    top = report.header(
        what=f"A {'quick' if quick else 'full'} run of every registered family on built-in "
             f"data; every fit under seed 0, saved under fits/.",
        rows=[("families and methods", "; ".join(runs) + "; and the sections below"),
              *report.versions().items(), ("wall time", f"{wall:.0f} s")])
    top += ("<h2 id='requirements'>The four requirements, per family</h2><p>How each family "
            "normalizes p(x), how it samples, how it was trained here, and its best held-out "
            "log-likelihood with the kind of number it is: from <code>capabilities</code> "
            "and the fits.</p>" + report.table(pd.DataFrame(needs).T.sort_index()))
    index = out / "index.html"
    index.write_text(report.page("pyro-genmodels demo", top, sections))
    return index
