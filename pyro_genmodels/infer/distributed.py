r"""Scale-out on PyTorch's own engine, ``torch.distributed``: the few collective steps that
the training loop, the MCMC driver and ``Fit.save`` take when a fit runs with
``distributed=True`` in a process group (started by ``torchrun``, or initialized by the
user).

**Data-parallel steps.** Every rank holds the same training rows and draws the same
*global* minibatch of B rows from one generator seeded alike on every rank; rank r
takes its contiguous slice of b_r rows (``torch.tensor_split``). Every objective the loop
runs has the form

.. math::  L_r = A(\phi) + \frac{K}{b_r} \sum_{i \in \text{slice}_r} \ell_i(\phi)

(``K = N`` for a Pyro plate scaled by N / b_r, ``K = 1`` for a mean over rows; ``A`` the
prior or any other global term). The weighted sum of the ranks' losses and gradients,
with weights :math:`w_r = b_r / B` (so :math:`\sum_r w_r = 1`), is therefore exactly
:math:`A + \frac{K}{B}\sum_{i \in \text{batch}} \ell_i`: the one-process loss of the global
batch, gradient included. The loop computes each rank's gradient, scales it by
:math:`w_r` and sums it across ranks in one ``all_reduce`` of a flat buffer that also
carries the loss, so every rank applies the same update and takes the same branch of the
non-finite guard. This is an explicit all-reduce over the parameters' gradients (as the
issue allows) rather than ``DistributedDataParallel``: Pyro creates parameters lazily
inside the objective, so the loop runs the objective once to create them and then
broadcasts rank 0's values.

**Randomness.** The minibatch generator is seeded from the fit's random stream, drawn
identically on every rank, so the same seed gives the same sequence of global batches
whatever the number of processes. Rank 0 keeps the fit's stream for everything else, so
its draws are those of a one-process run; rank r > 0 is reseeded from the fit's seed and
r, so its local latents (a VAE's codes, a GAN's fakes, a diffusion's noise) are
independent of rank 0's.

**Failures.** A collective that fails because another rank died or raised becomes a
:class:`RankFailure` naming the step and telling how to resume. A group this module
starts itself has a timeout (``PYRO_GENMODELS_DIST_TIMEOUT`` seconds, default 300), so no
rank waits forever; ``torchrun`` also stops the other workers when one fails.

**The gloo I/O thread.** A gloo group runs, in every process, one I/O thread
(``gloo_tcp_loop``, an ``epoll`` loop) beside the threads that run the collectives. When
a message arrives while a collective's thread holds the connection's lock, the I/O
thread does not wait: it polls again at once, and keeps spinning until the lock is free.
With one rank per core (``torchrun --nproc_per_node`` = the cores, one thread each, the
usual CPU layout) the spinning I/O threads take the cores that the lock holders need, and
the scheduler lets them spin to the end of a time slice: an all-reduce that takes
0.4 ms takes 3-4 ms in about one step in five. A group this module starts therefore runs
its I/O thread at ``SCHED_IDLE`` (Linux; see :func:`idle_gloo_io_threads`): it still
gets every core no other thread wants, but a woken collective thread preempts it at
once. Measured with 2 ranks on 2 cores (a 158 kB all-reduce after 4 ms of compute, 340
steps): 0.53 instead of 1.9-2.1 ms per all-reduce on average, 90th percentile 0.65
instead of 4.0 ms. The price: on a machine that *other* processes keep busy, the idle
I/O thread waits for them, and the all-reduce gets slower (2.3 times, 6.4 against
2.8 ms, with two busy loops on the 2 cores). Set ``PYRO_GENMODELS_GLOO_IO=normal`` to
keep gloo's scheduling on such a machine.

**Binding to cores.** One stall remains with the I/O thread idle: free to run on any
core, it is often queued behind the *other* rank's compute when its data arrives, and
its rank leaves the all-reduce 4-5 ms after its peer. :func:`bind_to_cores` (``fit
--bind-cores`` on the command line) binds each worker to its share of the cores, so the
I/O thread runs on its own rank's core as soon as that rank waits: the flow's all-reduce
at a global batch of 1024 took 0.5-0.6 ms per step instead of 1.1-1.8 (docs/scale-out.md).
It is opt-in, as ``torchrun --numa-binding`` is: it sets the whole process's affinity.

**Shutdown.** A group this module starts is destroyed at interpreter exit (``atexit``)
unless the program is leaving on an uncaught exception (then, as torchtitan does, it is
left alone: tearing down a group while peers may still wait in a collective can hang).
Left up, a gloo group's worker threads still hold tensors when the interpreter finalizes,
which aborts the process ("terminate called without an active exception", SIGABRT) in
about one run in five on this machine (pytorch/pytorch#179291). A group the user
initialized is the user's to destroy.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime
import math
import os
import sys
import threading
import time
import uuid
import weakref
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .._validation import differences, first_line

TIMEOUT_ENV = "PYRO_GENMODELS_DIST_TIMEOUT"
GLOO_IO_ENV = "PYRO_GENMODELS_GLOO_IO"  # "idle" (the default) or "normal"


class RankFailure(RuntimeError):
    """A collective step failed: another process of the group stopped, raised or timed
    out."""


@dataclasses.dataclass(frozen=True)
class Group:
    """The default process group as a fit sees it."""

    rank: int
    world_size: int
    backend: str

    @property
    def main(self) -> bool:
        """Whether this process is rank 0 (the one that writes checkpoints)."""
        return self.rank == 0

    def info(self) -> Dict[str, Any]:
        """What ``fit.info`` records of the group: ``world_size`` and ``backend``."""
        return {"world_size": self.world_size, "backend": self.backend}


def _dist():
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError("distributed=True needs torch.distributed, which this torch "
                           "build does not have")
    return dist


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (its environment variables)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def current() -> Optional[Group]:
    """The initialized default group, or ``None``."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    return Group(dist.get_rank(), dist.get_world_size(), str(dist.get_backend()))


