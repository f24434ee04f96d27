"""Fits in threads and in processes: the same results as one after the other.

Pyro's handler stack and param store and the global RNGs are process-wide, so the
library serializes every public entry point under one process lock
(``pyro_genmodels._rng.serialized``). These tests run every contract case and method in
4 threads at once and compare bit for bit with sequential runs, check that no public
method of any family's fit class escapes the lock, and fit in ``multiprocessing``
workers (spawn and fork) whose results come back through ``save`` / ``load``.
"""

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels.fit import Fit
from tests.cases import CASES, case_method_pairs

PAIRS = case_method_pairs()


def _run(name, method):
    """Build, fit (seed 0), score and sample (seed 1) one case: everything a fit makes."""
    case = CASES[name]
    d = case.make_data(0)
    fit = case.make_model().fit(d.x, method=method, seed=0, progress=False, **d.kw,
                                **case.fast_options[method])
    return fit.losses, case.score(fit, d), fit.sample(5, seed=1, c=case.sample_c, **case.sample_options)


def _same(name, a, b):
    (la, sa, da), (lb, sb, db) = a, b
    return la == lb and torch.equal(sa, sb) and CASES[name].same_samples(da, db)


@pytest.mark.cost(40)
@pytest.mark.slow  # 62 fits twice: about 40 s, a tenth of the default suite's work
def test_four_threads_give_the_sequential_results_bit_for_bit():
    """Every case x method, 4 threads at a time (a family's methods are neighbours in
    the list, so a family also runs against itself), equals the sequential run exactly.
    The default suite runs fits in threads against one another below."""
    sequential = {pair: _run(*pair) for pair in PAIRS}
    jobs = PAIRS
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda pair: _run(*pair), jobs))
    differ = [pair for pair, r in zip(jobs, results) if not _same(pair[0], sequential[pair], r)]
    assert not differ, f"results in threads differ from sequential ones: {differ}"


def test_a_fit_in_one_thread_does_not_disturb_another_fits_log_prob():
    """The reported failure: a mixture's log_prob changed while other fits ran."""
    d = CASES["gaussian_mixture"].make_data(0)
    fit = pgm.GaussianMixture(3, 3, n_init=2).fit(d.x, method="map", seed=0, progress=False)
    expected = fit.log_prob(d.x)
    stop = threading.Event()
    seen = []

    def score():
        while not stop.is_set():
            seen.append(fit.log_prob(d.x))

    threads = [threading.Thread(target=score) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for pair in [("gaussian", "vi"), ("gaussian_mixture", "vi"), ("ppca", "map")]:
            _run(*pair)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert seen and all(torch.equal(s, expected) for s in seen)


def test_building_a_model_in_another_thread_does_not_disturb_a_running_fit():
    """A network's constructor draws its initial weights from torch's global generator,
    which a running fit has seeded and draws from: building Flows in a loop in another
    thread changed a same-seed GAN fit (2 runs of 2). Every family's constructor now
    holds the process lock, as ``fit`` does."""
    x = pgm.datasets.correlated_gaussian(100, dim=3, seed=0)[0]
    torch.manual_seed(0)
    gan = pgm.GAN(3, hidden=(16,))
    fit = lambda: gan.fit(x, method="adversarial", num_steps=50, seed=0,  # noqa: E731
                          progress=False)
    expected = fit()
    stop = threading.Event()
    built = []

    def build():
        while not stop.is_set():
            built.append(pgm.Flow(3, hidden=(16,), num_transforms=1))

    thread = threading.Thread(target=build)
    thread.start()
    try:
        got = fit()
    finally:
        stop.set()
        thread.join()
    assert built and got.losses == expected.losses
    assert torch.equal(got.sample(5, seed=1), expected.sample(5, seed=1))
    assert all(getattr(cls.__init__, "__serialized__", False)
               for cls in pgm.registry().values())


def _public_functions(cls):
    for klass in cls.__mro__:
        if klass is object:
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or isinstance(value, (classmethod, staticmethod, type)):
                continue
            if isinstance(value, property):
                yield f"{klass.__name__}.{name}", value.fget
            elif callable(value):
                yield f"{klass.__name__}.{name}", value


def test_every_public_method_of_every_fit_class_holds_the_process_lock():
    classes = {Fit} | {cls.fit_class for cls in pgm.registry().values()}
    missing = sorted({name for cls in classes for name, fn in _public_functions(cls)
                      if not getattr(fn, "__serialized__", False)})
    assert not missing, f"public fit methods outside the process lock: {missing}"
    assert pgm.GenerativeModel.fit.__serialized__  # a family's own fit calls it


def _fit_in_worker(path):
    """A worker process: fit and save (no pickled results: the fit comes back as files)."""
    torch.set_num_threads(1)
    d = CASES["flow"].make_data(0)
    fit = CASES["flow"].make_model().fit(d.x, method="mle", seed=0, progress=False,
                                         **CASES["flow"].fast_options["mle"])
    fit.save(path)


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_fits_in_worker_processes_come_back_through_save_and_load(start, tmp_path):
    if start not in multiprocessing.get_all_start_methods():
        pytest.skip(f"this platform has no {start!r} start method")
    d = CASES["flow"].make_data(0)
    here = CASES["flow"].make_model().fit(d.x, method="mle", seed=0, progress=False,
                                          **CASES["flow"].fast_options["mle"])
    ctx = multiprocessing.get_context(start)
    paths = [tmp_path / f"w{i}" for i in range(2)]
    workers = [ctx.Process(target=_fit_in_worker, args=(str(p),)) for p in paths]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
        assert w.exitcode == 0
    for p in paths:
        back = pgm.load(p)
        assert back.losses == here.losses
        assert torch.equal(back.log_prob(d.x), here.log_prob(d.x))


def test_a_fork_while_another_thread_holds_the_lock_does_not_deadlock_the_child(tmp_path):
    """The child of a fork gets a fresh lock, even if a thread held it at the fork."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("this platform has no 'fork' start method")
    from pyro_genmodels import _rng

    held, release = threading.Event(), threading.Event()

    def hold():
        with _rng.process_lock():
            held.set()
            release.wait(60)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(60)
    try:
        w = multiprocessing.get_context("fork").Process(target=_fit_in_worker,
                                                          args=(str(tmp_path / "w"),))
        w.start()
        w.join(timeout=300)
        assert w.exitcode == 0
    finally:
        release.set()
        t.join()
    assert pgm.load(tmp_path / "w").losses
