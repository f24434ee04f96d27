"""Raw data files at the command line: every file that cannot be read is one
``error: ...`` line naming the file, the line and column (1-based, as an editor numbers
them; the header's name too), what was found and what was expected, and nothing is
written. The files that can be read give the numbers in them, every row kept."""

import subprocess
import sys

import numpy as np
import pytest

from pyro_genmodels import _cli_files, cli


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative names: the messages are the user's own paths


def _file(name, content):
    with open(name, "wb") as f:
        f.write(content.encode() if isinstance(content, str) else content)
    return name


def _fit_error(name, content=None, model="gaussian"):
    """The one line ``fit`` stops with; no run directory is left."""
    if content is not None:
        _file(name, content)
    extra = ["--arg", "order=2"] if model == "ngram" else []
    with pytest.raises(SystemExit) as e:
        cli.main(["fit", model, "--data", name, "--method", "mle", "--out", "run",
                  "--quiet"] + extra)
    msg = e.value.code
    assert isinstance(msg, str) and msg.startswith("error: ") and "\n" not in msg, msg
    from pathlib import Path

    assert not Path("run").exists()
    return msg


# ------------------------------------------------------------------------- .csv cells
def test_a_text_cell_in_a_later_row_of_a_headerless_csv_names_line_and_column():
    # it used to be re-read as if the first row were a header, and that row dropped
    assert _fit_error("x.csv", "1,2,3\n4,5,6\n7,oops,9\n") == \
        "error: x.csv, line 3, column 2: found 'oops', expected a number"


def test_a_first_line_with_numbers_and_text_is_an_error_not_a_header():
    assert _fit_error("x.csv", "1,x,3\n4,5,6\n") == (
        "error: x.csv, line 1, column 2: found 'x', expected a number (line 1 is the first "
        "line; it holds numbers too, so it is not a header)")
    assert _fit_error("y.csv", "1,,3\n4,5,6\n").startswith(
        "error: y.csv, line 1, column 2: found an empty cell, expected a number (line 1")


def test_a_header_that_repeats_a_name_is_refused_as_python_refuses_it():
    """The columns are known by name (a held-out file is matched to them): a repeated
    name was saved and then refused when the fit scored a file like its own."""
    assert _fit_error("x.csv", "a,b,a,b,c\n1,2,3,4,5\n") == (
        "error: x.csv, line 1: the header repeats a column name ('a' in columns 1, 3; 'b' "
        "in columns 2, 4); expected distinct names: rename them")
    assert _fit_error("y.csv", "a,,\n1,2,3\n") == (
        "error: y.csv, line 1: the header repeats a column name (columns 2, 3 have no name); "
        "expected distinct names: rename them")


def test_a_text_cell_after_a_header_names_the_column_by_number_and_name():
    assert _fit_error("x.csv", "a,b,c\n1,2,3\n4,5,six\n") == \
        "error: x.csv, line 3, column 3 (c): found 'six', expected a number"


def test_an_empty_cell_is_an_error():
    assert _fit_error("x.csv", "1,2,3\n1,,3\n") == \
        "error: x.csv, line 2, column 2: found an empty cell, expected a number"


def test_nan_and_inf_are_read_then_refused_at_their_cell():
    assert _fit_error("x.csv", "a,b\n1,2\n3,nan\n") == \
        "error: x.csv, line 3, column 2 (b): found 'nan', expected a finite number"
    assert _fit_error("y.csv", "1,2\n-inf,2\n") == \
        "error: y.csv, line 2, column 1: found '-inf', expected a finite number"
    x = np.ones((3, 2))
    x[1, 1] = np.nan
    np.save("x.npy", x)  # an array has no lines: its row and column, and its index
    assert _fit_error("x.npy") == ("error: x.npy, row 2, column 2 (index [1, 1]): found "
                                   "nan, expected a finite number (1 non-finite value(s) "
                                   "in all)")


