r"""Sequences as tokens: the vocabulary, the encoding, and :class:`SequenceModel`, the
shared base of the autoregressive families.

A sequence :math:`x = (x_1, \dots, x_n)` of tokens from a vocabulary of K symbols is
closed by an end token :math:`\langle e\rangle`, so every factor is a softmax over
:math:`V = K + 1` outcomes and the probabilities of all finite sequences sum to one:

.. math::

    p_\phi(x \mid c) = \prod_{i=1}^{n+1} p_\phi(x_i \mid x_{<i}, c), \qquad
    x_{n+1} = \langle e\rangle, \qquad
    p_\phi(x_i = v \mid x_{<i}, c) = \operatorname{softmax}(\ell_\phi(x_{<i}, c))_v .

The context :math:`x_{<i}` is padded on the left by a start state, so the first token has
a distribution too.

Data: a list of strings (characters are the tokens; the vocabulary is the sorted set of
training characters, kept in the model config so that save/load restores it), or, with
``vocab_size=K``, integer token ids ``0..K-1`` as a LongTensor ``(N, L)`` with
``lengths=(N,)`` (or a padding ``mask=(N, L)``) or a list of integer sequences.
Internally a batch is a LongTensor ``(N, T)`` padded with the end id K after each
sequence's first end token.
"""

from __future__ import annotations

import numbers
import reprlib
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, TypeVar, Union, cast

import numpy as np
import torch

from ..._rng import seeded
from ..._validation import RowError, _is_pandas, positive_int
from ...base import Capabilities, GenerativeModel
from .sampling import SequenceFit, generate

__all__ = ["END", "SequenceModel", "build_vocab"]

#: how the end token is shown in messages
END = "<end>"
_S = TypeVar("_S", bound="SequenceModel")


