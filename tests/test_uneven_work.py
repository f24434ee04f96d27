"""Ranks whose work between two collectives takes unequal time (distributed MCMC chains)
wait for one another by progress, not by the group's timeout
(:class:`pyro_genmodels.infer.distributed.UnevenWork`). Two ranks are two threads here,
sharing a real ``TCPStore`` as torchrun's workers share theirs."""

import threading
import time

import pytest
from torch.distributed import TCPStore

from pyro_genmodels.infer.distributed import Group, RankFailure, UnevenWork


def ranks(store, work, seconds=1.0):
    """Run ``work[r](r)`` inside rank r's UnevenWork on its own thread; what each raised
    (or None) and when it left, in seconds from the start."""
    out, start = {}, time.monotonic()

    def rank(r):
        w = UnevenWork(Group(r, len(work), "gloo"), "chains", "test", seconds=seconds,
                       every=0.1, store=store)  # one key: the fit's, alike on every rank
        try:
            with w:
                work[r](r)
            out[r] = (None, time.monotonic() - start)
        except Exception as e:
            out[r] = (e, time.monotonic() - start)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


@pytest.fixture
def store():
    return TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)


def test_a_rank_done_first_waits_past_the_timeout_while_the_other_works(store):
    """Rank 1's chains take 3 timeouts longer than rank 0's: the gathering used to fail
    on rank 0 after one timeout, losing every draw; rank 0 now waits, since rank 1 ticks."""
    out = ranks(store, [lambda r: None, lambda r: time.sleep(3.0)], seconds=1.0)
    assert out[0][0] is None and out[1][0] is None, out
    assert out[0][1] >= 2.9  # it waited for rank 1


def test_a_rank_that_raises_stops_the_others_at_once_saying_why(store):
    def fails(r):
        time.sleep(0.5)
        raise ValueError("a bad chain")

    out = ranks(store, [lambda r: None, fails], seconds=30.0)
    assert isinstance(out[1][0], ValueError)
    error, left = out[0]
    assert isinstance(error, RankFailure) and left < 5, out
    assert str(error) == ("The chains failed: rank 1 raised (ValueError: a bad chain). Fix "
                          "the cause and run the fit again (MCMC keeps no checkpoints)")


def test_a_rank_that_stops_without_a_word_fails_the_others_after_the_timeout(store):
    """A rank that died ticks no more: the others fail once it has been silent for the
    timeout (here rank 1 never starts, as a process killed before its chains)."""
    w = UnevenWork(Group(0, 2, "gloo"), "chains", "silent", seconds=1.0, every=0.1,
                   store=store)
    start = time.monotonic()
    with pytest.raises(RankFailure, match=r"^The chains failed: rank 1 is not done and gave "
                                          r"no sign of life for 1 s \(PYRO_GENMODELS_DIST_"
                                          r"TIMEOUT\): it stopped\. Fix the cause and run "
                                          r"the fit again"):
        with w:
            pass  # rank 0 has no chains of its own: done at once, it waits for rank 1
    assert 0.9 < time.monotonic() - start < 5
