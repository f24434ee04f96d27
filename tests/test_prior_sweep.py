"""The classic MLE-vs-MAP picture, and the compare table's information criteria."""

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

import pyro_genmodels as pgm

matplotlib.use("Agg")

D = 10


def stein_data(n, seed):
    """x_i ~ N(mu, I) with mu ~ N(0, 0.5^2 I) fixed: the mean is small against the noise,
    so with few points shrinking it toward 0 (MAP) beats the sample mean (MLE)."""
    g = torch.Generator().manual_seed(1234)
    mu = 0.5 * torch.randn(D, generator=g, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    return mu + torch.randn(n, D, generator=g, dtype=torch.float64)


@pytest.mark.cost(16)
@pytest.mark.slow  # two sweeps of 5 fits of 800 steps, 5000 held-out rows: 16 s
def test_little_data_map_beats_mle_and_map_approaches_mle():
    model = pgm.Gaussian(D, covariance=torch.eye(D, dtype=torch.float64))
    heldout = stein_data(5000, seed=99)
    scales = [0.1, 0.5, 2.0, 1e3]
    small = pgm.prior_sweep(model, stein_data(3, seed=0), prior_scales=scales,
                            heldout=heldout, num_steps=800, plot=True)
    assert list(small["method"]) == ["map"] * 4 + ["mle"]
    assert math.isinf(small["prior_scale"].iloc[-1])
    mle = small.iloc[-1]
    best = small[small["method"] == "map"].sort_values("heldout_log_prob").iloc[-1]
    # expected gain ~ D/2 (1/N - s^2/(N s^2 + 1)) ~ 1 nat; far beyond 4 se of the difference
    gap = best["heldout_log_prob"] - mle["heldout_log_prob"]
    assert gap > 4 * math.hypot(best["heldout_log_prob_se"], mle["heldout_log_prob_se"])
    # a very wide prior is the MLE
    wide = small[small["prior_scale"] == 1e3].iloc[0]
    assert wide["heldout_log_prob"] == pytest.approx(mle["heldout_log_prob"], abs=1e-3)
    # with much more data the best MAP and the MLE nearly coincide
    big = pgm.prior_sweep(model, stein_data(2000, seed=0), prior_scales=scales,
                          heldout=heldout, num_steps=800)
    big_gap = (big[big["method"] == "map"]["heldout_log_prob"].max()
               - big.iloc[-1]["heldout_log_prob"])
    assert abs(big_gap) < 0.01 < gap
    fig = small.attrs["figure"]
    assert fig.axes[0].get_xscale() == "log"


def test_a_sweep_on_data_map_cannot_fit_fails_with_maps_refusal():
    """4 rows in 6 dimensions: no MLE, and no MAP either (the prior does not keep the
    covariance positive definite; the sweep's map rows once scored a covariance that
    collapsed further with every step), so the sweep stops with map's refusal."""
    x, _ = pgm.datasets.correlated_gaussian(4, dim=6, seed=0)
    heldout, _ = pgm.datasets.correlated_gaussian(200, dim=6, seed=1)
    with pytest.raises(ValueError, match=r"^The map covariance is singular with N=4 points"):
        pgm.prior_sweep(pgm.Gaussian(6), x, prior_scales=[1.0, 10.0], heldout=heldout,
                        num_steps=300)


def test_sweep_validation(monkeypatch):
    x, _ = pgm.datasets.correlated_gaussian(20, dim=2, seed=0)
    with pytest.raises(ValueError, match="prior_scales"):
        pgm.prior_sweep(pgm.Gaussian(2), x, prior_scales=[], heldout=x)
    with pytest.raises(ValueError, match=r"prior_scales\[1\]"):
        pgm.prior_sweep(pgm.Gaussian(2), x, prior_scales=[1.0, -1.0], heldout=x)
    # a held-out set the fits cannot score is refused before the first fit, by its name
    calls = []
    real_fit = pgm.Gaussian.fit
    monkeypatch.setattr(pgm.Gaussian, "fit",
                        lambda self, *a, **k: calls.append(1) or real_fit(self, *a, **k))
    with pytest.raises(ValueError, match="heldout has the wrong number of columns: "
                                         "expected 2, got 1"):
        pgm.prior_sweep(pgm.Gaussian(2), x, prior_scales=[1.0], heldout=x[:, :1])
    assert calls == []


def test_a_network_familys_sweep_is_reproducible_and_its_fits_start_alike():
    """Review: the sweep built each Flow under the global RNG, so the same call with the
    same seed gave other tables (map train_log_prob -3.0199, then -2.9847). Each member
    is built under the seed now: two calls give the same table, and every fit starts
    from the same weights (the sweep differs in the prior alone)."""
    x, held = pgm.datasets.toy("banana").sample((300,)), pgm.datasets.toy("banana").sample((50,))
    kw = dict(prior_scales=[1.0, 0.1], heldout=held, num_steps=5, seed=3)
    starts = []
    fit = pgm.Flow.fit

    def recording(self, *args, **kwargs):
        starts.append([p.detach().clone() for p in self.parameters()])
        return fit(self, *args, **kwargs)

    model = pgm.Flow(2, hidden=(8,), num_transforms=1)
    a = pgm.prior_sweep(model, x, **kw)
    b = pgm.prior_sweep(model, x, **kw)
    pd.testing.assert_frame_equal(a, b)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pgm.Flow, "fit", recording)
        pgm.prior_sweep(model, x, **kw)
    assert len(starts) == 3
    assert all(torch.equal(p, q) for s in starts[1:] for p, q in zip(starts[0], s))


