"""Every example runs end to end at tiny sizes."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

import pyro_genmodels as pgm
from tests.oracles import check_names_table

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_example_has_a_smoke_test():
    assert {p.stem for p in EXAMPLES.glob("*.py")} == set(SMOKE)


def _mle_map_bayes(tmp_path, capsys):
    mod = load("gaussian_mle_map_bayes")
    table, truth_lp = mod.main(mod.parse_args(["--n-train", "25", "--dim", "3",
                                               "--num-steps", "150", "--num-samples", "60",
                                               "--warmup-steps", "60", "--n-heldout", "200"]))
    assert list(table.index) == ["mle", "map", "vi", "nuts"]
    # nothing fitted to 25 points beats the true density on 200 held-out points by much
    assert (table["heldout_log_prob"] < truth_lp + 0.3).all()


def _pyro_program(tmp_path, capsys):
    mod = load("pyro_program")
    stock_vi, stock_nuts, facade, xbar = mod.main(mod.parse_args(["--n", "200",
                                                                  "--num-steps", "400",
                                                                  "--num-samples", "80"]))
    for est in (stock_vi, stock_nuts, facade):
        assert torch.allclose(est, xbar, atol=0.3)


def _divergences_and_priors(tmp_path, capsys):
    mod = load("divergences_and_priors")
    table, div, sweep = mod.main(mod.parse_args(["--n-train", "200", "--num-steps", "200",
                                                 "--num-samples", "2000",
                                                 "--mcmc-samples", "60",
                                                 "--out", str(tmp_path / "s.png")]))
    assert (tmp_path / "s.png").stat().st_size > 0
    # a Gaussian cannot be the banana: every true KL is positive, beyond 4 se
    assert (table["true_kl"] > 4 * table["true_kl_se"]).all()
    # KL(p_data || p_mle) twice, independently: on the 5000 held-out points of the table
    # and on 2000 fresh draws of the divergences table; they agree within their se
    kl, mle = div.loc["kl"], table.loc["mle"]
    assert abs(kl["estimate"] - mle["true_kl"]) < 4 * math.hypot(kl["stderr"],
                                                                 mle["true_kl_se"])
    # Pinsker's inequality TV <= sqrt(KL / 2), and H^2 <= TV, each up to 4 se
    tv, h2 = div.loc["tv"], div.loc["hellinger"]
    assert tv["estimate"] - 4 * tv["stderr"] <= math.sqrt((kl["estimate"]
                                                           + 4 * kl["stderr"]) / 2)
    assert h2["estimate"] - 4 * h2["stderr"] <= tv["estimate"] + 4 * tv["stderr"]
    assert sweep.iloc[-1]["method"] == "mle"


def _flow_density(tmp_path, capsys):
    mod = load("flow_density")
    table, true_lp, right = mod.main(mod.parse_args(["--n-train", "500", "--num-steps", "60",
                                                     "--hidden", "16",
                                                     "--out", str(tmp_path / "f.png")]))
    assert (tmp_path / "f.png").stat().st_size > 0
    assert table["heldout_log_prob"].iloc[0] < true_lp + 0.2  # never far above the truth
    assert right.shape == (1000, 2)
    capsys.readouterr()
    bpd = mod.main(mod.parse_args(["--dataset", "digits", "--num-steps", "5", "--hidden", "16",
                                   "--n-train", "300"]))
    assert math.isfinite(bpd) and bpd > 0  # a dequantized density bounds the discrete NLL
    assert f"digits (300 training rows): held-out {bpd:.3f} ± " in capsys.readouterr().out
    with pytest.raises(SystemExit):
        mod.parse_args(["--dataset", "digits", "--n-train", "-5"])
    assert "--n-train must be a positive number of rows, got -5" in capsys.readouterr().err


def _mixture_clusters(tmp_path, capsys):
    mod = load("mixture_clusters")
    table = mod.main(mod.parse_args(["--n-train", "300", "--num-steps", "30",
                                     "--num-samples", "4", "--out", str(tmp_path / "m.png")]))
    assert (tmp_path / "m.png").stat().st_size > 0
    assert list(table.index) == ["mle", "map", "vi", "nuts", "scikit-learn", "truth"]
    # nothing fitted to 300 points beats the true density on 2000 held-out points by much
    assert (table["heldout_log_prob"] < table.loc["truth", "heldout_log_prob"] + 0.05).all()
    assert table.loc["mle", "ari"] > 0.5


def _ppca_digits(tmp_path, capsys):
    mod = load("ppca_digits")
    table, accuracy = mod.main(mod.parse_args(["--latent-dim", "4", "--num-steps", "30",
                                               "--n-train", "800",
                                               "--out", str(tmp_path / "p.png")]))
    assert (tmp_path / "p.png").stat().st_size > 0
    # 30 steps are far from the maximum, which nothing exceeds on the training data
    closed = table.loc["closed form (PCA.score)", "train_log_prob"]
    assert (table["train_log_prob"] <= closed + 1e-3 * abs(closed)).all()
    # a share of the held-out digits (all but the 800 training ones): a whole number of
    # them, and above chance (1/10) by 4 binomial standard errors
    held = len(pgm.datasets.load_digits()[0]) - 800
    assert abs(accuracy * held - round(accuracy * held)) < 1e-3  # a float32 mean
    assert accuracy > 0.1 + 4 * math.sqrt(0.1 * 0.9 / held)
    assert f"digits: {accuracy:.3f}" in capsys.readouterr().out


def _energy_toy(tmp_path, capsys):
    mod = load("energy_toy")
    fit, coverage, log_z = mod.main(mod.parse_args(["--n-train", "300", "--num-steps", "20",
                                                    "--hidden", "16", "--num-samples", "200",
                                                    "--out", str(tmp_path / "e.png")]))
    assert (tmp_path / "e.png").stat().st_size > 0
    # the coverage figures are those of the per-mode counts of the 200 draws
    counts = coverage["counts"]
    assert len(counts) == 8 and sum(counts) == round(coverage["near_fraction"] * 200)
    assert coverage["modes_covered"] == sum(c >= 200 / 8 / 5 for c in counts)
    assert log_z == fit.log_z and math.isfinite(log_z.estimate)


def _vae_digits(tmp_path, capsys):
    mod = load("vae_digits")
    res = mod.main(mod.parse_args(["--num-steps", "30", "--hidden", "16", "--latent", "2",
                                   "--num-particles", "5", "--out", str(tmp_path / "v.png")]))
    assert (tmp_path / "v.png").stat().st_size > 0 and math.isfinite(res["iwae"])


def _names(tmp_path, capsys):
    mod = load("names")
    table, samples = mod.main(mod.parse_args(["--num-steps", "20", "--hidden-size", "16",
                                              "--num-samples", "5", "--prefix", "ma"]))
    check_names_table(table)
    assert all(s.startswith("ma") for s in samples)


def _gan_toy(tmp_path, capsys):
    mod = load("gan_toy")
    table, accuracy = mod.main(mod.parse_args(["--num-steps", "20", "--seeds", "0",
                                               "--divergences", "gan", "wasserstein",
                                               "--n-train", "1000", "--num-samples", "500",
                                               "--digits", "--plot", str(tmp_path / "g.png")]))
    assert (tmp_path / "g.png").stat().st_size > 0
    assert (tmp_path / "g_digits.png").stat().st_size > 0
    assert list(table.index) == [(d, v) for d in ("eight_gaussians", "grid25")
                                 for v in ("gan", "wasserstein")]
    assert list(table["num_modes"]) == [8, 8, 25, 25] and (table["seeds"] == 1).all()
    runs = table.attrs["runs"]
    assert len(runs) == 4 and (runs["modes_covered"] == table["modes_covered"].values).all()
    assert ((0 <= runs["modes_covered"]) & (runs["modes_covered"] <= runs["num_modes"])).all()
    # a share of the 500 draws, each a whole number of draws
    hq = runs["high_quality"] * 500
    assert ((0 <= hq) & (hq <= 500) & ((hq - hq.round()).abs() < 1e-6)).all()
    # reverse KL of a mode histogram lies in [0, log K]; nan only without high-quality draws
    rkl, k = runs["reverse_kl"], runs["num_modes"].map(math.log)
    assert (rkl.isna() == (runs["high_quality"] == 0)).all()
    assert (rkl.isna() | ((rkl >= -1e-9) & (rkl <= k + 1e-9))).all()
    assert runs["mmd2"].map(math.isfinite).all() and (runs["seconds"] > 0).all()
    # a share of 500 labelled draws
    assert 0 <= accuracy <= 1 and abs(accuracy * 500 - round(accuracy * 500)) < 1e-3
    out = capsys.readouterr().out
    assert "modes_covered" in out and f"{accuracy:.3f}" in out


def _diffusion_toy(tmp_path, capsys):
    mod = load("diffusion_toy")
    samplers, lik = mod.main(mod.parse_args(["--quick", "--plot", str(tmp_path / "d.png")]))
    assert (tmp_path / "d.png").stat().st_size > 0
    assert list(samplers.index[:-1]) == ["ancestral", "ddim 20", "ddim 100", "ode"][
        :len(samplers) - 1]
    assert samplers["mmd2"].map(math.isfinite).all()
    assert samplers["mmd2_biased"].ge(samplers["mmd2"] - 1e-12).all()  # V >= U statistic
    # the likelihood table: minus_true is each row's log_prob minus the true density's
    truth = lik.loc["true density", "log_prob"]
    assert ((lik["log_prob"] - truth - lik["minus_true"]).abs() < 1e-9).all()
    assert lik.loc["ode", "nfe"] > 0
    table, guidance = mod.main(mod.parse_args(["--quick", "--digits"]))
    assert table["bits_per_dim"].map(math.isfinite).all() and len(table) == 5
    accuracy = guidance["accuracy"]
    assert list(guidance.index) == [0.0, 1.0, 3.0] and ((0 <= accuracy) & (accuracy <= 1)).all()


def _score_toy(tmp_path, capsys):
    mod = load("score_toy")
    truth = pgm.datasets.toy("checkerboard")
    centres = truth.corners + 0.5
    assert mod.square_index(truth, centres).tolist() == list(range(8))
    assert mod.square_index(truth, centres + torch.tensor([1.0, 0.0])).eq(-1).all()
    assert mod.square_index(truth, torch.tensor([[2.5, 0.5]])).item() == -1
    tiny = torch.full((2,), 1e-4)
    assert torch.allclose(mod.blurred_log_prob("checkerboard", truth, centres, tiny),
                          torch.full((8,), -math.log(8), dtype=torch.float64))
    ring = pgm.datasets.toy("eight_gaussians")
    x = ring.sample((50,))
    assert torch.allclose(mod.blurred_log_prob("eight_gaussians", ring, x, tiny),
                          ring.log_prob(x).double(), atol=1e-4)
    samplers, lik, weights = mod.main(mod.parse_args(["--quick", "--plot",
                                                      str(tmp_path / "s.png")]))
    assert (tmp_path / "s.png").stat().st_size > 0
    rows = ["annealed_langevin", "langevin", "ode", "pc", mod.FLOOR]
    assert list(samplers.index) == [(t, r) for t in mod.TOYS for r in rows]
    assert samplers["mmd2"].map(math.isfinite).all()
    assert samplers["mmd2_biased"].ge(samplers["mmd2"] - 1e-12).all()  # V >= U statistic
    assert samplers["quality"].between(0, 1).all() and samplers["covered"].between(0, 8).all()
    kl = samplers["reverse_kl"]
    assert (kl.isna() | kl.between(-1e-9, math.log(8) + 1e-9)).all()
    floor = samplers.loc[("checkerboard", mod.FLOOR)]
    assert floor["quality"] == 1.0 and floor["covered"] == 8
    for t in mod.TOYS:
        truth_lp = lik.loc[(t, "true density"), "log_prob"]
        assert ((lik.loc[t, "log_prob"] - truth_lp - lik.loc[t, "minus_true"]).abs()
                < 1e-9).all()
        assert lik.loc[(t, "ode"), "nfe"] > 0
    assert abs(lik.loc[("checkerboard", "true density"), "log_prob"] + math.log(8)) < 1e-6
    assert lik.loc[("checkerboard", "true, blurred at sigma_min"), "log_prob"] < -math.log(8)
    assert weights["heavy_share"].between(0, 1).all()
    assert "ode log-likelihood within 0.2 nats" in capsys.readouterr().out
    table, quality, classes = mod.main(mod.parse_args(["--quick", "--digits"]))
    assert len(table) == 6 and table["bits_per_dim"].map(math.isfinite).all()
    assert list(table["log_prob_kind"][:2]) == ["estimate", "estimate"]
    assert quality["mean_max_prob"].between(0.1, 1).all()
    assert quality["confident_0.9"].between(0, 1).all()
    asked = quality["as_asked"].dropna()
    assert list(asked.index) == ["held-out real digits", "score p(x | y), annealed Langevin"]
    assert asked.between(0, 1).all()
    assert ((classes.sum(axis=1) - 1).abs() < 1e-9).all()


def _big_data_flow(tmp_path, capsys):
    mod = load("big_data_flow")
    out = mod.main(mod.parse_args(["--rows", "30000", "--num-steps", "30", "--batch-size",
                                   "256", "--keep", str(tmp_path / "x.npy")]))
    assert out["streamed_rows"] == 30000
    assert (tmp_path / "x.npy").stat().st_size == 30000 * 8 * 4 + 128  # header + rows
    assert math.isfinite(out["heldout_log_prob"])
    assert out["heldout_log_prob"] < out["true_log_prob"] + 0.5  # nothing beats the truth
    assert "peak resident memory" in capsys.readouterr().out


SMOKE = {"divergences_and_priors": _divergences_and_priors, "flow_density": _flow_density,
         "gaussian_mle_map_bayes": _mle_map_bayes, "pyro_program": _pyro_program,
         "mixture_clusters": _mixture_clusters, "ppca_digits": _ppca_digits,
         "energy_toy": _energy_toy, "vae_digits": _vae_digits,
         "names": _names, "gan_toy": _gan_toy, "diffusion_toy": _diffusion_toy,
         "score_toy": _score_toy, "big_data_flow": _big_data_flow}


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_example_runs(name, tmp_path, capsys):
    SMOKE[name](tmp_path, capsys)
