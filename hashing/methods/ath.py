"""ATH: attention-based triplet hashing (Li et al., "Deep triplet hashing network for case-based
medical image retrieval", Medical Image Analysis 2021).

A spatial-attention module re-weights the backbone's last feature maps; the attended maps are
pooled and pass a fully connected layer, which feeds the hash layer and a classifier side by
side. The triplet cross-entropy loss joins a triplet margin term on the codes and the
classification cross-entropy; a quantization term (ours) pulls the codes to +-1.
Equations and defaults: docs/methods.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, quantization_error, register
from .heads import Head
from .supervised import SingleLabelMethod, squared_distances


class SpatialAttention(nn.Module):
    """ATH's spatial attention: the maps are max-pooled (3x3, stride 1), aggregated along the
    channel axis by element-wise maximum and mean, and a 3x3 convolution of the two aggregates
    gives a mask in (0, 1) that multiplies the pooled maps."""

    def __init__(self, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        pooled = F.max_pool2d(maps, 3, stride=1, padding=1)
        aggregates = torch.stack([pooled.amax(dim=1), pooled.mean(dim=1)], dim=1)
        return pooled * torch.sigmoid(self.conv(aggregates))


class ATHHead(Head):
    """Attention, global average pooling, a fully connected layer, then two parallel layers: the
    hash layer and the classifier."""

    def __init__(self, channels: int, bits: int, fc: int, classes: int):
        super().__init__()
        self.attention = SpatialAttention()
        self.fc = nn.Sequential(nn.Linear(channels, fc), nn.ReLU())
        self.hash_layer = nn.Linear(fc, bits)
        self.classifier = nn.Linear(fc, classes)

    def outputs(self, maps: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.fc(self.attention(maps).mean(dim=(2, 3)))
        return {"codes": self.hash_layer(features), "logits": self.classifier(features)}


def triplet_margin_loss(codes: torch.Tensor, labels: torch.Tensor, margin_bits: float) -> torch.Tensor:
    """Mean of max(0, m + d(a, p) - d(a, n)) over the batch's (anchor, positive, negative) triplets
    that violate the margin (0 when none does), with d(u, v) = ||u - v||^2 / K (4 x the normalised
    relaxed Hamming distance) and m the margin of ``margin_bits`` bits on that scale, 4 margin_bits / K.
    Averaging over the violating triplets only keeps the pull on classes still too close from being
    diluted by the many triplets already satisfied."""
    distance = squared_distances(codes)
    margin = 4 * margin_bits / codes.shape[1]
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=codes.device)
    valid = positive[:, :, None] & ~same[:, None, :]  # [a, p, n]
    if not valid.any():
        return codes.sum() * 0
    hinge = torch.relu(margin + distance[:, :, None] - distance[:, None, :])[valid]
    active = hinge > 0
    return hinge[active].mean() if active.any() else hinge.sum()


@register
class ATH(SingleLabelMethod):
    name = "ath"

    def __init__(self, margin: float | None = None, classification_weight: float = 1.0,
                 quantization_weight: float = 0.01, fc: int = 1024):
        # Hamming separation in bits between a positive and a negative; default min(8, K / 4)
        self.margin = None if margin is None else float(margin)
        self.classification_weight = float(classification_weight)
        self.quantization_weight = float(quantization_weight)
        self.fc = int(fc)

    def build_head(self, in_features: int, bits: int, hidden: int, classes: int) -> Head:
        return ATHHead(in_features, bits, self.fc, classes)

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        codes = torch.tanh(outputs["codes"])
        labels = self.classes[batch.indices].to(codes.device)
        margin = self.margin if self.margin is not None else min(8.0, codes.shape[1] / 4)
        return (triplet_margin_loss(codes, labels, margin)
                + self.classification_weight * F.cross_entropy(outputs["logits"], labels)
                + self.quantization_weight * quantization_error(codes))
