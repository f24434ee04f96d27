"""``nuts`` and ``hmc``: posterior draws of the global parameters with ``pyro.infer.MCMC``.

Chains run one after another in this process, each a stock ``MCMC(NUTS/HMC)`` with one
chain, so results are reproducible from the seed on any machine (Pyro would otherwise
switch to worker processes when enough cores are free). Every chain starts from the
data-dependent ``init_values`` jittered in the unconstrained space, so R-hat compares
chains that really started apart. Step size and (diagonal or full) mass matrix are
adapted by Pyro during warmup.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
from pyro.infer import HMC, MCMC, NUTS
from pyro.infer.mcmc.util import initialize_model

from .._validation import positive_float, positive_int
from ..base import GenerativeModel
from .svi import quiet_jit_deprecation


def _validate(model: GenerativeModel, x: torch.Tensor, *, num_samples=1, warmup_steps=0,
              num_chains=1, target_accept_prob=0.8, init_jitter=0.0, **kernel) -> None:
    positive_int(num_samples, "num_samples")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"Expected warmup_steps to be a non-negative integer, but got {warmup_steps!r}")
    positive_int(num_chains, "num_chains")
    p = float(target_accept_prob)
    if not 0 < p < 1:
        raise ValueError(f"Expected 0 < target_accept_prob < 1, but got {target_accept_prob!r}")
    if init_jitter != 0:
        positive_float(init_jitter, "init_jitter")
    if "max_tree_depth" in kernel:
        positive_int(kernel["max_tree_depth"], "max_tree_depth")
    if "trajectory_length" in kernel:
        positive_float(kernel["trajectory_length"], "trajectory_length")


def _jit(jit_compile: Optional[bool], model: GenerativeModel) -> bool:
    """``None``: compile the potential energy when the model declares it safe."""
    return bool(model.jit_safe) if jit_compile is None else bool(jit_compile)


def _enumeration(model: GenerativeModel) -> Dict[str, Any]:
    """Kernel arguments for a model with enumerated local latents (the kernel sums them
    out and must know how many plates surround them); none for other models."""
    return {"max_plate_nesting": model.max_plate_nesting} if "Enum" in model.elbo else {}


def _initial_params(model: GenerativeModel, x: torch.Tensor, c, num_chains: int,
                    jitter: float) -> List[Dict[str, torch.Tensor]]:
    _, _, transforms, _ = initialize_model(model.model, model_args=(x,),
                                           model_kwargs={"c": c})
    init = model.init_values(x)
    chains = []
    for _ in range(num_chains):
        z = {}
        for name in model.global_sites:
            u = transforms[name](init[name]).detach()
            z[name] = u + jitter * torch.randn_like(u)
        chains.append(z)
    return chains


def _run(make_kernel, model: GenerativeModel, x: torch.Tensor, *, c,
         num_samples: int, warmup_steps: int, num_chains: int, init_jitter: float,
         progress: bool) -> Dict[str, Any]:
    draws: Dict[str, List[torch.Tensor]] = {k: [] for k in model.global_sites}
    stats: Dict[str, List[torch.Tensor]] = {"diverging": [], "step_size": [], "lp": []}
    accept: List[float] = []
    interrupted = False
    for chain, init in enumerate(_initial_params(model, x, c, num_chains, init_jitter)):
        kernel = make_kernel()
        step_size = torch.zeros(num_samples)
        lp = torch.zeros(num_samples)

        def hook(kernel, params, stage, i, step_size=step_size, lp=lp):
            if stage.startswith("Sample"):
                step_size[i] = float(kernel.step_size)
                pe = getattr(kernel, "_potential_energy_last", None)
                lp[i] = float("nan") if pe is None else -float(pe)

        mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps,
                    initial_params=init, num_chains=1, hook_fn=hook,
                    disable_progbar=not progress)
        try:
            with quiet_jit_deprecation():
                mcmc.run(x, c=c)
        except KeyboardInterrupt:
            interrupted = True
            if chain == 0:
                raise
            break
        samples = mcmc.get_samples()
        for k in draws:
            draws[k].append(samples[k].detach())
        diverging = torch.zeros(num_samples, dtype=torch.bool)
        diag = {k: v["chain 0"] for k, v in mcmc.diagnostics().items()
                if k in ("divergences", "acceptance rate")}
        diverging[torch.as_tensor(diag["divergences"], dtype=torch.long)] = True
        stats["diverging"].append(diverging)
        stats["step_size"].append(step_size)
        stats["lp"].append(lp)
        accept.append(float(diag["acceptance rate"]))
    posterior = {k: torch.stack(v) for k, v in draws.items()}
    sample_stats = {k: torch.stack(v) for k, v in stats.items()}
    return {"posterior": posterior, "sample_stats": sample_stats, "interrupted": interrupted,
            "info": {"acceptance_rate": accept, "num_warmup": warmup_steps}}


def fit_nuts(model: GenerativeModel, x: torch.Tensor, *, c=None, num_samples: int = 1000,
             warmup_steps: int = 500, num_chains: int = 2, target_accept_prob: float = 0.8,
             max_tree_depth: int = 10, full_mass: bool = False, jit_compile: Optional[bool] = None,
             init_jitter: float = 0.5, progress: bool = True) -> Dict[str, Any]:
    """No-U-Turn sampling of phi (Hoffman & Gelman, 2014).

    Options: ``num_samples`` and ``warmup_steps`` per chain, ``num_chains`` (run one
    after another), ``target_accept_prob`` (step-size adaptation target),
    ``max_tree_depth``, ``full_mass`` (dense mass matrix), ``jit_compile`` (``None``:
    when the model is ``jit_safe``), ``init_jitter`` (sd of the per-chain perturbation of
    the starting point in the unconstrained space).
    """

    def make_kernel():
        return NUTS(model.model, target_accept_prob=target_accept_prob,
                    max_tree_depth=max_tree_depth, full_mass=full_mass,
                    **_enumeration(model),
                    jit_compile=_jit(jit_compile, model), ignore_jit_warnings=True)

    return _run(make_kernel, model, x, c=c, num_samples=num_samples,
                warmup_steps=warmup_steps, num_chains=num_chains, init_jitter=init_jitter,
                progress=progress)


def fit_hmc(model: GenerativeModel, x: torch.Tensor, *, c=None, num_samples: int = 1000,
            warmup_steps: int = 500, num_chains: int = 2, target_accept_prob: float = 0.8,
            trajectory_length: float = 1.0, full_mass: bool = False,
            jit_compile: Optional[bool] = None,
            init_jitter: float = 0.5, progress: bool = True) -> Dict[str, Any]:
    """Hamiltonian Monte Carlo with a fixed trajectory length (Neal, 2011)."""

    def make_kernel():
        return HMC(model.model, trajectory_length=trajectory_length,
                   target_accept_prob=target_accept_prob, full_mass=full_mass,
                   **_enumeration(model),
                   jit_compile=_jit(jit_compile, model), ignore_jit_warnings=True)

    return _run(make_kernel, model, x, c=c, num_samples=num_samples,
                warmup_steps=warmup_steps, num_chains=num_chains, init_jitter=init_jitter,
                progress=progress)


fit_nuts.validate_options = _validate
fit_hmc.validate_options = _validate
