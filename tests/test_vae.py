"""VAE oracles: PPCA (linear decoder) has an exact likelihood that the IWAE estimate
approaches as K grows; MAP = MLE + L2 on the decoder weights term by term; IWAE with
K = 1 is the ELBO; the Pyro program and the direct estimates agree; conditional
generation; every likelihood; clear errors; the example and the benchmark run."""

import io
import json
import math
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from torch import nn

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded
from pyro_genmodels.infer import FlatPriors
from pyro_genmodels.models.vae import VAE, VAEFit
from tests.printed import agrees, bounds, grab, load_script, positive_finite, quotient

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These networks are tiny: intra-op threads only add contention (on a loaded 2-core
    machine the default threads made this file five times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)



def _digits(n=None):
    x, y = pgm.datasets.load_digits(binarize=True)
    return (x, y) if n is None else (x[:n], y[:n])


def _linear_vae(dim, latent, **kw):
    with seeded(0):
        return VAE(dim, latent, likelihood="gaussian", encoder=nn.Linear(dim, 2 * latent),
                   decoder=nn.Linear(latent, dim), standardize=False, **kw).double()


def _ppca_data(n, seed):
    """Data from a 5-D PPCA with a 2-D latent (fixed W, b, s = 0.5)."""
    g = torch.Generator().manual_seed(11)
    w = torch.randn(5, 2, generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return z @ w.T + b + 0.5 * torch.randn(n, 5, generator=g, dtype=torch.float64)


def _exact_ppca_log_lik(fit, x):
    """log N(x; b, W W^T + s^2 I) from the trained linear decoder."""
    dec = fit.model.decoder
    w, b, s = dec.weight.detach(), dec.bias.detach(), fit.model.scale.detach()
    cov = w @ w.T + s**2 * torch.eye(w.shape[0], dtype=w.dtype)
    return torch.distributions.MultivariateNormal(b, covariance_matrix=cov).log_prob(x)


# ---------------------------------------------------------------------- oracle 1: PPCA
def test_linear_gaussian_vae_is_ppca_and_iwae_converges_to_the_exact_likelihood():
    x, held = _ppca_data(500, 0), _ppca_data(100, 1)
    fit = _linear_vae(5, 2).fit(x, method="mle", seed=0, progress=False, num_steps=600,
                                lr=2e-2, batch_size=None, jit=True)
    assert isinstance(fit, VAEFit) and fit.log_prob_kind == "estimate"
    # the learned marginal is close to the truth's (s = 0.5): a sanity check of training
    assert fit.model.scale.item() == pytest.approx(0.5, abs=0.1)
    exact = _exact_ppca_log_lik(fit, held).mean()
    assert (fit.log_prob(held, num_particles=1000).mean() - exact).abs() < 0.1

    # the same decoder with a worse encoder (posterior means shifted by 0.2; the posterior
    # sd is about 0.2): a real gap at K = 1 that importance weighting closes
    with torch.no_grad():
        fit.model.encoder.bias[:2] += 0.2
    ks, repeats = (1, 10, 100, 1000), 8
    means = torch.empty(len(ks), repeats, dtype=torch.float64)
    for i, k in enumerate(ks):
        for r in range(repeats):
            means[i, r] = fit.log_prob(held, num_particles=k, seed=r).mean()
    avg, se = means.mean(1), means.std(1) / math.sqrt(repeats)
    # K = 1000: within 0.1 nats of log p(x) (per point, averaged over 100 points)
    assert (avg[-1] - exact).abs() < 0.1
    for i in range(len(ks) - 1):
        # never decreases in expectation: a drop beyond 3 se of the difference fails
        assert avg[i + 1] > avg[i] - 3 * torch.hypot(se[i], se[i + 1])
    # a lower bound in expectation: never above log p(x) beyond 3 se
    assert (avg <= exact + 3 * se + 1e-12).all()
    # and the gap closes: K = 1 (the ELBO) is below K = 1000 by more than the noise
    assert avg[-1] - avg[0] > 3 * torch.hypot(se[0], se[-1])
    assert avg[0] < exact - 0.3


# ---------------------------------------------------------------------- oracle 2: MAP = MLE + L2
def test_map_objective_is_mle_plus_l2_on_the_decoder_weights():
    torch.manual_seed(0)
    x = _ppca_data(40, 2)
    s = 0.3
    with seeded(0):
        model = VAE(5, 2, likelihood="gaussian", hidden=(8,), prior_scale=s).double()
    z = torch.randn(40, 2, dtype=torch.float64)
    cond = poutine.condition(model.model, data={"z": z})
    joint = poutine.trace(cond).get_trace(x).log_prob_sum()
    lik = poutine.trace(FlatPriors(model.prior_sites)(cond)).get_trace(x).log_prob_sum()
    w = torch.cat([p.reshape(-1) for p in model.decoder.parameters()])
    penalty = w.pow(2).sum() / (2 * s**2) + w.numel() / 2 * math.log(2 * math.pi * s**2)
    assert torch.allclose(joint, lik - penalty, rtol=1e-10)
    # the likelihood part is log p(z) + log p(x | z), term by term
    prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum()
    out = model.decoder(z)
    obs = torch.distributions.Normal(out, model.scale).log_prob(x).sum()
    assert torch.allclose(lik, prior + obs, rtol=1e-10)
    # the two training objectives (negative ELBOs) differ by exactly the penalty
    with seeded(3):
        loss_map = Trace_ELBO().loss(model.model, model.local_guide, x)
    with seeded(3):
        loss_mle = Trace_ELBO().loss(FlatPriors(model.prior_sites)(model.model),
                                     model.local_guide, x)
    assert loss_map - loss_mle == pytest.approx(penalty.item(), rel=1e-10)
    # the encoder carries no prior: only decoder weights are phi
    assert model.prior_sites == ("weight_prior",)
    # and a tight prior shrinks the trained decoder weights
    opts = dict(seed=0, progress=False, num_steps=200, batch_size=None, lr=1e-2, jit=True)
    with seeded(0):
        tight = VAE(5, 2, likelihood="gaussian", hidden=(8,), prior_scale=0.05).double()
    mle, map_ = tight.fit(x, method="mle", **opts), tight.fit(x, method="map", **opts)
    norm = lambda f: torch.cat([p.reshape(-1) for p in f.model.decoder.parameters()]).norm()  # noqa
    assert norm(map_) < 0.5 * norm(mle)


# ---------------------------------------------------------------------- oracle 3: IWAE vs ELBO
@pytest.fixture(scope="module")
def digits_fit():
    x, y = _digits(600)
    with seeded(0):
        model = VAE(64, 4, hidden=(32,))
    return model.fit(x[:500], method="mle", seed=0, progress=False, num_steps=300,
                     batch_size=100, lr=3e-3, jit=True), x[500:]


def test_program_and_direct_estimates_agree(digits_fit):
    fit, x = digits_fit
    model = fit.model
    guide_tr = poutine.trace(model.local_guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(model.model, trace=guide_tr)).get_trace(x)
    z = guide_tr.nodes["z"]["value"]
    per_row = (model_tr.nodes["x"]["fn"].log_prob(x) + model_tr.nodes["z"]["fn"].log_prob(z)
               - guide_tr.nodes["z"]["fn"].log_prob(z))
    assert torch.allclose(model.log_weights(x, z=z[None])[0], per_row, atol=1e-4)


def test_iwae_with_one_particle_is_the_elbo_and_more_particles_tighten_it(digits_fit):
    fit, x = digits_fit
    # same draws: the K = 1 estimate *is* the one-sample ELBO
    assert torch.equal(fit.log_prob(x, num_particles=1, seed=4), fit.elbo(x, seed=4))
    # in expectation, over independent draws: equal within 4 se of the difference
    r = 30
    iw1 = torch.stack([fit.log_prob(x, num_particles=1, seed=s).mean() for s in range(r)])
    el = torch.stack([fit.elbo(x, seed=100 + s).mean() for s in range(r)])
    se = math.sqrt((iw1.var() + el.var()).item() / r)
    assert abs((iw1.mean() - el.mean()).item()) < 4 * se
    # log_prob >= elbo on average, by more than the noise
    iw = torch.stack([fit.log_prob(x, num_particles=50, seed=s).mean() for s in range(5)])
    assert iw.mean() - el.mean() > 4 * math.sqrt(iw.var().item() / 5 + el.var().item() / r)
    # estimates are reproducible by default (seed=0) and a seed changes them
    assert torch.equal(fit.log_prob(x), fit.log_prob(x))
    assert not torch.equal(fit.log_prob(x, seed=1), fit.log_prob(x))


def test_bits_per_dim_of_a_bernoulli_vae_scores_the_grid_values(digits_fit):
    """Dequantizing binary digits put them outside the Bernoulli's support, and the error
    named a value (0.496...) the caller never passed; it is refused in words, and
    dequantize=False is -log2 p(x) / D."""
    fit, x = digits_fit
    with pytest.raises(ValueError, match=r"^VAE\(likelihood='bernoulli'\) scores the grid "
                                         r"values themselves: .*pass dequantize=False"):
        fit.bits_per_dim(x[:20])
    assert fit.bits_per_dim(x[:20], dequantize=False) == pytest.approx(
        -fit.log_prob(x[:20]).mean().item() / (64 * math.log(2)), rel=1e-6)  # float32
    # the continuous Bernoulli is a density on [0, 1]: grey levels k/17 dequantized by
    # U[0, 1/17) stay in it, so bits per dimension are computed as for any density
    grey = torch.randint(0, 17, (40, 64)).float() / 17
    cb = VAE(64, 2, likelihood="continuous_bernoulli", hidden=(8,)).fit(
        grey, method="mle", num_steps=2, seed=0, progress=False)
    assert math.isfinite(cb.bits_per_dim(grey, bin_width=1 / 17))


def test_encode_decode_reconstruct_and_sample(digits_fit):
    fit, x = digits_fit
    z = fit.encode(x)
    assert z.shape == (100, 4)
    assert torch.allclose(fit.reconstruct(x), fit.decode(z))
    rec = fit.reconstruct(x)
    assert rec.shape == (100, 64) and ((rec >= 0) & (rec <= 1)).all()
    # reconstructions beat the pixel means (what a code-blind decoder could do)
    assert (rec - x).pow(2).mean() < (x.mean(0) - x).pow(2).mean()
    s = fit.sample(50, seed=0)
    assert s.shape == (50, 64) and set(s.unique().tolist()) <= {0.0, 1.0}
    m = fit.sample(50, seed=0, mean=True)
    assert ((m > 0) & (m < 1)).all()
    assert torch.equal(fit.sample(7, seed=2), fit.sample(7, seed=2))


# ---------------------------------------------------------------------- conditional VAE
def test_conditional_vae_uses_the_label():
    x, y = _digits()
    keep = y < 2  # zeros and ones: very different images
    x, y = x[keep], y[keep]
    with seeded(0):
        model = VAE(64, 2, hidden=(32,), num_classes=2)
    fit = model.fit(x[:300], c=y[:300], method="map", seed=0, progress=False, num_steps=300,
                    batch_size=100, lr=3e-3, jit=True)
    held, labels = x[300:], y[300:]
    right = fit.log_prob(held, c=labels, num_particles=20)
    wrong = fit.log_prob(held, c=1 - labels, num_particles=20)
    diff = right - wrong
    assert diff.mean() > 4 * diff.std() / math.sqrt(len(diff))
    # samples given a class look like that class: nearer its mean image than the other's
    for k in (0, 1):
        s = fit.sample(200, c=k, seed=k, mean=True)
        assert s.shape == (200, 64)
        d_own = (s.mean(0) - x[y == k].mean(0)).norm()
        d_other = (s.mean(0) - x[y == 1 - k].mean(0)).norm()
        assert d_own < 0.5 * d_other
    # labels as (n,) work too, and one-hot rows are read as labels
    assert fit.sample(3, c=torch.tensor([0, 1, 1]), seed=0).shape == (3, 64)
    assert torch.equal(fit.log_prob(held[:4], c=labels[:4]),
                       fit.log_prob(held[:4], c=torch.eye(2)[labels[:4]]))


def test_conditional_errors_are_clear():
    x, y = _digits(50)
    with seeded(0):
        model = VAE(64, 2, hidden=(8,), num_classes=10)
    with pytest.raises(ValueError, match="50 data rows"):
        model.fit(x, c=y[:40], method="mle", progress=False)
    bad = y.clone()
    bad[7] = 10
    with pytest.raises(ValueError, match=r"0\.\.9.*found 10 at position 7"):
        model.fit(x, c=bad, method="mle", progress=False)
    with pytest.raises(ValueError, match="conditional"):
        model.fit(x, method="mle", progress=False)
    with pytest.raises(ValueError, match="integer class labels"):
        model.fit(x, c=y + 0.5, method="mle", progress=False)
    with pytest.raises(TypeError, match="integer class labels"):
        model.fit(x, c=["a"] * 50, method="mle", progress=False)
    with pytest.raises(ValueError, match="unconditional"):
        VAE(64, 2).fit(x, c=y, method="mle", progress=False)
    fit = model.fit(x, c=y, method="mle", num_steps=2, seed=0, progress=False)
    with pytest.raises(ValueError, match="0..9"):
        fit.sample(3, c=-1)
    with pytest.raises(ValueError, match="3 labels but there are 4"):
        fit.log_prob(x[:4], c=y[:3])


# ---------------------------------------------------------------------- likelihoods, input
@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli", "gaussian",
                                        "categorical"])
