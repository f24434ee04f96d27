"""A failure mid-fit loses nothing: NaN losses and Ctrl-C keep the last good state."""

import re
import time

import numpy as np
import pytest
import torch

import pyro_genmodels as pgm


def test_nan_loss_mid_fit_names_the_step_and_keeps_finite_params():
    x, _ = pgm.datasets.correlated_gaussian(200, dim=2, seed=0)
    model = pgm.Gaussian(2, covariance=torch.eye(2))
    # plain SGD with an absurd learning rate overflows float32 after a couple of steps
    # (map: mle keeps its closed-form start instead, test_ppca's overflow test)
    with pytest.raises(pgm.FitError, match=r"Non-finite .* at step \d+") as err:
        model.fit(x, method="map", seed=0, progress=False, optimizer="sgd", lr=1e12,
                  lr_decay=1.0, num_steps=50)
    e = err.value
    assert e.step >= 1
    partial = e.fit
    assert len(partial.losses) == e.step
    assert all(torch.isfinite(v).all() for v in partial.params.values())
    assert partial.log_prob(x).shape == (200,)


def test_nan_loss_in_vi_keeps_a_usable_partial_fit():
    x, _ = pgm.datasets.correlated_gaussian(200, dim=2, seed=0)
    with pytest.raises(pgm.FitError) as err:
        pgm.Gaussian(2, covariance=torch.eye(2)).fit(
            x, method="vi", seed=0, progress=False, optimizer="sgd", lr=1e12, lr_decay=1.0,
            num_steps=50, num_posterior_samples=10)
    assert err.value.fit.posterior["loc"].shape == (1, 10, 2)
    assert torch.isfinite(err.value.fit.posterior["loc"]).all()


@pytest.mark.parametrize("method", ["mle", "map", "vi"])
def test_ctrl_c_returns_a_usable_partial_fit(method):
    x, _ = pgm.datasets.correlated_gaussian(100, dim=2, seed=0)

    def interrupt(step, loss):
        if step == 9:
            raise KeyboardInterrupt

    fit = pgm.Gaussian(2).fit(x, method=method, seed=0, progress=False, num_steps=100,
                              callback=interrupt)
    assert fit.interrupted
    assert len(fit.losses) == 10
    assert torch.isfinite(fit.log_prob(x)).all()
    assert fit.sample(3, seed=0).shape == (3, 2)


def _interrupt_after(monkeypatch, cls, name: str, k: int) -> None:
    """``cls.name`` (a transition) raises KeyboardInterrupt from its ``k + 1``-th call,
    as a Ctrl-C there would (in place of any earlier such wrapper, not around it)."""
    original, calls = getattr(cls, name), {"n": 0}
    original = getattr(original, "unwrapped", original)

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > k:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)
    step.unwrapped = original  # type: ignore[attr-defined]
    monkeypatch.setattr(cls, name, step)


