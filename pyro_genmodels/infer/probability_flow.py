r"""The probability-flow ODE: exact-likelihood evaluation and deterministic sampling for
diffusion and score models, in the variance-exploding (DDIM / EDM) parameterization.

Data :math:`x_0 \sim p_{\text{data}}` noised as :math:`y_\sigma = x_0 + \sigma z`,
:math:`z \sim \mathcal N(0, I)`, has the marginal
:math:`p_\sigma = p_{\text{data}} * \mathcal N(0, \sigma^2 I)`, which solves the heat equation
:math:`\partial_\sigma p_\sigma = \sigma \Delta p_\sigma`. Written as a transport
(continuity) equation, :math:`\partial_\sigma p_\sigma = -\nabla\cdot(p_\sigma\,\varepsilon)`,
its velocity is the noise predictor

.. math::

    \frac{dy}{d\sigma} = \varepsilon(y, \sigma), \qquad
    \varepsilon(y, \sigma) = \mathbb E[z \mid y_\sigma = y]
    = -\sigma \nabla_y \log p_\sigma(y),

so moving points along this ODE carries :math:`p_{\sigma_a}` exactly onto
:math:`p_{\sigma_b}` (Song et al. 2021, eq. 13; Karras et al. 2022, eq. 4 with
:math:`\sigma(t) = t`). Along a trajectory the log density changes by minus the
divergence (Chen et al. 2018, instantaneous change of variables):

.. math::

    \log p_{\sigma_{\min}}(y_0) = \log p_{\sigma_{\max}}\bigl(y(\sigma_{\max})\bigr)
    + \int_{\sigma_{\min}}^{\sigma_{\max}}
      \nabla_y\!\cdot\varepsilon\bigl(y(\sigma), \sigma\bigr)\,d\sigma .

The divergence is the exact Jacobian trace (D backward passes) or Hutchinson's estimate
:math:`v^\top J v`, :math:`\mathbb E[v v^\top] = I`, with Rademacher probes held fixed
along the whole trajectory (Grathwohl et al. 2019), which keeps the estimate of
:math:`\log p` unbiased (the integral is linear in :math:`v^\top J v`).

**Log sigma.** The noise levels span :math:`10^{-3}` to :math:`10^{4}` and the dynamics
changes on the scale of :math:`\sigma` itself, so the ODE is integrated in
:math:`s = \log \sigma`: :math:`dy/ds = \sigma\,\varepsilon`,
:math:`d\ell/ds = \sigma\,\nabla\cdot\varepsilon`. There the right-hand side is smooth
and of order one over the whole range, and an adaptive solver needs a few dozen steps
instead of thousands.

**Solver.** :func:`torchdiffeq.odeint` (Chen et al. 2018): maintained adaptive
Runge-Kutta solvers with error control (``dopri5`` by default, the one FFJORD uses),
fixed-grid methods through ``method``/``options``, all rows as one batched state.

**Variance-preserving models** map onto this with :math:`y = x_t / \sqrt{\bar\alpha_t}`,
:math:`\sigma^2 = (1 - \bar\alpha_t) / \bar\alpha_t`; the caller does that inside its
``eps`` closure (this module knows no schedules), and the Jacobian
:math:`|dy/dx| = \bar\alpha_t^{-D/2}` is the caller's too.

References:
    Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole (2021), *Score-based generative
    modeling through stochastic differential equations*, ICLR.
    Chen, Rubanova, Bettencourt & Duvenaud (2018), *Neural ordinary differential
    equations*, NeurIPS.
    Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud (2019), *FFJORD: free-form
    continuous dynamics for scalable reversible generative models*, ICLR.
    Karras, Aittala, Aila & Laine (2022), *Elucidating the design space of
    diffusion-based generative models*, NeurIPS.
    Hutchinson (1990), *A stochastic estimator of the trace of the influence matrix for
    Laplacian smoothing splines*, Comm. Stat. Simul. Comput. 19(2).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .._rng import check_seed, seeded
from .._validation import as_data, check_choice, positive_float, positive_int

Eps = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
TRACES = ("auto", "exact", "hutchinson")
#: the options of :func:`flow_log_prob` that a fit's ``log_prob`` and
#: ``probability_flow`` pass on (diffusion and score models alike, checked by
#: :func:`check_ode_options`); the solver's ``method`` / ``options`` stay this module's
ODE_OPTIONS = ("trace", "num_probes", "rtol", "atol")
_ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")


@dataclasses.dataclass(frozen=True)
class FlowLogProb:
    """The result of :func:`flow_log_prob`.

    Attributes:
        log_prob: ``(N,)`` :math:`\\log p_{\\sigma_{\\min}}` of each row of ``y0``.
        nfe: evaluations of ``eps`` the solver used (each on the whole batch).
        trace: ``"exact"`` or ``"hutchinson"``, the divergence actually used.
        num_probes: Hutchinson probes per row (0 for the exact trace).
    """

    log_prob: torch.Tensor
    nfe: int
    trace: str
    num_probes: int


def _check_sigmas(sigma_min: Any, sigma_max: Any) -> tuple[float, float]:
    lo = positive_float(sigma_min, "sigma_min")
    hi = positive_float(sigma_max, "sigma_max")
    if not lo < hi:
        raise ValueError(f"Expected sigma_min < sigma_max, but got sigma_min={sigma_min!r}, "
                         f"sigma_max={sigma_max!r}")
    return lo, hi


def _check_probes(trace: str, num_probes: int) -> None:
    """Refuse probes that would do nothing: ``num_probes`` other than its default (1)
    with ``trace="exact"`` (``"auto"`` takes them where it picks Hutchinson's)."""
    if trace == "exact" and num_probes != 1:
        raise ValueError(f"num_probes is for the Hutchinson trace estimator, but "
                         f"trace='exact' takes the exact Jacobian trace, with no probes; "
                         f"got num_probes={num_probes}: leave num_probes out, or use "
                         f"trace='hutchinson' (or 'auto')")


def check_ode_options(options: Mapping[str, Any], *, caller: str,
                      takes: Sequence[str] = ()) -> dict:
    """``options`` checked before any work against :data:`ODE_OPTIONS`, the one list of
    the ODE likelihood's options: an unknown name is a ``ValueError`` naming it and the
    options taken (``takes``: the caller's own, for the message), and so is a bad value
    or ``num_probes`` with ``trace="exact"``. Returns the options as given (values
    normalized), for :func:`flow_log_prob`.

    Args:
        options: the keyword options given to ``caller``.
        caller: who takes them, for the message (``"ScoreFit.log_prob"``).
        takes: ``caller``'s other keyword arguments, for the message.
    """
    unknown = sorted(set(options) - set(ODE_OPTIONS))
    if unknown:
        own = f", or {', '.join(takes)}" if takes else ""
        raise ValueError(f"Unknown option(s) {unknown} for {caller}; expected the "
                         f"probability-flow ODE's {', '.join(ODE_OPTIONS)}{own}")
    out = dict(options)
    if "trace" in out:
        out["trace"] = check_choice(out["trace"], TRACES, "trace")
    if "num_probes" in out:
        out["num_probes"] = positive_int(out["num_probes"], "num_probes")
    for name in ("rtol", "atol"):
        if name in out:
            out[name] = positive_float(out[name], name)
    _check_probes(out.get("trace", "auto"), out.get("num_probes", 1))
    return out


def _odeint() -> Callable[..., Any]:
    """:func:`torchdiffeq.odeint`, imported where it is used: torchdiffeq imports
    ``scipy.integrate``, half a second of every ``import pyro_genmodels`` (and of every
    command-line call) that most sessions never use."""
    from torchdiffeq import odeint

    return odeint


def _check_solver(eps: Any, rtol: Any, atol: Any, method: Any, options: Any) -> dict:
    if not callable(eps):
        raise TypeError(f"Expected eps to be a callable eps(y, sigma), but got "
                        f"{type(eps).__name__}")
    positive_float(rtol, "rtol")
    positive_float(atol, "atol")
    if not isinstance(method, str):
        raise TypeError(f"Expected method to be a torchdiffeq method name, but got {method!r}")
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"Expected options to be a dict or None, but got {type(options).__name__}")
    options = dict(options or {})
    if method in _ADAPTIVE:
        # torchdiffeq's first-step heuristic scales with |y| / |dy/ds|, which is huge at a
        # small sigma_min (dy/ds = sigma eps is tiny there) and would probe exp(s) = inf;
        # the dynamics is of order one per unit of log sigma, so 0.1 is a safe start
        options.setdefault("first_step", 0.1)
    return options


