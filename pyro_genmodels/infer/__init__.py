"""Inference shared by every model family: the one optimization loop, its objectives,
and one engine object per method.

Layers (each imports only those above it): :mod:`.loop` (minibatches, optimizer,
guards, validation, checkpoints via :mod:`.checkpoint`) -> :mod:`.objectives` (Pyro
ELBOs as loop objectives) -> :mod:`.engines` (``mle``, ``map``, ``vi``, ``nuts``,
``hmc``, ``chees``; :mod:`.mcmc` wraps Pyro's MCMC). Batched MCMC over many chains is
in :mod:`.samplers` and :mod:`.chees` (ChEES-HMC, which ``chees`` runs on a family's
:mod:`.potential`), annealed importance sampling in :mod:`.ais`. None of them imports a
model family.
"""

from .engines import (ENGINES, ChEESEngine, ChEESOptions, Data, Engine, HMCOptions, MCMCEngine, MCMCOptions,
                      NUTSOptions, PointEngine, PointOptions, VIEngine, VIOptions)
from .loop import (Batch, FitResult, LoopOptions, Minibatches, NonFiniteLossError, Player,
                   optimize)
from .objectives import ELBOLoss, FlatPriors

__all__ = ["ENGINES", "Batch", "ChEESEngine", "ChEESOptions", "Data", "ELBOLoss", "Engine", "FitResult", "FlatPriors",
           "HMCOptions", "LoopOptions", "MCMCEngine", "MCMCOptions", "Minibatches",
           "NUTSOptions", "NonFiniteLossError", "Player", "PointEngine", "PointOptions",
           "VIEngine", "VIOptions", "optimize"]
