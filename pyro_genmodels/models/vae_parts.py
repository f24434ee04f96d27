"""The VAE's building blocks: the default MLPs, the N(0, I) code prior with its analytic
KL to a Gaussian encoder, the likelihoods' supports (data checked against them, and the
uniform noise of dequantization), and class-label encoding for conditional VAEs."""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """``Linear -> ReLU -> ... -> Linear`` through the layer widths ``sizes``."""
    layers: List[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class StandardNormal(dist.TorchDistribution):
    r"""The prior :math:`\mathcal N(0, I_L)` of the codes, event shape ``(L,)``: the same
    density as ``Normal(0, 1).expand(...).to_event(1)`` in a third of the operations
    (:math:`\log p(z) = -\|z\|^2 / 2 - (L / 2) \log 2\pi`), which matters in a loss
    evaluated thousands of times on small networks."""

    arg_constraints: Dict[str, Any] = {}
    support = dist.constraints.independent(dist.constraints.real, 1)
    has_rsample = True

    def __init__(self, latent_dim: int, batch_shape=torch.Size(), *, dtype=None, device=None):
        self._factory = {"dtype": dtype or torch.get_default_dtype(), "device": device}
        self._const = 0.5 * latent_dim * math.log(2 * math.pi)
        super().__init__(torch.Size(batch_shape), torch.Size([latent_dim]),
                         validate_args=False)

    def expand(self, batch_shape, _instance=None):
        """The same N(0, I) over ``batch_shape`` (Pyro expands the prior this way)."""
        return StandardNormal(self.event_shape[0], batch_shape, **self._factory)

    @property
    def mean(self):
        return torch.zeros(self.batch_shape + self.event_shape, **self._factory)

    @property
    def variance(self):
        return torch.ones(self.batch_shape + self.event_shape, **self._factory)

    def rsample(self, sample_shape=torch.Size()):
        return torch.randn(self._extended_shape(sample_shape), **self._factory)

    def log_prob(self, value):
        return value.pow(2).sum(-1).mul(-0.5) - self._const


@torch.distributions.kl.register_kl(torch.distributions.Independent, StandardNormal)
def _kl_normal_standard_normal(p, q: StandardNormal) -> torch.Tensor:
    r""":math:`\mathrm{KL}(\mathcal N(\mu, \operatorname{diag}\sigma^2) \,\|\,
    \mathcal N(0, I)) = \tfrac12 \sum_j (\mu_j^2 + \sigma_j^2 - 1) - \sum_j \log \sigma_j`,
    the analytic KL that ``TraceMeanField_ELBO`` uses for the encoder."""
    base = p.base_dist
    if not (isinstance(base, torch.distributions.Normal) and p.reinterpreted_batch_ndims == 1):
        raise NotImplementedError
    loc, scale = base.loc, base.scale
    return 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum(-1) - scale.log().sum(-1)


class _Generative(nn.Module):
    """The model's trainable parts: the decoder and (Gaussian, learned) the log of the
    observation scale."""

    log_scale: Optional[nn.Parameter]

    def __init__(self, decoder: nn.Module, log_scale: Optional[torch.Tensor]):
        super().__init__()
        self.decoder = decoder
        if log_scale is not None:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.log_scale = None


#: the bounded supports ``(low, high)`` of the continuous likelihoods (the Gaussian's is the
#: real line; the Bernoulli's and the categorical's are discrete)
BOUNDED: Dict[str, Tuple[float, float]] = {"continuous_bernoulli": (0.0, 1.0)}


def check_support(likelihood: str, x: torch.Tensor, name: str,
                  num_categories: Optional[int]) -> None:
    """Refuse values of ``x`` ``(N, D)`` outside the support of ``likelihood``, naming the
    first one (its value, row and column) and what the likelihood expects."""
    if likelihood == "bernoulli":
        bad, want = (x != 0) & (x != 1), "values in {0, 1} (binarize first, or use " \
            "likelihood='continuous_bernoulli' for values in [0, 1])"
    elif likelihood in BOUNDED:
        low, high = BOUNDED[likelihood]
        bad, want = (x < low) | (x > high), f"values in [{low:g}, {high:g}] (rescale first)"
    elif likelihood == "categorical":
        k = num_categories
        assert k is not None  # set with likelihood="categorical"
        bad = (x < 0) | (x > k - 1) | (x != x.round())
        want = f"integer categories 0..{k - 1} (num_categories={k})"
    else:  # real-valued
        return
    if bad.any():
        row, col = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"likelihood={likelihood!r} expects {want}; {name} has "
                         f"{x[row, col].item()} at row {row}, column {col}")


