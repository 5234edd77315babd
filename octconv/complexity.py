"""Parameters and multiply-adds of a network, read off its MXNet Symbol graph.

Counting rule (the paper's "FLOPs"): a Convolution costs output elements x
(input channels / groups) x kh x kw, a FullyConnected input x output, per image;
pooling, normalization, activations and sums are free. Parameters are the learnable
arguments: every argument but the inputs, BatchNorm gammas fixed by ``fix_gamma``,
variables with ``lr_mult`` 0 and those named as frozen.

The paper's FLOPs of Oct networks came from the FLOPs tool its release credits (Ldpe2G,
DeepLearningForFun/MXNet-Python/CalculateFlopsTool), which also counts biases, pooling
and ReLU operators: :func:`tool_flops` applies that rule, :func:`paper_flops` applies it
as the release's graph of a network would have met it (docs/ARCHITECTURES.md 5).
"""
from dataclasses import dataclass

import mxnet as mx

from octconv.graph import Graph

__all__ = ["Complexity", "count_symbol", "count_gluon", "count_model", "trace_gluon", "table1",
           "tool_flops", "paper_flops"]

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


def _graph(sym, input_shapes):
    """``(nodes, {argument: shape}, {output: shape})`` of ``sym`` for ``input_shapes``,
    which must have batch size 1 (counts are per image)."""
    for name, shape in input_shapes.items():
        if shape[0] != 1:
            raise ValueError(f"input {name!r} must have batch size 1, got shape {shape}")
    internals = sym.get_internals()
    arg_shapes, out_shapes, _ = internals.infer_shape(**input_shapes)
    if arg_shapes is None:
        raise ValueError(f"cannot infer shapes from inputs {input_shapes}")
    return (Graph(sym), dict(zip(internals.list_arguments(), arg_shapes)),
            dict(zip(internals.list_outputs(), out_shapes)))


def count_symbol(sym, input_shapes, frozen=()):
    """Count ``sym`` for one image; ``input_shapes`` maps each input name to its shape
    (batch size 1)."""
    graph, args, outs = _graph(sym, input_shapes)
    frozen = set(frozen) | graph.fixed_gammas() | {
        name for name, attrs in sym.attr_dict().items() if float(attrs.get("__lr_mult__", 1)) == 0}
    macs = 0
    for i, node in enumerate(graph.nodes):
        if node["op"] in _WEIGHTED_OPS:
            weight = graph.name(graph.input(i, 1))
            macs += _prod(outs[node["name"] + "_output"]) * _prod(args[weight][1:])
    params = sum(_prod(shape) for name, shape in args.items()
                 if name not in input_shapes and name not in frozen)
    return Complexity(params=params, macs=macs)


# Operators a ReLU's BatchNorm is looked for through: sums and the squeeze-excitation gate.
_PASS_THROUGH = ("elemwise_add", "_Plus", "_plus", "ElementWiseSum", "broadcast_add",
                 "broadcast_mul")
# The release's Gluon MobileNet v1 pools its head with AdaptiveAvgPooling2D, which the
# tool does not count (utils/gluon/utils/mobilenetv1.py); its other networks use
# GlobalAvgPool2D, a Pooling operator.
_ADAPTIVE_HEAD = ("mobilenet_v1_075", "mobilenet_v1_100")


def _feeding_batchnorm(nodes, node):
    """The name of the BatchNorm nearest above ``node`` through sums and gates, or None."""
    frontier = [nodes[i[0]] for i in node["inputs"]]
    while frontier:
        source = frontier.pop(0)
        if source["op"] == "BatchNorm":
            return source["name"]
        if source["op"] in _PASS_THROUGH:
            frontier += [nodes[i[0]] for i in source["inputs"]]
    return None


