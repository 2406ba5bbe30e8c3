"""DSAH: deep self-adaptive hashing (Lin et al., CIKM 2021), trained from images alone.

- Adaptive Neighbour Discovery (AND): an initial similarity matrix S in {+1, -1} from the
  shared k-nearest-neighbour structure of backbone features, refined during training from the
  learned codes (threshold from the statistics of the currently similar pairs).
- Pairwise Information Content (PIC): per-pair weights from a softmax over pair similarities,
  larger for more dissimilar pairs.
- Loss: PIC-weighted similarity reconstruction plus quantization. Details: docs/methods.md.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..errors import UserError
from ..pair_mining import neighbour_sets
from .base import Batch, DeepMethod, TrainingData, register

PIC_VARIANTS = ("row", "batch", "none")


def initial_similarity(features: np.ndarray, k: int, shared_fraction: float) -> np.ndarray:
    """S_ij = +1 when j is among i's k nearest neighbours (cosine) or i and j share at least
    ``shared_fraction`` of their k neighbours; -1 otherwise. Symmetric, +1 on the diagonal."""
    member = neighbour_sets(features, k)
    shared = member.astype(np.float32) @ member.T.astype(np.float32) / k
    similar = member | member.T | (shared >= shared_fraction)
    np.fill_diagonal(similar, True)
    return np.where(similar, 1, -1).astype(np.int8)


def refine_similarity(similarity: np.ndarray, codes: np.ndarray, spread: float) -> np.ndarray:
    """AND update: with C the cosine similarity of the current codes, and mu, sigma its mean and
    standard deviation over the currently similar pairs, S_ij = +1 iff C_ij >= mu - spread * sigma."""
    unit = codes / np.maximum(np.linalg.norm(codes, axis=1, keepdims=True), 1e-12)
    cosine = unit @ unit.T
    off_diagonal = ~np.eye(len(codes), dtype=bool)
    current = cosine[(similarity == 1) & off_diagonal]
    threshold = current.mean() - spread * current.std()
    refined = np.where(cosine >= threshold, 1, -1).astype(np.int8)
    np.fill_diagonal(refined, 1)
    return refined


def pic_weights(code_similarity: torch.Tensor, variant: str, temperature: float) -> torch.Tensor:
    """Pair weights from a softmax over -similarity (more dissimilar pairs weigh more), scaled
    to mean 1: per anchor row (``row``) or over the whole batch (``batch``); ``none``: all 1."""
    if variant == "none":
        return torch.ones_like(code_similarity)
    logits = -code_similarity.detach() / temperature
    if variant == "row":
        return torch.softmax(logits, dim=1) * logits.shape[1]
    return torch.softmax(logits.flatten(), dim=0).view_as(logits) * logits.numel()


@register
class DSAH(DeepMethod):
    name = "dsah"
    supervision = "none"

    def __init__(self, neighbours: int = 20, shared_fraction: float = 0.5, rounds: int = 2,
                 spread: float = 1.0, pic: str = "row", temperature: float = 0.5,
                 quantization_weight: float = 0.1):
        if pic not in PIC_VARIANTS:
            raise UserError(f"dsah: pic must be one of {', '.join(PIC_VARIANTS)}")
        self.neighbours = int(neighbours)
        self.shared_fraction = float(shared_fraction)
        self.rounds = int(rounds)  # AND refinements during training
        self.spread = float(spread)
        self.pic = pic
        self.temperature = float(temperature)
        self.quantization_weight = float(quantization_weight)

    def wants_features(self, has_pairs: bool) -> bool:
        return True

    def setup(self, data: TrainingData, bits: int, seed: int) -> None:
        if len(data.paths) <= self.neighbours:
            raise UserError(f"dsah: needs more than {self.neighbours} training images")
        self.similarity = initial_similarity(data.features, self.neighbours, self.shared_fraction)
        self.refined = 0

    def start_epoch(self, epoch: int, epochs: int, outputs: Callable[[], np.ndarray]) -> None:
        """AND refinement, ``rounds`` times spread evenly over the epochs."""
        every = max(1, epochs // (self.rounds + 1))
        if epoch > 0 and epoch % every == 0 and self.refined < self.rounds:
            self.similarity = refine_similarity(self.similarity, np.tanh(outputs()), self.spread)
            self.refined += 1

    def batches(self, epoch: int, batch_size: int, rng: np.random.Generator) -> list[Batch]:
        order = rng.permutation(len(self.similarity))
        return [Batch(order[start:start + batch_size]) for start in range(0, len(order), batch_size)
                if len(order[start:start + batch_size]) > 1]

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        bits = outputs.shape[1]
        codes = torch.tanh(outputs)
        inner = codes @ codes.T / bits  # in [-1, 1]
        target = torch.as_tensor(self.similarity[np.ix_(batch.indices, batch.indices)],
                                 dtype=outputs.dtype, device=outputs.device)
        weights = pic_weights(inner, self.pic, self.temperature)
        reconstruction = (weights * (inner - target).pow(2)).mean()
        quantization = (codes - torch.sign(outputs).detach()).pow(2).sum(dim=1).mean() / bits
        return reconstruction + self.quantization_weight * quantization
