r"""``distributed=True`` under ``torchrun``: what a data-parallel fit must guarantee.

The tests start ``python -m torch.distributed.run --standalone --nproc_per_node=2`` on
tests/distributed_worker.py (gloo on the loopback, one thread per process; ``--standalone``
picks a free port, so parallel tests do not collide). A launch costs seconds, so each
runs one named scenario of several fits; every rank writes its results (JSON and
safetensors) and the test compares them with each other and with a one-process run made
here from the worker's own definitions.

* **The oracle.** In float64, with the same seed, 2 processes reach the parameters and
  loss trace of 1 process at the same global batch, to 1e-8 relative: each rank's loss
  on its slice of b_r rows, weighted by b_r / B and summed, *is* the global batch's loss,
  so the runs differ only in the order of float64 additions (~1e-16 per step, far below
  1e-8), while a wrong weight (1/2 for the 32 of 63 rows) moves the first gradient by
  ~1/63. Checked for a network's weights (Flow mle) and lazily created Pyro params
  (Gaussian map), at a batch that 2 processes split unevenly (63) and one they split
  evenly (64). MCMC: chain i on rank i mod 2 gives the one-process chains draw for draw.
* **Every gradient-based family** (each contract case of tests/cases.py whose engine
  runs the loop, so a new family joins by having a case) ends with the same fit,
  bitwise, on both ranks; the engines that are not a loop or MCMC (closed forms, EM)
  refuse ``distributed=True``, and so does a process that torchrun did not start.
* **Failure and recovery.** A rank that raises stops the run, non-zero and promptly; a
  run stopped at step k resumes, in a new launch, bit for bit; only rank 0 writes the
  checkpoint and the saved fit.
"""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import pyro_genmodels as pgm
from pyro_genmodels.infer import checkpoint as ckpt
from tests.cases import CASES
from tests.distributed_worker import (FAILING_STEP, ORACLE_RUNS, STOP_STEP, STREAMED_RUNS,
                                      fit_tensors, mcmc_fit, oracle_fit, optimizing_pairs)

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")
WORLD = 2
GROUP_INFO = {"world_size": WORLD, "backend": "gloo"}
RTOL = 1e-8
LAUNCH_TIMEOUT = 300  # seconds; a launch takes 10-30 s on two cores


# ---------------------------------------------------------------------- helpers
@dataclasses.dataclass
class Launch:
    returncode: int
    output: str  # stdout and stderr of torchrun and its workers, interleaved
    elapsed: float  # wall seconds


def launch(scenario: str, outdir: Path, world: int = WORLD, **env_vars: str) -> Launch:
    """Run the worker's ``scenario`` under torchrun with ``world`` processes (and
    ``env_vars`` in their environment). torchrun starts a session of its own, so that a
    launch past LAUNCH_TIMEOUT is killed with its workers."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYRO_GENMODELS_DIST_TIMEOUT": "60",
           **env_vars}
    if os.path.exists("/sys/class/net/lo"):  # gloo on the loopback only
        env["GLOO_SOCKET_IFNAME"] = "lo"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={world}", str(WORKER), scenario, str(outdir)]
    start = time.monotonic()
    with subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          start_new_session=True) as proc:
        try:
            output, _ = proc.communicate(timeout=LAUNCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return Launch(proc.returncode, output, time.monotonic() - start)


def run_ok(scenario: str, outdir: Path, world: int = WORLD, **env_vars: str):
    """Launch ``scenario``, require success, and return each rank's (facts, tensors)."""
    done = launch(scenario, outdir, world, **env_vars)
    assert done.returncode == 0, done.output[-6000:]
    return [(json.loads((outdir / f"{scenario}-rank{r}.json").read_text()),
             load_file(str(outdir / f"{scenario}-rank{r}.safetensors")))
            for r in range(world)]


def of_run(tensors, run: str):
    """The tensors of one run (keys ``run/part/name``), keyed ``part/name``."""
    return {k[len(run) + 1:]: v for k, v in tensors.items() if k.startswith(run + "/")}


def assert_same(got, want, what: str) -> None:
    """Bitwise the same tensors."""
    assert got.keys() == want.keys(), what
    bad = [k for k in want if not torch.equal(got[k], want[k])]
    assert not bad, f"{what}: {bad}"


