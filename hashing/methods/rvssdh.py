"""RV-SSDH: random VLAD based supervised semantics-preserving deep hashing (Weng et al., 2020).

The backbone's last feature maps are reduced by a 1x1 convolution to local descriptors, which a
VLAD layer with fixed random cluster centres aggregates (soft assignment, residuals, intra- and
global L2 normalisation). A transform layer and the latent hash layer (sigmoid) follow; a
classifier reads the latent layer. Training is point-wise: classification error plus the SSDH
quantization terms (latent units pushed towards 0 or 1, each code with half its bits on).
``--param centres=learned`` gives the NetVLAD-style layer (centres and assignment trained) for
comparison. Equations and defaults: docs/methods.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hashkit.hashing.errors import UserError

from .base import Batch, register
from .heads import Head
from .supervised import SingleLabelMethod


class VLAD(nn.Module):
    """VLAD pooling of (B, D, h, w) descriptors into (B, K * D).

    Soft assignment a_k(x) = softmax_k(2 alpha c_k.x - alpha ||c_k||^2) to K centres; V_k =
    sum_x a_k(x) (x - c_k); each V_k L2-normalised, then the whole vector. With ``learned``
    the centres and the assignment's weights (initialised from them) are trained (NetVLAD);
    otherwise the centres are fixed random unit vectors, drawn once and saved with the model.
    """

    def __init__(self, dim: int, clusters: int, alpha: float, learned: bool):
        super().__init__()
        centres = F.normalize(torch.randn(clusters, dim), dim=1)
        self.learned = learned
        if learned:
            self.centres = nn.Parameter(centres)
            self.assignment = nn.Conv2d(dim, clusters, 1)
            self.assignment.weight.data = (2 * alpha * centres)[:, :, None, None].clone()
            self.assignment.bias.data = -alpha * centres.pow(2).sum(dim=1)
        else:
            self.register_buffer("centres", centres)
            self.alpha = alpha

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        descriptors = F.normalize(descriptors, dim=1)
        flat = descriptors.flatten(2)  # (B, D, N)
        if self.learned:
            logits = self.assignment(descriptors).flatten(2)
        else:
            logits = self.alpha * (2 * torch.einsum("kd,bdn->bkn", self.centres, flat)
                                   - self.centres.pow(2).sum(dim=1)[None, :, None])
        weights = torch.softmax(logits, dim=1)  # (B, K, N)
        residuals = torch.einsum("bkn,bdn->bkd", weights, flat) - weights.sum(dim=2)[:, :, None] * self.centres
        return F.normalize(F.normalize(residuals, dim=2).flatten(1), dim=1)


class RVSSDHHead(Head):
    def __init__(self, channels: int, bits: int, classes: int, descriptors: int, clusters: int, alpha: float,
                 transform: int, learned: bool):
        super().__init__()
        self.reduce = nn.Conv2d(channels, descriptors, 1)
        self.vlad = VLAD(descriptors, clusters, alpha, learned)
        self.transform = nn.Sequential(nn.Linear(descriptors * clusters, transform), nn.ReLU())
        self.hash_layer = nn.Linear(transform, bits)  # latent layer: sigmoid of its output
        self.classifier = nn.Linear(bits, classes)

    def outputs(self, maps: torch.Tensor) -> dict[str, torch.Tensor]:
        codes = self.hash_layer(self.transform(self.vlad(self.reduce(maps))))
        return {"codes": codes, "logits": self.classifier(torch.sigmoid(codes))}


@register
class RVSSDH(SingleLabelMethod):
    name = "rvssdh"

    def __init__(self, centres: str = "random", clusters: int = 16, alpha: float = 10.0, descriptors: int = 256,
                 transform: int = 512, binary_weight: float = 0.1, balance_weight: float = 1.0):
        if centres not in ("random", "learned"):
            raise UserError("rvssdh: centres must be 'random' or 'learned'")
        self.centres = centres
        self.clusters, self.alpha = int(clusters), float(alpha)
        self.descriptors, self.transform = int(descriptors), int(transform)
        self.binary_weight, self.balance_weight = float(binary_weight), float(balance_weight)

    def build_head(self, in_features: int, bits: int, hidden: int, classes: int) -> Head:
        return RVSSDHHead(in_features, bits, classes, self.descriptors, self.clusters, self.alpha,
                          self.transform, self.centres == "learned")

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        latent = torch.sigmoid(outputs["codes"])
        labels = self.classes[batch.indices].to(latent.device)
        binary = -(latent - 0.5).pow(2).mean()  # minimised when every unit is 0 or 1
        balance = (latent.mean(dim=1) - 0.5).pow(2).mean()  # each code half on (SSDH's balance term)
        return (F.cross_entropy(outputs["logits"], labels) + self.binary_weight * binary
                + self.balance_weight * balance)
