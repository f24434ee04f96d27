r"""Autoregressive sequence models: exact likelihood by the chain rule, ancestral sampling.

A sequence :math:`x = (x_1, \dots, x_n)` of tokens from a vocabulary of K symbols is
closed by an end token :math:`\langle e\rangle`, so every factor is a softmax over
:math:`V = K + 1` outcomes and the probabilities of all finite sequences sum to one:

.. math::

    p_\phi(x \mid c) = \prod_{i=1}^{n+1} p_\phi(x_i \mid x_{<i}, c), \qquad
    x_{n+1} = \langle e\rangle, \qquad
    p_\phi(x_i = v \mid x_{<i}, c) = \operatorname{softmax}(\ell_\phi(x_{<i}, c))_v .

The context :math:`x_{<i}` is padded on the left by a start state, so the first token has
a distribution too. Two families share the data handling, the fit and the sampler:

* :class:`NGram`: :math:`\ell = \log \theta_{x_{i-n+1:i-1}}`, a probability table per
  context of the previous ``order - 1`` tokens, with a symmetric Dirichlet prior
  :math:`\theta_h \sim \mathrm{Dirichlet}(\alpha \mathbf 1_V)`. The prior is conjugate:
  :math:`\theta_h \mid x \sim \mathrm{Dirichlet}(\alpha + n_{h\cdot})` with
  :math:`n_{hv}` the number of times v follows h. ``mle`` is :math:`n_{hv} / n_{h}`,
  ``map`` is :math:`(n_{hv} + \alpha - 1) / (n_h + V(\alpha - 1))` (both closed form,
  exact); ``vi`` and ``nuts`` run the shared engines on the same Pyro program.
* :class:`AutoregressiveModel`: :math:`\ell_\phi` is a causal network (a GRU or a
  decoder-only Transformer) evaluated at every position in one pass (teacher forcing);
  its weights are phi, ``mle`` is plain training and ``map`` adds the factor site
  ``weight_prior`` = :math:`\sum_w \log \mathcal N(w; 0, s^2)` (L2 weight decay).

Data: a list of strings (characters are the tokens; the vocabulary is the sorted set of
training characters, kept in the model config so that save/load restores it), or, with
``vocab_size=K``, integer token ids ``0..K-1`` as a LongTensor ``(N, L)`` with
``lengths=(N,)`` (or a padding ``mask=(N, L)``) or a list of integer sequences.
Internally a batch is a LongTensor ``(N, T)`` padded with the end id K after each
sequence's first end token.

References:
    Bengio, Ducharme, Vincent & Jauvin (2003), *A neural probabilistic language model*,
    JMLR 3. Cho et al. (2014), *Learning phrase representations using RNN
    encoder-decoder for statistical machine translation*, EMNLP (the GRU). Vaswani et al.
    (2017), *Attention is all you need*, NeurIPS. Chen & Goodman (1999), *An empirical
    study of smoothing techniques for language modeling*, Computer Speech & Language 13.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, List, Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from .._rng import seeded
from .._validation import check_choice, positive_float, positive_int
from ..base import (Capabilities, Fit, GenerativeModel, cached_parameters,
                    gaussian_weight_log_prior, register)

__all__ = ["AutoregressiveModel", "NGram", "SequenceFit"]

#: how the end token is shown in messages
END = "<end>"
#: rows per chunk of ``log_prob``
_ROWS = 4096


# ---------------------------------------------------------------------- data handling
def _is_int_tensor(t: torch.Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def build_vocab(data: Any) -> str:
    """The sorted characters of a list of strings (the text vocabulary, end token apart)."""
    _check_strings(data)
    chars = sorted(set().union(*(set(s) for s in data)))
    if not chars:
        raise ValueError("The training strings contain no character: cannot build a "
                         "vocabulary from empty strings only")
    return "".join(chars)


def _check_strings(data: Any, name: str = "data") -> None:
    if isinstance(data, (str, bytes)):
        raise TypeError(f"{name} must be a list of strings, got a single {type(data).__name__}"
                        f" ({data[:20]!r}); wrap it in a list")
    if not isinstance(data, Sequence):
        raise TypeError(f"{name} must be a list of strings, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"{name} is empty: expected at least one string")
    for i, s in enumerate(data):
        if not isinstance(s, str):
            raise TypeError(f"{name} must be a list of strings, but item {i} is "
                            f"{type(s).__name__} ({s!r})")


class SequenceModel(GenerativeModel):
    """Shared base of the autoregressive families: vocabulary, encoding, class labels,
    the fit, and the hooks of the generic sampler.

    A family implements :meth:`logits_given` (all positions, one pass), :meth:`start` and
    :meth:`advance` (the cached step), :meth:`model` and :meth:`get_config`.
    """

    capabilities: Capabilities
    max_plate_nesting = 1
    data_options = ("lengths", "mask")

    def __init__(self, *, vocab: Optional[str] = None, vocab_size: Optional[int] = None,
                 num_classes: Optional[int] = None):
        super().__init__(1)
        if vocab is not None and vocab_size is not None:
            raise ValueError("Pass either vocab (characters, text data) or vocab_size "
                             "(token ids), not both")
        if vocab is not None:
            if isinstance(vocab, (list, tuple)):
                if not all(isinstance(ch, str) and len(ch) == 1 for ch in vocab):
                    raise ValueError(f"Expected vocab to be single characters, got {vocab!r}")
                vocab = "".join(vocab)
            if not isinstance(vocab, str) or not vocab:
                raise ValueError(f"Expected vocab to be a non-empty string of characters, "
                                 f"got {vocab!r}")
            if len(set(vocab)) != len(vocab):
                raise ValueError(f"vocab has repeated characters: {vocab!r}")
            vocab = "".join(sorted(vocab))
        self.vocab = vocab
        self.token_mode = vocab_size is not None
        self._vocab_size = None if vocab_size is None else positive_int(vocab_size,
                                                                        "vocab_size")
        self.num_classes = None if num_classes is None else positive_int(num_classes,
                                                                         "num_classes")
        self._index = None if vocab is None else {ch: i for i, ch in enumerate(vocab)}

    # ------------------------------------------------------------------ vocabulary
    @property
    def known(self) -> bool:
        """Whether the vocabulary is fixed (given, or built by a fit)."""
        return self.token_mode or self.vocab is not None

    @property
    def vocab_size(self) -> int:
        """K, the number of tokens (the end token apart)."""
        if self.token_mode:
            return self._vocab_size
        if self.vocab is None:
            raise ValueError(f"{type(self).__name__} has no vocabulary yet: it is built from "
                             f"the training strings by fit(), or pass vocab=...")
        return len(self.vocab)

    @property
    def num_outcomes(self) -> int:
        """V = K + 1: the tokens and the end token."""
        return self.vocab_size + 1

    @property
    def end_id(self) -> int:
        """The id of the end token (K)."""
        return self.vocab_size

    def _with_vocab(self, vocab: str) -> "SequenceModel":
        with seeded(0):  # a network drawn here is only a template: never the caller's RNG
            return type(self)(**{**self.get_config(), "vocab": vocab}).to(
                dtype=self._anchor.dtype)

    # ------------------------------------------------------------------ encoding
    def encode(self, data: Any, *, lengths: Any = None, mask: Any = None, name: str = "x",
               device=None) -> torch.Tensor:
        """Validate and encode sequences: a LongTensor ``(N, T)`` where row i holds the
        tokens of sequence i, the end id K, then padding (K), T = longest + 1.

        Text models take a list of strings; token models (``vocab_size=K``) take a
        LongTensor ``(N, L)`` of ids in ``[0, K)`` with optional ``lengths`` ``(N,)``
        (default: all L) or ``mask``, a padding mask ``(N, L)`` bool (True at tokens,
        then False), or a list of integer sequences.
        """
        if mask is not None:
            if not self.token_mode:
                raise ValueError("mask is for token-id data (vocab_size=...); strings carry "
                                 "their own lengths")
            lengths = self._mask_lengths(data, mask, lengths)
        seqs = self._to_id_lists(data, lengths, name)
        T = max(len(s) for s in seqs) + 1
        out = torch.full((len(seqs), T), self.end_id, dtype=torch.long)
        for i, s in enumerate(seqs):
            if s:
                out[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
        return out.to(device) if device is not None else out

    def _to_id_lists(self, data: Any, lengths: Any, name: str) -> List[List[int]]:
        if not self.token_mode:
            if lengths is not None:
                raise ValueError("lengths is for token-id data (vocab_size=...); strings "
                                 "carry their own lengths")
            _check_strings(data, name)
            index = self._index
            out = []
            for i, s in enumerate(data):
                try:
                    out.append([index[ch] for ch in s])
                except KeyError:
                    bad = next(ch for ch in s if ch not in index)
                    raise ValueError(
                        f"{name}[{i}] = {s!r} has the character {bad!r}, which is not in "
                        f"the vocabulary {self.vocab!r}") from None
            return out
        K = self.vocab_size
        if isinstance(data, (str, bytes)) or (isinstance(data, Sequence) and data
                                              and isinstance(data[0], str)):
            raise TypeError(f"{type(self).__name__}(vocab_size={K}) takes integer token ids "
                            f"(a LongTensor (N, L) or a list of integer sequences), not "
                            f"strings")
        if isinstance(data, torch.Tensor):
            t = data.detach().cpu()
            if not _is_int_tensor(t):
                raise TypeError(f"{name} must be an integer tensor of token ids, got {t.dtype}")
            if t.dim() != 2:
                raise ValueError(f"{name} must be 2-D (N, L) token ids, got shape "
                                 f"{tuple(t.shape)}")
            if t.shape[0] == 0:
                raise ValueError(f"{name} is empty: expected at least one sequence")
            if lengths is None:
                lens = [t.shape[1]] * t.shape[0]
            else:
                lt = torch.as_tensor(lengths).detach().cpu()
                if not _is_int_tensor(lt) or lt.shape != (t.shape[0],):
                    raise ValueError(f"lengths must be integers of shape ({t.shape[0]},), got "
                                     f"{lt.dtype} of shape {tuple(lt.shape)}")
                if (lt < 0).any() or (lt > t.shape[1]).any():
                    raise ValueError(f"lengths must lie in [0, {t.shape[1]}], got "
                                     f"{lt.min().item()}..{lt.max().item()}")
                lens = lt.tolist()
            rows = t.tolist()
            seqs = [rows[i][:n] for i, n in enumerate(lens)]
        else:
            if lengths is not None:
                raise ValueError("lengths goes with a padded (N, L) tensor, not a list of "
                                 "sequences")
            if not isinstance(data, Sequence):
                raise TypeError(f"{name} must be a LongTensor (N, L) or a list of integer "
                                f"sequences, got {type(data).__name__}")
            if len(data) == 0:
                raise ValueError(f"{name} is empty: expected at least one sequence")
            seqs = []
            for i, s in enumerate(data):
                s = s.tolist() if isinstance(s, torch.Tensor) else s
                if isinstance(s, (str, bytes)) or not isinstance(s, Sequence) or not all(
                        isinstance(v, numbers.Integral) and not isinstance(v, bool)
                        for v in s):
                    raise TypeError(f"{name}[{i}] must be a sequence of integer token ids, "
                                    f"got {s!r}")
                seqs.append([int(v) for v in s])
        for i, s in enumerate(seqs):
            for v in s:
                if not 0 <= v < K:
                    raise ValueError(f"{name}[{i}] has the token id {v}, which is not in the "
                                     f"vocabulary [0, {K})")
        return seqs

    @staticmethod
    def _mask_lengths(data: Any, mask: Any, lengths: Any) -> torch.Tensor:
        """Row lengths of a padding mask ``(N, L)`` (True at tokens, then False)."""
        if lengths is not None:
            raise ValueError("Pass lengths or mask, not both")
        if not isinstance(data, torch.Tensor) or data.dim() != 2:
            raise ValueError("mask goes with a padded (N, L) tensor of token ids")
        mask = torch.as_tensor(mask).detach().cpu()
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True at tokens), got {mask.dtype}")
        if tuple(mask.shape) != tuple(data.shape):
            raise ValueError(f"mask must have the shape of the tokens {tuple(data.shape)}, "
                             f"got {tuple(mask.shape)}")
        if not mask.any():
            raise ValueError("mask is all False: True marks the tokens and False the padding "
                             "(the inverse of nn.Transformer's key_padding_mask)")
        lens = mask.sum(1)
        prefix = torch.arange(mask.shape[1]) < lens[:, None]
        bad = (prefix != mask).any(1)
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(f"mask row {i} is not tokens-then-padding (True then False): "
                             f"{mask[i].int().tolist()}")
        return lens

    def decode(self, tokens: torch.Tensor) -> list:
        """Inverse of :meth:`encode`: the tokens before each row's first end token, as
        strings (text) or 1-D LongTensors (token ids)."""
        out = []
        for row in tokens.cpu().tolist():
            n = row.index(self.end_id) if self.end_id in row else len(row)
            out.append("".join(self.vocab[t] for t in row[:n]) if not self.token_mode
                       else torch.tensor(row[:n], dtype=torch.long))
        return out

    def validate_data(self, data: Any, *, name: str = "data", device=None,
                      dtype=None) -> torch.Tensor:
        return self.encode(data, name=name, device=device)

    def validate_context(self, c: Any, num_rows: int, *, device=None,
                         dtype=None) -> Optional[torch.Tensor]:
        """Class labels: ``None`` for unconditional models, else integers in
        ``[0, num_classes)`` of shape ``(num_rows,)`` (one label is broadcast)."""
        name = type(self).__name__
        if self.num_classes is None:
            if c is not None:
                raise ValueError(f"{name} is unconditional (num_classes=None): c must be None")
            return None
        if c is None:
            raise ValueError(f"{name} is conditional (num_classes={self.num_classes}): pass "
                             f"c, integer class labels of shape ({num_rows},)")
        t = c.detach() if isinstance(c, torch.Tensor) else torch.as_tensor(c)
        if not _is_int_tensor(t):
            raise TypeError(f"c must hold integer class labels, got dtype {t.dtype}")
        if t.dim() == 0:
            t = t.reshape(1)
        if t.dim() != 1:
            raise ValueError(f"c must be 1-D class labels of shape ({num_rows},), got shape "
                             f"{tuple(t.shape)}")
        if t.shape[0] == 1 and num_rows > 1:
            t = t.expand(num_rows)
        if t.shape[0] != num_rows:
            raise ValueError(f"c has {t.shape[0]} labels but there are {num_rows} sequences")
        bad = (t < 0) | (t >= self.num_classes)
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(f"c[{i}] = {int(t[i])} is not a class label: expected integers in "
                             f"[0, {self.num_classes})")
        return t.to(device=device, dtype=torch.long)

    @staticmethod
    def mask(x: torch.Tensor, end_id: int) -> torch.Tensor:
        """Which positions of an encoded batch are scored: up to and including each row's
        first end token. ``(N, T)`` bool."""
        ends_before = (x[:, :-1] == end_id).long().cumsum(1)
        return torch.cat([torch.zeros_like(x[:, :1]), ends_before], 1) == 0

    # ------------------------------------------------------------------ densities
    def logits_given(self, params: Dict[str, torch.Tensor], x: torch.Tensor,
                     c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Next-token logits at every position (teacher forcing): ``(*batch, N, T, V)``;
        position t is ``log p(x_t = . | x_<t)`` up to a constant and never reads x_t."""
        raise NotImplementedError

    def token_log_probs(self, params, x, c=None, *, include_end: bool = True) -> torch.Tensor:
        """``log p(x_t | x_<t, c)`` at every scored position, 0 elsewhere: ``(*batch, N, T)``.
        ``include_end=False`` leaves the end token's term out (prefix probabilities)."""
        lp = self.logits_given(params, x, c).log_softmax(-1)
        idx = x.expand(lp.shape[:-1]).unsqueeze(-1)
        lp = lp.gather(-1, idx).squeeze(-1)
        keep = self.mask(x, self.end_id)
        if not include_end:
            keep = keep & (x != self.end_id)
        return torch.where(keep, lp, torch.zeros((), dtype=lp.dtype, device=lp.device))

    def log_prob_given(self, params, x, c=None):
        return self.token_log_probs(params, x, c).sum(-1)

    # ------------------------------------------------------------------ cached sampling
    def start(self, params, n: int, c: Optional[torch.Tensor], capacity: int):
        """``(logits (n, V), state)`` of the first position, for ``n`` rows (a batched
        phi has batch ``(n,)``); ``capacity`` bounds the positions the state will hold."""
        raise NotImplementedError

    def advance(self, params, state, token: torch.Tensor, c: Optional[torch.Tensor]):
        """Feed one token per row ``(n,)``: ``(logits of the next position, state)``."""
        raise NotImplementedError

    def sample_given(self, params, n, c=None, **kwargs):
        return generate(self, params, n, c, **kwargs)

    def replicate_given(self, params, num_data):
        num = next(iter(params.values())).shape[0]
        return torch.stack([generate(self, {k: v[s].expand((num_data,) + v.shape[1:])
                                            for k, v in params.items()}, num_data, None,
                                     max_length=64) for s in range(num)])

    # ------------------------------------------------------------------ fitting
    def fit(self, data: Any, *, method: str, c: Any = None, seed: Optional[int] = None,
            progress: bool = True, lengths: Any = None, mask: Any = None,
            **options: Any) -> "SequenceFit":
        """Fit to sequences (see :class:`~pyro_genmodels.GenerativeModel.fit`).

        Args:
            data: a list of strings (text models), or token ids (``vocab_size=K``): a
                LongTensor ``(N, L)`` with ``lengths`` ``(N,)``, or a list of sequences.
                A text model without a vocabulary builds it from ``data``.
            c: class labels ``(N,)`` in ``[0, num_classes)`` (conditional models).
            seed: reproducibility; the network's initial weights are drawn under it too.
            lengths: lengths ``(N,)`` of the rows of a padded token tensor.
            mask: or its padding mask ``(N, L)`` bool (True at tokens, then False).
            **options: engine options (``num_steps``, ``lr``, ``batch_size``, ...; none for
                the closed-form n-gram ``mle``/``map``), and ``device``.
        """
        return super().fit(data, method=method, c=c, seed=seed, progress=progress,
                           lengths=lengths, mask=mask, **options)

    def prepare_data(self, data, c, *, device, lengths=None, mask=None):
        """A text model without a vocabulary builds it from ``data`` (on a copy)."""
        model = self if self.known else self._with_vocab(build_vocab(data))
        x = model.encode(data, lengths=lengths, mask=mask, name="data", device=device)
        return model, x, model.validate_context(c, x.shape[0], device=device)

    def working_copy(self, x):
        """A fresh model of the same config: the network's initial weights are drawn
        under the fit's seed. Token ids are integers: the weights keep the model's
        dtype."""
        return type(self)(**self.get_config()).to(device=x.device, dtype=self._anchor.dtype)


