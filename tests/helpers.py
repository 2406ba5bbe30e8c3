"""Helpers shared by the test modules: running the CLI, reference computations, small inputs and
process inspection. Fixtures live in conftest.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from hashkit.cli.main import app
from hashkit.hashing.storage.store import pack_codes

REPO = Path(__file__).resolve().parents[1]
HASHKIT = [sys.executable, "-m", "hashkit.cli.main"]  # the CLI in a process of its own
COMMON = ["--bits", "32", "--image-size", "64", "--workers", "0", "--seed", "0"]  # small, fast training runs
FROZEN = ["--freeze-backbone", "--batch-size", "64"]


def run_cli(*args: str):
    """Invoke the hashkit CLI in-process; returns typer's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result, fragment: str) -> None:
    """The command failed with exit code 1 and one line on stderr, ``error: ...`` holding ``fragment``."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output


def hamming_distances(database: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The plain reference: (Q, N) counts of differing bits, from unpacked bits."""
    bits = np.unpackbits(database, axis=1)
    return np.array([(np.unpackbits(query) != bits).sum(axis=1) for query in queries])


def codes_from_bits(rows):
    """Packed codes from rows of 0/1 bits."""
    return pack_codes(np.array(rows, dtype=float) - 0.5)


def trained_model(images: Path, model: Path, method: str, image_size: int, *extra: str) -> Path:
    """``hashkit train`` of a 16-bit ``method`` model on ``images`` (in-process, no workers)."""
    result = run_cli("train", "--images", images, "-o", model, "--method", method, "--bits", "16",
                     "--image-size", str(image_size), "--workers", "0", *extra)
    assert result.exit_code == 0, result.output
    return model


def noise_photos(folder: Path, count: int, side: int, suffix: str) -> Path:
    """``count`` random-noise photos of ``side`` x ``side`` pixels in ``folder``, named 0000.SUFFIX on."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:04d}{suffix}"), rng.integers(0, 255, (side, side, 3), dtype=np.uint8))
    return folder


def train_and_evaluate(name: str, method: str, extra: list[str], train: Path, db: Path, queries: Path,
                       ground_truth: str, tmp: Path) -> tuple[dict, dict]:
    """Train through the CLI, encode database and queries, query; (train summary, metrics)."""
    model = tmp / f"{name}.pt"
    result = run_cli("train", "--images", train, "-o", model, "--method", method, *COMMON, *extra, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    for folder, store in ((db, tmp / f"{name}-db.h5"), (queries, tmp / f"{name}-q.h5")):
        assert run_cli("encode", model, folder, "-o", store, "--workers", "0").exit_code == 0
    metrics = tmp / f"{name}.json"
    result = run_cli("query", "--db", tmp / f"{name}-db.h5", "--queries", tmp / f"{name}-q.h5", "-k", "10",
                     "-o", tmp / f"{name}-r.h5", "--ground-truth", ground_truth, "--metrics", metrics)
    assert result.exit_code == 0, result.output
    return summary, json.loads(metrics.read_text())


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    return running
