"""The report module: the page's pieces, and ``pyro-genmodels report RUN_DIR...`` on
saved fits (the demo's page is checked in tests/test_cli.py)."""

import math
import re

import pandas as pd
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels import cli, report

from .report_checks import check_page


def test_compact_drops_all_nan_columns_and_shows_each_kind():
    table = pd.DataFrame({"method": ["mle", "adversarial"], "model": ["X", "X"],
                          "heldout_log_prob": [-2.5, math.nan],
                          "heldout_log_prob_se": [0.01, math.nan],
                          "log_prob_kind": ["exact", "none"], "aic": [math.nan, math.nan],
                          "mmd": [0.1, 0.2]}, index=["a", "b"])
    out = report.compact(table)
    assert list(out.columns) == ["held-out log p (kind)", "method", "mmd"]
    assert out.loc["a", "held-out log p (kind)"] == "-2.5 ± 0.01 (exact)"
    assert out.loc["b", "held-out log p (kind)"] == "no density"


def test_page_leaves_out_empty_sections_and_links_every_other():
    sections = [report.Section("a", "A", "<table><tr><td>1</td></tr></table>"),
                report.Section("b", "B", "  "),
                report.Section("c", "C & D", "<table><tr><td>2</td></tr></table>")]
    text = report.page("T", "<p>top</p>", sections)
    page = check_page(text)
    assert set(page.sections) == {"a", "c"}
    assert page.nav == ["#top", "#a", "#c"]
    assert page.sections["c"]["title"] == "C & D"


def test_table_marks_cells_and_leaves_nan_blank():
    df = pd.DataFrame({"r_hat": [1.0, 1.2], "ess_bulk": [900.0, math.nan]}, index=["x", "y"])
    marks = pd.DataFrame({"r_hat": [False, True], "ess_bulk": [False, False]}, index=df.index)
    text = report.table(df, marks=marks)
    assert text.count("class='bad'") == 1 and "<td class='bad'>1.2</td>" in text
    assert ">nan<" not in text.lower()


def test_requirements_come_from_capabilities_and_fits():
    x, _ = pgm.datasets.correlated_gaussian(50, dim=2, seed=0)
    model = pgm.Gaussian(2)
    fit = model.fit(x, method="mle", seed=0, progress=False, num_steps=50)
    table = pgm.compare({"mle": fit}, x, samples=False, loo=False)
    row = report.requirements(model, {"mle": fit}, table)
    assert row["normalized"] == "exact" and row["samples by"] == "direct"
    assert row["trained by"] == "mle"
    assert row["held-out log p"].endswith("(exact, mle)")
    gan = report.requirements(pgm.GAN(2), {})
    assert gan["normalized"] == "none" and gan["held-out log p"] == "n/a (no density)"


def test_report_of_saved_fits_from_the_command_line(tmp_path, capsys):
    """A point fit and a NUTS fit saved by ``fit.save``, reported with held-out rows: one
    section per family with its table and pictures, and the ArviZ pictures of the
    posterior fit (rank plots, posterior predictive check, Pareto k)."""
    x, _ = pgm.datasets.correlated_gaussian(40, dim=2, seed=0)
    heldout, _ = pgm.datasets.correlated_gaussian(200, dim=2, seed=1)
    model = pgm.Gaussian(2)
    model.fit(x, method="map", seed=0, progress=False, num_steps=100).save(tmp_path / "g-map")
    model.fit(x, method="nuts", seed=0, progress=False, num_samples=60, warmup_steps=60,
              num_chains=2).save(tmp_path / "g-nuts")
    import numpy as np

    np.save(tmp_path / "heldout.npy", heldout.numpy())
    out = tmp_path / "rep"
    assert cli.main(["report", str(tmp_path / "g-map"), str(tmp_path / "g-nuts"),
                     "--heldout", str(tmp_path / "heldout.npy"), "--out", str(out)]) == 0
    assert f"report written to {out / 'index.html'}" in capsys.readouterr().out
    text = (out / "index.html").read_text()
    page = check_page(text)
    assert list(page.sections) == ["gaussian"]
    assert page.sections["gaussian"]["tables"] >= 2  # the comparison and az.summary
    for needle in ("rank plots", "posterior predictive check", "Pareto k", "training loss",
                   "held-out log p (kind)", "(exact)", "The four requirements"):
        assert needle in text, needle
    # ArviZ's threshold for S = 120 draws, min(1 - 1 / log10(S), 0.7), not a fixed 0.7;
    # the rank plots name the variables they draw
    assert "g-nuts nuts (untrusted above 0.52)" in text
    assert "rank plots of loc, scale for" in text


