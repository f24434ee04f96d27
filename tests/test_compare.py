import copy
import importlib
import math

import pandas as pd
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels import metrics


def test_compare_table():
    x, truth = pgm.datasets.correlated_gaussian(200, dim=2, seed=0)
    heldout, _ = pgm.datasets.correlated_gaussian(300, dim=2, seed=1)
    model = pgm.Gaussian(2)
    fits = {
        "mle": model.fit(x, method="mle", seed=0, progress=False, num_steps=500),
        "map": model.fit(x, method="map", seed=0, progress=False, num_steps=500),
        "nuts": model.fit(x, method="nuts", seed=0, progress=False, num_samples=100,
                          warmup_steps=100, num_chains=2),
    }
    table = pgm.compare(fits, heldout)
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == ["mle", "map", "nuts"]
    for col in ("method", "heldout_log_prob", "log_prob_kind", "elpd_loo", "num_params"):
        assert col in table.columns
    for name, fit in fits.items():
        assert table.loc[name, "heldout_log_prob"] == pytest.approx(
            fit.log_prob(heldout).mean().item(), rel=1e-6)
    assert table.loc["nuts", "log_prob_kind"] == "exact"
    assert math.isnan(table.loc["mle", "elpd_loo"])
    assert math.isfinite(table.loc["nuts", "elpd_loo"])
    assert table.loc["mle", "num_params"] == 5  # 2 loc + 2 scales + 1 correlation
    # every fit is close to the truth's own held-out log-likelihood (within 4 se + 0.05)
    best = truth.log_prob(heldout).mean().item()
    for name in fits:
        assert abs(table.loc[name, "heldout_log_prob"] - best) < \
            4 * table.loc[name, "heldout_log_prob_se"] + 0.05


def test_compare_refuses_bad_input():
    with pytest.raises(ValueError, match="non-empty dict .* got an empty one"):
        pgm.compare({}, torch.zeros(3, 2))
    with pytest.raises(TypeError, match="non-empty dict .* got list"):
        pgm.compare([], torch.zeros(3, 2))
    with pytest.raises(TypeError, match="Fit"):
        pgm.compare({"a": object()}, torch.zeros(3, 2))


SAMPLE_COLUMNS = ["mmd", "mmd_se", "c2st", "c2st_se"]
LIKELIHOOD_COLUMNS = ["heldout_log_prob", "heldout_log_prob_se", "train_log_prob", "aic",
                      "bic", "elpd_loo", "elpd_waic", "true_kl", "true_kl_se"]


def test_sample_columns_rank_a_wrong_fit_below_a_right_one():
    x, truth = pgm.datasets.correlated_gaussian(400, dim=2, seed=0)
    heldout, _ = pgm.datasets.correlated_gaussian(600, dim=2, seed=1)
    model = pgm.Gaussian(2)
    right = model.fit(x, method="mle", seed=0, progress=False, num_steps=300)
    wrong = model.fit(x + torch.tensor([1.0, 0.0]), method="mle", seed=0, progress=False,
                      num_steps=300)  # fitted to shifted data: its location is off by 1
    table = pgm.compare({"right": right, "wrong": wrong}, heldout, truth=truth, seed=3)
    assert set(SAMPLE_COLUMNS) <= set(table.columns)
    assert table[SAMPLE_COLUMNS].notna().all().all()
    r, w = table.loc["right"], table.loc["wrong"]
    assert abs(r["mmd"]) < 4 * r["mmd_se"]  # indistinguishable from the data
    assert abs(r["c2st"] - 0.5) < 4 * math.sqrt(0.25 / 600)
    assert w["mmd"] - r["mmd"] > 4 * math.hypot(w["mmd_se"], r["mmd_se"])
    assert w["c2st"] - r["c2st"] > 4 * math.hypot(w["c2st_se"], r["c2st_se"])
    # the columns are the metrics of seeded draws against the held-out rows
    draws = wrong.sample(600, seed=3)
    bw = metrics.median_bandwidth(heldout)
    assert w["mmd"] == pytest.approx(metrics.mmd(draws, heldout, bandwidth=bw).estimate)
    assert w["c2st"] == pytest.approx(metrics.c2st(draws, heldout, seed=3).estimate)
    off = pgm.compare({"right": right}, heldout, samples=False)
    assert off[SAMPLE_COLUMNS].isna().all().all()
    assert off.loc["right", "heldout_log_prob"] == table.loc["right", "heldout_log_prob"]


