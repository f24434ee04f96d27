"""Property-based fuzzing of the public entry points (issue #18).

For every registered family (``pgm.registry()``: a new family joins through its case in
tests/cases.py) and for ``pgm.compare`` and ``pgm.divergences``, Hypothesis draws inputs
of random shapes, dtypes and containers, NaN / inf at random cells, empty and single-row
data, huge and tiny magnitudes, wrong widths, unknown tokens, and option values out of
range or of the wrong type (tests/fuzz_recipes.py). Every call must either return a valid
result (right shape, finite where finite is promised) or raise ``ValueError`` /
``TypeError`` from the library's own checks, with a message that names the argument;
never a bare error from inside torch / Pyro / NumPy, never a hang, and never a change to
the model or the fit it was given (tests/fuzz_support.py judges every call).

Fits are the expensive part: each family is fitted once per module with tiny budgets
(the ``fits`` fixture) and ``log_prob`` / ``sample`` are fuzzed against those fits;
``fit`` itself is fuzzed with budgets of 2-5 steps and few examples. The default run is
deterministic (``derandomize=True``, no example database) and small; the ``slow``-marked
variants run every case and method with many more examples.

The regression tests at the end pin each distinct failure that fuzzing found, with the
concrete input.
"""

from __future__ import annotations

import math
import resource

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import pyro_genmodels as pgm
from pyro_genmodels import divergences as dv
from tests.cases import CASES
from tests.fuzz_calls import (compare_recipe, data_recipe, divergence_recipe, f_named,
                              log_prob_recipe, run_compare, run_constructor, run_divergence,
                              run_fit_data, run_fit_options, run_log_prob, run_sample,
                              sample_recipe, side_named, truth_named)
from tests.fuzz_recipes import apply_numeric, constructor_recipe, option_recipe
from tests.fuzz_support import FAMILY_CASE, FAMILY_CASES, make_fit, tiny_options

settings.register_profile(
    "fuzz", derandomize=True, database=None, deadline=None, max_examples=5,
    print_blob=False, report_multiple_bugs=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much])
# the slow run looks for more failures, and does not shrink them (a recipe changes at
# most a few things already; shrinking a hang would rerun it for minutes)
settings.register_profile("fuzz-slow", settings.get_profile("fuzz"), max_examples=150,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target])
FUZZ = settings.get_profile("fuzz")
SLOW = settings.get_profile("fuzz-slow")

FAMILIES = sorted(pgm.registry())
ALL_CASES = sorted(CASES)
ALL_PAIRS = [(name, method) for name in ALL_CASES for method in CASES[name].fast_options]
#: no fuzzed call may take longer (a hang is a failure, not a stuck CI job)
TIMEOUT = 300


@pytest.fixture(scope="module", autouse=True)
def _bounded_memory():
    """A runaway allocation (a huge option value) fails the test instead of the machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = 16 << 30 if hard == resource.RLIM_INFINITY else min(16 << 30, hard)
    if soft == resource.RLIM_INFINITY or soft > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture(scope="module")
def fits():
    """``get(case, method)``: the case's fit with tiny budgets, made once per module."""
    cache = {}

    def get(case_name, method):
        if (case_name, method) not in cache:
            cache[case_name, method] = make_fit(case_name, method)
        return cache[case_name, method]
    return get


def _case(family):
    assert FAMILY_CASES.get(family), f"family {family!r} has no case in tests/cases.py"
    return FAMILY_CASE[family]


def _first_method(case_name):
    return next(iter(CASES[case_name].fast_options))


def test_every_registered_family_is_fuzzed():
    """A new family is fuzzed as soon as it is registered and has a contract case."""
    for family in pgm.registry():
        assert FAMILY_CASES.get(family), f"no case for {family!r}: add one to tests/cases.py"
        assert FAMILY_CASE[family] in CASES


# ---------------------------------------------------------------------- the constructor
@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("family", FAMILIES)
@settings(FUZZ, max_examples=4)
@given(data=st.data())
def test_constructor(family, data):
    name = _case(family)
    recipe = data.draw(constructor_recipe(CASES[name].make_model().get_config()), "recipe")
    run_constructor(name, recipe)


