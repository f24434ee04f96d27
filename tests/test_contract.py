"""The contract every registered model meets, for every method it supports: one suite
over the cases of tests/cases.py (float rows, strings and token ids alike).

Every test reads only the case's fields (how to build the model and its data, how to
check and compare draws, which inputs to refuse); nothing here names a family.
"""

import dataclasses
import math
import random

import numpy as np
import pyro
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels.base import LOG_PROB_KINDS
from tests.cases import CASES, Data, case_method_pairs, check_inference_data, same_config

PAIRS = case_method_pairs()
METHODS = {"mle", "map", "vi", "nuts", "hmc", "chees", "adversarial", "dsm", "ssm"}
_CACHE = {}


def fit_case(name, method, data, seed, **extra):
    case = CASES[name]
    return case.make_model().fit(data.x, method=method, seed=seed, progress=False,
                                 **data.kw, **case.fast_options[method], **extra)


def fitted(name, method):
    """The case's fit of its data (seed 0) by ``method``, made once."""
    key = (name, method)
    if key not in _CACHE:
        _CACHE[key] = fit_case(name, method, CASES[name].make_data(0), seed=0)
    return _CACHE[key]


def _finite_state(model):
    """Every floating tensor of the model's state (network weights, buffers) is finite."""
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            assert torch.isfinite(v).all(), k


def test_every_registered_family_has_a_case_for_every_method():
    """A new family (or a new method of one) cannot be forgotten by the contract."""
    covered = {}
    for case in CASES.values():
        covered.setdefault(case.make_model().registry_name, set()).update(case.fast_options)
    registered = pgm.registry()
    assert set(covered) == set(registered), (f"no contract case for "
                                             f"{set(registered) - set(covered)}")
    for name, cls in registered.items():
        assert covered[name] == set(cls.capabilities.methods), name


@pytest.mark.parametrize("name", sorted(CASES))
def test_capabilities_are_honest(name):
    case = CASES[name]
    model = case.make_model()
    caps = model.capabilities
    assert caps["log_prob"] in LOG_PROB_KINDS
    assert set(caps.methods) <= METHODS
    assert set(case.fast_options) <= set(caps.methods)
    assert dict(caps)["methods"] == caps.methods
    assert caps.conditional or case.make_data(0).c is None
    fit = fitted(name, next(iter(case.fast_options)))
    assert fit.model.num_params() > 0


@pytest.mark.parametrize("name,method", PAIRS)
def test_shapes_and_finiteness(name, method):
    case = CASES[name]
    fit = fitted(name, method)
    assert isinstance(fit, type(case.make_model()).fit_class)
    assert fit.method == method
    assert fit.log_prob_kind == case.log_prob_kind
    if case.log_prob_kind == "none":  # no density: log_prob says so, and why
        with pytest.raises(NotImplementedError, match="no density"):
            fit.log_prob(case.make_data(0).x, **case.make_data(0).kw)
    for seed in (0, 1):  # the training data, and unseen data
        data = case.make_data(seed)
        lp = case.score(fit, data)
        assert lp.shape == (len(data),)
        if seed == 0 or case.finite_on_heldout:
            assert torch.isfinite(lp).all()
        else:  # -inf for an impossible sequence, never nan or +inf
            assert (torch.isfinite(lp) | (lp == -math.inf)).all()
        assert (lp < case.log_prob_below).all()
    case.check_sample(fit.sample(17, seed=3, c=case.sample_c), 17)
    held = fit.options.get("validation")  # a family may hold out rows by default
    held = int(round(held * len(case.make_data(0)))) if isinstance(held, float) else 0
    assert fit.data.dtype == case.data_dtype
    assert fit.data.shape[0] == len(case.make_data(0)) - held
    params = fit.params
    assert set(params) == case.params
    for k, v in params.items():
        assert torch.isfinite(v).all(), k
    _finite_state(fit.model)
    opts = case.fast_options[method]
    if method in ("nuts", "hmc", "chees"):
        assert fit.losses == [] and fit.is_posterior
    elif "num_steps" in opts:
        if case.stops_early:
            assert 1 <= len(fit.losses) <= opts["num_steps"]
        else:
            assert len(fit.losses) == opts["num_steps"]
    else:  # closed form: one loss, the negative log joint at the estimate
        assert len(fit.losses) == 1
    assert all(math.isfinite(v) for v in fit.losses)