def timeout_seconds() -> float:
    """How long a rank waits for the others: ``PYRO_GENMODELS_DIST_TIMEOUT`` seconds
    (default 300; an empty variable means unset, as in the shell's ``VAR= cmd``)."""
    timeout = os.environ.get(TIMEOUT_ENV) or "300"
    try:
        seconds = float(timeout)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{TIMEOUT_ENV}={timeout!r}: expected a number of seconds > 0")
    return seconds


def setup(device: torch.device) -> Group:
    """The process group of a ``distributed=True`` fit: the user's, or one started here
    from ``torchrun``'s environment (``gloo`` for CPU tensors, ``nccl`` for CUDA)."""
    dist = _dist()
    if not dist.is_initialized():
        if not launched():
            raise ValueError(
                "distributed=True needs a process group: start the script with torchrun "
                "(e.g. torchrun --nproc_per_node=2 script.py) or call "
                "torch.distributed.init_process_group() before fit")
        backend = "nccl" if device.type == "cuda" else "gloo"
        seconds = timeout_seconds()
        io = os.environ.get(GLOO_IO_ENV) or "idle"
        if io not in ("idle", "normal"):
            raise ValueError(f"{GLOO_IO_ENV}={io!r}: expected 'idle' or 'normal'")
        _import_group_capturing_modules()
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=seconds))
        _started.append(weakref.ref(dist.group.WORLD))  # weak: never keep it up
        atexit.register(_destroy_at_exit)
        if backend == "gloo" and io == "idle":
            idle_gloo_io_threads()
    group = current()
    assert group is not None  # initialized above (or by the user)
    if device.type == "cuda" and group.backend == "gloo":
        raise ValueError("device='cuda' with the gloo backend: initialize the group with "
                         "backend='nccl' for GPU fits")
    if device.type != "cuda" and group.backend == "nccl":
        raise ValueError("the process group uses nccl, which needs device='cuda'; use "
                         "backend='gloo' for CPU fits")
    return group


