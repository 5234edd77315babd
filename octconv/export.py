"""ONNX export of a zoo network (logits output), weights as initializers.

Goes through MXNet's own exporter (``mx.onnx.export_model``, onnx 1.15), which writes
opset-12/13 nodes: every export is meant to be checked against MXNet numerically
(tests/test_export.py does). Nearest upsampling becomes Resize, the l2h crop becomes
Slice, and each ceil-mode 2x2/2 pooling (an edge Pad then a 'valid' pooling in the
graph, see :func:`octconv.ops.avg_pool2`) is folded back into one pooling with
``ceil_mode`` (averages with ``count_include_pad=0``).
"""
import mxnet as mx
import numpy as np

from octconv.files import write_atomically
from octconv.ops import CEIL_POOL_PAD
from octconv.specs import images_shape
from octconv.weights import as_array, check_params

__all__ = ["logits_symbol", "export_onnx"]


def logits_symbol(name, alpha=0.0, classes=1000, **options):
    """The Symbol API network ``name`` ending at its logits (``classifier_output``);
    ``options`` as :func:`octconv.symbol.get_symbol` takes them."""
    from octconv.symbol import get_symbol
    sym = get_symbol(name, alpha=alpha, num_classes=classes, **options)
    return sym.get_internals()["classifier_output"]


def export_onnx(sym, params, path, size=224, batch=1, frames=None, dynamic_batch=False):
    """Write ``sym`` with ``params`` (name -> NDArray or array) to the ONNX file ``path``
    (atomically) for inputs of ``batch`` images of ``size`` (a side, or (height, width)),
    or clips of ``frames`` such images for a video network
    (:func:`~octconv.specs.images_shape`); every weight is first checked against the
    graph (:func:`octconv.weights.check_params`). ``dynamic_batch``: the batch axis is
    left free (named ``batch`` in the input and the output), so that one file runs any
    batch (ResNet-50 alpha .5 ran as fast from it in ONNX Runtime and OpenVINO here)."""
    shape = images_shape(size, batch, frames)
    check_params(sym, params, shape)
    inputs = sym.list_inputs()
    weights = {n: as_array(params[n], np.float32) for n in inputs if n in params}
    shapes = [weights[n].shape if n in weights else shape for n in inputs]
    free = [s if n in weights else (None,) + shape[1:] for n, s in zip(inputs, shapes)]

    out_shape = sym.infer_shape(data=shape)[1][0] if dynamic_batch else None

    def write(tmp):
        mx.onnx.export_model(sym, {}, in_shapes=shapes, in_types=[np.float32] * len(inputs),
                             onnx_file_path=tmp, dynamic=dynamic_batch,
                             dynamic_input_shapes=free if dynamic_batch else None)
        _tidy(tmp, weights, out_shape)

    write_atomically(path, write, suffix=".onnx")
    return path


def _tidy(path, weights, out_shape=None):
    """Pads folded, weights made initializers; with ``out_shape`` (a free batch axis),
    the input's and the output's first axis named ``batch`` and the output's other
    axes given their sizes (MXNet's exporter leaves them unset)."""
    import onnx
    model = onnx.load(path)
    _fold_edge_pads(model.graph, _spatial_sizes(model))  # (faster without the weights)
    _weights_as_initializers(model.graph, weights)
    if out_shape is not None:
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
        out_dims = model.graph.output[0].type.tensor_type.shape.dim
        out_dims[0].dim_param = "batch"
        for dim, size in zip(out_dims[1:], out_shape[1:]):
            dim.dim_value = size
    onnx.save(model, path)


def _weights_as_initializers(graph, weights):
    """The graph inputs named in ``weights`` become initializers holding their arrays,
    so that ``data`` is the only input and runtimes may fold the weights. (MXNet's
    exporter is given no weights: it would write each as a list of Python floats, most
    of a ResNet-50's export: 2.5-3.3 s against 0.4-1.5.)"""
    from onnx import numpy_helper
    graph.initializer.extend(numpy_helper.from_array(array, name)
                             for name, array in weights.items())
    kept = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(kept)


# ONNX orders pads as every axis' start, then every end; MXNet as (start, end) per axis
_CEIL_POOL_PADS = list(CEIL_POOL_PAD[0::2] + CEIL_POOL_PAD[1::2])


def _spatial_sizes(model):
    """Tensor name -> (height, width) of every 4-D tensor ONNX shape inference sizes."""
    import onnx
    inferred = onnx.shape_inference.infer_shapes(model).graph
    sizes = {}
    for info in list(inferred.value_info) + list(inferred.input):
        dims = [d.dim_value for d in info.type.tensor_type.shape.dim]
        if len(dims) == 4:
            sizes[info.name] = tuple(dims[2:])
    return sizes


def _fold_edge_pads(graph, sizes):
    """Pad(edge, one row and column at the end) -> 2x2/2 pooling becomes one pooling of
    the unpadded map with ``ceil_mode=1``: the same numbers without the copy. Maps with
    a dimension of 1 keep the Pad: OpenVINO refuses a 2x2 window on them."""
    from onnx import helper, numpy_helper
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    readers = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    folded = []
    for node in graph.node:
        pad = producers.get(node.input[0]) if node.input else None
        if (node.op_type not in ("AveragePool", "MaxPool") or pad is None
                or pad.op_type != "Pad" or readers[pad.output[0]] != 1
                or helper.get_attribute_value(pad.attribute[0]) != b"edge"
                or constants.get(pad.input[1]) is None
                or constants[pad.input[1]].tolist() != _CEIL_POOL_PADS
                or min(sizes.get(pad.input[0], (0,))) < 2):
            continue
        node.input[0] = pad.input[0]
        for attribute in node.attribute:
            if attribute.name in ("ceil_mode", "count_include_pad"):
                attribute.i = int(attribute.name == "ceil_mode")
        folded.append(pad)
    for pad in folded:
        graph.node.remove(pad)
    used = {name for node in graph.node for name in node.input}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)
