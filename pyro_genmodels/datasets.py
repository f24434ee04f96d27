"""Built-in data. Nothing is downloaded: sets are generated from a seed or ship in the
package."""

from __future__ import annotations

from typing import Tuple

import torch
from torch.distributions import MultivariateNormal

from ._rng import seeded
from ._validation import positive_int


def correlated_gaussian(n: int, *, dim: int = 2, seed: int = 0,
                        dtype: torch.dtype = torch.float32
                        ) -> Tuple[torch.Tensor, MultivariateNormal]:
    """``n`` points from a fixed correlated Gaussian, and that Gaussian (known density).

    The true distribution depends only on ``dim`` (its location, scales and correlations
    are drawn once from a fixed generator); ``seed`` chooses the points. So
    ``correlated_gaussian(500, seed=0)`` and ``correlated_gaussian(500, seed=1)`` are a
    training and a held-out set from the same distribution.

    Returns:
        ``x`` of shape ``(n, dim)`` and the ``torch.distributions.MultivariateNormal``.
    """
    n, dim = positive_int(n, "n"), positive_int(dim, "dim")
    g = torch.Generator().manual_seed(1234 + dim)
    loc = 3 * torch.randn(dim, generator=g, dtype=torch.float64)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    cov = a @ a.T / dim + 0.25 * torch.eye(dim, dtype=torch.float64)
    truth = MultivariateNormal(loc.to(dtype), covariance_matrix=cov.to(dtype))
    with seeded(seed):
        x = truth.sample((n,))
    return x, truth
