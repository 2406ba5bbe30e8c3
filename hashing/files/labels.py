"""Labels of images: parent folders, a CSV of ``path,label`` or ``path,"a;b;c"`` rows, or a ``pairs.h5``.

Every image has a label set (a tuple of strings): one label for single-label data, several
for multi-label data. Training (``--labels``), encoding (labels stored with the codes) and
evaluation (``--ground-truth``) read labels through ``load_labels``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import h5py
import numpy as np

from hashkit.hashing.errors import UserError

from .pairs_file import read_pairs

FOLDERS = "folders"
SEPARATOR = ";"  # between the labels of a multi-label CSV cell
LabelSet = tuple[str, ...]


def load_labels(source: str, paths: list[str]) -> dict[str, LabelSet]:
    """Label set of each path (absolute path strings) that ``source`` knows.

    ``source``: ``folders`` (the name of the image's parent folder), a CSV file (header
    optional; relative paths are relative to the CSV's folder; a label cell may hold several
    labels separated by ``;``), or a ``pairs.h5`` (the group of each image: its 3D model, joined
    with verified pairs; images in no group stay unknown).
    """
    if source == FOLDERS:
        return {p: (Path(p).parent.name,) for p in paths}
    file = Path(source)
    if not file.is_file():
        raise UserError(f"labels: expected 'folders', a CSV or a pairs.h5, got {source!r}")
    known = _labels_from_pairs(file) if h5py.is_hdf5(file) else _labels_from_csv(file)
    # a file names an image by its real path, so that a symbolic link and its target are one image
    return {p: known[real] for p in paths if (real := os.path.realpath(p)) in known}


def _labels_from_csv(file: Path) -> dict[str, LabelSet]:
    labels: dict[str, LabelSet] = {}
    try:
        with file.open(newline="", encoding="utf-8-sig") as f:
            for number, row in enumerate(csv.reader(f), start=1):
                if not row or (number == 1 and [c.strip().lower() for c in row] in (["path", "label"],
                                                                                   ["path", "labels"])):
                    continue
                label_set = tuple(sorted({part.strip() for part in row[1].split(SEPARATOR)} - {""})) \
                    if len(row) == 2 else ()
                if not row[0].strip() or not label_set:
                    raise UserError(f"{file}:{number}: expected 'path,label' or 'path,\"a;b\"', "
                                    f"got {','.join(row)!r}")
                key = _resolve(file, row[0])
                if key in labels and labels[key] != label_set:
                    raise UserError(f"{file}:{number}: {row[0].strip()} is labelled twice, differently")
                labels[key] = label_set
    except UnicodeDecodeError as error:
        raise UserError(f"{file} is not a UTF-8 CSV file") from error
    return labels


LANDMARK_HEADER = ["query", "image", "kind"]
LANDMARK_KINDS = ("relevant", "junk")


def is_landmark_csv(source: str) -> bool:
    """Whether ``source`` is a landmark ground-truth CSV (its first line ``query,image,kind``)."""
    file = Path(source)
    if not file.is_file() or h5py.is_hdf5(file):
        return False
    with file.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        return [c.strip().lower() for c in next(csv.reader(f), [])] == LANDMARK_HEADER


def load_landmark_lists(source: str, db_rows_of: Callable[[list[str]], np.ndarray],
                        query_paths: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per query (in ``query_paths`` order): the database rows listed as relevant and as junk in a
    ``query,image,kind`` CSV (paths relative to its folder; kind ``relevant`` or ``junk``).
    ``db_rows_of`` gives the database row of each of a list of distinct paths (-1: not there;
    ``StoreReader.rows_of``). Images that are not in the database are ignored; queries not
    listed have no relevant row."""
    file = Path(source)
    query_of = {path: q for q, path in enumerate(query_paths)}
    listed: list[tuple[str, int, str]] = []  # (kind, query, image) of the listed queries
    with file.open(newline="", encoding="utf-8-sig") as f:
        for number, row in enumerate(csv.reader(f), start=1):
            if number == 1 or not row:
                continue
            if len(row) != 3 or row[2].strip() not in LANDMARK_KINDS:
                raise UserError(f"{file}:{number}: expected 'query,image,relevant|junk', got {','.join(row)!r}")
            query, image = (_resolve(file, cell) for cell in row[:2])
            if query in query_of:
                listed.append((row[2].strip(), query_of[query], image))
    images = sorted({image for _, _, image in listed})
    row_of = dict(zip(images, db_rows_of(images).tolist()))
    lists: dict[str, list[list[int]]] = {kind: [[] for _ in query_paths] for kind in LANDMARK_KINDS}
    for kind, q, image in listed:
        if row_of[image] >= 0:
            lists[kind][q].append(row_of[image])
    return [[np.array(rows, np.int64) for rows in lists[kind]] for kind in LANDMARK_KINDS]


def _resolve(file: Path, cell: str) -> str:
    if "\0" in cell:
        raise UserError(f"{file}: the path {cell!r} contains a NUL byte")
    path = Path(cell.strip())
    return str((path if path.is_absolute() else file.parent / path).resolve())


def _labels_from_pairs(file: Path) -> dict[str, LabelSet]:
    pairs = read_pairs(file)
    return {str(path.resolve()): (f"group_{g}",)
            for path, g in zip(pairs.absolute_paths(), pairs.group) if g >= 0}


def vocabulary(label_sets: Iterable[LabelSet]) -> list[str]:
    """The sorted list of distinct labels."""
    return sorted({label for label_set in label_sets for label in label_set})


def label_matrix(label_sets: list[LabelSet | None], classes: list[str]) -> np.ndarray:
    """Multi-hot (N, len(classes)) bool matrix; a None (unknown) label set is an all-false row;
    labels outside ``classes`` are ignored."""
    column = {label: j for j, label in enumerate(classes)}
    matrix = np.zeros((len(label_sets), len(classes)), bool)
    for i, label_set in enumerate(label_sets):
        for label in label_set or ():
            if label in column:
                matrix[i, column[label]] = True
    return matrix
