r"""Sample-based scores: they need only draws of a model, so they score every family, a GAN
with no density as well as a flow or a VAE, on the same scale.

=======================  =================================================  ============
function                 what it estimates                                  best value
=======================  =================================================  ============
:func:`mmd`              squared maximum mean discrepancy, Gaussian kernel  0: P = Q
:func:`energy_distance`  :math:`2E|X-Y| - E|X-X'| - E|Y-Y'|`                0: P = Q
:func:`c2st`             held-out accuracy of a classifier told x from y    0.5: P = Q
:func:`mode_coverage`    modes captured, share of high-quality samples,     all modes,
                         reverse KL of the mode histogram (VEEGAN, PacGAN)  KL 0
=======================  =================================================  ============

:func:`mmd` and :func:`energy_distance` are the unbiased two-sample U-statistics of
Gretton et al. (2012) for the kernels :math:`k(x, y) = \sum_b \exp(-\|x-y\|^2 / 2 s_b^2)`
and :math:`k(x, y) = -\|x - y\|` (the energy distance is the MMD of that kernel,
Sejdinovic et al. 2013):

.. math::

    \widehat{\mathrm{MMD}}^2_u = \frac{1}{m(m-1)}\sum_{i \ne j} k(x_i, x_j)
      + \frac{1}{n(n-1)}\sum_{i \ne j} k(y_i, y_j) - \frac{2}{mn}\sum_{i,j} k(x_i, y_j).

Its standard error is the square root of the exact Hoeffding decomposition of the
variance of a two-sample U-statistic (Hoeffding 1948; Sutherland et al. 2017 write it out
for paired samples of equal size),

.. math::

    \mathrm{Var} = \frac{4\,\mathrm{Var}\,g_x(X)}{m} + \frac{4\,\mathrm{Var}\,g_y(Y)}{n}
      + \frac{2\,E\tilde k_{xx}^2}{m(m-1)} + \frac{2\,E\tilde k_{yy}^2}{n(n-1)}
      + \frac{4\,E\tilde k_{xy}^2}{mn},

with :math:`g_x(x) = E\,k(x, X') - E\,k(x, Y)` (and :math:`g_y` alike) and
:math:`\tilde k` the doubly centred kernels. Every moment is estimated without bias
from the kernel matrices' row sums, e.g.
:math:`E[(E_{X'} k(X, X'))^2] \approx \sum_i (S_i^2 - Q_i) / (m(m-1)(m-2))` with
:math:`S_i, Q_i` the sums of :math:`k(x_i, x_j)` and :math:`k(x_i, x_j)^2` over
:math:`j \ne i`. The first two terms dominate when P differs from Q; when P = Q they
vanish, the last three (the degenerate part) give the right :math:`O(1/n^2)` scale, and
the noisy estimate of the first two is clipped at 0, so the standard error is then
conservative (1.3 to 1.5 times the true one in the tests) and
:math:`|\widehat{\mathrm{MMD}}^2_u| < 4\,\mathrm{se}` is a safe check either way. The
kernel matrices are never held whole: rows are processed in chunks of at most
:data:`CHUNK_ELEMENTS` entries, in float64.

Distances come from :func:`torch.cdist`, the classifier and the feature scaling of
:func:`c2st` from scikit-learn. geomloss (``SamplesLoss("gaussian")``, ``"energy"``) is the
tests' oracle rather than the engine: it returns the biased V-statistics
(``KernelEstimate.biased`` here, halved) and no standard error, for which the row sums
above are needed anyway.

References:
    Gretton, Borgwardt, Rasch, Schölkopf & Smola (2012), *A kernel two-sample test*, JMLR.
    Sutherland et al. (2017), *Generative models and model criticism via optimized MMD*.
    Székely & Rizzo (2013), *Energy statistics*; Sejdinovic et al. (2013), Ann. Stat.
    Lopez-Paz & Oquab (2017), *Revisiting classifier two-sample tests*, ICLR.
    Srivastava et al. (2017), *VEEGAN*, NeurIPS; Lin et al. (2018), *PacGAN*, NeurIPS.

Example:
    >>> import torch
    >>> from pyro_genmodels import metrics
    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.randn(400, 2, generator=g), torch.randn(400, 2, generator=g)
    >>> same = metrics.mmd(x, y)
    >>> abs(same.estimate) < 4 * same.stderr
    True
    >>> shifted = metrics.mmd(x, y + 1.0)
    >>> shifted.estimate > 4 * shifted.stderr
    True
    >>> metrics.c2st(x, y + 3.0).estimate > 0.9
    True
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import torch

from ._rng import check_seed
from ._validation import as_data, positive_float, positive_int
from .mc import MCEstimate

__all__ = ["C2STEstimate", "KernelEstimate", "ModeCoverage", "c2st", "energy_distance",
           "median_bandwidth", "mmd", "mode_coverage"]

#: Most kernel-matrix entries held at once (rows are processed in chunks of this size).
CHUNK_ELEMENTS = 2**22
#: The fewest rows of each sample that :func:`mmd`, :func:`energy_distance` and
#: :func:`c2st` take (the U-statistics' variance has a term over four distinct rows).
MIN_ROWS = 4


# ---------------------------------------------------------------------- results
@dataclasses.dataclass(frozen=True, repr=False)
class KernelEstimate(MCEstimate):
    """An unbiased two-sample U-statistic with its standard error; ``num_samples`` is
    ``m + n``. ``biased`` is the V-statistic (diagonal terms kept, what geomloss reports
    times two); ``bandwidths`` the Gaussian kernel's (empty for the energy distance)."""

    biased: float = math.nan
    bandwidths: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True, repr=False)
