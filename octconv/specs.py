"""The architectures as data: one entry per registered network name.

Figures from the original release, facebookresearch/OctConv, as docs/ARCHITECTURES.md
sets them out; "section N" below is a section of that page. Both APIs build these through the
builders of :mod:`octconv.builders`.
"""
from dataclasses import dataclass, field

from octconv import builders

__all__ = ["check_options", "ResNetV2", "ResNetV1", "MobileNetV1", "MobileNetV2", "DenseNet", "ModelSpec", "MODELS", "get_spec", "model_names"]

# BatchNorm settings of the release's Symbol networks (section 1.6) and of Gluon's defaults.
SYMBOL_BN = dict(momentum=0.92, eps=1e-4)
GLUON_BN = dict(momentum=0.9, eps=1e-5)


@dataclass(frozen=True)
class ResNetV2:
    """Pre-activation bottleneck ResNet/ResNeXt (section 2.1, 2.2, 2.3)."""

    units: tuple
    mid: tuple = (64, 128, 256, 512)
    out: tuple = (256, 512, 1024, 2048)
    groups: int = 1
    se_reduction: int = 0       # 0: no squeeze-excitation
    shortcut_bias: bool = False  # v2b: the projection conv has a bias


@dataclass(frozen=True)
class ResNetV1:
    """Post-activation bottleneck ResNet/ResNeXt with its stem variant (section 3.3)."""

    units: tuple
    stem: str = "v1b"           # v1b: 7x7 conv; v1e, v1f: deep stems
    stride_pos: int = 1         # which conv of a strided block carries the stride
    mid: tuple = (64, 128, 256, 512)
    out: tuple = (256, 512, 1024, 2048)
    groups: int = 1
    se_reduction: int = 0
    extra_bn: bool = False      # no-affine BNs on the block input and shortcut (SE-152)


# (depthwise width, pointwise width, stride, octave depthwise, octave pointwise), x multiplier
_MOBILENET_V1_BLOCKS = (
    (32, 64, 1, 0, 1), (64, 128, 2, 1, 1), (128, 128, 1, 1, 1), (128, 256, 2, 1, 1),
    (256, 256, 1, 1, 1), (256, 512, 2, 1, 1), (512, 512, 1, 1, 1), (512, 512, 1, 1, 1),
    (512, 512, 1, 1, 1), (512, 512, 1, 1, 1), (512, 512, 1, 1, 0), (512, 1024, 2, 0, 0),
    (1024, 1024, 1, 0, 0))

# (expansion t, output width, stride), x multiplier; the input of block 0 is the stem
_MOBILENET_V2_BLOCKS = (
    (1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1), (6, 64, 2),
    (6, 64, 1), (6, 64, 1), (6, 64, 1), (6, 96, 1), (6, 96, 1), (6, 96, 1), (6, 160, 2),
    (6, 160, 1), (6, 160, 1), (6, 320, 1))


@dataclass(frozen=True)
class MobileNetV1:
    """Depthwise-separable blocks (section 3.1); octave flags per block."""

    multiplier: float
    blocks: tuple = _MOBILENET_V1_BLOCKS


@dataclass(frozen=True)
class MobileNetV2:
    """Inverted residuals (section 3.2); alpha on the hidden width of the first blocks."""

    multiplier: float
    blocks: tuple = _MOBILENET_V2_BLOCKS
    octave_blocks: int = 13     # blocks 13-16 run at 7x7 and use alpha 0
    last_channels: int = 1280   # x multiplier when the multiplier exceeds 1


@dataclass(frozen=True)
class DenseNet:
    """Dense stages with transitions (section 2.4, 3.5)."""

    init_channels: int
    growth: int
    units: tuple
    octave_stem: bool = False   # the release's Gluon DenseNet-121 makes the stem octave


@dataclass(frozen=True)
class ModelSpec:
    builder: object
    arch: object
    bn: dict = field(default_factory=lambda: dict(GLUON_BN))


_RESNEXT_MID = (128, 256, 512, 1024)  # 32x4d: 32 groups of 4, 8, 16, 32 channels
_RESNET_UNITS = {26: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
                 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}

MODELS = {}
for _depth, _units in _RESNET_UNITS.items():
    MODELS[f"resnet{_depth}_v2"] = ModelSpec(
        builders.resnet_v2, ResNetV2(units=_units), SYMBOL_BN)
