"""User errors: one clear line on stderr, exit code 1, no traceback, nothing written over."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from hashkit.hashing.evaluation.query import RESULT_BYTES
from hashkit.hashing.search.mih import MultiIndex, table_bytes
from hashkit.hashing.storage.store import read_store

from .helpers import HASHKIT, assert_one_line_error, run_cli


def test_missing_folder(tmp_path):
    assert_one_line_error(run_cli("reconstruct", tmp_path / "nope", "-o", tmp_path / "w"), "not a folder")


def test_folder_without_images(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "readme.txt").write_text("no pictures here")
    assert_one_line_error(run_cli("reconstruct", tmp_path / "photos", "-o", tmp_path / "w"), "no images in")


def test_no_positive_pair_found(tmp_path):
    rng = np.random.default_rng(0)
    photos = tmp_path / "noise"
    photos.mkdir()
    for i in range(4):  # unrelated random images: nothing to match, so no 3D model
        cv2.imwrite(str(photos / f"{i}.png"), rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    result = run_cli("reconstruct", photos, "-o", tmp_path / "w")
    assert_one_line_error(result, "no positive pair")
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
    from hashkit.hashing.storage.store import CodeStoreWriter, StoreMeta

    store = tmp_path / "codes.h5"
    with CodeStoreWriter(store, StoreMeta(8, "lsh", "d" * 64, "resnet18", "0")) as writer:
        writer.append(np.array([[1], [2], [3]], np.uint8), [str(tmp_path / n) for n in ("a.png", "b.png", "c.png")])
    truth = tmp_path / "sub" / "truth.csv"
    truth.parent.mkdir()
    truth.write_text("path,label\na.png,x\nb.png,x\n")  # relative to sub/, so it names no stored image
    result = run_cli("query", "--db", store, "--queries", store, "-o", tmp_path / "r.h5", "--ground-truth", truth)
    assert_one_line_error(result, "gives a label to none of the database images")
    assert not (tmp_path / "r.h5").exists() and not (tmp_path / "metrics.json").exists()


def test_k_beyond_the_database_is_capped_and_said(tmp_path, tiny):
    import h5py

    result = run_cli("query", "--db", tiny["store"], "--queries", tiny["store"], "-o", tmp_path / "r.h5",
                     "-k", 1_000_000_000)
    assert result.exit_code == 0, result.output
    assert "-k 1000000000 is more than the 3 database codes: capped at 3" in result.stderr
    with h5py.File(tmp_path / "r.h5") as f:
        assert f["ids"].shape == (3, 3)


def test_results_larger_than_memory_are_refused_before_searching(tmp_path, tiny, monkeypatch):
    monkeypatch.setattr("hashkit.hashing.evaluation.query.available_memory", lambda: 1000)
    result = run_cli("query", "--db", tiny["store"], "--queries", tiny["store"], "-o", tmp_path / "r.h5")
    assert_one_line_error(result, "GiB available; lower -k")
    assert not (tmp_path / "r.h5").exists()


def test_multi_index_tables_larger_than_memory_are_refused_before_searching(tmp_path, tiny, monkeypatch):
    codes = read_store(tiny["store"]).codes
    tables = MultiIndex(codes).nbytes
    assert tables == table_bytes(len(codes), codes.shape[1] * 8)  # the estimate is the tables' size
    results = len(codes) * (len(codes) + 1) * RESULT_BYTES
    monkeypatch.setattr("hashkit.hashing.evaluation.query.available_memory", lambda: results + tables // 2)
    command = ["query", "--db", tiny["store"], "--queries", tiny["store"], "-o", tmp_path / "r.h5"]
    assert_one_line_error(run_cli(*command, "--index", "mih"), "GiB available; use --index flat")
    assert not (tmp_path / "r.h5").exists()
    assert run_cli(*command).exit_code == 0  # the scan needs no tables


@pytest.mark.parametrize("command, fragment", [
    (lambda t, d: ["query", "--db", t["store"], "--queries", t["store"], "-o", d, "--overwrite"], "is a folder"),
    (lambda t, d: ["train", "--images", t["photos"], "-o", d, "--method", "lsh", "--overwrite"], "is a folder"),
    (lambda t, d: ["encode", t["model"], t["photos"], "-o", d], "is a folder"),
    (lambda t, d: ["reconstruct", t["photos"], "-o", t["store"]], "is a file, not a folder"),
])
def test_outputs_in_the_way_are_refused_in_one_line(tmp_path, tiny, command, fragment):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    before = tiny["store"].read_bytes()
    assert_one_line_error(run_cli(*command(tiny, folder)), fragment)
    assert tiny["store"].read_bytes() == before and not any(folder.iterdir())


@pytest.mark.parametrize("args, bound", [
    (["query", "--db", "a.h5", "--queries", "a.h5", "-o", "r.h5", "-k", "0"], "greater than or equal to 1"),
    (["query", "--db", "a.h5", "--queries", "a.h5", "-o", "r.h5", "-k", "-1"], "greater than or equal to 1"),
    (["query", "--db", "a.h5", "--queries", "a.h5", "-o", "r.h5", "--radius", "-1"], "greater than or equal to 0"),
    (["train", "-o", "m.pt", "--seed", "-1"], "greater than or equal to 0"),
    (["train", "-o", "m.pt", "--seed", str(2**32)], "less than or equal to 4294967295"),
    (["train", "-o", "m.pt", "--lr", "-1"], "not in the range 0<x<=10"),
    (["train", "-o", "m.pt", "--batch-size", "0"], "greater than or equal to 2"),
    (["train", "-o", "m.pt", "--image-size", "100000"], "less than or equal to 2048"),
    (["train", "-o", "m.pt", "--workers", "-1"], "greater than or equal to 0"),
    (["encode", "m.pt", "photos", "-o", "c.h5", "--batch-size", "-1"], "greater than or equal to 1"),
    (["reconstruct", "photos", "-o", "w", "--min-model-size", "-1"], "greater than or equal to 2"),
    (["reconstruct", "photos", "-o", "w", "--negatives-per-image", "-5"], "greater than or equal to 0"),
])
def test_options_out_of_range_are_usage_errors_that_state_the_range(tmp_path, args, bound):
    result = run_cli(*args)
    assert result.exit_code == 2 and bound in result.output and "Traceback" not in result.output, result.output
    assert not list(tmp_path.iterdir())


def test_a_batch_that_would_not_fit_in_memory_is_refused_before_encoding(tmp_path, tiny, monkeypatch):
    monkeypatch.setattr("hashkit.hashing.memory.available_memory", lambda: 100 << 20)
    result = run_cli("encode", tiny["model"], tiny["photos"], "-o", tmp_path / "c.h5", "--batch-size", "4096")
    assert_one_line_error(result, "GiB available; lower --batch-size")
    assert not (tmp_path / "c.h5").exists()


def test_a_radius_search_on_an_index_without_one_is_refused_in_one_line(tmp_path, tiny):
    result = run_cli("query", "--db", tiny["store"], "--queries", tiny["store"], "-o", tmp_path / "r.h5",
                     "--index", "hnsw", "--radius", "2")
    assert_one_line_error(result, "index hnsw has no radius search; use flat or mih")
    assert not (tmp_path / "r.h5").exists()


def test_search_parameters_out_of_range_are_refused_in_one_line(tmp_path, tiny):
    query = ["query", "--db", tiny["store"], "--queries", tiny["store"], "-o", tmp_path / "r.h5"]
    assert_one_line_error(run_cli(*query, "--index", "ivf", "--index-param", "nprobe=0"), "nprobe must be")
    assert_one_line_error(run_cli(*query, "--index", "faiss-mih", "--index-param", "nflip=1000000000"),
                          "nflip must be a whole number from 0 to")
    assert not (tmp_path / "r.h5").exists()


def test_query_outputs_that_would_clobber_each_other_are_refused_before_any_is_written(tmp_path, tiny):
    query = ["query", "--db", tiny["store"], "--queries", tiny["store"], "--ground-truth", "folders", "-k", "2"]
    assert_one_line_error(run_cli(*query, "-o", tmp_path / "r.h5", "--metrics", tmp_path / "r.h5"), "the same file")
    (tmp_path / "a-file").write_text("not a folder")
    assert_one_line_error(run_cli(*query, "-o", tmp_path / "r.h5", "--report", tmp_path / "a-file"), "is a file")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file"]

    assert run_cli(*query, "-o", tmp_path / "r.h5", "--report", tmp_path / "report").exit_code == 0
    page = (tmp_path / "report" / "index.html").read_bytes()
    (tmp_path / "r.h5").unlink()
    (tmp_path / "metrics.json").unlink()
    assert_one_line_error(run_cli(*query, "-o", tmp_path / "r.h5", "--report", tmp_path / "report"),
                          "index.html exists; use --overwrite")
    assert not (tmp_path / "r.h5").exists() and (tmp_path / "report" / "index.html").read_bytes() == page


def test_outputs_in_missing_folders_are_created(tmp_path, tiny):
    results = tmp_path / "no" / "such" / "dir" / "r.h5"
    result = run_cli("query", "--db", tiny["store"], "--queries", tiny["store"], "-o", results,
                     "--ground-truth", "folders", "-k", "2")
    assert result.exit_code == 0, result.output
    assert results.is_file() and (results.parent / "metrics.json").is_file()
    plot = tmp_path / "other" / "dir" / "pr.png"
    result = run_cli("compare", results.parent / "metrics.json", "--plot", plot)
    assert result.exit_code == 0, result.output
    assert plot.is_file()


def test_operating_system_errors_are_one_line(tiny):
    result = run_cli("query", "--db", tiny["store"], "--queries", tiny["store"], "-o", "/proc/r.h5")  # nothing
    assert_one_line_error(result, "/proc/r.h5")  # can be created in /proc, even by root


@pytest.mark.parametrize("change, fragment", [
    (lambda config: {k: v for k, v in config.items() if k != "bits"}, "'bits' is None"),
    (lambda config: {**config, "image_size": -5}, "'image_size' is -5"),
    (lambda config: {**config, "schema_version": 99}, "newer hashkit"),
    (lambda config: {**config, "image_size": 100_000}, "'image_size' is 100000; it must be from 32 to 2048"),
    (lambda config: {**config, "hidden": 10**9}, "'hidden' is 1000000000"),
    (lambda config: [config], "is not a hashkit model file"),
    (lambda config: None, "is not a hashkit model file"),
    (lambda config: "a string", "is not a hashkit model file"),
])
def test_model_config_is_validated_and_no_empty_store_is_left(tmp_path, tiny, change, fragment):
    import json

    import torch

    payload = torch.load(tiny["model"], weights_only=True)
    payload["config"] = json.dumps(change(json.loads(payload["config"])))
    model = tmp_path / "edited.pt"
    torch.save(payload, model)
    assert_one_line_error(run_cli("encode", model, tiny["photos"], "-o", tmp_path / "c.h5"), fragment)
    assert not (tmp_path / "c.h5").exists()


def edited_pairs(source: Path, target: Path, edit) -> Path:
    """A copy of the pairs file ``source`` with ``edit(h5py.File)`` applied."""
    import shutil

    import h5py

    shutil.copy(source, target)
    with h5py.File(target, "r+") as f:
        edit(f)
    return target


def replace(name: str, values) -> callable:
    def edit(f) -> None:
        del f[name]
        f.create_dataset(name, data=values)
    return edit


@pytest.mark.parametrize("edit, fragment", [
    (lambda f: f["positives"].__setitem__((0, 1), 100_000), "positives names image 100000"),
    (lambda f: f["negatives"].__setitem__((0, 0), -1), "negatives names image -1"),
    (replace("positives", np.zeros((3, 3), np.int32)), "shape (3, 3)"),
    (replace("negatives", np.zeros((3, 2), np.float32)), "not integers"),
    (replace("model_id", np.zeros(2, np.int32)), "model_id has shape (2,)"),
    (lambda f: f.__delitem__("shared_points"), "not a complete hashkit pairs file"),
    (lambda f: f.attrs.__setitem__("schema_version", 99), "newer hashkit"),
])
def test_pairs_files_are_validated_on_open(tmp_path, work_dir, tiny, edit, fragment):
    pairs = edited_pairs(work_dir / "pairs.h5", tmp_path / "pairs.h5", edit)
    assert_one_line_error(run_cli("train", "--pairs", pairs, "-o", tmp_path / "m.pt", "--epochs", "1"), fragment)
    assert not (tmp_path / "m.pt").exists()
    result = run_cli("query", "--db", tiny["store"], "--queries", tiny["store"], "-o", tmp_path / "r.h5",
                     "--ground-truth", pairs)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "r.h5").exists()


def damaged_png(path: Path) -> Path:
    """A PNG whose header checksum is wrong: libpng refuses it, and would say so on stderr."""
    data = bytearray(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    data[20] ^= 1
    path.write_bytes(bytes(data))
    return path


def test_undecodable_images_are_named_as_given_without_library_noise(tmp_path, tiny):
    import shutil

    photos = tmp_path / "photos"
    shutil.copytree(tiny["photos"], photos)
    damaged = damaged_png(tmp_path / "elsewhere.png")
    (photos / "link.png").symlink_to(damaged)
    result = run_cli("encode", tiny["model"], photos, "-o", tmp_path / "codes.h5", "--workers", "0",
                     "--no-feature-cache")
    assert result.exit_code == 0, result.output
    assert f"unreadable: {photos / 'link.png'}" in result.stdout, "the path given, not the link's target"
    assert "libpng" not in result.stderr
    result = run_cli("train", "--images", photos, "-o", tmp_path / "m.pt", "--method", "lsh", "--bits", "16",
                     "--image-size", "64", "--workers", "0", "--no-feature-cache")
    assert result.exit_code == 0, result.output
    assert "1 undecodable images skipped" in result.stdout and f"unreadable: {photos / 'link.png'}" in result.stdout
    assert "libpng" not in result.stderr


def test_no_lock_file_is_left_beside_outputs(tmp_path, tiny):
    assert run_cli("encode", tiny["model"], tiny["photos"], "-o", tmp_path / "codes.h5", "--workers", "0",
                   "--no-feature-cache").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.h5"]


def test_help_has_no_type_placeholders_for_flags_and_offers_completion():
    assert "<bool>" not in run_cli("encode", "--help").output
    assert "--install-completion" in run_cli("--help").output
