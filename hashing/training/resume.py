"""Training checkpoints: after every epoch, everything a run needs to continue after a crash and
reach the result it would have reached uninterrupted.

A checkpoint (``MODEL.checkpoint`` beside the model file, written atomically, loaded with
``torch.load(weights_only=True)``) holds the network and optimiser states, the method's evolving
state (auxiliary codes, refined similarities, class anchors, its random generators), the
trainer's and the global random generators, the losses so far and a fingerprint of the options
and training images, so that a checkpoint is never continued with other settings or data.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hashkit.hashing.errors import UserError
from hashkit.hashing.files.outputs import write_torch

SCHEMA = "hashkit.checkpoint"
SCHEMA_VERSION = 1


def checkpoint_path(model_path: Path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".checkpoint")


def fingerprint(options: dict, paths: list[Path]) -> str:
    """SHA-256 of the training options and image paths a checkpoint belongs to."""
    digest = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode())
    for path in paths:
        digest.update(os.fsencode(path) + b"\0")  # a name need not be UTF-8
    return digest.hexdigest()


def snapshot(value: Any) -> Any:
    """``value`` in types ``torch.load(weights_only=True)`` reads back: arrays and random
    generators become tagged tensors or dicts. Other objects are an error, so no state is
    silently dropped."""
    if isinstance(value, np.ndarray):
        return {"ndarray": torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, np.random.Generator):
        return {"numpy_generator": value.bit_generator.state}
    if isinstance(value, torch.Generator):
        return {"torch_generator": value.get_state()}
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, (list, tuple)):
        return type(value)(snapshot(item) for item in value)
    if isinstance(value, dict):
        return {key: snapshot(item) for key, item in value.items()}
    if value is None or isinstance(value, (bool, int, float, str, np.integer, np.floating)):
        return value.item() if isinstance(value, (np.integer, np.floating)) else value
    raise TypeError(f"cannot checkpoint a {type(value).__name__}")


def restored(value: Any) -> Any:
    """The inverse of ``snapshot``."""
    if isinstance(value, dict) and value.keys() == {"ndarray"}:
        return value["ndarray"].numpy()
    if isinstance(value, dict) and value.keys() == {"numpy_generator"}:
        generator = np.random.default_rng()
        generator.bit_generator.state = value["numpy_generator"]
        return generator
    if isinstance(value, dict) and value.keys() == {"torch_generator"}:
        generator = torch.Generator()
        generator.set_state(value["torch_generator"])
        return generator
    if isinstance(value, (list, tuple)):
        return type(value)(restored(item) for item in value)
    if isinstance(value, dict):
        return {key: restored(item) for key, item in value.items()}
    return value


def object_state(obj: object) -> dict[str, Any]:
    """The attributes of ``obj`` as ``snapshot``s, but for modules and functions, which the
    network and the method's setup() build again."""
    return {name: snapshot(value) for name, value in vars(obj).items() if not isinstance(value, (nn.Module, Callable))}


def load_object_state(obj: object, state: dict[str, Any]) -> None:
    for name, value in state.items():
        setattr(obj, name, restored(value))


def global_random_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's global random states."""
    _, keys, position, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [snapshot(keys.astype(np.int64)), position, has_gauss, gauss],
            "torch": torch.get_rng_state()}


def set_global_random_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", restored(keys).astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"])


def save(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint; it appears under ``path`` only once complete."""
    write_torch(path, {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **state})


def load(path: Path, expected_fingerprint: str) -> dict[str, Any]:
    """A checkpoint of this run (same options and images), or a UserError saying why not."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure means the checkpoint is unusable
        raise UserError(f"{path} is not a readable hashkit checkpoint ({type(error).__name__}); "
                        "delete it to train from the start") from error
    if not isinstance(state, dict) or state.get("schema") != SCHEMA or state.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{path} is not a hashkit checkpoint of this version; delete it to train from the start")
    if state["fingerprint"] != expected_fingerprint:
        raise UserError(f"{path} was made with other options or training images; train with the same "
                        "command to resume, or delete it to start again")
    return state
