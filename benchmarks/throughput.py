"""Throughput on one machine: hashkit encode against the bare backbone's forward pass, and a
hashkit training epoch against a plain single-file PyTorch loop over the same network and data.

    python benchmarks/throughput.py

Images: 512 photographs (flat crops of the photographs bundled with scikit-image and
scikit-learn, 640 x 480 JPEG, from examples/render_scenes.py --distractors), encoded at 224 px
by an end-to-end GreedyHash model on ImageNet MobileNetV2 (64 bits), batches of 64, the
default DataLoader workers and torch threads of the machine. Each figure is the best of
--repeat runs, every run of every row in this one process. Results:
benchmarks/results/encode.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from hashkit.hashing.training.backbones import IMAGENET_MEAN, IMAGENET_STD
from hashkit.hashing.storage.checkpoint import load_checkpoint
from hashkit.hashing.storage.encode import encode
from hashkit.hashing.training.images import find_images
from hashkit.hashing.runtime import default_workers
from hashkit.hashing.training.train import TrainOptions, train

REPO = Path(__file__).resolve().parents[1]
IMAGES, IMAGE_SIZE, BATCH, BITS, SEED = 512, 224, 64, 64, 0


def photographs(folder: Path) -> list[Path]:
    if not (folder / "truth.csv").exists():
        subprocess.run([sys.executable, str(REPO / "examples" / "render_scenes.py"), str(folder), "--scenes", "0",
                        "--distractors", str(IMAGES), "--size", "640x480", "--seed", str(SEED)], check=True)
    return find_images(folder / "photos")


def best_of(repeat: int, run) -> float:
    """The shortest wall time of ``repeat`` calls of ``run``."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


class PlainImages(Dataset):
    """What a single-file PyTorch script would write: torchvision decodes, v2 transforms."""

    def __init__(self, paths: list[Path], transform):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        image = torchvision.io.decode_image(str(self.paths[index]), mode=torchvision.io.ImageReadMode.RGB)
        return self.transform(image), index


