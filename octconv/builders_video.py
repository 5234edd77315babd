"""The video networks of the paper's Table 6, written once against the pair-ops interface
(see :mod:`octconv.builders`) with ``ops.dims == 3``: kernels, strides and paddings are
``(t, h, w)``, the octave is spatial and every frame has its low map.

"Section 6" below is a section of docs/ARCHITECTURES.md; the layer sequence is the one
of the Non-local Neural Networks code (facebookresearch/video-nonlocal-net,
``lib/models/resnet_video.py``), whose ResNet-50 C2D and I3D the paper's Table 6 starts
from.
"""
from octconv.builders import _bottleneck_v1, _conv_bn
from octconv.unit import split_channels

__all__ = ["video_resnet", "slowfast_resnet"]


def _bottleneck(ops, x, name, in_c, mid, out, stride, temporal, alpha_in, alpha, spec):
    """The post-activation bottleneck of the image networks (``_bottleneck_v1`` with
    ``spec.block``, resnet50_v1b's settings and names, so image weights inflate by name)
    with kernels (t,1,1), (1,3,3), (1,1,1): inflated in time on its first conv (section
    6.1)."""
    return _bottleneck_v1(ops, x, name, in_c, mid, out, stride, alpha_in, alpha, spec.block,
                          kernels=((temporal, 1, 1), (1, 3, 3), (1, 1, 1)))


def video_resnet(ops, x, spec, alpha, classes, dropout):
    """Oct-C2D / Oct-I3D ResNet-50 [+ non-local blocks] (section 6.1).

    Stem (conv1_t,7,7) conv to ``spec.stem`` channels with stride (1,2,2) -> BN -> ReLU
    -> (1,3,3)/(1,2,2) max-pool
    (padding ``spec.pool1_padding``: 0, so 112 px become 55) ; stage L1 ;
    (2,1,1)/(2,1,1) max-pool halving the frames ; stages L2..L4, spatial stride 2 in the
    first block of each ; alpha on L1..L3, 0 on L4 ; non-local blocks after the blocks
    ``spec.nonlocal_blocks`` names ; global average
    pool -> dropout -> fully-connected ``classifier``.
    """
    t, width = spec.conv1_t, spec.stem
    x = ops.plain_conv(x, "conv1", 3, width, (t, 7, 7), (1, 2, 2), (t // 2, 3, 3))
    x = ops.act(ops.bn(x, "bn1", width, 0.0), "relu")
    x = ops.pool(x, "max", (1, 3, 3), (1, 2, 2), (0,) + (spec.pool1_padding,) * 2)
    in_c, alpha_in = width, 0.0
    for stage, units in enumerate(spec.units):
        stage_alpha = alpha if stage < len(spec.units) - 1 else 0.0
        for unit in range(units):
            stride = 2 if unit == 0 and stage > 0 else 1
            name = f"L{stage + 1}_B{unit}"
            x = _bottleneck(ops, x, name, in_c, spec.mid[stage], spec.out[stage], stride,
                            spec.temporal[stage][unit], alpha_in, stage_alpha, spec)
            in_c, alpha_in = spec.out[stage], stage_alpha
            if unit in spec.nonlocal_blocks[stage]:
                x = ops.nonlocal_block(x, f"{name}_nonlocal", in_c, stage_alpha)
        if stage == 0:
            x = ops.pool(x, "max", (2, 1, 1), (2, 1, 1), 0)
    x = ops.global_pool(x)
    return ops.dense(ops.dropout(x, dropout), "classifier", in_c, classes)


def _lateral(ops, slow, fast, name, fast_c, slow_widths, alpha, spec):
    """Fast -> slow lateral connection (section 6.3): a (k,1,1) conv of the fast pair with
    temporal stride ``spec.speed`` to ``spec.lateral_ratio`` times its width -> BN ->
    ReLU, concatenated to the slow pair branch by branch. Returns the slow pair and its
    ``(high, low)`` widths."""
    k = spec.lateral_kernel
    fused = _conv_bn(ops, fast, f"{name}_conv", f"{name}_bn", fast_c,
                     spec.lateral_ratio * fast_c, (k, 1, 1), alpha, alpha,
                     stride=(spec.speed, 1, 1))
    low = split_channels(spec.lateral_ratio * fast_c, alpha)
    return ops.concat(slow, fused), (slow_widths[0] + low[0], slow_widths[1] + low[1])


def slowfast_resnet(ops, x, spec, alpha, classes, dropout):
    """Oct-SlowFast ResNet-50 (section 6.3, the SlowFast code's 4x16 network).

    The clip feeds the fast pathway, every ``spec.speed``-th frame of it the slow one.
    Each pathway: stem (t,7,7) conv with stride (1,2,2) -> BN -> ReLU -> (1,3,3)/(1,2,2)
    max-pool padded 1 ; stages L1..L4 of the bottlenecks above, temporal kernels
    ``spec.slow_temporal`` / ``spec.fast_temporal`` per stage, the fast one
    ``1 / spec.fast_ratio`` as wide ; after the stem and L1..L3 a lateral connection
    (``_lateral``) into the slow pathway ; alpha on L1..L3 and the laterals after them,
    0 on the stem, its lateral and L4 ; global average pool of each pathway -> concat
    -> dropout -> fully-connected ``classifier``.
    """
    pathways = {"slow": (ops.frames(x, spec.speed), 64, spec.slow_temporal),
                "fast": (x, 64 // spec.fast_ratio, spec.fast_temporal)}
    pairs, widths = {}, {}
    for path, (clip, width, temporal) in pathways.items():
        t = spec.slow_stem_t if path == "slow" else spec.fast_stem_t
        y = ops.plain_conv(clip, f"{path}_conv1", 3, width, (t, 7, 7), (1, 2, 2), (t // 2, 3, 3))
        y = ops.act(ops.bn(y, f"{path}_bn1", width, 0.0), "relu")
        pairs[path] = ops.pool(y, "max", (1, 3, 3), (1, 2, 2), (0, 1, 1))
        widths[path] = (width, 0)
    stage_alpha = 0.0
    for stage, units in enumerate(spec.units):
        pairs["slow"], widths["slow"] = _lateral(ops, pairs["slow"], pairs["fast"],
                                                 f"lateral{stage}", sum(widths["fast"]),
                                                 widths["slow"], stage_alpha, spec)
        stage_alpha = alpha if stage < len(spec.units) - 1 else 0.0
        for path, (_, _, temporal) in pathways.items():
            scale = 1 if path == "slow" else spec.fast_ratio
            mid, out = spec.mid[stage] // scale, spec.out[stage] // scale
            in_c = widths[path]  # (high, low): the first block projects
            for unit in range(units):
                stride = 2 if unit == 0 and stage > 0 else 1
                pairs[path] = _bottleneck(ops, pairs[path], f"{path}_L{stage + 1}_B{unit}",
                                          in_c, mid, out, stride, temporal[stage],
                                          stage_alpha, stage_alpha, spec)
                in_c = out
            widths[path] = split_channels(out, stage_alpha)
    x = ops.concat(ops.global_pool(pairs["slow"]), ops.global_pool(pairs["fast"]))
    width = spec.out[-1] + spec.out[-1] // spec.fast_ratio
    return ops.dense(ops.dropout(x, dropout), "classifier", width, classes)
