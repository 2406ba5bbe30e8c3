"""Retrieval quality of the label-free methods, on real photos and on the rendered scene set.

    python benchmarks/quality.py            # or: make bench-quality

Writes benchmarks/results/quality.md (for people) and quality.json (one record per dataset,
method and bit length: the metrics, training time and seed). Every step goes through the same
library functions as the CLI (train, encode, query). Work files go to benchmarks/data/.

Fashion-MNIST (Debian package dataset-fashion-mnist; `make bench-quality` installs it):
1,000 queries (100 per class) from the test split; the database is every other image (69,000);
5,000 training images (500 per class) drawn from the database; labels are used for scoring only.
Rendered scenes (examples/render_scenes.py, 5 scenes x 14 views): a seeded fifth of the photos
is held out as queries, the rest is reconstructed with COLMAP (pairs for BCDH) and is the
database; relevance = same true scene.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from hashkit.hashing.encode import encode
from hashkit.hashing.query import query
from hashkit.hashing.train import TrainOptions, train
from hashkit.sfm_pairs.reconstruct import ReconstructOptions, reconstruct

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
BITS = (16, 32, 64)
SEED = 0
HIDDEN = 1024  # hidden layer of the deep methods' heads (backbone frozen)


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def export_fashion_mnist(root: Path) -> tuple[Path, Path, Path]:
    """Write the protocol's query, database and training images as PNGs in class folders."""
    query_dir, db_dir, train_dir = root / "query", root / "db", root / "train"
    if (root / "done").exists():
        return query_dir, db_dir, train_dir
    shutil.rmtree(root, ignore_errors=True)
    images = np.concatenate([read_idx(FASHION_MNIST / "train-images-idx3-ubyte.gz"),
                             read_idx(FASHION_MNIST / "t10k-images-idx3-ubyte.gz")])
    labels = np.concatenate([read_idx(FASHION_MNIST / "train-labels-idx1-ubyte.gz"),
                             read_idx(FASHION_MNIST / "t10k-labels-idx1-ubyte.gz")])
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
    db, queries = work / f"{model.stem}-db.h5", work / f"{model.stem}-queries.h5"
    encode(model, db_inputs, db, overwrite=True, feature_cache=cache)
    encode(model, query_inputs, queries, overwrite=True, feature_cache=cache)
    summary = query(db, queries, k, work / f"{model.stem}-results.h5", ground_truth=ground_truth,
                    metrics_path=work / f"{model.stem}-metrics.json", overwrite=True)
    return summary.metrics


def timed_train(model: Path, options: TrainOptions, **sources) -> float:
    started = time.perf_counter()
    train(model, options, **sources)
    return round(time.perf_counter() - started, 2)


def fashion_mnist(data: Path, cache: Path, image_size: int) -> list[dict]:
    query_dir, db_dir, train_dir = export_fashion_mnist(data / "fashion-mnist")
    work = data / "fashion-mnist-work"
    work.mkdir(exist_ok=True)
    common = dict(backbone="mobilenet_v2", weights="imagenet", image_size=image_size, seed=SEED,
                  feature_cache=cache, overwrite=True)
    deep = dict(freeze_backbone=True, hidden=HIDDEN)
    settings = {
        "lsh": dict(method="lsh"),
        "itq": dict(method="itq"),
        "dsah": dict(method="dsah", epochs=30, batch_size=128, lr=1e-3, **deep),
        "dsah-no-refinement": dict(method="dsah", params={"rounds": 0}, epochs=30, batch_size=128, lr=1e-3, **deep),
        "bcdh": dict(method="bcdh", epochs=20, batch_size=256, lr=1e-3, **deep),
    }
    records = []
    for bits in BITS:
        for name, extra in settings.items():
            model = work / f"{name}-{bits}.pt"
            seconds = timed_train(model, TrainOptions(bits=bits, **common, **extra), images_dir=train_dir)
            metrics = evaluate(model, [db_dir], [query_dir], work, 1000, "folders", cache)
            records.append(record("fashion-mnist", name, bits, metrics, seconds, extra))
            print(f"fashion-mnist {name} {bits}: mAP {metrics['mAP']:.4f} mAP@1000 {metrics['mAP@1000']:.4f} "
                  f"train {seconds}s", flush=True)
    return records


