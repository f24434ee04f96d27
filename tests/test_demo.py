"""The demo's scheduler (pyro_genmodels.demo.run): pieces of work in worker processes,
longest first, a piece that reads others' fits only after them, the page in its own order
whichever finishes first, and the same numbers whichever process runs a piece. The page
itself is checked in tests/test_cli.py (the quick demo) and test_report_browser.py."""

import os
import time
from pathlib import Path

import pytest

from pyro_genmodels import demo, report


def _part(name, text):
    return report.Part(report.Section(name, f"section {name}", f"<p>{text}</p>"),
                       {f"Family{name}": {"data": "stub", "held-out log p": text}},
                       [f"{name} ran"])


def slow_a(out: Path, quick: bool, progress: bool) -> report.Part:
    time.sleep(1.0)
    (out / "a.done").write_text(str(os.getpid()))
    return _part("a", f"pid {os.getpid()}")


def after_a(out: Path, quick: bool, progress: bool) -> report.Part:
    return _part("b", f"a done before me: {(out / 'a.done').is_file()}, pid {os.getpid()}")


def quick_c(out: Path, quick: bool, progress: bool) -> report.Part:
    return _part("c", f"quick={quick}, pid {os.getpid()}")


def warns(out: Path, quick: bool, progress: bool) -> report.Part:
    import warnings

    warnings.warn("a long warning. Its second sentence", UserWarning)
    return _part("c", "warned")


def broken(out: Path, quick: bool, progress: bool) -> report.Part:
    raise ValueError("the stub task failed on purpose")


def ctrl_c_in_a_fit(out: Path, quick: bool, progress: bool) -> report.Part:
    import signal

    try:  # as the training loop does: Ctrl-C ends the fit, which keeps what it did
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        (out / "a.done").write_text("interrupted")
    return _part("a", "went on after Ctrl-C")


@pytest.fixture
def stub_tasks(monkeypatch):
    monkeypatch.setattr(demo, "TASKS", {"a": slow_a, "b": after_a, "c": quick_c})
    monkeypatch.setattr(demo, "AFTER", {"b": ("a",)})
    monkeypatch.setattr(demo, "PAGE_ORDER", ("c", "b"))


def _body(page, name):
    start = page.index(f"<section id='{name}'>")
    return page[start:page.index("</section>", start)]


@pytest.mark.parametrize("jobs", [1, 2])
def test_pieces_run_after_what_they_read_and_the_page_keeps_its_order(stub_tasks, tmp_path,
                                                                      jobs):
    index = demo.run(tmp_path, quick=True, progress=False, jobs=jobs)
    page = index.read_text()
    # PAGE_ORDER first, then the other tasks in TASKS order
    assert page.index("id='c'") < page.index("id='b'") < page.index("id='a'")
    assert "a done before me: True" in _body(page, "b")
    pids = {name: int(_body(page, name).rsplit("pid ", 1)[1].split("<")[0]) for name in "abc"}
    if jobs == 1:
        assert set(pids.values()) == {os.getpid()}
    else:  # spawned workers; c ran while a slept, so in the other one
        assert os.getpid() not in pids.values() and pids["a"] != pids["c"]
    assert "quick=True" in page
    for family in ("Familya", "Familyb", "Familyc"):  # every part's requirements row
        assert family in page
    assert "a ran; b ran" not in page and "c ran; b ran; a ran" in page  # page order
    assert ("worker processes</th><td class='text'>none" in page) == (jobs == 1)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_warning_of_a_piece_is_one_line_naming_the_piece(stub_tasks, monkeypatch, tmp_path,
                                                         capfd, jobs):
    """A worker printed a warning with its own source line under it
    (``r = call_item.fn(...)``) and no word of which piece met it."""
    monkeypatch.setattr(demo, "TASKS", {"a": slow_a, "b": after_a, "c": warns})
    demo.run(tmp_path, quick=True, progress=False, jobs=jobs)
    err = capfd.readouterr().err
    assert "warning: c: a long warning. Its second sentence\n" in err
    assert "call_item" not in err and "UserWarning" not in err


def test_a_failing_piece_stops_the_run_with_its_error(stub_tasks, monkeypatch, tmp_path):
    monkeypatch.setattr(demo, "TASKS", {"a": slow_a, "b": after_a, "c": broken})
    with pytest.raises(ValueError, match="the stub task failed on purpose"):
        demo.run(tmp_path, quick=True, progress=False, jobs=2)
    assert not (tmp_path / "index.html").exists()


def test_bad_jobs_and_bad_dependencies_are_refused_before_anything_runs(stub_tasks,
                                                                          monkeypatch,
                                                                          tmp_path):
    for jobs in (0, -1, True, 1.5, "2"):
        with pytest.raises(ValueError, match=r"jobs must be a positive int .*got"):
            demo.run(tmp_path / "x", progress=False, jobs=jobs)
    assert not (tmp_path / "x").exists()
    monkeypatch.setattr(demo, "AFTER", {"b": ("nowhere",)})
    with pytest.raises(ValueError, match=r"AFTER names tasks that TASKS does not have: "
                                         r"\['nowhere'\]"):
        demo.run(tmp_path / "y", progress=False, jobs=1)
    monkeypatch.setattr(demo, "AFTER", {"a": ("b",), "b": ("a",)})
    for jobs in (1, 2):
        with pytest.raises(ValueError, match="AFTER has a cycle"):
            demo.run(tmp_path / "z", progress=False, jobs=jobs)
    assert not (tmp_path / "a.done").exists()