class C2STEstimate(MCEstimate):
    """Held-out accuracy of a classifier two-sample test; ``stderr`` is the binomial
    :math:`\\sqrt{a(1-a)/n_{test}}`, ``num_samples`` the number of test points and
    ``p_value`` the exact one-sided binomial p-value of H0: accuracy = 0.5."""

    p_value: float = math.nan
    classifier: str = ""


@dataclasses.dataclass(frozen=True)
class ModeCoverage:
    """What :func:`mode_coverage` found (see there for the definitions).

    Attributes:
        modes_covered: modes with at least ``min_count`` high-quality samples.
        num_modes: K, the number of centres.
        high_quality: share of the samples within ``threshold`` scales of their nearest
            centre, in [0, 1]; ``high_quality_se`` its binomial standard error.
        reverse_kl: KL(high-quality samples' mode histogram || data's mode weights);
            ``nan`` when no sample is of high quality.
        counts: high-quality samples per mode, ``(K,)`` ints.
        num_samples: N, all samples.
    """

    modes_covered: int
    num_modes: int
    high_quality: float
    high_quality_se: float
    reverse_kl: float
    counts: tuple[int, ...]
    num_samples: int


# ---------------------------------------------------------------------- validation
def _rows(data: Any, name: str, min_rows: int = 1) -> torch.Tensor:
    t = as_data(data, name=name, dtype=torch.float64)
    if t.shape[0] < min_rows:
        raise ValueError(f"{name} has {t.shape[0]} row(s): expected at least {min_rows}")
    return t


def _pair(x: Any, y: Any, min_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _rows(x, "x", min_rows), _rows(y, "y", min_rows)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of columns: x has "
                         f"{x.shape[1]}, y has {y.shape[1]}")
    return x, y.to(x.device)


def _bandwidths(bandwidth: Any) -> tuple[float, ...]:
    if isinstance(bandwidth, numbers.Real):
        return (positive_float(bandwidth, "bandwidth"),)
    if isinstance(bandwidth, (str, bytes)) or not isinstance(bandwidth, (Sequence, np.ndarray,
                                                                         torch.Tensor)):
        raise TypeError(f"Expected bandwidth to be None, a positive number or a sequence "
                        f"of them, but got {type(bandwidth).__name__}")
    out = tuple(positive_float(float(b), "bandwidth[i]") for b in bandwidth)
    if not out:
        raise ValueError("bandwidth is an empty sequence: expected at least one bandwidth")
    return out


# ---------------------------------------------------------------------- U-statistics
Kernel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _gaussian_kernel(bandwidths: tuple[float, ...]) -> Kernel:
    coefs = [1.0 / (2.0 * s * s) for s in bandwidths]

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(a, b).square()
        return cast(torch.Tensor, sum(torch.exp(-c * d2) for c in coefs))  # >= 1 bandwidth
    return k


