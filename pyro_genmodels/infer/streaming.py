r"""Training rows that stay where they are: fits on data larger than memory.

``model.fit(data, ...)`` also takes a map-style ``torch.utils.data.Dataset`` (sized:
``len`` and ``dataset[i]``), a ``DataLoader`` over one, or a NumPy memory-mapped array
(``np.load(path, mmap_mode="r")``). Such data become a :class:`Stream`: the training loop
draws the same global minibatches as for a tensor (the indices come from its own
generator), and fetches only those rows, validates them with the family's own checks (a
bad row fails with the same message, naming its row in the data), converts them and moves
them to the fit's device. Memory then holds one minibatch, not the data.

What a fit needs from all rows is computed in one streamed pass of ``chunk_rows`` rows at
a time (the column means and standard deviations of a family that standardizes). What it
needs only roughly (data-dependent starting values, a score model's largest pairwise
distance, the checkpoint fingerprint) comes from a fixed random sample of
``sample_rows`` rows drawn under the fit's seed.

A ``DataLoader`` gives its dataset and, when ``fit`` gets no ``batch_size``, its batch
size; the loop's own sampler replaces the loader's, so that the seed decides the batches
and, under ``distributed=True``, every rank takes its distinct share of each global batch
(as ``DistributedSampler`` would, with a fresh permutation each epoch).

An item of the dataset is one row: a tensor or array of shape ``(dim,)`` (or ``(1, dim)``),
or for a conditional model a pair ``(x, c)``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Callable, Optional, Tuple, Union, cast

import numpy as np
import torch

#: rows per read of the streamed pass over all rows
CHUNK_ROWS = 65536
#: rows in the in-memory sample used for starting values and fingerprints
SAMPLE_ROWS = 2048


def is_stream(data: Any) -> bool:
    """Whether ``data`` is streamed rather than read whole: a Dataset, a DataLoader or a
    memory-mapped array."""
    from torch.utils.data import DataLoader, Dataset

    return isinstance(data, (Dataset, DataLoader, np.memmap))


class _ArrayRows:
    """A memory-mapped ``(N, D)`` array as a dataset that reads many rows at once.

    A C-ordered ``np.memmap`` backed by a file is read with positioned reads
    (``os.pread``), not through the mapping: pages touched through a mapping count in the
    process's resident memory until the kernel reclaims them, so an epoch over a 1 GB
    file would show as 1 GB resident; read this way, the process holds one block."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.file = getattr(array, "filename", None)
        if not (array.ndim == 2 and array.flags.c_contiguous):
            self.file = None
        if self.file is not None:
            # a C-ordered array with a file behind it: a memmap
            self.offset = int(cast(np.memmap, array).offset)
            self.row_bytes = array.strides[0]

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, i):
        return self.__getitems__([i])[0]

    def __getitems__(self, index):
        index = np.asarray(index, dtype=np.int64)
        if self.file is None:
            return np.asarray(self.array[index])
        out = np.empty((len(index),) + self.array.shape[1:], dtype=self.array.dtype)
        view = memoryview(out).cast("B")
        rb, off = self.row_bytes, self.offset
        with open(self.file, "rb") as f:
            fd = f.fileno()
            if len(index) and np.all(np.diff(index) == 1):  # a contiguous run: one read
                view[:] = os.pread(fd, rb * len(index), off + rb * int(index[0]))
                return out
            for k, i in enumerate(index.tolist()):
                view[k * rb:(k + 1) * rb] = os.pread(fd, rb, off + rb * i)
        return out


