"""``hashkit query --report`` and ``hashkit compare``: the pictures exist, decode, and the HTML page
references only files that exist."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import cv2
import pytest

from .conftest import run_cli
from .test_cli_errors import assert_one_line_error


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
        assert run_cli("encode", tmp / "m.pt", scene_set / "photos", "-o", tmp / "c.h5", "--workers", "0").exit_code == 0
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