# ---------------------------------------------------------------------- the sampler
def _draw(logits: torch.Tensor, temperature: float, top_k: Optional[int]) -> torch.Tensor:
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, -1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = logits.float().softmax(-1) if logits.dtype == torch.float16 else logits.softmax(-1)
    return torch.multinomial(probs, 1).squeeze(-1)


def generate(model: SequenceModel, params: Dict[str, torch.Tensor], n: int,
             c: Optional[torch.Tensor] = None, *, prefix: Sequence[int] = (),
             temperature: float = 1.0, top_k: Optional[int] = None, max_length: int = 64,
             use_cache: bool = True) -> torch.Tensor:
    """Ancestral sampling, one token at a time: ``(n, max_length)`` ids, each row ending at
    its first end token (padded with end ids); a row that reaches ``max_length`` tokens
    without ending is returned as it is (no end token).

    ``use_cache=True`` carries the family's state (n-gram context, GRU hidden state,
    Transformer key/value cache), so a step costs the same at every position;
    ``use_cache=False`` recomputes the whole prefix with :meth:`logits_given` at every
    step (quadratic; the reference the cache is tested and benchmarked against). Both
    consume the same random draws, so they return the same tokens.
    """
    dev = model._anchor.device
    end = model.end_id
    tokens = torch.full((n, max_length), end, dtype=torch.long, device=dev)
    done = torch.zeros(n, dtype=torch.bool, device=dev)
    pos = 0
    if use_cache:
        logits, state = model.start(params, n, c, max_length + 1)

    def full_logits(p):  # next-token logits at position p, recomputed from scratch
        return model.logits_given(params, tokens[:, :p + 1], c)[..., p, :]
    for tok in prefix:
        tokens[:, pos] = tok
        if use_cache:
            logits, state = model.advance(params, state, tokens[:, pos], c)
        pos += 1
    while pos < max_length:
        step_logits = logits if use_cache else full_logits(pos)
        tok = _draw(step_logits, temperature, top_k)
        tok = torch.where(done, torch.full_like(tok, end), tok)
        tokens[:, pos] = tok
        done = done | (tok == end)
        pos += 1
        if pos >= max_length or bool(done.all()):
            break
        if use_cache:
            logits, state = model.advance(params, state, tok, c)
    return tokens


