"""``hashkit encode``: images to binary codes appended to an HDF5 code store.

A run with nothing new to encode (every image already in the store, made by the same model file)
reads the store's paths and the model file's digest and stops there: it never imports torch nor
loads the model (benchmarks/results/encode.md times such a run)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hashkit.hashing import __version__
from hashkit.hashing.errors import UserError, existing_file
from hashkit.hashing.files.images import resolve_inputs
from hashkit.hashing.files.labels import load_labels
from hashkit.hashing.files.locking import exclusive_lock
from hashkit.hashing.files.outputs import file_digest, output_file
from hashkit.hashing.memory import check_batch_memory, keep_freed_memory
from hashkit.hashing.user_cache import default_cache_dir, traced_networks_dir

from .shards import in_shard, shard_store_name, torchrun_shard
from .store import CodeStoreWriter, StoreMeta, StoreReader, label_cell

_DEFAULT_CACHE = object()


@dataclass
class EncodeSummary:
    store: str
    encoded: int
    already_present: int
    total: int
    unreadable: list[str] = field(default_factory=list)
    shard: str | None = None  # "i/n" when one shard was encoded


def encode(model_path: Path, inputs: list[Path], output: Path, batch_size: int = 64,
           workers: int | None = None, device: str = "auto", overwrite: bool = False,
           feature_cache: Path | None | object = _DEFAULT_CACHE, labels: str | None = None,
           shard: tuple[int, int] | None = None) -> EncodeSummary:
    """Encode every image named by ``inputs`` into the store ``output``.

    An existing store of the same model is appended to, skipping paths it already holds. For a
    model whose backbone was frozen, backbone features come from the feature cache
    (``feature_cache``: a folder, None for no cache; default ``~/.cache/hashkit/features``).
    With ``labels`` (a source for ``labels.load_labels``), each image's labels are stored
    with its code; images the source does not label are stored as unknown.
    With ``shard`` (i, n), only the images of shard i of n are encoded (``shards.in_shard``); under
    torchrun without ``shard``, each process takes its own and writes ``shards.shard_store_name``.
    """
    if shard is None and (shard := torchrun_shard()) is not None:
        output = shard_store_name(Path(output), shard)
    output = output_file(output, overwrite=True)  # an existing store is appended to
    model_path = existing_file(model_path, "model file")
    paths = resolve_inputs(inputs)
    if not paths:
        raise UserError(f"no images found in {', '.join(map(str, inputs))}")
    if shard is not None:
        paths = [path for path in paths if in_shard(path, shard)]
    cache_dir = default_cache_dir() if feature_cache is _DEFAULT_CACHE else feature_cache
    with exclusive_lock(output):
        present, existing = set(), None
        if output.exists() and not overwrite:
            with StoreReader(output) as existing:  # its paths only, not its codes
                present = set(existing.paths())
        todo = [p for p in paths if str(p) not in present and os.path.realpath(p) not in present]  # older stores
        if not todo and existing is not None and existing.meta.model_digest == file_digest(model_path):
            return _summary(output, 0, len(paths), existing.count, [], shard)
        cells = _label_cells(labels, todo)  # refused before anything is written
        from hashkit.hashing.runtime import resolve_device  # torch: only once there is something to encode
        from hashkit.hashing.training.traced_copy import load_for_encoding

        from .model_codes import model_codes

        torch_device = resolve_device(device)
        model = load_for_encoding(model_path, traced_networks_dir(), torch_device)
        config = model.config
        check_batch_memory(batch_size, config["image_size"], "inference", "--batch-size")
        meta = StoreMeta(config["bits"], config["method"], model.digest, config["backbone"], __version__)
        keep_freed_memory()
        if overwrite:
            output.unlink(missing_ok=True)
        with _writer(output, meta) as store:
            unreadable = []
            for codes, chunk_paths, ok in model_codes(model, todo, batch_size, workers, torch_device, cache_dir):
                unreadable += [str(p) for p, good in zip(chunk_paths, ok) if not good]
                encoded = [str(p) for p, good in zip(chunk_paths, ok) if good]
                store.append(codes[ok], encoded, [cells.get(p, "") for p in encoded])
            total = store.count
    return _summary(output, len(todo) - len(unreadable), len(paths) - len(todo), total, unreadable, shard)


def _summary(output: Path, encoded: int, already_present: int, total: int, unreadable: list[str],
             shard: tuple[int, int] | None) -> EncodeSummary:
    return EncodeSummary(str(output), encoded, already_present, total, unreadable,
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
