"""One view of an MXNet Symbol graph, for the code that reads one: the counters
(:mod:`octconv.complexity`), the TVM lowering (:mod:`octconv.deploy.lower`) and the
weights drawn or initialized for a graph (:mod:`octconv.deploy.bench`,
:mod:`octconv.models`).

MXNet serializes a Symbol as JSON: ``nodes`` (each with ``op``, ``name``, string
``attrs`` such as ``"(3, 3)"`` and ``inputs`` as ``[node index, output, version]``) and
``heads``. A node whose ``op`` is ``"null"`` is an input or a parameter.
"""
import json

from octconv.ops import CEIL_POOL_PAD, CEIL_POOL_PAD_3D

__all__ = ["Graph", "int_tuple", "param_role"]


def int_tuple(text):
    """``"(3, 3)"`` -> ``(3, 3)``; ``"()"`` -> ``()``."""
    return tuple(int(v) for v in text.strip("()").split(",") if v.strip())


def param_role(name):
    """How a parameter of a zoo graph starts, from its name: ``"one"`` (BatchNorm gamma
    and running variance), ``"zero"`` (beta, bias, running mean) or ``"weight"``."""
    if name.endswith(("_gamma", "_running_var", "_moving_var")):
        return "one"
    if name.endswith(("_beta", "_bias", "_running_mean", "_moving_mean")):
        return "zero"
    return "weight"


class Graph:
    """The nodes of a Symbol (or of its JSON text), addressed by index."""

    def __init__(self, symbol):
        data = json.loads(symbol if isinstance(symbol, str) else symbol.tojson())
        self.nodes = data["nodes"]
        self.heads = [head[0] for head in data["heads"]]

    def op(self, i):
        return self.nodes[i]["op"]

    def name(self, i):
        return self.nodes[i]["name"]

    def attrs(self, i):
        return self.nodes[i].get("attrs", {})

    def input(self, i, k=0):
        """The index of node ``i``'s ``k``-th input."""
        return self.nodes[i]["inputs"][k][0]

    def inputs(self, i):
        return [source[0] for source in self.nodes[i]["inputs"]]

    def is_ceil_pad(self, i):
        """Node ``i`` is the end-edge padding of a ceil-mode 2x2/2 pooling
        (:data:`octconv.ops.CEIL_POOL_PAD`, or its video form)."""
        attrs = self.attrs(i)
        return (self.op(i) == "Pad" and attrs.get("mode") == "edge"
                and int_tuple(attrs.get("pad_width", "()")) in (CEIL_POOL_PAD, CEIL_POOL_PAD_3D))

    def pooled_entry(self, i):
        """The ``[node, output, version]`` entry that the Pooling node ``i`` pools: its
        input, or the input of the ceil-mode padding before it."""
        entry = self.nodes[i]["inputs"][0]
        return self.nodes[entry[0]]["inputs"][0] if self.is_ceil_pad(entry[0]) else entry

    def window(self, i):
        """``(kernel, stride, pad)`` tuples of a Convolution or Pooling node (MXNet's
        defaults: stride 1, no padding)."""
        attrs = self.attrs(i)
        return (int_tuple(attrs.get("kernel", "()")), int_tuple(attrs.get("stride", "(1, 1)")),
                int_tuple(attrs.get("pad", "(0, 0)")))

    def fixed_gammas(self):
        """Names of the gammas that BatchNorm holds at 1 (``fix_gamma``): not learned,
        and ignored by MXNet whatever their array holds."""
        return {self.name(self.input(i, 1)) for i, node in enumerate(self.nodes)
                if node["op"] == "BatchNorm" and self.attrs(i).get("fix_gamma") == "True"}