def test_every_likelihood_fits_and_samples_in_its_support(likelihood):
    grey = pgm.datasets.load_digits()[0][:200]
    data = {"bernoulli": (grey > 8).float(), "continuous_bernoulli": grey / 16,
            "gaussian": grey / 16, "categorical": grey}[likelihood]
    kw = {"num_categories": 17} if likelihood == "categorical" else {}
    with seeded(0):
        model = VAE(64, 3, likelihood=likelihood, hidden=(16,), **kw)
    fit = model.fit(data, method="mle", seed=0, progress=False, num_steps=60, lr=3e-3)
    assert fit.losses[-1] < fit.losses[0]
    lp = fit.log_prob(data[:20], num_particles=5)
    assert lp.shape == (20,) and torch.isfinite(lp).all()
    s = fit.sample(30, seed=0)
    assert s.shape == (30, 64) and torch.isfinite(s).all()
    if likelihood == "bernoulli":
        assert set(s.unique().tolist()) <= {0.0, 1.0}
    elif likelihood == "continuous_bernoulli":
        assert ((s >= 0) & (s <= 1)).all()
    elif likelihood == "categorical":
        assert torch.equal(s, s.round()) and s.min() >= 0 and s.max() <= 16
        assert ((fit.decode(torch.zeros(2, 3)) >= 0) & (fit.decode(torch.zeros(2, 3)) <= 16)).all()
    else:
        assert fit.model.scale.item() < 1.0  # learned from the unit start


