"""``vi``: an autoguide over the global parameters, fitted by SVI (Trace_ELBO).

``guide="mvn"`` (default) is :class:`~pyro.infer.autoguide.AutoMultivariateNormal`, a
full-covariance Gaussian in the unconstrained space, exact for conjugate Gaussian
posteriors; ``guide="normal"`` is the mean-field :class:`~pyro.infer.autoguide.AutoNormal`.
After training, ``num_posterior_samples`` draws of phi are stored in the fit (one chain).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import pyro
import torch
from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal, init_to_value

from .._validation import positive_float, positive_int
from ..base import FitError, GenerativeModel, make_fit
from .svi import make_elbo, make_guide, make_optimizer, run_svi, use_jit, validate_optim_options

GUIDES = {"mvn": AutoMultivariateNormal, "normal": AutoNormal}


def _validate(model: GenerativeModel, x: torch.Tensor, *, guide="mvn", num_particles=1,
              num_posterior_samples=1000, init_scale=0.1, **options) -> None:
    validate_optim_options(**options)
    if guide not in GUIDES:
        raise ValueError(f"Unknown guide {guide!r}; expected one of {sorted(GUIDES)}")
    positive_int(num_particles, "num_particles")
    positive_int(num_posterior_samples, "num_posterior_samples")
    positive_float(init_scale, "init_scale")


def fit_vi(model: GenerativeModel, x: torch.Tensor, *, c=None, guide: str = "mvn",
           num_steps: int = 3000, lr: float = 0.02, lr_decay: float = 0.05,
           batch_size: Optional[int] = None, optimizer: Any = "adam", num_particles: int = 1,
           num_posterior_samples: int = 1000, init_scale: float = 0.1,
           callback: Optional[Callable] = None, jit: Optional[bool] = None,
           progress: bool = True) -> Dict[str, Any]:
    """Variational inference of phi. Losses are the negative ELBO per step.

    Options as for :func:`~pyro_genmodels.infer.point.fit_point`, plus ``guide``
    (``"mvn"`` or ``"normal"``), ``init_scale`` (initial sd of q in the unconstrained
    space), ``num_particles`` (ELBO samples per step) and ``num_posterior_samples``
    (draws of phi stored in the fit).
    """
    train_guide, q = make_guide(model, model.model, GUIDES[guide], init_scale=init_scale,
                                init_loc_fn=init_to_value(values=model.init_values(x)))
    optim = make_optimizer(optimizer, lr=lr, lr_decay=lr_decay, num_steps=num_steps)
    subsample = None if batch_size is None or batch_size >= x.shape[0] else batch_size
    elbo = make_elbo(model.elbo, jit=use_jit(jit, model, subsample),
                     max_plate_nesting=model.max_plate_nesting,
                     num_particles=num_particles, vectorize_particles=False)
    result = run_svi(model.model, train_guide, elbo, optim, x, c=c, subsample_size=subsample,
                     num_steps=num_steps, progress=progress, callback=callback, desc="vi")
    with torch.no_grad(), pyro.validation_enabled(False):
        q(x, c=c)  # builds the guide's prototype if the loop was interrupted before step 0
        draws = [q(x, c=c) for _ in range(num_posterior_samples)]
    posterior = {k: torch.stack([d[k] for d in draws]).unsqueeze(0)
                 for k in model.global_sites}
    out = {"posterior": posterior, "losses": result.losses, "interrupted": result.interrupted,
           "info": {"guide": guide}}
    if result.error is not None:
        raise FitError(str(result.error), fit=make_fit(model, "vi", data=x, context=c, **out),
                       step=result.error.step) from result.error
    return out


fit_vi.validate_options = _validate
