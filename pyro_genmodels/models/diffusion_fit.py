r"""A fitted diffusion model: its samplers (ancestral, DDIM, the probability-flow ODE),
its two likelihoods (the bound and the ODE) and bits per dimension.

**Ancestral sampling** runs the model's chain: :math:`x_T \sim \mathcal N(0, I)`, then
:math:`x_{t-1} = \mu_\theta(x_t, t) + \sigma_t z` for t = T..2, and the last step returns
the decoder's mean :math:`\mu_\theta(x_1, 1)` without noise (Ho et al.'s convention for
displayed samples; the decoder's sd is :math:`\sqrt{\beta_1}`, about 0.006 standardized
units for the cosine schedule at T = 1000).

**DDIM** (Song, Meng & Ermon 2021, eq. 12) visits a decreasing subsequence of ``steps``
steps (:func:`ddim_steps`); from t to s < t, with :math:`\hat x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\,\hat\epsilon)
/ \sqrt{\bar\alpha_t}`,

.. math::

    x_s = \sqrt{\bar\alpha_s}\, \hat x_0 + \sqrt{1 - \bar\alpha_s - \eta^2 \varsigma^2}\,
      \hat\epsilon + \eta \varsigma z, \qquad
    \varsigma^2 = \frac{1 - \bar\alpha_s}{1 - \bar\alpha_t}
      \Big(1 - \frac{\bar\alpha_t}{\bar\alpha_s}\Big).

``eta = 0`` is deterministic; ``eta = 1`` with every step is the ancestral sampler
(:math:`\eta^2 \varsigma^2 = \tilde\beta_t`), draw for draw under one seed. Few steps
work because the default network is preconditioned
(:class:`~pyro_genmodels.models.diffusion.Preconditioned`): under the cosine schedule
the first 20-step DDIM step takes sigma from 2e4 to 13 in one Euler step, which
amplified an unpreconditioned network's error there a thousandfold (MMD 0.21 to the
data against 0.0003 for ancestral sampling, measured).

**The probability-flow ODE** (Song et al. 2021) in the variables
:math:`y = x_t / \sqrt{\bar\alpha_t}`, :math:`\sigma = \sqrt{(1 - \bar\alpha_t) /
\bar\alpha_t}`: :math:`dy / d\sigma = \hat\epsilon(y / \sqrt{1 + \sigma^2}, t(\sigma))`,
from :math:`y_T = x_T \sqrt{1 + \sigma_T^2}` (:math:`x_T \sim \mathcal N(0, I)`) down to
``sigma_min``; the likelihood adds the integral of the divergence
(:mod:`~pyro_genmodels.infer.probability_flow`). It is the density of a continuous
normalizing flow built from the same network, so it is an *estimate* of the model's
density (the chain's own density is not tractable), a different number from the bound.

Bits per dimension are every fit's (:meth:`~pyro_genmodels.fit.Fit.bits_per_dim`), here
with ``estimator="bound"`` or ``"ode"`` passed on to :meth:`DiffusionFit.log_prob`.
"""

from __future__ import annotations

import copy
import math
from typing import Any, List, Optional

import torch

from .._rng import seeded
from .._validation import check_choice, nonnegative_float, positive_float, positive_int
from .._memory import _rows_of, chunk_seed, chunked, draw_count
from ..fit import Fit
from ..infer.probability_flow import (FlowLogProb, check_ode_options, flow_log_prob,
                                      flow_sample)

SAMPLERS = ("ancestral", "ddim", "ode")
ESTIMATORS = ("bound", "ode")
#: sigma at which the probability-flow ODE stops (the model's sigma_1 is about 6e-3 for
#: the cosine schedule at T = 1000): the density there differs from sigma = 0 by
#: O(sigma_min^2) relative to the data's finest scale
SIGMA_MIN = 1e-3


def _steps(model, n: int, t: int) -> torch.Tensor:
    return torch.full((n,), t, device=model._anchor.device, dtype=torch.long)