# ---------------------------------------------------------------------- .csv shapes
def test_a_ragged_row_names_its_line_and_the_expected_count():
    assert _fit_error("x.csv", "a,b,c\n1,2,3\n4,5\n") == \
        "error: x.csv, line 3: found 2 values, expected 3 (as many as the header, line 1)"
    assert _fit_error("y.csv", "\n1,2,3\n4,5,6,7\n") == \
        "error: y.csv, line 3: found 4 values, expected 3 (as many as the first row, line 2)"
    assert _fit_error("z.csv", "a,b\n1,2\n3\n") == \
        "error: z.csv, line 3: found 1 value, expected 2 (as many as the header, line 1)"


def test_an_empty_file_and_a_header_only_file():
    expected = "expected rows of comma-separated numbers"
    assert _fit_error("x.csv", "") == f"error: x.csv: the file is empty, {expected}"
    assert _fit_error("y.csv", "\n  \n# a comment\n") == f"error: y.csv: the file is empty, {expected}"
    assert _fit_error("z.csv", "a,b,c\n\n") == ("error: z.csv: found a header (line 1) and no "
                                                "rows of numbers, expected comma-separated "
                                                "numbers below it")


@pytest.mark.parametrize("content, found, sep", [
    ("a;b;c\n1;2;3\n", "'a;b;c'", "semicolons"),
    ("1;2;3\n4;5;6\n", "'1;2;3'", "semicolons"),
    ("a\tb\n1\t2\n", "'a\\tb'", "tabs"),
    ("1.0 2.0\n3.0 4.0\n", "'1.0 2.0'", "spaces"),  # np.savetxt without delimiter=","
])
def test_other_separators_are_refused_with_a_hint(content, found, sep):
    assert _fit_error("x.csv", content) == (
        f"error: x.csv, line 1: found {found}, values separated by {sep}, expected commas "
        f"(a .csv data file is comma-separated)")


def test_a_later_cell_with_a_semicolon_gets_the_hint_too():
    assert _fit_error("x.csv", "a,b\n1,2\n3;4,5\n") == (
        "error: x.csv, line 3, column 1 (a): found '3;4', expected a number (the values "
        "look separated by semicolons: a .csv data file separates them with commas)")


def test_what_a_csv_may_look_like():
    """Quotes, padding, a byte-order mark, Windows line ends, blank and comment lines,
    a single column: the numbers in the file, every row of them."""
    want = np.array([[1.5, 2.0], [3.0, 4.0], [-5e-3, 6.0]])
    files = {"quoted.csv": '"a","b"\n"1.5", "2"\n 3 , 4 \n-5e-3,6\n\n\n',
             "crlf.csv": "a,b\r\n1.5,2\r\n3,4\r\n-0.005,6\r\n",
             "bom.csv": "\ufeffa,b\n1.5,2\n3,4\n-0.005,6",
             "comments.csv": "# written by hand\n1.5,2\n\n3,4\n   \n-0.005,6\n",
             "spaced.csv": "  a , b\n1.5,   2\n3   ,4\n-0.005,6\n"}
    for name, content in files.items():
        assert np.array_equal(_cli_files.read_table(_file(name, content))[0], want), name
    one = _cli_files.read_table(_file("one.csv", "value\n1\n2\n3\n"))[0]
    assert one.shape == (3, 1) and one[:, 0].tolist() == [1, 2, 3]


def test_a_quote_not_closed_before_its_comma_is_refused_at_its_line():
    """Python's csv joined '"3"5' into 35 and let an unclosed quote take the rest of the
    file into one cell (then said "a header and no rows"); spaces after a closing quote
    are still padding."""
    assert _fit_error("x.csv", 'a,b\n1,2\n"3"5,4\n2,7\n5,1\n') == \
        "error: x.csv, line 3: found '\"3\"5,4': text after a closing quote; expected a " \
        "comma after a quoted cell"
    assert _fit_error("x.csv", '"a,b\n1,2\n3,4\n2,7\n5,1\n') == \
        "error: x.csv, line 1: a quote opened here is never closed; expected each quoted " \
        "cell to end with a quote"
    assert _fit_error("x.csv", 'a,b\n1,2\n3,"4\n2,7\n') == \
        "error: x.csv, line 3: a quote opened here is never closed; expected each quoted " \
        "cell to end with a quote"
    # other csv errors are said as they are, not as a quote (a cell over its size limit)
    assert _fit_error("x.csv", " ".join(map(str, range(40000))) + "\n") == \
        "error: x.csv, line 1: field larger than field limit (131072) (Python's csv module)"
    got, names = _cli_files.read_table(_file("p.csv", '"a" ,"b"\n"1.5" ,2\n"3"  , "4" \n'))
    assert names == ["a", "b"] and got.tolist() == [[1.5, 2.0], [3.0, 4.0]]


