"""Memory and size (issue #18).

* ``log_prob`` and ``sample`` work in chunks of :data:`pyro_genmodels.fit.CHUNK_ELEMENTS`
  numbers, whatever N: chunked results equal unchunked ones, and no network layer ever
  sees more than a chunk's rows (fast); an energy model's MCMC draws are recorded a
  segment at a time and are the chains' draws (fast); the peak RSS of a call on 1e6 - 1e7
  rows, each call in a fresh process, stays below its output + its input + the
  working-set budget :func:`pyro_genmodels.fit.working_set_bytes` (slow;
  ``benchmarks/bench_memory.py`` prints the whole table).
* A fit with ``batch_size`` never touches the N training rows during a step: every
  tensor a step makes has at most a batch's worth of rows (a dispatch mode watches every
  aten op of the steps).
"""

import contextlib
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import pyro_genmodels as pgm
from pyro_genmodels import _memory, fit as fit_module
from pyro_genmodels.models import energy_sampling
from tests.printed import load_script

ROOT = Path(__file__).resolve().parent.parent
D = 2


def data(n: int, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return pgm.datasets.toy("eight_gaussians").sample((n,))


@contextlib.contextmanager
def small_chunks(monkeypatch, elements: int):
    """The one chunk constant (every family reads ``fit.CHUNK_ELEMENTS`` at call time)
    set to ``elements`` numbers."""
    with monkeypatch.context() as m:
        m.setattr(fit_module, "CHUNK_ELEMENTS", elements)
        yield


def skip_ais(fit):
    """An energy fit with its cached log Z set (its AIS run costs seconds and is not
    what these tests are about); other fits as they are."""
    if isinstance(fit, pgm.models.energy_fit.EnergyFit):
        fit.info["log_z"] = {"estimate": 1.0, "stderr": 0.0, "num_samples": 1, "ess": 1.0,
                             "num_steps": 1, "settled": True}
    return fit


# ---------------------------------------------------------------------- chunks
DETERMINISTIC = {
    "gaussian": lambda x: pgm.Gaussian(D).fit(x, method="mle", seed=0, progress=False),
    "gaussian_vi": lambda x: pgm.Gaussian(D).fit(x, method="vi", seed=0, progress=False,
                                                 num_steps=20, num_posterior_samples=30),
    "mixture": lambda x: pgm.GaussianMixture(D, 3).fit(x, method="mle", seed=0,
                                                       progress=False, num_steps=5),
    "ppca": lambda x: pgm.PPCA(D, 1).fit(x, method="mle", seed=0, progress=False,
                                         num_steps=5),
    "flow": lambda x: pgm.Flow(D, hidden=(16, 16)).fit(x, method="mle", seed=0,
                                                       progress=False, num_steps=5),
    "energy": lambda x: pgm.EnergyModel(D, hidden=(16, 16), eval_sigma=0.1).fit(
        x, method="mle", seed=0, progress=False, num_steps=5),
    "score": lambda x: pgm.ScoreModel(D, hidden=(16, 16)).fit(
        x, method="dsm", seed=0, progress=False, num_steps=5),
}


@pytest.mark.parametrize("family", sorted(DETERMINISTIC))
def test_chunked_log_prob_equals_unchunked(family, monkeypatch):
    x = data(300)
    fit = skip_ais(DETERMINISTIC[family](x))
    y = data(200, seed=1)
    # the ODE adapts its steps to each chunk's rows: equal to the solver's tolerance
    options, tol = ({"rtol": 1e-6, "atol": 1e-6}, 1e-4) if family == "score" else ({}, 1e-5)
    whole = fit.log_prob(y, **options)
    draws = max(1, fit.num_draws) * (fit._ode_factor() if family == "score" else 1)
    with small_chunks(monkeypatch, 50 * fit._row_width() * draws):
        assert fit._rows(draws) == 50  # 4 chunks
        parts = fit.log_prob(y, **options)
    assert parts.shape == whole.shape and parts.dtype == whole.dtype
    torch.testing.assert_close(parts, whole, rtol=tol, atol=tol)


def test_chunked_sample_is_one_stream_and_a_chunk_draws_as_before(monkeypatch):
    from pyro_genmodels._rng import seeded

    x = data(300)
    fit = DETERMINISTIC["gaussian_vi"](x)
    draws = fit.posterior_samples()
    with seeded(3):  # what sample() did before chunking: all indices, then the draws
        idx = torch.randint(fit.num_draws, (7,))
        before = fit.model.sample_given({k: v[idx] for k, v in draws.items()}, 7)
    torch.testing.assert_close(fit.sample(7, seed=3), before, rtol=0, atol=0)
    with small_chunks(monkeypatch, 2 ** 6):  # 3 rows a chunk
        chunked = fit.sample(101, seed=3)
        again = fit.sample(101, seed=3)
    assert chunked.shape == (101, D) and torch.isfinite(chunked).all()
    torch.testing.assert_close(chunked, again, rtol=0, atol=0)
    torch.testing.assert_close(chunked[:3], fit.sample(3, seed=3), rtol=0, atol=0)


def test_chunked_helper_fills_one_output_in_order():
    calls = []

    def part(a, b):
        calls.append((a, b))
        return torch.arange(a, b).float().unsqueeze(-1).expand(-1, 3)

    out = _memory.chunked(10, 4, part)
    assert calls == [(0, 4), (4, 8), (8, 10)]
    torch.testing.assert_close(out[:, 0], torch.arange(10).float())
    single = _memory.chunked(3, 4, part)
    assert single.shape == (3, 3)


def test_chunk_seed_keeps_the_first_chunk_and_separates_the_others():
    assert _memory.chunk_seed(5, 0) == 5
    assert _memory.chunk_seed(None, 3) is None
    seeds = {_memory.chunk_seed(5, i) for i in range(1, 50)}
    assert len(seeds) == 49 and 5 not in seeds
    assert _memory.chunk_seed(5, 1) == _memory.chunk_seed(5, 1)


# ---------------------------------------------------------------------- layer rows
class LayerRows:
    """The most numbers any ``nn.Linear`` of ``module`` produced in one call."""

    def __init__(self, module: torch.nn.Module):
        self.most, self.handles = 0, []
        for layer in module.modules():
            if isinstance(layer, torch.nn.Linear):
                self.handles.append(layer.register_forward_hook(self._hook))

    def _hook(self, layer, inputs, output):
        self.most = max(self.most, output.numel())

    def close(self):
        for h in self.handles:
            h.remove()


def _flow(x):
    return pgm.Flow(D, hidden=(32, 32)).fit(x, method="mle", seed=0, progress=False,
                                            num_steps=3)


def _vae(x):
    return pgm.VAE(D, 2, likelihood="gaussian", hidden=(32,)).fit(
        x, method="mle", seed=0, progress=False, num_steps=3)


def _diffusion(x):
    return pgm.Diffusion(D, timesteps=8, hidden=(32, 32)).fit(
        x, method="mle", seed=0, progress=False, num_steps=3)


def _score(x):
    return pgm.ScoreModel(D, hidden=(32, 32)).fit(x, method="dsm", seed=0, progress=False,
                                                  num_steps=3)


def _energy(x):
    return pgm.EnergyModel(D, hidden=(32, 32), eval_sigma=0.1).fit(
        x, method="mle", seed=0, progress=False, num_steps=3)


def _gan(x):
    return pgm.GAN(D, hidden=(32, 32)).fit(x, method="adversarial", seed=0, progress=False,
                                           num_steps=3)


ODE = {"rtol": 1e-2, "atol": 1e-2}
#: case -> (fit, call, rows): rows enough that one pass over all of them would put more
#: than a chunk (2**12 numbers) through a layer of 32
NETWORKS = {
    "flow/log_prob": (_flow, lambda f, n, y: f.log_prob(y), 1000),
    "flow/sample": (_flow, lambda f, n, y: f.sample(n, seed=0), 1000),
    "vae/log_prob": (_vae, lambda f, n, y: f.log_prob(y, num_particles=8), 1000),
    "vae/sample": (_vae, lambda f, n, y: f.sample(n, seed=0), 1000),
    "diffusion/bound": (_diffusion, lambda f, n, y: f.log_prob(y), 1000),
    "diffusion/ode": (_diffusion, lambda f, n, y: f.log_prob(y, estimator="ode", **ODE), 200),
    "diffusion/ddim": (_diffusion, lambda f, n, y: f.sample(n, sampler="ddim", steps=4,
                                                            seed=0), 1000),
    "diffusion/ode_sample": (_diffusion, lambda f, n, y: f.sample(n, sampler="ode", seed=0,
                                                                  **ODE), 1000),
    "score/ode": (_score, lambda f, n, y: f.log_prob(y, **ODE), 200),
    "score/langevin": (_score, lambda f, n, y: f.sample(n, steps_per_level=2, seed=0), 1000),
    "score/pc": (_score, lambda f, n, y: f.sample(n, sampler="pc", steps_per_level=1,
                                                  seed=0), 1000),
    "energy/log_prob": (_energy, lambda f, n, y: f.log_prob(y), 1000),
    "gan/sample": (_gan, lambda f, n, y: f.sample(n, seed=0), 1000),
}


@pytest.mark.parametrize("case", sorted(NETWORKS))
def test_no_layer_sees_more_than_a_chunk(case, monkeypatch):
    make, call, n = NETWORKS[case]
    fit = skip_ais(make(data(300)))
    elements = 2 ** 12
    assert n * 32 > elements
    y = data(n, seed=1)
    with small_chunks(monkeypatch, elements):
        rows = LayerRows(fit.model)
        try:
            out = call(fit, n, y)
        finally:
            rows.close()
    assert out.shape[0] == n and torch.isfinite(out).all()
    assert 0 < rows.most <= elements, (case, rows.most)


def test_vae_sample_is_one_stream_and_a_chunk_draws_as_before(monkeypatch):
    from pyro_genmodels._rng import seeded

    fit = _vae(data(300))
    with seeded(3):  # what sample() did before chunking: one decoder pass
        before = fit.model.sample_given({}, 7)
    torch.testing.assert_close(fit.sample(7, seed=3), before, rtol=0, atol=0)
    with small_chunks(monkeypatch, 2 ** 9):  # 4 rows a chunk (128 numbers a row)
        assert fit._rows() == 4
        chunked = fit.sample(101, seed=3)
        again = fit.sample(101, seed=3)
        means = fit.sample(101, seed=3, mean=True)
    assert chunked.shape == means.shape == (101, D) and torch.isfinite(chunked).all()
    torch.testing.assert_close(chunked, again, rtol=0, atol=0)
    torch.testing.assert_close(chunked[:4], fit.sample(4, seed=3), rtol=0, atol=0)
    torch.testing.assert_close(means[:4], fit.sample(4, seed=3, mean=True), rtol=0, atol=0)


@pytest.mark.parametrize("options", [{"warmup_steps": 10},
                                     {"warmup_steps": 10, "sampler": "hmc_vectorized",
                                      "num_leapfrog": 3, "num_chains": 10},
                                     {"warmup_steps": 5, "adjusted": False, "num_chains": 7}])
def test_energy_sample_records_a_segment_at_a_time_and_draws_the_chains(options,
                                                                        monkeypatch):
    """``sample`` runs the chains a segment of draws at a time (a segment's record at most
    a chunk of rows) and returns exactly ``sample_chains(...).flat(n)``."""
    fit = DETERMINISTIC["energy"](data(300))
    n = 1003
    chains = fit.sample_chains(n, seed=3, **options)
    segments, run = [], energy_sampling.run_chains

    def run_chains(transition, log_density, u, **kw):  # the segments after the first
        segments.append(kw["num_samples"] * u.shape[0])
        return run(transition, log_density, u, **kw)

    elements = 2 ** 9  # 51 rows a segment
    rows = elements // (3 * D + 4)
    with small_chunks(monkeypatch, elements):
        monkeypatch.setattr(energy_sampling, "run_chains", run_chains)
        got = fit.sample(n, seed=3, **options)
    torch.testing.assert_close(got, chains.flat(n), rtol=0, atol=0)
    # a segment is a chunk's rows, or one draw of every chain when the chains are more
    assert segments and max(segments) <= max(rows, chains.num_chains), segments


# ---------------------------------------------------------------------- fit steps
class RowWatch(TorchDispatchMode):
    """Every aten op's outputs; while ``on``, the largest number of elements of any."""

    def __init__(self):
        super().__init__()
        self.on, self.most, self.what = False, 0, None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.on:
            for t in (out if isinstance(out, (tuple, list)) else (out,)):
                if isinstance(t, torch.Tensor) and t.numel() > self.most:
                    self.most, self.what = t.numel(), (str(func), tuple(t.shape))
        return out


FITS = {
    "gaussian/map": (lambda: pgm.Gaussian(D), {"method": "map", "jit": False}),
    "gaussian/vi": (lambda: pgm.Gaussian(D), {"method": "vi", "jit": False,
                                              "num_posterior_samples": 5}),
    "ppca/vi": (lambda: pgm.PPCA(D, 1), {"method": "vi", "jit": False,
                                         "num_posterior_samples": 5}),
    "mixture/vi": (lambda: pgm.GaussianMixture(D, 2), {"method": "vi", "jit": False,
                                                       "num_posterior_samples": 5}),
    "flow": (lambda: pgm.Flow(D, hidden=(32, 32)), {"method": "mle"}),
    "vae": (lambda: pgm.VAE(D, 2, likelihood="gaussian", hidden=(32,)), {"method": "mle"}),
    "diffusion": (lambda: pgm.Diffusion(D, timesteps=8, hidden=(32, 32)), {"method": "mle"}),
    "score": (lambda: pgm.ScoreModel(D, hidden=(32, 32)), {"method": "dsm"}),
    "energy/multilevel": (lambda: pgm.EnergyModel(D, hidden=(32, 32), eval_sigma=0.1),
                          {"method": "mle"}),
    "energy/contrastive": (lambda: pgm.EnergyModel(D, hidden=(32, 32),
                                                   noise_conditional=False),
                           {"method": "mle", "objective": "contrastive", "mcmc_steps": 2,
                            "buffer_size": 500}),
    "gan": (lambda: pgm.GAN(D, hidden=(32, 32)), {"method": "adversarial"}),
}
BATCH = 64


def steps_touch(make, options, n: int, num_steps: int = 8) -> tuple:
    """The largest tensor (elements) any aten op made during steps 1 to ``num_steps - 2``
    of a fit on ``n`` rows with ``batch_size`` 64: the first and last steps and what
    runs before and after the loop are left out (checks, moments, starting values, the
    epoch's permutation; the held-out loss after the last step)."""
    x = data(n)
    watch = RowWatch()

    def callback(step, loss):
        watch.on = step < num_steps - 2  # from the end of step 0 to that of step N - 2

    with watch:
        make().fit(x, seed=0, progress=False, num_steps=num_steps, batch_size=BATCH,
                   callback=callback, **options)
    return watch.most, watch.what


def test_the_watch_sees_a_step_that_copies_the_rows(monkeypatch):
    """The control: a batch cut from a copy of all rows is caught."""
    from pyro_genmodels.infer import batches

    def copying(self):
        return self._x.clone().index_select(0, self.index)

    monkeypatch.setattr(batches.Batch, "x", property(copying))
    make, options = FITS["flow"]
    most, what = steps_touch(make, options, 50_000)
    assert most >= 50_000 * D and what[1] == (50_000, D)


@pytest.mark.parametrize("family", sorted(FITS))
def test_fit_steps_on_a_million_rows_never_touch_all_rows(family):
    n = 1_000_000
    make, options = FITS[family]
    most, what = steps_touch(make, options, n)
    # a step's tensors are a batch's: 64 rows x a network's width, the MCMC buffer (500
    # x 2), ...; a copy of the rows (or of a column) would be 1e6 elements or more
    assert most < 100_000, (family, most, what)


# ---------------------------------------------------------------------- peak RSS
#: (family, op, rows) of the slow measurement: 1e7 rows where a call takes seconds, fewer
#: where its cost per row is high (an ODE per row, 100 importance samples, T network
#: passes, MCMC steps) but still many chunks. (The energy sampler at 1e7 rows takes about
#: two minutes: ``benchmarks/bench_memory.py`` measures it, 120 MiB above its 76 MiB
#: output; here 1e6 rows are 3 segments, and the fast
#: ``test_energy_sample_records_a_segment_at_a_time...`` bounds the segments.)
PEAKS = [
    ("gaussian", "log_prob", 10_000_000), ("gaussian", "sample", 10_000_000),
    ("gaussian_mixture", "log_prob", 10_000_000), ("gaussian_mixture", "sample", 10_000_000),
    ("ppca", "log_prob", 10_000_000), ("ppca", "sample", 10_000_000),
    ("flow", "log_prob", 1_000_000), ("flow", "sample", 500_000),
    ("vae", "log_prob", 100_000), ("vae", "sample", 10_000_000),
    ("diffusion", "log_prob", 200_000), ("diffusion", "sample", 200_000),
    ("score", "log_prob", 20_000), ("score", "sample", 200_000),
    ("energy", "log_prob", 200_000), ("energy", "sample", 1_000_000),
    ("gan", "sample", 2_000_000),
]


@pytest.mark.cost(115)
@pytest.mark.slow
def test_peak_memory_is_output_plus_a_fixed_working_set():
    """A fresh process per family, its high-water mark reset before each call
    (``/proc/self/clear_refs``); where the kernel refuses the reset, a fresh process per
    call whose mark counts from its start (imports, the fit, a first-use call on 1,000
    rows): either way ``extra`` bounds the call's own peak above the RSS before it."""
    bench = load_script(ROOT / "benchmarks" / "bench_memory.py")
    budget = fit_module.working_set_bytes(torch.float32) / 2 ** 20
    families = {}
    for family, op, rows in PEAKS:
        families.setdefault(family, []).append((op, rows))
    failures = []
    for family, calls in families.items():
        for r in bench.measure_together(family, calls):
            limit = r["output_mib"] + r["input_mib"] + budget
            print(f"{bench.line(r)} (limit {limit:.1f} MiB)")
            if not r["extra_mib"] <= limit:
                failures.append(f"{bench.line(r)} > {limit:.1f} MiB")
    assert not failures, failures


# ------------------------------------------------- traced fits keep little behind
def _mixture_rows() -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.randn(30, 1)
    x[:15] += 3.0
    return x


@pytest.mark.parametrize("method, options", [
    ("map", {"num_steps": 3, "jit": True}),
    ("vi", {"num_steps": 3, "jit": True, "num_posterior_samples": 4}),
    ("nuts", {"num_samples": 2, "warmup_steps": 2, "num_chains": 1, "jit_compile": True}),
    ("chees", {"num_samples": 2, "warmup_steps": 4, "num_chains": 2, "jit_compile": True}),
])
def test_traced_code_runs_with_torchscript_optimizations_off(method, options, monkeypatch):
    """Every traced evaluation (Pyro's ``Jit*`` ELBO, a ``jit_compile`` kernel's
    potential, the ``chees`` potential) runs under ``traced_execution``: TorchScript's
    graph optimizations off in this thread, so a fit does not leave 15-25 MB behind in
    TorchScript's process-wide state (the slow test below measures it). The switch is
    restored after the fit."""
    from pyro.infer.mcmc.util import _PEMaker

    from pyro_genmodels.infer import objectives, samplers

    seen = []
    watch = {
        "map": (objectives.ELBOLoss, "_loss"), "vi": (objectives.ELBOLoss, "_loss"),
        "nuts": (_PEMaker, "_potential_fn_jit"), "chees": (samplers, "value_and_grad"),
    }[method]
    original = getattr(*watch)

    def spy(*args, **kwargs):
        seen.append(torch._C._get_graph_executor_optimize())
        return original(*args, **kwargs)

    monkeypatch.setattr(*watch, spy if watch[0] is samplers else
                        (lambda self, *a, **k: spy(self, *a, **k)))
    if method == "chees":
        from pyro_genmodels.infer import chees, potential
        monkeypatch.setattr(potential, "value_and_grad", spy)
        monkeypatch.setattr(chees, "value_and_grad", spy)
    assert torch._C._get_graph_executor_optimize()
    fit = pgm.GaussianMixture(1, 2, covariance_type="diag").fit(
        _mixture_rows(), method=method, seed=0, progress=False, **options)
    assert fit.info.get("potential", "jit") == "jit"
    assert seen and not any(seen), seen
    assert torch._C._get_graph_executor_optimize()


_LEAK_SCRIPT = """
import gc, sys, torch
torch.set_num_threads(1)
import pyro_genmodels as pgm
from tests.test_memory import _mixture_rows
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2 ** 20
x, sizes = _mixture_rows(), []
for i in range(7):
    fit = pgm.GaussianMixture(1, 2, covariance_type="diag").fit(
        x, method="vi", seed=i, progress=False, num_steps=300, jit=True)
    del fit
    gc.collect()
    sizes.append(rss())
print((sizes[-1] - sizes[1]) / 5)
"""


@pytest.mark.slow
def test_traced_fits_keep_a_few_megabytes_each():
    """Seven traced ``vi`` fits in a fresh process: the resident memory kept per fit
    (after the second, so first-use allocations do not count) stays under 10 MiB.
    Measured on 2 cores: 24.9 MiB per fit with TorchScript's optimizations on, 5.6 MiB
    with them off (the library's setting), 0 with ``jit=False``."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _LEAK_SCRIPT], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=300).stdout
    per_fit = float(out.strip().splitlines()[-1])
    print(f"kept per traced vi fit: {per_fit:.1f} MiB")
    assert per_fit < 10.0
