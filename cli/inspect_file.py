"""``hashkit inspect``: what a hashkit file holds, once it is validated.

Each kind of file is recognised by its content (an HDF5 ``schema`` attribute, a model file's
config, the keys of a JSON file, a FAISS index's stamp), read through the same validating readers
the commands use, and checked for consistency; anything wrong is a UserError naming the file.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from hashkit.hashing.errors import UserError, existing_file
from hashkit.hashing.files.outputs import file_digest
from hashkit.hashing.search.saved_index import SCHEMA as INDEX_SCHEMA
from hashkit.hashing.search.saved_index import load_saved_index


def inspect_file(path: Path) -> dict:
    """A summary of the hashkit file at ``path``: ``kind``, then what it holds; a UserError if it
    is not a hashkit file or does not pass its checks."""
    path = existing_file(path, "file")
    if h5py.is_hdf5(path):
        describe = _HDF5_KINDS.get(_hdf5_schema(path))
        if describe is None:
            raise UserError(f"{path} is an HDF5 file, but not one hashkit writes")
    elif path.suffix == ".faiss":
        describe = _saved_index
    elif zipfile.is_zipfile(path):  # torch.save writes a zip archive
        describe = _model
    elif (data := _json(path)) is not None:
        describe = _saved_index if data.get("schema") == INDEX_SCHEMA else (lambda _: _metrics(path, data))
    else:
        raise UserError(f"{path} is not a file hashkit writes (pairs.h5, model.pt, codes.h5, results.h5, "
                        "metrics.json, a saved index or a feature cache)")
    try:
        return {"path": str(path), **describe(path)}
    except (OSError, KeyError, ValueError, TypeError, AttributeError, RuntimeError) as error:  # h5py on damage
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{path} is damaged or not a complete hashkit file ({reason})") from error


def _hdf5_schema(path: Path) -> str:
    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs.get("schema", ""))
    except (OSError, KeyError) as error:  # KeyError: metadata that fails its checksum
        raise UserError(f"cannot open {path} as HDF5: {str(error).splitlines()[0]}") from error


def _json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _pairs(path: Path) -> dict:
    from hashkit.hashing.files.pairs_file import read_pairs

    pairs = read_pairs(path)
    models = np.unique(pairs.model_id[pairs.model_id >= 0])
    return {"kind": "pairs", "images": len(pairs.images), "registered": int((pairs.model_id >= 0).sum()),
            "models": len(models), "groups": len(np.unique(pairs.group[pairs.group >= 0])),
            "positives": len(pairs.positives), "verified_positives": int((pairs.inlier_matches > 0).sum()),
            "negatives": len(pairs.negatives),
            "unreadable": len(pairs.unreadable), "photo_root": str(pairs.photo_root),
            "photo_root_exists": pairs.photo_root.is_dir(), "settings": pairs.settings}


def _codes(path: Path) -> dict:
    from hashkit.hashing.storage.store import StoreReader

    with StoreReader(path) as store:
        paths = store.paths()
        labels = store.labels()
        uncommitted = len(store.file["codes"]) - store.count
        meta = store.meta
    if len(set(paths)) != len(paths):
        raise UserError(f"{path} is inconsistent: {len(paths) - len(set(paths))} paths are stored twice")
    return {"kind": "codes", "codes": len(paths), "bits": meta.bits, "method": meta.method,
            "model_digest": meta.model_digest, "backbone": meta.backbone, "hashkit_version": meta.hashkit_version,
            "labelled": sum(label is not None for label in labels or ()),
            "uncommitted_rows": uncommitted}


def _results(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        try:
            layout, ids, distances = f.attrs.get("layout", "knn"), f["ids"], f["distances"]
            queries = len(f["query_paths"])
            summary = {"kind": "results", "layout": str(layout), "queries": queries, "bits": int(f.attrs["bits"]),
                       "index": str(f.attrs.get("index", "flat")), "exact": bool(f.attrs.get("exact", True)),
                       "database": str(f.attrs["database"])}
            if "databases" in f.attrs:  # results of several stores searched as one
                summary["databases"] = json.loads(f.attrs["databases"])
            if ids.shape != distances.shape or f["paths"].shape != ids.shape:
                raise UserError(f"{path} is inconsistent: ids {ids.shape}, distances {distances.shape}, "
                                f"paths {f['paths'].shape}")
            if layout == "radius":
                offsets = f["offsets"][:]
                if len(offsets) != queries + 1 or offsets[-1] != len(ids) or (np.diff(offsets) < 0).any():
                    raise UserError(f"{path} is inconsistent: offsets do not partition the {len(ids)} results")
                summary.update(radius=int(f.attrs["radius"]), results=len(ids))
            elif ids.ndim != 2 or ids.shape[0] != queries:
                raise UserError(f"{path} is inconsistent: ids of shape {ids.shape} for {queries} queries")
            else:
                summary["k"] = int(ids.shape[1])
            values = ids[:]
            if values.size and values.min() < -1:
                raise UserError(f"{path} is inconsistent: a result row below -1")
        except (KeyError, TypeError, AttributeError, ValueError) as error:  # missing, or of another kind
            raise UserError(f"{path} is not a complete hashkit results file ({type(error).__name__}: {error})") \
                from error
    databases = [Path(name) for name in summary.get("databases", [summary["database"]])]
    summary["database_exists"] = all(database.is_file() for database in databases)
    if summary["database_exists"] and values.size:
        from hashkit.hashing.storage.store import StoreSet

        with StoreSet(databases) as db:
            if values.max() >= db.count:
                raise UserError(f"{path} is inconsistent: its results name row {int(values.max())}, but its "
                                f"database holds {db.count} rows (the store changed since the query?)")
    return summary


def _features(path: Path) -> dict:
    from hashkit.hashing.files.text_column import TextColumn

    with h5py.File(path, "r") as f:
        try:
            count = int(f.attrs["count"])
            rows = [len(f["features"]), TextColumn(f, "paths").rows, len(f["stamps"])]
            summary = {"kind": "feature-cache", "backbone": str(f.attrs["backbone"]),
                       "image_size": int(f.attrs["image_size"]), "rows": count,
                       "feature_shape": list(f["features"].shape[1:]), "dtype": str(f["features"].dtype)}
        except KeyError as error:
            raise UserError(f"{path} is not a complete hashkit feature cache of this version ({error})") from error
    if min(rows) < count:
        raise UserError(f"{path} is inconsistent: {count} committed rows, but {rows} features, paths and stamps")
    if max(rows) > count:
        summary["incomplete_rows"] = max(rows) - count  # a run killed during an append; ignored on read
    return summary


def _model(path: Path) -> dict:
    from hashkit.hashing.training.model_file import load_model

    loaded = load_model(path)
    config = loaded.config
    keys = ("method", "bits", "backbone", "image_size", "frozen_backbone", "hidden", "params", "epochs", "seed",
            "trained_on", "training_images", "hashkit_version", "schema_version")
    return {"kind": "model", "digest": loaded.digest, **{key: config.get(key) for key in keys},
            "classes": len(config.get("classes", [])),
            "parameters": sum(p.numel() for p in loaded.network.parameters())}


def _metrics(path: Path, metrics: dict) -> dict:
    """A metrics.json, read as ``metrics`` and checked as ``hashkit compare`` checks it."""
    from hashkit.hashing.evaluation.summaries import metrics_row

    if "evaluated_queries" not in metrics:
        raise UserError(f"{path} is a JSON file, but not a metrics.json from 'hashkit query'")
    row, k = metrics_row(path, path.name, metrics), metrics["k"]
    return {"kind": "metrics", "k": k, "queries": metrics.get("queries"), "evaluated_queries": row["queries"],
            "method": row["method"], "bits": row["bits"], "mAP": row["mAP"], f"mAP@{k}": row["mAP@k"],
            f"precision@{k}": row["precision@k"], "tie_aware_mAP": row["tie-aware mAP"]}


def _saved_index(path: Path) -> dict:
    """A saved index (``STORE.KIND.faiss``, or its stamp ``STORE.KIND.json``), checked against its
    store when present."""
    from hashkit.hashing.search.base import index_class
    from hashkit.hashing.storage.store import StoreReader

    path = path.with_suffix(".faiss")
    store_name, kind_name, _ = path.name.rsplit(".", 2)
    store = path.with_name(store_name)
    stamp = _json(path.with_suffix(".json"))
    if stamp is None:
        raise UserError(f"{path}: its stamp {path.with_suffix('.json').name} is missing or unreadable")
    summary = {"kind": "index", "index": kind_name, "store": str(store), "rows": stamp.get("rows"),
               "bits": stamp.get("bits")}
    if not path.is_file() or file_digest(path) != stamp.get("index_sha256"):
        raise UserError(f"{path} is missing, altered, or saved by an older hashkit: it does not match its stamp; "
                        "rerun hashkit index-build")
    if store.is_file():
        with StoreReader(store) as reader:
            index, _ = load_saved_index(store, index_class(kind_name), reader.codes(), reader.meta)
        if index is None:
            raise UserError(f"{path} is stale or unreadable: the store changed since it was built; "
                            "rerun hashkit index-build")
        summary["matches_store"] = True
    else:
        summary["matches_store"] = None  # nothing to check against
    return summary


_HDF5_KINDS: dict[str, Callable[[Path], dict]] = {
    "hashkit.pairs": _pairs, "hashkit.codes": _codes, "hashkit.results": _results, "hashkit.features": _features,
}
