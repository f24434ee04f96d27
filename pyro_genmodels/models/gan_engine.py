r"""Training a :class:`~pyro_genmodels.models.gan.GAN` (``method="adversarial"``): two
players on the one loop (:func:`~pyro_genmodels.infer.loop.optimize`).

Each round the critic makes ``critic_steps`` Adam steps on

.. math::

    L_\omega = -\Big(\tfrac1B \sum_i g_f(V_\omega(x_i))
                - \tfrac1B \sum_j f^*(g_f(V_\omega(\tilde x_j)))\Big)
    \quad\text{or, WGAN-GP,}\quad
    \tfrac1B \sum_j V_\omega(\tilde x_j) - \tfrac1B \sum_i V_\omega(x_i)
      + \lambda\, \mathbb E (\|\nabla V_\omega(\hat x)\| - 1)^2,

(:math:`x_i` a minibatch of data, :math:`\tilde x_j = G_\phi(z_j)` fresh generator
draws), then the generator makes one step on
:math:`L_\phi = \tfrac1B \sum_j f^*(g_f(V(\tilde x_j)))` with a minus sign, or the
non-saturating :math:`-\tfrac1B \sum_j g_f(V(\tilde x_j))` (:math:`-V` for WGAN). The
loop owns minibatches, the two optimizers (Adam with ``betas``, learning rates ``lr``
and ``critic_lr``), the NaN guard, Ctrl-C, progress and checkpoints.

An exponential moving average of the generator's weights (``ema``; Yazıcı et al. 2019)
is kept after every generator step (:class:`~pyro_genmodels.infer.averaging.WeightAverage`,
the helper the diffusion network uses too); at the end the fitted generator *is* the
average. A generator whose weights are all frozen (``requires_grad=False``) leaves the
critic alone in the loop: it then estimates the divergence of a fixed sampler.

References:
    Nowozin, Cseke & Tomioka (2016), *f-GAN*, NeurIPS.
    Gulrajani et al. (2017), *Improved Training of Wasserstein GANs*, NeurIPS.
    Yazıcı et al. (2019), *The Unusual Effectiveness of Averaging in GAN Training*, ICLR.
    Heusel et al. (2017), *GANs Trained by a Two Time-Scale Update Rule Converge to a
    Local Nash Equilibrium*, NeurIPS.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import pyro
import torch

from .._rng import seeded
from .._validation import positive_float, store_counts
from ..infer.averaging import WeightAverage, check_decay
from ..infer.engines import Data, Engine, fingerprint
from ..infer.loop import Batch, FitResult, LoopOptions, Player, optimize
from ..infer.optimizers import OPTIMIZERS
from .fgan import TABLE, gradient_penalty

if TYPE_CHECKING:  # gan.py imports this module (for its engine), not the reverse
    from .gan import GAN


#: the options whose defaults depend on the divergence (``None`` in
#: :class:`AdversarialOptions` until the engine knows it), measured in docs/gan.md
PER_DIVERGENCE = ("num_steps", "lr", "betas", "r1_penalty")
_FAST_GAME: Dict[str, Any] = dict(num_steps=20000, lr=1e-3, betas=(0.5, 0.9), r1_penalty=0.01)
#: Per divergence, the defaults of the options named in ``PER_DIVERGENCE``.
DIVERGENCE_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "gan": _FAST_GAME, "js": _FAST_GAME,
    "wasserstein": dict(num_steps=12000, lr=1e-3, betas=(0.5, 0.9), r1_penalty=0.0),
}
#: the other f-divergences (kl, reverse_kl, pearson, hellinger, tv)
OTHER_DEFAULTS: Dict[str, Any] = dict(num_steps=6000, lr=2e-4, betas=(0.5, 0.999),
                                      r1_penalty=0.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdversarialOptions(LoopOptions):
    """The loop's options with the GAN's defaults, plus

    Attributes:
        num_steps: generator updates; ``None`` (the default) takes the divergence's
            value from :data:`DIVERGENCE_DEFAULTS` (tabled in docs/gan.md), as do
            ``lr``, ``betas`` and ``r1_penalty``; ``fit.info`` records the values used.
        lr: the generator's learning rate (and the critic's, unless ``critic_lr``);
            ``None``: the divergence's.
        critic_lr: the critic's learning rate; ``None``: ``4 * lr`` for ``gan`` and
            ``js`` (the two time-scale update rule, Heusel et al. 2017: on the ring the
            non-saturating ``gan`` at equal rates collapsed to 1 mode on one seed of
            three, at 4x it kept all 8 with 93-94% high-quality draws on all three),
            ``lr`` for the others (``kl`` at 4x diverged: its f* = exp(t - 1) blew up;
            ``wasserstein``'s critic takes 5 steps instead).
        critic_steps: critic updates per generator update; ``None``: 5 for
            ``wasserstein`` (Gulrajani et al.), 1 for the f-divergences.
        betas: Adam's (beta1, beta2); beta1 = 0.5 as in DCGAN and WGAN-GP.
        non_saturating: the generator's non-saturating loss; ``None``: on for ``"gan"``
            and ``"js"``, off otherwise (``True`` is refused with ``wasserstein``).
        gradient_penalty: lambda of WGAN-GP's penalty (``wasserstein``'s; ``None``: 1; a
            value other than 0 is refused with another divergence, where it would do
            nothing). 1: with
            12000 steps at lr 1e-3 it covered all 25 ``grid25`` modes on seeds 0-2 with
            84, 74, 71% high-quality draws against 73, 50, 77% at 0.1 (the value of the
            WGAN-GP authors' toy code; their image experiments use 10, which gave 43% on
            the ring at the old settings).
        r1_penalty: gamma of the R1 penalty on the f-GAN critic at the data,
            gamma / 2 E ||grad_x V(x)||^2 (Mescheder, Geiger & Nowozin 2018; in the
            networks' standardized units; a value other than 0 is refused with
            ``wasserstein``).
        ema: decay of the exponential moving average of the generator's weights that
            the fit keeps; ``None``: off (the last iterate).
        validation: held-out rows; the held-out loss is the unbiased MMD^2 between them
            and as many generator draws (fixed codes), on standardized columns with the
            bandwidth fixed at the start, so early stopping keeps the best generator.

    ==================  =========  ======  ============  ====================
    divergence          num_steps  lr      betas         r1_penalty
    ==================  =========  ======  ============  ====================
    ``gan``, ``js``     20000      1e-3    (0.5, 0.9)    0.01
    ``wasserstein``     12000      1e-3    (0.5, 0.9)    (none; its lambda = 1)
    the others          6000       2e-4    (0.5, 0.999)  0
    ==================  =========  ======  ============  ====================

    ``gan``/``js`` run a longer, faster game with the R1 penalty because at the old
    defaults (6000 steps, 2e-4, (0.5, 0.999), no penalty) they covered 20.7 of the 25
    modes of ``grid25`` with 33% high-quality draws, and with these 25, 25, 25 (seeds
    0-2) with 81, 64, 74% (docs/gan.md); ``wasserstein`` at lr 1e-3 covered all 25 but
    blurred them (26-36% high quality) after 6000 steps, and with 12000 steps and
    lambda = 1 drew 84, 74, 71% of high quality; the others keep the settings they were
    measured at on the ring.

    ``num_steps`` counts generator updates (rounds); ``losses`` is the generator's loss
    per round and ``info["critic_losses"]`` the critic's (its last update each round).
    """

    # None: the divergence's default (PER_DIVERGENCE), set by the engine before the loop
    num_steps: Optional[int] = None  # type: ignore[assignment]  # see above
    lr: Optional[float] = None  # type: ignore[assignment]  # see above
    lr_decay: float = 1.0
    batch_size: Optional[int] = 256
    critic_lr: Optional[float] = None
    critic_steps: Optional[int] = None
    betas: Optional[Tuple[float, float]] = None
    non_saturating: Optional[bool] = None
    gradient_penalty: Optional[float] = None
    r1_penalty: Optional[float] = None
    ema: Optional[float] = None

    def __post_init__(self):
        unset = {k: OTHER_DEFAULTS[k] for k in PER_DIVERGENCE if getattr(self, k) is None}
        if unset:  # check what was given, with placeholders where the divergence decides,
            # and keep what the check made of it (validation=np.float32(0.2) a float)
            checked = dataclasses.replace(self, **unset)
            for f in dataclasses.fields(self):
                if f.name not in unset:
                    object.__setattr__(self, f.name, getattr(checked, f.name))
            return
        super().__post_init__()
        if self.critic_lr is not None:
            positive_float(self.critic_lr, "critic_lr")
        if self.critic_steps is not None:
            store_counts(self, "critic_steps")
        b = self.betas
        if not (isinstance(b, (tuple, list)) and len(b) == 2
                and all(isinstance(v, (int, float)) and 0 <= v < 1 for v in b)):
            raise ValueError(f"Expected betas to be two numbers in [0, 1), but got {b!r}")
        if self.non_saturating not in (None, True, False):
            raise TypeError(f"Expected non_saturating to be None, True or False, but got "
                            f"{self.non_saturating!r}")
        gp = self.gradient_penalty
        if gp is not None and (isinstance(gp, bool) or not (
                isinstance(gp, (int, float)) and math.isfinite(gp) and gp >= 0)):
            raise ValueError(f"Expected gradient_penalty >= 0, but got "
                             f"{self.gradient_penalty!r}")
        r1 = self.r1_penalty
        if isinstance(r1, bool) or not (isinstance(r1, (int, float)) and math.isfinite(r1)
                                        and r1 >= 0):
            raise ValueError(f"Expected r1_penalty >= 0, but got {r1!r}")
        check_decay(self.ema)

    def for_divergence(self, name: str) -> "AdversarialOptions":
        """These options with the divergence's defaults where they are ``None``; an
        option that would do nothing with this divergence or optimizer is refused."""
        wgan = name == "wasserstein"
        ignored = [k for k, on in (("gradient_penalty", not wgan and bool(self.gradient_penalty)),
                                   ("r1_penalty", wgan and bool(self.r1_penalty)),
                                   ("non_saturating", wgan and self.non_saturating is True))
                   if on]
        if ignored:
            raise ValueError(
                f"{ignored[0]}={getattr(self, ignored[0])!r} does nothing with "
                f"divergence={name!r}: gradient_penalty is WGAN-GP's ('wasserstein'), "
                f"r1_penalty and non_saturating are the f-GANs' (every other divergence)")
        if self.betas is not None and not _takes_betas(self.optimizer):
            raise ValueError(f"betas={self.betas!r} are the Adam family's; optimizer="
                             f"{self.optimizer!r} takes none from the fit (drop betas; a "
                             f"pyro.optim optimizer takes them in its own arguments)")
        table = DIVERGENCE_DEFAULTS.get(name, OTHER_DEFAULTS)
        # None: 1, also where it is unused (a checkpoint's fingerprint records it)
        gp = 1.0 if self.gradient_penalty is None else self.gradient_penalty
        return dataclasses.replace(self, gradient_penalty=gp, **{
            k: table[k] for k in PER_DIVERGENCE if getattr(self, k) is None})


def _takes_betas(optimizer: Any) -> bool:
    """Whether the loop's ``optimizer`` (a name of the loop's table or a torch optimizer
    class; not a ``pyro.optim`` one, which takes its own arguments) takes ``betas``."""
    cls = OPTIMIZERS.get(optimizer) if isinstance(optimizer, str) else optimizer
    return isinstance(cls, type) and "betas" in inspect.signature(cls).parameters


def _fake(model: "GAN", n: int, c: Optional[torch.Tensor]) -> torch.Tensor:
    return model.generate_unit(model.draw_codes(n), c)


class CriticLoss:
    """The critic's loss on a minibatch of standardized rows (minus the f-divergence
    bound, or WGAN-GP's)."""

    def __init__(self, model: "GAN", gp_weight: float, r1_weight: float = 0.0):
        self.model, self.gp_weight, self.r1_weight = model, gp_weight, r1_weight
        self.div = TABLE.get(model.divergence)
        self.history: List[torch.Tensor] = []  # the loss after each round (a checkpoint keeps it)

    def __call__(self, batch: Batch) -> torch.Tensor:
        model, c = self.model, batch.c
        r1 = self.r1_weight > 0 and self.div is not None
        real = batch.x  # the loop runs on the standardized rows
        if r1:
            real = real.detach().requires_grad_(True)
        with torch.no_grad():
            fake = _fake(model, real.shape[0], c)
        v_real, v_fake = model.critic_raw(real, c), model.critic_raw(fake, c)
        if self.div is None:
            loss = v_fake.mean() - v_real.mean()
            if self.gp_weight > 0:
                loss = loss + self.gp_weight * gradient_penalty(model.critic_raw, real, fake, c)
        else:
            loss = -self.div.critic_objective(v_real, v_fake)
            if r1:  # R1: gamma / 2 E ||grad_x V(x)||^2 at the data
                g, = torch.autograd.grad(v_real.sum(), real, create_graph=True)
                loss = loss + 0.5 * self.r1_weight * g.pow(2).sum(-1).mean()
        return loss

    def record(self, value: float) -> None:
        """Keep ``value``, the loss of the critic's latest update (the loop's: across
        ranks when distributed)."""
        self.history.append(torch.tensor(value, dtype=self.model._anchor.dtype))

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The history of critic losses, for a checkpoint."""
        return {"history": torch.stack(self.history) if self.history
                else torch.zeros(0, dtype=self.model._anchor.dtype)}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Restore the critic-loss history from :meth:`state_dict`."""
        self.history = list(state["history"].to(self.model._anchor.device).unbind())


