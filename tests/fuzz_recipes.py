"""Recipes of tests/test_fuzz.py: Hypothesis strategies that draw a *recipe* (a small
dict of plain values: which rows, which dtype, which container, where a NaN goes, which
option gets which value), and the functions that apply a recipe to a case's valid data.

A recipe lists only what it changes; the empty recipe is the valid input, so Hypothesis
shrinks a failure to the fewest changes that still break the call, and a recipe printed
in a failure report can be pasted into a regression test as it is.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
import torch
from hypothesis import strategies as st

NAN, INF = float("nan"), float("inf")


def _mutations(axes: Dict[str, Any], max_changes: int = 2):
    """A recipe: up to ``max_changes`` axes of ``axes`` (axis -> strategy of its value),
    the rest left at their valid defaults."""
    @st.composite
    def draw(draw_):
        picked = draw_(st.lists(st.sampled_from(sorted(axes)), max_size=max_changes,
                                unique=True))
        return {axis: draw_(axes[axis]) for axis in sorted(picked)}
    return draw()


def _pick(values):
    return st.sampled_from(values)


# ---------------------------------------------------------------------- numeric rows
_BAD_CELLS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6),
                                _pick([NAN, INF, -INF])), min_size=1, max_size=3)
_NUMERIC_C_CONDITIONAL = ["none", "one_row", "rows-1", "width+1", "width-1", "nan", "int",
                          "list", "1d", "object", "bool", "huge"]
NUMERIC_AXES = {
    "rows": _pick([1, 2, 5, 0]),
    "width": _pick([-1, 1, "zero"]),
    "dtype": _pick(["float64", "float16", "bfloat16", "int64", "int8", "uint8", "bool",
                    "complex64", "object", "str"]),
    "container": _pick(["numpy", "list", "pandas", "tuple", "noncontiguous",
                        "requires_grad", "ragged", "flat", "3d", "scalar", "none", "string",
                        "dict", "generator"]),
    "scale": _pick([1e30, -1e30, 1e-30, 1e6, 1e300, 0.0, 1e-320]),
    "bad": _BAD_CELLS,
    "constant": st.just(True),
}


def numeric_recipe(conditional: bool, max_changes: int = 2):
    axes = dict(NUMERIC_AXES)
    axes["c"] = _pick(_NUMERIC_C_CONDITIONAL if conditional else ["zeros"])
    return _mutations(axes, max_changes)


def _row_index(n: int, rows: Any) -> List[int]:
    return list(range(n)) if rows == "all" else [i % n for i in range(rows)]


def _to_dtype(x: torch.Tensor, dtype: str):
    """``x`` (float64) as a numpy array of ``dtype`` (a torch tensor for bfloat16)."""
    arr = x.numpy()
    if dtype == "bfloat16":
        return x.to(torch.bfloat16)
    with np.errstate(invalid="ignore", over="ignore"):
        if dtype in ("float64", "float32", "float16", "complex64"):
            return arr.astype(dtype)
        if dtype in ("int64", "int8", "uint8"):
            return np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0).clip(
                np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)
        if dtype == "bool":
            return arr != 0
        if dtype == "object":
            return arr.astype(object)
        if dtype == "str":
            return arr.astype(str)
    raise AssertionError(dtype)


def _contain(arr: Any, container: str) -> Any:
    """Wrap an array (or a bfloat16 tensor) the way a user might pass it."""
    is_tensor = isinstance(arr, torch.Tensor)
    numeric = is_tensor or arr.dtype.kind in "biufc"
    if container == "tensor":
        return arr if is_tensor or not numeric else torch.from_numpy(np.ascontiguousarray(arr))
    if container == "numpy":
        return arr.float().numpy() if is_tensor else arr
    if container in ("list", "tuple", "ragged", "generator", "pandas"):
        rows = (arr.float() if is_tensor else arr).tolist()
        if container == "tuple":
            return tuple(tuple(r) if isinstance(r, list) else r for r in rows)
        if container == "ragged":
            if rows and isinstance(rows[0], list) and rows[0]:
                rows[0] = rows[0][:-1]
            return rows
        if container == "generator":
            return (r for r in rows)
        return pd.DataFrame(arr.float().numpy() if is_tensor else arr)
    if container == "noncontiguous":
        if is_tensor:
            return arr.t().contiguous().t()
        return torch.from_numpy(np.asfortranarray(arr)) if numeric and arr.ndim == 2 else arr
    if container == "requires_grad":
        t = arr if is_tensor else (torch.from_numpy(np.ascontiguousarray(arr)) if numeric
                                   else None)
        if t is None or not t.is_floating_point():
            return arr
        return t.clone().requires_grad_(True)
    if container == "flat":
        return arr.reshape(-1)
    if container == "3d":
        return arr[None]
    if container == "scalar":
        flat = arr.reshape(-1)
        return flat[0] if len(flat) else 0.0
    if container == "none":
        return None
    if container == "string":
        return "data.csv"
    if container == "dict":
        return {"x": arr}
    raise AssertionError(container)


def apply_numeric(x: torch.Tensor, c: Optional[torch.Tensor], recipe: Dict[str, Any]
                  ) -> Tuple[Any, Any]:
    """The ``(x, c)`` that ``recipe`` makes of valid rows ``x`` ``(N, D)`` and their ``c``."""
    x = x.detach().double()
    idx = _row_index(x.shape[0], recipe.get("rows", "all"))
    x = x[idx]
    c = None if c is None else c[idx]
    if recipe.get("constant"):
        x = x[:1].expand(len(idx), -1).clone() if len(idx) else x
    width = recipe.get("width", 0)
    if width == -1:
        x = x[:, :-1]
    elif width == 1:
        x = torch.cat([x, torch.zeros(x.shape[0], 1, dtype=x.dtype)], 1)
    elif width == "zero":
        x = x[:, :0]
    x = x * recipe.get("scale", 1.0)
    if x.numel():
        for i, j, v in recipe.get("bad", []):
            x[i % x.shape[0], j % x.shape[1]] = v
    arr = _to_dtype(x, recipe.get("dtype", "float32"))
    return _contain(arr, recipe.get("container", "tensor")), _apply_c(c, recipe.get("c"),
                                                                      len(idx))


def _apply_c(c: Optional[torch.Tensor], mode: Optional[str], n: int) -> Any:
    if mode is None:
        return c
    if mode == "zeros":
        return torch.zeros(n, 2)
    if c is None:
        return None
    if mode == "none":
        return None
    if c.dim() == 1:  # class labels (sequence models)
        return _apply_labels(c, mode)
    if mode == "one_row":
        return c[:1]
    if mode == "rows-1":
        return c[:-1]
    if mode == "width+1":
        return torch.cat([c, torch.zeros(c.shape[0], 1)], 1)
    if mode == "width-1":
        return c[:, :-1]
    if mode == "nan":
        c = c.clone()
        if c.numel():
            c[0, 0] = NAN
        return c
    if mode == "int":
        return c.round().long()
    if mode == "list":
        return c.tolist()
    if mode == "1d":
        return c[:, 0]
    if mode == "object":
        return np.array(c.tolist(), dtype=object)
    if mode == "bool":
        return c > 0
    if mode == "huge":
        return c * 1e30
    raise AssertionError(mode)


# ---------------------------------------------------------------------- class labels
_LABEL_MODES = ["none", "rows-1", "float", "negative", "out_of_range", "2d", "list", "str",
                "bool", "one_label", "scalar", "nan"]


def _apply_labels(c: torch.Tensor, mode: str) -> Any:
    if mode == "rows-1":
        return c[:-1]
    if mode == "float":
        return c.double() + 0.5
    if mode == "negative":
        return c - 5
    if mode == "out_of_range":
        return c + 5
    if mode == "2d":
        return c[:, None]
    if mode == "list":
        return c.tolist()
    if mode == "str":
        return ["a"] * len(c)
    if mode == "bool":
        return c.bool()
    if mode == "one_label":
        return c[:1]
    if mode == "scalar":
        return 1
    if mode == "nan":
        return torch.full((len(c),), NAN)
    raise AssertionError(mode)


# ---------------------------------------------------------------------- text
_TEXT_EDITS = ["empty", "unknown", "unicode", "nul", "long", "int", "none", "bytes",
               "chars_list", "nan", "space"]
TEXT_AXES = {
    "rows": _pick([1, 2, 0]),
    "edits": st.lists(st.tuples(st.integers(0, 10**6), _pick(_TEXT_EDITS)), min_size=1,
                      max_size=2),
    "container": _pick(["tuple", "numpy", "pandas", "string", "generator", "set", "dict",
                        "nested", "tensor"]),
    "all_empty": st.just(True),
}


def text_recipe(conditional: bool, max_changes: int = 2):
    axes = dict(TEXT_AXES)
    axes["c"] = _pick(_LABEL_MODES if conditional else ["labels"])
    return _mutations(axes, max_changes)


_TEXT_ITEM = {"empty": "", "unknown": "abz", "unicode": "aé☃", "nul": "a\x00b",
              "long": "abc" * 40, "int": 5, "none": None, "bytes": b"ab",
              "chars_list": ["a", "b"], "nan": NAN, "space": "a b"}


def apply_text(x: List[str], c: Optional[torch.Tensor], recipe: Dict[str, Any]
               ) -> Tuple[Any, Any]:
    idx = _row_index(len(x), recipe.get("rows", "all"))
    items: List[Any] = [x[i] for i in idx]
    c = None if c is None else c[idx]
    if recipe.get("all_empty"):
        items = [""] * len(items)
    for pos, kind in recipe.get("edits", []):
        if items:
            items[pos % len(items)] = _TEXT_ITEM[kind]
    mode = recipe.get("c")
    if mode == "labels":
        c = torch.zeros(len(items), dtype=torch.long)
    elif mode is not None:
        c = _apply_c(c, mode, len(items))
    container = recipe.get("container")
    if container is None:
        return items, c
    if container == "tuple":
        return tuple(items), c
    if container == "numpy":
        return np.array(items, dtype=object), c
    if container == "pandas":
        return pd.Series(items, dtype=object), c
    if container == "string":
        return "".join(s if isinstance(s, str) else "" for s in items), c
    if container == "generator":
        return (s for s in items), c
    if container == "set":
        return set(s for s in items if isinstance(s, str)), c
    if container == "dict":
        return {"x": items}, c
    if container == "nested":
        return [items], c
    if container == "tensor":
        return torch.tensor([[ord(ch) for ch in s[:1] or "a"] for s in items
                             if isinstance(s, str)] or [[0]]), c
    raise AssertionError(container)


# ---------------------------------------------------------------------- token ids
_TOKEN_EDITS = ["id_K", "negative", "huge", "float", "bool", "empty_seq", "nested", "str",
                "np_int", "tensor_row", "none", "long"]
TOKEN_AXES = {
    "rows": _pick([1, 2, 0]),
    "edits": st.lists(st.tuples(st.integers(0, 10**6), _pick(_TOKEN_EDITS)), min_size=1,
                      max_size=2),
    "container": _pick(["tuple", "tensor", "numpy", "string", "generator"]),
}


def token_recipe(max_changes: int = 2):
    return _mutations(TOKEN_AXES, max_changes)


def _token_item(kind: str, seq: List[int], vocab_size: int) -> Any:
    if kind == "id_K":
        return seq + [vocab_size]
    if kind == "negative":
        return seq + [-1]
    if kind == "huge":
        return seq + [2**40]
    if kind == "float":
        return seq + [1.5]
    if kind == "bool":
        return seq + [True]
    if kind == "empty_seq":
        return []
    if kind == "nested":
        return [seq]
    if kind == "str":
        return "ab"
    if kind == "np_int":
        return [np.int64(v) for v in seq] + [np.int64(1)]
    if kind == "tensor_row":
        return torch.tensor(seq + [0], dtype=torch.long)
    if kind == "none":
        return None
    if kind == "long":
        return [0, 1, 2] * 40
    raise AssertionError(kind)


def apply_tokens(x: List[List[int]], vocab_size: int, recipe: Dict[str, Any]) -> Any:
    idx = _row_index(len(x), recipe.get("rows", "all"))
    items: List[Any] = [list(x[i]) for i in idx]
    for pos, kind in recipe.get("edits", []):
        if items:
            i = pos % len(items)
            base = items[i] if isinstance(items[i], list) else [0]
            items[i] = _token_item(kind, [v for v in base if isinstance(v, int)], vocab_size)
    container = recipe.get("container")
    if container is None:
        return items
    if container == "tuple":
        return tuple(items)
    if container == "tensor":
        try:
            return torch.tensor(items)
        except Exception:  # noqa: BLE001 - ragged: the user's padded guess
            width = max((len(s) for s in items if isinstance(s, list)), default=0)
            return torch.zeros(len(items), width, dtype=torch.long)
    if container == "numpy":
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out
    if container == "string":
        return "012"
    if container == "generator":
        return (s for s in items)
    raise AssertionError(container)


PADDED_AXES = {
    "rows": _pick([1, 2, 0]),
    "width": _pick(["zero", "one"]),
    "dtype": _pick(["int32", "int8", "uint8", "bool", "float", "float_int"]),
    "bad_id": _pick(["K", "neg", "huge"]),
    "lengths": _pick(["neg", "too_long", "float", "wrong_count", "2d", "list", "none",
                      "numpy", "scalar", "bool"]),
    "mask": _pick(["int", "wrong_shape", "holes", "all_false", "none", "list", "float",
                   "first_false"]),
    "both": st.just(True),
    "container": _pick(["list", "numpy", "3d", "1d"]),
}


def padded_recipe(max_changes: int = 2):
    return _mutations(PADDED_AXES, max_changes)


def apply_padded(x: torch.Tensor, options: Dict[str, Any], vocab_size: int,
                 recipe: Dict[str, Any]) -> Tuple[Any, Dict[str, Any]]:
    """Padded ids ``(N, L)`` with ``lengths=`` or ``mask=``, changed by ``recipe``."""
    lengths = options.get("lengths")
    mask = options.get("mask")
    if lengths is None:
        lengths = mask.sum(1)
    idx = _row_index(x.shape[0], recipe.get("rows", "all"))
    x, lengths = x[idx].clone(), lengths[idx].clone()
    if recipe.get("width") == "zero":
        x, lengths = x[:, :0], torch.zeros_like(lengths)
    elif recipe.get("width") == "one":
        x, lengths = x[:, :1], lengths.clamp(max=1)
    bad = recipe.get("bad_id")
    if bad is not None and bool((lengths > 0).any()):
        row = int((lengths > 0).nonzero()[0])
        x[row, 0] = {"K": vocab_size, "neg": -1, "huge": 2**40}[bad]
    mask = torch.arange(x.shape[1]) < lengths[:, None]
    dtype = recipe.get("dtype")
    if dtype in ("int32", "int8", "uint8"):
        x = x.clamp(min=0).to(getattr(torch, dtype)) if dtype == "uint8" else \
            x.clamp(-128, 127).to(getattr(torch, dtype)) if dtype == "int8" else x.int()
    elif dtype == "bool":
        x = x.bool()
    elif dtype == "float":
        x = x.float() + 0.25
    elif dtype == "float_int":
        x = x.float()
    use_lengths = "lengths" in options
    out: Dict[str, Any] = {"lengths": lengths} if use_lengths else {"mask": mask}
    lm = recipe.get("lengths")
    if lm is not None and use_lengths:
        out["lengths"] = {
            "neg": lambda: lengths - 10, "too_long": lambda: lengths + x.shape[1] + 1,
            "float": lambda: lengths.float() + 0.5, "wrong_count": lambda: lengths[:-1],
            "2d": lambda: lengths[:, None], "list": lambda: lengths.tolist(),
            "none": lambda: None, "numpy": lambda: lengths.numpy(),
            "scalar": lambda: 2, "bool": lambda: lengths > 0}[lm]()
    mm = recipe.get("mask")
    if mm is not None and not use_lengths:
        def holes():
            m = mask.clone()
            if m.numel():
                m[:, ::2] = False
                m[:, 1::2] = True
            return m

        def first_false():
            m = mask.clone()
            if m.numel():
                m[:, 0] = False
            return m
        out["mask"] = {
            "int": lambda: mask.long(), "wrong_shape": lambda: mask[:, :-1],
            "holes": holes, "all_false": lambda: torch.zeros_like(mask),
            "none": lambda: None, "list": lambda: mask.tolist(), "float": lambda: mask.float(),
            "first_false": first_false}[mm]()
    if recipe.get("both"):
        out["lengths" if not use_lengths else "mask"] = lengths if not use_lengths else mask
    container = recipe.get("container")
    if container == "list":
        x = x.tolist()
    elif container == "numpy":
        x = x.numpy()
    elif container == "3d":
        x = x[None]
    elif container == "1d":
        x = x.reshape(-1)
    return x, out


# ---------------------------------------------------------------------- option values
HUGE_STEPS = 10**9  # with a callback that stops at once (the loop must not size by it)


class StopAt:
    """A callback that stops the loop after ``step`` (printable in a recipe)."""

    def __init__(self, step: int):
        self.step = step

    def __call__(self, step, loss):
        return step >= self.step

    def __repr__(self) -> str:
        return f"StopAt({self.step})"


class NotCallable:
    def __repr__(self) -> str:
        return "NotCallable()"


GENERIC_BAD = [-1, 0, -0.5, NAN, INF, "bogus", 2.5, None, [], True, {"a": 1}]

OPTION_VALUES: Dict[str, List[Any]] = {
    "num_steps": [0, -1, 1, 2.5, "3", True, NAN, np.int64(2), HUGE_STEPS],
    "lr": [0.0, -0.1, NAN, INF, "0.01", 1e30, 1e-30, True, None],
    "lr_decay": [0, -0.5, 1.5, 1.0, 1e-30, NAN, "0.5"],
    "batch_size": [0, -1, 1, 2, 10**9, 2.5, "8", True, np.int64(4)],
    "optimizer": ["bogus", "sgd", "rmsprop", "adagrad", "adamw", 3, None, torch.optim.SGD,
                  NotCallable()],
    "grad_clip": [0, -1, NAN, 1e-30, "1", 1e30, INF],
    "callback": [NotCallable(), "stop", StopAt(0)],
    "validation": [0.0, 1.0, 0.5, 0.99, -0.1, 1.5, "0.1", NAN, 2, True, "rows:0",
                   "rows:wide", "rows:nan", "rows:valid", "rows:list"],
    "patience": [0, -1, 1, 2.5, "2"],
    "validate_every": [0, -1, 1, 2.5],
    "checkpoint_every": [0, -1, 2.5],
    "checkpoint": [3, 2.5],
    "resume": [3, 2.5],
    "distributed": ["yes", 1, None],
    "jit": ["yes", 1, True, False],
    "num_particles": [0, -1, 2, 2.5, "2"],
    "num_posterior_samples": [0, -1, 1, 2.5],
    "init_scale": [0, -1, NAN, 1e30, 1e-30],
    "guide": ["bogus", 3, None, "normal", "mvn", "delta"],
    "num_samples": [0, -1, 1, 2.5, "2"],
    "warmup_steps": [-1, 0, 2.5, "2"],
    "num_chains": [0, -1, 1, 2.5],
    "target_accept_prob": [0, 1, 1.5, -0.1, NAN, "0.8", None],
    "full_mass": ["yes", 2, True],
    "jit_compile": ["yes", 2],
    "init_jitter": [0, -1, NAN, "a", None],
    "max_tree_depth": [0, -1, 1, 2.5],
    "trajectory_length": [0, -1, NAN, 1e-30, None],
    "tol": [0, -1, NAN, 1e30, "a", None],
    "reg_covar": [0, -1, NAN, 1e30, "a"],
}
SPECIAL_OPTIONS = ["__unknown__", "__method__", "__seed__", "__device__", "__c__"]
UNKNOWN_NAMES = ["num_stepz", "lengths", "mask", "Lr", "x", "progres"]
METHODS = ["gibbs", "", None, 3, "MLE", ["mle"], "mle "]
SEEDS = [-1, 2**31, 2**32, 2**63, 1.5, "0", True, np.int64(3), None, 0]
DEVICES = ["cpu", "bogus", "cuda:99", 3, "meta"]


def option_recipe(option_names: List[str]):
    """One option (of the engine's, or a special: an unknown name, the method, the seed,
    the device, a ``c`` where none belongs) and a value for it."""
    names = sorted(option_names) + SPECIAL_OPTIONS

    @st.composite
    def draw(draw_):
        name = draw_(_pick(names))
        if name == "__unknown__":
            return {"unknown": draw_(_pick(UNKNOWN_NAMES)), "value": draw_(_pick([1, None]))}
        if name == "__method__":
            return {"method": draw_(_pick(METHODS))}
        if name == "__seed__":
            return {"seed": draw_(_pick(SEEDS))}
        if name == "__device__":
            return {"device": draw_(_pick(DEVICES))}
        if name == "__c__":
            return {"c_mode": draw_(_pick(["zeros", "none", "list", "nan"]))}
        return {"option": name, "value": draw_(_pick(OPTION_VALUES.get(name, GENERIC_BAD)))}
    return draw()


# ---------------------------------------------------------------------- constructor values
CONFIG_VALUES = {
    "int": [0, -1, 2.5, "3", None, True, NAN, 1000, 1, np.int64(2)],
    "float": [0.0, -1.0, NAN, INF, "1.0", None, 1e-30, 1e30, True],
    "str": ["bogus", "", None, 3],
    "list": [[], [0], [-1], [2.5], "16", 16, None, [16, "a"], [1000]],
    "bool": ["yes", 2, None, 0],
    "none": [0, -1, "x", 2.5, [], [1.0, -1.0], True, 1000, "linear11", "module_str"],
    "tensor": ["nonpd", "nan", "wrong_shape", "list", "int", "zeros", "str"],
}


def value_kind(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, torch.Tensor):
        return "tensor"
    return "none"


def constructor_recipe(config: Dict[str, Any]):
    keys = sorted(config) + ["__unknown__"]

    @st.composite
    def draw(draw_):
        key = draw_(_pick(keys))
        if key == "__unknown__":
            return {"key": "bogus_argument", "value": 1}
        return {"key": key, "value": draw_(_pick(CONFIG_VALUES[value_kind(config[key])]))}
    return draw()


def constructor_value(value: Any, old: Any) -> Any:
    """Resolve the named values of :data:`CONFIG_VALUES` against the key's valid value."""
    if value == "linear11":
        return torch.nn.Linear(1, 1)
    if value == "module_str":
        return "mlp"
    if isinstance(old, torch.Tensor) and isinstance(value, str):
        return {"nonpd": lambda: -torch.eye(old.shape[0]),
                "nan": lambda: torch.full_like(old, NAN),
                "wrong_shape": lambda: torch.eye(old.shape[0] + 1),
                "list": lambda: old.tolist(), "int": lambda: old.long(),
                "zeros": lambda: torch.zeros_like(old), "str": lambda: "eye"}[value]()
    return value
