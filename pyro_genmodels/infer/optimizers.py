"""The optimizer of a loop's player and its learning-rate schedule.

A named optimizer (:data:`OPTIMIZERS`) or a ``torch.optim.Optimizer`` subclass is built
per player at ``lr`` (the player's own, or the loop's), with its learning rate decaying
exponentially to ``lr * lr_decay`` over ``num_steps`` (``ExponentialLR``). A
``pyro.optim.PyroOptim`` instance is used as given: it brings its own learning rate and
schedule, so the options that would set them are refused beside it rather than recorded
and ignored. The loop calls ``step()`` with no arguments after each backward pass, so an
optimizer whose ``step`` requires a closure (``torch.optim.LBFGS``) is refused up front.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Mapping

import pyro.optim
import torch

#: the optimizers ``optimizer=`` names, built per player at its learning rate
OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}

#: options that only a torch optimizer the loop builds reads (a PyroOptim has its own)
TORCH_OPTIMIZER_OPTIONS = ("lr", "lr_decay", "critic_lr", "betas")


def check_optimizer(opt: Any) -> None:
    """Refuse an ``optimizer=`` that is not a name of :data:`OPTIMIZERS`, a
    ``torch.optim.Optimizer`` subclass or a ``pyro.optim.PyroOptim`` instance, and one
    whose torch optimizer's ``step`` requires a closure (:func:`needs_closure`)."""
    if isinstance(opt, str):
        if opt not in OPTIMIZERS:
            raise ValueError(
                f"Unknown optimizer {opt!r}; expected one of {sorted(OPTIMIZERS)}, "
                f"a torch.optim.Optimizer subclass or a pyro.optim.PyroOptim instance")
        return
    if not (isinstance(opt, pyro.optim.PyroOptim) or (
            isinstance(opt, type) and issubclass(opt, torch.optim.Optimizer))):
        raise TypeError(f"Expected optimizer to be a name, a torch.optim.Optimizer "
                        f"subclass or a pyro.optim.PyroOptim instance, but got {opt!r}")
    cls = getattr(opt, "pt_optim_constructor", opt)  # a PyroOptim's torch optimizer
    if needs_closure(cls):
        name = getattr(cls, "__qualname__", repr(cls))
        raise ValueError(
            f"optimizer={name}: its step() requires a closure (it re-evaluates the loss "
            f"itself, as LBFGS does), and the training loop calls step() without one: "
            f"closure-based optimizers are not supported. Expected one of "
            f"{sorted(OPTIMIZERS)}, or a torch.optim.Optimizer subclass (or a "
            f"pyro.optim.PyroOptim of one) whose step() takes no required closure")


def needs_closure(cls: Any) -> bool:
    """Whether ``cls.step`` has a ``closure`` parameter without a default (LBFGS's)."""
    try:
        params = inspect.signature(cls.step).parameters
    except (AttributeError, TypeError, ValueError):  # no step, or no signature to read
        return False
    closure = params.get("closure")
    return closure is not None and closure.default is inspect.Parameter.empty


def refuse_unread(opts: Any, given: Mapping[str, Any]) -> Any:
    """``opts``, an engine's options record, after refusing the options among ``given``
    (the user's) that its ``optimizer`` would not read: ``lr=0.01`` beside
    ``optimizer=pyro.optim.Adam({"lr": 1e-3})`` trained at 1e-3 and recorded 0.01."""
    unread = [k for k in TORCH_OPTIMIZER_OPTIONS if k in given]
    opt = getattr(opts, "optimizer", None)
    if unread and isinstance(opt, pyro.optim.PyroOptim):
        name = getattr(opt, "pt_optim_constructor", type(opt)).__name__
        raise ValueError(
            f"{', '.join(f'{k}=' for k in unread)}: options of the optimizer the loop "
            f"builds, but optimizer=pyro.optim.{name}(...) is used as given, with its own "
            f"learning rate and schedule. Pass the learning rate in its arguments (e.g. "
            f"pyro.optim.Adam({{'lr': 0.01}})) and a schedule as a pyro.optim scheduler "
            f"(pyro.optim.ExponentialLR), or pass optimizer='adam' with lr=")
    return opts


def build_optimizer(player: Any, opts: Any) -> None:
    """Set ``player.optim`` (and ``player.scheduler`` for a torch optimizer) from the
    loop's options ``opts``."""
    opt = opts.optimizer
    if isinstance(opt, pyro.optim.PyroOptim):
        player.optim = opt
        return
    cls = OPTIMIZERS[opt] if isinstance(opt, str) else opt
    # the built-in optimizers update all tensors in one multi-tensor (foreach) call; same
    # arithmetic as the per-tensor loop torch picks by default on CPU, fewer kernel calls
    extra = {"foreach": True} if isinstance(opt, str) else {}
    player.optim = cls(player.resolve(), lr=player.lr or opts.lr, **extra,
                       **player.optimizer_options)
    gamma = opts.lr_decay ** (1.0 / opts.num_steps)
    player.scheduler = torch.optim.lr_scheduler.ExponentialLR(player.optim, gamma)


def _name(cls: Any) -> str:
    return f"{cls.__module__}.{cls.__qualname__}" if isinstance(cls, type) else repr(cls)


def recorded(options: Dict[str, Any]) -> Dict[str, Any]:
    """The options a fit records, with its optimizer as a name: a ``pyro.optim.PyroOptim``
    as ``"pyro.optim.<Name>"`` and its arguments (``optimizer_args``, when a dict; a
    ``pyro.optim`` scheduler's name, with its torch optimizer, that optimizer's arguments
    and its own), without the options of the optimizer the loop builds (``lr``,
    ``lr_decay``, ...), which it did not read (they recorded the defaults, 0.05 and 0.05,
    for a fit at 1e-3); a ``torch.optim.Optimizer`` subclass as its module and name."""
    opt = options.get("optimizer")
    if isinstance(opt, pyro.optim.PyroOptim):
        options = {k: v for k, v in options.items() if k not in TORCH_OPTIMIZER_OPTIONS}
        args = dict(opt.pt_optim_args) if isinstance(opt.pt_optim_args, dict) else None
        scheduler = getattr(opt, "pt_scheduler_constructor", None)  # a PyroLRScheduler
        if scheduler is not None:
            options["optimizer"] = f"pyro.optim.{scheduler.__name__}"
            args = {"optimizer": _name(opt.pt_optim_constructor), "optim_args": args,
                    **getattr(opt, "kwargs", {})}
        else:
            name = getattr(opt.pt_optim_constructor, "__name__", type(opt).__name__)
            options["optimizer"] = f"pyro.optim.{name}"
        if args is not None:
            options["optimizer_args"] = args
    elif isinstance(opt, type):
        options = {**options, "optimizer": _name(opt)}
    return options
