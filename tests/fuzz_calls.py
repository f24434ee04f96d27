"""The fuzzed calls of tests/test_fuzz.py: each ``run_*`` builds one call of a public
entry point from a recipe (tests/fuzz_recipes.py), runs it through the judge
(tests/fuzz_support.py) and checks what came back, and that nothing it was given changed.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
import torch
from hypothesis import strategies as st

import pyro_genmodels as pgm
from pyro_genmodels import divergences as dv
from pyro_genmodels._rng import seeded
from pyro_genmodels.mc import MCEstimate
from tests.cases import CASES
from tests.fuzz_recipes import (GENERIC_BAD, HUGE_STEPS, INF, NAN, SEEDS, StopAt,
                                apply_numeric, apply_padded, apply_text, apply_tokens,
                                constructor_value, numeric_recipe, padded_recipe,
                                text_recipe, token_recipe)
from tests.fuzz_support import (assert_unchanged, check_draws, check_log_prob, data_kind,
                                finite_params, judge, short, snapshot, tiny_options,
                                vocab_size_of)

FIT_ERRORS = (ValueError, TypeError, pgm.FitError)
#: words that name the data argument in a message ("the training strings contain ...",
#: "N=1 points in D=3 dimensions", "column(s) [0] are constant", "token id 7")
#: ("string" alone is not one: Python's own "could not convert string to float" has it)
DATA_WORDS = {"data", "x", "rows", "row", "points", "strings", "sequences", "sequence",
              "column", "columns", "token", "tokens"}


# ---------------------------------------------------------------------- data inputs
def data_recipe(case_name: str, max_changes: int = 2):
    kind = data_kind(case_name)
    conditional = CASES[case_name].make_data(0).c is not None
    if kind == "numeric":
        return numeric_recipe(conditional, max_changes)
    if kind == "text":
        return text_recipe(conditional, max_changes)
    if kind == "tokens":
        return token_recipe(max_changes)
    return padded_recipe(max_changes)


def make_input(case_name: str, seed: int, recipe: Dict[str, Any]) -> Tuple[Any, Dict[str, Any]]:
    """The data argument and the keyword arguments (``c``, ``lengths``, ``mask``) that
    ``recipe`` makes of the case's valid data set ``seed``."""
    d = CASES[case_name].make_data(seed)
    kind = data_kind(case_name)
    if kind == "numeric":
        x, c = apply_numeric(d.x, d.c, recipe)
        return x, ({} if c is None else {"c": c})
    if kind == "text":
        x, c = apply_text(d.x, d.c, recipe)
        return x, ({} if c is None else {"c": c})
    if kind == "tokens":
        return apply_tokens(d.x, 3, recipe), {}
    return apply_padded(d.x, d.options, 3, recipe)


def num_rows(x: Any) -> Optional[int]:
    if isinstance(x, (torch.Tensor, np.ndarray, pd.DataFrame, pd.Series, list, tuple)):
        return len(x) if getattr(x, "ndim", 1) else None
    return None


def c_for(case_name: str, n: int) -> Any:
    """A valid ``c`` for ``n`` rows (the case's sample condition, repeated)."""
    c = CASES[case_name].sample_c
    if c is None:
        return None
    if isinstance(c, torch.Tensor):
        return c.expand(n, -1)
    return torch.full((n,), int(c), dtype=torch.long)


def describe(recipe: Dict[str, Any], x: Any, kw: Dict[str, Any]) -> str:
    return f"recipe={recipe} -> x={short(x)}, " + ", ".join(f"{k}={short(v)}" for k, v in kw.items())


