"""Checks of a saved fit's two files, made before anything of them is used.

``fit.json``: :func:`parse_json` (UTF-8, no repeated keys, no recursion blow-up) and
:func:`check_meta` (format, version, every field's JSON type and value, names that cannot
walk a path), so that whatever :func:`~pyro_genmodels.io.load` passes on is what a save
writes. ``.safetensors``: an 8-byte little-endian header length N, N bytes of JSON header
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}}`` plus an optional
``"__metadata__"``), then one flat byte buffer. The safetensors library never runs code,
but it trusts the header's sizes; a crafted header could declare tensors of many
gigabytes, and a pickle or a zip (``torch.save``) named ``.safetensors`` should be
recognized as what it is. :func:`check_header` reads only the first 8 + N bytes (N
bounded), and checks that every tensor's byte range matches its dtype and shape and that
the ranges tile the data really in the file, so nothing is allocated from a size the
file does not hold. :func:`sha256` ties the tensors to the ``fit.json`` that names them.

Every check raises :class:`ValueError` naming the file and what was expected and found;
:mod:`pyro_genmodels.io` turns it into its ``LoadError``. Imports nothing of the package.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Tuple

#: the largest header read (the real ones are a few kilobytes per hundred tensors)
MAX_HEADER_BYTES = 100 * 2**20
#: the most dimensions a tensor may declare
MAX_NDIM = 32
#: bytes per element of the dtypes a saved fit may hold
ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "I32": 4, "I64": 8,
            "F16": 2, "BF16": 2, "F32": 4, "F64": 8}
_ZIP = b"PK\x03\x04"


def _unique_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    """``object_pairs_hook`` refusing a repeated key (two readers could take different
    ones: the JSON would mean two things)."""
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice")
        out[key] = value
    return out


def parse_json(raw: bytes) -> Any:
    """UTF-8 JSON without repeated keys; ``ValueError`` (with the cause) otherwise."""
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, RecursionError, ValueError) as e:
        # JSONDecodeError is a ValueError; so are over-long integers and repeated keys
        raise ValueError(f"{type(e).__name__}: {e}") from None


def _what_it_is(head: bytes) -> str:
    if head.startswith(_ZIP):
        return "it is a zip archive (torch.save writes one), not safetensors"
    if head[:1] == b"\x80" and head[1:2] and 2 <= head[1] <= 5:
        return "it is a Python pickle, not safetensors"
    return ""


def check_header(path: Path, size: int) -> Dict[str, Tuple[str, List[int]]]:
    """Check the safetensors file ``path`` of ``size`` bytes without reading its data.

    Returns ``{name: (dtype, shape)}``. Raises ``ValueError`` when the file is too short,
    is a pickle or zip, declares a header longer than :data:`MAX_HEADER_BYTES` or than
    the file, has a header that is not a JSON object of well-formed entries, uses a dtype
    outside :data:`ITEMSIZE`, or has byte ranges that disagree with the dtypes and shapes
    or do not exactly tile the data that follows the header.
    """
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path} is not a safetensors file: it has {len(head)} bytes, "
                             f"expected at least 8 (the header length)")
        n = int.from_bytes(head, "little")
        fits = n <= MAX_HEADER_BYTES and n <= size - 8
        raw = f.read(n) if fits else b""
        # A pickle or a zip is told by its first bytes, but those are also the header
        # length of a real file (896 bytes is 80 03 00 ..., like a pickle's start): only a
        # file that does not hold a header of that length, opening a JSON object, is one
        if not (fits and raw[:1] == b"{"):
            what = _what_it_is(head)
            if what:
                raise ValueError(f"{path} is not a safetensors file: {what}")
        if not fits:
            raise ValueError(f"{path} is not a valid safetensors file: its header declares "
                             f"{n} bytes, expected at most "
                             f"{min(MAX_HEADER_BYTES, max(size - 8, 0))} (the file has "
                             f"{size} bytes; the bound is {MAX_HEADER_BYTES})")
    if len(raw) != n:
        raise ValueError(f"{path} is truncated: expected a {n}-byte header, found {len(raw)}")
    try:
        header = parse_json(raw)
    except ValueError as e:
        raise ValueError(f"{path} is not a valid safetensors file: its header is not "
                         f"JSON ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a valid safetensors file: expected its header to "
                         f"be a JSON object, found {type(header).__name__}")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError(f"{path}: expected __metadata__ to map names to strings")
    out, ranges = {}, []
    for name, entry in header.items():
        dtype, shape, begin, end = _entry(path, name, entry)
        nbytes = math.prod(shape) * ITEMSIZE[dtype]
        if end - begin != nbytes:
            raise ValueError(f"{path}: tensor {name!r} ({dtype}, shape {shape}) needs "
                             f"{nbytes} bytes, but its data_offsets [{begin}, {end}] span "
                             f"{end - begin}")
        out[name] = (dtype, shape)
        ranges.append((begin, end, name))
    buffer = size - 8 - n
    at = 0
    for begin, end, name in sorted(ranges):
        if begin != at or end > buffer:
            raise ValueError(f"{path} is truncated or corrupt: tensor {name!r} lies at bytes "
                             f"[{begin}, {end}] of the data, expected it to start at {at} "
                             f"and end by {buffer} (the data the file holds)")
        at = end
    if at != buffer:
        raise ValueError(f"{path} is corrupt: its tensors cover {at} bytes of data, but "
                         f"the file holds {buffer}")
    return out


def _entry(path: Path, name: str, entry: Any) -> Tuple[str, List[int], int, int]:
    def bad(expected: str, found: Any) -> ValueError:
        return ValueError(f"{path}: tensor {name!r}: expected {expected}, found {found!r}")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if not isinstance(entry, dict):
        raise bad("an object with dtype, shape and data_offsets", entry)
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in ITEMSIZE:  # a list is no dict key
        raise bad(f"a dtype among {sorted(ITEMSIZE)}", dtype)
    if (not isinstance(shape, list) or len(shape) > MAX_NDIM
            or not all(is_int(d) for d in shape)):
        raise bad(f"a shape of at most {MAX_NDIM} non-negative integers", shape)
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(map(is_int, offsets))
            or offsets[0] > offsets[1]):
        raise bad("data_offsets [begin, end] with 0 <= begin <= end", offsets)
    return dtype, shape, offsets[0], offsets[1]


def sha256(path: Path) -> str:
    """The hex SHA-256 of the file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def plain(name: Any) -> bool:
    """A name that cannot walk a path: no separators, no ``..``, printable."""
    return (isinstance(name, str) and name != "" and "/" not in name and "\\" not in name
            and ".." not in name and name.isprintable())


