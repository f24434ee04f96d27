r"""THE optimization loop: every gradient-based fit in the package goes through
:func:`optimize`.

The loop knows *objectives*, not families. An objective is a small callable
``loss(batch) -> scalar tensor`` (a Pyro ELBO wrapped by
:class:`~pyro_genmodels.infer.objectives.ELBOLoss` is one); a :class:`Player` pairs it
with the parameters it moves. One player is ordinary training; two players updated in
alternation (``steps=k`` updates of the first per update of the second) is an
adversarial game, with no second loop.

What the loop owns, once for everyone:

* **Minibatches** (:class:`Minibatches`): a fresh random permutation of the N training
  rows each epoch, cut into batches of B rows (the remainder is skipped, so every batch
  is a uniform random subset of the same shape). Objectives scale the batch by N / B
  (a Pyro plate with ``subsample=batch.index`` does it), so the gradient is unbiased.
  The permutations come from the loop's own generator, seeded from the fit's stream.
* **Data parallelism** (``distributed=True``, :mod:`~pyro_genmodels.infer.distributed`):
  each rank takes its slice of every global batch and the ranks' weighted gradients are
  summed in one all-reduce, so every rank applies the one-process update.
* **The optimizer and its schedule**: one torch optimizer per player, the learning rate
  decaying exponentially from ``lr`` to ``lr * lr_decay`` over ``num_steps``
  (``ExponentialLR``); or a ``pyro.optim.PyroOptim`` as given.
* **Gradient clipping** (``grad_clip``, the global L2 norm).
* **The non-finite guard**: the loss and the gradient norm are checked *before* the
  optimizer step, so a NaN leaves the parameters at their last finite values and the
  result carries a :class:`NonFiniteLossError`. Each step keeps a copy of the parameters
  it starts from: an update that made one non-finite (seen when the next loss fails, or
  at the end) is undone, and a loss that raises after earlier steps worked (a Cholesky
  of an overflowed covariance) is a non-finite loss too.
* **Ctrl-C** returns what was done so far (``interrupted=True``); with validation, at
  the parameters of the best held-out evaluation so far, as for a run that ends.
* **Progress** (tqdm on stderr, showing the loss), ``callback(step, loss)`` (``True``
  stops), held-out **validation** with **early stopping** (``patience``) that keeps the
  best parameters, and atomic **checkpoints** (:mod:`~pyro_genmodels.infer.checkpoint`;
  the directory is created and checked before the first step) from which ``resume``
  continues bit for bit, under the seed the checkpoint was made with.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import pyro
import pyro.optim
import torch
from tqdm.auto import tqdm

from .._rng import cuda_devices
from .._validation import check_bool, first_line, positive_float, store_counts
from . import distributed
from .batches import (Batch, BadRowError, Minibatches, first_batch, first_refusal,
                      next_batches, refused_on_ranks)
from .heldout import Best
from .interrupts import script_interrupt
from .optimizers import build_optimizer, check_optimizer


class NonFiniteLossError(FloatingPointError):
    """A step met a non-finite loss or gradient. After a non-finite loss (or one that
    raised) the failing player's parameters are put back to their values before its last
    update, whose loss ``put_back`` was finite; after a non-finite gradient they stay."""

    def __init__(self, step: int, loss: Optional[float], where: str,
                 hint: Optional[str] = None, put_back: Optional[float] = None) -> None:
        hint = hint or "Try a smaller lr, or check the data scale."
        self.summary = f"Non-finite {where} at step {step} (loss = {loss})"  # what it met
        kept = (("the parameters were left at their starting values" if step == 0 else
                 f"the parameters were left at their values after step {step - 1}")
                if put_back is None else f"the parameters were put back to their values "
                f"before the last update, where the loss was finite ({put_back:.6g})")
        super().__init__(f"{self.summary}; {kept}. {hint}")
        self.step = step


@dataclasses.dataclass
class FitResult:
    """What an engine hands the facade (after NumPyro's ``SVIRunResult``); the facade
    alone turns it into a :class:`~pyro_genmodels.Fit` (or raises ``FitError`` when
    ``error`` is set).

    Attributes:
        point / posterior / sample_stats: phi as a point, or draws ``(chains, draws, ...)``.
        losses: one float per step (per round, for several players).
        interrupted: Ctrl-C stopped it.
        error: the non-finite step, or the step whose streamed minibatch met a bad row.
        info: engine facts for the user (``stopped``, ``best_step``, ``heldout_losses``,
            ``jit``, ...); JSON types only.
    """

    point: Optional[Dict[str, torch.Tensor]] = None
    posterior: Optional[Dict[str, torch.Tensor]] = None
    sample_stats: Optional[Dict[str, torch.Tensor]] = None
    losses: List[float] = dataclasses.field(default_factory=list)
    interrupted: bool = False
    error: Optional[Union[NonFiniteLossError, BadRowError]] = None
    info: Dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoopOptions:
    """Options of the loop, shared by every optimizing engine (defaults are the shared
    ``mle``/``map`` ones; families override them per engine).

    Attributes:
        num_steps: optimization steps (rounds, with several players).
        lr: initial learning rate.
        lr_decay: final / initial learning rate (exponential decay in between), in (0, 1].
        batch_size: rows per step; ``None`` (or >= N) uses all rows every step.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"``, ``"rmsprop"``, ``"adagrad"``, a
            ``torch.optim.Optimizer`` subclass whose ``step()`` takes no required closure
            (LBFGS's does, and is refused), or a ``pyro.optim.PyroOptim`` instance (with its
            own learning rate and schedule: ``lr`` and ``lr_decay`` given beside it are
            refused, :func:`~pyro_genmodels.infer.optimizers.refuse_unread`).
        grad_clip: clip the global gradient L2 norm to this value; ``None``: off.
        callback: ``callback(step, loss)`` after each step; returning ``True`` stops.
        validation: held-out data for early stopping: a fraction in (0, 1) of the rows
            (drawn under the fit's seed) or held-out data of the same form as the
            training data. The held-out loss is the family's negative log-likelihood per
            row (its bound or estimate where the density is not exact).
        patience: stop after this many held-out evaluations without improvement;
            ``None`` runs all steps. Either way the best parameters are kept (also when
            Ctrl-C ends the fit).
        validate_every: steps between held-out evaluations; ``None``: once per epoch.
        checkpoint: a directory to write the loop's whole state to, atomically, every
            ``checkpoint_every`` steps and at the end. It is created, and checked to take
            a file, before the first step (a ``ValueError`` naming it otherwise).
        checkpoint_every: steps between checkpoints.
        resume: a checkpoint directory to continue from (same model, data, method,
            options and seed; another seed is a ``ValueError``): the result is bit for bit
            that of an uninterrupted run on CPU (with ``distributed=True``: at the same
            number of processes). The checkpoint is checked as ``pgm.load`` checks a saved
            fit (its digest, its keys and types, finite parameters) before any step.
        distributed: train data-parallel in the ``torch.distributed`` process group
            (started by ``torchrun`` or by the user): ``batch_size`` is the global batch,
            each rank takes its share of it, gradients are summed across ranks, and every
            rank ends with the same fit. Only rank 0 writes checkpoints.
    """

    num_steps: int = 1500
    lr: float = 0.05
    lr_decay: float = 0.05
    batch_size: Optional[int] = None
    optimizer: Any = "adam"
    grad_clip: Optional[float] = None
    callback: Optional[Callable[[int, float], Any]] = None
    validation: Any = None
    patience: Optional[int] = None
    validate_every: Optional[int] = None
    checkpoint: Optional[str] = None
    checkpoint_every: int = 100
    resume: Optional[str] = None
    distributed: bool = False

    def __post_init__(self):
        store_counts(self, "num_steps", "checkpoint_every")
        positive_float(self.lr, "lr")
        if positive_float(self.lr_decay, "lr_decay") > 1:
            raise ValueError(f"Expected 0 < lr_decay <= 1 (final lr / initial lr), but got "
                             f"{self.lr_decay}")
        for name in ("batch_size", "patience", "validate_every"):
            if getattr(self, name) is not None:
                store_counts(self, name)
        check_bool(self.distributed, "distributed")
        if self.grad_clip is not None:
            positive_float(self.grad_clip, "grad_clip")
        check_optimizer(self.optimizer)
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"Expected callback to be callable, but got "
                            f"{type(self.callback).__name__}")
        v = self.validation
        if isinstance(v, bool):
            raise TypeError("Expected validation to be a fraction in (0, 1) or held-out data, "
                            "but got a bool")
        if isinstance(v, numbers.Real) or getattr(v, "ndim", None) == 0:
            # a fraction however it comes (1, np.float32(0.2), torch.tensor(0.2)), never
            # one-row held-out data: the engines take a float
            if not 0 < float(v) < 1:
                raise ValueError(f"Expected validation to be a fraction in (0, 1) or "
                                 f"held-out data, but got {v!r}")
            object.__setattr__(self, "validation", float(v))
        for name in ("patience", "validate_every"):  # else read by nothing
            if getattr(self, name) is not None and v is None:
                raise ValueError(f"{name} needs held-out data: pass validation=0.1 (a "
                                 f"fraction of the rows) or validation=<held-out data>")
        for name in ("checkpoint", "resume"):
            p = getattr(self, name)
            if p is not None and not isinstance(p, (str, os.PathLike)):
                raise TypeError(f"Expected {name} to be a directory path, but got "
                                f"{type(p).__name__}")
            if p is not None and os.fspath(p) in ("", b""):
                raise ValueError(f"Expected {name} to be a directory path, but got an empty "
                                 f"one (for the current directory, pass {name}='.')")
        if isinstance(self.optimizer, pyro.optim.PyroOptim) and (self.checkpoint or self.resume):
            raise ValueError("checkpoint=/resume= need a torch optimizer (a name or a "
                             "torch.optim.Optimizer subclass), not a pyro.optim.PyroOptim")


@dataclasses.dataclass
class Player:
    """A set of parameters and the objective they minimize.

    Attributes:
        loss: ``loss(batch) -> scalar tensor``. It may carry state that a checkpoint
            must keep (``state_dict()`` / ``load_state_dict()``, e.g. a replay buffer).
        parameters: the tensors it moves; a list, or a callable returning it, asked
            after the first ``loss`` call (Pyro creates parameters on first use; an
            :class:`~pyro_genmodels.infer.objectives.ELBOLoss` records them).
        steps: updates of this player per round (e.g. k critic steps per generator step).
        lr: this player's initial learning rate (``None``: the loop's ``lr``).
        name: names its entries in the checkpoint and its loss trace.
        optimizer_options: extra keyword arguments of a named optimizer (e.g. Adam's
            ``betas``).
        after_step: called after each of this player's optimizer steps (e.g. to update
            an exponential moving average of its weights, kept in the loss's state).
        average: the :class:`~pyro_genmodels.infer.averaging.WeightAverage` of these
            parameters' module, where the fit keeps that average rather than the last
            weights: held-out losses are measured at it, and early stopping keeps the
            best one.

    A player's loss may depend on another player's parameters (a generator's loss runs
    through the critic): only the player's own parameters receive its gradient.
    """

    loss: Callable[[Batch], torch.Tensor]
    parameters: Any
    steps: int = 1
    lr: Optional[float] = None
    name: str = "main"
    optimizer_options: Dict[str, Any] = dataclasses.field(default_factory=dict)
    after_step: Optional[Callable[[], None]] = None
    average: Any = None
    optim: Any = dataclasses.field(default=None, repr=False)
    scheduler: Any = dataclasses.field(default=None, repr=False)
    params: Optional[List[torch.Tensor]] = dataclasses.field(default=None, repr=False)
    #: the loss of this player's latest update (across ranks, when distributed)
    last_loss: Optional[float] = dataclasses.field(default=None, repr=False)
    #: the parameters before the latest update, to undo one that made them non-finite
    saved: Optional[List[torch.Tensor]] = dataclasses.field(default=None, repr=False)

    def resolve(self) -> List[torch.Tensor]:
        """The tensors this player moves (asking ``parameters`` once, if it is a callable);
        only those with ``requires_grad``."""
        if self.params is None:
            got = self.parameters() if callable(self.parameters) else self.parameters
            self.params = [p for p in got if p.requires_grad]
        return self.params


def _max_abs(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The largest ``|entry|`` of all tensors, in one fused call: finite iff every entry
    is (an L2 norm would overflow on finite entries of 1e20 in float32)."""
    return torch.stack(torch._foreach_norm(list(tensors), ord=math.inf)).max()


def _all_finite(tensors: Sequence[torch.Tensor]) -> bool:
    return bool(torch.isfinite(_max_abs(tensors)))


def _undo_overflow(player: Player, step: int) -> Optional[NonFiniteLossError]:
    """When the update before ``step`` left a non-finite parameter (a finite loss and
    gradient, but a step too far: lr=1e30), put the parameters back as they were before
    it and say so; else ``None``. Checked only when something failed and once at the end,
    so a step costs just the copy of its parameters."""
    if player.saved is None or _all_finite(player.resolve()):
        return None
    with torch.no_grad():
        torch._foreach_copy_(player.resolve(), player.saved)
    return NonFiniteLossError(step - 1, player.last_loss, "parameter update")


def _put_back(player: Player, step: int, value: float, where: str,
              hint: Optional[str] = None) -> NonFiniteLossError:
    """The error of step ``step``, whose loss is not finite (or raised): the parameters it
    ran at came from the last update, so they are put back as they were before it,
    where the loss was last finite (a parameter finite in its unconstrained space can be
    infinite as the model reads it: PPCA's ``sigma = exp(800)``). On the first step,
    the initial values stay."""
    error = _undo_overflow(player, step)
    if error is not None:
        return error
    if player.saved is None or player.last_loss is None:
        return NonFiniteLossError(step, value, where, hint)
    with torch.no_grad():
        torch._foreach_copy_(player.resolve(), player.saved)
    return NonFiniteLossError(step, value, where, hint, put_back=player.last_loss)


def _loss(player: Player, batch: Batch, step: int, group
          ) -> Tuple[Optional[torch.Tensor], Optional[str]]:
    """``(player.loss(batch), None)``, or ``(None, why)`` for a loss that raised after
    earlier updates had worked: then only the parameter values changed, so it is a
    numerical failure (a Cholesky of an overflowed covariance, a distribution of
    non-finite parameters), and the fit ends as at a non-finite loss. On the first
    update (or in a process group, where every rank must take the same branch) the error
    propagates: it is a bug."""
    try:
        return player.loss(batch), None
    except (RuntimeError, ValueError) as e:
        if script_interrupt(e):  # a Ctrl-C in a traced ELBO: the fit keeps what it has
            raise KeyboardInterrupt from None
        if player.last_loss is None or group is not None:
            raise
        reason = first_line(e)[:300]
        return None, (f"The loss raised {type(e).__name__} ({reason}) at parameter values "
                      f"that earlier steps produced. Try a smaller lr, or check the data "
                      f"scale.")


def _release(params: Sequence[torch.Tensor]) -> None:
    for p in params:
        p.grad = None


def _update(player: Player, batch: Batch, opts: LoopOptions, step: int, group=None
            ) -> Tuple[float, Optional[NonFiniteLossError]]:
    """One guarded optimizer step of ``player`` on ``batch``: (loss, error). With a
    ``group``, the loss and gradient are the ranks' weighted sum (every rank the same)."""
    loss, failed = _loss(player, batch, step, group)
    if loss is None:
        return math.nan, _put_back(player, step, math.nan, "loss", failed)
    value = float(loss.detach())
    params = player.resolve()
    if group is None and not math.isfinite(value):
        return value, _put_back(player, step, value, "loss")
    # the gradient of this player's parameters only (not .backward(), which would leave
    # gradients on every other player's parameters the loss runs through)
    got: Sequence[Optional[torch.Tensor]] = torch.autograd.grad(loss, params, allow_unused=True)
    if group is not None:  # every rank takes the same branch of the guard below
        value, got = distributed.reduce_step(loss, got, params, batch.weight, group, step)
        if not math.isfinite(value):
            return value, _put_back(player, step, value, "loss")
    for p, g in zip(params, got):
        p.grad = g
    grads = [g for g in got if g is not None]
    if grads:
        if opts.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, opts.grad_clip)
        else:
            norm = _max_abs(grads)
        if not torch.isfinite(norm):
            _release(params)
            return value, _undo_overflow(player, step) or NonFiniteLossError(step, value,
                                                                             "gradient")
    if player.optim is None:
        build_optimizer(player, opts)
    with torch.no_grad():
        if player.saved is None:
            player.saved = [p.detach().clone() for p in params]
        else:
            torch._foreach_copy_(player.saved, [p.detach() for p in params])
    if isinstance(player.optim, pyro.optim.PyroOptim):
        player.optim(params)
        if isinstance(player.optim, pyro.optim.PyroLRScheduler):
            player.optim.step()
    else:
        player.optim.step()
        player.scheduler.step()
    _release(params)
    player.last_loss = value
    if player.after_step is not None:
        player.after_step()
    return value, None


