"""The facade: :class:`GenerativeModel`, its :class:`Capabilities`, and the :class:`Fit`.

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
global param store and two fits in one process never disturb each other.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
from collections.abc import Mapping
from typing import Any, Callable, ClassVar, Dict, Iterator, Optional, Tuple

import pyro
import torch
from pyro import poutine
from torch.distributions import biject_to
from pyro.nn import PyroModule

from ._rng import seeded
from ._validation import as_data, check_method, check_options, positive_int

LOG_PROB_KINDS = ("exact", "bound", "estimate", "unnormalized")

#: Rows per chunk in ``log_prob`` / ``sample`` (times the number of posterior draws).
CHUNK_ELEMENTS = 2**22


@dataclasses.dataclass(frozen=True)
class Capabilities(Mapping):
    """What a model family can do, and how honestly.

    Attributes:
        log_prob: one of ``"exact"``, ``"bound"``, ``"estimate"``, ``"unnormalized"``.
        sampling: how samples are drawn (``"direct"``, ``"ancestral"``, ``"mcmc"``, ...).
        methods: the values of ``method`` that :meth:`GenerativeModel.fit` accepts.
        conditional: whether ``fit(x, c=...)`` / ``sample(n, c=...)`` are supported.

    It is also a read-only mapping, so ``caps["log_prob"]`` and ``dict(caps)`` work.
    """

    log_prob: str
    sampling: str
    methods: Tuple[str, ...]
    conditional: bool = False

    def __post_init__(self):
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


_REGISTRY: Dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make a model family known to the CLI, ``load`` and the tests."""
    name = cls.registry_name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"A model is already registered as {name!r}")
    _REGISTRY[name] = cls
    return cls


def registry() -> Dict[str, type]:
    """The registered model families, by name (a copy)."""
    return dict(_REGISTRY)


def get_model_class(name: str) -> type:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}; expected one of {sorted(_REGISTRY)}") from None


class FitError(RuntimeError):
    """A fit failed part-way (e.g. a non-finite loss); ``.fit`` holds the last good state."""

    def __init__(self, message: str, *, fit: Optional["Fit"] = None, step: Optional[int] = None):
        super().__init__(message)
        self.fit = fit
        self.step = step


