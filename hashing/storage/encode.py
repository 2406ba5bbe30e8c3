"""``hashkit encode``: images to binary codes appended to an HDF5 code store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import UserError
from ..evaluation.ground_truth import load_labels
from ..progress import progress
from ..runtime import keep_freed_memory, resolve_device, to_device
from ..training.data import Normalizer, eval_loader
from ..training.features import COMPUTE_CHUNK, FeatureCache, compute_features
from ..training.images import resolve_inputs
from ..user_cache import default_cache_dir
from .checkpoint import LoadedModel, load_checkpoint
from .locking import exclusive_lock, output_file
from .shards import in_shard, shard_store_name, torchrun_shard
from .store import CodeStoreWriter, StoreMeta, StoreReader, label_cell, pack_codes

_DEFAULT_CACHE = object()


@dataclass
class EncodeSummary:
    store: str
    encoded: int
    already_present: int
    total: int
    unreadable: list[str] = field(default_factory=list)
    shard: str | None = None  # "i/n" when one shard was encoded


@torch.no_grad()
def encode(model_path: Path, inputs: list[Path], output: Path, batch_size: int = 64,
           workers: int | None = None, device: str = "auto", overwrite: bool = False,
           feature_cache: Path | None | object = _DEFAULT_CACHE, labels: str | None = None,
           shard: tuple[int, int] | None = None) -> EncodeSummary:
    """Encode every image named by ``inputs`` into the store ``output``.

    An existing store of the same model is appended to, skipping paths it already holds. For a
    model whose backbone was frozen, backbone features come from the feature cache
    (``feature_cache``: a folder, None for no cache; default ``~/.cache/hashkit/features``).
    With ``labels`` (a source for ``ground_truth.load_labels``), each image's labels are stored
    with its code; images the source does not label are stored as unknown.
    With ``shard`` (i, n), only the images of shard i of n are encoded (``shards.in_shard``); under
    torchrun without ``shard``, each process takes its own and writes ``shards.shard_store_name``.
    """
    if shard is None and (shard := torchrun_shard()) is not None:
        output = shard_store_name(Path(output), shard)
    output = output_file(output, overwrite=True)  # an existing store is appended to
    model = load_checkpoint(model_path)
    paths = resolve_inputs(inputs)
    if not paths:
        raise UserError(f"no images found in {', '.join(map(str, inputs))}")
    if shard is not None:
        paths = [path for path in paths if in_shard(path, shard)]
    config = model.config
    meta = StoreMeta(config["bits"], config["method"], model.digest, config["backbone"], __version__)
    torch_device = resolve_device(device)
    keep_freed_memory()
    cache_dir = default_cache_dir() if feature_cache is _DEFAULT_CACHE else feature_cache
    with exclusive_lock(output):
        present: set[str] = set()
        if output.exists() and not overwrite:
            with StoreReader(output) as existing:  # its paths only, not its codes
                present = set(existing.paths())
        todo = [p for p in paths if str(p) not in present and os.path.realpath(p) not in present]  # older stores
        cells = _label_cells(labels, todo)  # refused before anything is written
        if overwrite:
            output.unlink(missing_ok=True)
        with _writer(output, meta) as store:
            unreadable = []
            for codes, chunk_paths, ok in model_codes(model, todo, batch_size, workers, torch_device, cache_dir):
                unreadable += [str(p) for p, good in zip(chunk_paths, ok) if not good]
                encoded = [str(p) for p, good in zip(chunk_paths, ok) if good]
                store.append(codes[ok], encoded, [cells.get(p, "") for p in encoded])
            total = store.count
    return EncodeSummary(str(output), len(todo) - len(unreadable), len(paths) - len(todo), total, unreadable,
                         None if shard is None else f"{shard[0]}/{shard[1]}")


@contextmanager
def _writer(output: Path, meta: StoreMeta) -> Iterator[CodeStoreWriter]:
    """The store's writer; a store this run creates is removed again if the run fails before
    committing a row, so a failed first encode leaves no empty store behind."""
    created = not output.exists()
    store = CodeStoreWriter(output, meta)
    try:
        with store:
            yield store
    except BaseException:
        if created and store.count == 0:
            output.unlink(missing_ok=True)
        raise


def _label_cells(source: str | None, paths: list[Path]) -> dict[str, str]:
    """Stored label cell of each of ``paths`` that ``source`` labels; an error if it labels none."""
    if source is None:
        return {}
    known = load_labels(source, [str(p) for p in paths])
    cells = {str(p): label_cell(known[str(p)]) for p in paths if str(p) in known}
    if paths and not cells:
        raise UserError(f"--labels {source} labels none of the {len(paths)} images to encode "
                        "(paths in a CSV are relative to the CSV's folder)")
    return cells


def model_codes(model: LoadedModel, paths: list[Path], batch_size: int, workers: int | None,
                device: torch.device, cache_dir: Path | None) -> Iterator[tuple[np.ndarray, list[Path], np.ndarray]]:
    """(packed codes, paths, decodable mask) of ``paths`` a batch or chunk at a time; a model whose
    backbone was frozen takes its backbone features from the cache in ``cache_dir`` (None: no cache)."""
    to_device(model.network, device)
    if model.config.get("frozen_backbone") and cache_dir is not None:
        return _codes_from_cache(model, paths, Path(cache_dir), batch_size, workers, device)
    return _codes_from_images(model, paths, batch_size, workers, device)


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
