"""Shared fixtures: a small rendered photo set and its real COLMAP reconstruction."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from .helpers import REPO, run_cli


@pytest.fixture(scope="session", autouse=True)
def private_feature_cache(tmp_path_factory) -> None:
    """Keep the tests' feature cache out of the user's ~/.cache; torch's weights stay found."""
    import torch.hub
    os.environ.setdefault("TORCH_HOME", str(Path(torch.hub.get_dir()).parent))
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))


@pytest.fixture(scope="session")
def scene_set(tmp_path_factory) -> Path:
    """3 scenes x 8 views at 320x240, rendered by the example script."""
    out = tmp_path_factory.mktemp("scenes")
    subprocess.run([sys.executable, str(REPO / "examples" / "render_scenes.py"), str(out),
                    "--scenes", "3", "--views", "8", "--size", "320x240", "--seed", "1"],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def truth(scene_set) -> dict[str, str]:
    """Absolute photo path -> true scene (evaluation only)."""
    with (scene_set / "truth.csv").open() as f:
        return {str((scene_set / row["path"]).resolve()): row["label"] for row in csv.DictReader(f)}


@pytest.fixture(scope="session")
def work_dir(scene_set, tmp_path_factory) -> Path:
    """``hashkit reconstruct`` run once on the rendered set."""
    work = tmp_path_factory.mktemp("work")
    result = run_cli("reconstruct", scene_set / "photos", "-o", work, "--json")
    assert result.exit_code == 0, result.output
    return work


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Path:
    """scikit-learn's digits as class folders train/db/queries (30/20/5 per class) and multi-label
    2x2 mosaics of each split (examples/labelled_sets.py)."""
    out = tmp_path_factory.mktemp("digits")
    subprocess.run([sys.executable, str(REPO / "examples" / "labelled_sets.py"), "digits", str(out)],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Three photos, an LSH model at 64 px and the store of their codes."""
    root = tmp_path_factory.mktemp("tiny")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(photos / f"{i}.png"), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    model, store = root / "lsh.pt", root / "codes.h5"
    common = ["--workers", "0", "--no-feature-cache"]
    assert run_cli("train", "--images", photos, "-o", model, "--method", "lsh", "--bits", "16", "--image-size", "64",
                   *common).exit_code == 0
    assert run_cli("encode", model, photos, "-o", store, *common).exit_code == 0
    return {"photos": photos, "model": model, "store": store}
