r"""Batched MCMC for unnormalized densities: MALA / unadjusted Langevin, fixed-length HMC,
and annealed importance sampling (AIS), with many chains as one tensor computation.

Every sampler here takes a *log density known up to a constant*
``log_density(x) -> (C,)`` for ``x`` of shape ``(C, D)`` (one row per chain) and calls
it once per step for all chains together (one forward and one backward pass), so 1000
chains cost about as much wall time as a handful, on CPU or GPU alike.

**MALA** (Roberts & Tweedie, 1996). With step size :math:`\epsilon` (one per chain),

.. math::

    x' = x + \tfrac{\epsilon^2}{2} \nabla \log p(x) + \epsilon\, z, \qquad z \sim N(0, I),

accepted with probability :math:`\min\{1, \frac{p(x')\, q(x \mid x')}{p(x)\, q(x' \mid x)}\}`
where :math:`q(x' \mid x) = N(x';\, x + \tfrac{\epsilon^2}{2}\nabla\log p(x),\, \epsilon^2 I)`.
Without the Metropolis correction (``adjusted=False``) it is the unadjusted Langevin
algorithm (ULA), whose stationary law is biased by :math:`O(\epsilon^2)`; e.g. for a
Gaussian target :math:`N(\mu, \Sigma)` it is :math:`N(\mu, \Sigma (I - \epsilon^2
\Sigma^{-1} / 4)^{-1})` exactly.

**Fixed-length HMC** (Neal, 2011): ``num_leapfrog`` leapfrog steps of size
:math:`\epsilon` with a unit mass matrix, then a Metropolis test on the Hamiltonian
:math:`H = -\log p(x) + |p|^2 / 2`.

**Step-size adaptation** (warmup only). Each chain has its own step size, tuned by the
dual-averaging scheme of Hoffman & Gelman (2014, Alg. 5) so that its acceptance
probability approaches ``target_accept`` (0.574 for MALA, the optimal scaling of
Roberts & Rosenthal 1998; 0.8 for HMC, Pyro's default); after warmup every chain keeps
its averaged step size fixed, so the sampling phase is a proper (non-adaptive) Markov
chain. ULA is not adapted (there is no acceptance to target).

**Divergences.** A transition whose log acceptance ratio is below -1000 (Hamiltonian
error above 1000, the threshold Stan and Pyro use) or whose proposal has a non-finite
density or gradient is *divergent*: it is rejected and counted in
``sample_stats["diverging"]``, never silently dropped.

**AIS** (Neal, 2001). Particles start from a Gaussian base :math:`q_0` and move through
:math:`\pi_t(x) \propto q_0(x)^{1 - \beta_t} f(x)^{\beta_t}`,
:math:`0 = \beta_0 < \dots < \beta_T = 1`, with one MALA step per temperature; the
log importance weight accumulates :math:`(\beta_t - \beta_{t-1}) (\log f(x_{t-1}) -
\log q_0(x_{t-1}))`, and :math:`\hat Z = \frac1K \sum_k w_k` is unbiased for
:math:`Z = \int f`. With resampling when the effective sample size drops (an SMC
sampler, Del Moral, Doucet & Jasra 2006) the final particles are an approximate sample
of the target *with the right mass in every mode*, which is how the samplers above are
initialized by default (``init="anneal"``): chains that cannot cross between modes still
start in them in the right proportions.

References:
    Roberts & Tweedie (1996), *Exponential convergence of Langevin distributions and their
    discrete approximations*, Bernoulli 2(4).
    Neal (2001), *Annealed importance sampling*, Statistics and Computing 11.
    Neal (2011), *MCMC using Hamiltonian dynamics*, Handbook of MCMC.
    Hoffman & Gelman (2014), *The No-U-Turn Sampler*, JMLR 15.
    Del Moral, Doucet & Jasra (2006), *Sequential Monte Carlo samplers*, JRSS B 68(3).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any, Callable, Dict, Optional

import torch
from tqdm.auto import tqdm

from .._validation import positive_float, positive_int
from ..mc import MCEstimate

LogDensity = Callable[[torch.Tensor], torch.Tensor]

#: a transition whose log acceptance ratio is below -DIVERGENCE_THRESHOLD is divergent
DIVERGENCE_THRESHOLD = 1000.0


# ---------------------------------------------------------------------- helpers
def value_and_grad(log_density: LogDensity, x: torch.Tensor):
    """``log_density(x)`` ``(C,)`` and its gradient ``(C, D)`` in one forward/backward
    pass (both detached). Rows are independent, so a non-finite row leaves the others
    intact."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        lp = log_density(x)
        if lp.shape != x.shape[:1]:
            raise ValueError(f"log_density must return one value per row, shape "
                             f"({x.shape[0]},), but returned shape {tuple(lp.shape)}")
        if not lp.requires_grad:
            raise ValueError("log_density(x) does not depend differentiably on x "
                             "(its output has no gradient): the samplers need its gradient")
        (grad,) = torch.autograd.grad(lp.sum(), x)
    return lp.detach(), grad.detach()


