"""Order the collected tests so that pytest-xdist's workers finish together.

The suite runs on 2 workers with ``--dist worksteal`` (pyproject.toml). That scheduler
first gives worker k the k-th contiguous chunk of the collection (``len(pending) //
idle workers`` tests each, in order), and a worker that runs dry later steals the back
half of the longest queue, but never a queue's first two tests. So tests that take many
minutes, collected one after the other, end up queued on one worker: in the slow suite
of 2026-12-05 the two mixture SBCs (934 s and 273 s) ran back to back on one worker for
the last 13 minutes while the other sat idle (slow suite 34 min; its tests sum to 50).

A test that is known to be long says so with ``@pytest.mark.cost(seconds)`` (measured
on the 2-core CI machine). :func:`balanced` spreads those tests over the workers'
first chunks by longest-processing-time-first (Graham 1969: each goes to the worker
with the least cost so far) and puts them at the front of their chunks, longest first;
the other tests keep their order and fill the chunks. Stealing then evens out the short
tests at the end. Every worker computes the same order (it depends only on the
collection and the marks), as xdist requires.

Graham, R. L. (1969). Bounds on multiprocessing timing anomalies. SIAM J. Appl. Math.
"""

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def chunk_sizes(n: int, workers: int) -> list[int]:
    """The sizes of the contiguous chunks worksteal hands out first: ``n // workers``
    to the first idle worker, then ``rest // (workers - 1)``, and so on."""
    sizes, left = [], n
    for i in range(workers):
        size = left // (workers - i)
        sizes.append(size)
        left -= size
    return sizes


def balanced(items: Sequence[T], costs: Sequence[float], workers: int) -> list[T]:
    """``items`` reordered so that the chunk each of ``workers`` gets first starts with
    its share of the costly items (``costs[i] > 0``), longest first.

    Unchanged when there is one worker, nothing costly, or a chunk too short for its
    share (a selection of a few tests)."""
    if len(items) != len(costs):
        raise ValueError(f"{len(items)} items but {len(costs)} costs")
    costly = sorted((i for i, c in enumerate(costs) if c > 0), key=lambda i: (-costs[i], i))
    if workers < 2 or not costly:
        return list(items)
    load = [0.0] * workers
    share: list[list[int]] = [[] for _ in range(workers)]
    for i in costly:  # LPT: the next longest to the least loaded
        k = min(range(workers), key=lambda w: (load[w], w))
        share[k].append(i)
        load[k] += costs[i]
    sizes = chunk_sizes(len(items), workers)
    if any(len(s) > size for s, size in zip(share, sizes)):
        return list(items)
    rest = iter(sorted(set(range(len(items))) - set(costly)))
    order: list[int] = []
    for s, size in zip(share, sizes):
        order += s
        order += [next(rest) for _ in range(size - len(s))]
    return [items[i] for i in order]
