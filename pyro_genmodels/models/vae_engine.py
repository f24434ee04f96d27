"""The VAE's ``mle`` / ``map`` engine: the shared point engine with the VAE's defaults.

The decoder and the encoder are trained together by the one loop on the ELBO (the
encoder is the model's ``local_guide``; there are no global latent sites, the decoder
weights are phi). What differs from the shared :class:`~pyro_genmodels.infer.engines.
PointEngine` is small and stated here: network-sized defaults; the ELBO with the
analytic KL of the Gaussian encoder to the N(0, I) prior (``TraceMeanField_ELBO``: the
same expectation as the sampled KL, with less variance and fewer operations, as in
Kingma & Welling 2014, eq. 10); ``num_particles`` draws of z per row (vectorized);
compiling the ELBO by default once the run is long enough to repay the tracing; and a
held-out loss that is the cheap one-draw negative ELBO per row instead of the IWAE
estimate.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from .._validation import positive_int
from ..infer.engines import Data, PointEngine, PointOptions
from ..infer.objectives import make_elbo

#: ``jit=None`` compiles the loss from this many steps on (the one-off tracing costs about
#: as much as a few hundred eager steps of a small network)
JIT_MIN_STEPS = 500


@dataclasses.dataclass(frozen=True, kw_only=True)
class VAEOptions(PointOptions):
    """:class:`~pyro_genmodels.infer.engines.PointOptions` with the VAE's defaults, plus

    Attributes:
        num_particles: draws of z per row in each ELBO estimate (vectorized).
        jit: compile the ELBO (``JitTrace_ELBO``); ``None`` compiles when the networks
            are the built-in MLPs and ``num_steps >= 500``. Custom networks need
            ``jit=True`` explicitly, and then must have no data-dependent control flow.
    """

    num_steps: int = 5000
    lr: float = 1e-3
    lr_decay: float = 0.1
    batch_size: Optional[int] = 128
    num_particles: int = 1

    def __post_init__(self):
        super().__post_init__()
        positive_int(self.num_particles, "num_particles")


class VAEEngine(PointEngine):
    """Maximum likelihood (of the ELBO) for the decoder weights (``mle``), or with the
    Gaussian prior on them, i.e. L2 weight decay (``map``)."""

    Options = VAEOptions

    @staticmethod
    def compiles(model, opts: VAEOptions) -> bool:
        if opts.jit is not None:
            return opts.jit
        return not model.custom_networks and opts.num_steps >= JIT_MIN_STEPS

    def elbo(self, model, opts: VAEOptions):
        extra = {"num_particles": opts.num_particles}
        if opts.num_particles > 1:
            extra["vectorize_particles"] = True
        return make_elbo("TraceMeanField_ELBO", jit=self.compiles(model, opts),
                         max_plate_nesting=model.max_plate_nesting, **extra)

    def heldout(self, model, point, data: Data):
        if data.x_val is None:
            return None

        def loss() -> float:  # minus the ELBO per held-out row, one draw under seed 0
            return -float(model.elbo_estimate(data.x_val, data.c_val).mean())

        return loss

    def run(self, model, data: Data, opts: VAEOptions, *, method: str, progress: bool):
        result = super().run(model, data, opts, method=method, progress=progress)
        n = data.x.shape[0]
        result.info.update(batch_size=n if opts.batch_size is None else min(opts.batch_size, n),
                           jit=self.compiles(model, opts))
        return result


__all__ = ["JIT_MIN_STEPS", "VAEEngine", "VAEOptions"]
