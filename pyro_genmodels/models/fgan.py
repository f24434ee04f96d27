r"""The f-GAN table: each f-divergence with its critic's output activation and its
Fenchel conjugate (Nowozin, Cseke & Tomioka 2016, Table 2 and Table 6).

For convex :math:`f` with :math:`f(1) = 0`, the f-divergence of the data :math:`P`
from the generator :math:`Q` has the variational lower bound

.. math::

    D_f(P \,\|\, Q) = \int q(x)\, f\!\left(\frac{p(x)}{q(x)}\right) dx
      \;\ge\; \sup_T\; \mathbb E_{x \sim P}[T(x)] - \mathbb E_{x \sim Q}[f^*(T(x))],
    \qquad f^*(t) = \sup_u\, \{ u t - f(u) \},

with equality at :math:`T^*(x) = f'(p(x) / q(x))`. The critic is
:math:`T(x) = g_f(V(x))`: a network :math:`V` with any real output, composed with the
output activation :math:`g_f`, which maps the reals into the domain of :math:`f^*`.

==============  ==================================  =====================  ===================
``divergence``  f(u)                                g_f(v)                 f*(t)
==============  ==================================  =====================  ===================
``kl``          u log u                             v                      exp(t - 1)
``reverse_kl``  -log u                              -exp(-v)               -1 - log(-t)
``pearson``     (u - 1)^2                           v                      t^2 / 4 + t
``hellinger``   (sqrt(u) - 1)^2                     1 - exp(-v)            t / (1 - t)
``js``          u log u - (u + 1) log((u + 1) / 2)  log 2 - log(1 + e^-v)  -log(2 - exp(t))
``gan``         u log u - (u + 1) log(u + 1)        -log(1 + e^-v)         -log(1 - exp(t))
``tv``          abs(u - 1) / 2                      tanh(v) / 2            t
==============  ==================================  =====================  ===================

The table's ``js`` is twice the Jensen-Shannon divergence, its ``hellinger`` twice the
squared Hellinger distance, and ``gan`` is :math:`2\,\mathrm{JS} - \log 4` (Goodfellow et
al. 2014). Training uses the table as printed; the bound a fit *reports*
(:meth:`~pyro_genmodels.models.gan.GANFit.divergence_bound`) is mapped to the scale of
:mod:`pyro_genmodels.divergences` (``js`` in [0, log 2], ``hellinger`` = H^2 in [0, 1];
``gan`` reported as JS), by the affine map ``(bound + offset) / scale`` below, which
keeps a lower bound a lower bound.

The terms the losses need are written in stable closed form: :math:`f^*(g_f(v))` is
``conjugate_of_output(v)`` (e.g. ``softplus(v)`` for ``gan``), never ``log(1 - exp(...))``.

References:
    Nowozin, Cseke & Tomioka (2016), *f-GAN: Training Generative Neural Samplers using
    Variational Divergence Minimization*, NeurIPS.
    Goodfellow et al. (2014), *Generative Adversarial Nets*, NeurIPS.
    Nguyen, Wainwright & Jordan (2010), *Estimating divergence functionals and the
    likelihood ratio by convex risk minimization*, IEEE Trans. Inf. Theory.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F

LOG2 = math.log(2.0)
Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class FDivergence:
    """One row of the f-GAN table.

    Attributes:
        name: the ``divergence=`` value.
        f: the generator function :math:`f(u)`, ``u > 0``.
        f_prime: :math:`f'(u)`; the optimal critic is :math:`T^* = f'(p/q)`.
        activation: :math:`g_f(v)`, the critic's output activation.
        conjugate: :math:`f^*(t)` on its domain.
        conjugate_of_output: :math:`f^*(g_f(v))`, in stable form.
        scale, offset: the reported divergence is ``(D_f + offset) / scale`` (the scale of
            :mod:`pyro_genmodels.divergences`).
        reported_as: the name of the reported divergence in
            :func:`pyro_genmodels.divergences.f_divergence`.
        non_saturating: the default of the generator's non-saturating loss.
    """

    name: str
    f: Fn
    f_prime: Fn
    activation: Fn
    conjugate: Fn
    conjugate_of_output: Fn
    scale: float = 1.0
    offset: float = 0.0
    reported_as: str = ""
    non_saturating: bool = False

    def critic_objective(self, v_data: torch.Tensor, v_gen: torch.Tensor) -> torch.Tensor:
        r"""The bound's value
        :math:`\mathrm{mean}\, g_f(V(x)) - \mathrm{mean}\, f^*(g_f(V(\tilde x)))` from the critic's raw outputs on data ``(B,)`` and generated points ``(B',)``."""
        return self.activation(v_data).mean() - self.conjugate_of_output(v_gen).mean()

    def generator_loss(self, v_gen: torch.Tensor, non_saturating: bool) -> torch.Tensor:
        r"""What the generator minimizes: :math:`\mathrm{mean}\, f^*(g_f(V(G(z))))` with
        a minus sign (the saddle point), or, non-saturating (f-GAN section 3.2),
        :math:`-\mathrm{mean}\, g_f(V(G(z)))`, which has the same fixed point and strong
        gradients while the critic wins (for ``gan``: maximize log D(G(z)))."""
        if non_saturating:
            return -self.activation(v_gen).mean()
        return self.conjugate_of_output(v_gen).mean().neg()

    def report(self, value: float) -> float:
        """A value of the table's D_f on the scale of :mod:`pyro_genmodels.divergences`."""
        return (value + self.offset) / self.scale


