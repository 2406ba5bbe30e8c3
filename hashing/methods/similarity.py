"""Pieces shared by the peer methods: pairwise likelihood on label sets against a memory of
every training image's code (DPSH, HashNet), and preservation of the backbone features'
cosine similarities (GreedyHash, Bi-half)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .base import Batch, DeepMethod, TrainingData, image_batches
from .heads import DropoutHead, Head


def label_similarity(labels: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """s_ij = 1 when multi-hot rows ``labels[i]`` and ``others[j]`` share a label, else 0 (float)."""
    return (labels @ others.T > 0).to(labels.dtype)


def pairwise_likelihood(theta: torch.Tensor, similar: torch.Tensor) -> torch.Tensor:
    """Elementwise -log p(s_ij | theta_ij) with p(s = 1) = sigmoid(theta): log(1 + e^theta) - s theta,
    with a stable softplus."""
    return F.softplus(theta) - similar * theta


class PairwiseMemoryMethod(DeepMethod):
    """A batch is scored against every training image: the memory holds each image's latest
    relaxed code (all of them from the network's outputs at the start of training, then each
    batch's after its step). The batch's own rows enter live, so in-batch pairs carry gradient
    both ways; the other rows are constants."""

    supervision = "multilabels"

    def relax(self, outputs: torch.Tensor) -> torch.Tensor:
        """The real-valued code the loss sees, from the head's outputs."""
        raise NotImplementedError

    def setup(self, data: TrainingData, bits: int, seed: int) -> None:
        self.labels = torch.from_numpy(data.labels.astype(np.float32))

    def start_epoch(self, epoch: int, epochs: int, outputs: Callable[[], np.ndarray]) -> None:
        if epoch == 0:
            self.memory = self.relax(torch.from_numpy(outputs()).float())

    def batches(self, epoch: int, batch_size: int, rng: np.random.Generator) -> list[Batch]:
        return image_batches(len(self.labels), batch_size, rng)

    def against_memory(self, codes: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) inner products u_i . u_j of the batch's codes with every training image's, and
        the (B, N) label similarity s_ij."""
        self.memory, self.labels = self.memory.to(codes.device), self.labels.to(codes.device)
        rows = torch.as_tensor(batch.indices, device=codes.device)
        others = self.memory.index_put((rows,), codes)
        return codes @ others.T, label_similarity(self.labels[rows], self.labels)

    def after_step(self, batch: Batch, outputs: dict[str, torch.Tensor]) -> None:
        """The batch's relaxed codes replace theirs in the memory."""
        codes = outputs["codes"]
        self.memory = self.memory.to(codes.device)
        self.memory[torch.as_tensor(batch.indices, device=codes.device)] = self.relax(codes)


def cosine_matrix(rows: torch.Tensor) -> torch.Tensor:
    unit = F.normalize(rows, dim=1)
    return unit @ unit.T


def cosine_preservation(features: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Mean over the batch's pairs i < j of (cos(f_i, f_j) - cos(b_i, b_j))^2."""
    i, j = torch.triu_indices(len(codes), len(codes), offset=1, device=codes.device)
    return (cosine_matrix(features)[i, j] - cosine_matrix(codes)[i, j]).pow(2).mean()


class CosinePreservingMethod(DeepMethod):
    """Label-free: the codes of a batch keep the pairwise cosine similarities of the images'
    backbone features (pooled; those of the initial backbone when the backbone trains), under the
    dropout (rate ``self.dropout``) that the head applies to its input in training."""

    supervision = "none"
    dropout: float

    def build_head(self, in_features: int, bits: int, hidden: int, classes: int) -> Head:
        return DropoutHead(in_features, bits, hidden, self.dropout)

    def wants_features(self, has_pairs: bool) -> bool:
        return True

    def setup(self, data: TrainingData, bits: int, seed: int) -> None:
        features = data.features
        if features.ndim == 4:
            features = features.mean(axis=(2, 3), dtype=np.float32)
        self.features = torch.from_numpy(np.asarray(features, dtype=np.float32))

    def batches(self, epoch: int, batch_size: int, rng: np.random.Generator) -> list[Batch]:
        return image_batches(len(self.features), batch_size, rng)

    def batch_features(self, batch: Batch, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch's features under the dropout mask of the head's input."""
        kept = outputs["kept"]
        return self.features[batch.indices].to(kept.device) * kept
