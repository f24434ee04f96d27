r"""Diffusion models (DDPM) as Pyro latent-variable models, with their exact variational
bound and a likelihood through the probability-flow ODE.

The model is a Markov chain run backwards from noise, and its latents
:math:`x_1, \dots, x_T` are a fixed noising path of the data (Sohl-Dickstein et al. 2015;
Ho, Jain & Abbeel 2020):

.. math::

    x_T \sim \mathcal N(0, I), \qquad
    x_{t-1} \mid x_t \sim \mathcal N(\mu_\theta(x_t, t), \sigma_t^2 I), \qquad
    \mu_\theta = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}
        \epsilon_\theta(x_t, t)\Big),

with :math:`x_0` the observed row (the last step is the Gaussian decoder
:math:`\mathcal N(\mu_\theta(x_1, 1), \beta_1 I)`). The guide is the fixed forward process
:math:`q(x_{1:T} \mid x_0)` (:mod:`~pyro_genmodels.models.diffusion_schedule`), so the
ELBO of the pair is the DDPM bound, which Ho et al. (eq. 5) rewrite as a sum of
analytic Gaussian KL terms:

.. math::

    -\log p_\theta(x_0) \le L = \mathrm{KL}(q(x_T \mid x_0) \| \mathcal N(0, I))
      + \sum_{t=2}^T \mathbb E_q\, \mathrm{KL}(q(x_{t-1} \mid x_t, x_0) \,\|\,
        p_\theta(x_{t-1} \mid x_t)) - \mathbb E_q \log p_\theta(x_0 \mid x_1),

    \mathrm{KL}_t = w_t \|\epsilon - \epsilon_\theta(x_t, t)\|^2, \quad
    w_t = \frac{\beta_t^2}{2 \sigma_t^2 \alpha_t (1 - \bar\alpha_t)}, \quad
    x_t = \sqrt{\bar\alpha_t} x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon,

and :math:`-\log p_\theta(x_0 \mid x_1) = \frac D2 \log(2 \pi \beta_1) + w_1 \|\epsilon -
\epsilon_\theta(x_1, 1)\|^2`. :meth:`Diffusion.model` and :meth:`Diffusion.guide` are the
full chain (``pyro.markov`` over t): ``Trace_ELBO`` on them is this bound, which the
tests check at small T. Training and evaluation use the decomposition instead: each
term needs only the pair :math:`(x_0, x_t)`, so the sum over t is a *time plate* that can
be subsampled (uniformly, scaled by T, or importance-sampled), exactly as the data plate
is subsampled by minibatches.

``fit.log_prob`` is :math:`-L` with every t evaluated (one draw of :math:`\epsilon` per
term, ``log_prob_kind == "bound"``); ``estimator="ode"`` integrates the probability-flow
ODE instead (:mod:`~pyro_genmodels.infer.probability_flow`, kind ``"estimate"``).

The networks work on standardized columns (``standardize=True``, like ``Flow`` and
``GAN``), and densities are reported on the data's own scale (minus the log-scale of
the standardization).

References:
    Sohl-Dickstein, Weiss, Maheswaranathan & Ganguli (2015), *Deep Unsupervised Learning
    using Nonequilibrium Thermodynamics*, ICML.
    Ho, Jain & Abbeel (2020), *Denoising Diffusion Probabilistic Models*, NeurIPS.
    Nichol & Dhariwal (2021), *Improved Denoising Diffusion Probabilistic Models*, ICML.
    Song, Meng & Ermon (2021), *Denoising Diffusion Implicit Models*, ICLR.
    Song et al. (2021), *Score-Based Generative Modeling through Stochastic Differential
    Equations*, ICLR.
    Ho & Salimans (2022), *Classifier-Free Diffusion Guidance*, arXiv:2207.12598.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from .._validation import check_choice, positive_float, positive_int
from .. import fit as _fit
from .._context import StandardizedContext
from ..base import (Capabilities, GenerativeModel, cached_parameters, gaussian_weight_log_prior,
                    register)
from ..infer.objectives import data_plate, plate_rows, prior_factor
from ._checks import check_network, hidden_widths
from .diffusion_engine import DiffusionEngine
from .diffusion_fit import DiffusionFit
from .diffusion_schedule import SCHEDULES, Schedule
from .noise_nets import NoiseConditionalMLP


class Preconditioned(nn.Module):
    r"""The default network's output as a skip plus a scaled residual,

    .. math::

        \epsilon_\theta(x_t, t) = \sqrt{1 - \bar\alpha_t}\, x_t
            + \sqrt{\bar\alpha_t}\, F_\theta(x_t, t / T),

    a preconditioning in the spirit of Karras et al. (2022). The skip is the exact noise
    predictor for standardized N(0, I) data, and the optimal residual,
    :math:`\sqrt{\bar\alpha_t / (1 - \bar\alpha_t)}\,(\sqrt{\bar\alpha_t} x_t -
    \mathbb E[x_0 \mid x_t])`, stays O(1), so F's errors vanish as
    :math:`\bar\alpha_t \to 0`. Without it the probability-flow ODE, which runs on
    from sigma of about 10 to 2e4 in the pure-noise regime, integrated a trained
    network's 0.03 error there into 0.6 nats of log-likelihood on ``eight_gaussians``.
    ``t`` is the step in [0, T], fractional between steps."""

    def __init__(self, net: nn.Module, schedule: Schedule):
        super().__init__()
        self.net, self.schedule = net, schedule

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The predicted noise ``(B, D)`` for rows ``x`` ``(B, D)`` at steps ``t`` ``(B,)``
        (with ``c``)."""
        abar = 1 / (1 + self.schedule.sigma_of(t).pow(2)).unsqueeze(-1)
        return (1 - abar).sqrt() * x + abar.sqrt() * self.net(x, t / self.schedule.timesteps, c)


