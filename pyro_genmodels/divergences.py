r"""KL and f-divergences as Monte Carlo estimates with standard errors.

An f-divergence, for convex :math:`f` with :math:`f(1) = 0`, is

.. math::

    D_f(P \,\|\, Q) = \int q(x)\, f\!\left(\frac{p(x)}{q(x)}\right) dx
                    = \mathbb E_{x \sim r}\!\left[\frac{q(x)}{r(x)}\,
                      f\!\left(\frac{p(x)}{q(x)}\right)\right]

for any proposal :math:`r` that covers :math:`q`. The naive choice :math:`r = q` never
sees the mass of :math:`p` where :math:`q` is tiny (two far-apart Gaussians give TV = 0.5
instead of 1), so when both sides can be sampled the default proposal is the mixture
:math:`r = (p + q) / 2`, drawn half from each (stratified). Every term is computed from
the bounded weights :math:`w_p = p/r` and :math:`w_q = q/r` in log space:

==============  =============================  ===========================================================
``f``           :math:`f(t)`                   term :math:`(q/r) f(p/q)`
==============  =============================  ===========================================================
``kl``          :math:`t \log t`               :math:`w_p (\log p - \log q)`
``reverse_kl``  :math:`-\log t`                :math:`w_q (\log q - \log p)`
``js``          Jensen-Shannon, in [0, log 2]  :math:`\tfrac12[w_p \log\frac{p}{m} + w_q \log\frac{q}{m}]`
``tv``          :math:`\tfrac12 |t - 1|`       :math:`\tfrac12 |w_p - w_q|`
``hellinger``   :math:`\tfrac12(\sqrt t-1)^2`  :math:`\tfrac12(\sqrt{w_p} - \sqrt{w_q})^2`
``pearson``     :math:`(t - 1)^2`              :math:`(w_p - w_q)^2 / w_q`
==============  =============================  ===========================================================

with :math:`m = (p + q)/2`. ``hellinger`` is the *squared* Hellinger distance
:math:`H^2 = 1 - \int\sqrt{pq}` (the Bhattacharyya coefficient), in [0, 1].

A side with no usable density (a Fit whose ``log_prob_kind`` is ``"bound"`` or
``"estimate"``) is refused unless ``allow_inexact=True``; an ``"unnormalized"`` density
is always refused, since its unknown constant shifts every estimate, and so is a fit
with no density at all (a GAN). Both sides must describe the same data: one distribution
each (batch shape ``()``), the same event shape (or sequences over the same tokens), and
unconditional (a fit of p(x | c) is refused). Every argument is checked before any draw.

A sequence fit (``NGram``, ``AutoregressiveModel``) is sampled until every draw has
ended: a draw cut at ``max_length`` tokens is not a draw of the fit, and its log-density
would score it as a finished string, so cut draws are never scored. By default the draws
start at a cap of twice the longest training sequence (at least 16 tokens); while any is
cut, the same draws (the same seed) are extended to a four times longer cap, up to
:data:`MAX_LENGTH_LIMIT` tokens, beyond which a ValueError says how many draws were cut.
``max_length=N`` sets the cap instead (one draw; a ValueError if any is cut at N).

References:
    Ali & Silvey (1966); Csiszár (1967); Nowozin, Cseke & Tomioka (2016), *f-GAN*.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import warnings
from types import FrameType
from typing import Any, Callable, Optional, Tuple, Union

import torch

from ._rng import check_seed, child_seeds, fresh_seed
from ._validation import as_data, positive_int, with_context
from .mc import MCEstimate, draw, tail_shape, tail_threshold

LOG2 = math.log(2.0)

#: the longest cap (tokens) to which draws of a sequence fit are extended by default
MAX_LENGTH_LIMIT = 4096

#: named f-divergences: the stable term from (log p, log q, log r)
_TERMS = {
    "kl": lambda lp, lq, wp, wq: _times(wp, lp - lq),
    "reverse_kl": lambda lp, lq, wp, wq: _times(wq, lq - lp),
    "js": lambda lp, lq, wp, wq: 0.5 * (
        _times(wp, lp - (torch.logaddexp(lp, lq) - LOG2))
        + _times(wq, lq - (torch.logaddexp(lp, lq) - LOG2))),
    "tv": lambda lp, lq, wp, wq: 0.5 * (wp - wq).abs(),
    "hellinger": lambda lp, lq, wp, wq: 0.5 * (wp.sqrt() - wq.sqrt()) ** 2,
    "pearson": lambda lp, lq, wp, wq: (wp - wq) ** 2 / wq,
}
F_DIVERGENCES = tuple(_TERMS)


def _times(w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``w * v`` with ``0 * anything = 0`` (a point where that side has no mass)."""
    return torch.where(w == 0, torch.zeros_like(v), w * v)