class SequenceFit(Fit):
    """A :class:`~pyro_genmodels.Fit` of a sequence model: strings (or token ids) in and out.

    ``fit.data`` is the encoded training set, a LongTensor ``(N, T)`` (see
    :meth:`SequenceModel.encode`).
    """

    @property
    def vocab(self) -> Optional[str]:
        """The characters of a text model (sorted; the end token is id ``len(vocab)``)."""
        return self.model.vocab

    def _params(self) -> Dict[str, torch.Tensor]:
        return self.point if self.point is not None else self.posterior_samples()

    def _encode(self, x, c, lengths, mask=None):
        x = self.model.encode(x, lengths=lengths, mask=mask, device=self._device)
        return x, self.model.validate_context(c, x.shape[0], device=self._device)

    @torch.no_grad()
    def log_prob(self, x: Any, *, c: Any = None, lengths: Any = None, mask: Any = None,
                 include_end: bool = True) -> torch.Tensor:
        """The exact ``log p(x_i [| c_i])`` of each sequence, end token included:
        ``(N,)``. A transition of probability 0 (an unseen one under an n-gram MLE)
        gives ``-inf``. ``include_end=False`` gives ``log p(x_i is a prefix)``, the
        product of the factors without the end token's. Posterior fits: the posterior
        predictive ``log (1/S) sum_s p(x_i | phi_s)``."""
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
    def sample(self, n: int, *, c: Any = None, seed: Optional[int] = None,
               prefix: Any = None, temperature: float = 1.0, top_k: Optional[int] = None,
               max_length: Optional[int] = None, use_cache: bool = True) -> list:
        """``n`` sequences drawn token by token: a list of strings (text models) or of 1-D
        LongTensors (token models).

        Args:
            c: class labels ``(n,)`` or one label for all (conditional models).
            seed: reproducibility; the caller's RNG is left untouched.
            prefix: a prompt (a string, or token ids) that every sample continues; the
                returned sequences start with it.
            temperature: the logits are divided by it (< 1 sharper, > 1 flatter).
            top_k: draw only among the k most probable next tokens.
            max_length: the most tokens in a sequence, prefix included; a sequence cut
                there has not ended. Default: twice the longest training sequence.
            use_cache: carry the network state (True) or recompute the prefix at every
                step (False; slower, same draws).
        """
        n = positive_int(n, "n")
        temperature = positive_float(temperature, "temperature")
        if top_k is not None:
            top_k = positive_int(top_k, "top_k")
        if max_length is None:
            max_length = 2 * max(1, self.data.shape[1] - 1) if self.data is not None else 64
        max_length = positive_int(max_length, "max_length")
        ids: List[int] = []
        if prefix is not None:
            ids = self.model._to_id_lists([prefix], None, "prefix")[0]
            if len(ids) > max_length:
                raise ValueError(f"The prefix has {len(ids)} tokens, more than max_length="
                                 f"{max_length}")
        c = self._as_context(c, n)
        if self.point is None and not use_cache:
            raise ValueError("use_cache=False is for point fits (mle, map)")
        with seeded(seed):
            if self.point is not None:
                params = self.point
            else:
                idx = torch.randint(self.num_draws, (n,), device=self._device)
                params = {k: v[idx] for k, v in self.posterior_samples().items()}
            tokens = generate(self.model, params, n, c, prefix=ids, temperature=temperature,
                              top_k=top_k, max_length=max_length, use_cache=use_cache)
        return self.model.decode(tokens)

    def _as_context(self, c, num_rows):
        return self.model.validate_context(c, num_rows, device=self._device)

    def _as_input(self, x):
        return self.model.encode(x, device=self._device)