class NoDensityFit(pgm.Fit):
    """What a GAN's fit looks like to compare: samples, but no log-density at all."""

    @property
    def log_prob_kind(self):
        return "none"

    def log_prob(self, x, *, c=None):
        raise NotImplementedError("no density")


def test_a_fit_without_density_gets_nan_likelihood_columns():
    x, truth = pgm.datasets.correlated_gaussian(300, dim=2, seed=0)
    heldout, _ = pgm.datasets.correlated_gaussian(300, dim=2, seed=1)
    fit = pgm.Gaussian(2).fit(x, method="mle", seed=0, progress=False, num_steps=300)
    gan_like = copy.copy(fit)
    gan_like.__class__ = NoDensityFit
    with pytest.raises(NotImplementedError):
        gan_like.log_prob(heldout)
    table = pgm.compare({"flow-like": fit, "gan-like": gan_like}, heldout, truth=truth)
    g = table.loc["gan-like"]
    assert g["log_prob_kind"] == "none" and g["num_params"] == 5
    assert g[LIKELIHOOD_COLUMNS].isna().all()
    assert table.loc["flow-like", ["heldout_log_prob", "train_log_prob", "aic",
                                   "true_kl"]].notna().all()
    # the same draws as the density fit, so the same sample-based scores
    assert g[SAMPLE_COLUMNS].tolist() == pytest.approx(
        table.loc["flow-like", SAMPLE_COLUMNS].tolist())


def test_sequence_fits_get_nan_sample_columns():
    names = pgm.datasets.load_names()
    fit = pgm.NGram(2, prior_concentration=2.0).fit(names[::2], method="map", progress=False)
    table = pgm.compare({"bigram": fit}, names[1::2][:300])
    row = table.loc["bigram"]
    assert row[SAMPLE_COLUMNS].isna().all()
    assert math.isfinite(row["heldout_log_prob"]) and math.isfinite(row["train_log_prob"])
    assert row["train_log_prob"] == pytest.approx(fit.log_prob(names[::2]).mean().item())


def test_token_id_sequences_are_scored_without_drawing_what_no_column_uses(monkeypatch):
    """A token-id tensor (M, L) reads as numeric rows, so compare drew M sequences (a
    Transformer's: one pass per token) and then discarded them: no sample column scores
    sequences."""
    fit = pgm.NGram(2, vocab_size=3, prior_concentration=2.0).fit(
        [[0, 1, 2], [2, 1], [1, 1, 0]], method="map")
    monkeypatch.setattr(type(fit), "sample", lambda *a, **k: pytest.fail("drew sequences"))
    row = pgm.compare({"t": fit}, torch.tensor([[0, 1], [2, 2], [1, 0], [0, 0]])).loc["t"]
    assert row[SAMPLE_COLUMNS].isna().all()
    held = torch.tensor([[0, 1], [2, 2], [1, 0], [0, 0]])
    assert row["heldout_log_prob"] == pytest.approx(fit.log_prob(held).mean().item())
    assert math.isfinite(row["heldout_log_prob"])


