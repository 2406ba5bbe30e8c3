"""Hashing methods, found by name. Importing this package imports each of its modules, so every
method registers itself (``@register``): a new method is one new file here."""

import importlib
import pkgutil

from .base import (
    METHODS,
    Batch,
    DeepMethod,
    FeatureMethod,
    Method,
    TrainingData,
    get_method,
    method_choices,
    register,
    saved_method,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "Batch", "DeepMethod", "FeatureMethod", "Method", "TrainingData", "get_method",
           "method_choices", "register", "saved_method"]
