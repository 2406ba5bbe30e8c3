"""Signals: a hashkit process ended by any signal leaves no process behind and no pipe held open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import HASHKIT, alive, descendants, noise_photos, trained_model


@pytest.fixture(scope="module")
def slow_encode(tmp_path_factory, scene_set) -> tuple[Path, Path]:
    """A frozen-backbone model at 224 px and 400 photos: an uncached encode that runs for a while."""
    root = tmp_path_factory.mktemp("signals")
    return (trained_model(scene_set / "photos", root / "lsh.pt", "lsh", 224, "--no-feature-cache"),
            noise_photos(root / "photos", 400, 96, ".jpg"))


def _interruptible() -> None:
    """SIGINT at its default, as for a terminal's foreground job: tests run as a background job
    (``make test &``) inherit it ignored, and Python then leaves it ignored in the encode."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_encode(model: Path, photos: Path, store: Path) -> tuple[subprocess.Popen, set[int]]:
    """An encode with two workers, in a session of its own, once its workers run; and those workers."""
    process = subprocess.Popen([*HASHKIT, "encode", str(model), str(photos), "-o", str(store),
                                "--workers", "2", "--batch-size", "8", "--no-feature-cache"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=_interruptible)
    deadline = time.monotonic() + 120
    while len(descendants(process.pid)) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.poll() is None and len(descendants(process.pid)) >= 2, "the encode should run with its workers"
    time.sleep(1)  # workers busy decoding
    return process, descendants(process.pid)


def finish(process: subprocess.Popen, workers: set[int]) -> str:
    """The stderr of the signalled ``process``; fails if a process outlives it or holds its pipes."""
    try:
        _, stderr = process.communicate(timeout=30)  # returns only once nothing holds the pipes open
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("a process left behind keeps the caller's stdout and stderr open")
    deadline = time.monotonic() + 10
    while alive(workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = alive(workers)
    if left:
        os.killpg(process.pid, signal.SIGKILL)
    assert not left, f"processes outlived the encode: {sorted(left)}"
    return stderr


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_a_killed_encode(tmp_path, slow_encode, sig):
    process, workers = start_encode(*slow_encode, tmp_path / "codes.h5")
    process.send_signal(sig)
    finish(process, workers)


def test_ctrl_c_says_what_was_kept_and_exits_130(tmp_path, slow_encode):
    process, workers = start_encode(*slow_encode, tmp_path / "codes.h5")
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    stderr = finish(process, workers)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted: the codes committed so far are kept"), stderr


def test_a_plain_kill_of_reconstruct_prints_no_colmap_stack_dump():
    """pycolmap's import installs glog's handler, which printed a C++ stack dump on SIGTERM."""
    killed = subprocess.run([sys.executable, "-c", "import os, signal, time; import hashkit.sfm_pairs.colmap; "
                             "os.kill(os.getpid(), signal.SIGTERM); time.sleep(10)"], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGTERM and killed.stderr == "", killed.stderr
