"""Parameter names of the original release's Gluon checkpoints, mapped to this project's.

The release (facebookresearch/OctConv, utils/gluon) names a parameter
``<prefix><layer>_<kind>`` with a per-network prefix (``R152_``, ``M075_``, ...); its
octave layers use the same ``L<s>_B<i>_conv1-h2h`` / ``_bn1-h`` names as this project,
its plain stem and tail BatchNorms have no ``-h`` suffix, and its classifier is a 1x1
convolution (weight ``[classes, C, 1, 1]``) where this project has a fully-connected
layer (``[classes, C]``). Covered: the release's Gluon ResNet v1 family and MobileNets.
"""
import re

__all__ = ["RELEASE_PREFIX", "ReleaseNameError", "to_release", "from_release"]

RELEASE_PREFIX = {
    "resnet50_v1b": "R50_", "resnext50_32x4d_v1b": "RX50_", "resnet152_v1e": "R152_",
    "resnet152_v1f": "R152_", "se_resnet152_v1e": "R152_", "mobilenet_v1_075": "M075_",
    "mobilenet_v1_100": "M100_", "mobilenet_v2_100": "M100_", "mobilenet_v2_1125": "M1125_",
}
_BN_KINDS = ("gamma", "beta", "running_mean", "running_var")
_OCTAVE_LAYER = re.compile(r"^L\d+_B\d+_")


class ReleaseNameError(ValueError):
    """Parameters that do not map between the release's names and this project's."""


def _prefix(model):
    if model not in RELEASE_PREFIX:
        raise ReleaseNameError(f"no release Gluon checkpoint layout for {model!r}; covered: "
                               f"{', '.join(sorted(RELEASE_PREFIX))}")
    return RELEASE_PREFIX[model]


def _split(name):
    for kind in _BN_KINDS + ("weight", "bias"):
        if name.endswith("_" + kind):
            return name[:-len(kind) - 1], kind
    raise ReleaseNameError(f"unexpected parameter name {name!r}")


def to_release(params, model):
    """This project's ``{name: array}`` under the release's names and shapes."""
    prefix, out = _prefix(model), {}
    for name, value in params.items():
        layer, kind = _split(name)
        if kind in _BN_KINDS and not _OCTAVE_LAYER.match(layer):
            if not layer.endswith("-h"):
                raise ReleaseNameError(f"{name}: a plain BatchNorm should end in -h")
            layer = layer[:-2]
        if layer == "classifier" and kind == "weight":
            value = value.reshape(value.shape + (1, 1))
        out[f"{prefix}{layer}_{kind}"] = value
    return out


def from_release(params, model, expected=None):
    """The release's ``{name: array}`` under this project's names and shapes.

    With ``expected`` (``{name: shape}`` of the target network) every name must map,
    nothing may be left over and every shape must match; ReleaseNameError says which not.
    """
    prefix, out = _prefix(model), {}
    for name, value in params.items():
        bare = name.split(":", 1)[-1]
        if not bare.startswith(prefix):
            raise ReleaseNameError(f"{name}: expected the release prefix {prefix!r} of {model}")
        layer, kind = _split(bare[len(prefix):])
        if kind in _BN_KINDS and not _OCTAVE_LAYER.match(layer):
            layer += "-h"
        if layer == "classifier" and kind == "weight" and value.ndim == 4:
            value = value.reshape(value.shape[:2])
        out[f"{layer}_{kind}"] = value
    if expected is not None:
        missing = sorted(set(expected) - set(out))
        extra = sorted(set(out) - set(expected))
        if missing:
            raise ReleaseNameError(f"release file lacks {missing[0]} ({len(missing)} missing)")
        if extra:
            raise ReleaseNameError(f"release parameter for {extra[0]} has no place in {model} "
                                   f"({len(extra)} left over)")
        for key, shape in expected.items():
            if tuple(out[key].shape) != tuple(shape):
                raise ReleaseNameError(f"{key}: release shape {tuple(out[key].shape)}, "
                                       f"network shape {tuple(shape)}")
    return out
