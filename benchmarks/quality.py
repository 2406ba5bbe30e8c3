"""Retrieval quality of every method, seed methods and peers side by side, on Fashion-MNIST,
multi-label mosaics and rendered scenes.

    python benchmarks/quality.py                     # or: make bench-quality (every section)
    python benchmarks/quality.py --only supervised   # some sections; the others' results are kept

Writes benchmarks/results/quality.md (for people) and quality.json (one record per dataset,
method and bit length: the metrics, collapse diagnostics, training time, seconds per epoch,
seed). Every step goes through the same library functions as the CLI (train, encode, query).
Work files go to benchmarks/data/.

Protocol, the same for every method of a section: one data split, the same frozen MobileNetV2
(ImageNet) at the same input size (IMAGE_SIZE), the same epoch budget and batch size for every
deep method. In the Fashion-MNIST sections every deep method's optimiser and learning rate are
chosen from one grid (common.GRID) on a validation split carved from the training images (the
labels of the label-free section's split only score); the rendered scenes (56 training photos)
train every method with Adam at lr 1e-3. Every row is the mean over 3 training seeds (SEEDS).
Database and query rows are in a seeded random order (never grouped by class); the headline
columns are tie-aware (expected over every order of the items at equal Hamming distance), the
row-order values are secondary.

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

import common
import numpy as np
import torch
from common import (
    BITS,
    DEEP,
    EPOCHS,
    FASHION_MNIST,
    GRID,
    HIDDEN,
    IMAGE_SIZE,
    LR_GRID,
    OPTIMIZER_GRID,
    SEED,
    SEEDS,
    VALIDATION_PER_CLASS,
    common_options,
    cpu_description,
    export_fashion_mnist,
    grid_key,
    record,
    run_method,
    run_seeds,
    selected,
    timed_train,
    validation_split,
)
from supervised import fashion_mnist_mosaics, fashion_mnist_small, fashion_mnist_supervised

from hashkit.hashing.training.train import TrainOptions
from hashkit.sfm_pairs.reconstruct import ReconstructOptions, reconstruct

REPO = Path(__file__).resolve().parents[1]
LABEL_FREE = {  # the label-free section's methods: seeds (bcdh, dsah), peers (greedyhash, bihalf), baselines
    "lsh": dict(method="lsh"),
    "itq": dict(method="itq"),
    "bcdh": dict(method="bcdh", hidden=HIDDEN, **dict(DEEP, batch_size=256)),  # batches of pairs
    "dsah": dict(method="dsah", hidden=HIDDEN, **DEEP),
    "dsah-refined": dict(method="dsah", params={"rounds": 2}, hidden=HIDDEN, **DEEP),
    "greedyhash": dict(method="greedyhash", params={"dropout": 0.5}, hidden=HIDDEN, **DEEP),
    "greedyhash-no-dropout": dict(method="greedyhash", hidden=HIDDEN, **DEEP),
    "greedyhash-linear": dict(method="greedyhash", **DEEP),  # the authors' layout (the hash layer alone), no dropout
    "bihalf": dict(method="bihalf", hidden=HIDDEN, **DEEP),
    "bihalf-linear": dict(method="bihalf", **DEEP),
}


def fashion_mnist(data: Path, cache: Path, bits_list: tuple[int, ...]) -> list[dict]:
    """Every label-free method at each of ``bits_list``: optimiser and learning rate chosen on the
    validation split (its labels only score), 3 seeds."""
    query_dir, db_dir, train_dir, labels = export_fashion_mnist(data / "fashion-mnist-shuffled")
    split = validation_split(train_dir, data / "label-free-validation")
    common = common_options(cache)
    return [row for bits in bits_list for name, settings in LABEL_FREE.items()
            for row in run_seeds("fashion-mnist", name, bits, settings, common, data / "fashion-mnist-work",
                                 dict(images_dir=train_dir), [db_dir], [query_dir], str(labels), (1000, 10), split)]


def scenes(data: Path, cache: Path, bits_list: tuple[int, ...]) -> list[dict]:
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
    common = common_options(cache)
    end_to_end = dict(epochs=3, batch_size=64)
    settings = {
        "lsh": (dict(method="lsh"), dict(images_dir=root / "db")),
        "itq": (dict(method="itq"), dict(images_dir=root / "db")),
        "bcdh": (dict(method="bcdh", **end_to_end), dict(pairs_path=work / "pairs.h5")),
        "greedyhash": (dict(method="greedyhash", **end_to_end), dict(images_dir=root / "db")),
        "bihalf": (dict(method="bihalf", **end_to_end), dict(images_dir=root / "db")),
        # the authors' layout: the hash layer alone on the frozen backbone (GreedyHash collapses end to end)
        "greedyhash-frozen": (dict(method="greedyhash", freeze_backbone=True, epochs=50, batch_size=16),
                              dict(images_dir=root / "db")),
    }
    return [run_method("rendered-scenes", name, bits, extra, dict(common, seed=seed), work, source, [root / "db"],
                       [root / "queries"], str(truth), (10,))
            for bits in bits_list for name, (extra, source) in settings.items() for seed in SEEDS
            if selected(name) and not (name == "itq" and bits > len(photos) - len(held_out))]


RANKED = ("tie-aware mAP", "tie-aware mAP@1000", "tie-aware precision@10", "mAP@1000", "precision@10")
COLLAPSE = ("distinct_codes", "median_nearest_bucket")
TABLES = {  # dataset: (note, metric columns)
    "fashion-mnist": (
        "Label-free: the labels only score. Deep heads: a hidden layer of "
        f"{HIDDEN} + the hash layer on the frozen backbone's pooled features. BCDH's pairs are mutual "
        "10-nearest neighbours in the backbone's feature space (no labels); dsah-refined is DSAH with "
        "its AND refinement switched on (`--param rounds=2`; off by default). Peers: GreedyHash and "
        "Bi-half, each also as `-linear`, the authors' layout (the hash layer alone on the features). "
        "Bi-half applies its authors' dropout (0.5) to the features in training; GreedyHash's is off by "
        "default (it lowers `greedyhash-linear`, measured on the validation split), and with the hidden "
        "layer `greedyhash` (`--param dropout=0.5`) against `greedyhash-no-dropout` shows that the hidden "
        "layer needs it. Baselines: LSH, ITQ. Every deep method's optimiser and learning rate are chosen "
        "as in the supervised section, on the same validation split (its labels only score).",
        RANKED + COLLAPSE),
    "fashion-mnist-supervised": (
        "Supervised (class labels of the 5,000 training images). ATH, RV-SSDH and ExchNet read the backbone's "
        f"last feature maps ({IMAGE_SIZE // 32} x {IMAGE_SIZE // 32} x 1280) through their own heads; the peers "
        f"CSQ, DPSH and HashNet read its pooled features through a hidden layer of {HIDDEN} and the hash layer. "
        "LSH and ITQ hash the pooled features: the floor. Every deep method trains with the optimiser of "
        f"{{{', '.join(OPTIMIZER_GRID)}}} and the learning rate of {{{', '.join(f'{lr:g}' for lr in LR_GRID)}}} "
        "that a validation split chooses (the first "
        f"{VALIDATION_PER_CLASS} training images of each class as queries against the other 400 per class, "
        "never the test queries); rows are means over 3 training seeds (± standard deviation).",
        RANKED + COLLAPSE),
    "fashion-mnist-small": (
        "Small-sample regime: 20 training images per class (200 in all; deep methods 40 epochs, batch 64), "
        "same queries and database, 32 bits; optimiser and learning rate chosen likewise on 5 of the 20 per class.",
        RANKED + COLLAPSE),
    "fashion-mnist-mosaics": (
        "Multi-label: 2 x 2 mosaics of Fashion-MNIST images (56 px, read at the section's input size), label "
        "set = the classes of the four tiles; 5,000 training, 1,000 query and 10,000 database mosaics (tiles of "
        "queries and database from the test split, of training mosaics from the training split; files in the "
        "order drawn, so rows are in random order). Relevance = number of shared labels. Peers: CSQ (multi-label "
        "centres), DPSH and HashNet (similar when a label is shared).",
        ("NDCG@100", "ACG@100", "wmAP", "tie-aware mAP", "tie-aware mAP@100", "mAP@100") + COLLAPSE),
    "rendered-scenes": (
        "Label-free. 14 held-out photos as queries, 56 as database (photos in a seeded random order); "
        "GreedyHash and Bi-half are trained end to end (backbone fine-tuned, 3 epochs, batch 64) on the 56 "
        "images, BCDH as it trains by default, its head alone on the frozen backbone (3 epochs, batch 64 "
        "pairs), on the pairs COLMAP mined from the 56; Adam at lr 1e-3 (too few photos for a "
        "validation split). GreedyHash collapses end to end; greedyhash-frozen is its authors' layout, the "
        "hash layer alone on the frozen backbone (50 epochs, batch 16). ITQ needs at most as many bits as "
        "training images, so it has no 64-bit row here.",
        ("tie-aware mAP", "tie-aware mAP@10", "tie-aware precision@10", "mAP@10", "precision@10") + COLLAPSE),
}


def protocol() -> dict:
    """What every section shares, for the results files."""
    return {"seed": f"{SEED} for the data (splits, row orders) and the validation runs; training seeds "
                    f"{', '.join(map(str, SEEDS))} (rows of older runs: as many as the seeds column says)",
            "input_size": IMAGE_SIZE,
            "backbone": "torchvision MobileNetV2, ImageNet weights, frozen "
            "(except the rendered scenes' end-to-end runs)", "epochs": EPOCHS,
            "deep_training": "the optimiser and lr chosen on a validation split (the optimiser, lr column), "
                             f"batch {DEEP['batch_size']} images (BCDH: 256 pairs), head only on cached features",
            "row_order": "database and query rows in a seeded random order, never grouped by label",
            "ks": "mAP@1000 and precision@10 (mosaics: @100; scenes: @10)",
            "headline": "tie-aware values: expected over every order of the items at equal Hamming distance",
            "machine": f"{cpu_description()}, torch {torch.__version__}, no GPU"}


def _cell(rows: list[dict], column: str) -> str:
    """A table cell over the seeds' records: counts (collapse diagnostics) as their mean, metrics to
    4 decimals, with the standard deviation over seeds where there are several."""
    values = [r[column] for r in rows if r.get(column) is not None]
    if not values:
        return ""
    if column in COLLAPSE:
        return f"{np.mean(values):g}"
    return f"{np.mean(values):.4f}" + (f" ± {np.std(values):.4f}" if len(values) > 1 else "")


def _groups(records: list[dict]) -> list[list[dict]]:
    """The records of each (method, bits), in the order first met, by bits."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["method"], r["bits"]), []).append(r)
    return sorted(groups.values(), key=lambda rows: rows[0]["bits"])


