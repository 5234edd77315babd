"""Single-thread timing of one network on TVM, MXNet (oneDNN) and ONNX Runtime.

Every backend runs the same Symbol graph with the same weights on the same input.
Runs are interleaved (TVM, MXNet, ONNX Runtime, TVM, ...) after a warm-up, so a
change of machine speed during the measurement hits all backends alike; each time is
the median of ``runs`` single-image calls.

Single thread needs ``OMP_NUM_THREADS=1`` and ``TVM_NUM_THREADS=1`` in the environment
before MXNet or TVM start: :func:`require_single_thread` checks it; the CLIs set it.
"""
import json
import os
import tempfile
import time
from dataclasses import dataclass

import mxnet as mx
import numpy as np

from octconv.complexity import count_symbol
from octconv.deploy.compile import compile_symbol
from octconv.export import export_onnx, logits_symbol

__all__ = ["Network", "zoo_network", "gluoncv_network", "require_single_thread",
           "time_backends", "BACKENDS"]

BACKENDS = ("tvm", "mxnet", "onnxruntime")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "TVM_NUM_THREADS")


def require_single_thread():
    """Raise unless the thread-count variables are set to 1."""
    wrong = [v for v in THREAD_VARIABLES if os.environ.get(v) != "1"]
    if wrong:
        raise RuntimeError(f"single-thread timing needs {', '.join(f'{v}=1' for v in wrong)} "
                           "in the environment before MXNet and TVM are imported")


@dataclass
class Network:
    """A network to time: a label, its Symbol ending at the logits, its weights."""
    label: str
    symbol: object
    params: dict

    def macs(self, size):
        return count_symbol(self.symbol, {"data": (1, 3, size, size)}).macs


def _random_params(symbol, size, seed=0):
    """Weights drawn like a trained network's scale: He-normal convolutions and dense
    layers, BatchNorm statistics near identity."""
    rng = np.random.default_rng(seed)
    shapes, _, aux = symbol.infer_shape(data=(1, 3, size, size))
    params = {}
    names = symbol.list_arguments() + symbol.list_auxiliary_states()
    for name, shape in zip(names, shapes + aux):
        if name == "data":
            continue
        if name.endswith(("gamma", "running_var", "moving_var")):
            params[name] = rng.uniform(0.8, 1.2, shape)
        elif name.endswith(("beta", "bias", "running_mean", "moving_mean")):
            params[name] = rng.normal(0.0, 0.1, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            params[name] = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    nodes = json.loads(symbol.tojson())["nodes"]
    for node in nodes:  # a fixed gamma is 1 (MXNet ignores the array, exporters do not)
        if node["op"] == "BatchNorm" and node.get("attrs", {}).get("fix_gamma") == "True":
            gamma = nodes[node["inputs"][1][0]]["name"]
            params[gamma] = np.ones_like(params[gamma])
    return {k: v.astype(np.float32) for k, v in params.items()}


def zoo_network(name, alpha=0.0, classes=1000, params=None, size=224):
    """A network of this project's zoo; random weights unless ``params`` is given."""
    symbol = logits_symbol(name, alpha, classes)
    params = params if params is not None else _random_params(symbol, size)
    label = f"{name} alpha={alpha:g}"
    return Network(label, symbol, {k: np.asarray(v, np.float32) for k, v in params.items()})


def gluoncv_network(name, size=224):
    """A vanilla network of GluonCV's model zoo (strided convolutions), random weights."""
    from gluoncv.model_zoo import get_model
    net = get_model(name, pretrained=False)
    symbol = net(mx.sym.var("data"))
    return Network(f"{name} (GluonCV)", symbol, _random_params(symbol, size))


class _MXNet:
    def __init__(self, network, x):
        args = {k: mx.nd.array(v) for k, v in network.params.items()}
        args["data"] = mx.nd.array(x)
        wanted_args = set(network.symbol.list_arguments())
        self.executor = network.symbol.bind(
            mx.cpu(), {k: v for k, v in args.items() if k in wanted_args},
            aux_states={k: args[k] for k in network.symbol.list_auxiliary_states()},
            grad_req="null")

    def __call__(self):
        return self.executor.forward(is_train=False)[0].asnumpy()


class _OnnxRuntime:
    def __init__(self, network, x, folder):
        import onnxruntime as ort
        path = export_onnx(network.symbol, network.params, os.path.join(folder, "net.onnx"),
                           size=x.shape[2], batch=x.shape[0])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.feed = {self.session.get_inputs()[0].name: x}

    def __call__(self):
        return self.session.run(None, self.feed)[0]


class _TVM:
    def __init__(self, network, x, target, cache, budget, compiled=None):
        self.compiled = compiled or compile_symbol(network.symbol, network.params, x.shape,
                                                   target, cache, budget)
        self.x = x

    def __call__(self):
        return self.compiled.run(self.x)


def time_backends(network, size=224, runs=10, warmup=2, backends=BACKENDS, target=None,
                  cache=None, budget=4, seed=0, twin=None, compiled=None):
    """``{"ms": {backend: median ms}, "max_diff": {backend: max |out - MXNet out|},
    "scale": max |MXNet out|, "tvm": compile stats}`` for one image of ``size``.
    ``twin``: another network compiled with TVM and timed in the same interleaved loop
    (as ``"tvm_twin"``), so that the speed-up over it is measured side by side.
    ``compiled``: the network already compiled for this input (else it is compiled)."""
    require_single_thread()
    x = np.random.default_rng(seed).standard_normal((1, 3, size, size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        runners = {}
        for backend in backends:
            if backend == "tvm":
                runners[backend] = _TVM(network, x, target, cache, budget, compiled)
            elif backend == "mxnet":
                runners[backend] = _MXNet(network, x)
            elif backend == "onnxruntime":
                runners[backend] = _OnnxRuntime(network, x, folder)
            else:
                raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
        if twin is not None:
            runners["tvm_twin"] = _TVM(twin, x, target, cache, budget)
        outputs = {b: run() for b, run in runners.items()}
        for _ in range(warmup):
            for run in runners.values():
                run()
        times = {b: [] for b in runners}
        for _ in range(runs):
            for backend, run in runners.items():
                start = time.perf_counter()
                run()
                times[backend].append(time.perf_counter() - start)
    reference = outputs.get("mxnet")
    result = {"ms": {b: float(np.median(t) * 1e3) for b, t in times.items()}}
    if reference is not None:
        result["scale"] = float(np.abs(reference).max())
        result["max_diff"] = {b: float(np.abs(out - reference).max())
                              for b, out in outputs.items() if b not in ("mxnet", "tvm_twin")}
    if "tvm" in runners:
        result["tvm"] = runners["tvm"].compiled.stats
    return result
