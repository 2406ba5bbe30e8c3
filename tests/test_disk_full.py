"""A disk that fills up: every writing command stops with one ``error: no space left`` line, every
file committed before the run reads back identical, and a rerun once there is room continues.

The disk is filled by the file size limit (``ulimit -f``, ``RLIMIT_FSIZE``) of the command's
process, which needs no privileges: a write past it fails as a write to a full disk does. Where the
test may mount a small tmpfs, a real full file system is tested too."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hashkit.hashing.storage.store import read_store
from hashkit.hashing.user_cache import traced_networks_dir

from .helpers import noise_photos, run_cli, trained_model

HASHKIT = [sys.executable, "-m", "hashkit.cli.main"]
KIB = 1 << 10
LONG = "x" * 180  # long photo names: the store's path bytes fill a chunk after about 1,300 rows


def hashkit_limited(limit: int | None, *args) -> subprocess.CompletedProcess:
    """The CLI in a process whose files may not grow past ``limit`` bytes (None: no limit)."""
    def limit_files() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run(HASHKIT + [str(a) for a in args], capture_output=True, text=True, preexec_fn=limit_files)


def assert_no_space(result: subprocess.CompletedProcess, kept: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert lines[-1].startswith("error: no space left") and kept in lines[-1], result.stderr
    assert all(line.startswith(("error: ", "warning: ")) for line in lines), result.stderr
    assert "Traceback" not in result.stderr


def store_rows(path: Path) -> tuple[np.ndarray, list[str]]:
    contents = read_store(path)
    return contents.codes, contents.paths


@pytest.fixture(scope="module")
def setting(tmp_path_factory) -> dict[str, Path]:
    """An LSH model (16 bits, 32 px), 300 photos in a store, 1,500 more to append, and the store an
    uninterrupted run makes of all of them."""
    root = tmp_path_factory.mktemp("disk-full")
    first = noise_photos(root / "first", 300, 8, f"{LONG}.png")
    more = noise_photos(root / "more", 1500, 8, f"{LONG}.png")
    model = trained_model(first, root / "lsh.pt", "lsh", 32)
    for name, inputs in (("before.h5", [first]), ("whole.h5", [first, more])):
        result = run_cli("encode", model, *inputs, "-o", root / name, "--no-feature-cache")
        assert result.exit_code == 0, result.output
    return {"root": root, "first": first, "more": more, "model": model}


@pytest.mark.parametrize("extra", [100 * KIB, 300 * KIB], ids=["first commit", "a later commit"])
def test_an_append_that_fills_the_disk_keeps_every_committed_row_and_a_rerun_continues(tmp_path, setting, extra):
    store = tmp_path / "codes.h5"
    shutil.copy(setting["root"] / "before.h5", store)
    before_codes, before_paths = store_rows(store)
    result = hashkit_limited(store.stat().st_size + extra, "encode", setting["model"], setting["more"],
                             "-o", store, "--no-feature-cache")
    assert_no_space(result, "committed rows are kept")
    codes, paths = store_rows(store)
    assert len(paths) >= len(before_paths)
    assert np.array_equal(codes[:len(before_codes)], before_codes) and paths[:len(before_paths)] == before_paths

    rerun = hashkit_limited(None, "encode", setting["model"], setting["more"], "-o", store, "--no-feature-cache")
    assert rerun.returncode == 0, rerun.stderr
    whole_codes, whole_paths = store_rows(setting["root"] / "whole.h5")
    codes, paths = store_rows(store)
    assert paths == whole_paths and np.array_equal(codes, whole_codes)


def test_a_new_store_on_a_full_disk_is_not_created(tmp_path, setting):
    result = hashkit_limited(64 * KIB, "encode", setting["model"], setting["first"], "-o", tmp_path / "new.h5",
                             "--no-feature-cache")
    assert_no_space(result, "no store was created")
    assert not list(tmp_path.iterdir())


def test_caches_without_room_are_left_readable_and_the_codes_are_right(tmp_path, setting):
    """The first commit of pooled features takes a 5 MiB chunk, the model's traced copy 9 MiB:
    under a 2 MiB limit neither cache gets anything, the run warns once and encodes from features
    in memory with the network built from the model file."""
    cache = tmp_path / "cache"
    copies = traced_networks_dir().glob(f"{read_store(setting['root'] / 'before.h5').meta.model_digest}-*.pt")
    for copy in copies:  # made by the fixture's encode
        copy.unlink()
    result = hashkit_limited(2 << 20, "encode", setting["model"], setting["first"], "-o", tmp_path / "codes.h5",
                             "--feature-cache", cache)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning: no space left") == 1 and "Traceback" not in result.stderr
    assert store_rows(tmp_path / "codes.h5")[1] == store_rows(setting["root"] / "before.h5")[1]
    assert np.array_equal(store_rows(tmp_path / "codes.h5")[0], store_rows(setting["root"] / "before.h5")[0])
    for cache_file in cache.glob("*.h5"):
        with h5py.File(cache_file, "r") as f:
            assert int(f.attrs["count"]) == 0
    assert not list(traced_networks_dir().glob(f"{read_store(tmp_path / 'codes.h5').meta.model_digest}-*"))

    rerun = hashkit_limited(None, "encode", setting["model"], setting["first"], "-o", tmp_path / "again.h5",
                            "--feature-cache", cache)
    assert rerun.returncode == 0 and "warning" not in rerun.stderr, rerun.stderr
    (cache_file,) = cache.glob("*.h5")
    with h5py.File(cache_file, "r") as f:
        assert int(f.attrs["count"]) == 300


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


@pytest.mark.parametrize("command", ["train", "merge", "query", "index-build"])
def test_outputs_written_whole_are_left_as_they_were(tmp_path, setting, command):
    """Each command's outputs already exist (an earlier run); the rerun with --overwrite on a full
    disk leaves every file as it was and no temporary file behind, and runs once there is room."""
    store = tmp_path / "codes.h5"
    shutil.copy(setting["root"] / "before.h5", store)
    args = {
        "train": ["train", "--images", setting["first"], "-o", tmp_path / "model.pt", "--method", "lsh",
                  "--bits", "16", "--image-size", "32", "--seed", "1", "--overwrite"],
        "merge": ["merge", store, setting["root"] / "whole.h5", "-o", tmp_path / "merged.h5", "--overwrite"],
        "query": ["query", "--db", store, "--queries", store, "-o", tmp_path / "results.h5", "-k", "50",
                  "--ground-truth", setting["root"] / "labels.csv", "--overwrite"],
        "index-build": ["index-build", "--db", store, "--index", "hnsw"],
    }[command]
    if command == "query":
        (setting["root"] / "labels.csv").write_text("path,label\n" + "".join(
            f"{path},{i % 3}\n" for i, path in enumerate(store_rows(store)[1])))
    if command == "train":
        shutil.copy(setting["model"], tmp_path / "model.pt")
    else:
        first = hashkit_limited(None, *[a for a in args if a != "--overwrite"])
        assert first.returncode == 0, first.stderr
    earlier = file_bytes(tmp_path)
    limit = 4 * KIB if command == "index-build" else 96 * KIB  # an index of 300 codes takes about 30 KiB
    assert_no_space(hashkit_limited(limit, *args), "is left as it was")
    assert file_bytes(tmp_path) == earlier
    rerun = hashkit_limited(None, *args)
    assert rerun.returncode == 0, rerun.stderr


def test_reconstruct_on_a_full_disk_stops_before_colmap_and_a_rerun_finishes(tmp_path, scene_set, work_dir):
    work = tmp_path / "work"
    assert_no_space(hashkit_limited(1 << 20, "reconstruct", scene_set / "photos", "-o", work),
                    "rerun the same command")
    rerun = hashkit_limited(None, "reconstruct", scene_set / "photos", "-o", work)
    assert rerun.returncode == 0, rerun.stderr
    with h5py.File(work / "pairs.h5") as mine, h5py.File(work_dir / "pairs.h5") as reference:
        for name in ("positives", "negatives", "group"):
            assert np.array_equal(mine[name][:], reference[name][:])


@pytest.fixture
def small_file_system(tmp_path) -> Path:
    """A 3 MiB tmpfs mounted for the test, where this process may mount one."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here; the file size limit stands in for a full disk")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_an_append_to_a_store_on_a_full_file_system(small_file_system, setting):
    store = small_file_system / "codes.h5"
    shutil.copy(setting["root"] / "before.h5", store)
    before_codes, before_paths = store_rows(store)
    (small_file_system / "filler").write_bytes(bytes(os.statvfs(store).f_bavail * os.statvfs(store).f_frsize
                                                     - 200 * KIB))
    result = hashkit_limited(None, "encode", setting["model"], setting["more"], "-o", store, "--no-feature-cache")
    assert_no_space(result, "committed rows are kept")
    codes, paths = store_rows(store)
    assert np.array_equal(codes[:len(before_codes)], before_codes) and paths[:len(before_paths)] == before_paths
    (small_file_system / "filler").unlink()
    rerun = hashkit_limited(None, "encode", setting["model"], setting["more"], "-o", store, "--no-feature-cache")
    assert rerun.returncode == 0, rerun.stderr
    assert store_rows(store)[1] == store_rows(setting["root"] / "whole.h5")[1]
