"""The contract-test registry: one or more cases per registered model family.

A case says how to build the model and its data, which small budgets make each method
fast enough for the contract suite, and what the family's data and draws look like
(float rows, strings, token ids with ``lengths=`` / ``mask=``): how to check a batch of
draws, how to compare two, which inputs must be refused. The generic tests in
tests/test_contract.py only read these fields; family-specific oracles live in the
family's own test file.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Type

import numpy as np
import torch

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded
from pyro_genmodels.infer.mcmc import POSTERIOR_STATS
from pyro_genmodels.models.sequence import AutoregressiveModel, NGram


# ---------------------------------------------------------------------- data and refusals
@dataclasses.dataclass
class Data:
    """A data set as fit / log_prob take it: ``x``, its labels or context ``c``, and the
    data options that travel with ``x`` (``lengths=`` / ``mask=`` of padded token ids)."""

    x: Any
    c: Any = None
    options: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def kw(self) -> Dict[str, Any]:
        """The keyword arguments of ``fit`` / ``log_prob`` besides ``x``."""
        return {"c": self.c, **self.options}

    def __len__(self) -> int:
        return len(self.x)


@dataclasses.dataclass
class Refusal:
    """An input that must raise ``error`` (its message matching ``match``) before any
    work; ``model`` (optional) makes the model that is given it from the case's model."""

    data: Data
    error: Type[Exception]
    match: Optional[str]
    model: Optional[Callable[[Any], Any]] = None


def _replace(d: Data, **changes: Any) -> Data:
    return dataclasses.replace(d, **changes)


# ---------------------------------------------------------------------- the case record
def _tensors_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a, b)


def _log_prob(fit, d: "Data") -> torch.Tensor:
    return fit.log_prob(d.x, **d.kw)


@dataclasses.dataclass
class Case:
    make_model: Callable[[], pgm.GenerativeModel]
    #: seed -> the case's data (the same seed gives the same data)
    make_data: Callable[[int], Data]
    #: method -> its small budget; the methods this case runs
    fast_options: Dict[str, Dict[str, Any]]
    #: what ``fit.log_prob_kind`` is (energy: "estimate", an AIS estimate of log Z)
    log_prob_kind: str
    #: ``(samples, n)`` -> asserts that ``fit.sample(n, ...)`` returned n well-formed draws
    check_sample: Callable[[Any, int], None]
    #: the keys of ``fit.params`` (empty for networks: their weights are the model's)
    params: FrozenSet[str] = frozenset()
    #: ``(draws, draws)`` -> whether two ``sample`` results are the same
    same_samples: Callable[[Any, Any], bool] = _tensors_equal
    #: the ``c`` that ``sample`` is given (conditional cases)
    sample_c: Any = None
    #: extra options of ``sample`` in the save/load round trip (a prompt)
    sample_options: Dict[str, Any] = dataclasses.field(default_factory=dict)
    #: dtype of ``fit.data`` (the encoded training data)
    data_dtype: torch.dtype = torch.float32
    #: every log_prob is below this (a probability mass is below 1: 0.0)
    log_prob_below: float = math.inf
    #: log_prob is finite on unseen data too (not so for an n-gram MLE: an unseen
    #: transition has probability 0, log_prob -inf)
    finite_on_heldout: bool = True
    #: the engine may stop before ``num_steps`` (EM's convergence test)
    stops_early: bool = False
    #: data -> inputs that ``fit`` must refuse before any state changes
    refusals: Callable[[Data], List[Refusal]] = lambda d: []
    #: data -> inputs that ``fit.log_prob`` (the case's ``score``) must refuse
    bad_inputs: Callable[[Data], List[Refusal]] = lambda d: []
    #: ``(fit, data) -> (N,)`` a per-row value that the contract compares across fits
    #: (``fit.log_prob``; a family with no density gives another, e.g. a GAN's critic)
    score: Callable[[Any, Data], torch.Tensor] = _log_prob
    #: the score is a seeded Monte Carlo estimate (IWAE, a diffusion ELBO): the same on
    #: one device, but the same seed draws other numbers on a GPU than on a CPU
    monte_carlo_score: bool = False


def built_with_seed(build: Callable[[], pgm.GenerativeModel]):
    """Families with random initial weights are built under a fixed seed, so two builds
    are the same model and the caller's RNG is untouched."""
    def make():
        with seeded(0):
            return build()
    return make


