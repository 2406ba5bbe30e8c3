"""``hashkit train``: fit a hashing method and write a model file."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hashkit.sfm_pairs.pairs_file import Pairs, read_pairs

from . import __version__
from .backbones import IMAGENET_MEAN, IMAGENET_STD, backbone_spec, build_backbone
from .checkpoint import save_checkpoint
from .data import ImageFiles, eval_transform, load_tensor, train_transform
from .errors import UserError
from .images import find_images
from .locking import exclusive_lock
from .methods import DeepMethod, FeatureMethod, Method, get_method
from .network import HashNetwork
from .progress import progress
from .runtime import default_workers, resolve_device, seed_everything


@dataclass(frozen=True)
class TrainOptions:
    method: str = "bcdh"
    bits: int = 64
    backbone: str = "mobilenet_v2"
    weights: str = "imagenet"
    image_size: int = 224
    epochs: int = 10
    batch_size: int = 32  # pairs per step for pair methods, images per step otherwise
    lr: float = 1e-3  # hash layer; the backbone trains at lr / 10
    seed: int = 0
    device: str = "auto"
    workers: int = field(default_factory=default_workers)
    overwrite: bool = False


@dataclass
class TrainSummary:
    model_path: str
    method: str
    bits: int
    images: int
    seconds: float
    epoch_losses: list[float] = field(default_factory=list)


def train(output: Path, options: TrainOptions, pairs_path: Path | None = None,
          images_dir: Path | None = None) -> TrainSummary:
    """Train ``options.method`` from a ``pairs.h5`` or an image folder; write ``output``."""
    output = Path(output)
    method = get_method(options.method)
    _check_options(output, options, method, pairs_path, images_dir)
    started = time.perf_counter()
    generator = seed_everything(options.seed)
    device = resolve_device(options.device)
    spec = backbone_spec(options.backbone)
    network = HashNetwork(build_backbone(options.backbone, options.weights), spec.feature_dim, options.bits)
    with exclusive_lock(output):
        if isinstance(method, DeepMethod):
            pairs = read_pairs(pairs_path)
            paths = pairs.absolute_paths()
            losses = _train_on_pairs(network, method, pairs, options, device, generator)
        else:
            paths = _training_images(pairs_path, images_dir)
            losses = []
            _fit_on_features(network, method, paths, options, device)
        config = {
            "method": method.name, "bits": options.bits, "backbone": options.backbone,
            "init_weights": options.weights, "image_size": options.image_size,
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "hashkit_version": __version__,
            "seed": options.seed, "epochs": options.epochs if losses else 0,
            "trained_on": str(pairs_path or images_dir), "training_images": len(paths),
        }
        save_checkpoint(output, network, config)
    return TrainSummary(str(output), method.name, options.bits, len(paths),
                        round(time.perf_counter() - started, 2), losses)


def _check_options(output: Path, options: TrainOptions, method: Method,
                   pairs_path: Path | None, images_dir: Path | None) -> None:
    if options.bits <= 0 or options.bits % 8:
        raise UserError(f"--bits must be a positive multiple of 8, got {options.bits}")
    if options.epochs < 1 or options.batch_size < 2 or options.image_size < 32:
        raise UserError("--epochs must be >= 1, --batch-size >= 2 and --image-size >= 32")
    if output.exists() and not options.overwrite:
        raise UserError(f"{output} exists; use --overwrite to replace it")
    if method.supervision == "pairs" and pairs_path is None:
        raise UserError(f"method {method.name} trains from pairs: give --pairs WORK_DIR/pairs.h5")
    if method.supervision not in ("pairs", "none"):
        raise UserError(f"method {method.name} needs {method.supervision}, which is not supported yet")
    if pairs_path is None and images_dir is None:
        raise UserError("give --pairs PAIRS.h5 or --images DIR")


def _training_images(pairs_path: Path | None, images_dir: Path | None) -> list[Path]:
    if images_dir is not None:
        paths = find_images(Path(images_dir))
        if not paths:
            raise UserError(f"no images in {images_dir}")
        return paths
    return read_pairs(pairs_path).absolute_paths()


class PairBatches(Dataset):
    """One item per batch of pairs: the batch's distinct images, loaded once each.

    Item: (images (U, 3, S, S), pairs (B, 2) indices into images, similar (B,), unreadable paths).
    """

    def __init__(self, paths: list[Path], batches: list[np.ndarray], transform, image_size: int):
        self.paths, self.batches, self.transform, self.image_size = paths, batches, transform, image_size

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        rows = self.batches[index]
        images, local = np.unique(rows[:, :2], return_inverse=True)
        tensors, unreadable = [], []
        for i in images:
            image = load_tensor(self.paths[i])
            if image is None:
                unreadable.append(str(self.paths[i]))
                image = torch.zeros(3, self.image_size, self.image_size, dtype=torch.uint8)
            tensors.append(self.transform(image))
        pairs = torch.from_numpy(local.reshape(-1, 2).astype(np.int64))
        return torch.stack(tensors), pairs, torch.from_numpy(rows[:, 2].astype(np.float32)), unreadable


def epoch_pairs(positives: np.ndarray, negatives: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """All positives and as many negatives (drawn with replacement only when too few), shuffled.

    Rows are (i, j, similar)."""
    draw = rng.choice(len(negatives), size=len(positives), replace=len(negatives) < len(positives))
    rows = np.concatenate([
        np.column_stack([positives, np.ones(len(positives), np.int64)]),
        np.column_stack([negatives[draw], np.zeros(len(draw), np.int64)]),
    ])
    return rows[rng.permutation(len(rows))]


def _train_on_pairs(network: HashNetwork, method: DeepMethod, pairs: Pairs, options: TrainOptions,
                    device: torch.device, generator: torch.Generator) -> list[float]:
    if len(pairs.positives) == 0 or len(pairs.negatives) == 0:
        raise UserError(f"{len(pairs.positives)} positive and {len(pairs.negatives)} negative pairs: "
                        "training needs both (at least two 3D models, with covisible images)")
    rng = np.random.default_rng(options.seed)
    transform = train_transform(options.image_size, IMAGENET_MEAN, IMAGENET_STD)
    paths = pairs.absolute_paths()
    network.to(device).train()
    optimizer = torch.optim.Adam([
        {"params": network.backbone.parameters(), "lr": options.lr / 10},
        {"params": network.hash_layer.parameters(), "lr": options.lr},
    ])
    losses = []
    for epoch in range(options.epochs):
        rows = epoch_pairs(pairs.positives, pairs.negatives, rng)
        batches = [rows[i:i + options.batch_size] for i in range(0, len(rows), options.batch_size)]
        loader = DataLoader(PairBatches(paths, batches, transform, options.image_size), batch_size=None,
                            num_workers=options.workers, generator=generator)
        total = 0.0
        bar = progress(loader, desc=f"epoch {epoch + 1}/{options.epochs}", unit="batch")
        for images, batch_pairs, similar, unreadable in bar:
            if unreadable:
                raise UserError(f"cannot decode {unreadable[0]} (listed in the pairs file)")
            loss = method.loss(network(images.to(device)), batch_pairs.to(device), similar.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
            bar.set_postfix(loss=f"{loss.item():.4f}")
        losses.append(round(total / len(batches), 6))
    network.cpu().eval()
    return losses


@torch.no_grad()
def backbone_features(network: HashNetwork, paths: list[Path], options: TrainOptions,
                      device: torch.device) -> np.ndarray:
    """Backbone features of ``paths`` (undecodable images are left out)."""
    dataset = ImageFiles(paths, eval_transform(options.image_size, IMAGENET_MEAN, IMAGENET_STD),
                         options.image_size)
    loader = DataLoader(dataset, batch_size=options.batch_size, num_workers=options.workers)
    network.to(device).eval()
    chunks = []
    for images, _, ok in progress(loader, desc="backbone features", unit="batch"):
        chunks.append(network.features(images[ok].to(device)).cpu().numpy())
    network.cpu()
    return np.concatenate(chunks)


def _fit_on_features(network: HashNetwork, method: FeatureMethod, paths: list[Path],
                     options: TrainOptions, device: torch.device) -> None:
    features = backbone_features(network, paths, options, device)
    if len(features) < 2:
        raise UserError("fewer than two decodable training images")
    weight, bias = method.fit(features, options.bits, options.seed)
    network.hash_layer.weight.data = torch.from_numpy(np.asarray(weight, np.float32))
    network.hash_layer.bias.data = torch.from_numpy(np.asarray(bias, np.float32))