@pytest.mark.parametrize("name,method", PAIRS)
def test_same_seed_same_result(name, method):
    case = CASES[name]
    a = fitted(name, method)
    data = case.make_data(0)
    b = fit_case(name, method, data, seed=0)
    assert a.losses == b.losses
    assert a.params.keys() == b.params.keys()
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert case.same_samples(a.sample(5, seed=1, c=case.sample_c),
                             b.sample(5, seed=1, c=case.sample_c))
    assert torch.equal(case.score(a, data), case.score(b, data))


@pytest.mark.parametrize("name,method", PAIRS)
def test_save_load_round_trip(name, method, tmp_path):
    case = CASES[name]
    fit = fitted(name, method)
    data = case.make_data(1)
    fit.save(tmp_path / "run")
    back = pgm.load(tmp_path / "run")
    assert type(back) is type(fit)
    assert same_config(back.model.get_config(), fit.model.get_config())
    assert back.method == fit.method and back.losses == fit.losses
    assert back.log_prob_kind == fit.log_prob_kind
    assert torch.equal(case.score(back, data), case.score(fit, data))
    sa, sb = back.model.state_dict(), fit.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert case.same_samples(
        back.sample(11, seed=5, c=case.sample_c, **case.sample_options),
        fit.sample(11, seed=5, c=case.sample_c, **case.sample_options))
    assert back.params.keys() == fit.params.keys()
    for k in fit.params:
        assert torch.equal(back.params[k], fit.params[k]), k


@pytest.mark.parametrize("name,method", PAIRS)
def test_to_arviz(name, method):
    check_inference_data(fitted(name, method), method)


@pytest.mark.parametrize("name", sorted(CASES))
def test_unknown_method_lists_the_methods(name):
    case = CASES[name]
    model = case.make_model()
    data = case.make_data(0)
    with pytest.raises(ValueError) as err:
        model.fit(data.x, method="gibbs", progress=False, **data.kw)
    for m in model.capabilities.methods:
        assert m in str(err.value)


@pytest.mark.parametrize("name,method", PAIRS)
def test_unknown_option_is_refused(name, method):
    case = CASES[name]
    data = case.make_data(0)
    with pytest.raises(ValueError, match="num_stepz"):
        case.make_model().fit(data.x, method=method, num_stepz=3, progress=False, **data.kw)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_data_is_refused_before_any_state_changes(name):
    case = CASES[name]
    model = case.make_model()
    data = case.make_data(0)
    pyro.param("user_param", torch.tensor(1.0))
    store_before = set(pyro.get_param_store().keys())
    torch_state = torch.get_rng_state()
    config_before = model.get_config()
    first = next(iter(case.fast_options))

    def refused(error, match, model, x, **kw):
        with pytest.raises(error, match=match):
            model.fit(x, progress=False, **kw)

    for bad in case.refusals(data):
        target = model if bad.model is None else bad.model(model)
        refused(bad.error, bad.match, target, bad.data.x, method=first, **bad.data.kw)
    # conditioning: a conditional case needs c, an unconditional model takes none
    if data.c is None:
        refused(ValueError, "unconditional", model, data.x, method=first,
                **{**data.kw, "c": torch.zeros(len(data))})
    else:
        refused(ValueError, "conditional", model, data.x, method=first,
                **{**data.kw, "c": None})
    # option values out of range, for every method that has the option
    for method in case.fast_options:
        names = type(model).engine(method).option_names()
        for option, value in (("num_steps", 0), ("lr", -1.0)):
            if option in names:
                refused(ValueError, option, model, data.x, method=method, **data.kw,
                        **{option: value})
    assert set(pyro.get_param_store().keys()) == store_before
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert same_config(model.get_config(), config_before)


