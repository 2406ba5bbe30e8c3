"""Collapse of codes onto shared codes, against hand-counted cases."""

import numpy as np

from hashkit.hashing.training.collapse import code_collapse


def packed(bits: list[list[int]]) -> np.ndarray:
    return np.packbits(np.array(bits, dtype=bool), axis=1)


def test_pairs_of_different_groups_on_one_code_are_counted():
    codes = packed([[1, 0, 1], [1, 0, 1], [1, 0, 1], [0, 1, 1], [0, 1, 1], [0, 0, 0]])
    groups = np.array([0, 0, 1, 2, 2, -1])
    collapse = code_collapse(codes, groups)
    assert (collapse.images, collapse.distinct_codes, collapse.largest_bucket) == (6, 3, 3)
    # bucket {0, 0, 1}: pairs (0,2) and (1,2) cross groups; bucket {2, 2}: none; -1 counts for nothing
    assert collapse.cross_group_pairs == 2
    assert collapse.images_sharing_across_groups == 3 and collapse.grouped_images == 5
    assert "3 of 5 grouped images" in collapse.warning()


def test_images_of_no_group_never_count_and_distinct_codes_do_not_warn():
    codes = packed([[1, 1], [1, 1], [0, 1], [1, 0]])
    assert code_collapse(codes, np.array([-1, 0, 1, 1])).cross_group_pairs == 0
    assert code_collapse(codes, np.array([0, 1, 2, 3])).warning() is not None  # images 0 and 1 share a code
    assert code_collapse(codes, np.array([0, 0, 1, 2])).warning() is None


def test_without_groups_a_warning_needs_fewer_codes_than_half_the_images():
    many = packed([[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)])
    assert code_collapse(many).warning() is None
    few = packed([[1, 0, 0]] * 6 + [[0, 1, 0]] * 2)
    warning = code_collapse(few).warning()
    assert warning is not None and "2 distinct codes for 8 images" in warning
