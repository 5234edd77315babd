"""Compile a lowered network with TVM (Relax VM), export it, load it back.

Each distinct kernel becomes one scheduled PrimFunc (a ResNet's repeated blocks share
them), called from a Relax ``main`` whose weights are constants, so the exported
library is self-contained: it loads and runs with TVM's runtime alone.
"""
import time

import numpy as np
import tvm
from tvm import relax

from octconv.deploy.lower import Tensor, lower
from octconv.deploy.target import make_target, vector_lanes
from octconv.deploy.tuning import TileCache, choose_tile, scheduled_func

__all__ = ["CompiledNetwork", "compile_symbol", "load_library"]


class CompiledNetwork:
    """A compiled network: ``run(x)`` on an NCHW float32 array gives the logits.
    ``stats`` holds the compile's kernel count, searches and wall times."""

    def __init__(self, executable, target, input_shape, stats):
        self.executable = executable
        self.target = target
        self.input_shape = tuple(input_shape)
        self.stats = stats
        self._vm = None

    def run(self, x):
        if tuple(np.shape(x)) != self.input_shape:
            raise ValueError(f"compiled for inputs of shape {self.input_shape}, got "
                             f"{tuple(np.shape(x))}; compile again for another size")
        if self._vm is None:
            self._vm = relax.VirtualMachine(self.executable, tvm.cpu())
        return self._vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x, np.float32))).numpy()

    def export(self, path):
        """Write a shared library that :func:`load_library` (TVM's runtime only) runs."""
        self.executable.export_library(path)
        return path


def load_library(path):
    """A callable ``x -> logits`` from a library written by :meth:`CompiledNetwork.export`."""
    vm = relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())
    return lambda x: vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x, np.float32))).numpy()


def _relax_module(program, target, lanes, cache, budget):
    bb = relax.BlockBuilder()
    data = relax.Var("data", relax.TensorType(program.input_shape, "float32"))
    funcs, values = {}, []
    with bb.function("main", [data]):
        with bb.dataflow():
            for call in program.calls:
                key = call.kernel.key()
                if key not in funcs:
                    tile = choose_tile(call.kernel, target, lanes, cache, budget)
                    name = f"{type(call.kernel).__name__.lower()}{len(funcs)}"
                    funcs[key] = bb.add_func(
                        scheduled_func(call.kernel, tile).with_attr("global_symbol", name), name)
                args = [data if isinstance(a, str) else
                        values[a.index] if isinstance(a, Tensor) else relax.const(a)
                        for a in call.args]
                values.append(bb.emit(relax.call_tir(
                    funcs[key], args, relax.TensorType(call.out_shape, "float32"))))
            out = bb.emit_output(values[-1])
        bb.emit_func_output(out)
    return bb.get(), len(funcs)


def compile_symbol(symbol, params, input_shape, target=None, cache=None, budget=4):
    """Compile ``symbol`` (an MXNet Symbol ending at the logits) with ``params`` (name
    -> array) for an input of ``input_shape`` (N, C, H, W) on ``target`` (a TVM target
    or an LLVM CPU name; the host by default). ``cache``: a :class:`TileCache` (the
    default file when None); ``budget``: tiles tried per new workload."""
    target = target if isinstance(target, tvm.target.Target) else make_target(target)
    cache = cache if cache is not None else TileCache()
    lanes = vector_lanes(target)
    start = time.perf_counter()
    program = lower(symbol.tojson(), params, input_shape, lanes)
    searches_before = cache.searches
    mod, kernels = _relax_module(program, target, lanes, cache, budget)
    tuned = time.perf_counter()
    cache.save()
    executable = tvm.compile(mod, target=target)
    done = time.perf_counter()
    stats = dict(kernels=kernels, calls=len(program.calls),
                 searches=cache.searches - searches_before,
                 tune_s=round(tuned - start, 2), build_s=round(done - tuned, 2))
    return CompiledNetwork(executable, target, input_shape, stats)