def check_dequantizable(likelihood: str, x: torch.Tensor, bin_width: float) -> None:
    """Refuse rows ``x`` (already in the likelihood's support) that uniform dequantization,
    ``x + bin_width * u`` with ``u ~ U[0, 1)`` as ``Fit.bits_per_dim`` draws it, could
    push past the upper end of a bounded support. The largest such value is computed as
    the noise is added: in ``x``'s dtype, with ``u`` the largest float below 1 (so a grid
    ``k / 17`` with ``bin_width=1/17`` passes in float32 as in float64)."""
    if likelihood not in BOUNDED or x.numel() == 0:
        return
    low, high = BOUNDED[likelihood]
    top = x.max()
    below_one = torch.tensor(1 - torch.finfo(x.dtype).eps / 2, dtype=x.dtype, device=x.device)
    if top + bin_width * below_one > high:
        row, col = divmod(int(x.argmax()), x.shape[1])
        raise ValueError(
            f"bits_per_dim dequantizes: it adds uniform noise U[0, bin_width) to each value, "
            f"and likelihood={likelihood!r} has support [{low:g}, {high:g}]; x's largest "
            f"value is {top.item():g} (row {row}, column {col}) and bin_width={bin_width:g}, "
            f"so values would reach {top.item() + bin_width:g}. Put the grid inside "
            f"[{low:g}, {high:g}) with room for one bin (largest value + bin_width <= "
            f"{high:g}), e.g. grey levels 0..16 as x / 17 with bin_width=1/17; or pass "
            f"dequantize=False for rows that are already dequantized")


def _labels(c: Any, k: int) -> torch.Tensor:
    """Class labels as a 1-D long tensor in 0..k-1 (from ints, arrays or one-hot rows)."""
    if isinstance(c, bool) or isinstance(c, (str, bytes)):
        raise TypeError(f"c must be integer class labels, got {type(c).__name__}")
    if isinstance(c, numbers.Integral):
        t = torch.tensor([int(c)])
    else:
        if isinstance(c, torch.Tensor):
            t = c.detach().cpu()
        else:
            try:
                arr = np.asarray(c)
            except Exception as e:
                raise TypeError(f"c could not be read as class labels: {e}") from None
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"c must be integer class labels, got dtype {arr.dtype}")
            # a copy only where needed: torch warns about a read-only array (pandas')
            t = torch.from_numpy(np.require(arr, requirements=("C", "W")))
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"c must be integer class labels, got dtype {t.dtype}")
        if t.dim() == 2 and t.shape[1] == k:  # one-hot (k = 1 included: a fit stores it so)
            onehot = (t == 0) | (t == 1)
            if not (onehot.all() and (t.sum(1) == 1).all()):
                raise ValueError(f"c of shape {tuple(t.shape)} must be one-hot rows (or pass "
                                 f"integer labels of shape (N,))")
            t = t.argmax(1)
        if t.dim() == 0:
            t = t.reshape(1)
        if t.dim() != 1:
            raise ValueError(f"c must be integer class labels of shape (N,), got shape "
                             f"{tuple(t.shape)}")
        if t.numel() == 0:
            raise ValueError("c is empty: expected one label per data row")
        if t.is_floating_point():
            bad = ~torch.isfinite(t) | (t != t.round())
            if bad.any():
                i = int(bad.nonzero()[0])
                raise ValueError(f"c must be finite integer class labels; found "
                                 f"{t[i].item()} at position {i}")
    if t.dtype in (torch.uint16, torch.uint32, torch.uint64):  # torch compares none of these
        t = t.double()
    out = (t < 0) | (t >= k)  # before the cast: 1e20 would come out as -2**63
    if out.any():
        i = int(out.nonzero()[0])
        v = t[i].item()
        raise ValueError(f"c must be class labels in 0..{k - 1} (num_classes={k}); found "
                         f"{int(v) if abs(v) < 2**53 else v} at position {i}")
    return t.long()


def one_hot_labels(c: Any, k: int, num_rows: int, *, rows: str = "data rows",
                   device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> torch.Tensor:
    """Labels ``c`` (read by :func:`_labels`; one label is shared by all rows) as one-hot
    rows ``(num_rows, k)`` of ``dtype``. ``rows`` says what the ``num_rows`` rows are
    (data rows, draws) in the message of a wrong count."""
    labels = _labels(c, k)
    if labels.numel() == 1 and num_rows > 1:
        labels = labels.expand(num_rows)
    if labels.shape[0] != num_rows:
        raise ValueError(f"c has {labels.shape[0]} labels but there are {num_rows} {rows}: "
                         f"expected one label per row (or a single int)")
    return F.one_hot(labels, k).to(device=device, dtype=dtype or torch.get_default_dtype())
