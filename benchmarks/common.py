"""What the quality benchmarks share: the Fashion-MNIST export, train / encode / query through the
library (the same functions as the CLI), one record per run, and the float-feature baseline."""

from __future__ import annotations

import gzip
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from hashkit.hashing.evaluation.metrics import ranking_scores
from hashkit.hashing.evaluation.query import query
from hashkit.hashing.storage.encode import encode
from hashkit.hashing.training.backbones import IMAGENET_MEAN, IMAGENET_STD, build_backbone
from hashkit.hashing.training.features import cached_features, weights_digest
from hashkit.hashing.training.train import TrainOptions, TrainSummary, train

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
COMMIT = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"], capture_output=True,
                        text=True).stdout.strip()  # of the code that runs, recorded in each result row
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
SEED = 0  # of the data: splits, exports, row orders
SEEDS = (0, 1, 2)  # of training: every tuned section's rows are means over these
LR_GRID = (1e-4, 3e-4, 1e-3)
OPTIMIZER_GRID = ("adam", "rmsprop")  # rmsprop: DeepHash-pytorch's choice for its methods
GRID = [(optimizer, lr) for optimizer in OPTIMIZER_GRID for lr in LR_GRID]  # every deep method's, on validation
VALIDATION_PER_CLASS = 100  # training images per class set aside to choose optimiser and learning rate
BITS = (16, 32, 64)
IMAGE_SIZE = 128  # every section's input size: MobileNetV2 then gives 4 x 4 feature maps
EPOCHS = 20
HIDDEN = 1024  # hidden layer of the heads on pooled features (label-free methods and the supervised peers)
DEEP = dict(freeze_backbone=True, epochs=EPOCHS, batch_size=128, optimizer="adam", lr=1e-3)  # every deep method


def cpu_description() -> str:
    """This machine's cores and CPU as /proc/cpuinfo names it, with the family and model numbers
    that tell apart CPUs sharing one name: the same run can differ in its last digits across CPUs."""
    cpuinfo = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    numbers = f" (family {fields['cpu family']}, model {fields['model']})" if "cpu family" in fields else ""
    return f"{os.cpu_count()} cores of {fields.get('model name', platform.machine())}{numbers}"


def common_options(cache: Path) -> dict:
    """The training options every method of every section shares: backbone, input size, seed, cache."""
    return dict(backbone="mobilenet_v2", weights="imagenet", image_size=IMAGE_SIZE, seed=SEED, feature_cache=cache,
                overwrite=True)


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


def export_fashion_mnist(root: Path) -> tuple[Path, Path, Path, Path]:
    """Write the protocol's query, database and training images as PNGs, and their labels.

    Rows never carry the label: queries and database images are named by their position in a
    seeded random order (``query/00042.png``), so the sorted file list, and so the store's row
    order, is a random order, never grouped by class. The training images are links to their
    database files in class folders (``train/<class>/<n>.png``: ``--labels folders``; batches
    are shuffled anyway). ``labels.csv`` labels every query and database image.
    """
    query_dir, db_dir, train_dir, labels_csv = root / "query", root / "db", root / "train", root / "labels.csv"
    if (root / "done").exists():
        return query_dir, db_dir, train_dir, labels_csv
    shutil.rmtree(root, ignore_errors=True)
    images, labels = fashion_mnist_arrays()
    rng = np.random.default_rng(SEED)
    test = np.arange(60000, 70000)
    queries = np.concatenate([rng.choice(test[labels[test] == c], 100, replace=False) for c in range(10)])
    database = np.setdiff1d(np.arange(70000), queries)
    training = np.concatenate([rng.choice(database[labels[database] == c], 500, replace=False)
                               for c in range(10)])
    rows, files = [], {}
    for folder, members in ((query_dir, queries), (db_dir, database)):
        folder.mkdir(parents=True)
        for position, i in enumerate(rng.permutation(members)):
            name = f"{folder.name}/{position:05d}.png"
            cv2.imwrite(str(root / name), images[i])
            rows.append(f"{name},{CLASSES[labels[i]]}")
            files[i] = root / name
    for i in training:  # the same files, linked
        target = train_dir / CLASSES[labels[i]] / files[i].name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(files[i], target)
    labels_csv.write_text("path,label\n" + "\n".join(rows) + "\n")
    (root / "done").touch()
    return query_dir, db_dir, train_dir, labels_csv


