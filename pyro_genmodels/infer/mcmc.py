r"""Pyro's MCMC, wrapped once: ``nuts`` and ``hmc``, posterior draws of a model's global
parameters, and :func:`pyro_mcmc`, NUTS / HMC on an unnormalized log density.

Chains run one after another in this process, each a stock ``MCMC(NUTS/HMC)`` with one
chain (:func:`_run_chain`) under its own seed derived from the fit's, so results are
reproducible from the seed on any machine (Pyro would otherwise switch to worker
processes when enough cores are free). With ``distributed=True`` in a process group,
chain i runs on rank i mod W and the draws and statistics are gathered to every rank: the
same seed gives the same chains, draw for draw, whatever the number of processes. For the
engines every chain starts from the data-dependent ``init_values`` jittered in the
unconstrained space, so R-hat compares chains that really started apart. Step size and
(diagonal or full) mass matrix are adapted by Pyro during warmup.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional, Tuple

import pyro
import torch
from pyro.infer import HMC, MCMC, NUTS

from . import distributed
from .distributed import rank_seed
from .objectives import (GenerativeModel, initialized_in_units, program_in_units,
                         traced_execution)
from .samplers import ChainResult, LogDensity, _validate_common

#: The per-draw statistics of every posterior path (``nuts``, ``hmc``, ``chees``), the
#: ``sample_stats`` group of their InferenceData.
POSTERIOR_STATS = ("diverging", "acceptance_rate", "step_size", "lp", "energy", "n_steps")

#: the most leapfrog steps of one HMC transition; NUTS's own cap at its default
#: ``max_tree_depth=10``
MAX_LEAPFROG_STEPS = 2 ** 10


class _Recorded:
    """A Pyro HMC / NUTS kernel that records, per transition, what ArviZ's
    ``sample_stats`` hold for every posterior path here: ``energy``, the Hamiltonian
    :math:`H_0 = U(q) + K(p)` right after the momentum refresh (as the batched samplers
    record it), and ``n_steps``, the potential-gradient evaluations of the transition
    (its leapfrog steps; NUTS's tree size)."""

    _energy0 = math.nan
    _grad_calls = 0

    def setup(self, warmup_steps, *args, **kwargs):
        super().setup(warmup_steps, *args, **kwargs)  # type: ignore[misc]
        inner = self.potential_fn

        def counted(params):
            self._grad_calls += 1
            return inner(params)
        self.potential_fn = counted

    def _sample_r(self, name):
        r, r_unscaled = super()._sample_r(name)  # type: ignore[misc]
        pe = self._potential_energy_last  # type: ignore[attr-defined]
        if pe is not None:
            self._energy0 = float(self._kinetic_energy(r_unscaled)) + float(pe)  # type: ignore[attr-defined]
        return r, r_unscaled


class RecordedNUTS(_Recorded, NUTS):
    """Pyro's NUTS, recording ``energy`` and ``n_steps`` (:class:`_Recorded`)."""


class CappedHMC(_Recorded, HMC):
    """Pyro's HMC with at most :data:`MAX_LEAPFROG_STEPS` leapfrog steps per transition.

    HMC takes ``trajectory_length / step_size`` steps; where the posterior is degenerate
    (a constant column, a single row) the adapted step size falls toward 0 and one
    transition would otherwise never end. With the cap the trajectory is shorter than
    asked instead; the chain stays a valid Markov chain (the number of steps is fixed
    given the step size), and R-hat / ESS report the poor mixing."""

    @property
    def num_steps(self) -> int:
        """Leapfrog steps per transition, Pyro's capped at :data:`MAX_LEAPFROG_STEPS`."""
        return min(MAX_LEAPFROG_STEPS, super().num_steps)


def _jit(jit_compile: Optional[bool], model: GenerativeModel) -> bool:
    """``None``: compile the potential energy when the model declares it safe."""
    return bool(model.jit_safe) if jit_compile is None else bool(jit_compile)


def _enumeration(model: GenerativeModel) -> Dict[str, Any]:
    """Kernel arguments for a model with enumerated local latents (the kernel sums them
    out and must know how many plates surround them); none for other models."""
    return {"max_plate_nesting": model.max_plate_nesting} if "Enum" in model.elbo else {}


def _initial_params(model: GenerativeModel, x: torch.Tensor, c, num_chains: int,
                    jitter: float) -> List[Dict[str, torch.Tensor]]:
    init = model.init_values(x)
    _, _, transforms, _ = initialized_in_units(model, x, c, init)
    chains = []
    for _ in range(num_chains):
        z = {}
        for name in model.global_sites:
            u = transforms[name](init[name]).detach()
            z[name] = u + jitter * torch.randn_like(u)
        chains.append(z)
    return chains


def _run_chain(kernel, *, num_samples: int, warmup_steps: int,
               initial_params: Dict[str, torch.Tensor], progress: bool, args=(),
               kwargs=None, dtype=None) -> Tuple[Dict[str, torch.Tensor],
                                                Dict[str, torch.Tensor], float]:
    """One chain of ``pyro.infer.MCMC(kernel)`` from ``initial_params`` (``args`` and
    ``kwargs`` go to the model): its draws ``{site: (num_samples, ...)}``, per-draw
    statistics ``diverging``, ``acceptance_rate`` (the transition's own acceptance
    probability, recovered from Pyro's running mean), ``step_size``, ``lp`` (minus the
    potential energy), ``energy`` and ``n_steps`` (:class:`_Recorded`), of ``dtype``, and
    the chain's acceptance rate from ``MCMC.diagnostics``."""
    names = ("step_size", "lp", "acceptance_rate", "energy", "n_steps")
    rec = {k: torch.zeros(num_samples, dtype=dtype) for k in names}
    diag: Dict[str, Any] = {}
    last = {"mean_accept": 0.0, "grad_calls": 0}

    def hook(kernel, params, stage, i):
        calls = kernel._grad_calls
        if stage.startswith("Sample"):
            rec["step_size"][i] = float(kernel.step_size)
            pe = getattr(kernel, "_potential_energy_last", None)
            rec["lp"][i] = math.nan if pe is None else -float(pe)
            # Pyro keeps a running mean of the acceptance probabilities, restarted after
            # warmup: the draw's own is i+1 times the new mean minus i times the last
            mean = float(kernel._mean_accept_prob)
            rec["acceptance_rate"][i] = (i + 1) * mean - i * last["mean_accept"]
            last["mean_accept"] = mean
            rec["energy"][i] = kernel._energy0
            rec["n_steps"][i] = calls - last["grad_calls"]
            if i == num_samples - 1:  # the kernel's own record, before its cleanup
                diag.update(kernel.diagnostics())
        last["grad_calls"] = calls

    mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps,
                initial_params=initial_params, num_chains=1, hook_fn=hook,
                disable_progbar=not progress)
    recording = mcmc.sampler = _Recording(mcmc.sampler)
    try:
        with traced_execution():
            mcmc.run(*args, **(kwargs or {}))
    except KeyboardInterrupt:
        draws = recording.draws(kernel)
        if draws is None:  # in the warmup: nothing to keep
            raise
        n = next(iter(draws.values())).shape[0]
        diag = kernel.diagnostics()
        raise _PartialChain((draws, _stats(rec, diag, n), float(diag["acceptance rate"]))
                            ) from None
    # (not ``mcmc.diagnostics()``: it also computes split R-hat, which needs >= 4 draws;
    # the library's own R-hat / ESS come from ArviZ over all chains)
    samples = {k: v.detach() for k, v in mcmc.get_samples().items()}
    return samples, _stats(rec, diag, num_samples), float(diag["acceptance rate"])


