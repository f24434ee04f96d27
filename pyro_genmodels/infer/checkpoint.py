"""Checkpoints of the optimization loop: one safetensors file, written atomically.

A checkpoint holds everything the loop needs to go on as if it had never stopped: every
player's parameters, optimizer and schedule state, its objective's own state (e.g. a
replay buffer), the minibatch generator, permutation and position, torch's and Python's
RNG states (of every rank, for a distributed fit), the step, the loss trace, the
held-out bookkeeping and the fit's seed. In a distributed fit only rank 0 writes, and
the others wait at a barrier; every rank reads the same file to resume (a shared
directory across nodes). Tensors go into the file's tensor table; everything else is
JSON in its metadata, so reading one never unpickles.

It is written to ``checkpoint.safetensors.tmp`` and then renamed over
``checkpoint.safetensors`` (``os.replace`` is atomic), so a process killed at any moment
leaves either the previous checkpoint or the new one, never a torn file. The directory
is made and checked to take a file before the first step (:func:`prepare`).

Reading one is as careful as :func:`pyro_genmodels.load`: the header is checked before
any data is read (``_file_checks.check_header``), then the JSON
state (keys, types, the tensors it names, one loss per step, the held-out record), a
SHA-256 digest of tensors and state written with them, and finite parameters. Each
failure is a ``ValueError`` naming the file and what is wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import secrets
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pyro
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save, save_file

from .._atomic import replace_with
from .._file_checks import _found, check_header, parse_json
from .._validation import differences
from .checkpoint_checks import Checker

FILE = "checkpoint.safetensors"
FORMAT = "pyro-genmodels-checkpoint"
VERSION = 6  # 2: the minibatch generator's state, per-rank RNG states; 3: seed, digest;
#   4: with a weight average, the held-out snapshot is the average (3: the raw weights);
#   5: a conditional network's context is standardized (4's weights read c raw); 6: vi's
#   mvn guide reads its correlation factor at 100 / d above d = 100 (5's at 1)


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


def _unflatten(obj: Any, tensors: Dict[str, Any]) -> Any:
    """The inverse of :func:`_flatten` (of a state that :func:`read` checked)."""
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


def _digest(tensors: Dict[str, torch.Tensor], state_json: str) -> str:
    """SHA-256 of the tensor table (names, dtypes, shapes and bytes, as safetensors
    serializes them) and of the state's JSON text: the checkpoint, but for the digest."""
    h = hashlib.sha256(save(tensors))
    h.update(b"\0")
    h.update(state_json.encode())
    return h.hexdigest()


def _where(directory: Any) -> str:
    return repr(os.fspath(directory))


def prepare(directory: Any) -> Path:
    """Make ``directory`` ready to take checkpoints, before the first step: create it
    (with its parents) and write and remove a probe file there. A ``ValueError`` naming
    the path and the reason when it cannot be (it is a file, a parent is a file, no
    permission), so the fit fails before its training, not at the first checkpoint."""
    path = Path(directory)

    def bad(reason: str) -> ValueError:
        return ValueError(f"checkpoint={_where(directory)} cannot take checkpoints: {reason}"
                          f" (checkpoint= names a directory; the fit writes {FILE} in it)")

    for p in (path, *path.parents):  # a file on the way: mkdir's errors would not say so
        if p.exists() and not p.is_dir():
            raise bad("it is a file, not a directory" if p == path
                      else f"{str(p)!r}, on its path, is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise bad(f"it could not be created ({type(e).__name__}: {e.strerror or e})") from None
    target = path / FILE
    if target.exists() and not target.is_file():
        raise bad(f"{str(target)!r} exists and is not a file")
    probe = path / f".{FILE}.{secrets.token_hex(8)}.probe"
    try:
        probe.write_bytes(b"probe")
    except OSError as e:
        raise bad(f"no file can be written there ({type(e).__name__}: {e.strerror or e})"
                  ) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
    return path


def write(directory, players: Sequence, batches, best, step: int, losses: List[float],
          stopped: Optional[str], fingerprint: Dict[str, Any], group=None,
          seed: Optional[int] = None) -> Optional[Path]:
    """Write the loop's state after ``step`` completed steps to ``directory`` (with a
    ``group``: rank 0 writes every rank's RNG state, the others wait). ``seed``: the
    fit's seed, which a resume must run under (``None``: torch's initial seed)."""
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
        "format": FORMAT, "version": VERSION,
        "seed": int(torch.initial_seed() if seed is None else seed),
        "fingerprint": fingerprint, "step": step, "losses": losses, "stopped": stopped,
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
    text = json.dumps(state)
    target = directory / FILE
    meta = {"state": text, "sha256": _digest(tensors, text)}
    replace_with(target, lambda tmp: save_file(tensors, str(tmp), metadata=meta),
                 tmp=directory / (FILE + ".tmp"))
    if group is not None:
        distributed.barrier(group, "checkpoint barrier")
    return target


# ---------------------------------------------------------------------- reading
def _open(directory) -> Tuple[Path, Dict[str, Any], Dict[str, str], Checker]:
    """The checkpoint file in ``directory``, its checked state, its metadata and the
    checker (which knows the tensor table); reads the header alone."""
    path = Path(directory) / FILE
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {_where(directory)}: expected {FILE} "
                                f"there (written by fit(..., checkpoint=DIR))")
    try:
        table = check_header(path, path.stat().st_size)
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = parse_json(meta["state"].encode())
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path} is not a readable pyro-genmodels checkpoint: "
                         f"{type(e).__name__}: {e}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pyro-genmodels checkpoint")
    if state.get("version") != VERSION:
        raise ValueError(f"{path} is a version {state.get('version')} checkpoint; this "
                         f"pyro-genmodels resumes version {VERSION} only (what a checkpoint "
                         f"holds changed; start the fit again without resume=)")
    checker = Checker(path, table)
    try:
        checker.state(state)
    except RecursionError:
        raise checker.error("its state is nested too deeply") from None
    return path, state, meta, checker