def test_fewer_held_out_rows_than_the_sample_columns_take_is_said(recwarn):
    """Below metrics.MIN_ROWS held-out rows the sample columns are NaN, with a warning
    that says why (they were NaN in silence); the likelihood columns are still scored.
    Sequence fits, which have no sample columns, get no such warning."""
    x, _ = pgm.datasets.correlated_gaussian(100, dim=2, seed=0)
    fit = pgm.Gaussian(2).fit(x, method="mle", seed=0, progress=False, num_steps=50)
    with pytest.warns(UserWarning, match=r"the sample-based columns \(mmd, mmd_se, c2st, "
                                         r"c2st_se\) need at least 4 held-out rows, got 3: "
                                         r"they are NaN"):
        row = pgm.compare({"g": fit}, x[:3]).loc["g"]
    assert row[SAMPLE_COLUMNS].isna().all()
    assert row["heldout_log_prob"] == pytest.approx(fit.log_prob(x[:3]).mean().item())
    recwarn.clear()
    assert pgm.compare({"g": fit}, x[:4]).loc["g", SAMPLE_COLUMNS].notna().all()
    tokens = pgm.NGram(2, vocab_size=3).fit([[0, 1], [2]], method="mle")
    assert pgm.compare({"t": tokens}, torch.tensor([[0, 1], [2, 2]])).loc[
        "t", SAMPLE_COLUMNS].isna().all()
    assert not [w for w in recwarn if "sample-based" in str(w.message)]


def test_sample_columns_of_many_held_out_rows_use_a_seeded_subset(monkeypatch):
    """Above compare.SAMPLE_ROWS held-out rows (MMD and C2ST cost M^2: 40,000 rows took a
    minute a fit, 8.6 million would take weeks) the sample columns score that many rows
    drawn with the seed, exactly as compare on those rows alone scores them; a
    conditional fit's conditions are subset alike. The likelihood columns use every row."""
    compare_module = importlib.import_module("pyro_genmodels.compare")  # not pgm.compare
    x, _ = pgm.datasets.correlated_gaussian(160, dim=2, seed=0)
    c = (x[:, :1] > 0).double()
    fit = pgm.Gaussian(2).fit(x[:60], method="mle", seed=0, progress=False)
    with pgm._rng.seeded(0):
        cond = pgm.Flow(2, context_dim=1, hidden=(8,), num_transforms=1).double()
    cond_fit = cond.fit(x[:60], c=c[:60], method="mle", num_steps=3, seed=0, progress=False)
    fits, held, held_c = {"g": fit, "cond": cond_fit}, x[60:], c[60:]
    whole = pgm.compare(fits, held, c=held_c, loo=False, train=False, seed=3)
    monkeypatch.setattr(compare_module, "SAMPLE_ROWS", 40)
    part = pgm.compare(fits, held, c=held_c, loo=False, train=False, seed=3)
    keep = torch.randperm(100, generator=torch.Generator().manual_seed(3))[:40].sort().values
    assert len(keep) == 40
    subset = pgm.compare(fits, held[keep], c=held_c[keep], loo=False, train=False, seed=3)
    for label in fits:
        assert part.loc[label, SAMPLE_COLUMNS].tolist() == pytest.approx(
            subset.loc[label, SAMPLE_COLUMNS].tolist(), rel=1e-12)
        assert part.loc[label, SAMPLE_COLUMNS].tolist() != pytest.approx(
            whole.loc[label, SAMPLE_COLUMNS].tolist(), rel=1e-6)
        assert part.loc[label, "heldout_log_prob"] == whole.loc[label, "heldout_log_prob"]


def test_arviz_warnings_name_the_fit_in_one_sentence():
    """ArviZ's LOO/WAIC warnings name no fit and run to four sentences; compare says
    which fit each is about, in the first sentence."""
    x, _ = pgm.datasets.correlated_gaussian(8, dim=3, seed=0)
    post = pgm.Gaussian(3).fit(x, method="nuts", num_samples=100, warmup_steps=100,
                               num_chains=1, seed=0, progress=False)
    with pytest.warns(UserWarning) as caught:
        table = pgm.compare({"nuts": post}, x)
    said = [str(w.message) for w in caught]
    assert "fits['nuts']: Estimated shape parameter of Pareto distribution is greater " \
           "than 0.50 for one or more samples (ArviZ)" in said
    assert table.loc["nuts", "pareto_k_max"] > 0.5
    assert not [m for m in said if "You should consider" in m]
    # said where the user called compare
    assert all(w.filename == __file__ for w in caught if str(w.message).startswith("fits["))


