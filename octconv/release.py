"""Parameters of the original release's checkpoints, mapped to this project's.

The release (facebookresearch/OctConv; docs/ARCHITECTURES.md 1.8) saved its
networks in three forms, all read here:

* ``symbol``: the Symbol checkpoints of the ablation study (``prefix-NNNN.params``,
  ``arg:``/``aux:`` keys). Moving statistics are ``_moving_mean``/``_moving_var``,
  octave convolutions ``<layer>_conv-h2h``, the plain stem and tail BatchNorms have no
  ``-h``, DenseNet transitions are ``L<s>_Trans``, and squeeze-excitation is two fully
  connected layers: ``_se_fc1-h2h`` and ``-l2h`` read the high and low pools (this
  project: one 1x1 convolution over the concatenated pools), ``_se_fc2-h2h``/``-h2l``.
* ``gluon-names``: Gluon parameter names, ``<prefix><layer>_<kind>`` with a prefix per
  network (``R152_``, ``M075_``, ``D121_``...); plain BatchNorms have no ``-h``; the
  classifier is a 1x1 convolution (``[classes, C, 1, 1]``). Its ResNet v1 and MobileNet
  layers are named as here; its v2b ResNets and DenseNet count stages from 1 and blocks
  from 0 (DenseNet transitions are block 0) and name BatchNorms by position (``bn1``).
* ``gluon-file``: the keys ``save_parameters`` writes, which is how the release's
  training script saved the Gluon models it published: the attribute path of each
  parameter (``L1_B0.conv1.conv_h2h.weight``, ``conv1.0.weight``, ``classifer.weight``,
  sic).

A map is built from the target network's own parameter names and shapes (this
project -> the release), so reading a release file needs only the network. Baseline
(ratio -1) Symbol checkpoints are plain networks with strided convolutions, not this
project's alpha-0 networks: score their ``-symbol.json`` directly.
"""
import re
from dataclasses import dataclass

import numpy as np

from octconv.weights import as_array

__all__ = ["RELEASE", "FORMATS", "ReleaseNameError", "release_format", "release_map",
           "to_release", "from_release", "plain_in_gluon"]

FORMATS = ("symbol", "gluon-names", "gluon-file")

# The release's networks by this project's name: (API that saved them, Gluon prefix, naming).
RELEASE = {
    **{name: ("symbol", "", "resnet_v2") for name in (
        "resnet26_v2", "resnet50_v2", "resnet101_v2", "resnet152_v2", "resnet200_v2",
        "resnext50_32x4d_v2", "resnext101_32x4d_v2", "se_resnet50_v2")},
    **{name: ("symbol", "", "densenet") for name in (
        "densenet121", "densenet161", "densenet169", "densenet201")},
    "resnet50_v1b": ("gluon", "R50_", "as_here"),
    "resnext50_32x4d_v1b": ("gluon", "RX50_", "as_here"),
    "resnet152_v1e": ("gluon", "R152_", "as_here"),
    "resnet152_v1f": ("gluon", "R152_", "as_here"),
    "se_resnet152_v1e": ("gluon", "R152_", "as_here"),
    "se_resnet152_v1f": ("gluon", "R152_", "as_here"),
    "mobilenet_v1_075": ("gluon", "M075_", "as_here"),
    "mobilenet_v1_100": ("gluon", "M100_", "as_here"),
    "mobilenet_v2_100": ("gluon", "M100_", "as_here"),
    "mobilenet_v2_1125": ("gluon", "M1125_", "as_here"),
    "resnet50_v2b": ("gluon", "R50_", "v2b"),
    "resnext50_32x4d_v2b": ("gluon", "RX50_", "v2b"),
    "densenet121_octstem": ("gluon", "D121_", "densenet"),
}

_KINDS = ("running_mean", "running_var", "gamma", "beta", "weight", "bias")
_SYMBOL_KIND = {"running_mean": "moving_mean", "running_var": "moving_var"}
_UNIT = re.compile(r"^L(\d+)_B(\d+)_(.*)$")
_SE = re.compile(r"^(L\d+_B\d+)_se-conv(1|2-h|2-l)$")


class ReleaseNameError(ValueError):
    """Parameters that do not map between the release's names and this project's."""


@dataclass(frozen=True)
class Piece:
    """One tensor of the release: its key, its shape, and which channels (axis 1, a
    ``(start, stop)`` pair; None: all) of this project's tensor it holds."""

    key: str
    shape: tuple
    channels: tuple = None


def _split(name):
    for kind in _KINDS:
        if name.endswith("_" + kind):
            return name[:-len(kind) - 1], kind
    raise ReleaseNameError(f"unexpected parameter name {name!r}")


