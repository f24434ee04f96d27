"""What the ``pyro-genmodels`` command reads and writes, each failure one ``error:`` line
(a ``SystemExit`` with the message): ``--arg`` / ``--option`` pairs, data files (through
:mod:`._readers`, which says what each kind may hold), the model configuration of a
saved run, output files and the check that ``--out`` can be written before any work
starts."""

from __future__ import annotations

import ast
import csv
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import _readers
from ._atomic import replace_with
from ._validation import RowError

#: .npy files larger than this are fitted streamed (pyro_genmodels.infer.streaming)
STREAM_BYTES = 256 * 2**20


_WORDS = {"true": True, "false": False, "none": None, "null": None}


def parse_pairs(pairs: List[str], what: str,
                flags: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """``key=value`` pairs: each value a Python literal (``3``, ``1e-3``, ``[64, 64]``,
    ``True``; also ``true``, ``false``, ``none``, ``null`` in any case), else the text.
    A key given twice is refused (the last one won in silence), and so is one of
    ``flags``, which a flag of the command sets (``seed``: ``--seed``), named with it."""
    out: Dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: {what} must look like key=value, got {pair!r}")
        if flags and key in flags:
            raise SystemExit(f"error: {what} {key}=...: the command sets it with {flags[key]}")
        if key in out:
            raise SystemExit(f"error: {what} {key} given twice ({key}={out[key]!r}, then "
                             f"{pair!r}): give it once")
        if value.strip().lower() in _WORDS:
            out[key] = _WORDS[value.strip().lower()]
            continue
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError, RecursionError, MemoryError):
            # not a Python literal (or one nested too deeply for the parser: thousands of
            # unary minuses or brackets): the text itself, which the model or fit refuses
            out[key] = value
    return out


def read_table(path: str) -> Tuple[np.ndarray, Optional[List[str]]]:
    """The ``(N, D)`` array of a .csv or .npy file, with the column names of a .csv's
    header (or ``None``); a .npy file above :data:`STREAM_BYTES` is memory-mapped."""
    try:
        return _readers.read_table(path, stream_bytes=STREAM_BYTES)
    except _readers.DataFileError as e:
        raise SystemExit(f"error: {e}") from None


def read_lines(path: str, ids: bool = False, vocab_size: Any = None) -> List[Any]:
    """The strings of a .txt file; with ``ids``, a token-id model's sequences of integer
    ids, each in [0, vocab_size) where that is a positive int (else the model says)."""
    K = vocab_size if type(vocab_size) is int and vocab_size > 0 else None
    try:
        return _readers.read_ids(path, K) if ids else _readers.read_lines(path)
    except _readers.DataFileError as e:
        raise SystemExit(f"error: {e}") from None


def token_ids(config: Dict[str, Any]) -> bool:
    """Whether a sequence model built with ``config`` (vocab_size=K, no vocab) reads and
    writes token ids (one sequence a line, ids separated by spaces) rather than strings."""
    return config.get("vocab_size") is not None and config.get("vocab") is None


def is_text_model(cls: type) -> bool:
    """Whether the family ``cls`` reads and writes sequences (.txt files), not rows."""
    from .models.autoregressive import SequenceModel

    return issubclass(cls, SequenceModel)


def run_kind(run: str) -> Optional[str]:
    """The data the fit saved in ``run`` reads: ``"ids"`` (a token-id model's sequences),
    ``"text"`` (a text model's strings) or ``"rows"`` (numeric rows), from its fit.json
    without loading the fit; ``None`` for a run with no fit.json to read or an unknown
    model (a missing or damaged run: :func:`pyro_genmodels.load` says what is wrong)."""
    from ._file_checks import parse_json
    from .io import MAX_META_BYTES, META
    from .registry import registry

    file = Path(run) / META
    try:
        if not file.is_file() or file.stat().st_size > MAX_META_BYTES:
            return None
        meta = parse_json(file.read_bytes())
    except (OSError, ValueError):
        return None
    name = meta.get("model") if isinstance(meta, dict) else None
    cls = registry().get(name) if isinstance(name, str) else None
    if cls is None:
        return None
    if not is_text_model(cls):
        return "rows"
    config = meta.get("config")
    if not isinstance(config, dict):
        return None
    return "ids" if token_ids(config) else "text"


