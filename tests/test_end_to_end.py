"""The four commands on a small rendered set, with real pycolmap, torch, HDF5 and FAISS."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from hashkit.hashing.files.pairs_file import read_pairs
from hashkit.hashing.storage.store import read_store

from .helpers import run_cli

TRAIN_ARGS = ["--bits", "32", "--image-size", "64", "--batch-size", "32", "--workers", "0", "--seed", "0"]


@pytest.fixture(scope="module")
def bcdh_model(work_dir, tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "bcdh.pt"
    result = run_cli("train", "--pairs", work_dir / "pairs.h5", "-o", model, "--method", "bcdh", "--train-backbone",
                     "--epochs", "2", *TRAIN_ARGS, "--json")
    assert result.exit_code == 0, result.output
    return model, json.loads(result.stdout)


def test_colmap_finds_one_model_per_scene(work_dir, truth):
    pairs = read_pairs(work_dir / "pairs.h5")
    scenes = np.array([truth[str(p.resolve())] for p in pairs.absolute_paths()])
    assert len(pairs.images) == 24 and pairs.unreadable == []
    assert int(pairs.model_id.max()) + 1 == 3
    for model in range(3):  # every model holds the views of exactly one scene
        assert len(set(scenes[pairs.model_id == model])) == 1
    assert (pairs.model_id >= 0).sum() >= 21, "nearly every view registers"


def test_mined_positives_never_join_two_scenes(work_dir, truth):
    pairs = read_pairs(work_dir / "pairs.h5")
    scenes = np.array([truth[str(p.resolve())] for p in pairs.absolute_paths()])
    assert len(pairs.positives) >= 30
    assert np.all(scenes[pairs.positives[:, 0]] == scenes[pairs.positives[:, 1]])
    assert np.all(pairs.shared_points >= pairs.settings["min_shared_points"])
    assert len(pairs.negatives) > 0
    assert np.all(scenes[pairs.negatives[:, 0]] != scenes[pairs.negatives[:, 1]])


def test_rerun_resumes_without_redoing_colmap(work_dir, scene_set):
    database = work_dir / "sfm" / "database.db"
    before = database.stat().st_mtime_ns
    first = read_pairs(work_dir / "pairs.h5")
    result = run_cli("reconstruct", scene_set / "photos", "-o", work_dir)
    assert result.exit_code == 0, result.output
    assert database.stat().st_mtime_ns == before
    again = read_pairs(work_dir / "pairs.h5")
    assert np.array_equal(first.positives, again.positives) and np.array_equal(first.negatives, again.negatives)


def test_train_writes_a_safe_checkpoint(bcdh_model):
    import torch
    model, summary = bcdh_model
    losses = summary["epoch_losses"]
    assert len(losses) == 2 and np.all(np.isfinite(losses))
    payload = torch.load(model, weights_only=True)
    config = json.loads(payload["config"])
    assert config["method"] == "bcdh" and config["bits"] == 32 and config["backbone"] == "mobilenet_v2"
    assert config["image_size"] == 64 and len(config["mean"]) == 3 and config["hashkit_version"]


def test_bcdh_defaults_to_a_frozen_backbone_and_reports_its_training_codes(work_dir, tmp_path):
    import torch
    model = tmp_path / "default.pt"
    result = run_cli("train", "--pairs", work_dir / "pairs.h5", "-o", model, "--bits", "16", "--image-size", "64",
                     "--workers", "0", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    config = json.loads(torch.load(model, weights_only=True)["config"])
    assert config["frozen_backbone"] is True and config["backbone_output"] == "maps"  # GeM pools the maps
    store = tmp_path / "training.h5"
    photos = read_pairs(work_dir / "pairs.h5").photo_root
    assert run_cli("encode", model, photos, "-o", store, "--workers", "0").exit_code == 0
    contents = read_store(store)
    codes = contents.codes
    assert summary["collapse"]["images"] == 24
    assert summary["collapse"]["distinct_codes"] == len(np.unique(codes, axis=0)), "the codes encode makes"
    pairs = read_pairs(work_dir / "pairs.h5")
    row = {str(path): i for i, path in enumerate(contents.paths)}
    order = [row[str(pairs.photo_root / name)] for name in pairs.images]
    same_code = (codes[order][:, None] == codes[order][None, :]).all(axis=2)
    other_group = (pairs.group[:, None] != pairs.group[None, :]) & (pairs.group[:, None] >= 0) & (pairs.group >= 0)
    assert summary["collapse"]["cross_group_pairs"] == int(np.triu(same_code & other_group, 1).sum())
    bits = np.unpackbits(codes, axis=1)
    rows = {kind: np.array([[row[str(pairs.photo_root / pairs.images[i])] for i in pair] for pair in found])
            for kind, found in (("positives", pairs.positives), ("negatives", pairs.negatives))}
    hamming = {kind: (bits[r[:, 0]] != bits[r[:, 1]]).sum(axis=1).mean() for kind, r in rows.items()}
    assert hamming["positives"] < hamming["negatives"], "the codes keep the mined pairs apart"


def test_encode_query_and_metrics(bcdh_model, scene_set, tmp_path):
    model, _ = bcdh_model
    photos = sorted((scene_set / "photos").glob("*.jpg"))
    store = tmp_path / "codes.h5"
    listing = tmp_path / "first.txt"
    listing.write_text("\n".join(str(p) for p in photos[:10]))
    result = run_cli("encode", model, listing, "-o", store, "--workers", "0", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["encoded"] == 10
    result = run_cli("encode", model, scene_set / "photos", "-o", store, "--workers", "0", "--json")
    summary = json.loads(result.stdout)
    assert (summary["encoded"], summary["already_present"], summary["total"]) == (14, 10, 24)
    contents = read_store(store)
    assert contents.codes.shape == (24, 4) and len(set(contents.paths)) == 24

    results, metrics = tmp_path / "results.h5", tmp_path / "metrics.json"
    result = run_cli("query", "--db", store, "--queries", store, "-k", "5", "-o", results,
                     "--ground-truth", scene_set / "truth.csv", "--metrics", metrics)
    assert result.exit_code == 0, result.output
    with h5py.File(results) as f:
        ids, distances = f["ids"][:], f["distances"][:]
        assert ids.shape == distances.shape == (24, 5)
        assert [p.decode() for p in f["query_paths"][:]] == contents.paths
        assert np.all(ids != np.arange(24)[:, None]), "a query's own image is not its own result"
        assert np.all(np.diff(distances, axis=1) >= 0)
        assert f["paths"][0, 0].decode() == contents.paths[ids[0, 0]]
    values = json.loads(metrics.read_text())
    assert values["evaluated_queries"] == 24
    for key in ("mAP", "mAP@5", "precision@5", "recall@5"):
        assert 0.0 <= values[key] <= 1.0
    assert values["mAP"] > 1 / 3, "better than chance (3 balanced scenes)"
    assert "ties" in values["conventions"]["ranking"]

    refused = run_cli("query", "--db", store, "--queries", store, "-o", results)
    assert refused.exit_code == 1 and "exists" in refused.stderr


def test_lsh_baseline_and_store_mismatch(work_dir, scene_set, bcdh_model, tmp_path):
    lsh = tmp_path / "lsh.pt"
    result = run_cli("train", "--pairs", work_dir / "pairs.h5", "-o", lsh, "--method", "lsh", *TRAIN_ARGS)
    assert result.exit_code == 0, result.output
    store = tmp_path / "codes.h5"
    assert run_cli("encode", bcdh_model[0], scene_set / "photos", "-o", store, "--workers", "0").exit_code == 0
    before = read_store(store)
    refused = run_cli("encode", lsh, scene_set / "photos", "-o", store, "--workers", "0")
    assert refused.exit_code == 1 and "another model" in refused.stderr
    after = read_store(store)
    assert after.paths == before.paths and np.array_equal(after.codes, before.codes)


def test_unreadable_images_are_reported_not_encoded(bcdh_model, scene_set, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(scene_set / "photos", photos)
    (photos / "zz_corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    result = run_cli("encode", bcdh_model[0], photos, "-o", tmp_path / "codes.h5", "--workers", "0", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["encoded"] == 24 and summary["unreadable"] == [str((photos / "zz_corrupt.jpg").resolve())]


def test_sigkill_during_encode_then_resume_gives_identical_store(bcdh_model, scene_set, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    model, _ = bcdh_model
    photos = tmp_path / "photos"  # 5 copies of the set, so the encoder is still busy when killed
    for copy in range(5):
        shutil.copytree(scene_set / "photos", photos / str(copy))
    store = tmp_path / "codes.h5"
    command = [sys.executable, "-m", "hashkit.cli.main", "encode", str(model), str(photos),
               "-o", str(store), "--batch-size", "1", "--workers", "0"]
    writer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    committed = 0
    while committed < 3 and writer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        try:  # peek at the count without HDF5's file lock, which the writer holds
            with h5py.File(store, "r", locking=False) as f:
                committed = int(f.attrs["count"])
        except (OSError, KeyError):
            pass
    assert writer.poll() is None, "the encoder finished before it could be killed"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    partial = read_store(store)
    assert 3 <= len(partial.paths) < 120 and len(set(partial.paths)) == len(partial.paths)

    assert run_cli("encode", model, photos, "-o", store, "--workers", "0").exit_code == 0
    fresh = tmp_path / "fresh.h5"
    assert run_cli("encode", model, photos, "-o", fresh, "--workers", "0").exit_code == 0
    resumed, expected = read_store(store), read_store(fresh)
    assert dict(zip(resumed.paths, map(bytes, resumed.codes))) == dict(zip(expected.paths, map(bytes, expected.codes)))


def test_reconstruct_records_undecodable_photos_and_keeps_the_rest(scene_set, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(scene_set / "photos", photos)
    (photos / "broken.JPG").write_bytes(b"\xff\xd8\xff not an image")
    result = run_cli("reconstruct", photos, "-o", tmp_path / "work", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["unreadable"] == ["broken.JPG"] and summary["images"] == 25
    pairs = read_pairs(tmp_path / "work" / "pairs.h5")
    assert pairs.unreadable == ["broken.JPG"] and "broken.JPG" not in pairs.images
    assert int(pairs.model_id.max()) + 1 == 3
