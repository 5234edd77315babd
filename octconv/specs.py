"""The architectures as data: one entry per registered network name.

Figures from the original release, facebookresearch/OctConv, as docs/ARCHITECTURES.md
sets them out; "section N" below is a section of that page. Both APIs build these through the
builders of :mod:`octconv.builders`.
"""
import numbers
from dataclasses import dataclass, field

from octconv import builders, builders_video
from octconv.unit import EXCHANGE_PATHS, check_exchange

__all__ = ["check_options", "ResNetV2", "ResNetV1", "MobileNetV1", "MobileNetV2", "DenseNet",
           "VideoResNet", "SlowFastResNet", "ModelSpec", "MODELS", "get_spec", "image_sides",
           "sides_text", "images_shape", "model_names", "register"]

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


# resnet50_v1b's bottleneck settings (stride on the 3x3, no groups, SE or extra BNs), which
# the video networks' bottleneck shares; its units are not used there
V1B_BLOCK = ResNetV1(units=())

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
class VideoResNet:
    """A post-activation ResNet for clips (section 6): ``temporal[s][b]`` is the temporal
    kernel of block ``b``'s first 1x1 conv in stage ``s`` (1, or 3 where the block is
    inflated), ``conv1_t`` that of the stem (``stem`` channels); ``nonlocal_blocks[s]``
    the blocks of stage ``s`` followed by a non-local block; ``frames`` the clip length
    the paper counts."""

    temporal: tuple
    conv1_t: int = 1
    nonlocal_blocks: tuple = ((), (), (), ())
    frames: int = 8
    units: tuple = (3, 4, 6, 3)
    stem: int = 64
    mid: tuple = (64, 128, 256, 512)
    out: tuple = (256, 512, 1024, 2048)
    min_frames: int = 2         # the (2,1,1)/(2,1,1) pooling after L1 needs two frames
    block: ResNetV1 = V1B_BLOCK  # the bottleneck's settings
    pool1_padding: int = 0      # the stem's 3x3/2 max-pool: unpadded in the Non-local code
    classes: int = 400          # Kinetics-400, the classifier Table 6 counts
    figure_rule: str = "tool"   # Table 6's figures: the tool's rule without activations


@dataclass(frozen=True)
class SlowFastResNet:
    """SlowFast ResNet-50, 4x16 (section 6.3): the clip of ``frames`` feeds the fast
    pathway, every ``speed``-th frame the slow one; the fast pathway is ``fast_ratio``
    times narrower; laterals widen it ``lateral_ratio`` times with a ``lateral_kernel``
    temporal kernel; temporal kernels of the stems and of each stage's first convs."""

    frames: int = 32
    speed: int = 8
    fast_ratio: int = 8
    lateral_ratio: int = 2
    lateral_kernel: int = 5
    slow_stem_t: int = 1
    fast_stem_t: int = 5
    slow_temporal: tuple = (1, 1, 3, 3)
    fast_temporal: tuple = (3, 3, 3, 3)
    units: tuple = (3, 4, 6, 3)
    mid: tuple = (64, 128, 256, 512)
    out: tuple = (256, 512, 1024, 2048)
    min_frames: int = 1
    block: ResNetV1 = V1B_BLOCK  # the bottleneck's settings
    classes: int = 400
    figure_rule: str = "macs"   # Table 6 scales the SlowFast paper's multiply-adds


@dataclass(frozen=True)
class ModelSpec:
    builder: object
    arch: object
    bn: dict = field(default_factory=lambda: dict(GLUON_BN))

    @property
    def dims(self):
        """2 for an image network (N, 3, H, W), 3 for a video network (N, 3, T, H, W)."""
        return 3 if isinstance(self.arch, (VideoResNet, SlowFastResNet)) else 2

    @property
    def paper_classes(self):
        """The classifier width the paper's figures count: ImageNet's or Kinetics'."""
        return self.arch.classes if self.dims == 3 else 1000

    def input_shape(self, size, batch=1):
        """The network's input for images or frames of ``size`` (:func:`images_shape`;
        video: clips of the length the paper counts)."""
        return images_shape(size, batch, self.arch.frames if self.dims == 3 else None)

    def check_input(self, shape, name="network"):
        """ValueError naming the problem unless ``shape`` is an input this network takes:
        N x C x H x W images, or N x C x T x H x W clips of enough frames."""
        layout = "N x C x H x W images" if self.dims == 2 else "N x C x T x H x W clips"
        if len(shape) != self.dims + 2:
            raise ValueError(f"{name} takes {layout} ({self.dims + 2}-D), got a "
                             f"{len(shape)}-D input {tuple(shape)}")
        if self.dims == 3 and shape[2] < self.arch.min_frames:
            raise ValueError(f"{name}: a clip of {shape[2]} frame(s) is shorter than the "
                             f"network's temporal pooling stride ({self.arch.min_frames})")


