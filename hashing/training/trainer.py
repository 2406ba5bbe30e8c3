"""The shared training loop of deep methods, on images (end to end) or on cached features."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from hashkit.hashing.errors import UserError
from hashkit.hashing.methods import Batch, DeepMethod, TrainingData
from hashkit.hashing.methods.heads import Head
from hashkit.hashing.progress import progress
from hashkit.hashing.runtime import to_device, worker_processes

from . import distributed, resume
from .backbones import IMAGENET_MEAN, IMAGENET_STD
from .data import Normalizer, image_loader, load_tensor, train_min_side, train_transform
from .features import compute_features
from .network import HashNetwork


class BatchImages(Dataset):
    """Item b: the augmented images of batch b (uint8), stacked in the batch's order. Large JPEGs
    are decoded at the DCT scale that still leaves the smallest random crop ``image_size`` pixels
    (``train_min_side``): a 4000 x 3000 photo at 1/8 for 224 px."""

    def __init__(self, paths: list[Path], batches: list[Batch], image_size: int):
        self.paths, self.batches, self.image_size = paths, batches, image_size
        self.transform = train_transform(image_size)
        self.min_side = train_min_side(image_size)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, list[str]]:
        tensors, unreadable = [], []
        for i in self.batches[index].indices:
            image = load_tensor(self.paths[i], self.min_side)
            if image is None:
                unreadable.append(str(self.paths[i]))
                image = torch.zeros(3, self.image_size, self.image_size, dtype=torch.uint8)
            tensors.append(self.transform(image))
        return torch.stack(tensors), index, unreadable


class TrainingStep(nn.Module):
    """Inputs to the head's outputs: images through the backbone and the head, or, with a frozen
    backbone, cached features through the head. Under torchrun, DistributedDataParallel wraps it."""

    def __init__(self, network: HashNetwork, frozen: bool):
        super().__init__()
        self.backbone: nn.Module | None = None if frozen else network.backbone
        self.head: Head = network.head

    def forward(self, inputs: torch.Tensor, **extras: object) -> dict[str, torch.Tensor]:
        return self.head.outputs(inputs if self.backbone is None else self.backbone(inputs), **extras)


def own_batches(batches: list[Batch], rank: int, size: int) -> list[Batch]:
    """The batches process ``rank`` of ``size`` trains on: every size-th, after dropping the last
    ``len % size`` so that every process takes as many optimiser steps."""
    if len(batches) < size:
        raise UserError(f"{len(batches)} batches per epoch for {size} processes: use a smaller --batch-size "
                        "or fewer processes")
    return batches[:len(batches) - len(batches) % size][rank::size]


OPTIMIZERS = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}  # torch's defaults otherwise


class DeepTrainer:
    """Runs ``method`` for ``epochs``: its alternating step before each epoch, then one
    optimiser step per batch. With ``frozen``, only the head trains, on ``data.features``.
    Under torchrun, each process takes every size-th batch and DistributedDataParallel averages
    the gradients of the processes' batches in each step (see ``distributed``)."""

    def __init__(self, network: HashNetwork, method: DeepMethod, data: TrainingData, *, frozen: bool,
                 image_size: int, lr: float, optimizer: str, workers: int | None, device: torch.device,
                 generator: torch.Generator):
        self.network, self.method, self.data, self.frozen = network, method, data, frozen
        self.image_size, self.workers, self.device, self.generator = image_size, workers, device, generator
        groups = [{"params": network.head.parameters(), "lr": lr}]
        if frozen:
            network.backbone.requires_grad_(False)
            self.features = torch.from_numpy(np.ascontiguousarray(data.features))  # float16 for maps
        else:
            groups.append({"params": network.backbone.parameters(), "lr": lr / 10})
        self.optimizer = OPTIMIZERS[optimizer](groups)

    @torch.no_grad()
    def outputs(self) -> np.ndarray:
        """Current real-valued codes of every training image (evaluation mode); under torchrun
        each process computes every size-th image and they gather the whole."""
        self.network.eval()
        rank, size = distributed.rank_and_size()
        if self.frozen:
            features = self.features[rank::size]
            chunks = [self.network.head(features[i:i + 1024].to(self.device).float()).cpu()
                      for i in range(0, len(features), 1024)]
            local = torch.cat(chunks).numpy()
        else:
            features, _ = compute_features(self.network.backbone, self.data.paths[rank::size], self.image_size,
                                           IMAGENET_MEAN, IMAGENET_STD, 64, self.workers, self.device)
            local = self.network.head(torch.from_numpy(features).to(self.device).float()).cpu().numpy()
        return distributed.gather_rows(local, len(self.data.paths))

    def _after_step(self, batch: Batch, outputs: dict[str, torch.Tensor]) -> None:
        """The method's per-batch update, for the batches of every process."""
        if type(self.method).after_step is DeepMethod.after_step:
            return
        detached = {name: value.detach() for name, value in outputs.items()}
        if distributed.rank_and_size()[1] == 1:  # no trip through the CPU on the hot path of one process
            self.method.after_step(batch, detached)
            return
        on_cpu = {name: value.cpu() for name, value in detached.items()}
        for indices, gathered in distributed.gather((batch.indices, on_cpu)):
            self.method.after_step(Batch(indices), {name: value.to(self.device) for name, value in gathered.items()})

    def _inputs(self, batches: list[Batch]):
        """(network input on the device, batch) pairs: feature rows when frozen, else loaded images."""
        if self.frozen:
            for batch in batches:
                yield self.features[batch.indices].to(self.device).float(), batch
            return
        workers = worker_processes(self.workers, self.device)
        loader = image_loader(BatchImages(self.data.paths, batches, self.image_size), None, workers,
                              generator=self.generator)
        normalize = Normalizer(IMAGENET_MEAN, IMAGENET_STD, self.device)
        for images, index, unreadable in loader:
            if unreadable:
                raise UserError(f"cannot decode training image {unreadable[0]}")
            yield normalize(images), batches[index]

    def fit(self, epochs: int, batch_size: int, bits: int, seed: int, checkpoint: Path | None = None,
            fingerprint: str = "", resume_from: dict | None = None) -> tuple[list[float], list[float]]:
        """Train; the mean loss and the seconds of each epoch (its alternating step included).

        With ``checkpoint``, the whole training state is saved there after every epoch (stamped
        with ``fingerprint``); ``resume_from``, a state loaded from such a file, continues after its
        last epoch and ends where the uninterrupted run would have ended."""
        rng = np.random.default_rng(seed)
        self.method.setup(self.data, bits, seed)
        if resume_from is None:
            self.method.init_head(self.network.head, self.data)
        to_device(self.network, self.device)
        rank, size = distributed.rank_and_size()
        step = TrainingStep(self.network, self.frozen)
        model = DistributedDataParallel(step, find_unused_parameters=True) if size > 1 else step
        losses, seconds, first = [], [], 0
        if resume_from is not None:
            first, losses, seconds = resume_from["epoch"], resume_from["losses"], resume_from["seconds"]
            self.network.load_state_dict(resume_from["network"])
            self.optimizer.load_state_dict(resume_from["optimizer"])  # onto the parameters' device
            resume.load_object_state(self.method, resume_from["method"])
            rng = resume.restored(resume_from["rng"])
            self.generator = resume.restored(resume_from["loader_generator"])
            resume.set_global_random_state(resume_from["global_random"])
        for epoch in range(first, epochs):
            started = time.perf_counter()
            self.method.start_epoch(epoch, epochs, self.outputs)
            batches = own_batches(self.method.batches(epoch, batch_size, rng), rank, size)
            self.network.train()
            if self.frozen:
                self.network.backbone.eval()
            total = 0.0
            bar = progress(self._inputs(batches), total=len(batches), desc=f"epoch {epoch + 1}/{epochs}",
                           unit="batch")
            for inputs, batch in bar:
                outputs = model(inputs, **self.method.step_inputs(batch, self.device))
                loss = self.method.loss(outputs, batch)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self._after_step(batch, outputs)
                total += loss.item()
                bar.set_postfix(loss=f"{loss.item():.4f}")
            sums = np.array(distributed.gather((total, len(batches))), np.float64).sum(axis=0)
            losses.append(round(float(sums[0] / max(sums[1], 1)), 6))
            seconds.append(round(time.perf_counter() - started, 3))
            if checkpoint is not None and epoch + 1 < epochs and distributed.main_process():
                resume.save(checkpoint, {
                    "fingerprint": fingerprint, "epoch": epoch + 1, "losses": losses, "seconds": seconds,
                    "network": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
                    "optimizer": self.optimizer.state_dict(), "method": resume.object_state(self.method),
                    "rng": resume.snapshot(rng), "loader_generator": resume.snapshot(self.generator),
                    "global_random": resume.global_random_state()})
        self.final_outputs = self.outputs()  # the trained codes of the training images, for their collapse
        self.network.cpu().eval()
        return losses, seconds
