"""Hashing methods, found by name. Importing this package registers the built-in ones."""

from .base import METHODS, Batch, DeepMethod, FeatureMethod, Method, TrainingData, get_method, register
from . import ath, bcdh, dsah, dsrh, exchnet, itq, lsh, rvssdh  # noqa: F401,E402 - registration side effect

__all__ = ["METHODS", "Batch", "DeepMethod", "FeatureMethod", "Method", "TrainingData", "get_method", "register"]
