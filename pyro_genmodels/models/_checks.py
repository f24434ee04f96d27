"""Checks of the neural families' arguments (GAN, Flow, EnergyModel, Diffusion,
ScoreModel): hidden widths, non-negative numbers, and a user's network, probed once at
construction so that a wrong signature or output shape fails there, not mid-fit; of
data whose columns are linearly dependent (:func:`dependent_columns`); and of a prior in
the data's units that is strong for them (:func:`warn_if_prior_is_strong`).
"""

from __future__ import annotations

import itertools
import math
import numbers
import warnings
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import torch
from torch import nn

from .._columns import said
from .._frames import outside_level
from .._rng import seeded
from .._validation import positive_int

#: the batch size of the probe of a user's network
PROBE_ROWS = 2


def hidden_widths(hidden: Any, name: str = "hidden") -> Tuple[int, ...]:
    """``hidden`` as a tuple of layer widths: a sequence of positive ints, or one
    positive int for a single hidden layer (as ``VAE`` takes it). Whether ``()`` is
    allowed is the caller's to say."""
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        hidden = (hidden,)
    if isinstance(hidden, (str, bytes, bool)) or not isinstance(hidden, Iterable):
        raise TypeError(f"Expected {name} to be a sequence of positive ints (layer widths) "
                        f"or one positive int, but got {hidden!r}")
    return tuple(positive_int(h, f"{name}[{i}]") for i, h in enumerate(hidden))


def _shape(width: Optional[int]) -> str:
    return "(B,)" if width is None else f"(B, {width})"


def check_network(net: nn.Module, name: str, args: Sequence[Tuple[str, Optional[int], float]],
                  outputs: Sequence[Optional[int]]) -> None:
    """Call a user's ``net`` once on a batch of :data:`PROBE_ROWS` rows; a ValueError
    naming ``name`` if the call fails or returns another shape.

    ``args`` are the call's arguments, ``(label, width, fill)``: a tensor ``(B, width)``
    (``(B,)`` for ``width=None``) filled with ``fill``, in the dtype and on the device of
    the network's first floating parameter or buffer. ``outputs`` are the accepted output
    widths (``None``: ``(B,)``). The probe leaves the network as it was: it runs in eval
    mode (no batch-norm statistics move), without gradients, and under :func:`seeded`
    (the caller's random state is restored after).
    """
    ref = next((t for t in itertools.chain(net.parameters(), net.buffers())
                if t.is_floating_point()), None)
    kw: Dict[str, Any] = {"dtype": torch.get_default_dtype() if ref is None else ref.dtype,
          "device": None if ref is None else ref.device}
    rows = PROBE_ROWS
    inputs = [torch.full((rows,) if w is None else (rows, w), fill, **kw)
              for _, w, fill in args]
    call = f"{name}({', '.join(f'{label} {_shape(w)}' for label, w, _ in args)})"
    want = " or ".join(_shape(w) for w in outputs)
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        with seeded(0), torch.no_grad():
            out = net(*inputs)
    except Exception as e:
        raise ValueError(f"Expected {name} to be callable as {call} and to return {want}, "
                         f"but calling it with B = {rows} raised {type(e).__name__}: {e}"
                         ) from e
    finally:
        for m, mode in modes:
            m.training = mode
    shapes = [(rows,) if w is None else (rows, w) for w in outputs]
    if not isinstance(out, torch.Tensor) or tuple(out.shape) not in shapes:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"Expected {name}, called as {call}, to return {want}, but with "
                         f"B = {rows} it returned {got}")


