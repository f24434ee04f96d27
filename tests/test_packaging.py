"""The package as a user gets it: ``python -m build`` makes the sdist and, from it, the
wheel; both must carry every module and data file of ``pyro_genmodels/``, the license,
the type marker, the version and the console script.

(CI's install, ``pip install ".[test]"``, is itself a wheel install; ``.ci/run`` checks
that the demo ran from ``site-packages``.)
"""

import email.parser
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import pyro_genmodels as pgm

ROOT = Path(__file__).resolve().parent.parent


def _package_files():
    """Every file of the package in the source tree (bytecode aside), relative to ROOT."""
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "pyro_genmodels").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


@pytest.mark.slow
def test_sdist_and_wheel_carry_the_whole_package(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "build", "--outdir", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    version = pgm.__version__
    (sdist,) = tmp_path.glob("*.tar.gz")
    (wheel,) = tmp_path.glob("*.whl")
    assert sdist.name == f"pyro_genmodels-{version}.tar.gz"
    assert wheel.name == f"pyro_genmodels-{version}-py3-none-any.whl"
    expected = _package_files()
    assert "pyro_genmodels/py.typed" in expected and "pyro_genmodels/data/names.txt" in expected

    prefix = f"pyro_genmodels-{version}/"
    with tarfile.open(sdist) as tar:
        in_sdist = {m.name[len(prefix):] for m in tar.getmembers() if m.isfile()}
    missing = expected - in_sdist
    assert not missing, f"the sdist lacks {sorted(missing)}"
    assert {"LICENSE", "README.md", "pyproject.toml"} <= in_sdist

    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        info = f"pyro_genmodels-{version}.dist-info/"
        meta = email.parser.Parser().parsestr(whl.read(info + "METADATA").decode())
        entry_points = whl.read(info + "entry_points.txt").decode()
    in_wheel = {n for n in names if n.startswith("pyro_genmodels/")}
    assert in_wheel == expected, (sorted(expected - in_wheel), sorted(in_wheel - expected))
    assert info + "licenses/LICENSE" in names
    assert meta["Version"] == version
    assert meta["License-Expression"] == "Apache-2.0"
    assert "pyro-genmodels = pyro_genmodels.cli:main" in entry_points


def test_import_leaves_the_heavy_optional_modules_unloaded():
    """``import pyro_genmodels`` (what every command-line call pays) does not load the
    modules only some calls use: torchdiffeq (it imports ``scipy.integrate``; about 0.8 s
    of a 3.7 s import here) and scipy.optimize load on first use."""
    code = ("import sys, pyro_genmodels; "
            "print(sorted(m for m in ('torchdiffeq', 'scipy.integrate', 'scipy.optimize') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", f"import pyro_genmodels loaded {out}"