def ancestral(model, n: int, c: Optional[torch.Tensor], guidance: Optional[float]
              ) -> torch.Tensor:
    """``n`` draws of the reverse chain in the networks' units ``(n, D)``."""
    sched = model.schedule
    u = torch.randn(n, model.dim, **model._factory)
    for t in range(model.timesteps, 0, -1):
        step = _steps(model, n, t)
        u = sched.reverse_mean(u, step, model.guided_eps(u, step, c, guidance))
        if t > 1:
            u = u + sched.var[t].sqrt() * torch.randn_like(u)
    return u


def ddim(model, n: int, c: Optional[torch.Tensor], guidance: Optional[float], steps: int,
         eta: float) -> torch.Tensor:
    """``n`` DDIM draws over ``steps`` steps in the networks' units ``(n, D)``."""
    sched = model.schedule
    path = ddim_steps(sched, steps) + [0]
    u = torch.randn(n, model.dim, **model._factory)
    for t, s in zip(path[:-1], path[1:]):
        e = model.guided_eps(u, _steps(model, n, t), c, guidance)
        x0 = (u - sched.sqrt_1m_abar[t] * e) / sched.sqrt_abar[t]
        var = eta ** 2 * (1 - sched.abar[s]) / (1 - sched.abar[t]) * (
            1 - sched.abar[t] / sched.abar[s])
        u = sched.sqrt_abar[s] * x0 + (1 - sched.abar[s] - var).clamp_min(0).sqrt() * e
        if s > 0 and eta > 0:
            u = u + var.sqrt() * torch.randn_like(u)
    return u


def ddim_steps(schedule, steps: int) -> list:
    """DDIM's decreasing steps: ``steps`` steps spaced uniformly in t from T down to 1
    (Song, Meng & Ermon 2021), all T when ``steps == T``."""
    T = schedule.timesteps
    ts = torch.linspace(T, 1, min(steps, T), dtype=torch.float64).round().long()
    return ts.unique_consecutive().tolist()


