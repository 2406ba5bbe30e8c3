"""The method interface and registry.

A method declares the supervision it needs and is one of two kinds:

- ``DeepMethod``: trained by gradient descent. It sees the training data once (``setup``),
  may run an alternating step at the start of each epoch (``start_epoch``: update auxiliary
  binary codes, refine a similarity matrix, mine hard negatives), lays out each epoch's
  batches (``batches``) and scores a batch of network outputs (``loss``).
- ``FeatureMethod``: fits the linear hash layer in closed form on frozen backbone features.

Codes are always the sign of the network output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from hashkit.sfm_pairs.pairs_file import Pairs

from ..errors import UserError


@dataclass
class TrainingData:
    """What a method trains from: the images, and where available their backbone features
    (frozen backbone, or methods that start from feature-space neighbours) and mined pairs."""

    paths: list[Path]
    features: np.ndarray | None = None  # (N, D) backbone features of ``paths``
    pairs: Pairs | None = None  # from pairs.h5; image i of the pairs is paths[i]


@dataclass
class Batch:
    """The training images of one step (rows of the network output, in order) and whatever
    the method needs to score them."""

    indices: np.ndarray
    payload: dict[str, Any] = field(default_factory=dict)


class Method:
    name: ClassVar[str]
    supervision: ClassVar[str]  # "pairs" (from reconstruct), "none", "labels" or "multilabels"


class DeepMethod(Method):
    def wants_features(self, has_pairs: bool) -> bool:
        """Whether setup() reads backbone features of the training images (they are computed
        then, through the feature cache, even when the backbone is trained)."""
        return False

    def setup(self, data: TrainingData, bits: int, seed: int) -> None:
        raise NotImplementedError

    def start_epoch(self, epoch: int, epochs: int, outputs: Callable[[], np.ndarray]) -> None:
        """Alternating step before epoch ``epoch`` of ``epochs``; ``outputs()`` computes the
        current real-valued codes (N, bits) of all training images. Default: nothing."""

    def batches(self, epoch: int, batch_size: int, rng: np.random.Generator) -> list[Batch]:
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
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


def get_method(name: str, **params: Any) -> Method:
    """A new instance of the method ``name``; ``params`` override its hyperparameters."""
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    try:
        return METHODS[name](**params)
    except TypeError as error:
        raise UserError(f"method {name}: {error}") from error
