r"""Training rows that stay where they are: fits on data larger than memory.

``model.fit(data, ...)`` also takes a map-style ``torch.utils.data.Dataset`` (sized:
``len`` and ``dataset[i]``), a ``DataLoader`` over one, or a NumPy memory-mapped array
(``np.load(path, mmap_mode="r")``). Such data become a :class:`Stream`: the training loop
draws the same global minibatches as for a tensor (the indices come from its own
generator), and fetches only those rows, validates them with the family's own checks (a
bad row fails with the same message as for a tensor, naming its row and column in the
data), converts them and moves them to the fit's device. Memory then holds one minibatch,
not the data.

A memory-mapped array is checked whole before training: one pass reads every row, a
block of at most ``CHUNK_ROWS`` rows (and ``fit.CHUNK_ELEMENTS`` numbers) at a time,
through the family's checks, so a NaN anywhere fails before the first step, naming its
row, as for a tensor (:meth:`Stream.scan`). A family that standardizes its columns takes
their means and standard deviations from the same pass, so the file is read once before
training. A ``Dataset`` (arbitrary code, perhaps expensive per item) is not read ahead:
its rows are checked as minibatches read them, so a bad row fails at the step that first
draws it (or in the standardizing pass of a family that makes one).

What a fit needs only roughly (data-dependent starting values, a score model's largest
pairwise distance, the checkpoint fingerprint) comes from a fixed random sample of
``SAMPLE_ROWS`` rows drawn under the fit's seed.

A ``DataLoader`` gives its dataset and, when ``fit`` gets no ``batch_size``, its batch
size; the loop's own sampler replaces the loader's, so that the seed decides the batches
and, under ``distributed=True``, every rank takes its distinct share of each global batch
(as ``DistributedSampler`` would, with a fresh permutation each epoch).

An item of the dataset is one row: a tensor or array of shape ``(dim,)`` (or ``(1, dim)``),
or for a conditional model a pair ``(x, c)``.
"""

from __future__ import annotations

import collections
import hashlib
import re
import warnings
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np
import torch

from .._frames import outside_level
from .._moments import ColumnMoments
from .._validation import with_context
from .mapped_rows import _ArrayRows

#: rows per read of a streamed pass over all rows; fewer for wide rows (:func:`block_rows`)
CHUNK_ROWS = 65536
#: rows in the in-memory sample used for starting values and fingerprints
SAMPLE_ROWS = 2048


#: the most bytes (at 8 per number) of the sample that a family's data checks read
CHECK_BYTES = 2 ** 29


