"""Pair keys, groups of linked images, and several pairs files read as one.

A group is a connected component of the graph whose edges are the positives and each model's
photos (``linked_groups``); reconstruct numbers its groups so, and merging joins the groups of
several files where they share a photo."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .pairs_file import Pairs


def linked_groups(num_images: int, edges: np.ndarray) -> np.ndarray:
    """Connected components of the graph with ``edges`` (E x 2), numbered 0, 1, ... by their
    smallest image; images on no edge get -1."""
    parent = np.arange(num_images)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in np.asarray(edges).reshape(-1, 2):
        a, b = root(int(i)), root(int(j))
        if a != b:
            parent[max(a, b)] = min(a, b)
    roots = np.array([root(i) for i in range(num_images)])
    linked = np.zeros(num_images, bool)
    linked[np.asarray(edges).reshape(-1)] = True
    _, group = np.unique(roots[linked], return_inverse=True)
    out = np.full(num_images, -1, np.int32)
    out[linked] = group
    return out


def pair_keys(pairs: np.ndarray) -> np.ndarray:
    """One int64 key per (i, j) pair with i < j."""
    return pairs[:, 0].astype(np.int64) << 32 | pairs[:, 1].astype(np.int64)


def keys_to_pairs(keys: np.ndarray) -> np.ndarray:
    return np.stack([keys >> 32, keys & 0xFFFFFFFF], axis=1).astype(np.int32).reshape(-1, 2)


def merged_pairs(files: list[Pairs]) -> Pairs:
    """Several pairs files as one, each photo once (identified by its absolute path): the models
    and groups of each file are numbered apart, groups that share a photo are joined, a pair found
    in several files keeps its largest counts, and negatives that the joining puts inside one group
    are dropped. A photo keeps the model of the first file that registered it."""
    number: dict[str, int] = {}
    for pairs in files:
        for path in pairs.absolute_paths():
            number.setdefault(str(path), len(number))
    count = len(number)
    model_id = np.full(count, -1, np.int32)
    positives, shared, inliers, negatives, members = [], [], [], [], []
    models = 0
    for pairs in files:
        index = np.array([number[str(path)] for path in pairs.absolute_paths()], np.int64)
        first_model = (model_id[index] < 0) & (pairs.model_id >= 0)
        model_id[index[first_model]] = pairs.model_id[first_model] + models
        models += int(pairs.model_id.max(initial=-1)) + 1
        positives.append(np.sort(index[pairs.positives], axis=1))
        shared.append(pairs.shared_points)
        inliers.append(pairs.inlier_matches)
        negatives.append(np.sort(index[pairs.negatives], axis=1))
        grouped = np.flatnonzero(pairs.group >= 0)
        _, first = np.unique(pairs.group[grouped], return_index=True)
        leader = dict(zip(pairs.group[grouped[first]].tolist(), index[grouped[first]].tolist()))
        members.append(np.stack([[leader[g] for g in pairs.group[grouped].tolist()], index[grouped]], 1))
    keys, at = np.unique(pair_keys(np.concatenate(positives)), return_inverse=True)
    most_shared, most_inliers = np.zeros(len(keys), np.int32), np.zeros(len(keys), np.int32)
    np.maximum.at(most_shared, at, np.concatenate(shared))
    np.maximum.at(most_inliers, at, np.concatenate(inliers))
    pair_list = keys_to_pairs(keys)
    group = linked_groups(count, np.concatenate([pair_list.astype(np.int64), *members]))
    negative = keys_to_pairs(np.unique(pair_keys(np.concatenate(negatives))))
    negative = negative[(group[negative[:, 0]] < 0) | (group[negative[:, 0]] != group[negative[:, 1]])]
    paths = list(number)
    root = Path(os.path.commonpath([os.path.dirname(path) for path in paths]))
    unreadable = sorted({Path(os.path.relpath(pairs.photo_root / name, root)).as_posix()
                         for pairs in files for name in pairs.unreadable})
    return Pairs(photo_root=root, images=[Path(os.path.relpath(path, root)).as_posix() for path in paths],
                 model_id=model_id, positives=pair_list, shared_points=most_shared, negatives=negative, group=group,
                 inlier_matches=most_inliers, unreadable=unreadable,
                 settings={"merged_from": [pairs.settings for pairs in files]})