@pytest.mark.parametrize("name,method", PAIRS)
def test_log_prob_and_sample_refuse_bad_input(name, method):
    case = CASES[name]
    fit = fitted(name, method)
    bad_inputs = case.bad_inputs(case.make_data(1))
    assert bad_inputs  # every case names inputs its fits refuse
    for bad in bad_inputs:
        with pytest.raises(bad.error, match=bad.match):
            case.score(fit, bad.data)
    with pytest.raises(ValueError, match="positive integer"):
        fit.sample(0, c=case.sample_c)
    if case.sample_c is not None:
        with pytest.raises(ValueError, match="conditional"):
            fit.sample(2)


@pytest.mark.parametrize("name,method", [p for p in PAIRS if p[1] in ("mle", "vi", "nuts")])
def test_fits_own_their_parameters(name, method):
    """Fitting B, and anything in Pyro's global param store, never changes A."""
    case = CASES[name]
    a = fitted(name, method)
    data = case.make_data(1)
    before = case.score(a, data).clone()
    # names the engines' own parameters could collide with
    pyro.param("AutoDelta.loc", torch.full((3,), 100.0))
    pyro.param("net$$$embed.tokens.weight", torch.full((5, 8), 100.0))
    pyro.param("loc", torch.full((3,), -100.0))
    b = fit_case(name, method, case.make_data(2), seed=1)
    assert not torch.equal(case.score(b, data), before)  # B is another fit
    assert torch.equal(case.score(a, data), before)
    # the user's global params survive a fit untouched
    assert torch.equal(pyro.param("loc"), torch.full((3,), -100.0))


def _array_inputs():
    """(family, as_numpy) for every case whose data is a tensor (text cases read Python
    strings, which nothing can alias); numpy too where the tensor is floating (token ids
    must come as a tensor)."""
    out = []
    for name in sorted(CASES):
        x = CASES[name].make_data(0).x
        if isinstance(x, torch.Tensor):
            out.append((name, False))
            if x.is_floating_point():
                out.append((name, True))
    return out


FIRST_METHOD = {name: next(m for n, m in PAIRS if n == name) for name in sorted(CASES)}


@pytest.mark.parametrize("name,as_numpy", _array_inputs())
def test_changing_the_callers_data_afterwards_changes_nothing(name, as_numpy):
    """The fit keeps a copy of its training rows, not a view of the caller's array
    (``torch.from_numpy`` and ``detach`` share memory): zeroing the array afterwards
    leaves ``fit.data`` and the fit's scores as they were."""
    case = CASES[name]
    data = case.make_data(0)
    user = data.x.clone()
    if as_numpy:
        user = user.numpy()
    fit = fit_case(name, FIRST_METHOD[name], dataclasses.replace(data, x=user), seed=0)
    kept, score = fit.data.clone(), case.score(fit, data)
    user[:] = 0
    assert torch.equal(fit.data, kept)
    assert torch.equal(case.score(fit, data), score)


@pytest.mark.parametrize("name,method", PAIRS)
def test_changing_fit_params_in_place_changes_nothing(name, method):
    """``fit.params`` hands out copies: adding to one in place leaves the fit's scores
    and its next ``params`` as they were."""
    case = CASES[name]
    fit, data = fitted(name, method), case.make_data(1)
    params, score = fit.params, case.score(fit, data)
    before = {k: v.clone() for k, v in params.items()}
    for v in params.values():
        v.add_(1)
    assert torch.equal(case.score(fit, data), score)
    assert all(torch.equal(fit.params[k], before[k]) for k in before)


@pytest.mark.parametrize("name,method", PAIRS)
def test_fit_does_not_disturb_the_callers_rng(name, method):
    case = CASES[name]
    data = case.make_data(0)

    def reset():
        torch.manual_seed(123)
        np.random.seed(123)
        random.seed(123)

    reset()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    reset()
    fit = fit_case(name, method, data, seed=7)
    fit.sample(5, seed=2, c=case.sample_c)
    fit.sample(5, c=case.sample_c)  # seed=None: still the caller's RNG untouched
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1])
    assert got[2] == expected[2]