for _depth in (50, 101):
    MODELS[f"resnext{_depth}_32x4d_v2"] = ModelSpec(
        builders.resnet_v2, ResNetV2(units=_RESNET_UNITS[_depth], mid=_RESNEXT_MID, groups=32),
        SYMBOL_BN)
MODELS["se_resnet50_v2"] = ModelSpec(
    builders.resnet_v2, ResNetV2(units=_RESNET_UNITS[50], se_reduction=16), SYMBOL_BN)

MODELS["resnet50_v2b"] = ModelSpec(
    builders.resnet_v2, ResNetV2(units=_RESNET_UNITS[50], shortcut_bias=True))
MODELS["resnext50_32x4d_v2b"] = ModelSpec(
    builders.resnet_v2, ResNetV2(units=_RESNET_UNITS[50], mid=_RESNEXT_MID, groups=32,
                                 shortcut_bias=True))
MODELS["resnet50_v1b"] = ModelSpec(
    builders.resnet_v1, ResNetV1(units=_RESNET_UNITS[50]))
MODELS["resnext50_32x4d_v1b"] = ModelSpec(
    builders.resnet_v1, ResNetV1(units=_RESNET_UNITS[50], mid=_RESNEXT_MID, groups=32))
MODELS["resnet152_v1e"] = ModelSpec(
    builders.resnet_v1, ResNetV1(units=_RESNET_UNITS[152], stem="v1e", stride_pos=2))
MODELS["resnet152_v1f"] = ModelSpec(
    builders.resnet_v1, ResNetV1(units=_RESNET_UNITS[152], stem="v1f", stride_pos=2))
MODELS["se_resnet152_v1e"] = ModelSpec(
    builders.resnet_v1, ResNetV1(units=_RESNET_UNITS[152], stem="v1e", stride_pos=2,
                                 se_reduction=16, extra_bn=True))

for _mult, _suffix in ((0.75, "075"), (1.0, "100")):
    MODELS[f"mobilenet_v1_{_suffix}"] = ModelSpec(
        builders.mobilenet_v1, MobileNetV1(multiplier=_mult))
for _mult, _suffix in ((1.0, "100"), (1.125, "1125")):
    MODELS[f"mobilenet_v2_{_suffix}"] = ModelSpec(
        builders.mobilenet_v2, MobileNetV2(multiplier=_mult))
_DENSENETS = {121: (64, 32, (6, 12, 24, 16)), 161: (96, 48, (6, 12, 36, 24)),
              169: (64, 32, (6, 12, 32, 32)), 201: (64, 32, (6, 12, 48, 32))}
for _depth, (_init, _growth, _units) in _DENSENETS.items():
    MODELS[f"densenet{_depth}"] = ModelSpec(
        builders.densenet, DenseNet(_init, _growth, _units), SYMBOL_BN)
MODELS["densenet121_octstem"] = ModelSpec(
    builders.densenet, DenseNet(*_DENSENETS[121], octave_stem=True))

# Not from the paper: a small ResNet v2 for the demo and the training tests (32 px).
MODELS["resnet10_v2_mini"] = ModelSpec(
    builders.resnet_v2, ResNetV2(units=(1, 1, 1, 1), mid=(16, 32, 64, 128),
                                 out=(64, 128, 256, 512)), SYMBOL_BN)


def model_names():
    return sorted(MODELS)


def get_spec(name):
    """The spec registered as ``name``; ValueError listing the valid names otherwise."""
    if name not in MODELS:
        raise ValueError(f"unknown network {name!r}; choose one of: {', '.join(model_names())}")
    return MODELS[name]


# keyword arguments every network accepts, with defaults
OPTIONS = {"dropout": 0.0, "last_gamma": False}


def check_options(kwargs):
    """``kwargs`` completed with the defaults of :data:`OPTIONS`; TypeError naming any
    unknown keyword and listing the valid ones."""
    unknown = sorted(set(kwargs) - set(OPTIONS))
    if unknown:
        raise TypeError(f"unknown keyword argument(s) {', '.join(unknown)}; valid: alpha, "
                        f"classes (num_classes in the Symbol API), {', '.join(OPTIONS)}")
    return {**OPTIONS, **kwargs}
