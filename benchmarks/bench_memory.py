"""Peak memory of ``fit.log_prob(x)`` and ``fit.sample(n)`` against N, per family.

    python benchmarks/bench_memory.py [--rows 1e6 1e7] [--families flow vae ...]
                                      [--no-reset]

Each call is measured in a fresh process (``--child``): the family is fitted on 2,000
rows of ``eight_gaussians`` (dim 2) with a tiny budget (5 steps); the call is made once on
1,000 rows (first-use costs: kernels, thread pools, an energy fit's AIS log Z), then the
C heap is trimmed, the process's RSS high-water mark reset (``/proc/self/clear_refs``,
where the kernel allows it; not with ``--no-reset``) and the call timed on N rows.
``extra`` is the high-water mark less the RSS before the call (the input, a float32
tensor of the model's dtype, is already resident); ``output`` the bytes of the result.
Without a reset the high-water mark is the process's since it started (its imports, the
fit and the first-use call on 1,000 rows included), so ``extra`` is an upper bound on the
call's own: what ``tests/test_memory.py`` checks, the same wherever it runs. One line per
measurement (``reset`` when the high-water mark was reset before the call):

    <family> <op> N=<rows> extra=<MiB> MiB output=<MiB> MiB input=<MiB> MiB time=<s> s [reset]

The claim checked by ``tests/test_memory.py``: ``extra <= output + input + budget``,
``budget`` the working set of :func:`pyro_genmodels.fit.working_set_bytes` (a fixed
number of chunks), so the memory a call takes beyond its output does not grow with N.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

MiB = 2 ** 20

#: family -> (class, constructor options, fit options, operations measured).
#: Architectures are the defaults unless a default would make a 1e7-row call take hours
#: on a CPU (diffusion's bound runs all T steps per row, the score ODE tens of solver
#: steps, the VAE 100 importance samples per row).
FAMILIES = {
    "gaussian": ("Gaussian", {}, {"method": "mle"}, ("log_prob", "sample")),
    "gaussian_vi": ("Gaussian", {}, {"method": "vi", "num_steps": 5}, ("log_prob", "sample")),
    "gaussian_mixture": ("GaussianMixture", {"n_components": 3}, {"method": "mle",
                                                                   "num_steps": 5},
                         ("log_prob", "sample")),
    "ppca": ("PPCA", {"latent_dim": 1}, {"method": "mle", "num_steps": 5},
             ("log_prob", "sample")),
    "flow": ("Flow", {}, {"method": "mle", "num_steps": 5}, ("log_prob", "sample")),
    "vae": ("VAE", {"latent_dim": 2, "likelihood": "gaussian", "hidden": (64,)},
            {"method": "mle", "num_steps": 5}, ("log_prob", "sample")),
    "diffusion": ("Diffusion", {"timesteps": 10, "hidden": (64, 64)},
                  {"method": "mle", "num_steps": 5}, ("log_prob", "sample")),
    "score": ("ScoreModel", {"hidden": (32, 32)}, {"method": "dsm", "num_steps": 5},
              ("log_prob", "sample")),
    # sigma_0 given: the fit's choice of it (an AIS run per candidate) costs half a minute
    "energy": ("EnergyModel", {"eval_sigma": 0.1}, {"method": "mle", "num_steps": 5},
               ("log_prob", "sample")),
    "gan": ("GAN", {}, {"method": "adversarial", "num_steps": 5}, ("sample",)),
}

#: call options per (family, op): cheap settings where the default is a long run whose
#: cost per row, not its memory, is not the point (score sampling's 100 Langevin steps per
#: level, energy sampling's MCMC warm-up)
CALL_OPTIONS = {
    ("score", "sample"): {"steps_per_level": 2},
    ("energy", "sample"): {"warmup_steps": 20},
}

#: the most rows measured per (family, op) in the default run; larger ``--rows`` are
#: skipped (with a line saying why): a posterior predictive density over 1000 draws per
#: row, 100 importance samples per row, an adaptive ODE per row
MAX_ROWS = {
    ("gaussian_vi", "log_prob"): (10 ** 6, "1000 posterior draws per row: ~10 min at 1e7"),
    ("vae", "log_prob"): (10 ** 6, "100 importance samples per row: ~30 min at 1e7"),
    ("score", "log_prob"): (10 ** 6, "an adaptive ODE per row: ~1 h at 1e7"),
}


def _status(field: str) -> float:
    m = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(m.group(1)) * 1024 / MiB


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _trim() -> None:
    """Give the C heap's free memory back (``malloc_trim``), so the RSS before a call is
    what is live, not what an earlier call left free."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def child(family: str, calls, threads: int = 1, reset: bool = True) -> list:
    """The measurements ``calls`` (``(op, rows)`` pairs) of ``family`` in this (fresh)
    process: one fit, then per call the high-water mark reset (if ``reset`` and the
    kernel allows it) and the call timed. Without a reset only the first call's ``extra``
    is a bound on its own (:func:`measure` makes one call per process)."""
    import torch

    import pyro_genmodels as pgm

    torch.set_num_threads(threads)
    cls, options, fit_options, _ = FAMILIES[family]
    torch.manual_seed(0)
    data = pgm.datasets.toy("eight_gaussians").sample((2000,))
    model = getattr(pgm, cls)(2, **options)
    fit = model.fit(data, seed=0, progress=False, **fit_options)
    results = []
    for op, rows in calls:
        call = CALL_OPTIONS.get((family, op), {})
        if op == "log_prob":
            fit.log_prob(data[:1000], **call)  # first use (an energy fit's AIS log Z)
            x = torch.randn(rows, 2)
            input_bytes = x.nbytes
        else:
            fit.sample(1000, seed=0, **call)
            x, input_bytes = None, 0
        gc.collect()
        _trim()
        before = _status("VmRSS")
        was_reset = reset and _reset_peak()
        start = time.perf_counter()
        out = fit.log_prob(x, **call) if op == "log_prob" else fit.sample(rows, seed=0, **call)
        seconds = time.perf_counter() - start
        peak = _status("VmHWM")
        assert out.shape[0] == rows
        results.append({"family": family, "op": op, "rows": rows,
                        "extra_mib": peak - before, "output_mib": out.nbytes / MiB,
                        "input_mib": input_bytes / MiB, "seconds": seconds,
                        "baseline_mib": before, "peak_reset": was_reset})
        del out, x
    return results


