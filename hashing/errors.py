"""The one exception type for mistakes a user can fix (bad paths, wrong files, bad options)."""


class UserError(Exception):
    """A problem with the user's input; the CLI prints its message as one line and exits 1."""


def refuse_newer_schema(path: object, kind: str, version: int, supported: int) -> None:
    """A UserError when a file's schema ``version`` is newer than the ``supported`` one."""
    if version > supported:
        raise UserError(f"{path} was written by a newer hashkit ({kind} schema {version}); upgrade hashkit to read it")