def test_hidden_is_checked_as_the_flow_checks_it():
    """One check of layer widths for both families: "16" was read as its characters
    ("hidden[i] ... '1'") and 16.0 met Python's "'float' object is not iterable"."""
    for bad in ("16", 16.0):
        with pytest.raises(TypeError, match=r"^Expected hidden to be a sequence of positive "
                                            r"ints \(layer widths\) or one positive int, "
                                            r"but got " + re.escape(repr(bad))):
            VAE(2, 1, hidden=bad)
    assert VAE(2, 1, hidden=16).hidden == (16,) and VAE(2, 1, hidden=()).hidden == ()


def test_bad_data_is_refused_before_fitting():
    x, _ = _digits(30)
    model = VAE(64, 2, hidden=(8,))
    half = x.clone()
    half[3, 5] = 0.5
    with pytest.raises(ValueError, match=r"\{0, 1\}.*row 3, column 5"):
        model.fit(half, method="mle", progress=False)
    with pytest.raises(ValueError, match="expected 64, got 63"):
        model.fit(x[:, :-1], method="mle", progress=False)
    nan = x.clone()
    nan[2, 1] = float("nan")
    with pytest.raises(ValueError, match="row 2, column 1"):
        model.fit(nan, method="mle", progress=False)
    cat = VAE(64, 2, likelihood="categorical", num_categories=3, hidden=(8,))
    with pytest.raises(ValueError, match=r"0\.\.2.*row 0, column 0"):
        cat.fit(x + 3, method="mle", progress=False)
    cb = VAE(64, 2, likelihood="continuous_bernoulli", hidden=(8,))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cb.fit(x * 2, method="mle", progress=False)
    with pytest.raises(ValueError, match="num_particles"):
        model.fit(x, method="mle", num_particles=0, progress=False)