@pytest.mark.parametrize("name", sorted(CASES))
def test_seed_none_is_recorded_and_reproducible(name):
    case = CASES[name]
    data = case.make_data(0)
    method = "map" if "map" in case.fast_options else next(iter(case.fast_options))
    a = fit_case(name, method, data, seed=None)
    assert isinstance(a.seed, int)
    b = fit_case(name, method, data, seed=a.seed)
    assert a.losses == b.losses
    assert torch.equal(case.score(a, data), case.score(b, data))


ONE_ROW_CONTEXT = [p for p in PAIRS if isinstance(CASES[p[0]].sample_c, torch.Tensor)
                   and CASES[p[0]].sample_c.is_floating_point()]


@pytest.mark.parametrize("name,method", ONE_ROW_CONTEXT)
def test_one_condition_may_be_given_as_a_vector(name, method):
    """``c`` of shape ``(context_dim,)`` is one row for every row, as ``(1, context_dim)``:
    the same draws under the same seed, the same log p; a vector of another length is
    refused with both shapes it could have had."""
    case = CASES[name]
    fit = fitted(name, method)
    row = case.sample_c
    assert torch.equal(fit.sample(6, seed=3, c=row[0]), fit.sample(6, seed=3, c=row))
    if case.log_prob_kind in ("exact", "bound"):
        x = case.make_data(1).x[:5]
        np.testing.assert_array_equal(fit.log_prob(x, c=row[0]).numpy(),
                                      fit.log_prob(x, c=row.expand(5, -1)).numpy())
    k = row.shape[1]
    with pytest.raises(ValueError, match=rf"\(N, {k}\), or \({k},\) for one row, got shape "
                                         rf"\({k + 1},\)"):
        fit.sample(2, c=torch.zeros(k + 1))


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_program_takes_a_minibatch_with_num_data(name):
    """``model.model(x_batch, num_data=N)``, Pyro's convention for a minibatch of a data
    set of N rows, is the program on all N rows with those rows as ``subsample``: the same
    log-likelihood, scaled by N / B. (Only the VAE took it; the others failed inside Pyro,
    and with ``subsample_size`` inside torch.)"""
    case = CASES[name]
    d = case.make_data(0)
    options = {k: v for k, v in d.options.items() if k in ("lengths", "mask")}
    model, x, c = case.make_model().prepare_data(d.x, d.c, device=torch.device("cpu"),
                                                 **options)
    n, b = x.shape[0], 4
    rows = torch.arange(b)

    def trace(*args, **kwargs):
        with pyro.get_param_store().scope(), pgm._rng.seeded(0):
            tr = pyro.poutine.trace(model.model).get_trace(*args, **kwargs)
        tr.compute_log_prob()
        return tr

    batch = trace(x[:b], c=None if c is None else c[:b], num_data=n)
    whole = trace(x, c=c, num_data=n, subsample=rows)
    for tr in (batch, whole):
        assert tr.nodes["x"]["scale"] == pytest.approx(n / b)
        assert tr.nodes["data"]["value"].tolist() == rows.tolist()  # the plate's indices
    assert torch.equal(batch.nodes["x"]["value"], whole.nodes["x"]["value"])
    assert torch.equal(batch.nodes["x"]["log_prob"], whole.nodes["x"]["log_prob"])
    with pytest.raises(ValueError, match=rf"subsample_size=2 draws rows from all "
                                         rf"num_data={n} rows, but {b} were given"):
        model.model(x[:b], c=None if c is None else c[:b], num_data=n, subsample_size=2)
    with pytest.raises(ValueError, match=rf"num_data=2 is smaller than the {n} rows"):
        model.model(x, c=c, num_data=2)


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items()
                                        if isinstance(c.sample_c, torch.Tensor)))
