"""Objectives for :func:`~pyro_genmodels.infer.loop.optimize`: a Pyro ELBO over a model
and guide, and the pieces that build it (guides, the flat-prior mask, the ELBO class).

An objective is ``loss(batch) -> scalar tensor``. :class:`ELBOLoss` evaluates
``elbo.differentiable_loss(program, guide, x, [c], [index])``; the program is the model's
Pyro program called as ``model(x, c=c, subsample=index)``, whose data plate
``pyro.plate("data", N, subsample=index)`` scales the minibatch by N / B. The tensors
are positional arguments, so a compiled (``Jit*``) ELBO sees a new minibatch each step.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional,
                    Protocol, Tuple, cast, overload)

import pyro.infer
import pyro.poutine.runtime
import torch
from pyro import poutine
from pyro.distributions import TorchDistribution
import pyro.distributions as dist
from pyro.infer.autoguide import AutoGuide, AutoMultivariateNormal, init_to_value
from pyro.infer.mcmc.util import initialize_model
from pyro.poutine.messenger import Messenger
from torch.distributions import biject_to, constraints, transform_to
from torch.distributions.transforms import AffineTransform, ComposeTransform, Transform

from .interrupts import script_interrupt
from .loop import Batch

if TYPE_CHECKING:
    from pyro.poutine.runtime import Message

GenerativeModel = Any  # a model family, duck-typed: infer imports no family


class DifferentiableELBO(Protocol):
    """A Pyro ELBO with ``differentiable_loss`` (``Trace_ELBO``, ``TraceEnum_ELBO``,
    ``TraceMeanField_ELBO`` and their ``Jit*`` twins; the base ``ELBO`` has none)."""

    def differentiable_loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> Any:
        """Minus the ELBO of ``model`` and ``guide`` on ``args``, differentiable in both."""
        ...


class FlatPriors(Messenger):
    """Mask the log-density of the named sites (an improper flat prior): the model's
    ``prior_sites``, latent sample sites or a weight-prior factor. ``mle`` is ``map`` of
    the program under this mask."""

    def __init__(self, sites: Iterable[str]) -> None:
        super().__init__()
        self.sites = frozenset(sites)

    def _process_message(self, msg: Message) -> None:
        if msg["type"] == "sample" and msg["name"] in self.sites:
            msg["mask"] = False


class _JitTraceMeanField_ELBO(pyro.infer.JitTraceMeanField_ELBO):
    """Pyro's ``JitTraceMeanField_ELBO`` with its compiled-function cache working: pyro
    1.9's ``differentiable_loss`` tests for ``_loss_and_surrogate_loss`` but stores
    ``_differentiable_loss``, so it traces the program again at every call (about 15x
    slower than eager on a small VAE). Same value and gradient."""

    def differentiable_loss(self, model: Callable[..., Any], guide: Callable[..., Any],
                            *args: Any, **kwargs: Any) -> torch.Tensor:
        compiled = getattr(self, "_differentiable_loss", None)
        if compiled is None:
            return super().differentiable_loss(model, guide, *args, **kwargs)
        return compiled(*args, _pyro_model_id=id(model), _pyro_guide_id=id(guide), **kwargs)


def prior_factor(name: str, log_density: Callable[[], torch.Tensor]) -> None:
    """``pyro.factor(name, log_density())``, except that under :class:`FlatPriors` masking
    ``name`` (``mle``) the density is not computed at all: the site stays in the trace,
    with a zero factor that the mask removes anyway. A network's weight prior is a norm
    over every weight, a measurable share of a small training step."""
    masked = any(isinstance(m, FlatPriors) and name in m.sites
                 for m in pyro.poutine.runtime._PYRO_STACK)
    value = torch.zeros(()) if masked else log_density()
    pyro.factor(name, value)


def data_plate(x: Optional[torch.Tensor], c: Optional[torch.Tensor], num_data: Optional[int],
               subsample_size: Optional[int], subsample: Optional[torch.Tensor]) -> pyro.plate:
    """The data plate of every family's program, ``pyro.plate("data", N, ...)``. N is
    ``num_data``, else the rows of ``x`` (of ``c`` without ``x``; 1 without either).
    Called as ``model(x_batch, num_data=N)``, Pyro's convention for a minibatch, the B
    rows of ``x`` are a uniform draw of the N: the plate numbers them ``0..B-1`` and
    scales their log-likelihood by N / B. ``subsample_size`` draws indices into all N
    rows, which ``x`` must then hold. Without ``x`` (the prior predictive) the plate
    draws N rows."""
    rows = None if x is None else x.shape[0]
    size = num_data or rows or (1 if c is None else c.shape[0])
    if x is not None and rows != size and subsample is None:
        if x.shape[0] > size:
            raise ValueError(f"num_data={num_data} is smaller than the {rows} rows given")
        if subsample_size is not None:
            raise ValueError(f"subsample_size={subsample_size} draws rows from all "
                             f"num_data={num_data} rows, but {rows} were given: pass them "
                             f"all, or the minibatch alone with num_data (it is scaled by "
                             f"num_data / its rows)")
        subsample = torch.arange(x.shape[0], device=x.device)
    return pyro.plate("data", size, subsample_size=subsample_size, subsample=subsample)


@overload
def plate_rows(t: torch.Tensor, idx: torch.Tensor, size: int, name: str = ...) -> torch.Tensor:
    ...


@overload
def plate_rows(t: Optional[torch.Tensor], idx: torch.Tensor, size: int,
               name: str = ...) -> Optional[torch.Tensor]:
    ...


def plate_rows(t: Optional[torch.Tensor], idx: torch.Tensor, size: int,
               name: str = "c") -> Optional[torch.Tensor]:
    """The rows of ``t`` (data ``x`` or context ``c``) for the indices ``idx`` that the
    data plate of ``size`` rows yields: ``t`` as it is when it has one row per index
    (the whole data, or ``model(x_batch, num_data=N)``'s minibatch), its rows ``idx``
    when it holds all ``size`` rows of a subsampled plate, and for a context its one row
    repeated for every index (one context for all rows, as ``fit.sample(n, c=...)``
    takes it; one row of data is one row). Anything else is a ``ValueError``, raised
    before torch's own shape error."""
    if t is None or t.shape[0] == idx.shape[0]:
        return t
    if t.shape[0] == 1 and name == "c":
        return t.expand(idx.shape[0], *t.shape[1:])
    if t.shape[0] == size:
        return t.index_select(0, idx)
    raise ValueError(f"{name} has {t.shape[0]} rows, expected one, or one per row of the "
                     f"data plate ({size} rows)")


def make_elbo(cls_name: str, *, jit: bool, max_plate_nesting: Optional[int] = None,
              **kwargs: Any) -> DifferentiableELBO:
    """``Trace_ELBO`` / ``TraceEnum_ELBO`` or its compiled twin ``Jit*`` (same value, less
    overhead). ``max_plate_nesting`` is passed whenever it is given, so Pyro need not
    guess it from a trace."""
    import pyro.infer as infer

    if max_plate_nesting is not None:
        kwargs["max_plate_nesting"] = max_plate_nesting
    if jit:
        cls = (_JitTraceMeanField_ELBO if cls_name == "TraceMeanField_ELBO"
               else getattr(infer, "Jit" + cls_name))
        return cls(ignore_jit_warnings=True, **kwargs)
    return getattr(infer, cls_name)(**kwargs)


@contextlib.contextmanager
def traced_execution() -> Iterator[None]:
    """Where Pyro's traced ELBOs (``Jit*``), ``jit_compile=True`` kernels and the
    ``chees`` potential run: TorchScript's graph optimizations off, in this thread only
    (``torch.jit.optimized_execution(False)``), and torch's deprecation warning for
    ``torch.jit.trace`` (torch >= 2.10; it still works) silenced.

    Why the optimizations are off: with them on, every traced fit kept 15-25 MB in
    TorchScript's process-wide state for the life of the process, even after the fit and
    its function were gone (measured over 10 fits of a two-component
    ``GaussianMixture`` on 30 rows: ``map`` 15.5, ``vi`` 24.9, ``nuts`` 20.9 MB per fit);
    with them off, 3.7-5.6 MB, at the same speed per step. ``jit=False`` /
    ``jit_compile=False`` keep nothing, at about half the speed.
    """
    with warnings.catch_warnings(), torch.jit.optimized_execution(False):
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.*deprecated",
                                category=DeprecationWarning)
        try:
            yield
        except RuntimeError as e:
            if script_interrupt(e):  # a Ctrl-C, which callers keep what they have for
                raise KeyboardInterrupt from None
            raise


