r"""The score family's engines: ``method="dsm"`` (denoising score matching) and
``method="ssm"`` (sliced score matching), on the one training loop.

Each minibatch row gets one noise level and one perturbation :math:`\tilde x = x + \sigma
z`. The level is drawn log-uniformly between sigma_min and sigma_max (``levels=
"continuous"``, the default: the variance-exploding SDE's training, Song et al. 2021,
which the ODE needs between the annealing levels) or uniformly among the L annealing
levels (``levels="discrete"``, NCSN's). The losses, weighted by :math:`\sigma^2`
(Song & Ermon 2019) so every level contributes alike:

* ``dsm`` (Vincent 2011): :math:`\frac12 \|\sigma s_\theta(\tilde x, \sigma) + z\|^2`,
  whose minimizer is the score of the blurred data,
  :math:`\nabla \log p_\sigma(\tilde x) = \mathbb E[-z / \sigma \mid \tilde x]`;
* ``ssm`` (Song, Garg, Shi & Ermon 2019, with variance reduction):
  :math:`\sigma^2 [v^\top \nabla_x s_\theta(\tilde x, \sigma) v + \frac12 \|s_\theta(\tilde
  x, \sigma)\|^2]`, v ~ N(0, I): one vector-Jacobian product per row, unbiased for the
  explicit score-matching objective :math:`\sigma^2 \mathbb E[\operatorname{tr}\nabla s +
  \frac12 \|s\|^2]` at :math:`\tilde x`, which equals the Fisher divergence to
  :math:`p_\sigma` up to a constant.

The sum over rows is scaled by N / B. ``weight_prior_scale`` s adds minus the Gaussian
prior log N(w; 0, s^2) of every weight (MAP-style: L2 weight decay). An exponential
moving average of the weights (``ema``) is the fitted network. The held-out loss is the
objective on held-out rows with fixed draws (seed 0).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

import pyro
import torch

from .._rng import seeded
from .._validation import check_choice, positive_float
from ..base import gaussian_weight_log_prior
from ..infer.averaging import WeightAverage, check_decay
from ..infer.engines import Data, Engine, fingerprint
from ..infer.loop import Batch, FitResult, LoopOptions, Player, optimize
from .noise_nets import sample_levels

LEVELS = ("continuous", "discrete")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScoreOptions(LoopOptions):
    """The loop's options with the score family's defaults, plus

    ``num_steps=16000``: on ``checkerboard`` (sharp edges) 8000 steps left the ODE
    log-likelihood 0.29 nats below the truth, 16000 0.18 (one seed).

    Attributes:
        levels: ``"continuous"`` (log-uniform sigma) or ``"discrete"`` (the L levels).
        weight_prior_scale: sd of a Gaussian prior on every weight (``None``: none).
        ema: decay of the weights' moving average that the fit keeps (``None``: off).
    """

    num_steps: int = 16000
    lr: float = 1e-3
    lr_decay: float = 0.1
    batch_size: Optional[int] = 256
    levels: str = "continuous"
    weight_prior_scale: Optional[float] = None
    ema: Optional[float] = 0.999

    def __post_init__(self):
        super().__post_init__()
        check_choice(self.levels, LEVELS, "levels")
        if self.weight_prior_scale is not None:
            positive_float(self.weight_prior_scale, "weight_prior_scale")
        check_decay(self.ema)


class ScoreLoss:
    """The loop objective (module docstring) on a minibatch of standardized rows."""

    def __init__(self, model, method: str, opts: ScoreOptions):
        self.model, self.method, self.opts = model, method, opts
        self.average = None if opts.ema is None else WeightAverage(model.network, opts.ema)
        self.weights = [p for p in model.network.parameters() if p.requires_grad]

    def draw_levels(self, b: int, like: torch.Tensor) -> torch.Tensor:
        """``b`` noise levels, one per row, like ``like``: log-uniform between the extremes
        (``levels="continuous"``) or uniform over the L levels (``"discrete"``)."""
        return sample_levels(self.model.sigmas, b, like,
                             discrete=self.opts.levels == "discrete")

    def per_row(self, u: torch.Tensor, c: Optional[torch.Tensor]) -> torch.Tensor:
        """The loss of each row ``(B,)``."""
        sigma = self.draw_levels(u.shape[0], u)
        z = torch.randn_like(u)
        noisy = u + sigma.unsqueeze(-1) * z
        if self.method == "dsm":
            s = self.model.score_unit(noisy, sigma, c)
            return 0.5 * (sigma.unsqueeze(-1) * s + z).pow(2).sum(-1)
        with torch.enable_grad():
            noisy = noisy.detach().requires_grad_(True)
            s = self.model.score_unit(noisy, sigma, c)
            v = torch.randn_like(u)
            jv, = torch.autograd.grad((s * v).sum(), noisy, create_graph=True)
        return sigma.pow(2) * ((jv * v).sum(-1) + 0.5 * s.pow(2).sum(-1))

    def __call__(self, batch: Batch) -> torch.Tensor:
        loss = self.per_row(batch.x, batch.c).sum() * (batch.num_rows / batch.x.shape[0])
        if self.opts.weight_prior_scale is not None:
            loss = loss - gaussian_weight_log_prior(self.weights, self.opts.weight_prior_scale)
        return loss

    def update_average(self) -> None:
        """Fold the network's current weights into its weight average."""
        assert self.average is not None  # a step hook only with ema
        self.average.update(self.model.network)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The weight average's state (empty without ``ema``), for a checkpoint."""
        return {} if self.average is None else self.average.state_dict()

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Restore the weight average from :meth:`state_dict`."""
        if self.average is not None:
            self.average.load_state_dict(state)


class ScoreEngine(Engine):
    """``dsm`` or ``ssm`` (module docstring)."""

    Options = ScoreOptions

    def __init__(self, method: str, **defaults):
        self.method = check_choice(method, ("dsm", "ssm"), "score method")
        super().__init__(**defaults)

    def run(self, model, data: Data, opts: ScoreOptions, *, method: str,
            progress: bool) -> FitResult:
        loss = ScoreLoss(model, self.method, opts)
        if not loss.weights:
            raise ValueError("The network has no trainable parameters (requires_grad=False "
                             "everywhere)")
        pyro.module("network", model.network)
        model.set_context_prior(data.x, data.c)  # the training rows (a stream's sample)
        heldout = None
        if data.x_val is not None:
            u_val = model.to_unit(data.x_val)

            def heldout() -> float:  # the objective per held-out row, fixed draws
                with seeded(0):
                    return float(loss.per_row(u_val, data.c_val).mean().detach())

        player = Player(loss, loss.weights, after_step=None if loss.average is None
                        else loss.update_average, average=loss.average)
        result = optimize([player], data.source(model.to_unit), data.c, opts, heldout=heldout,
                          progress=progress, desc=f"score {method}",
                          fingerprint=fingerprint(model, method, data, opts))
        if loss.average is not None and result.error is None:
            loss.average.copy_to(model.network)
        result.point = {}
        result.info.update(levels=opts.levels, ema=opts.ema,
                           sigmas=[float(s) for s in model.sigmas],
                           weight_prior_scale=opts.weight_prior_scale)
        return result


__all__ = ["LEVELS", "ScoreEngine", "ScoreLoss", "ScoreOptions"]
