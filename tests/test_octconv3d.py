"""OctConv3D (Gluon) and oct_conv3d (Symbol), the video unit, against the NumPy
reference of Eq. 4 with a spatial-only octave (tests/reference.py)."""
import random
import re

import mxnet as mx
import numpy as np
import pytest

import reference
from helpers import assert_both_apis_give, groups_fit, input_widths, layer_weights, nd, randomize, \
    run_symbol
from octconv import gluon as G
from octconv import symbol as S


def random_configs(count, seed=2020):
    """Valid 3-D layers, judged by the test's own reading of the rules."""
    rng = random.Random(seed)
    configs = []
    while len(configs) < count:
        depthwise = rng.random() < 0.15
        alpha_in = rng.choice([0.0, 0.125, 0.25, 0.5, 0.75])
        alpha_out = alpha_in if depthwise else rng.choice([0.0, 0.125, 0.25, 0.5, 0.75])
        in_c = rng.choice([4, 6, 8, 12])
        out_c = in_c if depthwise else rng.choice([4, 8, 12])
        groups = in_c if depthwise else rng.choice([1, 1, 2])
        if not depthwise and not groups_fit(in_c, out_c, alpha_in, alpha_out, groups):
            continue
        kernel = (rng.choice([1, 3]), rng.choice([1, 3]))  # (time, space)
        configs.append(dict(
            in_c=in_c, out_c=out_c, kernel=kernel, stride=rng.choice([1, 2]),
            temporal_stride=rng.choice([1, 1, 2]), alpha_in=alpha_in, alpha_out=alpha_out,
            groups=groups, use_bias=rng.random() < 0.3, frames=rng.choice([1, 2, 3, 5]),
            size=rng.choice([(3, 3), (4, 5), (7, 7), (8, 6), (9, 9)]),
            batch=rng.choice([1, 2])))
    return configs


CONFIGS = random_configs(60)
IDS = lambda c: "-".join(str(v) for v in c.values())


