"""The main job: fit the registered models on built-in data, write an HTML report.

``pyro-genmodels demo [--quick] [--out DIR] [--jobs N]`` writes ``DIR/index.html`` (see
:mod:`pyro_genmodels.report`): what was run and the four requirements per family; MLE,
MAP and the posterior on little data with the prior sweep; every family ranked on the
same held-out rows (:mod:`pyro_genmodels.demo_ranking`); for every density family, the
comparison table, loss curves, density heat maps and samples against the data, and the
ArviZ pictures of its posterior fits; for images, a VAE on digits; for text, n-grams next
to a GRU on first names; GANs (:mod:`pyro_genmodels.demo_gan`), diffusion
(:mod:`pyro_genmodels.demo_diffusion`) and score models (:mod:`pyro_genmodels.demo_score`).
The saved fits go under ``DIR/fits/``. ``DIR`` is new, empty, or one the demo or a report
wrote (:func:`pyro_genmodels.report.check_out`); any other is refused before any work.

The pieces of work (:data:`TASKS`) are independent but for the ranking, which reads the
saved ring fits: ``jobs`` worker processes take them longest first, each with
``cpu_count // jobs`` torch threads, and each piece runs under seed 0 whichever process
takes it, so no piece depends on what ran before it (the thread count can still move the
last digits of a long fit).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import html
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, cast

import pandas as pd
import torch

from . import datasets, report
from .base import Fit, GenerativeModel
from ._figures import png as _png, png_bytes as _png_bytes
from .compare import compare
from .demo_diffusion import diffusion_part
from .demo_gan import gan_part
from .demo_ranking import ranking_part, ring
from .demo_score import score_part
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
    x, heldout, truth = ring()  # the ranking's rows
    with seeded(0):
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
    x, heldout, truth = ring()  # the ranking's rows
    with seeded(0):
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


def _vae_part(out: Path, quick: bool, progress: bool) -> report.Part:
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
    body = (f"<p>{train.shape[0]} binarized 8x8 digits, "
            f"{test.shape[0]} held out; latent 8, one hidden layer of 128, "
            f"{seconds:.3g} s of training. log p(x) is an importance-weighted estimate "
            f"(log_prob_kind = {fit.log_prob_kind!r}).</p><table><tr><th>held-out nats per "
            f"image</th><th>IWAE estimate</th><th>ELBO (bound)</th><th>factorized "
            f"Bernoulli</th></tr><tr><th>mean</th><td>{iwae:.3f}</td><td>{elbo:.3f}</td>"
            f"<td>{base:.3f}</td></tr></table><img alt='VAE samples and reconstructions' "
            f"src='data:image/png;base64,{png}'/>")
    need = {"data": "digits (64 binarized pixels)",
            **report.requirements(model, {"mle": fit}),
            "held-out log p": f"{iwae:.4g} ({fit.log_prob_kind}, IWAE; ELBO {elbo:.4g})"}
    return report.Part(report.Section("vae-digits", "VAE (digits)", body), {"VAE": need},
                       [f"VAE: mle on {train.shape[0]} x 64 binarized digits"])


def _names_part(out: Path, quick: bool, progress: bool) -> report.Part:
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
    rows, per_name = [], {}
    for name, fit in fits.items():
        lp = fit.log_prob(test)
        per_name[name] = float(lp.mean())
        nll = -lp.sum().item() / chars
        plain = ", ".join(cast(List[str], fit.sample(8, seed=0)))  # a text model's strings
        prompted = ", ".join(cast(List[str], fit.sample(8, prefix="ma", seed=0)))
        rows.append(f"<tr><th>{name}</th><td>{times[name]:.3g}</td><td>{nll:.4f}</td>"
                    f"<td class='text'>{html.escape(plain)}</td>"
                    f"<td class='text'>{html.escape(prompted)}</td></tr>")
    body = (f"<p>{len(train)} training names, "
            f"{len(test)} held out; p(x) = prod_i p(x_i | x_&lt;i), exact. n-grams: "
            f"Dirichlet(2) MAP = add-one smoothing; GRU: MAP with a N(0, 0.3^2) weight "
            f"prior.</p><table><tr><th>model</th><th>fit_seconds</th>"
            f"<th>heldout nats/char</th><th>samples</th><th>samples after 'ma'</th></tr>"
            f"{''.join(rows)}</table>" + report.loss_curves(fits, "names"))
    needs = {}
    for family, labels in (("NGram", ("bigram", "trigram")), ("AutoregressiveModel", ("gru",))):
        best = max(labels, key=lambda n: per_name[n])
        needs[family] = {"data": "first names (log p per name)",
                         **report.requirements(models[best], {"map": fits[best]}),
                         "held-out log p": f"{per_name[best]:.4g} "
                                           f"({fits[best].log_prob_kind}, {best})"}
    title = "NGram and AutoregressiveModel (names)"
    return report.Part(report.Section(report.slug(title), title, body), needs,
                       [f"NGram: map (bigram, trigram); AutoregressiveModel: map (GRU) on "
                        f"{len(train)} first names"])


def _mle_map_posterior_part(out: Path, quick: bool, progress: bool) -> report.Part:
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
    body = (f"<p>{x.shape[0]} training points of a correlated 2-D Gaussian, 1000 held out. "
            f"MLE maximizes sum log p(x_i | phi) (= minimizes KL(p_data || p_phi)); MAP adds "
            f"log p(phi), and under a Gaussian prior N(0, s<sup>2</sup> I) on phi that is "
            f"exactly the L2 penalty ||phi||<sup>2</sup> / (2 s<sup>2</sup>); NUTS draws "
            f"from the posterior, and its row is the posterior mean and the posterior "
            f"predictive density. With so few points the three differ.</p>"
            + report.table(pd.DataFrame(rows).T)
            + report.image(fig, "held-out log-likelihood of MAP fits against the prior "
                                "scale, with the MLE as a dashed line and the MAP of the "
                                "table as a star"))
    title = "MLE, MAP and the posterior"
    return report.Part(report.Section(report.slug(title), title, body), {},
                       [f"Gaussian: mle, map and nuts on {x.shape[0]} x 2 rows, and map "
                        f"at six prior scales"])




#: what each case's rows are, for the requirements table
_CASE_DATA = {"gaussian": "correlated 2-D Gaussian", "gaussian_mixture": "4 clusters, 2-D",
              "ppca": "correlated 2-D Gaussian", "flow": "eight_gaussians",
              "energy": "eight_gaussians"}


def _case_part(name: str, out: Path, quick: bool, progress: bool) -> report.Part:
    """A density family's section: every method it has (its budget for the run), the
    comparison table on held-out rows, loss curves, density and samples, and the ArviZ
    pictures of its posterior fits."""
    model, x, heldout, truth = DEMO_CASES[name](quick)
    fits, times = {}, {}
    for method, budgets in {**_BUDGETS, **_CASE_BUDGETS.get(name, {})}.items():
        budget = budgets[quick]
        if method not in model.capabilities.methods or budget is None:
            continue
        t0 = time.perf_counter()
        fits[method] = model.fit(x, method=method, seed=0, progress=progress, **budget)
        times[method] = time.perf_counter() - t0
        fits[method].save(out / "fits" / f"{name}-{method}")
    table = compare(fits, heldout, truth=truth)
    table.insert(1, "fit_seconds", [times[m] for m in table.index])
    family = type(model).__name__
    png = base64.b64encode(_plot_png(x, fits, name)).decode()
    posterior = "".join(report.posterior_diagnostics(fits[m], name)
                        for m in ("nuts", "hmc") if m in fits)
    body = (f"<p>{x.shape[0]} training points, {heldout.shape[0]} held out; seed 0."
            f"</p>{report.table(report.compact(table))}"
            + report.loss_curves(fits, name)
            + f"<img alt='{name}: the density of each fit as a heat map and its samples "
              f"against the data' src='data:image/png;base64,{png}'/>"
            + (f"<h3>The posterior (ArviZ)</h3>{posterior}" if posterior else ""))
    need = {"data": _CASE_DATA.get(name, name), **report.requirements(model, fits, table)}
    return report.Part(report.Section(report.slug(name), f"{family} ({name})", body),
                       {family: need},
                       [f"{family}: {', '.join(fits)} on {x.shape[0]} x {x.shape[1]} rows"])


Task = Callable[[Path, bool, bool], report.Part]

#: the demo's pieces of work, ``(out, quick, progress) -> Part``, in the order a free
#: worker takes them (the first whose ``AFTER`` tasks are done): longest first, so the
#: long ones overlap (full run, 2 workers of one thread:
#: GAN 491 s, energy 490 s, score 135 s, diffusion 112 s, the ranking 56 s, the rest under
#: 70 s each; 12 min 55 s in all, measured)
TASKS: Dict[str, Task] = {
    "gan": gan_part,
    "energy": functools.partial(_case_part, "energy"),
    "score": score_part,
    "diffusion": diffusion_part,
    "flow": functools.partial(_case_part, "flow"),  # before the shorter: the ranking reads it
    "ranking": ranking_part,  # as soon as what it reads is done: a free worker takes it
    "gaussian_mixture": functools.partial(_case_part, "gaussian_mixture"),
    "mle_map_posterior": _mle_map_posterior_part,
    "gaussian": functools.partial(_case_part, "gaussian"),
    **{name: functools.partial(_case_part, name) for name in DEMO_CASES},  # new cases
    "names": _names_part,
    "vae": _vae_part,
}

#: the tasks a task reads the saved fits of (it starts when they are done)
AFTER: Dict[str, Tuple[str, ...]] = {"ranking": ("flow", "energy", "diffusion", "score", "gan")}

#: the page's order of sections (the tasks not named here follow in ``TASKS`` order)
PAGE_ORDER = ("mle_map_posterior", "ranking", *DEMO_CASES, "vae", "names", "gan",
              "diffusion", "score")


def _say(progress: bool, text: str) -> None:
    """The demo's progress line per family (on stderr, so a redirected page stays clean)."""
    if progress:
        print(f"[demo] {text}", file=sys.stderr, flush=True)


