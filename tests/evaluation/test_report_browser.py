"""report.html in a real browser: headless Chromium renders every plot and logs no error.

Skipped when no Chromium is installed (Debian/Ubuntu: ``make browser-deps``). No WebDriver: the
test loads a copy of the report with a small probe script prepended to ``<head>`` that records
``console.error`` calls and failed resource loads, then writes every image's rendered size into
the DOM on ``load``; ``--dump-dom`` prints the result. The report itself contains no script
(checked in test_eval_runner), so the probe is the only JavaScript on the page.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-dev-shm-usage"]
PROBE = """<script>
(function () {
  var errors = [];
  var original = console.error;
  console.error = function () {
    errors.push(Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
  window.addEventListener("error", function (e) {
    var t = e.target;
    errors.push(t && t !== window ? "failed to load " + (t.currentSrc || t.src || t.href || t.tagName).slice(0, 80)
                                  : String(e.message));
  }, true);
  window.addEventListener("unhandledrejection", function (e) { errors.push("unhandled rejection: " + e.reason); });
  window.addEventListener("load", function () {
    var images = Array.prototype.map.call(document.images, function (img) {
      return {alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
              shown: img.getBoundingClientRect().width};
    });
    var out = document.createElement("pre");
    out.id = "probe-result";
    out.textContent = JSON.stringify({images: images, errors: errors});
    document.body.appendChild(out);
  });
})();
</script>"""
RESULT = re.compile(r'<pre id="probe-result">(.*?)</pre>', re.S)


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    pytest.skip("headless Chromium is not installed (Debian/Ubuntu: `make browser-deps`, i.e. "
                "apt-get install chromium chromium-driver)")


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """One headless run with a fresh profile folder (no state shared between runs or with a user)."""
    result = subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f"chromium failed ({result.returncode}):\n{result.stderr[-3000:]}"
    return result


def probe(binary: str, page: Path, tmp_path: Path) -> dict:
    """Load ``page`` with the probe and return ``{images: [...], errors: [...]}``."""
    probed = tmp_path / f"probed-{page.name}"
    html = page.read_text()
    head = html.index("<head>") + len("<head>")
    probed.write_text(html[:head] + PROBE + html[head:])
    result = run_chromium(binary, tmp_path / f"profile-{page.stem}", "--virtual-time-budget=10000", "--dump-dom",
                          probed.as_uri())
    found = RESULT.search(result.stdout)
    assert found, f"the probe did not run; chromium said:\n{result.stderr[-3000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))


def test_the_probe_catches_broken_images_and_console_errors(chromium, tmp_path):
    """The check below would pass vacuously if the probe saw nothing; here it must see three problems."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><title>x</title></head><body><img alt='missing' src='nope.png'>"
                    "<img alt='bad' src='data:image/png;base64,AAAA'><script>console.error('boom')</script>"
                    "</body></html>")
    status = probe(chromium, page, tmp_path)
    assert [(i["alt"], i["width"]) for i in status["images"]] == [("missing", 0), ("bad", 0)]
    assert "boom" in status["errors"] and sum(e.startswith("failed to load") for e in status["errors"]) == 2


def test_every_plot_renders_without_console_errors(chromium, eval_run, tmp_path):
    report = eval_run.output_dir / "report.html"
    status = probe(chromium, report, tmp_path)
    plots = sorted(name for name in eval_run.files if name.endswith(".png"))
    assert sorted(i["alt"] for i in status["images"]) == plots
    for image in status["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0 and image["shown"] > 0, image
    assert status["errors"] == []


def test_screenshot(chromium, eval_run, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    run_chromium(chromium, tmp_path / "profile-shot", "--window-size=1280,2400", "--hide-scrollbars",
                 f"--screenshot={shot}", (eval_run.output_dir / "report.html").as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2400)
    # Not a blank page: the alert box (red), plots and tables give many colours.
    colours = image.resize((320, 600)).getcolors(maxcolors=1_000_000)
    assert len(colours) > 50
    assert any(r > 180 and g < 120 and b < 120 for _, (r, g, b) in colours)  # the red alert styling