def _stats(rec: Dict[str, torch.Tensor], diag: Dict[str, Any], n: int
           ) -> Dict[str, torch.Tensor]:
    """The per-draw statistics of a chain's first ``n`` draws: ``diverging`` from the
    kernel's ``diagnostics()`` and the recorded rest."""
    diverging = torch.zeros(n, dtype=torch.bool)
    diverging[torch.as_tensor([i for i in diag["divergences"] if i < n], dtype=torch.long)] \
        = True
    return {"diverging": diverging, **{k: v[:n] for k, v in rec.items()}}


class _Recording:
    """``MCMC``'s one-chain sampler, keeping references to what it yields (the draws'
    structure, then each draw flattened: the very tensors ``MCMC.run`` collects, so no
    copy) for :meth:`draws` after a Ctrl-C, which loses ``MCMC.run``'s own list."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler
        self.yielded: List[Any] = []

    def run(self, *args: Any, **kwargs: Any):
        for item in self.sampler.run(*args, **kwargs):
            self.yielded.append(item[0])
            yield item

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sampler, name)

    def draws(self, kernel: Any) -> Optional[Dict[str, torch.Tensor]]:
        """The draws so far ``{site: (n, ...)}``, constrained by the kernel's transforms
        as ``MCMC.run`` does it; ``None`` before the first draw."""
        if not self.yielded or not isinstance(self.yielded[0], dict):
            return None
        structure = self.yielded[0]  # {site: shape}, in the order of the flat draws
        flat = [t for t in self.yielded[1:] if isinstance(t, torch.Tensor)]
        if not flat:
            return None
        stacked, out, pos = torch.stack(flat), {}, 0
        transforms = kernel.transforms or {}  # none for a potential_fn kernel
        for site, shape in structure.items():
            size = math.prod(shape)
            z = stacked[:, pos:pos + size].reshape((len(flat),) + tuple(shape))
            out[site] = transforms[site].inv(z) if site in transforms else z
            pos += size
        return out


class _PartialChain(KeyboardInterrupt):
    """Ctrl-C while a chain was drawing: ``chain``, what :func:`_run_chain` returns for
    its draws so far."""

    def __init__(self, chain: Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor], float]
                 ) -> None:
        super().__init__()
        self.chain = chain


def _chains(run_one, chains: Iterable[int], *, keep: bool = True
            ) -> Tuple[Dict[int, tuple], bool]:
    """``{chain: run_one(chain)}`` for each chain in turn, and whether a Ctrl-C stopped
    them. With ``keep``, Ctrl-C keeps the chains done or, with none done, the draws so
    far of the one running (a chain's draws have one length, so a partial chain joins no
    finished one); with nothing to keep (the first warmup), or without ``keep``, the
    interrupt propagates."""
    done: Dict[int, tuple] = {}
    for chain in chains:
        try:
            done[chain] = run_one(chain)
        except KeyboardInterrupt as e:
            if not keep or not (done or isinstance(e, _PartialChain)):
                raise
            if not done:
                assert isinstance(e, _PartialChain)
                done[chain] = e.chain
            return done, True
    return done, False


def _run(make_kernel, model: GenerativeModel, x: torch.Tensor, *, c,
         num_samples: int, warmup_steps: int, num_chains: int, init_jitter: float,
         progress: bool, group=None, fingerprint: Optional[Dict[str, Any]] = None
         ) -> Dict[str, Any]:
    inits = _initial_params(model, x, c, num_chains, init_jitter)
    base = int(torch.randint(2 ** 62, ()))  # the chains' seeds, alike on every rank
    rank, world = (0, 1) if group is None else (group.rank, group.world_size)

    def one(chain: int):
        pyro.set_rng_seed(rank_seed(base, chain + 1))
        return _run_chain(make_kernel(), num_samples=num_samples, warmup_steps=warmup_steps,
                          initial_params=inits[chain], progress=progress, args=(x,),
                          kwargs={"c": c},
                          dtype=model._anchor.dtype)  # the statistics in the model's precision

    if group is None:
        done, interrupted = _chains(one, range(num_chains))
    else:  # a rank done first waits for the others by their progress (UnevenWork)
        name = distributed.check_same_fit(fingerprint or {}, x.shape[0], group)
        with distributed.UnevenWork(group, "chains", name):
            done, interrupted = _chains(one, range(rank, num_chains, world), keep=False)
        for part in distributed.gather(done, group, "gathering of the chains",
                                       then="run the fit again (MCMC keeps no checkpoints)"):
            done.update({i: tuple(_to(v, x.device) for v in r) for i, r in part.items()})
    chains = [done[i] for i in sorted(done)]
    posterior = {k: torch.stack([r[0][k] for r in chains]) for k in model.global_sites}
    sample_stats = {k: torch.stack([r[1][k] for r in chains]) for k in POSTERIOR_STATS}
    info = {"acceptance_rate": [r[2] for r in chains], "num_warmup": warmup_steps,
            "num_divergences": int(sample_stats["diverging"].sum())}  # as the fused samplers'
    if group is not None:
        info["distributed"] = group.info()
    return {"posterior": posterior, "sample_stats": sample_stats, "interrupted": interrupted,
            "info": info}


def _to(value, device):
    """A gathered chain's tensors (nested in dicts) on this rank's device."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def pyro_mcmc(log_density: LogDensity, x0: torch.Tensor, *, kernel: str = "nuts",
              num_samples: int, warmup_steps: int = 500, target_accept: float = 0.8,
              progress: bool = False, **kernel_options: Any) -> ChainResult:
    r"""``pyro.infer.MCMC`` with ``NUTS`` or ``HMC`` on the potential
    :math:`U(x) = -\text{log\_density}(x)` (``potential_fn``), one chain per row of
    ``x0``, run one after another in this process (reproducible from the seed). Pyro
    adapts the step size (toward ``target_accept``) and a diagonal mass matrix during
    warmup. ``kernel_options`` go to the kernel (e.g. ``max_tree_depth``,
    ``trajectory_length``, ``full_mass``).

    ``sample_stats`` holds, per draw, the statistics of :data:`POSTERIOR_STATS`
    (``acceptance_rate`` is each transition's acceptance probability); the result is a
    :class:`~pyro_genmodels.infer.samplers.ChainResult`, as the batched samplers give.
    Ctrl-C keeps the chains done or, before the first is done, its draws so far
    (``info["interrupted"]``), as a fit's ``nuts`` does; in the first warmup the
    interrupt propagates.
    """
    num_samples, warmup_steps = _validate_common(x0, num_samples, warmup_steps, None,
                                                 target_accept)
    if kernel not in ("nuts", "hmc"):
        raise ValueError(f"Expected kernel 'nuts' or 'hmc', but got {kernel!r}")
    cls = RecordedNUTS if kernel == "nuts" else CappedHMC

    def potential_fn(params):
        return -log_density(params["x"].unsqueeze(0)).squeeze(0)

    def one(c: int):
        k = cls(potential_fn=potential_fn, target_accept_prob=target_accept,
                adapt_step_size=True, adapt_mass_matrix=True, **kernel_options)
        return _run_chain(k, num_samples=num_samples, warmup_steps=warmup_steps,
                          initial_params={"x": x0[c].detach().clone()}, progress=progress,
                          dtype=x0.dtype)

    done, interrupted = _chains(one, range(x0.shape[0]))
    chains = [done[i] for i in sorted(done)]
    dev = x0.device
    out = torch.stack([r[0]["x"] for r in chains]).to(dev)
    sample_stats = {k: torch.stack([r[1][k] for r in chains]).to(dev)
                    for k in POSTERIOR_STATS}
    info = {"sampler": kernel, "warmup_steps": warmup_steps, "num_chains": len(chains),
            "num_samples": out.shape[1], "target_accept": target_accept,
            "num_divergences": int(sample_stats["diverging"].sum()),
            "interrupted": interrupted}
    return ChainResult(out, sample_stats, info)