def test_a_family_with_no_density_is_scored_by_its_draws(tmp_path):
    """A GAN has no log p: its table gives the sample-based scores on the held-out rows
    (MMD, C2ST), as the demo's page does, rather than no score at all."""
    x, _ = pgm.datasets.correlated_gaussian(200, dim=2, seed=0)
    heldout, _ = pgm.datasets.correlated_gaussian(200, dim=2, seed=1)
    pgm.GAN(2, hidden=(16,)).fit(x, method="adversarial", num_steps=20, seed=0,
                                 progress=False).save(tmp_path / "gan")
    text = report.from_runs([tmp_path / "gan"], tmp_path / "r", heldout=heldout).read_text()
    page = check_page(text)
    assert list(page.sections) == ["gan"]
    for needle in ("<th>mmd</th>", "<th>c2st</th>", "no density"):
        assert needle in text, needle


def test_held_out_rows_for_a_conditional_run_are_refused_before_any_scoring(tmp_path):
    """The report takes no conditions, so it cannot score a conditional fit's held-out
    rows; the error was the fit's own "pass c", which neither report nor its command
    line can."""
    x, _ = pgm.datasets.correlated_gaussian(40, dim=2, seed=0)
    c = (x[:, :1] > 0).float()
    pgm.Flow(2, context_dim=1, num_transforms=1, hidden=(4,)).fit(
        x, c=c, method="mle", num_steps=3, seed=0, progress=False).save(tmp_path / "cf")
    with pytest.raises(ValueError, match=r"^cf hold\(s\) a conditional model, whose "
                                         r"held-out rows need their conditions"):
        report.from_runs([tmp_path / "cf"], tmp_path / "r", heldout=x[:5])
    assert not (tmp_path / "r").exists()
    assert "<h2>Flow</h2>" in report.from_runs([tmp_path / "cf"], tmp_path / "r").read_text()


def test_report_says_which_runs_ctrl_c_stopped(tmp_path):
    """A fit stopped by Ctrl-C is saved like any other; the report names it, so its
    shorter loss curve is not read as a converged fit."""
    x, _ = pgm.datasets.correlated_gaussian(40, dim=2, seed=0)

    def interrupt(step, loss):
        if step == 9:
            raise KeyboardInterrupt

    model = pgm.Gaussian(2)
    model.fit(x, method="map", seed=0, progress=False, num_steps=50).save(tmp_path / "whole")
    model.fit(x, method="map", seed=0, progress=False, num_steps=50,
              callback=interrupt).save(tmp_path / "cut<&>")
    text = report.from_runs([tmp_path / "whole", tmp_path / "cut<&>"], tmp_path / "r").read_text()
    assert "Stopped by Ctrl-C before the end: cut&lt;&amp;&gt; (" in text  # escaped, as every label


def test_text_fits_get_their_training_log_likelihood_without_heldout(tmp_path):
    """Sequence fits keep their training data encoded (integer ids): the report's
    training column was NaN for them, and trimmed; it is ``compare``'s number."""
    from pyro_genmodels.compare import _train_log_probs
    from pyro_genmodels.models.sequence import NGram

    fit = NGram(2, vocab="ab", prior_concentration=2.0).fit(["ab", "ba", "aab"], method="map")
    fit.save(tmp_path / "ng")
    text = report.from_runs([tmp_path / "ng"], tmp_path / "r").read_text()
    want = float(_train_log_probs(fit).mean())
    assert math.isfinite(want) and "<th>train log p</th>" in text
    assert f"<td>{want:.4g}</td>" in text


