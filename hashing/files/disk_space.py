"""Room on disk: what a file may still grow by, the check made before writing to it, and the one
error line when a write does not fit.

HDF5 files modified in place (the code store, the feature cache) cannot survive a write that fails
half-way: the library's next flush or close leaves the file unreadable or crashes the process. So
their writers check the room a commit needs, with a margin, before writing any of it
(``ensure_room``). Files written whole (``outputs.write_bytes``) are written under a temporary
name, so a failed write only loses the temporary file; their errors are recognised here
(``is_out_of_space``) and told in one line.
"""

from __future__ import annotations

import errno
import math
import os
import resource
from pathlib import Path

import numpy as np

from hashkit.hashing.errors import UserError

METADATA_BYTES = 256 << 10  # added to every HDF5 estimate: metadata, B-tree nodes, allocation slack
OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # no space, over quota, over the file size limit
OUT_OF_SPACE_TEXT = tuple(os.strerror(code) for code in OUT_OF_SPACE)  # as h5py, torch and FAISS quote them


class NoSpaceError(UserError):
    """A write that does not fit on its file system; the message says what was kept."""


def mount_point(path: Path) -> Path:
    """The mount point of the file system that holds (or would hold) ``path``."""
    folder = Path(os.path.abspath(path))
    while not folder.exists() or not os.path.ismount(folder):
        folder = folder.parent
    return folder


def room_for(path: Path) -> int:
    """Bytes the file ``path`` (existing or new) may still grow by: the space of its file system
    available to this user, and at most what the file size limit (``ulimit -f``) leaves."""
    return _room(path)[0]


def _room(path: Path) -> tuple[int, str]:
    """``room_for(path)`` and where the limit comes from, for messages."""
    path = Path(path)
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    stats = os.statvfs(folder)
    room, where = stats.f_bavail * stats.f_frsize, f"on {mount_point(folder)}"
    size, limit = path.stat().st_size if path.exists() else 0, resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and limit - size < room:
        room, where = limit - size, "under the file size limit (ulimit -f)"
    return max(room, 0), where


def _size(count: int) -> str:
    return f"{count / (1 << 20):.1f} MiB"


def no_space(path: Path, kept: str, needed: int | None = None) -> NoSpaceError:
    """The error for a write to ``path`` that does not fit; ``kept`` says what is left as it was."""
    room, where = _room(path)
    wanted = f" (needs about {_size(needed)}, {_size(room)} available)" if needed else ""
    return NoSpaceError(f"no space left {where} for {path}{wanted}: {kept}")


def ensure_room(path: Path, needed: int, kept: str) -> None:
    """A ``NoSpaceError`` unless ``path`` may grow by ``needed`` bytes."""
    if room_for(path) < needed:
        raise no_space(path, kept, needed)


def is_out_of_space(error: BaseException) -> bool:
    """Whether ``error``, or an error it was raised from, is a write that failed for lack of space:
    an OSError with its errno, or h5py's, torch's or FAISS's errors that quote the system's message."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in OUT_OF_SPACE:
            return True
        if any(text in str(error) for text in OUT_OF_SPACE_TEXT):
            return True
        error = error.__cause__ or error.__context__
    return False


def chunk_growth(dataset, length: int) -> int:
    """Bytes HDF5 allocates to grow the chunked ``dataset`` to ``length`` rows: whole chunks."""
    rows = dataset.chunks[0]
    chunk_bytes = rows * dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=np.int64))
    return max(0, math.ceil(length / rows) - math.ceil(len(dataset) / rows)) * chunk_bytes
