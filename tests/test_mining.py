import numpy as np

from hashkit.sfm_pairs.mining import covisible_pairs, cross_model_negatives


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
    negatives = cross_model_negatives(model_id, per_image=2, seed=3)
    assert len(negatives) > 0
    assert np.all(model_id[negatives[:, 0]] != model_id[negatives[:, 1]])
    assert np.all(model_id[negatives] >= 0), "unregistered images take no part"
    assert np.all(negatives[:, 0] < negatives[:, 1])
    assert len({tuple(p) for p in negatives.tolist()}) == len(negatives)
    assert len(negatives) <= 2 * int((model_id >= 0).sum())
    assert np.array_equal(negatives, cross_model_negatives(model_id, per_image=2, seed=3))
    assert not np.array_equal(negatives, cross_model_negatives(model_id, per_image=2, seed=4))


def test_single_model_has_no_negatives():
    assert cross_model_negatives(np.array([0, 0, 0]), per_image=5, seed=0).shape == (0, 2)
