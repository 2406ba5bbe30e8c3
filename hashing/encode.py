"""``hashkit encode``: images to binary codes appended to an HDF5 code store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from . import __version__
from .checkpoint import load_checkpoint
from .data import ImageFiles, eval_transform
from .errors import UserError
from .images import resolve_inputs
from .locking import exclusive_lock
from .progress import progress
from .runtime import default_workers, resolve_device
from .store import CodeStoreWriter, StoreMeta, pack_codes


@dataclass
class EncodeSummary:
    store: str
    encoded: int
    already_present: int
    total: int
    unreadable: list[str] = field(default_factory=list)


@torch.no_grad()
def encode(model_path: Path, inputs: list[Path], output: Path, batch_size: int = 64,
           workers: int | None = None, device: str = "auto", overwrite: bool = False) -> EncodeSummary:
    """Encode every image named by ``inputs`` into the store ``output``.

    An existing store of the same model is appended to, skipping paths it already holds.
    """
    output = Path(output)
    model = load_checkpoint(model_path)
    paths = resolve_inputs(inputs)
    if not paths:
        raise UserError(f"no images found in {', '.join(map(str, inputs))}")
    config = model.config
    meta = StoreMeta(config["bits"], config["method"], model.digest, config["backbone"], __version__)
    torch_device = resolve_device(device)
    with exclusive_lock(output):
        if overwrite:
            output.unlink(missing_ok=True)
        with CodeStoreWriter(output, meta) as store:
            present = set(store.paths())
            todo = [p for p in paths if str(p) not in present]
            transform = eval_transform(config["image_size"], config["mean"], config["std"])
            num_workers = default_workers() if workers is None else workers
            # Workers come from a fork server, not forked from this process: a forked worker would
            # inherit the open HDF5 store and the lock, and hold both after this process is killed.
            loader = DataLoader(ImageFiles(todo, transform, config["image_size"]), batch_size=batch_size,
                                num_workers=num_workers, multiprocessing_context="forkserver" if num_workers else None)
            network = model.network.to(torch_device)
            unreadable = []
            for images, indices, ok in progress(loader, desc="encoding", unit="batch"):
                unreadable += [str(todo[i]) for i in indices[~ok]]
                if ok.any():
                    codes = pack_codes(network(images[ok].to(torch_device)).cpu().numpy())
                    store.append(codes, [str(todo[i]) for i in indices[ok]])
            total = store.count
    return EncodeSummary(str(output), len(todo) - len(unreadable), len(paths) - len(todo), total, unreadable)