def _work(name: str, task: Task, out: str, quick: bool, progress: bool, bars: bool,
          threads: Optional[int]) -> Tuple[str, report.Part]:
    """Run one task under seed 0 (in a worker process, or in this one when ``jobs=1``);
    ``task`` is pickled by reference, so it must be a module-level function or a
    ``functools.partial`` of one."""
    import matplotlib

    matplotlib.use("Agg")
    if threads is not None:
        torch.set_num_threads(threads)
    _say(progress, f"{name} ...")
    t0 = time.perf_counter()
    with seeded(0), warnings.catch_warnings():
        warnings.showwarning = functools.partial(_warning_of, name)
        part = task(Path(out), quick, bars)
    _say(progress, f"{name} done in {time.perf_counter() - t0:.0f} s")
    return name, part


def _warning_of(piece: str, message: Any, category: Any, filename: str, lineno: int,
                file: Any = None, line: Any = None) -> None:
    """A warning met in a piece of work, as one line on stderr that names the piece (a
    worker process would print its own source line under it, and no piece)."""
    print(f"warning: {piece}: {message}", file=sys.stderr)


def _threads(jobs: int) -> int:
    """Torch threads per worker process: the cores shared out."""
    return max(1, (os.cpu_count() or 1) // jobs)


@contextlib.contextmanager
def _noting_ctrl_c() -> Iterator[List[bool]]:
    """A list that holds ``True`` once Ctrl-C raised ``KeyboardInterrupt`` (the handler
    that was there runs: Python's raises it). A fit catches that and returns what it
    did, so in this process its piece went on, and so did every later piece: the demo
    now stops after the piece. Where SIGINT is ignored or not Python's to handle, or
    outside the main thread (no handler can be set), nothing changes."""
    pressed: List[bool] = []
    previous = signal.getsignal(signal.SIGINT)
    handler = previous if callable(previous) else None  # SIG_IGN, SIG_DFL, not Python's

    def note(signum: int, frame: Any) -> None:
        try:
            cast(Callable[[int, Any], None], handler)(signum, frame)
        except KeyboardInterrupt:  # what a fit catches
            pressed.append(True)
            raise

    try:
        if handler is not None:
            signal.signal(signal.SIGINT, note)
    except ValueError:  # not the main thread
        handler = None
    try:
        yield pressed
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)


