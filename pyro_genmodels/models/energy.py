r"""Energy-based models: an unnormalized density, sampled by MCMC, learned by multilevel
denoising score matching, contrastive divergence or denoising score matching.

An energy-based model (EBM) is a Gibbs density

.. math::

    p_\phi(x) = \frac{\exp f_\phi(x)}{Z(\phi)}, \qquad
    Z(\phi) = \int \exp f_\phi(x)\, dx,

with :math:`f_\phi = -E_\phi` the *unnormalized log density* (negative energy). By
default f is **noise-conditional**, :math:`f_\phi(x, \sigma)` (:class:`NoiseConditionalEnergy`),
trained at every noise level at once, and the model's density is
:math:`\exp f_\phi(x, \sigma_0) / Z`: an estimate of the data density convolved with
:math:`N(0, \sigma_0^2 I)` at a small evaluation level sigma_0 chosen on held-out rows.
``noise_conditional=False`` gives a plain MLP :math:`f_\phi(x)`; any ``nn.Module`` /
callable may be f. Z is intractable, so

* **sampling** is MCMC on :math:`f`: batched MALA or fixed-length HMC over many chains
  (:mod:`pyro_genmodels.infer.samplers`), or Pyro's NUTS / HMC with a ``potential_fn``
  (:func:`pyro_genmodels.infer.mcmc.pyro_mcmc`), the chains started by annealed Langevin
  through the noise levels (noise-conditional f) or an SMC run through temperatures
  (:mod:`pyro_genmodels.infer.ais`); :meth:`EnergyModel.sample_chains` returns them
  (:mod:`~pyro_genmodels.models.energy_sampling`);
* **log_prob** is :math:`f(x) - \log \hat Z` with :math:`\log \hat Z` from annealed
  importance sampling (an *estimate*, its number of temperatures chosen until two runs
  agree; computed once per fit under a fixed seed, cached and saved with the fit);
* **learning** (``mle``; ``map`` adds the Gaussian weight prior, MAP = MLE + L2) is
  multilevel denoising score matching (noise-conditional f), contrastive divergence with
  persistent MALA chains, or denoising score matching at one level, in
  :mod:`pyro_genmodels.models.energy_training` (the math is there).

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
    Song & Ermon (2019), *Generative Modeling by Estimating Gradients of the Data
    Distribution*, NeurIPS (noise levels, annealed Langevin).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, cast

import pyro
import torch
import torch.nn.functional as F
from torch import nn

from .._validation import (as_data, check_bool, check_choice, nonnegative_float, positive_float,
                           positive_int)
from ..base import Capabilities, GenerativeModel, gaussian_weight_log_prior, register
from ..infer.objectives import data_plate, plate_rows, prior_factor
from ..infer.samplers import ChainResult, value_and_grad
from ._checks import check_network, hidden_widths
from .energy_fit import EnergyFit
from .noise_nets import NoiseConditionalMLP, geometric_levels, largest_distance, level_fraction
from .energy_sampling import EnergySampling
from .energy_training import EnergyEngine

#: top angular frequency of the energy's level embedding over tau in [0, 1] (smoother in
#: the level than the diffusion family's 200, whose network must resolve 1000 steps)
LEVEL_MAX_FREQUENCY = 20.0
#: c in the noise-conditional network's F / (sigma + c), standardized units
LEVEL_FLOOR = 0.1
ACTIVATIONS = {"silu": nn.SiLU, "softplus": nn.Softplus, "tanh": nn.Tanh, "gelu": nn.GELU,
               "elu": nn.ELU}


def _squeeze(out: torch.Tensor) -> torch.Tensor:
    """A network's ``(B, 1)`` output as ``(B,)``."""
    return out.squeeze(-1) if out.dim() == 2 and out.shape[-1] == 1 else out


class _MLP(nn.Module):
    """``(B, D) -> (B,)``: Linear layers with a smooth activation in between."""

    def __init__(self, dim: int, hidden: Sequence[int], activation: str, spectral_norm: bool):
        super().__init__()
        sizes = [dim, *hidden, 1]
        layers: List[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            lin: nn.Module = nn.Linear(a, b)
            if spectral_norm:
                lin = nn.utils.parametrizations.spectral_norm(lin)
            layers.append(lin)
            if i < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1)


