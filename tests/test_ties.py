"""Collapsed codes through ``hashkit query``: collapse diagnostics and the tie warning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hashkit.hashing.storage.store import CodeStoreWriter, StoreMeta, label_cell

from .helpers import run_cli

META = StoreMeta(bits=16, method="lsh", model_digest="a" * 64, backbone="none", hashkit_version="0")
CLASS_SIZE = 5


def collapsed_store(path: Path, classes: int, classes_per_code: int) -> Path:
    """CLASS_SIZE rows per class, grouped by class; every row of ``classes_per_code`` consecutive
    classes has the same code, codes 8 bits apart."""
    label = np.repeat(np.arange(classes), CLASS_SIZE)
    code_of_class = np.array([[0x00, 0x00], [0xFF, 0x00], [0x00, 0xFF], [0xFF, 0xFF]], np.uint8)
    with CodeStoreWriter(path, META) as store:
        store.append(code_of_class[label // classes_per_code], [f"img{row}.png" for row in range(len(label))],
                     [label_cell((f"class{c}",)) for c in label])
    return path


def query_metrics(store: Path, tmp_path: Path, *extra: str):
    """``hashkit query`` of the store in itself at k = 5: its result and metrics.json."""
    result = run_cli("query", "--db", store, "--queries", store, "-k", "5", "-o", tmp_path / "r.h5",
                     "--metrics", tmp_path / "m.json", "--overwrite", *extra)
    assert result.exit_code == 0, result.output
    return result, json.loads((tmp_path / "m.json").read_text())


def test_one_code_per_class_gives_pure_buckets_and_no_warning(tmp_path):
    result, metrics = query_metrics(collapsed_store(tmp_path / "codes.h5", 3, 1), tmp_path)
    assert metrics["collapse"] == {"distinct_codes": 3, "median_nearest_bucket": CLASS_SIZE - 1.0}, "own row left out"
    assert "distinct codes: 3 of 15   median nearest bucket: 4 rows" in result.stdout
    assert metrics["tie_warning"] is None and "warning" not in result.stderr, "every tie order ranks alike"
    assert metrics["tie_aware"] == {"mAP": 1.0, "mAP@5": 1.0, "precision@5": 0.8} and metrics["mAP@5"] == 1.0


def test_two_classes_per_code_warn_that_row_order_moves_the_metrics(tmp_path):
    store = collapsed_store(tmp_path / "codes.h5", 4, 2)
    result, metrics = query_metrics(store, tmp_path)
    assert metrics["collapse"] == {"distinct_codes": 2, "median_nearest_bucket": 2 * CLASS_SIZE - 1.0}
    # each query's nearest bucket: its 4 same-class rows and 5 of the other class; row order puts
    # class 0 (2) first, so its queries take 4 hits in the top 5 and class 1 (3) queries none
    assert metrics["precision@5"] == pytest.approx((4 / 5 + 0) / 2)
    assert metrics["tie_aware"]["precision@5"] == pytest.approx(4 / 9, abs=1e-6)
    assert metrics["mAP@5"] == pytest.approx(0.5)
    warning = metrics["tie_warning"]
    assert "precision@5 0.4000 vs tie-aware 0.4444 (-0.0444)" in warning and "mAP@5 0.5000" in warning
    assert result.stderr.strip() == f"warning: {warning}"
    assert f"tie-aware mAP@5: {metrics['tie_aware']['mAP@5']:.4f}" in result.stdout
    result, _ = query_metrics(store, tmp_path, "--json")
    assert json.loads(result.stdout)["metrics"]["tie_warning"] == warning
    assert result.stderr.strip() == f"warning: {warning}", "JSON on stdout, the warning on stderr"
