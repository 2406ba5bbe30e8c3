"""Locks: one lock folder for every run of a user, whatever its environment, and only a private one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hashkit.hashing.errors import UserError
from hashkit.hashing.files import locking
from hashkit.hashing.storage.store import CodeStoreWriter, StoreMeta

HASHKIT = [sys.executable, "-m", "hashkit.cli.main"]


def small_store(path: Path) -> Path:
    with CodeStoreWriter(path, StoreMeta(16, "lsh", "0" * 64, "mobilenet_v2", "test")) as store:
        store.append(np.arange(8, dtype=np.uint8).reshape(4, 2), [f"/photos/{i}.jpg" for i in range(4)])
    return path


def test_runs_with_other_runtime_and_temporary_folders_find_the_same_lock(tmp_path):
    """A login shell and cron see different XDG_RUNTIME_DIR and TMPDIR (or a missing folder): the
    second writer of one output is still refused, and with the lock free it runs."""
    store = small_store(tmp_path / "codes.h5")
    cron = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path / "missing"), "TMPDIR": str(tmp_path)}
    merge = HASHKIT + ["merge", str(store), "-o", str(tmp_path / "merged.h5")]
    with locking.exclusive_lock(tmp_path / "merged.h5"):
        refused = subprocess.run(merge, capture_output=True, text=True, env=cron)
    assert refused.returncode == 1 and "in use by another hashkit process" in refused.stderr, refused.stderr
    assert not (tmp_path / "merged.h5").exists()
    done = subprocess.run(merge, capture_output=True, text=True, env=cron)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("make", ["open to others", "a link", "another user's"])
def test_a_lock_folder_that_is_not_private_is_refused(tmp_path, monkeypatch, make):
    monkeypatch.setattr(locking, "LOCK_ROOT", tmp_path)
    folder = tmp_path / f"hashkit-locks-{os.getuid()}"
    if make == "open to others":
        folder.mkdir(mode=0o700)
        folder.chmod(0o777)
    elif make == "a link":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        folder.symlink_to(tmp_path / "elsewhere")
    else:
        if os.geteuid() != 0:
            pytest.skip("giving a folder to another user needs root")
        folder.mkdir(mode=0o700)
        os.chown(folder, 4242, 4242)
    with pytest.raises(UserError, match="not a private folder of yours"):
        with locking.exclusive_lock(tmp_path / "codes.h5"):
            pass


def test_the_lock_folder_is_made_private(tmp_path, monkeypatch):
    monkeypatch.setattr(locking, "LOCK_ROOT", tmp_path)
    with locking.exclusive_lock(tmp_path / "codes.h5"):
        folder = tmp_path / f"hashkit-locks-{os.getuid()}"
        assert folder.is_dir() and folder.stat().st_mode & 0o777 == 0o700
        assert len(list(folder.glob("*.lock"))) == 1
