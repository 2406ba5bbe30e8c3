"""Which image pairs COLMAP matches: all of them, neighbours in file order, or each photo's
nearest photos by a global descriptor (retrieval), whose cost grows linearly with the photos."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from hashkit.hashing.errors import UserError

MATCHERS = ("auto", "exhaustive", "sequential", "retrieval")
EXHAUSTIVE_UP_TO = 100  # auto: exhaustive matching up to this many photos (4,950 pairs), retrieval above
EXHAUSTIVE_BLOCK = 50  # exhaustive: photos per block (COLMAP's ExhaustivePairingOptions.block_size)
SEQUENTIAL_OVERLAP = 10  # sequential: each photo with the next 10 in file order (COLMAP's default)
RETRIEVAL_BACKBONE = "mobilenet_v2"  # retrieval's global descriptor without --model: ImageNet pooled features
RETRIEVAL_IMAGE_SIZE = 224


def choose_matcher(matcher: str, num_photos: int) -> str:
    if matcher not in MATCHERS:
        raise UserError(f"unknown matcher {matcher!r}; choose one of {', '.join(MATCHERS)}")
    if matcher == "auto":
        return "exhaustive" if num_photos <= EXHAUSTIVE_UP_TO else "retrieval"
    return matcher


def exhaustive_pairs(num_photos: int, block: int = EXHAUSTIVE_BLOCK) -> np.ndarray:
    """Every pair (i < j), ordered block by block of ``block`` x ``block`` photos as COLMAP's own
    exhaustive matcher goes, so that consecutive pairs share the photos whose descriptors it holds."""
    starts = range(0, num_photos, block)
    pairs = []
    for first in starts:
        for second in starts[first // block:]:
            i, j = np.meshgrid(np.arange(first, min(first + block, num_photos)),
                               np.arange(second, min(second + block, num_photos)), indexing="ij")
            keep = i < j
            pairs.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(pairs).astype(np.int64) if pairs else np.zeros((0, 2), np.int64)


def sequential_pairs(num_photos: int, overlap: int = SEQUENTIAL_OVERLAP) -> np.ndarray:
    pairs = [(i, j) for i in range(num_photos) for j in range(i + 1, min(i + 1 + overlap, num_photos))]
    return np.array(pairs, np.int64).reshape(-1, 2)


def neighbour_pairs(neighbours: np.ndarray) -> np.ndarray:
    """Unordered unique pairs (i < j, sorted) from each row's neighbour list (N, K), leaving out
    -1 padding and the photo itself."""
    rows = np.repeat(np.arange(len(neighbours)), neighbours.shape[1])
    cols = neighbours.reshape(-1)
    keep = (cols >= 0) & (cols != rows)
    pairs = np.sort(np.stack([rows[keep], cols[keep]], axis=1), axis=1)
    return np.unique(pairs, axis=0).astype(np.int64).reshape(-1, 2)


def nearest_by_features(features: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` nearest other rows by cosine similarity (FAISS inner product search)."""
    vectors = np.ascontiguousarray(features, np.float32).copy()
    faiss.normalize_L2(vectors)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index.search(vectors, min(k + 1, len(vectors)))[1]


def nearest_by_codes(codes: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` nearest other rows by Hamming distance of packed codes."""
    from hashkit.hashing.search.scan import knn_scan
    return knn_scan([codes], codes, min(k + 1, len(codes)))[1]


def retrieval_pairs(paths: list[Path], k: int, model: Path | None, cache_dir: Path | None,
                    device: str = "auto") -> np.ndarray:
    """The pairs of each photo with its ``k`` nearest photos: by the codes of a trained hashkit
    ``model``, or by the pooled features of the ImageNet MobileNetV2 (cached in ``cache_dir``)."""
    if k < 1:
        raise UserError("--num-neighbors must be at least 1")
    if model is not None:
        return neighbour_pairs(nearest_by_codes(_codes_by_model(paths, model, cache_dir, device), k))
    return neighbour_pairs(nearest_by_features(global_features(paths, cache_dir, device), k))


def global_features(paths: list[Path], cache_dir: Path | None, device: str = "auto") -> np.ndarray:
    """The pooled features (N, D) of the ImageNet MobileNetV2 for ``paths``, through the cache in
    ``cache_dir``: retrieval's global descriptor."""
    from hashkit.hashing.memory import keep_freed_memory
    from hashkit.hashing.runtime import resolve_device
    from hashkit.hashing.training.backbones import IMAGENET_MEAN, IMAGENET_STD, build_backbone
    from hashkit.hashing.training.features import cached_features, weights_digest
    keep_freed_memory()
    backbone = build_backbone(RETRIEVAL_BACKBONE)
    features, _ = cached_features(backbone, RETRIEVAL_BACKBONE, weights_digest(backbone), paths,
                                  RETRIEVAL_IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD, 64, workers=None,
                                  device=resolve_device(device), cache_dir=cache_dir)
    return features


def _codes_by_model(paths: list[Path], model: Path, cache_dir: Path | None, device: str = "auto") -> np.ndarray:
    """The packed codes of ``paths`` by a trained hashkit ``model``."""
    from hashkit.hashing.memory import keep_freed_memory
    from hashkit.hashing.runtime import resolve_device
    from hashkit.hashing.storage.model_codes import model_codes
    from hashkit.hashing.training.model_file import load_model
    keep_freed_memory()
    loaded = load_model(model)
    return np.concatenate([codes for codes, _, _ in model_codes(loaded, paths, 64, workers=None,
                                                                device=resolve_device(device), cache_dir=cache_dir)])