def test_a_csv_with_a_header_fits_on_all_its_rows(capsys):
    rows = np.random.default_rng(0).normal(size=(30, 3))
    text = "x,y,z\r\n" + "".join(",".join(f"{v:.6f}" for v in r) + "\r\n" for r in rows)
    _file("x.csv", text)
    assert cli.main(["fit", "gaussian", "--data", "x.csv", "--method", "mle", "--out",
                     "run", "--quiet"]) == 0
    from pyro_genmodels.io import load

    fit = load("run")
    assert fit.model.dim == 3 and fit.data.shape == (30, 3)


# ------------------------------------------------------------------------------ files
def test_a_missing_file_a_directory_and_a_wrong_suffix():
    assert _fit_error("missing.csv") == "error: missing.csv: no such data file"
    import os

    os.mkdir("data.csv")
    assert _fit_error("data.csv") == "error: data.csv: found a directory, expected a data file"
    assert _fit_error("x.txt", "1,2\n") == ("error: x.txt: found a .txt file, expected a .csv "
                                            "or .npy data file (.txt is for the text models)")


def test_a_binary_or_not_utf8_csv_names_the_byte():
    assert _fit_error("x.csv", bytes(range(256))) == (
        "error: x.csv, line 1, column 1: found a NUL byte, expected text (is it a binary "
        "file? NumPy arrays go in .npy)")
    assert _fit_error("y.csv", "a,café\n1,2\n".encode("latin-1")) == (
        "error: y.csv, line 1, column 2: found the byte 0xe9, which is not UTF-8, expected "
        "UTF-8 text (save the file as UTF-8)")


