"""torch models: the same small CNN as the Keras one, ResNets and MobileNetV2 (torchvision's
when it is importable, else plain-torch models of the same layout). All return logits.

:func:`export_model` saves one as a ``torch.export`` program that takes the images as stored
(``uint8[N, H, W, 3]``) and applies the evaluation transform itself: ``torch.export.load(path)
.module()(images)`` gives logits in any process, without this package.
"""

from __future__ import annotations

from typing import Dict, List

import torch
from torch import nn

from ray_ingest.augment import AugmentConfig, torch_ops
from ray_ingest.errors import CheckpointError, ConfigError


def small_cnn(num_classes: int) -> nn.Module:
    layers, cin = [], 3
    for i, width in enumerate((32, 64, 128, 128)):
        layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False),
                   nn.BatchNorm2d(width, momentum=0.1), nn.ReLU(inplace=True)]
        if i < 3:
            layers.append(nn.MaxPool2d(2))
        cin = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.down = None
        if stride != 1 or cin != width:
            self.down = nn.Sequential(nn.Conv2d(cin, width, 1, stride, bias=False),
                                      nn.BatchNorm2d(width))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    """The torchvision ResNet layout (stem, four stages, average pool, linear)."""

    def __init__(self, block, depths, num_classes):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], 64
        for i, (width, depth) in enumerate(zip((64, 128, 256, 512), depths)):
            for j in range(depth):
                stages.append(block(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * block.expansion
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
             act: bool = True) -> List[nn.Module]:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU6(inplace=True)] if act else layers


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = _conv_bn(cin, hidden, 1) if expand != 1 else []
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv_bn(hidden, cout, 1, act=False)
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    """The torchvision MobileNetV2 layout (width 1.0): stem, 17 inverted residual blocks,
    a 1280-channel head, average pool, dropout, linear."""

    #: (expansion, channels, repeats, first stride) per stage.
    STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
              (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes: int):
        super().__init__()
        layers, cin = _conv_bn(3, 32, 3, 2), 32
        for expand, cout, repeats, stride in self.STAGES:
            for i in range(repeats):
                layers.append(_InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers += _conv_bn(cin, 1280, 1)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                                  nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


def _plain(name: str, num_classes: int) -> nn.Module:
    if name == "resnet18":
        return ResNet(_Basic, (2, 2, 2, 2), num_classes)
    if name == "resnet50":
        return ResNet(_Bottleneck, (3, 4, 6, 3), num_classes)
    return MobileNetV2(num_classes)


def build_model(name: str, num_classes: int) -> nn.Module:
    if name == "small_cnn":
        return small_cnn(num_classes)
    if name in ("resnet18", "resnet50", "mobilenet_v2"):
        try:
            import torchvision

            return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
        except Exception:  # noqa: BLE001 - not installed, or a build that does not import
            return _plain(name, num_classes)
    raise ConfigError(f"model {name!r} is not available for torch")


class Inference(nn.Module):
    """``uint8[N, H, W, 3]`` images of any size → logits: the evaluation transform (resize to
    the training size, normalise: ``torch_ops.evaluate``), then ``model``."""

    def __init__(self, model: nn.Module, aug: AugmentConfig):
        super().__init__()
        self.model = model
        self.aug = aug

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(torch_ops.evaluate(images, self.aug, resize_always=True))


#: The wrapped model's parameters and buffers in an exported program: ``model.<name>``.
_PREFIX = "model."


def export_model(model: nn.Module, name: str, num_classes: int, aug: AugmentConfig,
                 path: str) -> None:
    """Saves ``model`` (the architecture ``name``, on any device, left as it is) to ``path`` as
    a ``torch.export`` program of :class:`Inference` on the CPU, in float32 and eval mode, with a
    dynamic batch size, height and width."""
    copy = build_model(name, num_classes)
    copy.load_state_dict(model.state_dict())
    wrapper = Inference(copy.eval(), aug).eval()
    example = torch.zeros(2, aug.size, aug.size, 3, dtype=torch.uint8)
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("height", min=2),
            2: torch.export.Dim("width", min=2)}
    program = torch.export.export(wrapper, (example,), dynamic_shapes=(dims,))
    torch.export.save(program, path)


def load_exported_weights(path: str, model: nn.Module) -> None:
    """Loads the parameters and buffers of a program saved by :func:`export_model` into
    ``model`` (the same architecture), exactly."""
    program = torch.export.load(path)
    state: Dict[str, torch.Tensor] = {k[len(_PREFIX):]: v for k, v in program.state_dict.items()
                                      if k.startswith(_PREFIX)}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: its weights do not fit this model: {e}") from None