def _distance_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return -torch.cdist(a, b)


def _row_sums(a: torch.Tensor, b: torch.Tensor, kernel: Kernel, same: bool):
    """Row sums of K = kernel(a, b) and of K**2 ``(len(a),)``, and the same over columns
    ``(len(b),)``; with ``same`` (b is a) the diagonal is left out."""
    step = max(1, CHUNK_ELEMENTS // b.shape[0])
    rows, rows2 = [], []
    cols = torch.zeros(b.shape[0], dtype=b.dtype, device=b.device)
    cols2 = torch.zeros_like(cols)
    for i in range(0, a.shape[0], step):
        K = kernel(a[i:i + step], b)
        if same:
            r = torch.arange(K.shape[0], device=K.device)
            K[r, r + i] = 0.0
        K2 = K * K
        rows.append(K.sum(1))
        rows2.append(K2.sum(1))
        cols += K.sum(0)
        cols2 += K2.sum(0)
    return torch.cat(rows), torch.cat(rows2), cols, cols2


def _two_sample(x: torch.Tensor, y: torch.Tensor, kernel: Kernel, k0: float,
                **extra: Any) -> KernelEstimate:
    """The U-statistic E k(X,X') + E k(Y,Y') - 2 E k(X,Y), its Hoeffding standard error
    (module docstring) and its V-statistic; ``k0`` = k(x, x). Every moment below is an
    unbiased U-statistic over distinct indices, products of means included."""
    m, n = x.shape[0], y.shape[0]
    sx, qx, _, _ = _row_sums(x, x, kernel, True)
    sy, qy, _, _ = _row_sums(y, y, kernel, True)
    r, qr, c, qc = _row_sums(x, y, kernel, False)
    tx, ty, t = sx.sum(), sy.sum(), r.sum()
    txx, tyy, txy = tx / (m * (m - 1)), ty / (n * (n - 1)), t / (m * n)
    estimate = (txx + tyy - 2 * txy).item()
    mu2x = (sx * sx - qx).sum() / (m * (m - 1) * (m - 2))   # E[(E_X' k(X, X'))^2]
    mu2y = (sy * sy - qy).sum() / (n * (n - 1) * (n - 2))
    nu2x = (r * r - qr).sum() / (m * n * (n - 1))            # E[(E_Y k(X, Y))^2]
    nu2y = (c * c - qc).sum() / (n * m * (m - 1))            # E[(E_X k(X, Y))^2]
    txx2 = _square_of_mean(tx, sx, qx, m)                    # theta_xx^2
    tyy2 = _square_of_mean(ty, sy, qy, n)
    txy2 = (t * t - (r * r).sum() - (c * c).sum() + qr.sum()) / (m * (m - 1) * n * (n - 1))
    txx_xy = (tx * t - 2 * (sx * r).sum()) / (m * (m - 1) * (m - 2) * n)
    tyy_xy = (ty * t - 2 * (sy * c).sum()) / (n * (n - 1) * (n - 2) * m)
    var_gx = mu2x - 2 * (sx * r).sum() / (m * (m - 1) * n) + nu2x - (txx2 - 2 * txx_xy + txy2)
    var_gy = mu2y - 2 * (sy * c).sum() / (n * (n - 1) * m) + nu2y - (tyy2 - 2 * tyy_xy + txy2)
    zxx = qx.sum() / (m * (m - 1)) - 2 * mu2x + txx2         # E[centred k(X, X')^2]
    zyy = qy.sum() / (n * (n - 1)) - 2 * mu2y + tyy2
    zxy = qr.sum() / (m * n) - nu2x - nu2y + txy2
    first = (4 * var_gx / m + 4 * var_gy / n).item()
    degenerate = (2 * zxx / (m * (m - 1)) + 2 * zyy / (n * (n - 1)) + 4 * zxy / (m * n)).item()
    var = max(degenerate, 0.0) + max(first, 0.0)
    biased = estimate + (k0 - txx.item()) / m + (k0 - tyy.item()) / n
    return KernelEstimate(estimate, math.sqrt(var), m + n, biased=biased, **extra)


def _square_of_mean(total: torch.Tensor, s: torch.Tensor, q: torch.Tensor, m: int):
    """Unbiased (E k(X1, X2))^2 = E[k(X1, X2) k(X3, X4)] over four distinct rows, from the
    off-diagonal total, row sums ``s`` and row sums of squares ``q`` of a symmetric K."""
    return (total * total - 4 * (s * s - q).sum() - 2 * q.sum()) / (m * (m - 1) * (m - 2) * (m - 3))


# ---------------------------------------------------------------------- public API
def median_bandwidth(x: Any, *, max_points: int = 1000, seed: int = 0) -> float:
    """The median heuristic: the median Euclidean distance between distinct rows of ``x``
    ``(N, D)`` (over ``max_points`` rows drawn under ``seed`` when N is larger; zero
    distances from repeated rows are skipped; 1.0 if all rows are equal)."""
    x = _rows(x, "x", 2)
    max_points = positive_int(max_points, "max_points")
    if x.shape[0] > max_points:
        g = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(x.shape[0], generator=g)[:max_points].to(x.device)]
    d = torch.pdist(x)
    d = d[d > 0]
    return float(d.median()) if d.numel() else 1.0


