"""Fits side by side on held-out data: the analyst's "MLE vs MAP vs full Bayes" table,
and the prior sweep that draws the MLE-to-MAP picture."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Dict, Optional

import pandas as pd
import torch

from . import metrics
from .arviz import arviz_warnings
from ._rng import check_seed, fresh_seed, seeded
from ._validation import (as_data, check_bool, check_device, heldout_conditions, heldout_pair,
                          positive_float, with_context)
from .base import Fit, GenerativeModel
from .infer import streaming
from .models._checks import STRONG_PRIOR

if TYPE_CHECKING:  # imported when used: matplotlib is slow to import
    from matplotlib.axes import Axes

#: the sample-based columns (NaN where they do not apply)
SAMPLE_COLUMNS = ("mmd", "mmd_se", "c2st", "c2st_se")
#: The most held-out rows the sample-based columns use, since MMD and C2ST cost M^2
#: (5,000 rows take about 2 s a fit, 40,000 a minute); above it, a random subset of this
#: many.
SAMPLE_ROWS = 5000

def _heldout_columns(fit: Fit, heldout: Any, c: Any = None,
                     lp: Optional[torch.Tensor] = None) -> dict:
    """Mean held-out log p, its standard error and its kind (``lp``: the per-point log p
    when already computed)."""
    if lp is None:
        lp = fit.log_prob(heldout, c=c)
    n = lp.shape[0]
    return {"heldout_log_prob": lp.mean().item(),
            "heldout_log_prob_se": lp.std().item() / math.sqrt(n) if n > 1 else math.nan,
            "log_prob_kind": fit.log_prob_kind}


def _has_density(fit: Fit) -> bool:
    """False for a fit with no log-density at all (a GAN: ``log_prob_kind == "none"``)."""
    return fit.log_prob_kind != "none"


def _numeric_rows(heldout: Any) -> torch.Tensor | None:
    """``heldout`` as a float64 ``(M, D)`` tensor (``(M,)`` read as ``(M, 1)``), or
    ``None`` when it is not numeric rows (strings, token sequences of varying length)."""
    for dim in (None, 1):
        try:
            return as_data(heldout, dim=dim, name="heldout", dtype=torch.float64)
        except (TypeError, ValueError):
            pass
    return None


def _sample_columns(fit: Fit, y: torch.Tensor | None, c: Any, seed: int | None,
                    bandwidth: float | None, keep: torch.Tensor | None) -> Dict[str, float]:
    """MMD (Gaussian kernel, the held-out data's median bandwidth) and C2ST accuracy of
    ``len(y)`` draws of ``fit`` against the held-out rows ``y`` (the rows of the held-out
    data that the mask ``keep`` keeps, whose conditions ``c`` are subset alike)."""
    out = dict.fromkeys(SAMPLE_COLUMNS, math.nan)
    if y is None or y.shape[0] < metrics.MIN_ROWS:  # compare warned
        return out
    if _sequences(fit):  # token ids (M, L) read as numeric rows, but draws are not rows
        return out
    if keep is not None and c is not None:
        rows = fit.model.validate_context(c, len(keep))  # a conditional fit's: a tensor
        c = None if rows is None else rows[keep]
    draws = fit.sample(y.shape[0], c=c, seed=seed)
    if not isinstance(draws, torch.Tensor) or tuple(draws.shape) != tuple(y.shape):
        return out
    m = metrics.mmd(draws, y, bandwidth=bandwidth)
    t = metrics.c2st(draws, y, seed=seed)
    return {"mmd": m.estimate, "mmd_se": m.stderr, "c2st": t.estimate, "c2st_se": t.stderr}


def _sequences(fit: Fit) -> bool:
    """Whether ``fit`` is of a sequence model (no rows to score draws against)."""
    from .models.autoregressive import SequenceModel

    return isinstance(fit.model, SequenceModel)


def _conditional(fit: Fit) -> bool:
    return fit.model.is_conditional


def compare(fits: Mapping[str, Fit], heldout: Any, *,
            truth: torch.distributions.Distribution | None = None,
            c: Any = None, loo: bool = True, samples: bool = True,
            train: bool = True, seed: int | None = 0, bin_width: float | None = None) -> pd.DataFrame:
    """Compare fits of the same data on ``heldout`` points.

    Args:
        fits: ``{label: Fit}``.
        heldout: ``(M, D)`` points none of the fits was trained on (or, for sequence
            models, held-out sequences).
        truth: the data's true distribution, when known (e.g. :func:`datasets.toy`); then
            ``heldout`` must be drawn from it and ``true_kl`` is reported.
        c: conditioning values of ``heldout``, given to the conditional models only (so
            p(x | c) and p(x) fits sit in one table).
        loo: compute PSIS-LOO and WAIC (``az.loo``, ``az.waic``) for posterior fits.
        samples: compute the sample-based columns (``False`` leaves them NaN and draws
            nothing: an energy model samples by MCMC, which takes a while).
        train: compute the training-data columns (``train_log_prob``, AIC and BIC, LOO
            and WAIC); ``False`` leaves them NaN (a diffusion model's bound runs its
            network at every one of its T steps for every training row).
        seed: the fits' draws and the C2ST split.
        bin_width: for data on a grid dequantized by the caller (``heldout`` = grid
            values + U[0, bin_width)), adds ``bits_per_dim`` = -(``heldout_log_prob`` +
            D log ``bin_width``) / (D log 2), as :meth:`Fit.bits_per_dim` computes it.

    Returns:
        A DataFrame indexed by the labels with columns

        - ``method``, ``model``, ``log_prob_kind``;
        - ``heldout_log_prob`` (mean log p(x) per held-out point) and its standard error
          ``heldout_log_prob_se``; ``train_log_prob`` (mean per training point);
        - ``num_params`` (free scalar parameters k) and, for point fits with an exact
          log-likelihood, ``aic`` = 2k - 2 log L and ``bic`` = k log N - 2 log L on the
          training data (NaN for a bound or an estimate of log L, which they are not);
        - for posterior fits ``elpd_loo`` (total, as ArviZ reports it), ``elpd_loo_se``,
          ``p_loo``, ``pareto_k_max`` (above ArviZ's ``good_k`` =
          min(1 - 1 / log10(S), 0.7) for S draws, LOO is not trustworthy), ``loo_log_prob``
          (``elpd_loo`` per training point, comparable with ``heldout_log_prob``),
          ``elpd_waic``, ``elpd_waic_se``, ``p_waic``;
        - with ``bin_width``: ``bits_per_dim`` (a bound or an estimate as
          ``log_prob_kind`` says);
        - with ``truth``: ``true_kl`` = mean over held-out points of
          log p_data(x) - log p_fit(x) and its standard error ``true_kl_se``: an unbiased
          estimate of KL(p_data || p_fit) where ``log_prob_kind`` is ``"exact"``; for a
          ``"bound"`` (a lower bound on log p) it estimates an upper bound on the KL, and
          for an ``"estimate"`` it carries that estimator's bias (the family's docs say
          which way; :func:`~pyro_genmodels.divergences.kl` refuses both unless
          ``allow_inexact=True``);
        - sample-based, for every family whose data are numeric rows (a GAN too): M =
          ``len(heldout)`` draws ``fit.sample(M, c=c, seed=seed)`` against the held-out
          rows (above :data:`SAMPLE_ROWS` rows, M = :data:`SAMPLE_ROWS` of them drawn at
          random with ``seed``: the scores cost M^2), ``mmd`` (unbiased MMD^2, Gaussian
          kernel with the median-heuristic
          bandwidth of the held-out rows, the same for every fit) with ``mmd_se``, and
          ``c2st`` (held-out accuracy of a k-nearest-neighbour classifier, 0.5 =
          indistinguishable) with ``c2st_se`` (see :mod:`pyro_genmodels.metrics`).

        Columns that do not apply to a fit are NaN: every likelihood column of a fit
        without a density (``log_prob_kind == "none"``, a GAN), the sample columns of
        sequence models, and every fit's sample columns when ``heldout`` has fewer than
        :data:`~pyro_genmodels.metrics.MIN_ROWS` rows (with a warning).
    """
    if not isinstance(fits, Mapping):
        raise TypeError(f"fits must be a non-empty dict {{label: Fit}}, got "
                        f"{type(fits).__name__}")
    if not fits:
        raise ValueError("fits must be a non-empty dict {label: Fit}, got an empty one")
    for label, fit in fits.items():
        if not isinstance(fit, Fit):
            raise TypeError(f"fits[{label!r}] must be a Fit, got {type(fit).__name__}")
    if heldout is None or isinstance(heldout, (str, bytes)):
        raise TypeError(f"heldout must be held-out data (rows, or sequences for sequence "
                        f"models), got {type(heldout).__name__}")
    loo, samples, train = (check_bool(loo, "loo"), check_bool(samples, "samples"),
                           check_bool(train, "train"))
    truth_rows = None if truth is None else _truth_rows(truth, heldout)
    if bin_width is not None:
        bin_width = positive_float(bin_width, "bin_width")
        for label, fit in fits.items():
            try:
                fit._check_grid()
            except TypeError as e:
                raise TypeError(f"bin_width does not apply to fits[{label!r}] "
                                f"({type(fit.model).__name__}, {fit.method!r}): {e}") from None
    seed = check_seed(seed)
    y = _numeric_rows(heldout) if samples else None
    num_rows = None if y is None else y.shape[0]
    few = num_rows is not None and num_rows < metrics.MIN_ROWS
    if few and not all(_sequences(fit) for fit in fits.values()):
        warnings.warn(f"the sample-based columns ({', '.join(SAMPLE_COLUMNS)}) need at least "
                      f"{metrics.MIN_ROWS} held-out rows, got {num_rows}: they are NaN",
                      stacklevel=2)
    keep = None
    if y is not None and y.shape[0] > SAMPLE_ROWS:
        g = torch.Generator()
        g.manual_seed(seed) if seed is not None else g.seed()
        keep = torch.zeros(y.shape[0], dtype=torch.bool)  # a mask: c is subset alike
        keep[torch.randperm(y.shape[0], generator=g)[:SAMPLE_ROWS]] = True
        y = y[keep]
    bandwidth = metrics.median_bandwidth(y) if y is not None and not few else None
    rows: Dict[Any, Dict[str, Any]] = {}
    for label, fit in fits.items():
        with _naming(label, fit, c):
            rows[label] = _row(fit, heldout, truth, truth_rows,
                               c if _conditional(fit) else None, loo, y, seed, bandwidth,
                               bin_width, train, keep, label)
    return pd.DataFrame.from_dict(rows, orient="index")


@contextlib.contextmanager
def _naming(label: Any, fit: Fit, c: Any):
    """Say which fit refused ``heldout`` (or ``c``): the fits' own checks call the
    rows ``x``, an argument of ``log_prob``, not of ``compare``."""
    try:
        yield
    except (TypeError, ValueError) as e:
        given = " and c" if c is not None and _conditional(fit) else ""
        renamed = with_context(e, f"fits[{label!r}] ({type(fit.model).__name__}, "
                                  f"{fit.method!r}) cannot score heldout{given}")
        if renamed is None:
            raise
        raise renamed from e


def _truth_rows(truth: Any, heldout: Any) -> torch.Tensor:
    """``heldout`` as rows that ``truth`` scores: ``(M, D)`` for an event shape ``(D,)``,
    ``(M,)`` for a scalar truth (one column). Refuses a truth that cannot score them."""
    if not isinstance(truth, torch.distributions.Distribution):
        raise TypeError(f"truth must be a torch distribution, got {type(truth).__name__}")
    if tuple(truth.batch_shape):
        raise ValueError(f"truth must be one distribution (batch_shape ()), but got "
                         f"batch_shape {tuple(truth.batch_shape)}; pass "
                         f"torch.distributions.Independent(truth, {len(truth.batch_shape)})")
    event = tuple(truth.event_shape)
    if len(event) > 1:
        raise ValueError(f"truth must have draws of event shape () or (D,), got {event}")
    try:
        x = as_data(heldout, dim=event[0] if event else 1, name="heldout")
    except (TypeError, ValueError) as e:  # as_data's own checks: always renamed
        raise (with_context(e, f"with truth of event shape {event}") or e) from None
    return x[:, 0] if not event else x


def _row(fit: Fit, heldout: Any, truth: Any, truth_rows: Optional[torch.Tensor], cf: Any,
         loo: bool, y: Optional[torch.Tensor], seed: Optional[int],
         bandwidth: Optional[float], bin_width: Optional[float],
         train: bool = True, keep: Optional[torch.Tensor] = None,
         label: Any = None) -> Dict[str, Any]:
    """The table's row of one fit (the held-out log p is evaluated once, for the held-out
    columns and ``true_kl`` both: an estimate such as a VAE's is then the same number in
    both)."""
    nan = math.nan
    density = _has_density(fit)
    row: Dict[str, Any] = {"method": fit.method, "model": type(fit.model).__name__}
    lp = None
    if density:
        lp = fit.log_prob(heldout, c=cf)
        row.update(_heldout_columns(fit, heldout, cf, lp))
    else:
        row.update(heldout_log_prob=nan, heldout_log_prob_se=nan,
                   log_prob_kind=fit.log_prob_kind)
    k = fit.model.num_params()
    row.update(train_log_prob=nan, num_params=k, aic=nan, bic=nan, elpd_loo=nan,
               elpd_loo_se=nan, p_loo=nan, pareto_k_max=nan, loo_log_prob=nan,
               elpd_waic=nan, elpd_waic_se=nan, p_waic=nan)
    if fit.data is not None and density and train:
        row.update(_train_columns(fit, k, loo, label))
    if truth is not None:
        row.update(true_kl=nan, true_kl_se=nan)
        if density:
            assert truth_rows is not None and lp is not None  # computed above
            d = _log_prob_any_dtype(truth, truth_rows).double() - lp.double()
            row["true_kl"] = d.mean().item()
            row["true_kl_se"] = d.std().item() / math.sqrt(d.numel()) \
                if d.numel() > 1 else nan
    row.update(_sample_columns(fit, y, cf, seed, bandwidth, keep))
    if bin_width is not None:
        dim = fit.model.dim
        row["bits_per_dim"] = -(row["heldout_log_prob"] + dim * math.log(bin_width)) / (
            dim * math.log(2))
    return row


def _train_log_probs(fit: Fit) -> torch.Tensor:
    """``log p(x_i)`` of each training point ``(N,)`` (a posterior fit: the posterior
    predictive ``log (1/S) sum_s p(x_i | phi_s)``), the one way :func:`compare` and
    :func:`prior_sweep` score the training data."""
    assert fit.data is not None  # the callers check
    if fit.data.is_floating_point():
        return fit.log_prob(fit.data, c=fit.context)
    # token sequences are kept encoded (end-padded ids, which fit.log_prob would read as
    # the user's input): the family scores them as they are
    n = fit.data.shape[0]
    ll = fit.pointwise_log_likelihood()
    return ll.reshape(-1, n).logsumexp(0) - math.log(ll[..., 0].numel())


def _train_columns(fit: Fit, k: int, loo: bool, label: Any = None) -> dict:
    """Training log-likelihood, and AIC/BIC (point fits) or LOO/WAIC (posterior fits;
    ArviZ's warnings name the fit ``label``)."""
    assert fit.data is not None  # the caller checks
    n = fit.data.shape[0]
    total = _train_log_probs(fit).sum().item()
    out = {"train_log_prob": total / n}
    if not fit.is_posterior:
        if fit.log_prob_kind == "exact":  # of a bound or an estimate they are not AIC/BIC
            out.update(aic=2 * k - 2 * total, bic=k * math.log(n) - 2 * total)
    elif loo:
        import arviz as az

        idata = fit.to_arviz(posterior_predictive=False)
        res, w = arviz_warnings(f"fits[{label!r}]",
                                lambda: (az.loo(idata, pointwise=True), az.waic(idata)))
        out.update(elpd_loo=float(res["elpd_loo"]), elpd_loo_se=float(res["se"]),
                   p_loo=float(res["p_loo"]), pareto_k_max=float(res["pareto_k"].max()),
                   loo_log_prob=float(res["elpd_loo"]) / n)
        out.update(elpd_waic=float(w["elpd_waic"]), elpd_waic_se=float(w["se"]),
                   p_waic=float(w["p_waic"]))
    return out


@torch.no_grad()
def _log_prob_any_dtype(dist: torch.distributions.Distribution, x: torch.Tensor) -> torch.Tensor:
    """``dist.log_prob(x)``, casting x to float32 for a float32 distribution if needed."""
    try:
        return dist.log_prob(x)
    except RuntimeError:
        return dist.log_prob(x.float())


def prior_sweep(model: GenerativeModel, x: Any, *, prior_scales: Sequence[float],
                heldout: Any, plot: bool = False, ax: Optional[Axes] = None, seed: int = 0,
                progress: bool = False, **options: Any) -> pd.DataFrame:
    """Fit ``map`` for each prior scale, plus ``mle`` as the flat-prior limit.

    Args:
        model: a model whose constructor takes ``prior_scale`` (e.g. :class:`Gaussian`,
            or :class:`~pyro_genmodels.models.sequence.AutoregressiveModel`); its other
            settings are kept.
        x: training data, as ``model.fit`` takes it: rows, or for a sequence model a list
            of strings or token ids (their ``lengths`` or ``mask`` go in ``options``).
        prior_scales: positive prior scales to try.
        heldout: data to score every fit on, of the kind of ``x`` (held-out token ids: a
            list of sequences, or a LongTensor ``(M, L)`` read at full length); for a
            conditional model (``c=`` in ``options``) the pair ``(x_val, c_val)``, as
            ``validation=`` takes it. It is checked before the first fit; a text model
            without ``vocab`` checks it against the vocabulary its fits build from ``x``,
            so a held-out character that ``x`` lacks is an error (pass ``vocab=...`` to
            score such characters).
        plot: draw held-out log-likelihood against prior scale (log axis) with the MLE
            as a horizontal line; the figure is in ``table.attrs["figure"]``.
        ax: matplotlib axes to draw on (default: a new figure).
        seed, progress: passed to every
            :meth:`~pyro_genmodels.base.GenerativeModel.fit`. Every model of the sweep
            is built under ``seed`` too (one fresh seed for all when ``None``), so a
            network family's fits all start from the same initial weights, as the
            command line's ``--seed`` does: the sweep differs in the prior alone.
        **options: the method's options, passed to every fit.

    Returns:
        A DataFrame with one row per prior scale and a last row for ``mle``
        (``prior_scale = inf``): ``method``, ``prior_scale``, ``heldout_log_prob`` (mean
        log p per held-out point) and ``heldout_log_prob_se``, ``train_log_prob`` (mean
        log p per training point, as :func:`compare` computes it), ``error``. A refused
        map fit raises (a Gaussian with N <= D, say: no prior scale makes its map
        covariance exist, nor its MLE); a refused mle fit, whose likelihood may lack a
        maximum that the log joint has, leaves its row's scores NaN and the reason in
        ``error``.
    """
    config = model.get_config()
    if "prior_scale" not in config:
        raise TypeError(f"{type(model).__name__} has no prior_scale to sweep")
    if isinstance(prior_scales, (str, bytes)) or not isinstance(prior_scales, Iterable):
        raise TypeError(f"Expected prior_scales to be a list of positive numbers, but got "
                        f"{prior_scales!r} ({type(prior_scales).__name__})")
    if "method" in options:
        raise TypeError(f"prior_sweep chooses the method itself ('map' at each prior scale, "
                        f"then 'mle'), but got method={options['method']!r}")
    scales = [positive_float(s, f"prior_scales[{i}]") for i, s in enumerate(prior_scales)]
    if not scales:
        raise ValueError("prior_scales is empty: expected at least one positive scale")
    build_seed = fresh_seed() if check_seed(seed) is None else seed
    plot = check_bool(plot, "plot")
    if ax is not None and not hasattr(ax, "plot"):
        raise TypeError(f"Expected ax to be matplotlib axes, but got {ax!r}")
    given = {k: v for k, v in options.items()
             if k not in model.data_options and k not in ("c", "device")}
    for method in ("map", "mle"):  # an option one of them refuses: before any fit
        try:
            model.engine(method).options(method, **given)
        except (TypeError, ValueError) as e:
            raise type(e)(f"prior_sweep passes its options to every fit, map and mle: "
                          f"{e}") from None
    heldout, heldout_c = heldout_pair(heldout, conditional=model.is_conditional,
                                      owner=type(model).__name__, name="heldout")
    _check_heldout(model, x, heldout, options, heldout_c)  # before the first fit
    rows = []
    for method, scale in [("map", s) for s in sorted(scales)] + [("mle", math.inf)]:
        cfg = dict(config, prior_scale=config["prior_scale"] if method == "mle" else scale)
        row = {"method": method, "prior_scale": scale, "heldout_log_prob": math.nan,
               "heldout_log_prob_se": math.nan, "train_log_prob": math.nan, "error": ""}
        try:
            with warnings.catch_warnings():  # a strong prior is what the sweep looks at
                warnings.filterwarnings("ignore", message=STRONG_PRIOR)
                with seeded(build_seed):  # the same initial weights for every fit
                    member = type(model)(**cfg)
                fit = member.fit(x, method=method, seed=seed, progress=progress, **options)
        except ValueError as e:
            if method != "mle":
                raise
            row["error"] = str(e)
        else:
            row.update(_heldout_columns(fit, heldout, c=heldout_c))
            row.pop("log_prob_kind")
            row["train_log_prob"] = _train_log_probs(fit).mean().item()
        rows.append(row)
    table = pd.DataFrame(rows)
    if plot:
        table.attrs["figure"] = _plot_sweep(table, ax)
    return table


def _check_heldout(model: GenerativeModel, x: Any, heldout: Any,
                   options: Mapping[str, Any], heldout_c: Any = None) -> None:
    """Refuse a ``heldout`` that the fits of ``model`` on ``x`` could not score, before
    any fit. A model that its fit completes from the data (a text model builds its
    vocabulary from the training strings) is completed here the same way, by
    ``prepare_data``, the fit's first step; streamed ``x`` is not read here."""
    scorer = model
    if not streaming.is_stream(x):
        device = options.get("device")
        device = model._anchor.device if device is None else check_device(device)
        data_kw = {k: options[k] for k in model.data_options if k in options}
        scorer = model.prepare_data(x, options.get("c"), device=device, **data_kw)[0]
    try:
        rows = scorer.validate_data(heldout, name="heldout")
    except ValueError as e:
        if scorer is model:
            raise
        raise (with_context(e, f"{type(model).__name__} is completed from x by its fits "
                               f"(a text model: its vocabulary is the characters of x; pass "
                               f"vocab=... to score others), and heldout does not fit it")
               or e) from None
    if model.is_conditional:  # the conditions of the held-out rows
        heldout_conditions(scorer, heldout_c, rows.shape[0], name="heldout")


def _plot_sweep(table: pd.DataFrame, ax=None):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.5))
    else:
        fig = ax.figure
    maps = table[table["method"] == "map"]
    ax.errorbar(maps["prior_scale"], maps["heldout_log_prob"],
                yerr=maps["heldout_log_prob_se"], marker="o", label="MAP")
    mle = table[table["method"] == "mle"]["heldout_log_prob"].iloc[0]
    if math.isfinite(mle):
        ax.axhline(mle, color="k", linestyle="--", label="MLE (flat prior)")
    ax.set_xscale("log")
    ax.set_xlabel("prior scale")
    ax.set_ylabel("held-out log-likelihood per point")
    ax.legend()
    fig.tight_layout()
    return fig
