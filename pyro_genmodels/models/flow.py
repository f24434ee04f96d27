r"""Normalizing flows: exact likelihood by change of variables, built on zuko.

A flow is an invertible map :math:`z = f_\phi(x)` (or :math:`f_\phi(x; c)`) to a standard
normal base :math:`z \sim \mathcal N(0, I)`, so the density is exact and sampling is one
inverse pass:

.. math::

    \log p_\phi(x \mid c) = \log \mathcal N(f_\phi(x; c); 0, I)
        + \log \left| \det \frac{\partial f_\phi(x; c)}{\partial x} \right|,
    \qquad x = f_\phi^{-1}(z; c).

The transforms come from zuko (NSF, MAF, RealNVP, NICE, ...); the flow enters the Pyro
program as an ordinary distribution through ``pyro.contrib.zuko.ZukoToPyro``. Its weights
are phi: ``mle`` trains them by maximum likelihood, ``map`` adds the isotropic Gaussian
prior ``w ~ N(0, prior_scale^2)`` on every weight, written as the factor site
``weight_prior`` (so MAP is exactly L2 regularization ``||w||^2 / (2 prior_scale^2)``).

References:
    Papamakarios, Nalisnick, Rezende, Mohamed & Lakshminarayanan (2021), *Normalizing
    Flows for Probabilistic Modeling and Inference*, JMLR 22(57).
    Durkan, Bekasov, Murray & Papamakarios (2019), *Neural Spline Flows*, NeurIPS.
    Rozet et al., *Zuko: Normalizing flows in PyTorch*, https://github.com/probabilists/zuko
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import pyro
import torch

# zuko turns torch's argument checks off for the whole process when it is imported
# (``Distribution._validate_args = False`` in zuko.distributions). A library must not
# change its user's torch, and Pyro, whose flag still said on, turned them back on at the
# end of the first ``pyro.validation_enabled(False)`` block: a fit that ran before
# another changed what the other checked. So the flag is put back as it was.
_TORCH_CHECKS = torch.distributions.Distribution._validate_args
import zuko  # noqa: E402
from pyro.contrib.zuko import ZukoToPyro  # noqa: E402
from zuko.distributions import NormalizingFlow  # noqa: E402
from zuko.lazy import UnconditionalTransform  # noqa: E402
from zuko.transforms import (AdditiveTransform, ComposedTransform,  # noqa: E402
                             MonotonicAffineTransform)

torch.distributions.Distribution._validate_args = _TORCH_CHECKS

from .._moments import column_moments, constant_columns
from .._validation import check_bool, positive_float, positive_int
from ..infer.engines import PointEngine
from .._context import StandardizedContext
from ..base import (Capabilities, GenerativeModel, cached_parameters,
                    gaussian_weight_log_prior, register)
from ..infer.objectives import data_plate, plate_rows, prior_factor
from ._checks import constant_said, dependent_columns, hidden_widths, precision_said


class NICE(zuko.flows.NICE):
    r"""NICE (Dinh, Krueger & Bengio, 2014), from zuko's own pieces: ``transforms``
    additive couplings, then a diagonal scaling.

    zuko's ``NICE`` (and ``RealNVP``, the same class) defaults to affine couplings, i.e.
    RealNVP; here its couplings get zuko's ``AdditiveTransform`` as the univariate map,
    so each one is :math:`y_b = x_b + m(x_a; c)`, :math:`y_a = x_a`, volume preserving
    (:math:`\log|\det J| = 0` exactly). The last transform (towards the base) is the scaling
    :math:`z = \exp(s) \odot y`: zuko's ``MonotonicAffineTransform`` with its shift fixed
    at 0 and one learnable scale per feature (not conditioned on ``c``), so
    :math:`\log|\det J| = \sum_d s_d`. zuko soft-clips the log-scale,
    :math:`s = a / (1 + |a| / \log 10^3)` for the parameter ``a`` (0 at the start: the
    identity), so each scale stays within :math:`(10^{-3}, 10^3)`.
    """

    def __init__(self, features: int, context: int = 0, transforms: int = 3,
                 **kwargs: Any) -> None:
        super().__init__(features, context, transforms, univariate=AdditiveTransform,
                         shapes=((),), **kwargs)
        scaling = UnconditionalTransform(MonotonicAffineTransform, 0.0, torch.zeros(features))
        self.transform.transforms.append(scaling)


TRANSFORMS = {
    "nsf": zuko.flows.NSF,
    "maf": zuko.flows.MAF,
    "realnvp": zuko.flows.RealNVP,
    "nice": NICE,
}
# NAF is left out on purpose: its inverse is a bisection, so sampling is neither one pass
# nor exact.


def _bad_option(error: TypeError, transform: str) -> str:
    """zuko's TypeError for an option it does not take, said in :class:`Flow`'s terms: an
    unknown name comes with the closest of Flow's own arguments and the flow's named
    options (zuko passes the rest on to its networks, whose message alone names
    ``MaskedMLP`` or ``Linear``)."""
    import inspect

    cls = TRANSFORMS[transform]
    said = f"Bad option for zuko.flows.{cls.__name__} (transform={transform!r}): {error}"
    twice = re.search(r"multiple values for keyword argument '(\w+)'", str(error))
    if twice is not None:  # features, context, transforms, hidden_features
        return (f"Flow sets zuko's {twice[1]!r} itself (from dim, context_dim, "
                f"num_transforms and hidden): pass those instead (zuko said: {error})")
    unknown = re.search(r"unexpected keyword argument '(\w+)'", str(error))
    if unknown is None:
        return said
    set_by_flow = {"self", "features", "context", "transforms", "hidden_features", "kwargs"}
    own = [n for n in inspect.signature(Flow).parameters if n != "flow_options"]
    zuko_named = [n for n in inspect.signature(cls).parameters if n not in set_by_flow]
    if transform in ("nsf", "maf"):  # autoregressive: MaskedAutoregressiveTransform, MaskedMLP
        zuko_named += ["passes", "residual", "activation"]
    else:  # couplings: zuko.nn.MLP
        zuko_named += ["activation", "normalize"]
    close = difflib.get_close_matches(unknown[1], own + zuko_named, n=2)
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    return (f"Flow(transform={transform!r}) takes no option {unknown[1]!r}.{hint} Its "
            f"arguments: {', '.join(own)}; options zuko.flows.{cls.__name__} names: "
            f"{', '.join(zuko_named) or 'none'} (zuko said: {error})")


#: The checks of zuko's options that take a count, a number or a switch, made here (zuko
#: fails on a string with an error about its own arithmetic, "unsupported operand type").
ZUKO_CHECKS: Dict[str, Callable[[Any, str], Any]] = {
    "bins": positive_int, "slope": positive_float,
    "passes": lambda v, name: None if v is None else positive_int(v, name),  # None: zuko's
    "randperm": check_bool, "randmask": check_bool, "residual": check_bool,
    "normalize": check_bool}


#: The activations ``Flow(activation=...)`` takes, by their names in ``torch.nn``; the
#: elementwise, deterministic, shape-keeping ones (GLU halves its input, the softmaxes
#: are not elementwise, RReLU is random in training).
ACTIVATIONS = ("CELU", "ELU", "GELU", "Hardshrink", "Hardsigmoid", "Hardswish", "Hardtanh",
               "LeakyReLU", "LogSigmoid", "Mish", "PReLU", "ReLU", "ReLU6", "SELU", "SiLU",
               "Sigmoid", "Softplus", "Softshrink", "Softsign", "Tanh", "Tanhshrink")


def _activation(name: Any) -> type:
    """zuko's networks take an activation class, and a fit saves its options as JSON, so
    ``activation`` is the class's name in ``torch.nn``, one of :data:`ACTIVATIONS`
    (``"ReLU"`` is zuko's default; ``"ELU"``, ``"SiLU"``, ``"Tanh"``, ...)."""
    if not isinstance(name, str):
        kind = name if isinstance(name, type) else type(name)  # zuko's class, or one made
        given = (f"{name!r}: pass its name, {kind.__name__!r}" if kind.__name__ in ACTIVATIONS
                 and getattr(torch.nn, kind.__name__) is kind
                 else f"{name!r} ({type(name).__name__})")
        raise TypeError(f"Expected activation to be the name of an activation in torch.nn "
                        f"(a string such as 'ELU'), but got {given}")
    if name not in ACTIVATIONS:
        close = ([k for k in ACTIVATIONS if k.lower() == name.lower()]
                 or difflib.get_close_matches(name, ACTIVATIONS, n=2, cutoff=0.7))
        said = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"Expected activation to be one of {', '.join(ACTIVATIONS)} (an "
                         f"elementwise activation of torch.nn), but got {name!r}.{said}")
    return getattr(torch.nn, name)


