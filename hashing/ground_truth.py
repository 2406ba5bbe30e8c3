"""Ground-truth labels for evaluation: parent folders, a ``path,label`` CSV, or a ``pairs.h5``."""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np

from hashkit.sfm_pairs.pairs_file import read_pairs

from .errors import UserError

FOLDERS = "folders"


def load_labels(source: str, paths: list[str]) -> dict[str, str]:
    """Label of each path (absolute path strings) that ``source`` knows.

    ``source``: ``folders`` (the name of the image's parent folder), a CSV file of
    ``path,label`` rows (header optional; relative paths are relative to the CSV's folder),
    or a ``pairs.h5`` (the 3D model of each registered image; unregistered ones stay unknown).
    """
    if source == FOLDERS:
        return {p: Path(p).parent.name for p in paths}
    file = Path(source)
    if not file.is_file():
        raise UserError(f"--ground-truth: expected 'folders', a CSV or a pairs.h5, got {source!r}")
    if h5py.is_hdf5(file):
        return _labels_from_pairs(file)
    return _labels_from_csv(file)


def _labels_from_csv(file: Path) -> dict[str, str]:
    labels = {}
    with file.open(newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.reader(f), start=1):
            if not row or (number == 1 and [c.strip().lower() for c in row] == ["path", "label"]):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise UserError(f"{file}:{number}: expected 'path,label', got {','.join(row)!r}")
            path = Path(row[0].strip())
            path = path if path.is_absolute() else file.parent / path
            labels[str(path.resolve())] = row[1].strip()
    return labels


def _labels_from_pairs(file: Path) -> dict[str, str]:
    pairs = read_pairs(file)
    return {str(path.resolve()): f"model_{m}"
            for path, m in zip(pairs.absolute_paths(), pairs.model_id) if m >= 0}


def label_ids(labels: dict[str, str], db_paths: list[str], query_paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Integer labels for database and query paths (-1 = unknown), from one shared vocabulary."""
    vocabulary: dict[str, int] = {}

    def ids(paths: list[str]) -> np.ndarray:
        return np.array([vocabulary.setdefault(labels[p], len(vocabulary)) if p in labels else -1
                         for p in paths], dtype=np.int64)

    return ids(db_paths), ids(query_paths)