# ---------------------------------------------------------------------- a fit is valid
def check_fit(case_name: str, fit: Any, what: str, *, num_steps: Optional[int] = None) -> None:
    """A returned fit: of the family's class, finite losses and parameters, and its own
    draws are well formed with a log-density that is no NaN."""
    case = CASES[case_name]
    assert isinstance(fit, type(case.make_model()).fit_class), f"{what}: returned {type(fit)}"
    assert all(math.isfinite(v) for v in fit.losses), f"{what}: non-finite losses {fit.losses}"
    if num_steps is not None and fit.losses:
        assert len(fit.losses) <= num_steps, f"{what}: {len(fit.losses)} > {num_steps} steps"
    finite_params(fit, what)
    kind = data_kind(case_name)
    if fit.model.registry_name == "energy":
        return  # drawing from an energy model is an MCMC run: too slow for every fit
    c = c_for(case_name, 3)
    draws = fit.sample(3, seed=0, c=c)
    check_draws(draws, 3, kind, dim=getattr(fit.model, "dim", None),
                vocab_size=vocab_size_of(fit.model), what=f"{what} -> fit.sample(3)")
    if fit.log_prob_kind == "none":
        return
    if kind in ("tokens", "padded"):
        draws = [s.tolist() for s in draws]
    # a model the constructor accepted may still have no density to evaluate (a
    # ScoreModel of one noise level): a refusal that names the model's setting is fine
    got = judge(lambda: fit.log_prob(draws, c=c), what=f"{what} -> fit.log_prob(fit.sample(3))",
                names={"x", "c", *fit.model.get_config()})
    if got.ok:
        check_log_prob(got.result, 3, finite=False, below=case.log_prob_below,
                       what=f"{what} -> fit.log_prob(fit.sample(3))")


# ---------------------------------------------------------------------- fit: data
def run_fit_data(case_name: str, method: str, recipe: Dict[str, Any]) -> None:
    case = CASES[case_name]
    model = case.make_model()
    x, kw = make_input(case_name, 0, recipe)
    opts = tiny_options(case_name, method)
    what = f"[{case_name}] model.fit({describe(recipe, x, kw)}, method={method!r}, **{opts})"
    before = snapshot(model)
    out = judge(lambda: model.fit(x, method=method, seed=0, progress=False, **kw, **opts),
                what=what, names={*DATA_WORDS, "method", "c", *kw, *opts}, allowed=FIT_ERRORS)
    assert_unchanged(before, model, "the model")
    if out.ok:
        check_fit(case_name, out.result, what, num_steps=opts.get("num_steps"))


# ---------------------------------------------------------------------- fit: options
def _validation_value(case_name: str, value: Any) -> Any:
    if not (isinstance(value, str) and value.startswith("rows:")):
        return value
    recipe = {"rows:0": {"rows": 0}, "rows:wide": {"width": 1},
              "rows:nan": {"bad": [(0, 0, NAN)]}, "rows:valid": {"rows": 5},
              "rows:list": {"rows": 5, "container": "list"}}[value]
    kind = data_kind(case_name)
    if kind != "numeric":
        recipe = {"rows:0": {"rows": 0}, "rows:valid": {"rows": 2}}.get(value, {"rows": 2})
    x, kw = make_input(case_name, 1, recipe)
    return (x, kw["c"]) if "c" in kw else x


def run_fit_options(case_name: str, method: str, recipe: Dict[str, Any]) -> None:
    case = CASES[case_name]
    model = case.make_model()
    d = case.make_data(0)
    kw = dict(d.kw)
    opts = tiny_options(case_name, method)
    call_method, seed = method, 0
    if "option" in recipe:
        name, value = recipe["option"], recipe["value"]
        if name == "validation":
            value = _validation_value(case_name, value)
        opts[name] = value
        if name == "num_steps" and value == HUGE_STEPS:
            opts["callback"] = StopAt(1)
    elif "unknown" in recipe:
        opts[recipe["unknown"]] = recipe["value"]
    elif "method" in recipe:
        call_method = recipe["method"]
    elif "seed" in recipe:
        seed = recipe["seed"]
    elif "device" in recipe:
        opts["device"] = recipe["device"]
    elif "c_mode" in recipe:
        n = len(d.x)
        kw["c"] = {"zeros": torch.zeros(n, 2), "none": None, "list": [[0.0, 0.0]] * n,
                   "nan": torch.full((n, 2), NAN)}[recipe["c_mode"]]
        if d.c is not None and recipe["c_mode"] == "zeros":
            kw["c"] = torch.zeros(n, 7)  # the wrong width for a conditional case
    what = (f"[{case_name}] model.fit(<valid data>, method={call_method!r}, seed={seed!r}, "
            f"**{ {k: short(v) for k, v in {**kw, **opts}.items()} }) (recipe {recipe})")
    before = snapshot(model)
    out = judge(lambda: model.fit(d.x, method=call_method, seed=seed, progress=False, **kw,
                                  **opts),
                what=what, names={"data", "method", "seed", *kw, *opts},
                allowed=FIT_ERRORS)
    assert_unchanged(before, model, "the model")
    if out.ok:
        steps = opts.get("num_steps")
        check_fit(case_name, out.result, what,
                  num_steps=steps if isinstance(steps, int) and steps < HUGE_STEPS else None)


