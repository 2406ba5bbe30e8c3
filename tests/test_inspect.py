"""``hashkit inspect``: every kind of hashkit file is recognised and validated; damage exits 1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from .helpers import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny, work_dir) -> dict[str, Path]:  # noqa: F811
    """One file of each kind, from real runs."""
    root = tmp_path_factory.mktemp("inspect")
    shutil.copy(tiny["store"], root / "codes.h5")
    cache = root / "cache"
    assert run_cli("encode", tiny["model"], tiny["photos"], "-o", root / "cached.h5", "--workers", "0",
                   "--feature-cache", cache).exit_code == 0
    assert run_cli("query", "--db", root / "codes.h5", "--queries", root / "codes.h5", "-o", root / "r.h5", "-k", "2",
                   "--ground-truth", "folders").exit_code == 0
    assert run_cli("index-build", "--db", root / "codes.h5").exit_code == 0
    return {"pairs": work_dir / "pairs.h5", "model": tiny["model"], "codes": root / "codes.h5",
            "results": root / "r.h5", "metrics": root / "metrics.json", "index": root / "codes.h5.faiss-mih.faiss",
            "feature-cache": next(cache.glob("*.h5"))}


@pytest.mark.parametrize("kind", ["pairs", "model", "codes", "results", "metrics", "index", "feature-cache"])
def test_each_kind_is_recognised_and_valid(files, kind):
    result = run_cli("inspect", files[kind], "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kind"] == kind
    assert run_cli("inspect", files[kind]).stdout.startswith(f"{files[kind]}: {kind}, valid")


def test_counts_are_reported(files):
    pairs = json.loads(run_cli("inspect", files["pairs"], "--json").stdout)
    with h5py.File(files["pairs"]) as f:
        assert pairs["positives"] == len(f["positives"]) and pairs["images"] == len(f["images"])
    assert json.loads(run_cli("inspect", files["codes"], "--json").stdout)["codes"] == 3
    assert json.loads(run_cli("inspect", files["results"], "--json").stdout)["k"] == 2


def damage_h5(path: Path, edit) -> None:
    with h5py.File(path, "r+") as f:
        edit(f)


def test_damaged_files_exit_1_in_one_line(tmp_path, files):
    cases = {
        "codes": (lambda p: damage_h5(p, lambda f: f.attrs.__setitem__("count", 50)), "50 committed rows"),
        "results": (lambda p: damage_h5(p, lambda f: (f.__delitem__("distances"),
                                                       f.create_dataset("distances", data=np.zeros((3, 5))))),
                    "inconsistent"),
        "pairs": (lambda p: damage_h5(p, lambda f: f["positives"].__setitem__((0, 0), 10**6)), "names image"),
        "metrics": (lambda p: p.write_text(json.dumps({"evaluated_queries": 3})), "not a metrics.json written by"),
    }
    for kind, (damage, fragment) in cases.items():
        copy = tmp_path / files[kind].name
        shutil.copy(files[kind], copy)
        damage(copy)
        assert_one_line_error(run_cli("inspect", copy), fragment)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(files["codes"].read_bytes()[:1000])
    assert_one_line_error(run_cli("inspect", truncated), "truncated.h5")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert_one_line_error(run_cli("inspect", other), "not a file hashkit writes")


def test_a_stale_saved_index_is_reported(tmp_path, files, tiny):  # noqa: F811
    for name in ("codes.h5", "codes.h5.faiss-mih.faiss", "codes.h5.faiss-mih.json"):
        shutil.copy(files["codes"].with_name(name), tmp_path / name)
    assert run_cli("inspect", tmp_path / "codes.h5.faiss-mih.faiss").exit_code == 0
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(next(tiny["photos"].glob("*.png")), extra / "new.png")
    assert run_cli("encode", tiny["model"], extra, "-o", tmp_path / "codes.h5", "--workers", "0",
                   "--no-feature-cache").exit_code == 0
    assert_one_line_error(run_cli("inspect", tmp_path / "codes.h5.faiss-mih.faiss"), "stale")


def test_an_altered_saved_index_and_results_past_their_database_are_refused(tmp_path, files):
    for name in ("codes.h5", "codes.h5.faiss-mih.faiss", "codes.h5.faiss-mih.json"):
        shutil.copy(files["codes"].with_name(name), tmp_path / name)
    index = tmp_path / "codes.h5.faiss-mih.faiss"
    data = bytearray(index.read_bytes())
    data[-1] ^= 1  # a code of the index changed: its stamp still describes the store
    index.write_bytes(bytes(data))
    assert_one_line_error(run_cli("inspect", index), "does not match its stamp")
    query = ["query", "--db", tmp_path / "codes.h5", "--queries", tmp_path / "codes.h5", "-k", "2"]
    result = run_cli(*query, "-o", tmp_path / "r.h5", "--index", "faiss-mih")
    assert result.exit_code == 0 and "saved index is stale" in result.output, result.output  # rebuilt, not searched

    results = tmp_path / "r.h5"
    with h5py.File(results, "r+") as f:
        f["ids"][0, 0] = 99  # the database holds 3 rows
    assert_one_line_error(run_cli("inspect", results), "name row 99, but its database holds 3 rows")
