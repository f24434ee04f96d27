"""Smoke test of ``benchmarks/bench_score.py``: its quick run prints figures that agree
with each other (no timing thresholds: the machine is shared and noisy)."""

import io
import statistics
from contextlib import redirect_stdout
from pathlib import Path

from tests.printed import agrees, bounds, grab, load_script, positive_finite, quotient, scaled

ROOT = Path(__file__).resolve().parent.parent



def test_benchmark_smoke_prints_consistent_figures():
    mod = load_script(ROOT / "benchmarks" / "bench_score.py")
    buf = io.StringIO()
    with redirect_stdout(buf):
        returned = mod.main(["--quick"])
    lines = buf.getvalue().strip().splitlines()
    assert len(lines) == 7  # training, 3 repeats, sampling, its speedup, the ratio

    f_ms, f_loss, h_ms, h_loss, gap, sigma_gap, sigma_max = grab(
        r"^training: facade {N} ms/step \(last loss {N}\); hand-written PyTorch loop {N} "
        r"ms/step \(last loss {N}\); max \|difference\| of the averaged weights "
        r"(\d\.\de[-+]\d+), of the levels (\d\.\de[-+]\d+); sigma_max {N}; 20 steps, "
        r"batch 256, N 1000, hidden 32x32, 1 threads$", lines[0])
    # copies of one network, the same levels, objective and random stream: the same
    # last loss, and the loop's moving average is the facade's fitted network
    assert agrees(h_loss, bounds(f_loss))
    assert float(gap) < 1e-4
    assert float(sigma_gap) < 1e-6  # sigma_max from the data, computed alike
    assert float(sigma_max) > 1.0  # the largest distance between standardized rows

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

    batched, total, loop, loop_gap = grab(
        r"^sampling, annealed Langevin \(10 levels x 2 steps \+ denoising = 21 network "
        r"evaluations per draw\): batched over 500 draws {N} us per draw \({N} ms in all\); "
        r"one draw at a time {N} us per draw \(timed on 5 draws, scaled per draw\); max "
        r"\|difference\| on one draw under one seed (\d\.\de[-+]\d+); median over 3 "
        r"repeats$", lines[4])
    positive_finite(batched), positive_finite(total), positive_finite(loop)
    assert agrees(total, scaled(bounds(batched), 500 / 1e3))  # us per draw x 500, in ms
    assert float(loop_gap) < 1e-5  # the loop runs the library's steps, one draw at a time
    speedup = grab(r"^sampling speedup per draw, batched over one draw at a time: {N}x$",
                   lines[5])
    positive_finite(speedup)
    assert agrees(speedup, quotient(bounds(loop), bounds(batched)))

    ratio, lo, hi = grab(r"^score_step_time_ratio={N} \({N} \.\. {N} over 3 repeats; "
                         r"facade/hand-written per training step, goal <= 1\.2\)$", lines[-1])
    positive_finite(ratio)
    assert ratio == f"{returned:.3f}"
    values = sorted(float(q) for q in ratios)
    assert float(lo) == values[0] and float(hi) == values[-1]
    assert float(ratio) == values[1]  # the median of the three printed ratios
    assert float(lo) <= float(ratio) <= float(hi)
