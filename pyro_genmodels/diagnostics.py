r"""Simulation-based calibration (SBC; Talts, Betancourt, Simpson, Vehtari and Gelman
2018, "Validating Bayesian inference algorithms with simulation-based calibration").

If :math:`\tilde\theta \sim p(\theta)`, :math:`\tilde x \sim p(x \mid \tilde\theta)` and
:math:`\theta_1, \dots, \theta_L` are independent draws of the posterior
:math:`p(\theta \mid \tilde x)`, then for any scalar statistic :math:`f` the rank

.. math:: r = \#\{\, l : f(\theta_l) < f(\tilde\theta) \,\}

is uniform on :math:`\{0, \dots, L\}`, because :math:`\tilde\theta` is itself a draw of
the same posterior (the joint :math:`p(\theta) p(x \mid \theta)` factors the other way).
A sampler that is wrong in any way that moves the posterior, too narrow, too wide, biased,
stuck in one mode, makes the ranks non-uniform: a U shape for a too narrow posterior, a
hump for a too wide one, a slope for a biased one. :func:`sbc` repeats the simulation
``num_replicates`` times and tests the histogram of the ranks of each statistic (grouped
into ``num_bins`` bins) for uniformity with Pearson's chi-square test.

The draws must be close to independent: autocorrelated MCMC draws make the histogram
too peaked even for a correct sampler, so :func:`sbc` thins each fit's draws evenly to
``num_draws`` (give more draws than that, and look at the fits' ESS). Statistics must be
identified: for a mixture, whose labels the posterior may permute, pass ``statistics``
invariant to the labels (the sorted component means, say).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from typing import Any, Callable, Dict, Mapping, Optional

import pandas as pd
import pyro
import torch

from ._rng import check_seed, child_seeds, seeded
from ._validation import positive_int
from .models._checks import STRONG_PRIOR

#: A statistic function, ``{site: (n, *shape)}`` draws to ``{name: (n,)}`` scalars.
Statistics = Callable[[Dict[str, torch.Tensor]], Dict[str, torch.Tensor]]

#: the methods that give posterior draws
POSTERIOR_METHODS = ("nuts", "hmc", "chees", "vi")


@dataclasses.dataclass(frozen=True)
class SBCResult:
    """What :func:`sbc` found.

    Attributes:
        ranks: ``{statistic: (num_replicates,)}`` int64 ranks in ``0..num_draws``.
        num_draws: L, the posterior draws each rank is taken among.
        num_bins: the bins of the rank histogram that the test groups ranks into.
        table: per statistic, ``chi2``, ``dof`` and ``p_value`` of the uniformity test.
        level: the test's family-wise level; each statistic is tested at
            ``level / len(ranks)`` (Bonferroni).
        passed: whether every statistic's p-value is above ``level / len(ranks)``.
        figure: the rank histograms (matplotlib), with the band that holds 99% of a
            uniform histogram's bins, or ``None`` when ``plot=False``.
    """

    ranks: Dict[str, torch.Tensor]
    num_draws: int
    num_bins: int
    table: pd.DataFrame
    level: float
    passed: bool
    figure: Any = None


def scalar_components(draws: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The default statistics: every scalar component of every site, named ``site[i,j]``
    (``site`` for a scalar site). ``draws``: ``{site: (n, *shape)}``."""
    out: Dict[str, torch.Tensor] = {}
    for site, value in draws.items():
        flat = value.reshape(value.shape[0], -1)
        shape = tuple(value.shape[1:])
        for j in range(flat.shape[1]):
            index = ",".join(str(i) for i in _unravel(j, shape))
            out[f"{site}[{index}]" if shape else site] = flat[:, j]
    return out


def _unravel(j: int, shape: tuple) -> list:
    index = []
    for size in reversed(shape):
        index.append(j % size)
        j //= size
    return index[::-1]


def ranks_of(truth: Mapping[str, torch.Tensor], draws: Mapping[str, torch.Tensor]
             ) -> Dict[str, int]:
    """The SBC rank of each statistic: ``truth`` ``{name: ()}`` (or ``(1,)``) values of
    the simulated parameter, ``draws`` ``{name: (L,)}`` posterior draws; the rank is the
    number of draws below the truth, in ``0..L``."""
    return {k: int((draws[k].reshape(-1) < truth[k].reshape(())).sum()) for k in truth}