def _thread_ids() -> List[int]:
    """This process's thread ids (``/proc/self/task``); none where it is missing (not
    Linux)."""
    if not os.path.isdir("/proc/self/task"):
        return []
    return [int(tid) for tid in os.listdir("/proc/self/task")]


def gloo_io_threads() -> List[int]:
    """The thread ids of this process's gloo I/O threads (named ``gloo_tcp_loop``); none
    where there is no ``/proc/self/task`` (not Linux) or no gloo group."""
    found = []
    for tid in _thread_ids():
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip() == "gloo_tcp_loop":
                    found.append(tid)
        except OSError:  # the thread ended meanwhile
            continue
    return found


def idle_gloo_io_threads() -> int:
    """Run this process's gloo I/O threads (:func:`gloo_io_threads`) at ``SCHED_IDLE``,
    so that they never keep a collective's own threads off a core (the module docstring
    says why and what it costs). Returns the number of threads changed: 0 where
    ``os.sched_setscheduler`` is missing (not Linux) or there is no gloo group. A group
    :func:`setup` starts gets this unless ``PYRO_GENMODELS_GLOO_IO=normal``; call it
    after ``init_process_group`` for a gloo group of your own."""
    if not hasattr(os, "sched_setscheduler"):
        return 0
    changed = 0
    for tid in gloo_io_threads():
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            changed += 1
        except OSError:  # the thread ended meanwhile
            continue
    return changed


def local_cpus(local_rank: int, local_world_size: int, cpus: Sequence[int]) -> List[int]:
    """The share of ``cpus`` (sorted) of local rank ``local_rank`` of
    ``local_world_size``: an even split into contiguous blocks, the first ``len(cpus) %
    local_world_size`` blocks one CPU larger; with more ranks than CPUs, CPU
    ``local_rank mod len(cpus)`` (ranks then share CPUs round-robin)."""
    cpus = sorted(cpus)
    n, w = len(cpus), local_world_size
    if not (0 <= local_rank < w) or n == 0:
        raise ValueError(f"expected 0 <= local_rank < local_world_size and some CPUs, but "
                         f"got local_rank={local_rank}, local_world_size={w}, cpus={cpus}")
    if w > n:
        return [cpus[local_rank % n]]
    size, extra = divmod(n, w)
    start = local_rank * size + min(local_rank, extra)
    return cpus[start:start + size + (local_rank < extra)]


_allowed: List[int] = []  # the CPUs this process could use before bind_to_cores()


def bind_to_cores() -> List[int]:
    """Bind every thread of this process to its local rank's share of the CPUs it may use
    (:func:`local_cpus`, from torchrun's ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE``; 0 of 1
    without them), as ``taskset`` would; threads started later (gloo's, torch's pool)
    inherit it. Returns the CPUs, sorted; ``[]`` where ``os.sched_setaffinity`` is
    missing (not Linux), and then binds nothing. Calling it again binds the same CPUs.

    Why: with one rank per core, a rank's gloo I/O thread, free to run on any core, is
    often queued behind the *other* rank's compute when its data arrives; at
    ``SCHED_IDLE`` (the default here) it then waits for that core to idle or for the
    scheduler to move it, and the all-reduce ends milliseconds after the data came. Bound
    to its own rank's core, it runs as soon as its rank waits. ``torchrun --numa-binding``
    does the same for GPU workers (by the GPUs' NUMA nodes); this is its CPU analogue.
    Call it first thing in each worker (before ``fit``, so that the group's threads start
    bound); ``python -m pyro_genmodels fit --bind-cores`` does. docs/scale-out.md has the
    measurements."""
    if not hasattr(os, "sched_setaffinity"):
        return []
    if not _allowed:
        _allowed.extend(sorted(os.sched_getaffinity(0)))
    try:
        rank = int(os.environ.get("LOCAL_RANK") or 0)
        world = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
    except ValueError:
        raise ValueError(f"LOCAL_RANK={os.environ.get('LOCAL_RANK')!r}, LOCAL_WORLD_SIZE="
                         f"{os.environ.get('LOCAL_WORLD_SIZE')!r}: expected integers (as "
                         f"torchrun sets them)") from None
    mine = local_cpus(rank, world, _allowed)
    for tid in _thread_ids() or [0]:  # (0: the calling thread)
        try:
            os.sched_setaffinity(tid, mine)
        except OSError:  # the thread ended meanwhile
            continue
    return mine


