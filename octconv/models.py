"""Networks and their evaluation, for every user of a config: training, scoring,
conversion and deployment.

``build_network(cfg)`` gives the network of ``cfg.MODEL`` as a Gluon block in either
API (the Symbol network as a SymbolBlock whose parameters start as Gluon's layers
start theirs), ``evaluate`` its top-1 / top-5 over a batch source, ``devices`` the
MXNet contexts of a device string.
"""
import mxnet as mx
from mxnet import gluon

from octconv.graph import param_role

__all__ = ["build_network", "devices", "evaluate"]


def devices(spec):
    """``"cpu"`` or GPU ids such as ``"0,1"`` -> list of contexts (ValueError otherwise)."""
    if spec == "cpu":
        return [mx.cpu()]
    try:
        return [mx.gpu(int(i)) for i in spec.split(",")]
    except ValueError:
        raise ValueError(f"devices must be 'cpu' or GPU ids like '0,1', got {spec!r}") from None


def build_network(cfg):
    """The network of ``cfg.MODEL`` in the chosen API, as a Gluon block (uninitialized;
    with ``last_gamma`` the last BatchNorm of each residual branch starts at gamma 0;
    ``exchange`` the exchange paths kept)."""
    model = cfg.MODEL
    options = dict(dropout=model.dropout, last_gamma=model.last_gamma,
                   exchange=model.exchange)
    if model.api == "gluon":
        from octconv.gluon import get_model
        return get_model(model.name, alpha=model.alpha, classes=model.classes, **options)
    from octconv.symbol import get_symbol
    sym = get_symbol(model.name, alpha=model.alpha, num_classes=model.classes, **options)
    logits = sym.get_internals()["classifier_output"]
    net = gluon.SymbolBlock(logits, mx.sym.var("data"))
    params = net.collect_params()
    for name, param in params.items():  # BN and biases start as Gluon's layers start them
        role = param_role(name)
        if role != "weight":
            param.init = "ones" if role == "one" else "zeros"
    for name, attrs in logits.attr_dict().items():
        if name not in params:
            continue
        if "__init__" in attrs:  # an initializer the graph sets (last_gamma's zeros)
            params[name].init = mx.init.create(attrs["__init__"])
        if float(attrs.get("__lr_mult__", 1)) == 0:
            params[name].grad_req = "null"
    return net


def evaluate(net, batches, ctx, dtype="float32"):
    """``(top-1, top-5, images)`` of ``net`` over ``batches`` (inference mode). Batches of
    several clips per video, (N, K, C, T, H, W), are scored by the mean of the K clips'
    softmax; top-5 is top-k with k the number of classes where there are fewer."""
    top1, top5 = mx.metric.Accuracy(), None
    for data, label in batches.epoch(0, 0):
        for x, y in zip(gluon.utils.split_and_load(data, ctx, even_split=False),
                        gluon.utils.split_and_load(label, ctx, even_split=False)):
            if x.ndim == 6:  # K clips of each video
                n, k = x.shape[:2]
                out = net(x.reshape((n * k,) + x.shape[2:]).astype(dtype)).astype("float32")
                out = out.softmax().reshape((n, k, -1)).mean(axis=1)
            else:
                out = net(x.astype(dtype)).astype("float32")
            top5 = top5 or mx.metric.TopKAccuracy(min(5, out.shape[1]))
            top1.update(y, out)
            top5.update(y, out)
    return top1.get()[1], top5.get()[1], top1.num_inst