class GeneratorLoss:
    """The generator's loss on fresh draws (a minibatch's ``c`` for conditional models),
    and the moving average of its weights (state that a checkpoint keeps)."""

    def __init__(self, model: "GAN", non_saturating: bool, ema: Optional[float]):
        self.model, self.non_saturating = model, non_saturating
        self.div = TABLE.get(model.divergence)
        self.average = None if ema is None else WeightAverage(model.generator, ema)

    def __call__(self, batch: Batch) -> torch.Tensor:
        model = self.model
        c = batch.c
        n = batch.num_rows if batch.index is None else batch.index.shape[0]
        v = model.critic_raw(_fake(model, n, c), c)
        if self.div is None:
            return -v.mean()
        return self.div.generator_loss(v, self.non_saturating)

    def update_average(self) -> None:
        """Fold the generator's current weights into its weight average."""
        assert self.average is not None  # a step hook only with ema
        self.average.update(self.model.generator)

    def state_dict(self) -> Dict[str, Any]:
        """The generator's weight average (empty without ``ema``), for a checkpoint."""
        return {} if self.average is None else self.average.state_dict()

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Restore the generator's weight average from :meth:`state_dict`."""
        if self.average is not None:
            self.average.load_state_dict(state)


class AdversarialEngine(Engine):
    """``method="adversarial"``: the critic and the generator as two players of the one
    loop (see the module docstring)."""

    Options = AdversarialOptions

    def run(self, model: "GAN", data: Data, opts: AdversarialOptions, *, method: str,
            progress: bool) -> FitResult:
        name = model.divergence
        opts = opts.for_divergence(name)
        # set by for_divergence
        assert opts.lr is not None and opts.betas is not None and opts.r1_penalty is not None
        assert opts.gradient_penalty is not None
        critic_steps = opts.critic_steps or (5 if name == "wasserstein" else 1)
        non_saturating = (TABLE[name].non_saturating if name in TABLE else False) \
            if opts.non_saturating is None else opts.non_saturating
        betas = {"betas": tuple(opts.betas)} if _takes_betas(opts.optimizer) else {}
        critic = CriticLoss(model, float(opts.gradient_penalty), float(opts.r1_penalty))
        generator = GeneratorLoss(model, non_saturating, opts.ema)
        g_params = [p for p in model.generator.parameters() if p.requires_grad]
        c_params = [p for p in model.critic.parameters() if p.requires_grad]
        if not c_params:
            raise ValueError("The critic has no trainable parameters (requires_grad=False "
                             "everywhere): an adversarial fit needs a critic to train")
        if not g_params and opts.ema is not None:
            raise ValueError(f"ema={opts.ema} averages the generator's weights, but they are "
                             f"all frozen (requires_grad=False): the critic trains alone; "
                             f"leave ema=None")
        critic_lr = opts.critic_lr or (4 * opts.lr if name in ("gan", "js") else opts.lr)
        players = [Player(critic, c_params, steps=critic_steps, lr=critic_lr,
                          name="critic", optimizer_options=betas)]

        def record():
            critic.record(players[0].last_loss)

        if g_params:
            players.append(Player(generator, g_params, name="generator",
                                  optimizer_options=betas, after_step=_both(
                                      record, None if opts.ema is None
                                      else generator.update_average),
                                  average=generator.average))
        else:  # the critic alone: record after its last update of each round
            players[0].after_step = _every(critic_steps, record)
        if g_params:  # in the fit's param store, like others (frozen: nothing to register)
            pyro.module("generator", model.generator)
        heldout = _heldout_mmd(model, data)
        model.train()
        try:
            # the rows standardized once (the networks' units), not at every batch
            result = optimize(players, data.source(model.to_unit), data.c, opts, heldout=heldout,
                              progress=progress, desc=f"gan {name}",
                              fingerprint=fingerprint(model, method, data, opts))
        finally:
            model.eval()
        if g_params and opts.ema is not None and result.error is None:
            assert generator.average is not None  # kept with ema
            generator.average.copy_to(model.generator)
        per_round = torch.stack(critic.history).tolist() if critic.history else []
        result.point = {}
        # a pyro.optim optimizer is used as given, with its own learning rate, by both
        # players: the rates above were not read
        given = isinstance(opts.optimizer, pyro.optim.PyroOptim)
        result.info.update(divergence=name, critic_steps=critic_steps,
                           critic_lr=None if given else critic_lr,
                           num_steps=opts.num_steps, lr=None if given else opts.lr,
                           betas=list(opts.betas) if betas else None,
                           gradient_penalty=opts.gradient_penalty if name == "wasserstein"
                           else None,
                           r1_penalty=opts.r1_penalty if name != "wasserstein" else None,
                           non_saturating=non_saturating if name != "wasserstein" else None,
                           ema=opts.ema,  # None for a frozen generator (refused with ema)
                           critic_losses=[float(v) for v in per_round])
        if not g_params:  # the critic alone: its loss is the trace
            result.losses = [float(v) for v in per_round]
        return result


def _both(first, second):
    return first if second is None else (lambda: (first(), second()))


def _every(k: int, fn):
    """``fn`` on every k-th call."""
    count = [0]

    def call():
        count[0] += 1
        if count[0] % k == 0:
            fn()
    return call


def _heldout_mmd(model: "GAN", data: Data):
    """The held-out loss: unbiased MMD^2 between the held-out rows and as many draws
    (codes fixed under seed 0), on standardized columns, bandwidth fixed at the start."""
    if data.x_val is None:
        return None
    from ..metrics import mmd, median_bandwidth

    held = model.to_unit(data.x_val).detach()
    bandwidth = median_bandwidth(held)
    c = data.c_val

    def loss() -> float:
        with torch.no_grad(), seeded(0):
            fake = _fake(model, held.shape[0], c)
        return float(mmd(held, fake, bandwidth=bandwidth).estimate)

    return loss


__all__ = ["DIVERGENCE_DEFAULTS", "OTHER_DEFAULTS", "PER_DIVERGENCE", "AdversarialEngine",
           "AdversarialOptions", "CriticLoss", "GeneratorLoss"]