def _layout(model):
    if model not in RELEASE:
        raise ReleaseNameError(f"the release has no checkpoint layout for {model!r}; covered: "
                               f"{', '.join(sorted(RELEASE))}")
    return RELEASE[model]


def _position_bn(rest):
    """``conv2_bn-h`` (a BatchNorm named after the conv it feeds) -> ``bn2-h``."""
    return re.sub(r"^conv(\d)_bn-", r"bn\1-", rest)


def _gluon_layer(naming, layer):
    """This project's layer name -> the release's Gluon layer name (no prefix)."""
    if naming == "as_here":
        return layer if _UNIT.match(layer) else re.sub(r"-h$", "", layer)
    fixed = {"conv1_conv": "conv1", "conv1_bn-h": "bn1", "tail_bn-h": "tail-bn",
             "stem_conv-h2h": "conv1-h2h", "stem_conv-h2l": "conv1-h2l",
             "stem_bn-h": "bn1-h", "stem_bn-l": "bn1-l"}
    if layer in fixed:
        return fixed[layer]
    trans = re.match(r"^L(\d+)_trans_conv(_bn)?-(\w+)$", layer)
    if trans:
        stage, bn, branch = trans.groups()
        return f"L{int(stage) - 1}_B0_{'bn' if bn else 'conv'}-{branch}"
    unit = _UNIT.match(layer)
    if not unit:
        return layer
    stage, block, rest = int(unit[1]), int(unit[2]), _position_bn(unit[3])
    # v2b counts blocks from 0; DenseNet's stages after the first start with a transition
    block = block - 1 if naming == "v2b" or stage == 2 else block
    return f"L{stage - 1}_B{block}_{rest}"


def plain_in_gluon(model, layer):
    """Whether the release's Gluon code built this project's ``layer`` of ``model`` as a
    plain Gluon layer (``gluon.nn``, no octave wrapper). Its names tell: octave layers
    end in ``-h``/``-l``, plain ones do not."""
    return not re.search(r"-[hl]$", _gluon_layer(_layout(model)[2], layer))


def _symbol_layer(naming, layer):
    """This project's layer name -> the release's Symbol layer name."""
    fixed = {"conv1_bn-h": "conv1_bn", "tail_bn-h": "tail_bn",
             "stem_conv": "conv1_conv", "stem_bn-h": "conv1_bn"}
    if layer in fixed:
        return fixed[layer]
    if naming == "densenet":
        layer = re.sub(r"^L(\d+)_trans_conv", r"L\1_Trans_conv", layer)
    return re.sub(r"^(L\d+_(?:B\d+|Trans)_conv\d?)-", r"\1_conv-", layer)


# The release's Gluon parameter name (no prefix) -> the key save_parameters gives it.
_ATTRIBUTE_PATH = (
    (r"^(L\d+_B\d+)_se-conv1$", r"\1.se_block.conv1"),
    (r"^(L\d+_B\d+)_se-conv2-([hl])$", r"\1.se_block.conv2_\2"),
    (r"^(L\d+_B\d+)_(conv\d?)-(h2h|h2l|l2h|l2l)$", r"\1.\2.conv_\3"),
    (r"^(L\d+_B\d+)_(bn\w*)-([hl])$", r"\1.\2.bn_\3"),
    (r"^conv1-(h2h|h2l)$", r"conv1.conv_\1"),  # DenseNet's octave stem
    (r"^bn1-([hl])$", r"bn1.bn_\1"),
    (r"^stem2_(conv|bn)(\d)$", r"conv2.\1\2"),  # v1f: the bottleneck replacing max-pool
    (r"^classifier$", "classifer"),
)
# Children of the release's HybridSequential stems and tails, by index.
_SEQUENTIAL = {"conv1": "conv1.0", "bn1": "conv1.1", "stem_conv1": "conv1.0",
               "stem_bn1": "conv1.1", "stem_conv2": "conv1.3", "stem_bn2": "conv1.4",
               "stem_conv3": "conv1.6", "stem_bn3": "conv1.7", "tail-conv": "tail.0"}


def _attribute_path(layer, has_tail_conv):
    if layer in _SEQUENTIAL:
        return _SEQUENTIAL[layer]
    if layer == "tail-bn":
        return "tail.1" if has_tail_conv else "tail.0"
    for pattern, path in _ATTRIBUTE_PATH:
        if re.match(pattern, layer):
            return re.sub(pattern, path, layer)
    raise ReleaseNameError(f"no save_parameters key known for the release's layer {layer!r}")