def evaluate(model: Path, db_inputs: list[Path], query_inputs: list[Path], work: Path, k: int,
             ground_truth: str, cache: Path) -> dict:
    """Encode database and queries with ``model`` (once per model), query at ``k``; the metrics."""
    db, queries = work / f"{model.stem}-db.h5", work / f"{model.stem}-queries.h5"
    if any(not f.exists() or f.stat().st_mtime < model.stat().st_mtime for f in (db, queries)):
        encode(model, db_inputs, db, overwrite=True, feature_cache=cache)
        encode(model, query_inputs, queries, overwrite=True, feature_cache=cache)
    results = work / f"{model.stem}-results-{k}.h5"
    summary = query(db, queries, k, results, ground_truth=ground_truth,
                    metrics_path=work / f"{model.stem}-metrics-{k}.json", overwrite=True)
    results.unlink()  # up to 120 MB each, and only the metrics are kept: a full run filled the disk
    return summary.metrics


def run_method(dataset: str, name: str, bits: int, settings: dict, common: dict, work: Path, train_source: dict,
               db: list[Path], queries: list[Path], ground_truth: str, ks: tuple[int, ...]) -> dict:
    """Train one method, evaluate it at every k of ``ks``, print and return its record."""
    model = work / f"{name}-{bits}-{common['seed']}.pt"
    summary = timed_train(model, TrainOptions(bits=bits, **common, **settings), **train_source)
    metrics = {k: evaluate(model, db, queries, work, k, ground_truth, common["feature_cache"]) for k in ks}
    row = record(dataset, name, bits, metrics, summary, settings, common["seed"])
    row["commit"] = COMMIT
    print(f"{dataset} {name} {bits} seed {common['seed']}: " + ", ".join(
        f"{key} {value}" for key, value in row.items() if key.startswith(("tie-aware", "NDCG", "distinct"))),
        flush=True)
    return row


def validation_split(train_dir: Path, out: Path, per_class: int = VALIDATION_PER_CLASS) -> tuple[Path, Path, str]:
    """Of each class folder of ``train_dir``, the first ``per_class`` images (by name) as
    validation queries and the others as the validation training set and database (links, made
    anew): (training folder, query folder, their labels: "folders"), both in class folders."""
    shutil.rmtree(out, ignore_errors=True)
    for folder in sorted(p for p in train_dir.iterdir() if p.is_dir()):
        for position, image in enumerate(sorted(folder.glob("*.png"))):
            target = out / ("queries" if position < per_class else "train") / folder.name / image.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(image, target)
    return out / "train", out / "queries", "folders"


def tuned_settings(name: str, bits: int, settings: dict, common: dict, work: Path, train_source: dict,
                   split: tuple[Path, Path, str]) -> tuple[dict, dict]:
    """``settings`` with the optimiser and learning rate of GRID whose model, trained (seed SEED)
    on the validation training set, gives the validation queries the best tie-aware mAP against
    it, and every grid point's score. Methods without a learning rate (LSH, ITQ) are not tuned."""
    if "lr" not in settings:
        return settings, {}
    source = dict(train_source, images_dir=split[0], **({"labels": split[2]} if train_source.get("labels") else {}))
    work.mkdir(parents=True, exist_ok=True)
    grid = {}
    for optimizer, lr in GRID:
        model = work / f"{name}-{bits}-{optimizer}-lr{lr:g}.pt"
        chosen = dict(settings, optimizer=optimizer, lr=lr)
        timed_train(model, TrainOptions(bits=bits, **dict(common, seed=SEED), **chosen), **source)
        metrics = evaluate(model, [split[0]], [split[1]], work, 1000, split[2], common["feature_cache"])
        grid[grid_key(optimizer, lr)] = round(metrics["tie_aware"]["mAP"], 4)
    optimizer, lr = max(GRID, key=lambda point: grid[grid_key(*point)])
    print(f"{name} {bits}: validation grid {grid}, {grid_key(optimizer, lr)}", flush=True)
    return dict(settings, optimizer=optimizer, lr=lr), grid


