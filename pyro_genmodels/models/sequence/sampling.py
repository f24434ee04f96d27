"""Ancestral sampling with a cached state (:func:`generate`), and :class:`SequenceFit`,
the fit of a sequence model: strings (or token ids) in and out.

:func:`generate` drives the sampling hooks of a
:class:`~pyro_genmodels.models.sequence.tokens.SequenceModel`: ``start`` and ``advance``
carry the family's state from one token to the next, so a step costs the same at every
position; ``logits_given`` recomputes the whole prefix instead (the reference).

This module is the bottom of the subpackage: it imports nothing from it at run time
(:mod:`.tokens` imports :func:`generate` from here).
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from ..._moments import exact_dtype
from ..._rng import seeded
from ..._validation import check_bool, positive_float, positive_int
from ...base import Fit
from ..._memory import draw_count, fits_in_memory

if TYPE_CHECKING:  # annotations only: tokens imports this module
    from .tokens import SequenceModel

__all__ = ["SequenceFit", "generate"]

#: rows per chunk of ``log_prob``
_ROWS = 4096


def _draw(logits: torch.Tensor, temperature: float, top_k: Optional[int]) -> torch.Tensor:
    """One token per row of ``logits`` ``(n, V)``, by the inverse CDF (:func:`categorical`)."""
    if temperature != 1.0:
        # shifted to max 0 and divided in float64, then clamped into the dtype: a
        # temperature of 1e-300 (or 1e39 in float32) would otherwise make 0 / 0 or
        # inf - inf; the draw is then greedy, or uniform
        shifted = logits - logits.amax(-1, keepdim=True)
        logits = (shifted.double() / temperature).clamp_min(
            torch.finfo(logits.dtype).min).to(logits.dtype)
    if top_k is not None and top_k < logits.shape[-1]:
        # exactly k tokens, ties to the lower index (a stable sort): keeping every token
        # tied with the k-th left top_k=1 random between tied tokens, which n-grams have
        keep = logits.sort(dim=-1, descending=True, stable=True).indices[..., :top_k]
        logits = torch.full_like(logits, -math.inf).scatter(-1, keep, logits.gather(-1, keep))
    return categorical(logits.float().softmax(-1) if logits.dtype == torch.float16
                       else logits.softmax(-1))


def categorical(probs: torch.Tensor) -> torch.Tensor:
    """One draw per row of ``probs`` ``(n, V)``: the first index whose cumulative
    probability (summed in float64; MPS has none) exceeds ``u ~ U[0, 1)`` times the row's total. A
    token of probability 0 is never drawn (its cumulative value equals its
    predecessor's; a ``u`` that rounds up to the total takes the last token of positive
    probability; rows that are not finite or all 0 are an error, as in
    ``torch.multinomial``). One uniform per row; on the CPU about 10 times faster than
    ``torch.multinomial``, in which the posterior predictive replicates (one generation
    per draw) spent most of their time."""
    cdf = probs.to(exact_dtype(probs)).cumsum(-1)
    u = torch.rand(probs.shape[:-1] + (1,), dtype=cdf.dtype, device=cdf.device) * cdf[..., -1:]
    idx = torch.searchsorted(cdf, u, right=True).squeeze(-1)
    over = idx == probs.shape[-1]  # also every row whose total is 0, inf or NaN
    if bool(over.any()):
        total = cdf[over][:, -1]
        if not bool((torch.isfinite(total) & (total > 0)).all()):
            raise ValueError(f"Expected next-token probabilities that are finite and not all "
                             f"0, but {int((~(torch.isfinite(total) & (total > 0))).sum())} "
                             f"of {probs.shape[0]} rows are not (the model's logits are NaN "
                             f"or infinite)")
        last = probs.shape[-1] - 1 - (probs[over].flip(-1) > 0).to(torch.uint8).argmax(-1)
        idx[over] = last
    return idx


#: positions the sampler holds at first; it doubles them as the rows grow, so its memory
#: follows the tokens drawn, not ``max_length`` (10**9 as "no cap" took the process down)
FIRST_WIDTH = 64


def _room(tokens: torch.Tensor, pos: int, max_length: int, end: int) -> torch.Tensor:
    """``tokens`` ``(n, W)``, doubled in width (at most to ``max_length``, end-padded)
    when position ``pos`` does not fit."""
    if pos < tokens.shape[1]:
        return tokens
    grow = min(tokens.shape[1], max_length - tokens.shape[1])
    return torch.cat([tokens, tokens.new_full((tokens.shape[0], grow), end)], 1)


def generate(model: SequenceModel, params: Dict[str, torch.Tensor], n: int,
             c: Optional[torch.Tensor] = None, *, prefix: Sequence[int] = (),
             temperature: float = 1.0, top_k: Optional[int] = None, max_length: int = 64,
             use_cache: bool = True, trim: bool = False) -> torch.Tensor:
    """Ancestral sampling, one token at a time: ``(n, max_length)`` ids, each row ending at
    its first end token (padded with end ids); a row that reaches ``max_length`` tokens
    without ending is returned as it is (no end token). ``trim``: only the positions
    drawn, ``(n, L)`` with ``L <= max_length`` (memory then grows with the rows, not with
    ``max_length``: :data:`FIRST_WIDTH`).

    ``use_cache=True`` carries the family's state (n-gram context, GRU hidden state,
    Transformer key/value cache), so a step costs the same at every position;
    ``use_cache=False`` recomputes the whole prefix with
    :meth:`~.SequenceModel.logits_given` at every step (quadratic; the reference the cache
    is tested and benchmarked against). Both consume the same random draws, so they
    return the same tokens.
    """
    dev = model._anchor.device
    end = model.end_id
    first = min(max_length, FIRST_WIDTH)
    tokens = torch.full((n, first), end, dtype=torch.long, device=dev)
    done = torch.zeros(n, dtype=torch.bool, device=dev)
    pos = 0
    if use_cache:
        logits, state = model.start(params, n, c, first + 1)

    def full_logits(p):  # next-token logits at position p, recomputed from scratch
        return model.logits_given(params, tokens[:, :p + 1], c)[..., p, :]
    for tok in prefix:
        tokens = _room(tokens, pos, max_length, end)
        tokens[:, pos] = tok
        if use_cache:
            logits, state = model.advance(params, state, tokens[:, pos], c)
        pos += 1
    while pos < max_length:
        tokens = _room(tokens, pos, max_length, end)
        step_logits = logits if use_cache else full_logits(pos)
        drawn = _draw(step_logits, temperature, top_k)
        drawn = torch.where(done, torch.full_like(drawn, end), drawn)
        tokens[:, pos] = drawn
        done = done | (drawn == end)
        pos += 1
        if pos >= max_length or bool(done.all()):
            break
        if use_cache:
            logits, state = model.advance(params, state, drawn, c)
    if trim:
        return tokens[:, :max(pos, 1)]
    return torch.cat([tokens, tokens.new_full((n, max_length - tokens.shape[1]), end)], 1)


class SequenceFit(Fit):
    """A :class:`~pyro_genmodels.Fit` of a sequence model: strings (or token ids) in and out.

    ``fit.data`` is the encoded training set, a LongTensor ``(N, T)`` (see
    :meth:`SequenceModel.encode`).
    """

    model: SequenceModel

    @property
    def vocab(self) -> Optional[str]:
        """The characters of a text model (sorted; the end token is id ``len(vocab)``)."""
        return self.model.vocab

    def _params(self) -> Dict[str, torch.Tensor]:
        return self.point if self.point is not None else self.posterior_samples()

    def _check_grid(self, dequantize: bool = False) -> None:
        raise TypeError(f"bits per dimension are for numeric rows dequantized on a grid of "
                        f"bin_width, but {type(self.model).__name__} scores sequences: its "
                        f"log_prob is already a discrete log-probability (bits per token: "
                        f"-log_prob / (tokens * log 2))")

    def _encode(self, x, c, lengths, mask=None):
        x = self.model.encode(x, lengths=lengths, mask=mask, device=self._device)
        return x, self._as_context(c, x.shape[0])

    @torch.no_grad()
    def log_prob(self, x: Any, *, c: Any = None, lengths: Any = None, mask: Any = None,
                 include_end: bool = True) -> torch.Tensor:
        """The exact ``log p(x_i [| c_i])`` of each sequence, end token included:
        ``(N,)``. A transition of probability 0 (an unseen one under an n-gram MLE)
        gives ``-inf``. ``include_end=False`` gives ``log p(x_i is a prefix)``, the
        product of the factors without the end token's. Posterior fits: the posterior
        predictive ``log (1/S) sum_s p(x_i | phi_s)``."""
        include_end = check_bool(include_end, "include_end")
        x, c = self._encode(x, c, lengths, mask)
        out = []
        for i in range(0, x.shape[0], _ROWS):
            xb, cb = x[i:i + _ROWS], None if c is None else c[i:i + _ROWS]
            if self.point is not None:
                out.append(self.model.token_log_probs(self.point, xb, cb,
                                                      include_end=include_end).sum(-1))
            else:
                lp = self.model.token_log_probs(self.posterior_samples(), xb, cb,
                                                include_end=include_end).sum(-1)
                out.append(lp.logsumexp(0) - math.log(self.num_draws))
        return torch.cat(out)

    @torch.no_grad()
    def pointwise_log_likelihood(self, x: Any = None, *, c: Any = None,
                                 lengths: Any = None, mask: Any = None) -> torch.Tensor:
        if x is None:
            x, c = self.data, self.context
        else:
            x, c = self._encode(x, c, lengths, mask)
        if self.point is not None:
            return self.model.log_prob_given(self.point, x, c).reshape(1, 1, -1)
        assert self.posterior is not None  # a fit holds a point or draws
        chains, draws = next(iter(self.posterior.values())).shape[:2]
        return self.model.log_prob_given(self.posterior_samples(), x, c).reshape(
            chains, draws, -1)

    @torch.no_grad()
    def logits(self, x: Any, *, c: Any = None, lengths: Any = None,
               mask: Any = None) -> torch.Tensor:
        """Next-token logits at every position of the encoded ``x``: ``(N, T, V)``
        (point fits; position t scores token t given the tokens before it)."""
        if self.point is None:
            raise ValueError("logits are defined for point fits (mle, map)")
        x, c = self._encode(x, c, lengths, mask)
        return self.model.logits_given(self.point, x, c)

    @torch.no_grad()
    def sample(  # type: ignore[override]  # sequences (strings or id lists), not a tensor
            self, n: int, *, c: Any = None, seed: Optional[int] = None, prefix: Any = None,
            temperature: float = 1.0, top_k: Optional[int] = None,
            max_length: Optional[int] = None, use_cache: bool = True
            ) -> List[Union[str, torch.Tensor]]:
        """``n`` sequences drawn token by token: a list of strings (text models) or of 1-D
        LongTensors on the fit's device (token models).

        Args:
            n: the number of sequences.
            c: class labels ``(n,)`` or one label for all (conditional models).
            seed: reproducibility; the caller's RNG is left untouched.
            prefix: a prompt (a string, or token ids) that every sample continues; the
                returned sequences start with it. A posterior fit weighs its draws by the
                prompt's probability under each, as its predictive ``log_prob`` does.
            temperature: the logits are divided by it (< 1 sharper, > 1 flatter).
            top_k: draw only among the k most probable next tokens.
            max_length: the most tokens in a sequence, prefix included; a sequence cut
                there has not ended. Default (``None``): the prefix's length plus twice
                the longest training sequence (64 for a fit without its training data),
                so a prompt always has room to go on; a given one must exceed the
                prefix's length.
            use_cache: carry the network state (True) or recompute the prefix at every
                step (False; slower, same draws).
        """
        n = draw_count(n)
        temperature = positive_float(temperature, "temperature")
        if top_k is not None:
            top_k = positive_int(top_k, "top_k")
        if max_length is not None:
            max_length = positive_int(max_length, "max_length")
        ids: List[int] = []
        if prefix is not None:
            if self.model.token_mode:  # one prompt: a 1-D tensor or one list of ids
                one = "a 1-D tensor or array, or a list of token ids"
                ok = (isinstance(prefix, (torch.Tensor, np.ndarray)) and prefix.ndim == 1) or (
                    isinstance(prefix, Sequence) and not isinstance(prefix, (str, bytes))
                    and all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                            for v in prefix))
            else:
                one, ok = "a string", isinstance(prefix, str)
            if not ok:
                got = (f"{'a tensor' if torch.is_tensor(prefix) else 'an array'} of shape "
                       f"{tuple(prefix.shape)}" if isinstance(prefix, (torch.Tensor, np.ndarray))
                       else f"{type(prefix).__name__} ({prefix!r})")
                raise TypeError(f"prefix must be one prompt that every sample continues, "
                                f"{one}, but got {got}")
            ids = self.model._to_id_lists([prefix], None, "prefix", single=True)[0]
        if max_length is None:  # room for the prompt and a sample as long as unprompted
            room = 2 * max(1, self.data.shape[1] - 1) if self.data is not None else 64
            max_length = len(ids) + room
        elif max_length <= len(ids):  # given: it would cut the prompt, or return it as is
            raise ValueError(f"max_length={max_length} was given, but the prefix already "
                             f"has {len(ids)} tokens and max_length counts them: pass "
                             f"max_length > {len(ids)} to continue it, or leave max_length="
                             f"None (the default: the prefix's length plus twice the longest "
                             f"training sequence)")
        c, use_cache = self._as_context(c, n), check_bool(use_cache, "use_cache")
        if self.point is None and not use_cache:
            raise ValueError("use_cache=False is for point fits (mle, map)")
        with seeded(seed):
            if self.point is not None:
                params = self.point
            else:
                draws = self.posterior_samples()
                params = {k: v[self._draws_for(draws, ids, c, n)] for k, v in draws.items()}
            with fits_in_memory(f"n = {n} sequences of up to max_length={max_length} "
                                f"tokens"):
                tokens = generate(self.model, params, n, c, prefix=ids,
                                  temperature=temperature, top_k=top_k,
                                  max_length=max_length, use_cache=use_cache, trim=True)
        return self.model.decode(tokens)

    def _draws_for(self, draws: Dict[str, torch.Tensor], ids: Sequence[int],
                   c: Optional[torch.Tensor], n: int) -> torch.Tensor:
        r"""The posterior draw each of ``n`` samples continues from: uniform without a
        prefix; with one, draw s in proportion to :math:`p(\text{prefix} \mid \phi_s)`,
        so that the continuations follow the posterior predictive's own conditional
        :math:`\sum_s p(\text{prefix}, \cdot \mid \phi_s) / \sum_s p(\text{prefix}
        \mid \phi_s)`, the one ``fit.log_prob`` gives. Drawn uniformly, a prompt of
        ``"aaaa"`` after one row ``"ab"`` continued with ``a`` a third of the time, where
        the predictive (Polya's urn) says 0.6."""
        if not ids:
            return torch.randint(self.num_draws, (n,), device=self._device)
        x = torch.tensor([list(ids)], device=self._device)
        if c is not None:  # each row's prefix probability under its own condition
            x = x.expand(n, -1)
        lp = self.model.token_log_probs(draws, x, c, include_end=False).sum(-1)  # (S, 1|n)
        if c is None:
            return torch.distributions.Categorical(logits=lp[:, 0]).sample((n,))
        return torch.distributions.Categorical(logits=lp.T).sample()

    def _as_context(self, c, num_rows):
        return self.model.validate_context(c, num_rows, device=self._device)

    def _as_input(self, x):
        return self.model.encode(x, device=self._device)
