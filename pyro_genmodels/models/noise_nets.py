r"""Networks conditioned on a noise level: the default network of the diffusion family
(the noise predictor :math:`\epsilon_\theta(x_t, t)`) and of the score-based family.

The level is one scalar per row, scaled by the family to :math:`\tau \in [0, 1]` (the
diffusion time t / T; a score model's normalized log sigma) and embedded by sinusoids
(Vaswani et al. 2017, as in DDPM),

.. math::

    e(\tau) = [\sin(\omega_1 \tau), \dots, \sin(\omega_K \tau),
               \cos(\omega_1 \tau), \dots, \cos(\omega_K \tau)], \qquad
    \omega_k = \omega_\max^{(k - 1) / (K - 1)},

with geometric frequencies from 1 to :math:`\omega_\max` = 200 radians over the whole
range. The top frequency is chosen so that the embedding turns by at most 0.2 radians
between two of 1000 diffusion steps: the network is smooth in :math:`\tau`, so the
probability-flow ODE may evaluate it between the steps it was trained on.

The MLP adds a learned projection of the embedding to every hidden layer (as DDPM's
residual blocks add the time embedding), with SiLU activations:

.. math::

    h_0 = W_0 [x, c] + U_0 e(\tau), \qquad
    h_k = W_k \,\mathrm{silu}(h_{k-1}) + U_k e(\tau), \qquad
    \text{out} = W_L \,\mathrm{silu}(h_{L-1}).

**Noise levels** (shared by the score family and the noise-conditional energy):
:func:`geometric_levels` spaces L levels geometrically from sigma_max down to sigma_min;
sigma_max defaults to :func:`largest_distance`, the largest pairwise distance between
training rows (Song & Ermon 2020, technique 1: at that blur every pair of rows is
connected, so Langevin at the top level mixes between all modes); :func:`level_fraction`
maps a level to the network's input :math:`\tau = (\log\sigma - \log\sigma_\min) /
(\log\sigma_\max - \log\sigma_\min)`.

A conditional network takes ``c`` already prepared by its family (for the diffusion
family: the condition times a keep flag, then the flag, so that classifier-free guidance
can drop it).

References:
    Ho, Jain & Abbeel (2020), *Denoising Diffusion Probabilistic Models*, NeurIPS.
    Vaswani et al. (2017), *Attention Is All You Need*, NeurIPS.
    Song & Ermon (2019), *Generative Modeling by Estimating Gradients of the Data
    Distribution*, NeurIPS.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: top angular frequency of the level embedding over tau in [0, 1]
MAX_FREQUENCY = 200.0
#: rows used for the largest pairwise distance (sigma_max's default)
DISTANCE_ROWS = 5000


def geometric_levels(top: float, bottom: float, num: int) -> torch.Tensor:
    """``num`` levels from ``top`` down to ``bottom``, geometrically spaced ``(num,)``;
    ``num == 1``: ``[top]`` alone, ``bottom`` unused (the energy family's level search
    asks for one where top == bottom); ``ScoreModel`` refuses ``num_levels=1`` rather
    than drop its sigma_min."""
    if num == 1:
        return torch.tensor([float(top)])
    return torch.exp(torch.linspace(math.log(top), math.log(bottom), num))


def largest_distance(u: torch.Tensor, *, floor: float = 0.0) -> float:
    """The largest pairwise distance between rows of ``u`` ``(N, D)`` (over at most
    :data:`DISTANCE_ROWS` random rows), at least ``floor``; 1 for a single row."""
    if u.shape[0] > DISTANCE_ROWS:
        u = u[torch.randperm(u.shape[0], device=u.device)[:DISTANCE_ROWS]]
    top = float(torch.cdist(u, u).max()) if u.shape[0] > 1 else 1.0
    return max(top, floor)


def sample_levels(sigmas: torch.Tensor, b: int, like: torch.Tensor, *,
                  discrete: bool = False) -> torch.Tensor:
    """``b`` training levels ``(b,)``: log-uniform between the smallest and the largest of
    ``sigmas`` (the variance-exploding SDE's training, Song et al. 2021), or uniform among
    them (``discrete``, NCSN's)."""
    if discrete:
        return sigmas[torch.randint(len(sigmas), (b,), device=like.device)]
    lo, hi = sigmas[-1].log(), sigmas[0].log()
    return torch.exp(lo + (hi - lo) * torch.rand(b, dtype=like.dtype, device=like.device))


def level_fraction(sigma: torch.Tensor, log_range: torch.Tensor) -> torch.Tensor:
    """tau in [0, 1] for levels ``sigma`` ``(B,)``; ``log_range`` = (log sigma_min,
    log sigma_max)."""
    lo, hi = log_range[0], log_range[1]
    return (sigma.log() - lo) / (hi - lo).clamp_min(1e-12)


class LevelEmbedding(nn.Module):
    """``e(tau)``: ``(B,)`` levels in [0, 1] to ``(B, dim)`` sinusoids (``dim`` even)."""

    frequencies: torch.Tensor  # a buffer

    def __init__(self, dim: int = 64, max_frequency: float = MAX_FREQUENCY):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"Expected an even embedding width >= 2, but got {dim}")
        half = dim // 2
        freqs = torch.exp(torch.linspace(0.0, math.log(max_frequency), half))
        self.register_buffer("frequencies", freqs, persistent=False)

    def forward(self, level: torch.Tensor) -> torch.Tensor:
        """The sinusoidal embedding ``(B, dim)`` of levels ``level`` ``(B,)`` in [0, 1]."""
        angle = level.unsqueeze(-1) * self.frequencies.to(level.dtype)
        return torch.cat([angle.sin(), angle.cos()], -1)


class NoiseConditionalMLP(nn.Module):
    """``net(x, level[, c]) -> (B, out_dim)``: an MLP on ``[x, c]`` with the level
    embedding added to every hidden layer (see the module docstring).

    Args:
        dim: D, the width of ``x``.
        hidden: hidden widths (at least one).
        context_dim: width of the prepared ``c`` (0: none).
        out_dim: output width (default D: a noise prediction or a score).
        embedding_dim: width of the sinusoidal level embedding.
        max_frequency: its top angular frequency over tau in [0, 1].
    """

    def __init__(self, dim: int, hidden: Sequence[int], *, context_dim: int = 0,
                 out_dim: Optional[int] = None, embedding_dim: int = 64,
                 max_frequency: float = MAX_FREQUENCY):
        super().__init__()
        if not hidden:
            raise ValueError("Expected at least one hidden layer, but got hidden=()")
        self.embed = LevelEmbedding(embedding_dim, max_frequency)
        sizes = [dim + context_dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.levels = nn.ModuleList(nn.Linear(embedding_dim, b, bias=False) for b in hidden)
        self.out = nn.Linear(hidden[-1], out_dim or dim)

    def forward(self, x: torch.Tensor, level: torch.Tensor,
                c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The output ``(B, out_dim)`` for rows ``x`` ``(B, dim)`` at levels ``level`` ``(B,)``
        in [0, 1] (with ``c`` ``(B, context_dim)``): each hidden layer adds a projection of
        the level's embedding."""
        e = self.embed(level)
        h = x if c is None else torch.cat([x, c], -1)
        for i, (layer, lift) in enumerate(zip(self.layers, self.levels)):
            h = layer(h if i == 0 else F.silu(h)) + lift(e)
        return self.out(F.silu(h))


__all__ = ["DISTANCE_ROWS", "LevelEmbedding", "MAX_FREQUENCY", "NoiseConditionalMLP",
           "geometric_levels", "largest_distance", "level_fraction", "sample_levels"]