def test_compare_information_criteria_waic_and_true_kl():
    truth = pgm.datasets.toy("banana")
    torch.manual_seed(0)
    x, heldout = truth.sample((300,)), truth.sample((2000,))
    model = pgm.Gaussian(2)
    fits = {"mle": model.fit(x, method="mle", seed=0, progress=False, num_steps=600),
            "vi": model.fit(x, method="vi", seed=0, progress=False, num_steps=800,
                            num_posterior_samples=200)}
    table = pgm.compare(fits, heldout, truth=truth)
    k, n = 5, 300
    ll = fits["mle"].log_prob(x).sum().item()
    assert table.loc["mle", "aic"] == pytest.approx(2 * k - 2 * ll, rel=1e-6)
    assert table.loc["mle", "bic"] == pytest.approx(k * math.log(n) - 2 * ll, rel=1e-6)
    assert math.isnan(table.loc["vi", "aic"]) and math.isfinite(table.loc["vi", "elpd_waic"])
    assert math.isnan(table.loc["mle", "elpd_waic"])
    # true KL = E_truth[log p - log q]: positive (a Gaussian cannot fit the banana) and
    # consistent with the independent estimate from the divergences module
    kl = pgm.divergences.kl(truth, fits["mle"], num_samples=20000, seed=0)
    row = table.loc["mle"]
    assert row["true_kl"] > 4 * row["true_kl_se"]
    assert abs(row["true_kl"] - kl.estimate) < 4 * math.hypot(row["true_kl_se"], kl.stderr)


# ---------------------------------------------------------------- sequence models
AR = dict(hidden_size=8, embedding_dim=4)
NAMES = pgm.datasets.load_names()
TRAIN, HELDOUT = NAMES[::40][:40], NAMES[1::40][:15]


def _recording_fits(monkeypatch):
    """The fits prior_sweep makes, recorded as AutoregressiveModel.fit returns them."""
    from pyro_genmodels.models.sequence import AutoregressiveModel

    fits = []
    real_fit = AutoregressiveModel.fit
    monkeypatch.setattr(AutoregressiveModel, "fit",
                        lambda self, *a, **k: fits.append(real_fit(self, *a, **k)) or fits[-1])
    return AutoregressiveModel, fits


def _check_sequence_table(table, fits, score_train, score_heldout):
    assert list(table["method"]) == ["map", "map", "mle"] and len(fits) == 3
    cols = ["heldout_log_prob", "heldout_log_prob_se", "train_log_prob"]
    assert np.isfinite(table[cols].to_numpy()).all(), table
    assert (table["error"] == "").all()
    for (_, row), fit in zip(table.iterrows(), fits):
        assert fit.method == row["method"]
        # the oracle: the user's own sequences scored again by the fit
        assert row["train_log_prob"] == pytest.approx(score_train(fit).mean().item(),
                                                      rel=1e-5)
        assert row["heldout_log_prob"] == pytest.approx(score_heldout(fit).mean().item(),
                                                        rel=1e-5)


