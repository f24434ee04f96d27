"""The traced-graph simplification (pyro_genmodels.infer.simplify): fewer operations, the
same outputs bit for bit, and the original graph whenever a rewrite would change them."""

import pyro
import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

import pyro_genmodels as pgm
from pyro_genmodels.infer import simplify as simp
from pyro_genmodels.infer.mcmc import _enumeration
from pyro_genmodels.infer.objectives import traced_execution
from pyro_genmodels.infer.potential import FusedPotential, GradientGraph

aten = torch.ops.aten
CONST = torch.tensor([0.5, 2.0, -1.0])


def _leaves(out):
    return torch.utils._pytree.tree_leaves(out)


def _targets(gm):
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def _density(z):
    """Every kind of rewrite once: identities, shape-only tensors, a repeat, a constant."""
    a = torch.exp(z) * 1 + 0.0                      # biject_to(positive)'s exp(x) * 1 + 0
    b = a.view(a.shape).permute(0, 1) - 0           # a view and a permute that do nothing
    jac = torch.zeros_like(z).sum(-1)               # identity transform's log-det-Jacobian
    norm = torch.lgamma(CONST + 1.0).sum()          # a prior's normalizer: no input in it
    return (b * CONST).sum(-1) - (z * z).sum(-1) - (z * z).sum(-1) + jac - norm


def _graph(fn, z):
    def summed(x):
        lp = fn(x)
        return lp.sum(), lp
    return make_fx(torch.func.grad_and_value(summed, has_aux=True))(z)


def test_every_rewrite_removes_its_operations_and_keeps_the_values_bit_for_bit():
    z = torch.randn(4, 3)
    gm = _graph(_density, z)
    out = simp.simplify(gm, z)
    assert out is not gm
    before, after = _targets(gm), _targets(out)
    assert simp.count_ops(out) < simp.count_ops(gm)
    # the identities and the shape-only ops are gone; so are the constant lgamma and the
    # repeated z * z
    for op in (aten.zeros_like.default, aten.permute.default, aten.lgamma.default):
        assert op in before and op not in after, op
    assert after.count(aten.mul.Tensor) < before.count(aten.mul.Tensor)
    for x in (z, torch.randn(4, 3), torch.full((4, 3), -0.7)):
        for want, got in zip(_leaves(gm(x)), _leaves(out(x))):
            assert torch.equal(want, got)


def test_a_rewrite_that_would_change_the_outputs_gives_back_the_original_graph(monkeypatch):
    # pretend that x * 2 is an identity: the check at the traced input catches it
    monkeypatch.setitem(simp._IDENTITY_SCALARS, aten.mul.Tensor, 2.0)
    z = torch.randn(4, 3)
    gm = _graph(lambda x: (x * 2).pow(2).sum(-1), z)
    assert simp.simplify(gm, z) is gm


def test_shape_changing_views_and_broadcasting_adds_stay():
    z = torch.randn(4, 3)
    gm = _graph(lambda x: (x.reshape(3, 4).t() + torch.zeros(4, 1)).sum(-1)
                + x.expand(2, 4, 3).sum((0, -1)), z)
    out = simp.simplify(gm, z)
    for want, got in zip(_leaves(gm(z)), _leaves(out(z))):
        assert torch.equal(want, got)
    assert aten.expand.default in _targets(out)


@pytest.mark.parametrize("family", ["gaussian", "mixture"])
def test_a_posterior_graph_loses_a_quarter_of_its_operations_and_none_of_its_values(family):
    torch.manual_seed(0)
    x, _ = pgm.datasets.correlated_gaussian(200, dim=3, seed=0)
    model = pgm.Gaussian(3) if family == "gaussian" else pgm.GaussianMixture(3, 2)
    model.fit(x, method="map", seed=0, num_steps=5, progress=False)
    potential = FusedPotential(model, x.float(), None, **_enumeration(model))
    z0 = potential.initial_points(4, 0.5)
    with pyro.validation_enabled(False), traced_execution():
        graph = GradientGraph(potential.log_density, z0, "jit")
        assert graph.num_ops_simplified <= 0.8 * graph.num_ops
        for z in (z0, z0 + 0.3 * torch.randn_like(z0)):
            lp, grad = graph.value_and_grad(z)
            with torch.enable_grad():
                zz = z.clone().requires_grad_(True)
                ref = potential.log_density(zz)
                (ref_grad,) = torch.autograd.grad(ref.sum(), zz)
            torch.testing.assert_close(lp, ref.detach(), rtol=1e-5, atol=1e-4)
            torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-4)


def _accumulating(z):
    """An in-place write into a tensor made from z's shape (as CorrCholeskyTransform does)."""
    buf = torch.zeros_like(z)
    buf.index_put_((torch.tensor([0, 1]),), z[:2] * 1, accumulate=True)
    return (buf * buf).sum(-1) + torch.exp(z).sum(-1) * 1


def _two_buffers(z):
    """Two equal expressions, each written in place: merged, they would be one buffer."""
    a = torch.zeros_like(z)
    a.add_(z)
    b = torch.zeros_like(z)
    b.add_(2 * z)
    return (a * b).sum(-1) + 0.0


@pytest.mark.parametrize("fn", [_accumulating, _two_buffers])
def test_tensors_written_in_place_stay_out_of_every_rewrite(fn):
    z = torch.randn(4, 3)
    gm = _graph(fn, z)
    out = simp.simplify(gm, z)
    assert out is not gm  # simplified, not the guard's fallback
    assert after_count(out, aten.zeros_like.default) == after_count(gm, aten.zeros_like.default)
    for x in (z, z, torch.randn(4, 3), torch.randn(4, 3)):  # no state from call to call
        for want, got in zip(_leaves(gm(x)), _leaves(out(x))):
            assert torch.equal(want, got)


