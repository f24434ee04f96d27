r"""A fitted score model: the learned score, three samplers (annealed Langevin, the
probability-flow ODE, predictor-corrector) and the ODE likelihood; all batched over the
n draws.

**Annealed Langevin** (Song & Ermon 2019, Alg. 1): for each level sigma_i, largest first,
``steps_per_level`` steps of

.. math::

    x \leftarrow x + \tfrac{\alpha_i}{2} s_\theta(x, \sigma_i) + \sqrt{\alpha_i}\, z,
    \qquad \alpha_i = \epsilon\, \sigma_i^2 / \sigma_L^2,

then (``denoise=True``) Tweedie's denoising step :math:`x + \sigma_L^2 s_\theta(x,
\sigma_L)` (Jolicoeur-Martineau et al. 2021), which removes the last level's blur. With
``step_size=None``, :math:`\epsilon` follows Song & Ermon's (2020) technique 4, derived
for this update: for a point mass blurred at each level, the variance ratio after T steps
at level i, started from the previous level's (ratio gamma^2), is
:math:`w_T = r^{2T}(\gamma^2 - w_*) + w_*` with :math:`r = 1 - e/2`,
:math:`w_* = 1 / (1 - e/4)`, :math:`e = \epsilon / \sigma_L^2`; :math:`\epsilon` is the
value on a fine grid that brings :math:`w_T` closest to 1.

Annealed Langevin starts from :math:`\mathcal N(m, \sigma_1^2 I)`, m the prior's mean
below (the training columns' mean in the networks' units, 0 when standardized; given c,
the mean predicted for c): a point mass at m blurred at the top level, the start that the
step rule assumes.

**Plain Langevin** (``sampler="langevin"``): the same chain at the smallest level only,
for ``num_levels * steps_per_level`` steps, from N(m, sigma_max^2 I), with the step
annealing takes at its middle level (``step_size`` given: alpha = step_size). Between
separated modes the score at small sigma carries no information about their weights,
so its draws get the mixture weights wrong; annealing is what fixes that (the tests,
the example and the demo show both). With the annealing's own smallest step it would
barely move from its start in that budget (measured: 7% of draws near a mode).

**The probability-flow ODE** of the variance-exploding SDE, :math:`dx / d\sigma =
-\sigma s_\theta(x, \sigma)`, from the prior below down to sigma_min, by
:mod:`~pyro_genmodels.infer.probability_flow` (torchdiffeq, adaptive).

**Predictor-corrector** (Song et al. 2021, Alg. 2, VE): from the prior,
``num_levels * steps_per_level`` geometric steps from sigma_max to sigma_min, each a
reverse-diffusion predictor :math:`x + (\sigma^2 - \sigma'^2) s + \sqrt{\sigma^2 -
\sigma'^2} z` and one Langevin corrector step with signal-to-noise ratio 0.16 (the step
from the batch's mean norms of the noise and the score, as Song et al.'s code does: a
per-row step blows up where a row's score is near zero).

**The prior** at sigma_max is the Gaussian with the blurred training columns' moments,

.. math::

    p_{\sigma_\max}(y) \approx \prod_d \mathcal N(y_d;\, m_d,\, s_d^2 + \sigma_\max^2),

m, s the columns' mean and sd in the networks' units (``unit_mean``, ``unit_sd``: 0 and 1
when standardized, so N(0, (1 + sigma_max^2) I)); exact for Gaussian data with a diagonal
covariance, and for any data as sigma_max grows past its spread. A conditional model's
ODE runs from :math:`p_{\sigma_\max}(y \mid c)`, so its prior is that of x given c:

.. math::

    p_{\sigma_\max}(y \mid c) \approx \prod_d \mathcal N\big(y_d;\,
    a_d + [z B]_d,\, r_d^2 + \sigma_\max^2\big),

z the context as the networks read it, a, B and r the least-squares intercept, slope and
residual sd of the training rows on z (``context_intercept``, ``context_slope``,
``residual_sd``; :func:`~pyro_genmodels._context.linear_prediction`; a stream's from its
sample of rows): each class's mean for one-hot contexts; exact for x linear in c with
independent Gaussian noise per column. The prior comes from the data, not
from the network: reading it off the learned score at sigma_max multiplies the score's
error by sigma_max^2 (measured: 3.353 against 3.313 bits per dimension on the
conditional digits example).

**The likelihood** is the ODE's, of the data blurred at sigma_min (``log_prob_kind ==
"estimate"``), with that prior at sigma_max.

Each option of :meth:`ScoreFit.sample` belongs to the samplers in :data:`SAMPLER_OPTIONS`;
one given to another sampler is an error, not ignored.
"""

