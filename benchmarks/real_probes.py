"""Two probes of what could lift codes on unseen scenes, on the real-photo benchmark's validation
folds (the held-out protocol's training scenes in two folds, as ``real.py`` makes them; each fold
is trained or fitted on, the other scored; never the held-out test scenes).

- ``finetune``: fine-tune the backbone on the SfM pairs. MobileNetV2's ImageNet network is cut
  after block ``--split``: its earlier blocks stay frozen (their outputs computed once), the
  blocks after it are trained as Radenovic et al. train a retrieval network: GeM-pooled,
  L2-normalised descriptors, the contrastive loss (margin 0.7) on the fold's SfM positives and,
  each epoch, the hardest negative of each of 5 other 3D models per anchor; Adam 1e-5, batch 64
  pairs, batch norm frozen. Scored after every epoch (epoch 0: the ImageNet network). Needs the
  folds' pairs: ``real.py run --protocols validation`` first.
- ``descriptors``: the descriptor's input. hashkit's 224 px centre crop against the whole photo
  resized to a longer side of 224, 320 or 448 px, all GeM-pooled (power 3) and L2-normalised.

Scores on the scored fold: the float descriptors by cosine (mAP, no ties) and 64-bit ITQ codes
(PCA and rotation fitted on the other fold's descriptors) by tie-aware mAP, hashkit query's
definitions; each seed's score is the mean over the two folds; rows give mean ± standard
deviation over the seeds (the fine-tuning's seed, or ITQ's for ``descriptors``).

    python benchmarks/real_probes.py finetune --photos PHOTOS [--split 14] [--epochs 5] [--seeds 0 1 2]
    python benchmarks/real_probes.py descriptors --photos PHOTOS [--seeds 0 1 2]

Results: benchmarks/results/real_probes.md (each probe's section; a run keeps the other's).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import COMMIT, descriptor_ranking_scores
from real import read_truth, split_scenes

from hashkit.hashing.evaluation.metrics import evaluate
from hashkit.hashing.files.labels import label_matrix
from hashkit.hashing.files.pairs_file import read_pairs
from hashkit.hashing.methods.bcdh import GEM_POWER
from hashkit.hashing.methods.heads import descriptor
from hashkit.hashing.methods.itq import itq_rotation
from hashkit.hashing.methods.pair_mining import hard_negatives
from hashkit.hashing.storage.store import pack_codes
from hashkit.hashing.training.backbones import IMAGENET_MEAN, IMAGENET_STD, build_backbone
from hashkit.hashing.training.data import Normalizer, eval_loader, load_tensor

REPO = Path(__file__).resolve().parents[1]
FOLDS = REPO / "benchmarks" / "data" / "real" / "validation"
RESULTS = REPO / "benchmarks" / "results"
BITS, K, CROP = 64, 10, 224
MARGIN, LEARNING_RATE, NEGATIVES, BATCH = 0.7, 1e-5, 5, 64  # Radenovic et al.'s contrastive margin for GeM
WHOLE_SIDES = (224, 320, 448)
CPU = torch.device("cpu")


class Fold:
    """A validation fold: its photos (fitted or trained on) and the other fold's (scored)."""

    def __init__(self, photos: Path, truth: dict[str, str], mine: set[str], other: set[str], number: int):
        self.number = number
        self.train = [photos / name for name, scene in truth.items() if scene in mine]
        self.test = [photos / name for name, scene in truth.items() if scene in other]
        self.labels = [truth[name] for name, scene in truth.items() if scene in other]


def folds(photos: Path) -> list[Fold]:
    """The two folds of ``real.run_validation``: its split of the held-out training scenes."""
    truth = read_truth(photos)
    training_scenes = split_scenes(truth)[0]
    training = {name: scene for name, scene in truth.items() if scene in training_scenes}
    halves = split_scenes(training)
    return [Fold(photos, training, halves[0], halves[1], 0), Fold(photos, training, halves[1], halves[0], 1)]


