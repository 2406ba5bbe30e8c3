"""Traced network copies: a later CPU encode loads one instead of building the network (no
torchvision import) and gets the same codes; a damaged copy, or another model's, is replaced."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch

from hashkit.hashing.storage.store import read_store
from hashkit.hashing.training import traced_copy
from hashkit.hashing.training.model_file import load_model
from hashkit.hashing.user_cache import traced_networks_dir

from .helpers import noise_photos, run_cli, trained_model

ENCODE_WITHOUT_TORCHVISION = """
import sys
from hashkit.cli.main import app
try:
    app(sys.argv[1:])
except SystemExit as done:
    assert done.code == 0, done.code
print("torchvision imported:", "torchvision" in sys.modules)
"""


def test_a_second_encode_runs_the_traced_copy_without_torchvision_and_gives_the_same_codes(tmp_path):
    photos = noise_photos(tmp_path / "photos", 24, 72, ".png")
    model = trained_model(photos, tmp_path / "dsah.pt", "dsah", 64, "--epochs", "1")
    first = run_cli("encode", model, photos, "-o", tmp_path / "first.h5", "--no-feature-cache")
    assert first.exit_code == 0, first.output
    copies = list(traced_networks_dir().glob(f"{read_store(tmp_path / 'first.h5').meta.model_digest}-*.pt"))
    assert len(copies) == 1

    second = subprocess.run([sys.executable, "-c", ENCODE_WITHOUT_TORCHVISION, "encode", str(model), str(photos),
                             "-o", str(tmp_path / "second.h5"), "--no-feature-cache"],
                            capture_output=True, text=True, check=True)
    assert "torchvision imported: False" in second.stdout, second.stdout + second.stderr
    assert np.array_equal(read_store(tmp_path / "second.h5").codes, read_store(tmp_path / "first.h5").codes)

    copies[0].write_bytes(b"not a traced network")
    assert traced_copy._load(copies[0], load_model(model).digest) is None
    third = run_cli("encode", model, photos, "-o", tmp_path / "third.h5", "--no-feature-cache")
    assert third.exit_code == 0, third.output
    assert np.array_equal(read_store(tmp_path / "third.h5").codes, read_store(tmp_path / "first.h5").codes)
    loaded = traced_copy.load_for_encoding(model, traced_networks_dir(), torch.device("cpu"))
    assert isinstance(loaded.network, torch.jit.ScriptModule)  # replaced by a loadable copy
    assert loaded.config == load_model(model).config and loaded.digest == load_model(model).digest


def test_only_the_most_recently_used_copies_are_kept(tmp_path):
    for age in range(traced_copy.KEPT_COPIES + 2):
        stale = tmp_path / f"{age}.pt"
        stale.write_bytes(b"")
        os.utime(stale, (1000 - age, 1000 - age))
    traced_copy._prune(tmp_path)
    assert sorted(int(p.stem) for p in tmp_path.glob("*.pt")) == list(range(traced_copy.KEPT_COPIES))


def test_copies_are_made_on_the_cpu_for_model_files_up_to_the_size_limit(tmp_path, monkeypatch):
    photos = noise_photos(tmp_path / "photos", 4, 64, ".png")
    model = trained_model(photos, tmp_path / "lsh.pt", "lsh", 64)
    loaded = traced_copy.load_for_encoding(model, tmp_path / "gpu", torch.device("cuda"))
    assert not isinstance(loaded.network, torch.jit.ScriptModule) and not (tmp_path / "gpu").exists()
    monkeypatch.setattr(traced_copy, "MAX_COPIED_BYTES", model.stat().st_size - 1)
    traced_copy.load_for_encoding(model, tmp_path / "big", torch.device("cpu"))
    assert not (tmp_path / "big").exists()
    monkeypatch.setattr(traced_copy, "MAX_COPIED_BYTES", model.stat().st_size)
    traced_copy.load_for_encoding(model, tmp_path / "cpu", torch.device("cpu"))
    assert len(list((tmp_path / "cpu").glob("*.pt"))) == 1


def test_a_copy_swapped_for_another_models_is_not_used(tmp_path):
    photos = noise_photos(tmp_path / "photos", 8, 64, ".png")
    stores = {}
    for seed in ("1", "2"):
        model = trained_model(photos, tmp_path / f"lsh{seed}.pt", "lsh", 64, "--seed", seed)
        result = run_cli("encode", model, photos, "-o", tmp_path / f"first{seed}.h5", "--no-feature-cache")
        assert result.exit_code == 0, result.output
        stores[seed] = read_store(tmp_path / f"first{seed}.h5")
    assert not np.array_equal(stores["1"].codes, stores["2"].codes)
    copy_of = {seed: next(traced_networks_dir().glob(f"{stores[seed].meta.model_digest}-*.pt")) for seed in stores}
    os.replace(copy_of["2"], copy_of["1"])  # model 2's copy under model 1's name

    again = run_cli("encode", tmp_path / "lsh1.pt", photos, "-o", tmp_path / "again.h5", "--no-feature-cache")
    assert again.exit_code == 0, again.output
    assert np.array_equal(read_store(tmp_path / "again.h5").codes, stores["1"].codes)
    assert traced_copy._load(copy_of["1"], stores["1"].meta.model_digest) is not None  # replaced by its own
