"""Safe outputs: an exclusive lock so two runs never write one output, atomic replacement, and the
digest that identifies a file's contents."""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ..errors import UserError

T = TypeVar("T")
GRACE_SECONDS = 2.0  # how long a lock held by a process that is dying is waited for


def when_released(attempt: Callable[[], T]) -> T:
    """``attempt()``, tried again for up to GRACE_SECONDS while it raises BlockingIOError: the
    worker processes of a run that was just killed hold its locks for a few milliseconds more."""
    deadline = time.monotonic() + GRACE_SECONDS
    while True:
        try:
            return attempt()
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def lock_file(target: Path) -> Path:
    """The lock file of ``target``: in a per-user folder of the system's runtime or temporary
    space, named by a hash of the target's real absolute path, so that no lock file litters the
    user's folders and every process that names the target, by any path, finds the same lock."""
    folder = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"hashkit-locks-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    real = os.path.realpath(target)
    return folder / f"{hashlib.sha256(real.encode()).hexdigest()[:32]}.lock"


@contextmanager
def exclusive_lock(target: Path, wait: bool = False) -> Iterator[None]:
    """Hold the lock of ``target`` (``lock_file``) for the duration; if another process holds
    it, fail (after GRACE_SECONDS, for a holder that is dying), or with ``wait``, wait for it.

    The lock is an advisory ``flock``: the kernel releases it when the holder dies, even by
    SIGKILL, so a crashed run never leaves a stale lock behind.
    """
    target = Path(target)
    output_folder(target.parent)
    fd = os.open(lock_file(target), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            if wait:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                when_released(lambda: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB))
        except BlockingIOError as error:
            raise UserError(f"{target} is in use by another hashkit process") from error
        yield
    finally:
        os.close(fd)


def output_file(path: Path, overwrite: bool = False) -> Path:
    """Check ``path`` as a file to write: not a folder, not an existing file unless ``overwrite``;
    its folder is created when missing."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists; use --overwrite to replace it")
    output_folder(path.parent)
    return path


def output_folder(path: Path) -> Path:
    """Create the folder ``path`` (and its parents) when missing; an error if a file is in the way."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise UserError(f"{error.filename or path} is a file, not a folder") from error
    except OSError as error:
        raise UserError(f"cannot create the folder {path}: {error.strerror}") from error
    return path


@contextmanager
def written_atomically(final_path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final_path`` to write, new (a leftover of a killed run is
    removed first); on success it replaces ``final_path`` in one step, so a file under its final
    name is always complete. On failure the temporary file is removed and ``final_path`` is left
    as it was. Callers hold ``final_path``'s lock."""
    final_path = Path(final_path)
    tmp_path = final_path.with_name(final_path.name + ".tmp")
    tmp_path.unlink(missing_ok=True)  # a killed run's leftover: never continued
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, final_path)
    finally:
        tmp_path.unlink(missing_ok=True)


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
