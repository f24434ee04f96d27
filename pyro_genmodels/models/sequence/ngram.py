r"""The n-gram family, :class:`NGram`, and its closed-form ``mle`` / ``map`` engines.

The next-token logits are :math:`\ell = \log \theta_{x_{i-n+1:i-1}}`, a probability table
per context of the previous ``order - 1`` tokens, with a symmetric Dirichlet prior
:math:`\theta_h \sim \mathrm{Dirichlet}(\alpha \mathbf 1_V)`. The prior is conjugate:
:math:`\theta_h \mid x \sim \mathrm{Dirichlet}(\alpha + n_{h\cdot})` with
:math:`n_{hv}` the number of times v follows h. ``mle`` is :math:`n_{hv} / n_{h}`,
``map`` is :math:`(n_{hv} + \alpha - 1) / (n_h + V(\alpha - 1))` (both closed form,
exact); ``vi`` and ``nuts`` run the shared engines on the same Pyro program.

References:
    Chen & Goodman (1999), *An empirical study of smoothing techniques for language
    modeling*, Computer Speech & Language 13.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import pyro
import pyro.distributions as dist
import torch

from ..._validation import positive_float, positive_int
from ...base import Capabilities, register
from ...infer.engines import ChEESEngine, Data, Engine, MCMCEngine, NoOptions, VIEngine
from ...infer.loop import FitResult
from ...infer.objectives import data_plate, plate_rows
from .sampling import SequenceFit, generate
from .tokens import END, SequenceModel

__all__ = ["MAX_TABLE_ENTRIES", "NGram", "fit_ngram_closed_form"]

#: the most entries an n-gram table may have, V**order (contexts x outcomes); 2**26, so
#: that the counts (int64) and the probabilities (float64) take 512 MiB each
MAX_TABLE_ENTRIES = 2 ** 26
#: the most contexts ``to_arviz`` labels with their tokens (more are numbered)
MAX_LABELLED_CONTEXTS = 100_000
#: how the start of a sequence is shown in a context's label
START = "<start>"
#: how a unigram's one context (no previous token) is labelled, as in ``probs[(), a]``
NO_CONTEXT = "()"
#: the largest order whose table fits for the smallest vocabulary (one token, so V = 2)
MAX_ORDER = MAX_TABLE_ENTRIES.bit_length() - 1


def _dirichlet_log_prob(probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """``sum_h log Dirichlet(probs_h; alpha 1)``, finite on the boundary when alpha = 1."""
    V = probs.shape[-1]
    norm = math.lgamma(V * alpha) - V * math.lgamma(alpha)
    a = torch.full_like(probs, alpha - 1.0)
    return (torch.xlogy(a, probs).sum(-1) + norm).sum(-1)


class ClosedForm(Engine):
    r"""The exact ``mle`` / ``map`` of an :class:`NGram` from the transition counts
    (no options, no loop).

    mle: :math:`n_{hv} / n_h`; map: :math:`(n_{hv} + \alpha - 1) / (n_h + V(\alpha - 1))`.
    A context never seen (and, for map with alpha = 1, the same) gets the uniform
    distribution: the likelihood does not depend on it. The single loss is the negative
    log joint at the estimate (negative log-likelihood for mle).
    """

    Options = NoOptions

    def __init__(self, method: str) -> None:
        self.method = method
        super().__init__()

    def run(self, model: NGram, data: Data, opts: NoOptions, *, method: str,
            progress: bool) -> FitResult:
        return FitResult(**fit_ngram_closed_form(model, data.x, method=self.method))


def fit_ngram_closed_form(model: "NGram", x: torch.Tensor, *, method: str) -> Dict[str, Any]:
    """``{"point": {"probs": ...}, "losses": [...]}`` of :class:`ClosedForm`."""
    counts = model.counts(x)
    V = model.num_outcomes
    a = model.prior_concentration
    if method == "mle":
        num = counts
    else:
        num = counts + (a - 1.0)
    tot = num.sum(-1, keepdim=True)
    probs = torch.where(tot > 0, num / tot.clamp_min(1e-300), torch.full_like(num, 1.0 / V))
    loss = -torch.xlogy(counts, probs).sum()
    if method == "map":
        loss = loss - _dirichlet_log_prob(probs, a)
    return {"point": {"probs": probs}, "losses": [float(loss)]}


@register
class NGram(SequenceModel):
    r"""An n-gram model with a Dirichlet prior on every context's next-token distribution.

    .. math::

        \theta_h \sim \mathrm{Dirichlet}(\alpha \mathbf 1_V) \quad (h \in \text{contexts}),
        \qquad x_i \mid x_{<i} \sim \mathrm{Categorical}(\theta_{x_{i-n+1:i-1}}),

    the context h being the previous ``order - 1`` tokens, padded by a start symbol
    (``order=1``: a unigram, one context). V = K + 1 counts the end token.

    ========  =====================================================================
    method    probs[h, v]
    ========  =====================================================================
    ``mle``   :math:`n_{hv} / n_h` (closed form; unseen transitions get 0, log_prob -inf)
    ``map``   :math:`(n_{hv} + \alpha - 1) / (n_h + V(\alpha - 1))` (closed form;
              alpha = 2 is add-one smoothing; needs alpha >= 1)
    ``vi``    AutoNormal (default) / AutoMultivariateNormal on ``probs`` (posterior
              approximation; mean field by default, see below)
    ``nuts``  posterior draws; the exact posterior is Dirichlet(alpha + n_h)
    ========  =====================================================================

    Args:
        order: n >= 1, the n of the n-gram. The table has V^order entries (contexts x
            outcomes), at most :data:`MAX_TABLE_ENTRIES` (2^26): a larger order is refused
            here, or, for text whose vocabulary ``fit`` builds, when the fit starts.
        prior_concentration: alpha > 0 of the symmetric Dirichlet prior.
        vocab: the characters (text data; default: built by ``fit`` from the strings).
        vocab_size: K, for integer token ids ``0..K-1`` instead of text.

    ``vi``'s guide is mean field (``guide="normal"``) by default, because the exact
    posterior is: in the stick-breaking coordinates of the simplex, where the guide
    lives, the fractions of a Dirichlet are independent Betas (and the contexts are
    independent), so a full covariance adds (C (V - 1))^2 / 2 parameters that only learn
    noise. On 300 of the names (C (V - 1) = 702) the default ends 35 nats above the exact
    -log p(x) (4621), ``guide="mvn"`` 141 nats above in about 3 times the time.

    Sample sites: ``probs`` ``(C, V)`` in the plate ``contexts`` (C = V^(order-1)), and
    the observed ``x`` ``(N, T)`` in the plate ``data`` (one masked Categorical per
    position, vectorized: ``Categorical(probs[context]).mask(m).to_event(1)``).

    Example:
        >>> import pyro_genmodels as pgm
        >>> from pyro_genmodels.models.sequence import NGram
        >>> fit = NGram(2).fit(["abba", "ab", "ba"], method="mle")
        >>> fit.vocab, fit.params["probs"].shape
        ('ab', torch.Size([3, 3]))
        >>> fit.log_prob(["ab", "aa"])  # "aa" uses an unseen transition
        tensor([-2.4849,    -inf])
        >>> len(fit.sample(4, seed=0, prefix="b"))
        4
    """

    registry_name = "ngram"
    capabilities = Capabilities(log_prob="exact", sampling="ancestral",
                                methods=("mle", "map", "vi", "nuts", "chees"))
    global_sites = ("probs",)
    engines = {"mle": ClosedForm("mle"), "map": ClosedForm("map"),
               "vi": VIEngine(num_steps=1000, num_posterior_samples=500, guide="normal"),
               "nuts": MCMCEngine("nuts", num_samples=300, warmup_steps=300),
               "chees": ChEESEngine(num_samples=300, warmup_steps=300)}
    fit_class = SequenceFit

    def __init__(self, order: int, *, prior_concentration: float = 1.0,
                 vocab: Optional[str] = None, vocab_size: Optional[int] = None) -> None:
        super().__init__(vocab=vocab, vocab_size=vocab_size)
        self.order = positive_int(order, "order")
        if self.order > MAX_ORDER:
            raise ValueError(f"Expected order <= {MAX_ORDER}, but got {order}: an n-gram "
                             f"table has V**order entries (V >= 2: the tokens and the end "
                             f"token), over the limit of 2**{MAX_ORDER} = "
                             f"{MAX_TABLE_ENTRIES:,} for any order above {MAX_ORDER}")
        if self.known and self.num_outcomes ** self.order > MAX_TABLE_ENTRIES:
            V = self.num_outcomes
            raise ValueError(f"order={self.order} is too large for a vocabulary of "
                             f"{V - 1} tokens: its table would have {V}**{self.order} = "
                             f"{V ** self.order:,} entries ({V}**{self.order - 1} contexts x "
                             f"V = {V} outcomes, the end token included), more than "
                             f"{MAX_TABLE_ENTRIES:,}; use a smaller order")
        self.prior_concentration = positive_float(prior_concentration, "prior_concentration")

    @property
    def num_contexts(self) -> int:
        """C = V^(order - 1), the number of contexts (the start symbol shares the end
        token's id)."""
        return self.num_outcomes ** (self.order - 1)

    def context_ids(self, x: torch.Tensor) -> torch.Tensor:
        """The context index of every position of an encoded batch, ``(N, T)``."""
        V, n = self.num_outcomes, self.order - 1
        if n == 0:
            return torch.zeros_like(x)
        padded = torch.cat([torch.full_like(x[:, :1], self.end_id).expand(-1, n), x], 1)
        ctx = torch.zeros_like(x)
        for j in range(n):
            ctx = ctx * V + padded[:, j:j + x.shape[1]]
        return ctx

    def counts(self, x: torch.Tensor) -> torch.Tensor:
        """Transition counts ``n[h, v]``, ``(C, V)`` in the model's dtype."""
        V = self.num_outcomes
        flat = (self.context_ids(x) * V + x)[self.mask(x, self.end_id)]
        return torch.bincount(flat, minlength=self.num_contexts * V).reshape(-1, V).to(
            self._anchor.dtype)

    def model(self, x: Optional[torch.Tensor] = None, *, c: Optional[torch.Tensor] = None,
              num_data: Optional[int] = None, subsample_size: Optional[int] = None,
              subsample: Optional[torch.Tensor] = None) -> torch.Tensor:
        self.validate_context(c, 1)
        f = self._factory
        with pyro.plate("contexts", self.num_contexts):
            probs = pyro.sample("probs", dist.Dirichlet(
                torch.full((self.num_outcomes,), self.prior_concentration, **f)))
        if x is None:
            tokens = generate(self, {"probs": probs}, num_data or 1, None)
            with pyro.plate("data", tokens.shape[0]):
                return pyro.deterministic("x", tokens, event_dim=1)
        plate = data_plate(x, c, num_data, subsample_size, subsample)
        with plate as idx:
            assert idx is not None  # a vectorized plate yields its indices
            obs = plate_rows(x, idx, plate.size, "x")
            d = dist.Categorical(probs[self.context_ids(obs)])
            return pyro.sample("x", d.mask(self.mask(obs, self.end_id)).to_event(1), obs=obs)

    def logits_given(self, params: Dict[str, torch.Tensor], x: torch.Tensor,
                     c: Optional[torch.Tensor] = None) -> torch.Tensor:
        return params["probs"][..., self.context_ids(x), :].log()

    def token_log_probs(self, params: Dict[str, torch.Tensor], x: torch.Tensor,
                        c: Optional[torch.Tensor] = None, *, include_end: bool = True
                        ) -> torch.Tensor:
        probs = params["probs"]
        V = self.num_outcomes
        flat = self.context_ids(x) * V + x
        lp = probs.reshape(probs.shape[:-2] + (-1,))[..., flat].log()
        keep = self.mask(x, self.end_id)
        if not include_end:
            keep = keep & (x != self.end_id)
        return torch.where(keep, lp, torch.zeros((), dtype=lp.dtype, device=lp.device))

    def _row_logits(self, probs: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        if probs.dim() == 2:
            return probs[ctx].log()
        return probs[torch.arange(ctx.shape[0], device=ctx.device), ctx].log()

    def start(self, params: Dict[str, torch.Tensor], n: int, c: Optional[torch.Tensor],
              capacity: int) -> Tuple[torch.Tensor, torch.Tensor]:
        ctx = torch.full((n,), self.num_contexts - 1, dtype=torch.long,
                         device=self._anchor.device)
        return self._row_logits(params["probs"], ctx), ctx

    def advance(self, params: Dict[str, torch.Tensor], state: torch.Tensor,
                token: torch.Tensor, c: Optional[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        ctx = (state * self.num_outcomes + token) % self.num_contexts
        return self._row_logits(params["probs"], ctx), ctx

    def check_data_for(self, method: str, x: torch.Tensor) -> None:
        if method == "map" and self.prior_concentration < 1:
            raise ValueError(f"The MAP of a Dirichlet({self.prior_concentration}) prior is on "
                             f"the boundary of the simplex (no closed form): map needs "
                             f"prior_concentration >= 1; use mle, vi or nuts")

    def init_values(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        counts = self.counts(x) + self.prior_concentration
        return {"probs": counts / counts.sum(-1, keepdim=True)}

    def posterior_concentration(self, x: torch.Tensor) -> torch.Tensor:
        """The exact posterior ``Dirichlet(alpha + n_h)`` concentrations, ``(C, V)``."""
        return self.counts(x) + self.prior_concentration

    def num_params(self) -> int:
        r"""The free parameters (AIC, BIC): V - 1 per context that can occur. The start
        symbol shares the end's id, so a context is some ``<start>`` symbols followed by
        ``j`` tokens, :math:`\sum_{j=0}^{n-1} K^j` of the :math:`V^{n-1}` rows; the
        others ("a token, then ``<start>``") never occur, and their rows keep the prior."""
        K, n = self.num_outcomes - 1, self.order - 1
        return sum(K ** j for j in range(n + 1)) * (self.num_outcomes - 1)

    def arviz_dims(self) -> Dict[str, Tuple[str, ...]]:
        return {**super().arviz_dims(), "probs": ("context", "token")}

    def arviz_coords(self) -> Dict[str, List[str]]:
        """``token``: the vocabulary and ``<end>``; ``context``: the previous ``order - 1``
        tokens, oldest first, ``<start>`` before the sequence (numbered instead when
        there are more than ``MAX_LABELLED_CONTEXTS``); a unigram's one context, no
        token, is :data:`NO_CONTEXT` (``"()"``)."""
        V = self.num_outcomes
        names = ([str(i) for i in range(V - 1)] if self.token_mode
                 else list(self.vocab or ""))
        coords = {"token": names + [END]}
        n = self.order - 1
        if self.num_contexts <= MAX_LABELLED_CONTEXTS:
            history = names + [START]
            sep = " " if self.token_mode else ""
            coords["context"] = [sep.join(history[(h // V ** (n - 1 - j)) % V]
                                          for j in range(n)) or NO_CONTEXT
                                 for h in range(self.num_contexts)]
        return coords

    def get_config(self) -> Dict[str, Any]:
        return {"order": self.order, "prior_concentration": self.prior_concentration,
                "vocab": self.vocab, "vocab_size": self._vocab_size}
