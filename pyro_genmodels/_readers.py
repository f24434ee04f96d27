"""The command line's data files, read with errors that say where.

Every problem is a :class:`DataFileError` whose message names the file and, in a text
file, the line (1-based, as an editor numbers it, the header and blank lines counted)
and the column (1-based, with its header name when the file has a header), what was
found there and what was expected; the CLI prints it as one ``error: ...`` line.

A ``.csv`` is UTF-8 text (a byte-order mark is allowed), values separated by commas,
one row per line (``\\n`` or ``\\r\\n``). Cells may be quoted (a quote closed before its
comma) and padded with spaces; blank lines and lines starting with ``#`` are skipped.
The first other line is a header when none of its cells is a number, a row of data when
all of them are, and an error otherwise. Every cell must be a finite number and every
row as long as the first.
A ``.npy`` must hold a numeric array of shape ``(N, D)``; a 1-D array is one column. Numbers
that torch does not take as they are (big-endian, float128, uint16 and wider unsigned
integers) are read as float64.

A ``.txt`` holds one string a line (:func:`read_lines`; a blank line is the empty
string), or, for a token-id model (``vocab_size=K``), one sequence of integer ids a line,
separated by spaces, as ``sample`` writes them (:func:`read_ids`; a blank line is the
empty sequence).
"""

from __future__ import annotations

import codecs
import csv
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Tuple

import numpy as np

NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats
#: the dtypes (native byte order) that the models take as they are; other numbers
#: (big-endian, float128, uint16 and wider) are read as float64
TORCH_DTYPES = frozenset(np.dtype(t) for t in ("bool", "int8", "int16", "int32", "int64",
                                               "uint8", "float16", "float32", "float64"))
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class DataFileError(ValueError):
    """A data file that cannot be read; the message says where and why."""


def read_array(path: str, stream_bytes: float = float("inf")) -> np.ndarray:
    """The ``(N, D)`` array in a ``.csv`` or ``.npy`` file; a ``.npy`` larger than
    ``stream_bytes`` is returned memory-mapped (read from disk as it is used)."""
    return read_table(path, stream_bytes)[0]


def read_table(path: str, stream_bytes: float = float("inf")
               ) -> Tuple[np.ndarray, Optional[List[str]]]:
    """:func:`read_array`, with the column names of a ``.csv`` header (``None``: no
    header, or a ``.npy``)."""
    p = _existing(path)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return _read_npy(path, p, stream_bytes), None
    if suffix == ".csv":
        return _read_csv(path, _text(path, p, columns=True))
    raise DataFileError(f"{path}: found a {p.suffix or 'suffix-less'} file, expected a .csv "
                        f"or .npy data file (.txt is for the text models)")


def read_lines(path: str) -> List[str]:
    """The strings of a UTF-8 ``.txt`` file, one a line (a blank line is ``""``)."""
    p = _existing(path)
    if p.suffix.lower() != ".txt":
        raise DataFileError(f"{path}: text models read a .txt file (one string per line), "
                            f"got a {p.suffix or 'suffix-less'} file")
    text = _text(path, p, columns=False)
    if not text:
        raise DataFileError(f"{path}: the file is empty, expected one string per line")
    lines = _LINE_BREAK.split(text)
    return lines[:-1] if lines[-1] == "" else lines  # the last line's break ends no string


def read_ids(path: str, vocab_size: Optional[int] = None) -> List[List[int]]:
    """The token-id sequences of a ``.txt`` file, as ``sample`` writes them: one a line,
    integer ids separated by whitespace (a blank line is the empty sequence). With
    ``vocab_size`` K, every id must lie in ``[0, K)``."""
    seqs: List[List[int]] = []
    for n, line in enumerate(read_lines(path), 1):
        seq = []
        for j, item in enumerate(line.split(), 1):
            try:  # ASCII digits: int() would also take "+2", "1_0" and other scripts' digits
                seq.append(int(item) if re.fullmatch(r"-?[0-9]+", item) else int("x"))
            except ValueError:
                raise DataFileError(f"{path}, line {n}, id {j}: found {item!r}, expected an "
                                    f"integer token id (ids separated by spaces, one "
                                    f"sequence a line, as sample writes them)") from None
            if vocab_size is not None and not 0 <= seq[-1] < vocab_size:
                raise DataFileError(f"{path}, line {n}, id {j}: found the token id {item}, "
                                    f"expected one in [0, {vocab_size}) (vocab_size="
                                    f"{vocab_size})")
        seqs.append(seq)
    return seqs


# ------------------------------------------------------------------------------ files
def _existing(path: str) -> Path:
    p = Path(path)
    if p.is_dir():
        raise DataFileError(f"{path}: found a directory, expected a data file")
    if not p.is_file():
        raise DataFileError(f"{path}: no such data file")
    return p


