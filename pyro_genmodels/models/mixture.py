r"""The Gaussian mixture: a latent-variable model whose latent is summed out exactly.

.. math::

    w &\sim \mathrm{Dirichlet}(\alpha \mathbf 1_K), \quad
    \mu_k \sim \mathcal N(0, \sigma_0^2 I_D), \quad
    s_k \sim \mathrm{HalfNormal}(\sigma_0)^{\otimes D}, \quad
    L_k \sim \mathrm{LKJCholesky}(D, \eta) \\
    \Sigma_k &= \mathrm{diag}(s_k) L_k L_k^\top \mathrm{diag}(s_k)
    \quad (\text{``diag''}: \Sigma_k = \mathrm{diag}(s_k^2)) \\
    z_i &\sim \mathrm{Categorical}(w), \quad x_i \mid z_i \sim \mathcal N(\mu_{z_i}, \Sigma_{z_i})

The local latent :math:`z_i` is *enumerated* (``infer={"enumerate": "parallel"}``, trained
with ``TraceEnum_ELBO``): Pyro sums it out, so the loss is the exact negative
log-likelihood :math:`-\sum_i \log \sum_k w_k \mathcal N(x_i; \mu_k, \Sigma_k)` (minus the
log prior for ``map``), and ``log_prob`` is exact. The responsibilities
:math:`p(z_i = k \mid x_i) \propto w_k \mathcal N(x_i; \mu_k, \Sigma_k)` give
``predict_proba``.

How each method treats phi = (w, mu, s, L):

* ``mle``: expectation-maximization (Dempster, Laird & Rubin, 1977) with closed-form
  M-steps, from ``n_init`` k-means starts (:mod:`~pyro_genmodels.models.kmeans`),
  keeping the best. As in scikit-learn, ``reg_covar`` is
  added to every covariance's diagonal (the likelihood is unbounded when a component
  collapses onto a point), but in units of each column's variance: EM runs on the
  columns in sds and maps back, so the fit does not depend on the columns' units
  (scikit-learn's absolute 1e-6 cost 0.64 nats per row on raw breast-cancer columns,
  3 full components).
* ``map``: AutoDelta on the enumerated program under the priors, started from the best
  EM solution.
* ``vi`` / ``nuts``: the shared engines on the enumerated program (Pyro's NUTS sums out
  enumerated sites). The posterior is invariant to permuting the components (label
  switching); the draws are relabeled to a common ordering (a pivotal reordering with
  the Hungarian algorithm on the component means), which changes no density, only the
  per-component summaries.

A constant column is refused by every method but ``mle`` (EM's ``reg_covar`` bounds its
likelihood; the others have none): :meth:`GaussianMixture.check_data_for`.

References:
    Dempster, Laird & Rubin (1977), *Maximum likelihood from incomplete data via the EM
    algorithm*, JRSS B 39(1). Bishop (2006), *Pattern Recognition and Machine Learning*,
    ch. 9. Arthur & Vassilvitskii (2007), *k-means++: the advantages of careful seeding*.
    Lloyd (1982), *Least squares quantization in PCM*, IEEE Trans. Inf. Theory 28(2).
    Stephens (2000), *Dealing with label switching in mixture models*, JRSS B 62(4).
    Obermeyer et al. (2019), *Tensor variable elimination for plated factor graphs*
    (Pyro's enumeration).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

import pyro
import pyro.distributions as dist
import torch
from tqdm.auto import tqdm

from .._as_pyro import Mixture
from .._moments import column_moments, column_units, constant_columns, exact_dtype
from .._validation import (check_choice, nonnegative_float, positive_float, positive_int,
                           store_counts)
from ..base import Capabilities, Fit, GenerativeModel, register
from ..infer.engines import ENGINES, Engine
from ..infer.loop import FitResult, NonFiniteLossError
from ..infer.objectives import data_plate, plate_rows
from ._checks import (constant_said, dependent_columns, precision_said,
                      warn_if_prior_is_strong)
from .kmeans import KMEANS_SEEDINGS, kmeans

COVARIANCE_TYPES = ("full", "diag")


class MixtureFit(Fit):
    """A :class:`~pyro_genmodels.Fit` of a :class:`GaussianMixture`, plus clustering."""

    @torch.no_grad()
    def predict_proba(self, x: Any) -> torch.Tensor:
        """The responsibilities ``p(z_i = k | x_i)``, shape ``(N, K)``, rows summing to 1.

        Point fits: under phi_hat. Posterior fits: averaged over the (relabeled) draws,
        i.e. the posterior predictive responsibilities."""
        x = self._as_input(x)
        if self.point is not None:
            return self.model.responsibilities(self.point, x)
        draws = self.posterior_samples()
        rows = max(1, 2**22 // (self.num_draws * self.model.n_components))
        return torch.cat([self.model.responsibilities(draws, xb).mean(0)
                          for xb in x.split(rows)])

    def predict(self, x: Any) -> torch.Tensor:
        """The most probable component of each row, ``(N,)`` (long)."""
        return self.predict_proba(x).argmax(-1)


def _m_step(model: GaussianMixture, x: torch.Tensor, resp: torch.Tensor,
            reg_covar: float) -> Dict[str, torch.Tensor]:
    """Closed-form maximizers of the expected complete log-likelihood."""
    eps = 10 * torch.finfo(x.dtype).eps
    nk = resp.sum(0) + eps
    weights = nk / nk.sum()
    locs = (resp.T @ x) / nk[:, None]
    # centred per component: E[x^2] - mu^2 cancels where |x| >> sd (float32 wine + 1e4:
    # -4.7e5 nats per row); diag a component at a time, (N, D) and not (K, N, D)
    if not model.full:
        var = torch.stack([resp[:, k] @ (x - locs[k]).pow(2) for k in range(len(locs))])
        return {"weights": weights, "locs": locs, "scales": (var / nk[:, None] + reg_covar)
                .sqrt()}
    diff = x - locs.unsqueeze(-2)  # (K, N, D)
    eye = torch.eye(model.dim, dtype=x.dtype, device=x.device)
    cov = ((diff * resp.T.unsqueeze(-1)).transpose(-1, -2) @ diff / nk[:, None, None]
           + reg_covar * eye)
    scales = cov.diagonal(dim1=-2, dim2=-1).sqrt()
    corr = cov / (scales.unsqueeze(-1) * scales.unsqueeze(-2))
    # a singular covariance (a component on one point, reg_covar=0) is no crash: NaN
    # factors make the next log-likelihood non-finite, which EM reports as a FitError
    chol, info = torch.linalg.cholesky_ex(corr)
    # LAPACK's factor is column-major: stored row-major, as a save writes it and a load
    # reads it, so the fitted and the loaded fit hold the same tensors (layout included)
    chol = torch.where((info > 0)[:, None, None], torch.nan, chol).contiguous()
    return {"weights": weights, "locs": locs, "scales": scales, "corr_cholesky": chol}


def _em_run(model: GaussianMixture, x: torch.Tensor, *, num_steps: int, tol: float,
            reg_covar: float, num_seedings: int, callback=None, bar=None):
    """One EM run from a k-means start (of ``num_seedings`` seedings) on the rows ``x`` in
    column units (:func:`best_em`). Returns (params, losses, stop, error): ``stop`` is
    ``"interrupted"`` (Ctrl-C), ``"callback"`` (the callback returned True) or ``None``;
    ``params`` is always the last state with a finite log-likelihood."""
    hard = (kmeans(x, model.n_components, num_seedings=num_seedings)[:, None]
            == torch.arange(model.n_components, device=x.device)).to(x.dtype)
    params = _m_step(model, x, hard, reg_covar)
    losses: List[float] = []
    good, stop, error = None, None, None
    try:
        for step in range(num_steps):
            joint = model._joint(params, x)
            ll = joint.logsumexp(-1)
            total = float(ll.sum())
            if not math.isfinite(total):
                error = (step, total)
                break
            good = params
            losses.append(-total)
            if bar is not None:
                bar.update()
            if callback is not None and callback(step, -total) is True:
                stop = "callback"
                break
            if step > 0 and (losses[-2] - losses[-1]) / x.shape[0] < tol:
                break
            params = _m_step(model, x, (joint - ll[:, None]).exp(), reg_covar)
    except KeyboardInterrupt:
        stop = "interrupted"
    return (good if good is not None else params), losses, stop, error


def best_em(model: GaussianMixture, x: torch.Tensor, *, num_steps: int, tol: float,
            reg_covar: float, callback=None, progress: bool = False):
    r"""``model.n_init`` EM runs; the one with the highest final log-likelihood wins.

    The runs work on the columns in their units, :math:`u = (x - m) / s` (``m``, ``s``
    from :func:`~pyro_genmodels._moments.column_moments`: each column's mean and sd,
    sd 1 for a constant column), and the winner is mapped back (:math:`\mu = m + s
    \mu_u`, scales :math:`s\,\sigma_u`; weights and correlations are unit-free). So
    ``reg_covar`` is added to every variance in units of its column's variance (a
    constant column's, which has none, in the data's units), and the fit does not depend
    on the units or the origin the columns come in (EM's updates are affine-equivariant;
    an absolute ``reg_covar``, scikit-learn's, is not: 1e-6 swamps a column whose variance
    is near it). ``losses`` and the callback's loss are the negative log-likelihoods of
    ``x`` itself, :math:`-\log p(u) + N \sum_d \log s_d`, to the rounding of the
    mapped-back parameters in ``x``'s dtype (float32 rows near 1e6 hold locations to
    0.06: there ``-log p(x)`` moved 0.1 nats per row from the last loss).

    A start that hits a non-finite log-likelihood is dropped when another start
    succeeds; Ctrl-C (or the callback returning True) stops the restarts and returns the
    best run so far. The first start's k-means keeps the best of
    :data:`~pyro_genmodels.models.kmeans.KMEANS_SEEDINGS` seedings (on well-separated
    clusters, the clusters at once); the others take one seeding each, so that the starts
    differ (the best of five every time gave one start five times, and on 2,000 rows of
    4 overlapping clusters a worse optimum by 125 nats, where single seedings found the
    better one in 2 of 5 starts).
    Returns ``(params, losses, interrupted, error)``."""
    # float64 sums; refuses a column whose variance underflows; a constant column gets sd 1
    mean, unit = column_moments(x)
    x = (x - mean) / unit
    shift = x.shape[0] * float(unit.to(exact_dtype(unit)).log().sum())
    if callback is not None:
        user_callback = callback
        callback = lambda step, loss: user_callback(step, loss + shift)  # noqa: E731
    runs = []
    bar = tqdm(total=num_steps * model.n_init, desc="em", disable=not progress,
               file=sys.stderr, leave=False)
    try:
        with torch.no_grad():
            for r in range(model.n_init):
                runs.append(_em_run(model, x, num_steps=num_steps, tol=tol,
                                    reg_covar=reg_covar, callback=callback, bar=bar,
                                    num_seedings=KMEANS_SEEDINGS if r == 0 else 1))
                if runs[-1][2] is not None:
                    break
    finally:
        bar.close()
    interrupted = runs[-1][2] == "interrupted"
    ok = [r for r in runs if r[3] is None and r[1]] or [r for r in runs if r[1]] or runs
    params, losses, _, error = min(ok, key=lambda r: r[1][-1] if r[1] else math.inf)
    params = {**params, "locs": mean + unit * params["locs"],
              "scales": unit * params["scales"]}
    return params, [loss + shift for loss in losses], interrupted, error


@dataclasses.dataclass(frozen=True, kw_only=True)
class EMOptions:
    """Options of expectation-maximization.

    Attributes:
        num_steps: maximum EM iterations per start.
        tol: stop when the mean log-likelihood per point improves by less than ``tol``.
        reg_covar: added to each covariance's diagonal, in units of its column's
            variance (a constant column's: the data's; scikit-learn adds it in the
            data's units).
        callback: ``callback(step, loss)`` after each iteration; ``True`` stops.
    """

    num_steps: int = 500
    tol: float = 1e-6
    reg_covar: float = 1e-6
    callback: Optional[Callable] = None

    def __post_init__(self):
        store_counts(self, "num_steps")
        positive_float(self.tol, "tol")
        nonnegative_float(self.reg_covar, "reg_covar")
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"Expected callback to be callable, but got "
                            f"{type(self.callback).__name__}")


class EM(Engine):
    """``mle`` by expectation-maximization: ``n_init`` k-means starts, the best kept.
    Closed-form updates, not the optimization loop; it reports through the same
    :class:`~pyro_genmodels.infer.loop.FitResult`. ``losses`` are the negative total
    log-likelihoods of the winning run, one per iteration (non-increasing: EM never
    decreases the likelihood)."""

    Options = EMOptions

    def run(self, model, data, opts: EMOptions, *, method: str, progress: bool) -> FitResult:
        params, losses, interrupted, error = best_em(
            model, data.x, num_steps=opts.num_steps, tol=opts.tol, reg_covar=opts.reg_covar,
            callback=opts.callback, progress=progress)
        if error is not None:
            error = NonFiniteLossError(error[0], error[1], "log-likelihood at an EM step",
                                       hint="The fit keeps the last finite parameters; try "
                                            "a larger reg_covar.")
        return FitResult(point=params, losses=losses, interrupted=interrupted, error=error,
                         info={"algorithm": "em", "n_init": model.n_init,
                               "iterations": len(losses)})


class Relabeled(Engine):
    """A posterior engine (``vi``, ``nuts``) whose draws are then relabeled to one
    common component ordering (:func:`relabel`)."""

    def __init__(self, inner: Engine):
        self.inner, self.Options, self.defaults = inner, inner.Options, inner.defaults

    def run(self, model, data, opts, *, method: str, progress: bool) -> FitResult:
        result = self.inner.run(model, data, opts, method=method, progress=progress)
        if result.error is None:  # (a failed fit's draws may be non-finite)
            assert result.posterior is not None  # the inner engine is a posterior one
            result.posterior = relabel(model, result.posterior)
            result.info["relabeled"] = True
        return result


# ---------------------------------------------------------------------- label switching
def relabel(model: GaussianMixture, posterior: Dict[str, torch.Tensor],
            num_passes: int = 3) -> Dict[str, torch.Tensor]:
    """Permute the components of every draw to one common labeling.

    Pivotal reordering: each draw's components are matched to the current mean component
    locations by the Hungarian algorithm on squared distances, the mean is recomputed,
    and this is repeated. Densities are invariant to the permutation; only per-component
    summaries (``fit.params["locs"]``, ArviZ tables) change.
    """
    from scipy.optimize import linear_sum_assignment  # here: scipy costs every import

    shape = posterior["locs"].shape[:2]  # (chains, draws)
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in posterior.items()}
    locs = flat["locs"]
    perms = torch.arange(model.n_components).expand(locs.shape[0], -1).clone()
    for _ in range(num_passes):
        ref = locs[torch.arange(locs.shape[0])[:, None], perms].mean(0)
        cost = torch.cdist(locs.double(), ref.double()).pow(2).cpu().numpy()
        for s in range(locs.shape[0]):
            rows, cols = linear_sum_assignment(cost[s])
            perms[s, torch.as_tensor(cols)] = torch.as_tensor(rows)
    idx = perms.to(locs.device)
    out = {}
    for k, v in flat.items():
        gather = idx.reshape(idx.shape + (1,) * (v.dim() - 2)).expand(v.shape)
        out[k] = v.gather(1, gather).reshape(shape + v.shape[1:])
    return out


@register
class GaussianMixture(GenerativeModel):
    """A mixture of ``n_components`` Gaussians with the component enumerated exactly.

    Args:
        dim: D, the number of columns of the data.
        n_components: K >= 1.
        covariance_type: ``"full"`` (a covariance per component, scales times an LKJ
            Cholesky factor) or ``"diag"`` (independent scales).
        prior_scale: sigma_0 of ``mu_k ~ N(0, sigma_0^2 I)`` and ``s_k ~ HalfNormal(sigma_0)``.
        prior_concentration: alpha of ``w ~ Dirichlet(alpha)`` (1: uniform on the simplex;
            the MAP weights are ``(N_k + alpha - 1) / (N + K (alpha - 1))``).
        lkj_concentration: eta of ``L_k ~ LKJCholesky(D, eta)``.
        n_init: k-means + EM restarts (``mle``, and the start of the other methods);
            the best log-likelihood wins.

    Sample sites: ``weights`` ``(K,)``; in the plate ``components``: ``locs`` ``(K, D)``,
    ``scales`` ``(K, D)``, ``corr_cholesky`` ``(K, D, D)`` (full, D >= 2); in the plate
    ``data``: the enumerated ``z`` and the observed ``x`` ``(N, D)``.

    Example:
        >>> import pyro_genmodels as pgm
        >>> x, z, truth = pgm.datasets.clusters(300, k=3)
        >>> fit = pgm.GaussianMixture(2, 3).fit(x, method="mle", seed=0, progress=False)
        >>> fit.predict_proba(x[:4]).shape, fit.predict(x[:4]).shape, fit.sample(5).shape
        (torch.Size([4, 3]), torch.Size([4]), torch.Size([5, 2]))
    """

    registry_name = "gaussian_mixture"
    capabilities = Capabilities(log_prob="exact", sampling="ancestral",
                                methods=("mle", "map", "vi", "nuts", "chees"))
    elbo = "TraceEnum_ELBO"
    max_plate_nesting = 1
    jit_safe = True  # JitTraceEnum_ELBO: same loss, about 2.4x faster per step (docs/guide.md)
    fit_class = MixtureFit
    engines = {"mle": EM(), "vi": Relabeled(ENGINES["vi"]), "nuts": Relabeled(ENGINES["nuts"]),
               "chees": Relabeled(ENGINES["chees"])}

    def __init__(self, dim: int, n_components: int, *, covariance_type: str = "full",
                 prior_scale: float = 10.0, prior_concentration: float = 1.0,
                 lkj_concentration: float = 1.0, n_init: int = 5) -> None:
        super().__init__(dim)
        self.n_components = positive_int(n_components, "n_components")
        self.covariance_type = check_choice(covariance_type, COVARIANCE_TYPES,
                                            "covariance_type")
        self.prior_scale = positive_float(prior_scale, "prior_scale")
        self.prior_concentration = positive_float(prior_concentration, "prior_concentration")
        self.lkj_concentration = positive_float(lkj_concentration, "lkj_concentration")
        self.n_init = positive_int(n_init, "n_init")

    @property
    def full(self) -> bool:
        """Whether the covariances have correlations (full, and D >= 2)."""
        return self.covariance_type == "full" and self.dim > 1

    @property
    def global_sites(self) -> Tuple[str, ...]:  # type: ignore[override]  # computed, never set
        """The global sample sites phi, which depend on the configuration."""
        return ("weights", "locs", "scales") + (("corr_cholesky",) if self.full else ())

    # ------------------------------------------------------------------ the Pyro program
    def model(self, x: Optional[torch.Tensor] = None, *, c: Optional[torch.Tensor] = None,
              num_data: Optional[int] = None, subsample_size: Optional[int] = None,
              subsample: Optional[torch.Tensor] = None) -> torch.Tensor:
        if c is not None:
            raise ValueError("GaussianMixture is unconditional: c must be None")
        f = self._factory
        K, D = self.n_components, self.dim
        weights = pyro.sample("weights", dist.Dirichlet(
            torch.full((K,), self.prior_concentration, **f)))
        with pyro.plate("components", K):
            locs = pyro.sample("locs", dist.Normal(torch.zeros(D, **f), self.prior_scale)
                               .to_event(1))
            scales = pyro.sample("scales", dist.HalfNormal(
                torch.full((D,), self.prior_scale, **f)).to_event(1))
            params = {"weights": weights, "locs": locs, "scales": scales}
            if self.full:
                params["corr_cholesky"] = pyro.sample("corr_cholesky", dist.LKJCholesky(
                    D, torch.tensor(self.lkj_concentration, **f)))
        plate = data_plate(x, c, num_data, subsample_size, subsample)
        with plate as idx:
            assert idx is not None  # a vectorized plate yields its indices
            obs = plate_rows(x, idx, plate.size, "x")
            z = pyro.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
            return pyro.sample("x", self._component(params, z), obs=obs)

    def _component(self, params: Dict[str, torch.Tensor],
                   z: Optional[torch.Tensor] = None) -> dist.TorchDistribution:
        """The component distributions, batch ``(*batch, K)``; indexed by ``z`` when given."""
        locs, scales = params["locs"], params["scales"]
        if z is not None:
            locs, scales = locs[z], scales[z]
        if not self.full:
            return dist.Normal(locs, scales).to_event(1)
        tril = self.scale_tril(params)
        return dist.MultivariateNormal(locs, scale_tril=tril if z is None else tril[z])

    # ------------------------------------------------------------------ densities
    def component_log_prob(self, params: Dict[str, torch.Tensor],
                           x: torch.Tensor) -> torch.Tensor:
        """``log N(x_i; mu_k, Sigma_k)``: ``(*batch, N, K)``, without materializing a
        covariance per row (diag: ``sum_d ((x_d - mu_kd) / s_kd)^2``; full: one triangular
        solve per component). Both work on ``x - mu_k``: scikit-learn's diag expansion
        ``x^2 / s^2 - 2 x mu / s^2 + mu^2 / s^2`` cancels where ``|x| >> s`` (wine + 1e6 in
        float64 moved log p by up to 0.66 nats per row; float32 wine + 1e4 by 1530)."""
        locs, scales = params["locs"], params["scales"]
        const = -0.5 * self.dim * math.log(2 * math.pi)
        if not self.full:  # a component at a time: (*batch, N, D), not K of them
            maha = torch.stack([((x - locs[..., k, None, :]) / scales[..., k, None, :])
                                .pow(2).sum(-1) for k in range(locs.shape[-2])], -1)
            return const - scales.log().sum(-1).unsqueeze(-2) - 0.5 * maha
        tril = self.scale_tril(params)  # (*batch, K, D, D)
        diff = (x.unsqueeze(-3) - locs.unsqueeze(-2)).transpose(-1, -2)  # (*batch, K, D, N)
        maha = torch.linalg.solve_triangular(tril, diff, upper=False).pow(2).sum(-2)
        logdet = tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (*batch, K)
        return (const - logdet.unsqueeze(-1) - 0.5 * maha).transpose(-1, -2)

    def _joint(self, params: Dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``log w_k + log N(x_i; mu_k, Sigma_k)``: ``(*batch, N, K)``."""
        return self.component_log_prob(params, x) + params["weights"].log().unsqueeze(-2)

    def distribution(self, params: Dict[str, torch.Tensor],
                     c: Optional[torch.Tensor] = None) -> dist.MixtureSameFamily:
        """``sum_k w_k N(mu_k, Sigma_k)`` with z summed out; sampled ancestrally."""
        return Mixture(dist.Categorical(params["weights"]), self._component(params))

    def log_prob_given(self, params: Dict[str, torch.Tensor], x: torch.Tensor,
                       c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """As :meth:`distribution`'s, by :meth:`component_log_prob` (no covariance per
        row; the scikit-learn oracle tests hold it to 1e-8)."""
        return self._joint(params, x).logsumexp(-1)

    def responsibilities(self, params: Dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``p(z_i = k | x_i, phi)``: ``(*batch, N, K)``."""
        return self._joint(params, x).softmax(-1)

    def scale_tril(self, params: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The Cholesky factors ``diag(s_k) L_k`` of the full covariances, ``(*batch, K, D,
        D)``: the one way the density, the sampler and ``covariances`` build them.

        ``L_k`` is taken in row-major layout whatever its strides: matmuls and triangular
        solves round differently on a column-major factor (LAPACK's, as EM's Cholesky
        returns it) than on a row-major one (a loaded fit's), and a fit must give the same
        bits fitted and loaded."""
        return params["scales"].unsqueeze(-1) * params["corr_cholesky"].contiguous()

    def derived(self, params: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        if self.full:
            tril = self.scale_tril(params)
            cov = tril @ tril.transpose(-1, -2)
        else:
            cov = torch.diag_embed(params["scales"] ** 2)
        return {"covariances": cov}

    def arviz_dims(self) -> Dict[str, Tuple[str, ...]]:
        matrix = ("component", "column", "column_bis")
        return {**super().arviz_dims(), "weights": ("component",),
                "locs": ("component", "column"), "scales": ("component", "column"),
                "corr_cholesky": matrix, "covariances": matrix}

    # ------------------------------------------------------------------ engine hooks
    def check_data_for(self, method: str, x: torch.Tensor) -> None:
        """Refuse data for which ``method``'s fit does not exist, before any work.

        Fewer rows than components. And, for every method but EM's ``mle`` (``map``,
        ``vi``, ``nuts``, ``chees``), a constant column among two or more rows (or one
        that varies only within the data's rounding: Gaussian's check,
        :func:`~pyro_genmodels._moments.constant_columns`): a component that takes
        those rows has a likelihood growing without bound as its scale in that column
        goes to 0, and the scales' HalfNormal prior, finite at 0, does not stop it. So
        ``map``'s log joint has no maximum (its scale shrank with ``num_steps``) and the
        posterior is improper (with the location integrated out the likelihood still
        grows as ``scale**-(N_k - 1)``; chees drew scales of 2.4e-6 there). A
        single row (K = 1) is constant in every column: ``map`` is refused there too, as
        by Gaussian; its posterior is proper. EM's ``mle`` adds ``reg_covar`` to every
        variance (a constant column's in the data's units), which bounds the
        likelihood: it fits such data. For ``map`` with full covariances, also rows on a
        hyperplane (N <= D, or collinear columns: Gaussian's check,
        :func:`~pyro_genmodels.models._checks.dependent_columns`): a component's
        covariance collapses onto it, as the smallest eigenvalue fell from 6.3e-6 after
        300 steps to 4.1e-6 after 3000 on x = (a, 2a + 1); diagonal covariances cannot
        align with such a plane."""
        if x.shape[0] < self.n_components:
            raise ValueError(f"GaussianMixture with n_components={self.n_components} needs at "
                             f"least that many data rows, but got {x.shape[0]}")
        if isinstance(self.engine(method), EM):
            return
        n = x.shape[0]
        if n == 1 and method == "map":
            raise ValueError(
                "data cannot be fitted by map with GaussianMixture: a single row makes every "
                "column constant, so the log joint grows without bound as the scales go to 0 "
                "(no maximum). Use method='mle' (EM, which regularizes the covariances with "
                "reg_covar), or sample the posterior (method='nuts' or 'vi'): for one row it "
                "is proper.")
        constant = constant_columns(x)
        if constant.any() and n > 1:
            what, remedy = constant_said(x, constant)
            raise ValueError(
                f"data cannot be fitted by {method} with GaussianMixture: {what}, so the "
                f"likelihood grows without bound as a component's scale in them goes to 0 "
                f"(no maximum, and an improper posterior under the scales' HalfNormal "
                f"prior). {remedy}, or use method='mle', whose EM regularizes the "
                f"covariances with reg_covar.")
        smallest = dependent_columns(x) if method == "map" and n > 1 and \
            self.covariance_type == "full" else None
        if smallest is not None:
            raise ValueError(
                f"data cannot be fitted by map with GaussianMixture(covariance_type='full'): "
                f"the rows lie on a hyperplane (smallest eigenvalue of their columns' "
                f"correlation matrix {smallest:.2g}), so a component's covariance can "
                f"collapse onto it and the log joint has no maximum. Drop the redundant "
                f"columns, use covariance_type='diag', or use method='mle', whose EM "
                f"regularizes the covariances with reg_covar.{precision_said(x)}")
        warn_if_prior_is_strong(x, self.prior_scale, "GaussianMixture", method,
                                coupled=self.covariance_type == "full")

    def param_units(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Every component's location in column sds (``map``, ``vi``); the scales,
        weights and correlations are unit-free."""
        return {"locs": column_units(x)}

    def init_values(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The best of ``n_init`` short k-means + EM runs (the MLE region;
        :func:`best_em`, on the columns in their units), so the start of ``map`` / ``vi``
        / ``nuts`` does not depend on the units the columns come in."""
        return best_em(self, x, num_steps=100, tol=1e-5, reg_covar=1e-6)[0]

    def get_config(self) -> Dict[str, Any]:
        return {"dim": self.dim, "n_components": self.n_components,
                "covariance_type": self.covariance_type, "prior_scale": self.prior_scale,
                "prior_concentration": self.prior_concentration,
                "lkj_concentration": self.lkj_concentration, "n_init": self.n_init}



__all__ = ["EM", "EMOptions", "GaussianMixture", "MixtureFit", "relabel"]