def scores(train: np.ndarray, test: np.ndarray, labels: list[str], seed: int) -> dict:
    """Float cosine mAP of the test descriptors and tie-aware mAP of their ITQ codes."""
    mean = train.mean(axis=0)
    projection = np.linalg.svd(train - mean, full_matrices=False)[2][:BITS]
    rotation = itq_rotation((train - mean) @ projection.T, 50, seed)
    codes = pack_codes((test - mean) @ projection.T @ rotation)
    matrix = label_matrix([(label,) for label in labels], sorted(set(labels)))
    itq = evaluate(codes, matrix, codes, matrix, K, self_rows=np.arange(len(codes)))
    return {"float": round(descriptor_ranking_scores(test, labels, K)[0], 4), "itq64": round(itq.tie_aware_map, 4)}


# ---- fine-tuning on the SfM pairs ---------------------------------------------------------------

@torch.no_grad()
def cropped_outputs(network: torch.nn.Module, paths: list[Path]) -> torch.Tensor:
    """``network`` on hashkit's 224 px centre crops of ``paths``."""
    normalize = Normalizer(IMAGENET_MEAN, IMAGENET_STD, CPU)
    return torch.cat([network(normalize(images)) for images, _, _ in eval_loader(paths, CROP, 32, 0, CPU)])


def descriptors(tail: torch.nn.Module, maps: torch.Tensor) -> torch.Tensor:
    return torch.cat([descriptor(tail(maps[i:i + BATCH]), GEM_POWER) for i in range(0, len(maps), BATCH)])


