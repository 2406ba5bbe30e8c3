"""Pieces shared by the supervised methods."""

from __future__ import annotations

import numpy as np
import torch

from .base import Batch, DeepMethod, TrainingData, class_indices, image_batches


class SingleLabelMethod(DeepMethod):
    """A method trained on shuffled image batches, one class per image (``self.classes``)."""

    supervision = "labels"
    uses_maps = True

    def setup(self, data: TrainingData, bits: int, seed: int) -> None:
        self.classes = torch.from_numpy(class_indices(data.labels, self.name))

    def batches(self, epoch: int, batch_size: int, rng: np.random.Generator) -> list[Batch]:
        return image_batches(len(self.classes), batch_size, rng)


def squared_distances(codes: torch.Tensor) -> torch.Tensor:
    """(B, B) matrix of ||u_i - u_j||^2 / K: for codes in {-1, 1}^K, 4 x the normalised Hamming distance."""
    inner = codes @ codes.T
    norms = codes.pow(2).sum(dim=1)
    return (norms[:, None] + norms[None, :] - 2 * inner).clamp(min=0) / codes.shape[1]
