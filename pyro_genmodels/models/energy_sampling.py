r"""Sampling and normalizing an :class:`~pyro_genmodels.models.energy.EnergyModel`: MCMC
chains (batched MALA / HMC, or Pyro's NUTS / HMC), their starting points (an SMC run
through temperatures, or annealed Langevin through the noise levels of a
noise-conditional energy), and annealed importance sampling of log Z with an automatic
number of temperatures. A mixin: the model supplies ``_f``, ``_f_of_u``, ``score_unit``,
its levels and its Gaussian base.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Union, cast

import torch

from .._rng import seeded
from .._validation import as_data, check_bool, check_choice, nonnegative_int, positive_int
from ..infer.ais import AISEstimate, anneal
from ..infer.chees import chees
from ..infer.engines import HMCOptions
from ..infer.mcmc import pyro_mcmc
from ..infer.objectives import traced_execution
from ..infer.potential import traced_density
from .._memory import draw_count, fits_in_memory
from ..fit import _chunk_rows
from ..infer.samplers import (HMC_TARGET_ACCEPT, ChainResult, check_log_density, hmc,
                              hmc_transition, mala, mala_transition, run_chains)
from .noise_nets import geometric_levels

if TYPE_CHECKING:
    import arviz

#: samplers accepted by ``sample(..., sampler=...)``
SAMPLERS = ("langevin", "hmc_vectorized", "chees", "nuts", "hmc")
#: the trajectory length (step size x leapfrog steps) of ``sampler="hmc"`` (Pyro's HMC)
#: unless ``trajectory_length`` or ``num_steps`` is given: ``fit(method="hmc")``'s, from
#: :class:`~pyro_genmodels.infer.engines.HMCOptions`, not Pyro's own 2 pi (see
#: :meth:`EnergySampling.sample_chains`)
HMC_TRAJECTORY_LENGTH = HMCOptions.trajectory_length
#: the first and the largest number of AIS temperatures of ``log_normalizer(num_steps="auto")``
AIS_FIRST_STEPS, AIS_MAX_STEPS = 100, 3200


class EnergySampling:
    """:meth:`sample`, :meth:`sample_chains` and :meth:`log_normalizer` of an
    :class:`~pyro_genmodels.models.energy.EnergyModel`."""

    if TYPE_CHECKING:  # supplied by the model (EnergyModel, a GenerativeModel)
        dim: int
        net: torch.nn.Module
        standardize: bool
        noise_conditional: bool
        num_levels: int
        sigmas: torch.Tensor
        eval_level: torch.Tensor
        base_loc: torch.Tensor
        base_scale: torch.Tensor

        @property
        def _factory(self) -> Dict[str, Any]: ...
        def _f(self, x: torch.Tensor) -> torch.Tensor: ...
        def _vector(self, v: Any, name: str) -> torch.Tensor: ...
        def to_unit(self, x: torch.Tensor) -> torch.Tensor: ...
        def from_unit(self, u: torch.Tensor) -> torch.Tensor: ...

    def sample(self, n: int, *, return_inference_data: bool = False,
               seed: Optional[int] = None, **options: Any
               ) -> Union[torch.Tensor, arviz.InferenceData]:
        r"""``n`` MCMC draws from :math:`p(x) \propto \exp f(x)`, shape ``(n, dim)``, taken
        draw-major over the chains (draw 0 of every chain, then draw 1, ...): the draws
        of ``sample_chains(n, seed=seed, **options).flat(n)``, but the batched samplers
        run a segment of draws at a time (about a chunk of rows,
        :data:`~pyro_genmodels.fit.CHUNK_ELEMENTS`, or one draw of every chain), copy it
        into the output and drop its record (draws and statistics), so the memory beyond
        the output does not grow with n (Pyro's ``"nuts"`` / ``"hmc"`` keep their whole
        record). Options (``sampler``, ``num_chains``, ``warmup_steps``, ...) as in
        :meth:`sample_chains`.
        ``return_inference_data=True`` returns ``sample_chains(n, ...).to_arviz()``
        (``arviz.InferenceData``, all chains and draws, with ``sample_stats``) instead.
        """
        if return_inference_data:
            return self.sample_chains(n, seed=seed, **options).to_arviz()
        n = draw_count(n)
        with seeded(seed), fits_in_memory(f"n = {n} draws of {self.dim} columns"):
            return cast(torch.Tensor, self._run(n, flat=True, **options))

    def sample_chains(self, n: int, *, seed: Optional[int] = None,
                      **options: Any) -> ChainResult:
        r"""MCMC chains on :math:`p(x) \propto \exp f(x)`, enough for ``n`` draws: a
        :class:`~pyro_genmodels.infer.samplers.ChainResult` with ``samples``
        ``(num_chains, ceil(n / num_chains), dim)``, ``sample_stats`` (``diverging``,
        ``acceptance_rate``, ``step_size``, ``lp``) and ``info``; ``.flat(n)`` is what
        :meth:`sample` returns, ``.to_arviz()`` an ``arviz.InferenceData`` (R-hat, ESS,
        divergences; posterior ``x`` with dims ``(chain, draw, x_dim_0)``).

        Args:
            n: number of draws wanted (each chain runs ``ceil(n / num_chains)``
                post-warmup transitions).
            seed: makes the draws reproducible; the caller's RNG is untouched.
            **options: the keyword arguments below; any other goes to Pyro's kernel
                (``"nuts"`` / ``"hmc"``: ``max_tree_depth``, ``trajectory_length``,
                ``full_mass``) and is an error for the other samplers.

        Keyword Args:
            sampler: ``"langevin"`` (default; MALA, batched over chains;
                ``adjusted=False`` for ULA), ``"hmc_vectorized"`` (fixed-length HMC,
                batched), ``"nuts"`` or ``"hmc"`` (``pyro.infer.MCMC`` with ``NUTS`` /
                ``HMC`` on the potential ``-f``, one chain after another, Pyro's
                step-size and mass-matrix adaptation). ``"hmc"`` is always Pyro's; the
                batched one is only ever ``"hmc_vectorized"``. Its trajectory length
                :math:`T = \epsilon L` (step size x leapfrog steps) is
                :data:`HMC_TRAJECTORY_LENGTH` (1.0, ``fit(method="hmc")``'s) unless
                ``trajectory_length`` or ``num_steps`` is given; not Pyro's default
                :math:`2\pi`: on a Gaussian target with mass matrix :math:`M \approx
                \Sigma^{-1}` (what the adaptation estimates) the flow
                :math:`x_t = x_0 \cos t + M^{-1} p \sin t` returns to its start at
                :math:`t = 2\pi`, so that a transition lands near the last draw or,
                leapfrog's period differing a little, where the adapted step size puts
                it: the chains stall or not by chance (on :math:`N(0, I)` bulk-ESS 4 to
                over 2000 of 2000 draws, by seed); at :math:`T = 1` successive draws
                correlate by about :math:`\cos 1 \approx 0.54`. ``"chees"``: ChEES-HMC
                (:func:`~pyro_genmodels.infer.chees.chees`), batched, with step size,
                diagonal mass matrix and trajectory length adapted across the chains.
            num_chains: default ``min(n, 1000)`` for the batched samplers, ``min(n, 2)``
                for Pyro's, 4 for ``"chees"`` (at least 2).
            warmup_steps: discarded transitions per chain (step sizes adapt); default 500
                (batched) or 300 (Pyro).
            init: ``"anneal"`` (default: chains start in every mode in proportion to
                its mass: for a noise-conditional energy by annealed Langevin through the
                noise levels down to sigma_0, otherwise by an SMC run from the Gaussian
                base through temperatures), ``"base"`` (draws from the base), or a
                ``(num_chains, dim)`` tensor.
            step_size: initial (or, for ULA, fixed) step size of the batched samplers, in
                the network's units (standardized columns when the model standardizes).
            adjusted: Metropolis correction of ``"langevin"`` (default True).
            num_leapfrog: leapfrog steps per ``"hmc_vectorized"`` transition (10).
            target_accept: adaptation target (0.574 MALA, 0.9 batched HMC, 0.8 Pyro's
                HMC/NUTS, 0.651 ChEES).
            anneal_steps: of ``init="anneal"``: the SMC run's temperatures, or for a
                noise-conditional energy the Langevin steps per noise level (100).
            jit_compile: trace the value and gradient of the log density as one graph
                (:class:`~pyro_genmodels.infer.potential.GradientGraph`) for the batched
                samplers (``"langevin"``, ``"hmc_vectorized"``, ``"chees"``), or Pyro's
                ``jit_compile`` for ``"nuts"`` / ``"hmc"``. Off by default: a trace holds
                for one control flow, and only you know that your function has one. The
                graph is checked against autograd at the chains' starts and between
                them before any draw; ``info["potential"]`` says what ran. (A 10-weight
                logistic regression on 1000 rows, 4 chains, 2 threads: 0.17 ms per value
                and gradient traced against 0.20 ms eager; a function of many small
                operations gains more, one of a few large ones less.)
            compile: the same graph compiled by Inductor, torch.compile's compiler (batched
                samplers; the first call compiles for seconds).
            progress: a progress bar.
        """
        n = draw_count(n)
        with seeded(seed), fits_in_memory(f"n = {n} draws of {self.dim} columns"):
            return cast(ChainResult, self._run(n, **options))  # not flat: the chains

    def _run(self, n: int, *, flat: bool = False, sampler: str = "langevin",
             num_chains: Optional[int] = None, warmup_steps: Optional[int] = None,
             init: Union[str, torch.Tensor] = "anneal", step_size: Optional[float] = None,
             adjusted: bool = True, num_leapfrog: int = 10,
             target_accept: Optional[float] = None, anneal_steps: int = 100,
             progress: bool = False, jit_compile: bool = False, compile: bool = False,
             **kernel_options: Any) -> Union[ChainResult, torch.Tensor]:
        """The chains of :meth:`sample_chains` in the data's units, or with ``flat`` the
        ``(n, dim)`` draws of :meth:`sample`: a batched sampler then runs its first
        segment of draws (warmup included) and :meth:`_flat` the others."""
        check_choice(sampler, SAMPLERS, "sampler")
        batched = sampler in ("langevin", "hmc_vectorized")
        jit_compile, compile = check_bool(jit_compile, "jit_compile"), check_bool(compile,
                                                                                 "compile")
        if compile and sampler in ("nuts", "hmc"):
            raise ValueError(f"compile=True is for the batched samplers (langevin, "
                             f"hmc_vectorized, chees), not {sampler!r}; Pyro's kernel takes "
                             f"jit_compile=True")
        if kernel_options and (batched or sampler == "chees"):
            import inspect

            takes = [k for k, p in inspect.signature(self._run).parameters.items()
                     if p.kind is p.KEYWORD_ONLY and k != "flat"]
            raise ValueError(f"Unknown option(s) {sorted(kernel_options)} for sampler "
                             f"{sampler!r}; expected some of {takes} (Pyro's kernel "
                             f"options are for sampler='nuts' or 'hmc')")
        if num_chains is None:
            num_chains = 4 if sampler == "chees" else min(n, 1000 if batched else 2)
        num_chains = positive_int(num_chains, "num_chains")
        if warmup_steps is None:
            warmup_steps = 300 if sampler in ("nuts", "hmc") else 500
        warmup_steps = nonnegative_int(warmup_steps, "warmup_steps")
        if target_accept is None:
            target_accept = {"langevin": 0.574, "chees": 0.651,
                             "hmc_vectorized": HMC_TARGET_ACCEPT}.get(sampler, 0.8)
        num_samples = -(-n // num_chains)
        first = num_samples
        if flat and batched:  # a segment holds per row: x thrice (the chains', flat, in the
            # data's units) and 4 statistics
            first = min(num_samples, max(1, _chunk_rows(3 * self.dim + 4) // num_chains))
        self.net.eval()
        x0 = self._initial_points(num_chains, init, anneal_steps)
        check_log_density(self._f, x0)
        # the chains move in the network's units u (standardized columns when the model
        # standardizes): one step size then suits every column, however raw their scales
        f_u = (lambda u: self._f(self.from_unit(u))) if self.standardize else self._f
        u0 = self.to_unit(x0)
        info: Dict[str, Any] = {}
        kind = "torch.compile" if compile else "jit" if jit_compile else "eager"
        if sampler in ("nuts", "hmc"):  # Pyro traces its own potential
            kernel_options["jit_compile"] = jit_compile
        if sampler == "hmc" and kernel_options.get("trajectory_length") is None \
                and kernel_options.get("num_steps") is None:
            kernel_options["trajectory_length"] = HMC_TRAJECTORY_LENGTH
        with traced_execution() if kind != "eager" else contextlib.nullcontext():
            if kind != "eager" and sampler not in ("nuts", "hmc"):
                f_u = traced_density(f_u, u0, kind, info)
            result = self._chains(f_u, u0, sampler, num_samples, first, warmup_steps,
                                  step_size, adjusted, num_leapfrog, target_accept,
                                  progress, kernel_options)
        result.info.update(info, potential=kind)
        if flat and result.info.get("interrupted"):  # sample(n) gives n rows or none: the
            raise KeyboardInterrupt                  # draws Ctrl-C keeps are sample_chains's
        if flat and batched:  # the next segments (same shape) run the same graph
            with traced_execution() if kind != "eager" else contextlib.nullcontext():
                return self._more(result, f_u, n, num_samples, sampler, num_leapfrog,
                                  adjusted, target_accept, progress)
        if flat:
            return self.from_unit(result.flat(n))
        if not self.standardize:
            return result
        return dataclasses.replace(result, samples=self.from_unit(result.samples))

    @staticmethod
    def _chains(f_u, u0, sampler, num_samples, first, warmup_steps, step_size, adjusted,
                num_leapfrog, target_accept, progress, kernel_options) -> ChainResult:
        """The chains of :meth:`_run` from ``u0`` in the network's units."""
        if sampler == "langevin":
            return mala(f_u, u0, num_samples=first, warmup_steps=warmup_steps,
                        step_size=step_size, adjusted=adjusted,
                        target_accept=target_accept, progress=progress)
        if sampler == "hmc_vectorized":
            return hmc(f_u, u0, num_samples=first, warmup_steps=warmup_steps,
                       step_size=step_size, num_leapfrog=num_leapfrog,
                       target_accept=target_accept, progress=progress)
        if sampler == "chees":
            return chees(f_u, u0, num_samples=num_samples, warmup_steps=warmup_steps,
                         target_accept=target_accept, progress=progress)
        return pyro_mcmc(f_u, u0, kernel=sampler, num_samples=num_samples,
                         warmup_steps=warmup_steps, target_accept=target_accept,
                         progress=progress, **kernel_options)

    def _more(self, result: ChainResult, f_u, n: int, num_samples: int, sampler: str,
              num_leapfrog: int, adjusted: bool, target_accept: float,
              progress: bool) -> torch.Tensor:
        """The flat draws of a batched sampler: the next segments go on from each
        chain's last draw with its step size, as fixed after warmup (the driver's own
        step size is not the chain's: ignored)."""
        if sampler == "langevin":
            step = mala_transition(f_u)
        else:
            step, adjusted = hmc_transition(f_u, positive_int(num_leapfrog, "num_leapfrog"),
                                            True), True
        eps = result.sample_stats["step_size"][:, -1:].clone()

        def more(u: torch.Tensor, draws: int) -> ChainResult:
            return run_chains(lambda x, lp, grad, _: step(x, lp, grad, eps), f_u, u,
                              num_samples=draws, warmup_steps=0, step_size=None,
                              adjusted=adjusted, adapt=False,
                              target_accept=target_accept, progress=progress,
                              sampler=sampler)
        return self._flat(result, n, num_samples, more)

    def _flat(self, result: ChainResult, n: int, num_samples: int,
              more: Callable[[torch.Tensor, int], ChainResult]) -> torch.Tensor:
        """``(n, dim)`` draws, draw-major, in the data's units, of chains that run
        ``num_samples`` draws each: ``result`` holds their first segment (in the network's
        units), ``more(last, draws)`` runs the next ``draws`` from the last draws ``last``
        ``(chains, dim)``. Each segment is written into the output and let go; the random
        stream is the one unsegmented chains would draw from (the driver's restart
        recomputes the log density and gradient at ``last``, drawing nothing), so the draws
        are :meth:`sample_chains`'."""
        out: Optional[torch.Tensor] = None
        done, chains, per = 0, result.num_chains, result.samples.shape[1]
        while True:
            rows = self.from_unit(result.flat())
            a = done * chains
            b = min(n, a + rows.shape[0])
            if out is None:
                if b == n:
                    return rows[:n]
                out = rows.new_empty((n, self.dim))
            out[a:b] = rows[:b - a]
            done += result.samples.shape[1]
            if done >= num_samples:
                return out
            last = result.samples[:, -1]
            del rows, result
            result = more(last, min(per, num_samples - done))

    def _initial_points(self, num_chains: int, init: Union[str, torch.Tensor],
                        anneal_steps: int) -> torch.Tensor:
        loc, scale = self.base_loc, self.base_scale
        if isinstance(init, str):
            if init == "base":
                return loc + scale * torch.randn(num_chains, self.dim, **self._factory)
            if init == "anneal" and self.noise_conditional:
                return self.from_unit(self._annealed_start(num_chains, anneal_steps))
            if init == "anneal":
                return anneal(self._f, loc, scale, num_chains,
                              num_steps=positive_int(anneal_steps, "anneal_steps"),
                              resample=True).particles
            raise ValueError(f"Unknown init {init!r}; expected 'anneal', 'base' or a "
                             f"(num_chains, {self.dim}) tensor")
        x0 = as_data(init, dim=self.dim, name="init", **self._factory)
        if x0.shape[0] != num_chains:
            raise ValueError(f"init has {x0.shape[0]} rows, expected one per chain "
                             f"({num_chains})")
        return x0

    @torch.no_grad()
    def _annealed_start(self, num_chains: int, steps_per_level: int) -> torch.Tensor:
        """Annealed Langevin through the noise levels, from sigma_max down to the
        evaluation level sigma_0 (:func:`~pyro_genmodels.models.score_fit.annealed_langevin`,
        the score family's sampler, on this energy's gradient), no final denoising: the
        chains then start where exp f(., sigma_0) has its mass, every mode weighted by the
        large levels' view of it. In the network's units ``(num_chains, D)``."""
        from .score_fit import annealed_langevin

        top = float(self.sigmas[0])
        bottom = min(float(self.eval_level), top)
        levels = geometric_levels(top, bottom, self.num_levels).to(**self._factory)
        return annealed_langevin(self, num_chains, None, sigmas=levels, denoise=False,
                                 steps_per_level=positive_int(steps_per_level,
                                                              "anneal_steps"))

    def log_normalizer(self, *, seed: Optional[int] = None, num_particles: int = 1000,
                       num_steps: Union[int, str] = "auto", loc: Any = None, scale: Any = None,
                       progress: bool = False, max_steps: int = AIS_MAX_STEPS,
                       warn: bool = True) -> AISEstimate:
        r"""Annealed importance sampling (Neal 2001) estimate of
        :math:`\log Z = \log \int \exp f(x)\, dx`, from the Gaussian base
        ``N(loc, diag(scale^2))`` (default: the model's base, i.e. the one given to
        ``from_log_density``, or the one a fit set from the data) through ``num_steps``
        tempered distributions with ``num_particles`` particles.

        ``num_steps="auto"`` (default) chooses the number of temperatures: runs with
        T = 100, 200, 400, ... (independent draws) until two successive estimates agree
        within twice their combined standard error,
        :math:`|\hat\ell_{2T} - \hat\ell_T| \le 2 \sqrt{se_T^2 + se_{2T}^2}`, and
        returns the last. Too few temperatures bias log Z down (the weights degenerate),
        so a run that still moves when T doubles has not converged; if none agrees by
        T = ``max_steps`` (:data:`AIS_MAX_STEPS`) a ``RuntimeWarning`` says so and the last
        run is returned, its ``settled`` False (``warn=False``: no warnings).

        Returns:
            an :class:`~pyro_genmodels.infer.ais.AISEstimate` (an
            :class:`~pyro_genmodels.mc.MCEstimate`) with ``estimate``, ``stderr``,
            ``ess`` and the ``num_steps`` it used.
        """
        loc = self.base_loc if loc is None else self._vector(loc, "loc").to(**self._factory)
        scale = (self.base_scale if scale is None
                 else self._vector(scale, "scale").to(**self._factory))
        if not (scale > 0).all():
            raise ValueError(f"Expected scale > 0 in every coordinate, but got {scale.tolist()}")
        auto = isinstance(num_steps, str)
        if auto and num_steps != "auto":
            raise ValueError(f"Expected num_steps to be a positive integer or 'auto', but got "
                             f"{num_steps!r}")
        steps = AIS_FIRST_STEPS if auto else positive_int(num_steps, "num_steps")
        self.net.eval()

        def run(t: int) -> AISEstimate:
            return anneal(self._f, loc, scale, num_particles, num_steps=t,
                          progress=progress).log_z

        with seeded(seed):
            est = run(steps)
            while auto:
                if steps >= max_steps:
                    est = dataclasses.replace(est, settled=False)
                    if not warn:
                        break
                    warnings.warn(f"AIS log Z did not settle: with {steps // 2} and {steps} "
                                  f"temperatures the estimates still differ by more than "
                                  f"twice their standard error; the returned "
                                  f"{est.estimate:.4g} (stderr {est.stderr:.2g}) is likely "
                                  f"biased down. Pass a base (loc, scale) closer to the "
                                  f"target or more num_particles", RuntimeWarning,
                                  stacklevel=2)
                    break
                steps *= 2
                prev, est = est, run(steps)
                if abs(est.estimate - prev.estimate) <= 2 * math.hypot(est.stderr, prev.stderr):
                    est = dataclasses.replace(est, settled=True)
                    break
        if est.ess < 0.05 * est.num_samples and warn:
            warnings.warn(f"AIS effective sample size {est.ess:.1f} of {est.num_samples} "
                          f"particles: the log Z estimate {est.estimate:.4g} and its stderr "
                          f"are unreliable; use more num_steps / num_particles or a base "
                          f"(loc, scale) closer to the target", RuntimeWarning, stacklevel=2)
        return est


__all__ = ["AIS_FIRST_STEPS", "AIS_MAX_STEPS", "EnergySampling", "HMC_TRAJECTORY_LENGTH",
           "SAMPLERS"]