@pytest.mark.parametrize("vocab", [None, "abcdefghijklmnopqrstuvwxyz"])
def test_sweep_autoregressive_on_text(monkeypatch, vocab):
    """Without vocab the fits build it from x (and heldout is checked against it before
    any fit); with vocab the fits keep it. The train column is fit.log_prob of the
    training strings, not of the fit's encoded, end-padded copy of them."""
    ar, fits = _recording_fits(monkeypatch)
    heldout = [s for s in HELDOUT if set(s) <= set("".join(TRAIN))]
    assert len(heldout) >= 10
    table = pgm.prior_sweep(ar(vocab=vocab, **AR), TRAIN, prior_scales=[1.0, 0.1],
                            heldout=heldout, num_steps=5)
    assert list(table["prior_scale"]) == [0.1, 1.0, math.inf]
    _check_sequence_table(table, fits, lambda f: f.log_prob(TRAIN),
                          lambda f: f.log_prob(heldout))
    expected = vocab or "".join(sorted(set("".join(TRAIN))))
    assert all(f.vocab == expected for f in fits)


def test_sweep_autoregressive_on_token_ids(monkeypatch):
    """Token ids, padded with lengths (a data option, passed to every fit) and held out
    as a list of sequences of varying length."""
    ar, fits = _recording_fits(monkeypatch)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 5, (30, 6), generator=g)
    lengths = torch.randint(1, 7, (30,), generator=g)
    heldout = [torch.randint(0, 5, (n,), generator=g).tolist() for n in range(1, 11)]
    table = pgm.prior_sweep(ar(vocab_size=5, **AR), x, prior_scales=[0.1, 1.0],
                            heldout=heldout, num_steps=5, lengths=lengths)
    _check_sequence_table(table, fits, lambda f: f.log_prob(x, lengths=lengths),
                          lambda f: f.log_prob(heldout))
    # full-length token rows are held-out data too
    table = pgm.prior_sweep(ar(vocab_size=5, **AR), x, prior_scales=[0.1], heldout=x,
                            num_steps=5)
    assert np.isfinite(table["heldout_log_prob"].to_numpy()).all()


def test_sweep_arguments_are_checked_in_words_before_any_fit(monkeypatch):
    """A number for the list of scales ("'float' object is not iterable"), a string (read
    as its characters) and a method (given twice to fit) were errors of Python's."""
    ar, fits = _recording_fits(monkeypatch)
    for bad in (1.0, "1"):
        with pytest.raises(TypeError, match=r"^Expected prior_scales to be a list of "
                                            r"positive numbers, but got " + repr(bad)):
            pgm.prior_sweep(ar(**AR), ["ab"], prior_scales=bad, heldout=["ba"], num_steps=5)
    with pytest.raises(TypeError, match=r"^prior_sweep chooses the method itself \('map' "
                                        r"at each prior scale, then 'mle'\), but got "
                                        r"method='mle'$"):
        pgm.prior_sweep(ar(**AR), ["ab"], prior_scales=[1.0], heldout=["ba"], method="mle")
    assert fits == []


def test_an_option_map_or_mle_refuses_and_bad_plot_arguments_fail_before_any_fit(
        monkeypatch):
    """A GaussianMixture's mle is EM (no ``lr``) and its map is gradient-based (no
    ``tol``): the option used to surface after every map fit, as the mle row's "error",
    which is for an MLE that does not exist. ``plot="no"`` was taken as True and
    ``ax="foo"`` failed after the fits."""
    fits = []
    real_fit = pgm.GaussianMixture.fit
    monkeypatch.setattr(pgm.GaussianMixture, "fit",
                        lambda self, *a, **k: fits.append(k) or real_fit(self, *a, **k))
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    sweep = lambda **kw: pgm.prior_sweep(pgm.GaussianMixture(2, 2), x,  # noqa: E731
                                         prior_scales=[1.0], heldout=x, **kw)
    for option, method in (("lr", "mle"), ("tol", "map")):
        with pytest.raises(ValueError, match=rf"^prior_sweep passes its options to every "
                                             rf"fit, map and mle: Unknown option\(s\) "
                                             rf"\['{option}'\] for method '{method}'"):
            sweep(num_steps=5, **{option: 0.01})
    with pytest.raises(TypeError, match="Expected plot to be True or False, but got 'no'"):
        sweep(plot="no")
    with pytest.raises(TypeError, match="Expected ax to be matplotlib axes, but got 'foo'"):
        sweep(plot=True, ax="foo")
    assert fits == []


