r"""A simplified value-and-gradient graph as a pure function of its data, kept across fits.

:class:`~pyro_genmodels.infer.potential.GradientGraph` traces a posterior's value and
gradient with the fit's data bound in as constants, then
:func:`~pyro_genmodels.infer.simplify.simplify` folds every operation that depends on
the data alone (about a third of a mixture's) into constants computed once. The work that
finds those operations (the rewrites, ``split_const_subgraphs``, generating their Python)
took 0.15 s of the 0.19 s a mixture's graph took to build, and it depends only on the
graph, not on the data's values. So it is done once per shape and kept (:class:`Reusable`):

- ``prepare(*data)``: the folded operations, as a function of the data (the leaves) and
  the trace's constants; run once per fit;
- ``main(z, *inputs)``: the rest, every constant it reads (the leaves, what ``prepare``
  gave, the trace's own) an input, not an attribute; replayed by ``torch.jit.trace``
  per fit, which no longer bakes any of them in.

A fit then costs one call of ``prepare`` and one trace of ``main`` (with the checks of a
reused graph, 0.02-0.03 s for the mixture of ``tests/test_diagnostics.py``) rather than
0.19 s. Both run the operations
the simplified graph runs, on the same values in the same order, so a fit draws bit for
bit what it drew when each fit simplified its own graph. A constant that an operation
writes in place (none in this package's families) is copied for each fit, so no fit
sees another's writes.
"""

from __future__ import annotations

import importlib
import operator
import threading
import weakref
from typing import Any, Callable, Dict, FrozenSet, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import fx
from torch.utils import _pytree as pytree
from torch._subclasses.fake_tensor import DynamicOutputShapeException, FakeTensor

from .simplify import _written

#: the attribute under which :func:`~pyro_genmodels.infer.potential._bind` puts leaf ``i``
#: (1-based: input 0 is ``z``)
LEAF = "_leaf{}"


class Reusable(NamedTuple):
    """A simplified graph split into ``prepare`` (the data's part) and ``main``."""

    #: the folded constants (a tensor or a tuple of them) of the inputs that
    #: ``prepare_names`` names
    prepare: Optional[fx.GraphModule]
    prepare_names: Tuple[str, ...]
    #: the names under which ``main`` reads ``prepare``'s outputs, in their order
    folded_names: Tuple[str, ...]
    #: the graph's outputs of ``z`` and the inputs that ``main_names`` names
    main: fx.GraphModule
    main_names: Tuple[str, ...]
    #: the trace's own constants by name (shared by every fit, read only)
    constants: Dict[str, torch.Tensor]
    #: the names of inputs that an operation writes in place (each fit its own copy)
    written: FrozenSet[str]
    num_ops: int
    num_ops_simplified: int

    @property
    def nbytes(self) -> int:
        """The bytes of the constants it keeps (none of them is a fit's data)."""
        return sum(t.numel() * t.element_size() for t in self.constants.values())

    def inputs(self, leaves: Sequence[torch.Tensor], device: torch.device) -> List[Any]:
        """``main``'s inputs after ``z`` for a fit whose leaves are ``leaves``."""
        values: Dict[str, Any] = dict(self.constants)
        values.update((LEAF.format(i + 1), leaf) for i, leaf in enumerate(leaves))
        if self.prepare is not None:
            out = self.prepare(*(values[n] for n in self.prepare_names))
            outs = out if isinstance(out, (tuple, list)) else (out,)
            values.update(zip(self.folded_names, (_folded(o, device) for o in outs)))
        return [values[n].clone() if n in self.written else values[n]
                for n in self.main_names]


