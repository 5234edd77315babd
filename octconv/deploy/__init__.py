"""TVM deployment of zoo networks on CPUs.

    from octconv.deploy import compile_network, load_library
    net = compile_network("resnet50_v2", alpha=0.5)            # host CPU, random weights
    logits = net.run(x)                                          # x: 1 x 3 x 224 x 224
    net.export("r50_oct.so"); run = load_library("r50_oct.so")   # TVM runtime only
    net8 = compile_network("resnet50_v2", alpha=0.5, batch=8, threads=0)  # all cores

The path: the network's Symbol graph and weights are lowered by
:mod:`octconv.deploy.lower` (BatchNorm folding, epilogue fusion, OctConv path sums,
weight packing) to the channel-blocked kernels of :mod:`octconv.deploy.kernels` and
:mod:`octconv.deploy.winograd` (the algorithm of each 3x3 convolution measured by
:mod:`octconv.deploy.algorithms`), each scheduled with a tile chosen per workload by
:mod:`octconv.deploy.tuning` (cached on disk), and compiled by TVM into one Relax VM
library (:mod:`octconv.deploy.compile`, cached by :mod:`octconv.deploy.libraries`),
which puts its weights in huge pages at its first call, however it is loaded
(:mod:`octconv.deploy.hugepages`).
:mod:`octconv.deploy.bench` times it against MXNet (oneDNN), ONNX Runtime and OpenVINO.
"""
try:
    import tvm  # noqa: F401
except ImportError as err:  # the core install leaves the deployment extra out
    raise ImportError(f"octconv.deploy needs TVM, ONNX and the timed runtimes ({err}): "
                      f"pip install 'octconv[deploy]'") from err

from octconv.deploy.compile import CompiledNetwork, compile_symbol, load_library
from octconv.deploy.target import make_target
from octconv.deploy.tuning import TileCache

__all__ = ["compile_network", "compile_symbol", "load_library", "CompiledNetwork",
           "TileCache", "make_target"]


def compile_network(name, alpha=0.0, classes=1000, params=None, size=224, batch=1,
                    target=None, cache=None, budget=4, threads=1, winograd=True):
    """Compile the zoo network ``name`` at ``alpha`` for ``batch`` x 3 x ``size`` x
    ``size`` inputs (or x height x width, ``size`` a pair), run on ``threads`` threads
    (0: all cores); ``params`` (name -> array) default to random weights and must fit
    the network (ValueError naming the first that does not). See :func:`compile_symbol`
    for the other arguments."""
    from octconv.deploy.bench import zoo_network
    from octconv.specs import images_shape
    network = zoo_network(name, alpha, classes, params, size)
    return compile_symbol(network.symbol, network.params, images_shape(size, batch),
                          target, cache, budget, threads, winograd=winograd)
