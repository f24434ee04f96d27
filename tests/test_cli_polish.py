"""The command line's own words: Ctrl-C in any command, the flags named as typed, a
parent of ``--out`` that is a file, an unreadable run; each one ``error:`` line (or
``interrupted`` and status 130), never a traceback, and nothing half-written."""

import importlib
import os
import re
from pathlib import Path

import numpy as np
import pytest

from pyro_genmodels import _cli_files, cli


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative names: the messages are the user's own paths


@pytest.fixture
def run():
    """A saved gaussian fit, ``run``."""
    np.savetxt("x.csv", np.random.default_rng(0).normal(size=(20, 2)), delimiter=",")
    assert cli.main(["fit", "gaussian", "--data", "x.csv", "--method", "mle", "--out",
                     "run", "--quiet", "--option", "num_steps=20"]) == 0
    return "run"


def _error(argv):
    """The one ``error:`` line ``argv`` stops with."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    msg = e.value.code
    assert isinstance(msg, str) and msg.startswith("error: ") and "\n" not in msg, msg
    return msg


def _interrupted(argv, capsys):
    """``cli.main(argv)`` where something it calls raises KeyboardInterrupt: status 130
    and the one line ``interrupted`` on stderr."""
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except KeyboardInterrupt:
        pytest.fail(f"{argv}: Ctrl-C escaped main (a traceback)")
    assert code == 130
    assert capsys.readouterr().err == "interrupted\n"


def _raise_interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_while_sample_writes_leaves_no_half_written_file(run, capsys, monkeypatch):
    def half_then_interrupt(p, x, columns=None):
        p.write_text("1.0,2.0\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(_cli_files, "save_array", half_then_interrupt)
    before = sorted(os.listdir())
    _interrupted(["sample", run, "-n", "5", "--out", "s.csv"], capsys)
    assert sorted(os.listdir()) == before


@pytest.mark.parametrize("command", ["sample", "report", "demo", "list"])
def test_ctrl_c_in_any_command_is_one_line_and_status_130(run, capsys, monkeypatch, command):
    argv = {"sample": ["sample", run, "-n", "5", "--out", "s.csv"],
            "report": ["report", run, "--out", "rep"],
            "demo": ["demo", "--quick", "--quiet", "--out", "demo"],
            "list": ["list"]}[command]
    where = {"sample": ("pyro_genmodels.io", "load"), "report": ("pyro_genmodels.io", "load"),
             "demo": ("pyro_genmodels.demo", "run"),
             "list": ("pyro_genmodels.base", "registry")}[command]
    monkeypatch.setattr(importlib.import_module(where[0]), where[1], _raise_interrupt)
    before = sorted(os.listdir())
    _interrupted(argv, capsys)
    assert sorted(os.listdir()) == before


def test_sample_says_that_a_parent_of_out_is_a_file(run):
    """It said ``(File exists)``, of the file it could not make a directory."""
    open("afile", "w").close()
    for out in ("afile/x.csv", "afile/sub/x.csv"):
        assert _error(["sample", run, "-n", "2", "--out", out]) == \
            f"error: cannot write {out} (afile is a file; expected a directory)"
    assert not os.path.isdir("afile")


def test_the_parsers_docstring_names_its_subcommands():
    """It listed a ``score`` command that does not exist."""
    parser = cli.build_parser()
    commands = next(a.choices for a in parser._actions if a.dest == "command")
    named = set(re.findall(r"``(\w+)``", cli.build_parser.__doc__))
    assert named == set(commands) == {"demo", "report", "list", "fit", "sample"}


@pytest.mark.parametrize("args, said", [
    (["-n", "0"], "-n must be a positive integer, got 0"),
    (["-n", "-3"], "-n must be a positive integer, got -3"),
    (["-n", "2", "--top-k", "0"], "--top-k must be a positive integer, got 0"),
    (["-n", "2", "--max-length", "0"], "--max-length must be a positive integer, got 0"),
    (["-n", "2", "--temperature", "nan"], "--temperature must be > 0 and finite, got nan"),
    (["-n", "2", "--temperature", "0"], "--temperature must be > 0 and finite, got 0.0"),
    (["-n", "2", "--seed", "-1"], "--seed must be an integer in [0, 2**32 - 1], got -1"),
])
def test_sample_names_the_flags_the_user_typed(args, said):
    """It said ``Expected top_k to be a positive integer`` (the Python parameter's name),
    of a flag spelled ``--top-k``."""
    Path("t.txt").write_text("abc\nabd\nhello\n")
    assert cli.main(["fit", "ngram", "--data", "t.txt", "--method", "mle", "--out", "ng",
                     "--arg", "order=2", "--quiet"]) == 0
    assert _error(["sample", "ng", *args, "--out", "s.txt"]) == f"error: {said}"
    assert not os.path.exists("s.txt")


def test_fit_and_demo_name_their_flags_too():
    np.savetxt("x.csv", np.zeros((5, 2)), delimiter=",")
    assert _error(["fit", "gaussian", "--data", "x.csv", "--method", "mle", "--out", "r",
                   "--seed", str(2**32)]) == \
        f"error: --seed must be an integer in [0, 2**32 - 1], got {2**32}"
    assert _error(["demo", "--jobs", "0", "--out", "d"]) == \
        "error: --jobs must be a positive integer, got 0"
    assert sorted(os.listdir()) == ["x.csv"]


def test_options_the_flags_set_and_keys_given_twice_are_refused():
    """--option seed=3 gave Python's "fit() got multiple values for keyword argument
    'seed'"; a key given twice kept the last in silence. Nothing is written."""
    np.savetxt("x.csv", np.random.default_rng(0).normal(size=(20, 2)), delimiter=",")
    base = ["fit", "gaussian", "--data", "x.csv", "--method", "map", "--out", "r"]
    assert _error(base + ["--option", "seed=3"]) == \
        "error: --option seed=...: the command sets it with --seed N"
    assert _error(base + ["--option", "progress=false"]) == \
        "error: --option progress=...: the command sets it with --quiet (progress bars " \
        "are on without it)"
    assert _error(base + ["--option", "method=vi"]) == \
        "error: --option method=...: the command sets it with --method"
    assert _error(base + ["--option", "num_steps=5", "--option", "num_steps=6"]) == \
        "error: --option num_steps given twice (num_steps=5, then 'num_steps=6'): give it once"
    assert _error(base + ["--arg", "prior_scale=5", "--arg", "prior_scale=5"]) == \
        "error: --arg prior_scale given twice (prior_scale=5, then 'prior_scale=5'): give it " \
        "once"
    assert sorted(os.listdir()) == ["x.csv"]


def test_an_unreadable_run_is_one_error_line(run, monkeypatch):
    """A run another user saved 0600 (its tensors: safetensors wrote them so), or a
    directory this user may not search: sample and report print the reason, with no
    traceback."""
    import builtins
    import io

    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if os.path.basename(os.fspath(file)) == "tensors.safetensors":
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(builtins, "open", refusing_open)
        m.setattr(io, "open", refusing_open)
        file = os.path.realpath("run/tensors.safetensors")
        assert _error(["sample", run, "-n", "2", "--out", "s.csv"]) == \
            f"error: {file} cannot be read: Permission denied"
    pio = importlib.import_module("pyro_genmodels.io")

    def refused(path, **kwargs):
        raise PermissionError(13, "Permission denied", os.path.join(path, "fit.json"))

    monkeypatch.setattr(pio, "load", refused)
    said = "error: [Errno 13] Permission denied: 'run/fit.json'"
    assert _error(["sample", run, "-n", "2", "--out", "s.csv"]) == said
    assert _error(["report", run, "--out", "rep"]) == said
    assert not os.path.exists("s.csv") and not os.path.exists("rep")
