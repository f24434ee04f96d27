r"""A fitted :class:`~pyro_genmodels.models.energy.EnergyModel`: its density
:math:`f(x) - \log \hat Z` with the AIS estimate of log Z cached, and its MCMC draws."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

import torch

from .._memory import chunked, draw_count
from ..fit import Fit
from ..infer.ais import AISEstimate
from ..infer.samplers import ChainResult

#: settings of the AIS run whose log Z a fit's ``log_prob`` subtracts (cached per fit);
#: ``num_steps="auto"`` doubles the temperatures until two runs agree (see
#: :meth:`~pyro_genmodels.models.energy.EnergyModel.log_normalizer`)
LOG_Z_SETTINGS: Dict[str, Any] = {"seed": 0, "num_particles": 1000, "num_steps": "auto"}


class EnergyFit(Fit):
    r"""A fitted :class:`EnergyModel`.

    ``log_prob(x)`` is :math:`f(x) - \log \hat Z` with :math:`\log \hat Z` the AIS
    estimate :attr:`log_z` (settings :data:`LOG_Z_SETTINGS`, seed 0): computed on first
    use, cached in ``info["log_z"]`` and saved with the fit, so a loaded fit gives
    identical values. So ``log_prob_kind`` is ``"estimate"`` (the model's capability is
    ``"unnormalized"``: its density is known up to Z); every value shares the standard
    error ``log_z.stderr``.
    """

    log_prob_kind = "estimate"

    # ------------------------------------------------------------------ density
    @torch.no_grad()
    def unnormalized_log_prob(self, x: Any, *, c: Any = None) -> torch.Tensor:
        """:math:`f_\\phi(x_i)` for each row, shape ``(N,)``."""
        x = self._as_input(x)
        self._as_context(c, x.shape[0])
        return chunked(x.shape[0], self._rows(), lambda a, b: self.model._f(x[a:b]))

    @property
    def log_z(self) -> AISEstimate:
        """The cached AIS estimate of :math:`\\log Z` (computed on first use)."""
        cached = self.info.get("log_z")
        if cached is None:
            est = self.model.log_normalizer(**LOG_Z_SETTINGS)
            cached = {"estimate": est.estimate, "stderr": est.stderr,
                      "num_samples": est.num_samples, "ess": est.ess,
                      "num_steps": est.num_steps, "settled": est.settled,
                      "seed": LOG_Z_SETTINGS["seed"]}
            self.info["log_z"] = cached
        return AISEstimate(float(cached["estimate"]), float(cached["stderr"]),
                              int(cached["num_samples"]), ess=float(cached["ess"]),
                              num_steps=int(cached["num_steps"]),
                              settled=cached.get("settled"))

    def log_normalizer(self, **options: Any) -> AISEstimate:
        """A fresh AIS estimate of :math:`\\log Z` (see :meth:`EnergyModel.log_normalizer`);
        not cached. :attr:`log_z` is the one ``log_prob`` uses."""
        return self.model.log_normalizer(**options)

    @torch.no_grad()
    def log_prob(self, x: Any, *, c: Any = None) -> torch.Tensor:
        """:math:`f(x_i) - \\log \\hat Z` for each row, shape ``(N,)`` (an estimate: the
        standard error of every value is ``log_z.stderr``)."""
        x = self._as_input(x)
        self._as_context(c, x.shape[0])
        log_z = self.log_z.estimate  # after the checks: the first use runs AIS
        return chunked(x.shape[0], self._rows(), lambda a, b: self.model._f(x[a:b]) - log_z)

    @torch.no_grad()
    def pointwise_log_likelihood(self, x: Any = None, *, c: Any = None) -> torch.Tensor:
        if x is None:
            x = self.data
        return self.log_prob(x, c=c).reshape(1, 1, -1)

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, *, c: Any = None, seed: Optional[int] = None,
               **options: Any) -> torch.Tensor:
        """``n`` MCMC draws ``(n, dim)``; options as in :meth:`EnergyModel.sample`
        (default ``sampler="langevin"``)."""
        n = draw_count(n)
        self._as_context(c, n)
        return self.model.sample(n, seed=seed, **options)

    def sample_chains(self, n: int, *, c: Any = None, seed: Optional[int] = None,
                      **options: Any) -> ChainResult:
        """The MCMC chains behind ``sample(n, ...)`` (same options, same draws for the same
        seed): see :meth:`EnergyModel.sample_chains`. :meth:`to_arviz` stays the fit's
        record (optimization trace, data); ``sample_chains(...).to_arviz()`` is the
        chains'."""
        n = draw_count(n)
        self._as_context(c, n)
        return self.model.sample_chains(n, seed=seed, **options)

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Save (see :meth:`Fit.save`); the cached :attr:`log_z` is computed first so that
        the loaded fit's ``log_prob`` is identical. A model built with ``from_log_density``
        cannot be saved (``TypeError``); one with a custom ``energy`` module is saved as
        weights and loads with ``load(path, model=...)``."""
        self.model.get_config()  # raises before anything is written
        self.log_z
        super().save(path)


__all__ = ["EnergyFit", "LOG_Z_SETTINGS"]
