"""Rows of a memory-mapped array read from its file (:class:`_ArrayRows`): what
:mod:`~pyro_genmodels.infer.streaming` uses to fetch a minibatch of a ``np.memmap``.

Positioned reads (``os.pread``) rather than the mapping: pages touched through a mapping
count in the process's resident memory until the kernel reclaims them, so an epoch over
a 1 GB file would show as 1 GB resident; read this way, the process holds one block.
"""

from __future__ import annotations

import mmap
import numbers
import os
from typing import NamedTuple, Optional

import numpy as np

#: a read of sorted rows also reads the bytes between two wanted rows when there are at
#: most this many (or one row's worth, if more): one read then instead of two
MERGE_BYTES = 1024
#: the most bytes of the file one such read spans (longer runs are read in parts)
MAX_READ_BYTES = 1 << 24


class _Layout(NamedTuple):
    """Where a memory-mapped array's rows lie in its file."""

    path: str
    start: int  #: position of row 0's first number
    step: int  #: bytes from a row to the next (> 0)
    across: int  #: bytes from a number of a row to the next (> 0)
    width: int  #: numbers per row
    span: int  #: bytes from a row's first number to the end of its last


def _file_layout(array: np.ndarray) -> Optional[_Layout]:
    """Where the rows of a memory-mapped array lie in its file; ``None`` where they
    cannot be read from it directly (they are then read through NumPy's own indexing).

    NumPy gives a view of a memmap (``mm[100:3000]``, ``mm[::2]``, ``mm[:, 1:]``) the
    ``offset`` of the array it was cut from, so ``offset`` alone does not say where the
    view starts. The mapped array at the root of the view's bases does start at its
    ``offset``, and the view's first number lies as many bytes after the root's in the
    file as in memory; the view's strides say where the others are."""
    if not isinstance(array, np.memmap) or array.ndim not in (1, 2) or array.size == 0:
        return None
    # "c" (copy-on-write): what the array shows may differ from what the file holds
    if getattr(array, "mode", None) not in ("r", "r+", "w+") or array.dtype.hasobject:
        return None
    if getattr(array, "filename", None) is None:
        return None
    item = array.dtype.itemsize
    width = 1 if array.ndim == 1 else array.shape[1]
    step = array.strides[0]
    across = item if width == 1 else array.strides[1]
    if step <= 0 or across < item:
        return None  # rows or numbers reversed, repeated or overlapping (mm[::-1])
    span = (width - 1) * across + item
    if width > 1 and step < span:
        return None  # rows interleaved (Fortran order): a row's numbers lie far apart
    root: np.ndarray = array
    while isinstance(root.base, np.ndarray):
        root = root.base
    offset = getattr(root, "offset", None)
    if not (isinstance(root, np.memmap) and isinstance(root.base, mmap.mmap)
            and isinstance(offset, numbers.Integral)):
        return None
    start = int(offset) + (array.__array_interface__["data"][0]
                           - root.__array_interface__["data"][0])
    if start < 0:
        return None
    return _Layout(os.fspath(array.filename), start, int(step), int(across), int(width),
                   int(span))


def _read_exactly(fd: int, size: int, pos: int, path: str) -> bytes:
    """``size`` bytes at ``pos`` (``os.pread`` may return fewer: it is called again)."""
    data = os.pread(fd, size, pos)
    if len(data) == size:
        return data
    parts, got = [data], len(data)
    while got < size:
        more = os.pread(fd, size - got, pos + got)
        if not more:
            raise OSError(f"{path} ends at byte {pos + got}, before the rows of its "
                          f"memory-mapped array: the file changed after it was mapped")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _read_into(fd: int, out: memoryview, pos: int, path: str) -> None:
    """Fill the bytes ``out`` from position ``pos`` (one read, no intermediate copy)."""
    if not hasattr(os, "preadv"):
        out[:] = _read_exactly(fd, len(out), pos, path)
        return
    got = 0
    while got < len(out):
        n = os.preadv(fd, [out[got:]], pos + got)
        if n == 0:
            raise OSError(f"{path} ends at byte {pos + got}, before the rows of its "
                          f"memory-mapped array: the file changed after it was mapped")
        got += n


