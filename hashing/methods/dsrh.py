"""DSRH: deep semantic ranking based hashing for multi-label images (Zhao et al., CVPR 2015).

Relevance of image i to query q is the number of labels they share, r_qi. The hash layer reads
two levels of features (two fully connected layers on the pooled backbone maps, as the paper
feeds fc6 and fc7 to it). The ranking-list surrogate loss penalises every in-batch triplet
(q, i, j) with r_qi > r_qj whose code distances are not ordered by a margin, weighted by the
NDCG-style gain difference (2^r_qi - 2^r_qj) / Z_q; a balance term keeps each bit's batch mean
near zero. Equations and defaults: docs/methods.md.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import Batch, DeepMethod, TrainingData, image_batches, register
from .heads import Head


class DSRHHead(Head):
    def __init__(self, channels: int, bits: int, fc: int):
        super().__init__()
        self.fc6 = nn.Sequential(nn.Linear(channels, fc), nn.ReLU())
        self.fc7 = nn.Sequential(nn.Linear(fc, fc), nn.ReLU())
        self.hash_layer = nn.Linear(2 * fc, bits)  # W6^T fc6 + W7^T fc7 + b

    def outputs(self, maps: torch.Tensor) -> dict[str, torch.Tensor]:
        fc6 = self.fc6(maps.mean(dim=(2, 3)))
        return {"codes": self.hash_layer(torch.cat([fc6, self.fc7(fc6)], dim=1))}


def ideal_dcg(relevance: torch.Tensor) -> torch.Tensor:
    """Per row: sum over ranks n of (2^r_(n) - 1) / log2(n + 1), relevances sorted descending."""
    ordered = relevance.sort(dim=1, descending=True).values
    discounts = torch.log2(torch.arange(2, relevance.shape[1] + 2, dtype=relevance.dtype, device=relevance.device))
    return ((2 ** ordered - 1) / discounts).sum(dim=1)


def ranking_loss(codes: torch.Tensor, relevance: torch.Tensor, margin: float) -> torch.Tensor:
    """Weighted triplet ranking loss of a batch: codes (B, K) in [-1, 1], relevance (B, B) counts.

    For query q and items i, j (both != q) with r_qi > r_qj: w_qij * max(0, (d_qi - d_qj) / K +
    margin), with d the relaxed Hamming distance (K - h_q.h_x) / 2 and w_qij = (2^r_qi - 2^r_qj) /
    Z_q, Z_q the ideal DCG of q's in-batch list; summed over triplets, averaged over queries.
    """
    size, bits = codes.shape
    others = ~torch.eye(size, dtype=torch.bool, device=codes.device)
    relevance = relevance.float()
    distance = (bits - codes @ codes.T) / 2
    ordered = (relevance[:, :, None] > relevance[:, None, :]) & others[:, :, None] & others[:, None, :]
    gains = 2 ** relevance
    normaliser = ideal_dcg(relevance.masked_fill(~others, 0)).clamp(min=1e-12)
    weights = (gains[:, :, None] - gains[:, None, :]) / normaliser[:, None, None]
    hinge = torch.relu((distance[:, :, None] - distance[:, None, :]) / bits + margin)
    return (weights * hinge * ordered).sum() / size


@register
class DSRH(DeepMethod):
    name = "dsrh"
    supervision = "multilabels"
    uses_maps = True

    def __init__(self, margin: float = 5 / 64, balance_weight: float = 1.0, fc: int = 1024):
        self.margin = float(margin)  # as a fraction of the code length (the paper's 5 bits of 64)
        self.balance_weight = float(balance_weight)
        self.fc = int(fc)

    def build_head(self, in_features: int, bits: int, hidden: int, classes: int) -> Head:
        return DSRHHead(in_features, bits, self.fc)

    def setup(self, data: TrainingData, bits: int, seed: int) -> None:
        self.labels = torch.from_numpy(data.labels.astype(np.float32))

    def batches(self, epoch: int, batch_size: int, rng: np.random.Generator) -> list[Batch]:
        return image_batches(len(self.labels), batch_size, rng)

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        codes = torch.tanh(outputs["codes"] / 2)  # 2 sigmoid(a) - 1, as in the paper
        labels = self.labels[batch.indices].to(codes.device)
        balance = codes.mean(dim=0).pow(2).mean()
        return ranking_loss(codes, labels @ labels.T, self.margin) + self.balance_weight * balance
