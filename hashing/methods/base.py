"""The method interface and registry.

A method declares what it learns from (``supervision``: a key of SUPERVISION) and is one of two kinds:

- ``DeepMethod``: trained by gradient descent. It sees the training data once (``setup``),
  may run an alternating step at the start of each epoch (``start_epoch``: update auxiliary
  binary codes, refine a similarity matrix, mine hard negatives), lays out each epoch's
  batches (``batches``) and scores a batch of network outputs (``loss``).
- ``FeatureMethod``: fits the linear hash layer in closed form on frozen backbone features.

A method also builds the head of its network (``build_head``): by default a hidden layer and a
linear hash layer on the pooled backbone features; methods whose ``uses_maps`` is true read the
backbone's last feature maps instead (attention, VLAD, parts). Codes are always the sign of the
head's output.

The contract a new method keeps (``tests/test_method_contract.py`` checks it for every registered
method, and ``hashkit train --method`` lists them from the registry):

- It is one module of this package with a class decorated ``@register``, whose constructor takes
  its hyperparameters as keyword arguments (``--param KEY=VALUE``, stored in the model file).
- Its state is its instance attributes. After every epoch the trainer checkpoints all of them but
  modules and functions (``training.resume.object_state``) and restores them on ``--resume``;
  ``setup`` must rebuild anything left out. An attribute ``resume.snapshot`` cannot store (other
  than arrays, tensors, random generators, numbers, strings and lists or dicts of them) fails the
  run when its first checkpoint is written, at the end of epoch 1.
- ``loss`` leaves the state alone (state that follows the batches changes in ``after_step``), so
  a resumed run ends where the uninterrupted one ends.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from hashkit.hashing.errors import UserError
from hashkit.hashing.files.pairs_file import Pairs

from .heads import Head, MLPHead


@dataclass
class TrainingData:
    """What a method trains from: the images, and where available their backbone features
    (frozen backbone, or methods that start from feature-space neighbours), mined pairs, labels."""

    paths: list[Path]
    features: np.ndarray | None = None  # (N, D) backbone features or (N, C, h, w) maps of ``paths``
    pairs: Pairs | None = None  # from pairs.h5; image i of the pairs is paths[i]
    labels: np.ndarray | None = None  # (N, len(classes)) multi-hot bool
    classes: list[str] = field(default_factory=list)

    def subset(self, keep: np.ndarray) -> TrainingData:
        """The images where ``keep`` (bool) is true, with their features and labels (not pairs)."""
        return TrainingData([p for p, k in zip(self.paths, keep) if k],
                            None if self.features is None else self.features[keep], None,
                            None if self.labels is None else self.labels[keep], self.classes)


@dataclass
class Batch:
    """The training images of one step (rows of the network output, in order) and whatever
    the method needs to score them."""

    indices: np.ndarray
    payload: dict[str, Any] = field(default_factory=dict)


class Method:
    name: ClassVar[str]
    supervision: ClassVar[str]  # "pairs" (from reconstruct), "none", "labels" or "multilabels"
    uses_maps: ClassVar[bool] = False  # the head reads feature maps rather than pooled features
    freezes_backbone: ClassVar[bool] = False  # train the head alone unless told otherwise

    def build_head(self, in_features: int, bits: int, hidden: int, classes: int) -> Head:
        """The head for a backbone output of width ``in_features`` (features or map channels)."""
        return MLPHead(in_features, bits, hidden)

    def takes_hidden(self) -> bool:
        """Whether ``--hidden`` applies: heads on feature maps set their own widths."""
        return not self.uses_maps


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

    def init_head(self, head: Head, data: TrainingData) -> None:
        """Set the head's starting weights after ``setup`` (not when a run resumes). Default: the
        layers' own random initialisation."""

    def batches(self, epoch: int, batch_size: int, rng: np.random.Generator) -> list[Batch]:
        raise NotImplementedError

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        """The batch's loss from the head's ``outputs`` (``outputs["codes"]``: (B, bits)). It must
        not change the method's state: state that follows the batches is updated in ``after_step``."""
        raise NotImplementedError

    def step_inputs(self, batch: Batch, device: torch.device) -> dict[str, object]:
        """Extra keyword inputs of the head for ``batch`` (every parameter must be used inside
        the head's forward pass, where DistributedDataParallel sees it). Default: none."""
        return {}

    def after_step(self, batch: Batch, outputs: dict[str, torch.Tensor]) -> None:
        """After the optimiser step of ``batch``, given the head's (detached) ``outputs``. Under
        torchrun every process calls it for the batches of all processes, in rank order, so that
        state kept per batch (a memory of codes, a step count, class sums) stays the same
        everywhere. Default: nothing."""


def image_batches(count: int, batch_size: int, rng: np.random.Generator) -> list[Batch]:
    """One epoch of shuffled image batches; a last batch of a single image is dropped."""
    order = rng.permutation(count)
    return [Batch(order[start:start + batch_size]) for start in range(0, count, batch_size)
            if len(order[start:start + batch_size]) > 1]


def quantization_error(codes: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||u - sign(u)||^2 / K, for codes u in [-1, 1]."""
    return (codes - torch.sign(codes).detach()).pow(2).sum(dim=1).mean() / codes.shape[1]


def class_indices(labels: np.ndarray, name: str) -> np.ndarray:
    """Class index per image from a one-label-per-image multi-hot matrix."""
    counts = labels.sum(axis=1)
    if (counts != 1).any():
        raise UserError(f"{name} takes exactly one label per image; {int((counts != 1).sum())} images have "
                        f"{int(counts[counts != 1][0])}")
    return labels.argmax(axis=1)


class FeatureMethod(Method):
    """Fits the linear hash layer in closed form on frozen backbone features."""

    def fit(self, features: np.ndarray, bits: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Weight (bits, D) and bias (bits,) such that codes are sign(weight @ f + bias)."""
        raise NotImplementedError


METHODS: dict[str, type[Method]] = {}
SUPERVISION = {  # what a method learns from -> how --method's help introduces it
    "pairs": "From 3D-mined pairs (--pairs)",
    "none": "Label-free (--images, or --pairs for its images)",
    "labels": "Supervised, one label per image (--labels)",
    "multilabels": "Supervised, one or more labels per image (--labels)",
}


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


def saved_method(name: str, params: dict[str, Any]) -> Method:
    """``get_method`` for a model file's network: hyperparameters the method no longer takes (renamed
    or retired since the file was written; e.g. HashNet's ``gamma``) are left out, so older model
    files still encode."""
    if name not in METHODS:
        return get_method(name)  # the one-line error for an unknown method
    known = inspect.signature(METHODS[name]).parameters
    return get_method(name, **{key: value for key, value in params.items() if key in known})


def method_choices() -> str:
    """The registered methods grouped by what they learn from, for ``--method``'s help."""
    groups = {kind: sorted(name for name, cls in METHODS.items() if cls.supervision == kind) for kind in SUPERVISION}
    return ". ".join(f"{SUPERVISION[kind]}: {', '.join(names)}" for kind, names in groups.items() if names)