def _no_latents(*args: Any, **kwargs: Any) -> None:
    """The guide of a model whose phi are all parameters (network weights)."""


class _InUnits(constraints.Constraint):
    """``base``'s support, with its unconstrained coordinates in units of ``unit``:
    ``biject_to`` (and ``transform_to``) map ``u`` to ``biject_to(base)(unit * u)``."""

    def __init__(self, base: constraints.Constraint, unit: torch.Tensor) -> None:
        self.base, self.unit = base, unit
        self.event_dim = base.event_dim
        self.is_discrete = base.is_discrete
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return self.base.check(value)


@biject_to.register(_InUnits)
@transform_to.register(_InUnits)
def _in_units(constraint: _InUnits) -> Transform:
    return ComposeTransform([AffineTransform(0.0, constraint.unit),
                             biject_to(constraint.base)])


class _Supported(TorchDistribution):
    """``base`` with its support in units (:class:`_InUnits`); all else is ``base``'s."""

    arg_constraints: Dict[str, constraints.Constraint] = {}

    def __init__(self, base: TorchDistribution, support: _InUnits) -> None:
        self.base, self._support = base, support
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @constraints.dependent_property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return self._support

    def expand(self, batch_shape: Any, _instance: Any = None) -> "_Supported":
        return _Supported(self.base.expand(batch_shape), self._support)

    def sample(self, sample_shape: Any = torch.Size()) -> torch.Tensor:
        return self.base.sample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.base.log_prob(value)


