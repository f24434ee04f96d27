r"""Fewer operations in a traced value-and-gradient graph, the same values.

A graph that ``make_fx`` records from a log density and its gradient
(:class:`~pyro_genmodels.infer.potential.GradientGraph`) is a list of ATen operations on
tensors whose shapes are fixed by the trace. On a CPU, replaying a small posterior's graph
costs about 1 us per operation whatever its size (``Gaussian(3)`` on 500 rows: 312
operations, about 0.3 ms), so an operation removed is time saved at every leapfrog step.
Many do nothing at the traced shapes, and others depend on no input:

- *identities*: ``x * 1``, ``x / 1``, ``x + 0``, ``x - 0`` where the result has ``x``'s
  shape and dtype, and a ``view``, ``reshape``, ``expand``, ``permute`` or ``alias`` whose
  result has its input's shape and strides (a transform's ``log_abs_det_jacobian`` of
  ``identity`` is ``zeros_like(x)``; ``biject_to(positive)`` is ``exp(x) * 1 + 0``);
- *shape-only tensors*: ``zeros_like(x)``, ``ones_like(x)``, ``full_like(x, v)``,
  ``x.new_zeros(s)``, ``x.new_ones(s)``, ``x.new_full(s, v)`` read only ``x``'s shape,
  which the trace fixed: they become constants;
- *repeats*: the same operation on the same arguments (common-subexpression
  elimination);
- *constants*: every operation whose arguments are all constants (the data, a prior's
  normalizer, LKJ's ``lgamma`` terms) runs once, here (torch.fx's
  ``split_const_subgraphs``), not at every call.

None of them touches a tensor that an in-place operation writes (``index_put_`` into a
``new_zeros``, as ``CorrCholeskyTransform`` does), any view of it, or an operation that
reads one: a constant written at every call, or two merged buffers, would carry state
from call to call. Random operations (``randn``, ``bernoulli``, ...) are never merged.

Each rewrite gives the same value bit for bit (``x * 1`` and ``x + 0`` are exact in IEEE
arithmetic, up to the sign of a zero), and :func:`simplify` keeps the original graph
whenever the simplified one does not reproduce its outputs at the traced input, twice
(a guard against a rewrite this module did not foresee). Measured on one thread, per call of the
graph (medians of 5 interleaved runs of 2000 calls, two measurements):
``Gaussian(3)``'s posterior on 500 rows, 312 operations become 218 and 0.32-0.34 ms
become 0.23-0.24 ms (one chain; 4 chains: 308 -> 209, 0.38 -> 0.28-0.30 ms);
``GaussianMixture(3, 2)``, 382 -> 274, 0.43-0.44 -> 0.32 ms. In
``benchmarks/bench_posterior.py`` that took the 4-chain ``chees`` on the Gaussian from
1.05 to 1.32-1.36 times warm NumPyro's ESS per second, and one chain of the fused NUTS
from 2.0 to 2.8-2.9 times Pyro's NUTS (docs/guide.md).
"""

from __future__ import annotations

import math
import operator
import warnings
from typing import Any, Callable, Dict, Optional, Set

import torch
from torch import fx

aten = torch.ops.aten

#: elementwise ops that return their first argument when the second is this scalar
_IDENTITY_SCALARS: Dict[Any, float] = {
    aten.mul.Tensor: 1.0, aten.mul.Scalar: 1.0, aten.div.Tensor: 1.0, aten.div.Scalar: 1.0,
    aten.add.Tensor: 0.0, aten.add.Scalar: 0.0, aten.sub.Tensor: 0.0, aten.sub.Scalar: 0.0,
}
#: ops that return a view of their first argument (the same tensor when nothing changes)
_VIEWS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default,
          aten.expand.default, aten.permute.default, aten.alias.default}
#: ops whose value depends only on their first argument's (traced) shape, dtype and device
_SHAPE_ONLY: Dict[Any, Callable[[torch.Tensor, tuple], torch.Tensor]] = {
    aten.zeros_like.default: lambda like, a: torch.zeros_like(like),
    aten.ones_like.default: lambda like, a: torch.ones_like(like),
    aten.full_like.default: lambda like, a: torch.full_like(like, a[1]),
    aten.new_zeros.default: lambda like, a: like.new_zeros(a[1]),
    aten.new_ones.default: lambda like, a: like.new_ones(a[1]),
    aten.new_full.default: lambda like, a: like.new_full(a[1], a[2]),
}


def _val(node: Any) -> Optional[torch.Tensor]:
    v = node.meta.get("val") if isinstance(node, fx.Node) else None
    return v if isinstance(v, torch.Tensor) else None


def _schema(node: fx.Node):
    return getattr(node.target, "_schema", None) if node.op == "call_function" else None


def _written(graph: fx.Graph) -> Set[fx.Node]:
    """The nodes whose tensors an in-place operation writes, with everything that aliases
    them (views of them, what they view, in-place results) and every operation that reads
    any of those: the part of the graph whose values depend on the order of the writes."""
    parent: Dict[fx.Node, fx.Node] = {}

    def root(n: fx.Node) -> fx.Node:
        while n in parent:
            n = parent[n]
        return n

    writes = []
    for n in graph.nodes:
        schema = _schema(n)
        if schema is None:
            continue
        if schema.returns and schema.returns[0].alias_info is not None \
                and n.args and isinstance(n.args[0], fx.Node):  # aliases its first argument
            a, b = root(n), root(n.args[0])
            if a is not b:
                parent[a] = b
        for i, arg in enumerate(schema.arguments):
            if arg.alias_info is not None and arg.alias_info.is_write:
                v = n.args[i] if i < len(n.args) else n.kwargs.get(arg.name)
                if isinstance(v, fx.Node):
                    writes.append(v)
    groups = {root(w) for w in writes}
    out = {n for n in graph.nodes if n.op != "output" and root(n) in groups}
    out |= {u for n in list(out) for u in n.users if u.op != "output"}
    return out


