"""Checkpoints of the optimization loop: one safetensors file, written atomically.

A checkpoint holds everything the loop needs to go on as if it had never stopped: every
player's parameters, optimizer and schedule state, its objective's own state (e.g. a
replay buffer), the minibatch generator, permutation and position, torch's and Python's
RNG states (of every rank, for a distributed fit), the step, the loss trace and the
held-out bookkeeping. In a distributed fit only rank 0 writes, and the others wait at a
barrier; every rank reads the same file to resume (a shared directory across nodes). Tensors go into the file's tensor
table; everything else is JSON in its metadata, so reading one never unpickles.

It is written to ``checkpoint.safetensors.tmp`` and then renamed over
``checkpoint.safetensors`` (``os.replace`` is atomic), so a process killed at any moment
leaves either the previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

FILE = "checkpoint.safetensors"
FORMAT = "pyro-genmodels-checkpoint"
VERSION = 2  # 2: the minibatch generator's state, per-rank RNG states


def _flatten(obj: Any, key: str, tensors: Dict[str, torch.Tensor]) -> Any:
    """JSON form of nested dicts/lists with tensors moved into ``tensors`` by path."""
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().cpu().clone().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__items__": [[k, _flatten(v, f"{key}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _unflatten(obj: Any, tensors: Dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        return {k: _unflatten(v, tensors) for k, v in obj["__items__"]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def _rng_state() -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def write(directory, players: Sequence, batches, best, step: int, losses: List[float],
          stopped: Optional[str], fingerprint: Dict[str, Any], group=None) -> Optional[Path]:
    """Write the loop's state after ``step`` completed steps to ``directory`` (with a
    ``group``: rank 0 writes every rank's RNG state, the others wait)."""
    from . import distributed

    # what differs between ranks: RNG states and objectives' own state (a replay buffer)
    mine = {"rng": _rng_state(),
            "objectives": [pl.loss.state_dict() if hasattr(pl.loss, "state_dict") else None
                           for pl in players]}
    ranks = [mine] if group is None else distributed.gather(
        mine, group, "checkpoint's per-rank state gathering", step)
    if group is not None and not group.main:
        distributed.barrier(group, "checkpoint barrier")
        return None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: Dict[str, torch.Tensor] = {}
    state: Dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "fingerprint": fingerprint, "step": step,
        "losses": losses, "stopped": stopped,
        "rng": [_flatten(r["rng"], f"rng.{i}", tensors) for i, r in enumerate(ranks)],
        "batches": {"pos": batches.pos,
                    "generator": _flatten(batches.generator.get_state(), "batches.gen",
                                          tensors),
                    "perm": None if batches.perm is None
                    else _flatten(batches.perm, "batches.perm", tensors)},
        "players": [],
    }
    for k, pl in enumerate(players):
        entry = {"name": pl.name,
                 "params": [_flatten(p, f"{pl.name}.param.{i}", tensors)
                            for i, p in enumerate(pl.resolve())],
                 "shapes": [list(p.shape) for p in pl.resolve()],
                 "optim": _flatten(pl.optim.state_dict(), f"{pl.name}.optim", tensors),
                 "scheduler": _flatten(pl.scheduler.state_dict(), f"{pl.name}.sched", tensors)}
        if hasattr(pl.loss, "state_dict"):  # one per rank
            entry["objective"] = [_flatten(r["objectives"][k], f"{pl.name}.objective.{i}",
                                           tensors) for i, r in enumerate(ranks)]
        state["players"].append(entry)
    if best is not None:
        state["best"] = {"loss": best.loss, "step": best.step, "bad": best.bad,
                         "history": best.history,
                         "snapshot": _flatten(best.snapshot, "best", tensors)}
    target = directory / FILE
    tmp = directory / (FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"state": json.dumps(state)})
    os.replace(tmp, target)
    if group is not None:
        distributed.barrier(group, "checkpoint barrier")
    return target


def read(directory) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """The state and tensors of the checkpoint in ``directory``, with clear errors."""
    path = Path(directory) / FILE
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {str(directory)!r}: expected {FILE} there "
                                f"(written by fit(..., checkpoint=DIR))")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        state = json.loads(meta["state"])
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path} is not a readable pyro-genmodels checkpoint: {e}") from None
    if state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pyro-genmodels checkpoint")
    if state.get("version") != VERSION:
        raise ValueError(f"{path} is a version {state.get('version')} checkpoint; this "
                         f"pyro-genmodels resumes version {VERSION} only")
    return state, tensors


def restore(directory, players: Sequence, batches, best, fingerprint: Dict[str, Any],
            group=None) -> Tuple[int, List[float], Optional[str]]:
    """Load a checkpoint into the loop's live objects: returns (step, losses, stopped).
    Rank r takes rank r's RNG state; at another number of processes than the one that
    wrote it, the ranks without a saved state are reseeded (the run goes on correctly,
    but not bit for bit)."""
    state, tensors = read(directory)
    saved = state["fingerprint"]
    if saved != json.loads(json.dumps(fingerprint)):
        diff = {k: (saved.get(k), fingerprint.get(k)) for k in set(saved) | set(fingerprint)
                if saved.get(k) != fingerprint.get(k)}
        raise ValueError(f"The checkpoint in {str(directory)!r} is of another fit "
                         f"(saved vs now: {diff}); resume with the same model, data, method "
                         f"and options")
    if [p["name"] for p in state["players"]] != [pl.name for pl in players]:
        raise ValueError(f"The checkpoint's players {[p['name'] for p in state['players']]} "
                         f"differ from this fit's {[pl.name for pl in players]}")
    rank = 0 if group is None else group.rank
    for pl, entry in zip(players, state["players"]):
        params = pl.resolve()
        shapes = [list(p.shape) for p in params]
        if shapes != entry["shapes"]:
            raise ValueError(f"The checkpoint's parameter shapes {entry['shapes']} differ "
                             f"from this fit's {shapes}")
        with torch.no_grad():
            for p, v in zip(params, _unflatten(entry["params"], tensors)):
                p.copy_(v)
        pl.optim.load_state_dict(_unflatten(entry["optim"], tensors))
        pl.scheduler.load_state_dict(_unflatten(entry["scheduler"], tensors))
        if "objective" in entry:  # this rank's, or rank 0's at a larger world size
            saved = entry["objective"]
            pl.loss.load_state_dict(_unflatten(saved[rank if rank < len(saved) else 0],
                                               tensors))
    b = state["batches"]
    batches.pos = b["pos"]
    batches.generator.set_state(_unflatten(b["generator"], tensors))
    batches.perm = None if b["perm"] is None else _unflatten(b["perm"], tensors)
    if best is not None and "best" in state:
        sb = state["best"]
        best.loss, best.step, best.bad = sb["loss"], sb["step"], sb["bad"]
        best.history = [tuple(h) for h in sb["history"]]
        snap = _unflatten(sb["snapshot"], tensors)
        best.snapshot = None if snap is None else [
            [t.to(p.device) for t, p in zip(s, pl.resolve())] for s, pl in zip(snap, players)]
    if rank < len(state["rng"]):
        rng = _unflatten(state["rng"][rank], tensors)
        torch.set_rng_state(rng["torch"])
        py = rng["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    else:
        import pyro

        from .distributed import rank_seed
        pyro.set_rng_seed(rank_seed(int(state["step"]) + len(state["rng"]), rank))
    return state["step"], list(state["losses"]), state["stopped"]
