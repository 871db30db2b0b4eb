"""A page gradlab wrote, loaded in headless Chromium: which images decode, how wide and how tall it lays out.

``measure(page, tmp_path)`` copies the page beside itself with a probe script, loads it at 1400 x 900 CSS px and
reads back what the script wrote into the title. The caller skips (fails, in CI) where Chromium is absent:
``need_chromium`` from optional.py."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from optional import need_chromium

PROBE = """<script>
// Synchronous on window.load (img.decode() promises resolve off the main thread, after --dump-dom
// may already have run): an image counts when it loaded, has a size, and drawing it onto a canvas
// (which decodes it) gives at least one non-transparent pixel.
function drawn(img) {
  var c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  var ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  var px = ctx.getImageData(0, 0, c.width, c.height).data;
  for (var k = 3; k < px.length; k += 4) { if (px[k] > 0) return true; }
  return false;
}
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var good = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && drawn(i); });
  var root = document.documentElement;
  var wide = [];  // elements whose right edge passes the viewport's (what makes a sideways scroll)
  Array.prototype.forEach.call(document.querySelectorAll("body *"), function (e) {
    var r = e.getBoundingClientRect();
    if (r.right > window.innerWidth + 1 && wide.length < 10) wide.push(e.tagName + " " + Math.round(r.right));
  });
  var facts = {images: imgs.length, decoded: good.length, scroll_width: root.scrollWidth,
               viewport_width: window.innerWidth, height: root.scrollHeight, too_wide: wide};
  document.title = "PROBE " + JSON.stringify(facts);
});
</script>
"""


def measure(page: Path, tmp_path: Path, width: int = 1400, height: int = 900) -> dict:
    """{images, decoded, scroll_width, viewport_width, height, too_wide} of ``page`` laid out ``width`` px wide."""
    browser = need_chromium()
    probe = page.with_name(f".probe-{page.name}")  # beside the page: relative links resolve as they would
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                               "--hide-scrollbars", f"--window-size={width},{height}",
                               f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom",
                               "--virtual-time-budget=10000", probe.as_uri()],
                              capture_output=True, text=True, timeout=90)
    finally:
        probe.unlink(missing_ok=True)
    found = re.search(r"<title>PROBE (.*?)</title>", done.stdout, re.S)
    assert found, f"no PROBE title in the dumped DOM (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def assert_readable(page: Path, tmp_path: Path, max_height: int | None = None, width: int = 1400) -> dict:
    """Every image decodes, nothing is wider than the window, and (if given) the page is under ``max_height``."""
    facts = measure(page, tmp_path, width)
    assert facts["images"] > 0 and facts["decoded"] == facts["images"], facts
    assert facts["scroll_width"] <= facts["viewport_width"], f"{page.name} scrolls sideways: {facts}"
    if max_height is not None:
        assert facts["height"] < max_height, f"{page.name} is {facts['height']} px tall (limit {max_height})"
    return facts
