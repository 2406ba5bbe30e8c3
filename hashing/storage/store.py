"""The ``codes.h5`` code store: packed binary codes, their image paths and labels, and metadata.

Rows are appended in commits. Each commit writes the rows, flushes, then raises the
``count`` attribute and flushes again: a run killed mid-commit leaves rows beyond ``count``
that readers ignore and the next append overwrites, so no half-written row is ever counted.
Paths and labels are kept as one byte array and each row's end offset (``TextColumn``): an
append writes past the committed bytes and never rewrites one. Version 1 kept them as HDF5
variable-length strings, whose shared heap every append rewrote, so a killed append could leave
committed rows unreadable; version 1 stores are still read, and rewritten as version 2 before
the first append.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from hashkit.hashing.errors import UserError, existing_file, refuse_newer_schema
from hashkit.hashing.files.disk_space import METADATA_BYTES, chunk_growth, ensure_room
from hashkit.hashing.files.labels import SEPARATOR, LabelSet
from hashkit.hashing.files.locking import when_released
from hashkit.hashing.files.outputs import HDF5_LAYOUT, written_atomically
from hashkit.hashing.files.text_column import READ_ROWS, TextColumn, decoded, encoded

SCHEMA = "hashkit.codes"
SCHEMA_VERSION = 2  # 2: paths and labels as bytes and end offsets; version 1 (vlen strings) is read only
CHUNK_ROWS = 4096  # HDF5 chunk of the codes


@dataclass(frozen=True)
class StoreMeta:
    bits: int
    method: str
    model_digest: str
    backbone: str
    hashkit_version: str

    def describe(self) -> str:
        return f"{self.method}, {self.bits} bits, model {self.model_digest[:12]}"


@dataclass
class StoreContents:
    meta: StoreMeta
    codes: np.ndarray  # uint8 (N, bits / 8)
    paths: list[str]
    labels: list[LabelSet | None] | None  # each row's label set, None where unknown; None: no labels stored


def label_cell(label_set: LabelSet | None) -> str:
    """A label set as the store holds it: its labels joined by ``;``; "" when unknown."""
    for label in label_set or ():
        if SEPARATOR in label:
            raise UserError(f"label {label!r} contains {SEPARATOR!r}, which separates labels in the code store")
    return SEPARATOR.join(label_set or ())


def _label_set(cell: bytes) -> LabelSet | None:
    return tuple(decoded(cell).split(SEPARATOR)) if cell else None


def pack_codes(outputs: np.ndarray) -> np.ndarray:
    """Real-valued network outputs (N, bits) to packed codes (N, bits / 8): bit = output > 0."""
    return np.packbits(outputs > 0, axis=1)


def unpack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Packed codes to a (N, bits) array of 0/1."""
    return np.unpackbits(codes, axis=1, count=bits)