def check_log_density(log_density: LogDensity, x: torch.Tensor) -> None:
    """Fail early, with what was expected and what came, when ``log_density`` returns the
    wrong shape, or a non-finite value or gradient, at the initial points ``x`` ``(C, D)``."""
    lp, grad = value_and_grad(log_density, x)
    bad = ~torch.isfinite(lp)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"log_density is not finite at the initial point {x[i].tolist()}: "
                         f"got {lp[i].item()} (expected a finite log density)")
    badg = ~torch.isfinite(grad).all(-1)
    if badg.any():
        i = int(badg.nonzero()[0])
        raise ValueError(f"The gradient of log_density is not finite at the initial point "
                         f"{x[i].tolist()}: got {grad[i].tolist()}")


class DualAveraging:
    """Per-chain dual averaging of ``log(step_size)`` (Hoffman & Gelman 2014, Alg. 5):
    ``update(accept_prob)`` returns the next step sizes ``(C,)``; ``final`` the averaged
    ones used after warmup."""

    def __init__(self, step_size: torch.Tensor, target: float, *, gamma: float = 0.05,
                 t0: float = 10.0, kappa: float = 0.75):
        self.mu = torch.log(10 * step_size)
        self.target, self.gamma, self.t0, self.kappa = target, gamma, t0, kappa
        self.h_bar = torch.zeros_like(step_size)
        self.log_bar = torch.log(step_size)
        self.t = 0

    def update(self, accept_prob: torch.Tensor) -> torch.Tensor:
        self.t += 1
        t = self.t
        w = 1.0 / (t + self.t0)
        self.h_bar = (1 - w) * self.h_bar + w * (self.target - accept_prob)
        log_eps = self.mu - math.sqrt(t) / self.gamma * self.h_bar
        eta = t ** -self.kappa
        self.log_bar = eta * log_eps + (1 - eta) * self.log_bar
        return log_eps.exp()

    @property
    def final(self) -> torch.Tensor:
        return self.log_bar.exp()


@dataclasses.dataclass
class ChainResult:
    """Draws of many chains and their per-draw statistics.

    Attributes:
        samples: ``(chains, draws, D)``.
        sample_stats: ``{name: (chains, draws)}``: ``diverging`` (bool),
            ``acceptance_rate`` (the Metropolis acceptance probability of the transition
            that produced the draw), ``step_size``, ``lp`` (log density, unnormalized).
        info: sampler name and settings, warmup length, divergence count.
    """

    samples: torch.Tensor
    sample_stats: Dict[str, torch.Tensor]
    info: Dict[str, Any]

    @property
    def num_chains(self) -> int:
        return self.samples.shape[0]

    @property
    def num_divergences(self) -> int:
        d = self.sample_stats.get("diverging")
        return 0 if d is None else int(d.sum())

    def flat(self, n: Optional[int] = None) -> torch.Tensor:
        """Draws as ``(n, D)`` in draw-major order (draw 0 of every chain, then draw 1,
        ...), so the first rows come from all chains; ``n=None`` keeps all."""
        out = self.samples.transpose(0, 1).reshape(-1, self.samples.shape[-1])
        return out if n is None else out[:n]

    def to_arviz(self, var_name: str = "x"):
        """An :class:`arviz.InferenceData` with the chains as the ``chain`` dimension
        (``posterior[var_name]``: ``(chain, draw, var_name_dim_0)``) and ``sample_stats``,
        so ``az.summary`` reports R-hat and ESS and ``az.plot_trace`` works."""
        import arviz as az

        import warnings

        stats = {k: v.detach().cpu().numpy() for k, v in self.sample_stats.items()}
        attrs = {"sampler": str(self.info.get("sampler")),
                 "num_warmup": int(self.info.get("warmup_steps", 0)),
                 "num_divergences": self.num_divergences,
                 "creation_library": "pyro_genmodels"}
        with warnings.catch_warnings():  # many short chains are intended here
            warnings.filterwarnings("ignore", message="More chains")
            return az.from_dict(posterior={var_name: self.samples.detach().cpu().numpy()},
                                sample_stats=stats, attrs=attrs)