@dataclasses.dataclass(frozen=True, repr=False)
class CrossEntropy(MCEstimate):
    """``-E_data[log q(x)]``; with known-density data also ``kl`` = KL(p_data || q) and
    ``entropy`` = H(p_data), each with its own standard error."""

    kl: Optional[MCEstimate] = None
    entropy: Optional[MCEstimate] = None

    def __repr__(self) -> str:
        base = super().__repr__()
        if self.kl is None:
            return base
        return f"{base[:-1]}, kl={self.kl!r}, entropy={self.entropy!r})"


# ---------------------------------------------------------------------- the two sides

def _is_sequence_model(model: Any) -> bool:
    return hasattr(model, "vocab") and hasattr(model, "encode") and hasattr(model, "decode")


def _outside_is_minus_inf(d: torch.distributions.Distribution, x: torch.Tensor
                          ) -> torch.Tensor:
    """``d.log_prob(x)`` in float64, -inf at the draws outside ``d``'s support (the other
    side's draws need not lie in it: N(0, 1) against Exponential(1)), where torch's
    argument check would raise and an unchecked ``log_prob`` would be a finite number."""
    try:
        support = d.support
        assert support is not None
        inside = torch.as_tensor(support.check(x))
    except (NotImplementedError, RuntimeError, AssertionError):  # d checks itself
        return d.log_prob(x).double()
    if bool(inside.all()):
        return d.log_prob(x).double()
    unchecked = copy.copy(d)
    unchecked._validate_args = False
    lp = unchecked.log_prob(x).double()
    return lp.masked_fill(~inside.expand_as(lp), -math.inf)


