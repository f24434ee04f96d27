r"""Energy-based models: an unnormalized density, sampled by MCMC, learned by contrastive
divergence or denoising score matching.

An energy-based model (EBM) is a Gibbs density

.. math::

    p_\phi(x) = \frac{\exp f_\phi(x)}{Z(\phi)}, \qquad
    Z(\phi) = \int \exp f_\phi(x)\, dx,

with :math:`f_\phi = -E_\phi` the *unnormalized log density* (negative energy), here an
MLP with smooth (SiLU) activations by default, or any ``nn.Module`` / callable. Z is
intractable, so

* **sampling** is MCMC on :math:`f` (:mod:`pyro_genmodels.infer.langevin`): batched MALA
  or fixed-length HMC over many chains, or Pyro's NUTS / HMC with a ``potential_fn``;
* **log_prob** is :math:`f(x) - \log \hat Z` with :math:`\log \hat Z` from annealed
  importance sampling (an *estimate*; computed once per fit under a fixed seed, cached
  and saved with the fit);
* **learning** (``mle``) follows the log-likelihood gradient

  .. math::

      \nabla_\phi \frac1N \sum_i \log p_\phi(x_i)
        = \frac1N \sum_i \nabla_\phi f_\phi(x_i) - \mathbb E_{p_\phi}[\nabla_\phi f_\phi(X)],

  (from :math:`\nabla_\phi \log Z = \mathbb E_{p_\phi}[\nabla_\phi f_\phi]`), the model
  expectation estimated by persistent Langevin chains kept in a replay buffer
  (contrastive divergence, Hinton 2002; persistent CD, Tieleman 2008; buffer with a
  reinitialization fraction and an energy-magnitude penalty, Du & Mordatch 2019).
  ``map`` adds the Gaussian weight prior (MAP = MLE + L2). ``objective="score_matching"``
  trains by denoising score matching instead (Vincent 2011), which needs no sampling.

The Pyro program is real: ``pyro.module("energy", net)``, the factor ``weight_prior``
(``sum log N(w; 0, prior_scale^2)``, masked by ``mle``) and the observed site ``x``, a
``pyro.factor`` of :math:`f_\phi(x_i)` in the plate ``data``. That factor is the
*unnormalized* log-likelihood: the program's log joint omits :math:`-N \log Z(\phi)`,
whose gradient the contrastive engine supplies from the model's own samples.

References:
    Hinton (2002), *Training products of experts by minimizing contrastive divergence*.
    Tieleman (2008), *Training restricted Boltzmann machines using approximations to the
    likelihood gradient*, ICML.
    Du & Mordatch (2019), *Implicit generation and modeling with energy-based models*.
    Roberts & Tweedie (1996), *Exponential convergence of Langevin distributions*.
    Neal (2001), *Annealed importance sampling*; Neal (2011), *MCMC using Hamiltonian
    dynamics*.
    Vincent (2011), *A connection between score matching and denoising autoencoders*.
    Song & Kingma (2021), *How to train your energy-based models*, arXiv:2101.03288.
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import Any, Callable, Dict, Optional, Sequence, Union

import pyro
import torch
from pyro import poutine
from torch import nn
from tqdm.auto import tqdm

from .._rng import seeded
from .._validation import as_data, check_choice, positive_float, positive_int
from ..base import (Capabilities, FitError, Fit, GenerativeModel, _chunk_rows,
                    gaussian_weight_log_prior, make_fit, register)
from ..infer import langevin as lv
from ..infer.point import FlatPriors
from ..infer.svi import NonFiniteLossError, _total_norm, make_optimizer, validate_optim_options

#: samplers accepted by ``sample(..., sampler=...)``
SAMPLERS = ("langevin", "hmc_vectorized", "nuts", "hmc")
ACTIVATIONS = {"silu": nn.SiLU, "softplus": nn.Softplus, "tanh": nn.Tanh, "gelu": nn.GELU,
               "elu": nn.ELU}
OBJECTIVES = ("contrastive", "score_matching")
#: settings of the AIS run whose log Z a fit's ``log_prob`` subtracts (cached per fit)
LOG_Z_SETTINGS = {"seed": 0, "num_particles": 1000, "num_steps": 200}


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
    def log_z(self) -> lv.AISEstimate:
        """The cached AIS estimate of :math:`\\log Z` (computed on first use)."""
        cached = self.info.get("log_z")
        if cached is None:
            est = self.model.log_normalizer(**LOG_Z_SETTINGS)
            cached = {"estimate": est.estimate, "stderr": est.stderr,
                      "num_samples": est.num_samples, "ess": est.ess,
                      "num_steps": est.num_steps, "seed": LOG_Z_SETTINGS["seed"]}
            self.info["log_z"] = cached
        return lv.AISEstimate(float(cached["estimate"]), float(cached["stderr"]),
                              int(cached["num_samples"]), ess=float(cached["ess"]),
                              num_steps=int(cached["num_steps"]))

    def log_normalizer(self, **options: Any) -> lv.AISEstimate:
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

    def to_arviz(self, *, samples: bool = False, **kwargs):
        """``samples=False``: the fit's InferenceData (optimization trace, data).
        ``samples=True``: the chains of the last :meth:`sample` call (posterior ``x``
        with chain/draw dims, sample_stats with ``diverging``)."""
        if samples:
            return self.model.to_arviz()
        return super().to_arviz(**kwargs)

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
        self.__dict__["_wrapped"] = False
        self.__dict__["_last_run"] = None

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
        an additive constant, for :meth:`sample`, :meth:`log_normalizer` and
        :meth:`to_arviz`. ``loc``, ``scale``: the Gaussian base that initializes the
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
        model.__dict__["_wrapped"] = True
        return model

    @property
    def prior_sites(self):
        return ("weight_prior",)

    # ------------------------------------------------------------------ the density
    def _f(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) without validation (the samplers' hot path): ``(B, D) -> (B,)``."""
        u = (x - self.shift) / self.x_scale if self.standardize else x
        out = self.net(u)
        if self._wrapped:
            return out
        out = _squeeze(out)
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
              subsample_size: Optional[int] = None) -> torch.Tensor:
        pyro.module("energy", self.net)
        pyro.factor("weight_prior", self.weight_log_prior())
        if x is None:  # prior predictive: MCMC draws from p_phi
            draws = self.sample_given({}, num_data or 1)
            with pyro.plate("data", draws.shape[0]):
                return pyro.sample("x", pyro.distributions.Delta(draws, event_dim=1))
        with pyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
            obs = x.index_select(0, idx) if subsample_size is not None else x
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
        return self._sample(n, sampler="langevin")

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
    def sample(self, n: int, *, sampler: str = "langevin", num_chains: Optional[int] = None,
               warmup_steps: Optional[int] = None, seed: Optional[int] = None,
               init: Union[str, torch.Tensor] = "anneal", step_size: Optional[float] = None,
               adjusted: bool = True, num_leapfrog: int = 10,
               target_accept: Optional[float] = None, anneal_steps: int = 100,
               progress: bool = False, return_inference_data: bool = False,
               **kernel_options: Any):
        r"""``n`` MCMC draws from :math:`p(x) \propto \exp f(x)`, shape ``(n, dim)``.

        Args:
            n: number of draws returned (taken draw-major over the chains: draw 0 of
                every chain, then draw 1, ...; each chain runs ``ceil(n / num_chains)``
                post-warmup transitions).
            sampler: ``"langevin"`` (MALA, batched over chains; ``adjusted=False`` for
                ULA), ``"hmc_vectorized"`` (fixed-length HMC, batched), ``"nuts"`` or
                ``"hmc"`` (``pyro.infer.MCMC`` with ``NUTS`` / ``HMC`` on the potential
                ``-f``, one chain after another, Pyro's step-size and mass-matrix
                adaptation). ``"hmc"`` is always Pyro's; the batched one is only ever
                ``"hmc_vectorized"``.
            num_chains: default ``min(n, 1000)`` for the batched samplers, ``min(n, 2)``
                for Pyro's.
            warmup_steps: discarded transitions per chain (step sizes adapt); default 500
                (batched) or 300 (Pyro).
            seed: makes the draws reproducible; the caller's RNG is untouched.
            init: ``"anneal"`` (default: an SMC run from the Gaussian base, so chains
                start in every mode in proportion to its mass), ``"base"`` (draws from
                the base), or a ``(num_chains, dim)`` tensor.
            step_size: initial (or, for ULA, fixed) step size of the batched samplers.
            adjusted: Metropolis correction of ``"langevin"``.
            num_leapfrog: leapfrog steps per ``"hmc_vectorized"`` transition.
            target_accept: adaptation target (0.574 MALA, 0.8 HMC/NUTS).
            anneal_steps: temperatures of the ``init="anneal"`` SMC run.
            return_inference_data: return ``arviz.InferenceData`` (all chains and draws,
                with ``sample_stats``) instead of the ``(n, dim)`` tensor.
            **kernel_options: to Pyro's kernel (``max_tree_depth``,
                ``trajectory_length``, ``full_mass``).

        The run is kept: :meth:`to_arviz` gives its InferenceData (R-hat, ESS,
        divergences).
        """
        n = positive_int(n, "n")
        with seeded(seed):
            run = self._run(n, sampler=sampler, num_chains=num_chains,
                            warmup_steps=warmup_steps, init=init, step_size=step_size,
                            adjusted=adjusted, num_leapfrog=num_leapfrog,
                            target_accept=target_accept, anneal_steps=anneal_steps,
                            progress=progress, **kernel_options)
        self.__dict__["_last_run"] = run
        if return_inference_data:
            return run.to_arviz()
        return run.flat(n)

    def _sample(self, n: int, **options: Any) -> torch.Tensor:
        return self._run(n, **options).flat(n)

    def _run(self, n: int, *, sampler: str = "langevin", num_chains: Optional[int] = None,
             warmup_steps: Optional[int] = None, init: Union[str, torch.Tensor] = "anneal",
             step_size: Optional[float] = None, adjusted: bool = True, num_leapfrog: int = 10,
             target_accept: Optional[float] = None, anneal_steps: int = 100,
             progress: bool = False, **kernel_options: Any) -> lv.ChainResult:
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
        lv.check_log_density(self._f, x0)
        if sampler == "langevin":
            return lv.mala(self._f, x0, num_samples=num_samples, warmup_steps=warmup_steps,
                           step_size=step_size, adjusted=adjusted,
                           target_accept=target_accept, progress=progress)
        if sampler == "hmc_vectorized":
            return lv.hmc(self._f, x0, num_samples=num_samples, warmup_steps=warmup_steps,
                          step_size=step_size, num_leapfrog=num_leapfrog,
                          target_accept=target_accept, progress=progress)
        return lv.pyro_mcmc(self._f, x0, kernel=sampler, num_samples=num_samples,
                            warmup_steps=warmup_steps, target_accept=target_accept,
                            progress=progress, **kernel_options)

    def _initial_points(self, num_chains: int, init, anneal_steps: int) -> torch.Tensor:
        loc, scale = self.base_loc, self.base_scale
        if isinstance(init, str):
            if init == "base":
                return loc + scale * torch.randn(num_chains, self.dim, **self._factory)
            if init == "anneal":
                return lv.anneal(self._f, loc, scale, num_chains,
                                 num_steps=positive_int(anneal_steps, "anneal_steps"),
                                 resample=True).particles
            raise ValueError(f"Unknown init {init!r}; expected 'anneal', 'base' or a "
                             f"(num_chains, {self.dim}) tensor")
        x0 = as_data(init, dim=self.dim, name="init", **self._factory)
        if x0.shape[0] != num_chains:
            raise ValueError(f"init has {x0.shape[0]} rows, expected one per chain "
                             f"({num_chains})")
        return x0

    def to_arviz(self):
        """The InferenceData of the last :meth:`sample` call: posterior ``x`` with dims
        ``(chain, draw, x_dim_0)`` and ``sample_stats`` (``diverging``,
        ``acceptance_rate``, ``step_size``, ``lp``)."""
        run = self.__dict__.get("_last_run")
        if run is None:
            raise ValueError("No sampling run yet: call sample(...) first")
        return run.to_arviz()

    def log_normalizer(self, *, seed: Optional[int] = None, num_particles: int = 1000,
                       num_steps: int = 200, loc: Any = None, scale: Any = None,
                       progress: bool = False) -> lv.AISEstimate:
        r"""Annealed importance sampling (Neal 2001) estimate of
        :math:`\log Z = \log \int \exp f(x)\, dx`, from the Gaussian base
        ``N(loc, diag(scale^2))`` (default: the model's base, i.e. the one given to
        ``from_log_density``, or the one a fit set from the data) through ``num_steps``
        tempered distributions with ``num_particles`` particles.

        Returns:
            an :class:`~pyro_genmodels.infer.langevin.AISEstimate` (an
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
            est = lv.anneal(self._f, loc, scale, num_particles, num_steps=num_steps,
                            progress=progress).log_z
        if est.ess < 0.05 * est.num_samples:
            warnings.warn(f"AIS effective sample size {est.ess:.1f} of {est.num_samples} "
                          f"particles: the log Z estimate {est.estimate:.4g} and its stderr "
                          f"are unreliable; use more num_steps / num_particles or a base "
                          f"(loc, scale) closer to the target", RuntimeWarning, stacklevel=2)
        return est


# ---------------------------------------------------------------------- the engines
def _validate(model: EnergyModel, x: torch.Tensor, *, num_steps=1, lr=1.0, lr_decay=1.0,
              batch_size=None, optimizer="adam", callback=None, objective="contrastive",
              buffer_size=1, reinit_fraction=0.05, mcmc_steps=1, mcmc_step_size=1.0,
              energy_reg=0.0, grad_clip=None, noise_scale=1.0) -> None:
    validate_optim_options(num_steps=num_steps, lr=lr, lr_decay=lr_decay,
                           batch_size=batch_size, optimizer=optimizer, callback=callback)
    check_choice(objective, OBJECTIVES, "objective")
    positive_int(buffer_size, "buffer_size")
    positive_int(mcmc_steps, "mcmc_steps")
    positive_float(mcmc_step_size, "mcmc_step_size")
    positive_float(noise_scale, "noise_scale")
    f = float(reinit_fraction)
    if not 0 <= f <= 1:
        raise ValueError(f"Expected 0 <= reinit_fraction <= 1, but got {reinit_fraction!r}")
    if not (float(energy_reg) >= 0 and math.isfinite(float(energy_reg))):
        raise ValueError(f"Expected energy_reg >= 0, but got {energy_reg!r}")
    if grad_clip is not None:
        positive_float(grad_clip, "grad_clip")


def _langevin_buffer(model: EnergyModel, u: torch.Tensor, steps: int,
                     eps: float) -> torch.Tensor:
    """``steps`` unadjusted Langevin steps on the network's own (standardized) input
    ``u``: ``u <- u + eps^2/2 grad f + eps z``; a row that turns non-finite restarts from
    N(0, I)."""
    def fn(v):  # f as a function of the network's input u (the envelope included)
        out = _squeeze(model.net(v))
        if model.envelope > 0:
            out = out - v.pow(2).sum(-1) / (2 * model.envelope**2)
        return out

    for _ in range(steps):
        _, g = lv.value_and_grad(fn, u)
        u = u + 0.5 * eps**2 * g + eps * torch.randn_like(u)
        bad = ~torch.isfinite(u).all(-1)
        if bad.any():
            u = torch.where(bad[:, None], torch.randn_like(u), u)
    return u


def _squeeze(out: torch.Tensor) -> torch.Tensor:
    return out.squeeze(-1) if out.dim() == 2 and out.shape[-1] == 1 else out


def _fit_energy(model: EnergyModel, x: torch.Tensor, *, method: str, progress: bool,
                num_steps: int, lr: float, lr_decay: float, batch_size: Optional[int],
                optimizer: Any, callback: Optional[Callable], objective: str,
                buffer_size: int, reinit_fraction: float, mcmc_steps: int,
                mcmc_step_size: float, energy_reg: float, grad_clip: Optional[float],
                noise_scale: float) -> Dict[str, Any]:
    N, D = x.shape
    with torch.no_grad():
        mean = x.mean(0)
        sd = x.std(0) if N > 1 else torch.ones_like(mean)
        sd = torch.where(torch.isfinite(sd) & (sd > 1e-8), sd, torch.ones_like(sd))
        if model.standardize:
            model.shift.copy_(mean)
            model.x_scale.copy_(sd)
        model.base_loc.copy_(mean)
        model.base_scale.copy_(2 * sd)
    model.__dict__["_last_run"] = None
    pyro.module("energy", model.net)  # in the fit's scoped param store (a PyroOptim needs it)
    params = [p for p in model.net.parameters() if p.requires_grad]
    optim = make_optimizer(optimizer, lr=lr, lr_decay=lr_decay, num_steps=num_steps)
    program = FlatPriors(model.prior_sites)(model.model) if method == "mle" else model.model
    B = N if batch_size is None else min(batch_size, N)
    subsample = None if B >= N else B
    # the replay buffer lives in the network's input space (standardized when it is)
    scale_u = model.x_scale if model.standardize else torch.ones_like(mean)
    shift_u = model.shift if model.standardize else torch.zeros_like(mean)
    buffer = None
    if objective == "contrastive":
        buffer = ((model.base_loc - shift_u) / scale_u
                  + torch.randn(buffer_size, D, dtype=x.dtype, device=x.device))
    sigma = noise_scale * scale_u  # DSM noise, per coordinate
    losses = []
    interrupted = False
    error = None
    bar = tqdm(total=num_steps, desc=f"energy {method}", disable=not progress,
               file=sys.stderr, dynamic_ncols=True, leave=False)
    try:
        with pyro.validation_enabled(False):
            for step in range(num_steps):
                if objective == "contrastive":
                    j = torch.randint(buffer_size, (B,), device=x.device)
                    u = buffer[j]
                    fresh = torch.rand(B, device=x.device) < reinit_fraction
                    u = torch.where(fresh[:, None], torch.randn_like(u), u)
                    model.net.eval()
                    u = _langevin_buffer(model, u, mcmc_steps, mcmc_step_size)
                    buffer[j] = u
                    x_neg = shift_u + scale_u * u
                    model.net.train()
                    tr = poutine.trace(program).get_trace(x, subsample_size=subsample)
                    f_pos = tr.nodes["x"]["fn"].log_factor
                    f_neg = model._f(x_neg)
                    # -(1/N) [sum_i f(x_i) + log prior - N E_model f]: the CD surrogate
                    loss = -(tr.log_prob_sum() - N * f_neg.mean()) / N
                    if energy_reg > 0:
                        loss = loss + energy_reg * (f_pos.pow(2).mean() + f_neg.pow(2).mean())
                else:
                    model.net.train()
                    idx = torch.randperm(N, device=x.device)[:B] if subsample else None
                    xb = x if idx is None else x[idx]
                    noise = sigma * torch.randn_like(xb)
                    xt = (xb + noise).requires_grad_(True)
                    (score,) = torch.autograd.grad(model._f(xt).sum(), xt, create_graph=True)
                    # (1/2) E || sigma * (score + noise / sigma^2) ||^2  (Vincent 2011)
                    loss = 0.5 * (sigma * score + noise / sigma).pow(2).sum(-1).mean()
                    if method == "map":
                        loss = loss - model.weight_log_prior() / N
                value = float(loss.detach())
                if not math.isfinite(value):
                    error = NonFiniteLossError(step, value, "loss")
                    break
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
                if not torch.isfinite(_total_norm(grads)):
                    error = NonFiniteLossError(step, value, "gradient")
                    break
                for p, g in zip(params, grads):
                    p.grad = g
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, grad_clip)
                optim(params)
                for p in params:
                    p.grad = None
                if isinstance(optim, pyro.optim.PyroLRScheduler):
                    optim.step()
                losses.append(value)
                bar.update()
                if step % 25 == 0:
                    bar.set_postfix(loss=f"{value:.4g}", refresh=False)
                if callback is not None and callback(step, value) is True:
                    break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        model.net.eval()
    info = {"objective": objective}
    if buffer is not None:
        info["buffer_size"] = buffer_size
    out = {"point": {}, "losses": losses, "interrupted": interrupted, "info": info}
    if error is not None:
        partial = make_fit(model, method, data=x, **out)
        raise FitError(str(error), fit=partial, step=error.step) from error
    return out


def fit_energy_mle(model, x, *, c=None, num_steps=2000, lr=3e-3, lr_decay=0.1,
                   batch_size=256, optimizer="adam", callback=None, objective="contrastive",
                   buffer_size=10000, reinit_fraction=0.05, mcmc_steps=20,
                   mcmc_step_size=0.05, energy_reg=0.01, grad_clip=None, noise_scale=0.1,
                   progress=True):
    r"""Maximum likelihood for an :class:`EnergyModel` (the family's ``mle`` engine).

    ``objective="contrastive"`` (default): each step the loss is the CD surrogate

    .. math::

        L = -\frac1N\Big[\sum_{i \in \text{batch}} \tfrac{N}{B} f(x_i)\Big]
            + \mathbb{\hat E}_{\text{buffer}}[f(x^-)]
            + \alpha\,(\overline{f(x)^2} + \overline{f(x^-)^2}),

    whose gradient is minus the log-likelihood gradient per point (plus the penalty);
    the negatives :math:`x^-` are ``mcmc_steps`` unadjusted Langevin steps (size
    ``mcmc_step_size`` in standardized units) from ``batch_size`` points of a persistent
    replay buffer of ``buffer_size`` points, a ``reinit_fraction`` of them restarted
    from noise each step. ``objective="score_matching"``: denoising score matching with
    noise sd ``noise_scale`` (standardized units),
    :math:`\frac12 \mathbb E\,\|\sigma \nabla f(x + \sigma z) + z\|^2`.

    Options: ``num_steps``, ``lr``, ``lr_decay``, ``batch_size`` (``None``: all data),
    ``optimizer``, ``callback(step, loss)`` (``True`` stops), ``energy_reg`` (alpha),
    ``grad_clip`` (max gradient norm, ``None``: off). A non-finite loss or gradient
    raises :class:`~pyro_genmodels.FitError` with the last finite state in ``.fit``;
    Ctrl-C returns the partial fit (``interrupted=True``).
    """
    return _fit_energy(model, x, method="mle", progress=progress, num_steps=num_steps, lr=lr,
                       lr_decay=lr_decay, batch_size=batch_size, optimizer=optimizer,
                       callback=callback, objective=objective, buffer_size=buffer_size,
                       reinit_fraction=reinit_fraction, mcmc_steps=mcmc_steps,
                       mcmc_step_size=mcmc_step_size, energy_reg=energy_reg,
                       grad_clip=grad_clip, noise_scale=noise_scale)


def fit_energy_map(model, x, *, c=None, num_steps=2000, lr=3e-3, lr_decay=0.1,
                   batch_size=256, optimizer="adam", callback=None, objective="contrastive",
                   buffer_size=10000, reinit_fraction=0.05, mcmc_steps=20,
                   mcmc_step_size=0.05, energy_reg=0.01, grad_clip=None, noise_scale=0.1,
                   progress=True):
    """MAP: :func:`fit_energy_mle` plus the weight prior (the ``weight_prior`` factor),
    i.e. the per-point loss gains ``||w||^2 / (2 prior_scale^2 N)`` (L2) and a constant."""
    return _fit_energy(model, x, method="map", progress=progress, num_steps=num_steps, lr=lr,
                       lr_decay=lr_decay, batch_size=batch_size, optimizer=optimizer,
                       callback=callback, objective=objective, buffer_size=buffer_size,
                       reinit_fraction=reinit_fraction, mcmc_steps=mcmc_steps,
                       mcmc_step_size=mcmc_step_size, energy_reg=energy_reg,
                       grad_clip=grad_clip, noise_scale=noise_scale)


fit_energy_mle.validate_options = _validate
fit_energy_map.validate_options = _validate
EnergyModel.engines = {"mle": fit_energy_mle, "map": fit_energy_map}
