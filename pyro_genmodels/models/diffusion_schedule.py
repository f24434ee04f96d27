r"""The noise schedule of a diffusion model: the forward process and every coefficient
the bound, the samplers and the probability-flow ODE read.

The forward (noising) process is a fixed Gaussian Markov chain,

.. math::

    q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{\alpha_t}\, x_{t-1}, \beta_t I), \qquad
    \alpha_t = 1 - \beta_t, \quad \bar\alpha_t = \prod_{s \le t} \alpha_s,

with the closed-form marginal and posterior (Ho et al. 2020, eqs. 4, 6, 7)

.. math::

    q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\, x_0, (1 - \bar\alpha_t) I),
    \qquad
    q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I), \quad
    \tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t} \beta_t .

Schedules: ``"linear"`` (Ho et al.: beta from 1e-4 to 0.02 over 1000 steps, scaled by
1000 / T for other T, as Nichol & Dhariwal do; capped at 0.999, which the last beta
reaches for T <= 20) and ``"cosine"`` (Nichol & Dhariwal
2021: :math:`\bar\alpha(\tau) = f(\tau) / f(0)`, :math:`f(\tau) = \cos^2(\frac{\tau +
s}{1 + s} \frac\pi2)`, s = 0.008, :math:`\bar\alpha_t = \bar\alpha(t / T)`, beta clipped
at 0.999).

The reverse model's variance is fixed: :math:`\sigma_t^2 = \tilde\beta_t` for t >= 2 (so
the bound's KL terms are exact squared errors) and :math:`\sigma_1^2 = \beta_1` for the
Gaussian decoder of the last step (:math:`\tilde\beta_1 = 0`).

**Continuous time.** The probability-flow ODE and DDIM see the process through
:math:`\sigma_t = \sqrt{(1 - \bar\alpha_t) / \bar\alpha_t}`, the noise-to-signal ratio of
:math:`y_t = x_t / \sqrt{\bar\alpha_t} = x_0 + \sigma_t \epsilon` (Song, Meng & Ermon
2021; Karras et al. 2022). :meth:`Schedule.time_of` maps any sigma back to a fractional
step t in [0, T], linear in :math:`\log \sigma^2` between steps (and in
:math:`\sigma^2` on [0, 1], where :math:`\sigma^2 \approx t \beta_1`), which is where the
network is then evaluated.

All coefficients are computed in float64 and kept there as master copies: a buffer is
always the master rounded once to the buffer's current dtype (the default dtype when
built; :meth:`Schedule._apply` redoes the rounding whenever the module is moved or
cast), so ``model.double()`` gets the float64 values, not float32 ones widened.

References:
    Ho, Jain & Abbeel (2020), *Denoising Diffusion Probabilistic Models*, NeurIPS.
    Nichol & Dhariwal (2021), *Improved Denoising Diffusion Probabilistic Models*, ICML.
    Song, Meng & Ermon (2021), *Denoising Diffusion Implicit Models*, ICLR.
"""

from __future__ import annotations

import math
from typing import Callable, Tuple

import torch
from torch import nn

SCHEDULES = ("linear", "cosine")


