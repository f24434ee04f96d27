"""The documentation site: built with warnings as errors, every internal link resolves,
and the generated tables say what the code says.

The build (about 20 s) runs once per session, in ``slow`` (CI runs it with -m slow);
``test_every_option_is_documented`` is the fast guard of the options tables.
"""

import dataclasses
import html.parser
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import pyro_genmodels as pgm

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
from pgm_tables import attribute_docs  # noqa: E402


def _records():
    """Every options record a registered family's methods use."""
    found = {}
    for cls in pgm.registry().values():
        for method in cls.capabilities.methods:
            record = type(cls.engine(method).options(method))
            found[record.__name__] = record
    return found


@pytest.mark.parametrize("name", sorted(_records()))
def test_every_option_is_documented(name):
    """The options tables take each field's meaning from its record's ``Attributes:``
    docstring; a field without one would be a blank cell (and a build error)."""
    record = _records()[name]
    meaning = attribute_docs(record)
    missing = [f.name for f in dataclasses.fields(record) if not meaning.get(f.name)]
    assert not missing, f"{name} documents no meaning for {missing}"


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.hrefs = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-E", "-q",
         "-b", "html", str(DOCS), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"the site build failed:\n{proc.stderr[-6000:]}"
    pages = {}
    for page in out.rglob("*.html"):
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8"))
        pages[page.resolve()] = parser
    return out, pages


@pytest.mark.slow
def test_site_builds_and_every_internal_link_resolves(site):
    out, pages = site
    assert (out / "index.html").is_file()
    for name in ("guide", "concepts", "capabilities", "options", "architecture", "api",
                 "reference/families", "reference/infer"):
        assert (out / f"{name}.html").is_file(), name
    broken = []
    for page, parser in pages.items():
        for href in parser.hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith("mailto:"):
                continue  # external: not ours to check offline
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(out)}: {href} (no file)")
            elif parts.fragment and target.suffix == ".html":
                if target not in pages or unquote(parts.fragment) not in pages[target].ids:
                    broken.append(f"{page.relative_to(out)}: {href} (no anchor)")
    assert not broken, "\n".join(broken[:40])


@pytest.mark.slow
def test_generated_tables_say_what_the_code_says(site):
    out, pages = site
    caps = (out / "capabilities.html").read_text(encoding="utf-8")
    for cls in pgm.registry().values():
        assert f"({cls.registry_name})" in caps.replace("<span class=\"pre\">", "") \
            .replace("</span>", "").replace("<code class=\"docutils literal notranslate\">", "") \
            .replace("</code>", ""), cls.__name__
    options = (out / "options.html").read_text(encoding="utf-8")
    for name, record in _records().items():
        assert f'id="{name.lower()}"' in options, name
        for field in dataclasses.fields(record):
            assert f">{field.name}<" in options, (name, field.name)
    # every public name of the package is in the API reference
    ids = set().union(*(p.ids for p in pages.values()))
    for name in pgm.__all__:
        obj = getattr(pgm, name)
        if isinstance(obj, type) or callable(obj):
            full = f"{obj.__module__}.{obj.__qualname__}"
            assert full in ids or f"pyro_genmodels.{name}" in ids, full  # or as pgm.name