def after_count(gm, op):
    return _targets(gm).count(op)


def test_random_operations_are_never_merged():
    z = torch.randn(4, 3)
    gm = _graph(lambda x: (x * torch.randn(4, 3)).sum(-1) - (x * torch.randn(4, 3)).sum(-1)
                + (x * x).sum(-1) + (x * x).sum(-1), z)
    before = after_count(gm, aten.mul.Tensor)
    assert simp._merge_repeats(gm, set()) >= 1  # the repeated x * x ...
    assert after_count(gm, aten.randn.default) == 2  # ... but not the two draws
    assert after_count(gm, aten.mul.Tensor) < before


def test_the_samplers_draw_the_same_chains_bit_for_bit_with_and_without_it(monkeypatch):
    """End to end: ChEES on a fit's fused potential, the fused NUTS, and ChEES on a user's
    traced log density (in-place ops in its cross-entropy's gradient) give the same draws
    from the same seed whether the graph is simplified or not."""
    from pyro_genmodels.infer import potential as potential_module

    x, _ = pgm.datasets.correlated_gaussian(100, dim=2, seed=1)
    g = torch.Generator().manual_seed(0)
    a, w = torch.randn(200, 3, generator=g), torch.randn(3, generator=g)
    y = torch.bernoulli(torch.sigmoid(a @ w), generator=g)

    def logistic(v):
        lik = -torch.nn.functional.binary_cross_entropy_with_logits(
            v @ a.T, y.expand(v.shape[0], -1), reduction="none").sum(-1)
        return lik - 0.5 * v.pow(2).sum(-1)

    def draws():
        kw = dict(seed=3, progress=False, num_samples=40, warmup_steps=60)
        chees = pgm.Gaussian(2).fit(x, method="chees", num_chains=4, **kw)
        nuts = pgm.Gaussian(2).fit(x, method="nuts", sampler="fused", num_chains=1, **kw)
        energy = pgm.EnergyModel.from_log_density(logistic, 3).sample_chains(
            160, sampler="chees", num_chains=4, warmup_steps=60, seed=3, jit_compile=True)
        return [chees.posterior["scale"], nuts.posterior["scale"], energy.samples]

    real, simplified_graphs = potential_module.simplify, []

    def recording(graph, example):
        out = real(graph, example)
        simplified_graphs.append(out is not graph)
        return out

    monkeypatch.setattr(potential_module, "simplify", recording)
    simplified = draws()
    assert len(simplified_graphs) == 3 and all(simplified_graphs)  # none fell back
    monkeypatch.setattr(potential_module, "simplify", lambda graph, example: graph)
    for want, got in zip(draws(), simplified):
        assert torch.equal(want, got)


@pytest.mark.slow  # three compiles: 5-30 s
def test_inductor_compiles_once_keeps_the_output_structure_and_lets_a_mask_through():
    """:func:`~pyro_genmodels.infer.reuse.inductor`: Inductor without TorchDynamo, once
    per graph and input layout; the nested outputs come back nested; the compiled
    function does not keep its graph alive; a graph that indexes with a boolean mask
    input (the output's shape depends on its values) goes through ``torch.compile``."""
    import gc
    import weakref

    from torch.fx.experimental.proxy_tensor import make_fx

    from pyro_genmodels.infer.reuse import _COMPILED, inductor

    def f(z, w):
        lp = -(z * w).pow(2).sum(-1)
        return 2 * z, (lp.sum(), lp)

    z, w = torch.randn(3, 2), torch.rand(2)
    graph = make_fx(f)(z, w)
    fn = inductor(graph, (z, w))
    assert inductor(graph, (z, w)) is fn
    z2 = torch.randn(3, 2)
    (a, (b, c)), (a0, (b0, c0)) = fn(z2, w), f(z2, w)
    for got, want in ((a, a0), (b, b0), (c, c0)):
        assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-6)
    assert inductor(graph, (torch.randn(4, 2), w)) is not fn  # another layout
    alive = weakref.ref(graph)
    del graph  # fn, still held here, must not keep its graph (the cache's key) alive
    gc.collect()
    assert alive() is None and fn(z2, w)[0].shape == (3, 2)

    def masked(z, mask):
        return (z[:, mask] ** 2).sum(-1)

    mask = torch.tensor([True, False])
    graph = make_fx(masked)(z, mask)
    for _ in range(2):  # the second call finds the graph known to need TorchDynamo
        fn = inductor(graph, (z, mask))
        assert list(_COMPILED[graph].values()) == [None]
        assert torch.allclose(fn(z2, mask), masked(z2, mask))


@pytest.mark.slow  # one compile: 3-15 s
def test_a_compiled_graph_takes_a_batch_of_another_layout():
    """Inductor's code asserts the strides it was compiled for: a batch of the traced
    shape laid out otherwise (a column slice) is made contiguous, not refused."""
    from pyro_genmodels.infer.potential import GradientGraph

    def f(x):
        return -0.5 * x.pow(2).sum(-1)

    graph = GradientGraph(f, torch.randn(3, 2), "torch.compile")
    z = torch.randn(3, 4)[:, :2]
    assert not z.is_contiguous()
    lp, grad = graph.value_and_grad(z)
    assert torch.allclose(lp, f(z)) and torch.allclose(grad, -z)