def correlation_spectrum(x: torch.Tensor, block: int = 65536,
                         eps: Optional[float] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ascending eigenvalues of the correlation matrix of ``x``'s columns ``(N, D)``
    (a constant column counts as a zero column), in float64, and for each the level at
    or below which it is the data's own rounding, not a direction the rows vary in.

    Columns that are exactly dependent but stored in ``x``'s dtype leave eigenvalues of
    their rounding errors. A value v is off by at most half an ulp, ``eps |v| / 2``, so
    standardized column j by at most ``delta_j / 2``, ``delta_j = eps * max|x_j| / sd_j``
    (centring only lowers the errors' variance): along a unit direction a the rounding
    adds at most ``b(a) / 4`` of variance, ``b(a) = (sum_j |a_j| delta_j)^2``.
    Eigenvalue k's level is that bound along its eigenvector a_k, ``max(4 lambda_max,
    D / 4) * b(a_k)``, plus float64's accumulation over N rows, ``lambda_max eps_64 D
    sqrt(N)``. A dependence that is an eigenvector is caught with errors of up to
    ``4 sqrt(lambda_max)`` roundings (room for a column computed in ``x``'s dtype by a
    few operations, ``3 a - 0.5 b``). One spread over many eigenvectors, ``a = sum_k
    c_k a_k``, is caught too: were every lambda_k above ``K b(a_k)``, ``sqrt b(a) <=
    sum_k |c_k| sqrt b(a_k) < sqrt(D sum_k c_k^2 lambda_k / K) <= sqrt(D b(a) / (4 K))``,
    false for ``K >= D / 4`` (hence that floor).

    Per eigenvector, not ``4 lambda_max D max_j delta_j^2`` for all (Cauchy-Schwarz):
    one float32 column with a large offset has a large delta_j, which put every level
    at 0.46 and refused breast cancer with column 9 shifted by 1000 (smallest eigenvalue
    1.3e-4, |a_9| 0.005 along it: level 3.6e-7 now). Real columns that are merely
    correlated stay far above it (raw breast cancer in float32, all rows: 1e-5 of
    lambda_max against a level of 1.2e-11 of it). Accumulated over blocks of rows, so
    that a large ``x`` is never copied whole. ``eps``: the rounding assumed (default
    ``x``'s dtype's).
    """
    x = x.detach()
    n, d = x.shape
    total = torch.zeros(d, dtype=torch.float64, device=x.device)
    peak = torch.zeros(d, dtype=torch.float64, device=x.device)
    for rows in x.split(block):
        total += rows.sum(0, dtype=torch.float64)
        peak = torch.maximum(peak, rows.abs().amax(0).double())
    mean = total / n
    # each column in units of a power of two near its peak (exact): the correlation is
    # the same, and N squares of values up to float64's limit no longer overflow
    # 2^e <= peak < 2^(e + 1), from frexp: log2 rounds up just below a power of two
    unit = torch.where(peak > 0, torch.ldexp(torch.ones_like(peak), torch.frexp(peak)[1] - 1),
                       torch.ones_like(peak))
    gram = torch.zeros(d, d, dtype=torch.float64, device=x.device)
    for rows in x.split(block):
        centred = (rows.double() - mean) / unit
        gram += centred.T @ centred
    sd = (gram.diagonal() / n).sqrt()  # in those units
    varies = sd > 0
    sd = torch.where(varies, sd, torch.ones_like(sd))
    eig, vec = torch.linalg.eigh(gram / n / sd / sd.unsqueeze(-1))
    delta = (torch.where(varies, peak / unit / sd, torch.zeros_like(sd))
             * (eps or torch.finfo(x.dtype).eps))
    along = vec.abs().T @ delta  # sum_j |a_kj| delta_j, one per eigenvector a_k
    level = (torch.clamp(4 * eig[-1], min=d / 4) * along**2
             + eig[-1] * torch.finfo(torch.float64).eps * d * n**0.5)
    return eig, level


def rank_of(x: torch.Tensor) -> int:
    """The dimension the rows of ``x`` ``(N, D)`` span around their mean: the eigenvalues
    of :func:`correlation_spectrum` above their rounding levels."""
    eig, level = correlation_spectrum(x)
    return int((eig > level).sum())


def precision_said(x: torch.Tensor) -> str:
    """For a refusal by :func:`rank_of` or :func:`dependent_columns`: a sentence when the
    columns would pass at float64's rounding, so that the dependence may be ``x``'s own
    rounding (values large against their spread keep few digits of it) or real (a column
    computed from others in ``x``'s dtype is rounded too: the two look alike), else
    ``""``."""
    if x.dtype == torch.float64 or not x.dtype.is_floating_point:
        return ""
    eig, level = correlation_spectrum(x, eps=torch.finfo(torch.float64).eps)
    if not bool((eig > level).all()):
        return ""
    return (f" It is within {str(x.dtype).replace('torch.', '')}'s rounding, though: a "
            f"column large against its spread keeps few digits of it. If the columns are "
            f"not dependent, make the data float64 from its source (casting these values "
            f"cannot restore the digits) or subtract each column's offset before rounding.")


def dependent_columns(x: torch.Tensor) -> Optional[float]:
    """The smallest eigenvalue of the correlation matrix of ``x``'s columns ``(N, D)``
    when the rows lie on a hyperplane (:func:`rank_of` below D: N <= D rows, or a column
    that is a linear combination of others, to the data's precision), else ``None``. A
    density fitted there can collapse onto the hyperplane: its likelihood has no
    maximum."""
    eig, level = correlation_spectrum(x)
    return float(eig[0]) if int((eig > level).sum()) < x.shape[1] else None


#: the message of :func:`warn_if_prior_is_strong`, to ignore where the prior is the point
STRONG_PRIOR = r".*'s prior \(prior_scale=.*, in the data's units\) moves the "


def warn_if_prior_is_strong(x: torch.Tensor, prior_scale: float, family: str, method: str,
                            *, scales: bool = True, coupled: bool = True,
                            covariance: Optional[torch.Tensor] = None) -> None:
    r"""Warn when a family's default-style priors, a location ~ N(0, s0^2) and a scale ~
    HalfNormal(s0) per column in the data's units, move a ``map`` / posterior estimate by
    more than one standard error: on raw columns (wine's proline, mean 747) a prior that
    is weak for standardized data is strong, and nothing else would say so.

    With the rows' mean m, covariance S (``covariance``, a known one, else the sample's)
    and N rows, the conjugate posterior mean of the location is
    :math:`(N S^{-1} + I / s_0^2)^{-1} N S^{-1} m`, a shift of
    :math:`(N I + S / s_0^2)^{-1} S m / s_0^2` (no inverse of S, which may be singular),
    against each column's standard error :math:`\sqrt{v}`, v = S_jj / N. Correlated
    columns move together: on raw wine the pull on proline moves alcohol's MAP by 17
    standard errors, and every column by 5 or more (measured). ``coupled=False`` takes
    S diagonal, where the shift is :math:`|m| v / (s_0^2 + v)` per column (a mixture's
    components have covariances of their own, not the data's). Where the covariance is
    fitted with the location (not ``covariance``), the per-column shift is judged too:
    with S moving, the joint shift can miss a column (two correlated columns of mean 3e5,
    sd 1, correlation -0.999: 0 se predicted, 451 and growing measured). The scale's MAP
    moves by about :math:`s^3 / (2 N s_0^2)` against its standard error :math:`s / \sqrt{2N}`,
    i.e. more than one when :math:`s^2 > s_0^2 \sqrt{2N}`.

    A single row has no standard error (s = 0 gave v = 0, and no warning for a row of
    1,300 under ``prior_scale=10``): there the warning is for columns whose value lies
    beyond the prior's sd, :math:`|x_j| > s_0`, where the prior, not the row, sets the
    posterior's location and scale."""
    n = x.shape[0]
    # every criterion compares quantities of the data's units: computed in units of a
    # power of two near the largest |x| (exact), where no square or product overflows
    peak = float(x.detach().abs().max()) if x.numel() else 0.0
    unit = 2.0 ** (math.frexp(peak)[1] - 1) if 0 < peak < math.inf else 1.0  # <= peak
    x64 = x.detach().double() / unit
    mean, var = x64.mean(0), x64.var(0, correction=0)
    v, s0 = var / n, float(prior_scale) / unit
    s2 = s0 ** 2
    strong = mean.abs() > s0 if n == 1 else torch.zeros_like(mean, dtype=torch.bool)
    if n > 1 and coupled:
        cov = (torch.cov(x64.T, correction=0).reshape(x.shape[1], -1) if covariance is None
               else covariance.detach().double().to(x64.device) / unit ** 2)
        eye = torch.eye(x.shape[1], dtype=torch.float64, device=x64.device)
        # (N I + S / s0^2)^-1 S m / s0^2 with s0^2 moved in: nothing divides by a small s0
        a = n * s2 * eye + cov
        try:
            shift = torch.linalg.solve(a, cov @ mean)
        except RuntimeError:  # singular in float64 (a row of 1e19 among wine's rows): the
            # data check refuses such columns next; the warning must not fail before it
            shift = torch.linalg.pinv(a, hermitian=True) @ (cov @ mean)
        se = (cov.diagonal() / n).sqrt()
        strong = (shift.abs() > se) & (se > 0)  # a constant column: 0, up to rounding
    if n > 1 and (not coupled or covariance is None):  # a fitted covariance moves too
        strong = strong | (mean.abs() * v / (s2 + v) > v.sqrt())
    if n > 1 and scales:
        strong = strong | (var > s2 * math.sqrt(2 * n))
    if not bool(strong.any()):
        return
    # of every column: a large one can drive the named ones without being named itself
    size = float(torch.maximum(mean.abs(), var.sqrt()).max()) * unit
    suggest = 10.0 ** math.ceil(math.log10(10 * size))
    how = (f"by more than a standard error (the columns' |mean| or sd reaches {size:.4g})"
           if n > 1
           else f"more than the row does (its |value| there reaches {size:.4g}, beyond "
                f"the prior's sd)")
    warnings.warn(
        f"{family}'s prior (prior_scale={prior_scale:g}, in the data's units) moves the "
        f"{method} fit of column(s) {said(strong)} {how}: for "
        f"columns of that size the prior is informative. If that is not intended, give a "
        f"prior_scale of the data's scale (e.g. prior_scale={suggest:g}) or fit "
        f"standardized columns.", UserWarning, stacklevel=outside_level())


def constant_said(x: torch.Tensor, constant: torch.Tensor) -> Tuple[str, str]:
    """``(what, remedy)`` for the columns ``constant`` ``(D,)`` of ``x`` that
    ``constant_columns`` flags: constant, or varying only within ``x.dtype``'s rounding
    of their size, which is the data's precision, not the quantity (float32 wine in
    units of 1e-3 plus 1e4 keeps 2-6 distinct values in 9 of its columns)."""
    cols = constant.nonzero().flatten().tolist()
    distinct = {j: int(torch.unique(x[:, j]).numel()) for j in cols}
    flat = [j for j in cols if distinct[j] == 1]
    rounded = [j for j in cols if distinct[j] > 1]
    parts, remedies = [], []
    if flat:
        parts.append(f"column(s) {said(flat)} are constant (at {x[0, flat].tolist()})")
        remedies.append("Drop the constant columns")
    if rounded:
        size = float(x[:, rounded].abs().amax())
        parts.append(f"column(s) {said(rounded)} vary only within {x.dtype}'s rounding of "
                     f"their size ({[distinct[j] for j in rounded]} distinct values, |x| up to "
                    f"{size:.4g})")
        remedies.append("subtract the offset of those that vary, or pass float64 data, so "
                        "their spread is resolved" if flat else "Subtract their offset, or "
                        "pass float64 data, so their spread is resolved")
    return "; ".join(parts), "; ".join(remedies)