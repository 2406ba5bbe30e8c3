"""Everything about binary codes: training (training/), code stores (storage/), search and metrics (evaluation/)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hashkit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