def grid_key(optimizer: str, lr: float) -> str:
    """A grid point's name in the results: ``adam 0.001``."""
    return f"{optimizer} {lr:g}"


SELECTED: set[str] | None = None  # run only these methods (quality.py --methods); None: every method


def selected(name: str) -> bool:
    return SELECTED is None or name in SELECTED


def run_seeds(dataset: str, name: str, bits: int, settings: dict, common: dict, work: Path, train_source: dict,
              db: list[Path], queries: list[Path], ground_truth: str, ks: tuple[int, ...],
              split: tuple[Path, Path, str]) -> list[dict]:
    """The method's optimiser and learning rate chosen on the validation split, then a record per
    seed of SEEDS; nothing for a method left out by ``SELECTED``."""
    if not selected(name):
        return []
    work.mkdir(parents=True, exist_ok=True)
    chosen, grid = tuned_settings(name, bits, settings, common, work / "validation", train_source, split)
    rows = [run_method(dataset, name, bits, chosen, dict(common, seed=seed), work, train_source, db, queries,
                       ground_truth, ks) for seed in SEEDS]
    for row in rows:
        row["validation_grid"] = grid
    return rows


def timed_train(model: Path, options: TrainOptions, **sources) -> tuple[float, TrainSummary]:
    """Wall-clock seconds of the whole training run (features included) and its summary."""
    started = time.perf_counter()
    summary = train(model, options, **sources)
    return round(time.perf_counter() - started, 2), summary


METRIC_PREFIXES = ("mAP", "precision@", "NDCG@", "ACG@", "wmAP")


def record(dataset: str, method: str, bits: int, metrics: dict[int, dict], trained: tuple[float, TrainSummary],
           settings: dict, seed: int = SEED) -> dict:
    """One result row: the metrics of every evaluated k, training time, mean seconds per epoch."""
    seconds, summary = trained
    row = {"dataset": dataset, "method": method, "bits": bits, "seed": seed, "train_seconds": seconds,
           "epoch_seconds": round(float(np.mean(summary.epoch_seconds)), 3) if summary.epoch_seconds else None,
           "training_images": summary.images, "settings": settings}
    for values in metrics.values():
        row.update({key: value for key, value in values.items() if key.startswith(METRIC_PREFIXES)})
        row.update({f"tie-aware {key}": value for key, value in values["tie_aware"].items()})
        row.update(values["collapse"])
        row["evaluated_queries"] = values["evaluated_queries"]
    return row


def cosine_ranking_scores(photos: list[Path], labels: list[str], cache: Path, k: int) -> tuple[float, float, float]:
    """``descriptor_ranking_scores`` of the frozen ImageNet MobileNetV2's pooled features at 224 px."""
    backbone = build_backbone("mobilenet_v2")
    features, ok = cached_features(backbone, "mobilenet_v2", weights_digest(backbone), photos, 224, IMAGENET_MEAN,
                                   IMAGENET_STD, 64, None, torch.device("cpu"), cache)
    if not ok.all():
        raise SystemExit(f"error: cannot decode {photos[int(np.argmin(ok))]}")
    return descriptor_ranking_scores(features, labels, k)


def descriptor_ranking_scores(features: np.ndarray, labels: list[str], k: int) -> tuple[float, float, float]:
    """Mean AP, AP@k and precision@k (hashkit query's definitions) of ranking, for each image, all
    the others by the cosine of their ``features`` (no ties); images with no other image of their
    label are not evaluated as queries."""
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    labels_array = np.array(labels)
    scores = []
    for q in range(len(unit)):
        others = np.delete(np.arange(len(unit)), q)
        relevant = labels_array[others] == labels_array[q]
        if relevant.any():
            order = np.argsort(-(unit[others] @ unit[q]), kind="stable")
            scores.append(ranking_scores(np.flatnonzero(relevant[order]) + 1, k)[:3])
    mean = np.mean(scores, axis=0)
    return float(mean[0]), float(mean[1]), float(mean[2])
