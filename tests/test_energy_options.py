"""EnergyModel.fit refuses the options its objective does not read (they were ignored and
still recorded in ``fit.options``), keeps accepting them at their defaults, and its table
of which objective reads which option (``OBJECTIVE_READS``) matches what the fits do."""

import dataclasses

import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels.infer.loop import LoopOptions
from pyro_genmodels.models.energy import EnergyModel
from pyro_genmodels.models.energy_training import OBJECTIVE_DEFAULTS, OBJECTIVES, EnergyOptions

#: which objective reads which of the options that only some objectives read (from the
#: losses in models/energy_training.py; the library's own table must agree)
OBJECTIVE_READS = {
    "multilevel_score_matching": ("validation", "ema"),
    "contrastive": ("buffer_size", "reinit_fraction", "mcmc_steps", "mcmc_step_size",
                    "target_accept", "energy_reg"),
    "score_matching": ("validation", "noise_scale"),
}
OBJECTIVE_OPTIONS = tuple(dict.fromkeys(n for names in OBJECTIVE_READS.values() for n in names))
#: a value other than the default for each option that only some objectives read
CHANGED = {"validation": 0.2, "ema": 0.5, "buffer_size": 500, "reinit_fraction": 0.5,
           "mcmc_steps": 3, "mcmc_step_size": 0.5, "target_accept": 0.3, "energy_reg": 0.1,
           "noise_scale": 5.0}
TINY = dict(method="mle", num_steps=3, batch_size=64, progress=False, seed=0)


def _data(n=300):
    with pgm.seeded(0):
        return pgm.datasets.toy("eight_gaussians").sample((n,))


def _model(objective):
    with pgm.seeded(0):  # the multilevel objective needs a noise-conditional energy; a
        # fixed sigma_0 skips its choice (a plain network has no levels to give)
        if objective == "multilevel_score_matching":
            return EnergyModel(2, hidden=(16, 16), eval_sigma=0.1)
        return EnergyModel(2, hidden=(16, 16), noise_conditional=False)


def _fit(objective, **options):
    kw = dict(TINY, mcmc_steps=2) if objective == "contrastive" else dict(TINY)
    return _model(objective).fit(_data(), objective=objective, **{**kw, **options})


UNREAD = [(o, n) for o in OBJECTIVES for n in OBJECTIVE_OPTIONS if n not in OBJECTIVE_READS[o]]


def test_the_table_names_every_objective_specific_option():
    """The library's table is this one; every option the energy record adds to the
    loop's (but the objective itself), and ``validation``, belongs to some objective in
    it, and CHANGED covers them."""
    from pyro_genmodels.models import energy_training

    assert energy_training.OBJECTIVE_READS == OBJECTIVE_READS
    assert energy_training.OBJECTIVE_OPTIONS == OBJECTIVE_OPTIONS
    own = {f.name for f in dataclasses.fields(EnergyOptions)} \
        - {f.name for f in dataclasses.fields(LoopOptions)} - {"objective"}
    assert set(OBJECTIVE_OPTIONS) == own | {"validation"} == set(CHANGED)
    assert set(OBJECTIVE_READS) == set(OBJECTIVES)


@pytest.mark.parametrize("objective,name", UNREAD)
def test_an_option_the_objective_does_not_read_is_refused_before_any_work(objective, name):
    model, x = _model(objective), _data()
    before = [p.detach().clone() for p in model.parameters()]

    def never(step, loss):  # pragma: no cover - the refusal comes before any step
        raise AssertionError("a step ran")

    readers = [o for o in OBJECTIVES if name in OBJECTIVE_READS[o]]
    with pytest.raises(ValueError) as info:
        model.fit(x, objective=objective, callback=never, **{**TINY, name: CHANGED[name]})
    msg = str(info.value)
    assert f"objective={objective!r}" in msg and f"{name}=" in msg, msg
    assert all(repr(o) in msg for o in readers), msg  # which objective would read it
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_the_reproduction_is_refused_and_names_every_unread_option():
    """The report: score matching with ema=0.5 trained bit for bit as without it and
    recorded ema=0.5; contrastive with noise_scale=5.0 and ema=0.5 likewise."""
    with pytest.raises(ValueError, match=r"objective='score_matching'.*ema=0\.5.*"
                                         r"'multilevel_score_matching'"):
        _fit("score_matching", ema=0.5)
    with pytest.raises(ValueError, match=r"ema=0\.5 \(read by objective='multilevel_score_"
                                         r"matching'\) and noise_scale=5\.0 \(read by "
                                         r"objective='score_matching'\)"):
        _fit("contrastive", noise_scale=5.0, ema=0.5)
    with pytest.raises(ValueError, match=r"buffer_size=500, mcmc_steps=3, energy_reg=0\.1 "
                                         r"\(read by objective='contrastive'\)"):
        _fit("multilevel_score_matching", buffer_size=500, mcmc_steps=3, energy_reg=0.1)
    with pytest.raises(ValueError, match="held-out loss"):  # the old refusal, kept
        _fit("contrastive", validation=_data(50))


def test_options_at_their_defaults_are_accepted_and_recorded():
    """An unread option at its default (the field's; None for validation and ema, also
    as "auto") is what a fit without it runs and records: accepted, and the same fit."""
    fields = {f.name: f.default for f in dataclasses.fields(EnergyOptions)}
    for objective in OBJECTIVES:
        given = {n: None if n in ("validation", "ema") else fields[n]
                 for n in OBJECTIVE_OPTIONS if n not in OBJECTIVE_READS[objective]}
        opts = EnergyOptions(objective=objective, **given)
        assert all(getattr(opts, n) == v for n, v in given.items())
        assert EnergyOptions(objective=objective, ema="auto", validation="auto").objective \
            == objective
    plain = _fit("score_matching")
    same = _fit("score_matching", ema=None, buffer_size=10000, mcmc_steps=30,
                reinit_fraction=0.05, energy_reg=0.001)
    x = _data()
    assert torch.equal(plain.unnormalized_log_prob(x), same.unnormalized_log_prob(x))
    assert same.options["ema"] is None and same.options["noise_scale"] == 0.1


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_every_option_the_table_says_an_objective_reads_changes_its_fit(objective):
    x = _data()
    base = _fit(objective).unnormalized_log_prob(x)
    for name in OBJECTIVE_READS[objective]:
        # on by default (the multilevel objective's validation=0.1, ema=0.999): turn it off
        value = None if OBJECTIVE_DEFAULTS[objective].get(name) is not None else CHANGED[name]
        fit = _fit(objective, **{name: value})
        assert fit.options[name] == value
        assert not torch.equal(fit.unnormalized_log_prob(x), base), name