@pytest.mark.slow
@pytest.mark.timeout(3 * TIMEOUT)
@pytest.mark.parametrize("name", ALL_CASES)
@settings(SLOW, max_examples=15)
@given(data=st.data())
def test_constructor_slow(name, data):
    recipe = data.draw(constructor_recipe(CASES[name].make_model().get_config()), "recipe")
    run_constructor(name, recipe)


# ---------------------------------------------------------------------- fit: data
@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("family", FAMILIES)
@settings(FUZZ, max_examples=6)
@given(data=st.data())
def test_fit_data(family, data):
    name = _case(family)
    run_fit_data(name, _first_method(name), data.draw(data_recipe(name), "recipe"))


@pytest.mark.slow
@pytest.mark.timeout(3 * TIMEOUT)
@pytest.mark.parametrize("name,method", ALL_PAIRS)
@settings(SLOW, max_examples=10)
@given(data=st.data())
def test_fit_data_slow(name, method, data):
    run_fit_data(name, method, data.draw(data_recipe(name, max_changes=3), "recipe"))


# ---------------------------------------------------------------------- fit: options
def _option_names(name, method):
    return type(CASES[name].make_model()).engine(method).option_names()


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("family", FAMILIES)
@settings(FUZZ, max_examples=6)
@given(data=st.data())
def test_fit_options(family, data):
    name = _case(family)
    method = data.draw(st.sampled_from(list(CASES[name].fast_options)), "method")
    run_fit_options(name, method, data.draw(option_recipe(_option_names(name, method)),
                                            "recipe"))


@pytest.mark.slow
@pytest.mark.timeout(3 * TIMEOUT)
@pytest.mark.parametrize("name,method", ALL_PAIRS)
@settings(SLOW, max_examples=15)
@given(data=st.data())
def test_fit_options_slow(name, method, data):
    run_fit_options(name, method, data.draw(option_recipe(_option_names(name, method)),
                                            "recipe"))


# ---------------------------------------------------------------------- log_prob
@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("family", FAMILIES)
@settings(FUZZ, max_examples=10)
@given(data=st.data())
def test_log_prob(family, fits, data):
    name = _case(family)
    fit = fits(name, _first_method(name))
    run_log_prob(name, fit, data.draw(log_prob_recipe(name, fit), "recipe"))


@pytest.mark.slow
@pytest.mark.timeout(3 * TIMEOUT)
@pytest.mark.parametrize("name,method", ALL_PAIRS)
@settings(SLOW, max_examples=40)
@given(data=st.data())
def test_log_prob_slow(name, method, fits, data):
    fit = fits(name, method)
    run_log_prob(name, fit, data.draw(log_prob_recipe(name, fit), "recipe"))


# ---------------------------------------------------------------------- sample
@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("family", FAMILIES)
@settings(FUZZ, max_examples=8)
@given(data=st.data())
def test_sample(family, fits, data):
    name = _case(family)
    fit = fits(name, _first_method(name))
    run_sample(name, fit, data.draw(sample_recipe(name, fit), "recipe"))


@pytest.mark.slow
@pytest.mark.timeout(3 * TIMEOUT)
@pytest.mark.parametrize("name,method", ALL_PAIRS)
@settings(SLOW, max_examples=20)
@given(data=st.data())
def test_sample_slow(name, method, fits, data):
    fit = fits(name, method)
    run_sample(name, fit, data.draw(sample_recipe(name, fit), "recipe"))


# ---------------------------------------------------------------------- compare
@pytest.mark.timeout(TIMEOUT)
@settings(FUZZ, max_examples=15)
@given(recipe=compare_recipe())
def test_compare(fits, recipe):
    run_compare(fits, recipe)


@pytest.mark.slow
@pytest.mark.timeout(3 * TIMEOUT)
@settings(SLOW, max_examples=80)
@given(recipe=compare_recipe(max_changes=4))
def test_compare_slow(fits, recipe):
    run_compare(fits, recipe)


# ---------------------------------------------------------------------- divergences
@pytest.mark.timeout(TIMEOUT)
@settings(FUZZ, max_examples=30)
@given(recipe=divergence_recipe())
def test_divergences(fits, recipe):
    run_divergence(fits, recipe)


