"""``hashkit query --report`` and ``hashkit compare``: the pictures exist, decode, and the HTML page
references only files that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import cv2
import pytest

from .helpers import assert_one_line_error, run_cli


class Images(HTMLParser):
    """The src and class of every <img>, and the number of table rows."""

    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.rows = 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        self.rows += tag == "tr"


@pytest.fixture(scope="module")
def evaluated(scene_set, tmp_path_factory) -> tuple[Path, Path]:
    """Two LSH runs (16 and 32 bits) on the scene photos, queried with --report; their folders."""
    folders = []
    for bits in ("16", "32"):
        tmp = tmp_path_factory.mktemp(f"lsh{bits}")
        assert run_cli("train", "--images", scene_set / "photos", "-o", tmp / "m.pt", "--method", "lsh",
                       "--bits", bits, "--image-size", "64", "--workers", "0").exit_code == 0
        encoded = run_cli("encode", tmp / "m.pt", scene_set / "photos", "-o", tmp / "c.h5", "--workers", "0")
        assert encoded.exit_code == 0
        result = run_cli("query", "--db", tmp / "c.h5", "--queries", tmp / "c.h5", "-k", "5", "-o", tmp / "r.h5",
                         "--ground-truth", scene_set / "truth.csv", "--report", tmp / "report")
        assert result.exit_code == 0, result.output
        assert f"report: {tmp / 'report' / 'index.html'}" in result.stdout
        folders.append(tmp)
    return folders[0], folders[1]


def test_report_page_shows_sample_queries_with_existing_thumbnails(evaluated):
    report = evaluated[0] / "report"
    page = Images()
    page.feed((report / "index.html").read_text(encoding="utf-8"))
    assert page.rows == 1 + 12, "a header and 12 sample queries (of 24)"
    sources = [image["src"] for image in page.images]
    assert "pr_curve.png" in sources and "precision_at_k.png" in sources
    for source in sources:
        assert cv2.imread(str(report / source)) is not None, source
    marks = [image["class"] for image in page.images if image.get("class", "").startswith("t ")]
    assert len(marks) == 12 * 5 and {"t yes", "t no"} >= set(marks), "each result marked relevant or not"
    assert "t yes" in marks


CHROMIUM = shutil.which("chromium")
# What the report page gets on its own window to check itself once loaded: how many images it has,
# how many of them the browser could not decode.
IMAGE_CHECK = ("<script>addEventListener('load', () => {const all = [...document.images]; "
               "document.body.dataset.images = all.length; "
               "document.body.dataset.broken = all.filter(i => !(i.complete && i.naturalWidth > 0)).length;});"
               "</script>")


def chromium(*arguments: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", "--virtual-time-budget=5000"]
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *flags, f"--user-data-dir={profile}", *arguments], capture_output=True,
                              text=True, timeout=120, check=True)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make browser; .ci/run installs it)")
def test_report_page_renders_in_a_browser(evaluated, tmp_path):
    report = evaluated[0] / "report"
    checked = report / "checked.html"  # the page plus the image check, beside it so relative links hold
    checked.write_text((report / "index.html").read_text(encoding="utf-8").replace("</body>", IMAGE_CHECK + "</body>"),
                       encoding="utf-8")
    dom = chromium("--dump-dom", checked.as_uri()).stdout
    images = int(re.search(r'data-images="(\d+)"', dom).group(1))
    assert images == 2 + 12 * 6 and 'data-broken="0"' in dom, "every image (curves, queries, results) decodes"
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1400,3000", (report / "index.html").as_uri())
    pixels = cv2.imread(str(shot))
    frames = {"relevant": (34, 170, 34), "not relevant": (34, 34, 204)}  # BGR of the page's #2a2 and #c22
    for meaning, colour in frames.items():
        assert (pixels == colour).all(axis=2).sum() > 1000, f"{meaning} frames drawn"


def test_compare_prints_a_table_and_plots_every_run(evaluated, tmp_path):
    files = [folder / "metrics.json" for folder in evaluated]
    result = run_cli("compare", *files, "--plot", tmp_path / "curves.png", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["runs"]
    assert [row["bits"] for row in rows] == [16, 32]
    assert rows[0]["mAP"] == json.loads(files[0].read_text())["mAP"]
    for name in ("curves.png", "curves-precision_at_k.png"):
        assert cv2.imread(str(tmp_path / name)) is not None
    text = run_cli("compare", *files).stdout.splitlines()
    assert text[0].split()[:3] == ["run", "method", "bits"] and len(text) == 3


def test_compare_refuses_a_file_that_is_not_metrics(evaluated, tmp_path):
    wrong = tmp_path / "wrong.json"
    wrong.write_text("{}")
    assert_one_line_error(run_cli("compare", evaluated[0] / "metrics.json", wrong), "is not a metrics.json")