class _Side:
    """A distribution or Fit seen through ``log_prob`` and ``sample``.

    ``event`` says what its draws are: ``("rows", shape)`` for numeric draws of
    ``shape`` each, or ``("sequences", (vocab, vocab_size))`` for a sequence fit."""

    def __init__(self, obj: Any, name: str, allow_inexact: bool):
        self.obj = obj
        self.name = name
        self.is_fit = hasattr(obj, "log_prob_kind")
        if self.is_fit:  # a Fit
            kind = obj.log_prob_kind
            if kind == "none":
                raise ValueError(
                    f"{name} has no density (log_prob_kind 'none', e.g. a GAN), so no "
                    f"divergence can be estimated from it; compare it by its samples "
                    f"(pyro_genmodels.metrics)")
            if kind == "unnormalized":
                raise ValueError(
                    f"{name} has an unnormalized log_prob: its unknown log Z shifts every "
                    f"divergence, so none can be estimated from it")
            if kind != "exact" and not allow_inexact:
                raise ValueError(
                    f"{name}.log_prob is {'an' if kind[0] in 'aeiou' else 'a'} {kind} "
                    f"(log_prob_kind {kind!r}), not an exact log-density, so the "
                    f"divergence would be biased; pass allow_inexact=True to accept that")
            model = obj.model
            if model.is_conditional:
                raise ValueError(
                    f"{name} is a fit of a conditional model (p(x | c)): a divergence is "
                    f"between unconditional densities; pass an unconditional fit")
            self.can_sample = True
            if _is_sequence_model(model):
                self.event: Tuple[str, Tuple[Any, ...]] = (
                    "sequences", (model.vocab, getattr(model, "vocab_size", None)))
            else:
                self.event = ("rows", (int(model.dim),))
        elif isinstance(obj, torch.distributions.Distribution):
            batch = tuple(getattr(obj, "batch_shape", ()))
            if batch:
                raise ValueError(
                    f"{name} must be one distribution (batch_shape ()), but got batch_shape "
                    f"{batch}; to make the batch part of each draw, pass "
                    f"torch.distributions.Independent({name}, {len(batch)})")
            self.can_sample = obj.has_rsample or _has_sample(obj)
            self.event = ("rows", tuple(getattr(obj, "event_shape", ())))
        else:
            raise TypeError(f"{name} must be a torch/Pyro distribution or a Fit, "
                            f"got {type(obj).__name__}")

    def describe(self) -> str:
        kind, what = self.event
        if kind == "rows":
            return f"numeric draws of event shape {what}"
        vocab, size = what
        return (f"sequences over the characters {vocab!r}" if vocab is not None
                else f"token sequences over {size} ids")

    def log_prob(self, x: Any) -> torch.Tensor:
        """``(n,)`` log-densities of ``n`` draws; a scalar distribution reads a one-column
        fit's draws ``(n, 1)`` as ``(n,)`` (its ``log_prob`` would broadcast them to
        ``(n, n)``)."""
        if self.event == ("rows", ()) and isinstance(x, torch.Tensor) and x.dim() == 2 \
                and x.shape[1] == 1:
            x = x[:, 0]
        with torch.no_grad():
            if self.is_fit:
                return self.obj.log_prob(x).double()
            return _outside_is_minus_inf(self.obj, x)


    def sample(self, n: int, seed: Optional[int], max_length: Optional[int] = None) -> Any:
        if self.event[0] != "sequences":
            return draw(self.obj, n, seed=seed)
        return _finished_sequences(self.obj, n, seed, max_length, self.name)


def _finished_sequences(fit: Any, n: int, seed: Optional[int], max_length: Optional[int],
                        name: str) -> Any:
    """``n`` draws of the sequence fit ``fit``, every one ended by its end token.

    A draw of ``cap`` tokens (``fit.sample`` decodes up to the first end token, so only a
    cut draw has all ``cap``) has not ended. Without ``max_length`` the same seed is drawn
    again with a four times longer cap (the sampler draws token by token, so a longer cap
    extends the same draws) up to :data:`MAX_LENGTH_LIMIT`; a draw still cut raises."""
    if seed is None:  # one seed for every cap (the caller's RNG is untouched)
        seed = fresh_seed()
    if max_length is not None:
        caps = [max_length]
    else:
        data = getattr(fit, "data", None)
        cap = max(16, 2 * (data.shape[1] - 1)) if data is not None else 64
        caps = []
        while cap < MAX_LENGTH_LIMIT:
            caps.append(cap)
            cap *= 4
        caps.append(MAX_LENGTH_LIMIT if caps else cap)
    for cap in caps:
        xs = fit.sample(n, seed=seed, max_length=cap)
        cut = sum(len(x) >= cap for x in xs)
        if cut == 0:
            return xs
    tried = "" if max_length is not None else (
        ", the longest cap tried by default (divergences.MAX_LENGTH_LIMIT)"
        if cap == MAX_LENGTH_LIMIT else f", the default cap (twice the longest training "
        f"sequence, beyond divergences.MAX_LENGTH_LIMIT = {MAX_LENGTH_LIMIT})")
    raise ValueError(
        f"Expected every draw of {name} to end (draw its end token), but {cut} of {n} "
        f"draws were cut at max_length={cap} tokens{tried}: a cut draw is not a draw of "
        f"{name}, and log_prob would score it as a finished string; pass a larger "
        f"max_length= (every draw must end within it)")


