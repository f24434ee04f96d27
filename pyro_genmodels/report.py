"""The report a person reads: one self-contained HTML page (inline PNGs and CSS, no
network), shared by ``pyro-genmodels demo`` and ``pyro-genmodels report RUN_DIR...``.

The page has a table of contents, a header saying what was run (families, methods,
data, seeds, versions, wall time), the four requirements of a generative model per
family (how it normalizes, samples and trains, and how well it did here), generated from
``model.capabilities`` and the fits, and one section per family. A section with nothing
in it is left out. Tables drop columns that are NaN in every row and show each
log-likelihood next to its kind (``exact``, ``bound``, ``estimate``); posterior fits get
the ArviZ pictures an analyst expects: rank plots, the posterior predictive check, the
LOO Pareto-k diagnostic, and ``az.summary`` with R-hat and ESS out of range marked (a
symmetric matrix, a covariance, by its lower triangle).

The page is written only into a new or empty directory, or one a report or the demo wrote
before: they leave the marker file :data:`MARKER` there, and refuse any other directory
before any work (:func:`check_out`), so that a folder of the user's is never overwritten.
"""

from __future__ import annotations

import html
import logging
import math
import platform
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional

import pandas as pd
import torch

from ._atomic import replace_with
from ._html import MAX_TABLE_PX, image, table, table_width
from .arviz import arviz_warnings
from .base import Fit, GenerativeModel

#: R-hat above this, or bulk / tail ESS below ``ESS_MIN``, is marked in ``az.summary``
RHAT_MAX = 1.01
#: the ESS below which a posterior summary is marked (Vehtari et al. 2021, 100 per chain)
ESS_MIN = 400
#: the largest Pareto k at which LOO is trusted, with many draws; with S draws ArviZ's
#: threshold is min(1 - 1 / log10(S), 0.7) (Vehtari et al. 2024), which the report uses
PARETO_K_MAX = 0.7

#: shorter headers for the widest ``pgm.compare`` columns (the page must fit a laptop)
SHORT_NAMES = {"fit_seconds": "fit s", "train_log_prob": "train log p",
               "num_params": "params", "pareto_k_max": "max Pareto k",
               "loo_log_prob": "LOO log p", "elpd_loo": "elpd_loo (total)"}

CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;line-height:1.4}
nav{position:sticky;top:0;background:#f6f6f6;border-bottom:1px solid #ddd;
    padding:.4em 1em;font-size:.9em;z-index:1;display:flex;flex-wrap:wrap;gap:.2em 1em}
