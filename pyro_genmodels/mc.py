r"""Monte Carlo expectations with standard errors.

.. math::

    \mathbb E_{x \sim p}[f(x)] \approx \hat\mu = \frac1n \sum_{i=1}^n f(x_i), \qquad
    \mathrm{se}(\hat\mu) = \frac{\hat\sigma_f}{\sqrt n},

with :math:`\hat\sigma_f` the sample standard deviation of the :math:`f(x_i)`. By the
central limit theorem :math:`\hat\mu \pm 4\,\mathrm{se}` covers the truth except with
probability about 6e-5, which is how the tests set their tolerances.

That needs a finite variance of :math:`f(x)`, and the mean itself a finite mean. Where
the values have a power-law right tail, :func:`tail_shape` estimates its Pareto shape
:math:`\hat k` (Vehtari et al. 2024, *Pareto smoothed importance sampling*, by ArviZ's
``psislw``): the variance is infinite for :math:`k \ge 1/2` (the standard error then
understates the error), the mean for :math:`k \ge 1`, and above :func:`tail_threshold`
(0.7 for 2155 draws or more) the estimate is not to be trusted (a divergence that is
infinite gives a finite average of finitely many draws, with a small standard error).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

import numpy as np
import torch

from ._rng import seeded
from ._validation import positive_int


@dataclasses.dataclass(frozen=True)
class MCEstimate:
    """A Monte Carlo estimate.

    Attributes:
        estimate: the estimate.
        stderr: its Monte Carlo standard error (0 when exact, ``nan`` when unknown).
        num_samples: how many draws it used.
        exact: the closed form, where one is known (else ``None``).
        pareto_k: the Pareto shape of the values' right tail (:func:`tail_shape`), where
            it was estimated (else ``None``): above :func:`tail_threshold` the estimate is
            unreliable and the expectation may be infinite.
    """

    estimate: float
    stderr: float
    num_samples: int
    exact: float | None = None  # (PEP 604: subclasses in other modules resolve it)
    pareto_k: float | None = None

    def __float__(self) -> float:
        return float(self.estimate)

    def __repr__(self) -> str:
        exact = "" if self.exact is None else f", exact {self.exact:.6g}"
        k = "" if self.pareto_k is None else f", pareto_k {self.pareto_k:.2f}"
        return (f"{type(self).__name__}({self.estimate:.6g} ± {self.stderr:.2g}, "
                f"n={self.num_samples}{exact}{k})")

    @classmethod
    def from_values(cls, values: torch.Tensor, **extra: Any) -> "MCEstimate":
        """Mean and standard error of per-sample values ``(n,)``."""
        values = values.detach().double().reshape(-1)
        n = values.numel()
        if n == 0:
            raise ValueError("Expected at least one sample value, got none")
        if torch.isnan(values).any():
            raise ValueError("Monte Carlo values contain NaN (undefined terms such as inf - inf)")
        mean = values.mean().item()
        if not math.isfinite(mean):
            return cls(mean, math.nan, n, **extra)
        se = values.std().item() / math.sqrt(n) if n > 1 else math.nan
        return cls(mean, se, n, **extra)


#: the largest Pareto shape of the values' tail at which an estimate of many draws is
#: trusted (Vehtari et al. 2024); with fewer draws, :func:`tail_threshold`
TAIL_K = 0.7


def tail_threshold(n: int) -> float:
    """The largest Pareto shape at which an estimate from ``n`` draws is trusted:
    min(1 - 1 / log10(n), :data:`TAIL_K`) (Vehtari et al. 2024), 0.7 from n = 2155."""
    return min(1 - 1 / math.log10(n), TAIL_K) if n > 10 else 0.0


def tail_shape(values: torch.Tensor) -> Optional[float]:
    """The Pareto shape k of the right tail of per-draw values ``(n,)``: ArviZ's PSIS fit
    (``az.psislw``, its tail of the largest min(n / 5, 3 sqrt n) values) to the values
    less their minimum, as log weights (k does not change under a shift or a scale of
    the values). Bounded values give k <= 0. ``None`` where there is no tail to fit:
    fewer than 10 values, all of them equal, or fewer than 5 distinct values above the
    tail's cutoff (e.g. a divergence of a distribution with itself, or a TV between
    disjoint ones). Where the tail's mass is a rare event that the draws do not contain
    (a category of probability 1e-3 under p and 1e-7 under q, among 10000 draws), no
    shape can show it."""
    import arviz as az

    v = values.detach().double().reshape(-1).cpu().numpy()
    v = v[np.isfinite(v)]
    if v.size < 10 or not v.max() > v.min():
        return None
    with np.errstate(all="ignore"):  # the minimum's log weight is -inf; an extreme
        log_w = np.log(v - v.min())  # tail overflows in the fit's intermediate steps
        k = float(np.asarray(az.psislw(log_w)[1]))
    return k if math.isfinite(k) else None


def draw(sampler: Any, n: int, *, seed: Optional[int] = None) -> torch.Tensor:
    """``n`` draws from a torch/Pyro distribution, a :class:`~pyro_genmodels.Fit`, or a
    callable ``sampler(n) -> (n, ...)``, under ``seed`` without touching the caller's RNG."""
    n = positive_int(n, "num_samples")
    if hasattr(sampler, "log_prob_kind"):  # a Fit seeds itself
        return sampler.sample(n, seed=seed)
    with seeded(seed):
        if isinstance(sampler, torch.distributions.Distribution):
            out = sampler.sample((n,))
        elif callable(sampler):
            out = torch.as_tensor(sampler(n))
        else:
            raise TypeError(f"Expected a distribution, a Fit or a callable sampler, "
                            f"got {type(sampler).__name__}")
    if out.shape[:1] != (n,):
        raise ValueError(f"The sampler returned shape {tuple(out.shape)}, expected ({n}, ...)")
    return out


def expectation(fn: Callable[[torch.Tensor], torch.Tensor], sampler: Any, num_samples: int,
                *, seed: Optional[int] = None) -> MCEstimate:
    """Estimate ``E[fn(X)]`` for ``X ~ sampler`` from ``num_samples`` independent draws.

    Args:
        fn: maps draws ``(n, ...)`` to values ``(n,)``.
        sampler: a torch/Pyro distribution, a Fit, or a callable ``n -> (n, ...)``.
        num_samples: n.
        seed: makes the draws reproducible.

    Example:
        >>> import torch
        >>> from pyro_genmodels import mc
        >>> r = mc.expectation(lambda x: x**2, torch.distributions.Normal(0., 1.), 10000, seed=0)
        >>> abs(r.estimate - 1.0) < 4 * r.stderr
        True
    """
    x = draw(sampler, num_samples, seed=seed)
    values = torch.as_tensor(fn(x))
    if values.shape != (num_samples,):
        raise ValueError(f"fn must return one value per draw, shape ({num_samples},), "
                         f"got {tuple(values.shape)}")
    return MCEstimate.from_values(values)
