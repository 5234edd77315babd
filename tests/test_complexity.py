"""The counter against hand counts and the paper's Table 1."""
import json
import math
import os

import mxnet as mx
import numpy as np
import pytest

from helpers import load_script, run_script
from octconv import gluon as G
from octconv import symbol as S
from octconv.complexity import count_gluon, count_model, count_symbol, table1, tool_flops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Chen et al. 2019, Table 1: relative #FLOPs and memory cost of the representation.
PAPER_TABLE1 = {0.0: (100, 100), 0.125: (82, 91), 0.25: (67, 81), 0.5: (44, 63),
                0.75: (30, 44), 0.875: (26, 35), 1.0: (25, 25)}


def percent(x):
    return math.floor(100 * x + 0.5)  # the paper rounds halves up (43.75 -> 44)


def test_counter_matches_hand_counts():
    data = mx.sym.var("data")
    x = mx.sym.Convolution(data, num_filter=8, kernel=(3, 3), pad=(1, 1), stride=(2, 2),
                           num_group=2, name="c")                       # 4x10x10 -> 8x5x5
    x = mx.sym.FullyConnected(mx.sym.flatten(x), num_hidden=7, name="fc")
    got = count_symbol(x, {"data": (1, 4, 10, 10)})
    assert got.macs == 8 * 5 * 5 * (4 // 2) * 3 * 3 + 200 * 7
    assert got.params == (8 * 2 * 3 * 3 + 8) + (200 * 7 + 7)
    with pytest.raises(ValueError, match="batch size 1"):
        count_symbol(x, {"data": (2, 4, 10, 10)})


def test_tool_rule_counts_by_hand():
    """The release's FLOPs tool (Ldpe2G): biases, pools and ReLUs on top of MACs."""
    data = mx.sym.var("data")                                            # 4x10x10
    x = mx.sym.Convolution(data, num_filter=8, kernel=(3, 3), pad=(1, 1), name="c")
    x = mx.sym.Activation(x, act_type="relu")                            # fed by a conv
    x = mx.sym.Activation(mx.sym.BatchNorm(x, name="blk_bn"), act_type="relu")
    x = mx.sym.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="avg")  # 8x5x5
    x = mx.sym.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="avg")  # 8x2x2
    x = mx.sym.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg")
    x = mx.sym.FullyConnected(mx.sym.flatten(x), num_hidden=7, name="fc")
    shapes = {"data": (1, 4, 10, 10)}
    conv, bias, relu, fc = 800 * 4 * 9, 800, 800, 8 * 7 + 7
    assert tool_flops(x, shapes) == (conv + bias + relu + relu + 200 * 4 + 32 * 4 + 32 + fc)
    # ReLUs after the BatchNorm skipped, no head pool, the two 2x2 pools as one 4x4
    assert tool_flops(x, shapes, relu_counts=lambda layer: layer != "blk_bn",
                      head_pool=False, merge_stacked_pools=True) == (
        conv + bias + relu + 200 * 4 + 32 * 16 + fc)


def test_octconv_layer_counts_by_hand():
    """One 3x3 layer, 16 -> 16 channels at alpha .25 on 8x8: four paths."""
    block = G.OctConv2D(16, 3, padding=1, alpha_in=0.25, alpha_out=0.25, in_channels=16)
    got = count_gluon(block, {"hi": (1, 12, 8, 8), "lo": (1, 4, 4, 4)})
    assert got.params == 16 * 16 * 9
    assert got.macs == 9 * (12 * 12 * 64 + 12 * 4 * 16 + 4 * 12 * 16 + 4 * 4 * 16)


def test_table1_reproduced_to_the_papers_rounding():
    rows = {a: (f, m) for a, f, m in table1()}
    assert set(rows) == set(PAPER_TABLE1)
    for alpha, (flops, memory) in PAPER_TABLE1.items():
        assert percent(rows[alpha][0]) == flops, alpha
        # The paper prints 35 % memory at alpha .875, where its own formula
        # 1 - 3/4 alpha gives 34.375 %; no rounding rule yields 35 there and 81 at .25.
        if alpha == 0.875:
            assert rows[alpha][1] == 1 - 0.75 * alpha and abs(100 * rows[alpha][1] - memory) < 1
        else:
            assert percent(rows[alpha][1]) == memory, alpha


def test_cli_prints_table1_as_json():
    rows = json.loads(run_tool("--json").stdout)
    assert [percent(r["flops"]) for r in rows] == [v[0] for v in PAPER_TABLE1.values()]


def run_tool(*args):
    return run_script("tools/complexity.py", *args)


def test_cli_contract_one_network_as_json():
    out = run_tool("--api", "gluon", "--model", "resnet26_v2", "--alpha", "0.25", "--size",
                   "224", "--json")
    result = json.loads(out.stdout)
    # the release's own count (golden_complexity.json: symbol/resnet26_v2/0.25)
    assert (result["params"], result["macs"]) == (15991336, 1858158592)
    bad = run_tool("--model", "resnet26_v2", "--alpha", "1.5")
    assert bad.returncode == 2 and "alpha must be in [0, 1), got 1.5" in bad.stderr
    bad = run_tool("--model", "resnet27")
    assert bad.returncode == 2 and "invalid choice: 'resnet27'" in bad.stderr


