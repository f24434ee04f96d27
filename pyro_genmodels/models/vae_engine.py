r"""The VAE's ``mle`` / ``map`` engine: the decoder and encoder trained together by the one
loop on the ELBO (the encoder is the model's ``local_guide``; there are no global latent
sites, the decoder weights are phi).

The objective is the negative ELBO with the analytic KL of the Gaussian encoder to the
N(0, I) prior (Kingma & Welling 2014, eq. 10: the same expectation as the sampled KL, with
less variance), for a minibatch of B of the N rows and K draws of z per row,

.. math::

    L = -\frac NB \sum_{i \in B} \Big[\frac1K \sum_k \log p_\phi(x_i \mid z_{ik})
        - \mathrm{KL}(q_\psi(z \mid x_i) \,\|\, \mathcal N(0, I))\Big]
        \;[-\, \log p(\phi) \text{ for map}],

exactly what Pyro's ``TraceMeanField_ELBO`` computes on ``model.model`` and
``model.local_guide`` (the tests hold the two to the same value and gradient for the same
draws). By default (``jit=None``) it is written out in PyTorch (:class:`NegativeELBO`):
Pyro's tracing of the program costs about a quarter of a small VAE's step on CPU.
``jit=True`` / ``False`` run Pyro's ``TraceMeanField_ELBO`` on the program itself,
compiled or eager. The held-out loss is the cheap one-draw negative ELBO per row.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, cast

import pyro
import torch

from .._validation import store_counts
from ..infer.engines import Data, PointEngine, PointOptions, fingerprint
from ..infer.loop import Batch, FitResult, Player, optimize
from ..infer.objectives import DifferentiableELBO, make_elbo

if TYPE_CHECKING:  # vae.py imports this module (for its engine), not the reverse
    from .vae import VAE

@dataclasses.dataclass(frozen=True, kw_only=True)
class VAEOptions(PointOptions):
    """:class:`~pyro_genmodels.infer.engines.PointOptions` with the VAE's defaults, plus

    Attributes:
        num_particles: draws of z per row in each ELBO estimate (vectorized).
        jit: how the ELBO is evaluated: ``None`` (default) the closed form in PyTorch
            (:class:`NegativeELBO`); ``True`` Pyro's compiled ``JitTraceMeanField_ELBO``
            on the program (custom networks must then have no data-dependent control
            flow); ``False`` Pyro's eager ``TraceMeanField_ELBO``.
    """

    num_steps: int = 5000
    lr: float = 1e-3
    lr_decay: float = 0.1
    batch_size: Optional[int] = 128
    num_particles: int = 1

    def __post_init__(self):
        super().__post_init__()
        store_counts(self, "num_particles")


class VAEEngine(PointEngine):
    """Maximum likelihood (of the ELBO) for the decoder weights (``mle``), or with the
    Gaussian prior on them, i.e. L2 weight decay (``map``)."""

    Options = VAEOptions

    def elbo(self, model: VAE, opts: PointOptions) -> DifferentiableELBO:
        """Pyro's ELBO on the program (``jit=True`` / ``False``)."""
        num_particles = cast(VAEOptions, opts).num_particles  # this engine's Options
        extra: Dict[str, Any] = {"num_particles": num_particles}
        if num_particles > 1:
            extra["vectorize_particles"] = True
        return make_elbo("TraceMeanField_ELBO", jit=bool(opts.jit),
                         max_plate_nesting=model.max_plate_nesting, **extra)

    def heldout(self, model: VAE,
                point: Optional[Callable[[], Dict[str, torch.Tensor]]], data: Data
                ) -> Optional[Callable[[], float]]:
        x_val = data.x_val
        if x_val is None:
            return None

        def loss() -> float:  # minus the ELBO per held-out row, one draw under seed 0
            model.eval()  # a network's dropout off, as the fit scores
            try:
                return -float(model.elbo_estimate(x_val, data.c_val).mean())
            finally:
                model.train()

        return loss

    def run(self, model: VAE, data: Data, opts: PointOptions, *, method: str,
            progress: bool) -> FitResult:
        num_particles = cast(VAEOptions, opts).num_particles  # this engine's Options
        # networks of the user's own may have dropout or batch norm: training mode while
        # training, evaluation mode for the fit (decode, sample and log_prob were random)
        model.train()
        try:
            if opts.jit is not None:
                result = super().run(model, data, opts, method=method, progress=progress)
            else:
                pyro.module("decoder", model.generative)  # in the fit's param store (a
                pyro.module("encoder", model.encoder)     # PyroOptim looks them up there)
                loss = NegativeELBO(model, self.method, num_particles)
                params = list(model.generative.parameters()) + list(model.encoder.parameters())
                result = optimize([Player(loss, params)], data.source(), data.c, opts,
                                  heldout=self.heldout(model, None, data), progress=progress,
                                  desc=method,
                                  fingerprint=fingerprint(model, method, data, opts))
                result.point = {}
        finally:
            model.eval()
        n = data.num_rows
        result.info.update(batch_size=n if opts.batch_size is None else min(opts.batch_size, n),
                           jit=opts.jit is True,
                           elbo="closed_form" if opts.jit is None else "pyro")
        return result


class NegativeELBO:
    """The VAE's negative ELBO on a minibatch, in closed form (see the module docstring):
    the loop objective of ``jit=None``."""

    def __init__(self, model, method: str, num_particles: int):
        self.model, self.map, self.k = model, method == "map", num_particles
        self.latent = model.latent_dim

    def __call__(self, batch: Batch) -> torch.Tensor:
        x = batch.x
        shape = (x.shape[0], self.latent) if self.k == 1 else (self.k, x.shape[0], self.latent)
        eps = torch.randn(shape, dtype=x.dtype, device=x.device)
        return self.given_noise(x, batch.c, eps, batch.num_rows)

    def given_noise(self, x: torch.Tensor, c, eps: torch.Tensor, num_rows: int) -> torch.Tensor:
        """The loss for the rows ``x`` ``(B, D)`` of ``num_rows`` and standard normal
        draws ``eps`` (``(B, L)``, or ``(K, B, L)``): ``z = loc + scale * eps``."""
        model = self.model
        loc, scale = model.posterior(x, c)
        ll = model.log_likelihood(model.decoder_output(loc + scale * eps, c), x)
        if self.k > 1:
            ll = ll.mean(0)
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum(-1) - scale.log().sum(-1)
        loss = (kl - ll).sum() * (num_rows / x.shape[0])
        return loss - model.weight_log_prior() if self.map else loss


__all__ = ["NegativeELBO", "VAEEngine", "VAEOptions"]