class NoiseConditionalEnergy(nn.Module):
    r""":math:`f(u, \sigma) = -\mathrm{softplus}(G(u, \tau(\sigma))) / (\sigma + c)`:
    ``(B, D), (B,) -> (B,)``, G the shared noise-conditional MLP
    (:mod:`~pyro_genmodels.models.noise_nets`, level embedding up to
    :data:`LEVEL_MAX_FREQUENCY`) with one output, :math:`\tau` the level's place in the log
    range (``log_range``, set with the levels) and c = :data:`LEVEL_FLOOR`.

    **Bounded above** (f < 0): score matching fixes only f's *gradient*, and only where
    the noisy rows fall, which at a small level is near the data; elsewhere f is the
    network's extrapolation, and a SiLU network extrapolates linearly, so an unbounded f
    rose by thousands of nats away from the data at sigma < 0.1. Measured on
    ``checkerboard``, 3 seeds: every level below 0.1 had a held-out log-likelihood under
    -1700, the chosen sigma_0 was 0.16 and the fit 0.36-0.38 nats from the truth; bounded,
    0.12-0.19. No region can then be more probable than the data's peaks; only its area
    can weigh, and the envelope limits that.

    **The divisor**: the score :math:`\nabla f` of data blurred at sigma grows like
    1/sigma near sharp features (Song & Ermon 2020, technique 3, for the score itself), so
    G's gradient stays of order one; the floor c stops that growth below the data's own
    scale (standardized units).
    """

    log_range: torch.Tensor  # a buffer

    def __init__(self, dim: int, hidden: Sequence[int]):
        super().__init__()
        self.net = NoiseConditionalMLP(dim, hidden, out_dim=1,
                                       max_frequency=LEVEL_MAX_FREQUENCY)
        self.register_buffer("log_range", torch.tensor([0.0, 1.0]))

    def forward(self, u: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The energy f(u, sigma) ``(B,)`` of standardized rows ``u`` ``(B, D)`` at levels
        ``sigma`` ``(B,)``: minus a softplus of the network, over ``sigma`` plus the floor."""
        out = self.net(u, level_fraction(sigma, self.log_range)).squeeze(-1)
        return -F.softplus(out) / (sigma + LEVEL_FLOOR)


class _Callable(nn.Module):
    """A user's ``log_density`` callable as a module (no parameters)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


@register
class EnergyModel(EnergySampling, GenerativeModel):
    r"""An energy-based model :math:`p_\phi(x) = \exp f_\phi(x) / Z(\phi)`; by default
    noise-conditional, :math:`p(x) = \exp f_\phi(x, \sigma_0) / Z` (the module docstring
    of :mod:`~pyro_genmodels.models.energy_training` has the math).

    Args:
        dim: D, the number of columns of the data.
        energy: an ``nn.Module`` mapping ``(B, D)`` to ``(B,)`` (or ``(B, 1)``): the
            unnormalized log density :math:`f_\phi = -E_\phi`; with
            ``noise_conditional=True`` it is called ``energy(u, sigma)``, ``sigma``
            ``(B,)``. ``None`` builds the default network. A module is called once on a
            small batch here, so that a wrong signature or output shape fails at
            construction.
            :meth:`Fit.save` stores a custom module's weights, not its code (code is not
            data): load it with ``pgm.load(path, model=...)``, a model built the same way.
        noise_conditional: whether f takes the noise level (default True for the built-in
            network, :class:`NoiseConditionalEnergy`, False for a custom module). Its fits
            default to ``objective="multilevel_score_matching"``, the others' to
            ``"contrastive"``.
        hidden: hidden layer sizes of the default network, a sequence of positive ints
            or one int for a single layer (``None``: ``(256, 256, 256)``
            noise-conditional, ``(128, 128)`` plain).
        activation: the plain MLP's activation, smooth so that Langevin gradients are
            (``"silu"``, ``"softplus"``, ``"tanh"``, ``"gelu"``, ``"elu"``).
        spectral_norm: spectral normalization of every linear layer of the plain MLP (a
            Lipschitz bound that stabilizes contrastive training).
        num_levels, sigma_min, sigma_max: the noise levels, ``num_levels`` (at least 2;
            a plain network has none, and refuses them) geometric ones
            from ``sigma_max`` (``None``: the largest pairwise distance between
            standardized training rows, set when the fit starts) down to ``sigma_min``
            (:mod:`~pyro_genmodels.models.noise_nets`, shared with the score family).
            Training draws levels log-uniformly between the two; sampling anneals
            through them.
        eval_sigma: sigma_0, the level where the density is evaluated (standardized
            units; within ``[sigma_min, sigma_max]``); ``None``: the fit chooses it on
            held-out rows.
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
                 hidden: Optional[Sequence[int]] = None, activation: str = "silu",
                 spectral_norm: bool = False, prior_scale: float = 1.0,
                 standardize: Optional[bool] = None, envelope: Optional[float] = None,
                 loc: Any = None, scale: Any = None, noise_conditional: Optional[bool] = None,
                 num_levels: int = 10, sigma_min: float = 0.01,
                 sigma_max: Optional[float] = None, eval_sigma: Optional[float] = None) -> None:
        super().__init__(dim)
        check_choice(activation, sorted(ACTIVATIONS), "activation")
        self.custom = energy is not None
        if noise_conditional is None:
            noise_conditional = not self.custom
        self.noise_conditional = check_bool(noise_conditional, "noise_conditional")
        if hidden is None:
            hidden = (256, 256, 256) if noise_conditional else (128, 128)
        self.hidden = hidden_widths(hidden)
        self.activation = activation
        self.spectral_norm = check_bool(spectral_norm, "spectral_norm")
        self.prior_scale = positive_float(prior_scale, "prior_scale")
        if noise_conditional and not self.custom and (activation != "silu" or spectral_norm):
            raise ValueError("activation= and spectral_norm= shape the plain network; the "
                             "noise-conditional one is the shared SiLU MLP of noise_nets: "
                             "pass noise_conditional=False to use them")
        if energy is None:
            if not self.hidden:
                raise ValueError("Expected at least one hidden layer, but got hidden=()")
            self.net = (NoiseConditionalEnergy(self.dim, self.hidden) if noise_conditional
                        else _MLP(self.dim, self.hidden, activation, self.spectral_norm))
        elif isinstance(energy, nn.Module):
            if not isinstance(energy, _Callable):  # from_log_density: a function, not probed
                sigma = [("sigma", None, 1.0)] if noise_conditional else []
                check_network(energy, "energy", [("u", self.dim, 0.0), *sigma], [None, 1])
            self.net = energy
        else:
            raise TypeError(f"Expected energy to be a torch.nn.Module (or None for the default "
                            f"MLP), but got {type(energy).__name__}; wrap a plain function "
                            f"with EnergyModel.from_log_density")
        self.net.eval()
        self.standardize = (not self.custom) if standardize is None else check_bool(
            standardize, "standardize")
        if envelope is None:
            envelope = 0.0 if self.custom else 3.0
        self.envelope = nonnegative_float(envelope, "envelope")
        # the noise levels (standardized units when the model standardizes)
        self.num_levels = positive_int(num_levels, "num_levels")
        if self.noise_conditional and self.num_levels < 2:  # one level would be sigma_max
            raise ValueError(f"Expected num_levels >= 2 for a noise-conditional model (the "
                             f"levels run from sigma_max down to sigma_min, where the "
                             f"density is evaluated), but got num_levels={num_levels}")
        self.sigma_min = positive_float(sigma_min, "sigma_min")
        self.sigma_max = None if sigma_max is None else positive_float(sigma_max, "sigma_max")
        if self.sigma_max is not None and self.sigma_max <= self.sigma_min:
            raise ValueError(f"Expected sigma_max > sigma_min ({self.sigma_min}), but got "
                             f"{self.sigma_max}")
        self.eval_sigma = None if eval_sigma is None else positive_float(eval_sigma,
                                                                          "eval_sigma")
        given = [f"{k}={v!r}" for k, v, default in (
            ("num_levels", num_levels, 10), ("sigma_min", sigma_min, 0.01),
            ("sigma_max", sigma_max, None), ("eval_sigma", eval_sigma, None)) if v != default]
        if given and not self.noise_conditional:  # else recorded, and read by nothing
            raise ValueError(f"{', '.join(given)}: the noise levels of a noise-conditional "
                             f"energy f(x, sigma); this one (noise_conditional=False) has "
                             f"none. Leave them out, or build a noise-conditional model")
        if self.eval_sigma is not None and not (
                self.sigma_min <= self.eval_sigma <= (self.sigma_max or math.inf)):
            raise ValueError(f"Expected eval_sigma within the trained levels [{self.sigma_min}"
                             f", {self.sigma_max or 'sigma_max'}], but got {self.eval_sigma}: "
                             f"outside them f(x, sigma) is the network's extrapolation")
        top = self.sigma_max if self.sigma_max is not None else max(1.0, 2 * self.sigma_min)
        self.register_buffer("sigmas", geometric_levels(top, self.sigma_min, self.num_levels))
        first = self.eval_sigma if self.eval_sigma is not None else self.sigma_min
        self.register_buffer("eval_level", torch.tensor(first))
        self._sync_range()
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

    def _sync_range(self) -> None:
        if isinstance(self.net, NoiseConditionalEnergy):
            with torch.no_grad():
                self.net.log_range.copy_(torch.stack([self.sigmas[-1], self.sigmas[0]])
                                         .log().to(self.net.log_range))

    def working_copy(self, x: torch.Tensor,
                     moments: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                     ) -> "EnergyModel":
        """The fit's copy, standardized, with sigma_max the largest pairwise distance
        between training rows (standardized) when not given."""
        work = super().working_copy(x, moments=moments)
        if work.noise_conditional and self.sigma_max is None:
            top = largest_distance(work.to_unit(x), floor=2 * self.sigma_min)
            if self.eval_sigma is not None and self.eval_sigma > top:  # before any step
                raise ValueError(f"Expected eval_sigma within the trained levels "
                                 f"[{self.sigma_min}, {top:.4g}] (sigma_max: the largest "
                                 f"distance between standardized rows), but got "
                                 f"{self.eval_sigma}")
            with torch.no_grad():
                work.sigmas.copy_(geometric_levels(top, self.sigma_min, self.num_levels)
                                  .to(work.sigmas))
            work._sync_range()
        return work

    def fit(self, data: Any, **options: Any) -> EnergyFit:
        """:meth:`GenerativeModel.fit`; the default ``objective`` is
        ``"multilevel_score_matching"`` for a noise-conditional energy and
        ``"contrastive"`` otherwise."""
        if "objective" not in options and not self.noise_conditional:
            options["objective"] = "contrastive"
        return cast(EnergyFit, super().fit(data, **options))  # the family's fit_class

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
    def prior_sites(self) -> Tuple[str, ...]:
        return ("weight_prior",)

    # ------------------------------------------------------------------ the density
    def _f(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) without validation (the samplers' hot path): ``(B, D) -> (B,)``."""
        u = self.to_unit(x)
        if self._wrapped:
            return self.net(u)
        return self._f_of_u(u)

    def _f_of_u(self, u: torch.Tensor, sigma: Optional[torch.Tensor] = None) -> torch.Tensor:
        """f as a function of the network's input ``u`` (standardized x when the model
        standardizes), the envelope included: ``(B, D) -> (B,)``. A noise-conditional
        energy is evaluated at level ``sigma`` (``(B,)`` or a scalar; default the
        evaluation level sigma_0, where the model's density is defined)."""
        if self.noise_conditional:
            level = self.eval_level if sigma is None else sigma
            level = level.to(u.dtype)
            out = _squeeze(self.net(u, level.expand(u.shape[0]) if level.dim() == 0 else level))
        else:
            out = _squeeze(self.net(u))
        if self.envelope > 0:
            out = out - u.pow(2).sum(-1) / (2 * self.envelope**2)
        return out

    def score_unit(self, u: torch.Tensor, sigma: torch.Tensor,
                   c: Optional[torch.Tensor] = None) -> torch.Tensor:
        r""":math:`\nabla_u f(u, \sigma)` ``(B, D)``, the noise-conditional energy's score
        at level ``sigma`` in the network's units (for annealed Langevin)."""
        with torch.enable_grad():
            _, g = value_and_grad(lambda v: self._f_of_u(v, sigma), u.detach())
        return g

    def unnormalized_log_prob(self, x: Any) -> torch.Tensor:
        r""":math:`f_\phi(x_i)`, shape ``(N,)`` (differentiable)."""
        x = as_data(x, dim=self.dim, name="x", **self._factory)
        return self._f(x)

    def weight_log_prior(self) -> torch.Tensor:
        """``sum_w log N(w; 0, prior_scale^2)`` over every weight of the network."""
        weights: List[torch.Tensor] = list(self.net.parameters())
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
        plate = data_plate(x, c, num_data, subsample_size, subsample)
        with plate as idx:
            assert idx is not None  # a vectorized plate yields its indices
            obs = plate_rows(x, idx, plate.size, "x")
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
        return cast(ChainResult, self._run(n, sampler="langevin")).flat(n)  # not flat: chains

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
                  "envelope": self.envelope, "noise_conditional": self.noise_conditional,
                  "num_levels": self.num_levels, "sigma_min": self.sigma_min,
                  "sigma_max": self.sigma_max, "eval_sigma": self.eval_sigma}
        if self.custom:  # the module itself: Fit.save stores its weights, not its code
            config["energy"] = self.net
        return config

    def extra_repr(self) -> str:
        if self._wrapped:
            return f"dim={self.dim}, log_density={getattr(self.net.fn, '__name__', '?')}"
        if self.custom:
            return f"dim={self.dim}, energy={type(self.net).__name__}"
        return super().extra_repr()
