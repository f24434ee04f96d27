"""The one stochastic-optimization loop that every optimizing method shares.

It is Pyro's :meth:`pyro.infer.SVI.step` written out so that the step can be refused:
the loss and gradients are computed, checked for finiteness, and only then handed to the
optimizer. A non-finite loss therefore leaves the parameters at their last finite
values, and Ctrl-C leaves a consistent state behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import warnings
from typing import Any, Callable, List, Optional, Sequence, Set

import pyro.optim
import torch
from pyro import poutine
from tqdm.auto import tqdm

from .._validation import positive_float, positive_int

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}


class NonFiniteLossError(FloatingPointError):
    def __init__(self, step: int, loss: float, where: str):
        super().__init__(
            f"Non-finite {where} at step {step} (loss = {loss}); the parameters were left at "
            f"their values after step {step - 1}. Try a smaller lr, or check the data scale.")
        self.step = step


@dataclasses.dataclass
class SVIResult:
    """Named result of :func:`run_svi` (after NumPyro's ``SVIRunResult``)."""

    losses: List[float]
    interrupted: bool
    error: Optional[NonFiniteLossError] = None


def validate_optim_options(*, num_steps=1, lr=1.0, lr_decay=1.0, batch_size=None,
                           optimizer="adam", callback=None, jit=None) -> None:
    """Check optimization options up front (before any state changes)."""
    positive_int(num_steps, "num_steps")
    positive_float(lr, "lr")
    lr_decay = positive_float(lr_decay, "lr_decay")
    if lr_decay > 1:
        raise ValueError(f"Expected 0 < lr_decay <= 1 (final lr / initial lr), but got {lr_decay}")
    if batch_size is not None:
        positive_int(batch_size, "batch_size")
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(
                f"Unknown optimizer {optimizer!r}; expected one of {sorted(OPTIMIZERS)}, "
                f"a torch.optim.Optimizer subclass or a pyro.optim.PyroOptim instance")
    elif not (isinstance(optimizer, pyro.optim.PyroOptim) or (
            isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer))):
        raise TypeError(f"Expected optimizer to be a name, a torch.optim.Optimizer subclass or "
                        f"a pyro.optim.PyroOptim instance, but got {optimizer!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"Expected callback to be callable, but got {type(callback).__name__}")
    if jit not in (None, True, False):
        raise TypeError(f"Expected jit to be None, True or False, but got {jit!r}")


class _TorchOptim:
    """One torch optimizer over every parameter the loss touches (new parameters join as
    they appear), with the learning rate decaying exponentially to ``lr * lr_decay``."""

    def __init__(self, cls, *, lr: float, lr_decay: float, num_steps: int):
        self.cls, self.lr = cls, lr
        self.gamma = lr_decay ** (1.0 / num_steps)
        self.optim = self.scheduler = None
        self.seen: Set[int] = set()

    def __call__(self, params: Sequence[torch.Tensor]) -> None:
        new = list({id(p): p for p in params if id(p) not in self.seen}.values())
        if new:
            self.seen.update(id(p) for p in new)
            if self.optim is None:
                self.optim = self.cls(new, lr=self.lr)
                self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optim, self.gamma)
            else:
                self.optim.add_param_group({"params": new})
        self.optim.step()
        self.scheduler.step()


def make_optimizer(optimizer: Any, *, lr: float, lr_decay: float, num_steps: int):
    """The optimizer for :func:`run_svi`: a name or ``torch.optim.Optimizer`` subclass
    gets a learning rate decaying exponentially from ``lr`` to ``lr * lr_decay`` over
    ``num_steps``; a ``pyro.optim.PyroOptim`` instance is used as given."""
    if isinstance(optimizer, pyro.optim.PyroOptim):
        return optimizer
    cls = OPTIMIZERS[optimizer] if isinstance(optimizer, str) else optimizer
    return _TorchOptim(cls, lr=lr, lr_decay=lr_decay, num_steps=num_steps)


def make_elbo(cls_name: str, *, jit: bool, max_plate_nesting: Optional[int] = None,
              **kwargs):
    """``Trace_ELBO`` / ``TraceEnum_ELBO`` or its compiled twin ``Jit*`` (same value, less
    overhead). ``max_plate_nesting`` (needed by enumeration and vectorized particles) is
    passed whenever it is given, so Pyro need not guess it from a trace."""
    import pyro.infer as infer

    if max_plate_nesting is not None:
        kwargs["max_plate_nesting"] = max_plate_nesting
    if jit:
        return getattr(infer, "Jit" + cls_name)(ignore_jit_warnings=True, **kwargs)
    return getattr(infer, cls_name)(**kwargs)