def test_sequence_fits_show_a_table_of_their_draws(tmp_path):
    """Text and token-id fits had no samples on the page (the scatter is for numeric
    rows): each now gets a column of up to 10 draws under seed 0, the empty string said
    so, ids separated by spaces."""
    import html

    from pyro_genmodels.models.sequence import NGram

    names = pgm.datasets.load_names()[:200]
    text = NGram(2, prior_concentration=1.0).fit(names, method="map")
    ids = NGram(2, vocab_size=4).fit([[0, 1, 2], [3, 1], [2, 2, 0]], method="mle")
    text.save(tmp_path / "names")
    ids.save(tmp_path / "ids")
    page = report.from_runs([tmp_path / "names", tmp_path / "ids"], tmp_path / "r").read_text()
    assert "Draws of each fit (up to 10, seed 0" in page
    drawn = page.split("Draws of each fit")[1].split("</table>")[0]
    assert "<th>names</th><th>ids</th>" in drawn
    rows = [[html.unescape(c) for c in re.findall(r"<td[^>]*>([^<]*)</td>", r)]
            for r in re.findall(r"<tr><th class='text'>\d+</th>(.*?)</tr>", drawn)]
    assert len(rows) == 10
    for column, fit, n in [(0, text, 10), (1, ids, 3)]:
        shown = [d or "(empty)" if isinstance(d, str) else " ".join(map(str, d.tolist()))
                 for d in fit.sample(n, seed=0)]
        assert [r[column] for r in rows] == shown + [""] * (10 - n)


def test_report_refuses_what_it_cannot_read(tmp_path):

    with pytest.raises(SystemExit, match="error: .*No saved fit"):
        cli.main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r")])
    with pytest.raises(ValueError, match="at least one run directory"):
        report.from_runs([], tmp_path / "r")
    assert not (tmp_path / "r").exists()
    # a held-out file one of the runs cannot read (the README once showed one for numeric
    # and text runs together): one error line, not a TypeError's traceback
    x, _ = pgm.datasets.correlated_gaussian(40, dim=2, seed=0)
    pgm.Gaussian(2).fit(x, method="map", seed=0, progress=False,
                        num_steps=5).save(tmp_path / "g")
    (tmp_path / "names.txt").write_text("ab\nba\n")
    with pytest.raises(SystemExit, match=r"^error: --heldout .*names.txt: the runs hold "
                                         r"models of numeric rows, which score a .csv or "
                                         r"\.npy file; got a .txt file$"):
        cli.main(["report", str(tmp_path / "g"), "--heldout", str(tmp_path / "names.txt"),
                  "--out", str(tmp_path / "r")])
    assert not (tmp_path / "r" / "index.html").exists()


def test_a_table_too_wide_for_the_page_is_shown_transposed():
    wide = pd.DataFrame({f"column {i}": [1.2345678, 2.5] for i in range(14)},
                        index=["mle", "nuts"])
    assert report.table_width(wide) > report.MAX_TABLE_PX
    marks = pd.DataFrame(False, index=wide.index, columns=wide.columns)
    marks.loc["nuts", "column 3"] = True
    text = report.table(wide, marks=marks)
    head = text[:text.index("</tr>")]
    assert "<th>mle</th><th>nuts</th>" in head and "column 0" not in head  # fits as columns
    rows = text.split("<tr>")[1:]
    row3 = next(r for r in rows if ">column 3<" in r)
    assert "<td>1.235</td><td class='bad'>2.5</td>" in row3  # the mark moved with its cell
    narrow = wide.iloc[:, :3]
    assert report.table_width(narrow) <= report.MAX_TABLE_PX
    assert "<th>column 0</th>" in report.table(narrow)  # as it comes
    # a long text cell wraps (it is not counted at full length)
    prose = pd.DataFrame({"note": ["word " * 200]}, index=["a"])
    assert report.table_width(prose) < 400


def test_the_posterior_predictive_check_has_a_panel_per_named_column():
    """Columns in different units pooled into one density compare nothing: the check
    shows the first four columns, each in its panel, labelled with the data's names."""
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame.iloc[:80, :6]  # raw: magnesium near 100
    fit = pgm.Gaussian(6).fit(frame, method="vi", seed=0, progress=False, num_steps=30,
                              num_posterior_samples=50)
    html = report.posterior_diagnostics(fit, "wine")
    names = ", ".join(frame.columns[:4])
    assert f"posterior predictive check of wine vi (columns {names})" in html


def test_a_vi_posterior_is_summarized_without_chain_diagnostics(caplog):
    """vi's draws are independent draws of the guide, one "chain": R-hat and ESS do not
    apply, so the summary has the statistics alone, and ArviZ is not asked for an R-hat
    of one chain (it logged "Shape validation failed" into the user's terminal)."""
    import logging

    x, _ = pgm.datasets.correlated_gaussian(60, dim=2, seed=0)
    fit = pgm.Gaussian(2).fit(x, method="vi", seed=0, progress=False, num_steps=30,
                              num_posterior_samples=50)
    with caplog.at_level(logging.WARNING, logger="arviz"):
        html = report.posterior_diagnostics(fit, "toy")
    assert "R-hat and ESS, which diagnose a Markov chain, do not apply" in html
    assert "r_hat" not in html and "ess_bulk" not in html and "mean" in html
    assert not [r for r in caplog.records if r.name.startswith("arviz")], caplog.text
    chains = pgm.Gaussian(2).fit(x, method="nuts", seed=0, progress=False, num_chains=2,
                                 num_samples=30, warmup_steps=30)
    assert "r_hat" in report.posterior_diagnostics(chains, "toy")


