"""The bad-input corpus (tests/bad_inputs.py) through every step: odd but valid images are used,
broken ones are reported by the path given, and no step fails or prints a traceback."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import pytest

from hashkit.hashing.files.pairs_file import read_pairs
from hashkit.hashing.storage.store import read_store

from .bad_inputs import make_corpus
from .helpers import run_cli


@pytest.fixture(scope="module")
def photos(tmp_path_factory, scene_set) -> tuple[Path, dict[str, bool]]:
    """The rendered scenes with the corpus in a sub-folder; which corpus files must be readable."""
    root = tmp_path_factory.mktemp("bad-inputs") / "photos"
    shutil.copytree(scene_set / "photos", root)
    return root, make_corpus(root / "corpus")


def unreadable_names(paths: list[str]) -> set[str]:
    return {Path(path).name for path in paths}


def clean(result) -> None:
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "libpng" not in result.stderr


def test_reconstruct_uses_the_valid_photos_and_lists_the_broken(tmp_path, photos):
    folder, expected = photos
    result = run_cli("reconstruct", folder, "-o", tmp_path / "work", "--json")
    clean(result)
    summary = json.loads(result.stdout)
    assert unreadable_names(summary["unreadable"]) == {name for name, ok in expected.items() if not ok}
    assert len(summary["model_sizes"]) == 3, "the three scenes are still found"


def test_train_encode_and_query_use_the_valid_images_and_list_the_broken(tmp_path, photos):
    folder, expected = photos
    broken = {name for name, ok in expected.items() if not ok}
    io_error = tmp_path / "list.txt"
    io_error.write_text("/proc/self/mem\n")  # reading it fails with an I/O error
    common = ["--bits", "16", "--image-size", "32", "--workers", "0"]
    models = {"lsh": tmp_path / "lsh.pt", "greedyhash": tmp_path / "greedyhash.pt"}
    trained = run_cli("train", "--images", folder / "corpus", "-o", models["lsh"], "--method", "lsh", *common,
                      "--json")
    clean(trained)
    assert unreadable_names(json.loads(trained.stdout)["unreadable"]) == broken
    clean(run_cli("train", "--images", folder, "-o", models["greedyhash"], "--method", "greedyhash",
                  "--freeze-backbone", "--epochs", "1", *common))
    for name, model in models.items():
        store = tmp_path / f"{name}.h5"
        encoded = run_cli("encode", model, folder / "corpus", io_error, "-o", store, "--workers", "0", "--json")
        clean(encoded)
        summary = json.loads(encoded.stdout)
        assert unreadable_names(summary["unreadable"]) == broken | {"mem"}
        assert "/proc/self/mem" in summary["unreadable"], "named as given, not as /proc/PID/mem"
        assert summary["encoded"] == sum(expected.values())
        clean(run_cli("query", "--db", store, "--queries", store, "-o", tmp_path / f"{name}-results.h5", "-k", "3"))


def test_photos_whose_names_are_not_utf8_go_through_every_command(tmp_path, scene_set):
    """Names in Latin-1 (an old camera's, a Windows zip's): Python reads their undecodable bytes as
    surrogates; the pairs file, the store and the results keep the exact bytes (docs/formats.md)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, photo in enumerate(sorted((scene_set / "photos").iterdir())):
        name = photo.name.encode() if i % 2 else b"caf\xe9-" + photo.name.encode()  # not valid UTF-8
        shutil.copy(photo, os.path.join(os.fsencode(folder), name))
    work, model, store = tmp_path / "work", tmp_path / "model.pt", tmp_path / "codes.h5"
    clean(run_cli("reconstruct", folder, "-o", work))
    assert sorted(read_pairs(work / "pairs.h5").images) == sorted(os.listdir(folder))
    clean(run_cli("train", "--pairs", work / "pairs.h5", "-o", model, "--bits", "16", "--epochs", "1"))
    clean(run_cli("encode", model, folder, "-o", store))
    clean(run_cli("encode", model, folder, "-o", store))  # a rerun finds every name already stored
    assert sorted(read_store(store).paths) == sorted(str(folder / name) for name in os.listdir(folder))
    results = tmp_path / "out" / "results.h5"
    clean(run_cli("query", "--db", store, "--queries", store, "-o", results, "--ground-truth", work / "pairs.h5",
                  "--report", tmp_path / "out" / "report"))
    with h5py.File(results) as f:
        assert sorted(f["query_paths"][:].tolist()) == sorted(os.fsencode(path) for path in read_store(store).paths)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["mAP"] > 0.5