# ---------------------------------------------------------------------- numeric rows
def _gaussian_data(seed: int) -> Data:
    return Data(pgm.datasets.correlated_gaussian(120, dim=3, seed=seed)[0])


def _banana_data(seed: int) -> Data:
    with seeded(seed):
        return Data(pgm.datasets.toy("banana").sample((120,)))


def _cluster_data(seed: int) -> Data:
    return Data(pgm.datasets.clusters(120, k=3, dim=3, seed=seed)[0])


def _gaussian_data_with_context(seed: int) -> Data:
    """Rows whose mean moves with a 2-D context: x = N(0, S) + (c1, c2, c1 - c2)."""
    x = pgm.datasets.correlated_gaussian(120, dim=3, seed=seed)[0]
    c = torch.randn(120, 2, generator=torch.Generator().manual_seed(seed + 100))
    return Data(x + torch.stack([c[:, 0], c[:, 1], c[:, 0] - c[:, 1]], 1), c)


def _rows(dim: int) -> Callable[[Any, int], None]:
    def check(s, n):
        assert isinstance(s, torch.Tensor) and s.shape == (n, dim), getattr(s, "shape", s)
        assert torch.isfinite(s).all()
    return check


def _numeric_refusals(d: Data) -> List[Refusal]:
    x, n, D = d.x, len(d.x), d.x.shape[1]
    out = []
    for value in (float("nan"), float("inf")):
        bad = x.clone()
        bad[4, 1] = value
        out.append(Refusal(_replace(d, x=bad), ValueError, r"row 4, column 1"))
    out += [Refusal(_replace(d, x=x[:0]), ValueError, "empty"),
            Refusal(_replace(d, x=x[:, :-1]), ValueError, rf"expected {D}, got {D - 1}"),
            Refusal(_replace(d, x=np.array([["a"] * D] * 3)), TypeError, "numeric"),
            Refusal(_replace(d, x="data.csv"), TypeError, None)]
    if d.c is not None:
        out.append(Refusal(_replace(d, c=d.c[:-1]), ValueError,
                           rf"c has {n - 1} rows, expected {n} \(one per data row"))
    return out


def _numeric_bad_inputs(d: Data) -> List[Refusal]:
    x = d.x
    return [Refusal(_replace(d, x=x[:, :-1]), ValueError, "columns"),
            Refusal(_replace(d, x=torch.full_like(x, float("nan"))), ValueError, "finite")]


def numeric_case(make_model, make_data, fast_options, *, dim: int, log_prob_kind="exact",
                 params=(), sample_c=None, stops_early=False, score=_log_prob,
                 monte_carlo_score=False) -> Case:
    """A family of float rows ``(N, dim)``: draws are rows, refusals name the bad cell."""
    return Case(make_model, make_data, fast_options, log_prob_kind=log_prob_kind,
                check_sample=_rows(dim), params=frozenset(params), sample_c=sample_c,
                stops_early=stops_early, refusals=_numeric_refusals,
                bad_inputs=_numeric_bad_inputs, score=score,
                monte_carlo_score=monte_carlo_score)


def _critic(fit, d: Data) -> torch.Tensor:
    """A GAN has no density: the critic's output per row stands in for log_prob."""
    return fit.critic(d.x, c=d.c)


# ---------------------------------------------------------------------- sequences
ALPHABET = "abc"