def measure(family: str, calls, *, threads: int = 1, reset: bool = True,
            timeout: float = 3600) -> list:
    """:func:`child` for each call in a fresh interpreter of its own, so the high-water
    mark is that call's (after a reset) or at most the process's since it started (no
    reset, or where ``/proc/self/clear_refs`` refuses one)."""
    return [r for call in calls for r in _run_child(family, [call], threads, reset, timeout)]


def measure_together(family: str, calls, *, threads: int = 1, timeout: float = 3600) -> list:
    """:func:`child` for all ``calls`` in one fresh interpreter (one import, one fit), the
    high-water mark reset before each call; where the kernel refuses the reset, each call
    again in a process of its own (:func:`measure` without reset)."""
    results = _run_child(family, calls, threads, True, timeout)
    if all(r["peak_reset"] for r in results):
        return results
    return measure(family, calls, threads=threads, reset=False, timeout=timeout)


def _run_child(family: str, calls, threads: int, reset: bool, timeout: float) -> list:
    """One ``--child`` process measuring ``calls`` (run again once if a signal from
    outside ended it)."""
    spec = ",".join("{}:{}".format(*call) for call in calls)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", family, spec,
           "--threads", str(threads)] + ([] if reset else ["--no-reset"])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    for _ in range(2):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=env, check=False)
        if done.returncode >= 0:
            break
    if done.returncode != 0:
        raise RuntimeError(f"{family} {spec} failed (exit status {done.returncode}):\n"
                           f"{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def line(r: dict) -> str:
    return (f"{r['family']} {r['op']} N={r['rows']} extra={r['extra_mib']:.1f} MiB "
            f"output={r['output_mib']:.1f} MiB input={r['input_mib']:.1f} MiB "
            f"time={r['seconds']:.2f} s" + (" reset" if r["peak_reset"] else ""))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=2, metavar=("FAMILY", "OP:ROWS,..."))
    p.add_argument("--rows", nargs="+", default=["1e6", "1e7"])
    p.add_argument("--families", nargs="+", default=list(FAMILIES))
    p.add_argument("--ops", nargs="+", default=["log_prob", "sample"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-reset", action="store_true",
                   help="keep the high-water mark since the process started (an upper bound)")
    args = p.parse_args(argv)
    if args.child:
        family, spec = args.child
        calls = [(op, int(float(rows))) for op, rows in
                 (item.split(":") for item in spec.split(","))]
        print(json.dumps(child(family, calls, args.threads, not args.no_reset)))
        return None
    results = []
    for family in args.families:
        calls = []
        for op in FAMILIES[family][3]:
            if op not in args.ops:
                continue
            for rows in (int(float(r)) for r in args.rows):
                most, why = MAX_ROWS.get((family, op), (None, ""))
                if most is not None and rows > most:
                    print(f"{family} {op} N={rows} skipped: {why}", flush=True)
                else:
                    calls.append((op, rows))
        for r in measure(family, calls, threads=args.threads, reset=not args.no_reset):
            print(line(r), flush=True)
            results.append(r)
    return results


if __name__ == "__main__":
    main()
