"""Traced copies of model networks (``torch.jit.trace``) in the user cache, so that ``hashkit
encode`` on the CPU starts without importing torchvision: its import, which pulls in torch._dynamo,
is a large part of a one-image encode (benchmarks/results/encode.md).

The first CPU encode with a model file builds its network as usual and saves a traced copy, kept
only when it gives the network's outputs, and its backbone's and head's, bit for bit on a batch of
another size than the one traced, and saved with the model's config, so that later encodes only
hash the model file. Copies are named by the model file's sha256 and the torch version; one that
cannot be loaded is ignored (and replaced). The folder keeps the KEPT_COPIES most recently used
copies (each about its model file's size); model files over MAX_COPIED_BYTES get none, so that
the cache stays small (building such a network and reading its weights is slow anyway),
and none is written where the disk has no room for it. A copy also holds its model file's sha256,
checked on load: a copy renamed or swapped in the cache is never used for another model."""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from pathlib import Path

import torch

from hashkit.hashing.errors import existing_file
from hashkit.hashing.files.disk_space import METADATA_BYTES, room_for
from hashkit.hashing.files.outputs import file_digest

from .model_file import LoadedModel, network_from_state, read_model_file
from .network import HashNetwork

TRACE_BATCH, CHECK_BATCH = 2, 3  # images in the traced example and in the check
KEPT_COPIES = 8
MAX_COPIED_BYTES = 256 << 20  # VGG16-based model files (about 0.5 GB) get no copy, ResNet-50-based ones (0.1 GB) do
CONFIG_FILE = "hashkit_config.json"  # the model config and sha256, saved in the copy: the model file is only hashed


def load_for_encoding(path: Path, copies: Path | None, device: torch.device) -> LoadedModel:
    """The model file ``path`` loaded for encoding on ``device``: on the CPU, its network and config
    from its traced copy in the folder ``copies`` (None: none kept) when there is one, else built
    and, when its trace checks out, copied there. On a GPU, or for a model file over
    MAX_COPIED_BYTES, always built (a trace may hold CPU constants)."""
    path = existing_file(path, "model file")
    digest = file_digest(path)
    copied = copies is not None and device.type == "cpu" and path.stat().st_size <= MAX_COPIED_BYTES
    copy = Path(copies) / f"{digest}-torch{torch.__version__}.pt" if copied else None
    if copy is not None and copy.is_file() and (traced := _load(copy, digest)) is not None:
        with contextlib.suppress(OSError):  # another run may have just pruned it
            os.utime(copy)  # recently used: kept by _prune
        return LoadedModel(*traced, digest)
    config, state = read_model_file(path)
    model = LoadedModel(network_from_state(config, state, path), config, digest)
    if copy is not None:
        _save(model, copy)
        _prune(copy.parent)
    return model


def _load(copy: Path, digest: str) -> tuple[torch.jit.ScriptModule, dict] | None:
    """The traced network in ``copy`` and the model config saved with it (checked when it was made),
    if it was made from the model file of sha256 ``digest``."""
    try:
        extra = {CONFIG_FILE: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still there in 2.x
            network = torch.jit.load(copy, map_location="cpu", _extra_files=extra).eval()
        saved = json.loads(extra[CONFIG_FILE])
        return (network, saved["config"]) if saved["model_sha256"] == digest else None
    except Exception:  # noqa: BLE001 - a damaged, foreign or older copy is only a slower start
        return None


@torch.no_grad()
def _save(model: LoadedModel, copy: Path) -> None:
    """Trace ``model.network``'s backbone and head (the trace of a whole network cannot call them
    alone) into the file ``copy``, if the traces reproduce them exactly."""
    size = model.config["image_size"]
    generator = torch.Generator().manual_seed(0)
    example, check = (torch.rand(n, 3, size, size, generator=generator) for n in (TRACE_BATCH, CHECK_BATCH))
    network = model.network
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation and tracer warnings: the check below decides
            backbone = torch.jit.trace(network.backbone, example)
            traced = torch.jit.script(HashNetwork(backbone, torch.jit.trace(network.head, backbone(example))))
            features = network.backbone(check)
            codes = network.head(features)  # the network's output: its forward is head(backbone(images))
            exact = (torch.equal(traced(check), codes) and torch.equal(traced.backbone(check), features)
                     and torch.equal(traced.head(features), codes))
            if not exact:
                return
            saved = json.dumps({"config": model.config, "model_sha256": model.digest})
            buffer = io.BytesIO()  # torch aborts the process when a write to a file fails (a full disk)
            torch.jit.save(traced, buffer, _extra_files={CONFIG_FILE: saved})
            copy.parent.mkdir(parents=True, exist_ok=True)
            temporary = copy.with_name(f"{copy.name}.{os.getpid()}.tmp")  # concurrent runs write apart
            try:
                if room_for(temporary) >= len(buffer.getbuffer()) + METADATA_BYTES:
                    temporary.write_bytes(buffer.getbuffer())
                    os.replace(temporary, copy)
            finally:
                temporary.unlink(missing_ok=True)
    except Exception:  # noqa: BLE001 - a network that does not trace, or an unwritable or full cache: no copy
        return


def _prune(folder: Path) -> None:
    """Remove all but the KEPT_COPIES most recently used copies in ``folder``."""
    with contextlib.suppress(OSError):  # a copy removed meanwhile by another run pruning
        copies = sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in copies[KEPT_COPIES:]:
            stale.unlink(missing_ok=True)
