"""The contract of tests/test_contract.py, for the sequence families (text / token data
instead of float (N, D) arrays): shapes, reproducibility, save/load, ArviZ, refusals
before any state change, fits owning their parameters, the caller's RNG untouched."""

import dataclasses
import math
import random
from typing import Any, Callable, Dict, Optional

import numpy as np
import pyro
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded
from pyro_genmodels.base import LOG_PROB_KINDS
from pyro_genmodels.models.sequence import AutoregressiveModel, NGram, SequenceFit
from tests.cases import SEQUENCE_FAMILIES, check_inference_data


@dataclasses.dataclass
class SeqCase:
    build: Callable[[], Any]
    fast_options: Dict[str, Dict[str, Any]]
    conditional: bool = False
    tokens: bool = False

    def make_model(self):
        """Built under a fixed seed: a network with a known vocabulary draws its weights
        at construction (the fit redraws them under its own seed)."""
        with seeded(0):
            return self.build()


def make_data(seed: int, case: Optional[SeqCase] = None, n: int = 40):
    """Random strings over "abc" (lengths 0..6), labels by first letter; token cases get
    the same as lists of ids."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, 7, (n,), generator=g).tolist()
    strings = ["".join("abc"[int(i)] for i in torch.randint(0, 3, (m,), generator=g))
               for m in lengths]
    c = torch.tensor([int(s[:1] == "a") for s in strings])
    data = [["abc".index(ch) for ch in s] for s in strings] if case and case.tokens else strings
    return data, (c if case and case.conditional else None)


_NET = dict(embedding_dim=8, hidden_size=16, num_heads=2)
_NET_FAST = {m: {"num_steps": 15, "batch_size": 16} for m in ("mle", "map")}
CASES = {
    "ngram": SeqCase(lambda: NGram(2, prior_concentration=2.0),
                     {"mle": {}, "map": {},
                      "vi": {"num_steps": 30, "num_posterior_samples": 20},
                      "nuts": {"num_samples": 8, "warmup_steps": 8, "num_chains": 2,
                               "max_tree_depth": 3}}),
    "ngram-tokens": SeqCase(lambda: NGram(3, vocab_size=3), {"mle": {}, "map": {}},
                            tokens=True),
    "gru": SeqCase(lambda: AutoregressiveModel(**_NET), _NET_FAST),
    "gru-conditional": SeqCase(lambda: AutoregressiveModel(num_classes=2, **_NET), _NET_FAST,
                               conditional=True),
    "transformer": SeqCase(lambda: AutoregressiveModel(network="transformer", num_layers=2,
                                                       **_NET), _NET_FAST),
    "transformer-window": SeqCase(lambda: AutoregressiveModel(
        network="transformer", num_layers=2, attention_window=3, num_classes=2, **_NET),
        _NET_FAST, conditional=True),
    "transformer-tokens": SeqCase(lambda: AutoregressiveModel(network="transformer",
                                                              vocab_size=3, **_NET),
                                  {"mle": _NET_FAST["mle"]}, tokens=True),
}
PAIRS = [(name, m) for name, case in CASES.items() for m in case.fast_options]
_CACHE = {}


def fitted(name, method, seed=0):
    key = (name, method, seed)
    if key not in _CACHE:
        case = CASES[name]
        x, c = make_data(0, case)
        _CACHE[key] = case.make_model().fit(x, c=c, method=method, seed=seed, progress=False,
                                            **case.fast_options[method])
    return _CACHE[key]


def test_the_sequence_families_are_registered_and_covered():
    assert SEQUENCE_FAMILIES <= set(pgm.base.registry())
    assert {c.make_model().registry_name for c in CASES.values()} == SEQUENCE_FAMILIES


@pytest.mark.parametrize("name", sorted(CASES))
def test_capabilities_are_honest(name):
    case = CASES[name]
    model = case.make_model()
    caps = model.capabilities
    assert caps["log_prob"] == "exact" and caps["log_prob"] in LOG_PROB_KINDS
    assert set(caps.methods) <= {"mle", "map", "vi", "nuts", "hmc"}
    assert set(case.fast_options) <= set(caps.methods)
    assert caps.conditional or not case.conditional
    fit = fitted(name, next(iter(case.fast_options)))
    assert fit.model.num_params() > 0


@pytest.mark.parametrize("name,method", PAIRS)
def test_shapes_and_finiteness(name, method):
    case = CASES[name]
    fit = fitted(name, method)
    assert isinstance(fit, SequenceFit) and fit.method == method
    x, c = make_data(0, case)
    lp = fit.log_prob(x, c=c)
    assert lp.shape == (len(x),) and torch.isfinite(lp).all() and (lp < 0).all()
    x1, c1 = make_data(1, case)
    assert fit.log_prob(x1, c=c1).shape == (len(x1),)
    s = fit.sample(17, seed=3, c=None if c is None else 1)
    assert isinstance(s, list) and len(s) == 17
    for seq in s:
        if case.tokens:
            assert seq.dtype == torch.long and ((seq >= 0) & (seq < 3)).all()
        else:
            assert isinstance(seq, str) and set(seq) <= set("abc")
    assert fit.log_prob_kind == "exact"
    assert fit.data.dtype == torch.long and fit.data.shape[0] == len(x)
    for k, v in fit.params.items():
        assert torch.isfinite(v).all(), k
    if method == "nuts":
        assert fit.losses == [] and fit.is_posterior
    elif "num_steps" in case.fast_options[method]:
        assert len(fit.losses) == case.fast_options[method]["num_steps"]
    else:  # closed form: one loss, the negative log joint at the estimate
        assert len(fit.losses) == 1
    assert all(math.isfinite(v) for v in fit.losses)


@pytest.mark.parametrize("name,method", PAIRS)
def test_same_seed_same_result(name, method):
    case = CASES[name]
    a = fitted(name, method)
    x, c = make_data(0, case)
    b = case.make_model().fit(x, c=c, method=method, seed=0, progress=False,
                              **case.fast_options[method])
    assert a.losses == b.losses
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    cs = None if c is None else 0
    assert _same(a.sample(5, seed=1, c=cs), b.sample(5, seed=1, c=cs))
    assert torch.equal(a.log_prob(x, c=c), b.log_prob(x, c=c))


def _same(u, v):
    return len(u) == len(v) and all(
        torch.equal(p, q) if isinstance(p, torch.Tensor) else p == q for p, q in zip(u, v))


@pytest.mark.parametrize("name,method", PAIRS)
def test_save_load_round_trip(name, method, tmp_path):
    case = CASES[name]
    fit = fitted(name, method)
    x, c = make_data(1, case)
    fit.save(tmp_path / "run")
    back = pgm.load(tmp_path / "run")
    assert isinstance(back, SequenceFit) and back.vocab == fit.vocab
    assert back.model.get_config() == fit.model.get_config()
    assert back.method == fit.method and back.losses == fit.losses
    assert torch.equal(back.log_prob(x, c=c), fit.log_prob(x, c=c))
    cs = None if c is None else 1
    assert _same(back.sample(11, seed=5, c=cs, prefix=x[0][:1]),
                 fit.sample(11, seed=5, c=cs, prefix=x[0][:1]))
    for k in fit.params:
        assert torch.equal(back.params[k], fit.params[k])


@pytest.mark.parametrize("name,method", PAIRS)
def test_to_arviz(name, method):
    check_inference_data(fitted(name, method), method)


@pytest.mark.parametrize("name", sorted(CASES))
def test_unknown_method_and_option_are_refused(name):
    case = CASES[name]
    model = case.make_model()
    x, c = make_data(0, case)
    with pytest.raises(ValueError) as err:
        model.fit(x, c=c, method="gibbs", progress=False)
    for m in model.capabilities.methods:
        assert m in str(err.value)
    for method in case.fast_options:
        with pytest.raises(ValueError, match="num_stepz"):
            model.fit(x, c=c, method=method, num_stepz=3, progress=False)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_data_is_refused_before_any_state_changes(name):
    case = CASES[name]
    model = case.make_model()
    x, c = make_data(0, case)
    pyro.param("user_param", torch.tensor(1.0))
    store_before = dict(pyro.get_param_store().items())
    torch_state = torch.get_rng_state()
    config_before = model.get_config()
    method = next(iter(case.fast_options))
    fit = lambda data, **kw: model.fit(data, c=c, method=method, progress=False, **kw)  # noqa
    with pytest.raises(ValueError, match="empty"):
        model.fit([], method=method, progress=False)
    if case.tokens:
        with pytest.raises(ValueError, match="token id 7"):
            fit(x[:3] + [[0, 7]] + x[4:])
        with pytest.raises(TypeError, match="not strings"):
            fit(["ab"] * len(x))
        with pytest.raises(TypeError, match="integer"):
            fit(torch.full((len(x), 3), 0.5))
    else:
        with seeded(0):  # a network with a known vocabulary draws its initial weights
            fixed = type(model)(**{**model.get_config(), "vocab": "abc"})
        with pytest.raises(ValueError, match="'z'"):
            fixed.fit(x[:3] + ["abz"] + x[4:], c=c, method=method, progress=False)
        with pytest.raises(TypeError, match="item 2 is int"):
            fit(x[:2] + [5] + x[3:])
        with pytest.raises(TypeError, match="list of strings"):
            fit("abc")
        with pytest.raises(TypeError, match="list of strings"):
            fit(np.zeros((len(x), 3)))
    if "num_steps" in case.fast_options.get(method, {}):
        with pytest.raises(ValueError, match="num_steps"):
            fit(x, num_steps=0)
        with pytest.raises(ValueError, match="lr"):
            fit(x, lr=-1.0)
    if case.conditional:
        with pytest.raises(ValueError, match="labels but there are"):
            model.fit(x, c=c[:-1], method=method, progress=False)
        with pytest.raises(ValueError, match="not a class label"):
            model.fit(x, c=c + 5, method=method, progress=False)
    assert dict(pyro.get_param_store().items()).keys() == store_before.keys()
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert model.get_config() == config_before


@pytest.mark.parametrize("name,method", PAIRS)
def test_log_prob_and_sample_refuse_bad_input(name, method):
    case = CASES[name]
    fit = fitted(name, method)
    x, c = make_data(1, case)
    if case.tokens:
        with pytest.raises(ValueError, match="token id 3"):
            fit.log_prob([[0, 3]], c=None if c is None else c[:1])
    else:
        with pytest.raises(ValueError, match="'d'"):
            fit.log_prob(["abd"], c=None if c is None else c[:1])
    with pytest.raises(ValueError, match="positive integer"):
        fit.sample(0)


@pytest.mark.parametrize("name,method", [p for p in PAIRS if p[1] in ("mle", "vi", "nuts")])
def test_fits_own_their_parameters(name, method):
    """Fitting B, and anything in Pyro's global param store, never changes A."""
    case = CASES[name]
    a = fitted(name, method)
    x, c = make_data(1, case)
    before = a.log_prob(x, c=c).clone()
    pyro.param("net$$$embed.tokens.weight", torch.full((5, 8), 100.0))
    pyro.param("loc", torch.full((3,), -100.0))
    x2, c2 = make_data(2, case)
    case.make_model().fit(x2[:10] * 3, c=None if c2 is None else c2[:10].repeat(3),
                          method=method, seed=1, progress=False, **case.fast_options[method])
    assert torch.equal(a.log_prob(x, c=c), before)
    assert torch.equal(pyro.param("loc"), torch.full((3,), -100.0))


