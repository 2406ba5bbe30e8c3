"""Label-free methods through the CLI (images only), and the backbone feature cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hashkit.hashing.storage.store import read_store
from hashkit.hashing.training.features import FeatureCache

from .helpers import run_cli

COMMON = ["--bits", "16", "--image-size", "64", "--workers", "0", "--seed", "0"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


def train_encode_query(method: str, extra: list[str], scene_set: Path, cache_dir: Path, tmp: Path) -> dict:
    """Train ``method`` on the photos alone, encode them, query them against themselves; the metrics."""
    model = tmp / f"{method}.pt"
    result = run_cli("train", "--images", scene_set / "photos", "-o", model, "--method", method, *COMMON,
                     "--feature-cache", cache_dir, *extra, "--json")
    assert result.exit_code == 0, result.output
    store = tmp / f"{method}.h5"
    assert run_cli("encode", model, scene_set / "photos", "-o", store, "--workers", "0",
                   "--feature-cache", cache_dir).exit_code == 0
    metrics = tmp / f"{method}.json"
    result = run_cli("query", "--db", store, "--queries", store, "-k", "5", "-o", tmp / f"{method}-r.h5",
                     "--ground-truth", scene_set / "truth.csv", "--metrics", metrics)
    assert result.exit_code == 0, result.output
    return json.loads(metrics.read_text())


@pytest.mark.parametrize("method, extra", [
    ("itq", []),
    ("dsah", ["--freeze-backbone", "--hidden", "64", "--epochs", "8", "--batch-size", "24",
              "--param", "neighbours=5", "--param", "pic=batch"]),
    ("bcdh", ["--freeze-backbone", "--hidden", "64", "--epochs", "4", "--param", "neighbours=3"]),
])
def test_label_free_methods_train_from_images(method, extra, scene_set, cache_dir, tmp_path):
    metrics = train_encode_query(method, extra, scene_set, cache_dir, tmp_path)
    assert metrics["method"] == method and metrics["evaluated_queries"] == 24
    assert metrics["mAP"] > 0.5, "well above chance (1/3) on three scenes"


def test_frozen_model_encodes_the_same_with_and_without_the_cache(scene_set, cache_dir, tmp_path):
    model = tmp_path / "dsah.pt"
    result = run_cli("train", "--images", scene_set / "photos", "-o", model, "--method", "dsah", *COMMON,
                     "--freeze-backbone", "--epochs", "2", "--param", "neighbours=5", "--feature-cache", cache_dir)
    assert result.exit_code == 0, result.output
    cached, fresh = tmp_path / "cached.h5", tmp_path / "fresh.h5"
    assert run_cli("encode", model, scene_set / "photos", "-o", cached, "--workers", "0",
                   "--feature-cache", cache_dir).exit_code == 0
    assert run_cli("encode", model, scene_set / "photos", "-o", fresh, "--workers", "0",
                   "--no-feature-cache").exit_code == 0
    a, b = read_store(cached), read_store(fresh)
    assert a.paths == b.paths and np.array_equal(a.codes, b.codes)


def test_feature_cache_computes_each_image_once_and_again_when_it_changes(tmp_path):
    images = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        path.write_bytes(b"x" * (i + 1))
        images.append(path)
    computed: list[Path] = []

    def compute(paths):
        computed.extend(paths)
        features = np.array([[float(p.stat().st_size), float(p.stat().st_mtime_ns % 1000)] for p in paths])
        return features.astype(np.float32), np.array([p.name != "3.png" for p in paths])

    cache = FeatureCache(tmp_path / "cache", "resnet18", "ab" * 32, 64)
    first, ok = cache.features(images, compute)
    assert len(computed) == 5 and ok.tolist() == [True, True, True, False, True]
    assert first[:, 0].tolist() == [1, 2, 3, 0, 5]
    computed.clear()
    again, ok_again = cache.features(images[::-1], compute)
    assert computed == [images[3]], "only the undecodable image is tried again"
    assert np.array_equal(again[::-1][ok], first[ok]) and np.array_equal(ok_again[::-1], ok)
    images[1].write_bytes(b"changed!")
    os.utime(images[1], ns=(1, 10**9))
    computed.clear()
    changed, _ = cache.features(images, compute)
    assert images[1] in computed and changed[1, 0] == 8


def _noted_features(computed: list[Path]):
    def compute(paths):
        computed.extend(paths)
        return np.array([[float(len(p.name)), 1.0] for p in paths], np.float32), np.ones(len(paths), bool)
    return compute


@pytest.mark.parametrize("damage", ["truncated", "older", "uncommitted"])
def test_an_unreadable_or_older_cache_file_is_replaced_and_uncommitted_rows_ignored(tmp_path, capfd, damage):
    import h5py

    images = [tmp_path / f"{i}.png" for i in range(3)]
    for image in images:
        image.write_bytes(b"x")
    computed: list[Path] = []
    cache = FeatureCache(tmp_path / "cache", "resnet18", "ab" * 32, 64)
    cache.features(images[:2], _noted_features(computed))
    if damage == "truncated":  # as a disk that filled, or a copy cut short, leaves it
        cache.path.write_bytes(cache.path.read_bytes()[:1000])
    elif damage == "older":
        with h5py.File(cache.path, "r+") as f:
            f.attrs["schema_version"] = 1
    else:  # a run killed after writing a row, before committing it
        with h5py.File(cache.path, "r+") as f:
            f.attrs["count"] = 1
    computed.clear()
    features, ok = FeatureCache(tmp_path / "cache", "resnet18", "ab" * 32, 64).features(images,
                                                                                      _noted_features(computed))
    assert ok.all() and features[:, 1].tolist() == [1.0, 1.0, 1.0]
    again = {"truncated": images, "older": images, "uncommitted": images[1:]}[damage]
    assert computed == again, "committed rows are read, everything else computed again"
    warning = capfd.readouterr().err
    assert ("moved to" in warning and (tmp_path / "cache" / (cache.path.name + ".damaged")).exists()) \
        if damage == "truncated" else ("older hashkit" in warning) if damage == "older" else warning == ""
    computed.clear()
    FeatureCache(tmp_path / "cache", "resnet18", "ab" * 32, 64).features(images, _noted_features(computed))
    assert computed == [], "the rebuilt cache holds them all"
