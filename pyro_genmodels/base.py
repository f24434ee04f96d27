"""The facade: :class:`GenerativeModel` and its :class:`Capabilities` (the :class:`Fit` it
returns lives in :mod:`pyro_genmodels.fit`, the engines in :mod:`pyro_genmodels.infer`).

A generative model is a Pyro program ``model(x)`` with *global* parameters phi (the
latent sites listed in :attr:`GenerativeModel.global_sites`) and an observed site ``x``
inside a plate. :meth:`GenerativeModel.fit` chooses what happens to phi (``method``):

========  =========================================  ==============================
method    phi                                        machinery
========  =========================================  ==============================
``mle``   point estimate, priors ignored             AutoDelta, priors masked
``map``   point estimate under the priors            AutoDelta
``vi``    approximate posterior q(phi)               AutoMultivariateNormal / Normal
``nuts``  posterior draws                            ``pyro.infer.MCMC(NUTS)``
``hmc``   posterior draws                            ``pyro.infer.MCMC(HMC)``
========  =========================================  ==============================

A :class:`Fit` owns everything it needs (a private copy of the model, the point estimate
or posterior draws, the loss trace, the training data), so it never depends on Pyro's
global param store and two fits in one process never disturb each other."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import (Any, Callable, ClassVar, Dict, Iterator, List, Optional, Tuple, TypeVar,
                    cast)

import numpy as np
import pyro
import torch
from pyro import poutine
from torch.distributions import biject_to
from pyro.nn import PyroModule

from ._context import set_context_moments
from ._rng import apart, check_seed, seeded, serialized
from . import _columns
from ._moments import column_moments
from ._validation import (as_data, check_bool, check_device, check_heldout_names,
                          check_method, column_names, positive_int, recorded_names)
from .fit import CHUNK_ELEMENTS, Fit, FitError, json_options
from .infer import distributed, optimizers, streaming
from .infer.engines import ENGINES, Data, Engine, split_heldout
from .infer.loop import LoopOptions
from ._weights import cached_parameters, gaussian_weight_log_prior
from .registry import get_model_class, register, registry

__all__ = ["CHUNK_ELEMENTS", "Capabilities", "Fit", "FitError", "GenerativeModel",
           "LOG_PROB_KINDS", "cached_parameters", "gaussian_weight_log_prior",
           "get_model_class", "register", "registry"]

LOG_PROB_KINDS = ("exact", "bound", "estimate", "unnormalized", "none")
_G = TypeVar("_G", bound="GenerativeModel")
_OptionalTensor = TypeVar("_OptionalTensor", bound=Optional[torch.Tensor])


@dataclasses.dataclass(frozen=True)
class Capabilities(Mapping[str, Any]):
    """What a model family can do, and how honestly.

    Attributes:
        log_prob: one of ``"exact"``, ``"bound"``, ``"estimate"``, ``"unnormalized"``,
            ``"none"`` (no density at all: a GAN; ``Fit.log_prob`` raises and the
            model is scored by samples, :mod:`pyro_genmodels.metrics`).
        sampling: how samples are drawn (``"direct"``, ``"ancestral"``, ``"mcmc"``, ...).
        methods: the values of ``method`` that :meth:`GenerativeModel.fit` accepts.
        conditional: whether ``fit(x, c=...)`` / ``sample(n, c=...)`` are supported.

    It is also a read-only mapping, so ``caps["log_prob"]`` and ``dict(caps)`` work.
    """

    log_prob: str
    sampling: str
    methods: Tuple[str, ...]
    conditional: bool = False

    def __post_init__(self) -> None:
        if self.log_prob not in LOG_PROB_KINDS:
            raise ValueError(f"Expected log_prob in {LOG_PROB_KINDS}, but got {self.log_prob!r}")

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    @classmethod
    def _keys(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


class GenerativeModel(PyroModule):
    """Base class of every model family: a Pyro program plus what the engines need.

    A family implements :meth:`model` (the Pyro program), :meth:`init_values` and
    :meth:`get_config`, and gives its density in one of two ways: a family with a
    tractable density implements :meth:`distribution` (``log_prob_given`` and
    ``sample_given`` follow from it); one with an estimate or an iterative sampler
    overrides :meth:`log_prob_given` and :meth:`sample_given`. It may add :meth:`derived`.
    Global parameter values passed to these are *constrained* and may carry leading batch
    dimensions (one per posterior draw); ``log_prob_given`` then returns ``(*batch, N)``.
    """

    registry_name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    #: latent sample sites that ``method`` acts on
    global_sites: ClassVar[Tuple[str, ...]]
    #: the observed sample site
    observed_site: ClassVar[str] = "x"
    #: whether the loss may be compiled with ``JitTrace_ELBO`` (static control flow)
    jit_safe: ClassVar[bool] = False
    #: width of the conditioning variable ``c``, ``None`` for an unconditional model
    context_dim: Optional[int] = None
    #: why :meth:`distribution` is not offered, where a family has more to say than its
    #: ``log_prob`` kind (a sequence model's exact density is of varying lengths)
    no_distribution: ClassVar[Optional[str]] = None

    @property
    def is_conditional(self) -> bool:
        """True when the model takes a condition ``c`` (``context_dim`` set, or a sequence
        model's ``num_classes``)."""
        return self.context_dim is not None or getattr(self, "num_classes", None) is not None

    #: whether ``vi`` may take its ``num_particles`` ELBO samples in one batched trace
    #: (Pyro's ``vectorize_particles``): the same estimator, 6x faster at 8 particles
    vectorized_particles: ClassVar[bool] = False
    #: the ELBO the optimizing engines use; ``"Trace_ELBO"``, or ``"TraceEnum_ELBO"``
    #: for a model whose discrete local latents are enumerated (``config_enumerate``)
    elbo: ClassVar[str] = "Trace_ELBO"
    #: plates nested around the observed site (needed by enumeration, ELBO and NUTS)
    max_plate_nesting: ClassVar[int] = 1
    #: an amortized guide of the *local* latents (a VAE encoder), with :meth:`model`'s
    #: signature; ``None``: no local latents, or only enumerated / integrated ones
    local_guide: ClassVar[Optional[Callable]] = None
    #: the family's engines for some methods, declared in its class body; new defaults
    #: of a shared engine (``PointEngine("mle", lr=1e-3)``) or its own (closed-form EM,
    #: contrastive divergence); other methods use :data:`~pyro_genmodels.infer.engines.ENGINES`
    engines: ClassVar[Dict[str, Engine]] = {}
    #: the :class:`Fit` subclass with the family's extra methods (``predict``, ...)
    fit_class: ClassVar[type[Fit]] = Fit
    #: options of :meth:`fit` that describe the data rather than the engine, handed to
    #: :meth:`prepare_data` (the sequence families' ``lengths``)
    data_options: ClassVar[Tuple[str, ...]] = ()
    #: the network weights, cached by :func:`cached_parameters`
    _weight_list: Optional[List[torch.Tensor]] = None
    #: a buffer: carries the dtype and device of the model's tensors
    _anchor: torch.Tensor

    @property
    def prior_sites(self) -> Tuple[str, ...]:
        """Sites whose log-density is the prior of phi; ``mle`` masks them. By default the
        global latent sites; a neural family adds its weight-prior factor."""
        return self.global_sites

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """``jit_safe``, ``vectorized_particles``: claims about the stating class's program;
        a class below it in the MRO defining a method or property (``model``, a hook it
        calls such as ``distribution``, a mixin's; not ``__init__``) makes them False."""
        super().__init_subclass__(**kwargs)
        if "__init__" in vars(cls):  # under the lock: initial weights come from torch's
            setattr(cls, "__init__", serialized(vars(cls)["__init__"]))  # a running fit seeded
        for flag in ("jit_safe", "vectorized_particles"):
            for klass in cls.__mro__:
                if flag in vars(klass):
                    break
                if any(hasattr(v, "__get__") and not name.startswith("__")  # descriptors
                       for name, v in vars(klass).items()):
                    setattr(cls, flag, False)
                    break

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = positive_int(dim, "dim")
        # carries the dtype and device that the model's tensors are created with
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    # ------------------------------------------------------------------ family API
    def model(self, x: Optional[torch.Tensor] = None, *, c: Optional[torch.Tensor] = None,
              num_data: Optional[int] = None, subsample_size: Optional[int] = None,
              subsample: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The Pyro model. ``x``: ``(N, dim)`` observations, or ``None`` to draw
        ``num_data`` points from the prior predictive; ``c``: ``(N, context_dim)``
        conditioning values for conditional models; ``subsample`` (indices ``(B,)``, as
        the training loop passes them) or ``subsample_size`` turns the data plate into
        a minibatch plate (unbiased, scaled by ``N / B``). ``model(x_batch, num_data=N)``
        takes ``x``'s B rows as a uniform minibatch of N, as Pyro's convention is
        (:func:`~pyro_genmodels.infer.objectives.data_plate`, every family's plate)."""
        raise NotImplementedError

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Calling the model runs the Pyro program: the same as :meth:`model`."""
        return self.model(*args, **kwargs)

    def init_values(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Data-dependent starting values (constrained) of the global sites."""
        raise NotImplementedError

    def mle_values(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The closed-form maximum-likelihood phi (constrained), for a family that has it:
        ``mle``'s start and answer (:class:`~pyro_genmodels.infer.started.StartedAtMLE`)."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form MLE")

    def param_units(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The scale in the data's units (a location's: the columns' sds), broadcastable,
        of the global sites whose unconstrained value is in those units: ``mle``, ``map``
        and ``vi`` step in them (:class:`~pyro_genmodels.infer.objectives.InUnits`)
        whatever the columns' units. None by default (unit-free sites)."""
        return {}

    def arviz_dims(self) -> Dict[str, Tuple[str, ...]]:
        """The names of the dimensions after ``(chain, draw)`` of the variables that
        :meth:`Fit.to_arviz` writes: the data (``observed_site``, in ``observed_data`` and
        ``posterior_predictive``; its ``log_likelihood`` keeps the first, the row), the
        global sites and :meth:`derived`. ``column`` is labelled with the data's column
        names where the fit knows them (a DataFrame's, a CSV header)."""
        return {self.observed_site: ("row", "column")}

    def arviz_coords(self) -> Dict[str, List[str]]:
        """Labels of :meth:`arviz_dims`' non-positional dimensions (a vocabulary's tokens)."""
        return {}

    def distribution(self, params: Dict[str, torch.Tensor],
                     c: Optional[torch.Tensor] = None) -> torch.distributions.Distribution:
        """The density hook: p(x | phi[, c]) as a torch distribution with event shape
        ``(dim,)`` (as zuko's ``flow(c)``). Batch shape: that of phi (one per posterior
        draw), or ``(N,)`` for ``c`` of shape ``(N, context_dim)``. Families with only
        an estimate or an unnormalized density do not have one (nor a family that says
        why not in :attr:`no_distribution`)."""
        name = type(self).__name__
        raise NotImplementedError(
            f"{name} has no distribution(): {self.no_distribution}" if self.no_distribution
            else f"{name} has no tractable density as a distribution (log_prob: "
                 f"{self.capabilities.log_prob})")

    def log_prob_given(self, params: Dict[str, torch.Tensor], x: torch.Tensor,
                       c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``log p(x_i | phi[, c_i])`` per row, ``(*batch, N)``; from :meth:`distribution`."""
        d = self.distribution(params, c)
        batch = d.batch_shape if c is None else d.batch_shape[:-1]
        if not batch:
            return d.log_prob(x)
        xs = x.reshape(x.shape[:1] + (1,) * len(batch) + x.shape[1:])
        return d.log_prob(xs).movedim(0, -1)

    def sample_given(self, params: Dict[str, torch.Tensor], n: int,
                     c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``n`` draws of x given phi (and ``c``, ``(n, context_dim)``); a batch of phi must
        be ``(n,)``, row i drawn from phi_i. By default from :meth:`distribution`."""
        d = self.distribution(params, c)
        return d.sample((n,)) if not d.batch_shape else d.sample()

    def weight_log_prior(self) -> torch.Tensor:
        """``log p(w)`` of the network weights, for a family whose phi are all weights
        (no ``global_sites``): the program's ``weight_prior`` factor, which ``map`` adds."""
        raise NotImplementedError(f"{type(self).__name__} has no network weight prior")

    def replicate_given(self, params: Dict[str, torch.Tensor], x: torch.Tensor
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The posterior predictive: one replicate of the training data ``x`` ``(N, ...)``
        per draw of phi (batch ``(S,)``), ``(S, N, ...)``, and ``x`` as it is compared
        with them, of the same trailing shape (ArviZ's ``posterior_predictive`` and
        ``observed_data``)."""
        num = next(iter(params.values())).shape[0]
        return torch.stack([self.sample_given({k: v[s] for k, v in params.items()}, x.shape[0])
                            for s in range(num)]), x

    def check_data_for(self, method: str, x: torch.Tensor) -> None:
        """Refuse data that ``method`` cannot fit (e.g. a singular MLE), before any work."""

    def derived(self, params: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Quantities computed from phi that users read (e.g. ``covariance_matrix``)."""
        return {}

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments; values are JSON types, tensors, or user-supplied
        ``nn.Module`` networks (which :meth:`Fit.save` stores as weights only)."""
        raise NotImplementedError

    @classmethod
    def saved_config(cls, config: Dict[str, Any], modules: Any) -> Dict[str, Any]:
        """A saved :meth:`get_config` (``modules``: its user networks) as this version takes it."""
        return config

    # ------------------------------------------------------------------ helpers
    @property
    def _factory(self) -> Dict[str, Any]:
        return {"dtype": self._anchor.dtype, "device": self._anchor.device}

    def validate_data(self, data: Any, *, name: str = "data",
                      device: torch.device | str | None = None,
                      dtype: torch.dtype | None = None) -> torch.Tensor:
        """Check ``data`` and return it as a tensor ``(N, dim)`` of ``dtype`` on ``device``;
        bad input raises a ``ValueError`` naming ``name`` and what was expected."""
        return as_data(data, dim=self.dim, name=name, device=device, dtype=dtype)

    def validate_context(self, c: Any, num_rows: int, *,
                         device: torch.device | str | None = None,
                         dtype: torch.dtype | None = None) -> Optional[torch.Tensor]:
        """Check ``c`` against the model: ``None`` for unconditional models, else
        ``(num_rows, context_dim)``; one row, ``(1, context_dim)`` or ``(context_dim,)``,
        is broadcast to all."""
        name = type(self).__name__
        if self.context_dim is None:
            if c is not None:
                raise ValueError(f"{name} is unconditional (context_dim=None): c must be None")
            return None
        if c is None:
            raise ValueError(f"{name} is conditional: pass c of shape (N, {self.context_dim})")
        c = as_data(c, dim=self.context_dim, name="c", device=device, dtype=dtype,
                    one_row=True)
        if c.shape[0] == 1 and num_rows > 1:
            c = c.expand(num_rows, -1)
        if c.shape[0] != num_rows:
            raise ValueError(f"c has {c.shape[0]} rows, expected {num_rows} (one per data row, "
                             f"or per draw in sample){' or 1 (shared by all)' * (num_rows > 1)}")
        return c
    @serialized  # traces the program: Pyro's handler stack is the process's
    def num_params(self) -> int:
        """Number of free scalar parameters (unconstrained dimensions of phi)."""
        total = 0
        with torch.no_grad(), poutine.block():
            c = None if self.context_dim is None else torch.zeros(1, self.context_dim,
                                                                  **self._factory)
            tr = poutine.trace(self.model).get_trace(None, c=c, num_data=1)
        for name in self.global_sites:
            site = tr.nodes[name]
            fn = cast(torch.distributions.Distribution, site["fn"])  # a sample site's
            total += biject_to(fn.support).inv(site["value"]).numel()
        return total + sum(p.numel() for p in self.parameters() if p.requires_grad)

    def extra_repr(self) -> str:
        cfg = {k: v for k, v in self.get_config().items() if not isinstance(v, torch.Tensor)}
        return ", ".join(f"{k}={v!r}" for k, v in cfg.items())

    # ------------------------------------------------------------------ fitting
    def prepare_data(self, data: Any, c: Any, *, device: torch.device,
                     **data_options: Any) -> Tuple["GenerativeModel", torch.Tensor,
                                                   Optional[torch.Tensor]]:
        """Check the data before any work: returns the model to fit (``self``, or a copy
        completed from the data, as a text model's vocabulary is), ``x`` and ``c``."""
        x = self.validate_data(data, device=device)
        return self, x, self.validate_context(c, x.shape[0], device=device, dtype=x.dtype)

    def working_copy(self: _G, x: torch.Tensor,
                     moments: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> _G:
        """The fit's private copy of the model, on ``x``'s device and dtype. It is made
        under the fit's seed, so a family that draws fresh weights draws them
        reproducibly. A family that works on standardized columns (``standardize=True``
        with buffers ``shift`` and ``x_scale``: Flow, GAN, EnergyModel) gets them set from
        the training rows ``x`` here, once for all of them (or from ``moments``, the
        ``(mean, sd)`` of streamed rows of which ``x`` is a sample)."""
        work = copy.deepcopy(self).to(device=x.device, dtype=x.dtype)
        if getattr(work, "standardize", False):
            with torch.no_grad():
                mean, sd = column_moments(x) if moments is None else moments
                work.shift.copy_(mean)
                work.x_scale.copy_(sd)
        return work

    # the standardized columns of a family with ``standardize`` and buffers ``shift``,
    # ``x_scale`` (set by :meth:`working_copy`): the networks' units
    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """u = (x - m) / s when the family standardizes, else ``x``."""
        return (x - self.shift) / self.x_scale if getattr(self, "standardize", False) else x

    def from_unit(self, u: torch.Tensor) -> torch.Tensor:
        """x = m + s u when the family standardizes, else ``u``."""
        return self.shift + self.x_scale * u if getattr(self, "standardize", False) else u

    def log_scale(self) -> torch.Tensor:
        """``sum_d log s_d``: what standardizing subtracts from a log-density (0 if not)."""
        if getattr(self, "standardize", False):
            return self.x_scale.log().sum()
        return self._anchor.new_zeros(())

    @classmethod
    def engine(cls, method: str) -> Engine:
        """The engine that ``fit(..., method=method)`` runs for this family."""
        check_method(method, cls.capabilities.methods, cls.__name__)
        return cls.engines.get(method) or ENGINES[method]

    @apart  # Pyro's handler stack, param store and RNGs: one fit at a time, its own
    def fit(self, data: Any, *, method: str, c: Any = None, seed: Optional[int] = None,
            progress: bool = True, **options: Any) -> Fit:
        """Fit the global parameters to ``data`` by ``method``.

        Args:
            data: ``(N, dim)`` tensor or array-like.
            method: one of ``self.capabilities.methods``.
            c: ``(N, context_dim)`` conditioning values, for conditional models (one row,
                ``(context_dim,)``, for every row).
            seed: makes the fit reproducible; ``None`` draws a fresh one (kept in
                ``Fit.seed``); with ``resume=``, ``None`` takes the seed the checkpoint
                was made with, and another seed is a ``ValueError``. The caller's global
                RNG state is left untouched. A
                network built with the model (Flow, VAE, GAN, Diffusion, ScoreModel,
                EnergyModel) starts every fit from the weights drawn when it was built:
                build it under ``pgm.seeded(s)`` to reproduce those.
            progress: tqdm progress bar.
            **options: the engine's options record (``type(model).engine(method).Options``
                lists them with their defaults). Optimization (``mle``, ``map``, ``vi``):
                ``num_steps``, ``lr``, ``lr_decay``, ``batch_size``, ``optimizer``,
                ``grad_clip``, ``callback``, ``validation``, ``patience``,
                ``validate_every``, ``checkpoint``, ``checkpoint_every``, ``resume``;
                ``vi`` adds ``guide``, ``num_particles``, ``num_posterior_samples``,
                ``init_scale``. MCMC (``nuts``, ``hmc``): ``num_samples``, ``warmup_steps``,
                ``num_chains`` and kernel settings. All: ``device``.

        Returns:
            a :class:`Fit`. Ctrl-C mid-optimization returns the partial fit (``fit.interrupted``).

        Raises:
            ValueError: bad data, method or options (before any work); a
                ``TypeError`` where a value has the wrong type.
            FitError: a non-finite loss, or a bad row in a streamed minibatch after the
                first step; ``err.fit`` keeps the last finite parameters.
        """
        engine = self.engine(method)
        seed, progress = check_seed(seed), check_bool(progress, "progress")  # "no" is truthy
        data_kw = {k: options.pop(k) for k in self.data_options if k in options}
        device = options.pop("device", None)
        device = self._anchor.device if device is None else check_device(device)
        if options.get("distributed") and "distributed" not in engine.option_names():
            raise ValueError(
                f"{type(self).__name__}'s method {method!r} cannot run distributed: only the "
                f"methods that train on minibatches, and nuts and hmc (their chains spread "
                f"over the ranks), do; closed forms, EM and chees (its chains one batched "
                f"computation) run in one process. Fit it without distributed=True")
        streamed = streaming.is_stream(data)
        if streamed and "batch_size" not in options and streaming.loader_batch_size(data):
            options["batch_size"] = streaming.loader_batch_size(data)
        opts = engine.options(method, **options)
        if getattr(opts, "resume", None) is not None:
            # a resume runs under the checkpoint's seed: None takes it (so fit.seed is the
            # seed the run was made with); another is refused here, before any work
            from .infer.checkpoint import resume_seed
            seed = resume_seed(opts.resume, seed)
        if getattr(opts, "distributed", False):
            device = distributed.local_device(device)
        if streamed:
            return self._fit_streamed(data, c, engine, opts, method=method, seed=seed,
                                      device=device, progress=progress)
        given_c = c
        model, x, c = self.prepare_data(data, c, device=device, **data_kw)
        x, c = _unshared(x, data), _unshared(c, given_c)  # the fit keeps x: its own copy
        names = column_names(data)  # a DataFrame's: ArviZ's coordinates, the CLI's header
        known = recorded_names(self, names, x, given_c, c)  # held-out frames must match
        check_heldout_names(getattr(opts, "validation", None), known, self.is_conditional)
        with _columns.named(names):  # the checks' messages name the columns
            if not isinstance(getattr(opts, "validation", None), float):  # else after split
                model.check_data_for(method, x)
            if getattr(opts, "distributed", False):
                seed = distributed.agree_seed(seed, distributed.setup(device))
            with seeded(seed) as used_seed:
                fit_data = split_heldout(model, x, c, getattr(opts, "validation", None),
                                         seed=used_seed, device=device, method=method)
                work = model.working_copy(fit_data.x)
                set_context_moments(work, fit_data.c)
                fit = model._fit_with(engine, work, fit_data, opts, method, used_seed,
                                      progress)
        fit.info.update(known)
        return fit

    def _fit_with(self, engine: Engine, work: "GenerativeModel", fit_data: Data, opts: Any,
                  method: str, seed: int, progress: bool) -> Fit:
        """Run ``engine`` on the working copy and build the fit (under the fit's seed)."""
        with pyro.get_param_store().scope():
            result = engine.run(work, fit_data, opts, method=method, progress=progress)
        recorded = optimizers.recorded({f.name: getattr(opts, f.name)
                                        for f in dataclasses.fields(opts)})
        streamed = fit_data.stream is not None
        if streamed:
            result.info["streamed_rows"] = fit_data.num_rows
        return work.fit_class.build(work, method, result=result,
                                    data=None if streamed else fit_data.x,
                                    context=None if streamed else fit_data.c, seed=seed,
                                    options=json_options(recorded))

    def _fit_streamed(self, data: Any, c: Any, engine: Engine, opts: Any, *, method: str,
                      seed: Optional[int], device: torch.device, progress: bool) -> Fit:
        """:meth:`fit` on a Dataset, DataLoader or memory-mapped array: rows are read per
        minibatch (:mod:`~pyro_genmodels.infer.streaming`)."""
        name = type(self).__name__
        if type(self).prepare_data is not GenerativeModel.prepare_data:
            raise TypeError(f"{name} builds its model from all of its data (e.g. a "
                            f"vocabulary): pass the data whole, not a Dataset, DataLoader "
                            f"or memory-mapped array")
        if not isinstance(opts, LoopOptions):
            raise ValueError(
                f"{name}'s method {method!r} ({type(engine).__name__}) needs every row in "
                f"memory; streamed data (a Dataset, DataLoader or memory-mapped array) "
                f"work with the methods that train on minibatches")
        if c is not None:
            raise ValueError("With streamed data, c comes from the dataset: its items are "
                             "(x, c) pairs; pass c=None")
        conditional = self.context_dim is not None

        def check(xr, cr, dtype=None):
            xb = self.validate_data(xr, device=device, dtype=dtype)
            return xb, self.validate_context(cr, xb.shape[0], device=device, dtype=xb.dtype)

        probe = streaming.Stream(data, check=check, conditional=conditional)
        if opts.distributed:
            seed = distributed.agree_seed(seed, distributed.setup(device))
        with seeded(seed) as used_seed:
            x, c = probe.sample(used_seed)
            stream = streaming.Stream(
                data, conditional=conditional,
                check=lambda xr, cr: check(xr, cr, dtype=x.dtype))
            streaming.check_on_sample(lambda rows: self.check_data_for(method, rows), stream,
                                      used_seed, self.dim, x)
            validation = opts.validation
            if isinstance(validation, float):
                stream, (x_val, c_val) = stream.split(validation, seed=used_seed)
                x, c = stream.sample(used_seed)  # the summary rows: training rows only
                fit_data = Data(x, c, x_val, c_val, stream=stream)
            else:
                fit_data = split_heldout(self, x, c, validation, seed=used_seed,
                                         device=device)._replace(stream=stream)
            moments, c_moments = stream.all_moments() if getattr(self, "standardize",
                                                                 False) else (None, None)
            work = self.working_copy(x, moments=moments)
            set_context_moments(work, c, c_moments)
            return self._fit_with(engine, work, fit_data, opts, method, used_seed, progress)


def _unshared(t: _OptionalTensor, given: Any) -> _OptionalTensor:
    """``t``, or a copy of it where it may share memory with ``given``, the caller's
    object it was read from (``torch.from_numpy`` and a tensor's ``detach`` do not copy):
    a fit keeps its training rows, and the caller changing their array afterwards must not
    change the fit (its ``to_arviz`` data, a save, a LOO)."""
    if t is None or given is None:
        return t
    if isinstance(given, torch.Tensor):
        shared = t.untyped_storage().data_ptr() == given.untyped_storage().data_ptr()
    elif t.device.type != "cpu" or not hasattr(given, "__array__"):
        shared = False  # a copy onto the device; a list or other sequence read anew
    else:
        try:
            shared = bool(np.may_share_memory(t.numpy(), np.asarray(given)))
        except Exception:  # an object numpy cannot view (a list is copied already)
            shared = False
    return cast(_OptionalTensor, t.clone()) if shared else t
