"""Fuzzing: damaged variants of every kind of hashkit file (fields removed, retyped, resized,
truncated, bit-flipped), run through every command that reads them, and hostile values of every
numeric option. Each run must end with exit 0, or with exit 1 and one ``error:`` line (2 for
usage), never a traceback, and a failed run must write nothing. Seeded and bounded
(``FUZZ_CASES`` cases a seed; ``HASHKIT_FUZZ_SEEDS`` and ``HASHKIT_FUZZ_CASES`` widen a run by
hand). No damaged file goes through ``reconstruct``: its work folder keeps COLMAP's stages by
design."""

from __future__ import annotations

import json
import os
import random
import shutil
import traceback
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from .helpers import noise_photos, run_cli

FUZZ_CASES = int(os.environ.get("HASHKIT_FUZZ_CASES", 120))
SEEDS = [int(seed) for seed in os.environ.get("HASHKIT_FUZZ_SEEDS", "0,1").split(",")]


@pytest.fixture(scope="module")
def originals(tmp_path_factory, work_dir) -> dict[str, Path]:
    """One valid file of each kind: model, code store, pairs, results, metrics, saved index and its
    stamp, and a feature cache file."""
    root = tmp_path_factory.mktemp("fuzz")
    photos = noise_photos(root / "photos", 6, 48, ".png")
    cache = root / "cache"
    common = ["--image-size", "32", "--feature-cache", cache]
    assert run_cli("train", "--images", photos, "-o", root / "model.pt", "--method", "lsh", "--bits", "16",
                   *common).exit_code == 0
    assert run_cli("encode", root / "model.pt", photos, "-o", root / "codes.h5", "--feature-cache", cache,
                   "--labels", "folders").exit_code == 0
    assert run_cli("query", "--db", root / "codes.h5", "--queries", root / "codes.h5", "-o", root / "results.h5",
                   "-k", "3").exit_code == 0
    assert run_cli("index-build", "--db", root / "codes.h5", "--index", "hnsw").exit_code == 0
    shutil.copy(work_dir / "pairs.h5", root / "pairs.h5")
    (cache_file,) = cache.glob("*.h5")
    return {"model": root / "model.pt", "store": root / "codes.h5", "pairs": root / "pairs.h5",
            "results": root / "results.h5", "metrics": root / "metrics.json",
            "index": root / "codes.h5.hnsw.faiss", "stamp": root / "codes.h5.hnsw.json", "cache": cache_file,
            "photos": photos}


# ---- damage ---------------------------------------------------------------------------------------
def _bytes_damage(rng: random.Random, path: Path) -> str:
    data = bytearray(path.read_bytes())
    if rng.random() < 0.5:
        cut = rng.randrange(len(data))
        path.write_bytes(bytes(data[:cut]))
        return f"truncated at {cut}"
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(data))
        data[at] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    return "bits flipped"


ODD_VALUES = [None, -1, 0, 2**40, -2**40, 1.5, float("nan"), "text", "", [1, 2], {"a": 1}, True]


