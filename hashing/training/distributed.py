"""Training under torchrun: the process group, and what the processes exchange.

Every process keeps the whole method state (auxiliary codes, similarities, anchors, memories)
and computes each alternating step itself from the same inputs: the network's outputs over all
training images (each process computes a share, then they gather), the same seeded random
draws, and the per-batch updates of all processes (``after_step``). Weights stay equal through
DistributedDataParallel, so the state stays equal everywhere without being sent.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist


def launched() -> bool:
    """Whether this process is one of several started by torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def main_process() -> bool:
    """Rank 0, or a run without torchrun: the process that writes files and prints."""
    return os.environ.get("RANK", "0") == "0"


def start(device: torch.device) -> None:
    """Join the process group (NCCL on GPUs, gloo on the CPU) when launched by torchrun."""
    if launched() and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_and_size() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def gather(item: object) -> list[object]:
    """``item`` of every process, in rank order (just ``[item]`` in a single process)."""
    rank, size = rank_and_size()
    if size == 1:
        return [item]
    items: list[object] = [None] * size
    dist.all_gather_object(items, item)
    return items


def gather_rows(local: np.ndarray, total: int) -> np.ndarray:
    """Rows ``rank::size`` computed by each process, joined into the (total, ...) array."""
    parts = gather(local)
    size = len(parts)
    joined = np.empty((total, *local.shape[1:]), local.dtype)
    for rank, part in enumerate(parts):
        joined[rank::size] = part
    return joined
