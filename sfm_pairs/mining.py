"""Pair mining from 3D models: covisible positives and cross-model negatives."""

from __future__ import annotations

import numpy as np


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
    unique, counts = unique[keep], counts[keep]
    pairs = np.stack([unique >> 32, unique & 0xFFFFFFFF], axis=1).astype(np.int32)
    return pairs, counts.astype(np.int32)


def cross_model_negatives(model_id: np.ndarray, per_image: int, seed: int) -> np.ndarray:
    """Up to ``per_image`` random partners from other models for each registered image.

    Returns unique unordered pairs (M x 2, i < j, sorted); unregistered images (model -1)
    take no part. The draw depends only on ``model_id``, ``per_image`` and ``seed``.
    """
    rng = np.random.default_rng(seed)
    registered = np.flatnonzero(model_id >= 0)
    found = set()
    for anchor in registered:
        others = registered[model_id[registered] != model_id[anchor]]
        if others.size == 0:
            continue
        for partner in rng.choice(others, size=min(per_image, others.size), replace=False):
            found.add((min(anchor, partner), max(anchor, partner)))
    if not found:
        return np.zeros((0, 2), np.int32)
    return np.array(sorted(found), dtype=np.int32)
