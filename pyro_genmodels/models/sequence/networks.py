r"""The neural family, :class:`AutoregressiveModel`, and its causal networks
(:class:`GRUNet`, :class:`TransformerNet`).

The next-token logits :math:`\ell_\phi` come from a causal network (a GRU or a
decoder-only Transformer) evaluated at every position in one pass (teacher forcing); its
weights are phi, ``mle`` is plain training and ``map`` adds the factor site
``weight_prior`` = :math:`\sum_w \log \mathcal N(w; 0, s^2)` (L2 weight decay).

References:
    Bengio, Ducharme, Vincent & Jauvin (2003), *A neural probabilistic language model*,
    JMLR 3. Cho et al. (2014), *Learning phrase representations using RNN
    encoder-decoder for statistical machine translation*, EMNLP (the GRU). Vaswani et al.
    (2017), *Attention is all you need*, NeurIPS.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple, Union

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from ..._validation import check_choice, positive_float, positive_int
from ...base import Capabilities, cached_parameters, gaussian_weight_log_prior, register
from ...infer.objectives import data_plate, plate_rows, prior_factor
from ...infer.engines import PointEngine
from .sampling import SequenceFit, generate
from .tokens import SequenceModel

__all__ = ["NETWORKS", "AutoregressiveModel", "GRUNet", "TransformerNet"]


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
        """The teacher-forced pass: ids ``inputs`` ``(n, t)`` (with labels ``c``) to
        next-token logits ``(n, t, V)``."""
        h, _ = self.rnn(self.embed(inputs, c))
        return self.out(h)

    def init_state(self, n, capacity, like):
        """The state before the first token: ``None`` (the GRU starts from zeros)."""
        return None

    def step(self, ids, c, state):
        """One token per row: ``ids`` ``(n,)`` and ``state`` in, next-token logits
        ``(n, V)`` and the new hidden state out."""
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
        """The teacher-forced pass: ids ``inputs`` ``(n, t)`` (with labels ``c``) to
        next-token logits ``(n, t, V)``, causal (and windowed with ``window``)."""
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
        """An empty key/value cache for ``n`` sequences of up to ``capacity`` tokens (at most
        ``attention_window`` entries: a ring buffer), on ``like``'s dtype and device."""
        if self.window is not None:
            capacity = min(capacity, self.window)
        shape = (n, self.num_heads, capacity, self.hidden_size // self.num_heads)
        caches = [(like.new_zeros(shape), like.new_zeros(shape)) for _ in self.blocks]
        return {"cache": caches, "pos": 0}

    def step(self, ids, c, state):
        """One token per row: ``ids`` ``(n,)`` attend to the cached keys and values; returns
        the next-token logits ``(n, V)`` and the state with the cache extended."""
        pos = state["pos"]
        cap = state["cache"][0][0].shape[2] if state["cache"] else pos + 1
        limit = self.window or math.inf
        if cap <= pos and cap < limit:
            # grow: the sampler starts with room for its first positions (FIRST_WIDTH)
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
#: the Transformer's attention heads when ``num_heads`` is not given
_HEADS = 4


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
        num_heads: attention heads, Transformer only (must divide ``hidden_size``).
            ``None`` (default): 4.
        attention_window: w, Transformer only: each position attends to itself and the
            w - 1 before it (sliding-window attention), so a cached sampling step costs
            the same at every position; ``L`` layers see ``L (w - 1) + 1`` tokens back.
            ``None`` (default): full causal attention.
        num_classes: number of class labels c (``None``: unconditional).
        prior_scale: s, the sd of the Gaussian prior on every weight (``map``).
        vocab, vocab_size: as for :class:`NGram`.

    Sample sites: the factor ``weight_prior`` and the observed ``x`` ``(N, T)`` in the
    plate ``data`` (``Categorical(logits).mask(m).to_event(1)``).

    Example:
        >>> from pyro_genmodels.models.sequence import AutoregressiveModel
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
    engines = {m: PointEngine(m, num_steps=1500, lr=5e-3, lr_decay=0.1, batch_size=128)
               for m in ("mle", "map")}

    def __init__(self, *, network: str = "gru", embedding_dim: int = 32,
                 hidden_size: int = 128, num_layers: int = 1,
                 num_heads: Optional[int] = None, attention_window: Optional[int] = None,
                 num_classes: Optional[int] = None, prior_scale: float = 1.0,
                 vocab: Optional[str] = None, vocab_size: Optional[int] = None) -> None:
        super().__init__(vocab=vocab, vocab_size=vocab_size, num_classes=num_classes)
        self.network = check_choice(network, NETWORKS, "network")
        self.embedding_dim = positive_int(embedding_dim, "embedding_dim")
        self.hidden_size = positive_int(hidden_size, "hidden_size")
        self.num_layers = positive_int(num_layers, "num_layers")
        heads = None if num_heads is None else positive_int(num_heads, "num_heads")
        if attention_window is not None:
            attention_window = positive_int(attention_window, "attention_window")
        # the Transformer's own options would do nothing with a GRU. A GRU still takes
        # num_heads=4, the default that its get_config records (older saves: saved_config)
        for key, value, unused in (("num_heads", heads, (None, _HEADS)),
                                   ("attention_window", attention_window, (None,))):
            if self.network != "transformer" and value not in unused:
                raise ValueError(f"{key} applies to network='transformer', got network="
                                 f"{network!r} with {key}={value}: leave {key} out for a GRU")
        self.num_heads = _HEADS if heads is None else heads
        if self.network == "transformer" and self.hidden_size % self.num_heads:
            raise ValueError(f"Expected num_heads to divide hidden_size, but got "
                             f"hidden_size={hidden_size}, num_heads={self.num_heads}")
        self.attention_window = attention_window
        self.prior_scale = positive_float(prior_scale, "prior_scale")
        self.net: Optional[Union[GRUNet, TransformerNet]] = (self._build() if self.known
                                                             else None)

    def _build(self) -> Union[GRUNet, TransformerNet]:
        V = self.num_outcomes
        if self.network == "gru":
            return GRUNet(V + 1, V, self.embedding_dim, self.hidden_size, self.num_layers,
                          self.num_classes)
        return TransformerNet(V + 1, V, self.embedding_dim, self.hidden_size,
                              self.num_layers, self.num_classes, self.num_heads,
                              self.attention_window)

    @property
    def prior_sites(self) -> Tuple[str, ...]:
        return ("weight_prior",)

    def _network(self) -> Union[GRUNet, TransformerNet]:
        if self.net is None:
            raise ValueError("AutoregressiveModel has no network until its vocabulary is "
                             "known: fit() builds it, or pass vocab=... / vocab_size=...")
        return self.net

    def _weights(self) -> List[torch.Tensor]:
        return cached_parameters(self, self._network())

    def weight_log_prior(self) -> torch.Tensor:
        """``sum_w log N(w; 0, prior_scale^2)`` over every weight of the network."""
        return gaussian_weight_log_prior(self._weights(), self.prior_scale)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: the start symbol (id V) then x_0 .. x_{T-2}."""
        start = torch.full_like(x[:, :1], self.num_outcomes)
        return torch.cat([start, x[:, :-1]], 1)

    def model(self, x: Optional[torch.Tensor] = None, *, c: Optional[torch.Tensor] = None,
              num_data: Optional[int] = None, subsample_size: Optional[int] = None,
              subsample: Optional[torch.Tensor] = None) -> torch.Tensor:
        net = self._network()
        pyro.module("net", net)
        prior_factor("weight_prior", self.weight_log_prior)
        if x is None:
            n = num_data or (c.shape[0] if c is not None else 1)
            with torch.no_grad():
                tokens = generate(self, {}, n, plate_rows(c, torch.arange(n), n))
            with pyro.plate("data", n):
                return pyro.deterministic("x", tokens, event_dim=1)
        plate = data_plate(x, c, num_data, subsample_size, subsample)
        with plate as idx:
            assert idx is not None  # a vectorized plate yields its indices
            obs = plate_rows(x, idx, plate.size, "x")
            ctx = plate_rows(c, idx, plate.size)
            logits = net(self._inputs(obs), ctx)
            d = dist.Categorical(logits=logits).mask(self.mask(obs, self.end_id))
            return pyro.sample("x", d.to_event(1), obs=obs)

    def logits_given(self, params: Dict[str, torch.Tensor], x: torch.Tensor,
                     c: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self._network()(self._inputs(x), c)

    def start(self, params: Dict[str, torch.Tensor], n: int, c: Optional[torch.Tensor],
              capacity: int) -> Tuple[torch.Tensor, Any]:
        like, net = self._anchor, self._network()
        state = net.init_state(n, capacity, like)
        ids = torch.full((n,), self.num_outcomes, dtype=torch.long, device=like.device)
        return net.step(ids, c, state)

    def advance(self, params: Dict[str, torch.Tensor], state: Any, token: torch.Tensor,
                c: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Any]:
        return self._network().step(token, c, state)

    def init_values(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {}

    def num_params(self) -> int:
        return sum(p.numel() for p in self._weights())

    @classmethod
    def saved_config(cls, config: Dict[str, Any], modules: Any) -> Dict[str, Any]:
        gru = config.get("network", "gru") == "gru"  # saved its unused num_heads as given
        return {**config, "num_heads": _HEADS} if gru else config

    def get_config(self) -> Dict[str, Any]:
        return {"network": self.network, "embedding_dim": self.embedding_dim,
                "hidden_size": self.hidden_size, "num_layers": self.num_layers,
                "num_heads": self.num_heads, "attention_window": self.attention_window,
                "num_classes": self.num_classes,
                "prior_scale": self.prior_scale, "vocab": self.vocab,
                "vocab_size": self._vocab_size}
