"""``hashkit train``: fit a hashing method and write a model file."""

from __future__ import annotations

import dataclasses
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hashkit.hashing import __version__
from hashkit.hashing.errors import UserError
from hashkit.hashing.files.images import find_images
from hashkit.hashing.files.labels import label_matrix, load_labels, vocabulary
from hashkit.hashing.files.locking import exclusive_lock
from hashkit.hashing.files.outputs import output_file
from hashkit.hashing.files.pairs_file import read_pairs
from hashkit.hashing.files.pairs_merge import merged_pairs
from hashkit.hashing.memory import check_batch_memory, keep_freed_memory
from hashkit.hashing.methods import DeepMethod, FeatureMethod, Method, TrainingData, get_method
from hashkit.hashing.runtime import resolve_device, seed_everything
from hashkit.hashing.user_cache import default_cache_dir

from . import distributed, resume
from .backbones import IMAGENET_MEAN, IMAGENET_STD
from .collapse import Collapse, code_collapse
from .features import cached_features, weights_digest
from .model_file import build_network, save_model
from .network import HashNetwork
from .trainer import OPTIMIZERS, DeepTrainer


@dataclass(frozen=True)
class TrainOptions:
    method: str = "bcdh"
    params: dict[str, Any] = field(default_factory=dict)  # method hyperparameters
    bits: int = 64
    backbone: str = "mobilenet_v2"
    weights: str = "imagenet"
    image_size: int = 224
    hidden: int = 0  # width of a hidden layer before the hash layer (0: none)
    freeze_backbone: bool | None = None  # train the head only, on cached backbone features (None: the method's choice)
    epochs: int = 10
    batch_size: int = 32  # pairs per step for pair methods, images per step otherwise
    lr: float = 1e-3  # head; a trained backbone uses lr / 10
    optimizer: str = "adam"  # a key of trainer.OPTIMIZERS
    seed: int = 0
    device: str = "auto"
    workers: int | None = None  # DataLoader worker processes; None: runtime.worker_processes / decoding_plan
    feature_cache: Path | None = field(default_factory=default_cache_dir)  # None: no cache
    overwrite: bool = False
    resume: bool = False  # continue from the checkpoint of an interrupted run, when there is one


# options that do not change the result, so a checkpoint may be resumed with others
RUN_ONLY_OPTIONS = ("device", "workers", "feature_cache", "overwrite", "resume")


@dataclass
class TrainSummary:
    model_path: str
    method: str
    bits: int
    images: int
    seconds: float
    epoch_losses: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # undecodable images left out
    classes: int = 0
    warnings: list[str] = field(default_factory=list)
    resumed_from_epoch: int = 0  # epochs done before this run, from a checkpoint
    collapse: Collapse | None = None  # of the training images' codes


def loss_warnings(losses: list[float]) -> list[str]:
    """A line for each epoch whose mean loss is not finite, or more than doubled (by at least 0.1)
    from the epoch before: signs of a diverging run that a user should see."""
    found = []
    for epoch, (before, loss) in enumerate(zip([None, *losses], losses), start=1):
        if not np.isfinite(loss):
            found.append(f"epoch {epoch}: loss is {loss}; training diverged (try a lower --lr)")
        elif before is not None and loss > 2 * before and loss - before >= 0.1:
            found.append(f"epoch {epoch}: loss jumped from {before:.4f} to {loss:.4f}; training may be unstable")
    return found