# ---------------------------------------------------------------------- n-grams
def _dirichlet_log_prob(probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """``sum_h log Dirichlet(probs_h; alpha 1)``, finite on the boundary when alpha = 1."""
    V = probs.shape[-1]
    norm = math.lgamma(V * alpha) - V * math.lgamma(alpha)
    a = torch.full_like(probs, alpha - 1.0)
    return (torch.xlogy(a, probs).sum(-1) + norm).sum(-1)


def fit_ngram_closed_form(model: "NGram", x: torch.Tensor, *, c=None, method: str,
                          progress: bool = True) -> Dict[str, Any]:
    r"""The exact ``mle`` / ``map`` of an :class:`NGram` from the transition counts.

    mle: :math:`n_{hv} / n_h`; map: :math:`(n_{hv} + \alpha - 1) / (n_h + V(\alpha - 1))`.
    A context never seen (and, for map with alpha = 1, the same) gets the uniform
    distribution: the likelihood does not depend on it. The single loss is the negative
    log joint at the estimate (negative log-likelihood for mle).
    """
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


def _ngram_mle(model, x, *, c=None, progress=True):
    """Closed-form maximum likelihood (normalized counts); no options."""
    return fit_ngram_closed_form(model, x, c=c, method="mle", progress=progress)


def _ngram_map(model, x, *, c=None, progress=True):
    """Closed-form MAP under the Dirichlet prior; no options."""
    return fit_ngram_closed_form(model, x, c=c, method="map", progress=progress)


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
    ``vi``    AutoMultivariateNormal / AutoNormal on ``probs`` (posterior approximation)
    ``nuts``  posterior draws; the exact posterior is Dirichlet(alpha + n_h)
    ========  =====================================================================

    Args:
        order: n >= 1, the n of the n-gram.
        prior_concentration: alpha > 0 of the symmetric Dirichlet prior.
        vocab: the characters (text data; default: built by ``fit`` from the strings).
        vocab_size: K, for integer token ids ``0..K-1`` instead of text.

    Sample sites: ``probs`` ``(C, V)`` in the plate ``contexts`` (C = V^(order-1)), and
    the observed ``x`` ``(N, T)`` in the plate ``data`` (one masked Categorical per
    position, vectorized: ``Categorical(probs[context]).mask(m).to_event(1)``).

    Example:
        >>> import pyro_genmodels as pgm
        >>> from pyro_genmodels.models.autoregressive import NGram
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
                                methods=("mle", "map", "vi", "nuts"))
    global_sites = ("probs",)
    engines = {"mle": _ngram_mle, "map": _ngram_map}
    fit_class = SequenceFit
    default_options = {"vi": {"num_steps": 1000, "num_posterior_samples": 500},
                       "nuts": {"num_samples": 300, "warmup_steps": 300}}

    def __init__(self, order: int, *, prior_concentration: float = 1.0,
                 vocab: Optional[str] = None, vocab_size: Optional[int] = None):
        super().__init__(vocab=vocab, vocab_size=vocab_size)
        self.order = positive_int(order, "order")
        self.prior_concentration = positive_float(prior_concentration, "prior_concentration")

    @property
    def num_contexts(self) -> int:
        """C = V^(order - 1): the start symbol shares the end token's id in contexts."""
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

    def model(self, x=None, *, c=None, num_data=None, subsample_size=None):
        self.validate_context(c, 1)
        f = self._factory
        with pyro.plate("contexts", self.num_contexts):
            probs = pyro.sample("probs", dist.Dirichlet(
                torch.full((self.num_outcomes,), self.prior_concentration, **f)))
        if x is None:
            tokens = generate(self, {"probs": probs}, num_data or 1, None)
            with pyro.plate("data", tokens.shape[0]):
                return pyro.deterministic("x", tokens, event_dim=1)
        with pyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
            obs = x if subsample_size is None else x.index_select(0, idx)
            d = dist.Categorical(probs[self.context_ids(obs)])
            return pyro.sample("x", d.mask(self.mask(obs, self.end_id)).to_event(1), obs=obs)

    def logits_given(self, params, x, c=None):
        return params["probs"][..., self.context_ids(x), :].log()

    def token_log_probs(self, params, x, c=None, *, include_end=True):
        probs = params["probs"]
        V = self.num_outcomes
        flat = self.context_ids(x) * V + x
        lp = probs.reshape(probs.shape[:-2] + (-1,))[..., flat].log()
        keep = self.mask(x, self.end_id)
        if not include_end:
            keep = keep & (x != self.end_id)
        return torch.where(keep, lp, torch.zeros((), dtype=lp.dtype, device=lp.device))

    def _row_logits(self, probs, ctx):
        if probs.dim() == 2:
            return probs[ctx].log()
        return probs[torch.arange(ctx.shape[0], device=ctx.device), ctx].log()

    def start(self, params, n, c, capacity):
        ctx = torch.full((n,), self.num_contexts - 1, dtype=torch.long,
                         device=self._anchor.device)
        return self._row_logits(params["probs"], ctx), ctx

    def advance(self, params, state, token, c):
        ctx = (state * self.num_outcomes + token) % self.num_contexts
        return self._row_logits(params["probs"], ctx), ctx

    def check_data_for(self, method, x):
        if method == "map" and self.prior_concentration < 1:
            raise ValueError(f"The MAP of a Dirichlet({self.prior_concentration}) prior is on "
                             f"the boundary of the simplex (no closed form): map needs "
                             f"prior_concentration >= 1; use mle, vi or nuts")

    def init_values(self, x):
        counts = self.counts(x) + self.prior_concentration
        return {"probs": counts / counts.sum(-1, keepdim=True)}

    def posterior_concentration(self, x: torch.Tensor) -> torch.Tensor:
        """The exact posterior ``Dirichlet(alpha + n_h)`` concentrations, ``(C, V)``."""
        return self.counts(x) + self.prior_concentration

    def num_params(self) -> int:
        return self.num_contexts * (self.num_outcomes - 1)

    def get_config(self):
        return {"order": self.order, "prior_concentration": self.prior_concentration,
                "vocab": self.vocab, "vocab_size": self._vocab_size}


