"""From a network's Symbol graph and weights to a list of kernel calls.

We translate the MXNet Symbol JSON directly rather than going through ONNX: the
network uses 14 operators, and owning the translation lets it decide fusion and layout
with OctConv in mind. (MXNet's ONNX exporter turns every low-to-high crop into eight
shape-computing nodes, and Relax's ONNX importer would keep them.)

Inference simplifications made here:
- BatchNorm right after a convolution is folded into its weights and bias; any other
  BatchNorm becomes a per-channel affine step fused into the kernel before it.
- A convolution absorbs the chain of single-consumer point-wise operations after it
  (BatchNorm, add, ReLU / ReLU6 / sigmoid, channel gate): one kernel, one memory write.
- OctConv's paths are summed in those epilogues: ``h2h + up(l2h)`` reads the low map at
  (y // 2, x // 2) inside the h2h kernel (no upsampled tensor is ever stored), and
  ``h2l(pool(h)) + l2l(l)`` adds the l2l result in the h2l kernel's tile.
- Convolutions that read the same tensor with the same window and whose results are
  only added in other convolutions' epilogues (OctConv's l2h and l2l paths, both over
  the low map) run as one convolution with their output channels side by side: the low
  map is read once, in one kernel call, and each epilogue reads its path's channel
  blocks of the result.
- A strided 1x1 convolution becomes a subsampling and a stride-1 1x1 convolution
  (whose flat pixel tiles are faster).
- OctConv's stride-2 average pooling of a map that only a depthwise convolution reads
  is computed by that convolution as it reads (no pooled map is stored).
- 3x3 stride-1 dense convolutions run directly or as Winograd convolutions
  (:mod:`octconv.deploy.winograd`) unless ``winograd=False``, and an odd count of
  8-channel output blocks pairs in 16-lane accumulators or not, as ``choose`` picks
  among the candidates of :func:`~octconv.deploy.algorithms.candidates` (measured by an
  :class:`~octconv.deploy.algorithms.AlgorithmChoice`; else the fixed rules).
- A batch's first layers, on large maps, run image by image in a network with
  depthwise convolutions there (:attr:`Program.per_image`, see :func:`lower`).
- Weights are packed once, here, for the channel-blocked layout of
  :mod:`octconv.deploy.kernels` (by pairs of 8-channel output blocks where the chosen
  kernel pairs them, ``paired``; then transformed for Winograd); channel counts that
  are not a whole number of blocks are zero-padded (padded channels stay zero through
  every kernel).
"""
from dataclasses import dataclass, field, replace

import numpy as np

from octconv.deploy import kernels as K
from octconv.deploy.algorithms import candidates
from octconv.deploy.winograd import BANDED_WEIGHT_BYTES, Winograd, transform_weight
from octconv.graph import Graph, int_tuple

__all__ = ["Tensor", "Call", "Program", "UnsupportedGraph", "lower"]

class UnsupportedGraph(ValueError):
    """The graph uses an operator, or an operator setting, that has no kernel here
    (the zoo's networks and GluonCV's ResNets and MobileNets need none of them)."""


FUSABLE = ("BatchNorm", "elemwise_add", "Activation", "clip", "broadcast_mul", "Reshape")


@dataclass(frozen=True)
class Tensor:
    """A stored activation: ``index`` in the program, batch, channel layout and size."""
    index: int
    batch: int
    layout: K.Layout
    size: tuple

    @property
    def shape(self):
        return (self.batch, self.layout.blocks) + tuple(self.size) + (self.layout.block,)


@dataclass(frozen=True)
class _Upsampled:
    """A tensor read nearest-2x-upsampled and cropped to ``size`` (not stored)."""
    source: Tensor
    size: tuple


@dataclass(frozen=True)
class _Slice:
    """The channel blocks ``offset`` to ``offset + layout.blocks`` of a stored tensor:
    one convolution's output within a merged sibling convolution's (not stored apart;
    read by epilogue adds only)."""
    source: Tensor
    offset: int
    layout: K.Layout

    @property
    def size(self):
        return self.source.size

    @property
    def shape(self):
        return (self.source.batch, self.layout.blocks) + tuple(self.size) + (self.layout.block,)


@dataclass(frozen=True)
class _EdgePadded:
    """A tensor edge-padded by one row and column at its end, waiting for the 2x2/2
    'valid' pooling that makes the pair one ceil-mode pooling (see
    :func:`octconv.ops.avg_pool2`); not stored."""
    source: Tensor


