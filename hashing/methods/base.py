"""The method interface and registry.

A method declares the supervision it needs and either a loss for gradient training of the
whole network (``DeepMethod``) or a closed-form fit of the hash layer on frozen backbone
features (``FeatureMethod``). Codes are always the sign of the network output.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from ..errors import UserError

class Method:
    name: ClassVar[str]
    supervision: ClassVar[str]  # "pairs" (from reconstruct), "none", "labels" or "multilabels"


class DeepMethod(Method):
    """Trained end to end by gradient descent on ``loss``."""

    def loss(self, outputs: torch.Tensor, pairs: torch.Tensor, similar: torch.Tensor) -> torch.Tensor:
        """Loss for a batch: ``outputs`` (U, bits) real codes of U images, ``pairs`` (B, 2)
        indices into ``outputs``, ``similar`` (B,) 1.0 for a positive pair, 0.0 for a negative."""
        raise NotImplementedError


class FeatureMethod(Method):
    """Fits the linear hash layer in closed form on frozen backbone features."""

    def fit(self, features: np.ndarray, bits: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Weight (bits, D) and bias (bits,) such that codes are sign(weight @ f + bias)."""
        raise NotImplementedError


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[name]()
