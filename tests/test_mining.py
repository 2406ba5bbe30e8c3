from pathlib import Path

import numpy as np

from hashkit.hashing.files.pairs_merge import linked_groups
from hashkit.sfm_pairs.mining import (
    covisible_pairs,
    cross_group_negatives,
    union_of_pairs,
    values_of_pairs,
    verified_pairs,
)
from hashkit.sfm_pairs.pair_selection import exhaustive_pairs, neighbour_pairs, sequential_pairs


def test_covisible_pairs_counts_shared_points_by_hand():
    tracks = [np.array([0, 1, 2]), np.array([0, 1]), np.array([1, 2, 2]), np.array([3])]
    pairs, shared = covisible_pairs(tracks, min_shared_points=1)
    # point 0 -> (0,1),(0,2),(1,2); point 1 -> (0,1); point 2 -> (1,2) (image 2 twice counts once)
    assert pairs.tolist() == [[0, 1], [0, 2], [1, 2]]
    assert shared.tolist() == [2, 1, 2]


def test_covisible_pairs_threshold_and_empty():
    tracks = [np.array([0, 1, 2]), np.array([0, 1])]
    pairs, shared = covisible_pairs(tracks, min_shared_points=2)
    assert pairs.tolist() == [[0, 1]] and shared.tolist() == [2]
    pairs, shared = covisible_pairs([np.array([4])], min_shared_points=1)
    assert pairs.shape == (0, 2) and shared.shape == (0,)


def test_negatives_cross_models_only_bounded_and_seeded():
    model_id = np.array([0, 0, 0, 1, 1, 2, -1, 2, 0])
    negatives = cross_group_negatives(model_id, per_image=2, seed=3)
    assert len(negatives) > 0
    assert np.all(model_id[negatives[:, 0]] != model_id[negatives[:, 1]])
    assert np.all(model_id[negatives] >= 0), "unregistered images take no part"
    assert np.all(negatives[:, 0] < negatives[:, 1])
    assert len({tuple(p) for p in negatives.tolist()}) == len(negatives)
    assert len(negatives) <= 2 * int((model_id >= 0).sum())
    assert np.array_equal(negatives, cross_group_negatives(model_id, per_image=2, seed=3))
    assert not np.array_equal(negatives, cross_group_negatives(model_id, per_image=2, seed=4))


def test_single_model_has_no_negatives():
    assert cross_group_negatives(np.array([0, 0, 0]), per_image=5, seed=0).shape == (0, 2)


def test_verified_pairs_threshold_order_and_duplicates():
    pairs, inliers = verified_pairs(np.array([[3, 1], [0, 2], [1, 3], [4, 5]]), np.array([40, 10, 40, 31]), 30)
    assert pairs.tolist() == [[1, 3], [4, 5]] and inliers.tolist() == [40, 31]


def test_union_and_values_of_pairs():
    a, b = np.array([[0, 1], [2, 3]]), np.array([[0, 1], [1, 4]])
    union = union_of_pairs(a, b)
    assert union.tolist() == [[0, 1], [1, 4], [2, 3]]
    assert values_of_pairs(union, a, np.array([7, 9])).tolist() == [7, 0, 9]
    assert values_of_pairs(union, a[::-1], np.array([9, 7])).tolist() == [7, 0, 9], "tables in any order"
    assert values_of_pairs(union, b[:0], np.zeros(0)).tolist() == [0, 0, 0]


def test_linked_groups_are_connected_components_numbered_by_smallest_image():
    group = linked_groups(7, np.array([[5, 6], [1, 3], [3, 4], [6, 5]]))
    assert group.tolist() == [-1, 0, -1, 0, 0, 1, 1]
    assert linked_groups(3, np.zeros((0, 2), np.int64)).tolist() == [-1, -1, -1]


def test_pair_lists_of_the_matchers():
    assert exhaustive_pairs(4).tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    blocked = exhaustive_pairs(5, block=2)  # blocks {0, 1}, {2, 3}, {4}: within, then across
    assert blocked.tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [0, 4], [1, 4], [2, 3], [2, 4], [3, 4]]
    assert len(exhaustive_pairs(101)) == 101 * 100 // 2 and exhaustive_pairs(1).shape == (0, 2)
    assert sequential_pairs(4, overlap=2).tolist() == [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]]
    neighbours = np.array([[0, 2, 1], [1, 0, -1], [2, 0, 3], [3, 2, 2]])  # self, padding and repeats dropped
    assert neighbour_pairs(neighbours).tolist() == [[0, 1], [0, 2], [2, 3]]


def test_subset_keeps_the_pairs_among_the_kept_images_reindexed():
    from hashkit.hashing.files.pairs_file import Pairs
    pairs = Pairs(photo_root=Path("/photos"), images=["a.jpg", "b.jpg", "c.jpg", "d.jpg"],
                  model_id=np.array([0, 0, 1, -1], np.int32), positives=np.array([[0, 1], [0, 3], [1, 2]]),
                  shared_points=np.array([20, 0, 16]), negatives=np.array([[0, 2], [1, 3], [2, 3]]),
                  inlier_matches=np.array([0, 40, 0]))
    kept = pairs.subset(np.array([False, True, True, True]))
    assert kept.images == ["b.jpg", "c.jpg", "d.jpg"] and kept.model_id.tolist() == [0, 1, -1]
    assert kept.positives.tolist() == [[0, 1]] and kept.shared_points.tolist() == [16]
    assert kept.inlier_matches.tolist() == [0]
    assert kept.negatives.tolist() == [[0, 2], [1, 2]] and kept.group.tolist() == [0, 1, -1]
    assert kept.absolute_paths()[0] == Path("/photos/b.jpg")