def _call_eps(eps: Eps, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    e = eps(y, sigma)
    if not isinstance(e, torch.Tensor) or e.shape != y.shape:
        got = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
        raise ValueError(f"Expected eps(y, sigma) to return shape {tuple(y.shape)}, but got {got}")
    if not torch.isfinite(e).all():
        raise ValueError(f"Expected eps(y, sigma) to be finite, but got non-finite values "
                         f"at sigma={sigma.item():.4g}")
    return e


def _divergence(e: torch.Tensor, y: torch.Tensor, probes: torch.Tensor | None) -> torch.Tensor:
    """``(N,)`` trace of the row-wise Jacobian of ``e (N, D)`` in ``y (N, D)``: exact
    (one backward pass per coordinate) or, given ``probes (K, N, D)``, the mean of
    :math:`v_k^\\top J v_k` (one vector-Jacobian product per probe)."""
    if not e.requires_grad:
        raise ValueError("Expected eps(y, sigma) to be differentiable in y for the divergence, "
                         "but its output does not require grad (was it detached?)")
    if probes is None:
        d = y.shape[1]
        cols = [torch.autograd.grad(e[:, i].sum(), y, retain_graph=i < d - 1)[0][:, i]
                for i in range(d)]
        return torch.stack(cols, -1).sum(-1)
    k = probes.shape[0]
    est = [(torch.autograd.grad(e, y, grad_outputs=v, retain_graph=j < k - 1)[0] * v).sum(-1)
           for j, v in enumerate(probes)]
    return torch.stack(est).mean(0)


def flow_log_prob(eps: Eps, y0: Any, *, sigma_min: float, sigma_max: float,
                  prior_log_prob: Callable[[torch.Tensor], torch.Tensor], trace: str = "auto",
                  exact_max_dim: int = 8, num_probes: int = 1, seed: int | None = 0,
                  rtol: float = 1e-5, atol: float = 1e-5, method: str = "dopri5",
                  options: Mapping[str, Any] | None = None) -> FlowLogProb:
    r""":math:`\log p_{\sigma_{\min}}(y_0)` by integrating the probability-flow ODE from
    :math:`\sigma_{\min}` to :math:`\sigma_{\max}` together with the divergence.

    Args:
        eps: the noise predictor ``eps(y, sigma)``: ``y (B, D)`` and a 0-dim ``sigma`` of
            the same dtype and device to ``(B, D)``; it must treat rows independently and
            be differentiable in ``y``.
        y0: ``(N, D)`` points at noise level ``sigma_min``.
        sigma_min, sigma_max: ``0 < sigma_min < sigma_max``.
        prior_log_prob: ``(N, D) -> (N,)``, the density at ``sigma_max`` (e.g.
            :math:`\mathcal N(0, \sigma_{\max}^2 I)` for a VE model,
            :math:`\mathcal N(0, (1 + \sigma_{\max}^2) I)` for a VP one in these coordinates).
        trace: ``"exact"``, ``"hutchinson"``, or ``"auto"`` (exact when
            ``D <= exact_max_dim``).
        exact_max_dim: the largest D for which ``"auto"`` takes the exact trace.
        num_probes: Rademacher probes per row for Hutchinson, averaged; with
            ``trace="exact"`` only its default 1 (probes would do nothing there).
        seed: seeds the probes (drawn once, fixed along the trajectory); the caller's
            random state is left untouched.
        rtol, atol, method, options: passed to :func:`torchdiffeq.odeint`.

    Returns:
        A :class:`FlowLogProb`. Works under :func:`torch.no_grad` and
        :func:`torch.inference_mode`: gradients in ``y`` are enabled locally, and nothing
        is kept between solver steps.
    """
    y0 = as_data(y0, name="y0")
    lo, hi = _check_sigmas(sigma_min, sigma_max)
    if not callable(prior_log_prob):
        raise TypeError(f"Expected prior_log_prob to be callable, but got "
                        f"{type(prior_log_prob).__name__}")
    trace = check_choice(trace, TRACES, "trace")
    exact_max_dim = positive_int(exact_max_dim, "exact_max_dim")
    num_probes = positive_int(num_probes, "num_probes")
    _check_probes(trace, num_probes)
    seed = check_seed(seed)
    opts = _check_solver(eps, rtol, atol, method, options)
    n, d = y0.shape
    if trace == "auto":
        trace = "exact" if d <= exact_max_dim else "hutchinson"
    probes = None
    if trace == "hutchinson":
        with seeded(seed):  # on the CPU generator, so a seed means the same on any device
            probes = torch.randint(0, 2, (num_probes, n, d)) * 2 - 1
        probes = probes.to(dtype=y0.dtype, device=y0.device)

    nfe = 0

    def func(s: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        nonlocal nfe
        nfe += 1
        sigma = s.exp()
        # fresh leaves (clones, so inference-mode tensors become ordinary ones) and grad on,
        # whatever the caller's mode; detached after, so no graph spans two evaluations
        with torch.inference_mode(False), torch.enable_grad():
            y = state[0].clone().requires_grad_(True)
            e = _call_eps(eps, y, sigma.clone())
            div = _divergence(e, y, probes)
        return sigma * e.detach(), sigma * div.detach()

    t = torch.tensor([math.log(lo), math.log(hi)], dtype=y0.dtype, device=y0.device)
    odeint = _odeint()
    with torch.no_grad():
        ys, acc = odeint(func, (y0, y0.new_zeros(n)), t, rtol=rtol, atol=atol,
                         method=method, options=opts)
        y_end, delta = ys[-1], acc[-1]
        prior = torch.as_tensor(prior_log_prob(y_end))
    if prior.shape != (n,):
        raise ValueError(f"Expected prior_log_prob to return shape ({n},), but got "
                         f"{tuple(prior.shape)}")
    return FlowLogProb(log_prob=(prior + delta).detach(), nfe=nfe, trace=trace,
                       num_probes=num_probes if trace == "hutchinson" else 0)


def _integrate(eps: Eps, y: torch.Tensor, sigma_from: float, sigma_to: float, *,
               rtol: float, atol: float, method: str, options: dict) -> torch.Tensor:
    """``y (N, D)`` carried along the flow from ``sigma_from`` to ``sigma_to`` (either way)."""

    def func(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        sigma = s.exp()
        return sigma * _call_eps(eps, y, sigma)

    t = torch.tensor([math.log(sigma_from), math.log(sigma_to)], dtype=y.dtype, device=y.device)
    odeint = _odeint()
    with torch.no_grad():
        return odeint(func, y, t, rtol=rtol, atol=atol, method=method, options=options)[-1]


def flow_sample(eps: Eps, y_end: Any, *, sigma_min: float, sigma_max: float,
                rtol: float = 1e-5, atol: float = 1e-5, method: str = "dopri5",
                options: Mapping[str, Any] | None = None) -> torch.Tensor:
    r"""Carry ``y_end (n, D)`` (draws from :math:`p_{\sigma_{\max}}`) back along the
    probability-flow ODE to :math:`\sigma_{\min}`; returns ``(n, D)``.

    The map is deterministic, so it is also the decoder of the flow's latent code: it
    inverts the forward integration of :func:`flow_log_prob` up to the solver tolerance.

    Args:
        eps: the noise predictor, as in :func:`flow_log_prob`.
        y_end: ``(n, D)`` points at noise level ``sigma_max``.
        sigma_min, sigma_max: ``0 < sigma_min < sigma_max``.
        rtol, atol, method, options: passed to :func:`torchdiffeq.odeint`.
    """
    y_end = as_data(y_end, name="y_end")
    lo, hi = _check_sigmas(sigma_min, sigma_max)
    opts = _check_solver(eps, rtol, atol, method, options)
    return _integrate(eps, y_end, hi, lo, rtol=rtol, atol=atol, method=method, options=opts)


__all__ = ["FlowLogProb", "ODE_OPTIONS", "check_ode_options", "flow_log_prob",
           "flow_sample"]
