"""DSAH: deep self-adaptive hashing (Lin et al., CIKM 2021), trained from images alone.

- Adaptive Neighbour Discovery (AND): an initial similarity matrix S in {+1, -1} from the
  shared k-nearest-neighbour structure of backbone features. ``rounds`` > 0 refines it during
  training from the learned codes: confident new neighbours are added (threshold from the
  statistics of the currently similar pairs); none are removed. Off by default: it lowered
  retrieval in every measurement (docs/methods.md), and the authors' released scripts train
  on the initial matrix too.
- Pairwise Information Content (PIC): per-pair weights -log p from a softmax over pair
  similarities, so more dissimilar (less probable) pairs weigh more.
- Loss: PIC-weighted, similar/dissimilar-balanced similarity reconstruction plus quantization.
  Details: docs/methods.md.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from hashkit.hashing.errors import UserError

from .base import Batch, DeepMethod, TrainingData, image_batches, quantization_error, register
from .pair_mining import neighbour_sets

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
    """AND update, which only adds neighbours: with C the cosine similarity of the current codes,
    and mu, sigma its mean and standard deviation over the currently similar pairs, a dissimilar
    pair becomes similar when C_ij >= mu - spread * sigma; similar pairs stay similar."""
    unit = codes / np.maximum(np.linalg.norm(codes, axis=1, keepdims=True), 1e-12)
    cosine = unit @ unit.T
    off_diagonal = ~np.eye(len(codes), dtype=bool)
    current = cosine[(similarity == 1) & off_diagonal]
    threshold = current.mean() - spread * current.std()
    return np.where((similarity == 1) | (cosine >= threshold), 1, -1).astype(np.int8)


def pic_weights(code_similarity: torch.Tensor, variant: str, temperature: float) -> torch.Tensor:
    """Pairwise information content: ``-log p_ij`` with ``p`` the softmax of the pair
    similarities divided by ``temperature``, per anchor row (``row``) or over the whole batch
    (``batch``), scaled to mean 1. A more dissimilar pair is less probable, so it carries more
    information and weighs more. ``none``: all weights 1."""
    if variant == "none":
        return torch.ones_like(code_similarity)
    logits = code_similarity.detach() / temperature
    if variant == "row":
        information = -torch.log_softmax(logits, dim=1)
    else:
        information = -torch.log_softmax(logits.flatten(), dim=0).view_as(logits)
    return information / information.mean()


@register
class DSAH(DeepMethod):
    name = "dsah"
    supervision = "none"

    def __init__(self, neighbours: int = 20, shared_fraction: float = 0.5, rounds: int = 0,
                 spread: float = -0.5, pic: str = "row", temperature: float = 0.5,
                 quantization_weight: float = 0.1, balance: bool = True):
        if pic not in PIC_VARIANTS:
            raise UserError(f"dsah: pic must be one of {', '.join(PIC_VARIANTS)}")
        self.neighbours = int(neighbours)
        self.shared_fraction = float(shared_fraction)
        self.rounds = int(rounds)  # AND refinements during training
        self.spread = float(spread)
        self.pic = pic
        self.temperature = float(temperature)
        self.quantization_weight = float(quantization_weight)
        self.balance = bool(balance)  # similar and dissimilar pairs weigh half each

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
        return image_batches(len(self.similarity), batch_size, rng)

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        outputs = outputs["codes"]
        bits = outputs.shape[1]
        codes = torch.tanh(outputs)
        inner = codes @ codes.T / bits  # in [-1, 1]
        target = torch.as_tensor(self.similarity[np.ix_(batch.indices, batch.indices)],
                                 dtype=outputs.dtype, device=outputs.device)
        weights = pic_weights(inner, self.pic, self.temperature)
        if self.balance:
            similar = target > 0
            weights = torch.where(similar, weights / weights[similar].sum().clamp(min=1e-12),
                                  weights / weights[~similar].sum().clamp(min=1e-12)) * weights.numel() / 2
        reconstruction = (weights * (inner - target).pow(2)).mean()
        return reconstruction + self.quantization_weight * quantization_error(codes)
