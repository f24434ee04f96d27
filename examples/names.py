"""Character-level models of first names: add-one n-grams, a GRU and a Transformer,
compared by held-out negative log-likelihood per character, then sampled with a prefix.

    python examples/names.py                       # GRU and Transformer, 800 steps each
    python examples/names.py --prefix ma --temperature 0.8 --top-k 10

Data: ``pgm.datasets.load_names()`` split 90/10 at random (``--seed``). The n-grams are
closed-form MAP fits (Dirichlet(2) prior = add-one smoothing); the networks are MAP fits
(Gaussian prior on the weights = weight decay, ``--prior-scale``). NLL per character
counts the end token as a character, so it is ``-sum log p(name) / sum (len + 1)``.
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

import pyro_genmodels as pgm
from pyro_genmodels.models.sequence import AutoregressiveModel, NGram


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-steps", type=int, default=800, help="training steps (networks)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--prior-scale", type=float, default=0.3,
                   help="sd of the Gaussian prior on the weights (MAP = weight decay)")
    p.add_argument("--attention-window", type=int, default=None,
                   help="Transformer: attend to the last W positions only (default: all)")
    p.add_argument("--num-samples", type=int, default=10)
    p.add_argument("--prefix", default="ma", help="prompt the samples continue")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(args):
    names = pgm.datasets.load_names()
    g = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(len(names), generator=g).tolist()
    cut = int(0.9 * len(names))
    train, test = [names[i] for i in perm[:cut]], [names[i] for i in perm[cut:]]
    chars = sum(len(s) + 1 for s in test)
    fits = {"bigram (add-one)": NGram(2, prior_concentration=2.0).fit(train, method="map"),
            "trigram (add-one)": NGram(3, prior_concentration=2.0).fit(train, method="map")}
    for network in ("gru", "transformer"):
        window = args.attention_window if network == "transformer" else None
        model = AutoregressiveModel(network=network, hidden_size=args.hidden_size,
                                    prior_scale=args.prior_scale, attention_window=window)
        fits[network] = model.fit(train, method="map", num_steps=args.num_steps,
                                  batch_size=args.batch_size, seed=args.seed,
                                  progress=False)
    table = pd.DataFrame({name: {"heldout_nll_per_char":
                                 -fit.log_prob(test).sum().item() / chars}
                          for name, fit in fits.items()}).T
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    samples = fits["gru"].sample(args.num_samples, prefix=args.prefix, seed=args.seed,
                                 temperature=args.temperature, top_k=args.top_k)
    print(f"GRU samples continuing {args.prefix!r}:", ", ".join(samples))
    return table, samples


if __name__ == "__main__":
    main(parse_args())
