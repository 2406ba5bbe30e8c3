"""Reconstruction beyond exhaustive matching: retrieval-chosen pairs, the other mapper, and
positives from verified two-view geometries where COLMAP builds no model."""

from __future__ import annotations

import csv
import dataclasses
import inspect
import json
import re
import shutil
import subprocess
import sys
from contextlib import closing

import numpy as np
import pytest

from hashkit.hashing.files.pairs_file import read_pairs
from hashkit.sfm_pairs.colmap import read_only

from .helpers import HASHKIT, REPO, assert_one_line_error, run_cli

COLMAP_LOG_LINE = re.compile(r"^[IWEF]\d{8} ", re.MULTILINE)  # glog's prefix: level and date


def scenes_of(pairs, truth: dict[str, str]) -> np.ndarray:
    return np.array([truth[str(p.resolve())] for p in pairs.absolute_paths()])


def pair_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {tuple(p) for p in pairs.tolist()}


@pytest.fixture(scope="module")
def two_view_set(tmp_path_factory):
    """Five scenes photographed twice each from nearby viewpoints: COLMAP verifies the pairs but
    builds no 3D model from them."""
    out = tmp_path_factory.mktemp("two-views")
    subprocess.run([sys.executable, str(REPO / "examples" / "render_scenes.py"), str(out), "--scenes", "5",
                    "--views", "2", "--spread", "8", "--size", "640x480", "--seed", "2"],
                   check=True, capture_output=True)
    with (out / "truth.csv").open() as f:
        truth = {str((out / row["path"]).resolve()): row["label"] for row in csv.DictReader(f)}
    return out / "photos", truth


