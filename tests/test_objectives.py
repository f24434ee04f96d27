"""Loop objectives written out are the Pyro ELBO of the family's own program: the same
value and the same gradient, for every family whose phi are all network weights."""

import functools

import pytest
import torch
from pyro.infer import Trace_ELBO

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded
from pyro_genmodels.infer import FlatPriors
from pyro_genmodels.infer.engines import PointEngine, PointOptions
from pyro_genmodels.infer.loop import Batch
from pyro_genmodels.infer.objectives import NegativeLogJoint


def _flow():
    with seeded(0):
        model = pgm.Flow(2, hidden=(8, 8), num_transforms=2, context_dim=1).double()
        x, c = torch.randn(30, 2, dtype=torch.float64), torch.randn(30, 1, dtype=torch.float64)
    model.shift.copy_(x.mean(0))
    model.x_scale.copy_(x.std(0))
    return model, x, c


def _gru():
    names = ["anna", "bob", "hannah", "otto", "eve", "ada"] * 5
    with seeded(0):
        model = pgm.AutoregressiveModel(hidden_size=8, embedding_dim=4, num_classes=2)
    model, x, c = model.prepare_data(names, [i % 2 for i in range(30)],
                                     device=torch.device("cpu"))
    with seeded(0):
        model = model.working_copy(x)
    return model, x, c


