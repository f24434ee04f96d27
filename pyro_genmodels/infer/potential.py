r"""A family's posterior potential energy, built once per fit and batched over chains.

Pyro's NUTS evaluates the potential by running the model's program under a trace at
every leapfrog step, one chain at a time: about 1 ms per gradient for a three-parameter
Gaussian whatever the size of its data. :class:`FusedPotential` writes the same function
directly from the family's density hook and its priors, for a batch of chains ``z``
``(C, D)`` in the unconstrained space:

.. math::

    U(z) = -\Big[\sum_{i=1}^N \log p(x_i \mid \phi)
           + \sum_s \log p_s(\phi_s)
           + \sum_s \log\big|\det J_{T_s}(z_s)\big|\Big],
    \qquad \phi_s = T_s(z_s),

with :math:`T_s` = ``biject_to(support of site s)`` (Pyro's own choice of bijection, so
draws are the same random variables as NUTS's), :math:`\log p(x_i \mid \phi)` from
``model.log_prob_given`` (one value per row and chain) and each prior
:math:`p_s` the distribution that the program gives site ``s``, read from one trace.
One call evaluates every chain: a few tensor operations on ``(C, N)``, not a program.

The priors are read once, so a prior that depends on another global site (a
hierarchical model), or a likelihood that is not ``log_prob_given``, would make the
fused potential wrong. It is therefore checked against Pyro's own potential
(``pyro.infer.mcmc.util.initialize_model``) at every chain's starting point and at one
more point per chain; where they differ, :class:`FusedPotential` refuses (a
``ValueError`` that names both values) and the model keeps ``method="nuts"``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import operator
import threading
import time
import warnings
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import pyro
import torch
from pyro import poutine
from torch import fx
from torch.distributions import biject_to
from torch.distributions.transforms import Transform

from .._validation import first_line
from .chees import chees
from .mcmc import _enumeration, _jit
from .nuts import nuts
from .objectives import (GenerativeModel, _InUnits, initialized_in_units,
                         traced_execution)
from .reuse import LEAF, Reusable, inductor, split
from .samplers import value_and_grad
from .simplify import _written, count_ops, simplify

#: relative agreement asked of the fused and Pyro's potential (both evaluated in float64)
CHECK_RTOL = 1e-8


class FusedPotential:
    """``U(z)`` and the log density ``-U(z)`` of ``model``'s posterior given ``x`` (and
    ``c``), for chains ``z`` ``(C, D)`` stacked from the unconstrained global sites in
    ``model.global_sites`` order.

    Args:
        model: a family with ``global_sites``, ``log_prob_given`` and a Pyro program.
        x: ``(N, dim)`` data.
        c: ``(N, context_dim)`` or ``None``.
        **enum_kwargs: kernel arguments for a program with enumerated latents
            (``max_plate_nesting``), as Pyro's NUTS gets them.
    """

    def __init__(self, model: GenerativeModel, x: torch.Tensor, c: Optional[torch.Tensor],
                 **enum_kwargs) -> None:
        self.model, self.x, self.c = model, x, c
        self._enum_kwargs = enum_kwargs
        self.sites: Tuple[str, ...] = tuple(model.global_sites)
        self._init = model.init_values(x)  # once (a mixture's are n_init EM runs)
        _, self._pyro_potential, inverse, _ = initialized_in_units(model, x, c, self._init,
                                                                   **enum_kwargs)
        # the priors, built without argument validation: a diverging trajectory's
        # non-finite point must be refused by the sampler, not raise in log_prob
        with torch.no_grad(), poutine.block(), pyro.validation_enabled(False):
            trace = poutine.trace(model.model).get_trace(x, c=c)
        self.priors = {s: trace.nodes[s]["fn"] for s in self.sites}
        #: the sites' units (``param_units``, as :func:`program_in_units` applies them)
        self.units: Dict[str, torch.Tensor] = {
            s: u for s, u in model.param_units(x).items() if s in self.sites}
        #: each site's map from unconstrained to constrained values (Pyro's bijection,
        #: in the site's units)
        self.transforms = self._transforms(self.units)
        # the shapes of the unconstrained sites, from the traced values
        self.shapes: Dict[str, torch.Size] = {
            s: inverse[s](trace.nodes[s]["value"]).shape for s in self.sites}
        self.sizes: List[int] = [math.prod(self.shapes[s]) for s in self.sites]
        self.dim = sum(self.sizes)

    # ------------------------------------------------------------------ packing
    def unflatten(self, z: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``(*batch, D)`` -> ``{site: (*batch, *unconstrained shape)}``."""
        parts = z.split(self.sizes, dim=-1)
        return {s: p.reshape(z.shape[:-1] + self.shapes[s]) for s, p in zip(self.sites, parts)}

    def flatten(self, u: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The inverse of :meth:`unflatten` for one point: ``{site: shape}`` -> ``(D,)``."""
        return torch.cat([u[s].reshape(-1) for s in self.sites])

    def constrain(self, z: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Draws ``(*batch, D)`` as the model's parameters ``{site: (*batch, *shape)}``."""
        u = self.unflatten(z)
        return {s: self.transforms[s](u[s]) for s in self.sites}

    def _transforms(self, units: Dict[str, torch.Tensor]) -> Dict[str, Transform]:
        """Pyro's bijection of each site (``biject_to`` of its prior's support), with the
        sites of ``units`` in those units, as :class:`~pyro_genmodels.infer.objectives.
        InUnits` gives them to Pyro's NUTS (:meth:`check` holds the two to one value)."""
        return {s: biject_to(_InUnits(self.priors[s].support, units[s]) if s in units
                             else self.priors[s].support) for s in self.sites}

    # ------------------------------------------------------------------ the density
    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """``-U(z)`` for ``z`` ``(C, D)``: ``(C,)``, differentiable in ``z``. (Run it under
        ``pyro.validation_enabled(False)`` for speed: the points are valid by construction.)"""
        return self._density(z, self.x, self.c, self.transforms)

    __call__ = log_density

    def leaves(self) -> List[torch.Tensor]:
        """What the log density reads that another data set of the same shapes changes:
        the data, its conditions and the sites' units. A traced graph takes them as inputs
        (:meth:`log_density_given`), so a later fit of the same model and shapes binds its
        own into that trace instead of tracing again (:class:`GradientGraph`)."""
        return [self.x, *([] if self.c is None else [self.c]), *self.units.values()]

    def log_density_given(self, z: torch.Tensor, *leaves: torch.Tensor) -> torch.Tensor:
        """:meth:`log_density` with :meth:`leaves` ``leaves`` in place of this one's."""
        x, rest = leaves[0], list(leaves[1:])
        c = None if self.c is None else rest.pop(0)
        return self._density(z, x, c, self._transforms(dict(zip(self.units, rest))))

    def _density(self, z: torch.Tensor, x: torch.Tensor, c: Optional[torch.Tensor],
                 transforms: Dict[str, Transform]) -> torch.Tensor:
        C = z.shape[0]
        u = self.unflatten(z)
        total = z.new_zeros(C)
        params = {}
        for s in self.sites:
            t = transforms[s]
            phi = t(u[s])
            params[s] = phi
            total = total + t.log_abs_det_jacobian(u[s], phi).reshape(C, -1).sum(-1)
            total = total + self.priors[s].log_prob(phi).reshape(C, -1).sum(-1)
        lik = self.model.log_prob_given(params, x, c)
        return total + lik.reshape(C, -1).sum(-1)

    def trace_key(self) -> Optional[Tuple[Any, ...]]:
        """What fixes the traced graph of :meth:`log_density_given` besides the shapes of
        ``z`` and the leaves: the family, its configuration, its state (buffers), the
        tensors it holds and its priors hold (digests of their bytes: a prior may depend
        on the data), the sites and their shapes. ``None`` (no reuse) when the
        configuration holds a tensor or a module, which JSON does not compare."""
        model = self.model
        try:
            config = json.dumps(model.get_config(), sort_keys=True)
            state = tuple((k, _digest(v)) for k, v in model.state_dict().items())
            # what the trace holds as constants: the priors' tensors (a prior may depend
            # on the data) and the model's own tensor attributes
            held = tuple(_digest(t) for t in _tensors([self.priors, vars(model)]))
        except (TypeError, ValueError, RuntimeError):
            return None
        return (type(model).__module__, type(model).__qualname__, config, state, held,
                self.sites,
                tuple(tuple(self.shapes[s]) for s in self.sites), repr(self._enum_kwargs),
                tuple((tuple(t.shape), t.dtype, t.device) for t in self.leaves()))

    def pyro_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """Pyro's own ``-U`` at each row of ``z`` ``(C, D)``, one program run per row:
        the oracle :meth:`check` compares against."""
        return torch.stack([-self._pyro_potential(self.unflatten(row)) for row in z])

    def check(self, z: torch.Tensor) -> None:
        """Refuse, before any sampling, when the fused log density differs from Pyro's at
        the points ``z`` ``(C, D)`` beyond floating-point error. Both are evaluated in
        float64 (a float64 copy of the model and data when they are not), so that the
        check compares the formulas, not float32 rounding of large terms (a component
        with a tiny scale far from a point), and :data:`CHECK_RTOL` is tight."""
        twin = self
        if z.dtype != torch.float64:
            f64 = torch.float64
            twin = FusedPotential(copy.deepcopy(self.model).to(f64),
                                  self.x.to(f64) if self.x.is_floating_point() else self.x,
                                  None if self.c is None else self.c.to(f64),
                                  **self._enum_kwargs)
            z = z.to(f64)
        with torch.no_grad():
            fused, ref = twin.log_density(z), twin.pyro_log_density(z)
        rtol = CHECK_RTOL
        bad = ~torch.isclose(fused, ref, rtol=rtol, atol=rtol * self.x.numel())
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(
                f"The fused posterior potential of {type(self.model).__name__} differs from "
                f"Pyro's at {twin.constrain(z[i])}: log density {fused[i].item():.10g} vs "
                f"{ref[i].item():.10g} (a prior that depends on another parameter, or a "
                f"likelihood that is not log_prob_given); use method='nuts'")

    def initial_points(self, num_chains: int, jitter: float) -> torch.Tensor:
        """``(num_chains, D)`` starts: the model's data-dependent ``init_values`` in the
        unconstrained space, each chain jittered by ``N(0, jitter^2)`` so the chains start
        apart (R-hat compares them)."""
        u = {s: self.transforms[s].inv(self._init[s]).detach() for s in self.sites}
        z0 = self.flatten(u)
        return z0 + jitter * torch.randn(num_chains, self.dim, dtype=z0.dtype, device=z0.device)


def _digest(t: torch.Tensor) -> Tuple[str, Tuple[int, ...], str]:
    """A tensor's dtype, shape and the SHA-256 of its bytes."""
    flat = t.detach().cpu().reshape(-1)
    data = torch.empty(flat.shape, dtype=flat.dtype).copy_(flat).view(torch.uint8).numpy()
    return str(t.dtype), tuple(t.shape), hashlib.sha256(data.tobytes()).hexdigest()


def _tensors(obj: Any, depth: int = 0):
    """The tensors in ``obj``: in its dicts, lists and tuples and the attributes of its
    objects (a distribution's parameters, its base distribution's), four levels deep;
    modules are left out (their tensors are the state)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth < 4 and not isinstance(obj, torch.nn.Module):
        if isinstance(obj, dict):
            items = [obj[k] for k in sorted(obj, key=str)]
        elif isinstance(obj, (list, tuple)):
            items = list(obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            items = [v for _, v in sorted(vars(obj).items())]
        else:
            items = []
        for item in items:
            yield from _tensors(item, depth + 1)


def sample_posterior_fused(model: GenerativeModel, x: torch.Tensor, c: Optional[torch.Tensor],
                           *, sampler: str, opts, progress: bool) -> Dict[str, Any]:
    """Posterior draws of ``model``'s phi on its :class:`FusedPotential`, checked against
    Pyro's potential at every start and at one jittered point per chain, by ``sampler``:
    ``"chees"``, batched ChEES-HMC (:func:`~pyro_genmodels.infer.chees.chees`; ``opts``
    a :class:`~pyro_genmodels.infer.engines.ChEESOptions`), or ``"nuts"``, NUTS one chain
    at a time (:func:`~pyro_genmodels.infer.nuts.nuts`; ``opts`` a
    :class:`~pyro_genmodels.infer.engines.NUTSOptions`). The potential is traced by
    ``torch.jit.trace`` where ``opts.jit_compile`` (``None``: the model is ``jit_safe``),
    or compiled by Inductor with ``opts.compile``; the seconds either took are
    ``info["compile_seconds"]``."""
    potential = FusedPotential(model, x, c, **_enumeration(model))
    z0 = potential.initial_points(opts.num_chains, opts.init_jitter)
    info: Dict[str, Any] = {}
    kind = "torch.compile" if opts.compile else "jit" if _jit(opts.jit_compile, model) \
        else "eager"
    with pyro.validation_enabled(False), traced_execution():
        potential.check(torch.cat([z0, z0 + 0.1 * torch.randn_like(z0)]))
        if sampler == "chees":
            log_density = compiled(potential.log_density, z0, kind, info, potential=potential)
            result = chees(log_density, z0, num_samples=opts.num_samples,
                           warmup_steps=opts.warmup_steps,
                           target_accept=opts.target_accept_prob,
                           max_leapfrog=opts.max_leapfrog_steps, progress=progress)
        else:  # traced for one chain: NUTS evaluates one state at a time
            log_density = compiled(potential.log_density, z0[:1], kind, info,
                                   potential=potential)
            result = nuts(log_density, z0, num_samples=opts.num_samples,
                          warmup_steps=opts.warmup_steps, target_accept=opts.target_accept_prob,
                          max_tree_depth=opts.max_tree_depth, progress=progress)
    posterior = {k: v.detach() for k, v in potential.constrain(result.samples).items()}
    stats = dict(result.sample_stats)
    info.update({k: result.info[k] for k in ("step_size", "warmup_divergences",
                                             "num_divergences")},
                sampler=sampler, num_warmup=opts.warmup_steps, potential=kind,
                acceptance_rate=stats["acceptance_rate"].mean(1).tolist())
    if sampler == "chees":
        info["trajectory_length"] = result.info["trajectory_length"]
    return {"posterior": posterior, "sample_stats": stats,
            "interrupted": bool(result.info["interrupted"]), "info": info}


def compiled(log_density, z0: torch.Tensor, kind: str, info: Dict[str, Any], *,
             potential: Optional[FusedPotential] = None):
    """``log_density`` for batches shaped like ``z0`` ``(C, D)``, by ``kind``: ``"eager"``
    (as is), or a :class:`GradientGraph` whose value-and-gradient graph is traced by
    ``torch.jit.trace`` (``"jit"``) or compiled by Inductor (``"torch.compile"``, fused
    kernels: :func:`~pyro_genmodels.infer.reuse.inductor`). The seconds it took go to ``info["compile_seconds"]``; the first
    gradient is taken here, not in the sampler.

    With the ``potential`` whose ``log_density`` this is, its simplified graph is kept for
    the fits that follow (:class:`GradientGraph`; ``info["trace_reused"]`` says whether
    this one took a kept graph). The key (:meth:`FusedPotential.trace_key`) holds
    everything the trace keeps as a constant, the priors' tensors included (a prior may
    depend on the data); and a kept graph is used only where it gives ``log_density``'s
    own value and gradient at ``z0`` and at shifted midpoints between the chains, up to
    rounding (else it is traced afresh), against control flow that depends on the data's
    values.

    Measured on 2 cores, ``Gaussian(3)`` on 500 rows, 4 chains, per value and gradient:
    autograd over the traced forward 1.26 ms, over the compiled forward 0.59 ms; the one
    traced graph of :class:`GradientGraph` 0.68 ms, compiled 0.34 ms (no autograd engine
    and no wrappers between the forward and backward kernels). Call it under
    :func:`~pyro_genmodels.infer.objectives.traced_execution`, as the sampler does:
    TorchScript's graph optimizations saved only 0.05-0.15 ms more per gradient, but kept
    about 18 MB per traced fit in its global state for the life of the process, against
    about 2 MB without them (200 fits of an SBC run: 0.4 GB rather than 3.6 GB). Where
    even that matters, ``jit_compile=False``.
    """
    if kind == "eager":
        return log_density
    t0 = time.perf_counter()
    key = None if potential is None else potential.trace_key()
    if key is not None:
        key = (key, tuple(z0.shape), z0.dtype, z0.device)
    graph = GradientGraph(log_density, z0, kind, potential=potential, key=key)
    if graph.reused and _disagreement(graph, log_density, z0, _REUSE_RTOL[z0.dtype]):
        graph = GradientGraph(log_density, z0, kind, potential=potential, key=key, fresh=True)
    value_and_grad(graph, z0)
    info["compile_seconds"] = round(time.perf_counter() - t0, 3)
    if key is not None:
        info["trace_reused"] = graph.reused
    return graph


#: how closely a kept graph, given another data set, must give the log density's own
#: value and gradient (the same operations on the same numbers: rounding only)
_REUSE_RTOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2,
               torch.bfloat16: 1e-2}


def _disagreement(graph: "GradientGraph", log_density, z0: torch.Tensor,
                  rtol: float) -> Optional[str]:
    """Where ``graph``'s value and gradient differ from autograd's on ``log_density`` by
    more than ``rtol`` (relative to the largest finite value), at the chains' starts ``z0``
    and at the midpoints between neighbouring chains shifted by 0.1 (no random numbers:
    a fit's draws must not depend on whether a trace was kept); ``None`` where they agree."""
    for z in (z0, 0.5 * (z0 + z0.roll(1, 0)) + 0.1):
        got = graph.value_and_grad(z)
        assert got is not None  # z is shaped like the traced input
        with torch.enable_grad():
            zz = z.detach().requires_grad_(True)
            lp = log_density(zz)
            (grad,) = torch.autograd.grad(lp.sum(), zz)
        for what, g, w in (("value", got[0], lp.detach()), ("gradient", got[1], grad)):
            scale = 1 + float(torch.nan_to_num(w, posinf=0.0, neginf=0.0).abs().max())
            if not torch.allclose(g, w, rtol=rtol, atol=rtol * scale, equal_nan=True):
                return f"{what} (largest difference {float((g - w).abs().max()):.3g})"
    return None


def traced_density(log_density, z0: torch.Tensor, kind: str, info: Dict[str, Any]):
    """:func:`compiled` for a log density that nothing vouches for (a user's function):
    the graph's value and gradient must equal autograd's at the chains' starts ``z0``
    ``(C, D)`` and at shifted midpoints between neighbouring chains (1e-4 relative),
    else a ValueError says that the function is not traceable (its control flow or its
    Python-side state depends on the values) before any draw."""
    try:
        graph = compiled(log_density, z0, kind, info)
    except Exception as e:  # make_fx / Inductor refuse it: say so in the user's terms
        raise ValueError(f"jit_compile / compile: the log density could not be traced "
                         f"({type(e).__name__}: {first_line(e)}); "
                         f"sample without jit_compile / compile") from e
    where = _disagreement(graph, log_density, z0, 1e-4)
    if where is not None:
        raise ValueError(
            f"jit_compile / compile: the traced graph's {where} differs from the log "
            f"density's own, so the function does not trace (its control flow depends on "
            f"the values, or it reads state that changes); sample without jit_compile / "
            f"compile")
    return graph


#: the simplified graphs of :class:`GradientGraph`, their data inputs
#: (:class:`~pyro_genmodels.infer.reuse.Reusable`), kept for reuse by key, at most
#: :data:`MAX_KEPT_TRACES` (the least recently used leave first); a lock, for fits in
#: threads
_KEPT: "OrderedDict[Any, Reusable]" = OrderedDict()
_KEPT_LOCK = threading.Lock()
_TRACE_LOCK = threading.Lock()
MAX_KEPT_TRACES = 16
#: a graph whose own constants (a ``zeros_like`` of the data made a constant, say) exceed
#: this is not kept: the cache never holds more than a few megabytes
MAX_KEPT_BYTES = 1 << 20


def _bind(traced: fx.GraphModule, leaves: List[torch.Tensor]) -> fx.GraphModule:
    """``traced`` (inputs ``z`` and ``leaves``) as a graph of ``z`` alone, the leaves its
    constants, as a trace made with them as constants would be: its own graph and nodes;
    the trace's other constants shared (read only), except any that an in-place
    operation writes, which it gets its own copy of."""
    graph, env = fx.Graph(), {}
    attrs: Dict[str, Any] = {}
    written = _written(traced.graph)
    inputs = [n for n in traced.graph.nodes if n.op == "placeholder"]
    for node in traced.graph.nodes:
        if node.op == "placeholder" and node is not inputs[0]:
            i = inputs.index(node)
            name = LEAF.format(i)
            attrs[name] = leaves[i - 1]
            env[node] = graph.get_attr(name)
            env[node].meta = {**node.meta, "val": attrs[name]}
            continue
        env[node] = graph.node_copy(node, lambda n: env[n])
        if node.op == "get_attr":
            value = operator.attrgetter(node.target)(traced)
            attrs[node.target] = value.clone() if node in written else value
    return fx.GraphModule(attrs, graph)


class GradientGraph:
    r"""A log density whose value and gradient for inputs shaped like ``z0`` ``(C, D)``
    are one graph: ``torch.func.grad_and_value`` of :math:`\sum_c \log p(z_c)` (the rows
    are independent, so its gradient is every row's), traced to ATen operations by
    ``make_fx`` (about 0.2 s), stripped of the operations that do nothing at the traced
    shapes or depend on no input (:func:`~pyro_genmodels.infer.simplify.simplify`: a
    third fewer for ``Gaussian(3)``, a quarter less time per call), then replayed by
    ``torch.jit.trace`` (``kind="jit"``) or compiled by Inductor, torch.compile's
    compiler (``kind="torch.compile"``; :func:`~pyro_genmodels.infer.reuse.inductor`).
    Like any trace it holds for
    one control flow, so only for a model that is ``jit_safe``. Calling it evaluates
    ``log_density`` as is; :meth:`value_and_grad` (what
    :func:`~pyro_genmodels.infer.samplers.value_and_grad` asks first) runs the graph, and
    answers ``None`` for any other shape, dtype or device, where autograd takes over.

    With the :class:`FusedPotential` ``potential`` whose log density this is, the trace is
    of :meth:`FusedPotential.log_density_given`, its :meth:`~FusedPotential.leaves` (the
    data, the units) inputs beside ``z``, and is kept under ``key`` (process-wide, the
    last ``MAX_KEPT_TRACES`` keys), simplified with the leaves bound as constants
    (:func:`_bind`) and split into the part that depends on the data alone and the rest,
    every constant an input (:func:`~pyro_genmodels.infer.reuse.split`). A later graph
    with that key runs the first part on its own leaves and replays the second, without
    tracing or simplifying (``reused``; ``fresh=True`` traces anyway and replaces what is
    kept): 0.02-0.03 s instead of the 0.12 s of binding and simplifying a kept trace
    (0.19 s with tracing) for the SBC mixture of ``tests/test_diagnostics.py``, the same
    draws bit for bit."""

    def __init__(self, log_density, z0: torch.Tensor, kind: str, *,
                 potential: Optional[FusedPotential] = None, key: Any = None,
                 fresh: bool = False) -> None:
        from torch.fx.experimental.proxy_tensor import make_fx

        leaves = [] if potential is None else potential.leaves()
        given = log_density if potential is None else potential.log_density_given

        def summed(z, *leaves):
            lp = given(z, *leaves)
            return lp.sum(), lp

        self.log_density = log_density
        self.key = (z0.shape, z0.dtype, z0.device)
        self.stride = z0.stride()
        kept = None
        if key is not None and not fresh:
            with _KEPT_LOCK:
                kept = _KEPT.get(key)
                if kept is not None:
                    _KEPT.move_to_end(key)
        #: whether the graph was made from a kept one
        self.reused = kept is not None
        with torch.no_grad():
            if kept is None:
                traced = make_fx(torch.func.grad_and_value(summed, has_aux=True))(
                    z0.detach(), *leaves)
                bound = _bind(traced, leaves)  # the trace's constants stay as traced
                simplified = simplify(bound, z0.detach())
                kept = split(simplified, traced, len(leaves), count_ops(bound),
                             count_ops(simplified))
                if key is not None and kept.nbytes <= MAX_KEPT_BYTES:
                    with _KEPT_LOCK:
                        _KEPT[key] = kept
                        _KEPT.move_to_end(key)
                        while len(_KEPT) > MAX_KEPT_TRACES:
                            _KEPT.popitem(last=False)
            #: how many operations the traced graph runs per call
            self.num_ops = kept.num_ops
            #: how many it runs after :func:`~pyro_genmodels.infer.simplify.simplify`
            self.num_ops_simplified = kept.num_ops_simplified
            #: the graph's inputs after ``z`` (this fit's data, what was folded from
            #: them, the trace's constants)
            self.inputs = kept.inputs(leaves, z0.device)
            if kind == "torch.compile":
                self.graph = inductor(kept.main, (z0.detach(), *self.inputs))
            else:
                # one trace at a time: torch.jit.trace keeps its module map in a global
                with _TRACE_LOCK, warnings.catch_warnings():
                    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
                    self.graph = torch.jit.trace(kept.main, (z0.detach(), *self.inputs),
                                                 check_trace=False)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.log_density(z)

    def value_and_grad(self, z: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """``(log density (C,), gradient (C, D))`` of ``z`` shaped like ``z0``, else ``None``."""
        if (z.shape, z.dtype, z.device) != self.key:
            return None
        if z.stride() != self.stride:  # a compiled graph asserts the traced layout
            z = z.contiguous()
            if z.stride() != self.stride:
                return None
        with torch.no_grad():
            grad, (_, lp) = self.graph(z.detach(), *self.inputs)
        return lp, grad
