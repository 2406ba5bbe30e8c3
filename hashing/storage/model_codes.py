"""Codes of images through a loaded model: through the whole network, or, for a model whose
backbone was frozen, through its head from cached backbone features."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from hashkit.hashing.progress import progress
from hashkit.hashing.runtime import to_device
from hashkit.hashing.training.data import Normalizer, eval_loader
from hashkit.hashing.training.features import COMPUTE_CHUNK, FeatureCache, compute_features
from hashkit.hashing.training.model_file import LoadedModel

from .store import pack_codes


def model_codes(model: LoadedModel, paths: list[Path], batch_size: int, workers: int | None,
                device: torch.device, cache_dir: Path | None) -> Iterator[tuple[np.ndarray, list[Path], np.ndarray]]:
    """(packed codes, paths, decodable mask) of ``paths`` a batch or chunk at a time; a model whose
    backbone was frozen takes its backbone features from the cache in ``cache_dir`` (None: no cache).
    A traced network (``traced_copy``) runs its graph as traced: TorchScript's optimising executor
    profiles the first two calls, which costs a one-image encode more than it saves."""
    to_device(model.network, device)
    with torch.jit.optimized_execution(False):
        if model.config.get("frozen_backbone") and cache_dir is not None:
            yield from _codes_from_cache(model, paths, Path(cache_dir), batch_size, workers, device)
        else:
            yield from _codes_from_images(model, paths, batch_size, workers, device)


@torch.no_grad()
def _codes_from_images(model: LoadedModel, paths: list[Path], batch_size: int, workers: int | None,
                       device: torch.device) -> Iterator[tuple[np.ndarray, list[Path], np.ndarray]]:
    """(packed codes, paths, decodable mask) per batch, through the whole network."""
    config = model.config
    loader = eval_loader(paths, config["image_size"], batch_size, workers, device)
    normalize = Normalizer(config["mean"], config["std"], device)
    for images, indices, ok in progress(loader, desc="encoding", unit="batch"):
        codes = pack_codes(model.network(normalize(images)).cpu().numpy())
        yield codes, [paths[i] for i in indices], ok.numpy()


@torch.no_grad()
def _codes_from_cache(model: LoadedModel, paths: list[Path], cache_dir: Path, batch_size: int, workers: int | None,
                      device: torch.device) -> Iterator[tuple[np.ndarray, list[Path], np.ndarray]]:
    """(packed codes, paths, decodable mask) per chunk: cached backbone features through the head."""
    config = model.config
    cache = FeatureCache(cache_dir, config["backbone"], config["backbone_digest"], config["image_size"])

    def compute(chunk: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        return compute_features(model.network.backbone, chunk, config["image_size"], config["mean"],
                                config["std"], batch_size, workers, device)

    for start in range(0, len(paths), COMPUTE_CHUNK):
        chunk = paths[start:start + COMPUTE_CHUNK]
        features, ok = cache.features(chunk, compute)
        if features.shape[1] == 0:  # no image of the chunk decodes
            yield np.zeros((len(chunk), config["bits"] // 8), np.uint8), chunk, ok
            continue
        outputs = model.network.head(torch.from_numpy(features).to(device).float()).cpu().numpy()
        yield pack_codes(outputs), chunk, ok
