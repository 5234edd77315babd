"""OctConv pair blocks for the Gluon API.

Every block is called as ``block(hi, lo=None)`` and returns ``(hi, lo)``; ``lo`` is None
when the output has no low-frequency part. Blocks hybridize. Parameter names equal the
Symbol API's for the same layer (see :mod:`octconv.symbol.octconv`).
"""
from dataclasses import replace

from mxnet.gluon import HybridBlock, nn

from octconv import ops
from octconv.unit import EXCHANGE_PATHS, branch_widths, plan_octconv

__all__ = ["PairBlock", "OctConv2D", "OctConv3D", "OctBatchNorm", "OctActivation", "OctPool",
           "OctGlobalPool", "OctMerge", "OctSE"]


class PairBlock(HybridBlock):
    """A HybridBlock on pairs.

    ``hybrid_forward`` returns ``hi`` alone when there is no low output, else
    ``(hi, lo)``: hybridized graphs cannot carry None, so :meth:`forward` passes only the
    tensors that exist and turns the result back into a pair.
    """

    def forward(self, hi, lo=None):
        out = super().forward(hi) if lo is None else super().forward(hi, lo)
        return tuple(out) if isinstance(out, (list, tuple)) else (out, None)


def _present(hi, lo):
    return hi if lo is None else (hi, lo)


class OctConv2D(PairBlock):
    """Octave convolution (Chen et al. 2019, Eq. 4).

    Builds the paths of :func:`octconv.unit.plan_octconv` as child ``Conv2D`` blocks
    named ``h2h``, ``h2l``, ``l2h``, ``l2l`` (parameters ``<prefix>h2h_weight``, ...);
    ``exchange`` names the exchange paths kept (both by default).
    ``in_channels=0`` defers the input width to the first call, which settles the layer
    to what it would be declared with that input (see :meth:`forward`).
    """

    _dims, _conv = 2, nn.Conv2D

    def __init__(self, channels, kernel_size, strides=1, padding=0, alpha_in=0.0,
                 alpha_out=0.0, groups=1, use_bias=False, in_channels=0,
                 exchange=EXCHANGE_PATHS, weight_initializer=None, bias_initializer="zeros",
                 **kwargs):
        super().__init__(**kwargs)
        self._arguments = dict(channels=channels, kernel_size=kernel_size, stride=strides,
                               padding=padding, alpha_in=alpha_in, alpha_out=alpha_out,
                               groups=groups, use_bias=use_bias, exchange=exchange,
                               dims=self._dims)
        self.plan = plan_octconv(in_channels=in_channels, **self._arguments)
        self._deferred = not in_channels
        with self.name_scope():
            for path in self.plan.paths:
                setattr(self, path.name, self._conv(
                    path.channels, self.plan.kernel_size, strides=self.plan.conv_stride,
                    padding=self.plan.padding, groups=path.groups, use_bias=path.use_bias,
                    in_channels=path.in_channels, weight_initializer=weight_initializer,
                    bias_initializer=bias_initializer, prefix=f"{path.name}_"))

    def forward(self, hi, lo=None):
        """A deferred layer's first call settles its plan: with arrays, to the plan of the
        same layer declared with this input's ``(high, low)`` widths (the same paths, the
        same errors); with symbols (a hybridized parent tracing its graph), only whether
        a low input exists, and MXNet's shape inference checks the widths."""
        if self._deferred:
            self._settle(hi, lo)
            self._deferred = False
        return super().forward(hi, lo)

    def _settle(self, hi, lo):
        if ops.is_array(hi):
            widths = (hi.shape[1], 0 if lo is None else lo.shape[1])
            declared = plan_octconv(in_channels=widths, **self._arguments)
            ops.check_pair(hi, lo, declared.in_channels, declared.has_low_input, self.name,
                           self._dims)
        kept = tuple(p for p in self.plan.paths if lo is not None or p.source == "h")
        for path in set(self.plan.paths) - set(kept):  # no low input: its paths go
            child = getattr(self, path.name)
            for param in child.collect_params().values():
                param.grad_req = "null"  # never initialized: a trainer made earlier skips it
            del self._children[path.name]
            object.__delattr__(self, path.name)
        self.plan = replace(self.plan, paths=kept)
        if ops.is_array(hi):
            shape = lambda plan: [replace(p, in_channels=0) for p in plan.paths]
            if shape(declared) != shape(self.plan):
                raise ValueError(f"{self.name}: this input's {widths} channels need another "
                                 f"layer than in_channels=0 builds; give in_channels={widths}")
            self.plan = declared

    def hybrid_forward(self, F, hi, lo=None):
        ops.check_pair(hi, lo, self.plan.in_channels, self.plan.has_low_input, self.name,
                       self._dims)
        conv = lambda path, x: getattr(self, path.name)(x)
        return _present(*ops.octconv_forward(F, self.plan, hi, lo, conv))


