"""Diffusion training step through the facade vs a hand-written PyTorch DDPM loop with the
same network, and the sampling cost per network step (ancestral and DDIM).

    python benchmarks/bench_diffusion.py [--quick] [--steps S] [--repeats R] [--threads T]

1. Training step. Both arms train copies of one freshly built ``pgm.Diffusion(2)``'s
   default network (``Preconditioned(NoiseConditionalMLP)``, hidden 256x256x256, the
   cosine schedule, T = 1000; the hand-written loop deep-copies ``model.network``, so
   both start from the same weights) on 4000 points of ``eight_gaussians``, standardized
   by the training rows' mean and standard deviation, with Ho et al.'s L_simple:

       loss = N/B * sum_{i in B} 1/2 ||eps_i - eps_theta(x_t_i, t_i)||^2,
       t_i ~ U{1..T},  x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,

   Adam (lr 1e-3) with the learning rate decaying exponentially to 0.1x over the run,
   and after each step an exponential moving average of the weights (decay 0.999,
   ramped as min(0.999, (1 + n) / (10 + n)) over the first updates, as
   :class:`~pyro_genmodels.infer.averaging.WeightAverage` does). The facade is
   ``model.fit(x, method="mle", num_steps=S, batch_size=256, seed=0, progress=False)``
   (the defaults: ``objective="simple"``, ``ema=0.999``, ``lr_decay=0.1``); the
   hand-written loop consumes the random stream in the same order (a permutation of the
   rows each epoch, then the noise, then the steps), so both print the same last loss.

   ratio = facade seconds per step / hand-written seconds per step, each the wall time of
   the whole run of S steps divided by S, nothing subtracted: the facade's time includes
   its setup (validation, the working copy, the standardization, the average's copy of
   the network, building the Fit), the hand-written loop's includes copying the network,
   the standardization, building its optimizer and scheduler and the average's first
   copy. One ratio per repeat, the two runs of a repeat interleaved in ABBA order (so
   load drifts hit both); the last line is ``diffusion_step_time_ratio=<median> (<min>
   .. <max> over R repeats; ...)``, goal <= 1.2. Threads are fixed (``--threads``,
   default 1).

2. Sampling. From the last facade fit (trained S steps): 1000 draws by the ancestral
   sampler (T network evaluations) and by DDIM (``steps=50``, ``eta=0``), each reported
   as wall seconds per network evaluation (the evaluations counted by a hook on the
   network), next to one bare forward pass of the network on as many rows under
   ``no_grad`` (what a step cannot cost less than); the median over min(R, 3) repeats
   (an ancestral run is T = 1000 forward passes on 1000 rows, seconds on one thread).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded


def hand_written(model: pgm.Diffusion, x: torch.Tensor, *, num_steps: int, batch: int,
                 lr: float, lr_decay: float, ema: float, seed: int):
    """A plain PyTorch DDPM training loop (L_simple) over a copy of ``model``'s network.

    What it does each step: a minibatch of standardized rows (cut from a fresh
    permutation of the rows each epoch, as the facade's loop does, so that both draw the
    same random numbers), fresh noise, steps t ~ U{1..T}, ``x_t`` from the schedule's
    buffers, one forward pass, ``zero_grad``, ``backward``, ``Adam.step`` (torch's
    default Adam: no ``foreach`` or ``fused`` flag), ``ExponentialLR.step``, the moving
    average of the weights (one ``torch._foreach_lerp_``) and ``.item()`` on the loss
    (what a loop that logs it pays).

    What it does not do (and the facade does): no ``Batch`` object, no bound weight
    ``w_t * err`` (the facade's loss computes it for both objectives and uses it for
    ``"elbo"`` only), no non-finite check of the loss or of the gradient norm (the facade
    takes the global gradient norm, one ``_foreach_norm``, and checks it before every
    step), ``backward()`` instead of ``autograd.grad`` restricted to the parameters and
    assigned to ``.grad``, the moving average as one multi-tensor lerp instead of
    ``AveragedModel.update_parameters`` (a Python loop over the parameters with the
    ramped decay recomputed per tensor), no progress bar, no per-step record of the
    losses, no Fit at the end.

    Returns the network (its raw weights), the averaged weights and the last loss.
    """
    torch.manual_seed(seed)
    net = copy.deepcopy(model.network).to(dtype=x.dtype)  # as the facade's working copy
    sched = model.schedule  # its coefficients are float64 until a fit casts them
    sqrt_abar, sqrt_1m_abar = sched.sqrt_abar.to(x.dtype), sched.sqrt_1m_abar.to(x.dtype)
    T = model.timesteps
    sd = x.std(0)
    u = (x - x.mean(0)) / torch.where(torch.isfinite(sd) & (sd > 1e-8), sd,
                                      torch.ones_like(sd))
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    lr_sched = torch.optim.lr_scheduler.ExponentialLR(opt, lr_decay ** (1 / num_steps))
    n = u.shape[0]
    scale = n / batch
    # the loop's minibatch generator, seeded from the fit's stream as optimize() does
    batches = torch.Generator().manual_seed(int(torch.randint(2 ** 62, ())))
    perm, pos = None, 0
    average = None
    for k in range(num_steps):
        if perm is None or pos + batch > n:
            perm, pos = torch.randperm(n, generator=batches), 0
        x0 = u[perm[pos:pos + batch]]
        pos += batch
        noise = torch.randn_like(x0)
        t = torch.randint(1, T + 1, (batch,))
        x_t = sqrt_abar[t].unsqueeze(-1) * x0 + sqrt_1m_abar[t].unsqueeze(-1) * noise
        loss = 0.5 * (noise - net(x_t, t.to(x0.dtype))).pow(2).sum(-1).sum() * scale
        opt.zero_grad()
        loss.backward()
        opt.step()
        lr_sched.step()
        with torch.no_grad():  # the moving average, its decay ramped up over k updates
            if average is None:
                average = [p.detach().clone() for p in params]
            else:
                d = min(ema, (1.0 + k) / (10.0 + k))
                torch._foreach_lerp_(average, [p.detach() for p in params], 1.0 - d)
        value = loss.item()
    return net, average, value


class _Counter:
    """Counts the forward calls of a module (a forward pre-hook)."""

    def __init__(self, module: torch.nn.Module):
        self.calls = 0
        self.handle = module.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.calls += 1

    def remove(self):
        self.handle.remove()


def time_sampling(fit, draws: int, ddim_steps: int, repeats: int):
    """Median seconds per network evaluation of ancestral and DDIM sampling of ``draws``
    rows, the network evaluations of each, and a bare forward pass on ``draws`` rows."""
    model = fit.model
    net = model.network
    u = torch.randn(draws, model.dim, **model._factory)
    t = torch.full((draws,), float(model.timesteps // 2), **model._factory)
    per = {"ancestral": [], "ddim": [], "bare": []}
    evals = {}
    with torch.no_grad():  # warm up
        net(u, t)
        fit.sample(draws, sampler="ddim", steps=2, seed=0)
    for i in range(repeats):
        for name in (["ancestral", "ddim"] if i % 2 == 0 else ["ddim", "ancestral"]):
            counter = _Counter(net)
            start = time.perf_counter()
            if name == "ancestral":
                fit.sample(draws, sampler="ancestral", seed=i)
            else:
                fit.sample(draws, sampler="ddim", steps=ddim_steps, seed=i)
            wall = time.perf_counter() - start
            counter.remove()
            evals[name] = counter.calls
            per[name].append(wall / counter.calls)
        reps = max(10, min(200, evals["ddim"]))
        with torch.no_grad():
            start = time.perf_counter()
            for _ in range(reps):
                net(u, t)
            per["bare"].append((time.perf_counter() - start) / reps)
    return {k: statistics.median(v) for k, v in per.items()}, evals


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--steps", type=int, default=None, help="training steps per run")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    quick = args.quick
    steps = args.steps or (20 if quick else 500)
    repeats = args.repeats or (3 if quick else 5)
    batch, lr, lr_decay, ema = 256, 1e-3, 0.1, 0.999
    n = 1000 if quick else 4000
    hidden = (32, 32) if quick else (256, 256, 256)
    timesteps = 100 if quick else 1000
    draws, ddim_steps = (64, 10) if quick else (1000, 50)
    with seeded(0):
        x = pgm.datasets.toy("eight_gaussians").sample((n,))
        model = pgm.Diffusion(2, timesteps=timesteps, hidden=hidden)
    opts = {"num_steps": steps, "batch_size": batch, "lr": lr, "lr_decay": lr_decay,
            "ema": ema}
    model.fit(x, method="mle", seed=0, progress=False, **{**opts, "num_steps": 5})
    hand_written(model, x, num_steps=5, batch=batch, lr=lr, lr_decay=lr_decay, ema=ema,
                 seed=0)  # warm up both
    facade, hand, order = [], [], []

    def run_facade():
        t = time.perf_counter()
        out = model.fit(x, method="mle", seed=0, progress=False, **opts)
        facade.append((time.perf_counter() - t) / steps)
        return out

    def run_hand():
        t = time.perf_counter()
        out = hand_written(model, x, num_steps=steps, batch=batch, lr=lr, lr_decay=lr_decay,
                           ema=ema, seed=0)
        hand.append((time.perf_counter() - t) / steps)
        return out

    for i in range(repeats):  # alternating which runs first (ABBA), so drift cancels
        if i % 2 == 0:
            order.append("facade first")
            fit = run_facade()
            _, average, hand_loss = run_hand()
        else:
            order.append("hand-written first")
            _, average, hand_loss = run_hand()
            fit = run_facade()
    ratios = [a / b for a, b in zip(facade, hand)]
    r = statistics.median(ratios)
    f, h = statistics.median(facade), statistics.median(hand)
    # the facade's fitted network is the average: compare it with the loop's average
    gap = max(float((a.detach() - b).abs().max()) for a, b in
              zip(fit.model.network.parameters(), average))
    print(f"training: facade {1e3 * f:.3f} ms/step (last loss {fit.losses[-1]:.3f}); "
          f"hand-written PyTorch loop {1e3 * h:.3f} ms/step (last loss {hand_loss:.3f}); "
          f"max |difference| of the averaged weights {gap:.1e}; {steps} steps, batch "
          f"{batch}, N {n}, hidden {'x'.join(map(str, hidden))}, T {timesteps}, "
          f"{torch.get_num_threads()} threads")
    for i, (a, b, q, o) in enumerate(zip(facade, hand, ratios, order)):
        print(f"repeat {i + 1} ({o}): facade {1e3 * a:.3f} ms/step, hand-written "
              f"{1e3 * b:.3f} ms/step, ratio {q:.3f}")
    cost, evals = time_sampling(fit, draws, ddim_steps, min(repeats, 3))
    for name, label in (("ancestral", "ancestral"), ("ddim", f"ddim (steps={ddim_steps})")):
        print(f"sampling {draws} draws, {label}: {1e3 * cost[name]:.3f} ms per network step "
              f"({evals[name]} network evaluations; {cost[name] / cost['bare']:.2f}x a bare "
              f"forward pass of {1e3 * cost['bare']:.3f} ms)")
    print(f"diffusion_step_time_ratio={r:.3f} ({min(ratios):.3f} .. {max(ratios):.3f} over "
          f"{len(ratios)} repeats; facade/hand-written per training step, goal <= 1.2)")
    return r


if __name__ == "__main__":
    main()