def geometry(cfg):
    kt, k = cfg["kernel"]
    return dict(kernel=(kt, k, k), padding=(kt // 2, k // 2, k // 2),
                stride=(cfg["temporal_stride"], cfg["stride"], cfg["stride"]))


def build(cfg):
    g = geometry(cfg)
    block = G.OctConv3D(cfg["out_c"], g["kernel"], strides=g["stride"], padding=g["padding"],
                        alpha_in=cfg["alpha_in"], alpha_out=cfg["alpha_out"],
                        groups=cfg["groups"], use_bias=cfg["use_bias"], in_channels=cfg["in_c"],
                        prefix="layer-")
    return block, randomize(block)


def symbol_layer(cfg, lo_present):
    g = geometry(cfg)
    lo = mx.sym.var("lo") if lo_present else None
    return S.oct_conv3d((mx.sym.var("hi"), lo), "layer", cfg["out_c"], g["kernel"], cfg["in_c"],
                        stride=g["stride"], padding=g["padding"], alpha_in=cfg["alpha_in"],
                        alpha_out=cfg["alpha_out"], groups=cfg["groups"],
                        use_bias=cfg["use_bias"])


def clip_pair(rng, cfg):
    widths = input_widths(cfg)
    h, w = cfg["size"]
    shape = (cfg["batch"], widths[0], cfg["frames"], h, w)
    hi = rng.randn(*shape).astype("float32")
    lo = (rng.randn(cfg["batch"], widths[1], cfg["frames"], (h + 1) // 2, (w + 1) // 2)
          .astype("float32") if widths[1] else None)
    return hi, lo


def reference_output(cfg, params, hi, lo):
    weights, biases = layer_weights(params)
    return reference.octconv(hi, lo, weights, cfg["stride"], geometry(cfg)["padding"], biases,
                             temporal_stride=cfg["temporal_stride"])


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_both_apis_match_numpy_reference(cfg):
    block, params = build(cfg)
    hi, lo = clip_pair(np.random.RandomState(1), cfg)
    want = reference_output(cfg, params, hi, lo)
    gluon_out = assert_both_apis_give(want, block, symbol_layer(cfg, lo is not None), params,
                                      hi, lo)
    frames = (cfg["frames"] + 2 * (cfg["kernel"][0] // 2) - cfg["kernel"][0]) \
        // cfg["temporal_stride"] + 1
    assert gluon_out[0].shape[2] == frames  # the octave never touches time


@pytest.mark.parametrize("temporal_stride", [1, 2])
@pytest.mark.parametrize("stride", [1, 2])
def test_alpha_zero_is_mxnet_3d_convolution(stride, temporal_stride):
    """alpha 0 is MXNet's Convolution over (t, h, w); spatial stride 2 is its 1x2x2
    average pool first, the temporal stride its stride in time."""
    block = G.OctConv3D(6, (3, 3, 3), strides=(temporal_stride, stride, stride), padding=1,
                        in_channels=4, use_bias=True, prefix="layer-")
    params = randomize(block)
    x = mx.nd.array(np.random.RandomState(3).randn(2, 4, 5, 7, 7))
    plain_in = x if stride == 1 else mx.nd.Pooling(
        x, kernel=(1, 2, 2), stride=(1, 2, 2), pool_type="avg", pooling_convention="full")
    plain = mx.nd.Convolution(plain_in, mx.nd.array(params["layer-h2h_weight"]),
                              mx.nd.array(params["layer-h2h_bias"]), kernel=(3, 3, 3),
                              stride=(temporal_stride, 1, 1), pad=(1, 1, 1),
                              num_filter=6).asnumpy()
    hi, lo = block(x)
    assert lo is None
    np.testing.assert_allclose(hi.asnumpy(), plain, rtol=1e-5, atol=1e-5)
    sym_hi, _ = run_symbol(S.oct_conv3d((mx.sym.var("hi"), None), "layer", 6, 3, 4,
                                        stride=(temporal_stride, stride, stride), padding=1,
                                        use_bias=True), {"hi": x.asnumpy()}, params)
    np.testing.assert_allclose(sym_hi, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_one_frame_kernel_on_identical_frames_is_the_2d_layer_per_frame(stride):
    """A (1, k, k) kernel sees one frame: on a clip of one image repeated, every output
    frame is the 2-D OctConv of that image with the same weights."""
    video = G.OctConv3D(12, (1, 3, 3), strides=stride, padding=(0, 1, 1), alpha_in=0.5,
                        alpha_out=0.25, in_channels=8, use_bias=True, prefix="layer-")
    params = randomize(video)
    image = G.OctConv2D(12, 3, strides=stride, padding=1, alpha_in=0.5, alpha_out=0.25,
                        in_channels=8, use_bias=True, prefix="layer-")
    image.initialize()
    for name, p in image.collect_params().items():
        value = params[name]
        p.set_data(mx.nd.array(value[:, :, 0] if value.ndim == 5 else value))
    rng = np.random.RandomState(5)
    hi, lo = rng.randn(2, 4, 9, 9).astype("float32"), rng.randn(2, 4, 5, 5).astype("float32")
    frames = lambda x: mx.nd.array(np.repeat(x[:, :, None], 4, axis=2))
    got = video(frames(hi), frames(lo))
    want = image(mx.nd.array(hi), mx.nd.array(lo))
    for g, w in zip(got, want):
        for t in range(4):
            np.testing.assert_allclose(g.asnumpy()[:, :, t], w.asnumpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cfg", [c for c in CONFIGS if c["alpha_in"] and c["alpha_out"]
                                 and c["groups"] != c["in_c"]][:8], ids=IDS)
def test_every_path_gets_a_gradient(cfg):
    block, params = build(cfg)
    hi, lo = (nd(a) for a in clip_pair(np.random.RandomState(4), dict(cfg, batch=2)))
    with mx.autograd.record():
        yh, yl = block(hi, lo)
        loss = (yh ** 2).sum() + (yl ** 2).sum()
    loss.backward()
    assert {n.split("-")[1][:3] for n in params if n.endswith("_weight")} == \
        {"h2h", "h2l", "l2h", "l2l"}
    for name, p in block.collect_params().items():
        assert np.abs(p.grad().asnumpy()).sum() > 0, f"{name} got no gradient"


@pytest.mark.parametrize("kwargs, message", [
    (dict(kernel_size=(3, 3, 3), padding=(1, 0, 0), alpha_in=0.5), "size-preserving padding"),
    (dict(kernel_size=3, padding=1, strides=(1, 2, 1)), "1 or 2 in height and width alike"),
    (dict(kernel_size=3, padding=1, strides=(0, 2, 2)), "temporal stride must be at least 1"),
    (dict(kernel_size=(3, 3), padding=1), "kernel_size must be a non-negative int or 3"),
    (dict(kernel_size=3, padding=1, alpha_out=1.0), "alpha_out must be in [0, 1)"),
])
def test_bad_arguments_raise_value_error_naming_the_problem(kwargs, message):
    kwargs = dict(dict(in_channels=8, alpha_in=0.0, alpha_out=0.5), **kwargs)
    for make in (lambda: G.OctConv3D(8, **kwargs),
                 lambda: S.oct_conv3d((mx.sym.var("hi"), mx.sym.var("lo") if kwargs["alpha_in"]
                                       else None), "layer", 8, kwargs["kernel_size"],
                                      kwargs["in_channels"], stride=kwargs.get("strides", 1),
                                      padding=kwargs["padding"], alpha_in=kwargs["alpha_in"],
                                      alpha_out=kwargs["alpha_out"])):
        with pytest.raises(ValueError, match=re.escape(message)):
            make()


def test_temporal_padding_is_free_with_a_low_branch():
    """Every path convolves time alike, so time padding needs no rule."""
    block = G.OctConv3D(8, (3, 3, 3), padding=(0, 1, 1), alpha_in=0.5, alpha_out=0.5,
                        in_channels=8)
    block.initialize()
    hi, lo = block(mx.nd.ones((1, 4, 5, 6, 6)), mx.nd.ones((1, 4, 5, 3, 3)))
    assert hi.shape == (1, 4, 3, 6, 6) and lo.shape == (1, 4, 3, 3, 3)


@pytest.mark.parametrize("hi_shape, lo_shape, message", [
    ((1, 4, 9, 9), (1, 4, 5, 5), "takes N x C x T x H x W (5-D) tensors, got a 4-D high"),
    ((1, 4, 3, 9, 9), (1, 4, 2, 5, 5), "low map is (2, 5, 5), expected half of the high map "
                                       "(3, 9, 9) rounded up: (3, 5, 5)"),
])
def test_a_wrong_clip_is_named(hi_shape, lo_shape, message):
    block = G.OctConv3D(8, 3, padding=1, alpha_in=0.5, alpha_out=0.5, in_channels=8)
    block.initialize()
    with pytest.raises(ValueError, match=re.escape(message)):
        block(mx.nd.ones(hi_shape), mx.nd.ones(lo_shape))


def test_companions_take_clips_in_both_apis():
    """Pooling, global pooling and merging of a clip pair against NumPy, frame by frame
    for the octave's operations (tests/reference.py works on the last two axes)."""
    rng = np.random.RandomState(9)
    hi, lo = rng.randn(2, 4, 3, 7, 9), rng.randn(2, 2, 3, 4, 5)
    want = {
        "avg": (reference.avg_pool2(hi), reference.avg_pool2(lo)),
        "global": (hi.mean(axis=(2, 3, 4), keepdims=True), lo.mean(axis=(2, 3, 4), keepdims=True)),
        "merge": (np.concatenate([hi, reference.upsample2(lo, hi.shape[-2:])], axis=1), None),
    }
    blocks = {"avg": G.OctPool("avg", (1, 2, 2), (1, 2, 2), dims=3),
              "global": G.OctGlobalPool(dims=3), "merge": G.OctMerge(dims=3)}
    symbols = {"avg": S.oct_pool, "global": S.oct_global_pool, "merge": S.oct_merge}
    pair = (mx.sym.var("hi"), mx.sym.var("lo"))
    for name, block in blocks.items():
        got = block(nd(hi), nd(lo))
        got = (got, None) if name == "merge" else got
        args = (pair, "avg", (1, 2, 2), (1, 2, 2)) if name == "avg" else (pair,)
        out = symbols[name](*args, dims=3)
        out = (out, None) if name == "merge" else out
        by_symbol = run_symbol(out, {"hi": hi, "lo": lo}, {})
        for g, s, w in zip(got, by_symbol, want[name]):
            if w is not None:
                np.testing.assert_allclose(g.asnumpy(), w, rtol=1e-5, atol=1e-5)
                np.testing.assert_allclose(s, w, rtol=1e-5, atol=1e-5)
    maxed = G.OctPool("max", (1, 3, 3), (1, 2, 2), (0, 1, 1), dims=3)(nd(hi), nd(lo))
    assert maxed[0].shape == (2, 4, 3, 4, 5) and maxed[1].shape == (2, 2, 3, 2, 3)
