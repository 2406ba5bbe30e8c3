"""Hash heads: modules that map a backbone's output to a real-valued code, built by each method.

The binary code is the sign of the head's output (``forward``). Heads with more to say during
training (class scores, part features, attention maps) return them from ``outputs``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Head(nn.Module):
    """Backbone output to ``{"codes": (B, bits), ...}``; ``forward`` gives the codes alone."""

    def outputs(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.outputs(features)["codes"]


class MLPHead(Head):
    """An optional hidden layer (Linear + ReLU), then the linear hash layer; feature maps, when
    given, are averaged over space first."""

    def __init__(self, in_features: int, bits: int, hidden: int = 0):
        super().__init__()
        self.hidden_layer = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU()) if hidden else nn.Identity()
        self.hash_layer = nn.Linear(hidden or in_features, bits)

    @staticmethod
    def pooled(features: torch.Tensor) -> torch.Tensor:
        """Features as they are, or feature maps averaged over space."""
        return features.mean(dim=(2, 3)) if features.dim() == 4 else features

    def outputs(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"codes": self.hash_layer(self.hidden_layer(self.pooled(features)))}


class DropoutHead(MLPHead):
    """MLPHead whose (pooled) input passes dropout of rate ``p`` in training, as GreedyHash's and
    Bi-half's authors leave the dropout after fc7 on; the outputs also give the mask as ``kept``
    (0, or 1 / (1 - p)), so the loss can compare the codes with the same noisy features. In
    evaluation the mask is all ones. No weights of its own: the model file is MLPHead's."""

    def __init__(self, in_features: int, bits: int, hidden: int = 0, p: float = 0.5):
        super().__init__(in_features, bits, hidden)
        self.p = p

    def outputs(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.pooled(features)
        kept = F.dropout(torch.ones_like(features), self.p, self.training)
        return {"codes": self.hash_layer(self.hidden_layer(features * kept)), "kept": kept}


def gem(maps: torch.Tensor, power: float) -> torch.Tensor:
    """Generalised-mean pooling over space (Radenovic et al., TPAMI 2018): (mean x^p)^(1/p) per
    channel; power 1 is averaging, larger powers lean towards the strongest responses."""
    return maps.clamp(min=1e-6).pow(power).mean(dim=(2, 3)).pow(1.0 / power)


def descriptor(features: torch.Tensor, power: float) -> torch.Tensor:
    """Unit-length descriptors of backbone maps (B, C, h, w), pooled by GeM, or of features (B, C)."""
    if features.dim() == 4:
        features = gem(features.float(), power)
    return F.normalize(features.float(), dim=1)


class PooledHead(MLPHead):
    """Feature maps pooled by GeM of ``power`` (or features already pooled), L2-normalised, then
    MLPHead's layers: the codes see the direction of the descriptor, as cosine ranking does."""

    def __init__(self, in_features: int, bits: int, hidden: int = 0, power: float = 3.0):
        super().__init__(in_features, bits, hidden)
        self.power = power

    def outputs(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"codes": self.hash_layer(self.hidden_layer(descriptor(features, self.power)))}