def _run_tasks(out: Path, quick: bool, progress: bool, jobs: int) -> Dict[str, report.Part]:
    """Every task, in ``jobs`` spawned worker processes (``cpu_count // jobs`` torch
    threads each; progress bars off, their lines would interleave) or in this process."""
    missing = {d for deps in AFTER.values() for d in deps} - set(TASKS)
    if missing:
        raise ValueError(f"AFTER names tasks that TASKS does not have: {sorted(missing)}")
    parts: Dict[str, report.Part] = {}
    pending = list(TASKS)

    def take_ready() -> str:
        """The first pending task (TASKS order) whose AFTER tasks are done, or ``""``."""
        name = next((n for n in pending if all(d in parts for d in AFTER.get(n, ()))), "")
        if name:
            pending.remove(name)
        return name

    if jobs == 1:
        with _noting_ctrl_c() as pressed:
            while pending:
                name = take_ready()
                if not name:
                    raise ValueError(f"AFTER has a cycle among {pending}")
                parts[name] = _work(name, TASKS[name], str(out), quick, progress, progress,
                                    None)[1]
                if pressed:  # a fit kept what it had and its piece went on: stop here
                    raise KeyboardInterrupt
        return parts
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    threads = _threads(jobs)
    running: Dict[Future, str] = {}
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            while pending or running:
                while len(running) < jobs:  # a free worker takes the first ready task
                    name = take_ready()
                    if not name:
                        break
                    running[pool.submit(_work, name, TASKS[name], str(out), quick, progress,
                                        False, threads)] = name
                if not running:
                    raise ValueError(f"AFTER has a cycle among {pending}")
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    del running[future]
                    name, part = future.result()
                    parts[name] = part
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return parts