def test_report_refuses_a_folder_it_did_not_write_and_rewrites_its_own(tmp_path):
    """``report RUN --out DIR`` wrote its index.html over the user's own page: an ``--out``
    that is not empty and holds no report's marker is refused before any fit is loaded
    (the missing run below would be the error otherwise), in one ``error:`` line from the
    command; a report's own directory is written again."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("<html>my precious page</html>")
    (mine / "figure.png").write_bytes(b"\x89PNG")
    refused = (r"^Refusing to write the report to .*mine'?: the directory is not empty "
               r"\(figure\.png, index\.html\) and is not one pyro-genmodels wrote a report "
               r"or demo to \(expected an empty directory, or one holding the marker file "
               r"\.pyro-genmodels-report, which versions before 2026-12 did not write\), "
               r"and the report would overwrite its files\. "
               r"Choose another output directory \(--out\), or empty this one$")
    with pytest.raises(ValueError, match=refused):
        report.from_runs([tmp_path / "missing-run"], mine)
    x, _ = pgm.datasets.correlated_gaussian(40, dim=2, seed=0)
    pgm.Gaussian(2).fit(x, method="map", num_steps=20, progress=False).save(tmp_path / "run")
    with pytest.raises(SystemExit, match=r"^error: Refusing to write the report to .*mine"):
        cli.main(["report", str(tmp_path / "run"), "--out", str(mine)])
    assert (mine / "index.html").read_text() == "<html>my precious page</html>"
    assert sorted(p.name for p in mine.iterdir()) == ["figure.png", "index.html"]
    # a file of the marker's name that pyro-genmodels did not write is no marker
    (mine / report.MARKER).write_text("not ours")
    with pytest.raises(ValueError, match="Refusing to write the report"):
        report.from_runs([tmp_path / "run"], mine)
    with pytest.raises(ValueError, match=r"^Cannot write the report to .*index\.html'?: it "
                                         r"exists and is not a directory"):
        report.from_runs([tmp_path / "run"], mine / "index.html")
    assert (mine / "index.html").read_text() == "<html>my precious page</html>"
    # the report's own directory, written again (with a note the user added kept)
    out = tmp_path / "rep"
    report.from_runs([tmp_path / "run"], out)
    (out / "notes.txt").write_text("mine")
    assert "<h2>Gaussian</h2>" in report.from_runs([tmp_path / "run"], out).read_text()
    assert sorted(p.name for p in out.iterdir()) == [report.MARKER, "index.html", "notes.txt"]
    assert (out / report.MARKER).read_text().startswith(report.MARKER_TEXT)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report.from_runs([tmp_path / "run"], empty) == empty / "index.html"


def test_the_summary_of_a_symmetric_matrix_is_its_lower_triangle():
    """A Gaussian(13)'s covariance matrix was summarized in 169 rows, both halves of a
    symmetric matrix: the tables show its 91 distinct entries (i >= j), named as ArviZ
    names them, for ``vi`` as for NUTS; a matrix that is not symmetric keeps every
    entry."""
    import numpy as np
    import xarray as xr

    x, _ = pgm.datasets.correlated_gaussian(60, dim=13, seed=0)
    fit = pgm.Gaussian(13).fit(x, method="vi", seed=0, progress=False, num_steps=20,
                               num_posterior_samples=60)
    html = report.posterior_diagnostics(fit, "g13")
    rows = re.findall(r"<th class='text'>covariance_matrix\[(\d+), (\d+)\]</th>", html)
    assert len(rows) == 13 * 14 // 2 and all(int(i) >= int(j) for i, j in rows), len(rows)
    assert "covariance_matrix[12, 0]" in html and "covariance_matrix[0, 12]" not in html
    assert "Symmetric matrices (covariance_matrix): the lower triangle" in html
    small, _ = pgm.datasets.correlated_gaussian(40, dim=2, seed=0)
    chains = pgm.Gaussian(2).fit(small, method="nuts", seed=0, progress=False,
                                 num_chains=2, num_samples=30, warmup_steps=30)
    html = report.posterior_diagnostics(chains, "toy")
    assert "r_hat" in html and "covariance_matrix[1, 0]" in html
    assert "covariance_matrix[0, 1]" not in html
    # the rule itself: symmetric draws (with named coordinates and a leading dimension)
    # lose their upper half, labelled by the coordinates; others are kept whole
    draws = np.random.default_rng(0).normal(size=(1, 5, 2, 3, 3))
    sym = draws + np.swapaxes(draws, -1, -2)
    coords = {"k": [0, 1], "row": list("abc"), "col": list("abc")}
    post = xr.Dataset({"cov": (("chain", "draw", "k", "row", "col"), sym),
                       "w": (("chain", "draw", "k", "row", "col"), draws)}, coords=coords)
    cut = report.lower_triangles(post)
    assert cut["cov"].shape == (1, 5, 2, 6) and cut["w"].shape == (1, 5, 2, 3, 3)
    assert list(cut["cov"]["row, col"].values) == ["a, a", "b, a", "b, b", "c, a", "c, b",
                                                   "c, c"]
    assert float(cut["cov"].sel(k=1)[0, 2, 3]) == sym[0, 2, 1, 2, 0]  # "c, a"


def test_a_posterior_of_fewer_than_50_draws_gets_its_predictive_check():
    """The posterior predictive check drew 50 replicas whatever the fit held: a ``vi``
    fit of 20 draws was a TypeError from ArviZ (and ``report`` an ``error:`` line); it
    draws them all."""
    x, _ = pgm.datasets.correlated_gaussian(40, dim=2, seed=0)
    fit = pgm.Gaussian(2).fit(x, method="vi", seed=0, progress=False, num_steps=20,
                              num_posterior_samples=20)
    assert "posterior predictive check of few vi" in report.posterior_diagnostics(fit, "few")


def test_the_pareto_k_warning_names_the_fit_in_one_sentence():
    """ArviZ's LOO warning names no fit and runs to four sentences; the report's says
    which section and method it is about, at the caller's line."""
    x, _ = pgm.datasets.correlated_gaussian(8, dim=3, seed=0)
    post = pgm.Gaussian(3).fit(x, method="nuts", num_samples=100, warmup_steps=100,
                               num_chains=1, seed=0, progress=False)
    with pytest.warns(UserWarning) as caught:
        report.posterior_diagnostics(post, "tiny")
    said = [str(w.message) for w in caught if "(ArviZ)" in str(w.message)]
    assert said == ["tiny nuts: Estimated shape parameter of Pareto distribution is greater "
                    "than 0.50 for one or more samples (ArviZ)"]
    assert not [w for w in caught if "You should consider" in str(w.message)]