def test_cli_counts_inputs_of_unequal_sides():
    """``--size HEIGHTxWIDTH``: every map of ResNet-50 halves evenly from 64 and from 96
    px, so each layer's multiply-adds scale with height x width (the classifier's stay),
    and the count at 64 x 96 lies on the line through those at 64 and 96 px squares. The
    Gluon API counts the same with the sides swapped."""
    square = {side: count_model("resnet50_v2", 0.5, "symbol", side).macs for side in (64, 96)}
    on_line = square[64] + (square[96] - square[64]) * (64 * 96 - 64 ** 2) // (96 ** 2 - 64 ** 2)
    out = json.loads(run_tool("--model", "resnet50_v2", "--alpha", "0.5", "--size", "64x96",
                              "--json").stdout)
    assert (out["size"], out["macs"]) == ([64, 96], on_line)
    assert count_model("resnet50_v2", 0.5, "gluon", (96, 64)).macs == on_line
    assert f"{on_line:,} multiply-adds at 64x96" in run_tool(
        "--model", "resnet50_v2", "--alpha", "0.5", "--size", "64x96").stdout
    assert "| MACs at 64x96 |" in load_script("tools/complexity.py").format_zoo([], (64, 96))


def test_zoo_table_json_and_readme():
    """One run of ``--zoo --json``; the README's table is those rows as the tool prints
    them (``--zoo`` formats the same rows)."""
    rows = json.loads(run_tool("--zoo", "--json").stdout)
    row = next(r for r in rows if r["model"] == "resnet50_v2" and r["alpha"] == 0.5)
    # the release's own count (golden_complexity.json: symbol/resnet50_v2/0.5)
    assert (row["params"], row["macs"], row["tool_flops"]) == (25553192, 2367143936, 2382530152)
    assert row["paper"] == dict(table="Table 2", params_m=25.6, flops=2.4, unit="G")

    tool = load_script("tools/complexity.py")
    readme = open(os.path.join(ROOT, "README.md")).read()
    begin, end = "<!-- zoo table: begin -->\n", "\n<!-- zoo table: end -->"
    table = readme[readme.index(begin) + len(begin):readme.index(end)]
    assert table == tool.format_zoo(rows, 224)


def dropped_paths(name, alpha, size, path):
    """``{weight name: (weights, multiply-adds)}`` of the ``path`` convolutions of the full
    network that sit in layers with an l2l path, from MXNet's own shape inference."""
    internals = S.get_symbol(name, alpha=alpha, num_classes=10).get_internals()
    shapes = dict(zip(internals.list_outputs(),
                      internals.infer_shape(data=(1, 3, size, size))[1]))
    weights = {n: s for n, s in shapes.items() if n.endswith("_weight")}
    dropped = {}
    for weight, shape in weights.items():
        layer = weight[:-len(f"-{path}_weight")]
        if weight.endswith(f"-{path}_weight") and f"{layer}-l2l_weight" in weights:
            out = shapes[f"{layer}-{path}_output"]
            dropped[weight] = (np.prod(shape), np.prod(shape) * np.prod(out[2:]))
    return dropped


@pytest.mark.parametrize("api", ["symbol", "gluon"])
@pytest.mark.parametrize("name, alpha", [("resnet10_v2_mini", 0.25), ("mobilenet_v1_075", 0.375)])
@pytest.mark.parametrize("path", ["h2l", "l2h"])
def test_ablated_network_loses_exactly_the_dropped_paths(api, name, alpha, path):
    """Parameters and multiply-adds of the network without one exchange path: the full
    network's minus that path's convolutions in every layer that has l2l."""
    size, kept = 64, tuple({"h2l", "l2h"} - {path})
    dropped = dropped_paths(name, alpha, size, path)
    assert dropped
    full = count_model(name, alpha, api, size, classes=10)
    ablated = count_model(name, alpha, api, size, classes=10, exchange=kept)
    assert full.params - ablated.params == sum(w for w, _ in dropped.values())
    assert full.macs - ablated.macs == sum(m for _, m in dropped.values())
    names = lambda **kw: set(
        S.get_symbol(name, alpha=alpha, num_classes=10, **kw).list_arguments() if api == "symbol"
        else G.get_model(name, alpha=alpha, classes=10, **kw).collect_params())
    assert names(exchange=kept) == names() - set(dropped)


def test_cli_counts_an_ablated_network():
    out = json.loads(run_tool("--model", "resnet10_v2_mini", "--alpha", "0.25", "--size", "64",
                              "--exchange", "none", "--json").stdout)
    dropped = {**dropped_paths("resnet10_v2_mini", 0.25, 64, "h2l"),
               **dropped_paths("resnet10_v2_mini", 0.25, 64, "l2h")}
    full = count_model("resnet10_v2_mini", 0.25, "symbol", 64)
    assert out["exchange"] == []
    assert full.macs - out["macs"] == sum(m for _, m in dropped.values())
    bad = run_tool("--model", "resnet10_v2_mini", "--exchange", "h2h")
    assert bad.returncode == 2 and "unknown: h2h" in bad.stderr
