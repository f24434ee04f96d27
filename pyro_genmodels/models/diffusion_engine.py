r"""The diffusion family's ``mle`` / ``map`` engine: the noise predictor trained by the
one loop on the time-plate form of the DDPM bound.

Each minibatch row gets one step t and one noise draw :math:`\epsilon`; the objective is

* ``objective="simple"`` (default; Ho et al. 2020's :math:`L_\text{simple}`):
  :math:`\frac NB \sum_{i \in B} \frac12 \|\epsilon_i - \epsilon_\theta(x_{t_i}, t_i)\|^2`
  with :math:`t_i \sim U\{1..T\}`: the bound with every term's weight set to 1/2, which
  trains the network at all noise levels alike and gives better samples;
* ``objective="elbo"``: an unbiased estimate of the bound itself,
  :math:`\frac NB \sum_i [\mathrm{KL}_T(x_i) + \frac D2 \log 2\pi\beta_1 +
  L_{t_i}(x_i) / p(t_i)]`, with t importance-sampled as Nichol & Dhariwal (2021, sec.
  3.3) do: :math:`p(t) \propto \sqrt{\mathbb E[L_t^2]}` over the last 10 values of each
  term (uniform until every t has 10), mixed with 0.1% of the uniform. The bound's terms
  differ by orders of magnitude across t, so uniform draws make a gradient too noisy to
  train on.

``map`` adds minus the Gaussian weight prior (L2). With ``objective="simple"`` the loss
is not a log-likelihood, so ``prior_scale`` is then a weight-decay strength rather than a
prior on the likelihood's scale; with ``"elbo"`` it is the MAP of the bound.

For a conditional model each row's condition is dropped with probability
``condition_dropout`` (Ho & Salimans 2022), so one network learns both
:math:`\epsilon_\theta(x, c)` and :math:`\epsilon_\theta(x)` for classifier-free guidance.
An exponential moving average of the weights (``ema``) is kept after every step
(:class:`~pyro_genmodels.infer.averaging.WeightAverage`); the fitted network *is* the
average, used for sampling and evaluation (the loss trace is the raw weights'). The
held-out loss is the objective on the held-out rows with fixed draws (seed 0).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

import pyro
import torch

from .._rng import seeded
from .._validation import check_choice
from ..infer.averaging import WeightAverage, check_decay
from ..infer.engines import Data, Engine, fingerprint
from ..infer.loop import Batch, FitResult, LoopOptions, Player, optimize

OBJECTIVES = ("simple", "elbo")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiffusionOptions(LoopOptions):
    """The loop's options (:class:`~pyro_genmodels.infer.loop.LoopOptions`) with the
    diffusion family's defaults, plus

    Attributes:
        objective: ``"simple"`` (the noise MSE) or ``"elbo"`` (the bound,
            importance-sampled over t); see the module docstring.
        ema: decay of the moving average of the weights that the fit keeps (``None``:
            the last iterate).
        condition_dropout: probability of dropping a row's condition in training
            (conditional models; 0 turns classifier-free guidance's training off;
            ``None``: 0.1; refused for an unconditional model, where it does nothing).
    """

    num_steps: int = 8000
    lr: float = 1e-3
    lr_decay: float = 0.1
    batch_size: Optional[int] = 256
    objective: str = "simple"
    ema: Optional[float] = 0.999
    condition_dropout: Optional[float] = None

    def __post_init__(self):
        super().__post_init__()
        check_choice(self.objective, OBJECTIVES, "objective")
        check_decay(self.ema)
        p = self.condition_dropout
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float))
                              or not 0 <= p < 1):
            raise ValueError(f"Expected condition_dropout in [0, 1), but got {p!r}")


class TimeSampler:
    """Importance sampling of the step t for ``objective="elbo"`` (Nichol & Dhariwal
    2021): the last ``history`` values of each term, p(t) proportional to their root
    mean square once every t has them all, uniform before. The histories are ring
    buffers (slot ``count % history``), written for a whole batch at once."""

    def __init__(self, timesteps: int, *, history: int = 10, uniform: float = 1e-3,
                 dtype=torch.float32, device=None):
        self.T, self.k, self.uniform = timesteps, history, uniform
        self.values = torch.zeros(timesteps, history, dtype=dtype, device=device)
        self.counts = torch.zeros(timesteps, dtype=torch.long, device=device)

    def probabilities(self) -> torch.Tensor:
        """p(t) over t = 1..T, ``(T,)``."""
        if bool((self.counts < self.k).any()):
            return torch.full((self.T,), 1.0 / self.T, dtype=self.values.dtype,
                              device=self.values.device)
        w = self.values.pow(2).mean(1).sqrt()
        w = w / w.sum()
        return w * (1 - self.uniform) + self.uniform / self.T

    def draw(self, n: int):
        """``n`` steps in 1..T ``(n,)`` and their probabilities ``(n,)``."""
        p = self.probabilities()
        i = torch.multinomial(p, n, replacement=True)
        return i + 1, p[i]

    def record(self, t: torch.Tensor, values: torch.Tensor) -> None:
        """Push each term's value into its step's history (oldest dropped)."""
        i = t - 1
        order = torch.argsort(i, stable=True)
        i, v = i[order], values.detach()[order].to(self.values.dtype)
        _, inverse, sizes = torch.unique_consecutive(i, return_inverse=True,
                                                     return_counts=True)
        starts = torch.cumsum(sizes, 0) - sizes
        rank = torch.arange(i.shape[0], device=i.device) - starts[inverse]
        self.values[i, (self.counts[i] + rank) % self.k] = v  # a ring buffer per step
        self.counts += torch.bincount(i, minlength=self.T)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The ring buffers of recent loss terms per t and their counts (they set p(t))."""
        return {"values": self.values, "counts": self.counts}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Restore the loss history from :meth:`state_dict`."""
        self.values, self.counts = state["values"].clone(), state["counts"].clone()


class DiffusionLoss:
    """The loop objective (module docstring) on a minibatch of standardized rows, with
    the state a checkpoint keeps: the time sampler's history and the weight average."""

    def __init__(self, model, opts: DiffusionOptions, with_prior: bool):
        self.model, self.opts, self.with_prior = model, opts, with_prior
        self.times = TimeSampler(model.timesteps, **{"dtype": model._anchor.dtype,
                                                     "device": model._anchor.device})
        self.average = None if opts.ema is None else WeightAverage(model.network, opts.ema)

    def __call__(self, batch: Batch) -> torch.Tensor:
        return self.given(batch.x, batch.c, batch.num_rows, train=True)

    def given(self, u0: torch.Tensor, c: Optional[torch.Tensor], num_rows: int, *,
              train: bool) -> torch.Tensor:
        """The objective on unit-scale rows ``u0`` ``(B, D)`` (with ``c``) of a data set of
        ``num_rows`` rows, for one draw of t and the noise; ``train`` draws t as the objective
        says and drops conditions (classifier-free guidance), else t is uniform."""
        model, opts = self.model, self.opts
        b = u0.shape[0]
        keep = None
        if c is not None and train and opts.condition_dropout:
            keep = (torch.rand(b, device=u0.device) >= opts.condition_dropout).to(u0.dtype)
        cond = model.condition(c, keep)
        noise = torch.randn_like(u0)
        if opts.objective == "simple" or not train:
            t = torch.randint(1, model.timesteps + 1, (b,), device=u0.device)
            p = torch.full((b,), 1.0 / model.timesteps, dtype=u0.dtype, device=u0.device)
        else:
            t, p = self.times.draw(b)
        weighted, err = model.term(u0, t, noise, cond)
        if opts.objective == "simple":
            per_row = 0.5 * err
        else:
            if train:
                self.times.record(t, weighted)
            const = model.schedule.prior_kl(u0) + model.schedule.decoder_constant(model.dim)
            per_row = const + weighted / p
        loss = per_row.sum() * (num_rows / b)
        return loss - model.weight_log_prior() if self.with_prior else loss

    def update_average(self) -> None:
        """Fold the network's current weights into its weight average (after each step)."""
        assert self.average is not None  # a step hook only with ema
        self.average.update(self.model.network)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The time sampler's and the weight average's state, for a checkpoint."""
        state = {f"times.{k}": v for k, v in self.times.state_dict().items()}
        if self.average is not None:
            state.update({f"average.{k}": v for k, v in self.average.state_dict().items()})
        return state

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Restore the time sampler and the weight average from :meth:`state_dict`."""
        part = lambda prefix: {k[len(prefix):]: v for k, v in state.items()  # noqa: E731
                               if k.startswith(prefix)}
        self.times.load_state_dict(part("times."))
        if self.average is not None:
            self.average.load_state_dict(part("average."))


