"""Image datasets and transforms for training and encoding."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from .images import read_rgb


def eval_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Shorter side to ``image_size``, centre crop, normalise."""
    return v2.Compose([
        v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std),
    ])


def train_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Random resized crop and mild colour jitter, then normalise."""
    return v2.Compose([
        v2.RandomResizedCrop(image_size, scale=(0.6, 1.0), antialias=True),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.1),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std),
    ])


def load_tensor(path: Path) -> torch.Tensor | None:
    """The image as a (3, H, W) uint8 tensor, or None when it cannot be decoded."""
    image = read_rgb(path)
    return None if image is None else torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


class ImageFiles(Dataset):
    """Images by path; item = (tensor, index, decoded ok). An undecodable image yields zeros."""

    def __init__(self, paths: Sequence[Path], transform: v2.Compose, image_size: int):
        self.paths = list(paths)
        self.transform = transform
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, bool]:
        image = load_tensor(self.paths[index])
        if image is None:
            return torch.zeros(3, self.image_size, self.image_size), index, False
        return self.transform(image), index, True


def image_loader(dataset: Dataset, batch_size: int | None, workers: int, isolated: bool = False,
                 **kwargs) -> DataLoader:
    """A DataLoader over ``dataset``. With ``isolated``, workers come from a fork server rather
    than a fork of this process, so they never inherit an open HDF5 store or an output lock
    (which a forked worker would keep holding for a few seconds after this process is killed);
    it costs each worker a fresh interpreter start, so only encoding, which holds a store, uses it."""
    context = "forkserver" if isolated and workers else None
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, multiprocessing_context=context, **kwargs)
