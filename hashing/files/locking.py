"""Exclusive locks, so two runs never write one output; the lock files live in one private folder
of the machine, never beside the outputs."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from hashkit.hashing.errors import UserError

from .outputs import output_folder

T = TypeVar("T")
GRACE_SECONDS = 2.0  # how long a lock held by a process that is dying is waited for
LOCK_ROOT = Path("/tmp")  # where every run of this machine finds the lock folders, whatever its environment


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


def lock_folder() -> Path:
    """This user's folder of lock files, ``LOCK_ROOT/hashkit-locks-UID``: the same whatever the
    environment (a login shell and cron see other ``XDG_RUNTIME_DIR`` and ``TMPDIR``), created
    private, and refused unless it is a real folder of this user's that no one else may write."""
    folder = LOCK_ROOT / f"hashkit-locks-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    found = os.lstat(folder)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise UserError(f"the lock folder {folder} is not a private folder of yours (it is a link, another user's, "
                        "or open to others); remove it and run again")
    return folder


def lock_file(target: Path) -> Path:
    """The lock file of ``target`` in ``lock_folder()``, named by a hash of the target's real
    absolute path, so that no lock file litters the user's folders and every process that names
    the target, by any path, finds the same lock."""
    real = os.path.realpath(target)
    return lock_folder() / f"{hashlib.sha256(os.fsencode(real)).hexdigest()[:32]}.lock"


@contextmanager
def exclusive_lock(target: Path, wait: bool = False) -> Iterator[None]:
    """Hold the lock of ``target`` (``lock_file``) for the duration; if another process holds
    it, fail (after GRACE_SECONDS, for a holder that is dying), or with ``wait``, wait for it.

    The lock is an advisory ``flock``: the kernel releases it when the holder dies, even by
    SIGKILL, so a crashed run never leaves a stale lock behind.
    """
    target = Path(target)
    output_folder(target.parent)
    fd = os.open(lock_file(target), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
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