def assert_close(got, want, what: str) -> None:
    """Float64 tensors the same to RTOL relative to each tensor's scale (max |entry|);
    integer ones (a flow's orders) equal."""
    assert got.keys() == want.keys() and want, what
    for k, w in want.items():
        g = got[k]
        assert g.dtype == w.dtype and g.shape == w.shape, (what, k)
        if not w.is_floating_point():
            assert torch.equal(g, w), (what, k)
            continue
        assert w.dtype == torch.float64, (what, k)
        err = (g - w).abs().max()
        assert err <= RTOL * w.abs().max(), f"{what} {k}: max error {err:.3g}"


def assert_trace_close(got, want, what: str) -> None:
    """Loss traces equal entry by entry, to RTOL relative."""
    assert len(got) == len(want) > 0, what
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64),
                               torch.tensor(want, dtype=torch.float64),
                               rtol=RTOL, atol=0, msg=what)


# ---------------------------------------------------------------------- the oracle
def test_two_processes_reach_the_one_process_fit(tmp_path, monkeypatch):
    """Point fits at an uneven and an even global batch, NUTS chains across ranks, and
    the seed the ranks agree on, in one launch."""
    monkeypatch.delenv("PYRO_GENMODELS_GLOO_IO", raising=False)  # the default: idle
    ranks = run_ok("oracle", tmp_path)
    for name in ORACLE_RUNS:
        one = oracle_fit(name)  # one process, no group
        want = fit_tensors(one)
        for r, (facts, tensors) in enumerate(ranks):
            run = facts[name]
            assert run["info"]["distributed"] == GROUP_INFO
            assert run["seed"] == one.seed
            assert_trace_close(run["losses"], one.losses, f"{name} losses on rank {r}")
            assert_close(of_run(tensors, name), want, f"{name} on rank {r}")
        assert_same(of_run(ranks[1][1], name), of_run(ranks[0][1], name), name)
        if name in STREAMED_RUNS:  # each rank read only its rows from a Dataset
            run = f"{name}-streamed"
            for r, (facts, tensors) in enumerate(ranks):
                assert facts[run]["info"]["streamed_rows"] == 512
                assert_trace_close(facts[run]["losses"], one.losses, f"{run} on rank {r}")
                assert_close(of_run(tensors, run), want, f"{run} on rank {r}")

    one = mcmc_fit()
    for r, (facts, tensors) in enumerate(ranks):
        assert facts["nuts"]["arviz_chains"] == 2
        assert facts["nuts"]["info"]["distributed"] == GROUP_INFO
        assert_close(of_run(tensors, "nuts"), fit_tensors(one), f"nuts on rank {r}")

    # seed=None on every rank: rank 0's fresh seed everywhere; different seeds: refused
    assert ranks[0][0]["seed_none"] == ranks[1][0]["seed_none"]
    for facts, _ in ranks:
        assert "needs the same seed on every rank" in str(facts["seed_mismatch"])
        # another lr on rank 1 was taken, and the ranks ended with different fits
        assert facts["options_mismatch"] == (
            "distributed=True needs the same model, method, options and training data on "
            "every rank; rank 1 differs from rank 0 in options.lr 0.01 vs 0.1")
        assert facts["mcmc_mismatch"].endswith(
            "rank 1 differs from rank 0 in config.prior_scale 10.0 vs 1.0; "
            "options.num_chains 2 vs 4")

    # the group the fits started is destroyed and freed at exit, also after
    # torch._dynamo was imported: left up, its gloo threads race the interpreter's
    # finalization and abort the process now and then ("terminate called without an
    # active exception", pytorch/pytorch#179291)
    for r in range(WORLD):
        got = json.loads((tmp_path / f"oracle-rank{r}-exit.json").read_text())
        assert got == {"initialized": False, "freed": True}, (r, got)

    # the group's gloo I/O thread runs at SCHED_IDLE, so that its spinning never keeps
    # a collective's thread off a core (infer/distributed.py says why)
    if sys.platform.startswith("linux"):
        for r, (facts, _) in enumerate(ranks):
            assert facts["gloo_io"] and set(facts["gloo_io"]) == {os.SCHED_IDLE}, (r, facts)


