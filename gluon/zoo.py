"""Networks by name in the Gluon API: the shared builders over Gluon pair blocks."""
import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from octconv.ops import PairOps, is_array, same_padding
from octconv.specs import check_options, get_spec, model_names
from octconv.unit import EXCHANGE_PATHS, check_alpha

from .octconv import OctBatchNorm, OctConv2D, OctConv3D, OctSE

__all__ = ["OctNet", "get_model", "list_models", "GluonOps"]


class GluonOps(PairOps):
    """Builders' interface over child blocks of ``net``, looked up by parameter prefix.

    With ``create=True`` each parametric op first creates its block (prefix = the
    Symbol API's name, so parameter names agree) and registers it on ``net``.
    """

    def __init__(self, net, F, bn, create=False, last_gamma=False, exchange=EXCHANGE_PATHS,
                 dims=2):
        super().__init__(F, last_gamma, exchange, dims)
        self.net, self.bn_settings, self.create = net, bn, create
        self.oct_conv, self.plain = (OctConv2D, nn.Conv2D) if dims == 2 else (OctConv3D, nn.Conv3D)

    def _apply(self, name, make, *inputs):
        if self.create:
            self.net.layers[name] = make()
            self.net.register_child(self.net.layers[name], name)
        return self.net.layers[name](*inputs)

    def conv(self, x, name, in_channels, channels, kernel, stride=1, alpha_in=0.0,
             alpha_out=0.0, groups=1, use_bias=False):
        return self._apply(name, lambda: self.oct_conv(
            channels, kernel, strides=stride, padding=same_padding(kernel, self.dims),
            alpha_in=alpha_in,
            alpha_out=alpha_out, groups=groups, use_bias=use_bias, in_channels=in_channels,
            exchange=self.exchange, prefix=f"{name}-"), *x)

    def plain_conv(self, x, name, in_channels, channels, kernel, stride=1, padding=0,
                   use_bias=False):
        return self._apply(name, lambda: self.plain(
            channels, kernel, strides=stride, padding=padding, use_bias=use_bias,
            in_channels=in_channels, prefix=f"{name}_"), x[0]), None

    def bn(self, x, name, channels, alpha, affine=True, residual_end=False, zero_gamma=False):
        settings, gamma = self.bn_settings, self.gamma_init(name, residual_end, zero_gamma)
        return self._apply(name, lambda: OctBatchNorm(
            channels, alpha, momentum=settings["momentum"], epsilon=settings["eps"],
            affine=affine, gamma_initializer=gamma, prefix=f"{name}-"), *x)

    def se(self, x, name, channels, alpha, reduction):
        return self._apply(name, lambda: OctSE(channels, alpha, reduction,
                                               prefix=f"{name}-"), *x)

    def dense(self, x, name, in_channels, channels):
        return self._apply(name, lambda: nn.Dense(channels, in_units=in_channels,
                                                  prefix=f"{name}_"), x[0])


class OctNet(HybridBlock):
    """A zoo network: ``builder`` run once symbolically to create the child blocks,
    then replayed in every forward pass. ``layers`` maps layer names to blocks."""

    def __init__(self, spec, alpha, classes, dropout=0.0, last_gamma=False,
                 exchange=EXCHANGE_PATHS, name="network"):
        super().__init__(prefix="")
        self._spec, self._args, self._network = spec, (alpha, classes, dropout), name
        self.layers = {}
        ops = GluonOps(self, mx.sym, spec.bn, create=True, last_gamma=last_gamma,
                       exchange=exchange, dims=spec.dims)
        self._build(ops, mx.sym.var("data"))
        ops.check_last_gamma(name)

    def forward(self, x):
        """An array input is first checked to be what the network takes (rank, frames)."""
        if is_array(x):
            self._spec.check_input(x.shape, self._network)
        return super().forward(x)

    def _build(self, ops, x):
        return self._spec.builder(ops, (x, None), self._spec.arch, *self._args)

    def hybrid_forward(self, F, x):
        return self._build(GluonOps(self, F, self._spec.bn, dims=self._spec.dims), x)


def list_models():
    """Names accepted by :func:`get_model`."""
    return model_names()


def get_model(name, alpha=0.0, classes=1000, **kwargs):
    """The network ``name`` at ``alpha``: an uninitialized HybridBlock returning logits.

    Keyword arguments: ``dropout`` (before the classifier, default 0), ``last_gamma``
    (gamma 0 at start in the last BatchNorm of each residual branch; ValueError for a
    network without one), ``exchange`` (the exchange paths every inner OctConv layer
    keeps, default ``("h2l", "l2h")``; the paper's ablation drops one).
    """
    spec = get_spec(name)
    check_alpha(alpha)
    return OctNet(spec, alpha, classes, name=name, **check_options(kwargs))