def rank_test(ranks: Mapping[str, torch.Tensor], num_draws: int, num_bins: int
              ) -> pd.DataFrame:
    """Pearson's chi-square test of each statistic's ranks (``(R,)`` in ``0..num_draws``)
    against the uniform distribution, over ``num_bins`` bins of ``(num_draws + 1) /
    num_bins`` ranks each: columns ``chi2``, ``dof`` (``num_bins - 1``), ``p_value``."""
    from scipy import stats

    num_draws = positive_int(num_draws, "num_draws")
    num_bins = positive_int(num_bins, "num_bins")
    _check_bins(num_draws, num_bins)
    if not ranks:
        raise ValueError("ranks is empty: expected {statistic: (R,) ranks} for at least "
                         "one statistic")
    width = (num_draws + 1) // num_bins
    rows = {}
    for name, r in ranks.items():
        r = torch.as_tensor(r)
        if r.dim() != 1 or r.dtype == torch.bool or r.is_floating_point() \
                or r.is_complex() or r.numel() == 0 or int(r.min()) < 0 \
                or int(r.max()) > num_draws:
            whole = r.numel() and r.dtype != torch.bool and not (r.is_floating_point()
                                                                  or r.is_complex())
            raise ValueError(f"ranks[{name!r}] must be a non-empty 1-D tensor of integers "
                             f"in 0..{num_draws}, but got {r.dtype} of shape "
                             f"{tuple(r.shape)}" + (f" in {int(r.min())}..{int(r.max())}"
                                                    if whole else ""))
        r = r.long()
        counts = torch.bincount(r // width, minlength=num_bins).double().numpy()
        chi2, p = stats.chisquare(counts)
        rows[name] = {"chi2": float(chi2), "dof": num_bins - 1, "p_value": float(p)}
    return pd.DataFrame.from_dict(rows, orient="index")


def _check_bins(num_draws: int, num_bins: int) -> None:
    if (num_draws + 1) % num_bins:
        raise ValueError(f"num_draws + 1 must be a multiple of num_bins (equal bins of "
                         f"ranks), got num_draws={num_draws}, num_bins={num_bins}")


def sbc(model: Any, method: str = "nuts", *, num_replicates: int = 200, num_data: int = 20,
        num_draws: int = 99, num_bins: int = 20, statistics: Optional[Statistics] = None,
        seed: Optional[int] = 0, level: float = 0.01, plot: bool = True,
        progress: bool = False, **options: Any) -> SBCResult:
    """Simulation-based calibration of ``model.fit(x, method=method, **options)``.

    For replicate r: draw phi from the model's prior and ``num_data`` rows x from
    p(x | phi) by running its Pyro program with no data (under seed s_2r); fit x by
    ``method`` (seed s_2r+1, so the sampler's random numbers are not the simulation's);
    thin the posterior draws evenly to ``num_draws``; record the rank
    of each statistic of phi among those of the draws. Then test each statistic's ranks
    for uniformity (:func:`rank_test`; Bonferroni over the statistics).

    Args:
        model: a family with a prior on its global parameters (``prior_sites``) and data
            that are numeric rows (Gaussian, GaussianMixture, PPCA, ...), unconditional.
        method: a posterior method of the family: ``nuts``, ``hmc``, ``chees`` or ``vi``.
        num_replicates: R, simulated data sets (at least 2).
        num_data: N, rows per simulated data set.
        num_draws: L, posterior draws each rank is taken among (each fit must give at
            least L, ``num_samples x num_chains`` or ``num_posterior_samples`` with the
            method's defaults for those not given, checked before any fit; the draws are
            thinned evenly to L).
        num_bins: bins of the rank histogram; ``num_draws + 1`` must be a multiple of it.
        statistics: ``{site: (n, *shape)} -> {name: (n,)}``, the scalar functions of phi
            to rank, each value a real tensor of shape ``(n,)`` (not a Python float; a
            ``ValueError`` otherwise, raised on the simulated parameters, n = 1, before
            any fit) with the same names on every call
            (default: :func:`scalar_components`); components that are constant
            across the replicates (the unit diagonal of a correlation Cholesky factor)
            are left out.
        seed: the seeds s_0, ..., s_2R-1 of the replicates are spawned from it
            (by NumPy's ``SeedSequence.spawn``: independent streams; ``None``: 0).
        level: the family-wise level of the uniformity tests.
        plot: draw the rank histograms.
        progress: a line per replicate.
        **options: fit options (``num_samples``, ``warmup_steps``, ``num_chains``, ...).

    Returns:
        An :class:`SBCResult`.
    """
    num_replicates = positive_int(num_replicates, "num_replicates")
    if num_replicates < 2:
        raise ValueError(f"num_replicates must be at least 2, got {num_replicates}")
    num_data = positive_int(num_data, "num_data")
    num_draws = positive_int(num_draws, "num_draws")
    num_bins = positive_int(num_bins, "num_bins")
    _check_bins(num_draws, num_bins)
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    seed = check_seed(seed)
    # two independent streams per replicate, spawned from the seed (seed + 2r and
    # seed + 2r + 1 made the data sets of seed 2 those of seed 0, one replicate on)
    seeds = child_seeds(0 if seed is None else seed, 2 * num_replicates)
    _check_model(model, method)
    _check_draws(model, method, num_draws, options)
    if statistics is not None and not callable(statistics):
        raise TypeError(f"statistics must be a function {{site: (n, *shape) draws}} -> "
                        f"{{name: tensor of shape (n,)}}, but got {type(statistics).__name__}")
    statistic = statistics or scalar_components
    simulated, truths = [], []
    for r in range(num_replicates):  # every data set first: cheap, and checked before fits
        with seeded(seeds[2 * r]):
            trace = pyro.poutine.trace(model.model).get_trace(None, num_data=num_data)
        phi = {k: trace.nodes[k]["value"].detach() for k in model.global_sites}
        simulated.append(trace.nodes["_RETURN"]["value"].detach())
        truth = _checked(statistic({k: v.unsqueeze(0) for k, v in phi.items()}), 1,
                         list(truths[0]) if truths else None)
        truths.append({k: v.reshape(()) for k, v in truth.items()})
    names = [k for k in truths[0] if len({float(t[k]) for t in truths}) > 1]
    if not names:
        raise ValueError(f"every statistic ({', '.join(truths[0]) or 'none'}) took one "
                         f"value in all {num_replicates} simulated parameters: their ranks "
                         f"test nothing; expected statistics that vary with the parameter")
    ranked = []
    for r, x in enumerate(simulated):
        with warnings.catch_warnings():  # the prior made the data: it is meant to be strong
            warnings.filterwarnings("ignore", message=STRONG_PRIOR)
            fit = model.fit(x, method=method, seed=seeds[2 * r + 1], progress=False, **options)
        draws = fit.posterior_samples()
        total = next(iter(draws.values())).shape[0]
        if total < num_draws:
            raise ValueError(f"each fit must give at least num_draws={num_draws} posterior "
                             f"draws, the {method!r} fit gave {total}: raise num_samples "
                             f"(or num_chains)")
        keep = torch.linspace(0, total - 1, num_draws).round().long()
        thinned = _checked(statistic({k: draws[k][keep] for k in model.global_sites}),
                           num_draws, list(truths[r]))
        ranked.append(ranks_of(truths[r], thinned))
        if progress:
            print(f"[sbc] replicate {r + 1}/{num_replicates}", flush=True)
    ranks = {k: torch.tensor([rk[k] for rk in ranked], dtype=torch.long) for k in names}
    table = rank_test(ranks, num_draws, num_bins)
    passed = bool((table["p_value"] > level / max(len(names), 1)).all())
    figure = _plot(ranks, num_draws, num_bins) if plot else None
    return SBCResult(ranks, num_draws, num_bins, table, float(level), passed, figure)


def _check_model(model: Any, method: str) -> None:
    from .base import GenerativeModel

    if not isinstance(model, GenerativeModel):
        raise TypeError(f"model must be a GenerativeModel, got {type(model).__name__}")
    if method not in POSTERIOR_METHODS:
        raise ValueError(f"method must be a posterior method, one of {POSTERIOR_METHODS}, "
                         f"got {method!r}")
    if method not in model.capabilities.methods:
        raise ValueError(f"{type(model).__name__} has no method {method!r}; its methods: "
                         f"{model.capabilities.methods}")
    if not model.global_sites or getattr(model, "context_dim", None) is not None:
        raise TypeError(f"sbc needs an unconditional family with a prior on its global "
                        f"parameters; {type(model).__name__} has global sites "
                        f"{model.global_sites}")
    if type(model).prepare_data is not GenerativeModel.prepare_data:
        raise TypeError(f"sbc simulates data sets of numeric rows from the program; "
                        f"{type(model).__name__}'s data are encoded first (token "
                        f"sequences), which sbc does not do")


def _checked(values: Any, n: int, names: Optional[list]) -> Dict[str, torch.Tensor]:
    """``values``, what the statistics function returned for ``n`` draws of phi, if it is
    ``{name: tensor of shape (n,)}`` (real), with the ``names`` of the first call when
    given; else a ``ValueError`` that says what came (a float, a wrong shape, a name
    missing)."""
    def got(v: Any) -> str:
        if isinstance(v, torch.Tensor):
            return f"a {v.dtype} tensor of shape {tuple(v.shape)}"
        return f"{type(v).__name__} {v!r}"[:80]

    expected = f"statistics must return {{name: tensor of shape (n,)}}, here n = {n}"
    if not isinstance(values, Mapping):
        raise ValueError(f"{expected}, but got {got(values)}")
    for k, v in values.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor) \
                or tuple(v.shape) != (n,) or v.is_complex():
            raise ValueError(f"{expected}, but got {k!r}: {got(v)}")
    if names is not None and set(values) != set(names):
        raise ValueError(f"{expected}, the same names on every call: the first gave "
                         f"{names}, this one {list(values)}")
    return dict(values)