def _same_data(a: _Side, b: _Side) -> None:
    """Refuse two sides whose draws the other cannot score (before any draw)."""
    (ka, ea), (kb, eb) = a.event, b.event
    if ka == kb == "rows":
        # a scalar distribution and a one-column fit: draws (n,) that the fit reads as (n, 1)
        scalar_vs_column = {ea, eb} == {(), (1,)} and (a.is_fit or b.is_fit)
        if ea == eb or scalar_vs_column:
            return
        raise ValueError(f"{a.name} and {b.name} must have the same event shape, but "
                         f"{a.name} has {ea} and {b.name} has {eb}")
    if ka == kb == "sequences" and ea == eb:
        return
    raise ValueError(f"{a.name} and {b.name} must describe the same kind of data, but "
                     f"{a.name} has {a.describe()} and {b.name} {b.describe()}")


def _data_rows(data: Any, q: _Side, name: str = "data") -> Any:
    """Held-out draws ``data`` in the form that ``q`` scores: ``(N, *event)`` for a
    numeric ``q`` (``(N,)`` for a scalar one), checked as :func:`as_data` checks rows."""
    kind, event = q.event
    if kind == "sequences":
        return data
    if len(event) == 0:
        return as_data(data, dim=1, name=name)[:, 0]
    if len(event) == 1:
        return as_data(data, dim=event[0], name=name)
    try:
        x = torch.as_tensor(data) if not isinstance(data, torch.Tensor) else data.detach()
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} could not be read as a tensor of shape (N, *{event}): "
                        f"{e}") from None
    if not x.is_floating_point() or tuple(x.shape[1:]) != event or x.shape[0] == 0:
        raise ValueError(f"{name} must be a floating tensor of shape (N, *{event}), got "
                         f"{x.dtype} of shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite")
    return x


def _has_sample(d: torch.distributions.Distribution) -> bool:
    return type(d).sample is not torch.distributions.Distribution.sample or \
        type(d).rsample is not torch.distributions.Distribution.rsample


def _exact_kl(p: Any, q: Any) -> Optional[float]:
    if isinstance(p, torch.distributions.Distribution) and \
            isinstance(q, torch.distributions.Distribution):
        try:
            return float(torch.distributions.kl_divergence(p, q).sum())
        except NotImplementedError:
            return None
    return None


