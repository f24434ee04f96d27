"""Autoregressive benchmark: the facade's training step against a hand-written PyTorch
loop, and the cost of cached sampling.

    python benchmarks/bench_autoregressive.py            # names, GRU 128, batch 128
    python benchmarks/bench_autoregressive.py --small    # a quick smoke run

1. Training step. Data: ``pgm.datasets.load_names()``. The facade,
   ``AutoregressiveModel(network="gru").fit(names, method="mle", batch_size=128)``, is
   timed over ``--steps`` steps (the whole ``fit`` call, setup included). Baseline: the
   same network (embedding 32 -> GRU -> linear, built by the same class) trained by a
   hand-written loop in this process: random minibatch of 128 encoded names, teacher
   forcing, masked cross-entropy summed over tokens, ``torch.optim.Adam`` with the same
   exponential learning-rate decay. Ratio = facade seconds / loop seconds (goal <= 1.2),
   the minimum over ``--repeats`` runs of each.
2. Sampling (GRU, Transformer with full causal attention, and Transformer with
   ``attention_window=32``; width 128, 2 layers, 64 sequences, the end token disabled so
   every sequence runs to ``max_length``): time per token at length 256 over time per
   token at length 32 with the cache (goal <= 1.3), and recomputing the prefix at every
   step over the cached sampler at length 256 (goal >= 10). Full attention reads a cache
   that grows with the position (2 x layers x t x width floats per sequence and token),
   so its ratio is above 1 by construction; the GRU's state and the windowed ring buffer
   are fixed in size.

The last line prints the training-step ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded
from pyro_genmodels.models.autoregressive import AutoregressiveModel, generate


def _hand_loop(model, x, steps, batch, lr, lr_decay):
    net = model.net
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, lr_decay ** (1 / steps))
    end = model.end_id
    for _ in range(steps):
        idx = torch.randperm(x.shape[0])[:batch]
        xb = x.index_select(0, idx)
        logits = net(model._inputs(xb), None)
        mask = model.mask(xb, end)
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), xb, reduction="none")
        loss = (nll * mask).sum() * (x.shape[0] / batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return loss.item()


def bench_training(names, hidden, steps, repeats, batch=128):
    kw = dict(hidden_size=hidden, embedding_dim=32)
    opts = dict(num_steps=steps, lr=5e-3, lr_decay=0.1, batch_size=batch)
    ours, base = [], []
    # warm-up: the first fit in a process pays one-time lazy initialization
    AutoregressiveModel(**kw).fit(names, method="mle", seed=0, progress=False,
                                  **{**opts, "num_steps": 2})
    for r in range(repeats):
        t = time.perf_counter()
        AutoregressiveModel(**kw).fit(names, method="mle", seed=r, progress=False, **opts)
        ours.append(time.perf_counter() - t)
        with seeded(r):
            model = AutoregressiveModel(vocab=pgm.models.autoregressive.build_vocab(names),
                                        **kw)
            x = model.encode(names)
            t = time.perf_counter()
            _hand_loop(model, x, steps, batch, 5e-3, 0.1)
            base.append(time.perf_counter() - t)
    ratio = min(ours) / min(base)
    print(f"training, GRU {hidden}, batch {batch}, {steps} steps: facade {min(ours):.3f}s "
          f"({1000 * min(ours) / steps:.2f} ms/step), hand-written loop {min(base):.3f}s "
          f"({1000 * min(base) / steps:.2f} ms/step), ratio {ratio:.2f} (goal <= 1.2)")
    return ratio


def _time_generate(model, n, length, use_cache, repeats):
    best = float("inf")
    for r in range(repeats):
        with seeded(r), torch.no_grad():
            t = time.perf_counter()
            out = generate(model, {}, n, None, max_length=length, use_cache=use_cache)
            best = min(best, time.perf_counter() - t)
        assert (out != model.end_id).all()  # every sequence ran to max_length
    return best


def bench_sampling(network, hidden, n, short, long, repeats, window=None):
    with seeded(0):
        model = AutoregressiveModel(network=network, hidden_size=hidden, embedding_dim=32,
                                    num_layers=2, attention_window=window,
                                    vocab="abcdefghijklmnopqrstuvwxyz")
    with torch.no_grad():
        model.net.out.bias[model.end_id] = -1e4  # never end: every sequence is full length
    t_short = _time_generate(model, n, short, True, repeats)
    t_long = _time_generate(model, n, long, True, repeats)
    t_nocache = _time_generate(model, n, long, False, 1)
    per = t_long / long / (t_short / short)
    speed = t_nocache / t_long
    name = network if window is None else f"{network} (window {window})"
    print(f"sampling, {name} {hidden} x 2 layers, {n} sequences: "
          f"{1e3 * t_short / short:.3f} ms/token at {short}, {1e3 * t_long / long:.3f} "
          f"ms/token at {long} (ratio {per:.2f}, goal <= 1.3); recomputing the prefix "
          f"{t_nocache:.2f}s vs cached {t_long:.2f}s at {long} ({speed:.1f}x, goal >= 10)")
    return per, speed


#: (network, attention_window) pairs the sampling benchmark runs
NETWORKS = [("gru", None), ("transformer", None), ("transformer", 32)]


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # both sides alike; stable on a shared machine
    torch.manual_seed(0)
    names = pgm.datasets.load_names()
    if args.small:
        ratio = bench_training(names[:300], 16, 5, 1, batch=32)
        for network, window in NETWORKS:
            bench_sampling(network, 16, 4, 4, 16, 1, window and 4)
    else:
        ratio = bench_training(names, 128, 200, args.repeats)
        for network, window in NETWORKS:
            bench_sampling(network, 128, 64, 32, 256, args.repeats, window)
    print(f"ratio (facade / hand-written PyTorch GRU training step; goal <= 1.2): {ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main()
