"""Fitted densities as Pyro distributions that Pyro's MCMC and autoguides can take as a
prior, for :meth:`Fit.distribution <pyro_genmodels.fit.Fit.distribution>`: they need a
``support`` that ``biject_to`` knows.

- :func:`to_pyro`: a torch (or zuko) distribution through Pyro's
  :class:`~pyro.contrib.zuko.ZukoToPyro`, with the ``sample``, ``rsample`` and ``support``
  it leaves out (a zuko flow defines no support).
- :class:`Mixture`: Pyro's ``MixtureSameFamily`` on the support of its components (its
  own, ``MixtureSameFamilyConstraint``, has no ``biject_to``): a posterior predictive or
  a Gaussian mixture as a prior."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import pyro.distributions as dist
from pyro.contrib.zuko import ZukoToPyro
from pyro.distributions import constraints
import torch


class _AsPyro(ZukoToPyro):
    """Pyro's wrapper of a torch (or zuko) distribution, with the ``sample`` and
    ``rsample`` it leaves out (it draws only when called, as ``pyro.sample`` does)."""

    def rsample(self, sample_shape: Any = torch.Size()) -> torch.Tensor:
        return self.dist.rsample(sample_shape)

    def sample(self, sample_shape: Any = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.dist.rsample(sample_shape) if self.has_rsample \
                else self.dist.sample(sample_shape)

    def expand(self, *args: Any, **kwargs: Any) -> "_AsPyro":
        return _AsPyro(self.dist.expand(*args, **kwargs))

    @property
    def support(self) -> Any:
        """The wrapped distribution's support; a zuko flow defines none, and is on R^d."""
        try:
            return self.dist.support
        except NotImplementedError:
            return constraints.independent(constraints.real, len(self.event_shape))


def to_pyro(d: torch.distributions.Distribution) -> dist.TorchDistribution:
    """A torch (or zuko) distribution as a Pyro one."""
    return _AsPyro(d)


class Mixture(dist.MixtureSameFamily):
    """``MixtureSameFamily`` whose support is its components': the components of a fitted
    mixture share one support (R^d), on which the mixture's density is positive.

    ``select(k)``, given (:meth:`of_draws`), builds the components at indices ``k``
    ``(n,)`` as one distribution of batch ``(n,)``: :meth:`sample` then draws the
    component of each sample first and samples only those, a block of samples at a
    time. Torch's ``MixtureSameFamily.sample`` draws from every component for every
    sample, ``n x S x D`` numbers: a posterior predictive of S = 1,000 draws took 2.6 GB
    for 20,000 samples, and 200,000 were killed at 23 GB."""

    _select: Optional[Callable[[torch.Tensor], Any]] = None

    @classmethod
    def of_draws(cls, mixture_distribution: Any, component_distribution: Any,
                 select: Callable[[torch.Tensor], Any]) -> "Mixture":
        """The mixture, sampled through ``select`` (torch requires a subclass with its own
        ``__init__`` to define ``expand``; an expanded copy samples as torch does)."""
        d = cls(mixture_distribution, component_distribution)
        d._select = select
        return d

    def sample(self, sample_shape: Any = torch.Size()) -> torch.Tensor:
        select = self._select  # (an expanded copy has none)
        if select is None or self.batch_shape != torch.Size():
            return super().sample(sample_shape)
        shape = torch.Size(sample_shape)
        with torch.no_grad():
            k = self.mixture_distribution.sample(shape).reshape(-1)
            # a block of samples at a time: their components hold ~ rows x D^2 numbers
            rows = max(1, SELECT_ELEMENTS // max(1, self.event_shape.numel()) ** 2)
            out = [select(k[i:i + rows]).sample() for i in range(0, k.numel(), rows)]
            return torch.cat(out).reshape(shape + self.event_shape)

    @property
    def support(self) -> Any:
        return self.component_distribution.support


#: about the most numbers the components built for one block of samples hold
SELECT_ELEMENTS = 2 ** 22


class DrawsOf:
    """``k -> model.distribution(draws[k])``: the components of a posterior predictive at
    the stored draws ``k`` (a class, not a closure, so that the distribution pickles)."""

    def __init__(self, model: Any, draws: Dict[str, torch.Tensor]) -> None:
        self.model, self.draws = model, draws

    def __call__(self, k: torch.Tensor) -> Any:
        return self.model.distribution({n: v[k] for n, v in self.draws.items()}, None)