def tool_flops(sym, input_shapes, relu_counts=None, se_pools=True, head_pool=True,
               merge_stacked_pools=False):
    """FLOPs of ``sym`` (one image) by the rule of the tool the release credits: conv
    multiply-adds, one op per output element of a conv bias, fully-connected weights and
    biases, pooling output elements x kernel area (global pools: input elements), and
    the outputs of ``Activation(relu)``; nothing else.

    The tool counts operators, so the figure depends on which operators a graph was
    built with. ``relu_counts(layer)`` says whether a ReLU fed by the BatchNorm ``layer``
    counts (default: all; ReLUs not fed by one, as in squeeze-excitation, always do);
    ``se_pools`` and ``head_pool`` whether the squeeze-excitation and classifier global
    pools count. ``merge_stacked_pools``: an average pool of an average pool counts as
    one pool of their combined kernel (where a stride-2 octave conv pools the high map
    twice for its h->l path, the release's Gluon code pools 4x4 once).
    """
    graph, args, outs = _graph(sym, input_shapes)
    nodes = graph.nodes
    consumers = {}
    for index in range(len(nodes)):
        for source in graph.inputs(index):
            consumers.setdefault(source, []).append(index)

    def output(node):
        return args[node["name"]] if node["op"] == "null" else outs[node["name"] + "_output"]

    def feeds_convolution(index):  # a squeeze-excitation pool (through its concat)
        return any(nodes[c]["op"] == "Convolution" or
                   (nodes[c]["op"] == "Concat" and feeds_convolution(c))
                   for c in consumers.get(index, ()))

    flops = 0
    for index, node in enumerate(nodes):
        op, attrs = node["op"], graph.attrs(index)
        if op in _WEIGHTED_OPS:
            weight = _prod(args[graph.name(graph.input(index, 1))])
            out = output(node)
            flops += weight * (_prod(out[2:]) if op == "Convolution" else 1)
            if len(node["inputs"]) > 2:  # a bias
                flops += _prod(out) if op == "Convolution" else out[1]
        elif op == "Pooling" and attrs.get("global_pool") == "True":
            if se_pools if feeds_convolution(index) else head_pool:
                flops += _prod(output(nodes[graph.input(index)]))
        elif op == "Pooling":
            source = graph.pooled_entry(index)[0]
            kernel = _prod(graph.window(index)[0])
            if (merge_stacked_pools and graph.op(source) == "Pooling"
                    and attrs.get("pool_type") == graph.attrs(source).get("pool_type") == "avg"):
                kernel *= _prod(graph.window(source)[0])
            flops += _prod(output(node)) * kernel
        elif op == "Activation" and attrs.get("act_type") == "relu":
            layer = _feeding_batchnorm(nodes, node)
            if relu_counts is None or layer is None or relu_counts(layer):
                flops += _prod(output(node))
    return flops


def paper_flops(name, alpha=0.0, size=224, sym=None):
    """The FLOPs figure the paper prints for the registered network ``name``:
    :func:`tool_flops` on its Symbol graph (or on ``sym``, the same network traced from
    Gluon), counted as the release's own graph was. The release built the Table 3 and 5
    networks with Gluon, where octave layers apply ReLU with a ``relu`` operator and
    squeeze-excitation pools with adaptive pooling, neither of which the tool counts
    (its plain Gluon layers use ``Activation``), and a stride-2 octave conv pools its
    high input 4x4 once for the h->l path. Table 6 (video, no released code) counts no
    activation at all: the one reading of the rule that gives its baselines and its
    alpha .1 rows (docs/ARCHITECTURES.md 6.2), except for SlowFast, whose figures scale
    the SlowFast paper's multiply-adds (the spec's ``figure_rule``); a clip of the
    spec's frames, Kinetics' 400 classes."""
    from octconv import release
    from octconv.specs import get_spec
    from octconv.symbol import get_symbol
    spec = get_spec(name)
    if sym is None:
        sym = get_symbol(name, alpha=alpha, num_classes=spec.paper_classes)
    shapes = {"data": spec.input_shape(size), "softmax_label": (1,)}
    shapes = {k: v for k, v in shapes.items() if k in sym.list_arguments()}
    if spec.dims == 3 and spec.arch.figure_rule == "macs":
        return count_symbol(sym, shapes).macs
    if spec.dims == 3:
        return tool_flops(sym, shapes, relu_counts=lambda layer: False)
    if release.RELEASE.get(name, ("symbol",))[0] != "gluon":
        return tool_flops(sym, shapes)
    return tool_flops(sym, shapes, relu_counts=lambda layer: release.plain_in_gluon(name, layer),
                      se_pools=False, head_pool=name not in _ADAPTIVE_HEAD,
                      merge_stacked_pools=True)


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


def count_model(name, alpha=0.0, api="symbol", size=224, classes=1000, **options):
    """Count the registered network ``name`` at ``alpha`` built by ``api`` at ``size`` px
    (``options`` as the zoo takes them, e.g. ``exchange``)."""
    from octconv.specs import get_spec
    shape = get_spec(name).input_shape(size)
    if api == "symbol":
        from octconv.symbol import get_symbol
        sym = get_symbol(name, alpha=alpha, num_classes=classes, **options)
        return count_symbol(sym, {"data": shape, "softmax_label": (1,)})
    if api == "gluon":
        from octconv.gluon import get_model
        return count_gluon(get_model(name, alpha=alpha, classes=classes, **options),
                           {"data": shape})
    raise ValueError(f"api must be 'symbol' or 'gluon', got {api!r}")