nav a{white-space:nowrap}
main{max-width:1180px;margin:0 auto;padding:0 1em 3em}
section{border-top:1px solid #ddd;margin-top:2em}
table{border-collapse:collapse;display:block;max-width:100%;overflow-x:auto;
      font-size:.9em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}
th{background:#fafafa}
td.text,th.text{text-align:left;white-space:normal}
td.bad{background:#fdd;font-weight:bold}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
.note{color:#555;font-size:.9em}
"""


#: the file by which ``from_runs`` and ``demo.run`` know a directory they wrote, which they
#: may write again; any other directory that is not empty they refuse (see :func:`check_out`)
MARKER = ".pyro-genmodels-report"
#: how :data:`MARKER` begins (what is read of it to recognize it)
MARKER_TEXT = "pyro-genmodels report directory"


def check_out(out: Any, what: str) -> Path:
    """``out`` as a path, if the page may be written there: a directory that does not
    exist yet or is empty, or one ``from_runs`` or ``demo.run`` wrote (it holds the
    :data:`MARKER` file, whose text begins with :data:`MARKER_TEXT`); otherwise a
    ``ValueError`` that says what was found, before any work, so that a folder of the
    user's (its own ``index.html`` above all) is never overwritten. ``what`` names the
    writer in the message (``"the report"``)."""
    path = Path(out)
    if not path.exists():
        return path
    if not path.is_dir():
        raise ValueError(f"Cannot write {what} to {str(path)!r}: it exists and is not a "
                         f"directory; expected a new, empty or pyro-genmodels report "
                         f"directory")
    try:
        names = sorted(p.name for p in path.iterdir())
        ours = not names
        if MARKER in names and (path / MARKER).is_file():
            with open(path / MARKER, "rb") as f:
                ours = f.read(len(MARKER_TEXT)) == MARKER_TEXT.encode()
    except OSError as e:
        raise ValueError(f"Cannot write {what} to {str(path)!r}: cannot read the "
                         f"directory ({e})") from None
    if not ours:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5
                                        else "")
        raise ValueError(f"Refusing to write {what} to {str(path)!r}: the directory is not "
                         f"empty ({shown}) and is not one pyro-genmodels wrote a report or "
                         f"demo to (expected an empty directory, or one holding the marker "
                         f"file {MARKER}, which versions before 2026-12 did not write), "
                         f"and {what} would overwrite its files. Choose another output "
                         f"directory (--out), or empty this one")
    return path


def mark_out(path: Path, command: str) -> None:
    """Make the directory ``path`` (checked by :func:`check_out`) and write its
    :data:`MARKER`, which says which ``command`` wrote it."""
    from ._version import __version__

    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text(f"{MARKER_TEXT}: written by {command} {__version__}. "
                               f"pyro-genmodels writes its report here again when asked to; "
                               f"without this file it refuses to write here.\n")


class Section(NamedTuple):
    """One section of the page: its anchor ``id``, its ``title`` and its HTML ``body``
    (left out of the page when the body is empty)."""

    id: str
    title: str
    body: str


class Part(NamedTuple):
    """What one piece of work adds to a page: its :class:`Section`, its rows of the
    requirements table (``{family: {column: text}}``) and lines saying what was run (the
    header's 'families and methods'). Plain strings, so a part made in a worker process
    crosses back by pickling."""

    section: Section
    needs: Dict[str, Dict[str, str]]
    runs: List[str]


def family_part(cls: "type[GenerativeModel]", title: str, body: str, *, data: str, trained_by: str,
                held_out: str, runs: str, also_samples_by: str = "") -> Part:
    """The :class:`Part` of a section about one family (class ``cls``): its requirements
    row from ``cls.capabilities`` and what the section measured, and its run line."""
    caps = cls.capabilities
    sampling = f"{caps.sampling} (also {also_samples_by})" if also_samples_by else caps.sampling
    need = {"data": data, "normalized": caps.log_prob, "samples by": sampling,
            "trained by": trained_by, "held-out log p": held_out}
    return Part(Section(slug(title), title, body), {cls.__name__: need}, [runs])


def slug(text: str) -> str:
    """An HTML id from a title: lower case, runs of other characters as ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def versions() -> Dict[str, str]:
    """The versions a reader needs to reproduce the page."""
    import arviz
    import pyro

    from ._version import __version__

    return {"pyro-genmodels": __version__, "torch": torch.__version__,
            "pyro": pyro.__version__, "arviz": arviz.__version__,
            "python": platform.python_version(), "torch threads": str(torch.get_num_threads())}


def compact(comparison: pd.DataFrame) -> pd.DataFrame:
    """A ``pgm.compare`` table as a reader wants it: columns NaN in every row dropped,
    each estimate shown with its standard error (``x ± se``), the held-out
    log-likelihood also with its kind, WAIC left out (PSIS-LOO says the same, with its
    Pareto-k diagnostic) and the widest headers shortened (:data:`SHORT_NAMES`)."""
    df = comparison.copy()
    # WAIC repeats PSIS-LOO, which the table keeps with its Pareto-k diagnostic
    df = df.drop(columns=[c for c in ("model", "elpd_waic", "elpd_waic_se", "p_waic")
                          if c in df])
    if "method" in df and list(df["method"]) == list(df.index):
        df = df.drop(columns=["method"])  # the row labels say it
    for col in [c for c in df.columns if f"{c}_se" in df]:
        mean, se = df[col], df[f"{col}_se"]
        df[col] = [math.nan if pd.isna(m) else (f"{m:.4g}" if pd.isna(e) else f"{m:.4g} ± {e:.2g}")
                   for m, e in zip(mean, se)]
        df = df.drop(columns=[f"{col}_se"])
    if "heldout_log_prob" in df:
        kinds = df["log_prob_kind"] if "log_prob_kind" in df else pd.Series("", index=df.index)
        df.insert(0, "held-out log p (kind)",
                  ["no density" if k == "none" else f"{'none' if pd.isna(v) else v} ({k})"
                   for v, k in zip(df["heldout_log_prob"], kinds)])
        df = df.drop(columns=[c for c in ("heldout_log_prob", "log_prob_kind") if c in df])
    keep = [c for c in df.columns if not df[c].isna().all()]
    return df[keep].rename(columns=SHORT_NAMES)


def requirements(model: GenerativeModel, fits: Mapping[str, Fit],
                 comparison: Optional[pd.DataFrame] = None) -> Dict[str, str]:
    """One row of the requirements table for a family, from its ``capabilities`` and its
    fits: how it is normalized (the kinds its fits report), how it samples, how it was
    trained (the methods run), and the best held-out log-likelihood with its kind."""
    caps = model.capabilities
    kinds = sorted({fit.log_prob_kind for fit in fits.values()})
    row = {"normalized": ", ".join(kinds) if kinds else caps.log_prob,
           "samples by": caps.sampling,
           "trained by": ", ".join(fits) if fits else ", ".join(caps.methods),
           "held-out log p": "n/a (no density)" if caps.log_prob == "none" else ""}
    if comparison is not None and "heldout_log_prob" in comparison:
        lp = comparison["heldout_log_prob"].dropna()
        if len(lp):
            best = lp.idxmax()
            row["held-out log p"] = (f"{lp[best]:.4g} ({comparison.loc[best, 'log_prob_kind']},"
                                     f" {best})")
    return row


def loss_curves(fits: Mapping[str, Fit], title: str) -> str:
    """The training losses of the optimized fits, one panel per fit (``""`` if none)."""
    traced = {name: fit.losses for name, fit in fits.items() if len(fit.losses) > 1}
    if not traced:
        return ""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(traced), figsize=(3.4 * len(traced), 2.6), squeeze=False)
    for ax, (name, losses) in zip(axes[0], traced.items()):
        ax.plot(losses, lw=0.8)
        ax.set_title(f"{title} {name}: loss")
        ax.set_xlabel("step")
        if min(losses) > 0 and max(losses) / min(losses) > 100:
            ax.set_yscale("log")
    fig.tight_layout()
    return image(fig, f"training loss per step of the {title} fits ({', '.join(traced)})")


def posterior_diagnostics(fit: Fit, title: str) -> str:
    """For a posterior fit: rank plots, the posterior predictive check, the Pareto-k
    diagnostic of PSIS-LOO and ``az.summary`` with R-hat and ESS out of range marked (for
    ``vi``, whose draws are independent, its statistics alone); ``""`` for a point fit."""
    if not fit.is_posterior:
        return ""
    import arviz as az
    import matplotlib.pyplot as plt

    idata = fit.to_arviz()
    names = [str(v) for v in idata["posterior"].data_vars if v != "corr_cholesky"][:4]
    parts = []
    if fit.posterior is not None and next(iter(fit.posterior.values())).shape[0] > 1:
        axes = az.plot_rank(idata, var_names=names[:2])
        parts.append(image(_figure_of(axes, width=10, row_height=2.4),
                           f"rank plots of {', '.join(names[:2])} for {title} {fit.method}: "
                           f"uniform when the chains mix"))
    if "posterior_predictive" in idata.groups() and "observed_data" in idata.groups():
        observed = next(iter(idata["observed_data"].data_vars.values()))
        # one panel per column (the first four), rows pooled: columns in different units
        # pooled into one density would compare nothing; a sequence's tokens are pooled
        by_column = observed.ndim == 2 and observed.dims[1] == "column" and observed.shape[1] > 1
        shown = observed.coords["column"].values[:4] if by_column else []
        per_column = ({"flatten": [observed.dims[0]], "coords": {"column": list(shown)}}
                      if by_column else {})
        replicas = idata["posterior_predictive"].sizes
        ax = az.plot_ppc(idata, num_pp_samples=min(50, replicas["chain"] * replicas["draw"]),
                         random_seed=0, **per_column)  # fewer draws than 50: all of them
        which = (f" (column{'s' if len(shown) > 1 else ''} "
                 f"{', '.join(map(str, shown))})" if by_column else "")
        parts.append(image(_figure_of(ax, width=10, row_height=2.6),
                           f"posterior predictive check of {title} {fit.method}{which}: "
                           f"replicated data against the data"))
    if "log_likelihood" in idata.groups():
        loo = arviz_warnings(f"{title} {fit.method}", lambda: az.loo(idata, pointwise=True))
        fig, ax = plt.subplots(figsize=(6, 2.6))
        az.plot_khat(loo, ax=ax, show_bins=True)
        # ArviZ's threshold for S draws, min(1 - 1 / log10(S), 0.7) (Vehtari et al. 2024)
        good_k = float(getattr(loo, "good_k", PARETO_K_MAX))
        ax.set_title(f"{title} {fit.method}: PSIS-LOO Pareto k (> {good_k:.2f}: untrusted)")
        fig.tight_layout()
        parts.append(image(fig, f"Pareto k of each training point for {title} {fit.method} "
                                f"(untrusted above {good_k:.2f})"))
    # a symmetric matrix's distinct entries only: both halves of a 13 x 13 covariance
    # were 169 rows
    summarized = lower_triangles(idata["posterior"][names])
    halved = [n for n in names if summarized[n].dims != idata["posterior"][n].dims]
    triangle = (f" Symmetric matrices ({', '.join(halved)}): the lower triangle "
                f"(i &ge; j) only." if halved else "")
    if "sample_stats" not in idata.groups():  # vi: independent draws of the guide
        summary = az.summary(summarized, kind="stats")
        parts.append("<p class='note'>az.summary (kind='stats'): independent draws of the "
                     "variational posterior, so R-hat and ESS, which diagnose a Markov "
                     f"chain, do not apply.{triangle}</p>" + table(summary, digits=3))
        return "".join(parts)
    one_chain = idata["posterior"].sizes["chain"] < 2
    # one chain: R-hat's "Shape validation failed" went to stderr from ArviZ's own
    # logger (not logging's "arviz", which its Logger instance is not); the note says it.
    # A filter of that message alone, this call's own (no shared level is changed)
    log = getattr(az, "_log", None) or logging.getLogger("arviz")
    quiet = _ShapeValidation()
    if one_chain:
        log.addFilter(quiet)
    try:
        summary = az.summary(summarized)
    finally:
        log.removeFilter(quiet)
    if one_chain:
        triangle += " R-hat compares chains: this fit ran one, so it is blank."
    marks = pd.DataFrame(False, index=summary.index, columns=summary.columns)
    if "r_hat" in summary:
        marks["r_hat"] = summary["r_hat"] > RHAT_MAX
    for col in ("ess_bulk", "ess_tail"):
        if col in summary:
            marks[col] = summary[col] < ESS_MIN
    parts.append(f"<p class='note'>az.summary: R-hat above {RHAT_MAX} and ESS below "
                 f"{ESS_MIN} are marked.{triangle}</p>" + table(summary, marks=marks, digits=3))
    return "".join(parts)


class _ShapeValidation(logging.Filter):
    """Drops ArviZ's "Shape validation failed" (R-hat of one chain)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Shape validation failed")


def lower_triangles(posterior: Any) -> Any:
    """The ``posterior`` dataset (ArviZ's group) with each variable whose draws are
    symmetric matrices (its last two dimensions of one length n >= 2, equal to its
    transpose in every draw) cut to its lower triangle (i >= j): one dimension of
    n (n + 1) / 2 entries, labelled ``"a, b"`` by the two dimensions' coordinates, so
    that ``az.summary`` names each row as it names the matrix's entry (``cov[2, 0]``) and
    shows the distinct entries only. Other variables are kept as they are."""
    import numpy as np
    import xarray as xr

    kept = {}
    for name, var in posterior.data_vars.items():
        kept[name] = var
        values = var.values
        if var.ndim < 4 or values.shape[-1] < 2 or values.shape[-1] != values.shape[-2]:
            continue  # (chain, draw, ..., n, n) only
        scale = float(np.abs(values).max()) if values.size else 0.0
        if not np.allclose(values, np.swapaxes(values, -1, -2), rtol=1e-5,
                           atol=1e-6 * scale):
            continue  # a matrix, not symmetric (or with NaN draws): every entry
        rows, cols = var.dims[-2:]
        i, j = np.tril_indices(values.shape[-1])
        first, second = var[rows].values, var[cols].values
        entry = f"{rows}, {cols}"
        kept[name] = xr.DataArray(
            values[..., i, j], dims=(*var.dims[:-2], entry),
            coords={**{d: var[d].values for d in var.dims[:-2]},
                    entry: [f"{first[a]}, {second[b]}" for a, b in zip(i, j)]})
    return xr.Dataset(kept)


def _figure_of(axes: Any, width: float, row_height: float) -> Any:
    """The figure of an ArviZ plot's axes (one, or an array of them), resized to
    ``width`` inches and ``row_height`` inches per row of panels."""
    import numpy as np

    grid = np.atleast_2d(np.asarray(axes, dtype=object))
    fig = grid.flat[0].get_figure()
    fig.set_size_inches(width, row_height * grid.shape[0])
    fig.tight_layout()
    return fig


def header(*, what: str, rows: Iterable[tuple[str, str]]) -> str:
    """The 'what was run' block: a sentence and a two-column table."""
    body = "".join(f"<tr><th class='text'>{html.escape(k)}</th><td class='text'>"
                   f"{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<p>{html.escape(what)}</p><table>{body}</table>"


def page(title: str, top: str, sections: List[Section]) -> str:
    """The whole page: the navigation bar, ``top`` and the non-empty ``sections``."""
    shown = [s for s in sections if s.body.strip()]
    nav = "".join(f"<a href='#{html.escape(s.id)}'>{html.escape(s.title)}</a>" for s in shown)
    body = "".join(f"<section id='{html.escape(s.id)}'><h2>{html.escape(s.title)}</h2>"
                   f"{s.body}</section>" for s in shown)
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<nav><a href='#top'><b>{html.escape(title)}</b></a>{nav}</nav>"
            f"<main><h1 id='top'>{html.escape(title)}</h1>{top}{body}</main></body></html>")


#: draws of each sequence model shown in the report's samples table
SEQUENCE_DRAWS = 10


def _sequences_table(fits: Mapping[str, Fit]) -> str:
    """:data:`SEQUENCE_DRAWS` draws (seed 0) of each sequence fit, a column per fit:
    strings as they come (the empty one said so), token ids separated by spaces."""
    from .compare import _sequences

    drawn = {}
    for name, fit in fits.items():
        if not _sequences(fit) or fit.data is None:
            continue
        n = min(SEQUENCE_DRAWS, fit.data.shape[0])
        got = fit.sample(n, seed=0, c=None if fit.context is None else fit.context[:n])
        drawn[name] = [s if isinstance(s, str) and s else "(empty)" if isinstance(s, str)
                       else " ".join(str(int(t)) for t in s) for s in got]
    if not drawn:
        return ""
    rows = pd.DataFrame({k: pd.Series(v, index=range(1, len(v) + 1)) for k, v in drawn.items()})
    return (f"<p>Draws of each fit (up to {SEQUENCE_DRAWS}, seed 0; a conditional fit's for "
            f"the classes of its first training rows):</p>" + table(rows.fillna("")))


def _samples_figure(fits: Mapping[str, Fit], title: str) -> str:
    """Samples of each fit against its training rows (first two columns); a table of
    draws for sequence fits (:func:`_sequences_table`); ``""`` for other data."""
    numeric = {k: f for k, f in fits.items() if isinstance(f.data, torch.Tensor)
               and f.data.is_floating_point() and f.data.dim() == 2 and f.data.shape[1] >= 2}
    if not numeric:
        return _sequences_table(fits)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(numeric), figsize=(3.4 * len(numeric), 3.2), squeeze=False)
    for ax, (name, fit) in zip(axes[0], numeric.items()):
        assert fit.data is not None
        x = fit.data[:1000].cpu()
        s = fit.sample(x.shape[0], seed=0, c=None if fit.context is None
                       else fit.context[:x.shape[0]])
        ax.scatter(x[:, 0], x[:, 1], s=3, alpha=0.4, c="gray", label="training data")
        ax.scatter(s[:, 0].cpu(), s[:, 1].cpu(), s=3, alpha=0.5, c="tab:orange", label="samples")
        ax.set_title(f"{name}: samples")
    axes[0][0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    return image(fig, f"{title}: samples of each fit against its training data "
                      f"(first two columns)")


def from_runs(paths: Iterable[Any], out: Any, *, heldout: Any = None) -> Any:
    """Write the report of saved fits (``fit.save`` directories) to ``out/index.html``
    and return its path: per family, the comparison table (``pgm.compare`` on
    ``heldout``, or the training log-likelihood without it), loss curves, samples
    against the training data and, for posterior fits, the ArviZ pictures.

    Args:
        paths: run directories; each is loaded with ``pgm.load`` (never unpickled).
        out: the report's directory: new, empty, or one a report or the demo wrote
            (:func:`check_out`: any other is refused before a fit is loaded).
        heldout: held-out rows every fit is scored on (the fits' data form), or ``None``.
    """
    import time

    from .compare import compare
    from .io import load

    started = time.perf_counter()
    dirs = [Path(p) for p in paths]
    if not dirs:
        raise ValueError("Expected at least one run directory (written by fit.save), got none")
    out = check_out(out, "the report")
    fits: Dict[str, Fit] = {}
    for d in dirs:
        label = d.name or str(d)
        while label in fits:
            label += "'"
        fits[label] = load(d)
    conditional = [label for label, fit in fits.items() if fit.model.is_conditional]
    if heldout is not None and conditional:
        raise ValueError(f"{', '.join(conditional)} hold(s) a conditional model, whose "
                         f"held-out rows need their conditions, which the report takes none "
                         f"of: leave out the held-out rows, or score it with "
                         f"pgm.compare(fits, heldout, c=...)")
    families: Dict[str, Dict[str, Fit]] = {}
    for label, fit in fits.items():
        families.setdefault(type(fit.model).__name__, {})[label] = fit
    sections, needs = [], {}
    for family, group in families.items():
        model = next(iter(group.values())).model
        if heldout is not None:
            # the sample-based columns (MMD, C2ST) for a family with no density, the
            # only score it can have (its draws are direct); the others' log p says more
            # and an energy model would sample by MCMC
            comparison = compare(group, heldout,
                                 samples=model.capabilities.log_prob == "none")
        else:
            comparison = pd.DataFrame({
                label: {"method": fit.method, "log_prob_kind": fit.log_prob_kind,
                        "train_log_prob": _train_log_prob(fit), "steps": len(fit.losses),
                        "draws": fit.num_draws}
                for label, fit in group.items()}).T
        needs[family] = requirements(model, {f.method: f for f in group.values()},
                                     comparison if heldout is not None else None)
        if heldout is None:
            needs[family]["held-out log p"] = "not scored (no held-out data given)"
        posterior = "".join(posterior_diagnostics(fit, label) for label, fit in group.items())
        cut = [label for label, fit in group.items() if fit.interrupted]
        body = (table(compact(comparison))
                + (f"<p class='note'>Stopped by Ctrl-C before the end: "
                   f"{html.escape(', '.join(cut))} (fewer steps, chains or draws than "
                   f"asked).</p>" if cut else "")
                + loss_curves(group, family)
                + _samples_figure(group, family)
                + (f"<h3>The posterior (ArviZ)</h3>{posterior}" if posterior else ""))
        sections.append(Section(slug(family), family, body))
    top = header(what=f"The report of {len(fits)} saved fits"
                      f"{'' if heldout is None else ', scored on the held-out rows given'}.",
                 rows=[("runs", ", ".join(str(d) for d in dirs)), *versions().items(),
                       ("wall time", f"{time.perf_counter() - started:.0f} s")])
    top += ("<h2 id='requirements'>The four requirements, per family</h2>"
            + table(pd.DataFrame(needs).T.sort_index()))
    mark_out(out, "pyro-genmodels report")
    return write_page(out / "index.html", page("pyro-genmodels report", top, sections))


def write_page(index: Path, text: str) -> Path:
    """``text`` written beside ``index`` and renamed over it: a failure or a Ctrl-C while
    writing leaves the page that was there, not half of the new one."""
    return replace_with(index, lambda tmp: tmp.write_text(text, encoding="utf-8"),
                        tmp=index.with_name(f".{index.name}.tmp"))


def _train_log_prob(fit: Fit) -> float:
    """Mean log p of the fit's training rows or sequences, as :func:`~pyro_genmodels.compare`
    scores them (NaN without a density or kept training data)."""
    from .compare import _train_log_probs

    if fit.log_prob_kind == "none" or not isinstance(fit.data, torch.Tensor):
        return math.nan
    return float(_train_log_probs(fit).mean())


__all__ = ["CSS", "ESS_MIN", "MARKER", "MARKER_TEXT", "MAX_TABLE_PX", "PARETO_K_MAX", "Part",
           "RHAT_MAX", "SHORT_NAMES", "Section", "check_out", "compact", "family_part",
           "from_runs", "header", "image", "loss_curves", "lower_triangles", "mark_out",
           "page", "posterior_diagnostics", "requirements", "slug", "table", "table_width",
           "versions"]