def mmd(x: Any, y: Any, *, bandwidth: None | float | Sequence[float] = None
        ) -> KernelEstimate:
    r"""Unbiased squared MMD between samples ``x`` ``(m, D)`` and ``y`` ``(n, D)`` with a
    Gaussian kernel, and its standard error.

    .. math::

        \mathrm{MMD}^2(P, Q) = E\,k(X, X') + E\,k(Y, Y') - 2\,E\,k(X, Y), \qquad
        k(x, y) = \sum_b \exp\!\left(-\frac{\|x - y\|^2}{2 s_b^2}\right),

    zero exactly when P = Q (the Gaussian kernel is characteristic). The U-statistic
    can be slightly negative. See the module docstring for the standard error (it
    treats the bandwidth as fixed, also when the median heuristic chose it).

    Args:
        x, y: tensors or array-likes, at least 4 rows each, same number of columns.
        bandwidth: ``None`` (default) for the median heuristic on the pooled sample
            (:func:`median_bandwidth` of ``x`` and ``y`` stacked), a positive number
            s, or a sequence of them (the kernel is then the sum over them).

    Returns:
        :class:`KernelEstimate`; ``float(result)`` is the estimate.
    """
    x, y = _pair(x, y, MIN_ROWS)
    bandwidths: tuple[float, ...]
    if bandwidth is None:
        bandwidths = (median_bandwidth(torch.cat([x, y])),)
    else:
        bandwidths = _bandwidths(bandwidth)
    return _two_sample(x, y, _gaussian_kernel(bandwidths), float(len(bandwidths)),
                       bandwidths=bandwidths)


def energy_distance(x: Any, y: Any) -> KernelEstimate:
    r"""Unbiased energy distance between samples ``x`` ``(m, D)`` and ``y`` ``(n, D)``:

    .. math::

        \mathcal E(P, Q) = 2\,E\|X - Y\| - E\|X - X'\| - E\|Y - Y'\| \ge 0,

    zero exactly when P = Q; the MMD of the kernel :math:`-\|x - y\|`, estimated by the
    same U-statistic and with the same standard error (module docstring). No bandwidth;
    it scales like the data (multiply the data by c and it is multiplied by c).
    """
    x, y = _pair(x, y, MIN_ROWS)
    return _two_sample(x, y, _distance_kernel, 0.0)