def read(directory) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """The state and tensors of the checkpoint in ``directory``, checked (module
    docstring); ``FileNotFoundError`` when there is none, else ``ValueError``."""
    path, state, meta, checker = _open(directory)
    digest = meta.get("sha256")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise checker.error(f"expected a SHA-256 digest (64 hex digits) in its metadata, "
                            f"found {_found(digest)}")
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable pyro-genmodels checkpoint: {e}") from None
    found = _digest(tensors, meta["state"])
    if found != digest:
        raise ValueError(f"{path} is damaged: its tensors and state do not match the SHA-256 "
                         f"digest written with them (expected {digest}, found {found}); "
                         f"resume from an intact copy, or start the fit afresh")
    snapshot = (state.get("best") or {}).get("snapshot") or [[]] * len(state["players"])
    for entry, snap in zip(state["players"], snapshot):
        for what, refs in (("parameters", entry["params"]),
                           ("parameters at the best held-out evaluation", snap)):
            bad = [r["__tensor__"] for r in refs
                   if not bool(torch.isfinite(tensors[r["__tensor__"]]).all())]
            if bad:
                raise ValueError(f"{path} cannot be resumed: player {entry['name']!r}'s "
                                 f"{what} hold non-finite values (NaN or inf, in tensors "
                                 f"{bad[:5]}); resume from an earlier checkpoint, or start "
                                 f"the fit afresh")
    return state, tensors


def check_seed(state: Dict[str, Any], seed: int, directory) -> None:
    """A ``ValueError`` unless the fit runs under the seed the checkpoint was made with
    (the held-out split, the fit's own draws and ``fit.seed`` all follow it)."""
    if state["seed"] != seed:
        raise ValueError(f"The checkpoint in {_where(directory)} was made with "
                         f"seed={state['seed']}, but this fit runs under seed={seed}: resume "
                         f"with seed={state['seed']}, the seed it was made with")


def resume_seed(directory, seed: Optional[int]) -> int:
    """The seed a fit resuming from ``directory`` runs under: the checkpoint's, also when
    ``seed`` is ``None`` (so that ``fit.seed`` is right); a ``ValueError`` when ``seed``
    is another. Reads the checkpoint's header and state only: call it before any work."""
    _, state, _, _ = _open(directory)
    if seed is not None:
        check_seed(state, seed, directory)
    return int(state["seed"])


def check_fit(state: Dict[str, Any], directory, *, fingerprint: Dict[str, Any], seed: int,
              num_steps: int, heldout: bool) -> None:
    """What a resume checks before it builds anything: the seed, the fingerprint (model,
    method, data, options), the step within ``num_steps``, held-out data or none."""
    check_seed(state, seed, directory)
    saved, now, where = state["fingerprint"], json.loads(json.dumps(fingerprint)), \
        _where(directory)
    if heldout != ("best" in state):  # before the data's digest, which the split changes
        raise ValueError(f"The checkpoint in {where} was made {'without' if heldout else 'with'}"
                         f" held-out data, and this fit has {'some' if heldout else 'none'}: "
                         f"resume with the validation= of the fit that made it")
    if saved != now:
        why = {"data": " (the training and held-out rows: another validation= split "
                       "differs too)" if heldout else " (the training rows)",
               "options.num_steps": " (a fit resumes to the num_steps it started with: "
                                    "its learning-rate schedule spans them)"}
        found = differences(saved, now)
        # another family: its config's differences follow from that, and hid it
        found = [d for d in found if d[0] == "model"] or found
        said = "; ".join(f"{k} {a!r} vs {b!r}{why.get(k, '')}" for k, (a, b) in found)
        raise ValueError(f"The checkpoint in {where} is of another fit (saved vs now: "
                         f"{said}); resume with the same model, data, method and options")
    if state["step"] > num_steps:
        raise ValueError(f"The checkpoint in {where} is at step {state['step']}, beyond "
                         f"this fit's num_steps={num_steps}")


