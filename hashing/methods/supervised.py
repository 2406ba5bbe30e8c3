"""Pieces shared by the supervised methods: pairwise code distances over a batch."""

from __future__ import annotations

import torch


def squared_distances(codes: torch.Tensor) -> torch.Tensor:
    """(B, B) matrix of ||u_i - u_j||^2 / K: for codes in {-1, 1}^K, 4 x the normalised Hamming distance."""
    inner = codes @ codes.T
    norms = codes.pow(2).sum(dim=1)
    return (norms[:, None] + norms[None, :] - 2 * inner).clamp(min=0) / codes.shape[1]