def test_a_page_that_fails_to_be_written_leaves_the_one_that_was_there(tmp_path):
    """The report's and the demo's index.html were written in place: an error or a Ctrl-C
    while writing left half a page. Now a temporary file is renamed over it, in UTF-8
    (the page's charset; the locale's encoding refused a non-ASCII name under C)."""
    from pyro_genmodels.report import write_page

    index = tmp_path / "index.html"
    index.write_text("<p>the last report</p>")
    with pytest.raises(UnicodeEncodeError):
        write_page(index, "<p>" + "x" * 100_000 + "\ud800</p>")  # unencodable at the end
    assert index.read_text() == "<p>the last report</p>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]
    assert write_page(index, "<p>Ω</p>") == index
    assert index.read_bytes() == "<p>Ω</p>".encode("utf-8")


def test_a_one_chain_posterior_says_r_hat_is_blank_and_arviz_logs_nothing(tmp_path, capfd):
    """az.summary of one chain logged ArviZ's "Shape validation failed" to stderr (R-hat
    compares chains); the page says why R-hat is blank instead."""
    import arviz as az

    getattr(az, "_log").cache.clear()  # ArviZ says a message once per process
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    pgm.Gaussian(2).fit(x, method="nuts", num_samples=30, warmup_steps=30, num_chains=1,
                        seed=0, progress=False).save(tmp_path / "n")
    page = report.from_runs([tmp_path / "n"], tmp_path / "r").read_text()
    assert "R-hat compares chains: this fit ran one, so it is blank." in page
    assert "Shape validation failed" not in capfd.readouterr().err