def restore(directory, players: Sequence, batches, best, fingerprint: Dict[str, Any],
            group=None, *, loaded: Optional[Tuple[Dict[str, Any], Dict[str, torch.Tensor]]]
            = None, seed: Optional[int] = None, num_steps: Optional[int] = None
            ) -> Tuple[int, List[float], Optional[str]]:
    """Load a checkpoint into the loop's live objects: returns (step, losses, stopped).
    ``loaded``: what :func:`read` returned (else it is read here); ``seed``: the fit's
    (``None``: torch's initial seed); ``num_steps``: the fit's (``None``: unchecked).
    Rank r takes rank r's RNG state; at another number of processes than the one that
    wrote it, the ranks without a saved state are reseeded (the run goes on correctly,
    but not bit for bit)."""
    state, tensors = read(directory) if loaded is None else loaded
    step, path = state["step"], Path(directory) / FILE
    rank = 0 if group is None else group.rank
    check_fit(state, directory, fingerprint=fingerprint,
              seed=int(torch.initial_seed()) if seed is None else seed,
              num_steps=step if num_steps is None else num_steps, heldout=best is not None)
    if [p["name"] for p in state["players"]] != [pl.name for pl in players]:
        raise ValueError(f"The checkpoint's players {[p['name'] for p in state['players']]} "
                         f"differ from this fit's {[pl.name for pl in players]}")

    def inconsistent(what: str) -> ValueError:
        return ValueError(f"{path} is not a consistent checkpoint of this fit: {what}")

    for pl, entry in zip(players, state["players"]):
        shapes = [list(p.shape) for p in pl.resolve()]
        if shapes != entry["shapes"]:
            raise ValueError(f"The checkpoint's parameter shapes {entry['shapes']} differ "
                             f"from this fit's {shapes}")
        if ("objective" in entry) != hasattr(pl.loss, "state_dict"):
            raise inconsistent(f"player {pl.name!r}'s objective has "
                               f"{'no ' if 'objective' in entry else ''}state here")
        last = _unflatten(entry["scheduler"], tensors)["last_epoch"]
        if last != step * pl.steps:
            raise inconsistent(f"player {pl.name!r}'s schedule made {last} steps, expected "
                               f"{step * pl.steps} ({step} rounds of {pl.steps})")
    b = state["batches"]
    perm = None if b["perm"] is None else _unflatten(b["perm"], tensors)
    if perm is not None and (perm.shape[0] != batches.n or not torch.equal(
            perm.sort().values, torch.arange(batches.n, dtype=perm.dtype))):
        raise inconsistent(f"its minibatch order is not a permutation of the "
                           f"{batches.n} rows")
    if batches.b is not None and b["pos"] % batches.b:
        raise inconsistent(f"its minibatch position {b['pos']} is not a multiple of the "
                           f"batch size {batches.b}")
    try:
        for pl, entry in zip(players, state["players"]):
            with torch.no_grad():
                for p, v in zip(pl.resolve(), _unflatten(entry["params"], tensors)):
                    p.copy_(v)
            pl.optim.load_state_dict(_unflatten(entry["optim"], tensors))
            pl.scheduler.load_state_dict(_unflatten(entry["scheduler"], tensors))
            if "objective" in entry:  # this rank's, or rank 0's at a larger world size
                saved = entry["objective"]
                pl.loss.load_state_dict(_unflatten(saved[rank if rank < len(saved) else 0],
                                                   tensors))
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
        # an optimizer's or an objective's state that its own loader refuses
        raise inconsistent(f"a state could not be loaded ({type(e).__name__}: {e})") from None
    batches.pos = b["pos"]
    batches.generator.set_state(_unflatten(b["generator"], tensors))
    batches.perm = perm
    if best is not None:
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
        from .distributed import rank_seed
        pyro.set_rng_seed(rank_seed(int(state["step"]) + len(state["rng"]), rank))
    return step, list(state["losses"]), state["stopped"]