@pytest.mark.slow
@pytest.mark.timeout(3 * TIMEOUT)
@settings(SLOW, max_examples=150)
@given(recipe=divergence_recipe(max_changes=4))
def test_divergences_slow(fits, recipe):
    run_divergence(fits, recipe)


# ---------------------------------------------------------------------- regressions
# Each distinct failure that fuzzing found, with its concrete input (numbered F1, F2, ...
# in the order found; the report of issue #18 counts them).
#
# Fixed in this change (pyro_genmodels/_validation.py, divergences.py, compare.py):


def test_f01_a_numeric_string_is_no_float_option():
    """``lr="0.01"`` passed ``positive_float`` (``float("0.01")`` works) and reached
    torch's Adam as a string: ``TypeError: '<=' not supported between instances of
    'float' and 'str'`` from inside torch/optim/adam.py (``lr_decay="0.5"``: from inside
    the loop's scheduler)."""
    run_fit_options("ppca", "mle", {"option": "lr", "value": "0.01"})
    run_fit_options("diffusion", "mle", {"option": "lr", "value": "0.01"})
    run_fit_options("vae", "mle", {"option": "lr_decay", "value": "0.5"})
    x = CASES["gaussian"].make_data(0).x
    with pytest.raises(TypeError, match=r"Expected lr to be a positive number, but got "
                                        r"'0\.01' \(str\)"):
        pgm.PPCA(3, 1).fit(x, method="mle", lr="0.01", num_steps=2, progress=False)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", ["gaussian", "ppca", "gaussian_mixture", "flow", "vae",
                                  "diffusion", "gan"])
def test_f02_half_precision_data_are_fitted_in_the_default_dtype(name, dtype):
    """float16 / bfloat16 rows kept their dtype, and every family then failed inside
    torch: ``"cholesky_cpu" not implemented for 'Half'``, ``Got unsupported ScalarType
    BFloat16``, a Pyro support ValueError, or a NaN loss at step 0."""
    run_fit_data(name, _first_method(name), {"dtype": dtype})
    x = CASES[name].make_data(0).x.to(getattr(torch, dtype))
    fit = CASES[name].make_model().fit(x, method=_first_method(name), seed=0, progress=False,
                                       **tiny_options(name, _first_method(name)))
    assert fit.model._anchor.dtype == torch.get_default_dtype()


@pytest.mark.parametrize("recipe", [{"p": "mvn2"}, {"p": "mvn3", "q": "mvn2"},
                                    {"p": "normal", "q": "mvn3", "f": "tv"}])
def test_f03_divergence_of_two_event_shapes_is_refused(fits, recipe):
    """p with draws of shape (2,) and q of (3,): a ValueError from inside
    torch/distributions (validate_sample) or a RuntimeError from broadcasting."""
    run_divergence(fits, recipe)
    with pytest.raises(ValueError, match=r"p and q must have the same event shape"):
        dv.kl(truth_named("mvn2"), fits("gaussian", "mle"), num_samples=8, seed=0)


def test_f04_a_batch_of_distributions_is_refused(fits):
    """``Normal(zeros(3), 1)`` (batch (3,)) against a 3-D fit: a RuntimeError from
    broadcasting (or, for 3 draws, a silently wrong average over the batch)."""
    run_divergence(fits, {"p": "normal_batch3"})
    run_divergence(fits, {"p": "normal_batch3", "num_samples": 3})
    with pytest.raises(ValueError, match=r"Independent\(p, 1\)"):
        dv.kl(torch.distributions.Normal(torch.zeros(3), 1.0), fits("gaussian", "mle"),
              num_samples=3, seed=0)


def test_f05_a_fit_without_density_is_refused_even_when_inexact_is_allowed(fits):
    """A GAN fit with ``allow_inexact=True``: NotImplementedError from its log_prob."""
    run_divergence(fits, {"q": "fit:gan", "allow_inexact": True})
    run_divergence(fits, {"which": "cross_entropy", "q": "fit:gan", "allow_inexact": True})
    with pytest.raises(ValueError, match="q has no density"):
        dv.kl(truth_named("mvn3"), fits("gan", "adversarial"), allow_inexact=True)