from __future__ import annotations

import math
from typing import Any, List, Optional

import torch

from .._rng import seeded
from .._validation import check_bool, check_choice, positive_float, positive_int
from .._memory import _rows_of, chunk_seed, chunked, draw_count
from ..fit import Fit
from ..infer.probability_flow import (FlowLogProb, check_ode_options, flow_log_prob,
                                      flow_sample)

SAMPLERS = ("annealed_langevin", "langevin", "ode", "pc")
#: the estimators that :meth:`ScoreFit.log_prob` takes, the probability-flow ODE's only
#: (a diffusion fit's ``log_prob`` takes ``"bound"`` too)
ESTIMATORS = ("ode",)
#: the options of :meth:`ScoreFit.sample` that each sampler takes (besides n, c, seed)
SAMPLER_OPTIONS = {"annealed_langevin": ("steps_per_level", "step_size", "denoise"),
                   "langevin": ("steps_per_level", "step_size", "denoise"),
                   "ode": ("rtol", "atol"),
                   "pc": ("steps_per_level", "denoise")}
#: the documented defaults of those options, which a sampler that does not take an option
#: accepts (``step_size`` None is Song & Ermon's rule)
OPTION_DEFAULTS = {"steps_per_level": 100, "step_size": None, "denoise": True,
                   "rtol": 1e-5, "atol": 1e-5}
#: the corrector's signal-to-noise ratio (Song et al. 2021's value for VE). The corrector
#: is unadjusted Langevin with step 2 SNR^2 v at a level of variance v: its stationary
#: variance is v / (1 - SNR^2), so the draws' variance is 2.6% high (docs/score.md)
SNR = 0.16


def langevin_step_size(sigmas: torch.Tensor, steps_per_level: int) -> float:
    """epsilon of annealed Langevin by Song & Ermon's (2020) technique 4 (module doc)."""
    s = sigmas.double()
    gamma = float((s[:-1] / s[1:]).max()) if s.numel() > 1 else 1.0
    e = torch.logspace(-7, 0, 4000, dtype=torch.float64)  # e = eps / sigma_L^2 in (0, 1]
    w_star = 1 / (1 - e / 4)
    w = (1 - e / 2) ** (2 * steps_per_level) * (gamma ** 2 - w_star) + w_star
    return float(e[(w - 1).abs().argmin()] * s[-1] ** 2)