@register
class Flow(StandardizedContext, GenerativeModel):
    """A normalizing flow ``p(x)`` or, with ``context_dim``, ``p(x | c)``.

    Args:
        dim: D, the number of columns of the data.
        transform: ``"nsf"`` (neural spline flow, default), ``"maf"``, ``"realnvp"``
            (affine couplings) or ``"nice"`` (additive, volume-preserving couplings and a
            final diagonal scaling; see :class:`NICE`): the zuko flow family (all with an
            exact one-pass inverse).
        num_transforms: how many transforms are composed.
        hidden: hidden layer sizes of each transform's network (a sequence of positive
            ints, or one int for a single layer).
        context_dim: width of the conditioning variable ``c`` (``None``: unconditional).
        prior_scale: sd of the Gaussian prior on every weight (used by ``map``).
        standardize: the density is the flow's on the standardized columns
            ``u = (x - m) / s`` (m, s the training data's column means and sds, fixed when
            the fit starts), with the Jacobian: ``log p(x) = log p_flow(u) - sum log s``.
            Spline and coupling networks see inputs of unit scale, so raw columns
            (wine's proline is in the hundreds, its hue near 1) fit as well as
            standardized ones; a context ``c`` is standardized by its own training
            moments (no Jacobian: it conditions). ``False`` fits the flow to ``x`` itself.
        **flow_options: passed to the zuko constructor (e.g. ``bins=8`` for NSF), and
            ``activation``: the networks' activation by its name in ``torch.nn``
            (``"ELU"``; zuko's default is ``"ReLU"``).

    Sample sites: the factor ``weight_prior`` (log N(w; 0, prior_scale^2), masked by
    ``mle``) and the observed ``x`` ``(N, D)`` in the plate ``data``.

    Example:
        >>> import torch, pyro_genmodels as pgm
        >>> x = pgm.datasets.toy("banana").sample((256,))
        >>> fit = pgm.Flow(2, hidden=(16, 16)).fit(x, method="mle", num_steps=20, seed=0,
        ...                                        progress=False)
        >>> fit.log_prob(x).shape, fit.sample(5, seed=0).shape
        (torch.Size([256]), torch.Size([5, 2]))
    """

    registry_name = "flow"
    capabilities = Capabilities(log_prob="exact", sampling="direct", methods=("mle", "map"),
                                conditional=True)
    global_sites = ()
    engines = {m: PointEngine(m, lr=1e-3, lr_decay=0.1, num_steps=3000, batch_size=256)
               for m in ("mle", "map")}

    def __init__(self, dim: int, *, transform: str = "nsf", num_transforms: int = 3,
                 hidden: Sequence[int] = (64, 64), context_dim: Optional[int] = None,
                 prior_scale: float = 1.0, standardize: bool = True, **flow_options: Any) -> None:
        super().__init__(dim)
        if not isinstance(standardize, bool):
            raise TypeError(f"Expected standardize to be a bool, but got {standardize!r}")
        self.standardize = standardize
        self.register_buffer("shift", torch.zeros(self.dim))
        self.register_buffer("x_scale", torch.ones(self.dim))
        if transform not in TRANSFORMS:
            raise ValueError(f"Unknown transform {transform!r}; expected one of "
                             f"{sorted(TRANSFORMS)}")
        self.transform = transform
        self.num_transforms = positive_int(num_transforms, "num_transforms")
        self.hidden = hidden_widths(hidden)
        if not self.hidden:
            raise ValueError("Expected at least one hidden layer, but got hidden=()")
        self.context_dim = None if context_dim is None else positive_int(context_dim,
                                                                          "context_dim")
        self.standardize_context()
        self.prior_scale = positive_float(prior_scale, "prior_scale")
        # a numpy scalar (bins=np.int64(4)) is the Python number it holds: saved as JSON
        self.flow_options = {k: v.item() if isinstance(v, np.generic) else v
                             for k, v in flow_options.items()}
        for key in ZUKO_CHECKS.keys() & self.flow_options.keys():
            ZUKO_CHECKS[key](self.flow_options[key], key)
        zuko_options = dict(self.flow_options)
        if zuko_options.get("activation") is not None:  # None: zuko's default, ReLU
            zuko_options["activation"] = _activation(zuko_options["activation"])
        for key, value in self.flow_options.items():  # saved with the fit, as JSON
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                raise TypeError(f"Flow options are saved with the fit as JSON: expected "
                                f"{key} to be a finite number, a string, a bool, None or a list of "
                                f"them, but got {value!r} ({type(value).__name__})") from None
        try:
            self.flow = TRANSFORMS[transform](
                features=self.dim, context=self.context_dim or 0,
                transforms=self.num_transforms, hidden_features=self.hidden, **zuko_options)
        except TypeError as e:
            raise TypeError(_bad_option(e, transform)) from None

    @property
    def prior_sites(self) -> Tuple[str, ...]:
        return ("weight_prior",)

    # ------------------------------------------------------------------ the Pyro program
    def distribution(self, params: Optional[Dict[str, torch.Tensor]] = None,
                     c: Optional[torch.Tensor] = None) -> torch.distributions.Distribution:
        """The flow as a torch distribution (zuko's ``NormalizingFlow``, with the
        standardization as its first transform); batch ``(N,)`` when ``c`` is
        ``(N, context_dim)``. phi is the flow's weights, so ``params`` is empty."""
        d = self.flow(self.context_unit(c))
        if not self.standardize:
            return d
        # (x - shift) / x_scale: as the inverse of x_scale u + shift, with no 1 / x_scale,
        # which overflowed float32 for sds below 2.9e-39 (wine x 1e-38: a nan density)
        to_unit = torch.distributions.AffineTransform(self.shift, self.x_scale,
                                                      event_dim=1).inv
        return NormalizingFlow(ComposedTransform(to_unit, d.transform), d.base)

    def weight_log_prior(self) -> torch.Tensor:
        """``sum_w log N(w; 0, prior_scale^2)`` over every weight of the flow."""
        return gaussian_weight_log_prior(self._weights(), self.prior_scale)

    def _weights(self):
        return cached_parameters(self, self.flow)

    def model(self, x: Optional[torch.Tensor] = None, *, c: Optional[torch.Tensor] = None,
              num_data: Optional[int] = None, subsample_size: Optional[int] = None,
              subsample: Optional[torch.Tensor] = None) -> torch.Tensor:
        pyro.module("flow", self.flow)
        prior_factor("weight_prior", self.weight_log_prior)
        plate = data_plate(x, c, num_data, subsample_size, subsample)
        with plate as idx:
            assert idx is not None  # a vectorized plate yields its indices
            ctx = plate_rows(c, idx, plate.size)
            obs = plate_rows(x, idx, plate.size, "x")
            d = self.distribution({}, ctx)
            if ctx is None:
                d = d.expand(torch.Size([idx.shape[0]]))
            return pyro.sample("x", ZukoToPyro(d), obs=obs)

    # ------------------------------------------------------------------ engine hooks
    def init_values(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {}

    def check_data_for(self, method: str, x: torch.Tensor) -> None:
        """Refuse a constant column (every column, for a single row): a flow can
        concentrate its density on that value without limit, so the likelihood has no
        maximum and the fitted log p grows with the number of steps (a column at 2.5
        beside two N(0, 1) ones: +4.9 nats per row after 300 steps, and climbing). The
        weight prior of ``map`` does not bound it. The same holds for rows on any
        hyperplane (N <= D, a column that is a linear combination of others: a copied
        column beside two N(0, 1) ones gave -2.23 nats per row after 100 steps, +3.61
        after 3000, where a density exists on neither). A column whose variance
        underflows is refused first (:class:`~pyro_genmodels._moments.ColumnMoments`),
        not called a hyperplane."""
        column_moments(x)  # raises for a column whose variance underflows
        constant = constant_columns(x)
        if constant.any():
            what, remedy = (("a single row makes every column constant", "Drop those "
                             "columns") if x.shape[0] == 1 else constant_said(x, constant))
            raise ValueError(
                f"data cannot be fitted by a Flow: {what}, so the flow's density can "
                f"concentrate on those values without limit (the likelihood has no maximum "
                f"and log p would only measure how long it trained). {remedy}, or model "
                f"them apart.")
        smallest = dependent_columns(x)
        if smallest is not None:  # the same in a direction that is not a column's
            raise ValueError(
                f"data cannot be fitted by a Flow: the {x.shape[0]} rows lie on a "
                f"hyperplane of the {self.dim} columns (N <= D, or linearly dependent "
                f"columns: the smallest eigenvalue of their correlation matrix is "
                f"{smallest:.2g}), so the flow's density can concentrate on it without "
                f"limit (the likelihood has no maximum). Drop the redundant columns."
                + precision_said(x))

    def get_config(self) -> Dict[str, Any]:
        return {"dim": self.dim, "transform": self.transform,
                "num_transforms": self.num_transforms, "hidden": list(self.hidden),
                "context_dim": self.context_dim, "prior_scale": self.prior_scale,
                "standardize": self.standardize, **self.flow_options}
