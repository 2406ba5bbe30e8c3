"""HashNet: deep learning to hash by continuation (Cao et al., ICCV 2017).

The code is relaxed as u = tanh(beta z), z the head's output, with beta = sqrt(1 + floor(e / c))
raised every c epochs (e the epoch), so u approaches sign(z) in long runs. The loss is a weighted
maximum likelihood of the pairwise label similarities with theta_ij = alpha u_i . u_j, similar and
dissimilar pairs weighted by |S| / |S1| and |S| / |S0| so both kinds count equally. Pairs: every
batch image against every training image (codes from a memory). Scale and schedule as
DeepHash-pytorch has them; equations, defaults and departures: docs/methods.md.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from hashkit.hashing.errors import UserError

from .base import Batch, register
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

    def __init__(self, alpha: float = 0.1, continuation: int = 20):
        if int(continuation) < 1:
            raise UserError("hashnet: continuation (epochs between raises of beta) must be at least 1")
        self.alpha = float(alpha)  # theta = alpha u_i . u_j
        self.continuation = int(continuation)
        self.beta = 1.0

    def start_epoch(self, epoch: int, epochs: int, outputs: Callable[[], np.ndarray]) -> None:
        self.beta = (1 + epoch // self.continuation) ** 0.5
        super().start_epoch(epoch, epochs, outputs)

    def relax(self, outputs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.beta * outputs)

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        codes = self.relax(outputs["codes"])
        inner, similar = self.against_memory(codes, batch)
        return balanced_mean(pairwise_likelihood(self.alpha * inner, similar), similar)
