"""Several pairs files as one (``pairs_merge.merged_pairs``, ``hashkit train --pairs A --pairs B``):
photos by absolute path, groups kept apart per file unless they share a photo, negatives never
inside a joined group."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hashkit.hashing.files.pairs_file import Pairs, read_pairs, write_pairs
from hashkit.hashing.files.pairs_merge import merged_pairs
from hashkit.hashing.training.model_file import read_model_file

from .helpers import run_cli


def pairs_of(root: Path, images: list[str], group: list[int], positives: list, negatives: list,
             shared: list[int] | None = None) -> Pairs:
    positives = np.array(positives, np.int32).reshape(-1, 2)
    return Pairs(root, images, np.array(group, np.int32), positives,
                 np.array(shared or [20] * len(positives), np.int32), np.array(negatives, np.int32).reshape(-1, 2),
                 group=np.array(group, np.int32))


def test_a_file_merged_with_itself_is_the_file(work_dir):
    pairs = read_pairs(work_dir / "pairs.h5")
    merged = merged_pairs([pairs, pairs])
    assert [str(p) for p in merged.absolute_paths()] == [str(p) for p in pairs.absolute_paths()]
    for name in ("model_id", "positives", "shared_points", "inlier_matches", "negatives", "group"):
        assert np.array_equal(getattr(merged, name), getattr(pairs, name)), name


def test_a_shared_photo_joins_groups_and_drops_the_negatives_inside(tmp_path):
    a = pairs_of(tmp_path / "a", ["x.jpg", "y.jpg", "z.jpg"], [0, 0, 1], [[0, 1]], [[0, 2], [1, 2]], [15])
    b = pairs_of(tmp_path, ["a/z.jpg", "b/w.jpg", "a/y.jpg", "b/v.jpg"], [0, 0, 1, -1], [[0, 1], [1, 2]], [],
                 [30, 40])
    merged = merged_pairs([a, b])
    names = [p.relative_to(tmp_path).as_posix() for p in merged.absolute_paths()]
    assert names == ["a/x.jpg", "a/y.jpg", "a/z.jpg", "b/w.jpg", "b/v.jpg"]
    x, y, z, w, v = range(5)
    assert merged.positives.tolist() == [[x, y], [y, w], [z, w]]
    assert merged.shared_points.tolist() == [15, 40, 30]
    assert len(set(merged.group[[x, y, z, w]].tolist())) == 1 and merged.group[v] == -1  # joined through y and z
    assert merged.negatives.tolist() == []  # (x, z) and (y, z) now lie inside one group
    assert merged.model_id.tolist() == [0, 0, 1, 2, -1]  # b's models numbered after a's


def test_separate_parts_keep_their_groups_apart(work_dir, tmp_path):
    pairs = read_pairs(work_dir / "pairs.h5")
    groups = np.unique(pairs.group[pairs.group >= 0])
    first = np.isin(pairs.group, groups[:1])
    parts = [pairs.subset(first), pairs.subset(~first)]
    merged = merged_pairs(parts)
    assert len(merged.images) == len(pairs.images)
    assert len(np.unique(merged.group[merged.group >= 0])) == len(groups)
    assert len(merged.positives) == len(pairs.positives)  # every positive lies within one group
    assert len(merged.negatives) == sum(len(part.negatives) for part in parts)  # none drawn across the parts


def test_train_reads_several_pairs_files(work_dir, tmp_path):
    pairs = read_pairs(work_dir / "pairs.h5")
    first = np.isin(pairs.group, np.unique(pairs.group[pairs.group >= 0])[:2])
    for name, keep in (("a.h5", first), ("b.h5", ~first)):
        write_pairs(tmp_path / name, pairs.subset(keep))
    model = tmp_path / "model.pt"
    result = run_cli("train", "--pairs", tmp_path / "a.h5", "--pairs", tmp_path / "b.h5", "-o", model, "--bits", "16",
                     "--epochs", "1", "--image-size", "64", "--workers", "0", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images"] == len(pairs.images)
    config, _ = read_model_file(model)
    assert config["trained_on"] == f"{tmp_path / 'a.h5'}, {tmp_path / 'b.h5'}"
