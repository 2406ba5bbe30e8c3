"""ITQ baseline: PCA to K dimensions, then the rotation minimising the quantization error
(Gong and Lazebnik, CVPR 2011)."""

from __future__ import annotations

import numpy as np

from hashkit.hashing.errors import UserError

from .base import FeatureMethod, register


@register
class ITQ(FeatureMethod):
    name = "itq"
    supervision = "none"

    def __init__(self, iterations: int = 50):
        self.iterations = int(iterations)

    def fit(self, features: np.ndarray, bits: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if bits > min(features.shape):
            raise UserError(f"itq: {bits} bits need at least {bits} training images and feature dimensions")
        features = features.astype(np.float64)
        mean = features.mean(axis=0)
        centred = features - mean
        _, _, components = np.linalg.svd(centred, full_matrices=False)
        projection = components[:bits].T  # (D, K), top principal directions
        rotation = itq_rotation(centred @ projection, self.iterations, seed)
        weight = (projection @ rotation).T
        return weight.astype(np.float32), (-weight @ mean).astype(np.float32)


def itq_rotation(projected: np.ndarray, iterations: int, seed: int) -> np.ndarray:
    """The orthogonal (K, K) rotation R, from a seeded random start, that alternately minimises
    ||B - V R||^2 over the codes B = sign(V R) and R, for centred projected data V (N, K)."""
    bits = projected.shape[1]
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((bits, bits)))
    for _ in range(iterations):
        codes = np.where(projected @ rotation >= 0, 1.0, -1.0)
        u, _, vt = np.linalg.svd(codes.T @ projected)  # B^T V = U S V^T -> R = V U^T
        rotation = vt.T @ u.T
    return rotation
