r"""ChEES-HMC: many chains as one batched computation, with every tuning parameter
adapted across the chains (Hoffman, Radul & Sountsov, 2021).

All chains take the same number of leapfrog steps in every transition, so one call of
``log_density`` on ``(C, D)`` per step moves them all: no per-chain trees to mask, as a
batched NUTS would need. What NUTS decides per transition (how far to go) ChEES-HMC
learns during warmup from all the chains at once.

**A transition.** With a diagonal mass matrix :math:`M = \mathrm{diag}(s)^{-2}` (``s``,
``(D,)``, the adapted posterior scales), step size :math:`\epsilon` and trajectory
length :math:`T`, every chain draws :math:`p \sim N(0, M)`, takes
:math:`L = \lceil h_n T / \epsilon \rceil` leapfrog steps (:math:`h_n \in (0, 1)` the
n-th point of the van der Corput sequence, the same for all chains: a jittered length
never locks onto a period of the dynamics) and is accepted with probability
:math:`\min(1, e^{H_0 - H_1})`, :math:`H = -\log p(q) + \tfrac12 p^\top M^{-1} p`. Given
:math:`(\epsilon, T, s)` and :math:`n`, this is a reversible kernel that leaves the
target invariant, so after warmup the chains are exact MCMC.

**Warmup** follows Stan's windows (Pyro's ``WarmupAdapter`` schedule): a fast window, slow
windows of doubling length and a final fast window.

- Step size: Nesterov dual averaging (Hoffman & Gelman 2014, Alg. 5; Pyro's
  :class:`~pyro.ops.dual_averaging.DualAveraging`) of :math:`\log\epsilon`, shared by all
  chains, toward ``target_accept`` for the *harmonic* mean of the chains' acceptance
  probabilities (so one stuck chain pulls the step size down); restarted with a
  reasonable step size (Alg. 4) after each mass-matrix update. The default target,
  0.651, is the optimal HMC acceptance of Beskos et al. (2013).
- Mass matrix: at the end of each slow window, :math:`s^2` is the variance of the
  window's states pooled over all chains, shrunk toward :math:`10^{-3}` as Stan does
  (:math:`\frac{n}{n+5}\hat\sigma^2 + 10^{-3}\frac{5}{n+5}`).
- Trajectory length: stochastic gradient ascent of :math:`\log T` on the ChEES
  criterion (the change in squared distance from the center of the chains, squared). In
  whitened coordinates :math:`y = q / s`, with :math:`\bar y` the mean over chains
  (blended with the window's running mean),

  .. math::

      \text{ChEES} = \tfrac14\,\mathbb{E}\big[(\lVert y' - \bar y'\rVert^2
      - \lVert y - \bar y\rVert^2)^2\big], \qquad
      \frac{\partial\,\text{ChEES}}{\partial \log T} \propto
      t_n\,\delta\,(y' - \bar y')^\top v',

  :math:`\delta` the difference of squared distances, :math:`v'` the final velocity
  (:math:`dy'/dt = v'`) and :math:`t_n = L\epsilon \approx h_n T` the length of the
  transition's trajectory (:math:`dt_n / d\log T`), averaged over chains weighted by
  acceptance (as TFP and BlackJAX do). The factor :math:`t_n` matters: without it the
  estimate's mean is the derivative of the un-jittered criterion :math:`c(t)` averaged
  over the jitter, :math:`\int_0^1 c'(hT)\,dh = c(T)/T > 0`, which never vanishes, so
  :math:`T` drifts up as far as the noise lets it; with it, the mean is the derivative of
  the jittered criterion :math:`\int_0^1 c(hT)\,dh`. (Measured with 4 chains on the
  ``Gaussian(3)`` posterior of ``benchmarks/bench_posterior.py``: without the factor, 3
  warmups in 10 ended on the criterion's second, lower hump at 2-2.5 times the length,
  half the ESS per second.) TFP's per-gradient
  variant, ChEES / T, chose trajectories about three times shorter on both posteriors of
  ``benchmarks/bench_posterior.py`` and half the ESS per second there, so this is the
  paper's criterion. The step in :math:`\log T` is Adam's (:math:`\beta_1 = 0`,
  :math:`\beta_2 = 0.95`, rate 0.025),
  clipped to :math:`\pm 0.35`; the sampling phase uses the iterate average
  (weights :math:`k^{-0.6}`), capped at ``max_leapfrog`` steps. After each mass-matrix
  update the whitened posterior has unit scales, so :math:`T` goes on from
  at least :math:`\max(1, \epsilon)` and its average restarts with the window.

Sample statistics per draw: ``diverging`` (energy error above 1000 or a non-finite
proposal; rejected and counted), ``acceptance_rate``, ``step_size``, ``n_steps`` (the
leapfrog steps of the transition, NUTS's tree size), ``energy`` (:math:`H_0`, the
Hamiltonian after the momentum refresh, for E-BFMI and ``az.plot_energy``) and ``lp``.

References:
    Hoffman, Radul & Sountsov (2021), *An adaptive MCMC scheme for setting trajectory
    lengths in Hamiltonian Monte Carlo*, AISTATS.
    Hoffman & Gelman (2014), *The No-U-Turn Sampler*, JMLR 15.
    Beskos, Pillai, Roberts, Sanz-Serna & Stuart (2013), *Optimal tuning of the hybrid
    Monte Carlo algorithm*, Bernoulli 19(5A).
    Stan Reference Manual, *HMC algorithm parameters: automatic parameter tuning*.
"""

