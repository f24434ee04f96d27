r"""NUTS with little overhead per leapfrog step, on a fused potential (one chain at a time).

Pyro's ``NUTS`` kernel works on dicts of sites and runs the model's program for every
gradient (traced with ``jit_compile=True``: about 1 ms per gradient of ``Gaussian(3)`` on
500 rows, 2 cores). This module runs the same algorithm on one flat unconstrained vector
``q`` ``(D,)``: a leapfrog step is five tensor operations (``add`` with ``alpha``,
``addcmul``, ``dot``: one per update, where ``p + 0.5 * eps * g`` would be two) and one
call of the fused potential's value-and-gradient graph
(:class:`~pyro_genmodels.infer.potential.GradientGraph`), and the tree is plain Python
recursion over small records: about 0.06 ms per leapfrog step besides the potential, one
thread (0.11 ms with the elementwise expressions).

**The transition** (Hoffman & Gelman 2014, Alg. 6; multinomial sampling, Betancourt 2017,
A.3-A.4, as Stan and Pyro's ``NUTS`` with ``use_multinomial_sampling=True``). With a
diagonal mass matrix :math:`M = \mathrm{diag}(s^2)^{-1}` (``s2`` the adapted inverse
mass), draw :math:`p \sim N(0, M)`, :math:`H_0 = -\log\pi(q) + \tfrac12 p^\top M^{-1} p`,
and double a trajectory in a random direction until it turns or diverges:

- a leaf is one leapfrog step from its neighbour, weighted :math:`w = e^{H_0 - H}`;
  a leaf with :math:`H - H_0 > 1000` is a divergence and ends the transition;
- a subtree of depth :math:`k` is two subtrees of depth :math:`k - 1` (the second is not
  built when the first turned or diverged); its proposal is the first half's or, with
  probability :math:`w_2 / (w_1 + w_2)`, the second half's (multinomial within a subtree);
- a (sub)trajectory turns when :math:`v_-^\top \rho \le 0` or :math:`v_+^\top \rho \le 0`,
  :math:`v_\pm = M^{-1} p_\pm` the velocities at its two ends and :math:`\rho` the sum of
  the momenta of all its states (the generalized criterion, Betancourt 2017, A.4.2);
- at the top, a new subtree that neither turned nor diverged replaces the proposal with
  probability :math:`\min(1, w_\text{new} / w_\text{old})` (biased progressive sampling),
  and the doubling stops when the whole trajectory turns or reaches ``max_tree_depth``.

**Warmup** is Pyro's own :class:`~pyro.infer.mcmc.adaptation.WarmupAdapter` (Stan's
windows, dual averaging of the step size toward ``target_accept`` on each transition's
mean acceptance over its leaves, a diagonal mass matrix from Welford's variance of the
slow windows' states, regularized as Stan does), so the adaptation is the one
``method="nuts"`` uses; the "reasonable" step size after each mass-matrix update is
:func:`~pyro_genmodels.infer.chees.find_step_size` (Hoffman & Gelman 2014, Alg. 4).

Sample statistics per draw, as :func:`~pyro_genmodels.infer.mcmc.pyro_mcmc` records them:
``diverging``, ``acceptance_rate`` (the transition's mean acceptance over its leaves),
``step_size``, ``lp``, ``energy`` (:math:`H_0`) and ``n_steps`` (leapfrog steps).

References:
    Hoffman & Gelman (2014), *The No-U-Turn Sampler*, JMLR 15.
    Betancourt (2017), *A Conceptual Introduction to Hamiltonian Monte Carlo*,
    arXiv:1701.02434 (Appendix A).
    Stan Reference Manual, *Hamiltonian Monte Carlo* and *automatic parameter tuning*.
"""

from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Tuple

import torch
from pyro.infer.mcmc.adaptation import WarmupAdapter

from .._validation import positive_int
from .chees import find_step_size
from .samplers import ChainResult, LogDensity, _bar, _validate_common, value_and_grad

#: the energy error beyond which a leaf is a divergence (Stan's and Pyro's)
MAX_ENERGY_ERROR = 1000.0


class _Tree(NamedTuple):
    """A subtrajectory: its two ends (state, momentum, gradient), its proposal, the sum of
    its momenta ``rho``, its log weight, and what its leaves said."""

    q_minus: torch.Tensor
    p_minus: torch.Tensor
    g_minus: torch.Tensor
    q_plus: torch.Tensor
    p_plus: torch.Tensor
    g_plus: torch.Tensor
    q_prop: torch.Tensor
    lp_prop: torch.Tensor
    g_prop: torch.Tensor
    rho: torch.Tensor
    log_weight: float
    turning: bool
    diverging: bool
    sum_accept: float
    num_leaves: int


def _log_add_exp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


