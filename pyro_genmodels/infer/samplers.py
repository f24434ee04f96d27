r"""Batched MCMC for unnormalized densities: MALA / unadjusted Langevin and fixed-length
HMC, many chains as one tensor computation, all run by one driver (:func:`run_chains`).

Every sampler here takes a *log density known up to a constant*
``log_density(x) -> (C,)`` for ``x`` of shape ``(C, D)`` (one row per chain) and calls
it once per step for all chains together (one forward and one backward pass), so 1000
chains cost about as much wall time as a handful, on CPU or GPU alike.

A sampler is a *transition*: ``transition(x, lp, grad, eps) -> Proposal`` proposes one
move for every chain and gives its log Metropolis-Hastings ratio. The driver does the
rest, once for every sampler: the Metropolis test, divergence flags, step-size
adaptation during warmup, recording the draws and their statistics.

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

**Step-size adaptation** (warmup only). The chains share one step size, tuned by the
dual-averaging scheme of Hoffman & Gelman (2014, Alg. 5; Pyro's
:class:`~pyro.ops.dual_averaging.DualAveraging` on :math:`\log\epsilon`, prox-center
:math:`\log(10 \epsilon_0)`, :math:`\gamma = 0.05`, :math:`t_0 = 10`,
:math:`\kappa = 0.75`) so that the chains' mean acceptance probability approaches
``target_accept`` (0.574 for MALA, the optimal scaling of Roberts & Rosenthal 1998; 0.9
for HMC, :data:`HMC_TARGET_ACCEPT`); after warmup it is fixed at its averaged value, so the
sampling phase is a proper (non-adaptive) Markov chain. One step size per chain, each
tuned on its own path, made each chain valid alone but the pooled draws of short chains
wrong where the curvature varies: a chain in a narrow tail adapted to small steps and
stayed there (the step size and the position at the first kept draw correlated at
-0.64 on a banana, whose E[a^2] = 2.25 came out 2.52-2.63, 3 standard errors high, from
the default 1,000 chains x 20 draws). ULA is not adapted (there is no acceptance to
target).

**Divergences.** A transition whose log acceptance ratio is below -1000 (Hamiltonian
error above 1000, the threshold Stan and Pyro use) or whose proposal has a non-finite
density or gradient is *divergent*: it is rejected and counted in
``sample_stats["diverging"]``, never silently dropped.

Annealed importance sampling, which initializes these chains by default in
:class:`~pyro_genmodels.models.energy.EnergyModel`, is in
:mod:`pyro_genmodels.infer.ais`; Pyro's own NUTS / HMC on a log density in
:func:`pyro_genmodels.infer.mcmc.pyro_mcmc`.

References:
    Roberts & Tweedie (1996), *Exponential convergence of Langevin distributions and their
    discrete approximations*, Bernoulli 2(4).
    Roberts & Rosenthal (1998), *Optimal scaling of discrete approximations to Langevin
    diffusions*, JRSS B 60(1).
    Neal (2011), *MCMC using Hamiltonian dynamics*, Handbook of MCMC.
    Hoffman & Gelman (2014), *The No-U-Turn Sampler*, JMLR 15.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, NamedTuple, Optional, Tuple

import torch
from pyro.ops.dual_averaging import DualAveraging
from tqdm.auto import tqdm

from .._validation import nonnegative_int, positive_float, positive_int

if TYPE_CHECKING:  # imported when used: arviz is slow to import
    import arviz

LogDensity = Callable[[torch.Tensor], torch.Tensor]

#: a transition whose log acceptance ratio is below -DIVERGENCE_THRESHOLD is divergent
DIVERGENCE_THRESHOLD = 1000.0


# ---------------------------------------------------------------------- helpers
def value_and_grad(log_density: LogDensity, x: torch.Tensor):
    """``log_density(x)`` ``(C,)`` and its gradient ``(C, D)`` in one forward/backward
    pass (both detached). Rows are independent, so a non-finite row leaves the others
    intact. A ``log_density`` that carries its own ``value_and_grad`` (e.g.
    :class:`~pyro_genmodels.infer.potential.GradientGraph`, the forward and backward pass
    traced as one graph) is asked first; it answers ``None`` for a shape it was not
    traced for, and autograd answers instead."""
    own = getattr(log_density, "value_and_grad", None)
    if own is not None:
        out = own(x)
        if out is not None:
            return out
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
        """C, the number of chains."""
        return self.samples.shape[0]

    @property
    def num_divergences(self) -> int:
        """Transitions flagged divergent, over all chains (0 when the sampler reports none)."""
        d = self.sample_stats.get("diverging")
        return 0 if d is None else int(d.sum())

    def flat(self, n: Optional[int] = None) -> torch.Tensor:
        """Draws as ``(n, D)`` in draw-major order (draw 0 of every chain, then draw 1,
        ...), so the first rows come from all chains; ``n=None`` keeps all."""
        out = self.samples.transpose(0, 1).reshape(-1, self.samples.shape[-1])
        return out if n is None else out[:n]

    def to_arviz(self, var_name: str = "x") -> arviz.InferenceData:
        """An :class:`arviz.InferenceData` with the chains as the ``chain`` dimension
        (``posterior[var_name]``: ``(chain, draw, var_name_dim_0)``) and ``sample_stats``,
        so ``az.summary`` reports R-hat and ESS and ``az.plot_trace`` works; after a
        Ctrl-C, ``attrs["interrupted"] = 1``."""
        import arviz as az

        import warnings

        stats = {k: v.detach().cpu().numpy() for k, v in self.sample_stats.items()}
        attrs = {"sampler": str(self.info.get("sampler")),
                 "num_warmup": int(self.info.get("warmup_steps", 0)),
                 "num_divergences": self.num_divergences,
                 "creation_library": "pyro_genmodels"}
        if self.info.get("interrupted"):  # Ctrl-C: fewer chains or draws than asked
            attrs["interrupted"] = 1  # an int: NetCDF has no booleans
        with warnings.catch_warnings():  # many short chains are intended here
            warnings.filterwarnings("ignore", message="More chains")
            return az.from_dict(posterior={var_name: self.samples.detach().cpu().numpy()},
                                sample_stats=stats, attrs=attrs)


def _bar(total: int, progress: bool, desc: str):
    return tqdm(total=total, desc=desc, disable=not progress, file=sys.stderr,
                dynamic_ncols=True, leave=False)


def _validate_common(x0, num_samples, warmup_steps, step_size, target_accept
                     ) -> Tuple[int, int]:
    """Check the samplers' common arguments; ``(num_samples, warmup_steps)`` as ints."""
    if not isinstance(x0, torch.Tensor) or x0.dim() != 2:
        raise ValueError(f"Expected initial points of shape (chains, D), but got "
                         f"{tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0)}")
    counts = positive_int(num_samples, "num_samples"), nonnegative_int(warmup_steps,
                                                                        "warmup_steps")
    if step_size is not None:
        positive_float(step_size, "step_size")
    if not 0 < float(target_accept) < 1:
        raise ValueError(f"Expected 0 < target_accept < 1, but got {target_accept!r}")
    return counts


