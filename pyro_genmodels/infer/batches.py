"""Minibatches for :func:`~pyro_genmodels.infer.loop.optimize`: which rows each step
sees (in one process, on the ranks of a distributed fit, and from streamed data)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Tuple, Union, cast

import torch

if TYPE_CHECKING:  # annotations only: the loop imports both
    from .distributed import Group
    from .streaming import Stream


class Batch:
    """One minibatch: ``index`` ``(B,)`` into the rows ``source_x`` (``None``: all of
    them), ``num_rows`` N of the training data (for the N / B scaling), and those rows of
    ``x`` and ``c`` (selected on first access: a Pyro objective passes ``source_x`` and
    the index to its plate instead). ``source_x`` is the whole training tensor, or for
    streamed data the block of rows just read (``index`` then numbers its rows).
    ``weight``: this process's share of the global batch (1 unless distributed)."""

    __slots__ = ("index", "num_rows", "_x", "_c", "_rows", "weight")

    def __init__(self, index: Optional[torch.Tensor], x: torch.Tensor,
                 c: Optional[torch.Tensor], weight: float = 1.0,
                 num_rows: Optional[int] = None) -> None:
        self.index, self._x, self._c = index, x, c
        self.num_rows = x.shape[0] if num_rows is None else num_rows
        self._rows: Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]] = None
        self.weight = weight

    @property
    def source_x(self) -> torch.Tensor:
        """All rows the batch is drawn from (``index`` selects the batch's)."""
        return self._x

    @property
    def source_c(self) -> Optional[torch.Tensor]:
        """All conditioning rows the batch is drawn from (``None`` when unconditional)."""
        return self._c

    def _select(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if self._rows is None:
            index = self.index
            x = self._x if index is None else self._x.index_select(0, index)
            c = self._c if self._c is None or index is None else self._c.index_select(0, index)
            self._rows = (x, c)
        return self._rows

    @property
    def x(self) -> torch.Tensor:
        """The batch's rows, ``(B, ...)``."""
        return self._select()[0]

    @property
    def c(self) -> Optional[torch.Tensor]:
        """The batch's conditioning rows, ``(B, ...)``; ``None`` for an unconditional model."""
        return self._select()[1]


class Minibatches:
    """Batches of ``batch_size`` rows cut from a fresh permutation of the ``N`` rows each
    epoch (the remainder skipped); all rows each step when ``batch_size`` is ``None`` or
    at least N. The permutations come from a CPU generator seeded with ``seed``, so the
    sequence of batches depends on the seed alone (not on the device, nor on the number
    of processes). With a ``group`` (distributed), each batch is this rank's contiguous
    slice of the global batch. Its state (generator, permutation, position) is part of a
    checkpoint."""

    def __init__(self, x: Union[torch.Tensor, Stream], c: Optional[torch.Tensor],
                 batch_size: Optional[int], *, seed: int = 0,
                 group: Optional[Group] = None) -> None:
        self.x, self.c, self.n = x, c, x.shape[0]
        # streamed rows (infer.streaming.Stream) are read per batch
        self.stream = x if hasattr(x, "fetch") else None
        self.b = None if batch_size is None or batch_size >= self.n else int(batch_size)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.group = group
        self.perm: Optional[torch.Tensor] = None
        self.pos = 0
        if group is not None and (self.b or self.n) < group.world_size:
            raise ValueError(f"A global batch of {self.b or self.n} rows cannot be shared by "
                             f"{group.world_size} processes: expected batch_size >= "
                             f"{group.world_size}")

    @property
    def steps_per_epoch(self) -> int:
        """Batches per pass over the rows (the remainder of a permutation is skipped)."""
        return 1 if self.b is None else self.n // self.b

    def _batch(self, idx: Optional[torch.Tensor]) -> Batch:
        """This process's batch of the global batch ``idx`` (``None``: all rows)."""
        g, weight = self.group, 1.0
        if g is not None:
            full = torch.arange(self.n) if idx is None else idx
            idx = torch.tensor_split(full, g.world_size)[g.rank]
            weight = idx.shape[0] / full.shape[0]
        if self.stream is not None:
            rows = torch.arange(self.n) if idx is None else idx
            x, c = self.stream.fetch(rows)
            return Batch(torch.arange(x.shape[0], device=x.device), x, c, weight,
                         num_rows=self.n)
        x_all = cast(torch.Tensor, self.x)  # not streamed: the training tensor
        if idx is not None:
            idx = idx.to(x_all.device)
        return Batch(idx, x_all, self.c, weight)

    def next(self) -> Batch:
        """The next batch: all rows without ``batch_size``; else the next ``batch_size`` rows of
        this epoch's permutation (a fresh one when fewer than a batch are left)."""
        if self.b is None:
            return self._batch(None)
        if self.perm is None or self.pos + self.b > self.n:
            # int32 (the same permutation as int64) halves the one array that grows with
            # N when the rows themselves are streamed: 4 bytes a row
            small = self.n < 2 ** 31
            self.perm = torch.randperm(self.n, generator=self.generator,
                                       dtype=torch.int32 if small else torch.int64)
            self.pos = 0
        idx = self.perm[self.pos:self.pos + self.b].long()
        self.pos += self.b
        return self._batch(idx)

    def peek(self) -> Batch:
        """The next batch, without consuming it."""
        state, perm, pos = self.generator.get_state(), self.perm, self.pos
        batch = self.next()
        self.generator.set_state(state)
        self.perm, self.pos = perm, pos
        return batch


class BadRowError(ValueError):
    """A streamed minibatch met a row that the data check refuses (``cause``) at step
    ``step``, after earlier steps had trained: the fit ends there, as at a non-finite
    loss, and the facade's ``FitError`` keeps what those steps did (``err.fit``: the
    parameters after step ``step - 1``, or with held-out data those of the best
    evaluation, as after Ctrl-C)."""

    def __init__(self, step: int, cause: ValueError) -> None:
        self.summary = f"a bad row in a minibatch of step {step} ({cause})"
        super().__init__(f"{cause} (in a minibatch of step {step}: the fit stops there, "
                         f"and err.fit keeps what the steps before it trained)")
        self.step, self.cause = step, cause


def next_batches(batches: Minibatches, count: int, step: int, start: int, group: Any
                 ) -> Tuple[List[Batch], Optional[BadRowError]]:
    """``(the next count minibatches, None)``, or ``([], error)`` where a streamed row
    that its check refuses ends the fit at ``step`` (a :class:`BadRowError`), when
    earlier steps of this run trained. On the run's first step, where there is nothing
    to keep, the check's ``ValueError`` propagates as it is; in a process group the
    error is this rank's alone, which :func:`refused_on_ranks` makes every rank's."""
    try:
        return [batches.next() for _ in range(count)], None
    except ValueError as e:
        if step == start and group is None:
            raise
        return [], BadRowError(step, e)


def refused_on_ranks(step: int, start: int, group: Any, mine: Optional[BadRowError]
                     ) -> BadRowError:
    """The error every rank of ``group`` ends with when a rank's share of the streamed
    minibatches of step ``step`` held a row that its check refused (``mine`` on that
    rank; the loop learns of it on every rank from one flag, before any loss runs):
    every rank gathers the refusals and takes the first rank's, raising its
    ``ValueError`` on the run's first step (``start``), where nothing trained, else
    returning it as a :class:`BadRowError`, whose fit keeps the steps before (the same
    on every rank)."""
    from . import distributed

    said = distributed.gather(None if mine is None else str(mine.cause), group,
                              "report of a refused row", step)
    error = ValueError(first_refusal(said))
    if step == start:
        raise error
    return BadRowError(step, error)


def first_refusal(said: List[Optional[str]]) -> str:
    """The first rank's refusal of the ranks' ``said`` (``None`` where a rank refused no
    row), naming that rank."""
    rank, cause = next((r, c) for r, c in enumerate(said) if c is not None)
    return f"{cause} (in rank {rank}'s share of the minibatch)"


def first_batch(batches: Minibatches) -> Tuple[Optional[Batch], Optional[str]]:
    """``(the next minibatch without consuming it, None)``, or ``(None, why)`` where a
    streamed row in it is refused: in a process group, every rank must hear of it (the
    parameter check's gather carries ``why``) rather than wait for this one."""
    try:
        return batches.peek(), None
    except ValueError as e:
        return None, str(e)