class _Chain:
    """One chain's state and its NUTS transition on ``log_density`` ``(1, D) -> (1,)``."""

    def __init__(self, log_density: LogDensity, q: torch.Tensor, max_tree_depth: int):
        self.log_density, self.max_tree_depth = log_density, max_tree_depth
        self.q = q
        self.lp, self.grad = self._value_and_grad(q)
        self.s2 = torch.ones_like(q)
        self.eps = 1.0

    def _value_and_grad(self, q: torch.Tensor):
        lp, grad = value_and_grad(self.log_density, q.unsqueeze(0))
        return lp[0], grad[0]

    def turning(self, p_minus, p_plus, rho) -> bool:
        v_rho = self.s2 * rho
        return float(torch.dot(p_minus, v_rho)) <= 0 or float(torch.dot(p_plus, v_rho)) <= 0

    def leaf(self, q, p, g, eps: float, h0: float) -> _Tree:
        p = torch.add(p, g, alpha=0.5 * eps)
        q = torch.addcmul(q, self.s2, p, value=eps)
        lp, g = self._value_and_grad(q)
        p = torch.add(p, g, alpha=0.5 * eps)
        h = 0.5 * float(torch.dot(self.s2 * p, p)) - float(lp)
        if math.isnan(h):
            h = math.inf
        log_w = h0 - h
        return _Tree(q, p, g, q, p, g, q, lp, g, p, log_w, False, -log_w > MAX_ENERGY_ERROR,
                     min(1.0, math.exp(min(log_w, 0.0))), 1)

    def build(self, q, p, g, eps: float, depth: int, h0: float) -> _Tree:
        """The subtree of ``2**depth`` leaves from ``(q, p, g)`` in the direction of the
        sign of ``eps``."""
        if depth == 0:
            return self.leaf(q, p, g, eps, h0)
        first = self.build(q, p, g, eps, depth - 1, h0)
        if first.turning or first.diverging:
            return first
        if eps > 0:
            second = self.build(first.q_plus, first.p_plus, first.g_plus, eps, depth - 1, h0)
        else:
            second = self.build(first.q_minus, first.p_minus, first.g_minus, eps, depth - 1, h0)
        log_w = _log_add_exp(first.log_weight, second.log_weight)
        take_second = float(torch.rand(())) < math.exp(second.log_weight - log_w) \
            if log_w > -math.inf else False
        prop = second if take_second else first
        minus, plus = (first, second) if eps > 0 else (second, first)
        rho = first.rho + second.rho
        turning = second.turning or self.turning(minus.p_minus, plus.p_plus, rho)
        return _Tree(minus.q_minus, minus.p_minus, minus.g_minus, plus.q_plus, plus.p_plus,
                     plus.g_plus, prop.q_prop, prop.lp_prop, prop.g_prop, rho, log_w,
                     turning, second.diverging, first.sum_accept + second.sum_accept,
                     first.num_leaves + second.num_leaves)

    def transition(self) -> Dict[str, float]:
        """One NUTS transition from ``self.q``; updates the state and returns the
        transition's statistics."""
        q, lp, g, s2 = self.q, self.lp, self.grad, self.s2
        p = torch.randn_like(q) / s2.sqrt()
        h0 = 0.5 * float(torch.dot(s2 * p, p)) - float(lp)
        q_minus = q_plus = q
        p_minus = p_plus = p
        g_minus = g_plus = g
        rho, log_w = p, 0.0
        sum_accept, leaves, diverging = 0.0, 0, False
        for depth in range(self.max_tree_depth):
            if float(torch.rand(())) < 0.5:
                tree = self.build(q_plus, p_plus, g_plus, self.eps, depth, h0)
                q_plus, p_plus, g_plus = tree.q_plus, tree.p_plus, tree.g_plus
            else:
                tree = self.build(q_minus, p_minus, g_minus, -self.eps, depth, h0)
                q_minus, p_minus, g_minus = tree.q_minus, tree.p_minus, tree.g_minus
            sum_accept += tree.sum_accept
            leaves += tree.num_leaves
            if tree.diverging:
                diverging = True
                break
            if tree.turning:
                break
            if float(torch.rand(())) < math.exp(min(0.0, tree.log_weight - log_w)):
                self.q, self.lp, self.grad = tree.q_prop, tree.lp_prop, tree.g_prop
            rho = rho + tree.rho
            if self.turning(p_minus, p_plus, rho):
                break
            log_w = _log_add_exp(log_w, tree.log_weight)
        return {"diverging": diverging, "acceptance_rate": sum_accept / max(leaves, 1),
                "step_size": self.eps, "lp": float(self.lp), "energy": h0,
                "n_steps": leaves}


def _adapter(chain: _Chain, warmup_steps: int, target_accept: float) -> WarmupAdapter:
    """Pyro's warmup adapter (step size and diagonal mass matrix) for ``chain``; its
    "reasonable step size" is found from the chain's current state."""
    def reasonable(z: Dict[str, torch.Tensor]) -> float:
        s2 = adapter.mass_matrix_adapter.inverse_mass_matrix[("q",)]
        return find_step_size(chain.log_density, chain.q.unsqueeze(0), chain.lp.unsqueeze(0),
                              chain.grad.unsqueeze(0), s2, adapter.step_size)

    adapter = WarmupAdapter(adapt_step_size=True, adapt_mass_matrix=True,
                            target_accept_prob=target_accept)
    q = chain.q
    adapter.configure(max(warmup_steps, 1), initial_step_size=1.0,
                      mass_matrix_shape={("q",): (q.numel(),)},
                      find_reasonable_step_size_fn=reasonable,
                      options={"dtype": q.dtype, "device": q.device})
    adapter.reset_step_size_adaptation({"q": q})
    return adapter


