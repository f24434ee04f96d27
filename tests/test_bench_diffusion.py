"""Smoke test of ``benchmarks/bench_diffusion.py``: its quick run prints figures that agree
with each other (no timing thresholds: the machine is shared and noisy)."""

import io
import statistics
from contextlib import redirect_stdout
from pathlib import Path

from tests.printed import agrees, bounds, grab, load_script, positive_finite, quotient

ROOT = Path(__file__).resolve().parent.parent



def test_benchmark_smoke_prints_consistent_figures():
    mod = load_script(ROOT / "benchmarks" / "bench_diffusion.py")
    buf = io.StringIO()
    with redirect_stdout(buf):
        returned = mod.main(["--quick"])
    lines = buf.getvalue().strip().splitlines()
    assert len(lines) == 7  # training, 3 repeats, 2 samplers, the ratio

    f_ms, f_loss, h_ms, h_loss, gap = grab(
        r"^training: facade {N} ms/step \(last loss {N}\); hand-written PyTorch loop {N} "
        r"ms/step \(last loss {N}\); max \|difference\| of the averaged weights "
        r"(\d\.\de[-+]\d+); 20 steps, batch 256, N 1000, hidden 32x32, T 100, 1 threads$",
        lines[0])
    # copies of one network, the same objective and the same random stream: the same
    # last loss, and the loop's moving average is the facade's fitted network
    assert agrees(h_loss, bounds(f_loss))
    assert float(gap) < 1e-4

    facade, hand, ratios = [], [], []
    for i, line in enumerate(lines[1:4]):
        first = "facade first" if i % 2 == 0 else "hand-written first"  # ABBA
        a, b, q = grab(rf"^repeat {i + 1} \({first}\): facade {{N}} ms/step, hand-written "
                       r"{N} ms/step, ratio {N}$", line)
        positive_finite(a), positive_finite(b), positive_finite(q)
        assert agrees(q, quotient(bounds(a), bounds(b)))
        facade.append(a), hand.append(b), ratios.append(q)
    # the training line's figures are the medians of the repeats' (an odd count)
    assert float(f_ms) == statistics.median(map(float, facade))
    assert float(h_ms) == statistics.median(map(float, hand))

    for line, name, evals in zip(lines[4:6], ["ancestral", r"ddim \(steps=10\)"], [100, 10]):
        ms, count, times, bare = grab(
            rf"^sampling 64 draws, {name}: {{N}} ms per network step \({{N}} network "
            r"evaluations; {N}x a bare forward pass of {N} ms\)$", line)
        positive_finite(ms), positive_finite(bare)
        assert int(count) == evals  # ancestral: T steps; DDIM: the steps asked for
        assert agrees(times, quotient(bounds(ms), bounds(bare)))

    ratio, lo, hi = grab(r"^diffusion_step_time_ratio={N} \({N} \.\. {N} over 3 repeats; "
                         r"facade/hand-written per training step, goal <= 1\.2\)$", lines[-1])
    positive_finite(ratio)
    assert ratio == f"{returned:.3f}"
    values = sorted(float(q) for q in ratios)
    assert float(lo) == values[0] and float(hi) == values[-1]
    assert float(ratio) == values[1]  # the median of the three printed ratios
    assert float(lo) <= float(ratio) <= float(hi)