def _hdf5_damage(rng: random.Random, path: Path) -> str:
    with h5py.File(path, "r+") as f:
        names: list[str] = []
        f.visit(names.append)
        attrs = [(None, key) for key in f.attrs] + [(name, key) for name in names for key in f[name].attrs]
        choice = rng.choice(["remove", "retype", "resize", "attr"] if attrs else ["remove", "retype", "resize"])
        if choice == "attr":
            owner, key = rng.choice(attrs)
            target = f.attrs if owner is None else f[owner].attrs
            value = rng.choice([v for v in ODD_VALUES if v is not None and not isinstance(v, (list, dict))])
            if rng.random() < 0.3:
                del target[key]
                return f"attribute {key} removed"
            target[key] = value
            return f"attribute {key} = {value!r}"
        name = rng.choice([n for n in names if isinstance(f[n], h5py.Dataset)] or names)
        if choice == "remove":
            del f[name]
            return f"{name} removed"
        old = f[name]
        rows = old.shape[0] if isinstance(old, h5py.Dataset) and old.shape else 1
        del f[name]
        if choice == "retype":
            kind = rng.choice(["group", "int", "float", "text", "scalar"])
            if kind == "group":
                f.create_group(name)
            elif kind == "int":
                f[name] = np.arange(rows, dtype=np.int64) * rng.choice([1, -1, 10**9])
            elif kind == "float":
                f[name] = np.full(rows, 0.5)
            elif kind == "text":
                f.create_dataset(name, data=["x"] * rows, dtype=h5py.string_dtype())
            else:
                f[name] = 7
            return f"{name} retyped as {kind}"
        size = rng.choice([0, 1, max(rows // 2, 1), rows + 1, rows * 3 + 2])
        f[name] = np.zeros((size, 2), np.int64) if rng.random() < 0.3 else np.zeros(size, np.uint8)
        return f"{name} resized to {size}"


def _model_damage(rng: random.Random, path: Path) -> str:
    payload = torch.load(path, weights_only=True)
    config = json.loads(payload["config"])
    choice = rng.choice(["config key", "config type", "state", "payload"])
    if choice == "config key":
        description = "config " + _damage_field(rng, config)
        payload["config"] = json.dumps(config)
    elif choice == "config type":
        payload["config"] = json.dumps(rng.choice([[config], None, "text", 5]))
        description = "config retyped"
    elif choice == "state":
        key = rng.choice(sorted(payload["state_dict"]))
        if rng.random() < 0.5:
            del payload["state_dict"][key]
            description = f"weight {key} removed"
        else:
            payload["state_dict"][key] = torch.zeros(3, 5)
            description = f"weight {key} reshaped"
    else:
        payload = rng.choice([{"config": payload["config"]}, {"state_dict": payload["state_dict"]}, [1, 2], {}])
        description = "payload replaced"
    torch.save(payload, path)
    return description


def _json_damage(rng: random.Random, path: Path) -> str:
    data = json.loads(path.read_text())
    description = _damage_field(rng, data)
    path.write_text(json.dumps(data))
    return description


def _damage_field(rng: random.Random, data: dict) -> str:
    """One field of ``data`` removed or given an odd value, in place; what was done."""
    key = rng.choice(sorted(data))
    value = rng.choice(ODD_VALUES + ["delete"])
    if value == "delete":
        del data[key]
    else:
        data[key] = value
    return f"{key} = {value!r}"


DAMAGE: dict[str, list[Callable[[random.Random, Path], str]]] = {
    "model": [_bytes_damage, _model_damage],
    "store": [_bytes_damage, _hdf5_damage], "pairs": [_bytes_damage, _hdf5_damage],
    "results": [_bytes_damage, _hdf5_damage], "cache": [_bytes_damage, _hdf5_damage],
    "metrics": [_bytes_damage, _json_damage], "index": [_bytes_damage], "stamp": [_bytes_damage, _json_damage],
}


# ---- the commands that read each kind ----------------------------------------------------------------
def commands(kind: str, damaged: Path, files: dict[str, Path], out: Path) -> list[list]:
    photos = files["photos"]
    reads = {
        "model": [["encode", damaged, photos, "-o", out / "codes.h5"]],
        "store": [["query", "--db", damaged, "--queries", files["store"], "-o", out / "r.h5", "-k", "2"],
                  ["query", "--db", files["store"], "--queries", damaged, "-o", out / "r.h5", "-k", "2"],
                  ["encode", files["model"], photos, "-o", damaged],
                  ["merge", damaged, files["store"], "-o", out / "merged.h5"],
                  ["index-build", "--db", damaged, "--index", "hnsw"]],
        "pairs": [["train", "--pairs", damaged, "-o", out / "m.pt", "--method", "bcdh", "--bits", "16",
                   "--image-size", "32", "--epochs", "1"],
                  ["query", "--db", files["store"], "--queries", files["store"], "-o", out / "r.h5",
                   "--ground-truth", damaged]],
        "results": [],
        "metrics": [["compare", damaged, files["metrics"]]],
        "index": [["query", "--db", files["store"], "--queries", files["store"], "-o", out / "r.h5",
                   "--index", "hnsw"]],
        "stamp": [["query", "--db", files["store"], "--queries", files["store"], "-o", out / "r.h5",
                   "--index", "hnsw"]],
        "cache": [["encode", files["model"], photos, "-o", out / "codes.h5", "--feature-cache", damaged.parent]],
    }[kind]
    return [["inspect", damaged]] + reads


def fuzz_case(rng: random.Random, originals: dict[str, Path], work: Path) -> list[str]:
    """One damaged file through the commands that read it; the problems found (empty: none)."""
    kind = rng.choice(sorted(DAMAGE))
    files = dict(originals)  # read only, but for the damaged file and what lives beside it: copies
    copied = [kind] + (["store", "index", "stamp"] if kind in ("index", "stamp") else [])
    for name in copied:
        files[name] = work / kind / originals[name].name  # a saved index lives beside its store
        files[name].parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(originals[name], files[name])
    damaged = files[kind]
    how = rng.choice(DAMAGE[kind])(rng, damaged)
    problems = []
    for args in commands(kind, damaged, files, work / "out"):
        (work / "out").mkdir(exist_ok=True)
        result = run_cli(*args)
        text = result.output
        lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("warning: ")]
        failed = result.exit_code != 0
        if "Traceback" in text or result.exception and not isinstance(result.exception, SystemExit) \
                or result.exit_code not in (0, 1, 2) \
                or failed and result.exit_code == 1 and (len(lines) != 1 or not lines[0].startswith("error: ")) \
                or failed and any((work / "out").iterdir()):
            ours = [frame for frame in traceback.extract_tb(result.exc_info[2]) if "hashkit" in frame.filename
                    or "/cli/" in frame.filename or "/hashing/" in frame.filename] if result.exc_info else []
            where = ours[-1] if ours else None
            problems.append(f"{kind} ({how}) | {' '.join(map(str, args[:1]))}: exit {result.exit_code}, "
                            f"{type(result.exception).__name__ if result.exception else ''} "
                            f"{str(result.exception)[:200] if result.exception else text[-300:]}"
                            + (f" at {where.filename}:{where.lineno}" if where else ""))
        shutil.rmtree(work / "out")
    shutil.rmtree(work)  # thousands of cases would fill a disk
    return problems


@pytest.mark.parametrize("seed", SEEDS)
def test_damaged_files_give_one_error_line_from_every_command(tmp_path, originals, seed):
    rng = random.Random(seed)
    problems = []
    for case in range(FUZZ_CASES):
        problems += fuzz_case(rng, originals, tmp_path / str(case))
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


NUMERIC_OPTIONS = {  # command (with its other arguments) -> its numeric options
    ("reconstruct", "{photos}", "-o", "{out}/work"): ["--num-neighbors", "--min-shared-points", "--min-inliers",
                                                     "--negatives-per-image", "--max-image-size", "--max-features",
                                                     "--min-model-size", "--seed"],
    ("train", "--images", "{photos}", "-o", "{out}/m.pt", "--method", "lsh"): [
        "--bits", "--image-size", "--hidden", "--epochs", "--batch-size", "--lr", "--workers", "--seed"],
    ("encode", "{model}", "{photos}", "-o", "{out}/c.h5"): ["--batch-size", "--workers"],
    ("query", "--db", "{store}", "--queries", "{store}", "-o", "{out}/r.h5"): ["-k", "--radius"],
}
HOSTILE_VALUES = ["-1", "0", "-0.5", "nan", "inf", "1e999", str(2**63), str(-2**63), "abc", "", "1\x00"]


@pytest.mark.parametrize("seed", SEEDS)
def test_hostile_option_values_never_reach_a_library(tmp_path, originals, seed):
    """Each numeric option of each command with values out of any range: a usage error (exit 2) or
    one error line (exit 1), or a run that is right to accept it (exit 0); never a traceback."""
    rng = random.Random(seed)
    problems = []
    for command, options in NUMERIC_OPTIONS.items():
        for option in options:
            value = rng.choice(HOSTILE_VALUES)
            out = tmp_path / f"{option.strip('-')}-{len(problems)}"
            out.mkdir(parents=True, exist_ok=True)
            args = [part.format(photos=originals["photos"], out=out, model=originals["model"],
                                store=originals["store"]) for part in command] + [option, value]
            result = run_cli(*args)
            lines = result.stderr.strip().splitlines()
            if "Traceback" in result.output or result.exit_code not in (0, 1, 2) \
                    or result.exception and not isinstance(result.exception, SystemExit) \
                    or result.exit_code == 1 and (len(lines) != 1 or not lines[0].startswith("error: ")):
                problems.append(f"{command[0]} {option} {value!r}: exit {result.exit_code}, {result.output[-200:]}")
    assert not problems, "\n".join(problems)
