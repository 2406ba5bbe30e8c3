"""The bad-input corpus (tests/bad_inputs.py) through every step: odd but valid images are used,
broken ones are reported by the path given, and no step fails or prints a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .bad_inputs import make_corpus
from .conftest import run_cli


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