MODELS = {}  # name -> ModelSpec; filled by register()


def register(name, builder=None, arch=None, bn=None):
    """Add the network ``name`` to the zoo of both APIs (``get_model`` / ``get_symbol``).

    ``builder(ops, x, arch, alpha, classes, dropout)`` writes the network once against
    the pair operations ``ops`` (see :mod:`octconv.builders`) and returns the logits of
    a fully connected layer named ``classifier``; ``arch`` is handed to it unchanged;
    ``bn`` the BatchNorm settings (Gluon's defaults unless given). Without ``builder``
    it returns a decorator that registers the function and returns it unchanged. A name
    already registered is a ValueError."""
    if builder is None:
        def decorate(fn):
            register(name, fn, arch, bn)
            return fn
        return decorate
    if name in MODELS:
        raise ValueError(f"a network named {name!r} is already registered")
    MODELS[name] = ModelSpec(builder, arch, dict(bn or GLUON_BN))
    return MODELS[name]


def _register_the_zoo():
    """The networks of the paper and of the original release (docs/ARCHITECTURES.md
    sections 2 and 3), and a small ResNet for the demo."""
    units = {26: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3),
             200: (3, 24, 36, 3)}
    resnext_mid = (128, 256, 512, 1024)  # 32x4d: 32 groups of 4, 8, 16, 32 channels
    for depth in (26, 50, 101, 152, 200):
        register(f"resnet{depth}_v2", builders.resnet_v2, ResNetV2(units=units[depth]),
                 SYMBOL_BN)
    for depth in (50, 101):
        register(f"resnext{depth}_32x4d_v2", builders.resnet_v2,
                 ResNetV2(units=units[depth], mid=resnext_mid, groups=32), SYMBOL_BN)
    register("se_resnet50_v2", builders.resnet_v2, ResNetV2(units=units[50], se_reduction=16),
             SYMBOL_BN)
    register("resnet50_v2b", builders.resnet_v2, ResNetV2(units=units[50], shortcut_bias=True))
    register("resnext50_32x4d_v2b", builders.resnet_v2,
             ResNetV2(units=units[50], mid=resnext_mid, groups=32, shortcut_bias=True))
    register("resnet50_v1b", builders.resnet_v1, ResNetV1(units=units[50]))
    register("resnext50_32x4d_v1b", builders.resnet_v1,
             ResNetV1(units=units[50], mid=resnext_mid, groups=32))
    for stem in ("v1e", "v1f"):
        register(f"resnet152_{stem}", builders.resnet_v1,
                 ResNetV1(units=units[152], stem=stem, stride_pos=2))
    for stem in ("v1e", "v1f"):  # the release's resnet152_<stem>(use_se=True)
        register(f"se_resnet152_{stem}", builders.resnet_v1,
                 ResNetV1(units=units[152], stem=stem, stride_pos=2, se_reduction=16,
                          extra_bn=True))
    for multiplier, suffix in ((0.75, "075"), (1.0, "100")):
        register(f"mobilenet_v1_{suffix}", builders.mobilenet_v1, MobileNetV1(multiplier))
    for multiplier, suffix in ((1.0, "100"), (1.125, "1125")):
        register(f"mobilenet_v2_{suffix}", builders.mobilenet_v2, MobileNetV2(multiplier))
    densenets = {121: (64, 32, (6, 12, 24, 16)), 161: (96, 48, (6, 12, 36, 24)),
                 169: (64, 32, (6, 12, 32, 32)), 201: (64, 32, (6, 12, 48, 32))}
    for depth, (stem, growth, stages) in densenets.items():
        register(f"densenet{depth}", builders.densenet, DenseNet(stem, growth, stages),
                 SYMBOL_BN)
    register("densenet121_octstem", builders.densenet,
             DenseNet(*densenets[121], octave_stem=True))
    # Not from the paper: a small ResNet v2 for the demo and the training tests (32 px).
    register("resnet10_v2_mini", builders.resnet_v2,
             ResNetV2(units=(1, 1, 1, 1), mid=(16, 32, 64, 128), out=(64, 128, 256, 512)),
             SYMBOL_BN)


