r"""KL and f-divergences as Monte Carlo estimates with standard errors.

An f-divergence, for convex :math:`f` with :math:`f(1) = 0`, is

.. math::

    D_f(P \,\|\, Q) = \int q(x)\, f\!\left(\frac{p(x)}{q(x)}\right) dx
                    = \mathbb E_{x \sim r}\!\left[\frac{q(x)}{r(x)}\,
                      f\!\left(\frac{p(x)}{q(x)}\right)\right]

for any proposal :math:`r` that covers :math:`q`. The naive choice :math:`r = q` never
sees the mass of :math:`p` where :math:`q` is tiny (two far-apart Gaussians give TV = 0.5
instead of 1), so when both sides can be sampled the default proposal is the mixture
:math:`r = (p + q) / 2`, drawn half from each (stratified). Every term is computed from
the bounded weights :math:`w_p = p/r` and :math:`w_q = q/r` in log space:

================  ===========================  ===================================
``f``             :math:`f(t)`                 term :math:`(q/r) f(p/q)`
================  ===========================  ===================================
``kl``            :math:`t \log t`             :math:`w_p (\log p - \log q)`
``reverse_kl``    :math:`-\log t`              :math:`w_q (\log q - \log p)`
``js``            Jensen-Shannon, in [0, log 2] :math:`\tfrac12[w_p \log\frac{p}{m} + w_q \log\frac{q}{m}]`
``tv``            :math:`\tfrac12 |t - 1|`     :math:`\tfrac12 |w_p - w_q|`
``hellinger``     :math:`\tfrac12(\sqrt t-1)^2` :math:`\tfrac12(\sqrt{w_p} - \sqrt{w_q})^2`
``pearson``       :math:`(t - 1)^2`            :math:`(w_p - w_q)^2 / w_q`
================  ===========================  ===================================

with :math:`m = (p + q)/2`. ``hellinger`` is the *squared* Hellinger distance
:math:`H^2 = 1 - \int\sqrt{pq}` (the Bhattacharyya coefficient), in [0, 1].

A side with no usable density (a Fit whose ``log_prob_kind`` is ``"bound"`` or
``"estimate"``) is refused unless ``allow_inexact=True``; an ``"unnormalized"`` density
is always refused, since its unknown constant shifts every estimate.

References:
    Ali & Silvey (1966); Csiszár (1967); Nowozin, Cseke & Tomioka (2016), *f-GAN*.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional, Union

import torch

from ._validation import as_data, positive_int
from .mc import MCEstimate, draw

LOG2 = math.log(2.0)

#: named f-divergences: the stable term from (log p, log q, log r)
_TERMS = {
    "kl": lambda lp, lq, wp, wq: _times(wp, lp - lq),
    "reverse_kl": lambda lp, lq, wp, wq: _times(wq, lq - lp),
    "js": lambda lp, lq, wp, wq: 0.5 * (
        _times(wp, lp - (torch.logaddexp(lp, lq) - LOG2))
        + _times(wq, lq - (torch.logaddexp(lp, lq) - LOG2))),
    "tv": lambda lp, lq, wp, wq: 0.5 * (wp - wq).abs(),
    "hellinger": lambda lp, lq, wp, wq: 0.5 * (wp.sqrt() - wq.sqrt()) ** 2,
    "pearson": lambda lp, lq, wp, wq: (wp - wq) ** 2 / wq,
}
F_DIVERGENCES = tuple(_TERMS)


def _times(w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``w * v`` with ``0 * anything = 0`` (a point where that side has no mass)."""
    return torch.where(w == 0, torch.zeros_like(v), w * v)


@dataclasses.dataclass(frozen=True, repr=False)
class CrossEntropy(MCEstimate):
    """``-E_data[log q(x)]``; with known-density data also ``kl`` = KL(p_data || q) and
    ``entropy`` = H(p_data), each with its own standard error."""

    kl: Optional[MCEstimate] = None
    entropy: Optional[MCEstimate] = None

    def __repr__(self) -> str:
        base = super().__repr__()
        if self.kl is None:
            return base
        return f"{base[:-1]}, kl={self.kl!r}, entropy={self.entropy!r})"


