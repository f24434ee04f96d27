"""Oracles that more than one test file checks an example against."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

import pyro_genmodels as pgm


def add_one_ngram_nll_per_char(train, test, order: int) -> float:
    """Held-out NLL per character (the end token counted) of the add-one n-gram, from
    transition counts by a plain Python loop: p(v | ctx) = (n(ctx, v) + 1) / (n(ctx) + V)
    over V = |training characters| + 1 outcomes (the end token included)."""
    V = len(set("".join(train))) + 1
    counts = {}

    def transitions(s):
        seq = ["^"] * (order - 1) + list(s) + ["$"]
        return [(tuple(seq[i - order + 1:i]), seq[i]) for i in range(order - 1, len(seq))]

    for s in train:
        for ctx, v in transitions(s):
            counts.setdefault(ctx, Counter())[v] += 1
    total = 0.0
    for s in test:
        for ctx, v in transitions(s):
            row = counts.get(ctx, Counter())
            total -= math.log((row[v] + 1) / (sum(row.values()) + V))
    return total / sum(len(s) + 1 for s in test)


def check_names_table(table, seed: int = 0) -> None:
    """The names example's table: its n-gram rows are the add-one n-grams of its 90/10
    split (a permutation under ``seed``), recomputed by hand; every row is finite."""
    names = pgm.datasets.load_names()
    perm = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = int(0.9 * len(names))
    train, test = [names[i] for i in perm[:cut]], [names[i] for i in perm[cut:]]
    # the fits sum float32 log-probabilities of every held-out character: a relative
    # rounding error of about sqrt(chars) 2^-24 (a random walk of roundings); 4 of them
    rel = 4 * math.sqrt(sum(len(s) + 1 for s in test)) * 2.0 ** -24
    for order, row in ((2, "bigram (add-one)"), (3, "trigram (add-one)")):
        assert table.loc[row, "heldout_nll_per_char"] == pytest.approx(
            add_one_ngram_nll_per_char(train, test, order), rel=rel), row
    assert np.isfinite(table["heldout_nll_per_char"].to_numpy()).all()
