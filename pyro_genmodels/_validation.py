"""Input validation at the library boundary.

Every public entry point converts its data once, here, and fails with a message that
says what was expected and what came, before any state changes."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Dict, Iterable, List, Literal, Mapping, Optional, Tuple, overload

import numpy as np
import torch

from ._frames import in_package


class RowError(ValueError):
    """A refusal of one row of the data: ``row`` its index, ``in_file`` the message's
    rest as it reads after a file's ``"PATH, line L"`` (the command line reads one row a
    line, so it says the line, not ``data[i]``). Built with the message alone (as
    :func:`with_context` re-raises it), ``row`` and ``in_file`` are ``None``."""

    def __init__(self, message: str, row: Optional[int] = None,
                 in_file: Optional[str] = None) -> None:
        super().__init__(message)
        self.row, self.in_file = row, in_file


def as_data(data: Any, *, dim: int | None = None, name: str = "data",
            dtype: torch.dtype | None = None, device: torch.device | str | None = None,
            one_row: bool = False) -> torch.Tensor:
    """Convert ``data`` to a finite floating tensor of shape ``(N, dim)``.

    Args:
        data: a tensor or array-like of shape ``(N, D)``; a 1-D input is accepted only
            when ``dim == 1`` and is read as ``(N, 1)``.
        dim: the expected number of columns ``D`` (``None`` to accept any).
        name: how the argument is called in error messages.
        dtype: floating dtype to cast to; by default a float32 or float64 input keeps
            its dtype and anything else (integers, bools, and the storage formats float16
            and bfloat16, in which CPU linear algebra and training do not work) becomes
            ``torch.get_default_dtype()``.
        device: where the result lives.
        one_row: also read a 1-D input of length ``dim`` as one row ``(1, dim)`` (a
            condition ``c`` given once for every row).

    Raises:
        TypeError: non-numeric input (strings, objects, complex numbers).
        ValueError: empty input, wrong number of dimensions or columns, NaN or inf
            (also a finite value that overflows ``dtype``, e.g. 1e300 as float32), or a
            value whose square overflows ``dtype`` (:func:`largest_magnitude`).
    """
    labels = None  # a pandas object, whose index and column names the messages quote
    if isinstance(data, torch.Tensor):
        t = data.detach()
    else:
        if isinstance(data, (str, bytes)) or data is None:
            raise TypeError(f"{name} must be a numeric (N, D) tensor or array, got {type(data).__name__}")
        if _is_pandas(data):  # its own clear errors: a text column, repeated names
            arr, labels = _from_pandas(data, name), data
        else:
            try:
                arr = np.asarray(data)
            except Exception as e:  # ragged lists and the like
                raise TypeError(f"{name} could not be read as a numeric array: {e}") from None
        if arr.dtype.kind not in "biuf":
            raise TypeError(
                f"{name} must have a numeric dtype (bool, int or float), got dtype {arr.dtype}")
        if not arr.dtype.isnative:  # big-endian files: torch reads native order only
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:  # long double: no torch dtype
            arr = arr.astype(np.float64)
        with warnings.catch_warnings():
            # a read-only view (pandas' copy-on-write frames, a memmap opened "r"): torch
            # warns that writing to it would be undefined; nothing here writes to data
            # (a fit copies what it keeps), and a copy would double a large memmap
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex() or not (t.is_floating_point() or t.dtype in _INT_DTYPES):
        raise TypeError(f"{name} must have a real numeric dtype, got {t.dtype}")
    if dtype is None:
        dtype = t.dtype if t.dtype in _FULL_FLOATS else torch.get_default_dtype()
    t = t.reshape(1) if t.dim() == 0 else t  # a 0-d tensor: one value, as NumPy's 0-d arrays
    given = t  # as passed, for the message about a non-finite value
    t = _to(t, dtype, device, name)
    if t.dim() == 1 and dim == 1:
        t, given = t.unsqueeze(-1), given.unsqueeze(-1)
    elif t.dim() == 1 and one_row and t.shape[0] == dim:
        t, given = t.unsqueeze(0), given.unsqueeze(0)
        labels = None  # a Series' index holds the columns here: positions say it
    if t.dim() != 2:
        want = f"(N, {dim})" if dim is not None else "(N, D)"
        if one_row and dim is not None:
            want += f", or ({dim},) for one row"
        elif t.dim() == 1 and t.shape[0] == dim:  # one row, given 1-D
            want += f" (one row as (1, {dim}): x.reshape(1, -1))"
        raise ValueError(f"{name} must be 2-D of shape {want}, got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty: expected at least one row, got shape {tuple(t.shape)}")
    if dim is not None and t.shape[1] != dim:
        raise ValueError(f"{name} has the wrong number of columns: expected {dim}, got {t.shape[1]}")
    _check_values(t, given, name, labels)
    return t


def _is_pandas(data: Any) -> bool:
    """A pandas DataFrame or Series (pandas itself is not imported to ask)."""
    module = type(data).__module__
    return (module == "pandas" or module.startswith("pandas.")) and hasattr(data, "dtypes")


def column_names(data: Any) -> Optional[List[str]]:
    """The column names of a pandas DataFrame (as strings; a named Series: its name),
    else ``None``: a fit records them (``fit.info["columns"]``) for ArviZ's coordinates
    and the CLI's CSV header."""
    if not _is_pandas(data):
        return None
    if hasattr(data, "columns"):
        return [str(c) for c in data.columns]
    name = getattr(data, "name", None)
    return None if name is None else [str(name)]


