"""The contract every registered model meets, for every method it supports."""

import math
import random

import numpy as np
import pyro
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels.base import LOG_PROB_KINDS
from tests.cases import CASES, SEQUENCE_FAMILIES, check_inference_data, model_method_pairs

PAIRS = model_method_pairs()
_CACHE = {}


def fitted(name, method, seed=0):
    key = (name, method, seed)
    if key not in _CACHE:
        case = CASES[name]
        x = case.make_data(0)
        _CACHE[key] = case.make_model().fit(x, method=method, seed=seed, progress=False,
                                            **case.fast_options[method])
    return _CACHE[key]


def test_every_registered_model_has_a_case():
    registered = set(pgm.registry())
    covered = {type(c.make_model()).registry_name for c in CASES.values()}
    missing = registered - SEQUENCE_FAMILIES - covered
    assert not missing, f"no contract case for {missing}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_capabilities_are_honest(name):
    model = CASES[name].make_model()
    caps = model.capabilities
    assert caps["log_prob"] in LOG_PROB_KINDS
    assert set(caps.methods) <= {"mle", "map", "vi", "nuts", "hmc"}
    assert dict(caps)["methods"] == caps.methods
    assert model.num_params() > 0


@pytest.mark.parametrize("name,method", PAIRS)
def test_shapes_and_finiteness(name, method):
    fit = fitted(name, method)
    case = CASES[name]
    x = case.make_data(1)
    lp = fit.log_prob(x)
    assert lp.shape == (x.shape[0],)
    assert torch.isfinite(lp).all()
    s = fit.sample(17, seed=3)
    assert s.shape == (17, x.shape[1])
    assert torch.isfinite(s).all()
    assert fit.method == method
    assert fit.log_prob_kind == (case.log_prob_kind or fit.model.capabilities.log_prob)
    params = fit.params
    assert "covariance_matrix" in params or name not in ("gaussian", "gaussian-known-cov")
    for k, v in params.items():
        assert torch.isfinite(v).all(), k
    if method in ("nuts", "hmc"):
        assert fit.losses == []
        assert fit.is_posterior
    else:
        budget = case.fast_options[method]["num_steps"]
        if case.stops_early:
            assert 1 <= len(fit.losses) <= budget
        else:
            assert len(fit.losses) == budget
        assert all(math.isfinite(v) for v in fit.losses)


@pytest.mark.parametrize("name,method", PAIRS)
def test_same_seed_same_result(name, method):
    a = fitted(name, method)
    case = CASES[name]
    b = case.make_model().fit(case.make_data(0), method=method, seed=0, progress=False,
                              **case.fast_options[method])
    assert a.losses == b.losses
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k
    assert torch.equal(a.sample(5, seed=1), b.sample(5, seed=1))


@pytest.mark.parametrize("name,method", PAIRS)
def test_save_load_round_trip(name, method, tmp_path):
    fit = fitted(name, method)
    x = CASES[name].make_data(1)
    fit.save(tmp_path / "run")
    back = pgm.load(tmp_path / "run")
    assert back.method == fit.method and back.losses == fit.losses
    assert back.log_prob_kind == fit.log_prob_kind
    assert torch.equal(back.log_prob(x), fit.log_prob(x))
    assert torch.equal(back.sample(11, seed=5), fit.sample(11, seed=5))
    for k in fit.params:
        assert torch.equal(back.params[k], fit.params[k])


@pytest.mark.parametrize("name,method", PAIRS)
def test_to_arviz(name, method):
    check_inference_data(fitted(name, method), method)


@pytest.mark.parametrize("name", sorted(CASES))
def test_unknown_method_lists_the_methods(name):
    model = CASES[name].make_model()
    with pytest.raises(ValueError) as err:
        model.fit(CASES[name].make_data(0), method="gibbs", progress=False)
    for m in model.capabilities.methods:
        assert m in str(err.value)


