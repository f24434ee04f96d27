r"""Energy-based models: an unnormalized density, sampled by MCMC, learned by contrastive
divergence or denoising score matching.

An energy-based model (EBM) is a Gibbs density

.. math::

    p_\phi(x) = \frac{\exp f_\phi(x)}{Z(\phi)}, \qquad
    Z(\phi) = \int \exp f_\phi(x)\, dx,

with :math:`f_\phi = -E_\phi` the *unnormalized log density* (negative energy), here an
MLP with smooth (SiLU) activations by default, or any ``nn.Module`` / callable. Z is
intractable, so

* **sampling** is MCMC on :math:`f`: batched MALA or fixed-length HMC over many chains
  (:mod:`pyro_genmodels.infer.samplers`), or Pyro's NUTS / HMC with a ``potential_fn``
  (:func:`pyro_genmodels.infer.mcmc.pyro_mcmc`), the chains started by an SMC run
  (:mod:`pyro_genmodels.infer.ais`); :meth:`EnergyModel.sample_chains` returns them;
* **log_prob** is :math:`f(x) - \log \hat Z` with :math:`\log \hat Z` from annealed
  importance sampling (an *estimate*; computed once per fit under a fixed seed, cached
  and saved with the fit);
* **learning** (``mle``; ``map`` adds the Gaussian weight prior, MAP = MLE + L2) is
  contrastive divergence with persistent Langevin chains, or denoising score matching,
  in :mod:`pyro_genmodels.models.energy_training` (the math is there).

The Pyro program is real: ``pyro.module("energy", net)``, the factor ``weight_prior``
(``sum log N(w; 0, prior_scale^2)``, masked by ``mle``) and the observed site ``x``, a
``pyro.factor`` of :math:`f_\phi(x_i)` in the plate ``data``. That factor is the
*unnormalized* log-likelihood: the program's log joint omits :math:`-N \log Z(\phi)`,
whose gradient the contrastive engine supplies from the model's own samples.

References:
    Roberts & Tweedie (1996), *Exponential convergence of Langevin distributions*.
    Neal (2001), *Annealed importance sampling*; Neal (2011), *MCMC using Hamiltonian
    dynamics*.
    Song & Kingma (2021), *How to train your energy-based models*, arXiv:2101.03288.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Dict, Optional, Sequence, Union

import pyro
import torch
from torch import nn

from .._rng import seeded
from .._validation import as_data, check_choice, positive_float, positive_int
from ..base import Capabilities, GenerativeModel, gaussian_weight_log_prior, register
from ..fit import Fit, _chunk_rows
from ..infer.objectives import prior_factor
from ..infer.ais import AISEstimate, anneal
from ..infer.mcmc import pyro_mcmc
from ..infer.samplers import ChainResult, check_log_density, hmc, mala
from .energy_training import EnergyEngine

#: samplers accepted by ``sample(..., sampler=...)``
SAMPLERS = ("langevin", "hmc_vectorized", "nuts", "hmc")
ACTIVATIONS = {"silu": nn.SiLU, "softplus": nn.Softplus, "tanh": nn.Tanh, "gelu": nn.GELU,
               "elu": nn.ELU}
#: settings of the AIS run whose log Z a fit's ``log_prob`` subtracts (cached per fit)
LOG_Z_SETTINGS = {"seed": 0, "num_particles": 1000, "num_steps": 200}


def _squeeze(out: torch.Tensor) -> torch.Tensor:
    """A network's ``(B, 1)`` output as ``(B,)``."""
    return out.squeeze(-1) if out.dim() == 2 and out.shape[-1] == 1 else out


class _MLP(nn.Module):
    """``(B, D) -> (B,)``: Linear layers with a smooth activation in between."""

    def __init__(self, dim: int, hidden: Sequence[int], activation: str, spectral_norm: bool):
        super().__init__()
        sizes = [dim, *hidden, 1]
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            lin = nn.Linear(a, b)
            if spectral_norm:
                lin = nn.utils.parametrizations.spectral_norm(lin)
            layers.append(lin)
            if i < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1)


