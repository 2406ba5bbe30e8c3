"""Killed runs keep what they finished, and rerunning the same command continues from there."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from hashkit.hashing.storage.store import read_store

from .helpers import HASHKIT, noise_photos, run_cli, trained_model


def committed_rows(store: Path) -> int:
    """The store's committed row count as another process sees it now (0 while unreadable)."""
    try:
        with h5py.File(store, "r", locking=False) as f:
            return int(f.attrs["count"])
    except (OSError, KeyError):
        return 0


@pytest.fixture(scope="module")
def frozen_set(tmp_path_factory, scene_set) -> tuple[Path, Path]:
    """A frozen-backbone (LSH) model at 96 px and 1,600 small photos (four commits): an encode of a few seconds."""
    root = tmp_path_factory.mktemp("resume")
    return (trained_model(scene_set / "photos", root / "lsh.pt", "lsh", 96, "--no-feature-cache"),
            noise_photos(root / "photos", 1600, 32, ".png"))


@pytest.fixture(scope="module")
def deep_model(tmp_path_factory, scene_set) -> Path:
    """A model trained end to end (its encode runs the whole network on every image) at 32 px."""
    return trained_model(scene_set / "photos", tmp_path_factory.mktemp("deep") / "greedyhash.pt", "greedyhash", 32,
                         "--epochs", "1")


@pytest.mark.parametrize("kind", ["frozen", "deep"])
def test_encode_killed_at_random_moments_resumes_to_the_uninterrupted_store(tmp_path, frozen_set, deep_model, kind):
    from .helpers import alive, descendants

    model, store = (frozen_set[0] if kind == "frozen" else deep_model), tmp_path / "codes.h5"
    photos, total = frozen_set[1], 1600
    batch = 64 if kind == "frozen" else 4  # commits: every 512 images (4), every batch (400: slow enough to be
    # killed five times; a 32 px batch of 16 takes about 15 ms, so 100 of them could finish between two kills)
    command = [*HASHKIT, "encode", str(model), str(photos), "-o", str(store), "--workers", "2",
               "--batch-size", str(batch), "--feature-cache", str(tmp_path / "cache")]
    rng = np.random.default_rng(7)
    kills = 0
    while kills < 5:
        before = committed_rows(store)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while process.poll() is None and committed_rows(store) == before:
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0, 0.05)))
        workers = descendants(process.pid)
        process.send_signal(signal.SIGKILL)
        if process.wait() != -signal.SIGKILL:
            break  # it finished first
        kills += 1
        deadline = time.monotonic() + 10
        while alive(workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(workers), "workers outlived the killed encode"
        kept = read_store(store)  # opens, and holds each path once
        assert len(set(kept.paths)) == len(kept.paths) >= before
        if kills == 1:
            assert 0 < len(kept.paths) < total, "codes are committed in small steps, not all at the end"
    assert kills >= 3
    assert subprocess.run(command, capture_output=True).returncode == 0
    whole = tmp_path / "whole.h5"
    assert run_cli("encode", model, photos, "-o", whole, "--workers", "0", "--feature-cache",
                   tmp_path / "cache").exit_code == 0
    got, want = read_store(store), read_store(whole)
    assert dict(zip(got.paths, map(bytes, got.codes))) == dict(zip(want.paths, map(bytes, want.codes)))


def test_reconstruct_killed_while_matching_resumes_to_the_same_pairs(tmp_path, scene_set, work_dir):
    from hashkit.hashing.files.pairs_file import read_pairs

    from .helpers import alive, descendants

    work = tmp_path / "work"
    command = [*HASHKIT, "reconstruct", str(scene_set / "photos"), "-o", str(work)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while process.poll() is None and not (work / "sfm" / "extract.done").exists():
        time.sleep(0.005)
    time.sleep(0.1)  # matching has begun
    children = descendants(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if (work / "sfm" / "match.done").exists():
        pytest.skip("matching finished before the kill")
    time.sleep(0.5)
    assert not alive(children)
    assert not (work / "pairs.h5").exists()
    result = run_cli("reconstruct", scene_set / "photos", "-o", work)
    assert result.exit_code == 0, result.output
    resumed, uninterrupted = read_pairs(work / "pairs.h5"), read_pairs(work_dir / "pairs.h5")
    assert resumed.images == uninterrupted.images
    assert np.array_equal(resumed.model_id, uninterrupted.model_id)
    assert np.array_equal(resumed.positives, uninterrupted.positives)
    assert np.array_equal(resumed.negatives, uninterrupted.negatives)
