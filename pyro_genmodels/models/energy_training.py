r"""Training an :class:`~pyro_genmodels.models.energy.EnergyModel`: its ``mle`` and
``map`` engines, by contrastive divergence or denoising score matching.

**Multilevel denoising score matching** (``objective="multilevel_score_matching"``, the
default for the noise-conditional energy :math:`f_\phi(x, \sigma)`). Each row gets a level
sigma, log-uniform between sigma_min and sigma_max, and a perturbation :math:`\tilde x =
x + \sigma z`; the loss, weighted by :math:`\sigma^2` so that every level counts alike
(Song & Ermon 2019),

.. math::

    \tfrac12\, \mathbb E\, \big\|\sigma \nabla_x f_\phi(\tilde x, \sigma) + z\big\|^2,

is minimized by :math:`\nabla_x f(\cdot, \sigma) = \nabla \log p_\sigma`, the score of
the data convolved with :math:`N(0, \sigma^2 I)` (Vincent 2011). f is a scalar, so the
score is a gradient and the loss needs a double backward. The model's density is then
:math:`\exp f(x, \sigma_0) / Z`: an estimate of :math:`p_{\sigma_0}`, the data density
blurred at the *evaluation level* sigma_0, which the engine chooses after training among
:data:`NUM_EVAL_CANDIDATES` levels by the held-out
log-likelihood (its log Z by AIS), unless ``eval_sigma`` is given. An exponential moving
average of the weights (``ema``) is the fitted network.

**Contrastive divergence** (``objective="contrastive"``). The log-likelihood
gradient of :math:`p_\phi(x) = \exp f_\phi(x) / Z(\phi)` is

.. math::

    \nabla_\phi \frac1N \sum_i \log p_\phi(x_i)
      = \frac1N \sum_i \nabla_\phi f_\phi(x_i) - \mathbb E_{p_\phi}[\nabla_\phi f_\phi(X)],

(from :math:`\nabla_\phi \log Z = \mathbb E_{p_\phi}[\nabla_\phi f_\phi]`), the model
expectation estimated by persistent chains kept in a replay buffer (contrastive
divergence, Hinton 2002; persistent CD, Tieleman 2008; buffer with a reinitialization
fraction and an energy-magnitude penalty, Du & Mordatch 2019). The chains move by MALA,
one step size for all, adapted during training toward the acceptance ``target_accept``
(a Robbins-Monro step on log epsilon after every transition): unadjusted Langevin at a
fixed step samples a different density than exp f, and its bias is learned into f.
``fit.info`` reports the mean acceptance and the energy gap
:math:`\overline{f(x)} - \overline{f(x^-)}` between data and negatives over the last
tenth of training (a gap far from 0 means the chains do not reach the model). The
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
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Union

import pyro
import torch
from pyro import poutine

from .._rng import seeded
from .._moments import column_moments
from .._validation import check_choice, nonnegative_float, positive_float, store_counts
from ..base import gaussian_weight_log_prior
from ..infer import distributed
from ..infer.ais import AISEstimate
from ..infer.averaging import WeightAverage, check_decay
from ..infer.engines import Data, Engine, fingerprint
from ..infer.loop import Batch, FitResult, LoopOptions, Player, optimize
from ..infer.objectives import FlatPriors
from ..infer.samplers import mala_transition, metropolis, value_and_grad
from .energy_fit import LOG_Z_SETTINGS
from .noise_nets import geometric_levels, sample_levels

if TYPE_CHECKING:  # energy.py imports this module (for its engines), not the reverse
    from .energy import EnergyModel

#: training objectives accepted by ``fit(..., objective=...)``
OBJECTIVES = ("multilevel_score_matching", "contrastive", "score_matching")
#: candidate evaluation levels when the fit chooses sigma_0; this many, geometric from
#: EVAL_TOP down to sigma_min
NUM_EVAL_CANDIDATES, EVAL_TOP = 8, 0.5
#: the most AIS temperatures a candidate evaluation level may need (see
#: :func:`choose_eval_level`)
SELECTION_MAX_STEPS = 800
#: per objective, the defaults of the options left at ``None`` (measured on
#: ``eight_gaussians``; see docs/energy.md)
OBJECTIVE_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "multilevel_score_matching": {"num_steps": 16000, "lr": 1e-3, "validation": 0.1,
                                  "ema": 0.999},
    "contrastive": {"num_steps": 4000, "lr": 3e-3, "validation": None, "ema": None},
    "score_matching": {"num_steps": 2000, "lr": 3e-3, "validation": None, "ema": None},
}
#: per objective, the options of :class:`EnergyOptions` beyond the loop's that it reads;
#: each of :data:`OBJECTIVE_OPTIONS` that it does not read must be left at its default
#: (``None`` for ``validation`` and ``ema``), or the fit is refused before any work
OBJECTIVE_READS = {
    "multilevel_score_matching": ("validation", "ema"),
    "contrastive": ("buffer_size", "reinit_fraction", "mcmc_steps", "mcmc_step_size",
                    "target_accept", "energy_reg"),
    "score_matching": ("validation", "noise_scale"),
}
#: the options that only some objectives read
OBJECTIVE_OPTIONS = tuple(dict.fromkeys(n for names in OBJECTIVE_READS.values() for n in names))
#: why an objective cannot read an option, where there is more to say than that it does not
_WHY_UNREAD = {("contrastive", "validation"): "validation= needs a held-out loss, and "
               "contrastive divergence has none (its log Z moves every step)"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class EnergyOptions(LoopOptions):
    """The loop's options with the energy model's defaults, plus

    Attributes:
        objective: ``"multilevel_score_matching"`` (noise-conditional energies only; the
            default for them), ``"contrastive"`` (persistent contrastive divergence) or
            ``"score_matching"`` (denoising score matching at one level).
        num_steps, lr: ``None`` (the default) takes the objective's
            (:data:`OBJECTIVE_DEFAULTS`): 16000 steps at 1e-3 for the multilevel
            objective, 4000 at 3e-3 for contrastive divergence, 2000 at 3e-3 for score
            matching.
        validation, ema: ``"auto"`` (the default) takes the objective's: for the
            multilevel objective 0.1 of the rows held out (they choose sigma_0) and an
            ``ema`` (decay of the weights' moving average that the fit keeps) of 0.999;
            for the others neither. ``None`` turns either off.
        buffer_size: points in the persistent replay buffer.
        reinit_fraction: share of the buffer points drawn afresh from noise each step.
        mcmc_steps, mcmc_step_size: MALA transitions per training step and their initial
            step size, in standardized units.
        target_accept: the acceptance the chains' step size adapts to.
        energy_reg: alpha of the energy-magnitude penalty.
        noise_scale: sd of the denoising noise, standardized units.

    Which objective reads which (:data:`OBJECTIVE_READS`): ``validation`` and ``ema`` the
    multilevel objective; ``buffer_size``, ``reinit_fraction``, ``mcmc_steps``,
    ``mcmc_step_size``, ``target_accept`` and ``energy_reg`` contrastive divergence;
    ``validation`` and ``noise_scale`` score matching. An option that the objective does
    not read, set to anything but its default (``None`` for ``validation`` and ``ema``),
    is a ``ValueError``: the fit would ignore it and still record it in ``fit.options``.
    ``validation`` needs a held-out loss: the DSM loss for the score-matching
    objectives; contrastive divergence has none (log Z moves every step).
    """

    # None: the objective's default, which the engine resolves before the loop runs
    num_steps: Optional[int] = None  # type: ignore[assignment]  # see above
    lr: Optional[float] = None  # type: ignore[assignment]  # see above
    lr_decay: float = 0.1
    batch_size: Optional[int] = 256
    validation: Any = "auto"
    objective: str = "multilevel_score_matching"
    ema: Any = "auto"
    buffer_size: int = 10000
    reinit_fraction: float = 0.05
    mcmc_steps: int = 30
    mcmc_step_size: float = 0.05
    target_accept: float = 0.574
    energy_reg: float = 0.001
    noise_scale: float = 0.1

    def __post_init__(self):
        check_choice(self.objective, OBJECTIVES, "objective")
        defaults = OBJECTIVE_DEFAULTS[self.objective]
        for name in ("num_steps", "lr"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, defaults[name])
        for name in ("validation", "ema"):
            if isinstance(getattr(self, name), str) and getattr(self, name) == "auto":
                object.__setattr__(self, name, defaults[name])
        super().__post_init__()
        check_decay(self.ema)
        store_counts(self, "buffer_size", "mcmc_steps")
        positive_float(self.mcmc_step_size, "mcmc_step_size")
        positive_float(self.noise_scale, "noise_scale")
        if not positive_float(self.target_accept, "target_accept") < 1:
            raise ValueError(f"Expected 0 < target_accept < 1, but got {self.target_accept!r}")
        if not nonnegative_float(self.reinit_fraction, "reinit_fraction") <= 1:
            raise ValueError(f"Expected 0 <= reinit_fraction <= 1, but got "
                             f"{self.reinit_fraction!r}")
        nonnegative_float(self.energy_reg, "energy_reg")
        self._refuse_unread()

    def _refuse_unread(self) -> None:
        """Refuse the options of :data:`OBJECTIVE_OPTIONS` that this objective does not
        read and that are not at their defaults: the objective's (``validation`` and
        ``ema``, resolved from ``"auto"``: ``None`` where it reads neither), else the
        field's. A default is indistinguishable from an option left out (and is what a
        fit without it records), so passing one explicitly is accepted."""
        reads, defaults = OBJECTIVE_READS[self.objective], OBJECTIVE_DEFAULTS[self.objective]
        fields = {f.name: f.default for f in dataclasses.fields(self)}
        unread = []
        for name in OBJECTIVE_OPTIONS:
            value, default = getattr(self, name), defaults.get(name, fields[name])
            if name not in reads and (value is not None if default is None
                                      else float(value) != float(default)):
                unread.append(name)
        if not unread:
            return
        groups: Dict[str, List[str]] = {}  # reader objectives -> the options they read
        for n in unread:
            v = getattr(self, n)
            by = " or ".join(repr(o) for o, names in OBJECTIVE_READS.items() if n in names)
            groups.setdefault(by, []).append(f"{n}=<held-out data>" if n == "validation"
                                             and not isinstance(v, float) else f"{n}={v!r}")
        got = " and ".join(f"{', '.join(g)} (read by objective={by})"
                           for by, g in groups.items())
        why = "".join(f"; {_WHY_UNREAD[self.objective, n]}" for n in unread
                      if (self.objective, n) in _WHY_UNREAD)
        them = "it" if len(unread) == 1 else "them"
        raise ValueError(
            f"objective={self.objective!r} reads, beside the loop's options, only "
            f"{', '.join(reads)}, but got {got}: the fit would ignore {them} and still "
            f"record {them} in fit.options{why}. Leave {them} out (or at the default), or "
            f"fit with an objective that reads {them}")


def _mala_chains(model: EnergyModel, u: torch.Tensor, steps: int, eps: float,
                 target: float):
    """``steps`` MALA transitions of the chains ``u`` ``(B, D)`` on f as a function of the
    network's own (standardized) input, one step size ``eps`` for all, adapted after each
    transition toward acceptance ``target``. Returns the chains, the new step size and
    the mean acceptance probability. A chain whose proposal is not finite stays."""
    transition = mala_transition(model._f_of_u)
    lp, grad = value_and_grad(model._f_of_u, u)
    total = 0.0
    for _ in range(steps):
        e = torch.full((u.shape[0], 1), eps, dtype=u.dtype, device=u.device)
        prop = transition(u, lp, grad, e)
        _, prob, acc = metropolis(prop.log_ratio, prop.finite)
        u = torch.where(acc[:, None], prop.x, u)
        lp = torch.where(acc, prop.lp, lp)
        grad = torch.where(acc[:, None], prop.grad, grad)
        mean = float(prob.mean())
        total += mean
        eps = min(max(eps * math.exp(mean - target), 1e-4), 10.0)  # Robbins-Monro on log eps
    return u, eps, total / steps


class ContrastiveLoss:
    """The persistent-CD surrogate on a minibatch,
    ``-(1/N)[sum_i (N/B) f(x_i) + log prior - N E_buffer f(x-)] + alpha (f^2 terms)``,
    whose gradient is minus the per-point log-likelihood gradient. Its replay buffer and
    the chains' step size are state that a checkpoint keeps; ``acceptance`` and ``gap``
    record each step's mean acceptance and data-minus-negatives energy gap. Under
    ``distributed=True`` each rank moves its own share of the chains, and the step size
    (its log), the acceptance and the gap are averaged over the ranks after every step,
    so every rank ends with the same chains' settings and the same ``fit.info``."""

    def __init__(self, model: EnergyModel, program, opts: EnergyOptions,
                 shift_u: torch.Tensor, scale_u: torch.Tensor):
        self.model, self.program, self.opts = model, program, opts
        self.shift_u, self.scale_u = shift_u, scale_u
        self.buffer = ((model.base_loc - shift_u) / scale_u
                       + torch.randn(opts.buffer_size, model.dim, **model._factory))
        self.step_size = torch.tensor(float(opts.mcmc_step_size), dtype=torch.float64)
        self.acceptance: List[float] = []
        self.gap: List[float] = []
        self.group = distributed.current() if opts.distributed else None

    def __call__(self, batch: Batch) -> torch.Tensor:
        model, opts, n = self.model, self.opts, batch.num_rows
        b = batch.x.shape[0]
        j = torch.randint(opts.buffer_size, (b,), device=batch.x.device)
        u = self.buffer[j]
        fresh = torch.rand(b, device=batch.x.device) < opts.reinit_fraction
        u = torch.where(fresh[:, None], torch.randn_like(u), u)
        model.net.eval()
        u, eps, acc = _mala_chains(model, u, opts.mcmc_steps, float(self.step_size),
                                   opts.target_accept)
        self.buffer[j] = u
        x_neg = self.shift_u + self.scale_u * u
        model.net.train()
        tr = poutine.trace(self.program).get_trace(batch.source_x, subsample=batch.index,
                                                   num_data=n)
        f_pos = tr.nodes["x"]["fn"].log_factor
        f_neg = model._f(x_neg)
        gap = float(f_pos.detach().mean() - f_neg.detach().mean())
        if self.group is not None:  # every rank: the same step size and diagnostics
            log_eps, acc, gap = distributed.mean_floats(
                [math.log(eps), acc, gap], self.group, "the chains' step size and statistics")
            eps = math.exp(log_eps)
        self.step_size.fill_(eps)
        self.acceptance.append(acc)
        self.gap.append(gap)
        loss = -(tr.log_prob_sum() - n * f_neg.mean()) / n
        if opts.energy_reg > 0:
            loss = loss + opts.energy_reg * (f_pos.pow(2).mean() + f_neg.pow(2).mean())
        return loss

    def diagnostics(self) -> Dict[str, float]:
        """Mean acceptance and energy gap over the last tenth of the steps, and the
        chains' final step size (standardized units)."""
        k = max(1, len(self.gap) // 10)
        out = {"mcmc_step_size": float(self.step_size)}
        if self.gap:
            out.update(acceptance=sum(self.acceptance[-k:]) / k,
                       energy_gap=sum(self.gap[-k:]) / k)
        return out

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The replay buffer of chains and the adapted MALA step size, for a checkpoint."""
        return {"buffer": self.buffer, "step_size": self.step_size}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Restore the replay buffer and the adapted step size from :meth:`state_dict`."""
        self.buffer = state["buffer"].to(self.buffer)
        if "step_size" in state:
            self.step_size = state["step_size"].to(self.step_size)


class MultilevelLoss:
    """Multilevel denoising score matching of a noise-conditional energy (module
    docstring) on a minibatch of standardized rows: the mean over rows, plus
    ``-log prior / N`` for ``map``. Keeps the weights' moving average (``ema``)."""

    def __init__(self, model: EnergyModel, method: str, opts: EnergyOptions):
        self.model, self.method = model, method
        self.weights: List[torch.Tensor] = [p for p in model.net.parameters()
                                            if p.requires_grad]
        self.average = None if opts.ema is None else WeightAverage(model.net, opts.ema)

    def per_row(self, u: torch.Tensor, *, create_graph: bool = True) -> torch.Tensor:
        """The loss of each row ``(B,)``."""
        sigma = sample_levels(self.model.sigmas, u.shape[0], u)
        z = torch.randn_like(u)
        with torch.enable_grad():
            noisy = (u + sigma.unsqueeze(-1) * z).detach().requires_grad_(True)
            f = self.model._f_of_u(noisy, sigma)
            (score,) = torch.autograd.grad(f.sum(), noisy, create_graph=create_graph)
        return 0.5 * (sigma.unsqueeze(-1) * score + z).pow(2).sum(-1)

    def __call__(self, batch: Batch) -> torch.Tensor:
        self.model.net.train()
        loss = self.per_row(batch.x).mean()
        if self.method == "map":
            loss = loss - gaussian_weight_log_prior(self.weights, self.model.prior_scale
                                                    ) / batch.num_rows
        return loss

    def update_average(self) -> None:
        """Fold the energy network's current weights into its weight average."""
        assert self.average is not None  # a step hook only with ema
        self.average.update(self.model.net)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The weight average's state (empty without ``ema``), for a checkpoint."""
        return {} if self.average is None else self.average.state_dict()

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Restore the weight average from :meth:`state_dict`."""
        if self.average is not None:
            self.average.load_state_dict(state)


def choose_eval_level(model: EnergyModel, x_val: torch.Tensor) -> Dict[str, Any]:
    """Set ``model.eval_level`` to the candidate level with the highest mean held-out
    log-likelihood ``mean f(x_val, sigma) - log Z(sigma)``, log Z by AIS with the fit's
    settings (:data:`~pyro_genmodels.models.energy_fit.LOG_Z_SETTINGS`) capped at
    :data:`SELECTION_MAX_STEPS` temperatures.

    The candidates are visited from the largest down, and the search stops after two
    levels in a row below the best so far: the log-likelihood rises as the blur falls,
    until the small levels, which training sees only near the data, put mass where
    there is none. Returns what ``fit.info`` records: the candidates, their
    log-likelihoods (``None`` where not visited) and, when its AIS settled within the cap,
    the chosen level's log Z (which is then exactly the fit's ``log_z``; otherwise the fit
    computes that with the uncapped setting)."""
    top = min(EVAL_TOP, float(model.sigmas[0]))
    bottom = min(float(model.sigmas[-1]), top)
    candidates = geometric_levels(top, bottom, NUM_EVAL_CANDIDATES if top > bottom else 1)
    scores: List[float] = []
    settled: List[Optional[AISEstimate]] = []
    best: Optional[int] = None
    worse, first = 0, float(model.eval_level)
    try:
        for i, sigma in enumerate(candidates.tolist()):
            model.eval_level.fill_(sigma)
            est = model.log_normalizer(**LOG_Z_SETTINGS, max_steps=SELECTION_MAX_STEPS,
                                       warn=False)
            settled.append(est if est.settled else None)  # unsettled: still ranks
            with torch.no_grad():
                ll = float(model._f(x_val).mean()) - est.estimate
            scores.append(ll if math.isfinite(ll) else -math.inf)
            if best is None or scores[i] > scores[best]:
                best, worse = i, 0
            else:
                worse += 1
                if worse == 2:
                    break
    except KeyboardInterrupt:  # Ctrl-C: the best level so far, the trained fit kept
        if best is None:
            model.eval_level.fill_(first)
            return {"eval_sigma": first, "eval_interrupted": True}
        # the level being scored is unvisited: None in the record, as those after it
        return {**_chosen(model, candidates, best, scores, settled), "eval_interrupted": True}
    assert best is not None  # there is at least one candidate
    return _chosen(model, candidates, best, scores, settled)


def _chosen(model: EnergyModel, candidates: torch.Tensor, best: int, scores: List[float],
            settled: List[Optional[AISEstimate]]) -> Dict[str, Any]:
    """:func:`choose_eval_level`'s choice of ``candidates[best]``, set and recorded."""
    model.eval_level.fill_(candidates[best].item())
    out = {"eval_sigma": float(candidates[best]),
           "eval_candidates": [float(v) for v in candidates],
           "eval_log_likelihoods": [v if math.isfinite(v) else None for v in scores]
           + [None] * (len(candidates) - len(scores))}
    chosen = settled[best]
    if chosen is not None:
        out["log_z"] = {"estimate": chosen.estimate, "stderr": chosen.stderr,
                        "num_samples": chosen.num_samples, "ess": chosen.ess,
                        "num_steps": chosen.num_steps, "settled": True,
                        "seed": LOG_Z_SETTINGS["seed"]}
    return out


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
        """The denoising score-matching loss at this loss's ``sigma`` on rows ``x`` ``(B, D)``:
        ``E ||sigma grad f(x + e) + e / sigma||^2 / 2`` with ``e ~ N(0, sigma^2 I)``."""
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
        multilevel = opts.objective == "multilevel_score_matching"
        if multilevel and not model.noise_conditional:
            raise ValueError("objective='multilevel_score_matching' needs a noise-conditional "
                             "energy f(x, sigma): build EnergyModel(dim) (noise_conditional="
                             "True, the default), or use objective='contrastive' or "
                             "'score_matching'")
        x = data.x
        with torch.no_grad():
            mean, sd = column_moments(x)  # shift / x_scale: set by working_copy
            model.base_loc.copy_(mean)
            model.base_scale.copy_(2 * sd)
        pyro.module("energy", model.net)  # in the fit's param store (a PyroOptim needs it)
        # the replay buffer and the DSM noise live in the network's input space
        scale_u = model.x_scale if model.standardize else torch.ones_like(mean)
        shift_u = model.shift if model.standardize else torch.zeros_like(mean)
        heldout: Optional[Callable[[], float]] = None
        after_step: Optional[Callable[[], None]] = None
        average: Optional[WeightAverage] = None  # the weights kept, with ema
        source = data.source()
        loss: Union[MultilevelLoss, ContrastiveLoss, ScoreMatchingLoss]
        x_val = data.x_val
        if multilevel:
            loss = multi = MultilevelLoss(model, self.method, opts)
            source = data.source(model.to_unit)
            if multi.average is not None:
                after_step, average = multi.update_average, multi.average
            if x_val is not None:
                u_val = model.to_unit(x_val)

                def heldout_multilevel() -> float:  # the loss per held-out row, fixed draws
                    with seeded(0):
                        return float(multi.per_row(u_val, create_graph=False).mean())
                heldout = heldout_multilevel
        elif opts.objective == "contrastive":
            program = model.model if self.method == "map" else \
                FlatPriors(model.prior_sites)(model.model)
            loss = ContrastiveLoss(model, program, opts, shift_u, scale_u)
        else:
            loss = single = ScoreMatchingLoss(model, self.method, opts.noise_scale * scale_u)
            if x_val is not None:
                held_x = x_val

                def heldout_dsm() -> float:  # the DSM loss on held-out rows, noise under seed 0
                    with seeded(0):
                        return float(single.dsm(held_x, create_graph=False))
                heldout = heldout_dsm
        params = [p for p in model.net.parameters() if p.requires_grad]
        try:
            with pyro.validation_enabled(False):
                result = optimize([Player(loss, params, after_step=after_step,
                                          average=average)], source,
                                  data.c, opts, heldout=heldout, progress=progress,
                                  desc=f"energy {method}",
                                  fingerprint=fingerprint(model, method, data, opts))
            if isinstance(loss, MultilevelLoss) and loss.average is not None \
                    and result.error is None:
                loss.average.copy_to(model.net)
        finally:
            model.net.eval()
        result.point = {}
        result.info["objective"] = opts.objective
        if multilevel and result.error is None and model.eval_sigma is not None:
            result.info["eval_sigma"] = model.eval_sigma
        elif multilevel and result.error is None and result.interrupted:
            # Ctrl-C in training: no level chosen, the density is at the first (sigma_min)
            result.info.update(eval_sigma=float(model.eval_level), eval_chosen_on=None)
        elif multilevel and result.error is None:  # sigma_0 by held-out log-likelihood
            held = x_val is not None
            chosen = choose_eval_level(model, x_val if x_val is not None else x)
            result.info.update(chosen, eval_chosen_on=None if "eval_candidates" not in chosen
                               else "held-out rows" if held else "training rows")
            if result.info.pop("eval_interrupted", False):  # Ctrl-C in the choice
                result.interrupted, result.info["stopped"] = True, "interrupted"
        if isinstance(loss, ContrastiveLoss):  # opts.objective == "contrastive"
            result.info["buffer_size"] = opts.buffer_size
            result.info.update(loss.diagnostics())
        return result


__all__ = ["ContrastiveLoss", "EnergyEngine", "EnergyOptions", "MultilevelLoss", "OBJECTIVES",
           "OBJECTIVE_DEFAULTS", "OBJECTIVE_OPTIONS", "OBJECTIVE_READS", "ScoreMatchingLoss",
           "choose_eval_level"]
