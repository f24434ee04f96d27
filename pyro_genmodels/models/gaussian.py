r"""The multivariate Gaussian: the parametric density with everything in closed form.

.. math::

    \mathrm{loc} &\sim \mathcal N(0, \sigma_0^2 I_D) \\
    s &\sim \mathrm{HalfNormal}(\sigma_0)^{\otimes D}, \quad
    L \sim \mathrm{LKJCholesky}(D, 1) \\
    \Sigma &= \mathrm{diag}(s)\, L L^\top \mathrm{diag}(s) \\
    x_i &\sim \mathcal N(\mathrm{loc}, \Sigma), \quad i = 1..N

with :math:`\sigma_0` = ``prior_scale``. When ``covariance`` is given, Sigma is fixed and
only ``loc`` is inferred: the posterior is then conjugate,

.. math::

    \mathrm{loc} \mid x \sim \mathcal N(m, V), \quad
    V = (N \Sigma^{-1} + \sigma_0^{-2} I)^{-1}, \quad m = V \Sigma^{-1} \textstyle\sum_i x_i,

which the tests use as the oracle for ``vi`` and ``nuts``; ``mle`` must reach the sample
mean and the biased sample covariance.

References:
    Lewandowski, Kurowicka & Joe (2009), *Generating random correlation matrices based on
    vines and extended onion method*. J. Multivariate Analysis 100(9).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from .._columns import said
from .._moments import column_moments, column_units, constant_columns, exact_dtype
from .._validation import as_data, positive_float
from ..base import Capabilities, GenerativeModel, register
from ..infer.started import StartedAtMLE
from ..infer.objectives import data_plate, plate_rows
from ._checks import (constant_said, dependent_columns, precision_said, rank_of,
                      warn_if_prior_is_strong)


@register
class Gaussian(GenerativeModel):
    """A multivariate Gaussian ``p(x) = N(x | loc, Sigma)``.

    Args:
        dim: D, the number of columns of the data.
        covariance: optional known covariance ``(D, D)`` (symmetric positive definite);
            then only ``loc`` is a parameter.
        prior_scale: sigma_0 of the priors ``loc ~ N(0, sigma_0^2 I)`` and
            ``s ~ HalfNormal(sigma_0)``.

    Sample sites: ``loc`` ``(D,)``, ``scale`` ``(D,)`` and ``corr_cholesky`` ``(D, D)``
    (the last two only when ``covariance`` is not given, ``corr_cholesky`` only for
    D >= 2), and the observed ``x`` ``(N, D)`` in the plate ``data``.

    Example:
        >>> import torch, pyro_genmodels as pgm
        >>> x = torch.randn(200, 2) * torch.tensor([1.0, 3.0]) + 5
        >>> fit = pgm.Gaussian(2).fit(x, method="mle", seed=0, progress=False)
        >>> fit.params["loc"].shape, fit.sample(10, seed=0).shape
        (torch.Size([2]), torch.Size([10, 2]))
    """

    registry_name = "gaussian"
    capabilities = Capabilities(log_prob="exact", sampling="direct",
                                methods=("mle", "map", "vi", "nuts", "hmc", "chees"))
    jit_safe = True
    vectorized_particles = True
    engines = {"mle": StartedAtMLE("mle")}

    def __init__(self, dim: int, *, covariance: Any = None, prior_scale: float = 10.0) -> None:
        super().__init__(dim)
        self.prior_scale = positive_float(prior_scale, "prior_scale")
        if covariance is None:
            self.register_buffer("covariance", None)
            self.register_buffer("_cov_tril", None)
        else:
            square = (self.dim, self.dim)
            if isinstance(covariance, (str, bytes)):  # as_data would ask for (N, dim)
                raise TypeError(f"covariance must be a numeric {square} tensor or array, "
                                f"got {type(covariance).__name__}")
            try:  # before as_data, which would ask for (N, dim); one number for dim 1
                shape = tuple(covariance.shape) if torch.is_tensor(covariance) \
                    else np.shape(covariance) if isinstance(covariance, (
                        list, tuple, np.ndarray, np.generic, int, float)) \
                    else square  # anything else: as_data says what it is
            except ValueError:  # ragged rows: as_data says so
                shape = square
            if shape != square and not (self.dim == 1 and len(shape) < 2):
                got = "a single number" if shape == () else shape
                raise ValueError(f"covariance must have shape {square}, got {got}")
            cov = as_data(covariance, dim=self.dim, name="covariance")
            if not torch.allclose(cov, cov.T, rtol=1e-5, atol=1e-8):
                raise ValueError("covariance must be symmetric")
            tril, info = torch.linalg.cholesky_ex(cov)
            if info != 0:
                raise ValueError("covariance must be positive definite (its Cholesky failed)")
            self.register_buffer("covariance", cov)
            self.register_buffer("_cov_tril", tril)

    @property
    def known_covariance(self) -> bool:
        """Whether the covariance is fixed and known (``covariance=``), so only ``loc`` is fit."""
        return self.covariance is not None

    @property
    def global_sites(self) -> Tuple[str, ...]:  # type: ignore[override]  # computed, never set
        """The global sample sites phi, which depend on the configuration."""
        if self.known_covariance:
            return ("loc",)
        return ("loc", "scale") if self.dim == 1 else ("loc", "scale", "corr_cholesky")

    # ------------------------------------------------------------------ the Pyro program
    def model(self, x: Optional[torch.Tensor] = None, *, c: Optional[torch.Tensor] = None,
              num_data: Optional[int] = None, subsample_size: Optional[int] = None,
              subsample: Optional[torch.Tensor] = None) -> torch.Tensor:
        if c is not None:
            raise ValueError("Gaussian is unconditional: c must be None")
        f = self._factory
        zeros = torch.zeros(self.dim, **f)
        loc = pyro.sample("loc", dist.Normal(zeros, self.prior_scale).to_event(1))
        if self.known_covariance:  # kept as given (a NumPy covariance: float64)
            scale_tril = self._cov_tril.to(zeros.dtype)
        else:
            scale = pyro.sample("scale",
                                dist.HalfNormal(torch.full_like(zeros, self.prior_scale))
                                .to_event(1))
            params = {"scale": scale}
            if self.dim > 1:
                params["corr_cholesky"] = pyro.sample(
                    "corr_cholesky", dist.LKJCholesky(self.dim, torch.ones((), **f)))
            scale_tril = self._scale_tril(params)
        plate = data_plate(x, c, num_data, subsample_size, subsample)
        with plate as idx:
            assert idx is not None  # a vectorized plate yields its indices
            obs = plate_rows(x, idx, plate.size, "x")
            return pyro.sample("x", dist.MultivariateNormal(loc, scale_tril=scale_tril), obs=obs)

    def _scale_tril(self, params: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``diag(s) L``, batched over the leading dims of the parameters."""
        if self.known_covariance:
            return self._cov_tril.to(params["loc"].dtype)
        scale = params["scale"]
        if self.dim == 1:
            return scale.unsqueeze(-1)
        return scale.unsqueeze(-1) * params["corr_cholesky"]

    def distribution(self, params: Dict[str, torch.Tensor],
                     c: Optional[torch.Tensor] = None) -> dist.MultivariateNormal:
        """``N(loc, diag(s) L L^T diag(s))``, batched over the draws of phi."""
        return dist.MultivariateNormal(params["loc"], scale_tril=self._scale_tril(params))

    # ------------------------------------------------------------------ engine hooks
    def init_values(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Every method's start but ``mle``'s: the column means and sds (one row: the
        prior's scale), and identity correlations (an optimizer started at the exact
        maximum of the scales and correlations moves by Adam's step on rounding noise, so
        ``map`` and ``vi`` would no longer be equivariant under a change of units to
        float64 rounding)."""
        init = {"loc": x.mean(0)}
        if not self.known_covariance:
            init["scale"] = (x.std(0, correction=0).clamp_min(torch.finfo(x.dtype).tiny)
                             if x.shape[0] > 1 else torch.full_like(x[0], self.prior_scale))
            if self.dim > 1:
                init["corr_cholesky"] = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        return init

    def mle_values(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The maximum-likelihood estimates, ``mle``'s start and candidate answer
        (:class:`~pyro_genmodels.infer.started.StartedAtMLE`): the column means, and the
        sds and the correlation's Cholesky factor of the biased sample covariance,
        formed in float64 (raw breast cancer's covariance has a condition number of
        6e11; from identity correlations the loop ended 8e-4 nats per row below this at
        its default 1500 steps). Where the correlation is singular at the data's
        precision (the data ``mle`` refuses; or not finite) its start is the identity."""
        work = exact_dtype(x)
        xw = x.detach().to(work)
        loc = xw.mean(0)
        init = {"loc": loc}
        if not self.known_covariance:
            xc = xw - loc
            cov = xc.T @ xc / xw.shape[0]
            sd = cov.diagonal().sqrt()
            init["scale"] = sd.clamp_min(torch.finfo(x.dtype).tiny)
            if self.dim > 1:
                corr = cov / (sd[:, None] * sd)
                tril = torch.eye(self.dim, dtype=work, device=x.device)
                if xw.shape[0] > self.dim and bool(torch.isfinite(corr).all()) and not \
                        rank_of(x) < self.dim:
                    tril = torch.linalg.cholesky(corr)
                tril = tril.to(x.dtype)  # rows of unit length in x's dtype too
                init["corr_cholesky"] = tril / tril.norm(dim=-1, keepdim=True)
        return {k: v.to(x.dtype).contiguous() for k, v in init.items()}

    def param_units(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``loc`` in column sds (the scale and correlation are unit-free already)."""
        return {"loc": column_units(x)}

    def check_data_for(self, method: str, x: torch.Tensor) -> None:
        """Refuse data for which the fit does not exist.

        A constant column among two or more rows makes the likelihood grow without bound
        as that column's scale goes to 0, and the HalfNormal prior, finite at 0, does not
        stop it: no method has an answer (no maximum; an improper posterior, since with
        ``loc`` integrated out the likelihood still grows as ``scale**-(N - 1)``, and
        MCMC's step size would collapse). A single row has no maximum either, but its
        posterior is proper (``loc`` integrated out, ``x ~ N(0, prior_scale**2 I +
        Sigma)`` is bounded), so the posterior methods sample it. For ``mle`` and ``map``
        also: the MLE covariance is the biased sample covariance, singular when N <= D or the
        columns are collinear, and the prior does not bound map's log joint there (the
        covariance collapses onto the rows' hyperplane as map trains longer). Both checks
        are per column or on the correlation scale, so the columns' units do not matter
        (raw columns from 0.1 to 1,680 are not "almost singular"), and the collinearity is
        judged against the data's own rounding (``correlation_spectrum`` in ``_checks.py``)."""
        if method != "mle":
            warn_if_prior_is_strong(x, self.prior_scale, "Gaussian", method,
                                    scales=not self.known_covariance, covariance=self.covariance)
        if self.known_covariance:
            return
        n = x.shape[0]
        column_moments(x)  # refuses columns whose squared deviations overflow when summed
        constant = constant_columns(x)
        tiny = ~constant & (x.std(0, correction=0) ** 2 < torch.finfo(x.dtype).tiny)
        if tiny.any():
            raise ValueError(
                f"column(s) {said(tiny)} vary, but by so little that "
                f"their variance underflows {x.dtype} (sd below "
                f"{math.sqrt(torch.finfo(x.dtype).tiny):.1e}): rescale the data")
        if n == 1 and method in ("mle", "map"):
            raise ValueError(
                f"data cannot be fitted by {method} with an unknown covariance: a single row "
                f"makes every column constant, so the likelihood grows without bound as the "
                f"scales go to 0 (no maximum). Give a known covariance, or sample the "
                f"posterior (method='nuts' or 'vi'): for one row it is proper.")
        if constant.any() and n > 1:
            what, remedy = constant_said(x, constant)
            raise ValueError(
                f"data cannot be fitted by a Gaussian with an unknown covariance: {what}, "
                f"so the likelihood grows without bound as their scale goes to 0 (no "
                f"maximum, and an improper posterior under the scale's HalfNormal prior). "
                f"{remedy}, or give a known covariance.")
        if method not in ("mle", "map") or n == 1:
            return
        # the covariance can collapse onto the rows' hyperplane: the likelihood grows
        # without bound, and the prior does not stop it (the scales' HalfNormal is
        # largest at 0 and LKJ(1) is flat: the map's smallest eigenvalue fell from 3e-7
        # to below 0 between 300 and 6000 steps on 4 rows in 6 dimensions)
        no_max = "so the likelihood has no maximum" + (
            ", nor has map's log joint: its prior does not keep the covariance positive "
            "definite" + (" (map is no way out)" if method == "mle" else ""))
        if n <= self.dim:
            raise ValueError(
                f"The {method} covariance is singular with N={n} points in D={self.dim} "
                f"dimensions (it needs N > D), {no_max}. Give a known covariance, or fit "
                f"a low-rank covariance: PPCA({self.dim}, latent_dim) with latent_dim < "
                f"N - 1.")
        smallest = dependent_columns(x)
        if smallest is not None:
            raise ValueError(
                f"The {method} covariance is singular: the data's columns are linearly "
                f"dependent (smallest eigenvalue of their correlation matrix "
                f"{smallest:.2g}), {no_max}. Drop the redundant columns.{precision_said(x)}")

    def replicate_given(self, params: Dict[str, torch.Tensor], x: torch.Tensor
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
        """All draws at once: ``(S, N, dim)``, and ``x``."""
        return self.distribution(params).sample((x.shape[0],)).transpose(0, 1), x

    def derived(self, params: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        loc = params["loc"]
        tril = self._scale_tril(params)
        cov = tril @ tril.transpose(-1, -2)
        return {"covariance_matrix": cov.expand(loc.shape[:-1] + cov.shape[-2:])}

    def arviz_dims(self) -> Dict[str, Tuple[str, ...]]:
        return {**super().arviz_dims(), "loc": ("column",), "scale": ("column",),
                "corr_cholesky": ("column", "column_bis"),
                "covariance_matrix": ("column", "column_bis")}

    def get_config(self) -> Dict[str, Any]:
        return {"dim": self.dim, "covariance": self.covariance, "prior_scale": self.prior_scale}
