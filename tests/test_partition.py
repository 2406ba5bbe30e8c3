"""Partitioned reconstruction (``--parts``): parts that keep scenes together, reconstructed in
parallel or as a job array's tasks run one after the other, merged into one pairs.h5; and the
hierarchical mapper."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from hashkit.hashing.files.pairs_file import read_pairs
from hashkit.sfm_pairs.partition import split_photos

from .helpers import HASHKIT, assert_one_line_error, run_cli


def correct_positives(pairs, truth) -> set[tuple[str, str]]:
    scene = [truth[str(path.resolve())] for path in pairs.absolute_paths()]
    names = [str(path.resolve()) for path in pairs.absolute_paths()]
    return {(names[i], names[j]) for i, j in pairs.positives if scene[i] == scene[j]}


def test_parts_are_clusters_and_photos_between_two_fall_in_both():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    centres *= 10 / np.linalg.norm(centres, axis=1, keepdims=True)  # as far from each other in angle
    bridge = (centres[0] + centres[1]) / 2 + rng.normal(size=(2, 16)) * 0.1  # photos 40, 41: between scenes 0, 1
    features = np.concatenate([np.repeat(centres, 10, axis=0) + rng.normal(size=(40, 16)), bridge])
    parts = split_photos(features, 4, 0, seed=0)
    assert sorted(part.size for part in parts) == [10, 10, 11, 11] or sorted(part.size for part in parts) == [
        10, 10, 10, 12]
    assert sorted(np.concatenate(parts).tolist()) == list(range(42))  # without overlap: a partition
    for part in parts:  # each part one scene (the bridge photos aside)
        assert len(set((part[part < 40] // 10).tolist())) == 1
    overlapping = split_photos(features, 4, 4, seed=0)
    scene_of_part = [np.bincount(part[part < 40] // 10).argmax() for part in overlapping]
    first, second = (set(overlapping[scene_of_part.index(scene)].tolist()) for scene in (0, 1))
    assert first & second  # the two scenes the bridge photos link share photos: their groups join again
    for scene in (2, 3):  # scenes apart from the others share none
        assert len(overlapping[scene_of_part.index(scene)]) == 10
    assert split_photos(features[:3], 8, 1, seed=0)[0].size >= 1  # more parts asked than photos: fewer made


def test_partitioned_runs_keep_the_scenes_and_a_job_array_gives_the_same_pairs(scene_set, work_dir, truth, tmp_path):
    photos = scene_set / "photos"
    result = run_cli("reconstruct", photos, "-o", tmp_path / "local", "--parts", "2", "--part-jobs", "2")
    assert result.exit_code == 0, result.output
    assert "parts: 2" in result.stdout
    merged = read_pairs(tmp_path / "local" / "pairs.h5")
    whole = read_pairs(work_dir / "pairs.h5")
    kept = correct_positives(merged, truth)
    assert len(kept) == len(merged.positives)  # every positive within one scene
    assert len(kept & correct_positives(whole, truth)) >= 0.95 * len(correct_positives(whole, truth))
    scene = np.array([truth[str(path.resolve())] for path in merged.absolute_paths()])
    for name in set(scene):  # no scene left split across groups
        assert len(set(merged.group[(scene == name) & (merged.group >= 0)].tolist())) == 1
    assert (scene[merged.negatives[:, 0]] != scene[merged.negatives[:, 1]]).all()

    array = tmp_path / "array"  # the job array's tasks, one after the other, then the merge
    for task in ("0", "1"):
        done = subprocess.run([*HASHKIT, "reconstruct", str(photos), "-o", str(array), "--parts", "2",
                               "--part", task], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert not (array / "pairs.h5").exists()
    assert run_cli("reconstruct", photos, "-o", array, "--parts", "2").exit_code == 0
    again = read_pairs(array / "pairs.h5")
    assert [str(p) for p in again.absolute_paths()] == [str(p) for p in merged.absolute_paths()]
    for name in ("model_id", "positives", "negatives", "group"):
        assert np.array_equal(getattr(again, name), getattr(merged, name)), name
    # COLMAP's threads (one per part here, every core for an array task) move a few 3D points
    assert np.allclose(again.shared_points, merged.shared_points, rtol=0.05)

    assert_one_line_error(run_cli("reconstruct", photos, "-o", array, "--parts", "3"), "other photos or settings")
    assert_one_line_error(run_cli("reconstruct", photos, "-o", array, "--parts", "2", "--part", "7"),
                          "has parts 0 to 1")


@pytest.mark.parametrize("mapper", ["hierarchical"])
def test_hierarchical_mapper(scene_set, truth, tmp_path, mapper):
    result = run_cli("reconstruct", scene_set / "photos", "-o", tmp_path, "--mapper", mapper)
    assert result.exit_code == 0, result.output
    pairs = read_pairs(tmp_path / "pairs.h5")
    assert len(correct_positives(pairs, truth)) == len(pairs.positives) >= 50
