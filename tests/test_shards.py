"""Encoding in shards, merging them, and searching several stores as one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from hashkit.hashing.storage.store import read_store

from .helpers import assert_one_line_error, run_cli, trained_model


@pytest.fixture(scope="module")
def lsh_models(tmp_path_factory, scene_set):
    """Two LSH models (seeds 0 and 1: different projections) at 64 px."""
    root = tmp_path_factory.mktemp("shard-models")
    return [trained_model(scene_set / "photos", root / f"lsh{seed}.pt", "lsh", 64, "--seed", str(seed))
            for seed in (0, 1)]


def codes_by_path(store) -> dict[str, bytes]:
    contents = read_store(store)
    return dict(zip(contents.paths, map(bytes, contents.codes)))


def results(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        return f["distances"][:], f["ids"][:], f["paths"][:]


def test_shards_merge_to_the_whole_store_and_query_as_one(tmp_path, scene_set, lsh_models):
    model, photos = lsh_models[0], scene_set / "photos"
    assert run_cli("encode", model, photos, "-o", tmp_path / "whole.h5", "--workers", "0").exit_code == 0
    shards = [tmp_path / f"shard{i}.h5" for i in range(3)]
    for i, shard in enumerate(shards):
        result = run_cli("encode", model, photos, "-o", shard, "--workers", "0", "--shard", f"{i}/3")
        assert result.exit_code == 0, result.output
    parts = [codes_by_path(shard) for shard in shards]
    assert all(parts) and sum(map(len, parts)) == 24, "every photo in exactly one shard"
    whole = codes_by_path(tmp_path / "whole.h5")
    assert {path: code for part in parts for path, code in part.items()} == whole

    merged = tmp_path / "merged.h5"
    result = run_cli("merge", *shards, shards[0], "-o", merged)  # a shard given twice: its paths kept once
    assert result.exit_code == 0, result.output
    assert "24 codes" in result.stdout and f"{len(parts[0])} repeated paths left out" in result.stdout
    assert codes_by_path(merged) == whole and len(read_store(merged).paths) == 24

    on_merged, on_shards = tmp_path / "merged-results.h5", tmp_path / "shard-results.h5"
    for output, db in ((on_merged, [merged]), (on_shards, shards)):
        args = [arg for store in db for arg in ("--db", store)]
        result = run_cli("query", *args, "--queries", tmp_path / "whole.h5", "-o", output, "-k", "5",
                         "--ground-truth", "folders", "--metrics", output.with_suffix(".json"))
        assert result.exit_code == 0, result.output
    for got, want in zip(results(on_shards), results(on_merged)):
        assert np.array_equal(got, want)
    metrics = [json.loads(output.with_suffix(".json").read_text()) for output in (on_shards, on_merged)]
    assert metrics[0]["mAP"] == metrics[1]["mAP"] and metrics[0]["database_store"] == [str(s) for s in shards]


def test_merge_rerun_after_a_killed_one_starts_afresh(tmp_path, scene_set, lsh_models):
    store = tmp_path / "codes.h5"
    assert run_cli("encode", lsh_models[0], scene_set / "photos", "-o", store, "--workers", "0").exit_code == 0
    merged = tmp_path / "merged.h5"
    (tmp_path / "merged.h5.tmp").write_bytes(store.read_bytes())  # as a merge killed after copying it leaves it
    assert run_cli("merge", store, "-o", merged).exit_code == 0
    assert codes_by_path(merged) == codes_by_path(store) and len(read_store(merged).paths) == 24


def test_stores_of_different_models_are_not_combined(tmp_path, scene_set, lsh_models):
    stores = [tmp_path / f"codes{i}.h5" for i in range(2)]
    for model, store in zip(lsh_models, stores):
        assert run_cli("encode", model, scene_set / "photos", "-o", store, "--workers", "0").exit_code == 0
    assert_one_line_error(run_cli("merge", *stores, "-o", tmp_path / "m.h5"), "different models")
    assert not (tmp_path / "m.h5").exists()
    assert_one_line_error(run_cli("query", "--db", stores[0], "--db", stores[1], "--queries", stores[0],
                                  "-o", tmp_path / "r.h5"), "different models")
    assert_one_line_error(run_cli("encode", lsh_models[0], scene_set / "photos", "-o", tmp_path / "s.h5",
                                  "--shard", "3/3"), "--shard expects i/n")


def test_each_torchrun_process_encodes_its_own_shard(tmp_path, scene_set, lsh_models):
    model, photos = lsh_models[0], scene_set / "photos"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                                "-m", "hashkit.cli.main", "encode", str(model), str(photos),
                                "-o", str(tmp_path / "codes.h5"), "--workers", "0"],
                               capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stderr
    shards = [tmp_path / f"codes-{rank:05d}-of-00002.h5" for rank in range(2)]
    assert run_cli("encode", model, photos, "-o", tmp_path / "whole.h5", "--workers", "0").exit_code == 0
    parts = [codes_by_path(shard) for shard in shards]
    assert all(parts) and {p: c for part in parts for p, c in part.items()} == codes_by_path(tmp_path / "whole.h5")