# ---------------------------------------------------------------------- public API
def f_divergence(p: Any, q: Any, *, f: Union[str, Callable] = "kl", num_samples: int = 10000,
                 proposal: str = "auto", seed: Optional[int] = None,
                 allow_inexact: bool = False, max_length: Optional[int] = None
                 ) -> MCEstimate:
    """Monte Carlo estimate of ``D_f(p || q)`` with its standard error.

    Args:
        p, q: torch/Pyro distributions or fits (:class:`~pyro_genmodels.Fit`; the same
            event shape).
        f: one of ``"kl"``, ``"reverse_kl"``, ``"js"``, ``"tv"``, ``"hellinger"``
            (squared), ``"pearson"``, or a callable ``f(t)`` (convex, ``f(1) = 0``) applied
            elementwise to the density ratio ``t = p/q``.
        num_samples: draws in all (split evenly between p and q for the mixture).
        proposal: ``"auto"`` (``p`` for ``kl``, ``q`` for ``reverse_kl``, else the mixture
            when both sides can be sampled), ``"mixture"``, ``"p"`` or ``"q"``.
        seed: reproducible draws (the caller's RNG is untouched).
        allow_inexact: accept a Fit whose ``log_prob`` is a bound or an estimate.
        max_length: sequence fits only: the most tokens a draw may have; a ValueError if
            any draw has not ended within it. Default: twice the longest training
            sequence (at least 16), extended (the same draws) while any draw is cut, up to
            :data:`MAX_LENGTH_LIMIT` (see the module docstring).

    Returns:
        :class:`~pyro_genmodels.mc.MCEstimate`; ``exact`` is set for ``kl`` and
        ``reverse_kl`` where ``torch.distributions.kl_divergence`` knows the pair;
        ``pareto_k`` is the Pareto shape of the terms' right tail (at most 0 for bounded
        terms; ``None`` with no tail to fit, :func:`~pyro_genmodels.mc.tail_shape`):
        above :func:`~pyro_genmodels.mc.tail_threshold` (0.7 from 2155 draws) a warning
        says the estimate is unreliable and the divergence may be infinite.

    Example:
        >>> import torch
        >>> from pyro_genmodels import divergences
        >>> p, q = torch.distributions.Normal(0., 1.), torch.distributions.Normal(20., 1.)
        >>> round(divergences.f_divergence(p, q, f="tv", seed=0).estimate, 3)
        1.0
    """
    num_samples = positive_int(num_samples, "num_samples")
    seed = check_seed(seed)
    if isinstance(f, str):
        if f not in _TERMS:
            raise ValueError(f"Unknown f-divergence {f!r}; expected one of {list(_TERMS)} "
                             f"or a callable f(t)")
        term = _TERMS[f]
    elif callable(f):
        user_f = f

        def term(lp, lq, wp, wq):
            t = torch.exp(lp - lq)
            out = _times(wq, _user_values(user_f(t), t))
            # p/q overflowed (q has no mass there in float64): q f(p/q) = p f'(inf)
            lost = torch.isinf(t) & (wp > 0) & torch.isfinite(wp)
            if not lost.any():
                return out
            slope = _slope_at_infinity(user_f)
            if slope is None:
                i = int(lost.nonzero()[0])
                raise ValueError(
                    f"q has no mass where p has at {int(lost.sum())} of {lost.numel()} draws "
                    f"(e.g. log p = {lp[i].item():.6g}, log q = {lq[i].item():.6g}): there "
                    f"the term q f(p/q) is p times the limit of f(t)/t as t -> inf, which "
                    f"does not settle for this f (f(t)/t at t = 1e150 and 1e300 differ: the "
                    f"divergence may be infinite); pass a named f (one of {list(_TERMS)}) "
                    f"or a q that covers p")
            return torch.where(lost, wp * slope, out)
    else:
        raise TypeError(f"f must be a name or a callable, got {type(f).__name__}")
    if not isinstance(proposal, str) or proposal not in ("auto", "mixture", "p", "q"):
        raise ValueError(f"Unknown proposal {proposal!r}; expected 'auto', 'mixture', 'p' "
                         f"or 'q'")
    P, Q = _Side(p, "p", allow_inexact), _Side(q, "q", allow_inexact)
    _same_data(P, Q)
    if max_length is not None:
        max_length = positive_int(max_length, "max_length")
        if P.event[0] != "sequences":
            raise ValueError(f"max_length caps the draws of sequence fits, but p and q have "
                             f"{P.describe()}: leave max_length=None")
    if proposal == "mixture" and not (P.can_sample and Q.can_sample):
        side = "p" if not P.can_sample else "q"
        raise ValueError(f"proposal='mixture' draws from p and q, but {side} has no sample "
                         f"method; use proposal={'q' if side == 'p' else 'p'!r}")
    if proposal == "auto":
        if f == "kl" and P.can_sample:
            proposal = "p"
        elif f == "reverse_kl" and Q.can_sample:
            proposal = "q"
        elif P.can_sample and Q.can_sample:
            proposal = "mixture"
        else:
            proposal = "q" if Q.can_sample else "p"
    exact = None
    if f == "kl":
        exact = _exact_kl(p, q)
    elif f == "reverse_kl":
        exact = _exact_kl(q, p)

    def values(x: torch.Tensor, mixture: bool) -> torch.Tensor:
        lp, lq = P.log_prob(x), Q.log_prob(x)
        if mixture:
            lr = torch.logaddexp(lp, lq) - LOG2
        else:
            lr = lp if proposal == "p" else lq
        wp, wq = torch.exp(lp - lr), torch.exp(lq - lr)
        return _no_nan(term(lp, lq, wp, wq), lp, lq, "f(t)" if callable(f) else f"f={f!r}")

    if proposal == "mixture":
        half = max(1, num_samples // 2)
        seeds = (None, None) if seed is None else child_seeds(seed, 2)
        vp = values(P.sample(half, seeds[0], max_length), True)
        vq = values(Q.sample(half, seeds[1], max_length), True)
        a, b = MCEstimate.from_values(vp), MCEstimate.from_values(vq)
        est = 0.5 * (a.estimate + b.estimate)
        se = 0.5 * math.sqrt(a.stderr ** 2 + b.stderr ** 2)
        return _tail_checked(MCEstimate(est, se, 2 * half, exact), torch.cat([vp, vq]), f)
    sampled = P if proposal == "p" else Q
    if not sampled.can_sample:
        raise ValueError(f"proposal={proposal!r} needs samples of {proposal}, which has no "
                         f"sample method")
    v = values(sampled.sample(num_samples, seed, max_length), False)
    return _tail_checked(MCEstimate.from_values(v, exact=exact), v, f)


def _tail_checked(res: MCEstimate, terms: torch.Tensor, f: Any,
                  name: Optional[str] = None) -> MCEstimate:
    """``res`` with the Pareto shape of its terms' right tail (all draws of the proposal:
    the mixture's two halves together, a sample of r; either half alone can show a
    bounded term's rare largest values as a heavy tail), and a warning above
    :func:`~pyro_genmodels.mc.tail_threshold`, pointing at the caller: the terms
    q f(p/q) / r have so heavy a tail that the average is unreliable, and the divergence
    may be infinite (chi^2 of N(0, 2^2) against N(0, 1), for one: its terms' tail has
    k = 3)."""
    k = tail_shape(terms)
    if k is None:
        return res
    limit = tail_threshold(terms.numel())
    if k > limit and res.exact is None and math.isfinite(res.estimate):
        name = name or (f"f={f!r}" if isinstance(f, str) else "this f")
        frame: Optional[FrameType] = sys._getframe(1)  # the first caller outside
        level = 2  # this module
        while frame is not None and frame.f_globals.get("__name__") == __name__:
            frame, level = frame.f_back, level + 1
        warnings.warn(
            f"The {name} estimate {res.estimate:.6g} ± {res.stderr:.2g} is unreliable: its "
            f"terms have a heavy right tail (Pareto k = {k:.2f} > {limit:.2f}; the variance "
            f"is infinite from k = 0.5, the mean from k = 1), so the divergence may be "
            f"infinite (one side has far too little mass where the other has it). Check it "
            f"with more draws, or use a bounded f (tv, js, hellinger)", UserWarning,
            stacklevel=level)
    return dataclasses.replace(res, pareto_k=k)


def _slope_at_infinity(f: Callable) -> Optional[float]:
    """``lim f(t) / t`` as ``t -> inf`` (f'(inf) of a convex f), read at t = 1e150 and
    1e300: their value where the two agree to 1e-9 (0 for an f that grows slower than t,
    1/2 for TV's), else ``None`` (a limit that is infinite or that these two points do
    not show)."""
    t = torch.tensor([1e150, 1e300], dtype=torch.float64)
    a, b = (_user_values(f(t), t) / t).tolist()
    if math.isfinite(a) and math.isfinite(b) and abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b)):
        return b
    return None


