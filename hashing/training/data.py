"""Image datasets and transforms for training and encoding."""

from __future__ import annotations

import ctypes
import functools
import math
import os
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn.functional import interpolate
from torch.utils.data import DataLoader, Dataset

from hashkit.hashing.files.images import read_rgb
from hashkit.hashing.runtime import decoding_plan

if TYPE_CHECKING:
    from torchvision.transforms import v2


class Normalizer:
    """uint8 image batches (N, 3, H, W) -> float32 ``(image / 255 - mean) / std`` on ``device``.
    Transforms stop at uint8 and batches are normalised whole, after the move to the device: a
    quarter of the bytes through worker processes' shared memory and to a GPU, and one fused pass
    over a batch instead of three over each image (same values to float rounding). The output is
    channels-last, the layout ``runtime.to_device`` gives the networks."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device):
        std_ = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.scale = (1 / (255 * std_)).to(device)
        self.shift = (-torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) / std_).to(device)
        self.device = device

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device).contiguous(memory_format=torch.channels_last)
        return torch.addcmul(self.shift, images.to(torch.float32), self.scale)


class EvalTransform:
    """Shorter side to ``image_size`` (bilinear, antialiased), then the centre square; uint8 (3, H, W)
    in and out (see ``Normalizer``). The pixels of torchvision's ``v2.Resize(image_size,
    antialias=True)`` then ``v2.CenterCrop(image_size)`` on CPUs with AVX2 (tests compare them; on
    others, torchvision resizes in float32), written with torch alone: importing torchvision is
    most of a one-image encode."""

    def __init__(self, image_size: int):
        self.size = image_size

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        longer = int(self.size * max(height, width) / min(height, width))  # torchvision truncates too
        new_height, new_width = (self.size, longer) if height <= width else (longer, self.size)
        if (new_height, new_width) != (height, width):
            image = interpolate(image[None], size=[new_height, new_width], mode="bilinear", align_corners=False,
                                antialias=True)[0]
        top, left = (int(round((side - self.size) / 2.0)) for side in (new_height, new_width))  # as torchvision
        return image[:, top:top + self.size, left:left + self.size]


CROP_SCALE, CROP_RATIO = (0.6, 1.0), (3 / 4, 4 / 3)  # training crops: share of the area, width / height


def train_transform(image_size: int) -> v2.Compose:
    """Random resized crop and mild colour jitter; uint8 in and out (see ``Normalizer``)."""
    from torchvision.transforms import v2  # slow to import: only where training needs it

    return v2.Compose([
        v2.RandomResizedCrop(image_size, scale=CROP_SCALE, ratio=CROP_RATIO, antialias=True),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.1),
    ])


def train_min_side(image_size: int) -> int:
    """The shorter side a training photo may be decoded at (``read_rgb``'s ``min_side``) so that
    the smallest random crop still covers ``image_size`` pixels each way: a crop of area share s
    and width / height a has sides sqrt(s a) and sqrt(s / a) times sqrt(W H) >= the shorter side."""
    return math.ceil(image_size / math.sqrt(CROP_SCALE[0] * CROP_RATIO[0]))


def load_tensor(path: Path, min_side: int | None = None) -> torch.Tensor | None:
    """The image as a (3, H, W) uint8 tensor, or None when it cannot be decoded; ``min_side``: see
    ``read_rgb``."""
    image = read_rgb(path, min_side)
    return None if image is None else torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


class ImageFiles(Dataset):
    """Images by path through ``EvalTransform``; item = (uint8 tensor, index, decoded ok). An
    undecodable image yields zeros. JPEGs are decoded at the smallest DCT scale that keeps their
    shorter side at least ``image_size`` (the transform shrinks them to it anyway). A batch fetched
    in this process (``__getitems__``, no worker processes) is decoded by ``decode_threads`` threads:
    OpenCV and torch release the GIL while they work."""

    def __init__(self, paths: Sequence[Path], image_size: int, decode_threads: int = 1):
        self.paths = list(paths)
        self.transform = EvalTransform(image_size)
        self.image_size = image_size
        self.decode_threads = decode_threads

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, bool]:
        image = load_tensor(self.paths[index], min_side=self.image_size)
        if image is None:
            return torch.zeros(3, self.image_size, self.image_size, dtype=torch.uint8), index, False
        return self.transform(image), index, True

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int, bool]]:
        if self.decode_threads <= 1 or len(indices) <= 1:
            return [self[i] for i in indices]
        with ThreadPoolExecutor(min(self.decode_threads, len(indices))) as pool:
            return list(pool.map(self.__getitem__, indices))


PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent dies (Linux)


def die_with_parent(parent_pid: int, worker_id: int) -> None:
    """DataLoader worker start: have the kernel SIGKILL this worker the moment its parent dies,
    whatever ended the parent (SIGKILL included), and exit at once if the parent is already gone."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def eval_loader(paths: Sequence[Path], image_size: int, batch_size: int, workers: int | None,
                device: torch.device) -> DataLoader:
    """uint8 batches of ``ImageFiles`` for encoding or backbone features, decoded as
    ``decoding_plan`` says for ``device`` (``workers``: None picks)."""
    processes, threads = decoding_plan(workers, device, math.ceil(len(paths) / batch_size))
    return image_loader(ImageFiles(paths, image_size, threads), batch_size, processes)


def image_loader(dataset: Dataset, batch_size: int | None, workers: int, **kwargs) -> DataLoader:
    """A DataLoader over ``dataset`` whose worker processes never outlive this process: killed
    with it, they can neither keep an output lock nor hold a caller's stdout open. Its seed comes
    from ``generator`` (a fresh one unless given), never from torch's global generator, so a
    training run's random draws (e.g. dropout masks) do not depend on whether its features came
    from the cache."""
    kwargs.setdefault("generator", torch.Generator())
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                      worker_init_fn=functools.partial(die_with_parent, os.getpid()) if workers else None, **kwargs)
