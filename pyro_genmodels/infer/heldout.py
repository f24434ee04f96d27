"""Held-out bookkeeping for :func:`~pyro_genmodels.infer.loop.optimize`: the best held-out
loss, its step, and a copy of every player's parameters then, as the fit keeps them.

A player whose fit keeps a moving average of its weights rather than the last ones
(``Player.average``, a :class:`~pyro_genmodels.infer.averaging.WeightAverage`: the GAN's
generator, Diffusion, ScoreModel, the multilevel EnergyModel with ``ema``) is scored and
copied with the average in place (:meth:`Best.at_kept_weights`), and restored as that
average: early stopping keeps the best average, so the fit is the same seeded fit run
to ``best_step``.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import torch


class Best:
    """The best held-out loss so far, its step, the evaluations since (``bad``), the
    history of ``(step, loss)`` and a copy of every player's parameters then (what a
    checkpoint saves and restores)."""

    def __init__(self) -> None:
        self.loss, self.bad = math.inf, 0
        self.step: Optional[int] = None
        self.history: List[Tuple[int, float]] = []
        self.snapshot: Optional[List[List[torch.Tensor]]] = None

    @staticmethod
    @contextlib.contextmanager
    def at_kept_weights(players: Sequence[Any]) -> Iterator[None]:
        """Every player's weights as the fit keeps them (its moving average, where it
        keeps one) for the block, its own after."""
        with contextlib.ExitStack() as stack:
            for pl in players:
                if pl.average is not None:
                    stack.enter_context(pl.average.in_module())
            yield

    def record(self, step: int, value: float, players: Sequence[Any]) -> None:
        """The held-out loss ``value`` after ``step`` steps; the players' parameters are
        copied when it is the best finite one so far (the first of equals)."""
        self.history.append((step, value))
        if math.isfinite(value) and value < self.loss:
            # the copy first: a Ctrl-C while it is made leaves the previous best whole
            snapshot = [[p.detach().clone() for p in pl.resolve()] for pl in players]
            self.loss, self.step, self.bad, self.snapshot = value, step, 0, snapshot
        else:
            self.bad += 1

    def restore(self, players: Sequence[Any]) -> None:
        """The best parameters back into the players (a player with a moving average:
        into its module, and the average made that, as it was when copied)."""
        if self.snapshot is None:
            return
        with torch.no_grad():
            for pl, saved in zip(players, self.snapshot):
                for p, s in zip(pl.resolve(), saved):
                    p.copy_(s)
                if pl.average is not None:
                    pl.average.adopt()


__all__ = ["Best"]
