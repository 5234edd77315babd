"""Parameters and multiply-adds of a network, read off its MXNet Symbol graph.

Counting rule (the paper's "FLOPs"): a Convolution costs output elements x
(input channels / groups) x kh x kw, a FullyConnected input x output, per image;
pooling, normalization, activations and sums are free. Parameters are the learnable
arguments: every argument but the inputs, BatchNorm gammas fixed by ``fix_gamma``,
variables with ``lr_mult`` 0 and those named as frozen.
"""
import json
from dataclasses import dataclass

import mxnet as mx

__all__ = ["Complexity", "count_symbol", "count_gluon", "count_model", "trace_gluon", "table1"]

_WEIGHTED_OPS = ("Convolution", "FullyConnected")


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int


def _prod(shape):
    out = 1
    for s in shape:
        out *= int(s)
    return out


def count_symbol(sym, input_shapes, frozen=()):
    """Count ``sym`` for one image; ``input_shapes`` maps each input name to its shape.

    Shapes must have batch size 1 (MACs are per image).
    """
    for name, shape in input_shapes.items():
        if shape[0] != 1:
            raise ValueError(f"input {name!r} must have batch size 1, got shape {shape}")
    internals = sym.get_internals()
    arg_shapes, out_shapes, _ = internals.infer_shape(**input_shapes)
    if arg_shapes is None:
        raise ValueError(f"cannot infer shapes from inputs {input_shapes}")
    args = dict(zip(internals.list_arguments(), arg_shapes))
    outs = dict(zip(internals.list_outputs(), out_shapes))
    nodes = json.loads(sym.tojson())["nodes"]
    frozen = set(frozen) | {name for name, attrs in sym.attr_dict().items()
                            if float(attrs.get("__lr_mult__", 1)) == 0}
    macs = 0
    for node in nodes:
        if node["op"] in _WEIGHTED_OPS:
            weight = nodes[node["inputs"][1][0]]["name"]
            macs += _prod(outs[node["name"] + "_output"]) * _prod(args[weight][1:])
        if node["op"] == "BatchNorm" and node.get("attrs", {}).get("fix_gamma") == "True":
            frozen.add(nodes[node["inputs"][1][0]]["name"])
    params = sum(_prod(shape) for name, shape in args.items()
                 if name not in input_shapes and name not in frozen)
    return Complexity(params=params, macs=macs)


def trace_gluon(block, input_names=("data",)):
    """The Symbol of a Gluon block (pair outputs grouped, absent branches dropped)."""
    block.hybridize()
    out = block(*[mx.sym.var(n) for n in input_names])
    outputs = [o for o in (out if isinstance(out, (list, tuple)) else [out]) if o is not None]
    return outputs[0] if len(outputs) == 1 else mx.sym.Group(outputs)


def count_gluon(block, input_shapes):
    """Count a Gluon block; parameters with ``grad_req='null'`` are not learnable."""
    sym = trace_gluon(block, tuple(input_shapes))
    frozen = {p.name for p in block.collect_params().values() if p.grad_req == "null"}
    return count_symbol(sym, input_shapes, frozen)


def _output_elements(sym, input_shapes):
    return sum(_prod(s) for s in sym.infer_shape(**input_shapes)[1])


def table1(alphas=(0.0, 0.125, 0.25, 0.5, 0.75, 0.875, 1.0), channels=256, size=56):
    """The paper's Table 1 for one 3x3 layer, ``channels`` in and out, ``size`` pixels.

    For each alpha: multiply-adds and output feature elements of the OctConv layer
    (alpha_in = alpha_out = alpha), relative to alpha 0. At alpha 1 every channel is
    low-frequency: the layer is a plain convolution on the half-resolution map.
    Returns a list of ``(alpha, flops_ratio, memory_ratio)``.
    """
    from octconv.symbol import oct_conv
    from octconv.unit import split_channels

    def layer(alpha):
        if alpha == 1.0:
            alpha, layer_size = 0.0, (size + 1) // 2
        else:
            layer_size = size
        high, low = split_channels(channels, alpha)
        shapes = {"hi": (1, high, layer_size, layer_size)}
        lo = None
        if low:
            lo = mx.sym.var("lo")
            shapes["lo"] = (1, low, (layer_size + 1) // 2, (layer_size + 1) // 2)
        pair = oct_conv((mx.sym.var("hi"), lo), "layer", channels, 3, channels,
                        padding=1, alpha_in=alpha, alpha_out=alpha)
        sym = mx.sym.Group([t for t in pair if t is not None])
        return count_symbol(sym, shapes).macs, _output_elements(sym, shapes)

    base_macs, base_memory = layer(0.0)
    rows = []
    for alpha in alphas:
        macs, memory = layer(alpha)
        rows.append((alpha, macs / base_macs, memory / base_memory))
    return rows


def count_model(name, alpha=0.0, api="symbol", size=224):
    """Count the registered network ``name`` at ``alpha`` built by ``api`` at ``size`` px."""
    shape = (1, 3, size, size)
    if api == "symbol":
        from octconv.symbol import get_symbol
        return count_symbol(get_symbol(name, alpha=alpha), {"data": shape, "softmax_label": (1,)})
    if api == "gluon":
        from octconv.gluon import get_model
        return count_gluon(get_model(name, alpha=alpha), {"data": shape})
    raise ValueError(f"api must be 'symbol' or 'gluon', got {api!r}")