_JSON = {dict: "an object", list: "an array", str: "a string", bool: "true or false",
         int: "an integer", float: "a number", type(None): "null"}
#: the keys of ``fit.json`` and their JSON types (a save writes all of them)
FIELDS = {"format": (str,), "format_version": (int,), "model": (str,),
          "config": (dict,), "config_tensors": (list,), "dtype": (str,),
          "method": (str,), "losses": (list,), "seed": (int, type(None)),
          "options": (dict,), "interrupted": (bool,), "info": (dict,), "groups": (list,)}
#: keys that older saves lack
OPTIONAL = {"library_version": (str,), "code": (dict,), "tensors_sha256": (str,),
            "order": (dict,), "settings": (dict,)}


def _found(v: Any) -> str:
    """A JSON value, shortly: its kind and (the start of) its text."""
    if v is None or isinstance(v, bool):
        return json.dumps(v)
    text = repr(v)
    return f"{_JSON.get(type(v), type(v).__name__)} {text[:60]}{'...' if len(text) > 60 else ''}"


def check_meta(meta: Any, file: Path, *, fmt: str, max_version: int,
               dtypes: Iterable[str], groups: Tuple[str, ...]) -> None:
    """``fit.json`` (parsed) is an object of format ``fmt`` and version at most
    ``max_version``, with every key of :data:`FIELDS` and the JSON types there; the model
    and config tensor names are :func:`plain`, the dtype among ``dtypes``, the groups
    distinct names among ``groups`` with exactly one of ``point`` and ``posterior``, the
    digest 64 hex digits (it names a file)."""
    def bad(key: str, expected: str, value: Any) -> ValueError:
        return ValueError(f"{file}: expected {key!r} to be {expected}, found {_found(value)}")

    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise ValueError(f"{file} is not a pyro-genmodels fit: expected a JSON object with "
                         f"format {fmt!r}, found "
                         f"{_found(meta.get('format') if isinstance(meta, dict) else meta)}")
    if "format_version" not in meta:
        raise ValueError(f"{file}: expected the key 'format_version', found it missing")
    version = meta["format_version"]
    if type(version) is not int or version < 1:
        raise bad("format_version", "a positive integer", version)
    if version > max_version:  # before the rest: a newer layout may differ anywhere
        raise ValueError(f"{file} was written by a newer pyro-genmodels: format version "
                         f"{version}, expected at most {max_version}; upgrade to read it")
    for key, types in {**FIELDS, **OPTIONAL}.items():
        if key not in meta:
            if key in FIELDS:
                raise ValueError(f"{file}: expected the key {key!r}, found it missing")
        elif type(meta[key]) not in types:  # type(): true is not an integer here
            raise bad(key, " or ".join(_JSON[t] for t in types), meta[key])
    if not plain(meta["model"]):
        raise bad("model", "a model's name (no path separators or '..')", meta["model"])
    if meta["dtype"] not in dtypes:
        raise bad("dtype", f"one of {sorted(dtypes)}", meta["dtype"])
    if not all(type(v) in (int, float) for v in meta["losses"]):
        raise bad("losses", "an array of numbers", meta["losses"])
    if meta["seed"] is not None and not 0 <= meta["seed"] < 2 ** 32:  # what fit takes
        raise bad("seed", "an integer in [0, 2**32 - 1] or null", meta["seed"])
    for key, size in (("columns", "dim"), ("context_columns", "context_dim")):
        names, width = meta["info"].get(key), meta["config"].get(size)
        if names is not None and (type(names) is not list or not all(
                type(n) is str for n in names) or len(set(names)) != len(names)
                or (type(width) is int and len(names) != width)):
            count = f"{width} " if type(width) is int else ""
            raise bad(f"info.{key}", f"null or {count}distinct column names (config's "
                      f"{size}: {width})", names)
    names = meta["groups"]
    if (not all(g in groups for g in names) or len(set(names)) != len(names)
            or ("point" in names) == ("posterior" in names)):
        raise bad("groups", f"distinct names among {list(groups)}, with exactly one of "
                  f"'point' and 'posterior'", names)
    for group, listed in meta.get("order", {}).items():  # the order of a group's names
        if (group not in names or type(listed) is not list
                or not all(type(n) is str for n in listed) or len(set(listed)) != len(listed)):
            raise bad(f"order.{group}", f"distinct names, in the order of a saved group's "
                      f"tensors (the groups {names})", listed)
    ct = meta["config_tensors"]
    if (not all(plain(k) for k in ct) or len(set(ct)) != len(ct)
            or set(ct) & set(meta["config"])):
        raise bad("config_tensors", "distinct names (no path separators or '..') not in "
                  "'config'", ct)
    for key, entry in meta.get("code", {}).items():
        if (not isinstance(entry, dict) or type(entry.get("class")) is not str
                or type(entry.get("repr")) is not str):
            raise bad(f"code.{key}", 'an object {"class": string, "repr": string}', entry)
    digest = meta.get("tensors_sha256")
    if digest is not None and not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise bad("tensors_sha256", "64 lowercase hex digits", digest)


