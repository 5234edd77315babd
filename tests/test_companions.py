"""Pair companions (BN, activations, pooling, SE, concat, add, merge) against NumPy,
Symbol against Gluon."""
import mxnet as mx
import numpy as np
import pytest

import reference
from helpers import nd, pair_arrays, randomize, run_symbol
from octconv import gluon as G
from octconv import symbol as S

RNG = np.random.RandomState(7)
HI, LO = pair_arrays(RNG, 2, (6, 2), 7)
INPUTS = {"hi": HI, "lo": LO}
PAIR = (mx.sym.var("hi"), mx.sym.var("lo"))


def gluon_run(block, hi=HI, lo=LO):
    return tuple(None if o is None else o.asnumpy() for o in block(nd(hi), nd(lo)))


def check(got, want):
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if w is not None:
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_batchnorm_per_branch_in_inference():
    block = G.OctBatchNorm(8, alpha=0.25, prefix="bn-")
    params = randomize(block)
    assert sorted(params) == sorted(f"bn-{b}_{p}" for b in "hl"
                                    for p in ("gamma", "beta", "running_mean", "running_var"))

    def bn(x, b):
        g, be, m, v = (params[f"bn-{b}_{p}"][None, :, None, None]
                       for p in ("gamma", "beta", "running_mean", "running_var"))
        return (x - m) / np.sqrt(v + 1e-5) * g + be

    want = (bn(HI, "h"), bn(LO, "l"))
    check(gluon_run(block), want)
    check(run_symbol(S.oct_batchnorm(PAIR, "bn"), INPUTS, params), want)


@pytest.mark.parametrize("act, fn", [
    ("relu", lambda x: np.maximum(x, 0)),
    ("relu6", lambda x: np.clip(x, 0, 6)),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
])
def test_activations(act, fn):
    want = (fn(HI * 4), fn(LO * 4))
    check(gluon_run(G.OctActivation(act), HI * 4, LO * 4), want)
    check(run_symbol(S.oct_activation(PAIR, act), {"hi": HI * 4, "lo": LO * 4}, {}), want)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        G.OctActivation("gelu")


def test_average_pool_and_global_pool_on_odd_maps():
    want = (reference.avg_pool2(HI), reference.avg_pool2(LO))
    assert want[1].shape[2] == (want[0].shape[2] + 1) // 2
    check(gluon_run(G.OctPool("avg", 2, 2)), want)
    check(run_symbol(S.oct_pool(PAIR, "avg", 2, 2), INPUTS, {}), want)
    want = (HI.mean(axis=(2, 3), keepdims=True), LO.mean(axis=(2, 3), keepdims=True))
    check(gluon_run(G.OctGlobalPool()), want)
    check(run_symbol(S.oct_global_pool(PAIR), INPUTS, {}), want)


def test_max_pool_3x3_stride_2_pad_1():
    def maxpool(x):
        n, c, h, w = x.shape
        padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
        oh, ow = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        return np.array([[[[padded[a, b, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max()
                            for j in range(ow)] for i in range(oh)]
                          for b in range(c)] for a in range(n)])

    want = (maxpool(HI), maxpool(LO))
    check(gluon_run(G.OctPool("max", 3, 2, 1)), want)
    check(run_symbol(S.oct_pool(PAIR, "max", 3, 2, 1), INPUTS, {}), want)
    assert want[1].shape[2] == (want[0].shape[2] + 1) // 2
    with pytest.raises(ValueError, match="pair pooling needs kernel"):
        S.oct_pool(PAIR, "max", 3, 2, 0)


def test_concat_add_merge():
    hi2, lo2 = pair_arrays(RNG, 2, (3, 5), 7)
    got = run_symbol(S.oct_concat(PAIR, (mx.sym.var("h2"), mx.sym.var("l2"))),
                     {**INPUTS, "h2": hi2, "l2": lo2}, {})
    check(got, (np.concatenate([HI, hi2], 1), np.concatenate([LO, lo2], 1)))
    got = run_symbol(S.oct_concat(PAIR, (mx.sym.var("h2"), None)), {**INPUTS, "h2": hi2}, {})
    check(got, (np.concatenate([HI, hi2], 1), LO))
    got = run_symbol(S.oct_add(PAIR, PAIR), INPUTS, {})
    check(got, (2 * HI, 2 * LO))
    with pytest.raises(ValueError, match="cannot add a pair with a low branch"):
        S.oct_add(PAIR, (mx.sym.var("hi"), None))
    want = np.concatenate([HI, reference.upsample2(LO, HI.shape[2:])], 1)
    np.testing.assert_allclose(run_symbol((S.oct_merge(PAIR), None), INPUTS, {})[0], want)
    np.testing.assert_allclose(G.OctMerge()(nd(HI), nd(LO)).asnumpy(), want)
    np.testing.assert_allclose(G.OctMerge()(nd(HI)).asnumpy(), HI)


def test_squeeze_excitation_over_both_branches():
    block = G.OctSE(32, alpha=0.25, reduction=16, prefix="se-")
    params = randomize(block)
    hi, lo = pair_arrays(RNG, 2, (24, 8), 5)
    squeezed = np.concatenate([hi.mean(axis=(2, 3)), lo.mean(axis=(2, 3))], 1)
    w1, b1 = params["se-conv1_weight"][:, :, 0, 0], params["se-conv1_bias"]
    assert w1.shape == (2, 32)
    hidden = np.maximum(squeezed @ w1.T + b1, 0)

    def gate(x, b):
        w, bias = params[f"se-conv2-{b}_weight"][:, :, 0, 0], params[f"se-conv2-{b}_bias"]
        return x * (1 / (1 + np.exp(-(hidden @ w.T + bias))))[:, :, None, None]

    want = (gate(hi, "h"), gate(lo, "l"))
    check(gluon_run(block, hi, lo), want)
    check(run_symbol(S.oct_se(PAIR, "se", 32, 0.25), {"hi": hi, "lo": lo}, params), want)
