"""The pyro-genmodels command, through main() and as a real console script."""

import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pyro_genmodels as pgm
from pyro_genmodels import _cli_files, cli

from .report_checks import check_page, demo_report


def test_version_is_the_one_package_version(capsys):
    """``pyro-genmodels --version``, ``pgm.__version__`` and the installed metadata are the
    one version in pyro_genmodels/_version.py (pyproject.toml reads it)."""
    import importlib.metadata

    import pyro_genmodels as pgm

    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"pyro-genmodels {pgm.__version__}"
    assert importlib.metadata.version("pyro-genmodels") == pgm.__version__
    root = Path(pgm.__file__).resolve().parent
    assert (root / "py.typed").is_file()  # PEP 561: the annotations are the package's
    license_file = root.parent / "LICENSE"
    assert license_file.read_text().lstrip().startswith("Apache License")
    assert 'license = "Apache-2.0"' in (root.parent / "pyproject.toml").read_text()


def test_list(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "gaussian" in out and "methods=mle,map,vi,nuts,hmc" in out
    lines = out.splitlines()
    assert len(lines) == len(pgm.registry())
    # a table: every row's methods column starts at the same place
    assert len({line.index("methods=") for line in lines}) == 1


@pytest.mark.parametrize("ext", ["csv", "npy"])
def test_fit_then_sample(tmp_path, ext, capsys):
    x = np.random.default_rng(0).normal(size=(100, 2)) * [1.0, 2.0] + [3.0, -1.0]
    data = tmp_path / f"x.{ext}"
    np.save(data, x) if ext == "npy" else np.savetxt(data, x, delimiter=",")
    run = tmp_path / "run"
    assert cli.main(["fit", "gaussian", "--data", str(data), "--method", "map", "--out",
                     str(run), "--option", "num_steps=300", "--arg", "prior_scale=5.0",
                     "--quiet"]) == 0
    out = tmp_path / f"s.{ext}"
    assert cli.main(["sample", str(run), "-n", "500", "--out", str(out), "--seed", "1"]) == 0
    s = np.load(out) if ext == "npy" else np.loadtxt(out, delimiter=",")
    assert s.shape == (500, 2)
    # sample mean within 4 standard errors of the data mean (plus the fit's own error)
    se = x.std(0) / np.sqrt(500) + x.std(0) / np.sqrt(100)
    assert (np.abs(s.mean(0) - x.mean(0)) < 4 * se).all()


def test_the_seed_fixes_a_networks_initial_weights_too(tmp_path):
    """``--seed`` makes a neural fit reproducible in one process, whatever torch's
    global generator holds: the same seed gives the same saved tensors byte for byte, and
    another seed other ones (a flow's initial weights are drawn when it is built)."""
    import torch

    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).normal(size=(200, 2)))
    tensors = {}
    for run, seed, torch_seed in (("a", "3", 1), ("b", "3", 2), ("c", "4", 1)):
        torch.manual_seed(torch_seed)  # whatever the caller's generator holds
        assert cli.main(["fit", "flow", "--data", str(data), "--method", "mle", "--out",
                         str(tmp_path / run), "--seed", seed, "--quiet", "--arg",
                         "hidden=[8]", "--option", "num_steps=5"]) == 0
        tensors[run] = (tmp_path / run / "tensors.safetensors").read_bytes()
    assert tensors["a"] == tensors["b"]
    assert tensors["a"] != tensors["c"]


@pytest.mark.parametrize("model, args", [
    ("autoregressive", ["--arg", "hidden_size=4", "--option", "num_steps=3"]),
    ("ngram", ["--arg", "order=2"])])
def test_a_token_id_model_fits_the_ids_it_samples(tmp_path, capsys, model, args):
    """A token-id model (vocab_size=K) fits a .txt of ids, one sequence a line, as sample
    writes them (a blank line is the empty sequence); it was refused: "takes integer
    token ids ..., not strings". The summary is per token, not per character."""
    data = tmp_path / "ids.txt"
    data.write_text("1 2 3\n4 0\n\n 2\t2  2 1 \n", encoding="utf-8")
    seqs = [[1, 2, 3], [4, 0], [], [2, 2, 2, 1]]
    fit_args = ["--method", "mle", "--arg", "vocab_size=5", "--quiet", *args]
    run = tmp_path / "run"
    assert cli.main(["fit", model, "--data", str(data), "--out", str(run), *fit_args]) == 0
    fit = pgm.load(run)
    assert fit.model.token_mode and fit.model.vocab_size == 5
    nats = -fit.log_prob(seqs).sum().item() / sum(len(s) + 1 for s in seqs)
    printed = capsys.readouterr().out
    assert f"{nats:.4f} nats per token (end token included)" in printed
    assert "per character" not in printed
    # the encoded data: each line's ids, then the end id (5) as padding
    assert fit.data.tolist() == [s + [5] * (5 - len(s)) for s in seqs]
    out = tmp_path / "s.txt"
    assert cli.main(["sample", str(run), "-n", "40", "--out", str(out), "--seed", "1"]) == 0
    sampled = [[int(v) for v in line.split()] for line in out.read_text().splitlines()]
    assert len(sampled) == 40 and [] in sampled  # blank lines, read back as empty sequences
    again = tmp_path / "again"
    assert cli.main(["fit", model, "--data", str(out), "--out", str(again), *fit_args]) == 0
    rows = pgm.load(again).data.tolist()
    assert [row[:len(s) + 1] for row, s in zip(rows, sampled)] == [s + [5] for s in sampled]
    assert len(rows) == 40
    # the report scores held-out ids as fit reads them (it read the lines as strings,
    # which a token-id model refuses)
    rep = tmp_path / "rep"
    assert cli.main(["report", str(run), "--heldout", str(data), "--out", str(rep)]) == 0
    held = pgm.compare({"run": fit}, seqs).loc["run", "heldout_log_prob"]
    assert math.isclose(held, fit.log_prob(seqs).mean().item(), rel_tol=1e-6)
    assert f"<td>{held:.4g}</td>" in (rep / "index.html").read_text()


