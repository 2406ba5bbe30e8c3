"""Where and how to run: device choice, network layout, seeding, DataLoader workers."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from .errors import UserError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when a GPU is visible, else the CPU; under torchrun, CUDA means the
    process's own GPU (``LOCAL_RANK``)."""
    if name not in DEVICES:
        raise UserError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible to torch")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def to_device(network: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``network`` moved to ``device`` with its convolution weights channels-last, the layout
    ``data.Normalizer`` gives image batches: on 2 CPU cores MobileNetV2's forward pass ran 1.4x and
    its training epoch 1.3x faster than in PyTorch's default layout (benchmarks/results/encode.md;
    1.1x to 1.5x for the other backbones in a one-off check), and it is the layout cuDNN prefers."""
    return network.to(device, memory_format=torch.channels_last)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a generator for DataLoader shuffling and workers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def default_workers() -> int:
    """Worker processes that decode images beside a GPU (the default there, for training and
    encoding): leave one core to the main process, use at most four."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


def worker_processes(workers: int | None, device: torch.device) -> int:
    """Worker processes that decode (and for training, augment) images: ``workers`` when given;
    beside a GPU ``default_workers()``, decoding while the GPU computes; on the CPU none, the
    images being decoded in this process between the network's steps: a process decoding beside
    the network's threads slows it far more than its own share (on 2 cores, encode to under half
    the forward pass's speed and a training epoch to twice its time: benchmarks/results/encode.md).
    Training augmentations in this process draw from torch's global generator, which a resumed
    run restores."""
    if workers is None:
        return default_workers() if device.type == "cuda" else 0
    return workers


def decoding_plan(workers: int | None, device: torch.device, batches: int | None = None) -> tuple[int, int]:
    """(worker processes, threads decoding in this process) for evaluation-time decoding (encode,
    backbone features) of ``batches`` batches (None: many): ``worker_processes``, but none unless
    asked for when the images fit in two batches (starting a process costs more than decoding them);
    without processes, all of torch's threads decode each batch between forward passes."""
    processes = 0 if workers is None and batches is not None and batches <= 2 else worker_processes(workers, device)
    return processes, 1 if processes else torch.get_num_threads()
