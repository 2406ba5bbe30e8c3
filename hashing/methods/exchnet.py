"""ExchNet: a unified hashing network for fine-grained image retrieval (Cui et al., ECCV 2020).

- Representation: the backbone maps are reduced to local descriptors; M attention maps (softmax
  over positions) pool them into M part-level features, and average pooling gives the global
  feature.
- Attention constraints: different parts should look at different places (spatial diversity:
  overlap of their attention maps) and describe different things (semantic diversity: cosine
  similarity of an image's part features above a margin).
- Local feature alignment: class anchors (the mean part features of each class over the previous
  epoch); each part feature is exchanged with its class anchor at random, and the exchanged
  features, through the same hash layer, must still satisfy the hashing loss.
- Hashing, learned alternately: the network step fits u_i . v_j / K to the label similarity S_ij
  against fixed binary codes V of all training images plus gamma ||v_i - u_i||^2, ADSH's
  asymmetric loss divided by n K^2 (gamma 20,000, chosen on a validation split: ADSH's 200 lets
  the codes of whole classes merge); before every epoch the binary step updates V bit by bit in
  closed form. A classifier on the features is our addition.
Equations, defaults and what is our reading: docs/methods.md.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, TrainingData, register
from .heads import Head
from .supervised import SingleLabelMethod


class ExchNetHead(Head):
    def __init__(self, channels: int, bits: int, classes: int, parts: int, dim: int):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(channels, dim, 1), nn.ReLU())
        self.attention = nn.Conv2d(dim, parts, 1)
        self.hash_layer = nn.Linear((parts + 1) * dim, bits)
        self.classifier = nn.Linear((parts + 1) * dim, classes)

    def outputs(self, maps: torch.Tensor,
                exchange: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Codes, class logits, part and global features, attention; with ``exchange`` (a (B, M, 1)
        swap mask and the (B, M, d) anchors of each row's class), also the codes of the features
        whose masked parts are exchanged for the anchors."""
        descriptors = self.reduce(maps)
        local = descriptors.flatten(2)  # (B, d, N)
        attention = torch.softmax(self.attention(descriptors).flatten(2), dim=2)  # (B, M, N)
        parts = torch.einsum("bmn,bdn->bmd", attention, local)
        global_feature = local.mean(dim=2)
        outputs = {"codes": self.code(global_feature, parts), "global": global_feature, "parts": parts,
                   "attention": attention, "logits": self.classifier(self.joined(global_feature, parts))}
        if exchange is not None:
            swap, anchors = exchange
            outputs["exchanged_codes"] = self.code(global_feature, torch.where(swap, anchors, parts))
        return outputs

    @staticmethod
    def joined(global_feature: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
        return torch.cat([global_feature, parts.flatten(1)], dim=1)

    def code(self, global_feature: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
        return self.hash_layer(self.joined(global_feature, parts))


def attention_constraints(attention: torch.Tensor, parts: torch.Tensor, margin: float) -> torch.Tensor:
    """Spatial diversity (mean cosine overlap of different parts' attention maps) plus semantic
    diversity (mean of max(0, cos(l_m, l_n) - margin) over different parts of an image)."""
    count = attention.shape[1]
    if count < 2:
        return attention.sum() * 0
    different = ~torch.eye(count, dtype=torch.bool, device=attention.device)
    a = F.normalize(attention, dim=2)
    p = F.normalize(parts, dim=2)
    spatial = (a @ a.transpose(1, 2))[:, different].mean()
    semantic = torch.relu((p @ p.transpose(1, 2))[:, different] - margin).mean()
    return spatial + semantic


def binary_step(codes: np.ndarray, outputs: np.ndarray, onehot: np.ndarray, gamma: float) -> np.ndarray:
    """ADSH's closed-form bitwise update of V minimising ||U V^T||^2 + tr(V Q^T), Q = -2K S^T U -
    2 gamma U, S = 2 Y Y^T - 1 (formed through the labels, never as an n x n matrix)."""
    bits = outputs.shape[1]
    s_u = 2 * onehot @ (onehot.T @ outputs) - outputs.sum(axis=0, keepdims=True)  # S^T U (S symmetric)
    q = -2 * bits * s_u - 2 * gamma * outputs
    codes = codes.copy()
    for k in range(bits):
        rest = np.arange(bits) != k
        column = -np.sign(2 * codes[:, rest] @ (outputs[:, rest].T @ outputs[:, k]) + q[:, k])
        codes[:, k] = np.where(column == 0, codes[:, k], column)
    return codes


@register
class ExchNet(SingleLabelMethod):
    name = "exchnet"

    def __init__(self, parts: int = 4, dim: int = 256, gamma: float = 20000.0, classification_weight: float = 1.0,
                 exchange_weight: float = 1.0, attention_weight: float = 0.1, diversity_margin: float = 0.5,
                 exchange_probability: float = 0.5):
        self.parts, self.dim, self.gamma = int(parts), int(dim), float(gamma)
        self.classification_weight = float(classification_weight)
        self.exchange_weight = float(exchange_weight)
        self.attention_weight = float(attention_weight)
        self.diversity_margin = float(diversity_margin)
        self.exchange_probability = float(exchange_probability)

    def build_head(self, in_features: int, bits: int, hidden: int, classes: int) -> Head:
        return ExchNetHead(in_features, bits, classes, self.parts, self.dim)

    def setup(self, data: TrainingData, bits: int, seed: int) -> None:
        super().setup(data, bits, seed)
        self.onehot = np.eye(data.labels.shape[1])[self.classes.numpy()]
        self.codes = np.random.default_rng(seed).choice([-1.0, 1.0], size=(len(self.classes), bits))
        self.anchors: torch.Tensor | None = None  # (classes, parts, dim), from the previous epoch
        self.part_sums = torch.zeros(data.labels.shape[1], self.parts, self.dim)
        self.part_counts = torch.zeros(data.labels.shape[1])
        self.generator = torch.Generator().manual_seed(seed)

    def start_epoch(self, epoch: int, epochs: int, outputs: Callable[[], np.ndarray]) -> None:
        """Binary step on the current codes; anchors from the last epoch's part features."""
        self.codes = binary_step(self.codes, np.tanh(outputs()).astype(np.float64), self.onehot, self.gamma)
        if self.part_counts.sum() > 0:
            seen = self.part_counts > 0
            anchors = torch.zeros_like(self.part_sums)
            anchors[seen] = self.part_sums[seen] / self.part_counts[seen, None, None]
            self.anchors = anchors
        self.part_sums.zero_()
        self.part_counts.zero_()

    def step_inputs(self, batch: Batch, device: torch.device) -> dict[str, object]:
        """From the second epoch, the parts to exchange for their class anchors (local feature alignment)."""
        if self.anchors is None:
            return {}
        swap = torch.rand((len(batch.indices), self.parts), generator=self.generator) < self.exchange_probability
        anchors = self.anchors[self.classes[batch.indices]]
        return {"exchange": (swap[:, :, None].to(device), anchors.to(device))}

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        labels = self.classes[batch.indices].to(outputs["codes"].device)
        loss = self._hashing(torch.tanh(outputs["codes"]), batch.indices, labels) \
            + self.classification_weight * F.cross_entropy(outputs["logits"], labels) \
            + self.attention_weight * attention_constraints(outputs["attention"], outputs["parts"],
                                                            self.diversity_margin)
        if "exchanged_codes" in outputs:  # exchanged parts must give the same codes
            loss = loss + self.exchange_weight * self._hashing(torch.tanh(outputs["exchanged_codes"]),
                                                               batch.indices, labels)
        return loss

    def after_step(self, batch: Batch, outputs: dict[str, torch.Tensor]) -> None:
        """The batch's part features join its classes' sums for the next epoch's anchors."""
        labels = self.classes[batch.indices]
        self.part_sums.index_add_(0, labels, outputs["parts"].cpu())
        self.part_counts.index_add_(0, labels, torch.ones(len(labels)))

    def _hashing(self, codes: torch.Tensor, indices: np.ndarray, labels: torch.Tensor) -> torch.Tensor:
        """ADSH's asymmetric loss of the batch, divided by n K^2: mean_j (u_i . v_j / K - S_ij)^2
        + gamma ||v_i - u_i||^2 / (n K^2), averaged over the batch."""
        n, bits = self.codes.shape
        fixed = torch.as_tensor(self.codes, dtype=codes.dtype, device=codes.device)
        similarity = torch.where(labels[:, None] == self.classes.to(codes.device)[None, :], 1.0, -1.0)
        return ((codes @ fixed.T) / bits - similarity).pow(2).mean() \
            + self.gamma * (fixed[indices] - codes).pow(2).sum(dim=1).mean() / (n * bits * bits)
