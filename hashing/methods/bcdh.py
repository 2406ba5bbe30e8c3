"""BCDH: binary constrained deep hashing from pairs mined from 3D models (Do et al., WACV 2019).

Alternating learning with auxiliary binary codes B (one per training image):
- network step (every batch): weighted pairwise constrained loss on the network outputs plus
  the quantization error to the current B;
- binary step (before every epoch): B minimises the same pairwise loss evaluated on binary codes
  plus the quantization error to the current outputs, by bitwise coordinate descent.
Negatives are re-mined before every epoch from the current codes (hard negatives), or drawn at
random. Equations and defaults: docs/methods.md.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from hashkit.hashing.errors import UserError

from .base import Batch, DeepMethod, TrainingData, register
from .heads import Head, PooledHead, descriptor
from .itq import itq_rotation
from .pair_mining import cosine_neighbours, hard_negatives, membership, mutual_pairs

GEM_POWER = 3.0  # Radenovic et al.'s starting value; fixed here
ITQ_ITERATIONS = 50


def pair_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a - b||^2 / K per row: for binary codes, 4 x Hamming distance / K."""
    return (a - b).pow(2).sum(dim=1) / a.shape[1]


def constrained_pair_loss(distance: torch.Tensor, similar: torch.Tensor, weight: torch.Tensor,
                          margin: float) -> torch.Tensor:
    """Positives: weight * d. Negatives: max(0, margin - d)."""
    return similar * weight * distance + (1 - similar) * torch.clamp(margin - distance, min=0)