def c2st(x: Any, y: Any, *, classifier: Any = None, test_fraction: float = 0.5,
         seed: int | None = 0) -> C2STEstimate:
    r"""Classifier two-sample test (Lopez-Paz & Oquab 2017): the held-out accuracy of a
    classifier trained to tell rows of ``x`` from rows of ``y``.

    The larger set is subsampled to the size n of the smaller (balanced classes), each is
    shuffled under ``seed`` and split, ``test_fraction`` of each class held out; features
    are standardized with the training split's mean and scale, the classifier is fit on
    the training split and scored on the test split. Accuracy 0.5 means the two samples
    are indistinguishable to it, 1.0 that they are fully separated. Under H0 (P = Q)
    each test prediction is right with probability 1/2 independently, so the number right
    is exactly Binomial(n_test, 1/2): that gives ``p_value``.

    The default classifier is k-nearest neighbours with k the odd integer nearest
    :math:`\sqrt{n_{train}}`: a consistent classifier (k grows, k/n shrinks), so any
    difference between P and Q shows up given enough data, including differences a
    linear (logistic) classifier cannot see, such as missing modes or a wrong spread;
    it is deterministic (no random initialization, unlike an MLP) and fast for a few
    thousand points in low dimension. In many dimensions it cannot see a sample that is
    too spread: its rows lie nearer the other sample's tight cloud than each other, so
    all are called the other's. 500 rows of N(0, s^2 I) against N(0, I) in 64 columns
    score 0.5 at s = 3 and at s = 100 (``mmd`` sees both); with
    ``classifier=RandomForestClassifier()`` both score 1.0. Pass such a classifier for
    data of more than a few columns.

    Args:
        x, y: tensors or array-likes ``(m, D)``, ``(n, D)``, at least 4 rows each.
        classifier: any scikit-learn classifier (cloned, never modified); its
            ``random_state``, if unset, is set to ``seed``.
        test_fraction: share of each class held out, in (0, 1).
        seed: the subsampling and the split (the caller's RNG is untouched).

    Returns:
        :class:`C2STEstimate`: ``estimate`` the accuracy, ``stderr`` its binomial
        standard error :math:`\sqrt{a(1 - a)/n_{test}}`, ``p_value``.
    """
    from scipy.stats import binomtest
    from sklearn.base import clone, is_classifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _pair(x, y, MIN_ROWS)
    test_fraction = float(test_fraction)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"Expected 0 < test_fraction < 1, but got {test_fraction!r}")
    if classifier is not None and not (hasattr(classifier, "get_params")
                                       and is_classifier(classifier)):
        raise TypeError(f"Expected classifier to be None or a scikit-learn classifier "
                        f"instance (e.g. KNeighborsClassifier(), LogisticRegression()), but "
                        f"got {classifier!r} ({type(classifier).__name__})")
    rng = np.random.default_rng(check_seed(seed))
    n = min(x.shape[0], y.shape[0])
    n_test = round(n * test_fraction)
    if not 1 <= n_test <= n - 2:
        raise ValueError(f"test_fraction={test_fraction} of n={n} rows per class leaves "
                         f"{n_test} test and {n - n_test} training rows: expected at "
                         f"least 1 and 2")
    xa = x.cpu().numpy()[rng.permutation(x.shape[0])[:n]]
    ya = y.cpu().numpy()[rng.permutation(y.shape[0])[:n]]
    features_train = np.concatenate([xa[n_test:], ya[n_test:]])
    features_test = np.concatenate([xa[:n_test], ya[:n_test]])
    labels_train = np.repeat([0, 1], n - n_test)
    labels_test = np.repeat([0, 1], n_test)
    if classifier is None:
        k = int(math.sqrt(features_train.shape[0])) // 2 * 2 + 1
        clf = KNeighborsClassifier(n_neighbors=min(k, features_train.shape[0]))
    else:
        clf = clone(classifier)
        if clf.get_params().get("random_state", 0) is None:
            clf.set_params(random_state=seed)
    model = make_pipeline(StandardScaler(), clf).fit(features_train, labels_train)
    correct = int((model.predict(features_test) == labels_test).sum())
    total = 2 * n_test
    acc = correct / total
    p = float(binomtest(correct, total, 0.5, alternative="greater").pvalue)
    return C2STEstimate(acc, math.sqrt(acc * (1 - acc) / total), total, p_value=p,
                        classifier=type(clf).__name__)


