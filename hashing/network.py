"""The hashing network: backbone features to a real-valued code of ``bits`` dimensions."""

from __future__ import annotations

import torch
from torch import nn


class HashNetwork(nn.Module):
    """``backbone``, an optional hidden layer (Linear + ReLU), then the linear hash layer.

    The binary code is the sign of the output. ``head`` maps backbone features to the output,
    so a frozen backbone's features can be cached and fed to the head directly.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, bits: int, hidden: int = 0):
        super().__init__()
        self.backbone = backbone
        self.hidden_layer = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU()) if hidden else nn.Identity()
        self.hash_layer = nn.Linear(hidden or feature_dim, bits)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.hash_layer(self.hidden_layer(features))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))
