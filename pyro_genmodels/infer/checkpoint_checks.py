"""The checks of a checkpoint's JSON state against its tensor table
(:func:`pyro_genmodels.infer.checkpoint.read`): keys and types, the tensors it names (each
named once, with the dtype and shape expected), one loss per step and the held-out record.
Each failure is a ``ValueError`` naming the file and what was expected and found."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

from .._file_checks import _found

#: dtypes a player's parameters may have (the file's names, as its header spells them)
FLOATS = ("F16", "BF16", "F32", "F64")

#: a tensor of the file as its header declares it (before any data is read)
_Tensor = NamedTuple("_Tensor", [("name", str), ("dtype", str), ("shape", List[int])])


class Checker:
    """Checks a checkpoint's JSON state against its tensor table, raising ``ValueError``
    naming the file and what was expected and found."""

    def __init__(self, path: Path, table: Dict[str, Tuple[str, List[int]]]) -> None:
        self.path = path
        self.table = {k: _Tensor(k, d, list(s)) for k, (d, s) in table.items()}
        self.named: set = set()

    def error(self, what: str) -> ValueError:
        return ValueError(f"{self.path} is not a valid pyro-genmodels checkpoint: {what}")

    def expect(self, ok: bool, where: str, expected: str, found: Any) -> None:
        if not ok:
            raise self.error(f"expected {where} to be {expected}, found {_found(found)}")

    def keys(self, obj: Any, where: str, required: Sequence[str],
             optional: Sequence[str] = ()) -> Any:
        self.expect(isinstance(obj, dict), where, "an object", obj)
        missing = [k for k in required if k not in obj]
        if missing:
            raise self.error(f"expected the key {missing[0]!r} in {where}, found it missing")
        extra = sorted(set(obj) - set(required) - set(optional))
        if extra:
            raise self.error(f"unexpected key(s) {extra} in {where}")
        return obj

    def tree(self, obj: Any, where: str) -> Any:
        """``obj``, in the form ``checkpoint._flatten`` writes, checked and unflattened,
        with a :class:`_Tensor` for each tensor it names."""
        if isinstance(obj, dict):
            if "__tensor__" in obj:
                key = obj["__tensor__"]
                self.expect(len(obj) == 1 and isinstance(key, str) and key in self.table,
                            where, "a reference to one of the file's tensors", key)
                self.named.add(key)
                return self.table[key]
            items = obj.get("__items__")
            self.expect(len(obj) == 1 and isinstance(items, list), where,
                        'a tensor {"__tensor__": NAME} or a mapping {"__items__": [...]}',
                        obj)
            out = {}
            for item in items or ():  # a list (checked above)
                self.expect(isinstance(item, list) and len(item) == 2
                            and type(item[0]) in (str, int), f"an item of {where}",
                            "a [key, value] pair with a string or integer key", item)
                out[item[0]] = self.tree(item[1], f"{where}.{item[0]}")
            return out
        if isinstance(obj, list):
            return [self.tree(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return obj

    def tensor(self, t: Any, where: str, dtypes: Sequence[str],
               shape: Optional[Sequence[int]] = None) -> _Tensor:
        """``t`` (unflattened) is a tensor of one of ``dtypes`` (and of ``shape``)."""
        self.expect(isinstance(t, _Tensor), where, "a tensor", t)
        if t.dtype not in dtypes or (shape is not None and t.shape != list(shape)):
            raise self.error(f"expected {where} (tensor {t.name!r}) to be {'/'.join(dtypes)}"
                             f"{'' if shape is None else f' of shape {list(shape)}'}, found "
                             f"{t.dtype} of shape {t.shape}")
        return t

    def state(self, state: Any) -> None:
        self.keys(state, "the state", ("format", "version", "seed", "fingerprint", "step",
                                       "losses", "stopped", "rng", "batches", "players"),
                  ("best",))
        seed, step, losses = state["seed"], state["step"], state["losses"]
        self.expect(type(seed) is int and seed >= 0, "'seed'", "a non-negative integer", seed)
        self.expect(isinstance(state["fingerprint"], dict), "'fingerprint'", "an object",
                    state["fingerprint"])
        self.expect(type(step) is int and step >= 0, "'step'", "a non-negative integer", step)
        self.expect(isinstance(losses, list) and all(type(v) in (int, float) for v in losses),
                    "'losses'", "an array of numbers", losses)
        if len(losses) != step:
            raise self.error(f"its step is {step}, but it holds {len(losses)} losses "
                             f"(expected one per step)")
        self.expect(state["stopped"] in (None, "early_stopping") and (
            state["stopped"] is None or "best" in state), "'stopped'",
            'null, or "early_stopping" with a held-out record', state["stopped"])
        ranks = state["rng"]
        self.expect(isinstance(ranks, list) and len(ranks) > 0, "'rng'",
                    "a non-empty array (one entry per rank)", ranks)
        for i, entry in enumerate(ranks):
            rng = self.keys(self.tree(entry, f"rng[{i}]"), f"rng[{i}]", ("torch", "python"),
                            ("cuda",))
            self.tensor(rng["torch"], f"rng[{i}].torch", ("U8",),
                        torch.get_rng_state().shape)
            py = rng["python"]  # random.getstate(): (version, 625 integers, gauss)
            self.expect(isinstance(py, list) and len(py) == 3 and type(py[0]) is int
                        and isinstance(py[1], list) and all(type(v) is int for v in py[1])
                        and (py[2] is None or type(py[2]) is float), f"rng[{i}].python",
                        "Python's random state [version, [integers], gauss]", py)
            for t in rng.get("cuda", []):
                self.tensor(t, f"rng[{i}].cuda", ("U8",))
        b = self.keys(state["batches"], "'batches'", ("pos", "generator", "perm"))
        self.tensor(self.tree(b["generator"], "batches.generator"), "batches.generator",
                    ("U8",), torch.Generator().get_state().shape)
        perm = None if b["perm"] is None else self.tensor(
            self.tree(b["perm"], "batches.perm"), "batches.perm", ("I32", "I64"))
        n = 0 if perm is None else perm.shape[0]
        self.expect(perm is None or len(perm.shape) == 1, "batches.perm", "one-dimensional",
                    perm)
        self.expect(type(b["pos"]) is int and 0 <= b["pos"] <= n, "batches.pos",
                    f"an integer in [0, {n}] (the permutation's length)", b["pos"])
        shapes = self.players(state["players"])
        if "best" in state:
            self.best(state["best"], step, shapes)
        unnamed = sorted(set(self.table) - self.named)
        if unnamed:
            raise self.error(f"it holds tensors its state does not name: {unnamed[:5]}")

    def players(self, players: Any) -> List[List[List[int]]]:
        self.expect(isinstance(players, list) and len(players) > 0, "'players'",
                    "a non-empty array", players)
        names, all_shapes = [], []
        for k, entry in enumerate(players):
            at = f"players[{k}]"
            self.keys(entry, at, ("name", "params", "shapes", "optim", "scheduler"),
                      ("objective",))
            name, params, shapes = entry["name"], entry["params"], entry["shapes"]
            self.expect(isinstance(name, str) and name not in names, f"{at}.name",
                        "a string, not another player's", name)
            names.append(name)
            self.expect(isinstance(shapes, list) and all(
                isinstance(s, list) and all(type(d) is int and d >= 0 for d in s)
                for s in shapes), f"{at}.shapes", "an array of shapes", shapes)
            params = self.tree(params, f"{at}.params")
            self.expect(isinstance(params, list) and len(params) == len(shapes),
                        f"{at}.params", f"{len(shapes)} tensors (one per shape)", params)
            for i, (p, s) in enumerate(zip(params, shapes)):
                self.tensor(p, f"{at}.params[{i}]", FLOATS, s)
            self.keys(self.tree(entry["optim"], f"{at}.optim"), f"{at}.optim",
                      ("state", "param_groups"))
            sched = self.tree(entry["scheduler"], f"{at}.scheduler")
            self.expect(isinstance(sched, dict) and type(sched.get("last_epoch")) is int,
                        f"{at}.scheduler", "a schedule's state (an integer last_epoch)", sched)
            if "objective" in entry:
                obj = self.tree(entry["objective"], f"{at}.objective")
                self.expect(isinstance(obj, list) and len(obj) > 0, f"{at}.objective",
                            "a non-empty array (one state per rank)", obj)
            all_shapes.append(shapes)
        return all_shapes

    def best(self, b: Any, step: int, shapes: List[List[List[int]]]) -> None:
        self.keys(b, "'best'", ("loss", "step", "bad", "history", "snapshot"))
        history = b["history"]
        self.expect(isinstance(history, list) and all(
            isinstance(h, list) and len(h) == 2 and type(h[0]) is int
            and type(h[1]) in (int, float) for h in history), "best.history",
            "an array of [step, held-out loss] pairs", history)
        steps = [h[0] for h in history]
        if steps != sorted(set(steps)) or any(not 1 <= s <= step for s in steps):
            raise self.error(f"expected the held-out evaluations' steps to increase within "
                             f"[1, {step}] (the checkpoint's step), found {steps[:10]}")
        # what Best.record (infer/heldout.py) makes of the history: the first strictly
        # smallest finite loss, and the number of evaluations since
        at, low = None, math.inf
        for i, (_, v) in enumerate(history):
            if math.isfinite(v) and v < low:
                at, low = i, v
        want = [None, math.inf, len(history)] if at is None else [
            history[at][0], low, len(history) - at - 1]
        found = [b["step"], b["loss"], b["bad"]]
        if found != want or [type(v) for v in found] != [type(v) for v in want]:
            raise self.error(f"its held-out record is inconsistent: best step, loss and "
                             f"evaluations since are {found}, where its history gives {want}")
        snap = self.tree(b["snapshot"], "best.snapshot")
        self.expect((snap is None) == (at is None) and (snap is None or (
            isinstance(snap, list) and len(snap) == len(shapes) and all(
                isinstance(s, list) and len(s) == len(sh) for s, sh in zip(snap, shapes)))),
            "best.snapshot", "null before a finite evaluation, then one array of tensors "
            "per player, as its parameters", b["snapshot"])
        for k, (s, sh) in enumerate(zip(snap or [], shapes)):
            for i, (t, ts) in enumerate(zip(s, sh)):
                self.tensor(t, f"best.snapshot[{k}][{i}]", FLOATS, ts)


__all__ = ["FLOATS", "Checker"]