def condition_names(model: Any, given: Any, c: Optional[torch.Tensor]) -> Dict[str, List[str]]:
    """``{"context_columns": names}`` when the conditions ``given`` to a fit are a DataFrame
    of the columns of ``c`` ``(N, context_dim)``, which ``log_prob``, ``sample`` and the
    rest then check as they check ``x``'s (:func:`check_column_names`); ``{}`` for class
    labels (not columns), one row (a Series) or an array."""
    names = column_names(given) if hasattr(given, "columns") else None
    if not names or c is None or len(names) != c.shape[-1] or getattr(model, "num_classes",
                                                                       None) is not None:
        return {}
    return {"context_columns": names}


def recorded_names(model: Any, names: Optional[List[str]], x: torch.Tensor, given_c: Any,
                   c: Optional[torch.Tensor]) -> Dict[str, List[str]]:
    """The names a fit records in ``fit.info``: ``columns``, those of the data (``names``,
    a DataFrame's) where they are ``x``'s columns, and ``context_columns``
    (:func:`condition_names`)."""
    known = {"columns": names} if names and x.dim() == 2 and len(names) == x.shape[1] else {}
    return {**known, **condition_names(model, given_c, c)}


def check_heldout_names(validation: Any, known: Dict[str, List[str]], conditional: bool
                        ) -> None:
    """Refuse held-out DataFrames, ``validation=x_val`` or ``(x_val, c_val)``, whose columns
    are not the training ones (``known``: :func:`recorded_names`) in their order, as
    ``log_prob`` refuses them (:func:`check_column_names`): the held-out loss, and the
    early stopping on it, would read other quantities."""
    if validation is None or isinstance(validation, float):
        return
    pair = conditional and isinstance(validation, tuple) and len(validation) == 2
    x_val, c_val = validation if pair else (validation, None)
    check_column_names(x_val, known.get("columns"), "x_val" if pair else "validation",
                       training="x.columns")
    check_column_names(c_val, known.get("context_columns"), "c_val", training="c.columns")