def _user_values(v: Any, t: torch.Tensor) -> torch.Tensor:
    """The values of a user's ``f(t)``: a real tensor of ``t``'s shape, as float64."""
    try:
        out = torch.as_tensor(v)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"f(t) must return a real tensor of the shape of t, "
                        f"{tuple(t.shape)}, but returned {type(v).__name__}") from None
    if out.is_complex() or not (out.is_floating_point() or out.dtype in (
            torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)):
        raise TypeError(f"f(t) must return a real tensor, but returned dtype {out.dtype}")
    if tuple(out.shape) != tuple(t.shape):
        raise ValueError(f"f(t) must return one value per element of t, shape "
                         f"{tuple(t.shape)}, but returned shape {tuple(out.shape)}")
    return out.double()


def _no_nan(v: torch.Tensor, lp: torch.Tensor, lq: torch.Tensor, what: str,
            p: str = "p") -> torch.Tensor:
    """The terms ``v`` of ``what``, or a ValueError that says which argument made one NaN:
    a user's ``f`` (``what == "f(t)"``), or p (named ``p``) and q, whose log-densities
    there are undefined together (inf - inf)."""
    bad = torch.isnan(v)
    if not bad.any():
        return v
    i = int(bad.nonzero()[0])
    if what == "f(t)":
        raise ValueError(f"f(t) returned NaN at {int(bad.sum())} of {v.numel()} draws (e.g. "
                         f"t = p/q = exp({lp[i].item():.6g} - {lq[i].item():.6g}))")
    raise ValueError(f"The {what} terms are undefined at {int(bad.sum())} of {v.numel()} "
                     f"draws: there log {p} = {lp[i].item()} and log q = {lq[i].item()}")


