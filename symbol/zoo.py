"""Networks by name in the Symbol API: the shared builders over Symbol pair operators."""
import mxnet as mx

from octconv.ops import PairOps, same_padding, window
from octconv.specs import check_options, get_spec, model_names
from octconv.unit import EXCHANGE_PATHS, check_alpha

from . import octconv as S

__all__ = ["get_symbol", "list_symbols", "SymbolOps"]


class SymbolOps(PairOps):
    """Builders' interface emitting Symbols; parameters are named variables."""

    def __init__(self, bn, last_gamma=False, exchange=EXCHANGE_PATHS, dims=2):
        super().__init__(mx.sym, last_gamma, exchange, dims)
        self.bn_settings = bn

    def conv(self, x, name, in_channels, channels, kernel, stride=1, alpha_in=0.0,
             alpha_out=0.0, groups=1, use_bias=False):
        return S.oct_conv(x, name, channels, kernel, in_channels, stride=stride,
                          padding=same_padding(kernel, self.dims), alpha_in=alpha_in,
                          alpha_out=alpha_out, groups=groups, use_bias=use_bias,
                          exchange=self.exchange, dims=self.dims)

    def plain_conv(self, x, name, in_channels, channels, kernel, stride=1, padding=0,
                   use_bias=False):
        y = mx.sym.Convolution(x[0], name=name, num_filter=channels,
                               kernel=window(kernel, self.dims),
                               stride=window(stride, self.dims),
                               pad=window(padding, self.dims), no_bias=not use_bias)
        return y, None

    def bn(self, x, name, channels, alpha, affine=True, residual_end=False, zero_gamma=False):
        return S.oct_batchnorm(x, name, affine=affine,
                               gamma_init=self.gamma_init(name, residual_end, zero_gamma),
                               **self.bn_settings)

    def se(self, x, name, channels, alpha, reduction):
        return S.oct_se(x, name, channels, alpha, reduction)

    def dense(self, x, name, in_channels, channels):
        return mx.sym.FullyConnected(mx.sym.flatten(x[0]), name=name, num_hidden=channels)


def list_symbols():
    """Names accepted by :func:`get_symbol`."""
    return model_names()


def get_symbol(name, alpha=0.0, num_classes=1000, **kwargs):
    """The network ``name`` at ``alpha`` as a Symbol: input ``data``, output ``softmax``
    (its input, the logits, is the internal output ``classifier_output``).

    Keyword arguments: ``dropout`` (before the classifier, default 0), ``last_gamma``
    (the last BatchNorm of each residual branch has gamma initializer "zeros", read by
    Gluon's SymbolBlock through :func:`octconv.models.build_network`; ValueError for a
    network without one), ``exchange`` (the exchange paths every inner OctConv layer
    keeps, default ``("h2l", "l2h")``; the paper's ablation drops one).
    """
    spec = get_spec(name)
    check_alpha(alpha)
    options = check_options(kwargs)
    ops = SymbolOps(spec.bn, options["last_gamma"], options["exchange"], spec.dims)
    logits = spec.builder(ops, (mx.sym.var("data"), None), spec.arch, alpha, num_classes,
                          options["dropout"])
    ops.check_last_gamma(name)
    return mx.sym.SoftmaxOutput(logits, name="softmax")
