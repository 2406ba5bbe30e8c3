"""Where hashkit keeps what it may reuse between runs (no heavy imports: every command reads it)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """The feature cache folder: ``$XDG_CACHE_HOME/hashkit/features``, else ``~/.cache/hashkit/features``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hashkit" / "features"