def check_column_names(data: Any, expected: Optional[List[str]], name: str = "x",
                       key: str = "columns", training: Optional[str] = None) -> None:
    """Refuse a DataFrame whose column names are not ``expected`` (the training columns,
    ``fit.info[key]``: ``"columns"`` for the data ``x``, ``"context_columns"`` for the
    conditions ``c``; ``training`` says where else to find them) in that order: a density
    reads columns by position, so a reordered frame would be scored as other quantities
    (raw wine with two columns swapped: -450,762 per row instead of -10.47, silently).
    Nothing to check without names on either side."""
    given = column_names(data)
    if given is None or expected is None or given == list(expected):
        return
    if not hasattr(data, "columns") and [str(i) for i in data.index] == list(expected):
        raise ValueError(f"{name} is a Series indexed by the training columns: one row, as "
                         f"df.iloc[i] gives. Pass rows as a DataFrame: df.iloc[[i]]")
    missing = [c for c in expected if c not in given]
    extra = [c for c in given if c not in expected]
    if not missing and not extra:
        raise ValueError(f"{name}'s columns are the training columns in another order: "
                         f"expected {list(expected)}, got {given}. Select them in the "
                         f"training order: {name}[{training or f'fit.info[{key!r}]'}]")
    said = ", ".join(f"{what} {cols}" for what, cols in (("missing", missing),
                                                         ("unexpected", extra)) if cols)
    raise ValueError(f"{name}'s columns are not the training columns: {said} (expected "
                     f"{list(expected)})")


def _from_pandas(data: Any, name: str) -> np.ndarray:
    """A pandas DataFrame or Series as an array, column by column: numbers and bools in
    any pandas dtype, the nullable ones (``Float64``, ``Int64``, ``boolean``: NumPy
    reads those as ``object``) included, a missing value becoming NaN (refused next,
    with its row and column); a categorical or text column is refused by name, since a
    category is a label, not a quantity."""
    import pandas as pd

    # as the fit records them, strings: 1 and "1" would both be saved as "1"
    names = pd.Index([str(c) for c in data.columns]) if isinstance(data, pd.DataFrame) else None
    if names is not None and not names.is_unique:
        repeated = list(dict.fromkeys(names[names.duplicated()]))
        raise ValueError(f"{name} has repeated column names {repeated}: a fit labels its "
                         f"columns by name (ArviZ's coordinates, the column-order check), so "
                         f"each needs its own; rename them (df.columns = [...])")
    dtypes = data.dtypes.items() if isinstance(data, pd.DataFrame) else [(data.name, data.dtype)]
    kinds = []
    for column, dtype in dtypes:
        if isinstance(dtype, pd.CategoricalDtype):
            raise TypeError(f"{name}: column {column!r} is categorical; expected numbers. "
                            f"Encode it first (e.g. pd.get_dummies, or .cat.codes for an "
                            f"ordered category)")
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
            raise TypeError(f"{name}: column {column!r} has dtype {dtype}; expected numbers "
                            f"(bool, int or float)")
        # a sparse column (pd.get_dummies(..., sparse=True)) is read as its dense values
        kinds.append(dtype.subtype if isinstance(dtype, pd.SparseDtype)
                     else getattr(dtype, "numpy_dtype", dtype))
    if bool(data.isna().to_numpy().any()):
        return data.to_numpy(dtype=np.float64, na_value=np.nan)
    return data.to_numpy(dtype=np.result_type(*kinds) if kinds else np.float64)


#: rows checked at a time: the checks' temporaries stay small whatever N is
_CHECK_ROWS = 1 << 16


def largest_magnitude(dtype: torch.dtype) -> float:
    """The largest ``|x|`` whose square is finite in ``dtype`` (about 1.8e19 in float32,
    1.3e154 in float64): every density here squares its data, so a larger value can only
    give inf - inf = NaN."""
    return math.sqrt(torch.finfo(dtype).max)


