"""The ``pairs.h5`` file: images, their 3D model and group, positive and negative pairs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from hashkit.hashing import __version__
from hashkit.hashing.errors import UserError, existing_file, refuse_newer_schema

from .outputs import hdf5_in_memory, write_bytes
from .text_column import decoded, encoded

SCHEMA = "hashkit.pairs"
SCHEMA_VERSION = 2  # 2 added group and inlier_matches; version 1 files still read
_STR = h5py.string_dtype("utf-8")


@dataclass
class Pairs:
    """Mined pairs. Image paths are relative to ``photo_root``; indices point into ``images``."""

    photo_root: Path
    images: list[str]
    model_id: np.ndarray  # int32 (N,), -1 = not registered in any 3D model
    positives: np.ndarray  # int32 (P, 2), i < j, same model or a verified two-view geometry
    shared_points: np.ndarray  # int32 (P,), 3D points seen by both images (0: not covisible in a model)
    negatives: np.ndarray  # int32 (M, 2), different groups
    group: np.ndarray | None = None  # int32 (N,), linked images (the same scene); -1 = none; default model_id
    inlier_matches: np.ndarray | None = None  # int32 (P,), verified inlier matches (0: none); default 0
    unreadable: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.group is None:
            self.group = self.model_id
        if self.inlier_matches is None:
            self.inlier_matches = np.zeros(len(self.positives), np.int32)

    def absolute_paths(self) -> list[Path]:
        return [self.photo_root / name for name in self.images]

    def subset(self, keep: np.ndarray) -> Pairs:
        """The images where ``keep`` (bool, N) is true and the pairs among them, re-indexed."""
        index = np.full(len(self.images), -1)
        index[keep] = np.arange(int(keep.sum()))
        positive, negative = keep[self.positives].all(axis=1), keep[self.negatives].all(axis=1)
        return Pairs(self.photo_root, [name for name, kept in zip(self.images, keep) if kept], self.model_id[keep],
                     index[self.positives[positive]], self.shared_points[positive], index[self.negatives[negative]],
                     self.group[keep], self.inlier_matches[positive], [], dict(self.settings))


def write_pairs(path: Path, pairs: Pairs) -> None:
    """Write ``pairs`` to ``path``; the file appears under its name only once complete."""
    with hdf5_in_memory() as (f, image):
        f.attrs.update(schema=SCHEMA, schema_version=SCHEMA_VERSION,
                       photo_root=str(pairs.photo_root), hashkit_version=__version__,
                       settings=json.dumps(pairs.settings, sort_keys=True))
        f.create_dataset("images", data=[encoded(name) for name in pairs.images], dtype=_STR)
        f.create_dataset("model_id", data=pairs.model_id.astype(np.int32))
        f.create_dataset("positives", data=pairs.positives.astype(np.int32).reshape(-1, 2))
        f.create_dataset("shared_points", data=pairs.shared_points.astype(np.int32))
        f.create_dataset("negatives", data=pairs.negatives.astype(np.int32).reshape(-1, 2))
        f.create_dataset("group", data=pairs.group.astype(np.int32))
        f.create_dataset("inlier_matches", data=pairs.inlier_matches.astype(np.int32))
        f.create_dataset("unreadable", data=[encoded(name) for name in pairs.unreadable], dtype=_STR)
    write_bytes(path, image.getvalue())


def read_pairs(path: Path) -> Pairs:
    """Read and validate a ``pairs.h5``; anything else, or an inconsistent file, gives a UserError
    naming the file."""
    path = existing_file(path, "pairs file")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("schema") != SCHEMA:
                raise UserError(f"{path} is not a hashkit pairs file (made by 'hashkit reconstruct')")
            refuse_newer_schema(path, "pairs", int(f.attrs.get("schema_version", 0)), SCHEMA_VERSION)
            pairs = Pairs(
                photo_root=Path(f.attrs["photo_root"]),
                images=[decoded(s) for s in f["images"][:]],
                model_id=f["model_id"][:],
                positives=f["positives"][:],
                shared_points=f["shared_points"][:],
                negatives=f["negatives"][:],
                unreadable=[decoded(s) for s in f["unreadable"][:]],
                settings=json.loads(f.attrs["settings"]),
                group=f["group"][:] if "group" in f else None,
                inlier_matches=f["inlier_matches"][:] if "inlier_matches" in f else None,
            )
    except OSError as error:
        raise UserError(f"cannot read {path} as HDF5: {error}") from error
    except (KeyError, ValueError, AttributeError, TypeError) as error:  # a dataset or attribute missing or mistyped
        raise UserError(f"{path} is not a complete hashkit pairs file ({type(error).__name__}: {error})") from error
    problem = _inconsistency(pairs)
    if problem:
        raise UserError(f"{path} is inconsistent: {problem}")
    return pairs


def _inconsistency(pairs: Pairs) -> str | None:
    """What is wrong with the shapes, types and ranges of ``pairs``, or None."""
    n = len(pairs.images)
    arrays = {"model_id": pairs.model_id, "positives": pairs.positives, "shared_points": pairs.shared_points,
              "negatives": pairs.negatives, "group": pairs.group, "inlier_matches": pairs.inlier_matches}
    for name, values in arrays.items():
        if not np.issubdtype(values.dtype, np.integer):
            return f"{name} holds {values.dtype}, not integers"
    for name in ("model_id", "group"):
        if arrays[name].shape != (n,):
            return f"{name} has shape {arrays[name].shape} for {n} images"
        if n and arrays[name].min() < -1:
            return f"a {name} is below -1"
    for name in ("positives", "negatives"):
        values = arrays[name]
        if values.ndim != 2 or values.shape[1] != 2:
            return f"{name} has shape {values.shape}, not (pairs, 2)"
        if values.size and (values.min() < 0 or values.max() >= n):
            return f"{name} names image {int(values.min() if values.min() < 0 else values.max())}; " \
                   f"images are numbered 0 to {n - 1}"
        if (values[:, 0] == values[:, 1]).any():
            return f"{name} pairs an image with itself"
    for name in ("shared_points", "inlier_matches"):
        if arrays[name].shape != (len(pairs.positives),):
            return f"{name} has {arrays[name].shape} values for {len(pairs.positives)} positives"
    return None