def test_constructor_validation_and_custom_networks():
    with pytest.raises(ValueError, match="likelihood"):
        VAE(4, 2, likelihood="poisson")
    with pytest.raises(ValueError, match="num_categories"):
        VAE(4, 2, likelihood="categorical")
    with pytest.raises(ValueError, match="obs_scale"):
        VAE(4, 2, obs_scale=0.1)
    with pytest.raises(ValueError, match="latent_dim"):
        VAE(4, 0)
    with pytest.raises(ValueError, match=r"encoder, called as encoder\(x \(B, 4\)\), to return \(B, 4\)"):
        VAE(4, 2, encoder=nn.Linear(4, 3))
    with pytest.raises(ValueError, match=r"decoder to be callable as decoder\(z \(B, 2\)\) and to return \(B, 4\)"):
        VAE(4, 2, decoder=nn.Linear(3, 4))
    with pytest.raises(TypeError, match="nn.Module"):
        VAE(4, 2, decoder=lambda z: z)
    # a custom network plugs in and trains; a fixed obs_scale stays fixed
    model = _linear_vae(5, 2)
    fit = model.fit(_ppca_data(100, 0), method="map", seed=0, progress=False, num_steps=30)
    assert fit.info["jit"] is False  # custom networks compile only on request
    assert torch.isfinite(fit.log_prob(_ppca_data(10, 1))).all()
    fixed = VAE(5, 2, likelihood="gaussian", obs_scale=0.25, hidden=(4,))
    assert fixed.scale.item() == 0.25
    assert sum(p.numel() for p in fixed.generative.parameters()) == sum(
        p.numel() for p in fixed.decoder.parameters())


