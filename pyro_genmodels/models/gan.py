r"""Generative adversarial networks as f-divergence minimization (f-GAN, WGAN-GP).

The generator is a deterministic map of a Gaussian code, written as a Pyro program:

.. math::

    z \sim \mathcal N(0, I_L), \qquad x = G_\phi(z)\ \ (\text{or } G_\phi(z, c)),

so sampling is one forward pass, and there is no density: :math:`p_\phi(x)` lives on
the image of :math:`G_\phi` and ``log_prob`` is not defined (``capabilities.log_prob ==
"none"``). The model is fitted instead by minimizing an f-divergence
:math:`D_f(p_\text{data} \,\|\, p_\phi)` through its variational lower bound, a saddle
point over the generator and a critic :math:`T_\omega = g_f(V_\omega)`
(Nowozin, Cseke & Tomioka 2016):

.. math::

    \min_\phi \max_\omega\;
      \mathbb E_{x \sim p_\text{data}}[g_f(V_\omega(x))]
      - \mathbb E_{z}[f^*(g_f(V_\omega(G_\phi(z))))],

see :mod:`~pyro_genmodels.models.fgan` for the table of f, g_f and f*. With
``divergence="wasserstein"`` the critic is a 1-Lipschitz function (softly, by the
gradient penalty) and the game minimizes the Wasserstein-1 distance (WGAN-GP).

Evaluation goes through samples: :mod:`pyro_genmodels.metrics` (MMD, energy distance,
C2ST, mode coverage), ``pgm.compare``'s sample-based columns, and the fit's own
:meth:`GANFit.divergence_bound`, the critic's lower bound on held-out data.

References:
    Goodfellow et al. (2014), *Generative Adversarial Nets*, NeurIPS.
    Nowozin, Cseke & Tomioka (2016), *f-GAN*, NeurIPS.
    Gulrajani, Ahmed, Arjovsky, Dumoulin & Courville (2017), *Improved Training of
    Wasserstein GANs*, NeurIPS.
    Mirza & Osindero (2014), *Conditional Generative Adversarial Nets*, arXiv:1411.1784.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from .._rng import seeded
from .._validation import check_choice, positive_int
from .._context import StandardizedContext
from ..base import Capabilities, GenerativeModel, register
from ..infer.objectives import data_plate, plate_rows
from ..fit import Fit
from ..mc import MCEstimate
from ._checks import check_network, hidden_widths
from .fgan import DIVERGENCES, TABLE
from .gan_engine import AdversarialEngine


def _mlp(sizes: Sequence[int], activation: type) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class _LeakyReLU(nn.LeakyReLU):
    def __init__(self):
        super().__init__(0.2)


class GANFit(Fit):
    """A fitted :class:`GAN`: ``sample`` is one generator pass; there is no density
    (``log_prob`` raises), and the critic gives :meth:`divergence_bound`."""

    @torch.no_grad()
    def critic(self, x: Any, *, c: Any = None) -> torch.Tensor:
        r"""The critic's output :math:`T(x) = g_f(V(x))` per row ``(N,)`` (for
        ``wasserstein``: :math:`V(x)`). At the optimum of the bound,
        :math:`T^* = f'(p_\text{data}(x) / p_\phi(x))`."""
        x = self._as_input(x)
        c = self._as_context(c, x.shape[0])
        v = self.model.critic_raw(self.model.to_unit(x), c)
        div = TABLE.get(self.model.divergence)
        return v if div is None else div.activation(v)

    @torch.no_grad()
    def divergence_bound(self, x: Any, *, c: Any = None, num_samples: Optional[int] = None,
                         seed: Optional[int] = 0) -> MCEstimate:
        r"""The critic's variational lower bound of :math:`D_f(p_\text{data} \| p_\phi)`
        on held-out rows ``x`` ``(N, dim)`` (and their ``c``), with its standard error:

        .. math::

            \hat D = \frac1N \sum_i T(x_i) - \frac1M \sum_j f^*(T(\tilde x_j)),
            \qquad \mathrm{se}^2 = \frac{s_T^2}{N} + \frac{s_{f^*}^2}{M},

        :math:`\tilde x_j` the generator's draws (``num_samples`` M, default N; for a
        conditional model one per row of ``c``, cycled). For any critic the expectation
        is at most the divergence, so on held-out data it is a lower bound in
        expectation (on the training rows the critic may have overfitted). It is
        reported on the scale of :mod:`pyro_genmodels.divergences` (``js`` in
        [0, log 2], ``hellinger`` = H^2, ``gan`` as JS). For ``wasserstein`` it is the
        critic's estimate of W1 in the networks' units, a lower bound only as far as the
        critic is 1-Lipschitz there (the gradient penalty enforces it softly). With
        ``standardize`` (the default) that is W1 under the distance
        :math:`\|(x - y) / s\|_2`, each column in its training sd ``s``: the same number
        whatever units the columns come in, not W1 in the data's own units (the
        f-divergences do not depend on the units at all).
        """
        x = self._as_input(x)
        c = self._as_context(c, x.shape[0])
        m = x.shape[0] if num_samples is None else positive_int(num_samples, "num_samples")
        cg = None if c is None else c[torch.arange(m, device=c.device) % c.shape[0]]
        with seeded(seed):
            fake = self.model.generate_unit(self.model.draw_codes(m), cg)
        v_real = self.model.critic_raw(self.model.to_unit(x), c).double()
        v_fake = self.model.critic_raw(fake, cg).double()
        name = self.model.divergence
        if name == "wasserstein":
            a, b, div = v_real, v_fake, None
        else:
            div = TABLE[name]
            a, b = div.activation(v_real), div.conjugate_of_output(v_fake)
        est = a.mean() - b.mean()
        var = (a.var() / a.numel() if a.numel() > 1 else torch.tensor(math.nan)) + (
            b.var() / b.numel() if b.numel() > 1 else torch.tensor(math.nan))
        scale = 1.0 if div is None else div.scale
        value = float(est) if div is None else div.report(float(est))
        return MCEstimate(value, float(var.sqrt()) / scale, int(x.shape[0] + m))


@register
class GAN(StandardizedContext, GenerativeModel):
    r"""A generator :math:`x = G(z)`, :math:`z \sim N(0, I)` (or :math:`G(z, c)`),
    fitted by an f-divergence's variational bound (f-GAN) or by WGAN-GP.

    Args:
        dim: D, the number of columns of the data.
        latent_dim: L, the width of the code z.
        divergence: ``"kl"``, ``"reverse_kl"``, ``"js"``, ``"pearson"``, ``"hellinger"``,
            ``"tv"``, ``"gan"`` (the f-GAN table, :mod:`~pyro_genmodels.models.fgan`) or
            ``"wasserstein"`` (WGAN-GP).
        hidden: hidden layer sizes of the default generator and critic MLPs (ReLU in the
            generator, LeakyReLU(0.2) in the critic, no normalization layers: WGAN-GP's
            penalty is per sample): a sequence of positive ints, or one int for a single
            layer.
        generator: your own ``nn.Module``, ``generator(z) -> (B, D)`` or, conditional,
            ``generator(z, c)`` (``c`` ``(B, context_dim)``); its output, and the ``c``
            it reads, in standardized units when ``standardize``.
        critic: your own ``nn.Module``, ``critic(x) -> (B,)`` or ``(B, 1)`` (raw output
            V, before g_f), or ``critic(x, c)``. Custom networks are called once on a
            small batch here, so that a wrong signature or output shape fails at
            construction.
        context_dim: width of the conditioning variable ``c`` (``None``: unconditional).
            The default networks take ``[z, c]`` and ``[x, c]`` (Mirza & Osindero 2014).
        standardize: the networks work on standardized columns ``u = (x - m) / s`` (m, s
            of the training rows, fixed when the fit starts), so raw columns train as
            well as standardized ones, and a context ``c`` is standardized by its own
            training moments; ``False`` uses ``x`` and ``c`` themselves.

    Sample sites: ``z`` ``(N, L)`` and the deterministic ``x`` ``(N, D)`` in the plate
    ``data``; there is no observed site (no likelihood).

    Example:
        >>> import pyro_genmodels as pgm
        >>> x = pgm.datasets.toy("eight_gaussians").sample((512,))
        >>> fit = pgm.GAN(2, hidden=(32, 32)).fit(x, method="adversarial", num_steps=20,
        ...                                       seed=0, progress=False)
        >>> fit.sample(5, seed=0).shape
        torch.Size([5, 2])
    """

    registry_name = "gan"
    capabilities = Capabilities(log_prob="none", sampling="direct", methods=("adversarial",),
                                conditional=True)
    global_sites = ()
    fit_class = GANFit
    #: why ``fit.log_prob`` raises
    no_density = ("A GAN has no density (capabilities.log_prob == 'none'): its samples lie "
                  "on the image of the generator. Score it by samples instead: "
                  "pyro_genmodels.metrics (mmd, energy_distance, c2st, mode_coverage), "
                  "pgm.compare's sample-based columns, or fit.divergence_bound(heldout); "
                  "or fit a family with a likelihood (Flow, VAE).")
    engines = {"adversarial": AdversarialEngine()}

    def __init__(self, dim: int, *, latent_dim: int = 8, divergence: str = "js",
                 hidden: Sequence[int] = (128, 128), generator: Optional[nn.Module] = None,
                 critic: Optional[nn.Module] = None, context_dim: Optional[int] = None,
                 standardize: bool = True) -> None:
        super().__init__(dim)
        self.latent_dim = positive_int(latent_dim, "latent_dim")
        self.divergence = check_choice(divergence, DIVERGENCES, "divergence")
        self.hidden = hidden_widths(hidden)
        if not self.hidden and (generator is None or critic is None):
            raise ValueError("Expected at least one hidden layer, but got hidden=()")
        self.context_dim = None if context_dim is None else positive_int(context_dim,
                                                                          "context_dim")
        if not isinstance(standardize, bool):
            raise TypeError(f"Expected standardize to be a bool, but got {standardize!r}")
        self.standardize = standardize
        for name, net in (("generator", generator), ("critic", critic)):
            if net is not None and not isinstance(net, nn.Module):
                raise TypeError(f"Expected {name} to be a torch.nn.Module, but got "
                                f"{type(net).__name__}")
        c = [] if self.context_dim is None else [("c", self.context_dim, 0.0)]
        if generator is not None:
            check_network(generator, "generator", [("z", self.latent_dim, 0.0), *c],
                          [self.dim])
        if critic is not None:
            check_network(critic, "critic", [("x", self.dim, 0.0), *c], [None, 1])
        self.custom = {"generator": generator is not None, "critic": critic is not None}
        k = self.context_dim or 0
        self.generator = generator if generator is not None else _mlp(
            [self.latent_dim + k, *self.hidden, self.dim], nn.ReLU)
        self.critic = critic if critic is not None else _mlp(
            [self.dim + k, *self.hidden, 1], _LeakyReLU)
        self.register_buffer("shift", torch.zeros(self.dim))
        self.register_buffer("x_scale", torch.ones(self.dim))
        self.standardize_context()

    # ------------------------------------------------------------------ the networks
    def draw_codes(self, n: int) -> torch.Tensor:
        """``n`` codes z ~ N(0, I_L): ``(n, L)``."""
        return torch.randn(n, self.latent_dim, **self._factory)

    def generate_unit(self, z: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The generator's output in the networks' (standardized) units: ``(B, D)``; ``c``
        in the data's units."""
        c = self.context_unit(c)
        if c is None:
            return self.generator(z)
        if self.custom["generator"]:
            return self.generator(z, c)
        return self.generator(torch.cat([z, c], -1))

    def critic_raw(self, u: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The critic's raw output V ``(B,)`` at points ``u`` in the networks' units (``c``
        in the data's)."""
        c = self.context_unit(c)
        if c is None:
            out = self.critic(u)
        elif self.custom["critic"]:
            out = self.critic(u, c)
        else:
            out = self.critic(torch.cat([u, c], -1))
        return out.squeeze(-1) if out.dim() == 2 and out.shape[-1] == 1 else out

    # ------------------------------------------------------------------ the Pyro program
    def model(self, x: Optional[torch.Tensor] = None, *, c: Optional[torch.Tensor] = None,
              num_data: Optional[int] = None, subsample_size: Optional[int] = None,
              subsample: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``z ~ N(0, I)`` and ``x = G(z[, c])`` (deterministic) for each row; ``x`` only
        sets the number of rows (a GAN has no likelihood to observe it by)."""
        if any(p.requires_grad for p in self.generator.parameters()):
            # a frozen generator (the critic alone: docs/gan.md) has nothing to register,
            # and Pyro would warn of each of its weights in every fit
            pyro.module("generator", self.generator)
        plate = data_plate(x, c, num_data, subsample_size, subsample)
        with plate as idx:
            assert idx is not None  # a vectorized plate yields its indices
            ctx = plate_rows(c, idx, plate.size)
            zeros = torch.zeros(idx.shape[0], self.latent_dim, **self._factory)
            z = pyro.sample("z", dist.Normal(zeros, 1.0).to_event(1))
            return pyro.deterministic("x", self.from_unit(self.generate_unit(z, ctx)),
                                      event_dim=1)

    def sample_given(self, params: Dict[str, torch.Tensor], n: int,
                     c: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.from_unit(self.generate_unit(self.draw_codes(n), c))

    def log_prob_given(self, params: Dict[str, torch.Tensor], x: torch.Tensor,
                       c: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError(self.no_density)

    def num_params(self) -> int:
        """Free scalars of the generator (the critic is the fit's tool, not part of p)."""
        return sum(p.numel() for p in self.generator.parameters() if p.requires_grad)

    # ------------------------------------------------------------------ engine hooks
    def init_values(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {}

    def get_config(self) -> Dict[str, Any]:
        return {"dim": self.dim, "latent_dim": self.latent_dim, "divergence": self.divergence,
                "hidden": list(self.hidden),
                "generator": self.generator if self.custom["generator"] else None,
                "critic": self.critic if self.custom["critic"] else None,
                "context_dim": self.context_dim, "standardize": self.standardize}


__all__ = ["GAN", "GANFit"]