# ---------------------------------------------------------------------- pieces of a step
def mala_proposal(x: torch.Tensor, grad: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    r"""The Langevin proposal :math:`x + \tfrac{\epsilon^2}{2}\nabla\log p(x) + \epsilon z`
    (``eps``: ``(C, 1)``)."""
    return x + 0.5 * eps**2 * grad + eps * torch.randn_like(x)


def _mala_log_q(x_to, x_from, grad_from, eps):
    """log q(x_to | x_from) up to a constant shared by both directions."""
    diff = x_to - x_from - 0.5 * eps**2 * grad_from
    return -diff.pow(2).sum(-1) / (2 * eps[:, 0] ** 2)


def mala_log_ratio(x, prop, lp, lp_prop, grad, grad_prop, eps) -> torch.Tensor:
    r"""MALA's log Metropolis-Hastings ratio
    :math:`\log p(x') + \log q(x \mid x') - \log p(x) - \log q(x' \mid x)`, ``(C,)``."""
    return lp_prop - lp + _mala_log_q(x, prop, grad_prop, eps) - _mala_log_q(prop, x, grad, eps)


def metropolis(log_ratio: torch.Tensor,
               finite: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Metropolis test of every chain: ``(log_ratio, accept_prob, accept)``, the log
    ratio set to ``-inf`` where the proposal is not ``finite`` (so it is refused)."""
    log_ratio = torch.where(finite, log_ratio, torch.full_like(log_ratio, -math.inf))
    accept_prob = log_ratio.clamp(max=0.0).exp()
    accept = torch.rand_like(accept_prob) < accept_prob
    return log_ratio, accept_prob, accept


class Proposal(NamedTuple):
    """One proposed move of every chain: the point ``(C, D)``, its log density ``(C,)``
    and gradient ``(C, D)``, the log Metropolis-Hastings ratio ``(C,)`` and whether the
    proposal (density, gradient, point) is ``finite`` ``(C,)``."""

    x: torch.Tensor
    lp: torch.Tensor
    grad: torch.Tensor
    log_ratio: torch.Tensor
    finite: torch.Tensor


#: ``transition(x, lp, grad, eps) -> Proposal``; a proposal for every chain from its state
#: ``x`` ``(C, D)`` (log density ``lp``, gradient ``grad``) with step sizes ``eps`` ``(C, 1)``
Transition = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], Proposal]


def mala_transition(log_density: LogDensity) -> Transition:
    """The Langevin proposal and its MALA ratio (see the module docstring)."""

    def transition(x, lp, grad, eps):
        prop = mala_proposal(x, grad, eps)
        lp_p, grad_p = value_and_grad(log_density, prop)
        finite = torch.isfinite(lp_p) & torch.isfinite(grad_p).all(-1)
        return Proposal(prop, lp_p, grad_p, mala_log_ratio(x, prop, lp, lp_p, grad, grad_p, eps),
                        finite)

    return transition


def hmc_transition(log_density: LogDensity, num_leapfrog: int, jitter: bool) -> Transition:
    """``num_leapfrog`` leapfrog steps from a fresh momentum :math:`p \\sim N(0, I)`; the
    ratio is :math:`H_0 - H_1`. ``jitter``: each transition uses ``eps * U(0.5, 1.5)``."""

    def transition(x, lp, grad, eps):
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
        return Proposal(q, lq, gq, h0 - h1, finite)

    return transition


#: the batched HMC's default acceptance target. Its step size is jittered up to 1.5 eps,
#: and at a target of 0.8 (Pyro's) 1.5 eps crossed the leapfrog's stability limit
#: (2 sd of the narrowest direction): on a 2-D Gaussian, 0-32 divergences in 12,000
#: draws and a bulk ESS of 8,900-9,400; at 0.9, none and 12,000 (three seeds each).
HMC_TARGET_ACCEPT = 0.9


# ---------------------------------------------------------------------- the driver
def run_chains(transition: Transition, log_density: LogDensity, x0: torch.Tensor, *,
               num_samples: int, warmup_steps: int, step_size: Optional[float],
               adjusted: bool, adapt: bool, target_accept: float, progress: bool,
               sampler: str, info: Optional[Dict[str, Any]] = None) -> ChainResult:
    """Run one chain per row of ``x0`` with ``transition``: ``warmup_steps`` discarded
    transitions (the chains' one step size adapting by dual averaging when ``adapt``), then
    ``num_samples`` recorded ones. ``adjusted``: the Metropolis test on the proposal's
    ratio; ``False`` accepts every finite proposal (ULA). ``sampler`` names the run
    (``info["sampler"]``, the progress bar); ``info`` adds settings to the result's."""
    C, D = x0.shape
    x = x0.detach().clone()
    lp, grad = value_and_grad(log_density, x)
    eps = torch.full((C, 1), 0.1 if step_size is None else float(step_size),
                     dtype=x.dtype, device=x.device)
    # Hoffman & Gelman (2014), Alg. 5: dual averaging of log(eps) toward mu = log(10 eps0),
    # one step size for all chains, on their mean acceptance (see the module's docstring)
    tuner = (DualAveraging(prox_center=torch.log(10 * eps[0, 0]), t0=10, kappa=0.75,
                           gamma=0.05) if adapt else None)
    shape = (C, num_samples)
    out = torch.empty(C, num_samples, D, dtype=x.dtype, device=x.device)
    stats = {"diverging": torch.zeros(shape, dtype=torch.bool, device=x.device),
             "acceptance_rate": torch.empty(shape, dtype=x.dtype, device=x.device),
             "step_size": torch.empty(shape, dtype=x.dtype, device=x.device),
             "lp": torch.empty(shape, dtype=x.dtype, device=x.device)}
    warm_div = 0
    bar = _bar(warmup_steps + num_samples, progress, sampler)
    try:
        for t in range(warmup_steps + num_samples):
            prop = transition(x, lp, grad, eps)
            if adjusted:
                log_ratio, accept_prob, accept = metropolis(prop.log_ratio, prop.finite)
                diverging = (~prop.finite) | (log_ratio < -DIVERGENCE_THRESHOLD)
            else:
                accept = prop.finite
                accept_prob = accept.to(x.dtype)
                diverging = ~accept
            x = torch.where(accept[:, None], prop.x, x)
            lp = torch.where(accept, prop.lp, lp)
            grad = torch.where(accept[:, None], prop.grad, grad)
            if t < warmup_steps:
                warm_div += int(diverging.sum())
                if tuner is not None:
                    tuner.step(target_accept - accept_prob.mean())
                    log_eps, log_eps_avg = tuner.get_state()
                    # after warmup: the averaged step size, fixed
                    last = log_eps_avg if t == warmup_steps - 1 else log_eps
                    eps = last.exp().expand(C, 1)
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
    info = {"sampler": sampler, "warmup_steps": warmup_steps, "num_chains": C,
            "num_samples": num_samples, **(info or {}), "target_accept": target_accept,
            "warmup_divergences": warm_div, "num_divergences": int(stats["diverging"].sum())}
    return ChainResult(out, stats, info)


# ---------------------------------------------------------------------- the samplers
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
        adapt: tune the chains' step size during warmup (dual averaging).
        progress: a tqdm progress bar (on stderr).

    Returns:
        a :class:`ChainResult` with ``samples`` ``(C, num_samples, D)``.

    Example:
        >>> import torch
        >>> from pyro_genmodels.infer.samplers import mala
        >>> torch.manual_seed(0) and None
        >>> r = mala(lambda x: -0.5 * x.pow(2).sum(-1), torch.zeros(100, 2),
        ...          num_samples=200, warmup_steps=200)
        >>> r.samples.shape, abs(r.samples.mean().item()) < 0.1
        (torch.Size([100, 200, 2]), True)
    """
    num_samples, warmup_steps = _validate_common(x0, num_samples, warmup_steps, step_size,
                                                 target_accept)
    return run_chains(mala_transition(log_density), log_density, x0,
                      num_samples=num_samples, warmup_steps=warmup_steps, step_size=step_size,
                      adjusted=adjusted, adapt=adapt and adjusted,
                      target_accept=target_accept, progress=progress,
                      sampler="langevin" if adjusted else "ula", info={"adjusted": adjusted})


def hmc(log_density: LogDensity, x0: torch.Tensor, *, num_samples: int,
        warmup_steps: int = 500, step_size: Optional[float] = None, num_leapfrog: int = 10,
        target_accept: float = HMC_TARGET_ACCEPT, adapt: bool = True, jitter: bool = True,
        progress: bool = False) -> ChainResult:
    r"""Fixed-length Hamiltonian Monte Carlo (unit mass matrix, ``num_leapfrog`` leapfrog
    steps per transition), one chain per row of ``x0``, batched: one call of
    ``log_density`` (and its gradient) per leapfrog step for all chains.

    The chains' one step size adapts during warmup (dual averaging toward
    ``target_accept``); with ``jitter`` (default) each transition uses
    ``step_size * U(0.5, 1.5)``, so the trajectory length ``num_leapfrog * step_size``
    varies and cannot lock onto a period of the dynamics (with a fixed length, a
    Gaussian direction whose period is close to the trajectory length barely moves).
    ``sample_stats["step_size"]`` records the un-jittered size. Arguments and result as
    in :func:`mala`.

    Example:
        >>> import torch
        >>> from pyro_genmodels.infer.samplers import hmc
        >>> torch.manual_seed(0) and None
        >>> r = hmc(lambda x: -0.5 * x.pow(2).sum(-1), torch.zeros(50, 2),
        ...         num_samples=100, warmup_steps=100)
        >>> r.samples.shape, r.num_divergences
        (torch.Size([50, 100, 2]), 0)
    """
    num_samples, warmup_steps = _validate_common(x0, num_samples, warmup_steps, step_size,
                                                 target_accept)
    num_leapfrog = positive_int(num_leapfrog, "num_leapfrog")
    return run_chains(hmc_transition(log_density, num_leapfrog, jitter), log_density, x0,
                      num_samples=num_samples, warmup_steps=warmup_steps, step_size=step_size,
                      adjusted=True, adapt=adapt, target_accept=target_accept,
                      progress=progress, sampler="hmc_vectorized",
                      info={"num_leapfrog": num_leapfrog})
