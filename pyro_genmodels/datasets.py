"""Built-in data. Nothing is downloaded: sets are generated from a seed or ship in the
package."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, List, Tuple, Union

import torch
from torch.distributions import (Categorical, Independent, MixtureSameFamily, MultivariateNormal,
                                 Normal)

from ._rng import seeded
from ._validation import positive_int

if TYPE_CHECKING:  # imported when used: matplotlib is slow to import
    from matplotlib.figure import Figure

#: a sample shape, as torch's ``Distribution.sample`` takes it
_Shape = Union[torch.Size, List[int], Tuple[int, ...]]


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


def clusters(n: int, *, k: int = 4, dim: int = 2, spread: float = 4.0, seed: int = 0,
             diagonal: bool = False, dtype: torch.dtype = torch.float32
             ) -> Tuple[torch.Tensor, torch.Tensor, MixtureSameFamily]:
    """``n`` points from a fixed mixture of ``k`` full-covariance Gaussian clusters.

    The mixture depends only on ``(k, dim, spread)`` (centres about ``spread`` apart,
    unequal weights, random correlations); ``seed`` chooses the points, so two seeds give
    a training and a held-out set. ``diagonal=True`` keeps only the variances
    (axis-aligned clusters: the truth of a ``covariance_type="diag"`` mixture).

    Returns:
        ``x`` ``(n, dim)``, the true component of each point ``(n,)`` (long), and the
        mixture as a ``torch.distributions.MixtureSameFamily`` (exact ``log_prob``).

    Example:
        >>> from pyro_genmodels import datasets
        >>> x, z, truth = datasets.clusters(300, k=3)
        >>> x.shape, z.shape, truth.log_prob(x).shape
        (torch.Size([300, 2]), torch.Size([300]), torch.Size([300]))
    """
    n, k, dim = positive_int(n, "n"), positive_int(k, "k"), positive_int(dim, "dim")
    g = torch.Generator().manual_seed(4321 + 97 * k + dim)
    f64 = torch.float64
    locs = spread * torch.randn(k, dim, generator=g, dtype=f64)
    a = torch.randn(k, dim, dim, generator=g, dtype=f64) / math.sqrt(dim)
    covs = 0.6 * a @ a.transpose(-1, -2) + 0.15 * torch.eye(dim, dtype=f64)
    if diagonal:
        covs = torch.diag_embed(covs.diagonal(dim1=-2, dim2=-1))
    weights = torch.softmax(0.5 * torch.randn(k, generator=g, dtype=f64), 0)
    comp = MultivariateNormal(locs.to(dtype), covariance_matrix=covs.to(dtype))
    truth = MixtureSameFamily(Categorical(probs=weights.to(dtype)), comp)
    with seeded(seed):
        z = torch.multinomial(weights, n, replacement=True)
        x = MultivariateNormal(locs[z], covariance_matrix=covs[z]).sample()
    return x.to(dtype), z, truth


def load_digits(*, binarize: bool = False, threshold: float = 8.0,
                dtype: torch.dtype = torch.float32) -> Tuple[torch.Tensor, torch.Tensor]:
    """The 1797 8x8 handwritten digits that ship with scikit-learn (no download).

    Args:
        binarize: return ``pixel > threshold`` as 0/1 (for Bernoulli likelihoods);
            otherwise the grey levels 0..16.
        threshold: the binarization threshold on the 0..16 scale.
        dtype: the dtype of ``x``.

    Returns:
        ``x`` ``(1797, 64)`` of ``dtype`` and the labels ``y`` ``(1797,)`` (long, 0..9).
    """
    from sklearn.datasets import load_digits as _load

    data = _load()
    x = torch.as_tensor(data.data, dtype=torch.float64)
    if binarize:
        x = (x > threshold).to(torch.float64)
    return x.to(dtype), torch.as_tensor(data.target, dtype=torch.long)


# ---------------------------------------------------------------------- 2-D toy sets
class _Toy(torch.distributions.Distribution):
    """Base of the 2-D toy distributions: exact ``log_prob`` and ``sample``."""

    arg_constraints: dict = {}
    support = torch.distributions.constraints.real_vector
    has_rsample = False

    def __init__(self) -> None:
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([2]),
                         validate_args=False)


class _IsotropicMixture(_Toy):
    r"""An equal mixture of isotropic Gaussians, sd ``scale``, centred on the rows of
    ``centers`` ``(K, 2)``: the truth that :func:`pyro_genmodels.metrics.mode_coverage`
    scores samples against (``mode_coverage(x, p.centers, p.scale)``)."""

    def __init__(self, centers: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.centers, self.scale = centers.float(), float(scale)
        k = centers.shape[0]
        self._mix = MixtureSameFamily(
            Categorical(logits=torch.zeros(k)),
            Independent(Normal(self.centers, torch.full((k, 2), self.scale)), 1))

    def sample(self, sample_shape: _Shape = torch.Size()) -> torch.Tensor:
        return self._mix.sample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self._mix.log_prob(value)


class EightGaussians(_IsotropicMixture):
    r"""An equal mixture of 8 isotropic Gaussians, sd ``scale``, centred on the circle of
    radius ``radius`` at angles :math:`2\pi k / 8`; ``centers`` ``(8, 2)``."""

    def __init__(self, radius: float = 2.0, scale: float = 0.2) -> None:
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        super().__init__(radius * torch.stack([angles.cos(), angles.sin()], -1), scale)
        self.radius = radius


class Grid25(_IsotropicMixture):
    r"""An equal mixture of 25 isotropic Gaussians, sd ``scale`` (0.05), centred on the
    5 x 5 grid :math:`(-4 + 2i, -4 + 2j)`, :math:`i, j \in \{0, \dots, 4\}`: the "2D grid"
    mode-collapse benchmark of VEEGAN (Srivastava et al. 2017) as PacGAN (Lin et al. 2018)
    runs it (these means and sd are its released configuration's); ``centers`` ``(25, 2)``,
    row ``5 i + j``."""

    def __init__(self, scale: float = 0.05) -> None:
        ticks = torch.arange(-4.0, 5.0, 2.0, dtype=torch.float64)
        gx, gy = torch.meshgrid(ticks, ticks, indexing="ij")
        super().__init__(torch.stack([gx.reshape(-1), gy.reshape(-1)], -1), scale)


class Checkerboard(_Toy):
    """Uniform on the 8 dark unit squares of a 4 x 4 board on [-2, 2]^2 (squares whose
    row + column index is even): density 1/8 there, 0 elsewhere (log_prob = -inf)."""

    def __init__(self) -> None:
        super().__init__()
        ij = torch.tensor([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0],
                          dtype=torch.float32)
        self.corners = ij - 2.0  # lower-left corners, (8, 2)

    def sample(self, sample_shape: _Shape = torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape)
        k = torch.randint(8, shape)
        return self.corners[k] + torch.rand(shape + (2,))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        cell = torch.floor(value + 2.0)
        inside = ((cell >= 0) & (cell <= 3)).all(-1) & ((cell.sum(-1) % 2) == 0)
        inside = inside & (value > -2).all(-1) & (value < 2).all(-1)
        return torch.where(inside, torch.full(inside.shape, -math.log(8.0), dtype=value.dtype),
                           torch.full(inside.shape, -math.inf, dtype=value.dtype))


class Banana(_Toy):
    r""":math:`x_1 \sim N(0, \sigma_1^2)`, :math:`x_2 \mid x_1 \sim N(b x_1^2 + c, \sigma_2^2)`:
    a curved density whose log_prob is the sum of the two normal log-densities."""

    def __init__(self, sigma1: float = 1.5, b: float = 0.5, c: float = -1.0,
                 sigma2: float = 0.5) -> None:
        super().__init__()
        self.sigma1, self.b, self.c, self.sigma2 = sigma1, b, c, sigma2

    def sample(self, sample_shape: _Shape = torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape)
        x1 = torch.randn(shape) * self.sigma1
        x2 = self.b * x1**2 + self.c + torch.randn(shape) * self.sigma2
        return torch.stack([x1, x2], -1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        x1, x2 = value[..., 0], value[..., 1]
        return (Normal(0.0, self.sigma1).log_prob(x1)
                + Normal(self.b * x1**2 + self.c, self.sigma2).log_prob(x2))


TOYS = {"eight_gaussians": EightGaussians, "grid25": Grid25, "checkerboard": Checkerboard,
        "banana": Banana}


def toy(name: str) -> torch.distributions.Distribution:
    """A 2-D distribution with exact ``sample`` and ``log_prob``, by name: one of
    ``"eight_gaussians"``, ``"grid25"`` (a 5 x 5 grid of Gaussians), ``"checkerboard"``,
    ``"banana"``. The Gaussian mixtures carry their modes, ``centers`` ``(K, 2)`` and
    ``scale``, for :func:`pyro_genmodels.metrics.mode_coverage`.

    Because the density is known, the true ``KL(p_data || p_phi)`` of any fit can be
    estimated (:func:`pyro_genmodels.divergences.cross_entropy`), not only the
    cross-entropy.

    Example:
        >>> import torch
        >>> from pyro_genmodels import datasets
        >>> p = datasets.toy("banana")
        >>> x = p.sample((5,))
        >>> x.shape, p.log_prob(x).shape
        (torch.Size([5, 2]), torch.Size([5]))
    """
    try:
        return TOYS[name]()
    except KeyError:
        raise ValueError(f"Unknown toy data set {name!r}; expected one of {sorted(TOYS)}") \
            from None


def load_names() -> List[str]:
    """A list of about 2,500 common US first names, lowercase ``a``-``z``, sorted, no
    duplicates (written for this package from common census first names; shipped in
    ``pyro_genmodels/data/names.txt``, no download). The standard small character-level
    data set for :mod:`pyro_genmodels.models.autoregressive`.

    Example:
        >>> from pyro_genmodels import datasets
        >>> names = datasets.load_names()
        >>> len(names) > 2000, names[:3], all(n.isalpha() and n.islower() for n in names)
        (True, ['aaden', 'aaliyah', 'aarav'], True)
    """
    from importlib import resources

    text = resources.files("pyro_genmodels").joinpath("data/names.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def digit_grid(images: torch.Tensor, cols: int) -> torch.Tensor:
    """8 x 8 digits ``(N, 64)`` tiled ``cols`` to a row into one image, with 1-pixel
    light grey gaps: ``(rows * 9 - 1, cols * 9 - 1)``."""
    images = images.detach().reshape(-1, 8, 8).cpu()
    rows = -(-images.shape[0] // cols)
    canvas = torch.full((rows * 9 - 1, cols * 9 - 1), 0.15)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        canvas[r * 9:r * 9 + 8, c * 9:c * 9 + 8] = im
    return canvas


def digits_figure(samples: torch.Tensor, originals: torch.Tensor,
                  reconstructions: torch.Tensor, *, cols: Tuple[int, int] = (8, 8),
                  figsize: Tuple[float, float] = (8, 4),
                  title: str = "samples (decoded means)") -> Figure:
    """A matplotlib figure with two panels: digit ``samples`` ``(N, 64)``, and each of
    ``originals`` next to its reconstruction (both ``(M, 64)``); ``cols`` digits per
    row in each panel. The caller saves and closes it."""
    import matplotlib.pyplot as plt

    pairs = torch.stack([originals.detach(), reconstructions.detach()], 1).reshape(-1, 64)
    fig, axes = plt.subplots(1, 2, figsize=figsize)
    for ax, images, n, name in zip(axes, (samples, pairs), cols,
                                   (title, "held-out digit | reconstruction")):
        ax.imshow(digit_grid(images, n), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(name)
        ax.axis("off")
    fig.tight_layout()
    return fig