def eval_transform():
    return v2.Compose([v2.Resize((IMAGE_SIZE, IMAGE_SIZE), antialias=True), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def train_transform():
    return v2.Compose([v2.RandomResizedCrop(IMAGE_SIZE, scale=(0.5, 1.0), antialias=True), v2.RandomHorizontalFlip(),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def bare_encoders(network: nn.Module, paths: list[Path]) -> tuple[Callable[[], None], Callable[[], None]]:
    """Two runs of the bare network: its forward passes alone over tensors decoded beforehand (not
    timed), and a plain DataLoader loop that decodes as it goes (same workers)."""
    network.eval()
    decoded = torch.stack([eval_transform()(torchvision.io.decode_image(str(p), mode=torchvision.io.ImageReadMode.RGB))
                           for p in paths])

    @torch.no_grad()
    def forward_only() -> None:
        for start in range(0, len(decoded), BATCH):
            network(decoded[start:start + BATCH])

    @torch.no_grad()
    def with_loader() -> None:
        for images, _ in DataLoader(PlainImages(paths, eval_transform()), batch_size=BATCH,
                                    num_workers=default_workers()):
            network(images)

    return forward_only, with_loader


def plain_training_epoch(network: nn.Module, paths: list[Path], features: torch.Tensor) -> Callable[[], None]:
    """One epoch of GreedyHash's loss in a plain loop: DataLoader, forward, loss, Adam step."""
    optimizer = torch.optim.Adam([{"params": network.head.parameters(), "lr": 1e-3},
                                  {"params": network.backbone.parameters(), "lr": 1e-4}])
    loader = DataLoader(PlainImages(paths, train_transform()), batch_size=BATCH, shuffle=True,
                        num_workers=default_workers(), drop_last=False)

    def epoch() -> None:
        network.train()
        for images, index in loader:
            outputs = network.head.outputs(network.backbone(images))["codes"]
            codes = outputs + (torch.sign(outputs) - outputs).detach()
            i, j = torch.triu_indices(len(codes), len(codes), offset=1)
            f = F.normalize(features[index], dim=1)
            b = F.normalize(codes, dim=1)
            loss = ((f @ f.T)[i, j] - (b @ b.T)[i, j]).pow(2).mean() + 0.1 * (outputs.abs() - 1).abs().pow(3).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2, help="hashkit epochs; the first is the one compared")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "data" / "throughput")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    torch.manual_seed(SEED)
    paths = photographs(args.work / "photos")
    model_path = args.work / "greedyhash.pt"
    cache = args.work / "cache"
    started = time.perf_counter()
    summary = train(model_path, TrainOptions(method="greedyhash", bits=BITS, image_size=IMAGE_SIZE, epochs=args.epochs,
                                             batch_size=BATCH, seed=SEED, feature_cache=cache, overwrite=True),
                    images_dir=args.work / "photos" / "photos")
    train_wall = time.perf_counter() - started
    network = load_checkpoint(model_path).network

    forward_only, with_loader = bare_encoders(network, paths)
    store = args.work / "codes.h5"

    def hashkit_encode() -> None:
        encode(model_path, [args.work / "photos" / "photos"], store, batch_size=BATCH, overwrite=True,
               feature_cache=None)

    seconds = {"bare_forward": best_of(args.repeat, forward_only), "bare_loader": best_of(args.repeat, with_loader),
               "hashkit_encode": best_of(args.repeat, hashkit_encode)}
    with h5py.File(next(cache.glob("*.h5")), "r") as f:  # the initial backbone's features, as GreedyHash keeps them
        order = {path.decode(): row for row, path in enumerate(f["paths"][:])}
        features = torch.from_numpy(np.asarray(f["features"][:], np.float32)[[order[str(p)] for p in paths]])
    plain = best_of(args.epochs, plain_training_epoch(load_checkpoint(model_path).network, paths, features))
    hashkit_epoch = min(summary.epoch_seconds)
    rates = {name: IMAGES / value for name, value in seconds.items()}
    report = {
        "machine": f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), torch {torch.__version__} "
                   f"with {torch.get_num_threads()} threads, {default_workers()} DataLoader workers, no GPU",
        "images": IMAGES, "image_size": IMAGE_SIZE, "batch_size": BATCH, "repeat": args.repeat, "epochs": args.epochs,
        "encode_images_per_second": {k: round(v, 2) for k, v in rates.items()},
        "encode_share_of_bare_forward": round(rates["hashkit_encode"] / rates["bare_forward"], 4),
        "encode_share_of_bare_loader": round(rates["hashkit_encode"] / rates["bare_loader"], 4),
        "train_epoch_seconds": {"hashkit": round(hashkit_epoch, 2), "plain_loop": round(plain, 2)},
        "train_epoch_ratio": round(hashkit_epoch / plain, 4),
        "train_wall_seconds": round(train_wall, 2),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "encode.json").write_text(json.dumps(report, indent=2))
    write_markdown(args.results / "encode.md", report)
    print((args.results / "encode.md").read_text())


def write_markdown(path: Path, r: dict) -> None:
    rates = r["encode_images_per_second"]
    share = r["encode_share_of_bare_forward"]
    ratio = r["train_epoch_ratio"]
    lines = [
        "# Throughput on one machine", "",
        f"Machine: {r['machine']}. Produced by `python benchmarks/throughput.py` (protocol in its docstring): "
        f"{r['images']} photographs (640 x 480 JPEG), {r['image_size']} px, batches of {r['batch_size']}, "
        f"MobileNetV2 + 64-bit GreedyHash head trained end to end. Encode: best of {r['repeat']} runs; training: "
        f"the fastest of {r['epochs']} epochs each; all rows in one process.", "",
        "## Encode", "",
        "| run | images / s | share of the bare forward pass |", "|---|---|---|",
        f"| bare forward pass (images decoded beforehand, not timed) | {rates['bare_forward']} | 100% |",
        f"| bare DataLoader loop (torchvision decoding in the workers, forward) | {rates['bare_loader']} "
        f"| {rates['bare_loader'] / rates['bare_forward']:.1%} |",
        f"| `hashkit encode` (library call: decoding, forward, store commits) | {rates['hashkit_encode']} "
        f"| {share:.1%} |", "",
        f"Target: at least 90% of the bare forward pass: {'met' if share >= 0.9 else 'missed'} ({share:.1%}); "
        f"against the bare loop that decodes too: {r['encode_share_of_bare_loader']:.1%}.", "",
        "## Training epoch", "",
        "| run | seconds per epoch |", "|---|---|",
        f"| `hashkit train --method greedyhash` (end to end, fastest epoch) "
        f"| {r['train_epoch_seconds']['hashkit']} |",
        f"| plain single-file PyTorch loop, same network, loss, optimiser, data "
        f"| {r['train_epoch_seconds']['plain_loop']} |",
        "",
        f"Target: no slower than the plain loop: {'met' if ratio <= 1.0 else 'missed'} "
        f"(hashkit / plain = {ratio:.3f}).",
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
