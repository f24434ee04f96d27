"""One engine object per method, each with a typed options record.

An engine is what ``model.fit(data, method=...)`` runs: ``engine.options(method, **kw)``
checks the user's options (names, types, ranges: "expected ... got ..." errors, before
any work), and ``engine.run(model, data, opts, ...)`` returns a
:class:`~pyro_genmodels.infer.loop.FitResult`; the facade alone builds the ``Fit``.
Engines know no family: a family's model supplies the Pyro program, ``init_values``,
``global_sites``, ``prior_sites``, ``local_guide`` and ``log_prob_given``.

A family changes a method by declaring an engine in its class body, e.g.
``engines = {"mle": PointEngine("mle", lr=1e-3, batch_size=256)}`` (new defaults) or
``engines = {"mle": EM()}`` (its own engine, a subclass of :class:`Engine`).

=========  ====================  =========================================================
method     engine                options record
=========  ====================  =========================================================
``mle``    :class:`PointEngine`  :class:`PointOptions` (the loop's + ``jit``)
``map``    :class:`PointEngine`  :class:`PointOptions`
``vi``     :class:`VIEngine`     :class:`VIOptions` (+ ``guide``, ``num_particles``, ...)
``nuts``   :class:`MCMCEngine`   :class:`NUTSOptions`
``hmc``    :class:`MCMCEngine`   :class:`HMCOptions`
``chees``  :class:`ChEESEngine`  :class:`ChEESOptions`
=========  ====================  =========================================================
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Type

import pyro.optim  # and pyro
import torch
from torch.distributions import biject_to
from pyro.infer.autoguide import AutoDelta, AutoNormal, init_to_value

from .._validation import (check_bool, check_choice, check_options, heldout_conditions,
                           heldout_pair, nonnegative_float, positive_float, probability,
                           store_counts, with_context)
from .loop import FitResult, LoopOptions, NonFiniteLossError, Player, optimize
from .optimizers import refuse_unread
from .mcmc import sample_posterior
from .potential import sample_posterior_fused
from .objectives import (DifferentiableELBO, ELBOLoss, FlatPriors, GenerativeModel,
                         MultivariateNormalGuide, NegativeLogJoint, make_elbo, make_guide,
                         traced_execution, use_jit)


class Data(NamedTuple):
    """The data an engine fits: training rows ``x`` ``(N, ...)``, their ``c``, and the
    held-out rows (``None`` without validation).

    For streamed data (:mod:`~pyro_genmodels.infer.streaming`), ``stream`` reads the N
    training rows per minibatch and ``x`` / ``c`` hold a fixed random sample of them, for
    what needs rows in memory (starting values, fingerprints). An engine hands the loop
    :meth:`source`, never ``x`` itself, and reads N from :attr:`num_rows`."""

    x: torch.Tensor
    c: Optional[torch.Tensor] = None
    x_val: Optional[torch.Tensor] = None
    c_val: Optional[torch.Tensor] = None
    stream: Any = None

    @property
    def num_rows(self) -> int:
        """N, the number of training rows (streamed or in memory)."""
        return len(self.stream) if self.stream is not None else self.x.shape[0]

    def source(self, transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> Any:
        """The training rows for the loop: the tensor (``transform``-ed, e.g. a family's
        standardization), or the stream with ``transform`` applied to each block."""
        if self.stream is not None:
            return self.stream if transform is None else self.stream.map(transform)
        return self.x if transform is None else transform(self.x)


def split_heldout(model: GenerativeModel, x: torch.Tensor, c: Optional[torch.Tensor],
                  validation: Any, *, seed: int, device: Optional[torch.device],
                  method: Optional[str] = None) -> Data:
    """The training and held-out rows of a fit (before any work: bad held-out data fail
    early); with ``method``, a fraction's training rows pass ``model.check_data_for``.

    ``validation``: ``None``; a fraction in (0, 1) of the rows, drawn by a permutation
    under ``seed`` (its own generator: the fit's random stream is not consumed); or
    held-out data of the training data's form, for a conditional model a pair
    ``(x_val, c_val)``.
    """
    if validation is None:
        return Data(x, c)
    if isinstance(validation, float):
        n = x.shape[0]
        k = int(round(validation * n))
        if k < 1 or k > n - 1:
            raise ValueError(f"validation={validation} of {n} rows leaves {k} held-out and "
                             f"{n - k} training rows; expected at least one of each (or "
                             f"validation=None: no held-out rows)")
        gen = torch.Generator().manual_seed(int(seed))
        perm = torch.randperm(n, generator=gen).to(x.device)
        val, train = perm[:k].sort().values, perm[k:].sort().values
        def pick(t: Optional[torch.Tensor], i: torch.Tensor) -> Optional[torch.Tensor]:
            return None if t is None else t.index_select(0, i)

        data = Data(x.index_select(0, train), pick(c, train), x.index_select(0, val), pick(c, val))
        try:  # a column constant on the training rows only, N <= D left, ...
            if method is not None:
                model.check_data_for(method, data.x)
        except ValueError as e:
            raise (with_context(e, f"the {n - k} rows that train after validation="
                                   f"{validation}") or e) from None
        return data
    x_val, c_val = heldout_pair(validation, conditional=model.is_conditional,
                                owner=type(model).__name__, name="validation")
    x_val = model.validate_data(x_val, name="validation", device=device, dtype=x.dtype)
    c_val = heldout_conditions(model, c_val, x_val.shape[0], name="validation", device=device,
                               dtype=None if c is None else c.dtype)
    return Data(x, c, x_val, c_val)


class Engine:
    """Base of every engine: an options record class and ``run``.

    Args:
        **defaults: the family's defaults for this engine (e.g. a smaller ``lr`` for
            networks); checked against :attr:`Options` when the family is defined.
    """

    #: the options record class (a frozen dataclass); an engine may set it per instance
    Options: Type[Any] = LoopOptions

    def __init__(self, **defaults: Any) -> None:
        check_options(defaults, self.option_names(), method=type(self).__name__)
        self.Options(**defaults)  # fail at the family's definition, not at its first fit
        self.defaults = defaults

    def option_names(self) -> List[str]:
        """The names of the options this engine accepts (the fields of :attr:`Options`)."""
        return [f.name for f in dataclasses.fields(self.Options)]

    def options(self, method: str, **given: Any) -> Any:
        """The options record of this fit: the family's defaults, then ``given``."""
        check_options(given, self.option_names(), method=method)
        return refuse_unread(self.Options(**{**self.defaults, **given}), given)

    def run(self, model: GenerativeModel, data: Data, opts: Any, *, method: str,
            progress: bool) -> FitResult:
        """Fit ``model`` to ``data`` under ``opts`` (an instance of :attr:`Options`)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.defaults.items())})"


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoOptions:
    """The options record of an engine that takes none (a closed form)."""


def heldout_nll(model: GenerativeModel, params: Callable[[], Dict[str, torch.Tensor]],
                data: Data) -> Optional[Callable[[], float]]:
    """The held-out loss of a family with ``log_prob_given``: minus the mean
    log-likelihood per held-out row at the current phi (``None`` without held-out data)."""
    if data.x_val is None:
        return None

    def loss() -> float:
        with torch.no_grad():
            return -float(model.log_prob_given(params(), data.x_val, data.c_val).mean())

    return loss


def fingerprint(model: GenerativeModel, method: str, data: Data, opts: Any) -> Dict[str, Any]:
    """What a checkpoint must match to be resumed: the model's class and configuration,
    the method, a digest of the training and held-out rows, and the options that shape
    the run (all but the callback and the checkpoint settings)."""
    def plain(d: Dict[str, Any]) -> Dict[str, Any]:
        return {k: v for k, v in d.items()
                if v is None or isinstance(v, (bool, int, float, str, list, tuple))}

    digest = hashlib.sha256(str(data.num_rows).encode())
    for t in (data.x, data.c, data.x_val, data.c_val):
        if t is not None:
            digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    skip = {"callback", "checkpoint", "checkpoint_every", "resume", "validation", "distributed"}
    options = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)
               if f.name not in skip}
    return {"model": model.registry_name, "config": plain(model.get_config()),
            "method": method, "data": digest.hexdigest()[:16], "options": plain(options)}


# ---------------------------------------------------------------------- mle / map
@dataclasses.dataclass(frozen=True, kw_only=True)
class PointOptions(LoopOptions):
    """The loop's options (:class:`~pyro_genmodels.infer.loop.LoopOptions`), plus

    Attributes:
        jit: compile the ELBO (``JitTrace_ELBO``); ``None``: when the model is ``jit_safe``.
    """

    jit: Optional[bool] = None

    def __post_init__(self):
        super().__post_init__()
        check_bool(self.jit, "jit", optional=True)


class PointEngine(Engine):
    """``mle`` / ``map``: an AutoDelta point of phi (network weights are phi too) by
    the loop on the ELBO, which for a point is the log joint.

    ``map`` maximizes ``log p(x | phi) + log p(phi)``; ``mle`` maximizes
    ``log p(x | phi)``: the same program with the prior sites masked
    (:class:`~pyro_genmodels.infer.objectives.FlatPriors`), so their supports still
    define the constrained space that AutoDelta optimizes over. Under an isotropic
    Gaussian prior N(0, s^2 I) the MAP objective is the MLE objective plus the L2 penalty
    ``||phi||^2 / (2 s^2)`` (and a constant); the tests check this.
    """

    Options = PointOptions

    def __init__(self, method: str, **defaults: Any) -> None:
        self.method = check_choice(method, ("mle", "map"), "point method")
        super().__init__(**defaults)

    def elbo(self, model: GenerativeModel, opts: PointOptions) -> DifferentiableELBO:
        """The ELBO this engine optimizes (a family's engine may change it)."""
        return make_elbo(model.elbo, jit=use_jit(opts.jit, model),
                         max_plate_nesting=model.max_plate_nesting)

    def heldout(self, model: GenerativeModel, point: Callable[[], Dict[str, torch.Tensor]],
                data: Data) -> Optional[Callable[[], float]]:
        """The held-out loss (a family's engine may use a cheaper bound)."""
        return heldout_nll(model, point, data)

    def units(self, model: GenerativeModel, x: torch.Tensor) -> Optional[Dict[str, torch.Tensor]]:
        """The units the autoguide steps in, ``param_units`` (or None, the data's own)."""
        return model.param_units(x)

    def start(self, model: GenerativeModel, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The point the loop starts from (constrained): the family's ``init_values``."""
        return model.init_values(x)

    @staticmethod
    def writes_out(model: GenerativeModel, opts: PointOptions) -> bool:
        """Whether the loss is :class:`~pyro_genmodels.infer.objectives.NegativeLogJoint`,
        not Pyro's ELBO: when phi are all network weights (no latent sites or local guide),
        unless ``jit=True`` (Pyro's compiled ELBO) or a ``pyro.optim`` optimizer is asked."""
        return (not model.global_sites and model.local_guide is None and opts.jit is not True
                and not isinstance(opts.optimizer, pyro.optim.PyroOptim))

    def run(self, model: GenerativeModel, data: Data, opts: PointOptions, *, method: str,
            progress: bool) -> FitResult:
        if self.writes_out(model, opts):
            nlj = NegativeLogJoint(model, with_prior=self.method == "map")
            params = [p for p in model.parameters() if p.requires_grad]
            result = optimize([Player(nlj, params)], data.source(), data.c, opts,
                              heldout=self.heldout(model, lambda: {}, data), progress=progress,
                              desc=method, fingerprint=fingerprint(model, method, data, opts))
            result.point = {}
            return result
        program = model.model
        if self.method == "mle":
            program = FlatPriors(model.prior_sites)(model.model)
        init = self.start(model, data.x) if model.global_sites else {}
        guide, auto = make_guide(model, program, AutoDelta, units=self.units(model, data.x),
                                 init_loc_fn=init_to_value(values=init))
        elbo = self.elbo(model, opts)
        loss = ELBOLoss(elbo, program, guide, data.x, data.c)

        def point() -> Dict[str, torch.Tensor]:
            if auto is None:
                return {}
            with torch.no_grad():
                return {k: v.detach().clone() for k, v in auto.median(data.x, c=data.c).items()
                        if k in model.global_sites}

        with pyro.validation_enabled(False), traced_execution():
            result = optimize([Player(loss, loss.parameters)], data.source(), data.c, opts,
                              heldout=self.heldout(model, point, data), progress=progress,
                              desc=method, fingerprint=fingerprint(model, method, data, opts))
        result.point = point()
        return result


# ---------------------------------------------------------------------- vi
GUIDES = {"mvn": MultivariateNormalGuide, "normal": AutoNormal}


@dataclasses.dataclass(frozen=True, kw_only=True)
class VIOptions(PointOptions):
    """:class:`PointOptions` with ``vi``'s defaults, plus

    Attributes:
        guide: ``"mvn"`` (:class:`~pyro_genmodels.infer.objectives.MultivariateNormalGuide`:
            AutoMultivariateNormal, full covariance in the unconstrained space, exact for
            conjugate Gaussian posteriors) or ``"normal"`` (AutoNormal, mean field).
        num_particles: ELBO samples per step (``vectorized_particles``: in one trace).
        num_posterior_samples: draws of phi stored in the fit (one chain).
        init_scale: initial sd of q in the unconstrained space (in column sds for the
            sites a family names in ``param_units``, e.g. a Gaussian's ``loc``).
    """

    num_steps: int = 3000
    lr: float = 0.02
    guide: str = "mvn"
    num_particles: int = 1
    num_posterior_samples: int = 1000
    init_scale: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        check_choice(self.guide, sorted(GUIDES), "guide")
        store_counts(self, "num_particles", "num_posterior_samples")
        positive_float(self.init_scale, "init_scale")


class VIEngine(Engine):
    """``vi``: an autoguide over phi fitted by the loop on the ELBO (losses are the
    negative ELBO per step), then ``num_posterior_samples`` draws of phi in one batched
    call of the guide's distribution."""

    Options = VIOptions

    def run(self, model: GenerativeModel, data: Data, opts: VIOptions, *, method: str,
            progress: bool) -> FitResult:
        train_guide, q = make_guide(model, model.model, GUIDES[opts.guide],
                                    units=model.param_units(data.x), init_scale=opts.init_scale,
                                    init_loc_fn=init_to_value(values=model.init_values(data.x)))
        assert q is not None  # vi is offered only to families with global latent sites
        k = opts.num_particles  # in one batched trace where the family's program allows
        elbo = make_elbo(model.elbo, jit=use_jit(opts.jit, model),
                         max_plate_nesting=model.max_plate_nesting, num_particles=k,
                         vectorize_particles=model.vectorized_particles and k > 1)
        loss = ELBOLoss(elbo, model.model, train_guide, data.x, data.c)

        def mean() -> Dict[str, torch.Tensor]:
            with torch.no_grad():
                return {k: v for k, v in q.median(data.x, c=data.c).items()
                        if k in model.global_sites}

        with pyro.validation_enabled(False), traced_execution():
            result = optimize([Player(loss, loss.parameters)], data.source(), data.c, opts,
                              heldout=heldout_nll(model, mean, data), progress=progress,
                              desc=method, fingerprint=fingerprint(model, method, data, opts))
            result.posterior = _draw_posterior(model, q, (data.x, data.c),
                                               opts.num_posterior_samples)
        bad = sorted(k for k, v in result.posterior.items() if not bool(torch.isfinite(v).all()))
        if bad and result.error is None:  # finite losses, but the guide's scale overflowed
            result.error = NonFiniteLossError(
                len(result.losses), math.nan, f"posterior draws of {', '.join(bad)}",
                hint="The guide's parameters grew until its draws overflowed. Try a "
                     "smaller lr, or check the data scale.")
        result.info["guide"] = opts.guide
        return result


def _draw_posterior(model: GenerativeModel, q: Any, loss_args: tuple, num: int
                    ) -> Dict[str, torch.Tensor]:
    """``num`` draws of phi from the trained guide, ``{site: (1, num, *shape)}``: one
    batched draw in the unconstrained space, pushed through each site's bijection."""
    with torch.no_grad():
        if q.prototype_trace is None:  # the loop stopped before its first step
            q(loss_args[0], c=loss_args[1])
        draws = {}
        if isinstance(q, AutoNormal):
            for name, site in q.prototype_trace.iter_stochastic_nodes():
                loc, scale = q._get_loc_and_scale(name)
                u = torch.distributions.Normal(loc, scale).sample((num,))
                draws[name] = biject_to(site["fn"].support)(u)
        else:  # an AutoContinuous guide: one joint latent vector per draw, cut per site
            z = q.get_posterior().sample((num,))
            pos = 0
            for name, site in q.prototype_trace.iter_stochastic_nodes():
                shape = q._unconstrained_shapes[name]
                size = math.prod(shape)
                u = z[:, pos:pos + size].reshape((num,) + tuple(shape))
                draws[name] = biject_to(site["fn"].support)(u)
                pos += size
    return {k: draws[k].unsqueeze(0) for k in model.global_sites}


# ---------------------------------------------------------------------- nuts / hmc
@dataclasses.dataclass(frozen=True, kw_only=True)
class MCMCOptions:
    """Options of Pyro's MCMC on phi.

    Attributes:
        num_samples, warmup_steps: draws kept and discarded per chain.
        num_chains: chains, one after another (reproducible anywhere; distributed: on the ranks).
        target_accept_prob: the step-size adaptation target.
        full_mass: a dense (not diagonal) mass matrix.
        jit_compile: compile the potential; ``None``: when the model is ``jit_safe``.
        init_jitter: sd of each chain's perturbation of the start (unconstrained space).
        distributed: run the chains on the ranks of the ``torch.distributed`` process
            group (chain i on rank i mod W) and gather the draws to every rank.
    """

    num_samples: int = 1000
    warmup_steps: int = 500
    num_chains: int = 2
    target_accept_prob: float = 0.8
    full_mass: bool = False
    jit_compile: Optional[bool] = None
    init_jitter: float = 0.5
    distributed: bool = False

    def __post_init__(self):
        store_counts(self, "num_samples", "num_chains")
        store_counts(self, "warmup_steps", minimum=0)
        probability(self.target_accept_prob, "target_accept_prob")
        check_bool(self.full_mass, "full_mass")
        check_bool(self.jit_compile, "jit_compile", optional=True)
        nonnegative_float(self.init_jitter, "init_jitter")
        check_bool(self.distributed, "distributed")


@dataclasses.dataclass(frozen=True, kw_only=True)
class NUTSOptions(MCMCOptions):
    """:class:`MCMCOptions` plus ``max_tree_depth`` (Hoffman & Gelman, 2014) and the
    ``sampler``.

    Attributes:
        max_tree_depth: the most doublings of a trajectory (at most 2**depth leapfrog
            steps per transition).
        sampler: ``"pyro"``, Pyro's ``MCMC(NUTS)`` on the model's program (the
            reference); ``"fused"``, the same algorithm and adaptation on the family's
            fused potential with little Python per leapfrog step
            (:mod:`~pyro_genmodels.infer.nuts`; diagonal mass matrix, one process).
            Its potential is traced where ``jit_compile`` (``None``: the family is
            ``jit_safe``).
        compile: with ``sampler="fused"``, compile the potential with Inductor (6-19 s
            for the first fit in a process, none for a later one of a kept shape:
            ``fit.info["compile_seconds"]``; then each gradient a fifth to a half of
            the traced cost: see the guide).
    """

    max_tree_depth: int = 10
    sampler: str = "pyro"
    compile: bool = False

    def __post_init__(self):
        super().__post_init__()
        store_counts(self, "max_tree_depth")
        check_choice(self.sampler, ("pyro", "fused"), "sampler")
        check_bool(self.compile, "compile")
        if self.compile and self.sampler != "fused":
            raise ValueError("compile=True compiles the fused potential: expected "
                             "sampler='fused' with it, but got sampler='pyro'")
        if self.sampler == "fused" and (self.full_mass or self.distributed):
            raise ValueError(f"sampler='fused' runs a diagonal mass matrix in one process: "
                             f"expected full_mass=False and distributed=False, but got "
                             f"full_mass={self.full_mass}, distributed={self.distributed}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class HMCOptions(MCMCOptions):
    """:class:`MCMCOptions` plus a fixed ``trajectory_length`` (Neal, 2011).

    Attributes:
        trajectory_length: step size x leapfrog steps per transition, at most
            :data:`~pyro_genmodels.infer.mcmc.MAX_LEAPFROG_STEPS` steps.
    """

    trajectory_length: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        positive_float(self.trajectory_length, "trajectory_length")


class MCMCEngine(Engine):
    """``nuts`` / ``hmc``: posterior draws of phi by ``pyro.infer.MCMC``
    (:mod:`~pyro_genmodels.infer.mcmc`)."""

    def __init__(self, kernel: str, **defaults: Any) -> None:
        self.kernel = check_choice(kernel, ("nuts", "hmc"), "kernel")
        self.Options = NUTSOptions if kernel == "nuts" else HMCOptions
        super().__init__(**defaults)

    def run(self, model: GenerativeModel, data: Data, opts: MCMCOptions, *, method: str,
            progress: bool) -> FitResult:
        if getattr(opts, "sampler", "pyro") == "fused":
            return FitResult(**sample_posterior_fused(model, data.x, data.c, sampler="nuts",
                                                      opts=opts, progress=progress))
        return FitResult(**sample_posterior(model, data.x, data.c, kernel=self.kernel, opts=opts,
                                            progress=progress, fingerprint=fingerprint(
                                                model, method, data, opts)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ChEESOptions:
    """Options of batched ChEES-HMC on phi (:mod:`~pyro_genmodels.infer.chees`).

    Attributes:
        num_samples, warmup_steps: draws kept and adaptation transitions per chain.
        num_chains: chains, moved together as one batch (at least 2: the adaptation
            averages across them; more chains cost little more wall time).
        target_accept_prob: the harmonic-mean acceptance the step size aims at (0.651,
            Beskos et al. 2013).
        init_jitter: sd of each chain's perturbation of the start (unconstrained space).
        max_leapfrog_steps: the most leapfrog steps of one transition.
        jit_compile: trace the potential's value and gradient as one graph
            (:class:`~pyro_genmodels.infer.potential.GradientGraph`, a fraction of a
            second; each gradient then about 3x cheaper than eager, see the guide);
            ``None``: when the model is ``jit_safe``.
        compile: compile that graph with Inductor instead (seconds, reported as
            ``fit.info["compile_seconds"]``; then each gradient 2-5x cheaper than
            traced).
    """

    num_samples: int = 1000
    warmup_steps: int = 500
    num_chains: int = 4
    target_accept_prob: float = 0.651
    init_jitter: float = 0.5
    max_leapfrog_steps: int = 1024
    jit_compile: Optional[bool] = None
    compile: bool = False

    def __post_init__(self):
        store_counts(self, "num_samples", "max_leapfrog_steps")
        store_counts(self, "warmup_steps", minimum=0)
        store_counts(self, "num_chains")
        if self.num_chains < 2:
            raise ValueError(f"Expected num_chains to be an integer >= 2 (ChEES-HMC adapts "
                             f"across chains), but got {self.num_chains!r}")
        probability(self.target_accept_prob, "target_accept_prob")
        nonnegative_float(self.init_jitter, "init_jitter")
        check_bool(self.jit_compile, "jit_compile", optional=True)
        check_bool(self.compile, "compile")


class ChEESEngine(Engine):
    """``chees``: posterior draws of phi by ChEES-HMC, all chains one batched computation
    on the family's fused potential (:mod:`~pyro_genmodels.infer.potential`)."""

    Options = ChEESOptions

    def run(self, model: GenerativeModel, data: Data, opts: ChEESOptions, *, method: str,
            progress: bool) -> FitResult:
        return FitResult(**sample_posterior_fused(model, data.x, data.c, sampler="chees",
                                                  opts=opts, progress=progress))


#: The shared engine of each method, used unless a family declares its own in
#: :attr:`~pyro_genmodels.base.GenerativeModel.engines`.
ENGINES: Dict[str, Engine] = {"mle": PointEngine("mle"), "map": PointEngine("map"),
                              "vi": VIEngine(), "nuts": MCMCEngine("nuts"),
                              "hmc": MCMCEngine("hmc"), "chees": ChEESEngine()}