def run(out: str | Path = "demo-out", *, quick: bool = False, progress: bool = True,
        jobs: Optional[int] = None) -> Path:
    """Run the demo and return the path of ``index.html``.

    Args:
        out: the report's directory (created; the fits go under ``out/fits``): new,
            empty, or one the demo or a report wrote, even a run stopped before its page
            (:func:`pyro_genmodels.report.check_out`: any other is refused before any
            work).
        quick: small budgets (about 1.5 minutes on 2 cores) instead of the full ones.
        progress: a line per piece of work on stderr (and progress bars when ``jobs=1``).
        jobs: worker processes; ``None`` is one per CPU core, ``1`` runs every piece in
            this process, one after another.
    """
    import matplotlib

    matplotlib.use("Agg")
    if jobs is None:
        jobs = os.cpu_count() or 1
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int (worker processes), got {jobs!r}")
    jobs = min(jobs, len(TASKS))
    started = time.perf_counter()
    out = report.check_out(out, "the demo")
    report.mark_out(out, "pyro-genmodels demo")  # first: a rerun of a stopped demo is ours
    (out / "fits").mkdir(exist_ok=True)
    parts = _run_tasks(out, quick, progress, jobs)
    order = [*PAGE_ORDER, *(n for n in TASKS if n not in PAGE_ORDER)]
    needs: Dict[str, Dict[str, str]] = {}
    runs: List[str] = []
    for name in order:
        needs.update(parts[name].needs)
        runs.extend(parts[name].runs)
    from .registry import registry

    for cls in registry().values():  # a family no task runs still gets its row
        if cls.__name__ not in needs:
            caps = cls.capabilities
            needs[cls.__name__] = {"data": "not run by the demo", "normalized": caps.log_prob,
                                   "samples by": caps.sampling,
                                   "trained by": ", ".join(caps.methods),
                                   "held-out log p": "not run"}
    wall = time.perf_counter() - started
    top = report.header(
        what=f"A {'quick' if quick else 'full'} run of every registered family on built-in "
             f"data; every fit under seed 0, saved under fits/.",
        rows=[("families and methods", "; ".join(runs)),
              ("worker processes", "none: one piece of work after another" if jobs == 1
               else f"{jobs}, longest piece of work first, {_threads(jobs)} torch thread(s) "
                    f"each"),
              *((k, v) for k, v in report.versions().items()
                if jobs == 1 or k != "torch threads"),  # this process's, not the workers'
              ("wall time", f"{wall:.0f} s")])
    top += ("<h2 id='requirements'>The four requirements, per family</h2><p>How each family "
            "normalizes p(x), how it samples, how it was trained here, and its best held-out "
            "log-likelihood with the kind of number it is (on the data of its row): from "
            "<code>capabilities</code> and the fits.</p>"
            + report.table(pd.DataFrame(needs).T.sort_index()))
    return report.write_page(out / "index.html", report.page(
        "pyro-genmodels demo", top, [parts[name].section for name in order]))