class _ArrayRows:
    """A memory-mapped ``(N, D)`` array (or any view of one) as a dataset that reads many
    rows at once.

    Rows that lie in the file as NumPy shows them (:func:`_file_layout`: any slice of
    rows or columns of a C-ordered map, with steps, that is not copy-on-write) are read
    with positioned reads (``os.pread``), not through the mapping: pages touched through
    a mapping count in the process's resident memory until the kernel reclaims them, so
    an epoch over a 1 GB file would show as 1 GB resident; read this way, the process
    holds one block. Before taking that path the reader checks that the file gives the
    first and the last row exactly as the array does. Any other array (Fortran order,
    reversed rows, a copy-on-write map, a plain array) is read by NumPy's indexing."""

    def __init__(self, array: np.ndarray):
        self.array = array
        layout = _file_layout(array)
        self.layout = layout if layout is not None and self._agrees(array, layout) \
            else None
        #: the file read directly, or ``None`` (NumPy's indexing)
        self.file = None if self.layout is None else self.layout.path

    @staticmethod
    def _agrees(array: np.ndarray, layout: _Layout) -> bool:
        """The file gives the array's first and last rows, byte for byte."""
        try:
            with open(layout.path, "rb") as f:
                for i in sorted({0, array.shape[0] - 1}):
                    buf = os.pread(f.fileno(), layout.span, layout.start + layout.step * i)
                    if len(buf) != layout.span:
                        return False
                    row = np.ndarray((layout.width,), array.dtype, buffer=buf,
                                     strides=(layout.across,))
                    if row.tobytes() != np.ascontiguousarray(array[i]).tobytes():
                        return False
        except OSError:
            return False
        return True

    @property
    def width(self) -> int:
        """Numbers per row."""
        return int(np.prod(self.array.shape[1:], dtype=np.int64))

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, i):
        return self.__getitems__([i])[0]

    def __getitems__(self, index):
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        n = self.array.shape[0]
        if idx.size and (int(idx.min()) < -n or int(idx.max()) >= n):
            raise IndexError(f"row index out of range for an array of {n} rows")
        if idx.size and int(idx.min()) < 0:
            idx = np.where(idx < 0, idx + n, idx)
        if self.layout is None:
            return np.asarray(self.array[idx])
        with open(self.layout.path, "rb") as f:
            return self._pread(f.fileno(), idx, self.layout)

    def _pread(self, fd: int, idx: np.ndarray, at: _Layout) -> np.ndarray:
        dtype = self.array.dtype
        out = np.empty((len(idx),) + self.array.shape[1:], dtype=dtype)
        if not len(idx):
            return out
        flat = out.reshape(len(idx), at.width)  # a view: filling it fills ``out``
        # a row's numbers lie side by side in the file: its bytes go straight into ``out``
        whole_rows = at.across == dtype.itemsize
        raw = flat.reshape(-1).view(np.uint8).data if whole_rows else None
        first, size = int(idx[0]), at.span
        if raw is not None and at.step == size and int(idx[-1]) - first == len(idx) - 1 \
                and (len(idx) == 1 or bool(np.all(np.diff(idx) == 1))):
            # a run of rows that lie one after the other: one read, into the result
            _read_into(fd, raw, at.start + at.step * first, at.path)
            return out
        # sorted, then rows at most MERGE_BYTES (or a row) apart are read together
        order = np.argsort(idx, kind="stable")
        s = idx[order]
        apart = np.diff(s) * at.step - size  # bytes between a wanted row and the next
        cut = (np.flatnonzero(apart > max(size, MERGE_BYTES)) + 1).tolist()
        rows, where = s.tolist(), order.tolist()
        bounds = [0, *cut, len(s)]
        start, step, pread = at.start, at.step, os.pread
        for a, b in zip(bounds[:-1], bounds[1:]):
            lo, hi = rows[a], rows[b - 1]
            if b - a == 1 and raw is not None:  # a row alone (a minibatch's, mostly)
                data = pread(fd, size, start + step * lo)
                if len(data) != size:
                    data = _read_exactly(fd, size, start + step * lo, at.path)
                k = where[a]
                raw[k * size:(k + 1) * size] = data
                continue
            # rows near each other: one read per MAX_READ_BYTES of the file at most
            part = s[a:b]
            per = max(1, MAX_READ_BYTES // at.step)  # rows of the file a read may span
            cuts = np.searchsorted(part, np.arange(lo + per, hi + 1, per)).tolist()
            for p, q in zip([0, *cuts], [*cuts, b - a]):
                if p == q:
                    continue
                plo, phi = int(part[p]), int(part[q - 1])
                buf = _read_exactly(fd, (phi - plo) * at.step + size,
                                    at.start + at.step * plo, at.path)
                block = np.ndarray((phi - plo + 1, at.width), dtype, buffer=buf,
                                   strides=(at.step, at.across))
                flat[order[a + p:a + q]] = block[part[p:q] - plo]
        return out
