"""User errors: one clear line on stderr, exit code 1, no traceback, nothing written over."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from .conftest import run_cli

HASHKIT = [sys.executable, "-m", "hashkit.cli.main"]


def assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_missing_folder(tmp_path):
    assert_one_line_error(run_cli("reconstruct", tmp_path / "nope", "-o", tmp_path / "w"), "not a folder")


def test_folder_without_images(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "readme.txt").write_text("no pictures here")
    assert_one_line_error(run_cli("reconstruct", tmp_path / "photos", "-o", tmp_path / "w"), "no images in")


def test_no_model_reconstructed(tmp_path):
    rng = np.random.default_rng(0)
    photos = tmp_path / "noise"
    photos.mkdir()
    for i in range(4):  # unrelated random images: nothing to match, so no 3D model
        cv2.imwrite(str(photos / f"{i}.png"), rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    result = run_cli("reconstruct", photos, "-o", tmp_path / "w")
    assert_one_line_error(result, "no 3D model")
    assert not (tmp_path / "w" / "pairs.h5").exists()


def test_unreadable_model_file(tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(b"this is not a checkpoint")
    (tmp_path / "a.png").write_bytes(b"")
    assert_one_line_error(run_cli("encode", model, tmp_path, "-o", tmp_path / "codes.h5"),
                          "not a readable hashkit model file")
    assert not (tmp_path / "codes.h5").exists()


def test_missing_model_file(tmp_path):
    assert_one_line_error(run_cli("encode", tmp_path / "none.pt", tmp_path, "-o", tmp_path / "c.h5"),
                          "no such model file")


def test_existing_model_is_not_overwritten(tmp_path, work_dir):
    model = tmp_path / "model.pt"
    model.write_bytes(b"precious")
    result = run_cli("train", "--pairs", work_dir / "pairs.h5", "-o", model, "--method", "lsh")
    assert_one_line_error(result, "use --overwrite")
    assert model.read_bytes() == b"precious"


@pytest.mark.parametrize("args, fragment", [
    (["--method", "nope"], "unknown method"),
    (["--bits", "12"], "multiple of 8"),
    (["--backbone", "lenet"], "unknown backbone"),
    (["--device", "tpu"], "unknown device"),
])
def test_bad_training_options(tmp_path, work_dir, args, fragment):
    result = run_cli("train", "--pairs", work_dir / "pairs.h5", "-o", tmp_path / "m.pt", *args)
    assert_one_line_error(result, fragment)


def test_wrong_file_as_pairs(tmp_path):
    bogus = tmp_path / "pairs.h5"
    bogus.write_text("hello")
    assert_one_line_error(run_cli("train", "--pairs", bogus, "-o", tmp_path / "m.pt"), "cannot read")


def test_console_entry_point_exits_1_without_traceback(tmp_path: Path):
    completed = subprocess.run([*HASHKIT, "reconstruct", str(tmp_path / "missing"), "-o", str(tmp_path / "w")],
                               capture_output=True, text=True)
    assert completed.returncode == 1
    assert completed.stderr.strip().count("\n") == 0 and "not a folder" in completed.stderr
    assert completed.stdout == ""


def test_ground_truth_that_names_no_image_is_refused_before_writing(tmp_path):
    from hashkit.hashing.store import CodeStoreWriter, StoreMeta

    store = tmp_path / "codes.h5"
    with CodeStoreWriter(store, StoreMeta(8, "lsh", "d" * 64, "resnet18", "0")) as writer:
        writer.append(np.array([[1], [2], [3]], np.uint8), [str(tmp_path / n) for n in ("a.png", "b.png", "c.png")])
    truth = tmp_path / "sub" / "truth.csv"
    truth.parent.mkdir()
    truth.write_text("path,label\na.png,x\nb.png,x\n")  # relative to sub/, so it names no stored image
    result = run_cli("query", "--db", store, "--queries", store, "-o", tmp_path / "r.h5", "--ground-truth", truth)
    assert_one_line_error(result, "gives a label to none of the database images")
    assert not (tmp_path / "r.h5").exists() and not (tmp_path / "metrics.json").exists()