def test_jit_and_eager_training_agree_and_are_reproducible():
    x, _ = _digits(256)
    with seeded(0):
        model = VAE(64, 2, hidden=(16,))
    opts = dict(method="mle", seed=0, progress=False, num_steps=20, batch_size=64)
    a, b = model.fit(x, jit=True, **opts), model.fit(x, jit=True, **opts)
    assert a.losses == b.losses and a.info["jit"]
    # eager draws z in another order than the traced loss, so only reproducibility and
    # progress are compared
    e1, e2 = model.fit(x, jit=False, **opts), model.fit(x, jit=False, **opts)
    assert e1.losses == e2.losses and not e1.info["jit"]
    for f in (a, e1):
        assert sum(f.losses[-5:]) < sum(f.losses[:5])
    stopped = model.fit(x, callback=lambda step, loss: step == 4, **opts)
    assert len(stopped.losses) == 5
    # several draws of z per row (vectorized particles), eager and compiled
    for jit in (False, True):
        many = model.fit(x, jit=jit, num_particles=3, **opts)
        assert all(math.isfinite(v) for v in many.losses)
        assert sum(many.losses[-5:]) < sum(many.losses[:5])


def test_a_non_finite_loss_stops_the_fit_with_the_last_good_state():
    # 1e19 passes the data check (its square, 1e38, is finite in float32) but the
    # Gaussian likelihood of 30 such numbers overflows
    with seeded(0):
        model = VAE(3, 1, likelihood="gaussian", hidden=(4,), standardize=False)
    with pytest.raises(pgm.FitError, match="Non-finite loss at step 0") as err:
        model.fit(torch.full((10, 3), 1e19), method="mle", seed=0, progress=False,
                  num_steps=5)
    assert isinstance(err.value.fit, VAEFit) and err.value.fit.losses == []