def fine_tune(fold: Fold, split: int, epochs: int, seed: int) -> list[dict]:
    """Scores before and after each epoch of fine-tuning the blocks after ``split`` on ``fold``'s pairs."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pairs = read_pairs(FOLDS / str(fold.number) / "pairs.h5")
    by_name = {path.name: path for path in fold.train}
    network = build_backbone("mobilenet_v2", maps=True)
    trunk, tail = network[:split].eval(), network[split:].eval()  # batch norm keeps ImageNet's statistics
    train_maps = cropped_outputs(trunk, [by_name[Path(name).name] for name in pairs.images])
    test_maps = cropped_outputs(trunk, fold.test)
    groups = pairs.group.astype(np.int64)
    anchors = np.unique(pairs.positives)
    optimiser = torch.optim.Adam(tail.parameters(), lr=LEARNING_RATE)
    history = []
    for epoch in range(epochs + 1):
        with torch.no_grad():
            train, test = descriptors(tail, train_maps).numpy(), descriptors(tail, test_maps).numpy()
        history.append(scores(train, test, fold.labels, 0))
        print(f"fold {fold.number} seed {seed} epoch {epoch}: {history[-1]}", flush=True)
        if epoch == epochs:
            return history
        negatives = hard_negatives(train, anchors, lambda rows: groups[rows, None] != groups[None, :], NEGATIVES,
                                   groups)
        rows = np.concatenate([pairs.positives, negatives])
        similar = torch.cat([torch.ones(len(pairs.positives)), torch.zeros(len(negatives))])
        for batch in np.array_split(rng.permutation(len(rows)), max(1, len(rows) // BATCH)):
            images, local = np.unique(rows[batch], return_inverse=True)
            out = descriptors(tail, train_maps[torch.from_numpy(images)])
            local = torch.from_numpy(local.reshape(-1, 2))
            distance = (out[local[:, 0]] - out[local[:, 1]]).norm(dim=1)
            y = similar[batch]
            loss = (y * distance.pow(2) + (1 - y) * F.relu(MARGIN - distance).pow(2)).mean() / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return history


def finetune_section(photos: Path, split: int, epochs: int, seeds: list[int]) -> dict:
    if not (FOLDS / "1" / "pairs.h5").exists():
        raise SystemExit(f"error: no validation folds in {FOLDS}: run benchmarks/real.py run --protocols validation")
    runs = {seed: [fine_tune(fold, split, epochs, seed) for fold in folds(photos)] for seed in seeds}
    return {"rows": [(f"epoch {epoch}", [[history[epoch] for history in runs[seed]] for seed in seeds])
                     for epoch in range(epochs + 1)],
            "title": f"Fine-tuning MobileNetV2 after block {split} on the SfM pairs"}


# ---- the descriptor's input ---------------------------------------------------------------------

@torch.no_grad()
def whole_photo_descriptors(network: torch.nn.Module, paths: list[Path], side: int) -> np.ndarray:
    """GeM descriptors of each whole photo, resized to a longer side of ``side`` px."""
    normalize = Normalizer(IMAGENET_MEAN, IMAGENET_STD, CPU)
    found = []
    for path in paths:
        image = load_tensor(path)[None].float()
        scale = side / max(image.shape[2:])
        size = [max(32, round(length * scale)) for length in image.shape[2:]]
        resized = F.interpolate(image, size=size, mode="bilinear", antialias=True).round().clamp(0, 255)
        found.append(descriptor(network(normalize(resized.to(torch.uint8))), GEM_POWER))
    return torch.cat(found).numpy()


def descriptors_section(photos: Path, seeds: list[int]) -> dict:
    network = build_backbone("mobilenet_v2", maps=True).eval()
    inputs: dict[str, Callable[[list[Path]], np.ndarray]] = {
        f"{CROP} px centre crop (hashkit's)": lambda paths: descriptor(cropped_outputs(network, paths),
                                                                       GEM_POWER).numpy()}
    for side in WHOLE_SIDES:
        inputs[f"whole photo, longer side {side} px"] = \
            lambda paths, side=side: whole_photo_descriptors(network, paths, side)
    rows = []
    for name, describe in inputs.items():
        described = [(describe(fold.train), describe(fold.test), fold.labels) for fold in folds(photos)]
        rows.append((name, [[scores(train, test, labels, seed) for train, test, labels in described]
                            for seed in seeds]))
        print(name, rows[-1][1][0], flush=True)
    return {"rows": rows, "title": "The descriptor's input: centre crop or whole photo (GeM, power 3)"}


# ---- the report ---------------------------------------------------------------------------------

def table(section: dict) -> list[str]:
    lines = ["| setting | float descriptors (cosine mAP) | ITQ 64 bits (tie-aware mAP) |", "|---|---|---|"]
    for name, per_seed in section["rows"]:
        cells = []
        for key in ("float", "itq64"):
            means = [np.mean([fold[key] for fold in folds_of_seed]) for folds_of_seed in per_seed]
            cells.append(f"{np.mean(means):.4f} ± {np.std(means):.4f}")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    probes = parser.add_subparsers(dest="probe", required=True)
    for name in ("finetune", "descriptors"):
        probe = probes.add_parser(name)
        probe.add_argument("--photos", type=Path, required=True, help="the folder real.py assemble wrote")
        probe.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
        if name == "finetune":
            probe.add_argument("--split", type=int, default=14, help="MobileNetV2 block after which layers train")
            probe.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    section = finetune_section(args.photos, args.split, args.epochs, args.seeds) if args.probe == "finetune" \
        else descriptors_section(args.photos, args.seeds)
    section.update(command="python benchmarks/real_probes.py " + " ".join(sys.argv[1:]), commit=COMMIT)
    record = RESULTS / "real_probes.json"
    report = json.loads(record.read_text()) if record.exists() else {}
    report[args.probe] = section
    record.write_text(json.dumps(report, indent=1) + "\n")
    lines = ["# Probes on the real-photo benchmark's validation folds", "",
             "Protocol: the docstring of benchmarks/real_probes.py. Each seed's score is the mean over the two "
             "folds; cells are mean ± standard deviation over the seeds.", ""]
    for probe in ("finetune", "descriptors"):
        if probe in report:
            lines += [f"## {report[probe]['title']}", "", f"`{report[probe]['command']}` at commit "
                      f"{report[probe]['commit']}.", "", *table(report[probe]), ""]
    (RESULTS / "real_probes.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
