r"""Probabilistic PCA: a linear-Gaussian latent-variable model with the latent integrated
out in closed form.

.. math::

    z_i \sim \mathcal N(0, I_q), \quad x_i = W z_i + \mu + \varepsilon_i, \quad
    \varepsilon_i \sim \mathcal N(0, \sigma^2 I_D)
    \;\Longrightarrow\;
    x_i \sim \mathcal N(\mu, C), \quad C = W W^\top + \sigma^2 I_D.

The Pyro program observes ``x`` under that marginal (a ``LowRankMultivariateNormal``,
O(D q^2) per point), so ``log_prob`` is exact. Priors (for ``map`` / ``vi``):
:math:`W_{dj} \sim \mathcal N(0, s_0^2)`, :math:`\mu \sim \mathcal N(0, s_0^2 I)`,
:math:`\sigma \sim \mathrm{HalfNormal}(s_0)`.

The maximum-likelihood solution is known (Tipping & Bishop, 1999): with the sample
covariance's eigenvalues :math:`\lambda_1 \ge \dots \ge \lambda_D` and eigenvectors
:math:`U`,

.. math::

    \hat\sigma^2 = \frac{1}{D - q} \sum_{j > q} \lambda_j, \qquad
    \hat W = U_q (\Lambda_q - \hat\sigma^2 I)^{1/2} R \quad (R \text{ any rotation}),

which the tests use as the oracle (scikit-learn's ``PCA(q).score`` is that
log-likelihood), and every method's start (:func:`closed_form`: in the data's own units,
which a fixed small random ``W`` is not on raw columns). ``W`` is identified only up to the rotation R, so its posterior draws
are not comparable entry by entry; ``covariance_matrix`` (C) is identified.

The posterior of the latent is Gaussian: :math:`z \mid x \sim \mathcal N(M^{-1} W^\top
(x - \mu), \sigma^2 M^{-1})`, :math:`M = W^\top W + \sigma^2 I_q`; ``fit.encode`` returns
its mean.

References:
    Tipping & Bishop (1999), *Probabilistic principal component analysis*, JRSS B 61(3).
    Roweis (1998), *EM algorithms for PCA and SPCA*, NeurIPS.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import pyro
import pyro.distributions as dist
import torch

from .._moments import column_moments, column_units, exact_dtype
from .._validation import positive_float, positive_int
from ..base import Capabilities, Fit, GenerativeModel, register
from ..infer.started import StartedAtMLEInDataUnits
from ..infer.objectives import data_plate, plate_rows
from ._checks import precision_said, rank_of, warn_if_prior_is_strong


def closed_form(x: torch.Tensor, latent_dim: int) -> Dict[str, torch.Tensor]:
    """The maximum-likelihood ``{"W", "loc", "sigma"}`` of PPCA on the rows ``x`` ``(N, D)``
    (Tipping & Bishop, 1999), in ``x``'s dtype and device: every method's start.

    With the eigenvalues ``l_1 >= ... >= l_D`` and eigenvectors ``U`` of the biased
    sample covariance: ``loc`` the column means, ``sigma^2`` the mean of the discarded
    eigenvalues ``l_{q+1} .. l_D``, ``W = U_q (L_q - sigma^2 I)^{1/2}`` (R = I). The
    covariance is formed and decomposed in float64 (in float32 the small eigenvalues of
    raw columns are lost: on raw breast cancer, eigenvalues 7e-7 to 4e5, they are off by
    up to 23%). Rank-deficient data and constant columns: the eigenvalues are clamped at
    0, ``l_j - sigma^2`` at 0 (a zero column of ``W``), and ``sigma^2`` at 1e-6 of the
    mean eigenvalue (the mean column variance; 1e-6 when every column is constant), so
    ``sigma`` is positive and the start finite even where the likelihood is unbounded.
    ``W`` is identified only up to the rotation R; each column is signed so that its
    largest entry in absolute value is positive, so the start does not depend on the
    eigensolver's signs.
    """
    q = positive_int(latent_dim, "latent_dim")
    n, d = x.shape
    if q >= d:
        raise ValueError(f"Expected latent_dim < D = {d}, but got latent_dim={q}")
    work = exact_dtype(x)
    xc = x.detach().to(work, copy=True)
    loc = xc.mean(0)
    xc -= loc
    cov = xc.T @ xc / n
    del xc
    lam, vec = torch.linalg.eigh(cov)  # ascending
    lam, vec = lam.flip(0).clamp_min(0), vec.flip(-1)
    mean_var = float(lam.mean())
    sigma2 = lam[q:].mean().clamp_min(1e-6 * mean_var if mean_var > 0 else 1e-6)
    U = vec[:, :q]
    U = U * U.gather(0, U.abs().argmax(0, keepdim=True)).sign()  # a unit vector's: not 0
    W = U * (lam[:q] - sigma2).clamp_min(0).sqrt()
    return {k: v.to(x.dtype).contiguous() for k, v in
            {"W": W, "loc": loc, "sigma": sigma2.sqrt()}.items()}


class PPCAFit(Fit):
    """A :class:`~pyro_genmodels.Fit` of :class:`PPCA`, plus the encoder."""

    @torch.no_grad()
    def encode(self, x: Any) -> torch.Tensor:
        """``E[z_i | x_i]``, shape ``(N, latent_dim)``. Posterior fits average it over the
        draws of phi (meaningful when the draws share one rotation of W, as a ``vi``
        posterior around one mode does)."""
        x = self._as_input(x)
        if self.point is not None:
            return self.model.posterior_mean(self.point, x)
        return self.model.posterior_mean(self.posterior_samples(), x).mean(0)


@register
class PPCA(GenerativeModel):
    """Probabilistic PCA with ``latent_dim`` < ``dim`` factors.

    Args:
        dim: D, the number of columns of the data.
        latent_dim: q, with 1 <= q < D.
        prior_scale: s_0 of the priors on ``W``, ``loc`` and ``sigma``.
        standardize: fit the model to the standardized columns ``u = (x - m) / sd`` (m,
            sd the training rows' column means and sds, fixed when the fit starts): PCA
            on the correlation matrix. ``W``, ``loc`` and ``sigma`` are then in
            standardized units; the density, ``sample`` and ``covariance_matrix`` are in
            x's units, ``x ~ N(m + sd * loc, D_sd (W W^T + sigma^2 I) D_sd)``, Jacobian
            included. Off by default: the noise sigma^2 I is isotropic, so the textbook
            model (Tipping & Bishop, on x itself) depends on the columns' units; on
            columns measured in different units (wine: 0.1 to 1,680) pass ``True``.

    Sample sites: ``W`` ``(D, q)``, ``loc`` ``(D,)``, ``sigma`` ``()``, and the observed ``x``
    ``(N, D)`` in the plate ``data`` (z integrated out).

    Example:
        >>> import torch, pyro_genmodels as pgm
        >>> x = torch.randn(300, 2) @ torch.randn(2, 5) + 0.1 * torch.randn(300, 5)
        >>> fit = pgm.PPCA(5, 2).fit(x, method="mle", num_steps=200, seed=0, progress=False)
        >>> fit.encode(x[:3]).shape, fit.sample(4).shape
        (torch.Size([3, 2]), torch.Size([4, 5]))
    """

    registry_name = "ppca"
    capabilities = Capabilities(log_prob="exact", sampling="ancestral",
                                methods=("mle", "map", "vi"))
    global_sites = ("W", "loc", "sigma")
    jit_safe = True
    vectorized_particles = True
    fit_class = PPCAFit
    engines = {"mle": StartedAtMLEInDataUnits("mle")}

    def __init__(self, dim: int, latent_dim: int, *, prior_scale: float = 10.0,
                 standardize: bool = False) -> None:
        super().__init__(dim)
        self.latent_dim = positive_int(latent_dim, "latent_dim")
        if self.latent_dim >= self.dim:
            raise ValueError(f"PPCA needs latent_dim < dim, but got latent_dim="
                             f"{self.latent_dim} with dim={self.dim} (with q >= D the model "
                             f"is a full-covariance Gaussian: use pgm.Gaussian)")
        self.prior_scale = positive_float(prior_scale, "prior_scale")
        if not isinstance(standardize, bool):
            raise TypeError(f"Expected standardize to be a bool, but got {standardize!r}")
        self.standardize = standardize
        # set from the training rows when a fit starts (working_copy); saved only when used
        self.register_buffer("shift", torch.zeros(self.dim), persistent=standardize)
        self.register_buffer("x_scale", torch.ones(self.dim), persistent=standardize)

    # ------------------------------------------------------------------ the Pyro program
    def model(self, x: Optional[torch.Tensor] = None, *, c: Optional[torch.Tensor] = None,
              num_data: Optional[int] = None, subsample_size: Optional[int] = None,
              subsample: Optional[torch.Tensor] = None) -> torch.Tensor:
        if c is not None:
            raise ValueError("PPCA is unconditional: c must be None")
        f = self._factory
        D, q, s0 = self.dim, self.latent_dim, self.prior_scale
        W = pyro.sample("W", dist.Normal(torch.zeros(D, q, **f), s0).to_event(2))
        loc = pyro.sample("loc", dist.Normal(torch.zeros(D, **f), s0).to_event(1))
        sigma = pyro.sample("sigma", dist.HalfNormal(torch.tensor(s0, **f)))
        plate = data_plate(x, c, num_data, subsample_size, subsample)
        with plate as idx:
            assert idx is not None  # a vectorized plate yields its indices
            obs = plate_rows(x, idx, plate.size, "x")
            return pyro.sample("x", self.distribution({"W": W, "loc": loc, "sigma": sigma}),
                               obs=obs)

    def distribution(self, params: Dict[str, torch.Tensor],
                     c: Optional[torch.Tensor] = None) -> dist.LowRankMultivariateNormal:
        """The marginal ``N(loc, W W^T + sigma^2 I)`` (z integrated out); its sampler is
        ancestral, ``W z + loc + sigma * eps``."""
        W, loc, sigma = params["W"], params["loc"], params["sigma"]
        diag = (sigma**2).unsqueeze(-1).expand(loc.shape)
        if self.standardize:  # x = m + sd * u: the exact image of u's marginal
            return dist.LowRankMultivariateNormal(self.from_unit(loc),
                                                  cov_factor=self.x_scale[:, None] * W,
                                                  cov_diag=self.x_scale**2 * diag)
        return dist.LowRankMultivariateNormal(loc, cov_factor=W, cov_diag=diag)

    def log_prob_given(self, params: Dict[str, torch.Tensor], x: torch.Tensor,
                       c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``log p(x_i | phi)`` per row, formed in float64 (MPS: its dtype) and returned
        in ``x``'s: in float32 the Woodbury form of :meth:`distribution` loses the digits
        of an ill-conditioned capacitance (raw breast cancer, q = 5: loadings of 567 over
        a sigma^2 of 0.22 put one row 13.5 nats off)."""
        work = exact_dtype(x)
        exact = {k: v.to(work) for k, v in params.items()}
        return super().log_prob_given(exact, x.to(work), c).to(x.dtype)

    # ------------------------------------------------------------------ engine hooks
    def init_values(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The Tipping-Bishop maximum-likelihood solution on the rows ``x`` (in
        standardized units when ``standardize``): :func:`closed_form` of their sample
        covariance. Every method (``mle``, ``map``, ``vi``) starts there, in the data's own
        units: a fixed small random ``W`` is hopeless on raw columns (wine's proline needs
        loadings in the hundreds, which Adam at lr ~1e-2 does not travel)."""
        return closed_form(self.to_unit(x), self.latent_dim)

    def posterior_mean(self, params: Dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``E[z | x, phi] = M^{-1} W^T (x - loc)``: ``(*batch, N, q)``."""
        W, loc, sigma = params["W"], params["loc"], params["sigma"]
        eye = torch.eye(self.latent_dim, dtype=W.dtype, device=W.device)
        M = W.transpose(-1, -2) @ W + (sigma**2)[..., None, None] * eye
        centered = self.to_unit(x) - loc.unsqueeze(-2)  # (*batch, N, D)
        rhs = W.transpose(-1, -2) @ centered.transpose(-1, -2)  # (*batch, q, N)
        return torch.linalg.solve(M, rhs).transpose(-1, -2)

    def derived(self, params: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``covariance_matrix``: C = W W^T + sigma^2 I, in x's units (standardized:
        D_sd C D_sd)."""
        W, sigma = params["W"], params["sigma"]
        eye = torch.eye(self.dim, dtype=W.dtype, device=W.device)
        cov = W @ W.transpose(-1, -2) + (sigma**2)[..., None, None] * eye
        if self.standardize:
            cov = self.x_scale[:, None] * cov * self.x_scale
        return {"covariance_matrix": cov}

    def mle_values(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The closed form (Tipping & Bishop), as :meth:`init_values`."""
        return self.init_values(x)

    def param_units(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``loc`` and each row of ``W`` in their column's sd (none with ``standardize``:
        the sites are in sds already), for ``map`` and ``vi``: a step of Adam then
        means the same on every column and in any units. Before, the steps were
        absolute: on wine in units of 1e-4 ``map`` ended 30 nats per row below the
        closed form and ``vi`` at -870 against 90.5; on raw wine ``map`` did not leave
        the MLE (proline's ``loc`` has to move 2 sds to the prior's MAP).

        ``mle`` keeps the data's units
        (:class:`~pyro_genmodels.infer.started.StartedAtMLEInDataUnits`): it starts at its
        maximum, and Adam's first steps move every coordinate by about lr whatever the
        gradient, which in column sds moved raw breast cancer 7e-4 nats per row off it,
        and in the data's natural units moves it by rounding only. In tiny units it
        drifts far off (wine times 1e-4: 24 nats per row below), so the engine keeps the
        start where the loop ended below it."""
        if self.standardize:
            return {}
        units = column_units(x)
        return {"loc": units, "W": units[:, None]}

    def check_data_for(self, method: str, x: torch.Tensor) -> None:
        """Refuse ``mle`` and ``map`` on rows that span at most ``latent_dim`` dimensions
        around their mean (N <= q + 1 rows, identical rows, rank-deficient columns): the
        MLE of sigma^2, the mean of the D - q smallest eigenvalues of the sample
        covariance, is 0, the likelihood has no maximum and the fitted log p grew with
        the steps (one row in 4 columns, q = 1: 24.2 after 1 step, 214.3 after 3000).
        The rank is taken on the columns scaled to unit sd (a constant column stays 0),
        so their units do not matter."""
        if method != "mle" and not self.standardize:  # standardized: priors in sds
            warn_if_prior_is_strong(x, self.prior_scale, "PPCA", method)
        if method not in ("mle", "map"):
            return
        column_moments(x)  # raises for a column whose variance underflows (not "rank 0")
        rank = rank_of(x)
        if rank <= self.latent_dim:
            raise ValueError(
                f"PPCA({self.dim}, {self.latent_dim}) by {method}: the rows (N="
                f"{x.shape[0]}) span {rank} dimension(s) around their mean, not more than "
                f"latent_dim={self.latent_dim}, so the noise sd sigma goes to 0 and the "
                f"likelihood has no maximum{' (nor has the log joint)' * (method == 'map')}. "
                + (f"Give a latent_dim below {rank}, or more rows." if rank > 1 else
                   "It needs more distinct rows.") + precision_said(x))

    def num_params(self) -> int:
        """The identifiable free parameters (for AIC / BIC): ``W`` less its rotation,
        ``D q - q (q - 1) / 2`` (Tipping & Bishop 1999, section 2.2), plus ``loc`` (D)
        and ``sigma`` (1). Counting every entry of ``W`` overcounted by q (q - 1) / 2."""
        d, q = self.dim, self.latent_dim
        return d * q - q * (q - 1) // 2 + d + 1

    def arviz_dims(self) -> Dict[str, Tuple[str, ...]]:
        return {**super().arviz_dims(), "W": ("column", "latent"), "loc": ("column",),
                "sigma": (), "covariance_matrix": ("column", "column_bis")}

    def get_config(self) -> Dict[str, Any]:
        return {"dim": self.dim, "latent_dim": self.latent_dim, "prior_scale": self.prior_scale,
                "standardize": self.standardize}


__all__ = ["PPCA", "PPCAFit", "closed_form"]