# ---------------------------------------------------------------------- the constructor
def run_constructor(case_name: str, recipe: Dict[str, Any]) -> None:
    case = CASES[case_name]
    base = case.make_model()
    cls = type(base)
    config = base.get_config()
    key = recipe["key"]
    value = constructor_value(recipe["value"], config.get(key))
    cfg = {**config, key: value}
    what = f"[{case_name}] {cls.__name__}(**{ {k: short(v) for k, v in cfg.items()} }) (recipe {recipe})"

    def build():
        with seeded(0):
            return cls(**cfg)
    out = judge(build, what=what, names=set(cfg))
    if not out.ok:
        return
    model = out.result
    method = next(iter(case.fast_options))
    d = case.make_data(0)
    opts = tiny_options(case_name, method)
    what_fit = f"{what}.fit(<case data>, method={method!r}, **{opts})"
    before = snapshot(model)
    fitted = judge(lambda: model.fit(d.x, method=method, seed=0, progress=False, **d.kw,
                                     **opts),
                   what=what_fit, names={*DATA_WORDS, "method", "c", *d.kw, *opts, *cfg},
                   allowed=FIT_ERRORS)
    assert_unchanged(before, model, "the model")
    if fitted.ok:
        check_fit(case_name, fitted.result, what_fit, num_steps=opts.get("num_steps"))


# ---------------------------------------------------------------------- log_prob
LOG_PROB_VALUES: Dict[str, List[Any]] = {
    "num_particles": [0, -1, 1, 2.5, "2", True],
    "seed": SEEDS,
    "estimator": ["bogus", None, 3, "ode", "bound"],
    "include_end": ["yes", None, 0, False],
    "trace": ["bogus", "exact", "hutchinson", 3],
    "num_probes": [0, -1, 2, 2.5],
    "rtol": [0, -1, NAN, 0.1, "x"],
    "atol": [0, -1, NAN, 0.1, "x"],
    "bogus_option": [1],
}
_DATA_KW = {"c", "lengths", "mask"}
_VAR_KW_NAMES = {"log_prob": ["trace", "num_probes", "rtol", "atol", "bogus_option"],
                 "sample": ["sampler", "num_chains", "warmup_steps", "step_size",
                            "bogus_option", "init", "adjusted"]}


def keyword_names(fn, skip) -> List[str]:
    """The keyword-only arguments of ``fn`` (and, for ``**options``, known option names)."""
    names = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.KEYWORD_ONLY and p.name not in skip:
            names.append(p.name)
        elif p.kind is p.VAR_KEYWORD:
            names += _VAR_KW_NAMES[fn.__name__]
    return names


def keyword_recipe(fn, skip, values: Dict[str, List[Any]]):
    names = keyword_names(fn, skip)
    if not names:
        return st.just(None)
    return st.sampled_from(names).flatmap(
        lambda n: st.tuples(st.just(n), st.sampled_from(values.get(n, GENERIC_BAD))))


def log_prob_recipe(case_name: str, fit):
    return st.fixed_dictionaries({"data": data_recipe(case_name),
                                  "kw": st.one_of(st.just(None),
                                                  keyword_recipe(fit.log_prob, _DATA_KW,
                                                                 LOG_PROB_VALUES))})


def _magnitude_ok(recipe: Dict[str, Any]) -> bool:
    """Rows (and conditions) of the data's own scale or below: their density is finite."""
    return recipe.get("scale", 1.0) in (1.0, 1e-30, 0.0, 1e-320) and recipe.get("c") != "huge"