@pytest.mark.parametrize("name,method", PAIRS)
def test_unknown_option_is_refused(name, method):
    model = CASES[name].make_model()
    with pytest.raises(ValueError, match="num_stepz"):
        model.fit(CASES[name].make_data(0), method=method, num_stepz=3, progress=False)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_data_is_refused_before_any_state_changes(name):
    case = CASES[name]
    model = case.make_model()
    x = case.make_data(0).clone()
    pyro.param("user_param", torch.tensor(1.0))
    store_before = dict(pyro.get_param_store().items())
    torch_state = torch.get_rng_state()
    bad = x.clone()
    bad[4, 1] = float("nan")
    with pytest.raises(ValueError, match=r"row 4, column 1"):
        model.fit(bad, method="mle", progress=False)
    bad[4, 1] = float("inf")
    with pytest.raises(ValueError, match=r"row 4, column 1"):
        model.fit(bad, method="mle", progress=False)
    with pytest.raises(ValueError, match="empty"):
        model.fit(x[:0], method="mle", progress=False)
    with pytest.raises(ValueError, match=rf"expected {x.shape[1]}, got {x.shape[1] - 1}"):
        model.fit(x[:, :-1], method="mle", progress=False)
    with pytest.raises(TypeError, match="numeric"):
        model.fit(np.array([["a"] * x.shape[1]] * 3), method="mle", progress=False)
    with pytest.raises(TypeError):
        model.fit("data.csv", method="mle", progress=False)
    with pytest.raises(ValueError, match="num_steps"):
        model.fit(x, method="mle", num_steps=0, progress=False)
    with pytest.raises(ValueError, match="lr"):
        model.fit(x, method="map", lr=-1.0, progress=False)
    assert dict(pyro.get_param_store().items()).keys() == store_before.keys()
    assert torch.equal(torch.get_rng_state(), torch_state)


@pytest.mark.parametrize("name,method", PAIRS)
def test_log_prob_and_sample_refuse_bad_input(name, method):
    fit = fitted(name, method)
    x = CASES[name].make_data(1)
    with pytest.raises(ValueError, match="columns"):
        fit.log_prob(x[:, :-1])
    with pytest.raises(ValueError, match="finite"):
        fit.log_prob(torch.full_like(x, float("nan")))
    with pytest.raises(ValueError, match="positive integer"):
        fit.sample(0)


@pytest.mark.parametrize("name,method", [p for p in PAIRS if p[1] in ("mle", "vi", "nuts")])
def test_fits_own_their_parameters(name, method):
    """Fitting B, and anything in Pyro's global param store, never changes A."""
    case = CASES[name]
    a = fitted(name, method)
    x = case.make_data(1)
    before = a.log_prob(x).clone()
    pyro.param("AutoDelta.loc", torch.full((3,), 100.0))
    pyro.param("loc", torch.full((3,), -100.0))
    case.make_model().fit(case.make_data(2) * 3 + 7, method=method, seed=1, progress=False,
                          **case.fast_options[method])
    assert torch.equal(a.log_prob(x), before)
    # the user's global params survive a fit untouched
    assert torch.equal(pyro.param("loc"), torch.full((3,), -100.0))


@pytest.mark.parametrize("name,method", PAIRS)
def test_fit_does_not_disturb_the_callers_rng(name, method):
    case = CASES[name]
    x = case.make_data(0)
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    fit = case.make_model().fit(x, method=method, seed=7, progress=False,
                                **case.fast_options[method])
    fit.sample(5, seed=2)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1])
    assert got[2] == expected[2]


@pytest.mark.parametrize("name", sorted(CASES))
def test_seed_none_is_recorded_and_reproducible(name):
    case = CASES[name]
    x = case.make_data(0)
    a = case.make_model().fit(x, method="map", progress=False, num_steps=20)
    assert isinstance(a.seed, int)
    b = case.make_model().fit(x, method="map", progress=False, num_steps=20, seed=a.seed)
    assert a.losses == b.losses