def _row(rows: list[dict], columns: tuple[str, ...]) -> str:
    """A table row of one method and length: its seeds, optimiser and learning rate, metrics and
    training seconds."""
    settings = rows[0].get("settings", {})
    trained = "-" if "lr" not in settings else grid_key(settings.get("optimizer", "adam"), settings["lr"])
    return (f"| {rows[0]['method']} | {rows[0]['bits']} | {len(rows)} | {trained} | "
            + " | ".join(_cell(rows, column) for column in columns)
            + f" | {np.mean([r['train_seconds'] for r in rows]):.2f} |")


def _grid_score(grid: dict, optimizer: str, lr: float) -> float | str:
    """A grid point's validation score; records of the Adam-only grid keyed it by the lr alone."""
    return grid.get(grid_key(optimizer, lr), grid.get(f"{lr:g}", "") if optimizer == "adam" else "")


def write_markdown(path: Path, records: list[dict], setup: dict) -> None:
    lines = ["# Retrieval quality", "",
             "Produced by `make bench-quality` (`python benchmarks/quality.py`). Protocol, the same for every "
             "method of a section:", ""]
    lines += [f"- {key.replace('_', ' ')}: {value}" for key, value in setup.items()]
    lines += ["", "Collapse diagnostics: `distinct_codes` in the database, `median_nearest_bucket` = median over "
              "queries of the number of database items at the query's smallest Hamming distance. Row-order "
              "columns (`mAP@k`, `precision@10`) break ties by database row and are secondary. `train s` is a whole "
              "training run (features from the cache); some were measured while other work shared the CPU.", ""]
    for dataset, (note, columns) in TABLES.items():
        groups = _groups([r for r in records if r["dataset"] == dataset])
        if groups:
            commits = sorted({r["commit"] for rows in groups for r in rows if r.get("commit")})
            ran_at = f" Ran at commit {', '.join(commits)}." if commits else ""
            lines += [f"## {dataset}", "", note + ran_at, "",
                      "| method | bits | seeds | optimiser, lr | " + " | ".join(columns) + " | train s |",
                      "|---|---|---|---|" + "---|" * (len(columns) + 1)]
            lines += [_row(rows, columns) for rows in groups]
            older = sorted({rows[0]["bits"] for rows in groups if not rows[0].get("commit")})
            if older:
                lines += ["", f"The rows at {', '.join(map(str, older))} bits come from a run before commits were "
                          "recorded: one seed, Adam at lr 1e-3 or as named, and the methods as they were then "
                          "(before the peers' reference settings and ExchNet's gamma). They are kept until rerun; "
                          "do not compare them with the other rows."]
            tuned = [rows for rows in groups if rows[0].get("validation_grid")]
            if tuned:
                lines += ["", f"Optimiser and learning rate chosen per method and length on the validation split "
                          f"(tie-aware mAP of its queries against its training images, seed {SEED}; a blank: "
                          "not in the grid of that run):", "",
                          "| method | bits | " + " | ".join(grid_key(*point) for point in GRID) + " |",
                          "|---|---|" + "---|" * len(GRID)]
                lines += [f"| {rows[0]['method']} | {rows[0]['bits']} | "
                          + " | ".join(str(_grid_score(rows[0]['validation_grid'], *point)) for point in GRID) + " |"
                          for rows in tuned]
            lines.append("")
    epochs = [r for r in records if r["dataset"] == "epoch-timing"]
    if epochs:
        lines += ["## Seconds per training epoch", "",
                  "Every deep method in turn, alone on this machine: the same 5,000 Fashion-MNIST training images, "
                  f"{IMAGE_SIZE} px inputs, frozen backbone (cached feature maps, or pooled features), 32 bits, "
                  "mean of 3 epochs; an epoch includes the method's alternating step.",
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


def epoch_timing(data: Path, cache: Path, bits_list: tuple[int, ...]) -> list[dict]:
    """Seconds per epoch of every deep method, one after the other on the same 5,000 training
    images (3 epochs, 32 bits, nothing else running). DSRH trains here on the single labels
    (one-label sets), which costs the same as multi-label."""
    train_dir = data / "fashion-mnist-shuffled" / "train"
    pooled = dict(hidden=HIDDEN)
    runs = {"dsah": (dict(method="dsah", **pooled), None),
            "bcdh": (dict(method="bcdh", batch_size=256, **pooled), None),
            "greedyhash": (dict(method="greedyhash", **pooled), None),
            "bihalf": (dict(method="bihalf", **pooled), None),
            "ath": (dict(method="ath"), "folders"), "rvssdh": (dict(method="rvssdh"), "folders"),
            "exchnet": (dict(method="exchnet"), "folders"), "dsrh": (dict(method="dsrh"), "folders"),
            "csq": (dict(method="csq", **pooled), "folders"), "dpsh": (dict(method="dpsh", **pooled), "folders"),
            "hashnet": (dict(method="hashnet", **pooled), "folders")}
    records = []
    for name, (settings, labels) in runs.items():
        options = TrainOptions(bits=32, image_size=IMAGE_SIZE, seed=SEED, feature_cache=cache, overwrite=True,
                               **{**DEEP, "epochs": 3, **settings})
        trained = timed_train(data / "timing.pt", options, images_dir=train_dir, labels=labels)
        records.append(record("epoch-timing", name, 32, {}, trained, settings))
        print(f"epoch timing {name}: {records[-1]['epoch_seconds']} s", flush=True)
    return records


def cache_speedup(data: Path, cache: Path, bits_list: tuple[int, ...]) -> list[dict]:
    """LSH training time with an empty feature cache, then again with the cache filled."""
    train_dir = data / "fashion-mnist-shuffled" / "train"
    fresh = data / "cache-timing"
    shutil.rmtree(fresh, ignore_errors=True)
    options = TrainOptions(method="lsh", bits=64, image_size=IMAGE_SIZE, seed=SEED, feature_cache=fresh,
                           overwrite=True)
    cold = timed_train(data / "timing.pt", options, images_dir=train_dir)[0]
    warm = timed_train(data / "timing.pt", options, images_dir=train_dir)[0]
    return [{"dataset": "feature-cache", "images": 5000, "cold_seconds": cold, "warm_seconds": warm,
             "speedup": round(cold / warm, 1)}]


SECTIONS = {  # name: (datasets its records carry, function)
    "fashion-mnist": (("fashion-mnist",), fashion_mnist),
    "supervised": (("fashion-mnist-supervised",),
                   lambda data, cache, bits: fashion_mnist_supervised(data / "fashion-mnist-shuffled", cache, bits)),
    "small": (("fashion-mnist-small",),
              lambda data, cache, bits: fashion_mnist_small(data / "fashion-mnist-shuffled", cache, bits)),
    "mosaics": (("fashion-mnist-mosaics",), fashion_mnist_mosaics),
    "scenes": (("rendered-scenes",), scenes),
    "epoch-timing": (("epoch-timing",), epoch_timing),
    "feature-cache": (("feature-cache",), cache_speedup),
}


def merged(records: list[dict], fresh: list[dict], key: tuple[str, ...]) -> list[dict]:
    """``records`` with those that share a ``key`` value with a fresh record replaced by the fresh
    ones, in the place of the first replaced (new keys at the end)."""
    def value(r: dict) -> tuple:
        return tuple(r.get(k) for k in key)

    incoming: dict[tuple, list[dict]] = {}
    for r in fresh:
        incoming.setdefault(value(r), []).append(r)
    result = []
    for r in records:
        if value(r) not in incoming:
            result.append(r)
        elif incoming[value(r)]:
            result += incoming[value(r)]
            incoming[value(r)] = []
    return result + [r for rows in incoming.values() for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "benchmarks" / "data")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS),
                        help="run these sections; the others' results in quality.json are kept")
    parser.add_argument("--methods", nargs="+", help="run only these methods of the sections (row names, e.g. "
                        "exchnet greedyhash-linear); the other methods' results are kept")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite quality.md from quality.json")
    parser.add_argument("--quick", action="store_true", help="32-bit codes only (same as --bits 32)")
    parser.add_argument("--bits", type=int, nargs="+", default=list(BITS),
                        help="code lengths to run (default: 16 32 64); records of other lengths are kept")
    args = parser.parse_args()
    common.SELECTED = set(args.methods) if args.methods else None
    saved = args.results / "quality.json"
    stored = json.loads(saved.read_text()) if saved.exists() else {}
    records = stored.get("records", [])
    setup = stored.get("protocol") or protocol() if args.markdown_only else protocol()
    if not args.markdown_only:
        sections = args.only or list(SECTIONS)
        if not FASHION_MNIST.is_dir() and sections != ["scenes"]:
            raise SystemExit(f"error: {FASHION_MNIST} missing: apt-get install dataset-fashion-mnist")
        args.data.mkdir(parents=True, exist_ok=True)
        args.results.mkdir(parents=True, exist_ok=True)
        for section in sections:
            datasets, run = SECTIONS[section]
            bits = (32,) if args.quick else tuple(args.bits)
            fresh = run(args.data, args.data / "feature-cache", bits)
            records = merged(records, fresh, ("dataset", "bits") + (("method",) if args.methods else ()))
            saved.write_text(json.dumps({"protocol": setup, "records": records}, indent=2))  # kept per section
    write_markdown(args.results / "quality.md", records, setup)
    print((args.results / "quality.md").read_text())


if __name__ == "__main__":
    main()