class _Callable(nn.Module):
    """A user's ``log_density`` callable as a module (no parameters)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


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
        return torch.cat([self.model._f(xb) for xb in x.split(_chunk_rows(1))])

    @property
    def log_z(self) -> AISEstimate:
        """The cached AIS estimate of :math:`\\log Z` (computed on first use)."""
        cached = self.info.get("log_z")
        if cached is None:
            est = self.model.log_normalizer(**LOG_Z_SETTINGS)
            cached = {"estimate": est.estimate, "stderr": est.stderr,
                      "num_samples": est.num_samples, "ess": est.ess,
                      "num_steps": est.num_steps, "seed": LOG_Z_SETTINGS["seed"]}
            self.info["log_z"] = cached
        return AISEstimate(float(cached["estimate"]), float(cached["stderr"]),
                              int(cached["num_samples"]), ess=float(cached["ess"]),
                              num_steps=int(cached["num_steps"]))

    def log_normalizer(self, **options: Any) -> AISEstimate:
        """A fresh AIS estimate of :math:`\\log Z` (see :meth:`EnergyModel.log_normalizer`);
        not cached. :attr:`log_z` is the one ``log_prob`` uses."""
        return self.model.log_normalizer(**options)

    @torch.no_grad()
    def log_prob(self, x: Any, *, c: Any = None) -> torch.Tensor:
        """:math:`f(x_i) - \\log \\hat Z` for each row, shape ``(N,)`` (an estimate: the
        standard error of every value is ``log_z.stderr``)."""
        return self.unnormalized_log_prob(x, c=c) - self.log_z.estimate

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
        n = positive_int(n, "n")
        self._as_context(c, n)
        return self.model.sample(n, seed=seed, **options)

    def sample_chains(self, n: int, *, c: Any = None, seed: Optional[int] = None,
                      **options: Any) -> ChainResult:
        """The MCMC chains behind ``sample(n, ...)`` (same options, same draws for the same
        seed): see :meth:`EnergyModel.sample_chains`. :meth:`to_arviz` stays the fit's
        record (optimization trace, data); ``sample_chains(...).to_arviz()`` is the
        chains'."""
        n = positive_int(n, "n")
        self._as_context(c, n)
        return self.model.sample_chains(n, seed=seed, **options)

    def save(self, path) -> None:
        """Save (see :meth:`Fit.save`); the cached :attr:`log_z` is computed first so that
        the loaded fit's ``log_prob`` is identical. A model built with ``from_log_density``
        cannot be saved (``TypeError``); one with a custom ``energy`` module is saved as
        weights and loads with ``load(path, model=...)``."""
        self.model.get_config()  # raises before anything is written
        self.log_z
        super().save(path)