def test_save_load_round_trip_keeps_the_estimates(tmp_path):
    x, y = _digits(100)
    with seeded(0):
        model = VAE(64, 2, hidden=(8,), num_classes=10, likelihood="continuous_bernoulli")
    fit = model.fit(x, c=y, method="map", seed=0, progress=False, num_steps=10)
    fit.save(tmp_path / "vae")
    back = pgm.load(tmp_path / "vae")
    assert isinstance(back, VAEFit)
    assert torch.equal(back.log_prob(x, c=y), fit.log_prob(x, c=y))
    assert torch.equal(back.elbo(x, c=y), fit.elbo(x, c=y))
    assert torch.equal(back.sample(5, c=2, seed=1), fit.sample(5, c=2, seed=1))

def test_custom_networks_save_as_weights_and_load_with_a_model(tmp_path):
    """The code of a custom network is never saved; its weights are, and load(path,
    model=...) puts them into a copy of a model built the same way."""
    x = _ppca_data(40, 0)
    fit = _linear_vae(5, 2).fit(x, method="mle", num_steps=20, seed=0, progress=False)
    fit.save(tmp_path / "custom")
    meta = json.loads((tmp_path / "custom" / "fit.json").read_text())
    assert meta["code"] == {
        "encoder": {"class": "Linear", "repr": "Linear(in_features=5, out_features=4, bias=True)"},
        "decoder": {"class": "Linear", "repr": "Linear(in_features=2, out_features=5, bias=True)"}}
    assert meta["format_version"] == 2  # a version-1 reader refuses it
    with pytest.raises(ValueError, match=r"user-supplied modules \(encoder: Linear, "
                                         r"decoder: Linear\).*load\(path, model=\.\.\.\)"):
        pgm.load(tmp_path / "custom")
    template = _linear_vae(5, 2)  # fresh weights, same architecture
    before = [p.clone() for p in template.parameters()]
    back = pgm.load(tmp_path / "custom", model=template)
    assert isinstance(back, VAEFit)
    assert torch.equal(back.elbo(x), fit.elbo(x))
    assert torch.equal(back.log_prob(x, num_particles=20), fit.log_prob(x, num_particles=20))
    assert all(torch.equal(a, b) for a, b in zip(before, template.parameters()))  # untouched
    with pytest.raises(ValueError, match="prior_scale=2.0 differs"):
        pgm.load(tmp_path / "custom", model=_linear_vae(5, 2, prior_scale=2.0))
    with seeded(0):
        other = VAE(5, 2, likelihood="gaussian", encoder=nn.Sequential(nn.Linear(5, 4)),
                    decoder=nn.Linear(2, 5)).double()
    with pytest.raises(ValueError, match="encoder is 'Sequential' but the saved fit's is "
                                         "'Linear'"):
        pgm.load(tmp_path / "custom", model=other)


# ---------------------------------------------------------------------- example, benchmark
def test_example_vae_digits_smoke(tmp_path):
    mod = load_script(ROOT / "examples" / "vae_digits.py")
    out = tmp_path / "grid.png"
    res = mod.main(mod.parse_args(["--num-steps", "30", "--hidden", "16", "--latent", "2",
                                   "--num-particles", "5", "--out", str(out)]))
    assert out.stat().st_size > 0
    assert math.isfinite(res["iwae"]) and math.isfinite(res["elbo"])
    assert res["iwae"] >= res["elbo"] - 1.0  # a noisy K = 5 bound, but not far below
    cres = mod.main(mod.parse_args(["--num-steps", "10", "--hidden", "16", "--latent", "2",
                                    "--num-particles", "2", "--conditional"]))
    assert cres["samples"].shape == (10 * 8, 64)


