"""Point estimates of the global parameters: ``mle`` and ``map`` through AutoDelta.

With an AutoDelta guide the ELBO is exactly the log joint at the point, so

* ``map`` maximizes ``log p(x | phi) + log p(phi)``, and
* ``mle`` maximizes ``log p(x | phi)``: the same program with the prior sites masked
  (:class:`FlatPriors`), so their supports still define the constrained space that
  AutoDelta optimizes over, but their densities no longer count.

Under an isotropic Gaussian prior ``N(0, s^2 I)`` the MAP objective is the MLE objective
plus the L2 penalty ``||phi||^2 / (2 s^2)`` (and a constant); the tests check this.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Optional

import torch
from pyro.infer.autoguide import AutoDelta, init_to_value
from pyro.poutine.messenger import Messenger

from ..base import FitError, GenerativeModel, make_fit
from .svi import make_elbo, make_guide, make_optimizer, run_svi, use_jit, validate_optim_options


class FlatPriors(Messenger):
    """Mask the log-density of the named sites (an improper flat prior): the model's
    ``prior_sites``, latent sample sites or a weight-prior factor."""

    def __init__(self, sites: Iterable[str]):
        super().__init__()
        self.sites = frozenset(sites)

    def _process_message(self, msg: Dict[str, Any]) -> None:
        if msg["type"] == "sample" and msg["name"] in self.sites:
            msg["mask"] = False


def _validate(model: GenerativeModel, x: torch.Tensor, **options) -> None:
    validate_optim_options(**options)


def fit_point(model: GenerativeModel, x: torch.Tensor, *, method: str, c=None,
              num_steps: int = 1500, lr: float = 0.05, lr_decay: float = 0.05,
              batch_size: Optional[int] = None, optimizer: Any = "adam",
              callback: Optional[Callable] = None, jit: Optional[bool] = None,
              progress: bool = True) -> Dict[str, Any]:
    """Optimize the AutoDelta point of phi for ``num_steps`` steps.

    Options:
        num_steps: optimization steps.
        lr, lr_decay: initial learning rate, and final / initial learning rate
            (exponential decay in between).
        batch_size: minibatch size for a subsampled data plate (unbiased gradient);
            ``None`` uses all the data every step.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"``, ``"rmsprop"``, ``"adagrad"``, a
            ``torch.optim.Optimizer`` subclass, or a ``pyro.optim.PyroOptim``.
        callback: ``callback(step, loss)`` after each step; return ``True`` to stop.
        jit: compile the loss with ``JitTrace_ELBO``; ``None`` compiles when the model
            says it is safe and the whole data set is used each step.
    """
    program = model.model
    if method == "mle":
        program = FlatPriors(model.prior_sites)(model.model)
    init = model.init_values(x) if model.global_sites else {}
    guide, auto = make_guide(model, program, AutoDelta, init_loc_fn=init_to_value(values=init))
    optim = make_optimizer(optimizer, lr=lr, lr_decay=lr_decay, num_steps=num_steps)
    subsample = None if batch_size is None or batch_size >= x.shape[0] else batch_size
    elbo = make_elbo(model.elbo, jit=use_jit(jit, model, subsample),
                     max_plate_nesting=model.max_plate_nesting)
    result = run_svi(program, guide, elbo, optim, x, c=c, subsample_size=subsample,
                     num_steps=num_steps, progress=progress, callback=callback, desc=method)
    with torch.no_grad():
        point = {} if auto is None else {
            k: v.detach().clone() for k, v in auto.median(x, c=c).items()
            if k in model.global_sites}
    out = {"point": point, "losses": result.losses, "interrupted": result.interrupted}
    if result.error is not None:
        partial = make_fit(model, method, data=x, context=c, **out)
        raise FitError(str(result.error), fit=partial, step=result.error.step) from result.error
    return out


def fit_mle(model, x, *, c=None, num_steps=1500, lr=0.05, lr_decay=0.05, batch_size=None,
            optimizer="adam", callback=None, jit=None, progress=True):
    """Maximum likelihood: priors ignored. See :func:`fit_point` for the options."""
    return fit_point(model, x, method="mle", c=c, num_steps=num_steps, lr=lr, lr_decay=lr_decay,
                     batch_size=batch_size, optimizer=optimizer, callback=callback, jit=jit,
                     progress=progress)


def fit_map(model, x, *, c=None, num_steps=1500, lr=0.05, lr_decay=0.05, batch_size=None,
            optimizer="adam", callback=None, jit=None, progress=True):
    """Maximum a posteriori (in the constrained space of phi)."""
    return fit_point(model, x, method="map", c=c, num_steps=num_steps, lr=lr, lr_decay=lr_decay,
                     batch_size=batch_size, optimizer=optimizer, callback=callback, jit=jit,
                     progress=progress)


fit_mle.validate_options = _validate
fit_map.validate_options = _validate
