"""HashNet: deep learning to hash by continuation (Cao et al., ICCV 2017).

The code is relaxed as u = tanh(beta_t z), z the head's output, with beta_t = (1 + gamma t)^power
growing with the optimisation step t, so u approaches sign(z) during training. The loss is a
weighted maximum likelihood of the pairwise label similarities with theta_ij = (alpha / K)
u_i . u_j, similar and dissimilar pairs weighted by |S| / |S1| and |S| / |S0| so both kinds
count equally. Pairs: every batch image against every training image (codes from a memory).
Equations and defaults: docs/methods.md.
"""

from __future__ import annotations

import torch

from .base import Batch, TrainingData, register
from .similarity import PairwiseMemoryMethod, pairwise_likelihood


def balanced_mean(values: torch.Tensor, similar: torch.Tensor) -> torch.Tensor:
    """sum(w_ij values_ij) / |S| with w = |S| / |S1| on similar pairs and |S| / |S0| on the others:
    the mean over similar pairs plus the mean over dissimilar pairs (a kind absent adds 0)."""
    positive = similar > 0
    return (values[positive].sum() / positive.sum().clamp(min=1)
            + values[~positive].sum() / (~positive).sum().clamp(min=1))


@register
class HashNet(PairwiseMemoryMethod):
    name = "hashnet"

    def __init__(self, alpha: float = 10.0, gamma: float = 0.005, power: float = 0.5):
        self.alpha = float(alpha)  # theta = alpha / K * u_i . u_j
        self.gamma = float(gamma)
        self.power = float(power)

    def setup(self, data: TrainingData, bits: int, seed: int) -> None:
        super().setup(data, bits, seed)
        self.steps = 0

    @property
    def beta(self) -> float:
        """The continuation scale (1 + gamma t)^power after t optimisation steps."""
        return (1 + self.gamma * self.steps) ** self.power

    def relax(self, outputs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.beta * outputs)

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        codes = self.relax(outputs["codes"])
        inner, similar = self.against_memory(codes, batch)
        theta = self.alpha / codes.shape[1] * inner
        return balanced_mean(pairwise_likelihood(theta, similar), similar)

    def after_step(self, batch: Batch, outputs: dict[str, torch.Tensor]) -> None:
        super().after_step(batch, outputs)
        self.steps += 1