_register_the_zoo()


def _register_the_video_zoo():
    """The ResNet-50 video networks of the paper's Table 6 (docs/ARCHITECTURES.md section
    6): C2D, I3D (the Non-local code's inflation: a 5x7x7 stem, 3x1x1 first convs in
    alternate blocks), I3D with five non-local blocks (after blocks 1, 3 of L2 and 1,
    3, 5 of L3) and SlowFast 4x16."""
    c2d = ((1, 1, 1), (1, 1, 1, 1), (1,) * 6, (1, 1, 1))
    i3d = ((3, 3, 3), (3, 1, 3, 1), (3, 1, 3, 1, 3, 1), (1, 3, 1))
    register("c2d_resnet50", builders_video.video_resnet, VideoResNet(temporal=c2d))
    register("i3d_resnet50", builders_video.video_resnet, VideoResNet(temporal=i3d, conv1_t=5))
    register("i3d_nl_resnet50", builders_video.video_resnet,
             VideoResNet(temporal=i3d, conv1_t=5, nonlocal_blocks=((), (1, 3), (1, 3, 5), ())))
    register("slowfast_resnet50", builders_video.slowfast_resnet, SlowFastResNet())
    # Not from the paper: small C2D / I3D networks for the moving digits and the tests.
    mini = dict(units=(1, 1, 1, 1), stem=16, mid=(8, 16, 32, 64), out=(32, 64, 128, 256))
    register("c2d_resnet10_mini", builders_video.video_resnet,
             VideoResNet(temporal=((1,),) * 4, **mini))
    register("i3d_resnet10_mini", builders_video.video_resnet,
             VideoResNet(temporal=((3,),) * 4, conv1_t=3, **mini))


_register_the_video_zoo()


def model_names():
    return sorted(MODELS)


def image_sides(size):
    """``(height, width)`` of an input ``size``: one side of a square, or the pair."""
    if isinstance(size, numbers.Integral):
        return int(size), int(size)
    height, width = size
    return int(height), int(width)


def sides_text(size):
    """``size`` as results print it: ``224x224`` for a side of 224, ``224x320`` for
    (224, 320)."""
    return "x".join(map(str, image_sides(size)))


def images_shape(size, batch=1, frames=None):
    """``(batch, 3, height, width)`` of RGB images of ``size`` (:func:`image_sides`), or
    ``(batch, 3, frames, height, width)`` of clips of ``frames`` such images."""
    return (batch, 3) + ((frames,) if frames else ()) + image_sides(size)


def get_spec(name):
    """The spec registered as ``name``; ValueError listing the valid names otherwise."""
    if name not in MODELS:
        raise ValueError(f"unknown network {name!r}; choose one of: {', '.join(model_names())}")
    return MODELS[name]


# keyword arguments every network accepts, with defaults
OPTIONS = {"dropout": 0.0, "last_gamma": False, "exchange": EXCHANGE_PATHS}


def check_options(kwargs):
    """``kwargs`` completed with the defaults of :data:`OPTIONS`; TypeError naming any
    unknown keyword and listing the valid ones; ``exchange`` checked and normalized."""
    unknown = sorted(set(kwargs) - set(OPTIONS))
    if unknown:
        raise TypeError(f"unknown keyword argument(s) {', '.join(unknown)}; valid: alpha, "
                        f"classes (num_classes in the Symbol API), {', '.join(OPTIONS)}")
    options = {**OPTIONS, **kwargs}
    options["exchange"] = check_exchange(options["exchange"])
    return options
