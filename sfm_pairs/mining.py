"""Pair mining: covisible positives from 3D models, verified positives from two-view geometries,
groups of linked images, and negatives across groups."""

from __future__ import annotations

import numpy as np

from hashkit.hashing.files.pairs_merge import keys_to_pairs, pair_keys


def covisible_pairs(tracks: list[np.ndarray], min_shared_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Image pairs that observe at least ``min_shared_points`` common 3D points.

    ``tracks`` holds, per 3D point, the indices of the images observing it. Returns the
    pairs (P x 2, i < j, sorted) and how many points each pair shares.
    """
    keys = []
    for track in tracks:
        images = np.unique(track)
        if images.size < 2:
            continue
        i, j = np.triu_indices(images.size, k=1)
        keys.append(images[i].astype(np.int64) << 32 | images[j].astype(np.int64))
    if not keys:
        return np.zeros((0, 2), np.int32), np.zeros(0, np.int32)
    unique, counts = np.unique(np.concatenate(keys), return_counts=True)
    keep = counts >= min_shared_points
    return keys_to_pairs(unique[keep]), counts[keep].astype(np.int32)


def verified_pairs(pairs: np.ndarray, inliers: np.ndarray, min_inliers: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (in any order, i != j) whose two-view geometry has at least ``min_inliers`` inlier
    matches, as sorted (i < j) unique pairs with their inlier counts."""
    pairs = np.sort(np.asarray(pairs, np.int64).reshape(-1, 2), axis=1)
    keep = np.asarray(inliers) >= min_inliers
    keys, first = np.unique(pair_keys(pairs[keep]), return_index=True)
    return keys_to_pairs(keys), np.asarray(inliers)[keep][first].astype(np.int32)


def union_of_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The sorted union of two lists of (i < j) pairs."""
    return keys_to_pairs(np.union1d(pair_keys(a), pair_keys(b)))


def values_of_pairs(pairs: np.ndarray, table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The value of each of ``pairs`` in a (i < j) pair ``table``; 0 for pairs not in it."""
    keys = pair_keys(table)
    order = np.argsort(keys)
    keys, values = keys[order], np.asarray(values)[order]
    if len(keys) == 0:
        return np.zeros(len(pairs), np.int32)
    wanted = pair_keys(pairs)
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where(keys[at] == wanted, values[at], 0).astype(np.int32)


def cross_group_negatives(group: np.ndarray, per_image: int, seed: int) -> np.ndarray:
    """Up to ``per_image`` random partners from other groups for each grouped image.

    Returns unique unordered pairs (M x 2, i < j, sorted); ungrouped images (group -1) take no
    part. The draw depends only on ``group``, ``per_image`` and ``seed``.
    """
    rng = np.random.default_rng(seed)
    grouped = np.flatnonzero(group >= 0)
    found = set()
    for anchor in grouped:
        others = grouped[group[grouped] != group[anchor]]
        if others.size == 0:
            continue
        for partner in rng.choice(others, size=min(per_image, others.size), replace=False):
            found.add((min(anchor, partner), max(anchor, partner)))
    if not found:
        return np.zeros((0, 2), np.int32)
    return np.array(sorted(found), dtype=np.int32)