@dataclass(frozen=True)
class _Pooled:
    """A tensor average-pooled 2x2/2 (ceil) for the depthwise or 1x1 convolution that
    alone reads it, which pools as it reads (``pooled`` of
    :class:`~octconv.deploy.kernels.Depthwise` and :class:`~octconv.deploy.kernels.Conv`);
    not stored."""
    source: Tensor

    @property
    def pooling(self):
        """The pooling kernel that makes it, where it must be stored after all."""
        return K.Pool(self.source.shape, "avg", 2, 2, 0, True)

    @property
    def size(self):
        return self.pooling.out_shape[2:4]


@dataclass
class Call:
    """One kernel invocation; ``args`` are Tensors or packed numpy constants."""
    kernel: object
    args: list
    out_shape: tuple


@dataclass
class Program:
    """A network's kernel calls in order. The first ``per_image`` calls are lowered at
    batch 1 and run once for each image of the batch, one image after the other; the
    later calls run on the whole batch, reading the per-image results of earlier calls
    stacked along the batch axis (:func:`lower` says when)."""
    input_shape: tuple
    calls: list = field(default_factory=list)
    per_image: int = 0

    def kernels(self):
        """The distinct kernels, in first-use order."""
        seen = {}
        for call in self.calls:
            seen.setdefault(call.kernel.key(), call.kernel)
        return list(seen.values())


def _pack_channels(vector, layout):
    out = np.zeros(layout.padded, np.float32)
    out[:len(vector)] = vector
    return out.reshape(layout.blocks, layout.block)


