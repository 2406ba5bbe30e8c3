"""CSQ: central similarity quantization (Yuan et al., CVPR 2020).

Each class gets a hash centre: a row of the Hadamard matrix H_K or of -H_K when K is a power of
two and there are at most 2K classes (centres then K/2 or K bits apart), otherwise a random
+-1 vector. An image's centre is the sign of the mean of its labels' centres. The loss pulls
each bit of tanh(output) towards its centre (binary cross-entropy) plus a small quantization
term. Equations and defaults: docs/methods.md.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .base import Batch, DeepMethod, TrainingData, image_batches, quantization_error, register


def sylvester_hadamard(size: int) -> np.ndarray:
    """H_size by Sylvester's construction (H_1 = [1], H_2n = [[H, H], [H, -H]]); size a power of two."""
    matrix = np.ones((1, 1), dtype=np.int8)
    while len(matrix) < size:
        matrix = np.block([[matrix, matrix], [matrix, -matrix]])
    return matrix


def hash_centres(classes: int, bits: int, rng: np.random.Generator) -> np.ndarray:
    """(classes, bits) centres in {-1, 1}: the first rows of [H_K; -H_K] when K is a power of two
    and classes <= 2K, else independent fair coin flips."""
    if bits & (bits - 1) == 0 and classes <= 2 * bits:
        hadamard = sylvester_hadamard(bits)
        return np.concatenate([hadamard, -hadamard])[:classes].astype(np.float32)
    return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(classes, bits))


def image_centres(labels: np.ndarray, centres: np.ndarray, tie_break: np.ndarray) -> np.ndarray:
    """Per image, the sign of the mean of its labels' centres; a bit whose mean is 0 takes ``tie_break``'s."""
    mean = labels.astype(np.float32) @ centres
    return np.where(mean > 0, 1.0, np.where(mean < 0, -1.0, tie_break)).astype(np.float32)


@register
class CSQ(DeepMethod):
    name = "csq"
    supervision = "multilabels"

    def __init__(self, quantization_weight: float = 1e-4):
        self.quantization_weight = float(quantization_weight)

    def setup(self, data: TrainingData, bits: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.centres = hash_centres(data.labels.shape[1], bits, rng)
        tie_break = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=bits)
        self.targets = torch.from_numpy((image_centres(data.labels, self.centres, tie_break) + 1) / 2)

    def batches(self, epoch: int, batch_size: int, rng: np.random.Generator) -> list[Batch]:
        return image_batches(len(self.targets), batch_size, rng)

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        outputs = outputs["codes"]
        targets = self.targets[batch.indices].to(outputs.device)
        # (tanh(z) + 1) / 2 = sigmoid(2z): the cross-entropy of the paper, computed from logits
        central = F.binary_cross_entropy_with_logits(2 * outputs, targets)
        return central + self.quantization_weight * quantization_error(torch.tanh(outputs))