class InUnits(Messenger):
    """The named sample sites seen with their unconstrained coordinates in units
    (``{site: tensor}``, broadcastable to the site's unconstrained value): an autoguide
    built on a program under this handler (AutoDelta's parameters, AutoNormal's and
    AutoMultivariateNormal's locations and scales) works in those units. The program's
    densities are untouched; only the guide's coordinates change.

    Why: Adam moves every coordinate by about ``lr`` per step whatever its gradient's
    size, and a guide's ``init_scale`` is one number for all; a location in the data's
    units (a column whose sd is 1e-4, or 1e4) would take steps far too large or too
    small. In units of the column sds, a step of ``lr`` is ``lr`` sds, as for
    standardized data; the optimum and the posterior are the same."""

    def __init__(self, units: Dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.units = dict(units)

    def _process_message(self, msg: Message) -> None:
        if msg["type"] == "sample" and msg["name"] in self.units and not msg["is_observed"]:
            fn = cast(TorchDistribution, msg["fn"])
            support = cast(constraints.Constraint, fn.support)
            msg["fn"] = _Supported(fn, _InUnits(support, self.units[msg["name"]]))


def program_in_units(model: GenerativeModel, x: torch.Tensor) -> Callable[..., Any]:
    """``model.model`` with its ``param_units`` sites seen in those units
    (:class:`InUnits`), for the samplers that take their coordinates from the program
    (Pyro's NUTS / HMC, the fused potential): the chains' unconstrained coordinates,
    their start's jitter and the step size before the mass matrix adapts then do not
    depend on the data's units. The density is the model's (up to the constant log-unit
    Jacobian); the draws are the model's parameters."""
    units = model.param_units(x)
    return InUnits(units)(model.model) if units else model.model


def initialized_in_units(model: GenerativeModel, x: torch.Tensor, c: Optional[torch.Tensor],
                         init: Dict[str, torch.Tensor], **kwargs: Any
                         ) -> Tuple[Any, Callable[..., Any], Dict[str, Any], Any]:
    """Pyro's ``initialize_model`` on :func:`program_in_units` (``kwargs`` go to it):
    ``(initial_params, potential_fn, transforms, trace)``, the prototype trace taken at
    ``init``, the model's ``init_values(x)``, where the chains start (the caller computes
    them once: a mixture's are EM runs). (Pyro's default start, uniform
    in (-2, 2) on the unconstrained coordinates, made the correlations of a 30-column
    Gaussian into a Cholesky factor that torch's argument check refuses: a ValueError
    that Pyro's search for a valid start does not catch, raised or not as other code
    had left torch's checks.)"""
    return initialize_model(program_in_units(model, x), model_args=(x,),
                            model_kwargs={"c": c},
                            init_strategy=init_to_value(values=init),
                            **kwargs)


class MultivariateNormalGuide(AutoMultivariateNormal):
    r"""Pyro's ``AutoMultivariateNormal`` (the ``vi`` guide ``"mvn"``; the same parameters
    and site names), stable in many dimensions: the density of its own draws comes from
    the standard normal draw they were made of, and above d = 100 the correlation factor
    moves ``100 / d`` of what Pyro's does per step.

    A draw is :math:`u = m + L z`, :math:`z \sim N(0, I_d)`, with :math:`L =
    \mathrm{diag}(s) T` and :math:`T` unit lower triangular. Adam's first step moves every
    entry of :math:`T` by about the learning rate :math:`\eta`, with the signs of a rank-one
    gradient: :math:`T = I - \eta\,\mathrm{tril}(a b^\top)`, whose inverse grows like
    :math:`(1 + \eta)^d`, 1e6 for :math:`\eta = 0.02`, d = 700.

    * **The density.** Exactly :math:`\log q(u) = \log N(z; 0, I) - \sum_i \log s_i`
      (:math:`\det T = 1`). Pyro's ``MultivariateNormal`` solves :math:`z = L^{-1}(u - m)`
      instead, which loses every digit once :math:`T^{-1}` is that large: in float32 the
      computed log q reached -1e25 and the losses -1e26 (``NGram(2)`` on 300 names, d =
      702; ``PPCA(64, 10)`` on the digits, d = 705). Here a draw goes through
      ``LowerCholeskyAffine`` with a cache of one, so ``TransformedDistribution.log_prob``
      of that draw takes its z back (any other value is solved for).
    * **The steps.** :math:`T = I + f\,\mathrm{tril}(R, -1)`, R the parameter,
      :math:`f = \min(1, 100 / d)`: a step moves T by at most :math:`f \eta` an entry, so
      the first step's growth is at most :math:`(1 + 100\eta / d)^d < e^{100\eta}` (7.4 at
      0.02, what Pyro's guide has at d = 100, where it still converges: wine's
      ``Gaussian(13)``, d = 104) whatever d; up to d = 100 it is Pyro's guide (a smaller
      f slows the correlations that moderate d needs: with 10 / d, d = 65 ended at a
      correlation of 0.59 for an exact 0.90). With f = 1, ``Gaussian(30)`` on raw breast
      cancer (d = 495) ended its 3000 steps with losses of mean 62,000 and sd 90,000 (the
      MLE's -log-likelihood is -18,500; mean field: -13,503); with this f, -13,569 (sd 22).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pyro_name = AutoMultivariateNormal.__name__  # Pyro's names: params, latent

    def _tril(self) -> torch.Tensor:
        r""":math:`L = \mathrm{diag}(s) (I + f (T_R - I))` ``(d, d)``, T_R the parameter's."""
        d = self.latent_dim
        eye = torch.eye(d, dtype=self.loc.dtype, device=self.loc.device)
        return self.scale[..., None] * (eye + min(1.0, 100.0 / d) * (self.scale_tril - eye))

    def get_transform(self, *args: Any, **kwargs: Any) -> Any:
        return dist.transforms.LowerCholeskyAffine(self.loc, self._tril(), cache_size=1)

    def get_posterior(self, *args: Any, **kwargs: Any) -> Any:
        base = dist.Normal(torch.zeros_like(self.loc), torch.ones_like(self.loc)).to_event(1)
        return dist.TransformedDistribution(base, [self.get_transform()])

    def _loc_scale(self, *args: Any, **kwargs: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.loc, self._tril().pow(2).sum(-1).sqrt()


def make_guide(model: GenerativeModel, program: Callable[..., Any],
               auto_cls: Optional[Callable[..., AutoGuide]] = None, *,
               units: Optional[Dict[str, torch.Tensor]] = None, **auto_kwargs: Any
               ) -> Tuple[Callable[..., Any], Optional[AutoGuide]]:
    """The guide for ``program`` (the model, possibly with priors masked); with
    ``units`` (the model's ``param_units``), the autoguide works in them (:class:`InUnits`).

    The global sites get ``auto_cls`` (an autoguide class, e.g. AutoDelta) built on the
    program with everything else hidden, so enumerated or amortized local latents never
    reach it; the model's :attr:`~pyro_genmodels.base.GenerativeModel.local_guide` (an encoder), if any, runs alongside.

    Returns:
        ``(guide, auto)``: the guide to train and the autoguide (``None`` without
        global sites), whose ``median`` / draws give phi.
    """
    auto: Optional[AutoGuide] = None
    if model.global_sites and auto_cls is not None:
        hidden = poutine.block(program, expose=list(model.global_sites))
        if units:
            hidden = InUnits(units)(hidden)
        auto = auto_cls(hidden, **auto_kwargs)
    local = model.local_guide
    if local is None:
        return (auto if auto is not None else _no_latents), auto
    if auto is None:
        return local, None

    def guide(*args: Any, **kwargs: Any) -> None:
        auto(*args, **kwargs)
        local(*args, **kwargs)

    return guide, auto


def use_jit(jit: Optional[bool], model: GenerativeModel) -> bool:
    """Resolve ``jit=None``: compile when the model declares it safe (``jit_safe``) and
    its dtype is not float64. Under ``torch.jit.trace`` Pyro's plate turns its scale N / B
    into a tensor of the default dtype (float32), so a compiled float64 loss is off by
    ~5e-8 relative whenever N / B is not a power of two: too coarse for a float64 fit."""
    if jit is not None:
        return bool(jit)
    anchor = getattr(model, "_anchor", None)
    return bool(getattr(model, "jit_safe", False)) and not (
        anchor is not None and anchor.dtype == torch.float64)


class ELBOLoss:
    """A Pyro ELBO of ``program`` and ``guide`` as a loop objective.

    Args:
        elbo: a ``pyro.infer.ELBO`` (``Trace_ELBO``, ``TraceEnum_ELBO``, a ``Jit*``).
        program, guide: called as ``f(x, c=c, subsample=index, num_data=N)``.
        x, c: the training rows (only whether ``c`` is given matters: each call takes
            its tensors from the batch).

    The parameters that the first call touches (Pyro creates them on first use) are
    recorded once: a fitted program's parameters do not change from step to step, and
    tracing them every step would cost a measurable share of a small step.
    """

    def __init__(self, elbo: DifferentiableELBO, program: Callable[..., Any],
                 guide: Callable[..., Any], x: Any, c: Optional[torch.Tensor]) -> None:
        self.elbo = elbo
        has_c = c is not None
        self.num_rows: Optional[int] = None  # N, fixed for the fit at the first call

        def unpack(args):
            return args[0], (args[1] if has_c else None), (args[-1] if len(args) > 1 + has_c
                                                           else None)

        def prog(*args):
            x, c, idx = unpack(args)
            return program(x, c=c, subsample=idx, num_data=self.num_rows)

        def guide_fn(*args):
            x, c, idx = unpack(args)
            return guide(x, c=c, subsample=idx, num_data=self.num_rows)

        self.program, self.guide = prog, guide_fn
        self._params: Optional[List[torch.Tensor]] = None

    @staticmethod
    def args(batch: Batch) -> Tuple[torch.Tensor, ...]:
        """The program's tensors: the batch's source rows (the training tensor, or a
        streamed block), its ``c`` and the index of the minibatch in them."""
        x, c = batch.source_x, batch.source_c
        args = (x,) if c is None else (x, c)
        return args if batch.index is None else args + (batch.index,)

    def __call__(self, batch: Batch) -> torch.Tensor:
        if self.num_rows is None:
            self.num_rows = batch.num_rows
        args = self.args(batch)
        if self._params is None:
            with poutine.trace(param_only=True) as capture:
                loss = self._loss(args)
            # sorted by name: Pyro's order can follow Python's per-process string
            # hashing, and ranks of a distributed fit must agree on it
            # a param site's value is the constrained tensor, which knows its leaf
            self._params = list({id(p): p for p in (
                cast(Any, site["value"]).unconstrained()
                for _, site in sorted(capture.trace.nodes.items()))}.values())
            return loss
        return self._loss(args)

    def _loss(self, args: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        if isinstance(self.elbo, pyro.infer.JitTrace_ELBO):
            # its differentiable_loss, less the NaN hook and check (the loop guards)
            loss, surrogate = self.elbo.loss_and_surrogate_loss(self.program, self.guide,
                                                                *args)
            return surrogate + (loss - surrogate).detach()
        return self.elbo.differentiable_loss(self.program, self.guide, *args)

    def parameters(self) -> List[torch.Tensor]:
        """The tensors the ELBO's program and guide own, as recorded at the first call."""
        if self._params is None:
            raise RuntimeError("ELBOLoss records its parameters at its first call")
        return self._params


class NegativeLogJoint:
    """The loss Pyro's ``Trace_ELBO`` computes for a program whose phi are all network
    weights (no latent sites, so the point guide is empty), written out:

    ``-(N / B) sum_{i in batch} log p(x_i | phi[, c_i])  [- log p(phi) for map]``.

    The log density is the family's ``log_prob_given`` and the prior its
    ``weight_log_prior``, the same terms as the program's observed site and its
    ``weight_prior`` factor (the tests hold the two to the same value and gradient).
    Tracing the program costs a tenth of a small flow's step; this does not trace.
    """

    def __init__(self, model: GenerativeModel, with_prior: bool) -> None:
        self.model, self.with_prior = model, with_prior

    def __call__(self, batch: Batch) -> torch.Tensor:
        x = batch.x
        loss = -self.model.log_prob_given({}, x, batch.c).sum() * (batch.num_rows / x.shape[0])
        return loss - self.model.weight_log_prior() if self.with_prior else loss
