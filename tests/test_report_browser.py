"""The demo's page in a real browser: headless Chromium loads it at 1280 px, every image
loads, nothing overflows the page horizontally (nor any table its box), every registered family has a section
with a picture and a table; a full-page screenshot is saved next to the report.

Chromium comes from the system's package manager (``.ci/run`` installs it when absent);
without it the test skips and says so. The page is CI's demo report when
``PGM_DEMO_OUT`` names it, else a quick demo run here (minutes: ``slow``)."""

import json
import shutil
import subprocess

import pytest

import pyro_genmodels as pgm

from .report_checks import demo_report

CHECK = """
<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const r = {innerWidth: window.innerWidth,
             scrollWidth: document.documentElement.scrollWidth,
             height: document.documentElement.scrollHeight, images: imgs.length,
             broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
             wide: [...document.querySelectorAll('table')]
               .filter(t => t.scrollWidth > t.clientWidth + 1)
               .map(t => ((t.closest('section') || document.body).querySelector('h2') || {})
                 .textContent + ': ' + t.rows[0].textContent.slice(0, 80)),
             sections: [...document.querySelectorAll('section')].map(s => ({
               title: (s.querySelector('h2') || {}).textContent || '',
               images: s.querySelectorAll('img').length,
               tables: s.querySelectorAll('table').length}))};
  const pre = document.createElement('pre');
  pre.id = 'pgm-check';
  pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
</script>
"""


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(browser, *args, timeout=120):
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_demo_page_in_headless_chromium(tmp_path):
    browser = _chromium()
    if browser is None:  # the rule: skip, saying why, only where none can be had
        pytest.skip("no Chromium on this machine: install it with the system's package "
                    "manager (apt-get install chromium), as .ci/run does")
    out = demo_report(tmp_path)
    index = out / "index.html"
    probe = tmp_path / "probe.html"  # the page with the measuring script appended
    probe.write_text(index.read_text().replace("</body>", CHECK + "</body>"))
    proc = _run(browser, "--window-size=1280,900", "--virtual-time-budget=10000",
                "--dump-dom", probe.as_uri())
    start = proc.stdout.find('<pre id="pgm-check">')
    assert start >= 0, f"Chromium gave no result:\n{proc.stderr[-2000:]}"
    text = proc.stdout[start + len('<pre id="pgm-check">'):]
    result = json.loads(text[:text.index("</pre>")].replace("&quot;", '"')
                        .replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert result["innerWidth"] == 1280
    assert result["images"] > 10 and not result["broken"], result["broken"]
    assert result["scrollWidth"] <= result["innerWidth"], \
        f"the page scrolls sideways: {result['scrollWidth']} px wide at 1280"
    assert not result["wide"], f"tables that scroll sideways in their box: {result['wide']}"
    for cls in pgm.registry().values():
        sections = [s for s in result["sections"] if cls.__name__ in s["title"]]
        assert sections, f"no section for {cls.__name__}"
        assert any(s["images"] and s["tables"] for s in sections), (cls.__name__, sections)
    shot = out / "screenshot.png"
    proc = _run(browser, f"--window-size=1280,{min(int(result['height']), 16000)}",
                f"--screenshot={shot}", index.as_uri())
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", proc.stderr[-2000:]
