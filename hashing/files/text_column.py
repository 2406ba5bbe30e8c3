"""A column of UTF-8 strings in an HDF5 file, one a row, that appends never rewrite: the
strings end to end in ``NAME_bytes`` and where each row's ends in ``NAME_ends``. HDF5's
variable-length strings share a heap that every append rewrites, so an append killed while
writing it could leave the committed strings unreadable; here an append writes past the
committed bytes only."""

from __future__ import annotations

import h5py
import numpy as np

from .disk_space import chunk_growth

CHUNK_ROWS = 4096  # HDF5 chunk of the end offsets
CHUNK_BYTES = 1 << 18  # HDF5 chunk of the bytes
READ_ROWS = 1 << 20  # rows read at a time by callers that stream a column
RUN_GAP = 4096  # wanted rows closer than this are read together, with the rows between them


def encoded(value: str) -> bytes:
    """A string as the column keeps it: UTF-8, with the undecodable bytes of a file name that Python
    read as surrogates (``os.fsdecode``) given back as they were."""
    return value.encode("utf-8", "surrogateescape")


def decoded(cell: bytes) -> str:
    """A cell as a string: ``encoded``'s inverse; bytes that are not UTF-8 become surrogates."""
    return cell.decode("utf-8", "surrogateescape")


class TextColumn:
    """One UTF-8 string a row: ``NAME_bytes`` (uint8, the strings end to end) and ``NAME_ends``
    (int64, where each row's string ends in them), or, read only, the variable-length strings
    ``NAME`` of version 1 code stores. A file without the column has no rows."""

    def __init__(self, file: h5py.File, name: str):
        self.file, self.name = file, name
        self.packed = f"{name}_ends" in file
        if self.packed:
            self.ends, self.bytes = file[f"{name}_ends"], file[f"{name}_bytes"]
        self.rows = len(self.ends) if self.packed else len(file[name]) if name in file else 0

    def problem(self, rows: int) -> str | None:
        """What keeps the column from holding ``rows`` readable rows (wrong kinds of datasets, too
        few rows, end offsets past its bytes), or None."""
        if not self.packed:
            column = self.file.get(self.name)
            if column is not None and (not isinstance(column, h5py.Dataset) or column.dtype.kind not in "OSU"):
                return f"{self.name} is not a column of strings"
        elif not all(isinstance(column, h5py.Dataset) and column.ndim == 1 and column.chunks is not None
                     and column.maxshape[0] is None for column in (self.ends, self.bytes)) \
                or self.ends.dtype.kind not in "iu" or self.bytes.dtype != np.uint8:
            return f"{self.name}_ends and {self.name}_bytes are not end offsets and bytes that can grow"
        if self.rows < rows:
            return f"{self.name} has {self.rows} rows, fewer than {rows}"
        if self.packed and rows and not 0 <= int(self.ends[rows - 1]) <= len(self.bytes):
            return f"{self.name}_ends points past the {len(self.bytes)} bytes of {self.name}_bytes"
        return None

    @staticmethod
    def create(file: h5py.File, name: str) -> None:
        file.create_dataset(f"{name}_bytes", shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(CHUNK_BYTES,))
        file.create_dataset(f"{name}_ends", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(CHUNK_ROWS,))

    def _begin(self, row: int) -> int:
        """Where row ``row``'s string begins in the byte array."""
        return int(self.ends[row - 1]) if row > 0 else 0

    def cells(self, start: int, stop: int) -> list[bytes]:
        """The strings of rows ``start`` to ``stop`` (fewer where the column is shorter), as bytes."""
        stop = min(stop, self.rows)
        if start >= stop:
            return []
        if not self.packed:
            return list(self.file[self.name][start:stop])
        ends = self.ends[start:stop]
        begin = self._begin(start)
        blob = self.bytes[begin:int(ends[-1])].tobytes()
        bounds = [0, *(ends - begin).tolist()]
        return [blob[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def at(self, rows: np.ndarray) -> list[bytes]:
        """The strings of ``rows`` (increasing, each once), reading each run of nearby rows in one
        piece: a few rows of a large store cost a few small reads, not a pass over its paths."""
        found: list[bytes] = []
        apart = (np.diff(rows) > RUN_GAP) | (rows[1:] // READ_ROWS != rows[:-1] // READ_ROWS)
        runs = np.split(rows, np.flatnonzero(apart) + 1) if len(rows) else []
        for run in runs:
            if not self.packed:
                cells = self.cells(int(run[0]), int(run[-1]) + 1)
                found += [cells[row - run[0]] for row in run.tolist()]
                continue
            first = max(int(run[0]) - 1, 0)  # the end offsets of the run's rows and of the row before it
            ends = self.ends[first:int(run[-1]) + 1]
            begins = np.concatenate([[0], ends[:-1]]) if run[0] == 0 else ends[:-1]
            wanted = run - run[0]
            ends, begins = ends[wanted + (run[0] > 0)], begins[wanted]
            blob = self.bytes[int(begins[0]):int(ends[-1])].tobytes()
            found += [blob[a - begins[0]:b - begins[0]] for a, b in zip(begins.tolist(), ends.tolist())]
        return found

    def growth(self, row: int, values: list[str]) -> int:
        """Bytes the file grows by when ``write(row, values)`` (whole chunks, ``chunk_growth``)."""
        end = self._begin(row) + sum(len(encoded(value)) for value in values)
        return chunk_growth(self.bytes, end) + chunk_growth(self.ends, row + len(values))

    def write(self, row: int, values: list[str]) -> None:
        """Rows from ``row`` on set to ``values``, written after row ``row - 1``'s bytes: no byte
        of an earlier row is rewritten. The column ends with them."""
        cells = [encoded(value) for value in values]
        begin = self._begin(row)
        ends = begin + np.cumsum([len(cell) for cell in cells], dtype=np.int64)
        end = int(ends[-1]) if len(ends) else begin
        self.bytes.resize(end, axis=0)
        if end > begin:
            self.bytes[begin:end] = np.frombuffer(b"".join(cells), np.uint8)
        self.ends.resize(row + len(values), axis=0)
        self.ends[row:] = ends
        self.rows = row + len(values)
