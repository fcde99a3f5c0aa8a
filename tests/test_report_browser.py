"""The HTML report in a real browser: Debian's chromium, headless, started by the test.

Install chromium with ``scripts/install-test-deps.sh`` (``make test`` does). The page's
own script writes how many pictures failed to load into ``#image-check``; the DOM that
chromium dumps after loading the page is read here.
"""

import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from cellpipe.db import open_database
from cellpipe.db.report_queries import report_data
from cellpipe.report import write_report
from test_report import build_results

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium(tmp_path, *arguments):
    """Run headless chromium with its own profile folder; return its stdout."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed: run scripts/install-test-deps.sh (as root)", pytrace=False)
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    completed = subprocess.run(
        [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def image_check(tmp_path, index):
    """Return (pictures, broken pictures) as counted by the page in chromium."""
    dom = chromium(tmp_path, "--dump-dom", "--virtual-time-budget=5000", index.as_uri())
    tag = re.search(r'<p id="image-check"[^>]*>', dom)
    assert tag, "the page's image check did not run"
    images = re.search(r'data-images="(\d+)"', tag.group(0))
    broken = re.search(r'data-broken="(\d+)"', tag.group(0))
    assert images and broken, f"the page's image check did not finish: {tag.group(0)}"
    return int(images.group(1)), int(broken.group(1))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    results = build_results(tmp_path_factory.mktemp("results"))
    engine = open_database(results.url)
    data = report_data(engine)
    engine.dispose()
    return write_report(tmp_path_factory.mktemp("report"), data)


def test_report_opens_in_chromium_with_every_picture_loaded(report, tmp_path):
    pictures, broken = image_check(tmp_path, report)
    assert pictures == 6  # 4 plots and 2 overlays
    assert broken == 0


def test_screenshot_of_the_report_shows_a_page_with_pictures(report, tmp_path):
    screenshot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1200,2000", report.as_uri())
    shutil.copy(screenshot, report.parent / "screenshot.png")  # to look at after a run
    pixels = np.asarray(Image.open(screenshot).convert("RGB"))
    assert pixels.shape == (2000, 1200, 3)
    assert pixels.std() > 20  # not blank
    colours = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1].astype(np.int32) << 8) | pixels[..., 2]
    assert len(np.unique(colours)) > 200  # plots and photos, not just text


def test_the_check_counts_a_broken_picture_link(report, tmp_path):
    broken_copy = tmp_path / "broken"
    shutil.copytree(report.parent, broken_copy)
    page = (broken_copy / "index.html").read_text(encoding="utf-8")
    (broken_copy / "index.html").write_text(page.replace('src="images/area.png"', 'src="images/gone.png"', 1),
                                            encoding="utf-8")
    assert image_check(tmp_path, broken_copy / "index.html") == (6, 1)
