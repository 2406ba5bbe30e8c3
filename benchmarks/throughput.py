"""Throughput on one machine: hashkit encode against the bare backbone's forward pass, and a
hashkit training epoch against a plain single-file PyTorch loop over the same network and data.

    python benchmarks/throughput.py

Images: 512 photographs (flat crops of the photographs bundled with scikit-image and
scikit-learn, 640 x 480 JPEG, from examples/render_scenes.py --distractors), encoded at 224 px
by an end-to-end GreedyHash model on ImageNet MobileNetV2 (64 bits), batches of 64, the
torch threads of the machine, glibc keeping freed memory (``memory.keep_freed_memory``, as
hashkit's train and encode do) for every row. hashkit runs its networks channels-last
(``runtime.to_device``): the bare forward pass is timed in that layout and in PyTorch's default
one, and the plain training loop in-process in both. The plain encode loop uses DataLoader worker processes;
hashkit encode decodes as ``runtime.decoding_plan`` picks, hashkit train as
``runtime.worker_processes`` does. Training: the shortest of epochs 2 and 3 of a three-epoch
hashkit run against the shortest of two epochs of the plain loop (hashkit's augmentations, written
out) after a warm-up epoch, so that both time a warm network and optimiser and both take the best
of as many epochs; the plain loop once with DataLoader worker processes, as usual, and once
decoding in its own process (``num_workers=0``). Each figure is the best of
--repeat rounds in this one process; within a round every row runs once, in turn, so that a
drift of the machine's speed (shared cores) hits all rows alike. Results:
benchmarks/results/encode.{md,json}.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
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
from common import cpu_description
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from hashkit.hashing.files.images import find_images
from hashkit.hashing.files.text_column import TextColumn
from hashkit.hashing.memory import keep_freed_memory
from hashkit.hashing.runtime import decoding_plan, default_workers
from hashkit.hashing.storage.encode import encode
from hashkit.hashing.training.backbones import IMAGENET_MEAN, IMAGENET_STD
from hashkit.hashing.training.data import eval_loader
from hashkit.hashing.training.model_file import load_model
from hashkit.hashing.training.train import TrainOptions, train

REPO = Path(__file__).resolve().parents[1]
IMAGES, IMAGE_SIZE, BATCH, BITS, SEED = 512, 224, 64, 64, 0
TIMED_EPOCHS = 2  # per round, for either training run


def photographs(folder: Path) -> list[Path]:
    if not (folder / "truth.csv").exists():
        subprocess.run([sys.executable, str(REPO / "examples" / "render_scenes.py"), str(folder), "--scenes", "0",
                        "--distractors", str(IMAGES), "--size", "640x480", "--seed", str(SEED)], check=True)
    return find_images(folder / "photos")


def interleaved_best(repeat: int, runs: dict[str, Callable[[], float | None]]) -> dict[str, float]:
    """The shortest time of each run over ``repeat`` rounds, the runs taking turns within every
    round, so that a machine whose speed drifts (shared cores) slows all rows alike. A run may
    return the seconds to count (an epoch inside a longer call); otherwise its wall time counts."""
    best = {name: float("inf") for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            started = time.perf_counter()
            counted = run()
            best[name] = min(best[name], time.perf_counter() - started if counted is None else counted)
    return best


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


FRESH_FORWARD = """
import sys, time, torch
from hashkit.hashing.memory import keep_freed_memory
from hashkit.hashing.training.model_file import load_model
if sys.argv[2] == "keep":
    keep_freed_memory()
network = load_model(sys.argv[1]).network.eval()
images = torch.randn(int(sys.argv[3]), 3, int(sys.argv[4]), int(sys.argv[4]))
with torch.no_grad():
    started = time.perf_counter()
    for start in range(0, len(images), int(sys.argv[5])):
        network(images[start:start + int(sys.argv[5])])
