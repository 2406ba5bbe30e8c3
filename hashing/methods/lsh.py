"""LSH baseline: sign of random Gaussian projections of centred backbone features."""

from __future__ import annotations

import numpy as np

from .base import FeatureMethod, register


@register
class LSH(FeatureMethod):
    name = "lsh"
    supervision = "none"

    def fit(self, features: np.ndarray, bits: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        weight = rng.standard_normal((bits, features.shape[1])).astype(np.float32)
        bias = -weight @ features.mean(axis=0).astype(np.float32)
        return weight, bias