def train(output: Path, options: TrainOptions, pairs_path: Path | list[Path] | None = None,
          images_dir: Path | None = None, labels: str | None = None) -> TrainSummary:
    """Train ``options.method`` from a ``pairs.h5`` (or several, read as one by
    ``pairs_merge.merged_pairs``) or an image folder (with ``labels``: ``folders`` or a CSV, for
    supervised methods); write ``output``."""
    pairs_paths = [Path(pairs_path)] if isinstance(pairs_path, (str, Path)) else list(pairs_path or [])
    output = Path(output)
    method = get_method(options.method, **options.params)
    _check_options(output, options, method, pairs_paths, images_dir, labels)
    started = time.perf_counter()
    generator = seed_everything(options.seed)
    device = resolve_device(options.device)
    keep_freed_memory()
    frozen = isinstance(method, FeatureMethod) or (method.freezes_backbone if options.freeze_backbone is None
                                                   else options.freeze_backbone)
    if frozen:
        check_batch_memory(_feature_batch(options), options.image_size, "inference", "--image-size")
    else:  # a batch of pairs holds up to twice as many images
        check_batch_memory(options.batch_size * (2 if method.supervision == "pairs" else 1), options.image_size,
                           "training", "--batch-size or --image-size")
    distributed.start(device)
    writer = distributed.main_process()  # under torchrun, rank 0 alone writes the model and checkpoints
    with exclusive_lock(output) if writer else nullcontext():
        data = _training_data(method, pairs_paths, images_dir, labels)
        network = build_network(method, options.backbone, options.weights, options.bits, options.hidden,
                                len(data.classes))
        unreadable: list[str] = []
        if frozen or (isinstance(method, DeepMethod) and method.wants_features(data.pairs is not None)):
            data, unreadable = _with_features(data, network, weights_digest(network.backbone), options, device)
        losses, seconds, state = [], [], None
        if isinstance(method, FeatureMethod):
            _fit_hash_layer(network, method, data.features, options)
            with torch.no_grad():
                outputs = network.head(torch.from_numpy(data.features).float()).numpy()
        else:
            checkpoint = resume.checkpoint_path(output)
            stamp = resume.fingerprint({k: v for k, v in dataclasses.asdict(options).items()
                                        if k not in RUN_ONLY_OPTIONS}, data.paths)
            state = resume.load(checkpoint, stamp) if options.resume and checkpoint.exists() else None
            trainer = DeepTrainer(network, method, data, frozen=frozen, image_size=options.image_size,
                                  lr=options.lr, optimizer=options.optimizer, workers=options.workers,
                                  device=device, generator=generator)
            losses, seconds = trainer.fit(options.epochs, options.batch_size, options.bits, options.seed,
                                          checkpoint, stamp, state)
            outputs = trainer.final_outputs
        collapse = code_collapse(np.packbits(outputs > 0, axis=1), _groups(data))
        config = {
            "method": method.name, "params": options.params, "bits": options.bits,
            "backbone": options.backbone, "init_weights": options.weights, "hidden": options.hidden,
            "frozen_backbone": frozen, "backbone_digest": weights_digest(network.backbone),
            "backbone_output": "maps" if method.uses_maps else "features",
            "image_size": options.image_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "hashkit_version": __version__, "seed": options.seed, "epochs": options.epochs if losses else 0,
            "trained_on": ", ".join(str(path) for path in pairs_paths) or str(images_dir),
            "training_images": len(data.paths),
            "labels": labels, "classes": data.classes,
        }
        if writer:
            save_model(output, network, config)
            resume.checkpoint_path(output).unlink(missing_ok=True)
    distributed.stop()
    warnings = loss_warnings(losses) + [line for line in [collapse.warning()] if line]
    return TrainSummary(str(output), method.name, options.bits, len(data.paths),
                        round(time.perf_counter() - started, 2), losses, seconds, unreadable, len(data.classes),
                        warnings, state["epoch"] if state else 0, collapse)


def _groups(data: TrainingData) -> np.ndarray | None:
    """What images codes should tell apart: the linked images of a pairs file, or classes of
    one label per image; None otherwise."""
    if data.pairs is not None:
        return data.pairs.group
    if data.labels is not None and (data.labels.sum(axis=1) == 1).all():
        return data.labels.argmax(axis=1)
    return None


def _feature_batch(options: TrainOptions) -> int:
    """Images per forward pass when the backbone's features are computed: at least 64."""
    return max(options.batch_size, 64)


