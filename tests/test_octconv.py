"""OctConv2D (Gluon) and oct_conv (Symbol) against the NumPy reference of Eq. 4."""
import random

import mxnet as mx
import numpy as np
import pytest

import reference
from helpers import assert_both_apis_give, groups_fit, input_widths, layer_weights, low, nd, \
    pair_arrays, randomize, run_symbol, split_widths
from octconv import gluon as G
from octconv import symbol as S


def random_configs(count, seed=2019):
    """Valid layer configurations, judged by the test's own reading of the rules."""
    rng = random.Random(seed)
    configs = []
    while len(configs) < count:
        depthwise = rng.random() < 0.2
        groups = 1 if depthwise else rng.choice([1, 1, 2, 4])
        alpha_in = rng.choice([0.0, 0.125, 0.25, 0.5, 0.75])
        alpha_out = alpha_in if depthwise else rng.choice([0.0, 0.125, 0.25, 0.5, 0.75])
        in_c = rng.choice([4, 6, 8, 12, 16])
        out_c = in_c if depthwise else rng.choice([4, 8, 12, 16])
        if depthwise:
            groups = in_c
        elif not groups_fit(in_c, out_c, alpha_in, alpha_out, groups):
            continue
        kernel = rng.choice([1, 3])
        configs.append(dict(
            in_c=in_c, out_c=out_c, kernel=kernel, stride=rng.choice([1, 2]),
            alpha_in=alpha_in, alpha_out=alpha_out, groups=groups,
            use_bias=rng.random() < 0.3, size=rng.choice([3, 4, 5, 7, 8, 9, 14, 15]),
            batch=rng.choice([1, 2, 3])))
    return configs


CONFIGS = random_configs(60)
BOTH = ("h2l", "l2h")


def build(cfg):
    block = G.OctConv2D(cfg["out_c"], cfg["kernel"], strides=cfg["stride"],
                        padding=cfg["kernel"] // 2, alpha_in=cfg["alpha_in"],
                        alpha_out=cfg["alpha_out"], groups=cfg["groups"],
                        use_bias=cfg["use_bias"], in_channels=cfg["in_c"],
                        exchange=cfg.get("exchange", BOTH), prefix="layer-")
    return block, randomize(block)


def symbol_layer(cfg, lo_present):
    lo = mx.sym.var("lo") if lo_present else None
    return S.oct_conv((mx.sym.var("hi"), lo), "layer", cfg["out_c"], cfg["kernel"],
                      cfg["in_c"], stride=cfg["stride"], padding=cfg["kernel"] // 2,
                      alpha_in=cfg["alpha_in"], alpha_out=cfg["alpha_out"],
                      groups=cfg["groups"], use_bias=cfg["use_bias"],
                      exchange=cfg.get("exchange", BOTH))