def mode_coverage(samples: Any, centers: Any, scale: Any, *, threshold: float = 3.0,
                  min_count: int = 1, weights: Any = None) -> ModeCoverage:
    r"""Mode collapse on a mixture with known centres, as in VEEGAN (Srivastava et al.
    2017) and PacGAN (Lin et al. 2018).

    Each sample :math:`x_i` is assigned to its nearest centre in units of that mode's
    scale, :math:`k_i = \arg\min_k \|x_i - c_k\| / s_k`, and is of *high quality* when
    :math:`\min_k \|x_i - c_k\| / s_k < t` (``threshold``: 3 standard deviations for the
    2-D ring and grid in VEEGAN, and in PacGAN's released metric code). Then

    - ``counts[k]``: the high-quality samples assigned to mode k;
    - ``modes_covered``: modes with ``counts[k] >= min_count`` (``min_count=1``: "the
      number of mixture components whose mean is nearest to at least one high quality
      sample", VEEGAN; PacGAN's released code counts the nonzero entries likewise);
    - ``high_quality``: :math:`\frac1N \sum_k` ``counts[k]``, the share of all N samples;
    - ``reverse_kl``: :math:`\sum_k \hat p_k \log(\hat p_k / w_k)` with
      :math:`\hat p = \text{counts} / \sum \text{counts}` and w the data's mode
      probabilities (uniform by default), PacGAN's "reverse KL" (its released code
      logs the Jensen-Shannon divergence of the same histograms too): 0 when the high-quality
      samples spread over the modes as the data do, :math:`\log K` when they all sit in
      one of K equal modes.

    The papers draw 2500 samples and average over runs; their ring is 8 Gaussians of sd
    0.01 on the unit circle (PacGAN), their grid the 25 Gaussians of sd 0.05 of
    ``datasets.toy("grid25")``.

    Args:
        samples: ``(N, D)``.
        centers: the modes' centres ``(K, D)``.
        scale: each mode's standard deviation, a positive number or ``(K,)``.
        threshold: t, in scales.
        min_count: samples a mode needs to count as covered.
        weights: the data's mode probabilities ``(K,)`` (normalized here); default
            uniform.

    Example:
        >>> import torch
        >>> from pyro_genmodels import datasets, metrics
        >>> grid = datasets.toy("grid25")
        >>> g = torch.Generator().manual_seed(0)
        >>> one_mode = grid.centers[:1] + 0.05 * torch.randn(100, 2, generator=g)
        >>> r = metrics.mode_coverage(one_mode, grid.centers, grid.scale)
        >>> r.modes_covered, round(r.reverse_kl, 4) == round(math.log(25), 4)
        (1, True)
    """
    x = _rows(samples, "samples")
    c = _rows(centers, "centers").to(x.device)
    if c.shape[1] != x.shape[1]:
        raise ValueError(f"samples and centers must have the same number of columns: "
                         f"samples has {x.shape[1]}, centers has {c.shape[1]}")
    k = c.shape[0]
    s = _per_mode(scale, k, "scale").to(x.device)
    threshold = positive_float(threshold, "threshold")
    min_count = positive_int(min_count, "min_count")
    w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else \
        _per_mode(weights, k, "weights", allow_zero=True)
    w = w / w.sum()
    step = max(1, CHUNK_ELEMENTS // k)
    counts = torch.zeros(k, dtype=torch.long, device=x.device)
    for i in range(0, x.shape[0], step):
        dist, idx = (torch.cdist(x[i:i + step], c) / s).min(1)
        counts += torch.bincount(idx[dist < threshold], minlength=k)
    counts = counts.cpu()
    good = int(counts.sum())
    n = x.shape[0]
    hq = good / n
    if good:
        p = counts.double() / good
        kl = float(torch.where(p > 0, p * (p.log() - w.log()), torch.zeros_like(p)).sum())
    else:
        kl = math.nan
    return ModeCoverage(modes_covered=int((counts >= min_count).sum()), num_modes=k,
                        high_quality=hq, high_quality_se=math.sqrt(hq * (1 - hq) / n),
                        reverse_kl=kl, counts=tuple(int(v) for v in counts), num_samples=n)


def _per_mode(value: Any, k: int, name: str, allow_zero: bool = False) -> torch.Tensor:
    """A positive number or ``(K,)`` values as a float64 ``(K,)`` tensor (``weights``:
    non-negative, not all zero)."""
    try:
        t = torch.as_tensor(np.asarray(value, dtype=np.float64)).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"Expected {name} to be a number or {k} numbers, but got "
                        f"{type(value).__name__}") from None
    if t.numel() == 1:
        t = t.expand(k).clone()
    if t.numel() != k:
        raise ValueError(f"{name} must have one value per mode: expected {k}, got {t.numel()}")
    ok = torch.isfinite(t) & ((t >= 0) if allow_zero else (t > 0))
    if not ok.all() or (allow_zero and not (t > 0).any()):
        want = "non-negative and not all zero" if allow_zero else "positive"
        raise ValueError(f"{name} must be finite and {want}, got {t.tolist()}")
    return t