from __future__ import annotations

import math
from typing import Dict

import torch
from pyro.infer.mcmc.adaptation import WarmupAdapter
from pyro.ops.dual_averaging import DualAveraging

from .._validation import positive_int
from .samplers import (DIVERGENCE_THRESHOLD, ChainResult, LogDensity, _bar, _validate_common,
                       metropolis, value_and_grad)

#: the most leapfrog steps of one transition (NUTS's at ``max_tree_depth=10``)
MAX_LEAPFROG = 2 ** 10
#: The learning rate, second-moment decay and largest step of Adam on log T.
T_RATE, T_BETA2, T_MAX_STEP = 0.025, 0.95, 0.35


def van_der_corput(n: int) -> float:
    """The n-th point (n >= 1) of the base-2 van der Corput sequence, in (0, 1)."""
    out, f = 0.0, 0.5
    while n:
        out += f * (n & 1)
        n >>= 1
        f *= 0.5
    return out


def _leapfrog(log_density: LogDensity, q, p, grad, eps: float, s2: torch.Tensor, steps: int):
    """``steps`` leapfrog steps of all chains (velocity :math:`M^{-1} p = s^2 p`):
    the final ``(q, p, lp, grad)``."""
    p = p + 0.5 * eps * grad
    lp = grad.new_zeros(q.shape[0])
    for j in range(steps):
        q = q + eps * s2 * p
        lp, grad = value_and_grad(log_density, q)
        p = p + (eps if j < steps - 1 else 0.5 * eps) * grad
    return q, p, lp, grad


def _harmonic_mean(a: torch.Tensor) -> float:
    return float(1.0 / (1.0 / a.clamp(min=1e-10)).mean())


def find_step_size(log_density: LogDensity, q, lp, grad, s2, eps: float) -> float:
    """Hoffman & Gelman (2014, Alg. 4), over all chains at once: double or halve ``eps``
    until the mean one-step acceptance crosses 1/2."""
    def log_accept(e):
        p = torch.randn_like(q) / s2.sqrt()
        h0 = -lp + 0.5 * (s2 * p * p).sum(-1)
        _, p1, lp1, _ = _leapfrog(log_density, q, p, grad, e, s2, 1)
        h1 = -lp1 + 0.5 * (s2 * p1 * p1).sum(-1)
        a = torch.nan_to_num(h0 - h1, nan=-math.inf).clamp(max=0).exp().mean()
        return math.log(max(float(a), 1e-300))

    direction = 1 if log_accept(eps) > math.log(0.5) else -1
    for _ in range(60):
        new = eps * 2.0 ** direction
        if (log_accept(new) > math.log(0.5)) != (direction == 1) or not 1e-10 < new < 1e10:
            break
        eps = new
    return eps


class _Trajectory:
    """Warmup state of the trajectory length: Adam on log T and its iterate average."""

    def __init__(self, T: float) -> None:
        self.log_T, self.log_T_avg, self.v, self.k = math.log(T), math.log(T), 0.0, 0

    def update(self, g: float) -> None:
        self.k += 1
        if math.isfinite(g):
            self.v = T_BETA2 * self.v + (1 - T_BETA2) * g * g
            v_hat = self.v / (1 - T_BETA2 ** self.k)
            if v_hat > 0:
                step = max(-T_MAX_STEP, min(T_MAX_STEP, T_RATE * g / (math.sqrt(v_hat) + 1e-12)))
                self.log_T += step
        a = self.k ** -0.6
        self.log_T_avg = a * self.log_T + (1 - a) * self.log_T_avg


