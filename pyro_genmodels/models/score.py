r"""Score-based generative models: learn only the score, sample by annealed Langevin.

The model never normalizes a density. A noise-conditional network learns the score of
the data blurred at each noise level sigma,

.. math::

    s_\theta(x, \sigma) \approx \nabla_x \log p_\sigma(x), \qquad
    p_\sigma = p_\text{data} * \mathcal N(0, \sigma^2 I),

for sigma between ``sigma_min`` and ``sigma_max`` (Song & Ermon 2019, "NCSN"), and draws
samples by Langevin dynamics annealed from the largest level to the smallest, where the
blurred density is close to the data's. Training never needs p itself: the Fisher
divergence :math:`\frac12 \mathbb E \|s_\theta - \nabla \log p_\sigma\|^2` equals, up to a
constant, the *denoising* score-matching loss (Vincent 2011)

.. math::

    \ell_\text{DSM}(\sigma) = \tfrac12\, \mathbb E_{x, z}
        \big\|\sigma\, s_\theta(x + \sigma z, \sigma) + z\big\|^2
    \quad (\text{weighted by } \sigma^2, \text{ so every level counts alike}),

or the *sliced* score-matching loss (Song et al. 2019, with variance reduction)
:math:`\mathbb E[v^\top \nabla_x s_\theta(\tilde x) v + \frac12 \|s_\theta(\tilde x)\|^2]`,
v ~ N(0, I), which is the explicit score-matching objective
:math:`\mathbb E[\operatorname{tr} \nabla s + \frac12 \|s\|^2]` in expectation
(:mod:`~pyro_genmodels.models.score_engine`).

Seen as the variance-exploding SDE (Song et al. 2021), :math:`dx = \sqrt{d\sigma^2/dt}\,
dW`, the same scores define the probability-flow ODE :math:`dx / d\sigma = -\sigma
s_\theta(x, \sigma)`, which both samples (``sampler="ode"``) and gives a likelihood
estimate (:mod:`~pyro_genmodels.infer.probability_flow`, the module the diffusion family
uses: there y = x_t / sqrt(abar_t), here y = x). So ``log_prob_kind == "estimate"``.

The default network is the diffusion family's noise-conditional MLP
(:mod:`~pyro_genmodels.models.noise_nets`) fed the normalized log sigma, its output
divided by sigma (Song & Ermon 2020, technique 3: the score's size scales as 1 / sigma).

**Energy or score?** :class:`~pyro_genmodels.EnergyModel` learns a scalar f whose gradient
is the score, so it has an unnormalized density to evaluate, compare and run MCMC on; a
score model learns the vector field directly (no integrability constraint, one forward
pass per score, no double backward in DSM) and samples better at the same cost, but has
a density only through the ODE. Use the energy model when you need exp f(x), this family
when you need samples and an ODE likelihood.

References:
    Vincent (2011), *A Connection Between Score Matching and Denoising Autoencoders*,
    Neural Computation.
    Song, Garg, Shi & Ermon (2019), *Sliced Score Matching*, UAI.
    Song & Ermon (2019), *Generative Modeling by Estimating Gradients of the Data
    Distribution*, NeurIPS.
    Song & Ermon (2020), *Improved Techniques for Training Score-Based Generative Models*,
    NeurIPS.
    Song et al. (2021), *Score-Based Generative Modeling through Stochastic Differential
    Equations*, ICLR.
    Jolicoeur-Martineau, Piché-Taillefer, Tachet des Combes & Mitliagkas (2021), *Adversarial
    score matching and improved sampling for image generation*, ICLR.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, cast

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from .._moments import column_moments
from .._validation import check_bool, positive_float, positive_int
from .._context import StandardizedContext, linear_prediction
from ..base import Capabilities, GenerativeModel, register
from ..infer.objectives import data_plate, plate_rows
from ._checks import check_network, hidden_widths
from .noise_nets import (DISTANCE_ROWS, NoiseConditionalMLP, geometric_levels,
                         largest_distance, level_fraction)
from .score_engine import ScoreEngine
from .score_fit import ScoreFit


class ScaledScore(nn.Module):
    r""":math:`s(x, \sigma) = F(x, \tau(\sigma)) / \sigma`, :math:`\tau = (\log\sigma -
    \log\sigma_\min) / (\log\sigma_\max - \log\sigma_\min)` in [0, 1]: the default
    network. ``log_range`` (log sigma_min, log sigma_max) is set with the levels."""

    log_range: torch.Tensor  # a buffer

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.register_buffer("log_range", torch.tensor([0.0, 1.0]))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor,
                c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The score s(x, sigma) ``(B, D)`` of rows ``x`` ``(B, D)`` at levels ``sigma`` ``(B,)``
        (with ``c``): the network's output over sigma."""
        return self.net(x, level_fraction(sigma, self.log_range), c) / sigma.unsqueeze(-1)


