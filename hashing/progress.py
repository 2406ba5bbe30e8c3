"""Progress reporting on stderr, shown only when stderr is a terminal (quiet under cron)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr that disables itself when stderr is not a terminal, and under torchrun
    in every process but rank 0."""
    quiet = None if os.environ.get("RANK", "0") == "0" else True
    return tqdm(iterable, file=sys.stderr, disable=quiet, dynamic_ncols=True, **kwargs)


def note(message: str) -> None:
    """A one-line status message on stderr, for terminals only."""
    if sys.stderr.isatty():
        tqdm.write(message, file=sys.stderr)
