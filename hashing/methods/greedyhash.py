"""GreedyHash (Su et al., NeurIPS 2018), label-free variant.

The code is b = sign(h) in the forward pass, h the head's output, and the gradient passes
through the sign unchanged (straight-through: the greedy update of the paper). The loss keeps
the backbone features' cosine similarities in the codes' and pulls |h| towards 1 with a cubic
penalty. ``dropout`` > 0 applies the authors' dropout to the head's input (and so to the cosine
targets) in training; it is off by default, as it lowers the authors' layout (the hash layer alone).
Equations and defaults: docs/methods.md.
"""

from __future__ import annotations

import torch

from .base import Batch, register
from .similarity import CosinePreservingMethod, cosine_preservation


def straight_through_sign(outputs: torch.Tensor) -> torch.Tensor:
    """sign(h) forward; backward, the gradient reaches h unchanged."""
    return outputs + (torch.sign(outputs) - outputs).detach()


@register
class GreedyHash(CosinePreservingMethod):
    name = "greedyhash"

    def __init__(self, quantization_weight: float = 0.1, dropout: float = 0.0):
        self.quantization_weight = float(quantization_weight)
        self.dropout = float(dropout)

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        codes = outputs["codes"]
        preservation = cosine_preservation(self.batch_features(batch, outputs), straight_through_sign(codes))
        return preservation + self.quantization_weight * (codes.abs() - 1).abs().pow(3).mean()
