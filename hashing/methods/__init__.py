"""Hashing methods, found by name. Importing this package registers the built-in ones."""

from .base import METHODS, DeepMethod, FeatureMethod, Method, get_method, register
from . import bcdh, lsh  # noqa: F401,E402 - registration side effect

__all__ = ["METHODS", "DeepMethod", "FeatureMethod", "Method", "get_method", "register"]
