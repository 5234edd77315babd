"""OctConv pair operators for the Symbol API.

Each function takes a pair ``(hi, lo)`` of Symbols (``lo=None`` when absent), a ``name``
that prefixes its parameters, and returns a pair. Parameter names equal the Gluon
API's for the same layer (``<name>-h2h_weight``, ``<name>-h_gamma``,
``<name>-h_running_mean``, ...), so weights move between the two APIs by name.

A Symbol has no shapes until MXNet infers them: :func:`check_pairs` infers them for
given input shapes and checks every OctConv layer's input pair with the Gluon layer's
checks and messages (the project's compile and export paths call it).
"""
import contextlib
import io

import mxnet as mx

from octconv import ops
from octconv.graph import Graph, int_tuple
from octconv.unit import EXCHANGE_PATHS, branch_widths, plan_octconv

__all__ = ["oct_conv", "oct_conv3d", "oct_batchnorm", "oct_activation", "oct_pool",
           "oct_global_pool", "oct_concat", "oct_add", "oct_merge", "oct_se", "check_pairs"]

F = mx.symbol


def oct_conv(data, name, channels, kernel_size, in_channels, stride=1, padding=0,
             alpha_in=0.0, alpha_out=0.0, groups=1, use_bias=False, exchange=EXCHANGE_PATHS,
             dims=2):
    """Octave convolution: the paths of :func:`octconv.unit.plan_octconv` summed per branch.

    ``in_channels`` is the total input width (high + low), split by ``alpha_in``, or
    its explicit ``(high, low)`` widths; ``exchange`` names the exchange paths kept
    (both by default); ``dims=3`` makes the video layer of :func:`oct_conv3d`. Returns
    ``(hi, lo)``; ``lo`` is None when ``alpha_out`` leaves no low channel. Weights are
    declared with their shapes, so MXNet refuses an input of another width wherever it
    infers shapes; each path's convolution records the layer's input widths and its
    poolings for :func:`check_pairs`.
    """
    plan = plan_octconv(channels, kernel_size, in_channels=in_channels, stride=stride,
                        padding=padding, alpha_in=alpha_in, alpha_out=alpha_out,
                        groups=groups, use_bias=use_bias, exchange=exchange, dims=dims)
    hi, lo = data
    ops.check_pair(hi, lo, plan.in_channels, plan.has_low_input, name, dims)

    temporal = {} if dims == 2 else dict(stride=plan.conv_stride)  # (2-D: MXNet's default)

    def conv(path, x):
        weight = F.var(f"{name}-{path.name}_weight", shape=(
            path.channels, path.in_channels // path.groups) + plan.kernel_size)
        return F.Convolution(x, weight=weight, name=f"{name}-{path.name}",
                             num_filter=path.channels, kernel=plan.kernel_size,
                             pad=plan.padding, num_group=path.groups, **temporal,
                             no_bias=not path.use_bias,
                             attr={"__octconv_in__": str(tuple(plan.in_channels)),
                                   "__octconv_pools__": str(path.pools)})

    return ops.octconv_forward(F, plan, hi, lo, conv)


def oct_conv3d(data, name, channels, kernel_size, in_channels, stride=1, padding=0,
               alpha_in=0.0, alpha_out=0.0, groups=1, use_bias=False, exchange=EXCHANGE_PATHS):
    """Octave convolution of videos (N, C, T, H, W), the octave spatial only (paper,
    Sec. 4.4): :func:`oct_conv` with ``kernel_size`` and ``padding`` ints or ``(t, h, w)``
    and ``stride`` an int (height and width) or ``(t, s, s)`` with ``s`` 1 or 2."""
    return oct_conv(data, name, channels, kernel_size, in_channels, stride, padding, alpha_in,
                    alpha_out, groups, use_bias, exchange, dims=3)


def oct_batchnorm(data, name, momentum=0.9, eps=1e-5, affine=True, gamma_init="ones"):
    """BatchNorm of each branch with its own parameters (``<name>-h_*``, ``<name>-l_*``).

    Running statistics are named ``_running_mean`` / ``_running_var`` as in Gluon.
    ``affine=False`` freezes gamma at 1 (``fix_gamma``) and beta at 0 (``lr_mult`` 0).
    ``gamma_init`` other than "ones" (e.g. "zeros") is set on the gamma variables
    (their ``__init__`` attribute).
    """
    def bn(x, branch):
        prefix = f"{name}-{branch}_"
        frozen = {} if affine else dict(lr_mult=0.0, wd_mult=0.0)
        init = {} if gamma_init == "ones" else dict(init=mx.init.create(gamma_init))
        gamma = F.var(prefix + "gamma", **init, **frozen)
        return F.BatchNorm(
            x, name=f"{name}-{branch}", momentum=momentum, eps=eps, fix_gamma=not affine,
            gamma=gamma, beta=F.var(prefix + "beta", **frozen),
            moving_mean=F.var(prefix + "running_mean"),
            moving_var=F.var(prefix + "running_var"))

    hi, lo = data
    return bn(hi, "h"), (None if lo is None else bn(lo, "l"))


def oct_activation(data, act):
    """``act`` ('relu', 'relu6' or 'sigmoid') on each branch."""
    return ops.activation(F, data, act)


def oct_pool(data, pool_type, kernel, stride, padding=0, dims=2):
    """Max or average pooling of each branch (``dims=3``: of clips, windows ``(t, h, w)``)."""
    return ops.pool(F, data, pool_type, kernel, stride, padding, dims)


def oct_global_pool(data, pool_type="avg", dims=2):
    """Global pooling of each branch (``dims=3``: of clips)."""
    return ops.global_pool(F, data, pool_type, dims)


def oct_concat(*pairs):
    """Channel concatenation, branch by branch."""
    return ops.concat(F, *pairs)


def oct_add(a, b):
    """Residual sum of two pairs."""
    return ops.add(F, a, b)


def oct_merge(data, dims=2):
    """One high-resolution tensor: hi concatenated with the upsampled lo (``dims=3``:
    clips, upsampled in height and width)."""
    return ops.merge(F, data, dims)


def oct_se(data, name, channels, alpha, reduction=16):
    """Squeeze-excitation over both branches of a ``channels``-wide pair split by ``alpha``
    (or of explicit ``(high, low)`` widths).

    Hidden width ``(high + low) // reduction``; parameters ``<name>-conv1_*``,
    ``<name>-conv2-h_*``, ``<name>-conv2-l_*`` (1x1 convolutions with bias, named as the
    release's Gluon SE).
    """
    widths = dict(zip("hl", branch_widths(channels, alpha)))

    def reduce(x):
        return F.Convolution(x, name=f"{name}-conv1", num_filter=sum(widths.values()) // reduction,
                             kernel=(1, 1))

    def expand(branch, x):
        return F.Convolution(x, name=f"{name}-conv2-{branch}", num_filter=widths[branch],
                             kernel=(1, 1))

    return ops.squeeze_excitation(F, data, reduce, expand)


class _Shaped:
    """An inferred shape where :func:`octconv.ops.check_pair` expects an array."""

    def __init__(self, shape):
        self.shape = tuple(shape)


def _octconv_inputs(graph):
    """``{layer: (declared (high, low), {"h"/"l": (node, output index)}, paths)}`` of
    every :func:`oct_conv` in ``graph``, in graph order: each branch's source before the
    poolings (a pooling and the edge padding of a ceil-mode one), and each path's
    ``(name, branch, poolings, kernel, padding)``."""
    layers = {}
    for i, node in enumerate(graph.nodes):
        attrs = graph.attrs(i)
        if node["op"] != "Convolution" or "__octconv_in__" not in attrs:
            continue  # (MXNet copies the attributes to the bias it creates, too)
        layer, path = node["name"].rsplit("-", 1)
        entry = node["inputs"][0]
        for _ in range(int(attrs["__octconv_pools__"])):
            entry = graph.pooled_entry(entry[0])
        declared, sources, paths = layers.setdefault(
            layer, (int_tuple(attrs["__octconv_in__"]), {}, []))
        sources[path[0]] = (entry[0], entry[1])
        kernel, _, pad = graph.window(i)
        paths.append((path, path[0], int(attrs["__octconv_pools__"]), kernel, pad))
    return layers


def _infer(symbols, shapes):
    group = mx.sym.Group(symbols)
    wanted = {k: v for k, v in shapes.items() if k in group.list_arguments()}
    with contextlib.redirect_stdout(io.StringIO()):  # MXNet prints its arguments
        return group.infer_shape(**wanted)[1]


def check_pairs(sym, **shapes):
    """Check the input pair of every :func:`oct_conv` layer of ``sym`` for the input
    ``shapes`` (``data=(1, 3, 224, 224)``) as :class:`octconv.gluon.OctConv2D` checks
    its own: the same ValueErrors (channel widths, the low map at half the high map
    rounded up, batch sizes, a path's input smaller than its kernel). Layers are checked
    in graph order, so the first bad pair is named even where MXNet's inference would
    fail later on the declared weights."""
    graph = Graph(sym)
    nodes = sym.get_internals()
    outputs = {}  # (node, output index) -> the internal Symbol
    names = nodes.list_outputs()
    for k, name in enumerate(names):
        outputs.setdefault(name, nodes[k])

    def symbol_of(entry):
        node = graph.nodes[entry[0]]
        if node["op"] == "null":
            return outputs[node["name"]]
        single = f"{node['name']}_output"
        return outputs[single] if single in outputs else outputs[f"{single}{entry[1]}"]

    layers = _octconv_inputs(graph)
    if not layers:  # a plain network
        return
    entries = [(layer, b) for layer, (_, sources, _) in layers.items() for b in sources]
    try:  # all at once, or one layer at a time when some weight does not fit its input
        known = dict(zip(entries, _infer([symbol_of(layers[l][1][b]) for l, b in entries],
                                         shapes)))
    except mx.base.MXNetError:
        known = None
    for layer, (declared, sources, paths) in layers.items():
        if known is None:
            try:
                found = dict(zip(sources, _infer([symbol_of(s) for s in sources.values()],
                                                 shapes)))
            except mx.base.MXNetError:
                return  # an earlier, non-OctConv mismatch: MXNet's own inference names it
        else:
            found = {b: known[(layer, b)] for b in sources}
        pair = {b: _Shaped(shape) for b, shape in found.items()}
        dims = len(found["h"]) - 2
        ops.check_pair(pair["h"], pair.get("l"), declared, "l" in pair, layer, dims)
        for name, branch, pools, kernel, pad in paths:
            size = found[branch][2:]
            pooled = list(size[:-2]) + [-(-d // 2 ** pools) for d in size[-2:]]
            ops.check_path_input(f"{layer}-{name}", pooled, kernel, pad)