def _bar(total: int, progress: bool, desc: str):
    return tqdm(total=total, desc=desc, disable=not progress, file=sys.stderr,
                dynamic_ncols=True, leave=False)


def _validate_common(x0, num_samples, warmup_steps, step_size, target_accept):
    if not isinstance(x0, torch.Tensor) or x0.dim() != 2:
        raise ValueError(f"Expected initial points of shape (chains, D), but got "
                         f"{tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0)}")
    positive_int(num_samples, "num_samples")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"Expected warmup_steps to be a non-negative integer, but got "
                         f"{warmup_steps!r}")
    if step_size is not None:
        positive_float(step_size, "step_size")
    if not 0 < float(target_accept) < 1:
        raise ValueError(f"Expected 0 < target_accept < 1, but got {target_accept!r}")


# ---------------------------------------------------------------------- MALA / ULA
def _mala_log_q(x_to, x_from, grad_from, eps):
    """log q(x_to | x_from) up to a constant shared by both directions."""
    diff = x_to - x_from - 0.5 * eps**2 * grad_from
    return -diff.pow(2).sum(-1) / (2 * eps[:, 0] ** 2)


def mala(log_density: LogDensity, x0: torch.Tensor, *, num_samples: int,
         warmup_steps: int = 500, step_size: Optional[float] = None, adjusted: bool = True,
         target_accept: float = 0.574, adapt: bool = True,
         progress: bool = False) -> ChainResult:
    r"""Metropolis-adjusted (or, ``adjusted=False``, unadjusted) Langevin, one chain per
    row of ``x0``, all chains in one batched tensor computation.

    Args:
        log_density: ``(C, D) -> (C,)``, differentiable, known up to a constant.
        x0: initial points ``(C, D)``.
        num_samples: draws kept per chain (after warmup).
        warmup_steps: transitions discarded per chain; the step sizes adapt during them.
        step_size: :math:`\epsilon` (initial value when adapting; default 0.1).
        adjusted: Metropolis correction (MALA). ``False`` is ULA: every proposal is
            accepted (biased by :math:`O(\epsilon^2)`, never adapted).
        target_accept: acceptance probability the warmup adaptation aims at.
        adapt: tune each chain's step size during warmup (dual averaging).

    Returns:
        a :class:`ChainResult` with ``samples`` ``(C, num_samples, D)``.

    Example:
        >>> import torch
        >>> from pyro_genmodels.infer.langevin import mala
        >>> torch.manual_seed(0) and None
        >>> r = mala(lambda x: -0.5 * x.pow(2).sum(-1), torch.zeros(100, 2),
        ...          num_samples=200, warmup_steps=200)
        >>> r.samples.shape, abs(r.samples.mean().item()) < 0.1
        (torch.Size([100, 200, 2]), True)
    """
    _validate_common(x0, num_samples, warmup_steps, step_size, target_accept)
    C, D = x0.shape
    x = x0.detach().clone()
    lp, grad = value_and_grad(log_density, x)
    eps = torch.full((C, 1), 0.1 if step_size is None else float(step_size),
                     dtype=x.dtype, device=x.device)
    tuner = DualAveraging(eps[:, 0], target_accept) if (adapt and adjusted) else None
    shape = (C, num_samples)
    out = torch.empty(C, num_samples, D, dtype=x.dtype, device=x.device)
    stats = {"diverging": torch.zeros(shape, dtype=torch.bool, device=x.device),
             "acceptance_rate": torch.empty(shape, dtype=x.dtype, device=x.device),
             "step_size": torch.empty(shape, dtype=x.dtype, device=x.device),
             "lp": torch.empty(shape, dtype=x.dtype, device=x.device)}
    warm_div = 0
    bar = _bar(warmup_steps + num_samples, progress, "langevin" if adjusted else "ula")
    try:
        for t in range(warmup_steps + num_samples):
            prop = x + 0.5 * eps**2 * grad + eps * torch.randn_like(x)
            lp_p, grad_p = value_and_grad(log_density, prop)
            finite = torch.isfinite(lp_p) & torch.isfinite(grad_p).all(-1)
            if adjusted:
                log_ratio = (lp_p - lp + _mala_log_q(x, prop, grad_p, eps)
                             - _mala_log_q(prop, x, grad, eps))
                log_ratio = torch.where(finite, log_ratio, torch.full_like(log_ratio, -math.inf))
                accept_prob = log_ratio.clamp(max=0.0).exp()
                accept = torch.rand_like(accept_prob) < accept_prob
                diverging = (~finite) | (log_ratio < -DIVERGENCE_THRESHOLD)
            else:
                accept = finite
                accept_prob = finite.to(x.dtype)
                diverging = ~finite
            x = torch.where(accept[:, None], prop, x)
            lp = torch.where(accept, lp_p, lp)
            grad = torch.where(accept[:, None], grad_p, grad)
            if t < warmup_steps:
                warm_div += int(diverging.sum())
                if tuner is not None:
                    eps = tuner.update(accept_prob)[:, None]
                    if t == warmup_steps - 1:
                        eps = tuner.final[:, None]
            else:
                i = t - warmup_steps
                out[:, i] = x
                stats["diverging"][:, i] = diverging
                stats["acceptance_rate"][:, i] = accept_prob
                stats["step_size"][:, i] = eps[:, 0]
                stats["lp"][:, i] = lp
            bar.update()
    finally:
        bar.close()
    info = {"sampler": "langevin" if adjusted else "ula", "warmup_steps": warmup_steps,
            "num_chains": C, "num_samples": num_samples, "adjusted": adjusted,
            "target_accept": target_accept, "warmup_divergences": warm_div,
            "num_divergences": int(stats["diverging"].sum())}
    return ChainResult(out, stats, info)


