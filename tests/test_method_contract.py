"""The contract of every registered hashing method (``methods/base.py``), picked up from the
registry: a new method is tested by adding its file. On small synthetic features of the supervision
it declares, a deep method's head gives (B, bits) codes, its loss is finite, the trainer takes steps,
and a run resumed from the checkpoint of its first epoch ends where the uninterrupted run ends; a
feature method fits a finite hash layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hashkit.hashing.files.pairs_file import Pairs
from hashkit.hashing.methods import METHODS, DeepMethod, FeatureMethod, TrainingData, get_method
from hashkit.hashing.methods.base import SUPERVISION
from hashkit.hashing.training import resume
from hashkit.hashing.training.network import HashNetwork
from hashkit.hashing.training.trainer import DeepTrainer

BITS, IMAGES, GROUPS, WIDTH, MAP_SIDE = 16, 48, 4, 32, 7


def training_data(supervision: str, maps: bool) -> TrainingData:
    """Features (or feature maps) of IMAGES images in GROUPS clusters, with the pairs or labels
    ``supervision`` asks for."""
    rng = np.random.default_rng(0)
    group = np.arange(IMAGES) % GROUPS
    centres = rng.normal(size=(GROUPS, WIDTH))
    features = (centres[group] + 0.3 * rng.normal(size=(IMAGES, WIDTH))).astype(np.float32)
    if maps:
        features = np.abs(features[:, :, None, None] + 0.1 * rng.normal(size=(IMAGES, WIDTH, MAP_SIDE, MAP_SIDE)))
        features = features.astype(np.float16)
    data = TrainingData([f"image{i}.jpg" for i in range(IMAGES)], features)
    if supervision == "pairs":
        i, j = np.triu_indices(IMAGES, 1)
        same = group[i] == group[j]
        data.pairs = Pairs("/photos", list(data.paths), group.astype(np.int32),
                           np.stack([i[same], j[same]], 1).astype(np.int32), np.full(same.sum(), 20, np.int32),
                           np.stack([i[~same], j[~same]], 1)[::7].astype(np.int32))
    elif supervision in ("labels", "multilabels"):
        labels = np.eye(GROUPS, dtype=bool)[group]
        if supervision == "multilabels":
            labels |= rng.random((IMAGES, GROUPS)) < 0.2
        data.labels, data.classes = labels, [f"class{c}" for c in range(GROUPS)]
    return data


def trained(name: str, data: TrainingData, checkpoint, resume_from: dict | None = None):
    """Two epochs of ``name`` on ``data`` (frozen features, identity backbone): the losses and head."""
    torch.manual_seed(0)
    method = get_method(name)
    in_features = WIDTH
    head = method.build_head(in_features, BITS, 0, len(data.classes))
    network = HashNetwork(nn.Identity(), head)
    trainer = DeepTrainer(network, method, data, frozen=True, image_size=32, lr=1e-3, optimizer="adam", workers=0,
                          device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    losses, _ = trainer.fit(2, 8, BITS, 0, checkpoint=checkpoint, fingerprint="contract", resume_from=resume_from)
    return losses, head


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_contract(name, tmp_path):
    method = get_method(name)
    assert method.supervision in SUPERVISION
    data = training_data(method.supervision, method.uses_maps)
    if isinstance(method, FeatureMethod):
        weight, bias = method.fit(data.features, BITS, 0)
        assert weight.shape == (BITS, WIDTH) and bias.shape == (BITS,)
        assert np.isfinite(weight).all() and np.isfinite(bias).all()
        return
    assert isinstance(method, DeepMethod)
    head = method.build_head(WIDTH, BITS, 0, len(data.classes))
    codes = head(torch.from_numpy(data.features[:5]).float())
    assert codes.shape == (5, BITS)

    checkpoint = tmp_path / "model.pt.checkpoint"
    losses, head = trained(name, data, checkpoint)
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert checkpoint.exists(), "the first epoch is checkpointed"
    resumed_losses, resumed_head = trained(name, data, None, resume.load(checkpoint, "contract"))
    assert resumed_losses == losses
    for key, value in head.state_dict().items():
        assert torch.equal(value, resumed_head.state_dict()[key]), f"{key} differs after resuming"