def test_verified_pairs_are_positives_where_no_model_is_built(two_view_set, tmp_path):
    photos, truth = two_view_set
    completed = subprocess.run([*HASHKIT, "reconstruct", str(photos), "-o", str(tmp_path / "w"),
                                "--min-model-size", "2", "--json"], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert not COLMAP_LOG_LINE.search(completed.stderr), f"COLMAP's log leaked:\n{completed.stderr}"
    summary = json.loads(completed.stdout)
    assert summary["model_sizes"] == [] and summary["positives_verified_only"] == summary["positives"]
    pairs = read_pairs(tmp_path / "w" / "pairs.h5")
    scenes = scenes_of(pairs, truth)
    assert len(pairs.positives) == 5 and np.all(scenes[pairs.positives[:, 0]] == scenes[pairs.positives[:, 1]])
    assert np.all(pairs.inlier_matches >= 30) and np.all(pairs.shared_points == 0)
    assert len(set(pairs.group.tolist())) == 5, "each scene its own group"
    assert np.all(scenes[pairs.negatives[:, 0]] != scenes[pairs.negatives[:, 1]]) and len(pairs.negatives) > 0
    models_only = run_cli("reconstruct", photos, "-o", tmp_path / "w", "--min-model-size", "2",
                          "--positives", "models")
    assert_one_line_error(models_only, "no positive pair")


def test_retrieval_matches_fewer_pairs_and_keeps_the_positives(scene_set, truth, work_dir, tmp_path):
    result = run_cli("reconstruct", scene_set / "photos", "-o", tmp_path / "w", "--matcher", "retrieval",
                     "--num-neighbors", "5", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    exhaustive = read_pairs(work_dir / "pairs.h5")
    n = len(exhaustive.images)
    assert summary["matcher"] == "retrieval" and summary["pairs_matched"] <= 5 * n < n * (n - 1) // 2
    pairs = read_pairs(tmp_path / "w" / "pairs.h5")
    scenes = scenes_of(pairs, truth)
    assert np.all(scenes[pairs.positives[:, 0]] == scenes[pairs.positives[:, 1]])
    kept = pair_set(pairs.positives) & pair_set(exhaustive.positives)
    assert len(kept) >= 0.9 * len(exhaustive.positives), (len(kept), len(exhaustive.positives))
    assert len(summary["model_sizes"]) == 3


def test_incremental_mapper_and_verified_positives_reuse_the_matches(scene_set, truth, work_dir, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(work_dir, work, symlinks=True)
    markers = [work / "sfm" / f"{stage}.done" for stage in ("extract", "match")]
    before = [marker.stat().st_mtime_ns for marker in markers]
    result = run_cli("reconstruct", scene_set / "photos", "-o", work, "--mapper", "incremental", "--json")
    assert result.exit_code == 0, result.output
    assert [marker.stat().st_mtime_ns for marker in markers] == before, "extraction and matching not redone"
    assert (work / "sfm" / "models-global").is_dir() and (work / "sfm" / "models-incremental").is_dir()
    pairs = read_pairs(work / "pairs.h5")
    scenes = scenes_of(pairs, truth)
    assert np.all(scenes[pairs.positives[:, 0]] == scenes[pairs.positives[:, 1]])
    assert int(pairs.model_id.max()) + 1 == 3 and len(pairs.positives) >= 30

    result = run_cli("reconstruct", scene_set / "photos", "-o", work, "--positives", "verified")
    assert result.exit_code == 0, result.output
    verified = read_pairs(work / "pairs.h5")
    scenes = scenes_of(verified, truth)
    assert np.all(scenes[verified.positives[:, 0]] == scenes[verified.positives[:, 1]])
    assert np.all(verified.shared_points == 0) and np.all(verified.inlier_matches >= 30)
    assert np.all(scenes[verified.negatives[:, 0]] != scenes[verified.negatives[:, 1]])

    other = run_cli("reconstruct", scene_set / "photos", "-o", work, "--matcher", "sequential")
    assert_one_line_error(other, "other matching settings")


def keypoint_counts(work) -> list[int]:
    with closing(read_only(work / "sfm" / "database.db")) as db:
        return [rows for (rows,) in db.execute("SELECT rows FROM keypoints")]


def test_max_features_caps_the_sift_features_and_is_pinned(scene_set, work_dir, tmp_path):
    work = tmp_path / "w"
    result = run_cli("reconstruct", scene_set / "photos", "-o", work, "--max-features", "100",
                     "--min-model-size", "2")
    assert result.exit_code == 0 or "no positive pair" in result.output, result.output
    capped, default = keypoint_counts(work), keypoint_counts(work_dir)
    assert len(capped) == 24 and max(capped) <= 2 * 100, capped  # COLMAP keeps up to 2 orientations per point
    assert sum(capped) < 0.5 * sum(default), (sum(capped), sum(default))
    other = run_cli("reconstruct", scene_set / "photos", "-o", work, "--max-features", "300")
    assert_one_line_error(other, "other matching settings")


def test_the_command_line_defaults_are_the_library_defaults():
    """`hashkit reconstruct` shows its defaults in --help; they must be ReconstructOptions' own."""
    from hashkit.cli.main import reconstruct_command
    from hashkit.sfm_pairs.reconstruct import ReconstructOptions
    library = {field.name: field.default for field in dataclasses.fields(ReconstructOptions)}
    shared = {name: parameter.default for name, parameter in inspect.signature(reconstruct_command).parameters.items()
              if name in library and name not in ("feature_cache", "retrieval_model")}
    assert len(shared) >= 12, sorted(shared)
    assert {name: library[name] for name in shared} == shared


def test_the_help_quotes_the_matchers_numbers_from_the_library():
    from hashkit.sfm_pairs.pair_selection import EXHAUSTIVE_UP_TO, SEQUENTIAL_OVERLAP
    help_text = " ".join(run_cli("reconstruct", "--help").output.split())
    assert f"sequential (each with the next {SEQUENTIAL_OVERLAP} in file order)" in help_text, help_text
    assert f"auto (exhaustive up to {EXHAUSTIVE_UP_TO} photos, retrieval above)" in help_text, help_text


def test_auto_positives_take_verified_pairs_within_a_model_not_across_models(scene_set, truth, work_dir, tmp_path):
    """With no pair sharing enough 3D points, `auto` still finds the verified pairs of each model's photos."""
    work = tmp_path / "w"
    shutil.copytree(work_dir, work, symlinks=True)
    result = run_cli("reconstruct", scene_set / "photos", "-o", work, "--min-shared-points", "1000000", "--json")
    assert result.exit_code == 0, result.output
    pairs = read_pairs(work / "pairs.h5")
    scenes = scenes_of(pairs, truth)
    first, second = pairs.model_id[pairs.positives[:, 0]], pairs.model_id[pairs.positives[:, 1]]
    assert len(pairs.positives) >= 30 and np.all(pairs.shared_points == 0) and np.all(pairs.inlier_matches >= 30)
    assert np.all((first == second) | (first < 0) | (second < 0)), "no verified pair across two models"
    assert np.all(scenes[pairs.positives[:, 0]] == scenes[pairs.positives[:, 1]])
    models_only = run_cli("reconstruct", scene_set / "photos", "-o", work, "--min-shared-points", "1000000",
                          "--positives", "models")
    assert_one_line_error(models_only, "no positive pair")