# ------------------------------------------------------------------------------- .npy
def test_an_npy_of_objects_or_text_is_refused():
    np.save("obj.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    assert _fit_error("obj.npy") == ("error: obj.npy: found an array of dtype object (Python "
                                     "objects), expected numbers (bool, int or float)")
    np.save("str.npy", np.array([["1", "2"]]))
    assert _fit_error("str.npy") == ("error: str.npy: found an array of dtype <U1 (text), "
                                     "expected numbers (bool, int or float)")


def test_npy_shapes_one_dimension_is_one_column():
    np.save("cube.npy", np.ones((2, 3, 4)))
    assert _fit_error("cube.npy") == ("error: cube.npy: found an array of shape (2, 3, 4), "
                                      "expected a 2-D (N, D) array (or 1-D, read as one "
                                      "column)")
    np.save("scalar.npy", np.float64(3))
    assert "found an array of shape ()" in _fit_error("scalar.npy")
    np.save("empty.npy", np.ones((0, 3)))
    assert _fit_error("empty.npy") == ("error: empty.npy: found an array of shape (0, 3), "
                                       "expected at least one row and one column")
    np.save("line.npy", np.arange(5.0))
    x = _cli_files.read_table("line.npy")[0]
    assert x.shape == (5, 1) and x.flags.writeable


def test_a_file_that_is_not_an_npy_or_is_cut_short():
    assert _fit_error("x.npy", "1,2\n3,4\n") == ("error: x.npy: found no NumPy array header, "
                                                 "expected a .npy file (written by np.save)")
    np.save("whole.npy", np.arange(5.0))
    _file("cut.npy", open("whole.npy", "rb").read()[:-8])
    assert _fit_error("cut.npy") == ("error: cut.npy: found 32 bytes of data, expected 40 (an "
                                     "array of shape (5,) and dtype float64): the file is "
                                     "cut short")


# ------------------------------------------------------------------------------- .txt
def test_text_model_files():
    assert _fit_error("names.txt", "", model="ngram") == \
        "error: names.txt: the file is empty, expected one string per line"
    assert _fit_error("bad.txt", b"anna\nbob\n\xff\xfe\n", model="ngram") == (
        "error: bad.txt, line 3: found the byte 0xff, which is not UTF-8, expected UTF-8 "
        "text (save the file as UTF-8)")
    assert _fit_error("gone.txt", model="ngram") == "error: gone.txt: no such data file"
    assert _fit_error("x.csv", "1,2\n", model="ngram") == (
        "error: x.csv: text models read a .txt file (one string per line), got a .csv file")
    _file("ok.txt", "\ufeffanna\r\nbob\r\n\r\neve")  # a mark, Windows ends, a blank line
    assert _cli_files.read_lines("ok.txt") == ["anna", "bob", "", "eve"]


# ----------------------------------------------------------------------------- sample
def test_sample_errors_write_nothing():
    np.savetxt("x.csv", np.random.default_rng(0).normal(size=(20, 2)), delimiter=",")
    assert cli.main(["fit", "gaussian", "--data", "x.csv", "--method", "mle", "--out",
                     "run", "--quiet"]) == 0
    import os

    for args, msg in [(["-n", "0", "--out", "s.csv"],
                       "error: -n must be a positive integer, got 0"),
                      (["-n", "3", "--out", "new/s.txt"],
                       "error: --out must end in .csv or .npy, got 'new/s.txt'")]:
        with pytest.raises(SystemExit) as e:
            cli.main(["sample", "run", *args])
        assert e.value.code == msg
    os.mkdir("d.csv")
    with pytest.raises(SystemExit) as e:
        cli.main(["sample", "run", "-n", "3", "--out", "d.csv"])
    assert e.value.code == "error: cannot write d.csv (Is a directory)"
    assert sorted(os.listdir()) == ["d.csv", "run", "x.csv"]
    assert cli.main(["sample", "run", "-n", "3", "--out", "S.NPY"]) == 0
    assert np.load("S.NPY").shape == (3, 2)  # written to the name given


# ------------------------------------------------------------------------ as a user
def test_a_text_cell_in_the_wine_data_is_one_line_on_stderr(tmp_path):
    """sklearn's wine table saved with its header, a text cell put at data row 57,
    column 4: the command prints one line, exits with status 1 and writes no run."""
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame.drop(columns="target").astype(object)
    frame.iloc[56, 3] = "n/a"
    frame.to_csv("wine.csv", index=False)
    proc = subprocess.run([sys.executable, "-m", "pyro_genmodels", "fit", "gaussian",
                           "--data", "wine.csv", "--method", "map", "--out", "runs/w"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == ("error: wine.csv, line 58, column 4 (alcalinity_of_ash): found "
                           "'n/a', expected a number\n")
    assert not (tmp_path / "runs").exists()


def test_token_ids_are_ascii_digits_only():
    """int() also takes "+2", "1_0" and other scripts' digits; a token-id file holds ids
    as sample writes them, so those are refused by line and position (a negative id is
    an integer, refused against the vocabulary)."""
    from pyro_genmodels import _readers

    for bad in ("1_0", "+2", "\u0663"):
        path = _file("ids.txt", f"1 2\n3 {bad}\n")
        with pytest.raises(_readers.DataFileError, match=r"line 2, id 2: found '.+', expected "
                                                         r"an integer token id"):
            _readers.read_ids(path)
    assert _readers.read_ids(_file("ids.txt", "1 2\n\n-3\n")) == [[1, 2], [], [-3]]
    with pytest.raises(_readers.DataFileError, match=r"line 3, id 1: found the token id -3, "
                                                     r"expected one in \[0, 5\)"):
        _readers.read_ids(_file("ids.txt", "1 2\n\n-3\n"), vocab_size=5)
