"""The hashing network: backbone features to a real-valued code of ``bits`` dimensions."""

from __future__ import annotations

import torch
from torch import nn


class HashNetwork(nn.Module):
    """``backbone`` then a linear hash layer; the binary code is the sign of the output."""

    def __init__(self, backbone: nn.Module, feature_dim: int, bits: int):
        super().__init__()
        self.backbone = backbone
        self.hash_layer = nn.Linear(feature_dim, bits)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.hash_layer(self.backbone(images))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)
