"""Where and how to run: device choice, seeding, DataLoader workers."""

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


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a generator for DataLoader shuffling and workers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def default_workers() -> int:
    """Image-decoding worker processes: leave one core to the network, use at most four."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


def available_memory() -> int | None:
    """Bytes of memory new allocations can take without swapping (Linux's MemAvailable); None
    where the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