class GenerativeModel(PyroModule):
    """Base class of every model family: a Pyro program plus what the engines need.

    A family implements :meth:`model`, :meth:`init_values`, :meth:`log_prob_given`,
    :meth:`sample_given` and :meth:`get_config`, and may add :meth:`derived`.
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
    #: per-method option defaults of the family (e.g. a smaller lr for networks);
    #: the user's options override them
    default_options: ClassVar[Dict[str, Dict[str, Any]]] = {}
    #: width of the conditioning variable ``c`` (``None``: unconditional)
    context_dim: Optional[int] = None
    #: the ELBO the optimizing engines use: ``"Trace_ELBO"``, or ``"TraceEnum_ELBO"``
    #: for a model whose discrete local latents are enumerated (``config_enumerate``)
    elbo: ClassVar[str] = "Trace_ELBO"
    #: plates nested around the observed site (needed by enumeration, ELBO and NUTS)
    max_plate_nesting: ClassVar[int] = 1
    #: an amortized guide of the *local* latents (e.g. a VAE encoder), with the signature
    #: of :meth:`model`; global sites stay with the method's guide. ``None``: no local
    #: latents, or only enumerated / integrated ones.
    local_guide: ClassVar[Optional[Callable]] = None
    #: the family's engines for some methods (e.g. closed-form EM, contrastive
    #: divergence), used instead of the shared ones in :mod:`pyro_genmodels.infer`
    engines: ClassVar[Dict[str, Callable]] = {}
    #: the :class:`Fit` subclass that carries the family's extra methods
    #: (``predict``, ``encode``, ...); ``None`` is :class:`Fit`
    fit_class: ClassVar[Optional[type]] = None
    #: options of :meth:`fit` that describe the data rather than the engine, handed to
    #: :meth:`prepare_data` (the sequence families' ``lengths``)
    data_options: ClassVar[Tuple[str, ...]] = ()

    @property
    def prior_sites(self) -> Tuple[str, ...]:
        """Sites whose log-density is the prior of phi; ``mle`` masks them. By default the
        global latent sites; a neural family adds its weight-prior factor."""
        return self.global_sites

    def __init__(self, dim: int):
        super().__init__()
        self.dim = positive_int(dim, "dim")
        # carries the dtype and device that the model's tensors are created with
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    # ------------------------------------------------------------------ family API
    def model(self, x: Optional[torch.Tensor] = None, *, c: Optional[torch.Tensor] = None,
              num_data: Optional[int] = None,
              subsample_size: Optional[int] = None) -> torch.Tensor:
        """The Pyro model. ``x``: ``(N, dim)`` observations, or ``None`` to draw
        ``num_data`` points from the prior predictive; ``c``: ``(N, context_dim)``
        conditioning values for conditional models; ``subsample_size`` turns the data
        plate into a minibatch plate (unbiased, scaled by ``N / subsample_size``)."""
        raise NotImplementedError

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def init_values(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Data-dependent starting values (constrained) of the global sites."""
        raise NotImplementedError

    def log_prob_given(self, params: Dict[str, torch.Tensor], x: torch.Tensor,
                       c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``log p(x_i | phi[, c_i])`` for every row: shape ``(*batch, N)``."""
        raise NotImplementedError

    def sample_given(self, params: Dict[str, torch.Tensor], n: int,
                     c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``n`` draws of x given phi (and ``c``, ``(n, context_dim)``); when phi is
        batched its batch must be ``(n,)`` and row i is drawn from phi_i."""
        raise NotImplementedError

    def replicate_given(self, params: Dict[str, torch.Tensor], num_data: int) -> torch.Tensor:
        """One replicated data set per draw of phi (batch ``(S,)``): ``(S, num_data, dim)``."""
        num = next(iter(params.values())).shape[0]
        return torch.stack([self.sample_given({k: v[s] for k, v in params.items()}, num_data)
                            for s in range(num)])

    def check_data_for(self, method: str, x: torch.Tensor) -> None:
        """Refuse data that ``method`` cannot fit (e.g. a singular MLE), before any work."""

    def derived(self, params: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Quantities computed from phi that users read (e.g. ``covariance_matrix``)."""
        return {}

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments; values are JSON types, tensors, or user-supplied
        ``nn.Module`` networks (which :meth:`Fit.save` stores as weights only)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    @property
    def _factory(self) -> Dict[str, Any]:
        return {"dtype": self._anchor.dtype, "device": self._anchor.device}

    def validate_data(self, data: Any, *, name: str = "data", device=None,
                      dtype=None) -> torch.Tensor:
        return as_data(data, dim=self.dim, name=name, device=device, dtype=dtype)

    def validate_context(self, c: Any, num_rows: int, *, device=None,
                         dtype=None) -> Optional[torch.Tensor]:
        """Check ``c`` against the model: ``None`` for unconditional models, else
        ``(num_rows, context_dim)`` (one row is broadcast to all)."""
        name = type(self).__name__
        if self.context_dim is None:
            if c is not None:
                raise ValueError(f"{name} is unconditional (context_dim=None): c must be None")
            return None
        if c is None:
            raise ValueError(f"{name} is conditional: pass c of shape (N, {self.context_dim})")
        c = as_data(c, dim=self.context_dim, name="c", device=device, dtype=dtype)
        if c.shape[0] == 1 and num_rows > 1:
            c = c.expand(num_rows, -1)
        if c.shape[0] != num_rows:
            raise ValueError(f"c has {c.shape[0]} rows but there are {num_rows} data rows")
        return c
    def num_params(self) -> int:
        """Number of free scalar parameters (unconstrained dimensions of phi)."""
        total = 0
        with torch.no_grad(), poutine.block():
            c = None if self.context_dim is None else torch.zeros(1, self.context_dim,
                                                                  **self._factory)
            tr = poutine.trace(self.model).get_trace(None, c=c, num_data=1)
        for name in self.global_sites:
            site = tr.nodes[name]
            total += biject_to(site["fn"].support).inv(site["value"]).numel()
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

    def working_copy(self, x: torch.Tensor) -> "GenerativeModel":
        """The fit's private copy of the model, on ``x``'s device and dtype. It is made
        under the fit's seed, so a family that draws fresh weights draws them
        reproducibly."""
        return copy.deepcopy(self).to(device=x.device, dtype=x.dtype)

    def fit(self, data: Any, *, method: str, c: Any = None, seed: Optional[int] = None,
            progress: bool = True, **options: Any) -> "Fit":
        """Fit the global parameters to ``data`` by ``method``.

        Args:
            data: ``(N, dim)`` tensor or array-like.
            method: one of ``self.capabilities.methods``.
            c: ``(N, context_dim)`` conditioning values, for conditional models.
            seed: makes the fit reproducible; ``None`` draws a fresh one (kept in
                ``Fit.seed``). The caller's global RNG state is left untouched.
            progress: tqdm progress bar.
            **options: engine options. Optimization (``mle``, ``map``, ``vi``):
                ``num_steps``, ``lr``, ``lr_decay``, ``batch_size``, ``optimizer``,
                ``callback``; ``vi`` adds ``guide``, ``num_particles``,
                ``num_posterior_samples``. MCMC (``nuts``, ``hmc``): ``num_samples``,
                ``warmup_steps``, ``num_chains`` and kernel settings. All: ``device``.

        Returns:
            a :class:`Fit`. Ctrl-C during an optimization returns the partial fit
            (``fit.interrupted`` is True).

        Raises:
            ValueError / TypeError: bad data, method or options (before any work).
            FitError: a non-finite loss; ``err.fit`` keeps the last finite parameters.
        """
        from .infer import ENGINES  # late import: engines import this module

        check_method(method, self.capabilities.methods, type(self).__name__)
        engine = self.engines.get(method) or ENGINES[method]
        data_kw = {k: options.pop(k) for k in self.data_options if k in options}
        allowed = [p.name for p in inspect.signature(engine).parameters.values()
                   if p.kind is p.KEYWORD_ONLY and p.name not in ("progress", "c")]
        check_options(options, allowed + ["device"], method=method)
        options = {**self.default_options.get(method, {}), **options}
        device = torch.device(options.pop("device", None) or self._anchor.device)
        model, x, c = self.prepare_data(data, c, device=device, **data_kw)
        model.check_data_for(method, x)
        validate = getattr(engine, "validate_options", None)
        if validate is not None:
            validate(model, x, **options)
        with seeded(seed) as used_seed:
            work = model.working_copy(x)
            with pyro.get_param_store().scope():
                result = engine(work, x, c=c, progress=progress, **options)
        return make_fit(work, method, data=x, context=c, seed=used_seed,
                        options={k: v for k, v in options.items() if _jsonable(v)}, **result)


def make_fit(model: GenerativeModel, method: str, **fields: Any) -> "Fit":
    """A fit of the model's own :attr:`~GenerativeModel.fit_class` (engines, ``load``)."""
    return (model.fit_class or Fit)(model, method, **fields)


def gaussian_weight_log_prior(weights, scale: float) -> torch.Tensor:
    """``sum_w log N(w; 0, scale^2)`` over every element of the tensors ``weights`` (a
    non-empty list): the isotropic Gaussian prior whose MAP is L2 weight decay
    ``||w||^2 / (2 scale^2)``. One fused norm over the list, no per-tensor loop."""
    total = torch.stack(torch._foreach_norm(weights)).pow(2).sum()
    n = sum(p.numel() for p in weights)
    return -total / (2 * scale**2) - n * (0.5 * math.log(2 * math.pi) + math.log(scale))


def cached_parameters(owner: torch.nn.Module, module: torch.nn.Module) -> list:
    """``list(module.parameters())``, cached on ``owner``: walking the module tree at
    every step costs more than the weight prior itself. ``deepcopy`` maps the list onto
    the copy's parameters and ``.to()`` keeps their identities, so the cache stays valid."""
    if owner.__dict__.get("_weight_list") is None:
        owner.__dict__["_weight_list"] = list(module.parameters())
    return owner.__dict__["_weight_list"]


def _jsonable(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str)) or (
        isinstance(v, (list, tuple)) and all(_jsonable(u) for u in v))


def _chunk_rows(batch: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, batch))


