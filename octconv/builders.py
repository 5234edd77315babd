"""Every network family, written once against the pair-ops interface ``ops``.

A builder takes ``ops`` (the Symbol backend in :mod:`octconv.symbol.zoo` or the Gluon
backend in :mod:`octconv.gluon.zoo`), the input pair and a spec from
:mod:`octconv.specs`, and returns the logits. Its control flow depends only on the spec,
never on data, so both backends build the same graph with the same parameter names.

``ops`` provides: ``conv`` (octave), ``plain_conv`` (strided, for stems), ``bn``,
``act``, ``pool``, ``global_pool``, ``add``, ``concat``, ``se``, ``dropout``, ``dense``.
"Section N" in a docstring is a section of docs/ARCHITECTURES.md.
"""
from octconv.unit import split_channels

__all__ = ["resnet_v2", "resnet_v1", "mobilenet_v1", "mobilenet_v2", "densenet"]


def _head(ops, x, channels, classes, dropout):
    """Global average pool -> flatten -> dropout -> fully-connected ``classifier``."""
    x = ops.global_pool(x)
    return ops.dense(ops.dropout(x, dropout), "classifier", channels, classes)


def _preact_conv(ops, x, name, in_c, out_c, kernel, alpha_in, alpha_out, stride=1, groups=1,
                 use_bias=False):
    """BN (``<name>_bn``) -> ReLU -> OctConv ``<name>``."""
    x = ops.act(ops.bn(x, f"{name}_bn", in_c, alpha_in), "relu")
    return ops.conv(x, name, in_c, out_c, kernel, stride=stride, alpha_in=alpha_in,
                    alpha_out=alpha_out, groups=groups, use_bias=use_bias)


def _preact_bottleneck(ops, x, name, in_c, mid, out, stride, alpha_in, alpha, groups,
                       se_reduction, project, shortcut_bias):
    """Pre-activation bottleneck (section 2.1, 3.4).

    BN-ReLU-1x1 (conv1) -> BN-ReLU-3x3 with the stride and groups (conv2) -> BN-ReLU-1x1
    (conv3) -> [SE] ; shortcut: BN-ReLU-1x1 with the stride (conv4, its own BN, a bias
    if ``shortcut_bias``) when ``project``, else identity ; sum, no activation.
    """
    y = _preact_conv(ops, x, f"{name}_conv1", in_c, mid, 1, alpha_in, alpha)
    y = _preact_conv(ops, y, f"{name}_conv2", mid, mid, 3, alpha, alpha, stride, groups)
    y = _preact_conv(ops, y, f"{name}_conv3", mid, out, 1, alpha, alpha)
    if se_reduction:
        y = ops.se(y, f"{name}_se", out, alpha, se_reduction)
    if project:
        x = _preact_conv(ops, x, f"{name}_conv4", in_c, out, 1, alpha_in, alpha, stride,
                         use_bias=shortcut_bias)
    return ops.add(y, x)


def resnet_v2(ops, x, spec, alpha, classes, dropout):
    """Oct-ResNet / ResNeXt / SE-ResNet v2 (section 2.1-2.3) and v2b (section 3.4).

    Stem 7x7/2 conv 64 -> BN -> ReLU -> 3x3/2 max-pool ; stages L2..L5 of
    pre-activation bottlenecks, stride 2 on the 3x3 of the first unit of L3..L5,
    projection in every first unit ; alpha on L2..L4, 0 on L5 ; BN -> ReLU -> head.
    """
    x = ops.plain_conv(x, "conv1_conv", 3, 64, 7, stride=2, padding=3)
    x = ops.act(ops.bn(x, "conv1_bn", 64, 0.0), "relu")
    x = ops.pool(x, "max", 3, 2, 1)
    in_c, alpha_in = 64, 0.0
    for stage, units in enumerate(spec.units):
        stage_alpha = alpha if stage < len(spec.units) - 1 else 0.0
        for unit in range(units):
            first = unit == 0
            x = _preact_bottleneck(
                ops, x, f"L{stage + 2}_B{unit + 1:02d}", in_c, spec.mid[stage],
                spec.out[stage], 2 if first and stage > 0 else 1, alpha_in, stage_alpha,
                spec.groups, spec.se_reduction, project=first,
                shortcut_bias=spec.shortcut_bias)
            in_c, alpha_in = spec.out[stage], stage_alpha
    x = ops.act(ops.bn(x, "tail_bn", in_c, 0.0), "relu")
    return _head(ops, x, in_c, classes, dropout)


