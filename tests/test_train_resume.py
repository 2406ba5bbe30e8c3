"""Training survives SIGKILL: ``--resume`` continues from the last finished epoch and ends with
exactly the model an uninterrupted run makes."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from .helpers import HASHKIT, alive, descendants, noise_photos, run_cli

EPOCHS = 5


def train_args(kind: str, work_dir: Path, digits: Path) -> list[str]:
    common = ["--bits", "16", "--epochs", str(EPOCHS), "--seed", "3"]
    if kind == "bcdh-frozen":  # auxiliary codes, hard negatives and their generator carry over
        return ["--pairs", str(work_dir / "pairs.h5"), "--method", "bcdh", "--freeze-backbone", "--image-size", "64",
                "--batch-size", "8", *common]
    if kind == "exchnet-frozen":  # binary codes, class anchors and the exchange generator carry over
        return ["--images", str(digits / "train"), "--labels", "folders", "--method", "exchnet", "--freeze-backbone",
                "--image-size", "64", "--batch-size", "32", *common]
    # end to end: the augmentation draws of the workers carry over through the loader's generator
    return ["--images", str(digits / "queries"), "--method", "greedyhash", "--image-size", "32", "--batch-size", "16",
            "--workers", "1", *common]


def same_weights(a: Path, b: Path) -> bool:
    first, second = (torch.load(p, weights_only=True)["state_dict"] for p in (a, b))
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, work_dir, digits) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("uninterrupted")
    models = {}
    for kind in ("bcdh-frozen", "exchnet-frozen", "end-to-end"):
        models[kind] = root / f"{kind}.pt"
        result = run_cli("train", "-o", models[kind], *train_args(kind, work_dir, digits),
                         "--feature-cache", root / "cache")
        assert result.exit_code == 0, result.output
    return models


def run_until_killed(command: list[str], checkpoint: Path, delay: float) -> int | None:
    """Run ``command``, SIGKILL it ``delay`` seconds after it writes a checkpoint; the epoch of the
    checkpoint left behind, or None when the run finished first."""
    last = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while process.poll() is None and (not checkpoint.exists() or checkpoint.stat().st_mtime_ns == last):
        time.sleep(0.005)
    time.sleep(delay)
    children = descendants(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(children), "worker processes outlived the killed training"
    return torch.load(checkpoint, weights_only=True)["epoch"] if checkpoint.exists() else None


@pytest.mark.parametrize("kind", ["bcdh-frozen", "exchnet-frozen", "end-to-end"])
def test_training_killed_again_and_again_ends_with_the_uninterrupted_model(tmp_path, work_dir, digits,
                                                                          uninterrupted, kind):
    model, checkpoint = tmp_path / "model.pt", tmp_path / "model.pt.checkpoint"
    args = [*train_args(kind, work_dir, digits), "--feature-cache", str(uninterrupted[kind].parent / "cache")]
    rng = np.random.default_rng(len(kind))
    epochs_seen = []
    while not model.exists() and len(epochs_seen) < EPOCHS:
        resume = ["--resume"] if epochs_seen else []
        epochs_seen.append(run_until_killed([*HASHKIT, "train", "-o", str(model), *args, *resume], checkpoint,
                                            float(rng.uniform(0, 0.03))))
        if len(epochs_seen) == 1 and not model.exists():
            refused = run_cli("train", "-o", model, *args)
            assert refused.exit_code == 1 and "--resume continues it" in refused.stderr
    kills = [epoch for epoch in epochs_seen if epoch is not None]
    assert len(kills) >= 3, f"killed after epochs {epochs_seen}: the runs should be killed mid-way"
    assert kills == sorted(kills), "every resumed run continues from where the last one stopped"
    if not model.exists():
        resumed = run_cli("train", "-o", model, *args, "--resume", "--json")
        assert resumed.exit_code == 0, resumed.output
        assert f'"resumed_from_epoch": {kills[-1]}' in resumed.stdout
    assert not checkpoint.exists(), "the checkpoint goes once the model is written"
    assert same_weights(model, uninterrupted[kind])


def test_a_checkpoint_is_not_resumed_with_other_options(tmp_path, work_dir, digits, uninterrupted):
    model = tmp_path / "model.pt"
    args = train_args("bcdh-frozen", work_dir, digits)
    process = subprocess.Popen([*HASHKIT, "train", "-o", str(model), *args, "--feature-cache",
                                str(uninterrupted["bcdh-frozen"].parent / "cache")], stderr=subprocess.PIPE)
    while process.poll() is None and not (tmp_path / "model.pt.checkpoint").exists():
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    other = [a if a != "3" else "4" for a in args]  # another seed
    result = run_cli("train", "-o", model, *other, "--resume")
    assert result.exit_code == 1 and "made with other options" in result.stderr


@pytest.mark.parametrize("method, extra", [("bcdh", ["--train-backbone"]), ("dsah", ["--freeze-backbone"])])
def test_the_same_seed_gives_the_same_model_with_a_cold_or_a_warm_feature_cache(tmp_path, method, extra):
    """The first run computes and caches the features, the second reads them: same weights. (BCDH
    from images mines its pairs from the features even when it trains the backbone.)"""
    photos = noise_photos(tmp_path / "photos", 40, 40, ".png")
    models = [tmp_path / f"{run}.pt" for run in ("cold", "warm")]
    for model in models:
        result = run_cli("train", "--images", photos, "-o", model, "--method", method, "--bits", "16",
                         "--image-size", "32", "--epochs", "2", "--batch-size", "8", "--workers", "0",
                         "--feature-cache", tmp_path / "cache", *extra)
        assert result.exit_code == 0, result.output
    cold, warm = (torch.load(model, weights_only=True)["state_dict"] for model in models)
    assert all(torch.equal(cold[key], warm[key]) for key in cold)