def _where(row: int, col: int, labels: Any = None) -> str:
    """``row 5, column 2``, and for a pandas object ``labels`` also its index label and
    column name there (a filtered or sorted frame's index label is not its position)."""
    where = f"row {row}, column {col}"
    if labels is not None:
        columns = labels.columns if hasattr(labels, "columns") else [labels.name]
        if row < len(labels.index) and col < len(columns):
            label = labels.index[row]
            label = label.item() if hasattr(label, "item") else label  # np.int64(7) -> 7
            where += f" (index label {label!r}, column {str(columns[col])!r})"
    return where


def _check_values(t: torch.Tensor, given: torch.Tensor, name: str,
                  labels: Any = None) -> None:
    """Refuse NaN, inf, a finite value that overflowed when cast to ``t.dtype``, and a
    value whose square overflows it (:func:`largest_magnitude`), naming where (with a
    pandas object's ``labels``: its index and column names). Blockwise, so the check's
    temporaries are ``_CHECK_ROWS`` rows whatever N is."""
    limit = largest_magnitude(t.dtype)
    for start in range(0, t.shape[0], _CHECK_ROWS):
        block = t[start:start + _CHECK_ROWS]
        if not bool((block.abs() > limit).any()) and bool(torch.isfinite(block).all()):
            continue  # the common case: one pass, no index arithmetic
        bad = ~torch.isfinite(block)
        if bad.any():
            row, col = (int(i) for i in bad.nonzero()[0])
            row += start
            value = given[row, col].item()
            if math.isfinite(value):  # a finite value given that overflows ``dtype``
                raise ValueError(
                    f"{name} must be finite in {t.dtype}: {value:g} at "
                    f"{_where(row, col, labels)} overflows it; {_remedy(t.dtype)}")
            raise ValueError(
                f"{name} must be finite: found {value} at {_where(row, col, labels)} "
                f"({int((~torch.isfinite(given)).sum())} non-finite value(s) in all)")
        row, col = (int(i) for i in (block.abs() > limit).nonzero()[0])
        raise ValueError(
            f"{name} has a value too large for {t.dtype}: {given[row + start, col].item():g} "
            f"at {_where(row + start, col, labels)}; expected magnitudes below {limit:.3g} "
            f"(its square overflows {t.dtype}); {_remedy(t.dtype)}")


def _remedy(dtype: torch.dtype) -> str:
    """What to do about a value too large for ``dtype``: rescale; in float32 (or less),
    float64 is the other way out."""
    if dtype == torch.float64:
        return "rescale the data"
    return "rescale the data, or pass float64 data (and a float64 model)"


_INT_DTYPES = {torch.bool, torch.uint8, torch.uint16, torch.uint32, torch.uint64, torch.int8,
               torch.int16, torch.int32, torch.int64}
_FULL_FLOATS = {torch.float32, torch.float64}


def check_device(device: Any, name: str = "device") -> torch.device:
    """``device`` as a :class:`torch.device` that can hold data on this machine, or a
    ValueError / TypeError naming it: a string or index torch cannot parse, a GPU this
    machine lacks (torch's AssertionError or RuntimeError, turned into a ValueError), or
    ``meta`` (no values at all)."""
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise TypeError(f"{name} must be a torch.device, a string such as 'cpu' or 'cuda:0', "
                        f"or a GPU index, got {type(device).__name__}")
    try:
        dev = torch.device(device)
        torch.empty(0, device=dev)
    except (AssertionError, RuntimeError) as e:
        raise ValueError(f"{name} {str(device)!r} is not a device this machine has: {e}") \
            from None
    if dev.type == "meta":
        raise ValueError(f"{name} 'meta' holds no values; expected a device such as 'cpu' "
                         f"or 'cuda'")
    return dev


def _to(t: torch.Tensor, dtype: torch.dtype, device: Any, name: str) -> torch.Tensor:
    """``t.to(dtype, device)``, with ``device`` checked first (:func:`check_device`)."""
    if device is not None:
        try:
            device = check_device(device)
        except ValueError as e:
            raise ValueError(f"{name} cannot be moved there: {e}") from None
    return t.to(dtype=dtype, device=device)


