"""A fit runs apart from its caller's autograd mode and Pyro effect handlers: called in an
evaluation function (``torch.no_grad()``, ``torch.inference_mode()``) or inside the
caller's own Pyro program (``poutine.trace``, ``pyro.plate``, ``poutine.scale``), it is
the fit made at top level, and the caller's handlers are in place again afterwards."""

import contextlib

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded

CALLERS = {
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
    "trace": poutine.trace,
    "plate": lambda: pyro.plate("outer", 3),
    "scale": lambda: poutine.scale(scale=0.5),
}
FITS = {
    "gaussian-map": (lambda: pgm.Gaussian(2), dict(method="map", num_steps=20)),
    "gaussian-nuts": (lambda: pgm.Gaussian(2), dict(method="nuts", num_samples=10,
                                                    warmup_steps=10, num_chains=1)),
    "flow-mle": (lambda: pgm.Flow(2, hidden=(8,), num_transforms=1),
                 dict(method="mle", num_steps=5)),
}


def _fit(name, x):
    make, kw = FITS[name]
    with seeded(0):
        model = make()
    return model.fit(x, seed=0, progress=False, **kw)


@pytest.fixture(scope="module")
def data():
    return pgm.datasets.correlated_gaussian(100, dim=2, seed=0)[0]


@pytest.mark.parametrize("fit_name", sorted(FITS))
@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_a_fit_under_the_callers_mode_or_handlers_is_the_top_level_fit(data, caller,
                                                                        fit_name):
    top = _fit(fit_name, data)
    with CALLERS[caller]():  # (a no_grad or a handler left torch's or Pyro's error)
        inside = _fit(fit_name, data)
    assert inside.losses == top.losses
    assert inside.params.keys() == top.params.keys()
    assert all(torch.equal(inside.params[k], v) for k, v in top.params.items())
    assert all(torch.equal(a, b) for a, b in zip(inside.model.state_dict().values(),
                                                 top.model.state_dict().values()))


def test_the_callers_handlers_work_again_after_the_fit(data):
    """The fit's sites never reach the caller's trace, and the caller's own sites after
    the fit do, inside the caller's plate."""
    def program():
        with pyro.plate("rows", 3):
            pyro.sample("before", dist.Normal(0.0, 1.0))
            pgm.Gaussian(2).fit(data, method="map", seed=0, progress=False, num_steps=5)
            pyro.sample("after", dist.Normal(0.0, 1.0))

    tr = poutine.trace(program).get_trace()
    assert [n for n in tr.stochastic_nodes if n != "rows"] == ["before", "after"]  # (a plate site)
    assert tr.nodes["after"]["value"].shape == (3,)
    assert pyro.poutine.runtime._PYRO_STACK == []
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        _fit("gaussian-map", data)
        assert not torch.is_grad_enabled()  # the caller's mode, back