def chees_gradient(y0, y1, v1, mean0, mean1, accept_prob, length: float) -> float:
    r"""The acceptance-weighted estimate of :math:`\partial\,\text{ChEES}/\partial\log T`
    (up to a positive factor), from the whitened states before ``y0`` and after ``y1``
    ``(C, D)``, the final velocities ``v1``, the centers ``mean0`` / ``mean1`` ``(D,)``
    and the ``length`` of the transition's (jittered) trajectory, :math:`t_n`."""
    d1, d0 = y1 - mean1, y0 - mean0
    delta = d1.pow(2).sum(-1) - d0.pow(2).sum(-1)
    g = length * delta * (d1 * v1).sum(-1)
    w = accept_prob
    if _harmonic_mean(w) < 1e-4 or not bool(torch.isfinite(g).all()):
        return 0.0
    return float((w * g).sum() / w.sum().clamp(min=1e-30))


def chees(log_density: LogDensity, x0: torch.Tensor, *, num_samples: int,
          warmup_steps: int = 500, target_accept: float = 0.651,
          max_leapfrog: int = MAX_LEAPFROG, progress: bool = False) -> ChainResult:
    r"""ChEES-HMC (see the module docstring), one chain per row of ``x0``, all chains in
    one batched computation.

    Args:
        log_density: ``(C, D) -> (C,)``, differentiable, known up to a constant.
        x0: initial points ``(C, D)``; start them dispersed, so R-hat means something.
            Two or more chains are needed (the adaptation averages across them).
        num_samples: draws kept per chain.
        warmup_steps: transitions of adaptation per chain, discarded.
        target_accept: the harmonic-mean acceptance the step size aims at.
        max_leapfrog: the most leapfrog steps of one transition.
        progress: a tqdm progress bar (on stderr).

    Returns:
        a :class:`~pyro_genmodels.infer.samplers.ChainResult`; ``info`` holds the final
        ``step_size``, ``trajectory_length``, ``inverse_mass_diag`` and whether the run
        was ``interrupted`` (Ctrl-C during sampling keeps the draws so far).

    Example:
        >>> import torch
        >>> from pyro_genmodels.infer.chees import chees
        >>> torch.manual_seed(0) and None
        >>> scales = torch.tensor([1.0, 10.0])
        >>> r = chees(lambda x: -0.5 * (x / scales).pow(2).sum(-1), torch.randn(8, 2),
        ...           num_samples=500, warmup_steps=300)
        >>> r.samples.shape, ((r.samples.std((0, 1)) / scales - 1).abs() < 0.1).all().item()
        (torch.Size([8, 500, 2]), True)
    """
    num_samples, warmup_steps = _validate_common(x0, num_samples, warmup_steps, None,
                                                 target_accept)
    max_leapfrog = positive_int(max_leapfrog, "max_leapfrog")
    C, D = x0.shape
    if C < 2:
        raise ValueError(f"ChEES-HMC adapts across chains: expected at least 2 chains, "
                         f"but got {C}")
    dt, dev = x0.dtype, x0.device
    q = x0.detach().clone()
    lp, grad = value_and_grad(log_density, q)
    s2 = torch.ones(D, dtype=dt, device=dev)
    eps = find_step_size(log_density, q, lp, grad, s2, 1.0)
    tuner = DualAveraging(prox_center=math.log(10 * eps))
    traj = _Trajectory(eps)
    adapter = WarmupAdapter(adapt_mass_matrix=True)
    adapter.configure(max(warmup_steps, 1), eps, mass_matrix_shape={("q",): (D,)})
    slow_ends = {w.end for w in adapter.adaptation_schedule[1:-1]}
    win_sum, win_sq = torch.zeros(D, dtype=dt, device=dev), torch.zeros(D, dtype=dt, device=dev)
    win_n = 0

    out = torch.empty(C, num_samples, D, dtype=dt, device=dev)
    stats: Dict[str, torch.Tensor] = {
        "diverging": torch.zeros(C, num_samples, dtype=torch.bool, device=q.device),
        **{k: torch.empty(C, num_samples, dtype=dt, device=dev)
           for k in ("acceptance_rate", "step_size", "lp", "energy", "n_steps")}}
    warm_div, done, interrupted = 0, 0, False
    bar = _bar(warmup_steps + num_samples, progress, "chees")
    try:
        for it in range(warmup_steps + num_samples):
            warm = it < warmup_steps
            T = math.exp(traj.log_T if warm else traj.log_T_avg)
            h = van_der_corput(it + 1)
            steps = max(1, min(max_leapfrog, math.ceil(h * T / eps)))
            p = torch.randn_like(q) / s2.sqrt()
            h0 = -lp + 0.5 * (s2 * p * p).sum(-1)
            q1, p1, lp1, grad1 = _leapfrog(log_density, q, p, grad, eps, s2, steps)
            h1 = -lp1 + 0.5 * (s2 * p1 * p1).sum(-1)
            finite = torch.isfinite(h1) & torch.isfinite(grad1).all(-1) & torch.isfinite(q1).all(-1)
            log_ratio, accept_prob, accept = metropolis(h0 - h1, finite)
            diverging = (~finite) | (log_ratio < -DIVERGENCE_THRESHOLD)
            if warm:
                warm_div += int(diverging.sum())
                # the trajectory length, from the proposals (whitened) before acceptance
                s = s2.sqrt()
                w = win_n / (win_n + C)
                run_mean = win_sum / max(win_n, 1)
                mean0 = w * run_mean + (1 - w) * q.mean(0)
                wa = accept_prob / accept_prob.sum().clamp(min=1e-30)
                q1_safe = torch.where(finite[:, None], q1, q)
                mean1 = w * run_mean + (1 - w) * (wa[:, None] * q1_safe).sum(0)
                g = chees_gradient(q / s, q1_safe / s, torch.where(finite[:, None], s * p1, 0),
                                   mean0 / s, mean1 / s, accept_prob, steps * eps)
                traj.update(g)
            q = torch.where(accept[:, None], q1, q)
            lp = torch.where(accept, lp1, lp)
            grad = torch.where(accept[:, None], grad1, grad)
            if warm:
                tuner.step(target_accept - _harmonic_mean(accept_prob))
                log_eps, log_eps_avg = tuner.get_state()
                win_sum, win_sq, win_n = win_sum + q.sum(0), win_sq + (q * q).sum(0), win_n + C
                if it in slow_ends:  # a new mass matrix, a restarted step-size tuner
                    var = (win_sq - win_sum ** 2 / win_n) / max(win_n - 1, 1)
                    s2 = (win_n / (win_n + 5.0)) * var + 1e-3 * (5.0 / (win_n + 5.0))
                    win_sum, win_sq, win_n = torch.zeros_like(win_sum), torch.zeros_like(win_sq), 0
                    eps = find_step_size(log_density, q, lp, grad, s2, math.exp(log_eps))
                    tuner = DualAveraging(prox_center=math.log(10 * eps))
                    # whitened, the posterior has unit scales: a trajectory shorter than
                    # one time unit restarts at one; its average restarts with the window
                    traj.log_T = max(traj.log_T, math.log(max(1.0, eps)))
                    traj.log_T_avg, traj.k = traj.log_T, 0
                else:
                    eps = math.exp(log_eps_avg if it == warmup_steps - 1 else log_eps)
                T = math.exp(traj.log_T)
                if T > eps * max_leapfrog:  # T stays within max_leapfrog steps
                    traj.log_T = math.log(eps * max_leapfrog)
                traj.log_T_avg = min(traj.log_T_avg, math.log(eps * max_leapfrog))
            else:
                i = it - warmup_steps
                out[:, i] = q
                for name, value in (("diverging", diverging), ("acceptance_rate", accept_prob),
                                    ("step_size", eps), ("lp", lp), ("energy", h0),
                                    ("n_steps", steps)):
                    stats[name][:, i] = value
                done = i + 1
            bar.update()
    except KeyboardInterrupt:
        if done == 0:
            raise
        interrupted = True
        out = out[:, :done]
        stats = {k: v[:, :done] for k, v in stats.items()}
    finally:
        bar.close()
    info = {"sampler": "chees", "warmup_steps": warmup_steps, "num_chains": C,
            "num_samples": done, "target_accept": target_accept, "step_size": eps,
            "trajectory_length": math.exp(traj.log_T_avg), "inverse_mass_diag": s2.tolist(),
            "warmup_divergences": warm_div, "interrupted": interrupted,
            "num_divergences": int(stats["diverging"].sum())}
    return ChainResult(out, stats, info)