# ---------------------------------------------------------------------- fixed-length HMC
def hmc(log_density: LogDensity, x0: torch.Tensor, *, num_samples: int,
        warmup_steps: int = 500, step_size: Optional[float] = None, num_leapfrog: int = 10,
        target_accept: float = 0.8, adapt: bool = True, jitter: bool = True,
        progress: bool = False) -> ChainResult:
    r"""Fixed-length Hamiltonian Monte Carlo (unit mass matrix, ``num_leapfrog`` leapfrog
    steps per transition), one chain per row of ``x0``, batched: one call of
    ``log_density`` (and its gradient) per leapfrog step for all chains.

    The step size of each chain adapts during warmup (dual averaging toward
    ``target_accept``); with ``jitter`` (default) each transition uses
    ``step_size * U(0.5, 1.5)``, so the trajectory length ``num_leapfrog * step_size``
    varies and cannot lock onto a period of the dynamics (with a fixed length, a
    Gaussian direction whose period is close to the trajectory length barely moves).
    ``sample_stats["step_size"]`` records the un-jittered size. Arguments and result as
    in :func:`mala`.

    Example:
        >>> import torch
        >>> from pyro_genmodels.infer.langevin import hmc
        >>> torch.manual_seed(0) and None
        >>> r = hmc(lambda x: -0.5 * x.pow(2).sum(-1), torch.zeros(50, 2),
        ...         num_samples=100, warmup_steps=100)
        >>> r.samples.shape, r.num_divergences
        (torch.Size([50, 100, 2]), 0)
    """
    _validate_common(x0, num_samples, warmup_steps, step_size, target_accept)
    num_leapfrog = positive_int(num_leapfrog, "num_leapfrog")
    C, D = x0.shape
    x = x0.detach().clone()
    lp, grad = value_and_grad(log_density, x)
    eps = torch.full((C, 1), 0.1 if step_size is None else float(step_size),
                     dtype=x.dtype, device=x.device)
    tuner = DualAveraging(eps[:, 0], target_accept) if adapt else None
    shape = (C, num_samples)
    out = torch.empty(C, num_samples, D, dtype=x.dtype, device=x.device)
    stats = {"diverging": torch.zeros(shape, dtype=torch.bool, device=x.device),
             "acceptance_rate": torch.empty(shape, dtype=x.dtype, device=x.device),
             "step_size": torch.empty(shape, dtype=x.dtype, device=x.device),
             "lp": torch.empty(shape, dtype=x.dtype, device=x.device)}
    warm_div = 0
    bar = _bar(warmup_steps + num_samples, progress, "hmc_vectorized")
    try:
        for t in range(warmup_steps + num_samples):
            p = torch.randn_like(x)
            h0 = -lp + 0.5 * p.pow(2).sum(-1)
            # jittered step size, against periodic trajectories (Neal 2011, sec. 5.4)
            e = eps * (0.5 + torch.rand_like(eps)) if jitter else eps
            q, lq, gq = x, lp, grad
            p = p + 0.5 * e * gq
            for j in range(num_leapfrog):
                q = q + e * p
                lq, gq = value_and_grad(log_density, q)
                p = p + (e if j < num_leapfrog - 1 else 0.5 * e) * gq
            h1 = -lq + 0.5 * p.pow(2).sum(-1)
            finite = torch.isfinite(h1) & torch.isfinite(gq).all(-1) & torch.isfinite(q).all(-1)
            log_ratio = torch.where(finite, h0 - h1, torch.full_like(h0, -math.inf))
            accept_prob = log_ratio.clamp(max=0.0).exp()
            accept = torch.rand_like(accept_prob) < accept_prob
            diverging = (~finite) | (log_ratio < -DIVERGENCE_THRESHOLD)
            x = torch.where(accept[:, None], q, x)
            lp = torch.where(accept, lq, lp)
            grad = torch.where(accept[:, None], gq, grad)
            if t < warmup_steps:
                warm_div += int(diverging.sum())
                if tuner is not None:
                    eps = tuner.update(accept_prob)[:, None]
                    if t == warmup_steps - 1:
                        eps = tuner.final[:, None]
            else:
                i = t - warmup_steps
                out[:, i] = x
                stats["diverging"][:, i] = diverging
                stats["acceptance_rate"][:, i] = accept_prob
                stats["step_size"][:, i] = eps[:, 0]
                stats["lp"][:, i] = lp
            bar.update()
    finally:
        bar.close()
    info = {"sampler": "hmc_vectorized", "warmup_steps": warmup_steps, "num_chains": C,
            "num_samples": num_samples, "num_leapfrog": num_leapfrog,
            "target_accept": target_accept, "warmup_divergences": warm_div,
            "num_divergences": int(stats["diverging"].sum())}
    return ChainResult(out, stats, info)