def test_the_real_tasks_name_what_they_read():
    """Every saved fit the ranking reads is written by a task it waits for."""
    from pyro_genmodels.demo_ranking import SAVED

    assert set(demo.AFTER["ranking"]) <= set(demo.TASKS)
    writers = {"flow": "flow-", "energy": "energy-", "diffusion": "diffusion-",
               "score": "score-", "gan": "gan-"}
    for runs in SAVED.values():
        for run in runs:
            assert any(run.startswith(writers[t]) for t in demo.AFTER["ranking"]), run
    order = list(demo.TASKS)
    assert all(order.index(t) < order.index("ranking") for t in demo.AFTER["ranking"])
    for name in demo.DEMO_CASES:  # a new case is run and shown
        assert name in demo.TASKS and name in demo.PAGE_ORDER


@pytest.mark.slow  # two small real pieces, twice: about 30 s
def test_a_piece_gives_the_same_numbers_in_a_worker_as_in_this_process(monkeypatch, tmp_path):
    monkeypatch.setattr(demo, "TASKS", {k: demo.TASKS[k] for k in ("names", "vae")})
    monkeypatch.setattr(demo, "AFTER", {})
    parts = {jobs: demo._run_tasks(tmp_path / str(jobs), True, False, jobs)
             for jobs in (1, 2)}
    for name in ("names", "vae"):
        assert parts[1][name].needs == parts[2][name].needs, name
    assert parts[1]["vae"].needs["VAE"]["held-out log p"].startswith("-")


def test_a_bad_jobs_from_the_command_line_is_one_line_of_error(tmp_path):
    from pyro_genmodels import cli

    with pytest.raises(SystemExit, match=r"^error: --jobs must be a positive integer, got 0$"):
        cli.main(["demo", "--jobs", "0", "--out", str(tmp_path / "d")])
    assert not (tmp_path / "d").exists()


def test_the_demo_refuses_a_folder_it_did_not_write_and_rewrites_its_own(stub_tasks,
                                                                           monkeypatch,
                                                                           tmp_path):
    """``demo --out DIR`` wrote its index.html and fits over a folder of the user's: a
    non-empty ``out`` with no report's marker is refused before any piece runs (the stub
    ``a`` would leave a.done), in one ``error:`` line from the command. The demo's own
    directory is written again, even one whose run stopped before its page."""
    from pyro_genmodels import cli

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("<html>my precious page</html>")
    with pytest.raises(ValueError, match=r"^Refusing to write the demo to .*mine'?: the "
                                         r"directory is not empty \(index\.html\)"):
        demo.run(mine, progress=False, jobs=1)
    with pytest.raises(SystemExit, match=r"^error: Refusing to write the demo to .*mine"):
        cli.main(["demo", "--quick", "--out", str(mine), "--quiet", "--jobs", "1"])
    assert sorted(p.name for p in mine.iterdir()) == ["index.html"]
    assert (mine / "index.html").read_text() == "<html>my precious page</html>"
    out = tmp_path / "demo-out"
    monkeypatch.setattr(demo, "TASKS", {"a": slow_a, "b": after_a, "c": broken})
    with pytest.raises(ValueError, match="the stub task failed on purpose"):
        demo.run(out, progress=False, jobs=1)
    assert not (out / "index.html").exists() and (out / report.MARKER).is_file()
    monkeypatch.setattr(demo, "TASKS", {"a": slow_a, "b": after_a, "c": quick_c})
    for _ in range(2):  # after the stopped run, and over its own page
        assert "section c" in demo.run(out, progress=False, jobs=1).read_text()


def test_ctrl_c_in_a_fit_stops_the_demo_after_its_piece(stub_tasks, monkeypatch, tmp_path):
    """With jobs=1 a fit's Ctrl-C ended that fit, whose piece went on, and so did every
    later piece: Ctrl-C stopped one fit of the demo. Now the demo stops after the piece
    (the CLI then says "interrupted" and exits 130), and SIGINT's handler is restored."""
    import signal

    monkeypatch.setattr(demo, "TASKS", {"a": ctrl_c_in_a_fit, "b": after_a, "c": quick_c})
    # Python's own handler, as in a program run from a shell (an xdist worker ignores
    # SIGINT, and the demo leaves an ignored SIGINT alone: the next test)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            demo.run(tmp_path, quick=True, progress=False, jobs=1)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
    assert (tmp_path / "a.done").read_text() == "interrupted"
    assert not (tmp_path / "index.html").exists()


def test_an_ignored_sigint_stays_ignored_and_a_callers_handler_still_runs(stub_tasks,
                                                                          tmp_path):
    """The demo's Ctrl-C note replaced SIGINT's handler with Python's default one: a run
    with SIGINT ignored (a background job) was interrupted, a caller's handler bypassed."""
    import signal

    seen = []
    for handler, raises in [(signal.SIG_IGN, False),
                            (lambda signum, frame: seen.append(signum), False)]:
        previous = signal.signal(signal.SIGINT, handler)
        try:
            demo.TASKS["a"] = ctrl_c_in_a_fit
            path = demo.run(tmp_path / str(len(seen)), quick=True, progress=False, jobs=1)
            assert path.exists() and not raises
            assert signal.getsignal(signal.SIGINT) is handler
        finally:
            signal.signal(signal.SIGINT, previous)
    assert seen == [signal.SIGINT]