def test_report_refuses_a_txt_file_for_token_id_and_text_runs_together(tmp_path):
    """A .txt file is token ids for one run and strings for another: one error line
    that says so, and no report."""
    ngram = pgm.models.autoregressive.NGram
    ngram(2, vocab_size=3).fit([[0, 1], [2]], method="mle").save(tmp_path / "ids")
    ngram(2, vocab="ab").fit(["ab", "b"], method="mle").save(tmp_path / "text")
    (tmp_path / "held.txt").write_text("0 1\n2\n")
    with pytest.raises(SystemExit, match=r"^error: --heldout .*held.txt: the runs hold "
                                         r"token-id models \(ids: .*ids\) and text models "
                                         r"\(strings: .*text\); expected one kind"):
        cli.main(["report", str(tmp_path / "ids"), str(tmp_path / "text"), "--heldout",
                  str(tmp_path / "held.txt"), "--out", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()
    # a missing run, or a numeric one, is not a text model: load says what is wrong
    with pytest.raises(SystemExit, match=r"^error: .*No saved fit at"):
        cli.main(["report", str(tmp_path / "ids"), str(tmp_path / "missing"), "--heldout",
                  str(tmp_path / "held.txt"), "--out", str(tmp_path / "r")])
    # a numeric run beside a text one was refused by the Gaussian's own check, in Python's
    # names ("fits['g'] ... cannot score heldout: x must have a numeric dtype"); a file of
    # the other kind was refused by the fit's check ("x must be a list of strings")
    x, _ = pgm.datasets.correlated_gaussian(40, dim=2, seed=0)
    pgm.Gaussian(2).fit(x, method="mle", progress=False).save(tmp_path / "g")
    np.savetxt(tmp_path / "held.csv", x[:5].numpy(), delimiter=",")
    for runs, held, said in [
            (["ids", "g"], "held.txt", r"token-id models \(ids: .*ids\) and models of "
             r"numeric rows \(a .csv or .npy file: .*g\); expected one kind, as a held-out "
             r"file is read one way: report them apart"),
            (["g"], "held.txt", r"models of numeric rows, which score a .csv or .npy "
             r"file; got a .txt file"),
            (["text"], "held.csv", r"text models, which score a .txt file, a sequence a "
             r"line; got a .csv file")]:
        with pytest.raises(SystemExit, match=rf"^error: --heldout .*{held}: the runs hold "
                                             rf"{said}$"):
            cli.main(["report", *(str(tmp_path / r) for r in runs), "--heldout",
                      str(tmp_path / held), "--out", str(tmp_path / "r")])
        assert not (tmp_path / "r").exists()
    assert cli.main(["report", str(tmp_path / "g"), "--heldout", str(tmp_path / "held.csv"),
                     "--out", str(tmp_path / "r")]) == 0


def test_a_token_id_file_that_is_not_ids_is_refused_before_anything_is_written(tmp_path):
    """A line that holds anything but integer ids, or an id out of [0, K): one
    error line with the file, line and id, and no run directory."""
    data, out = tmp_path / "ids.txt", tmp_path / "run"
    base = ["fit", "autoregressive", "--data", str(data), "--method", "mle", "--out",
            str(out), "--arg", "vocab_size=5", "--option", "num_steps=1"]
    for text, found in [("1 2\n\n3 a 4\n", "line 3, id 2: found 'a', expected an integer"),
                        ("1 2\n3 2.0\n", "line 2, id 2: found '2.0', expected an integer"),
                        ("0,1\n", "line 1, id 1: found '0,1', expected an integer"),
                        ("ab\n", "line 1, id 1: found 'ab', expected an integer"),
                        ("1\n2 7\n", r"line 2, id 2: found the token id 7, expected one in "
                                       r"\[0, 5\) \(vocab_size=5\)"),
                        ("1\n-1\n", "line 2, id 1: found the token id -1, expected one in")]:
        data.write_text(text, encoding="utf-8")
        with pytest.raises(SystemExit, match=f"^error: {re.escape(str(data))}, {found}"):
            cli.main(base)
        assert not out.exists()
    data.write_text("", encoding="utf-8")
    with pytest.raises(SystemExit, match="the file is empty"):
        cli.main(base)
    assert not out.exists()
    # a vocab_size that the model refuses is the model's error, not a reader's
    data.write_text("1 2\n3 9\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="^error: Expected vocab_size to be a positive"):
        cli.main([a if a != "vocab_size=5" else "vocab_size=0" for a in base])
    assert not out.exists()
    # a text model (no vocab_size) still reads strings: digits are characters there
    assert cli.main(["fit", "ngram", "--data", str(data), "--method", "mle", "--out",
                     str(out), "--arg", "order=2", "--quiet"]) == 0
    assert pgm.load(out).model.vocab == " 1239"


def test_a_refused_string_or_id_is_said_as_the_files_line(tmp_path):
    """A string with a character outside a given vocabulary (fit, and report --heldout),
    or an out-of-range id in a held-out file: the file's line, as the reader's own
    refusals say it, not the Python argument ``data[2]`` (which the API still says)."""
    data, out = tmp_path / "words.txt", tmp_path / "run"
    data.write_text("hello\n\nworld\nfoo\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=rf"^error: {re.escape(str(data))}, line 4: 'foo' "
                                         r"has the character 'f', which is not in the "
                                         r"vocabulary 'dehlorw'$"):
        cli.main(["fit", "ngram", "--data", str(data), "--method", "mle", "--out", str(out),
                  "--arg", "order=2", "--arg", "vocab='helowrd'", "--quiet"])
    assert not out.exists()
    with pytest.raises(ValueError, match=r"^data\[3\] = 'foo' has the character 'f'"):
        pgm.NGram(2, vocab="helowrd").fit(["hello", "", "world", "foo"], method="mle")
    data.write_text("hello\nworld\n", encoding="utf-8")
    assert cli.main(["fit", "ngram", "--data", str(data), "--method", "mle", "--out",
                     str(out), "--arg", "order=2", "--quiet"]) == 0
    held = tmp_path / "held.txt"
    held.write_text("low\nfold\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=rf"^error: --heldout {re.escape(str(held))}, line 2: "
                                         r"'fold' has the character 'f', which is not in the "
                                         r"vocabulary 'dehlorw' \(fits\['.*run'\] \(NGram, "
                                         r"'mle'\) cannot score heldout\)$"):
        cli.main(["report", str(out), "--heldout", str(held), "--out", str(tmp_path / "r")])
    ids, held_ids = tmp_path / "ids.txt", tmp_path / "held_ids.txt"
    ids.write_text("1 2 3\n4 1\n", encoding="utf-8")
    held_ids.write_text("1 2\n\n3 9 1\n", encoding="utf-8")
    assert cli.main(["fit", "ngram", "--data", str(ids), "--method", "mle", "--out",
                     str(tmp_path / "ids_run"), "--arg", "order=2", "--arg", "vocab_size=5",
                     "--quiet"]) == 0
    with pytest.raises(SystemExit, match=rf"^error: --heldout {re.escape(str(held_ids))}, line "
                                         r"3, id 2: found the token id 9, which is not in the "
                                         r"vocabulary \[0, 5\) \(fits\[.*\] \(NGram, 'mle'\) "
                                         r"cannot score heldout\)$"):
        cli.main(["report", str(tmp_path / "ids_run"), "--heldout", str(held_ids), "--out",
                  str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()


def test_a_text_fit_of_certainty_prints_zero_not_minus_zero(tmp_path, capsys):
    """One string repeated: the mle bigram gives it probability 1, log p = 0, and the
    summary printed "-0.0000 nats per character"."""
    data = tmp_path / "same.txt"
    data.write_text("abc\n" * 20, encoding="utf-8")
    assert cli.main(["fit", "ngram", "--data", str(data), "--method", "mle", "--out",
                     str(tmp_path / "run"), "--arg", "order=2"]) == 0
    assert "mean log p(x) 0.0000, 0.0000 nats per character" in capsys.readouterr().out


def test_text_models_fit_and_sample_txt_files(tmp_path, capsys):
    """ngram from a .txt of names; its samples equal the Python API's for the same seed."""
    import pyro_genmodels as pgm

    names = pgm.datasets.load_names()[:400]
    data = tmp_path / "names.txt"
    data.write_text("\n".join(names) + "\n", encoding="utf-8")
    run = tmp_path / "run"
    assert cli.main(["fit", "ngram", "--data", str(data), "--method", "map", "--out",
                     str(run), "--arg", "order=2", "--arg", "prior_concentration=2.0"]) == 0
    fit = pgm.models.autoregressive.NGram(2, prior_concentration=2.0).fit(names, method="map")
    nats = -fit.log_prob(names).sum().item() / sum(len(s) + 1 for s in names)
    assert f"{nats:.4f} nats per character" in capsys.readouterr().out
    out = tmp_path / "s.txt"
    assert cli.main(["sample", str(run), "-n", "20", "--out", str(out), "--seed", "3",
                     "--prefix", "ma", "--max-length", "10"]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines == fit.sample(20, seed=3, prefix="ma", max_length=10)
    assert len(lines) == 20 and all(s.startswith("ma") and len(s) <= 10 for s in lines)
    with pytest.raises(SystemExit, match="writes a .txt file"):
        cli.main(["sample", str(run), "-n", "2", "--out", str(tmp_path / "s.csv")])
    tokens = pgm.models.autoregressive.NGram(2, vocab_size=3).fit([[0, 1], [2]], method="mle")
    tokens.save(tmp_path / "tokens")
    # a token-id prompt is its ids separated by spaces, as sample writes them (it was
    # refused: "takes integer token ids", which the command line could not give)
    assert cli.main(["sample", str(tmp_path / "tokens"), "-n", "4", "--out", str(out),
                     "--seed", "2", "--prefix", " 1 0"]) == 0
    assert out.read_text().splitlines() == [
        " ".join(map(str, s.tolist())) for s in tokens.sample(4, seed=2, prefix=[1, 0])]
    assert all(line.startswith("1 0") for line in out.read_text().splitlines())
    with pytest.raises(SystemExit, match=r"ids separated by spaces.*but got '1,0'"):
        cli.main(["sample", str(tmp_path / "tokens"), "-n", "2", "--out", str(out),
                  "--prefix", "1,0"])
    with pytest.raises(SystemExit, match="token id 7, which is not in the vocabulary"):
        cli.main(["sample", str(tmp_path / "tokens"), "-n", "2", "--out", str(out),
                  "--prefix", "7"])
    assert cli.main(["sample", str(tmp_path / "tokens"), "-n", "3", "--out", str(out)]) == 0
    assert all(set(line.split()) <= {"0", "1", "2"}
               for line in out.read_text().splitlines())
    with pytest.raises(SystemExit, match="'#', which is not in the vocabulary"):
        cli.main(["sample", str(run), "-n", "2", "--out", str(out), "--prefix", "#"])
    numeric = tmp_path / "x.csv"
    np.savetxt(numeric, np.random.default_rng(0).normal(size=(20, 2)), delimiter=",")
    with pytest.raises(SystemExit, match="read a .txt file"):
        cli.main(["fit", "ngram", "--data", str(numeric), "--method", "mle",
                  "--out", str(run), "--arg", "order=2"])
    assert cli.main(["fit", "gaussian", "--data", str(numeric), "--method", "mle", "--out",
                     str(tmp_path / "g"), "--quiet"]) == 0
    with pytest.raises(SystemExit, match="--prefix applies only to text models"):
        cli.main(["sample", str(tmp_path / "g"), "-n", "2", "--out", str(numeric),
                  "--prefix", "a"])


def test_fit_errors_are_clear(tmp_path):
    data = tmp_path / "x.csv"
    np.savetxt(data, np.ones((5, 2)), delimiter=",")
    with pytest.raises(SystemExit, match="Unknown method"):
        cli.main(["fit", "gaussian", "--data", str(data), "--method", "nope", "--out",
                  str(tmp_path / "r")])
    with pytest.raises(SystemExit, match="Unknown model"):
        cli.main(["fit", "nope", "--data", str(data), "--method", "mle", "--out",
                  str(tmp_path / "r")])
    with pytest.raises(SystemExit, match="missing.csv: no such data file"):
        cli.main(["fit", "gaussian", "--data", str(tmp_path / "missing.csv"), "--method",
                  "mle", "--out", str(tmp_path / "r")])
    with pytest.raises(SystemExit, match="No saved fit"):
        cli.main(["sample", str(tmp_path / "none"), "-n", "3", "--out", str(tmp_path / "s.csv")])


def test_an_out_that_save_would_refuse_stops_fit_before_the_fit(tmp_path, monkeypatch):
    """A non-empty directory that is no run was refused by the save, after the whole fit
    (16 s of training lost in the review's trial); now before the data are read."""
    import pyro_genmodels as pgm

    data = tmp_path / "x.csv"
    np.savetxt(data, np.random.default_rng(0).normal(size=(20, 2)), delimiter=",")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")

    def no_fit(self, *args, **kwargs):
        raise AssertionError("fitted before --out was checked")

    monkeypatch.setattr(pgm.Gaussian, "fit", no_fit)
    with pytest.raises(SystemExit, match=r"^error: --out: Refusing to save a fit to .*"
                                         r"occupied.*the directory is not empty"):
        cli.main(["fit", "gaussian", "--data", str(data), "--method", "map", "--out",
                  str(occupied)])
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]
    # a checkpoint inside a new --out would be found there by the save, after the fit
    with pytest.raises(SystemExit, match=r"^error: --option checkpoint=.*ck is inside --out "
                                         r".*new, which must then hold the fit alone"):
        cli.main(["fit", "gaussian", "--data", str(data), "--method", "map", "--out",
                  str(tmp_path / "new"), "--option", f"checkpoint={tmp_path / 'new' / 'ck'}"])
    assert not (tmp_path / "new").exists()
    (tmp_path / "link").symlink_to(tmp_path / "new")  # the same, reached through a link
    with pytest.raises(SystemExit, match=r"^error: --option checkpoint=.*link/ck is inside"):
        cli.main(["fit", "gaussian", "--data", str(data), "--method", "map", "--out",
                  str(tmp_path / "new"), "--option", f"checkpoint={tmp_path / 'link' / 'ck'}"])
    assert not (tmp_path / "new").exists()
    (tmp_path / "link").unlink()
    monkeypatch.undo()  # a run directory is overwritten, as before, and may hold its own
    run = tmp_path / "run"  # checkpoint once it is one
    beside = f"{tmp_path / 'new' / '..' / 'new-ck'}"  # beside --out, written with ".."
    assert cli.main(["fit", "gaussian", "--data", str(data), "--method", "map", "--out",
                     str(tmp_path / "new"), "--quiet", "--option", "num_steps=3", "--option",
                     f"checkpoint={beside}"]) == 0
    for opt in ("lr=0.01", f"checkpoint={run / 'ck'}"):
        assert cli.main(["fit", "gaussian", "--data", str(data), "--method", "map", "--out",
                         str(run), "--quiet", "--option", "num_steps=3", "--option",
                         opt]) == 0


def test_constructor_arguments_are_checked_by_name_before_the_data_are_read(tmp_path):
    """An unknown ``--arg`` is named with the closest known ones and the model's whole
    list; a missing required one is asked for as an ``--arg``; both before the data file
    is read (here it does not exist) and before anything is written."""
    absent, out = str(tmp_path / "absent.csv"), tmp_path / "r"

    def fit(model, *args):
        cli.main(["fit", model, "--data", absent, "--method", "map", "--out", str(out),
                  *args])

    with pytest.raises(SystemExit, match=r"^error: gaussian_mixture has no argument "
                                         r"'num_components' \(--arg num_components=\.\.\.\)\. "
                                         r"Did you mean 'n_components'\? Its arguments: dim, "
                                         r"n_components, covariance_type, prior_scale"):
        fit("gaussian_mixture", "--arg", "num_components=2")
    with pytest.raises(SystemExit, match=r"^error: gaussian has no argument 'blah' "
                                         r"\(--arg blah=\.\.\.\)\. Its arguments: dim, "
                                         r"covariance, prior_scale$"):
        fit("gaussian", "--arg", "blah=1")
    with pytest.raises(SystemExit, match=r"^error: gaussian has no argument 'blah' "
                                         r"\(--arg blah=\.\.\.\)\. It has no argument "
                                         r"'prior_scal' \(--arg prior_scal=\.\.\.\)\. Did "
                                         r"you mean 'prior_scale'\? Its arguments: dim"):
        fit("gaussian", "--arg", "prior_scal=1", "--arg", "blah=1")  # every one named
    with pytest.raises(SystemExit, match=r"^error: gaussian_mixture needs --arg "
                                         r"n_components=\.\.\. \(required; its other "
                                         r"arguments: dim, covariance_type"):
        fit("gaussian_mixture")
    with pytest.raises(SystemExit, match=r"^error: ngram needs --arg order=\.\.\."):
        fit("ngram")
    assert not out.exists()
    # a constructor with **kwargs (a flow's, for zuko) checks its own: after the names
    with pytest.raises(SystemExit, match="absent.csv: no such data file"):
        fit("flow", "--arg", "hiden=[8]")


def test_ctrl_c_saves_what_the_fit_kept_and_says_when_it_kept_nothing(
        tmp_path, capsys, monkeypatch):
    """Ctrl-C while the chain draws: the run is saved with its draws so far, marked
    interrupted, and the status is 130 (the shell's for SIGINT: a script can tell it from
    a finished run, which it could not at 0). In the warmup, nothing is kept: one line
    says so, nothing is written, and the status is 130 too, not a traceback."""
    from pyro_genmodels.infer import mcmc

    data = tmp_path / "x.csv"
    np.savetxt(data, np.random.default_rng(0).normal(size=(40, 2)), delimiter=",")
    original = mcmc.RecordedNUTS.sample

    def interrupt_after(k):
        calls = {"n": 0}

        def sample(self, params):
            calls["n"] += 1
            if calls["n"] > k:
                raise KeyboardInterrupt
            return original(self, params)
        monkeypatch.setattr(mcmc.RecordedNUTS, "sample", sample)

    command = ["fit", "gaussian", "--data", str(data), "--method", "nuts", "--quiet",
               "--option", "num_samples=100", "--option", "warmup_steps=20",
               "--option", "num_chains=1", "--out"]
    interrupt_after(20 + 30)
    assert cli.main(command + [str(tmp_path / "kept")]) == 130
    assert "interrupted" in capsys.readouterr().out
    fit = pgm.load(tmp_path / "kept")
    assert fit.interrupted and fit.posterior["loc"].shape == (1, 30, 2)
    interrupt_after(10)
    assert cli.main(command + [str(tmp_path / "none")]) == 130
    err = capsys.readouterr().err
    assert "interrupted before the fit had anything to keep" in err and "nothing saved" in err
    assert not (tmp_path / "none").exists()


@pytest.mark.slow  # a few minutes: every family by every method
def test_demo_quick_writes_the_report(tmp_path):
    """The console script itself, as a user runs it. CI's main job runs exactly this
    command first (`.ci/run`: `pyro-genmodels demo --quick --out demo-out`) and names its
    output in ``PGM_DEMO_OUT``: then this test checks that report instead of making a
    second one (three minutes on 2 cores); anywhere else it runs the demo itself."""
    out = demo_report(tmp_path)
    page = (out / "index.html").read_text()
    for needle in ("held-out log p (kind)", "elpd_loo", "true_kl", "r_hat", "nuts",
                   "The four requirements, per family", "MLE, MAP and the posterior",
                   "Pareto k", "rank plots", "posterior predictive check"):
        assert needle in page, needle
    parsed = check_page(page)  # links, alt text, inline PNGs, no network, no empty section
    titles = " ".join(str(s["title"]) for s in parsed.sections.values())
    for cls in pgm.registry().values():  # every family has a section with a picture
        section = next(s for s in parsed.sections.values() if cls.__name__ in str(s["title"]))
        assert section["images"] and section["tables"], (cls.__name__, section)
    assert ">nan<" not in page.lower(), "a NaN cell reached the page"
    for method in ("mle", "map", "vi", "nuts"):
        assert (out / "fits" / f"gaussian-{method}" / "fit.json").is_file()
    from pyro_genmodels.demo import DEMO_CASES

    for name in DEMO_CASES:  # every family has its section and its saved fits
        assert f"({name})" in titles
        assert any((out / "fits").glob(f"{name}-*/fit.json")), name
    assert "NGram and AutoregressiveModel (names)" in page and "samples after" in page
    assert "VAE (digits)" in page and (out / "fits" / "vae-mle" / "fit.json").is_file()
    assert (out / "fits" / "names-gru" / "fit.json").is_file()
    # the requirements table: a row per family, each with a held-out score of its own
    top = page[page.index("id='requirements'"):page.index("<section")]
    for cls in pgm.registry().values():
        row = top[top.index(f"<th class='text'>{cls.__name__}</th>"):]
        row = row[:row.index("</tr>")]
        assert "not run" not in row and "in its section" not in row, row
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert len(cells) == 5 and all(cells), row
    # the ranking: every family that scores 2-D rows, the GAN by its samples only
    ranking = next(s for s in parsed.sections.values()
                   if s["title"] == "Every family on the same held-out data")
    html = page[page.index("id='every-family-on-the-same-held-out-data'"):]
    html = html[:html.index("</section>")]
    for family in ("Flow", "EnergyModel", "Diffusion", "ScoreModel", "GAN (adversarial",
                   "Gaussian (mle)", "GaussianMixture", "PPCA", "VAE"):
        assert f"<th class='text'>{family}" in html, family
    assert ranking["tables"] and "(bound)" in html and "no density" in html


def test_fit_with_early_stopping_and_checkpoints_from_the_command_line(tmp_path, capsys):
    """Raw wine columns, a held-out fraction with patience, a checkpoint, then a resume
    of the finished run and the errors a user meets on the way."""
    from sklearn.datasets import load_wine

    data = tmp_path / "wine.csv"
    np.savetxt(data, load_wine().data, delimiter=",")
    args = ["fit", "gaussian", "--data", str(data), "--method", "map", "--quiet",
            "--option", "validation=0.15", "--option", "patience=5", "--option",
            f"checkpoint={tmp_path / 'ck'}"]
    assert cli.main(args + ["--out", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    assert "per row at step" in out and "stopped: early_stopping" in out
    assert (tmp_path / "ck" / "checkpoint.safetensors").is_file()
    resumed = args[:-1] + [f"resume={tmp_path / 'ck'}", "--out", str(tmp_path / "g2")]
    assert cli.main(resumed) == 0
    assert capsys.readouterr().out.splitlines()[-1] == out.splitlines()[-1]
    with pytest.raises(SystemExit, match="No checkpoint at"):
        cli.main(args[:-1] + [f"resume={tmp_path / 'nowhere'}", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="patience needs held-out data"):
        cli.main(["fit", "gaussian", "--data", str(data), "--method", "map", "--quiet",
                  "--option", "patience=5", "--out", str(tmp_path / "y")])


# ---------------------------------------------------------------------- scale-out
LAUNCH_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _env(**extra):
    import os

    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def _torchrun():
    """torchrun next to this interpreter (the venv's), else its module."""
    import shutil
    from pathlib import Path

    exe = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]


def test_python_m_pyro_genmodels_runs_the_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pyro_genmodels", "list"], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "gaussian" in proc.stdout and "methods=mle,map,vi,nuts,hmc" in proc.stdout


def test_distributed_fit_under_torchrun_saves_once_and_prints_once(tmp_path, capsys):
    """Two workers on one machine: rank 0 writes the one run directory and prints, and
    says the warnings (each rank said them); the fit equals the one-process fit of the
    same global minibatches (no per-row noise in a Gaussian's MAP objective), to
    rounding."""
    import torch

    import pyro_genmodels as pgm

    # (a column of mean 700, sd 50: the prior N(0, 10^2) moves its MAP: the fit warns)
    x = np.random.default_rng(0).normal(size=(200, 2)) * [50.0, 2.0] + [700.0, -1.0]
    np.savetxt(tmp_path / "x.csv", x, delimiter=",")
    args = ["fit", "gaussian", "--data", "x.csv", "--method", "map", "--option",
            "num_steps=50", "--option", "batch_size=40", "--quiet"]
    # (--bind-cores: each worker bound to its core, the layout the guide recommends)
    proc = subprocess.run(_torchrun() + ["--standalone", "--nproc_per_node=2", "-m",
                                         "pyro_genmodels"] + args + ["--distributed",
                                                                     "--bind-cores",
                                                                     "--out", "RUN"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RUN", "x.csv"]
    assert sorted(p.name for p in (tmp_path / "RUN").iterdir()) == ["fit.json",
                                                                    "tensors.safetensors"]
    lines = proc.stdout.splitlines()
    assert sum("saved to RUN" in line for line in lines) == 1, proc.stdout
    assert sum(line.startswith("mean log p(x)") for line in lines) == 1, proc.stdout
    assert len(lines) == 2 and "error:" not in proc.stderr, proc.stdout + proc.stderr
    assert proc.stderr.count("warning: Gaussian's prior (prior_scale=10") == 1, proc.stderr
    fit = pgm.load(tmp_path / "RUN")
    assert fit.info["distributed"]["world_size"] == 2 and fit.method == "map"

    one = tmp_path / "one"  # the same command on one process, in this one
    assert cli.main([a if a != "x.csv" else str(tmp_path / "x.csv") for a in args]
                    + ["--out", str(one)]) == 0
    single = pgm.load(one)
    for k, v in single.params.items():
        assert torch.allclose(fit.params[k], v, rtol=1e-4, atol=1e-5), k
    assert len(fit.losses) == 50
    assert np.allclose(fit.losses, single.losses, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # a torchrun launch of 2 processes
def test_distributed_bad_input_is_rank_0s_clear_error_and_writes_nothing(tmp_path):
    x = np.random.default_rng(0).normal(size=(50, 2))
    x[7, 1] = np.nan
    np.savetxt(tmp_path / "x.csv", x, delimiter=",")
    proc = subprocess.run(_torchrun() + ["--standalone", "--nproc_per_node=2", "-m",
                                         "pyro_genmodels", "fit", "gaussian", "--data",
                                         "x.csv", "--method", "map", "--distributed",
                                         "--out", "RUN", "--quiet"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    # x[7, 1]: the file's line 8, column 2 (the reader names file lines, 1-based)
    assert errors == ["error: x.csv, line 8, column 2: found 'nan', expected a finite "
                      "number"], proc.stderr
    assert proc.stdout == "" and not (tmp_path / "RUN").exists()


def test_distributed_outside_torchrun_is_a_clear_error(tmp_path, monkeypatch):
    for k in LAUNCH_VARS:
        monkeypatch.delenv(k, raising=False)
    data = tmp_path / "x.csv"
    np.savetxt(data, np.random.default_rng(0).normal(size=(20, 2)), delimiter=",")
    args = ["fit", "gaussian", "--data", str(data), "--method", "map", "--distributed",
            "--out", str(tmp_path / "r"), "--quiet"]
    with pytest.raises(SystemExit, match=r"^error: distributed=True needs a process group: "
                                         r"start the script with torchrun"):
        cli.main(args)
    assert not (tmp_path / "r").exists()
    # --bind-cores binds a distributed fit's workers: without --distributed, refused
    # before anything is bound or read
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with pytest.raises(SystemExit, match=r"^error: --bind-cores binds the workers of a "
                                         r"distributed fit: add --distributed"):
        cli.main([a for a in args if a != "--distributed"] + ["--bind-cores"])
    assert not (tmp_path / "r").exists()
    assert before is None or os.sched_getaffinity(0) == before
    if before is not None:  # a launch environment that is not torchrun's: refused, unbound
        for k, v in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                     "MASTER_PORT": "1", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"}.items():
            monkeypatch.setenv(k, v)
        with pytest.raises(SystemExit, match=r"^error: --bind-cores: expected 0 <= "
                                             r"local_rank < local_world_size .* "
                                             r"local_rank=2, local_world_size=2"):
            cli.main(args + ["--bind-cores"])
        assert os.sched_getaffinity(0) == before and not (tmp_path / "r").exists()
        for k in LAUNCH_VARS + ("LOCAL_RANK", "LOCAL_WORLD_SIZE"):
            monkeypatch.delenv(k, raising=False)
    # a closed-form method says it cannot run distributed, whatever the launch
    with pytest.raises(SystemExit, match=r"GaussianMixture's method 'mle' cannot run "
                                         r"distributed: .* EM"):
        cli.main(["fit", "gaussian_mixture", "--data", str(data), "--method", "mle",
                  "--arg", "n_components=2", "--distributed", "--out", str(tmp_path / "r")])
    # what a user sees: the one line on stderr, status 1 (as every `error: ...` of the CLI)
    proc = subprocess.run([sys.executable, "-m", "pyro_genmodels"] + args, cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("error: distributed=True needs a process group"), \
        proc.stderr
    # another worker's error: the first worker of a node names its rank, the others are
    # silent (rank 0 has said it)
    monkeypatch.setenv("RANK", "4")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(SystemExit, match=r"^error: \[rank 4\] distributed=True needs"):
        cli.main(args)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(SystemExit) as e:
        cli.main(args)
    assert e.value.code == 1


def test_a_large_npy_is_streamed_from_disk(tmp_path, capsys, monkeypatch):
    """Above STREAM_BYTES the file is memory-mapped and fitted streamed: the same fit as
    reading it whole (same seed), and the summary scores the first rows."""
    from pyro_genmodels.io import load

    x = np.random.default_rng(0).normal(size=(300, 2)) * [1.0, 2.0] + [3.0, -1.0]
    np.save(tmp_path / "x.npy", x)
    args = ["fit", "gaussian", "--data", str(tmp_path / "x.npy"), "--method", "map",
            "--option", "num_steps=40", "--option", "batch_size=50", "--quiet"]
    assert cli.main(args + ["--out", str(tmp_path / "whole")]) == 0
    assert "on the training data" in capsys.readouterr().out
    monkeypatch.setattr(_cli_files, "STREAM_BYTES", 0)
    assert cli.main(args + ["--out", str(tmp_path / "streamed")]) == 0
    assert "on the first 300 rows" in capsys.readouterr().out
    whole, streamed = load(tmp_path / "whole"), load(tmp_path / "streamed")
    assert streamed.info["streamed_rows"] == 300 and streamed.data is None
    assert whole.losses == streamed.losses
    for k in whole.point:
        assert np.array_equal(whole.point[k].numpy(), streamed.point[k].numpy())


def test_true_false_and_none_as_a_shell_user_spells_them(tmp_path):
    """``--arg standardize=false`` and ``--option jit=TRUE`` mean the booleans (and
    ``none`` / ``null`` None), as ``False`` and ``True`` do; other text stays text."""
    assert _cli_files.parse_pairs(["a=false", "b=TRUE", "c=None", "d=null", "e=True", "f=[1, 2]",
                                   "g=mvn"], "--arg") == {
        "a": False, "b": True, "c": None, "d": None, "e": True, "f": [1, 2], "g": "mvn"}
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).normal(size=(50, 2)) * [1.0, 300.0])
    assert cli.main(["fit", "flow", "--data", str(data), "--method", "mle", "--out",
                     str(tmp_path / "run"), "--quiet", "--arg", "standardize=false",
                     "--arg", "hidden=[8]", "--option", "num_steps=3"]) == 0
    assert pgm.load(tmp_path / "run").model.standardize is False


def test_a_sample_csv_carries_the_training_files_header(tmp_path):
    """``fit`` keeps the names of a .csv header (in ``fit.info["columns"]``) and
    ``sample`` writes them as its .csv's header, quoted where a name needs it, so the
    samples read back with the same columns; data without a header (a .npy) give
    samples without one."""
    import csv

    names = ["alcohol", 'malic, acid "x"', "proline"]
    x = np.random.default_rng(0).normal(size=(60, 3)) * [1.0, 2.0, 300.0]
    data = tmp_path / "x.csv"
    with data.open("w", newline="") as f:
        csv.writer(f).writerows([names, *x.tolist()])
    assert cli.main(["fit", "gaussian", "--data", str(data), "--method", "map", "--out",
                     str(tmp_path / "run"), "--quiet", "--option", "num_steps=20"]) == 0
    assert pgm.load(tmp_path / "run").info["columns"] == names
    out = tmp_path / "s.csv"
    assert cli.main(["sample", str(tmp_path / "run"), "-n", "4", "--out", str(out)]) == 0
    rows, columns = _cli_files.read_table(str(out))
    assert columns == names and rows.shape == (4, 3)
    np.save(tmp_path / "x.npy", x)
    assert cli.main(["fit", "gaussian", "--data", str(tmp_path / "x.npy"), "--method", "map",
                     "--out", str(tmp_path / "run2"), "--quiet", "--option",
                     "num_steps=20"]) == 0
    assert cli.main(["sample", str(tmp_path / "run2"), "-n", "4", "--out", str(out)]) == 0
    assert _cli_files.read_table(str(out))[1] is None


def test_an_out_that_cannot_be_a_directory_stops_demo_and_report_before_any_work(tmp_path):
    """``demo`` (minutes of fitting) and ``report`` check ``--out`` first: a file, or a
    path under a file, is one ``error:`` line, and nothing is written."""
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for argv, match in ((["demo", "--quick", "--out", str(afile), "--quiet"],
                         r"--out .*afile is a file; expected a directory"),
                        (["report", str(tmp_path / "missing-run"), "--out",
                          str(afile / "sub")], r"cannot make the directory --out .*: .*afile "
                                               r"is a file")):
        started = time.perf_counter()
        with pytest.raises(SystemExit, match=match):
            cli.main(argv)
        assert time.perf_counter() - started < 5  # refused before any fitting
    assert afile.read_text() == "keep me" and sorted(tmp_path.iterdir()) == [afile]


def test_an_mcmc_fit_says_how_its_chains_mixed_and_warnings_are_one_line(tmp_path, capsys):
    """After ``fit --method nuts``: R-hat, bulk ESS and divergences in one line (what a
    Bayesian reads first); a warning (here the prior on columns in the hundreds) is one
    ``warning:`` line on stderr."""
    import numpy as np

    rows = np.random.default_rng(0).normal(size=(60, 2)) * [1.0, 50.0] + [0.0, 700.0]
    np.savetxt(tmp_path / "d.csv", rows, delimiter=",", header="a,b", comments="")
    assert cli.main(["fit", "gaussian", "--data", str(tmp_path / "d.csv"), "--method", "nuts",
                     "--option", "num_samples=30", "--option", "warmup_steps=30",
                     "--option", "num_chains=2", "--seed", "0", "--quiet",
                     "--out", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    line = next(s for s in out.splitlines() if s.startswith("posterior:"))
    assert re.match(r"posterior: 2 chains x 30 draws, max R-hat \d\.\d{3}, min bulk ESS "
                    r"\d+, \d+ divergent transitions", line), line
    fit = pgm.load(tmp_path / "run")
    assert f"{int(fit.sample_stats['diverging'].sum())} divergent" in line
    assert err.startswith("warning: Gaussian's prior (prior_scale=10, in the data's units) "
                          "moves the nuts fit of column(s) [0, 1] (a, b)")
    assert "cli.py" not in err


def test_a_conditional_model_is_refused_before_anything_is_written(tmp_path):
    """The command takes no c: ``fit`` with ``--arg context_dim=...`` stops before the
    data are read (here they do not exist) or --out is made, and ``sample`` of a saved
    conditional fit before it draws or writes; both say to use Python's c=."""
    out = tmp_path / "r"
    with pytest.raises(SystemExit, match=r"^error: --arg context_dim=3 makes gan "
                                         r"conditional, .* takes no c .*model\.fit\(x, "
                                         r"c=\.\.\.\)"):
        cli.main(["fit", "gan", "--arg", "context_dim=3", "--data",
                  str(tmp_path / "absent.csv"), "--method", "adversarial", "--out", str(out)])
    assert not out.exists()
    x, _ = pgm.datasets.correlated_gaussian(20, dim=2, seed=0)
    fit = pgm.Diffusion(2, timesteps=3, hidden=(4,), context_dim=1).fit(
        x, c=x[:, :1], method="mle", num_steps=1, seed=0, progress=False)
    fit.save(tmp_path / "cond")
    with pytest.raises(SystemExit, match=r"^error: '.*cond' holds a conditional Diffusion, "
                                         r"but .* takes no c .*"
                                         r"load\(run\)\.sample\(n, c=\.\.\.\)"):
        cli.main(["sample", str(tmp_path / "cond"), "-n", "3", "--out", str(out / "s.csv")])
    assert not out.exists()
    # a sequence model is conditioned by its classes
    with pytest.raises(SystemExit, match=r"^error: --arg num_classes=2 makes autoregressive "
                                         r"conditional"):
        cli.main(["fit", "autoregressive", "--arg", "num_classes=2", "--data",
                  str(tmp_path / "absent.txt"), "--method", "mle", "--out", str(out)])
    assert not out.exists()


def test_torch_own_deprecation_inside_its_compiler_is_not_a_warning_line(monkeypatch, capsys):
    """``compile=True`` makes Inductor call a function torch itself deprecates; the command
    line says nothing of it (no user can act on it) and says every other warning."""
    import warnings

    def noisy(args):
        warnings.warn("`torch._prims_common.check` is deprecated and will be removed in the "
                      "future. Please use `torch._check*` functions instead.", FutureWarning)
        warnings.warn("the prior is informative", UserWarning)
        return 0

    monkeypatch.setattr(cli, "_cmd_list", noisy)
    assert cli.main(["list"]) == 0
    assert capsys.readouterr().err == "warning: the prior is informative\n"


def test_a_gan_fit_on_fewer_rows_than_mmd_needs_is_saved_and_said(tmp_path, capsys):
    """A GAN has no density, so the summary scores draws by MMD, which needs 4 rows: on 3
    the fit is saved and the summary says why there is no score (it was a traceback
    after the save, status 1)."""
    data = tmp_path / "three.csv"
    data.write_text("1,2\n3,4\n5,7\n")
    run = tmp_path / "run"
    assert cli.main(["fit", "gan", "--data", str(data), "--method", "adversarial", "--out",
                     str(run), "--quiet", "--arg", "hidden=[4]", "--option",
                     "num_steps=2"]) == 0
    out = capsys.readouterr().out
    assert "the training data (3 rows) are too few to score draws against (MMD needs 4)" in out
    assert pgm.load(run).sample(2, seed=0).shape == (2, 2)


def test_the_fit_summary_says_when_log_p_is_a_bound_or_an_estimate(tmp_path, capsys):
    """A diffusion fit's summary printed "mean log p(x) on the training data: -29.6",
    its ELBO, as an exact density would read; the kind is now in the line."""
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).normal(size=(100, 2)))
    for model, args, said in [
            ("diffusion", ["--arg", "timesteps=5", "--arg", "hidden=[8]"], " (a lower bound)"),
            ("vae", ["--arg", "latent_dim=1", "--arg", "hidden=[8]", "--arg",
                     "likelihood='gaussian'"], " (an estimate)"),
            ("gaussian", [], "")]:
        assert cli.main(["fit", model, "--data", str(data), "--method", "mle", "--out",
                         str(tmp_path / model), "--quiet", "--option", "num_steps=3",
                         *args]) == 0
        out = capsys.readouterr().out
        assert re.search(rf"^mean log p\(x\) on the training data{re.escape(said)}: "
                         rf"-?\d+\.\d{{4}}$", out, re.M), out


def test_sample_refuses_strings_that_a_line_cannot_hold(tmp_path):
    """A vocabulary fitted in Python may hold a line break: sample wrote "a\\nb" as two
    lines (4 samples, 6 lines, read back as other strings). It is one error line now,
    and no file is written. (A lone surrogate, which died in a UnicodeEncodeError
    traceback, is refused by the fit itself now: test_ngram.)"""
    from pyro_genmodels.models.sequence import NGram

    for name, strings, said in [("nl", ["a\nb", "ab"], r"a line break \('\\n'\)"),
                                ("cr", ["a\rb", "ab"], r"a line break \('\\r'\)")]:
        NGram(2).fit(strings, method="mle").save(tmp_path / name)
        out = tmp_path / f"{name}.txt"
        with pytest.raises(SystemExit, match=rf"^error: sample \d+ \(.*\) holds {said}, which "
                                             r"a .txt file of one string per line cannot "
                                             r"hold"):
            cli.main(["sample", str(tmp_path / name), "-n", "40", "--seed", "0", "--out",
                      str(out)])
        assert not out.exists()
