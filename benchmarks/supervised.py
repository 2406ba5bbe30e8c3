"""Supervised methods on Fashion-MNIST: the sections of benchmarks/quality.py that use labels.

- fashion-mnist-supervised: the protocol of the label-free section (1,000 queries, 5,000 training
  images, 69,000 database images) with class labels for training; ATH, RV-SSDH (random and
  learned VLAD centres), ExchNet, and LSH and ITQ on the same backbone features as the floor.
- fashion-mnist-small: the same queries and database, 20 training images per class.
- fashion-mnist-mosaics: 2x2 mosaics of Fashion-MNIST images whose label set is the classes they
  show (examples/labelled_sets.py, seeded); DSRH against ITQ and against ATH trained on one label
  per mosaic (its top-left tile).
Every model sees the same frozen MobileNetV2 (ImageNet) at the same input size.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from common import CLASSES, SEED, evaluate, export_fashion_mnist, fashion_mnist_arrays, record, timed_train

from hashkit.hashing.train import TrainOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from labelled_sets import write_labels_csv, write_mosaics  # noqa: E402

BITS = (16, 32, 64)
DEEP = dict(freeze_backbone=True, epochs=20, batch_size=128, lr=1e-3)
SUPERVISED = {
    "lsh": dict(method="lsh"),
    "itq": dict(method="itq"),
    "ath": dict(method="ath", **DEEP),
    "rvssdh": dict(method="rvssdh", **DEEP),
    "rvssdh-learned-centres": dict(method="rvssdh", params={"centres": "learned"}, **DEEP),
    "exchnet": dict(method="exchnet", **DEEP),
}


def _run(dataset: str, name: str, bits: int, settings: dict, common: dict, work: Path, train_source: dict,
         db: list[Path], queries: list[Path], ground_truth: str, ks: tuple[int, ...]) -> dict:
    model = work / f"{name}-{bits}.pt"
    summary = timed_train(model, TrainOptions(bits=bits, **common, **settings), **train_source)
    metrics = {k: evaluate(model, db, queries, work, k, ground_truth, common["feature_cache"]) for k in ks}
    row = record(dataset, name, bits, metrics, summary, settings)
    print(f"{dataset} {name} {bits}: " + ", ".join(f"{key} {value}" for key, value in row.items()
                                                    if key.startswith(("mAP", "precision", "NDCG"))), flush=True)
    return row


def fashion_mnist_supervised(root: Path, cache: Path, image_size: int) -> list[dict]:
    """Full training set at 16, 32 and 64 bits, then 20 images per class at 32 bits."""
    query_dir, db_dir, train_dir = export_fashion_mnist(root)
    work = root.parent / "supervised-work"
    work.mkdir(exist_ok=True)
    common = dict(backbone="mobilenet_v2", weights="imagenet", image_size=image_size, seed=SEED,
                  feature_cache=cache, overwrite=True)
    records = []
    for bits in BITS:
        for name, settings in SUPERVISED.items():
            source = dict(images_dir=train_dir, labels=None if settings["method"] in ("lsh", "itq") else "folders")
            records.append(_run("fashion-mnist-supervised", name, bits, settings, common, work, source,
                                [db_dir], [query_dir], "folders", (1000, 10)))
    small = _small_training_set(train_dir, root.parent / "fashion-mnist-small", 20)
    for name, settings in SUPERVISED.items():
        source = dict(images_dir=small, labels=None if settings["method"] in ("lsh", "itq") else "folders")
        settings = dict(settings, batch_size=64, epochs=40) if "epochs" in settings else settings
        records.append(_run("fashion-mnist-small", name, 32, settings, common, work, source,
                            [db_dir], [query_dir], "folders", (1000, 10)))
    return records


def _small_training_set(train_dir: Path, out: Path, per_class: int) -> Path:
    """The first ``per_class`` images (by name) of each class of the training set, linked."""
    shutil.rmtree(out, ignore_errors=True)
    for name in CLASSES:
        (out / name).mkdir(parents=True)
        for image in sorted((train_dir / name).glob("*.png"))[:per_class]:
            (out / name / image.name).hardlink_to(image)
    return out


def fashion_mnist_mosaics(data: Path, cache: Path, image_size: int) -> list[dict]:
    """DSRH against ITQ and single-label ATH on multi-label mosaics."""
    root = data / "fashion-mnist-mosaics"
    labels, single = export_mosaics(root)
    work = root / "work"
    work.mkdir(exist_ok=True)
    common = dict(backbone="mobilenet_v2", weights="imagenet", image_size=image_size, seed=SEED,
                  feature_cache=cache, overwrite=True)
    settings = {
        "itq": (dict(method="itq"), None),
        "ath-single-label": (dict(method="ath", **DEEP), str(single)),
        "dsrh": (dict(method="dsrh", **dict(DEEP, batch_size=64)), str(labels)),
    }
    records = []
    for bits in BITS:
        for name, (options, label_source) in settings.items():
            source = dict(images_dir=root / "train", labels=label_source)
            records.append(_run("fashion-mnist-mosaics", name, bits, options, common, work, source,
                                [root / "db"], [root / "queries"], str(labels), (100,)))
    return records


def export_mosaics(root: Path) -> tuple[Path, Path]:
    """Mosaics from disjoint image pools (train: 5,000 from the training split; queries: 1,000 and
    database: 10,000 from the test split); labels.csv and single.csv (top-left tile's class)."""
    labels, single = root / "labels.csv", root / "single.csv"
    if (root / "done").exists():
        return labels, single
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
    write_labels_csv(single, [(path, tiles[:1]) for path, tiles in rows])
    (root / "done").touch()
    return labels, single