class _Lowering:
    def __init__(self, graph, params, input_shape, lanes, winograd, choose, band_bytes):
        self.winograd = winograd
        self.band_bytes = band_bytes
        self.choose = choose
        self.graph = graph
        self.nodes = graph.nodes
        self.heads = graph.heads
        self.params = {k: np.asarray(v, np.float32) for k, v in params.items()}
        self.lanes = lanes
        self.program = Program(tuple(input_shape))
        self.values = {}
        self.users = {i: [] for i in range(len(self.nodes))}
        for i, node in enumerate(self.nodes):
            sources = node["inputs"][:1] if node["op"] == "slice_like" else node["inputs"]
            for src in sources:  # slice_like reads only the size of its second input
                if self.nodes[src[0]]["op"] != "null":
                    self.users[src[0]].append(i)

    # -- helpers ---------------------------------------------------------------------
    def attrs(self, i):
        return self.graph.attrs(i)

    def data_input(self, i, k=0):
        return self.graph.input(i, k)

    def param(self, i, k):
        name = self.nodes[self.data_input(i, k)]["name"]
        if name not in self.params:
            raise ValueError(f"no weight named {name!r} for layer {self.nodes[i]['name']!r}")
        return self.params[name]

    def layout(self, channels):
        return K.Layout.for_channels(channels, self.lanes)

    def emit(self, kernel, args, batch, layout, size):
        out = Tensor(len(self.program.calls), batch, layout, tuple(size))
        self.program.calls.append(Call(kernel, list(args), out.shape))
        return out

    def stored(self, i):
        """The value of node ``i`` as a stored tensor (upsampling one if needed)."""
        value = self.values[i]
        if isinstance(value, _Slice) or (isinstance(value, _Upsampled)
                                         and isinstance(value.source, _Slice)):
            raise AssertionError(f"{self.nodes[i]['name']}: a merged convolution's output is "
                                 f"read outside an epilogue")
        if isinstance(value, _EdgePadded):
            raise UnsupportedGraph(f"{self.nodes[i]['name']}: edge padding is supported "
                                   f"only before a 2x2/2 pooling")
        if isinstance(value, _Pooled):
            src = value.source
            value = self.emit(value.pooling, [src], src.batch, src.layout, value.size)
            self.values[i] = value
        if isinstance(value, _Upsampled):
            src = value.source
            value = self.emit(K.Upsample(src.shape, value.size), [src], src.batch,
                              src.layout, value.size)
            self.values[i] = value
        return value

    def size_of(self, i):
        """The spatial size of node ``i``'s output, also before its chain is emitted."""
        if i in self.values:
            return tuple(self.values[i].size)
        node = self.nodes[i]
        if node["op"] in FUSABLE:
            return self.size_of(self.data_input(i))
        if node["op"] != "Convolution":
            raise UnsupportedGraph(f"{node['name']}: cannot crop an upsampling to the size "
                                      f"of a {node['op']}")
        k, s, p = (value[0] for value in self.graph.window(i))
        return tuple((d + 2 * p - k) // s + 1 for d in self.size_of(self.data_input(i)))

    # -- fusion chains -----------------------------------------------------------------
    def follower(self, i):
        """The node that can be fused after node ``i``: its only user, point-wise."""
        users = self.users[i]
        if len(users) != 1 or i in self.heads:
            return None
        j = users[0]
        node = self.nodes[j]
        if node["op"] not in FUSABLE:
            return None
        if node["op"] in ("BatchNorm", "broadcast_mul") and self.data_input(j) != i:
            return None
        if node["op"] == "Reshape" and self.attrs(j).get("shape") != "(0, 0, 0, 0)":
            return None
        if node["op"] == "elemwise_add" and self.data_input(j, 0) == self.data_input(j, 1):
            return None
        return j

    def chains(self):
        """``(fused nodes, {tail node: [head, ..., tail]})`` for every convolution and
        every point-wise node no convolution absorbed."""
        absorbed, tails = set(), {}
        for i, node in enumerate(self.nodes):
            if i in absorbed or node["op"] not in ("Convolution",) + FUSABLE:
                continue
            if node["op"] == "Reshape":
                continue
            chain = [i]
            while (j := self.follower(chain[-1])) is not None and j not in absorbed:
                chain.append(j)
            absorbed.update(chain)
            tails[chain[-1]] = chain
        return absorbed, tails

    def step(self, j, prev, shape):
        """The epilogue step of node ``j`` applied after ``prev``: (step, args)."""
        node, attrs = self.nodes[j], self.attrs(j)
        op = node["op"]
        if op == "BatchNorm":
            scale, shift = self.batchnorm(j)
            layout = K.Layout(len(scale), shape[4])
            return ("affine",), [_pack_channels(scale, layout), _pack_channels(shift, layout)]
        if op == "elemwise_add":
            first, second = self.data_input(j, 0), self.data_input(j, 1)
            other = second if first == prev else first
            value, mode = self.values[other], "direct"
            if isinstance(value, _Upsampled) and tuple(value.size) == tuple(shape[2:4]):
                value, mode = value.source, "up2"
            else:
                if not isinstance(value, _Slice):
                    value = self.stored(other)
                if value.shape != tuple(shape):
                    raise ValueError(f"{node['name']}: cannot add {value.shape} to {shape}")
            source, offset = ((value.source, value.offset) if isinstance(value, _Slice)
                              else (value, 0))
            return ("add", source.shape, mode, offset), [source]
        if op == "broadcast_mul":
            gate = self.stored(self.data_input(j, 1))
            return ("gate", gate.shape), [gate]
        if op == "Activation":
            if attrs["act_type"] not in ("relu", "sigmoid"):
                raise UnsupportedGraph(f"{node['name']}: activation {attrs['act_type']}")
            return ("act", attrs["act_type"]), []
        if op == "clip":
            if (float(attrs["a_min"]), float(attrs["a_max"])) != (0.0, 6.0):
                raise UnsupportedGraph(f"{node['name']}: only clip(0, 6) (ReLU6)")
            return ("act", "relu6"), []
        return None, []  # Reshape (0, 0, 0, 0): identity

    def batchnorm(self, j):
        attrs = self.attrs(j)
        gamma, beta, mean, var = (self.param(j, k) for k in range(1, 5))
        if attrs.get("fix_gamma", "True") == "True":
            gamma = np.ones_like(gamma)
        scale = gamma / np.sqrt(var + float(attrs.get("eps", 1e-3)))
        return scale, beta - mean * scale

    def epilogue(self, chain, shape, start, prev):
        """The steps of ``chain[start:]``, the first applied after node ``prev``."""
        steps, args = [], []
        for j in chain[start:]:
            step, extra = self.step(j, prev, shape)
            if step is not None:
                steps.append(step)
                args += extra
            prev = j
        return K.Epilogue(tuple(steps)), args

    # -- sibling convolutions ------------------------------------------------------------
    def bare(self, chain):
        """Whether ``chain`` is an ungrouped convolution with nothing fused after it but a
        BatchNorm (folded into its weights): its epilogue is its bias."""
        i = chain[0]
        if self.nodes[i]["op"] != "Convolution" or int(self.attrs(i).get("num_group", 1)) > 1:
            return False
        return len(chain) == 1 or (len(chain) == 2 and self.nodes[chain[1]]["op"] == "BatchNorm")

    def added_in_epilogues_only(self, i, heads):
        """Whether every reader of node ``i`` adds its value in a convolution's epilogue,
        directly or nearest-2x-upsampled (and cropped); ``heads``: the head of the
        chain that absorbed each fused node."""
        if not self.users[i] or i in self.heads:
            return False
        for j in self.users[i]:
            op = self.nodes[j]["op"]
            if op in ("UpSampling", "slice_like"):
                if not self.added_in_epilogues_only(j, heads):
                    return False
            elif (op != "elemwise_add" or heads.get(j, j) == j
                  or self.nodes[heads[j]]["op"] != "Convolution"):
                return False
        return True

    def sibling_groups(self, tails):
        """``{tail: chains}``: groups of bare convolutions (:meth:`bare`) that read the same
        tensor with the same window, give the same channel block and whose results are
        only added in other convolutions' epilogues (OctConv's l2h and l2l paths over the
        low map), each group under its first chain's tail."""
        heads = {j: chain[0] for chain in tails.values() for j in chain}
        groups = {}
        for tail, chain in sorted(tails.items()):
            i = chain[0]
            if self.bare(chain) and self.added_in_epilogues_only(tail, heads):
                block = self.layout(self.param(i, 1).shape[0]).block
                key = (self.data_input(i), self.graph.window(i), block)
                groups.setdefault(key, []).append(chain)
        return {group[0][-1]: group for group in groups.values() if len(group) > 1}

    # -- chain kernels -----------------------------------------------------------------
    def folded(self, chain):
        """``(weight, bias, start)`` of the convolution heading ``chain``: a BatchNorm
        right after it folded in, and the index in ``chain`` where its epilogue starts."""
        i = chain[0]
        weight = self.param(i, 1)
        bias = (self.param(i, 2) if self.attrs(i).get("no_bias", "False") != "True"
                else np.zeros(weight.shape[0], np.float32))
        if len(chain) > 1 and self.nodes[chain[1]]["op"] == "BatchNorm":
            scale, shift = self.batchnorm(chain[1])
            return weight * scale[:, None, None, None], bias * scale + shift, 2
        return weight, bias, 1

    def conv_chains(self, chains):
        """The convolutions heading ``chains`` (one chain, or a group of
        :meth:`sibling_groups`, computed as one convolution whose output channel blocks
        are theirs side by side) with their fused epilogues: the value of each chain."""
        i = chains[0][0]
        source = self.values[self.data_input(i)]
        pooled = isinstance(source, _Pooled)  # (read by a depthwise or 1x1 one alone)
        x = source.source if pooled else self.stored(self.data_input(i))
        kernel, stride, pad = self.graph.window(i)
        if len(set(kernel)) != 1 or len(set(stride)) != 1 or len(set(pad)) != 1:
            raise UnsupportedGraph(f"{self.nodes[i]['name']}: only square kernels, "
                                      "strides and paddings")
        if set(int_tuple(self.attrs(i).get("dilate", "()"))) - {1}:
            raise UnsupportedGraph(f"{self.nodes[i]['name']}: dilated convolution")
        k, s, p = kernel[0], stride[0], pad[0]
        groups = int(self.attrs(i).get("num_group", 1))
        folded = [self.folded(chain) for chain in chains]
        weight = folded[0][0]
        if k == 1 and s > 1 and p == 0:  # subsample once, then the faster 1x1 kernel
            kern = K.Pool(x.shape, "max", 1, s, 0, False)
            x = self.emit(kern, [x], x.batch, x.layout, kern.out_shape[2:4])
            s = 1
        lin, louts = x.layout, [self.layout(w.shape[0]) for w, _, _ in folded]
        size = [(d + 2 * p - k) // s + 1 for d in (source.size if pooled else x.size)]
        if len(chains) == 1:
            (chain,), ((_, _, start),), (lout,) = chains, folded, louts
            shape = (x.batch, lout.blocks, *size, lout.block)
            epilogue, extra = self.epilogue(chain, shape, start, chain[start - 1])
        else:  # siblings: bias only; the readers' epilogues take their blocks
            lout = K.Layout(sum(l.padded for l in louts[:-1]) + louts[-1].channels,
                            louts[0].block)
            epilogue, extra = K.Epilogue(), []
        epilogue = K.Epilogue((("bias",),) + epilogue.steps)
        bias = np.concatenate([_pack_channels(b, l) for (_, b, _), l in zip(folded, louts)])
        extra = [bias] + extra
        if self.depthwise(groups, lin, weight):
            kern = K.Depthwise(x.shape, k, s, p, epilogue, pooled)
            packed = np.zeros((lin.padded, k, k), np.float32)
            packed[:lin.channels] = weight[:, 0]
            packed = packed.reshape(lin.blocks, lin.block, k, k).transpose(0, 2, 3, 1)
        else:
            block_groups, per_group = _block_grouping(groups, lin, lout)
            packed = np.concatenate([
                _pack_conv_weight(w, groups, lin, l, block_groups, per_group)
                for (w, _, _), l in zip(folded, louts)])
            kern = K.Conv(x.shape, lout.blocks, lout.block, per_group, block_groups, k, s, p,
                          epilogue, pooled, in_channels=_reduced_channels(lin, block_groups))
            kernels, default = candidates(kern, self.lanes, size, lin.channels, lout.channels,
                                          self.band_bytes,
                                          self.winograd and (k, s, block_groups) == (3, 1, 1))
            kern = self.choose(kernels, default) if len(kernels) > 1 else default
            if kern.paired:
                packed = _pair_blocks(packed)
            if isinstance(kern, Winograd):
                packed = transform_weight(packed, kern.m)
        out = self.emit(kern, [x, np.ascontiguousarray(packed)] + extra, x.batch, lout, size)
        if len(chains) == 1:
            return [out]
        offsets = np.cumsum([0] + [l.blocks for l in louts[:-1]])
        return [_Slice(out, int(offset), l) for offset, l in zip(offsets, louts)]

    def pointwise_chain(self, chain):
        source = self.data_input(chain[0])
        x = self.stored(source)
        epilogue, extra = self.epilogue(chain, x.shape, 0, source)
        if not epilogue.steps:
            return x
        return self.emit(K.Pointwise(x.shape, epilogue), [x] + extra, x.batch, x.layout, x.size)

    # -- single nodes: one method per operator (see _SINGLE below) ----------------------
    def single(self, i):
        method = _SINGLE.get(self.nodes[i]["op"])
        if method is None:
            raise UnsupportedGraph(f"{self.nodes[i]['name']}: operator {self.nodes[i]['op']} "
                                   f"is not supported")
        return getattr(self, method)(i)

    def reshape(self, i):
        """Identity reshapes and Flatten (the classifier checks for a 1x1 map) pass on."""
        if self.nodes[i]["op"] == "Reshape" and self.attrs(i).get("shape") != "(0, 0, 0, 0)":
            raise UnsupportedGraph(f"{self.nodes[i]['name']}: only the identity reshape "
                                   f"(0, 0, 0, 0)")
        return self.values[self.data_input(i)]

    def upsampling(self, i):
        """Nearest 2x upsampling: recorded, computed by whatever reads it."""
        attrs = self.attrs(i)
        if attrs.get("sample_type") != "nearest" or int(attrs.get("scale", 0)) != 2:
            raise UnsupportedGraph(f"{self.nodes[i]['name']}: only nearest 2x upsampling")
        src = self.values[self.data_input(i)]
        if not isinstance(src, _Slice):  # a merged convolution's blocks stay where they are
            src = self.stored(self.data_input(i))
        return _Upsampled(src, tuple(2 * d for d in src.size))

    def crop(self, i):
        """``slice_like`` of an upsampling to the size of its second input."""
        value = self.values[self.data_input(i)]
        if not isinstance(value, _Upsampled) or self.attrs(i).get("axes") != "(2, 3)":
            raise UnsupportedGraph(f"{self.nodes[i]['name']}: only the crop of an upsampling")
        return _Upsampled(value.source, self.size_of(self.data_input(i, 1)))

    def concat(self, i):
        if int(self.attrs(i).get("dim", 1)) != 1:
            raise UnsupportedGraph(f"{self.nodes[i]['name']}: concat on channels only")
        parts = [self.stored(src) for src in self.graph.inputs(i)]
        out = self.layout(sum(p.layout.channels for p in parts))
        kern = K.Concat((parts[0].batch,) + parts[0].size, tuple(p.layout for p in parts), out)
        return self.emit(kern, parts, parts[0].batch, out, parts[0].size)

    def pad(self, i):
        """The end-edge padding of a ceil-mode 2x2/2 pooling: recorded for the pooling."""
        if not self.graph.is_ceil_pad(i):
            raise UnsupportedGraph(f"{self.nodes[i]['name']}: only edge padding by one row "
                                   f"and column at the end")
        return _EdgePadded(self.stored(self.data_input(i)))

    def pooling(self, i):
        node, attrs = self.nodes[i], self.attrs(i)
        source = self.values[self.data_input(i)]
        if isinstance(source, _EdgePadded):
            if self.graph.window(i) != ((2, 2), (2, 2), (0, 0)) \
                    or attrs.get("pooling_convention", "valid") != "valid":
                raise UnsupportedGraph(f"{node['name']}: an edge-padded map must be pooled "
                                       f"2x2/2 in the 'valid' convention")
            x = source.source
            if attrs.get("pool_type", "max") == "avg" and self.pools_as_it_reads(i, x):
                return _Pooled(x)
            kern = K.Pool(x.shape, attrs.get("pool_type", "max"), 2, 2, 0, True)
            return self.emit(kern, [x], x.batch, x.layout, kern.out_shape[2:4])
        x = self.stored(self.data_input(i))
        if attrs.get("global_pool") == "True":
            if attrs.get("pool_type", "max") != "avg":
                raise UnsupportedGraph(f"{node['name']}: global pooling is average only")
            return self.emit(K.GlobalPool(x.shape), [x], x.batch, x.layout, (1, 1))
        kernel, stride, pad = self.graph.window(i)
        pool_type = attrs.get("pool_type", "max")
        if pool_type == "avg" and pad[0] and attrs.get("count_include_pad", "True") != "False":
            raise UnsupportedGraph(f"{node['name']}: padded average pooling must exclude "
                                      "the padding")
        ceil = attrs.get("pooling_convention", "valid") == "full"
        if ((pool_type, kernel, stride, pad, ceil) == ("avg", (2, 2), (2, 2), (0, 0), True)
                and self.pools_as_it_reads(i, x)):
            return _Pooled(x)
        kern = K.Pool(x.shape, pool_type, kernel[0], stride[0], pad[0], ceil)
        return self.emit(kern, [x], x.batch, x.layout, kern.out_shape[2:4])

    def pools_as_it_reads(self, i, x):
        """Whether pooling ``i`` (of the stored ``x``) is read by one stride-1 depthwise
        convolution alone, or by one 1x1 convolution alone whose input outweighs its
        weights (split in bands, :attr:`~octconv.deploy.kernels.Conv.bands_first`): such
        a convolution can pool as it reads its input (OctConv's h2l paths)."""
        users = self.users[i]
        if len(users) != 1 or i in self.heads:
            return False
        j = users[0]
        if (self.nodes[j]["op"] != "Convolution" or self.data_input(j) != i
                or self.graph.window(j)[1] != (1, 1)):
            return False
        weight, groups = self.param(j, 1), int(self.attrs(j).get("num_group", 1))
        if self.graph.window(j) == ((1, 1), (1, 1), (0, 0)) and groups == 1:
            out = self.layout(weight.shape[0])
            return K.Conv(x.shape, out.blocks, out.block, x.layout.blocks, 1, 1, 1, 0,
                          K.Epilogue()).bands_first
        return self.depthwise(groups, x.layout, weight)

    def depthwise(self, groups, layout, weight):
        """Whether a convolution of ``groups`` groups with ``weight`` (out channels first)
        on a map of ``layout`` runs as a depthwise kernel: one group per channel, as many
        out channels as in, laid out alike."""
        return (groups > 1 and groups == layout.channels == weight.shape[0]
                and layout == self.layout(weight.shape[0]))

    def dense(self, i):
        x = self.stored(self.data_input(i))
        if x.size != (1, 1):
            raise UnsupportedGraph("the classifier must follow a global pooling")
        weight = self.param(i, 1)
        bias = (self.param(i, 2) if self.attrs(i).get("no_bias", "False") != "True"
                else np.zeros(weight.shape[0], np.float32))
        classes, blocks = weight.shape[0], -(-weight.shape[0] // 16)
        padded = np.zeros((blocks * 16, x.layout.padded), np.float32)
        padded[:classes, :weight.shape[1]] = weight
        packed = padded.reshape(blocks, 16, x.layout.blocks, x.layout.block).transpose(0, 2, 3, 1)
        kern = K.Dense(x.shape, blocks, classes)
        bias_packed = np.zeros(blocks * 16, np.float32)
        bias_packed[:classes] = bias
        self.program.calls.append(Call(kern, [x, np.ascontiguousarray(packed),
                                              bias_packed.reshape(blocks, 16)],
                                       (x.batch, classes)))
        return "logits"

    # -- the walk ----------------------------------------------------------------------
    def run(self):
        n_, c_, h, w = self.program.input_shape
        fused, tails = self.chains()
        siblings = self.sibling_groups(tails)
        for i, node in enumerate(self.nodes):
            if node["op"] == "null":
                if node["name"] == "data":
                    layout = K.Layout(c_, c_) if c_ < self.lanes else self.layout(c_)
                    self.values[i] = self.emit(K.PackInput((n_, c_, h, w), layout), ["input"],
                                               n_, layout, (h, w))
                continue
            if i in tails and i not in self.values:  # (set already: a sibling computed it)
                chains = siblings.get(i, [tails[i]])
                if self.nodes[chains[0][0]]["op"] == "Convolution":
                    values = self.conv_chains(chains)
                else:
                    values = [self.pointwise_chain(tails[i])]
                for chain, value in zip(chains, values):
                    for j in chain:
                        self.values[j] = value
            elif i not in fused:
                self.values[i] = self.single(i)
        head = self.values[self.heads[0]]
        if isinstance(head, Tensor) and head.size == (1, 1):  # a 1x1-convolution classifier
            kern = K.Flatten(head.shape, head.layout.channels)
            self.program.calls.append(Call(kern, [head], (head.batch, head.layout.channels)))
        elif head != "logits":
            raise UnsupportedGraph("the network must end with its classifier (a fully "
                                      "connected layer, or a 1x1 convolution on a 1x1 map)")
        return self.program


# Operators lowered one node at a time, and the _Lowering method of each (convolutions
# and the point-wise operators they absorb are lowered as chains, see _Lowering.chains).
_SINGLE = {"Reshape": "reshape", "Flatten": "reshape", "UpSampling": "upsampling",
           "slice_like": "crop", "Pooling": "pooling", "Concat": "concat", "Pad": "pad",
           "FullyConnected": "dense"}


def _reduced_channels(layout, block_groups):
    """The channels a convolution of one block group reads of an input stored in
    ``layout`` (:attr:`~octconv.deploy.kernels.Conv.in_channels`): its channels, where
    its last block has zero padding lanes; else None (every lane)."""
    if block_groups == 1 and layout.channels < layout.padded:
        return layout.channels
    return None


def _block_grouping(groups, lin, lout):
    """``(block groups, input blocks per block group)`` for a grouped convolution:
    the true groups when they are whole blocks, one group per block when groups are
    smaller than a block (block-diagonal weights), else a dense convolution."""
    if groups == 1:
        return 1, lin.blocks
    gin, gout = lin.channels // groups, lout.channels // groups
    if gin % lin.block == 0 and gout % lout.block == 0:
        return groups, gin // lin.block
    if (lin.block % gin == 0 and lout.block % gout == 0 and lin.blocks == lout.blocks
            and lin.block // gin == lout.block // gout):
        return lout.blocks, 1
    return 1, lin.blocks


def _pack_conv_weight(weight, groups, lin, lout, block_groups, per_group):
    """(O, I/groups, KH, KW) weights to (OB, ICB, KH, KW, ib, ob), zeros where an output
    block's input window holds channels of other groups or padding."""
    out_c, gin, kh, kw = weight.shape
    window = per_group * lin.block
    out_blocks_per_group = lout.blocks // block_groups
    expanded = np.zeros((lout.padded, window, kh, kw), np.float32)
    gout = out_c // groups
    for o in range(0, out_c, gout):
        group = o // gout
        for oo in range(o, o + gout):
            start = ((oo // lout.block) // out_blocks_per_group) * window
            offset = group * gin - start
            if not 0 <= offset <= window - gin:
                raise AssertionError("grouped convolution does not fit its block window")
            expanded[oo, offset:offset + gin] = weight[oo]
    return expanded.reshape(lout.blocks, lout.block, per_group, lin.block, kh, kw) \
        .transpose(0, 2, 4, 5, 3, 1)


def _pair_blocks(weight):
    """(OB, ICB, KH, KW, ib, ob) weights as a :attr:`~octconv.deploy.kernels.Conv.paired`
    convolution reads them: (OB/2 rounded up, ICB, KH, KW, ib, 2 x ob), each pair's
    first block's channels first, an odd last block's partner all zeros."""
    if weight.shape[0] % 2:
        weight = np.concatenate([weight, np.zeros_like(weight[:1])])
    blocks, icb, kh, kw, ib, ob = weight.shape
    return weight.reshape(blocks // 2, 2, icb, kh, kw, ib, ob) \
        .transpose(0, 2, 3, 4, 5, 1, 6).reshape(blocks // 2, icb, kh, kw, ib, 2 * ob)


# the bytes of a batch's maps in one call above which the layers up to it run image by
# image in a depthwise network (see lower; on MobileNet v2 at batch 8, 8 MB was level
# with or ahead of 16 and 4 MB)
PER_IMAGE_BYTES = 8 << 20


def _activation_bytes(call):
    """Bytes a call reads from stored tensors and writes."""
    tensors = [arg.shape for arg in call.args if isinstance(arg, Tensor)] + [call.out_shape]
    return 4 * sum(int(np.prod(shape)) for shape in tensors)


def _per_image_count(program, limit):
    """How many leading calls of ``program`` run image by image: up to the last call
    whose activations (whole batch) exceed ``limit`` bytes, stopping before the first
    call whose weights outweigh one image's activations; none unless a depthwise
    convolution is among those large calls."""
    batch = program.input_shape[0]
    count, depthwise = 0, False
    for j, call in enumerate(program.calls):
        activations = _activation_bytes(call)
        weights = sum(arg.nbytes for arg in call.args if isinstance(arg, np.ndarray))
        if weights > activations // batch:
            break
        if activations > limit:
            count = j + 1
            depthwise |= isinstance(call.kernel, K.Depthwise)
    return count if depthwise else 0


def lower(symbol_json, params, input_shape, lanes, winograd=True, choose=None,
          per_image_bytes=PER_IMAGE_BYTES, band_bytes=BANDED_WEIGHT_BYTES):
    """The :class:`Program` computing the logits of the network ``symbol_json`` (a
    Symbol's JSON text, ending at its classifier) with ``params`` (name -> array) on an
    NCHW float32 input of ``input_shape``; ``lanes``: the target's float32 vector lanes;
    ``winograd``: 3x3 stride-1 convolutions by Winograd's algorithm where ``choose``
    (``(candidate kernels, the rules' pick) -> kernel``, the candidates of
    :func:`~octconv.deploy.algorithms.candidates`, e.g. an
    :class:`~octconv.deploy.algorithms.AlgorithmChoice`, which also chooses whether an
    odd count of 8-channel output blocks pairs) picks it, by default where
    :data:`~octconv.deploy.winograd.RULE` says; ``band_bytes``: the most bytes of
    transformed weights a Winograd layer runs in bands with
    (:func:`~octconv.deploy.winograd.band_bytes`).

    With a batch of several images, a network with depthwise convolutions on large
    maps runs its first calls image by image (:attr:`Program.per_image`): up to the
    last call whose activations (stored inputs and output, whole batch) exceed
    ``per_image_bytes``, if one of those is a depthwise convolution, and before the
    first call with more bytes of weights than one image's activations (reading them
    once per image would cost more). A depthwise convolution does about one
    multiply-add per byte of its maps: it runs at the speed they arrive. At batch 8 the
    MobileNets' first maps stream through memory (MobileNet v2's 112 px expansion
    alone is 38 MB); image by image, one image's maps pass from kernel to kernel in
    the caches. The ResNets, without depthwise layers, keep the batch: image by image
    they read each weight once per image and call each kernel once per image, and
    their first layers ran 4-7 % slower so on 2 threads.
    """
    choose = choose or (lambda candidates, default: default)
    program = _Lowering(Graph(symbol_json), params, input_shape, lanes, winograd, choose,
                        band_bytes).run()
    count = _per_image_count(program, per_image_bytes)
    if input_shape[0] == 1 or not count:
        return program
    single = _Lowering(Graph(symbol_json), params, (1,) + tuple(input_shape[1:]), lanes,
                       winograd, choose, band_bytes).run()
    if [type(c.kernel) for c in single.calls] != [type(c.kernel) for c in program.calls]:
        raise AssertionError("the network lowers to other kernels at batch 1")
    return replace(program, calls=single.calls[:count] + program.calls[count:],
                   per_image=count)
