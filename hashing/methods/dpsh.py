"""DPSH: deep pairwise-supervised hashing (Li, Wang and Kang, IJCAI 2016).

Images i and j are similar (s_ij = 1) when they share a label. With u the head's raw output
and theta_ij = u_i . u_j / 2, the loss is the negative log-likelihood of the similarities,
log(1 + e^theta_ij) - s_ij theta_ij, over every pair of a batch image and a training image
(the others' codes from a memory), plus a quantization term ||u_i - sign(u_i)||^2.
Equations and defaults: docs/methods.md.
"""

from __future__ import annotations

import torch

from .base import Batch, quantization_error, register
from .similarity import PairwiseMemoryMethod, pairwise_likelihood


@register
class DPSH(PairwiseMemoryMethod):
    name = "dpsh"

    def __init__(self, quantization_weight: float = 0.1):
        self.quantization_weight = float(quantization_weight)

    def relax(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        codes = outputs["codes"]
        inner, similar = self.against_memory(codes, batch)
        return pairwise_likelihood(inner / 2, similar).mean() + self.quantization_weight * quantization_error(codes)
