"""Labelled image sets for the supervised methods, written as PNG files.

    python examples/labelled_sets.py digits OUT [--seed 0]

writes scikit-learn's handwritten digits (1,797 real 8x8 scans, 10 classes) upscaled to
32x32 as OUT/{train,db,queries}/<class>/<n>.png, and a multi-label set of 2x2 mosaics of them
as OUT/mosaics/{train,db,queries}/<n>.png with OUT/mosaics/labels.csv (path,"a;b;c": the
classes the mosaic contains). Benchmarks reuse ``write_split`` and ``write_mosaics`` for
Fashion-MNIST.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np


def write_split(images: np.ndarray, labels: np.ndarray, names: list[str], folder: Path, size: int) -> None:
    """Each image as folder/<class name>/<index>.png, resized to size x size."""
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        cv2.imwrite(str(folder / names[label] / f"{i:05d}.png"), _resize(image, size))


def write_mosaics(images: np.ndarray, labels: np.ndarray, names: list[str], folder: Path, count: int,
                  rng: np.random.Generator, size: int) -> list[tuple[str, list[str]]]:
    """``count`` 2x2 mosaics of random distinct tiles as folder/<n>.png, resized to size x size;
    returns (path relative to folder's parent, class names of the tiles: top-left, top-right,
    bottom-left, bottom-right) per mosaic. A mosaic's label set is the set of its tiles' classes."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in range(count):
        tiles = rng.choice(len(images), 4, replace=False)
        top = np.concatenate([images[tiles[0]], images[tiles[1]]], axis=1)
        bottom = np.concatenate([images[tiles[2]], images[tiles[3]]], axis=1)
        cv2.imwrite(str(folder / f"{n:05d}.png"), _resize(np.concatenate([top, bottom]), size))
        rows.append((f"{folder.name}/{n:05d}.png", [names[labels[t]] for t in tiles]))
    return rows


def write_labels_csv(path: Path, rows: list[tuple[str, list[str]]]) -> None:
    """A labels CSV: one row per image, its distinct labels joined by ';'."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "labels"])
        writer.writerows((p, ";".join(sorted(set(labels)))) for p, labels in rows)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def digits(out: Path, seed: int, per_class: tuple[int, int, int] = (30, 20, 5)) -> None:
    """Train / database / query splits of the digits (per class), and mosaics of each split."""
    from sklearn.datasets import load_digits
    data = load_digits()
    images = (data.images * (255 / 16)).astype(np.uint8)
    names = [f"digit{d}" for d in range(10)]
    rng = np.random.default_rng(seed)
    splits: dict[str, list[int]] = {"train": [], "db": [], "queries": []}
    for label in range(10):
        members = rng.permutation(np.flatnonzero(data.target == label))
        start = 0
        for split, count in zip(splits, per_class):
            splits[split] += members[start:start + count].tolist()
            start += count
    rows = []
    for split, members in splits.items():
        chosen = np.array(members)
        write_split(images[chosen], data.target[chosen], names, out / split, 32)
        rows += write_mosaics(images[chosen], data.target[chosen], names, out / "mosaics" / split,
                              len(chosen), rng, 32)
    write_labels_csv(out / "mosaics" / "labels.csv", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=["digits"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    digits(args.out, args.seed)


if __name__ == "__main__":
    main()
