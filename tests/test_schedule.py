"""The test order that lets both xdist workers finish together (tests/schedule.py)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.schedule import balanced, chunk_sizes


def test_chunk_sizes_are_what_worksteal_hands_out_first():
    # xdist's WorkStealingScheduling.check_schedule: idle worker i of k gets
    # len(pending) // (k - i) of what is left
    assert chunk_sizes(321, 2) == [160, 161]
    assert chunk_sizes(10, 3) == [3, 3, 4]
    assert chunk_sizes(1, 2) == [0, 1]
    for n in range(30):
        for k in range(1, 6):
            sizes = chunk_sizes(n, k)
            assert sum(sizes) == n and max(sizes) - min(sizes) <= 1


def test_costly_tests_lead_each_chunk_by_longest_processing_time_first():
    items = list("abcdefghij")
    costs = [0, 900, 0, 270, 0, 190, 180, 0, 0, 150]
    order = balanced(items, costs, 2)
    assert sorted(order) == items  # a permutation
    # LPT: 900 -> worker 0; 270, 190, 180, 150 -> worker 1 (790 < 900 after each)
    assert order[:5] == ["b", "a", "c", "e", "h"]
    assert order[5:] == ["d", "f", "g", "j", "i"]
    # the cheap tests keep their relative order
    assert [x for x in order if costs[items.index(x)] == 0] == list("acehi")


def test_lpt_alternates_when_costs_are_close():
    items = list("abcdef")
    order = balanced(items, [100, 90, 80, 70, 0, 0], 2)
    # 100 -> 0; 90 -> 1; 80 -> 1 (90 < 100); 70 -> 0 (100 < 170)
    assert order == ["a", "d", "e", "b", "c", "f"]


@pytest.mark.parametrize("workers, costs", [(1, [5, 0, 3, 1]), (2, [0, 0, 0, 0]),
                                            (2, [10, 1, 1, 1])])
def test_order_is_kept_where_there_is_nothing_to_balance(workers, costs):
    # one worker; nothing costly; a chunk too short for its share (LPT gives the
    # second worker 3 costly tests, its chunk holds 2)
    assert balanced(list("wxyz"), costs, workers) == list("wxyz")


def test_costs_must_match_the_items():
    with pytest.raises(ValueError, match="3 items but 2 costs"):
        balanced([1, 2, 3], [0, 1], 2)


def test_the_workers_start_with_the_costly_tests(tmp_path):
    """The wiring, end to end: tests/conftest.py's hooks under ``-n 2 --dist worksteal``
    on a suite whose two costly tests are collected last. Worksteal hands each worker a
    contiguous half; without the reordering both costly tests would sit at the back of
    the second worker's half."""
    here = Path(__file__).parent
    (tmp_path / "conftest.py").write_text((here / "conftest.py").read_text())
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    cost(seconds): measured wall time\n")
    # the probe tests are what gets scheduled: each only checks that a worker runs it
    body = '    assert os.environ["PYTEST_XDIST_WORKER"].startswith("gw")\n\n\n'
    cheap = "".join(f"def test_cheap_{i}():\n{body}" for i in range(4))
    (tmp_path / "test_probe.py").write_text(
        "import os\n\nimport pytest\n\n\n" + cheap
        + f"@pytest.mark.cost(2)\ndef test_costly_2():\n{body}"
        + f"@pytest.mark.cost(1)\ndef test_costly_1():\n{body}")
    env = {**os.environ, "PYTHONPATH": str(here.parent)}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "worksteal", "-v",
         "-p", "no:cacheprovider", "test_probe.py"],
        check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    ran = re.findall(r"\[(gw\d)\] \[\s*\d+%\] PASSED test_probe.py::(\w+)", out.stdout)
    assert len(ran) == 6, out.stdout
    first = {w: next(t for w2, t in ran if w2 == w) for w in ("gw0", "gw1")}
    assert sorted(first.values()) == ["test_costly_1", "test_costly_2"], out.stdout
