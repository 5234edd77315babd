"""Property-based fuzz of the OctConv unit (hypothesis): 500 generated layers a run, in
both APIs, with declared and deferred input widths. A layer the test's own reading of
the rules (docs/ARCHITECTURES.md, section 1) calls valid equals the NumPy reference; an
invalid one raises a ValueError naming a rule it breaks."""
import mxnet as mx
import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import reference
from helpers import nd, run_symbol
from octconv import gluon as G
from octconv import symbol as S

ALPHAS = [0.0, 0.125, 0.25, 0.5, 0.75]


@st.composite
def layers(draw):
    in_c = draw(st.sampled_from([1, 2, 3, 4, 6, 8, 12, 16]))
    depthwise = draw(st.booleans())
    out_c = in_c if depthwise else draw(st.sampled_from([1, 2, 4, 6, 8, 12, 16]))
    kernel = draw(st.sampled_from([1, 3, 5]))
    return dict(
        in_c=in_c, out_c=out_c, kernel=kernel,
        padding=kernel // 2 if draw(st.integers(0, 9)) else 0,
        stride=draw(st.sampled_from([1, 2, 2, 3]) if draw(st.integers(0, 9)) == 0
                    else st.sampled_from([1, 2])),
        alpha_in=draw(st.sampled_from(ALPHAS)), alpha_out=draw(st.sampled_from(ALPHAS)),
        groups=out_c if depthwise else draw(st.sampled_from([1, 1, 2, 4])),
        use_bias=draw(st.booleans()), deferred=draw(st.booleans()),
        size=(draw(st.integers(1, 40)), draw(st.integers(1, 40))),
        batch=draw(st.integers(1, 2)), seed=draw(st.integers(0, 2 ** 16)))


def split(c, alpha):
    return c - int(alpha * c), int(alpha * c)


def broken_rules(cfg):
    """Message fragments of every rule ``cfg`` breaks, and its paths {name: (in, out)}."""
    (ih, il), (oh, ol) = split(cfg["in_c"], cfg["alpha_in"]), split(cfg["out_c"], cfg["alpha_out"])
    groups = cfg["groups"]
    depthwise = groups > 1 and groups == cfg["out_c"] == cfg["in_c"]
    paths = {"h2h": (ih, oh)}
    if ol:
        paths["h2l"] = (ih, ol)
    if il:
        paths["l2h"] = (il, oh)
        if ol:
            paths["l2l"] = (il, ol)
    if depthwise:
        paths = {k: v for k, v in paths.items() if k in ("h2h", "l2l")}
    rules = set()
    if cfg["stride"] not in (1, 2):
        rules.add("stride must be 1 or 2")
    if depthwise and (ih, il) != (oh, ol):
        rules.add("depthwise OctConv needs equal input and output splits")
    if cfg["deferred"] and groups > 1 and groups == cfg["out_c"] and ol:
        # only a depthwise layer can have groups == channels and a low output (split
        # branches never hold all channels), so a deferred layer may be refused as one
        if split(cfg["out_c"], cfg["alpha_in"]) != (oh, ol):
            rules.add("depthwise OctConv needs equal input and output splits")
    if not depthwise:
        widths = [w for pair in paths.values() for w in pair]
        if any(w < groups for w in widths):
            rules.add("fewer than groups")
        if any(w % groups for w in widths):
            rules.add("not divisible by groups")
    if len(paths) > 1 and 2 * cfg["padding"] != cfg["kernel"] - 1:
        rules.add("size-preserving padding")
    smallest = min(cfg["size"])  # every path's input, pooled per stride and octave
    pooled = [-(-smallest // 2 ** (int(name == "h2l") + int(cfg["stride"] == 2)))
              for name in paths]
    if min(pooled) + 2 * cfg["padding"] < cfg["kernel"]:
        rules.add("is smaller than the kernel")
    return rules, paths


def inputs(cfg):
    rng = np.random.RandomState(cfg["seed"])
    hi_c, lo_c = split(cfg["in_c"], cfg["alpha_in"])
    h, w = cfg["size"]
    hi = rng.randn(cfg["batch"], hi_c, h, w).astype("float32")
    lo = (rng.randn(cfg["batch"], lo_c, (h + 1) // 2, (w + 1) // 2).astype("float32")
          if lo_c else None)
    return hi, lo


def gluon_layer(cfg):
    """The Gluon layer with random weights, run once on ``inputs``; -> (layer, outputs)."""
    layer = G.OctConv2D(cfg["out_c"], cfg["kernel"], strides=cfg["stride"],
                        padding=cfg["padding"], alpha_in=cfg["alpha_in"],
                        alpha_out=cfg["alpha_out"], groups=cfg["groups"],
                        use_bias=cfg["use_bias"],
                        in_channels=0 if cfg["deferred"] else cfg["in_c"], prefix="layer-")
    layer.initialize(mx.init.Normal(0.5))
    hi, lo = inputs(cfg)
    out = layer(nd(hi), nd(lo))
    return layer, tuple(None if o is None else o.asnumpy() for o in out)


def symbol_layer(cfg):
    """The Symbol API layer -> (output pair, {input name: array})."""
    hi, lo = inputs(cfg)
    sym = S.oct_conv((mx.sym.var("hi"), None if lo is None else mx.sym.var("lo")), "layer",
                     cfg["out_c"], cfg["kernel"], cfg["in_c"], stride=cfg["stride"],
                     padding=cfg["padding"], alpha_in=cfg["alpha_in"],
                     alpha_out=cfg["alpha_out"], groups=cfg["groups"],
                     use_bias=cfg["use_bias"])
    return sym, ({"hi": hi} if lo is None else {"hi": hi, "lo": lo})


def symbol_checks(cfg):
    """Build the Symbol layer and check its input pair (shapes come from inference)."""
    sym, arrays = symbol_layer(cfg)
    S.check_pairs(mx.sym.Group([s for s in sym if s is not None]),
                  **{k: v.shape for k, v in arrays.items()})


def assert_pair_close(got, want):
    assert (got[1] is None) == (want[1] is None)
    for g, w in zip(got, want):
        if w is not None:
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(w).max()))


@settings(max_examples=500, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(layers())
def test_generated_layers_equal_the_reference_or_name_the_rule(cfg):
    rules, paths = broken_rules(cfg)
    event("invalid" if rules else "valid")
    if rules:
        for build in (lambda: gluon_layer(cfg), lambda: symbol_checks(cfg)):
            try:
                build()
            except ValueError as err:
                assert any(rule in str(err) for rule in rules), (str(err), rules)
            else:
                raise AssertionError(f"accepted a layer that breaks {rules}")
        return
    layer, got = gluon_layer(cfg)
    params = {k: p.data().asnumpy() for k, p in layer.collect_params().items()}
    weights = {k[len("layer-"):-len("_weight")]: v for k, v in params.items()
               if k.endswith("_weight")}
    assert set(weights) == set(paths)
    biases = {k[len("layer-"):-len("_bias")]: v for k, v in params.items()
              if k.endswith("_bias")}
    hi, lo = inputs(cfg)
    want = reference.octconv(hi, lo, weights, cfg["stride"], (cfg["padding"],) * 2, biases)
    assert_pair_close(got, want)
    assert_pair_close(run_symbol(*symbol_layer(cfg), params), want)