def _text(path: str, p: Path, columns: bool) -> str:
    """The file decoded as UTF-8 (a leading byte-order mark dropped)."""
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise DataFileError(f"{path}: cannot read the file ({e.strerror})") from None
    raw = raw[len(codecs.BOM_UTF8):] if raw.startswith(codecs.BOM_UTF8) else raw
    bad = raw.find(b"\0")  # NUL is UTF-8, but no text file holds one
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = e.start if bad < 0 else min(e.start, bad)
    if bad < 0:
        return text
    line, start = raw.count(b"\n", 0, bad) + 1, raw.rfind(b"\n", 0, bad) + 1
    where = f"{path}, line {line}"
    if columns:
        where += f", column {raw.count(b',', start, bad) + 1}"
    if raw[bad] == 0:
        raise DataFileError(f"{where}: found a NUL byte, expected text (is it a binary "
                            f"file?{' NumPy arrays go in .npy' if columns else ''})")
    raise DataFileError(f"{where}: found the byte 0x{raw[bad]:02x}, which is not UTF-8, "
                        f"expected UTF-8 text (save the file as UTF-8)")


# ------------------------------------------------------------------------------- .csv
def _number(cell: str) -> Optional[float]:
    try:
        return float(cell)
    except ValueError:
        return None


def _separator(cell: str) -> Optional[str]:
    """How a cell that holds a whole row's values separates them, if it looks like one."""
    cell = cell.strip()
    for sep, name in ((";", "semicolons"), ("\t", "tabs")):
        if sep in cell:
            return name
    parts = cell.split()
    if len(parts) > 1 and all(_number(s) is not None for s in parts):
        return "spaces"
    return None


def _not_a_number(where: str, cell: str) -> str:
    cell = cell.strip()
    if not cell:
        return f"{where}: found an empty cell, expected a number"
    sep = _separator(cell)
    hint = (f" (the values look separated by {sep}: a .csv data file separates them with "
            f"commas)" if sep else "")
    return f"{where}: found {cell!r}, expected a number{hint}"


_QUOTE_PAD = re.compile(r'"[ \t]+(?=,|$)')  # spaces between a closing quote and the comma