def check_names(names: Iterable[str], meta: Dict[str, Any], file: Path) -> None:
    """Every tensor is one a save writes: ``data``, ``context``, ``state/NAME``,
    ``config/NAME`` for each of ``config_tensors``, or ``GROUP/NAME`` for the groups."""
    groups = meta["groups"]
    for key in names:
        head, sep, name = key.partition("/")
        if key not in ("data", "context") and not (
                sep and plain(name) and head in ("state", "config", *groups)):
            raise ValueError(f"{file}: unexpected tensor {key!r}: expected 'data', "
                             f"'context', 'state/NAME', 'config/NAME' or 'GROUP/NAME' for "
                             f"the groups {groups} (NAME without path separators or '..')")
    have = {k[7:] for k in names if k.startswith("config/")}
    if have != set(meta["config_tensors"]):
        raise ValueError(f"{file}: expected the config tensors "
                         f"{sorted(meta['config_tensors'])} that fit.json names, found "
                         f"{sorted(have)}")


def check_method_groups(meta: Dict[str, Any], file: Path, *, methods: Iterable[str],
                        draws: Iterable[str], points: Iterable[str], model: str) -> None:
    """``fit.json``'s method is one of the family's ``methods`` (``model`` names the
    family), and the groups it lists (which :func:`check_names` holds the tensors to)
    are what that method makes: posterior draws for one of ``draws`` (``vi``, ``nuts``,
    ...), a point estimate for one of ``points`` (``mle``, ``map``); a method in
    neither (an engine of the family's own, ``dsm``, EM) is not checked."""
    method, methods = meta["method"], list(methods)
    if method not in methods:
        raise ValueError(f"{file}: expected 'method' to be one of the {model}'s methods "
                         f"{methods}, found {_found(method)}")
    wanted = "posterior" if method in set(draws) else "point" if method in set(points) \
        else None
    if wanted is not None and wanted not in meta["groups"]:
        what = {"posterior": "posterior draws", "point": "a point estimate"}
        held = "point" if wanted == "posterior" else "posterior"
        raise ValueError(f"{file}: its method {method!r} makes {what[wanted]} (the group "
                         f"{wanted!r}), but the saved tensors hold {what[held]} (the group "
                         f"{held!r}): fit.json's 'method' does not match the saved fit")
