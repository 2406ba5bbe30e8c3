"""The one exception type for mistakes a user can fix (bad paths, wrong files, bad options)."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem with the user's input; the CLI prints its message as one line and exits 1."""


def existing_file(path: object, kind: str) -> Path:
    """``path`` as a Path; a UserError "no such ``kind``" unless it is a file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such {kind}: {path}")
    return path


def refuse_newer_schema(path: object, kind: str, version: int, supported: int) -> None:
    """A UserError when a file's schema ``version`` is newer than the ``supported`` one."""
    if version > supported:
        raise UserError(f"{path} was written by a newer hashkit ({kind} schema {version}); upgrade hashkit to read it")
