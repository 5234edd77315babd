"""The channel split and the path plan: the figures of docs/ARCHITECTURES.md and every bad input."""
import re

import mxnet as mx
import pytest

from octconv import gluon as G
from octconv import symbol as S
from octconv.unit import plan_octconv, split_channels


@pytest.mark.parametrize("channels, alpha, expected", [
    (162, 0.5, (81, 81)), (48, 0.375, (30, 18)),             # spec, notation section
    (64, 0.125, (56, 8)), (256, 0.25, (192, 64)),            # ARCHITECTURES 2.1 ResNet splits
    (64, 0.75, (16, 48)), (96, 0.375, (60, 36)),             # ARCHITECTURES 2.1 / 3.2
    (32, 0.0, (32, 0)), (3, 0.25, (3, 0)),
])
def test_split_follows_the_release(channels, alpha, expected):
    assert split_channels(channels, alpha) == expected


def test_stride_two_pools_instead_of_striding():
    plan = plan_octconv(16, 3, in_channels=16, stride=2, padding=1, alpha_in=0.5,
                        alpha_out=0.5)
    pools = {p.name: (p.pools, p.upsample) for p in plan.paths}
    assert pools == {"h2h": (1, False), "h2l": (2, False), "l2h": (0, False),
                     "l2l": (1, False)}
    plan = plan_octconv(16, 3, in_channels=16, stride=1, padding=1, alpha_in=0.5,
                        alpha_out=0.5)
    assert {p.name: (p.pools, p.upsample) for p in plan.paths} == {
        "h2h": (0, False), "h2l": (1, False), "l2h": (0, True), "l2l": (0, False)}


