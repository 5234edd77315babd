"""Weights against the graph that will use them.

Deployment paths (ONNX export, TVM compilation) take a parameter file and a Symbol
graph from two sources; a file of another alpha or another width would otherwise
compile or export silently and compute something else. :func:`check_params` compares
every weight with the shape MXNet infers from the graph for the input shape used.
"""
import contextlib
import io

import numpy as np

from octconv.cli import mxnet_reason

__all__ = ["check_input_shape", "check_params", "as_array"]


def as_array(value, dtype=None):
    """A weight given as an MXNet NDArray or anything numpy reads, as a numpy array (of
    ``dtype`` if given)."""
    return np.asarray(value.asnumpy() if hasattr(value, "asnumpy") else value, dtype)


def check_input_shape(input_shape):
    """``input_shape`` as a tuple (N, C, H, W), or (N, C, T, H, W) for a clip, of
    positive sizes, else a ValueError."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) not in (4, 5):
        raise ValueError(f"the input shape must be (batch, channels, height, width), or "
                         f"(batch, channels, frames, height, width) for a clip, got {shape}")
    if min(shape) < 1:
        raise ValueError(f"every input dimension must be at least 1 (batch included), "
                         f"got {shape}")
    return shape


def check_params(symbol, params, input_shape):
    """Raise a ValueError naming the first weight of ``symbol`` that ``params`` (name ->
    array) lacks or holds with another shape than MXNet infers for an input of
    ``input_shape``; also when the graph cannot take that input at all, and, with the
    Gluon layer's message, when an OctConv layer gets a pair it was not declared for
    (:func:`octconv.symbol.check_pairs`)."""
    import mxnet as mx  # here: loading a compiled library must not need MXNet
    from octconv.symbol import check_pairs
    shape = check_input_shape(input_shape)
    check_pairs(symbol, data=shape)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # MXNet prints its arguments
            args, _, aux = symbol.infer_shape(data=shape)
    except mx.base.MXNetError as err:
        raise ValueError(f"the network cannot take an input of shape {shape}: "
                         f"{mxnet_reason(err)}") from None
    names = symbol.list_arguments() + symbol.list_auxiliary_states()
    for name, needed in zip(names, args + aux):
        if name == "data":
            continue
        if name not in params:
            raise ValueError(f"parameter {name!r} is missing (the graph needs shape "
                             f"{tuple(needed)})")
        got = tuple(params[name].shape)
        if got != tuple(needed):
            raise ValueError(f"parameter {name!r} has shape {got} but the graph needs "
                             f"{tuple(needed)} for an input of shape {shape} (weights of "
                             f"another network, width or alpha?)")