class OctConv3D(OctConv2D):
    """Octave convolution of videos (N, C, T, H, W): the octave is spatial, every frame
    keeps its low map at half the height and width (paper, Sec. 4.4).

    As :class:`OctConv2D`, with child ``Conv3D`` blocks: ``kernel_size`` and ``padding``
    are ints or ``(t, h, w)``; ``strides`` an int (height and width) or ``(t, s, s)``
    with ``s`` 1 or 2; the temporal stride is each path's convolution's stride in time.
    """

    _dims, _conv = 3, nn.Conv3D


class OctBatchNorm(PairBlock):
    """BatchNorm of each branch of a ``channels``-wide pair split by ``alpha`` (or of
    explicit ``(high, low)`` widths).

    Children ``h`` and ``l`` (parameters ``<prefix>h_gamma``, ``<prefix>l_running_mean``...).
    ``affine=False`` freezes gamma at 1 and beta at 0; ``gamma_initializer`` as Gluon's.
    """

    def __init__(self, channels, alpha=0.0, momentum=0.9, epsilon=1e-5, affine=True,
                 gamma_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        widths = branch_widths(channels, alpha)
        with self.name_scope():
            for branch, width in zip("hl", widths):
                if width:
                    setattr(self, branch, nn.BatchNorm(
                        momentum=momentum, epsilon=epsilon, center=affine, scale=affine,
                        gamma_initializer=gamma_initializer, in_channels=width,
                        prefix=f"{branch}_"))

    def hybrid_forward(self, F, hi, lo=None):
        ops.check_pair(hi, lo, (0, 0), hasattr(self, "l"), self.name)
        return _present(self.h(hi), None if lo is None else self.l(lo))


class _Stateless(PairBlock):
    """A parameter-free pair operation of :mod:`octconv.ops`."""

    def __init__(self, op, **kwargs):
        super().__init__(**kwargs)
        self._op = op

    def hybrid_forward(self, F, hi, lo=None):
        return _present(*self._op(F, (hi, lo)))


class OctActivation(_Stateless):
    """``activation`` ('relu', 'relu6' or 'sigmoid') on each branch."""

    def __init__(self, activation, **kwargs):
        if activation not in ops.ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of "
                             f"{sorted(ops.ACTIVATIONS)}")
        super().__init__(lambda F, pair: ops.activation(F, pair, activation), **kwargs)


class OctPool(_Stateless):
    """Max or average pooling of each branch (see :func:`octconv.ops.pool`; ``dims=3``:
    of clips, windows ``(t, h, w)``)."""

    def __init__(self, pool_type, pool_size, strides, padding=0, dims=2, **kwargs):
        super().__init__(lambda F, pair: ops.pool(F, pair, pool_type, pool_size, strides,
                                                  padding, dims), **kwargs)


class OctGlobalPool(_Stateless):
    """Global pooling of each branch (``dims=3``: of clips)."""

    def __init__(self, pool_type="avg", dims=2, **kwargs):
        super().__init__(lambda F, pair: ops.global_pool(F, pair, pool_type, dims), **kwargs)


class OctMerge(HybridBlock):
    """One high-resolution tensor from a pair: hi concatenated with the upsampled lo
    (``dims=3``: clips, upsampled in height and width)."""

    def __init__(self, dims=2, **kwargs):
        super().__init__(**kwargs)
        self._dims = dims

    def forward(self, hi, lo=None):
        return super().forward(hi) if lo is None else super().forward(hi, lo)

    def hybrid_forward(self, F, hi, lo=None):
        return ops.merge(F, (hi, lo), self._dims)


class OctSE(PairBlock):
    """Squeeze-excitation over both branches of a ``channels``-wide pair split by ``alpha``
    (or of explicit ``(high, low)`` widths).

    Children ``conv1`` (to ``(high + low) // reduction``), ``conv2-h`` and ``conv2-l``:
    1x1 convolutions with bias, named as in the Symbol API.
    """

    def __init__(self, channels, alpha=0.0, reduction=16, **kwargs):
        super().__init__(**kwargs)
        widths = branch_widths(channels, alpha)
        total = sum(widths)
        with self.name_scope():
            self.fc1 = nn.Conv2D(total // reduction, 1, in_channels=total, prefix="conv1_")
            self.fc2 = {}
            for branch, width in zip("hl", widths):
                if width:
                    self.fc2[branch] = nn.Conv2D(width, 1, in_channels=total // reduction,
                                                 prefix=f"conv2-{branch}_")
                    self.register_child(self.fc2[branch], f"fc2_{branch}")

    def hybrid_forward(self, F, hi, lo=None):
        pair = ops.squeeze_excitation(F, (hi, lo), self.fc1,
                                      lambda branch, x: self.fc2[branch](x))
        return _present(*pair)