def test_bias_lives_on_one_path_per_output_branch():
    plan = plan_octconv(16, 1, in_channels=16, alpha_in=0.5, alpha_out=0.5, use_bias=True)
    assert {p.name for p in plan.paths if p.use_bias} == {"h2h", "h2l"}
    plan = plan_octconv(16, 3, in_channels=16, padding=1, alpha_in=0.5, alpha_out=0.5,
                        groups=16, use_bias=True)
    assert {p.name for p in plan.paths if p.use_bias} == {"h2h", "l2l"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(alpha_in=1.0), "alpha_in must be in [0, 1), got 1.0"),
    (dict(alpha_out=-0.1), "alpha_out must be in [0, 1), got -0.1"),
    (dict(alpha_out="0.5"), "alpha_out must be a number"),
    (dict(stride=3), "stride must be 1 or 2"),
    (dict(groups=0), "groups must be a positive integer"),
    (dict(in_channels=-4), "in_channels must be a non-negative integer"),
    (dict(padding=0, alpha_out=0.5), "size-preserving padding"),
    # 128 channels at alpha .125 leave 16 low channels, fewer than 32 groups
    (dict(channels=128, in_channels=128, groups=32, alpha_in=0.125, alpha_out=0.125),
     "path h2l has 16 output channels, fewer than groups=32"),
    (dict(channels=48, in_channels=48, groups=8, alpha_in=0.25, alpha_out=0.25),
     "not divisible by groups=8"),
    (dict(channels=16, in_channels=16, groups=16, alpha_in=0.25, alpha_out=0.5),
     "depthwise OctConv needs equal input and output splits"),
])
def test_bad_arguments_raise_value_error_naming_the_problem(kwargs, message):
    args = dict(channels=32, kernel_size=3, in_channels=32, padding=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        plan_octconv(**args)
    with pytest.raises(ValueError, match=re.escape(message)):
        G.OctConv2D(args.pop("channels"), args.pop("kernel_size"),
                    strides=args.pop("stride", 1), **args)


def test_pair_not_matching_declared_channels_is_rejected():
    block = G.OctConv2D(8, 3, padding=1, alpha_in=0.5, alpha_out=0.5, in_channels=8)
    block.initialize()
    with pytest.raises(ValueError, match=r"input has \(high, low\) channels \(6, 4\), declared \(4, 4\)"):
        block(mx.nd.ones((1, 6, 8, 8)), mx.nd.ones((1, 4, 4, 4)))
    with pytest.raises(ValueError, match="expects a low-frequency input"):
        block(mx.nd.ones((1, 4, 8, 8)))
    with pytest.raises(ValueError, match=r"low map is \(3, 3\), expected .* \(4, 4\)"):
        block(mx.nd.ones((1, 4, 8, 8)), mx.nd.ones((1, 4, 3, 3)))
    first = G.OctConv2D(8, 3, padding=1, alpha_out=0.5, in_channels=8)
    first.initialize()
    with pytest.raises(ValueError, match="declared without a low-frequency input"):
        first(mx.nd.ones((1, 8, 8, 8)), mx.nd.ones((1, 4, 4, 4)))
    with pytest.raises(ValueError, match="expects a low-frequency input"):
        S.oct_conv((mx.sym.var("hi"), None), "c", 8, 3, 8, padding=1, alpha_in=0.5)


def test_deferred_input_width_is_inferred():
    block = G.OctConv2D(8, 3, padding=1, alpha_in=0.5, alpha_out=0.25)
    block.initialize()
    hi, lo = block(mx.nd.ones((2, 5, 9, 9)), mx.nd.ones((2, 3, 5, 5)))
    assert hi.shape == (2, 6, 9, 9) and lo.shape == (2, 2, 5, 5)
    assert block.h2l.weight.shape == (2, 5, 3, 3)


@pytest.mark.parametrize("channels, groups, alpha_in, widths", [
    (8, 8, 0.5, (32, 32)),  # 64 -> 8 channels in 8 groups
    (8, 8, 0.0, (16, 0)),  # 16 -> 8 in 8 groups: grouped, not depthwise
    (8, 8, 0.0, (8, 0)),  # 8 -> 8 in 8 groups: depthwise
    (8, 1, 0.125, (3, 0)),  # alpha_in .125 of 3 channels leaves no low input
    (8, 4, 0.0, (6, 0)),  # 6 channels in 4 groups: refused alike
    (8, 8, 0.25, (6, 2)),  # depthwise with a low branch
])
def test_deferred_and_declared_layers_accept_and_refuse_alike(channels, groups, alpha_in,
                                                             widths):
    outcomes = []
    for in_channels in (0, widths):
        try:
            layer = G.OctConv2D(channels, 3, padding=1, groups=groups, alpha_in=alpha_in,
                                alpha_out=alpha_in if groups == channels else 0.0,
                                in_channels=in_channels, prefix="layer_")
            layer.initialize()
            lo = mx.nd.ones((1, widths[1], 3, 3)) if widths[1] else None
            hi, _ = layer(mx.nd.ones((1, widths[0], 6, 6)), lo)
            outcomes.append((hi.shape, {k: p.shape for k, p in layer.collect_params().items()}))
        except ValueError as err:
            outcomes.append(str(err))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("hi_shape, lo_shape, groups", [
    ((1, 13, 8, 8), (1, 4, 4, 4), 1),  # one channel too many in the high input
    ((1, 12, 9, 9), (1, 4, 4, 4), 16),  # a depthwise layer's low map at floor size
])
def test_symbol_pairs_are_checked_with_the_gluon_message(hi_shape, lo_shape, groups):
    layer = G.OctConv2D(16, 3, padding=1, alpha_in=0.25, alpha_out=0.25, groups=groups,
                        in_channels=16, prefix="layer_")
    layer.initialize()
    with pytest.raises(ValueError) as gluon_error:
        layer(mx.nd.ones(hi_shape), mx.nd.ones(lo_shape))
    pair = S.oct_conv((mx.sym.var("hi"), mx.sym.var("lo")), "layer", 16, 3, 16, padding=1,
                      alpha_in=0.25, alpha_out=0.25, groups=groups)
    with pytest.raises(ValueError) as symbol_error:
        S.check_pairs(mx.sym.Group(list(pair)), hi=hi_shape, lo=lo_shape)
    without_name = lambda err: str(err.value).split(": ", 1)[1]
    assert without_name(symbol_error) == without_name(gluon_error)


def test_compile_and_export_paths_name_a_symbol_layer_fed_the_wrong_pair():
    """check_params (TVM compile, ONNX export) checks pairs before weights: a layer
    declared for 20 input channels but fed 16 is named with the Gluon message, and the
    declared weight shapes make MXNet itself refuse it too."""
    from octconv.weights import check_params
    pair = S.oct_conv((mx.sym.var("data"), None), "a", 16, 3, 3, padding=1, alpha_out=0.25)
    hi, lo = S.oct_conv(pair, "b", 16, 3, 20, padding=1, alpha_in=0.25, alpha_out=0.25)
    sym = mx.sym.Group([hi, lo])
    with pytest.raises(ValueError, match=re.escape(
            "b: input has (high, low) channels (12, 4), declared (15, 5)")):
        check_params(sym, {}, (1, 3, 8, 8))
    with pytest.raises(mx.base.MXNetError):
        sym.infer_shape(data=(1, 3, 8, 8))
