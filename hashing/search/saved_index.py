"""Saved search indexes: a saveable index (``SearchIndex.saveable``: FAISS's) built once over a code
store, kept next to it (``STORE.NAME.faiss`` plus ``STORE.NAME.json``, its stamp: the store's digest
and the index file's) and reused while both are unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from hashkit.hashing import __version__
from hashkit.hashing.errors import UserError
from hashkit.hashing.files.locking import exclusive_lock
from hashkit.hashing.files.outputs import write_bytes
from hashkit.hashing.storage.store import StoreMeta, StoreReader

from .base import Database, SearchIndex, index_class

SCHEMA = "hashkit.index"


def index_paths(store: Path, kind: type[SearchIndex]) -> tuple[Path, Path]:
    """The index file and its stamp, next to ``store``."""
    store = Path(store)
    return store.with_name(f"{store.name}.{kind.name}.faiss"), store.with_name(f"{store.name}.{kind.name}.json")


def store_stamp(codes: np.ndarray, meta: StoreMeta) -> dict:
    """What identifies the store's contents: its model, row count and a digest of its codes."""
    return {"model_digest": meta.model_digest, "bits": meta.bits, "rows": len(codes),
            "codes_sha256": hashlib.sha256(np.ascontiguousarray(codes).tobytes()).hexdigest()}


def build_saved_index(store: Path, name: str) -> tuple[Path, int]:
    """``hashkit index-build``: build the index ``name`` over the code store ``store`` and save it
    beside it; the index file and the rows indexed."""
    kind = index_class(name)
    if not kind.saveable:
        raise UserError(f"index {kind.name} is built at query time; it needs no saved index")
    with StoreReader(store) as reader:
        codes, meta = reader.codes(), reader.meta
    return save_index(store, kind, codes, meta), len(codes)


def save_index(store: Path, kind: type[SearchIndex], codes: np.ndarray, meta: StoreMeta) -> Path:
    """Build ``kind`` over ``codes`` and save it with its stamp; returns the index file."""
    index_file, stamp_file = index_paths(store, kind)
    data = kind.build(Database.in_memory(codes)).to_bytes()
    stamp = {"schema": SCHEMA, "index": kind.name, "hashkit_version": __version__, **store_stamp(codes, meta),
             "index_sha256": hashlib.sha256(data).hexdigest()}
    with exclusive_lock(index_file):
        write_bytes(index_file, data)
        write_bytes(stamp_file, (json.dumps(stamp, indent=2) + "\n").encode())
    return index_file


def load_saved_index(store: Path, kind: type[SearchIndex], codes: np.ndarray,
                     meta: StoreMeta) -> tuple[SearchIndex | None, str]:
    """The saved index of ``store`` and ``"loaded"``, or None and ``"none"`` (not saved) or
    ``"stale"`` (the store changed since it was built, or the files do not match)."""
    index_file, stamp_file = index_paths(store, kind)
    if not index_file.exists() or not stamp_file.exists():
        return None, "none"
    try:
        stamp = json.loads(stamp_file.read_text(encoding="utf-8"))
    except ValueError:
        return None, "stale"
    current = store_stamp(codes, meta)
    if stamp.get("schema") != SCHEMA or {key: stamp.get(key) for key in current} != current:
        return None, "stale"
    data = index_file.read_bytes()
    if hashlib.sha256(data).hexdigest() != stamp.get("index_sha256"):  # altered, or saved by an older hashkit
        return None, "stale"
    try:
        return kind.from_bytes(data), "loaded"
    except RuntimeError:
        return None, "stale"
