r"""Training an :class:`~pyro_genmodels.models.energy.EnergyModel`: its ``mle`` and
``map`` engines, by contrastive divergence or denoising score matching.

**Contrastive divergence** (``objective="contrastive"``, default). The log-likelihood
gradient of :math:`p_\phi(x) = \exp f_\phi(x) / Z(\phi)` is

.. math::

    \nabla_\phi \frac1N \sum_i \log p_\phi(x_i)
      = \frac1N \sum_i \nabla_\phi f_\phi(x_i) - \mathbb E_{p_\phi}[\nabla_\phi f_\phi(X)],

(from :math:`\nabla_\phi \log Z = \mathbb E_{p_\phi}[\nabla_\phi f_\phi]`), the model
expectation estimated by persistent Langevin chains kept in a replay buffer
(contrastive divergence, Hinton 2002; persistent CD, Tieleman 2008; buffer with a
reinitialization fraction and an energy-magnitude penalty, Du & Mordatch 2019). The
data term is the model's Pyro program traced on the minibatch (its observed factor
``x`` and, for ``map``, the ``weight_prior`` factor), so ``map`` = ``mle`` + L2; the
program's log joint omits :math:`-N \log Z(\phi)`, whose gradient the engine supplies
from the model's own samples.

**Denoising score matching** (``objective="score_matching"``, Vincent 2011) needs no
sampling: :math:`\frac12 \mathbb E\,\|\sigma \nabla f(x + \sigma z) + z\|^2`, minimized
by the data density convolved with :math:`N(0, \sigma^2 I)`.

References:
    Hinton (2002), *Training products of experts by minimizing contrastive divergence*.
    Tieleman (2008), *Training restricted Boltzmann machines using approximations to the
    likelihood gradient*, ICML.
    Du & Mordatch (2019), *Implicit generation and modeling with energy-based models*.
    Vincent (2011), *A connection between score matching and denoising autoencoders*.
    Song & Kingma (2021), *How to train your energy-based models*, arXiv:2101.03288.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Dict, Optional

import pyro
import torch
from pyro import poutine

from .._rng import seeded
from .._validation import check_choice, column_moments, positive_float, positive_int
from ..infer.engines import Data, Engine, fingerprint
from ..infer.loop import Batch, FitResult, LoopOptions, Player, optimize
from ..infer.objectives import FlatPriors
from ..infer.samplers import value_and_grad

if TYPE_CHECKING:  # energy.py imports this module (for its engines), not the reverse
    from .energy import EnergyModel

#: training objectives accepted by ``fit(..., objective=...)``
OBJECTIVES = ("contrastive", "score_matching")


@dataclasses.dataclass(frozen=True, kw_only=True)
class EnergyOptions(LoopOptions):
    """The loop's options with the energy model's defaults, plus

    Attributes:
        objective: ``"contrastive"`` (persistent contrastive divergence) or
            ``"score_matching"`` (denoising score matching).
        buffer_size: points in the persistent replay buffer (contrastive).
        reinit_fraction: share of the buffer points drawn afresh from noise each step.
        mcmc_steps, mcmc_step_size: unadjusted Langevin steps per training step and
            their size, in standardized units (contrastive).
        energy_reg: alpha of the energy-magnitude penalty (contrastive).
        noise_scale: sd of the denoising noise, standardized units (score matching).

    ``validation`` needs ``objective="score_matching"``: its held-out loss is the DSM
    loss; contrastive divergence has no held-out loss (log Z moves every step).
    """

    num_steps: int = 2000
    lr: float = 3e-3
    lr_decay: float = 0.1
    batch_size: Optional[int] = 256
    objective: str = "contrastive"
    buffer_size: int = 10000
    reinit_fraction: float = 0.05
    mcmc_steps: int = 20
    mcmc_step_size: float = 0.05
    energy_reg: float = 0.01
    noise_scale: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        check_choice(self.objective, OBJECTIVES, "objective")
        positive_int(self.buffer_size, "buffer_size")
        positive_int(self.mcmc_steps, "mcmc_steps")
        positive_float(self.mcmc_step_size, "mcmc_step_size")
        positive_float(self.noise_scale, "noise_scale")
        if not 0 <= float(self.reinit_fraction) <= 1:
            raise ValueError(f"Expected 0 <= reinit_fraction <= 1, but got "
                             f"{self.reinit_fraction!r}")
        if not (float(self.energy_reg) >= 0 and math.isfinite(float(self.energy_reg))):
            raise ValueError(f"Expected energy_reg >= 0, but got {self.energy_reg!r}")
        if self.validation is not None and self.objective == "contrastive":
            raise ValueError("validation= needs a held-out loss, and contrastive divergence "
                             "has none (its log Z moves every step): use "
                             "objective='score_matching', whose held-out DSM loss is one")


def _langevin_buffer(model: EnergyModel, u: torch.Tensor, steps: int,
                     eps: float) -> torch.Tensor:
    """``steps`` unadjusted Langevin steps on the network's own (standardized) input
    ``u``: ``u <- u + eps^2/2 grad f + eps z``; a row that turns non-finite restarts from
    N(0, I)."""
    for _ in range(steps):  # f as a function of the network's input u (envelope included)
        _, g = value_and_grad(model._f_of_u, u)
        u = u + 0.5 * eps**2 * g + eps * torch.randn_like(u)
        bad = ~torch.isfinite(u).all(-1)
        if bad.any():
            u = torch.where(bad[:, None], torch.randn_like(u), u)
    return u


class ContrastiveLoss:
    """The persistent-CD surrogate on a minibatch,
    ``-(1/N)[sum_i (N/B) f(x_i) + log prior - N E_buffer f(x-)] + alpha (f^2 terms)``,
    whose gradient is minus the per-point log-likelihood gradient. Its replay buffer is
    state that a checkpoint keeps."""

    def __init__(self, model: EnergyModel, program, opts: EnergyOptions,
                 shift_u: torch.Tensor, scale_u: torch.Tensor):
        self.model, self.program, self.opts = model, program, opts
        self.shift_u, self.scale_u = shift_u, scale_u
        self.buffer = ((model.base_loc - shift_u) / scale_u
                       + torch.randn(opts.buffer_size, model.dim, **model._factory))

    def __call__(self, batch: Batch) -> torch.Tensor:
        model, opts, n = self.model, self.opts, batch.num_rows
        b = batch.x.shape[0]
        j = torch.randint(opts.buffer_size, (b,), device=batch.x.device)
        u = self.buffer[j]
        fresh = torch.rand(b, device=batch.x.device) < opts.reinit_fraction
        u = torch.where(fresh[:, None], torch.randn_like(u), u)
        model.net.eval()
        u = _langevin_buffer(model, u, opts.mcmc_steps, opts.mcmc_step_size)
        self.buffer[j] = u
        x_neg = self.shift_u + self.scale_u * u
        model.net.train()
        tr = poutine.trace(self.program).get_trace(batch.source_x, subsample=batch.index,
                                                   num_data=n)
        f_pos = tr.nodes["x"]["fn"].log_factor
        f_neg = model._f(x_neg)
        loss = -(tr.log_prob_sum() - n * f_neg.mean()) / n
        if opts.energy_reg > 0:
            loss = loss + opts.energy_reg * (f_pos.pow(2).mean() + f_neg.pow(2).mean())
        return loss

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {"buffer": self.buffer}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        self.buffer = state["buffer"].to(self.buffer)


class ScoreMatchingLoss:
    """Denoising score matching (Vincent 2011) on a minibatch:
    ``(1/2) E || sigma * grad f(x + noise) + noise / sigma ||^2``, plus ``-log prior / N``
    for ``map``."""

    def __init__(self, model: EnergyModel, method: str, sigma: torch.Tensor):
        self.model, self.method, self.sigma = model, method, sigma

    def __call__(self, batch: Batch) -> torch.Tensor:
        self.model.net.train()
        loss = self.dsm(batch.x)
        if self.method == "map":
            loss = loss - self.model.weight_log_prior() / batch.num_rows
        return loss

    def dsm(self, x: torch.Tensor, *, create_graph: bool = True) -> torch.Tensor:
        noise = self.sigma * torch.randn_like(x)
        xt = (x + noise).requires_grad_(True)
        (score,) = torch.autograd.grad(self.model._f(xt).sum(), xt, create_graph=create_graph)
        return 0.5 * (self.sigma * score + noise / self.sigma).pow(2).sum(-1).mean()


class EnergyEngine(Engine):
    r"""``mle`` / ``map`` of an :class:`~pyro_genmodels.models.energy.EnergyModel` on the
    one loop, by contrastive divergence or denoising score matching (see the module
    docstring for the math). ``map`` adds the weight prior (the ``weight_prior`` factor),
    i.e. the per-point loss gains ``||w||^2 / (2 prior_scale^2 N)`` (L2) and a constant.
    """

    Options = EnergyOptions

    def __init__(self, method: str, **defaults: Any):
        self.method = check_choice(method, ("mle", "map"), "method")
        super().__init__(**defaults)

    def run(self, model: EnergyModel, data: Data, opts: EnergyOptions, *, method: str,
            progress: bool) -> FitResult:
        x = data.x
        with torch.no_grad():
            mean, sd = column_moments(x)  # shift / x_scale: set by working_copy
            model.base_loc.copy_(mean)
            model.base_scale.copy_(2 * sd)
        pyro.module("energy", model.net)  # in the fit's param store (a PyroOptim needs it)
        # the replay buffer and the DSM noise live in the network's input space
        scale_u = model.x_scale if model.standardize else torch.ones_like(mean)
        shift_u = model.shift if model.standardize else torch.zeros_like(mean)
        heldout = None
        if opts.objective == "contrastive":
            program = model.model if self.method == "map" else \
                FlatPriors(model.prior_sites)(model.model)
            loss = ContrastiveLoss(model, program, opts, shift_u, scale_u)
        else:
            loss = ScoreMatchingLoss(model, self.method, opts.noise_scale * scale_u)
            if data.x_val is not None:
                def heldout() -> float:  # the DSM loss on held-out rows, noise under seed 0
                    with seeded(0):
                        return float(loss.dsm(data.x_val, create_graph=False))
        params = [p for p in model.net.parameters() if p.requires_grad]
        try:
            with pyro.validation_enabled(False):
                result = optimize([Player(loss, params)], data.source(), data.c, opts, heldout=heldout,
                                  progress=progress, desc=f"energy {method}",
                                  fingerprint=fingerprint(model, method, data, opts))
        finally:
            model.net.eval()
        result.point = {}
        result.info["objective"] = opts.objective
        if opts.objective == "contrastive":
            result.info["buffer_size"] = opts.buffer_size
        return result


__all__ = ["ContrastiveLoss", "EnergyEngine", "EnergyOptions", "OBJECTIVES",
           "ScoreMatchingLoss"]