@pytest.mark.parametrize("sampler", ["pyro", "fused"])
def test_ctrl_c_while_the_first_chain_draws_keeps_its_draws(monkeypatch, sampler):
    """Ctrl-C during the first chain's sampling phase: the fit keeps its draws so far
    (one chain, fewer draws, ``interrupted``), usable like any posterior fit; in its
    warmup the interrupt propagates (nothing to keep). Before, both propagated."""
    from pyro_genmodels.infer import mcmc, nuts

    x, _ = pgm.datasets.correlated_gaussian(60, dim=2, seed=0)
    cls, name = (mcmc.RecordedNUTS, "sample") if sampler == "pyro" else \
        (nuts._Chain, "transition")
    original = getattr(cls, name)

    def interrupt_at(k):
        _interrupt_after(monkeypatch, cls, name, k)

    options = dict(method="nuts", seed=0, progress=False, num_samples=50, warmup_steps=30,
                   num_chains=2, **({} if sampler == "pyro" else {"sampler": "fused"}))
    interrupt_at(30 + 20)  # 20 draws of the first chain
    fit = pgm.Gaussian(2).fit(x, **options)
    assert fit.interrupted and fit.posterior["loc"].shape == (1, 20, 2)
    assert fit.sample_stats["diverging"].shape == (1, 20)
    assert torch.isfinite(fit.posterior["scale"]).all() and (fit.posterior["scale"] > 0).all()
    idata = fit.to_arviz()
    assert idata.posterior.sizes["draw"] == 20 and idata.sample_stats.sizes["draw"] == 20
    assert idata.attrs["interrupted"] == 1  # one chain of 20 draws, not the 2 x 50 asked
    assert fit.sample(3, seed=0).shape == (3, 2)
    monkeypatch.setattr(cls, name, original)  # the first 20 draws of an uninterrupted run
    whole = pgm.Gaussian(2).fit(x, **{**options, "num_samples": 20})
    for site in fit.posterior:
        assert torch.equal(fit.posterior[site][0], whole.posterior[site][0])
    assert torch.equal(fit.sample_stats["lp"][0], whole.sample_stats["lp"][0])
    interrupt_at(10)  # in the warmup
    with pytest.raises(KeyboardInterrupt):
        pgm.Gaussian(2).fit(x, **options)


@torch.jit.ignore
def _ctrl_c(x: torch.Tensor) -> torch.Tensor:
    raise KeyboardInterrupt


@torch.jit.script
def _traced_ctrl_c(x: torch.Tensor) -> torch.Tensor:
    """A graph that calls back into Python where a Ctrl-C lands (as Pyro's traced
    potentials do, through its ``safe_log``): TorchScript raises a RuntimeError."""
    return _ctrl_c(x) + 1