def reference_output(cfg, params, hi, lo):
    weights, biases = layer_weights(params)
    pad = (cfg["kernel"] // 2,) * 2
    return reference.octconv(hi, lo, weights, cfg["stride"], pad, biases)


def expected_paths(cfg):
    """Paths the paper's rules give: both ends exist; depthwise keeps h2h and l2l; a
    layer with l2l keeps only the exchange paths in ``cfg["exchange"]``."""
    lo_in = low(cfg["in_c"], cfg["alpha_in"]) > 0
    lo_out = low(cfg["out_c"], cfg["alpha_out"]) > 0
    paths = {"h2h"} | ({"h2l"} if lo_out else set()) | ({"l2h"} if lo_in else set()) \
        | ({"l2l"} if lo_in and lo_out else set())
    if cfg["groups"] > 1 and cfg["groups"] == cfg["in_c"]:
        paths -= {"h2l", "l2h"}
    if "l2l" in paths:
        paths -= {"h2l", "l2h"} - set(cfg.get("exchange", BOTH))
    return paths


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_both_apis_match_numpy_reference(cfg):
    block, params = build(cfg)
    widths = input_widths(cfg)
    hi, lo = pair_arrays(np.random.RandomState(1), cfg["batch"], widths, cfg["size"])
    want = reference_output(cfg, params, hi, lo)

    assert_both_apis_give(want, block, symbol_layer(cfg, lo is not None), params, hi, lo)

    assert {k[len("layer-"):-len("_weight")] for k in params if k.endswith("_weight")} \
        == expected_paths(cfg)


# Maps of one pixel and non-square maps (docs/ARCHITECTURES.md, section 1: the low map
# is ceil(n / 2) for every n >= 1).
TINY = [dict(in_c=8, out_c=8, kernel=3, stride=2, alpha_in=0.25, alpha_out=0.25, groups=8,
             use_bias=False, size=(1, 30), batch=1),
        dict(in_c=8, out_c=8, kernel=3, stride=2, alpha_in=0.0, alpha_out=0.5, groups=1,
             use_bias=True, size=(2, 2), batch=2),
        dict(in_c=8, out_c=16, kernel=3, stride=1, alpha_in=0.5, alpha_out=0.25, groups=2,
             use_bias=False, size=(25, 1), batch=1),
        dict(in_c=4, out_c=4, kernel=1, stride=2, alpha_in=0.5, alpha_out=0.5, groups=1,
             use_bias=False, size=(1, 1), batch=1)]


@pytest.mark.parametrize("cfg", TINY, ids=lambda c: "x".join(map(str, c["size"])))
def test_one_pixel_and_non_square_maps(cfg):
    test_both_apis_match_numpy_reference(cfg)


@pytest.mark.parametrize("cfg", CONFIGS[:12], ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_hybridized_gluon_equals_imperative(cfg):
    block, params = build(cfg)
    widths = input_widths(cfg)
    hi, lo = pair_arrays(np.random.RandomState(2), cfg["batch"], widths, cfg["size"])
    imperative = block(nd(hi), nd(lo))
    block.hybridize()
    hybrid = block(nd(hi), nd(lo))
    for a, b in zip(imperative, hybrid):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_parameter_count_equals_vanilla_conv(cfg):
    block, params = build(cfg)
    k = cfg["kernel"]
    vanilla = cfg["out_c"] * (cfg["in_c"] // cfg["groups"]) * k * k
    vanilla += cfg["out_c"] if cfg["use_bias"] else 0
    assert sum(v.size for v in params.values()) == vanilla


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("size", [7, 8])
def test_alpha_zero_is_a_plain_convolution(stride, kernel, size):
    """alpha 0 is MXNet's own Convolution; stride 2 is MXNet's 2x2 average pool, then it."""
    block = G.OctConv2D(6, kernel, strides=stride, padding=kernel // 2, in_channels=4,
                        use_bias=True, prefix="layer-")
    params = randomize(block)
    x = mx.nd.array(np.random.RandomState(3).randn(2, 4, size, size))
    plain_in = x if stride == 1 else mx.nd.Pooling(
        x, kernel=(2, 2), stride=(2, 2), pool_type="avg", pooling_convention="full")
    plain = mx.nd.Convolution(plain_in, mx.nd.array(params["layer-h2h_weight"]),
                              mx.nd.array(params["layer-h2h_bias"]), kernel=(kernel, kernel),
                              pad=(kernel // 2,) * 2, num_filter=6).asnumpy()
    hi, lo = block(x)
    assert lo is None
    assert np.abs(hi.asnumpy() - plain).max() < 1e-5
    sym_hi, sym_lo = run_symbol(S.oct_conv((mx.sym.var("hi"), None), "layer", 6, kernel, 4,
                                           stride=stride, padding=kernel // 2, use_bias=True),
                                {"hi": x.asnumpy()}, params)
    assert sym_lo is None
    assert np.abs(sym_hi - plain).max() < 1e-5


@pytest.mark.parametrize("cfg", [c for c in CONFIGS if c["alpha_in"] and c["alpha_out"]][:10],
                         ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_every_path_gets_a_gradient(cfg):
    block, params = build(cfg)
    widths = input_widths(cfg)
    hi, lo = (nd(a) for a in pair_arrays(np.random.RandomState(4), 2, widths, cfg["size"]))
    with mx.autograd.record():
        yh, yl = block(hi, lo)
        loss = (yh ** 2).sum() + ((yl ** 2).sum() if yl is not None else 0)
    loss.backward()
    for name, p in block.collect_params().items():
        assert np.abs(p.grad().asnumpy()).sum() > 0, f"{name} got no gradient"

    sym = mx.sym.Group([o for o in symbol_layer(cfg, lo is not None) if o is not None])
    loss_sym = mx.sym.MakeLoss(mx.sym.add_n(*[mx.sym.sum(o ** 2) for o in sym]))
    args = {"hi": hi, **({"lo": lo} if lo is not None else {}),
            **{k: mx.nd.array(v) for k, v in params.items()}}
    grads = {k: mx.nd.zeros(v.shape) for k, v in params.items()}
    ex = loss_sym.bind(mx.cpu(), args, args_grad=grads)
    ex.forward(is_train=True)
    ex.backward()
    for name, g in grads.items():
        assert np.abs(g.asnumpy()).sum() > 0, f"symbol {name} got no gradient"


# The paper's path ablation (Appendix C): layers without one or both exchange paths.
INNER = [c for c in CONFIGS if low(c["in_c"], c["alpha_in"]) and low(c["out_c"], c["alpha_out"])
         and c["groups"] != c["in_c"]]
ABLATED = [dict(c, exchange=ex) for c, ex in zip(INNER[:12], [("l2h",), ("h2l",), ()] * 4)]
ABLATED_IDS = lambda c: "-".join(f"{v}" for v in c.values())


@pytest.mark.parametrize("cfg", ABLATED, ids=ABLATED_IDS)
def test_dropped_exchange_path_equals_the_reference_without_it(cfg):
    test_both_apis_match_numpy_reference(cfg)  # the reference gets no weight of it


@pytest.mark.parametrize("cfg", ABLATED, ids=ABLATED_IDS)
def test_dropped_exchange_path_takes_its_weights_with_it(cfg):
    """The vanilla count minus each dropped path's (target x source / groups x k x k)."""
    _, params = build(cfg)
    k, groups = cfg["kernel"], cfg["groups"]
    (h_in, l_in), (h_out, l_out) = (split_widths(cfg["in_c"], cfg["alpha_in"]),
                                    split_widths(cfg["out_c"], cfg["alpha_out"]))
    widths = {"h": (h_in, h_out), "l": (l_in, l_out)}  # branch: (in, out)
    vanilla = cfg["out_c"] * (cfg["in_c"] // groups) * k * k
    vanilla += cfg["out_c"] if cfg["use_bias"] else 0
    dropped = sum(widths[p[2]][1] * widths[p[0]][0] // groups * k * k
                  for p in set(BOTH) - set(cfg["exchange"]))
    assert sum(v.size for v in params.values()) == vanilla - dropped


@pytest.mark.parametrize("cfg", ABLATED[:6], ids=ABLATED_IDS)
def test_every_kept_path_of_an_ablated_layer_gets_a_gradient(cfg):
    test_every_path_gets_a_gradient(cfg)


@pytest.mark.parametrize("alpha_in, alpha_out, kept", [(0.0, 0.5, "h2l"), (0.5, 0.0, "l2h")])
def test_layers_entering_or_leaving_the_octave_keep_their_exchange_path(alpha_in, alpha_out,
                                                                         kept):
    """Without h2l the first layer's low output would be empty; without l2h the last
    layer would leave the low branch unused: both keep the path whatever is dropped."""
    gluon = G.OctConv2D(8, 3, padding=1, alpha_in=alpha_in, alpha_out=alpha_out,
                        in_channels=8, exchange=())
    pair = S.oct_conv((mx.sym.var("hi"), mx.sym.var("lo") if alpha_in else None), "layer", 8,
                      3, 8, padding=1, alpha_in=alpha_in, alpha_out=alpha_out, exchange=())
    symbol_args = mx.sym.Group([t for t in pair if t is not None]).list_arguments()
    assert kept in {p.name for p in gluon.plan.paths}
    assert f"layer-{kept}_weight" in symbol_args


@pytest.mark.parametrize("exchange, message", [
    ("h2l", "must be a list"), (["h2h"], "unknown: h2h"), (["l2h", "l2h"], "at most once")])
def test_bad_exchange_is_named(exchange, message):
    for make in (lambda: G.OctConv2D(8, 3, padding=1, alpha_in=0.5, alpha_out=0.5,
                                     in_channels=8, exchange=exchange),
                 lambda: G.get_model("resnet10_v2_mini", alpha=0.25, exchange=exchange),
                 lambda: S.get_symbol("resnet10_v2_mini", alpha=0.25, exchange=exchange)):
        with pytest.raises(ValueError, match=message):
            make()