def _meta(f: h5py.File, path: Path) -> StoreMeta:
    """The store's metadata, once its schema and layout are checked (a UserError names what is wrong)."""
    try:
        if f.attrs.get("schema") != SCHEMA:
            raise UserError(f"{path} is not a hashkit code store (made by 'hashkit encode')")
        refuse_newer_schema(path, "code store", int(f.attrs.get("schema_version", 0)), SCHEMA_VERSION)
        meta = StoreMeta(int(f.attrs["bits"]), str(f.attrs["method"]), str(f.attrs["model_digest"]),
                         str(f.attrs["backbone"]), str(f.attrs["hashkit_version"]))
        if "paths" not in f and "paths_ends" not in f:
            raise KeyError("no paths")
        count, codes, paths = int(f.attrs["count"]), f["codes"], TextColumn(f, "paths")
        labels = TextColumn(f, "labels")
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise UserError(f"{path} is not a complete hashkit code store ({type(error).__name__}: {error})") from error
    if not isinstance(codes, h5py.Dataset) or meta.bits <= 0 or meta.bits % 8 or codes.dtype != np.uint8 \
            or codes.shape[1:] != (meta.bits // 8,) or codes.chunks is None or codes.maxshape[0] is not None:
        raise UserError(f"{path} is inconsistent: codes of shape {getattr(codes, 'shape', None)} and type "
                        f"{getattr(codes, 'dtype', None)} for {meta.bits}-bit codes")
    if not 0 <= count <= len(codes):
        raise UserError(f"{path} is inconsistent: {count} committed rows, but {len(codes)} codes")
    problem = paths.problem(count) or labels.problem(min(count, labels.rows))
    if problem:
        raise UserError(f"{path} is inconsistent: {problem}")
    return meta


def _open(path: Path, mode: str) -> h5py.File:
    try:
        return when_released(lambda: h5py.File(path, mode))
    except BlockingIOError as error:
        raise UserError(f"{path} is being written by another process; try again when it finishes") from error
    except OSError as error:
        raise UserError(f"cannot open {path} as HDF5: {str(error).splitlines()[0]}") from error


def read_store(path: Path) -> StoreContents:
    """Every committed row of the store at ``path``, whole in memory (``StoreReader`` reads in pieces)."""
    with StoreReader(path) as store:
        return StoreContents(store.meta, store.codes(), store.paths(), store.labels())


class StoreReader:
    """The committed rows of a store, read in chunks of rows so that a large database is never held
    whole: codes chunk by chunk for a scan, and only the paths a caller asks for."""

    def __init__(self, path: Path):
        self.path = existing_file(path, "code store")
        self.file = _open(self.path, "r")
        try:
            self.meta = _meta(self.file, self.path)
        except UserError:
            self.file.close()
            raise
        self.count = int(self.file.attrs["count"])
        self._paths, self._labels = TextColumn(self.file, "paths"), TextColumn(self.file, "labels")

    def code_chunks(self, rows: int) -> Iterator[np.ndarray]:
        """The codes, ``rows`` at a time, in row order."""
        for start in range(0, self.count, rows):
            yield self.file["codes"][start:min(start + rows, self.count)]

    def codes(self) -> np.ndarray:
        return self.file["codes"][:self.count]

    def paths(self) -> list[str]:
        return [decoded(cell) for start in range(0, self.count, READ_ROWS)
                for cell in self._paths.cells(start, min(start + READ_ROWS, self.count))]

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, list[str], list[str]]:
        """Codes, paths and stored label cells ("" unknown) of rows ``start`` to ``stop``."""
        stop = min(stop, self.count)
        codes, paths = self.file["codes"][start:stop], [decoded(cell) for cell in self._paths.cells(start, stop)]
        cells = [decoded(cell) for cell in self._labels.cells(start, stop)]
        return codes, paths, cells + [""] * (len(paths) - len(cells))

    def paths_at(self, rows: np.ndarray) -> list[str]:
        """The paths of ``rows`` (any order, repeats allowed; -1 gives ""), reading only the
        stretches of the store that hold them."""
        rows = np.asarray(rows, np.int64).ravel()
        wanted = np.unique(rows[(rows >= 0) & (rows < self.count)])
        found = dict(zip(wanted.tolist(), (decoded(cell) for cell in self._paths.at(wanted))))
        return [found.get(row, "") for row in rows.tolist()]

    def rows_of(self, paths: list[str]) -> np.ndarray:
        """The row holding each of ``paths`` (-1 where none does), in one pass over the store's paths."""
        wanted = {encoded(path): i for i, path in enumerate(paths)}
        rows = np.full(len(paths), -1, np.int64)
        for start in range(0, self.count, READ_ROWS):
            for offset, cell in enumerate(self._paths.cells(start, min(start + READ_ROWS, self.count))):
                i = wanted.get(cell)
                if i is not None and rows[i] < 0:
                    rows[i] = start + offset
        return rows

    def labels(self) -> list[LabelSet | None] | None:
        """Each row's label set (None where unknown); None when the store holds no labels."""
        if not self._labels.packed and "labels" not in self.file:  # version 1 stores written before labels
            return None
        cells = self._labels.cells(0, self.count)  # shorter when a hashkit without labels appended
        return [_label_set(cell) for cell in cells] + [None] * (self.count - len(cells))

    def has_labels(self) -> bool:
        """Whether any row has a known label."""
        return any(any(self._labels.cells(start, min(start + READ_ROWS, self.count)))
                   for start in range(0, self.count, READ_ROWS))

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CodeStoreWriter:
    """Appends committed rows to a new or existing store of the same model. Each commit first
    checks that its file system has room for it (``disk_space.ensure_room``): a commit HDF5 fails
    to write half-way could leave the committed rows unreadable."""

    def __init__(self, path: Path, meta: StoreMeta):
        self.path = Path(path)
        if self.path.exists():
            self.file = _open(self.path, "r+")
            try:
                existing = _meta(self.file, self.path)
            except UserError:
                self.file.close()
                raise
            if (existing.bits, existing.model_digest) != (meta.bits, meta.model_digest):
                self.file.close()
                raise UserError(f"{self.path} holds codes of another model ({existing.describe()}); "
                                f"this model is {meta.describe()}: use another store or --overwrite")
            if int(self.file.attrs.get("schema_version", 0)) < SCHEMA_VERSION:
                self.file.close()
                _upgrade(self.path)
                self.file = _open(self.path, "r+")
        else:
            ensure_room(self.path, METADATA_BYTES, "no store was created")
            self.file = h5py.File(self.path, "w", libver=HDF5_LAYOUT)
            self.file.attrs.update(schema=SCHEMA, schema_version=SCHEMA_VERSION, count=0,
                                   bits=meta.bits, method=meta.method, model_digest=meta.model_digest,
                                   backbone=meta.backbone, hashkit_version=meta.hashkit_version)
            self.file.create_dataset("codes", shape=(0, meta.bits // 8), maxshape=(None, meta.bits // 8),
                                     dtype=np.uint8, chunks=(CHUNK_ROWS, meta.bits // 8))
            TextColumn.create(self.file, "paths")
            TextColumn.create(self.file, "labels")
            self.file.flush()
        self.count = int(self.file.attrs["count"])
        self._paths, self._labels = TextColumn(self.file, "paths"), TextColumn(self.file, "labels")

    def append(self, codes: np.ndarray, paths: list[str], labels: list[str] | None = None) -> None:
        """Write ``codes``, ``paths`` and ``labels`` (cells made by ``label_cell``; default all
        unknown) as one commit."""
        labels = [""] * len(paths) if labels is None else labels
        if not len(codes) == len(paths) == len(labels):
            raise ValueError("codes, paths and labels differ in length")
        if not len(codes):
            return
        end = self.count + len(codes)
        needed = (chunk_growth(self.file["codes"], end) + self._paths.growth(self.count, paths)
                  + self._labels.growth(self.count, labels) + METADATA_BYTES)
        ensure_room(self.path, needed, f"its {self.count} committed rows are kept")
        self.file["codes"].resize(end, axis=0)
        self.file["codes"][self.count:end] = codes
        self._paths.write(self.count, paths)
        self._labels.write(self.count, labels)
        self.file.flush()
        self.file.attrs["count"] = end
        self.file.flush()
        self.count = end

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> CodeStoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _upgrade(path: Path) -> None:
    """Rewrite the version 1 store at ``path`` as a version 2 store of the same rows: a copy,
    renamed over it once complete (the caller holds the store's lock)."""
    with StoreReader(path) as old, written_atomically(path) as tmp:
        with CodeStoreWriter(tmp, old.meta) as new:
            for start in range(0, old.count, READ_ROWS):
                new.append(*old.rows(start, start + READ_ROWS))


class StoreSet:
    """Several stores of one model read as one database: rows numbered through the stores in
    the order given (the rows of the second follow those of the first). Offers ``StoreReader``'s
    reading methods; one store behaves exactly as its ``StoreReader``."""

    def __init__(self, paths: list[Path]):
        if not paths:
            raise UserError("no database store given")
        self.readers: list[StoreReader] = []
        try:
            for path in paths:
                self.readers.append(StoreReader(path))
                check_same_model(self.readers[0].path, self.readers[0].meta, self.readers[-1].path,
                                 self.readers[-1].meta)
        except UserError:
            self.close()
            raise
        self.paths_of_files = [reader.path for reader in self.readers]
        self.meta = self.readers[0].meta
        self.starts = np.cumsum([0] + [reader.count for reader in self.readers])
        self.count = int(self.starts[-1])

    def describe_files(self) -> str:
        return ", ".join(path.name for path in self.paths_of_files)

    def code_chunks(self, rows: int) -> Iterator[np.ndarray]:
        for reader in self.readers:
            yield from reader.code_chunks(rows)

    def codes(self) -> np.ndarray:
        return np.concatenate([reader.codes() for reader in self.readers])

    def paths(self) -> list[str]:
        return [path for reader in self.readers for path in reader.paths()]

    def paths_at(self, rows: np.ndarray) -> list[str]:
        rows = np.asarray(rows, np.int64).ravel()
        found = [""] * len(rows)
        for reader, start in zip(self.readers, self.starts):
            mine = np.flatnonzero((rows >= start) & (rows < start + reader.count))
            for i, path in zip(mine, reader.paths_at(rows[mine] - start)):
                found[i] = path
        return found

    def rows_of(self, paths: list[str]) -> np.ndarray:
        """The first row holding each of ``paths`` (-1 where none does)."""
        rows = np.full(len(paths), -1, np.int64)
        for reader, start in zip(self.readers, self.starts):
            found = reader.rows_of(paths)
            rows = np.where((rows < 0) & (found >= 0), found + start, rows)
        return rows

    def labels(self) -> list[LabelSet | None] | None:
        labels = [reader.labels() for reader in self.readers]
        if all(part is None for part in labels):
            return None
        return [label for part, reader in zip(labels, self.readers) for label in (part or [None] * reader.count)]

    def has_labels(self) -> bool:
        return any(reader.has_labels() for reader in self.readers)

    def close(self) -> None:
        for reader in self.readers:
            reader.close()

    def __enter__(self) -> StoreSet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_same_model(first: Path, first_meta: StoreMeta, other: Path, other_meta: StoreMeta) -> None:
    """Refuse to search or combine stores whose codes come from different models."""
    if other_meta.model_digest != first_meta.model_digest or other_meta.bits != first_meta.bits:
        raise UserError(f"{other} ({other_meta.describe()}) and {first} ({first_meta.describe()}) "
                        "were encoded by different models; their codes are not comparable")