_started: List[Any] = []  # weak references to the default groups setup() initialized


def _import_group_capturing_modules() -> None:
    """Import, before the group exists, the torch modules whose functions take
    ``group=dist.group.WORLD`` as a default argument (``torch.distributed.nn``,
    ``torch.distributed.fsdp``, ``torch.distributed.optim``; ``torch._dynamo`` imports
    them lazily, e.g. on a fit's first ``torch.func`` trace). Imported after
    ``init_process_group`` they hold the default group for good, so
    ``destroy_process_group`` cannot free it and join its gloo threads, and the process
    may abort at exit. Imported before, their defaults are ``None``."""
    import importlib

    for name in ("torch.distributed.nn", "torch.distributed.fsdp", "torch.distributed.optim"):
        try:
            importlib.import_module(name)
        except ImportError:  # a torch build without them: nothing to hold the group
            pass


def _destroy_at_exit() -> None:
    """Destroy the group :func:`setup` started, if it is still the default group and the
    program is not leaving on an uncaught exception (``sys.last_value`` is set then)."""
    import torch.distributed as dist

    ours = _started.pop()() if _started else None
    if getattr(sys, "last_value", None) is not None:
        return
    if ours is not None and dist.is_initialized() and dist.group.WORLD is ours:
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """``cuda`` without an index under torchrun means this worker's GPU (LOCAL_RANK)."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


#: what a RankFailure advises (an optimization resumes, an MCMC run starts again)
_RESUME = ("resume from the last checkpoint (fit(..., checkpoint=DIR) writes one; "
           "resume=DIR continues it)")
_AGAIN = "run the fit again (MCMC keeps no checkpoints)"


def _collective(what: str, step: Optional[int], fn, then: str = _RESUME):
    try:
        return fn()
    except RankFailure:  # said already
        raise
    except RuntimeError as e:  # DistBackendError and gloo's errors are RuntimeErrors
        at = "" if step is None else f" at step {step}"
        raise RankFailure(
            f"The {what}{at} failed: another process of the group stopped, raised or timed "
            f"out ({type(e).__name__}: {first_line(e)}). Fix the cause and {then}") from e


class UnevenWork:
    """``with UnevenWork(group, what):`` around work of unequal length on the ranks (MCMC
    chains) before a collective: on leaving, a rank waits for the others by their
    progress, not the group's timeout (300 s), which failed a rank done first while the
    others still drew, losing every draw. Inside, each rank ticks a counter in the
    group's key-value store once a second (a thread); leaving, it says it is done (or
    what it raised: the others raise at once) and waits until every rank is done. A rank
    silent for the timeout (it died) fails the others. Without a store, as before."""

    def __init__(self, group: Group, what: str, key: str, *, seconds: Optional[float] = None,
                 every: float = 1.0, store: Any = None) -> None:
        self.group, self.what, self.every = group, what, every
        self.seconds = timeout_seconds() if seconds is None else seconds
        self.prefix = f"pyro_genmodels/{what}/{key}"  # key: the fit's, alike on every rank
        self.store = _default_store() if store is None else store
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _key(self, kind: str, rank: int) -> str:
        return f"{self.prefix}/{kind}/{rank}"

    def _tick(self) -> None:
        key = self._key("ticks", self.group.rank)
        while not self._stop.is_set():
            try:
                self.store.add(key, 1)
            except Exception:  # the store went away: the waiting side reports it
                return
            self._stop.wait(self.every)

    def __enter__(self) -> "UnevenWork":
        if self.store is not None and self.group.world_size > 1:
            self._thread = threading.Thread(target=self._tick, daemon=True,
                                            name="pyro_genmodels-progress")
            self._thread.start()
        return self

    def __exit__(self, kind, error, tb) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        rank = self.group.rank
        if error is not None:  # the others stop at once, saying why
            with contextlib.suppress(Exception):
                self.store.set(self._key("failed", rank),
                               f"{type(error).__name__}: {first_line(error)}")
            return
        _collective(f"{self.what} (waiting for the other ranks)", None,
                    lambda: self._wait(rank), then=_AGAIN)

    def _wait(self, rank: int) -> None:
        store = self.store
        store.set(self._key("done", rank), "1")
        seen = {r: (-1, time.monotonic()) for r in range(self.group.world_size) if r != rank}
        while seen:
            now = time.monotonic()
            for r in list(seen):
                if store.check([self._key("failed", r)]):
                    said = store.get(self._key("failed", r)).decode(errors="replace")
                    raise RankFailure(f"The {self.what} failed: rank {r} raised ({said}). "
                                      f"Fix the cause and {_AGAIN}")
                if store.check([self._key("done", r)]):
                    del seen[r]
                    continue
                ticks = store.add(self._key("ticks", r), 0)
                if ticks != seen[r][0]:
                    seen[r] = (ticks, now)
                elif now - seen[r][1] > self.seconds:
                    raise RankFailure(
                        f"The {self.what} failed: rank {r} is not done and gave no sign of "
                        f"life for {self.seconds:g} s ({TIMEOUT_ENV}): it stopped. Fix the "
                        f"cause and {_AGAIN}")
            if seen:
                time.sleep(min(0.1, self.every))


def _default_store() -> Any:
    """The default group's key-value store (torchrun's, or the one ``init_process_group``
    made), or ``None`` where torch does not give it."""
    try:
        from torch.distributed.distributed_c10d import _get_default_store

        return _get_default_store()
    except Exception:
        return None


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflat_into(buffer: torch.Tensor, like: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    out, pos = [], 0
    for t in like:
        out.append(buffer[pos:pos + t.numel()].view_as(t))
        pos += t.numel()
    return out


def broadcast_(tensors: Sequence[torch.Tensor], group: Group, what: str = "broadcast of "
               "rank 0's parameters") -> None:
    """Overwrite ``tensors`` (in place) with rank 0's values, in one collective."""
    tensors = list(tensors)
    if not tensors or group.world_size == 1:
        return
    dist = _dist()
    with torch.no_grad():
        buffer = _flat([t.detach() for t in tensors])
        _collective(what, None, lambda: dist.broadcast(buffer, src=0))
        for t, v in zip(tensors, _unflat_into(buffer, tensors)):
            t.copy_(v)