def sample_posterior(model, x: torch.Tensor, c: Optional[torch.Tensor], *, kernel: str,
                     opts, progress: bool, fingerprint: Optional[Dict[str, Any]] = None
                     ) -> Dict[str, Any]:
    """Posterior draws of ``model``'s phi by ``pyro.infer.MCMC`` with ``NUTS`` (Hoffman &
    Gelman, 2014) or ``HMC`` with a fixed trajectory length (Neal, 2011); ``opts`` is the
    engine's options record (:class:`~pyro_genmodels.infer.engines.NUTSOptions` /
    :class:`~pyro_genmodels.infer.engines.HMCOptions`); ``fingerprint``: what every rank
    of a distributed fit must share (``engines.fingerprint``)."""
    common = dict(target_accept_prob=opts.target_accept_prob, full_mass=opts.full_mass,
                  jit_compile=_jit(opts.jit_compile, model), ignore_jit_warnings=True,
                  **_enumeration(model))

    program = program_in_units(model, x)

    def make_kernel():
        if kernel == "nuts":
            return RecordedNUTS(program, max_tree_depth=opts.max_tree_depth, **common)
        return CappedHMC(program, trajectory_length=opts.trajectory_length, **common)

    group = distributed.current() if getattr(opts, "distributed", False) else None
    return _run(make_kernel, model, x, c=c, num_samples=opts.num_samples,
                warmup_steps=opts.warmup_steps, num_chains=opts.num_chains,
                init_jitter=opts.init_jitter, progress=progress, group=group,
                fingerprint=fingerprint or {})