def nuts(log_density: LogDensity, x0: torch.Tensor, *, num_samples: int,
         warmup_steps: int = 500, target_accept: float = 0.8, max_tree_depth: int = 10,
         progress: bool = False) -> ChainResult:
    r"""NUTS (see the module docstring) on ``log_density``, one chain per row of ``x0``,
    run one after another, each with its own warmup.

    Args:
        log_density: ``(C, D) -> (C,)``, differentiable, known up to a constant; called
            with one row at a time.
        x0: initial points ``(C, D)``; start them dispersed, so R-hat means something.
        num_samples: draws kept per chain.
        warmup_steps: transitions of adaptation per chain, discarded.
        target_accept: the mean acceptance the step size aims at.
        max_tree_depth: the most doublings of a trajectory (``2**depth`` leapfrog steps).
        progress: a tqdm progress bar (on stderr).

    Returns:
        a :class:`~pyro_genmodels.infer.samplers.ChainResult` with the statistics of
        :data:`~pyro_genmodels.infer.mcmc.POSTERIOR_STATS`; ``info`` holds each chain's
        final ``step_size`` and ``inverse_mass_diag`` and whether the run was
        ``interrupted`` (Ctrl-C keeps the chains done; before the first chain is done,
        its draws so far; in its warmup, it propagates).

    Example:
        >>> import torch
        >>> from pyro_genmodels.infer.nuts import nuts
        >>> torch.manual_seed(0) and None
        >>> scales = torch.tensor([1.0, 10.0])
        >>> r = nuts(lambda x: -0.5 * (x / scales).pow(2).sum(-1), torch.randn(2, 2),
        ...          num_samples=500, warmup_steps=300)
        >>> r.samples.shape, ((r.samples.std((0, 1)) / scales - 1).abs() < 0.15).all().item()
        (torch.Size([2, 500, 2]), True)
    """
    num_samples, warmup_steps = _validate_common(x0, num_samples, warmup_steps, None,
                                                 target_accept)
    max_tree_depth = positive_int(max_tree_depth, "max_tree_depth")
    C, D = x0.shape
    names = ("diverging", "acceptance_rate", "step_size", "lp", "energy", "n_steps")
    # per chain kept: (draws, statistics, step size, inverse mass), appended whole, so a
    # Ctrl-C at any point leaves whole chains
    kept: List[Tuple[torch.Tensor, Dict[str, torch.Tensor], float, List[float]]] = []
    warm_div, interrupted = 0, False
    bar = _bar(C * (warmup_steps + num_samples), progress, "nuts")
    out = torch.empty(0, D)
    rec: Dict[str, List[float]] = {k: [] for k in names}

    def keep(chain: _Chain, n: int) -> None:
        stats = {k: torch.tensor(v[:n], dtype=torch.bool if k == "diverging" else x0.dtype,
                                 device=x0.device) for k, v in rec.items()}
        kept.append((out[:n], stats, chain.eps, chain.s2.tolist()))

    try:
        for c in range(C):
            chain = _Chain(log_density, x0[c].detach().clone(), max_tree_depth)
            adapter = _adapter(chain, warmup_steps, target_accept)
            chain.eps = adapter.step_size
            out = torch.empty(num_samples, D, dtype=x0.dtype, device=x0.device)
            rec = {k: [] for k in names}
            for it in range(warmup_steps + num_samples):
                s = chain.transition()
                if it < warmup_steps:
                    warm_div += bool(s["diverging"])
                    adapter.step(it, {"q": chain.q},
                                 torch.tensor(s["acceptance_rate"], dtype=x0.dtype))
                    chain.eps = adapter.step_size
                    chain.s2 = adapter.mass_matrix_adapter.inverse_mass_matrix[("q",)]
                else:
                    out[it - warmup_steps] = chain.q
                    for k in names:
                        rec[k].append(s[k])
                bar.update()
            keep(chain, num_samples)
    except KeyboardInterrupt:
        # the chains done are kept; with none done, the draws of the one running (a
        # chain's draws have one length, so a partial chain joins no finished one)
        drawn = min(len(v) for v in rec.values())
        if not kept and drawn:
            keep(chain, drawn)
        if not kept:
            raise
        interrupted = True
    finally:
        bar.close()
    draws, stats, step_sizes, inverse_mass = zip(*kept)
    sample_stats = {k: torch.stack([s[k] for s in stats]) for k in names}
    info = {"sampler": "nuts", "warmup_steps": warmup_steps, "num_chains": len(draws),
            "num_samples": draws[0].shape[0], "target_accept": target_accept,
            "step_size": list(step_sizes), "inverse_mass_diag": list(inverse_mass),
            "warmup_divergences": warm_div, "interrupted": interrupted,
            "num_divergences": int(sample_stats["diverging"].sum())}
    return ChainResult(torch.stack(draws), sample_stats, info)