def test_f06_sequences_against_numeric_rows_are_refused(fits):
    """An n-gram fit against a Gaussian: the Gaussian's check refused the strings as
    ``x`` (an argument of log_prob, not of kl)."""
    run_divergence(fits, {"p": "fit:ngram"})
    run_divergence(fits, {"q": "fit:ngram"})
    with pytest.raises(ValueError, match="p and q must describe the same kind of data"):
        dv.kl(fits("ngram", "map"), fits("gaussian", "mle"), num_samples=4, seed=0)


def test_f07_a_conditional_fit_is_refused_by_name(fits):
    """A conditional flow: ``Flow is conditional: pass c of shape (N, 2)``, about a
    ``c`` that ``kl`` does not take."""
    run_divergence(fits, {"q": "fit:flow_c"})
    with pytest.raises(ValueError, match="q is a fit of a conditional model"):
        dv.kl(truth_named("mvn3"), fits("flow-conditional", "mle"), num_samples=4, seed=0)


@pytest.mark.parametrize("f", ["callable_shape", "callable_str", "callable_list"])
def test_f08_a_callable_f_of_the_wrong_shape_or_type_is_refused(fits, f):
    """``f=lambda t: t.sum()`` silently gave a wrong estimate; ``lambda t: [1.0, 2.0]``
    a RuntimeError from broadcasting; ``lambda t: "x"`` ``TypeError: new(): invalid data
    type 'str'`` from torch."""
    run_divergence(fits, {"f": f})
    with pytest.raises((TypeError, ValueError), match=r"f\(t\) must return"):
        dv.f_divergence(truth_named("mvn3"), fits("gaussian", "mle"), f=f_named(f),
                        num_samples=8, seed=0)


def test_f09_a_nan_term_names_its_cause(fits):
    """``f`` returning NaN: ``Monte Carlo values contain NaN (...)``, naming no argument."""
    run_divergence(fits, {"f": "callable_nan"})
    with pytest.raises(ValueError, match=r"f\(t\) returned NaN at \d+ of \d+ draws"):
        dv.f_divergence(truth_named("mvn3"), fits("gaussian", "mle"), f=f_named("callable_nan"),
                        num_samples=8, seed=0)


def test_f10_seeds_beyond_numpy_range(fits):
    """``seed=2**32 - 1`` with the mixture proposal drew its second half under
    ``seed + 1 = 2**32``, and any seed >= 2**32 reached ``np.random.seed``:
    ``ValueError: Seed must be between 0 and 2**32 - 1`` from inside NumPy (divergences
    and compare; the fits' own ``seed`` arguments: see the report)."""
    run_divergence(fits, {"f": "tv", "seed": 2**32 - 1})
    assert dv.f_divergence(truth_named("mvn3"), fits("gaussian", "mle"), f="tv",
                           num_samples=8, seed=2**32 - 1).num_samples == 8
    for seed in (2**32, 2**63):
        run_divergence(fits, {"seed": seed})
        run_compare(fits, {"seed": seed, "samples": True})
        with pytest.raises(ValueError, match=r"seed .*\[0, 2\*\*32 - 1\]"):
            pgm.compare({"g": fits("gaussian", "mle")}, CASES["gaussian"].make_data(1).x,
                        seed=seed)


@pytest.mark.parametrize("data", [{"width": -1}, {"container": "flat"}, {"container": "3d"},
                                  {"container": "flat", "bad": [(0, 0, math.nan)]}])
def test_f11_cross_entropy_data_that_q_cannot_score(fits, data):
    """Rows of the wrong width, 1-D or 3-D against a distribution ``q``: a ValueError from
    inside torch/distributions (the 3-D rows were silently flattened, and a 1-D tensor
    skipped the NaN check)."""
    run_divergence(fits, {"which": "cross_entropy", "q": "mvn3", "data": data})
    x, _ = apply_numeric(CASES["gaussian"].make_data(1).x[:30], None, data)
    with pytest.raises(ValueError, match="data"):
        dv.cross_entropy(x, truth_named("mvn3"))


@pytest.mark.parametrize("truth", ["mvn2", "normal", "banana", "normal_batch3"])
def test_f12_compare_refuses_a_truth_that_cannot_score_heldout(fits, truth):
    """A truth of event shape (2,) or () (or a batch of three) for 3-column held-out rows:
    a ValueError from inside torch/distributions, or a RuntimeError from broadcasting."""
    run_compare(fits, {"truth": truth})
    with pytest.raises(ValueError, match="truth"):
        pgm.compare({"g": fits("gaussian", "mle")}, CASES["gaussian"].make_data(1).x,
                    truth=truth_named(truth), samples=False)