def test_sweep_autoregressive_refuses_unknown_heldout_tokens_before_any_fit(monkeypatch):
    ar, fits = _recording_fits(monkeypatch)
    train = ["anna", "bob", "hannah", "otto"]
    # no vocab: the vocabulary is the training characters
    with pytest.raises(ValueError, match=r"AutoregressiveModel is completed from x .*"
                                         r"vocab=.*heldout\[1\] = 'nab!' has the character "
                                         r"'!', which is not in the vocabulary 'abhnot'"):
        pgm.prior_sweep(ar(**AR), train, prior_scales=[1.0], heldout=["bob", "nab!"],
                        num_steps=5)
    with pytest.raises(TypeError, match="heldout must be a list of strings"):
        pgm.prior_sweep(ar(**AR), train, prior_scales=[1.0], heldout=torch.zeros(2, 3),
                        num_steps=5)
    # a given vocab, and token ids
    with pytest.raises(ValueError, match=r"heldout\[0\] = 'anna' has the character 'n', "
                                         r"which is not in the vocabulary 'abo'"):
        pgm.prior_sweep(ar(vocab="abo", **AR), ["bob"], prior_scales=[1.0],
                        heldout=["anna"], num_steps=5)
    with pytest.raises(ValueError, match=r"heldout\[1\] has the token id 7, which is not "
                                         r"in the vocabulary \[0, 5\)"):
        pgm.prior_sweep(ar(vocab_size=5, **AR), [[0, 1], [2]], prior_scales=[1.0],
                        heldout=[[1], [7]], num_steps=5)
    # bad training data is refused by its own name, before any fit too
    with pytest.raises(TypeError, match="data must be a list of strings"):
        pgm.prior_sweep(ar(**AR), "anna", prior_scales=[1.0], heldout=["anna"],
                        num_steps=5)
    assert fits == []


def test_sweep_a_conditional_model_on_held_out_pairs(monkeypatch):
    """A conditional model is swept with c= (passed to every fit) and held-out rows as the
    pair (x_val, c_val), as validation= takes them; the oracle is each fit's own
    log_prob of the held-out names given their labels. The pair and its conditions are
    checked before the first fit."""
    ar, fits = _recording_fits(monkeypatch)
    labels = [len(s) % 2 for s in TRAIN]  # odd or even length
    heldout = [s for s in HELDOUT if set(s) <= set("".join(TRAIN))]
    held_labels = [len(s) % 2 for s in heldout]
    table = pgm.prior_sweep(ar(num_classes=2, **AR), TRAIN, c=labels, prior_scales=[1.0, 0.1],
                            heldout=(heldout, held_labels), num_steps=5)
    _check_sequence_table(table, fits, lambda f: f.log_prob(TRAIN, c=labels),
                          lambda f: f.log_prob(heldout, c=held_labels))
    fits.clear()
    with pytest.raises(ValueError, match=r"AutoregressiveModel is conditional: expected "
                                         r"heldout to be the pair \(x_val, c_val\)"):
        pgm.prior_sweep(ar(num_classes=2, **AR), TRAIN, c=labels, prior_scales=[1.0],
                        heldout=heldout, num_steps=5)
    with pytest.raises(ValueError, match=r"heldout=\(x_val, c_val\): c_val: "):
        pgm.prior_sweep(ar(num_classes=2, **AR), TRAIN, c=labels, prior_scales=[1.0],
                        heldout=(heldout, held_labels[:2]), num_steps=5)
    assert fits == []  # refused before any fit
