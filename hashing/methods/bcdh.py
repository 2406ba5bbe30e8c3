"""BCDH: binary constrained deep hashing from pairs mined from 3D models (Do et al.).

Loss per batch (see docs/methods.md): a contrastive term on the normalised squared distance
between the codes of a pair, plus the quantization error between the codes and their signs.
"""

from __future__ import annotations

import torch

from .base import DeepMethod, register


@register
class BCDH(DeepMethod):
    name = "bcdh"
    supervision = "pairs"

    def __init__(self, margin: float = 2.0, quantization_weight: float = 0.1):
        self.margin = margin  # in units of ||b_i - b_j||^2 / bits, which is 4 x the normalised Hamming distance
        self.quantization_weight = quantization_weight

    def loss(self, outputs: torch.Tensor, pairs: torch.Tensor, similar: torch.Tensor) -> torch.Tensor:
        bits = outputs.shape[1]
        distance = (outputs[pairs[:, 0]] - outputs[pairs[:, 1]]).pow(2).sum(dim=1) / bits
        pull = similar * distance
        push = (1 - similar) * torch.clamp(self.margin - distance, min=0)
        quantization = (outputs - torch.sign(outputs).detach()).pow(2).sum(dim=1) / bits
        return (pull + push).mean() + self.quantization_weight * quantization.mean()
