"""Supervised methods on Fashion-MNIST: the sections of benchmarks/quality.py that use labels.

- fashion-mnist-supervised: the protocol of the label-free section (1,000 queries, 5,000 training
  images, 69,000 database images) with class labels for training; the seed methods ATH, RV-SSDH
  and ExchNet, the peers CSQ, DPSH and HashNet, and LSH and ITQ on the same backbone features
  as the floor.
- fashion-mnist-small: the same queries and database, 20 training images per class.
- fashion-mnist-mosaics: 2x2 mosaics of Fashion-MNIST images whose label set is the classes they
  show (examples/labelled_sets.py, seeded); DSRH against the multi-label peers (CSQ with
  multi-label centres, DPSH, HashNet) and ITQ.
Every model sees the same frozen MobileNetV2 (ImageNet) at the same input size.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from common import (
    CLASSES,
    DEEP,
    HIDDEN,
    SEED,
    common_options,
    export_fashion_mnist,
    fashion_mnist_arrays,
    run_seeds,
    validation_split,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from labelled_sets import write_labels_csv, write_mosaics  # noqa: E402

PEERS = {  # supervised peers, on pooled features through a hidden layer (multi-label capable)
    "csq": dict(method="csq", hidden=HIDDEN, **DEEP),
    "dpsh": dict(method="dpsh", hidden=HIDDEN, **DEEP),
    "hashnet": dict(method="hashnet", hidden=HIDDEN, **DEEP),
}
SUPERVISED = {
    "lsh": dict(method="lsh"),
    "itq": dict(method="itq"),
    "ath": dict(method="ath", **DEEP),
    "rvssdh": dict(method="rvssdh", **DEEP),
    "exchnet": dict(method="exchnet", **DEEP),
    **PEERS,
}


def fashion_mnist_supervised(root: Path, cache: Path, bits_list: tuple[int, ...]) -> list[dict]:
    """The full training set at each of ``bits_list``; every deep method at the learning rate its
    validation split chooses (``common.run_seeds``), 3 seeds."""
    query_dir, db_dir, train_dir, labels = export_fashion_mnist(root)
    split = validation_split(train_dir, root.parent / "supervised-validation")
    return [row for bits in bits_list for name, settings in SUPERVISED.items()
            for row in _run_supervised("fashion-mnist-supervised", name, bits, settings, root, cache, train_dir,
                                       split)]


def fashion_mnist_small(root: Path, cache: Path, bits_list: tuple[int, ...]) -> list[dict]:
    """20 training images per class at 32 bits (deep methods 40 epochs, batch 64), the learning
    rate chosen on 5 of the 20 per class."""
    train_dir = export_fashion_mnist(root)[2]
    small = _small_training_set(train_dir, root.parent / "fashion-mnist-small", 20)
    split = validation_split(small, root.parent / "small-validation", 5)
    return [row for name, settings in SUPERVISED.items()
            for row in _run_supervised("fashion-mnist-small", name, 32,
                                       dict(settings, batch_size=64, epochs=40) if "epochs" in settings else settings,
                                       root, cache, small, split)]


def _run_supervised(dataset: str, name: str, bits: int, settings: dict, root: Path, cache: Path, images: Path,
                    split: tuple[Path, Path, str]) -> list[dict]:
    query_dir, db_dir, _, labels = export_fashion_mnist(root)
    source = dict(images_dir=images, labels=None if settings["method"] in ("lsh", "itq") else "folders")
    return run_seeds(dataset, name, bits, settings, common_options(cache), root.parent / "supervised-work" / dataset,
                     source, [db_dir], [query_dir], str(labels), (1000, 10), split)


def _small_training_set(train_dir: Path, out: Path, per_class: int) -> Path:
    """The first ``per_class`` images (by name) of each class of the training set, linked."""
    shutil.rmtree(out, ignore_errors=True)
    for name in CLASSES:
        (out / name).mkdir(parents=True)
        for image in sorted((train_dir / name).glob("*.png"))[:per_class]:
            (out / name / image.name).hardlink_to(image)
    return out


def fashion_mnist_mosaics(data: Path, cache: Path, bits_list: tuple[int, ...]) -> list[dict]:
    """DSRH against the multi-label peers and ITQ on multi-label mosaics."""
    root = data / "fashion-mnist-mosaics"
    labels = export_mosaics(root)
    work = root / "work"
    work.mkdir(exist_ok=True)
    split = mosaics_validation_split(root, labels)
    settings = {"itq": dict(method="itq"), "dsrh": dict(method="dsrh", **DEEP), **PEERS}
    return [row for bits in bits_list for name, options in settings.items()
            for row in run_seeds("fashion-mnist-mosaics", name, bits, options, common_options(cache), work,
                                 dict(images_dir=root / "train", labels=None if name == "itq" else str(labels)),
                                 [root / "db"], [root / "queries"], str(labels), (100,), split)]


def mosaics_validation_split(root: Path, labels: Path, queries: int = 500) -> tuple[Path, Path, str]:
    """The first ``queries`` training mosaics (by name) as validation queries, the others as the
    validation training set and database (links, made anew), and a labels CSV of both."""
    out = root / "validation"
    shutil.rmtree(out, ignore_errors=True)
    label_sets = {row["path"]: row["labels"].split(";") for row in csv.DictReader(labels.open())}
    rows = []
    for position, image in enumerate(sorted((root / "train").glob("*.png"))):
        target = out / ("queries" if position < queries else "train") / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(image, target)
        rows.append((f"{target.parent.name}/{image.name}", label_sets[f"train/{image.name}"]))
    write_labels_csv(out / "labels.csv", rows)
    return out / "train", out / "queries", str(out / "labels.csv")


def export_mosaics(root: Path) -> Path:
    """Mosaics from disjoint image pools (train: 5,000 from the training split; queries: 1,000 and
    database: 10,000 from the test split) and their labels.csv."""
    labels = root / "labels.csv"
    if (root / "done").exists():
        return labels
    shutil.rmtree(root, ignore_errors=True)
    images, classes = fashion_mnist_arrays()
    rng = np.random.default_rng(SEED)
    test = rng.permutation(np.arange(60000, 70000))
    pools = {"train": np.arange(60000), "queries": test[:2000], "db": test[2000:]}
    rows = []
    for split, count in (("train", 5000), ("queries", 1000), ("db", 10000)):
        pool = pools[split]
        rows += write_mosaics(images[pool], classes[pool], CLASSES, root / split, count, rng, 56)
    write_labels_csv(labels, rows)
    (root / "done").touch()
    return labels