# ---------------------------------------------------------------------- neural networks
def _sinusoid(pos: torch.Tensor, dim: int, dtype) -> torch.Tensor:
    """Sinusoidal position codes (Vaswani et al., 2017): ``(*pos.shape, dim)``."""
    half = (dim + 1) // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=pos.device,
                                                       dtype=dtype) / half)
    ang = pos.to(dtype).unsqueeze(-1) * freq
    return torch.cat([ang.sin(), ang.cos()], -1)[..., :dim]


class _Embed(nn.Module):
    """Token embedding (ids ``0..V``: V is the start symbol) plus a class embedding."""

    def __init__(self, num_inputs, embedding_dim, num_classes):
        super().__init__()
        self.tokens = nn.Embedding(num_inputs, embedding_dim)
        self.classes = None if num_classes is None else nn.Embedding(num_classes,
                                                                     embedding_dim)

    def forward(self, ids, c):
        e = self.tokens(ids)
        if self.classes is not None:
            ce = self.classes(c)
            e = e + (ce.unsqueeze(1) if e.dim() == 3 else ce)
        return e


class GRUNet(nn.Module):
    """Embedding -> GRU -> linear: ``forward`` is the teacher-forced pass, ``step`` one
    cached step (the hidden state ``(num_layers, n, H)``)."""

    def __init__(self, num_inputs, num_outputs, embedding_dim, hidden_size, num_layers,
                 num_classes):
        super().__init__()
        self.embed = _Embed(num_inputs, embedding_dim, num_classes)
        self.rnn = nn.GRU(embedding_dim, hidden_size, num_layers, batch_first=True)
        self.out = nn.Linear(hidden_size, num_outputs)

    def forward(self, inputs, c):
        h, _ = self.rnn(self.embed(inputs, c))
        return self.out(h)

    def init_state(self, n, capacity, like):
        return None

    def step(self, ids, c, state):
        h, state = self.rnn(self.embed(ids, c).unsqueeze(1), state)
        return self.out(h[:, 0]), state


