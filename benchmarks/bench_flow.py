"""Flow training step through the facade vs the same zuko flow in a hand-written loop.

    python benchmarks/bench_flow.py [--quick]

Both train ``zuko.flows.NSF(2, transforms=3, hidden_features=(64, 64))`` on
``eight_gaussians`` with Adam, the same learning-rate schedule, minibatches of 256 drawn
uniformly without replacement and the full-data-scaled loss; ratio = facade seconds per
step / hand-written seconds per step, one ratio per repeat (the two runs of a repeat
interleaved); the last line is ``flow_step_time_ratio=<median> (min .. max over R
repeats)``, goal <= 1.15. Threads are fixed (``--threads``, default 1).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import zuko

import pyro_genmodels as pgm


def hand_written(x: torch.Tensor, num_steps: int, batch: int, lr: float, lr_decay: float):
    torch.manual_seed(0)
    flow = zuko.flows.NSF(2, transforms=3, hidden_features=(64, 64))
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, lr_decay ** (1 / num_steps))
    n = x.shape[0]
    for _ in range(num_steps):
        idx = torch.randperm(n)[:batch]
        loss = -flow().log_prob(x[idx]).sum() * (n / batch)
        loss.backward()
        loss.item()
        opt.step()
        opt.zero_grad()
        sched.step()
    return flow


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = 30 if args.quick else 400
    torch.manual_seed(0)
    x = pgm.datasets.toy("eight_gaussians").sample((4000,))
    opts = dict(num_steps=steps, batch_size=256, lr=1e-3, lr_decay=0.1)
    model = pgm.Flow(2, transform="nsf", num_transforms=3, hidden=(64, 64))
    model.fit(x, method="mle", seed=0, progress=False, num_steps=5, batch_size=256)  # warm up
    hand_written(x, 5, 256, 1e-3, 0.1)
    facade, hand = [], []
    for _ in range(args.repeats or (1 if args.quick else 3)):
        t = time.perf_counter()
        fit = model.fit(x, method="mle", seed=0, progress=False, **opts)
        facade.append((time.perf_counter() - t) / steps)
        t = time.perf_counter()
        flow = hand_written(x, steps, 256, 1e-3, 0.1)
        hand.append((time.perf_counter() - t) / steps)
    f, h = statistics.median(facade), statistics.median(hand)
    ratios = [a / b for a, b in zip(facade, hand)]
    with torch.no_grad():
        hand_lp = flow().log_prob(x).mean().item()
    print(f"facade: {1e3 * f:.2f} ms/step (train log p {fit.log_prob(x).mean().item():.3f}); "
          f"hand-written zuko loop: {1e3 * h:.2f} ms/step (train log p {hand_lp:.3f})")
    print(f"flow_step_time_ratio={statistics.median(ratios):.3f} ({min(ratios):.3f} .. "
          f"{max(ratios):.3f} over {len(ratios)} repeats, {torch.get_num_threads()} threads; "
          f"facade/hand-written, goal <= 1.15)")


if __name__ == "__main__":
    main()