def _check_options(output: Path, options: TrainOptions, method: Method, pairs_paths: list[Path],
                   images_dir: Path | None, labels: str | None) -> None:
    if options.bits <= 0 or options.bits % 8:
        raise UserError(f"--bits must be a positive multiple of 8, got {options.bits}")
    if options.epochs < 1 or options.batch_size < 2 or options.image_size < 32 or options.hidden < 0:
        raise UserError("--epochs must be >= 1, --batch-size >= 2, --image-size >= 32 and --hidden >= 0")
    if options.optimizer not in OPTIMIZERS:
        raise UserError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {options.optimizer!r}")
    if isinstance(method, FeatureMethod) and options.hidden:
        raise UserError(f"method {method.name} fits a linear hash layer; --hidden must be 0")
    if not method.takes_hidden() and options.hidden:
        raise UserError(f"method {method.name} sets its own layer widths (see --param); --hidden must be 0")
    output_file(output, options.overwrite)
    checkpoint = resume.checkpoint_path(output)
    if checkpoint.exists() and not (options.resume or options.overwrite):
        raise UserError(f"{checkpoint} holds an interrupted run: --resume continues it, --overwrite starts again")
    if not pairs_paths and images_dir is None:
        raise UserError("give --pairs PAIRS.h5 or --images DIR")
    supervised = method.supervision in ("labels", "multilabels")
    if supervised and labels is None:
        raise UserError(f"method {method.name} is supervised: give --labels folders|LABELS.csv")
    if labels is not None and not supervised:
        raise UserError(f"method {method.name} does not use labels; drop --labels")


def _training_data(method: Method, pairs_paths: list[Path], images_dir: Path | None,
                   labels: str | None) -> TrainingData:
    """Pairs methods use the pairs files when given; everything else trains from the images of
    ``--images`` (or the images listed in the pairs files), with their labels when given."""
    if pairs_paths:
        files = [read_pairs(path) for path in pairs_paths]
        pairs = files[0] if len(files) == 1 else merged_pairs(files)
        data = TrainingData(pairs.absolute_paths(), pairs=pairs if method.supervision == "pairs" else None)
    else:
        paths = find_images(Path(images_dir))
        if not paths:
            raise UserError(f"no images in {images_dir}")
        data = TrainingData(paths)
    if labels is not None:
        data.labels, data.classes = _labels_of(data.paths, labels)
    return data


def _labels_of(paths: list[Path], source: str) -> tuple[np.ndarray, list[str]]:
    """Multi-hot labels of every training image and the class names; every image needs one."""
    known = load_labels(source, [str(p) for p in paths])
    missing = [p for p in paths if str(p) not in known]
    if missing:
        raise UserError(f"{source} gives no label for {len(missing)} training images, e.g. {missing[0]}")
    label_sets = [known[str(p)] for p in paths]
    classes = vocabulary(label_sets)
    if len(classes) < 2:
        raise UserError(f"{source}: supervised training needs at least two classes, found {classes}")
    return label_matrix(label_sets, classes), classes


def _with_features(data: TrainingData, network: HashNetwork, digest: str, options: TrainOptions,
                   device: torch.device) -> tuple[TrainingData, list[str]]:
    """``data`` with backbone features (through the cache) and the undecodable images, which are
    dropped, except from a pairs file, where they are an error."""
    features, ok = cached_features(network.backbone, options.backbone, digest, data.paths, options.image_size,
                                   IMAGENET_MEAN, IMAGENET_STD, _feature_batch(options), options.workers, device,
                                   options.feature_cache)
    data = dataclasses.replace(data, features=features)
    if ok.all():
        return data, []
    if data.pairs is not None:
        raise UserError(f"cannot decode {data.paths[int(np.argmin(ok))]} (listed in the pairs file)")
    if ok.sum() < 2:
        raise UserError("fewer than two decodable training images")
    return data.subset(ok), [str(p) for p, good in zip(data.paths, ok) if not good]


def _fit_hash_layer(network: HashNetwork, method: FeatureMethod, features: np.ndarray,
                    options: TrainOptions) -> None:
    weight, bias = method.fit(features, options.bits, options.seed)
    network.head.hash_layer.weight.data = torch.from_numpy(np.asarray(weight, np.float32))
    network.head.hash_layer.bias.data = torch.from_numpy(np.asarray(bias, np.float32))
