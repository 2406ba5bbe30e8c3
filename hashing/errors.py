"""The one exception type for mistakes a user can fix (bad paths, wrong files, bad options)."""


class UserError(Exception):
    """A problem with the user's input; the CLI prints its message as one line and exits 1."""
