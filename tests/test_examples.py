"""Every example runs end to end at tiny sizes."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_example_has_a_smoke_test():
    assert {p.stem for p in EXAMPLES.glob("*.py")} == set(SMOKE)


def _mle_map_bayes(tmp_path):
    mod = load("gaussian_mle_map_bayes")
    table, truth_lp = mod.main(mod.parse_args(["--n-train", "25", "--dim", "3",
                                               "--num-steps", "150", "--num-samples", "60",
                                               "--warmup-steps", "60", "--n-heldout", "200"]))
    assert list(table.index) == ["mle", "map", "vi", "nuts"]
    # nothing fitted to 25 points beats the true density on 200 held-out points by much
    assert (table["heldout_log_prob"] < truth_lp + 0.3).all()


def _pyro_program(tmp_path):
    mod = load("pyro_program")
    stock_vi, stock_nuts, facade, xbar = mod.main(mod.parse_args(["--n", "200",
                                                                  "--num-steps", "400",
                                                                  "--num-samples", "80"]))
    for est in (stock_vi, stock_nuts, facade):
        assert torch.allclose(est, xbar, atol=0.3)


def _divergences_and_priors(tmp_path):
    mod = load("divergences_and_priors")
    table, div, sweep = mod.main(mod.parse_args(["--n-train", "200", "--num-steps", "200",
                                                 "--num-samples", "2000",
                                                 "--mcmc-samples", "60",
                                                 "--out", str(tmp_path / "s.png")]))
    assert (tmp_path / "s.png").stat().st_size > 0
    assert (table["true_kl"] > 0).all()  # a Gaussian cannot be the banana
    assert div.loc["tv", "estimate"] <= 1 and div.loc["js", "estimate"] <= 0.6932
    assert sweep.iloc[-1]["method"] == "mle"


def _flow_density(tmp_path):
    mod = load("flow_density")
    table, true_lp, right = mod.main(mod.parse_args(["--n-train", "500", "--num-steps", "60",
                                                     "--hidden", "16",
                                                     "--out", str(tmp_path / "f.png")]))
    assert (tmp_path / "f.png").stat().st_size > 0
    assert table["heldout_log_prob"].iloc[0] < true_lp + 0.2  # never far above the truth
    assert right.shape == (1000, 2)
    bpd = mod.main(mod.parse_args(["--dataset", "digits", "--num-steps", "5", "--hidden", "16"]))
    assert math.isfinite(bpd) and bpd > 0


SMOKE = {"divergences_and_priors": _divergences_and_priors, "flow_density": _flow_density, "gaussian_mle_map_bayes": _mle_map_bayes, "pyro_program": _pyro_program}


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_example_runs(name, tmp_path):
    SMOKE[name](tmp_path)