def text_lines(samples: Any) -> List[str]:
    """The lines of a text model's ``sample`` file: each string, or a token-id sequence's
    ids separated by spaces. A string that one line cannot hold, as the file is read back
    (one holding a line break), or that UTF-8 cannot encode (a lone surrogate, which a
    vocabulary fitted in Python may hold), is an ``error:`` line: the file would have
    more lines than samples, or could not be written."""
    lines = [s if isinstance(s, str) else " ".join(map(str, s.tolist())) for s in samples]
    for i, line in enumerate(lines):
        bad = re.search(r"[\r\n]", line)
        what = None if bad is None else f"a line break ({bad.group()!r})"
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as e:
            what = what or f"a character UTF-8 cannot encode ({line[e.start]!r})"
        if what is not None:
            raise SystemExit(f"error: sample {i} ({line!r}) holds {what}, which a .txt file "
                             f"of one string per line cannot hold: the model's vocabulary "
                             f"has it; draw the samples in Python, pgm.load(run).sample(n)")
    return lines


def write(path: str, writer: Callable[[Path], Any]) -> None:
    """``writer`` on a temporary file beside ``path`` (of its suffix), in a directory made
    for it, then renamed to ``path``: an error or a Ctrl-C leaves no half-written file. A
    failure is an ``error:`` line."""
    p = Path(path)
    try:
        existing = next(a for a in p.parents if a.exists())
        if not existing.is_dir():
            raise SystemExit(f"error: cannot write {path} ({existing} is a file; expected a "
                             f"directory)")
        p.parent.mkdir(parents=True, exist_ok=True)
        replace_with(p, writer)
    except OSError as e:
        raise SystemExit(f"error: cannot write {path} ({e.strerror})") from None


def save_array(p: Path, x: np.ndarray, columns: Optional[List[str]] = None) -> None:
    """``x`` as .npy, or as .csv under the header ``columns`` (quoted where needed)."""
    if p.suffix.lower() == ".npy":
        with p.open("wb") as f:  # np.save(path) would add .npy to a name ending in .NPY
            np.save(f, x)
        return
    with p.open("w", newline="") as f:
        if columns:
            csv.writer(f, lineterminator="\n").writerow(columns)
        np.savetxt(f, x, delimiter=",")


def output_dir(path: str) -> None:
    """Check, before any work and without writing, that ``--out`` can be the directory a
    command writes: not a file, under a directory that exists and is writable; otherwise
    one ``error:`` line."""
    p = Path(path).absolute()
    if p.exists() and not p.is_dir():
        raise SystemExit(f"error: --out {path} is a file; expected a directory to write in")
    existing = next(a for a in (p, *p.parents) if a.exists())
    if not existing.is_dir():
        raise SystemExit(f"error: cannot make the directory --out {path}: {existing} is a "
                         f"file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SystemExit(f"error: cannot write in --out {path} ({existing}: permission "
                         f"denied)")


def row_said(err: BaseException, path: str) -> str:
    """``err``'s message, a refused row (a :class:`~pyro_genmodels._validation.RowError`
    in its chain of causes) said as ``path``'s line: the command line reads one row a
    line, so ``data[2]`` is line 3. What the outer error added (the fit that could not
    score it) follows in parentheses."""
    cause: Optional[BaseException] = err
    while cause is not None and not (isinstance(cause, RowError) and cause.row is not None):
        cause = cause.__cause__
    if cause is None or cause.row is None:
        return str(err)
    said = f"{path}, line {cause.row + 1}{cause.in_file}"
    outer = str(err)
    if cause is not err and outer.endswith(str(cause)):
        said += f" ({outer[:-len(str(cause))].rstrip(': ')})"
    return said
