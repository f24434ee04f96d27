"""Score model: DSM training step through the facade vs a hand-written PyTorch loop with
the same network, and annealed Langevin batched over the draws vs one draw at a time.

    python benchmarks/bench_score.py [--quick] [--steps S] [--repeats R] [--threads T]

1. Training step. Both arms train copies of one freshly built ``pgm.ScoreModel(2)``'s
   default network (``ScaledScore(NoiseConditionalMLP)``, hidden 256x256x256; the
   hand-written loop deep-copies ``model.network``, so both start from the same weights)
   on 4000 points of ``eight_gaussians``, standardized by the training rows' mean and
   standard deviation, with denoising score matching (Vincent 2011):

       loss = N/B * sum_{i in B} 1/2 ||sigma_i s(u_i + sigma_i z_i, sigma_i) + z_i||^2,
       log sigma_i ~ U(log sigma_min, log sigma_max),  z_i ~ N(0, I),

   over L = 10 geometric levels from sigma_max (the largest pairwise distance between
   the standardized rows, as the model's working copy sets it; the hand-written loop
   computes it the same way and sets the network's ``log_range`` buffer from it, as
   ``ScoreModel._sync_range`` does) down to sigma_min = 0.01. Adam (lr 1e-3) with the
   learning rate decaying exponentially to 0.1x over the run, and after each step an
   exponential moving average of the weights (decay 0.999, ramped as
   min(0.999, (1 + n) / (10 + n)), as
   :class:`~pyro_genmodels.infer.averaging.WeightAverage` does). The facade is
   ``model.fit(x, method="dsm", num_steps=S, batch_size=256, seed=0, progress=False)``
   (the defaults: ``levels="continuous"``, ``ema=0.999``, ``lr_decay=0.1``); the
   hand-written loop consumes the random stream in the same order (a permutation of the
   rows each epoch, then the levels, then the noise), so both print the same last loss
   and the same averaged weights.

   ratio = facade seconds per step / hand-written seconds per step, each the wall time of
   the whole run of S steps divided by S, nothing subtracted: the facade's time includes
   its setup (validation, the working copy, the standardization, sigma_max from the
   pairwise distances, the average's copy of the network, building the Fit), the
   hand-written loop's includes copying the network, the standardization, the same
   pairwise distances, building its optimizer and scheduler and the average's first
   copy. One ratio per repeat, the two runs of a repeat interleaved in ABBA order (so
   load drifts hit both); the last line is ``score_step_time_ratio=<median> (<min> ..
   <max> over R repeats; ...)``, goal <= 1.2. Threads are fixed (``--threads``,
   default 1).

2. Sampling. From the last facade fit: annealed Langevin (Song & Ermon 2019) with
   ``steps_per_level=5`` (10 levels x 5 steps + the final denoising step = 51 network
   evaluations per draw), 10,000 draws as one batched computation (the library's
   ``annealed_langevin``: every step one forward pass on all rows) against a plain
   Python loop that runs the same steps for one draw at a time (a forward pass per draw
   per step). The per-draw loop is timed on 50 draws only (it would take minutes on
   10,000) and its time is scaled per draw: reported are seconds per draw of each, and
   the speedup per draw (per-draw loop / batched). Both draw with the library's step
   size; on a single draw under one seed the loop reproduces ``annealed_langevin``
   exactly (printed as the max |difference|). The median over min(R, 3) repeats, the
   two arms in ABBA order.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import torch

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded
from pyro_genmodels.models.score_fit import annealed_langevin, langevin_step_size


def hand_written(model: pgm.ScoreModel, x: torch.Tensor, *, num_steps: int, batch: int,
                 lr: float, lr_decay: float, ema: float, seed: int):
    """A plain PyTorch DSM training loop over a copy of ``model``'s network.

    Setup: standardize the rows, sigma_max as the largest pairwise distance between the
    standardized rows (``torch.cdist``; the model uses at most 5000 rows, here all 4000),
    the L geometric levels, the network's ``log_range`` buffer set to (log sigma_min,
    log sigma_max), torch's default Adam (no ``foreach`` or ``fused`` flag) and
    ``ExponentialLR``.

    Each step: a minibatch of standardized rows (cut from a fresh permutation of the rows
    each epoch, as the facade's loop does, so that both draw the same random numbers),
    log-uniform levels, fresh noise, one forward pass, ``zero_grad``, ``backward``,
    ``Adam.step``, ``ExponentialLR.step``, the moving average of the weights (one
    ``torch._foreach_lerp_``) and ``.item()`` on the loss (what a loop that logs it
    pays).

    What it does not do (and the facade does): no ``Batch`` object, no non-finite check
    of the loss or of the gradient norm (the facade takes the global gradient norm, one
    ``_foreach_norm``, and checks it before every step), ``backward()`` instead of
    ``autograd.grad`` restricted to the parameters and assigned to ``.grad``, no
    ``score_unit`` indirection (the dtype cast of sigma), no progress bar, no per-step
    record of the losses, no Fit at the end.

    Returns the network (its raw weights), the averaged weights, the levels and the last
    loss.
    """
    torch.manual_seed(seed)
    net = copy.deepcopy(model.network).to(dtype=x.dtype)  # as the facade's working copy
    sd = x.std(0)
    u = (x - x.mean(0)) / torch.where(torch.isfinite(sd) & (sd > 1e-8), sd,
                                      torch.ones_like(sd))
    top = max(float(torch.cdist(u, u).max()), 2 * model.sigma_min)
    sigmas = torch.exp(torch.linspace(math.log(top), math.log(model.sigma_min),
                                      model.num_levels)).to(x.dtype)
    with torch.no_grad():  # tau = (log sigma - log sigma_min) / (log range), in [0, 1]
        net.log_range.copy_(torch.stack([sigmas[-1], sigmas[0]]).log())
    lo, hi = sigmas[-1].log(), sigmas[0].log()
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
        sigma = torch.exp(lo + (hi - lo) * torch.rand(batch, dtype=x0.dtype))
        z = torch.randn_like(x0)
        s = net(x0 + sigma.unsqueeze(-1) * z, sigma)
        loss = 0.5 * (sigma.unsqueeze(-1) * s + z).pow(2).sum(-1).sum() * scale
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
    return net, average, sigmas, value


@torch.no_grad()
def one_at_a_time(model, n: int, *, steps_per_level: int) -> torch.Tensor:
    """``n`` draws by annealed Langevin, each draw its own Python loop over the levels and
    steps (a forward pass on one row per step): the same update as ``annealed_langevin``
    (the library's step size, ``score_unit``, the final denoising step), without the
    batch dimension. On ``n = 1`` it is ``annealed_langevin`` to the bit."""
    sigmas = model.sigmas
    eps = langevin_step_size(sigmas, steps_per_level)
    last = sigmas[-1]
    out = []
    for _ in range(n):
        x = torch.randn(1, model.dim, **model._factory) * sigmas[0]
        for sigma in sigmas:
            alpha = eps * (sigma / last) ** 2
            for _ in range(steps_per_level):
                x = (x + 0.5 * alpha * model.score_unit(x, sigma, None)
                     + alpha.sqrt() * torch.randn_like(x))
        x = x + last ** 2 * model.score_unit(x, last, None)
        out.append(x)
    return torch.cat(out)


def time_sampling(model, draws: int, loop_draws: int, steps_per_level: int, repeats: int):
    """Median seconds per draw of ``annealed_langevin`` on ``draws`` rows at once and of
    :func:`one_at_a_time` on ``loop_draws`` rows, and their max |difference| on one draw
    under one seed."""
    with torch.no_grad(), seeded(0):  # warm up both
        annealed_langevin(model, min(draws, 64), None, steps_per_level=1)
        one_at_a_time(model, 1, steps_per_level=1)
    with torch.no_grad():
        with seeded(7):
            a = annealed_langevin(model, 1, None, steps_per_level=steps_per_level)
        with seeded(7):
            b = one_at_a_time(model, 1, steps_per_level=steps_per_level)
    gap = float((a - b).abs().max())
    per = {"batched": [], "loop": []}
    for i in range(repeats):
        for name in (["batched", "loop"] if i % 2 == 0 else ["loop", "batched"]):
            with torch.no_grad(), seeded(i):
                start = time.perf_counter()
                if name == "batched":
                    annealed_langevin(model, draws, None, steps_per_level=steps_per_level)
                else:
                    one_at_a_time(model, loop_draws, steps_per_level=steps_per_level)
                wall = time.perf_counter() - start
            per[name].append(wall / (draws if name == "batched" else loop_draws))
    return {k: statistics.median(v) for k, v in per.items()}, gap


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
    draws, loop_draws, steps_per_level = (500, 5, 2) if quick else (10_000, 50, 5)
    with seeded(0):
        x = pgm.datasets.toy("eight_gaussians").sample((n,))
        model = pgm.ScoreModel(2, hidden=hidden)
    opts = {"num_steps": steps, "batch_size": batch, "lr": lr, "lr_decay": lr_decay,
            "ema": ema}
    model.fit(x, method="dsm", seed=0, progress=False, **{**opts, "num_steps": 5})
    hand_written(model, x, num_steps=5, batch=batch, lr=lr, lr_decay=lr_decay, ema=ema,
                 seed=0)  # warm up both
    facade, hand, order = [], [], []

    def run_facade():
        t = time.perf_counter()
        out = model.fit(x, method="dsm", seed=0, progress=False, **opts)
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
            _, average, sigmas, hand_loss = run_hand()
        else:
            order.append("hand-written first")
            _, average, sigmas, hand_loss = run_hand()
            fit = run_facade()
    ratios = [a / b for a, b in zip(facade, hand)]
    r = statistics.median(ratios)
    f, h = statistics.median(facade), statistics.median(hand)
    # the facade's fitted network is the average: compare it with the loop's average
    gap = max(float((a.detach() - b).abs().max()) for a, b in
              zip(fit.model.network.parameters(), average))
    sigma_gap = max(abs(a - b) for a, b in zip(fit.info["sigmas"], sigmas.tolist()))
    print(f"training: facade {1e3 * f:.3f} ms/step (last loss {fit.losses[-1]:.3f}); "
          f"hand-written PyTorch loop {1e3 * h:.3f} ms/step (last loss {hand_loss:.3f}); "
          f"max |difference| of the averaged weights {gap:.1e}, of the levels "
          f"{sigma_gap:.1e}; sigma_max {fit.info['sigmas'][0]:.3f}; {steps} steps, batch "
          f"{batch}, N {n}, hidden {'x'.join(map(str, hidden))}, "
          f"{torch.get_num_threads()} threads")
    for i, (a, b, q, o) in enumerate(zip(facade, hand, ratios, order)):
        print(f"repeat {i + 1} ({o}): facade {1e3 * a:.3f} ms/step, hand-written "
              f"{1e3 * b:.3f} ms/step, ratio {q:.3f}")
    levels = len(fit.model.sigmas)
    cost, loop_gap = time_sampling(fit.model, draws, loop_draws, steps_per_level,
                                   min(repeats, 3))
    print(f"sampling, annealed Langevin ({levels} levels x {steps_per_level} steps + "
          f"denoising = {levels * steps_per_level + 1} network evaluations per draw): "
          f"batched over {draws} draws {1e6 * cost['batched']:.3f} us per draw "
          f"({1e3 * draws * cost['batched']:.1f} ms in all); one draw at a time "
          f"{1e6 * cost['loop']:.3f} us per draw (timed on {loop_draws} draws, scaled per "
          f"draw); max |difference| on one draw under one seed {loop_gap:.1e}; median over "
          f"{min(repeats, 3)} repeats")
    print(f"sampling speedup per draw, batched over one draw at a time: "
          f"{cost['loop'] / cost['batched']:.1f}x")
    print(f"score_step_time_ratio={r:.3f} ({min(ratios):.3f} .. {max(ratios):.3f} over "
          f"{len(ratios)} repeats; facade/hand-written per training step, goal <= 1.2)")
    return r


if __name__ == "__main__":
    main()
