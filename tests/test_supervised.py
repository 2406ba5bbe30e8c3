"""Supervised methods (ATH, RV-SSDH, ExchNet, DSRH): their pieces, and learning through the CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hashkit.hashing.methods.ath import SpatialAttention, triplet_margin_loss
from hashkit.hashing.methods.dsrh import ranking_loss
from hashkit.hashing.methods.exchnet import binary_step
from hashkit.hashing.methods.rvssdh import VLAD

from .helpers import COMMON, FROZEN, assert_one_line_error, run_cli, train_and_evaluate


def test_triplet_margin_loss_by_hand():
    codes = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])  # squared distances / K: 0-1: 2, 0-2: 4, 1-2: 2
    labels = torch.tensor([0, 0, 1])
    # a margin of half a bit is 4 * 0.5 / K = 1 on this scale;
    # triplets (a, p, n): (0, 1, 2): max(0, 1 + 2 - 4) = 0; (1, 0, 2): max(0, 1 + 2 - 2) = 1;
    # the mean is over the one violating triplet
    assert float(triplet_margin_loss(codes, labels, margin_bits=0.5)) == pytest.approx(1.0)
    # with no margin, (1, 0, 2) scores max(0, 2 - 2) = 0: nothing violates, the loss is 0
    assert float(triplet_margin_loss(codes, labels, margin_bits=0.0)) == 0.0


def test_spatial_attention_masks_max_pooled_maps():
    maps = torch.rand(2, 5, 4, 4)
    attended = SpatialAttention()(maps)
    pooled = torch.nn.functional.max_pool2d(maps, 3, stride=1, padding=1)
    assert attended.shape == maps.shape
    assert ((attended >= 0) & (attended <= pooled)).all(), "a mask in (0, 1) times the pooled maps"


def test_vlad_random_centres_stay_fixed_and_learned_ones_train():
    torch.manual_seed(0)
    descriptors = torch.rand(4, 8, 3, 3)
    for learned in (False, True):
        vlad = VLAD(8, clusters=4, alpha=10.0, learned=learned)
        before = vlad.centres.detach().clone()
        assert "centres" in vlad.state_dict(), "saved with the model either way"
        output = vlad(descriptors)
        assert output.shape == (4, 32) and torch.allclose(output.norm(dim=1), torch.ones(4))
        if learned:
            output.pow(3).sum().backward()
            torch.optim.SGD(vlad.parameters(), lr=1.0).step()
        assert torch.equal(vlad.centres, before) != learned


def test_ranking_loss_by_hand():
    codes = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])  # Hamming: d01 = 1, d02 = 2, d12 = 1
    relevance = torch.tensor([[0, 2, 1], [2, 0, 0], [1, 0, 0]])
    # query 0: (i=1, j=2): max(0, (1 - 2) / 2 + 0.75) = 0.25, weight (2^2 - 2^1) / (3 / log2(2) + 1 / log2(3))
    # query 1: (i=0, j=2): (1 - 1) / 2 + 0.75 = 0.75, weight (2^2 - 2^0) / (3 / log2(2)) = 1
    # query 2: (i=0, j=1): (2 - 1) / 2 + 0.75 = 1.25, weight (2^1 - 2^0) / (1 / log2(2)) = 1
    expected = (2 / (3 + 1 / math.log2(3)) * 0.25 + 0.75 + 1.25) / 3
    assert float(ranking_loss(codes, relevance, margin=0.75)) == pytest.approx(expected)


def test_exchnet_binary_step_lowers_its_objective():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 40)
    onehot = np.eye(3)[labels]
    outputs = np.tanh(rng.standard_normal((40, 8)))
    similarity = np.where(labels[:, None] == labels[None, :], 1.0, -1.0)

    def objective(codes: np.ndarray) -> float:
        return float(((outputs @ codes.T - 8 * similarity) ** 2).sum() + 1.0 * 40 * 8 * ((codes - outputs) ** 2).sum())

    codes = rng.choice([-1.0, 1.0], (40, 8))
    updated = binary_step(codes, outputs, onehot, gamma=1.0)
    assert set(np.unique(updated)) <= {-1.0, 1.0}
    assert objective(updated) < objective(codes)


@pytest.fixture(scope="module")
def lsh_digits(digits, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("lsh-digits")
    return train_and_evaluate("lsh", "lsh", [], digits / "train", digits / "db", digits / "queries", "folders", tmp)[1]


@pytest.mark.parametrize("method, extra, gain", [
    ("ath", ["--epochs", "15"], 0.1),
    ("rvssdh", ["--epochs", "15"], 0.1),
    ("rvssdh", ["--epochs", "15", "--param", "centres=learned"], 0.1),
    ("exchnet", ["--epochs", "15"], 0.05),  # ADSH's gamma = 200 learns more slowly on 300 images
])
def test_supervised_method_learns_from_class_folders(method, extra, gain, digits, lsh_digits, tmp_path):
    summary, metrics = train_and_evaluate(method, method, ["--labels", "folders", *FROZEN, *extra],
                                          digits / "train", digits / "db", digits / "queries", "folders", tmp_path)
    losses = summary["epoch_losses"]
    assert summary["classes"] == 10 and len(losses) == 15 and len(summary["epoch_seconds"]) == 15
    assert losses[-1] < 0.7 * losses[0], losses
    assert metrics["mAP"] > lsh_digits["mAP"] + gain, (metrics["mAP"], lsh_digits["mAP"])


def test_dsrh_learns_graded_relevance_from_multi_label_csv(digits, tmp_path):
    mosaics = digits / "mosaics"
    labels = str(mosaics / "labels.csv")
    args = (mosaics / "train", mosaics / "db", mosaics / "queries", labels, tmp_path)
    _, lsh = train_and_evaluate("lsh", "lsh", [], *args)
    summary, dsrh = train_and_evaluate("dsrh", "dsrh", ["--labels", labels, *FROZEN, "--epochs", "30"], *args)
    assert summary["epoch_losses"][-1] < 0.8 * summary["epoch_losses"][0], summary["epoch_losses"]
    assert dsrh["NDCG@10"] > lsh["NDCG@10"] + 0.02, (dsrh["NDCG@10"], lsh["NDCG@10"])
    assert dsrh["ACG@10"] > lsh["ACG@10"] and dsrh["wmAP"] > lsh["wmAP"]


def test_supervised_method_trains_end_to_end_on_images(scene_set, tmp_path):
    """Backbone fine-tuned (not frozen): maps computed live, encoding through the whole network."""
    summary, metrics = train_and_evaluate(
        "ath-e2e", "ath", ["--labels", str(scene_set / "truth.csv"), "--epochs", "2", "--batch-size", "12",
                          "--param", "fc=64"],
        scene_set / "photos", scene_set / "photos", scene_set / "photos", str(scene_set / "truth.csv"), tmp_path)
    assert summary["images"] == 24 and summary["classes"] == 3
    assert metrics["evaluated_queries"] == 24 and metrics["mAP"] > 0.5


@pytest.mark.parametrize("args, message", [
    (["--method", "ath"], "method ath is supervised: give --labels"),
    (["--method", "lsh", "--labels", "folders"], "method lsh does not use labels"),
    (["--method", "ath", "--labels", "folders", "--hidden", "64"], "--hidden must be 0"),
    (["--method", "ath", "--labels", "MOSAIC_CSV"], "ath takes exactly one label per image"),
    (["--method", "ath", "--labels", "PARTIAL_CSV"], "gives no label for 1 training images, e.g. "),
    (["--method", "ath", "--labels", "BAD_CSV"], "bad.csv:3: expected 'path,label'"),
])
def test_label_errors_are_one_line(args, message, digits, tmp_path):
    train = digits / "mosaics" / "train"
    rows = [f"train/{p.name},x{int(p.stem) % 2}" for p in sorted(train.glob("*.png"))]
    (digits / "mosaics" / "partial.csv").write_text("\n".join(rows[:-1]) + "\n")
    (digits / "mosaics" / "bad.csv").write_text("\n".join(rows[:2] + ["train/00002.png,"]) + "\n")
    replace = {"MOSAIC_CSV": "labels.csv", "PARTIAL_CSV": "partial.csv", "BAD_CSV": "bad.csv"}
    args = [str(digits / "mosaics" / replace[a]) if a in replace else a for a in args]
    result = run_cli("train", "--images", train, "-o", tmp_path / "m.pt", *COMMON, *FROZEN, *args)
    assert_one_line_error(result, message)
    assert not (tmp_path / "m.pt").exists()