@contextlib.contextmanager
def quiet_jit_deprecation():
    """torch >= 2.10 warns that ``torch.jit.trace`` (used by Pyro's Jit* ELBOs and
    ``jit_compile=True`` kernels) is deprecated; it still works, and ``jit=False`` /
    ``jit_compile=False`` avoid it entirely."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.*deprecated",
                                category=DeprecationWarning)
        yield


def _release_grads(params: List[torch.Tensor]) -> None:
    """Drop the gradients (``grad = None``, as ``zero_grad(set_to_none=True)``): the next
    backward allocates them afresh, and nothing is zero-filled in between."""
    for p in params:
        p.grad = None


def _no_latents(*args, **kwargs) -> None:
    """The guide of a model whose phi are all parameters (network weights)."""


def make_guide(model, program: Callable, auto_cls=None, **auto_kwargs):
    """The guide for ``program`` (the model, possibly with priors masked).

    The global sites get ``auto_cls`` (an autoguide class, e.g. AutoDelta) built on the
    program with everything else hidden, so enumerated or amortized local latents never
    reach it; the model's :attr:`local_guide` (an encoder), if any, is run alongside.

    Returns:
        ``(guide, auto)``: the guide to train and the autoguide (``None`` without
        global sites), whose ``median`` / draws give phi.
    """
    auto = None
    if model.global_sites and auto_cls is not None:
        auto = auto_cls(poutine.block(program, expose=list(model.global_sites)),
                        **auto_kwargs)
    local = model.local_guide
    if local is None:
        return (auto if auto is not None else _no_latents), auto
    if auto is None:
        return local, None

    def guide(*args, **kwargs):
        auto(*args, **kwargs)
        local(*args, **kwargs)

    return guide, auto


def _total_norm(tensors: List[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all tensors together, in one fused call: finite iff every entry is."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def use_jit(jit: Optional[bool], model, subsample_size: Optional[int]) -> bool:
    """Resolve ``jit=None``: compile when the model declares it safe (``jit_safe``) and
    no minibatch indices would be frozen into the compiled graph."""
    if jit is None:
        return bool(getattr(model, "jit_safe", False)) and subsample_size is None
    return jit


def run_svi(model: Callable, guide: Callable, loss, optim, *args, num_steps: int,
            progress: bool = True, callback: Optional[Callable[[int, float], Any]] = None,
            desc: str = "fit", static_params: bool = False, **kwargs) -> SVIResult:
    """Run ``num_steps`` optimization steps of ``loss`` (an ELBO) over the params of
    ``model`` and ``guide`` called with ``*args, **kwargs``.

    ``callback(step, loss)`` runs after each step; returning ``True`` stops early.
    A non-finite loss or gradient stops the loop *before* the optimizer step and is
    returned in ``SVIResult.error``; Ctrl-C returns with ``interrupted=True``.
    Pyro's distribution validation is off inside the loop (the data were validated at
    the boundary; per-step support checks cost more than the step itself).

    ``static_params=True`` records the parameters once, at the first step, instead of
    tracing them every step: for programs whose parameters all exist after one step (a
    network's weights), where the per-step trace is a measurable share of a small step.
    ``loss`` is anything with ``loss_and_grads(model, guide, *args, **kwargs)``, e.g. an
    ELBO, or a wrapper that feeds it a new minibatch each step.
    """
    losses: List[float] = []
    interrupted = False
    error = None
    params = None
    bar = tqdm(total=num_steps, desc=desc, disable=not progress, file=sys.stderr,
               dynamic_ncols=True, leave=False)
    scheduled = isinstance(optim, pyro.optim.PyroLRScheduler)
    try:
        with pyro.validation_enabled(False), quiet_jit_deprecation():
            for step in range(num_steps):
                if params is None or not static_params:
                    with poutine.trace(param_only=True) as capture:
                        value = loss.loss_and_grads(model, guide, *args, **kwargs)
                    params = [site["value"].unconstrained()
                              for site in capture.trace.nodes.values()]
                else:
                    value = loss.loss_and_grads(model, guide, *args, **kwargs)
                value = float(value)
                if not math.isfinite(value):
                    _release_grads(params)
                    error = NonFiniteLossError(step, value, "loss")
                    break
                grads = [p.grad for p in params if p.grad is not None]
                if grads and not torch.isfinite(_total_norm(grads)):
                    _release_grads(params)
                    error = NonFiniteLossError(step, value, "gradient")
                    break
                optim(params)
                _release_grads(params)
                if scheduled:
                    optim.step()
                losses.append(value)
                bar.update()
                if step % 25 == 0:
                    bar.set_postfix(loss=f"{value:.4g}", refresh=False)
                if callback is not None and callback(step, value) is True:
                    break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    return SVIResult(losses=losses, interrupted=interrupted, error=error)