def _ode_eps(model, c: Optional[torch.Tensor], guidance: Optional[float]):
    """The ODE's field eps(y, sigma) for rows conditioned on ``c``."""
    def eps(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        t = model.schedule.time_of(sigma).expand(y.shape[0])
        return model.guided_eps(y / torch.sqrt(1 + sigma ** 2), t, c, guidance)
    return eps


class DiffusionFit(Fit):
    """A fitted :class:`~pyro_genmodels.models.diffusion.Diffusion`: ``sample`` by three
    samplers, ``log_prob`` by the bound or the ODE, ``probability_flow`` and
    ``bits_per_dim``. Estimates run under ``seed`` (default 0): reproducible, and the
    caller's random state is untouched.

    ``fit.using(estimator="ode")`` is the same fit with the ODE as its default
    ``log_prob`` (and ``log_prob_kind == "estimate"``), so both likelihoods can sit in one
    :func:`pyro_genmodels.compare` table; :meth:`save` keeps it."""

    #: what ``log_prob`` computes by default; ``"bound"`` or ``"ode"``
    estimator: str = "bound"
    #: the settings of :meth:`using` that ``save`` writes and ``load`` restores (through
    #: ``using``, which checks them)
    saved_settings = ("estimator",)

    @property
    def log_prob_kind(self) -> str:
        return "estimate" if self.estimator == "ode" else "bound"

    def using(self, *, estimator: str) -> "DiffusionFit":
        """This fit (the same model and weights, not a copy) with ``estimator`` as
        ``log_prob``'s default."""
        out = copy.copy(self)
        out.estimator = check_choice(estimator, ESTIMATORS, "estimator")
        return out

    @torch.no_grad()
    def sample(self, n: int, *, sampler: str = "ancestral", steps: Optional[int] = None,
               eta: Optional[float] = None, guidance: Optional[float] = None, c: Any = None,
               seed: Optional[int] = None, rtol: Optional[float] = None,
               atol: Optional[float] = None) -> torch.Tensor:
        """``n`` draws ``(n, D)`` on the data's scale.

        Args:
            n: the number of draws.
            sampler: ``"ancestral"`` (T steps), ``"ddim"`` (``steps`` steps, ``eta``) or
                ``"ode"`` (the probability-flow ODE, adaptive steps, ``rtol`` / ``atol``).
            steps: DDIM's number of steps, 1..T (default 50, at most T).
            eta: DDIM's noise, in [0, 1] (default 0: deterministic; 1 with ``steps=T``:
                ancestral).
            rtol, atol: the ODE solver's tolerances (default 1e-5).
            guidance: classifier-free guidance weight w >= 0 (conditional models only):
                the noise prediction is (1 + w) eps(x, c) - w eps(x); ``None``: w = 0.
            c: ``(n, context_dim)`` or one row for all (conditional models).
            seed: the same seed, the same draws; ``None``: a fresh seed. The caller's
                RNG is left untouched.

        An option of another sampler than ``sampler`` (``steps`` or ``eta`` without
        ``"ddim"``, ``rtol`` or ``atol`` without ``"ode"``) is an error, not ignored,
        unless it is at its documented default (``eta=0.0``, ``rtol=atol=1e-5``).
        """
        model = self.model
        n = draw_count(n)
        check_choice(sampler, SAMPLERS, "sampler")
        for name, value, owner, default in (("steps", steps, "ddim", None),
                                            ("eta", eta, "ddim", 0.0),
                                            ("rtol", rtol, "ode", 1e-5),
                                            ("atol", atol, "ode", 1e-5)):
            # at its documented default an option changes nothing: sample(n) is
            # sample(n, eta=0.0) whatever the sampler
            at_default = isinstance(value, (int, float)) and value == default
            if value is not None and sampler != owner and not at_default:
                raise ValueError(f"{name} applies to sampler={owner!r} only, but sampler="
                                 f"{sampler!r} (ancestral runs all T steps with the chain's "
                                 f"noise, ddim takes steps and eta, ode adapts its steps to "
                                 f"rtol and atol)")
        if steps is not None and positive_int(steps, "steps") > model.timesteps:
            raise ValueError(f"Expected steps <= timesteps ({model.timesteps}), but got "
                             f"{steps}")
        eta = 0.0 if eta is None else nonnegative_float(eta, "eta")
        if not eta <= 1:
            raise ValueError(f"Expected eta in [0, 1], but got {eta}")
        rtol = 1e-5 if rtol is None else positive_float(rtol, "rtol")
        atol = 1e-5 if atol is None else positive_float(atol, "atol")
        guidance = self._check_guidance(guidance)
        c = self._as_context(c, n)

        def part(a: int, b: int) -> torch.Tensor:
            cb = _rows_of(c, a, b)
            if sampler == "ancestral":
                u = ancestral(model, b - a, cb, guidance)
            elif sampler == "ddim":
                u = ddim(model, b - a, cb, guidance, steps or min(50, model.timesteps), eta)
            else:
                u = self._ode_sample(b - a, cb, guidance, rtol, atol)
            return model.from_unit(u)
        with seeded(seed):  # chunk after chunk from one stream
            return chunked(n, self._rows(), part)

    def _ode_sample(self, n, c, guidance, rtol, atol) -> torch.Tensor:
        model = self.model
        s_max = float(model.schedule.sigma[model.timesteps])
        y = torch.randn(n, model.dim, **model._factory) * math.sqrt(1 + s_max ** 2)
        y0 = flow_sample(_ode_eps(model, c, guidance), y, sigma_min=SIGMA_MIN,
                         sigma_max=s_max, rtol=rtol, atol=atol)
        return y0 / math.sqrt(1 + SIGMA_MIN ** 2)

    def _row_width(self) -> int:
        """4 x the network's widest layer per row (its input, output, activation; and a
        guided call's doubled batch)."""
        return 4 * max(self.model.hidden or (256,))

    def _ode_factor(self) -> int:
        """How many more numbers per row the likelihood's ODE holds than a network pass:
        the graph of every layer, kept for the divergence, and the solver's stages."""
        return 2 * max(1, len(self.model.hidden or (256,)))

    def _check_guidance(self, guidance) -> Optional[float]:
        if guidance is None:
            return None
        if self.model.context_dim is None:
            raise ValueError("guidance needs a conditional model (context_dim set); this "
                             "Diffusion is unconditional")
        guidance = nonnegative_float(guidance, "guidance")
        if guidance and self.info.get("condition_dropout") == 0:  # eps(x) never trained
            raise ValueError(f"guidance={guidance} mixes in the unconditional prediction, "
                             f"which this fit never trained (condition_dropout=0): fit with "
                             f"condition_dropout > 0 (default 0.1), or sample with "
                             f"guidance=None")
        return guidance

    @torch.no_grad()
    def log_prob(self, x: Any, *, c: Any = None, estimator: Optional[str] = None,
                 seed: Optional[int] = 0, **ode_options: Any) -> torch.Tensor:
        """``log p(x_i[ | c_i])`` per row ``(N,)`` on the data's scale.

        ``estimator="bound"``: the variational bound -L summed over all T steps (one noise
        draw per step; ``log_prob_kind == "bound"``). ``"ode"``: the probability-flow
        ODE's log-likelihood (an estimate; see :meth:`probability_flow`, whose options
        ``ode_options``, :data:`~pyro_genmodels.infer.probability_flow.ODE_OPTIONS`, are
        passed on). ``None``: the fit's default (:meth:`using`). Any other option, or an
        ODE option with the bound, is refused before any work.
        """
        ode_options = check_ode_options(ode_options, caller="DiffusionFit.log_prob",
                                        takes=("c", "estimator", "seed"))
        estimator = check_choice(self.estimator if estimator is None else estimator,
                                 ESTIMATORS, "estimator")
        if estimator == "ode":
            return self.probability_flow(x, c=c, seed=seed, **ode_options).log_prob
        if ode_options:
            raise ValueError(f"Options {sorted(ode_options)} apply to estimator='ode' only, "
                             f"but estimator='bound' (the bound takes c and seed)")
        x = self._as_input(x)
        c = self._as_context(c, x.shape[0])
        with seeded(seed):
            return super().log_prob(x, c=c)

    @torch.no_grad()
    def probability_flow(self, x: Any, *, c: Any = None, trace: str = "auto",
                         num_probes: int = 1, seed: Optional[int] = 0, rtol: float = 1e-5,
                         atol: float = 1e-5, **unknown: Any) -> FlowLogProb:
        """The probability-flow ODE log-likelihood of each row on the data's scale, with
        the solver's function evaluations (``nfe``) and how the divergence was taken
        (``trace``: ``"exact"`` up to 8 columns, Hutchinson's estimator with
        ``num_probes`` Rademacher probes above, or as asked; ``num_probes`` with
        ``trace="exact"`` is refused, as is any other keyword). ``FlowLogProb.log_prob``
        is ``(N,)``. The rows are solved in chunks (:meth:`~pyro_genmodels.Fit.log_prob`'s
        memory bound), each with its own adaptive steps and probes
        (:func:`~pyro_genmodels._memory.chunk_seed`); ``nfe`` is the largest chunk's."""
        opts = check_ode_options({"trace": trace, "num_probes": num_probes, "rtol": rtol,
                                  "atol": atol, **unknown},
                                 caller="DiffusionFit.probability_flow", takes=("c", "seed"))
        model = self.model
        x = self._as_input(x)
        c = self._as_context(c, x.shape[0])
        s_max = float(model.schedule.sigma[model.timesteps])
        d = model.dim

        def prior(y: torch.Tensor) -> torch.Tensor:  # x_T ~ N(0, I), y_T = x_T sqrt(1 + s^2)
            var = 1 + s_max ** 2
            return -0.5 * (y.pow(2).sum(-1) / var + d * math.log(2 * math.pi * var))

        shift = 0.5 * d * math.log(1 + SIGMA_MIN ** 2) - float(model.log_scale())
        runs: List[FlowLogProb] = []

        def part(a: int, b: int) -> torch.Tensor:
            y0 = model.to_unit(x[a:b]) * math.sqrt(1 + SIGMA_MIN ** 2)
            res = flow_log_prob(_ode_eps(model, _rows_of(c, a, b), None), y0,
                                sigma_min=SIGMA_MIN, sigma_max=s_max, prior_log_prob=prior,
                                seed=chunk_seed(seed, len(runs)), **opts)
            runs.append(res)
            return res.log_prob + shift
        out = chunked(x.shape[0], self._rows(self._ode_factor()), part)
        return FlowLogProb(out, max(r.nfe for r in runs), runs[0].trace, runs[0].num_probes)


__all__ = ["DiffusionFit", "ESTIMATORS", "SAMPLERS", "SIGMA_MIN", "ancestral", "ddim",
           "ddim_steps"]