# ---------------------------------------------------------------------- the two sides
class _Side:
    """A distribution or Fit seen through ``log_prob`` and ``sample``."""

    def __init__(self, obj: Any, name: str, allow_inexact: bool):
        self.obj = obj
        self.name = name
        if hasattr(obj, "log_prob_kind"):  # a Fit
            kind = obj.log_prob_kind
            if kind == "unnormalized":
                raise ValueError(
                    f"{name} has an unnormalized log_prob: its unknown log Z shifts every "
                    f"divergence, so none can be estimated from it")
            if kind != "exact" and not allow_inexact:
                raise ValueError(
                    f"{name}.log_prob is a {kind!r}, not an exact log-density, so the "
                    f"divergence would be biased; pass allow_inexact=True to accept that")
            self.can_sample = True
        elif isinstance(obj, torch.distributions.Distribution):
            self.can_sample = obj.has_rsample or _has_sample(obj)
        else:
            raise TypeError(f"{name} must be a torch/Pyro distribution or a Fit, "
                            f"got {type(obj).__name__}")

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.obj.log_prob(x).double()

    def sample(self, n: int, seed: Optional[int]) -> torch.Tensor:
        return draw(self.obj, n, seed=seed)


def _has_sample(d: torch.distributions.Distribution) -> bool:
    return type(d).sample is not torch.distributions.Distribution.sample or \
        type(d).rsample is not torch.distributions.Distribution.rsample


def _exact_kl(p: Any, q: Any) -> Optional[float]:
    if isinstance(p, torch.distributions.Distribution) and \
            isinstance(q, torch.distributions.Distribution):
        try:
            return float(torch.distributions.kl_divergence(p, q).sum())
        except NotImplementedError:
            return None
    return None