def _rows(reader: Any, path: str, lines: List[str], start: Callable[[], int]
          ) -> Iterator[List[str]]:
    """The rows of a strict ``csv.reader``; its error at the row starting on line
    ``start()`` as a :class:`DataFileError` that says where and what."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            at = start()
            if "expected after" in str(e):
                line = reader.line_num
                said = (f"found {lines[line - 1].strip()!r}: text after a closing quote; "
                        f"expected a comma after a quoted cell")
            elif "unexpected end of data" in str(e):
                line, said = at, ("a quote opened here is never closed; expected each "
                                  "quoted cell to end with a quote")
            else:  # e.g. a cell over csv's field size limit
                line, said = at, f"{e} (Python's csv module)"
            raise DataFileError(f"{path}, line {line}: {said}") from None
        yield row


def _read_csv(path: str, text: str) -> Tuple[np.ndarray, Optional[List[str]]]:
    # strict: a quote is closed before the comma ("3"5 was read as 35, and an unclosed
    # quote took the rest of the file into one cell); spaces after it are padding
    lines = [_QUOTE_PAD.sub('"', line) for line in _LINE_BREAK.split(text)]
    reader = csv.reader(lines, skipinitialspace=True, strict=True)
    header: Optional[List[str]] = None
    first = None  # the line of the header or first row: every row has its length
    rows: List[List[float]] = []
    next_line = 1
    for row in _rows(reader, path, lines, lambda: next_line):
        line, next_line = next_line, reader.line_num + 1  # a quoted cell may span lines
        if not row or (len(row) == 1 and not row[0].strip()) or row[0].lstrip().startswith("#"):
            continue  # a blank line or a comment
        if first is None:
            first, width = line, len(row)
            if width == 1 and _separator(row[0]):
                raise DataFileError(f"{path}, line {line}: found {row[0].strip()!r}, values "
                                    f"separated by {_separator(row[0])}, expected commas "
                                    f"(a .csv data file is comma-separated)")
            numbers = [_number(c) for c in row]
            if all(v is None for v in numbers):
                header = [c.strip() for c in row]
                repeated = sorted({h for h in header if header.count(h) > 1})
                if repeated:  # a fit's columns are known by name: each must say one
                    at = ["columns " + ", ".join(str(j + 1) for j, h in enumerate(header)
                                                 if h == r) for r in repeated]
                    said = "; ".join(f"{r!r} in {a}" if r else f"{a} have no name"
                                     for r, a in zip(repeated, at))
                    raise DataFileError(f"{path}, line {line}: the header repeats a column "
                                        f"name ({said}); expected distinct names: rename "
                                        f"them")
                continue
            if None in numbers:  # the header is decided by this line alone
                j = numbers.index(None)
                raise DataFileError(
                    _not_a_number(f"{path}, line {line}, column {j + 1}", row[j])
                    + f" (line {line} is the first line; it holds numbers too, so it is not "
                      f"a header)")
        if len(row) != width:
            raise DataFileError(
                f"{path}, line {line}: found {len(row)} value{'s' * (len(row) != 1)}, expected "
                f"{width} (as many as "
                f"{'the header' if header else 'the first row'}, line {first})")
        try:
            values = list(map(float, row))
            if all(map(math.isfinite, values)):
                rows.append(values)
                continue
        except ValueError:
            pass
        for j, v in enumerate(map(_number, row)):  # which cell is wrong
            if v is None or not math.isfinite(v):
                name = f" ({header[j]})" if header and header[j] else ""
                where = f"{path}, line {line}, column {j + 1}{name}"
                raise DataFileError(_not_a_number(where, row[j]) if v is None else
                                    f"{where}: found {row[j].strip()!r}, expected a finite "
                                    f"number")
    if rows:
        return np.array(rows, dtype=np.float64), header
    if header:
        raise DataFileError(f"{path}: found a header (line {first}) and no rows of numbers, "
                            f"expected comma-separated numbers below it")
    raise DataFileError(f"{path}: the file is empty, expected rows of comma-separated numbers")


# ------------------------------------------------------------------------------- .npy
def _read_npy(path: str, p: Path, stream_bytes: float) -> np.ndarray:
    fmt = np.lib.format
    try:
        with p.open("rb") as f:
            version = fmt.read_magic(f)
            read_header = (fmt.read_array_header_1_0 if version == (1, 0)
                           else fmt.read_array_header_2_0)
            shape, _, dtype = read_header(f)
            offset = f.tell()
    except OSError as e:
        raise DataFileError(f"{path}: cannot read the file ({e.strerror})") from None
    except Exception:  # noqa: BLE001 - NumPy's parser of untrusted bytes: ValueError,
        # EOFError, or tokenize's TokenError / SyntaxError for a header that is not a dict
        raise DataFileError(f"{path}: found no NumPy array header, expected a .npy file "
                            f"(written by np.save)") from None
    if dtype.kind not in NUMERIC_KINDS or dtype.hasobject:
        what = "Python objects" if dtype.hasobject else "text" if dtype.kind in "US" else None
        raise DataFileError(f"{path}: found an array of dtype {dtype}"
                            f"{f' ({what})' if what else ''}, expected numbers (bool, int "
                            f"or float)")
    if len(shape) not in (1, 2):
        raise DataFileError(f"{path}: found an array of shape {shape}, expected a 2-D "
                            f"(N, D) array (or 1-D, read as one column)")
    if any(d <= 0 for d in shape):  # a header may say anything, -1 too
        raise DataFileError(f"{path}: found an array of shape {shape}, expected at least "
                            f"one row and one column")
    size, need = p.stat().st_size - offset, math.prod(shape) * dtype.itemsize
    if size < need:
        raise DataFileError(f"{path}: found {size} bytes of data, expected {need} (an array "
                            f"of shape {shape} and dtype {dtype}): the file is cut short")
    streamed = p.stat().st_size > stream_bytes  # fit() then checks each block it reads
    convert = dtype not in TORCH_DTYPES
    if convert and streamed:
        raise DataFileError(f"{path}: found an array of dtype {dtype} in a file of "
                            f"{p.stat().st_size} bytes; an array this large is read as it "
                            f"is used, and this dtype would need converting first: save it "
                            f"as little-endian float64 or float32 (x.astype('<f4'))")
    try:
        data = np.load(p, allow_pickle=False, mmap_mode="r" if streamed else None)
    except (ValueError, OSError, EOFError) as e:
        raise DataFileError(f"{path}: cannot read the array ({e})") from None
    if convert:  # big-endian, float128, uint16 and wider: numbers torch does not take
        with np.errstate(over="ignore"):
            data = data.astype(np.float64)
    data = data.reshape(-1, 1) if data.ndim == 1 else data
    bad = None if streamed else ~np.isfinite(data)
    if bad is not None and bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        raise DataFileError(f"{path}, row {i + 1}, column {j + 1} (index [{i}, {j}]): found "
                            f"{data[i, j]}, expected a finite number "
                            f"({int(bad.sum())} non-finite value(s) in all)")
    return data
