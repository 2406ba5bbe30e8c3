"""torchvision backbones with their weights, as image-to-feature-vector networks or as
convolutional trunks that keep the last feature maps (for heads with attention, VLAD or parts)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from hashkit.hashing.errors import UserError


@dataclass(frozen=True)
class BackboneSpec:
    constructor: Callable[..., nn.Module]
    weights: torchvision.models.WeightsEnum
    feature_dim: int
    to_features: Callable[[nn.Module], nn.Module]  # torchvision classifier -> feature extractor
    map_channels: int
    to_maps: Callable[[nn.Module], nn.Module]  # torchvision classifier -> last convolutional maps


def _drop_last_classifier_layer(model: nn.Module) -> nn.Module:
    model.classifier = nn.Sequential(*list(model.classifier.children())[:-1])
    return model


def _drop_classifier(model: nn.Module) -> nn.Module:
    model.classifier = nn.Identity()
    return model


def _drop_fc(model: nn.Module) -> nn.Module:
    model.fc = nn.Identity()
    return model


def _convolutional_features(model: nn.Module) -> nn.Module:
    return model.features


def _resnet_trunk(model: nn.Module) -> nn.Module:
    return nn.Sequential(*list(model.children())[:-2])  # drop global pooling and fc


M = torchvision.models
BACKBONES: dict[str, BackboneSpec] = {
    "mobilenet_v2": BackboneSpec(M.mobilenet_v2, M.MobileNet_V2_Weights.IMAGENET1K_V1, 1280, _drop_classifier,
                                 1280, _convolutional_features),
    "resnet18": BackboneSpec(M.resnet18, M.ResNet18_Weights.IMAGENET1K_V1, 512, _drop_fc, 512, _resnet_trunk),
    "resnet50": BackboneSpec(M.resnet50, M.ResNet50_Weights.IMAGENET1K_V1, 2048, _drop_fc, 2048, _resnet_trunk),
    "vgg16": BackboneSpec(M.vgg16, M.VGG16_Weights.IMAGENET1K_V1, 4096, _drop_last_classifier_layer,
                          512, _convolutional_features),
    "alexnet": BackboneSpec(M.alexnet, M.AlexNet_Weights.IMAGENET1K_V1, 4096, _drop_last_classifier_layer,
                            256, _convolutional_features),
}
# ImageNet statistics, used by every torchvision classification weight set above.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def output_size(spec: BackboneSpec, maps: bool) -> int:
    """Width of the backbone output: feature dimensions, or channels of the maps."""
    return spec.map_channels if maps else spec.feature_dim


def backbone_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def build_backbone(name: str, weights: str = "imagenet", maps: bool = False) -> nn.Module:
    """The backbone ``name`` mapping an image batch to (B, feature_dim) features, or with
    ``maps`` to its last convolutional feature maps (B, map_channels, h, w).

    ``weights``: ``imagenet`` (torchvision's weights API; it reads its local cache
    ``$TORCH_HOME/hub/checkpoints`` first and downloads only when the file is missing),
    ``none`` (random initialisation) or the path of a torchvision state dict for this model.
    """
    spec = backbone_spec(name)
    if weights == "imagenet":
        try:
            model = spec.constructor(weights=spec.weights)
        except (OSError, RuntimeError) as error:  # URLError is an OSError
            cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(spec.weights.url).name
            raise UserError(f"ImageNet weights for {name} are not in {cache} and could not be "
                            f"downloaded ({type(error).__name__}); place the file there or use "
                            "--weights none|PATH") from error
    else:
        model = spec.constructor(weights=None)
        if weights != "none":
            _load_state_dict(model, Path(weights), name)
    return spec.to_maps(model) if maps else spec.to_features(model)


def _load_state_dict(model: nn.Module, path: Path, name: str) -> None:
    if not path.is_file():
        raise UserError(f"--weights: no such file: {path} (expected imagenet, none or a path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as error:  # noqa: BLE001 - any failure here means a wrong or damaged file
        raise UserError(f"{path} is not a {name} state dict: {str(error).splitlines()[0]}") from error