def _conv_bn(ops, x, name, bn_name, in_c, out_c, kernel, alpha_in, alpha_out, stride=1,
             groups=1, act="relu", residual_end=False):
    """OctConv ``name`` -> BN ``bn_name`` (``residual_end``: it ends a residual branch)
    -> [activation ``act``]."""
    x = ops.conv(x, name, in_c, out_c, kernel, stride=stride, alpha_in=alpha_in,
                 alpha_out=alpha_out, groups=groups)
    x = ops.bn(x, bn_name, out_c, alpha_out, residual_end=residual_end)
    return ops.act(x, act) if act else x


def _plain_conv_bn(ops, x, conv_name, bn_name, in_c, out_c, kernel, stride, act="relu"):
    """Plain conv (true stride, same padding) -> BN -> [activation]."""
    x = ops.plain_conv(x, conv_name, in_c, out_c, kernel, stride, kernel // 2)
    x = ops.bn(x, bn_name, out_c, 0.0)
    return ops.act(x, act) if act else x


def _stem_v1(ops, x, stem):
    """The v1 stems (section 3.3), plain layers; all end with 64 channels at 56x56.

    v1b: 7x7/2 conv 64 -> BN -> ReLU -> 3x3/2 max-pool.
    v1e: 3x3/2 conv 32, 3x3 conv 32, 3x3 conv 64 (each BN -> ReLU) -> 3x3/2 max-pool.
    v1f: 3x3 conv 8, 3x3/2 conv 32, 3x3 conv 64 (each BN -> ReLU), then instead of the
    max-pool a residual block: 1x1 64->32, 3x3/2 32->32 (BN -> ReLU), 1x1 32->64 -> BN,
    shortcut 1x1/2 conv 64->64 -> BN ; sum -> ReLU.
    """
    if stem == "v1b":
        x = _plain_conv_bn(ops, x, "conv1", "bn1", 3, 64, 7, 2)
        return ops.pool(x, "max", 3, 2, 1)
    widths, strides = {"v1e": ((32, 32, 64), (2, 1, 1)), "v1f": ((8, 32, 64), (1, 2, 1))}[stem]
    in_c = 3
    for i, (width, stride) in enumerate(zip(widths, strides), 1):
        x = _plain_conv_bn(ops, x, f"stem_conv{i}", f"stem_bn{i}", in_c, width, 3, stride)
        in_c = width
    if stem == "v1e":
        return ops.pool(x, "max", 3, 2, 1)
    y = _plain_conv_bn(ops, x, "stem2_conv1", "stem2_bn1", 64, 32, 1, 1)
    y = _plain_conv_bn(ops, y, "stem2_conv2", "stem2_bn2", 32, 32, 3, 2)
    y = _plain_conv_bn(ops, y, "stem2_conv3", "stem2_bn3", 32, 64, 1, 1, act=None)
    x = _plain_conv_bn(ops, x, "stem2_conv4", "stem2_bn4", 64, 64, 1, 2, act=None)
    return ops.act(ops.add(y, x), "relu")


def _bottleneck_v1(ops, x, name, in_c, mid, out, stride, alpha_in, alpha, spec,
                   kernels=(1, 3, 1)):
    """Post-activation bottleneck (section 3.3; the video networks' too, section 6).

    [no-affine BN bn1a] -> ``kernels[0]`` conv1 -> BN -> ReLU -> ``kernels[1]`` conv2 with
    groups -> BN -> ReLU -> ``kernels[2]`` conv3 -> BN -> [SE] ; the stride sits on conv
    ``spec.stride_pos`` (1 = conv2, 2 = conv3; in height and width for clips) ; shortcut
    when the stride, the width or the octave split changes: [no-affine BN bn4a] -> 1x1
    with the stride (conv4) -> BN ; sum -> ReLU.
    """
    spatial = lambda s: s if ops.dims == 2 else (1, s, s)
    strides = [spatial(stride if i == spec.stride_pos else 1) for i in range(3)]
    y = x
    if spec.extra_bn:
        y = ops.bn(y, f"{name}_bn1a", in_c, alpha_in, affine=False)
    y = _conv_bn(ops, y, f"{name}_conv1", f"{name}_bn1", in_c, mid, kernels[0], alpha_in,
                 alpha, strides[0])
    y = _conv_bn(ops, y, f"{name}_conv2", f"{name}_bn2", mid, mid, kernels[1], alpha, alpha,
                 strides[1], spec.groups)
    y = _conv_bn(ops, y, f"{name}_conv3", f"{name}_bn3", mid, out, kernels[2], alpha, alpha,
                 strides[2], act=None, residual_end=True)
    if spec.se_reduction:
        y = ops.se(y, f"{name}_se", out, alpha, spec.se_reduction)
    if stride != 1 or in_c != out or alpha_in != alpha:
        if spec.extra_bn:
            x = ops.bn(x, f"{name}_bn4a", in_c, alpha_in, affine=False)
        x = _conv_bn(ops, x, f"{name}_conv4", f"{name}_bn4", in_c, out, 1, alpha_in, alpha,
                     spatial(stride), act=None)
    return ops.act(ops.add(y, x), "relu")


def resnet_v1(ops, x, spec, alpha, classes, dropout):
    """Oct-ResNet / ResNeXt / SE-ResNet v1b, v1e, v1f (section 3.3).

    Stem (see ``_stem_v1``) ; stages L1..L4 of post-activation bottlenecks, stride 2 in
    the first block of L2..L4 ; alpha on L1..L3, 0 on L4 ; head without a tail BN.
    """
    x = _stem_v1(ops, x, spec.stem)
    in_c, alpha_in = 64, 0.0
    for stage, units in enumerate(spec.units):
        stage_alpha = alpha if stage < len(spec.units) - 1 else 0.0
        for unit in range(units):
            stride = 2 if unit == 0 and stage > 0 else 1
            x = _bottleneck_v1(ops, x, f"L{stage + 1}_B{unit}", in_c, spec.mid[stage],
                               spec.out[stage], stride, alpha_in, stage_alpha, spec)
            in_c, alpha_in = spec.out[stage], stage_alpha
    return _head(ops, x, in_c, classes, dropout)


def _block_names(strides):
    """The release's MobileNet block names: the stage counts stride-2 blocks, the index
    restarts at 0 on each of them (L1_B1, L2_B0, L2_B1, L3_B0, ...)."""
    stage, index, names = 1, 0, []
    for stride in strides:
        stage, index = (stage + 1, 0) if stride > 1 else (stage, index + 1)
        names.append(f"L{stage}_B{index}")
    return names


def mobilenet_v1(ops, x, spec, alpha, classes, dropout):
    """Oct-MobileNet v1 (section 3.1).

    Plain 3x3/2 conv -> BN -> ReLU ; 13 blocks of depthwise 3x3 (stride) -> BN -> ReLU
    -> pointwise 1x1 -> BN -> ReLU, octave where ``spec.blocks`` says ; head.
    Widths are ``int(multiplier * base)``.
    """
    width = lambda base: int(spec.multiplier * base)
    x = _plain_conv_bn(ops, x, "conv1", "bn1", 3, width(32), 3, 2)
    names = _block_names([b[2] for b in spec.blocks])
    for name, (dw_base, pw_base, stride, dw_oct, pw_oct) in zip(names, spec.blocks):
        dw, pw = width(dw_base), width(pw_base)
        dw_alpha, pw_alpha = alpha * dw_oct, alpha * pw_oct
        x = _conv_bn(ops, x, f"{name}_conv1", f"{name}_bn1", dw, dw, 3, dw_alpha, dw_alpha,
                     stride, groups=dw)
        x = _conv_bn(ops, x, f"{name}_conv2", f"{name}_bn2", dw, pw, 1, dw_alpha, pw_alpha)
    return _head(ops, x, width(spec.blocks[-1][1]), classes, dropout)


def mobilenet_v2(ops, x, spec, alpha, classes, dropout):
    """Oct-MobileNet v2 (section 3.2).

    Plain 3x3/2 conv -> BN -> ReLU6 ; 17 inverted residuals: 1x1 expand -> BN -> ReLU6
    -> 3x3 depthwise (stride) -> BN -> ReLU6 -> 1x1 project -> BN, plus the input when
    the stride is 1 and the width is kept (block 0 expands too) ; alpha only on the
    expanded width of the first ``spec.octave_blocks`` blocks ; 1x1 conv -> BN -> ReLU6
    -> head. Widths are ``int(multiplier * base)``, hidden ``t * width``.
    """
    width = lambda base: int(spec.multiplier * base)
    x = _plain_conv_bn(ops, x, "conv1", "bn1", 3, width(32), 3, 2, act="relu6")
    in_c = width(32)
    names = _block_names([b[2] for b in spec.blocks])
    for k, (name, (t, out_base, stride)) in enumerate(zip(names, spec.blocks)):
        out, mid = width(out_base), t * in_c
        a = alpha if k < spec.octave_blocks else 0.0
        y = _conv_bn(ops, x, f"{name}_conv1", f"{name}_bn1", in_c, mid, 1, 0.0, a, act="relu6")
        y = _conv_bn(ops, y, f"{name}_conv2", f"{name}_bn2", mid, mid, 3, a, a, stride,
                     groups=mid, act="relu6")
        shortcut = stride == 1 and in_c == out
        y = _conv_bn(ops, y, f"{name}_conv3", f"{name}_bn3", mid, out, 1, a, 0.0, act=None,
                     residual_end=shortcut)
        if shortcut:
            y = ops.add(y, x)
        x = y
        in_c = out
    last = spec.last_channels if spec.multiplier <= 1 else int(spec.last_channels * spec.multiplier)
    x = _plain_conv_bn(ops, x, "tail-conv", "tail-bn", in_c, last, 1, 1, act="relu6")
    return _head(ops, x, last, classes, dropout)


def _add_widths(a, b):
    return a[0] + b[0], a[1] + b[1]


def densenet(ops, x, spec, alpha, classes, dropout):
    """Oct-DenseNet (section 2.4, 3.5).

    Stem: plain 7x7/2 conv -> BN -> ReLU -> 3x3/2 max-pool (``spec.octave_stem``: the
    conv is octave, so the low branch starts there) ; dense stages: each layer
    BN -> ReLU -> 1x1 to 4k -> BN -> ReLU -> 3x3 to k, concatenated branch by branch ;
    transitions BN -> ReLU -> 1x1 to half the width -> 2x2/2 average pool ; alpha 0 in
    the last transition and stage ; BN -> ReLU -> head.
    """
    init, k = spec.init_channels, spec.growth
    stages = len(spec.units)
    stage_alpha = lambda s: alpha if s < stages - 1 else 0.0
    if spec.octave_stem:
        x = ops.conv(x, "stem_conv", 3, init, 7, stride=2, alpha_out=alpha)
        widths = split_channels(init, alpha)
    else:
        x = ops.plain_conv(x, "stem_conv", 3, init, 7, 2, 3)
        widths = (init, 0)
    x = ops.pool(ops.act(ops.bn(x, "stem_bn", widths, 0.0), "relu"), "max", 3, 2, 1)
    nominal = init
    for s, units in enumerate(spec.units):
        a = stage_alpha(s)
        if s > 0:
            nominal //= 2
            name = f"L{s + 2}_trans"
            x = _preact_conv(ops, x, f"{name}_conv", widths, nominal, 1, 0.0, a)
            x = ops.pool(x, "avg", 2, 2)
            widths = split_channels(nominal, a)
        for unit in range(units):
            name = f"L{s + 2}_B{unit + 1:02d}"
            y = _preact_conv(ops, x, f"{name}_conv1", widths, 4 * k, 1, 0.0, a)
            y = _preact_conv(ops, y, f"{name}_conv2", 4 * k, k, 3, a, a)
            x = ops.concat(x, y)
            widths = _add_widths(widths, split_channels(k, a))
        nominal += units * k
    x = ops.act(ops.bn(x, "tail_bn", widths, 0.0), "relu")
    return _head(ops, x, widths[0], classes, dropout)