@register
class ScoreModel(StandardizedContext, GenerativeModel):
    r"""A noise-conditional score network s(x, sigma) (or s(x, sigma, c)).

    Args:
        dim: D, the number of columns of the data.
        sigmas: the annealing levels, decreasing and positive (standardized units when
            ``standardize``; ``num_levels``, ``sigma_min`` and ``sigma_max``, which they
            replace, are then refused); ``None``: ``num_levels`` geometric levels from
            ``sigma_max`` down to ``sigma_min``.
        num_levels: L >= 2, the number of levels when ``sigmas`` is not given (``None``:
            10), from ``sigma_max`` down to ``sigma_min``. One fixed level is
            ``sigmas=[s]``, which trains and samples by Langevin but has no ODE range for
            ``log_prob``.
        sigma_min: the smallest level.
        sigma_max: the largest; ``None``: the largest pairwise distance between training
            rows (Song & Ermon 2020, technique 1; over at most 5000 rows), set when the
            fit starts.
        network: your own ``nn.Module`` returning the score ``(B, D)``,
            ``network(x, sigma)`` or ``network(x, sigma, c)``, ``x`` ``(B, D)``, ``sigma``
            ``(B,)``, ``c`` ``(B, context_dim)`` (x and c standardized when
            ``standardize``); called once on a small batch here, so that a wrong
            signature or output shape fails at construction.
        hidden: hidden widths of the default network (a sequence of positive ints, or
            one int for a single layer).
        context_dim: width of the condition ``c`` (``None``: unconditional).
        standardize: the network sees standardized columns, and a context standardized by
            its own training moments (both fixed when the fit starts); scores and levels
            are in those units, densities on the data's scale.

    Buffers set when the fit starts: ``shift``, ``x_scale`` (the standardization) and
    ``unit_mean``, ``unit_sd`` ``(D,)``, the training columns' mean and sd in the
    network's units (0 and 1 when ``standardize``), the moments of the samplers' start and
    of the ODE's prior :math:`\mathcal N(m, \operatorname{diag}(s^2) + \sigma_\max^2 I)`;
    a conditional model's prior is that of x given c instead, its mean and sd the least-
    squares prediction of the rows from c (``context_intercept`` ``(D,)``,
    ``context_slope`` ``(context_dim, D)``, ``residual_sd`` ``(D,)``:
    :meth:`set_context_prior`).

    Sample sites of :meth:`model`: in the plate ``data`` the observed ``x`` under an
    improper flat factor (the model has no density to observe by; the Pyro program is
    the prior predictive by annealed Langevin, for ``Predictive`` and inspection).

    Example:
        >>> import pyro_genmodels as pgm
        >>> x = pgm.datasets.toy("eight_gaussians").sample((256,))
        >>> fit = pgm.ScoreModel(2, hidden=(32, 32)).fit(x, method="dsm", num_steps=20,
        ...                                              seed=0, progress=False)
        >>> fit.score(x[:4]).shape, fit.sample(3, steps_per_level=5, seed=0).shape
        (torch.Size([4, 2]), torch.Size([3, 2]))
    """

    registry_name = "score"
    capabilities = Capabilities(log_prob="estimate", sampling="annealed Langevin",
                                methods=("dsm", "ssm"), conditional=True)
    global_sites = ()
    fit_class = ScoreFit
    engines = {m: ScoreEngine(m) for m in ("dsm", "ssm")}

    def __init__(self, dim: int, *, sigmas: Optional[Sequence[float]] = None,
                 num_levels: Optional[int] = None, sigma_min: float = 0.01,
                 sigma_max: Optional[float] = None, network: Optional[nn.Module] = None,
                 hidden: Sequence[int] = (256, 256, 256), context_dim: Optional[int] = None,
                 standardize: bool = True) -> None:
        super().__init__(dim)
        if sigmas is not None:
            if isinstance(sigmas, (str, bytes)) or not isinstance(sigmas, Iterable):
                raise TypeError(f"Expected sigmas to be a sequence of positive, strictly "
                                f"decreasing levels (or None), but got {sigmas!r}")
            levels = [positive_float(s, f"sigmas[{i}]") for i, s in enumerate(sigmas)]
            if len(levels) < 1 or any(a <= b for a, b in zip(levels, levels[1:])):
                raise ValueError(f"Expected sigmas to be strictly decreasing and non-empty, "
                                 f"but got {list(sigmas)!r}")
            self.given_sigmas: Optional[List[float]] = levels
            unused = [f"{k}={v!r}" for k, v, default in (
                ("num_levels", num_levels, (None, len(levels))), ("sigma_min", sigma_min, (0.01,)),
                ("sigma_max", sigma_max, (None,))) if v not in default]
            if unused:  # what sigmas replaces would do nothing
                raise ValueError(f"sigmas={levels} gives the levels; {', '.join(unused)} "
                                 f"would do nothing beside it: pass sigmas, or num_levels, "
                                 f"sigma_min and sigma_max")
        else:
            self.given_sigmas = None
        self.num_levels = (len(self.given_sigmas) if self.given_sigmas is not None
                           else 10 if num_levels is None
                           else positive_int(num_levels, "num_levels"))
        if self.given_sigmas is None and self.num_levels < 2:
            raise ValueError(
                f"Expected num_levels >= 2 (geometric levels from sigma_max down to "
                f"sigma_min, both of which the model needs: annealing starts at the one "
                f"and sampling quality is set by the other), but got num_levels="
                f"{num_levels}; for a single level pass it as sigmas=[level]")
        self.sigma_min = positive_float(sigma_min, "sigma_min")
        self.sigma_max = None if sigma_max is None else positive_float(sigma_max, "sigma_max")
        if self.sigma_max is not None and self.sigma_max <= self.sigma_min:
            raise ValueError(f"Expected sigma_max > sigma_min ({self.sigma_min}), but got "
                             f"{self.sigma_max}")
        self.hidden = hidden_widths(hidden)
        if network is None and not self.hidden:
            raise ValueError("Expected at least one hidden layer, but got hidden=()")
        if network is not None and not isinstance(network, nn.Module):
            raise TypeError(f"Expected network to be a torch.nn.Module, but got "
                            f"{type(network).__name__}")
        self.context_dim = None if context_dim is None else positive_int(context_dim,
                                                                          "context_dim")
        self.standardize = check_bool(standardize, "standardize")
        if network is not None:
            c = [] if self.context_dim is None else [("c", self.context_dim, 0.0)]
            check_network(network, "network", [("x", self.dim, 0.0), ("sigma", None, 1.0), *c],
                          [self.dim])
        self.custom = network is not None
        self.network = network if network is not None else ScaledScore(
            NoiseConditionalMLP(self.dim, self.hidden, context_dim=self.context_dim or 0))
        top = self.sigma_max if self.sigma_max is not None else max(1.0, 2 * self.sigma_min)
        self.register_buffer("sigmas", self._levels(top))
        self._sync_range()
        self.register_buffer("shift", torch.zeros(self.dim))
        self.register_buffer("x_scale", torch.ones(self.dim))
        self.register_buffer("unit_mean", torch.zeros(self.dim))
        self.register_buffer("unit_sd", torch.ones(self.dim))
        self.standardize_context()
        if self.context_dim is not None:  # the conditional prior (set_context_prior)
            self.register_buffer("context_intercept", torch.zeros(self.dim))
            self.register_buffer("context_slope", torch.zeros(self.context_dim, self.dim))
            self.register_buffer("residual_sd", torch.ones(self.dim))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a fit saved before ``unit_mean`` / ``unit_sd`` existed had the prior N(0, (1 +
        # sigma_max^2) I): it loads with those moments and gives what it gave before
        for name in ("unit_mean", "unit_sd"):
            state_dict.setdefault(prefix + name, getattr(self, name).clone())
        if self.context_dim is not None:
            # and a conditional fit saved before its prior depended on c had the one
            # prior N(unit_mean, unit_sd^2 + sigma_max^2) for every c: slope 0
            state_dict.setdefault(prefix + "context_intercept",
                                  state_dict[prefix + "unit_mean"].clone())
            state_dict.setdefault(prefix + "context_slope", torch.zeros_like(self.context_slope))
            state_dict.setdefault(prefix + "residual_sd", state_dict[prefix + "unit_sd"].clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _levels(self, top: float) -> torch.Tensor:
        if self.given_sigmas is not None:
            return torch.tensor(self.given_sigmas)
        return geometric_levels(top, self.sigma_min, self.num_levels)

    def _sync_range(self) -> None:
        if not self.custom:
            net = cast(ScaledScore, self.network)  # the default network
            with torch.no_grad():
                net.log_range.copy_(torch.stack([self.sigmas[-1], self.sigmas[0]])
                                    .log().to(net.log_range))

    def working_copy(self, x: torch.Tensor,
                     moments: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                     ) -> "ScoreModel":
        """The fit's copy, standardized, with sigma_max from the data when not given and,
        without ``standardize``, ``unit_mean`` / ``unit_sd`` the training columns' moments
        (with it they stay 0 and 1: the standardized columns')."""
        work = super().working_copy(x, moments=moments)
        if not self.standardize:
            with torch.no_grad():
                mean, sd = column_moments(x) if moments is None else moments
                work.unit_mean.copy_(mean)
                work.unit_sd.copy_(sd)
        if self.given_sigmas is None and self.sigma_max is None:
            top = largest_distance(work.to_unit(x), floor=2 * self.sigma_min)
            with torch.no_grad():
                work.sigmas.copy_(work._levels(top).to(work.sigmas))
            work._sync_range()
        return work

    def set_context_prior(self, x: torch.Tensor, c: Optional[torch.Tensor]) -> None:
        """A conditional model's prior at sigma_max from training rows ``x`` ``(N, D)`` and
        their ``c`` ``(N, context_dim)`` (the fit's rows; a stream's sample): the least-
        squares prediction of the rows in the networks' units from the context as the
        networks read it (:func:`~pyro_genmodels._context.linear_prediction`), buffers
        ``context_intercept``, ``context_slope`` and ``residual_sd``
        (:mod:`~pyro_genmodels.models.score_fit`, "The prior"). A no-op when
        unconditional."""
        if self.context_dim is None or c is None:
            return
        intercept, slope, sd = linear_prediction(self.to_unit(x.detach()),
                                                 self.context_unit(c.detach()))
        with torch.no_grad():
            self.context_intercept.copy_(intercept)
            self.context_slope.copy_(slope)
            self.residual_sd.copy_(sd)

    # ------------------------------------------------------------------ the score
    def score_unit(self, u: torch.Tensor, sigma: torch.Tensor,
                   c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """s(u, sigma[, c]) ``(B, D)`` in the networks' units; ``sigma`` ``(B,)`` or a
        scalar."""
        sigma = sigma.to(u.dtype)
        sigma = sigma.expand(u.shape[0]) if sigma.dim() == 0 else sigma
        return self.network(u, sigma) if c is None else self.network(u, sigma,
                                                                     self.context_unit(c))




    # ------------------------------------------------------------------ the Pyro program
    def model(self, x: Optional[torch.Tensor] = None, *, c: Optional[torch.Tensor] = None,
              num_data: Optional[int] = None, subsample_size: Optional[int] = None,
              subsample: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Draws by annealed Langevin (default settings) as the site ``x``, observed
        when ``x`` is given; its log-density is an improper 0 (there is none to give)."""
        from .score_fit import annealed_langevin, prior_mean

        pyro.module("network", self.network)
        plate = data_plate(x, c, num_data, subsample_size, subsample)
        with plate as idx:
            assert idx is not None  # a vectorized plate yields its indices
            ctx = plate_rows(c, idx, plate.size)
            obs = plate_rows(x, idx, plate.size, "x")
            if obs is None:
                with torch.no_grad():
                    draws = self.from_unit(annealed_langevin(self, idx.shape[0], ctx,
                                                             mean=prior_mean(self, ctx)))
            else:
                draws = obs
            flat = dist.ImproperUniform(dist.constraints.real_vector, (idx.shape[0],),
                                        (self.dim,))
            return pyro.sample("x", flat, obs=draws)

    def sample_given(self, params: Dict[str, torch.Tensor], n: int,
                     c: Optional[torch.Tensor] = None) -> torch.Tensor:
        from .score_fit import annealed_langevin, prior_mean

        return self.from_unit(annealed_langevin(self, n, c, mean=prior_mean(self, c)))

    def log_prob_given(self, params: Dict[str, torch.Tensor], x: torch.Tensor,
                       c: Optional[torch.Tensor] = None) -> torch.Tensor:
        from .score_fit import ode_log_prob

        return ode_log_prob(self, x, c).log_prob

    def num_params(self) -> int:
        return sum(p.numel() for p in self.network.parameters() if p.requires_grad)

    # ------------------------------------------------------------------ engine hooks
    def init_values(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {}

    def get_config(self) -> Dict[str, Any]:
        return {"dim": self.dim, "sigmas": self.given_sigmas, "num_levels": self.num_levels,
                "sigma_min": self.sigma_min, "sigma_max": self.sigma_max,
                "network": self.network if self.custom else None,
                "hidden": list(self.hidden), "context_dim": self.context_dim,
                "standardize": self.standardize}


__all__ = ["DISTANCE_ROWS", "ScaledScore", "ScoreFit", "ScoreModel"]
