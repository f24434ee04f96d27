"""What every report page must be, checked with the standard library's HTML parser:
the navigation links resolve, every image has alt text and is an inline PNG that
decodes, nothing is fetched from the network, and each section has its pictures and
tables. Shared by the demo's and ``pyro-genmodels report``'s tests."""

import base64
import html.parser
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List


class ReportPage(html.parser.HTMLParser):
    """The parts of a report page the checks read."""

    def __init__(self, text: str):
        super().__init__()
        self.ids: set = set()
        self.nav: List[str] = []
        self.images: List[Dict[str, str]] = []
        self.external: List[str] = []
        self.sections: Dict[str, Dict[str, object]] = {}
        self._in_nav = False
        self._section = None
        self._in_h2 = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            if value.startswith(("http:", "https:", "//")):
                self.external.append(value)
        if tag in ("script", "link"):
            self.external.append(f"<{tag}>")
        if tag == "nav":
            self._in_nav = True
        elif tag == "a" and self._in_nav:
            self.nav.append(attrs.get("href", ""))
        elif tag == "section":
            self._section = attrs.get("id")
            self.sections[self._section] = {"title": "", "images": 0, "tables": 0}
        elif tag == "h2" and self._section is not None:
            self._in_h2 = True
        elif tag == "img":
            self.images.append(attrs)
            if self._section is not None:
                self.sections[self._section]["images"] += 1
        elif tag == "table" and self._section is not None:
            self.sections[self._section]["tables"] += 1

    def handle_endtag(self, tag):
        if tag == "nav":
            self._in_nav = False
        elif tag == "h2":
            self._in_h2 = False
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._in_h2 and self._section is not None:
            self.sections[self._section]["title"] += data


def check_page(text: str) -> ReportPage:
    """Assert what every report page must be; return the parsed page for more checks."""
    page = ReportPage(text)
    assert not page.external, f"the page fetches from the network: {page.external[:5]}"
    assert page.nav, "no navigation links"
    for href in page.nav:
        assert href.startswith("#") and href[1:] in page.ids, f"nav link {href} has no target"
    for section, parts in page.sections.items():
        assert f"#{section}" in page.nav, f"section {section} is not in the navigation"
        assert parts["images"] or parts["tables"], f"section {section} is empty"
    for img in page.images:
        assert img.get("alt", "").strip(), f"an image without alt text: {str(img)[:120]}"
        src = img.get("src", "")
        assert src.startswith("data:image/png;base64,"), src[:80]
        data = base64.b64decode(src.split(",", 1)[1])
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, "not a PNG picture"
    return page


def demo_report(tmp_path: Path) -> Path:
    """The directory of a quick demo's report: CI's, when ``PGM_DEMO_OUT`` names it
    (``.ci/run``'s main job has just written it), else one made here (minutes)."""
    given = os.environ.get("PGM_DEMO_OUT")
    if given:
        out = Path(given).resolve()
        assert (out / "index.html").is_file(), f"PGM_DEMO_OUT={given} holds no report"
        return out
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "pyro_genmodels.cli", "demo", "--quick",
                           "--out", str(out), "--quiet"], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    return out
