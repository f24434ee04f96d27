"""The neural families' weights: their isotropic Gaussian prior (the MAP's L2 weight decay)
and the cached list of them that the prior reads at every step."""

from __future__ import annotations

import math
from typing import Any, List

import torch


def gaussian_weight_log_prior(weights: List[torch.Tensor], scale: float) -> torch.Tensor:
    """``sum_w log N(w; 0, scale^2)`` over every element of the tensors ``weights`` (a
    non-empty list): the isotropic Gaussian prior whose MAP is L2 weight decay
    ``||w||^2 / (2 scale^2)``. One fused norm over the list, no per-tensor loop."""
    total = torch.stack(torch._foreach_norm(weights)).pow(2).sum()
    n = sum(p.numel() for p in weights)
    return -total / (2 * scale**2) - n * (0.5 * math.log(2 * math.pi) + math.log(scale))


def cached_parameters(owner: Any, module: torch.nn.Module) -> List[torch.Tensor]:
    """``list(module.parameters())``, cached on ``owner`` (as ``owner._weight_list``):
    walking the module tree at every step costs more than the weight prior itself.
    ``deepcopy`` maps the list onto the copy's parameters and ``.to()`` keeps their
    identities, so the cache stays valid."""
    if owner._weight_list is None:
        owner._weight_list = list(module.parameters())
    return owner._weight_list


