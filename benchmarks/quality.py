"""Retrieval quality of every method, on Fashion-MNIST, multi-label mosaics and rendered scenes.

    python benchmarks/quality.py                     # or: make bench-quality (every section)
    python benchmarks/quality.py --only supervised   # some sections; the others' results are kept

Writes benchmarks/results/quality.md (for people) and quality.json (one record per dataset,
method and bit length: the metrics, training time, seconds per epoch, seed). Every step goes
through the same library functions as the CLI (train, encode, query). Work files go to
benchmarks/data/.

Fashion-MNIST (Debian package dataset-fashion-mnist; `make bench-quality` installs it):
1,000 queries (100 per class) from the test split; the database is every other image (69,000);
5,000 training images (500 per class) drawn from the database. Label-free methods use the
labels for scoring only; the supervised sections are described in benchmarks/supervised.py.
Rendered scenes (examples/render_scenes.py, 5 scenes x 14 views): a seeded fifth of the photos
is held out as queries, the rest is reconstructed with COLMAP (pairs for BCDH) and is the
database; relevance = same true scene.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from common import FASHION_MNIST, SEED, evaluate, export_fashion_mnist, record, timed_train
from supervised import fashion_mnist_mosaics, fashion_mnist_supervised

from hashkit.hashing.train import TrainOptions
from hashkit.sfm_pairs.reconstruct import ReconstructOptions, reconstruct

REPO = Path(__file__).resolve().parents[1]
BITS = (16, 32, 64)
HIDDEN = 1024  # hidden layer of the label-free deep methods' heads (backbone frozen)
LABEL_FREE_SIZE = 64  # Fashion-MNIST input size of the label-free section
SUPERVISED_SIZE = 96  # of the supervised sections: MobileNetV2 then gives 3 x 3 feature maps


def fashion_mnist(data: Path, cache: Path) -> list[dict]:
    query_dir, db_dir, train_dir = export_fashion_mnist(data / "fashion-mnist")
    work = data / "fashion-mnist-work"
    work.mkdir(exist_ok=True)
    common = dict(backbone="mobilenet_v2", weights="imagenet", image_size=LABEL_FREE_SIZE, seed=SEED,
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
            trained = timed_train(model, TrainOptions(bits=bits, **common, **extra), images_dir=train_dir)
            metrics = evaluate(model, [db_dir], [query_dir], work, 1000, "folders", cache)
            records.append(record("fashion-mnist", name, bits, {1000: metrics}, trained, extra))
            print(f"fashion-mnist {name} {bits}: mAP {metrics['mAP']:.4f} mAP@1000 {metrics['mAP@1000']:.4f} "
                  f"train {trained[0]}s", flush=True)
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
            trained = timed_train(model, TrainOptions(bits=bits, **common, **extra), **source)
            metrics = evaluate(model, [root / "db"], [root / "queries"], work, 10, str(truth), cache)
            records.append(record("rendered-scenes", name, bits, {10: metrics}, trained, extra))
            print(f"scenes {name} {bits}: mAP {metrics['mAP']:.4f} mAP@10 {metrics['mAP@10']:.4f} "
                  f"train {trained[0]}s", flush=True)
    return records




TABLES = {  # dataset: (note, metric columns)
    "fashion-mnist": (
        "Label-free. 1,000 queries, 69,000 database images, 5,000 training images, inputs 64 px; deep heads: "
        f"hidden layer of {HIDDEN} + hash layer on the frozen backbone. BCDH's pairs are mutual 10-nearest "
        "neighbours in the backbone's feature space (no labels); dsah-no-refinement is DSAH with its AND "
        "refinement switched off (`--param rounds=0`).",
        ("mAP@1000", "mAP", "precision@1000")),
    "rendered-scenes": (
        "Label-free. 14 held-out photos as queries, 56 as database; BCDH is trained end to end (backbone "
        "fine-tuned, 128 px, 3 epochs) on the pairs COLMAP mined from the 56; ITQ needs at most as many bits as "
        "training images, so it has no 64-bit row here.",
        ("mAP@10", "mAP", "precision@10")),
    "fashion-mnist-supervised": (
        "Supervised (class labels of the 5,000 training images). Same queries and database; inputs 96 px, so the "
        "frozen MobileNetV2 gives 3 x 3 x 1280 feature maps, which every deep head reads (20 epochs, batch 128, "
        "Adam 1e-3). LSH and ITQ hash the same backbone's pooled features: the floor. "
        "rvssdh-learned-centres is RV-SSDH with NetVLAD-style trained centres (`--param centres=learned`).",
        ("mAP", "mAP@1000", "mAP@10", "precision@10", "tie-aware mAP", "tie-aware precision@10")),
    "fashion-mnist-small": (
        "Small-sample regime: 20 training images per class (200 in all; deep methods 40 epochs, batch 64), "
        "same queries and database, 32 bits.",
        ("mAP", "mAP@1000", "mAP@10", "precision@10", "tie-aware mAP", "tie-aware precision@10")),
    "fashion-mnist-mosaics": (
        "Multi-label: 2 x 2 mosaics of Fashion-MNIST images (56 px, shown at 96 px), label set = the classes "
        "of the four tiles; 5,000 training, 1,000 query and 10,000 database mosaics (tiles of queries and "
        "database from the test split, of training mosaics from the training split). Relevance = number of "
        "shared labels. ath-single-label is ATH trained on one label per mosaic (its top-left tile's class).",
        ("NDCG@100", "ACG@100", "wmAP", "mAP", "mAP@100", "tie-aware mAP")),
}


def write_markdown(path: Path, records: list[dict]) -> None:
    lines = ["# Retrieval quality", "",
             "Produced by `make bench-quality` (`python benchmarks/quality.py`); seed 0; one 2-core CPU; "
             "torchvision MobileNetV2 with ImageNet weights, frozen, for every method on Fashion-MNIST.", ""]
    for dataset, (note, columns) in TABLES.items():
        rows = [r for r in records if r["dataset"] == dataset]
        if rows:
            lines += [f"## {dataset}", "", note, "",
                      "| method | bits | " + " | ".join(columns) + " | train s |",
                      "|---|---|" + "---|" * (len(columns) + 1)]
            lines += [f"| {r['method']} | {r['bits']} | " + " | ".join(f"{r[c]:.4f}" for c in columns)
                      + f" | {r['train_seconds']} |" for r in rows]
            lines.append("")
    epochs = [r for r in records if r["dataset"] == "epoch-timing"]
    if epochs:
        lines += ["## Seconds per training epoch", "",
                  "Every deep method in turn, alone on this machine's 2 CPU cores: the same 5,000 Fashion-MNIST "
                  "training images, 96 px inputs, frozen backbone (cached feature maps, or pooled features for "
                  "DSAH and BCDH), 32 bits, mean of 3 epochs; an epoch includes the method's alternating step. "
                  "(The `train s` columns above are whole runs, some measured while other work shared the CPU.)",
                  "", "| method | s / epoch |", "|---|---|"]
        lines += [f"| {r['method']} | {r['epoch_seconds']} |" for r in epochs]
        lines.append("")
    cache = [r for r in records if r["dataset"] == "feature-cache"]
    if cache:
        c = cache[0]
        lines += ["## Feature cache", "",
                  f"LSH on {c['images']} Fashion-MNIST images: {c['cold_seconds']} s with an empty cache, "
                  f"{c['warm_seconds']} s with it filled ({c['speedup']}x).", ""]
    path.write_text("\n".join(lines))


def epoch_timing(data: Path, cache: Path) -> list[dict]:
    """Seconds per epoch of every deep method, one after the other on the same 5,000 training
    images at the supervised sections' input size (3 epochs, 32 bits, nothing else running).
    DSRH trains here on the single labels (one-label sets), which costs the same as multi-label."""
    train_dir = data / "fashion-mnist" / "train"
    deep = dict(freeze_backbone=True, epochs=3, batch_size=128)
    runs = {"dsah": (dict(method="dsah", hidden=HIDDEN), None),
            "bcdh": (dict(method="bcdh", hidden=HIDDEN, **dict(deep, batch_size=256)), None),
            "ath": (dict(method="ath"), "folders"), "rvssdh": (dict(method="rvssdh"), "folders"),
            "rvssdh-learned-centres": (dict(method="rvssdh", params={"centres": "learned"}), "folders"),
            "exchnet": (dict(method="exchnet"), "folders"), "dsrh": (dict(method="dsrh", batch_size=64), "folders")}
    records = []
    for name, (settings, labels) in runs.items():
        options = TrainOptions(bits=32, image_size=SUPERVISED_SIZE, seed=SEED, feature_cache=cache, overwrite=True,
                               **{**deep, **settings})
        trained = timed_train(data / "timing.pt", options, images_dir=train_dir, labels=labels)
        records.append(record("epoch-timing", name, 32, {}, trained, settings))
        print(f"epoch timing {name}: {records[-1]['epoch_seconds']} s", flush=True)
    return records


def cache_speedup(data: Path, cache: Path) -> list[dict]:
    """LSH training time with an empty feature cache, then again with the cache filled."""
    train_dir = data / "fashion-mnist" / "train"
    fresh = data / "cache-timing"
    shutil.rmtree(fresh, ignore_errors=True)
    options = TrainOptions(method="lsh", bits=64, image_size=LABEL_FREE_SIZE, seed=SEED, feature_cache=fresh,
                           overwrite=True)
    cold = timed_train(data / "timing.pt", options, images_dir=train_dir)[0]
    warm = timed_train(data / "timing.pt", options, images_dir=train_dir)[0]
    return [{"dataset": "feature-cache", "images": 5000, "cold_seconds": cold, "warm_seconds": warm,
             "speedup": round(cold / warm, 1)}]


SECTIONS = {  # name: (datasets its records carry, function)
    "fashion-mnist": (("fashion-mnist",), fashion_mnist),
    "scenes": (("rendered-scenes",), scenes),
    "feature-cache": (("feature-cache",), cache_speedup),
    "supervised": (("fashion-mnist-supervised", "fashion-mnist-small"),
                   lambda data, cache: fashion_mnist_supervised(data / "fashion-mnist", cache, SUPERVISED_SIZE)),
    "mosaics": (("fashion-mnist-mosaics",), lambda data, cache: fashion_mnist_mosaics(data, cache, SUPERVISED_SIZE)),
    "epoch-timing": (("epoch-timing",), epoch_timing),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "benchmarks" / "data")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS),
                        help="run these sections; the others' results in quality.json are kept")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite quality.md from quality.json")
    args = parser.parse_args()
    saved = args.results / "quality.json"
    records = json.loads(saved.read_text())["records"] if saved.exists() else []
    if not args.markdown_only:
        sections = args.only or list(SECTIONS)
        if not FASHION_MNIST.is_dir() and sections != ["scenes"]:
            raise SystemExit(f"error: {FASHION_MNIST} missing: apt-get install dataset-fashion-mnist")
        args.data.mkdir(parents=True, exist_ok=True)
        args.results.mkdir(parents=True, exist_ok=True)
        for section in sections:
            datasets, run = SECTIONS[section]
            fresh = run(args.data, args.data / "feature-cache")
            records = [r for r in records if r["dataset"] not in datasets] + fresh
            saved.write_text(json.dumps({"records": records}, indent=2))  # kept as each section ends
    write_markdown(args.results / "quality.md", records)
    print((args.results / "quality.md").read_text())


if __name__ == "__main__":
    main()