print(time.perf_counter() - started)
"""


def forward_in_fresh_process(model: Path, keep_freed: bool) -> Callable[[], float]:
    """The bare forward pass timed in a new process, with glibc's allocator as it starts, or after
    ``keep_freed_memory`` (settings hold for a whole process, so each needs its own)."""
    def run() -> float:
        command = [sys.executable, "-c", FRESH_FORWARD, str(model), "keep" if keep_freed else "default", str(IMAGES),
                   str(IMAGE_SIZE), str(BATCH)]
        return float(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    return run


def repeated_photos(photos: list[Path], folder: Path, times: int) -> Path:
    """``folder`` holding ``times`` sub-folders of hard links to ``photos``: as many distinct files
    (hashkit takes a photo given through symbolic links once)."""
    if not folder.exists():
        for copy in range(times):
            (folder / str(copy)).mkdir(parents=True)
            for photo in photos:
                os.link(photo, folder / str(copy) / photo.name)
    return folder


def train_transform():
    """The augmentations hashkit's training applies (the same work per image), written out."""
    return v2.Compose([v2.RandomResizedCrop(IMAGE_SIZE, scale=(0.6, 1.0), antialias=True),
                       v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.1),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def bare_encoders(network: nn.Module, paths: list[Path]) -> dict[str, Callable[[], None]]:
    """Runs of the bare network: its forward passes alone over tensors decoded beforehand (not
    timed), in PyTorch's default layout and channels-last (hashkit's, ``runtime.to_device``); a plain
    DataLoader loop that decodes as it goes (default layout, ``default_workers()`` processes); and
    hashkit's decoding alone (``ImageFiles`` with encode's threads, no network)."""
    network.eval()
    decoded = torch.stack([eval_transform()(torchvision.io.decode_image(str(p), mode=torchvision.io.ImageReadMode.RGB))
                           for p in paths])

    def forward_only(layout: torch.memory_format) -> Callable[[], None]:
        laid_out = copy.deepcopy(network).to(memory_format=layout)
        images = decoded.contiguous(memory_format=layout)

        @torch.no_grad()
        def run() -> None:
            for start in range(0, len(images), BATCH):
                laid_out(images[start:start + BATCH])
        return run

    @torch.no_grad()
    def with_loader() -> None:
        for images, _ in DataLoader(PlainImages(paths, eval_transform()), batch_size=BATCH,
                                    num_workers=default_workers()):
            network(images)

    def decoding_only() -> None:
        for _ in eval_loader(paths, IMAGE_SIZE, BATCH, None, torch.device("cpu")):
            pass

    return {"bare_forward": forward_only(torch.contiguous_format),
            "bare_forward_channels_last": forward_only(torch.channels_last),
            "bare_loader": with_loader, "hashkit_decoding_only": decoding_only}


def plain_training_epoch(network: nn.Module, paths: list[Path], features: torch.Tensor, workers: int,
                         layout: torch.memory_format = torch.contiguous_format) -> Callable[[], float]:
    """One epoch of GreedyHash's loss in a plain loop (DataLoader with ``workers`` processes,
    forward, loss, Adam step) with the network and batches in ``layout``; returns its seconds."""
    network.to(memory_format=layout)
    optimizer = torch.optim.Adam([{"params": network.head.parameters(), "lr": 1e-3},
                                  {"params": network.backbone.parameters(), "lr": 1e-4}])
    loader = DataLoader(PlainImages(paths, train_transform()), batch_size=BATCH, shuffle=True,
                        num_workers=workers, drop_last=False)

    def epoch() -> float:
        started = time.perf_counter()
        network.train()
        for images, index in loader:
            outputs = network.head.outputs(network.backbone(images.contiguous(memory_format=layout)))["codes"]
            codes = outputs + (torch.sign(outputs) - outputs).detach()
            i, j = torch.triu_indices(len(codes), len(codes), offset=1)
            f = F.normalize(features[index], dim=1)
            b = F.normalize(codes, dim=1)
            loss = ((f @ f.T)[i, j] - (b @ b.T)[i, j]).pow(2).mean() + 0.1 * (outputs.abs() - 1).abs().pow(3).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return time.perf_counter() - started

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds; every row runs once per round")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "data" / "throughput")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    keep_freed_memory()  # what hashkit's train and encode set; set here first, it holds for every row alike
    torch.manual_seed(SEED)
    paths = photographs(args.work / "photos")
    model_path = args.work / "greedyhash.pt"
    cache = args.work / "cache"

    def hashkit_epoch() -> float:
        """A training of 1 + TIMED_EPOCHS epochs; its shortest epoch after the first, when the network
        and optimiser are warm, as the plain loop's are after its warm-up."""
        summary = train(model_path, TrainOptions(method="greedyhash", bits=BITS, image_size=IMAGE_SIZE,
                                                 epochs=1 + TIMED_EPOCHS,
                                                 batch_size=BATCH, seed=SEED, feature_cache=cache, overwrite=True),
                        images_dir=args.work / "photos" / "photos")
        return min(summary.epoch_seconds[1:])

    hashkit_epoch()  # a first model to encode with; fills the feature cache GreedyHash's loss reads
    bare = bare_encoders(load_model(model_path).network, paths)
    store = args.work / "codes.h5"

    tripled = repeated_photos(paths, args.work / "photos-x3", 3)

    def hashkit_encode(workers: int | None = None, photos: Path = args.work / "photos" / "photos") -> None:
        encode(model_path, [photos], store, batch_size=BATCH, overwrite=True, feature_cache=None, workers=workers)

    with h5py.File(next(cache.glob("*.h5")), "r") as f:  # the initial backbone's features, as GreedyHash keeps them
        order = {path.decode(): row for row, path in enumerate(TextColumn(f, "paths").cells(0, f.attrs["count"]))}
        features = torch.from_numpy(np.asarray(f["features"][:], np.float32)[[order[str(p)] for p in paths]])
    plain_epoch = plain_training_epoch(load_model(model_path).network, paths, features, default_workers())
    plain_in_process = plain_training_epoch(load_model(model_path).network, paths, features, 0)
    plain_channels_last = plain_training_epoch(load_model(model_path).network, paths, features, 0,
                                               torch.channels_last)
    for warm_up in (plain_epoch, plain_in_process, plain_channels_last):  # every timed epoch runs on a warm network
        warm_up()
    encode_rows = {**bare, "hashkit_encode": hashkit_encode,
                   "hashkit_encode_one_worker": lambda: hashkit_encode(workers=1),
                   "bare_forward_fresh_process": forward_in_fresh_process(model_path, keep_freed=True),
                   "bare_forward_fresh_process_glibc_defaults": forward_in_fresh_process(model_path, keep_freed=False)}
    seconds = interleaved_best(args.repeat, {**encode_rows, "hashkit_encode_x3": lambda: hashkit_encode(photos=tripled),
                                             "hashkit_epoch": hashkit_epoch,
                                             "plain_epoch": lambda: min(plain_epoch() for _ in range(TIMED_EPOCHS)),
                                             "plain_epoch_in_process": lambda: min(plain_in_process()
                                                                                   for _ in range(TIMED_EPOCHS)),
                                             "plain_epoch_channels_last": lambda: min(plain_channels_last()
                                                                                      for _ in range(TIMED_EPOCHS))})
    rates = {name: IMAGES / seconds[name] for name in encode_rows}
    rates["hashkit_encode_steady"] = 2 * IMAGES / (seconds["hashkit_encode_x3"] - seconds["hashkit_encode"])
    processes, threads = decoding_plan(None, torch.device("cpu"))
    report = {
        "machine": f"{cpu_description()}, torch {torch.__version__} "
                   f"with {torch.get_num_threads()} threads, no GPU; plain loops: {default_workers()} DataLoader "
                   f"worker process(es); hashkit encode: {processes} worker processes, {threads} decoding threads",
        "images": IMAGES, "image_size": IMAGE_SIZE, "batch_size": BATCH, "repeat": args.repeat,
        "encode_images_per_second": {k: round(v, 2) for k, v in rates.items()},
        "encode_share_of_bare_forward": round(rates["hashkit_encode"] / rates["bare_forward"], 4),
        "encode_steady_share_of_bare_forward": round(rates["hashkit_encode_steady"] / rates["bare_forward"], 4),
        "encode_share_of_bare_forward_channels_last": round(
            rates["hashkit_encode"] / rates["bare_forward_channels_last"], 4),
        "encode_steady_share_of_bare_forward_channels_last": round(
            rates["hashkit_encode_steady"] / rates["bare_forward_channels_last"], 4),
        "sequential_ceiling_channels_last": round(1 / (1 + rates["bare_forward_channels_last"]
                                                       / rates["hashkit_decoding_only"]), 4),
        "encode_share_of_bare_loader": round(rates["hashkit_encode"] / rates["bare_loader"], 4),
        "timed_epochs": TIMED_EPOCHS,
        "train_epoch_seconds": {"hashkit": round(seconds["hashkit_epoch"], 2),
                                "plain_loop": round(seconds["plain_epoch"], 2),
                                "plain_loop_in_process": round(seconds["plain_epoch_in_process"], 2),
                                "plain_loop_channels_last": round(seconds["plain_epoch_channels_last"], 2)},
        "train_epoch_ratio": round(seconds["hashkit_epoch"] / seconds["plain_epoch"], 4),
        "train_epoch_ratio_in_process": round(seconds["hashkit_epoch"] / seconds["plain_epoch_in_process"], 4),
        "train_epoch_ratio_channels_last": round(seconds["hashkit_epoch"] / seconds["plain_epoch_channels_last"], 4),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "encode.json").write_text(json.dumps(report, indent=2))
    write_markdown(args.results / "encode.md", report)
    print((args.results / "encode.md").read_text())


ENCODE_ROWS = (
    ("bare_forward", "bare forward pass, PyTorch's default layout (images decoded beforehand, not timed)"),
    ("bare_forward_channels_last", "bare forward pass, channels-last"),
    ("bare_loader", "bare DataLoader loop (torchvision decoding in a worker process, forward, default layout)"),
    ("hashkit_encode", "`hashkit encode` of the 512 photos (library call: loading the model, listing, decoding, "
                       "forward, store commits)"),
    ("hashkit_encode_steady", "`hashkit encode`, steady state (the extra images / s of encoding the photos three "
                              "times over, through hard links, against once)"),
    ("hashkit_encode_one_worker", "`hashkit encode --workers 1` (decoding in a worker process beside the forward "
                                  "pass)"),
    ("hashkit_decoding_only", "hashkit's decoding alone (encode's threads, no network)"),
)


def write_markdown(path: Path, r: dict) -> None:
    rates = r["encode_images_per_second"]
    share = r["encode_share_of_bare_forward"]
    share_cl = r["encode_share_of_bare_forward_channels_last"]
    steady = r["encode_steady_share_of_bare_forward"]
    ratio = r["train_epoch_ratio"]
    lines = [
        "# Throughput on one machine", "",
        f"Machine: {r['machine']}. Produced by `python benchmarks/throughput.py` (protocol in its docstring): "
        f"{r['images']} photographs (640 x 480 JPEG), {r['image_size']} px, batches of {r['batch_size']}, "
        f"MobileNetV2 + 64-bit GreedyHash head trained end to end. Every row is the best of {r['repeat']} rounds, "
        f"the rows taking turns within each round (the machine's speed drifts; turns make the drift hit every row "
        f"alike); all rows in one process.", "",
        "## Encode", "",
        "hashkit runs its networks channels-last (`runtime.to_device`); the bare forward pass is timed in both "
        "layouts, and hashkit's share is given against each.", "",
        "| run | images / s | share of the bare forward pass (default layout) | share of it channels-last |",
        "|---|---|---|---|",
        *(f"| {label} | {rates[key]} | {rates[key] / rates['bare_forward']:.1%} "
          f"| {rates[key] / rates['bare_forward_channels_last']:.1%} |" for key, label in ENCODE_ROWS),
        "",
        f"Target: at least 90% of the bare forward pass. Against PyTorch's default layout: "
        f"{'met' if share >= 0.9 else 'missed'} for a whole call ({share:.1%}), "
        f"{'met' if steady >= 0.9 else 'missed'} in the steady state ({steady:.1%}). Against the same forward "
        f"pass channels-last: {'met' if share_cl >= 0.9 else 'missed'} ({share_cl:.1%}; steady state "
        f"{r['encode_steady_share_of_bare_forward_channels_last']:.1%}). Decoding and the forward pass share the "
        f"same cores here, so the share cannot pass decoding's: images decoded one batch, then that batch encoded, "
        f"at the two rates measured above reach at most {r['sequential_ceiling_channels_last']:.1%} of the "
        f"channels-last forward pass.", "",
        "Memory allocator (the bare forward pass over random tensors of the same shape, each in a new process): "
        f"{rates['bare_forward_fresh_process']} images / s after `keep_freed_memory`, "
        f"{rates['bare_forward_fresh_process_glibc_defaults']} with glibc's defaults "
        f"({rates['bare_forward_fresh_process'] / rates['bare_forward_fresh_process_glibc_defaults']:.2f}x).", "",
        "## Training epoch", "",
        "| run | seconds per epoch |", "|---|---|",
        f"| `hashkit train --method greedyhash` (end to end, the shortest of epochs 2 to {1 + r['timed_epochs']} of "
        f"a {1 + r['timed_epochs']}-epoch run) "
        f"| {r['train_epoch_seconds']['hashkit']} |",
        f"| plain single-file PyTorch loop, same network, loss, optimiser, augmentations, data (after a warm-up "
        f"epoch; the shortest of the next {r['timed_epochs']}), decoding in a DataLoader worker process "
        f"| {r['train_epoch_seconds']['plain_loop']} |",
        f"| the same plain loop decoding in the training process (`num_workers=0`) "
        f"| {r['train_epoch_seconds']['plain_loop_in_process']} |",
        f"| the same, network and batches channels-last, as hashkit runs them "
        f"| {r['train_epoch_seconds']['plain_loop_channels_last']} |",
        "",
        f"Target: no slower than the plain loop: {'met' if ratio <= 1.0 else 'missed'} "
        f"(hashkit / plain = {ratio:.3f}; against the plain loop decoding in its own process, as hashkit does on "
        f"a CPU: {r['train_epoch_ratio_in_process']:.3f}; against that loop channels-last too, the same work as "
        f"hashkit's: {r['train_epoch_ratio_channels_last']:.3f}).",
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
