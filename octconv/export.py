"""ONNX export of a zoo network (logits output), weights as initializers.

Goes through MXNet's own exporter (``mx.onnx.export_model``, onnx 1.15), which writes
opset-12/13 nodes: every export is meant to be checked against MXNet numerically
(tests/test_export.py does). Nearest upsampling becomes Resize, ceil-mode average
pooling keeps ceil_mode and count_include_pad, the l2h crop becomes Slice.
"""
import mxnet as mx
import numpy as np

from octconv.weights import check_params

__all__ = ["logits_symbol", "export_onnx"]


def logits_symbol(name, alpha=0.0, classes=1000):
    """The Symbol API network ``name`` ending at its logits (``classifier_output``)."""
    from octconv.symbol import get_symbol
    return get_symbol(name, alpha=alpha, num_classes=classes).get_internals()["classifier_output"]


def export_onnx(sym, params, path, size=224, batch=1):
    """Write ``sym`` with ``params`` (name -> NDArray or array) to the ONNX file ``path``
    for inputs of ``batch`` x 3 x ``size`` x ``size``; every weight is first checked
    against the graph (:func:`octconv.weights.check_params`)."""
    check_params(sym, params, (batch, 3, size, size))
    params = {k: v if isinstance(v, mx.nd.NDArray) else mx.nd.array(v) for k, v in params.items()}
    wanted = set(sym.list_arguments()) | set(sym.list_auxiliary_states())
    params = {k: v for k, v in params.items() if k in wanted}
    mx.onnx.export_model(sym, params, in_shapes=[(batch, 3, size, size)],
                         in_types=[np.float32], onnx_file_path=path)
    _weights_out_of_inputs(path)
    return path


def _weights_out_of_inputs(path):
    """Keep only ``data`` as a graph input, so runtimes may fold the weights."""
    import onnx
    model = onnx.load(path)
    weights = {init.name for init in model.graph.initializer}
    kept = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    onnx.save(model, path)