def kl(p: Any, q: Any, *, num_samples: int = 10000, seed: Optional[int] = None,
       allow_inexact: bool = False, max_length: Optional[int] = None) -> MCEstimate:
    """``KL(p || q) = E_p[log p(x) - log q(x)]`` from draws of p (see :func:`f_divergence`;
    ``max_length`` caps the draws of a sequence fit, each of which must end within it)."""
    return f_divergence(p, q, f="kl", num_samples=num_samples, seed=seed,
                        allow_inexact=allow_inexact, max_length=max_length)


def cross_entropy(data: Any, q: Any, *, num_samples: Optional[int] = None,
                  seed: Optional[int] = None, allow_inexact: bool = False) -> CrossEntropy:
    """``H(p_data, q) = -E_data[log q(x)] = KL(p_data || q) + H(p_data)``.

    With ``data`` an ``(N, D)`` sample (held-out points) this is the held-out negative
    log-likelihood, the quantity MLE minimizes; ``H(p_data)`` is unknown, so only the
    cross-entropy is returned. With ``data`` a distribution of known density (e.g.
    :func:`pyro_genmodels.datasets.toy`), ``num_samples`` draws (``None``: 10,000) are
    taken under ``seed`` and the true ``kl`` and ``entropy`` are returned too, each with
    its standard error; with data rows, which are scored as they are, ``num_samples`` and
    ``seed`` are refused (they were ignored).
    """
    Q = _Side(q, "q", allow_inexact)
    if isinstance(data, torch.distributions.Distribution):
        P = _Side(data, "data", allow_inexact)
        _same_data(P, Q)
        x = P.sample(positive_int(10000 if num_samples is None else num_samples,
                                  "num_samples"), check_seed(seed))
        lp, lq = P.log_prob(x), Q.log_prob(x)
        ce = MCEstimate.from_values(_no_nan(-lq, lp, lq, "cross-entropy", "data"))
        terms = _no_nan(lp - lq, lp, lq, "kl", "data")
        kl_est = _tail_checked(MCEstimate.from_values(terms, exact=_exact_kl(data, q)),
                               terms, "kl", name="cross-entropy's KL")
        return CrossEntropy(ce.estimate, ce.stderr, ce.num_samples, kl=kl_est,
                            entropy=MCEstimate.from_values(-lp))
    given = [k for k, v in (("num_samples", num_samples), ("seed", seed)) if v is not None]
    if given:
        one = len(given) == 1
        raise ValueError(f"{' and '.join(given)} {'is' if one else 'are'} for draws of a "
                         f"distribution given as data; data rows are scored as they are: "
                         f"leave {'it' if one else 'them'} out")
    x = _data_rows(data, Q)
    try:
        lq = Q.log_prob(x)
    except (TypeError, ValueError) as e:  # a sequence fit reads the sequences itself
        renamed = with_context(e, "data cannot be scored by q")
        if renamed is None:
            raise
        raise renamed from e
    ce = MCEstimate.from_values(-lq)
    return CrossEntropy(ce.estimate, ce.stderr, ce.num_samples)