# ---------------------------------------------------------------------- every family
@pytest.mark.slow  # a torchrun launch of 2 processes: 15-25 s on 2 cores
def test_every_gradient_family_ends_alike_on_every_rank(tmp_path):
    pairs = optimizing_pairs()
    assert {m for _, m in pairs} >= {"mle", "map", "vi", "adversarial", "dsm", "ssm"}
    # (and PYRO_GENMODELS_GLOO_IO=normal leaves gloo's I/O threads as gloo made them)
    (facts0, tensors0), (facts1, tensors1) = run_ok("families", tmp_path,
                                                    PYRO_GENMODELS_GLOO_IO="normal")
    if sys.platform.startswith("linux"):
        for facts in (facts0, facts1):
            assert facts["gloo_io"] and os.SCHED_IDLE not in facts["gloo_io"], facts["gloo_io"]
    different = []
    for name, method in pairs:
        run = f"{name}:{method}"
        for facts in (facts0, facts1):
            assert facts[run]["info"]["distributed"] == GROUP_INFO, run
            assert len(facts[run]["losses"]) == 3, run
        if facts0[run] != facts1[run]:  # losses are all-reduced: the same on every rank
            different.append(f"{run} losses/info")
        a, b = of_run(tensors0, run), of_run(tensors1, run)
        assert a.keys() == b.keys() and a, run
        different += [f"{run} {k}" for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"the ranks' fits differ: {different}"


def test_engines_that_are_not_a_loop_or_mcmc_refuse_distributed():
    """Closed forms and EM would compute the same result on every rank: refused, before
    any group is needed (this process has none)."""
    refused, said = 0, []
    for case in CASES.values():
        model, data = case.make_model(), case.make_data(0)
        for method in case.fast_options:
            if "distributed" in type(model).engine(method).option_names():
                continue
            with pytest.raises(ValueError, match="cannot run distributed") as e:
                model.fit(data.x, method=method, distributed=True, progress=False, **data.kw)
            refused += 1
            said.append(str(e.value))
    assert refused >= 2  # GaussianMixture's EM and the n-gram's closed form at least
    # chees is MCMC too: the message said "not a gradient or MCMC engine" and named
    # internal classes (ChEESEngine, Relabeled)
    assert not [m for m in said if "Engine" in m or "Relabeled" in m or "MCMC engine" in m]
    chees = [m for m in said if "'chees'" in m]
    assert chees and all("chees (its chains one batched computation) run in one process"
                         in m for m in chees)


@pytest.mark.parametrize("method", ["map", "nuts"])
def test_distributed_outside_torchrun_says_how_to_start(method, monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    x = pgm.datasets.correlated_gaussian(30, dim=2, seed=0)[0]
    with pytest.raises(ValueError, match="torchrun"):
        pgm.Gaussian(2).fit(x, method=method, distributed=True, progress=False)


@pytest.mark.parametrize("var, value, expected", [
    ("PYRO_GENMODELS_GLOO_IO", "low", "PYRO_GENMODELS_GLOO_IO='low': expected 'idle' or "
                                      "'normal'"),
    ("PYRO_GENMODELS_DIST_TIMEOUT", "ten", "PYRO_GENMODELS_DIST_TIMEOUT='ten': expected a "
                                           "number of seconds > 0"),
    ("PYRO_GENMODELS_DIST_TIMEOUT", "-1", "PYRO_GENMODELS_DIST_TIMEOUT='-1': expected"),
])
def test_a_wrong_group_setting_is_refused_before_a_group_starts(var, value, expected,
                                                                monkeypatch):
    import torch.distributed as dist

    for name, v in {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": "1", "PYRO_GENMODELS_GLOO_IO": "",
                    "PYRO_GENMODELS_DIST_TIMEOUT": "", var: value}.items():
        monkeypatch.setenv(name, v)  # (an empty one means unset)
    x = pgm.datasets.correlated_gaussian(30, dim=2, seed=0)[0]
    with pytest.raises(ValueError, match=re.escape(expected)):
        pgm.Gaussian(2).fit(x, method="map", distributed=True, progress=False)
    assert not dist.is_initialized()


# ---------------------------------------------------------------------- binding to cores
def test_local_cpus_split_the_cpus_evenly_into_blocks():
    """Every split of 1..9 CPUs (not numbered from 0) among 1..6 local ranks, against
    its definition: with no more ranks than CPUs, disjoint contiguous blocks in rank
    order that cover the CPUs, sizes within one of each other, larger ones first; with
    more, rank r alone on CPU r mod n."""
    from pyro_genmodels.infer.distributed import local_cpus

    for n in range(1, 10):
        cpus = [3 * i + 1 for i in range(n)]
        for w in range(1, 7):
            shares = [local_cpus(r, w, list(reversed(cpus))) for r in range(w)]
            if w <= n:
                assert sum(shares, []) == cpus, (n, w, shares)
                sizes = [len(s) for s in shares]
                assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
            else:
                assert shares == [[cpus[r % n]] for r in range(w)], (n, w, shares)
    with pytest.raises(ValueError, match="local_rank=2, local_world_size=2"):
        local_cpus(2, 2, [0, 1])


BIND_SCRIPT = """
import json, os, threading
before = threading.Event(); stop = threading.Event()
def idle(event):
    event.set(); stop.wait()
old = threading.Thread(target=idle, args=(before,)); old.start(); before.wait()
from pyro_genmodels.infer.distributed import bind_to_cores, local_cpus
allowed = sorted(os.sched_getaffinity(0))
got = bind_to_cores()
after = threading.Event()
new = threading.Thread(target=idle, args=(after,)); new.start(); after.wait()
masks = {t: sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")}
print(json.dumps({"allowed": allowed, "got": got, "again": bind_to_cores(),
                  "want": local_cpus(1, 2, allowed), "masks": masks,
                  "old": old.native_id, "new": new.native_id}))
stop.set()
"""


# skipped only where the OS has no thread affinity (macOS, Windows): there bind_to_cores
# binds nothing by design and returns [], so there is nothing to check
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="os.sched_setaffinity "
                    "is Linux-only: bind_to_cores binds nothing elsewhere")
def test_bind_to_cores_binds_every_thread_to_the_local_ranks_share():
    """In a fresh process (binding this one would pin the test run) as local rank 1 of 2:
    the main thread, a thread started before and one started after all end bound to
    local_cpus(1, 2, the CPUs allowed before); a second call binds the same CPUs."""
    env = dict(os.environ, LOCAL_RANK="1", LOCAL_WORLD_SIZE="2")
    proc = subprocess.run([sys.executable, "-c", BIND_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["got"] == got["again"] == got["want"] and got["got"], got
    assert str(got["old"]) in got["masks"] and str(got["new"]) in got["masks"], got
    assert all(mask == got["want"] for mask in got["masks"].values()), got
    if len(got["allowed"]) >= 2:  # then local rank 1 of 2 has a strict subset
        assert set(got["want"]) < set(got["allowed"]), got

    bad = dict(os.environ, LOCAL_RANK="one")
    proc = subprocess.run([sys.executable, "-c", "from pyro_genmodels.infer.distributed "
                           "import bind_to_cores; bind_to_cores()"], env=bad,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "LOCAL_RANK='one'" in proc.stderr, proc.stderr


# ---------------------------------------------------------------------- failure, recovery
@pytest.mark.slow  # a torchrun launch of 2 processes: 15-25 s on 2 cores
def test_a_rank_that_raises_stops_the_run_promptly(tmp_path):
    done = launch("failure", tmp_path)
    assert done.returncode != 0
    assert done.elapsed < 60, done.elapsed  # not the minutes of FAILING_NUM_STEPS steps
    assert f"RuntimeError: rank 1's callback raised at step {FAILING_STEP}" in done.output
    # rank 0, blocked in the step's collective when rank 1 exits, raises a RankFailure
    # that names the step (and only then gets torchrun's SIGTERM: its exit code is -15);
    # if the SIGTERM came first, it never reports
    report = tmp_path / "failure-rank0.json"
    if report.exists():
        error = json.loads(report.read_text())["error"]
        assert error["type"] == "RankFailure", error
        assert f"at step {FAILING_STEP} failed" in error["message"]
        assert "resume" in error["message"]
    else:
        assert re.search(r"rank\s*: 0 .*\n\s*exitcode\s*: -15", done.output), done.output[-6000:]


@pytest.mark.slow  # a torchrun launch of 2 processes with 3 NUTS chains: about 20 s
def test_a_rank_done_with_its_chains_first_waits_for_the_others(tmp_path):
    """Rank 1 finishes its one chain a chain's time before rank 0 its two: with a group
    timeout of 2 s the gathering of the chains failed there, and every draw was lost
    (at the default 300 s, any chains that long); it now waits while rank 0 draws."""
    one = time.monotonic()
    x = pgm.datasets.correlated_gaussian(60, dim=2, seed=1)[0].double()
    pgm.Gaussian(2).fit(x, method="nuts", seed=5, progress=False, num_samples=400,
                        warmup_steps=400, num_chains=1)
    chain = time.monotonic() - one
    assert chain > 3, chain  # so rank 1 waits past the timeout below
    results = run_ok("uneven", tmp_path, PYRO_GENMODELS_DIST_TIMEOUT="2")
    for facts, tensors in results:
        assert facts["chains"] == 3
    assert_same(of_run(results[1][1], "nuts"), of_run(results[0][1], "nuts"), "rank 1")


@pytest.mark.cost(25)
@pytest.mark.slow  # a torchrun launch of 2 processes
def test_a_bad_streamed_row_ends_every_rank_alike(tmp_path):
    """A row refused in one rank's share of a minibatch: that rank raised the check's
    ValueError and lost the steps before; the others stopped with a RankFailure (a peer
    left their all-reduce) whose advice to resume did not apply. The refusal now travels
    in the step's all-reduce: every rank ends with the same FitError, naming the row and
    the rank, whose fit is the same run stopped a step before, on every rank; at the
    first step, with nothing to keep, every rank raises the same ValueError."""
    results = run_ok("bad_row", tmp_path, PYRO_GENMODELS_DIST_TIMEOUT="30")
    (facts0, tensors0), (facts1, tensors1) = results
    assert facts0["error"] == facts1["error"] and facts0["first"] == facts1["first"]
    error, first = facts0["error"], facts0["first"]
    assert error["type"] == "FitError" and error["step"] > 0, error
    assert re.fullmatch(r"data must be finite: found nan at row 4302, column 1 \(in rank "
                        r"[01]'s share of the minibatch\) \(in a minibatch of step \d+: the "
                        r"fit stops there, and err.fit keeps what the steps before it "
                        r"trained\)", error["message"]), error["message"]
    assert first["type"] == "ValueError" and re.fullmatch(
        r"data must be finite: found nan at row 4302, column 1 \(in rank [01]'s share of "
        r"the minibatch\)", first["message"]), first["message"]
    for facts, tensors in results:
        assert facts["kept"]["info"]["stopped"] == "bad_row"
        assert facts["kept"]["losses"] == facts["upto"]["losses"]
        assert len(facts["kept"]["losses"]) == error["step"]
        assert_same(of_run(tensors, "kept"), of_run(tensors, "upto"), "kept vs upto")
        # rank 0 ran the step's ELBO before it heard of rank 1's row, and its random state,
        # which every rank takes after the loop, moved the posterior draws by up to 0.78
        assert_same(of_run(tensors, "vi_kept"), of_run(tensors, "vi_upto"), "vi kept")
    assert_same(of_run(tensors1, "kept"), of_run(tensors0, "kept"), "rank 1")
    assert facts0["vi_error"] == facts1["vi_error"] and "in rank 1's share" in facts0["vi_error"]
    # the contrastive loss runs a collective of its own: rank 0 aborted in gloo (a
    # collective mismatch) while rank 1 waited in the gradient all-reduce
    assert facts0["energy_error"] == facts1["energy_error"]
    assert "found nan at row 4999, column 1 (in rank 1's share" in facts0["energy_error"]


@pytest.mark.slow  # a torchrun launch of 2 processes: 15-25 s on 2 cores
def test_a_stopped_run_resumes_bit_for_bit_and_rank_0_alone_writes(tmp_path):
    """A VAE (rank 1 draws codes of its own: its RNG state must come back too)."""
    first = run_ok("checkpoint", tmp_path)
    resumed = run_ok("resume", tmp_path)
    for r in range(WORLD):
        (facts, tensors), (again, again_tensors) = first[r], resumed[r]
        whole = facts["whole"]
        assert len(facts["stopped"]["losses"]) == STOP_STEP + 1
        assert facts["stopped"]["info"]["stopped"] == "callback"
        assert again["resumed"]["losses"] == whole["losses"], r
        assert_same(of_run(again_tensors, "resumed"), of_run(tensors, "whole"), f"rank {r}")
    assert_same(of_run(first[1][1], "whole"), of_run(first[0][1], "whole"), "whole")

    for directory, step in (("every5", len(first[0][0]["whole"]["losses"])),
                            ("stopped", STOP_STEP + 1)):
        assert [p.name for p in (tmp_path / directory).iterdir()] == [ckpt.FILE]
        state, _ = ckpt.read(tmp_path / directory)
        assert state["step"] == step and len(state["rng"]) == WORLD  # every rank's RNG

    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["fit.json",
                                                                        "tensors.safetensors"]
    back = pgm.load(tmp_path / "saved")
    assert back.losses == first[0][0]["whole"]["losses"]
    assert back.info["distributed"] == GROUP_INFO
    assert_same(fit_tensors(back), of_run(first[0][1], "whole"), "the saved fit")