def reduce_step(loss: torch.Tensor, grads: Sequence[Optional[torch.Tensor]],
                params: Sequence[torch.Tensor], weight: float, group: Group, step: int
                ) -> Tuple[float, List[Optional[torch.Tensor]]]:
    """The global loss and gradients of one step: ``sum_r w_r * (loss_r, grads_r)`` over
    ranks, in one ``all_reduce`` of a flat buffer. A ``None`` gradient (a parameter
    the loss does not touch) stays ``None``."""
    dist = _dist()
    parts = [loss.detach().reshape(1).to(params[0].dtype if params else loss.dtype)]
    parts += [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    buffer = _flat(parts) * weight
    _collective("gradient all-reduce", step,
                lambda: dist.all_reduce(buffer, op=dist.ReduceOp.SUM))
    value = float(buffer[0])
    out = _unflat_into(buffer[1:], list(params))
    return value, [None if g is None else o for g, o in zip(grads, out)]


def broadcast_float(value: Optional[float], group: Group, what: str,
                    step: Optional[int] = None) -> float:
    """Rank 0's ``value`` on every rank (float64)."""
    dist = _dist()
    t = torch.tensor([float("nan") if value is None else float(value)], dtype=torch.float64)
    _collective(what, step, lambda: dist.broadcast(t, src=0))
    return float(t[0])


def any_rank(flag: bool, group: Group, what: str, step: Optional[int] = None) -> bool:
    """Whether ``flag`` holds on any rank (so that all ranks stop together)."""
    dist = _dist()
    t = torch.tensor([1.0 if flag else 0.0], dtype=torch.float64)
    _collective(what, step, lambda: dist.all_reduce(t, op=dist.ReduceOp.MAX))
    return bool(t[0] > 0)


def mean_floats(values: Sequence[float], group: Group, what: str,
                step: Optional[int] = None) -> List[float]:
    """The mean over ranks of each of ``values`` (one all-reduce of a float64 vector), the
    same on every rank: for statistics a rank computes on its share (an acceptance rate)
    that must agree everywhere."""
    dist = _dist()
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    _collective(what, step, lambda: dist.all_reduce(t, op=dist.ReduceOp.SUM))
    return (t / group.world_size).tolist()


def gather(obj: Any, group: Group, what: str, step: Optional[int] = None,
           then: str = _RESUME) -> List[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``all_gather_object``: the
    objects travel between this run's own processes; nothing is read from a file)."""
    dist = _dist()
    out: List[Any] = [None] * group.world_size
    _collective(what, step, lambda: dist.all_gather_object(out, obj), then=then)
    return out


def barrier(group: Group, what: str) -> None:
    """Wait until every rank of ``group`` reaches this point; ``what`` names the step in
    the error a failed collective raises."""
    _collective(what, None, _dist().barrier)


def rank_seed(seed: int, rank: int) -> int:
    """The random seed of rank ``rank`` > 0, derived from the run's ``seed``."""
    return (int(seed) + 0x9E3779B1 * int(rank)) % (2 ** 32)


def agree_seed(seed: Optional[int], group: Group) -> int:
    """The fit's seed on every rank: rank 0's, drawn fresh there when ``None``. Ranks that
    were given different seeds get a clear error (they would train different models)."""
    from .._rng import fresh_seed

    seeds = gather(None if seed is None else int(seed), group, "seed agreement")
    given = {s for s in seeds if s is not None}
    if len(given) > 1 or (given and None in seeds):
        raise ValueError(f"distributed=True needs the same seed on every rank, but the ranks "
                         f"were given {seeds}; pass one seed (or None on every rank)")
    chosen = seeds[0] if seeds[0] is not None else None
    if chosen is None:
        chosen = gather(fresh_seed() if group.main else None, group, "seed agreement")[0]
    return int(chosen)


def check_same_fit(fingerprint: Dict[str, Any], num_rows: int, group: Group) -> str:
    """Every rank must fit the same model, method, options and rows (the checkpoint's
    fingerprint): each takes its slice of every global batch (or its chains) by index,
    and another ``lr`` or ``prior_scale`` would mix two objectives (another
    ``num_steps`` hung). Returns rank 0's name for this fit, the same on every rank."""
    both = gather(({**fingerprint, "rows": int(num_rows)}, uuid.uuid4().hex), group,
                  "fit check")
    got, name = [g for g, _ in both], both[0][1]
    for r, theirs in enumerate(got):
        if theirs != got[0]:
            said = "; ".join(f"{k} {a!r} vs {b!r}" for k, (a, b) in differences(got[0], theirs))
            raise ValueError(f"distributed=True needs the same model, method, options and "
                             f"training data on every rank; rank {r} differs from rank 0 in "
                             f"{said}")
    return name