def test_a_context_in_other_units_gives_the_same_fit(name):
    """The networks read a continuous context standardized by the training rows' moments,
    as they read x: c' = a c + b (a = (1e3, 1e-2), b = (1e4, -5) per column) gives the
    fit of c, in float64 to rounding (its score on held-out rows, and its draws). They
    read c raw: a hunt measured raw wine contexts costing a ScoreModel 16 nats per
    held-out row, a Flow 2, and a Diffusion's bound 1e5 nats at 1e3 c + 1e4."""
    case = CASES[name]
    a = torch.tensor([1e3, 1e-2], dtype=torch.float64)
    b = torch.tensor([1e4, -5.0], dtype=torch.float64)
    train, held = case.make_data(0), case.make_data(1)
    method = sorted(case.fast_options)[0]
    scores, draws = [], []
    for f in (lambda c: c, lambda c: a * c + b):
        fit = case.make_model().fit(train.x.double(), c=f(train.c.double()), method=method,
                                    seed=0, progress=False, **case.fast_options[method])
        with pgm._rng.seeded(1):
            scores.append(case.score(fit, Data(held.x.double(), f(held.c.double()))))
        draws.append(fit.sample(50, c=f(case.sample_c.double()), seed=2))
    assert torch.allclose(scores[0], scores[1], rtol=1e-6, atol=1e-6)
    assert torch.allclose(draws[0], draws[1], rtol=1e-6, atol=1e-6)


def test_a_save_from_before_the_context_was_standardized_loads_as_it_was():
    """A conditional model saved without ``c_shift`` / ``c_scale`` (before stop 52) read c
    raw: its state loads with the identity standardization (it failed with "Missing
    key(s)"), and a streamed fit takes c's moments from every row in the pass that reads
    x's (a 2,048-row sample's were 1003.3 / 97.8 here, against 1000.9 / 99.85)."""
    model = CASES["flow-conditional"].make_model()
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("c_")}
    model.c_shift.fill_(3.0)
    model.load_state_dict(old)
    assert torch.equal(model.c_shift, torch.zeros(2)) and torch.equal(model.c_scale,
                                                                       torch.ones(2))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    c = 1000 + 100 * torch.randn(20000, 2, generator=g, dtype=torch.float64)
    fit = model.double().fit(torch.utils.data.TensorDataset(x, c), method="mle", seed=0,
                             progress=False, num_steps=2, batch_size=64)
    assert torch.allclose(fit.model.c_shift, c.mean(0), rtol=1e-12)
    assert torch.allclose(fit.model.c_scale, c.std(0), rtol=1e-9)


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c.sample_c is not None))
def test_the_program_takes_one_context_row_for_all_rows(name):
    """One context row stands for every row of the data plate, as in ``fit.sample(n,
    c=...)``: the prior predictive ``model(None, c=<one row>, num_data=5)`` draws 5 rows
    under that context, and observed rows score as under the row repeated. A context of
    other rows than 1 or the plate's is a ValueError that says so. (The GAN, diffusion,
    score, VAE and sequence programs failed inside torch or drew one row.)"""
    case = CASES[name]
    d = case.make_data(0)
    options = {k: v for k, v in d.options.items() if k in ("lengths", "mask")}
    model, x, c = case.make_model().prepare_data(d.x, d.c, device=torch.device("cpu"),
                                                 **options)

    def trace(*args, **kwargs):
        with pyro.get_param_store().scope(), pgm._rng.seeded(0):
            tr = pyro.poutine.trace(model.model).get_trace(*args, **kwargs)
        tr.compute_log_prob()
        return tr

    drawn = trace(None, c=c[:1], num_data=5)
    assert drawn.nodes["x"]["value"].shape[0] == 5
    repeated_draws = trace(None, c=c[:1].expand(5, *c.shape[1:]), num_data=5)
    assert case.same_samples(drawn.nodes["x"]["value"], repeated_draws.nodes["x"]["value"])
    b = 3
    one, repeated = trace(x[:b], c=c[:1]), trace(x[:b], c=c[:1].expand(b, *c.shape[1:]))
    assert torch.equal(one.nodes["x"]["log_prob"], repeated.nodes["x"]["log_prob"])
    with pytest.raises(ValueError, match=r"c has 2 rows, expected one, or one per row of "
                                         r"the data plate \(5 rows\)"):
        model.model(None, c=c[:2], num_data=5)