@pytest.mark.parametrize("name,method", PAIRS)
def test_fit_does_not_disturb_the_callers_rng(name, method):
    case = CASES[name]
    x, c = make_data(0, case)

    def reset():
        torch.manual_seed(123)
        np.random.seed(123)
        random.seed(123)
    reset()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    reset()
    fit = case.make_model().fit(x, c=c, method=method, seed=7, progress=False,
                                **case.fast_options[method])
    fit.sample(5, seed=2, c=None if c is None else 0)
    fit.sample(5, c=None if c is None else 0)  # seed=None: still the caller's RNG untouched
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1]) and got[2] == expected[2]


@pytest.mark.parametrize("name", sorted(CASES))
def test_seed_none_is_recorded_and_reproducible(name):
    case = CASES[name]
    x, c = make_data(0, case)
    method = "map" if "map" in case.fast_options else "mle"
    opts = case.fast_options[method]
    a = case.make_model().fit(x, c=c, method=method, progress=False, **opts)
    assert isinstance(a.seed, int)
    b = case.make_model().fit(x, c=c, method=method, progress=False, seed=a.seed, **opts)
    assert a.losses == b.losses
    assert torch.equal(a.log_prob(x, c=c), b.log_prob(x, c=c))


def test_vocabulary_is_built_from_the_training_strings_and_kept():
    fit = NGram(2).fit(["hello", "world"], method="map")
    assert fit.vocab == "dehlorw" and fit.model.num_outcomes == 8
    model = AutoregressiveModel(**_NET)
    assert not model.known
    with seeded(0):
        fit = model.fit(["hello", "world"], method="mle", num_steps=2, progress=False)
    assert fit.vocab == "dehlorw" and model.vocab is None  # the model itself is unchanged
    with pytest.raises(ValueError, match="'z'"):
        fit.log_prob(["hez"])