def _symbol_se(layer, kind, shape, shapes):
    """Pieces of a squeeze-excitation parameter in the release's Symbol files."""
    block, which = _SE.match(layer).groups()
    if which != "1":
        path = "h2h" if which == "2-h" else "h2l"
        return [Piece(f"{block}_se_fc2-{path}_{kind}", tuple(shape[:2]))]
    if kind == "bias":
        return [Piece(f"{block}_se_fc1-h2h_bias", tuple(shape))]
    high = shapes[f"{block}_se-conv2-h_weight"][0]
    pieces = [Piece(f"{block}_se_fc1-h2h_weight", (shape[0], high), (0, high))]
    if shape[1] > high:
        pieces.append(Piece(f"{block}_se_fc1-l2h_weight", (shape[0], shape[1] - high),
                            (high, shape[1])))
    return pieces


def release_map(model, shapes, form):
    """``{this project's name: [Piece]}`` for ``model`` with parameter ``shapes``
    (``{name: shape}``), in the release's ``form`` (one of FORMATS)."""
    api, prefix, naming = _layout(model)
    if (api == "symbol") != (form == "symbol"):
        raise ReleaseNameError(f"the release saved {model} with its {api.title()} API, "
                               f"not as {form!r}")
    has_tail_conv = any(name.startswith("tail-conv_") for name in shapes)
    plan = {}
    for name, shape in shapes.items():
        layer, kind = _split(name)
        shape = tuple(shape)
        if form == "symbol":
            if _SE.match(layer):
                plan[name] = _symbol_se(layer, kind, shape, shapes)
                continue
            key = f"{_symbol_layer(naming, layer)}_{_SYMBOL_KIND.get(kind, kind)}"
        else:
            layer = _gluon_layer(naming, layer)
            key = (f"{prefix}{layer}_{kind}" if form == "gluon-names"
                   else f"{_attribute_path(layer, has_tail_conv)}.{kind}")
            if layer == "classifier" and kind == "weight":
                shape = shape + (1, 1)
        plan[name] = [Piece(key, shape)]
    return plan


def release_format(names, model):
    """Which release form the parameter ``names`` of a file are in, or None (this
    project's own names, or a network the release did not publish)."""
    if model not in RELEASE:
        return None
    api, prefix = RELEASE[model][:2]
    bare = [name.split(":", 1)[-1] for name in names]
    if api == "symbol":
        return "symbol" if any(n.endswith(("_moving_mean", "_moving_var")) for n in bare) else None
    if any("." in n for n in bare):
        return "gluon-file"
    return "gluon-names" if bare and all(n.startswith(prefix) for n in bare) else None


def to_release(params, model, form):
    """This project's ``{name: array}`` as the release's ``form`` would hold it."""
    out = {}
    for name, pieces in release_map(model, {n: v.shape for n, v in params.items()},
                                    form).items():
        for piece in pieces:
            value = params[name]
            if piece.channels:
                value = value[:, piece.channels[0]:piece.channels[1]]
            out[piece.key] = value.reshape(piece.shape)
    return out


def from_release(params, model, expected):
    """The release's ``{key: array}`` (any of FORMATS, ``arg:``/``aux:`` allowed) as
    ``{name: array}`` of this project's network, whose shapes are ``expected``.

    Every parameter must be found, nothing may be left over and every shape must
    match; ReleaseNameError says which not.
    """
    bare = {key.split(":", 1)[-1]: value for key, value in params.items()}
    form = release_format(bare, model)
    if form is None:
        raise ReleaseNameError(f"the names are in none of the release's forms for {model} "
                               f"(e.g. {next(iter(bare), 'none')!r})")
    if form == "symbol" and any(re.match(r"^L\d+_B\d+_conv\d_conv_weight$", k) for k in bare):
        raise ReleaseNameError(
            "a baseline (ratio -1) Symbol checkpoint: plain strided convolutions, not this "
            "project's alpha-0 network; score its -symbol.json directly")
    out, used = {}, set()
    for name, pieces in release_map(model, expected, form).items():
        for piece in pieces:
            if piece.key not in bare:
                raise ReleaseNameError(f"release file lacks {piece.key} (for {name})")
            if tuple(bare[piece.key].shape) != piece.shape:
                raise ReleaseNameError(f"{piece.key}: release shape {tuple(bare[piece.key].shape)}"
                                       f", network {name} needs {piece.shape}")
            used.add(piece.key)
        shape = tuple(expected[name])
        parts = [as_array(bare[p.key]).reshape((shape[0], -1) + shape[2:]) for p in pieces]
        out[name] = (parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)).reshape(shape)
    extra = sorted(set(bare) - used)
    if extra:
        raise ReleaseNameError(f"release parameter {extra[0]} has no place in {model} "
                               f"({len(extra)} left over)")
    return out
