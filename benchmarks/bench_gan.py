"""GAN training step (critic and generator) through the facade vs a hand-written PyTorch
GAN loop with the same networks.

    python benchmarks/bench_gan.py [--quick] [--steps S] [--repeats R] [--threads T]

Both train copies of one freshly built ``pgm.GAN(2)``'s default networks (generator
8 -> 128 -> 128 -> 2 with ReLU, critic 2 -> 128 -> 128 -> 1 with LeakyReLU(0.2); the
hand-written loop deep-copies ``model.generator`` and ``model.critic``, so both start
from the same weights) on 10000 points of ``eight_gaussians``, standardized by the
training rows' mean and standard deviation, with the default ``divergence="js"`` and its
non-saturating generator loss: one critic step on

    L_critic = mean softplus(-V(x)) + mean softplus(V(G(z))) - 2 log 2
               + gamma / 2 mean ||grad_x V(x)||^2      (R1, gamma = 0.01)

(minus the f-GAN bound ``mean(log 2 - softplus(-V(x))) - mean(softplus(V(G(z))) - log
2)``), then one generator step on ``L_gen = mean softplus(-V(G(z))) - log 2`` (minus
``mean(log 2 - softplus(-V(G(z))))``), each with its own Adam (generator lr 1e-3, critic
4e-3 as the facade's two-rate default for js; betas (0.5, 0.9), constant learning rate:
the js defaults), minibatches of 256 rows cut from a fresh permutation of
the rows each epoch and fresh codes z ~ N(0, I) of the same size. The facade is
``pgm.GAN(2).fit(x, method="adversarial", num_steps=S, batch_size=256, seed=0,
progress=False)``; the hand-written loop consumes the random stream in the same order, so
both print the same last losses.

ratio = facade seconds / hand-written seconds for the whole run of S rounds (the facade's
time includes its setup: the working copy, the standardization, building the Fit; the
hand-written loop's includes copying the networks, the standardization and building its
optimizers), one ratio per repeat (the two runs of a repeat interleaved, so load drifts
hit both); the last line is ``gan_step_time_ratio=<median> (min .. max over R repeats;
...)``, goal <= 1.2. Threads are fixed (``--threads``, default 1).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import torch
import torch.nn.functional as F

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded

LOG2 = math.log(2.0)


#: the js default's R1 penalty (pyro_genmodels.models.gan_engine.DIVERGENCE_DEFAULTS)
R1 = 0.01


def hand_written(model: pgm.GAN, x: torch.Tensor, *, num_steps: int, batch: int, lr: float,
                 seed: int):
    """A plain PyTorch GAN training loop over copies of ``model``'s networks.

    What it does each round: one critic step (a minibatch of standardized rows, B fresh
    codes, the generator's draws under ``no_grad``, two critic forward passes,
    ``zero_grad``, ``backward``, ``Adam.step``), then one generator step (B fresh codes,
    ``zero_grad``, ``backward`` through the critic, ``Adam.step``), and ``.item()`` on
    both losses (what a loop that logs them pays). Torch's default Adam (no ``foreach``
    or ``fused`` flag).

    What it does not do (and the facade does): no learning-rate scheduler (the GAN's
    default ``lr_decay`` is 1, a constant rate), no non-finite check of the losses or
    the gradient norms, no progress bar, no per-round record of the losses, no
    ``autograd.grad`` restricted to one player's parameters (``backward()`` of the
    generator's loss also fills the critic's ``.grad``, cleared by the critic's next
    ``zero_grad``). Like the facade's loop, it hands the generator step a minibatch
    position too (the permutation advances by B rows per player update; the generator
    uses only the size), so both runs draw the same random numbers in the same order.
    """
    torch.manual_seed(seed)
    gen, critic = copy.deepcopy(model.generator), copy.deepcopy(model.critic)
    latent = model.latent_dim
    sd = x.std(0)
    u = (x - x.mean(0)) / torch.where(torch.isfinite(sd) & (sd > 1e-8), sd,
                                      torch.ones_like(sd))
    # the critic at 4x the generator's rate, as the facade's default for "js" (TTUR)
    opt_c = torch.optim.Adam(critic.parameters(), lr=4 * lr, betas=(0.5, 0.9))
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.9))
    n = u.shape[0]
    # the loop's minibatch generator, seeded from the fit's stream as optimize() does
    batches = torch.Generator().manual_seed(int(torch.randint(2 ** 62, ())))
    perm, pos = None, 0
    for _ in range(num_steps):
        # the critic: minimize softplus(-V(x)) + softplus(V(G(z))) (minus the JS bound)
        if perm is None or pos + batch > n:
            perm, pos = torch.randperm(n, generator=batches), 0
        real = u[perm[pos:pos + batch]].requires_grad_(True)
        pos += batch
        with torch.no_grad():
            fake = gen(torch.randn(batch, latent))
        v_real = critic(real)
        loss_c = F.softplus(-v_real).mean() + F.softplus(critic(fake)).mean() - 2 * LOG2
        grad, = torch.autograd.grad(v_real.sum(), real, create_graph=True)  # R1
        loss_c = loss_c + 0.5 * R1 * grad.pow(2).sum(-1).mean()
        opt_c.zero_grad()
        loss_c.backward()
        opt_c.step()
        # the generator, non-saturating: minimize softplus(-V(G(z)))
        if perm is None or pos + batch > n:
            perm, pos = torch.randperm(n, generator=batches), 0
        pos += batch
        loss_g = F.softplus(-critic(gen(torch.randn(batch, latent)))).mean() - LOG2
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        critic_value, gen_value = loss_c.item(), loss_g.item()
    return gen, critic, gen_value, critic_value


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--steps", type=int, default=None, help="rounds (critic + generator)")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = args.steps or (30 if args.quick else 500)
    repeats = args.repeats or (1 if args.quick else 9)
    batch, lr, n, hidden = 256, 1e-3, 2000 if args.quick else 10000, (128, 128)
    with seeded(0):
        x = pgm.datasets.toy("eight_gaussians").sample((n,))
        model = pgm.GAN(2, hidden=hidden)
    opts = {"num_steps": steps, "batch_size": batch, "lr": lr}
    model.fit(x, method="adversarial", seed=0, progress=False, **{**opts, "num_steps": 5})
    hand_written(model, x, num_steps=5, batch=batch, lr=lr, seed=0)  # warm up both
    facade, hand = [], []

    def run_facade():
        t = time.perf_counter()
        out = model.fit(x, method="adversarial", seed=0, progress=False, **opts)
        facade.append(time.perf_counter() - t)
        return out

    def run_hand():
        t = time.perf_counter()
        out = hand_written(model, x, num_steps=steps, batch=batch, lr=lr, seed=0)
        hand.append(time.perf_counter() - t)
        return out

    for i in range(repeats):  # alternating which runs first (ABBA), so drift cancels
        if i % 2 == 0:
            fit = run_facade()
            _, _, hand_g, hand_c = run_hand()
        else:
            _, _, hand_g, hand_c = run_hand()
            fit = run_facade()
    f, h = statistics.median(facade), statistics.median(hand)
    ratios = [a / b for a, b in zip(facade, hand)]
    r = statistics.median(ratios)
    print(f"facade: {1e3 * f / steps:.3f} ms/step (last losses: generator "
          f"{fit.losses[-1]:.4f}, critic {fit.info['critic_losses'][-1]:.4f}); hand-written "
          f"PyTorch loop: {1e3 * h / steps:.3f} ms/step (generator {hand_g:.4f}, critic "
          f"{hand_c:.4f}); {steps} steps, batch {batch}, N {n}, hidden "
          f"{'x'.join(map(str, hidden))}, {torch.get_num_threads()} threads")
    print(f"gan_step_time_ratio={r:.3f} ({min(ratios):.3f} .. {max(ratios):.3f} over "
          f"{len(ratios)} repeats; facade/hand-written, goal <= 1.2)")
    return r


if __name__ == "__main__":
    main()