def test_f13_the_mixture_proposal_needs_two_samplers(fits):
    """``proposal="mixture"`` with a p that has no sampler: NotImplementedError from
    inside torch's ``Distribution.rsample``."""
    run_divergence(fits, {"p": "nosample", "proposal": "mixture"})
    with pytest.raises(ValueError, match="proposal='mixture'"):
        dv.f_divergence(side_named("nosample", fits), fits("gaussian", "mle"), proposal="mixture",
                        num_samples=8, seed=0)
@pytest.mark.parametrize("device", ["cuda:99", "meta"])
def test_f14_data_refuse_a_device_that_cannot_hold_them(device):
    """``fit(..., device="cuda:99")`` on a machine without that GPU: AssertionError
    "Torch not compiled with CUDA enabled" from inside torch/cuda; ``device="meta"``:
    RuntimeError "Tensor.item() cannot be called on meta tensors" (``as_data`` moved the
    rows there; the sequence families' own encoding: test_e06)."""
    run_fit_options("gaussian", "mle", {"device": device})
    with pytest.raises(ValueError, match="device"):
        pgm.Gaussian(3).fit(CASES["gaussian"].make_data(0).x, method="mle", device=device,
                            num_steps=2, progress=False)


#
# Found by fuzzing, to be fixed outside this test's files: each test fails until its fix
# lands (the property tests above find them too). Where the fix belongs is in the name.


def test_e01_rng_seed_beyond_numpy_range(fits):
    """``_rng.seeded``: a seed >= 2**32 reaches ``np.random.seed`` (``ValueError: Seed
    must be between 0 and 2**32 - 1`` from inside NumPy), one >= 2**64 ``torch.manual_seed``
    (``Overflow when unpacking long long``): every ``fit`` / ``sample`` / ``log_prob``
    that takes a seed."""
    run_fit_options("gaussian", "mle", {"seed": 2**32})
    run_sample("gaussian", fits("gaussian", "mle"), {"seed": 2**32})
    run_sample("gaussian", fits("gaussian", "mle"), {"seed": 2**64})
    run_log_prob("vae", fits("vae", "mle"), {"data": {}, "kw": ("seed", 2**63)})


def test_e02_infer_mcmc_with_fewer_than_four_draws():
    """``infer/mcmc.py`` (``_run_chain``): ``num_samples`` of 1-3 per chain make Pyro's
    diagnostics (``split_gelman_rubin``) fail a bare ``assert`` (AssertionError from
    pyro/ops/stats.py)."""
    run_fit_options("gaussian", "nuts", {"option": "num_samples", "value": 1})
    run_fit_options("gaussian", "hmc", {"option": "num_samples", "value": 3})


@pytest.mark.parametrize("option,value", [("target_accept_prob", "0.8"),
                                          ("target_accept_prob", "a"),
                                          ("target_accept_prob", None),
                                          ("full_mass", "yes")])
def test_e03_infer_engines_mcmc_options(option, value):
    """``infer/engines.py`` ``MCMCOptions``: ``float(target_accept_prob)`` reads "0.8"
    (then Pyro's step-size adaptation fails on the string: TypeError from
    pyro/infer/mcmc/adaptation.py), and for "a" / None raises Python's own "could not
    convert string to float: 'a'", naming no argument; ``full_mass="yes"`` reaches
    Pyro's bare ``assert`` (AssertionError "full_mass should be a list of tuples")."""
    run_fit_options("gaussian", "nuts", {"option": option, "value": value})


def test_e04_models_ppca_and_vae_log_prob_of_far_rows_is_nan(fits):
    """``models/ppca.py``, ``models/vae.py``: ``log_prob`` of rows at 1e30 is NaN (a
    density far in the tail is -inf, or a refusal; never NaN)."""
    run_log_prob("ppca", fits("ppca", "mle"), {"data": {"scale": 1e30}})
    run_log_prob("vae", fits("vae", "mle"), {"data": {"scale": 1e30, "rows": 1}})