def run_log_prob(case_name: str, fit, recipe: Dict[str, Any]) -> None:
    case = CASES[case_name]
    x, kw = make_input(case_name, 1, recipe["data"])
    extra = dict([recipe["kw"]]) if recipe.get("kw") else {}
    what = f"[{case_name}/{fit.method}] fit.log_prob({describe(recipe['data'], x, kw)}, " \
           f"**{extra})"
    allowed = (ValueError, TypeError) + (
        (NotImplementedError,) if fit.log_prob_kind == "none" else ())
    before = snapshot(fit)
    out = judge(lambda: fit.log_prob(x, **kw, **extra), what=what,
                names={*DATA_WORDS, "c", *kw, *extra}, allowed=allowed)
    assert_unchanged(before, fit, "the fit")
    if not out.ok:
        return
    assert fit.log_prob_kind != "none", f"{what}: a fit without a density returned a value"
    kind = data_kind(case_name)
    finite = case.finite_on_heldout and (
        _magnitude_ok(recipe["data"]) if kind == "numeric"
        else not (fit.model.registry_name == "ngram" and fit.method == "mle"))
    check_log_prob(out.result, num_rows(x), finite=finite, below=case.log_prob_below,
                   what=what)


# ---------------------------------------------------------------------- sample
SAMPLE_VALUES: Dict[str, List[Any]] = {
    "sampler": ["bogus", None, 3, "ode", "pc", "langevin", "ddim", "ancestral",
                "annealed_langevin", "hmc", "nuts", "hmc_vectorized"],
    "steps": [0, -1, 1, 2, 2.5, "3", None],
    "eta": [-1, 0, 1, 2, NAN, "0"],
    "guidance": [-1, 0, 1, 2, NAN, "1", None],
    "rtol": [0, -1, NAN, 0.1, "x"],
    "atol": [0, -1, NAN, 0.1, "x"],
    "steps_per_level": [0, -1, 1, 2.5],
    "step_size": [0, -1, NAN, 1e-30, 1e30, None],
    "denoise": ["yes", 2, True, False],
    "prefix": ["", "a", "z", "ab" * 30, 3, None, ["a"], [1], [7], [-1], b"a", [1.5]],
    "temperature": [0, -1, NAN, INF, 1e-30, 1e30, "1", 0.5],
    "top_k": [0, -1, 1, 100, 2.5, "2", None],
    "max_length": [0, -1, 1, 2, 2.5, 200, None],
    "use_cache": [False, "yes", None],
    "mean": ["yes", True, False, None],
    "num_chains": [0, -1, 1, 2.5],
    "warmup_steps": [-1, 0, 2.5, 3],
    "bogus_option": [1],
    "init": ["bogus", 3, None],
    "adjusted": ["yes", False, None],
}
N_VALUES = [1, 3, 0, -1, 2.0, "3", None, True, np.int64(2), 1.5]


def sample_recipe(case_name: str, fit):
    conditional = CASES[case_name].sample_c is not None
    if not conditional:
        c_modes = ["zeros"]
    elif isinstance(CASES[case_name].sample_c, torch.Tensor):
        c_modes = ["none", "n_rows", "wrong_rows", "width+1", "nan", "list", "1d", "int",
                   "huge"]
    else:
        c_modes = ["none", 5, -1, 1.5, "a", "list_n", "list_n+1", "tensor2d", NAN, True,
                   "tensor_n"]
    axes = {"n": st.sampled_from(N_VALUES), "seed": st.sampled_from(SEEDS),
            "c": st.sampled_from(c_modes),
            "kw": keyword_recipe(fit.sample, {"c", "seed"}, SAMPLE_VALUES)}

    @st.composite
    def draw(draw_):
        picked = draw_(st.lists(st.sampled_from(sorted(axes)), max_size=2, unique=True))
        return {a: draw_(axes[a]) for a in sorted(picked)}
    return draw()


def _sample_c(case_name: str, mode: Any, n: int) -> Any:
    valid = CASES[case_name].sample_c
    if mode is None:
        return valid
    k = n if isinstance(n, int) and not isinstance(n, bool) and 0 < n < 100 else 3
    if mode == "zeros":
        return torch.zeros(k, 2)
    if isinstance(valid, torch.Tensor):
        return {"none": lambda: None, "n_rows": lambda: valid.expand(k, -1),
                "wrong_rows": lambda: valid.expand(k + 1, -1),
                "width+1": lambda: torch.cat([valid, torch.zeros(1, 1)], 1),
                "nan": lambda: torch.full_like(valid, NAN), "list": lambda: valid.tolist(),
                "1d": lambda: valid[0], "int": lambda: valid.long(),
                "huge": lambda: valid * 1e30}[mode]()
    table = {"none": None, "list_n": [1] * k, "list_n+1": [1] * (k + 1),
             "tensor2d": torch.ones(k, 1).long(), "tensor_n": torch.ones(k).long()}
    return table[mode] if isinstance(mode, str) and mode in table else mode


