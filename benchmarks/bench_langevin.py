"""Batched MCMC (pyro_genmodels.infer.samplers) vs Pyro's MCMC(HMC), same 2-D MLP energy.

    python benchmarks/bench_langevin.py [--quick] [--threads 1] [--device cpu]

The target is exp f(x) with f a fixed random MLP (2 -> 128 -> 128 -> 1, SiLU, the
EnergyModel default) plus -|x|^2 / 8 so that it is normalizable. Both samplers run HMC
with 10 leapfrog steps of size 0.05, no adaptation, so a "chain-step" (one transition of
one chain) costs 10 gradient evaluations on both sides.

* ``chain_steps_ratio``: chain-steps per second of the batched HMC with 1000 chains /
  chain-steps per second of ``pyro.infer.MCMC(HMC(potential_fn=...))`` with one chain
  (goal >= 100).
* ``time_1000_over_1``: wall time of the batched HMC with 1000 chains / with 1 chain,
  same number of transitions (goal <= 10).

MALA (one gradient per transition) is reported too. By default torch uses one thread:
on a small shared machine intra-op threads fight over cores and make tiny batched ops
far slower; ``--threads 0`` keeps torch's default.
"""

from __future__ import annotations

import argparse
import time

import torch
from pyro.infer import HMC, MCMC

from pyro_genmodels._rng import seeded
from pyro_genmodels.infer import samplers
from pyro_genmodels.models.energy import EnergyModel


def make_energy(device):
    with seeded(0):
        model = EnergyModel(2, noise_conditional=False).to(device)  # the plain 128x128 MLP
    for p in model.net.parameters():
        p.requires_grad_(False)

    def f(x):
        return model._f(x) - x.pow(2).sum(-1) / 8

    return f


def pyro_hmc(f, steps: int, device) -> float:
    kernel = HMC(potential_fn=lambda p: -f(p["x"].unsqueeze(0)).squeeze(0), step_size=0.05,
                 num_steps=10, adapt_step_size=False, adapt_mass_matrix=False)
    mcmc = MCMC(kernel, num_samples=steps, warmup_steps=0,
                initial_params={"x": torch.zeros(2, device=device)}, disable_progbar=True)
    t = time.perf_counter()
    mcmc.run()
    return time.perf_counter() - t


def batched(sampler, f, chains: int, steps: int, device) -> float:
    x0 = torch.randn(chains, 2, device=device)
    t = time.perf_counter()
    if sampler == "hmc":
        samplers.hmc(f, x0, num_samples=steps, warmup_steps=0, step_size=0.05,
                     num_leapfrog=10, adapt=False, jitter=False)
    else:
        samplers.mala(f, x0, num_samples=steps, warmup_steps=0, step_size=0.05, adapt=False)
    if x0.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    old_threads = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device)
        f = make_energy(device)
        steps = 5 if args.quick else 100
        chains = 50 if args.quick else 1000
        with seeded(0):
            batched("hmc", f, 2, 2, device)  # warm up
            pyro_hmc(f, 2, device)
            t_pyro = min(pyro_hmc(f, steps, device) for _ in range(1 if args.quick else 2))
            t_many = min(batched("hmc", f, chains, steps, device)
                         for _ in range(1 if args.quick else 3))
            t_one = min(batched("hmc", f, 1, steps, device)
                        for _ in range(1 if args.quick else 3))
            t_mala = min(batched("mala", f, chains, steps * 10, device)
                         for _ in range(1 if args.quick else 3))
        pyro_rate = steps / t_pyro
        many_rate = chains * steps / t_many
        mala_rate = chains * steps * 10 / t_mala
        print(f"Pyro MCMC(HMC), 1 chain: {pyro_rate:.1f} chain-steps/s "
              f"({1e3 * t_pyro / steps:.2f} ms per transition, 10 leapfrog steps)")
        print(f"batched HMC, {chains} chains: {many_rate:.0f} chain-steps/s; 1 chain: "
              f"{steps / t_one:.1f} chain-steps/s")
        print(f"batched MALA, {chains} chains: {mala_rate:.0f} chain-steps/s "
              f"(1 gradient per transition)")
        print(f"chain_steps_ratio={many_rate / pyro_rate:.1f} "
              f"time_1000_over_1={t_many / t_one:.2f} "
              f"(batched HMC {chains} chains vs Pyro HMC 1 chain, goal >= 100; "
              f"{chains} chains / 1 chain time, goal <= 10)")
    finally:
        torch.set_num_threads(old_threads)


if __name__ == "__main__":
    main()