def loader_batch_size(data: Any) -> Optional[int]:
    """A DataLoader's batch size (``None`` for anything else)."""
    from torch.utils.data import DataLoader

    return data.batch_size if isinstance(data, DataLoader) else None


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
    """

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

    def _items(self, index: np.ndarray):
        getitems = getattr(self.dataset, "__getitems__", None)
        if getitems is not None:
            return getitems(index.tolist() if not isinstance(self.dataset, _ArrayRows)
                            else index)
        return [self.dataset[int(i)] for i in index]

    def _collate(self, items) -> Tuple[Any, Any]:
        if isinstance(items, np.ndarray):
            return items, None
        if self.conditional:
            if not all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items):
                raise ValueError(f"a conditional model's dataset must give (x, c) pairs, "
                                 f"but an item is a {type(items[0]).__name__}")
            xs, cs = zip(*items)
            return _stack(xs, "x"), _stack(cs, "c")
        if items and isinstance(items[0], (tuple, list)) and len(items[0]) == 2 \
                and not np.isscalar(items[0][0]):
            raise ValueError("the dataset gives pairs, but the model is unconditional "
                             "(context_dim=None): its items must be rows x")
        return _stack(items, "x"), None

    def fetch(self, index: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Rows ``index`` ``(B,)`` of the data, validated and transformed: ``(x, c)``."""
        x, c = self._read(index)
        return (x if self.transform is None else self.transform(x)), c

    def _read(self, index: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Rows ``index`` validated, untransformed; an error names the row of the data."""
        idx = index.detach().cpu().numpy()
        x, c = self._collate(self._items(idx))
        try:
            return self.check(x, c)
        except (ValueError, TypeError) as e:
            raise type(e)(f"{e} {_where(x, idx)}") from None

    def split(self, fraction: float, *, seed: int):
        """``validation=fraction`` for streamed rows: the held-out share, drawn by a
        permutation under ``seed`` as for a tensor, is read into memory; training streams
        the rest. Returns ``(training stream, (x_val, c_val))``."""
        from torch.utils.data import Subset

        n = self.num_rows
        k = int(round(fraction * n))
        if k < 1 or k > n - 1:
            raise ValueError(f"validation={fraction} of {n} rows leaves {k} held-out and "
                             f"{n - k} training rows; expected at least one of each")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
        held, train = perm[:k].sort().values, perm[k:].sort().values
        rows = self._read(held)
        out = self._copy(dataset=Subset(self.dataset, train.tolist()), num_rows=n - k)
        return out, rows

    def _copy(self, **changes) -> "Stream":
        out = Stream.__new__(Stream)
        out.__dict__.update(self.__dict__)
        out.__dict__.update(changes)
        return out

    def chunks(self, size: int = CHUNK_ROWS):
        """Every row once, in order, ``size`` rows at a time (validated, untransformed)."""
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
        """Column means and standard deviations over all rows, in one streamed pass
        (float64 sums, Chan et al.'s pairwise update of the mean and the sum of squares)."""
        n = 0
        mean: Optional[torch.Tensor] = None
        m2: Optional[torch.Tensor] = None
        for x, _ in self.chunks():
            xd = x.to(torch.float64)
            k = xd.shape[0]
            mu = xd.mean(0)
            s2 = ((xd - mu) ** 2).sum(0)
            if mean is None:
                n, mean, m2 = k, mu, s2
            else:
                assert m2 is not None  # set with mean
                delta = mu - mean
                total = n + k
                mean = mean + delta * (k / total)
                m2 = m2 + s2 + delta ** 2 * (n * k / total)
                n = total
            dtype = x.dtype
        assert mean is not None and m2 is not None  # a stream has rows (checked at start)
        sd = (m2 / (n - 1)).sqrt() if n > 1 else torch.ones_like(mean)
        sd = torch.where(torch.isfinite(sd) & (sd > 1e-8), sd, torch.ones_like(sd))
        return mean.to(dtype), sd.to(dtype)

    def digest(self, sample: torch.Tensor) -> str:
        """A fingerprint of the data: its size and a fixed sample of its rows."""
        h = hashlib.sha256(str(self.num_rows).encode())
        h.update(sample.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def _stack(rows: Any, what: str) -> Union[torch.Tensor, np.ndarray]:
    first = rows[0] if len(rows) else None
    out: Union[torch.Tensor, np.ndarray]
    if isinstance(first, torch.Tensor):
        try:
            out = torch.stack([torch.as_tensor(r) for r in rows])
        except RuntimeError as e:
            raise ValueError(f"the dataset's {what} rows differ in shape: {e}") from None
    else:
        try:
            out = np.stack([np.asarray(r) for r in rows])
        except ValueError as e:
            raise ValueError(f"the dataset's {what} rows differ in shape: {e}") from None
    if out.ndim == 3 and out.shape[1] == 1:  # items of shape (1, dim)
        out = out[:, 0]
    return out


def _where(x, idx: np.ndarray) -> str:
    """Which data row a streamed block's error is about (its row numbers are the
    block's)."""
    try:
        bad = ~np.isfinite(np.asarray(x, dtype=np.float64))
    except (TypeError, ValueError):
        bad = None
    if bad is not None and bad.ndim == 2 and bad.any():
        r = int(np.argwhere(bad)[0][0])
        return f"(in streamed rows: that is row {int(idx[r])} of the data)"
    shown = ", ".join(str(int(i)) for i in idx[:8])
    return (f"(in streamed rows; they are rows [{shown}"
            f"{', ...' if len(idx) > 8 else ''}] of the data)")
