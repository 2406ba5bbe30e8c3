"""Summarise a demo run for a newcomer: what COLMAP found, how clean the pairs are, and mAP.

The true scene of each photo (truth.csv) is used here only to score what hashkit did without it.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from hashkit.hashing.files.pairs_file import read_pairs


def read_truth(truth_csv: Path) -> dict[str, str]:
    with truth_csv.open(newline="") as f:
        return {str((truth_csv.parent / row["path"]).resolve()): row["label"] for row in csv.DictReader(f)}


def pair_precision(pairs: np.ndarray, scenes: np.ndarray, same: bool) -> float:
    """Share of ``pairs`` whose two images are (``same``) or are not in the same true scene."""
    if not len(pairs):
        return float("nan")
    agree = scenes[pairs[:, 0]] == scenes[pairs[:, 1]]
    return float(np.mean(agree if same else ~agree))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, nargs="+", required=True)
    args = parser.parse_args()
    pairs = read_pairs(args.pairs)
    truth = read_truth(args.truth)
    scenes = np.array([truth[str(p.resolve())] for p in pairs.absolute_paths()])
    rows = [
        ("images", f"{len(pairs.images) + len(pairs.unreadable)} ({int((pairs.model_id >= 0).sum())} registered)"),
        ("3D models found / scenes in the set", f"{int(pairs.model_id.max()) + 1} / {len(set(truth.values()))}"),
        ("positive pairs (same scene)",
         f"{len(pairs.positives)} ({pair_precision(pairs.positives, scenes, True):.1%})"),
        ("negative pairs (different scenes)",
         f"{len(pairs.negatives)} ({pair_precision(pairs.negatives, scenes, False):.1%})"),
    ]
    for path in args.metrics:
        m = json.loads(path.read_text())
        k = m["k"]
        rows.append((f"{m['method']} {m['bits']}-bit codes: mAP / mAP@{k} / P@{k}",
                     f"{m['mAP']:.3f} / {m[f'mAP@{k}']:.3f} / {m[f'precision@{k}']:.3f}"))
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    print("(mAP: every photo queries all others; relevant = same true scene; "
          "training never saw the true scenes)")


if __name__ == "__main__":
    main()