def scenes(data: Path, cache: Path) -> list[dict]:
    root = data / "scenes"
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run([sys.executable, str(REPO / "examples" / "render_scenes.py"), str(root / "set"),
                    "--scenes", "5", "--views", "14", "--size", "640x480", "--seed", str(SEED)], check=True)
    photos = sorted((root / "set" / "photos").glob("*.jpg"))
    held_out = set(np.random.default_rng(SEED).choice(len(photos), len(photos) // 5, replace=False).tolist())
    for folder in ("db", "queries"):
        (root / folder).mkdir()
    for i, photo in enumerate(photos):
        shutil.move(photo, root / ("queries" if i in held_out else "db") / photo.name)
    truth = root / "truth.csv"
    lines = (root / "set" / "truth.csv").read_text().splitlines()
    moved = {p.name: ("queries" if i in held_out else "db") for i, p in enumerate(photos)}
    truth.write_text("\n".join([lines[0]] + [f"{moved[Path(p).name]}/{Path(p).name},{label}"
                                             for p, label in (line.split(",") for line in lines[1:])]) + "\n")
    work = root / "work"
    summary = reconstruct(root / "db", work, ReconstructOptions(seed=SEED))
    print(f"scenes: {len(summary.model_sizes)} models from {summary.images} photos", flush=True)
    common = dict(backbone="mobilenet_v2", weights="imagenet", image_size=128, seed=SEED,
                  feature_cache=cache, overwrite=True)
    settings = {
        "lsh": (dict(method="lsh"), dict(images_dir=root / "db")),
        "itq": (dict(method="itq"), dict(images_dir=root / "db")),
        "bcdh": (dict(method="bcdh", epochs=3, batch_size=64), dict(pairs_path=work / "pairs.h5")),
    }
    records = []
    for bits in BITS:
        for name, (extra, source) in settings.items():
            if name == "itq" and bits > len(photos) - len(held_out):
                continue
            model = work / f"{name}-{bits}.pt"
            seconds = timed_train(model, TrainOptions(bits=bits, **common, **extra), **source)
            metrics = evaluate(model, [root / "db"], [root / "queries"], work, 10, str(truth), cache)
            records.append(record("rendered-scenes", name, bits, metrics, seconds, extra))
            print(f"scenes {name} {bits}: mAP {metrics['mAP']:.4f} mAP@10 {metrics['mAP@10']:.4f} "
                  f"train {seconds}s", flush=True)
    return records


def record(dataset: str, method: str, bits: int, metrics: dict, seconds: float, settings: dict) -> dict:
    k = metrics["k"]
    return {"dataset": dataset, "method": method, "bits": bits, "seed": SEED, "train_seconds": seconds,
            "mAP": metrics["mAP"], f"mAP@{k}": metrics[f"mAP@{k}"], f"precision@{k}": metrics[f"precision@{k}"],
            "evaluated_queries": metrics["evaluated_queries"], "settings": settings}


def cache_speedup(data: Path, cache: Path, image_size: int) -> dict:
    """LSH training time with an empty feature cache, then again with the cache filled."""
    train_dir = data / "fashion-mnist" / "train"
    fresh = data / "cache-timing"
    shutil.rmtree(fresh, ignore_errors=True)
    options = TrainOptions(method="lsh", bits=64, image_size=image_size, seed=SEED, feature_cache=fresh,
                           overwrite=True)
    cold = timed_train(data / "timing.pt", options, images_dir=train_dir)
    warm = timed_train(data / "timing.pt", options, images_dir=train_dir)
    return {"images": 5000, "cold_seconds": cold, "warm_seconds": warm, "speedup": round(cold / warm, 1)}


def write_markdown(path: Path, records: list[dict], timing: dict, image_size: int) -> None:
    lines = ["# Retrieval quality (label-free methods)", "",
             "Produced by `make bench-quality` (`python benchmarks/quality.py`); seed 0; one 2-core CPU.",
             f"Backbone: torchvision MobileNetV2, ImageNet weights, frozen for every method on Fashion-MNIST "
             f"(inputs {image_size} px); deep heads: hidden layer of {HIDDEN} + hash layer.", ""]
    notes = {
        "fashion-mnist": "1,000 queries, 69,000 database images, 5,000 training images; BCDH's pairs are mutual "
                         "10-nearest neighbours in the backbone's feature space (no labels); dsah-no-refinement "
                         "is DSAH with its AND refinement switched off (`--param rounds=0`).",
        "rendered-scenes": "14 held-out photos as queries, 56 as database; BCDH is trained end to end (backbone "
                           "fine-tuned, 128 px, 3 epochs) on the pairs COLMAP mined from the 56; ITQ needs at "
                           "most as many bits as training images, so it has no 64-bit row here.",
    }
    for dataset, k in (("fashion-mnist", 1000), ("rendered-scenes", 10)):
        rows = [r for r in records if r["dataset"] == dataset]
        if not rows:
            continue
        lines += [f"## {dataset}", "", notes[dataset], "",
                  f"| method | bits | mAP@{k} | mAP (whole database) | precision@{k} | train s |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['method']} | {r['bits']} | {r[f'mAP@{k}']:.4f} | {r['mAP']:.4f} | {r[f'precision@{k}']:.4f} "
                  f"| {r['train_seconds']} |" for r in rows]
        lines.append("")
    if timing:
        lines += ["## Feature cache", "",
                  f"LSH on {timing['images']} Fashion-MNIST images: {timing['cold_seconds']} s with an empty "
                  f"cache, {timing['warm_seconds']} s with it filled ({timing['speedup']}x).", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "benchmarks" / "data")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--image-size", type=int, default=64, help="Fashion-MNIST input size")
    parser.add_argument("--only", choices=["fashion-mnist", "scenes"])
    parser.add_argument("--markdown-only", action="store_true", help="rewrite quality.md from quality.json")
    args = parser.parse_args()
    if args.markdown_only:
        saved = json.loads((args.results / "quality.json").read_text())
        write_markdown(args.results / "quality.md", saved["records"], saved["feature_cache"], args.image_size)
        return
    if not FASHION_MNIST.is_dir() and args.only != "scenes":
        raise SystemExit(f"error: {FASHION_MNIST} missing: apt-get install dataset-fashion-mnist")
    args.data.mkdir(parents=True, exist_ok=True)
    cache = args.data / "feature-cache"
    records = []
    if args.only != "scenes":
        records += fashion_mnist(args.data, cache, args.image_size)
    if args.only != "fashion-mnist":
        records += scenes(args.data, cache)
    timing = cache_speedup(args.data, cache, args.image_size) if args.only != "scenes" else {}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "quality.json").write_text(json.dumps({"records": records, "feature_cache": timing}, indent=2))
    write_markdown(args.results / "quality.md", records, timing, args.image_size)
    print((args.results / "quality.md").read_text())


if __name__ == "__main__":
    main()