# ---------------------------------------------------------------------- public API
def f_divergence(p: Any, q: Any, *, f: Union[str, Callable] = "kl", num_samples: int = 10000,
                 proposal: str = "auto", seed: Optional[int] = None,
                 allow_inexact: bool = False) -> MCEstimate:
    """Monte Carlo estimate of ``D_f(p || q)`` with its standard error.

    Args:
        p, q: torch/Pyro distributions or :class:`~pyro_genmodels.Fit`s (same event shape).
        f: one of ``"kl"``, ``"reverse_kl"``, ``"js"``, ``"tv"``, ``"hellinger"``
            (squared), ``"pearson"``, or a callable ``f(t)`` (convex, ``f(1) = 0``) applied
            elementwise to the density ratio ``t = p/q``.
        num_samples: draws in all (split evenly between p and q for the mixture).
        proposal: ``"auto"`` (``p`` for ``kl``, ``q`` for ``reverse_kl``, else the mixture
            when both sides can be sampled), ``"mixture"``, ``"p"`` or ``"q"``.
        seed: reproducible draws (the caller's RNG is untouched).
        allow_inexact: accept a Fit whose ``log_prob`` is a bound or an estimate.

    Returns:
        :class:`~pyro_genmodels.mc.MCEstimate`; ``exact`` is set for ``kl`` and
        ``reverse_kl`` where ``torch.distributions.kl_divergence`` knows the pair.

    Example:
        >>> import torch
        >>> from pyro_genmodels import divergences
        >>> p, q = torch.distributions.Normal(0., 1.), torch.distributions.Normal(20., 1.)
        >>> round(divergences.f_divergence(p, q, f="tv", seed=0).estimate, 3)
        1.0
    """
    num_samples = positive_int(num_samples, "num_samples")
    if isinstance(f, str):
        if f not in _TERMS:
            raise ValueError(f"Unknown f-divergence {f!r}; expected one of {list(_TERMS)} "
                             f"or a callable f(t)")
        term = _TERMS[f]
    elif callable(f):
        user_f = f

        def term(lp, lq, wp, wq):
            return _times(wq, torch.as_tensor(user_f(torch.exp(lp - lq))).double())
    else:
        raise TypeError(f"f must be a name or a callable, got {type(f).__name__}")
    if proposal not in ("auto", "mixture", "p", "q"):
        raise ValueError(f"Unknown proposal {proposal!r}; expected 'auto', 'mixture', 'p' "
                         f"or 'q'")
    P, Q = _Side(p, "p", allow_inexact), _Side(q, "q", allow_inexact)
    if proposal == "auto":
        if f == "kl" and P.can_sample:
            proposal = "p"
        elif f == "reverse_kl" and Q.can_sample:
            proposal = "q"
        elif P.can_sample and Q.can_sample:
            proposal = "mixture"
        else:
            proposal = "q" if Q.can_sample else "p"
    exact = None
    if f == "kl":
        exact = _exact_kl(p, q)
    elif f == "reverse_kl":
        exact = _exact_kl(q, p)

    def values(x: torch.Tensor, mixture: bool) -> torch.Tensor:
        lp, lq = P.log_prob(x), Q.log_prob(x)
        if mixture:
            lr = torch.logaddexp(lp, lq) - LOG2
        else:
            lr = lp if proposal == "p" else lq
        wp, wq = torch.exp(lp - lr), torch.exp(lq - lr)
        return term(lp, lq, wp, wq)

    if proposal == "mixture":
        half = max(1, num_samples // 2)
        seeds = (None, None) if seed is None else (seed, seed + 1)
        vp = values(P.sample(half, seeds[0]), True)
        vq = values(Q.sample(half, seeds[1]), True)
        a, b = MCEstimate.from_values(vp), MCEstimate.from_values(vq)
        est = 0.5 * (a.estimate + b.estimate)
        se = 0.5 * math.sqrt(a.stderr ** 2 + b.stderr ** 2)
        return MCEstimate(est, se, 2 * half, exact)
    side = P if proposal == "p" else Q
    if not side.can_sample:
        raise ValueError(f"proposal={proposal!r} needs samples of {proposal}, which has no "
                         f"sample method")
    res = MCEstimate.from_values(values(side.sample(num_samples, seed), False))
    return dataclasses.replace(res, exact=exact)


def kl(p: Any, q: Any, *, num_samples: int = 10000, seed: Optional[int] = None,
       allow_inexact: bool = False) -> MCEstimate:
    """``KL(p || q) = E_p[log p(x) - log q(x)]`` from draws of p (see :func:`f_divergence`)."""
    return f_divergence(p, q, f="kl", num_samples=num_samples, seed=seed,
                        allow_inexact=allow_inexact)


def cross_entropy(data: Any, q: Any, *, num_samples: int = 10000, seed: Optional[int] = None,
                  allow_inexact: bool = False) -> CrossEntropy:
    """``H(p_data, q) = -E_data[log q(x)] = KL(p_data || q) + H(p_data)``.

    With ``data`` an ``(N, D)`` sample (held-out points) this is the held-out negative
    log-likelihood, the quantity MLE minimizes; ``H(p_data)`` is unknown, so only the
    cross-entropy is returned. With ``data`` a distribution of known density (e.g.
    :func:`pyro_genmodels.datasets.toy`), ``num_samples`` draws are taken and the true
    ``kl`` and ``entropy`` are returned too, each with its standard error.
    """
    Q = _Side(q, "q", allow_inexact)
    if isinstance(data, torch.distributions.Distribution):
        P = _Side(data, "data", allow_inexact)
        x = P.sample(positive_int(num_samples, "num_samples"), seed)
        lp, lq = P.log_prob(x), Q.log_prob(x)
        ce = MCEstimate.from_values(-lq)
        return CrossEntropy(ce.estimate, ce.stderr, ce.num_samples,
                            kl=MCEstimate.from_values(lp - lq,
                                                      exact=_exact_kl(data, q)),
                            entropy=MCEstimate.from_values(-lp))
    x = as_data(data, name="data") if not isinstance(data, torch.Tensor) or data.dim() == 2 \
        else data
    ce = MCEstimate.from_values(-Q.log_prob(x))
    return CrossEntropy(ce.estimate, ce.stderr, ce.num_samples)
