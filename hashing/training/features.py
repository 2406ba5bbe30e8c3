"""Backbone features, computed once per image and backbone and kept in an HDF5 cache.

A cache file holds the features of one backbone configuration: its name, the SHA-256 of its
weights and the input size. Rows are keyed by absolute image path and stamped with the file's
size and modification time, so an edited image is computed again. Methods that keep the
backbone frozen (LSH, ITQ, ``--freeze-backbone``) train and encode from these features.
Feature vectors are stored as float32, feature maps (N, C, h, w) as float16 (half the disk,
well within the precision the heads need). Rows are appended in commits, as in the code store:
the rows, then the ``count`` attribute. A cache file that cannot be read (damaged, or foreign)
is moved aside as ``NAME.damaged`` with a warning and built again; one of an older hashkit is
deleted and built again. A commit is written only when the disk has room for it; when it has not,
the run goes on with the rest of its features in memory, and the cache stays as it was.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from hashkit.hashing.files.disk_space import METADATA_BYTES, NoSpaceError, chunk_growth, ensure_room
from hashkit.hashing.files.locking import exclusive_lock
from hashkit.hashing.files.outputs import HDF5_LAYOUT
from hashkit.hashing.files.text_column import TextColumn, decoded
from hashkit.hashing.progress import progress
from hashkit.hashing.runtime import to_device

from .data import Normalizer, eval_loader

SCHEMA = "hashkit.features"
SCHEMA_VERSION = 2  # 2: paths as a TextColumn and a committed row count
UNREADABLE = (OSError, KeyError, ValueError, TypeError, RuntimeError)  # what h5py raises on a damaged file
DECODING = "dct"  # JPEGs decoded at a DCT scale (``images.read_rgb``); caches of full-size decoding are not read
COMPUTE_CHUNK = 512  # images computed and committed to the cache (and by encode, to the store) at a time


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of a module's tensors (names, shapes and values), identifying its weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _stamp(path: Path) -> tuple[int, int]:
    """Size and modification time; (-1, -1) for a file that cannot be examined (never cached)."""
    try:
        stat = path.stat()
    except OSError:
        return -1, -1
    return stat.st_size, stat.st_mtime_ns


class FeatureCache:
    """Features of one backbone configuration, stored in ``cache_dir``."""

    def __init__(self, cache_dir: Path, backbone: str, digest: str, image_size: int):
        self.path = Path(cache_dir) / f"{backbone}-{digest[:16]}-{image_size}-{DECODING}.h5"
        self.attrs = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "backbone": backbone,
                      "weights_digest": digest, "image_size": image_size, "decoding": DECODING}
        self._rows: dict[str, tuple[int, tuple[int, int]]] = {}  # path -> (row, stamp), as last read
        self._read_as: tuple[int, int] | None = None  # the file's (mtime, size) when last read
        self._out_of_room = False  # a commit found no room on the disk: the run caches nothing more

    def _file_state(self) -> tuple[int, int] | None:
        if not self.path.exists():
            return None
        stat = self.path.stat()
        return stat.st_mtime_ns, stat.st_size

    def _index(self) -> dict[str, tuple[int, tuple[int, int]]]:
        """Path -> (row, stamp) of every committed row; the paths are read again only when the
        file changed since (another process added rows), not on every call."""
        state = self._file_state()
        if state is None:
            return {}
        if state != self._read_as:
            with h5py.File(self.path, "r") as f:
                count = self._checked_count(f)
                column = TextColumn(f, "paths")
                if problem := column.problem(count) or _datasets_problem(f):
                    raise ValueError(problem)
                paths = [decoded(p) for p in column.cells(0, count)]
                stamps = f["stamps"][:count]
                if len(paths) != count or len(stamps) != count or len(f["features"]) < count:
                    raise ValueError(f"{count} committed rows, but {len(paths)} paths and {len(stamps)} stamps")
            self._rows = {p: (row, (int(s[0]), int(s[1]))) for row, (p, s) in enumerate(zip(paths, stamps))}
            self._read_as = state
        return self._rows

    def _checked_count(self, f: h5py.File) -> int:
        """The committed row count of a cache file of this configuration (ValueError otherwise)."""
        found = {key: f.attrs.get(key) for key in self.attrs}
        if found != self.attrs:
            raise ValueError(f"its attributes are {found}")
        return int(f.attrs["count"])

    def features(self, paths: list[Path], compute) -> tuple[np.ndarray, np.ndarray]:
        """Features of ``paths`` (float32) and a mask of the decodable ones.

        Rows not cached (or whose file changed) are computed by ``compute(paths) -> (features,
        ok)`` and added; undecodable images are not cached and come back as zero rows. Where the
        disk has no room for more rows, the rest are kept in memory only, with a warning.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.path, wait=True):  # a second run waits, then finds the rows cached
            try:
                index = self._index()
            except UNREADABLE as error:
                self._discard(error)
                index = {}
            stamps = [_stamp(p) for p in paths]
            rows = [index.get(str(p)) for p in paths]
            fresh = [i for i, (row, stamp) in enumerate(zip(rows, stamps)) if row is None or row[1] != stamp]
            uncached: dict[int, np.ndarray] = {}  # position in ``paths`` -> features the disk had no room for
            for start in range(0, len(fresh), COMPUTE_CHUNK):  # each chunk is kept once computed
                chunk = fresh[start:start + COMPUTE_CHUNK]
                computed, ok = compute([paths[i] for i in chunk])
                good = [i for i, decoded in zip(chunk, ok) if decoded]
                if not self._append([str(paths[i]) for i in good], [stamps[i] for i in good], computed[ok]):
                    uncached.update(zip(good, computed[ok]))
            index = self._index()
            if not self.path.exists() and not uncached:  # nothing decodable was ever computed
                return np.zeros((len(paths), 0), np.float32), np.zeros(len(paths), bool)
            found = np.array([i not in uncached and str(p) in index and index[str(p)][1] == s
                              for i, (p, s) in enumerate(zip(paths, stamps))])
            cached_rows = np.array([index[str(p)][0] for p, good in zip(paths, found) if good], dtype=np.int64)
            values = np.zeros((0,), np.float32)
            if self.path.exists():
                with h5py.File(self.path, "r") as f:
                    stored, order = f["features"], np.argsort(cached_rows)
                    values = stored[cached_rows[order]] if cached_rows.size else \
                        np.zeros((0, *stored.shape[1:]), stored.dtype)  # h5py reads increasing indices
                    cached_rows = np.flatnonzero(found)[order]
            sample = next(iter(uncached.values()), None)
            shape, dtype = (values.shape[1:], values.dtype) if sample is None else (sample.shape, sample.dtype)
            out = np.zeros((len(paths), *shape), dtype)
            out[cached_rows] = values.reshape(-1, *shape)
            for i, value in uncached.items():
                out[i] = value
            found[list(uncached)] = True
        return out, found

    def _discard(self, error: Exception) -> None:
        """Set an unreadable cache file aside (one of an older hashkit is deleted), with a warning."""
        self._rows, self._read_as = {}, None
        try:
            with h5py.File(self.path, "r") as f:
                older = f.attrs.get("schema") == SCHEMA and int(f.attrs.get("schema_version", 0)) < SCHEMA_VERSION
        except UNREADABLE:
            older = False
        if older:
            self.path.unlink()
            print(f"warning: {self.path} was written by an older hashkit: deleted, its features are computed again",
                  file=sys.stderr)
            return
        aside = self.path.with_name(self.path.name + ".damaged")
        os.replace(self.path, aside)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"warning: {self.path} cannot be read ({reason}): moved to {aside}, its features are computed again",
              file=sys.stderr)

    def _append(self, paths: list[str], stamps: list[tuple[int, int]], features: np.ndarray) -> bool:
        """Commit rows to the file; False (with a warning) when its disk has no room for them."""
        if not paths or self._out_of_room:
            return not self._out_of_room
        before = self._file_state()
        kept = "its features are kept"
        try:
            ensure_room(self.path, METADATA_BYTES, kept)
            with h5py.File(self.path, "a", libver=HDF5_LAYOUT) as f:
                if "features" not in f:
                    f.attrs.update(self.attrs, count=0)
                    shape = features.shape[1:]
                    maps = len(shape) > 1
                    f.create_dataset("features", shape=(0, *shape), maxshape=(None, *shape),
                                     dtype=np.float16 if maps else np.float32, chunks=(64 if maps else 1024, *shape))
                    TextColumn.create(f, "paths")
                    f.create_dataset("stamps", shape=(0, 2), maxshape=(None, 2), dtype=np.int64, chunks=(1024, 2))
                start = int(f.attrs["count"])
                end = start + len(paths)
                ensure_room(self.path, chunk_growth(f["features"], end) + chunk_growth(f["stamps"], end)
                            + TextColumn(f, "paths").growth(start, paths) + METADATA_BYTES, kept)
                for name, values in (("features", features), ("stamps", stamps)):
                    f[name].resize(end, axis=0)
                    f[name][start:end] = values
                TextColumn(f, "paths").write(start, paths)
                f.flush()
                f.attrs["count"] = end
        except NoSpaceError as error:
            print(f"warning: {error}; the rest of this run's features are not cached", file=sys.stderr)
            self._out_of_room = True
            return False
        if self._read_as == before:  # the index in memory was current: extend it rather than read it again
            self._rows.update((p, (start + i, tuple(s))) for i, (p, s) in enumerate(zip(paths, stamps)))
            self._read_as = self._file_state()
        return True


