"""examples/update_index.sh: appends only new photos, reruns queries, silent on success."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hashkit.hashing.errors import UserError
from hashkit.hashing.files.locking import exclusive_lock
from hashkit.hashing.storage.store import read_store

from .helpers import REPO, run_cli

SCRIPT = REPO / "examples" / "update_index.sh"


@pytest.fixture(scope="module")
def lsh_model(work_dir, tmp_path_factory) -> Path:
    model = tmp_path_factory.mktemp("cron") / "lsh.pt"
    result = run_cli("train", "--pairs", work_dir / "pairs.h5", "-o", model, "--method", "lsh",
                     "--bits", "32", "--image-size", "64", "--workers", "0")
    assert result.exit_code == 0, result.output
    return model


def run_script(*args: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env)


def test_update_index_appends_new_photos_and_stays_silent(lsh_model, scene_set, tmp_path):
    photos, queries, out = tmp_path / "photos", tmp_path / "queries", tmp_path / "index"
    all_photos = sorted((scene_set / "photos").glob("*.jpg"))
    photos.mkdir()
    queries.mkdir()
    for p in all_photos[:16]:
        shutil.copy(p, photos)
    for p in all_photos[16:18]:
        shutil.copy(p, queries)
    first = run_script(lsh_model, photos, queries, out, "5")
    assert first.returncode == 0 and first.stdout == "" and first.stderr == "", first.stderr
    assert len(read_store(out / "index.h5").paths) == 16
    for p in all_photos[18:]:  # photos arrive between two runs
        shutil.copy(p, photos)
    second = run_script(lsh_model, photos, queries, out, "5")
    assert second.returncode == 0 and second.stdout == "", second.stderr
    summary = json.loads((out / "last-run.json").read_text())
    assert (summary["index"]["encoded"], summary["index"]["already_present"]) == (6, 16)
    assert summary["search"]["queries"] == 2 and summary["search"]["database"] == 22


def test_update_index_fails_with_one_line(lsh_model, tmp_path):
    result = run_script(lsh_model, tmp_path / "missing", tmp_path, tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: ") and result.stderr.strip().count("\n") == 0


def test_second_writer_on_a_store_is_refused(lsh_model, scene_set, tmp_path):
    store = tmp_path / "codes.h5"
    with exclusive_lock(store):  # another run holds the store
        result = run_cli("encode", lsh_model, scene_set / "photos", "-o", store, "--workers", "0")
        assert result.exit_code == 1 and "in use by another hashkit process" in result.stderr
    assert not store.exists()
    with exclusive_lock(store), pytest.raises(UserError):
        with exclusive_lock(store):
            pass


IMPORTS_TORCH = """
import sys
from hashkit.cli.main import app
try:
    app(sys.argv[1:])
except SystemExit as end:
    assert not end.code, end.code
print("torch" in sys.modules)
"""


def imports_torch(*args: object) -> bool:
    """Whether the hashkit command ``args``, run in a new process, imported torch."""
    result = subprocess.run([sys.executable, "-c", IMPORTS_TORCH, *map(str, args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1] == "True"


def test_nothing_new_to_encode_and_a_query_run_without_torch(lsh_model, scene_set, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted((scene_set / "photos").glob("*.jpg"))[:4]:
        shutil.copy(p, photos)
    store = tmp_path / "codes.h5"
    assert imports_torch("encode", lsh_model, photos, "-o", store)
    assert not imports_torch("encode", lsh_model, photos, "-o", store)  # nothing new
    assert not imports_torch("query", "--db", store, "--queries", store, "-k", "2", "-o", tmp_path / "r.h5")
    shutil.copy(next(photos.iterdir()), photos / "new.jpg")
    assert imports_torch("encode", lsh_model, photos, "-o", store)
    assert len(read_store(store).paths) == 5


def test_nothing_new_for_another_model_is_still_refused(lsh_model, work_dir, scene_set, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(next((scene_set / "photos").glob("*.jpg")), photos)
    store = tmp_path / "codes.h5"
    assert run_cli("encode", lsh_model, photos, "-o", store).exit_code == 0
    other = tmp_path / "other.pt"
    trained = run_cli("train", "--pairs", work_dir / "pairs.h5", "-o", other, "--method", "lsh", "--bits", "32",
                      "--image-size", "64", "--workers", "0", "--seed", "1")
    assert trained.exit_code == 0, trained.output
    result = run_cli("encode", other, photos, "-o", store)
    assert result.exit_code == 1 and "codes of another model" in result.stderr, result.output