def _split(x: torch.Tensor, c: Optional[torch.Tensor], rows: int):
    """Row chunks of ``x`` paired with the matching chunks of ``c`` (or ``None``)."""
    xs = x.split(rows)
    return zip(xs, c.split(rows) if c is not None else [None] * len(xs))


class Fit:
    """The result of :meth:`GenerativeModel.fit`.

    Attributes:
        method: how phi was fitted (``"mle"``, ``"map"``, ``"vi"``, ``"nuts"``, ``"hmc"``).
        model: a private copy of the model (never shared with other fits).
        losses: the optimization trace, one float per step (empty for MCMC).
        seed: the seed the fit ran under.
        interrupted: True when the fit was stopped early by Ctrl-C.
        posterior: for ``vi`` / MCMC, ``{site: (chains, draws, *shape)}``; else ``None``.
        sample_stats: per-draw MCMC statistics ``{name: (chains, draws)}``.
        data: the training data (kept for ``to_arviz``); ``context`` its ``c``.
    """

    def __init__(self, model: GenerativeModel, method: str, *,
                 point: Optional[Dict[str, torch.Tensor]] = None,
                 posterior: Optional[Dict[str, torch.Tensor]] = None,
                 sample_stats: Optional[Dict[str, torch.Tensor]] = None,
                 losses=(), data: Optional[torch.Tensor] = None,
                 context: Optional[torch.Tensor] = None, seed: Optional[int] = None,
                 options: Optional[Dict[str, Any]] = None, interrupted: bool = False,
                 info: Optional[Dict[str, Any]] = None):
        if (point is None) == (posterior is None):
            raise ValueError("A Fit holds either a point estimate or posterior draws")
        self.model = model
        self.method = method
        self.point = None if point is None else {k: v.detach() for k, v in point.items()}
        self.posterior = (None if posterior is None
                          else {k: v.detach() for k, v in posterior.items()})
        self.sample_stats = dict(sample_stats or {})
        self.losses = [float(v) for v in losses]
        self.data = data
        self.context = context
        self.seed = seed
        self.options = dict(options or {})
        self.interrupted = bool(interrupted)
        self.info = dict(info or {})

    # ------------------------------------------------------------------ summaries
    @property
    def log_prob_kind(self) -> str:
        """What ``log_prob`` returns: the model's ``capabilities.log_prob``, unless the
        family's fit class says otherwise (an energy fit subtracts an AIS estimate of
        log Z from its unnormalized density: ``"estimate"``)."""
        return self.model.capabilities.log_prob

    @property
    def is_posterior(self) -> bool:
        return self.posterior is not None

    @property
    def num_draws(self) -> int:
        if self.posterior is None:
            return 0
        c, s = next(iter(self.posterior.values())).shape[:2]
        return c * s

    def posterior_samples(self) -> Dict[str, torch.Tensor]:
        """Posterior draws with chains flattened: ``{site: (chains * draws, *shape)}``."""
        if self.posterior is None:
            raise ValueError(f"A {self.method!r} fit is a point estimate and has no posterior draws")
        return {k: v.reshape((-1,) + v.shape[2:]) for k, v in self.posterior.items()}

    @property
    def params(self) -> Dict[str, torch.Tensor]:
        """Point estimates (posterior means for ``vi``/MCMC) of phi and derived quantities."""
        if self.point is not None:
            return {**self.point, **self.model.derived(self.point)}
        draws = self.posterior_samples()
        out = {k: v.mean(0) for k, v in draws.items()}
        for k, v in self.model.derived(draws).items():
            out[k] = v.mean(0)
        return out

    def __repr__(self) -> str:
        what = "point estimate" if self.point is not None else f"{self.num_draws} posterior draws"
        extra = ", interrupted" if self.interrupted else ""
        return (f"Fit(model={type(self.model).__name__}, method={self.method!r}, {what}, "
                f"log_prob_kind={self.log_prob_kind!r}{extra})")

    # ------------------------------------------------------------------ density, sampling
    @torch.no_grad()
    def log_prob(self, x: Any, *, c: Any = None) -> torch.Tensor:
        """``log p(x_i)`` (or ``log p(x_i | c_i)``) for each row of ``x``, shape ``(N,)``.

        Point fits: ``log p(x_i | phi_hat)``. Posterior fits: the posterior predictive
        density ``log (1/S) sum_s p(x_i | phi_s)`` over the S stored draws. Evaluated in
        chunks, so memory is bounded by the chunk, not by N.
        """
        x = self._as_input(x)
        c = self._as_context(c, x.shape[0])
        if self.point is not None:
            return torch.cat([self.model.log_prob_given(self.point, xb, cb)
                              for xb, cb in _split(x, c, _chunk_rows(1))])
        draws = self.posterior_samples()
        log_s = math.log(self.num_draws)
        return torch.cat([self.model.log_prob_given(draws, xb, cb).logsumexp(0) - log_s
                          for xb, cb in _split(x, c, _chunk_rows(self.num_draws))])

    @torch.no_grad()
    def pointwise_log_likelihood(self, x: Any = None, *, c: Any = None) -> torch.Tensor:
        """``log p(x_i | phi_s)`` for every draw: ``(chains, draws, N)``; ``x`` defaults to
        the training data. Point fits give ``(1, 1, N)``."""
        if x is None:
            x, c = self.data, self.context
        else:
            x = self._as_input(x)
            c = self._as_context(c, x.shape[0])
        if self.point is not None:
            return self.model.log_prob_given(self.point, x, c).reshape(1, 1, -1)
        chains, draws = next(iter(self.posterior.values())).shape[:2]
        flat = self.posterior_samples()
        out = []
        step = max(1, CHUNK_ELEMENTS // x.shape[0])
        for i in range(0, chains * draws, step):
            part = {k: v[i:i + step] for k, v in flat.items()}
            out.append(self.model.log_prob_given(part, x, c))
        return torch.cat(out).reshape(chains, draws, -1)

    @torch.no_grad()
    def sample(self, n: int, *, c: Any = None, seed: Optional[int] = None) -> torch.Tensor:
        """``n`` draws of x, shape ``(n, dim)``; for posterior fits from the posterior
        predictive (each row uses a uniformly drawn posterior draw). Conditional models
        take ``c`` of shape ``(n, context_dim)`` or ``(1, context_dim)``."""
        n = positive_int(n, "n")
        c = self._as_context(c, n)
        with seeded(seed):
            if self.point is not None:
                rows = _chunk_rows(self.model.dim)
                return torch.cat([self.model.sample_given(self.point, i.shape[0], cb)
                                  for i, cb in _split(torch.arange(n), c, rows)])
            draws = self.posterior_samples()
            idx = torch.randint(self.num_draws, (n,), device=self._device)
            rows = _chunk_rows(self.model.dim * self.model.dim)
            return torch.cat([self.model.sample_given({k: v[part] for k, v in draws.items()},
                                                      part.shape[0], cb)
                              for part, cb in _split(idx, c, rows)])

    @property
    def _device(self) -> torch.device:
        return self.model._anchor.device

    def _as_input(self, x: Any) -> torch.Tensor:
        return self.model.validate_data(x, name="x", device=self._device,
                                        dtype=self.model._anchor.dtype)

    def _as_context(self, c: Any, num_rows: int) -> Optional[torch.Tensor]:
        return self.model.validate_context(c, num_rows, device=self._device,
                                           dtype=self.model._anchor.dtype)

    # ------------------------------------------------------------------ outputs
    def to_arviz(self, **kwargs):
        """An :class:`arviz.InferenceData` (see :func:`pyro_genmodels.arviz.to_inference_data`)."""
        from .arviz import to_inference_data

        return to_inference_data(self, **kwargs)

    def save(self, path) -> None:
        """Write the fit to the directory ``path`` (JSON + safetensors; no pickle)."""
        from .io import save

        save(self, path)

    def to(self, device) -> "Fit":
        """A copy of this fit with every tensor on ``device``."""
        device = torch.device(device)
        out = copy.copy(self)
        out.model = copy.deepcopy(self.model).to(device)
        move = lambda d: None if d is None else {k: v.to(device) for k, v in d.items()}  # noqa: E731
        out.point, out.posterior = move(self.point), move(self.posterior)
        out.sample_stats = move(self.sample_stats)
        out.data = None if self.data is None else self.data.to(device)
        out.context = None if self.context is None else self.context.to(device)
        return out

