"""Pairs from existing COLMAP workspaces (``hashkit reconstruct --colmap``): the same pairs.h5 as
hashkit's own reconstruction from the same models, in binary and text formats; a workspace made by
pycolmap outside hashkit; photos the workspace names but the folder lacks; damaged workspaces."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from hashkit.hashing.files.pairs_file import read_pairs
from hashkit.sfm_pairs.colmap import link_name
from hashkit.sfm_pairs.reconstruct import ReconstructOptions

from .helpers import assert_one_line_error, run_cli

ARRAYS = ("model_id", "positives", "shared_points", "inlier_matches", "negatives", "group")


def outside_workspace(sfm_dir: Path, target: Path, text: bool) -> Path:
    """hashkit's own SfM folder as another tool leaves it: the photos under their own names (not
    hashkit's numbered links) in the database and in ``sparse/N`` models, binary or text."""
    names = (sfm_dir / "images.txt").read_text().splitlines()
    real_name = {link_name(i, name): name for i, name in enumerate(names)}
    target.mkdir()
    shutil.copy(sfm_dir / "database.db", target / "database.db")
    with closing(sqlite3.connect(target / "database.db")) as db:
        db.executemany("UPDATE images SET name = ? WHERE name = ?", [(real, link) for link, real in real_name.items()])
        db.commit()
    models = sfm_dir / f"models-{ReconstructOptions.mapper}"
    for k, folder in enumerate(sorted(path for path in models.iterdir() if path.is_dir())):
        model = pycolmap.Reconstruction(folder)
        for image in model.images.values():
            image.name = real_name[image.name]
        (target / "sparse" / str(k)).mkdir(parents=True)
        (model.write_text if text else model.write)(target / "sparse" / str(k))
    return target


def assert_same_pairs(a: Path, b: Path) -> None:
    first, second = read_pairs(a), read_pairs(b)
    assert first.images == second.images and first.unreadable == second.unreadable
    for name in ARRAYS:
        assert np.array_equal(getattr(first, name), getattr(second, name)), name


@pytest.mark.parametrize("text", [False, True])
def test_a_workspace_of_the_same_models_gives_the_same_pairs(work_dir, scene_set, tmp_path, text):
    """The same models as hashkit's run, as another tool leaves them; and hashkit's own SfM folder
    given as it is, with its photos under COLMAP's names."""
    workspace = outside_workspace(work_dir / "sfm", tmp_path / "workspace", text)
    assert (workspace / "sparse" / "0" / ("images.txt" if text else "images.bin")).is_file()
    result = run_cli("reconstruct", scene_set / "photos", "-o", tmp_path / "out", "--colmap", workspace)
    assert result.exit_code == 0, result.output
    assert "from the COLMAP workspace" in result.stdout
    assert_same_pairs(work_dir / "pairs.h5", tmp_path / "out" / "pairs.h5")
    assert not (tmp_path / "out" / "sfm").exists(), "nothing extracted, matched or mapped"
    sfm = work_dir / "sfm"
    result = run_cli("reconstruct", sfm / "images", "-o", tmp_path / "own", "--colmap", sfm)
    assert result.exit_code == 0, result.output
    own, imported = read_pairs(work_dir / "pairs.h5"), read_pairs(tmp_path / "own" / "pairs.h5")
    for name in ARRAYS:
        assert np.array_equal(getattr(own, name), getattr(imported, name)), name


def test_models_alone_give_the_model_positives(work_dir, scene_set, tmp_path):
    workspace = outside_workspace(work_dir / "sfm", tmp_path / "workspace", False)
    (workspace / "database.db").unlink()
    result = run_cli("reconstruct", scene_set / "photos", "-o", tmp_path / "out", "--colmap", workspace / "sparse",
                     "--positives", "models")
    assert result.exit_code == 0, result.output
    own = read_pairs(work_dir / "pairs.h5")
    imported = read_pairs(tmp_path / "out" / "pairs.h5")
    from_models = own.shared_points > 0
    assert np.array_equal(imported.positives, own.positives[from_models])
    registered = [name for name, m in zip(own.images, own.model_id) if m >= 0]
    assert imported.images == registered  # without a database, the photos are those the models name


def test_photos_missing_from_the_folder_are_reported_not_fatal(work_dir, scene_set, tmp_path):
    workspace = outside_workspace(work_dir / "sfm", tmp_path / "workspace", False)
    photos = tmp_path / "photos"
    shutil.copytree(scene_set / "photos", photos)
    gone = read_pairs(work_dir / "pairs.h5").images[0]
    (photos / gone).unlink()
    result = run_cli("reconstruct", photos, "-o", tmp_path / "out", "--colmap", workspace)
    assert result.exit_code == 0, result.output
    assert f"missing: {gone}" in result.stdout and "1 named by the workspace are not in" in result.stdout
    pairs = read_pairs(tmp_path / "out" / "pairs.h5")
    assert gone not in pairs.images and len(pairs.positives) > 0


def test_a_workspace_made_by_pycolmap_outside_hashkit(scene_set, truth, tmp_path):
    """COLMAP's own pipeline through pycolmap, as a user would have run it, with no hashkit file."""
    photos, workspace = scene_set / "photos", tmp_path / "colmap"
    (workspace / "sparse").mkdir(parents=True)
    pycolmap.extract_features(workspace / "database.db", photos)
    pycolmap.match_exhaustive(workspace / "database.db")
    pycolmap.incremental_mapping(workspace / "database.db", photos, workspace / "sparse")
    for folder in (workspace / "sparse").iterdir():  # one model in text format: both are read
        model = pycolmap.Reconstruction(folder)
        for name in ("cameras.bin", "images.bin", "points3D.bin", "frames.bin", "rigs.bin"):
            (folder / name).unlink(missing_ok=True)
        model.write_text(folder)
        break
    result = run_cli("reconstruct", photos, "-o", tmp_path / "out", "--colmap", workspace, "--json")
    assert result.exit_code == 0, result.output
    pairs = read_pairs(tmp_path / "out" / "pairs.h5")
    scene = np.array([truth[str(path.resolve())] for path in pairs.absolute_paths()])
    assert len(pairs.positives) >= 50
    assert (scene[pairs.positives[:, 0]] == scene[pairs.positives[:, 1]]).all()
    assert (scene[pairs.negatives[:, 0]] != scene[pairs.negatives[:, 1]]).all()


@pytest.mark.parametrize("make, fragment", [
    (lambda root: root.mkdir(), "holds no COLMAP model"),
    (lambda root: None, "no such file or folder"),
    (lambda root: (root.mkdir(), *(((root / f"{name}.bin").write_bytes(b"damaged")) for name in
                                   ("cameras", "images", "points3D"))), "is not a readable COLMAP model"),
    (lambda root: (root.mkdir(), (root / "database.db").write_text("not sqlite")), "is not a readable COLMAP database"),
])
def test_damaged_workspaces_are_refused_in_one_line(scene_set, tmp_path, make, fragment):
    make(tmp_path / "workspace")
    result = run_cli("reconstruct", scene_set / "photos", "-o", tmp_path / "out", "--colmap", tmp_path / "workspace")
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "out" / "pairs.h5").exists()
