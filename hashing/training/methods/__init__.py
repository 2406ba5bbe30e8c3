"""Hashing methods, found by name. Importing this package registers the built-in ones."""

from .base import METHODS, Batch, DeepMethod, FeatureMethod, Method, TrainingData, get_method, register, \
    saved_method
from . import ath, bcdh, dsah, dsrh, exchnet, itq, lsh, rvssdh  # noqa: F401,E402 - registration side effect
from . import bihalf, csq, dpsh, greedyhash, hashnet  # noqa: F401,E402 - peers, registered likewise

__all__ = ["METHODS", "Batch", "DeepMethod", "FeatureMethod", "Method", "TrainingData", "get_method", "register",
           "saved_method"]
