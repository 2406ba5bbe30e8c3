"""Where hashkit keeps what it may reuse between runs (no heavy imports: every command reads it)."""

from __future__ import annotations

import os
from pathlib import Path


def _hashkit_cache() -> Path:
    """``$XDG_CACHE_HOME/hashkit``, else ``~/.cache/hashkit``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hashkit"


def default_cache_dir() -> Path:
    """The feature cache folder: ``$XDG_CACHE_HOME/hashkit/features``, else ``~/.cache/hashkit/features``."""
    return _hashkit_cache() / "features"


def traced_networks_dir() -> Path:
    """The folder of traced network copies (``storage.traced_copy``), beside the feature cache."""
    return _hashkit_cache() / "networks"