def test_e05_models_gaussian_mle_of_huge_rows_has_an_infinite_covariance():
    """``models/gaussian.py``: the MLE of rows at 1e30 (float32) returns a fit whose
    ``covariance_matrix`` is inf (the squares overflow) instead of refusing the data or
    raising FitError."""
    run_fit_data("gaussian", "mle", {"scale": 1e30})


@pytest.mark.parametrize("name,device", [("gaussian", "bogus"), ("gaussian", 3),
                                         ("ngram", "cuda:99"), ("transformer", "meta")])
def test_e06_base_fit_checks_no_device(name, device):
    """``base.py`` ``fit``: ``torch.device(options.pop("device"))`` raises RuntimeError
    for "bogus" ("Expected one of cpu, cuda, ...") and 3 ("Cannot access accelerator
    device when none is available"); the sequence families, whose data skip ``as_data``,
    reach torch with "cuda:99" (AssertionError "Torch not compiled with CUDA enabled")
    and "meta" (NotImplementedError "Cannot copy out of meta tensor", engines.py
    fingerprint). One check of the device in ``fit`` covers them all."""
    method = _first_method(name)
    run_fit_options(name, method, {"device": device})


@pytest.mark.parametrize("method,recipe", [
    ("mle", {"option": "reg_covar", "value": math.nan}),
    ("mle", {"option": "reg_covar", "value": "a"}),
    ("vi", {"option": "lr", "value": 1e30}),
])
def test_e07_models_mixture_options_and_diverged_fits(method, recipe):
    """``models/mixture.py``: EM's ``reg_covar=nan`` passes the ``>= 0`` check and the
    M-step fails with torch's ``_LinAlgError`` (cholesky); ``reg_covar="a"`` gives "could
    not convert string to float: 'a'"; a diverged ``vi`` fit (``lr=1e30``) reaches
    ``relabel`` with NaN draws: "matrix contains invalid numeric entries" (SciPy) instead
    of FitError. EM on rows at 1e30 fails the same cholesky (see test_e05's data)."""
    run_fit_options("gaussian_mixture-diag" if method == "vi" else "gaussian_mixture",
                    method, recipe)
    if method == "mle" and recipe["value"] != "a":
        run_fit_data("gaussian_mixture", "mle", {"scale": 1e30})


@pytest.mark.parametrize("name,recipe", [
    ("score", {"key": "sigmas", "value": -1}),
    ("gan", {"key": "hidden", "value": 16}),
    ("flow", {"key": "hidden", "value": None}),
    ("energy", {"key": "hidden", "value": 16}),
    ("diffusion", {"key": "hidden", "value": None}),
    ("diffusion", {"key": "network", "value": "linear11"}),
    ("gan-wasserstein-conditional", {"key": "critic", "value": "linear11"}),
])
def test_e08_models_constructors(name, recipe):
    """``ScoreModel(sigmas=-1)`` (score.py), ``hidden=16`` / ``hidden=None`` for GAN,
    Flow, EnergyModel and Diffusion: Python's "'int' object is not iterable" naming no
    argument, from the constructors; ``Diffusion(network=nn.Linear(1, 1))`` and a GAN's
    ``critic=nn.Linear(1, 1)`` are accepted and their fit fails inside torch
    ("Linear.forward() takes 2 positional arguments but 3 were given", or a shape
    error): check a user's network against ``dim`` / ``context_dim`` at construction."""
    run_constructor(name, recipe)


def test_e09_models_sequence_string_labels(fits):
    """``models/sequence/tokens.py`` ``validate_context``: ``sample(3, c="a")`` raises
    torch's "new(): invalid data type 'str'", and ``log_prob(x, c=["a", ...])`` its "too
    many dimensions 'str'", neither naming c."""
    fit = fits("gru-conditional", "mle")
    run_sample("gru-conditional", fit, {"c": "a"})
    run_log_prob("gru-conditional", fit, {"data": {"c": "str"}})


def test_e10_infer_hmc_runs_without_end_on_degenerate_rows():
    """``infer/mcmc.py`` (HMC): on constant columns, a single row or rows at 1e-30 the
    step size adapts towards 0 and HMC's leapfrog count, trajectory_length / step_size,
    grows without bound: ``fit(method="hmc", num_samples=4, warmup_steps=3)`` does not
    return (cap the leapfrog steps, or refuse such data as the Gaussian's MLE does)."""
    run_fit_data("gaussian", "hmc", {"constant": True})  # also {"rows": 1}, {"scale": 1e-30}


