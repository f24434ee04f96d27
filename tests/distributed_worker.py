"""The worker that tests/test_distributed.py starts under ``torchrun``: one named scenario
per launch (a launch costs seconds, so each bundles several fits).

    python -m torch.distributed.run --standalone --nproc_per_node=2 \\
        tests/distributed_worker.py SCENARIO OUTDIR

Every rank writes what it saw to ``OUTDIR/SCENARIO-rank{r}.json`` (losses, infos, seeds,
errors) and ``OUTDIR/SCENARIO-rank{r}.safetensors`` (tensors, keyed ``run/part/name``):
JSON and safetensors only, so reading the results back never unpickles. The test
compares the ranks with each other and with a one-process run it makes itself from the
same definitions (:func:`oracle_fit`, :func:`mcmc_fit`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import torch
from safetensors.torch import save_file

if __name__ == "__main__":  # started as a script: make ``tests.cases`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyro_genmodels as pgm  # noqa: E402
from pyro_genmodels._rng import seeded  # noqa: E402
from pyro_genmodels.infer.loop import LoopOptions  # noqa: E402
from tests.cases import CASES  # noqa: E402

FAILING_STEP = 3  # the step at which rank 1's callback raises in the "failure" scenario
FAILING_NUM_STEPS = 50_000  # several minutes of steps, if the failure did not stop them
STOP_STEP = 7  # the step after which the "checkpoint" scenario's callback stops the fit


# ---------------------------------------------------------------------- what a fit is
def fit_tensors(fit) -> Dict[str, torch.Tensor]:
    """A fit's parameters as one flat dict: the model's ``state_dict`` (network weights,
    buffers), the point estimate and the posterior draws."""
    out = {f"state/{k}": v for k, v in fit.model.state_dict().items()}
    for group in ("point", "posterior"):
        out.update({f"{group}/{k}": v for k, v in (getattr(fit, group) or {}).items()})
    return {k: v.detach().cpu().clone().contiguous() for k, v in out.items()}


# ---------------------------------------------------------------------- the oracle runs
def oracle_data() -> torch.Tensor:
    """512 float64 rows of the eight-Gaussians toy (a float64 fit: its dtype is the data's)."""
    with seeded(0):
        return pgm.datasets.toy("eight_gaussians").sample((512,)).double()


def _flow():
    with seeded(0):  # the same initial weights in every process
        return pgm.Flow(2, hidden=(16, 16), num_transforms=2)


#: name -> (model, method, options): a network's weights through NegativeLogJoint (Flow
#: mle) and lazily created Pyro params through the ELBO and AutoDelta (Gaussian map), at a
#: global batch that 2 processes split unevenly (63 = 32 + 31) and one they split evenly
ORACLE_RUNS: Dict[str, Tuple[Callable[[], Any], str, Dict[str, Any]]] = {
    f"{name}-{batch}": (make, method, {"batch_size": batch, "num_steps": 20, "lr": lr})
    for name, make, method, lr in (("flow", _flow, "mle", 3e-3),
                                   ("gaussian", lambda: pgm.Gaussian(2), "map", 0.05))
    for batch in (63, 64)
}


#: oracle runs repeated on streamed rows (a Dataset): the same fit as the tensor's
STREAMED_RUNS = ("flow-63", "gaussian-63")


def oracle_fit(name: str, seed=3, streamed: bool = False, **extra: Any):
    """``streamed``: the same rows as a Dataset, read per minibatch (each rank reads only
    its share of every global batch)."""
    from torch.utils.data import TensorDataset

    make, method, options = ORACLE_RUNS[name]
    data = TensorDataset(oracle_data()) if streamed else oracle_data()
    return make().fit(data, method=method, seed=seed, progress=False,
                      **{**options, **extra})


def mcmc_fit(**extra: Any):
    """Gaussian NUTS, two tiny chains."""
    x = pgm.datasets.correlated_gaussian(60, dim=2, seed=1)[0].double()
    return pgm.Gaussian(2).fit(x, method="nuts", seed=5, progress=False, num_samples=10,
                               warmup_steps=10, num_chains=2, max_tree_depth=4, **extra)


# ---------------------------------------------------------------------- every family
def optimizing_pairs():
    """(case, method) of every contract case whose engine runs the optimization loop (its
    options are the loop's); the others (closed forms, EM, MCMC) are tested apart."""
    return [(name, method) for name, case in CASES.items() for method in case.fast_options
            if issubclass(type(case.make_model()).engine(method).Options, LoopOptions)]


def family_fit(name: str, method: str, **extra: Any):
    """The contract case's fit with a handful of steps."""
    case = CASES[name]
    data = case.make_data(0)
    options = {**case.fast_options[method], "num_steps": 3, **extra}
    return case.make_model().fit(data.x, method=method, seed=0, progress=False, **data.kw,
                                 **options)


# ---------------------------------------------------------------------- checkpoints
def resumable_fit(**extra: Any):
    """A VAE (rank 1 draws its own codes: its RNG state is part of the checkpoint)."""
    with seeded(0):
        model = pgm.VAE(3, 2, likelihood="gaussian", hidden=(16,))
    x = pgm.datasets.correlated_gaussian(120, dim=3, seed=0)[0]
    return model.fit(x, method="mle", seed=4, progress=False, num_steps=12, batch_size=31,
                     **extra)


# ---------------------------------------------------------------------- the scenarios
class Results:
    """What one rank reports: JSON facts and named tensors."""

    def __init__(self):
        self.facts: Dict[str, Any] = {}
        self.tensors: Dict[str, torch.Tensor] = {}

    def add_fit(self, run: str, fit) -> None:
        self.facts[run] = {"losses": fit.losses, "info": fit.info, "seed": fit.seed}
        self.tensors.update({f"{run}/{k}": v for k, v in fit_tensors(fit).items()})

    def write(self, outdir: Path, scenario: str, rank: int) -> None:
        (outdir / f"{scenario}-rank{rank}.json").write_text(json.dumps(self.facts))
        save_file(self.tensors, str(outdir / f"{scenario}-rank{rank}.safetensors"))


def oracle(out: Results, outdir: Path, rank: int) -> None:
    for name in ORACLE_RUNS:
        out.add_fit(name, oracle_fit(name, distributed=True))
    for name in STREAMED_RUNS:
        out.add_fit(f"{name}-streamed", oracle_fit(name, distributed=True, streamed=True))
    fit = mcmc_fit(distributed=True)
    out.add_fit("nuts", fit)
    out.facts["nuts"]["arviz_chains"] = int(fit.to_arviz().posterior.sizes["chain"])
    # the seed: rank 0's fresh one when every rank passes None; different ones are refused
    out.facts["seed_none"] = oracle_fit("gaussian-64", distributed=True, seed=None,
                                        num_steps=2).seed
    try:
        oracle_fit("gaussian-64", distributed=True, seed=rank, num_steps=2)
    except ValueError as e:
        out.facts["seed_mismatch"] = str(e)
    else:
        out.facts["seed_mismatch"] = None
    # and so are other options (lr: the ranks would mix two objectives)
    try:
        oracle_fit("gaussian-64", distributed=True, num_steps=2, lr=[0.01, 0.1][rank])
    except ValueError as e:
        out.facts["options_mismatch"] = str(e)
    try:  # MCMC too: chains of two posteriors were mixed, 3 where 2 were asked for
        x = pgm.datasets.correlated_gaussian(60, dim=2, seed=1)[0].double()
        pgm.Gaussian(2, prior_scale=[10.0, 1.0][rank]).fit(
            x, method="nuts", seed=5, progress=False, num_samples=10, warmup_steps=10,
            num_chains=[2, 4][rank], distributed=True)
    except ValueError as e:
        out.facts["mcmc_mismatch"] = str(e)


def uneven(out: Results, outdir: Path, rank: int) -> None:
    """3 NUTS chains on 2 ranks: rank 1's one chain ends a chain's time before rank 0's
    two, longer than the group's timeout the test sets."""
    x = pgm.datasets.correlated_gaussian(60, dim=2, seed=1)[0].double()
    fit = pgm.Gaussian(2).fit(x, method="nuts", seed=5, progress=False, num_samples=400,
                              warmup_steps=400, num_chains=3, distributed=True)
    out.add_fit("nuts", fit)
    out.facts["chains"] = int(fit.posterior["loc"].shape[0])


def bad_row(out: Results, outdir: Path, rank: int) -> None:
    """A NaN at row 4302 of 5,000 streamed rows, outside the 2,048-row sample checked
    before training: a minibatch of a later step draws it into one rank's share. Then
    the same rows in one full batch: the first step's share of one rank holds it."""
    from torch.utils.data import TensorDataset

    with seeded(0):
        x = pgm.datasets.toy("eight_gaussians").sample((5000,)).double()
    x[4302, 1] = float("nan")
    kw = dict(method="map", seed=0, batch_size=500, progress=False, lr_decay=1.0,
              distributed=True)
    try:
        pgm.Gaussian(2).fit(TensorDataset(x), num_steps=200, **kw)
    except pgm.FitError as e:
        out.facts["error"] = {"type": type(e).__name__, "message": str(e), "step": e.step}
        out.add_fit("kept", e.fit)
        out.add_fit("upto", pgm.Gaussian(2).fit(TensorDataset(x), num_steps=e.step, **kw))
    try:
        pgm.Gaussian(2).fit(TensorDataset(x), num_steps=5, **dict(kw, batch_size=None))
    except ValueError as e:
        out.facts["first"] = {"type": type(e).__name__, "message": str(e)}
    # in rank 1's share (step 2), where the ranks' losses draw random numbers (an ELBO)
    # or run a collective of their own (the contrastive energy's step-size agreement):
    # no rank may compute a loss of the refused step
    x[4302, 1], x[4999, 1] = 0.0, float("nan")
    vi = dict(kw, method="vi")
    try:
        pgm.Gaussian(2).fit(TensorDataset(x), num_steps=200, **vi)
    except pgm.FitError as e:
        out.facts["vi_error"] = str(e)
        out.add_fit("vi_kept", e.fit)
        out.add_fit("vi_upto", pgm.Gaussian(2).fit(TensorDataset(x), num_steps=e.step, **vi))
    with seeded(0):
        energy = pgm.EnergyModel(2, hidden=(16, 16), noise_conditional=False,
                                 standardize=False)  # no pass over the rows first
    try:
        energy.fit(TensorDataset(x), num_steps=200, **dict(
            kw, method="mle", buffer_size=256, mcmc_steps=3, lr_decay=0.1))
    except pgm.FitError as e:
        out.facts["energy_error"] = str(e)


def families(out: Results, outdir: Path, rank: int) -> None:
    for name, method in optimizing_pairs():
        out.add_fit(f"{name}:{method}", family_fit(name, method, distributed=True))


def failure(out: Results, outdir: Path, rank: int) -> None:
    def callback(step, loss):
        if rank == 1 and step == FAILING_STEP:
            raise RuntimeError(f"rank 1's callback raised at step {step}")

    try:
        oracle_fit("flow-64", distributed=True, num_steps=FAILING_NUM_STEPS, callback=callback)
    except Exception as e:  # report it (if this rank lives long enough), then fail
        out.facts["error"] = {"type": type(e).__name__, "message": str(e)}
        out.write(outdir, "failure", rank)
        raise


def checkpoint(out: Results, outdir: Path, rank: int) -> None:
    whole = resumable_fit(distributed=True, checkpoint=str(outdir / "every5"),
                          checkpoint_every=5)
    out.add_fit("whole", whole)
    out.add_fit("stopped", resumable_fit(
        distributed=True, checkpoint=str(outdir / "stopped"), checkpoint_every=5,
        callback=lambda step, loss: step == STOP_STEP))
    whole.save(outdir / "saved")


def resume(out: Results, outdir: Path, rank: int) -> None:
    out.add_fit("resumed", resumable_fit(distributed=True, resume=str(outdir / "stopped")))


def cuda(out: Results, outdir: Path, rank: int) -> None:
    """The oracle's point fits and NUTS chains on the GPU (tests/test_cuda.py: nccl)."""
    for name in ORACLE_RUNS:
        out.add_fit(name, oracle_fit(name, distributed=True, device="cuda"))
    out.add_fit("nuts", mcmc_fit(distributed=True, device="cuda"))


SCENARIOS = {f.__name__: f for f in (oracle, families, failure, checkpoint, resume, cuda,
                                     uneven, bad_row)}


def gloo_io_policies() -> List[int]:
    """The scheduling policy of each of this process's gloo I/O threads."""
    from pyro_genmodels.infer.distributed import gloo_io_threads

    return [os.sched_getscheduler(tid) for tid in gloo_io_threads()]


def exit_report(path: Path, group: list) -> None:
    """At exit, after the package's own atexit hook (registered later, so run earlier):
    whether the group the fits started is down and freed (nothing holds it, so its gloo
    threads were joined before the interpreter finalizes)."""
    import gc

    import torch.distributed as dist

    gc.collect()
    path.write_text(json.dumps({"initialized": dist.is_initialized(),
                                "freed": bool(group) and group[0]() is None}))


def main(scenario: str, outdir: str) -> None:
    import atexit
    import weakref

    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    group: list = []
    atexit.register(exit_report, Path(outdir) / f"{scenario}-rank{rank}-exit.json", group)
    out = Results()
    SCENARIOS[scenario](out, Path(outdir), rank)
    out.facts["gloo_io"] = gloo_io_policies() if os.path.isdir("/proc/self/task") else None
    out.write(Path(outdir), scenario, rank)
    if dist.is_initialized():
        group.append(weakref.ref(dist.group.WORLD))
    # torch._dynamo imports modules whose functions take group=dist.group.WORLD as a
    # default: imported now, they would hold the group unless the package imported them
    # before starting it
    import torch._dynamo  # noqa: F401


if __name__ == "__main__":
    main(*sys.argv[1:])
