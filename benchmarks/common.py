"""What the quality benchmark's sections share: the Fashion-MNIST export, train / encode / query
through the library (the same functions as the CLI), and one record per run."""

from __future__ import annotations

import gzip
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from hashkit.hashing.encode import encode
from hashkit.hashing.query import query
from hashkit.hashing.train import TrainOptions, TrainSummary, train

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
SEED = 0


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 70,000 images (28 x 28 uint8) and class indices: the training split, then the test split."""
    images = np.concatenate([read_idx(FASHION_MNIST / "train-images-idx3-ubyte.gz"),
                             read_idx(FASHION_MNIST / "t10k-images-idx3-ubyte.gz")])
    labels = np.concatenate([read_idx(FASHION_MNIST / "train-labels-idx1-ubyte.gz"),
                             read_idx(FASHION_MNIST / "t10k-labels-idx1-ubyte.gz")])
    return images, labels


def export_fashion_mnist(root: Path) -> tuple[Path, Path, Path]:
    """Write the protocol's query, database and training images as PNGs in class folders."""
    query_dir, db_dir, train_dir = root / "query", root / "db", root / "train"
    if (root / "done").exists():
        return query_dir, db_dir, train_dir
    shutil.rmtree(root, ignore_errors=True)
    images, labels = fashion_mnist_arrays()
    rng = np.random.default_rng(SEED)
    test = np.arange(60000, 70000)
    queries = np.concatenate([rng.choice(test[labels[test] == c], 100, replace=False) for c in range(10)])
    database = np.setdiff1d(np.arange(70000), queries)
    training = np.concatenate([rng.choice(database[labels[database] == c], 500, replace=False)
                               for c in range(10)])
    for folder, members in ((query_dir, queries), (db_dir, database)):
        for c in CLASSES:
            (folder / c).mkdir(parents=True)
        for i in members:
            cv2.imwrite(str(folder / CLASSES[labels[i]] / f"{i:05d}.png"), images[i])
    for i in training:  # the same files, linked, so their cached features are shared
        target = train_dir / CLASSES[labels[i]] / f"{i:05d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(db_dir / CLASSES[labels[i]] / f"{i:05d}.png", target)
    (root / "done").touch()
    return query_dir, db_dir, train_dir


def evaluate(model: Path, db_inputs: list[Path], query_inputs: list[Path], work: Path, k: int,
             ground_truth: str, cache: Path) -> dict:
    """Encode database and queries with ``model`` (once per model), query at ``k``; the metrics."""
    db, queries = work / f"{model.stem}-db.h5", work / f"{model.stem}-queries.h5"
    if any(not f.exists() or f.stat().st_mtime < model.stat().st_mtime for f in (db, queries)):
        encode(model, db_inputs, db, overwrite=True, feature_cache=cache)
        encode(model, query_inputs, queries, overwrite=True, feature_cache=cache)
    summary = query(db, queries, k, work / f"{model.stem}-results-{k}.h5", ground_truth=ground_truth,
                    metrics_path=work / f"{model.stem}-metrics-{k}.json", overwrite=True)
    return summary.metrics


def timed_train(model: Path, options: TrainOptions, **sources) -> tuple[float, TrainSummary]:
    """Wall-clock seconds of the whole training run (features included) and its summary."""
    started = time.perf_counter()
    summary = train(model, options, **sources)
    return round(time.perf_counter() - started, 2), summary


METRIC_PREFIXES = ("mAP", "precision@", "NDCG@", "ACG@", "wmAP")


def record(dataset: str, method: str, bits: int, metrics: dict[int, dict], trained: tuple[float, TrainSummary],
           settings: dict) -> dict:
    """One result row: the metrics of every evaluated k, training time, mean seconds per epoch."""
    seconds, summary = trained
    row = {"dataset": dataset, "method": method, "bits": bits, "seed": SEED, "train_seconds": seconds,
           "epoch_seconds": round(float(np.mean(summary.epoch_seconds)), 3) if summary.epoch_seconds else None,
           "training_images": summary.images, "settings": settings}
    for values in metrics.values():
        row.update({key: value for key, value in values.items() if key.startswith(METRIC_PREFIXES)})
        row.update({f"tie-aware {key}": value for key, value in values.get("tie_aware", {}).items()})
        row["evaluated_queries"] = values["evaluated_queries"]
    return row