@register
class EnergyModel(GenerativeModel):
    r"""An energy-based model :math:`p_\phi(x) = \exp f_\phi(x) / Z(\phi)`.

    Args:
        dim: D, the number of columns of the data.
        energy: an ``nn.Module`` mapping ``(B, D)`` to ``(B,)`` (or ``(B, 1)``): the
            unnormalized log density :math:`f_\phi = -E_\phi`. ``None`` builds an MLP.
            :meth:`Fit.save` stores a custom module's weights, not its code (code is not
            data): load it with ``pgm.load(path, model=...)``, a model built the same way.
        hidden: hidden layer sizes of the default MLP.
        activation: its activation, smooth so that Langevin gradients are
            (``"silu"``, ``"softplus"``, ``"tanh"``, ``"gelu"``, ``"elu"``).
        spectral_norm: spectral normalization of every linear layer (a Lipschitz bound
            that stabilizes contrastive training).
        prior_scale: sd of the Gaussian prior on every weight (``map``).
        standardize: feed :math:`u = (x - \bar x) / s_x` (training-data moments, stored
            as buffers) to the network; default True for the MLP, False for a custom
            module.
        envelope: :math:`\tau`; the model's log density is
            :math:`f(x) = \text{net}(u) - |u|^2 / (2\tau^2)`. An MLP with SiLU grows at most
            linearly, so this weak Gaussian envelope makes :math:`Z` finite for every
            weight value (an untrained network may otherwise increase without bound,
            and then neither MCMC nor AIS means anything). Default 3 for the MLP
            (standardized units), 0 (off) for a custom module.
        loc, scale: the Gaussian base ``N(loc, diag(scale^2))`` that initializes MCMC
            chains and AIS; a fit replaces them by the data mean and twice the data sd.
            Defaults 0 and 1.

    Sample sites: factor ``weight_prior`` (masked by ``mle``) and the observed factor
    ``x`` (unnormalized, :math:`f_\phi(x_i)`) in the plate ``data``.

    Example:
        >>> import torch, pyro_genmodels as pgm
        >>> from pyro_genmodels.models.energy import EnergyModel
        >>> model = EnergyModel.from_log_density(lambda x: -0.5 * x.pow(2).sum(-1), 2)
        >>> model.sample(100, seed=0, warmup_steps=100).shape
        torch.Size([100, 2])
        >>> x = pgm.datasets.toy("banana").sample((256,))
        >>> fit = EnergyModel(2, hidden=(16, 16)).fit(x, method="mle", num_steps=10,
        ...                                           seed=0, progress=False)
        >>> fit.log_prob(x).shape, fit.sample(5, seed=0, warmup_steps=20).shape
        (torch.Size([256]), torch.Size([5, 2]))
    """

    registry_name = "energy"
    capabilities = Capabilities(log_prob="unnormalized", sampling="mcmc",
                                methods=("mle", "map"))
    global_sites = ()
    fit_class = EnergyFit
    #: contrastive divergence / score matching (:mod:`.energy_training`)
    engines = {m: EnergyEngine(m) for m in ("mle", "map")}

    def __init__(self, dim: int, *, energy: Optional[nn.Module] = None,
                 hidden: Sequence[int] = (128, 128), activation: str = "silu",
                 spectral_norm: bool = False, prior_scale: float = 1.0,
                 standardize: Optional[bool] = None, envelope: Optional[float] = None,
                 loc: Any = None, scale: Any = None):
        super().__init__(dim)
        check_choice(activation, sorted(ACTIVATIONS), "activation")
        self.hidden = tuple(positive_int(h, "hidden[i]") for h in hidden)
        self.activation = activation
        self.spectral_norm = bool(spectral_norm)
        self.prior_scale = positive_float(prior_scale, "prior_scale")
        self.custom = energy is not None
        if energy is None:
            if not self.hidden:
                raise ValueError("Expected at least one hidden layer, but got hidden=()")
            self.net = _MLP(self.dim, self.hidden, activation, self.spectral_norm)
        elif isinstance(energy, nn.Module):
            self.net = energy
        else:
            raise TypeError(f"Expected energy to be a torch.nn.Module (or None for the default "
                            f"MLP), but got {type(energy).__name__}; wrap a plain function "
                            f"with EnergyModel.from_log_density")
        self.net.eval()
        self.standardize = (not self.custom) if standardize is None else bool(standardize)
        if envelope is None:
            envelope = 0.0 if self.custom else 3.0
        envelope = float(envelope)
        if not (envelope >= 0 and math.isfinite(envelope)):
            raise ValueError(f"Expected envelope >= 0 (0: off), but got {envelope!r}")
        self.envelope = envelope
        self.register_buffer("shift", torch.zeros(self.dim))
        self.register_buffer("x_scale", torch.ones(self.dim))
        loc = torch.zeros(self.dim) if loc is None else self._vector(loc, "loc")
        scale = torch.ones(self.dim) if scale is None else self._vector(scale, "scale")
        if not (scale > 0).all():
            raise ValueError(f"Expected scale > 0 in every coordinate, but got {scale.tolist()}")
        self.register_buffer("base_loc", loc)
        self.register_buffer("base_scale", scale)
        #: wraps a fixed callable (from_log_density): nothing to fit or save
        self._wrapped = False

    def _vector(self, v: Any, name: str) -> torch.Tensor:
        t = torch.as_tensor(v, dtype=torch.get_default_dtype()).detach().clone()
        if t.dim() == 0:
            t = t.expand(self.dim).clone()
        if t.shape != (self.dim,) or not torch.isfinite(t).all():
            raise ValueError(f"Expected {name} to be a finite scalar or a vector of shape "
                             f"({self.dim},), but got {v!r}")
        return t

    @classmethod
    def from_log_density(cls, log_density: Callable[[torch.Tensor], torch.Tensor], dim: int,
                         *, loc: Any = None, scale: Any = None) -> "EnergyModel":
        r"""Wrap a differentiable ``log_density(x) -> (B,)`` (x: ``(B, dim)``), known up to
        an additive constant, for :meth:`sample`, :meth:`sample_chains` and
        :meth:`log_normalizer`. ``loc``, ``scale``: the Gaussian base that initializes the
        chains and AIS (default N(0, I); it should cover the target's mass). It has no
        parameters to fit and cannot be saved (a Python callable is code).

        Example:
            >>> import math
            >>> from pyro_genmodels.models.energy import EnergyModel
            >>> m = EnergyModel.from_log_density(lambda x: -0.5 * x.pow(2).sum(-1), 2,
            ...                                  scale=2.0)
            >>> z = m.log_normalizer(seed=0, num_particles=500)
            >>> abs(z.estimate - math.log(2 * math.pi)) < 4 * z.stderr + 0.02
            True
        """
        if not callable(log_density):
            raise TypeError(f"Expected log_density to be callable, but got "
                            f"{type(log_density).__name__}")
        model = cls(dim, energy=_Callable(log_density), standardize=False, loc=loc,
                    scale=scale)
        model._wrapped = True
        return model

    @property
    def prior_sites(self):
        return ("weight_prior",)

    # ------------------------------------------------------------------ the density
    def _f(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) without validation (the samplers' hot path): ``(B, D) -> (B,)``."""
        u = self.to_unit(x)
        if self._wrapped:
            return self.net(u)
        return self._f_of_u(u)

    def _f_of_u(self, u: torch.Tensor) -> torch.Tensor:
        """f as a function of the network's input ``u`` (standardized x when the model
        standardizes), the envelope included: ``(B, D) -> (B,)``."""
        out = _squeeze(self.net(u))
        if self.envelope > 0:
            out = out - u.pow(2).sum(-1) / (2 * self.envelope**2)
        return out

    def unnormalized_log_prob(self, x: Any) -> torch.Tensor:
        r""":math:`f_\phi(x_i)`, shape ``(N,)`` (differentiable)."""
        x = as_data(x, dim=self.dim, name="x", **self._factory)
        return self._f(x)

    def weight_log_prior(self) -> torch.Tensor:
        """``sum_w log N(w; 0, prior_scale^2)`` over every weight of the network."""
        weights = list(self.net.parameters())
        if not weights:
            return torch.zeros((), **self._factory)
        return gaussian_weight_log_prior(weights, self.prior_scale)

    def model(self, x: Optional[torch.Tensor] = None, *, c: Optional[torch.Tensor] = None,
              num_data: Optional[int] = None,
              subsample_size: Optional[int] = None,
              subsample: Optional[torch.Tensor] = None) -> torch.Tensor:
        pyro.module("energy", self.net)
        prior_factor("weight_prior", self.weight_log_prior)
        if x is None:  # prior predictive: MCMC draws from p_phi
            draws = self.sample_given({}, num_data or 1)
            with pyro.plate("data", draws.shape[0]):
                return pyro.sample("x", pyro.distributions.Delta(draws, event_dim=1))
        with pyro.plate("data", num_data or x.shape[0], subsample_size=subsample_size,
                        subsample=subsample) as idx:
            obs = x.index_select(0, idx) if idx.shape[0] != x.shape[0] else x
            # unnormalized: the log joint omits -N log Z(phi)
            pyro.factor("x", self._f(obs))
            return obs

    # ------------------------------------------------------------------ engine hooks
    def init_values(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {}

    def log_prob_given(self, params: Dict[str, torch.Tensor], x: torch.Tensor,
                       c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The *unnormalized* :math:`f(x)` (a fit's ``log_prob`` subtracts log Z)."""
        return self._f(x)

    def sample_given(self, params: Dict[str, torch.Tensor], n: int,
                     c: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self._run(n, sampler="langevin").flat(n)

    def check_data_for(self, method: str, x: torch.Tensor) -> None:
        if self._wrapped:
            raise ValueError("This EnergyModel wraps a fixed log_density (from_log_density): "
                             "it has no parameters to fit; use sample() / log_normalizer()")

    def num_params(self) -> int:
        return sum(p.numel() for p in self.net.parameters() if p.requires_grad)

    def get_config(self) -> Dict[str, Any]:
        if self._wrapped:
            raise TypeError("An EnergyModel built with from_log_density wraps a Python "
                            "callable, which cannot be saved (only data is saved, never code)")
        config = {"dim": self.dim, "hidden": list(self.hidden),
                  "activation": self.activation, "spectral_norm": self.spectral_norm,
                  "prior_scale": self.prior_scale, "standardize": self.standardize,
                  "envelope": self.envelope}
        if self.custom:  # the module itself: Fit.save stores its weights, not its code
            config["energy"] = self.net
        return config

    def extra_repr(self) -> str:
        if self._wrapped:
            return f"dim={self.dim}, log_density={getattr(self.net.fn, '__name__', '?')}"
        if self.custom:
            return f"dim={self.dim}, energy={type(self.net).__name__}"
        return super().extra_repr()

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, *, return_inference_data: bool = False, **options: Any):
        r"""``n`` MCMC draws from :math:`p(x) \propto \exp f(x)`, shape ``(n, dim)``, taken
        draw-major over the chains (draw 0 of every chain, then draw 1, ...):
        ``sample_chains(n, **options).flat(n)``. Options (``sampler``, ``num_chains``,
        ``warmup_steps``, ``seed``, ...) as in :meth:`sample_chains`.
        ``return_inference_data=True`` returns ``sample_chains(n, **options).to_arviz()``
        (``arviz.InferenceData``, all chains and draws, with ``sample_stats``) instead.
        """
        run = self.sample_chains(n, **options)
        return run.to_arviz() if return_inference_data else run.flat(n)

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
            sampler: ``"langevin"`` (default; MALA, batched over chains;
                ``adjusted=False`` for ULA), ``"hmc_vectorized"`` (fixed-length HMC,
                batched), ``"nuts"`` or ``"hmc"`` (``pyro.infer.MCMC`` with ``NUTS`` /
                ``HMC`` on the potential ``-f``, one chain after another, Pyro's
                step-size and mass-matrix adaptation). ``"hmc"`` is always Pyro's; the
                batched one is only ever ``"hmc_vectorized"``.
            num_chains: default ``min(n, 1000)`` for the batched samplers, ``min(n, 2)``
                for Pyro's.
            warmup_steps: discarded transitions per chain (step sizes adapt); default 500
                (batched) or 300 (Pyro).
            init: ``"anneal"`` (default: an SMC run from the Gaussian base, so chains
                start in every mode in proportion to its mass), ``"base"`` (draws from
                the base), or a ``(num_chains, dim)`` tensor.
            step_size: initial (or, for ULA, fixed) step size of the batched samplers.
            adjusted: Metropolis correction of ``"langevin"`` (default True).
            num_leapfrog: leapfrog steps per ``"hmc_vectorized"`` transition (10).
            target_accept: adaptation target (0.574 MALA, 0.8 HMC/NUTS).
            anneal_steps: temperatures of the ``init="anneal"`` SMC run (100).
            progress: a progress bar.
            **kernel_options: to Pyro's kernel (``max_tree_depth``,
                ``trajectory_length``, ``full_mass``).
        """
        n = positive_int(n, "n")
        with seeded(seed):
            return self._run(n, **options)

    def _run(self, n: int, *, sampler: str = "langevin", num_chains: Optional[int] = None,
             warmup_steps: Optional[int] = None, init: Union[str, torch.Tensor] = "anneal",
             step_size: Optional[float] = None, adjusted: bool = True, num_leapfrog: int = 10,
             target_accept: Optional[float] = None, anneal_steps: int = 100,
             progress: bool = False, **kernel_options: Any) -> ChainResult:
        check_choice(sampler, SAMPLERS, "sampler")
        batched = sampler in ("langevin", "hmc_vectorized")
        if kernel_options and batched:
            raise ValueError(f"Unknown option(s) {sorted(kernel_options)} for sampler "
                             f"{sampler!r}")
        if num_chains is None:
            num_chains = min(n, 1000 if batched else 2)
        num_chains = positive_int(num_chains, "num_chains")
        if warmup_steps is None:
            warmup_steps = 500 if batched else 300
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"Expected warmup_steps to be a non-negative integer, but got "
                             f"{warmup_steps!r}")
        if target_accept is None:
            target_accept = 0.574 if sampler == "langevin" else 0.8
        num_samples = -(-n // num_chains)
        self.net.eval()
        x0 = self._initial_points(num_chains, init, anneal_steps)
        check_log_density(self._f, x0)
        if sampler == "langevin":
            return mala(self._f, x0, num_samples=num_samples, warmup_steps=warmup_steps,
                        step_size=step_size, adjusted=adjusted,
                        target_accept=target_accept, progress=progress)
        if sampler == "hmc_vectorized":
            return hmc(self._f, x0, num_samples=num_samples, warmup_steps=warmup_steps,
                       step_size=step_size, num_leapfrog=num_leapfrog,
                       target_accept=target_accept, progress=progress)
        return pyro_mcmc(self._f, x0, kernel=sampler, num_samples=num_samples,
                         warmup_steps=warmup_steps, target_accept=target_accept,
                         progress=progress, **kernel_options)

    def _initial_points(self, num_chains: int, init, anneal_steps: int) -> torch.Tensor:
        loc, scale = self.base_loc, self.base_scale
        if isinstance(init, str):
            if init == "base":
                return loc + scale * torch.randn(num_chains, self.dim, **self._factory)
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

    def log_normalizer(self, *, seed: Optional[int] = None, num_particles: int = 1000,
                       num_steps: int = 200, loc: Any = None, scale: Any = None,
                       progress: bool = False) -> AISEstimate:
        r"""Annealed importance sampling (Neal 2001) estimate of
        :math:`\log Z = \log \int \exp f(x)\, dx`, from the Gaussian base
        ``N(loc, diag(scale^2))`` (default: the model's base, i.e. the one given to
        ``from_log_density``, or the one a fit set from the data) through ``num_steps``
        tempered distributions with ``num_particles`` particles.

        Returns:
            an :class:`~pyro_genmodels.infer.ais.AISEstimate` (an
            :class:`~pyro_genmodels.mc.MCEstimate`) with ``estimate``, ``stderr``,
            ``ess``.
        """
        loc = self.base_loc if loc is None else self._vector(loc, "loc").to(**self._factory)
        scale = (self.base_scale if scale is None
                 else self._vector(scale, "scale").to(**self._factory))
        if not (scale > 0).all():
            raise ValueError(f"Expected scale > 0 in every coordinate, but got {scale.tolist()}")
        self.net.eval()
        with seeded(seed):
            est = anneal(self._f, loc, scale, num_particles, num_steps=num_steps,
                         progress=progress).log_z
        if est.ess < 0.05 * est.num_samples:
            warnings.warn(f"AIS effective sample size {est.ess:.1f} of {est.num_samples} "
                          f"particles: the log Z estimate {est.estimate:.4g} and its stderr "
                          f"are unreliable; use more num_steps / num_particles or a base "
                          f"(loc, scale) closer to the target", RuntimeWarning, stacklevel=2)
        return est

