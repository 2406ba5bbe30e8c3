"""Everything about binary codes, in layers (README's Layout): process-wide helpers here, then
files/ (file safety and shared formats), methods/, training/, storage/ (code stores), search/
(indexes) and evaluation/ (metrics, query, reports)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hashkit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
