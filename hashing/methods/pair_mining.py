"""Pairs for training: feature-space neighbours (when no 3D models exist) and hard negatives."""

from __future__ import annotations

import numpy as np

ANCHOR_CHUNK = 1024  # anchors per block of the distance matrix


def cosine_neighbours(features: np.ndarray, k: int) -> np.ndarray:
    """Indices (N, k) of each row's k most cosine-similar other rows, nearest first (N - 1 of them
    when there are no k others)."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    k = min(k, len(unit) - 1)
    if k <= 0:
        return np.empty((len(unit), 0), np.int64)
    neighbours = np.empty((len(unit), k), np.int64)
    for start in range(0, len(unit), ANCHOR_CHUNK):
        similarity = unit[start:start + ANCHOR_CHUNK] @ unit.T
        rows = np.arange(similarity.shape[0])
        similarity[rows, start + rows] = -np.inf
        top = np.argpartition(-similarity, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(similarity, top, axis=1), axis=1)
        neighbours[start:start + ANCHOR_CHUNK] = np.take_along_axis(top, order, axis=1)
    return neighbours


def membership(neighbours: np.ndarray) -> np.ndarray:
    """Boolean (N, N) matrix from neighbour indices (N, k): j is among the neighbours of i."""
    n, k = neighbours.shape
    member = np.zeros((n, n), bool)
    member[np.repeat(np.arange(n), k), neighbours.ravel()] = True
    return member


def neighbour_sets(features: np.ndarray, k: int) -> np.ndarray:
    """Boolean (N, N) matrix: j is among the k cosine nearest neighbours of i."""
    return membership(cosine_neighbours(features, k))


def mutual_pairs(member: np.ndarray) -> np.ndarray:
    """Pairs (i < j) where each is a neighbour of the other in the membership matrix."""
    i, j = np.nonzero(np.triu(member & member.T, k=1))
    return np.stack([i, j], axis=1).astype(np.int64)


def hard_negatives(codes: np.ndarray, anchors: np.ndarray, eligible, per_anchor: int,
                   groups: np.ndarray | None = None) -> np.ndarray:
    """For each anchor, its ``per_anchor`` nearest eligible images under the current codes.

    ``eligible(anchor_rows) -> bool (A, N)`` says which images may be negatives of each anchor.
    With ``groups`` (3D model ids), at most one negative per group and anchor: the group's
    image nearest to the anchor. Returns pairs (anchor, negative).
    """
    found = []
    squared = (codes ** 2).sum(axis=1)
    members = [] if groups is None else [np.flatnonzero(groups == g) for g in np.unique(groups[groups >= 0])]
    for start in range(0, len(anchors), ANCHOR_CHUNK):
        rows = anchors[start:start + ANCHOR_CHUNK]
        distance = squared[rows, None] - 2 * codes[rows] @ codes.T + squared[None, :]
        distance[~eligible(rows)] = np.inf
        if groups is None:
            candidates = np.arange(distance.shape[1])[None, :].repeat(len(rows), axis=0)
        else:  # per group, only its nearest image stays a candidate
            candidates = np.stack([m[np.argmin(distance[:, m], axis=1)] for m in members], axis=1)
            distance = np.take_along_axis(distance, candidates, axis=1)
        order = np.argsort(distance, axis=1, kind="stable")[:, :per_anchor]
        for row, anchor in enumerate(rows):
            found += [(anchor, candidates[row, c]) for c in order[row] if np.isfinite(distance[row, c])]
    return np.array(found, dtype=np.int64).reshape(-1, 2)
