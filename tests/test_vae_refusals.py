"""VAE refusals found by a new-user trial: dequantized bits per dimension that would leave a
bounded support, labels from pandas, the wording of a wrong label count in ``sample``, and
``hidden`` beside a custom encoder and decoder."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded
from pyro_genmodels.models.vae import LIKELIHOODS, VAE
from pyro_genmodels.models.vae_parts import _labels


def _grey(dtype):
    x, y = pgm.datasets.load_digits(dtype=dtype)  # grey levels 0..16
    return x, y


def _cb_fit(x):
    return VAE(64, 2, hidden=(8,), likelihood="continuous_bernoulli").fit(
        x, method="mle", num_steps=5, seed=0, progress=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dequantized_bits_per_dim_refuses_rows_the_noise_pushes_out_of_0_1(dtype, monkeypatch):
    x, _ = _grey(dtype)
    fit = _cb_fit(x[:200] / 16)
    held = x[200:210] / 16  # inside [0, 1], the largest value 1.0
    monkeypatch.setattr(fit.model, "iwae", lambda *a, **k: pytest.fail("work was done"))
    for width, reach in ((1.0, "2"), (1 / 16, "1.0625")):
        with pytest.raises(ValueError) as err:
            fit.bits_per_dim(held, bin_width=width)
        msg = str(err.value)
        assert "adds uniform noise U[0, bin_width) to each value" in msg
        assert "support [0, 1]" in msg and "largest value is 1 (row " in msg
        assert f"bin_width={width:g}" in msg and f"would reach {reach}." in msg
        assert "x / 17 with bin_width=1/17" in msg and "dequantize=False" in msg
        assert "expects values in [0, 1]" not in msg  # not the user's values' fault
    monkeypatch.undo()
    # what the message proposes works (in float32 too: 16/17 + the noise stays <= 1)
    bpd = fit.bits_per_dim(x[200:210] / 17, bin_width=1 / 17)
    assert np.isfinite(bpd)
    assert np.isfinite(fit.bits_per_dim(held, dequantize=False))
    # the values themselves are still checked first, as log_prob checks them
    with pytest.raises(ValueError, match=r"expects values in \[0, 1\] \(rescale first\); x "
                                         r"has \d"):
        fit.bits_per_dim(x[200:210], bin_width=1 / 17)


def test_every_likelihood_is_bounded_discrete_or_real_for_dequantization():
    """A new likelihood must say where dequantization noise may take its data."""
    from pyro_genmodels.models.vae_parts import BOUNDED

    discrete, real = {"bernoulli", "categorical"}, {"gaussian"}
    assert set(LIKELIHOODS) == discrete | real | set(BOUNDED)
    x = torch.rand(50, 3) * 10
    fit = VAE(3, 2, hidden=(4,), likelihood="gaussian").fit(
        x, method="mle", num_steps=2, seed=0, progress=False)
    assert np.isfinite(fit.bits_per_dim(x, bin_width=1.0))  # the real line: no refusal
    xb = (x > 5).float()
    fit = VAE(3, 2, hidden=(4,)).fit(xb, method="mle", num_steps=2, seed=0, progress=False)
    with pytest.raises(ValueError, match="pass dequantize=False"):
        fit.bits_per_dim(xb)


def test_pandas_labels_give_no_warning_and_writable_arrays_are_not_copied():
    x, y = pgm.datasets.load_digits(binarize=True)
    labels = pd.Series(y[:60].numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "NumPy array is not writable"
        fit = VAE(64, 2, hidden=(8,), num_classes=10).fit(
            x[:60], c=labels, method="mle", num_steps=2, seed=0, progress=False)
        assert fit.log_prob(x[:60], c=labels, num_particles=2).shape == (60,)
        read_only = np.arange(5)
        read_only.flags.writeable = False
        assert _labels(read_only, 10).tolist() == [0, 1, 2, 3, 4]
    own = np.arange(5)
    assert _labels(own, 10).data_ptr() == own.__array_interface__["data"][0]  # no copy


def test_a_wrong_label_count_names_draws_in_sample_and_data_rows_elsewhere():
    x, y = pgm.datasets.load_digits(binarize=True)
    fit = VAE(64, 2, hidden=(8,), num_classes=10).fit(
        x[:60], c=y[:60], method="mle", num_steps=2, seed=0, progress=False)
    with pytest.raises(ValueError, match=r"c has 2 labels but there are 5 draws: expected "
                                         r"one label per row \(or a single int\)"):
        fit.sample(5, c=[1, 2])
    with pytest.raises(ValueError, match="c has 2 labels but there are 5 data rows"):
        fit.log_prob(x[:5], c=[1, 2])
    with pytest.raises(ValueError, match=r"c has 2 labels but there are 5 codes \(rows of z"):
        fit.decode(torch.zeros(5, 2), c=[1, 2])
    assert fit.sample(5, c=[1, 2, 3, 4, 5], seed=0).shape == (5, 64)


def test_hidden_beside_a_custom_encoder_and_decoder_is_refused():
    nets = {"encoder": nn.Linear(5, 4), "decoder": nn.Linear(2, 5)}
    for hidden in ((8,), 8, ()):  # another width, or linear
        with pytest.raises(ValueError, match=r"hidden shapes the default encoder and decoder "
                                             r"only.*expected no hidden \(or the default "
                                             r"\(256,\)\).*but got hidden="
                                             + repr(hidden).replace("(", r"\(")
                                             .replace(")", r"\)")):
            VAE(5, 2, hidden=hidden, **nets)
    # the default is taken, so a fit saved with its config (hidden [256]) rebuilds and loads
    model = VAE(5, 2, **nets)
    assert model.get_config()["hidden"] == [256]
    assert VAE(5, 2, hidden=[256], **nets).get_config() == model.get_config()
    # one custom network: hidden shapes the other, as documented
    half = VAE(5, 2, hidden=(8,), encoder=nets["encoder"])
    assert [m.out_features for m in half.decoder if isinstance(m, nn.Linear)] == [8, 5]
    half = VAE(5, 2, hidden=(8,), decoder=nets["decoder"])
    assert [m.out_features for m in half.encoder if isinstance(m, nn.Linear)] == [8, 4]
    assert half.get_config()["hidden"] == [8]


def test_a_fit_saved_with_custom_networks_and_an_unused_hidden_still_loads(tmp_path):
    """Before ``hidden`` beside a custom encoder and decoder was refused, such a fit saved
    it as given (unused): it loads into the model built as now, with the same weights."""
    import json

    def nets():
        with seeded(1):
            return {"encoder": nn.Linear(4, 4), "decoder": nn.Linear(2, 4)}

    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    fit = VAE(4, 2, likelihood="gaussian", **nets()).fit(x, method="mle", num_steps=3,
                                                         seed=0, progress=False)
    fit.save(tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "fit.json").read_text())
    meta["config"]["hidden"] = [16]  # as the older version saved hidden=(16,)
    (tmp_path / "run" / "fit.json").write_text(json.dumps(meta))
    again = pgm.load(tmp_path / "run", model=VAE(4, 2, likelihood="gaussian", **nets()))
    assert torch.equal(again.log_prob(x, seed=0), fit.log_prob(x, seed=0))


def test_the_default_hidden_is_still_256_and_builds_the_same_networks():
    with seeded(0):
        default = VAE(5, 2)
    with seeded(0):
        explicit = VAE(5, 2, hidden=(256,))
    assert default.hidden == (256,) and default.get_config()["hidden"] == [256]
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(),
                                                   explicit.state_dict().values()))