# ---------------------------------------------------------------------- data handling
def _is_int_tensor(t: torch.Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def build_vocab(data: Any) -> str:
    """The sorted characters of a list of strings (the text vocabulary, end token apart)."""
    data = _as_strings(data)
    _check_strings(data)
    chars = sorted(set().union(*(set(s) for s in data)))
    if not chars:
        raise ValueError("The training strings contain no character: cannot build a "
                         "vocabulary from empty strings only")
    return "".join(chars)


def _as_strings(data: Any) -> Any:
    """A pandas Series or a 1-D NumPy array of strings as a list (what the text models
    take); anything else as given, for :func:`_check_strings` to judge."""
    if _is_pandas(data) and data.ndim == 1:  # a Series
        return data.tolist()
    if isinstance(data, np.ndarray) and data.ndim == 1 and data.dtype.kind in "UO":
        return data.tolist()
    return data


def _check_strings(data: Any, name: str = "data") -> None:
    if isinstance(data, (str, bytes)):
        raise TypeError(f"{name} must be a list of strings, got a single {type(data).__name__}"
                        f" ({data[:20]!r}); wrap it in a list")
    if isinstance(data, np.ndarray):
        raise TypeError(f"{name} must be a list of strings (or a pandas Series or 1-D NumPy "
                        f"array of str), got a NumPy array of dtype {data.dtype} and shape "
                        f"{data.shape}" + ("; decode bytes first (np.char.decode)"
                                           if data.dtype.kind == "S" else ""))
    if not isinstance(data, Sequence):
        raise TypeError(f"{name} must be a list of strings (or a pandas Series or 1-D NumPy "
                        f"array of them), got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"{name} is empty: expected at least one string")
    for i, s in enumerate(data):
        if not isinstance(s, str):
            raise TypeError(f"{name} must be a list of strings, but item {i} is "
                            f"{type(s).__name__} ({s!r})")
        j = _lone_surrogate(s)
        if j is not None:
            said = f"{s!r} holds {s[j]!r} at position {j}, {_SURROGATE}"
            raise RowError(f"{name}[{i}] = {said}", i, f": {said}")


#: why a string with a lone surrogate is refused
_SURROGATE = "a lone surrogate (half of a UTF-16 pair), which UTF-8 cannot encode"


def _lone_surrogate(s: str) -> Optional[int]:
    """The position of the first character of ``s`` that UTF-8 cannot encode (a lone
    surrogate), or ``None``."""
    if s.isascii():
        return None
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start
    return None



class SequenceModel(GenerativeModel):
    """Shared base of the autoregressive families: vocabulary, encoding, class labels,
    the fit, and the hooks of the generic sampler.

    A family implements :meth:`logits_given` (all positions, one pass), :meth:`start` and
    :meth:`advance` (the cached step), :meth:`model` and :meth:`get_config`.
    """

    capabilities: ClassVar[Capabilities]
    max_plate_nesting = 1
    data_options = ("lengths", "mask")
    no_distribution = ("its exact log_prob is of sequences of varying length, which a "
                       "distribution of event shape (dim,) cannot hold; use fit.log_prob and "
                       "fit.sample")

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
            j = _lone_surrogate(vocab)
            if j is not None:
                raise ValueError(f"vocab {vocab!r} holds {vocab[j]!r}, {_SURROGATE}")
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
            assert self._vocab_size is not None  # token_mode: vocab_size was given
            return self._vocab_size
        if self.vocab is None:
            raise self._no_vocabulary()
        return len(self.vocab)

    def _no_vocabulary(self) -> ValueError:
        return ValueError(f"{type(self).__name__} has no vocabulary yet: it is built from "
                          f"the training strings by fit(), or pass vocab=...")

    @property
    def num_outcomes(self) -> int:
        """V = K + 1, the tokens and the end token."""
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
               device: torch.device | str | None = None) -> torch.Tensor:
        """Validate and encode sequences: a LongTensor ``(N, T)`` where row i holds the
        tokens of sequence i, the end id K, then padding (K), T = longest + 1.

        Text models take a list of strings; token models (``vocab_size=K``) take a
        LongTensor ``(N, L)`` of ids in ``[0, K)`` with optional ``lengths`` ``(N,)``
        (default: all L) or ``mask``, a padding mask ``(N, L)`` bool (True at tokens,
        then False), or a list of integer sequences; a NumPy array is taken as a tensor.
        """
        if self.token_mode and isinstance(data, np.ndarray) and data.ndim == 2 and \
                data.dtype.kind in "iubf":  # a copy: any byte order, read-only or not
            data = torch.from_numpy(np.array(data, dtype=data.dtype.newbyteorder("=")))
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

    def _to_id_lists(self, data: Any, lengths: Any, name: str, *,
                     single: bool = False) -> List[List[int]]:
        """``data`` as lists of token ids, each id checked against the vocabulary.
        ``single``: ``data`` wraps one sequence (a prompt), so messages name no row."""
        if not self.token_mode:
            if lengths is not None:
                raise ValueError("lengths is for token-id data (vocab_size=...); strings "
                                 "carry their own lengths")
            data = _as_strings(data)
            _check_strings(data, name)
            index = self._index
            if index is None:  # a text model before its fit built the vocabulary
                raise self._no_vocabulary()
            out = []
            for i, s in enumerate(data):
                try:
                    out.append([index[ch] for ch in s])
                except KeyError:
                    j, bad = next((j, ch) for j, ch in enumerate(s) if ch not in index)
                    outside = f"has the character {bad!r}, which is not in the vocabulary"
                    if single:  # one prompt: no row to name
                        raise ValueError(f"{name} {s!r} {outside} {self.vocab!r} (at "
                                         f"position {j}, counting from 0)") from None
                    said = f"{s!r} {outside} {self.vocab!r}"
                    raise RowError(f"{name}[{i}] = {said}", i, f": {said}") from None
            return out
        K = self.vocab_size
        if isinstance(data, (str, bytes)) or (isinstance(data, Sequence) and data
                                              and isinstance(data[0], str)):
            raise TypeError(f"{name}: {type(self).__name__}(vocab_size={K}) takes integer "
                            f"token ids (a LongTensor (N, L) or a list of integer sequences), "
                            f"not strings")
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
                # a tensor or a NumPy array of ids (its integers are not Python's)
                s = s.tolist() if isinstance(s, (torch.Tensor, np.ndarray)) else s
                if isinstance(s, (str, bytes)) or not isinstance(s, Sequence) or not all(
                        isinstance(v, numbers.Integral) and not isinstance(v, bool)
                        for v in s):
                    raise TypeError(f"{name}[{i}] must be a sequence of integer token ids, "
                                    f"got {s!r}")
                seqs.append([int(v) for v in s])
        for i, s in enumerate(seqs):
            for j, v in enumerate(s):
                if not 0 <= v < K:
                    outside = f"which is not in the vocabulary [0, {K})"
                    if single:
                        raise ValueError(f"{name} position {j} has the token id {v}, {outside}")
                    raise RowError(f"{name}[{i}] has the token id {v}, {outside} (at "
                                   f"position {j} of {name}[{i}], counting from 0)", i,
                                   f", id {j + 1}: found the token id {v}, {outside}")
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

    def decode(self, tokens: torch.Tensor) -> List[Union[str, torch.Tensor]]:
        """Inverse of :meth:`encode`: the tokens before each row's first end token, as
        strings (text) or 1-D LongTensors on ``tokens``' device (token ids)."""
        out: List[Union[str, torch.Tensor]] = []
        for i, row in enumerate(tokens.cpu().tolist()):
            n = row.index(self.end_id) if self.end_id in row else len(row)
            if self.token_mode:  # a copy: the draws do not hold the whole padded batch
                out.append(tokens[i, :n].to(torch.long, copy=True))
            else:
                vocab = self.vocab
                assert vocab is not None  # a text model's end_id needs its vocabulary
                out.append("".join(vocab[t] for t in row[:n]))
        return out

    def validate_data(self, data: Any, *, name: str = "data",
                      device: torch.device | str | None = None,
                      dtype: torch.dtype | None = None) -> torch.Tensor:
        """Encode ``data`` (a list of strings, or token ids with ``vocab_size``) to padded ids;
        unknown tokens and bad values raise a ``ValueError`` naming ``name``."""
        return self.encode(data, name=name, device=device)

    def validate_context(self, c: Any, num_rows: int, *,
                         device: torch.device | str | None = None,
                         dtype: torch.dtype | None = None) -> Optional[torch.Tensor]:
        """Class labels: ``None`` for unconditional models, else integers in
        ``[0, num_classes)`` of shape ``(num_rows,)`` (one label is broadcast); floats
        that are whole numbers (``0.``, ``1.``) are labels too, as for the VAE."""
        name = type(self).__name__
        if self.num_classes is None:
            if c is not None:
                raise ValueError(f"{name} is unconditional (num_classes=None): c must be None")
            return None
        if c is None:
            raise ValueError(f"{name} is conditional (num_classes={self.num_classes}): pass "
                             f"c, integer class labels of shape ({num_rows},)")
        expected = (f"integer class labels in [0, {self.num_classes}) of shape ({num_rows},) "
                    f"or one int")
        t: Optional[torch.Tensor]
        if isinstance(c, torch.Tensor):
            t = c.detach()
        else:
            try:
                t = None if isinstance(c, (str, bytes)) else torch.as_tensor(c)
            except (TypeError, ValueError, RuntimeError):  # lists of strings, ragged lists
                t = None
            if t is None:
                raise TypeError(f"c must be {expected}, got {reprlib.repr(c)}")
        if not (_is_int_tensor(t) or t.is_floating_point()):
            raise TypeError(f"c must hold integer class labels, got dtype {t.dtype}")
        if t.dim() == 0:
            t = t.reshape(1)
        if t.dim() != 1:
            raise ValueError(f"c must be 1-D class labels of shape ({num_rows},), got shape "
                             f"{tuple(t.shape)}")
        if t.is_floating_point():  # whole numbers are labels (0., 1.), as for the VAE
            bad = ~torch.isfinite(t) | (t != t.round())
            if bad.any():
                i = int(bad.nonzero()[0])
                raise ValueError(f"c must be finite integer class labels; found {t[i].item()} "
                                 f"at position {i}")
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

    def token_log_probs(self, params: Dict[str, torch.Tensor], x: torch.Tensor,
                        c: Optional[torch.Tensor] = None, *, include_end: bool = True
                        ) -> torch.Tensor:
        """``log p(x_t | x_<t, c)`` at every scored position, 0 elsewhere: ``(*batch, N, T)``.
        ``include_end=False`` leaves the end token's term out (prefix probabilities)."""
        lp = self.logits_given(params, x, c).log_softmax(-1)
        idx = x.expand(lp.shape[:-1]).unsqueeze(-1)
        lp = lp.gather(-1, idx).squeeze(-1)
        keep = self.mask(x, self.end_id)
        if not include_end:
            keep = keep & (x != self.end_id)
        return torch.where(keep, lp, torch.zeros((), dtype=lp.dtype, device=lp.device))

    def log_prob_given(self, params: Dict[str, torch.Tensor], x: torch.Tensor,
                       c: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.token_log_probs(params, x, c).sum(-1)

    # ------------------------------------------------------------------ cached sampling
    def start(self, params: Dict[str, torch.Tensor], n: int, c: Optional[torch.Tensor],
              capacity: int) -> Tuple[torch.Tensor, Any]:
        """``(logits (n, V), state)`` of the first position, for ``n`` rows (a batched
        phi has batch ``(n,)``); ``capacity``: the positions the state holds at first (a
        Transformer's cache grows when more come)."""
        raise NotImplementedError

    def advance(self, params: Dict[str, torch.Tensor], state: Any, token: torch.Tensor,
                c: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Any]:
        """Feed one token per row ``(n,)``: ``(logits of the next position, state)``."""
        raise NotImplementedError

    def sample_given(self, params: Dict[str, torch.Tensor], n: int,
                     c: Optional[torch.Tensor] = None, **kwargs: Any) -> torch.Tensor:
        return generate(self, params, n, c, **kwargs)

    def replicate_given(self, params: Dict[str, torch.Tensor], x: torch.Tensor
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Replicates drawn up to 64 tokens (or the longest training row's length if
        longer: a replicate is not cut there), both sides then as wide as the longest
        row of either with its end token, the shorter rows padded with the end id."""
        num, (n, length) = next(iter(params.values())).shape[0], x.shape
        reps = torch.stack([generate(self, {k: v[s].expand((n,) + v.shape[1:])
                                            for k, v in params.items()}, n, None,
                                     max_length=max(length, 64)) for s in range(num)])
        tokens = (reps != self.end_id).nonzero()
        longest = int(tokens[:, -1].max()) + 2 if tokens.numel() else 1  # with its end
        width = max(length, min(longest, reps.shape[-1]))
        return (reps[..., :width].contiguous(),
                torch.cat([x, x.new_full((n, width - length), self.end_id)], 1))

    def arviz_dims(self) -> Dict[str, Tuple[str, ...]]:
        return {self.observed_site: ("row", "position")}

    # ------------------------------------------------------------------ fitting
    def fit(self, data: Any, *, method: str, c: Any = None, seed: Optional[int] = None,
            progress: bool = True, lengths: Any = None, mask: Any = None,
            **options: Any) -> "SequenceFit":
        """Fit to sequences (see :class:`~pyro_genmodels.GenerativeModel.fit`).

        Args:
            data: a list of strings (text models), or token ids (``vocab_size=K``): a
                LongTensor ``(N, L)`` with ``lengths`` ``(N,)``, or a list of sequences.
                A text model without a vocabulary builds it from ``data``.
            method: one of ``self.capabilities.methods``.
            c: class labels ``(N,)`` in ``[0, num_classes)`` (conditional models).
            seed: reproducibility; the network's initial weights are drawn under it too.
            progress: tqdm progress bar.
            lengths: lengths ``(N,)`` of the rows of a padded token tensor.
            mask: or its padding mask ``(N, L)`` bool (True at tokens, then False).
            **options: engine options (``num_steps``, ``lr``, ``batch_size``, ...; none for
                the closed-form n-gram ``mle``/``map``), and ``device``.
        """
        return cast(SequenceFit,  # the fit_class of the sequence families
                    super().fit(data, method=method, c=c, seed=seed, progress=progress,
                                lengths=lengths, mask=mask, **options))

    def prepare_data(  # type: ignore[override]  # takes its data_options, not any keyword
            self, data: Any, c: Any, *, device: torch.device, lengths: Any = None,
            mask: Any = None) -> Tuple[SequenceModel, torch.Tensor, Optional[torch.Tensor]]:
        """A text model without a vocabulary builds it from ``data`` (on a copy)."""
        model = self if self.known else self._with_vocab(build_vocab(data))
        x = model.encode(data, lengths=lengths, mask=mask, name="data", device=device)
        return model, x, model.validate_context(c, x.shape[0], device=device)

    def working_copy(self: _S, x: torch.Tensor,
                     moments: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> _S:
        """A fresh model of the same config: the network's initial weights are drawn
        under the fit's seed. Token ids are integers: the weights keep the model's
        dtype (and are not standardized: ``moments`` is not used)."""
        return type(self)(**self.get_config()).to(device=x.device, dtype=self._anchor.dtype)