@register
class Diffusion(StandardizedContext, GenerativeModel):
    r"""A denoising diffusion model p(x) or, with ``context_dim``, p(x | c).

    Args:
        dim: D, the number of columns of the data.
        timesteps: T, the number of noising steps.
        schedule: ``"cosine"`` (Nichol & Dhariwal 2021) or ``"linear"`` (Ho et al. 2020).
        network: your own ``nn.Module`` predicting the noise, ``network(x_t, t)`` or, for
            a conditional model, ``network(x_t, t, c)``: ``x_t`` ``(B, D)`` (standardized
            units when ``standardize``), ``t`` ``(B,)`` the step as a float in [0, T]
            (fractional for the ODE), ``c`` ``(B, context_dim + 1)``: the condition
            (standardized when ``standardize``) times a keep flag, then the flag (0 where classifier-free guidance drops
            the condition). Returns ``(B, D)``. It is called once on a small batch
            here, so that a wrong signature or output shape fails at construction.
        hidden: hidden widths of the default network (a sequence of positive ints, or
            one int for a single layer): an MLP with a sinusoidal time embedding added
            to every layer (:mod:`~pyro_genmodels.models.noise_nets`), preconditioned as
            :class:`Preconditioned`.
        context_dim: width of the condition ``c`` (``None``: unconditional).
        prior_scale: s, sd of the Gaussian prior on every network weight (``map``: L2).
        standardize: the network sees standardized columns, and a context standardized by
            its own training moments (both fixed when the fit starts).

    Sample sites of :meth:`model`: the factor ``weight_prior``, and in the plate ``data``
    the latents ``x_T``, ..., ``x_1`` (named ``"x_{t}"``) and the observed ``x``.

    Example:
        >>> import pyro_genmodels as pgm
        >>> x = pgm.datasets.toy("eight_gaussians").sample((256,))
        >>> model = pgm.Diffusion(2, timesteps=50, hidden=(32, 32))
        >>> fit = model.fit(x, method="mle", num_steps=20, seed=0, progress=False)
        >>> fit.log_prob(x[:4]).shape, fit.sample(3, sampler="ddim", steps=10, seed=0).shape
        (torch.Size([4]), torch.Size([3, 2]))
    """

    registry_name = "diffusion"
    capabilities = Capabilities(log_prob="bound", sampling="ancestral",
                                methods=("mle", "map"), conditional=True)
    global_sites = ()
    fit_class = DiffusionFit
    engines = {m: DiffusionEngine(m) for m in ("mle", "map")}

    def __init__(self, dim: int, *, timesteps: int = 1000, schedule: str = "cosine",
                 network: Optional[nn.Module] = None, hidden: Sequence[int] = (256, 256, 256),
                 context_dim: Optional[int] = None, prior_scale: float = 1.0,
                 standardize: bool = True) -> None:
        super().__init__(dim)
        self.timesteps = positive_int(timesteps, "timesteps")
        self.schedule_name = check_choice(schedule, SCHEDULES, "schedule")
        self.hidden = hidden_widths(hidden)
        if network is None and not self.hidden:
            raise ValueError("Expected at least one hidden layer, but got hidden=()")
        if network is not None and not isinstance(network, nn.Module):
            raise TypeError(f"Expected network to be a torch.nn.Module, but got "
                            f"{type(network).__name__}")
        self.context_dim = None if context_dim is None else positive_int(context_dim,
                                                                          "context_dim")
        self.prior_scale = positive_float(prior_scale, "prior_scale")
        if not isinstance(standardize, bool):
            raise TypeError(f"Expected standardize to be a bool, but got {standardize!r}")
        self.standardize = standardize
        width = 0 if self.context_dim is None else self.context_dim + 1
        if network is not None:
            c = [("c", width, 1.0)] if width else []
            check_network(network, "network", [("x_t", self.dim, 0.0), ("t", None, 1.0), *c],
                          [self.dim])
        self.custom = network is not None
        self.schedule = Schedule(self.schedule_name, self.timesteps)
        self.network = network if network is not None else Preconditioned(
            NoiseConditionalMLP(self.dim, self.hidden, context_dim=width), self.schedule)
        self.register_buffer("shift", torch.zeros(self.dim))
        self.register_buffer("x_scale", torch.ones(self.dim))
        self.standardize_context()

    @property
    def prior_sites(self) -> Tuple[str, ...]:
        return ("weight_prior",)

    # ------------------------------------------------------------------ the network
    def condition(self, c: Optional[torch.Tensor], keep: Optional[torch.Tensor] = None
                  ) -> Optional[torch.Tensor]:
        """The network's condition ``[keep * c, keep]`` ``(B, context_dim + 1)``;
        ``keep`` ``(B,)`` in {0, 1} (default all 1; 0 drops the condition)."""
        if self.context_dim is None:
            return None
        assert c is not None  # a conditional model's rows come with c (validated)
        if keep is None:
            keep = torch.ones(c.shape[0], dtype=c.dtype, device=c.device)
        keep = keep.to(c.dtype).unsqueeze(-1)
        return torch.cat([self.context_unit(c) * keep, keep], -1)

    def eps(self, u_t: torch.Tensor, t: torch.Tensor, cond: Optional[torch.Tensor] = None
            ) -> torch.Tensor:
        """The predicted noise ``(B, D)`` at points ``u_t`` ``(B, D)`` and steps ``t``
        (``(B,)`` or a scalar, float in [0, T]), for a prepared ``cond``."""
        t = t.to(u_t.dtype).expand(u_t.shape[0]) if t.dim() == 0 else t.to(u_t.dtype)
        return self.network(u_t, t) if cond is None else self.network(u_t, t, cond)

    def guided_eps(self, u_t: torch.Tensor, t: torch.Tensor, c: Optional[torch.Tensor],
                   guidance: Optional[float]) -> torch.Tensor:
        r"""Classifier-free guidance (Ho & Salimans 2022):
        :math:`(1 + w)\,\epsilon_\theta(x, c) - w\,\epsilon_\theta(x, \varnothing)`;
        ``guidance=None`` (or 0) is the conditional prediction alone."""
        cond = self.condition(c)
        if not guidance:
            return self.eps(u_t, t, cond)
        # guidance is for conditional models only (the fit checks): c and cond are set
        assert c is not None and cond is not None
        dropped = self.condition(c, torch.zeros(c.shape[0], dtype=c.dtype, device=c.device))
        assert dropped is not None
        e = self.eps(torch.cat([u_t, u_t]), torch.cat([t, t]) if t.dim() else t,
                     torch.cat([cond, dropped]))
        e_c, e_u = e.chunk(2)
        return (1 + guidance) * e_c - guidance * e_u




    def weight_log_prior(self) -> torch.Tensor:
        """``sum_w log N(w; 0, prior_scale^2)`` over every network weight."""
        return gaussian_weight_log_prior(cached_parameters(self, self.network),
                                         self.prior_scale)

    # ------------------------------------------------------------------ the bound
    def term(self, u0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
             cond: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        r"""The bound's term of step t per row without its constant,
        :math:`w_t \|\epsilon - \epsilon_\theta(x_t, t)\|^2`, for rows ``u0`` ``(B, D)``,
        integer steps ``t`` ``(B,)`` in 1..T and noise ``(B, D)``; and the squared error
        itself. Returns ``(weighted (B,), squared_error (B,))``."""
        mean, sd = self.schedule.forward_mean_sd(u0, t)
        err = (noise - self.eps(mean + sd * noise, t, cond)).pow(2).sum(-1)
        return self.schedule.weight[t] * err, err

    def negative_bound(self, u0: torch.Tensor, c: Optional[torch.Tensor] = None
                       ) -> torch.Tensor:
        """L per row ``(N,)`` in the networks' units, every step evaluated once (one
        noise draw per step and row, from the current RNG), in chunks of rows x steps."""
        T, n = self.timesteps, u0.shape[0]
        cond = self.condition(c)
        total = self.schedule.prior_kl(u0) + self.schedule.decoder_constant(self.dim)
        per = max(1, _fit.CHUNK_ELEMENTS // (max(1, n) * max(self.hidden or (256,))))
        for start in range(1, T + 1, per):
            ts = torch.arange(start, min(T, start + per - 1) + 1, device=u0.device)
            k = ts.shape[0]
            rows = u0.repeat(k, 1)
            steps = ts.repeat_interleave(n)
            noise = torch.randn_like(rows)
            cc = None if cond is None else cond.repeat(k, 1)
            total = total + self.term(rows, steps, noise, cc)[0].reshape(k, n).sum(0)
        return total

    def log_prob_given(self, params: Dict[str, torch.Tensor], x: torch.Tensor,
                       c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The variational bound ``-L`` per row ``(N,)`` on the data's scale."""
        return -self.negative_bound(self.to_unit(x), c) - self.log_scale()

    # ------------------------------------------------------------------ the Pyro program
    def model(self, x: Optional[torch.Tensor] = None, *, c: Optional[torch.Tensor] = None,
              num_data: Optional[int] = None, subsample_size: Optional[int] = None,
              subsample: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The full reverse chain: ``x_T ~ N(0, I)``, ``x_{t-1} ~ N(mu(x_t, t),
        sigma_t^2 I)`` down to the observed ``x`` (on the data's scale). T network
        passes: the tests run it at small T; training uses the time plate."""
        pyro.module("network", self.network)
        prior_factor("weight_prior", self.weight_log_prior)
        sched, T = self.schedule, self.timesteps
        plate = data_plate(x, c, num_data, subsample_size, subsample)
        with plate as idx:
            assert idx is not None  # a vectorized plate yields its indices
            ctx = plate_rows(c, idx, plate.size)
            obs = plate_rows(x, idx, plate.size, "x")
            cond = self.condition(ctx)
            zeros = torch.zeros(idx.shape[0], self.dim, **self._factory)
            u = pyro.sample(f"x_{T}", dist.Normal(zeros, 1.0).to_event(1))
            for t in pyro.markov(range(T, 1, -1)):
                step = torch.full((idx.shape[0],), t, device=zeros.device, dtype=torch.long)
                loc = sched.reverse_mean(u, step, self.eps(u, step, cond))
                u = pyro.sample(f"x_{t - 1}", dist.Normal(loc, sched.var[t].sqrt()).to_event(1))
            step = torch.ones(idx.shape[0], device=zeros.device, dtype=torch.long)
            loc = sched.reverse_mean(u, step, self.eps(u, step, cond))
            scale = sched.var[1].sqrt() * (self.x_scale if self.standardize else 1.0)
            return pyro.sample("x", dist.Normal(self.from_unit(loc), scale).to_event(1),
                               obs=obs)

    def guide(self, x: torch.Tensor, *, c: Optional[torch.Tensor] = None,
              num_data: Optional[int] = None, subsample_size: Optional[int] = None,
              subsample: Optional[torch.Tensor] = None) -> None:
        """The fixed forward process q(x_{1:T} | x_0): ``x_1 ~ N(sqrt(alpha_1) x_0,
        beta_1 I)``, ``x_t ~ N(sqrt(alpha_t) x_{t-1}, beta_t I)``. No parameters."""
        sched = self.schedule
        with data_plate(x, None, num_data, subsample_size, subsample) as idx:
            assert idx is not None  # a vectorized plate yields its indices
            u = self.to_unit(x.index_select(0, idx) if idx.shape[0] != x.shape[0] else x)
            for t in pyro.markov(range(1, self.timesteps + 1)):
                u = pyro.sample(f"x_{t}", dist.Normal(sched.alpha[t].sqrt() * u,
                                                      sched.beta[t].sqrt()).to_event(1))

    def sample_given(self, params: Dict[str, torch.Tensor], n: int,
                     c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``n`` ancestral draws (see :func:`~.diffusion_fit.ancestral`)."""
        from .diffusion_fit import ancestral

        return self.from_unit(ancestral(self, n, c, None))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.network.parameters() if p.requires_grad)

    # ------------------------------------------------------------------ engine hooks
    def init_values(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {}

    def get_config(self) -> Dict[str, Any]:
        return {"dim": self.dim, "timesteps": self.timesteps, "schedule": self.schedule_name,
                "network": self.network if self.custom else None,
                "hidden": list(self.hidden), "context_dim": self.context_dim,
                "prior_scale": self.prior_scale, "standardize": self.standardize}


__all__ = ["Diffusion", "DiffusionFit"]