def annealed_langevin(model, n: int, c: Optional[torch.Tensor], *,
                      steps_per_level: int = 100, step_size: Optional[float] = None,
                      denoise: bool = True, anneal: bool = True,
                      sigmas: Optional[torch.Tensor] = None,
                      mean: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``n`` draws in the networks' units ``(n, D)`` (module docstring); ``model`` has
    ``dim``, ``sigmas`` (the levels, used unless ``sigmas`` is given) and
    ``score_unit(u, sigma, c)``; ``mean`` ``(D,)`` or ``(n, D)`` is the start's mean
    (None: 0; a ScoreModel's :func:`prior_mean`)."""
    sigmas = model.sigmas if sigmas is None else sigmas
    eps = step_size or langevin_step_size(sigmas, steps_per_level)
    x = torch.randn(n, model.dim, **model._factory) * sigmas[0]
    if mean is not None:
        x = mean + x
    levels = sigmas if anneal else sigmas[-1:].repeat(len(sigmas))
    last = sigmas[-1]
    if not anneal and step_size is None:  # the step annealing takes at its middle level
        eps = eps * float(sigmas[len(sigmas) // 2] / last) ** 2
    for sigma in levels:
        alpha = eps * (sigma / last) ** 2
        for _ in range(steps_per_level):
            x = x + 0.5 * alpha * model.score_unit(x, sigma, c) + alpha.sqrt() * torch.randn_like(x)
    if denoise:
        x = x + last ** 2 * model.score_unit(x, last, c)
    return x


def predictor_corrector(model, n: int, c: Optional[torch.Tensor], *, steps: int,
                        denoise: bool = True) -> torch.Tensor:
    """``n`` draws by the VE predictor-corrector sampler over ``steps`` steps, from the
    prior (module docstring)."""
    hi, lo = model.sigmas[0], model.sigmas[-1]
    grid = torch.exp(torch.linspace(float(hi.log()), float(lo.log()), steps + 1)).to(hi)
    x = prior_mean(model, c) + torch.randn(n, model.dim, **model._factory) * prior_sd(
        model, float(hi))
    for sigma, nxt in zip(grid[:-1], grid[1:]):
        var = sigma ** 2 - nxt ** 2
        x = x + var * model.score_unit(x, sigma, c) + var.sqrt() * torch.randn_like(x)
        s, z = model.score_unit(x, nxt, c), torch.randn_like(x)
        eps = 2 * (SNR * z.norm(dim=-1).mean() / s.norm(dim=-1).mean().clamp_min(1e-12)) ** 2
        x = x + eps * s + (2 * eps).sqrt() * z
    if denoise:
        x = x + lo ** 2 * model.score_unit(x, lo, c)
    return x


def _eps(model, c):
    """The ODE's field in the probability-flow module's form: eps(y, sigma) =
    -sigma s(y, sigma)."""
    return lambda y, sigma: -sigma * model.score_unit(y, sigma, c)


def prior_mean(model, c: Optional[torch.Tensor]) -> torch.Tensor:
    """The prior's mean (module docstring): ``model.unit_mean`` ``(D,)``, or given the
    context rows ``c`` ``(B, context_dim)`` of a conditional model, ``(B, D)``."""
    if c is None or getattr(model, "context_dim", None) is None:
        return model.unit_mean
    z = model.context_unit(c).to(model.unit_mean)
    return model.context_intercept + z @ model.context_slope


def prior_sd(model, sigma_max: float) -> torch.Tensor:
    r"""The prior's sd per column ``(D,)``, :math:`\sqrt{s^2 + \sigma_\max^2}` (a
    conditional model: :math:`\sqrt{r^2 + \sigma_\max^2}`; its mean is
    :func:`prior_mean`), computed in float64 as a Python float would be."""
    sd = _spread(model)
    return (sd.double() ** 2 + sigma_max ** 2).sqrt().to(sd)


def _spread(model) -> torch.Tensor:
    """s (``unit_sd``), or r (``residual_sd``) for a conditional model ``(D,)``."""
    return model.unit_sd if getattr(model, "context_dim", None) is None else model.residual_sd


def _prior(model, sigma_max: float, c: Optional[torch.Tensor]):
    """log N(y; m, diag(s^2) + sigma_max^2 I) of rows ``y`` ``(B, D)``, ``(B,)`` (module
    docstring; given ``c`` ``(B, context_dim)``, the conditional prior's)."""
    mean = prior_mean(model, c)
    var = _spread(model).double() ** 2 + sigma_max ** 2  # (D,)
    norm = float((2 * math.pi * var).log().sum())
    var = var.to(mean)

    def log_prob_diag(y: torch.Tensor) -> torch.Tensor:
        return -0.5 * (((y - mean).pow(2) / var).sum(-1) + norm)
    return log_prob_diag


def ode_log_prob(model, x: torch.Tensor, c: Optional[torch.Tensor], *, trace: str = "auto",
                 num_probes: int = 1, seed: Optional[int] = 0, rtol: float = 1e-5,
                 atol: float = 1e-5) -> FlowLogProb:
    """The ODE log-likelihood of rows ``x`` on the data's scale."""
    lo, hi = float(model.sigmas[-1]), float(model.sigmas[0])
    res = flow_log_prob(_eps(model, c), model.to_unit(x), sigma_min=lo, sigma_max=hi,
                        prior_log_prob=_prior(model, hi, c), trace=trace,
                        num_probes=num_probes, seed=seed, rtol=rtol, atol=atol)
    return FlowLogProb(res.log_prob - model.log_scale(), res.nfe, res.trace,
                       res.num_probes)


class ScoreFit(Fit):
    """A fitted :class:`~pyro_genmodels.models.score.ScoreModel`: ``score``, ``sample``
    by four samplers, ``log_prob`` and ``probability_flow`` through the ODE."""

    @property
    def log_prob_kind(self) -> str:
        """``"estimate"`` (the ODE's), or ``"none"`` for a model of a single level
        (``sigmas=[s]``), whose ODE has no range of levels to run over: ``pgm.compare``,
        the report and the CLI then score its draws, as a GAN's."""
        return "none" if len(self.model.sigmas) < 2 else super().log_prob_kind

    @torch.no_grad()
    def score(self, x: Any, *, sigma: Optional[float] = None, c: Any = None) -> torch.Tensor:
        """The learned score of the data blurred at ``sigma`` (standardized units; default
        the smallest level), on the data's scale: grad_x log p_sigma(x), ``(N, D)``."""
        model = self.model
        x = self._as_input(x)
        c = self._as_context(c, x.shape[0])
        s = model.sigmas[-1] if sigma is None else torch.tensor(
            positive_float(sigma, "sigma"), **self._factory)
        out = model.score_unit(model.to_unit(x), s, c)
        return out / model.x_scale if model.standardize else out

    @torch.no_grad()
    def sample(self, n: int, *, sampler: str = "annealed_langevin",
               steps_per_level: Optional[int] = None, step_size: Optional[float] = None,
               denoise: Optional[bool] = None, c: Any = None, seed: Optional[int] = None,
               rtol: Optional[float] = None, atol: Optional[float] = None) -> torch.Tensor:
        """``n`` draws ``(n, D)`` on the data's scale (module docstring).

        Args:
            n: the number of draws.
            sampler: ``"annealed_langevin"``, ``"langevin"`` (the smallest level only: for
                comparison), ``"ode"`` or ``"pc"``.
            steps_per_level: Langevin steps per level (``pc``: predictor steps per level);
                default 100.
            step_size: Langevin's epsilon; ``None``: Song & Ermon's (2020) rule.
            denoise: the final Tweedie step (default True; all but ``ode``, which ends at
                sigma_min).
            rtol, atol: the ODE solver's tolerances (default 1e-5).
            c: ``(n, context_dim)`` or one row for all (conditional models).
            seed: the same seed, the same draws; ``None``: a fresh seed. The caller's
                RNG is left untouched.

        An option of another sampler than ``sampler`` (:data:`SAMPLER_OPTIONS`: e.g.
        ``steps_per_level`` with ``"ode"``, ``step_size`` with ``"pc"``) is an error,
        not ignored, unless it is at its documented default (:data:`OPTION_DEFAULTS`).
        The draws are made in chunks of rows (:meth:`~pyro_genmodels.Fit.sample`'s
        memory bound) from one random stream; ``pc`` takes its corrector step from each
        chunk's mean norms.
        """
        model = self.model
        n = draw_count(n)
        check_choice(sampler, SAMPLERS, "sampler")
        takes = SAMPLER_OPTIONS[sampler]
        given = {"steps_per_level": steps_per_level, "step_size": step_size,
                 "denoise": denoise, "rtol": rtol, "atol": atol}
        for name, value in given.items():
            # an option at its documented default changes nothing: sample(n) is
            # sample(n, steps_per_level=100, denoise=True) whatever the sampler
            at_default = isinstance(value, (int, float)) and value == OPTION_DEFAULTS[name]
            if value is not None and name not in takes and not at_default:
                users = [s for s in SAMPLERS if name in SAMPLER_OPTIONS[s]]
                raise ValueError(
                    f"{name} applies to sampler={' or '.join(map(repr, users))} only, but "
                    f"sampler={sampler!r}, which takes {', '.join(takes)} (and n, c, seed)")
        steps_per_level = positive_int(100 if steps_per_level is None else steps_per_level,
                                       "steps_per_level")
        if step_size is not None:
            step_size = positive_float(step_size, "step_size")
        denoise = True if denoise is None else check_bool(denoise, "denoise")
        rtol = 1e-5 if rtol is None else positive_float(rtol, "rtol")
        atol = 1e-5 if atol is None else positive_float(atol, "atol")
        settings = {"steps_per_level": steps_per_level, "step_size": step_size,
                    "denoise": denoise, "rtol": rtol, "atol": atol}
        if sampler == "ode":
            self._check_level_range("sample(sampler='ode')")
        c = self._as_context(c, n)

        def part(a: int, b: int) -> torch.Tensor:
            k, cb = b - a, _rows_of(c, a, b)
            if sampler in ("annealed_langevin", "langevin"):
                u = annealed_langevin(model, k, cb, steps_per_level=steps_per_level,
                                      step_size=step_size, denoise=denoise,
                                      anneal=sampler == "annealed_langevin",
                                      mean=prior_mean(model, cb))
            elif sampler == "pc":
                u = predictor_corrector(model, k, cb, steps=steps_per_level * len(model.sigmas),
                                        denoise=denoise)
            else:
                hi = float(model.sigmas[0])
                y = prior_mean(model, cb) + torch.randn(k, model.dim,
                                                        **model._factory) * prior_sd(model, hi)
                u = flow_sample(_eps(model, cb), y, sigma_min=float(model.sigmas[-1]),
                                sigma_max=hi, rtol=rtol, atol=atol)
            if not bool(torch.isfinite(u).all()):  # Langevin has no accept/reject step
                used = ", ".join(f"{k}={v!r}" for k, v in settings.items() if k in takes)
                raise ValueError(
                    f"The {sampler} sampler diverged (non-finite draws) with {used}: "
                    + ("use a smaller step_size (None: Song & Ermon's rule)"
                       if "step_size" in takes else "check the fit's scores"))
            return model.from_unit(u)
        with seeded(seed):  # chunk after chunk from one stream
            return chunked(n, self._rows(), part)

    @torch.no_grad()
    def log_prob(self, x: Any, *, c: Any = None, estimator: Optional[str] = None,
                 seed: Optional[int] = 0, **ode_options: Any) -> torch.Tensor:
        """The probability-flow ODE's log-likelihood of each row ``(N,)``, of the data
        blurred at sigma_min (an estimate: ``log_prob_kind == "estimate"``); see
        :meth:`probability_flow` for ``ode_options``
        (:data:`~pyro_genmodels.infer.probability_flow.ODE_OPTIONS`). ``estimator`` is
        ``"ode"`` or ``None`` (the same: the ODE is a score model's only likelihood;
        taken so that code written for a diffusion fit's ``estimator`` runs here too).
        Any other estimator or option is refused before any work."""
        ode_options = check_ode_options(ode_options, caller="ScoreFit.log_prob",
                                        takes=("c", "estimator", "seed"))
        if estimator is not None and (not isinstance(estimator, str)
                                      or estimator not in ESTIMATORS):
            raise ValueError(f"Unknown estimator {estimator!r} for a ScoreModel: its "
                             f"log_prob is always the probability-flow ODE estimate; "
                             f"expected estimator='ode' or None")
        return self.probability_flow(x, c=c, seed=seed, **ode_options).log_prob

    @torch.no_grad()
    def probability_flow(self, x: Any, *, c: Any = None, trace: str = "auto",
                         num_probes: int = 1, seed: Optional[int] = 0, rtol: float = 1e-5,
                         atol: float = 1e-5, **unknown: Any) -> FlowLogProb:
        """The ODE log-likelihood with the solver's ``nfe`` and how the divergence was
        taken (exact up to 8 columns, Hutchinson's estimator with ``num_probes`` probes
        above, or as ``trace`` asks; ``num_probes`` with ``trace="exact"`` is refused, as
        is any other keyword). The rows are solved in chunks
        (:meth:`~pyro_genmodels.Fit.log_prob`'s memory bound), each with its own adaptive
        steps and probes (:func:`~pyro_genmodels._memory.chunk_seed`); ``nfe`` is the largest
        chunk's."""
        opts = check_ode_options({"trace": trace, "num_probes": num_probes, "rtol": rtol,
                                  "atol": atol, **unknown},
                                 caller="ScoreFit.probability_flow", takes=("c", "seed"))
        self._check_level_range("log_prob")
        x = self._as_input(x)
        c = self._as_context(c, x.shape[0])
        runs: List[FlowLogProb] = []

        def part(a: int, b: int) -> torch.Tensor:
            res = ode_log_prob(self.model, x[a:b], _rows_of(c, a, b),
                               seed=chunk_seed(seed, len(runs)), **opts)
            runs.append(res)
            return res.log_prob
        out = chunked(x.shape[0], self._rows(self._ode_factor()), part)
        return FlowLogProb(out, max(r.nfe for r in runs), runs[0].trace, runs[0].num_probes)

    def _check_level_range(self, what: str) -> None:
        """The probability-flow ODE runs from the largest level down to the smallest: a
        model of one level (``sigmas=[s]``) trains and samples by Langevin, but has no
        range to integrate over."""
        if len(self.model.sigmas) < 2:
            raise ValueError(
                f"{what} integrates the probability-flow ODE from the largest noise level "
                f"down to the smallest, but this ScoreModel has a single level "
                f"(sigmas={self.model.sigmas.tolist()}); fit one with at least two "
                f"(num_levels >= 2, or two or more sigmas)")

    def _ode_factor(self) -> int:
        """How many more numbers per row the likelihood's ODE holds than a network pass:
        the graph of every layer, kept for the divergence, and the solver's stages."""
        return 2 * max(1, len(self.model.hidden or (256,)))


__all__ = ["ESTIMATORS", "OPTION_DEFAULTS", "SAMPLERS", "SAMPLER_OPTIONS", "ScoreFit",
           "annealed_langevin", "langevin_step_size", "ode_log_prob", "predictor_corrector",
           "prior_mean", "prior_sd"]