def optimize(players: Sequence[Player], x: torch.Tensor, c: Optional[torch.Tensor],
             opts: LoopOptions, *, heldout: Optional[Callable[[], float]] = None,
             progress: bool = True, desc: str = "fit",
             fingerprint: Optional[Dict[str, Any]] = None) -> FitResult:
    """Run ``opts.num_steps`` rounds; each round every player makes ``player.steps``
    guarded updates, each on a fresh minibatch of the training rows ``x`` (and ``c``).

    Args:
        players: one (ordinary training) or more (alternating) :class:`Player`.
        x, c: the training rows ``(N, ...)`` and their conditioning values (or ``None``).
        opts: the loop's options.
        heldout: ``heldout() -> float``, the held-out loss at the current parameters;
            needed when ``opts.validation`` is set (the engine splits the data).
        progress: tqdm on stderr.
        desc: the progress bar's label.
        fingerprint: JSON facts that a checkpoint must match to be resumed (model,
            method, data size).

    Returns:
        a :class:`FitResult` with ``losses`` (the last player's loss per round),
        ``interrupted``, ``error`` and ``info`` (``stopped``; with validation
        ``heldout_losses`` and ``best_step``).
    """
    from . import checkpoint as ckpt

    players = list(players)
    group = distributed.current() if opts.distributed else None
    if opts.distributed and group is None:
        raise ValueError("distributed=True needs an initialized process group (fit() "
                         "starts one under torchrun)")
    # the fit's seed (fit() runs the engine under pyro.set_rng_seed(seed)): a checkpoint
    # records it, and a resume must run under it
    fit_seed = int(torch.initial_seed())
    # a checkpoint directory that cannot be written fails now, not after the training it
    # was to keep (the writer, rank 0, checks; its answer travels with the seed)
    problem = None
    if opts.checkpoint is not None and (group is None or group.main):
        try:
            ckpt.prepare(opts.checkpoint)
        except ValueError as e:
            if group is None:
                raise
            problem = str(e)
    # the minibatch generator's seed, drawn from the fit's stream (alike on every rank)
    seed = int(torch.randint(2 ** 62, ()))
    if group is not None:
        seed, problem = distributed.gather((seed, problem), group,
                                           "minibatch seed agreement")[0]
        if problem is not None:
            raise ValueError(problem)
        distributed.check_same_fit(fingerprint or {}, x.shape[0], group)
        if not group.main:  # independent local noise on the other ranks
            pyro.set_rng_seed(distributed.rank_seed(seed, group.rank))
    batches = Minibatches(x, c, opts.batch_size, seed=seed, group=group)
    best = Best() if heldout is not None else None
    every = opts.validate_every or batches.steps_per_epoch
    losses: List[float] = []
    start, stopped = 0, None
    if opts.resume is not None:
        loaded = ckpt.read(opts.resume)  # checked, and matched to this fit, before any work
        ckpt.check_fit(loaded[0], opts.resume, fingerprint=fingerprint or {}, seed=fit_seed,
                       num_steps=opts.num_steps, heldout=best is not None)
        for pl in players:  # create the parameters (values, RNG are then overwritten)
            pl.loss(batches.next())
            build_optimizer(pl, opts)
        start, losses, stopped = ckpt.restore(opts.resume, players, batches, best,
                                              fingerprint or {}, group=group, loaded=loaded,
                                              seed=fit_seed, num_steps=opts.num_steps)
    elif group is not None:
        for pl in players:  # create Pyro's lazy parameters, then take rank 0's values
            batch, refused = first_batch(batches) if callable(pl.parameters) else (None, None)
            if batch is not None:
                with torch.random.fork_rng(devices=cuda_devices()):
                    pl.loss(batch)
            shapes = None if refused else [tuple(p.shape) for p in pl.resolve()]
            seen = distributed.gather((shapes, refused), group, "parameter check")
            if any(why for _, why in seen):  # a row of the first minibatch: every rank says so
                raise ValueError(first_refusal([why for _, why in seen]))
            if any(s != shapes for s, _ in seen):
                raise RuntimeError(f"The ranks' {pl.name!r} parameters differ in number, "
                                   f"order or shape; a distributed fit needs the same "
                                   f"model on every rank")
            distributed.broadcast_(pl.resolve(), group)
    interrupted = False
    error: Optional[Union[NonFiniteLossError, BadRowError]] = None
    bar = tqdm(total=opts.num_steps, initial=start, desc=desc, disable=not progress,
               file=sys.stderr, dynamic_ncols=True, leave=False)
    step = start
    try:
        for step in range(start, opts.num_steps if stopped is None else start):
            # the round's batches are read before any update, so a bad streamed row ends
            # the fit with every player as it was after the last step
            read, bad_row = next_batches(batches, sum(pl.steps for pl in players), step,
                                         start, group)
            if group is not None and batches.stream is not None:
                # streamed rows are checked as they are read, each rank its share: every
                # rank hears of a refusal before any loss runs (one flag per round)
                if distributed.any_rank(bad_row is not None, group, "row check", step):
                    bad_row = refused_on_ranks(step, start, group, bad_row)
            elif bad_row is not None and group is not None:  # rows checked before training
                raise bad_row.cause
            error = bad_row
            queue = iter(read)
            for pl in players:
                for _ in range(pl.steps if error is None else 0):
                    value, error = _update(pl, next(queue), opts, step, group)
                    if error is not None:
                        break
                if error is not None:
                    break
            if error is not None:
                break
            losses.append(value)
            bar.update()
            if step % 25 == 0:
                bar.set_postfix(loss=f"{value:.4g}", refresh=False)
            done = step + 1
            if best is not None and heldout is not None and (
                    done % every == 0 or done == opts.num_steps):
                with best.at_kept_weights(players):  # what the fit keeps: scored, copied
                    if group is None:
                        held = float(heldout())
                    else:  # rank 0 evaluates; every rank makes the same decision
                        held = distributed.broadcast_float(
                            float(heldout()) if group.main else None, group,
                            "held-out evaluation", step)
                    best.record(done, held, players)
                if opts.patience is not None and best.bad >= opts.patience:
                    stopped = "early_stopping"
            if opts.callback is not None:
                stop = opts.callback(step, value) is True
                if group is not None:
                    stop = distributed.any_rank(stop, group, "callback's stop", step)
                if stop:
                    stopped = stopped or "callback"
            if opts.checkpoint is not None and (done % opts.checkpoint_every == 0
                                                or stopped or done == opts.num_steps):
                # an update that overflowed a parameter is undone and ends the fit here
                # (as the next loss would), rather than saved in a checkpoint that
                # cannot be resumed (every rank has the same parameters: the same branch)
                error = next((e for e in (_undo_overflow(pl, done) for pl in players) if e),
                             None)
                if error is not None:
                    break
                # early stopping is an end; a callback's stop is not: resuming goes on
                ckpt.write(opts.checkpoint, players, batches, best, done, losses,
                           "early_stopping" if stopped == "early_stopping" else None,
                           fingerprint or {}, group=group, seed=fit_seed)
            if stopped:
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    if (error is None or isinstance(error, BadRowError)) and not interrupted and losses:
        # the last update, checked once (before a bad row too: err.fit keeps it)
        at = step if error is not None else step + 1
        error = next((e for e in (_undo_overflow(pl, at) for pl in players) if e), error)
    info: Dict[str, Any] = {"stopped": "interrupted" if interrupted else (
        "bad_row" if isinstance(error, BadRowError) else
        "non_finite" if error is not None else stopped)}
    if group is not None:
        info["distributed"] = group.info()
        # what the engine draws after the loop (a VI posterior) must be alike on every
        # rank: all continue from rank 0's random state
        torch.set_rng_state(distributed.gather(torch.get_rng_state(), group,
                                               "random state agreement")[0])
    if best is not None:
        # also after Ctrl-C and a bad row (finite parameters): those info describes
        if error is None or isinstance(error, BadRowError):
            best.restore(players)
        info.update(heldout_losses=[[s, v] for s, v in best.history], best_step=best.step,
                    best_heldout_loss=best.loss if math.isfinite(best.loss) else None)
    return FitResult(losses=losses, interrupted=interrupted, error=error, info=info)