def _folded(value: Any, device: torch.device) -> torch.Tensor:
    """A folded constant as ``FoldedGraphModule.run_folding`` stores it (an int becomes a
    float tensor of one element, as it does there)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    return torch.Tensor([value]).to(device=device)


def _attrs_as_inputs(gm: fx.GraphModule, lists: Tuple[str, ...] = ()
                     ) -> Tuple[fx.GraphModule, Tuple[str, ...]]:
    """``gm``'s graph with every attribute it reads made an input after its own inputs
    (one per attribute name, in the order first read; an attribute named in ``lists``, a
    list that the graph indexes, one per item, named ``"{name}.{index}"``); returns it and
    the names."""
    graph, env = fx.Graph(), {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            env[node] = graph.placeholder(node.name)
            env[node].meta = dict(node.meta)
    attrs: Dict[str, fx.Node] = {}

    def attr(name: str, like: fx.Node) -> fx.Node:
        if name not in attrs:
            attrs[name] = graph.placeholder(f"input_{len(attrs)}")
            attrs[name].meta = dict(like.meta)
        return attrs[name]

    for node in gm.graph.nodes:
        if node.op == "get_attr" and node.target in lists:
            for user in node.users:
                if user.target is not operator.getitem or not isinstance(user.args[1], int):
                    raise TypeError(f"the graph reads list {node.target!r} by {user}")
                env[user] = attr(f"{node.target}.{user.args[1]}", user)
        elif node.op == "get_attr":
            env[node] = attr(node.target, node)
    for node in gm.graph.nodes:
        if node not in env and not (node.op == "get_attr" and node.target in lists):
            env[node] = graph.node_copy(node, lambda n: env[n])
    for node in graph.nodes:  # a bound leaf's record is the fit's data: keep its shape only
        value = node.meta.get("val")
        if isinstance(value, torch.Tensor) and not isinstance(value, FakeTensor):
            node.meta = {**node.meta, "val": torch.empty_strided(
                value.shape, value.stride(), dtype=value.dtype, device="meta")}
    return fx.GraphModule(torch.nn.Module(), graph), tuple(attrs)


def split(simplified: fx.GraphModule, traced: fx.GraphModule, num_leaves: int,
          num_ops: int, num_ops_simplified: int) -> Reusable:
    """The :class:`Reusable` form of ``simplified`` (what
    :func:`~pyro_genmodels.infer.simplify.simplify` gave for ``traced`` with its
    ``num_leaves`` leaves bound as constants: a ``FoldedGraphModule`` whose folding has
    run, or the bound graph itself)."""
    leaf_names = {LEAF.format(i + 1) for i in range(num_leaves)}
    written = frozenset(str(n.target) for n in _written(simplified.graph)
                        if n.op == "get_attr")
    prepare: Optional[fx.GraphModule] = None
    prepare_names: Tuple[str, ...] = ()
    folded_names: Tuple[str, ...] = ()
    sub = getattr(simplified, "const_subgraph_module", None)
    prefix = getattr(simplified, "fx_const_folded_attrs_name", None)
    lists: Tuple[str, ...] = ()
    if sub is not None and prefix is not None:
        prepare, prepare_names = _attrs_as_inputs(sub)
        kept = getattr(simplified, prefix)
        if isinstance(kept, torch.nn.ParameterList):
            folded_names, lists = tuple(f"{prefix}.{i}" for i in range(len(kept))), (prefix,)
        else:
            folded_names = (prefix,)
    main, main_names = _attrs_as_inputs(simplified, lists)
    constants: Dict[str, torch.Tensor] = {}
    for module, names in ((simplified, main_names), (sub, prepare_names)):
        for name in set(names) - leaf_names - set(folded_names) - set(constants):
            try:  # a constant written in place: as traced, before any call wrote it
                value = operator.attrgetter(name)(traced if name in written else module)
            except AttributeError:
                value = operator.attrgetter(name)(module)
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"the graph reads a {type(value).__name__} attribute "
                                f"{name!r}, not a tensor")
            constants[name] = value
    return Reusable(prepare, prepare_names, folded_names, main, main_names, constants,
                    written, num_ops, num_ops_simplified)


#: :func:`inductor`'s compiled functions, per graph (kept while the graph is) and per
#: layout of its inputs (``None``: a graph that Inductor alone does not compile)
_COMPILED: "weakref.WeakKeyDictionary[fx.GraphModule, Dict[Any, Optional[Callable]]]" = \
    weakref.WeakKeyDictionary()
_COMPILE_LOCK = threading.Lock()


def inductor(graph: fx.GraphModule, example: Sequence[torch.Tensor]) -> Callable[..., Any]:
    """``graph`` (ATen operations, as ``make_fx`` leaves them) compiled by Inductor for
    inputs laid out as ``example`` (shapes, strides, dtypes, devices), giving what
    ``graph`` gives; compiled once per graph and layout in the process.

    ``torch._inductor.compile`` compiles an FX graph without TorchDynamo, so a call runs
    Inductor's generated code and nothing else: ``torch.compile`` of the same graph put
    TorchDynamo's frame evaluation, its guards and a configuration switch before every
    call, 73 against 34 microseconds per value and gradient of the SBC mixture of
    ``tests/test_diagnostics.py`` (one thread; its kernels take 2 of them), the same
    kernels. With no guards, a call must come with inputs laid out as ``example``:
    the generated code asserts every input's size and stride but not its dtype or device,
    so :class:`~pyro_genmodels.infer.potential.GradientGraph` checks the shape, stride,
    dtype and device of ``z`` first (its other inputs are the fit's own).
    Inductor takes one flat tuple of outputs, so the graph is compiled with its outputs
    flattened and the result is put back into their structure.

    A graph that indexes with a boolean mask among its inputs (the correlation factor of
    a full covariance: ``Gaussian(D)``, ``GaussianMixture(D, K)``, D >= 2) has an output
    shape that depends on the mask's values, which Inductor alone does not compile; that
    graph goes through ``torch.compile``, whose TorchDynamo front end does. The first
    compile in a process takes about as long either way (6-8 s for that mixture, with
    Inductor's cache of earlier processes; 15-19 s without)."""
    layout = tuple((t.shape, t.stride(), t.dtype, t.device) for t in example)
    with _COMPILE_LOCK:
        per_layout = _COMPILED.setdefault(graph, {})
        if layout not in per_layout:
            compiler = importlib.import_module("torch._inductor")  # heavy: only when asked
            flat = fx.Graph()
            out = flat.graph_copy(graph.graph, {})
            leaves, spec = pytree.tree_flatten(out)
            flat.output(tuple(leaves))
            try:
                run = compiler.compile(fx.GraphModule(graph, flat), list(example))
            except DynamicOutputShapeException:  # a boolean mask among the inputs
                per_layout[layout] = None
            else:
                def fn(*inputs: torch.Tensor, run=run, spec=spec) -> Any:
                    return pytree.tree_unflatten(list(run(*inputs)), spec)

                per_layout[layout] = fn
        compiled = per_layout[layout]
    # not kept: the compiled module holds the graph, which would then never be released
    # (TorchDynamo keeps its compiled code with the graph's code, for the next fit)
    return compiled if compiled is not None else \
        torch.compile(graph, fullgraph=True, dynamic=False)