def test_benchmark_smoke_prints_a_ratio():
    mod = load_script(ROOT / "benchmarks" / "bench_vae.py")
    buf = io.StringIO()
    with redirect_stdout(buf):
        mod.main(["--quick", "--hidden", "16"])
    lines = buf.getvalue().strip().splitlines()
    assert len(lines) == 2
    f_ms, jit, f_loss, h_ms, h_loss = grab(
        r"^facade: {N} ms/step \(jit=(True|False), last loss {N}\); hand-written PyTorch "
        r"loop: {N} ms/step \(last loss {N}\); 30 steps, batch 128, hidden 16, 1 threads$",
        lines[0])
    ratio, lo, hi = grab(r"^vae_fit_time_ratio={N} \({N} \.\. {N} over 1 repeats; "
                         r"facade/hand-written, goal <= 1\.2\)$", lines[1])
    positive_finite(ratio)
    assert ratio == lo == hi  # one repeat: its ratio is the median, the min and the max
    assert agrees(ratio, quotient(bounds(f_ms), bounds(h_ms)))
    # both loops train copies of one network on the same draws: the same last loss
    assert agrees(h_loss, bounds(f_loss))


# ---------------------------------------------------------------------- quality (slow)
@pytest.mark.slow
def test_digits_heldout_iwae_beats_the_target():
    """Binarized digits, 1500 train / 297 held out, L = 8, one hidden layer of 128:
    held-out IWAE (K = 500) of -19.5 nats or better (a factorized Bernoulli: about
    -25.3)."""
    x, _ = _digits()
    with seeded(0):
        perm = torch.randperm(x.shape[0])
        model = VAE(64, 8, hidden=(128,))
    train, test = x[perm[:1500]], x[perm[1500:]]
    fit = model.fit(train, method="mle", seed=0, progress=False)
    lp = fit.log_prob(test, num_particles=500)
    assert lp.mean().item() > -19.5
    factorized = torch.distributions.Bernoulli(probs=train.mean(0).clamp(1e-3, 1 - 1e-3))
    assert lp.mean() > factorized.log_prob(test).sum(-1).mean() + 4


