"""Loop objectives written out are the Pyro ELBO of the family's own program: the same
value and the same gradient, for every family whose phi are all network weights."""

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