def _datasets_problem(f: h5py.File) -> str | None:
    """What is wrong with a cache file's features and stamps datasets, or None."""
    features, stamps = f.get("features"), f.get("stamps")
    if not all(isinstance(data, h5py.Dataset) and data.chunks is not None and data.maxshape[0] is None
               for data in (features, stamps)):
        return "features and stamps are not datasets that can grow"
    if features.ndim < 2 or features.dtype not in (np.float16, np.float32) or stamps.shape[1:] != (2,) \
            or stamps.dtype.kind != "i":
        return f"features {features.shape} {features.dtype}, stamps {stamps.shape} {stamps.dtype}"
    return None


@torch.no_grad()
def compute_features(backbone: nn.Module, paths: list[Path], image_size: int, mean, std, batch_size: int,
                     workers: int | None, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Backbone outputs of ``paths`` (float32 features (N, D) or float16 maps (N, C, h, w)) and
    the mask of decodable images; ``workers``: see ``decoding_plan``."""
    loader = eval_loader(paths, image_size, batch_size, workers, device)
    normalize = Normalizer(mean, std, device)
    backbone = to_device(backbone, device).eval()
    chunks, masks = [], []
    for images, _, ok in progress(loader, desc="backbone features", unit="batch"):
        output = backbone(normalize(images))
        chunks.append((output.half() if output.dim() > 2 else output.float()).cpu().numpy())
        masks.append(ok.numpy())
    return np.concatenate(chunks), np.concatenate(masks)


def cached_features(backbone: nn.Module, name: str, digest: str, paths: list[Path], image_size: int, mean, std,
                    batch_size: int, workers: int | None, device: torch.device,
                    cache_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """``compute_features`` of ``paths``, through the cache in ``cache_dir`` (None: no cache) for
    the backbone ``name`` whose weights have SHA-256 ``digest``."""
    def compute(chunk: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        return compute_features(backbone, chunk, image_size, mean, std, batch_size, workers, device)

    if cache_dir is None:
        return compute(paths)
    return FeatureCache(cache_dir, name, digest, image_size).features(paths, compute)
