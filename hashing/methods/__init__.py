"""Hashing methods, found by name. Importing this package registers the built-in ones."""

from . import ath, bcdh, bihalf, csq, dpsh, dsah, dsrh, exchnet, greedyhash, hashnet, itq, lsh, rvssdh  # noqa: F401,E402 - registration side effect  # noqa: F401,E402 - peers, registered likewise
from .base import METHODS, Batch, DeepMethod, FeatureMethod, Method, TrainingData, get_method, register, saved_method

__all__ = ["METHODS", "Batch", "DeepMethod", "FeatureMethod", "Method", "TrainingData", "get_method", "register",
           "saved_method"]
