"""Smoke test of ``benchmarks/bench_posterior.py`` at tiny sizes: every run prints its
figures, the medians are the runs', and the last line's ratios are the medians' quotients
(no speed goal is asserted: the machine is shared and noisy). The baseline is stock Pyro
NUTS (``--baseline pyro``), whether or not NumPyro is installed."""

import io
import math
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from tests.printed import agrees, bounds, grab, load_script, positive_finite, quotient

ROOT = Path(__file__).resolve().parent.parent
PATHS = {"gaussian": ["chees", "chees3", "nuts_fused"], "logistic": ["chees", "chees3"]}


@pytest.mark.cost(16)
@pytest.mark.slow  # 5 samplers, each compiled and run twice on 2 models: 15 s
def test_benchmark_smoke_prints_consistent_figures():
    mod = load_script(ROOT / "benchmarks" / "bench_posterior.py")
    buf = io.StringIO()
    with redirect_stdout(buf):
        mod.main(["--chains", "2", "--warmup", "60", "--draws", "20", "--repeats", "1",
                  "--threads", "1", "--paths", "chees,chees3,nuts_fused", "--baseline", "pyro"])
    lines = buf.getvalue().strip().splitlines()
    assert lines[0] == ("2 chains, 60 warmup + 20 draws each, 1 torch threads; baseline: "
                        "stock Pyro NUTS; facade paths: chees, chees3, nuts_fused on cpu")
    ratios = dict(r.rsplit(" ", 1) for r in grab(r"^ratio facade / baseline ESS/s: (.*)$",
                                                  lines[-1]).split(", "))
    want_ratios = set()
    for model, paths in PATHS.items():
        mine = [ln for ln in lines[1:-1] if ln.startswith(model)]
        assert len(mine) == 3 * (1 + len(paths))  # a first run, a run and a median each
        for line, who in zip(mine, ["baseline"] + paths):  # reported apart
            rate, secs = grab(rf"^{model}: {who} first run \(compilation included\) {{N}} "
                              r"ESS/s in {N} s$", line)
            assert positive_finite(rate) and positive_finite(secs)
        mine = mine[1 + len(paths):]
        runs, medians = {}, {}
        for line in mine[:1 + len(paths)]:
            who, rate, secs = grab(rf"^{model} run 0: (\w+) {{N}} ESS/s in {{N}} s$", line)
            runs[who] = rate
            assert positive_finite(rate) and positive_finite(secs)
        for line in mine[1 + len(paths):]:
            who, m, lo, hi = grab(rf"^{model}: (\w+) median {{N}} ESS/s \({{N}}-{{N}}\)$", line)
            assert m == lo == hi == runs[who]  # one repeat: the median is the run
            medians[who] = m
        assert set(runs) == set(medians) == {"baseline", *paths}
        for who in paths:
            want_ratios.add(f"{model} {who}")
            assert agrees(ratios[f"{model} {who}"],
                          quotient(bounds(medians[who]), bounds(medians["baseline"]))), who
    assert set(ratios) == want_ratios
    assert all(math.isfinite(float(v)) for v in ratios.values())