def _xlogx(u: torch.Tensor) -> torch.Tensor:
    return torch.where(u == 0, torch.zeros_like(u), u * torch.log(u))


TABLE: Dict[str, FDivergence] = {d.name: d for d in (
    FDivergence("kl", f=_xlogx, f_prime=lambda u: 1 + torch.log(u),
                activation=lambda v: v, conjugate=lambda t: torch.exp(t - 1),
                conjugate_of_output=lambda v: torch.exp(v - 1), reported_as="kl"),
    FDivergence("reverse_kl", f=lambda u: -torch.log(u), f_prime=lambda u: -1 / u,
                activation=lambda v: -torch.exp(-v),
                conjugate=lambda t: -1 - torch.log(-t),
                conjugate_of_output=lambda v: v - 1, reported_as="reverse_kl"),
    FDivergence("pearson", f=lambda u: (u - 1) ** 2, f_prime=lambda u: 2 * (u - 1),
                activation=lambda v: v, conjugate=lambda t: t**2 / 4 + t,
                conjugate_of_output=lambda v: v**2 / 4 + v, reported_as="pearson"),
    FDivergence("hellinger", f=lambda u: (u.sqrt() - 1) ** 2,
                f_prime=lambda u: 1 - 1 / u.sqrt(),
                activation=lambda v: -torch.expm1(-v), conjugate=lambda t: t / (1 - t),
                conjugate_of_output=torch.expm1, scale=2.0, reported_as="hellinger"),
    FDivergence("js", f=lambda u: _xlogx(u) - (u + 1) * torch.log((u + 1) / 2),
                f_prime=lambda u: torch.log(2 * u / (u + 1)),
                activation=lambda v: LOG2 - F.softplus(-v),
                conjugate=lambda t: -torch.log(2 - torch.exp(t)),
                conjugate_of_output=lambda v: F.softplus(v) - LOG2, scale=2.0,
                reported_as="js", non_saturating=True),
    FDivergence("gan", f=lambda u: _xlogx(u) - (u + 1) * torch.log(u + 1),
                f_prime=lambda u: torch.log(u / (u + 1)),
                activation=lambda v: -F.softplus(-v),
                conjugate=lambda t: -torch.log(-torch.expm1(t)),
                conjugate_of_output=F.softplus, scale=2.0, offset=math.log(4.0),
                reported_as="js", non_saturating=True),
    FDivergence("tv", f=lambda u: 0.5 * (u - 1).abs(), f_prime=lambda u: 0.5 * torch.sign(u - 1),
                activation=lambda v: 0.5 * torch.tanh(v), conjugate=lambda t: t,
                conjugate_of_output=lambda v: 0.5 * torch.tanh(v), reported_as="tv"),
)}

#: the ``divergence=`` values; the f-GAN table and WGAN-GP's ``"wasserstein"``
DIVERGENCES = tuple(TABLE) + ("wasserstein",)


def gradient_penalty(critic: Callable[..., torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, context: Optional[torch.Tensor] = None
                     ) -> torch.Tensor:
    r"""WGAN-GP's penalty :math:`\mathbb E\,(\|\nabla_{\hat x} V(\hat x)\|_2 - 1)^2` at
    :math:`\hat x = \epsilon x + (1 - \epsilon) \tilde x`, :math:`\epsilon \sim U(0, 1)`
    per row (Gulrajani et al. 2017, Algorithm 1). ``real``, ``fake``: ``(B, D)``."""
    eps = torch.rand(real.shape[0], 1, dtype=real.dtype, device=real.device)
    mid = (eps * real + (1 - eps) * fake).requires_grad_(True)
    out = critic(mid) if context is None else critic(mid, context)
    (grad,) = torch.autograd.grad(out.sum(), mid, create_graph=True)
    return (grad.norm(dim=-1) - 1).pow(2).mean()


__all__ = ["DIVERGENCES", "FDivergence", "TABLE", "gradient_penalty"]
