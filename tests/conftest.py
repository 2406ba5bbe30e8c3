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
from typer.testing import CliRunner

from hashkit.cli.main import app

REPO = Path(__file__).resolve().parents[1]


def hamming_distances(database: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The plain reference: (Q, N) counts of differing bits, from unpacked bits."""
    bits = np.unpackbits(database, axis=1)
    return np.array([(np.unpackbits(query) != bits).sum(axis=1) for query in queries])


def run_cli(*args: str):
    """Invoke the hashkit CLI in-process; returns typer's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args])


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


def trained_model(images: Path, model: Path, method: str, image_size: int, *extra: str) -> Path:
    """``hashkit train`` of a 16-bit ``method`` model on ``images`` (in-process, no workers)."""
    result = run_cli("train", "--images", images, "-o", model, "--method", method, "--bits", "16",
                     "--image-size", str(image_size), "--workers", "0", *extra)
    assert result.exit_code == 0, result.output
    return model


def noise_photos(folder: Path, count: int, side: int, suffix: str) -> Path:
    """``count`` random-noise photos of ``side`` x ``side`` pixels in ``folder``, named 0000.SUFFIX on."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:04d}{suffix}"), rng.integers(0, 255, (side, side, 3), dtype=np.uint8))
    return folder