# ---------------------------------------------------------------------- AIS / SMC
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
    """

    ess: float = math.nan
    num_steps: int = 0


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
    0.574).

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
    base = torch.distributions.Normal(loc, scale)

    def log_base(x):
        return base.log_prob(x).sum(-1)

    def grad_base(x):
        return -(x - loc) / scale**2

    betas = schedule(T).to(dtype=dtype, device=device)
    x = loc + scale * torch.randn(K, D, dtype=dtype, device=device)
    check_log_density(log_density, x[:1])
    f, gf = value_and_grad(log_density, x)
    lb = log_base(x)
    log_w = torch.zeros(K, dtype=dtype, device=device)
    log_z_acc = 0.0
    eps = torch.full((K, 1), float(step_size) if step_size is not None else
                     0.5 * float(scale.min()), dtype=dtype, device=device)
    bar = _bar(T, progress, "anneal")
    try:
        for t in range(1, T + 1):
            b_prev, b = float(betas[t - 1]), float(betas[t])
            inc = (b - b_prev) * (f - lb)
            log_w = log_w + torch.where(torch.isfinite(inc), inc, torch.full_like(inc, -math.inf))
            if resample:
                w = torch.softmax(log_w, 0)
                ess = 1.0 / w.pow(2).sum()
                if ess < K / 2:
                    log_z_acc += float(log_w.logsumexp(0)) - math.log(K)
                    idx = _systematic(log_w)
                    x, f, gf, lb, eps = x[idx], f[idx], gf[idx], lb[idx], eps[idx]
                    log_w = torch.zeros_like(log_w)
            # one MALA step leaving pi_b = base^(1-b) f^b invariant
            lp = (1 - b) * lb + b * f
            g = (1 - b) * grad_base(x) + b * gf
            prop = x + 0.5 * eps**2 * g + eps * torch.randn_like(x)
            f_p, gf_p = value_and_grad(log_density, prop)
            lb_p = log_base(prop)
            lp_p = (1 - b) * lb_p + b * f_p
            g_p = (1 - b) * grad_base(prop) + b * gf_p
            finite = torch.isfinite(lp_p) & torch.isfinite(g_p).all(-1)
            log_ratio = lp_p - lp + _mala_log_q(x, prop, g_p, eps) - _mala_log_q(prop, x, g, eps)
            log_ratio = torch.where(finite, log_ratio, torch.full_like(log_ratio, -math.inf))
            acc_prob = log_ratio.clamp(max=0.0).exp()
            acc = torch.rand_like(acc_prob) < acc_prob
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
        >>> from pyro_genmodels.infer.langevin import ais_log_normalizer
        >>> torch.manual_seed(0) and None
        >>> r = ais_log_normalizer(lambda x: -0.5 * x.pow(2).sum(-1) + 3.0,
        ...                        torch.zeros(2), 2 * torch.ones(2), num_particles=500)
        >>> abs(r.estimate - (3.0 + math.log(2 * math.pi))) < 0.05
        True
    """
    return anneal(log_density, loc, scale, num_particles, num_steps=num_steps,
                  resample=False, progress=progress).log_z