def test_bits_per_dim_column_and_a_condition_for_the_conditional_fits_only():
    """``bin_width`` adds bits/dim computed as Fit.bits_per_dim computes it on the
    already dequantized held-out rows; ``c`` reaches the conditional fit only, so p(x | c)
    and p(x) sit in one table; a diffusion fit appears twice, bound and ODE."""
    levels = torch.randint(0, 8, (150, 2)).double()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        rows = levels + torch.rand_like(levels)
    c = torch.nn.functional.one_hot((levels[:, 0] > 3).long(), 2).double()
    gauss = pgm.Gaussian(2).fit(rows[:100], method="mle", seed=0, progress=False)
    with pgm._rng.seeded(0):
        cond = pgm.Diffusion(2, timesteps=8, hidden=(8,), context_dim=2).double()
        plain = pgm.Diffusion(2, timesteps=8, hidden=(8,)).double()
    cond_fit = cond.fit(rows[:100], c=c[:100], method="mle", num_steps=3, seed=0,
                        progress=False)
    plain_fit = plain.fit(rows[:100], method="mle", num_steps=3, seed=0, progress=False)
    table = pgm.compare({"gaussian": gauss, "cond": cond_fit, "bound": plain_fit,
                         "ode": plain_fit.using(estimator="ode")},
                        rows[100:], c=c[100:], bin_width=0.5, samples=False)
    assert table.loc["gaussian", "bits_per_dim"] == pytest.approx(
        gauss.bits_per_dim(rows[100:], bin_width=0.5, dequantize=False), rel=1e-9)
    assert table.loc["cond", "heldout_log_prob"] == pytest.approx(
        float(cond_fit.log_prob(rows[100:], c=c[100:]).mean()), rel=1e-9)
    assert list(table["log_prob_kind"]) == ["exact", "bound", "bound", "estimate"]
    assert table.loc["ode", "heldout_log_prob"] == pytest.approx(
        float(plain_fit.probability_flow(rows[100:]).log_prob.mean()), rel=1e-9)
    assert plain_fit.log_prob_kind == "bound"  # using() returned another view
    # AIC and BIC are of an exact log-likelihood: not of a bound or an estimate
    assert math.isfinite(table.loc["gaussian", "aic"])
    assert table[["aic", "bic"]].loc[["cond", "bound", "ode"]].isna().all().all()


class CountingFit(pgm.Fit):
    """A Gaussian fit whose log_prob adds fresh noise on every call (an estimate such as a
    VAE's IWAE) and counts the calls."""

    calls = 0

    def log_prob(self, x, *, c=None):
        type(self).calls += 1
        lp = super().log_prob(x, c=c)
        return lp + 0.1 * torch.randn(lp.shape, dtype=lp.dtype)


def test_one_heldout_evaluation_serves_true_kl_and_train_false_skips_the_training_rows():
    x, truth = pgm.datasets.correlated_gaussian(200, dim=2, seed=0)
    heldout, _ = pgm.datasets.correlated_gaussian(300, dim=2, seed=1)
    fit = pgm.Gaussian(2).fit(x, method="mle", seed=0, progress=False, num_steps=200)
    noisy = copy.copy(fit)
    noisy.__class__ = CountingFit
    CountingFit.calls = 0
    table = pgm.compare({"noisy": noisy}, heldout, truth=truth, samples=False, train=False)
    assert CountingFit.calls == 1  # held-out columns and true_kl from the same draws
    row = table.loc["noisy"]
    # so the identity true_kl = mean log p_data - mean log p_fit holds to rounding
    assert row["true_kl"] == pytest.approx(
        float(truth.log_prob(heldout.double()).mean()) - row["heldout_log_prob"], abs=1e-5)  # float32 means; a second
    # evaluation would differ by about 0.1 / sqrt(300) = 0.006
    for column in ("train_log_prob", "aic", "bic"):
        assert math.isnan(row[column])
    full = pgm.compare({"fit": fit}, heldout, truth=truth, samples=False)
    assert full.loc["fit", "train_log_prob"] == pytest.approx(
        float(fit.log_prob(x).mean()), rel=1e-6)
    assert not math.isnan(full.loc["fit", "aic"])
