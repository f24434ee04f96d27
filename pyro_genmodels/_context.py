"""A conditional family's context read standardized, as its x is (Flow, GAN, Diffusion,
ScoreModel with ``standardize=True``).

Its networks read ``(c - m_c) / s_c``, m_c and s_c the column means and sds of the
training rows' ``c`` (set when the fit starts, saved with the model; a constant column
gets sd 1), because a context in raw units trains badly: a hunt measured wine's raw
columns (proline about 750) costing a ScoreModel 16 nats per held-out row, a Flow 2,
and a GAN's energy distance 18-25 against 0.06-0.35 standardized. ``c`` conditions, so
the density of x needs no Jacobian for it; ``fit(x, c=a c + b)`` is the fit of ``c``.
The VAE's and the sequence models' ``c`` are class labels, not standardized.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple, TypeVar, cast

import torch

from ._columns import named
from ._moments import MOMENT_BLOCK_ELEMENTS, MOMENT_BLOCK_ROWS, column_moments

_OptionalTensor = TypeVar("_OptionalTensor", bound=Optional[torch.Tensor])


class StandardizedContext:
    """Mixin of a :class:`~pyro_genmodels.base.GenerativeModel` with ``context_dim`` and
    ``standardize``: call :meth:`standardize_context` in ``__init__`` once both are set,
    and pass every ``c`` through :meth:`context_unit` where it reaches a network."""

    context_dim: Optional[int]
    standardize: bool
    c_shift: torch.Tensor
    c_scale: torch.Tensor

    def standardize_context(self) -> None:
        """Buffers ``c_shift`` and ``c_scale`` ``(context_dim,)``, saved with
        ``standardize`` (a conditional model only)."""
        if self.context_dim is not None:
            for name, fill in (("c_shift", 0.0), ("c_scale", 1.0)):
                cast(Any, self).register_buffer(name, torch.full((self.context_dim,), fill),
                                                persistent=self.standardize)

    def context_unit(self, c: _OptionalTensor) -> _OptionalTensor:
        """``(c - m_c) / s_c`` with ``standardize``, else ``c``."""
        if c is None or not self.standardize or self.context_dim is None:
            return c
        return cast(_OptionalTensor, (c - self.c_shift) / self.c_scale)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a fit saved before contexts were standardized read c raw: it loads as it was
        if self.context_dim is not None and self.standardize:
            state_dict.setdefault(prefix + "c_shift", torch.zeros_like(self.c_shift))
            state_dict.setdefault(prefix + "c_scale", torch.ones_like(self.c_scale))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]


def set_context_moments(model: Any, c: Optional[torch.Tensor],
                        moments: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> None:
    """Set ``model``'s ``c_shift`` / ``c_scale`` from the training rows' ``c`` (or
    ``moments``, the ``(mean, sd)`` of a stream's c, from the pass that reads x's); a
    no-op for a model whose context is not standardized."""
    if c is None or not isinstance(model, StandardizedContext) or not model.standardize \
            or model.context_dim is None:
        return
    if moments is None:
        try:
            with named(None):  # x's column names are not c's
                moments = column_moments(c)
        except ValueError as e:  # a column that underflows or overflows: c's, not x's
            raise ValueError(f"c's {e}") from None
    with torch.no_grad():
        for buffer, value in zip((model.c_shift, model.c_scale), moments):
            buffer.copy_(value)


def linear_prediction(y: torch.Tensor, z: torch.Tensor, *, rtol: float = 1e-10
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The least-squares prediction of rows ``y`` ``(N, D)`` from contexts ``z``
    ``(N, K)``: ``(intercept, slope, residual_sd)``, shapes ``(D,)``, ``(K, D)``, ``(D,)``,

    .. math::

        \hat y(z) = a + z B, \qquad B = S_{zz}^{+} S_{zy}, \qquad a = \bar y - \bar z B,

    :math:`S` the centered cross products. The pseudo-inverse is taken on the correlation
    scale, so the columns' units do not matter: a column of z that varies by less than
    100 rounding steps of its largest value is constant (slope 0), and of the correlation
    matrix of the others the eigenvalues below ``rtol`` times the largest are dropped, so
    a one-hot ``z``, whose centered columns sum to 0, predicts each class's mean.
    ``residual_sd`` is each column's residual sum of squares over N - 1 - rank
    degrees of freedom (at least 1): the pooled within-class sd for one-hot ``z``, the
    columns' sd for K = 0 (0 for a single row or a constant column of y). Float64 (MPS:
    y's dtype) sums over blocks of rows, means first, then cross products: no float64
    copy of all rows. Returned in ``y``'s dtype. Exact for y linear in z with noise of
    one variance per column."""
    n, width = y.shape[0], y.shape[1] + z.shape[1]
    step = max(1, min(MOMENT_BLOCK_ROWS, MOMENT_BLOCK_ELEMENTS // max(1, width)))
    wide = y.dtype if y.device.type == "mps" else torch.float64  # MPS has no float64

    def each():
        for a in range(0, n, step):
            yield y[a:a + step].to(wide), z[a:a + step].to(wide)
    y_bar, z_bar = y.new_zeros(y.shape[1], dtype=wide), y.new_zeros(z.shape[1], dtype=wide)
    z_max = torch.zeros_like(z_bar)  # the largest |z| of each column: its rounding level
    for yb, zb in each():
        y_bar, z_bar = y_bar + yb.sum(0), z_bar + zb.sum(0)
        z_max = torch.maximum(z_max, zb.abs().amax(0))
    y_bar, z_bar = y_bar / n, z_bar / n
    szz = y_bar.new_zeros(z.shape[1], z.shape[1])
    szy = y_bar.new_zeros(z.shape[1], y.shape[1])
    syy = torch.zeros_like(y_bar)
    for yb, zb in each():
        yc, zc = yb - y_bar, zb - z_bar
        szz += zc.T @ zc
        szy += zc.T @ yc
        syy += yc.pow(2).sum(0)
    var = szz.diagonal()
    varies = var.sqrt() > 100 * torch.finfo(wide).eps * z_max * math.sqrt(n)
    inv = torch.zeros_like(szz)
    rank = 0
    if bool(varies.any()):
        scale = var[varies].rsqrt()
        corr = szz[varies][:, varies] * scale[:, None] * scale[None, :]
        vals, vecs = torch.linalg.eigh(corr)
        keep = vals > rtol * vals.max()
        rank = int(keep.sum())
        pinv = (vecs[:, keep] / vals[keep]) @ vecs[:, keep].T
        idx = varies.nonzero().flatten()
        inv[idx[:, None], idx[None, :]] = pinv * scale[:, None] * scale[None, :]
    slope = inv @ szy
    rss = (syy - (szy * slope).sum(0)).clamp_min(0)
    sd = (rss / max(1, n - 1 - rank)).sqrt()
    return (y_bar - z_bar @ slope).to(y.dtype), slope.to(y.dtype), sd.to(y.dtype)
