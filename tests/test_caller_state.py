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
from pyro.infer import config_enumerate

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded

#: callers that change torch's mode: every fit trains as at top level under them
MODES = {
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
    "autocast": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
}
#: callers that are Pyro effect handlers: fits whose loss or potential Pyro traces
HANDLERS = {
    "trace": poutine.trace,
    "plate": lambda: pyro.plate("outer", 3),
    "scale": lambda: poutine.scale(scale=0.5),
}
FITS = {
    "gaussian-map": (lambda: pgm.Gaussian(2), dict(method="map", num_steps=20)),
    "gaussian-vi": (lambda: pgm.Gaussian(2), dict(method="vi", num_steps=20,
                                                  num_posterior_samples=5)),
    "gaussian-nuts": (lambda: pgm.Gaussian(2), dict(method="nuts", num_samples=10,
                                                    warmup_steps=10, num_chains=1,
                                                    sampler="pyro")),
    "flow-mle": (lambda: pgm.Flow(2, hidden=(8,), num_transforms=1),
                 dict(method="mle", num_steps=5)),
}
# (a caller's poutine.scale never reached Pyro's NUTS as the package drives it: no case)
CASES = ([(m, f) for m in sorted(MODES) for f in sorted(FITS)]
         + [(h, f) for h in sorted(HANDLERS) for f in sorted(FITS) if f != "flow-mle"
            and (h, f) != ("scale", "gaussian-nuts")])


def _fit(name, x):
    make, kw = FITS[name]
    with seeded(0):
        model = make()
    return model.fit(x, seed=0, progress=False, **kw)


@pytest.fixture(scope="module")
def data():
    return pgm.datasets.correlated_gaussian(100, dim=2, seed=0)[0]


@pytest.mark.parametrize("caller,fit_name", CASES)
def test_a_fit_under_the_callers_mode_or_handlers_is_the_top_level_fit(data, caller,
                                                                        fit_name):
    """(A flow's loss is its own, not Pyro's trace: handlers never reached it.)"""
    top = _fit(fit_name, data)
    with {**MODES, **HANDLERS}[caller]():  # no_grad: torch's error; trace: Pyro's
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


def test_an_enumerating_fit_leaves_the_callers_enumeration_as_it_was(data):
    """A mixture's fit enumerates its labels (TraceEnum_ELBO), which resets Pyro's global
    enumeration allocator: a caller enumerating around it got its next site at another
    dimension, with the first site's entry gone."""
    @config_enumerate
    def program(fit_inside):
        pyro.sample("a", dist.Categorical(torch.ones(3)))
        if fit_inside:
            pgm.GaussianMixture(2, 2).fit(data, method="map", seed=0, progress=False,
                                          num_steps=2)
        pyro.sample("b", dist.Categorical(torch.ones(3)))

    def site_b(fit_inside):
        tr = poutine.trace(poutine.enum(program, first_available_dim=-1)).get_trace(
            fit_inside)
        b = tr.nodes["b"]
        return b["value"].shape, b["infer"]["_enumerate_dim"], b["infer"]["_dim_to_id"]

    assert site_b(True) == site_b(False) == ((3, 1), -2, {-2: 1, -1: 0})


def test_pgm_seeded_builds_the_same_network_and_gives_the_generators_back():
    """``pgm.seeded(s)`` (public): two Flows built under the same seed have the same
    initial weights, under another seed other weights; the caller's torch, NumPy and
    Python generators are as they were after the block (the next draws are the same as
    without it)."""
    import random

    import numpy as np

    def build(seed):
        with pgm.seeded(seed):
            return [p.detach().clone() for p in pgm.Flow(2, hidden=(8,)).parameters()]

    state = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    a, b, other = build(5), build(5), build(6)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, other))
    assert torch.equal(torch.get_rng_state(), state[0])
    now = np.random.get_state()  # (name, keys, position, has_gauss, cached_gaussian)
    assert now[0] == state[1][0] and now[1].tolist() == state[1][1].tolist()
    assert now[2:] == state[1][2:]
    assert random.getstate() == state[2]