def test_e11_infer_mcmc_initial_params_of_huge_rows():
    """``infer/mcmc.py``: NUTS / HMC on rows at 1e30 fail inside Pyro with "Model
    specification seems incorrect - cannot find valid initial params." (a ValueError
    from pyro/infer/mcmc/util.py that names neither the data nor their scale)."""
    run_fit_data("gaussian", "nuts", {"scale": 1e30})


def test_e12_models_ngram_order_too_large_for_a_table():
    """``models/sequence/ngram.py`` (``counts``): ``NGram(1000)`` is accepted and its fit
    fails with torch's "Overflow when unpacking long long" (a table of V**999 contexts):
    refuse an order whose table cannot be built, at construction or in fit."""
    run_constructor("ngram", {"key": "order", "value": 1000})


def test_e13_models_energy_option_types():
    """``models/energy_training.py`` options: ``reinit_fraction="bogus"`` gives Python's
    "could not convert string to float: 'bogus'", naming no argument."""
    run_fit_options("energy", "mle", {"option": "reinit_fraction", "value": "bogus"})


def test_e14_infer_a_diverged_last_step_returns_non_finite_parameters():
    """``infer/loop.py``: PPCA ``map`` with ``optimizer=torch.optim.SGD`` (lr 0.05, 3
    steps): every recorded loss is finite, but the last update makes
    ``covariance_matrix`` inf and the fit is returned as if it were fine (check the
    parameters after the last step, and raise FitError with the last finite state)."""
    run_fit_options("ppca", "map", {"option": "optimizer", "value": torch.optim.SGD})


def test_e15_infer_jit_errors_of_a_diverged_fit():
    """``infer/objectives.py`` (the JIT-compiled ELBO): PPCA ``vi`` with ``lr=1e30``
    fails with RuntimeError "The following operation failed in the TorchScript
    interpreter" (a low-rank MVN of non-finite parameters) instead of FitError."""
    run_fit_options("ppca", "vi", {"option": "lr", "value": 1e30})


def test_e16_models_score_of_one_level_has_no_ode_range():
    """``models/score_fit.py``: ``ScoreModel(num_levels=1)`` trained and sampled, but its
    ``log_prob`` failed inside the ODE solver's own check ("Expected sigma_min <
    sigma_max", naming no argument of the call), and its one level was sigma_max: now
    the constructor refuses it, naming num_levels (one level is ``sigmas=[s]``)."""
    run_constructor("score", {"key": "num_levels", "value": 1})


def test_e17_models_score_langevin_that_diverges(fits):
    """``models/score_fit.py``: ``sample(step_size=1e30)`` returned NaN draws (Langevin
    has no accept/reject step): now a ValueError naming step_size."""
    run_sample("score", fits("score", "dsm"), {"kw": ("step_size", 1e30), "n": 1})


@pytest.mark.parametrize("dtype", ["uint16", "uint32", "uint64", ">f8", ">i4", "longdouble"])
def test_e18_validation_reads_every_numeric_numpy_dtype(dtype):
    """``_validation.as_data``: uint16-64 arrays were refused as "not a real numeric
    dtype" (torch has those dtypes, the check did not list them), big-endian arrays and
    long doubles failed in ``torch.from_numpy`` with torch's message, naming no argument.
    They are numbers: read as the default dtype (long double as float64)."""
    import numpy as np

    from pyro_genmodels._validation import as_data

    x = np.arange(12, dtype=dtype).reshape(6, 2) % 5 + np.arange(2)
    t = as_data(x, dim=2)
    assert t.is_floating_point() and torch.equal(t.double(), torch.as_tensor(
        x.astype(np.float64)))


def test_e19_models_sequence_string_validation_names_it():
    """``models/sequence/tokens.py``: ``validation="0.1"`` (a string, not the fraction)
    for a token-id model was read as held-out data and refused with "takes integer token
    ids ..., not strings", naming neither validation nor data."""
    run_fit_options("transformer-tokens-mask", "mle", {"option": "validation", "value": "0.1"})