def _resolved(model: Any, method: str, options: Dict[str, Any]) -> Any:
    """The options record that ``model.fit(x, method=method, **options)`` runs with: the
    engine's own resolution (the given options, else the family's defaults, else the
    record's), which refuses an unknown option before the first fit."""
    given = {k: v for k, v in options.items()
             if k != "device" and k not in model.data_options}  # what fit takes apart
    return model.engine(method).options(method, **given)


def _check_draws(model: Any, method: str, num_draws: int, options: Dict[str, Any]) -> None:
    """Each fit must give at least ``num_draws`` posterior draws: ``num_posterior_samples``
    (``vi``) or ``num_samples * num_chains``, as the fit resolves them (the options given,
    else the method's defaults, e.g. 4 chains for ``chees``), checked before the first
    fit."""
    opts = _resolved(model, method, options)
    if method == "vi":
        given = getattr(opts, "num_posterior_samples", None)
    else:
        samples = getattr(opts, "num_samples", None)
        chains = getattr(opts, "num_chains", None)
        given = samples * chains if isinstance(samples, int) and isinstance(chains, int) \
            else None
    if isinstance(given, int) and given < num_draws:
        how = "" if method == "vi" else f" (num_samples={samples} x num_chains={chains})"
        raise ValueError(f"each fit must give at least num_draws={num_draws} posterior "
                         f"draws, the {method!r} options give {given}{how}")


def _plot(ranks: Mapping[str, torch.Tensor], num_draws: int, num_bins: int) -> Any:
    """One rank histogram per statistic, with the band that holds 99% of the bins of a
    uniform histogram (binomial(R, 1 / num_bins) quantiles)."""
    import matplotlib.pyplot as plt
    from scipy import stats

    names = list(ranks)
    cols = min(4, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    width = (num_draws + 1) // num_bins
    for ax, name in zip(axes.flat, names):
        r = ranks[name]
        n = r.numel()
        lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / num_bins)
        ax.axhspan(lo, hi, color="0.85")
        ax.axhline(n / num_bins, color="0.5", lw=0.8)
        counts = torch.bincount(r // width, minlength=num_bins).numpy()
        ax.bar(range(num_bins), counts, width=1.0, color="tab:blue", alpha=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"rank bin ({width} ranks each)")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


__all__ = ["POSTERIOR_METHODS", "SBCResult", "Statistics", "rank_test", "ranks_of",
           "sbc", "scalar_components"]
