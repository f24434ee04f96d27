r"""Annealed importance sampling (AIS) and its resampling variant (an SMC sampler) for
unnormalized densities, with all particles as one tensor computation.

**AIS** (Neal, 2001). Particles start from a Gaussian base :math:`q_0` and move through
:math:`\pi_t(x) \propto q_0(x)^{1 - \beta_t} f(x)^{\beta_t}`,
:math:`0 = \beta_0 < \dots < \beta_T = 1`, with one MALA step per temperature (the
proposal and ratio of :mod:`pyro_genmodels.infer.samplers`); the log importance weight
accumulates :math:`(\beta_t - \beta_{t-1}) (\log f(x_{t-1}) - \log q_0(x_{t-1}))`, and
:math:`\hat Z = \frac1K \sum_k w_k` is unbiased for :math:`Z = \int f`.

**SMC** (Del Moral, Doucet & Jasra 2006). With resampling when the effective sample size
drops, the final particles are an approximate sample of the target *with the right mass
in every mode*, which is how :class:`~pyro_genmodels.models.energy.EnergyModel`
initializes its MCMC chains by default (``init="anneal"``): chains that cannot cross
between modes still start in them in the right proportions.

References:
    Neal (2001), *Annealed importance sampling*, Statistics and Computing 11.
    Grosse, Maddison & Salakhutdinov (2013), *Annealing between distributions by
    averaging moments*, NeurIPS.
    Del Moral, Doucet & Jasra (2006), *Sequential Monte Carlo samplers*, JRSS B 68(3).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch

from .._validation import positive_int
from ..mc import MCEstimate
from .samplers import (LogDensity, _bar, check_log_density, mala_log_ratio, mala_proposal,
                       metropolis, value_and_grad)


@dataclasses.dataclass(frozen=True)
class AISEstimate(MCEstimate):
    r"""An AIS estimate of :math:`\log Z` (a :class:`~pyro_genmodels.mc.MCEstimate`).

    ``estimate`` is :math:`\log \hat Z = \log \frac1K \sum_k w_k`; ``stderr`` its
    delta-method standard error :math:`\mathrm{sd}(w / \bar w) / \sqrt K`;
    ``num_samples`` is K. :math:`\hat Z` is unbiased, so :math:`\log \hat Z` is biased
    *down* (Jensen), by about :math:`\mathrm{se}^2 / 2`.

    Attributes:
        ess: effective sample size of the final weights, :math:`(\sum w)^2 / \sum w^2`.
        num_steps: number of annealing temperatures T.
        settled: with an automatic T, whether the last two runs agreed (``None``: T was
            given).
    """

    ess: float = math.nan
    num_steps: int = 0
    settled: Optional[bool] = None


@dataclasses.dataclass
class AnnealResult:
    """Final particles ``(K, D)``, their log weights ``(K,)``, and the log-normalizer
    estimate with its standard error."""

    particles: torch.Tensor
    log_weights: torch.Tensor
    log_z: AISEstimate


def schedule(num_steps: int, *, delta: float = 4.0, dtype=torch.float64) -> torch.Tensor:
    r"""The sigmoidal annealing schedule :math:`0 = \beta_0 < \dots < \beta_T = 1`
    (Grosse, Maddison & Salakhutdinov 2013): :math:`\sigma(\delta (2t/T - 1))` rescaled to
    [0, 1]; it takes small steps where the path changes fastest, at both ends."""
    t = torch.linspace(-delta, delta, num_steps + 1, dtype=dtype)
    s = torch.sigmoid(t)
    return (s - s[0]) / (s[-1] - s[0])


def _systematic(log_w: torch.Tensor) -> torch.Tensor:
    """Systematic resampling indices ``(K,)`` from log weights ``(K,)``."""
    K = log_w.shape[0]
    w = torch.softmax(log_w.double(), 0)
    u = (torch.rand((), dtype=torch.float64, device=log_w.device)
         + torch.arange(K, dtype=torch.float64, device=log_w.device)) / K
    return torch.searchsorted(w.cumsum(0), u).clamp(max=K - 1)


def anneal(log_density: LogDensity, loc: torch.Tensor, scale: torch.Tensor,
           num_particles: int, *, num_steps: int = 200, resample: bool = False,
           step_size: Optional[float] = None, progress: bool = False) -> AnnealResult:
    r"""Anneal ``num_particles`` particles from the Gaussian base :math:`N(loc,
    diag(scale^2))` to :math:`f = \exp(\text{log\_density})` through ``num_steps``
    geometric bridges, with one MALA step per temperature (one step size for all
    particles, tuned between temperatures from the population's mean acceptance toward
    0.574). The particles move in the base's whitened coordinates ``(x - loc) / scale``,
    so ``step_size`` (default 0.5) is in units of the base's sd per coordinate and a
    target whose columns differ in scale by orders of magnitude mixes as a standardized
    one would; the weights and ``log_z`` are those of the path in x.

    ``resample=False`` is AIS (Neal 2001): the result's ``log_z`` is
    :math:`\log \frac1K\sum_k w_k`. ``resample=True`` resamples (systematically) when the
    effective sample size falls below K/2 and once at the end, so the particles are an
    equally weighted approximate sample of the target (an SMC sampler); ``log_z`` is then
    the SMC product estimate (its ``stderr`` is ``nan``).
    """
    K = positive_int(num_particles, "num_particles")
    T = positive_int(num_steps, "num_steps")
    loc, scale = loc.detach(), scale.detach()
    dtype, device = loc.dtype, loc.device
    D = loc.shape[-1]
    # The particles move in the base's whitened coordinates y = (x - loc) / scale (the
    # MALA step is one number, so in x it would have to fit the narrowest column: raw
    # columns of sd 0.1 and 300 would not mix). The weights are those of the x-space path:
    # lb is the base's log-density at x = loc + scale * y, f is f(x).
    log_jac = float(scale.log().sum())
    half_log_2pi = 0.5 * D * math.log(2 * math.pi)

    def f_of_y(y):
        return log_density(loc + scale * y)

    def log_base(y):
        return -0.5 * y.pow(2).sum(-1) - half_log_2pi - log_jac

    def grad_base(y):
        return -y

    betas = schedule(T).to(dtype=dtype, device=device)
    x = torch.randn(K, D, dtype=dtype, device=device)  # y, the whitened particles
    check_log_density(log_density, loc + scale * x[:1])
    f, gf = value_and_grad(f_of_y, x)
    lb = log_base(x)
    log_w = torch.zeros(K, dtype=dtype, device=device)
    log_z_acc = 0.0
    eps = torch.full((K, 1), float(step_size) if step_size is not None else 0.5,
                     dtype=dtype, device=device)
    bar = _bar(T, progress, "anneal")
    try:
        for t in range(1, T + 1):
            b_prev, b = float(betas[t - 1]), float(betas[t])
            inc = (b - b_prev) * (f - lb)
            log_w = log_w + torch.where(torch.isfinite(inc), inc, torch.full_like(inc, -math.inf))
            if resample:
                w = torch.softmax(log_w, 0)
                ess_t = 1.0 / w.pow(2).sum()
                if ess_t < K / 2:
                    log_z_acc += float(log_w.logsumexp(0)) - math.log(K)
                    idx = _systematic(log_w)
                    x, f, gf, lb, eps = x[idx], f[idx], gf[idx], lb[idx], eps[idx]
                    log_w = torch.zeros_like(log_w)
            # one MALA step leaving pi_b = base^(1-b) f^b invariant
            lp = (1 - b) * lb + b * f
            g = (1 - b) * grad_base(x) + b * gf
            prop = mala_proposal(x, g, eps)
            f_p, gf_p = value_and_grad(f_of_y, prop)
            lb_p = log_base(prop)
            lp_p = (1 - b) * lb_p + b * f_p
            g_p = (1 - b) * grad_base(prop) + b * gf_p
            finite = torch.isfinite(lp_p) & torch.isfinite(g_p).all(-1)
            _, acc_prob, acc = metropolis(mala_log_ratio(x, prop, lp, lp_p, g, g_p, eps), finite)
            x = torch.where(acc[:, None], prop, x)
            f = torch.where(acc, f_p, f)
            gf = torch.where(acc[:, None], gf_p, gf)
            lb = torch.where(acc, lb_p, lb)
            # one step size for the whole population, tuned from its mean acceptance: a
            # per-particle size driven by its own acceptances would depend on its path and
            # break the invariance of the transitions (and bias log Z)
            eps = eps * math.exp(float(acc_prob.mean()) - 0.574)
            bar.update()
    finally:
        bar.close()
    if not torch.isfinite(log_w).any():
        raise FloatingPointError("Every AIS weight is zero or non-finite: the base Gaussian "
                                 "does not cover the target, or log_density is not finite")
    lse = float(log_w.logsumexp(0))
    w = torch.softmax(log_w.double(), 0)
    ess = float(1.0 / w.pow(2).sum())
    x = loc + scale * x  # back to the target's coordinates
    if resample:
        log_z = AISEstimate(log_z_acc + lse - math.log(K), math.nan, K, ess=ess, num_steps=T)
        idx = _systematic(log_w)
        x, log_w = x[idx], torch.zeros_like(log_w)
    else:
        rel = (log_w.double() - lse + math.log(K)).exp()  # w / mean(w)
        se = float(rel.std() / math.sqrt(K)) if K > 1 else math.nan
        log_z = AISEstimate(lse - math.log(K), se, K, ess=ess, num_steps=T)
    return AnnealResult(x.detach(), log_w.detach(), log_z)


def ais_log_normalizer(log_density: LogDensity, loc: torch.Tensor, scale: torch.Tensor, *,
                       num_particles: int = 1000, num_steps: int = 200,
                       progress: bool = False) -> AISEstimate:
    r"""Annealed importance sampling estimate of :math:`\log Z = \log \int
    \exp(\text{log\_density}(x))\, dx` from the base :math:`N(loc, diag(scale^2))`
    (see :func:`anneal`).

    Example:
        >>> import math, torch
        >>> from pyro_genmodels.infer.ais import ais_log_normalizer
        >>> torch.manual_seed(0) and None
        >>> r = ais_log_normalizer(lambda x: -0.5 * x.pow(2).sum(-1) + 3.0,
        ...                        torch.zeros(2), 2 * torch.ones(2), num_particles=500)
        >>> abs(r.estimate - (3.0 + math.log(2 * math.pi))) < 0.05
        True
    """
    return anneal(log_density, loc, scale, num_particles, num_steps=num_steps,
                  resample=False, progress=progress).log_z