def _same_tensor_shape(a: Optional[torch.Tensor], b: Optional[torch.Tensor],
                       strides: bool) -> bool:
    return (a is not None and b is not None and a.shape == b.shape and a.dtype == b.dtype
            and (not strides or a.stride() == b.stride()))


def _is_identity(node: fx.Node) -> bool:
    """Whether ``node`` returns its first argument's value unchanged."""
    if node.op != "call_function" or not node.args or not isinstance(node.args[0], fx.Node):
        return False
    out, src = _val(node), _val(node.args[0])
    if node.target in _VIEWS:
        return _same_tensor_shape(out, src, strides=True)
    if node.target in _IDENTITY_SCALARS and len(node.args) == 2 and not node.kwargs:
        other = node.args[1]
        return (isinstance(other, (int, float)) and not isinstance(other, bool)
                and float(other) == _IDENTITY_SCALARS[node.target]
                and _same_tensor_shape(out, src, strides=False))
    return False


def _constants_for_shape_only_ops(gm: fx.GraphModule, keep: Set[fx.Node]) -> int:
    """Replace every shape-only op not in ``keep`` by a constant buffer; returns how many."""
    n = 0
    for node in list(gm.graph.nodes):
        make = _SHAPE_ONLY.get(node.target) if node.op == "call_function" else None
        like = _val(node.args[0]) if make is not None and node.args else None
        out = _val(node)
        if make is None or like is None or out is None or node in keep or any(
                k not in ("dtype", "layout", "device", "pin_memory") for k in node.kwargs):
            continue
        try:
            with torch.no_grad():
                value = make(torch.empty_strided(like.shape, like.stride(), dtype=like.dtype,
                                                 device=like.device), tuple(node.args))
        except Exception:  # an argument this module does not understand: leave the op
            continue
        if value.shape != out.shape or value.dtype != out.dtype:
            continue
        name = f"_simplify_constant_{n}"
        gm.register_buffer(name, value)
        with gm.graph.inserting_before(node):
            attr = gm.graph.get_attr(name)
        attr.meta = dict(node.meta)
        node.replace_all_uses_with(attr)
        gm.graph.erase_node(node)
        n += 1
    return n


def _remove_identities(gm: fx.GraphModule, keep: Set[fx.Node]) -> int:
    n = 0
    for node in list(gm.graph.nodes):
        if node not in keep and node.args and node.args[0] not in keep and _is_identity(node):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            n += 1
    return n


def _key(value: Any) -> Any:
    """A hashable stand-in for an op's argument (lists become tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _key(v)) for k, v in value.items()))
    hash(value)  # TypeError for what cannot be compared: the op is left alone
    if isinstance(value, float):  # 0.0 == -0.0, but x * 0.0 and x * -0.0 differ
        return (float, value, math.copysign(1.0, value))
    return (type(value), value)


def _merge_repeats(gm: fx.GraphModule, keep: Set[fx.Node]) -> int:
    """Common-subexpression elimination of the deterministic, pure ops not in ``keep``."""
    seen: Dict[Any, fx.Node] = {}
    n = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node in keep or node.is_impure() or (
                isinstance(node.target, torch._ops.OpOverload)
                and torch.Tag.nondeterministic_seeded in node.target.tags):
            continue
        try:
            key = (node.target, _key(node.args), _key(node.kwargs))
        except TypeError:
            continue
        if key in seen:
            node.replace_all_uses_with(seen[key])
            gm.graph.erase_node(node)
            n += 1
        else:
            seen[key] = node
    return n


def count_ops(gm: fx.GraphModule) -> int:
    """The operations ``gm`` runs per call (``getitem`` of a tuple not counted)."""
    return sum(1 for n in gm.graph.nodes
               if n.op == "call_function" and n.target is not operator.getitem)


def _same(want: Any, got: Any) -> bool:
    a, b = torch.utils._pytree.tree_leaves(want), torch.utils._pytree.tree_leaves(got)
    return len(a) == len(b) and all(  # exactly: every rewrite keeps the bits
        x.shape == y.shape and x.dtype == y.dtype
        and bool(((x == y) | (torch.isnan(x) & torch.isnan(y))).all()) for x, y in zip(a, b))


def simplify(gm: fx.GraphModule, example: torch.Tensor) -> fx.GraphModule:
    """A graph computing what ``gm`` (a ``make_fx`` graph of one tensor input) computes, with
    the rewrites of the module docstring; ``gm`` itself if the result's outputs at
    ``example`` differ from ``gm``'s in either of two calls (or a rewrite fails)."""
    from torch.fx.experimental.const_fold import split_const_subgraphs

    try:
        work = fx.GraphModule(gm, gm.graph.__deepcopy__())  # shares gm's constants, read-only
        keep = _written(work.graph)
        _constants_for_shape_only_ops(work, keep)
        _remove_identities(work, keep)
        _merge_repeats(work, keep)
        work.graph.eliminate_dead_code()
        work.recompile()
        with warnings.catch_warnings():  # its get_attr of a folded constant: expected
            warnings.filterwarnings("ignore", message="Attempted to insert a get_attr Node")
            folded = split_const_subgraphs(work, skip_folding_node_fn=keep.__contains__,
                                           device_for_folded_attrs=str(example.device))
            folded.run_folding()
        with torch.no_grad():
            want = gm(example)
            if not (_same(want, folded(example)) and _same(want, folded(example))):
                return gm
        return folded
    except Exception:  # the torch.fx passes refuse some graphs: keep the one that works
        return gm