def betas(kind: str, timesteps: int) -> torch.Tensor:
    """beta_1..beta_T in float64, shape ``(T,)``."""
    T = timesteps
    if kind == "linear":
        scale = 1000.0 / T
        return torch.linspace(scale * 1e-4, min(scale * 0.02, 0.999), T, dtype=torch.float64)
    s = 0.008
    tau = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((tau + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)


class Schedule(nn.Module):
    """The coefficients of a schedule as buffers indexed by the step t = 0..T (entry 0 is
    x_0's: alpha_bar_0 = 1, beta_0 = 0), so they follow the model's device and dtype.

    Buffers (each ``(T + 1,)``): ``beta``, ``alpha``, ``abar``, ``sqrt_abar``,
    ``sqrt_1m_abar`` (sqrt(1 - abar)), ``var`` (sigma_t^2 of the reverse step),
    ``weight`` (the bound's weight w_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t))),
    ``sigma`` (sqrt((1 - abar) / abar)) and ``log_sigma2``.
    """

    beta: torch.Tensor
    alpha: torch.Tensor
    abar: torch.Tensor
    sqrt_abar: torch.Tensor
    sqrt_1m_abar: torch.Tensor
    var: torch.Tensor
    weight: torch.Tensor
    sigma: torch.Tensor
    log_sigma2: torch.Tensor

    def __init__(self, kind: str, timesteps: int) -> None:
        super().__init__()
        self.kind, self.timesteps = kind, timesteps
        beta = torch.cat([torch.zeros(1, dtype=torch.float64), betas(kind, timesteps)])
        alpha = 1 - beta
        abar = torch.cumprod(alpha, 0)
        one_m_abar = -torch.expm1(torch.cumsum(torch.log1p(-beta), 0))  # 1 - abar, accurate
        var = beta.clone()
        var[2:] = one_m_abar[1:-1] / one_m_abar[2:] * beta[2:]
        weight = torch.zeros_like(beta)
        weight[1:] = beta[1:] ** 2 / (2 * var[1:] * alpha[1:] * one_m_abar[1:])
        sigma2 = one_m_abar / abar
        values = {"beta": beta, "alpha": alpha, "abar": abar, "sqrt_abar": abar.sqrt(),
                  "sqrt_1m_abar": one_m_abar.sqrt(), "var": var, "weight": weight,
                  "sigma": sigma2.sqrt(), "log_sigma2": sigma2.clamp_min(1e-300).log()}
        self._master = values
        for name, v in values.items():
            self.register_buffer(name, v.to(torch.get_default_dtype()), persistent=False)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor],
               recurse: bool = True) -> Schedule:
        super()._apply(fn, recurse)
        for name, master in self._master.items():
            now = getattr(self, name)
            setattr(self, name, master.to(device=now.device, dtype=now.dtype))
        return self

    def forward_mean_sd(self, x0: torch.Tensor, t: torch.Tensor
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(sqrt(abar_t) x0, sqrt(1 - abar_t))`` of q(x_t | x_0) for steps ``t`` ``(B,)``
        (integer) and rows ``x0`` ``(B, D)``: the mean ``(B, D)`` and the sd ``(B, 1)``."""
        return self.sqrt_abar[t].unsqueeze(-1) * x0, self.sqrt_1m_abar[t].unsqueeze(-1)

    def reverse_mean(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor
                     ) -> torch.Tensor:
        r""":math:`\mu_\theta = (x_t - \beta_t / \sqrt{1 - \bar\alpha_t}\,\epsilon) /
        \sqrt{\alpha_t}` for the predicted noise ``eps`` ``(B, D)`` at steps ``t``
        ``(B,)``."""
        b = (self.beta[t] / self.sqrt_1m_abar[t]).unsqueeze(-1)
        return (x_t - b * eps) / self.alpha[t].sqrt().unsqueeze(-1)

    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        r"""KL(q(x_T | x_0) || N(0, I)) per row ``(B,)``:
        :math:`\frac12 \sum_d [\bar\alpha_T x_{0d}^2 + (1 - \bar\alpha_T) - 1
        - \log(1 - \bar\alpha_T)]`."""
        T = self.timesteps
        abar, v = self.abar[T], self.sqrt_1m_abar[T] ** 2
        return 0.5 * (abar * x0.pow(2) + v - 1 - torch.log(v)).sum(-1)

    def decoder_constant(self, dim: int) -> torch.Tensor:
        """``D/2 log(2 pi sigma_1^2)``: the t = 1 term's part that has no network in it."""
        return 0.5 * dim * torch.log(2 * math.pi * self.var[1])

    def time_of(self, sigma: torch.Tensor) -> torch.Tensor:
        """The fractional step t in [0, T] at which sigma_t = ``sigma`` (any shape):
        linear in sigma^2 on [0, 1], linear in log sigma^2 between later steps, clamped
        at T."""
        T = self.timesteps
        s2 = sigma.to(self.log_sigma2.dtype) ** 2
        first = s2 / self.sigma[1] ** 2
        grid = self.log_sigma2[1:]  # increasing in t = 1..T
        ls = s2.clamp_min(1e-300).log().clamp(max=float(grid[-1]))
        i = torch.searchsorted(grid, ls.reshape(-1).contiguous()).reshape(ls.shape)
        i = i.clamp(1, T - 1) if T > 1 else torch.zeros_like(i)
        if T > 1:
            lo, hi = grid[i - 1], grid[i]
            later = i + (ls - lo) / (hi - lo)  # t of grid[i - 1] is i
        else:
            later = torch.ones_like(ls)
        return torch.where(first <= 1, first, later).clamp(0, T).to(sigma.dtype)

    def sigma_of(self, t: torch.Tensor) -> torch.Tensor:
        """sigma at fractional steps ``t`` in [0, T] (any shape): the inverse of
        :meth:`time_of`, exact at integer steps."""
        T = self.timesteps
        tt = t.to(self.log_sigma2.dtype).clamp(0, T)
        first = tt * self.sigma[1] ** 2
        i = tt.floor().long().clamp(1, max(T - 1, 1))
        frac = tt - i
        hi = self.log_sigma2[(i + 1).clamp(max=T)]
        later = torch.exp(self.log_sigma2[i] + frac * (hi - self.log_sigma2[i]))
        return torch.where(tt <= 1, first, later).sqrt().to(t.dtype)


__all__ = ["SCHEDULES", "Schedule", "betas"]