def run_sample(case_name: str, fit, recipe: Dict[str, Any]) -> None:
    n = recipe.get("n", 3)
    seed = recipe.get("seed", 0)
    c = _sample_c(case_name, recipe.get("c"), n)
    extra = dict([recipe["kw"]]) if recipe.get("kw") else {}
    what = f"[{case_name}/{fit.method}] fit.sample({n!r}, c={short(c)}, seed={seed!r}, " \
           f"**{extra})"
    before = snapshot(fit)
    out = judge(lambda: fit.sample(n, c=c, seed=seed, **extra), what=what,
                names={"n", "c", "seed", *extra})
    assert_unchanged(before, fit, "the fit")
    if out.ok:
        check_draws(out.result, int(n), data_kind(case_name), dim=getattr(fit.model, "dim", None),
                    vocab_size=vocab_size_of(fit.model), what=what)


# ---------------------------------------------------------------------- compare
COMPARE_FITS = {  # label -> (case, method) of the module's fits that compare may get
    "gaussian": ("gaussian", "mle"), "gaussian_vi": ("gaussian", "vi"),
    "ppca": ("ppca", "mle"), "mixture": ("gaussian_mixture", "mle"),
    "flow": ("flow", "mle"), "gan": ("gan", "adversarial"),
    "diffusion": ("diffusion", "mle"), "vae": ("vae", "mle"), "score": ("score", "dsm"),
    "flow_c": ("flow-conditional", "mle"), "ngram": ("ngram", "map"),
}


def truth_named(name: Optional[str]) -> Any:
    if name is None:
        return None
    d = torch.distributions
    return {"mvn3": lambda: d.MultivariateNormal(torch.zeros(3), torch.eye(3)),
            "mvn3_64": lambda: d.MultivariateNormal(torch.zeros(3, dtype=torch.float64),
                                                    torch.eye(3, dtype=torch.float64)),
            "mvn2": lambda: d.MultivariateNormal(torch.zeros(2), torch.eye(2)),
            "normal": lambda: d.Normal(0.0, 1.0),
            "normal_batch3": lambda: d.Normal(torch.zeros(3), 1.0),
            "banana": lambda: pgm.datasets.toy("banana"),
            "string": lambda: "mvn"}[name]()


COMPARE_AXES = {
    "fits": st.sampled_from(["many", "with_text", "text", "empty", "list", "none",
                             "not_fit", "int_label", "posterior", "gan", "conditional"]),
    "heldout": numeric_recipe(False, 2),
    "heldout_kind": st.sampled_from(["text", "none", "string", "tokens"]),
    "truth": st.sampled_from(["mvn3", "mvn3_64", "mvn2", "normal", "normal_batch3",
                              "banana", "string"]),
    "c": st.sampled_from(["valid", "wrong_rows", "nan", "list", "zeros_uncond"]),
    "loo": st.sampled_from([False, "yes", None]),
    "samples": st.sampled_from([True]),
    "seed": st.sampled_from([-1, "a", 2**32, 1.5, None, 2**63]),
    "bin_width": st.sampled_from([0.5, 0, -1, NAN, "1", INF, 1e-30]),
}


def compare_recipe(max_changes: int = 3):
    @st.composite
    def draw(draw_):
        picked = draw_(st.lists(st.sampled_from(sorted(COMPARE_AXES)), max_size=max_changes,
                                unique=True))
        return {a: draw_(COMPARE_AXES[a]) for a in sorted(picked)}
    return draw()


