"""Bi-half net (Li and van Gemert, AAAI 2021): label-free hashing by maximising bit entropy.

The bi-half layer codes a batch so that every bit is +1 on exactly half of it: per bit, the
half of the images with the largest outputs get +1, the rest -1 (the optimal transport of the
outputs onto a half/half distribution). Backward, the gradient passes straight through plus
gamma (h - b) / (B K), which pulls the outputs towards their codes. The loss keeps the
backbone features' cosine similarities in the codes' (under the head's dropout in training).
Equations and defaults: docs/methods.md.
"""

from __future__ import annotations

import torch

from .base import Batch, register
from .similarity import CosinePreservingMethod, cosine_preservation


class BiHalfSign(torch.autograd.Function):
    """Per column: +1 for the floor(B / 2) largest outputs, -1 for the rest."""

    @staticmethod
    def forward(ctx, outputs: torch.Tensor, gamma: float) -> torch.Tensor:
        size = outputs.shape[0]
        order = outputs.argsort(dim=0, descending=True)
        values = torch.ones_like(outputs)
        values[size // 2:] = -1
        codes = torch.empty_like(outputs).scatter_(0, order, values)
        ctx.save_for_backward(outputs, codes)
        ctx.gamma = gamma
        return codes

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        outputs, codes = ctx.saved_tensors
        return grad + ctx.gamma * (outputs - codes) / outputs.numel(), None


def bi_half(outputs: torch.Tensor, gamma: float) -> torch.Tensor:
    return BiHalfSign.apply(outputs, gamma)


@register
class BiHalf(CosinePreservingMethod):
    name = "bihalf"

    def __init__(self, gamma: float = 6.0, dropout: float = 0.5):
        self.gamma = float(gamma)
        self.dropout = float(dropout)

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        return cosine_preservation(self.batch_features(batch, outputs), bi_half(outputs["codes"], self.gamma))