def test_ctrl_c_inside_a_traced_graph_is_a_ctrl_c(monkeypatch):
    """A Ctrl-C in a traced potential or ELBO came out as TorchScript's RuntimeError
    ("... KeyboardInterrupt: <EMPTY MESSAGE>"): NUTS on a GaussianMixture lost every
    draw, and a traced ELBO's fit would end as a numerical failure. Both keep what they
    have, as at any Ctrl-C."""
    from pyro_genmodels.infer import mcmc
    from pyro_genmodels.infer.loop import LoopOptions, Player, optimize

    with pytest.raises(RuntimeError, match="KeyboardInterrupt"):
        _traced_ctrl_c(torch.ones(1))
    x, _ = pgm.datasets.correlated_gaussian(60, dim=2, seed=0)
    original, calls = mcmc.RecordedNUTS.sample, {"n": 0}

    def sample(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 30 + 20 + 5:  # in the second chain's warmup
            _traced_ctrl_c(torch.ones(1))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(mcmc.RecordedNUTS, "sample", sample)
    fit = pgm.Gaussian(2).fit(x, method="nuts", seed=0, progress=False, num_samples=20,
                              warmup_steps=30, num_chains=2)
    assert fit.interrupted and fit.posterior["loc"].shape == (1, 20, 2)
    w = torch.zeros(1, requires_grad=True)

    def loss(batch):
        if calls["n"] == 5:
            _traced_ctrl_c(w)
        calls["n"] += 1
        return (w - 1).pow(2).sum()

    calls["n"] = 0
    out = optimize([Player(loss, [w])], torch.zeros(4, 1), None,
                   LoopOptions(num_steps=20, lr=0.1), progress=False)
    assert out.interrupted and out.error is None and len(out.losses) == 5


@pytest.mark.parametrize("kernel", ["nuts", "hmc"])
def test_ctrl_c_in_pyros_sampler_on_a_log_density_keeps_the_draws(monkeypatch, kernel):
    """``sample_chains`` with Pyro's kernels (``pyro_mcmc``, no model sites, so no
    transforms): Ctrl-C while the second chain draws keeps the first chain; while the
    first draws, its draws so far (bit for bit an uninterrupted run's first ones); in the
    first warmup it propagates, and ``sample(n)``, which promises n rows, lets it
    propagate. Before, a Ctrl-C after the warmup gave a TypeError."""
    from pyro_genmodels.infer import mcmc

    cls = mcmc.RecordedNUTS if kernel == "nuts" else mcmc.CappedHMC
    original = cls.sample
    model = pgm.EnergyModel.from_log_density(lambda z: -0.5 * (z * z).sum(-1), 2)
    options = dict(sampler=kernel, num_chains=2, warmup_steps=10, seed=0)

    def interrupt_at(k):
        _interrupt_after(monkeypatch, cls, "sample", k)

    interrupt_at(10 + 15 + 10 + 3)  # the first chain's 15 draws, 3 of the second's
    kept = model.sample_chains(30, **options)
    assert kept.info["interrupted"] and kept.samples.shape == (1, 15, 2)
    assert kept.sample_stats["diverging"].shape == (1, 15)
    assert (kept.info["num_chains"], kept.info["num_samples"]) == (1, 15)
    assert kept.to_arviz().attrs["interrupted"] == 1
    interrupt_at(10 + 4)  # 4 draws of the first chain
    partial = model.sample_chains(30, **options)
    assert partial.info["interrupted"] and partial.samples.shape == (1, 4, 2)
    assert partial.info["num_samples"] == 4
    interrupt_at(10 + 4)  # sample(n) promises n rows: the interrupt propagates
    with pytest.raises(KeyboardInterrupt):
        model.sample(30, **options)
    monkeypatch.setattr(cls, "sample", original)
    whole = model.sample_chains(30, **options)
    assert not whole.info["interrupted"] and whole.samples.shape == (2, 15, 2)
    assert "interrupted" not in whole.to_arviz().attrs
    assert torch.equal(partial.samples[0], whole.samples[0, :4])
    assert torch.equal(kept.samples[0], whole.samples[0])
    interrupt_at(5)  # in the first warmup: nothing to keep
    with pytest.raises(KeyboardInterrupt):
        model.sample_chains(30, **options)


def test_callback_can_stop_early():
    x, _ = pgm.datasets.correlated_gaussian(100, dim=2, seed=0)
    fit = pgm.Gaussian(2).fit(x, method="map", seed=0, progress=False, num_steps=100,
                              callback=lambda step, loss: step == 4)
    assert len(fit.losses) == 5 and not fit.interrupted


def test_progress_bar_can_be_on(capsys):
    """tqdm on stderr: labelled by the method, counting to num_steps, showing the loss of
    step 0, cleared at the end (leave=False); nothing at all with progress=False. tqdm
    redraws at most every 0.1 s, so each step sleeps 30 ms to make it draw."""
    x, _ = pgm.datasets.correlated_gaussian(50, dim=2, seed=0)
    slow = lambda step, loss: time.sleep(0.03)  # noqa: E731
    fit = pgm.Gaussian(2).fit(x, method="map", seed=0, progress=True, num_steps=10,
                              callback=slow)
    assert len(fit.losses) == 10
    captured = capsys.readouterr()
    assert captured.out == ""
    frames = captured.err.split("\r")
    assert frames[0] == "" and frames[1].startswith("map:   0%|") and "| 0/10 [" in frames[1]
    drawn = [f for f in frames if f.startswith("map: ")]
    steps = [int(re.search(r"\| (\d+)/10 \[", f).group(1)) for f in drawn]
    assert len(steps) >= 3 and steps == sorted(steps) and steps[-1] <= 10
    # the postfix is set at step 0 and shown from the next redraw on
    assert any(f"loss={fit.losses[0]:.4g}]" in f for f in drawn), drawn
    assert frames[-1] == "" and frames[-2].strip() == ""  # the bar is cleared
    pgm.Gaussian(2).fit(x, method="map", seed=0, progress=False, num_steps=10, callback=slow)
    assert capsys.readouterr() == ("", "")
    # a flag is a bool: "no" is truthy, and drew the bar (n-gram's fit too); refused now
    for model, data in ((pgm.Gaussian(2), x), (pgm.NGram(order=2), ["ab", "ba"])):
        with pytest.raises(TypeError, match="^Expected progress to be True or False, but "
                                            "got 'no'$"):
            model.fit(data, method="map", seed=0, progress="no", num_steps=10)
    assert capsys.readouterr() == ("", "")


def test_a_sample_too_large_for_memory_is_a_value_error_naming_it():
    """``sample(10**12)`` of every kind of sampler is a ValueError naming what was asked,
    as the Gaussian's (the output's allocation) was: a sequence model's and an energy
    model's samplers allocate their own state and raised torch's allocator error. So is
    an n of 2**63 or more, which torch cannot even take as a size. (A max_length of
    10**13 is no longer refused: the sampler grows with the rows it draws.)"""
    from pyro_genmodels.models.energy import EnergyModel
    from pyro_genmodels.models.sequence import NGram

    text = NGram(2, vocab="ab").fit(["ab", "ba", "a"], method="mle", progress=False)
    energy = EnergyModel.from_log_density(lambda x: -0.5 * x.pow(2).sum(-1), dim=2)
    gauss = pgm.Gaussian(2).fit(torch.randn(20, 2), method="mle", progress=False)
    for call, named in [(lambda: gauss.sample(10**12), "n = 1000000000000 rows"),
                        (lambda: text.sample(10**12), "n = 1000000000000 sequences"),
                        (lambda: energy.sample(10**12), "n = 1000000000000 draws"),
                        (lambda: energy.sample_chains(10**12), "n = 1000000000000 draws"),
                        # beyond torch's sizes: torch raised a TypeError from inside
                        (lambda: gauss.sample(2**63), f"n = {2**63} draws"),
                        (lambda: text.sample(2**64), f"n = {2**64} draws"),
                        (lambda: energy.sample(2**63), f"n = {2**63} draws")]:
        with pytest.raises(ValueError, match=f"{named}.* do not fit in memory"):
            call()


@pytest.mark.parametrize("flag", [True, np.True_])
def test_a_bool_is_no_number_for_a_scale_numpy_or_not(flag):
    """prior_scale=True was refused and np.True_ taken as 1.0."""
    with pytest.raises(TypeError, match=r"Expected prior_scale to be a positive number, but "
                                        r"got (np\.)?True_? \((bool|bool_)\)"):
        pgm.Gaussian(2, prior_scale=flag)


def test_to_arviz_and_save_name_their_own_arguments():
    """to_arviz(bogus=1) was refused as "to_inference_data() got an unexpected keyword
    argument" (an internal name); save(None) by pathlib, without naming path."""
    fit = pgm.Gaussian(2).fit(torch.randn(20, 2), method="mle", progress=False)
    with pytest.raises(TypeError, match=r"to_arviz\(\) got an unexpected keyword argument "
                                        r"'bogus'"):
        fit.to_arviz(bogus=1)
    for path in (None, 3):
        with pytest.raises(TypeError, match=rf"^Expected path to be a str or os.PathLike \(a "
                                            rf"directory to write\), but got {path}"):
            fit.save(path)
    assert fit.to_arviz(posterior_predictive=False, seed=1).posterior is not None


def test_an_energy_samplers_unknown_option_lists_what_it_takes():
    """sample(bogus=1) said only "Unknown option(s) ['bogus'] for sampler 'langevin'"."""
    from pyro_genmodels.models.energy import EnergyModel

    energy = EnergyModel.from_log_density(lambda x: -0.5 * x.pow(2).sum(-1), dim=2)
    with pytest.raises(ValueError, match=r"^Unknown option\(s\) \['bogus'\] for sampler "
                                         r"'langevin'; expected some of \['sampler', "
                                         r"'num_chains', .*'step_size'.*\] \(Pyro's kernel "
                                         r"options are for sampler='nuts' or 'hmc'\)$"):
        energy.sample(3, bogus=1)