def first_line(e: BaseException) -> str:
    """The first line of an error's message (torch's run on for pages), ``""`` when it
    has none: what a one-line error quotes of another."""
    lines = str(e).strip().splitlines()
    return lines[0].strip() if lines else ""


def with_context(err: BaseException, context: str) -> BaseException | None:
    """``err`` (a check of this package that failed, e.g. on ``x`` inside
    ``Fit.log_prob``) again, its message prefixed with ``context`` (which names the
    argument of the outer call, e.g. ``compare``'s ``heldout``); ``None`` for an error
    raised elsewhere (inside torch, ...), which must surface as it is."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    inside = tb is not None and in_package(tb.tb_frame.f_code.co_filename)
    if not inside:
        return None
    try:
        return type(err)(f"{context}: {err}")
    except Exception:  # noqa: BLE001 - an exception class with another signature
        return None


def heldout_pair(value: Any, *, conditional: bool, owner: str, name: str) -> Tuple[Any, Any]:
    """``(rows, conditions)`` of held-out data named ``name``: a conditional model's
    (``owner`` names it) is the pair ``(x_val, c_val)``; an unconditional model's is the
    rows alone, with no conditions: a pair of arrays (the first one 2-D or more) is refused
    there, since it would be read as rows."""
    if not conditional:
        if isinstance(value, tuple) and len(value) == 2 and getattr(value[0], "ndim", 0) >= 2:
            raise ValueError(f"{owner} is unconditional: expected {name} to be the held-out "
                             f"rows alone, but got a pair (x_val, c_val); pass x_val (an "
                             f"unconditional model takes no conditions)")
        return value, None
    if not (isinstance(value, tuple) and len(value) == 2):
        raise ValueError(f"{owner} is conditional: expected {name} to be the pair "
                         f"(x_val, c_val) of held-out rows and their conditions, but got "
                         f"{type(value).__name__}")
    return value


def heldout_conditions(model: Any, c_val: Any, num_rows: int, *, name: str,
                       **kwargs: Any) -> Any:
    """``model.validate_context(c_val, num_rows, **kwargs)`` for held-out rows given as
    the pair ``name=(x_val, c_val)``: an error names ``c_val`` of that pair, not a
    ``c`` the caller passed right."""
    if c_val is None and model.is_conditional:
        raise ValueError(f"{type(model).__name__} is conditional: expected {name}=(x_val, "
                         f"c_val) with c_val the conditions of the held-out rows, but c_val "
                         f"is None")
    try:
        return model.validate_context(c_val, num_rows, **kwargs)
    except (ValueError, TypeError) as e:
        raise (with_context(e, f"{name}=(x_val, c_val): c_val") or e) from None


def _integer(value: Any) -> Any:
    """A 0-d integer tensor as an ``int`` (``torch.tensor(3)``, as ``np.int64(3)`` is one);
    anything else as it came."""
    if isinstance(value, torch.Tensor) and value.ndim == 0 and value.dtype != torch.bool \
            and not (value.is_floating_point() or value.is_complex()):
        return int(value)
    return value


def positive_int(value: Any, name: str) -> int:
    """``value`` as an ``int`` if it is an integer >= 1: a Python or NumPy integer, or a
    0-d integer tensor."""
    value = _integer(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Expected {name} to be a positive integer, but got {value!r}")
    return int(value)


def nonnegative_int(value: Any, name: str) -> int:
    """``value`` as an ``int`` if it is an integer >= 0 (as :func:`positive_int` reads)."""
    value = _integer(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"Expected {name} to be a non-negative integer, but got {value!r}")
    return int(value)


def store_counts(options: Any, *names: str, minimum: int = 1) -> None:
    """Check the fields ``names`` of a (frozen) options dataclass as integers >= ``minimum``
    (0 or 1) and store them as ``int``: a NumPy integer or a 0-d tensor kept its type into
    the arithmetic (``lr_decay ** (1 / num_steps)`` a tensor, which Adam refuses as lr)."""
    check = positive_int if minimum == 1 else nonnegative_int
    for name in names:
        object.__setattr__(options, name, check(getattr(options, name), name))


def _number(value: Any, name: str, want: str) -> float:
    """``value`` as a float; a string, a bool (NumPy's too) or None is refused even where
    ``float()`` would read it: callers keep the value they were given, so ``"0.01"``
    would reach the optimizer as a string."""
    if value is None or isinstance(value, (str, bytes, bool, np.bool_)):
        raise TypeError(f"Expected {name} to be {want}, but got {value!r} "
                        f"({type(value).__name__})")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"Expected {name} to be {want}, but got {value!r}") from None


def positive_float(value: Any, name: str) -> float:
    """``value`` as a float, if it is a number > 0 and finite."""
    v = _number(value, name, "a positive number")
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"Expected {name} > 0 and finite, but got {value!r}")
    return v


def nonnegative_float(value: Any, name: str) -> float:
    """``value`` as a float, if it is a finite number >= 0."""
    v = _number(value, name, "a number >= 0")
    if not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"Expected {name} >= 0 and finite, but got {value!r}")
    return v


def probability(value: Any, name: str) -> float:
    """``value`` as a float strictly between 0 and 1 (a target acceptance rate, a
    fraction); the same refusals as :func:`positive_float`."""
    v = positive_float(value, name)
    if not v < 1:
        raise ValueError(f"Expected 0 < {name} < 1, but got {value!r}")
    return v


@overload
def check_bool(value: Any, name: str, *, optional: Literal[False] = False) -> bool:
    ...


@overload
def check_bool(value: Any, name: str, *, optional: bool) -> bool | None:
    ...


def check_bool(value: Any, name: str, *, optional: bool = False) -> bool | None:
    """``value`` if it is ``True`` or ``False`` (or ``None`` when ``optional``); a
    string such as ``"yes"`` or a number is refused rather than read as truthy."""
    if value is None and optional:
        return None
    if not isinstance(value, (bool, np.bool_)):
        want = "None, True or False" if optional else "True or False"
        raise TypeError(f"Expected {name} to be {want}, but got {value!r}")
    return bool(value)


def check_options(options: Mapping[str, Any], allowed: Iterable[str], *, method: str) -> None:
    """Reject option names that ``method`` does not take, listing the ones it does."""
    allowed = sorted(allowed)
    unknown = sorted(set(options) - set(allowed))
    if unknown and not allowed:
        raise ValueError(f"Unknown option(s) {unknown} for method {method!r}: it takes no "
                         f"options")
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for method {method!r}; "
            f"expected some of {allowed}")


def check_choice(value: Any, choices: Iterable[str], what: str) -> str:
    """``value`` if it is one of ``choices``; else a ValueError that lists them."""
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"Unknown {what} {value!r}; expected one of {choices}")
    return value


def check_method(method: Any, methods: Iterable[str], model_name: str) -> str:
    methods = tuple(methods)
    if not isinstance(method, str) or method not in methods:
        raise ValueError(
            f"Unknown method {method!r} for {model_name}; expected one of {list(methods)}")
    return method


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


def differences(saved: Any, now: Any, at: str = "") -> List[Tuple[str, Tuple[Any, Any]]]:
    """The leaves in which two nested dicts (a checkpoint's fingerprint and a fit's, or
    two ranks') differ, named by their dotted paths (so a
    changed option is ``options.lr``, not the whole options); a key one lacks is
    ``<missing>`` there (an option a later version added, say)."""
    if isinstance(saved, dict) and isinstance(now, dict):
        missing = _Missing()
        return [d for k in sorted(set(saved) | set(now), key=str)
                for d in differences(saved.get(k, missing), now.get(k, missing),
                                      f"{at}{k}.")]
    return [] if saved == now else [(at[:-1], (saved, now))]