@register
class BCDH(DeepMethod):
    name = "bcdh"
    supervision = "pairs"
    freezes_backbone = True  # the closed-form start and a few hundred pairs: the head alone, in seconds

    def __init__(self, margin: float = 2.0, quantization_weight: float = 0.1, negatives: str = "auto",
                 negatives_per_image: int = 5, binary_sweeps: int = 3, neighbours: int = 10,
                 pooling: str = "gem", init: str = "itq", shrinkage: float = 1.0):
        if negatives not in ("auto", "hard", "random"):
            raise UserError("bcdh: negatives must be 'auto', 'hard' or 'random'")
        if pooling not in ("gem", "average") or init not in ("whitened-itq", "itq", "random"):
            raise UserError("bcdh: pooling must be 'gem' or 'average', init 'whitened-itq', 'itq' or 'random'")
        self.pooling, self.init = pooling, init
        self.uses_maps = pooling == "gem"  # GeM pools the backbone's maps in the head
        self.power = GEM_POWER if self.uses_maps else 1.0
        self.shrinkage = float(shrinkage)  # of the whitening's within-pair covariance, in units of its mean variance
        self.margin = float(margin)  # in units of ||b_i - b_j||^2 / K = 4 x normalised Hamming
        self.quantization_weight = float(quantization_weight)
        self.negatives_mode = negatives
        self.negatives_per_image = int(negatives_per_image)
        self.binary_sweeps = int(binary_sweeps)
        self.neighbours = int(neighbours)  # k of the mutual-kNN pairs used when no pairs.h5 is given

    def build_head(self, in_features: int, bits: int, hidden: int, classes: int) -> Head:
        return PooledHead(in_features, bits, hidden, self.power)

    def takes_hidden(self) -> bool:
        return True

    def wants_features(self, has_pairs: bool) -> bool:
        # the closed-form start reads them; without a pairs file, pairs come from feature-space neighbours
        return not has_pairs or self.init != "random"

    def init_head(self, head: Head, data: TrainingData) -> None:
        """Start the hash layer where the closed-form codes are (no hidden layer only): ITQ on the
        head's descriptors, after the whitening learned from the positive and negative pairs
        (``whitened-itq``) or after PCA (``itq``). Scaled so that outputs average +-1. PCA of n
        images has n - 1 directions: with fewer images than bits + 1, the other bits keep their
        random start."""
        bits = head.hash_layer.out_features
        if self.init == "random" or not isinstance(head.hidden_layer, torch.nn.Identity):
            return
        descriptors = pooled_descriptors(data.features, self.power).astype(np.float64)
        mean = descriptors.mean(axis=0)
        if self.init == "whitened-itq":
            projection = learned_whitening(descriptors, self.positives, self.random_negatives, self.shrinkage)[:bits]
        else:
            projection = np.linalg.svd(descriptors - mean, full_matrices=False)[2][:min(bits, len(descriptors) - 1)]
        projected = (descriptors - mean) @ projection.T
        rotation = itq_rotation(projected, ITQ_ITERATIONS, int(self.rng.integers(2**31)))
        weight = (projection.T @ rotation).T / np.abs(projected @ rotation).mean()
        fitted = len(weight)
        with torch.no_grad():  # copied into the layer's own (contiguous) tensors, as a resumed run loads them
            head.hash_layer.weight[:fitted].copy_(torch.from_numpy(weight))
            head.hash_layer.bias[:fitted].copy_(torch.from_numpy(-weight @ mean))

    def setup(self, data: TrainingData, bits: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        n = len(data.paths)
        if data.pairs is not None:
            self.positives = data.pairs.positives.astype(np.int64)
            self.weights = positive_weights(data.pairs.shared_points, data.pairs.inlier_matches)
            self.groups = data.pairs.group.astype(np.int64)
            self.random_negatives = data.pairs.negatives.astype(np.int64)
            self.eligible = lambda rows: (self.groups[rows, None] != self.groups[None, :]) \
                & (self.groups[rows, None] >= 0) & (self.groups[None, :] >= 0)
        else:
            if data.features is None:
                raise UserError("bcdh without --pairs needs backbone features of the training images")
            ranked = cosine_neighbours(pooled_descriptors(data.features, self.power), 3 * self.neighbours)
            self.positives = mutual_pairs(membership(ranked[:, :self.neighbours]))
            self.weights = np.ones(len(self.positives))
            self.groups = None
            near = membership(ranked)
            near |= near.T
            np.fill_diagonal(near, True)
            self.eligible = lambda rows: ~near[rows]
            self.random_negatives = self._random_negatives(n)
        if len(self.positives) == 0 or len(self.random_negatives) == 0:
            needed = "at least two 3D models with covisible images" if data.pairs is not None else \
                f"over {3 * self.neighbours + 1} images: negatives come from beyond each image's " \
                f"{3 * self.neighbours} nearest, positives from mutual nearest neighbours"
            raise UserError(f"bcdh: {len(self.positives)} positive and {len(self.random_negatives)} negative "
                            f"pairs; training needs both ({needed})")
        if self.negatives_mode == "auto":  # hard negatives only where 3D models vouch for them
            self.negatives_mode = "hard" if data.pairs is not None else "random"
        self.anchors = np.unique(self.positives)
        self.negatives = self.random_negatives
        self.codes = None  # auxiliary binary codes B (N, K), set before the first epoch

    def _random_negatives(self, n: int) -> np.ndarray:
        anchors = np.repeat(np.arange(n), self.negatives_per_image)
        partners = self.rng.integers(0, n, size=anchors.size)
        keep = self.eligible(np.arange(n))[anchors, partners]
        return np.stack([anchors[keep], partners[keep]], axis=1)

    def start_epoch(self, epoch: int, epochs: int, outputs: Callable[[], np.ndarray]) -> None:
        current = outputs()
        if self.codes is None:
            self.codes = np.where(current > 0, 1.0, -1.0)
        else:
            self.codes = self.binary_step(current)
        if self.negatives_mode == "hard" and epoch > 0:
            self.negatives = hard_negatives(current, self.anchors, self.eligible, self.negatives_per_image,
                                            self.groups)

    def _pairs(self, negatives: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The positives and ``negatives`` (default: all current ones) as pair rows (i, j),
        their similarity (1/0) and weight."""
        negatives = self.negatives if negatives is None else negatives
        pairs = np.concatenate([self.positives, negatives])
        similar = np.concatenate([np.ones(len(self.positives)), np.zeros(len(negatives))])
        weights = np.concatenate([self.weights, np.ones(len(negatives))])
        return pairs, similar, weights

    def binary_step(self, outputs: np.ndarray) -> np.ndarray:
        """Update B with the network fixed: for each image in turn, flip the bits that lower
        mean_pairs loss(b_i, b_j) + mu * mean_i ||b_i - h_i||^2 / K (the network step's objective),
        i.e. sum over its pairs + mu (pairs / images) ||b_i - h_i||^2 / K, computed bit by bit."""
        codes = self.codes.copy()
        bits = codes.shape[1]
        pairs, similar, weights = self._pairs()
        quantization_weight = self.quantization_weight * len(pairs) / len(codes)
        both = np.concatenate([pairs, pairs[:, ::-1]])
        similar, weights = np.tile(similar, 2), np.tile(weights, 2)
        order = np.argsort(both[:, 0], kind="stable")
        both, similar, weights = both[order], similar[order], weights[order]
        starts = np.searchsorted(both[:, 0], np.arange(len(codes) + 1))
        for _ in range(self.binary_sweeps):
            for i in self.rng.permutation(len(codes)):
                lo, hi = starts[i], starts[i + 1]
                partners = both[lo:hi, 1]
                # flipping bit k changes quantization by 4 mu b_ik h_ik / K
                delta = 4 * quantization_weight * codes[i] * outputs[i] / bits
                if hi > lo:
                    agree = codes[partners] == codes[i]  # (P, K)
                    step = np.where(agree, 4.0, -4.0) / bits  # change of d_ij per flipped bit
                    distance = (4.0 / bits) * (~agree).sum(axis=1, keepdims=True)
                    is_pos = similar[lo:hi, None] == 1
                    push_now = np.maximum(self.margin - distance, 0)
                    push_new = np.maximum(self.margin - distance - step, 0)
                    change = np.where(is_pos, weights[lo:hi, None] * step, push_new - push_now)
                    delta = delta + change.sum(axis=0)
                codes[i] = np.where(delta < 0, -codes[i], codes[i])
        return codes

    def batches(self, epoch: int, batch_size: int, rng: np.random.Generator) -> list[Batch]:
        """Every positive once and as many negatives (with replacement only when too few), shuffled;
        ``batch_size`` pairs per batch, each distinct image once."""
        draw = rng.choice(len(self.negatives), size=len(self.positives),
                          replace=len(self.negatives) < len(self.positives))
        pairs, similar, weights = self._pairs(self.negatives[draw])
        order = rng.permutation(len(pairs))
        batches = []
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            images, local = np.unique(pairs[rows], return_inverse=True)
            batches.append(Batch(images, {"pairs": torch.from_numpy(local.reshape(-1, 2)),
                                          "similar": torch.from_numpy(similar[rows]).float(),
                                          "weights": torch.from_numpy(weights[rows]).float()}))
        return batches

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        outputs = outputs["codes"]
        p = batch.payload
        pairs = p["pairs"].to(outputs.device)
        distance = pair_distance(outputs[pairs[:, 0]], outputs[pairs[:, 1]])
        pair_term = constrained_pair_loss(distance, p["similar"].to(outputs.device),
                                          p["weights"].to(outputs.device), self.margin)
        codes = torch.as_tensor(self.codes[batch.indices], dtype=outputs.dtype, device=outputs.device)
        quantization = pair_distance(outputs, codes)
        return pair_term.mean() + self.quantization_weight * quantization.mean()


def pooled_descriptors(features: np.ndarray, power: float) -> np.ndarray:
    """The head's unit-length descriptors (N, C) of backbone features or maps, float32."""
    with torch.no_grad():
        return torch.cat([descriptor(torch.from_numpy(features[start:start + 256]), power)
                          for start in range(0, len(features), 256)]).numpy()


def learned_whitening(descriptors: np.ndarray, positives: np.ndarray, negatives: np.ndarray,
                      shrinkage: float) -> np.ndarray:
    """Rows of the linear map that whitens the differences of positive pairs and then turns to
    the directions along which negative pairs differ most, in decreasing order (Radenovic et al.'s
    learned whitening, TPAMI 2018). The within-pair covariance is shrunk towards ``shrinkage``
    times its mean variance, since a few hundred pairs leave most of its directions unseen."""
    within = descriptors[positives[:, 0]] - descriptors[positives[:, 1]]
    covariance = within.T @ within / len(within)
    covariance += shrinkage * np.trace(covariance) / len(covariance) * np.eye(len(covariance))
    values, vectors = np.linalg.eigh(covariance)
    whitening = vectors @ np.diag(values ** -0.5) @ vectors.T
    between = (descriptors[negatives[:, 0]] - descriptors[negatives[:, 1]]) @ whitening.T
    _, directions = np.linalg.eigh(between.T @ between / len(between))
    return directions[:, ::-1].T @ whitening


def positive_weights(shared_points: np.ndarray, inlier_matches: np.ndarray) -> np.ndarray:
    """Saturating weight in (0, 1) per positive: pairs with much 3D evidence count fully. The
    evidence is the pair's shared 3D points over their median, or, for a pair no model covers,
    its verified inlier matches over their median."""
    def scaled(counts: np.ndarray) -> np.ndarray:
        counts = counts.astype(np.float64)
        return counts / max(np.median(counts[counts > 0]), 1.0) if (counts > 0).any() else counts

    evidence = np.where(shared_points > 0, scaled(shared_points), scaled(inlier_matches))
    return 1 - np.exp(-evidence)