def check_rows(width: int, num_rows: int) -> int:
    """Rows of the sample that ``check_data_for`` reads: :data:`SAMPLE_ROWS`, or ``2 D``
    for ``D = width`` columns above 1,024, within :data:`CHECK_BYTES` (at most
    ``num_rows``). A check such as a Flow's "the rows lie on a hyperplane" is a statement
    about N <= D: on a sample of D rows or fewer it holds whatever the data, so a sample
    of 2,048 rows refused every streamed fit with D >= 2,048. On ``2 D`` rows of data in
    general position the sample correlation's smallest eigenvalue stays near
    ``(1 - 1 / sqrt 2)^2 = 0.09`` (Marchenko & Pastur, 1967), far from a hyperplane's 0.
    Beyond the byte budget (D above 5,792) the sample is as large as it allows, and from
    D = 8,192 no larger than D (:func:`check_on_sample` then skips the checks)."""
    rows = max(SAMPLE_ROWS, min(2 * int(width), CHECK_BYTES // (8 * max(1, int(width)))))
    return min(rows, int(num_rows))


def check_on_sample(check: Callable[[torch.Tensor], None], stream: "Stream", seed: int,
                    width: int, sample: torch.Tensor) -> None:
    """Run a family's data check (``check_data_for``) on ``sample``, the stream's
    :meth:`Stream.sample` under ``seed``, or on a larger one of :func:`check_rows` rows.
    A refusal from a sample of fewer than all rows says so: the data as a whole may not
    have what the sample had (a column constant in 2,048 of a million rows)."""
    rows = check_rows(width, stream.num_rows)
    if rows <= width < stream.num_rows:  # any sample of D rows or fewer is "on a hyperplane"
        warnings.warn(f"The data checks (constant columns, rows on a hyperplane) need a "
                      f"sample of more than D = {width:,} rows, more than "
                      f"{CHECK_BYTES // 2 ** 20} MiB in memory: they were skipped for these "
                      f"{stream.num_rows:,} streamed rows", UserWarning, stacklevel=outside_level())
        return
    x = sample if rows <= sample.shape[0] else stream.sample(seed, rows)[0]
    try:
        check(x)
    except ValueError as e:
        if x.shape[0] == stream.num_rows:
            raise
        raise (with_context(e, f"a random sample of {x.shape[0]:,} of the "
                               f"{stream.num_rows:,} streamed rows") or e) from None


def is_stream(data: Any) -> bool:
    """Whether ``data`` is streamed rather than read whole: a Dataset, a DataLoader or a
    memory-mapped array."""
    from torch.utils.data import DataLoader, Dataset

    return isinstance(data, (Dataset, DataLoader, np.memmap))


def block_rows(width: Optional[int]) -> int:
    """Rows per block of a pass over all rows of ``width`` numbers each:
    :data:`CHUNK_ROWS`, or fewer so that a block holds at most ``fit.CHUNK_ELEMENTS``
    numbers (the package's chunk; the pass's temporaries are a few blocks). ``None``
    (a Dataset's rows, width unknown): :data:`CHUNK_ROWS`."""
    from .. import fit as fit_module  # read at call time (tests set it smaller)

    if not width:
        return CHUNK_ROWS
    return max(1, min(CHUNK_ROWS, fit_module.CHUNK_ELEMENTS // int(width)))


def loader_batch_size(data: Any) -> Optional[int]:
    """A DataLoader's batch size (``None`` for anything else)."""
    from torch.utils.data import DataLoader

    return data.batch_size if isinstance(data, DataLoader) else None


class _Scan:
    """Whether a memory-mapped array's rows were all checked (:meth:`Stream.scan`); one
    record shared by a stream and its copies (:meth:`Stream.split`, :meth:`Stream.map`)."""

    __slots__ = ("done", "running")

    def __init__(self) -> None:
        self.done = self.running = False


class Stream:
    """Rows read on demand from a sized map-style dataset.

    Args:
        data: a Dataset, a DataLoader (its dataset is used) or a memory-mapped array.
        check: ``check(x_rows, c_rows) -> (x, c)``, the family's validation of a block of
            rows (converts, checks shape and values, moves to the fit's device and dtype);
            its errors name rows of the block, which the stream maps to rows of the data.
        conditional: items are ``(x, c)`` pairs.
        transform: applied to each validated block of ``x`` (e.g. a family's
            standardization), see :meth:`map`.

    The stream's rows are rows of the data: all of them in order, or after
    :meth:`split` the training rows (``rows``, sorted, holds their rows in the data).
    Every message names rows of the data. For a memory-mapped array, every row is
    checked once before the first minibatch is read (:meth:`scan`)."""

    def __init__(self, data: Any, *, check: Callable, conditional: bool,
                 transform: Optional[Callable] = None):
        from torch.utils.data import DataLoader

        dataset: Any = data.dataset if isinstance(data, DataLoader) else data
        if isinstance(dataset, np.ndarray):
            dataset = _ArrayRows(dataset)
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"Expected a sized map-style Dataset (with __len__ and "
                            f"__getitem__), but got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise ValueError("data is empty: the dataset has no rows")
        self.dataset, self.check, self.conditional = dataset, check, conditional
        self.transform = transform
        self.num_rows = len(dataset)
        #: the rows of the data that are this stream's; ``None`` for all, in order
        self.rows: Optional[np.ndarray] = None
        self._scan = _Scan() if isinstance(dataset, _ArrayRows) else None
        #: the shapes of an item's x and c in the first block the family's check took,
        #: shared by copies: what a later block's odd row is told it should have had
        self._shapes: Dict[str, Tuple[int, ...]] = {}
        self._pending: Dict[str, Tuple[int, ...]] = {}  # the shapes of the block in hand

    def __len__(self) -> int:
        return self.num_rows

    @property
    def shape(self) -> Tuple[int, ...]:
        """The stream's length as a shape ``(N,)``, so code that reads ``x.shape[0]`` works."""
        return (self.num_rows,)

    def map(self, fn: Callable) -> "Stream":
        """The same rows with ``fn`` applied to each validated block of ``x``."""
        prev = self.transform
        return self._copy(transform=fn if prev is None else (lambda x: fn(prev(x))))

    def _data_rows(self, idx: np.ndarray) -> np.ndarray:
        """The rows of the data that are the stream's rows ``idx``."""
        idx = np.asarray(idx, dtype=np.int64)
        return idx if self.rows is None else self.rows[idx].astype(np.int64)

    def _items(self, rows: np.ndarray):
        """Rows ``rows`` of the data, as the dataset gives them."""
        getitems = getattr(self.dataset, "__getitems__", None)
        if getitems is not None:
            return getitems(rows if isinstance(self.dataset, _ArrayRows) else rows.tolist())
        return [self.dataset[int(i)] for i in rows]

    def _collate(self, items, rows: np.ndarray) -> Tuple[Any, Any]:
        """The items of the data rows ``rows`` stacked into an ``(x, c)`` block."""
        if isinstance(items, np.ndarray):
            return items, None
        if self.conditional:
            bad = next((it for it in items
                        if not (isinstance(it, (tuple, list)) and len(it) == 2)), None)
            if bad is not None:
                what = (f"a {type(bad).__name__} of length {len(bad)}"
                        if isinstance(bad, (tuple, list)) else f"a {type(bad).__name__}")
                raise ValueError(f"a conditional model's dataset must give (x, c) pairs, "
                                 f"but an item is {what}")
            xs, cs = zip(*items)
            return self._stack(xs, "x", rows), self._stack(cs, "c", rows)
        if items and isinstance(items[0], (tuple, list)) and len(items[0]) == 2 \
                and np.ndim(items[0][0]) > 0:
            raise ValueError("the dataset gives pairs, but the model is unconditional "
                             "(context_dim=None): its items must be rows x")
        if items and isinstance(items[0], (tuple, list)) and len(items[0]) > 2 \
                and np.ndim(items[0][0]) > 0:
            raise ValueError(f"the dataset's items are {type(items[0]).__name__}s of length "
                             f"{len(items[0])}: expected rows x (or (x,), as TensorDataset "
                             f"gives them), or (x, c) pairs for a conditional model")
        return self._stack(items, "x", rows), None

    def _stack(self, items: Any, what: str, rows: np.ndarray
               ) -> Union[torch.Tensor, np.ndarray]:
        """The ``what`` parts (x or c) of the items of the data rows ``rows`` as one
        block. Items of differing shapes fail naming the first odd row of the data, its
        shape and the shape expected: that of the items of the first block the family's
        check took, or else the one most of these items have (the first row's at a tie)."""
        try:
            out = _stack(items)
        except (RuntimeError, ValueError) as e:
            shapes = [_shape(it, what, int(r)) for it, r in zip(items, rows)]
            known = self._shapes.get(what)
            expected = known if known is not None else \
                collections.Counter(shapes).most_common(1)[0][0]  # the first on a tie
            odd = next((i for i, shape in enumerate(shapes) if shape != expected), None)
            if odd is None:  # one shape, yet no block (tensors on different devices)
                raise ValueError(f"the dataset's {what} rows (rows {_shown(rows)} of the "
                                 f"data) cannot be stacked: {e}") from None
            basis = ("that of the rows read before" if known is not None else
                     f"that of {shapes.count(expected)} of the {len(shapes)} rows read "
                     f"with it, e.g. row {int(rows[shapes.index(expected)])}")
            raise ValueError(f"the dataset's {what} rows differ in shape: row "
                             f"{int(rows[odd])} of the data has shape {shapes[odd]}, "
                             f"expected {expected} ({basis})") from None
        self._pending[what] = tuple(out.shape[1:])
        if out.ndim == 3 and out.shape[1] == 1:  # items of shape (1, dim)
            out = out[:, 0]
        return out

    def fetch(self, index: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Rows ``index`` ``(B,)`` of the stream, validated and transformed: ``(x, c)``.
        The first fetch from a memory-mapped array checks all of its rows first
        (:meth:`scan`, unless :meth:`moments` did)."""
        if self._scan is not None and not self._scan.done:
            self.scan()
        x, c = self._read(index)
        return (x if self.transform is None else self.transform(x)), c

    def _read(self, index: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Rows ``index`` of the stream validated, untransformed."""
        return self._read_data(self._data_rows(index.detach().cpu().numpy()))

    def _read_data(self, rows: np.ndarray) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Rows ``rows`` of the data validated, untransformed; an error names the row of
        the data. For a memory-mapped array not yet scanned, the error is the one of its
        first bad row (what the check of the whole array as a tensor reports)."""
        self._pending = {}
        x, c = self._collate(self._items(rows), rows)
        try:
            out = self.check(x, c)
        except (ValueError, TypeError) as e:
            error = e
        else:
            for what, shape in self._pending.items():  # shapes the family's check took
                self._shapes.setdefault(what, shape)
            return out
        if self._scan is not None and not (self._scan.done or self._scan.running):
            self.scan()  # raises the first bad row's error
        raise type(error)(_in_data_rows(str(error), rows)) from None

    def scan(self, moments: bool = False
             ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """Check every row of a memory-mapped array with the family's checks, in order, a
        block of :func:`block_rows` rows at a time: the first bad row fails, naming its row
        and column in the data, before any training. With ``moments``, also the column
        means and standard deviations of the stream's rows (the training rows, after
        :meth:`split`), from the same reads. The held-out rows of a split are checked too:
        the pass covers the data the fit was given."""
        state = self._scan
        assert state is not None, "scan() is for memory-mapped arrays"
        total = len(self.dataset)
        size = block_rows(self.dataset.width)
        acc = ColumnMoments() if moments else None
        state.running = True
        try:
            for start in range(0, total, size):
                stop = min(start + size, total)
                x, _ = self._read_data(np.arange(start, stop))
                if acc is not None:
                    if self.rows is not None:  # this block's training rows
                        lo, hi = np.searchsorted(self.rows, [start, stop])
                        keep = torch.from_numpy(self.rows[lo:hi].astype(np.int64) - start)
                        x = x.index_select(0, keep.to(x.device))
                    acc.add(x)
        finally:
            state.running = False
        state.done = True
        return acc.result() if acc is not None else None

    def split(self, fraction: float, *, seed: int):
        """``validation=fraction`` for streamed rows: the held-out share, drawn by a
        permutation under ``seed`` as for a tensor, is read into memory; training streams
        the rest. Returns ``(training stream, (x_val, c_val))``."""
        n = self.num_rows
        k = int(round(fraction * n))
        if k < 1 or k > n - 1:
            raise ValueError(f"validation={fraction} of {n} rows leaves {k} held-out and "
                             f"{n - k} training rows; expected at least one of each")
        # int32 draws the same permutation as int64 (torch's default), in half the memory
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)),
                              dtype=torch.int32 if n < 2 ** 31 else torch.int64)
        held, train = perm[:k].sort().values, perm[k:].sort().values
        rows = self._read(held)
        train_rows = self._data_rows(train.numpy())  # sorted, as the data's rows
        small = len(self.dataset) < 2 ** 31  # 4 bytes a training row
        out = self._copy(rows=train_rows.astype(np.int32 if small else np.int64),
                         num_rows=n - k)
        return out, rows

    def _copy(self, **changes) -> "Stream":
        out = Stream.__new__(Stream)
        out.__dict__.update(self.__dict__)
        out.__dict__.update(changes)
        return out

    def chunks(self, size: Optional[int] = None):
        """Every row of the stream once, in order, ``size`` rows at a time (validated,
        untransformed); by default :func:`block_rows` rows."""
        if size is None:
            size = block_rows(getattr(self.dataset, "width", None))
        for start in range(0, self.num_rows, size):
            yield self._read(torch.arange(start, min(start + size, self.num_rows)))

    def sample(self, seed: int, size: int = SAMPLE_ROWS
               ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """A fixed random sample of rows (sorted, without replacement), untransformed
        (NumPy's choice draws k of N in O(k) memory, not a permutation of N)."""
        k = min(size, self.num_rows)
        idx = np.random.default_rng(int(seed)).choice(self.num_rows, k, replace=False)
        return self._read(torch.from_numpy(np.sort(idx)))

    def moments(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Column means and standard deviations over all of the stream's rows, in one
        streamed pass (float64 sums, Chan et al.'s pairwise update of the mean and the sum
        of squares). For a memory-mapped array not yet scanned this pass is :meth:`scan`:
        the file is read once for both."""
        return self.all_moments()[0]

    def all_moments(self) -> Tuple[Tuple[torch.Tensor, torch.Tensor],
                                   Optional[Tuple[torch.Tensor, torch.Tensor]]]:
        """:meth:`moments` of x and, for a conditional stream, of c, in the same pass."""
        if self._scan is not None and not self._scan.done:
            out = self.scan(moments=True)  # a memory-mapped array: no c
            assert out is not None
            return out, None
        acc, context = ColumnMoments(), ColumnMoments() if self.conditional else None
        for x, c in self.chunks():
            acc.add(x)
            if context is not None:
                context.add(c)
        return acc.result(), None if context is None else context.result()

    def digest(self, sample: torch.Tensor) -> str:
        """A fingerprint of the data: its size and a fixed sample of its rows."""
        h = hashlib.sha256(str(self.num_rows).encode())
        h.update(sample.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def _stack(rows: Any) -> Union[torch.Tensor, np.ndarray]:
    """Items of one shape stacked: a tensor for tensors, else an array."""
    if len(rows) and isinstance(rows[0], torch.Tensor):
        return torch.stack([torch.as_tensor(r) for r in rows])
    return np.stack([np.asarray(r) for r in rows])


def _shape(item: Any, what: str, row: int) -> Tuple[int, ...]:
    """The shape of an item's x or c (``what``), read from row ``row`` of the data."""
    if isinstance(item, torch.Tensor):
        return tuple(item.shape)
    try:
        return tuple(np.shape(item))
    except (ValueError, TypeError) as e:  # a ragged nested list, a tensor numpy cannot read
        raise ValueError(f"the dataset's {what} of row {row} of the data is not an array "
                         f"of one shape: {e}") from None


def _shown(rows: np.ndarray) -> str:
    """The first rows of the data in a block, as a message quotes them."""
    return f"[{', '.join(str(int(i)) for i in rows[:8])}{', ...' if len(rows) > 8 else ''}]"


#: "row r" in a check's message (r numbers the rows of the block it was given)
_ROW = re.compile(r"\brow (\d+)\b")
#: the count of non-finite values a check gives for its block (not all the data's)
_BLOCK_TOTAL = re.compile(r" ?\(\d+ non-finite value\(s\) in all\)")


def _in_data_rows(message: str, rows: np.ndarray) -> str:
    """A check's message about a block of streamed rows, in the data's numbering: each
    ``row r`` (0-based, a row of the block) becomes the data row ``rows[r]``, as a check
    of the whole data would have named it, and the block's count of non-finite values is
    dropped (the other rows were not counted). A message that names no row gets the
    data rows the block held."""
    named = False

    def data_row(m: "re.Match[str]") -> str:
        nonlocal named
        r = int(m.group(1))
        if r >= len(rows):
            return m.group(0)
        named = True
        return f"row {int(rows[r])}"

    out = _BLOCK_TOTAL.sub("", _ROW.sub(data_row, message))
    if named:
        return out
    return f"{out} (in streamed rows; they are rows {_shown(rows)} of the data)"
