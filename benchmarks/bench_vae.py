"""VAE training time through the facade vs a hand-written PyTorch VAE loop.

    python benchmarks/bench_vae.py [--quick] [--steps N] [--hidden H] [--batch B]

Both train the same networks (the facade's default MLP encoder 64 -> H -> 2L and decoder
L -> H -> 64, ReLU, L = 8; the hand-written loop starts from a copy of the facade model's
initial weights) on binarized digits (1500 rows) with a Bernoulli likelihood, Adam with
the same exponentially decaying learning rate, the same batch size, one reparameterized
draw of z per row, minibatches cut from a fresh permutation each epoch and the
full-data-scaled negative ELBO. The hand-written loop is the textbook one: eager PyTorch,
the analytic Gaussian KL to the N(0, I) prior, ``loss.backward()``, ``loss.item()``,
``opt.step()``.

ratio = facade seconds / hand-written seconds for the whole fit (the facade's time
includes building the Fit, validation and, with ``jit``, compiling the loss), one ratio
per repeat (the two runs of a repeat interleaved, so load drifts hit both); the last line
is ``vae_fit_time_ratio=<median> (min .. max over R repeats) ...``. Goal <= 1.2 at hidden
128 and 256. Threads are fixed (``--threads``, default 1).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded
from pyro_genmodels.models.vae import VAE


def hand_written(model: VAE, x: torch.Tensor, *, num_steps: int, batch: int, lr: float,
                 lr_decay: float):
    """A plain PyTorch VAE training loop over copies of ``model``'s networks."""
    torch.manual_seed(0)
    enc, dec = copy.deepcopy(model.encoder), copy.deepcopy(model.decoder)
    latent = model.latent_dim
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, lr_decay ** (1 / num_steps))
    n = x.shape[0]
    # the loop's minibatch generator, seeded from the fit's stream as optimize() does
    batches = torch.Generator().manual_seed(int(torch.randint(2 ** 62, ())))
    perm, pos = None, 0
    for _ in range(num_steps):
        if perm is None or pos + batch > n:
            perm, pos = torch.randperm(n, generator=batches), 0
        xb = x[perm[pos:pos + batch]]
        pos += batch
        h = enc(xb)
        loc, scale = h[:, :latent], F.softplus(h[:, latent:]) + 1e-5
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        log_lik = -F.binary_cross_entropy_with_logits(dec(z), xb, reduction="none").sum(-1)
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum(-1) - scale.log().sum(-1)
        loss = -(log_lik - kl).sum() * (n / batch)
        loss.backward()
        value = loss.item()
        opt.step()
        opt.zero_grad()
        sched.step()
    return enc, dec, value


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--jit", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = args.steps or (30 if args.quick else 2000)
    repeats = args.repeats or (1 if args.quick else 3)
    x = pgm.datasets.load_digits(binarize=True)[0][:1500]
    with seeded(0):
        model = VAE(64, 8, hidden=(args.hidden,))
    jit = {"auto": None, "on": True, "off": False}[args.jit]
    opts = dict(num_steps=steps, batch_size=args.batch, lr=1e-3, lr_decay=0.1, jit=jit)
    model.fit(x, method="mle", seed=0, progress=False, **{**opts, "num_steps": 5})  # warm up
    hand_written(model, x, num_steps=5, batch=args.batch, lr=1e-3, lr_decay=0.1)
    facade, hand = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        fit = model.fit(x, method="mle", seed=0, progress=False, **opts)
        facade.append(time.perf_counter() - t)
        t = time.perf_counter()
        _, _, hand_loss = hand_written(model, x, num_steps=steps, batch=args.batch, lr=1e-3,
                                       lr_decay=0.1)
        hand.append(time.perf_counter() - t)
    f, h = statistics.median(facade), statistics.median(hand)
    ratios = [a / b for a, b in zip(facade, hand)]
    r = statistics.median(ratios)
    print(f"facade: {1e3 * f / steps:.3f} ms/step (jit={fit.info['jit']}, last loss "
          f"{fit.losses[-1]:.1f}); hand-written PyTorch loop: {1e3 * h / steps:.3f} ms/step "
          f"(last loss {hand_loss:.1f}); {steps} steps, batch {args.batch}, hidden "
          f"{args.hidden}, {torch.get_num_threads()} threads")
    print(f"vae_fit_time_ratio={r:.3f} ({min(ratios):.3f} .. {max(ratios):.3f} over "
          f"{len(ratios)} repeats; facade/hand-written, goal <= 1.2)")
    return r


if __name__ == "__main__":
    main()
