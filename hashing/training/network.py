"""The hashing network: a backbone, then a head (``hashing.methods.heads``) that maps its output
to a real-valued code. ``head`` is a separate module, so a frozen backbone's output can be cached
and fed to it directly.
"""

from __future__ import annotations

import torch
from torch import nn

from hashkit.hashing.methods.heads import Head


class HashNetwork(nn.Module):
    def __init__(self, backbone: nn.Module, head: Head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))