# ---------------------------------------------------------------------- Pyro NUTS / HMC
def pyro_mcmc(log_density: LogDensity, x0: torch.Tensor, *, kernel: str = "nuts",
              num_samples: int, warmup_steps: int = 500, target_accept: float = 0.8,
              progress: bool = False, **kernel_options: Any) -> ChainResult:
    r"""``pyro.infer.MCMC`` with ``NUTS`` or ``HMC`` on the potential
    :math:`U(x) = -\text{log\_density}(x)` (``potential_fn``), one chain per row of
    ``x0``, run one after another in this process (reproducible from the seed). Pyro
    adapts the step size (toward ``target_accept``) and a diagonal mass matrix during
    warmup. ``kernel_options`` go to the kernel (e.g. ``max_tree_depth``,
    ``trajectory_length``, ``full_mass``).

    ``sample_stats`` holds ``diverging``, ``step_size`` and ``lp`` per draw and
    ``acceptance_rate`` (Pyro's running mean acceptance probability of the chain).
    """
    from pyro.infer import HMC, MCMC, NUTS

    from .svi import quiet_jit_deprecation

    _validate_common(x0, num_samples, warmup_steps, None, target_accept)
    if kernel not in ("nuts", "hmc"):
        raise ValueError(f"Expected kernel 'nuts' or 'hmc', but got {kernel!r}")
    cls = NUTS if kernel == "nuts" else HMC

    def potential_fn(params):
        return -log_density(params["x"].unsqueeze(0)).squeeze(0)

    C, D = x0.shape
    draws, stats = [], {"diverging": [], "acceptance_rate": [], "step_size": [], "lp": []}
    for c in range(C):
        k = cls(potential_fn=potential_fn, target_accept_prob=target_accept,
                adapt_step_size=True, adapt_mass_matrix=True, **kernel_options)
        step = torch.zeros(num_samples, dtype=x0.dtype)
        lp = torch.zeros(num_samples, dtype=x0.dtype)
        acc = torch.zeros(num_samples, dtype=x0.dtype)

        def hook(kern, params, stage, i, step=step, lp=lp, acc=acc):
            if stage.startswith("Sample"):
                step[i] = float(kern.step_size)
                pe = getattr(kern, "_potential_energy_last", None)
                lp[i] = math.nan if pe is None else -float(pe)
                acc[i] = float(kern._mean_accept_prob)

        mcmc = MCMC(k, num_samples=num_samples, warmup_steps=warmup_steps,
                    initial_params={"x": x0[c].detach().clone()}, num_chains=1,
                    hook_fn=hook, disable_progbar=not progress)
        with quiet_jit_deprecation():
            mcmc.run()
        draws.append(mcmc.get_samples()["x"].detach())
        diverging = torch.zeros(num_samples, dtype=torch.bool)
        div = mcmc.diagnostics()["divergences"]["chain 0"]
        diverging[torch.as_tensor(div, dtype=torch.long)] = True
        stats["diverging"].append(diverging)
        stats["step_size"].append(step)
        stats["lp"].append(lp)
        stats["acceptance_rate"].append(acc)
    dev = x0.device
    out = torch.stack(draws).to(dev)
    sample_stats = {k: torch.stack(v).to(dev) for k, v in stats.items()}
    info = {"sampler": kernel, "warmup_steps": warmup_steps, "num_chains": C,
            "num_samples": num_samples, "target_accept": target_accept,
            "num_divergences": int(sample_stats["diverging"].sum())}
    return ChainResult(out, sample_stats, info)