def _random_strings(seed: int, n: int = 40) -> List[str]:
    """Random strings over "abc" with lengths 0..6 (the empty string included)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, 7, (n,), generator=g).tolist()
    return ["".join(ALPHABET[int(i)] for i in torch.randint(0, 3, (m,), generator=g))
            for m in lengths]


def _labels(strings: List[str]) -> torch.Tensor:
    """Class 1 for the strings that start with "a"."""
    return torch.tensor([int(s[:1] == "a") for s in strings])


def _text_data(conditional: bool) -> Callable[[int], Data]:
    def make(seed):
        s = _random_strings(seed)
        return Data(s, _labels(s) if conditional else None)
    return make


def _token_lists(seed: int) -> Data:
    return Data([[ALPHABET.index(ch) for ch in s] for s in _random_strings(seed)])


def _padded(seed: int):
    """The strings as token ids ``(N, 6)``, padded with random valid ids (padding is
    never read), and their lengths."""
    ids = [[ALPHABET.index(ch) for ch in s] for s in _random_strings(seed)]
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randint(0, 3, (len(ids), 6), generator=g)
    for i, s in enumerate(ids):
        x[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return x, torch.tensor([len(s) for s in ids])


def _token_tensor_with_lengths(seed: int) -> Data:
    x, lengths = _padded(seed)
    return Data(x, options={"lengths": lengths})


def _token_tensor_with_mask(seed: int) -> Data:
    x, lengths = _padded(seed)
    return Data(x, options={"mask": torch.arange(x.shape[1]) < lengths[:, None]})


def _same_sequences(u: list, v: list) -> bool:
    return len(u) == len(v) and all(
        torch.equal(p, q) if isinstance(p, torch.Tensor) else p == q for p, q in zip(u, v))


def _strings_over(alphabet: str) -> Callable[[Any, int], None]:
    def check(s, n):
        assert isinstance(s, list) and len(s) == n
        for seq in s:
            assert isinstance(seq, str) and set(seq) <= set(alphabet), seq
    return check


def _token_ids_below(k: int) -> Callable[[Any, int], None]:
    def check(s, n):
        assert isinstance(s, list) and len(s) == n
        for seq in s:
            assert isinstance(seq, torch.Tensor) and seq.dtype == torch.long and seq.dim() == 1
            assert ((seq >= 0) & (seq < k)).all(), seq
    return check


def _with_vocab(vocab: str) -> Callable[[Any], Any]:
    """The case's model with a fixed vocabulary (built under a fixed seed: a network with
    a known vocabulary draws its initial weights at construction)."""
    def make(model):
        with seeded(0):
            return type(model)(**{**model.get_config(), "vocab": vocab})
    return make


def _label_refusals(d: Data) -> List[Refusal]:
    if d.c is None:
        return []
    return [Refusal(_replace(d, c=d.c[:-1]), ValueError, "labels but there are"),
            Refusal(_replace(d, c=d.c + 5), ValueError, "not a class label")]


def _text_refusals(d: Data) -> List[Refusal]:
    x, n = d.x, len(d.x)
    return [Refusal(Data([]), ValueError, "empty"),
            Refusal(_replace(d, x=x[:3] + ["abz"] + x[4:]), ValueError, "'z'",
                    model=_with_vocab(ALPHABET)),
            Refusal(_replace(d, x=x[:2] + [5] + x[3:]), TypeError, "item 2 is int"),
            Refusal(_replace(d, x="abc"), TypeError, "list of strings"),
            Refusal(_replace(d, x=np.zeros((n, 3))), TypeError, "list of strings"),
            ] + _label_refusals(d)


def _text_bad_inputs(d: Data) -> List[Refusal]:
    return [Refusal(_replace(d, x=["abd"], c=None if d.c is None else d.c[:1]), ValueError,
                    "'d'")]


def _token_list_refusals(d: Data) -> List[Refusal]:
    x, n = d.x, len(d.x)
    return [Refusal(Data([]), ValueError, "empty"),
            Refusal(_replace(d, x=x[:3] + [[0, 7]] + x[4:]), ValueError, "token id 7"),
            Refusal(_replace(d, x=["ab"] * n), TypeError, "not strings"),
            Refusal(_replace(d, x=torch.full((n, 3), 0.5)), TypeError, "integer"),
            ] + _label_refusals(d)


def _token_tensor_refusals(d: Data) -> List[Refusal]:
    """Padded ids with ``lengths=`` or ``mask=``: the same refusals, and bad lengths/masks."""
    x, n = d.x, len(d.x)
    lengths = d.options.get("lengths")
    if lengths is None:
        lengths = d.options["mask"].sum(1)
    row = int((lengths > 0).nonzero()[0])  # a token inside a row's length
    bad_id = x.clone()
    bad_id[row, 0] = 7
    # an empty mask is refused as "all False" before the data are seen to be empty
    empty = {k: v[:0] for k, v in d.options.items() if k == "lengths"}
    out = [Refusal(_replace(d, x=x[:0], options=empty), ValueError, "empty"),
           Refusal(_replace(d, x=bad_id), ValueError, "token id 7"),
           Refusal(Data(["ab"] * n, d.c), TypeError, "not strings"),
           Refusal(_replace(d, x=x.float() + 0.5), TypeError, "integer")]
    if "lengths" in d.options:
        too_long = lengths.clone()
        too_long[row] = x.shape[1] + 1
        out.append(Refusal(_replace(d, options={"lengths": too_long}), ValueError,
                           rf"lengths must lie in \[0, {x.shape[1]}\]"))
    else:
        holes = d.options["mask"].clone()
        holes[row] = torch.arange(x.shape[1]) % 2 == 0  # True, False, True, ...
        out += [Refusal(_replace(d, options={"mask": holes}), ValueError,
                        rf"mask row {row} is not tokens-then-padding"),
                Refusal(_replace(d, options={"mask": torch.zeros_like(holes)}), ValueError,
                        "all False")]
    return out + _label_refusals(d)


def _token_refusals(d: Data) -> List[Refusal]:
    return (_token_tensor_refusals if isinstance(d.x, torch.Tensor) else _token_list_refusals)(d)


def _token_bad_inputs(d: Data) -> List[Refusal]:
    if not d.options:
        bad = Data([[0, 3]])
    elif "lengths" in d.options:
        bad = Data(torch.tensor([[0, 3, 9]]), options={"lengths": torch.tensor([2])})
    else:
        bad = Data(torch.tensor([[0, 3, 9]]), options={"mask": torch.tensor([[True, True,
                                                                              False]])})
    return [Refusal(_replace(bad, c=None if d.c is None else d.c[:1]), ValueError,
                    "token id 3")]


def text_case(make_model, fast_options, *, conditional=False, params=()) -> Case:
    """Lists of strings over "abc"; draws are strings; labels by first letter."""
    return Case(built_with_seed(make_model), _text_data(conditional), fast_options,
                log_prob_kind="exact", check_sample=_strings_over(ALPHABET),
                params=frozenset(params), same_samples=_same_sequences,
                sample_c=1 if conditional else None, sample_options={"prefix": "a"},
                data_dtype=torch.long, log_prob_below=0.0, refusals=_text_refusals,
                bad_inputs=_text_bad_inputs)


def token_case(make_model, make_data, fast_options, *, params=(),
               finite_on_heldout=True) -> Case:
    """Token ids 0..2 (a list of id lists, or padded ids with ``lengths=``/``mask=``);
    draws are 1-D LongTensors."""
    return Case(built_with_seed(make_model), make_data, fast_options,
                log_prob_kind="exact", check_sample=_token_ids_below(3),
                params=frozenset(params), same_samples=_same_sequences,
                sample_options={"prefix": [1]}, data_dtype=torch.long, log_prob_below=0.0,
                finite_on_heldout=finite_on_heldout, refusals=_token_refusals,
                bad_inputs=_token_bad_inputs)


# ---------------------------------------------------------------------- the cases
_FAST = {
    "mle": {"num_steps": 60},
    "map": {"num_steps": 60},
    "vi": {"num_steps": 60, "num_posterior_samples": 50},
    "nuts": {"num_samples": 30, "warmup_steps": 30, "num_chains": 2},
    # a trajectory of 1 took 6 s of warmup here (the step size is small early on, and
    # HMC takes trajectory_length / step_size steps); the contract needs the path, not
    # the mixing, which the calibration tests check
    "hmc": {"num_samples": 30, "warmup_steps": 30, "num_chains": 2, "trajectory_length": 0.25},
    "chees": {"num_samples": 30, "warmup_steps": 30, "num_chains": 2},
}
_MIXTURE_FAST = {"mle": {"num_steps": 30}, "map": {"num_steps": 30},
                 "vi": {"num_steps": 30, "num_posterior_samples": 30},
                 "nuts": {"num_samples": 5, "warmup_steps": 5, "num_chains": 2,
                          "max_tree_depth": 3},
                 "chees": {"num_samples": 10, "warmup_steps": 10, "num_chains": 2}}
_NET = dict(embedding_dim=8, hidden_size=16, num_heads=2)
_GRU = dict(embedding_dim=8, hidden_size=16)  # no heads: a GRU has no attention
_NET_FAST = {m: {"num_steps": 15, "batch_size": 16} for m in ("mle", "map")}
_GAUSSIAN = ("loc", "scale", "corr_cholesky", "covariance_matrix")
_MIXTURE = ("weights", "locs", "scales", "covariances")

CASES: Dict[str, Case] = {
    "gaussian": numeric_case(lambda: pgm.Gaussian(3), _gaussian_data, _FAST, dim=3,
                             params=_GAUSSIAN),
    "gaussian-known-cov": numeric_case(
        lambda: pgm.Gaussian(3, covariance=torch.eye(3) * 2.0, prior_scale=5.0),
        _gaussian_data, _FAST, dim=3, params=("loc", "covariance_matrix")),
    "flow": numeric_case(
        built_with_seed(lambda: pgm.Flow(3, hidden=(16, 16), num_transforms=2)),
        _gaussian_data, {"mle": {"num_steps": 30, "batch_size": 64},
                         "map": {"num_steps": 30, "batch_size": 64}}, dim=3),
    "flow-conditional": numeric_case(
        built_with_seed(lambda: pgm.Flow(3, hidden=(16, 16), num_transforms=2,
                                         context_dim=2)),
        _gaussian_data_with_context, {"mle": {"num_steps": 30, "batch_size": 64},
                                      "map": {"num_steps": 30, "batch_size": 64}},
        dim=3, sample_c=torch.tensor([[0.5, -1.0]])),
    "gaussian_mixture": numeric_case(
        lambda: pgm.GaussianMixture(3, 3, n_init=2), _cluster_data, _MIXTURE_FAST, dim=3,
        params=_MIXTURE + ("corr_cholesky",), stops_early=True),
    "gaussian_mixture-diag": numeric_case(
        lambda: pgm.GaussianMixture(3, 2, covariance_type="diag", n_init=1), _cluster_data,
        _MIXTURE_FAST, dim=3, params=_MIXTURE, stops_early=True),
    "energy": numeric_case(
        built_with_seed(lambda: pgm.EnergyModel(2, hidden=(16, 16))), _banana_data,
        {m: {"num_steps": 20, "batch_size": 64} for m in ("mle", "map")}, dim=2,
        log_prob_kind="estimate"),
    "energy-contrastive": numeric_case(
        built_with_seed(lambda: pgm.EnergyModel(2, hidden=(16, 16), noise_conditional=False)),
        _banana_data,
        {m: {"num_steps": 20, "batch_size": 64, "buffer_size": 256, "mcmc_steps": 5}
         for m in ("mle", "map")}, dim=2, log_prob_kind="estimate"),
    "vae": numeric_case(
        built_with_seed(lambda: pgm.VAE(3, 2, likelihood="gaussian", hidden=(16,))),
        _gaussian_data, {"mle": {"num_steps": 30, "batch_size": 64},
                         "map": {"num_steps": 30, "batch_size": 64}}, dim=3,
        log_prob_kind="estimate", monte_carlo_score=True),
    "gan": numeric_case(
        built_with_seed(lambda: pgm.GAN(3, hidden=(16, 16))), _gaussian_data,
        {"adversarial": {"num_steps": 20, "batch_size": 64}}, dim=3, log_prob_kind="none",
        score=_critic),
    "gan-wasserstein-conditional": numeric_case(
        built_with_seed(lambda: pgm.GAN(3, hidden=(16,), divergence="wasserstein",
                                        context_dim=2)),
        _gaussian_data_with_context,
        {"adversarial": {"num_steps": 10, "batch_size": 64, "critic_steps": 2}}, dim=3,
        log_prob_kind="none", sample_c=torch.tensor([[0.5, -1.0]]), score=_critic),
    "diffusion": numeric_case(
        built_with_seed(lambda: pgm.Diffusion(3, timesteps=20, hidden=(16, 16))),
        _gaussian_data, {m: {"num_steps": 20, "batch_size": 64} for m in ("mle", "map")},
        dim=3, log_prob_kind="bound", monte_carlo_score=True),
    "diffusion-conditional-elbo": numeric_case(
        built_with_seed(lambda: pgm.Diffusion(3, timesteps=15, hidden=(16,), context_dim=2,
                                              schedule="linear")),
        _gaussian_data_with_context,
        {m: {"num_steps": 20, "batch_size": 64, "objective": "elbo"} for m in ("mle", "map")},
        dim=3, log_prob_kind="bound", sample_c=torch.tensor([[0.5, -1.0]]),
        monte_carlo_score=True),
    "score": numeric_case(
        built_with_seed(lambda: pgm.ScoreModel(3, hidden=(16, 16), num_levels=4)),
        _gaussian_data, {"dsm": {"num_steps": 20, "batch_size": 64},
                         "ssm": {"num_steps": 20, "batch_size": 64}},
        dim=3, log_prob_kind="estimate"),
    "score-conditional-discrete": numeric_case(
        built_with_seed(lambda: pgm.ScoreModel(3, hidden=(16,), context_dim=2,
                                               sigmas=[3.0, 1.0, 0.3, 0.1])),
        _gaussian_data_with_context,
        {"dsm": {"num_steps": 20, "batch_size": 64, "levels": "discrete",
                 "weight_prior_scale": 1.0}},
        dim=3, log_prob_kind="estimate", sample_c=torch.tensor([[0.5, -1.0]])),
    "ppca": numeric_case(lambda: pgm.PPCA(3, 1), _gaussian_data,
                         {k: _FAST[k] for k in ("mle", "map", "vi")}, dim=3,
                         params=("W", "loc", "sigma", "covariance_matrix")),
    # sequences: text (the vocabulary is built from the training strings) and token ids
    "ngram": text_case(lambda: NGram(2, prior_concentration=2.0),
                       {"mle": {}, "map": {},
                        "vi": {"num_steps": 30, "num_posterior_samples": 20},
                        "nuts": {"num_samples": 8, "warmup_steps": 8, "num_chains": 2,
                                 "max_tree_depth": 3},
                        "chees": {"num_samples": 10, "warmup_steps": 10, "num_chains": 2}},
                       params=("probs",)),
    "ngram-tokens": token_case(lambda: NGram(3, vocab_size=3), _token_lists,
                               {"mle": {}, "map": {}}, params=("probs",),
                               finite_on_heldout=False),
    "ngram-tokens-lengths": token_case(lambda: NGram(2, vocab_size=3),
                                       _token_tensor_with_lengths, {"mle": {}, "map": {}},
                                       params=("probs",), finite_on_heldout=False),
    "gru": text_case(lambda: AutoregressiveModel(**_GRU), _NET_FAST),
    "gru-conditional": text_case(lambda: AutoregressiveModel(num_classes=2, **_GRU),
                                 _NET_FAST, conditional=True),
    "transformer": text_case(lambda: AutoregressiveModel(network="transformer",
                                                         num_layers=2, **_NET), _NET_FAST),
    "transformer-window": text_case(
        lambda: AutoregressiveModel(network="transformer", num_layers=2, attention_window=3,
                                    num_classes=2, **_NET), _NET_FAST, conditional=True),
    "transformer-tokens-mask": token_case(
        lambda: AutoregressiveModel(network="transformer", vocab_size=3, **_NET),
        _token_tensor_with_mask, {"mle": _NET_FAST["mle"]}),
}


def case_method_pairs():
    """(case, method) for every method a case runs."""
    return [(name, method) for name, case in CASES.items() for method in case.fast_options]


def same_config(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    """Two ``get_config()`` dicts are equal (tensors compared by value)."""
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]
        for k in a)


def check_inference_data(fit, method):
    """The ArviZ contract of every fit: groups, attributes and sizes by kind of fit."""
    idata = fit.to_arviz()
    assert ("posterior" in idata.groups()) == bool(fit.model.global_sites)
    assert idata.attrs["inference_method"] == method
    for site in fit.model.global_sites:
        assert site in idata.posterior
    if method in ("nuts", "hmc", "chees"):  # every MCMC path: the same statistics, so
        # az.summary, az.plot_energy and az.bfmi read them alike
        assert set(idata.sample_stats.data_vars) == set(POSTERIOR_STATS)
        assert np.isfinite(idata.sample_stats["energy"].values).all()
        assert (idata.sample_stats["n_steps"].values >= 1).all()
        assert idata.sample_stats["diverging"].dtype == bool
    if fit.is_posterior:
        assert idata.log_likelihood["x"].shape[-1] == fit.data.shape[0]
        assert "posterior_predictive" in idata.groups()
    else:
        assert idata.attrs["point_estimate"] == method
        if fit.model.global_sites:
            assert idata.posterior.sizes["chain"] == 1 and idata.posterior.sizes["draw"] == 1
        assert list(idata.optimization["loss"].values) == fit.losses
        # which objective: the method's (a GAN's loss is no negative log joint)
        assert idata.optimization.attrs["method"] == method
    assert "observed_data" in idata.groups()
