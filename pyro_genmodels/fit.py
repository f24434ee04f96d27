"""The :class:`Fit`: what ``model.fit(...)`` returns; :meth:`Fit.build` is the one place
that makes one (the facade after an engine ran, and ``load``).

A :class:`Fit` owns everything it needs (a private copy of the model, the point estimate
or posterior draws, the loss trace, the training data), so it never depends on Pyro's
global param store and two fits in one process never disturb each other.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Type, TypeVar, Union

import numpy as np
import pyro.distributions as dist
from pyro.distributions.torch_distribution import TorchDistributionMixin
import torch

from ._as_pyro import DrawsOf, Mixture, to_pyro
from ._frames import outside_level
from ._memory import _rows_of, chunked, draw_count, row_width
from ._rng import seeded, serialized
from ._validation import check_column_names, check_device, positive_float

if TYPE_CHECKING:  # base imports this module, not the reverse
    import arviz

    from .base import GenerativeModel
    from .infer.loop import FitResult

#: Numbers one chunk of ``log_prob`` / ``sample`` works with; a chunk has
#: ``CHUNK_ELEMENTS // (width x draws)`` rows, ``width`` the numbers the family holds per
#: row at once (:func:`~pyro_genmodels._memory.row_width`), ``draws`` the posterior draws
#: (1 for a point fit).
#: 2**22 numbers are 16 MiB in float32.
CHUNK_ELEMENTS = 2**22
#: The working set of a ``log_prob`` / ``sample`` call, in chunks; besides its output and
#: its input's conversion (when ``x`` is not already a tensor of the model's dtype and
#: device), a call holds at most about this many times ``CHUNK_ELEMENTS`` numbers,
#: whatever N (:func:`working_set_bytes`; ``tests/test_memory.py`` measures it).
WORKING_SET_CHUNKS = 16


class FitError(RuntimeError):
    """A fit failed part-way (e.g. a non-finite loss); ``.fit`` holds the last good state."""

    def __init__(self, message: str, *, fit: Optional["Fit"] = None,
                 step: Optional[int] = None) -> None:
        super().__init__(message)
        self.fit = fit
        self.step = step


_F = TypeVar("_F", bound="Fit")


def _serialize_public_methods(cls: type) -> None:
    """Every public method and property defined in ``cls`` runs under the process lock
    (:func:`~pyro_genmodels._rng.serialized`): a fit's methods run Pyro handlers and
    draw from the global generators, so a thread must not interleave with another fit's.
    Applied to :class:`Fit` and, by ``__init_subclass__``, to every family's fit class,
    so a new method cannot forget it."""
    for name, value in list(vars(cls).items()):
        if name.startswith("_"):
            continue
        if isinstance(value, property) and value.fget is not None:
            setattr(cls, name, property(serialized(value.fget), value.fset, value.fdel,
                                        value.__doc__))
        elif callable(value) and not isinstance(value, (type, classmethod, staticmethod)):
            setattr(cls, name, serialized(value))


def _jsonable(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str)) or (
        isinstance(v, (list, tuple)) and all(_jsonable(u) for u in v)) or (
        isinstance(v, dict) and all(isinstance(k, str) and _jsonable(u) for k, u in v.items()))


def _plain(v: Any) -> Any:  # a NumPy number (or 0-d array) as the Python number it holds
    return v.item() if isinstance(v, (np.generic, np.ndarray)) and not np.ndim(v) else (
        type(v)(_plain(u) for u in v) if isinstance(v, (list, tuple)) else
        {k: _plain(u) for k, u in v.items()} if isinstance(v, dict) else v)


def json_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """The options a fit records and saves: those JSON holds, NumPy numbers as numbers."""
    plain = {k: _plain(v) for k, v in options.items()}
    return {k: v for k, v in plain.items() if _jsonable(v)}


def _chunk_rows(batch: int) -> int:
    """Rows per chunk when each row holds ``batch`` numbers at once."""
    return max(1, CHUNK_ELEMENTS // max(1, batch))


def working_set_bytes(dtype: torch.dtype = torch.float32) -> int:
    """The bytes a ``log_prob`` / ``sample`` call may hold besides its output and its
    input's conversion: :data:`WORKING_SET_CHUNKS` chunks of :data:`CHUNK_ELEMENTS`
    numbers of ``dtype``."""
    return WORKING_SET_CHUNKS * CHUNK_ELEMENTS * torch.empty((), dtype=dtype).element_size()


def _warn_off_grid(x: torch.Tensor, width: float) -> None:
    """Warn when rows ``x`` ``(N, D)`` are not on the grid of spacing ``width`` that
    uniform dequantization reads them on (each value the lower edge of its bin). In
    chunks of rows, as ``log_prob`` works (no float64 copy of the whole of ``x``)."""
    rows = _chunk_rows(x.shape[1])
    for start in range(0, x.shape[0], rows):
        steps = x[start:start + rows].double() / width
        tol = 64 * torch.finfo(x.dtype).eps * steps.abs().clamp(min=1.0)
        off = (steps - steps.round()).abs() > tol
        if not bool(off.any()):
            continue
        i, j = (int(k) for k in off.nonzero()[0])
        warnings.warn(
            f"bits_per_dim: x is not on a grid of bin_width={width:g}: x[{start + i}, {j}] "
            f"= {float(x[start + i, j]):g} is {float(steps[i, j]):.6g} bins from 0. "
            f"Dequantization takes each value as the lower edge of its bin, so these are the "
            f"bits of bins [x, x + {width:g}) that the data do not define, which can be far "
            f"above the model's fit. Pass the grid's spacing as bin_width, or "
            f"dequantize=False for rows already dequantized (or continuous).", UserWarning,
            stacklevel=outside_level())
        return


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
                 losses: Iterable[float] = (), data: Optional[torch.Tensor] = None,
                 context: Optional[torch.Tensor] = None, seed: Optional[int] = None,
                 options: Optional[Dict[str, Any]] = None, interrupted: bool = False,
                 info: Optional[Dict[str, Any]] = None) -> None:
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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _serialize_public_methods(cls)

    @classmethod
    def build(cls: Type[_F], model: GenerativeModel, method: str, *,
              result: Optional[FitResult] = None, **fields: Any) -> _F:
        """The one place that makes a fit (the facade after an engine ran, and ``load``):
        a ``cls`` (the family's ``fit_class``) from ``fields``.

        ``result`` (a :class:`~pyro_genmodels.infer.loop.FitResult`) supplies phi, losses
        and info; a result whose ``error`` is set raises :class:`FitError` carrying the
        partial fit (the last finite state) instead.
        """
        if result is None:
            return cls(model, method, **fields)
        fields = {"point": result.point, "posterior": result.posterior,
                  "sample_stats": result.sample_stats, "losses": result.losses,
                  "interrupted": result.interrupted, "info": result.info, **fields}
        def non_finite(params: Dict[str, Any]) -> List[str]:
            return sorted(k for k, v in params.items()
                          if isinstance(v, torch.Tensor) and v.is_floating_point()
                          and not bool(torch.isfinite(v).all()))

        if result.error is None:
            fit = cls(model, method, **fields)
            params = fit.params
            bad = non_finite(params)
            if bad:
                raise FitError(
                    f"The fit's {', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not "
                    f"finite although every loss and update was: the parameters grew until "
                    f"a derived quantity overflowed {params[bad[0]].dtype}. "
                    f"Try a smaller lr, or check the data scale. There is no finite state "
                    f"to keep (err.fit is None).")
            return fit
        if fields["point"] is None and fields["posterior"] is None:
            fields["point"] = {}
        partial = cls(model, method, **fields)
        # (a run resumed at the failing step has no earlier parameters to put back)
        bad, note = non_finite(partial.params), ""
        if bad:
            note = (f" The parameters there are not finite ({', '.join(bad)}): there is no "
                    f"finite state to keep (err.fit is None).")
        raise FitError(str(result.error) + note, fit=None if bad else partial,
                       step=result.error.step) from result.error

    # ------------------------------------------------------------------ summaries
    @property
    def log_prob_kind(self) -> str:
        """What ``log_prob`` returns, the model's ``capabilities.log_prob`` unless the
        family's fit class says otherwise (an energy fit subtracts an AIS estimate of
        log Z from its unnormalized density: ``"estimate"``)."""
        return self.model.capabilities.log_prob

    @property
    def is_posterior(self) -> bool:
        """Whether the fit holds posterior draws of phi (``vi``, ``nuts``, ``hmc``), not a point."""
        return self.posterior is not None

    @property
    def num_draws(self) -> int:
        """The number of stored posterior draws, chains x draws per chain (0 for a point)."""
        if self.posterior is None:
            return 0
        c, s = next(iter(self.posterior.values())).shape[:2]
        return c * s

    def posterior_samples(self) -> Dict[str, torch.Tensor]:
        """Posterior draws with chains flattened: ``{site: (chains * draws, *shape)}``."""
        if self.posterior is None:
            raise ValueError(f"A {self.method!r} fit is a point estimate and has no posterior "
                             f"draws")
        return {k: v.reshape((-1,) + v.shape[2:]) for k, v in self.posterior.items()}

    @property
    def params(self) -> Dict[str, torch.Tensor]:
        """Point estimates (posterior means for ``vi``/MCMC) of phi and derived quantities:
        copies, so changing one in place leaves the fit as it is."""
        if self.point is not None:
            return {k: v.clone() for k, v in
                    {**self.point, **self.model.derived(self.point)}.items()}
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
        chunks of :data:`CHUNK_ELEMENTS` numbers (rows x
        :func:`~pyro_genmodels._memory.row_width` x S), so the memory a call takes is its
        ``(N,)`` output, ``x``'s conversion (none for a tensor of the model's dtype and
        device) and a working set that does not grow with N.
        """
        self._check_density()
        x = self._as_input(x)
        c = self._as_context(c, x.shape[0])
        point = self.point
        if point is not None:
            return chunked(x.shape[0], self._rows(), lambda a, b: self.model.log_prob_given(
                point, x[a:b], _rows_of(c, a, b)))
        draws = self.posterior_samples()
        log_s = math.log(self.num_draws)
        return chunked(x.shape[0], self._rows(self.num_draws), lambda a, b: (
            self.model.log_prob_given(draws, x[a:b], _rows_of(c, a, b)).logsumexp(0) - log_s))

    @torch.no_grad()
    def bits_per_dim(self, x: Any, *, c: Any = None, bin_width: float = 1.0,
                     dequantize: bool = True, seed: Optional[int] = 0,
                     **log_prob_options: Any) -> float:
        r"""Bits per dimension of rows ``x`` whose values lie on a grid of ``bin_width``
        (e.g. integer grey levels: 1), by uniform dequantization (Theis, van den Oord &
        Bethge 2016): with :math:`u_i \sim U[0, \Delta)^D` drawn under ``seed``,

        .. math::

            \mathrm{bpd} = -\frac{1}{N D \log 2} \sum_i
                \big[\log p(x_i + u_i) + D \log \Delta\big],

        an upper bound (in expectation over u) on the bits of the discrete model
        :math:`P(x) = \int_{[0, \Delta)^D} p(x + u)\, du`, as far as ``log_prob`` is
        exact (a bound or an estimate otherwise: :attr:`log_prob_kind`). The model
        should have been fitted to dequantized rows. ``dequantize=False`` takes ``x`` as
        already dequantized; with ``dequantize``, values of ``x`` that are not multiples of
        ``bin_width`` (continuous data) get a ``UserWarning``: the bins would be placed by
        the data, not by a grid. ``log_prob_options`` go to :meth:`log_prob` (e.g.
        ``num_particles``, or a diffusion fit's ``estimator``)."""
        self._check_density()
        self._check_grid(dequantize)
        x = self._as_input(x)
        width = positive_float(bin_width, "bin_width")
        if dequantize:
            _warn_off_grid(x, width)
            with seeded(seed):
                x = x + width * torch.rand_like(x)
        lp = self.log_prob(x, c=c, **log_prob_options)
        d = x.shape[1]
        return float(-(lp.mean() + d * math.log(width)) / (d * math.log(2)))

    @torch.no_grad()
    def pointwise_log_likelihood(self, x: Any = None, *, c: Any = None) -> torch.Tensor:
        """``log p(x_i | phi_s)`` for every draw: ``(chains, draws, N)``; ``x`` defaults to
        the training data. Point fits give ``(1, 1, N)``."""
        self._check_density()
        if x is None:
            x, c = self.data, self.context
        else:
            x = self._as_input(x)
            c = self._as_context(c, x.shape[0])
        if self.point is not None:
            return self.model.log_prob_given(self.point, x, c).reshape(1, 1, -1)
        assert self.posterior is not None  # a fit holds a point or draws
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
        take ``c`` of shape ``(n, context_dim)``, or one row for all: ``(1, context_dim)``
        or ``(context_dim,)``. Drawn in chunks of rows, as ``log_prob`` evaluates, into
        the one ``(n, dim)`` output. ``seed``: the same seed, the same draws; ``None``
        draws under a fresh seed from the OS, not from torch's or Pyro's global generator
        (``pyro.set_rng_seed`` does not reach it), which the call leaves as it was."""
        n = draw_count(n)
        c = self._as_context(c, n)
        with seeded(seed):
            point = self.point
            if point is not None:
                return chunked(n, self._rows(), lambda a, b: self.model.sample_given(
                    point, b - a, _rows_of(c, a, b)))
            draws = self.posterior_samples()
            # each row holds its own phi, and what the family makes of it (twice)
            phi = sum(v[0].numel() for v in draws.values())
            rows = _chunk_rows(self._row_width() + 2 * phi)

            def part(a: int, b: int) -> torch.Tensor:
                # each chunk draws its rows' posterior draws (no (n,) index held)
                idx = torch.randint(self.num_draws, (b - a,), device=self._device)
                return self.model.sample_given({k: v[idx] for k, v in draws.items()}, b - a,
                                               _rows_of(c, a, b))
            return chunked(n, rows, part)

    def distribution(self, c: Any = None) -> dist.TorchDistribution:
        """The fitted density p(x[ | c]) as a Pyro distribution (``log_prob``, ``sample``,
        event shape ``(dim,)``) to use in a Pyro program of your own, e.g. a fitted flow
        as a prior: ``pyro.sample("theta", fit.distribution())``.

        Point fits: ``model.distribution(phi_hat, c)``. Posterior fits: the posterior
        predictive, the uniform mixture over the S stored draws of phi
        (``MixtureSameFamily``), whose ``log_prob`` is :meth:`log_prob`'s. ``c``: for
        conditional models, ``(N, context_dim)`` gives batch shape ``(N,)``. Families
        whose model implements the density hook have one (Gaussian, GaussianMixture,
        PPCA, Flow); the others raise ``NotImplementedError`` (an estimate, an
        unnormalized density, or sequences of varying length). The density is fixed: a
        network's weights are a copy that no gradient of your program reaches.
        """
        self._check_density()
        # c: rows (N, context_dim), or one row (context_dim,) or a number: batch (1,);
        # checked as log_prob checks it (a conditional model without c is refused)
        wide = (getattr(self.model, "context_dim", None) or 1) > 1  # (N,) is N rows of 1
        c = self._as_context(c, 1 if np.ndim(c) == 0 or (np.ndim(c) == 1 and wide) else len(c))
        model = self._fixed_model()
        if self.point is not None:
            d = model.distribution(self.point, c)
        else:
            if c is not None:
                raise ValueError("A posterior fit's distribution is unconditional")
            draws = self.posterior_samples()
            d = model.distribution(draws, None)
            mix = dist.Categorical(logits=torch.zeros(self.num_draws, **self._factory))
            d = Mixture.of_draws(mix, d if isinstance(d, TorchDistributionMixin) else
                                 to_pyro(d), DrawsOf(model, draws))
        return d if isinstance(d, TorchDistributionMixin) else to_pyro(d)

    def _fixed_model(self) -> GenerativeModel:
        """The model with its network weights fixed, for :meth:`distribution`: a copy
        made once per model (``to`` makes another) that no gradient reaches (the fit's
        own weights left a user's SVI their gradients, and Pyro's jit refused them)."""
        cached = self.__dict__.get("_fixed")
        if cached is None or cached[0] is not self.model:
            fixed = self.model
            if any(p.requires_grad for p in fixed.parameters()):
                fixed = copy.deepcopy(fixed).requires_grad_(False)
            cached = self.__dict__["_fixed"] = (self.model, fixed)
        return cached[1]

    def _check_density(self) -> None:
        """A family without a density (``log_prob_kind == "none"``) says so and why."""
        if self.log_prob_kind == "none":
            raise NotImplementedError(getattr(self.model, "no_density", None) or (
                f"{type(self.model).__name__} has no density (log_prob_kind 'none')"))

    def _check_grid(self, dequantize: bool = False) -> None:
        """Bits per dimension are of numeric rows on a grid (``dequantize``: with uniform
        noise added); a family whose data are not (sequences), or whose likelihood the
        noise would leave (a Bernoulli VAE's), refuses them here."""

    def _row_width(self) -> int:
        """Numbers per row that ``log_prob`` / ``sample`` hold at once, for one draw of
        phi (:func:`~pyro_genmodels._memory.row_width` of the model; a family's fit class
        may say better)."""
        return row_width(self.model)

    def _rows(self, draws: int = 1) -> int:
        """Rows per chunk of ``log_prob`` / ``sample``, for ``draws`` draws of phi per row."""
        return _chunk_rows(draws * self._row_width())

    @property
    def _factory(self) -> Dict[str, Any]:
        return {"dtype": self.model._anchor.dtype, "device": self._device}

    @property
    def _device(self) -> torch.device:
        return self.model._anchor.device

    def _as_input(self, x: Any) -> torch.Tensor:
        check_column_names(x, self.info.get("columns"))
        return self.model.validate_data(x, name="x", device=self._device,
                                        dtype=self.model._anchor.dtype)

    def _as_context(self, c: Any, num_rows: int) -> Optional[torch.Tensor]:
        if hasattr(c, "columns"):  # a frame of conditions (a Series is one row, or labels)
            check_column_names(c, self.info.get("context_columns"), "c", "context_columns")
        return self.model.validate_context(c, num_rows, device=self._device,
                                           dtype=self.model._anchor.dtype)

    # ------------------------------------------------------------------ outputs
    def to_arviz(self, *, posterior_predictive: bool = True,
                 max_predictive_size: int = 20_000_000,
                 seed: Optional[int] = None) -> arviz.InferenceData:
        """An :class:`arviz.InferenceData`: :func:`pyro_genmodels.arviz.to_inference_data`
        with these arguments (named here, so an unknown one is refused by this name)."""
        from .arviz import to_inference_data

        return to_inference_data(self, posterior_predictive=posterior_predictive,
                                 max_predictive_size=max_predictive_size, seed=seed)

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the fit to the directory ``path`` (JSON + safetensors; no pickle).

        A fit made with ``distributed=True``, saved while its process group is up, is
        written by rank 0 alone; the other ranks wait at a barrier until it is there."""
        from .infer import distributed
        from .io import save

        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"Expected path to be a str or os.PathLike (a directory to write), "
                            f"but got {path!r} ({type(path).__name__})")
        group = distributed.current() if self.info.get("distributed") else None
        if group is None or group.main:
            save(self, path)
        if group is not None:
            distributed.barrier(group, "barrier after saving the fit")

    def to(self: _F, device: Union[str, torch.device]) -> _F:
        """A copy of this fit with every tensor on ``device``."""
        dev = check_device(device)
        out = copy.copy(self)
        out.model = copy.deepcopy(self.model).to(dev)

        def move(d: Optional[Dict[str, torch.Tensor]]) -> Optional[Dict[str, torch.Tensor]]:
            return None if d is None else {k: v.to(dev) for k, v in d.items()}

        out.point, out.posterior = move(self.point), move(self.posterior)
        out.sample_stats = {k: v.to(dev) for k, v in self.sample_stats.items()}
        out.data = None if self.data is None else self.data.to(dev)
        out.context = None if self.context is None else self.context.to(dev)
        return out


_serialize_public_methods(Fit)