class DiffusionEngine(Engine):
    """``mle`` (flat prior on the weights) or ``map`` (Gaussian prior: L2) for the noise
    predictor; see the module docstring."""

    Options = DiffusionOptions

    def __init__(self, method: str, **defaults):
        self.method = check_choice(method, ("mle", "map"), "diffusion method")
        super().__init__(**defaults)

    def run(self, model, data: Data, opts: DiffusionOptions, *, method: str,
            progress: bool) -> FitResult:
        if model.context_dim is None and opts.condition_dropout:
            raise ValueError(f"condition_dropout={opts.condition_dropout!r} drops the "
                             f"conditions of a conditional model's rows; this model has "
                             f"none (context_dim=None)")
        opts = dataclasses.replace(opts, condition_dropout=0.1 if opts.condition_dropout
                                   is None else opts.condition_dropout)
        loss = DiffusionLoss(model, opts, with_prior=self.method == "map")
        params = [p for p in model.network.parameters() if p.requires_grad]
        if not params:
            raise ValueError("The network has no trainable parameters (requires_grad=False "
                             "everywhere)")
        pyro.module("network", model.network)  # in the fit's param store, like the others
        heldout = None
        if data.x_val is not None:
            u_val = model.to_unit(data.x_val)

            def heldout() -> float:  # the objective per held-out row, fixed draws
                with torch.no_grad(), seeded(0):
                    n = u_val.shape[0]
                    return float(loss.given(u_val, data.c_val, n, train=False)) / n

        player = Player(loss, params, after_step=None if loss.average is None
                        else loss.update_average, average=loss.average)
        result = optimize([player], data.source(model.to_unit), data.c, opts, heldout=heldout,
                          progress=progress, desc=f"diffusion {method}",
                          fingerprint=fingerprint(model, method, data, opts))
        if loss.average is not None and result.error is None:
            loss.average.copy_to(model.network)
        result.point = {}
        n = data.num_rows
        result.info.update(objective=opts.objective, ema=opts.ema,
                           batch_size=n if opts.batch_size is None else min(opts.batch_size, n),
                           condition_dropout=opts.condition_dropout
                           if model.context_dim is not None else None)
        if opts.objective == "elbo":
            result.info["time_probabilities"] = loss.times.probabilities().tolist()
        return result


__all__ = ["DiffusionEngine", "DiffusionLoss", "DiffusionOptions", "OBJECTIVES",
           "TimeSampler"]
