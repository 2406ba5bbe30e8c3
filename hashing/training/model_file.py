"""Model files: weights plus a JSON config, loadable with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from hashkit.hashing.errors import UserError, existing_file, refuse_newer_schema
from hashkit.hashing.files.outputs import file_digest, write_torch
from hashkit.hashing.memory import MAX_BITS, MAX_INPUT_SIZE, MAX_WIDTH
from hashkit.hashing.methods import Method, saved_method

from .network import HashNetwork

SCHEMA = "hashkit.model"
SCHEMA_VERSION = 2  # 2: the head is a module of its own (state keys "head.*"); classes in the config


@dataclass
class LoadedModel:
    network: HashNetwork | torch.jit.ScriptModule  # the latter: a traced copy (``traced_copy``)
    config: dict
    digest: str  # sha256 of the model file, identifies the codes it makes


def build_network(method: Method, backbone: str, weights: str, bits: int, hidden: int,
                  classes: int) -> HashNetwork:
    """The network of ``method``: the backbone (pooled features or feature maps) and its head."""
    from .backbones import backbone_spec, build_backbone, output_size  # torchvision: slow to import

    trunk = build_backbone(backbone, weights, maps=method.uses_maps)  # first: the seeded draws stay in order
    head = method.build_head(output_size(backbone_spec(backbone), method.uses_maps), bits, hidden, classes)
    return HashNetwork(trunk, head)


def save_model(path: Path, network: HashNetwork, config: dict) -> None:
    """Write the model file; it appears under ``path`` only once completely written."""
    config = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **config}
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    write_torch(path, {"config": json.dumps(config, sort_keys=True), "state_dict": state})


def load_model(path: Path) -> LoadedModel:
    """Load a model file safely (weights only; no code in the file is ever run)."""
    config, state = read_model_file(path)
    return LoadedModel(network_from_state(config, state, path), config, file_digest(path))


def read_model_file(path: Path) -> tuple[dict, dict]:
    """A model file's checked config and its weights, without building its network."""
    path = existing_file(path, "model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        config = json.loads(payload["config"])
        state = payload["state_dict"]
    except Exception as error:  # noqa: BLE001 - any failure means this is not a usable model file
        raise UserError(f"{path} is not a readable hashkit model file ({type(error).__name__})") from error
    if not isinstance(config, dict) or config.get("schema") != SCHEMA or not isinstance(state, dict):
        raise UserError(f"{path} is not a hashkit model file")
    _check_config(config, path)
    return config, state


def network_from_state(config: dict, state: dict, path: Path) -> HashNetwork:
    """The network of a model file (``path``, for errors) from its config and weights, in eval mode."""
    method = saved_method(config["method"], config.get("params", {}))
    network = build_network(method, config["backbone"], "none", config["bits"], config.get("hidden", 0),
                            len(config.get("classes", [])))
    if config.get("schema_version") == 1:  # the hash layer and hidden layer sat on the network itself
        state = {k if k.startswith("backbone.") else f"head.{k}": v for k, v in state.items()}
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise UserError(f"{path}: weights do not match its config ({str(error).splitlines()[0]})") from error
    return network.eval()


CONFIG_FIELDS = {  # key: (type, test of a valid value, what a valid value is)
    "method": (str, bool, "a method name"),
    "bits": (int, lambda v: 0 < v <= MAX_BITS and v % 8 == 0, f"a positive multiple of 8 up to {MAX_BITS}"),
    "backbone": (str, bool, "a backbone name"),
    "image_size": (int, lambda v: 32 <= v <= MAX_INPUT_SIZE, f"from 32 to {MAX_INPUT_SIZE}"),
    "hidden": (int, lambda v: 0 <= v <= MAX_WIDTH, f"from 0 to {MAX_WIDTH}"),
    "mean": (list, lambda v: len(v) == 3, "three numbers"),
    "std": (list, lambda v: len(v) == 3 and all(x > 0 for x in v), "three positive numbers"),
    "params": (dict, lambda v: True, "a dict"),
    "classes": (list, lambda v: True, "a list"),
    "frozen_backbone": (bool, lambda v: True, "true or false"),
    "backbone_digest": (str, lambda v: len(v) == 64 and all(c in "0123456789abcdef" for c in v), "a SHA-256 in hex"),
}
OPTIONAL_FIELDS = ("hidden", "params", "classes", "frozen_backbone", "backbone_digest")  # older model files lack them


def _check_config(config: dict, path: Path) -> None:
    """Every field a model needs, of the right type and range, or a UserError naming the first bad one."""
    version = config.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise UserError(f"{path}: the model config's 'schema_version' is {version!r}; it must be a whole number")
    refuse_newer_schema(path, "model", version, SCHEMA_VERSION)
    for key, (kind, valid, meaning) in CONFIG_FIELDS.items():
        if key not in config and key in OPTIONAL_FIELDS:
            continue
        value = config.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool) or not valid(value):
            raise UserError(f"{path}: the model config's {key!r} is {value!r}; it must be {meaning}")
    if config.get("frozen_backbone") and "backbone_digest" not in config:
        raise UserError(f"{path}: the model config has a frozen backbone but no 'backbone_digest'")