def run_compare(get_fit, recipe: Dict[str, Any]) -> None:
    def f(label):
        return get_fit(*COMPARE_FITS[label])
    which = recipe.get("fits", "one")
    fits: Any = {
        "one": lambda: {"gaussian": f("gaussian")},
        "many": lambda: {k: f(k) for k in ("gaussian", "ppca", "mixture", "flow", "vae")},
        "with_text": lambda: {"gaussian": f("gaussian"), "ngram": f("ngram")},
        "text": lambda: {"ngram": f("ngram")},
        "empty": lambda: {}, "list": lambda: [f("gaussian")], "none": lambda: None,
        "not_fit": lambda: {"a": 3}, "int_label": lambda: {1: f("gaussian")},
        "posterior": lambda: {"vi": f("gaussian_vi"), "mle": f("gaussian")},
        "gan": lambda: {"gan": f("gan"), "diffusion": f("diffusion"), "score": f("score")},
        "conditional": lambda: {"flow_c": f("flow_c"), "flow": f("flow")},
    }[which]()
    held_kind = recipe.get("heldout_kind")
    if held_kind is None:
        heldout, _ = apply_numeric(CASES["gaussian"].make_data(1).x[:40], None,
                                   recipe.get("heldout", {}))
    else:
        heldout = {"text": lambda: CASES["ngram"].make_data(1).x, "none": lambda: None,
                   "string": lambda: "heldout.csv",
                   "tokens": lambda: [[0, 1], [2]]}[held_kind]()
    n = num_rows(heldout) or 1
    c_mode = recipe.get("c")
    c = None
    if c_mode is not None:
        base = CASES["flow-conditional"].make_data(1).c
        idx = [i % len(base) for i in range(n)]
        c = {"valid": lambda: base[idx], "wrong_rows": lambda: base[:n + 1],
             "nan": lambda: torch.full((n, 2), NAN), "list": lambda: base[idx].tolist(),
             "zeros_uncond": lambda: torch.zeros(n, 2)}[c_mode]()
    kw = {k: recipe[k] for k in ("loo", "samples", "seed", "bin_width") if k in recipe}
    kw.setdefault("samples", False)
    truth = truth_named(recipe.get("truth"))
    what = f"pgm.compare({which}, heldout={short(heldout)}, truth={recipe.get('truth')}, " \
           f"c={short(c)}, **{kw}) (recipe {recipe})"
    before = {k: snapshot(v) for k, v in fits.items()
              if isinstance(v, pgm.Fit)} if isinstance(fits, dict) else {}
    out = judge(lambda: pgm.compare(fits, heldout, truth=truth, c=c, **kw), what=what,
                names={"fits", "heldout", "truth", "c", *kw, *DATA_WORDS} | (
                    {f"fits[{k!r}]" for k in fits} if isinstance(fits, dict) else set()))
    for k, snap in before.items():
        assert_unchanged(snap, fits[k], f"fits[{k!r}]")
    if not out.ok:
        return
    table = out.result
    assert isinstance(table, pd.DataFrame), f"{what}: returned {type(table)}"
    assert list(table.index) == list(fits), f"{what}: rows {list(table.index)}"
    for label, fit in fits.items():
        if fit.log_prob_kind != "none":
            v = table.loc[label, "heldout_log_prob"]
            assert not (isinstance(v, float) and math.isnan(v)), \
                f"{what}: heldout_log_prob of {label!r} is NaN"


# ---------------------------------------------------------------------- divergences
class _NoSample(torch.distributions.Distribution):
    """A density without a sampler (only ``log_prob``)."""

    arg_constraints: Dict[str, Any] = {}

    def __init__(self):
        super().__init__(event_shape=torch.Size([3]), validate_args=False)

    def log_prob(self, x):
        return torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1)


SIDES = ["mvn3", "mvn3_64", "mvn2", "normal", "normal_batch3", "indep3", "banana",
         "nosample", "fit:gaussian", "fit:flow", "fit:gan", "fit:vae", "fit:ngram",
         "fit:flow_c", "fit:gaussian_vi", "string", "none", "tensor"]
F_VALUES = ["reverse_kl", "js", "tv", "hellinger", "pearson", "bogus", "callable_ok",
            "callable_shape", "callable_str", "callable_nan", "callable_list", 3, None]