def test_docs_code_blocks_and_docstring_example_run():
    import doctest

    import pyro_genmodels.models.vae as vae_module

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "vae.md").read_text(), re.S)
    assert len(blocks) >= 3
    for i, code in enumerate(blocks):
        exec(compile(code, f"vae.md[block {i}]", "exec"), {})
    result = doctest.testmod(vae_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_a_label_past_int64_is_named_as_it_came_and_unsigned_labels_are_read():
    """A whole float label of 1e20 passed the finite-and-whole check and was cast to
    int64 before the range check: the message said it found -9223372036854775808.
    Unsigned 16-64-bit labels, which torch does not compare, are read too."""
    import numpy as np

    from pyro_genmodels.models.vae_parts import _labels

    with pytest.raises(ValueError, match=r"in 0..2 \(num_classes=3\); found 1e\+20 at "
                                         r"position 1"):
        _labels(np.array([0.0, 1e20]), 3)
    for dtype in (np.uint16, np.uint32, np.uint64):
        assert _labels(np.array([0, 2], dtype=dtype), 3).tolist() == [0, 2]
    with pytest.raises(ValueError, match=r"found 3 at position 0"):
        _labels(np.array([3], dtype=np.uint64), 3)


def test_one_label_draws_num_data_rows_under_that_label():
    """``model(None, c=<one row>, num_data=5)``, the conditional prior predictive, draws 5
    rows decoded under that one label, and the guide encodes 3 rows under one label as
    under it repeated (both failed inside torch: the one row was not broadcast)."""
    model = VAE(4, 2, hidden=(8,), num_classes=3, likelihood="gaussian")
    one = torch.nn.functional.one_hot(torch.tensor([2]), 3).float()
    with seeded(0):
        tr = poutine.trace(model.model).get_trace(None, c=one, num_data=5)
    assert tr.nodes["x"]["value"].shape == (5, 4)
    z = tr.nodes["z"]["value"]
    loc = model.observation(model.decoder_output(z, one.expand(5, 3))).mean
    assert torch.equal(tr.nodes["x"]["fn"].mean, loc)
    x = torch.randn(3, 4)
    assert torch.equal(model.posterior(x, one.expand(3, 3))[0],
                       poutine.trace(model.local_guide).get_trace(x, c=one)
                       .nodes["z"]["fn"].base_dist.loc)


def test_a_one_class_vae_reads_back_the_context_its_fit_stores():
    """VAE(num_classes=1) stored its labels one-hot, (N, 1), which its own checks read as
    one-hot only for two classes or more: compare() and the report, which score a fit's
    stored context, failed on every such fit."""
    x = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    fit = pgm.VAE(2, 1, likelihood="gaussian", hidden=(8,), num_classes=1).fit(
        x, c=0, method="mle", num_steps=10, seed=0, progress=False)
    assert fit.context.shape == (100, 1)
    assert torch.equal(fit.log_prob(fit.data, c=fit.context), fit.log_prob(x, c=0))
    table = pgm.compare({"v": fit}, x[:20], c=0)
    assert math.isfinite(table.loc["v", "heldout_log_prob"])
    with pytest.raises(ValueError, match=r"c of shape \(5, 1\) must be one-hot rows"):
        fit.log_prob(x[:5], c=torch.zeros(5, 1))


def test_mean_given_a_string_is_refused_not_read_as_true():
    x, _ = _digits(20)
    with seeded(0):
        fit = VAE(64, 2, hidden=(8,)).fit(x, method="mle", num_steps=2, progress=False)
    with pytest.raises(TypeError, match=r"^Expected mean to be True or False, but got 'yes'$"):
        fit.sample(2, mean="yes")
    assert fit.sample(2, seed=0, mean=True).shape == (2, 64)


def test_networks_of_ones_own_see_rows_and_are_in_evaluation_mode_after_the_fit():
    """vae.md: the decoder maps (N, L + C) to (N, D). log_prob and elbo with K particles
    passed (K, N, L), which a batch norm refused ("running_mean should contain 5 elements
    not 32"); and the networks stayed in training mode, so a dropout made decode, sample
    and log_prob random. The decoder now sees rows, and the fit is in evaluation mode."""
    from torch import nn

    x = torch.randn(200, 4, generator=torch.Generator().manual_seed(0))
    with seeded(0):
        enc = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 4))
        dec = nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5),
                            nn.Linear(16, 4))
    seen = []
    dec.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    fit = pgm.VAE(4, 2, likelihood="gaussian", encoder=enc, decoder=dec).fit(
        x, method="mle", num_steps=20, seed=0, progress=False)
    assert not fit.model.decoder.training and not fit.model.encoder.training
    z = torch.zeros(3, 2)
    assert torch.equal(fit.decode(z), fit.decode(z))
    assert torch.equal(fit.log_prob(x[:5], num_particles=7), fit.log_prob(x[:5], num_particles=7))
    assert torch.isfinite(fit.elbo(x[:5], num_particles=3)).all()
    assert {len(s) for s in seen} == {2} and (35, 2) in seen  # 7 x 5 codes, as rows
    # and so is the fit pgm.load rebuilds (a module is built in training mode)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        fit.save(d)
        back = pgm.load(d, model=pgm.VAE(4, 2, likelihood="gaussian", encoder=enc,
                                          decoder=dec))
    assert not back.model.decoder.training
    assert torch.equal(back.decode(z), fit.decode(z))