class _Block(nn.Module):
    """Pre-norm Transformer decoder block: causal self-attention + MLP."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def _split(self, h):
        n, t, d = h.shape
        q, k, v = self.qkv(h).split(d, -1)
        shape = (n, t, self.heads, d // self.heads)
        return [u.reshape(shape).transpose(1, 2) for u in (q, k, v)]

    def forward(self, h, mask=None):
        """``h`` ``(n, t, d)``; ``mask`` ``(t, t)`` bool (True: may attend) or ``None``
        for plain causal attention."""
        q, k, v = self._split(self.ln1(h))
        if mask is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        h = h + self.proj(a.transpose(1, 2).reshape(h.shape))
        return h + self.mlp(self.ln2(h))

    def step(self, h, cache, slot, used):
        """One position ``h`` ``(n, 1, d)``; ``cache = (K, V)`` ``(n, heads, cap, d_h)``
        preallocated, this position's key and value written in place at ``slot``; attends
        to the first ``used`` cached entries (their order is irrelevant: attention is a
        weighted sum, and the positions are already in the embeddings)."""
        q, k, v = self._split(self.ln1(h))
        ck, cv = cache
        ck[:, :, slot:slot + 1] = k
        cv[:, :, slot:slot + 1] = v
        # one query: two small batched matmuls over the cached prefix (cheaper than the
        # fused kernels, which are tuned for long queries)
        w = (q @ ck[:, :, :used].transpose(-1, -2)) * (q.shape[-1] ** -0.5)
        a = w.softmax(-1) @ cv[:, :, :used]
        h = h + self.proj(a.transpose(1, 2).reshape(h.shape))
        return h + self.mlp(self.ln2(h))


class TransformerNet(nn.Module):
    """Decoder-only Transformer: embedding -> linear to ``hidden_size`` + sinusoidal
    positions -> causal blocks -> LayerNorm -> linear. ``step`` uses a key/value cache.

    With ``window = w`` every block attends to the last w positions only (sliding-window
    attention: Child et al., 2019; Beltagy et al., 2020); the cache is then a ring buffer
    of w entries, so a cached step costs the same at every position."""

    def __init__(self, num_inputs, num_outputs, embedding_dim, hidden_size, num_layers,
                 num_classes, num_heads, window=None):
        super().__init__()
        self.window = window
        self.embed = _Embed(num_inputs, embedding_dim, num_classes)
        self.inp = nn.Linear(embedding_dim, hidden_size)
        self.blocks = nn.ModuleList(_Block(hidden_size, num_heads) for _ in range(num_layers))
        self.ln = nn.LayerNorm(hidden_size)
        self.out = nn.Linear(hidden_size, num_outputs)
        self.hidden_size, self.num_heads = hidden_size, num_heads

    def forward(self, inputs, c):
        pos = torch.arange(inputs.shape[1], device=inputs.device)
        h = self.inp(self.embed(inputs, c))
        h = h + _sinusoid(pos, self.hidden_size, h.dtype)
        mask = None
        if self.window is not None and self.window < inputs.shape[1]:
            gap = pos[:, None] - pos[None, :]  # query i minus key j
            mask = (gap >= 0) & (gap < self.window)
        for b in self.blocks:
            h = b(h, mask)
        return self.out(self.ln(h))

    def init_state(self, n, capacity, like):
        if self.window is not None:
            capacity = min(capacity, self.window)
        shape = (n, self.num_heads, capacity, self.hidden_size // self.num_heads)
        caches = [(like.new_zeros(shape), like.new_zeros(shape)) for _ in self.blocks]
        return {"cache": caches, "pos": 0}

    def step(self, ids, c, state):
        pos = state["pos"]
        cap = state["cache"][0][0].shape[2] if state["cache"] else pos + 1
        limit = self.window or math.inf
        if cap <= pos and cap < limit:
            # grow (never needed by the sampler, which sizes the cache up front)
            grow = int(min(cap, limit - cap))
            state["cache"] = [tuple(torch.cat([u, u.new_zeros(u.shape[:2] + (grow,)
                                                             + u.shape[3:])], 2) for u in kv)
                              for kv in state["cache"]]
            cap += grow
        # without a window slot = pos; with one the cache is a ring buffer of `window`
        # entries, position pos overwriting position pos - window
        slot, used = pos % cap, min(pos + 1, cap)
        h = self.inp(self.embed(ids, c)).unsqueeze(1)
        h = h + _sinusoid(torch.tensor([pos], device=ids.device), self.hidden_size, h.dtype)
        for b, kv in zip(self.blocks, state["cache"]):
            h = b.step(h, kv, slot, used)
        state["pos"] = pos + 1
        return self.out(self.ln(h[:, 0])), state


NETWORKS = ("gru", "transformer")


@register
class AutoregressiveModel(SequenceModel):
    r"""A neural autoregressive model: a causal network gives the next-token logits.

    .. math::

        \log p_\phi(x \mid c) = \sum_{i=1}^{n+1}
            \log \operatorname{softmax}\big(W h_i + b\big)_{x_i}, \qquad
        h_i = f_\phi(e_{x_0} + u_c, \dots, e_{x_{i-1}} + u_c),

    with :math:`x_0` the start symbol, :math:`e` the token and :math:`u` the class
    embedding, and :math:`f_\phi` a GRU (Cho et al., 2014) or a causally masked
    Transformer decoder (Vaswani et al., 2017). Training is teacher forcing: the logits of
    all positions come from one pass over the shifted input, inside the ``data`` plate.
    Sampling is token by token with the network state cached (the GRU hidden state; the
    Transformer's keys and values), so each step costs the same whatever the position;
    for the Transformer only up to the attention over the cached keys, which grows with
    the position unless ``attention_window`` bounds it (a ring buffer of that many keys).

    ``mle`` trains the weights; ``map`` adds the factor ``weight_prior`` =
    :math:`\sum_w \log \mathcal N(w; 0, s^2)`, i.e. L2 weight decay
    :math:`\|w\|^2 / (2 s^2)`.

    Args:
        network: ``"gru"`` or ``"transformer"``.
        embedding_dim: E, token (and class) embedding width.
        hidden_size: H, GRU state / Transformer width.
        num_layers: stacked GRU layers / Transformer blocks.
        num_heads: attention heads (Transformer; must divide ``hidden_size``).
        attention_window: w, Transformer only: each position attends to itself and the
            w - 1 before it (sliding-window attention), so a cached sampling step costs
            the same at every position; ``L`` layers see ``L (w - 1) + 1`` tokens back.
            ``None`` (default): full causal attention.
        num_classes: number of class labels c (``None``: unconditional).
        prior_scale: s, the sd of the Gaussian prior on every weight (``map``).
        vocab / vocab_size: as for :class:`NGram`.

    Sample sites: the factor ``weight_prior`` and the observed ``x`` ``(N, T)`` in the
    plate ``data`` (``Categorical(logits).mask(m).to_event(1)``).

    Example:
        >>> from pyro_genmodels.models.autoregressive import AutoregressiveModel
        >>> names = ["anna", "anne", "bob", "bobby", "hannah"] * 10
        >>> fit = AutoregressiveModel(hidden_size=16, embedding_dim=8).fit(
        ...     names, method="mle", num_steps=30, seed=0, progress=False)
        >>> fit.log_prob(["anna", "bob"]).shape
        torch.Size([2])
        >>> [s.startswith("an") for s in fit.sample(3, prefix="an", seed=0)]
        [True, True, True]
    """

    registry_name = "autoregressive"
    capabilities = Capabilities(log_prob="exact", sampling="ancestral",
                                methods=("mle", "map"), conditional=True)
    global_sites = ()
    fit_class = SequenceFit
    default_options = {m: {"num_steps": 1500, "lr": 5e-3, "lr_decay": 0.1,
                           "batch_size": 128} for m in ("mle", "map")}

    def __init__(self, *, network: str = "gru", embedding_dim: int = 32,
                 hidden_size: int = 128, num_layers: int = 1, num_heads: int = 4,
                 attention_window: Optional[int] = None,
                 num_classes: Optional[int] = None, prior_scale: float = 1.0,
                 vocab: Optional[str] = None, vocab_size: Optional[int] = None):
        super().__init__(vocab=vocab, vocab_size=vocab_size, num_classes=num_classes)
        self.network = check_choice(network, NETWORKS, "network")
        self.embedding_dim = positive_int(embedding_dim, "embedding_dim")
        self.hidden_size = positive_int(hidden_size, "hidden_size")
        self.num_layers = positive_int(num_layers, "num_layers")
        self.num_heads = positive_int(num_heads, "num_heads")
        if network == "transformer" and hidden_size % self.num_heads:
            raise ValueError(f"Expected num_heads to divide hidden_size, but got "
                             f"hidden_size={hidden_size}, num_heads={num_heads}")
        if attention_window is not None:
            if network != "transformer":
                raise ValueError(f"attention_window applies to network='transformer', "
                                 f"got network={network!r}")
            attention_window = positive_int(attention_window, "attention_window")
        self.attention_window = attention_window
        self.prior_scale = positive_float(prior_scale, "prior_scale")
        self.net = self._build() if self.known else None

    def _build(self):
        V = self.num_outcomes
        if self.network == "gru":
            return GRUNet(V + 1, V, self.embedding_dim, self.hidden_size, self.num_layers,
                          self.num_classes)
        return TransformerNet(V + 1, V, self.embedding_dim, self.hidden_size,
                              self.num_layers, self.num_classes, self.num_heads,
                              self.attention_window)

    @property
    def prior_sites(self):
        return ("weight_prior",)

    def _weights(self) -> List[torch.Tensor]:
        if self.net is None:
            raise ValueError("AutoregressiveModel has no network until its vocabulary is "
                             "known: fit() builds it, or pass vocab=... / vocab_size=...")
        return cached_parameters(self, self.net)

    def weight_log_prior(self) -> torch.Tensor:
        """``sum_w log N(w; 0, prior_scale^2)`` over every weight of the network."""
        return gaussian_weight_log_prior(self._weights(), self.prior_scale)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: the start symbol (id V) then x_0 .. x_{T-2}."""
        start = torch.full_like(x[:, :1], self.num_outcomes)
        return torch.cat([start, x[:, :-1]], 1)

    def model(self, x=None, *, c=None, num_data=None, subsample_size=None):
        pyro.module("net", self.net)
        pyro.factor("weight_prior", self.weight_log_prior())
        if x is None:
            n = c.shape[0] if c is not None else (num_data or 1)
            with torch.no_grad():
                tokens = generate(self, {}, n, c)
            with pyro.plate("data", n):
                return pyro.deterministic("x", tokens, event_dim=1)
        with pyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
            sub = subsample_size is not None
            obs = x.index_select(0, idx) if sub else x
            ctx = c.index_select(0, idx) if (sub and c is not None) else c
            logits = self.net(self._inputs(obs), ctx)
            d = dist.Categorical(logits=logits).mask(self.mask(obs, self.end_id))
            return pyro.sample("x", d.to_event(1), obs=obs)

    def logits_given(self, params, x, c=None):
        return self.net(self._inputs(x), c)

    def start(self, params, n, c, capacity):
        like = self._anchor
        state = self.net.init_state(n, capacity, like)
        ids = torch.full((n,), self.num_outcomes, dtype=torch.long, device=like.device)
        return self.net.step(ids, c, state)

    def advance(self, params, state, token, c):
        return self.net.step(token, c, state)

    def init_values(self, x):
        return {}

    def num_params(self) -> int:
        return sum(p.numel() for p in self._weights())

    def get_config(self):
        return {"network": self.network, "embedding_dim": self.embedding_dim,
                "hidden_size": self.hidden_size, "num_layers": self.num_layers,
                "num_heads": self.num_heads, "attention_window": self.attention_window,
                "num_classes": self.num_classes,
                "prior_scale": self.prior_scale, "vocab": self.vocab,
                "vocab_size": self._vocab_size}