DIVERGENCE_AXES = {
    "which": st.sampled_from(["kl", "cross_entropy", "cross_entropy_dist"]),
    "p": st.sampled_from(SIDES), "q": st.sampled_from(SIDES),
    "f": st.sampled_from(F_VALUES),
    "num_samples": st.sampled_from([1, 2, 0, -1, 2.5, "10", True, np.int64(8), None, 3]),
    "proposal": st.sampled_from(["mixture", "p", "q", "r", None, 3]),
    "seed": st.sampled_from([None, 7, -1, 2**32 - 1, 2**32, 1.5, "0", True, 2**63]),
    "allow_inexact": st.sampled_from([True, "yes"]),
    "data": numeric_recipe(False, 2),
}


def divergence_recipe(max_changes: int = 3):
    @st.composite
    def draw(draw_):
        picked = draw_(st.lists(st.sampled_from(sorted(DIVERGENCE_AXES)),
                                max_size=max_changes, unique=True))
        return {a: draw_(DIVERGENCE_AXES[a]) for a in sorted(picked)}
    return draw()


def side_named(name: str, get_fit) -> Any:
    d = torch.distributions
    if name.startswith("fit:"):
        return get_fit(*COMPARE_FITS[name[4:]])
    if name in ("mvn3", "mvn3_64", "mvn2", "normal", "normal_batch3", "banana", "string"):
        return truth_named(name)
    return {"indep3": lambda: d.Independent(d.Normal(torch.zeros(3), torch.ones(3)), 1),
            "nosample": _NoSample, "none": lambda: None,
            "tensor": lambda: torch.zeros(3)}[name]()


def f_named(value: Any) -> Any:
    return {"callable_ok": lambda t: t * torch.log(t),
            "callable_shape": lambda t: t.sum(),
            "callable_str": lambda t: "x",
            "callable_nan": lambda t: t * NAN,
            "callable_list": lambda t: [1.0, 2.0]}.get(value, value) \
        if isinstance(value, str) else value


def run_divergence(get_fit, recipe: Dict[str, Any]) -> None:
    which = recipe.get("which", "f_divergence")
    p = side_named(recipe.get("p", "mvn3"), get_fit)
    q = side_named(recipe.get("q", "fit:gaussian"), get_fit)
    # data rows are scored as they are, and refuse a draw count and a seed: those go in
    # only where the recipe asks (else every rows case would stop at that refusal)
    rows = which == "cross_entropy"
    kw: Dict[str, Any] = {k: recipe.get(k, default) for k, default in
                          (("num_samples", 16), ("seed", 0)) if not rows or k in recipe}
    if "allow_inexact" in recipe:
        kw["allow_inexact"] = recipe["allow_inexact"]
    sides = {"p": p, "q": q}
    if which == "f_divergence":
        kw["f"] = f_named(recipe.get("f", "kl"))
        if "proposal" in recipe:
            kw["proposal"] = recipe["proposal"]
        call = lambda: dv.f_divergence(p, q, **kw)  # noqa: E731
        names = {"p", "q", *kw}
    elif which == "kl":
        call = lambda: dv.kl(p, q, **kw)  # noqa: E731
        names = {"p", "q", *kw}
    else:
        if which == "cross_entropy":
            data, _ = apply_numeric(CASES["gaussian"].make_data(1).x[:30], None,
                                    recipe.get("data", {}))
        else:
            data = p
        sides = {"data": data, "q": q}
        call = lambda: dv.cross_entropy(data, q, **kw)  # noqa: E731
        names = {"q", *kw, *DATA_WORDS}
    what = f"divergences.{which}({', '.join(f'{k}={short(v)}' for k, v in sides.items())}, " \
           f"**{ {k: short(v) for k, v in kw.items()} }) (recipe {recipe})"
    before = {k: snapshot(v) for k, v in sides.items() if isinstance(v, pgm.Fit)}
    out = judge(call, what=what, names=names)
    for k, snap in before.items():
        assert_unchanged(snap, sides[k], k)
    if not out.ok:
        return
    res = out.result
    assert isinstance(res, MCEstimate), f"{what}: returned {type(res)}"
    assert isinstance(res.estimate, float) and not math.isnan(res.estimate), \
        f"{what}: estimate {res.estimate!r}"
    assert isinstance(res.num_samples, int) and res.num_samples > 0, f"{what}: {res!r}"