@pytest.mark.parametrize("make", [_flow, _gru], ids=["flow", "gru"])
@pytest.mark.parametrize("method", ["mle", "map"])
def test_negative_log_joint_is_pyros_elbo(make, method):
    model, x, c = make()
    idx = torch.tensor([3, 17, 5, 29, 0, 11])
    batch = Batch(idx, x, c)
    mine = NegativeLogJoint(model, with_prior=method == "map")(batch)
    program = model.model if method == "map" else FlatPriors(model.prior_sites)(model.model)
    theirs = Trace_ELBO().differentiable_loss(program, lambda *a, **k: None, x, c=c,
                                              subsample=idx)
    assert torch.allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    params = [p for p in model.parameters() if p.requires_grad]
    for a, b in zip(torch.autograd.grad(mine, params), torch.autograd.grad(theirs, params)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_the_point_engine_writes_the_loss_out_only_when_phi_are_all_weights():
    opts = PointOptions()
    assert PointEngine.writes_out(pgm.Flow(2), opts)
    assert not PointEngine.writes_out(pgm.Flow(2), PointOptions(jit=True))
    assert not PointEngine.writes_out(pgm.Gaussian(2), opts)  # latent sites: AutoDelta
    assert not PointEngine.writes_out(pgm.VAE(4, 2, hidden=(3,)), opts)  # a local guide


def _per_particle(trace, K, plates):
    """Each particle's log density summed over the trace's sample sites: ``(K,)``. Under
    the vectorized particle plate every site's log_prob is ``(K, *plate sizes)``."""
    total = torch.zeros((), dtype=torch.float64)
    for name, site in trace.nodes.items():
        if site["type"] == "sample":
            lp = site["log_prob"]
            assert lp.dim() == plates + 1 and lp.shape[0] == K, (name, lp.shape)
            total = total + lp.reshape(K, -1).sum(-1)
    return total


def _wine(cols):
    from sklearn.datasets import load_wine
    return torch.as_tensor(load_wine().data[:, :cols])  # raw columns, float64


VECTORIZED = {  # registry name -> (model, data): every family that declares the flag
    "gaussian": [lambda: (pgm.Gaussian(4, prior_scale=2.0), _wine(4)),
                 lambda: (pgm.Gaussian(1), _wine(1)),
                 lambda: (pgm.Gaussian(3, covariance=torch.eye(3)), _wine(3))],
    "ppca": [lambda: (pgm.PPCA(4, 2), _wine(4))],
}


def test_the_families_that_vectorize_particles_are_the_ones_checked_below():
    from pyro_genmodels.registry import registry
    flagged = {n for n, cls in registry().items() if cls.vectorized_particles}
    assert flagged == set(VECTORIZED)


@pytest.mark.parametrize("make", [m for ms in VECTORIZED.values() for m in ms],
                         ids=["gaussian", "gaussian-1d", "gaussian-known-cov", "ppca"])
def test_vectorized_particles_are_the_sequential_elbo_at_the_same_draws(make):
    """A family's ``vectorized_particles`` claim, against Pyro's sequential trace: the
    guide's K draws taken in one batched trace (``vectorize_particles=True``), then
    each draw replayed alone through the guide and the program. Every particle's
    log p(x, phi) - log q(phi) is the same number both ways, so the batched ELBO is the
    mean of K sequential ones exactly (and a program that mixed the particle dim into
    its data or parameters would differ or fail)."""
    import pyro
    import pyro.poutine as poutine
    from pyro.infer.autoguide import AutoMultivariateNormal
    from pyro.infer.autoguide.initialization import init_to_value

    from pyro_genmodels.infer.objectives import make_guide

    model, x = make()
    model = model.double()
    K, plates = 5, model.max_plate_nesting
    guide, _ = make_guide(model, model.model, AutoMultivariateNormal,
                          units=model.param_units(x), init_scale=0.3,
                          init_loc_fn=init_to_value(values=model.init_values(x)))

    def program(x):
        return model.model(x, num_data=x.shape[0])

    def q(x):
        return guide(x, num_data=x.shape[0])

    with pyro.get_param_store().scope(), seeded(0):
        plain = poutine.trace(q).get_trace(x)  # creates the guide's parameters
        elbo = Trace_ELBO(num_particles=K, vectorize_particles=True,
                          max_plate_nesting=plates)
        model_trace, guide_trace = elbo._get_vectorized_trace(program, q, (x,), {})
        batched = (_per_particle(model_trace, K, plates)
                   - _per_particle(guide_trace, K, plates)).detach()
        sequential = []
        for k in range(K):
            drawn = poutine.Trace()
            for name, site in guide_trace.nodes.items():
                if site["type"] == "sample":
                    shape = plain.nodes[name]["value"].shape  # one particle's
                    value = site["value"].reshape(K, -1)[k].reshape(shape)
                    drawn.add_node(name, type="sample", value=value, is_observed=False, infer={})
            g = poutine.trace(poutine.replay(q, trace=drawn)).get_trace(x)
            m = poutine.trace(poutine.replay(program, trace=g)).get_trace(x)
            sequential.append(float(m.log_prob_sum() - g.log_prob_sum()))
    sequential = torch.tensor(sequential, dtype=torch.float64)
    assert len(set(sequential.tolist())) == K  # K different draws (a mix-up would show)
    assert torch.allclose(batched, sequential, rtol=1e-12, atol=0)
    # the loss Pyro optimizes is their mean
    with pyro.get_param_store().scope(), seeded(0):
        poutine.trace(q).get_trace(x)
        with seeded(1):
            loss = elbo.differentiable_loss(program, q, x)
        with seeded(1):
            mt, gt = elbo._get_vectorized_trace(program, q, (x,), {})
    mean = (_per_particle(mt, K, plates) - _per_particle(gt, K, plates)).mean()
    assert torch.allclose(loss, -mean, rtol=1e-12, atol=0)


def test_vi_takes_its_particles_in_one_trace_where_the_family_allows(monkeypatch):
    """The engine asks Pyro for the batched trace exactly where the family declares it,
    and only with more than one particle (one particle: the same trace as before)."""
    import pyro_genmodels.infer.engines as engines

    asked = []
    real = engines.make_elbo

    def spy(*args, **kwargs):
        asked.append((kwargs["num_particles"], kwargs["vectorize_particles"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(engines, "make_elbo", spy)
    x = _wine(2)
    for model, k in [(pgm.Gaussian(2), 3), (pgm.Gaussian(2), 1),
                     (pgm.GaussianMixture(2, 2), 3)]:
        model.fit(x, method="vi", num_steps=3, num_particles=k, num_posterior_samples=5,
                  progress=False, seed=0)
    assert asked == [(3, True), (1, False), (3, False)]


def test_a_subclass_that_rewrites_the_program_claims_nothing_it_does_not_state():
    """jit_safe and vectorized_particles are claims about a program: a subclass that
    defines a method or property (model(), or a hook the program calls, such as PPCA's
    distribution; or that mixes one in) gets False unless its own body sets them; one
    that adds only attributes, classes or an __init__ keeps them. Review: a PPCA whose distribution() was its own kept
    vectorized_particles, and vi with 4 particles failed with Pyro's shape error."""
    class Rewritten(pgm.Gaussian):
        def model(self, *args, **kwargs):
            return super().model(*args, **kwargs)

    class Restated(Rewritten):
        jit_safe = True

    class Kept(pgm.Gaussian):  # the parent's program: new defaults, attributes, classes
        registry_name = "kept_gaussian_for_a_test"
        fit_class = pgm.Fit

        class Notes:
            """A nested class: not a method of the program."""

        def __init__(self, dim, prior_scale=5.0):
            super().__init__(dim, prior_scale=prior_scale)

    class Cached(pgm.PPCA):  # a hook as a cached property is a method too
        @functools.cached_property
        def distribution(self):
            return super().distribution

    class Hooked(pgm.PPCA):
        def distribution(self, params, c=None):
            w, loc, s = params["W"], params["loc"], params["sigma"]
            cov = w @ w.transpose(-1, -2) + s[..., None, None] ** 2 * torch.eye(self.dim)
            return torch.distributions.MultivariateNormal(loc, covariance_matrix=cov)

    class Mixin:
        def model(self, *args, **kwargs):
            return pgm.Gaussian.model(self, *args, **kwargs)

    class Mixed(Mixin, pgm.Gaussian):
        """Its model() is the mixin's: no method in its own body."""

    assert (Rewritten.jit_safe, Rewritten.vectorized_particles) == (False, False)
    assert (Restated.jit_safe, Restated.vectorized_particles) == (True, False)
    assert (Kept.jit_safe, Kept.vectorized_particles) == (True, True)
    assert (Hooked.jit_safe, Hooked.vectorized_particles) == (False, False)
    assert (Cached.jit_safe, Cached.vectorized_particles) == (False, False)
    assert (Mixed.jit_safe, Mixed.vectorized_particles) == (False, False)
    assert (pgm.Gaussian.jit_safe, pgm.Gaussian.vectorized_particles) == (True, True)
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    fit = Hooked(3, 1).fit(x, method="vi", num_steps=3, num_particles=4, progress=False,
                           num_posterior_samples=5)
    assert torch.isfinite(torch.as_tensor(fit.losses)).all()


@pytest.mark.parametrize("d", [3, 100, 400])
def test_the_mvn_guide_is_pyros_up_to_100_dimensions_and_its_log_q_is_exact(d):
    """MultivariateNormalGuide: with the same parameters its distribution is Pyro's
    AutoMultivariateNormal's up to d = 100 (above, the correlation factor's entries are
    taken at 100 / d); the log density of its own draw equals the float64 Gaussian's with
    its covariance, also where the factor is far from the identity."""
    import pyro
    import pyro.distributions as dist
    from pyro.infer.autoguide import AutoMultivariateNormal

    from pyro_genmodels.infer.objectives import MultivariateNormalGuide

    def model():
        pyro.sample("u", dist.Normal(torch.zeros(d), 1.0).to_event(1))

    g = torch.Generator().manual_seed(0)
    ours, pyros = MultivariateNormalGuide(model), AutoMultivariateNormal(model)
    ours(), pyros()
    with torch.no_grad():
        for q in (ours, pyros):
            q.loc.copy_(torch.randn(d, generator=g))
            q.scale_unconstrained.copy_(0.3 * torch.randn(d, generator=g))
            q.scale_tril_unconstrained.copy_(0.3 * torch.randn(d, d, generator=g).tril(-1))
            g.manual_seed(0)
        f = min(1.0, 100 / d)
        eye = torch.eye(d)
        want = pyros.scale[:, None] * (eye + f * (pyros.scale_tril - eye))
        assert torch.allclose(ours._tril(), want, atol=1e-6)
        if d <= 100:
            assert torch.allclose(ours._tril(), pyros.get_posterior().scale_tril, atol=1e-6)
        q = ours.get_posterior()
        u = q.rsample((5,))
        exact = torch.distributions.MultivariateNormal(
            ours.loc.double(), scale_tril=ours._tril().double()).log_prob(u.double())
        assert torch.allclose(q.log_prob(u).double(), exact, rtol=1e-5, atol=1e-3), (
            q.log_prob(u), exact)
